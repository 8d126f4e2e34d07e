"""The Attribution Auditor: is every model call attributed, every agent tree whole, every retry sane?

Per trace it checks that each model call carries ``workflow.id`` (and ``team.id``/``user.id``
when its workflow has them); that agents form a tree (``agent.parent_id`` names an agent of the
same workflow, no cycles); that no span is an orphan and no trace breaks at a service boundary
(a remote parent that is missing, or attribution that changed across the hop); that
``retry.depth`` rises by exactly one between the attempts of a step and is above 0 only inside
retry scopes; and lists every unpriced, partial or duplicate call. Findings name the trace, span,
service and call site (``code.*``), grouped by call site, most frequent first.

Traces are gathered in a bounded window (``max_trace_spans``): a trace still open when the
window is full is audited with what arrived, and counted in ``traces_cut``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from otel_costs import conventions as conv
from otel_costs.report._aggregate import NOT_A_CALL, PARTIAL, UNPRICED, classify
from otel_costs.report._render import render_tables
from otel_costs.report._spans import CODE_FILE_PATH, CODE_FUNCTION_NAME, CODE_LINE_NUMBER, ReadStats, Span

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

#: Every kind of finding, and what it means.
KINDS: Final = {
    "missing_workflow_id": "a model call without workflow.id",
    "missing_team_id": "a model call without the team.id its workflow has",
    "missing_user_id": "a model call without the user.id its workflow has",
    "agent_parent_unknown": "agent.parent_id names no agent of the same workflow",
    "agent_cycle": "agent.parent_id links loop",
    "orphan_span": "the parent span is missing from the trace",
    "broken_service_boundary": "a remote parent (another service's span) is missing from the trace",
    "attribution_changed_across_hop": (
        "workflow.id, team.id or user.id differ from the parent in another service"
    ),
    "retry_depth_jump": "retry.depth does not rise by exactly one between attempts of a step",
    "retry_depth_outside_retry": "retry.depth above 0 outside any retry scope",
    "unpriced_call": "a model call with no price",
    "partial_call": "a model call with incomplete usage (priced as a lower bound)",
    "duplicate_call": "a call already priced on another span (counted once)",
    "duplicate_span_id": "two spans with one span id",
}
_HOP_KEYS: Final = (conv.WORKFLOW_ID, conv.TEAM_ID, conv.USER_ID)
_MAX_EXAMPLES: Final = 3
_MAX_DEPTH: Final = 256


@dataclass(frozen=True)
class AuditOptions:
    """What the auditor reports, and how many spans it holds while traces complete."""

    ignore: frozenset[str] = frozenset()
    max_trace_spans: int = 200_000


def group_traces(batches: Iterable[Iterable[Span]], max_spans: int, cut: list[int]) -> Iterator[list[Span]]:
    """The spans of each trace together, holding at most about ``max_spans`` spans.

    Past a tenth of the window, traces that look whole (every parent present, or remote) go out
    as soon as they do; when the window is full, the trace seen first goes out as it is.
    ``cut[0]`` counts traces that went out before all their spans had arrived.
    """
    buffer: dict[str, list[Span]] = {}
    whole: dict[str, None] = {}
    gone: dict[str, None] = {}  # recently flushed trace ids (bounded): a late span means a cut trace
    held = 0
    soft = max(max_spans // 10, 1)
    for batch in batches:
        touched: set[str] = set()
        for span in batch:
            spans = buffer.get(span.trace_id)
            if spans is None:
                spans = buffer[span.trace_id] = []
                if span.trace_id in gone:
                    cut[0] += 1
            spans.append(span)
            touched.add(span.trace_id)
            held += 1
        if held <= soft:
            continue
        for trace_id in touched:
            whole.pop(trace_id, None)
            if _looks_whole(buffer[trace_id]):
                whole[trace_id] = None
        for trace_id in list(whole):
            spans = buffer.pop(trace_id)
            held -= len(spans)
            _forget(gone, trace_id, soft)
            yield spans
        whole.clear()
        while held > max_spans and len(buffer) > 1:
            oldest = next(iter(buffer))
            spans = buffer.pop(oldest)
            held -= len(spans)
            cut[0] += 1
            _forget(gone, oldest, soft)
            yield spans
    yield from buffer.values()


def _looks_whole(spans: list[Span]) -> bool:
    ids = {s.span_id for s in spans}
    return all(s.parent_id is None or s.remote_parent or s.parent_id in ids for s in spans)


def _forget(gone: dict[str, None], trace_id: str, bound: int) -> None:
    gone[trace_id] = None
    if len(gone) > bound:
        del gone[next(iter(gone))]


def call_site(span: Span, by_id: dict[str, Span]) -> str:
    """``file.py:42 in handler`` from the ``code.*`` attributes of the span or its nearest ancestor."""
    node: Span | None = span
    for _ in range(_MAX_DEPTH):
        if node is None:
            break
        attrs = node.attributes
        function, path, line = (
            attrs.get(CODE_FUNCTION_NAME),
            attrs.get(CODE_FILE_PATH),
            attrs.get(CODE_LINE_NUMBER),
        )
        if function or path:
            where = f"{path or '?'}:{line}" if line is not None else str(path or "?")
            return f"{where} in {function}" if function else where
        node = by_id.get(node.parent_id) if node.parent_id else None
    return f"(no code.* attributes) {span.service or '?'}: {span.name}"


class _TraceAudit:
    def __init__(self, spans: list[Span], ignore: frozenset[str]) -> None:
        self.spans = spans
        self.ignore = ignore
        self.by_id: dict[str, Span] = {}
        self.findings: list[dict[str, Any]] = []
        for span in spans:
            if span.span_id in self.by_id:
                self.add("duplicate_span_id", span, f"span id {span.span_id} appears twice")
            else:
                self.by_id[span.span_id] = span

    def add(self, kind: str, span: Span, detail: str) -> None:
        if kind in self.ignore:
            return
        self.findings.append(
            {
                "kind": kind,
                "trace_id": span.trace_id,
                "span_id": span.span_id,
                "span": span.name,
                "service": span.service,
                "call_site": call_site(span, self.by_id),
                "detail": detail,
            }
        )

    def run(self) -> list[dict[str, Any]]:
        workflows = self._workflow_attribution()
        for span in self.spans:
            self._parent(span)
            state, _ = classify(span.attributes)
            if state != NOT_A_CALL:
                self._call(span, state, workflows)
            elif span.attributes.get(conv.COST_STATUS) == conv.STATUS_DUPLICATE:
                self.add(
                    "duplicate_call", span, str(span.attributes.get(conv.COST_STATUS_REASON) or "duplicate")
                )
        self._agents()
        self._retries()
        return self.findings

    def _workflow_attribution(self) -> dict[str, dict[str, Any]]:
        """Per ``workflow.id``: the team and user its workflow span (or any of its spans) carry."""
        found: dict[str, dict[str, Any]] = {}
        for span in self.spans:
            workflow_id = span.attributes.get(conv.WORKFLOW_ID)
            if workflow_id is None:
                continue
            entry = found.setdefault(workflow_id, {})
            for key in (conv.TEAM_ID, conv.USER_ID):
                if span.attributes.get(key) is not None:
                    entry.setdefault(key, span.attributes[key])
        return found

    def _call(self, span: Span, state: int, workflows: dict[str, dict[str, Any]]) -> None:
        attrs = span.attributes
        workflow_id = attrs.get(conv.WORKFLOW_ID)
        if workflow_id is None:
            self.add("missing_workflow_id", span, "model call without workflow.id: no run or feature owns it")
        else:
            for key, kind in ((conv.TEAM_ID, "missing_team_id"), (conv.USER_ID, "missing_user_id")):
                if attrs.get(key) is None and key in workflows.get(workflow_id, {}):
                    self.add(kind, span, f"workflow {workflow_id} has {key}={workflows[workflow_id][key]}")
        if state == UNPRICED:
            reason = attrs.get(conv.COST_STATUS_REASON) or attrs.get(conv.COST_STATUS) or "no price"
            self.add("unpriced_call", span, str(reason))
        elif state == PARTIAL:
            self.add("partial_call", span, str(attrs.get(conv.COST_STATUS_REASON) or "usage incomplete"))

    def _parent(self, span: Span) -> None:
        if span.parent_id is None:
            return
        parent = self.by_id.get(span.parent_id)
        if parent is None:
            if span.remote_parent:
                self.add(
                    "broken_service_boundary", span, f"remote parent {span.parent_id} is not in the trace"
                )
            else:
                self.add("orphan_span", span, f"parent {span.parent_id} is not in the trace")
            return
        if span.remote_parent or (parent.service != span.service):
            changed = [
                f"{key}: {parent.attributes.get(key)!r} -> {span.attributes.get(key)!r}"
                for key in _HOP_KEYS
                if parent.attributes.get(key) is not None
                and parent.attributes.get(key) != span.attributes.get(key)
            ]
            if changed:
                self.add(
                    "attribution_changed_across_hop", span, f"from {parent.service}: " + "; ".join(changed)
                )

    def _agents(self) -> None:
        agents: dict[tuple[Any, Any], Span] = {}
        for span in self.spans:
            attrs = span.attributes
            if attrs.get(conv.GEN_AI_OPERATION_NAME) == conv.OPERATION_INVOKE_AGENT:
                agent_id = attrs.get(conv.AGENT_ID) or attrs.get(conv.AGENT_NAME)
                agents.setdefault((attrs.get(conv.WORKFLOW_ID), agent_id), span)
        for (workflow_id, agent_id), span in agents.items():
            parent_id = span.attributes.get(conv.AGENT_PARENT_ID)
            if parent_id is None:
                continue
            if (workflow_id, parent_id) not in agents:
                self.add(
                    "agent_parent_unknown",
                    span,
                    f"agent {agent_id}: parent agent {parent_id} not in workflow {workflow_id}",
                )
                continue
            seen = {agent_id}
            current = parent_id
            for _ in range(_MAX_DEPTH):
                if current is None or (workflow_id, current) not in agents:
                    break
                if current in seen:
                    self.add("agent_cycle", span, f"agent {agent_id}: parent links loop through {current}")
                    break
                seen.add(current)
                current = agents[(workflow_id, current)].attributes.get(conv.AGENT_PARENT_ID)

    def _retries(self) -> None:
        steps: dict[tuple[Any, Any], list[Span]] = {}
        for span in self.spans:
            attrs = span.attributes
            depth = attrs.get(conv.RETRY_DEPTH)
            if attrs.get(conv.RETRY_STEP) is not None:
                steps.setdefault((span.parent_id, attrs[conv.RETRY_STEP]), []).append(span)
            elif type(depth) is int and depth > 0 and not self._inside_retry(span):
                self.add(
                    "retry_depth_outside_retry", span, f"retry.depth={depth} but no retry scope above it"
                )
        for (_, step), attempts in steps.items():
            attempts.sort(key=lambda s: s.start)
            depths = [s.attributes.get(conv.RETRY_DEPTH) for s in attempts]
            for before, after, span in zip(depths, depths[1:], attempts[1:], strict=False):
                if type(before) is not int or type(after) is not int or after != before + 1:
                    self.add("retry_depth_jump", span, f"step {step}: retry.depth {before} then {after}")

    def _inside_retry(self, span: Span) -> bool:
        node = self.by_id.get(span.parent_id) if span.parent_id else None
        for _ in range(_MAX_DEPTH):
            if node is None:
                return False
            if node.attributes.get(conv.RETRY_STEP) is not None:
                return True
            node = self.by_id.get(node.parent_id) if node.parent_id else None
        return False


def audit_trace(spans: list[Span], ignore: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The findings of one trace's spans."""
    return _TraceAudit(spans, ignore).run()


def audit_spans(
    batches: Iterable[Iterable[Span]], options: AuditOptions = AuditOptions(), stats: ReadStats | None = None
) -> dict[str, Any]:
    """Audit every trace in ``batches``: findings grouped by kind and call site, most frequent first."""
    cut = [0]
    return audit_traces(group_traces(batches, options.max_trace_spans, cut), options, stats, cut)


def audit_traces(
    traces_in: Iterable[list[Span]],
    options: AuditOptions = AuditOptions(),
    stats: ReadStats | None = None,
    cut: list[int] | None = None,
) -> dict[str, Any]:
    """Audit traces already grouped (each list is one trace's spans)."""
    cut = cut if cut is not None else [0]
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    by_kind: dict[str, int] = {}
    traces = spans = 0
    for trace in traces_in:
        traces += 1
        spans += len(trace)
        for finding in audit_trace(trace, options.ignore):
            by_kind[finding["kind"]] = by_kind.get(finding["kind"], 0) + 1
            group = groups.setdefault(
                (finding["kind"], finding["call_site"]),
                {"kind": finding["kind"], "call_site": finding["call_site"], "count": 0, "examples": []},
            )
            group["count"] += 1
            if len(group["examples"]) < _MAX_EXAMPLES:
                group["examples"].append(finding)
    ordered = sorted(groups.values(), key=lambda g: (-g["count"], g["kind"], g["call_site"]))
    result: dict[str, Any] = {
        "traces": traces,
        "spans": spans,
        "traces_cut": cut[0],
        "findings_count": sum(by_kind.values()),
        "by_kind": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
        "groups": ordered,
    }
    if stats is not None:
        result["input"] = {"spans": stats.spans, "skipped": stats.skipped, "problems": list(stats.messages)}
    return result


def render_audit(result: dict[str, Any], fmt: str) -> str:
    """The audit as a table of call sites (most findings first) or JSON."""
    if fmt == "json":
        from otel_costs.report._render import to_json

        return to_json(result)
    head = f"audited {result['traces']} traces, {result['spans']} spans: {result['findings_count']} findings"
    if not result["groups"]:
        return head + ": attribution complete\n"
    rows = [
        [
            str(g["count"]),
            g["kind"],
            g["call_site"],
            f"{ex['service']} trace {ex['trace_id']} span {ex['span_id']}: {ex['detail']}",
        ]
        for g in result["groups"]
        for ex in g["examples"][:1]
    ]
    return (
        head
        + "\n\n"
        + render_tables([("findings by call site", ["count", "kind", "call site", "example"], rows)], "table")
    )


def span_from_readable(span: ReadableSpan) -> Span:
    """A finished SDK span as the auditor's ``Span``."""
    ctx = span.context
    parent = span.parent
    return Span(
        f"{ctx.trace_id:032x}" if ctx else "",
        f"{ctx.span_id:016x}" if ctx else "",
        f"{parent.span_id:016x}" if parent else None,
        span.name,
        span.start_time or 0,
        span.end_time or 0,
        dict(span.attributes or {}),
        dict(span.resource.attributes),
        bool(parent and parent.is_remote),
    )


def assert_attribution_complete(spans: Iterable[ReadableSpan | Span], *, ignore: Iterable[str] = ()) -> None:
    """Fail (``AssertionError``, listing the findings) unless the spans' attribution is complete.

    For your own tests::

        with InMemoryPipeline() as pipeline:
            run_my_agents(tracer_provider=pipeline.tracer_provider)
        assert_attribution_complete(pipeline.spans())
    """
    converted = [s if isinstance(s, Span) else span_from_readable(s) for s in spans]
    result = audit_spans(
        [converted], AuditOptions(ignore=frozenset(ignore), max_trace_spans=len(converted) + 1)
    )
    if result["findings_count"]:
        raise AssertionError(render_audit(result, "table"))
