"""CostSpanProcessor: attribution from baggage on start, pricing on end, never breaking the host."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import pytest
from opentelemetry import baggage, context
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import StatusCode

import otel_costs
from otel_costs import _sdk
from otel_costs import conventions as conv
from otel_costs.metrics import CostMetrics
from otel_costs.pipeline import CostListener, _processor
from otel_costs.pipeline._spans import with_attributes, with_events
from otel_costs.pipeline._twins import ENDED_PER_TRACE, ENDED_REASON
from otel_costs.pricing._plans import Plan
from otel_costs.pricing._usage import LlmCall
from otel_costs.testing import InMemoryPipeline, fixed_price_book


@dataclass
class Harness:
    """A provider whose spans go through a CostSpanProcessor into an in-memory exporter."""

    provider: TracerProvider
    exporter: InMemorySpanExporter
    costs: list[tuple[str, int]]

    def run(self, name: str, attributes: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
        """Start and end one span; return its exported attributes."""
        with self.provider.get_tracer("tests").start_as_current_span(name, attributes=attributes):
            pass
        (span,) = [s for s in self.exporter.get_finished_spans() if s.name == name]
        return span.attributes or {}


class Recorder:
    """A cost listener that records (span name, cost in nano-USD) and keeps the span."""

    def __init__(self, costs: list[tuple[str, int]] | None = None) -> None:
        self.costs: list[tuple[str, int]] = [] if costs is None else costs

    def on_span_cost(self, span: ReadableSpan, cost_nanos: int) -> ReadableSpan | None:
        self.costs.append((span.name, cost_nanos))
        return None


def make_harness(price_book: otel_costs.PriceBook | None = None, **kwargs: Any) -> Harness:
    exporter = InMemorySpanExporter()
    costs: list[tuple[str, int]] = []
    listeners = kwargs.pop("listeners", ())
    processor = otel_costs.CostSpanProcessor(
        SimpleSpanProcessor(exporter),
        price_book=price_book or fixed_price_book(),
        listeners=[Recorder(costs), *listeners],
        **kwargs,
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    return Harness(provider, exporter, costs)


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = make_harness()
    yield h
    h.provider.shutdown()


def chat(model: str, input_tokens: object, output_tokens: object, **extra: Any) -> dict[str, Any]:
    """The attributes of one chat call."""
    return {
        conv.GEN_AI_OPERATION_NAME: "chat",
        conv.GEN_AI_PROVIDER_NAME: "openai",
        conv.GEN_AI_REQUEST_MODEL: model,
        conv.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
        conv.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
        **extra,
    }


def with_baggage(entries: Mapping[str, object]) -> object:
    """Attach a context holding ``entries`` as baggage; return the token."""
    ctx = context.get_current()
    for key, value in entries.items():
        ctx = baggage.set_baggage(key, value, ctx)
    return context.attach(ctx)


ALL_BAGGAGE = {
    conv.BAGGAGE_WORKFLOW_ID: "01J0000000000000000000000",
    conv.BAGGAGE_WORKFLOW_NAME: "support",
    conv.BAGGAGE_AGENT_NAME: "triage",
    conv.BAGGAGE_AGENT_ID: "triage-1",
    conv.BAGGAGE_RETRY_DEPTH: "2",
    conv.BAGGAGE_USER_ID: "u-42",
    conv.BAGGAGE_TEAM_ID: "billing",
}


# --- attribution on start ----------------------------------------------------------------


def test_baggage_is_copied_onto_every_span(harness: Harness) -> None:
    """Each attribution baggage key lands on the span under its contract attribute name."""
    token = with_baggage({**ALL_BAGGAGE, "unrelated": "x"})
    try:
        attrs = harness.run("any span")
    finally:
        context.detach(token)  # type: ignore[arg-type]
    expected: dict[str, object] = {conv.BAGGAGE_TO_ATTRIBUTE[k]: v for k, v in ALL_BAGGAGE.items()}
    expected[conv.RETRY_DEPTH] = 2  # an int on spans
    assert dict(attrs) == expected


def test_custom_baggage_keys() -> None:
    """``baggage_keys`` replaces the table of baggage keys copied onto spans."""
    h = make_harness(baggage_keys={"tenant": "app.tenant"})
    token = with_baggage({"tenant": "acme", conv.BAGGAGE_USER_ID: "u"})
    try:
        attrs = h.run("s")
    finally:
        context.detach(token)  # type: ignore[arg-type]
    assert dict(attrs) == {"app.tenant": "acme"}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (conv.BAGGAGE_USER_ID, "x" * 257),
        (conv.BAGGAGE_TEAM_ID, ""),
        (conv.BAGGAGE_AGENT_NAME, 5),
        (conv.BAGGAGE_RETRY_DEPTH, "-1"),
        (conv.BAGGAGE_RETRY_DEPTH, "abc"),
        (conv.BAGGAGE_RETRY_DEPTH, "99999999"),
        (conv.BAGGAGE_RETRY_DEPTH, "10001"),
        (conv.BAGGAGE_RETRY_DEPTH, "1.5"),
        (conv.BAGGAGE_RETRY_DEPTH, " 1"),
        (conv.BAGGAGE_RETRY_DEPTH, "²"),
        (conv.BAGGAGE_RETRY_DEPTH, "١٢"),
        (conv.BAGGAGE_RETRY_DEPTH, "9" * 10_000),
    ],
    ids=repr,
)
def test_malformed_baggage_is_rejected_and_listed(harness: Harness, key: str, value: object) -> None:
    """A malformed value is not copied, its key is listed in attribution.rejected, the rest still copied."""
    token = with_baggage({**ALL_BAGGAGE, key: value})
    try:
        attrs = harness.run("s")
    finally:
        context.detach(token)  # type: ignore[arg-type]
    assert list(attrs[conv.ATTRIBUTION_REJECTED]) == [key]
    assert conv.BAGGAGE_TO_ATTRIBUTE[key] not in attrs
    assert len(attrs) == len(ALL_BAGGAGE)  # the six good keys plus attribution.rejected


@pytest.mark.parametrize(("value", "accepted"), [("x" * 256, True), ("x" * 257, False)])
def test_max_value_length_boundary(harness: Harness, value: str, accepted: bool) -> None:
    """Values up to max_value_length (256) are copied; longer ones rejected."""
    token = with_baggage({conv.BAGGAGE_USER_ID: value})
    try:
        attrs = harness.run("s")
    finally:
        context.detach(token)  # type: ignore[arg-type]
    assert (conv.USER_ID in attrs) is accepted


@pytest.mark.parametrize(
    "limits",
    [
        SpanLimits(),
        SpanLimits(max_span_attribute_length=4),
        SpanLimits(max_span_attributes=3),
        SpanLimits(max_span_attributes=0),
    ],
    ids=["default limits", "short values", "few attributes", "no attributes"],
)
def test_attribution_is_stored_as_set_attributes_would(limits: SpanLimits) -> None:
    """Attribution lands on the span exactly as span.set_attributes would put it, under any span limits."""
    start = {"user.id": "set at start", "http.method": "GET"}
    ours = InMemorySpanExporter()
    provider = TracerProvider(span_limits=limits)
    provider.add_span_processor(otel_costs.CostSpanProcessor(SimpleSpanProcessor(ours)))
    reference = InMemorySpanExporter()
    plain = TracerProvider(span_limits=limits)
    plain.add_span_processor(SimpleSpanProcessor(reference))
    baggage_entries = {**ALL_BAGGAGE, conv.BAGGAGE_RETRY_DEPTH: "x"}  # one rejected key too
    token = with_baggage(baggage_entries)
    try:
        for _ in range(2):  # the second span reuses the prepared attribution
            provider.get_tracer("t").start_span("s", attributes=start).end()
    finally:
        context.detach(token)  # type: ignore[arg-type]
    expected = {
        conv.BAGGAGE_TO_ATTRIBUTE[k]: v for k, v in baggage_entries.items() if k != conv.BAGGAGE_RETRY_DEPTH
    }
    expected[conv.ATTRIBUTION_REJECTED] = [conv.BAGGAGE_RETRY_DEPTH]  # type: ignore[assignment]
    span = plain.get_tracer("t").start_span("s", attributes=start)
    span.set_attributes(expected)  # type: ignore[arg-type]
    span.end()
    (want,) = reference.get_finished_spans()
    for got in ours.get_finished_spans():
        assert list((got.attributes or {}).items()) == list((want.attributes or {}).items())
        assert got.dropped_attributes == want.dropped_attributes
    provider.shutdown()
    plain.shutdown()


def test_on_ending_reaches_the_next_processor() -> None:
    """The SDK's on-ending hook is handed to the wrapped processor, with the span still ending."""
    seen: list[tuple[str, bool]] = []

    class Ending(SpanProcessor):
        def _on_ending(self, span: Any) -> None:
            seen.append((span.name, span.end_time is not None))

    provider = TracerProvider()
    provider.add_span_processor(otel_costs.CostSpanProcessor(Ending(), price_book=fixed_price_book()))
    provider.get_tracer("t").start_span("work").end()
    assert seen == [("work", True)]


def test_odd_attribute_names_go_through_set_attributes() -> None:
    """An empty attribute name in baggage_keys is dropped and counted by the SDK, as set_attributes does."""
    h = make_harness(baggage_keys={"tenant": "", "team": "app.team"})
    token = with_baggage({"tenant": "acme", "team": "t"})
    try:
        h.provider.get_tracer("t").start_span("s").end()
    finally:
        context.detach(token)  # type: ignore[arg-type]
    (span,) = h.exporter.get_finished_spans()
    assert dict(span.attributes or {}) == {"app.team": "t"}
    assert span.dropped_attributes == 1
    h.provider.shutdown()


def test_attribution_follows_the_current_baggage(harness: Harness) -> None:
    """Spans take the attribution of the baggage current when they start, as it changes back and forth."""
    seen = []
    for workflow in ["w1", "w2", "w1", "w1", "w3"]:
        token = with_baggage({conv.BAGGAGE_WORKFLOW_ID: workflow, conv.BAGGAGE_TEAM_ID: "t"})
        try:
            seen.append(harness.run(f"span in {workflow} #{len(seen)}")[conv.WORKFLOW_ID])
        finally:
            context.detach(token)  # type: ignore[arg-type]
    assert seen == ["w1", "w2", "w1", "w1", "w3"]
    assert conv.WORKFLOW_ID not in harness.run("outside any workflow")


class Incomparable:
    """A baggage value that can be neither hashed nor compared."""

    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("cannot compare")


@pytest.mark.parametrize("value", [[1, 2], Incomparable()], ids=["list", "incomparable"])
def test_unhashable_baggage_value_is_rejected(harness: Harness, value: object) -> None:
    """A baggage value that cannot be a cache key is still rejected and listed, the rest copied."""
    token = with_baggage({conv.BAGGAGE_TEAM_ID: "billing", conv.BAGGAGE_USER_ID: "u-1"})
    try:
        assert harness.run("before")[conv.USER_ID] == "u-1"
    finally:
        context.detach(token)  # type: ignore[arg-type]
    for name in ["first", "second"]:
        token = with_baggage({conv.BAGGAGE_TEAM_ID: "billing", conv.BAGGAGE_USER_ID: value})
        try:
            attrs = harness.run(name)
        finally:
            context.detach(token)  # type: ignore[arg-type]
        assert attrs[conv.TEAM_ID] == "billing"
        assert list(attrs[conv.ATTRIBUTION_REJECTED]) == [conv.BAGGAGE_USER_ID]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"next_processor": object()}, TypeError), ({"max_value_length": 0}, ValueError)],
)
def test_constructor_validates(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """A next processor that is not a SpanProcessor, or a max_value_length below 1, is refused at once."""
    args: dict[str, Any] = {"next_processor": SimpleSpanProcessor(InMemorySpanExporter()), **kwargs}
    with pytest.raises(error):
        otel_costs.CostSpanProcessor(args.pop("next_processor"), **args)


# --- pricing on end ----------------------------------------------------------------------


def test_llm_span_is_priced(harness: Harness) -> None:
    """A chat span gets cost.direct, gen_ai.usage.cost, exact nanos, the breakdown and what priced it."""
    attrs = harness.run("chat", chat("gpt-5.2", 1500, 500))
    assert attrs[conv.COST_STATUS] == conv.STATUS_PRICED
    assert attrs[conv.COST_DIRECT] == attrs[conv.GEN_AI_USAGE_COST] == 0.012
    assert attrs[conv.COST_DIRECT_NANOS] == 12_000_000
    assert (attrs[conv.COST_INPUT], attrs[conv.COST_OUTPUT]) == (0.0045, 0.0075)
    assert (attrs[conv.COST_CACHE_READ], attrs[conv.COST_CACHE_WRITE]) == (0.0, 0.0)
    assert attrs[conv.COST_CURRENCY] == conv.CURRENCY_USD
    assert attrs[conv.COST_PROVIDER] == "openai"
    assert attrs[conv.COST_MODEL] == "gpt-5.2"
    assert attrs[conv.COST_PRICE_SOURCE] == conv.PRICE_SOURCE_OVERRIDE
    assert conv.COST_STATUS_REASON not in attrs
    assert harness.costs == [("chat", 12_000_000)]


def test_partial_usage_stays_flagged_partial(harness: Harness) -> None:
    """A span the capture layer marked partial is priced for what was seen and stays partial."""
    attrs = harness.run("chat", chat("gpt-5.2", 1500, 500, **{conv.COST_STATUS: conv.STATUS_PARTIAL}))
    assert attrs[conv.COST_STATUS] == conv.STATUS_PARTIAL
    assert attrs[conv.COST_DIRECT_NANOS] == 12_000_000


@pytest.mark.parametrize("operation", sorted(conv.AGGREGATE_OPERATIONS))
def test_aggregate_usage_is_never_priced(harness: Harness, operation: str) -> None:
    """Usage on agent/workflow/tool spans is the sum of child calls: flagged aggregate, no direct cost."""
    attrs = harness.run("agg", chat("gpt-5.2", 1500, 500, **{conv.GEN_AI_OPERATION_NAME: operation}))
    assert attrs[conv.COST_STATUS] == conv.STATUS_AGGREGATE
    assert conv.COST_DIRECT not in attrs and conv.COST_DIRECT_NANOS not in attrs
    assert harness.costs == []


def test_unknown_model_is_unpriced_not_zero(harness: Harness) -> None:
    """A model without a price is flagged unpriced with a reason, with no cost.direct at all."""
    attrs = harness.run("chat", chat("no-such-model-xyz", 10, 10))
    assert attrs[conv.COST_STATUS] == conv.STATUS_UNPRICED
    assert attrs[conv.COST_STATUS_REASON]
    assert conv.COST_DIRECT not in attrs and conv.GEN_AI_USAGE_COST not in attrs
    assert attrs[conv.COST_MODEL] == "no-such-model-xyz"
    assert harness.costs == [("chat", 0)]


@pytest.mark.parametrize(
    ("input_tokens", "status"),
    [
        (-1, conv.STATUS_INVALID_USAGE),
        (math.nan, conv.STATUS_INVALID_USAGE),
        (math.inf, conv.STATUS_INVALID_USAGE),
        (1.5, conv.STATUS_INVALID_USAGE),
        ("abc", conv.STATUS_INVALID_USAGE),
        ("-5", conv.STATUS_INVALID_USAGE),
        (True, conv.STATUS_INVALID_USAGE),
        (10**12, conv.STATUS_INVALID_USAGE),
        ("9" * 400, conv.STATUS_INVALID_USAGE),
        ([1, 2], conv.STATUS_INVALID_USAGE),
        (1500.0, conv.STATUS_PRICED),  # whole floats: JSON round-trips
        ("1500", conv.STATUS_PRICED),  # digit strings: stringifying bridges
    ],
    ids=repr,
)
def test_bad_token_counts_have_a_defined_outcome(harness: Harness, input_tokens: object, status: str) -> None:
    """Unreadable token counts give invalid_usage with a reason and no cost; the span is still exported."""
    attrs = harness.run("chat", chat("gpt-5.2", input_tokens, 500))
    assert attrs[conv.COST_STATUS] == status
    if status == conv.STATUS_PRICED:
        assert attrs[conv.COST_DIRECT_NANOS] == 12_000_000
    else:
        assert conv.COST_DIRECT not in attrs
        assert conv.GEN_AI_USAGE_INPUT_TOKENS in attrs[conv.COST_STATUS_REASON]
        assert harness.costs == [("chat", 0)]


def test_span_without_usage_passes_through_untouched(harness: Harness) -> None:
    """A span without usage attributes is handed on as is, without cost attributes."""
    attrs = harness.run("http GET", {"http.method": "GET"})
    assert dict(attrs) == {"http.method": "GET"}
    assert harness.costs == []


class Broken:
    """A cost listener with a bug."""

    def on_span_cost(self, span: ReadableSpan, cost_nanos: int) -> ReadableSpan | None:
        raise RuntimeError("listener bug")


def test_raising_cost_listener_does_not_break_the_pipeline(caplog: pytest.LogCaptureFixture) -> None:
    """A listener that raises is logged; the span is exported and later listeners still run."""
    after = Recorder()
    h = make_harness(listeners=[Broken(), after])
    with caplog.at_level(logging.ERROR, logger="otel_costs"):
        attrs = h.run("chat", chat("gpt-5.2", 1500, 500))
    assert attrs[conv.COST_DIRECT_NANOS] == 12_000_000
    assert [nanos for _, nanos in after.costs] == [12_000_000]
    assert "listener" in caplog.text
    h.provider.shutdown()


class Stamp:
    """A cost listener that hands on a replacement span (as budgets add threshold events)."""

    def __init__(self, mark: str) -> None:
        self.mark = mark
        self.seen: list[object] = []

    def on_span_cost(self, span: ReadableSpan, cost_nanos: int) -> ReadableSpan | None:
        self.seen.append((span.attributes or {}).get("stamp"))
        return with_attributes(span, {"stamp": self.mark})


def test_listeners_run_in_order_and_may_replace_the_span() -> None:
    """Each listener gets the span the one before returned; the last replacement is exported."""
    first, second = Stamp("first"), Stamp("second")
    h = make_harness(listeners=[first, second])
    attrs = h.run("chat", chat("gpt-5.2", 1500, 500))
    assert (first.seen, second.seen) == ([None], ["first"])
    assert attrs["stamp"] == "second"
    assert attrs[conv.COST_DIRECT_NANOS] == 12_000_000
    assert h.costs == [("chat", 12_000_000)]
    h.provider.shutdown()


def test_a_listener_without_on_span_cost_is_refused() -> None:
    """A plain callable (the removed cost_listeners= style) is a TypeError naming the protocol."""
    with pytest.raises(TypeError, match="on_span_cost"):
        otel_costs.CostSpanProcessor(
            SimpleSpanProcessor(InMemorySpanExporter()),
            listeners=[lambda span, nanos: None],  # type: ignore[list-item]
        )


def test_budget_manager_and_cost_metrics_are_cost_listeners() -> None:
    """The library's own listeners satisfy the CostListener protocol."""
    assert isinstance(otel_costs.BudgetManager([]), CostListener)
    assert isinstance(CostMetrics(), CostListener)


class RaisingPriceBook(otel_costs.PriceBook):
    """A price book whose span pricing raises, as a buggy subclass or a broken data snapshot would."""

    def _cost_attributes(self, attributes: dict[str, object], start_ns: int | None) -> dict[str, Any] | None:
        raise RuntimeError("price book bug")


def test_raising_price_book_does_not_break_the_host(caplog: pytest.LogCaptureFixture) -> None:
    """A price book that raises leaves the span exported and flagged unpriced, never an exception.

    Internals: it overrides ``PriceBook._cost_attributes``, the processor's one call to the book.
    """
    h = make_harness(price_book=RaisingPriceBook(use_genai_prices=False))
    with caplog.at_level(logging.ERROR, logger="otel_costs"):
        attrs = h.run("chat", chat("gpt-5.2", 1500, 500))
    assert attrs[conv.COST_STATUS] == conv.STATUS_UNPRICED
    assert "price book bug" in attrs[conv.COST_STATUS_REASON]
    assert conv.COST_DIRECT not in attrs
    assert h.costs == [("chat", 0)]
    h.provider.shutdown()


@pytest.mark.parametrize("fast_copy", [True, False], ids=["field copy", "constructor"])
def test_costed_copy_keeps_the_span(monkeypatch: pytest.MonkeyPatch, fast_copy: bool) -> None:
    """The costed copy of a span keeps everything but its attributes, whichever way it is copied.

    Internals: it turns ``_sdk.HAS_SPAN_LAYOUT`` off to test the public constructor path too.
    """
    monkeypatch.setattr(_sdk, "HAS_SPAN_LAYOUT", fast_copy)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=5, max_events=1))
    provider.add_span_processor(
        otel_costs.CostSpanProcessor(SimpleSpanProcessor(exporter), price_book=fixed_price_book())
    )
    tracer = provider.get_tracer("tests", "1.0")
    with tracer.start_as_current_span("parent") as parent:
        span = tracer.start_span("chat", attributes={"early": 1, **chat("gpt-5.2", 1500, 500)})
        span.add_event("dropped")  # the SDK keeps the newest events
        span.add_event("kept")
        span.set_status(StatusCode.ERROR, "boom")
        span.end()
    costed = next(s for s in exporter.get_finished_spans() if s.name == "chat")
    assert (costed.attributes or {})[conv.COST_DIRECT_NANOS] == 12_000_000
    assert "early" not in (costed.attributes or {})  # dropped by the SDK limit, and counted
    assert costed.dropped_attributes == 1
    assert [event.name for event in costed.events] == ["kept"]
    assert costed.context == span.get_span_context()
    assert costed.parent == parent.get_span_context()
    ended = cast(ReadableSpan, span)
    assert (costed.start_time, costed.end_time) == (ended.start_time, ended.end_time)
    assert costed.status.status_code is StatusCode.ERROR
    assert costed.resource is provider.resource
    assert costed.instrumentation_scope == InstrumentationScope("tests", "1.0", None, None)
    assert costed.dropped_events == 1
    provider.shutdown()


def test_copy_with_events_keeps_the_span_and_adds_after_its_own() -> None:
    """A copy with more events (budget alerts) keeps the span's own events first, attributes, dropped counts.

    Internals: ``pipeline._spans.with_events`` is the span-copy helper budgets use for their events.
    """
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_events=1))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("t").start_span("chat", attributes={"a": 1})
    span.add_event("dropped")
    span.add_event("own")
    span.end()
    (ended,) = exporter.get_finished_spans()
    copy = with_events(ended, [Event("budget.threshold_crossed", {"budget": "team"}, ended.end_time)])
    assert [event.name for event in copy.events] == ["own", "budget.threshold_crossed"]
    assert copy.dropped_events == 1
    assert dict(copy.attributes or {}) == {"a": 1}
    assert (copy.context, copy.start_time, copy.end_time) == (ended.context, ended.start_time, ended.end_time)
    provider.shutdown()


# --- flushing ----------------------------------------------------------------------------


@pytest.mark.parametrize("inner", [SimpleSpanProcessor, BatchSpanProcessor])
def test_force_flush_reaches_the_rollup_exporter(inner: Callable[[SpanExporter], SpanProcessor]) -> None:
    """provider.force_flush() forwards the traces a CostRollupExporter behind Simple/Batch holds."""
    exporter = InMemorySpanExporter()
    rollup = otel_costs.CostRollupExporter(exporter, linger=30.0, max_wait=60.0)
    provider = TracerProvider()
    provider.add_span_processor(otel_costs.CostSpanProcessor(inner(rollup), price_book=fixed_price_book()))
    tracer = provider.get_tracer("t")
    with (
        tracer.start_as_current_span("root"),
        tracer.start_as_current_span("chat", attributes=chat("gpt-5.2", 1, 1)),
    ):
        pass
    assert provider.force_flush() is True
    names: Sequence[str] = [s.name for s in exporter.get_finished_spans()]
    assert sorted(names) == ["chat", "root"]
    provider.shutdown()


def test_one_call_traced_twice_is_priced_once(pipeline: InMemoryPipeline) -> None:
    """Two spans of a trace with one gen_ai.response.id: the second is flagged duplicate, not priced."""
    tracer = pipeline.tracer_provider.get_tracer("t")
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-5.2",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.usage.input_tokens": 1500,
        "gen_ai.usage.output_tokens": 500,
    }
    with tracer.start_as_current_span("root"):
        tracer.start_span("sdk span", attributes=attrs).end()
        tracer.start_span("instrumentation span", attributes=attrs).end()
    assert pipeline.attributes("sdk span")[conv.COST_STATUS] == conv.STATUS_PRICED
    assert pipeline.attributes("instrumentation span")[conv.COST_STATUS] == conv.STATUS_DUPLICATE
    assert conv.COST_DIRECT in pipeline.attributes("sdk span")
    assert conv.COST_DIRECT not in pipeline.attributes("instrumentation span")
    assert pipeline.attributes("root")[conv.COST_TOTAL_NANOS] == 12_000_000


def _response_statuses(harness: Harness, ids: Sequence[str]) -> list[Any]:
    """The ``cost.status`` of one call span per response id of ``ids``, all in one trace."""
    tracer = harness.provider.get_tracer("tests")
    with tracer.start_as_current_span("root"):
        for response_id in ids:
            attributes = chat("gpt-5.2", 10, 5, **{conv.GEN_AI_RESPONSE_ID: response_id})
            tracer.start_span(response_id, attributes=attributes).end()
    spans = [s for s in harness.exporter.get_finished_spans() if s.name != "root"]
    return [(s.attributes or {}).get(conv.COST_STATUS) for s in spans]


def test_a_response_is_recognised_after_the_bound_of_other_responses(harness: Harness) -> None:
    """A response id counted 4,096 responses ago (the remembered bound) is still a duplicate."""
    others = [f"r-{i}" for i in range(_processor._SEEN_RESPONSES - 1)]
    statuses = _response_statuses(harness, ["r-first", *others, "r-first"])
    assert statuses[:-1] == [conv.STATUS_PRICED] * (len(others) + 1)
    assert statuses[-1] == conv.STATUS_DUPLICATE


def test_the_remembered_responses_stay_bounded(harness: Harness) -> None:
    """Past the bound by one batch, the oldest batch of response ids is forgotten at once.

    It reads the processor's private table: its size is the memory bound, not seen through spans.
    """
    (processor,) = harness.provider._active_span_processor._span_processors
    assert isinstance(processor, otel_costs.CostSpanProcessor)
    bound = _processor._SEEN_RESPONSES + _processor._SEEN_BATCH
    statuses = _response_statuses(harness, [f"r-{i}" for i in range(bound + 1)] + ["r-0", f"r-{bound}"])
    assert len(processor._seen) <= bound
    # r-0 was in the batch forgotten (priced again); the latest one is still known.
    assert statuses[-2:] == [conv.STATUS_PRICED, conv.STATUS_DUPLICATE]


@pytest.mark.parametrize(
    "attributes",
    [
        {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-5.2"},
        {"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "text-embedding-3-small"},
        {"openinference.span.kind": "LLM", "llm.model_name": "gpt-5.2"},
    ],
)
def test_model_call_without_usage_is_flagged_not_zero(
    pipeline: InMemoryPipeline, attributes: dict[str, Any]
) -> None:
    """A model call that reported no usage (a stream read without its usage record) is unpriced, not $0."""
    tracer = pipeline.tracer_provider.get_tracer("t")
    with tracer.start_as_current_span("root"):
        tracer.start_span("call", attributes=attributes).end()
    call = pipeline.attributes("call")
    assert call[conv.COST_STATUS] == conv.STATUS_UNPRICED
    assert "usage" in call[conv.COST_STATUS_REASON]
    assert pipeline.attributes("root")[conv.COST_ROLLUP_UNPRICED] == 1


def test_unpriced_call_traced_twice_is_one_unpriced_call_in_the_rollup() -> None:
    """One unknown-model call on two spans (one response id) is one unpriced call in the rollup,
    and two lookups in ``unpriced_counts``, as docs/pricing.md says."""
    book = fixed_price_book()
    call = chat("no-such-model-xyz", 10, 5, **{conv.GEN_AI_RESPONSE_ID: "r-1"})
    with InMemoryPipeline(price_book=book) as pipeline:
        tracer = pipeline.tracer_provider.get_tracer("t")
        with tracer.start_as_current_span("root"):
            tracer.start_span("first", attributes=call).end()
            tracer.start_span("second", attributes=call).end()
        statuses = [pipeline.attributes(name)[conv.COST_STATUS] for name in ("first", "second")]
        assert statuses == [conv.STATUS_UNPRICED, conv.STATUS_DUPLICATE]
        assert pipeline.attributes("root")[conv.COST_ROLLUP_UNPRICED] == 1
    assert dict(book.unpriced_counts) == {"openai/no-such-model-xyz": 2}


@pytest.mark.parametrize("operation", ["invoke_agent", "execute_tool", "create_agent"])
def test_aggregate_operations_without_usage_get_no_cost_status(
    pipeline: InMemoryPipeline, operation: str
) -> None:
    """Agent, tool and workflow spans without usage are plain spans: no cost status at all."""
    tracer = pipeline.tracer_provider.get_tracer("t")
    tracer.start_span("op", attributes={"gen_ai.operation.name": operation}).end()
    assert conv.COST_STATUS not in pipeline.attributes("op")


# --- fast path -----------------------------------------------------------------------------


class PassThroughPriceBook(otel_costs.PriceBook):
    """A subclass that overrides price() (unchanged): the processor then never takes its fast path."""

    def price(self, call: LlmCall, *, at: datetime | None = None) -> otel_costs.CostBreakdown:
        return super().price(call, at=at)


FAST_PATH_CASES: list[dict[str, Any]] = [
    chat("gpt-5.2", 1500, 500),
    chat("gpt-5.2", 1500, 500, **{"gen_ai.usage.cache_read.input_tokens": 1000}),
    chat(
        "claude-sonnet-4-5",
        40_000,
        1_200,
        **{"gen_ai.usage.cache_read.input_tokens": 30_000, "gen_ai.usage.cache_creation.input_tokens": 5_000},
    ),
    chat("gpt-4o", 123_457, 9_876, **{"gen_ai.usage.reasoning.output_tokens": 5_000}),  # genai-prices
    chat("gemini-2.5-pro", 250_000, 2_000),  # tiered in genai-prices
    chat("gpt-5.2", 1500, 500, **{conv.COST_STATUS: conv.STATUS_PARTIAL}),
    chat("gpt-5.2", 1500, 500, **{conv.GEN_AI_RESPONSE_ID: "r-1"}),
    chat("gpt-5.2", 1500, 500, **{conv.GEN_AI_RESPONSE_ID: "r-1"}),  # the duplicate
    chat("no-such-model-xyz", 10, 10),
    chat("gpt-5.2", 1500.0, 500),
    chat("gpt-5.2", 10, 500, **{"gen_ai.usage.cache_read.input_tokens": 11}),
    chat("gpt-5.2", 1500, 500, **{conv.GEN_AI_OPERATION_NAME: "invoke_agent"}),
    {conv.GEN_AI_OPERATION_NAME: "chat", conv.GEN_AI_REQUEST_MODEL: "gpt-5.2"},
    {"http.method": "GET"},
]


def _exported(price_book: otel_costs.PriceBook) -> tuple[list[list[tuple[str, Any]]], list[tuple[str, int]]]:
    """The attributes (in order) of FAST_PATH_CASES exported through a processor, and the listened costs."""
    h = make_harness(price_book=price_book)
    tracer = h.provider.get_tracer("t")
    with tracer.start_as_current_span("root"):
        for index, attributes in enumerate(FAST_PATH_CASES):
            tracer.start_span(f"call {index}", attributes=attributes, start_time=1_780_000_000 * 10**9).end()
    spans = sorted(h.exporter.get_finished_spans(), key=lambda span: span.name)
    h.provider.shutdown()
    return [list((span.attributes or {}).items()) for span in spans], sorted(h.costs)


def test_fast_path_exports_exactly_what_the_price_book_path_does() -> None:
    """Spans priced on the fast path carry the same attributes, in the same order, as through price()."""
    overrides: dict[str, dict[str, object]] = {
        "gpt-5.2": {"input": 3, "output": 15, "cached_input": 0.3},
        "claude-sonnet-4-5": {"input": 3, "output": 15, "cached_input": 0.3, "cache_write": 3.75},
    }
    fast = _exported(otel_costs.PriceBook(overrides))
    slow = _exported(PassThroughPriceBook(overrides))
    assert fast == slow
    assert sum(1 for _, nanos in fast[1] if nanos > 0) >= 6  # really priced, not all skipped
    # The book's own route prices a PriceBook's spans; a subclass's price() is asked for its own.
    assert otel_costs.PriceBook(overrides)._own_route is True
    assert PassThroughPriceBook(overrides)._own_route is False


def test_fast_path_failure_falls_back_to_the_price_book(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """If the fast quote raises, the span is priced through price() and the error is logged."""
    book = fixed_price_book()

    def broken(*args: object) -> None:
        raise RuntimeError("quote bug")

    monkeypatch.setattr(Plan, "span_costs", broken)
    h = make_harness(price_book=book)
    with caplog.at_level(logging.ERROR, logger="otel_costs"):
        attrs = h.run("chat", chat("gpt-5.2", 1500, 500))
    assert attrs[conv.COST_DIRECT_NANOS] == 12_000_000
    assert "fast pricing failed" in caplog.text
    h.provider.shutdown()


# --- one call traced by two instrumentations, nested: counted once --------------------------------


def _oi_llm(model: str, prompt: int, completion: int, **extra: Any) -> dict[str, Any]:
    """The attributes of an OpenInference LLM span (no response id, no cache counts)."""
    return {
        conv.OI_SPAN_KIND: "LLM",
        conv.OI_MODEL_NAME: model,
        conv.OI_PROVIDER: "openai",
        conv.OI_TOKEN_COUNT_PROMPT: prompt,
        conv.OI_TOKEN_COUNT_COMPLETION: completion,
        **extra,
    }


def _nested(harness: Harness, outer: dict[str, Any], inner: dict[str, Any]) -> tuple[Mapping[str, Any], ...]:
    tracer = harness.provider.get_tracer("tests")
    with (
        tracer.start_as_current_span("outer", attributes=outer),
        tracer.start_as_current_span("inner", attributes=inner),
    ):
        pass
    spans = {s.name: s.attributes or {} for s in harness.exporter.get_finished_spans()}
    return spans["outer"], spans["inner"]


def test_nested_call_with_fuller_usage_is_counted_and_the_outer_is_duplicate(harness: Harness) -> None:
    """An SDK span with cache counts inside an OpenInference LLM span: inner priced, outer duplicate."""
    inner_attrs = chat("gpt-5.2", 1500, 500, **{conv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 1000})
    outer, inner = _nested(harness, _oi_llm("gpt-5.2", 1500, 500), inner_attrs)
    assert inner[conv.COST_STATUS] == conv.STATUS_PRICED
    assert outer[conv.COST_STATUS] == conv.STATUS_DUPLICATE
    assert "nested" in str(outer[conv.COST_STATUS_REASON]) and conv.COST_DIRECT_NANOS not in outer
    assert [name for name, _ in harness.costs] == ["inner"]


def test_nested_call_counts_the_outer_when_its_usage_is_fuller(harness: Harness) -> None:
    """When the outer span has the fuller usage (reasoning) it is priced and the inner is duplicate."""
    outer_attrs = chat("gpt-5.2", 1500, 500, **{conv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 100})
    outer, inner = _nested(harness, outer_attrs, _oi_llm("openai/gpt-5.2", 1500, 500))
    assert (outer[conv.COST_STATUS], inner[conv.COST_STATUS]) == (conv.STATUS_PRICED, conv.STATUS_DUPLICATE)
    assert [name for name, _ in harness.costs] == ["outer"]


def test_nested_calls_for_another_model_are_both_counted(harness: Harness) -> None:
    """A call for another model inside a model-call span is a call of its own: both are priced."""
    outer, inner = _nested(harness, chat("gpt-5.2", 1500, 500), chat("gemini-3-pro", 100, 10))
    assert (outer[conv.COST_STATUS], inner[conv.COST_STATUS]) == (conv.STATUS_PRICED, conv.STATUS_PRICED)
    assert sorted(name for name, _ in harness.costs) == ["inner", "outer"]


def test_nested_call_without_id_is_duplicate_of_one_with_an_id(harness: Harness) -> None:
    """Only the inner span has a ``gen_ai.response.id``: the structure still says one call."""
    outer, inner = _nested(
        harness, _oi_llm("gpt-5.2", 1500, 500), chat("gpt-5.2", 1500, 500, **{conv.GEN_AI_RESPONSE_ID: "r-1"})
    )
    assert sorted([outer[conv.COST_STATUS], inner[conv.COST_STATUS]]) == [
        conv.STATUS_DUPLICATE,
        conv.STATUS_PRICED,
    ]
    assert len(harness.costs) == 1


def test_held_span_is_released_by_force_flush_when_its_outer_span_never_ends(harness: Harness) -> None:
    """A nested call whose outer span is still open is priced as it is on force_flush: never lost."""
    tracer = harness.provider.get_tracer("tests")
    outer = tracer.start_span("outer", attributes=_oi_llm("gpt-5.2", 1, 1))
    with (
        trace_api.use_span(outer),
        tracer.start_as_current_span("inner", attributes=chat("gpt-5.2", 1500, 500)),
    ):
        pass
    assert [s.name for s in harness.exporter.get_finished_spans()] == []
    harness.provider.force_flush()
    (inner,) = harness.exporter.get_finished_spans()
    assert (inner.attributes or {})[conv.COST_STATUS] == conv.STATUS_PRICED
    outer.end()
    spans = {s.name: s.attributes or {} for s in harness.exporter.get_finished_spans()}
    assert spans["outer"][conv.COST_STATUS] == conv.STATUS_PRICED  # released before: no longer paired


def _statuses(harness: Harness) -> dict[str, Any]:
    return {s.name: (s.attributes or {}).get(conv.COST_STATUS) for s in harness.exporter.get_finished_spans()}


def test_sibling_call_spans_of_two_scopes_are_counted_once(harness: Harness) -> None:
    """An instrumentation's LLM span never made current and the capture span beside it (same
    trace, same model, another scope) are one call: the capture is priced, the other duplicate."""
    agent = harness.provider.get_tracer("tests").start_span("invoke_agent researcher")
    with trace_api.use_span(agent, end_on_exit=True):
        llm = harness.provider.get_tracer("openinference").start_span(
            "ChatOpenAI", attributes={conv.OI_SPAN_KIND: "LLM"}
        )
        with harness.provider.get_tracer("otel_costs.httpx").start_as_current_span(
            "chat gpt-5.2", attributes=chat("gpt-5.2", 1500, 500)
        ):
            pass
        assert harness.costs == []  # held until the LLM span ends
        llm.set_attributes(_oi_llm("gpt-5.2", 1500, 500))
        llm.end()
    assert _statuses(harness) == {
        "chat gpt-5.2": conv.STATUS_PRICED,
        "ChatOpenAI": conv.STATUS_DUPLICATE,
        "invoke_agent researcher": None,
    }
    assert [name for name, _ in harness.costs] == ["chat gpt-5.2"]


@pytest.mark.parametrize("later_calls", [ENDED_PER_TRACE - 1, ENDED_PER_TRACE])
def test_a_call_known_only_at_its_end_is_a_duplicate_of_its_twin_that_ended(
    harness: Harness, later_calls: int
) -> None:
    """An LLM span with no kind marker at start, overlapping a capture span of its model that ended
    counted, is that call's duplicate while the capture is among its trace's last calls kept."""
    capture = harness.provider.get_tracer("otel_costs.httpx")
    with trace_api.use_span(harness.provider.get_tracer("tests").start_span("agent"), end_on_exit=True):
        llm = harness.provider.get_tracer("openinference").start_span("ChatOpenAI")
        with capture.start_as_current_span("chat gpt-5.2", attributes=chat("gpt-5.2", 1500, 500)):
            pass
        for k in range(later_calls):  # calls of another model, ended later in the trace
            with capture.start_as_current_span(f"other-{k}", attributes=chat("gemini-3-pro", 10, 5)):
                pass
        llm.set_attributes(_oi_llm("gpt-5.2", 1500, 500))
        llm.end()
    llm_span = harness.exporter.get_finished_spans()[-2].attributes or {}
    if later_calls < ENDED_PER_TRACE:
        assert llm_span[conv.COST_STATUS] == conv.STATUS_DUPLICATE
        assert llm_span[conv.COST_STATUS_REASON] == ENDED_REASON
    else:  # the capture's record was dropped for the later ones: the bound's documented miss
        assert llm_span[conv.COST_STATUS] == conv.STATUS_PRICED


def test_call_spans_nested_through_an_http_span_are_counted_once(harness: Harness) -> None:
    """A capture span under an HTTP client span under the LLM span (not its parent) is still paired."""
    with (
        harness.provider.get_tracer("openllmetry").start_as_current_span(
            "openai.chat", attributes=chat("gpt-5.2", 1500, 500)
        ),
        harness.provider.get_tracer("httpx").start_as_current_span(
            "POST", attributes={"http.request.method": "POST"}
        ),
        harness.provider.get_tracer("otel_costs.httpx").start_as_current_span(
            "chat gpt-5.2",
            attributes=chat("gpt-5.2", 1500, 500, **{conv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 1000}),
        ),
    ):
        pass
    statuses = _statuses(harness)
    assert (statuses["chat gpt-5.2"], statuses["openai.chat"]) == (conv.STATUS_PRICED, conv.STATUS_DUPLICATE)
    assert len(harness.costs) == 1


def test_a_capture_span_under_an_llm_span_without_usage_is_priced(harness: Harness) -> None:
    """Under a model-call span that names the model but reports no usage, the capture's reading is priced."""
    with (
        harness.provider.get_tracer("openllmetry").start_as_current_span(
            "openai.response",
            attributes={conv.GEN_AI_OPERATION_NAME: "chat", conv.GEN_AI_REQUEST_MODEL: "gpt-5.2"},
        ),
        harness.provider.get_tracer("otel_costs.httpx").start_as_current_span(
            "chat gpt-5.2", attributes=chat("gpt-5.2", 1500, 500)
        ),
    ):
        pass
    assert _statuses(harness)["chat gpt-5.2"] == conv.STATUS_PRICED
    assert [name for name, _ in harness.costs] == ["chat gpt-5.2"]


def test_concurrent_calls_of_one_scope_in_one_trace_are_both_priced(harness: Harness) -> None:
    """Two overlapping calls of one model from one instrumentation scope (parallel calls) are two calls."""
    tracer = harness.provider.get_tracer("otel_costs.httpx")
    with tracer.start_as_current_span("workflow"):
        first = tracer.start_span("first", attributes=chat("gpt-5.2", 1500, 500))
        with tracer.start_as_current_span("second", attributes=chat("gpt-5.2", 100, 10)):
            pass
        first.end()
    statuses = _statuses(harness)
    assert (statuses["first"], statuses["second"]) == (conv.STATUS_PRICED, conv.STATUS_PRICED)
    assert sorted(name for name, _ in harness.costs) == ["first", "second"]


def test_each_open_call_pairs_once_per_scope(harness: Harness) -> None:
    """An open LLM span pairs with one capture span: a second overlapping capture call is its own call."""
    agent = harness.provider.get_tracer("tests").start_span("agent")
    capture = harness.provider.get_tracer("otel_costs.httpx")
    with trace_api.use_span(agent, end_on_exit=True):
        llm = harness.provider.get_tracer("openinference").start_span(
            "ChatOpenAI", attributes=_oi_llm("gpt-5.2", 1500, 500)
        )
        for name in ("capture-1", "capture-2"):
            with capture.start_as_current_span(name, attributes=chat("gpt-5.2", 1500, 500)):
                pass
        llm.end()
    statuses = _statuses(harness)
    assert sorted(str(statuses[n]) for n in ("capture-1", "capture-2", "ChatOpenAI")) == [
        conv.STATUS_DUPLICATE,
        conv.STATUS_PRICED,
        conv.STATUS_PRICED,
    ]
    assert len(harness.costs) == 2


def test_sibling_calls_of_other_models_are_not_paired(harness: Harness) -> None:
    """A capture span beside an open LLM span of another model goes on at once, priced."""
    with harness.provider.get_tracer("tests").start_as_current_span("agent"):
        llm = harness.provider.get_tracer("openinference").start_span(
            "ChatOpenAI", attributes=_oi_llm("gemini-3-pro", 1, 1)
        )
        with harness.provider.get_tracer("otel_costs.httpx").start_as_current_span(
            "chat gpt-5.2", attributes=chat("gpt-5.2", 1500, 500)
        ):
            pass
        assert [name for name, _ in harness.costs] == ["chat gpt-5.2"]
        llm.end()
    assert sorted(name for name, _ in harness.costs) == ["ChatOpenAI", "chat gpt-5.2"]


def test_open_call_tracking_is_bounded(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Model-call spans that never end are forgotten past the bound; a later call is priced at once."""
    from otel_costs.pipeline import _processor

    monkeypatch.setattr(_processor, "MAX_OPEN_CALLS", 3)
    tracer = harness.provider.get_tracer("openinference")
    for _ in range(5):
        tracer.start_span("never ends", attributes=_oi_llm("gpt-5.2", 1, 1))  # each its own trace
    processor = harness.provider._active_span_processor._span_processors[0]
    assert processor._open_count <= 3
    harness.run("chat", chat("gpt-5.2", 1500, 500))
    assert [name for name, _ in harness.costs] == ["chat"]


def test_plain_child_of_a_model_call_is_not_held(harness: Harness) -> None:
    """A span that is no model call (an HTTP span) inside a model-call span goes on at once."""
    tracer = harness.provider.get_tracer("tests")
    with tracer.start_as_current_span("outer", attributes=chat("gpt-5.2", 1, 1)):
        with tracer.start_as_current_span("POST", attributes={"http.request.method": "POST"}):
            pass
        assert [s.name for s in harness.exporter.get_finished_spans()] == ["POST"]
