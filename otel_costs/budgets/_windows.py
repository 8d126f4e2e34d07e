"""Budget windows: calendar days and months in a time zone, and rolling windows.

A window turns a moment (epoch seconds from an injectable clock) into ledger *buckets*:
the bucket that spend is written to now, and the buckets whose sum is the usage now.
Calendar windows have one bucket per day or month; a rolling window of ``W`` seconds is
cut into ``W / granularity`` buckets (60 by default) and sums the last ones, so a 1 h
window counts the spend of the last 59 to 60 minutes. Buckets make the ledger's work a
handful of integer sums whatever the call rate, which is what keeps check-and-reserve
one Redis round trip.
"""

from __future__ import annotations

import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: A clock returns the current time as epoch seconds (``time.time`` by default).
Clock = Callable[[], float]

#: Most buckets a rolling window may have: bounds the per-check work.
MAX_ROLLING_BUCKETS: Final = 1440

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class WindowError(ValueError):
    """A window specification that cannot be used (bad duration, unknown time zone)."""


@dataclass(frozen=True, slots=True)
class WindowPosition:
    """Where a moment falls in a window: which buckets to read and which to write."""

    read_buckets: tuple[str, ...]
    """Buckets whose sum is the window's usage at this moment."""
    write_bucket: str
    """Bucket that spend made at this moment is added to."""
    start: float
    """Epoch seconds when the counted span of time starts."""
    valid_from: float
    """Epoch seconds when this position became valid (the write bucket started)."""
    end: float
    """Epoch seconds when this position stops being valid (the next bucket starts)."""
    resets_at: float | None
    """Epoch seconds when a calendar window starts afresh; ``None`` for rolling windows."""
    keep_for_s: float
    """Seconds (from ``end``) the write bucket must be kept after the window moves on."""


def parse_duration(spec: str | int | float) -> float:
    """Seconds in ``"90s"``, ``"10m"``, ``"1h"``, ``"7d"`` or a plain number of seconds."""
    if isinstance(spec, bool):
        raise WindowError(f"expected a duration like '10m' or a number of seconds, got {spec!r}")
    if isinstance(spec, int | float):
        if spec != spec or spec < 0 or spec == float("inf"):
            raise WindowError(f"a duration must be a finite number of seconds >= 0, got {spec!r}")
        return float(spec)
    match = _DURATION.match(spec)
    if match is None:
        raise WindowError(f"cannot read duration {spec!r}: write a whole number and s, m, h or d, e.g. '10m'")
    return float(int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def load_zone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` for an IANA name, or a ``WindowError`` saying which name is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise WindowError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from exc


class Window(ABC):
    """A budget window; thread-safe, and caches the current position between buckets."""

    def __init__(self) -> None:
        self._cache: WindowPosition | None = None
        self._lock = threading.Lock()

    @property
    @abstractmethod
    def id(self) -> str:
        """Stable identifier, part of every ledger key (e.g. ``day@Europe/Berlin``, ``rolling:3600s``)."""

    @property
    @abstractmethod
    def rolling(self) -> bool:
        """Whether spend leaves the window gradually (rolling) rather than at a reset (calendar)."""

    @abstractmethod
    def _compute(self, now: float) -> WindowPosition:
        """The position at ``now``, uncached."""

    def position(self, now: float) -> WindowPosition:
        """The buckets to read and write at ``now`` (epoch seconds)."""
        cached = self._cache
        if cached is not None and cached.valid_from <= now < cached.end:
            return cached
        computed = self._compute(now)
        with self._lock:
            self._cache = computed
        return computed

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r})"


class CalendarWindow(Window):
    """A calendar day or month in a time zone, reset at local midnight (DST-aware).

    Example: ``CalendarWindow("day", "America/New_York")`` has a 25 h day on the first Sunday of November.
    """

    def __init__(self, unit: Literal["day", "month"], timezone: str = "UTC") -> None:
        super().__init__()
        if unit not in ("day", "month"):
            raise WindowError(f"a calendar window is 'day' or 'month', got {unit!r}")
        self.unit: Literal["day", "month"] = unit
        self.timezone = timezone
        self._zone = load_zone(timezone)
        self._id = f"{unit}@{timezone}"

    @property
    def id(self) -> str:
        return self._id

    @property
    def rolling(self) -> bool:
        return False

    def _compute(self, now: float) -> WindowPosition:
        local = datetime.fromtimestamp(now, self._zone)
        if self.unit == "day":
            start_local = datetime(local.year, local.month, local.day, tzinfo=self._zone)
            # Midnight of the next calendar date; adding timedelta(days=1) to an aware datetime
            # would be wall-clock arithmetic too, but going through the date is explicit.
            next_date = start_local.date() + timedelta(days=1)
            end_local = datetime(next_date.year, next_date.month, next_date.day, tzinfo=self._zone)
            bucket = f"d{local:%Y-%m-%d}"
        else:
            start_local = datetime(local.year, local.month, 1, tzinfo=self._zone)
            year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
            end_local = datetime(year, month, 1, tzinfo=self._zone)
            bucket = f"m{local:%Y-%m}"
        start, end = start_local.timestamp(), end_local.timestamp()
        return WindowPosition(
            read_buckets=(bucket,),
            write_bucket=bucket,
            start=start,
            valid_from=start,
            end=end,
            resets_at=end,
            # Keep a finished bucket a day: late spans (and the replay of spend buffered during a
            # ledger outage) may still land in it.
            keep_for_s=86400.0,
        )


class RollingWindow(Window):
    """The last ``seconds`` seconds, counted in buckets of ``granularity_s`` seconds.

    Example: ``RollingWindow(3600)`` counts the spend of the last 59-60 minutes in 60 one-minute buckets.
    """

    def __init__(self, seconds: int, granularity_s: int | None = None) -> None:
        super().__init__()
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 60 or seconds % 60:
            raise WindowError(f"a rolling window is a whole number of minutes (>= 60 s), got {seconds!r} s")
        gran = seconds // 60 if granularity_s is None else granularity_s
        if isinstance(gran, bool) or not isinstance(gran, int) or gran <= 0 or seconds % gran:
            raise WindowError(
                f"the granularity of a {seconds} s window must divide it, got {granularity_s!r}"
            )
        if seconds // gran > MAX_ROLLING_BUCKETS:
            raise WindowError(
                f"a {seconds} s window with {gran} s buckets has {seconds // gran} buckets; "
                f"use a coarser granularity (at most {MAX_ROLLING_BUCKETS} buckets)"
            )
        self.seconds = seconds
        self.granularity_s = gran
        self._n = seconds // gran
        self._id = f"rolling:{seconds}s" if granularity_s is None else f"rolling:{seconds}s/{gran}s"

    @property
    def id(self) -> str:
        return self._id

    @property
    def rolling(self) -> bool:
        return True

    def _compute(self, now: float) -> WindowPosition:
        index = int(now // self.granularity_s)
        first = index - self._n + 1
        return WindowPosition(
            read_buckets=tuple(f"r{i}" for i in range(first, index + 1)),
            write_bucket=f"r{index}",
            start=float(first * self.granularity_s),
            valid_from=float(index * self.granularity_s),
            end=float((index + 1) * self.granularity_s),
            resets_at=None,
            keep_for_s=float(self.seconds),
        )


def parse_window(spec: str, timezone: str = "UTC") -> Window:
    """A window from its name: ``day``, ``month`` (calendar, in ``timezone``) or a rolling ``1h``, ``24h``.

    Example: ``parse_window("month", "Europe/Berlin")``; ``parse_window("30m")``.
    """
    name = spec.strip().lower()
    if name in ("day", "daily"):
        return CalendarWindow("day", timezone)
    if name in ("month", "monthly"):
        return CalendarWindow("month", timezone)
    rolling = name.removeprefix("rolling:")
    try:
        seconds = parse_duration(rolling)
    except WindowError:
        raise WindowError(
            f"unknown window {spec!r}: use 'day', 'month' or a rolling duration such as '1h', '24h', '30m'"
        ) from None
    return RollingWindow(int(seconds))


def system_clock() -> float:
    """The default clock: wall-clock epoch seconds."""
    return time.time()


class ManualClock:
    """A clock that moves only when told: for tests of window boundaries and expiry.

    Example: ``clock = ManualClock(datetime(2024, 3, 31, tzinfo=UTC)); clock.advance(3600)``.
    """

    def __init__(self, start: datetime | float) -> None:
        self._lock = threading.Lock()
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward (or back, with a negative value) by ``seconds``; returns the new time."""
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, moment: datetime | float) -> None:
        """Jump to ``moment`` (an aware datetime or epoch seconds)."""
        with self._lock:
            self._now = moment.timestamp() if isinstance(moment, datetime) else float(moment)
