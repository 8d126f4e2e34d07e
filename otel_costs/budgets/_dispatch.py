"""Sending each budget alert once: the dedup marker claimed in the ledger, then the sinks.

An alert is sent once per budget, subject, window instance and threshold, by whichever process
sharing the ledger claims its marker first; a rolling window (no instances) alerts at most once
per window length.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from otel_costs.budgets._alerts import AlertSink, BudgetAlert, severity_of, utc_from_epoch
from otel_costs.budgets._decisions import BudgetStatus, LedgerHealth
from otel_costs.budgets._targets import Target
from otel_costs.budgets.ledger._base import Ledger, LedgerUnavailable

logger = logging.getLogger("otel_costs.budgets")


def make_alert(
    target: Target, status: BudgetStatus, threshold: float, now: float, reason: str = ""
) -> BudgetAlert:
    """The alert for ``target`` reaching ``threshold`` (a fraction of its limit) at ``now``."""
    return BudgetAlert(
        budget=status.budget,
        window=status.window,
        window_start=utc_from_epoch(target.window_start),
        subject=status.subject,
        threshold=threshold,
        severity=severity_of(threshold),
        spent_nanos=status.spent_nanos,
        limit_nanos=status.limit_nanos,
        at=utc_from_epoch(now),
        reason=reason or "threshold reached",
    )


class AlertDispatch:
    """Hands alerts to the sinks, each once across the processes sharing ``ledger``. Never raises."""

    def __init__(
        self, sinks: Sequence[AlertSink], ledger: Ledger, health: LedgerHealth, max_tracked: int
    ) -> None:
        self.sinks = tuple(sinks)
        self._ledger = ledger
        self._health = health
        self._max_markers = 10 * max_tracked
        self._sent: dict[str, float] = {}
        self._lock = threading.Lock()

    def due(self, target: Target, status: BudgetStatus, spent: int, now: float) -> None:
        """Send every threshold ``spent`` has reached that was not sent for this window before."""
        if not self.sinks:
            return
        for threshold, level in target.compiled.thresholds:
            if spent < level:
                break
            self.send_once(target, make_alert(target, status, threshold, now), now)

    def denied(self, target: Target, status: BudgetStatus, now: float) -> None:
        """A hard limit refused a call: send its 100 % alert (once) with the reason ``call denied``."""
        if not self.sinks or not target.compiled.budget.hard:
            return
        for threshold, _level in target.compiled.thresholds:
            if threshold >= 1.0:
                self.send_once(target, make_alert(target, status, threshold, now, "call denied"), now)
                return

    def send_once(self, target: Target, alert: BudgetAlert, now: float) -> None:
        """Send ``alert`` unless this budget/subject/window/threshold was alerted before (in any process)."""
        window = target.compiled.window
        if window.rolling:
            # A rolling window has no instances: alert at most once per window length.
            marker = f"{target.counter.key}|{alert.threshold!r}"
            until = now + window.position(now).keep_for_s
        else:
            marker = f"{target.counter.key}|{target.counter.write_bucket}|{alert.threshold!r}"
            until = target.counter.keep_until
        known = self._sent.get(marker)
        if known is not None and known > now:
            return
        try:
            claimed = self._ledger.claim_marker(marker, until=until, now=now)
        except LedgerUnavailable as exc:
            self._health.down(exc)
            return  # retried on the next record or monitor poll
        with self._lock:
            if len(self._sent) > self._max_markers:
                self._sent = {k: v for k, v in self._sent.items() if v > now}
            self._sent[marker] = until
        if not claimed:
            return
        for sink in self.sinks:
            try:
                sink.send(alert)
            except Exception:
                logger.exception("budget alert sink %r failed", sink)

    def close(self) -> None:
        """Flush and stop the sinks that can be closed."""
        for sink in self.sinks:
            closer = getattr(sink, "close", None)
            if callable(closer):
                try:
                    closer()
                except Exception:
                    logger.exception("budget: closing alert sink %r failed", sink)
