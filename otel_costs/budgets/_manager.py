"""``BudgetManager``: check and reserve before an LLM call, record its cost once when its span ends.

The manager checks every applicable budget before a call, atomically reserving the call's
estimated cost in the ledger, and records the actual cost exactly once per span when the span
ends (as a ``CostSpanProcessor`` listener: ``on_span_cost``), releasing the reservation. So
concurrent calls overshoot a limit by at most what their actual costs exceed their estimates.
Money is integer nano-USD (``_money``) everywhere the ledger adds or compares.

Example::

    manager = BudgetManager([Budget("team-daily", Decimal("25"), per=("team.id",), window="day")])
    provider.add_span_processor(CostSpanProcessor(next_processor, listeners=[manager]))
    decision = manager.enforce({"team.id": "research"}, estimate_nanos=50_000_000)  # may raise BudgetExceeded
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar

from opentelemetry.sdk.trace import ReadableSpan

from otel_costs.budgets._alerts import AlertSink, BudgetAlert, usd_text
from otel_costs.budgets._backlog import Backlog, Pending
from otel_costs.budgets._config import Budget, BudgetConfig, FailPolicy, check_settings
from otel_costs.budgets._decisions import BudgetDecision, BudgetStatus, LedgerHealth, Verdict, deny_reason
from otel_costs.budgets._dispatch import AlertDispatch, make_alert
from otel_costs.budgets._guard import (
    BudgetGuard,
    baggage_attribution,
    estimate_arg,
    guarded,
    new_reservation_id,
)
from otel_costs.budgets._hooks import (
    DowngradeHook,
    Estimator,
    RateLookup,
    call_attributes,
    downgrade,
    span_key,
    span_reservation,
    with_threshold_events,
)
from otel_costs.budgets._targets import Compiled, Target, targets
from otel_costs.budgets._windows import Clock, system_clock
from otel_costs.budgets.ledger._base import CounterUsage, Ledger, LedgerUnavailable, has_room
from otel_costs.budgets.ledger._memory import MemoryLedger

if TYPE_CHECKING:
    from otel_costs.metrics._cost_metrics import CostMetrics

logger = logging.getLogger("otel_costs.budgets")

P = ParamSpec("P")
R = TypeVar("R")

# Enum members as module constants: a class attribute lookup on an Enum costs more on the hot path.
_ALLOW, _THROTTLE, _DENY = Verdict.ALLOW, Verdict.THROTTLE, Verdict.DENY

_NO_BUDGET: Final = BudgetDecision(Verdict.ALLOW, "no budget applies", (), 0)


class BudgetManager:
    """Checks, reserves and records spend against budgets in a ledger; sends alerts.

    Thread-safe. ``check`` never raises for ledger trouble (the fail policy decides);
    ``enforce``/``guard``/``guarded`` raise ``BudgetExceeded`` or ``BudgetUnavailable`` on denial.
    Hand it to the processor as a listener, so every priced span's cost is recorded once:
    ``CostSpanProcessor(next_processor, listeners=[manager])`` or ``configure(listeners=[manager])``.

    Example::

        manager = BudgetManager.from_config("budgets.toml")
        with manager.guard(estimate=Decimal("0.05")):
            call_the_model()
    """

    def __init__(
        self,
        budgets: Iterable[Budget],
        *,
        ledger: Ledger | None = None,
        on_ledger_error: FailPolicy | str = FailPolicy.OPEN,
        reservation_ttl_s: float = 600.0,
        dedup_ttl_s: float = 86400.0,
        alert_sinks: Sequence[AlertSink] = (),
        rates: RateLookup | None = None,
        metrics: CostMetrics | None = None,
        clock: Clock = system_clock,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        downgrade_hook: DowngradeHook | None = None,
        default_output_tokens: int = 1024,
        unpriced_estimate_nanos: int = 0,
        ledger_retry_s: float = 1.0,
        max_pending: int = 100_000,
        max_tracked: int = 10_000,
    ) -> None:
        budget_list = list(budgets)
        policy = check_settings(
            budget_list,
            on_ledger_error,
            reservation_ttl_s=reservation_ttl_s,
            dedup_ttl_s=dedup_ttl_s,
            ledger_retry_s=ledger_retry_s,
            default_output_tokens=default_output_tokens,
            unpriced_estimate_nanos=unpriced_estimate_nanos,
            max_pending=max_pending,
            max_tracked=max_tracked,
        )
        self.budgets: tuple[Budget, ...] = tuple(budget_list)
        self._compiled = tuple(Compiled(b) for b in budget_list)
        self.ledger: Ledger = ledger if ledger is not None else MemoryLedger()
        self.on_ledger_error = policy
        self._health = LedgerHealth(policy, ledger_retry_s)
        self._alerts = AlertDispatch(alert_sinks, self.ledger, self._health, max_tracked)
        self._ttl = float(reservation_ttl_s)
        self._dedup_ttl = float(dedup_ttl_s)
        self._estimator = Estimator(rates, default_output_tokens, unpriced_estimate_nanos)
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._downgrade_hook = downgrade_hook
        self._lock = threading.Lock()
        self._backlog = Backlog(max_pending)
        self._tracked: dict[str, tuple[Compiled, str]] = {}
        self._max_tracked = max_tracked
        self._latest: dict[str, BudgetStatus] = {}
        for compiled in self._compiled:
            if not compiled.per and not compiled.match:
                self._tracked[compiled.key_prefix] = (compiled, "")
        if metrics is not None:
            metrics.watch(self)

    @classmethod
    def from_config(
        cls,
        config: BudgetConfig | str | os.PathLike[str],
        *,
        ledger: Ledger | None = None,
        alert_sinks: Sequence[AlertSink] | None = None,
        **kwargs: Any,
    ) -> BudgetManager:
        """A manager from a ``BudgetConfig`` or TOML/YAML file; ``ledger``, ``alert_sinks`` override the file.

        Example: ``BudgetManager.from_config("budgets.yaml", rates=price_book, metrics=CostMetrics())``.
        """
        cfg = config if isinstance(config, BudgetConfig) else BudgetConfig.load(config)
        if alert_sinks is None:
            alert_sinks = cfg.alert_sinks()
        kwargs.setdefault("on_ledger_error", cfg.on_ledger_error)
        kwargs.setdefault("reservation_ttl_s", cfg.reservation_ttl_s)
        return cls(cfg.budgets, ledger=ledger or cfg.ledger.create(), alert_sinks=alert_sinks, **kwargs)

    # -- counters ----------------------------------------------------------------------------

    def _track(self, found: Sequence[Target]) -> None:
        tracked = self._tracked
        for target in found:
            key = target.counter.key
            if key not in tracked:
                with self._lock:
                    if len(tracked) >= self._max_tracked:
                        tracked.pop(next(iter(tracked)))
                    tracked[key] = (target.compiled, target.subject)

    def _status(self, target: Target, usage: CounterUsage, verdict: Verdict) -> BudgetStatus:
        status = self._latest[target.counter.key] = target.status(usage, verdict)
        return status

    @property
    def alert_sinks(self) -> tuple[AlertSink, ...]:
        """Where alerts go (given, or built from the configuration file)."""
        return self._alerts.sinks

    @property
    def ledger_healthy(self) -> bool:
        """False while the ledger is considered unreachable (for ``ledger_retry_s`` after a failure)."""
        return self._health.reason is None

    @property
    def pending_records(self) -> int:
        """Span costs buffered while the ledger was unreachable, to be replayed."""
        return len(self._backlog.items)

    @property
    def dropped_spend_nanos(self) -> int:
        """Spend that could not be recorded nor buffered (ledger down and buffer full), nano-USD."""
        return self._backlog.dropped_nanos

    # -- check -------------------------------------------------------------------------------

    def check(
        self,
        attributes: Mapping[str, object] | None = None,
        *,
        estimate_nanos: int = 0,
        reserve: bool = True,
    ) -> BudgetDecision:
        """Decide allow / throttle / deny for a call costing up to ``estimate_nanos``; reserve it if allowed.

        ``attributes`` default to the current baggage attribution. Never raises for ledger trouble:
        the fail policy decides, and the decision says so. Does not wait or raise on denial (see ``enforce``).

        Example: ``manager.check({"team.id": "a"}, estimate_nanos=2_000_000).verdict``.
        """
        if isinstance(estimate_nanos, bool) or not isinstance(estimate_nanos, int) or estimate_nanos < 0:
            raise ValueError(f"estimate_nanos must be an int >= 0 (nano-USD), got {estimate_nanos!r}")
        try:
            return self._check(
                baggage_attribution() if attributes is None else attributes, estimate_nanos, reserve
            )
        except Exception as exc:
            logger.exception("budget check failed; applying the fail policy")
            return self._health.decision(estimate_nanos, f"internal error: {type(exc).__name__}: {exc}")

    def _check(self, attributes: Mapping[str, object], estimate: int, reserve: bool) -> BudgetDecision:
        now = self._clock()
        found = targets(self._compiled, attributes, now)
        if not found:
            return (
                _NO_BUDGET
                if estimate == 0
                else BudgetDecision(Verdict.ALLOW, "no budget applies", (), estimate)
            )
        self._track(found)
        if self._health.reason is not None and self._health.skipped():
            return self._health.decision(estimate)
        if self._backlog.items:
            self._replay(now)
        rid = new_reservation_id() if reserve and estimate > 0 else None
        try:
            result = self.ledger.try_reserve(
                [t.counter for t in found], estimate, reservation_id=rid, expires_at=now + self._ttl, now=now
            )
        except LedgerUnavailable as exc:
            self._health.down(exc)
            return self._health.decision(estimate)
        self._health.up()
        statuses: list[BudgetStatus] = []
        throttling: list[Target] = []
        for target, usage in zip(found, result.usages, strict=True):
            compiled = target.compiled
            used = usage.spent_nanos + usage.reserved_nanos
            if not has_room(usage.spent_nanos, usage.reserved_nanos, estimate, compiled.ledger_limit):
                verdict = _DENY
            elif compiled.throttle is not None and used + estimate >= compiled.throttle:
                verdict = _THROTTLE
                throttling.append(target)
            else:
                verdict = _ALLOW
            statuses.append(self._status(target, usage, verdict))
        if not result.admitted:
            index = result.blocked if result.blocked is not None else 0
            blocking = statuses[index]
            self._alerts.denied(found[index], blocking, now)
            return BudgetDecision(_DENY, deny_reason(blocking, estimate), tuple(statuses), estimate)
        if throttling:
            first = statuses[found.index(throttling[0])]
            model = downgrade(attributes, [t.compiled.budget for t in throttling], self._downgrade_hook)
            throttle_at = throttling[0].compiled.budget.throttle_at
            reason = (
                f"{first.describe()} at {first.used_nanos / first.limit_nanos:.0%} of "
                f"{usd_text(first.limit_nanos)}, throttling from {throttle_at:.0%}"
            )
            if model is not None:
                reason += f"; use {model!r} instead"
            return BudgetDecision(
                _THROTTLE,
                reason,
                tuple(statuses),
                estimate,
                reservation_id=rid,
                wait_s=max(t.compiled.budget.throttle_delay_s for t in throttling),
                model=model,
            )
        return BudgetDecision(_ALLOW, "within budget", tuple(statuses), estimate, reservation_id=rid)

    def _decide(
        self, attributes: Mapping[str, object] | None, estimate_nanos: int, reserve: bool
    ) -> BudgetDecision:
        """``check``, raising ``BudgetDenied`` (a subclass) on deny: shared by ``enforce`` and its twin."""
        decision = self.check(attributes, estimate_nanos=estimate_nanos, reserve=reserve)
        decision.raise_for_denial()
        return decision

    def enforce(
        self,
        attributes: Mapping[str, object] | None = None,
        *,
        estimate_nanos: int = 0,
        reserve: bool = True,
    ) -> BudgetDecision:
        """``check``; then raise ``BudgetDenied`` (a subclass) on deny, or sleep ``wait_s`` if throttled.

        Example: ``manager.enforce(estimate_nanos=manager.estimate_nanos("gpt-4o", input_chars=8000))``.
        """
        decision = self._decide(attributes, estimate_nanos, reserve)
        if decision.wait_s > 0 and decision.verdict is _THROTTLE:
            self._sleep(decision.wait_s)
        return decision

    async def enforce_async(
        self,
        attributes: Mapping[str, object] | None = None,
        *,
        estimate_nanos: int = 0,
        reserve: bool = True,
    ) -> BudgetDecision:
        """``enforce`` for async code: a throttled call awaits instead of blocking the event loop."""
        decision = self._decide(attributes, estimate_nanos, reserve)
        if decision.wait_s > 0 and decision.verdict is _THROTTLE:
            await self._async_sleep(decision.wait_s)
        return decision

    # -- the HTTP capture's pre-call hook ----------------------------------------------------

    def estimate_nanos(
        self,
        model: str | None,
        *,
        provider: str | None = None,
        input_chars: int | None = None,
        input_tokens: int | None = None,
        max_output_tokens: int | None = None,
    ) -> int:
        """Upper estimate of a call's cost from its request, nano-USD.

        Input tokens are ``input_tokens`` or ``input_chars / 4``; output tokens are the request's
        ``max_tokens`` or ``default_output_tokens``; the rates come from the ``rates`` lookup. A model
        without rates gets ``unpriced_estimate_nanos``. Never raises.
        """
        return self._estimator.nanos(model, provider, input_chars, input_tokens, max_output_tokens)

    def _pre_call(
        self,
        attributes: Mapping[str, object] | None,
        model: str | None,
        provider: str | None,
        input_chars: int | None,
        input_tokens: int | None,
        max_output_tokens: int | None,
    ) -> tuple[dict[str, object], int]:
        """The attributes and estimate that ``before_call`` and its async twin check."""
        merged = call_attributes(baggage_attribution() if attributes is None else attributes, model, provider)
        return merged, self._estimator.nanos(model, provider, input_chars, input_tokens, max_output_tokens)

    def before_call(
        self,
        attributes: Mapping[str, object] | None = None,
        *,
        model: str | None,
        provider: str | None = None,
        input_chars: int | None = None,
        input_tokens: int | None = None,
        max_output_tokens: int | None = None,
    ) -> BudgetDecision:
        """The HTTP layer's pre-call hook: estimate, check-and-reserve, wait if throttled, raise if denied.

        Put ``decision.reservation_id`` on the call's span as ``RESERVATION_ID_ATTRIBUTE`` and use
        ``decision.model`` (if set) instead of the requested model. Raises ``BudgetDenied`` subclasses.
        """
        merged, estimate = self._pre_call(
            attributes, model, provider, input_chars, input_tokens, max_output_tokens
        )
        return self.enforce(merged, estimate_nanos=estimate)

    async def before_call_async(
        self,
        attributes: Mapping[str, object] | None = None,
        *,
        model: str | None,
        provider: str | None = None,
        input_chars: int | None = None,
        input_tokens: int | None = None,
        max_output_tokens: int | None = None,
    ) -> BudgetDecision:
        """``before_call`` for async clients (awaits the throttle delay)."""
        merged, estimate = self._pre_call(
            attributes, model, provider, input_chars, input_tokens, max_output_tokens
        )
        return await self.enforce_async(merged, estimate_nanos=estimate)

    # -- spend -------------------------------------------------------------------------------

    def on_span_cost(self, span: ReadableSpan, cost_nanos: int) -> ReadableSpan | None:
        """The ``CostListener`` hook: record a priced span's cost once; the span with its threshold events.

        The span key is its trace id + span id (a second call for the span is a no-op, in every
        process sharing the ledger); the reservation named by ``RESERVATION_ID_ATTRIBUTE`` is
        reconciled. Ended spans are immutable, so when the cost crossed a threshold the result is a
        copy carrying one ``budget.threshold_crossed`` event per threshold; otherwise ``None`` (keep
        the span). While the ledger is unreachable the cost is buffered and replayed. Never raises.

        Example: ``CostSpanProcessor(next_processor, listeners=[manager])``.
        """
        try:
            attributes = span.attributes or {}
            crossings = self._record_span_cost(
                span_key(span),
                attributes,
                cost_nanos,
                reservation_id=span_reservation(attributes),
                resource=span.resource.attributes if span.resource is not None else None,
            )
            return with_threshold_events(span, crossings) if crossings else None
        except Exception:
            logger.exception("budget: recording the cost of ended span %r failed", span.name)
            return None

    def _record_span_cost(
        self,
        key: str,
        attributes: Mapping[str, object],
        cost_nanos: int,
        *,
        reservation_id: str | None = None,
        resource: Mapping[str, object] | None = None,
    ) -> tuple[BudgetAlert, ...]:
        """Record a cost once per ``key``, releasing its reservation; the thresholds it crossed.

        ``resource``: the span's resource attributes, for the cost metric's environment label.
        """
        try:
            if isinstance(cost_nanos, bool) or not isinstance(cost_nanos, int) or cost_nanos < 0:
                logger.error(
                    "budget: ignored span %s with invalid cost_nanos %r (want an int >= 0)", key, cost_nanos
                )
                if reservation_id is not None:
                    self.release(reservation_id)
                return ()
            return self._record(key, attributes, cost_nanos, reservation_id, resource)
        except Exception:
            logger.exception("budget: recording the cost of span %s failed", key)
            return ()

    def _record(
        self,
        key: str,
        attributes: Mapping[str, object],
        cost: int,
        rid: str | None,
        resource: Mapping[str, object] | None = None,
    ) -> tuple[BudgetAlert, ...]:
        now = self._clock()
        found = targets(self._compiled, attributes, now)
        if not found and rid is None:
            self._count(attributes, cost, resource)
            return ()
        pending = Pending(key, tuple(t.counter for t in found), cost, rid, tuple(found))
        if self._health.reason is not None and self._health.skipped():
            self._backlog.add(pending)
            self._count(attributes, cost, resource)
            return ()
        if self._backlog.items:
            self._replay(now)
        try:
            result = self.ledger.commit(
                key, pending.counters, cost, reservation_id=rid, dedup_until=now + self._dedup_ttl, now=now
            )
        except LedgerUnavailable as exc:
            self._health.down(exc)
            self._backlog.add(pending)
            self._count(attributes, cost, resource)
            return ()
        self._health.up()
        if not result.applied:
            return ()
        self._count(attributes, cost, resource)
        self._track(found)
        return self._after_commit(found, result.spent_after, cost, now)

    def _count(
        self, attributes: Mapping[str, object], cost: int, resource: Mapping[str, object] | None
    ) -> None:
        """Add the cost to the cost metric, if this manager has one (so one listener suffices)."""
        if self._metrics is not None:
            self._metrics._count(attributes, cost, resource)

    def _after_commit(
        self, found: Sequence[Target], spent_after: Sequence[int], cost: int, now: float
    ) -> tuple[BudgetAlert, ...]:
        crossings: list[BudgetAlert] = []
        sinks = self._alerts.sinks
        for target, spent in zip(found, spent_after, strict=True):
            previous = self._latest.get(target.counter.key)
            reserved = previous.reserved_nanos if previous is not None else 0
            status = self._status(target, CounterUsage(spent, reserved), Verdict.ALLOW)
            for threshold, level in target.compiled.thresholds:
                if spent < level:
                    break
                alert = make_alert(target, status, threshold, now)
                if spent - cost < level:  # this span's cost crossed it (exactly one commit does)
                    crossings.append(alert)
                if sinks:
                    self._alerts.send_once(target, alert, now)
        return tuple(crossings)

    def release(self, reservation_id: str) -> None:
        """Drop a reservation whose call was never made (or failed before costing anything). Never raises."""
        try:
            self.ledger.release(reservation_id, now=self._clock())
        except LedgerUnavailable as exc:
            self._health.down(exc)  # the reservation expires on its own after reservation_ttl_s
        except Exception:
            logger.exception("budget: releasing reservation %s failed", reservation_id)

    def _replay(self, now: float) -> None:
        """Commit the span costs buffered while the ledger was unreachable."""
        self._backlog.replay(
            self.ledger,
            self._health,
            now,
            now + self._dedup_ttl,
            lambda item, result: self._after_commit(item.targets, result.spent_after, item.cost_nanos, now),
        )

    # -- monitoring --------------------------------------------------------------------------

    def poll(self) -> list[BudgetStatus]:
        """Re-read the usage of every tracked counter, refresh the gauges and send due alerts.

        ``BudgetMonitor`` calls this periodically; it sees spend recorded by other processes.
        Tracked counters: budgets over all spend, and every budget/subject this manager has seen.
        """
        now = self._clock()
        if self._backlog.items and not self._health.skipped():
            self._replay(now)
        with self._lock:
            tracked = list(self._tracked.values())
        statuses: list[BudgetStatus] = []
        for start in range(0, len(tracked), 100):  # bounded keys per ledger call
            chunk = [compiled.target(subject, now) for compiled, subject in tracked[start : start + 100]]
            try:
                usages = self.ledger.usage([t.counter for t in chunk], now=now)
            except LedgerUnavailable as exc:
                self._health.down(exc)
                return statuses
            self._health.up()
            for target, usage in zip(chunk, usages, strict=True):
                status = self._status(target, usage, Verdict.ALLOW)
                statuses.append(status)
                self._alerts.due(target, status, usage.spent_nanos, now)
        return statuses

    def close(self) -> None:
        """Flush and stop the alert sinks that can be closed, then close the ledger. Never raises."""
        self._alerts.close()
        try:
            self.ledger.close()
        except Exception:
            logger.exception("budget: closing the ledger failed")

    def snapshot(self) -> list[BudgetStatus]:
        """The latest known status of every counter seen (no I/O; for the utilization gauges)."""
        return list(self._latest.values())

    def usage(self, attributes: Mapping[str, object]) -> tuple[BudgetStatus, ...]:
        """Current status of every budget applying to ``attributes`` (reads the ledger, reserves nothing)."""
        return self.check(attributes, estimate_nanos=0, reserve=False).statuses

    # -- guard -------------------------------------------------------------------------------

    def guard(
        self,
        estimate: Decimal | None = None,
        *,
        estimate_nanos: int | None = None,
        attributes: Mapping[str, object] | None = None,
    ) -> BudgetGuard:
        """A context manager that enforces the budgets on entry and holds the reservation inside.

        For calls that do not go through the httpx capture. Attributes default to the baggage
        attribution at entry. Inside, ``guard.record(cost_nanos)`` records the actual cost; if
        nothing is recorded the reservation is released on exit (the spans' costs arrive via the
        processor). Works with ``with`` and ``async with``.

        Example::

            with manager.guard(estimate=Decimal("0.02")) as g:
                reply = client.complete(prompt)
                g.record(cost_of(reply))
        """
        return BudgetGuard(self, estimate_arg(estimate, estimate_nanos), attributes)

    def guarded(
        self,
        estimate: Decimal | None = None,
        *,
        estimate_nanos: int | None = None,
        attributes: Mapping[str, object] | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator form of ``guard`` for sync and async functions.

        Example::

            @manager.guarded(estimate=Decimal("0.05"))
            async def summarize(text: str) -> str: ...
        """
        return guarded(self, estimate_arg(estimate, estimate_nanos), attributes)
