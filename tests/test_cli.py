"""``otel-costs tree FILE``: cost trees from an OTLP/JSON-lines file written by the pipeline."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry import trace

import otel_costs
from otel_costs.cli import main

RunFn = Callable[[trace.TracerProvider], None]

TREE = """\
coordinator ($0.03325)
├── chat gpt-5.2 ($0.012)
└── code_agent ($0.02125)
    ├── chat gpt-5.2 ($0.018)
    └── syntax_analyzer ($0.00325)
        └── chat gemini-3-pro ($0.00325)
"""


@pytest.fixture
def traces_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    hierarchical_book: otel_costs.PriceBook,
    run_hierarchical: RunFn,
) -> Path:
    """A file the configured pipeline wrote for the hierarchical example."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    path = tmp_path / "traces.jsonl"
    provider = otel_costs.configure(file_path=path, price_book=hierarchical_book, set_global=False)
    run_hierarchical(provider)
    provider.shutdown()
    return path


def test_tree_prints_agents_and_totals(traces_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The tree shows each agent with its subtree total, and LLM calls with their own cost."""
    assert main(["tree", str(traces_file)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    title, body = out.split("\n", 1)
    assert title.startswith("trace ") and len(title.split()[1]) == 32
    assert body == TREE + "\n"


def test_tree_by_agent_table(traces_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--by-agent adds the direct cost per agent, most expensive first."""
    assert main(["tree", str(traces_file), "--by-agent"]) == 0
    table = capsys.readouterr().out.split(TREE + "\n", 1)[1].splitlines()
    assert [row.split() for row in table] == [
        ["agent", "calls", "cost", "unpriced"],
        ["code_agent", "1", "$0.018", "0"],
        ["coordinator", "1", "$0.012", "0"],
        ["syntax_analyzer", "1", "$0.00325", "0"],
    ]


def test_tree_reports_bad_lines_and_goes_on(traces_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed line is reported on stderr with its number; the rest of the file is still drawn."""
    with traces_file.open("a", encoding="utf-8") as fh:
        fh.write("{not json\n")
    lines = len(traces_file.read_text(encoding="utf-8").splitlines())
    assert main(["tree", str(traces_file)]) == 0
    out, err = capsys.readouterr()
    assert TREE in out
    assert f"skipped {traces_file}:{lines}:" in err


def test_tree_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that cannot be read gives exit code 2 and a message naming it."""
    missing = tmp_path / "nope.jsonl"
    assert main(["tree", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read {missing}" in err


def test_tree_empty_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file without spans gives exit code 1 and says so."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["tree", str(empty)]) == 1
    assert "no spans" in capsys.readouterr().err


def test_module_entry_point(traces_file: Path) -> None:
    """``python -m otel_costs.cli tree FILE`` runs the real entry point, without warnings."""
    done = subprocess.run(
        [sys.executable, "-m", "otel_costs.cli", "tree", str(traces_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert TREE in done.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "otel_costs.cli", "tree", str(traces_file) + ".missing"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """``otel-costs --help`` lists ``tree``, ``demo`` and ``prices``; ``serve`` is gone (the
    trace-wide rollup is the Collector's ``costrollup`` processor)."""
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "tree" in out and "demo" in out and "prices" in out
    assert "serve" not in out


def test_serve_is_gone(capsys: pytest.CaptureFixture[str]) -> None:
    """``otel-costs serve`` is an unknown command now (argparse exits 2)."""
    with pytest.raises(SystemExit) as exited:
        main(["serve"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
