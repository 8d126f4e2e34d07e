"""Budget ledgers: where spend and in-flight reservations are counted, in integer nano-USD.

Three implementations share one contract (``tests/test_ledger.py`` runs the same tests on each):

* ``MemoryLedger`` — one process, the default; a lock and dicts.
* ``SqliteLedger`` — a file on one host: survives restarts and is shared by the processes on
  the host; every operation is one ``BEGIN IMMEDIATE`` transaction, so check-and-reserve and
  commit are atomic across processes.
* ``RedisLedger`` — shared by hosts: check-and-reserve and commit are each ONE Lua script
  (``EVALSHA``), i.e. one atomic server-side step and one round trip.

The contract, in words. A *counter* is one budget for one subject (e.g. team ``a``'s daily
budget); its *usage* is the spend in its read buckets plus its unexpired reservations.
``try_reserve`` admits an amount only if every limited counter has room for it (usage + amount
<= limit, and usage < limit), and then reserves it on every counter, atomically. ``commit``
records a span's cost exactly once per span key (a second commit of the key is a no-op, in any
process sharing the ledger), releasing the span's reservation. Reservations expire if never
committed or released. ``claim_marker`` sets a marker once (alert dedup).
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import redis

logger = logging.getLogger(__name__)

#: How often (seconds of ledger clock) the memory and SQLite ledgers drop finished buckets and markers.
_GC_INTERVAL_S: Final = 60.0


class LedgerUnavailable(Exception):
    """The ledger could not be reached or failed; the budget manager applies its fail policy."""


@dataclass(frozen=True, slots=True)
class Counter:
    """One budget counter at one moment: what to read, what to write, and its limit."""

    key: str
    """Counter identity: budget name, window id and subject (e.g. ``team-daily|day@UTC|team.id=a``)."""
    read_buckets: tuple[str, ...]
    """Buckets whose sum is the spent amount now."""
    write_bucket: str
    """Bucket that spend made now is added to."""
    keep_until: float
    """Epoch seconds after which the write bucket may be forgotten."""
    limit_nanos: int | None
    """Deny above this usage, nano-USD; ``None`` for a budget that never denies."""


@dataclass(frozen=True, slots=True)
class CounterUsage:
    """Usage of one counter, nano-USD."""

    spent_nanos: int
    """Recorded spend in the window."""
    reserved_nanos: int
    """Unexpired reservations of calls in flight."""


@dataclass(frozen=True, slots=True)
class ReserveResult:
    """Outcome of ``try_reserve``."""

    admitted: bool
    """Whether every limited counter had room (and, with a reservation id, the amount is now reserved)."""
    usages: tuple[CounterUsage, ...]
    """Usage of each counter before this reservation, in the order given."""
    blocked: int | None
    """Index of the first counter without room; ``None`` when admitted."""


@dataclass(frozen=True, slots=True)
class CommitResult:
    """Outcome of ``commit``."""

    applied: bool
    """False when the span key had already been committed: nothing was added."""
    spent_after: tuple[int, ...]
    """Spent nano-USD of each counter right after this commit (empty when not applied)."""


def has_room(spent: int, reserved: int, amount: int, limit: int | None) -> bool:
    """The admission rule: usage + amount <= limit, and a spent-out budget admits nothing, not even $0."""
    if limit is None:
        return True
    used = spent + reserved
    return used + amount <= limit and used < limit


class Ledger(ABC):
    """Where spend and reservations are counted. Thread-safe; ``now`` is epoch seconds (caller's clock)."""

    @abstractmethod
    def try_reserve(
        self,
        counters: Sequence[Counter],
        amount_nanos: int,
        *,
        reservation_id: str | None,
        expires_at: float,
        now: float,
    ) -> ReserveResult:
        """Atomically read every counter's usage and, if all have room, reserve ``amount_nanos`` on each.

        With ``reservation_id=None`` nothing is reserved (a pure check).
        """

    @abstractmethod
    def commit(
        self,
        span_key: str,
        counters: Sequence[Counter],
        amount_nanos: int,
        *,
        reservation_id: str | None,
        dedup_until: float,
        now: float,
    ) -> CommitResult:
        """Release ``reservation_id`` (if any) and, unless ``span_key`` was committed before, add the amount.

        The span key is remembered until ``dedup_until``.
        """

    @abstractmethod
    def release(self, reservation_id: str, *, now: float) -> None:
        """Drop a reservation without recording spend (the call was not made). Unknown ids are ignored."""

    @abstractmethod
    def usage(self, counters: Sequence[Counter], *, now: float) -> tuple[CounterUsage, ...]:
        """Usage of each counter now."""

    @abstractmethod
    def claim_marker(self, key: str, *, until: float, now: float) -> bool:
        """Set ``key`` until ``until`` if it is not set; True for the one caller that set it."""

    def close(self) -> None:  # noqa: B027 - optional hook, most ledgers hold nothing to close
        """Release connections; the ledger must not be used afterwards."""


# --- in-memory ---------------------------------------------------------------------------


class MemoryLedger(Ledger):
    """A ledger in this process's memory: the default, and the fastest (a lock and a few dict lookups).

    Example: ``BudgetManager(budgets, ledger=MemoryLedger())``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spent: dict[str, dict[str, int]] = {}
        self._bucket_until: dict[tuple[str, str], float] = {}
        self._reserved: dict[str, int] = {}
        self._reservations: dict[str, tuple[float, tuple[tuple[str, int], ...]]] = {}
        self._expiry_heap: list[tuple[float, str]] = []
        self._markers: dict[str, float] = {}
        self._next_gc = 0.0

    def _expire_reservations(self, now: float) -> None:
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            expires_at, rid = heapq.heappop(heap)
            entry = self._reservations.get(rid)
            if entry is not None and entry[0] == expires_at:
                self._drop_reservation(rid)

    def _drop_reservation(self, rid: str) -> None:
        entry = self._reservations.pop(rid, None)
        if entry is None:
            return
        for key, amount in entry[1]:
            self._reserved[key] -= amount

    def _spent_of(self, counter: Counter) -> int:
        buckets = self._spent.get(counter.key)
        if not buckets:
            return 0
        return sum(buckets.get(b, 0) for b in counter.read_buckets)

    def _gc(self, now: float) -> None:
        self._next_gc = now + _GC_INTERVAL_S
        for key_bucket in [kb for kb, until in self._bucket_until.items() if until < now]:
            del self._bucket_until[key_bucket]
            buckets = self._spent.get(key_bucket[0])
            if buckets is not None:
                buckets.pop(key_bucket[1], None)
                if not buckets:
                    del self._spent[key_bucket[0]]
        for marker in [m for m, until in self._markers.items() if until <= now]:
            del self._markers[marker]

    def try_reserve(
        self,
        counters: Sequence[Counter],
        amount_nanos: int,
        *,
        reservation_id: str | None,
        expires_at: float,
        now: float,
    ) -> ReserveResult:
        with self._lock:
            self._expire_reservations(now)
            usages: list[CounterUsage] = []
            blocked: int | None = None
            reserved = self._reserved
            for i, counter in enumerate(counters):
                spent = self._spent_of(counter)
                held = reserved.get(counter.key, 0)
                usages.append(CounterUsage(spent, held))
                if blocked is None and not has_room(spent, held, amount_nanos, counter.limit_nanos):
                    blocked = i
            if blocked is None and reservation_id is not None and amount_nanos > 0:
                for counter in counters:
                    reserved[counter.key] = reserved.get(counter.key, 0) + amount_nanos
                self._reservations[reservation_id] = (
                    expires_at,
                    tuple((c.key, amount_nanos) for c in counters),
                )
                heapq.heappush(self._expiry_heap, (expires_at, reservation_id))
            return ReserveResult(blocked is None, tuple(usages), blocked)

    def commit(
        self,
        span_key: str,
        counters: Sequence[Counter],
        amount_nanos: int,
        *,
        reservation_id: str | None,
        dedup_until: float,
        now: float,
    ) -> CommitResult:
        with self._lock:
            if reservation_id is not None:
                self._drop_reservation(reservation_id)
            marker = "span:" + span_key
            until = self._markers.get(marker)
            if until is not None and until > now:
                return CommitResult(False, ())
            self._markers[marker] = dedup_until
            spent_after: list[int] = []
            for counter in counters:
                buckets = self._spent.setdefault(counter.key, {})
                buckets[counter.write_bucket] = buckets.get(counter.write_bucket, 0) + amount_nanos
                key_bucket = (counter.key, counter.write_bucket)
                self._bucket_until[key_bucket] = max(
                    self._bucket_until.get(key_bucket, 0.0), counter.keep_until
                )
                spent_after.append(self._spent_of(counter))
            if now >= self._next_gc:
                self._gc(now)
            return CommitResult(True, tuple(spent_after))

    def release(self, reservation_id: str, *, now: float) -> None:
        with self._lock:
            self._drop_reservation(reservation_id)

    def usage(self, counters: Sequence[Counter], *, now: float) -> tuple[CounterUsage, ...]:
        with self._lock:
            self._expire_reservations(now)
            return tuple(CounterUsage(self._spent_of(c), self._reserved.get(c.key, 0)) for c in counters)

    def claim_marker(self, key: str, *, until: float, now: float) -> bool:
        with self._lock:
            marker = "alert:" + key
            current = self._markers.get(marker)
            if current is not None and current > now:
                return False
            self._markers[marker] = until
            return True


# --- SQLite --------------------------------------------------------------------------------

_SQLITE_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS spend (
    counter TEXT NOT NULL,
    bucket TEXT NOT NULL,
    nanos INTEGER NOT NULL,
    keep_until REAL NOT NULL,
    PRIMARY KEY (counter, bucket)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spend_keep_until ON spend (keep_until);
CREATE TABLE IF NOT EXISTS reservation (
    id TEXT NOT NULL,
    counter TEXT NOT NULL,
    nanos INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (id, counter)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reservation_counter ON reservation (counter, expires_at);
CREATE INDEX IF NOT EXISTS reservation_expires ON reservation (expires_at);
CREATE TABLE IF NOT EXISTS marker (
    key TEXT PRIMARY KEY,
    until REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS marker_until ON marker (until);
"""


class SqliteLedger(Ledger):
    """A ledger in a SQLite file: survives restarts, shared by the processes of one host.

    Each operation is a single ``BEGIN IMMEDIATE`` transaction (the write lock is taken before
    the read), so two processes can never both admit the last dollar. WAL journaling lets
    readers proceed while a writer commits. Not for network file systems (NFS locking is unreliable):
    use ``RedisLedger`` across hosts.

    Example: ``SqliteLedger("/var/lib/myapp/budgets.sqlite3")``.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 5.0) -> None:
        if busy_timeout_s <= 0:
            raise ValueError(f"busy_timeout_s must be > 0 seconds, got {busy_timeout_s!r}")
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._next_gc = 0.0
        # Create the schema now, so a bad path fails at construction with a clear error.
        with self._lock:
            self._connection()

    def _connection(self) -> sqlite3.Connection:
        # A connection must not cross a fork: reopen in a child process.
        if self._conn is None or self._pid != os.getpid():
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=self._busy_timeout_s,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SQLITE_SCHEMA)
            except sqlite3.Error as exc:
                raise LedgerUnavailable(f"cannot open SQLite ledger {str(self.path)!r}: {exc}") from exc
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _transaction(self, body: Any) -> Any:
        """Run ``body(conn)`` in one BEGIN IMMEDIATE transaction; SQLite errors -> ``LedgerUnavailable``."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = body(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result
            except sqlite3.Error as exc:
                raise LedgerUnavailable(f"SQLite ledger {str(self.path)!r} failed: {exc}") from exc

    @staticmethod
    def _spent(conn: sqlite3.Connection, counter: Counter) -> int:
        marks = ",".join("?" * len(counter.read_buckets))
        row = conn.execute(
            f"SELECT COALESCE(SUM(nanos), 0) FROM spend WHERE counter = ? AND bucket IN ({marks})",
            (counter.key, *counter.read_buckets),
        ).fetchone()
        return int(row[0])

    @staticmethod
    def _reserved(conn: sqlite3.Connection, counter: Counter, now: float) -> int:
        row = conn.execute(
            "SELECT COALESCE(SUM(nanos), 0) FROM reservation WHERE counter = ? AND expires_at > ?",
            (counter.key, now),
        ).fetchone()
        return int(row[0])

    def _gc(self, conn: sqlite3.Connection, now: float) -> None:
        if now < self._next_gc:
            return
        self._next_gc = now + _GC_INTERVAL_S
        conn.execute("DELETE FROM spend WHERE keep_until < ?", (now,))
        conn.execute("DELETE FROM reservation WHERE expires_at <= ?", (now,))
        conn.execute("DELETE FROM marker WHERE until <= ?", (now,))

    def try_reserve(
        self,
        counters: Sequence[Counter],
        amount_nanos: int,
        *,
        reservation_id: str | None,
        expires_at: float,
        now: float,
    ) -> ReserveResult:
        def body(conn: sqlite3.Connection) -> ReserveResult:
            usages: list[CounterUsage] = []
            blocked: int | None = None
            for i, counter in enumerate(counters):
                usage = CounterUsage(self._spent(conn, counter), self._reserved(conn, counter, now))
                usages.append(usage)
                if blocked is None and not has_room(
                    usage.spent_nanos, usage.reserved_nanos, amount_nanos, counter.limit_nanos
                ):
                    blocked = i
            if blocked is None and reservation_id is not None and amount_nanos > 0:
                conn.executemany(
                    "INSERT OR REPLACE INTO reservation (id, counter, nanos, expires_at) VALUES (?, ?, ?, ?)",
                    [(reservation_id, c.key, amount_nanos, expires_at) for c in counters],
                )
            return ReserveResult(blocked is None, tuple(usages), blocked)

        result: ReserveResult = self._transaction(body)
        return result

    def commit(
        self,
        span_key: str,
        counters: Sequence[Counter],
        amount_nanos: int,
        *,
        reservation_id: str | None,
        dedup_until: float,
        now: float,
    ) -> CommitResult:
        def body(conn: sqlite3.Connection) -> CommitResult:
            if reservation_id is not None:
                conn.execute("DELETE FROM reservation WHERE id = ?", (reservation_id,))
            # Insert the span marker, or take over an expired one: exactly one transaction sees a change.
            cursor = conn.execute(
                "INSERT INTO marker (key, until) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET until = excluded.until WHERE marker.until <= ?",
                ("span:" + span_key, dedup_until, now),
            )
            if cursor.rowcount == 0:
                return CommitResult(False, ())
            spent_after: list[int] = []
            for counter in counters:
                conn.execute(
                    "INSERT INTO spend (counter, bucket, nanos, keep_until) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (counter, bucket) DO UPDATE SET nanos = nanos + excluded.nanos, "
                    "keep_until = MAX(keep_until, excluded.keep_until)",
                    (counter.key, counter.write_bucket, amount_nanos, counter.keep_until),
                )
                spent_after.append(self._spent(conn, counter))
            self._gc(conn, now)
            return CommitResult(True, tuple(spent_after))

        result: CommitResult = self._transaction(body)
        return result

    def release(self, reservation_id: str, *, now: float) -> None:
        self._transaction(
            lambda conn: conn.execute("DELETE FROM reservation WHERE id = ?", (reservation_id,))
        )

    def usage(self, counters: Sequence[Counter], *, now: float) -> tuple[CounterUsage, ...]:
        def body(conn: sqlite3.Connection) -> tuple[CounterUsage, ...]:
            return tuple(CounterUsage(self._spent(conn, c), self._reserved(conn, c, now)) for c in counters)

        result: tuple[CounterUsage, ...] = self._transaction(body)
        return result

    def claim_marker(self, key: str, *, until: float, now: float) -> bool:
        def body(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT INTO marker (key, until) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET until = excluded.until WHERE marker.until <= ?",
                ("alert:" + key, until, now),
            )
            return cursor.rowcount == 1

        result: bool = self._transaction(body)
        return result

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


# --- Redis ---------------------------------------------------------------------------------

# Spend of a counter is ONE hash, ``{prefix}:s:<counter>``, with a field per bucket. Scripts get
# the buckets to read as a compact spec, ``r<first>..r<last>`` for a rolling window's consecutive
# buckets or a comma-separated list, so a 60-bucket window costs two arguments, not 60 keys.
# Amounts travel as decimal strings and are added with HINCRBY (exact 64-bit integers); only the
# comparison sums are Lua doubles, exact up to 2**53 nano-USD (about 9 million USD per counter).
# A Lua number must never be passed back to a Redis command: it would format as 1.2e+15.

_LUA_FIELDS: Final = """
local function fields_of(spec)
  local out = {}
  local a, b = string.match(spec, '^r(%-?%d+)%.%.r(%-?%d+)$')
  if a then
    for i = tonumber(a), tonumber(b) do out[#out + 1] = 'r' .. string.format('%d', i) end
  else
    for f in string.gmatch(spec, '[^,]+') do out[#out + 1] = f end
  end
  return out
end
local function spent_of(key, spec)
  local total = 0
  for _, v in ipairs(redis.call('HMGET', key, unpack(fields_of(spec)))) do
    if v then total = total + tonumber(v) end
  end
  return total
end
"""

_RESERVE_LUA: Final = (
    _LUA_FIELDS
    + """
local now = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
local rid = ARGV[3]
local rexp = ARGV[4]
local rttl = ARGV[5]
local n = tonumber(ARGV[6])
local ki, ai = 1, 7
local out = {1, 0}
local counters = {}
for c = 1, n do
  local limit, name, spec = tonumber(ARGV[ai]), ARGV[ai + 1], ARGV[ai + 2]
  ai = ai + 3
  local rh, rz, sk = KEYS[ki], KEYS[ki + 1], KEYS[ki + 2]
  ki = ki + 3
  -- Bounded: a backlog of expired reservations is worked off over the next calls.
  local expired = redis.call('ZRANGEBYSCORE', rz, '-inf', now, 'LIMIT', 0, 64)
  for _, id in ipairs(expired) do
    local v = redis.call('HGET', rh, id)
    if v then
      redis.call('HDEL', rh, id)
      redis.call('HINCRBY', rh, '#total', '-' .. v)
    end
    redis.call('ZREM', rz, id)
  end
  local reserved = tonumber(redis.call('HGET', rh, '#total') or '0')
  local spent = spent_of(sk, spec)
  out[#out + 1] = spent
  out[#out + 1] = reserved
  if out[2] == 0 and limit >= 0 then
    local used = spent + reserved
    if used + amount > limit or used >= limit then
      out[1] = 0
      out[2] = c
    end
  end
  counters[c] = {rh, rz, name}
end
if out[1] == 1 and rid ~= '' and amount > 0 then
  local rec = {}
  for _, c in ipairs(counters) do
    redis.call('HSET', c[1], rid, ARGV[2])
    redis.call('HINCRBY', c[1], '#total', ARGV[2])
    redis.call('ZADD', c[2], rexp, rid)
    redis.call('EXPIRE', c[1], rttl)
    redis.call('EXPIRE', c[2], rttl)
    rec[#rec + 1] = c[3]
    rec[#rec + 1] = ARGV[2]
  end
  redis.call('HSET', KEYS[ki], unpack(rec))
  redis.call('EXPIRE', KEYS[ki], rttl)
end
return out
"""
)

_RELEASE_LUA_BODY: Final = """
local function release(rid, first, count)
  local ki = first
  for i = 1, count do
    local rh, rz = KEYS[ki], KEYS[ki + 1]
    ki = ki + 2
    local v = redis.call('HGET', rh, rid)
    if v then
      redis.call('HDEL', rh, rid)
      redis.call('HINCRBY', rh, '#total', '-' .. v)
    end
    redis.call('ZREM', rz, rid)
  end
  return ki
end
"""

# A field older than the oldest bucket read: rolling buckets compare by index, calendar ones
# (d2024-03-15, m2024-03) by name. Dropped when a new bucket starts, so the hash stays small;
# a late commit into an old bucket never drops newer ones.
_COMMIT_LUA: Final = (
    _LUA_FIELDS
    + _RELEASE_LUA_BODY
    + """
local function older(field, oldest)
  local fi, oi = tonumber(string.sub(field, 2)), tonumber(string.sub(oldest, 2))
  if string.sub(field, 1, 1) == 'r' and string.sub(oldest, 1, 1) == 'r' and fi and oi then
    return fi < oi
  end
  return field < oldest
end
local rid = ARGV[3]
local nr, nc = tonumber(ARGV[4]), tonumber(ARGV[5])
local ki = 3
if rid ~= '' then
  ki = release(rid, 3, nr)
  redis.call('DEL', KEYS[2])
else
  ki = 3 + 2 * nr
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  return {0}
end
local out = {1}
local ai = 6
for c = 1, nc do
  local field, spec, ttl = ARGV[ai], ARGV[ai + 1], tonumber(ARGV[ai + 2])
  ai = ai + 3
  local sk = KEYS[ki]
  ki = ki + 1
  if redis.call('HINCRBY', sk, field, ARGV[1]) == tonumber(ARGV[1]) then
    local oldest = fields_of(spec)[1]
    for _, f in ipairs(redis.call('HKEYS', sk)) do
      if older(f, oldest) then redis.call('HDEL', sk, f) end
    end
  end
  if redis.call('TTL', sk) < ttl then
    redis.call('EXPIRE', sk, ARGV[ai - 1])
  end
  out[#out + 1] = spent_of(sk, spec)
end
return out
"""
)

_RELEASE_LUA: Final = (
    _RELEASE_LUA_BODY
    + """
release(ARGV[1], 2, tonumber(ARGV[2]))
redis.call('DEL', KEYS[1])
return 1
"""
)

#: Reservations this process made, kept so their keys can be declared to the commit script.
_MAX_LOCAL_RESERVATIONS: Final = 100_000


def _bucket_spec(counter: Counter) -> str:
    """Read buckets for the scripts: ``r<first>..r<last>`` for consecutive rolling buckets, else a list."""
    buckets = counter.read_buckets
    if len(buckets) > 2 and all(b.startswith("r") for b in (buckets[0], buckets[-1])):
        try:
            first, last = int(buckets[0][1:]), int(buckets[-1][1:])
        except ValueError:
            first, last = 0, -1
        if last - first + 1 == len(buckets) and buckets == tuple(f"r{i}" for i in range(first, last + 1)):
            return f"{buckets[0]}..{buckets[-1]}"
    if any("," in b or ".." in b for b in buckets):
        raise ValueError(f"bucket names must not contain ',' or '..': {buckets!r}")
    return ",".join(buckets)


def _ttl(until: float, now: float) -> int:
    """Whole seconds from ``now`` to ``until``, at least 1 (Redis expires by its own clock, relatively)."""
    return max(1, math.ceil(until - now))


class RedisLedger(Ledger):
    """A ledger in Redis, shared by processes on several hosts.

    Check-and-reserve and commit are each one Lua script run with ``EVALSHA`` (one round trip,
    atomic on the server). Keys, per counter: ``{prefix}:s:<counter>`` (hash: bucket -> spent nanos),
    ``{prefix}:rh:<counter>`` (hash: reservation -> nanos, plus ``#total``) and ``{prefix}:rz:<counter>``
    (zset: reservation -> expiry); per span ``{prefix}:span:<key>``; per alert ``{prefix}:alert:<key>``.
    Every key carries the hash tag ``{prefix}``, so on Redis Cluster all budget keys live in one slot and
    the scripts stay legal. Keys expire on their own (``EXPIRE``, relative TTLs from the caller's clock);
    reservation expiry compares the callers' clocks, so keep hosts NTP-synced. Needs Redis >= 7.0 and
    the ``redis`` package.

    Example: ``RedisLedger("redis://127.0.0.1:6379/0")``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        prefix: str = "otel_costs",
        timeout_s: float = 0.5,
    ) -> None:
        try:
            import redis as redis_module
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("RedisLedger needs the redis package: pip install 'redis>=5'") from exc
        if (url is None) == (client is None):
            raise ValueError(
                "give RedisLedger exactly one of url= (e.g. 'redis://127.0.0.1:6379/0') or client="
            )
        if not prefix or "}" in prefix or "{" in prefix:
            raise ValueError(f"prefix must be a non-empty string without braces, got {prefix!r}")
        if client is None:
            assert url is not None
            # No client-side retries: an unreachable ledger must be reported quickly, so the
            # budget manager can apply its fail policy instead of stalling the LLM call.
            client = redis_module.Redis.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
        self._client = client
        self._errors: tuple[type[BaseException], ...] = (redis_module.RedisError, OSError)
        self._tag = "{" + prefix + "}"
        self._reserve = client.register_script(_RESERVE_LUA)
        self._commit = client.register_script(_COMMIT_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._local_reservations: dict[str, tuple[str, ...]] = {}
        self._key_cache: dict[tuple[str, str], tuple[tuple[str, str, str], str]] = {}
        self._lock = threading.Lock()

    # Key names: one place, so the scripts and Python agree.
    def _spend_key(self, counter: str) -> str:
        return f"{self._tag}:s:{counter}"

    def _reserved_keys(self, counter: str) -> tuple[str, str]:
        return f"{self._tag}:rh:{counter}", f"{self._tag}:rz:{counter}"

    def _counter_keys(self, counter: Counter) -> tuple[tuple[str, str, str], str]:
        """(reserved hash, reserved zset, spend hash) and the read-bucket spec, cached per position."""
        cache_key = (counter.key, counter.write_bucket)
        found = self._key_cache.get(cache_key)
        if found is None:
            found = ((*self._reserved_keys(counter.key), self._spend_key(counter.key)), _bucket_spec(counter))
            if len(self._key_cache) >= _MAX_LOCAL_RESERVATIONS:
                self._key_cache.clear()
            self._key_cache[cache_key] = found
        return found

    def _record_key(self, rid: str) -> str:
        return f"{self._tag}:res:{rid}"

    def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return script(keys=keys, args=args)
        except self._errors as exc:
            raise LedgerUnavailable(f"Redis ledger failed: {type(exc).__name__}: {exc}") from exc

    def _remember(self, rid: str, counter_keys: tuple[str, ...]) -> None:
        with self._lock:
            if len(self._local_reservations) >= _MAX_LOCAL_RESERVATIONS:
                # Forgotten ids are looked up in their Redis record on commit: only slower.
                self._local_reservations.clear()
            self._local_reservations[rid] = counter_keys

    def _reservation_counters(self, rid: str) -> tuple[str, ...]:
        with self._lock:
            known = self._local_reservations.pop(rid, None)
        if known is not None:
            return known
        try:  # a reservation made by another process (or forgotten): read its record
            names = self._client.hkeys(self._record_key(rid))
        except self._errors as exc:
            raise LedgerUnavailable(f"Redis ledger failed: {type(exc).__name__}: {exc}") from exc
        return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)

    def _usage_call(
        self, counters: Sequence[Counter], amount: int, rid: str | None, expires_at: float, now: float
    ) -> list[int]:
        keys: list[str] = []
        # The reservation keys of a counter live at least a day, refreshed by each reservation, so
        # processes with different reservation TTLs never cut each other's holds short.
        key_ttl = max(_ttl(expires_at + 60, now), 86400)
        args: list[Any] = [repr(now), str(amount), rid or "", repr(expires_at), key_ttl]
        args.append(len(counters))
        for counter in counters:
            counter_keys, spec = self._counter_keys(counter)
            keys.extend(counter_keys)
            limit = -1 if counter.limit_nanos is None else counter.limit_nanos
            args.extend((str(limit), counter.key, spec))
        keys.append(self._record_key(rid or "-"))
        result: list[int] = self._call(self._reserve, keys, args)
        return result

    def try_reserve(
        self,
        counters: Sequence[Counter],
        amount_nanos: int,
        *,
        reservation_id: str | None,
        expires_at: float,
        now: float,
    ) -> ReserveResult:
        out = self._usage_call(counters, amount_nanos, reservation_id, expires_at, now)
        admitted = out[0] == 1
        usages = tuple(CounterUsage(int(out[i]), int(out[i + 1])) for i in range(2, len(out), 2))
        if admitted and reservation_id is not None and amount_nanos > 0:
            self._remember(reservation_id, tuple(c.key for c in counters))
        return ReserveResult(admitted, usages, None if admitted else int(out[1]) - 1)

    def commit(
        self,
        span_key: str,
        counters: Sequence[Counter],
        amount_nanos: int,
        *,
        reservation_id: str | None,
        dedup_until: float,
        now: float,
    ) -> CommitResult:
        reserved = self._reservation_counters(reservation_id) if reservation_id is not None else ()
        keys = [f"{self._tag}:span:{span_key}", self._record_key(reservation_id or "-")]
        for name in reserved:
            keys.extend(self._reserved_keys(name))
        args: list[Any] = [str(amount_nanos), _ttl(dedup_until, now), reservation_id or "", len(reserved)]
        args.append(len(counters))
        for counter in counters:
            counter_keys, spec = self._counter_keys(counter)
            keys.append(counter_keys[2])
            args.extend((counter.write_bucket, spec, _ttl(counter.keep_until, now)))
        out: list[int] = self._call(self._commit, keys, args)
        if out[0] != 1:
            return CommitResult(False, ())
        return CommitResult(True, tuple(int(v) for v in out[1:]))

    def release(self, reservation_id: str, *, now: float) -> None:
        reserved = self._reservation_counters(reservation_id)
        keys = [self._record_key(reservation_id)]
        for name in reserved:
            keys.extend(self._reserved_keys(name))
        self._call(self._release, keys, [reservation_id, len(reserved)])

    def usage(self, counters: Sequence[Counter], *, now: float) -> tuple[CounterUsage, ...]:
        unlimited = [Counter(c.key, c.read_buckets, c.write_bucket, c.keep_until, None) for c in counters]
        out = self._usage_call(unlimited, 0, None, now, now)
        return tuple(CounterUsage(int(out[i]), int(out[i + 1])) for i in range(2, len(out), 2))

    def claim_marker(self, key: str, *, until: float, now: float) -> bool:
        try:
            return bool(self._client.set(f"{self._tag}:alert:{key}", b"1", nx=True, ex=_ttl(until, now)))
        except self._errors as exc:
            raise LedgerUnavailable(f"Redis ledger failed: {type(exc).__name__}: {exc}") from exc

    def ping(self) -> float:
        """Round-trip a ``PING``; returns seconds taken (for benchmarks and health checks)."""
        import time

        start = time.perf_counter()
        try:
            self._client.ping()
        except self._errors as exc:
            raise LedgerUnavailable(f"Redis ledger failed: {type(exc).__name__}: {exc}") from exc
        return time.perf_counter() - start

    def close(self) -> None:
        try:
            self._client.close()
        except self._errors:
            logger.debug("closing the Redis client failed", exc_info=True)
