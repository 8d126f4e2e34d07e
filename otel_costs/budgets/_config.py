"""Budget definitions and configuration files: ``Budget``, ``BudgetConfig`` (TOML/YAML), their validation.

A ``Budget`` is a limit in USD over a window (a calendar day or month in a time zone, or a
rolling ``1h``/``24h``), for the calls whose attributes match it: ``per=("team.id",)`` keeps one
counter per team, ``match={"team.id": "research"}`` counts only that team, neither counts all
spend. Every invalid value raises ``BudgetConfigError`` naming the entry and what to write instead.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from otel_costs._config_checks import ConfigError, amount_text, check_url, load_yaml
from otel_costs._money import to_nanos
from otel_costs.budgets._alerts import DEFAULT_THRESHOLDS, AlertSink, LoggingAlertSink, WebhookAlertSink
from otel_costs.budgets._windows import WindowError, load_zone, parse_duration, parse_window
from otel_costs.budgets.ledger._base import Ledger
from otel_costs.budgets.ledger._memory import MemoryLedger
from otel_costs.budgets.ledger._redis import RedisLedger
from otel_costs.budgets.ledger._sqlite import SqliteLedger
from otel_costs.conventions import (
    AGENT_ID,
    AGENT_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    TEAM_ID,
    USER_ID,
    WORKFLOW_ID,
    WORKFLOW_NAME,
)

#: Short names accepted in ``per`` and ``match`` for the attribution keys of ``conventions``.
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


#: The largest budget limit accepted, USD: a higher one is a typo (or an attack), never a budget.
MAX_LIMIT_USD: Final = Decimal(10**12)
#: The longest reservation and dedupe TTL accepted, seconds: a longer one is a unit mistake.
MAX_TTL_S: Final = 30 * 86_400
#: The URL schemes a Redis ledger accepts (redis-py's ``Redis.from_url``).
_REDIS_SCHEMES: Final = ("redis", "rediss", "unix")
_REDIS_EXAMPLE: Final = "redis://127.0.0.1:6379/0"


class BudgetConfigError(ConfigError):
    """A budget configuration that cannot be used; the message says which entry and what to fix."""


class FailPolicy(StrEnum):
    """What a check decides when the ledger is unreachable."""

    OPEN = "open"
    """Allow the call, unchecked (availability first); the decision is flagged ``ledger_unavailable``."""
    CLOSED = "closed"
    """Deny the call (spend control first); ``enforce`` raises ``BudgetUnavailable``."""


def _shown(value: Decimal | int) -> str:
    """``repr(value)`` cut to 60 characters (``repr`` of an int of 5,000 digits raises)."""
    if isinstance(value, int) and value.bit_length() > 200:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


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
        if not Decimal(self.limit_usd).is_finite() or abs(Decimal(self.limit_usd)) > MAX_LIMIT_USD:
            # Checked before to_nanos, which cannot quantize an amount this large (InvalidOperation).
            raise BudgetConfigError(
                f"{where}: limit_usd must be a finite amount up to {MAX_LIMIT_USD:,} USD, e.g. "
                f"Decimal('25.00'), got {_shown(self.limit_usd)}"
            )
        if self.limit_usd <= 0 or to_nanos(Decimal(self.limit_usd)) <= 0:
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


def check_settings(
    budgets: Sequence[object],
    on_ledger_error: FailPolicy | str,
    **settings: float,
) -> FailPolicy:
    """Validate ``BudgetManager``'s arguments (``BudgetConfigError`` says which); its fail policy."""
    if not all(isinstance(b, Budget) for b in budgets):
        raise BudgetConfigError("budgets must be Budget objects (or use BudgetManager.from_config)")
    names = [b.name for b in budgets if isinstance(b, Budget)]
    if len(set(names)) != len(names):
        raise BudgetConfigError(f"budget names must be unique: {names}")
    try:
        policy = FailPolicy(on_ledger_error)
    except ValueError:
        raise BudgetConfigError(
            f"on_ledger_error must be 'open' or 'closed', got {on_ledger_error!r}"
        ) from None
    for label in ("reservation_ttl_s", "dedup_ttl_s"):
        if not 0 < settings[label] <= MAX_TTL_S:
            raise BudgetConfigError(
                f"{label} must be > 0 and at most {MAX_TTL_S:,} seconds (30 days), e.g. 600, "
                f"got {settings[label]!r}"
            )
    if (
        min(
            settings["ledger_retry_s"], settings["default_output_tokens"], settings["unpriced_estimate_nanos"]
        )
        < 0
    ):
        raise BudgetConfigError(
            "ledger_retry_s, default_output_tokens and unpriced_estimate_nanos must be >= 0"
        )
    if settings["max_pending"] < 0 or settings["max_tracked"] < 1:
        raise BudgetConfigError("max_pending must be >= 0 and max_tracked >= 1")
    return policy


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

    def alert_sinks(self) -> list[AlertSink]:
        """Sinks of the file: ``LoggingAlertSink`` (``log``), ``WebhookAlertSink`` (``webhook_url``)."""
        sinks: list[AlertSink] = [LoggingAlertSink()] if self.alert_log else []
        if self.webhook_url:
            sinks.append(WebhookAlertSink(self.webhook_url))
        return sinks

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
        if suffix not in (".toml", ".yaml", ".yml"):
            raise BudgetConfigError(f"{file}: name the budget file *.toml, *.yaml or *.yml")
        try:
            # YAML: a key given twice is an error (plain yaml.safe_load keeps the last one).
            data: object = (
                tomllib.loads(raw.decode())
                if suffix == ".toml"
                else load_yaml(raw, str(file), BudgetConfigError)
            )
        except BudgetConfigError:
            raise
        except (tomllib.TOMLDecodeError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
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
        if not 0 < ttl <= MAX_TTL_S:
            raise BudgetConfigError(
                f"{source}: reservation_ttl must be > 0 and at most {MAX_TTL_S:,} seconds (30 days), "
                f"e.g. '10m', got {ttl!r}"
            )
        log = alerts.get("log", True)
        if not isinstance(log, bool):
            raise BudgetConfigError(f"{source}: [alerts] log must be true or false")
        webhook = alerts.get("webhook_url")
        if webhook is not None:
            webhook = check_url(
                webhook,
                f"{source}: [alerts] webhook_url must be an http(s) URL:",
                ("http", "https"),
                "https://hooks.example.com/budget",
                BudgetConfigError,
            )
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
#: The [ledger] keys each kind uses: another known key under a kind is an error, never ignored.
_LEDGER_KIND_KEYS: Final = {
    "memory": ("kind",),
    "sqlite": ("kind", "path"),
    "redis": ("kind", "url", "prefix"),
}
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
    # repr() of a float is its shortest round-trip form: 0.1 -> Decimal("0.1"), not the binary expansion.
    text = amount_text(value, where, example='"25.00"', unit="an amount in USD", error=BudgetConfigError)
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise BudgetConfigError(f'{where}: write an amount in USD such as "25.00", got {value!r}') from None
    if not amount.is_finite() or amount <= 0:
        raise BudgetConfigError(f"{where}: the amount must be positive, got {value!r}")
    if amount > MAX_LIMIT_USD:
        raise BudgetConfigError(
            f'{where}: {value!r} is absurdly large (above {MAX_LIMIT_USD:,} USD); write e.g. "25.00"'
        )
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
    used = _LEDGER_KIND_KEYS.get(kind) if isinstance(kind, str) else None
    unused = sorted(str(key) for key in table if used is not None and key not in used)
    if unused:
        raise BudgetConfigError(
            f"{where}: {unused} do(es) not apply to kind {kind!r} (it reads {list(used or ())}); "
            "remove it, or set the kind that uses it"
        )
    if kind == "sqlite":
        return LedgerConfig(kind, path=_str(table.get("path"), f"{where} path (the SQLite file)"))
    if kind == "redis":
        url = _str(table.get("url"), f"{where} url (e.g. {_REDIS_EXAMPLE!r})")
        url = check_url(url, f"{where} url", _REDIS_SCHEMES, _REDIS_EXAMPLE, BudgetConfigError)
        return LedgerConfig(kind, url=url, prefix=_str(table.get("prefix", "otel_costs"), f"{where} prefix"))
    if kind == "memory":
        return LedgerConfig()
    raise BudgetConfigError(f"{where} kind must be 'memory', 'sqlite' or 'redis', got {kind!r}")
