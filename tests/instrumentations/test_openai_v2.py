"""The official ``opentelemetry-instrumentation-openai-v2`` spans, priced by the pipeline with no extra code.

2.4b0 (the last release under this name) needs two fixes to run at all with openai 3.x and a
current ``opentelemetry-util-genai``, both pinned in ``requirements.txt``: ``httpx``, which it
imports and openai>=3 no longer installs (openai moved to ``httpx2``), and
``opentelemetry-util-genai<=1.1b0``, as 1.2b0 removed the ``instruments`` module it imports.
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
    OPENAI_NO_CACHE_NANOS,
    OPENAI_USAGE,
    RESPONSE_MODELS,
    assert_priced,
    genai_prices_nanos,
    only_span,
    usage_attributes,
)
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

from otel_costs import PriceBook
from otel_costs import conventions as conv
from otel_costs.testing import FakeLLMProvider, FakeUsage, InMemoryPipeline

CHAT_SPAN = f"chat {OPENAI_MODEL}"
#: All 2.4b0 writes on chat spans: no cache or reasoning counts (``prompt_tokens_details`` is ignored).
CHAT_USAGE = {conv.GEN_AI_USAGE_INPUT_TOKENS: 1000, conv.GEN_AI_USAGE_OUTPUT_TOKENS: 200}


@pytest.fixture
def pipeline(instrument: Callable[..., InMemoryPipeline]) -> InMemoryPipeline:
    """A fresh pipeline with the official OpenAI instrumentation writing to it."""
    return instrument(OpenAIInstrumentor())


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_chat_is_priced_but_cached_tokens_at_the_full_input_rate(
    pipeline: InMemoryPipeline, openai_call: Any, fake: FakeLLMProvider, stream: bool, use_async: bool
) -> None:
    """Chat spans omit the 300 cached tokens, so they are priced exactly at the full input rate."""
    await openai_call("chat", stream=stream, use_async=use_async)

    assert fake.requests[-1].usage == OPENAI_USAGE
    attributes = assert_priced(
        pipeline, CHAT_SPAN, OPENAI_NO_CACHE_NANOS, model=OPENAI_MODEL, provider="openai"
    )
    assert usage_attributes(attributes) == CHAT_USAGE


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_embeddings_are_priced(pipeline: InMemoryPipeline, openai_call: Any, use_async: bool) -> None:
    """An embeddings call is priced from its input tokens."""
    await openai_call("embeddings", use_async=use_async, model=EMBEDDING_MODEL)

    attributes = assert_priced(
        pipeline, f"embeddings {EMBEDDING_MODEL}", EMBEDDING_NANOS, model=EMBEDDING_MODEL, provider="openai"
    )
    assert usage_attributes(attributes) == {conv.GEN_AI_USAGE_INPUT_TOKENS: 1000}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_responses_api_calls_get_no_span(
    pipeline: InMemoryPipeline, openai_call: Any, fake: FakeLLMProvider, stream: bool
) -> None:
    """2.4b0 does not instrument the Responses API: such calls leave no span, so no cost."""
    await openai_call("responses", stream=stream)

    assert fake.requests[-1].path.endswith("/responses")
    assert pipeline.spans() == []


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


async def test_genai_prices_price_the_dated_response_model(
    instrument: Callable[..., InMemoryPipeline], openai_call: Any
) -> None:
    """With genai-prices' data, the dated snapshot the API answers with is priced as genai-prices does."""
    pipeline = instrument(OpenAIInstrumentor(), price_book=PriceBook())
    await openai_call("chat", model=GENAI_PRICES_OPENAI_MODEL)

    dated = RESPONSE_MODELS[GENAI_PRICES_OPENAI_MODEL]
    uncached = FakeUsage(input_tokens=1000, output_tokens=200)  # what the span says
    attributes = assert_priced(
        pipeline,
        f"chat {GENAI_PRICES_OPENAI_MODEL}",
        genai_prices_nanos(dated, "openai", uncached),
        model=GENAI_PRICES_OPENAI_MODEL,
        provider="openai",
    )
    assert attributes[conv.COST_PRICE_SOURCE] == conv.PRICE_SOURCE_GENAI_PRICES
    assert attributes[conv.GEN_AI_RESPONSE_MODEL] == dated
