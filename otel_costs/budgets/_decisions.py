"""What a budget check decides: ``Verdict``, ``BudgetStatus``, ``BudgetDecision``, the denial exceptions.

Also the decision the fail policy makes while the ledger is unreachable (``LedgerHealth``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from otel_costs._money import nanos_to_decimal
from otel_costs.budgets._alerts import usd_text
from otel_costs.budgets._config import FailPolicy

logger = logging.getLogger("otel_costs.budgets")


class Verdict(StrEnum):
    """What a budget check decided."""

    ALLOW = "allow"
    THROTTLE = "throttle"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One applicable budget at the moment of a check or record."""

    budget: str
    """Budget name."""
    window: str
    """Window id, e.g. ``day@Europe/Berlin``."""
    subject: str
    """Who is counted, e.g. ``team.id=research`` (empty: all spend)."""
    verdict: Verdict
    """This budget's own verdict."""
    limit_nanos: int
    """Limit, nano-USD."""
    spent_nanos: int
    """Recorded spend in the window, nano-USD."""
    reserved_nanos: int
    """Reserved by calls in flight (before this call's reservation), nano-USD."""
    resets_at: datetime | None
    """When a calendar window starts afresh (UTC); ``None`` for rolling windows."""
    hard: bool
    """Whether the budget denies at its limit."""

    @property
    def used_nanos(self) -> int:
        """Spent plus reserved, nano-USD."""
        return self.spent_nanos + self.reserved_nanos

    @property
    def remaining_nanos(self) -> int:
        """What is left of the limit after spend and reservations (0 when over), nano-USD."""
        return max(0, self.limit_nanos - self.used_nanos)

    @property
    def limit_usd(self) -> Decimal:
        """Limit, USD."""
        return nanos_to_decimal(self.limit_nanos)

    @property
    def spent_usd(self) -> Decimal:
        """Spend, USD."""
        return nanos_to_decimal(self.spent_nanos)

    @property
    def remaining_usd(self) -> Decimal:
        """Remaining, USD."""
        return nanos_to_decimal(self.remaining_nanos)

    @property
    def utilization(self) -> float:
        """Spent / limit (1.0 = limit reached)."""
        return self.spent_nanos / self.limit_nanos

    def describe(self) -> str:
        """``budget 'x' (day@UTC, team.id=a)``."""
        return f"budget '{self.budget}' ({self.window}{', ' + self.subject if self.subject else ''})"


class BudgetDenied(Exception):
    """A budget check denied the call. Catch this for both subclasses."""

    def __init__(self, message: str, decision: BudgetDecision) -> None:
        super().__init__(message)
        self.decision = decision
        """The decision that denied the call."""


class BudgetExceeded(BudgetDenied):
    """The call would exceed a hard budget limit; the message names the budget, window, usage and limit."""


class BudgetUnavailable(BudgetDenied):
    """The ledger was unreachable and the manager fails closed."""


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    """The outcome of a budget check."""

    verdict: Verdict
    """allow, throttle or deny."""
    reason: str
    """Why, in one sentence."""
    statuses: tuple[BudgetStatus, ...]
    """Every applicable budget (empty when none applies or the ledger was unavailable)."""
    estimate_nanos: int
    """The estimate checked (and reserved), nano-USD."""
    reservation_id: str | None = None
    """Put on the call's span as ``RESERVATION_ID_ATTRIBUTE`` (or ``release`` it); ``None``: none."""
    wait_s: float = 0.0
    """Seconds to wait before a throttled call proceeds."""
    model: str | None = None
    """A cheaper model to use instead (throttle with ``downgrade_to``), else ``None``."""
    ledger_unavailable: bool = False
    """True when the ledger could not be asked and the fail policy decided."""

    @property
    def allowed(self) -> bool:
        """Whether the call may proceed (allow or throttle)."""
        return self.verdict is not Verdict.DENY

    @property
    def blocking(self) -> BudgetStatus | None:
        """The first budget that denied the call."""
        return next((s for s in self.statuses if s.verdict is Verdict.DENY), None)

    def error(self) -> BudgetDenied:
        """The exception for a denial (``BudgetExceeded`` or ``BudgetUnavailable``)."""
        if self.ledger_unavailable:
            return BudgetUnavailable(self.reason, self)
        return BudgetExceeded(self.reason, self)

    def raise_for_denial(self) -> None:
        """Raise ``error()`` if the call was denied."""
        if self.verdict is Verdict.DENY:
            raise self.error()


def deny_reason(status: BudgetStatus, estimate: int) -> str:
    resets = f"; resets at {status.resets_at.isoformat()}" if status.resets_at is not None else ""
    return (
        f"{status.describe()} exceeded: used {usd_text(status.used_nanos)} "
        f"(spent {usd_text(status.spent_nanos)} + in flight {usd_text(status.reserved_nanos)}) "
        f"of the {usd_text(status.limit_nanos)} limit; this call needs up to {usd_text(estimate)}{resets}"
    )


class LedgerHealth:
    """Whether the ledger answers, and the decision the fail policy makes while it does not.

    After a failure the ledger is skipped for ``retry_s`` seconds (calls get the fail policy's
    decision at once instead of waiting on a dead ledger), then asked again.
    """

    __slots__ = ("_down_until", "_retry_s", "policy", "reason")

    def __init__(self, policy: FailPolicy, retry_s: float) -> None:
        self.policy = policy
        self._retry_s = retry_s
        self._down_until = 0.0
        self.reason: str | None = None
        """Why the ledger is considered down; ``None`` while it answers."""

    def skipped(self) -> bool:
        """True while the ledger is down and not due for another try."""
        return self.reason is not None and time.monotonic() < self._down_until

    def down(self, exc: Exception) -> None:
        """Note a failure (logged once per outage)."""
        first = self.reason is None
        self.reason = f"{type(exc).__name__}: {exc}"
        self._down_until = time.monotonic() + self._retry_s
        if first:
            logger.error(
                "budget ledger unreachable (%s); failing %s until it answers again",
                self.reason,
                self.policy.value,
            )

    def up(self) -> None:
        """Note an answer."""
        if self.reason is not None:
            logger.warning("budget ledger reachable again after: %s", self.reason)
            self.reason = None

    def decision(self, estimate_nanos: int, cause: str | None = None) -> BudgetDecision:
        """The fail policy's decision for a call that could not be checked."""
        reason = f"budget ledger unavailable ({cause or self.reason})"
        if self.policy is FailPolicy.OPEN:
            return BudgetDecision(
                Verdict.ALLOW,
                reason + "; fail-open: allowed unchecked",
                (),
                estimate_nanos,
                ledger_unavailable=True,
            )
        return BudgetDecision(
            Verdict.DENY, reason + "; fail-closed: denied", (), estimate_nanos, ledger_unavailable=True
        )
