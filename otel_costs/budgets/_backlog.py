"""Span costs that could not reach the ledger: buffered (bounded), replayed oldest first when it answers."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from otel_costs._money import nanos_to_decimal
from otel_costs.budgets._decisions import LedgerHealth
from otel_costs.budgets._targets import Target
from otel_costs.budgets.ledger._base import CommitResult, Counter, Ledger, LedgerUnavailable

logger = logging.getLogger("otel_costs.budgets")


@dataclass(slots=True)
class Pending:
    """A span cost waiting for the ledger to answer again."""

    span_key: str
    counters: tuple[Counter, ...]
    cost_nanos: int
    reservation_id: str | None
    targets: tuple[Target, ...]


class Backlog:
    """At most ``max_pending`` buffered span costs; beyond that a cost is dropped, logged and counted."""

    def __init__(self, max_pending: int) -> None:
        self.items: deque[Pending] = deque()
        """The buffered costs, oldest first (test ``if backlog.items`` on the hot path)."""
        self.dropped_nanos = 0
        """Spend dropped because the buffer was full, nano-USD."""
        self._max = max_pending
        self._lock = threading.Lock()

    def add(self, pending: Pending) -> None:
        """Buffer one cost, or drop it (logged, counted) when the buffer is full."""
        with self._lock:
            if len(self.items) >= self._max:
                self.dropped_nanos += pending.cost_nanos
                logger.error(
                    "budget: ledger unreachable and %d span costs already buffered; dropped span %s ($%s)",
                    len(self.items),
                    pending.span_key,
                    nanos_to_decimal(pending.cost_nanos),
                )
                return
            self.items.append(pending)

    def replay(
        self,
        ledger: Ledger,
        health: LedgerHealth,
        now: float,
        dedup_until: float,
        applied: Callable[[Pending, CommitResult], object],
    ) -> None:
        """Commit the buffered costs oldest first, ``applied`` for each one counted; stop at a failure."""
        while True:
            with self._lock:
                if not self.items:
                    return
                item = self.items.popleft()
            try:
                result = ledger.commit(
                    item.span_key,
                    item.counters,
                    item.cost_nanos,
                    reservation_id=item.reservation_id,
                    dedup_until=dedup_until,
                    now=now,
                )
            except LedgerUnavailable as exc:
                with self._lock:
                    self.items.appendleft(item)
                health.down(exc)
                return
            if result.applied:
                applied(item, result)
