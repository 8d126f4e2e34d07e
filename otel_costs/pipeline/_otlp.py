"""OTLP plumbing: OTLP/JSON lines (the Collector file exporter's encoding) and plain span records.

The JSON form is protobuf's JSON mapping of one ``ExportTraceServiceRequest`` per line, with
the OTLP exception that trace and span ids are hex strings, not base64. protobuf and the OTLP
modules are imported by the functions that use them, not with this module: importing
``otel_costs.pipeline`` loads no protobuf-generated module.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

if TYPE_CHECKING:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

logger = logging.getLogger("otel_costs")

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")
#: Bit of ``Span.flags`` saying whether ``SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`` is known,
#: and the bit that says the parent is remote (OTLP 1.x).
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200


class OtlpFormatError(ValueError):
    """An OTLP payload that cannot be decoded; the message says which line or field."""


def request_to_json(request: ExportTraceServiceRequest) -> str:
    """One line of OTLP/JSON for ``request`` (hex ids, no newline)."""
    from google.protobuf import json_format

    # OTLP/JSON: "Values of enum fields MUST be encoded as integer values" (not protobuf's names).
    data = json_format.MessageToDict(request, use_integers_for_enums=True)
    for span in _iter_json_spans(data):
        _ids(span, _b64_to_hex)
        for link in span.get("links", ()):
            _ids(link, _b64_to_hex)
    return json.dumps(data, separators=(",", ":"))


def json_to_request(line: str | bytes) -> ExportTraceServiceRequest:
    """Parse one line of OTLP/JSON; raises ``OtlpFormatError`` if it is not one."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        data = json.loads(line)
        if not isinstance(data, dict):
            raise OtlpFormatError("an OTLP/JSON line must be a JSON object (ExportTraceServiceRequest)")
        for span in _iter_json_spans(data):
            _ids(span, _hex_to_b64)
            for link in span.get("links", ()) or ():
                _ids(link, _hex_to_b64)
        # "OTLP/JSON receivers MUST ignore message fields with unknown names" (newer OTLP versions).
        return json_format.ParseDict(data, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except OtlpFormatError:
        raise
    except (ValueError, TypeError, AttributeError, json_format.ParseError) as exc:
        raise OtlpFormatError(f"not an OTLP/JSON ExportTraceServiceRequest: {exc}") from exc
    except RecursionError as exc:
        # json.loads on a line nested thousands deep: bad input, not a crash of the reader.
        raise OtlpFormatError("not an OTLP/JSON ExportTraceServiceRequest: nested too deeply") from exc


def _iter_json_spans(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for rs in data.get("resourceSpans", ()) or ():
        for ss in rs.get("scopeSpans", ()) or ():
            yield from ss.get("spans", ()) or ()


def _ids(obj: dict[str, Any], convert: Any) -> None:
    for key in _ID_FIELDS:
        value = obj.get(key)
        if value:
            obj[key] = convert(value)


def _b64_to_hex(value: str) -> str:
    return base64.b64decode(value).hex()


def _hex_to_b64(value: str) -> str:
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        # Already base64 (some writers do not apply the OTLP hex rule): keep it if it decodes.
        base64.b64decode(value, validate=True)
        return value


def spans_to_json(spans: Sequence[ReadableSpan]) -> str:
    """One OTLP/JSON line holding ``spans``."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return request_to_json(encode_spans(spans))


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """A span decoded from OTLP, as plain data."""

    trace_id: bytes
    """16-byte trace id."""
    span_id: bytes
    """8-byte span id."""
    parent_span_id: bytes | None
    """The parent's span id, ``None`` for a root."""
    name: str
    """The span name."""
    attributes: dict[str, Any]
    """Span attributes as Python values (arrays as lists)."""
    service_name: str | None
    """The ``service.name`` of the span's resource."""
    start_time_unix_nano: int
    """Start time, ns since the epoch."""
    end_time_unix_nano: int
    """End time, ns since the epoch."""
    remote_parent: bool
    """The parent lives in another process (OTLP span flags), when the writer said so."""


def any_value(value: AnyValue) -> Any:
    """The Python value of an OTLP ``AnyValue``."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def iter_records(request: ExportTraceServiceRequest) -> Iterator[SpanRecord]:
    """The spans of ``request`` as ``SpanRecord``s."""
    for rs in request.resource_spans:
        service = None
        for kv in rs.resource.attributes:
            if kv.key == "service.name":
                service = str(any_value(kv.value))
        for ss in rs.scope_spans:
            for span in ss.spans:
                yield SpanRecord(
                    trace_id=span.trace_id,
                    span_id=span.span_id,
                    parent_span_id=span.parent_span_id or None,
                    name=span.name,
                    attributes={kv.key: any_value(kv.value) for kv in span.attributes},
                    service_name=service,
                    start_time_unix_nano=span.start_time_unix_nano,
                    end_time_unix_nano=span.end_time_unix_nano,
                    remote_parent=bool(span.flags & _HAS_IS_REMOTE and span.flags & _IS_REMOTE),
                )


def read_json_file(path: str | os.PathLike[str]) -> tuple[list[SpanRecord], list[str]]:
    """All spans in an OTLP/JSON-lines file, and one message per line that could not be read."""
    records: list[SpanRecord] = []
    problems: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.extend(iter_records(json_to_request(line)))
            except OtlpFormatError as exc:
                problems.append(f"{path}:{number}: {exc}")
    return records, problems


class OtlpJsonFileExporter(SpanExporter):
    """Appends each export batch to a file as one line of OTLP/JSON (``ExportTraceServiceRequest``).

    The encoding the Collector's ``file`` exporter writes, so both the ``otel-costs`` CLI and
    the Collector's ``otlpjsonfile`` receiver read it. Thread-safe; parent folders are created.

    Example::

        BatchSpanProcessor(CostRollupExporter(OtlpJsonFileExporter("traces.jsonl")))
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._closed = False

    @property
    def path(self) -> Path:
        """Where the spans are written."""
        return self._path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        try:
            line = spans_to_json(spans)
            with self._lock:
                if self._closed:
                    logger.warning(
                        "otel_costs: %s is shut down; %d spans not written", self._path, len(spans)
                    )
                    return SpanExportResult.FAILURE
                if self._file is None:
                    self._path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = open(self._path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
                self._file.write(line + "\n")
                self._file.flush()
            return SpanExportResult.SUCCESS
        except Exception:
            logger.exception("otel_costs: could not write %d spans to %s", len(spans), self._path)
            return SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None


def hex_id(raw: bytes) -> str:
    """A trace or span id as lowercase hex."""
    return binascii.hexlify(raw).decode()
