"""``otel-costs chargeback``: invoices per tenant that reconcile exactly, however the input is split."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from test_report_workload import DAY_NS, NOV_3, priced_nanos, run_cli, shift_times, workload_spans, write_otlp

from otel_costs import conventions as conv


@pytest.fixture(scope="module")
def spans() -> list[ReadableSpan]:
    """The workload's spans, made once for this module."""
    return workload_spans()


@pytest.fixture(scope="module")
def november(spans: list[ReadableSpan], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workload moved to start on 2026-11-03, one trace per 4 days (the last ones fall in December)."""
    path = write_otlp(tmp_path_factory.mktemp("chargeback") / "traces.jsonl", spans)
    shift_times(path, NOV_3, spread_ns=DAY_NS * 4)
    return path


def chargeback(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert run_cli(["chargeback", *argv, "--format", "json"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def test_invoices_reconcile_to_the_report_for_the_same_month(
    november: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The chargeback's total for 2026-11 equals the report's total for 2026-11, to the nano."""
    bill = chargeback(capsys, str(november), "--by", "team.id", "--month", "2026-11")
    assert run_cli(["report", str(november), "--month", "2026-11", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert bill["total"]["cost_nanos"] == report["total"]["cost_nanos"]
    assert sum(inv["total"]["cost_nanos"] for inv in bill["invoices"]) == bill["total"]["cost_nanos"]
    for invoice in bill["invoices"]:
        assert sum(line["cost_nanos"] for line in invoice["lines"]) == invoice["total"]["cost_nanos"]
    assert run_cli(["report", str(november), "--format", "json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert 0 < bill["total"]["cost_nanos"] < whole["total"]["cost_nanos"]  # December is not billed


def test_each_tenant_has_lines_per_model_and_an_unowned_section(
    spans: list[ReadableSpan], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Team beta's invoice has one line per model with its tokens; the call no team owns is billed apart."""
    bill = chargeback(capsys, str(write_otlp(tmp_path / "t.jsonl", spans)))
    invoices = {inv["tenant"]: inv for inv in bill["invoices"]}
    beta = {line["model"]: line for line in invoices["beta"]["lines"]}
    assert set(beta) == {"gemini-3-pro", "claude-sonnet-4-5"}
    assert beta["claude-sonnet-4-5"]["calls"] == 4
    assert beta["claude-sonnet-4-5"]["input_tokens"] == 4 * 800
    assert beta["claude-sonnet-4-5"]["output_tokens"] == 4 * 100
    assert invoices["beta"]["total"]["cost_nanos"] == priced_nanos(
        spans, lambda a: a.get(conv.TEAM_ID) == "beta"
    )
    unowned = invoices[None]
    assert unowned["owned"] is False and bill["invoices"][-1] is not None
    assert bill["invoices"][-1]["tenant"] is None
    assert unowned["total"]["cost_nanos"] == priced_nanos(spans, lambda a: conv.TEAM_ID not in a)
    assert bill["total"]["cost_nanos"] == priced_nanos(spans)


def _split(lines: list[bytes], how: str, seed: int) -> list[list[bytes]]:
    rng = random.Random(seed)
    if how == "reversed":
        return [lines[::-1]]
    if how == "shuffled":
        shuffled = lines[:]
        rng.shuffle(shuffled)
        return [shuffled]
    if how == "files":
        parts: list[list[bytes]] = [[] for _ in range(4)]
        for line in lines:
            parts[rng.randrange(4)].append(line)
        return parts
    return [lines]


@pytest.mark.parametrize("how", ["one file", "reversed", "shuffled", "files"])
@pytest.mark.parametrize("batch", [1, 5, 50])
def test_the_same_figures_however_the_input_is_split(
    spans: list[ReadableSpan], tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str, batch: int
) -> None:
    """Batches of any size, lines in any order, spread over any files: the same invoices."""
    reference = chargeback(capsys, str(write_otlp(tmp_path / "ref.jsonl", spans, batch=7)))
    lines = write_otlp(tmp_path / "b.jsonl", spans, batch=batch).read_bytes().splitlines(keepends=True)
    paths = []
    for i, part in enumerate(_split(lines, how, seed=batch)):
        path = tmp_path / f"split-{i}.jsonl"
        path.write_bytes(b"".join(part))
        paths.append(str(path))
    assert chargeback(capsys, *paths)["invoices"] == reference["invoices"]


def test_csv_lines_add_up_to_each_tenant_and_the_grand_total(
    november: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In ``--format csv`` each tenant's model lines sum to its total line, and those to the grand total."""
    assert run_cli(["chargeback", str(november), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    totals = {r["team.id"]: int(r["cost_nanos"]) for r in rows if r["model"] == "(total)"}
    grand = totals.pop("(all)")
    assert sum(totals.values()) == grand
    for tenant, total in totals.items():
        lines = [int(r["cost_nanos"]) for r in rows if r["team.id"] == tenant and r["model"] != "(total)"]
        assert sum(lines) == total


def test_terminal_invoice_names_the_unowned_section(
    november: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The terminal chargeback has a section per team and one for cost no tenant owns."""
    assert run_cli(["chargeback", str(november), "--month", "2026-11"]) == 0
    assert "team.id alpha" in capsys.readouterr().out
    assert run_cli(["chargeback", str(november)]) == 0
    out = capsys.readouterr().out
    assert "team.id beta" in out and "cost no tenant owns" in out and "chargeback: total" in out
