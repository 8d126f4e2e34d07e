"""Prices for LLM calls: genai-prices' data, memoized, plus user overrides.

``genai_prices.calc_price`` re-resolves the provider, the model and the model's price units on
every call (70-100 µs). The :class:`PriceBook` resolves each (provider, model) once, compiles
each of the model's price sets into a small plan (unit prices, per-unit divisors, the order of
the leaf-value decomposition), and then does the arithmetic itself, in the same order as
genai-prices, so the ``Decimal`` results are identical (same value, same exponent).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import threading
import tomllib
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation, getcontext
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

import yaml
from genai_prices import UpdatePrices, data_snapshot
from genai_prices import Usage as GenaiUsage
from genai_prices.decompose import is_descendant_or_self
from genai_prices.types import (
    ConditionalPrice,
    ModelInfo,
    ModelPrice,
    Provider,
    StartDateConstraint,
    Tier,
    TieredPrices,
    TimeOfDateConstraint,
    _collect_resolved_model_prices,
)
from genai_prices.units import _get_registry
from genai_prices.validation import validate_priced_units

from otel_costs._money import NANOS_PER_USD, to_nanos
from otel_costs.conventions import (
    AGGREGATE_OPERATIONS,
    CACHE_READ_KEYS,
    CACHE_WRITE_KEYS,
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
    CURRENCY_USD,
    GEN_AI_OPERATION_NAME,
    GEN_AI_USAGE_COST,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    MODEL_KEYS,
    OI_SPAN_KIND,
    PRICE_SOURCE_GENAI_PRICES,
    PRICE_SOURCE_OVERRIDE,
    PROVIDER_KEYS,
    REASONING_KEYS,
    SERVER_KEYS,
    STATUS_INVALID_USAGE,
    STATUS_PARTIAL,
    STATUS_PRICED,
    STATUS_UNPRICED,
    TRACELOOP_SPAN_KIND,
)
from otel_costs.pricing._providers import PROVIDER_ALIASES
from otel_costs.pricing._usage import MAX_TOKENS, LlmCall, TokenUsage, plausible_counts, usage_problem

logger = logging.getLogger(__name__)

__all__ = ("CostBreakdown", "ModelRates", "PriceBook", "PriceConfigError", "RateTier")

_ZERO: Final = Decimal(0)
#: Bound on the memo of resolved (provider, server, model) names: span attributes are outside input.
_MAX_MEMO: Final = 10_000
#: Bound on the distinct keys of ``unpriced_counts``; past it, misses are counted under ``_OTHER_KEY``.
_MAX_UNPRICED_KEYS: Final = 1_000
_OTHER_KEY: Final = "(other)/(other)"

# Where each genai-prices usage key comes from in a TokenUsage (index into _usage_values()).
_USAGE_SOURCES: Final = {
    "input_tokens": 0,
    "output_tokens": 1,
    "cache_read_tokens": 2,
    "cache_write_tokens": 3,
    "output_reasoning_tokens": 4,
}
_B_INPUT, _B_CACHE_READ, _B_CACHE_WRITE, _B_OUTPUT, _B_OTHER = range(5)


class PriceConfigError(ValueError):
    """The price overrides (dict or file) are malformed; the message says where and how to fix it."""


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """The cost of one LLM call, or why it has none."""

    status: str
    """``priced``, ``unpriced`` or ``invalid_usage`` (the ``STATUS_*`` values of ``_conventions``)."""
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


# --- compiled price plans ----------------------------------------------------------------------


class _Plan:
    """One genai ``ModelPrice``, compiled: everything ``ModelPrice.calc_price`` derives per call."""

    __slots__ = (
        "error",
        "exact_functions",
        "exact_rows",
        "exact_scale",
        "exact_terms",
        "exact_thresholds",
        "has_tiers",
        "initial_counts",
        "leaf_steps",
        "price_keys",
        "terms",
    )

    def __init__(self, model_price: ModelPrice) -> None:
        self.error: str | None = None
        #: (base price, its cost for 0 units, tiers as (start, price, zero cost) highest first,
        #: per as a Decimal, bucket), in genai's term order.
        self.terms: tuple[_Term, ...] = ()
        #: (term index, usage source index or -1, term indexes of its priced descendants).
        self.leaf_steps: tuple[tuple[int, int, tuple[int, ...]], ...] = ()
        #: Counts before the leaf decomposition: 1 for a per-request unit, else 0.
        self.initial_counts: tuple[int, ...] = ()
        self.has_tiers = False
        #: price key -> (base, tiers lowest first), for ModelRates.
        self.price_keys: dict[str, tuple[Decimal, tuple[tuple[int, Decimal], ...]]] = {}
        #: The terms in integers, for ``exact_functions``: (base, tiers as (start, price) highest
        #: first, bucket), each price an integer number of ``1 / exact_scale`` USD per unit;
        #: ``None`` when a price or divisor does not fit that form (then only ``apply``).
        self.exact_terms: tuple[tuple[int, tuple[tuple[int, int], ...], int], ...] | None = None
        self.exact_scale = 1
        #: ``apply`` in integers per tier level (total and the input, cache-read, cache-write and
        #: output parts in ``1 / exact_scale`` USD, or ``None`` where ``apply`` finds a negative
        #: leaf count), compiled from ``exact_terms`` (see ``_compile_linear``),
        #: and the tier starts that separate the levels.
        self.exact_functions: tuple[_ExactFunction, ...] = ()
        self.exact_thresholds: tuple[int, ...] = ()
        #: The same integers as rows of coefficients, for the C speedups: the checks, and the
        #: five sums per tier level.
        self.exact_rows: tuple[_Rows, tuple[_Rows, ...]] = ((), ())
        try:
            self._compile(model_price)
        except ValueError as exc:
            self.error = f"genai-prices price data is invalid: {exc}"
        else:
            self._compile_exact()

    def _compile(self, model_price: ModelPrice) -> None:
        registry = _get_registry()
        resolved = _collect_resolved_model_prices(model_price, registry)
        validate_priced_units(tuple(unit for unit, _ in resolved), registry)
        terms = []
        initial = []
        for unit, price in resolved:
            if isinstance(price, TieredPrices):
                base = price.base
                ascending = tuple((tier.start, tier.price) for tier in price.tiers)
                self.has_tiers = True
            else:
                base, ascending = price, ()
            per = Decimal(unit.per)
            terms.append(
                (
                    base,
                    _zero_cost(base, per),
                    tuple((start, price, _zero_cost(price, per)) for start, price in reversed(ascending)),
                    per,
                    _bucket(unit.dimensions),
                )
            )
            initial.append(1 if unit.usage_key == "requests" else 0)
            self.price_keys[unit.price_key] = (base, ascending)
        self.terms = tuple(terms)
        self.initial_counts = tuple(initial)

        # Same order and same descendants as genai_prices.decompose.compute_leaf_values.
        position = {unit.usage_key: index for index, (unit, _) in enumerate(resolved)}
        leaf_units = sorted(
            (unit for unit, _ in resolved if unit.usage_key != "requests"),
            key=lambda unit: (-len(unit.dimensions), unit.usage_key),
        )
        self.leaf_steps = tuple(
            (
                position[unit.usage_key],
                _USAGE_SOURCES.get(unit.usage_key, -1),
                tuple(
                    position[other.usage_key]
                    for other in leaf_units
                    if other is not unit and is_descendant_or_self(unit, other)
                ),
            )
            for unit in leaf_units
        )

    def _compile_exact(self) -> None:
        """Fill ``exact_terms``: every price ``p`` per ``per`` units as the integer ``p / per * scale``.

        Possible when every price is a finite Decimal >= 0 and every ``per`` a power of ten
        (genai-prices' per-million and per-thousand units); ``scale`` is the power of ten that
        makes all of them integers.
        """
        # (coefficient, exponent) of each price, and the exponent of each term's per.
        terms: list[tuple[tuple[int, int], tuple[tuple[int, tuple[int, int]], ...], int, int]] = []
        digits = 0
        for base, _zero, tiers, per, bucket in self.terms:
            per_exponent = _power_of_ten(per)
            if per_exponent is None:
                return
            parts: list[tuple[int, int]] = []
            for price in (base, *(tier_price for _start, tier_price, _tier_zero in tiers)):
                if not price.is_finite() or price.is_signed():
                    return
                _sign, coefficient_digits, exponent = price.as_tuple()
                assert isinstance(exponent, int)
                parts.append((int("".join(map(str, coefficient_digits))), exponent))
                digits = max(digits, per_exponent - exponent)
            tier_parts = tuple(
                (start, part) for (start, _price, _zero), part in zip(tiers, parts[1:], strict=True)
            )
            terms.append((parts[0], tier_parts, per_exponent, bucket))

        def scaled(part: tuple[int, int], per_exponent: int) -> int:
            # c * 10**e / 10**per_exponent * 10**digits, an integer by the choice of digits.
            coefficient, exponent = part
            return coefficient * int(10 ** (exponent - per_exponent + digits))

        self.exact_scale = 10**digits
        self.exact_terms = tuple(
            (
                scaled(base_part, per_exponent),
                tuple((start, scaled(part, per_exponent)) for start, part in tier_parts),
                bucket,
            )
            for base_part, tier_parts, per_exponent, bucket in terms
        )
        self._compile_linear()

    def _compile_linear(self) -> None:
        """Compile ``exact_terms`` into one small function per tier level.

        Every leaf count is a fixed linear function of the five usage counts (its own count less
        its priced descendants', as ``apply`` subtracts them), so per tier level the total and
        each bucket are too. Each function evaluates those sums in integers (and returns
        ``None`` where ``apply`` finds a negative leaf count). Its source holds only integers
        computed here, and a plan is compiled once: per call it is a handful of integer
        operations instead of loops over the terms (1.5 -> 0.3 µs).
        """
        terms = self.exact_terms
        assert terms is not None
        # rows[k]: term k's count as coefficients of (input, output, cache read, cache write,
        # reasoning) and a constant (1 for a per-request unit), in apply()'s leaf order.
        rows = [[0, 0, 0, 0, 0, initial] for initial in self.initial_counts]
        checks: list[list[int]] = []
        for index, source, descendants in self.leaf_steps:
            row = [0] * 6
            if source >= 0:
                row[source] = 1
            for descendant in descendants:
                row = [a - b for a, b in zip(row, rows[descendant], strict=True)]
            rows[index] = row
            if any(coefficient < 0 for coefficient in row):
                checks.append(row)
        thresholds = sorted({start for _price, tiers, _bucket in terms for start, _tier_price in tiers})
        # A total input count in each level: at most the lowest start, then just above each start.
        samples = [thresholds[0] if thresholds else 0, *(start + 1 for start in thresholds)]
        functions = []
        levels: list[tuple[tuple[int, ...], ...]] = []
        for sample in samples:
            sums = [[0] * 6 for _ in range(6)]  # total, then the five buckets
            for (price, tiers, bucket), row in zip(terms, rows, strict=True):
                for start, tier_price in tiers:
                    if sample > start:
                        price = tier_price
                        break
                for k, coefficient in enumerate(row):
                    sums[0][k] += price * coefficient
                    sums[1 + bucket][k] += price * coefficient
            lines = ["def apply_exact(i, o, cr, cw, rs):"]
            lines += [f"    if {_linear(row)} < 0:\n        return None" for row in checks]
            lines.append(f"    return ({', '.join(_linear(sums[k]) for k in range(5))})")
            namespace: dict[str, object] = {}
            exec(
                compile("\n".join(lines), "<otel_costs price plan>", "exec"), {"__builtins__": {}}, namespace
            )
            functions.append(namespace["apply_exact"])
            levels.append(tuple(tuple(sums[k]) for k in range(5)))
        self.exact_functions = tuple(functions)  # type: ignore[arg-type]
        self.exact_thresholds = tuple(thresholds)
        self.exact_rows = (tuple(map(tuple, checks)), tuple(levels))

    def apply(self, values: tuple[int, int, int, int, int]) -> tuple[Decimal, list[Decimal]]:
        """Total and per-bucket cost; raises ``ValueError`` when a leaf count is negative."""
        counts = list(self.initial_counts)
        for index, source, descendants in self.leaf_steps:
            count = values[source] if source >= 0 else 0
            for descendant in descendants:
                count -= counts[descendant]
            if count < 0:
                raise ValueError("a part of the usage exceeds its total")
            counts[index] = count
        total_input = values[0] if self.has_tiers else 0
        total = Decimal(0)
        buckets = [_ZERO, _ZERO, _ZERO, _ZERO, _ZERO]
        for index, (price, zero, tiers, per, bucket) in enumerate(self.terms):
            for start, tier_price, tier_zero in tiers:
                if total_input > start:
                    price, zero = tier_price, tier_zero
                    break
            count = counts[index]
            # genai-prices computes price * Decimal(count) / per. Decimal converts an int operand
            # exactly, so price * count / Decimal(per) is the same operation, and for count 0 the
            # result (a zero whose exponent comes from price) is precomputed.
            unit_price = price * count / per if count else zero
            total += unit_price
            buckets[bucket] += unit_price
        return total, buckets


_Term = tuple[Decimal, Decimal, tuple[tuple[int, Decimal, Decimal], ...], Decimal, int]


#: Rows of integer coefficients of (input, output, cache read, cache write, reasoning, 1).
_Rows = tuple[tuple[int, ...], ...]
#: One of ``_Plan.exact_functions``: ``apply`` in integers for one tier level (see ``_Plan._compile_linear``).
_ExactFunction = Callable[[int, int, int, int, int], tuple[int, int, int, int, int] | None]
_NAMES: Final = ("i", "o", "cr", "cw", "rs")


def _linear(row: Sequence[int]) -> str:
    """Python source of ``row[0]*i + ... + row[4]*rs + row[5]`` (integers only), e.g. ``30*i + -27*cr``."""
    terms = [f"{coefficient}*{name}" for coefficient, name in zip(row, _NAMES, strict=False) if coefficient]
    if row[5]:
        terms.append(str(row[5]))
    return " + ".join(terms) or "0"


def _power_of_ten(value: Decimal) -> int | None:
    """``k`` when ``value`` is ``10**k`` (k >= 0), else ``None``."""
    if not value.is_finite() or value < 1 or value != value.to_integral_value():
        return None
    text = str(int(value))
    return len(text) - 1 if text == "1" + "0" * (len(text) - 1) else None


def _zero_cost(price: Decimal, per: Decimal) -> Decimal:
    """``price * Decimal(0) / per``: the cost of 0 units, as genai-prices computes it."""
    return price * Decimal(0) / per


def _bucket(dimensions: Mapping[str, str]) -> int:
    direction = dimensions.get("direction")
    if direction == "output":
        return _B_OUTPUT
    if direction == "input":
        token_type = dimensions.get("token_type")
        if token_type == "cache_read":
            return _B_CACHE_READ
        if token_type == "cache_write":
            return _B_CACHE_WRITE
        return _B_INPUT
    return _B_OTHER


class _Entry:
    """A resolved (provider, model): its price plans by date/time, ready to apply."""

    __slots__ = ("choices", "default", "delegate", "model", "provider", "source")

    def __init__(
        self,
        provider: str | None,
        model: str,
        source: str,
        prices: ModelPrice | Sequence[ConditionalPrice],
        delegate: tuple[ModelInfo, Provider] | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.source = source
        #: A model genai-prices special-cases: priced by its own calc_price, not by a plan.
        self.delegate = delegate
        if isinstance(prices, ModelPrice):
            self.default = _Plan(prices)
            self.choices: tuple[tuple[StartDateConstraint | TimeOfDateConstraint | None, _Plan], ...] = ()
        else:
            plans = [(conditional.constraint, _Plan(conditional.prices)) for conditional in prices]
            self.default = plans[0][1]
            # Tried last to first, as ModelInfo.get_prices does.
            self.choices = tuple(reversed(plans))

    def plan_at(self, at: datetime) -> _Plan:
        """The plan in force at ``at`` (ModelInfo.get_prices without a price context)."""
        utc_date: date | None = None
        for constraint, plan in self.choices:
            if constraint is None:
                return plan
            if type(constraint) is StartDateConstraint:
                if utc_date is None:
                    utc_date = (at.astimezone(UTC) if at.tzinfo is not None else at).date()
                if utc_date >= constraint.start_date:
                    return plan
            elif constraint.active(at):
                return plan
        return self.default


#: Span start times (ns since the epoch) the processor's fast path takes; others go through price().
_MAX_START_NS: Final = 2**63
#: Start times this close to a price change (ns) are left to price(): its datetime from a float
#: of seconds is off by up to a microsecond, and it must decide those, not an integer comparison.
_BOUNDARY_MARGIN_NS: Final = 10**9
_NS_PER_DAY: Final = 86_400 * 10**9
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
#: Marks a ``_Quick`` whose plan depends on the time of day: it always goes through price().
_BY_DATETIME: Final[tuple[tuple[int | None, _Plan], ...]] = ()


class _Quick:
    """A (provider, server, model) resolved once for ``PriceBook._quote``: what ``_price`` finds."""

    __slots__ = ("entry", "provider", "schedule")

    def __init__(self, entry: _Entry, provider: str | None) -> None:
        self.entry = entry
        #: The provider ``_price`` reports (the override's, or the call's normalized one).
        self.provider = provider
        #: ``None``: one price set. Else ``entry.choices`` as (UTC-midnight in ns of the start
        #: date, or ``None`` for no constraint, plan), in the order ``plan_at`` tries them; or
        #: ``_BY_DATETIME`` when a constraint is not a start date.
        self.schedule: tuple[tuple[int | None, _Plan], ...] | None = None
        if entry.choices:
            schedule: list[tuple[int | None, _Plan]] = []
            for constraint, plan in entry.choices:
                if constraint is None:
                    schedule.append((None, plan))
                elif type(constraint) is StartDateConstraint and type(constraint.start_date) is date:
                    days = constraint.start_date.toordinal() - _EPOCH_ORDINAL
                    schedule.append((days * _NS_PER_DAY, plan))
                else:
                    schedule = list(_BY_DATETIME)
                    break
            self.schedule = tuple(schedule)


#: ``PriceBook._quote``'s answer: (nanos, input, cache_read, cache_write, output as USD doubles,
#: provider, model, source).
_Quote = tuple[int, float, float, float, float, str | None, str, str]
#: Figures below this many units have at most 28 digits: Decimal's default precision.
_EXACT_LIMIT: Final = 10**28


def _load_native() -> Any:
    """The C speedups (``otel_costs/_cost_native.c``), configured; ``None`` when they were not
    built (no C compiler at install) or ``OTEL_COSTS_NATIVE=0`` turns them off."""
    if os.environ.get("OTEL_COSTS_NATIVE", "").strip().lower() in ("0", "false", "off", "no"):
        return None
    try:
        from otel_costs import _cost_native  # type: ignore[attr-defined]
    except ImportError:
        return None
    _cost_native.configure(
        {
            "input": GEN_AI_USAGE_INPUT_TOKENS,
            "output": GEN_AI_USAGE_OUTPUT_TOKENS,
            "operation": GEN_AI_OPERATION_NAME,
            "oi_kind": OI_SPAN_KIND,
            "traceloop_kind": TRACELOOP_SPAN_KIND,
            "part_groups": (CACHE_READ_KEYS, CACHE_WRITE_KEYS, REASONING_KEYS),
            "model_keys": MODEL_KEYS,
            "provider_keys": PROVIDER_KEYS,
            "server_keys": SERVER_KEYS,
            "aggregate_operations": AGGREGATE_OPERATIONS,
            "max_tokens": MAX_TOKENS,
            # The cost attributes, as _processor._publish_quote writes them.
            **{
                name: name
                for name in (
                    COST_CURRENCY,
                    COST_STATUS,
                    COST_PROVIDER,
                    COST_MODEL,
                    COST_PRICE_SOURCE,
                    COST_DIRECT,
                    GEN_AI_USAGE_COST,
                    COST_DIRECT_NANOS,
                    COST_INPUT,
                    COST_CACHE_READ,
                    COST_CACHE_WRITE,
                    COST_OUTPUT,
                    CURRENCY_USD,
                    STATUS_PRICED,
                    STATUS_PARTIAL,
                )
            },
        }
    )
    return _cost_native


_NATIVE: Final = _load_native()


def _native_plan(quick: _Quick) -> object | None:
    """The C speedups' plan for ``quick``: only one price set priced in integers (no dated or
    time-of-day prices, no error), and only when every figure fits the C code's integers."""
    plan = quick.entry.default
    if _NATIVE is None or quick.schedule is not None or plan.error is not None or not plan.exact_functions:
        return None
    checks, levels = plan.exact_rows
    try:
        native: object = _NATIVE.make_plan(
            plan.exact_scale,
            plan.exact_thresholds,
            checks,
            levels,
            quick.provider,
            quick.entry.model,
            quick.entry.source,
        )
    except (OverflowError, ValueError, TypeError):
        return None  # figures beyond 64 bits: _quote prices it in Python
    return native


class _State:
    """The memo for one genai-prices data snapshot; replaced as a whole when the snapshot changes."""

    __slots__ = ("entries", "names", "native", "providers", "quick", "snapshot")

    def __init__(self, snapshot: data_snapshot.DataSnapshot | None) -> None:
        self.snapshot = snapshot
        #: (provider name, server address, model) -> _Entry, or the reason it has no price.
        self.names: dict[tuple[str | None, str | None, str | None], _Entry | str] = {}
        #: (provider id, id(ModelInfo)) -> (ModelInfo kept alive so the id stays unique, _Entry).
        self.entries: dict[tuple[str, int], tuple[ModelInfo, _Entry]] = {}
        #: (provider name, server address) -> normalized provider id.
        self.providers: dict[tuple[str | None, str | None], str | None] = {}
        #: (provider name, server address, model) -> what ``_quote`` needs, or ``None`` when
        #: such calls are never priced by it (no price, special-cased models).
        self.quick: dict[tuple[str | None, str | None, str | None], _Quick | None] = {}
        #: The same keys -> the C speedups' plan, for those ``_cost_attributes`` prices.
        self.native: dict[tuple[str | None, str | None, str | None], object] = {}


# --- the price book ------------------------------------------------------------------------------


class PriceBook:
    """Prices LLM calls from genai-prices' data and user overrides; thread-safe, never raises.

    ``overrides`` maps a model name to USD per 1M tokens (see ``docs/pricing.md`` for the full
    schema, also accepted from a TOML or YAML ``overrides_file``); overrides win over genai-prices.
    No network access unless ``update_prices=True`` (then genai-prices' ``UpdatePrices`` refreshes
    the data in a background thread until :meth:`close`).

    >>> book = PriceBook({"gpt-5.2": {"input": 3, "output": 15}})
    >>> book.price(LlmCall("gpt-5.2", "openai", None, TokenUsage(1500, 500))).total
    Decimal('0.012')
    """

    def __init__(
        self,
        overrides: Mapping[str, Mapping[str, object]] | None = None,
        *,
        overrides_file: str | os.PathLike[str] | None = None,
        use_genai_prices: bool = True,
        update_prices: bool = False,
    ) -> None:
        if not isinstance(use_genai_prices, bool):
            raise TypeError(f"use_genai_prices must be a bool, got {type(use_genai_prices).__name__}")
        if not isinstance(update_prices, bool):
            raise TypeError(f"update_prices must be a bool, got {type(update_prices).__name__}")
        self._use_genai_prices = use_genai_prices
        self._lock = threading.Lock()
        self._state = _State(data_snapshot.get_snapshot())
        self._unpriced: dict[str, int] = {}
        self._warned: set[str] = set()

        raw: dict[str, tuple[str, str, Mapping[str, object]]] = {}
        if overrides_file is not None:
            if not isinstance(overrides_file, str | os.PathLike):
                raise PriceConfigError(f"overrides_file must be a path, got {type(overrides_file).__name__}")
            where = os.fspath(overrides_file)
            for model, spec in _load_overrides_file(Path(where)).items():
                raw[model.lower()] = (f"{where}: [{model!r}]", model, spec)
        if overrides is not None:
            if not isinstance(overrides, Mapping):
                raise PriceConfigError(
                    f"overrides must be a mapping of model name -> prices, got {type(overrides).__name__}"
                )
            for model, spec in _check_models(overrides, "overrides").items():
                # The dict wins over the file for the same model.
                raw[model.lower()] = (f"overrides[{model!r}]", model, spec)
        self._overrides: dict[str, _Override] = {
            key: _parse_override(where, model, spec, self._normalize_provider_name)
            for key, (where, model, spec) in raw.items()
        }

        self._updater: UpdatePrices | None = None
        if update_prices and use_genai_prices:
            self._updater = UpdatePrices()
            self._updater.start()

    # --- public API ---------------------------------------------------------------------------

    def price(self, call: LlmCall, *, at: datetime | None = None) -> CostBreakdown:
        """The cost of ``call``, priced at ``at`` (the span's start time; default: now).

        Never raises: an unknown model gives ``status="unpriced"`` (warned once per provider/model
        and counted in :attr:`unpriced_counts`), unusable token counts ``status="invalid_usage"``.
        """
        try:
            return self._price(call, at)
        except Exception as exc:
            logger.exception("otel_costs: pricing failed")
            return self._unpriced_result(call, f"internal pricing error: {type(exc).__name__}: {exc}")

    def model_prices(
        self, model: str, provider: str | None = None, *, at: datetime | None = None
    ) -> ModelRates | None:
        """The per-1M-token rates of ``model`` at ``at`` (default: now), or ``None`` if unknown.

        ``None`` also for models priced in other units only (images, audio seconds). Never raises.
        """
        try:
            if not isinstance(model, str) or not model.strip():
                return None
            call = LlmCall(model.strip(), provider, None, TokenUsage())
            entry = self._entry_for(call)
            if not isinstance(entry, _Entry) or entry.delegate is not None:
                return None
            plan = entry.plan_at(at or datetime.now(tz=UTC))
            if plan.error is not None:
                return None
            return _rates(entry, plan)
        except Exception:
            logger.exception("otel_costs: model_prices failed")
            return None

    @property
    def unpriced_counts(self) -> Mapping[str, int]:
        """How many calls found no price, per ``provider/model`` (a read-only copy)."""
        with self._lock:
            return MappingProxyType(dict(self._unpriced))

    def close(self) -> None:
        """Stop the background price updates started by ``update_prices=True`` (idempotent)."""
        updater, self._updater = self._updater, None
        if updater is not None:
            try:
                updater.stop()  # type: ignore[no-untyped-call]
            except Exception:
                logger.exception("otel_costs: stopping genai-prices updates failed")

    def __enter__(self) -> PriceBook:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- pricing --------------------------------------------------------------------------------

    def _quote(
        self,
        model: str | None,
        provider: str | None,
        server: str | None,
        counts: tuple[int, int, int, int, int],
        start_ns: int | None,
    ) -> _Quote | None:
        """The processor's fast path of :meth:`price`: the figures a span publishes.

        For a call that ``price(LlmCall(model, provider, server, TokenUsage(*counts)), at=<the
        span start as a datetime>)`` prices, this gives its total in nano-USD (``to_nanos`` of the
        Decimal total), the input, cache-read, cache-write and output parts as the doubles
        ``float()`` of the Decimal parts gives, and the provider, model and source, without
        building the call, the datetime, the ``CostBreakdown`` or (mostly) any ``Decimal``. It
        answers ``None`` for every other call (unknown model, counts it rejects, a start time
        near a price change, a time-of-day price), which must then go through :meth:`price`.
        ``counts`` must be ints that pass ``plausible_counts`` (as ``billable_counts`` returns them).
        """
        if start_ns is not None and (
            type(start_ns) is not int or not -_MAX_START_NS < start_ns < _MAX_START_NS
        ):
            return None  # a start time that cannot be a datetime: price() says what happens
        state = self._state
        if state.snapshot is not data_snapshot.get_snapshot():
            return None  # new price data: price() starts the new memo
        key = (provider, server, model)
        try:
            quick = state.quick[key]
        except KeyError:
            quick = self._new_quick(state, key)
        if quick is None:
            return None
        schedule = quick.schedule
        entry = quick.entry
        if schedule is None:
            plan = entry.default
        elif not schedule or start_ns is None or start_ns <= 0:
            return None  # priced by the time of day, or at "now": price() reads the clock
        else:
            plan = entry.default
            for boundary, candidate in schedule:
                if boundary is None or start_ns >= boundary + _BOUNDARY_MARGIN_NS:
                    plan = candidate
                    break
                if start_ns > boundary - _BOUNDARY_MARGIN_NS:
                    return None
        if plan.error is not None:
            return None
        functions = plan.exact_functions
        context = getcontext()
        if (
            functions
            and context.prec >= 28
            and context.Emax >= 999_999
            and context.Emin <= -999_999
            and not context.clamp
        ):
            # The tier level: how many tier starts the total input count exceeds (as apply() picks).
            exact = (
                functions[0](*counts)
                if len(functions) == 1
                else functions[bisect_left(plan.exact_thresholds, counts[0])](*counts)
            )
            if exact is None:
                return None  # a part exceeds its total: price() flags it
            total, input_part, cache_read_part, cache_write_part, output_part = exact
            # With the default context's range and below 28 digits every Decimal operation of
            # apply() and to_nanos() is exact, so rounding the same rational here gives the same
            # nanos, and int / int, like float(Decimal), is the correctly rounded double of it.
            if total < _EXACT_LIMIT:
                scale = plan.exact_scale
                # total * NANOS_PER_USD / scale, rounded half to even.
                nanos, remainder = divmod(total * NANOS_PER_USD, scale)
                twice = 2 * remainder
                if twice > scale or (twice == scale and nanos & 1):
                    nanos += 1
                if nanos < _EXACT_LIMIT:
                    return (
                        nanos,
                        input_part / scale,
                        cache_read_part / scale,
                        cache_write_part / scale,
                        output_part / scale,
                        quick.provider,
                        entry.model,
                        entry.source,
                    )
        try:
            decimal_total, decimal_parts = plan.apply(counts)
            nanos = to_nanos(decimal_total)
        except (ValueError, ArithmeticError):
            return None  # price() or the processor flag it
        # float(Decimal) goes through a string; a zero part (no cache use) is never -0 (parts
        # are sums starting at +0), so 0.0 is the same double.
        return (
            nanos,
            *(float(part) if part else 0.0 for part in decimal_parts[:4]),  # type: ignore[return-value]
            quick.provider,
            entry.model,
            entry.source,
        )

    def _cost_attributes(self, attributes: dict[str, object], start_ns: int | None) -> dict[str, Any] | None:
        """A copy of a span's ``attributes`` with its cost attributes; ``None``: nothing to price.

        The processor's one call to the price book (``CostSpanProcessor.on_end``), in pure Python.
        BRIDGE on the pipeline branch (the processor's former Python path moved here, the C
        speedups no longer called) until the pricing branch replaces this with its one route.
        """
        return _span_cost_attributes(self, attributes, start_ns)

    def _new_quick(self, state: _State, key: tuple[str | None, str | None, str | None]) -> _Quick | None:
        provider, server, model = key
        entry = self._entry_for(LlmCall(model, provider, server, TokenUsage()))
        quick: _Quick | None = None
        if isinstance(entry, _Entry) and entry.delegate is None:
            resolved = entry.provider
            if resolved is None and entry.source == PRICE_SOURCE_OVERRIDE:
                resolved = self._provider_id(provider, server)
            quick = _Quick(entry, resolved)
        native = _native_plan(quick) if quick is not None else None
        with self._lock:
            if len(state.quick) >= _MAX_MEMO:
                oldest = next(iter(state.quick))
                del state.quick[oldest]
                state.native.pop(oldest, None)
            state.quick[key] = quick
            if native is not None:
                state.native[key] = native
        return quick

    def _price(self, call: LlmCall, at: datetime | None) -> CostBreakdown:
        usage = call.usage
        if not isinstance(usage, TokenUsage):
            return self._invalid_result(call, f"usage must be a TokenUsage, got {type(usage).__name__}")
        values = (
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            usage.reasoning_tokens,
        )
        if not plausible_counts(values):
            return self._invalid_result(call, usage_problem(usage) or "inconsistent token counts")
        entry = self._entry_for(call)
        if isinstance(entry, str):
            return self._unpriced_result(call, entry)
        if entry.delegate is not None:
            return self._delegate(entry, usage, at or datetime.now(tz=UTC), call)
        # A model with one price set needs no timestamp (and no clock read).
        plan = entry.plan_at(at or datetime.now(tz=UTC)) if entry.choices else entry.default
        if plan.error is not None:
            return self._unpriced_result(call, plan.error)
        try:
            total, parts = plan.apply(values)
        except ValueError as exc:
            return self._invalid_result(call, str(exc))
        provider = entry.provider
        if provider is None and entry.source == PRICE_SOURCE_OVERRIDE:
            provider = self._provider_id(call.provider, call.server_address)
        return CostBreakdown(
            STATUS_PRICED,
            total,
            parts[_B_INPUT],
            parts[_B_CACHE_READ],
            parts[_B_CACHE_WRITE],
            parts[_B_OUTPUT],
            provider,
            entry.model,
            entry.source,
            None,
            parts[_B_OTHER],
        )

    def _delegate(self, entry: _Entry, usage: TokenUsage, at: datetime, call: LlmCall) -> CostBreakdown:
        assert entry.delegate is not None
        model_info, provider = entry.delegate
        try:
            result = model_info.calc_price(_genai_usage(usage), provider, genai_request_timestamp=at)
        except ValueError as exc:
            return self._invalid_result(call, f"genai-prices rejected the usage: {exc}")
        other = result.total_price - result.input_price - result.output_price
        return CostBreakdown(
            STATUS_PRICED,
            result.total_price,
            result.input_price,
            _ZERO,
            _ZERO,
            result.output_price,
            entry.provider,
            entry.model,
            entry.source,
            None,
            other,
        )

    def _entry_for(self, call: LlmCall) -> _Entry | str:
        model = call.model
        if self._overrides and isinstance(model, str):
            override = self._overrides.get(model.strip().lower())
            if override is not None and (
                override.provider is None
                or override.provider == self._provider_id(call.provider, call.server_address)
            ):
                return override.entry
        state = self._state
        if state.snapshot is not data_snapshot.get_snapshot():
            state = self._current_state()
        key = (call.provider, call.server_address, model)
        found = state.names.get(key)
        if found is None:
            if not isinstance(model, str) or not model.strip():
                return "the span has no model name"
            if not self._use_genai_prices:
                return f"no price override for model {model.strip()!r} (genai-prices is disabled)"
            found = self._resolve(state, call.provider, call.server_address, model.strip())
            with self._lock:
                if len(state.names) >= _MAX_MEMO:
                    state.names.pop(next(iter(state.names)))
                state.names[key] = found
        return found

    def _current_state(self) -> _State:
        state = self._state
        snapshot = data_snapshot.get_snapshot()
        if state.snapshot is not snapshot:
            # New data (UpdatePrices, or set_custom_snapshot): start a new memo. Threads that hold
            # the old state finish with it consistently (its snapshot and its memo together).
            with self._lock:
                if self._state.snapshot is not snapshot:
                    self._state = _State(snapshot)
                state = self._state
        return state

    # --- resolution ------------------------------------------------------------------------------

    def _resolve(
        self, state: _State, provider_name: str | None, server: str | None, model: str
    ) -> _Entry | str:
        snapshot = state.snapshot
        assert snapshot is not None
        candidates: list[Provider] = []
        if isinstance(provider_name, str) and provider_name.strip():
            norm = provider_name.strip().lower()
            if norm in PROVIDER_ALIASES:
                alias = PROVIDER_ALIASES[norm]
                if alias is None:
                    return (
                        f"genai-prices has no prices for provider {provider_name!r}; "
                        f"add a price override for model {model!r}"
                    )
                norm = alias
            found = data_snapshot.find_provider_by_id(snapshot.providers, norm)
            if found is not None:
                candidates.append(found)
        local_server = False
        if isinstance(server, str) and server.strip():
            local_server = _is_local(server)
            by_url = _provider_for_server(snapshot, server)
            if by_url is not None and by_url not in candidates:
                candidates.append(by_url)

        for candidate in candidates:
            model_info = candidate.find_model(model, all_providers=snapshot.providers)
            if model_info is not None:
                return self._entry(state, candidate, model_info)
        if not local_server:
            # No provider, or the model is not listed under it: genai-prices' own model matching.
            try:
                found_provider, model_info = snapshot.find_provider_model(model, None, None, None)
            except LookupError:
                pass
            else:
                return self._entry(state, found_provider, model_info)
            # LiteLLM / OpenRouter style "provider/model" names.
            prefix, slash, rest = model.partition("/")
            if slash and prefix and rest:
                alias = PROVIDER_ALIASES.get(prefix.lower(), prefix.lower())
                by_prefix = data_snapshot.find_provider_by_id(snapshot.providers, alias) if alias else None
                if by_prefix is not None:
                    model_info = by_prefix.find_model(rest, all_providers=snapshot.providers)
                    if model_info is not None:
                        return self._entry(state, by_prefix, model_info)
        where = f"provider {provider_name!r}" if provider_name else "no provider name"
        if server:
            where += f", server {server!r}"
        return f"no price for model {model!r} ({where}) in genai-prices; add a price override"

    def _entry(self, state: _State, provider: Provider, model_info: ModelInfo) -> _Entry:
        key = (provider.id, id(model_info))
        found = state.entries.get(key)
        if found is not None:
            return found[1]
        delegate = None
        if provider.id == "groq" and model_info.id in ("whisper-large-v3", "whisper-large-v3-turbo"):
            # genai-prices special-cases these in ModelInfo.calc_price: let it price them.
            delegate = (model_info, provider)
        entry = _Entry(provider.id, model_info.id, PRICE_SOURCE_GENAI_PRICES, model_info.prices, delegate)
        with self._lock:
            state.entries[key] = (model_info, entry)
        return entry

    def _provider_id(self, provider_name: str | None, server: str | None) -> str | None:
        """The normalized provider of a call, for override ``provider`` restrictions."""
        state = self._current_state()
        key = (provider_name, server)
        if key in state.providers:
            return state.providers[key]
        result: str | None = None
        if isinstance(provider_name, str) and provider_name.strip():
            result = self._normalize_provider_name(provider_name)
        elif isinstance(server, str) and server.strip():
            snapshot = state.snapshot or data_snapshot.get_snapshot()
            by_url = _provider_for_server(snapshot, server)
            result = by_url.id if by_url is not None else None
        with self._lock:
            if len(state.providers) >= _MAX_MEMO:
                state.providers.pop(next(iter(state.providers)))
            state.providers[key] = result
        return result

    @staticmethod
    def _normalize_provider_name(name: str) -> str:
        norm = name.strip().lower()
        if norm in PROVIDER_ALIASES:
            alias = PROVIDER_ALIASES[norm]
            return norm if alias is None else alias
        found = data_snapshot.find_provider_by_id(data_snapshot.get_snapshot().providers, norm)
        return found.id if found is not None else norm

    # --- outcomes ----------------------------------------------------------------------------------

    def _unpriced_result(self, call: LlmCall, reason: str) -> CostBreakdown:
        key = _call_key(call)
        with self._lock:
            if key not in self._unpriced and len(self._unpriced) >= _MAX_UNPRICED_KEYS:
                key = _OTHER_KEY
            self._unpriced[key] = self._unpriced.get(key, 0) + 1
            first = key not in self._warned
            if first:
                self._warned.add(key)
        if first:
            logger.warning("otel_costs: %s is unpriced: %s", key, reason)
        return _not_priced(STATUS_UNPRICED, call, reason)

    def _invalid_result(self, call: LlmCall, reason: str) -> CostBreakdown:
        key = "invalid:" + _call_key(call)
        with self._lock:
            first = key not in self._warned and len(self._warned) < 2 * _MAX_UNPRICED_KEYS
            if first:
                self._warned.add(key)
        if first:
            logger.warning("otel_costs: %s has invalid usage: %s", key[len("invalid:") :], reason)
        return _not_priced(STATUS_INVALID_USAGE, call, reason)


def _not_priced(status: str, call: LlmCall, reason: str) -> CostBreakdown:
    model = call.model if isinstance(call.model, str) else None
    provider = call.provider if isinstance(call.provider, str) else None
    return CostBreakdown(status, _ZERO, _ZERO, _ZERO, _ZERO, _ZERO, provider, model, None, reason)


def _call_key(call: LlmCall) -> str:
    provider = call.provider or call.server_address or "unknown"
    model = call.model or "unknown"
    return f"{provider}/{model}"


def _genai_usage(usage: TokenUsage) -> GenaiUsage:
    """The genai-prices ``Usage`` equivalent of ``usage`` (the same five counts)."""
    return GenaiUsage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_reasoning_tokens=usage.reasoning_tokens,
    )


def _provider_for_server(snapshot: data_snapshot.DataSnapshot, server: str) -> Provider | None:
    """The provider whose ``api_pattern`` matches ``server`` (a host name or a base URL)."""
    server = server.strip()
    url = server if "://" in server else f"https://{server}/"
    for provider in snapshot.providers:
        if re.match(provider.api_pattern, url):
            return provider
    return None


def _is_local(server: str) -> bool:
    """True for loopback and private hosts: a self-hosted model is never guessed a cloud price."""
    server = server.strip()
    host = urlsplit(server).hostname if "://" in server else server
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified


def _rates(entry: _Entry, plan: _Plan) -> ModelRates | None:
    keys = plan.price_keys
    if "input_mtok" not in keys and "output_mtok" not in keys:
        return None

    def at(price_key: str, input_tokens: int) -> Decimal | None:
        found = keys.get(price_key)
        if found is None:
            return None
        price = found[0]
        for start, tier_price in found[1]:
            if input_tokens > start:
                price = tier_price
        return price

    starts = sorted({start for _, tiers in keys.values() for start, _ in tiers})
    tiers = tuple(
        RateTier(
            start,
            at("input_mtok", start + 1) or _ZERO,
            at("output_mtok", start + 1) or _ZERO,
            at("cache_read_mtok", start + 1),
            at("cache_write_mtok", start + 1),
        )
        for start in starts
    )
    requests = keys.get("requests_kcount")
    return ModelRates(
        provider=entry.provider,
        model=entry.model,
        source=entry.source,
        input=at("input_mtok", 0) or _ZERO,
        output=at("output_mtok", 0) or _ZERO,
        cache_read=at("cache_read_mtok", 0),
        cache_write=at("cache_write_mtok", 0),
        per_request=requests[0] / 1000 if requests is not None else _ZERO,
        tiers=tiers,
    )


# --- overrides -----------------------------------------------------------------------------------

#: Rate names in the override schema -> genai-prices price keys.
_RATE_KEYS: Final = {
    "input": "input_mtok",
    "cached_input": "cache_read_mtok",
    "cache_read": "cache_read_mtok",
    "cache_write": "cache_write_mtok",
    "output": "output_mtok",
}
_ENTRY_KEYS: Final = frozenset({*_RATE_KEYS, "provider", "tiers", "changes"})
_TIER_KEYS: Final = frozenset({*_RATE_KEYS, "above"})
_CHANGE_KEYS: Final = frozenset({*_RATE_KEYS, "start_date", "tiers"})


@dataclass(frozen=True, slots=True)
class _Override:
    """One validated override: the model's plans and its optional provider restriction."""

    provider: str | None
    """Normalized provider id the override is restricted to, or ``None`` for any provider."""
    entry: _Entry
    """The compiled prices."""


def _load_overrides_file(path: Path) -> Mapping[str, Mapping[str, object]]:
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise PriceConfigError(f"overrides_file {str(path)!r}: use a .toml, .yaml or .yml file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PriceConfigError(f"overrides_file {str(path)!r} cannot be read: {exc.strerror or exc}") from exc
    try:
        loaded: object = tomllib.loads(data.decode("utf-8")) if suffix == ".toml" else yaml.safe_load(data)
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PriceConfigError(
            f"overrides_file {str(path)!r} is not valid {suffix[1:].upper()}: {exc}"
        ) from exc
    if loaded is None:
        return {}
    return _check_models(loaded, f"overrides_file {str(path)!r}")


def _check_models(loaded: object, where: str) -> dict[str, Mapping[str, object]]:
    if not isinstance(loaded, Mapping):
        raise PriceConfigError(
            f"{where}: the top level must map model names to prices, got {type(loaded).__name__}"
        )
    models: dict[str, Mapping[str, object]] = {}
    seen: dict[str, str] = {}
    for model, spec in loaded.items():
        if not isinstance(model, str) or not model.strip():
            raise PriceConfigError(f"{where}: model names must be non-empty strings, got {model!r}")
        if not isinstance(spec, Mapping):
            raise PriceConfigError(
                f"{where}[{model!r}]: expected a table of prices like {{input = 3.0, output = 15.0}}, "
                f"got {type(spec).__name__}"
            )
        key = model.strip().lower()
        if key in seen:
            raise PriceConfigError(
                f"{where}: {model!r} and {seen[key]!r} are the same model (names ignore case)"
            )
        seen[key] = model
        models[model.strip()] = spec
    return models


def _parse_override(
    where: str, model: str, spec: Mapping[str, object], normalize: Callable[[str], str]
) -> _Override:
    _check_keys(where, spec, _ENTRY_KEYS)
    provider = spec.get("provider")
    if provider is not None and (not isinstance(provider, str) or not provider.strip()):
        raise PriceConfigError(f"{where}.provider: expected a provider name like 'openai', got {provider!r}")
    base = _parse_block(where, spec)
    changes_raw = spec.get("changes")
    prices: ModelPrice | list[ConditionalPrice]
    if changes_raw is None:
        prices = base
    else:
        if not isinstance(changes_raw, Sequence) or isinstance(changes_raw, str) or not changes_raw:
            raise PriceConfigError(
                f"{where}.changes: expected a non-empty list of "
                "{start_date = 2026-03-01, input = ..., output = ...}"
            )
        prices = [ConditionalPrice(None, prices=base)]
        previous: date | None = None
        for index, change in enumerate(changes_raw):
            change_where = f"{where}.changes[{index}]"
            if not isinstance(change, Mapping):
                raise PriceConfigError(f"{change_where}: expected a table, got {type(change).__name__}")
            _check_keys(change_where, change, _CHANGE_KEYS)
            start = _parse_date(f"{change_where}.start_date", change.get("start_date"))
            if previous is not None and start <= previous:
                raise PriceConfigError(
                    f"{change_where}.start_date: {start} must be later than the previous change ({previous})"
                )
            previous = start
            prices.append(
                ConditionalPrice(StartDateConstraint(start), prices=_parse_block(change_where, change))
            )
    entry = _Entry(
        normalize(provider) if isinstance(provider, str) else None, model, PRICE_SOURCE_OVERRIDE, prices
    )
    for plan in (entry.default, *(plan for _, plan in entry.choices)):
        if plan.error is not None:
            raise PriceConfigError(f"{where}: {plan.error}")
    return _Override(entry.provider, entry)


def _parse_block(where: str, block: Mapping[str, object]) -> ModelPrice:
    rates = _parse_rates(where, block)
    for required in ("input", "output"):
        if required not in block:
            raise PriceConfigError(f"{where}: missing {required!r} (USD per 1M {required} tokens)")
    tiers_raw = block.get("tiers")
    tiers: list[tuple[int, dict[str, Decimal]]] = []
    if tiers_raw is not None:
        if not isinstance(tiers_raw, Sequence) or isinstance(tiers_raw, str) or not tiers_raw:
            raise PriceConfigError(
                f"{where}.tiers: expected a non-empty list of {{above = 200000, input = ..., output = ...}}"
            )
        previous = -1
        for index, tier in enumerate(tiers_raw):
            tier_where = f"{where}.tiers[{index}]"
            if not isinstance(tier, Mapping):
                raise PriceConfigError(f"{tier_where}: expected a table, got {type(tier).__name__}")
            _check_keys(tier_where, tier, _TIER_KEYS)
            above = tier.get("above")
            if isinstance(above, bool) or not isinstance(above, int) or above < 0:
                raise PriceConfigError(
                    f"{tier_where}.above: expected a whole number of input tokens >= 0 "
                    f"(e.g. 200000), got {above!r}"
                )
            if above <= previous:
                raise PriceConfigError(
                    f"{tier_where}.above: {above} must be greater than the previous tier's"
                )
            previous = above
            tier_rates = _parse_rates(tier_where, tier)
            if tier_rates.keys() != rates.keys():
                names = sorted(
                    name for name, key in _RATE_KEYS.items() if key in rates and name != "cached_input"
                )
                raise PriceConfigError(f"{tier_where}: a tier must give the same rates as its base: {names}")
            tiers.append((above, tier_rates))
    values: dict[str, Decimal | TieredPrices] = {}
    for price_key, base in rates.items():
        if tiers:
            values[price_key] = TieredPrices(
                base, [Tier(above, tier_rates[price_key]) for above, tier_rates in tiers]
            )
        else:
            values[price_key] = base
    return ModelPrice(**values)


def _parse_rates(where: str, block: Mapping[str, object]) -> dict[str, Decimal]:
    if "cached_input" in block and "cache_read" in block:
        raise PriceConfigError(f"{where}: give 'cached_input' or its alias 'cache_read', not both")
    rates: dict[str, Decimal] = {}
    for name in ("input", "cached_input", "cache_read", "cache_write", "output"):
        if name in block:
            rates[_RATE_KEYS[name]] = _parse_rate(f"{where}.{name}", block[name])
    return rates


def _parse_rate(where: str, value: object) -> Decimal:
    """USD per 1M tokens as an exact Decimal (floats via ``str``, so 3.0 is exactly 3)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError
            rate = Decimal(str(value))
        elif isinstance(value, int | Decimal):
            rate = Decimal(value)
        elif isinstance(value, str):
            rate = Decimal(value.strip())
        else:
            raise TypeError
    except (TypeError, ValueError, InvalidOperation):
        raise PriceConfigError(
            f"{where}: expected USD per 1M tokens as a number (e.g. 2.5), got {value!r}"
        ) from None
    if not rate.is_finite() or rate < 0:
        raise PriceConfigError(f"{where}: expected a finite price >= 0, got {value!r}")
    return rate


def _parse_date(where: str, value: object) -> date:
    if isinstance(value, datetime):
        raise PriceConfigError(
            f"{where}: give a date (2026-03-01), not a date-time: prices change at 00:00 UTC"
        )
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise PriceConfigError(f"{where}: expected a date like 2026-03-01 (UTC), got {value!r}")


def _check_keys(where: str, block: Mapping[str, object], allowed: frozenset[str]) -> None:
    unknown = [key for key in block if key not in allowed]
    if unknown:
        raise PriceConfigError(
            f"{where}: unknown key(s) {', '.join(repr(key) for key in unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


# --- BRIDGE (pipeline branch): the processor's former Python pricing path, until pricing's own --------

from otel_costs._money import nanos_to_usd  # noqa: E402
from otel_costs.conventions import COST_STATUS_REASON, STATUS_AGGREGATE  # noqa: E402
from otel_costs.pricing._usage import billable_counts, read_usage  # noqa: E402


def _span_cost_attributes(
    book: PriceBook, attributes: dict[str, object], start_ns: int | None
) -> dict[str, Any] | None:
    own: dict[str, Any] = dict(attributes)
    partial = own.get(COST_STATUS) == STATUS_PARTIAL
    fields = billable_counts(own)
    if fields is not None:
        model, provider, server, counts = fields
        quote = None
        if type(book).price is PriceBook.price and type(book)._price is PriceBook._price:
            quote = book._quote(model, provider, server, counts, start_ns)
        if quote is not None:
            nanos, input_usd, cache_read_usd, cache_write_usd, output_usd, q_provider, q_model, source = quote
            usd = nanos / NANOS_PER_USD
            own[COST_CURRENCY] = CURRENCY_USD
            own[COST_STATUS] = STATUS_PARTIAL if partial else STATUS_PRICED
            if q_provider:
                own[COST_PROVIDER] = q_provider
            if q_model:
                own[COST_MODEL] = q_model
            if source:
                own[COST_PRICE_SOURCE] = source
            own[COST_DIRECT] = usd
            own[GEN_AI_USAGE_COST] = usd
            own[COST_DIRECT_NANOS] = nanos
            own[COST_INPUT] = input_usd
            own[COST_CACHE_READ] = cache_read_usd
            own[COST_CACHE_WRITE] = cache_write_usd
            own[COST_OUTPUT] = output_usd
            return own
        call: LlmCall | None = LlmCall(model, provider, server, TokenUsage(*counts))
        kind = "call"
        reason = None
    else:
        reading = read_usage(own)
        if reading is None:
            return None
        call, kind, reason = reading.call, reading.kind, reading.reason
    extra: dict[str, Any] = {COST_CURRENCY: CURRENCY_USD}
    if kind == "aggregate":
        extra[COST_STATUS] = STATUS_AGGREGATE
        extra[COST_STATUS_REASON] = reason or "aggregate usage of child calls"
    elif kind == "missing":
        extra[COST_STATUS] = STATUS_UNPRICED
        extra[COST_STATUS_REASON] = reason or "no token usage reported"
    elif kind == "invalid" or call is None:
        extra[COST_STATUS] = STATUS_INVALID_USAGE
        extra[COST_STATUS_REASON] = reason or "unreadable usage"
    else:
        at = datetime.fromtimestamp(start_ns / 1e9, tz=UTC) if start_ns else None
        cost = book.price(call, at=at)
        extra[COST_STATUS] = cost.status
        if cost.reason:
            extra[COST_STATUS_REASON] = cost.reason
        if cost.provider:
            extra[COST_PROVIDER] = cost.provider
        if cost.model:
            extra[COST_MODEL] = cost.model
        if cost.source:
            extra[COST_PRICE_SOURCE] = cost.source
        if cost.status == STATUS_PRICED:
            nanos = to_nanos(cost.total)
            usd = nanos_to_usd(nanos)
            extra[COST_DIRECT] = usd
            extra[GEN_AI_USAGE_COST] = usd
            extra[COST_DIRECT_NANOS] = nanos
            extra[COST_INPUT] = float(cost.input)
            extra[COST_CACHE_READ] = float(cost.cache_read)
            extra[COST_CACHE_WRITE] = float(cost.cache_write)
            extra[COST_OUTPUT] = float(cost.output)
        if partial:
            extra[COST_STATUS] = STATUS_PARTIAL
    own.update(extra)
    return own
