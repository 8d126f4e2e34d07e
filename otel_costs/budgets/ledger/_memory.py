"""``MemoryLedger``: the ledger in this process's memory (the default), a lock and a few dicts."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager

from otel_costs.budgets.ledger._base import Counter, CounterUsage, LocalLedger


class MemoryLedger(LocalLedger[bool]):
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

    def _step(self) -> AbstractContextManager[bool]:
        return self._lock  # a step is the lock held (its ``tx`` is the lock's True, unused)

    def _spent_of(self, counter: Counter) -> int:
        buckets = self._spent.get(counter.key)
        if not buckets:
            return 0
        return sum(buckets.get(b, 0) for b in counter.read_buckets)

    def _read(self, tx: bool, counters: Sequence[Counter], now: float) -> list[CounterUsage]:
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            expires_at, rid = heapq.heappop(heap)
            entry = self._reservations.get(rid)
            if entry is not None and entry[0] == expires_at:
                self._drop(tx, rid)
        reserved = self._reserved
        return [CounterUsage(self._spent_of(c), reserved.get(c.key, 0)) for c in counters]

    def _hold(
        self, tx: bool, reservation_id: str, counters: Sequence[Counter], amount: int, expires_at: float
    ) -> None:
        reserved = self._reserved
        for counter in counters:
            reserved[counter.key] = reserved.get(counter.key, 0) + amount
        self._reservations[reservation_id] = (expires_at, tuple((c.key, amount) for c in counters))
        heapq.heappush(self._expiry_heap, (expires_at, reservation_id))

    def _drop(self, tx: bool, reservation_id: str) -> None:
        entry = self._reservations.pop(reservation_id, None)
        if entry is None:
            return
        for key, amount in entry[1]:
            self._reserved[key] -= amount

    def _claim(self, tx: bool, marker: str, until: float, now: float) -> bool:
        current = self._markers.get(marker)
        if current is not None and current > now:
            return False
        self._markers[marker] = until
        return True

    def _add(self, tx: bool, counter: Counter, amount: int) -> int:
        buckets = self._spent.setdefault(counter.key, {})
        buckets[counter.write_bucket] = buckets.get(counter.write_bucket, 0) + amount
        key_bucket = (counter.key, counter.write_bucket)
        self._bucket_until[key_bucket] = max(self._bucket_until.get(key_bucket, 0.0), counter.keep_until)
        return self._spent_of(counter)

    def _collect(self, tx: bool, now: float) -> None:
        for key_bucket in [kb for kb, until in self._bucket_until.items() if until < now]:
            del self._bucket_until[key_bucket]
            buckets = self._spent.get(key_bucket[0])
            if buckets is not None:
                buckets.pop(key_bucket[1], None)
                if not buckets:
                    del self._spent[key_bucket[0]]
        for marker in [m for m, until in self._markers.items() if until <= now]:
            del self._markers[marker]
