"""Report periods and time buckets: ``--since/--until/--month`` parsing and day/week/month labels.

Every period is explicit about its time zone (``--tz``, default UTC): a day bucket is a local
calendar day there, and ``--month 2026-11`` is local midnight of the 1st to local midnight of
the 1st of the next month.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

BUCKETS: Final = ("day", "week", "month")
_NS: Final = 1_000_000_000
#: Every UTC offset in use is a multiple of 15 minutes, so a bucket label is constant within one.
_CHUNK_NS: Final = 15 * 60 * _NS
_RELATIVE = re.compile(r"^(\d+)([mhdw])$")
_UNITS: Final = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class PeriodError(ValueError):
    """A ``--since/--until/--month/--tz`` value that cannot be read."""


def zone(name: str) -> tzinfo:
    """The time zone called ``name`` (IANA, e.g. ``Europe/Paris``; ``UTC``)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PeriodError(
            f"unknown time zone {name!r} (use an IANA name such as UTC or Europe/Paris)"
        ) from exc


def parse_instant(text: str, tz: tzinfo, *, now: datetime | None = None) -> int:
    """``2026-11-01``, ``2026-11-01T08:00``, ``2026-11-01T08:00+01:00`` or ``7d``/``24h`` ago, as ns."""
    match = _RELATIVE.match(text.strip())
    if match:
        moment = (now or datetime.now(tz)) - timedelta(seconds=int(match[1]) * _UNITS[match[2]])
        return to_ns(moment)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise PeriodError(f"cannot read time {text!r}: use 2026-11-01, 2026-11-01T08:00 or 7d") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return to_ns(moment)


def to_ns(moment: datetime) -> int:
    """Ns since the epoch of an aware datetime, exactly."""
    delta = moment - datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))
    return (delta.days * 86400 + delta.seconds) * _NS + delta.microseconds * 1000


def month_period(month: str, tz: tzinfo) -> tuple[int, int]:
    """``[start, end)`` in ns of the calendar month ``YYYY-MM`` in ``tz``."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", month.strip())
    if not match or not 1 <= int(match[2]) <= 12:
        raise PeriodError(f"cannot read month {month!r}: use YYYY-MM, e.g. 2026-11")
    year, number = int(match[1]), int(match[2])
    start = datetime(year, number, 1, tzinfo=tz)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=tz)
    return to_ns(start), to_ns(end)


def iso(ns: int, tz: tzinfo) -> str:
    """An instant in ``tz`` as ISO 8601 with its offset."""
    return datetime.fromtimestamp(ns / _NS, tz).isoformat(timespec="seconds")


@dataclass
class Bucketer:
    """Labels instants with their day (``2026-11-03``), ISO week (``2026-W45``) or month (``2026-11``)."""

    size: str
    tz: tzinfo

    def __post_init__(self) -> None:
        if self.size not in BUCKETS:
            raise PeriodError(f"bucket must be one of {', '.join(BUCKETS)}, got {self.size!r}")
        self._cache: dict[int, str] = {}

    def label(self, ns: int) -> str:
        """The bucket of instant ``ns``."""
        chunk = ns // _CHUNK_NS
        found = self._cache.get(chunk)
        if found is None:
            day = datetime.fromtimestamp(chunk * _CHUNK_NS / _NS, self.tz).date()
            found = self._cache[chunk] = _label(day, self.size)
        return found


def _label(day: date, size: str) -> str:
    if size == "day":
        return day.isoformat()
    if size == "month":
        return f"{day.year:04d}-{day.month:02d}"
    year, week, _ = day.isocalendar()
    return f"{year:04d}-W{week:02d}"
