"""The Collector's price file: what ``otel-costs prices export FILE`` writes.

This module owns the translation of the data a :class:`~otel_costs.pricing.PriceBook` prices
from into the price file the Go ``costrollup`` processor reads (format:
``collector/costrollupprocessor/README.md``, "Price file"), so that a span priced in the
Collector gets the same figures as in Python:

- ``providers``: genai-prices' current data snapshot (the one the book prices from, including a
  ``set_custom_snapshot`` or an ``UpdatePrices`` refresh), read through genai-prices' public types,
  in genai-prices' order; only the price keys a span can count are written (the others, audio,
  images, web searches, ..., have a count of 0 on spans, so no figure changes);
- ``overrides``: the book's validated overrides (dict and file), with their provider restriction
  as the normalized provider id, tiers and dated ``changes``;
- ``provider_aliases``: ``otel_costs.pricing._providers.PROVIDER_ALIASES``.

Nothing here prices anything; ``tests/test_prices_export.py`` checks the round trip through a
real Collector.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import tempfile
from collections.abc import Sequence
from decimal import Decimal
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from otel_costs.pricing._providers import PROVIDER_ALIASES

if TYPE_CHECKING:
    from genai_prices.types import ConditionalPrice, ModelPrice, StartDateConstraint, TimeOfDateConstraint

    from otel_costs.pricing._book import PriceBook

__all__ = ("FORMAT", "PRICE_KEYS", "VERSION", "export_prices", "price_document")

#: The price file's ``format`` and ``version`` keys.
FORMAT: Final = "otel-costs-prices"
VERSION: Final = 1

#: genai-prices price keys the format carries, in the format's order.
PRICE_KEYS: Final = (
    "input_mtok",
    "cache_read_mtok",
    "cache_write_mtok",
    "output_mtok",
    "output_reasoning_mtok",
    "requests_kcount",
)


def export_prices(book: PriceBook, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Write ``book``'s prices to ``path`` as the ``costrollup`` processor's price file.

    The file is written atomically (a temporary file in the same directory, then renamed), so a
    Collector never reads half a file; it keeps the mode of the file it replaces, else it is
    readable by all (``0644``: a Collector often runs as another user). Returns the document written.

    >>> from otel_costs.pricing import PriceBook, export_prices
    >>> doc = export_prices(PriceBook({"acme": {"input": 1, "output": 2}}), "prices.json")  # doctest: +SKIP
    """
    document = price_document(book)
    target = Path(os.fspath(path))
    text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    directory = target.parent if str(target.parent) else Path(".")
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return document


def price_document(
    book: PriceBook, *, generated_by: str | None = None, generated_at: dt.datetime | None = None
) -> dict[str, Any]:
    """``book``'s prices as the price file's JSON document (a dict ready for ``json.dumps``).

    ``generated_by`` / ``generated_at`` default to the package versions and the current time;
    pass ``generated_at`` (or ``generated_by`` alone, which then leaves the time out) for a
    reproducible file.
    """
    document: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    when: dt.datetime | None
    if generated_by is None:
        document["generated_by"] = _versions()
        when = generated_at or dt.datetime.now(dt.UTC)
    else:
        document["generated_by"] = generated_by
        when = generated_at
    if when is not None:
        document["generated_at"] = when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    document["provider_aliases"] = dict(sorted(PROVIDER_ALIASES.items()))
    document["overrides"] = [
        {
            "model": override.entry.model,
            "provider": override.provider,
            "prices": prices(override.entry.prices),
        }
        for override in book._overrides.values()
    ]
    document["providers"] = _providers(book) if book._use_genai_prices else []
    return document


def _versions() -> str:
    def of(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "unknown"

    return f"otel-costs {of('otel-costs')}, genai-prices {of('genai-prices')}"


def _providers(book: PriceBook) -> list[dict[str, Any]]:
    from otel_costs.pricing._book import _snapshot

    del book  # the snapshot is process-wide (genai-prices' own), the same one the book reads
    out: list[dict[str, Any]] = []
    for p in _snapshot().providers:
        provider: dict[str, Any] = {"id": p.id, "name": p.name, "api_pattern": p.api_pattern}
        if p.provider_match is not None:
            provider["provider_match"] = match(p.provider_match)
        if p.model_match is not None:
            provider["model_match"] = match(p.model_match)
        if p.fallback_model_providers:
            provider["fallback_model_providers"] = list(p.fallback_model_providers)
        provider["models"] = [
            {"id": m.id, "match": match(m.match), "prices": prices(m.prices)} for m in p.models
        ]
        out.append(provider)
    return out


# --- the pieces ------------------------------------------------------------------------------------


def decimal_text(value: Decimal) -> str:
    """A rate as the format's decimal string: plain digits, never an exponent or a sign."""
    if not value.is_finite() or value < 0:
        raise ValueError(f"a price must be a finite decimal >= 0, got {value}")
    return format(value, "f")


def rate(value: object) -> Any:
    """A genai-prices price (``Decimal`` or ``TieredPrices``) as a RATE."""
    from genai_prices.types import TieredPrices

    if isinstance(value, TieredPrices):
        return {
            "base": decimal_text(value.base),
            "tiers": [{"start": tier.start, "price": decimal_text(tier.price)} for tier in value.tiers],
        }
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return decimal_text(Decimal(str(value)))
    raise TypeError(f"unexpected price {value!r}")


def price_set(model_price: ModelPrice) -> dict[str, Any]:
    """A ``ModelPrice`` as a PRICE_SET (the keys spans can count)."""
    return {
        key: rate(getattr(model_price, key))
        for key in PRICE_KEYS
        if getattr(model_price, key, None) is not None
    }


def constraint(value: StartDateConstraint | TimeOfDateConstraint | None) -> Any:
    """A genai-prices constraint as a CONSTRAINT (time of day in UTC)."""
    from genai_prices.types import StartDateConstraint

    if value is None:
        return None
    if isinstance(value, StartDateConstraint):
        return {"start_date": value.start_date.isoformat()}

    def hms(t: dt.time) -> str:
        if t.tzinfo is not None:
            t = dt.datetime.combine(dt.date(1970, 1, 1), t).astimezone(dt.UTC).time()
        return t.strftime("%H:%M:%S")

    return {"start_time": hms(value.start_time), "end_time": hms(value.end_time)}


def prices(value: ModelPrice | Sequence[ConditionalPrice]) -> Any:
    """A model's prices as PRICES: one PRICE_SET, or the conditional list in genai-prices' order."""
    from genai_prices.types import ModelPrice

    if isinstance(value, ModelPrice):
        return price_set(value)
    return [{"constraint": constraint(c.constraint), "prices": price_set(c.prices)} for c in value]


def match(value: object) -> Any:
    """A genai-prices match clause as a MATCH."""
    from genai_prices.types import (
        ClauseAnd,
        ClauseContains,
        ClauseEndsWith,
        ClauseEquals,
        ClauseOr,
        ClauseRegex,
        ClauseStartsWith,
    )

    if isinstance(value, ClauseEquals):
        return {"equals": value.equals}
    if isinstance(value, ClauseStartsWith):
        return {"starts_with": value.starts_with}
    if isinstance(value, ClauseEndsWith):
        return {"ends_with": value.ends_with}
    if isinstance(value, ClauseContains):
        return {"contains": value.contains}
    if isinstance(value, ClauseRegex):
        return {"regex": value.regex}
    if isinstance(value, ClauseOr):
        return {"or": [match(c) for c in value.or_]}
    if isinstance(value, ClauseAnd):
        return {"and": [match(c) for c in value.and_]}
    raise TypeError(f"unknown genai-prices match clause {type(value).__name__}")
