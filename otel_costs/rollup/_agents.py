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
from otel_costs._kinds import agent_id, own_agent, scope_name, span_kind, valid_name

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
) -> dict[int, dict[str, Any]]:
    """Per span index, the attributes the rule writes on it (only names the span lacks, and
    ``otel_costs.agent.source``); spans the rule writes nothing on are left out."""
    targets = [i for i, attributes in enumerate(attributes_of) if is_target(attributes)]
    if not targets:
        return {}
    index: dict[Hashable, int] = {}
    for i, span_id in enumerate(span_ids):
        index.setdefault(span_id, i)
    kinds: dict[int, str | None] = {}

    def kind_of(i: int) -> str | None:
        if i not in kinds:
            kinds[i] = span_kind(attributes_of[i] or _EMPTY)
        return kinds[i]

    out: dict[int, dict[str, Any]] = {}
    for i in targets:
        written = _for_span(i, index, parent_ids, attributes_of, kind_of)
        if written:
            out[i] = written
    return out


def _for_span(
    i: int,
    index: Mapping[Hashable, int],
    parent_ids: Sequence[Hashable | None],
    attributes_of: Sequence[Mapping[str, Any] | None],
    kind_of: Any,
) -> dict[str, Any]:
    attributes = attributes_of[i] or _EMPTY
    agent = own_agent(attributes)
    source = conv.AGENT_SOURCE_OWN if agent is not None else None
    task: str | None = None
    parent_agent: str | None = None
    graph_parent: str | None = None
    workflow: str | None = None
    seen = {i}
    j = _parent(i, index, parent_ids)
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
                    graph_parent = valid_name(ancestor.get(conv.OI_GRAPH_NODE_PARENT_ID))
                elif parent_agent is None and name != agent:
                    parent_agent = agent_id(ancestor, name)
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
    if parent_agent is None:
        parent_agent = graph_parent
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


def _parent(i: int, index: Mapping[Hashable, int], parent_ids: Sequence[Hashable | None]) -> int | None:
    parent = parent_ids[i]
    return None if parent is None else index.get(parent)
