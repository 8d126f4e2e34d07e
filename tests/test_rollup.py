"""The pure rollup engine: exact subtree sums over any shape of span graph."""

from __future__ import annotations

import math
import random
from collections.abc import Hashable

import pytest

from otel_costs import conventions as conv
from otel_costs.rollup import CostNode, NodeRollup, cost_node, rollup
from otel_costs.rollup._tree import rollup_attributes


def brute_force(nodes: list[CostNode]) -> list[tuple[int, int, bool, int]]:
    """(children, total, billable subtree, unpriced) per node, by walking each node's ancestors.

    Only valid for forests with unique ids (no cycles, no duplicates).
    """
    by_id = {n.span_id: i for i, n in enumerate(nodes)}
    total = [n.direct_nanos for n in nodes]
    billable = [n.billable for n in nodes]
    unpriced = [int(n.unpriced) for n in nodes]
    for node in nodes:
        parent = by_id.get(node.parent_id)
        while parent is not None:
            total[parent] += node.direct_nanos
            billable[parent] = billable[parent] or node.billable
            unpriced[parent] += int(node.unpriced)
            parent = by_id.get(nodes[parent].parent_id)
    return [(total[i] - n.direct_nanos, total[i], billable[i], unpriced[i]) for i, n in enumerate(nodes)]


def random_forest(rng: random.Random, size: int) -> list[CostNode]:
    """A shuffled forest of ``size`` nodes with random costs, ids of mixed hashable types."""
    ids: list[Hashable] = [
        rng.choice([rng.getrandbits(64), f"{rng.getrandbits(64):016x}"]) for _ in range(size)
    ]
    while len(set(ids)) < size:  # vanishingly unlikely, but the brute force needs unique ids
        ids = [rng.getrandbits(64) for _ in range(size)]
    nodes = []
    for i in range(size):
        parent = None if i == 0 or rng.random() < 0.05 else ids[rng.randrange(i)]
        billable = rng.random() < 0.4
        direct = rng.randrange(0, 10**12) if billable and rng.random() < 0.9 else 0
        nodes.append(CostNode(ids[i], parent, direct, billable, unpriced=billable and direct == 0))
    rng.shuffle(nodes)
    return nodes


@pytest.mark.parametrize("seed", range(20))
def test_totals_equal_brute_force_sum_on_random_trees(seed: int) -> None:
    """Every node's total is exactly its direct cost plus every descendant's, whatever the order."""
    rng = random.Random(seed)
    nodes = random_forest(rng, rng.randrange(1, 400))
    results = rollup(nodes)
    expected = brute_force(nodes)
    assert [(r.children_nanos, r.total_nanos, r.billable_subtree, r.unpriced) for r in results] == expected
    assert all(r.root_kind is None for r in results)


@pytest.mark.parametrize("seed", range(10))
def test_children_first_order_gives_the_same_sums(seed: int) -> None:
    """Nodes in the order spans end (every child before its parent) sum exactly as in any order."""
    rng = random.Random(seed)
    nodes = random_forest(rng, rng.randrange(1, 400))
    by_id = {n.span_id: n for n in nodes}

    def depth(node: CostNode) -> int:
        d = 0
        while node.parent_id is not None and node.parent_id in by_id:
            node, d = by_id[node.parent_id], d + 1
        return d

    ended = sorted(nodes, key=depth, reverse=True)  # deepest first: children before parents
    results = rollup(ended)
    figures = [(r.children_nanos, r.total_nanos, r.billable_subtree, r.unpriced) for r in results]
    assert figures == brute_force(ended)
    assert all(r.root_kind is None for r in results)
    shuffled = {n.span_id: r for n, r in zip(nodes, rollup(nodes), strict=True)}
    assert [shuffled[n.span_id] for n in ended] == results


def test_empty_input() -> None:
    """No nodes, no results."""
    assert rollup([]) == []


def test_docstring_example() -> None:
    """A root with one billable child totals the child's cost."""
    nodes = [CostNode("root", None), CostNode("llm", "root", direct_nanos=12, billable=True)]
    assert rollup(nodes) == [NodeRollup(12, 12, True, 0, None), NodeRollup(0, 12, True, 0, None)]


@pytest.mark.parametrize("remote", [False, True])
def test_missing_parent_makes_a_flagged_root(remote: bool) -> None:
    """A node whose parent is absent rolls up alone, flagged orphan (or remote_parent)."""
    nodes = [
        CostNode("root", None, 1, True),
        CostNode("a", "never-seen", 10, True, remote_parent=remote),
        CostNode("b", "a", 100, True),
    ]
    root, a, b = rollup(nodes)
    assert root.total_nanos == 1 and root.root_kind is None
    assert a.total_nanos == 110 and a.root_kind == ("remote_parent" if remote else "orphan")
    assert b.root_kind is None


def test_remote_parent_that_is_present_is_attached() -> None:
    """When the remote parent is among the nodes (collector side), the child hangs under it."""
    nodes = [CostNode("p", None), CostNode("c", "p", 7, True, remote_parent=True)]
    parent, child = rollup(nodes)
    assert parent.total_nanos == 7 and child.root_kind is None


def test_duplicate_ids_keep_both_spans() -> None:
    """A repeated span id is kept, rolled up alone and flagged duplicate; the first keeps the children."""
    nodes = [
        CostNode("p", None),
        CostNode("x", "p", 5, True),
        CostNode("x", "p", 7, True),
        CostNode("kid", "x", 11, True),
    ]
    p, first, dup, kid = rollup(nodes)
    assert first.total_nanos == 16 and first.root_kind is None
    assert dup.total_nanos == 7 and dup.root_kind == "duplicate"
    assert p.total_nanos == 16
    assert kid.total_nanos == 11


@pytest.mark.parametrize("length", [1, 2, 3, 50])
def test_cycles_terminate_and_are_flagged(length: int) -> None:
    """Parent links that loop are cut once, flagged cycle, and every node is summed exactly once."""
    ids = [f"c{i}" for i in range(length)]
    nodes = [CostNode(ids[i], ids[(i + 1) % length], 10**i, True) for i in range(length)]
    nodes.append(CostNode("hanger", ids[0], 10**length, True))
    nodes.append(CostNode("other-root", None, 3, True))
    results = rollup(nodes)
    cut = [r for r in results if r.root_kind == "cycle"]
    assert len(cut) == 1
    assert cut[0].total_nanos == sum(10**i for i in range(length + 1))
    assert [r.root_kind for r in results].count(None) == length + 1
    assert results[-1].total_nanos == 3


@pytest.mark.parametrize("reverse", [False, True])
def test_deep_chain_has_no_recursion_limit(reverse: bool) -> None:
    """A 100,000-deep chain rolls up iteratively; the root holds the whole chain's cost."""
    depth = 100_000
    nodes = [CostNode(0, None, 1, True)] + [CostNode(i, i - 1, 1, True) for i in range(1, depth)]
    if reverse:
        nodes.reverse()
    results = {n.span_id: r for n, r in zip(nodes, rollup(nodes), strict=True)}
    assert results[0].total_nanos == depth
    assert results[depth - 1].total_nanos == 1
    assert results[depth // 2].children_nanos == depth - depth // 2 - 1


# --- cost_node ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "bad"),
    [(conv.COST_DIRECT_NANOS, v) for v in (-1, math.nan, math.inf, True, "123", 12.0, [1])]
    + [(conv.COST_DIRECT, v) for v in (-0.5, math.nan, math.inf, False, "0.1", [1])],
)
def test_cost_node_flags_bad_costs_unpriced(key: str, bad: object) -> None:
    """A cost that is not a finite number >= 0 (of the right type) counts 0 and flags the node unpriced."""
    node = cost_node("s", "p", {key: bad, conv.COST_STATUS: conv.STATUS_PRICED})
    assert (node.direct_nanos, node.billable, node.unpriced) == (0, True, True)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        (
            {conv.COST_DIRECT_NANOS: 33_250_000, conv.COST_STATUS: conv.STATUS_PRICED},
            (33_250_000, True, False),
        ),
        ({conv.COST_DIRECT: 0.03325}, (33_250_000, True, False)),
        ({conv.COST_DIRECT_NANOS: 5, conv.COST_DIRECT: 99.0}, (5, True, False)),
        ({conv.COST_STATUS: conv.STATUS_UNPRICED}, (0, True, True)),
        ({conv.COST_STATUS: conv.STATUS_INVALID_USAGE}, (0, True, True)),
        ({conv.COST_STATUS: conv.STATUS_PARTIAL, conv.COST_DIRECT_NANOS: 9}, (9, True, True)),
        ({conv.COST_STATUS: conv.STATUS_AGGREGATE}, (0, False, False)),
        ({"http.method": "GET"}, (0, False, False)),
        ({}, (0, False, False)),
        (None, (0, False, False)),
    ],
)
def test_cost_node_reads_the_contract(
    attributes: dict[str, object] | None, expected: tuple[int, bool, bool]
) -> None:
    """cost_node reads the exact nanos, falls back to the USD double, and maps cost.status."""
    node = cost_node("s", None, attributes, remote_parent=True)
    assert (node.direct_nanos, node.billable, node.unpriced) == expected
    assert node.remote_parent is True


# --- rollup_attributes ---------------------------------------------------------------------


def test_rollup_attributes_publish_doubles_and_nanos() -> None:
    """A billable subtree publishes children/total as USD doubles and exact nanos, with the scope."""
    node = CostNode("a", None, 12_000_000, True)
    attrs = rollup_attributes(node, NodeRollup(21_250_000, 33_250_000, True, 1, None), scope=conv.SCOPE_TRACE)
    assert attrs == {
        conv.COST_CHILDREN: 0.02125,
        conv.COST_TOTAL: 0.03325,
        conv.COST_CHILDREN_NANOS: 21_250_000,
        conv.COST_TOTAL_NANOS: 33_250_000,
        conv.COST_CURRENCY: conv.CURRENCY_USD,
        conv.COST_ROLLUP_SCOPE: conv.SCOPE_TRACE,
        conv.COST_ROLLUP_UNPRICED: 1,
    }


def test_rollup_attributes_empty_without_billable_usage() -> None:
    """A subtree without billable usage that is an ordinary node gets no attributes at all."""
    assert rollup_attributes(CostNode("a", None), NodeRollup(0, 0, False, 0, None)) == {}


@pytest.mark.parametrize(
    ("kind", "flags"),
    [
        ("orphan", {conv.COST_ROLLUP_ORPHAN: True}),
        ("remote_parent", {conv.COST_ROLLUP_REMOTE_PARENT: True}),
        ("cycle", {conv.COST_ROLLUP_PARTIAL: True, conv.COST_ROLLUP_PARTIAL_REASON: "cycle"}),
        ("duplicate", {conv.COST_ROLLUP_PARTIAL: True, conv.COST_ROLLUP_PARTIAL_REASON: "duplicate"}),
    ],
)
def test_rollup_attributes_flag_root_kinds(kind: str, flags: dict[str, object]) -> None:
    """Why a node is a root is published even when its subtree costs nothing."""
    assert rollup_attributes(CostNode("a", "p"), NodeRollup(0, 0, False, 0, kind)) == flags


# --- agent from the tree (docs/conventions.md) ------------------------------------------------

from otel_costs.cli._report import by_agent  # noqa: E402
from otel_costs.pipeline._otlp import SpanRecord  # noqa: E402
from otel_costs.rollup._agents import inherited_attributes  # noqa: E402

OP = conv.GEN_AI_OPERATION_NAME
PRICED = {OP: "chat", conv.COST_STATUS: conv.STATUS_PRICED}


@pytest.mark.parametrize(
    ("chain", "written"),
    [
        # AutoGen / OpenLLMetry CrewAI: invoke_agent spans above, a workflow on top.
        (
            [
                {OP: "invoke_workflow", conv.WORKFLOW_NAME: "crew"},
                {OP: "invoke_agent", conv.AGENT_NAME: "supervisor", conv.AGENT_ID: "sup-1"},
                {OP: "invoke_agent", conv.AGENT_NAME: "researcher"},
                {OP: "execute_tool"},
            ],
            {
                conv.AGENT_NAME: "researcher",
                conv.AGENT_SOURCE: conv.AGENT_SOURCE_INHERITED,
                conv.AGENT_PARENT_ID: "sup-1",
                conv.WORKFLOW_NAME: "crew",
            },
        ),
        # OpenLLMetry LangChain: a workflow span, a task per sub-agent, no agent span.
        (
            [
                {conv.TRACELOOP_SPAN_KIND: "workflow", conv.TRACELOOP_ENTITY_NAME: "LangGraph"},
                {OP: "execute_task", conv.GEN_AI_TASK_NAME: "research_agent"},
            ],
            {
                conv.AGENT_NAME: "research_agent",
                conv.AGENT_SOURCE: conv.AGENT_SOURCE_INHERITED,
                conv.WORKFLOW_NAME: "LangGraph",
            },
        ),
        # OpenInference AGENT spans of a graph: the parent node when no agent span is above.
        (
            [
                {
                    conv.OI_SPAN_KIND: "AGENT",
                    conv.OI_AGENT_NAME: "writer",
                    conv.OI_GRAPH_NODE_PARENT_ID: "boss",
                }
            ],
            {
                conv.AGENT_NAME: "writer",
                conv.AGENT_SOURCE: conv.AGENT_SOURCE_INHERITED,
                conv.AGENT_PARENT_ID: "boss",
            },
        ),
        # An agent span wins over a task below it (a CrewAI task under its agent).
        (
            [
                {OP: "invoke_agent", conv.AGENT_NAME: "analyst"},
                {OP: "execute_task", conv.GEN_AI_TASK_NAME: "t1"},
            ],
            {conv.AGENT_NAME: "analyst", conv.AGENT_SOURCE: conv.AGENT_SOURCE_INHERITED},
        ),
        # An unnamed agent span gives nothing; nothing above: nothing written.
        ([{OP: "invoke_agent"}, {OP: "handoff"}], {}),
    ],
)
def test_agent_from_the_tree(chain: list[dict[str, object]], written: dict[str, object]) -> None:
    """A billable span without an agent gets the nearest agent above, its parent agent, the workflow."""
    attrs: list[dict[str, object] | None] = [*chain, dict(PRICED)]
    ids = list(range(1, len(attrs) + 1))
    parents: list[Hashable | None] = [None, *ids[:-1]]
    assert inherited_attributes(ids, parents, attrs).get(len(attrs) - 1, {}) == written


@pytest.mark.parametrize(
    ("own", "written"),
    [
        (
            {conv.AGENT_NAME: "coder"},
            {conv.AGENT_SOURCE: conv.AGENT_SOURCE_OWN, conv.AGENT_PARENT_ID: "lead"},
        ),
        (
            {conv.TRACELOOP_LC_AGENT_NAME: "coder"},
            {
                conv.AGENT_NAME: "coder",
                conv.AGENT_SOURCE: conv.AGENT_SOURCE_OWN,
                conv.AGENT_PARENT_ID: "lead",
            },
        ),
        (
            {conv.OI_METADATA: '{"lc_agent_name": "coder", "langgraph_node": "code"}'},
            {
                conv.AGENT_NAME: "coder",
                conv.AGENT_SOURCE: conv.AGENT_SOURCE_OWN,
                conv.AGENT_PARENT_ID: "lead",
            },
        ),
        (
            {conv.AGENT_NAME: "coder", conv.AGENT_PARENT_ID: "set-by-app"},
            {conv.AGENT_SOURCE: conv.AGENT_SOURCE_OWN},
        ),
    ],
)
def test_own_agent_wins_and_nothing_present_is_replaced(
    own: dict[str, object], written: dict[str, object]
) -> None:
    """A span's own agent (any convention) is kept, marked own; the parent is the next other agent."""
    attrs: list[dict[str, object] | None] = [
        {OP: "invoke_agent", conv.AGENT_NAME: "lead"},
        {OP: "invoke_agent", conv.AGENT_NAME: "coder"},
        {**PRICED, **own},
    ]
    assert inherited_attributes([1, 2, 3], [None, 1, 2], attrs).get(2, {}) == written


@pytest.mark.parametrize(
    "marker",
    [{conv.AGENT_PARENT_ID: "triage"}, {conv.OI_GRAPH_NODE_PARENT_ID: "triage"}],
    ids=["agent.parent_id", "graph.node.parent_id"],
)
def test_an_agent_spans_own_parent_wins_over_the_agent_above(marker: dict[str, object]) -> None:
    """A handed-off agent's span names its parent (triage): it wins over the runner's agent span above."""
    attrs: list[dict[str, object] | None] = [
        {OP: "invoke_agent", conv.AGENT_NAME: "runner"},
        {OP: "invoke_agent", conv.AGENT_NAME: "billing", **marker},
        dict(PRICED),
    ]
    assert inherited_attributes([1, 2, 3], [None, 1, 2], attrs)[2] == {
        conv.AGENT_NAME: "billing",
        conv.AGENT_SOURCE: conv.AGENT_SOURCE_INHERITED,
        conv.AGENT_PARENT_ID: "triage",
    }


def test_own_agent_takes_the_parent_its_agent_span_names() -> None:
    """A call naming its agent itself, under that agent's span with a parent marker, gets that parent."""
    attrs: list[dict[str, object] | None] = [
        {OP: "invoke_agent", conv.AGENT_NAME: "runner"},
        {OP: "invoke_agent", conv.AGENT_NAME: "billing", conv.AGENT_PARENT_ID: "triage"},
        {**PRICED, conv.AGENT_NAME: "billing"},
    ]
    assert inherited_attributes([1, 2, 3], [None, 1, 2], attrs)[2] == {
        conv.AGENT_SOURCE: conv.AGENT_SOURCE_OWN,
        conv.AGENT_PARENT_ID: "triage",
    }


@pytest.mark.parametrize(
    ("parents_named", "parent"),
    [(["triage"], "triage"), (["triage", "triage"], "triage"), (["triage", "billing"], None)],
    ids=["one", "same-twice", "two-differ"],
)
def test_parent_named_elsewhere_in_the_trace(parents_named: list[str], parent: str | None) -> None:
    """No parent above: the one parent the agent's other spans in the trace name; none if they differ."""
    attrs: list[dict[str, object] | None] = [
        {OP: "invoke_workflow"},
        {conv.TRACELOOP_SPAN_KIND: "agent", OP: "invoke_agent", conv.AGENT_NAME: "researcher"},
        dict(PRICED),
        *(
            {OP: "invoke_agent", conv.AGENT_NAME: "researcher", conv.AGENT_PARENT_ID: p}
            for p in parents_named
        ),
    ]
    ids = list(range(1, len(attrs) + 1))
    parents: list[Hashable | None] = [None, 1, 2, *([1] * len(parents_named))]
    written = inherited_attributes(ids, parents, attrs)[2]
    assert written.get(conv.AGENT_PARENT_ID) == parent
    assert written[conv.AGENT_NAME] == "researcher"


def test_agent_rule_survives_cycles_missing_parents_and_skips_aggregates() -> None:
    """Parent links that loop or point nowhere end the walk; aggregate and unmarked spans get nothing."""
    attrs: list[dict[str, object] | None] = [
        {OP: "invoke_agent", conv.AGENT_NAME: "a", conv.COST_STATUS: conv.STATUS_AGGREGATE},
        dict(PRICED),
        dict(PRICED),
        None,
    ]
    out = inherited_attributes([1, 2, 3, 4], [3, 1, 2, 99], attrs)
    assert out == {
        1: {conv.AGENT_NAME: "a", conv.AGENT_SOURCE: conv.AGENT_SOURCE_INHERITED},
        2: {conv.AGENT_NAME: "a", conv.AGENT_SOURCE: conv.AGENT_SOURCE_INHERITED},
    }


def test_by_agent_splits_foreign_agent_spans_with_no_glue(pipeline: object, llm_call: object) -> None:
    """Calls under a framework's ``invoke_agent`` spans are exported named; --by-agent splits them."""
    from otel_costs.testing import InMemoryPipeline

    assert isinstance(pipeline, InMemoryPipeline) and callable(llm_call)
    tracer = pipeline.tracer_provider.get_tracer("autogen-like")
    with tracer.start_as_current_span(
        "team run", attributes={OP: "invoke_workflow", conv.WORKFLOW_NAME: "chat"}
    ):
        for agent in ("planner", "coder"):
            with tracer.start_as_current_span(
                f"invoke_agent {agent}", attributes={OP: "invoke_agent", conv.AGENT_NAME: agent}
            ):
                llm_call(pipeline.tracer_provider, "gpt-5.2", 1000, 100)
    pipeline.tracer_provider.force_flush()
    calls = [s for s in pipeline.spans() if (s.attributes or {}).get(OP) == "chat"]
    assert sorted((s.attributes or {})[conv.AGENT_NAME] for s in calls) == ["coder", "planner"]
    assert all((s.attributes or {})[conv.AGENT_SOURCE] == conv.AGENT_SOURCE_INHERITED for s in calls)
    records = [
        SpanRecord(
            trace_id=s.context.trace_id.to_bytes(16, "big"),
            span_id=s.context.span_id.to_bytes(8, "big"),
            parent_span_id=s.parent.span_id.to_bytes(8, "big") if s.parent else None,
            name=s.name,
            attributes=dict(s.attributes or {}),
            service_name=None,
            start_time_unix_nano=s.start_time or 0,
            end_time_unix_nano=s.end_time or 0,
            remote_parent=False,
        )
        for s in pipeline.spans()
        if s.context is not None
    ]
    assert sorted(row[0] for row in by_agent(records)) == ["coder", "planner"]
