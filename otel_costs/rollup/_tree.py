"""The cost rollup: pure functions over plain data, no SDK objects.

Given the spans of one trace as ``CostNode``s (id, parent id, own cost in integer nano-USD),
``rollup`` returns for each node the sum of its children's totals and its subtree total.
The in-process ``CostRollupExporter`` runs it over the spans of one process; the Collector's
``costrollup`` processor (Go, ``collector/costrollupprocessor/``) does the same over every
service's spans of a trace, which gives trace-wide totals (``tests/test_golden.py`` checks both
on the same cases). All sums are integer sums, so a parent's total is exactly the sum of
its subtree.

Example::

    >>> nodes = [CostNode("root", None), CostNode("llm", "root", direct_nanos=12, billable=True)]
    >>> [r.total_nanos for r in rollup(nodes)]
    [12, 12]
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from otel_costs import conventions as conv
from otel_costs._money import NANOS_PER_USD, usd_wire_to_nanos


@dataclass(slots=True)
class CostNode:
    """One span as the rollup sees it."""

    span_id: Hashable
    """The span's id, unique within its trace (an int, bytes or hex string)."""
    parent_id: Hashable | None
    """The parent span's id, or ``None`` for a trace root."""
    direct_nanos: int = 0
    """The span's own cost in nano-USD (1e-9 USD); 0 for spans that are not billable."""
    billable: bool = False
    """The span carries LLM usage of its own (priced or not)."""
    unpriced: bool = False
    """The span carries usage that could not be priced: totals above it are a lower bound."""
    remote_parent: bool = False
    """The parent lives in another process (``SpanContext.is_remote``)."""


@dataclass(frozen=True, slots=True)
class NodeRollup:
    """The rollup figures of one node."""

    children_nanos: int
    """Sum of the children's ``total_nanos``."""
    total_nanos: int
    """``direct_nanos + children_nanos``: the cost of the whole subtree."""
    billable_subtree: bool
    """Some span in the subtree (itself included) is billable."""
    unpriced: int
    """How many billable spans in the subtree (itself included) could not be priced."""
    root_kind: str | None
    """Why this node is a root: ``None`` (not a root or a true root), ``"remote_parent"``,
    ``"orphan"`` (its parent was never seen), ``"cycle"`` (parent links loop) or ``"duplicate"``
    (a second span with an id already seen: rolled up on its own)."""


#: ``cost.status`` values of spans that carry LLM usage of their own.
_BILLABLE = frozenset(
    {conv.STATUS_PRICED, conv.STATUS_UNPRICED, conv.STATUS_INVALID_USAGE, conv.STATUS_PARTIAL}
)
#: ``cost.status`` values whose direct cost is missing or a lower bound.
_INCOMPLETE = frozenset({conv.STATUS_UNPRICED, conv.STATUS_INVALID_USAGE, conv.STATUS_PARTIAL})


def cost_node(
    span_id: Hashable,
    parent_id: Hashable | None,
    attributes: Mapping[str, object] | None,
    *,
    remote_parent: bool = False,
) -> CostNode:
    """The ``CostNode`` of a span from its ids and attributes (as ``CostSpanProcessor`` wrote them).

    Reads the exact ``cost.direct_nanos``; where only the ``cost.direct`` double survived
    (another tool priced the span) it is converted to nano-USD. A cost that is not a
    finite number >= 0 counts as 0 and flags the node unpriced, so nothing is silently $0.
    """
    if not attributes:
        return CostNode(span_id, parent_id, remote_parent=remote_parent)
    return CostNode(span_id, parent_id, *own_cost(attributes), remote_parent)


def own_cost(attributes: Mapping[str, object]) -> tuple[int, bool, bool]:
    """``(direct_nanos, billable, unpriced)`` of a span's attributes, as ``cost_node`` reads them."""
    status = attributes.get(conv.COST_STATUS)
    raw = attributes.get(conv.COST_DIRECT_NANOS)
    if raw is None:
        raw_usd = attributes.get(conv.COST_DIRECT)
        nanos = None if raw_usd is None else usd_wire_to_nanos(raw_usd)
        present = raw_usd is not None
    else:
        nanos = raw if type(raw) is int and raw >= 0 else None
        present = True
    billable = status in _BILLABLE or present
    unpriced = status in _INCOMPLETE or (present and nanos is None)
    return nanos or 0, billable, unpriced


def rollup(nodes: Sequence[CostNode]) -> list[NodeRollup]:
    """Roll costs up the span trees of ``nodes``; result ``i`` belongs to ``nodes[i]``.

    Iterative (a 100,000-deep chain is fine), O(n). Parents that are missing make their
    children roots flagged ``orphan`` (or ``remote_parent``); parent links that loop are cut
    and the node where the cut is made is flagged ``cycle``; a repeated span id is rolled up
    alone and flagged ``duplicate``.
    """
    columns = rollup_columns(
        [node.span_id for node in nodes],
        [node.parent_id for node in nodes],
        [node.remote_parent for node in nodes],
        [node.direct_nanos for node in nodes],
        [node.billable for node in nodes],
        [int(node.unpriced) for node in nodes],
    )
    return [NodeRollup(*figures) for figures in zip(*columns, strict=True)]


#: ``rollup_columns``' answer: per node, children nanos, total nanos, billable subtree, unpriced
#: count and root kind (the fields of ``NodeRollup``, as columns).
Columns = tuple[list[int], list[int], list[bool], list[int], list[str | None]]


def rollup_columns(
    span_ids: Sequence[Hashable],
    parent_ids: Sequence[Hashable | None],
    remote_parent: Sequence[bool],
    direct_nanos: Sequence[int],
    billable: Sequence[bool],
    unpriced: Sequence[int],
) -> Columns:
    """``rollup`` over columns (one list per ``CostNode`` field, ``unpriced`` as 0/1), without
    building a ``CostNode`` or ``NodeRollup`` per span: the in-process exporter's hot path."""
    n = len(span_ids)
    # The first span with an id owns it (later ones are duplicates): built back to front in C.
    index: dict[Hashable, int] = dict(zip(reversed(span_ids), range(n - 1, -1, -1), strict=True))
    root_kind: list[str | None] = [None] * n
    if len(index) != n:
        for i, span_id in enumerate(span_ids):
            if index[span_id] != i:
                root_kind[i] = "duplicate"

    parent_of = [-1] * n
    roots: list[int] = []
    # Spans end (and are exported) children first: then every child comes before its parent
    # and one forward pass sums the tree, with no child lists and no walk.
    ordered = True
    get = index.get
    for i, parent_id in enumerate(parent_ids):
        if parent_id is None:
            roots.append(i)
            continue
        if root_kind[i] is not None:  # a duplicate: rolled up alone
            roots.append(i)
            continue
        parent = get(parent_id)
        if parent is None:
            root_kind[i] = "remote_parent" if remote_parent[i] else "orphan"
            roots.append(i)
        elif parent == i:
            # Its own parent: a loop of one link, cut and flagged like any other loop.
            root_kind[i] = "cycle"
            roots.append(i)
        else:
            parent_of[i] = parent
            if parent < i:
                ordered = False

    children_nanos = [0] * n
    total = [0] * n
    billable_subtree = list(billable)
    unpriced_subtree = list(unpriced)

    def add_up(order: Iterable[int]) -> None:
        # ``order`` has every child before its parent: each adds its finished subtree to it.
        for i in order:
            subtree = total[i] = direct_nanos[i] + children_nanos[i]
            parent = parent_of[i]
            if parent >= 0:
                children_nanos[parent] += subtree
                if billable_subtree[i]:
                    billable_subtree[parent] = True
                if unpriced_subtree[i]:
                    unpriced_subtree[parent] += unpriced_subtree[i]

    if ordered:
        # Every parent link points forward, so no link loops. Nothing billable, no cost and
        # nothing unpriced (a trace without model calls): every sum is 0 as it stands.
        if any(billable) or any(direct_nanos) or any(unpriced):
            add_up(range(n))
        return children_nanos, total, billable_subtree, unpriced_subtree, root_kind

    children: list[list[int] | None] = [None] * n
    for i, parent in enumerate(parent_of):
        if parent >= 0:
            kids = children[parent]
            if kids is None:
                children[parent] = [i]
            else:
                kids.append(i)
    done = [False] * n

    def walk(start: list[int]) -> None:
        # Pre-order without recursion, then finish nodes in reverse: every child is finished
        # (and has added itself to its parent) before its parent. A node has one parent, so
        # each is visited once.
        order: list[int] = []
        stack = start
        while stack:
            i = stack.pop()
            order.append(i)
            done[i] = True
            kids = children[i]
            if kids is not None:
                stack.extend(kids)
        add_up(reversed(order))

    walk(list(roots))

    # Whatever no root reached hangs off a loop of parent links. Following parents from such
    # a node must come back to a node already seen: cut the loop there, make that node a root
    # flagged "cycle", and roll up from it (which also reaches everything hanging off the loop).
    if len(roots) < n and not all(done):
        for i in range(n):
            if done[i]:
                continue
            seen: set[int] = set()
            j = i
            while j not in seen:
                seen.add(j)
                j = parent_of[j]
            loop_kids = children[parent_of[j]]
            assert loop_kids is not None
            loop_kids.remove(j)
            parent_of[j] = -1
            root_kind[j] = "cycle"
            walk([j])

    return children_nanos, total, billable_subtree, unpriced_subtree, root_kind


def rollup_attributes(
    node: CostNode, result: NodeRollup, *, scope: str = conv.SCOPE_PROCESS
) -> dict[str, Any]:
    """The span attributes that publish ``result`` (empty when the subtree holds no billable usage).

    Doubles for queries (``span.cost.total > 0.1``), exact nano-USD ints for re-summing.
    """
    attributes: dict[str, Any] = {}
    write_rollup(
        attributes,
        result.children_nanos,
        result.total_nanos,
        result.billable_subtree,
        result.unpriced,
        result.root_kind,
        scope,
    )
    return attributes


def write_rollup(
    attributes: dict[str, Any],
    children_nanos: int,
    total_nanos: int,
    billable_subtree: bool,
    unpriced: int,
    root_kind: str | None,
    scope: str = conv.SCOPE_PROCESS,
) -> None:
    """Add one span's rollup figures (``rollup_columns``' columns at its index) to ``attributes``.

    Nothing when the subtree holds no billable usage and the span is not flagged.
    """
    if billable_subtree:
        # The wire doubles (``_money.nanos_to_usd``), divided inline: this runs for every span.
        attributes[conv.COST_CHILDREN] = children_nanos / NANOS_PER_USD
        attributes[conv.COST_TOTAL] = total_nanos / NANOS_PER_USD
        attributes[conv.COST_CHILDREN_NANOS] = children_nanos
        attributes[conv.COST_TOTAL_NANOS] = total_nanos
        attributes[conv.COST_CURRENCY] = conv.CURRENCY_USD
        attributes[conv.COST_ROLLUP_SCOPE] = scope
        if unpriced:
            attributes[conv.COST_ROLLUP_UNPRICED] = unpriced
    if root_kind is None:  # most spans: tested first, as comparing None to a str is slow
        return
    if root_kind == "remote_parent":
        attributes[conv.COST_ROLLUP_REMOTE_PARENT] = True
    elif root_kind == "orphan":
        attributes[conv.COST_ROLLUP_ORPHAN] = True
    else:
        attributes[conv.COST_ROLLUP_PARTIAL] = True
        attributes[conv.COST_ROLLUP_PARTIAL_REASON] = root_kind
