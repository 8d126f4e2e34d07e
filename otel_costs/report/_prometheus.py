"""The report's questions answered from Prometheus, for months of data: PromQL over the cost counter.

``CostMetrics`` exports ``gen_ai.client.cost`` (USD) with bounded-cardinality labels only; on a
Prometheus scrape it is ``gen_ai_client_cost_USD_total`` with ``team_id``,
``gen_ai_request_model``, ``gen_ai_provider_name``, ``gen_ai_agent_name``, ``workflow_name``; and
per workflow run ``otel_costs_workflow_runs_total`` and the histogram
``otel_costs_workflow_run_cost_USD`` (``workflow_name``, ``team_id``, environment).
``queries(since, until)`` gives the PromQL of each question (``docs/reports.md`` explains them),
and ``prometheus_report(url, ...)`` runs them against ``/api/v1/query``.

A period's cost is the counter's rise over it: ``last_over_time`` at the end minus the value at
the start (``or`` the end value for series born inside the period). That is exact while no process
restarts in the period; ``increase()`` survives restarts but extrapolates (see the docs).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import tzinfo
from typing import Any, Final

from otel_costs._money import usd_wire_to_nanos
from otel_costs.report._aggregate import usd
from otel_costs.report._render import money, render_tables, to_json
from otel_costs.report._time import iso

#: The cost counter as Prometheus names it (``gen_ai.client.cost``, unit USD, a counter).
METRIC: Final = "gen_ai_client_cost_USD_total"
#: The run counter (``otel_costs.workflow.runs``) and the cost-per-run histogram's buckets.
RUNS_METRIC: Final = "otel_costs_workflow_runs_total"
RUN_COST_BUCKETS: Final = "otel_costs_workflow_run_cost_USD_bucket"
#: Queries whose values are counts, not USD.
COUNT_QUERIES: Final = frozenset({"runs"})
#: Prometheus label of each report dimension (the counter's attributes, dots as underscores).
LABELS: Final = {
    "team": "team_id",
    "model": "gen_ai_request_model",
    "provider": "gen_ai_provider_name",
    "agent": "gen_ai_agent_name",
    "workflow": "workflow_name",
    "environment": "deployment_environment_name",
    "retry": "retry_depth",
}
_NS: Final = 1_000_000_000


class PrometheusError(RuntimeError):
    """A Prometheus query that failed; the message names the URL."""


def rise(labels: str, range_s: int, metric: str = METRIC) -> str:
    """PromQL: the counter's rise over the ``range_s`` seconds before the evaluation time, by ``labels``."""
    end = f"last_over_time({metric}[{range_s}s])"
    start = f"last_over_time({metric}[5m] offset {range_s}s)"
    return f"sum by ({labels}) (({end} - {start}) or {end})"


def queries(since: int, until: int) -> dict[str, str]:
    """The PromQL of each question, evaluated at ``until`` over ``[since, until)``."""
    range_s = max((until - since) // _NS, 1)
    return {
        "chargeback": rise("team_id, gen_ai_request_model", range_s),
        "by_team": rise("team_id", range_s),
        "by_model": rise("gen_ai_request_model, gen_ai_provider_name", range_s),
        "by_agent": rise("gen_ai_agent_name", range_s),
        "by_workflow": rise("workflow_name", range_s),
        "retry_tail": rise("retry_depth", range_s),
        "total": f"sum(({_last(range_s)} - {_start(range_s)}) or {_last(range_s)})",
        "runs": rise("workflow_name", range_s, RUNS_METRIC),
        # Mean cost per run: the calls' cost over the runs, per workflow (exact while no restart).
        "cost_per_run": f"{rise('workflow_name', range_s)} / {rise('workflow_name', range_s, RUNS_METRIC)}",
        # p95 cost per run, interpolated within the histogram's buckets (an estimate).
        "run_cost_p95": f"histogram_quantile(0.95, {rise('le, workflow_name', range_s, RUN_COST_BUCKETS)})",
    }


def _last(range_s: int) -> str:
    return f"last_over_time({METRIC}[{range_s}s])"


def _start(range_s: int) -> str:
    return f"last_over_time({METRIC}[5m] offset {range_s}s)"


def query(url: str, promql: str, at_ns: int, timeout: float = 30.0) -> list[tuple[dict[str, str], int]]:
    """Run an instant query; each series' labels and its value as nano-USD."""
    out = []
    for labels, value in query_values(url, promql, at_ns, timeout):
        nanos = usd_wire_to_nanos(value)
        out.append((labels, 0 if nanos is None else nanos))
    return out


def query_values(
    url: str, promql: str, at_ns: int, timeout: float = 30.0
) -> list[tuple[dict[str, str], float]]:
    """Run an instant query; each series' labels and its value as Prometheus gives it."""
    target = f"{url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode(
        {"query": promql, "time": at_ns / _NS}
    )
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode("utf-8", "replace")
        raise PrometheusError(f"{target}: Prometheus answered HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise PrometheusError(f"{url}: cannot reach Prometheus ({getattr(exc, 'reason', exc)})") from exc
    try:
        data = json.loads(body)
        if data.get("status") != "success":
            raise PrometheusError(f"{target}: query failed: {data.get('error')}")
        return [(dict(series["metric"]), float(series["value"][1])) for series in data["data"]["result"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PrometheusError(f"{target}: not a Prometheus query answer ({exc})") from exc


def prometheus_chargeback(url: str, since: int, until: int) -> dict[str, Any]:
    """The chargeback (team -> model -> cost) from Prometheus, in the trace chargeback's shape."""
    invoices: dict[str | None, dict[str, int]] = {}
    for labels, nanos in query(url, queries(since, until)["chargeback"], until):
        team = labels.get("team_id")
        model = labels.get("gen_ai_request_model", "(unknown model)")
        lines = invoices.setdefault(team, {})
        lines[model] = lines.get(model, 0) + nanos
    out: list[dict[str, Any]] = []
    for team, lines in invoices.items():
        total = sum(lines.values())
        out.append(
            {
                "tenant": team,
                "owned": team is not None,
                "lines": [
                    {"model": m, "cost_nanos": n, "cost_usd": usd(n)} for m, n in sorted(lines.items())
                ],
                "total": {"cost_nanos": total, "cost_usd": usd(total)},
            }
        )
    out.sort(key=lambda inv: (not inv["owned"], -inv["total"]["cost_nanos"]))
    grand = sum(inv["total"]["cost_nanos"] for inv in out)
    return {"by": "team.id", "invoices": out, "total": {"cost_nanos": grand, "cost_usd": usd(grand)}}


def prometheus_report(url: str, since: int | None, until: int | None, tz: tzinfo, fmt: str) -> str:
    """Run every query over ``[since, until)`` (default: the last 30 days) and render the answers."""
    end = until if until is not None else time.time_ns()
    start = since if since is not None else end - 30 * 86400 * _NS
    answers: dict[str, Any] = {"period": {"since": iso(start, tz), "until": iso(end, tz)}, "queries": {}}
    for name, promql in queries(start, end).items():
        if name in COUNT_QUERIES:
            counted = sorted(query_values(url, promql, end), key=lambda series: -series[1])
            rows = [{"labels": labels, "count": round(value)} for labels, value in counted]
        else:
            found = sorted(query(url, promql, end), key=lambda series: -series[1])
            rows = [{"labels": labels, "cost_nanos": n, "cost_usd": usd(n)} for labels, n in found]
        answers["queries"][name] = {"promql": promql, "rows": rows}
    if fmt == "json":
        return to_json(answers)
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    for name, answer in answers["queries"].items():
        keys = sorted({k for row in answer["rows"] for k in row["labels"]})
        counts = name in COUNT_QUERIES
        cells = [
            [
                *(row["labels"].get(k, "") for k in keys),
                str(row["count"]) if counts else money(row["cost_nanos"]),
            ]
            for row in answer["rows"]
        ]
        empty = [["(no series)"] + [""] * len(keys)]
        tables.append((f"{name}: {answer['promql']}", [*keys, "runs" if counts else "cost"], cells or empty))
    return render_tables(tables, "markdown" if fmt == "markdown" else "table")
