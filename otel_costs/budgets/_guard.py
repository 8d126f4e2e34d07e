"""The reservation around one call made outside the HTTP capture: ``BudgetManager.guard``/``guarded``.

Also what the pre-call path reads from the context: the baggage attribution, and the
reservation id of the innermost guard (``current_reservation_id``).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import itertools
import os
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from otel_costs._money import to_nanos
from otel_costs.attribution._scopes import current_attribution
from otel_costs.budgets._alerts import BudgetAlert
from otel_costs.budgets._decisions import BudgetDecision
from otel_costs.conventions import BAGGAGE_TO_ATTRIBUTE

if TYPE_CHECKING:
    from otel_costs.budgets._manager import BudgetManager

P = ParamSpec("P")
R = TypeVar("R")

# Reservation ids: a random per-process prefix and a counter (cheaper than a ULID on the hot
# path); a forked child draws a new prefix so it never reuses its parent's ids.
_rid_prefix = os.urandom(6).hex() + "-"
_rid_counter = itertools.count()


def new_reservation_id() -> str:
    return f"{_rid_prefix}{next(_rid_counter):x}"


def _reset_reservation_ids() -> None:
    global _rid_prefix, _rid_counter
    _rid_prefix = os.urandom(6).hex() + "-"
    _rid_counter = itertools.count()


os.register_at_fork(after_in_child=_reset_reservation_ids)

_current_reservation: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "otel_costs_budget_reservation", default=None
)


def current_reservation_id() -> str | None:
    """The reservation of the innermost ``BudgetManager.guard`` block on this context, if any."""
    return _current_reservation.get()


def baggage_attribution() -> dict[str, str]:
    """The attribution in the current OTel baggage, keyed by span attribute (``BAGGAGE_TO_ATTRIBUTE``)."""
    return {BAGGAGE_TO_ATTRIBUTE[key]: value for key, value in current_attribution().items()}


def estimate_arg(estimate: Decimal | None, estimate_nanos: int | None) -> int:
    if estimate is not None and estimate_nanos is not None:
        raise ValueError("give estimate (USD) or estimate_nanos, not both")
    if estimate is not None:
        if not isinstance(estimate, Decimal) or not estimate.is_finite() or estimate < 0:
            raise ValueError(
                f"estimate must be a Decimal USD amount >= 0, e.g. Decimal('0.05'), got {estimate!r}"
            )
        return to_nanos(estimate)
    if estimate_nanos is None:
        return 0
    if isinstance(estimate_nanos, bool) or not isinstance(estimate_nanos, int) or estimate_nanos < 0:
        raise ValueError(f"estimate_nanos must be an int >= 0, got {estimate_nanos!r}")
    return estimate_nanos


class BudgetGuard:
    """Returned by ``BudgetManager.guard``: enforces on entry, holds the reservation, releases on exit."""

    def __init__(
        self, manager: BudgetManager, estimate_nanos: int, attributes: Mapping[str, object] | None
    ) -> None:
        self._manager = manager
        self._estimate = estimate_nanos
        self._given = attributes
        self.attributes: Mapping[str, object] = {}
        """The attribution the guard checked (given, or the baggage's at entry)."""
        self.decision: BudgetDecision | None = None
        """The decision made on entry."""
        self._recorded = False
        self._token: contextvars.Token[str | None] | None = None

    @property
    def reservation_id(self) -> str | None:
        """The reservation held inside the block."""
        return self.decision.reservation_id if self.decision is not None else None

    def _entered(self, decision: BudgetDecision) -> BudgetGuard:
        self.decision = decision
        self._token = _current_reservation.set(decision.reservation_id)
        return self

    def __enter__(self) -> BudgetGuard:
        self.attributes = baggage_attribution() if self._given is None else self._given
        return self._entered(self._manager.enforce(self.attributes, estimate_nanos=self._estimate))

    async def __aenter__(self) -> BudgetGuard:
        self.attributes = baggage_attribution() if self._given is None else self._given
        return self._entered(
            await self._manager.enforce_async(self.attributes, estimate_nanos=self._estimate)
        )

    def record(self, cost_nanos: int, *, span_key: str | None = None) -> tuple[BudgetAlert, ...]:
        """Record the actual cost of the guarded call (once), reconciling the reservation."""
        self._recorded = True
        key = span_key or f"guard:{self.reservation_id or new_reservation_id()}"
        return self._manager._record_span_cost(
            key, self.attributes, cost_nanos, reservation_id=self.reservation_id
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            _current_reservation.reset(self._token)
            self._token = None
        if not self._recorded and self.reservation_id is not None:
            self._manager.release(self.reservation_id)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def guarded(
    manager: BudgetManager, estimate_nanos: int, attributes: Mapping[str, object] | None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """The decorator behind ``BudgetManager.guarded``: each call runs inside a ``BudgetGuard``."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                async with BudgetGuard(manager, estimate_nanos, attributes):
                    return await cast(Callable[P, Awaitable[Any]], func)(*args, **kwargs)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with BudgetGuard(manager, estimate_nanos, attributes):
                return func(*args, **kwargs)

        return wrapper

    return decorate
