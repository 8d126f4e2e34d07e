"""Inputs of the reports: bad OTLP/JSON lines and spans, and the Jaeger query API (loopback and real)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from test_report_workload import run_cli, workload_spans, write_otlp

from otel_costs.report import JaegerSource, ReadStats


def _span_line(**overrides: Any) -> str:
    span: dict[str, Any] = {
        "traceId": "ab" * 16,
        "spanId": "cd" * 8,
        "name": "chat x",
        "startTimeUnixNano": "1793700000000000000",
        "endTimeUnixNano": "1793700000000000001",
        "attributes": [
            {"key": "cost.status", "value": {"stringValue": "priced"}},
            {"key": "cost.direct_nanos", "value": {"intValue": "1000"}},
        ],
    }
    span.update(overrides)
    return json.dumps({"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": [span]}]}]})


BAD_LINES = {
    "truncated at the end": (
        '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "ab',
        "truncated line",
    ),
    "not JSON": ("this is not json\n", "not JSON"),
    "JSON but not OTLP": ('{"hello": "world"}\n', "no resourceSpans"),
    "a JSON array": ("[1, 2, 3]\n", "no resourceSpans"),
    "nested too deeply": ("[" * 100_000 + "]" * 100_000 + "\n", "not JSON"),
    "a string for cost.direct_nanos": (
        _span_line(attributes=[{"key": "cost.direct_nanos", "value": {"stringValue": "12"}}]) + "\n",
        "attribute cost.direct_nanos: expected a number",
    ),
    "a word in intValue": (
        _span_line(attributes=[{"key": "gen_ai.usage.input_tokens", "value": {"intValue": "many"}}]) + "\n",
        "expected an integer",
    ),
    "a word for the start time": (_span_line(startTimeUnixNano="soon") + "\n", "startTimeUnixNano"),
    "a number for the trace id": (_span_line(traceId=12) + "\n", "traceId"),
    "NaN tokens": (
        _span_line(attributes=[{"key": "gen_ai.usage.output_tokens", "value": {"doubleValue": "NaN"}}])
        + "\n",
        "finite number",
    ),
    "spans not a list of objects": (
        json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": ["x"]}]}]}) + "\n",
        "span skipped",
    ),
}


@pytest.fixture(scope="module")
def spans() -> list[ReadableSpan]:
    """The workload's spans, made once for this module."""
    return workload_spans()


@pytest.mark.parametrize("case", sorted(BAD_LINES))
@pytest.mark.parametrize("command", ["report", "chargeback", "audit"])
def test_a_bad_record_is_skipped_named_and_counted(
    spans: list[ReadableSpan], tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, command: str
) -> None:
    """A bad line or span gets a file:line message and a skipped count; everything else is still reported."""
    good = write_otlp(tmp_path / "good.jsonl", spans)
    assert run_cli(["report", str(good), "--format", "json"]) == 0
    reference = json.loads(capsys.readouterr().out)
    lines = good.read_text().splitlines(keepends=True)
    bad_line, message = BAD_LINES[case]
    position = len(lines) if case == "truncated at the end" else 2
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(lines[:position]) + bad_line + "".join(lines[position:]))
    code = run_cli([command, str(mixed), "--format", "json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert f"{mixed}:{position + 1}:" in err and message in err
    assert "skipped 1 records" in err
    result = json.loads(out)
    assert result["input"]["skipped"] == 1
    if command == "report" or command == "chargeback":
        assert code == 0 and result["total"] == reference["total"]


def test_a_missing_file_is_named_and_the_others_are_read(
    spans: list[ReadableSpan], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A path that does not exist is reported on stderr; the files that exist are still reported."""
    good = write_otlp(tmp_path / "good.jsonl", spans)
    assert run_cli(["report", str(tmp_path / "nope.jsonl"), str(good), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert "nope.jsonl: no such file" in err and json.loads(out)["total"]["calls"] > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--since", "yesterday-ish"], "cannot read time"),
        (["--month", "2026-13"], "cannot read month"),
        (["--tz", "Mars/Olympus"], "unknown time zone"),
        (["--jaeger", "ftp://x"], "http(s) URL"),
        (["--jaeger", "http://127.0.0.1:9"], "--service"),
    ],
)
def test_bad_options_get_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """A period, zone or URL that cannot be used ends with a one-line message and exit status 2."""
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    assert run_cli(["report", str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# --- Jaeger ---------------------------------------------------------------------------------


def to_jaeger(spans: list[ReadableSpan], spread_us: int = 60_000_000) -> list[dict[str, Any]]:
    """The spans as Jaeger's JSON traces, trace ``k`` moved ``k * spread_us`` later."""
    types = {bool: "bool", int: "int64", float: "float64", str: "string"}
    traces: dict[str, dict[str, Any]] = {}
    for span in spans:
        ctx = span.context
        assert ctx is not None
        trace_id = f"{ctx.trace_id:032x}"
        trace = traces.setdefault(
            trace_id,
            {"traceID": trace_id, "spans": [], "processes": {"p1": {"serviceName": "reports", "tags": []}}},
        )
        shift = (list(traces).index(trace_id)) * spread_us
        refs = (
            [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": f"{span.parent.span_id:016x}"}]
            if span.parent
            else []
        )
        trace["spans"].append(
            {
                "traceID": trace_id,
                "spanID": f"{ctx.span_id:016x}",
                "operationName": span.name,
                "references": refs,
                "startTime": (span.start_time or 0) // 1000 + shift,
                "duration": ((span.end_time or 0) - (span.start_time or 0)) // 1000,
                "tags": [
                    {"key": k, "type": types[type(v)], "value": v} for k, v in (span.attributes or {}).items()
                ],
                "processID": "p1",
            }
        )
    return list(traces.values())


class FakeJaeger:
    """A loopback HTTP server answering Jaeger's query API from a list of traces (or misbehaving)."""

    def __init__(self, traces: list[dict[str, Any]], mode: str = "ok") -> None:
        self.traces, self.mode, self.queries = traces, mode, 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.queries += 1
                url = urlsplit(self.path)
                if owner.mode == "html":
                    return self._send(200, b"<html><body>Jaeger UI</body></html>", "text/html")
                if owner.mode == "500":
                    return self._send(500, b"internal error", "text/plain")
                if url.path.startswith("/api/traces/"):
                    wanted = url.path.rsplit("/", 1)[1]
                    found = [t for t in owner.traces if t["traceID"] == wanted]
                    return self._json({"data": found})
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                start, end, limit = int(query["start"]), int(query["end"]), int(query["limit"])
                hits = [t for t in owner.traces if any(start <= s["startTime"] < end for s in t["spans"])]
                return self._json({"data": hits[:limit], "total": len(hits[:limit]), "errors": None})

            def _json(self, payload: dict[str, Any]) -> None:
                self._send(200, json.dumps(payload).encode(), "application/json")

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeJaeger:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def jaeger_traces(spans: list[ReadableSpan]) -> list[dict[str, Any]]:
    """The workload in Jaeger's JSON, one trace a minute."""
    return to_jaeger(spans)


def _window(traces: list[dict[str, Any]]) -> tuple[str, str]:
    starts = [s["startTime"] for t in traces for s in t["spans"]]
    return str(min(starts) // 1_000_000 - 60), str(max(starts) // 1_000_000 + 60)


def _jaeger_report(url: str, since: str, until: str) -> list[str]:
    return ["report", "--jaeger", url, "--service", "reports", "--since", _iso(since), "--until", _iso(until)]


def _iso(seconds: str) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(int(seconds), UTC).isoformat()


@pytest.mark.parametrize("limit", [1000, 2])
def test_jaeger_report_equals_the_file_report(
    spans: list[ReadableSpan], jaeger_traces: list[dict[str, Any]], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], limit: int,
) -> None:  # fmt: skip
    """``--jaeger`` gives the trace file's figures, even when each answer is cut at ``limit`` traces."""
    assert (
        run_cli(
            ["report", str(write_otlp(tmp_path / "t.jsonl", spans)), "-g", "team,model", "--format", "json"]
        )
        == 0
    )
    expected = json.loads(capsys.readouterr().out)
    since, until = _window(jaeger_traces)
    with FakeJaeger(jaeger_traces) as jaeger:
        argv = _jaeger_report(jaeger.url, since, until)
        assert run_cli([*argv, "-g", "team,model", "--limit", str(limit), "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["total"] == expected["total"]
    assert [r["key"] for r in got["rows"]] == [r["key"] for r in expected["rows"]]


def test_audit_reads_one_jaeger_trace(
    jaeger_traces: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    """``audit --jaeger URL --trace ID`` audits that trace alone."""
    unpriced = next(
        t for t in jaeger_traces if any(s["operationName"] == "chat mystery-model" for s in t["spans"])
    )
    with FakeJaeger(jaeger_traces) as jaeger:
        assert (
            run_cli(["audit", "--jaeger", jaeger.url, "--trace", unpriced["traceID"], "--format", "json"])
            == 1
        )
    result = json.loads(capsys.readouterr().out)
    assert result["traces"] == 1 and result["by_kind"] == {"unpriced_call": 1}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("mode", "message"), [("html", "answered HTML"), ("500", "HTTP 500"), ("down", "cannot reach Jaeger")]
)
def test_a_broken_jaeger_is_named_by_url(
    jaeger_traces: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], mode: str, message: str
) -> None:
    """A Jaeger down, failing or answering HTML: a message with the URL, an empty report, no traceback."""
    since, until = _window(jaeger_traces)
    with FakeJaeger(jaeger_traces, mode=mode) as jaeger:
        url = f"http://127.0.0.1:{_closed_port()}" if mode == "down" else jaeger.url
        argv = _jaeger_report(url, since, until)
        assert run_cli([*argv, "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert message in err and url in err and "Traceback" not in err and "skipped" in err
    assert json.loads(out)["total"]["calls"] == 0


def test_a_bad_span_from_jaeger_is_skipped_and_counted(jaeger_traces: list[dict[str, Any]]) -> None:
    """A Jaeger span with a string where a number belongs is skipped; the rest of its trace is read."""
    broken = json.loads(json.dumps(jaeger_traces))
    span = next(s for t in broken for s in t["spans"] if s["operationName"] == "chat gpt-5.2")
    span["tags"] = [{"key": "cost.direct_nanos", "type": "string", "value": "lots"}]
    since, until = _window(broken)
    stats = ReadStats()
    with FakeJaeger(broken) as jaeger:
        source = JaegerSource(jaeger.url)
        read = [
            s
            for batch in source.traces("reports", int(since) * 10**9, int(until) * 10**9, stats)
            for s in batch
        ]
    assert stats.skipped == 1 and "cost.direct_nanos" in stats.messages[0] and jaeger.url in stats.messages[0]
    assert len(read) == sum(len(t["spans"]) for t in broken) - 1


@pytest.fixture
def real_jaeger(tmp_path: Path) -> Iterator[Any]:
    """The Jaeger binary built by collector/build.sh, on loopback (skipped when it cannot be built)."""
    import infra

    with infra.run_jaeger(log_dir=tmp_path) as jaeger:
        yield jaeger


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_report_from_a_real_jaeger_equals_the_in_process_spans(
    real_jaeger: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Spans sent over OTLP to a real Jaeger come back through its query API with the exact same cost."""
    import infra
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult
    from test_report_workload import priced_nanos, run_workload

    from otel_costs.testing import InMemoryPipeline

    pipeline = InMemoryPipeline(service_name="reports-jaeger")
    run_workload(pipeline.tracer_provider)
    spans = pipeline.spans()
    pipeline.shutdown()
    exporter = OTLPSpanExporter(endpoint=real_jaeger.otlp_http_traces_url)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    exporter.shutdown()
    infra.wait_for_traces(
        real_jaeger.query_port, "reports-jaeger", min_traces=13, min_spans=len(spans), timeout=60
    )
    assert (
        run_cli(
            [
                "report",
                "--jaeger",
                real_jaeger.query_url,
                "--service",
                "reports-jaeger",
                "--since",
                "1h",
                "--format",
                "json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["total"]["cost_nanos"] > 0
    assert report["total"]["calls"] == sum(1 for s in spans if s.name.startswith("chat"))
    assert report["total"]["cost_nanos"] == priced_nanos(spans)
