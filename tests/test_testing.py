"""otel_costs.testing: the in-memory pipeline and the fixed price table, as documented."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from decimal import Decimal

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan

import otel_costs
import otel_costs.testing
from otel_costs import conventions as conv
from otel_costs.pricing import LlmCall, TokenUsage
from otel_costs.testing import FIXED_PRICES, InMemoryPipeline, fixed_price_book

RunFn = Callable[[trace.TracerProvider], None]
LlmCallFn = Callable[..., None]


@pytest.mark.parametrize(
    ("model", "usage", "total"),
    [
        ("gpt-5.2", TokenUsage(1500, 500), Decimal("0.012")),
        ("gemini-3-pro", TokenUsage(500, 200), Decimal("0.00325")),
        # 700 uncached * 3 + 200 cache reads * 0.3 + 100 cache writes * 3.75 + 100 out * 15, per 1M
        (
            "claude-sonnet-4-5",
            TokenUsage(1000, 100, cache_read_tokens=200, cache_write_tokens=100),
            Decimal("0.004035"),
        ),
    ],
)
def test_fixed_price_book_prices(model: str, usage: TokenUsage, total: Decimal) -> None:
    """fixed_price_book prices the FIXED_PRICES models at exactly those rates, from the override table."""
    cost = fixed_price_book().price(LlmCall(model, None, None, usage))
    assert cost.status == conv.STATUS_PRICED
    assert cost.total == total
    assert cost.source == conv.PRICE_SOURCE_OVERRIDE


def test_fixed_price_book_never_uses_genai_prices() -> None:
    """A model only genai-prices knows is unpriced: the table cannot move under the tests."""
    assert "gpt-4o" not in FIXED_PRICES
    assert otel_costs.PriceBook().price(LlmCall("gpt-4o", "openai", None, TokenUsage(10, 10))).status == (
        conv.STATUS_PRICED
    )
    assert fixed_price_book().price(LlmCall("gpt-4o", "openai", None, TokenUsage(10, 10))).status == (
        conv.STATUS_UNPRICED
    )


def test_fixed_price_book_extra_adds_and_overrides() -> None:
    """``extra`` adds models and wins over FIXED_PRICES for the same name."""
    book = fixed_price_book({"my-model": {"input": 1, "output": 2}, "gpt-5.2": {"input": 1, "output": 1}})
    assert book.price(LlmCall("my-model", None, None, TokenUsage(10**6, 10**6))).total == 3
    assert book.price(LlmCall("gpt-5.2", None, None, TokenUsage(10**6, 10**6))).total == 2


def test_pipeline_defaults_to_fixed_prices_and_keeps_global_provider(llm_call: LlmCallFn) -> None:
    """InMemoryPipeline prices with fixed_price_book by default and leaves the global provider alone."""
    before = trace.get_tracer_provider()
    with InMemoryPipeline(service_name="svc") as pipeline:
        llm_call(pipeline.tracer_provider, "claude-sonnet-4-5", 1000, 100)
        span = pipeline.span("chat claude-sonnet-4-5")
    assert trace.get_tracer_provider() is before
    assert pipeline.direct("chat claude-sonnet-4-5") == Decimal("0.0045")
    assert span.resource.attributes["service.name"] == "svc"
    pipeline.shutdown()


def test_spans_are_costed_and_rolled_up_at_once(pipeline: InMemoryPipeline, run_hierarchical: RunFn) -> None:
    """spans() flushes the pipeline: right after the code ran, every span is there with its totals."""
    run_hierarchical(pipeline.tracer_provider)
    spans = pipeline.spans()
    assert len(spans) == 6
    assert pipeline.total("invoke_agent coordinator") == Decimal("0.03325")
    assert pipeline.total("invoke_agent syntax_analyzer") == Decimal("0.00325")
    assert pipeline.direct("chat gemini-3-pro") == Decimal("0.00325")
    assert pipeline.direct("invoke_agent coordinator") == 0
    assert pipeline.attributes("invoke_agent code_agent")[conv.AGENT_PARENT_ID] == "coordinator"


def test_total_of_a_span_without_costs_is_zero(pipeline: InMemoryPipeline) -> None:
    """total() is 0 for a span with nothing billable below it."""
    with pipeline.tracer_provider.get_tracer("t").start_as_current_span("idle"):
        pass
    assert pipeline.total("idle") == Decimal(0)


@pytest.mark.parametrize(("name", "found"), [("missing", 0), ("chat gpt-5.2", 2)])
def test_span_lookup_errors(
    pipeline: InMemoryPipeline, run_hierarchical: RunFn, name: str, found: int
) -> None:
    """span() raises LookupError naming the count and the spans there are when not exactly one matches."""
    run_hierarchical(pipeline.tracer_provider)
    with pytest.raises(LookupError, match=f"found {found}; spans: .*invoke_agent coordinator"):
        pipeline.span(name)


def test_tree_draws_the_cost_tree(pipeline: InMemoryPipeline, run_hierarchical: RunFn) -> None:
    """tree() draws each trace as otel-costs tree does."""
    run_hierarchical(pipeline.tracer_provider)
    assert pipeline.tree().splitlines() == [
        "coordinator ($0.03325)",
        "├── chat gpt-5.2 ($0.012)",
        "└── code_agent ($0.02125)",
        "    ├── chat gpt-5.2 ($0.018)",
        "    └── syntax_analyzer ($0.00325)",
        "        └── chat gemini-3-pro ($0.00325)",
    ]


def test_clear_forgets_exported_spans(pipeline: InMemoryPipeline, run_hierarchical: RunFn) -> None:
    """clear() drops the spans exported so far; later spans are collected as before."""
    run_hierarchical(pipeline.tracer_provider)
    pipeline.clear()
    assert pipeline.spans() == []
    run_hierarchical(pipeline.tracer_provider)
    assert len(pipeline.spans()) == 6


class _Seen:
    """A CostListener that keeps each span's name and cost and keeps the span."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def on_span_cost(self, span: ReadableSpan, cost_nanos: int) -> ReadableSpan | None:
        self.seen.append((span.name, cost_nanos))
        return None


def test_listeners_are_called(llm_call: LlmCallFn) -> None:
    """listeners get each billable span and its direct cost in nano-USD."""
    listener = _Seen()
    pipeline = InMemoryPipeline(listeners=[listener])
    llm_call(pipeline.tracer_provider, "gpt-5.2", 1500, 500, **{conv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 0})
    pipeline.shutdown()
    assert listener.seen == [("chat gpt-5.2", 12_000_000)]


def test_shutdown_flushes_and_stops(pipeline: InMemoryPipeline, run_hierarchical: RunFn) -> None:
    """shutdown() forwards every span still buffered in the rollup."""
    run_hierarchical(pipeline.tracer_provider)
    pipeline.shutdown()
    assert len(pipeline.exporter.get_finished_spans()) == 6


def test_public_names_are_exactly_all_and_name_their_public_module() -> None:
    """otel_costs.testing exposes exactly its sorted __all__, each defined as otel_costs.testing.X
    (but assert_attribution_complete, which keeps its home in otel_costs.report)."""
    module = otel_costs.testing
    assert module.__all__ == sorted(module.__all__)
    assert {name for name in vars(module) if not name.startswith("_")} == set(module.__all__)
    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, type) or inspect.isfunction(obj):
            home = "otel_costs.report" if name == "assert_attribution_complete" else "otel_costs.testing"
            assert obj.__module__ == home, (name, obj.__module__)
