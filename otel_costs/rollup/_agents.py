"""Agent from the tree: the agent, parent agent and workflow each billable span ran under.

The rule is written in ``docs/conventions.md`` ("Agent from the tree"); the Collector's
``costrollup`` processor implements the same rule and the golden cases ``agent_from_tree_*``
check both. Pure functions over the columns of one trace (ids, parent ids, attributes), like
``_tree.rollup_columns``; ``CostRollupExporter`` applies it before the rollup.

Example::

    >>> ids, parents = [1, 2], [None, 1]
    >>> attrs = [{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "triage"},
    ...          {"gen_ai.operation.name": "chat", "cost.status": "priced"}]
    >>> inherited_attributes(ids, parents, attrs)
    {1: {'gen_ai.agent.name': 'triage', 'otel_costs.agent.source': 'inherited'}}
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from otel_costs import conventions as conv
from otel_costs._kinds import OWN_AGENT_KEYS, agent_id, own_agent, scope_name, span_kind, valid_name

#: ``cost.status`` values of the spans the rule applies to: every model call with usage of its own.
_TARGETS = frozenset(
    {
        conv.STATUS_PRICED,
        conv.STATUS_UNPRICED,
        conv.STATUS_PARTIAL,
        conv.STATUS_INVALID_USAGE,
        conv.STATUS_DUPLICATE,
    }
)
_EMPTY: Mapping[str, Any] = {}
#: Where an agent span names its own parent agent, in the order tried.
_OWN_PARENT_KEYS = (conv.AGENT_PARENT_ID, conv.OI_GRAPH_NODE_PARENT_ID)


def is_target(attributes: Mapping[str, object] | None) -> bool:
    """Whether the rule applies to a span with ``attributes`` (a ``cost.status`` other than aggregate)."""
    if not attributes:
        return False
    status = attributes.get(conv.COST_STATUS)
    return type(status) is str and status in _TARGETS


def inherited_attributes(
    span_ids: Sequence[Hashable],
    parent_ids: Sequence[Hashable | None],
    attributes_of: Sequence[Mapping[str, Any] | None],
    *,
    targets: Sequence[int] | None = None,
    acyclic: bool = False,
) -> dict[int, dict[str, Any]]:
    """Per span index, the attributes the rule writes on it (only names the span lacks, and
    ``otel_costs.agent.source``); spans the rule writes nothing on are left out.

    ``targets``: the indexes ``is_target`` holds for, if the caller knows them already.
    ``acyclic``: the caller knows the parent links hold no loop (``rollup_columns`` flagged no
    ``cycle``), so the walk above a parent is the same for every child that names the same own
    agent, and is made once per (parent, own agent).
    """
    if targets is None:
        targets = [i for i, attributes in enumerate(attributes_of) if is_target(attributes)]
    if not targets:
        return {}
    # The first span with an id owns it (as in rollup_columns): built back to front in C.
    n = len(span_ids)
    index: dict[Hashable, int] = dict(zip(reversed(span_ids), range(n - 1, -1, -1), strict=True))
    kinds: dict[int, str | None] = {}

    def kind_of(i: int) -> str | None:
        if i not in kinds:
            kinds[i] = span_kind(attributes_of[i] or _EMPTY)
        return kinds[i]

    named: dict[str, str | None] | None = None

    def named_parent(agent: str) -> str | None:
        # Built once per trace, only when a span's ancestors name no parent agent.
        nonlocal named
        if named is None:
            named = _named_parents(attributes_of, kind_of)
        return named.get(agent)

    # The walks made, by (parent, own agent); most call spans name no agent of their own, so
    # theirs are kept by parent alone (no key tuple to build).
    walks: dict[tuple[int, str | None], _Found | None] | None = {} if acyclic else None
    walks_by_parent: dict[int, _Found | None] = {}
    get = index.get
    out: dict[int, dict[str, Any]] = {}
    for i in targets:
        attributes = attributes_of[i] or _EMPTY
        # Most call spans name no agent of their own: one set test over the few keys says so.
        agent = None if attributes.keys().isdisjoint(OWN_AGENT_KEYS) else own_agent(attributes)
        parent_id = parent_ids[i]
        j = None if parent_id is None else get(parent_id)
        if walks is None or j is None:
            found = _walk(i, j, agent, index, parent_ids, attributes_of, kind_of)
        elif agent is None:
            if j in walks_by_parent:
                found = walks_by_parent[j]
            else:
                found = walks_by_parent[j] = _walk(i, j, None, index, parent_ids, attributes_of, kind_of)
        else:
            key = (j, agent)
            if key in walks:
                found = walks[key]
            else:
                found = walks[key] = _walk(i, j, agent, index, parent_ids, attributes_of, kind_of)
        if found is not None:
            written = _written(attributes, found, named_parent)
            if written:
                out[i] = written
    return out


#: What the walk above a span found: agent, its source, parent agent and workflow.
_Found = tuple[str | None, str | None, str | None, str | None]


def _walk(
    i: int,
    j: int | None,
    agent: str | None,
    index: Mapping[Hashable, int],
    parent_ids: Sequence[Hashable | None],
    attributes_of: Sequence[Mapping[str, Any] | None],
    kind_of: Any,
) -> _Found | None:
    """The rule over span ``i``'s ancestors from its parent ``j`` up, ``agent`` its own agent;
    ``None`` when it finds neither an agent nor a workflow (the rule then writes nothing)."""
    source = conv.AGENT_SOURCE_OWN if agent is not None else None
    task: str | None = None
    parent_agent: str | None = None
    workflow: str | None = None
    seen = {i}
    # Each ancestor once: parent links may loop (the rollup flags that; here it just stops).
    while j is not None and j not in seen:
        seen.add(j)
        ancestor = attributes_of[j] or _EMPTY
        kind = kind_of(j)
        if kind == conv.KIND_AGENT:
            name = scope_name(ancestor, kind)
            if name is not None:
                if agent is None:
                    agent, source = name, conv.AGENT_SOURCE_INHERITED
                if parent_agent is None:
                    # The agent's own span may name its parent (a handoff, a graph edge): that
                    # wins over the next agent span above, which may be no parent of it.
                    own = name == agent
                    parent_agent = _own_parent(ancestor, name) if own else agent_id(ancestor, name)
        elif kind == conv.KIND_TASK and task is None:
            task = scope_name(ancestor, kind)
        elif kind == conv.KIND_WORKFLOW and workflow is None:
            workflow = scope_name(ancestor, kind)
        if workflow is not None and agent is not None and parent_agent is not None:
            break
        j = _parent(j, index, parent_ids)
    if agent is None and task is not None:
        # No agent span above: OpenLLMetry writes LangChain sub-agents and graph nodes as tasks.
        agent, source = task, conv.AGENT_SOURCE_INHERITED
    if agent is None and workflow is None:
        return None  # nothing to write (a parent agent is only ever found with an agent)
    return agent, source, parent_agent, workflow


def _written(attributes: Mapping[str, Any], found: _Found, named_parent: Any) -> dict[str, Any]:
    """What the rule writes on a span with ``attributes``, given what the walk above it ``found``."""
    agent, source, parent_agent, workflow = found
    if parent_agent is None and agent is not None and conv.AGENT_PARENT_ID not in attributes:
        # Two tracers side by side (an instrumentation's agent spans beside the framework
        # integration's): the parent an agent span of this agent names elsewhere in the trace.
        parent_agent = named_parent(agent)
    written: dict[str, Any] = {}
    if agent is not None:
        if conv.AGENT_NAME not in attributes:
            written[conv.AGENT_NAME] = agent
        if attributes.get(conv.AGENT_SOURCE) != source:
            written[conv.AGENT_SOURCE] = source
    if parent_agent is not None and conv.AGENT_PARENT_ID not in attributes:
        written[conv.AGENT_PARENT_ID] = parent_agent
    if workflow is not None and conv.WORKFLOW_NAME not in attributes:
        written[conv.WORKFLOW_NAME] = workflow
    return written


def _named_parents(attributes_of: Sequence[Mapping[str, Any] | None], kind_of: Any) -> dict[str, str | None]:
    """Per agent name, the one parent agent its agent spans in the trace name themselves
    (``None`` when they name different ones: ambiguous, so none is used)."""
    named: dict[str, str | None] = {}
    for j, attributes in enumerate(attributes_of):
        if not attributes or kind_of(j) != conv.KIND_AGENT:
            continue
        name = scope_name(attributes, conv.KIND_AGENT)
        parent = None if name is None else _own_parent(attributes, name)
        if name is None or parent is None:
            continue
        if name not in named:
            named[name] = parent
        elif named[name] != parent:
            named[name] = None
    return named


def _own_parent(attributes: Mapping[str, Any], agent: str) -> str | None:
    """The parent agent an agent span names itself (``agent.parent_id``, else OpenInference's
    ``graph.node.parent_id``), unless it is the agent itself."""
    for key in _OWN_PARENT_KEYS:
        parent = valid_name(attributes.get(key))
        if parent is not None and parent != agent:
            return parent
    return None


def _parent(i: int, index: Mapping[Hashable, int], parent_ids: Sequence[Hashable | None]) -> int | None:
    parent = parent_ids[i]
    return None if parent is None else index.get(parent)
