"""``RedisLedger``: the ledger in Redis, shared by hosts; each operation is one Lua script.

The ``redis`` package is imported when a ``RedisLedger`` is built, never when this module is.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from otel_costs._config_checks import check_url
from otel_costs.budgets.ledger._base import (
    ALERT_MARKER,
    NOT_APPLIED,
    SPAN_MARKER,
    CommitResult,
    Counter,
    CounterUsage,
    Ledger,
    LedgerUnavailable,
    ReserveResult,
)

if TYPE_CHECKING:
    import redis

logger = logging.getLogger(__name__)

# Spend of a counter is ONE hash, ``{prefix}:s:<counter>``, with a field per bucket. Scripts get
# the buckets to read as a compact spec, ``r<first>..r<last>`` for a rolling window's consecutive
# buckets or a comma-separated list, so a 60-bucket window costs two arguments, not 60 keys.
# Amounts travel as decimal strings and are added with HINCRBY (exact 64-bit integers); only the
# comparison sums are Lua doubles, exact up to 2**53 nano-USD (about 9 million USD per counter).
# A Lua number must never be passed back to a Redis command: it would format as 1.2e+15.

#: Forget reservation ``id`` of one counter: its amount leaves the ``#total``.
_LUA_DROP: Final = """
local function drop(rh, rz, id)
  local v = redis.call('HGET', rh, id)
  if v then
    redis.call('HDEL', rh, id)
    redis.call('HINCRBY', rh, '#total', '-' .. v)
  end
  redis.call('ZREM', rz, id)
end
"""

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
    _LUA_DROP
    + _LUA_FIELDS
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
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', rz, '-inf', now, 'LIMIT', 0, 64)) do
    drop(rh, rz, id)
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

_RELEASE_LUA_BODY: Final = (
    _LUA_DROP
    + """
local function release(rid, first, count)
  local ki = first
  for i = 1, count do
    drop(KEYS[ki], KEYS[ki + 1], rid)
    ki = ki + 2
  end
  return ki
end
"""
)

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


def _unavailable(exc: BaseException) -> LedgerUnavailable:
    return LedgerUnavailable(f"Redis ledger failed: {type(exc).__name__}: {exc}")


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
            # Checked here, not inside redis-py at the first call: "htp://x" is a config error.
            check_url(url, "RedisLedger url", ("redis", "rediss", "unix"), "redis://127.0.0.1:6379/0")
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
        self._reserve_script = client.register_script(_RESERVE_LUA)
        self._commit_script = client.register_script(_COMMIT_LUA)
        self._release_script = client.register_script(_RELEASE_LUA)
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
            raise _unavailable(exc) from exc

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
            raise _unavailable(exc) from exc
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
        result: list[int] = self._call(self._reserve_script, keys, args)
        return result

    def _try_reserve(
        self, counters: Sequence[Counter], amount: int, rid: str | None, expires_at: float, now: float
    ) -> ReserveResult:
        out = self._usage_call(counters, amount, rid, expires_at, now)
        admitted = out[0] == 1
        usages = tuple(CounterUsage(int(out[i]), int(out[i + 1])) for i in range(2, len(out), 2))
        if admitted and rid is not None and amount > 0:
            self._remember(rid, tuple(c.key for c in counters))
        return ReserveResult(admitted, usages, None if admitted else int(out[1]) - 1)

    def _commit(
        self, key: str, counters: Sequence[Counter], amount: int, rid: str | None, until: float, now: float
    ) -> CommitResult:
        reserved = self._reservation_counters(rid) if rid is not None else ()
        keys = [f"{self._tag}:{SPAN_MARKER}{key}", self._record_key(rid or "-")]
        for name in reserved:
            keys.extend(self._reserved_keys(name))
        args: list[Any] = [str(amount), _ttl(until, now), rid or "", len(reserved)]
        args.append(len(counters))
        for counter in counters:
            counter_keys, spec = self._counter_keys(counter)
            keys.append(counter_keys[2])
            args.extend((counter.write_bucket, spec, _ttl(counter.keep_until, now)))
        out: list[int] = self._call(self._commit_script, keys, args)
        if out[0] != 1:
            return NOT_APPLIED
        return CommitResult(True, tuple(int(v) for v in out[1:]))

    def _release(self, rid: str, now: float) -> None:
        reserved = self._reservation_counters(rid)
        keys = [self._record_key(rid)]
        for name in reserved:
            keys.extend(self._reserved_keys(name))
        self._call(self._release_script, keys, [rid, len(reserved)])

    def _usage(self, counters: Sequence[Counter], now: float) -> tuple[CounterUsage, ...]:
        unlimited = [Counter(c.key, c.read_buckets, c.write_bucket, c.keep_until, None) for c in counters]
        out = self._usage_call(unlimited, 0, None, now, now)
        return tuple(CounterUsage(int(out[i]), int(out[i + 1])) for i in range(2, len(out), 2))

    def _claim_marker(self, key: str, until: float, now: float) -> bool:
        try:
            return bool(
                self._client.set(f"{self._tag}:{ALERT_MARKER}{key}", b"1", nx=True, ex=_ttl(until, now))
            )
        except self._errors as exc:
            raise _unavailable(exc) from exc

    def ping(self) -> float:
        """Round-trip a ``PING``; returns seconds taken (for benchmarks and health checks)."""
        start = time.perf_counter()
        try:
            self._client.ping()
        except self._errors as exc:
            raise _unavailable(exc) from exc
        return time.perf_counter() - start

    def close(self) -> None:
        try:
            self._client.close()
        except self._errors:
            logger.debug("closing the Redis client failed", exc_info=True)
