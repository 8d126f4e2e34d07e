"""``otel-costs demo``: the real openai SDK against the fake provider, through the whole pipeline."""

from __future__ import annotations

from pathlib import Path

from otel_costs import conventions as conv
from otel_costs.cli._demo import run
from otel_costs.cli._main import main
from otel_costs.pipeline._otlp import read_json_file


def test_demo_costs_every_call_and_the_root_holds_the_sum(tmp_path: Path) -> None:
    """Every LLM call is captured and attributed, and the workflow root's total is their exact sum."""
    path = tmp_path / "demo.jsonl"
    report = run(path)
    records, problems = read_json_file(path)
    assert problems == []
    calls = [r for r in records if r.name.startswith("chat ")]
    assert len(calls) == 7  # coordinator, code_agent, 2 syntax attempts, 3 reviewers
    assert {r.attributes[conv.WORKFLOW_NAME] for r in records} == {"code-review"}
    assert {r.attributes[conv.TEAM_ID] for r in calls} == {"demo-team"}
    priced = [r for r in calls if r.attributes[conv.COST_STATUS] == conv.STATUS_PRICED]
    assert len(priced) == 6  # the failed attempt reports no usage: flagged, not a silent $0
    (root,) = [r for r in records if r.name == "invoke_workflow code-review"]
    assert root.attributes[conv.COST_TOTAL_NANOS] == sum(r.attributes[conv.COST_DIRECT_NANOS] for r in priced)
    assert root.attributes[conv.COST_ROLLUP_UNPRICED] == 1
    assert "syntax_analyzer" in report and "reviewer_style" in report


def test_demo_retry_attempts_carry_their_depth(tmp_path: Path) -> None:
    """The failed first attempt has retry.depth 0 and the successful re-attempt depth 1."""
    path = tmp_path / "demo.jsonl"
    run(path)
    records, _ = read_json_file(path)
    analyzer = sorted(
        (
            r
            for r in records
            if r.name.startswith("chat ") and r.attributes.get(conv.AGENT_NAME) == "syntax_analyzer"
        ),
        key=lambda r: r.start_time_unix_nano,
    )
    assert [r.attributes[conv.RETRY_DEPTH] for r in analyzer] == [0, 1]
    assert [r.attributes[conv.COST_STATUS] for r in analyzer] == [conv.STATUS_UNPRICED, conv.STATUS_PRICED]


def test_demo_command_prints_the_tree_and_the_agent_table(tmp_path: Path, capsys: object) -> None:
    """``otel-costs demo`` prints the cost tree and the by-agent table."""
    assert main(["demo", "--file", str(tmp_path / "d.jsonl")]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "workflow code-review ($" in out
    assert "agent" in out and "calls" in out and "reviewer_security" in out
