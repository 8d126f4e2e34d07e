"""What pricing gives: ``CostBreakdown``, ``ModelRates``, ``RateTier``, and the one writer of a
span's cost attributes (:func:`write_cost`).

Every span's cost attributes (``cost.currency``, ``cost.status``, ``cost.status_reason``,
``cost.provider``, ``cost.model``, ``cost.price_source``, ``cost.direct``, ``gen_ai.usage.cost``,
``cost.direct_nanos`` and the four breakdown parts) are written by :func:`write_cost` and nowhere
else, whichever arithmetic priced the call, so their keys, values and order cannot drift apart
(``write_breakdown`` turns a ``CostBreakdown`` into its arguments).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from otel_costs._money import NANOS_PER_USD, to_nanos
from otel_costs.conventions import (
    COST_CACHE_READ,
    COST_CACHE_WRITE,
    COST_CURRENCY,
    COST_DIRECT,
    COST_DIRECT_NANOS,
    COST_INPUT,
    COST_MODEL,
    COST_OUTPUT,
    COST_PRICE_SOURCE,
    COST_PROVIDER,
    COST_STATUS,
    COST_STATUS_REASON,
    CURRENCY_USD,
    GEN_AI_USAGE_COST,
    STATUS_INVALID_USAGE,
    STATUS_PARTIAL,
    STATUS_PRICED,
    STATUS_UNPRICED,
)

__all__ = ("CostBreakdown", "ModelRates", "RateTier", "flag_evicted", "write_breakdown", "write_cost")

_ZERO: Final = Decimal(0)
#: The flags the capture layer sets that pricing keeps, with their reason, instead of its own.
KEPT_FLAGS: Final = frozenset({STATUS_PARTIAL, STATUS_UNPRICED, STATUS_INVALID_USAGE})
#: Longest ``cost.status_reason`` written for an error raised by a price book.
MAX_REASON: Final = 256


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """The cost of one LLM call, or why it has none."""

    status: str
    """``priced``, ``unpriced`` or ``invalid_usage`` (the ``STATUS_*`` values of ``conventions``)."""
    total: Decimal
    """Total cost in USD, exact (identical to ``genai_prices.calc_price``); 0 when not priced."""
    input: Decimal
    """Cost of the uncached input tokens, USD."""
    cache_read: Decimal
    """Cost of the input tokens read from the prompt cache, USD."""
    cache_write: Decimal
    """Cost of the input tokens written to the prompt cache, USD."""
    output: Decimal
    """Cost of the output tokens, reasoning included, USD."""
    provider: str | None
    """The resolved provider id (e.g. ``openai``); the name on the span when not priced."""
    model: str | None
    """The resolved model id (or the override's model name); the name on the span when not priced."""
    source: str | None
    """``override`` or ``genai-prices``: what priced the call; ``None`` when not priced."""
    reason: str | None
    """Why the call is not priced; ``None`` when priced."""
    other: Decimal = _ZERO
    """Cost of units that are not tokens (a per-request fee), USD: ``total`` is the sum of all five parts."""


@dataclass(frozen=True, slots=True)
class RateTier:
    """Rates that apply to a whole call once its input tokens exceed ``above`` (cliff pricing)."""

    above: int
    """The tier applies when the call's total input tokens are greater than this."""
    input: Decimal
    """USD per 1M uncached input tokens."""
    output: Decimal
    """USD per 1M output tokens."""
    cache_read: Decimal | None
    """USD per 1M cache-read tokens; ``None``: cache reads are billed as input."""
    cache_write: Decimal | None
    """USD per 1M cache-write tokens; ``None``: cache writes are billed as input."""


@dataclass(frozen=True, slots=True)
class ModelRates:
    """Per-1M-token rates of a model at one moment, for estimates before a call is made."""

    provider: str | None
    """The resolved provider id."""
    model: str
    """The resolved model id (or the override's model name)."""
    source: str
    """``override`` or ``genai-prices``."""
    input: Decimal
    """USD per 1M uncached input tokens (0 when the model has no input token price)."""
    output: Decimal
    """USD per 1M output tokens (0 when the model has no output token price, e.g. embeddings)."""
    cache_read: Decimal | None
    """USD per 1M cache-read tokens; ``None``: cache reads are billed as input."""
    cache_write: Decimal | None
    """USD per 1M cache-write tokens; ``None``: cache writes are billed as input."""
    per_request: Decimal = _ZERO
    """A fixed fee per call, USD."""
    tiers: tuple[RateTier, ...] = ()
    """Rates for larger calls, ascending by ``above``; empty when the model is not tiered."""

    def for_input_tokens(self, input_tokens: int) -> RateTier:
        """The rates that apply to a call with ``input_tokens`` total input tokens.

        >>> rates.for_input_tokens(250_000).input  # doctest: +SKIP
        Decimal('2.5')
        """
        for tier in reversed(self.tiers):
            if input_tokens > tier.above:
                return tier
        return RateTier(0, self.input, self.output, self.cache_read, self.cache_write)


def write_cost(
    attributes: dict[str, Any],
    status: str,
    reason: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    source: str | None = None,
    nanos: int | None = None,
    parts: tuple[float, float, float, float] | None = None,
) -> dict[str, Any]:
    """Write a span's cost attributes into ``attributes`` (in place, in their order); return it.

    ``nanos`` is the direct cost in nano-USD of a priced call (``None``: no cost figures, as for
    a call that is not priced); ``parts`` the input, cache-read, cache-write and output costs as
    USD doubles. Empty strings are not written. A key already on the span keeps its position
    and gets the new value.
    """
    attributes[COST_CURRENCY] = CURRENCY_USD
    attributes[COST_STATUS] = status
    if reason:
        attributes[COST_STATUS_REASON] = reason
    if provider:
        attributes[COST_PROVIDER] = provider
    if model:
        attributes[COST_MODEL] = model
    if source:
        attributes[COST_PRICE_SOURCE] = source
    if nanos is not None:
        usd = nanos / NANOS_PER_USD
        attributes[COST_DIRECT] = usd
        attributes[GEN_AI_USAGE_COST] = usd
        attributes[COST_DIRECT_NANOS] = nanos
        input_usd, cache_read_usd, cache_write_usd, output_usd = parts or (0.0, 0.0, 0.0, 0.0)
        attributes[COST_INPUT] = input_usd
        attributes[COST_CACHE_READ] = cache_read_usd
        attributes[COST_CACHE_WRITE] = cache_write_usd
        attributes[COST_OUTPUT] = output_usd
    return attributes


def priced_prefix(provider: str | None, model: str | None, source: str | None) -> dict[str, str]:
    """The cost attributes ``write_cost`` writes first for a call priced by one route (currency,
    ``priced``, provider, model, price source), in its order, for ``write_priced``."""
    return write_cost({}, STATUS_PRICED, None, provider, model, source)


def write_priced(
    attributes: Mapping[str, Any],
    prefix: Mapping[str, str],
    nanos: int,
    parts: tuple[float, float, float, float],
) -> dict[str, Any]:
    """``write_cost(dict(attributes), STATUS_PRICED, None, provider, model, source, nanos, parts)``
    with the route's ``prefix`` (``priced_prefix``) written in one update: a new dict, the
    same keys in the same order, built with fewer steps (it runs for every priced span)."""
    out = {**attributes, **prefix}
    usd = nanos / NANOS_PER_USD
    out[COST_DIRECT] = usd
    out[GEN_AI_USAGE_COST] = usd
    out[COST_DIRECT_NANOS] = nanos
    out[COST_INPUT], out[COST_CACHE_READ], out[COST_CACHE_WRITE], out[COST_OUTPUT] = parts
    return out


def write_breakdown(attributes: dict[str, Any], cost: CostBreakdown, status: str | None = None) -> int:
    """Write the cost attributes of ``cost`` (``status`` instead of its own if given); the nano-USD.

    The direct cost is ``cost.total`` quantized once to nano-USD (half-even); the parts are the
    doubles nearest to the exact ``Decimal`` parts. Raises ``ArithmeticError`` for a total that
    does not fit 28 digits of nano-USD (nothing is written then).
    """
    status = status or cost.status
    if cost.status != STATUS_PRICED:
        write_cost(attributes, status, cost.reason, cost.provider, cost.model, cost.source)
        return 0
    nanos = to_nanos(cost.total)
    # float(Decimal) is the correctly rounded double of the exact part.
    parts = (float(cost.input), float(cost.cache_read), float(cost.cache_write), float(cost.output))
    write_cost(attributes, status, cost.reason, cost.provider, cost.model, cost.source, nanos, parts)
    return nanos


#: The reason of a model-call span that lost attributes to the SDK's attribute count limit (the
#: SDK's BoundedAttributes evicts the oldest key: usage set early goes first).
EVICTED_REASON: Final = (
    "usage evicted by the attribute limit ({} attributes dropped): raise OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT"
)


def flag_evicted(
    attributes: Mapping[str, object], costed: dict[str, Any] | None, dropped: int
) -> dict[str, Any] | None:
    """The cost attributes of a span that dropped ``dropped`` attributes to the SDK's attribute
    limit: ``costed`` (its pricing) with the eviction named in its reason, so the span is never
    left without ``cost.status``.

    ``costed`` is ``None`` when no usage key or kind marker survived: the span is then flagged
    ``unpriced`` if what is left is a GenAI span's (an attribute under ``gen_ai.`` or ``llm.``,
    such as the message contents that pushed it over the limit), else ``None`` (not an LLM span).
    A span still ``priced`` keeps its figures (its usage survived); a ``partial``, ``unpriced`` or
    ``invalid_usage`` one keeps its status and gets the eviction put before its reason.
    """
    note = EVICTED_REASON.format(dropped)
    if costed is None:
        if not any(type(key) is str and key.startswith(_GENAI_PREFIXES) for key in attributes):
            return None
        return write_cost(dict(attributes), STATUS_UNPRICED, note)
    status = costed.get(COST_STATUS)
    if status in KEPT_FLAGS:
        reason = costed.get(COST_STATUS_REASON)
        costed[COST_STATUS_REASON] = f"{note}; {reason}" if reason else note
    return costed


#: Attribute prefixes of the GenAI conventions (OTel GenAI, OpenLLMetry; OpenInference ``llm.``).
_GENAI_PREFIXES: Final = ("gen_ai.", "llm.")


def attribute_count_limit() -> int | float:
    """The SDK's span attribute count limit from the environment (``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT``,
    else ``OTEL_ATTRIBUTE_COUNT_LIMIT``, else 128); infinity when unlimited."""
    from opentelemetry.sdk.trace import SpanLimits

    try:
        limit = SpanLimits().max_span_attributes
    except Exception:  # a malformed variable: the SDK reports it where it builds its own limits
        limit = 128
    return float("inf") if limit is None else limit
