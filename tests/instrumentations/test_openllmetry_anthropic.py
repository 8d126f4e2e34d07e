"""OpenLLMetry's ``opentelemetry-instrumentation-anthropic`` spans, priced with no extra code."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from known_calls import (
    ANTHROPIC_HOWS,
    ANTHROPIC_MESSAGE_START_OUTPUT_TOKENS,
    ANTHROPIC_MODEL,
    ANTHROPIC_NANOS,
    ANTHROPIC_OUTPUT_TOKEN_NANOS,
    ANTHROPIC_STREAMS,
    ANTHROPIC_USAGE,
    GENAI_PRICES_ANTHROPIC_MODEL,
    RESPONSE_MODELS,
    assert_priced,
    genai_prices_nanos,
    usage_attributes,
)
from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor

from otel_costs import PriceBook
from otel_costs import conventions as conv
from otel_costs.testing import FakeLLMProvider, InMemoryPipeline

SPAN_NAME = "anthropic.chat"


@pytest.fixture
def pipeline(instrument: Callable[..., InMemoryPipeline]) -> InMemoryPipeline:
    """A fresh pipeline with OpenLLMetry's Anthropic instrumentation writing to it."""
    return instrument(AnthropicInstrumentor())


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("how", ANTHROPIC_HOWS)
async def test_messages_are_priced_with_cache_reads_and_writes(
    pipeline: InMemoryPipeline, anthropic_call: Any, fake: FakeLLMProvider, how: str, use_async: bool
) -> None:
    """Whole and streamed messages are priced from an input count that includes both cache counts.

    Anthropic's own ``input_tokens`` (600) excludes the cache; the instrumentation adds the 300
    read and 100 written back (1000). On streams 0.62.4 also adds ``message_start``'s
    ``output_tokens`` to ``message_delta``'s, which is already the cumulative total, so a stream's
    output is over-counted by that (1 here): the span is priced exactly as it reads.
    """
    await anthropic_call(how, use_async=use_async)

    extra_output = ANTHROPIC_MESSAGE_START_OUTPUT_TOKENS if how in ANTHROPIC_STREAMS else 0
    attributes = assert_priced(
        pipeline,
        SPAN_NAME,
        ANTHROPIC_NANOS + extra_output * ANTHROPIC_OUTPUT_TOKEN_NANOS,
        model=ANTHROPIC_MODEL,
        provider="anthropic",
    )
    output = ANTHROPIC_USAGE.output_tokens + extra_output
    assert usage_attributes(attributes) == {
        conv.GEN_AI_USAGE_INPUT_TOKENS: 1000,
        conv.GEN_AI_USAGE_OUTPUT_TOKENS: output,
        conv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 300,
        conv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 100,
        conv.GEN_AI_USAGE_TOTAL_TOKENS: 1000 + output,
    }
    assert fake.requests[-1].usage == ANTHROPIC_USAGE


async def test_genai_prices_price_the_dated_response_model(
    instrument: Callable[..., InMemoryPipeline], anthropic_call: Any
) -> None:
    """With genai-prices' data, the dated snapshot the API answers with is priced as genai-prices does."""
    pipeline = instrument(AnthropicInstrumentor(), price_book=PriceBook())
    await anthropic_call("create", model=GENAI_PRICES_ANTHROPIC_MODEL)

    dated = RESPONSE_MODELS[GENAI_PRICES_ANTHROPIC_MODEL]
    attributes = assert_priced(
        pipeline,
        SPAN_NAME,
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
