"""Token usage read from span attributes, as the common instrumentations write it.

Runs on every span end, so the common case, a span without any LLM usage, costs one set
intersection over the span's attribute keys. Only spans that carry a usage attribute are read.

Sources and their cache semantics (details in ``docs/pricing.md``): the OpenTelemetry GenAI
semantic conventions, OpenLLMetry (traceloop) and OpenInference all report an input count that
*includes* cache reads and cache writes, also for Anthropic, whose raw API ``input_tokens``
excludes them (the instrumentations add them back). So does Pydantic AI / Logfire. A span whose
cache counts exceed its input count cannot be read that way and is flagged ``invalid``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal, TypeGuard

from otel_costs._kinds import MARKER_KEYS, aggregate_reason, is_model_call
from otel_costs.conventions import (
    CACHE_READ_KEYS,
    CACHE_WRITE_KEYS,
    ERROR_TYPE,
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    INPUT_KEYS,
    LLM_OPERATIONS,
    MODEL_KEYS,
    OI_EMBEDDING_MODEL_NAME,
    OI_SPAN_KIND,
    OPENAI_API_BASE,
    OUTPUT_KEYS,
    PROVIDER_KEYS,
    REASONING_KEYS,
    SERVER_ADDRESS,
    SERVER_KEYS,
    TOTAL_KEYS,
    TRACELOOP_REQUEST_TYPE,
    TRACELOOP_SPAN_KIND,
)

logger = logging.getLogger(__name__)


_CALL_MARKERS: Final = MARKER_KEYS

#: Largest token count accepted on one span; anything above is a unit or overflow bug.
MAX_TOKENS: Final = 10**10

_FIELDS: Final = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
_USAGE_KEYS: Final = frozenset(INPUT_KEYS + OUTPUT_KEYS + CACHE_READ_KEYS + CACHE_WRITE_KEYS + REASONING_KEYS)
_TRIGGER_KEYS: Final = _USAGE_KEYS | frozenset(TOTAL_KEYS)
#: OpenTelemetry's ``error.type``: a failed call may report its input only (nothing was generated).
_ERROR_TYPE: Final = ERROR_TYPE
_READ_KEYS: Final = (
    _TRIGGER_KEYS
    | frozenset(MODEL_KEYS + PROVIDER_KEYS + SERVER_KEYS)
    | {GEN_AI_OPERATION_NAME, OI_SPAN_KIND, TRACELOOP_SPAN_KIND, TRACELOOP_REQUEST_TYPE, _ERROR_TYPE}
)
#: A span with none of these keys is one ``read_usage`` returns ``None`` for, whatever else it has.
USAGE_OR_CALL_KEYS: Final = _TRIGGER_KEYS | _CALL_MARKERS
#: The usage parts that are usually absent: one set test rules all three out.
_PART_KEYS: Final = frozenset(CACHE_READ_KEYS + CACHE_WRITE_KEYS + REASONING_KEYS)

#: The reason of a model call whose usage is all zero (issue 11: e.g. OpenInference AutoGen writes
#: prompt=0, completion=0 on streams that carried no usage): never priced as $0.
ZERO_USAGE_REASON: Final = "usage reported as zero"
#: Operation names and span kinds (lower case) of embeddings calls, which have no output count.
_EMBEDDING_KINDS: Final = frozenset({"embeddings", "embedding"})
_KIND_KEYS: Final = (GEN_AI_OPERATION_NAME, OI_SPAN_KIND, TRACELOOP_REQUEST_TYPE)

#: Counts in ``TokenUsage`` field order: input, output, cache read, cache write, reasoning.
Counts = tuple[int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of one LLM call, with OpenTelemetry semantics (parts are included in totals).

    Every field is a plain ``int``; a count that was not reported is ``0`` (never ``None``): no
    cache reads, no cache writes, no reasoning. Pricing rejects (``invalid_usage``) any other type.
    """

    input_tokens: int = 0
    """All input tokens, including cache reads and cache writes."""
    output_tokens: int = 0
    """All output tokens, including reasoning tokens."""
    cache_read_tokens: int = 0
    """Input tokens served from the provider's prompt cache (part of ``input_tokens``)."""
    cache_write_tokens: int = 0
    """Input tokens written to the provider's prompt cache (part of ``input_tokens``)."""
    reasoning_tokens: int = 0
    """Output tokens spent on reasoning (part of ``output_tokens``)."""


@dataclass(frozen=True, slots=True)
class LlmCall:
    """What a span says about one LLM call: enough to price it."""

    model: str | None
    """Model name: ``gen_ai.response.model``, else ``gen_ai.request.model``, else ``llm.model_name``."""
    provider: str | None
    """Provider name as found on the span (``gen_ai.provider.name``, ``gen_ai.system``, ``llm.provider``)."""
    server_address: str | None
    """``server.address`` (or an API base URL), used to find the provider when no name is given."""
    usage: TokenUsage
    """The token counts."""


@dataclass(frozen=True, slots=True)
class UsageReading:
    """The outcome of reading a span's usage attributes."""

    kind: Literal["billable", "partial", "aggregate", "invalid", "missing"]
    """``billable``: an LLM call to price; ``partial``: a call to price whose usage is not whole
    (input without output on a call that is neither an embeddings call nor failed, or output without input:
    priced as a lower bound and flagged ``partial``); ``aggregate``: a sum over child calls, never
    priced; ``invalid``: usage attributes that cannot be read (see ``reason``); ``missing``: a
    model call that reported no usage at all, or reported it as all zero (flagged ``unpriced``,
    never a silent $0)."""
    call: LlmCall | None
    """The call, for ``billable`` and ``partial`` (and ``missing``: with zero usage); for
    ``aggregate`` when its counts are readable; else ``None``."""
    reason: str | None
    """Why the reading is not ``billable``; ``None`` for ``billable``."""


def read_usage(attributes: Mapping[str, object]) -> UsageReading | None:
    """Read the token usage of a span from its attributes; ``None`` when it carries none.

    Never raises: unreadable values give ``kind="invalid"`` with a reason.

    >>> read_usage({"gen_ai.usage.input_tokens": 1500, "gen_ai.usage.output_tokens": 500,
    ...             "gen_ai.request.model": "gpt-5.2"}).call.usage.input_tokens
    1500
    """
    try:
        # The hot path: one pass over the keys in C, no per-name lookups (a miss on the SDK's
        # BoundedAttributes costs a raised KeyError).
        if _TRIGGER_KEYS.isdisjoint(attributes):
            return None if _CALL_MARKERS.isdisjoint(attributes) else _missing(attributes)
        return _read(attributes)
    except Exception as exc:
        logger.exception("otel_costs: could not read usage attributes")
        return UsageReading("invalid", None, f"usage attributes could not be read: {type(exc).__name__}")


def plausible_counts(counts: tuple[object, object, object, object, object]) -> TypeGuard[Counts]:
    """Fast check of ``(input, output, cache_read, cache_write, reasoning)``: ints in range, parts
    within their totals. Exactly the counts ``usage_problem`` accepts."""
    input_tokens, output_tokens, cache_read, cache_write, reasoning = counts
    return (
        type(input_tokens) is int
        and type(output_tokens) is int
        and type(cache_read) is int
        and type(cache_write) is int
        and type(reasoning) is int
        and cache_read >= 0
        and cache_write >= 0
        and reasoning >= 0
        and cache_read + cache_write <= input_tokens <= MAX_TOKENS
        and reasoning <= output_tokens <= MAX_TOKENS
    )


#: Keys outside the common layout of a call span (usage parts, another convention's kind marker,
#: the legacy OpenAI API base): a span with none of them takes ``billable_counts``' short path.
_UNCOMMON_KEYS: Final = _PART_KEYS | {OI_SPAN_KIND, TRACELOOP_SPAN_KIND, OPENAI_API_BASE}
#: The names a billable span is priced by: ``(provider, server address, model)``, each cleaned.
RouteNames = tuple[str | None, str | None, str | None]
#: What ``billable_counts`` returns: the ``RouteNames`` and the ``Counts``.
Billable = tuple[RouteNames, Counts]
#: The common layout's ``RouteNames`` by the raw values of ``gen_ai.response.model``,
#: ``gen_ai.provider.name`` and ``server.address`` they were cleaned from: a process sees a
#: handful, so each is cleaned once. Kept only where those three values decide the names alone
#: (a model and a provider as written, no fallback to another key), at most ``_MAX_NAMES``.
_NAMES: dict[tuple[object, object, object], RouteNames] = {}
_MAX_NAMES: Final = 1024


def billable_counts(attributes: Mapping[str, object]) -> Billable | None:
    """``(route names, counts)`` of a plainly billable span, else ``None``.

    The processor's hot path. For a span that ``read_usage`` reads as ``billable`` with counts
    that are already ints (as instrumentations write them), this returns its call's provider,
    server address and model (``RouteNames``) and counts without building the reading's
    dataclasses. It returns ``None`` for every other span, which then goes through
    ``read_usage``: so the two never disagree, this one is only faster where it answers. The
    common layout (the current GenAI names, no usage parts, no other convention's marker) is read
    with six look-ups and its names memoized (``_NAMES``); any other layout takes the same
    priority lists as ``_read``.
    """
    get = attributes.get
    input_tokens = get(GEN_AI_USAGE_INPUT_TOKENS)
    output_tokens = get(GEN_AI_USAGE_OUTPUT_TOKENS)
    operation = get(GEN_AI_OPERATION_NAME)
    # Exactly the counts _parse_count and usage_problem accept unchanged (bools and int
    # subclasses are not ``int``; floats and strings are read by read_usage).
    if not (
        type(input_tokens) is int
        and type(output_tokens) is int
        and 0 <= input_tokens <= MAX_TOKENS
        and 0 < output_tokens <= MAX_TOKENS
        and _UNCOMMON_KEYS.isdisjoint(attributes)
        and type(operation) is str
        and operation in LLM_OPERATIONS
    ):
        counts = _general_counts(attributes, input_tokens, output_tokens, operation)
        return None if counts is None else (_route_names(attributes), counts)
    # The common layout: no parts, no other marker (so no aggregate), no API base.
    raw = (get(GEN_AI_RESPONSE_MODEL), get(GEN_AI_PROVIDER_NAME), get(SERVER_ADDRESS))
    try:
        names = _NAMES.get(raw)
    except TypeError:  # a value that is no dict key (a list): cleaned, not kept
        return _route_names(attributes), (input_tokens, output_tokens, 0, 0, 0)
    if names is None:
        names = _route_names(attributes)
        model, provider, _ = raw
        if (
            type(model) is str
            and model.strip()
            and type(provider) is str
            and provider.strip()
            and len(_NAMES) < _MAX_NAMES
        ):
            # Without an API base, the server address is the raw one cleaned, or none.
            _NAMES[raw] = names
    return names, (input_tokens, output_tokens, 0, 0, 0)


def _route_names(attributes: Mapping[str, object]) -> RouteNames:
    """The ``RouteNames`` of a billable span, as ``_read`` finds them."""
    get = attributes.get
    # _first_string, with the first name of each list tried inline.
    model = get(GEN_AI_RESPONSE_MODEL)
    model = model.strip() if type(model) is str else None
    if not model:
        model = _first_string(attributes, MODEL_KEYS)
    provider = get(GEN_AI_PROVIDER_NAME)
    provider = provider.strip() if type(provider) is str else None
    if not provider:
        provider = _first_string(attributes, PROVIDER_KEYS)
    server = get(SERVER_ADDRESS)
    server = server.strip() if type(server) is str else None
    if not server:
        server = _first_string(attributes, SERVER_KEYS) if get(OPENAI_API_BASE) is not None else None
    return provider, server, model


def _general_counts(
    attributes: Mapping[str, object], input_tokens: object, output_tokens: object, operation: object
) -> Counts | None:
    """The counts of a billable span of any layout (``None``: not plainly billable)."""
    get = attributes.get
    if input_tokens is None:
        input_tokens = _first_value(get, INPUT_KEYS)
    if output_tokens is None:
        output_tokens = _first_value(get, OUTPUT_KEYS)
    if input_tokens is None or output_tokens is None:
        return None  # one-sided usage: read_usage says whether it is partial (or an embeddings call)
    if _PART_KEYS.isdisjoint(attributes):
        if not (
            type(input_tokens) is int
            and type(output_tokens) is int
            and 0 <= input_tokens <= MAX_TOKENS
            and 0 < output_tokens <= MAX_TOKENS
        ):
            return None
        counts: Counts = (input_tokens, output_tokens, 0, 0, 0)
    else:
        cache_read = _first_value(get, CACHE_READ_KEYS, 0)
        cache_write = _first_value(get, CACHE_WRITE_KEYS, 0)
        reasoning = _first_value(get, REASONING_KEYS, 0)
        candidate = (input_tokens, output_tokens, cache_read, cache_write, reasoning)
        if not plausible_counts(candidate) or not output_tokens:
            return None
        counts = candidate
    # The common case inline (a GenAI call span, no other convention's kind): no aggregate.
    if not (
        type(operation) is str
        and operation in LLM_OPERATIONS
        and get(OI_SPAN_KIND) is None
        and get(TRACELOOP_SPAN_KIND) is None
    ) and (aggregate_reason(attributes) is not None):
        return None
    return counts


def _first_value(get: Callable[[str], object], keys: tuple[str, ...], default: object = None) -> object:
    """The value of the first of ``keys`` whose value is not ``None`` (as ``_read`` picks it)."""
    for key in keys:
        value = get(key)
        if value is not None:
            return value
    return default


def _missing(attributes: Mapping[str, object]) -> UsageReading | None:
    """A ``missing`` reading when the span is one model call that reported no usage, else ``None``."""
    if not is_model_call(attributes):
        return None
    found = {key: attributes[key] for key in _READ_KEYS.intersection(attributes)}
    call = LlmCall(
        model=_first_string(found, MODEL_KEYS),
        provider=_first_string(found, PROVIDER_KEYS),
        server_address=_first_string(found, SERVER_KEYS),
        usage=TokenUsage(),
    )
    reason = (
        "the model call reported no token usage (an error response, or a stream read without its usage "
        "record: for OpenAI streams pass stream_options={'include_usage': True})"
    )
    return UsageReading("missing", call, reason)


def usage_problem(usage: TokenUsage) -> str | None:
    """Why ``usage`` cannot be priced, or ``None`` when it is consistent.

    Checks the types and ranges of the counts and that the parts fit in their totals.
    """
    for name in _FIELDS:
        value = getattr(usage, name)
        if type(value) is not int:
            return f"{name} must be an int, got {type(value).__name__}"
        if value < 0:
            return f"{name} is negative ({value})"
        if value > MAX_TOKENS:
            return f"{name} is absurdly large ({value} > {MAX_TOKENS})"
    if usage.cache_read_tokens + usage.cache_write_tokens > usage.input_tokens:
        return (
            f"cache reads ({usage.cache_read_tokens}) + cache writes ({usage.cache_write_tokens}) exceed "
            f"input tokens ({usage.input_tokens}); the input count must include cached tokens "
            "(an Anthropic-style uncached input count was probably written as the total)"
        )
    if usage.reasoning_tokens > usage.output_tokens:
        return (
            f"reasoning tokens ({usage.reasoning_tokens}) exceed output tokens ({usage.output_tokens}); "
            "the output count must include reasoning tokens"
        )
    return None


def _read(attributes: Mapping[str, object]) -> UsageReading:
    # Copy only the attributes we know into a plain dict: later lookups are then cheap.
    found: dict[str, object] = {key: attributes[key] for key in _READ_KEYS.intersection(attributes)}

    call: LlmCall | None = None
    problem: str | None = None
    counts: dict[str, int] = {}
    for field, keys in (
        ("input_tokens", INPUT_KEYS),
        ("output_tokens", OUTPUT_KEYS),
        ("cache_read_tokens", CACHE_READ_KEYS),
        ("cache_write_tokens", CACHE_WRITE_KEYS),
        ("reasoning_tokens", REASONING_KEYS),
    ):
        for key in keys:
            raw = found.get(key)
            if raw is None:
                continue
            value = _parse_count(raw)
            if isinstance(value, str):
                problem = f"{key} {value}"
            else:
                counts[field] = value
            break
        if problem is not None:
            break

    if problem is None and "input_tokens" not in counts and "output_tokens" not in counts:
        present = sorted(key for key in found if key in _TRIGGER_KEYS)
        problem = f"no input or output token count, only {', '.join(present)}"
    if problem is None:
        usage = TokenUsage(**counts)
        problem = usage_problem(usage)
        if problem is None:
            call = LlmCall(
                model=_first_string(found, MODEL_KEYS),
                provider=_first_string(found, PROVIDER_KEYS),
                server_address=_first_string(found, SERVER_KEYS),
                usage=usage,
            )

    aggregate = _aggregate_reason(found)
    if aggregate is not None:
        reason = aggregate if problem is None else f"{aggregate}; its usage is unreadable: {problem}"
        return UsageReading("aggregate", call, reason)
    if problem is not None or call is None:
        return UsageReading("invalid", None, problem or "unreadable usage")
    return _whole(found, counts, call)


def _whole(found: Mapping[str, object], counts: Mapping[str, int], call: LlmCall) -> UsageReading:
    """The reading of a call with readable counts: ``billable``, or ``partial``/``missing`` when
    its usage is one-sided or all zero (issue 13 item 4, issue 11 item 3)."""
    usage = call.usage
    if not any((usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens)):
        return UsageReading("missing", call, ZERO_USAGE_REASON)
    if "input_tokens" not in counts:
        reason = (
            f"no input token count ({INPUT_KEYS[0]}), only output tokens: priced on the output alone, "
            "a lower bound"
        )
        return UsageReading("partial", call, reason)
    if "output_tokens" not in counts and _ERROR_TYPE not in found and not _embeddings(found, call.model):
        reason = (
            f"no output token count ({OUTPUT_KEYS[0]}) on a call that is not an embeddings call: "
            "priced on the input alone, a lower bound"
        )
        return UsageReading("partial", call, reason)
    return UsageReading("billable", call, None)


def _embeddings(found: Mapping[str, object], model: str | None) -> bool:
    """Whether the span is an embeddings call (which reports no output tokens): by its operation
    or span kind in any convention, else by a model name that says so (``text-embedding-3-small``)."""
    for key in _KIND_KEYS:
        value = found.get(key)
        if type(value) is str:
            return value.strip().lower() in _EMBEDDING_KINDS
    return OI_EMBEDDING_MODEL_NAME in found or (model is not None and "embed" in model.lower())


def _parse_count(value: object) -> int | str:
    """A token count as an int, or a description of what is wrong with it.

    Accepted: ints, whole floats (``12.0``, as some SDKs round-trip counts through JSON numbers),
    and strings of ASCII digits (``"12"``, as some bridges stringify attributes). Rejected: bools,
    negatives, NaN/inf, fractions, other strings, other types, counts above ``MAX_TOKENS``.
    """
    if isinstance(value, bool):
        return f"is a bool ({value!r}), not a token count"
    if isinstance(value, int):
        count = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            return f"is not finite ({value!r})"
        if not value.is_integer():
            return f"is not a whole number ({value!r})"
        count = int(value)
    elif isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            return f"is not a whole finite number ({value!r})"
        count = int(value)
    elif isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            return f"is a string that is not a whole number ({value[:40]!r})"
        if len(value) > 20:
            return f"is absurdly large ({value[:40]!r}...)"
        count = int(value)
    else:
        return f"has type {type(value).__name__}, not a token count"
    if count < 0:
        return f"is negative ({count})"
    if count > MAX_TOKENS:
        return f"is absurdly large ({count} > {MAX_TOKENS})"
    return count


def _first_string(found: Mapping[str, object], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = found.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _aggregate_reason(found: Mapping[str, object]) -> str | None:
    return aggregate_reason(found)
