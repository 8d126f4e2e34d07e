"""CostRollupExporter: buffering by trace, subtree totals, and never losing or double-sending spans."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any, cast

import pytest
from opentelemetry import context, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import otel_costs
from otel_costs import conventions as conv
from otel_costs.rollup import _exporter, cost_node, rollup
from otel_costs.rollup import _tree as _rollup
from otel_costs.rollup._agents import inherited_attributes
from otel_costs.testing import InMemoryPipeline

#: coordinator -> code_agent -> syntax_analyzer: 0.012 + 0.018 + 0.00325 USD.
HIERARCHICAL_TOTAL_NANOS = 33_250_000
WAIT = 10.0  # seconds: an upper bound on waiting for the flush thread, never a sleep
RunFn = Callable[[trace.TracerProvider], None]
CostedFn = Callable[[RunFn], list[ReadableSpan]]
LlmCallFn = Callable[..., None]


class FakeClock:
    """A monotonic clock moved by the test; counts the reads made by the flush thread."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self._cond = threading.Condition()
        self._reads = 0
        self._main = threading.get_ident()

    def __call__(self) -> float:
        with self._cond:
            if threading.get_ident() != self._main:
                self._reads += 1
                self._cond.notify_all()
            return self.now

    def advance(self, seconds: float) -> int:
        """Move time on; return the flush thread's read count before the move."""
        with self._cond:
            self.now += seconds
            return self._reads

    def wait_for_read(self, after: int) -> None:
        """Wait until the flush thread has read the clock more than ``after`` times."""
        with self._cond:
            assert self._cond.wait_for(lambda: self._reads > after, timeout=WAIT), "flush thread never woke"


class Recorder(SpanExporter):
    """The downstream exporter: records every span forwarded, can be told to raise or fail."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self.batches = 0
        self.fail_with: BaseException | SpanExportResult | None = None
        self.fail_times = 0
        self.shut = False
        self._cond = threading.Condition()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._cond:
            self.batches += 1
            if self.fail_times:
                self.fail_times -= 1
                if isinstance(self.fail_with, BaseException):
                    raise self.fail_with
                assert self.fail_with is not None
                return self.fail_with
            self.spans.extend(spans)
            self._cond.notify_all()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shut = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def wait_for(self, count: int) -> list[ReadableSpan]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.spans) >= count, timeout=WAIT), self.names()
            return list(self.spans)

    def names(self) -> list[str]:
        return [s.name for s in self.spans]

    def by_name(self) -> dict[str, ReadableSpan]:
        found = {s.name: s for s in self.spans}
        assert len(found) == len(self.spans), "a span name appears twice"
        return found


@pytest.fixture
def costed_spans(hierarchical_book: otel_costs.PriceBook) -> Callable[[RunFn], list[ReadableSpan]]:
    """``costed_spans(run)``: the spans ``run`` makes, priced by CostSpanProcessor but not rolled up."""

    def make(run: RunFn) -> list[ReadableSpan]:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(
            otel_costs.CostSpanProcessor(SimpleSpanProcessor(exporter), price_book=hierarchical_book)
        )
        run(provider)
        provider.shutdown()
        return list(exporter.get_finished_spans())

    return make


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_rollup(
    clock: FakeClock, recorder: Recorder
) -> Iterator[Callable[..., otel_costs.CostRollupExporter]]:
    """Build CostRollupExporters on the fake clock and the recorder; all shut down after the test."""
    made: list[otel_costs.CostRollupExporter] = []

    def make(**kwargs: object) -> otel_costs.CostRollupExporter:
        options: dict[str, object] = {"linger": 2.0, "max_wait": 30.0, "clock": clock, **kwargs}
        exporter = otel_costs.CostRollupExporter(recorder, **options)  # type: ignore[arg-type]
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.shutdown()


def totals(spans: Sequence[ReadableSpan]) -> dict[str, object]:
    return {s.name: (s.attributes or {}).get(conv.COST_TOTAL_NANOS) for s in spans}


HIERARCHICAL_TOTALS = {
    "invoke_agent coordinator": HIERARCHICAL_TOTAL_NANOS,
    "chat gpt-5.2": None,  # two spans of that name; checked through the agents
    "invoke_agent code_agent": 21_250_000,
    "invoke_agent syntax_analyzer": 3_250_000,
    "chat gemini-3-pro": 3_250_000,
}


# --- the hierarchical example --------------------------------------------------------------


def test_hierarchical_example_root_total_is_exact(
    pipeline: InMemoryPipeline, run_hierarchical: RunFn
) -> None:
    """coordinator -> code_agent -> syntax_analyzer rolls up to exactly $0.03325 at the root."""
    run_hierarchical(pipeline.tracer_provider)
    root = pipeline.attributes("invoke_agent coordinator")
    assert root[conv.COST_TOTAL_NANOS] == HIERARCHICAL_TOTAL_NANOS
    assert root[conv.COST_TOTAL] == 0.03325
    assert root[conv.COST_CHILDREN_NANOS] == HIERARCHICAL_TOTAL_NANOS
    assert root[conv.COST_ROLLUP_SCOPE] == conv.SCOPE_PROCESS
    assert conv.COST_DIRECT not in root  # an agent span has no direct cost
    assert pipeline.total("invoke_agent code_agent") == Decimal("0.02125")
    assert pipeline.attributes("invoke_agent code_agent")[conv.COST_TOTAL_NANOS] == 21_250_000
    assert pipeline.attributes("invoke_agent syntax_analyzer")[conv.COST_TOTAL] == 0.00325
    direct = sorted(
        cast(int, (s.attributes or {})[conv.COST_DIRECT_NANOS])
        for s in pipeline.spans()
        if s.name.startswith("chat")
    )
    assert direct == [3_250_000, 12_000_000, 18_000_000]


# --- ordering and batching -----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_batches_and_order_do_not_change_totals(
    make_rollup: Callable[..., otel_costs.CostRollupExporter],
    recorder: Recorder,
    run_hierarchical: RunFn,
    seed: int,
    costed_spans: CostedFn,
) -> None:
    """A trace's spans arriving shuffled over many batches give the same totals as one ordered batch."""
    spans = costed_spans(run_hierarchical)
    rng = random.Random(seed)
    rng.shuffle(spans)
    rollup = make_rollup()
    start = 0
    while start < len(spans):
        size = rng.randint(1, 3)
        assert rollup.export(spans[start : start + size]) is SpanExportResult.SUCCESS
        start += size
    assert recorder.spans == []  # still buffered: no local root has lingered yet
    assert rollup.force_flush() is True
    got = totals(recorder.spans)
    assert {k: v for k, v in got.items() if k != "chat gpt-5.2"} == {
        k: v for k, v in HIERARCHICAL_TOTALS.items() if k != "chat gpt-5.2"
    }
    assert len(recorder.spans) == len(spans)


def test_interleaved_traces_in_one_batch_are_buffered_apart(
    make_rollup: Callable[..., otel_costs.CostRollupExporter],
    clock: FakeClock,
    recorder: Recorder,
    run_hierarchical: RunFn,
    costed_spans: CostedFn,
) -> None:
    """Spans of two traces alternating within one batch each go to their own trace: the one whose
    root ended goes out after linger with its exact totals, the other stays buffered."""
    done = costed_spans(run_hierarchical)
    open_ = [s for s in costed_spans(run_hierarchical) if s.name != "invoke_agent coordinator"]
    mixed = [span for pair in zip(done, open_, strict=False) for span in pair] + done[len(open_) :]
    rollup = make_rollup(linger=2.0)
    assert rollup.export(mixed) is SpanExportResult.SUCCESS
    reads = clock.advance(2.5)
    rollup.export([])
    clock.wait_for_read(reads)
    forwarded = recorder.wait_for(len(done))
    assert {s.context.trace_id for s in forwarded if s.context} == {done[0].context.trace_id}  # type: ignore[union-attr]
    assert totals(forwarded)["invoke_agent coordinator"] == HIERARCHICAL_TOTAL_NANOS
    assert rollup.force_flush() is True
    assert len(recorder.spans) == len(mixed)


def test_spans_without_usage_pass_through_unannotated(
    make_rollup: Callable[..., otel_costs.CostRollupExporter],
    recorder: Recorder,
    costed_spans: CostedFn,
) -> None:
    """A trace with no billable span is forwarded without any cost attributes."""

    def run(tp: trace.TracerProvider) -> None:
        tracer = tp.get_tracer("t")
        with (
            tracer.start_as_current_span("root", attributes={"k": "v"}),
            tracer.start_as_current_span("child"),
        ):
            pass

    rollup = make_rollup()
    rollup.export(costed_spans(run))
    rollup.force_flush()
    assert {s.name: dict(s.attributes or {}) for s in recorder.spans} == {"root": {"k": "v"}, "child": {}}


def test_unpriced_calls_are_counted_up_the_tree(pipeline: InMemoryPipeline, llm_call: LlmCallFn) -> None:
    """The count of unpriced calls below a span is published: its total is a lower bound."""
    tp = pipeline.tracer_provider
    with otel_costs.agent("a", tracer_provider=tp):
        llm_call(tp, "gpt-5.2", 1500, 500)
        llm_call(tp, "mystery-model", 1, 1)
    root = pipeline.attributes("invoke_agent a")
    assert root[conv.COST_TOTAL_NANOS] == 12_000_000
    assert root[conv.COST_ROLLUP_UNPRICED] == 1


# --- remote parents, orphans, linger, late spans ---------------------------------------------


def test_local_root_with_remote_parent_is_flagged(
    make_rollup: Callable[..., otel_costs.CostRollupExporter],
    clock: FakeClock,
    recorder: Recorder,
    run_hierarchical: RunFn,
    costed_spans: CostedFn,
) -> None:
    """A local root with a remote parent is flagged, lingers like a root, and totals this process only."""
    remote = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))

    def run(tp: trace.TracerProvider) -> None:
        token = context.attach(trace.set_span_in_context(NonRecordingSpan(remote)))
        try:
            run_hierarchical(tp)
        finally:
            context.detach(token)

    spans = costed_spans(run)
    rollup = make_rollup(linger=2.0)
    rollup.export(spans)
    reads = clock.advance(2.5)
    rollup.export([])  # wakes the flush thread
    clock.wait_for_read(reads)
    recorder.wait_for(len(spans))
    root = next(s for s in recorder.spans if s.name == "invoke_agent coordinator")
    attrs = root.attributes or {}
    assert attrs[conv.COST_ROLLUP_REMOTE_PARENT] is True
    assert conv.COST_ROLLUP_ORPHAN not in attrs
    assert attrs[conv.COST_TOTAL_NANOS] == HIERARCHICAL_TOTAL_NANOS
    assert attrs[conv.COST_ROLLUP_SCOPE] == conv.SCOPE_PROCESS


def test_orphans_are_forwarded_flagged_after_max_wait(
    make_rollup: Callable[..., otel_costs.CostRollupExporter],
    clock: FakeClock,
    recorder: Recorder,
    run_hierarchical: RunFn,
    costed_spans: CostedFn,
) -> None:
    """Spans whose parent never arrives wait max_wait, then go out with their top span flagged orphan."""
    spans = [s for s in costed_spans(run_hierarchical) if s.name != "invoke_agent coordinator"]
    rollup = make_rollup(linger=2.0, max_wait=30.0)
    rollup.export(spans)
    reads = clock.advance(29.0)
    rollup.export([])
    clock.wait_for_read(reads)
    assert recorder.spans == []  # not yet: max_wait has not passed
    reads = clock.advance(1.5)
    rollup.export([])
    clock.wait_for_read(reads)
    forwarded = recorder.wait_for(len(spans))
    top = [s for s in forwarded if (s.attributes or {}).get(conv.COST_ROLLUP_ORPHAN)]
    assert sorted(s.name for s in top) == ["chat gpt-5.2", "invoke_agent code_agent"]
    code_agent = next(s for s in top if s.name == "invoke_agent code_agent")
    assert (code_agent.attributes or {})[conv.COST_TOTAL_NANOS] == 21_250_000


class Blocking(SpanExporter):
    """A downstream exporter whose ``export`` waits until the test releases it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        assert self.release.wait(WAIT), "the test never released the export"
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def test_force_flush_waits_for_a_trace_the_flush_thread_is_forwarding(
    run_hierarchical: RunFn, costed_spans: CostedFn
) -> None:
    """A trace the flush thread took just before a force_flush is out before force_flush says so."""
    spans = costed_spans(run_hierarchical)
    downstream = Blocking()
    rollup = otel_costs.CostRollupExporter(downstream, linger=0.0)
    try:
        rollup.export(spans)  # the root is in: due at once, taken by the flush thread
        assert downstream.entered.wait(WAIT), "the flush thread never forwarded the trace"
        # Nothing is buffered any more, yet the trace is not out: the flush cannot succeed in time.
        assert rollup.force_flush(timeout_millis=10) is False
        downstream.release.set()
        assert rollup.force_flush() is True
        assert len(downstream.spans) == len(spans)
    finally:
        downstream.release.set()
        rollup.shutdown()


def test_children_ending_within_linger_are_included(
    make_rollup: Callable[..., otel_costs.CostRollupExporter],
    clock: FakeClock,
    recorder: Recorder,
    run_hierarchical: RunFn,
    costed_spans: CostedFn,
) -> None:
    """A child exported after its root, but within linger, is rolled up with the root's trace."""
    spans = costed_spans(run_hierarchical)
    root = [s for s in spans if s.name == "invoke_agent coordinator"]
    rest = [s for s in spans if s.name != "invoke_agent coordinator"]
    rollup = make_rollup(linger=2.0)
    rollup.export(root)
    reads = clock.advance(1.5)
    rollup.export(rest)  # also wakes the thread: nothing is due yet
    clock.wait_for_read(reads)
    assert recorder.spans == []
    reads = clock.advance(1.0)
    rollup.export([])
    clock.wait_for_read(reads)
    recorder.wait_for(len(spans))
    coordinator = next(s for s in recorder.spans if s.name == "invoke_agent coordinator")
    assert (coordinator.attributes or {})[conv.COST_TOTAL_NANOS] == HIERARCHICAL_TOTAL_NANOS
    assert not any((s.attributes or {}).get(conv.COST_ROLLUP_PARTIAL) for s in recorder.spans)


def test_late_spans_are_flagged_partial_late(
    make_rollup: Callable[..., otel_costs.CostRollupExporter],
    recorder: Recorder,
    run_hierarchical: RunFn,
    costed_spans: CostedFn,
) -> None:
    """A span arriving after its trace went out is forwarded, flagged partial with reason late."""
    spans = costed_spans(run_hierarchical)
    late = next(s for s in spans if s.name == "chat gemini-3-pro")
    rollup = make_rollup()
    rollup.export([s for s in spans if s is not late])
    rollup.force_flush()
    coordinator = next(s for s in recorder.spans if s.name == "invoke_agent coordinator")
    assert (coordinator.attributes or {})[conv.COST_TOTAL_NANOS] == HIERARCHICAL_TOTAL_NANOS - 3_250_000
    rollup.export([late])
    rollup.force_flush()
    attrs = recorder.spans[-1].attributes or {}
    assert recorder.spans[-1].name == "chat gemini-3-pro"
    assert attrs[conv.COST_ROLLUP_PARTIAL] is True
    assert attrs[conv.COST_ROLLUP_PARTIAL_REASON] == "late"
    assert len(recorder.spans) == len(spans)


# --- bounded memory ------------------------------------------------------------------------


def test_buffer_full_forwards_oldest_traces_early(
    make_rollup: Callable[..., otel_costs.CostRollupExporter],
    recorder: Recorder,
    run_hierarchical: RunFn,
    costed_spans: CostedFn,
) -> None:
    """Past max_buffered_spans the oldest traces go out at once, flagged buffer_full; no span is lost."""
    traces = [costed_spans(run_hierarchical) for _ in range(3)]
    rollup = make_rollup(max_buffered_spans=8)
    rollup.export(traces[0])
    assert recorder.spans == []
    rollup.export(traces[1])  # 12 > 8: the first trace is forwarded now
    assert len(recorder.spans) == 6
    assert all((s.attributes or {})[conv.COST_ROLLUP_PARTIAL_REASON] == "buffer_full" for s in recorder.spans)
    rollup.export(traces[2])
    rollup.force_flush()
    ids = Counter((s.context.trace_id, s.context.span_id) for s in recorder.spans if s.context)
    assert len(ids) == 18 and set(ids.values()) == {1}
    third = {s.context.trace_id for s in traces[2] if s.context}
    last = [s for s in recorder.spans if s.context and s.context.trace_id in third]
    assert not any((s.attributes or {}).get(conv.COST_ROLLUP_PARTIAL) for s in last)


# --- flush and shutdown ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["force_flush", "shutdown"])
def test_flush_and_shutdown_forward_everything(
    make_rollup: Callable[..., otel_costs.CostRollupExporter],
    recorder: Recorder,
    run_hierarchical: RunFn,
    how: str,
    costed_spans: CostedFn,
) -> None:
    """force_flush and shutdown forward every buffered span, complete trees or not."""
    complete = costed_spans(run_hierarchical)
    orphaned = [s for s in costed_spans(run_hierarchical) if s.name != "invoke_agent coordinator"]
    rollup = make_rollup()
    rollup.export(complete + orphaned)
    assert recorder.spans == []
    if how == "force_flush":
        assert rollup.force_flush() is True
    else:
        rollup.shutdown()
        assert recorder.shut is True
        assert rollup.export(complete) is SpanExportResult.FAILURE
        rollup.shutdown()  # a second shutdown is a no-op
    assert len(recorder.spans) == len(complete) + len(orphaned)


@pytest.mark.parametrize(
    "failure", [RuntimeError("collector down"), SpanExportResult.FAILURE], ids=["raises", "fails"]
)
def test_downstream_failure_never_reaches_the_caller(
    make_rollup: Callable[..., otel_costs.CostRollupExporter],
    clock: FakeClock,
    recorder: Recorder,
    run_hierarchical: RunFn,
    failure: BaseException | SpanExportResult,
    costed_spans: CostedFn,
) -> None:
    """A downstream exporter that raises or fails is logged; export, flushes and the flush thread go on."""
    recorder.fail_with, recorder.fail_times = failure, 2
    rollup = make_rollup(max_buffered_spans=6)
    first, second, third = (costed_spans(run_hierarchical) for _ in range(3))
    rollup.export(first)
    assert rollup.export(second) is SpanExportResult.SUCCESS  # evicts `first` into the failing exporter
    rollup.force_flush()  # `second` also fails
    assert recorder.batches == 2 and recorder.spans == []
    rollup.export(third)  # the flush thread still works
    reads = clock.advance(3.0)
    rollup.export([])
    clock.wait_for_read(reads)
    assert len(recorder.wait_for(6)) == 6


def test_downstream_flush_and_shutdown_errors_are_swallowed(
    make_rollup: Callable[..., otel_costs.CostRollupExporter], recorder: Recorder
) -> None:
    """A downstream force_flush or shutdown that raises gives False / returns, never an exception."""

    def boom(*args: object, **kwargs: object) -> Any:
        raise RuntimeError("down")

    recorder.force_flush = boom  # type: ignore[method-assign]
    recorder.shutdown = boom  # type: ignore[method-assign]
    rollup = make_rollup()
    assert rollup.force_flush() is False
    rollup.shutdown()


def test_export_racing_shutdown_loses_nothing(
    recorder: Recorder, run_hierarchical: RunFn, costed_spans: CostedFn
) -> None:
    """An export still running when shutdown completes reports FAILURE instead of losing its spans."""
    spans = costed_spans(run_hierarchical)
    entered, release = threading.Event(), threading.Event()

    def clock() -> float:
        # Hold the racing export between its start and its buffering, until shutdown is done.
        if threading.current_thread().name == "racing-export":
            entered.set()
            assert release.wait(WAIT)
        return 0.0

    rollup = otel_costs.CostRollupExporter(recorder, clock=clock)
    results: list[SpanExportResult] = []
    worker = threading.Thread(target=lambda: results.append(rollup.export(spans)), name="racing-export")
    worker.start()
    assert entered.wait(WAIT)
    rollup.shutdown()
    release.set()
    worker.join()
    assert results == [SpanExportResult.FAILURE] or len(recorder.spans) == len(spans)


def test_concurrent_exports_forward_every_span_once(
    recorder: Recorder, run_hierarchical: RunFn, costed_spans: CostedFn
) -> None:
    """Threads exporting at once, with evictions and the flush thread running, lose and repeat nothing."""
    traces = [costed_spans(run_hierarchical) for _ in range(60)]
    rollup = otel_costs.CostRollupExporter(recorder, linger=0.0, max_buffered_spans=50)
    barrier = threading.Barrier(6)

    def work(part: list[list[ReadableSpan]]) -> None:
        barrier.wait()
        for spans in part:
            for span in spans:
                assert rollup.export([span]) is SpanExportResult.SUCCESS

    threads = [threading.Thread(target=work, args=(traces[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rollup.shutdown()
    ids = Counter((s.context.trace_id, s.context.span_id) for s in recorder.spans if s.context)
    assert len(ids) == 360
    assert set(ids.values()) == {1}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"exporter": object()}, TypeError),
        ({"linger": -1.0}, ValueError),
        ({"linger": 5.0, "max_wait": 1.0}, ValueError),
        ({"max_buffered_spans": 0}, ValueError),
        ({"remember_flushed": -1}, ValueError),
    ],
)
def test_constructor_validates(kwargs: dict[str, object], error: type[Exception]) -> None:
    """Impossible settings are refused at construction with a message."""
    exporter = kwargs.pop("exporter", InMemorySpanExporter())
    with pytest.raises(error):
        otel_costs.CostRollupExporter(exporter, **kwargs)  # type: ignore[arg-type]


def test_span_without_context_is_forwarded_not_dropped() -> None:
    """A hand-built span with no span context cannot be grouped by trace, so it is forwarded as is."""
    downstream = Recorder()
    exporter = otel_costs.CostRollupExporter(downstream)
    bare = ReadableSpan(name="hand-built")
    assert exporter.export([bare]) is SpanExportResult.SUCCESS
    assert downstream.wait_for(1)[0].name == "hand-built"
    exporter.shutdown()


# --- annotate_trace: the column-based rollup must match the per-node functions ------------------

TRACE = 0x1234


def _span(span_id: int, parent_id: int | None, remote: bool = False, **attributes: Any) -> ReadableSpan:
    """A finished span of TRACE with the given ids and attributes (as an exporter receives it)."""
    parent = None if parent_id is None else SpanContext(TRACE, parent_id, is_remote=remote)
    return ReadableSpan(
        name=f"s{span_id}",
        context=SpanContext(TRACE, span_id, is_remote=False),
        parent=parent,
        attributes={k.replace("__", "."): v for k, v in attributes.items()},
    )


def _reference_annotate(
    spans: Sequence[ReadableSpan], partial_reason: str | None
) -> list[list[tuple[str, Any]]]:
    """annotate_trace as cost_node + rollup + rollup_attributes + with_attributes per span."""
    nodes = [
        cost_node(
            span.context.span_id if span.context else 0,
            span.parent.span_id if span.parent else None,
            span.attributes,
            remote_parent=span.parent is not None and span.parent.is_remote,
        )
        for span in spans
    ]
    out = []
    for span, node, result in zip(spans, nodes, rollup(nodes), strict=True):
        extra = _rollup.rollup_attributes(node, result, scope=conv.SCOPE_PROCESS)
        if partial_reason is not None:
            extra[conv.COST_ROLLUP_PARTIAL] = True
            extra[conv.COST_ROLLUP_PARTIAL_REASON] = partial_reason
        merged = {**(span.attributes or {}), **extra}
        out.append(list(merged.items()))
    return out


PRICED = {"cost__status": "priced", "cost__direct_nanos": 12_000_000}
ANNOTATE_CASES: dict[str, list[ReadableSpan]] = {
    "plain trace": [_span(1, None), _span(2, 1, http__method="GET"), _span(3, 2)],
    "plain with remote root": [_span(1, 99, remote=True), _span(2, 1)],
    "plain with orphan": [_span(1, None), _span(2, 77)],
    "priced chain": [_span(1, None), _span(2, 1), _span(3, 2, **PRICED), _span(4, 2, **PRICED)],
    "unpriced and invalid": [
        _span(1, None),
        _span(2, 1, cost__status="unpriced"),
        _span(3, 1, cost__status="invalid_usage"),
        _span(4, 1, cost__direct=0.5),
        _span(5, 1, cost__direct_nanos=-3),
        _span(6, 1, cost__direct="x"),
    ],
    "duplicate ids": [_span(1, None), _span(2, 1, **PRICED), _span(2, 1, **PRICED), _span(3, 2, **PRICED)],
    "cycle": [_span(1, 2, **PRICED), _span(2, 3), _span(3, 1), _span(4, 3, **PRICED), _span(5, None)],
    "self parent": [_span(1, 1, **PRICED), _span(2, 1)],
    "priced with odd costs": [
        _span(1, None),
        _span(2, 1, **{**PRICED, "cost__direct_nanos": 0}),
        _span(3, 1, **{**PRICED, "cost__direct_nanos": True}),
        _span(4, 1, **{**PRICED, "cost__direct_nanos": -5}),
        _span(5, 1, **{**PRICED, "cost__direct_nanos": 7.0}),
        _span(6, 1, cost__status="priced", cost__direct=0.25),
        _span(7, 1, cost__status="partial", cost__direct_nanos=9),
        _span(8, 1, cost__status="duplicate", cost__direct_nanos=11),
        _span(9, 1, cost__direct_nanos=13),
    ],
    "already rolled up once": [
        _span(1, None, cost__total=1.0, cost__total_nanos=1),
        _span(2, 1, **PRICED, cost__rollup__scope="process"),
    ],
}


@pytest.mark.parametrize("partial_reason", [None, "late"])
@pytest.mark.parametrize("case", ANNOTATE_CASES, ids=str)
def test_annotate_trace_matches_the_per_node_rollup(case: str, partial_reason: str | None) -> None:
    """annotate_trace gives every span exactly the attributes (and order) of the per-node functions."""
    spans = ANNOTATE_CASES[case]
    out = _exporter.annotate_trace(spans, partial_reason=partial_reason)
    assert [list((span.attributes or {}).items()) for span in out] == _reference_annotate(
        spans, partial_reason
    )
    assert [span.context for span in out] == [span.context for span in spans]
    # Spans with nothing to add are handed on as they are, not copied.
    for before, after in zip(spans, out, strict=True):
        if (after.attributes or {}) == (before.attributes or {}):
            assert after is before


@pytest.mark.parametrize("case", ANNOTATE_CASES, ids=str)
def test_annotate_trace_writes_the_agent_rule_on_its_targets(case: str) -> None:
    """Under an agent span, annotate_trace writes on each span what inherited_attributes gives it,
    with the targets is_target picks (the priced common case is read without it)."""
    agent = _span(100, None, gen_ai__operation__name="invoke_agent", gen_ai__agent__name="triage")
    spans = [
        agent,
        *(
            _span(
                span.context.span_id,  # type: ignore[union-attr]
                span.parent.span_id if span.parent else 100,
                remote=False,
                **{k.replace(".", "__"): v for k, v in (span.attributes or {}).items()},
            )
            for span in ANNOTATE_CASES[case]
        ),
    ]
    ids = [span.context.span_id for span in spans]  # type: ignore[union-attr]
    parents = [span.parent.span_id if span.parent else None for span in spans]
    attributes = [span.attributes or {} for span in spans]
    expected = inherited_attributes(ids, parents, attributes)
    out = _exporter.annotate_trace(spans)
    rule_keys = (conv.AGENT_NAME, conv.AGENT_SOURCE, conv.AGENT_PARENT_ID, conv.WORKFLOW_NAME)
    for i, span in enumerate(out):
        written = {
            k: v for k, v in (span.attributes or {}).items() if k in rule_keys and k not in attributes[i]
        }
        assert written == {k: v for k, v in expected.get(i, {}).items() if k not in attributes[i]}, i


def test_the_priced_common_case_is_read_from_the_cost_rules() -> None:
    """own_cost and is_target call a span priced exactly a billable, complete target, so
    annotate_trace's two-get reading of it is on (and gives what they would: the tests above).

    Internals: the flag is private; without it the fast reading would be silently off."""
    assert _exporter._PRICED_EXACTLY is True


def test_annotate_trace_keeps_cost_free_spans_uncopied() -> None:
    """In a trace without any cost, no span is copied; in one with costs, only their ancestors are."""
    plain = ANNOTATE_CASES["plain trace"]
    assert all(a is b for a, b in zip(_exporter.annotate_trace(plain), plain, strict=True))
    priced = [*ANNOTATE_CASES["priced chain"], _span(9, 1)]
    out = _exporter.annotate_trace(priced)
    assert [a is b for a, b in zip(out, priced, strict=True)] == [False, False, False, False, True]
