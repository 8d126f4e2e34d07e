"""OTLP/JSON lines: encoding, decoding, the file exporter and the file reader.

Internal: the OTLP/JSON codec (``pipeline._otlp``) is tested directly, line format by line format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from otel_costs.pipeline import OtlpFormatError, OtlpJsonFileExporter
from otel_costs.pipeline._otlp import (
    iter_records,
    json_to_request,
    read_json_file,
    request_to_json,
    spans_to_json,
)

#: One attribute of every type an OTel span attribute can hold.
ATTRIBUTES: dict[str, Any] = {
    "s": 'text with "quotes" and ünïcode',
    "b": True,
    "i": -(2**62),
    "f": 0.03325,
    "cost.direct_nanos": 33_250_000,
    "ss": ["a", "b"],
    "bs": [True, False],
    "is": [1, 2, 3],
    "fs": [0.5, 1.5],
}


def make_spans() -> list[ReadableSpan]:
    """A root, a child with every attribute type, a link and an event, and a span with a remote parent."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "otlp-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER) as root:
        root.set_status(Status(StatusCode.ERROR, "boom"))
        with tracer.start_as_current_span(
            "child", attributes=ATTRIBUTES, links=[trace.Link(root.get_span_context(), {"l": 1})]
        ) as child:
            child.add_event("e", {"k": "v"})
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with tracer.start_as_current_span(
        "remote-child", context=trace.set_span_in_context(NonRecordingSpan(remote))
    ):
        pass
    provider.shutdown()
    return list(exporter.get_finished_spans())


def test_json_line_round_trip_keeps_ids_and_attributes() -> None:
    """A line decodes to the same ids, parents, names, times, service and attributes of every type."""
    spans = make_spans()
    line = spans_to_json(spans)
    assert "\n" not in line
    records = {r.name: r for r in iter_records(json_to_request(line))}
    assert set(records) == {s.name for s in spans}
    for span in spans:
        record = records[span.name]
        assert span.context is not None
        assert record.trace_id == span.context.trace_id.to_bytes(16, "big")
        assert record.span_id == span.context.span_id.to_bytes(8, "big")
        expected_parent = span.parent.span_id.to_bytes(8, "big") if span.parent else None
        assert record.parent_span_id == expected_parent
        # Arrays come back as lists (the SDK keeps tuples).
        expected = {k: list(v) if isinstance(v, tuple) else v for k, v in (span.attributes or {}).items()}
        assert record.attributes == expected
        assert (record.start_time_unix_nano, record.end_time_unix_nano) == (span.start_time, span.end_time)
        assert record.service_name == "otlp-test"
    assert records["remote-child"].remote_parent is True
    assert records["child"].remote_parent is False
    # And the line re-encodes to itself.
    assert request_to_json(json_to_request(line)) == line


def test_json_ids_are_hex_and_enums_integers() -> None:
    """Trace, span, parent and link ids are lowercase hex; enums (kind, status) are integers (OTLP/JSON)."""
    spans = make_spans()
    data = json.loads(spans_to_json(spans))
    json_spans = {
        s["name"]: s for rs in data["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]
    }
    child, root = json_spans["child"], json_spans["root"]
    root_ctx = next(s for s in spans if s.name == "root").context
    assert root_ctx is not None
    assert root["traceId"] == f"{root_ctx.trace_id:032x}"
    assert root["spanId"] == f"{root_ctx.span_id:016x}"
    assert child["parentSpanId"] == root["spanId"]
    assert child["links"][0]["spanId"] == root["spanId"]
    assert child["links"][0]["traceId"] == root["traceId"]
    assert root["kind"] == SpanKind.SERVER.value + 1  # OTLP's SPAN_KIND_SERVER = 2
    assert root["status"]["code"] == 2  # STATUS_CODE_ERROR


def test_base64_ids_from_other_writers_are_accepted() -> None:
    """A writer that left ids in protobuf's base64 is read too."""
    line = (
        '{"resourceSpans":[{"scopeSpans":[{"spans":'
        '[{"traceId":"AAAAAAAAAAAAAAAAAAAAAQ==","spanId":"AAAAAAAAAAI=","name":"x"}]}]}]}'
    )
    (record,) = iter_records(json_to_request(line))
    assert record.trace_id == (1).to_bytes(16, "big")
    assert record.span_id == (2).to_bytes(8, "big")


def test_unknown_fields_are_ignored() -> None:
    """Fields from a newer OTLP version are ignored, as OTLP/JSON receivers must."""
    line = (
        '{"resourceSpans":[{"futureField":1,"scopeSpans":[{"spans":[{"traceId":"0000000000000000000000000000000a",'
        '"spanId":"000000000000000b","name":"x","someNewThing":{"a":1}}]}]}]}'
    )
    (record,) = iter_records(json_to_request(line))
    assert record.name == "x"


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        "",
        "[]",
        "5",
        '"text"',
        '{"resourceSpans": 5}',
        '{"resourceSpans": [5]}',
        '{"resourceSpans": [{"scopeSpans": [{"spans": [5]}]}]}',
        '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz!"}]}]}]}',
        '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 5}]}]}]}',
        '{"resourceSpans": [{"scopeSpans": [{"spans": [{"links": 5}]}]}]}',
        '{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": {"a": 1}}]}]}]}',
        '{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 100_000 + "1" + "}" * 100_000,
        b"\xff\xfe{",
    ],
    ids=lambda line: repr(line[:30]),
)
def test_malformed_lines_raise_otlp_format_error(line: str | bytes) -> None:
    """Anything that is not one ExportTraceServiceRequest raises OtlpFormatError, nothing else."""
    with pytest.raises(OtlpFormatError):
        json_to_request(line)


def test_file_exporter_appends_one_line_per_batch(tmp_path: Path) -> None:
    """Each export appends one line (empty batches none), in a folder created on demand."""
    spans = make_spans()
    path = tmp_path / "deep" / "folder" / "traces.jsonl"
    exporter = OtlpJsonFileExporter(path)
    assert exporter.path == path
    assert exporter.export(spans[:1]) is SpanExportResult.SUCCESS
    assert exporter.export([]) is SpanExportResult.SUCCESS
    assert exporter.export(spans[1:]) is SpanExportResult.SUCCESS
    assert exporter.force_flush() is True
    exporter.shutdown()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert [r.name for line in lines for r in iter_records(json_to_request(line))] == [s.name for s in spans]
    # A new exporter on the same file appends.
    again = OtlpJsonFileExporter(path)
    again.export(spans[:1])
    again.shutdown()
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3


def test_file_exporter_failure_is_reported_not_raised(tmp_path: Path) -> None:
    """A path that cannot be written gives FAILURE, never an exception into the caller."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    exporter = OtlpJsonFileExporter(blocker / "traces.jsonl")
    assert exporter.export(make_spans()) is SpanExportResult.FAILURE
    exporter.shutdown()


def test_file_exporter_refuses_spans_after_shutdown(tmp_path: Path) -> None:
    """After shutdown an export fails and leaves the file untouched instead of reopening it."""
    path = tmp_path / "traces.jsonl"
    exporter = OtlpJsonFileExporter(path)
    exporter.export(make_spans()[:1])
    exporter.shutdown()
    assert exporter.export(make_spans()) is SpanExportResult.FAILURE
    assert len(path.read_text(encoding="utf-8").splitlines()) == 1


def test_read_json_file_skips_and_reports_bad_lines(tmp_path: Path) -> None:
    """Good lines are read, blank lines ignored, and each bad line reported with its number."""
    spans = make_spans()
    path = tmp_path / "traces.jsonl"
    path.write_bytes(
        (spans_to_json(spans[:1]) + "\n\nnot json\n" + spans_to_json(spans[1:]) + "\n").encode()
        + b'{"resourceSpans": 5}\xff\n'
    )
    records, problems = read_json_file(path)
    assert [r.name for r in records] == [s.name for s in spans]
    assert len(problems) == 2
    assert problems[0].startswith(f"{path}:3: ")
    assert problems[1].startswith(f"{path}:5: ")


def test_read_json_file_missing_file_raises_oserror(tmp_path: Path) -> None:
    """A missing file is the caller's OSError to handle (the CLI turns it into exit code 2)."""
    with pytest.raises(FileNotFoundError):
        read_json_file(tmp_path / "nope.jsonl")
