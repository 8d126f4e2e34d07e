"""The official ``opentelemetry-instrumentation-genai-openai`` spans, priced with no extra code.

The successor of ``opentelemetry-instrumentation-openai-v2`` ("continues the project previously
published as" it). It writes the current semantic conventions, cache and reasoning counts
included, and also traces the Responses API.
"""

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
from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor

from otel_costs import PriceBook
from otel_costs import conventions as conv
from otel_costs.testing import FakeLLMProvider, InMemoryPipeline

CHAT_SPAN = f"chat {OPENAI_MODEL}"
#: What 1.3b0 writes, on Chat Completions and Responses alike: input includes the cached tokens.
USAGE = {
    conv.GEN_AI_USAGE_INPUT_TOKENS: 1000,
    conv.GEN_AI_USAGE_OUTPUT_TOKENS: 200,
    conv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 300,
    conv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 50,
}


@pytest.fixture
def pipeline(instrument: Callable[..., InMemoryPipeline]) -> InMemoryPipeline:
    """A fresh pipeline with the official OpenAI instrumentation writing to it."""
    return instrument(OpenAIInstrumentor())


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_calls_are_priced_exactly_with_the_cache_discount(
    pipeline: InMemoryPipeline, openai_call: Any, api: str, stream: bool, use_async: bool
) -> None:
    """Chat and Responses calls, whole or streamed, sync or async, cost exactly the known usage."""
    await openai_call(api, stream=stream, use_async=use_async)

    attributes = assert_priced(pipeline, CHAT_SPAN, OPENAI_NANOS, model=OPENAI_MODEL, provider="openai")
    assert usage_attributes(attributes) == USAGE


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_embeddings_are_priced(pipeline: InMemoryPipeline, openai_call: Any, use_async: bool) -> None:
    """An embeddings call is priced from its input tokens."""
    await openai_call("embeddings", use_async=use_async, model=EMBEDDING_MODEL)

    attributes = assert_priced(
        pipeline, f"embeddings {EMBEDDING_MODEL}", EMBEDDING_NANOS, model=EMBEDDING_MODEL, provider="openai"
    )
    assert usage_attributes(attributes) == {conv.GEN_AI_USAGE_INPUT_TOKENS: 1000}


async def test_a_stream_without_include_usage_is_flagged_unpriced(
    pipeline: InMemoryPipeline, openai_call: Any, fake: FakeLLMProvider
) -> None:
    """A chat stream that does not ask for usage has no usage to price: it is flagged, not a silent $0."""
    await openai_call("chat", stream=True, include_usage=False)

    assert fake.requests[-1].usage is None, "the instrumentation asked for usage by itself"
    attributes = only_span(pipeline, CHAT_SPAN).attributes or {}
    assert usage_attributes(attributes) == {}
    assert attributes[conv.COST_STATUS] == conv.STATUS_UNPRICED
    assert "include_usage" in attributes[conv.COST_STATUS_REASON]


@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_genai_prices_price_the_dated_response_model(
    instrument: Callable[..., InMemoryPipeline], openai_call: Any, api: str
) -> None:
    """With genai-prices' data, the dated snapshot the API answers with is priced as genai-prices does."""
    pipeline = instrument(OpenAIInstrumentor(), price_book=PriceBook())
    await openai_call(api, model=GENAI_PRICES_OPENAI_MODEL)

    dated = RESPONSE_MODELS[GENAI_PRICES_OPENAI_MODEL]
    attributes = assert_priced(
        pipeline,
        f"chat {GENAI_PRICES_OPENAI_MODEL}",
        genai_prices_nanos(dated, "openai", OPENAI_USAGE),
        model=GENAI_PRICES_OPENAI_MODEL,
        provider="openai",
    )
    assert attributes[conv.COST_PRICE_SOURCE] == conv.PRICE_SOURCE_GENAI_PRICES
    assert attributes[conv.GEN_AI_RESPONSE_MODEL] == dated
