"""The cost rollup: pure functions over plain data, no SDK objects.

Given the spans of one trace as ``CostNode``s (id, parent id, own cost in integer nano-USD),
``rollup`` returns for each node the sum of its children's totals and its subtree total.
The in-process ``CostRollupExporter`` runs it over the spans of one process; ``otel-costs
serve`` runs the same function over every service's spans of a trace, which gives
trace-wide totals. All sums are integer sums, so a parent's total is exactly the sum of
its subtree.

Example::

    >>> nodes = [CostNode("root", None), CostNode("llm", "root", direct_nanos=12, billable=True)]
    >>> [r.total_nanos for r in rollup(nodes)]
    [12, 12]
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import _conventions as conv
from ._money import nanos_to_usd, usd_wire_to_nanos


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
    return CostNode(span_id, parent_id, nanos or 0, billable, unpriced, remote_parent)


def rollup(nodes: Sequence[CostNode]) -> list[NodeRollup]:
    """Roll costs up the span trees of ``nodes``; result ``i`` belongs to ``nodes[i]``.

    Iterative (a 100,000-deep chain is fine), O(n). Parents that are missing make their
    children roots flagged ``orphan`` (or ``remote_parent``); parent links that loop are cut
    and the node where the cut is made is flagged ``cycle``; a repeated span id is rolled up
    alone and flagged ``duplicate``.
    """
    n = len(nodes)
    index: dict[Hashable, int] = {}
    root_kind: list[str | None] = [None] * n
    for i, node in enumerate(nodes):
        if node.span_id in index:
            root_kind[i] = "duplicate"
        else:
            index[node.span_id] = i

    parent_of = [-1] * n
    children: list[list[int] | None] = [None] * n
    roots: list[int] = []
    for i, node in enumerate(nodes):
        if root_kind[i] == "duplicate":
            roots.append(i)
            continue
        parent = index.get(node.parent_id) if node.parent_id is not None else None
        if parent == i:
            # Its own parent: a loop of one link, cut and flagged like any other loop.
            root_kind[i] = "cycle"
            roots.append(i)
            continue
        if parent is None:
            if node.parent_id is not None:
                root_kind[i] = "remote_parent" if node.remote_parent else "orphan"
            roots.append(i)
            continue
        parent_of[i] = parent
        kids = children[parent]
        if kids is None:
            children[parent] = [i]
        else:
            kids.append(i)

    children_nanos = [0] * n
    total = [0] * n
    billable = [False] * n
    unpriced = [0] * n
    done = [False] * n

    def walk(root: int) -> None:
        # Pre-order without recursion, then finish nodes in reverse: every child is finished
        # before its parent. A node has one parent, so each is visited once.
        order: list[int] = []
        stack = [root]
        while stack:
            i = stack.pop()
            order.append(i)
            kids = children[i]
            if kids is not None:
                stack.extend(kids)
        for i in reversed(order):
            node = nodes[i]
            kid_sum = 0
            kid_billable = False
            kid_unpriced = 0
            kids = children[i]
            if kids is not None:
                for k in kids:
                    kid_sum += total[k]
                    kid_billable = kid_billable or billable[k]
                    kid_unpriced += unpriced[k]
            children_nanos[i] = kid_sum
            total[i] = node.direct_nanos + kid_sum
            billable[i] = node.billable or kid_billable
            unpriced[i] = kid_unpriced + node.unpriced
            done[i] = True

    for r in roots:
        walk(r)

    # Whatever no root reached hangs off a loop of parent links. Following parents from such
    # a node must come back to a node already seen: cut the loop there, make that node a root
    # flagged "cycle", and roll up from it (which also reaches everything hanging off the loop).
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
        walk(j)

    return [NodeRollup(children_nanos[i], total[i], billable[i], unpriced[i], root_kind[i]) for i in range(n)]


def rollup_attributes(
    node: CostNode, result: NodeRollup, *, scope: str = conv.SCOPE_PROCESS
) -> dict[str, Any]:
    """The span attributes that publish ``result`` (empty when the subtree holds no billable usage).

    Doubles for queries (``span.cost.total > 0.1``), exact nano-USD ints for re-summing.
    """
    if not result.billable_subtree and result.root_kind is None:
        return {}
    attributes: dict[str, Any] = {}
    if result.billable_subtree:
        attributes[conv.COST_CHILDREN] = nanos_to_usd(result.children_nanos)
        attributes[conv.COST_TOTAL] = nanos_to_usd(result.total_nanos)
        attributes[conv.COST_CHILDREN_NANOS] = result.children_nanos
        attributes[conv.COST_TOTAL_NANOS] = result.total_nanos
        attributes[conv.COST_CURRENCY] = conv.CURRENCY_USD
        attributes[conv.COST_ROLLUP_SCOPE] = scope
        if result.unpriced:
            attributes[conv.COST_ROLLUP_UNPRICED] = result.unpriced
    kind = result.root_kind
    if kind == "remote_parent":
        attributes[conv.COST_ROLLUP_REMOTE_PARENT] = True
    elif kind == "orphan":
        attributes[conv.COST_ROLLUP_ORPHAN] = True
    elif kind is not None:
        attributes[conv.COST_ROLLUP_PARTIAL] = True
        attributes[conv.COST_ROLLUP_PARTIAL_REASON] = kind
    return attributes
