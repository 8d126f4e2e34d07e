"""``otel-costs report``: the cost table, its special rows, buckets, periods, formats and inputs.

Time buckets, the features file and the progress bar (internal) are tested directly where the CLI
would hide an off-by-one.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from test_report_workload import (
    DAY_NS,
    NOV_3,
    SUMMARIZE_INPUT,
    priced_nanos,
    run_cli,
    shift_times,
    workload_spans,
    write_otlp,
)

from otel_costs import conventions as conv
from otel_costs.report import ReadStats, ReportOptions, build_report, read_files
from otel_costs.report._time import Bucketer, month_period, parse_instant, zone


@pytest.fixture(scope="module")
def spans() -> list[ReadableSpan]:
    """The workload's spans, made once for this module."""
    return workload_spans()


@pytest.fixture(scope="module")
def trace_file(spans: list[ReadableSpan], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workload as an OTLP/JSON-lines file."""
    return write_otlp(tmp_path_factory.mktemp("report") / "traces.jsonl", spans)


def report_of(path: Path, **options: Any) -> dict[str, Any]:
    stats = ReadStats()
    return build_report(read_files([str(path)], stats), ReportOptions(**options), stats)


def json_report(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert run_cli(["report", *argv, "--format", "json"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


@pytest.mark.parametrize(
    "group_by",
    [
        ("team",),
        ("team", "model"),
        ("agent",),
        ("workflow", "user"),
        ("service", "provider"),
        ("retry",),
        ("environment",),
        (conv.GEN_AI_REQUEST_MODEL,),
        ("team.id", "gen_ai.agent.name", "deployment.environment.name"),
    ],
)
def test_total_is_the_exact_sum_of_rows_and_of_priced_calls(
    trace_file: Path, spans: list[ReadableSpan], group_by: tuple[str, ...]
) -> None:
    """Whatever the grouping, the total equals the sum of the rows and the sum of priced cost.direct_nanos."""
    report = report_of(trace_file, group_by=group_by)
    assert sum(row["cost_nanos"] for row in report["rows"]) == report["total"]["cost_nanos"]
    assert sum(row["calls"] for row in report["rows"]) == report["total"]["calls"]
    assert report["total"]["cost_nanos"] == priced_nanos(spans)
    assert report["total"]["cost_usd"] == format(report["total"]["cost_nanos"] / 10**9, ".9f").rstrip("0")


def test_unattributed_and_unpriced_calls_have_rows_of_their_own(
    trace_file: Path, spans: list[ReadableSpan]
) -> None:
    """The call outside any workflow is the unattributed row; the call with no price the unpriced row."""
    rows = {
        row["kind"]: row
        for row in report_of(trace_file, group_by=("team",))["rows"]
        if row["kind"] != "attributed"
    }
    no_team = priced_nanos(spans, lambda a: conv.TEAM_ID not in a)
    assert rows["unattributed"]["calls"] == 1 and rows["unattributed"]["cost_nanos"] == no_team > 0
    assert rows["unpriced"]["calls"] == 1 and rows["unpriced"]["cost_nanos"] == 0
    assert rows["unpriced"]["unpriced_calls"] == 1


def test_rows_per_team_match_the_spans(trace_file: Path, spans: list[ReadableSpan]) -> None:
    """Each team's row is the exact sum of its priced calls."""
    rows = {row["key"].get("team"): row for row in report_of(trace_file, group_by=("team",))["rows"]}
    for team in ("alpha", "beta"):
        assert rows[team]["cost_nanos"] == priced_nanos(spans, lambda a, t=team: a.get(conv.TEAM_ID) == t)


@pytest.mark.parametrize(
    ("instant", "tz", "size", "label"),
    [
        ("2026-11-30T23:30:00+00:00", "UTC", "day", "2026-11-30"),
        ("2026-11-30T23:30:00+00:00", "Europe/Paris", "day", "2026-12-01"),
        ("2026-11-30T23:30:00+00:00", "Europe/Paris", "month", "2026-12"),
        ("2026-11-30T23:30:00+00:00", "America/New_York", "month", "2026-11"),
        ("2026-11-30T23:30:00+00:00", "UTC", "week", "2026-W49"),
        ("2026-11-01T00:15:00+00:00", "Asia/Kolkata", "day", "2026-11-01"),
        ("2026-10-31T18:15:00+00:00", "Asia/Kolkata", "day", "2026-10-31"),
        ("2026-10-31T18:30:00+00:00", "Asia/Kolkata", "day", "2026-11-01"),
    ],
)
def test_buckets_are_calendar_periods_of_the_given_time_zone(
    instant: str, tz: str, size: str, label: str
) -> None:
    """Day, week and month buckets are local to the explicit time zone (half-hour offsets included)."""
    ns = parse_instant(instant, zone("UTC"))
    assert Bucketer(size, zone(tz)).label(ns) == label


def test_month_period_is_local_midnight_to_local_midnight() -> None:
    """``--month 2026-11`` in Europe/Paris runs from 2026-10-31T23:00Z to 2026-11-30T23:00Z."""
    start, end = month_period("2026-11", zone("Europe/Paris"))
    utc = zone("UTC")
    assert (start, end) == (parse_instant("2026-10-31T23:00", utc), parse_instant("2026-11-30T23:00", utc))


def test_since_until_and_day_buckets_split_the_total_exactly(trace_file: Path, tmp_path: Path) -> None:
    """Traces one day apart land in their own day; a period keeps exactly the traces starting in it."""
    moved = tmp_path / "moved.jsonl"
    moved.write_bytes(trace_file.read_bytes())
    shift_times(moved, NOV_3, spread_ns=DAY_NS)
    whole = report_of(moved, group_by=("team",), bucket="day")
    days = {row["bucket"] for row in whole["rows"]}
    assert len(days) > 5 and min(days) == "2026-11-03"
    utc = zone("UTC")
    cut = parse_instant("2026-11-06", utc)
    before = report_of(moved, group_by=("team",), until=cut)
    after = report_of(moved, group_by=("team",), since=cut)
    assert before["total"]["cost_nanos"] + after["total"]["cost_nanos"] == whole["total"]["cost_nanos"]
    assert 0 < before["total"]["cost_nanos"] < whole["total"]["cost_nanos"]
    by_day = sum(row["cost_nanos"] for row in whole["rows"] if row["bucket"] < "2026-11-06")
    assert by_day == before["total"]["cost_nanos"]


def test_cli_json_matches_the_library(trace_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``report --format json`` prints the same rows and total as ``build_report``."""
    data = json_report(capsys, str(trace_file), "--group-by", "team,model", "--bucket", "month")
    expected = report_of(trace_file, group_by=("team", "model"), bucket="month")
    assert data["rows"] == expected["rows"] and data["total"] == expected["total"]


def test_csv_has_one_line_per_row_and_an_exact_total(
    trace_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--format csv`` rows (special rows included) add up to its total line, to the nano."""
    assert run_cli(["report", str(trace_file), "-g", "agent", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    total = [r for r in rows if r["kind"] == "total"]
    assert len(total) == 1
    assert sum(int(r["cost_nanos"]) for r in rows if r["kind"] != "total") == int(total[0]["cost_nanos"])
    assert {"attributed", "unattributed", "unpriced"} <= {r["kind"] for r in rows}


@pytest.mark.parametrize(("fmt", "marker"), [("markdown", "| agent |"), ("table", "(unattributed)")])
def test_text_formats_show_the_special_rows_and_sections(
    trace_file: Path, capsys: pytest.CaptureFixture[str], fmt: str, marker: str
) -> None:
    """Markdown and the terminal table show the cost table, the special rows, cost per run and retry tail."""
    assert run_cli(["report", str(trace_file), "-g", "agent", "--format", fmt]) == 0
    out = capsys.readouterr().out
    for text in (marker, "(unpriced)", "cost per run", "retry tail", "researcher"):
        assert text in out


def test_stdin_and_globs_read_the_same_spans(
    trace_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A glob over split files and the same bytes on stdin give the file's report."""
    lines = trace_file.read_bytes().splitlines(keepends=True)
    for i in range(3):
        (tmp_path / f"part-{i}.jsonl").write_bytes(b"".join(lines[i::3]))
    expected = report_of(trace_file)["total"]
    assert json_report(capsys, str(tmp_path / "part-*.jsonl"))["total"] == expected

    class Stdin:
        buffer = io.BytesIO(trace_file.read_bytes())

        def isatty(self) -> bool:
            return False

    monkeypatch.setattr("sys.stdin", Stdin())
    assert json_report(capsys)["total"] == expected


def test_cost_per_run_lists_the_outlier_run(
    trace_file: Path, spans: list[ReadableSpan], tmp_path: Path
) -> None:
    """Summarize runs map to their feature; the 30k-token run is the outlier, by workflow.id."""
    features = tmp_path / "features.yaml"
    features.write_text("features:\n  summary generation: [summarize]\n  research mode: research\n")
    from otel_costs.report._runs import load_features

    report = report_of(trace_file, features=load_features(features), outlier_multiple=3.0)
    by_feature = {f["feature"]: f for f in report["cost_per_run"]["features"]}
    summary = by_feature["summary generation"]
    assert summary["runs"] == len(SUMMARIZE_INPUT) + 1  # and the run calling a model with no price
    costs: dict[str, int] = {}
    for s in spans:
        attrs = s.attributes or {}
        if attrs.get(conv.WORKFLOW_NAME) == "summarize" and attrs.get(conv.COST_STATUS) == conv.STATUS_PRICED:
            costs[str(attrs[conv.WORKFLOW_ID])] = int(attrs[conv.COST_DIRECT_NANOS])
    most = max(costs, key=lambda k: costs[k])
    assert [o["workflow.id"] for o in summary["outliers"]] == [most]
    assert summary["max_nanos"] == costs[most]
    assert summary["cost_nanos"] == sum(costs.values())
    assert by_feature["research mode"]["calls_per_run"] == 5


def test_retry_tail_splits_cost_by_depth_and_names_the_step(
    trace_file: Path, spans: list[ReadableSpan]
) -> None:
    """The search step's retries are in tiers 1, 2 and >2, the step tops the list, and its trace is deep."""
    tail = report_of(trace_file)["retry_tail"]
    tiers = {t["retry.depth"]: t for t in tail["tiers"]}
    assert [tiers[k]["calls"] for k in ("1", "2", ">2")] == [1, 1, 1]
    assert sum(t["cost_nanos"] for t in tail["tiers"]) == priced_nanos(spans)
    retried = priced_nanos(spans, lambda a: int(a.get(conv.RETRY_DEPTH, 0)) > 0)
    assert tail["steps"][0] == {
        "agent": "researcher",
        "step": "search",
        "retry_calls": 3,
        "retry_cost_nanos": retried,
        "retry_cost_usd": tail["steps"][0]["retry_cost_usd"],
    }
    assert [(d["step"], d["max_depth"]) for d in tail["deep_retries"]] == [("search", 3)]


@pytest.mark.parametrize(("total", "steps"), [(100, [10, 40, 50]), (3 << 20, [1 << 20] * 3)])
def test_progress_bar_reaches_one_hundred_percent(
    capsys: pytest.CaptureFixture[str], total: int, steps: list[int]
) -> None:
    """The progress bar redraws one line on stderr and ends at 100% with a newline."""
    from otel_costs.report._cli import _Progress

    progress = _Progress(total)
    for step in steps:
        progress(step)
    err = capsys.readouterr().err
    assert err.startswith("\rreading [") and err.endswith("100% of " + str(total >> 20) + " MB\n")
