"""OpenInference's ``openinference-instrumentation-openai`` spans, priced with no extra code."""

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
from openinference.instrumentation.openai import OpenAIInstrumentor

from otel_costs import PriceBook
from otel_costs import conventions as conv
from otel_costs.testing import FakeLLMProvider, InMemoryPipeline

SPAN_NAMES = {"chat": "ChatCompletion", "responses": "Response", "embeddings": "CreateEmbeddings"}
#: What 0.1.66 writes (``llm.token_count.*``): the prompt count includes the cached tokens. The
#: model is ``llm.model_name`` (the response's), the provider ``llm.system``; ``llm.provider`` is
#: only written for hosts it recognizes (not a loopback fake).
USAGE = {
    conv.OI_TOKEN_COUNT_PROMPT: 1000,
    conv.OI_TOKEN_COUNT_COMPLETION: 200,
    conv.OI_TOKEN_COUNT_TOTAL: 1200,
    conv.OI_CACHE_READ: 300,
    conv.OI_REASONING: 50,
}


@pytest.fixture
def pipeline(instrument: Callable[..., InMemoryPipeline]) -> InMemoryPipeline:
    """A fresh pipeline with OpenInference's OpenAI instrumentation writing to it."""
    return instrument(OpenAIInstrumentor())


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_calls_are_priced_exactly_with_the_cache_discount(
    pipeline: InMemoryPipeline, openai_call: Any, api: str, stream: bool, use_async: bool
) -> None:
    """Chat and Responses calls, whole or streamed, sync or async, cost exactly the known usage."""
    await openai_call(api, stream=stream, use_async=use_async)

    attributes = assert_priced(pipeline, SPAN_NAMES[api], OPENAI_NANOS, model=OPENAI_MODEL, provider="openai")
    assert usage_attributes(attributes) == USAGE
    assert attributes[conv.OI_SPAN_KIND] == "LLM"


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_embeddings_are_priced(pipeline: InMemoryPipeline, openai_call: Any, use_async: bool) -> None:
    """An embeddings call is priced from its input tokens and its ``embedding.model_name``."""
    await openai_call("embeddings", use_async=use_async, model=EMBEDDING_MODEL)

    assert_priced(
        pipeline, SPAN_NAMES["embeddings"], EMBEDDING_NANOS, model=EMBEDDING_MODEL, provider="openai"
    )


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
    pipeline = instrument(OpenAIInstrumentor(), price_book=PriceBook())
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
    assert attributes[conv.OI_MODEL_NAME] == dated
