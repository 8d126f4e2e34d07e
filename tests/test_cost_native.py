"""The C speedups (otel_costs/_cost_native.c): None, or exactly what the Python fast path writes.

``PriceBook._cost_attributes(attributes, start_ns)`` must return either ``None`` or exactly the
dict of ``own = dict(attributes); _publish_quote(own, book._quote(*billable_counts(attributes),
start_ns), partial)``: same keys, same order, same values (floats bit for bit). It must never
raise on odd span attributes. Skipped where the extension is not built, unless
``OTEL_COSTS_REQUIRE_NATIVE=1`` (CI), where a missing extension fails.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import Any

import pytest
from genai_prices.data import providers as BUNDLED_PROVIDERS
from genai_prices.types import ModelInfo, ModelPrice, TieredPrices
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from price_data import updated_gpt_4o_prices

from otel_costs import conventions as conv
from otel_costs.pipeline._processor import CostSpanProcessor, _publish_quote
from otel_costs.pricing import _book as _pricing
from otel_costs.pricing._book import PriceBook
from otel_costs.pricing._usage import LlmCall, TokenUsage, billable_counts
from otel_costs.testing import fixed_price_book

REQUIRE_NATIVE = os.environ.get("OTEL_COSTS_REQUIRE_NATIVE", "").strip() == "1"

pytestmark = pytest.mark.skipif(
    _pricing._NATIVE is None and not REQUIRE_NATIVE,
    reason="otel_costs._cost_native is not loaded (not built: `python setup.py build_ext --inplace`, "
    "or OTEL_COSTS_NATIVE=0); set OTEL_COSTS_REQUIRE_NATIVE=1 to make this a failure",
)

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
AT_NS = int(AT.timestamp()) * 10**9
#: Overrides with cache rates and two tiers: the plans with the most rows.
TIERED_OVERRIDES: Mapping[str, Mapping[str, object]] = {
    "private-model": {
        "input": 3,
        "output": 15,
        "cached_input": 0.3,
        "cache_write": 3.75,
        "tiers": [
            {"above": 200_000, "input": 6, "output": 22.5, "cached_input": 0.6, "cache_write": 7.5},
            {"above": 1_000_000, "input": "6.125", "output": 30, "cached_input": 0.65, "cache_write": 8},
        ],
    },
    "odd-rates": {"input": "1.234567", "output": "7.654321", "cached_input": "0.0000001"},
    "free-model": {"input": 0, "output": 0},
    "pinned-model": {"provider": "anthropic", "input": 1, "output": 2, "cache_write": 1.25},
}


@pytest.fixture(autouse=True)
def _native_loaded() -> None:
    """Every test here needs the extension; under OTEL_COSTS_REQUIRE_NATIVE=1 its absence fails."""
    if _pricing._NATIVE is None:
        pytest.fail(
            "OTEL_COSTS_REQUIRE_NATIVE=1 but otel_costs._cost_native is not loaded: build it with "
            "`python setup.py build_ext --inplace` (and do not set OTEL_COSTS_NATIVE=0)"
        )


# --- the contract ---------------------------------------------------------------------------------


def _python_path(book: PriceBook, attributes: dict[str, Any], start_ns: object) -> dict[str, Any] | None:
    """What the processor's Python fast path writes for ``attributes``, or None where it does not answer."""
    own = dict(attributes)
    fields = billable_counts(own)
    if fields is None:
        return None
    quote = book._quote(*fields, start_ns)  # type: ignore[arg-type]
    if quote is None:
        return None
    _publish_quote(own, quote, own.get(conv.COST_STATUS) == conv.STATUS_PARTIAL)
    return own


def _assert_identical(native: dict[str, Any], expected: dict[str, Any], context: object) -> None:
    """Same keys in the same order, same value types, same values; floats bit for bit."""
    assert list(native) == list(expected), context
    for key, value in native.items():
        other = expected[key]
        assert type(value) is type(other), (key, value, other, context)
        if isinstance(value, float):
            assert struct.pack("<d", value) == struct.pack("<d", other), (key, value, other, context)
        else:
            assert value is other or value == other, (key, value, other, context)
    assert list(native.items()) == list(expected.items()) or any(
        isinstance(value, float) and value != value for value in native.values()
    ), context


def _check(book: PriceBook, attributes: dict[str, Any], start_ns: object) -> bool:
    """Check the contract for one span (Python first: it registers the plan); True if C answered."""
    before = list(attributes.items())
    expected = _python_path(book, attributes, start_ns)
    native = book._cost_attributes(attributes, start_ns)  # type: ignore[arg-type]
    assert list(attributes.items()) == before or any(v != v for _, v in before), "the input was changed"
    if native is None:
        return False
    assert expected is not None, ("C answered where Python does not", attributes, start_ns, native)
    assert native is not attributes
    _assert_identical(native, expected, (attributes, start_ns))
    return True


def _genai_attributes(
    model: str, provider: str | None, usage: TokenUsage, *, zero_parts: bool
) -> dict[str, Any]:
    """An LLM span's attributes in the current GenAI names; parts that are 0 only with ``zero_parts``."""
    attributes: dict[str, Any] = {
        conv.GEN_AI_OPERATION_NAME: "chat",
        conv.GEN_AI_RESPONSE_MODEL: model,
        conv.GEN_AI_USAGE_INPUT_TOKENS: usage.input_tokens,
        conv.GEN_AI_USAGE_OUTPUT_TOKENS: usage.output_tokens,
    }
    if provider is not None:
        attributes[conv.GEN_AI_PROVIDER_NAME] = provider
    for key, value in (
        (conv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, usage.cache_read_tokens),
        (conv.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS, usage.cache_write_tokens),
        (conv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, usage.reasoning_tokens),
    ):
        if value or zero_parts:
            attributes[key] = value
    return attributes


def _counts(usage: TokenUsage) -> tuple[int, int, int, int, int]:
    return (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
    )


def _usages_for(model: ModelInfo) -> list[TokenUsage]:
    """A handful of usages per model, plus both sides of every tier threshold it has."""
    usages = [
        TokenUsage(1_500, 500),
        TokenUsage(10_000, 800, 6_000, 2_000, 300),
        TokenUsage(0, 0),
        TokenUsage(123_457, 9_876, 100_000, 0, 5_000),
        TokenUsage(10**9, 10**8, 10**8, 10**7, 10**7),
        TokenUsage(10**10, 10**10, 10**10 // 2, 10**10 // 2, 10**10),
    ]
    prices = [model.prices] if isinstance(model.prices, ModelPrice) else [c.prices for c in model.prices]
    starts = {
        tier.start
        for price in prices
        for value in price.__dict__.values()
        if isinstance(value, TieredPrices)
        for tier in value.tiers
    }
    for start in sorted(starts):
        usages += [
            TokenUsage(start, 100, start // 2, start // 10),
            TokenUsage(start + 1, 100, start // 2, start // 10, 50),
        ]
    return usages


# --- 1. every bundled model -------------------------------------------------------------------------


def test_native_module_is_loaded() -> None:
    """The extension is built and configured, so the other tests exercise it (CI requires this)."""
    assert _pricing._NATIVE is not None
    assert callable(_pricing._NATIVE.cost_attributes)


def test_native_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_COSTS_NATIVE=0 makes _load_native give None, so Python prices every span."""
    monkeypatch.setenv("OTEL_COSTS_NATIVE", "0")
    assert _pricing._load_native() is None
    monkeypatch.setenv("OTEL_COSTS_NATIVE", "1")
    assert _pricing._load_native() is _pricing._NATIVE


def test_identical_for_every_bundled_model() -> None:
    """Every bundled model x usage x layout: C gives None or exactly the Python path's, mostly the latter."""
    book = PriceBook()
    checked = answered = 0
    for provider in BUNDLED_PROVIDERS:
        for model in provider.models:
            for usage in _usages_for(model):
                book._quote(model.id, provider.id, None, _counts(usage), AT_NS)  # registers the plan
                for zero_parts in (False, True):
                    for start_ns in (AT_NS, None):
                        attributes = _genai_attributes(model.id, provider.id, usage, zero_parts=zero_parts)
                        checked += 1
                        answered += _check(book, attributes, start_ns)
    assert checked > 10_000
    assert answered > checked // 2, (answered, checked)  # the C path runs, not silently skipped


# --- 2. fixed prices and overrides ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("book_factory", "models"),
    [
        pytest.param(fixed_price_book, ("gpt-5.2", "gemini-3-pro", "claude-sonnet-4-5"), id="fixed"),
        pytest.param(
            lambda: PriceBook(TIERED_OVERRIDES, use_genai_prices=False),
            tuple(TIERED_OVERRIDES),
            id="overrides",
        ),
        pytest.param(
            lambda: PriceBook(TIERED_OVERRIDES),
            (*TIERED_OVERRIDES, "gpt-4o", "claude-sonnet-4-5"),
            id="mixed",
        ),
    ],
)
@pytest.mark.parametrize("provider", [None, "openai", "anthropic", " Anthropic ", "vllm"])
def test_identical_for_fixed_prices_and_overrides(
    book_factory: Any, models: tuple[str, ...], provider: str | None
) -> None:
    """Fixed prices and tiered/cached overrides: the C result is None or exactly the Python path's."""
    book: PriceBook = book_factory()
    usages = [
        TokenUsage(1_500, 500),
        TokenUsage(10_000, 800, 6_000, 2_000, 300),
        TokenUsage(0, 0),
        TokenUsage(200_000, 10, 100_000, 50_000, 5),
        TokenUsage(200_001, 10, 100_000, 50_000, 5),
        TokenUsage(1_000_000, 1, 0, 999_999),
        TokenUsage(1_000_001, 1, 1_000_001, 0, 1),
        TokenUsage(10**10, 10**10, 10**10, 0, 10**10),
        TokenUsage(7, 3, 5, 2, 3),
    ]
    checked = answered = 0
    for model in models:
        for usage in usages:
            for zero_parts in (False, True):
                checked += 1
                answered += _check(
                    book, _genai_attributes(model, provider, usage, zero_parts=zero_parts), AT_NS
                )
    assert answered > checked // 2, (answered, checked)


def _random_rate(rng: random.Random) -> str:
    """A USD-per-1M rate: round, half-nano (for the rounding), or random digits at a random exponent."""
    kind = rng.random()
    if kind < 0.3:
        return rng.choice(("0", "0.0005", "0.0015", "0.0025", "0.5", "1", "2.5", "15", "75", "1000"))
    digits = rng.randint(1, 10 ** rng.randint(1, 7))
    return str(Decimal(digits).scaleb(-rng.randint(0, 6)))


def _random_overrides(rng: random.Random) -> dict[str, dict[str, object]]:
    """One model with random rates, cache rates and up to three tiers."""
    names = ["input", "output", *rng.sample(["cached_input", "cache_write"], rng.randint(0, 2))]
    spec: dict[str, object] = {name: _random_rate(rng) for name in names}
    starts = sorted(rng.sample([0, 1, 1_000, 128_000, 200_000, 10**6, 10**9], rng.randint(0, 3)))
    if starts:
        spec["tiers"] = [{"above": start, **{name: _random_rate(rng) for name in names}} for start in starts]
    return {"m": spec}


@pytest.mark.parametrize("seed", range(3))
def test_identical_for_random_rates(seed: int) -> None:
    """Random override rates and tiers (half-nano totals, long decimals) x counts: None or identical."""
    rng = random.Random(seed)
    checked = answered = 0
    for _ in range(150):
        book = PriceBook(_random_overrides(rng), use_genai_prices=False)
        for _ in range(20):
            input_tokens = rng.choice(
                (0, 1, 3, 999, 200_000, 200_001, 10**6 + 1, 10**10, rng.randint(0, 10**6))
            )
            output_tokens = rng.choice((0, 1, 7, rng.randint(0, 10**5)))
            cache_read = rng.randint(0, input_tokens)
            usage = TokenUsage(
                input_tokens,
                output_tokens,
                cache_read,
                rng.randint(0, input_tokens - cache_read),
                rng.randint(0, output_tokens),
            )
            book._quote("m", "openai", None, _counts(usage), AT_NS)
            checked += 1
            answered += _check(book, _genai_attributes("m", "openai", usage, zero_parts=False), AT_NS)
    assert answered > checked // 3, (answered, checked)


@pytest.mark.parametrize(("input_tokens", "nanos"), [(1, 0), (3, 2), (5, 2), (7, 4), (2, 1)])
def test_half_nanos_round_half_to_even(input_tokens: int, nanos: int) -> None:
    """$0.0005 per 1M tokens is half a nano-USD per token: C rounds ties to even, as to_nanos does."""
    book = PriceBook({"m": {"input": "0.0005", "output": 0}}, use_genai_prices=False)
    attributes = _genai_attributes("m", None, TokenUsage(input_tokens, 0), zero_parts=False)
    book._quote("m", None, None, (input_tokens, 0, 0, 0, 0), AT_NS)
    assert _check(book, attributes, AT_NS)
    assert book._cost_attributes(attributes, AT_NS)[conv.COST_DIRECT_NANOS] == nanos  # type: ignore[index]


@pytest.mark.parametrize(
    ("rate", "input_tokens", "answers"),
    [
        # 8589934592 nano-USD per token: 2**20 tokens cost exactly 2**53 nano-USD.
        pytest.param("8589934.592", 2**20, True, id="nanos-2**53"),
        pytest.param("8589934.592", 2**20 + 1, False, id="nanos-above-2**53"),
        # 1000001 units of 1e-12 USD per token: the input part passes 2**53 units at 10**10 tokens.
        pytest.param("1.000001", 9_007_190_000, True, id="part-below-2**53"),
        pytest.param("1.000001", 10**10, False, id="part-above-2**53"),
    ],
)
def test_figures_past_exact_doubles_are_left_to_python(rate: str, input_tokens: int, answers: bool) -> None:
    """C answers up to 2**53 (nanos, and parts in plan units) and leaves larger figures to Python."""
    book = PriceBook({"m": {"input": rate, "output": 0}}, use_genai_prices=False)
    attributes = _genai_attributes("m", None, TokenUsage(input_tokens, 0), zero_parts=False)
    book._quote("m", None, None, (input_tokens, 0, 0, 0, 0), AT_NS)
    assert _python_path(book, attributes, AT_NS) is not None
    assert _check(book, attributes, AT_NS) is answers


def test_override_figures_are_the_documented_ones() -> None:
    """A spot check against hand-computed figures: the C path prices a tiered override as documented."""
    book = PriceBook(TIERED_OVERRIDES, use_genai_prices=False)
    usage = TokenUsage(10_000, 800, 6_000, 2_000)
    attributes = _genai_attributes("private-model", "vllm", usage, zero_parts=False)
    book._quote("private-model", "vllm", None, _counts(usage), AT_NS)
    costed = book._cost_attributes(attributes, AT_NS)
    assert costed is not None
    # 2,000 uncached at $3, 6,000 read at $0.30, 2,000 written at $3.75, 800 out at $15 (per 1M).
    assert costed[conv.COST_DIRECT_NANOS] == 27_300_000
    assert (costed[conv.COST_INPUT], costed[conv.COST_CACHE_READ], costed[conv.COST_CACHE_WRITE]) == (
        0.006,
        0.0018,
        0.0075,
    )
    assert (costed[conv.COST_STATUS], costed[conv.COST_PRICE_SOURCE]) == (
        conv.STATUS_PRICED,
        conv.PRICE_SOURCE_OVERRIDE,
    )


def test_dated_prices_are_left_to_python() -> None:
    """A model with a dated price change gets no C plan: Python picks the price set by the start time."""
    book = PriceBook(
        {"m": {"input": 3, "output": 15, "changes": [{"start_date": "2026-06-01", "input": 2, "output": 10}]}}
    )
    attributes = _genai_attributes("m", None, TokenUsage(1_000, 10), zero_parts=False)
    assert book._quote("m", None, None, (1_000, 10, 0, 0, 0), AT_NS) is not None
    assert book._cost_attributes(attributes, AT_NS) is None


# --- 3. fuzz ------------------------------------------------------------------------------------------


class _Str(str):
    """A str subclass, as a bridge might hand over."""


class _Int(int):
    """An int subclass: not a plain count."""


_COUNT_VALUES: tuple[object, ...] = (
    0,
    1,
    7,
    1_500,
    200_000,
    200_001,
    10**9,
    10**10,
    10**10 + 1,
    -1,
    -(10**10),
    2**63,
    -(2**63),
    2**64,
    True,
    False,
    1.0,
    1.5,
    float("nan"),
    "12",
    " 12",
    "",
    None,
    _Int(5),
    _Str("5"),
)
#: Counts weighted towards the plausible ones, so many cases get a price.
_PLAIN_COUNTS: tuple[int, ...] = (0, 1, 7, 300, 1_500, 6_000, 200_000, 200_001, 10**6, 10**10)
_MODELS: tuple[object, ...] = (
    "gpt-4o",
    " gpt-4o ",
    "gpt-4o\n",
    "\u3000gpt-4o",
    "gpt-4o-mini",
    "claude-sonnet-4-5",
    "gemini-2.5-pro",
    "gpt-5.2",
    "private-model",
    "PRIVATE-MODEL",
    "odd-rates",
    "pinned-model",
    "sonar",
    "whisper-large-v3",
    "o3",
    "no-such-model",
    "",
    "   ",
    _Str("gpt-4o"),
    _Str(" private-model "),
    "gpt-4o\u00e9",
    "模型",
    "\ud800",
    5,
    None,
)
_PROVIDERS: tuple[object, ...] = (
    "openai",
    " OpenAI ",
    "anthropic",
    "google",
    "gcp.vertex_ai",
    "vllm",
    "ünïcode",
    "",
    " ",
    _Str("openai"),
    3,
    None,
)
_SERVERS: tuple[object, ...] = (
    "api.openai.com",
    "https://api.openai.com/v1",
    "localhost",
    "api.groq.com",
    "",
    None,
    1,
)
_OPERATIONS: tuple[object, ...] = (
    "chat",
    "embeddings",
    "text_completion",
    *sorted(conv.AGGREGATE_OPERATIONS),
    _Str("invoke_agent"),
    "",
    1,
    None,
)
_OI_KINDS: tuple[object, ...] = ("LLM", "EMBEDDING", "AGENT", "chain", "Tool", "", None, 2)
_TRACELOOP_KINDS: tuple[object, ...] = ("llm", "workflow", "Agent", "task", "tool", "", None)
_STATUSES: tuple[object, ...] = (
    conv.STATUS_PARTIAL,
    conv.STATUS_PRICED,
    _Str(conv.STATUS_PARTIAL),
    "PARTIAL",
    "",
    None,
    1,
)
_RESPONSE_IDS: tuple[object, ...] = ("resp_1", "", None, 7)
_STARTS: tuple[object, ...] = (
    None,
    0,
    AT_NS,
    -1,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) + 1,
    1.5,
    "x",
    True,
    _Int(AT_NS),
)
_COUNT_KEYS: tuple[str, ...] = (
    *conv.INPUT_KEYS,
    *conv.OUTPUT_KEYS,
    *conv.CACHE_READ_KEYS,
    *conv.CACHE_WRITE_KEYS,
    *conv.REASONING_KEYS,
    *conv.TOTAL_KEYS,
)
#: Each key with the pool its values come from.
_POOLS: tuple[tuple[str, tuple[object, ...]], ...] = (
    *((key, _COUNT_VALUES) for key in _COUNT_KEYS),
    *((key, _MODELS) for key in conv.MODEL_KEYS),
    *((key, _PROVIDERS) for key in conv.PROVIDER_KEYS),
    *((key, _SERVERS) for key in conv.SERVER_KEYS),
    (conv.GEN_AI_OPERATION_NAME, _OPERATIONS),
    (conv.OI_SPAN_KIND, _OI_KINDS),
    (conv.TRACELOOP_SPAN_KIND, _TRACELOOP_KINDS),
    (conv.COST_STATUS, _STATUSES),
    (conv.GEN_AI_RESPONSE_ID, _RESPONSE_IDS),
    ("http.request.method", ("POST", 1, None)),
    # Cost attributes already on the span (a re-export): keep their position, get overwritten.
    (conv.COST_DIRECT, (0.5, None, "x")),
    (conv.COST_PROVIDER, ("someone", "", None)),
    (conv.COST_MODEL, ("something", "")),
    (conv.COST_CURRENCY, ("EUR",)),
    (conv.COST_DIRECT_NANOS, (7, -1)),
    (conv.COST_OUTPUT, (1.0,)),
)


def _fuzz_case(rng: random.Random) -> tuple[dict[str, Any], object]:
    """Random span attributes: usually a plausible LLM span in the current names, plus random extras."""
    attributes: dict[str, Any] = {}
    if rng.random() < 0.8:
        input_tokens = rng.choice(_PLAIN_COUNTS)
        output_tokens = rng.choice(_PLAIN_COUNTS)
        attributes[conv.GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
        attributes[conv.GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
        attributes[conv.GEN_AI_RESPONSE_MODEL] = rng.choice(_MODELS[:12])
        if rng.random() < 0.7:
            attributes[conv.GEN_AI_PROVIDER_NAME] = rng.choice(_PROVIDERS[:6])
        for key in (
            conv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
            conv.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
        ):
            if rng.random() < 0.4:
                attributes[key] = rng.randint(0, input_tokens // 2)
        if rng.random() < 0.3:
            attributes[conv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = rng.randint(0, output_tokens)
    for _ in range(rng.choice((0, 0, 1, 2, 3, 6))):
        key, pool = rng.choice(_POOLS)
        attributes[key] = rng.choice(pool)
    if rng.random() < 0.3:
        # Shuffle the key order: the result must keep whatever order the span has.
        items = list(attributes.items())
        rng.shuffle(items)
        attributes = dict(items)
    start_ns = AT_NS if rng.random() < 0.6 else rng.choice(_STARTS)
    return attributes, start_ns


@pytest.fixture(scope="module")
def fuzz_book() -> Iterator[PriceBook]:
    """genai-prices' data plus the tiered overrides."""
    with PriceBook(TIERED_OVERRIDES) as book:
        yield book


@pytest.mark.parametrize("seed", range(4))
def test_fuzzed_attributes(fuzz_book: PriceBook, seed: int) -> None:
    """Seeded random attributes and start times: never an exception, None or exactly the Python path's."""
    rng = random.Random(seed)
    answered = 0
    cases = 2_000
    for _ in range(cases):
        attributes, start_ns = _fuzz_case(rng)
        answered += _check(fuzz_book, attributes, start_ns)
    assert answered > cases // 5, answered  # most plausible spans are answered by C


def test_unregistered_key_is_left_to_python() -> None:
    """Before _quote has seen a (provider, server, model), C answers None; afterwards it answers."""
    book = fixed_price_book()
    first = _genai_attributes("gpt-5.2", "openai", TokenUsage(10, 10), zero_parts=False)
    other = _genai_attributes("gemini-3-pro", "google", TokenUsage(10, 10), zero_parts=False)
    assert book._cost_attributes(first, AT_NS) is None
    book._quote("gpt-5.2", "openai", None, (10, 10, 0, 0, 0), AT_NS)
    assert book._cost_attributes(first, AT_NS) is not None
    assert book._cost_attributes(other, AT_NS) is None


def test_new_price_data_is_left_to_python_until_the_new_memo() -> None:
    """After new genai-prices data C answers None until _quote registers the new plan, then the new price."""
    book = PriceBook()
    usage = TokenUsage(1_000_000, 0)
    attributes = _genai_attributes("gpt-4o", "openai", usage, zero_parts=False)
    book._quote("gpt-4o", "openai", None, _counts(usage), AT_NS)
    assert book._cost_attributes(attributes, AT_NS)[conv.COST_DIRECT_NANOS] == 2_500_000_000  # type: ignore[index]
    with updated_gpt_4o_prices():
        assert book._cost_attributes(attributes, AT_NS) is None
        assert _python_path(book, attributes, AT_NS) is None  # _quote too: price() starts the new memo
        book.price(LlmCall("gpt-4o", "openai", None, usage), at=AT)
        assert _check(book, attributes, AT_NS)
        assert book._cost_attributes(attributes, AT_NS)[conv.COST_DIRECT_NANOS] == 7 * 10**9  # type: ignore[index]
    assert book._cost_attributes(attributes, AT_NS) is None


def test_concurrent_pricing_while_plans_are_evicted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads pricing many models while a small memo evicts plans: every answer still meets the contract."""
    monkeypatch.setattr(_pricing, "_MAX_MEMO", 8)
    book = PriceBook()
    models = [(provider.id, model.id) for provider in BUNDLED_PROVIDERS[:6] for model in provider.models][:64]
    barrier = threading.Barrier(4)
    answered = [0] * 4
    failures: list[BaseException] = []

    def work(slot: int) -> None:
        rng = random.Random(slot)
        barrier.wait()
        try:
            for _ in range(1_500):
                provider_id, model_id = rng.choice(models)
                usage = TokenUsage(rng.randint(100, 300_000), rng.randint(0, 5_000), rng.randint(0, 100))
                attributes = _genai_attributes(model_id, provider_id, usage, zero_parts=False)
                answered[slot] += _check(book, attributes, AT_NS)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[0]
    assert len(book._state.quick) <= 8 and len(book._state.native) <= 8
    assert sum(answered) > 1_000, answered


@pytest.mark.parametrize(
    ("model", "start_ns"),
    [("private-model", AT_NS), (" private-model ", None), ("private-model", 1.5), ("unseen-model", AT_NS)],
    ids=["answered", "stripped", "odd-start", "unregistered"],
)
def test_no_reference_leaks(model: str, start_ns: object) -> None:
    """Many calls leave the reference counts of the attribute values and the plan's names unchanged."""
    book = PriceBook(TIERED_OVERRIDES, use_genai_prices=False)
    attributes = _genai_attributes(
        model, "openai", TokenUsage(10_000, 800, 6_000, 2_000, 300), zero_parts=False
    )
    attributes[conv.COST_STATUS] = "".join(["part", "ial"])  # an object of this test's own
    attributes[conv.SERVER_ADDRESS] = " localhost "
    book._quote("private-model", "openai", "localhost", (10_000, 800, 6_000, 2_000, 300), AT_NS)
    quick = book._state.quick[("openai", "localhost", "private-model")]
    assert quick is not None
    watched = [quick.provider, quick.entry.model, *book._state.native.values(), *attributes.values()]
    for _ in range(100):
        book._cost_attributes(attributes, start_ns)  # type: ignore[arg-type]
    before = [sys.getrefcount(value) for value in watched]
    for _ in range(10_000):
        book._cost_attributes(attributes, start_ns)  # type: ignore[arg-type]
    assert [sys.getrefcount(value) for value in watched] == before


def test_make_plan_failures_do_not_leak() -> None:
    """make_plan calls that fail part-way release the names they were given."""
    provider = "".join(["prov", "ider"])
    arguments = _plan_arguments(provider=provider, checks=((1, 0, 0, 0, 0, 0), (2**63, 0, 0, 0, 0, 0)))
    before = sys.getrefcount(provider)
    for _ in range(1_000):
        with pytest.raises(OverflowError):
            _pricing._NATIVE.make_plan(*arguments)
    assert sys.getrefcount(provider) == before
    plans = [_pricing._NATIVE.make_plan(*_plan_arguments(provider=provider)) for _ in range(10)]
    assert sys.getrefcount(provider) == before + 10
    del plans
    assert sys.getrefcount(provider) == before


# --- 4. odd inputs straight to the C functions ----------------------------------------------------------


def _registered_plans() -> tuple[dict[Any, Any], dict[str, Any]]:
    """The C plans of a book that has seen gpt-5.2 from openai, and that span's attributes."""
    book = fixed_price_book()
    book._quote("gpt-5.2", "openai", None, (10, 10, 0, 0, 0), AT_NS)
    attributes = _genai_attributes("gpt-5.2", "openai", TokenUsage(10, 10), zero_parts=False)
    return book._state.native, attributes


def test_cost_attributes_answers_for_a_registered_plan() -> None:
    """The baseline of the odd-input tests: the direct call answers for a plain span."""
    plans, attributes = _registered_plans()
    assert _pricing._NATIVE.cost_attributes(plans, attributes, AT_NS) is not None


class _Dict(dict):  # type: ignore[type-arg]
    """A dict subclass."""


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(lambda plans, attributes: (list(plans.items()), attributes, 0), id="plans-list"),
        pytest.param(lambda plans, attributes: (None, attributes, 0), id="plans-none"),
        pytest.param(lambda plans, attributes: (plans, list(attributes.items()), 0), id="attributes-list"),
        pytest.param(lambda plans, attributes: (plans, None, 0), id="attributes-none"),
        pytest.param(lambda plans, attributes: (plans, tuple(attributes), 0), id="attributes-tuple"),
        pytest.param(lambda plans, attributes: (plans, attributes), id="too-few"),
        pytest.param(lambda plans, attributes: (plans, attributes, 0, 0), id="too-many"),
    ],
)
def test_cost_attributes_wrong_types_raise_type_error(arguments: Any) -> None:
    """Arguments of the wrong type or number raise TypeError, never crash."""
    plans, attributes = _registered_plans()
    with pytest.raises(TypeError):
        _pricing._NATIVE.cost_attributes(*arguments(plans, attributes))


@pytest.mark.parametrize(
    "plan",
    [
        pytest.param(5, id="int"),
        pytest.param(None, id="none"),
        pytest.param(object(), id="object"),
    ],
)
def test_cost_attributes_with_a_value_that_is_not_a_plan(plan: object) -> None:
    """A plans dict holding something else than a make_plan() capsule raises, never crashes."""
    _plans, attributes = _registered_plans()
    with pytest.raises((TypeError, ValueError)):
        _pricing._NATIVE.cost_attributes({("openai", None, "gpt-5.2"): plan}, attributes, AT_NS)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({}, id="empty"),
        pytest.param({conv.GEN_AI_USAGE_INPUT_TOKENS: None}, id="none-count"),
        pytest.param({1: 2, (3,): 4, None: None, 2.5: "x"}, id="non-str-keys"),
        pytest.param({conv.COST_STATUS: float("nan")}, id="nan-status"),
        pytest.param({conv.GEN_AI_RESPONSE_MODEL: "\ud800"}, id="lone-surrogate"),
        pytest.param({conv.GEN_AI_RESPONSE_MODEL: _Str("gpt-5.2")}, id="str-subclass"),
    ],
)
@pytest.mark.parametrize("start_ns", [None, AT_NS, 2**64, -(2**63), 1.5, "x", object()], ids=repr)
def test_cost_attributes_odd_values_never_raise(change: dict[Any, Any], start_ns: object) -> None:
    """Odd keys, values and start times give a dict or None, never an exception."""
    plans, attributes = _registered_plans()
    attributes.update(change)
    result = _pricing._NATIVE.cost_attributes(plans, attributes, start_ns)
    assert result is None or isinstance(result, dict)


class _RereadDict(dict):  # type: ignore[type-arg]
    """A dict subclass whose items, as ``dict()`` copies them, differ from what is stored."""

    def __iter__(self) -> Iterator[Any]:
        return iter(dict.keys(self))

    def __getitem__(self, key: Any) -> Any:
        value = dict.__getitem__(self, key)
        return 1_000 if key == conv.GEN_AI_USAGE_INPUT_TOKENS else value


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(_Dict, id="plain-subclass"),
        pytest.param(_RereadDict, id="overriding-subclass"),
    ],
)
def test_cost_attributes_on_a_dict_subclass_matches_python(kind: type[dict[str, Any]]) -> None:
    """A dict subclass gives the same answer as the Python path (or None)."""
    book = fixed_price_book()
    attributes = kind(_genai_attributes("gpt-5.2", "openai", TokenUsage(10, 10), zero_parts=False))
    book._quote("gpt-5.2", "openai", None, (10, 10, 0, 0, 0), AT_NS)
    _check(book, attributes, AT_NS)


#: Python code that runs inside cost_attributes after it found the plan, and drops the plan.
_DROPS_THE_PLAN = {
    "status-eq": """
class Status(str):
    def __eq__(self, other):
        plans.clear()
        junk.append([bytearray(64) for _ in range(100_000)])
        return False
    __hash__ = str.__hash__
attributes["cost.status"] = Status("partial")
""",
    "context-prec": """
class Context(decimal.Context):
    @property
    def prec(self):
        plans.clear()
        junk.append([bytearray(64) for _ in range(100_000)])
        return 28
decimal.setcontext(Context())
""",
}
_USE_AFTER_FREE = """
import decimal
from otel_costs.pricing import _book as _pricing
native = _pricing._NATIVE
zero = (0,) * 6
levels = (((1, 2, 0, 0, 0, 0), (1, 0, 0, 0, 0, 0), zero, zero, (0, 2, 0, 0, 0, 0)),)
junk = []
attributes = {
    "gen_ai.usage.input_tokens": 10,
    "gen_ai.usage.output_tokens": 10,
    "gen_ai.response.model": "m",
    "gen_ai.provider.name": "openai",
}
%s
for i in range(20):
    # Names that only the plan holds, so dropping the plan frees them.
    plan = native.make_plan(10**6, (), (), levels, "provider" + str(i), "model" + str(i), "source" + str(i))
    plans = {("openai", None, "m"): plan}
    del plan
    native.cost_attributes(plans, attributes, 10**18)
"""


@pytest.mark.parametrize("code", list(_DROPS_THE_PLAN.values()), ids=list(_DROPS_THE_PLAN))
def test_plan_dropped_during_the_call_does_not_crash(code: str) -> None:
    """Python code run inside cost_attributes (a str subclass's __eq__, a Context property) that drops
    the plan does not crash the interpreter (checked in a subprocess)."""
    result = subprocess.run(
        [sys.executable, "-c", _USE_AFTER_FREE % code], capture_output=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]


def _plan_arguments(**changes: object) -> tuple[object, ...]:
    """make_plan's arguments for a flat $1 input / $2 output per 1M plan, with ``changes``."""
    arguments: dict[str, object] = {
        "scale": 10**6,
        "thresholds": (),
        "checks": (),
        "levels": (((1, 2, 0, 0, 0, 0), (1, 0, 0, 0, 0, 0), (0,) * 6, (0,) * 6, (0, 2, 0, 0, 0, 0)),),
        "provider": "openai",
        "model": "m",
        "source": conv.PRICE_SOURCE_OVERRIDE,
    }
    arguments.update(changes)
    return tuple(arguments.values())


def test_make_plan_accepts_a_plain_plan() -> None:
    """The baseline of the make_plan tests: well-formed arguments give a plan that prices."""
    plan = _pricing._NATIVE.make_plan(*_plan_arguments())
    attributes = _genai_attributes("m", "openai", TokenUsage(10**6, 10**6), zero_parts=False)
    costed = _pricing._NATIVE.cost_attributes({("openai", None, "m"): plan}, attributes, AT_NS)
    assert costed is not None and costed[conv.COST_DIRECT_NANOS] == 3 * 10**9


_ROW = (1, 2, 0, 0, 0, 0)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        pytest.param({"thresholds": [5]}, TypeError, id="thresholds-list"),
        pytest.param({"checks": None}, TypeError, id="checks-none"),
        pytest.param({"levels": "abc"}, TypeError, id="levels-str"),
        pytest.param({"thresholds": ("5",), "levels": ((_ROW,) * 5,) * 2}, TypeError, id="threshold-str"),
        pytest.param({"checks": ((1.0, 0, 0, 0, 0, 0),)}, TypeError, id="coefficient-float"),
        pytest.param({"checks": (5,)}, TypeError, id="check-int"),
        pytest.param({"checks": ((1, 2),)}, ValueError, id="row-too-short"),
        pytest.param({"levels": ()}, ValueError, id="no-level"),
        pytest.param({"levels": ((_ROW,) * 4,)}, ValueError, id="four-rows"),
        pytest.param({"levels": ((_ROW,) * 5,) * 2}, ValueError, id="level-without-threshold"),
        pytest.param({"scale": 0}, OverflowError, id="scale-0"),
        pytest.param({"scale": -(10**6)}, OverflowError, id="scale-negative"),
        pytest.param({"scale": 2**53 + 1}, OverflowError, id="scale-above-2**53"),
        pytest.param({"scale": 10**30}, OverflowError, id="scale-10**30"),
        pytest.param({"checks": ((2**63, 0, 0, 0, 0, 0),)}, OverflowError, id="coefficient-2**63"),
        pytest.param(
            {"levels": (((0, 0, 0, 0, 0, -(2**63) - 1),) * 5,)}, OverflowError, id="coefficient-below"
        ),
        pytest.param(
            {"thresholds": (2**64,), "levels": ((_ROW,) * 5,) * 2}, OverflowError, id="threshold-2**64"
        ),
        pytest.param({"scale": "1000"}, TypeError, id="scale-str"),
        pytest.param({"levels": ([_ROW] * 5,)}, TypeError, id="level-list"),
    ],
)
def test_make_plan_rejects_odd_arguments(changes: dict[str, object], error: type[Exception]) -> None:
    """Wrong types raise TypeError, wrong shapes ValueError, figures past 64 bits or 2**53 OverflowError."""
    with pytest.raises(error):
        _pricing._NATIVE.make_plan(*_plan_arguments(**changes))


def test_make_plan_with_too_few_arguments() -> None:
    """A call with missing arguments raises TypeError."""
    with pytest.raises(TypeError):
        _pricing._NATIVE.make_plan(10**6, (), ())


@pytest.mark.parametrize(
    ("overrides", "counts"),
    [
        # A price with 54 decimal digits below the unit: the scale exceeds 2**53.
        pytest.param({"m": {"input": "0." + "0" * 40 + "1", "output": 1}}, (10**6, 10, 0, 0, 0), id="scale"),
        # A price of 2**63 units of 1/scale USD per token: a coefficient beyond 64 bits.
        pytest.param({"m": {"input": 2**63, "output": 1}}, (1, 1, 0, 0, 0), id="coefficient"),
    ],
)
def test_plans_beyond_the_c_integers_stay_with_python(
    overrides: dict[str, Any], counts: tuple[int, ...]
) -> None:
    """A plan whose scale or coefficients do not fit gets no C plan (_native_plan: None); Python prices it."""
    book = PriceBook(overrides, use_genai_prices=False)
    quote = book._quote("m", None, None, counts, AT_NS)  # type: ignore[arg-type]
    assert quote is not None
    quick = book._state.quick[(None, None, "m")]
    assert quick is not None
    assert _pricing._native_plan(quick) is None
    assert book._state.native == {}
    attributes = _genai_attributes("m", None, TokenUsage(*counts), zero_parts=False)
    assert book._cost_attributes(attributes, AT_NS) is None
    assert _python_path(book, attributes, AT_NS) is not None


# --- 5. Decimal context -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "context",
    [{"prec": 10}, {"prec": 27}, {"Emax": 999}, {"Emin": -999}, {"clamp": 1}],
    ids=lambda context: ",".join(f"{k}={v}" for k, v in context.items()),
)
def test_non_default_decimal_context_is_left_to_python(context: dict[str, int]) -> None:
    """Under a non-default Decimal context C answers None and Python prices in it, as _quote does."""
    book = PriceBook(TIERED_OVERRIDES, use_genai_prices=False)
    usage = TokenUsage(987_654, 123_456, 1_000)
    attributes = _genai_attributes("odd-rates", None, usage, zero_parts=False)
    book._quote("odd-rates", None, None, _counts(usage), AT_NS)
    assert book._cost_attributes(attributes, AT_NS) is not None  # so the context is what changes it
    with localcontext(**context):  # type: ignore[arg-type]
        assert book._cost_attributes(attributes, AT_NS) is None
        assert _python_path(book, attributes, AT_NS) is not None


# --- 6. end to end ------------------------------------------------------------------------------------


def _trace_llm_spans(processor_book: PriceBook) -> tuple[list[tuple[str, list[Any]]], list[tuple[str, int]]]:
    """Trace LLM spans through a real TracerProvider: the exported (name, attributes), the listener calls."""
    exporter = InMemorySpanExporter()
    heard: list[tuple[str, int]] = []

    def listener(span: ReadableSpan, nanos: int) -> None:
        heard.append((span.name, nanos))

    processor = CostSpanProcessor(
        SimpleSpanProcessor(exporter), price_book=processor_book, cost_listeners=[listener]
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test_cost_native")
    spans: list[tuple[str, dict[str, Any]]] = []
    for round_ in range(3):  # the first round registers the plans, the later ones take the C path
        for model, provider_name in (
            ("gpt-5.2", "openai"),
            ("private-model", None),
            ("claude-sonnet-4-5", "anthropic"),
            (" gpt-4o ", "openai"),
        ):
            usage = TokenUsage(10_000 + round_, 800, 6_000, 2_000, 300)
            spans.append(
                (
                    f"chat {model.strip()} {round_}",
                    _genai_attributes(model, provider_name, usage, zero_parts=False),
                )
            )
    duplicated = _genai_attributes("gpt-5.2", "openai", TokenUsage(1_500, 500), zero_parts=False)
    duplicated[conv.GEN_AI_RESPONSE_ID] = "resp_twice"
    partial = _genai_attributes("gpt-5.2", "openai", TokenUsage(1_200, 40), zero_parts=False)
    partial[conv.COST_STATUS] = conv.STATUS_PARTIAL
    # A model not seen before: the first span goes through Python (registering the plan), the second C.
    fresh = _genai_attributes("odd-rates", "openai", TokenUsage(3_000, 70), zero_parts=False)
    fresh[conv.GEN_AI_RESPONSE_ID] = "resp_fresh"
    tiered = _genai_attributes("private-model", "vllm", TokenUsage(250_000, 100, 50_000), zero_parts=False)
    spans += [
        ("first of a pair", duplicated),
        ("second of a pair", dict(duplicated)),
        ("fresh first", fresh),
        ("fresh second", dict(fresh)),
        ("partial 1", partial),
        ("partial 2", dict(partial)),
        ("tiered 1", tiered),
        ("tiered 2", dict(tiered)),
        ("not an llm span", {"http.request.method": "POST"}),
    ]
    with tracer.start_as_current_span("workflow"):
        for index, (name, attributes) in enumerate(spans):
            with tracer.start_as_current_span(name, attributes=attributes, start_time=AT_NS + index):
                pass
    provider.shutdown()
    exported = [
        (span.name, list((span.attributes or {}).items()))
        for span in exporter.get_finished_spans()
        if span.name != "workflow"
    ]
    return exported, heard


class _CountingNative:
    """The extension, counting the spans its cost_attributes answered."""

    def __init__(self, native: Any) -> None:
        self.native = native
        self.answered = 0

    def cost_attributes(self, plans: dict[Any, Any], attributes: dict[str, Any], start: object) -> Any:
        result = self.native.cost_attributes(plans, attributes, start)
        self.answered += result is not None
        return result

    def make_plan(self, *arguments: object) -> Any:
        return self.native.make_plan(*arguments)


def test_end_to_end_identical_with_and_without_native(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through a real SDK pipeline, exported attributes and listener nanos are the same with C on or off."""
    counting = _CountingNative(_pricing._NATIVE)
    monkeypatch.setattr(_pricing, "_NATIVE", counting)
    with_native = _trace_llm_spans(PriceBook(TIERED_OVERRIDES))
    assert counting.answered >= 10  # the later rounds and the repeated spans went through C
    monkeypatch.setattr(_pricing, "_NATIVE", None)
    without_native = _trace_llm_spans(PriceBook(TIERED_OVERRIDES))

    exported, heard = with_native
    assert exported == without_native[0]
    assert heard == without_native[1]
    for (name, attributes), (_name, python_attributes) in zip(exported, without_native[0], strict=True):
        _assert_identical(dict(attributes), dict(python_attributes), name)
    by_name = {name: dict(attributes) for name, attributes in exported}
    assert by_name["second of a pair"][conv.COST_STATUS] == conv.STATUS_DUPLICATE
    assert by_name["first of a pair"][conv.COST_STATUS] == conv.STATUS_PRICED
    assert by_name["fresh second"][conv.COST_STATUS] == conv.STATUS_DUPLICATE
    assert by_name["fresh first"][conv.COST_STATUS] == conv.STATUS_PRICED
    assert by_name["partial 2"][conv.COST_STATUS] == conv.STATUS_PARTIAL
    assert by_name["tiered 2"][conv.COST_DIRECT_NANOS] > 0
    assert conv.COST_STATUS not in by_name["not an llm span"]
    assert ("second of a pair", 0) not in heard  # a duplicate is not counted again
    assert len(heard) == len(exported) - 3  # every LLM span but the two duplicates
