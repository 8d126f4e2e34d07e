"""``otel-costs demo``: OpenAI chat completions over httpx to the fake provider, through the pipeline.

The OTLP/JSON reader (``pipeline._otlp``, internal) reads back the demo's file.
"""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import otel_costs
from otel_costs import conventions as conv
from otel_costs.cli import main, run_demo

# Not a behaviour under test: the demo's file is read back with the pipeline's own OTLP/JSON reader.
from otel_costs.pipeline._otlp import read_json_file

#: The pipeline branch makes ``configure(file_path=...)`` also send to the OTLP endpoint of the
#: environment (and brings ``listeners=``, probed here). TODO(merge): drop the marks below once
#: the pipeline branch is merged (they then no longer apply).
PIPELINE_SENDS_WITH_FILE = "listeners" in inspect.signature(otel_costs.configure).parameters
needs_pipeline_branch = pytest.mark.xfail(
    not PIPELINE_SENDS_WITH_FILE,
    reason="needs the pipeline branch: configure(file_path=...) also sends to OTEL_EXPORTER_OTLP_*",
    strict=True,
)

#: Packages of the dev install that the base install does not bring.
DEV_ONLY = ("openai", "anthropic", "brotli", "redis", "opentelemetry.exporter.prometheus")


class _Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP receiver on loopback that keeps every POSTed request."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.posts: list[tuple[str, str, bytes]] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:  # recorded before the answer: the exporter returns only after it
            self.server.posts.append((self.path, self.headers.get("Content-Type", ""), body))
            self.server.headers.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(autouse=True)
def no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo reads the standard OTEL_* variables: start each test without any."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


def _received_spans(receiver: _Receiver) -> dict[str, dict[str, object]]:
    """Span name -> attributes of every span the receiver got (names of LLM calls repeat: last wins)."""
    spans: dict[str, dict[str, object]] = {}
    with receiver.lock:
        posts = list(receiver.posts)
    for _, _, body in posts:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans[span.name] = {
                        kv.key: getattr(kv.value, kv.value.WhichOneof("value") or "string_value")
                        for kv in span.attributes
                    }
    return spans


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter running ``args``, without the OTEL_* settings of this process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, env=env)


def test_demo_costs_every_call_and_the_root_holds_the_sum(tmp_path: Path) -> None:
    """Every LLM call is captured and attributed, and the workflow root's total is their exact sum."""
    path = tmp_path / "demo.jsonl"
    report = run_demo(path)
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
    run_demo(path)
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


def test_demo_prints_the_readme_tree(tmp_path: Path) -> None:
    """The printed tree is the README's, line for line (its first lines; the README elides the rest)."""
    report = run_demo(tmp_path / "d.jsonl")
    tree = report.splitlines()[1:17]
    assert tree == [
        "workflow code-review ($0.02474) [1 unpriced]",
        "└── coordinator ($0.02474) [1 unpriced]",
        "    ├── chat gpt-5.2 ($0.01092)",
        "    ├── code_agent ($0.011645) [1 unpriced]",
        "    │   ├── chat gpt-5.2 ($0.01092)",
        "    │   └── syntax_analyzer ($0.000725) [1 unpriced]",
        "    │       ├── retry analyze ($0.00) [1 unpriced]",
        "    │       │   └── chat gpt-5-mini ($0.00) [1 unpriced]",
        "    │       └── retry analyze ($0.000725)",
        "    │           └── chat gpt-5-mini ($0.000725)",
        "    ├── reviewer_security ($0.000725)",
        "    │   └── chat gpt-5-mini ($0.000725)",
        "    ├── reviewer_performance ($0.000725)",
        "    │   └── chat gpt-5-mini ($0.000725)",
        "    └── reviewer_style ($0.000725)",
        "        └── chat gpt-5-mini ($0.000725)",
    ]


def test_demo_without_an_endpoint_says_it_wrote_only_its_file(tmp_path: Path) -> None:
    """With no OTLP endpoint set, the report's last line names the file and nothing is said of OTLP."""
    path = tmp_path / "d.jsonl"
    report = run_demo(path)
    assert report.splitlines()[-1] == f"spans written to {path}; see them again with: otel-costs tree {path}"
    assert "OTLP" not in report


@needs_pipeline_branch
def test_demo_sends_to_the_otlp_endpoint_and_says_so(
    tmp_path: Path, receiver: _Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With OTEL_EXPORTER_OTLP_ENDPOINT set, the costed spans reach that OTLP/HTTP receiver too."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url)
    path = tmp_path / "d.jsonl"
    report = run_demo(path)
    assert f"spans sent over OTLP to {receiver.base_url}/v1/traces (http/protobuf)" in report
    assert {(p, t) for p, t, _ in receiver.posts} == {("/v1/traces", "application/x-protobuf")}
    spans = _received_spans(receiver)
    records, _ = read_json_file(path)
    assert set(spans) == {r.name for r in records}  # the same spans as the file
    (root,) = [r for r in records if r.name == "invoke_workflow code-review"]
    sent_root = spans["invoke_workflow code-review"]
    assert sent_root[conv.COST_TOTAL_NANOS] == root.attributes[conv.COST_TOTAL_NANOS] == 24_740_000
    assert sent_root[conv.COST_ROLLUP_UNPRICED] == 1


@needs_pipeline_branch
def test_demo_honours_the_traces_endpoint_and_headers(
    tmp_path: Path, receiver: _Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The traces endpoint is used as given (no path appended), with the OTLP headers; the report says so."""
    url = f"{receiver.base_url}/collector/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # the traces one wins
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-demo-tenant=acme")
    report = run_demo(tmp_path / "d.jsonl")
    assert f"spans sent over OTLP to {url} (http/protobuf)" in report
    assert receiver.posts and {p for p, _, _ in receiver.posts} == {"/collector/traces"}
    assert {h.get("x-demo-tenant") for h in receiver.headers} == {"acme"}
    assert "invoke_workflow code-review" in _received_spans(receiver)


@needs_pipeline_branch
def test_demo_with_grpc_but_no_grpc_exporter_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """OTLP over gRPC without the gRPC exporter installed: exit 2 and a message naming the way out."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", None)
    assert main(["demo", "--file", str(tmp_path / "d.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("otel-costs demo: ") and "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in err


def test_demo_help_says_where_spans_go(capsys: pytest.CaptureFixture[str]) -> None:
    """``otel-costs demo --help`` names the file option and the OTLP variables it honours."""
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "--file" in out
        and "OTEL_EXPORTER_OTLP_ENDPOINT" in out
        and "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" in out
    )


def test_demo_needs_none_of_the_dev_only_packages(tmp_path: Path) -> None:
    """The demo runs with openai, anthropic and the other dev-only packages unimportable (base install)."""
    blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in DEV_ONLY)
    path = tmp_path / "d.jsonl"
    run = f"from otel_costs.cli import main; sys.exit(main(['demo', '--file', {str(path)!r}]))"
    done = _python("-c", f"import sys; {blocked}; {run}")
    assert done.returncode == 0, done.stderr
    assert "workflow code-review ($0.02474) [1 unpriced]" in done.stdout


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_examples_import_only_public_names() -> None:
    """Every module imported by ``examples/`` is public: no ``otel_costs.<x>._y`` path."""
    private = []
    for example in sorted(EXAMPLES.glob("*.py")):
        for node in ast.walk(ast.parse(example.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            private += [(example.name, n) for n in names if n.startswith("otel_costs") and "._" in n]
    assert private == []


def test_hierarchical_agents_example_prints_the_documented_total(tmp_path: Path) -> None:
    """``python examples/hierarchical_agents.py`` draws the tree with the root total its docstring gives."""
    done = _python(str(EXAMPLES / "hierarchical_agents.py"), "--file", str(tmp_path / "t.jsonl"))
    assert done.returncode == 0, done.stderr
    assert "workflow code-review ($0.03325)" in done.stdout
    assert "        └── chat gemini-3-pro ($0.00325)" in done.stdout
