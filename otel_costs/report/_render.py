"""Reports as text: terminal tables, CSV, Markdown and JSON, from the report dict.

Every renderer draws the same tables (``report_tables``/``chargeback_tables``), so the figures
of ``--format markdown`` and of the terminal are the JSON report's, formatted.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Final

from otel_costs._money import nanos_to_decimal
from otel_costs.report._aggregate import FIGURES

FORMATS: Final = ("table", "csv", "json", "markdown")
Table = tuple[str, list[str], list[list[str]]]


def money(nanos: int | None) -> str:
    """``$0.03325``: exact, at least two decimals (``$12.00``), from nano-USD."""
    if nanos is None:
        return "-"
    amount = nanos_to_decimal(nanos).normalize()
    exponent = amount.as_tuple().exponent
    if not isinstance(exponent, int) or exponent > -2:
        amount = amount.quantize(Decimal("0.01"))
    return f"${amount:f}"


def share(part: int, whole: int) -> str:
    """``part/whole`` as a percentage for display."""
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _figures(row: dict[str, Any], total: int) -> list[str]:
    return [
        str(row["calls"]),
        money(row["cost_nanos"]),
        share(row["cost_nanos"], total),
        str(row["input_tokens"]),
        str(row["output_tokens"]),
        str(row["cache_read_tokens"]),
        str(row["unpriced_calls"]),
        str(row["partial_calls"]),
    ]


_FIGURE_HEADERS: Final = ["calls", "cost", "share", "input", "output", "cache read", "unpriced", "partial"]


def report_tables(report: dict[str, Any]) -> list[Table]:
    """The cost table, cost per run, retry tail and its steps, as titled text tables."""
    total = report["total"]["cost_nanos"]
    bucketed = report["period"]["bucket"] is not None
    headers = (["bucket"] if bucketed else []) + report["group_by"] + _FIGURE_HEADERS
    rows = []
    for row in report["rows"]:
        if row["kind"] == "attributed":
            keys = [row["key"][d] for d in report["group_by"]]
        else:
            keys = [f"({row['kind']})"] + [""] * (len(report["group_by"]) - 1)
        rows.append(([row["bucket"] or ""] if bucketed else []) + keys + _figures(row, total))
    pad = [""] * (len(report["group_by"]) - 1 + bucketed)
    rows.append(["total", *pad, *_figures(report["total"], total)])
    tables: list[Table] = [(_title(report), headers, rows)]
    runs = report.get("cost_per_run")
    if runs and runs["features"]:
        tables.append(runs_table(runs))
    tail = report.get("retry_tail")
    if tail:
        tables.append(
            (
                "retry tail",
                ["retry.depth", "calls", "cost", "share"],
                [
                    [t["retry.depth"], str(t["calls"]), money(t["cost_nanos"]), f"{100 * t['share']:.1f}%"]
                    for t in tail["tiers"]
                ],
            )
        )
        if tail["steps"]:
            tables.append(retry_steps_table(tail))
        if tail["deep_retries"]:
            tables.append(
                (
                    f"traces where a step retried more than {tail['threshold']} times "
                    f"({tail['deep_retry_count']})",
                    ["trace", "workflow.id", "agent", "step", "max retry.depth"],
                    [
                        [
                            d["trace_id"],
                            str(d["workflow.id"] or ""),
                            d["agent"],
                            d["step"],
                            str(d["max_depth"]),
                        ]
                        for d in tail["deep_retries"]
                    ],
                )
            )
    return tables


def runs_table(runs: dict[str, Any]) -> Table:
    """The cost-per-run section as a table: one row per feature, its first outliers by workflow.id."""
    headers = ["feature", "runs", "mean", "p50", "p95", "max", "calls/run", "month at this rate", "outliers"]
    rows = [
        [
            f["feature"],
            str(f["runs"]),
            *(money(f[k]) for k in ("mean_nanos", "p50_nanos", "p95_nanos", "max_nanos")),
            f"{f['calls_per_run']:g}",
            money(f["monthly_projection_nanos"]),
            ", ".join(f"{o['workflow.id']} ({money(o['cost_nanos'])})" for o in f["outliers"][:3])
            + (" ..." if f["outlier_count"] > 3 else ""),
        ]
        for f in runs["features"]
    ]
    return f"cost per run (outliers: {runs['outlier_rule']})", headers, rows


def retry_steps_table(tail: dict[str, Any]) -> Table:
    """The steps with the most retry cost, as a table."""
    rows = [
        [s["agent"], s["step"], str(s["retry_calls"]), money(s["retry_cost_nanos"])] for s in tail["steps"]
    ]
    return "steps with the most retry cost", ["agent", "step", "retried calls", "retry cost"], rows


def _title(report: dict[str, Any]) -> str:
    period = report["period"]
    since, until = period["since"] or "start", period["until"] or "end"
    return f"cost by {', '.join(report['group_by']) or 'nothing'}, {since} .. {until} ({period['timezone']})"


def chargeback_tables(chargeback: dict[str, Any], title: str) -> list[Table]:
    """One table per invoice (lines per model) and the reconciliation line."""
    total = chargeback["total"]["cost_nanos"]
    headers = [
        "model",
        "calls",
        "input",
        "output",
        "cache read",
        "cache write",
        "reasoning",
        "unpriced",
        "cost",
        "share",
    ]
    tables: list[Table] = []
    for invoice in chargeback["invoices"]:
        name = invoice["tenant"] if invoice["owned"] else "cost no tenant owns"
        rows = [_line(line, line["model"], total) for line in invoice["lines"]]
        rows.append(_line(invoice["total"], "total", total))
        tables.append((f"{chargeback['by']} {name}", headers, rows))
    tables.append((f"{title}: total", headers, [_line(chargeback["total"], "all invoices", total)]))
    return tables


def _line(row: dict[str, Any], label: str, total: int) -> list[str]:
    return [
        label,
        *(
            str(row[k])
            for k in (
                "calls",
                "input_tokens",
                "output_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "reasoning_tokens",
                "unpriced_calls",
            )
        ),
        money(row["cost_nanos"]),
        share(row["cost_nanos"], total),
    ]


def render_tables(tables: Sequence[Table], fmt: str) -> str:
    """``tables`` as aligned text (``table``) or Markdown."""
    parts = []
    for title, headers, rows in tables:
        if fmt == "markdown":
            lines = [f"### {title}", "", "| " + " | ".join(headers) + " |"]
            lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|")
            lines.extend("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows)
        else:
            widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
            text_rows = [
                "  ".join(
                    c.ljust(w) if i == 0 or not _numeric(c) else c.rjust(w)
                    for i, (c, w) in enumerate(zip(r, widths, strict=True))
                ).rstrip()
                for r in [headers, *rows]
            ]
            lines = [title, *text_rows[:1], "  ".join("-" * w for w in widths), *text_rows[1:]]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _numeric(cell: str) -> bool:
    return bool(cell) and (cell[0].isdigit() or cell[0] in "$-") and cell != "-"


def report_csv(report: dict[str, Any]) -> str:
    """The cost table as CSV: bucket, kind, the dimensions, then every figure (exact ``cost_usd``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    figures = [*FIGURES, "cost_usd"]
    writer.writerow(["bucket", "kind", *report["group_by"], *figures])
    for row in [*report["rows"], {**report["total"], "bucket": "", "kind": "total", "key": {}}]:
        keys = [row["key"].get(d, "") for d in report["group_by"]]
        writer.writerow([row["bucket"] or "", row["kind"], *keys, *(row[f] for f in figures)])
    return out.getvalue()


def chargeback_csv(chargeback: dict[str, Any]) -> str:
    """Invoice lines as CSV (one row per tenant and model, a total row per tenant, the grand total)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    figures = [*FIGURES, "cost_usd"]
    writer.writerow([chargeback["by"], "owned", "model", *figures])
    for invoice in chargeback["invoices"]:
        tenant = invoice["tenant"] or ""
        for line in invoice["lines"]:
            writer.writerow([tenant, invoice["owned"], line["model"], *(line[f] for f in figures)])
        writer.writerow([tenant, invoice["owned"], "(total)", *(invoice["total"][f] for f in figures)])
    writer.writerow(["(all)", "", "(total)", *(chargeback["total"][f] for f in figures)])
    return out.getvalue()


def to_json(data: Any) -> str:
    """Pretty JSON (what ``--format json`` prints)."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
