"""Reading token usage from span attributes (otel_costs.pricing.read_usage and its fast front)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from decimal import Decimal

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util.types import AttributeValue

from otel_costs import conventions as conv
from otel_costs.pricing import LlmCall, TokenUsage, UsageReading, read_usage
from otel_costs.pricing._usage import MAX_TOKENS, billable_counts, usage_problem


@pytest.fixture
def finished_span() -> Iterator[object]:
    """A factory: attributes -> the ReadableSpan a real OTel SDK span ends as."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")

    def make(attributes: Mapping[str, AttributeValue]) -> ReadableSpan:
        exporter.clear()
        with tracer.start_as_current_span("chat", attributes=attributes):
            pass
        (span,) = exporter.get_finished_spans()
        return span

    yield make
    provider.shutdown()


def _billable(reading: UsageReading | None) -> LlmCall:
    assert reading is not None
    assert reading.kind == "billable", reading.reason
    assert reading.call is not None
    return reading.call


def test_no_usage_attributes_gives_none(finished_span) -> None:
    """A span without token counts (the common case) reads as None, on a real SDK span too."""
    span = finished_span({"http.method": "GET", "gen_ai.request.model": "gpt-4o", "server.address": "x"})
    assert read_usage(span.attributes or {}) is None
    assert read_usage({}) is None


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        pytest.param(
            {
                "gen_ai.usage.input_tokens": 10_000,
                "gen_ai.usage.output_tokens": 800,
                "gen_ai.usage.cache_read.input_tokens": 6_000,
                "gen_ai.usage.cache_write.input_tokens": 2_000,
                "gen_ai.usage.reasoning.output_tokens": 300,
            },
            TokenUsage(10_000, 800, 6_000, 2_000, 300),
            id="otel-semconv-current",
        ),
        pytest.param(
            {
                "gen_ai.usage.input_tokens": 10_000,
                "gen_ai.usage.output_tokens": 800,
                "gen_ai.usage.cache_read.input_tokens": 6_000,
                "gen_ai.usage.cache_creation.input_tokens": 2_000,
            },
            TokenUsage(10_000, 800, 6_000, 2_000),
            id="otel-semconv-released-cache-creation",
        ),
        pytest.param(
            {"gen_ai.usage.prompt_tokens": 1_500, "gen_ai.usage.completion_tokens": 500},
            TokenUsage(1_500, 500),
            id="otel-semconv-deprecated",
        ),
        pytest.param(
            # OpenLLMetry's anthropic instrumentation: prompt_tokens = input + cache read + cache creation.
            {
                "gen_ai.usage.prompt_tokens": 8_010,
                "gen_ai.usage.completion_tokens": 120,
                "llm.usage.total_tokens": 8_130,
                "gen_ai.usage.cache_read_input_tokens": 6_000,
                "gen_ai.usage.cache_creation_input_tokens": 2_000,
                "gen_ai.usage.reasoning_tokens": 40,
            },
            TokenUsage(8_010, 120, 6_000, 2_000, 40),
            id="openllmetry",
        ),
        pytest.param(
            {
                "llm.token_count.prompt": 8_010,
                "llm.token_count.completion": 120,
                "llm.token_count.total": 8_130,
                "llm.token_count.prompt_details.cache_read": 6_000,
                "llm.token_count.prompt_details.cache_write": 2_000,
                "llm.token_count.completion_details.reasoning": 40,
                "openinference.span.kind": "LLM",
            },
            TokenUsage(8_010, 120, 6_000, 2_000, 40),
            id="openinference",
        ),
        pytest.param(
            {
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.output_tokens": 200,
                "gen_ai.usage.details.cache_read_tokens": 20,
                "gen_ai.usage.details.cache_write_tokens": 10,
                "gen_ai.usage.details.reasoning_tokens": 30,
            },
            TokenUsage(100, 200, 20, 10, 30),
            id="pydantic-ai",
        ),
        pytest.param(
            {"gen_ai.usage.input_tokens": 42, "gen_ai.operation.name": "embeddings"},
            TokenUsage(42, 0),
            id="embeddings-input-only",
        ),
    ],
)
def test_reads_each_instrumentation(
    finished_span, attributes: dict[str, AttributeValue], expected: TokenUsage
) -> None:
    """Each instrumentation's attribute names are read into the same TokenUsage, from a real span."""
    span = finished_span({**attributes, "gen_ai.request.model": "m"})
    assert _billable(read_usage(span.attributes or {})).usage == expected


def test_current_semconv_name_wins_over_deprecated_alias() -> None:
    """When a span carries both spellings, the current semantic-convention attribute is used."""
    call = _billable(
        read_usage(
            {
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.prompt_tokens": 999,
                "llm.token_count.prompt": 998,
                "gen_ai.usage.output_tokens": 7,
            }
        )
    )
    assert call.usage == TokenUsage(100, 7)


def test_model_provider_and_server_are_read_in_priority_order() -> None:
    """The response model beats the request model; gen_ai.provider.name beats gen_ai.system."""
    call = _billable(
        read_usage(
            {
                "gen_ai.usage.input_tokens": 1,
                "gen_ai.usage.output_tokens": 1,
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.response.model": "gpt-4o-2024-08-06",
                "llm.model_name": "other",
                "gen_ai.system": "openai",
                "gen_ai.provider.name": "azure.ai.openai",
                "server.address": "myres.openai.azure.com",
            }
        )
    )
    assert (call.model, call.provider, call.server_address) == (
        "gpt-4o-2024-08-06",
        "azure.ai.openai",
        "myres.openai.azure.com",
    )


def test_openinference_model_and_provider_names_are_read() -> None:
    """OpenInference's llm.model_name and llm.provider fill in when no gen_ai.* names exist."""
    call = _billable(
        read_usage(
            {
                "llm.token_count.prompt": 5,
                "llm.token_count.completion": 1,
                "llm.model_name": "claude",
                "llm.provider": "anthropic",
            }
        )
    )
    assert (call.model, call.provider, call.server_address) == ("claude", "anthropic", None)


def test_cache_counts_above_input_are_invalid_and_say_why() -> None:
    """An Anthropic-style uncached input count (smaller than the cache counts) is flagged, not priced."""
    reading = read_usage(
        {
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 50,
            "gen_ai.usage.cache_read.input_tokens": 6_000,
            "gen_ai.usage.cache_creation.input_tokens": 2_000,
        }
    )
    assert reading is not None and reading.kind == "invalid" and reading.call is None
    assert reading.reason is not None and "include cached tokens" in reading.reason


def test_reasoning_above_output_is_invalid() -> None:
    """Reasoning tokens are part of the output count, so more reasoning than output is flagged."""
    reading = read_usage({"gen_ai.usage.output_tokens": 10, "gen_ai.usage.reasoning.output_tokens": 11})
    assert reading is not None and reading.kind == "invalid"
    assert reading.reason is not None and "reasoning" in reading.reason


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (-1, "negative"),
        (math.nan, "not finite"),
        (math.inf, "not finite"),
        (-math.inf, "not finite"),
        (12.5, "not a whole number"),
        ("12.5", "not a whole number"),
        ("twelve", "not a whole number"),
        ("-3", "not a whole number"),
        ("", "not a whole number"),
        ("١٢", "not a whole number"),
        (True, "bool"),
        (False, "bool"),
        ([1, 2], "type list"),
        (MAX_TOKENS + 1, "absurdly large"),
        (1e11, "absurdly large"),
        ("9" * 30, "absurdly large"),
        (Decimal("1.5"), "not a whole finite number"),
    ],
)
def test_bad_values_are_invalid_with_a_reason(value: object, fragment: str) -> None:
    """Every unusable count yields kind=invalid and a reason naming the attribute and the problem."""
    reading = read_usage({"gen_ai.usage.input_tokens": value, "gen_ai.usage.output_tokens": 3})
    assert reading is not None and reading.kind == "invalid" and reading.call is None
    assert reading.reason is not None
    assert "gen_ai.usage.input_tokens" in reading.reason and fragment in reading.reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [(12, 12), (12.0, 12), ("12", 12), (Decimal("12"), 12), (0, 0), (MAX_TOKENS, MAX_TOKENS)],
)
def test_whole_numbers_in_other_types_are_accepted(value: object, expected: int) -> None:
    """Whole floats, digit strings and whole Decimals are read as the int they spell."""
    reading = read_usage({"gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": value})
    assert _billable(reading).usage.output_tokens == expected


def test_none_values_count_as_absent() -> None:
    """A None attribute (possible in plain dicts) is skipped and the next alias is used."""
    call = _billable(
        read_usage(
            {
                "gen_ai.usage.input_tokens": None,
                "gen_ai.usage.prompt_tokens": 9,
                "gen_ai.usage.output_tokens": 1,
            }
        )
    )
    assert call.usage.input_tokens == 9


def test_total_alone_is_invalid() -> None:
    """A span with only a total token count is flagged: it cannot be split into input and output."""
    reading = read_usage({"llm.usage.total_tokens": 900, "gen_ai.request.model": "gpt-4o"})
    assert reading is not None and reading.kind == "invalid"
    assert reading.reason is not None and "llm.usage.total_tokens" in reading.reason


@pytest.mark.parametrize(
    "marker",
    [
        {"gen_ai.operation.name": "invoke_agent"},
        {"gen_ai.operation.name": "invoke_workflow"},
        {"gen_ai.operation.name": "execute_tool"},
        {"gen_ai.operation.name": "create_agent"},
        {"openinference.span.kind": "AGENT"},
        {"openinference.span.kind": "CHAIN"},
        {"openinference.span.kind": "TOOL"},
        {"traceloop.span.kind": "workflow"},
        {"traceloop.span.kind": "agent"},
        {"traceloop.span.kind": "task"},
        {"traceloop.span.kind": "tool"},
    ],
)
def test_agent_workflow_and_tool_spans_are_aggregate(marker: dict[str, str]) -> None:
    """Usage on agent/workflow/tool spans is an aggregate of child calls: never billable."""
    reading = read_usage({**marker, "gen_ai.usage.input_tokens": 5_000, "gen_ai.usage.output_tokens": 900})
    assert reading is not None and reading.kind == "aggregate"
    assert reading.call is not None and reading.call.usage == TokenUsage(5_000, 900)
    assert reading.reason is not None and "child calls" in reading.reason


@pytest.mark.parametrize(
    "marker",
    [
        {"gen_ai.operation.name": "chat"},
        {"gen_ai.operation.name": "embeddings"},
        {"openinference.span.kind": "LLM"},
        {"traceloop.span.kind": "unknown"},
    ],
)
def test_llm_call_spans_stay_billable(marker: dict[str, str]) -> None:
    """Chat, embeddings and LLM-kind spans are billable calls."""
    # Embeddings report no output count; the others report both (one-sided usage is partial).
    output = {} if marker.get("gen_ai.operation.name") == "embeddings" else {"gen_ai.usage.output_tokens": 1}
    assert _billable(read_usage({**marker, **output, "gen_ai.usage.input_tokens": 5})).usage.input_tokens == 5


def test_aggregate_span_with_bad_values_stays_aggregate() -> None:
    """An agent span with unreadable counts is still an aggregate (never priced), with both reasons."""
    reading = read_usage({"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": -4})
    assert reading is not None and reading.kind == "aggregate" and reading.call is None
    assert reading.reason is not None and "negative" in reading.reason


class _Exploding(Mapping[str, object]):
    """A mapping that lists a usage key but fails to produce it."""

    def __getitem__(self, key: str) -> object:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        return iter(["gen_ai.usage.input_tokens"])

    def __len__(self) -> int:
        return 1


def test_never_raises_on_a_broken_mapping(caplog: pytest.LogCaptureFixture) -> None:
    """A mapping that raises gives an invalid reading and a logged exception, not an exception."""
    with caplog.at_level(logging.ERROR, logger="otel_costs.pricing._usage"):
        reading = read_usage(_Exploding())
    assert reading is not None and reading.kind == "invalid"
    assert reading.reason is not None and "RuntimeError" in reading.reason
    assert any("could not read usage" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("usage", "fragment"),
    [
        (TokenUsage(10, 5), None),
        (TokenUsage(-1, 5), "negative"),
        (TokenUsage(10, 5, 8, 3), "exceed"),
        (TokenUsage(10, 5, reasoning_tokens=6), "reasoning"),
        (TokenUsage(MAX_TOKENS + 1, 0), "absurdly large"),
        (TokenUsage(True, 0), "must be an int"),  # type: ignore[arg-type]
        (TokenUsage(1.0, 0), "must be an int"),  # type: ignore[arg-type]
    ],
)
def test_usage_problem(usage: TokenUsage, fragment: str | None) -> None:
    """usage_problem accepts consistent counts and names what is wrong with the others.

    Internal (usage_problem): it is the reason text price() gives for invalid_usage.
    """
    problem = usage_problem(usage)
    if fragment is None:
        assert problem is None
    else:
        assert problem is not None and fragment in problem


def test_openinference_embedding_model_name_is_read() -> None:
    """OpenInference embedding spans name their model in ``embedding.model_name``."""
    reading = read_usage(
        {
            "openinference.span.kind": "EMBEDDING",
            "llm.token_count.prompt": 1000,
            "llm.token_count.total": 1000,
            "llm.system": "openai",
            "embedding.model_name": "text-embedding-3-small",
        }
    )
    assert reading is not None and reading.call is not None
    assert reading.kind == "billable"
    assert reading.call.model == "text-embedding-3-small"


# --- billable_counts: the processor's fast path must agree with read_usage ---------------------

_BASE = {"gen_ai.usage.input_tokens": 1_000, "gen_ai.usage.output_tokens": 200}

#: Layouts and edge cases; each is read by billable_counts and by read_usage.
AGREEMENT_CASES: list[dict[str, object]] = [
    {},
    {"http.method": "GET"},
    _BASE,
    {
        **_BASE,
        "gen_ai.response.model": "gpt-4o",
        "gen_ai.request.model": "gpt-4o-2024",
        "gen_ai.provider.name": "openai",
    },
    {**_BASE, "gen_ai.response.model": "  ", "gen_ai.request.model": " gpt-4o ", "gen_ai.system": " openai "},
    {**_BASE, "gen_ai.response.model": 5, "llm.model_name": "claude", "gen_ai.provider.name": ""},
    {**_BASE, "server.address": "api.openai.com", "gen_ai.openai.api_base": "https://x"},
    {**_BASE, "gen_ai.openai.api_base": " https://api.openai.com/v1 "},
    {**_BASE, "server.address": "   ", "gen_ai.openai.api_base": "https://x"},
    {"gen_ai.usage.output_tokens": 7},
    {"gen_ai.usage.input_tokens": 7},
    {"gen_ai.usage.input_tokens": None, "gen_ai.usage.prompt_tokens": 9, "gen_ai.usage.completion_tokens": 3},
    {
        "llm.token_count.prompt": 50,
        "llm.token_count.completion": 5,
        "llm.model_name": "m",
        "llm.provider": "p",
    },
    {**_BASE, "gen_ai.usage.cache_read.input_tokens": 600, "gen_ai.usage.cache_creation.input_tokens": 400},
    {**_BASE, "gen_ai.usage.cache_read.input_tokens": 601, "gen_ai.usage.cache_write.input_tokens": 400},
    {**_BASE, "gen_ai.usage.reasoning.output_tokens": 200},
    {**_BASE, "gen_ai.usage.reasoning.output_tokens": 201},
    {**_BASE, "gen_ai.usage.details.cache_read_tokens": 10, "llm.usage.reasoning_tokens": 5},
    {**_BASE, "gen_ai.usage.cache_read_input_tokens": None, "gen_ai.usage.cache_read.input_tokens": 3},
    {**_BASE, "gen_ai.usage.input_tokens": 1_000.0},
    {**_BASE, "gen_ai.usage.input_tokens": "1000"},
    {**_BASE, "gen_ai.usage.input_tokens": True},
    {**_BASE, "gen_ai.usage.input_tokens": -1},
    {**_BASE, "gen_ai.usage.input_tokens": MAX_TOKENS},
    {**_BASE, "gen_ai.usage.input_tokens": MAX_TOKENS + 1},
    {**_BASE, "gen_ai.usage.cache_read.input_tokens": -1},
    {**_BASE, "gen_ai.usage.cache_read.input_tokens": 1.0},
    {**_BASE, "gen_ai.operation.name": "chat"},
    {**_BASE, "gen_ai.operation.name": "invoke_agent"},
    {**_BASE, "gen_ai.operation.name": 3},
    {**_BASE, "openinference.span.kind": "chain"},
    {**_BASE, "openinference.span.kind": "LLM"},
    {**_BASE, "traceloop.span.kind": "Workflow"},
    {**_BASE, "traceloop.span.kind": "llm"},
    {"llm.usage.total_tokens": 900, "gen_ai.request.model": "gpt-4o"},
    {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"},
]


class _IntLike(int):
    """An int subclass: read_usage flags it, so the fast path must leave it to read_usage."""


@pytest.mark.parametrize(
    "attributes",
    [*AGREEMENT_CASES, {**_BASE, "gen_ai.usage.output_tokens": _IntLike(3)}],
    ids=lambda attributes: repr(attributes)[:80],
)
def test_billable_counts_agrees_with_read_usage(attributes: dict[str, object]) -> None:
    """billable_counts answers exactly for the spans read_usage reads as billable, with the same call.

    Internal (billable_counts): the span path's fast reader must never read a span differently.
    """
    fast = billable_counts(attributes)
    # Read again: the second reading of the same names comes from the memo and must not differ.
    assert billable_counts(attributes) == fast
    reading = read_usage(attributes)
    if fast is None:
        # Not billable, or counts written as floats or strings, which only read_usage converts.
        assert reading is None or reading.kind != "billable" or not _counts_are_ints(attributes)
        return
    assert reading is not None and reading.kind == "billable" and reading.call is not None
    (provider, server, model), counts = fast
    call = reading.call
    assert (model, provider, server) == (call.model, call.provider, call.server_address)
    usage = call.usage
    assert counts == (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
    )


def _counts_are_ints(attributes: Mapping[str, object]) -> bool:
    """True when every count read_usage picks (first non-None of each list) is an exact int."""
    for keys in (
        conv.INPUT_KEYS,
        conv.OUTPUT_KEYS,
        conv.CACHE_READ_KEYS,
        conv.CACHE_WRITE_KEYS,
        conv.REASONING_KEYS,
    ):
        value = next((attributes[key] for key in keys if attributes.get(key) is not None), 0)
        if type(value) is not int:
            return False
    return True


def test_billable_counts_answers_for_int_counts() -> None:
    """The common layouts, with int counts, take the fast path (it is not silently always None).

    Internal (billable_counts): the span path's fast reader.
    """
    answered = [case for case in AGREEMENT_CASES if billable_counts(case) is not None]
    assert len(answered) >= 12


@pytest.mark.parametrize(
    ("first", "second", "names"),
    [
        # No response model: the request model decides, span by span.
        (
            {"gen_ai.response.model": None, "gen_ai.request.model": "gpt-4o"},
            {"gen_ai.response.model": None, "gen_ai.request.model": "gpt-4o-mini"},
            ("openai", None, "gpt-4o-mini"),
        ),
        # A blank response model: the same.
        (
            {"gen_ai.response.model": " ", "gen_ai.request.model": "a"},
            {"gen_ai.response.model": " ", "gen_ai.request.model": "b"},
            ("openai", None, "b"),
        ),
        # No current provider name: the legacy gen_ai.system decides.
        (
            {"gen_ai.provider.name": None, "gen_ai.system": "openai"},
            {"gen_ai.provider.name": None, "gen_ai.system": "anthropic"},
            ("anthropic", None, "gpt-4o"),
        ),
        # Names as written with spaces: memoized cleaned.
        (
            {"gen_ai.response.model": " gpt-4o "},
            {"gen_ai.response.model": " gpt-4o "},
            ("openai", None, "gpt-4o"),
        ),
        # A server address that is no dict key: cleaned every time.
        ({"server.address": ["h"]}, {"server.address": ["h"]}, ("openai", None, "gpt-4o")),
    ],
)
def test_billable_counts_names_memo_keeps_each_spans_fallback(
    first: dict[str, object], second: dict[str, object], names: tuple[object, ...]
) -> None:
    """Two spans whose memoized names are the same but whose other name keys differ each get their own names.

    Internal (billable_counts): the names memo must only answer where the memoized keys decide alone.
    """
    base = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.response.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 5,
    }
    one, two = {**base, **first}, {**base, **second}
    for attributes in (one, two, one, two):
        fast = billable_counts(attributes)
        reading = read_usage(attributes)
        assert fast is not None and reading is not None and reading.call is not None
        call = reading.call
        assert fast[0] == (call.provider, call.server_address, call.model)
    assert billable_counts(two) == (names, (10, 5, 0, 0, 0))
