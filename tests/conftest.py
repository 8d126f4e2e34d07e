"""Shared fixtures: an in-memory cost pipeline, LLM-call spans, and the hierarchical example."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from opentelemetry import trace

import otel_costs
from otel_costs import conventions as conv
from otel_costs.testing import InMemoryPipeline

#: The prices of the hierarchical example (USD per 1M tokens).
HIERARCHICAL_PRICES: Mapping[str, Mapping[str, object]] = {
    "gpt-5.2": {"input": 3, "output": 15},
    "gemini-3-pro": {"input": 2.5, "output": 10},
}

LlmCallFn = Callable[..., None]


def usage_attributes(
    model: str, input_tokens: object, output_tokens: object, provider: str = "openai"
) -> dict[str, Any]:
    """The attributes an instrumentation writes on one chat call."""
    return {
        conv.GEN_AI_OPERATION_NAME: "chat",
        conv.GEN_AI_PROVIDER_NAME: provider,
        conv.GEN_AI_REQUEST_MODEL: model,
        conv.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
        conv.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
    }


@pytest.fixture
def hierarchical_book() -> otel_costs.PriceBook:
    """The prices of the hierarchical example only, never genai-prices."""
    return otel_costs.PriceBook(HIERARCHICAL_PRICES, use_genai_prices=False)


@pytest.fixture
def pipeline(hierarchical_book: otel_costs.PriceBook) -> Iterator[InMemoryPipeline]:
    """The in-memory cost pipeline with the hierarchical example's prices; shut down after the test."""
    p = InMemoryPipeline(price_book=hierarchical_book)
    yield p
    p.shutdown()


@pytest.fixture
def llm_call() -> LlmCallFn:
    """``llm_call(tracer_provider, model, input_tokens, output_tokens, **attributes)``: one chat span."""

    def call(
        tracer_provider: trace.TracerProvider,
        model: str,
        input_tokens: object,
        output_tokens: object,
        **attributes: Any,
    ) -> None:
        provider = "google" if model.startswith("gemini") else "openai"
        attrs = usage_attributes(model, input_tokens, output_tokens, provider)
        attrs.update(attributes)
        with tracer_provider.get_tracer("tests").start_as_current_span(f"chat {model}", attributes=attrs):
            pass

    return call


@pytest.fixture
def run_hierarchical(llm_call: LlmCallFn) -> Callable[[trace.TracerProvider], None]:
    """Run the hierarchical example (coordinator -> code_agent -> syntax_analyzer) on a provider."""

    def run(tp: trace.TracerProvider) -> None:
        with otel_costs.agent("coordinator", tracer_provider=tp):
            llm_call(tp, "gpt-5.2", 1500, 500)
            with otel_costs.agent("code_agent", tracer_provider=tp):
                llm_call(tp, "gpt-5.2", 2000, 800)
                with otel_costs.agent("syntax_analyzer", tracer_provider=tp):
                    llm_call(tp, "gemini-3-pro", 500, 200)

    return run
