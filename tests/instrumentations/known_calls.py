"""The known calls of the instrumentation tests: usage the fake provider reports, and what it costs.

Expected costs are worked out by hand at ``fixed_price_book`` rates (USD per 1M tokens), so the
tests do not restate the pricing code.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import wrapt
from genai_prices import Usage, calc_price
from opentelemetry.sdk.trace import ReadableSpan

from otel_costs import conventions as conv
from otel_costs.testing import FakeUsage, InMemoryPipeline

OPENAI_MODEL = "gpt-5.2"
ANTHROPIC_MODEL = "claude-sonnet-4-5"
EMBEDDING_MODEL = "text-embedding-3-small"

#: OpenTelemetry semantics: input includes the cached tokens, output the reasoning tokens.
OPENAI_USAGE = FakeUsage(input_tokens=1000, output_tokens=200, cache_read_tokens=300, reasoning_tokens=50)
#: On the wire Anthropic says ``input_tokens: 600`` (it excludes cache reads and writes).
ANTHROPIC_USAGE = FakeUsage(
    input_tokens=1000, output_tokens=200, cache_read_tokens=300, cache_write_tokens=100
)
EMBEDDING_USAGE = FakeUsage(input_tokens=1000, output_tokens=0)

#: Models priced from genai-prices' data (not the fixed test prices); the fake answers with a dated
#: snapshot name, as the real APIs do, so the price must be found from the response model.
GENAI_PRICES_OPENAI_MODEL = "gpt-4o"
GENAI_PRICES_ANTHROPIC_MODEL = "claude-haiku-4-5"
RESPONSE_MODELS: Mapping[str, str] = {
    GENAI_PRICES_OPENAI_MODEL: "gpt-4o-2024-08-06",
    GENAI_PRICES_ANTHROPIC_MODEL: "claude-haiku-4-5-20251001",
}

#: Per requested model, for ``FakeLLMProvider(usage=...)``.
USAGE_BY_MODEL: Mapping[str, FakeUsage] = {
    OPENAI_MODEL: OPENAI_USAGE,
    ANTHROPIC_MODEL: ANTHROPIC_USAGE,
    EMBEDDING_MODEL: EMBEDDING_USAGE,
    GENAI_PRICES_OPENAI_MODEL: OPENAI_USAGE,
    GENAI_PRICES_ANTHROPIC_MODEL: ANTHROPIC_USAGE,
}

#: gpt-5.2: 700 uncached x $3 + 300 cached x $0.30 + 200 out x $15 = $0.00519.
OPENAI_NANOS = 5_190_000
#: gpt-5.2 with the 300 cached tokens priced as plain input: 1000 x $3 + 200 x $15 = $0.006.
OPENAI_NO_CACHE_NANOS = 6_000_000
#: claude-sonnet-4-5: 600 uncached x $3 + 300 read x $0.30 + 100 written x $3.75 + 200 out x $15.
ANTHROPIC_NANOS = 5_265_000
#: One claude-sonnet-4-5 output token: $15 per 1M.
ANTHROPIC_OUTPUT_TOKEN_NANOS = 15_000
#: text-embedding-3-small: 1000 x $0.02 = $0.00002.
EMBEDDING_NANOS = 20_000

#: An embedding price, on top of ``fixed_price_book``'s.
EXTRA_PRICES: Mapping[str, Mapping[str, object]] = {EMBEDDING_MODEL: {"input": 0.02, "output": 0.02}}

#: How an Anthropic message is requested: plain, ``create(stream=True)``, or ``messages.stream()``.
ANTHROPIC_HOWS = ("create", "create_stream", "stream_helper")
#: The Anthropic streaming calls among ``ANTHROPIC_HOWS``.
ANTHROPIC_STREAMS = frozenset({"create_stream", "stream_helper"})
#: What ``message_start`` reports as ``output_tokens`` in the fake's Anthropic streams (as the real API does).
ANTHROPIC_MESSAGE_START_OUTPUT_TOKENS = 1


def only_span(pipeline: InMemoryPipeline, name: str) -> ReadableSpan:
    """The one span the call produced, which must be called ``name`` (no duplicates, no strays)."""
    spans: list[ReadableSpan] = pipeline.spans()
    assert [s.name for s in spans] == [name], f"expected one span {name!r}, got {[s.name for s in spans]}"
    return spans[0]


def assert_priced(
    pipeline: InMemoryPipeline, name: str, nanos: int, *, model: str, provider: str
) -> Mapping[str, Any]:
    """Assert the call's one span is priced at exactly ``nanos`` for ``provider``/``model``.

    Returns the span's attributes.
    """
    attributes = only_span(pipeline, name).attributes or {}
    assert attributes.get(conv.COST_STATUS) == conv.STATUS_PRICED, dict(attributes)
    assert attributes.get(conv.COST_DIRECT_NANOS) == nanos, dict(attributes)
    assert attributes.get(conv.COST_MODEL) == model, dict(attributes)
    assert attributes.get(conv.COST_PROVIDER) == provider, dict(attributes)
    return attributes


#: Every usage attribute name ``otel_costs`` reads (totals included).
USAGE_ATTRIBUTE_NAMES = frozenset(
    conv.INPUT_KEYS
    + conv.OUTPUT_KEYS
    + conv.CACHE_READ_KEYS
    + conv.CACHE_WRITE_KEYS
    + conv.REASONING_KEYS
    + conv.TOTAL_KEYS
)


def usage_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The token-count attributes of a span, as the instrumentation wrote them."""
    return {key: value for key, value in attributes.items() if key in USAGE_ATTRIBUTE_NAMES}


def genai_prices_nanos(response_model: str, provider: str, usage: FakeUsage) -> int:
    """What genai-prices itself charges for ``usage`` (an oracle independent of the ``PriceBook``)."""
    total = calc_price(
        Usage(
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            output_tokens=usage.output_tokens,
        ),
        response_model,
        provider_id=provider,
    ).total_price
    nanos = Decimal(total).scaleb(9)
    assert nanos == nanos.to_integral_value(), f"{total} USD is not a whole number of nano-USD"
    return int(nanos)


#: The SDK classes whose methods the instrumentations patch and these tests call: (module, class names).
SDK_CLASSES = (
    ("openai", ("OpenAI", "AsyncOpenAI")),
    ("openai.resources.chat.completions", ("Completions", "AsyncCompletions")),
    ("openai.resources.responses", ("Responses", "AsyncResponses")),
    ("openai.resources.embeddings", ("Embeddings", "AsyncEmbeddings")),
    ("anthropic.resources.messages", ("Messages", "AsyncMessages")),
)


def unwrap_sdk_methods() -> list[str]:
    """Remove every wrapt patch left on the SDK classes of ``SDK_CLASSES``; the names it removed.

    Used after ``uninstrument()``, so that a patch left behind cannot route the next test's calls
    to a pipeline that has been shut down.
    """
    removed: list[str] = []
    for module_name, class_names in SDK_CLASSES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for class_name in class_names:
            cls = getattr(module, class_name)
            for name, value in list(vars(cls).items()):
                while isinstance(value, wrapt.FunctionWrapper):
                    value = value.__wrapped__
                    setattr(cls, name, value)
                    removed.append(f"{class_name}.{name}")
    return removed
