"""OpenLLMetry's ``opentelemetry-instrumentation-openai`` spans, priced with no extra code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from known_calls import (
    EMBEDDING_MODEL,
    EMBEDDING_NANOS,
    GENAI_PRICES_OPENAI_MODEL,
    OPENAI_MODEL,
    OPENAI_NANOS,
    OPENAI_USAGE,
    RESPONSE_MODELS,
    assert_priced,
    genai_prices_nanos,
    only_span,
    usage_attributes,
)
from opentelemetry.instrumentation.openai import OpenAIInstrumentor

from otel_costs import PriceBook
from otel_costs import conventions as conv
from otel_costs.testing import FakeLLMProvider, InMemoryPipeline

#: 0.62.4's uninstrument() calls ``unwrap("openai.resources.chat.completions", "Completions.create")``,
#: which opentelemetry-instrumentation's ``unwrap`` resolves to ``getattr(module, "Completions.create")``:
#: None, a silent no-op. Every patch stays (and would send later calls to a shut-down provider).
UNINSTRUMENT_LEAK = "OpenLLMetry's uninstrument() unwraps nothing (dotted attribute names)"
SPAN_NAMES = {"chat": "openai.chat", "responses": "openai.response", "embeddings": "openai.embeddings"}
#: What 0.62.4 writes: current semconv names, input including the cached tokens, plus a total.
#: Reasoning tokens are left out of streamed chat completions (they are part of the output anyway).
WHOLE_USAGE = {
    conv.GEN_AI_USAGE_INPUT_TOKENS: 1000,
    conv.GEN_AI_USAGE_OUTPUT_TOKENS: 200,
    conv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 300,
    conv.TRACELOOP_REASONING_TOKENS: 50,
    conv.GEN_AI_USAGE_TOTAL_TOKENS: 1200,
}
STREAMED_CHAT_USAGE = {k: v for k, v in WHOLE_USAGE.items() if k != conv.TRACELOOP_REASONING_TOKENS}


@pytest.fixture
def pipeline(instrument: Callable[..., InMemoryPipeline]) -> InMemoryPipeline:
    """A fresh pipeline with OpenLLMetry's OpenAI instrumentation writing to it."""
    return instrument(OpenAIInstrumentor(), known_leak=UNINSTRUMENT_LEAK)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_calls_are_priced_exactly_with_the_cache_discount(
    pipeline: InMemoryPipeline, openai_call: Any, api: str, stream: bool, use_async: bool
) -> None:
    """Chat and Responses calls, whole or streamed, sync or async, cost exactly the known usage."""
    await openai_call(api, stream=stream, use_async=use_async)

    attributes = assert_priced(pipeline, SPAN_NAMES[api], OPENAI_NANOS, model=OPENAI_MODEL, provider="openai")
    expected = STREAMED_CHAT_USAGE if (api, stream) == ("chat", True) else WHOLE_USAGE
    assert usage_attributes(attributes) == expected


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_embeddings_are_priced(pipeline: InMemoryPipeline, openai_call: Any, use_async: bool) -> None:
    """An embeddings call is priced from its input tokens."""
    await openai_call("embeddings", use_async=use_async, model=EMBEDDING_MODEL)

    attributes = assert_priced(
        pipeline, SPAN_NAMES["embeddings"], EMBEDDING_NANOS, model=EMBEDDING_MODEL, provider="openai"
    )
    assert usage_attributes(attributes) == {
        conv.GEN_AI_USAGE_INPUT_TOKENS: 1000,
        conv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 0,
        conv.GEN_AI_USAGE_TOTAL_TOKENS: 1000,
    }


async def test_a_stream_without_include_usage_is_flagged_unpriced(
    pipeline: InMemoryPipeline, openai_call: Any, fake: FakeLLMProvider
) -> None:
    """A chat stream that does not ask for usage has no usage to price: it is flagged, not a silent $0."""
    await openai_call("chat", stream=True, include_usage=False)

    assert fake.requests[-1].usage is None, "the instrumentation asked for usage by itself"
    attributes = only_span(pipeline, SPAN_NAMES["chat"]).attributes or {}
    assert usage_attributes(attributes) == {}
    assert attributes[conv.COST_STATUS] == conv.STATUS_UNPRICED
    assert "include_usage" in attributes[conv.COST_STATUS_REASON]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_genai_prices_price_the_dated_response_model(
    instrument: Callable[..., InMemoryPipeline], openai_call: Any, stream: bool
) -> None:
    """With genai-prices' data, the dated snapshot the API answers with is priced as genai-prices does."""
    pipeline = instrument(OpenAIInstrumentor(), known_leak=UNINSTRUMENT_LEAK, price_book=PriceBook())
    await openai_call("chat", stream=stream, model=GENAI_PRICES_OPENAI_MODEL)

    dated = RESPONSE_MODELS[GENAI_PRICES_OPENAI_MODEL]
    attributes = assert_priced(
        pipeline,
        SPAN_NAMES["chat"],
        genai_prices_nanos(dated, "openai", OPENAI_USAGE),
        model=GENAI_PRICES_OPENAI_MODEL,
        provider="openai",
    )
    assert attributes[conv.COST_PRICE_SOURCE] == conv.PRICE_SOURCE_GENAI_PRICES
    assert attributes[conv.GEN_AI_RESPONSE_MODEL] == dated
