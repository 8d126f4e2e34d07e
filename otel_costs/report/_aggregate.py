"""The cost table and the chargeback: exact integer sums of priced model calls, grouped.

A *model call* is a span with LLM usage of its own (``cost.status`` priced, partial, unpriced or
invalid_usage, or a ``cost.direct_nanos``), never an agent/workflow/tool span's aggregate usage
nor a ``duplicate`` (already priced on another span): so nothing is counted twice. Money is the
``cost.direct_nanos`` of priced (and partial: a lower bound) calls, summed as ints. Calls with
no price go to an ``(unpriced)`` row, calls missing a grouped dimension to ``(unattributed)``,
and a table's total is the sum of its rows, exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from otel_costs import conventions as conv
from otel_costs._kinds import is_aggregate
from otel_costs._money import nanos_to_decimal
from otel_costs.report._spans import DEPLOYMENT_ENVIRONMENT, DEPLOYMENT_ENVIRONMENT_OLD, Span
from otel_costs.report._time import Bucketer

#: Call states.
NOT_A_CALL: Final = 0
PRICED: Final = 1
UNPRICED: Final = 2
PARTIAL: Final = 3

UNATTRIBUTED: Final = "(unattributed)"
UNPRICED_ROW: Final = "(unpriced)"
NO_TENANT: Final = "(no tenant)"

#: Figures kept per row, in order.
FIGURES: Final = (
    "calls",
    "cost_nanos",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "unpriced_calls",
    "partial_calls",
)
_TOKEN_KEYS: Final = (
    conv.INPUT_KEYS,
    conv.OUTPUT_KEYS,
    conv.CACHE_READ_KEYS,
    conv.CACHE_WRITE_KEYS,
    conv.REASONING_KEYS,
)
_NOT_CALLS: Final = frozenset({conv.STATUS_AGGREGATE, conv.STATUS_DUPLICATE})
_NO_PRICE: Final = frozenset({conv.STATUS_UNPRICED, conv.STATUS_INVALID_USAGE})


def classify(attributes: dict[str, Any]) -> tuple[int, int]:
    """``(state, nano-USD)`` of a span: ``NOT_A_CALL``, ``PRICED``, ``UNPRICED`` or ``PARTIAL``."""
    status = attributes.get(conv.COST_STATUS)
    if status in _NOT_CALLS or is_aggregate(attributes):
        return NOT_A_CALL, 0
    nanos = attributes.get(conv.COST_DIRECT_NANOS)
    if status is None and nanos is None:
        return NOT_A_CALL, 0
    if status in _NO_PRICE or type(nanos) is not int or nanos < 0:
        return UNPRICED, 0
    return (PARTIAL if status == conv.STATUS_PARTIAL else PRICED), nanos


#: Token names other than the current semconv ones (read only when a span carries one).
_OTHER_TOKEN_KEYS: Final = frozenset(k for keys in _TOKEN_KEYS for k in keys[1:])
_PRIMARY_TOKEN_KEYS: Final = tuple(keys[0] for keys in _TOKEN_KEYS)


def tokens(attributes: dict[str, Any]) -> tuple[int, int, int, int, int]:
    """Input, output, cache-read, cache-write and reasoning tokens (first name present wins)."""
    if _OTHER_TOKEN_KEYS.isdisjoint(attributes):  # the common case: current semconv names only
        get = attributes.get
        k_in, k_out, k_read, k_write, k_reason = _PRIMARY_TOKEN_KEYS
        return (
            int(get(k_in) or 0),
            int(get(k_out) or 0),
            int(get(k_read) or 0),
            int(get(k_write) or 0),
            int(get(k_reason) or 0),
        )
    out = [0, 0, 0, 0, 0]
    for i, keys in enumerate(_TOKEN_KEYS):
        for key in keys:
            value = attributes.get(key)
            if value is not None:
                out[i] = int(value)
                break
    return out[0], out[1], out[2], out[3], out[4]


def retry_tier(depth: object) -> str:
    """``"0"``, ``"1"``, ``"2"`` or ``">2"`` for a ``retry.depth`` (absent or unreadable: outside
    retries, ``"0"``); the tiers are ``conventions.retry_depth_tier``'s."""
    return conv.retry_depth_tier(depth) or conv.RETRY_DEPTH_TIERS[0]


def _first(span: Span, *keys: str) -> str | None:
    for key in keys:
        value = span.get(key)
        if value is not None and value != "":
            return str(value)
    return None


Dimension = Callable[[Span], "str | None"]

#: Short names of the common dimensions, and how each is read.
DIMENSIONS: Final[dict[str, Dimension]] = {
    "team": lambda s: _first(s, conv.TEAM_ID),
    "user": lambda s: _first(s, conv.USER_ID),
    "workflow": lambda s: _first(s, conv.WORKFLOW_NAME),
    "agent": lambda s: _first(s, conv.AGENT_NAME),
    "model": lambda s: _first(s, conv.COST_MODEL, conv.GEN_AI_RESPONSE_MODEL, conv.GEN_AI_REQUEST_MODEL),
    "provider": lambda s: _first(s, conv.COST_PROVIDER, conv.GEN_AI_PROVIDER_NAME, conv.GEN_AI_SYSTEM),
    "service": lambda s: s.service,
    "retry": lambda s: retry_tier(s.get(conv.RETRY_DEPTH)),
    "environment": lambda s: _first(s, DEPLOYMENT_ENVIRONMENT, DEPLOYMENT_ENVIRONMENT_OLD),
}
#: Attribute names accepted for the short names above.
ALIASES: Final = {
    conv.TEAM_ID: "team",
    conv.USER_ID: "user",
    conv.WORKFLOW_NAME: "workflow",
    conv.AGENT_NAME: "agent",
    "service.name": "service",
    conv.RETRY_DEPTH: "retry",
    DEPLOYMENT_ENVIRONMENT: "environment",
    DEPLOYMENT_ENVIRONMENT_OLD: "environment",
}


def dimension(name: str) -> Dimension:
    """The reader of one group-by dimension: a short name (``team``, ``model``...) or any attribute."""
    short = ALIASES.get(name, name)
    if short in DIMENSIONS:
        return DIMENSIONS[short]
    return lambda s: _first(s, name)


def usd(nanos: int) -> str:
    """Exact USD as a decimal string (``33250000`` -> ``"0.03325"``)."""
    text = f"{nanos_to_decimal(nanos):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def new_figures() -> list[int]:
    """A zeroed row of ``FIGURES``."""
    return [0] * len(FIGURES)


Tokens = tuple[int, int, int, int, int]


def add_call(row: list[int], state: int, nanos: int, toks: Tokens) -> None:
    """Add one model call (its ``tokens``) to a row of ``FIGURES``."""
    row[0] += 1
    row[1] += nanos
    t_in, t_out, t_cr, t_cw, t_re = toks
    row[2] += t_in
    row[3] += t_out
    row[4] += t_cr
    row[5] += t_cw
    row[6] += t_re
    if state == UNPRICED:
        row[7] += 1
    elif state == PARTIAL:
        row[8] += 1


def figures_dict(row: Sequence[int]) -> dict[str, Any]:
    """A row of ``FIGURES`` as a JSON object, with the exact ``cost_usd`` string."""
    out: dict[str, Any] = dict(zip(FIGURES, row, strict=True))
    out["cost_usd"] = usd(row[1])
    return out


class Period:
    """The instants a report covers, ``[since, until)`` in ns (``None``: open)."""

    def __init__(self, since: int | None = None, until: int | None = None) -> None:
        self.since = since
        self.until = until
        self.first: int | None = None
        """Earliest start time of a span inside the period (the observed window)."""
        self.last: int | None = None

    def admits(self, ns: int) -> bool:
        """``ns`` lies in the period (and is recorded as observed)."""
        if (self.since is not None and ns < self.since) or (self.until is not None and ns >= self.until):
            return False
        if self.first is None or ns < self.first:
            self.first = ns
        if self.last is None or ns > self.last:
            self.last = ns
        return True

    def window_ns(self) -> int:
        """Length of the period when both ends are given, else of the observed window."""
        if self.since is not None and self.until is not None:
            return self.until - self.since
        if self.first is None or self.last is None:
            return 0
        return max((self.until or self.last) - (self.since or self.first), 0)


@dataclass
class CostTable:
    """Cost by any dimensions (and an optional time bucket), with unattributed and unpriced rows."""

    group_by: Sequence[str]
    bucketer: Bucketer | None = None

    def __post_init__(self) -> None:
        self._readers = [dimension(d) for d in self.group_by]
        self._rows: dict[tuple[str, ...], list[int]] = {}

    def add(self, span: Span, state: int, nanos: int, toks: Tokens) -> None:
        """Count one model call."""
        bucket = self.bucketer.label(span.start) if self.bucketer else ""
        if state == UNPRICED:
            key: tuple[str, ...] = (bucket, UNPRICED_ROW, *("" for _ in self._readers))
        else:
            values = [read(span) for read in self._readers]
            if None in values:
                key = (bucket, UNATTRIBUTED, *("" for _ in self._readers))
            else:
                key = (bucket, "", *values)  # type: ignore[arg-type]
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = new_figures()
        add_call(row, state, nanos, toks)

    def rows(self) -> list[dict[str, Any]]:
        """Rows by bucket, then most expensive first; the special rows last in each bucket."""

        def order(item: tuple[tuple[str, ...], list[int]]) -> tuple[Any, ...]:
            key, row = item
            return (key[0], key[1] != "", key[1], -row[1], key[2:])

        out = []
        for key, row in sorted(self._rows.items(), key=order):
            entry: dict[str, Any] = {"bucket": key[0] or None, "kind": _kind(key[1])}
            entry["key"] = dict(zip(self.group_by, key[2:], strict=True)) if not key[1] else {}
            entry.update(figures_dict(row))
            out.append(entry)
        return out

    def total(self) -> list[int]:
        """The sum of every row."""
        return sum_rows(self._rows.values())


def _kind(special: str) -> str:
    return {"": "attributed", UNATTRIBUTED: "unattributed", UNPRICED_ROW: "unpriced"}[special]


def sum_rows(rows: Iterable[Sequence[int]]) -> list[int]:
    """Column sums of rows of ``FIGURES``."""
    total = new_figures()
    for row in rows:
        for i, value in enumerate(row):
            total[i] += value
    return total


@dataclass
class Chargeback:
    """One invoice per tenant (``by``, default ``team.id``): lines per model, and the unowned cost."""

    by: str = conv.TEAM_ID

    def __post_init__(self) -> None:
        self._tenant = dimension(self.by)
        self._model = DIMENSIONS["model"]
        self._lines: dict[tuple[str, str], list[int]] = {}

    def add(self, span: Span, state: int, nanos: int, toks: Tokens) -> None:
        """Count one model call on its tenant's invoice."""
        key = (self._tenant(span) or NO_TENANT, self._model(span) or "(unknown model)")
        row = self._lines.get(key)
        if row is None:
            row = self._lines[key] = new_figures()
        add_call(row, state, nanos, toks)

    def to_dict(self) -> dict[str, Any]:
        """Invoices by tenant (most expensive first, the unowned section last) and the grand total."""
        tenants: dict[str, dict[tuple[str, str], list[int]]] = {}
        for key, row in self._lines.items():
            tenants.setdefault(key[0], {})[key] = row
        invoices: list[dict[str, Any]] = []
        for tenant, lines in tenants.items():
            total = sum_rows(lines.values())
            invoices.append(
                {
                    "tenant": None if tenant == NO_TENANT else tenant,
                    "owned": tenant != NO_TENANT,
                    "lines": [
                        {"model": key[1], **figures_dict(row)}
                        for key, row in sorted(lines.items(), key=lambda kv: (-kv[1][1], kv[0]))
                    ],
                    "total": figures_dict(total),
                }
            )
        invoices.sort(key=lambda inv: (not inv["owned"], -inv["total"]["cost_nanos"], inv["tenant"] or ""))
        return {
            "by": self.by,
            "invoices": invoices,
            "total": figures_dict(sum_rows(self._lines.values())),
        }
