"""The anthropic SDK's own spans (``anthropic`` 2.12 traces every API call), priced with no extra code."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from known_calls import (
    ANTHROPIC_HOWS,
    ANTHROPIC_MODEL,
    ANTHROPIC_NANOS,
    assert_priced,
    usage_attributes,
)

from otel_costs import conventions as conv
from otel_costs.testing import InMemoryPipeline, fixed_price_book

SPAN_NAME = "anthropic.messages.create"


@pytest.fixture
def pipeline() -> Iterator[InMemoryPipeline]:
    """A fresh pipeline with the fixed test prices."""
    pipeline = InMemoryPipeline(price_book=fixed_price_book())
    yield pipeline
    pipeline.shutdown()


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("how", ANTHROPIC_HOWS)
async def test_sdk_spans_are_priced_exactly(
    pipeline: InMemoryPipeline, anthropic_call: Any, how: str, use_async: bool
) -> None:
    """The SDK's span of a whole or streamed message has a cache-inclusive input and is priced exactly."""
    await anthropic_call(
        how, use_async=use_async, open_telemetry={"tracer_provider": pipeline.tracer_provider}
    )

    attributes = assert_priced(
        pipeline, SPAN_NAME, ANTHROPIC_NANOS, model=ANTHROPIC_MODEL, provider="anthropic"
    )
    assert usage_attributes(attributes) == {
        conv.GEN_AI_USAGE_INPUT_TOKENS: 1000,
        conv.GEN_AI_USAGE_OUTPUT_TOKENS: 200,
        conv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 300,
        conv.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: 100,
    }
