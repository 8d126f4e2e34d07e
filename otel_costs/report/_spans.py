"""The report's span reader: OTLP/JSON lines (files, globs, stdin) streamed into plain ``Span``s.

It reads the same encoding ``otel_costs.pipeline`` writes (one ``ExportTraceServiceRequest`` per
line, hex ids), but from the JSON mapping straight into plain objects instead of through
protobuf's ``json_format.ParseDict``, which is about twenty times slower than ``json.loads``:
months of spans must read at close to the speed of ``json.loads`` itself.

One bad line or span never stops a read: it is counted as skipped and described (``file:line``)
in ``ReadStats``, and the rest of the input is read.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gc
import glob
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final

from otel_costs import conventions as conv

CODE_FUNCTION_NAME: Final = conv.CODE_FUNCTION_NAME
CODE_FILE_PATH: Final = conv.CODE_FILE_PATH
CODE_LINE_NUMBER: Final = conv.CODE_LINE_NUMBER
#: Resource attribute of the deployment environment (semconv; the older name is also read).
DEPLOYMENT_ENVIRONMENT: Final = conv.DEPLOYMENT_ENVIRONMENT_NAME
DEPLOYMENT_ENVIRONMENT_OLD: Final = conv.DEPLOYMENT_ENVIRONMENT
SERVICE_NAME: Final = conv.SERVICE_NAME

#: Attributes the reports add or compare as numbers: a string there makes the span unreadable.
NUMERIC_ATTRIBUTES: Final = frozenset(
    {
        conv.COST_DIRECT_NANOS,
        conv.COST_DIRECT,
        conv.RETRY_DEPTH,
        *conv.INPUT_KEYS,
        *conv.OUTPUT_KEYS,
        *conv.CACHE_READ_KEYS,
        *conv.CACHE_WRITE_KEYS,
        *conv.REASONING_KEYS,
    }
)
#: How many problem messages are kept (the count of skipped records is always exact).
MAX_MESSAGES: Final = 50
_HAS_IS_REMOTE: Final = 0x100
_IS_REMOTE: Final = 0x200


class Span:
    """One span as the reports see it: ids as hex strings, attributes as Python values."""

    __slots__ = (
        "attributes",
        "end",
        "name",
        "parent_id",
        "remote_parent",
        "resource",
        "service",
        "span_id",
        "start",
        "trace_id",
    )

    def __init__(
        self,
        trace_id: str,
        span_id: str,
        parent_id: str | None,
        name: str,
        start: int,
        end: int,
        attributes: dict[str, Any],
        resource: dict[str, Any],
        remote_parent: bool = False,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.name = name
        self.start = start
        """Start time, ns since the epoch."""
        self.end = end
        self.attributes = attributes
        self.resource = resource
        """Attributes of the span's resource (``service.name``, ``deployment.environment.name``...)."""
        self.service: str | None = resource.get(SERVICE_NAME)
        self.remote_parent = remote_parent

    def get(self, key: str) -> Any:
        """The span attribute ``key``, else the resource attribute, else ``None``."""
        value = self.attributes.get(key)
        return self.resource.get(key) if value is None else value

    def __repr__(self) -> str:
        return f"Span({self.name!r}, trace={self.trace_id}, span={self.span_id})"


@dataclass
class ReadStats:
    """What a read saw: spans read, records skipped, and why (``file:line: ...``)."""

    spans: int = 0
    skipped: int = 0
    messages: list[str] = field(default_factory=list)
    bytes_read: int = 0

    def problem(self, where: str, message: str, count: int = 1) -> None:
        """Count ``count`` skipped records and keep the message (the first ``MAX_MESSAGES``)."""
        self.skipped += count
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(f"{where}: {message}")

    def merge(self, other: ReadStats) -> None:
        """Add ``other``'s counts and messages to this one."""
        self.spans += other.spans
        self.skipped += other.skipped
        self.bytes_read += other.bytes_read
        room = MAX_MESSAGES - len(self.messages)
        self.messages.extend(other.messages[: max(room, 0)])

    def summary(self) -> str:
        """One line for the end of a report: ``read 1200 spans, skipped 3 records``."""
        return f"read {self.spans} spans, skipped {self.skipped} records"


class BadRecord(ValueError):
    """A span or line that cannot be read; the message says which field."""


def _int(raw: object, what: str) -> int:
    if type(raw) is str:
        try:
            return int(raw)
        except ValueError:
            pass
    elif type(raw) is int:
        return raw
    raise BadRecord(f"{what}: expected an integer, got {raw!r:.60}")


def any_value(value: dict[str, Any]) -> Any:
    """The Python value of an OTLP/JSON ``AnyValue`` (``{"intValue": "3"}`` -> ``3``)."""
    if type(value) is not dict:
        raise BadRecord(f"attribute value must be an object, got {value!r:.60}")
    for kind, raw in value.items():
        if kind == "stringValue":
            if type(raw) is not str:
                raise BadRecord(f"stringValue: expected a string, got {raw!r:.60}")
            return raw
        if kind == "intValue":
            return _int(raw, "intValue")
        if kind == "doubleValue":
            if type(raw) in (int, float):
                return float(raw)
            if raw in ("NaN", "Infinity", "-Infinity"):
                return float(raw)
            raise BadRecord(f"doubleValue: expected a number, got {raw!r:.60}")
        if kind == "boolValue":
            if type(raw) is not bool:
                raise BadRecord(f"boolValue: expected true or false, got {raw!r:.60}")
            return raw
        if kind == "arrayValue":
            return [any_value(v) for v in (raw or {}).get("values", ()) or ()]
        if kind == "kvlistValue":
            return _attributes((raw or {}).get("values", ()) or ())
        if kind == "bytesValue":
            return raw
    return None


def _attributes(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    numeric = NUMERIC_ATTRIBUTES
    key = "?"
    try:
        for kv in items:
            key = kv["key"]
            value = kv.get("value")
            # The common cases inline: this loop is the reader's hot path.
            if value is None:
                out[key] = None
            elif (text := value.get("stringValue")) is not None:
                if key in numeric:
                    raise BadRecord(f"attribute {key}: expected a number, got {text!r:.60}")
                out[key] = text
            elif (number := value.get("intValue")) is not None:
                out[key] = int(number) if type(number) is str and number.isdigit() else _int(number, key)
            elif (double := value.get("doubleValue")) is not None:
                if type(double) is float:
                    out[key] = double
                    if key in numeric and not math.isfinite(double):
                        raise BadRecord(f"attribute {key}: expected a finite number, got {double!r}")
                else:
                    out[key] = decoded = any_value(value)
                    if key in numeric and not math.isfinite(decoded):
                        raise BadRecord(f"attribute {key}: expected a finite number, got {double!r:.60}")
            else:
                out[key] = decoded = any_value(value)
                if key in numeric and not (type(decoded) is int or type(decoded) is float):
                    raise BadRecord(f"attribute {key}: expected a number, got {decoded!r:.60}")
    except (TypeError, AttributeError, KeyError) as exc:
        raise BadRecord(f"attribute {key}: malformed ({exc})") from exc
    return out


def _hex(raw: object, what: str, size: int) -> str:
    if type(raw) is not str:
        raise BadRecord(f"{what}: expected a hex string, got {raw!r:.60}")
    if len(raw) == size * 2:
        return raw  # hex, as OTLP/JSON writes it (not validated further: ids carry no money)
    try:  # Some writers keep protobuf's base64 ids.
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != size:
        raise BadRecord(f"{what}: not a {size}-byte id: {raw!r:.60}")
    return decoded.hex()


def decode_span(raw: dict[str, Any], resource: dict[str, Any]) -> Span:
    """One OTLP/JSON span object as a ``Span``; ``BadRecord`` if a field has the wrong type."""
    if type(raw) is not dict:
        raise BadRecord("a span must be a JSON object")
    attributes = _attributes(raw.get("attributes") or ())
    # Ids and times inline when they are as OTLP/JSON writes them (hex strings, decimal strings).
    trace_id = raw.get("traceId")
    if type(trace_id) is not str or len(trace_id) != 32:
        trace_id = _hex(trace_id, "traceId", 16)
    span_id = raw.get("spanId")
    if type(span_id) is not str or len(span_id) != 16:
        span_id = _hex(span_id, "spanId", 8)
    parent = raw.get("parentSpanId") or None
    if parent is not None and (type(parent) is not str or len(parent) != 16):
        parent = _hex(parent, "parentSpanId", 8)
    start = raw.get("startTimeUnixNano", 0)
    start = int(start) if type(start) is str and start.isdigit() else _int(start, "startTimeUnixNano")
    end = raw.get("endTimeUnixNano", 0)
    end = int(end) if type(end) is str and end.isdigit() else _int(end, "endTimeUnixNano")
    flags = raw.get("flags", 0)
    name = raw.get("name", "")
    return Span(
        trace_id,
        span_id,
        parent,
        name if type(name) is str else str(name),
        start,
        end,
        attributes,
        resource,
        type(flags) is int and bool(flags & _HAS_IS_REMOTE and flags & _IS_REMOTE),
    )


def decode_line(line: str | bytes, where: str, stats: ReadStats) -> list[Span]:
    """The spans of one OTLP/JSON line; bad spans and bad lines are counted in ``stats``."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError) as exc:
        stats.problem(where, f"not JSON ({str(exc)[:80]}): line skipped")
        return []
    if type(data) is not dict or "resourceSpans" not in data:
        stats.problem(where, "not an OTLP/JSON ExportTraceServiceRequest (no resourceSpans): line skipped")
        return []
    spans: list[Span] = []
    try:
        for rs in data["resourceSpans"] or ():
            resource = _attributes((rs.get("resource") or {}).get("attributes", ()) or ())
            for ss in rs.get("scopeSpans", ()) or ():
                for raw in ss.get("spans", ()) or ():
                    try:
                        spans.append(decode_span(raw, resource))
                    except (BadRecord, TypeError, AttributeError, KeyError, ValueError) as exc:
                        stats.problem(where, f"span skipped: {exc}")
    except (BadRecord, TypeError, AttributeError, KeyError) as exc:
        stats.problem(where, f"malformed resourceSpans ({exc}): rest of the line skipped")
    stats.spans += len(spans)
    return spans


def expand_inputs(inputs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Files named by ``inputs`` (paths and globs; ``-`` is stdin), and the patterns matching nothing."""
    files: list[str] = []
    missing: list[str] = []
    for pattern in inputs:
        if pattern == "-" or os.path.exists(pattern):
            files.append(pattern)
            continue
        found = sorted(glob.glob(pattern, recursive=True))
        if found:
            files.extend(found)
        else:
            missing.append(pattern)
    return files, missing


Progress = Callable[[int], None]


@contextlib.contextmanager
def relaxed_gc(young: int = 100_000) -> Iterator[None]:
    """Run the cyclic GC's young collection every ``young`` net allocations instead of 700.

    Decoded spans hold no reference cycles (reference counting frees each line's objects), so
    while a command streams its input the cyclic collector only rescans live objects: the CLI
    commands run under this (about a third less time). The old thresholds are restored after.
    """
    old = gc.get_threshold()
    gc.set_threshold(max(young, old[0]), *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def read_stream(
    stream: IO[bytes], name: str, stats: ReadStats, progress: Progress | None = None
) -> Iterator[list[Span]]:
    """Stream the spans of one OTLP/JSON-lines stream, a line's spans at a time."""
    for number, line in enumerate(stream, 1):
        stats.bytes_read += len(line)
        if progress is not None:
            progress(len(line))
        if not line.strip():
            continue
        if not line.endswith(b"\n") and _truncated(line):
            stats.problem(f"{name}:{number}", "truncated line (no end of JSON): line skipped")
            continue
        yield decode_line(line, f"{name}:{number}", stats)


def _truncated(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return True
    return False


def read_files(
    inputs: Sequence[str], stats: ReadStats, progress: Progress | None = None
) -> Iterator[list[Span]]:
    """Stream the spans of ``inputs`` (paths, globs, ``-`` for stdin) in order, one line's at a time."""
    files, missing = expand_inputs(inputs)
    for pattern in missing:
        stats.problem(pattern, "no such file (or no file matches the pattern)", count=0)
    for path in files:
        if path == "-":
            yield from read_stream(sys.stdin.buffer, "<stdin>", stats, progress)
            continue
        try:
            with open(path, "rb") as fh:
                yield from read_stream(fh, path, stats, progress)
        except OSError as exc:
            stats.problem(path, f"cannot read: {exc.strerror or exc}", count=0)


def total_size(inputs: Sequence[str]) -> int:
    """Bytes in the files of ``inputs`` (stdin counts 0): the length of the progress bar."""
    files, _ = expand_inputs(inputs)
    size = 0
    for path in files:
        if path != "-":
            with contextlib.suppress(OSError):
                size += os.path.getsize(path)
    return size


def flatten(batches: Iterable[list[Span]]) -> Iterator[Span]:
    """The spans of ``batches`` one by one."""
    for batch in batches:
        yield from batch


def check_numbers(attributes: dict[str, Any]) -> None:
    """``BadRecord`` unless every attribute the reports add up holds a finite number."""
    for key in NUMERIC_ATTRIBUTES.intersection(attributes):
        value = attributes[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRecord(f"attribute {key}: expected a number, got {value!r:.60}")
        if isinstance(value, float) and not math.isfinite(value):
            raise BadRecord(f"attribute {key}: expected a finite number, got {value!r}")
