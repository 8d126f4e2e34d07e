"""``otel-costs report --html``: a self-contained cost view whose figures are the JSON report's.

The icicle's layout (``report._html``, internal) is tested directly: its widths are the exact-money claim.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from test_report_workload import run_cli, workload_spans, write_otlp

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def spans() -> list[ReadableSpan]:
    """The workload's spans, made once for this module."""
    return workload_spans()


@pytest.fixture(scope="module")
def page(spans: list[ReadableSpan], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The HTML view of the workload and the JSON report of the same input."""
    folder = tmp_path_factory.mktemp("view")
    traces = write_otlp(folder / "t.jsonl", spans)
    html = folder / "report.html"
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert run_cli(["report", str(traces), "--html", str(html), "--format", "json"]) == 0
    return html, json.loads(out.getvalue())


class Figures(HTMLParser):
    """Collects the ``data-*`` figures of the page's drawn elements."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: dict[tuple[str, str], int] = {}
        self.boxes: list[tuple[int, str]] = []
        self.total: int | None = None
        self.checked: str | None = None
        self.data: str = ""
        self._in_data = False
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key):
                self.urls.append(str(a[key]))
        if a.get("class") == "bar":
            self.bars[(str(a["data-chart"]), str(a["data-label"]))] = int(str(a["data-nanos"]))
        elif (a.get("class") or "").startswith("box"):
            self.boxes.append((int(str(a["data-nanos"])), str(a.get("class"))))
        if a.get("id") == "total":
            self.total = int(str(a["data-nanos"]))
            self.checked = a.get("data-checked")
        self._in_data = a.get("id") == "report-data"

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.data += data

    def handle_endtag(self, tag: str) -> None:
        self._in_data = False


def figures(text: str) -> Figures:
    parser = Figures()
    parser.feed(text)
    return parser


def json_report(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert run_cli(["report", *argv, "--format", "json"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def test_the_page_is_self_contained(page: tuple[Path, dict[str, Any]]) -> None:
    """No src/href, no URL to fetch, a CSP that forbids any network: CSS, JS and SVG are inline."""
    text = page[0].read_text()
    assert figures(text).urls == []
    assert not re.search(r"https?://", text.replace("http-equiv", ""))
    assert "default-src 'none'" in text and "<style>" in text and "<svg" in text


def test_bars_and_totals_are_the_json_reports_figures(
    page: tuple[Path, dict[str, Any]],
    spans: list[ReadableSpan],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every bar's nano-USD is the JSON report's row for the same team, agent, model or day."""
    drawn = figures(page[0].read_text())
    traces = write_otlp(tmp_path / "t.jsonl", spans)
    report = json_report(capsys, str(traces))
    assert drawn.total == report["total"]["cost_nanos"]
    for dim in ("team", "agent", "model"):
        rows = json_report(capsys, str(traces), "-g", dim)["rows"]
        for row in rows:
            label = row["key"][dim] if row["kind"] == "attributed" else f"({row['kind']})"
            assert drawn.bars[(dim, label)] == row["cost_nanos"], (dim, label)
        assert sum(v for (chart, _), v in drawn.bars.items() if chart == dim) == report["total"]["cost_nanos"]
    days = json_report(capsys, str(traces), "-g", "", "--bucket", "day")["rows"]
    for row in days:
        if row["kind"] == "attributed":
            assert drawn.bars[("day", row["bucket"])] == row["cost_nanos"]
    embedded = json.loads(drawn.data)
    assert embedded["report"]["total"] == report["total"]


def test_the_icicle_is_as_wide_as_each_workflows_cost_and_marks_unpriced_spans(
    page: tuple[Path, dict[str, Any]],
) -> None:
    """Each workflow's icicle starts with its run's cost.total, and the unpriced call is drawn hatched."""
    data = json.loads(figures(page[0].read_text()).data)
    workflows = {t["workflow"]: t["tree"] for t in data["trees"]}
    assert set(workflows) == {"summarize", "research", "(no workflow)"}
    per_run = {f["feature"]: f["max_nanos"] for f in data["report"]["cost_per_run"]["features"]}
    assert workflows["summarize"]["total_nanos"] == per_run["summarize"]
    assert workflows["research"]["total_nanos"] == per_run["research"]
    drawn = figures(page[0].read_text())
    assert any(cls == "box unpriced" for _, cls in drawn.boxes) is False  # the most expensive runs are priced
    assert data["audit"]["by_kind"] == {"missing_workflow_id": 1, "unpriced_call": 1}


def _chromium(url: str, user_data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={user_data}",
        "--enable-logging=stderr", "--v=0", *extra, url,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=90, check=False)


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


# In CI (CI=true, where .ci/run installs it) a missing Chromium fails the test instead of skipping it.
needs_chromium = pytest.mark.skipif(
    not shutil.which(CHROMIUM) and not os.environ.get("CI"), reason="Debian's chromium is not installed"
)


@pytest.mark.slow
@pytest.mark.timeout(240)
@needs_chromium
@pytest.mark.parametrize("broken", [False, True])
def test_chromium_renders_the_page_without_console_errors(
    page: tuple[Path, dict[str, Any]], tmp_path: Path, broken: bool
) -> None:
    """Headless Chromium runs the page with no console message and its script checks the embedded total;
    a page with a script error (the control) is caught by the same check."""
    html = page[0]
    if broken:
        html = tmp_path / "broken.html"
        html.write_text(page[0].read_text().replace("JSON.parse(", "JSON.parse(undefinedThing + "))
    result = _chromium(html.as_uri(), tmp_path / "profile", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = figures(result.stdout)
    if broken:
        assert _console(result.stderr) and dom.checked is None
        return
    assert _console(result.stderr) == []
    assert dom.checked is not None and int(dom.checked) == dom.total
    shot = tmp_path / "cost-view.png"
    result = _chromium(
        html.as_uri(), tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1100,2400"
    )
    assert result.returncode == 0 and shot.stat().st_size > 10_000 and _console(result.stderr) == []
    print(f"screenshot kept at {shot}")


def test_unpriced_calls_are_drawn_hatched_in_their_tree(spans: list[ReadableSpan]) -> None:
    """The run calling a model with no price draws that call as a hatched, marked box."""
    from otel_costs.report._audit import span_from_readable
    from otel_costs.report._html import _icicle, cost_tree

    mine = [span_from_readable(s) for s in spans]
    trace_id = next(s.trace_id for s in mine if s.name == "chat mystery-model")
    tree = cost_tree([s for s in mine if s.trace_id == trace_id])
    assert tree is not None and tree["label"] == "workflow summarize"
    assert tree["children"][0]["label"] == "chat mystery-model" and tree["children"][0]["unpriced"]
    drawn = figures(_icicle(tree))
    assert "box unpriced" in {cls for _, cls in drawn.boxes}
