"""Budget windows: calendar days and months across DST and rollovers, rolling buckets, parsing.

Internal: windows are private (``otel_costs.budgets._windows``); a budget names its window as text
(``day``, ``month``, ``1h``), and these tests pin the bucket arithmetic that text turns into.

Budget windows (``budgets._windows``, internal) are tested directly: calendar edge cases are easier
to hit without a ledger.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from otel_costs.budgets._windows import (
    CalendarWindow,
    RollingWindow,
    WindowError,
    parse_duration,
    parse_window,
)
from otel_costs.testing import ManualClock


def at(zone: str, *args: int) -> float:
    """Epoch seconds of a local wall-clock time in ``zone``."""
    return datetime(*args, tzinfo=ZoneInfo(zone)).timestamp()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("Europe/Berlin", (2024, 3, 31), 23),  # spring forward
        ("Europe/Berlin", (2024, 10, 27), 25),  # fall back
        ("America/New_York", (2024, 3, 10), 23),
        ("America/New_York", (2024, 11, 3), 25),
        ("UTC", (2024, 3, 31), 24),
    ],
)
def test_calendar_day_follows_local_midnight_across_dst(
    zone: str, day: tuple[int, int, int], hours: int
) -> None:
    """A calendar day starts and resets at local midnight, so DST days last 23 or 25 hours."""
    window = CalendarWindow("day", zone)
    noon = at(zone, *day, 12)
    pos = window.position(noon)
    assert pos.start == at(zone, *day, 0)
    assert pos.end - pos.start == hours * 3600
    assert pos.resets_at == pos.end
    assert pos.write_bucket == f"d{day[0]:04d}-{day[1]:02d}-{day[2]:02d}"
    assert pos.read_buckets == (pos.write_bucket,)
    # The last second of the day is still in it; the next moment is the next day's bucket.
    assert window.position(pos.end - 1).write_bucket == pos.write_bucket
    assert window.position(pos.end).write_bucket != pos.write_bucket
    assert window.position(pos.end).start == pos.end


def test_calendar_day_is_local_not_utc() -> None:
    """23:30 UTC on March 30 is already March 31 in Berlin, and in Berlin's bucket for that date."""
    moment = datetime(2024, 3, 30, 23, 30, tzinfo=UTC).timestamp()
    assert CalendarWindow("day", "Europe/Berlin").position(moment).write_bucket == "d2024-03-31"
    assert CalendarWindow("day", "UTC").position(moment).write_bucket == "d2024-03-30"


@pytest.mark.parametrize(
    ("last_second", "old", "new"),
    [
        ((2024, 1, 31, 23, 59, 59), "m2024-01", "m2024-02"),
        ((2024, 2, 29, 23, 59, 59), "m2024-02", "m2024-03"),  # leap year
        ((2024, 12, 31, 23, 59, 59), "m2024-12", "m2025-01"),  # year rollover
    ],
)
def test_month_rolls_over_at_local_midnight(last_second: tuple[int, ...], old: str, new: str) -> None:
    """A month window moves to the next month's bucket at local midnight of its first day."""
    window = CalendarWindow("month", "Europe/Berlin")
    moment = at("Europe/Berlin", *last_second)
    assert window.position(moment).write_bucket == old
    assert window.position(moment + 1).write_bucket == new
    assert window.position(moment).end == moment + 1


def test_month_containing_dst_change_has_its_real_length() -> None:
    """October 2024 in Berlin is 31 days plus the hour gained at the fall-back."""
    pos = CalendarWindow("month", "Europe/Berlin").position(at("Europe/Berlin", 2024, 10, 15))
    assert pos.end - pos.start == 31 * 86400 + 3600


def test_rolling_window_counts_the_last_buckets() -> None:
    """A 1 h window reads 60 one-minute buckets ending with the current one."""
    window = RollingWindow(3600)
    now = 1_700_000_000.0
    pos = window.position(now)
    index = int(now // 60)
    assert len(pos.read_buckets) == 60
    assert pos.write_bucket == f"r{index}" == pos.read_buckets[-1]
    assert pos.read_buckets[0] == f"r{index - 59}"
    assert pos.resets_at is None
    assert window.rolling


def test_rolling_window_spend_expires_after_the_window() -> None:
    """A bucket written now is read for the next 59-60 minutes and not after an hour."""
    window = RollingWindow(3600)
    clock = ManualClock(1_700_000_000.0)
    written = window.position(clock()).write_bucket
    clock.advance(59 * 60)
    assert written in window.position(clock()).read_buckets
    clock.advance(60)
    assert written not in window.position(clock()).read_buckets


def test_position_cache_never_serves_a_moment_outside_it() -> None:
    """Going back in time (a test clock, a clock step) recomputes instead of reusing the cached bucket."""
    window = RollingWindow(3600)
    later = window.position(1_700_000_000.0)
    earlier = window.position(1_700_000_000.0 - 120)
    assert earlier.write_bucket != later.write_bucket
    day = CalendarWindow("day", "UTC")
    assert day.position(86400 * 10).write_bucket == "d1970-01-11"
    assert day.position(86400 * 9).write_bucket == "d1970-01-10"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("day", ("day@Europe/Berlin", False)),
        ("monthly", ("month@Europe/Berlin", False)),
        ("1h", ("rolling:3600s", True)),
        ("24h", ("rolling:86400s", True)),
        ("rolling:30m", ("rolling:1800s", True)),
    ],
)
def test_parse_window(spec: str, expected: tuple[str, bool]) -> None:
    """Window names map to calendar windows in the given zone or to rolling windows."""
    window = parse_window(spec, "Europe/Berlin")
    assert (window.id, window.rolling) == expected


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: parse_window("week"), "unknown window 'week'"),
        (lambda: parse_window("day", "Europe/Berln"), "unknown time zone 'Europe/Berln'"),
        (lambda: RollingWindow(90), "whole number of minutes"),
        (lambda: RollingWindow(3600, 7), "must divide it"),
        (lambda: RollingWindow(86400 * 30, 60), "coarser granularity"),
        (lambda: parse_duration("10 parsecs"), "cannot read duration"),
        (lambda: parse_duration(-1), "finite number of seconds"),
    ],
)
def test_bad_window_specs_say_what_to_fix(make: object, message: str) -> None:
    """Invalid windows raise WindowError naming the problem."""
    with pytest.raises(WindowError, match=message):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("spec", "seconds"), [("90s", 90.0), ("10m", 600.0), ("2h", 7200.0), ("7d", 604800.0), (5, 5.0)]
)
def test_parse_duration(spec: str | int, seconds: float) -> None:
    """Durations are whole numbers with s/m/h/d, or plain seconds."""
    assert parse_duration(spec) == seconds


def test_manual_clock_moves_only_when_told() -> None:
    """ManualClock returns the set time, advances and jumps on request."""
    clock = ManualClock(datetime(2024, 1, 1, tzinfo=UTC))
    start = clock()
    assert clock() == start
    assert clock.advance(10) == start + 10
    clock.set(datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=1))
    assert clock() == start + 86400
