"""The ledger contract: counters, usages, results, the admission rule, and the ``Ledger`` base class.

A *counter* is one budget for one subject (e.g. team ``a``'s daily budget); its *usage* is the
spend in its read buckets plus its unexpired reservations. ``try_reserve`` admits an amount only
if every limited counter has room for it (usage + amount <= limit, and usage < limit), and then
reserves it on every counter, atomically. ``commit`` records a span's cost exactly once per span
key (a second commit of the key is a no-op, in any process sharing the ledger), releasing the
span's reservation. Reservations expire if never committed or released. ``claim_marker`` sets a
marker once (alert dedup).

``LocalLedger`` writes these operations once for ledgers that run a step atomically from this
process (``MemoryLedger`` under a lock, ``SqliteLedger`` in one ``BEGIN IMMEDIATE`` transaction):
they only supply the storage primitives. ``RedisLedger`` runs each operation as one server-side
Lua script instead. ``tests/test_ledger.py`` runs the same contract tests on all three.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

#: How often (seconds of ledger clock) the memory and SQLite ledgers drop finished buckets and markers.
GC_INTERVAL_S: Final = 60.0

#: Prefixes of the two kinds of marker: a committed span key, a sent alert.
SPAN_MARKER: Final = "span:"
ALERT_MARKER: Final = "alert:"


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


NOT_APPLIED: Final = CommitResult(False, ())


def has_room(spent: int, reserved: int, amount: int, limit: int | None) -> bool:
    """The admission rule: usage + amount <= limit, and a spent-out budget admits nothing, not even $0."""
    if limit is None:
        return True
    used = spent + reserved
    return used + amount <= limit and used < limit


class Ledger(ABC):
    """Where spend and reservations are counted. Thread-safe; ``now`` is epoch seconds (caller's clock).

    A ledger implements the private ``_try_reserve``, ``_commit``, ``_release``, ``_usage`` and
    ``_claim_marker`` (positional arguments, the same meaning as the public methods).
    """

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
        return self._try_reserve(counters, amount_nanos, reservation_id, expires_at, now)

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
        return self._commit(span_key, counters, amount_nanos, reservation_id, dedup_until, now)

    def release(self, reservation_id: str, *, now: float) -> None:
        """Drop a reservation without recording spend (the call was not made). Unknown ids are ignored."""
        self._release(reservation_id, now)

    def usage(self, counters: Sequence[Counter], *, now: float) -> tuple[CounterUsage, ...]:
        """Usage of each counter now."""
        return self._usage(counters, now)

    def claim_marker(self, key: str, *, until: float, now: float) -> bool:
        """Set ``key`` until ``until`` if it is not set; True for the one caller that set it."""
        return self._claim_marker(key, until, now)

    def close(self) -> None:  # noqa: B027 - optional hook, most ledgers hold nothing to close
        """Release connections; the ledger must not be used afterwards."""

    @abstractmethod
    def _try_reserve(
        self, counters: Sequence[Counter], amount: int, rid: str | None, expires_at: float, now: float
    ) -> ReserveResult: ...

    @abstractmethod
    def _commit(
        self, key: str, counters: Sequence[Counter], amount: int, rid: str | None, until: float, now: float
    ) -> CommitResult: ...

    @abstractmethod
    def _release(self, rid: str, now: float) -> None: ...

    @abstractmethod
    def _usage(self, counters: Sequence[Counter], now: float) -> tuple[CounterUsage, ...]: ...

    @abstractmethod
    def _claim_marker(self, key: str, until: float, now: float) -> bool: ...


Tx = TypeVar("Tx")


class LocalLedger(Ledger, Generic[Tx]):
    """The contract written once over storage primitives run inside one atomic step (``_step``).

    A subclass supplies ``_step`` (a context manager: a lock, a transaction; it gives the ``tx``
    the primitives take) and the primitives, each called only inside a step.
    """

    @abstractmethod
    def _step(self) -> AbstractContextManager[Tx]:
        """One atomic step; storage errors inside it raise ``LedgerUnavailable``."""

    @abstractmethod
    def _read(self, tx: Tx, counters: Sequence[Counter], now: float) -> list[CounterUsage]:
        """Usage of each counter at ``now`` (expired reservations do not count)."""

    @abstractmethod
    def _hold(
        self, tx: Tx, reservation_id: str, counters: Sequence[Counter], amount: int, expires_at: float
    ) -> None:
        """Reserve ``amount`` on every counter under ``reservation_id`` until ``expires_at``."""

    @abstractmethod
    def _drop(self, tx: Tx, reservation_id: str) -> None:
        """Forget a reservation (unknown ids are ignored)."""

    @abstractmethod
    def _claim(self, tx: Tx, marker: str, until: float, now: float) -> bool:
        """Set ``marker`` until ``until`` unless it is set and unexpired; True if this call set it."""

    @abstractmethod
    def _add(self, tx: Tx, counter: Counter, amount: int) -> int:
        """Add ``amount`` to the counter's write bucket; its spent amount afterwards."""

    @abstractmethod
    def _collect(self, tx: Tx, now: float) -> None:
        """Drop finished buckets, expired reservations and markers (called at most every GC interval)."""

    _next_gc: float = 0.0

    def _try_reserve(
        self, counters: Sequence[Counter], amount: int, rid: str | None, expires_at: float, now: float
    ) -> ReserveResult:
        with self._step() as tx:
            usages = self._read(tx, counters, now)
            blocked: int | None = None
            for i, usage in enumerate(usages):
                if not has_room(usage.spent_nanos, usage.reserved_nanos, amount, counters[i].limit_nanos):
                    blocked = i
                    break
            if blocked is None and rid is not None and amount > 0:
                self._hold(tx, rid, counters, amount, expires_at)
            return ReserveResult(blocked is None, tuple(usages), blocked)

    def _commit(
        self, key: str, counters: Sequence[Counter], amount: int, rid: str | None, until: float, now: float
    ) -> CommitResult:
        with self._step() as tx:
            if rid is not None:
                self._drop(tx, rid)
            if not self._claim(tx, SPAN_MARKER + key, until, now):
                return NOT_APPLIED
            spent_after = tuple([self._add(tx, counter, amount) for counter in counters])
            if now >= self._next_gc:
                self._next_gc = now + GC_INTERVAL_S
                self._collect(tx, now)
            return CommitResult(True, spent_after)

    def _release(self, rid: str, now: float) -> None:
        with self._step() as tx:
            self._drop(tx, rid)

    def _usage(self, counters: Sequence[Counter], now: float) -> tuple[CounterUsage, ...]:
        with self._step() as tx:
            return tuple(self._read(tx, counters, now))

    def _claim_marker(self, key: str, until: float, now: float) -> bool:
        with self._step() as tx:
            return self._claim(tx, ALERT_MARKER + key, until, now)
