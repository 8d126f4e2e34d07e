"""Budget alerts: what crossed which threshold, the sinks that deliver it, and a periodic monitor.

An alert is sent once per budget, subject, window and threshold: the budget manager claims a
dedup marker in the ledger before sending, so with a shared ledger (SQLite, Redis) one process
sends it, whichever saw the crossing first. Sinks never block the caller for long:
``WebhookAlertSink`` posts from a background thread with retries and backoff.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

from otel_costs._money import nanos_to_decimal, nanos_to_usd
from otel_costs.conventions import (
    BUDGET_LIMIT,
    BUDGET_NAME,
    BUDGET_SEVERITY,
    BUDGET_SPENT,
    BUDGET_SUBJECT,
    BUDGET_THRESHOLD,
    BUDGET_WINDOW,
    SEVERITY_CRITICAL,
    SEVERITY_EXCEEDED,
    SEVERITY_WARNING,
)

logger = logging.getLogger(__name__)


#: The default alert thresholds, as fractions of a budget's limit.
DEFAULT_THRESHOLDS: Final = (0.75, 0.9, 1.0)


def usd_text(nanos: int) -> str:
    """An exact USD amount for people: ``$9.10``, ``$0.0105``, ``$1234.567891234`` (2 to 9 decimals)."""
    whole, _, frac = f"{nanos_to_decimal(nanos):f}".partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    return f"${whole}.{frac}"


def severity_of(threshold: float) -> str:
    """``exceeded`` at 100 % and above, ``critical`` from 90 %, ``warning`` below."""
    if threshold >= 1.0:
        return SEVERITY_EXCEEDED
    if threshold >= 0.9:
        return SEVERITY_CRITICAL
    return SEVERITY_WARNING


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """A budget reached one of its thresholds."""

    budget: str
    """Budget name."""
    window: str
    """Window id, e.g. ``day@Europe/Berlin`` or ``rolling:3600s``."""
    window_start: datetime
    """Start of the window instance the alert is about (UTC)."""
    subject: str
    """Who the budget counts, e.g. ``team.id=research``; empty for a budget over all spend."""
    threshold: float
    """The fraction of the limit that was reached (0.75 = 75 %)."""
    severity: str
    """``warning``, ``critical`` or ``exceeded``."""
    spent_nanos: int
    """Spend in the window when the alert fired, nano-USD."""
    limit_nanos: int
    """The budget's limit, nano-USD."""
    at: datetime
    """When the alert fired (UTC)."""
    reason: str = "threshold reached"
    """Why: ``threshold reached`` or ``call denied`` (a hard limit refused a call)."""

    @property
    def utilization(self) -> float:
        """Spent / limit."""
        return self.spent_nanos / self.limit_nanos if self.limit_nanos else 0.0

    @property
    def text(self) -> str:
        """One human line, e.g. for Slack."""
        who = f" for {self.subject}" if self.subject else ""
        return (
            f"[{self.severity.upper()}] budget '{self.budget}'{who} ({self.window}) at "
            f"{self.utilization:.0%}: {usd_text(self.spent_nanos)} of {usd_text(self.limit_nanos)} "
            f"({self.reason})"
        )

    def to_dict(self) -> dict[str, object]:
        """The structured fields (JSON-ready; money as USD strings and nano-USD integers)."""
        return {
            "budget": self.budget,
            "window": self.window,
            "window_start": self.window_start.isoformat(),
            "subject": self.subject,
            "threshold": self.threshold,
            "severity": self.severity,
            "spent_usd": f"{nanos_to_decimal(self.spent_nanos):f}",
            "limit_usd": f"{nanos_to_decimal(self.limit_nanos):f}",
            "spent_nanos": self.spent_nanos,
            "limit_nanos": self.limit_nanos,
            "utilization": round(self.utilization, 6),
            "reason": self.reason,
            "at": self.at.isoformat(),
        }

    def event_attributes(self) -> dict[str, str | float]:
        """Attributes of the ``budget.threshold_crossed`` span event (USD as doubles, the wire form)."""
        return {
            BUDGET_NAME: self.budget,
            BUDGET_WINDOW: self.window,
            BUDGET_SUBJECT: self.subject,
            BUDGET_THRESHOLD: self.threshold,
            BUDGET_SEVERITY: self.severity,
            BUDGET_SPENT: nanos_to_usd(self.spent_nanos),
            BUDGET_LIMIT: nanos_to_usd(self.limit_nanos),
        }


class AlertSink(Protocol):
    """Delivers alerts. ``send`` is called on the thread that detected the alert: return quickly."""

    def send(self, alert: BudgetAlert) -> None:
        """Deliver (or enqueue) one alert."""


class LoggingAlertSink:
    """Logs alerts: ``warning`` at WARNING, ``critical`` and ``exceeded`` at ERROR.

    Example: ``BudgetManager(budgets, alert_sinks=[LoggingAlertSink()])``.
    """

    def __init__(self, *, logger_name: str = "otel_costs.budgets.alerts") -> None:
        self._logger = logging.getLogger(logger_name)

    def send(self, alert: BudgetAlert) -> None:
        level = logging.WARNING if alert.severity == SEVERITY_WARNING else logging.ERROR
        self._logger.log(level, "%s", alert.text, extra={"budget_alert": alert.to_dict()})


#: Sends one HTTP request: (url, body, headers, timeout_s) -> status code; raises OSError on transport errors.
Poster = Callable[[str, bytes, Mapping[str, str], float], int]


def _urllib_post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
    import urllib.error  # here, not at import: only a webhook sink posts
    import urllib.request

    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


class WebhookAlertSink:
    """POSTs alerts as JSON from a background thread, retrying with exponential backoff.

    The payload is Slack-compatible (``{"text": ...}``) and carries the structured fields under
    ``"alert"``. ``send`` only enqueues: a slow or dead webhook never blocks the caller. A full
    queue drops the alert with an error log (the alert is also logged if a ``LoggingAlertSink`` is set).
    Retries on transport errors, 429 and 5xx; gives up after ``max_attempts``.

    Example: ``WebhookAlertSink("https://hooks.slack.com/services/...")``.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        headers: Mapping[str, str] | None = None,
        queue_size: int = 1000,
        poster: Poster | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must start with http:// or https://, got {url!r}")
        if max_attempts < 1 or timeout_s <= 0 or backoff_s < 0 or queue_size < 1:
            raise ValueError("max_attempts and queue_size must be >= 1, timeout_s > 0, backoff_s >= 0")
        self.url = url
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self._post = poster or _urllib_post
        self._stopping = threading.Event()
        self._sleep = sleep or self._stopping.wait
        self._queue: queue.Queue[BudgetAlert | None] = queue.Queue(maxsize=queue_size)
        self.delivered = 0
        """Alerts delivered so far."""
        self.failed = 0
        """Alerts given up on (all attempts failed or the queue was full)."""
        self._thread = threading.Thread(target=self._run, name="otel-costs-webhook", daemon=True)
        self._thread.start()

    @staticmethod
    def payload(alert: BudgetAlert) -> dict[str, object]:
        """The JSON body: Slack's ``text`` plus the structured ``alert`` fields."""
        return {"text": alert.text, "alert": alert.to_dict()}

    def send(self, alert: BudgetAlert) -> None:
        if self._stopping.is_set():
            logger.error("webhook alert sink is closed; dropped alert: %s", alert.text)
            return
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.failed += 1
            logger.error("webhook alert queue is full; dropped alert: %s", alert.text)

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            try:
                if alert is None:
                    return
                self._deliver(alert)
            except Exception:
                logger.exception("webhook alert delivery crashed")
            finally:
                self._queue.task_done()

    def _deliver(self, alert: BudgetAlert) -> None:
        body = json.dumps(self.payload(alert)).encode()
        delay = self._backoff_s
        for attempt in range(1, self._max_attempts + 1):
            try:
                status = self._post(self.url, body, self._headers, self._timeout_s)
                if 200 <= status < 300:
                    self.delivered += 1
                    return
                retryable = status == 429 or status >= 500
                problem = f"HTTP {status}"
            except OSError as exc:
                retryable, problem = True, f"{type(exc).__name__}: {exc}"
            if not retryable or attempt == self._max_attempts:
                self.failed += 1
                logger.error(
                    "webhook alert not delivered after %d attempt(s) (%s): %s", attempt, problem, alert.text
                )
                return
            logger.warning("webhook alert attempt %d failed (%s); retrying in %.2fs", attempt, problem, delay)
            self._sleep(delay)
            delay = min(delay * 2, self._max_backoff_s)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued alert was delivered or given up; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to ``timeout_s``), then stop the thread."""
        if self._stopping.is_set():
            return
        self.flush(timeout_s)
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout_s)


class Pollable(Protocol):
    """What the monitor drives: ``BudgetManager.poll``."""

    def poll(self) -> object:
        """Re-read usage of every known budget counter and send due alerts."""


class BudgetMonitor:
    """Polls a budget manager every ``interval_s`` seconds from a daemon thread (proactive alerts).

    Catches spend recorded by other processes sharing the ledger, and keeps the utilization
    gauges fresh. Stoppable; also a context manager.

    Example::

        with BudgetMonitor(manager, interval_s=60):
            run_service()
    """

    def __init__(self, manager: Pollable, *, interval_s: float = 60.0) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0 seconds, got {interval_s!r}")
        self._manager = manager
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0
        """Completed polls (for health checks and tests)."""

    def start(self) -> BudgetMonitor:
        """Start the thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="otel-costs-budget-monitor", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._manager.poll()
            except Exception:
                logger.exception("budget monitor poll failed")
            self.polls += 1
            self._stop.wait(self.interval_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and wait for it (up to ``timeout_s``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def __enter__(self) -> BudgetMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def utc_from_epoch(seconds: float) -> datetime:
    """Aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(seconds, UTC)
