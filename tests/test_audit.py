"""``otel-costs audit``, the Attribution Auditor, and ``assert_attribution_complete``.

The ``code.*`` names come from ``report._spans`` (internal), where the auditor reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_report_workload import llm, run_cli, workload_spans, write_otlp

import otel_costs
from otel_costs import conventions as conv
from otel_costs.report import Span, assert_attribution_complete, audit_spans
from otel_costs.report._spans import CODE_FILE_PATH, CODE_FUNCTION_NAME, CODE_LINE_NUMBER
from otel_costs.testing import InMemoryPipeline

TRACE = "ab" * 16
PRICED = {
    conv.COST_STATUS: conv.STATUS_PRICED,
    conv.COST_DIRECT_NANOS: 1000,
    conv.GEN_AI_OPERATION_NAME: "chat",
}
ATTRIBUTED = {conv.WORKFLOW_ID: "w1", conv.TEAM_ID: "t1", conv.USER_ID: "u1"}


def mk(span_id: str, parent: str | None = None, *, service: str = "api", remote: bool = False, start: int = 0,
       **attrs: Any) -> Span:  # fmt: skip
    """A span of the test trace; ``attrs`` keys use ``__`` for dots."""
    attributes = {k.replace("__", "."): v for k, v in attrs.items()}
    return Span(TRACE, span_id.rjust(16, "0"), parent.rjust(16, "0") if parent else None, f"span {span_id}",
                start, start + 1, attributes, {"service.name": service}, remote)  # fmt: skip


def workflow_span(span_id: str = "1", **extra: Any) -> Span:
    return mk(span_id, **{"gen_ai.operation.name": "invoke_workflow", "workflow.id": "w1", "team.id": "t1",
                          "user.id": "u1", **extra})  # fmt: skip


def call(span_id: str, parent: str | None = "1", **extra: Any) -> Span:
    return mk(
        span_id, parent, **{k.replace(".", "__"): v for k, v in {**PRICED, **ATTRIBUTED}.items()}, **extra
    )


def agent(span_id: str, parent: str, agent_id: str, parent_agent: str | None) -> Span:
    attrs = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.id": agent_id,
        "gen_ai.agent.name": agent_id,
        "workflow.id": "w1",
    }
    if parent_agent:
        attrs["agent.parent_id"] = parent_agent
    return mk(span_id, parent, **{k.replace(".", "__"): v for k, v in attrs.items()})


def retry_span(span_id: str, parent: str, depth: int, start: int) -> Span:
    return mk(span_id, parent, start=start, retry__step="search", retry__depth=depth, workflow__id="w1")


CASES: dict[str, list[Span]] = {
    "missing_workflow_id": [mk("2", **{"cost.status": "priced", "cost.direct_nanos": 5})],
    "missing_team_id": [
        workflow_span(),
        mk("2", "1", workflow__id="w1", user__id="u1", cost__status="priced", cost__direct_nanos=5),
    ],
    "missing_user_id": [
        workflow_span(),
        mk("2", "1", workflow__id="w1", team__id="t1", cost__status="priced", cost__direct_nanos=5),
    ],
    "agent_parent_unknown": [workflow_span(), agent("2", "1", "writer", "ghost")],
    "agent_cycle": [workflow_span(), agent("2", "1", "a", "b"), agent("3", "2", "b", "a")],
    "orphan_span": [workflow_span(), call("2", parent="99")],
    "broken_service_boundary": [workflow_span(), mk("2", "98", service="worker", remote=True)],
    "attribution_changed_across_hop": [
        workflow_span(),
        mk("2", "1", service="worker", remote=True, workflow__id="w1", team__id="other", user__id="u1"),
    ],
    "retry_depth_jump": [workflow_span(), retry_span("2", "1", 0, 10), retry_span("3", "1", 2, 20)],
    "retry_depth_outside_retry": [workflow_span(), call("2", **{"retry.depth": 1})],
    "unpriced_call": [workflow_span(), call("2", **{"cost.status": "unpriced", "cost.direct_nanos": None})],
    "partial_call": [workflow_span(), call("2", **{"cost.status": "partial"})],
    "duplicate_call": [workflow_span(), call("2", **{"cost.status": "duplicate"})],
    "duplicate_span_id": [workflow_span(), call("2"), call("2")],
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_problem_is_found_and_named(kind: str) -> None:
    """Each kind of broken attribution is reported as that kind, naming the trace, span and service."""
    spans = [s for s in CASES[kind]]
    for s in spans:  # None stands for "attribute absent"
        for key in [k for k, v in s.attributes.items() if v is None]:
            del s.attributes[key]
    result = audit_spans([spans])
    assert kind in result["by_kind"], result["by_kind"]
    example = next(g for g in result["groups"] if g["kind"] == kind)["examples"][0]
    assert example["trace_id"] == TRACE and example["service"] in ("api", "worker") and example["span_id"]


def test_a_whole_trace_has_no_findings() -> None:
    """A workflow whose agents form a tree, retries rise by one and calls are priced and attributed passes."""
    spans = [
        workflow_span(),
        agent("2", "1", "coordinator", None),
        agent("3", "2", "writer", "coordinator"),
        retry_span("4", "3", 0, 10),
        retry_span("5", "3", 1, 20),
        call("6", "5", **{"retry.depth": 1}),
        call("7", "2"),
    ]
    assert audit_spans([spans])["findings_count"] == 0


def test_findings_are_grouped_by_call_site_most_frequent_first() -> None:
    """Findings carry the code.* call site and are counted per call site, most frequent first."""
    site_a = {CODE_FUNCTION_NAME: "summarize", CODE_FILE_PATH: "app/llm.py", CODE_LINE_NUMBER: 42}
    site_b = {CODE_FUNCTION_NAME: "classify", CODE_FILE_PATH: "app/triage.py", CODE_LINE_NUMBER: 7}
    spans = [mk(str(i), cost__status="priced", cost__direct_nanos=1) for i in range(2, 5)]
    for s in spans:
        s.attributes.update(site_a)
    lone = mk("9", cost__status="priced", cost__direct_nanos=1)
    lone.attributes.update(site_b)
    groups = audit_spans([[*spans, lone]])["groups"]
    assert [(g["call_site"], g["count"]) for g in groups] == [
        ("app/llm.py:42 in summarize", 3),
        ("app/triage.py:7 in classify", 1),
    ]


def test_a_call_without_code_attributes_uses_its_nearest_ancestor() -> None:
    """A call span with no code.* of its own is placed at the call site recorded on its parent scope."""
    parent = workflow_span(**{CODE_FUNCTION_NAME: "run", CODE_FILE_PATH: "jobs.py", CODE_LINE_NUMBER: 3})
    child = mk("2", "1", workflow__id="w1", user__id="u1", cost__status="priced", cost__direct_nanos=5)
    assert audit_spans([[parent, child]])["groups"][0]["call_site"] == "jobs.py:3 in run"


@pytest.mark.parametrize(("clean", "code"), [(True, 0), (False, 1)])
def test_cli_exit_status_says_whether_there_is_a_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], clean: bool, code: int
) -> None:
    """``audit`` exits 0 on complete attribution and 1 on the workload's unattributed and unpriced calls."""
    if clean:
        pipeline = InMemoryPipeline()
        tp = pipeline.tracer_provider
        with (
            otel_costs.workflow("w", team_id="t", user_id="u", tracer_provider=tp),
            otel_costs.agent("a", tracer_provider=tp),
        ):
            llm(tp, "gpt-5.2", 10, 10)
        spans = pipeline.spans()
    else:
        spans = workload_spans()
    path = write_otlp(tmp_path / "t.jsonl", spans)
    assert run_cli(["audit", str(path), "--format", "json"]) == code
    result = json.loads(capsys.readouterr().out)
    if not clean:
        assert result["by_kind"] == {"missing_workflow_id": 1, "unpriced_call": 1}
    assert run_cli(["audit", str(path)]) == code
    assert ("attribution complete" in capsys.readouterr().out) is clean


def test_ignored_kinds_are_not_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--ignore`` drops a kind of finding (and with it the failing exit status)."""
    path = write_otlp(tmp_path / "t.jsonl", workload_spans())
    assert run_cli(["audit", str(path), "--ignore", "unpriced_call", "--ignore", "missing_workflow_id"]) == 0
    capsys.readouterr()


def test_assert_attribution_complete_passes_and_fails_on_sdk_spans() -> None:
    """The testing helper accepts a complete pipeline's spans and raises listing the findings otherwise."""
    pipeline = InMemoryPipeline()
    tp = pipeline.tracer_provider
    with otel_costs.workflow("w", team_id="t", tracer_provider=tp), otel_costs.agent("a", tracer_provider=tp):
        llm(tp, "gpt-5.2", 10, 10)
    assert_attribution_complete(pipeline.spans())
    llm(tp, "gpt-5.2", 10, 10)
    with pytest.raises(AssertionError, match="missing_workflow_id"):
        assert_attribution_complete(pipeline.spans())


def test_a_trace_split_by_the_window_is_counted() -> None:
    """When the window is full the oldest trace is audited as it is and counted as cut, and so is a
    trace that gets a span after it went out; whole traces go out without being cut."""
    from otel_costs.report import AuditOptions

    def open_span(trace: str, span: str) -> Span:  # its parent is not in the input (yet)
        return Span(trace * 16, span * 16, "f" * 16, "x", 0, 1, {}, {})

    batches = [
        [open_span("ab", "1")],
        [open_span("cd", "2"), open_span("cd", "3")],  # the window (2) is full: trace ab goes out
        [open_span("ab", "4")],  # ab again, after it went out; the window is full again: cd goes out
        [Span("ee" * 16, "5" * 16, None, "root", 0, 1, {}, {})],  # whole: goes out at once
    ]
    result = audit_spans(batches, AuditOptions(max_trace_spans=2))
    assert result["traces_cut"] == 3 and result["traces"] == 4
