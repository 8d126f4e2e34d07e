"""The span-kind classifier: the one reader of ``conventions.SPAN_KINDS`` and the agent names.

Every stage asks it the same questions, so they cannot disagree: is this span a model call
(capture stand-down, pricing, dedupe, sampling, reports)? is its usage an aggregate of its
children's? which agent, parent agent and workflow does it name? The table and the rule live in
``docs/conventions.md`` ("Span kinds"). Pure functions over attribute mappings; no SDK objects.

Example::

    >>> span_kind({"gen_ai.operation.name": "execute_task"})
    'task'
    >>> is_model_call({"openinference.span.kind": "LLM"}), is_model_call({"gen_ai.operation.name": "x"})
    (True, False)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from otel_costs import conventions as conv

#: The marker attributes, in the order they are tried.
MARKERS: Final = tuple(conv.SPAN_KINDS)
MARKER_KEYS: Final = frozenset(MARKERS)
_TABLES: Final = tuple((marker, conv.SPAN_KINDS[marker]) for marker in MARKERS)
_MODEL_CALL: Final = conv.KIND_MODEL_CALL
_OP: Final = conv.GEN_AI_OPERATION_NAME
_OI: Final = conv.OI_SPAN_KIND
_TL: Final = conv.TRACELOOP_SPAN_KIND
#: ``gen_ai.operation.name`` values of a model call, as written (the fast paths' test).
_OP_CALLS: Final = frozenset(v for v, k in conv.SPAN_KINDS[_OP].items() if k == _MODEL_CALL)
#: Longest agent/workflow name accepted (as the processor's baggage values).
MAX_NAME_LENGTH: Final = 256
#: Longest ``metadata`` JSON string parsed for an agent name.
MAX_METADATA_LENGTH: Final = 64 * 1024


def _lookup(table: Mapping[str, str], value: str) -> str | None:
    """``value`` looked up lower-case, then upper-case (after the exact spelling missed)."""
    return table.get(value.lower()) or table.get(value.upper())


def span_kind(attributes: Mapping[str, object]) -> str | None:
    """The kind (``conventions.KIND_*``) of a span with ``attributes``; ``None`` when no marker has
    a known value (an unknown operation is not a model call). A span that any convention calls an
    agent, workflow, task, tool or chain is that (its usage is an aggregate, never priced), even if
    another marker says model call; else the first known value decides."""
    # The common case, a call span in the GenAI names only: settled without the loop.
    op = attributes.get(_OP)
    if type(op) is str and op in _OP_CALLS and _OI not in attributes and _TL not in attributes:
        return _MODEL_CALL
    found: str | None = None
    # Runs for every span with usage: the exact spelling is tried inline before _lookup.
    for marker, table in _TABLES:
        value = attributes.get(marker)
        if type(value) is str:
            kind = table.get(value) or _lookup(table, value)
            if kind is None:
                continue
            if kind != _MODEL_CALL:
                return kind
            found = kind
    return found


def is_model_call(attributes: Mapping[str, object]) -> bool:
    """Whether the span is a single model call (chat, completion, embeddings) in any convention."""
    # ``span_kind``'s first test, repeated here: it runs for every counted call span, and the
    # common call span is settled without a second call.
    op = attributes.get(_OP)
    if type(op) is str and op in _OP_CALLS and _OI not in attributes and _TL not in attributes:
        return True
    return span_kind(attributes) == _MODEL_CALL


def is_aggregate(attributes: Mapping[str, object]) -> bool:
    """Whether the span's usage sums its children's (agent, workflow, task, tool, chain): never priced."""
    return span_kind(attributes) in conv.AGGREGATE_KINDS


def aggregate_reason(attributes: Mapping[str, object]) -> str | None:
    """Why usage on this span is not priced (it sums its child calls), or ``None`` if it is no aggregate."""
    # The common case, a call span in the GenAI names only: settled without the loop.
    op = attributes.get(_OP)
    if type(op) is str and op in _OP_CALLS and _OI not in attributes and _TL not in attributes:
        return None
    for marker, table in _TABLES:
        value = attributes.get(marker)
        if type(value) is str:
            kind = table.get(value) or _lookup(table, value)
            if kind is not None and kind != _MODEL_CALL:
                return _AGGREGATE_REASONS.get(marker, _DEFAULT_REASON).format(value)
    return None


#: The reasons' wording per convention (the Collector processor writes the same strings).
_DEFAULT_REASON: Final = "usage on a {} span is the sum of its child calls"
_AGGREGATE_REASONS: Final = {
    conv.OI_SPAN_KIND: "usage on an OpenInference {} span is the sum of its child calls",
    conv.TRACELOOP_SPAN_KIND: "usage on a traceloop {} span is the sum of its child calls",
}


def valid_name(value: object) -> str | None:
    """``value`` stripped if it is a name (a string of 1 to 256 characters), else ``None``."""
    if type(value) is not str:
        return None
    value = value.strip()
    return value if 0 < len(value) <= MAX_NAME_LENGTH else None


def _first_name(attributes: Mapping[str, object], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        name = valid_name(attributes.get(key))
        if name is not None:
            return name
    return None


def metadata_agent(attributes: Mapping[str, object]) -> str | None:
    """The agent named in an OpenInference ``metadata`` JSON object string (``lc_agent_name``)."""
    raw = attributes.get(conv.OI_METADATA)
    if type(raw) is not str or not raw or len(raw) > MAX_METADATA_LENGTH or raw[:1] != "{":
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    for key in conv.LC_AGENT_NAME_KEYS:
        name = valid_name(data.get(key))
        if name is not None:
            return name
    return None


#: Every key ``own_agent`` reads: a span with none of them names no agent of its own.
OWN_AGENT_KEYS = frozenset((*conv.CALL_AGENT_NAME_KEYS, conv.OI_METADATA))


def own_agent(attributes: Mapping[str, object]) -> str | None:
    """The agent a model-call span names itself, in any convention (rule step 1, *own*)."""
    return _first_name(attributes, conv.CALL_AGENT_NAME_KEYS) or metadata_agent(attributes)


def scope_name(attributes: Mapping[str, object], kind: str | None) -> str | None:
    """The agent (for kinds ``agent``/``task``) or workflow name an ancestor span gives."""
    if kind == conv.KIND_AGENT or kind == conv.KIND_TASK:
        return _first_name(attributes, conv.SCOPE_AGENT_NAME_KEYS)
    if kind == conv.KIND_WORKFLOW:
        return _first_name(attributes, conv.SCOPE_WORKFLOW_NAME_KEYS)
    return None


def agent_id(attributes: Mapping[str, object], name: str) -> str:
    """The id an agent span goes by as a parent agent: its ``gen_ai.agent.id``, else its name."""
    return valid_name(attributes.get(conv.AGENT_ID)) or name


def normalized_model(model: object) -> str | None:
    """A model name as compared between two spans of one call: lower-case, without a
    ``provider/`` prefix (``openai/gpt-4o`` is ``gpt-4o``); ``None`` if it is not a name."""
    name = valid_name(model)
    if name is None:
        return None
    return name.lower().rsplit("/", 1)[-1]


def same_model(a: object, b: object) -> bool:
    """Whether two model names may be the same model: equal once normalized, one a dated or
    suffixed spelling of the other (``gpt-4o`` and ``gpt-4o-2024-08-06``), or either unknown."""
    x, y = normalized_model(a), normalized_model(b)
    if x is None or y is None:
        return True
    return x == y or x.startswith(y + "-") or y.startswith(x + "-")


__all__ = [
    "MARKERS",
    "MARKER_KEYS",
    "aggregate_reason",
    "agent_id",
    "is_aggregate",
    "is_model_call",
    "metadata_agent",
    "normalized_model",
    "own_agent",
    "same_model",
    "valid_name",
    "scope_name",
    "span_kind",
]
