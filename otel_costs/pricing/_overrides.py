"""The user's price overrides: a dict, a TOML or YAML file, validated into compiled entries.

Overrides price private or fine-tuned models and win over genai-prices (``docs/pricing.md``
has the schema). Every problem raises :class:`PriceConfigError` at ``PriceBook`` construction,
naming the place (``overrides['m'].tiers[1].above``, or the file) and the fix.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Final

from otel_costs._config_checks import ConfigError, amount_text, load_yaml
from otel_costs.conventions import PRICE_SOURCE_OVERRIDE
from otel_costs.pricing._plans import Entry

if TYPE_CHECKING:
    from genai_prices.types import ConditionalPrice, ModelPrice, TieredPrices

__all__ = ("Override", "PriceConfigError", "parse_overrides")


#: The highest override rate accepted, USD per 1M tokens. A bound on sanity rather than on
#: plausibility (``1e300`` and overflowing figures are refused; priced figures up to 2**63 USD per
#: 1M tokens stay exact, as tests/test_pricing.py checks).
MAX_RATE_USD: Final = Decimal(10**20)


class PriceConfigError(ConfigError):
    """The price overrides (dict or file) are malformed; the message says where and how to fix it."""


def parse_overrides(
    overrides: Mapping[str, Mapping[str, object]] | None,
    overrides_file: str | os.PathLike[str] | None,
    normalize: Callable[[str], str],
) -> dict[str, Override]:
    """The validated overrides by lower-case model name; the dict wins over the file for a model.

    ``normalize`` turns an override's ``provider`` into a provider id.
    """
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
            raw[model.lower()] = (f"overrides[{model!r}]", model, spec)
    return {key: _parse_override(where, model, spec, normalize) for key, (where, model, spec) in raw.items()}


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
class Override:
    """One validated override: the model's plans and its optional provider restriction."""

    provider: str | None
    """Normalized provider id the override is restricted to, or ``None`` for any provider."""
    entry: Entry
    """The compiled prices."""


def _load_overrides_file(path: Path) -> Mapping[str, Mapping[str, object]]:
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise PriceConfigError(f"overrides_file {str(path)!r}: use a .toml, .yaml or .yml file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PriceConfigError(f"overrides_file {str(path)!r} cannot be read: {exc.strerror or exc}") from exc
    import tomllib

    where = f"overrides_file {str(path)!r}"
    try:
        # A model given twice in YAML is an error (plain yaml.safe_load keeps the last one).
        loaded: object = (
            tomllib.loads(data.decode("utf-8"))
            if suffix == ".toml"
            else load_yaml(data, where, PriceConfigError)
        )
    except PriceConfigError:
        raise
    except (tomllib.TOMLDecodeError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        huge = _huge_number_line(data)
        if huge is not None:
            # The parser refuses a number of thousands of digits before any key is seen: name
            # the line ourselves, the parser's message only names Python's digit limit.
            line, key = huge
            raise PriceConfigError(
                f"{where}, line {line} ({key!r}): a number of thousands of digits is no price; "
                "write a decimal of at most 64 characters, e.g. input = 2.5"
            ) from exc
        raise PriceConfigError(f"{where} is not valid {suffix[1:].upper()}: {exc}") from exc
    if loaded is None:
        return {}
    return _check_models(loaded, f"overrides_file {str(path)!r}")


def _huge_number_line(data: bytes) -> tuple[int, str] | None:
    """The line number and key of the first value with a run of over 4,000 digits, if any."""
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        key, sep, value = line.partition("=") if "=" in line else line.partition(":")
        if sep and sum(c.isdigit() for c in value) > 4000:
            return number, key.strip()
    return None


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
) -> Override:
    from genai_prices.types import ConditionalPrice, StartDateConstraint

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
    entry = Entry(
        normalize(provider) if isinstance(provider, str) else None, model, PRICE_SOURCE_OVERRIDE, prices
    )
    for plan in (entry.default, *(plan for _, plan in entry.choices)):
        if plan.error is not None:
            raise PriceConfigError(f"{where}: {plan.error}")
    return Override(entry.provider, entry)


def _parse_block(where: str, block: Mapping[str, object]) -> ModelPrice:
    from genai_prices.types import ModelPrice, Tier, TieredPrices

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
    """USD per 1M tokens as an exact Decimal (floats via ``str``, so 3.0 is exactly 3): finite,
    in ``[0, MAX_RATE_USD]``, its text at most ``MAX_AMOUNT_CHARS`` characters."""
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError
            rate = Decimal(str(value))
        elif isinstance(value, int | Decimal | str):
            # Bounded before parsing: a 5,000-digit price is no price.
            rate = Decimal(amount_text(value, where, example="2.5", unit=_UNIT, error=PriceConfigError))
        else:
            raise TypeError
    except PriceConfigError:
        raise
    except (TypeError, ValueError, InvalidOperation):
        raise PriceConfigError(
            f"{where}: expected USD per 1M tokens as a number (e.g. 2.5), got {value!r}"
        ) from None
    if not rate.is_finite() or rate < 0:
        raise PriceConfigError(f"{where}: expected a finite price >= 0, got {value!r}")
    if rate > MAX_RATE_USD:
        raise PriceConfigError(
            f"{where}: {value!r} USD per 1M tokens is absurdly large (above {MAX_RATE_USD:.0e}); "
            "write the price per 1M tokens, e.g. 2.5"
        )
    return rate


_UNIT: Final = "USD per 1M tokens"


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
