"""The official ``opentelemetry-instrumentation-genai-anthropic`` spans, priced with no extra code."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from known_calls import (
    ANTHROPIC_HOWS,
    ANTHROPIC_MODEL,
    ANTHROPIC_NANOS,
    ANTHROPIC_USAGE,
    GENAI_PRICES_ANTHROPIC_MODEL,
    RESPONSE_MODELS,
    assert_priced,
    genai_prices_nanos,
    usage_attributes,
)
from opentelemetry.instrumentation.genai.anthropic import AnthropicInstrumentor

from otel_costs import PriceBook
from otel_costs import conventions as conv
from otel_costs.testing import FakeLLMProvider, InMemoryPipeline

SPAN_NAME = f"chat {ANTHROPIC_MODEL}"


@pytest.fixture
def pipeline(instrument: Callable[..., InMemoryPipeline]) -> InMemoryPipeline:
    """A fresh pipeline with the official Anthropic instrumentation writing to it."""
    return instrument(AnthropicInstrumentor())


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("how", ANTHROPIC_HOWS)
async def test_messages_are_priced_exactly_with_cache_reads_and_writes(
    pipeline: InMemoryPipeline, anthropic_call: Any, fake: FakeLLMProvider, how: str, use_async: bool
) -> None:
    """Whole and streamed messages are priced exactly; the input count includes both cache counts."""
    await anthropic_call(how, use_async=use_async)

    assert fake.requests[-1].usage == ANTHROPIC_USAGE
    attributes = assert_priced(
        pipeline, SPAN_NAME, ANTHROPIC_NANOS, model=ANTHROPIC_MODEL, provider="anthropic"
    )
    assert usage_attributes(attributes) == {
        conv.GEN_AI_USAGE_INPUT_TOKENS: 1000,
        conv.GEN_AI_USAGE_OUTPUT_TOKENS: 200,
        conv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 300,
        conv.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: 100,
    }


async def test_genai_prices_price_the_dated_response_model(
    instrument: Callable[..., InMemoryPipeline], anthropic_call: Any
) -> None:
    """With genai-prices' data, the dated snapshot the API answers with is priced as genai-prices does."""
    pipeline = instrument(AnthropicInstrumentor(), price_book=PriceBook())
    await anthropic_call("create", model=GENAI_PRICES_ANTHROPIC_MODEL)

    dated = RESPONSE_MODELS[GENAI_PRICES_ANTHROPIC_MODEL]
    attributes = assert_priced(
        pipeline,
        f"chat {GENAI_PRICES_ANTHROPIC_MODEL}",
        genai_prices_nanos(dated, "anthropic", ANTHROPIC_USAGE),
        model=GENAI_PRICES_ANTHROPIC_MODEL,
        provider="anthropic",
    )
    assert attributes[conv.COST_PRICE_SOURCE] == conv.PRICE_SOURCE_GENAI_PRICES
    assert attributes[conv.GEN_AI_RESPONSE_MODEL] == dated


async def test_the_sdk_span_and_the_instrumentation_span_count_the_call_once(
    pipeline: InMemoryPipeline, anthropic_call: Any
) -> None:
    """With the SDK's own tracing on the same provider, a parent's total still counts the call once."""
    tracer = pipeline.tracer_provider.get_tracer("tests")
    with tracer.start_as_current_span("agent turn"):
        await anthropic_call("create", open_telemetry={"tracer_provider": pipeline.tracer_provider})

    statuses = sorted(
        str((s.attributes or {}).get(conv.COST_STATUS)) for s in pipeline.spans() if s.name != "agent turn"
    )
    assert statuses == [conv.STATUS_DUPLICATE, conv.STATUS_PRICED]
    assert pipeline.total("agent turn") == Decimal(ANTHROPIC_NANOS).scaleb(-9)
