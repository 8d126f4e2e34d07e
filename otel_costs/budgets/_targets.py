"""Budgets prepared for the hot path, and which of them (and which counter) a call's attributes hit.

``Compiled`` is a ``Budget`` with its window parsed and its thresholds in nano-USD; ``targets``
picks the counters (``Target``) a call counts against, e.g. ``team-daily|day@UTC|team.id=a``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from otel_costs.budgets._alerts import utc_from_epoch
from otel_costs.budgets._config import Budget
from otel_costs.budgets._decisions import BudgetStatus, Verdict
from otel_costs.budgets._windows import Window, WindowPosition, parse_window
from otel_costs.budgets.ledger._base import Counter, CounterUsage

#: Longest attribute value used verbatim in a counter key; longer ones are shortened with a hash
#: (never dropped: dropping would let a long user id slip past its budget).
_MAX_KEY_VALUE: Final = 200
#: Most subjects a budget keeps prepared counters for, per window position.
_MAX_CACHED_TARGETS: Final = 10_000


class Compiled:
    """A budget prepared for the hot path."""

    __slots__ = (
        "_position",
        "_targets",
        "budget",
        "display",
        "key_prefix",
        "ledger_limit",
        "limit",
        "match",
        "per",
        "thresholds",
        "throttle",
        "window",
    )

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.window: Window = parse_window(budget.window, budget.timezone)
        self.per = budget.per
        self.match = tuple((k, frozenset(v)) for k, v in budget.match.items())
        self.limit = budget.limit_nanos
        self.ledger_limit = self.limit if budget.hard else None
        self.throttle = None if budget.throttle_at is None else self._nanos(budget.throttle_at)
        self.thresholds = tuple((t, self._nanos(t)) for t in budget.alert_at)
        self.key_prefix = f"{budget.name}|{self.window.id}|"
        self.display = ",".join(f"{k}={'|'.join(sorted(v))}" for k, v in self.match)
        # Targets of the current window position, by subject: most calls hit a handful of
        # subjects, so the hot path reuses them instead of rebuilding counters per call.
        self._position: WindowPosition | None = None
        self._targets: dict[str, Target] = {}

    def target(self, subject: str, now: float) -> Target:
        """The counter of ``subject`` at ``now``."""
        pos = self.window.position(now)
        if pos is not self._position:
            self._targets = {}
            self._position = pos
        targets = self._targets
        found = targets.get(subject)
        if found is None:
            counter = Counter(
                self.key_prefix + subject,
                pos.read_buckets,
                pos.write_bucket,
                pos.end + pos.keep_for_s,
                self.ledger_limit,
            )
            found = Target(
                self,
                subject,
                subject or self.display,
                counter,
                None if pos.resets_at is None else utc_from_epoch(pos.resets_at),
                pos.start,
            )
            if len(targets) < _MAX_CACHED_TARGETS:
                targets[subject] = found
        return found

    def _nanos(self, fraction: float) -> int:
        return math.ceil(Decimal(repr(fraction)) * self.limit)


def scalar_text(value: object) -> str | None:
    """An attribute value as text (``42`` -> ``"42"``, ``True`` -> ``"true"``); ``None``: not a scalar."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def key_value(value: object) -> str | None:
    """An attribute value as it appears in a counter key; ``None`` when absent or not a scalar."""
    text = scalar_text(value)
    if text is None:
        return None
    if len(text) > _MAX_KEY_VALUE:
        text = text[:64] + "#" + hashlib.sha256(text.encode()).hexdigest()[:32]
    return text.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("=", "\\=")


@dataclass(frozen=True, slots=True)
class Target:
    """One budget's counter for one subject at one window position."""

    compiled: Compiled
    subject: str
    display: str
    counter: Counter
    resets_at: datetime | None
    window_start: float

    def status(self, usage: CounterUsage, verdict: Verdict) -> BudgetStatus:
        """This counter's status with ``usage``, as a check or record reports it."""
        compiled = self.compiled
        return BudgetStatus(
            budget=compiled.budget.name,
            window=compiled.window.id,
            subject=self.display,
            verdict=verdict,
            limit_nanos=compiled.limit,
            spent_nanos=usage.spent_nanos,
            reserved_nanos=usage.reserved_nanos,
            resets_at=self.resets_at,
            hard=compiled.budget.hard,
        )


def targets(compiled: Sequence[Compiled], attributes: Mapping[str, object], now: float) -> list[Target]:
    """The counters a call with ``attributes`` counts against at ``now``, one per matching budget."""
    found: list[Target] = []
    for budget in compiled:
        matched = True
        for key, allowed in budget.match:
            if scalar_text(attributes.get(key)) not in allowed:
                matched = False
                break
        if not matched:
            continue
        if budget.per:
            parts: list[str] = []
            for key in budget.per:
                text = key_value(attributes.get(key))
                if text is None:
                    matched = False
                    break
                parts.append(f"{key}={text}")
            if not matched:
                continue
            found.append(budget.target(",".join(parts), now))
        else:
            found.append(budget.target("", now))
    return found
