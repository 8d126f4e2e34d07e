"""``CostRollupExporter``: the trace window (buffer spans by trace until the trace is complete),
then each trace's rollup (``annotate_trace``) onto its spans, forwarded to the wrapped exporter;
and ``RunListener``, told of each workflow run's total once its trace is rolled up."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_costs import conventions as conv
from otel_costs._sdk import suppress_instrumentation, trace_root, tree_ids
from otel_costs.pipeline._spans import annotated, attributes_dict, readable_attributes
from otel_costs.rollup._agents import inherited_attributes, is_target
from otel_costs.rollup._tree import own_cost, rollup_columns, write_rollup

logger = logging.getLogger("otel_costs")

#: Attributes ``cost_node`` reads: a span with none of them costs nothing and is not billable.
_COST_KEYS = frozenset({conv.COST_STATUS, conv.COST_DIRECT_NANOS, conv.COST_DIRECT})
#: Whether ``own_cost`` and ``is_target`` answer "billable, complete, a target" for a span priced
#: exactly (``cost.status`` "priced" and ``cost.direct_nanos`` an int >= 0, its cost): asked of
#: them once, so ``annotate_trace`` answers such a span with two gets and the rule stays theirs.
_PRICED_EXACTLY = is_target({conv.COST_STATUS: conv.STATUS_PRICED}) and own_cost(
    {conv.COST_STATUS: conv.STATUS_PRICED, conv.COST_DIRECT_NANOS: 1}
) == (1, True, False)


class RunListener(Protocol):
    """Listens to workflow runs: each ``invoke_workflow`` span once its trace is rolled up.

    ``CostMetrics`` is one (the run counter and the cost-per-run histogram); ``configure()`` and
    ``InMemoryPipeline`` hand every listener that has ``on_run_cost`` to the rollup exporter.

    Example::

        class Runs:
            def on_run_cost(self, span, total_nanos):
                print(span.attributes["workflow.name"], total_nanos)

        CostRollupExporter(exporter, run_listeners=[Runs()])
    """

    def on_run_cost(self, span: ReadableSpan, total_nanos: int) -> None:
        """Called once per workflow span, rolled up (``total_nanos`` = its ``cost.total_nanos``:
        the exact sum of the calls under it in this process, 0 if none was billable), before it is
        exported. Exceptions are caught and logged by the exporter."""
        ...


@dataclass(slots=True)
class _Pending:
    """The buffered spans of one trace."""

    spans: list[ReadableSpan] = field(default_factory=list)
    first_seen: float = 0.0
    #: When to flush: set to ``now + linger`` once a local root (no parent, or a remote one)
    #: has ended; until then the trace waits for ``max_wait``.
    deadline: float | None = None
    #: The trace was already flushed once: these spans came after their tree went out.
    late: bool = False


class CostRollupExporter(SpanExporter):
    """Wraps any exporter: buffers spans by trace, rolls costs up, forwards the annotated spans.

    Spans of one trace may arrive across many export batches and out of order. A trace is
    rolled up and forwarded ``linger`` seconds after a local root of it ended (so children
    that end after their parent still count), or ``max_wait`` seconds after its first span
    if no local root ever ends (its top spans are then flagged ``cost.rollup.orphan``). Spans
    arriving after their trace went out are forwarded flagged ``cost.rollup.partial`` with
    reason ``late``. Past ``max_buffered_spans`` the oldest traces are forwarded at once,
    flagged ``partial`` with reason ``buffer_full``. ``force_flush`` and ``shutdown`` forward
    everything. Totals cover this process only (``cost.rollup.scope=process``); spans whose
    parent is in another process say so with ``cost.rollup.remote_parent``. Each
    ``invoke_workflow`` span, rolled up, goes to every ``run_listeners`` (``RunListener``).

    Example::

        BatchSpanProcessor(CostRollupExporter(OTLPSpanExporter()))
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        linger: float = 2.0,
        max_wait: float = 30.0,
        max_buffered_spans: int = 100_000,
        remember_flushed: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        run_listeners: Sequence[RunListener] = (),
    ) -> None:
        if not isinstance(exporter, SpanExporter):
            raise TypeError(f"exporter must be a SpanExporter (e.g. OTLPSpanExporter()), got {exporter!r}")
        if linger < 0 or max_wait < linger:
            raise ValueError(f"need 0 <= linger <= max_wait, got linger={linger}, max_wait={max_wait}")
        if max_buffered_spans < 1 or remember_flushed < 0:
            raise ValueError("max_buffered_spans must be >= 1 and remember_flushed >= 0")
        bad = [listener for listener in run_listeners if not callable(getattr(listener, "on_run_cost", None))]
        if bad:
            raise TypeError(f"run_listeners need an on_run_cost(span, total_nanos) method: {bad!r}")
        self._run_listeners = tuple(listener.on_run_cost for listener in run_listeners)
        self._exporter = exporter
        self._linger = linger
        self._max_wait = max_wait
        self._max_spans = max_buffered_spans
        self._remember = remember_flushed
        self._clock = clock
        lock = threading.Lock()
        self._lock = threading.Condition(lock)
        #: Notified (under ``_lock``) when the flush thread has forwarded what it took: a
        #: ``force_flush`` waits for that too. A condition of its own, so it never takes a
        #: notification meant for the flush thread.
        self._forwarded = threading.Condition(lock)
        #: Batches the flush thread took from ``_pending`` and has not forwarded yet.
        self._forwarding = 0
        self._export_lock = threading.Lock()
        self._pending: OrderedDict[int, _Pending] = OrderedDict()
        self._buffered = 0
        self._flushed: OrderedDict[int, None] = OrderedDict()
        self._shutdown = False
        self._thread = threading.Thread(target=self._run, name="otel_costs.CostRollupExporter", daemon=True)
        self._thread.start()

    # --- SpanExporter -----------------------------------------------------------------
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Buffer ``spans``; they are forwarded when their trace is complete (see the class doc)."""
        if self._shutdown:
            return SpanExportResult.FAILURE
        evicted: list[tuple[_Pending, str | None]] = []
        try:
            now = self._clock()
            with self._lock:
                # Checked again under the lock: shutdown may have flushed for the last time since.
                if self._shutdown:
                    return SpanExportResult.FAILURE
                self._add(spans, now, evicted)
                while self._buffered > self._max_spans and self._pending:
                    _trace_id, pending = self._pending.popitem(last=False)
                    self._buffered -= len(pending.spans)
                    evicted.append((pending, "buffer_full"))
                self._lock.notify()
        except Exception:
            logger.exception("otel_costs: could not buffer %d spans", len(spans))
            return SpanExportResult.FAILURE
        if evicted:
            if any(reason == "buffer_full" for _, reason in evicted):
                logger.warning(
                    "otel_costs: rollup buffer full (%d spans): forwarding traces early, flagged partial",
                    self._max_spans,
                )
            self._forward(evicted)
        return SpanExportResult.SUCCESS

    def _add(
        self, spans: Sequence[ReadableSpan], now: float, evicted: list[tuple[_Pending, str | None]]
    ) -> None:
        """Buffer ``spans`` under their traces (holding the lock); context-less ones go to ``evicted``."""
        pending_by_trace = self._pending
        deadline = now + self._linger
        added = 0
        # Spans of one trace mostly come together (they end together): the last trace's buffer
        # is reused while the trace id stays the same.
        last_trace: int | None = None
        pending: _Pending | None = None
        try:
            for span in spans:
                ids = trace_root(span)
                if ids is None:
                    # No span context (hand-built spans): nothing to roll up, forward it as is.
                    evicted.append((_Pending(spans=[span]), None))
                    continue
                trace_id, local_root = ids
                if trace_id != last_trace or pending is None:
                    pending = pending_by_trace.get(trace_id)
                    if pending is None:
                        late = trace_id in self._flushed
                        pending = pending_by_trace[trace_id] = _Pending(first_seen=now, late=late)
                    last_trace = trace_id
                pending.spans.append(span)
                added += 1
                if local_root and pending.deadline is None:
                    pending.deadline = deadline
        finally:
            self._buffered += added

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Roll up and forward every buffered trace now, and wait for the traces the flush thread
        took already (``False`` if that takes longer than ``timeout_millis``), then flush the
        wrapped exporter."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._lock:
            batch: list[tuple[_Pending, str | None]] = [(pending, None) for pending in self._pending.values()]
            self._pending.clear()
            self._buffered = 0
        self._forward(batch)
        with self._lock:
            # A trace due just before this flush is the flush thread's to forward: it was not in
            # ``_pending`` above, and it must be out before this returns.
            while self._forwarding:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._forwarded.wait(remaining)
        try:
            return self._exporter.force_flush(timeout_millis)
        except Exception:
            logger.exception("otel_costs: force_flush of %r failed", self._exporter)
            return False

    def shutdown(self) -> None:
        """Forward everything buffered, stop the flush thread and shut the wrapped exporter down."""
        with self._lock:
            if self._shutdown:
                return
            # Refuse new spans first, then flush: spans accepted after the last flush would be lost.
            self._shutdown = True
            self._lock.notify()
        self._thread.join(timeout=5)
        self.force_flush()
        try:
            self._exporter.shutdown()
        except Exception:
            logger.exception("otel_costs: shutdown of %r failed", self._exporter)

    # --- flushing ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                if self._shutdown:
                    return
                ready, wait = self._take_ready(self._clock())
                if not ready:
                    self._lock.wait(timeout=wait)
                    continue
                self._forwarding += 1
            try:
                self._forward(ready)
            finally:
                with self._lock:
                    self._forwarding -= 1
                    self._forwarded.notify_all()

    def _take_ready(self, now: float) -> tuple[list[tuple[_Pending, str | None]], float | None]:
        """Remove and return the traces due at ``now``; else how long until the next one is due."""
        ready: list[tuple[_Pending, str | None]] = []
        next_due: float | None = None
        for trace_id, pending in list(self._pending.items()):
            due = pending.first_seen + self._max_wait
            if pending.deadline is not None:
                due = min(due, pending.deadline)
            if due <= now:
                del self._pending[trace_id]
                self._buffered -= len(pending.spans)
                ready.append((pending, None))
            elif next_due is None or due < next_due:
                next_due = due
        return ready, None if next_due is None else max(next_due - now, 0.001)

    def _forward(self, batch: list[tuple[_Pending, str | None]]) -> None:
        if not batch:
            return
        out: list[ReadableSpan] = []
        for pending, reason in batch:
            try:
                out.extend(annotate_trace(pending.spans, partial_reason="late" if pending.late else reason))
            except Exception:
                logger.exception("otel_costs: rollup failed; forwarding %d spans as is", len(pending.spans))
                out.extend(pending.spans)
            self._remember_flushed(pending)
        if self._run_listeners:
            self._tell_runs(out)
        try:
            # The wrapped exporter's own HTTP/gRPC calls must not become spans of this pipeline.
            with suppress_instrumentation(), self._export_lock:
                result = self._exporter.export(out)
            if result is not SpanExportResult.SUCCESS:
                logger.warning("otel_costs: %r failed to export %d spans", self._exporter, len(out))
        except Exception:
            logger.exception("otel_costs: %r raised exporting %d spans", self._exporter, len(out))

    def _tell_runs(self, spans: Sequence[ReadableSpan]) -> None:
        """Hand each workflow span of ``spans`` (rolled up) to the run listeners; never raises."""
        for span in spans:
            attributes = span.attributes
            if not attributes or attributes.get(conv.GEN_AI_OPERATION_NAME) != conv.OPERATION_INVOKE_WORKFLOW:
                continue
            total = attributes.get(conv.COST_TOTAL_NANOS, 0)
            if isinstance(total, bool) or not isinstance(total, int):
                total = 0  # written by someone else as a non-integer: not a figure of ours
            for on_run_cost in self._run_listeners:
                try:
                    on_run_cost(span, total)
                except Exception:
                    logger.exception("otel_costs: run listener %r failed on span %r", on_run_cost, span.name)

    def _remember_flushed(self, pending: _Pending) -> None:
        if not self._remember or not pending.spans:
            return
        ctx = pending.spans[0].context
        if ctx is None:
            return
        with self._lock:
            self._flushed[ctx.trace_id] = None
            self._flushed.move_to_end(ctx.trace_id)
            while len(self._flushed) > self._remember:
                self._flushed.popitem(last=False)


def annotate_trace(spans: Sequence[ReadableSpan], *, partial_reason: str | None = None) -> list[ReadableSpan]:
    """Roll up the spans of one trace and return them with their ``cost.*`` rollup attributes.

    ``partial_reason`` flags every span of the trace (e.g. ``"buffer_full"``, ``"late"``).
    The same figures as ``rollup_attributes(cost_node(...), rollup(...))`` per span, computed
    over columns: no ``CostNode`` or ``NodeRollup`` per span, and a span whose subtree holds
    no cost and that is not flagged is handed on as it is. Each billable span also gets the agent,
    parent agent and workflow it ran under where it lacks them (``_agents``).
    """
    # Runs once per trace over every span the exporter forwards: the per-span steps are kept
    # few (benchmarks/bench_pipeline.py --rollup counts them).
    n = len(spans)
    span_ids: list[Hashable] = [0] * n
    parent_ids: list[Hashable | None] = [None] * n
    remote = [False] * n
    direct = [0] * n
    billable = [False] * n
    unpriced = [0] * n
    attributes_of: list[Mapping[str, Any]] = [_NO_ATTRIBUTES] * n
    targets: list[int] = []
    cost_keys = _COST_KEYS
    priced = conv.STATUS_PRICED
    fast = _PRICED_EXACTLY
    for i, span in enumerate(spans):
        span_id, parent_ids[i], remote[i] = tree_ids(span)
        if span_id is not None:
            span_ids[i] = span_id
        attributes = attributes_of[i] = readable_attributes(span)
        # Most spans carry no cost attribute: one set test over the three keys says so.
        if attributes and not attributes.keys().isdisjoint(cost_keys):
            # The common case, a call priced exactly: what own_cost (its nanos, billable, not
            # unpriced) and is_target (a target) answer for it (``_PRICED_EXACTLY``), without
            # the two calls and their tuple (tests/test_exporter.py checks the answers agree).
            raw = attributes.get(conv.COST_DIRECT_NANOS)
            status = attributes.get(conv.COST_STATUS)
            if fast and type(raw) is int and raw >= 0 and status == priced and type(status) is str:
                direct[i] = raw
                billable[i] = True
                targets.append(i)
                continue
            direct[i], billable[i], flagged = own_cost(attributes)
            if flagged:
                unpriced[i] = 1
            if is_target(attributes):
                targets.append(i)
    children_nanos, total, billable_subtree, unpriced_subtree, root_kind = rollup_columns(
        span_ids, parent_ids, remote, direct, billable, unpriced
    )
    # The agent each billable span ran under, from the tree (docs/conventions.md).
    inherited = (
        inherited_attributes(
            span_ids, parent_ids, attributes_of, targets=targets, acyclic="cycle" not in root_kind
        )
        if targets
        else _NO_INHERITED
    )
    out: list[ReadableSpan] = []
    append = out.append
    for i, span in enumerate(spans):
        kind = root_kind[i]
        if not billable_subtree[i] and kind is None and partial_reason is None:
            append(span)
            continue
        own = attributes_of[i]
        attributes = own.copy() if type(own) is dict else attributes_dict(own)
        written = inherited.get(i)
        if written:
            attributes.update(written)
        write_rollup(attributes, children_nanos[i], total[i], billable_subtree[i], unpriced_subtree[i], kind)
        if partial_reason is not None:
            attributes[conv.COST_ROLLUP_PARTIAL] = True
            attributes[conv.COST_ROLLUP_PARTIAL_REASON] = partial_reason
        append(annotated(span, attributes))
    return out


_NO_ATTRIBUTES: Mapping[str, Any] = {}
_NO_INHERITED: dict[int, dict[str, Any]] = {}
