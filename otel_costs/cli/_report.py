"""Human-readable cost reports over decoded spans: trees per trace and a table by agent.

Totals are recomputed with the rollup engine from each span's direct cost, over every
span in the input, so a file holding several services' spans gives trace-wide trees.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from otel_costs import conventions as conv
from otel_costs._kinds import is_aggregate, scope_name, span_kind
from otel_costs._money import nanos_to_decimal
from otel_costs.pipeline._otlp import SpanRecord, hex_id
from otel_costs.rollup._tree import NodeRollup, cost_node, rollup


@dataclass
class TreeNode:
    """One span of a cost tree."""

    record: SpanRecord
    """The span."""
    direct_nanos: int
    """Its own cost, nano-USD."""
    result: NodeRollup
    """Its rollup figures."""
    children: list[TreeNode] = field(default_factory=list)
    """Child spans, by start time."""

    @property
    def label(self) -> str:
        """The agent name for agent spans, the workflow name for workflow spans, else the span name."""
        attrs = self.record.attributes
        kind = span_kind(attrs)
        if kind == conv.KIND_AGENT:
            name = scope_name(attrs, kind)
            if name:
                return name
        if kind == conv.KIND_WORKFLOW:
            name = scope_name(attrs, kind)
            if name:
                return f"workflow {name}"
        return self.record.name


def cost_trees(records: Iterable[SpanRecord]) -> list[list[TreeNode]]:
    """The roots of each trace in ``records`` (traces in order of first start time)."""
    by_trace: dict[bytes, list[SpanRecord]] = defaultdict(list)
    for record in records:
        by_trace[record.trace_id].append(record)
    traces: list[list[TreeNode]] = []
    for spans in by_trace.values():
        nodes = [
            cost_node(s.span_id, s.parent_span_id, s.attributes, remote_parent=s.remote_parent) for s in spans
        ]
        results = rollup(nodes)
        tree = [TreeNode(s, n.direct_nanos, r) for s, n, r in zip(spans, nodes, results, strict=True)]
        by_id = {t.record.span_id: t for t in reversed(tree)}
        roots: list[TreeNode] = []
        for t in tree:
            parent = by_id.get(t.record.parent_span_id) if t.record.parent_span_id else None
            if t.result.root_kind is None and parent is not None and parent is not t:
                parent.children.append(t)
            else:
                roots.append(t)
        for t in tree:
            t.children.sort(key=lambda c: c.record.start_time_unix_nano)
        roots.sort(key=lambda c: c.record.start_time_unix_nano)
        traces.append(roots)
    traces.sort(key=lambda roots: roots[0].record.start_time_unix_nano if roots else 0)
    return traces


def format_usd(nanos: int) -> str:
    """``33_250_000`` -> ``$0.03325``; at least two decimals, no trailing zeros beyond them."""
    amount = nanos_to_decimal(nanos).normalize()
    if amount == amount.to_integral_value() or -amount.as_tuple().exponent < 2:  # type: ignore[operator]
        amount = amount.quantize(Decimal("0.01"))
    return f"${amount:f}"


def format_tree(roots: Sequence[TreeNode], *, show_all: bool = False) -> str:
    """Draw one trace as a tree: ``coordinator ($0.045)`` / ``├── code_agent ($0.030)`` ...

    Spans whose subtree holds no billable usage are left out unless ``show_all``.
    """
    lines: list[str] = []

    def flags(node: TreeNode) -> str:
        notes = []
        if node.result.unpriced:
            notes.append(f"{node.result.unpriced} unpriced")
        if node.result.root_kind is not None:
            notes.append(node.result.root_kind.replace("_", " "))
        return f" [{', '.join(notes)}]" if notes else ""

    def visible(node: TreeNode) -> bool:
        return show_all or node.result.billable_subtree

    # Iterative: a 100,000-deep trace must not hit the recursion limit.
    stack: list[tuple[TreeNode, str, str]] = [(r, "", "") for r in reversed([r for r in roots if visible(r)])]
    while stack:
        node, lead, child_lead = stack.pop()
        lines.append(f"{lead}{node.label} ({format_usd(node.result.total_nanos)}){flags(node)}")
        kids = [c for c in node.children if visible(c)]
        for i in range(len(kids) - 1, -1, -1):
            last = i == len(kids) - 1
            stack.append(
                (
                    kids[i],
                    child_lead + ("└── " if last else "├── "),
                    child_lead + ("    " if last else "│   "),
                )
            )
    return "\n".join(lines)


def by_agent(records: Iterable[SpanRecord]) -> list[tuple[str, int, int, int]]:
    """Direct cost per agent: ``(agent, calls, nano-USD, unpriced calls)``, most expensive first."""
    table: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for record in records:
        node = cost_node(record.span_id, record.parent_span_id, record.attributes)
        if not node.billable or is_aggregate(record.attributes):
            continue
        row = table[str(record.attributes.get(conv.AGENT_NAME, "(no agent)"))]
        row[0] += 1
        row[1] += node.direct_nanos
        row[2] += int(node.unpriced)
    return sorted(((k, v[0], v[1], v[2]) for k, v in table.items()), key=lambda r: (-r[2], r[0]))


def format_by_agent(rows: Sequence[tuple[str, int, int, int]]) -> str:
    """The ``by_agent`` table as aligned text."""
    header = ("agent", "calls", "cost", "unpriced")
    body = [(a, str(c), format_usd(n), str(u)) for a, c, n, u in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(4)]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *body]
    )


def trace_title(roots: Sequence[TreeNode]) -> str:
    """A one-line heading for a trace: its id and workflow id when known."""
    if not roots:
        return "trace"
    record = roots[0].record
    workflow = record.attributes.get(conv.WORKFLOW_ID)
    suffix = f" workflow {workflow}" if workflow else ""
    return f"trace {hex_id(record.trace_id)}{suffix}"
