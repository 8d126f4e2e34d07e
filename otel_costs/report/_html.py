"""``otel-costs report --html FILE``: one self-contained page to look at (inline CSS, SVG and JS).

It draws, from one pass over the spans: an icicle of each workflow's most expensive run (width =
``cost.total``, colour by agent, unpriced and partial spans hatched), bar charts of cost by
team, agent, model and day, the retry tail, the cost-per-run table with its outliers, and the
audit findings. The report dict the figures come from is embedded as JSON (``#report-data``), and
each drawn figure carries its exact nano-USD in ``data-nanos``: what the browser test compares.
No network, no CDN.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from otel_costs import conventions as conv
from otel_costs.report._aggregate import NOT_A_CALL, PARTIAL, UNPRICED, CostTable, classify, tokens
from otel_costs.report._audit import AuditOptions, audit_traces, group_traces
from otel_costs.report._render import money, retry_steps_table, runs_table
from otel_costs.report._report import ReportBuilder, ReportOptions
from otel_costs.report._spans import ReadStats, Span
from otel_costs.report._time import Bucketer

_WIDTH: Final = 960
_ROW: Final = 22
_MAX_DEPTH: Final = 40
#: Trees drawn: one per workflow name, the most expensive run seen.
_MAX_TREES: Final = 12


def _colour(name: str) -> str:
    hue = int(hashlib.sha1(name.encode()).hexdigest()[:4], 16) % 360
    return f"hsl({hue},55%,62%)"


def _label(span: Span) -> str:
    attrs = span.attributes
    operation = attrs.get(conv.GEN_AI_OPERATION_NAME)
    if operation == conv.OPERATION_INVOKE_AGENT and attrs.get(conv.AGENT_NAME):
        return str(attrs[conv.AGENT_NAME])
    if operation == conv.OPERATION_INVOKE_WORKFLOW and attrs.get(conv.WORKFLOW_NAME):
        return f"workflow {attrs[conv.WORKFLOW_NAME]}"
    return span.name


def cost_tree(spans: list[Span]) -> dict[str, Any] | None:
    """The cost tree of one trace as nested dicts (only spans with billable usage below them)."""
    from otel_costs.rollup import cost_node, rollup  # the SDK-side rollup package: only for the page

    nodes = [cost_node(s.span_id, s.parent_id, s.attributes, remote_parent=s.remote_parent) for s in spans]
    figures = rollup(nodes)
    made: dict[str, dict[str, Any]] = {}
    roots: list[dict[str, Any]] = []
    order = sorted(range(len(spans)), key=lambda i: spans[i].start)
    for i in order:
        span, fig = spans[i], figures[i]
        if not fig.billable_subtree or span.span_id in made:
            continue
        state, _ = classify(span.attributes)
        made[span.span_id] = {
            "label": _label(span),
            "agent": str(span.attributes.get(conv.AGENT_NAME) or ""),
            "total_nanos": fig.total_nanos,
            "unpriced": state == UNPRICED,
            "partial": state == PARTIAL,
            "children": [],
        }
    for i in order:
        span, fig = spans[i], figures[i]
        node = made.get(span.span_id)
        if node is None or node.get("_placed"):
            continue
        node["_placed"] = True
        parent = made.get(span.parent_id) if span.parent_id and fig.root_kind is None else None
        (parent["children"] if parent is not None else roots).append(node)
    for node in made.values():
        node.pop("_placed", None)
    if not roots:
        return None
    if len(roots) == 1:
        return roots[0]
    return {
        "label": "trace",
        "agent": "",
        "total_nanos": sum(r["total_nanos"] for r in roots),
        "unpriced": False,
        "partial": False,
        "children": roots,
    }


def build_page_data(
    batches: Iterable[Iterable[Span]], options: ReportOptions, audit: AuditOptions, stats: ReadStats
) -> dict[str, Any]:
    """Everything the page draws, from one pass: the report, bar tables, trees and the audit."""
    from otel_costs.report._time import zone

    builder = ReportBuilder(options)
    bars = {
        "team": CostTable(("team",)),
        "agent": CostTable(("agent",)),
        "model": CostTable(("model",)),
        "day": CostTable((), Bucketer("day", zone(options.tz))),
    }
    trees: dict[str, tuple[int, str, dict[str, Any]]] = {}

    def traces() -> Iterable[list[Span]]:
        for batch in batches:
            for span in batch:
                builder.add(span)
                if builder.period.since is not None and span.start < builder.period.since:
                    continue
                if builder.period.until is not None and span.start >= builder.period.until:
                    continue
                state, nanos = classify(span.attributes)
                if state != NOT_A_CALL:
                    toks = tokens(span.attributes)
                    for table in bars.values():
                        table.add(span, state, nanos, toks)
            yield list(batch)

    def trees_of(trace_batches: Iterable[list[Span]]) -> Iterable[list[Span]]:
        cut = [0]
        for trace in group_traces(trace_batches, audit.max_trace_spans, cut):
            tree = cost_tree(trace)
            if tree is not None:
                name = next(
                    (
                        str(s.attributes[conv.WORKFLOW_NAME])
                        for s in trace
                        if s.attributes.get(conv.WORKFLOW_NAME)
                    ),
                    "(no workflow)",
                )
                best = trees.get(name)
                if (best is None or tree["total_nanos"] > best[0]) and (
                    best is not None or len(trees) < _MAX_TREES
                ):
                    trees[name] = (tree["total_nanos"], trace[0].trace_id, tree)
            yield trace

    audit_result = audit_traces(trees_of(traces()), audit)
    return {
        "report": builder.result(stats),
        "bars": {name: table.rows() for name, table in bars.items()},
        "trees": [
            {"workflow": name, "trace_id": tid, "tree": tree}
            for name, (_, tid, tree) in sorted(trees.items())
        ],
        "audit": audit_result,
    }


def _icicle(tree: dict[str, Any]) -> str:
    """An SVG icicle: each row a depth, each box as wide as its ``cost.total``."""
    total = tree["total_nanos"] or 1
    boxes: list[str] = []
    depth_seen = 0
    stack: list[tuple[dict[str, Any], float, float, int]] = [(tree, 0.0, float(_WIDTH), 0)]
    while stack and len(boxes) < 4000:
        node, x, width, depth = stack.pop()
        depth_seen = max(depth_seen, depth)
        y = depth * _ROW
        cls = "unpriced" if node["unpriced"] else "partial" if node["partial"] else ""
        fill = "url(#hatch)" if cls else _colour(node["agent"] or node["label"])
        title = f"{node['label']}: {money(node['total_nanos'])}" + (f" ({cls})" if cls else "")
        fits = int((width - 8) / 7)  # about 7 px a character at 12 px
        label = node["label"] if len(node["label"]) <= fits else node["label"][: max(fits - 1, 0)] + "…"
        text = html.escape(label) if fits >= 4 else ""
        boxes.append(
            f'<g class="box {cls}" data-nanos="{node["total_nanos"]}"><title>{html.escape(title)}</title>'
            f'<rect x="{x:.2f}" y="{y}" width="{max(width - 1, 0.5):.2f}" height="{_ROW - 2}" fill="{fill}"/>'
            f'<text x="{x + 4:.2f}" y="{y + 15}">{text}</text></g>'
        )
        if depth + 1 >= _MAX_DEPTH:
            continue
        offset = x
        for child in node["children"]:
            child_width = width * child["total_nanos"] / (node["total_nanos"] or 1)
            if child["total_nanos"] == 0:
                child_width = min(6.0, width)  # unpriced calls: a sliver, so they are seen
            stack.append((child, offset, child_width, depth + 1))
            offset += child_width
    height = (depth_seen + 1) * _ROW
    return (
        f'<svg class="icicle" width="{_WIDTH}" height="{height}" viewBox="0 0 {_WIDTH} {height}" '
        f'data-total-nanos="{total}" role="img">'
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f4c7c3"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#c0392b" stroke-width="3"/></pattern></defs>'
        + "".join(boxes)
        + "</svg>"
    )


def _bars(chart: str, rows: list[dict[str, Any]], label_of: Any) -> str:
    """A horizontal bar chart of rows' ``cost_nanos``."""
    rows = [r for r in rows if r["calls"]]
    top = max((r["cost_nanos"] for r in rows), default=0) or 1
    height = _ROW * len(rows) + 4
    parts = []
    for i, row in enumerate(rows):
        width = 520 * row["cost_nanos"] / top
        label = html.escape(str(label_of(row)))
        y = i * _ROW
        parts.append(
            f'<g class="bar" data-chart="{chart}" data-label="{label}" data-nanos="{row["cost_nanos"]}">'
            f'<text x="0" y="{y + 15}">{label}</text>'
            f'<rect x="230" y="{y + 3}" width="{width:.2f}" height="{_ROW - 6}" fill="{_colour(label)}"/>'
            f'<text x="{236 + width:.2f}" y="{y + 15}">{money(row["cost_nanos"])}'
            + (f" ({row['unpriced_calls']} unpriced)" if row["unpriced_calls"] else "")
            + "</text></g>"
        )
    box = f'width="{_WIDTH}" height="{height}" viewBox="0 0 {_WIDTH} {height}"'
    return f'<svg class="bars" {box}>{"".join(parts)}</svg>'


def _row_label(dim: str) -> Any:
    def label(row: dict[str, Any]) -> str:
        if row["kind"] != "attributed":
            return f"({row['kind']})"
        return str(row["bucket"]) if dim == "day" else str(row["key"][dim])

    return label


def _table(headers: list[str], rows: list[list[str]], cls: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_CSS: Final = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
svg text{font-size:12px;fill:#222}.box text{pointer-events:none}.box:hover rect{stroke:#000}
table{border-collapse:collapse;margin:8px 0}
td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}.total{font-weight:bold}.note{color:#666}
#tip{position:fixed;background:#333;color:#fff;padding:3px 6px;border-radius:3px;display:none;font-size:12px}
"""
_JS: Final = """
(function(){
  var data = JSON.parse(document.getElementById('report-data').textContent);
  var tip = document.getElementById('tip');
  document.querySelectorAll('.box').forEach(function(box){
    box.addEventListener('mousemove', function(e){
      tip.textContent = box.querySelector('title').textContent;
      tip.style.display = 'block';
      tip.style.left = (e.clientX + 12) + 'px'; tip.style.top = (e.clientY + 12) + 'px';
    });
    box.addEventListener('mouseleave', function(){ tip.style.display = 'none'; });
  });
  document.getElementById('total').setAttribute('data-checked', data.report.total.cost_nanos);
})();
"""


def render_html(data: dict[str, Any]) -> str:
    """The page for ``build_page_data``'s result."""
    report, audit = data["report"], data["audit"]
    total = report["total"]
    sections = [
        f'<h1>LLM cost report</h1><p id="total" class="total" data-nanos="{total["cost_nanos"]}">'
        f"total {money(total['cost_nanos'])} over {total['calls']} calls "
        f"({total['unpriced_calls']} unpriced, {total['partial_calls']} partial)</p>"
        f'<p class="note">period {html.escape(str(report["period"]["first_span"]))} .. '
        f"{html.escape(str(report['period']['last_span']))} ({html.escape(report['period']['timezone'])})</p>"
    ]
    sections.append("<h2>Cost tree of each workflow's most expensive run</h2>")
    for entry in data["trees"]:
        sections.append(
            f'<h3>{html.escape(entry["workflow"])} <span class="note">trace {entry["trace_id"]}: '
            f"{money(entry['tree']['total_nanos'])}</span></h3>{_icicle(entry['tree'])}"
        )
    for dim in ("team", "agent", "model", "day"):
        sections.append(f"<h2>Cost by {dim}</h2>{_bars(dim, data['bars'][dim], _row_label(dim))}")
    tail = report.get("retry_tail")
    if tail:
        sections.append("<h2>Retry tail</h2>")
        sections.append(
            _bars(
                "retry",
                [{**t, "unpriced_calls": 0} for t in tail["tiers"]],
                lambda r: f"retry.depth {r['retry.depth']}",
            )
        )
        if tail["steps"]:
            sections.append(_table(*retry_steps_table(tail)[1:], "steps"))
    runs = report.get("cost_per_run")
    if runs:
        sections.append(
            f'<h2>Cost per run</h2><p class="note">outliers: runs {html.escape(runs["outlier_rule"])}</p>'
        )
        sections.append(_table(*runs_table(runs)[1:], "runs"))
    sections.append(f"<h2>Audit findings ({audit['findings_count']})</h2>")
    sections.append(
        _table(
            ["count", "kind", "call site", "example"],
            [
                [
                    str(g["count"]),
                    g["kind"],
                    g["call_site"],
                    g["examples"][0]["detail"] if g["examples"] else "",
                ]
                for g in audit["groups"]
            ],
            "audit",
        )
        if audit["groups"]
        else "<p>attribution complete: no findings</p>"
    )
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; img-src data:\">"
        f"<title>otel-costs report</title><style>{_CSS}</style></head><body>"
        + "".join(sections)
        + f'<div id="tip"></div><script type="application/json" id="report-data">{payload}</script>'
        + f"<script>{_JS}</script></body></html>\n"
    )


def write_html(path: str | Path, data: dict[str, Any]) -> None:
    """Write the page for ``data`` to ``path``."""
    Path(path).write_text(render_html(data), encoding="utf-8")
