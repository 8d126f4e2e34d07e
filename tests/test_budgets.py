"""Budgets: configuration, check-and-reserve, enforcement, exactly-once spend, outages, many processes."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import random
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from priced_spans import priced_span, spend, thresholds

import otel_costs
from otel_costs import conventions as conv
from otel_costs.budgets import (
    Budget,
    BudgetConfig,
    BudgetConfigError,
    BudgetDenied,
    BudgetExceeded,
    BudgetManager,
    BudgetUnavailable,
    FailPolicy,
    Verdict,
    WebhookAlertSink,
    current_reservation_id,
)
from otel_costs.budgets.ledger import Ledger, MemoryLedger, RedisLedger, SqliteLedger
from otel_costs.conventions import RESERVATION_ID_ATTRIBUTE
from otel_costs.testing import ManualClock

if TYPE_CHECKING:
    from redis_server import RedisServer

pytest_plugins = ["redis_server"]

USD = 1_000_000_000
TEAM_A = {conv.TEAM_ID: "a"}
TEAM_B = {conv.TEAM_ID: "b"}
START = datetime(2024, 3, 15, 12, 0, tzinfo=UTC)


def team_daily(limit: str = "10", **kwargs: Any) -> Budget:
    """A daily budget per team."""
    return Budget("team-daily", Decimal(limit), per=("team",), window="day", **kwargs)


@pytest.fixture
def clock() -> ManualClock:
    """A manual clock at noon UTC, 15 March 2024."""
    return ManualClock(START)


@pytest.fixture
def sleeps() -> list[float]:
    """Records the delays a manager sleeps (its injected sleep)."""
    return []


def manager_with(
    *budgets: Budget, clock: ManualClock, sleeps: list[float] | None = None, **kwargs: Any
) -> BudgetManager:
    """A manager on the manual clock whose sleeps are recorded instead of slept."""
    record = sleeps if sleeps is not None else []
    return BudgetManager(budgets, clock=clock, sleep=record.append, **kwargs)


# --- configuration -----------------------------------------------------------------------------

TOML = """
timezone = "Europe/Berlin"
on_ledger_error = "closed"
reservation_ttl = "5m"

[alerts]
thresholds = [0.5, 0.75, 1.0]
log = true

[[budgets]]
name = "team-daily"
per = ["team"]
window = "day"
limit_usd = "25.00"
throttle_at = 0.9
throttle_delay = "2s"
downgrade_to = "gpt-4o-mini"

[[budgets]]
name = "research-monthly"
match = { "team.id" = "research" }
window = "month"
timezone = "America/New_York"
limit_usd = 500

[[budgets]]
name = "agent-hourly"
per = ["gen_ai.agent.name"]
window = "1h"
limit_usd = 2.5
hard = false
"""

YAML = """
timezone: Europe/Berlin
on_ledger_error: closed
reservation_ttl: 5m
alerts:
  thresholds: [0.5, 0.75, 1.0]
  log: true
budgets:
  - name: team-daily
    per: [team]
    window: day
    limit_usd: "25.00"
    throttle_at: 0.9
    throttle_delay: 2s
    downgrade_to: gpt-4o-mini
  - name: research-monthly
    match: {team.id: research}
    window: month
    timezone: America/New_York
    limit_usd: 500
  - name: agent-hourly
    per: [gen_ai.agent.name]
    window: 1h
    limit_usd: 2.5
    hard: false
"""


@pytest.mark.parametrize(("suffix", "text"), [(".toml", TOML), (".yaml", YAML)])
def test_config_file_loads_and_validates(tmp_path: Path, suffix: str, text: str) -> None:
    """TOML and YAML files give the same validated configuration, aliases resolved to attribute keys."""
    path = tmp_path / f"budgets{suffix}"
    path.write_text(text)
    config = BudgetConfig.load(path)
    assert config.on_ledger_error is FailPolicy.CLOSED
    assert config.reservation_ttl_s == 300
    daily, research, hourly = config.budgets
    assert daily.per == (conv.TEAM_ID,) and daily.timezone == "Europe/Berlin"
    assert daily.limit_nanos == 25 * USD and daily.throttle_at == 0.9 and daily.throttle_delay_s == 2.0
    assert daily.alert_at == (0.5, 0.75, 1.0) and daily.downgrade_to == "gpt-4o-mini"
    assert dict(research.match) == {conv.TEAM_ID: ("research",)} and research.timezone == "America/New_York"
    assert hourly.limit_usd == Decimal("2.5") and not hourly.hard and hourly.window == "1h"
    manager = BudgetManager.from_config(path)
    assert manager.on_ledger_error is FailPolicy.CLOSED and len(manager.budgets) == 3
    manager.close()


def test_webhook_from_config_is_closed_with_the_manager(tmp_path: Path) -> None:
    """A webhook_url in the file adds a WebhookAlertSink; closing the manager stops its thread.

    Internal: the sink's private thread is read because no public handle shows that it stopped.
    """
    path = tmp_path / "budgets.toml"
    path.write_text(
        '[alerts]\nwebhook_url = "http://127.0.0.1:9/hook"\n[[budgets]]\nname = "all"\nlimit_usd = 1\n'
    )
    manager = BudgetManager.from_config(path)
    (_log_sink, webhook) = manager.alert_sinks
    assert isinstance(webhook, WebhookAlertSink) and webhook.url == "http://127.0.0.1:9/hook"
    manager.close()
    assert not webhook._thread.is_alive()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "x", "limit_usd": "-1"}, "must be positive"),
        ({"name": "x", "limit_usd": "ten"}, "amount in USD"),
        ({"name": "x", "limit_usd": 1, "window": "fortnight"}, "unknown window 'fortnight'"),
        ({"name": "x", "limit_usd": 1, "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"name": "x", "limit_usd": 1, "limt": 2}, r"unknown key\(s\) \['limt'\]"),
        ({"name": "x", "limit_usd": 1, "throttle_at": 1.5}, "throttle_at: expected a fraction"),
        ({"name": "x", "limit_usd": 1, "alert_at": [0]}, "alert_at: expected a fraction"),
        ({"name": "x", "limit_usd": 1, "downgrade_to": "m"}, "set throttle_at too"),
        ({"name": "x", "limit_usd": 1, "per": ["team"], "match": {"team": "a"}}, "in both per and match"),
        ({"name": "a|b", "limit_usd": 1}, "without '|'"),
        ({"limit_usd": 1}, "missing 'name'"),
    ],
)
def test_config_errors_say_what_to_fix(entry: dict[str, Any], message: str) -> None:
    """Each invalid budget entry raises BudgetConfigError naming the entry and the problem."""
    with pytest.raises(BudgetConfigError, match=message) as info:
        BudgetConfig.from_mapping({"budgets": [entry]}, source="budgets.toml")
    assert "budgets.toml: budgets[0]" in str(info.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "add at least one"),
        ({"budgets": [{"name": "x", "limit_usd": 1}] * 2}, "must be unique"),
        ({"budgets": [{"name": "x", "limit_usd": 1}], "on_ledger_error": "maybe"}, "'open' or 'closed'"),
        ({"budgets": [{"name": "x", "limit_usd": 1}], "ledger": {"kind": "etcd"}}, "kind must be"),
        ({"budgets": [{"name": "x", "limit_usd": 1}], "ledger": {"kind": "redis"}}, "url"),
        ({"budgets": [{"name": "x", "limit_usd": 1}], "alerts": {"webhook_url": "ftp://x"}}, "http"),
        ({"budgets": [{"name": "x", "limit_usd": 1}], "extra": 1}, "unknown key"),
    ],
)
def test_config_file_level_errors(data: dict[str, Any], message: str) -> None:
    """File-level mistakes raise BudgetConfigError with the fix in the message."""
    with pytest.raises(BudgetConfigError, match=message):
        BudgetConfig.from_mapping(data)


def test_unreadable_or_malformed_file_is_a_config_error(tmp_path: Path) -> None:
    """A missing file, bad TOML or YAML, or an unknown suffix raise BudgetConfigError naming the file."""
    with pytest.raises(BudgetConfigError, match="cannot read budget file"):
        BudgetConfig.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("budgets = [")
    with pytest.raises(BudgetConfigError, match="not valid TOML"):
        BudgetConfig.load(bad)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("budgets: [\n")
    with pytest.raises(BudgetConfigError, match=r"bad\.yaml: not valid YAML"):
        BudgetConfig.load(bad_yaml)
    other = tmp_path / "budgets.json"
    other.write_text("{}")
    with pytest.raises(BudgetConfigError, match=r"\*.toml, \*.yaml"):
        BudgetConfig.load(other)


def test_ledger_from_config_file(tmp_path: Path) -> None:
    """A [ledger] table opens that ledger (here a SQLite file)."""
    path = tmp_path / "budgets.toml"
    db = tmp_path / "ledger.sqlite3"
    path.write_text(f'[ledger]\nkind = "sqlite"\npath = "{db}"\n[[budgets]]\nname = "all"\nlimit_usd = 1\n')
    manager = BudgetManager.from_config(path)
    assert isinstance(manager.ledger, SqliteLedger) and db.exists()


# --- check, enforce ------------------------------------------------------------------------------


def test_check_reports_usage_and_remaining(clock: ManualClock) -> None:
    """An allowed check reserves the estimate and reports each budget's usage and remaining."""
    manager = manager_with(team_daily("10"), Budget("all", Decimal(100)), clock=clock)
    spend(manager, "s1", TEAM_A, 4 * USD)
    decision = manager.check(TEAM_A, estimate_nanos=USD)
    assert decision.verdict is Verdict.ALLOW and decision.allowed and decision.reservation_id
    team, total = decision.statuses
    assert (team.budget, team.subject, team.window) == ("team-daily", "team.id=a", "day@UTC")
    assert (team.spent_nanos, team.reserved_nanos, team.remaining_nanos) == (4 * USD, 0, 6 * USD)
    assert team.spent_usd == Decimal(4) and team.remaining_usd == Decimal(6) and team.limit_usd == Decimal(10)
    assert team.resets_at == datetime(2024, 3, 16, tzinfo=UTC)
    assert (total.subject, total.remaining_nanos) == ("", 96 * USD)
    again = manager.check(TEAM_A, estimate_nanos=USD)
    assert again.statuses[0].reserved_nanos == USD  # the first call is in flight


def test_deny_when_the_estimate_does_not_fit(clock: ManualClock) -> None:
    """A call whose estimate does not fit is denied, reserves nothing; enforce raises BudgetExceeded."""
    manager = manager_with(team_daily("10"), clock=clock)
    spend(manager, "s1", TEAM_A, 9 * USD)
    decision = manager.check(TEAM_A, estimate_nanos=2 * USD)
    assert decision.verdict is Verdict.DENY and decision.reservation_id is None
    assert decision.blocking is not None and decision.blocking.budget == "team-daily"
    with pytest.raises(BudgetExceeded) as info:
        manager.enforce(TEAM_A, estimate_nanos=2 * USD)
    message = str(info.value)
    for part in ("team-daily", "day@UTC", "team.id=a", "used $9.00", "$10.00 limit", "needs up to $2.00"):
        assert part in message
    assert info.value.decision.verdict is Verdict.DENY
    assert manager.enforce(TEAM_A, estimate_nanos=USD).allowed  # exactly what is left still fits


def test_budgets_are_per_dimension_value(clock: ManualClock) -> None:
    """Team a spending its budget does not affect team b; calls without the attribute are not counted."""
    manager = manager_with(team_daily("1"), clock=clock)
    spend(manager, "s1", TEAM_A, USD)
    assert manager.check(TEAM_A).verdict is Verdict.DENY
    assert manager.check(TEAM_B).verdict is Verdict.ALLOW
    unattributed = manager.check({}, estimate_nanos=5 * USD)
    assert unattributed.verdict is Verdict.ALLOW and unattributed.statuses == ()


@pytest.mark.parametrize(
    ("budget", "attributes", "applies"),
    [
        (Budget("m", Decimal(1), match={"model": ["gpt-4o", "o3"]}), {conv.GEN_AI_REQUEST_MODEL: "o3"}, True),
        (Budget("m", Decimal(1), match={"model": "gpt-4o"}), {conv.GEN_AI_REQUEST_MODEL: "o3"}, False),
        (Budget("t", Decimal(1), match={"team": "42"}), {conv.TEAM_ID: 42}, True),
        (Budget("w", Decimal(1), per=("workflow",)), {conv.WORKFLOW_NAME: "triage"}, True),
        (Budget("u", Decimal(1), per=("user",)), {conv.USER_ID: 42}, True),
        (Budget("g", Decimal(1), per=("agent",)), {conv.AGENT_NAME: "coder"}, True),
        (Budget("c", Decimal(1), per=("tenant",)), {"tenant": "acme"}, True),
        (Budget("c", Decimal(1), per=("tenant",)), {"tenant": ["not", "scalar"]}, False),
    ],
)
def test_budget_matching(
    budget: Budget, attributes: dict[str, object], applies: bool, clock: ManualClock
) -> None:
    """Budgets apply by per-keys (any scalar value) and match-values, using the convention attribute names."""
    decision = manager_with(budget, clock=clock).check(attributes)
    assert bool(decision.statuses) is applies


def test_long_attribute_values_are_not_a_way_around_a_budget(clock: ManualClock) -> None:
    """A very long user id is still counted, and distinct long ids get distinct counters."""
    manager = manager_with(Budget("u", Decimal(1), per=("user",)), clock=clock)
    long_a, long_b = {conv.USER_ID: "a" * 5000}, {conv.USER_ID: "a" * 4999 + "b"}
    spend(manager, "s", long_a, USD)
    assert manager.check(long_a).verdict is Verdict.DENY
    assert manager.check(long_b).verdict is Verdict.ALLOW


def test_throttle_waits_and_swaps_the_model(clock: ManualClock, sleeps: list[float]) -> None:
    """From the throttle threshold, enforce sleeps the configured delay and names the cheaper model."""
    budget = team_daily("10", throttle_at=0.8, throttle_delay_s=1.5, downgrade_to="gpt-4o-mini")
    manager = manager_with(budget, clock=clock, sleeps=sleeps)
    spend(manager, "s1", TEAM_A, 7 * USD)
    assert manager.enforce(TEAM_A, estimate_nanos=USD // 2).verdict is Verdict.ALLOW
    decision = manager.enforce({**TEAM_A, conv.GEN_AI_REQUEST_MODEL: "gpt-4o"}, estimate_nanos=USD // 2)
    assert decision.verdict is Verdict.THROTTLE and decision.allowed
    assert decision.wait_s == 1.5 and decision.model == "gpt-4o-mini" and "gpt-4o-mini" in decision.reason
    assert sleeps == [1.5]
    assert decision.reservation_id is not None  # a throttled call still holds its reservation


def test_downgrade_hook_picks_the_model(clock: ManualClock) -> None:
    """Without downgrade_to, the manager's hook chooses the replacement model for a throttled call."""
    seen: list[tuple[str | None, str]] = []

    def hook(model: str | None, budget: Budget) -> str | None:
        seen.append((model, budget.name))
        return "small-" + (model or "default")

    manager = manager_with(
        team_daily("10", throttle_at=0.5, throttle_delay_s=0), clock=clock, downgrade_hook=hook
    )
    spend(manager, "s1", TEAM_A, 6 * USD)
    decision = manager.check({**TEAM_A, conv.GEN_AI_REQUEST_MODEL: "big"})
    assert decision.model == "small-big" and seen == [("big", "team-daily")]


async def test_enforce_async_awaits_the_throttle(clock: ManualClock) -> None:
    """enforce_async awaits the injected async sleep instead of blocking the event loop."""
    waited: list[float] = []

    async def async_sleep(seconds: float) -> None:
        waited.append(seconds)

    manager = manager_with(team_daily("10", throttle_at=0.5), clock=clock, async_sleep=async_sleep)
    spend(manager, "s1", TEAM_A, 6 * USD)
    decision = await manager.enforce_async(TEAM_A, estimate_nanos=1)
    assert decision.verdict is Verdict.THROTTLE and waited == [1.0]


def test_attributes_default_to_baggage(clock: ManualClock) -> None:
    """Without explicit attributes, check reads the attribution baggage (team set by otel_costs.workflow)."""
    manager = manager_with(team_daily("1"), clock=clock)
    spend(manager, "s1", {conv.TEAM_ID: "billing"}, USD)
    provider = TracerProvider()
    with otel_costs.workflow("support", team_id="billing", tracer_provider=provider):
        decision = manager.check()
    assert decision.verdict is Verdict.DENY and decision.statuses[0].subject == "team.id=billing"
    assert manager.check().statuses == ()  # outside: no attribution, no team budget


# --- spend -------------------------------------------------------------------------------------


def test_spend_is_recorded_exactly_once_and_reconciles_the_reservation(clock: ManualClock) -> None:
    """Recording releases the reservation and adds the actual cost once per span key."""
    manager = manager_with(team_daily("10"), clock=clock)
    decision = manager.check(TEAM_A, estimate_nanos=3 * USD)
    spend(manager, "span-1", TEAM_A, 2 * USD, reservation_id=decision.reservation_id)
    spend(manager, "span-1", TEAM_A, 2 * USD, reservation_id=decision.reservation_id)
    (status,) = manager.usage(TEAM_A)
    assert (status.spent_nanos, status.reserved_nanos) == (2 * USD, 0)


def test_unreconciled_reservations_expire(clock: ManualClock) -> None:
    """A reservation whose call never reports back stops holding budget after the TTL."""
    manager = manager_with(team_daily("10"), clock=clock, reservation_ttl_s=60)
    assert manager.check(TEAM_A, estimate_nanos=10 * USD).allowed
    assert manager.check(TEAM_A, estimate_nanos=USD).verdict is Verdict.DENY
    clock.advance(60)
    assert manager.check(TEAM_A, estimate_nanos=USD).allowed


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_invalid_costs_are_refused_without_raising(
    bad: object, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A cost that is not an int >= 0 is logged and ignored, and its reservation released."""
    manager = manager_with(team_daily("10"), clock=clock)
    decision = manager.check(TEAM_A, estimate_nanos=USD)
    with caplog.at_level(logging.ERROR):
        assert spend(manager, "s", TEAM_A, bad, reservation_id=decision.reservation_id) == ()  # type: ignore[arg-type]
    assert "invalid cost_nanos" in caplog.text
    assert manager.usage(TEAM_A)[0].used_nanos == 0


def test_window_rollover_resets_calendar_budgets(clock: ManualClock) -> None:
    """Spend of one Berlin day no longer counts after local midnight, even across the DST change."""
    clock.set(datetime(2024, 3, 30, 22, 59, tzinfo=UTC))  # 23:59 in Berlin, the day before DST starts
    manager = manager_with(team_daily("1", timezone="Europe/Berlin"), clock=clock)
    spend(manager, "s", TEAM_A, USD)
    assert manager.check(TEAM_A).verdict is Verdict.DENY
    clock.advance(60)  # 00:00 on the 31st in Berlin
    decision = manager.check(TEAM_A)
    assert decision.verdict is Verdict.ALLOW
    assert decision.statuses[0].resets_at == datetime(2024, 3, 31, 22, 0, tzinfo=UTC)  # a 23-hour day


def test_rolling_window_forgets_old_spend(clock: ManualClock) -> None:
    """A rolling 1 h budget admits again once the spend is more than an hour old."""
    manager = manager_with(Budget("hourly", Decimal(1), window="1h"), clock=clock)
    spend(manager, "s", {}, USD)
    clock.advance(59 * 60)
    assert manager.check({}).verdict is Verdict.DENY
    clock.advance(2 * 60)
    assert manager.check({}).verdict is Verdict.ALLOW


def test_model_budget_via_the_http_hook(clock: ManualClock) -> None:
    """before_call estimates with the PriceBook's rates, reserves, and raises when it cannot fit."""
    prices = otel_costs.PriceBook({"gpt-test": {"input": 3, "output": 15}}, use_genai_prices=False)
    manager = manager_with(
        Budget("gpt-test", Decimal("0.02"), match={"model": "gpt-test"}), clock=clock, rates=prices
    )
    # 4000 chars ~ 1000 input tokens at $3/M + 500 output tokens at $15/M = $0.0105
    assert manager.estimate_nanos("gpt-test", input_chars=4000, max_output_tokens=500) == 10_500_000
    assert manager.estimate_nanos("gpt-test", input_tokens=1000, max_output_tokens=0) == 3_000_000
    assert manager.estimate_nanos("unknown-model", input_tokens=10) == 0
    first = manager.before_call(TEAM_A, model="gpt-test", input_chars=4000, max_output_tokens=500)
    assert first.reservation_id is not None and first.estimate_nanos == 10_500_000
    with pytest.raises(BudgetExceeded, match="gpt-test"):
        manager.before_call(TEAM_A, model="gpt-test", input_chars=4000, max_output_tokens=500)
    assert manager.before_call(TEAM_A, model="other", input_chars=4000).statuses == ()


async def test_before_call_async(clock: ManualClock) -> None:
    """The async pre-call hook reserves the estimate like the sync one."""
    prices = otel_costs.PriceBook({"gpt-test": {"input": 3, "output": 15}}, use_genai_prices=False)
    manager = manager_with(Budget("all", Decimal(1)), clock=clock, rates=prices)
    decision = await manager.before_call_async(
        {}, model="gpt-test", input_tokens=1000, max_output_tokens=1000
    )
    assert decision.estimate_nanos == 18_000_000
    assert manager.usage({})[0].reserved_nanos == 18_000_000


def test_processor_listener_records_priced_spans(clock: ManualClock) -> None:
    """As a CostSpanProcessor listener, the manager records each priced span once and reconciles it."""
    manager = manager_with(team_daily("1"), clock=clock)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    prices = otel_costs.PriceBook({"gpt-test": {"input": 3, "output": 15}}, use_genai_prices=False)
    provider.add_span_processor(
        otel_costs.CostSpanProcessor(SimpleSpanProcessor(exporter), price_book=prices, listeners=[manager])
    )
    decision = manager.check(TEAM_A, estimate_nanos=50_000_000)
    attributes = {
        conv.GEN_AI_OPERATION_NAME: "chat",
        conv.GEN_AI_REQUEST_MODEL: "gpt-test",
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 1000,
        conv.TEAM_ID: "a",
        RESERVATION_ID_ATTRIBUTE: decision.reservation_id,
    }
    with provider.get_tracer("t").start_as_current_span("chat gpt-test", attributes=attributes):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None and span.attributes[conv.COST_DIRECT_NANOS] == 18_000_000
    assert manager.usage(TEAM_A)[0].spent_nanos == 18_000_000
    assert manager.usage(TEAM_A)[0].reserved_nanos == 0
    assert manager.on_span_cost(span, 18_000_000) is None  # the same span again: not counted twice
    assert manager.usage(TEAM_A)[0].spent_nanos == 18_000_000


def test_threshold_crossings_become_span_events(clock: ManualClock) -> None:
    """A span whose cost crosses a threshold is handed on as a copy with a budget.threshold_crossed event."""
    manager = manager_with(team_daily("10"), clock=clock)
    crossed = spend(manager, "s1", TEAM_A, 8 * USD)
    assert thresholds(crossed) == [0.75]
    assert [(e.name, (e.attributes or {})["budget.threshold"]) for e in crossed] == [
        ("budget.threshold_crossed", 0.75)
    ]
    assert spend(manager, "s2", TEAM_A, 10**7) == ()  # 80.1 %: nothing new crossed
    ended_span = priced_span("s3", TEAM_A)
    copy = manager.on_span_cost(ended_span, 2 * USD)
    assert (
        copy is not None
        and copy is not ended_span
        and copy.context == ended_span.context
        and copy.attributes == ended_span.attributes
        and copy.end_time == ended_span.end_time
    )
    assert [e.attributes["budget.severity"] for e in copy.events] == ["critical", "exceeded"]  # type: ignore[index]
    assert all(e.timestamp == ended_span.end_time for e in copy.events)


def test_a_failing_record_keeps_the_span_and_never_raises(clock: ManualClock) -> None:
    """on_span_cost with a span it cannot read logs, keeps the span (None) and does not raise."""
    manager = manager_with(team_daily("10"), clock=clock)

    class Broken(ReadableSpan):
        @property
        def attributes(self) -> Any:
            raise RuntimeError("unreadable")

    assert manager.on_span_cost(Broken(name="broken"), USD) is None


# --- guard / guarded --------------------------------------------------------------------------


def test_guard_reserves_inside_and_releases_on_exit(clock: ManualClock) -> None:
    """Inside a guard the reservation holds budget and is current; leaving without recording releases it."""
    manager = manager_with(team_daily("1"), clock=clock)
    with manager.guard(estimate=Decimal("0.6"), attributes=TEAM_A) as guard:
        assert current_reservation_id() == guard.reservation_id is not None
        assert manager.usage(TEAM_A)[0].reserved_nanos == 600_000_000
        with pytest.raises(BudgetExceeded), manager.guard(estimate=Decimal("0.6"), attributes=TEAM_A):
            pass
    assert current_reservation_id() is None
    assert manager.usage(TEAM_A)[0].used_nanos == 0


def test_guard_record_reconciles(clock: ManualClock) -> None:
    """guard.record books the actual cost against the reservation."""
    manager = manager_with(team_daily("1"), clock=clock)
    with manager.guard(estimate_nanos=600_000_000, attributes=TEAM_A) as guard:
        guard.record(250_000_000)
    (status,) = manager.usage(TEAM_A)
    assert (status.spent_nanos, status.reserved_nanos) == (250_000_000, 0)


def test_guarded_decorator_sync_and_async(clock: ManualClock) -> None:
    """@guarded enforces per call for plain and async functions, with the baggage attribution of the call."""
    manager = manager_with(team_daily("1"), clock=clock)
    spend(manager, "s", {conv.TEAM_ID: "billing"}, USD)
    calls: list[str] = []

    @manager.guarded(estimate=Decimal("0.1"))
    def work() -> str:
        calls.append("sync")
        return "done"

    @manager.guarded(estimate=Decimal("0.1"))
    async def awork() -> str:
        calls.append("async")
        return "done"

    assert work() == "done" and asyncio.run(awork()) == "done"
    provider = TracerProvider()
    with otel_costs.workflow("w", team_id="billing", tracer_provider=provider):
        with pytest.raises(BudgetExceeded):
            work()
        with pytest.raises(BudgetExceeded):
            asyncio.run(awork())
    assert calls == ["sync", "async"]


def test_estimate_arguments_are_validated(clock: ManualClock) -> None:
    """Giving both estimates, a negative one, or a non-int nano estimate raises ValueError at once."""
    manager = manager_with(team_daily(), clock=clock)
    with pytest.raises(ValueError, match="not both"):
        manager.guard(estimate=Decimal(1), estimate_nanos=1)
    with pytest.raises(ValueError, match="Decimal USD amount"):
        manager.guard(estimate=Decimal(-1))
    with pytest.raises(ValueError, match="int >= 0"):
        manager.check(TEAM_A, estimate_nanos=1.5)  # type: ignore[arg-type]


# --- ledger outage ---------------------------------------------------------------------------


@contextmanager
def sqlite_locked(path: Path) -> Iterator[None]:
    """Another connection holds the SQLite file's write lock: the ledger cannot be reached meanwhile."""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def assert_policy_applied(manager: BudgetManager, policy: str) -> None:
    """While the ledger is unreachable, decisions follow the policy, say so, and spend is buffered."""
    decision = manager.check(TEAM_A, estimate_nanos=USD)
    assert decision.ledger_unavailable and not manager.ledger_healthy
    assert decision.statuses == () and decision.reservation_id is None
    assert f"fail-{policy}" in decision.reason
    if policy == "open":
        assert decision.verdict is Verdict.ALLOW
        assert manager.enforce(TEAM_A, estimate_nanos=USD).ledger_unavailable
    else:
        assert decision.verdict is Verdict.DENY
        with pytest.raises(BudgetUnavailable, match="fail-closed") as info:
            manager.enforce(TEAM_A, estimate_nanos=USD)
        assert isinstance(info.value, BudgetDenied)
    spend(manager, "during-outage", TEAM_A, 2 * USD)
    assert manager.pending_records == 1


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_sqlite_outage_applies_the_policy_and_replays_spend(
    policy: str, tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """With the SQLite ledger locked, checks fail open or closed; buffered spend is replayed after."""
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path, busy_timeout_s=0.05)
    manager = manager_with(
        team_daily("10"), clock=clock, ledger=ledger, on_ledger_error=policy, ledger_retry_s=0
    )
    spend(manager, "before", TEAM_A, USD)
    with sqlite_locked(path), caplog.at_level(logging.ERROR):
        assert_policy_applied(manager, policy)
    assert "budget ledger unreachable" in caplog.text
    decision = manager.check(TEAM_A)
    assert manager.ledger_healthy and manager.pending_records == 0
    assert decision.statuses[0].spent_nanos == 3 * USD


def test_unreachable_ledger_is_not_asked_again_until_the_retry_interval(
    tmp_path: Path, clock: ManualClock
) -> None:
    """After a failure the manager decides by policy without touching the ledger for ledger_retry_s."""
    path = tmp_path / "ledger.sqlite3"
    manager = manager_with(
        team_daily(), clock=clock, ledger=SqliteLedger(path, busy_timeout_s=0.05), ledger_retry_s=3600
    )
    with sqlite_locked(path):
        assert manager.check(TEAM_A).ledger_unavailable
    assert manager.check(TEAM_A).ledger_unavailable  # the lock is gone, but the retry interval is not over


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["open", "closed"])
def test_redis_outage_applies_the_policy_and_replays_spend(
    policy: str, redis_server_factory: Callable[[], RedisServer], clock: ManualClock
) -> None:
    """Redis stopped mid-test: decisions follow the fail policy; spend is replayed when Redis is back."""
    server = redis_server_factory()
    ledger = RedisLedger(server.url, timeout_s=0.5)
    manager = manager_with(
        team_daily("10"), clock=clock, ledger=ledger, on_ledger_error=policy, ledger_retry_s=0
    )
    assert manager.check(TEAM_A, estimate_nanos=USD).verdict is Verdict.ALLOW
    server.stop()
    assert_policy_applied(manager, policy)
    server.start()  # same port, empty: the test server persists nothing
    decision = manager.check(TEAM_A)
    assert manager.ledger_healthy and manager.pending_records == 0
    assert decision.statuses[0].spent_nanos == 2 * USD


def test_full_outage_buffer_counts_what_it_drops(tmp_path: Path, clock: ManualClock) -> None:
    """Beyond max_pending buffered records, spend is dropped, logged and counted, never raised."""
    path = tmp_path / "ledger.sqlite3"
    manager = manager_with(
        team_daily(),
        clock=clock,
        ledger=SqliteLedger(path, busy_timeout_s=0.05),
        max_pending=1,
        ledger_retry_s=0,
    )
    with sqlite_locked(path):
        spend(manager, "a", TEAM_A, 5)
        spend(manager, "b", TEAM_A, 7)
    assert manager.pending_records == 1 and manager.dropped_spend_nanos == 7


# --- concurrency -------------------------------------------------------------------------------


def test_threads_cannot_overshoot_with_reservations(clock: ManualClock) -> None:
    """Eight threads making reserved calls never push spend past the limit (actuals <= estimates)."""
    limit = 100_000_000
    manager = manager_with(Budget("shared", Decimal("0.1")), clock=clock)
    barrier = threading.Barrier(8)
    spent: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        rng = random.Random(n)
        barrier.wait()
        for i in range(200):
            estimate = rng.randint(100_000, 500_000)
            decision = manager.check({}, estimate_nanos=estimate)
            if decision.allowed:
                actual = estimate * rng.randint(50, 100) // 100
                spend(manager, f"{n}-{i}", {}, actual, reservation_id=decision.reservation_id)
                with lock:
                    spent.append(actual)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (status,) = manager.usage({})
    assert status.spent_nanos == sum(spent) <= limit
    assert status.reserved_nanos == 0


def _spend_worker(
    kind: str, location: str, prefix: str, seed: int, calls: int, limit_nanos: int, start: Any, results: Any
) -> None:
    """One process of the multi-process test: reserved calls with actuals of 50-120 % of the estimate."""
    ledger: Ledger = SqliteLedger(location) if kind == "sqlite" else RedisLedger(location, prefix=prefix)
    manager = BudgetManager([Budget("shared", Decimal(limit_nanos) / USD)], ledger=ledger)
    rng = random.Random(seed)
    spent = admitted = denied = biggest = 0
    start.wait()
    for i in range(calls):
        estimate = rng.randint(1_000_000, 5_000_000)
        decision = manager.check({}, estimate_nanos=estimate)
        if not decision.allowed:
            denied += 1
            continue
        actual = estimate * rng.randint(50, 120) // 100
        spend(manager, f"{seed}-{i}", {}, actual, reservation_id=decision.reservation_id)
        spent, admitted, biggest = spent + actual, admitted + 1, max(biggest, estimate)
    results.put((spent, admitted, denied, biggest))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_four_processes_share_one_budget(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """4 processes x 500 reserved calls: spend equals the sum of actuals; overshoot <= one reservation."""
    limit = 2_500_000_000
    if kind == "sqlite":
        location, prefix = str(tmp_path / "ledger.sqlite3"), ""
        ledger: Ledger = SqliteLedger(location)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        location, prefix = server.url, f"t{uuid.uuid4().hex}"
        ledger = RedisLedger(location, prefix=prefix)
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(4), ctx.Queue()
    workers = [
        ctx.Process(target=_spend_worker, args=(kind, location, prefix, seed, 500, limit, start, results))
        for seed in range(4)
    ]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=300) for _ in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    spent = sum(o[0] for o in outcomes)
    biggest = max(o[3] for o in outcomes)
    manager = BudgetManager([Budget("shared", Decimal(limit) / USD)], ledger=ledger)
    (status,) = manager.usage({})
    assert status.spent_nanos == spent
    assert status.reserved_nanos == 0
    assert spent - limit <= biggest
    assert sum(o[2] for o in outcomes) > 0  # the limit was reached: some calls were denied
    assert sum(o[1] for o in outcomes) > 500


def test_usage_of_unknown_subject_is_zero(clock: ManualClock) -> None:
    """A subject never seen has a full budget left."""
    (status,) = manager_with(team_daily("3"), clock=clock).usage({conv.TEAM_ID: "new"})
    assert status.remaining_nanos == 3 * USD and status.utilization == 0.0
    assert (status.spent_nanos, status.reserved_nanos) == (0, 0)


def test_memory_ledger_is_the_default(clock: ManualClock) -> None:
    """Without a ledger argument the manager counts in memory."""
    assert isinstance(manager_with(team_daily(), clock=clock).ledger, MemoryLedger)


# --- import ----------------------------------------------------------------------------------

_IMPORT_PROBE = """
import json, pathlib, sys, types
root = types.ModuleType("otel_costs")
root.__path__ = [sys.argv[1]]
sys.modules["otel_costs"] = root
import otel_costs.budgets, otel_costs.budgets.ledger, otel_costs.metrics
print(json.dumps(sorted(sys.modules)))
"""

#: Packages ``import otel_costs.budgets`` must not load (heavy, or not needed until used).
_HEAVY = (
    "redis",
    "genai_prices",
    "grpc",
    "google.protobuf",
    "yaml",
    "urllib.request",
    "otel_costs.pricing",
)


def test_importing_budgets_loads_no_redis_client_and_no_price_data() -> None:
    """``import otel_costs.budgets`` (with its ledgers, and metrics) loads no Redis client, price data, grpc.

    Internal: the root package is replaced by an empty one in a fresh interpreter, so the test sees
    what the budgets, ledger and metrics packages themselves import, whatever the root imports.
    """
    import json
    import subprocess
    import sys

    package = str(Path(otel_costs.__file__).parent)
    probe = [sys.executable, "-c", _IMPORT_PROBE, package]
    out = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=True)
    loaded = json.loads(out.stdout)
    assert "otel_costs.budgets.ledger._redis" in loaded  # RedisLedger is there, the redis package is not
    assert [m for m in loaded if any(m == h or m.startswith(h + ".") for h in _HEAVY)] == []
