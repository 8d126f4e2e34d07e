"""The ledger contract, run on the in-memory, SQLite and Redis ledgers alike.

Internal: the contract's arguments and results (``Counter``, ``CounterUsage``, ``has_room``) are
private to ``otel_costs.budgets.ledger._base``; the manager builds them, and a ledger must keep them.

The counter types (``ledger._base``, internal) are the contract every ledger implements, so the
contract tests use them.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

from otel_costs.budgets.ledger import Ledger, LedgerUnavailable, MemoryLedger, RedisLedger, SqliteLedger
from otel_costs.budgets.ledger._base import Counter, CounterUsage, has_room

if TYPE_CHECKING:
    from redis_server import RedisServer

# The real redis-server fixtures (imported by pytest, so their asserts are rewritten).
pytest_plugins = ["redis_server"]

NOW = 1_700_000_000.0
FAR = NOW + 86400 * 30

#: Opens a ledger; called twice in one test, it returns two handles on the same store.
LedgerFactory = Callable[[], Ledger]


def counter(
    key: str = "b|day@UTC|team.id=a", limit: int | None = 100, buckets: tuple[str, ...] = ("d1",)
) -> Counter:
    """A counter writing to its last read bucket."""
    return Counter(key, buckets, buckets[-1], FAR, limit)


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.slow)])
def open_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerFactory]:
    """A factory of ledgers sharing one store (memory: the same instance)."""
    opened: list[Ledger] = []
    if request.param == "memory":
        shared = MemoryLedger()

        def make() -> Ledger:
            return shared

    elif request.param == "sqlite":

        def make() -> Ledger:
            ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
            opened.append(ledger)
            return ledger

    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        prefix = f"t{uuid.uuid4().hex}"

        def make() -> Ledger:
            ledger = RedisLedger(server.url, prefix=prefix)
            opened.append(ledger)
            return ledger

    yield make
    for ledger in opened:
        ledger.close()


def test_has_room_rule() -> None:
    """Usage plus the amount may reach the limit but not pass it, and a spent-out budget admits nothing."""
    assert has_room(60, 30, 10, 100)
    assert not has_room(60, 30, 11, 100)
    assert not has_room(100, 0, 0, 100)
    assert has_room(10**18, 0, 10**18, None)


def test_admits_up_to_the_limit_then_denies_without_reserving(open_ledger: LedgerFactory) -> None:
    """Reservations are admitted while they fit; a denied one reserves nothing."""
    ledger = open_ledger()
    c = counter()
    first = ledger.try_reserve([c], 60, reservation_id="r1", expires_at=FAR, now=NOW)
    assert first.admitted and first.blocked is None and first.usages == (CounterUsage(0, 0),)
    second = ledger.try_reserve([c], 41, reservation_id="r2", expires_at=FAR, now=NOW)
    assert not second.admitted and second.blocked == 0 and second.usages == (CounterUsage(0, 60),)
    third = ledger.try_reserve([c], 40, reservation_id="r3", expires_at=FAR, now=NOW)
    assert third.admitted
    assert ledger.usage([c], now=NOW) == (CounterUsage(0, 100),)
    assert not ledger.try_reserve([c], 0, reservation_id=None, expires_at=FAR, now=NOW).admitted


def test_all_counters_or_none(open_ledger: LedgerFactory) -> None:
    """When one counter has no room nothing is reserved on the others; unlimited counters never block."""
    ledger = open_ledger()
    roomy, tight, unlimited = counter("roomy", 1000), counter("tight", 50), counter("free", None)
    result = ledger.try_reserve([roomy, tight, unlimited], 60, reservation_id="r", expires_at=FAR, now=NOW)
    assert not result.admitted and result.blocked == 1
    assert ledger.usage([roomy, tight, unlimited], now=NOW) == (CounterUsage(0, 0),) * 3
    assert ledger.try_reserve([unlimited], 10**15, reservation_id="big", expires_at=FAR, now=NOW).admitted


def test_commit_is_exactly_once_and_reconciles(open_ledger: LedgerFactory) -> None:
    """A commit adds the actual cost once, releases the reservation; repeating the span key is a no-op."""
    ledger = open_ledger()
    c = counter()
    ledger.try_reserve([c], 60, reservation_id="r1", expires_at=FAR, now=NOW)
    result = ledger.commit("span-1", [c], 45, reservation_id="r1", dedup_until=FAR, now=NOW)
    assert result.applied and result.spent_after == (45,)
    assert ledger.usage([c], now=NOW) == (CounterUsage(45, 0),)
    again = open_ledger().commit("span-1", [c], 45, reservation_id="r1", dedup_until=FAR, now=NOW)
    assert not again.applied and again.spent_after == ()
    assert open_ledger().usage([c], now=NOW) == (CounterUsage(45, 0),)


def test_reservation_from_another_handle_is_released_on_commit(open_ledger: LedgerFactory) -> None:
    """A reservation made through one handle (process) is reconciled by a commit through another."""
    c = counter()
    open_ledger().try_reserve([c], 70, reservation_id="r-other", expires_at=FAR, now=NOW)
    open_ledger().commit("span-x", [c], 20, reservation_id="r-other", dedup_until=FAR, now=NOW)
    assert open_ledger().usage([c], now=NOW) == (CounterUsage(20, 0),)


def test_reservations_expire(open_ledger: LedgerFactory) -> None:
    """A reservation never reconciled stops counting at its expiry time."""
    ledger = open_ledger()
    c = counter()
    ledger.try_reserve([c], 100, reservation_id="r1", expires_at=NOW + 600, now=NOW)
    assert not ledger.try_reserve([c], 1, reservation_id="r2", expires_at=NOW + 600, now=NOW + 599).admitted
    assert ledger.usage([c], now=NOW + 600) == (CounterUsage(0, 0),)
    assert ledger.try_reserve([c], 100, reservation_id="r3", expires_at=NOW + 1200, now=NOW + 600).admitted


def test_release_drops_a_reservation_and_ignores_unknown_ids(open_ledger: LedgerFactory) -> None:
    """Releasing frees the reserved amount; releasing an unknown or already released id does nothing."""
    ledger = open_ledger()
    c = counter()
    ledger.try_reserve([c], 100, reservation_id="r1", expires_at=FAR, now=NOW)
    ledger.release("r1", now=NOW)
    ledger.release("r1", now=NOW)
    ledger.release("never-made", now=NOW)
    assert ledger.usage([c], now=NOW) == (CounterUsage(0, 0),)


def test_rolling_buckets_are_summed_and_fall_out(open_ledger: LedgerFactory) -> None:
    """Usage is the sum of the read buckets: spend in a bucket no longer read stops counting."""
    ledger = open_ledger()
    positions = [
        Counter("roll", tuple(f"r{i}" for i in range(n - 2, n + 1)), f"r{n}", FAR, 1000) for n in (3, 4, 6)
    ]
    assert ledger.commit(
        "a", [positions[0]], 300, reservation_id=None, dedup_until=FAR, now=NOW
    ).spent_after == (300,)
    assert ledger.commit(
        "b", [positions[1]], 200, reservation_id=None, dedup_until=FAR, now=NOW
    ).spent_after == (500,)
    assert ledger.usage([positions[1]], now=NOW) == (CounterUsage(500, 0),)
    assert ledger.commit(
        "c", [positions[2]], 50, reservation_id=None, dedup_until=FAR, now=NOW
    ).spent_after == (250,)
    assert ledger.usage([positions[2]], now=NOW) == (CounterUsage(250, 0),)


def test_a_late_commit_into_an_old_bucket_keeps_the_newer_ones(open_ledger: LedgerFactory) -> None:
    """Spend replayed into yesterday's bucket does not disturb today's."""
    ledger = open_ledger()
    today, yesterday = counter(buckets=("d2024-03-15",)), counter(buckets=("d2024-03-14",))
    ledger.commit("today", [today], 30, reservation_id=None, dedup_until=FAR, now=NOW)
    ledger.commit("late", [yesterday], 70, reservation_id=None, dedup_until=FAR, now=NOW)
    assert ledger.usage([today, yesterday], now=NOW) == (CounterUsage(30, 0), CounterUsage(70, 0))


def test_large_amounts_stay_exact(open_ledger: LedgerFactory) -> None:
    """Amounts of millions of dollars add up to the nano-USD."""
    ledger = open_ledger()
    c = counter(limit=None)
    ledger.commit("a", [c], 4_000_000_000_000_001, reservation_id=None, dedup_until=FAR, now=NOW)
    result = ledger.commit("b", [c], 999_999_999, reservation_id=None, dedup_until=FAR, now=NOW)
    assert result.spent_after == (4_000_001_000_000_000,)


def test_markers_are_claimed_once(open_ledger: LedgerFactory) -> None:
    """The first claim of a marker wins, in every handle; other markers are independent."""
    assert open_ledger().claim_marker("budget|d1|0.75", until=FAR, now=NOW)
    assert not open_ledger().claim_marker("budget|d1|0.75", until=FAR, now=NOW)
    assert open_ledger().claim_marker("budget|d1|0.9", until=FAR, now=NOW)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_markers_expire_by_the_ledger_clock(kind: str, tmp_path: Path) -> None:
    """A marker can be claimed again after its expiry (Redis expires by its own clock, relatively)."""
    ledger: Ledger = MemoryLedger() if kind == "memory" else SqliteLedger(tmp_path / "l.sqlite3")
    assert ledger.claim_marker("m", until=NOW + 10, now=NOW)
    assert not ledger.claim_marker("m", until=NOW + 20, now=NOW + 9)
    assert ledger.claim_marker("m", until=NOW + 20, now=NOW + 10)


def test_concurrent_threads_never_overshoot(open_ledger: LedgerFactory) -> None:
    """Threads racing for the last of the budget are admitted at most up to the limit."""
    ledger = open_ledger()
    c = counter(limit=1000)
    admitted: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        start.wait()
        for i in range(25):
            if ledger.try_reserve([c], 7, reservation_id=f"{n}-{i}", expires_at=FAR, now=NOW).admitted:
                with lock:
                    admitted.append(7)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 1000 // 7 * 7
    assert ledger.usage([c], now=NOW) == (CounterUsage(0, sum(admitted)),)


def test_sqlite_ledger_survives_a_restart(tmp_path: Path) -> None:
    """Spend and span keys committed to a SQLite file are there after reopening it."""
    path = tmp_path / "ledger.sqlite3"
    first = SqliteLedger(path)
    first.commit("span", [counter()], 42, reservation_id=None, dedup_until=FAR, now=NOW)
    first.close()
    reopened = SqliteLedger(path)
    assert reopened.usage([counter()], now=NOW) == (CounterUsage(42, 0),)
    assert not reopened.commit("span", [counter()], 42, reservation_id=None, dedup_until=FAR, now=NOW).applied


def test_sqlite_ledger_unreachable_is_reported(tmp_path: Path) -> None:
    """A SQLite file held locked by another process past the busy timeout raises LedgerUnavailable."""
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path, busy_timeout_s=0.05)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(LedgerUnavailable, match="locked"):
            ledger.try_reserve([counter()], 1, reservation_id="r", expires_at=FAR, now=NOW)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert ledger.try_reserve([counter()], 1, reservation_id="r", expires_at=FAR, now=NOW).admitted


def test_sqlite_ledger_bad_path_is_reported(tmp_path: Path) -> None:
    """A SQLite path that cannot be opened fails at construction with LedgerUnavailable naming it."""
    with pytest.raises(LedgerUnavailable, match="cannot open SQLite ledger"):
        SqliteLedger(tmp_path / "missing-dir" / "ledger.sqlite3")


@pytest.mark.slow
def test_redis_ledger_unreachable_is_reported_fast(redis_server_factory: Callable[[], RedisServer]) -> None:
    """A stopped Redis raises LedgerUnavailable at once (no client retries) instead of hanging."""
    server = redis_server_factory()
    ledger = RedisLedger(server.url, timeout_s=0.5)
    assert ledger.try_reserve([counter()], 1, reservation_id="r", expires_at=FAR, now=NOW).admitted
    server.stop()
    for call in (
        lambda: ledger.try_reserve([counter()], 1, reservation_id="r2", expires_at=FAR, now=NOW),
        lambda: ledger.commit("s", [counter()], 1, reservation_id=None, dedup_until=FAR, now=NOW),
        lambda: ledger.claim_marker("m", until=FAR, now=NOW),
        lambda: ledger.release("r", now=NOW),
    ):
        with pytest.raises(LedgerUnavailable, match="Redis ledger failed"):
            call()


class CountingRedis(redis.Redis):
    """A real client that records the name of every command it sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[str] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent.append(str(args[0]).upper())
        return super().execute_command(*args, **options)


@pytest.mark.slow
def test_redis_check_and_reserve_is_one_script_call(redis_server: RedisServer) -> None:
    """Check-and-reserve and commit each send one EVALSHA and nothing else (one round trip, atomic)."""
    client = CountingRedis(host="127.0.0.1", port=redis_server.port)
    ledger = RedisLedger(client=client, prefix=f"t{uuid.uuid4().hex}")
    ledger.try_reserve([counter()], 1, reservation_id="warm", expires_at=FAR, now=NOW)  # loads the script
    ledger.commit("warm", [counter()], 1, reservation_id="warm", dedup_until=FAR, now=NOW)
    client.sent.clear()
    ledger.try_reserve([counter(), counter("other")], 1, reservation_id="r", expires_at=FAR, now=NOW)
    assert client.sent == ["EVALSHA"]
    ledger.commit("s", [counter(), counter("other")], 1, reservation_id="r", dedup_until=FAR, now=NOW)
    assert client.sent == ["EVALSHA", "EVALSHA"]
    client.close()
