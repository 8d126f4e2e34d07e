"""Budgets that act before the call: allow, throttle or deny an LLM call, per team, user, workflow, agent.

A ``Budget`` is a limit in USD over a window (a calendar day or month in a time zone, or a
rolling ``1h``/``24h``), for the calls whose attributes match it: ``per=("team.id",)`` keeps one
counter per team, ``match={"team.id": "research"}`` counts only that team, neither counts all
spend. The ``BudgetManager`` checks every applicable budget before a call, atomically reserving
the call's estimated cost in the ledger, and records the actual cost exactly once per span when
the call's span ends, releasing the reservation. So concurrent calls overshoot a limit by at
most what their actual costs exceed their estimates.

Money is integer nano-USD (``_money``) everywhere the ledger adds or compares.

Example::

    manager = BudgetManager([Budget("team-daily", Decimal("25"), per=("team.id",), window="day")])
    decision = manager.enforce({"team.id": "research"}, estimate_nanos=50_000_000)  # may raise BudgetExceeded
    ...  # make the call
    manager.record_span_cost(span_key, span_attributes, cost_nanos, reservation_id=decision.reservation_id)
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import inspect
import itertools
import logging
import math
import os
import threading
import time
import tomllib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Final, ParamSpec, Protocol, TypeVar, cast

import yaml
from opentelemetry import trace
from opentelemetry.sdk.trace import Event, ReadableSpan

from otel_costs._money import nanos_to_decimal, to_nanos
from otel_costs.attribution._scopes import current_attribution
from otel_costs.budgets._alerts import (
    DEFAULT_THRESHOLDS,
    AlertSink,
    BudgetAlert,
    LoggingAlertSink,
    WebhookAlertSink,
    severity_of,
    usd_text,
    utc_from_epoch,
)
from otel_costs.budgets._windows import (
    Clock,
    Window,
    WindowError,
    WindowPosition,
    load_zone,
    parse_duration,
    parse_window,
    system_clock,
)
from otel_costs.budgets.ledger._ledgers import (
    Counter,
    CounterUsage,
    Ledger,
    LedgerUnavailable,
    MemoryLedger,
    RedisLedger,
    SqliteLedger,
    has_room,
)
from otel_costs.conventions import (
    AGENT_ID,
    AGENT_NAME,
    BAGGAGE_TO_ATTRIBUTE,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    TEAM_ID,
    THRESHOLD_EVENT,
    USER_ID,
    WORKFLOW_ID,
    WORKFLOW_NAME,
)

if TYPE_CHECKING:
    from otel_costs.metrics._cost_metrics import CostMetrics

from otel_costs.conventions import (
    RESERVATION_ID_ATTRIBUTE,
)

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


#: Short names accepted in ``per`` and ``match`` for the attribution keys of ``_conventions``.
DIMENSION_ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "team": TEAM_ID,
        "user": USER_ID,
        "workflow": WORKFLOW_NAME,
        "workflow_id": WORKFLOW_ID,
        "agent": AGENT_NAME,
        "agent_id": AGENT_ID,
        "model": GEN_AI_REQUEST_MODEL,
        "provider": GEN_AI_PROVIDER_NAME,
    }
)

#: Longest attribute value used verbatim in a counter key; longer ones are shortened with a hash
#: (never dropped: dropping would let a long user id slip past its budget).
_MAX_KEY_VALUE: Final = 200

# Reservation ids: a random per-process prefix and a counter (cheaper than a ULID on the hot
# path); a forked child draws a new prefix so it never reuses its parent's ids.
_rid_prefix = os.urandom(6).hex() + "-"
_rid_counter = itertools.count()


def _new_reservation_id() -> str:
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


class BudgetConfigError(ValueError):
    """A budget configuration that cannot be used; the message says which entry and what to fix."""


class Verdict(StrEnum):
    """What a budget check decided."""

    ALLOW = "allow"
    THROTTLE = "throttle"
    DENY = "deny"


class FailPolicy(StrEnum):
    """What a check decides when the ledger is unreachable."""

    OPEN = "open"
    """Allow the call, unchecked (availability first); the decision is flagged ``ledger_unavailable``."""
    CLOSED = "closed"
    """Deny the call (spend control first); ``enforce`` raises ``BudgetUnavailable``."""


# --- configuration --------------------------------------------------------------------------


def _resolve_key(key: object, where: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise BudgetConfigError(f"{where}: an attribute key must be a non-empty string, got {key!r}")
    return DIMENSION_ALIASES.get(key, key)


def _fraction(value: object, where: str, *, upper: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value <= upper):
        raise BudgetConfigError(
            f"{where}: expected a fraction of the limit in (0, {upper:g}] such as 0.9, got {value!r}"
        )
    return float(value)


@dataclass(frozen=True)
class Budget:
    """A spending limit over a window for the calls whose attributes match.

    Example: ``Budget("research-monthly", Decimal("500"), window="month", match={"team": "research"},
    timezone="Europe/Berlin", throttle_at=0.9, downgrade_to="gpt-4o-mini")``.
    """

    name: str
    """Unique name; part of every ledger key (letters, digits, ``-_.:``)."""
    limit_usd: Decimal | int
    """The budget, USD (> 0). Thresholds are fractions of it."""
    window: str = "day"
    """``day`` or ``month`` (calendar, in ``timezone``) or a rolling duration: ``1h``, ``24h``, ``30m``."""
    timezone: str = "UTC"
    """IANA time zone of calendar windows (e.g. ``Europe/Berlin``); when the day or month resets."""
    per: tuple[str, ...] = ()
    """Attribute keys (or aliases ``team``, ``user``, ``workflow``, ``agent``, ``model``...) with one counter
    per distinct value; calls without one of these attributes are not counted by this budget."""
    match: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    """Attribute key -> value(s) the call must have to be counted (one counter shared by all matches)."""
    alert_at: tuple[float, ...] = DEFAULT_THRESHOLDS
    """Alert thresholds as fractions of the limit (0.75 warning, 0.9 critical, 1.0 exceeded)."""
    throttle_at: float | None = None
    """Fraction of the limit from which calls are throttled (delayed, maybe downgraded); ``None``: never."""
    throttle_delay_s: float = 1.0
    """Seconds a throttled call waits before it proceeds."""
    downgrade_to: str | None = None
    """Model a throttled call should use instead (returned as ``BudgetDecision.model``)."""
    hard: bool = True
    """Deny calls that would exceed the limit; False makes a soft budget (alerts and throttle only)."""

    def __post_init__(self) -> None:
        where = f"budget {self.name!r}"
        if not isinstance(self.name, str) or not self.name or any(c in self.name for c in "|\n{}"):
            raise BudgetConfigError(
                f"budget name must be a non-empty string without '|', braces or newlines: {self.name!r}"
            )
        if isinstance(self.limit_usd, bool) or not isinstance(self.limit_usd, Decimal | int):
            raise BudgetConfigError(
                f"{where}: limit_usd must be a Decimal or int, e.g. Decimal('25.00'), got {self.limit_usd!r}"
            )
        if (
            not Decimal(self.limit_usd).is_finite()
            or self.limit_usd <= 0
            or to_nanos(Decimal(self.limit_usd)) <= 0
        ):
            raise BudgetConfigError(f"{where}: limit_usd must be a positive amount, got {self.limit_usd!r}")
        try:
            load_zone(self.timezone)
            parse_window(self.window, self.timezone)
        except WindowError as exc:
            raise BudgetConfigError(f"{where}: {exc}") from None
        if isinstance(self.per, str):
            raise BudgetConfigError(f"{where}: per must be a list of attribute keys, e.g. per=('team.id',)")
        per = tuple(_resolve_key(k, where) for k in self.per)
        if len(set(per)) != len(per):
            raise BudgetConfigError(f"{where}: per lists an attribute twice: {list(self.per)}")
        if not isinstance(self.match, Mapping):
            raise BudgetConfigError(
                f"{where}: match must map attribute keys to values, e.g. {{'team.id': 'research'}}"
            )
        match: dict[str, tuple[str, ...]] = {}
        for key, value in self.match.items():
            values = (value,) if isinstance(value, str) else value
            if not isinstance(values, Sequence) or not values or not all(isinstance(v, str) for v in values):
                raise BudgetConfigError(
                    f"{where}: match[{key!r}] must be a string or a non-empty list of strings"
                )
            resolved = _resolve_key(key, where)
            if resolved in per:
                raise BudgetConfigError(f"{where}: {resolved!r} is in both per and match; keep one")
            match[resolved] = tuple(values)
        alert_at = tuple(sorted({_fraction(t, f"{where}: alert_at", upper=10.0) for t in self.alert_at}))
        throttle_at = (
            None
            if self.throttle_at is None
            else _fraction(self.throttle_at, f"{where}: throttle_at", upper=1.0)
        )
        delay = self.throttle_delay_s
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not (0 <= delay <= 3600):
            raise BudgetConfigError(
                f"{where}: throttle_delay_s must be between 0 and 3600 seconds, got {delay!r}"
            )
        if self.downgrade_to is not None and (
            not isinstance(self.downgrade_to, str) or not self.downgrade_to
        ):
            raise BudgetConfigError(f"{where}: downgrade_to must be a model name, got {self.downgrade_to!r}")
        if self.downgrade_to is not None and throttle_at is None:
            raise BudgetConfigError(f"{where}: downgrade_to applies to throttled calls: set throttle_at too")
        if not isinstance(self.hard, bool):
            raise BudgetConfigError(f"{where}: hard must be true or false, got {self.hard!r}")
        object.__setattr__(self, "per", per)
        object.__setattr__(self, "match", MappingProxyType(match))
        object.__setattr__(self, "alert_at", alert_at)
        object.__setattr__(self, "throttle_at", throttle_at)
        object.__setattr__(self, "throttle_delay_s", float(delay))

    @property
    def limit_nanos(self) -> int:
        """The limit in nano-USD."""
        return to_nanos(Decimal(self.limit_usd))


@dataclass(frozen=True)
class LedgerConfig:
    """Which ledger a configuration file asks for."""

    kind: str = "memory"
    """``memory``, ``sqlite`` or ``redis``."""
    path: str | None = None
    """SQLite file (``sqlite``)."""
    url: str | None = None
    """Redis URL (``redis``), e.g. ``redis://127.0.0.1:6379/0``."""
    prefix: str = "otel_costs"
    """Redis key prefix (``redis``)."""

    def create(self) -> Ledger:
        """Open the ledger."""
        if self.kind == "sqlite":
            assert self.path is not None
            return SqliteLedger(self.path)
        if self.kind == "redis":
            assert self.url is not None
            return RedisLedger(self.url, prefix=self.prefix)
        return MemoryLedger()


@dataclass(frozen=True)
class BudgetConfig:
    """A validated budget configuration (budgets and manager settings), e.g. loaded from a file."""

    budgets: tuple[Budget, ...]
    """The budgets, in file order."""
    on_ledger_error: FailPolicy = FailPolicy.OPEN
    """Decision when the ledger is unreachable."""
    reservation_ttl_s: float = 600.0
    """Seconds a reservation holds budget if its call never reports back."""
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    """The ledger to open."""
    alert_log: bool = True
    """Log alerts (``LoggingAlertSink``)."""
    webhook_url: str | None = None
    """POST alerts here (``WebhookAlertSink``), e.g. a Slack incoming webhook."""

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BudgetConfig:
        """Read and validate a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file.

        Example: ``BudgetConfig.load("budgets.toml")``.
        """
        file = Path(path)
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise BudgetConfigError(f"cannot read budget file {str(file)!r}: {exc.strerror or exc}") from None
        suffix = file.suffix.lower()
        try:
            if suffix == ".toml":
                data: object = tomllib.loads(raw.decode())
            elif suffix in (".yaml", ".yml"):
                data = yaml.safe_load(raw) or {}
            else:
                raise BudgetConfigError(f"{file}: name the budget file *.toml, *.yaml or *.yml")
        except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
            raise BudgetConfigError(f"{file}: not valid {suffix[1:].upper()}: {exc}") from None
        if not isinstance(data, Mapping):
            raise BudgetConfigError(f"{file}: the top level must be a table/mapping with a 'budgets' list")
        return cls.from_mapping(data, source=str(file))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "budget config") -> BudgetConfig:
        """Validate a parsed configuration (the structure of the TOML/YAML file, see ``docs/budgets.md``)."""
        _known(data, _TOP_KEYS, source)
        timezone = _str(data.get("timezone", "UTC"), f"{source}: timezone")
        alerts = data.get("alerts", {})
        if not isinstance(alerts, Mapping):
            raise BudgetConfigError(f"{source}: [alerts] must be a table")
        _known(alerts, _ALERT_KEYS, f"{source}: [alerts]")
        thresholds = alerts.get("thresholds", DEFAULT_THRESHOLDS)
        entries = data.get("budgets")
        if not isinstance(entries, list) or not entries:
            raise BudgetConfigError(f"{source}: add at least one [[budgets]] entry (a list under 'budgets')")
        budgets = tuple(
            _budget_from(entry, i, source, timezone, thresholds) for i, entry in enumerate(entries)
        )
        names = [b.name for b in budgets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise BudgetConfigError(f"{source}: budget names must be unique; repeated: {duplicates}")
        policy = data.get("on_ledger_error", "open")
        if policy not in ("open", "closed"):
            raise BudgetConfigError(f"{source}: on_ledger_error must be 'open' or 'closed', got {policy!r}")
        try:
            ttl = parse_duration(data.get("reservation_ttl", 600))
        except WindowError as exc:
            raise BudgetConfigError(f"{source}: reservation_ttl: {exc}") from None
        if ttl <= 0:
            raise BudgetConfigError(f"{source}: reservation_ttl must be > 0")
        log = alerts.get("log", True)
        if not isinstance(log, bool):
            raise BudgetConfigError(f"{source}: [alerts] log must be true or false")
        webhook = alerts.get("webhook_url")
        if webhook is not None and (
            not isinstance(webhook, str) or not webhook.startswith(("http://", "https://"))
        ):
            raise BudgetConfigError(f"{source}: [alerts] webhook_url must be an http(s) URL, got {webhook!r}")
        return cls(
            budgets=budgets,
            on_ledger_error=FailPolicy(policy),
            reservation_ttl_s=ttl,
            ledger=_ledger_from(data.get("ledger", {}), source),
            alert_log=log,
            webhook_url=webhook,
        )


_TOP_KEYS: Final = ("timezone", "on_ledger_error", "reservation_ttl", "ledger", "alerts", "budgets")
_ALERT_KEYS: Final = ("thresholds", "log", "webhook_url")
_LEDGER_KEYS: Final = ("kind", "path", "url", "prefix")
_BUDGET_KEYS: Final = (
    "name",
    "limit_usd",
    "window",
    "timezone",
    "per",
    "match",
    "alert_at",
    "throttle_at",
    "throttle_delay",
    "downgrade_to",
    "hard",
)


def _known(table: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    unknown = sorted(str(k) for k in table if k not in known)
    if unknown:
        raise BudgetConfigError(f"{where}: unknown key(s) {unknown}; known keys: {list(known)}")


def _str(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise BudgetConfigError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _usd(value: object, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BudgetConfigError(f'{where}: write an amount in USD such as "25.00", got {value!r}')
    try:
        # repr() of a float is its shortest round-trip form: 0.1 -> Decimal("0.1"), not the binary expansion.
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise BudgetConfigError(f'{where}: write an amount in USD such as "25.00", got {value!r}') from None
    if not amount.is_finite() or amount <= 0:
        raise BudgetConfigError(f"{where}: the amount must be positive, got {value!r}")
    return amount


def _budget_from(entry: object, index: int, source: str, timezone: str, thresholds: object) -> Budget:
    where = f"{source}: budgets[{index}]"
    if not isinstance(entry, Mapping):
        raise BudgetConfigError(f"{where}: each budget must be a table/mapping")
    if "name" in entry and isinstance(entry["name"], str):
        where = f"{where} ({entry['name']!r})"
    _known(entry, _BUDGET_KEYS, where)
    for required in ("name", "limit_usd"):
        if required not in entry:
            raise BudgetConfigError(f"{where}: missing {required!r}")
    per = entry.get("per", [])
    if isinstance(per, str):
        per = [per]
    alert_at = entry.get("alert_at", thresholds)
    if not isinstance(per, list) or not isinstance(alert_at, list | tuple):
        raise BudgetConfigError(f"{where}: per and alert_at must be lists")
    try:
        delay = parse_duration(entry.get("throttle_delay", 1.0))
    except WindowError as exc:
        raise BudgetConfigError(f"{where}: throttle_delay: {exc}") from None
    try:
        return Budget(
            name=_str(entry["name"], f"{where}: name"),
            limit_usd=_usd(entry["limit_usd"], f"{where}: limit_usd"),
            window=_str(entry.get("window", "day"), f"{where}: window"),
            timezone=_str(entry.get("timezone", timezone), f"{where}: timezone"),
            per=tuple(per),
            match=entry.get("match", {}),
            alert_at=tuple(alert_at),
            throttle_at=entry.get("throttle_at"),
            throttle_delay_s=delay,
            downgrade_to=entry.get("downgrade_to"),
            hard=entry.get("hard", True),
        )
    except BudgetConfigError as exc:
        raise BudgetConfigError(f"{where}: {exc}") from None


def _ledger_from(table: object, source: str) -> LedgerConfig:
    where = f"{source}: [ledger]"
    if not isinstance(table, Mapping):
        raise BudgetConfigError(f"{where} must be a table")
    _known(table, _LEDGER_KEYS, where)
    kind = table.get("kind", "memory")
    if kind == "sqlite":
        return LedgerConfig(kind, path=_str(table.get("path"), f"{where} path (the SQLite file)"))
    if kind == "redis":
        url = _str(table.get("url"), f"{where} url (e.g. 'redis://127.0.0.1:6379/0')")
        return LedgerConfig(kind, url=url, prefix=_str(table.get("prefix", "otel_costs"), f"{where} prefix"))
    if kind == "memory":
        return LedgerConfig()
    raise BudgetConfigError(f"{where} kind must be 'memory', 'sqlite' or 'redis', got {kind!r}")


# --- decisions ------------------------------------------------------------------------------


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
    """Pass to ``record_span_cost`` (or ``release``) when the call ends; ``None``: nothing reserved."""
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


# --- the manager ----------------------------------------------------------------------------


class RateTierLike(Protocol):
    """The rates that apply to one call (``_pricing.RateTier`` has these), USD per 1M tokens."""

    @property
    def input(self) -> Decimal: ...
    @property
    def output(self) -> Decimal: ...


class ModelRatesLike(Protocol):
    """Per-1M-token USD rates of a model (``_pricing.ModelRates`` has these)."""

    @property
    def per_request(self) -> Decimal: ...
    def for_input_tokens(self, input_tokens: int) -> RateTierLike: ...


class RateLookup(Protocol):
    """Finds a model's rates (``_pricing.PriceBook`` is one)."""

    def model_prices(
        self, model: str, provider: str | None = None, *, at: datetime | None = None
    ) -> ModelRatesLike | None: ...


#: Picks a cheaper model for a throttled call: (current model or None, throttling budget) -> model or None.
DowngradeHook = Callable[[str | None, Budget], str | None]


class _Compiled:
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
        self._targets: dict[str, _Target] = {}

    def target(self, subject: str, now: float) -> _Target:
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
            found = _Target(
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


def _scalar_text(value: object) -> str | None:
    """An attribute value as text (``42`` -> ``"42"``, ``True`` -> ``"true"``); ``None``: not a scalar."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def _key_value(value: object) -> str | None:
    """An attribute value as it appears in a counter key; ``None`` when absent or not a scalar."""
    text = _scalar_text(value)
    if text is None:
        return None
    if len(text) > _MAX_KEY_VALUE:
        text = text[:64] + "#" + hashlib.sha256(text.encode()).hexdigest()[:32]
    return text.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("=", "\\=")


@dataclass(frozen=True, slots=True)
class _Target:
    compiled: _Compiled
    subject: str
    display: str
    counter: Counter
    resets_at: datetime | None
    window_start: float


@dataclass(slots=True)
class _Pending:
    span_key: str
    counters: tuple[Counter, ...]
    cost_nanos: int
    reservation_id: str | None
    targets: tuple[_Target, ...]


def baggage_attribution() -> dict[str, str]:
    """The attribution in the current OTel baggage, keyed by span attribute (``BAGGAGE_TO_ATTRIBUTE``)."""
    return {BAGGAGE_TO_ATTRIBUTE[key]: value for key, value in current_attribution().items()}


# Enum members as module constants: a class attribute lookup on an Enum costs more on the hot path.
_ALLOW, _THROTTLE, _DENY = Verdict.ALLOW, Verdict.THROTTLE, Verdict.DENY

#: Most subjects a budget keeps prepared counters for, per window position.
_MAX_CACHED_TARGETS: Final = 10_000

_NO_BUDGET: Final = BudgetDecision(Verdict.ALLOW, "no budget applies", (), 0)


class BudgetManager:
    """Checks, reserves and records spend against budgets in a ledger; sends alerts.

    Thread-safe. ``check`` never raises for ledger trouble (the fail policy decides);
    ``enforce``/``guard``/``guarded`` raise ``BudgetExceeded`` or ``BudgetUnavailable`` on denial.

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
        if not all(isinstance(b, Budget) for b in budget_list):
            raise BudgetConfigError("budgets must be Budget objects (or use BudgetManager.from_config)")
        names = [b.name for b in budget_list]
        if len(set(names)) != len(names):
            raise BudgetConfigError(f"budget names must be unique: {names}")
        try:
            policy = FailPolicy(on_ledger_error)
        except ValueError:
            raise BudgetConfigError(
                f"on_ledger_error must be 'open' or 'closed', got {on_ledger_error!r}"
            ) from None
        for label, value in (("reservation_ttl_s", reservation_ttl_s), ("dedup_ttl_s", dedup_ttl_s)):
            if not value > 0:
                raise BudgetConfigError(f"{label} must be > 0 seconds, got {value!r}")
        if ledger_retry_s < 0 or default_output_tokens < 0 or unpriced_estimate_nanos < 0:
            raise BudgetConfigError(
                "ledger_retry_s, default_output_tokens and unpriced_estimate_nanos must be >= 0"
            )
        if max_pending < 0 or max_tracked < 1:
            raise BudgetConfigError("max_pending must be >= 0 and max_tracked >= 1")
        self.budgets: tuple[Budget, ...] = tuple(budget_list)
        self._compiled = tuple(_Compiled(b) for b in budget_list)
        self.ledger: Ledger = ledger if ledger is not None else MemoryLedger()
        self.on_ledger_error = policy
        self._ttl = float(reservation_ttl_s)
        self._dedup_ttl = float(dedup_ttl_s)
        self._sinks = tuple(alert_sinks)
        self._rates = rates
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._downgrade_hook = downgrade_hook
        self._default_output_tokens = default_output_tokens
        self._unpriced_estimate = unpriced_estimate_nanos
        self._retry_s = ledger_retry_s
        self._down_until = 0.0
        self._down_reason: str | None = None
        self._lock = threading.Lock()
        self._pending: deque[_Pending] = deque()
        self._max_pending = max_pending
        self.dropped_spend_nanos = 0
        """Spend that could not be recorded nor buffered (ledger down and buffer full), nano-USD."""
        self._alerted: dict[str, float] = {}
        self._tracked: dict[str, tuple[_Compiled, str]] = {}
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
            sinks: list[AlertSink] = []
            if cfg.alert_log:
                sinks.append(LoggingAlertSink())
            if cfg.webhook_url:
                sinks.append(WebhookAlertSink(cfg.webhook_url))
            alert_sinks = sinks
        kwargs.setdefault("on_ledger_error", cfg.on_ledger_error)
        kwargs.setdefault("reservation_ttl_s", cfg.reservation_ttl_s)
        return cls(cfg.budgets, ledger=ledger or cfg.ledger.create(), alert_sinks=alert_sinks, **kwargs)

    # -- targets ---------------------------------------------------------------------------

    def _targets(self, attributes: Mapping[str, object], now: float) -> list[_Target]:
        targets: list[_Target] = []
        for compiled in self._compiled:
            matched = True
            for key, allowed in compiled.match:
                if _scalar_text(attributes.get(key)) not in allowed:
                    matched = False
                    break
            if not matched:
                continue
            if compiled.per:
                parts: list[str] = []
                for key in compiled.per:
                    text = _key_value(attributes.get(key))
                    if text is None:
                        matched = False
                        break
                    parts.append(f"{key}={text}")
                if not matched:
                    continue
                targets.append(compiled.target(",".join(parts), now))
            else:
                targets.append(compiled.target("", now))
        return targets

    def _track(self, targets: Sequence[_Target]) -> None:
        tracked = self._tracked
        for target in targets:
            key = target.counter.key
            if key not in tracked:
                with self._lock:
                    if len(tracked) >= self._max_tracked:
                        tracked.pop(next(iter(tracked)))
                    tracked[key] = (target.compiled, target.subject)

    def _status(self, target: _Target, usage: CounterUsage, verdict: Verdict) -> BudgetStatus:
        status = BudgetStatus(
            budget=target.compiled.budget.name,
            window=target.compiled.window.id,
            subject=target.display,
            verdict=verdict,
            limit_nanos=target.compiled.limit,
            spent_nanos=usage.spent_nanos,
            reserved_nanos=usage.reserved_nanos,
            resets_at=target.resets_at,
            hard=target.compiled.budget.hard,
        )
        self._latest[target.counter.key] = status
        return status

    # -- ledger health -----------------------------------------------------------------------

    @property
    def ledger_healthy(self) -> bool:
        """False while the ledger is considered unreachable (for ``ledger_retry_s`` after a failure)."""
        return self._down_reason is None

    @property
    def pending_records(self) -> int:
        """Span costs buffered while the ledger was unreachable, to be replayed."""
        return len(self._pending)

    def _ledger_skipped(self) -> bool:
        return self._down_reason is not None and time.monotonic() < self._down_until

    def _mark_down(self, exc: Exception) -> None:
        first = self._down_reason is None
        self._down_reason = f"{type(exc).__name__}: {exc}"
        self._down_until = time.monotonic() + self._retry_s
        if first:
            logger.error(
                "budget ledger unreachable (%s); failing %s until it answers again",
                self._down_reason,
                self.on_ledger_error.value,
            )

    def _mark_up(self) -> None:
        if self._down_reason is not None:
            logger.warning("budget ledger reachable again after: %s", self._down_reason)
            self._down_reason = None

    def _unavailable(self, estimate_nanos: int, cause: str | None = None) -> BudgetDecision:
        reason = f"budget ledger unavailable ({cause or self._down_reason})"
        if self.on_ledger_error is FailPolicy.OPEN:
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
            return self._unavailable(estimate_nanos, f"internal error: {type(exc).__name__}: {exc}")

    def _check(self, attributes: Mapping[str, object], estimate: int, reserve: bool) -> BudgetDecision:
        now = self._clock()
        targets = self._targets(attributes, now)
        if not targets:
            return (
                _NO_BUDGET
                if estimate == 0
                else BudgetDecision(Verdict.ALLOW, "no budget applies", (), estimate)
            )
        self._track(targets)
        if self._ledger_skipped():
            return self._unavailable(estimate)
        if self._pending:
            self._flush_pending(now)
        rid = _new_reservation_id() if reserve and estimate > 0 else None
        counters = [t.counter for t in targets]
        try:
            result = self.ledger.try_reserve(
                counters, estimate, reservation_id=rid, expires_at=now + self._ttl, now=now
            )
        except LedgerUnavailable as exc:
            self._mark_down(exc)
            return self._unavailable(estimate)
        self._mark_up()
        statuses: list[BudgetStatus] = []
        throttling: list[_Target] = []
        denied: _Target | None = None
        for target, usage in zip(targets, result.usages, strict=True):
            compiled = target.compiled
            used = usage.spent_nanos + usage.reserved_nanos
            if not has_room(usage.spent_nanos, usage.reserved_nanos, estimate, compiled.ledger_limit):
                verdict = _DENY
                denied = denied or target
            elif compiled.throttle is not None and used + estimate >= compiled.throttle:
                verdict = _THROTTLE
                throttling.append(target)
            else:
                verdict = _ALLOW
            statuses.append(self._status(target, usage, verdict))
        if not result.admitted:
            index = result.blocked if result.blocked is not None else 0
            blocking = statuses[index]
            self._alert_denied(targets[index], blocking, now)
            return BudgetDecision(_DENY, _deny_reason(blocking, estimate), tuple(statuses), estimate)
        if throttling:
            first = statuses[targets.index(throttling[0])]
            model = self._downgrade(attributes, throttling)
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

    def _downgrade(self, attributes: Mapping[str, object], throttling: Sequence[_Target]) -> str | None:
        current = attributes.get(GEN_AI_REQUEST_MODEL)
        model = current if isinstance(current, str) else None
        for target in throttling:
            budget = target.compiled.budget
            choice = budget.downgrade_to
            if choice is None and self._downgrade_hook is not None:
                try:
                    choice = self._downgrade_hook(model, budget)
                except Exception:
                    logger.exception("budget downgrade hook failed; keeping the model")
            if choice is not None and choice != model:
                return choice
        return None

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
        decision = self.check(attributes, estimate_nanos=estimate_nanos, reserve=reserve)
        decision.raise_for_denial()
        if decision.verdict is Verdict.THROTTLE and decision.wait_s > 0:
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
        decision = self.check(attributes, estimate_nanos=estimate_nanos, reserve=reserve)
        decision.raise_for_denial()
        if decision.verdict is Verdict.THROTTLE and decision.wait_s > 0:
            await self._async_sleep(decision.wait_s)
        return decision

    # -- estimates and the HTTP layer's hook ------------------------------------------------------

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
        try:
            if model is None or self._rates is None:
                return self._unpriced_estimate
            rates = self._rates.model_prices(model, provider=provider)
            if rates is None:
                return self._unpriced_estimate
            tokens_in = max(
                0, input_tokens if input_tokens is not None else math.ceil((input_chars or 0) / 4)
            )
            tokens_out = max(
                0, max_output_tokens if max_output_tokens is not None else self._default_output_tokens
            )
            tier = rates.for_input_tokens(tokens_in)
            usd = (tokens_in * tier.input + tokens_out * tier.output) / 1_000_000 + rates.per_request
            return max(0, to_nanos(usd))
        except Exception:
            logger.exception("budget estimate failed for model %r; using the unpriced estimate", model)
            return self._unpriced_estimate

    def _call_attributes(
        self, attributes: Mapping[str, object] | None, model: str | None, provider: str | None
    ) -> dict[str, object]:
        merged: dict[str, object] = dict(baggage_attribution() if attributes is None else attributes)
        if model is not None:
            merged.setdefault(GEN_AI_REQUEST_MODEL, model)
        if provider is not None:
            merged.setdefault(GEN_AI_PROVIDER_NAME, provider)
        return merged

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
        estimate = self.estimate_nanos(
            model,
            provider=provider,
            input_chars=input_chars,
            input_tokens=input_tokens,
            max_output_tokens=max_output_tokens,
        )
        return self.enforce(self._call_attributes(attributes, model, provider), estimate_nanos=estimate)

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
        estimate = self.estimate_nanos(
            model,
            provider=provider,
            input_chars=input_chars,
            input_tokens=input_tokens,
            max_output_tokens=max_output_tokens,
        )
        return await self.enforce_async(
            self._call_attributes(attributes, model, provider), estimate_nanos=estimate
        )

    # -- spend -------------------------------------------------------------------------------

    def record_span_cost(
        self,
        span_key: str,
        attributes: Mapping[str, object],
        cost_nanos: int,
        *,
        reservation_id: str | None = None,
        span: trace.Span | None = None,
    ) -> tuple[BudgetAlert, ...]:
        """Record a billable span's cost, exactly once per ``span_key``; release its reservation.

        Called by ``CostSpanProcessor`` as billable spans end (``span_key`` e.g. trace id + span id
        in hex). A second call with the same key is a no-op, in every process sharing the ledger.
        Returns the thresholds this span's cost crossed; when ``span`` is given and still recording,
        a ``budget.threshold_crossed`` event is added to it for each. While the ledger is unreachable
        the cost is buffered and replayed later. Never raises.
        """
        try:
            if isinstance(cost_nanos, bool) or not isinstance(cost_nanos, int) or cost_nanos < 0:
                logger.error(
                    "budget: ignored span %s with invalid cost_nanos %r (want an int >= 0)",
                    span_key,
                    cost_nanos,
                )
                if reservation_id is not None:
                    self.release(reservation_id)
                return ()
            crossings = self._record(span_key, attributes, cost_nanos, reservation_id)
            if crossings and span is not None and span.is_recording():
                for alert in crossings:
                    span.add_event(THRESHOLD_EVENT, alert.event_attributes())
            return crossings
        except Exception:
            logger.exception("budget: recording the cost of span %s failed", span_key)
            return ()

    def on_span_cost(self, span: ReadableSpan, cost_nanos: int) -> None:
        """A ``CostSpanProcessor`` cost listener: record an ended billable span's cost. Never raises.

        Example: ``CostSpanProcessor(next_processor, cost_listeners=[manager.on_span_cost])``.
        Threshold alerts reach the sinks; to also export the span events, use ``record_ended_span``.
        """
        self.record_ended_span(span, cost_nanos)

    def record_ended_span(self, span: ReadableSpan, cost_nanos: int) -> ReadableSpan:
        """Record an ended billable span's cost; return the span to hand on, with threshold events.

        The span key is its trace id + span id; the reservation id is read from
        ``RESERVATION_ID_ATTRIBUTE``. Ended spans are immutable, so when the cost crossed a threshold
        the result is a copy carrying one ``budget.threshold_crossed`` event per threshold; otherwise
        it is ``span`` itself. Never raises.
        """
        try:
            attributes = span.attributes or {}
            context = span.context
            if context is not None and context.is_valid:
                key = f"{context.trace_id:032x}{context.span_id:016x}"
            else:
                key = f"{span.name}@{span.start_time}-{span.end_time}"
            rid = attributes.get(RESERVATION_ID_ATTRIBUTE)
            crossings = self.record_span_cost(
                key, attributes, cost_nanos, reservation_id=rid if isinstance(rid, str) and rid else None
            )
            return with_threshold_events(span, crossings) if crossings else span
        except Exception:
            logger.exception("budget: recording the cost of ended span %r failed", span.name)
            return span

    def _record(
        self, span_key: str, attributes: Mapping[str, object], cost: int, rid: str | None
    ) -> tuple[BudgetAlert, ...]:
        now = self._clock()
        targets = self._targets(attributes, now)
        if not targets and rid is None:
            if self._metrics is not None:
                self._metrics.record_cost(attributes, cost)
            return ()
        pending = _Pending(span_key, tuple(t.counter for t in targets), cost, rid, tuple(targets))
        if self._ledger_skipped():
            self._buffer(pending)
            if self._metrics is not None:
                self._metrics.record_cost(attributes, cost)
            return ()
        if self._pending:
            self._flush_pending(now)
        try:
            result = self.ledger.commit(
                span_key,
                pending.counters,
                cost,
                reservation_id=rid,
                dedup_until=now + self._dedup_ttl,
                now=now,
            )
        except LedgerUnavailable as exc:
            self._mark_down(exc)
            self._buffer(pending)
            if self._metrics is not None:
                self._metrics.record_cost(attributes, cost)
            return ()
        self._mark_up()
        if not result.applied:
            return ()
        if self._metrics is not None:
            self._metrics.record_cost(attributes, cost)
        self._track(targets)
        return self._after_commit(targets, result.spent_after, cost, now)

    def _after_commit(
        self, targets: Sequence[_Target], spent_after: Sequence[int], cost: int, now: float
    ) -> tuple[BudgetAlert, ...]:
        crossings: list[BudgetAlert] = []
        for target, spent in zip(targets, spent_after, strict=True):
            previous = self._latest.get(target.counter.key)
            reserved = previous.reserved_nanos if previous is not None else 0
            status = self._status(target, CounterUsage(spent, reserved), Verdict.ALLOW)
            for threshold, level in target.compiled.thresholds:
                if spent < level:
                    break
                alert = self._alert(target, status, threshold, now)
                if spent - cost < level:  # this span's cost crossed it (exactly one commit does)
                    crossings.append(alert)
                if self._sinks:
                    self._send_once(target, alert, now)
        return tuple(crossings)

    def release(self, reservation_id: str) -> None:
        """Drop a reservation whose call was never made (or failed before costing anything). Never raises."""
        try:
            self.ledger.release(reservation_id, now=self._clock())
        except LedgerUnavailable as exc:
            self._mark_down(exc)  # the reservation expires on its own after reservation_ttl_s
        except Exception:
            logger.exception("budget: releasing reservation %s failed", reservation_id)

    def _buffer(self, pending: _Pending) -> None:
        with self._lock:
            if len(self._pending) >= self._max_pending:
                self.dropped_spend_nanos += pending.cost_nanos
                logger.error(
                    "budget: ledger unreachable and %d span costs already buffered; dropped span %s ($%s)",
                    len(self._pending),
                    pending.span_key,
                    nanos_to_decimal(pending.cost_nanos),
                )
                return
            self._pending.append(pending)

    def _flush_pending(self, now: float) -> None:
        """Replay buffered span costs into the ledger, oldest first; stops at the first failure."""
        while True:
            with self._lock:
                if not self._pending:
                    return
                item = self._pending.popleft()
            try:
                result = self.ledger.commit(
                    item.span_key,
                    item.counters,
                    item.cost_nanos,
                    reservation_id=item.reservation_id,
                    dedup_until=now + self._dedup_ttl,
                    now=now,
                )
            except LedgerUnavailable as exc:
                with self._lock:
                    self._pending.appendleft(item)
                self._mark_down(exc)
                return
            if result.applied:
                self._after_commit(item.targets, result.spent_after, item.cost_nanos, now)

    # -- alerts ------------------------------------------------------------------------------

    def _alert(
        self, target: _Target, status: BudgetStatus, threshold: float, now: float, reason: str = ""
    ) -> BudgetAlert:
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

    def _send_once(self, target: _Target, alert: BudgetAlert, now: float) -> None:
        """Send ``alert`` unless this budget/subject/window/threshold was alerted before (in any process)."""
        window = target.compiled.window
        if window.rolling:
            # A rolling window has no instances: alert at most once per window length.
            marker = f"{target.counter.key}|{alert.threshold!r}"
            until = now + target.compiled.window.position(now).keep_for_s
        else:
            marker = f"{target.counter.key}|{target.counter.write_bucket}|{alert.threshold!r}"
            until = target.counter.keep_until
        known = self._alerted.get(marker)
        if known is not None and known > now:
            return
        try:
            claimed = self.ledger.claim_marker(marker, until=until, now=now)
        except LedgerUnavailable as exc:
            self._mark_down(exc)
            return  # retried on the next record or monitor poll
        with self._lock:
            if len(self._alerted) > 10 * self._max_tracked:
                self._alerted = {k: v for k, v in self._alerted.items() if v > now}
            self._alerted[marker] = until
        if not claimed:
            return
        for sink in self._sinks:
            try:
                sink.send(alert)
            except Exception:
                logger.exception("budget alert sink %r failed", sink)

    def _alert_denied(self, target: _Target, status: BudgetStatus, now: float) -> None:
        if not self._sinks or not target.compiled.budget.hard:
            return
        for threshold, _level in target.compiled.thresholds:
            if threshold >= 1.0:
                self._send_once(target, self._alert(target, status, threshold, now, "call denied"), now)
                return

    def poll(self) -> list[BudgetStatus]:
        """Re-read the usage of every tracked counter, refresh the gauges and send due alerts.

        ``BudgetMonitor`` calls this periodically; it sees spend recorded by other processes.
        Tracked counters: budgets over all spend, and every budget/subject this manager has seen.
        """
        now = self._clock()
        if self._pending and not self._ledger_skipped():
            self._flush_pending(now)
        with self._lock:
            tracked = list(self._tracked.values())
        statuses: list[BudgetStatus] = []
        for start in range(0, len(tracked), 100):  # bounded keys per ledger call
            chunk = tracked[start : start + 100]
            targets = [compiled.target(subject, now) for compiled, subject in chunk]
            try:
                usages = self.ledger.usage([t.counter for t in targets], now=now)
            except LedgerUnavailable as exc:
                self._mark_down(exc)
                return statuses
            self._mark_up()
            for target, usage in zip(targets, usages, strict=True):
                status = self._status(target, usage, Verdict.ALLOW)
                statuses.append(status)
                if self._sinks:
                    for threshold, level in target.compiled.thresholds:
                        if usage.spent_nanos < level:
                            break
                        self._send_once(target, self._alert(target, status, threshold, now), now)
        return statuses

    def close(self) -> None:
        """Flush and stop the alert sinks that can be closed, then close the ledger. Never raises."""
        for sink in self._sinks:
            closer = getattr(sink, "close", None)
            if callable(closer):
                try:
                    closer()
                except Exception:
                    logger.exception("budget: closing alert sink %r failed", sink)
        try:
            self.ledger.close()
        except Exception:
            logger.exception("budget: closing the ledger failed")

    def snapshot(self) -> list[BudgetStatus]:
        """The latest known status of every counter seen (no I/O; for the utilization gauges)."""
        return list(self._latest.values())

    def usage(self, attributes: Mapping[str, object]) -> tuple[BudgetStatus, ...]:
        """Current status of every budget applying to ``attributes`` (reads the ledger, reserves nothing)."""
        decision = self.check(attributes, estimate_nanos=0, reserve=False)
        return decision.statuses

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
        return BudgetGuard(self, _estimate_arg(estimate, estimate_nanos), attributes)

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
        nanos = _estimate_arg(estimate, estimate_nanos)

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            if inspect.iscoroutinefunction(func):

                @functools.wraps(func)
                async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                    async with BudgetGuard(self, nanos, attributes):
                        return await cast(Callable[P, Awaitable[Any]], func)(*args, **kwargs)

                return cast(Callable[P, R], async_wrapper)

            @functools.wraps(func)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                with BudgetGuard(self, nanos, attributes):
                    return func(*args, **kwargs)

            return wrapper

        return decorate


def _estimate_arg(estimate: Decimal | None, estimate_nanos: int | None) -> int:
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
        key = span_key or f"guard:{self.reservation_id or _new_reservation_id()}"
        return self._manager.record_span_cost(
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


class _SpanWithEvents(ReadableSpan):
    """An ended span with extra events; keeps the original's dropped counts."""

    def __init__(self, span: ReadableSpan, events: Sequence[Event]) -> None:
        super().__init__(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=span.attributes,
            events=(*span.events, *events),
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )
        self._dropped_attributes = span.dropped_attributes
        self._dropped_events = span.dropped_events
        self._dropped_links = span.dropped_links

    @property
    def dropped_attributes(self) -> int:
        return self._dropped_attributes

    @property
    def dropped_events(self) -> int:
        return self._dropped_events

    @property
    def dropped_links(self) -> int:
        return self._dropped_links


def with_threshold_events(span: ReadableSpan, alerts: Sequence[BudgetAlert]) -> ReadableSpan:
    """A copy of the ended ``span`` with one ``budget.threshold_crossed`` event per alert, at its end time."""
    events = [Event(THRESHOLD_EVENT, alert.event_attributes(), span.end_time) for alert in alerts]
    return _SpanWithEvents(span, events)


def _deny_reason(status: BudgetStatus, estimate: int) -> str:
    resets = f"; resets at {status.resets_at.isoformat()}" if status.resets_at is not None else ""
    return (
        f"{status.describe()} exceeded: used {usd_text(status.used_nanos)} "
        f"(spent {usd_text(status.spent_nanos)} + in flight {usd_text(status.reserved_nanos)}) "
        f"of the {usd_text(status.limit_nanos)} limit; this call needs up to {usd_text(estimate)}{resets}"
    )
