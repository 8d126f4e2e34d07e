"""Compiled model prices and their arithmetic.

A genai-prices ``ModelPrice`` is compiled once into a :class:`Plan`: its priced units in
genai-prices' order (found through genai-prices' public unit registry), the divisor of each, the
tier thresholds, and the leaf-value decomposition (cache reads and writes are subtracted from
input, reasoning from output, where the model prices them apart). A plan prices a call two ways,
both from that one compilation:

- :meth:`Plan.decimal` does genai-prices' own arithmetic, in its order (``price * count / per``
  summed from ``Decimal(0)``), so the ``Decimal`` total is identical to ``calc_price``'s, exponent
  included. :meth:`PriceBook.price` uses it.
- :meth:`Plan.span_costs` evaluates the same sums in integers: every price per ``per`` units is an
  integer number of ``1 / scale`` USD (``scale`` a power of ten), each leaf count is a fixed
  linear function of the five token counts, so each cost part is one integer dot product per tier
  level. Below 28 digits, in the default ``Decimal`` context, every ``Decimal`` operation of
  ``decimal`` is exact, so rounding the same rational to nano-USD (half-even) gives the same
  nanos, and ``int / int`` the same correctly rounded doubles. Anything else answers ``None``
  and is priced by ``decimal``. The span path uses it.

An :class:`Entry` is one resolved (provider, model): its plans by date or time of day.
genai-prices is imported here only when a plan is first compiled.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Context, Decimal, getcontext
from typing import TYPE_CHECKING, Final

from otel_costs._money import NANOS_PER_USD
from otel_costs.pricing._results import ModelRates, RateTier
from otel_costs.pricing._usage import Counts

if TYPE_CHECKING:
    from genai_prices.types import (
        ConditionalPrice,
        ModelInfo,
        ModelPrice,
        Provider,
        StartDateConstraint,
        TieredPrices,
        TimeOfDateConstraint,
    )
    from genai_prices.units import UnitDef, UnitRegistry

__all__ = ("Entry", "Plan", "rates")

_ZERO: Final = Decimal(0)
#: The cost parts (``Plan.decimal``'s buckets), in this order.
B_INPUT, B_CACHE_READ, B_CACHE_WRITE, B_OUTPUT, B_OTHER = range(5)
#: Where each genai-prices usage key comes from in the counts (index into ``Counts``).
_USAGE_SOURCES: Final = {
    "input_tokens": 0,
    "output_tokens": 1,
    "cache_read_tokens": 2,
    "cache_write_tokens": 3,
    "output_reasoning_tokens": 4,
}
#: Figures below this many units have at most 28 digits: ``Decimal``'s default precision.
_EXACT_LIMIT: Final = 10**28
_NS_PER_DAY: Final = 86_400 * 10**9
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()

#: One compiled term: (base price, its cost for 0 units, tiers as (start, price, zero cost)
#: highest first, per as a Decimal, bucket), in genai-prices' unit order.
_Term = tuple[Decimal, Decimal, tuple[tuple[int, Decimal, Decimal], ...], Decimal, int]
#: A row of integer coefficients of (input, output, cache read, cache write, reasoning, 1).
_Row = tuple[int, int, int, int, int, int]
#: The same for calls without cache or reasoning counts: coefficients of (input, output, 1).
_PlainRow = tuple[int, int, int]

_registry: UnitRegistry | None = None


def unit_registry() -> UnitRegistry:
    """genai-prices' unit registry, built once from its public unit data (as ``calc_price`` uses it)."""
    global _registry
    if _registry is None:
        from genai_prices.data_units import unit_data
        from genai_prices.units import UnitRegistry

        _registry = UnitRegistry(unit_data)
    return _registry


def datetime_of(start_ns: int) -> datetime:
    """The UTC instant of ``start_ns`` nanoseconds since the epoch, exact to the microsecond."""
    return _EPOCH + timedelta(microseconds=start_ns // 1000)


class Plan:
    """One genai-prices ``ModelPrice``, compiled: everything ``ModelPrice.calc_price`` derives per call."""

    __slots__ = (
        "checks",
        "error",
        "has_tiers",
        "initial_counts",
        "leaf_steps",
        "levels",
        "limit",
        "nano_factor",
        "plain_checks",
        "plain_levels",
        "price_keys",
        "scale",
        "simple_levels",
        "single",
        "terms",
        "thresholds",
    )

    def __init__(self, model_price: ModelPrice) -> None:
        self.error: str | None = None
        self.terms: tuple[_Term, ...] = ()
        #: (term index, usage source index or -1, term indexes of its priced descendants).
        self.leaf_steps: tuple[tuple[int, int, tuple[int, ...]], ...] = ()
        #: Counts before the leaf decomposition: 1 for a per-request unit, else 0.
        self.initial_counts: tuple[int, ...] = ()
        self.has_tiers = False
        #: price key -> (base, tiers lowest first), for ModelRates.
        self.price_keys: dict[str, tuple[Decimal, tuple[tuple[int, Decimal], ...]]] = {}
        #: The integer form (empty ``levels``: none, only ``decimal`` prices): per tier level the
        #: five cost parts as rows in ``1 / scale`` USD, the tier starts between the levels, the
        #: rows of leaf counts that can be negative; and the same for calls without cache or
        #: reasoning counts.
        self.scale = 1
        self.levels: tuple[tuple[_Row, ...], ...] = ()
        self.thresholds: tuple[int, ...] = ()
        self.checks: tuple[_Row, ...] = ()
        self.plain_levels: tuple[tuple[_PlainRow, ...], ...] = ()
        self.plain_checks: tuple[_PlainRow, ...] = ()
        #: Per level, the input and output rows (a, b, f, a', b', f') of calls without cache or
        #: reasoning counts when those are the only parts that can cost anything; else empty.
        self.simple_levels: tuple[tuple[int, int, int, int, int, int], ...] = ()
        #: ``NANOS_PER_USD // scale`` when ``scale`` divides it (no rounding at all), else 0.
        self.nano_factor = 0
        #: ``simple_levels``' one level with ``limit``, ``nano_factor`` and ``scale`` when there are
        #: no tiers and ``nano_factor`` is set (``span_costs``' shortest path, one attribute read).
        self.single: tuple[int, int, int, int, int, int, int, int, int] | None = None
        #: Totals (in ``1 / scale`` USD) from this one on are left to ``decimal``: their figures
        #: or their nano-USD reach 28 digits.
        self.limit = _EXACT_LIMIT
        try:
            self._compile(model_price)
        except ValueError as exc:
            self.error = f"genai-prices price data is invalid: {exc}"
            return
        self._compile_exact()

    def _compile(self, model_price: ModelPrice) -> None:
        from genai_prices.decompose import is_descendant_or_self
        from genai_prices.types import TieredPrices
        from genai_prices.validation import validate_priced_units

        registry = unit_registry()
        resolved = _resolved_prices(model_price, registry)
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
            tiers = tuple((start, value, _zero_cost(value, per)) for start, value in reversed(ascending))
            terms.append((base, _zero_cost(base, per), tiers, per, _bucket(unit.dimensions)))
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
        """Fill the integer form, when every price of a counted term is ``p / per`` with ``per`` a
        power of ten (genai-prices' per-million and per-thousand units)."""
        # rows[k]: term k's count as coefficients of the counts and a constant, in decimal()'s order.
        rows = [[0, 0, 0, 0, 0, initial] for initial in self.initial_counts]
        checks: list[_Row] = []
        for index, source, descendants in self.leaf_steps:
            row = [0] * 6
            if source >= 0:
                row[source] = 1
            for descendant in descendants:
                row = [a - b for a, b in zip(row, rows[descendant], strict=True)]
            rows[index] = row
            if any(coefficient < 0 for coefficient in row):
                checks.append(_row(row))
        # Terms whose count is always 0 cost 0 whatever their price: they need no integer form.
        counted = [(term, row) for term, row in zip(self.terms, rows, strict=True) if any(row)]
        digits = 0
        per_exponents = []
        for (base, _zero, tiers, per, _bucket_index), _ in counted:
            per_exponent = _power_of_ten(per)
            if per_exponent is None:
                return
            per_exponents.append(per_exponent)
            for price in (base, *(price for _start, price, _tier_zero in tiers)):
                digits = max(digits, per_exponent - _coefficient(price)[1])
        scale = 10**digits
        thresholds = sorted({start for (_, _, tiers, _, _), _ in counted for start, _, _ in tiers})
        # A total input count in each level: at most the lowest start, then just above each start.
        samples = [thresholds[0] if thresholds else 0, *(start + 1 for start in thresholds)]
        levels = []
        for sample in samples:
            sums = [[0] * 6 for _ in range(5)]
            for ((base, _zero, tiers, _per, bucket), row), per_exponent in zip(
                counted, per_exponents, strict=True
            ):
                price = base
                for start, tier_price, _tier_zero in tiers:
                    if sample > start:
                        price = tier_price
                        break
                # price / per in 1/scale USD: c * 10**e / 10**per_exponent * 10**digits, an
                # integer by the choice of digits (computed in ints: no Decimal rounding).
                coefficient, exponent = _coefficient(price)
                units = coefficient * 10 ** (exponent - per_exponent + digits)
                for k, coefficient in enumerate(row):
                    sums[bucket][k] += units * coefficient
            levels.append(tuple(_row(bucket_row) for bucket_row in sums))
        self.scale = scale
        self.thresholds = tuple(thresholds)
        self.levels = tuple(levels)
        self.checks = tuple(checks)
        self.plain_levels = tuple(tuple((r[0], r[1], r[5]) for r in level) for level in levels)
        self.plain_checks = tuple((r[0], r[1], r[5]) for r in checks if min(r[0], r[1], r[5]) < 0)
        if not self.plain_checks and all(
            not any(level[bucket]) for level in self.plain_levels for bucket in (1, 2, 4)
        ):
            self.simple_levels = tuple((*level[B_INPUT], *level[B_OUTPUT]) for level in self.plain_levels)
        self.nano_factor = NANOS_PER_USD // scale if NANOS_PER_USD % scale == 0 else 0
        if self.nano_factor:
            self.limit = min(_EXACT_LIMIT, -(-_EXACT_LIMIT // self.nano_factor))
            if len(self.simple_levels) == 1 and not self.thresholds:
                self.single = (*self.simple_levels[0], self.limit, self.nano_factor, scale)

    def decimal(self, values: Counts) -> tuple[Decimal, list[Decimal]]:
        """Total and per-bucket cost as genai-prices computes them; ``ValueError`` when a leaf
        count is negative (a part of the usage exceeds its total)."""
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
            # genai-prices computes price * Decimal(count) / per; Decimal converts an int operand
            # exactly, so this is the same operation, and for count 0 its result is precomputed.
            unit_price = price * count / per if count else zero
            total += unit_price
            buckets[bucket] += unit_price
        return total, buckets

    def span_costs(self, counts: Counts) -> tuple[int, tuple[float, float, float, float]] | None:
        """The nano-USD total and the input, cache-read, cache-write and output doubles that
        ``decimal`` and one half-even quantization give, computed in integers; ``None`` where
        that is not provably the same (no integer form, a negative leaf count, 28 digits or
        more, a ``Decimal`` context other than the default's precision and range)."""
        i, o, cr, cw, rs = counts
        single = self.single
        if single is not None and not (cr or cw or rs):
            # The commonest case: one price level, only input and output cost anything, an exact
            # nano-USD factor (the simple path below, inline).
            a0, b0, f0, a3, b3, f3, limit, factor, scale = single
            p0 = a0 * i + b0 * o + f0
            p3 = a3 * i + b3 * o + f3
            total = p0 + p3
            if total < limit:
                context = getcontext()
                if context.prec < 28 or (context is not _checked_context[0] and not _exact_in(context)):
                    return None
                return total * factor, (p0 / scale, 0.0, 0.0, p3 / scale)
        levels = self.plain_levels
        if not levels:
            return None
        thresholds = self.thresholds
        level = bisect_left(thresholds, i) if thresholds else 0
        simple = self.simple_levels
        if simple and not (cr or cw or rs):
            # The common case: only input and output can cost anything (the general tail below,
            # with p1 = p2 = p4 = 0, inline).
            a0, b0, f0, a3, b3, f3 = simple[level]
            p0 = a0 * i + b0 * o + f0
            p3 = a3 * i + b3 * o + f3
            total = p0 + p3
            factor = self.nano_factor
            if total >= self.limit or not factor:
                return self._general_tail(total, p0, 0, 0, p3)
            context = getcontext()
            if context.prec < 28 or (context is not _checked_context[0] and not _exact_in(context)):
                return None
            scale = self.scale
            return total * factor, (p0 / scale, 0.0, 0.0, p3 / scale)
        if cr or cw or rs:
            for a, b, c, d, e, f in self.checks:
                if a * i + b * o + c * cr + d * cw + e * rs + f < 0:
                    return None
            rows = self.levels[level]
            (a0, b0, c0, d0, e0, f0), (a1, b1, c1, d1, e1, f1), (a2, b2, c2, d2, e2, f2) = rows[:3]
            (a3, b3, c3, d3, e3, f3), (a4, b4, c4, d4, e4, f4) = rows[3:]
            p0 = a0 * i + b0 * o + c0 * cr + d0 * cw + e0 * rs + f0
            p1 = a1 * i + b1 * o + c1 * cr + d1 * cw + e1 * rs + f1
            p2 = a2 * i + b2 * o + c2 * cr + d2 * cw + e2 * rs + f2
            p3 = a3 * i + b3 * o + c3 * cr + d3 * cw + e3 * rs + f3
            p4 = a4 * i + b4 * o + c4 * cr + d4 * cw + e4 * rs + f4
        else:
            for a, b, f in self.plain_checks:
                if a * i + b * o + f < 0:
                    return None
            (a0, b0, f0), (a1, b1, f1), (a2, b2, f2), (a3, b3, f3), (a4, b4, f4) = levels[level]
            p0 = a0 * i + b0 * o + f0
            p1 = a1 * i + b1 * o + f1
            p2 = a2 * i + b2 * o + f2
            p3 = a3 * i + b3 * o + f3
            p4 = a4 * i + b4 * o + f4
        return self._general_tail(p0 + p1 + p2 + p3 + p4, p0, p1, p2, p3)

    def _general_tail(
        self, total: int, p0: int, p1: int, p2: int, p3: int
    ) -> tuple[int, tuple[float, float, float, float]] | None:
        """``span_costs`` from the bucket sums (in 1/scale USD) on: the checks and the rounding."""
        if total >= self.limit:
            return None
        context = getcontext()
        if context.prec < 28 or (context is not _checked_context[0] and not _exact_in(context)):
            return None  # decimal() rounds (or signals) in this context: it must decide
        scale = self.scale
        factor = self.nano_factor
        if factor:
            nanos = total * factor  # exact: a whole number of nano-USD, below 10**28 by the limit
        else:
            # total * NANOS_PER_USD / scale, rounded half to even.
            nanos, remainder = divmod(total * NANOS_PER_USD, scale)
            twice = 2 * remainder
            if twice > scale or (twice == scale and nanos & 1):
                nanos += 1
            if nanos >= _EXACT_LIMIT:
                return None
        return nanos, (p0 / scale, p1 / scale if p1 else 0.0, p2 / scale if p2 else 0.0, p3 / scale)


#: The last ``Decimal`` context seen to have the default's exponent range (read once per context
#: object: ``localcontext()`` and ``setcontext()`` make new ones; the precision, the setting
#: that code changes in place, is read on every call).
_checked_context: list[Context | None] = [None]


def _exact_in(context: Context) -> bool:
    """True when ``context``'s exponent range is the default's (with it, clamp cannot touch
    exponents of the size ``decimal()`` meets); remembers ``context`` if so."""
    if context.Emax < 999_999 or context.Emin > -999_999:
        return False
    _checked_context[0] = context
    return True


def _row(values: Sequence[int]) -> _Row:
    a, b, c, d, e, f = values
    return (a, b, c, d, e, f)


def _resolved_prices(
    model_price: ModelPrice, registry: UnitRegistry
) -> tuple[tuple[UnitDef, Decimal | TieredPrices], ...]:
    """The priced units of ``model_price`` and their prices, in the order ``calc_price`` uses.

    genai-prices' public API has no function for this (``calc_price`` uses a private one): the
    same rule is applied to the public attributes of ``ModelPrice`` (one per price key, in their
    order; keys without a registered unit are ignored, as ``calc_price`` ignores them) and the
    public ``UnitRegistry.unit_for_price_key``. Invalid values raise ``ValueError``.
    """
    from genai_prices.types import TieredPrices

    resolved: list[tuple[UnitDef, Decimal | TieredPrices]] = []
    for price_key, value in vars(model_price).items():
        if price_key.startswith("_") or value is None:
            continue
        try:
            unit = registry.unit_for_price_key(price_key)
        except KeyError:
            continue
        if isinstance(value, TieredPrices):
            starts = [tier.start for tier in value.tiers]
            valid = (
                _valid_price(value.base)
                and all(type(start) is int and start >= 0 for start in starts)
                and starts == sorted(starts)
                and all(_valid_price(tier.price) for tier in value.tiers)
            )
        else:
            valid = _valid_price(value)
        if not valid:
            raise ValueError(
                f"Invalid price value for {price_key}: expected a finite non-negative Decimal "
                "or valid tiered prices"
            )
        resolved.append((unit, value))
    return tuple(resolved)


def _coefficient(price: Decimal) -> tuple[int, int]:
    """``(c, e)`` with ``price == c * 10**e`` exactly (``price`` finite and >= 0)."""
    _sign, digits, exponent = price.as_tuple()
    assert isinstance(exponent, int)  # finite: checked by _resolved_prices
    return int("".join(map(str, digits))), exponent


def _valid_price(value: object) -> bool:
    return isinstance(value, Decimal) and value.is_finite() and value >= 0


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
        return B_OUTPUT
    if direction == "input":
        token_type = dimensions.get("token_type")
        if token_type == "cache_read":
            return B_CACHE_READ
        if token_type == "cache_write":
            return B_CACHE_WRITE
        return B_INPUT
    return B_OTHER


class Entry:
    """A resolved (provider, model): its plans by date or time of day, ready to apply."""

    __slots__ = ("choices", "default", "delegate", "model", "prices", "provider", "schedule", "source")

    def __init__(
        self,
        provider: str | None,
        model: str,
        source: str,
        prices: ModelPrice | Sequence[ConditionalPrice],
        delegate: tuple[ModelInfo, Provider] | None = None,
    ) -> None:
        from genai_prices.types import ModelPrice, StartDateConstraint

        self.provider = provider
        self.model = model
        self.source = source
        #: The prices as given (the price file exporter writes them out).
        self.prices = prices
        #: A model genai-prices special-cases in code: priced by its own calc_price, not by a plan.
        self.delegate = delegate
        self.choices: tuple[tuple[StartDateConstraint | TimeOfDateConstraint | None, Plan], ...] = ()
        #: ``None``: one price set. Else the choices as (UTC midnight in ns of the start date, or
        #: ``None`` for no constraint, plan), in the order ``plan_at`` tries them; empty when a
        #: constraint is a time of day (then ``plan_at`` decides).
        self.schedule: tuple[tuple[int | None, Plan], ...] | None = None
        if isinstance(prices, ModelPrice):
            self.default = Plan(prices)
            return
        plans = [(conditional.constraint, Plan(conditional.prices)) for conditional in prices]
        self.default = plans[0][1]
        # Tried last to first, as ModelInfo.get_prices does.
        self.choices = tuple(reversed(plans))
        schedule: list[tuple[int | None, Plan]] = []
        for constraint, plan in self.choices:
            if constraint is None:
                schedule.append((None, plan))
            elif type(constraint) is StartDateConstraint and type(constraint.start_date) is date:
                schedule.append(((constraint.start_date.toordinal() - _EPOCH_ORDINAL) * _NS_PER_DAY, plan))
            else:
                schedule = []
                break
        self.schedule = tuple(schedule)

    def plan_at(self, at: datetime) -> Plan:
        """The plan in force at ``at`` (``ModelInfo.get_prices`` without a price context)."""
        from genai_prices.types import StartDateConstraint

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

    def plan_at_ns(self, start_ns: int) -> Plan:
        """``plan_at`` the instant ``start_ns`` (ns since the epoch), by integer comparison where
        the prices change on dates: a UTC date starts at a whole number of microseconds."""
        schedule = self.schedule
        if schedule is None:
            return self.default
        if not schedule:
            return self.plan_at(datetime_of(start_ns))
        for boundary, plan in schedule:
            if boundary is None or start_ns >= boundary:
                return plan
        return self.default


def rates(entry: Entry, plan: Plan) -> ModelRates | None:
    """The per-1M-token rates of ``plan``; ``None`` when it has no input or output token price."""
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
