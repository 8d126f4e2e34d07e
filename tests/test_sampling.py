"""RecordLlmSpans: LLM calls in dropped traces are still recorded (priced, budgeted) but not exported."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Decision, ParentBased, TraceIdRatioBased

import otel_costs
from otel_costs import conventions as conv
from otel_costs.budgets import Budget, BudgetManager
from otel_costs.pipeline import RecordLlmSpans
from otel_costs.pipeline._sampling import is_llm_call

CHAT = {
    conv.GEN_AI_OPERATION_NAME: "chat",
    conv.GEN_AI_REQUEST_MODEL: "gpt-test",
    "gen_ai.usage.input_tokens": 1000,
    "gen_ai.usage.output_tokens": 1000,
    conv.TEAM_ID: "a",
}


class Seen(SpanProcessor):
    """A processor that keeps every span that ends (sampled or not)."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({conv.GEN_AI_OPERATION_NAME: "chat"}, True),
        ({conv.GEN_AI_OPERATION_NAME: "embeddings"}, True),
        ({conv.GEN_AI_OPERATION_NAME: "invoke_agent", conv.GEN_AI_REQUEST_MODEL: "m"}, False),
        ({conv.GEN_AI_OPERATION_NAME: "execute_tool"}, False),
        ({conv.GEN_AI_REQUEST_MODEL: "gpt-4o"}, True),
        ({conv.GEN_AI_SYSTEM: "openai"}, True),
        ({"http.request.method": "GET"}, False),
    ],
)
def test_is_llm_call(attributes: Mapping[str, object], expected: bool) -> None:
    """LLM calls are GenAI operations that are no aggregates, or spans naming a model or provider."""
    assert is_llm_call("span", attributes) is expected


def test_dropped_llm_spans_are_recorded_priced_and_budgeted_but_not_exported() -> None:
    """With a sampler dropping everything, LLM spans still reach processors and budgets, not the exporter."""
    manager = BudgetManager([Budget("team", Decimal(1), per=("team",))])
    exported, seen = InMemorySpanExporter(), Seen()
    provider = TracerProvider(sampler=RecordLlmSpans(ParentBased(TraceIdRatioBased(0.0))))
    prices = otel_costs.PriceBook({"gpt-test": {"input": 3, "output": 15}}, use_genai_prices=False)
    provider.add_span_processor(
        otel_costs.CostSpanProcessor(SimpleSpanProcessor(exported), price_book=prices, listeners=[manager])
    )
    provider.add_span_processor(seen)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("request handler"):
        with tracer.start_as_current_span("chat gpt-test", attributes=CHAT) as llm:
            assert llm.is_recording() and not llm.get_span_context().trace_flags.sampled
        with tracer.start_as_current_span("db query") as other:
            assert not other.is_recording()
    assert exported.get_finished_spans() == ()
    (recorded,) = seen.spans
    assert recorded.name == "chat gpt-test"
    assert recorded.attributes is not None and recorded.attributes[conv.GEN_AI_REQUEST_MODEL] == "gpt-test"
    assert manager.usage({conv.TEAM_ID: "a"})[0].spent_nanos == 18_000_000


def test_sampled_traces_are_unchanged() -> None:
    """When the inner sampler samples, spans are sampled and exported as before."""
    exported = InMemorySpanExporter()
    provider = TracerProvider(sampler=RecordLlmSpans(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exported))
    with provider.get_tracer("t").start_as_current_span("chat", attributes=CHAT):
        pass
    with provider.get_tracer("t").start_as_current_span("other"):
        pass
    assert [s.name for s in exported.get_finished_spans()] == ["chat", "other"]


def test_decisions() -> None:
    """DROP becomes RECORD_ONLY with the caller's attributes for LLM calls only; others pass through."""
    sampler = RecordLlmSpans(ALWAYS_OFF)
    llm = sampler.should_sample(None, 1, "chat", attributes=CHAT)
    assert llm.decision is Decision.RECORD_ONLY and dict(llm.attributes or {}) == CHAT
    assert sampler.should_sample(None, 1, "plain", attributes={"a": 1}).decision is Decision.DROP
    assert sampler.should_sample(None, 1, "no attributes").decision is Decision.DROP
    assert (
        RecordLlmSpans(ALWAYS_ON).should_sample(None, 1, "x", attributes=CHAT).decision
        is Decision.RECORD_AND_SAMPLE
    )
    assert sampler.get_description() == "RecordLlmSpans{AlwaysOffSampler}"


def test_a_failing_predicate_records_the_span(caplog: pytest.LogCaptureFixture) -> None:
    """A predicate that raises is logged and the span recorded (the safe side for budgets)."""

    def broken(name: str, attributes: Mapping[str, object]) -> bool:
        raise RuntimeError("predicate bug")

    result = RecordLlmSpans(ALWAYS_OFF, predicate=broken).should_sample(None, 1, "x", attributes={"a": 1})
    assert result.decision is Decision.RECORD_ONLY and "predicate failed" in caplog.text


def test_inner_must_be_a_sampler() -> None:
    """Wrapping something that is not a Sampler fails at construction."""
    with pytest.raises(TypeError, match="OpenTelemetry Sampler"):
        RecordLlmSpans("always_off")  # type: ignore[arg-type]
