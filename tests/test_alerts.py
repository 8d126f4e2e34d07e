"""Budget alerts: thresholds, dedup across processes, the logging and webhook sinks, the monitor.

``severity_of`` and ``usd_text`` are internal: tested directly because every sink's message is built
from them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from infra import free_port
from priced_spans import spend

from otel_costs import conventions as conv
from otel_costs.budgets import (
    Budget,
    BudgetAlert,
    BudgetManager,
    BudgetMonitor,
    LoggingAlertSink,
    WebhookAlertSink,
)
from otel_costs.budgets._alerts import severity_of, usd_text
from otel_costs.budgets.ledger import Ledger, MemoryLedger, RedisLedger, SqliteLedger
from otel_costs.testing import ManualClock

if TYPE_CHECKING:
    from redis_server import RedisServer

pytest_plugins = ["redis_server"]

USD = 1_000_000_000
TEAM_A = {conv.TEAM_ID: "a"}


class CollectingSink:
    """An alert sink that keeps what it is sent and lets a test wait for it."""

    def __init__(self) -> None:
        self.alerts: list[BudgetAlert] = []
        self._changed = threading.Condition()

    def send(self, alert: BudgetAlert) -> None:
        with self._changed:
            self.alerts.append(alert)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[BudgetAlert]:
        """Block until ``count`` alerts arrived; fail the test after ``timeout`` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.alerts) >= count, timeout):
                pytest.fail(f"expected {count} alerts within {timeout}s, got {self.alerts}")
            return list(self.alerts)


def sample_alert(threshold: float = 0.9) -> BudgetAlert:
    """A critical alert of team a's daily budget."""
    return BudgetAlert(
        budget="team-daily",
        window="day@UTC",
        window_start=datetime(2024, 3, 15, tzinfo=UTC),
        subject="team.id=a",
        threshold=threshold,
        severity=severity_of(threshold),
        spent_nanos=9_100_000_000,
        limit_nanos=10 * USD,
        at=datetime(2024, 3, 15, 12, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("threshold", "severity"),
    [(0.5, "warning"), (0.75, "warning"), (0.9, "critical"), (1.0, "exceeded"), (1.2, "exceeded")],
)
def test_severity_of(threshold: float, severity: str) -> None:
    """Below 90 % is a warning, from 90 % critical, from 100 % exceeded.

    Internal: ``severity_of`` is private; it is the one rule behind every alert's severity.
    """
    assert severity_of(threshold) == severity


def test_alert_renders_text_fields_and_event_attributes() -> None:
    """An alert has a human line, structured JSON fields with exact money, and span-event attributes."""
    alert = sample_alert()
    assert (
        alert.text == "[CRITICAL] budget 'team-daily' for team.id=a (day@UTC) at 91%: "
        "$9.10 of $10.00 (threshold reached)"
    )
    fields = alert.to_dict()
    assert fields["spent_usd"] == "9.100000000" and fields["spent_nanos"] == 9_100_000_000
    assert fields["utilization"] == 0.91 and fields["window_start"] == "2024-03-15T00:00:00+00:00"
    json.dumps(fields)
    event = alert.event_attributes()
    assert (
        event["budget.spent"] == 9.1
        and event["budget.limit"] == 10.0
        and event["budget.severity"] == "critical"
    )


@pytest.mark.parametrize(
    ("nanos", "text"),
    [
        (9_100_000_000, "$9.10"),
        (10_500_000, "$0.0105"),
        (1, "$0.000000001"),
        (0, "$0.00"),
        (12 * USD, "$12.00"),
    ],
)
def test_usd_text_is_exact_and_short(nanos: int, text: str) -> None:
    """Amounts for people keep every significant nano-dollar and at least two decimals.

    Internal: ``usd_text`` is private; it writes every amount in alert texts and denial messages.
    """
    assert usd_text(nanos) == text


def test_logging_sink_levels(caplog: pytest.LogCaptureFixture) -> None:
    """Warnings log at WARNING, critical and exceeded at ERROR, with the structured fields attached."""
    sink = LoggingAlertSink()
    with caplog.at_level(logging.WARNING, logger="otel_costs.budgets.alerts"):
        sink.send(sample_alert(0.75))
        sink.send(sample_alert(1.0))
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.ERROR]
    assert caplog.records[1].budget_alert["severity"] == "exceeded"  # type: ignore[attr-defined]


# --- webhook -------------------------------------------------------------------------------


class Webhook:
    """A real HTTP server on loopback answering with scripted status codes and keeping the bodies."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[dict[str, Any]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.bodies.append(json.loads(body))
                outer.arrived.set()
                outer.hold.wait(10)
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A webhook server, answering 200 unless a test scripts otherwise."""
    hook = Webhook([])
    yield hook
    hook.close()


def test_webhook_retries_with_backoff_then_delivers(webhook: Webhook) -> None:
    """5xx and 429 answers are retried with doubling delays; the Slack-style payload arrives intact."""
    webhook.statuses[:] = [503, 429, 200]
    delays: list[float] = []
    sink = WebhookAlertSink(webhook.url, backoff_s=0.5, sleep=delays.append)
    sink.send(sample_alert())
    assert sink.flush(10)
    assert (sink.delivered, sink.failed, delays) == (1, 0, [0.5, 1.0])
    assert len(webhook.bodies) == 3
    body = webhook.bodies[-1]
    assert body["text"] == sample_alert().text
    assert body["alert"]["budget"] == "team-daily" and body["alert"]["severity"] == "critical"
    sink.close()


def test_webhook_gives_up_on_client_errors(webhook: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    """A 4xx answer (other than 429) is not retried; the alert is counted failed and logged."""
    webhook.statuses[:] = [400]
    sink = WebhookAlertSink(webhook.url, sleep=lambda s: None)
    with caplog.at_level(logging.ERROR):
        sink.send(sample_alert())
        assert sink.flush(10)
    assert (sink.delivered, sink.failed, len(webhook.bodies)) == (0, 1, 1)
    assert "not delivered after 1 attempt(s) (HTTP 400)" in caplog.text
    sink.close()


def test_webhook_unreachable_is_retried_then_given_up() -> None:
    """A refused connection is retried up to max_attempts, then the alert is counted failed."""
    delays: list[float] = []
    sink = WebhookAlertSink(
        f"http://127.0.0.1:{free_port()}/", max_attempts=3, backoff_s=0.1, sleep=delays.append
    )
    sink.send(sample_alert())
    assert sink.flush(10)
    assert (sink.delivered, sink.failed, delays) == (0, 1, [0.1, 0.2])
    sink.close()


def test_webhook_send_never_blocks_the_caller(webhook: Webhook) -> None:
    """While the webhook server hangs, send returns at once (delivery runs on the sink's thread)."""
    webhook.hold.clear()
    sink = WebhookAlertSink(webhook.url, timeout_s=10)
    sink.send(sample_alert(0.75))
    assert webhook.arrived.wait(10)
    started = time.monotonic()
    sink.send(sample_alert(0.9))
    sink.send(sample_alert(1.0))
    assert time.monotonic() - started < 0.5
    webhook.hold.set()
    sink.close()
    assert sink.delivered == 3 and [b["alert"]["threshold"] for b in webhook.bodies] == [0.75, 0.9, 1.0]


def test_webhook_sink_validates_its_arguments() -> None:
    """A non-http URL or a zero attempt count is refused at construction."""
    with pytest.raises(ValueError, match="http"):
        WebhookAlertSink("hooks.slack.com/x")
    with pytest.raises(ValueError, match="max_attempts"):
        WebhookAlertSink("http://127.0.0.1:1/", max_attempts=0)


# --- thresholds and dedup ----------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.slow)])
def shared_ledgers(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Ledger, Ledger]:
    """Two handles on one ledger store, as two processes would hold."""
    if request.param == "memory":
        ledger = MemoryLedger()
        return ledger, ledger
    if request.param == "sqlite":
        return SqliteLedger(tmp_path / "l.sqlite3"), SqliteLedger(tmp_path / "l.sqlite3")
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix = f"t{uuid.uuid4().hex}"
    return RedisLedger(server.url, prefix=prefix), RedisLedger(server.url, prefix=prefix)


def test_each_threshold_alerts_once_across_processes(shared_ledgers: tuple[Ledger, Ledger]) -> None:
    """Two managers on one ledger send each threshold of a window once between them, whoever sees it first."""
    clock = ManualClock(datetime(2024, 3, 15, 12, tzinfo=UTC))
    budget = Budget("team-daily", Decimal(10), per=("team",))
    sinks = CollectingSink(), CollectingSink()
    first, second = (
        BudgetManager([budget], ledger=ledger, alert_sinks=[sink], clock=clock)
        for ledger, sink in zip(shared_ledgers, sinks, strict=True)
    )
    spend(first, "s1", TEAM_A, 8 * USD)  # 80 %: warning, sent by the first
    spend(second, "s2", TEAM_A, USD // 2)  # 85 %: the warning was sent already
    spend(second, "s3", TEAM_A, 3 * USD // 2)  # 100 %: critical and exceeded, by the second
    spend(first, "s4", TEAM_A, USD)  # 110 %: everything was sent
    assert [(a.threshold, a.severity) for a in sinks[0].alerts] == [(0.75, "warning")]
    assert [(a.threshold, a.severity) for a in sinks[1].alerts] == [(0.9, "critical"), (1.0, "exceeded")]
    assert sinks[1].alerts[-1].spent_nanos == 10 * USD
    clock.advance(86400)  # a new day, a new window: alerts again
    spend(first, "s5", TEAM_A, 8 * USD)
    assert [a.threshold for a in sinks[0].alerts] == [0.75, 0.75]


def test_a_denied_call_sends_the_exceeded_alert_once() -> None:
    """A hard limit refusing a call alerts 'exceeded' (reason: call denied) before spend reaches 100 %."""
    clock = ManualClock(datetime(2024, 3, 15, 12, tzinfo=UTC))
    sink = CollectingSink()
    manager = BudgetManager([Budget("all", Decimal(1), alert_at=(1.0,))], alert_sinks=[sink], clock=clock)
    spend(manager, "s", {}, 950_000_000)
    assert not manager.check({}, estimate_nanos=100_000_000).allowed
    assert not manager.check({}, estimate_nanos=100_000_000).allowed
    (alert,) = sink.alerts
    assert (alert.severity, alert.reason, alert.spent_nanos) == ("exceeded", "call denied", 950_000_000)


def test_rolling_window_alerts_at_most_once_per_window_length() -> None:
    """A rolling budget staying over a threshold alerts once, and again only a window length later."""
    clock = ManualClock(1_700_000_000.0)
    sink = CollectingSink()
    budget = Budget("hourly", Decimal(1), window="1h", hard=False, alert_at=(0.75,))
    manager = BudgetManager([budget], alert_sinks=[sink], clock=clock)
    spend(manager, "a", {}, 800_000_000)
    clock.advance(45 * 60)
    spend(manager, "b", {}, 800_000_000)  # 160 %, still the same alert
    assert len(sink.alerts) == 1
    clock.advance(16 * 60)  # "a" left the window; "b" alone keeps it over 75 %
    spend(manager, "c", {}, 1)
    assert [(a.threshold, a.spent_nanos) for a in sink.alerts] == [(0.75, 800_000_000), (0.75, 800_000_001)]


def test_a_failing_sink_does_not_stop_the_others() -> None:
    """A sink that raises is logged; the next sink still gets the alert, and recording does not raise."""

    class BrokenSink:
        def send(self, alert: BudgetAlert) -> None:
            raise RuntimeError("sink down")

    sink = CollectingSink()
    manager = BudgetManager([Budget("all", Decimal(1))], alert_sinks=[BrokenSink(), sink])
    spend(manager, "s", {}, USD)
    assert [a.threshold for a in sink.alerts] == [0.75, 0.9, 1.0]


# --- monitor ---------------------------------------------------------------------------------


def test_monitor_alerts_on_spend_recorded_elsewhere(tmp_path: Path) -> None:
    """A monitoring manager polling a shared ledger alerts on spend another process recorded."""
    budgets = [Budget("all", Decimal(10)), Budget("research", Decimal(10), match={"team": "research"})]
    worker = BudgetManager(budgets, ledger=SqliteLedger(tmp_path / "l.sqlite3"))
    sink = CollectingSink()
    watcher = BudgetManager(budgets, ledger=SqliteLedger(tmp_path / "l.sqlite3"), alert_sinks=[sink])
    spend(worker, "s", {conv.TEAM_ID: "research"}, 9 * USD)
    with BudgetMonitor(watcher, interval_s=0.01) as monitor:
        alerts = sink.wait_for(2)
    assert monitor.polls >= 1
    assert sorted((a.budget, a.threshold) for a in alerts) == [("all", 0.75), ("all", 0.9)]
    research = BudgetManager(budgets, ledger=SqliteLedger(tmp_path / "l.sqlite3"), alert_sinks=[sink])
    research.check({conv.TEAM_ID: "research"})  # a subject this manager has seen is tracked from now on
    statuses = research.poll()
    assert {(s.budget, s.subject, s.spent_nanos) for s in statuses} == {
        ("all", "", 9 * USD),
        ("research", "team.id=research", 9 * USD),
    }
    assert sorted((a.budget, a.threshold) for a in sink.alerts) == [
        ("all", 0.75),
        ("all", 0.9),
        ("research", 0.75),
        ("research", 0.9),
    ]


def test_monitor_survives_a_failing_poll_and_stops() -> None:
    """A poll that raises is logged and the monitor keeps polling until stopped."""
    polled = threading.Semaphore(0)

    class Failing:
        def poll(self) -> object:
            polled.release()
            raise RuntimeError("ledger on fire")

    monitor = BudgetMonitor(Failing(), interval_s=0.01).start()
    assert polled.acquire(timeout=10) and polled.acquire(timeout=10)
    monitor.stop()
    assert monitor.polls >= 2
    with pytest.raises(ValueError, match="interval_s"):
        BudgetMonitor(Failing(), interval_s=0)
