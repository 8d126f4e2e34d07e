"""``otel-costs serve``: a trace-wide cost rollup worker behind the OpenTelemetry Collector.

The in-process ``CostRollupExporter`` can only sum the spans of its own process. ``serve``
receives OTLP from every process (through a gateway Collector that routes by trace ID, so
all spans of a trace reach the same worker), holds each trace for a short window, runs the
same ``rollup`` over all its spans and forwards them over OTLP with trace-wide
``cost.children*`` / ``cost.total*`` and ``cost.rollup.scope = trace``. It works on the
protobuf messages themselves (decode -> rollup -> encode); no SDK span objects.

::

    apps --OTLP--> gateway Collector --loadbalancing(traceID)--> otel-costs serve --OTLP--> backend

Example::

    otel-costs serve --forward-endpoint http://jaeger:4317 --forward-protocol grpc

Semantics mirror ``CostRollupExporter``: a trace goes out ``linger`` seconds after its root
span (no parent) arrived, or ``max_wait`` seconds after its first span (then its top spans are
flagged ``cost.rollup.orphan`` / ``remote_parent``); spans arriving after their trace went out
are forwarded flagged ``cost.rollup.partial`` (reason ``late``). Memory is bounded by
``max_buffered_spans`` (window plus forward queue): past it, requests are refused with OTLP's
retryable answers (gRPC ``UNAVAILABLE`` with ``RetryInfo``, HTTP 429 with ``Retry-After``) so
upstream Collectors keep the data and retry.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import heapq
import http.client
import json
import logging
import math
import operator
import os
import random
import signal
import ssl
import struct
import sys
import threading
import time
import zlib
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain, compress, repeat
from types import ModuleType
from typing import Any, Final, Literal, NamedTuple, NoReturn, Protocol
from urllib.parse import unquote, urlsplit

import grpc  # type: ignore[import-untyped]
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_costs import conventions as conv
from otel_costs._money import nanos_to_usd
from otel_costs._serve_metrics import (
    FORWARD_REQUESTS,
    REQUESTS_REJECTED,
    SPANS_BUFFERED,
    SPANS_CAPACITY,
    SPANS_DROPPED,
    SPANS_FORWARDED,
    SPANS_QUEUED,
    SPANS_RECEIVED,
    TRACES_BUFFERED,
    TRACES_FLUSHED,
    ServeMetrics,
)
from otel_costs.pipeline._otlp import _HAS_IS_REMOTE, _IS_REMOTE, OtlpFormatError, any_value, json_to_request
from otel_costs.rollup._tree import (
    _BILLABLE,
    _INCOMPLETE,
    CostNode,
    NodeRollup,
    own_cost,
    rollup_attributes,
    rollup_columns,
)

logger = logging.getLogger("otel_costs.serve")

DEFAULT_GRPC_PORT: Final = 4317
DEFAULT_HTTP_PORT: Final = 4318
TRACES_PATH: Final = "/v1/traces"
WORKER_ATTRIBUTE: Final = conv.ROLLUP_WORKER
_GRPC_SERVICE: Final = "opentelemetry.proto.collector.trace.v1.TraceService"
_GRPC_EXPORT: Final = f"/{_GRPC_SERVICE}/Export"
_STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"

#: Rollup attributes an earlier rollup (the in-process exporter, or another worker) wrote:
#: the trace-wide rollup replaces them. ``cost.direct*`` and the pricing attributes stay.
_REPLACED_KEYS: Final = frozenset(
    {
        conv.COST_CHILDREN,
        conv.COST_TOTAL,
        conv.COST_CHILDREN_NANOS,
        conv.COST_TOTAL_NANOS,
        conv.COST_ROLLUP_SCOPE,
        conv.COST_ROLLUP_UNPRICED,
        conv.COST_ROLLUP_REMOTE_PARENT,
        conv.COST_ROLLUP_ORPHAN,
        conv.COST_ROLLUP_PARTIAL,
        conv.COST_ROLLUP_PARTIAL_REASON,
    }
)
#: The attributes ``own_cost`` (``cost_node``) reads.
_READ_KEYS: Final = frozenset({conv.COST_STATUS, conv.COST_DIRECT_NANOS, conv.COST_DIRECT})
#: gRPC codes OTLP clients retry (RESOURCE_EXHAUSTED only with RetryInfo).
_GRPC_RETRYABLE: Final = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_HTTP_RETRYABLE: Final = frozenset({429, 502, 503, 504})


class ServeConfigError(ValueError):
    """``serve`` settings that cannot work; the message says which flag or variable to fix."""


class BufferFullError(Exception):
    """The worker holds ``max_buffered_spans`` spans: the sender should retry later."""


class ShuttingDownError(Exception):
    """The worker is stopping: the sender should retry (another worker, or this one restarted)."""


class RequestTooLargeError(Exception):
    """A request holds more spans than the worker may ever buffer; it is refused for good."""


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ForwardConfig:
    """Where and how the worker forwards rolled-up spans (the next OTLP hop)."""

    endpoint: str
    """gRPC: ``host:port`` or ``http(s)://host:port``; HTTP: the full URL of ``/v1/traces``."""
    protocol: Literal["grpc", "http/protobuf"] = "grpc"
    """OTLP transport of the next hop."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra request headers (gRPC metadata), e.g. an auth token."""
    timeout: float = 10.0
    """Seconds one export call may take."""
    compression: Literal["gzip"] | None = None
    """Compress forwarded payloads."""
    insecure: bool | None = None
    """gRPC without TLS; ``None`` decides from the endpoint (``https://`` means TLS)."""
    certificate: str | None = None
    """PEM file of the CA that signed the next hop's certificate."""
    max_elapsed: float = 300.0
    """Seconds a batch is retried before it is dropped (counted in ``spans_dropped_total``)."""
    initial_backoff: float = 0.5
    """Seconds before the first retry; doubled (with jitter) up to ``max_backoff``."""
    max_backoff: float = 10.0
    """Longest pause between two retries, unless the next hop asks for longer (Retry-After)."""
    concurrency: int = 2
    """Export calls in flight at once."""

    @classmethod
    def from_env(
        cls,
        *,
        endpoint: str | None = None,
        protocol: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        env: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> ForwardConfig:
        """Explicit arguments first, then the standard ``OTEL_EXPORTER_OTLP_(TRACES_)*`` variables.

        Reads ``ENDPOINT``, ``PROTOCOL`` (default ``http/protobuf``, as the spec says),
        ``HEADERS``, ``TIMEOUT`` (milliseconds), ``COMPRESSION``, ``INSECURE`` and
        ``CERTIFICATE``. Raises ``ServeConfigError`` when no endpoint is set anywhere.

        Example::

            ForwardConfig.from_env(endpoint="http://jaeger:4317", protocol="grpc")
        """
        env = os.environ if env is None else env

        def pick(name: str) -> str | None:
            value = env.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or env.get(f"OTEL_EXPORTER_OTLP_{name}")
            return value.strip() if value and value.strip() else None

        chosen = (protocol or pick("PROTOCOL") or "http/protobuf").strip()
        if chosen not in ("grpc", "http/protobuf"):
            raise ServeConfigError(
                f"unsupported forward protocol {chosen!r}: use --forward-protocol grpc or http/protobuf"
            )
        target = endpoint
        signal_specific = False
        if not target:
            target = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip() or None
            signal_specific = target is not None
        if not target:
            target = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or None
        if not target:
            raise ServeConfigError(
                "no forward endpoint: pass --forward-endpoint or set OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
            )
        if chosen == "http/protobuf":
            if "://" not in target:
                target = "http://" + target
            if not signal_specific and not urlsplit(target).path.rstrip("/").endswith(TRACES_PATH):
                target = target.rstrip("/") + TRACES_PATH
        merged = dict(_parse_headers(pick("HEADERS") or ""))
        merged.update(headers)
        values: dict[str, Any] = {}
        timeout_ms = pick("TIMEOUT")
        if timeout_ms is not None:
            try:
                values["timeout"] = float(timeout_ms) / 1000.0
            except ValueError as exc:
                raise ServeConfigError(
                    f"OTEL_EXPORTER_OTLP_TIMEOUT must be milliseconds, got {timeout_ms!r}"
                ) from exc
        compression = (pick("COMPRESSION") or "none").lower()
        if compression not in ("gzip", "none"):
            raise ServeConfigError(
                f"OTEL_EXPORTER_OTLP_COMPRESSION must be gzip or none, got {compression!r}"
            )
        values["compression"] = "gzip" if compression == "gzip" else None
        insecure = pick("INSECURE")
        if insecure is not None:
            values["insecure"] = insecure.lower() == "true"
        values["certificate"] = pick("CERTIFICATE")
        values.update(settings)
        config = cls(endpoint=target, protocol=chosen, headers=tuple(merged.items()), **values)  # type: ignore[arg-type]
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ``ServeConfigError`` if a setting is out of range."""
        if self.timeout <= 0 or self.max_elapsed < 0 or self.initial_backoff <= 0:
            raise ServeConfigError("forward timeout and backoff must be > 0 and max_elapsed >= 0")
        if self.max_backoff < self.initial_backoff:
            raise ServeConfigError("forward max_backoff must be >= initial_backoff")
        if self.concurrency < 1:
            raise ServeConfigError("forward concurrency must be >= 1")


def _parse_headers(raw: str) -> list[tuple[str, str]]:
    """``OTEL_EXPORTER_OTLP_HEADERS``: ``k1=v1,k2=v2``, URL-encoded values."""
    out: list[tuple[str, str]] = []
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ServeConfigError(f"bad OTLP header {item!r}: use key=value pairs separated by commas")
        out.append((unquote(key.strip()).lower(), unquote(value.strip())))
    return out


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Settings of one ``otel-costs serve`` worker."""

    forward: ForwardConfig
    """The next hop."""
    host: str = "127.0.0.1"
    """Address both receivers bind (``0.0.0.0`` to accept other hosts)."""
    grpc_port: int | None = DEFAULT_GRPC_PORT
    """OTLP/gRPC port; 0 picks a free one, ``None`` disables gRPC."""
    http_port: int = DEFAULT_HTTP_PORT
    """OTLP/HTTP port, also serving ``/healthz`` and ``/metrics``; 0 picks a free one."""
    linger: float = 5.0
    """Seconds a trace waits after its root span arrived (for spans of other services)."""
    max_wait: float = 60.0
    """Seconds a trace waits at most after its first span, root or not."""
    max_buffered_spans: int = 200_000
    """Memory bound: spans in the window plus spans waiting to be forwarded."""
    max_request_bytes: int = 16 * 1024 * 1024
    """Largest OTLP request accepted (after decompression)."""
    remember_flushed: int = 100_000
    """Trace ids remembered after they went out, to flag their late spans."""
    forward_batch_spans: int = 4096
    """Most spans in one forwarded request."""
    worker_id: str | None = None
    """Written on forwarded resources as ``otel_costs.worker`` (unset: nothing written)."""
    shutdown_timeout: float = 30.0
    """Seconds a graceful stop may take to flush and forward what it holds."""
    retry_after: float = 1.0
    """Seconds refused senders are told to wait (``Retry-After`` / ``RetryInfo``)."""
    rollup: bool = True
    """``False`` makes a pass-through relay (decode, encode, forward): the benchmark's baseline."""

    def validate(self) -> None:
        """Raise ``ServeConfigError`` if a setting is out of range."""
        if self.linger < 0 or self.max_wait < self.linger:
            raise ServeConfigError(f"need 0 <= --linger <= --max-wait, got {self.linger} and {self.max_wait}")
        if self.max_buffered_spans < 1 or self.forward_batch_spans < 1 or self.remember_flushed < 0:
            raise ServeConfigError("--max-buffered-spans and --forward-batch-spans must be >= 1")
        if self.max_request_bytes < 1024:
            raise ServeConfigError("--max-request-bytes must be >= 1024")
        for port in (self.grpc_port, self.http_port):
            if port is not None and not 0 <= port <= 65535:
                raise ServeConfigError(f"port {port} out of range 0-65535")
        if self.shutdown_timeout < 0 or self.retry_after <= 0:
            raise ServeConfigError("--shutdown-timeout must be >= 0")
        self.forward.validate()


# --- the rollup window ---------------------------------------------------------------------


@dataclass(slots=True)
class _Group:
    """The resource and scope spans came with (kept so the output keeps the grouping)."""

    key: bytes
    """Resource, scope and their schema URLs serialized: spans with equal keys share a ``ScopeSpans``."""
    resource_key: bytes
    """Resource and its schema URL serialized: equal keys share a ``ResourceSpans``."""
    resource: bytes
    """The serialized ``Resource``."""
    resource_schema_url: str
    """``ResourceSpans.schema_url``."""
    scope: bytes
    """The serialized ``InstrumentationScope``."""
    scope_schema_url: str
    """``ScopeSpans.schema_url``."""


@dataclass(slots=True)
class _Chunk:
    """Spans of one trace that arrived together, under one resource and scope."""

    group: _Group
    """Their resource and scope."""
    data: list[bytes]
    """Each span serialized as it arrived; forwarded as it is unless the rollup changes it."""
    span_ids: Sequence[bytes]
    """Each span's id."""
    parent_ids: Sequence[bytes]
    """Each span's parent id, ``b""`` for a span without a parent (empty when ``meta`` is set)."""
    meta: bytes | None = None
    """Staged by the C extension: 32 bytes a span (ids, own cost, flags) instead of the id lists."""


@dataclass(slots=True)
class _Trace:
    """The buffered spans of one trace."""

    trace_id: bytes
    """The trace id."""
    chunks: list[_Chunk] = field(default_factory=list)
    """Its spans, in the order they arrived."""
    spans: int = 0
    """How many spans ``chunks`` hold."""
    first_seen: float = 0.0
    """When its first span arrived (the window's clock)."""
    deadline: float | None = None
    """``now + linger`` once the root span arrived; until then the trace waits for max_wait."""
    late: bool = False
    """The trace already went out once: these spans came after their tree."""


class _Staged(NamedTuple):
    """An incoming request split by trace, before it enters the window."""

    traces: dict[bytes, list[_Chunk]]
    roots: set[bytes]
    spans: int


_TRACE_ID: Final = operator.attrgetter("trace_id")
_SPAN_ID: Final = operator.attrgetter("span_id")
_PARENT_ID: Final = operator.attrgetter("parent_span_id")


def stage_request(request: ExportTraceServiceRequest, raw: bytes | None = None) -> _Staged:
    """Split ``request`` by trace id, keeping each span's resource and scope, and its bytes.

    ``raw`` is ``request`` serialized as it arrived (serialized here when not given): each
    span's bytes are taken from it as they are, so a span the rollup leaves alone is forwarded
    without being encoded again. Behind a gateway that routes by trace id a ``ScopeSpans``
    holds the spans of one trace, and stays one chunk.
    """
    if raw is None:
        raw = request.SerializeToString()
    if _NATIVE is not None:
        staged = _stage_native(raw)
        if staged is not None:
            return staged
    span_data = _span_data(request, raw)
    traces: dict[bytes, list[_Chunk]] = {}
    roots: set[bytes] = set()
    groups: dict[bytes, _Group] = {}
    count = 0
    for rs, rs_data in zip(request.resource_spans, span_data, strict=True):
        resource = rs.resource.SerializeToString(deterministic=True)
        resource_key = resource + b"\x00" + rs.schema_url.encode()
        for ss, data in zip(rs.scope_spans, rs_data, strict=True):
            if not data:
                continue
            scope = ss.scope.SerializeToString(deterministic=True)
            key = b"%s\x01%s\x00%s" % (resource_key, scope, ss.schema_url.encode())
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(key, resource_key, resource, rs.schema_url, scope, ss.schema_url)
            spans = ss.spans[:]  # one Python object per span for the three reads below
            trace_ids = list(map(_TRACE_ID, spans))
            span_ids = list(map(_SPAN_ID, spans))
            parent_ids = list(map(_PARENT_ID, spans))
            count += len(data)
            first = trace_ids[0]
            if trace_ids.count(first) == len(trace_ids):
                parts = [(first, _Chunk(group, data, span_ids, parent_ids))]
            else:
                parts = _split_by_trace(group, trace_ids, data, span_ids, parent_ids)
            for trace_id, chunk in parts:
                chunks = traces.get(trace_id)
                if chunks is None:
                    traces[trace_id] = [chunk]
                else:
                    chunks.append(chunk)
                if b"" in chunk.parent_ids:
                    roots.add(trace_id)
    return _Staged(traces, roots, count)


def _stage_native(raw: bytes) -> _Staged | None:
    """``stage_request`` by the C extension; ``None`` when it leaves the request to the Python path.

    The extension splits the request in one pass and reads each span's ids and cost attributes
    into a packed record; it declines (``None`` or ``ValueError``) anything it does not read
    exactly as the protobuf runtime does, and the caller stages that request in Python.
    """
    assert _NATIVE is not None
    try:
        parsed = _NATIVE.stage(raw)
        if parsed is None:
            return None
        raw_groups, parts = parsed
        groups = [_GROUPS.get(key) or _native_group(key) for key in raw_groups]
    except (ValueError, DecodeError):
        return None
    traces: dict[bytes, list[_Chunk]] = {}
    roots: set[bytes] = set()
    count = 0
    for trace_id, group, data, meta, root in parts:
        chunk = _Chunk(groups[group], data, (), (), meta)
        count += len(data)
        chunks = traces.get(trace_id)
        if chunks is None:
            traces[trace_id] = [chunk]
        else:
            chunks.append(chunk)
        if root:
            roots.add(trace_id)
    return _Staged(traces, roots, count)


#: ``_Group``s by their resource, scope and schema URLs as they arrived (``_native_group``).
_GROUPS: dict[tuple[bytes, bytes, bytes, bytes], _Group] = {}


def _native_group(key: tuple[bytes, bytes, bytes, bytes]) -> _Group:
    """The ``_Group`` of a resource and scope as they arrived, serialized as ``stage_request`` does."""
    raw_resource, resource_schema, raw_scope, scope_schema = key
    resource = Resource.FromString(raw_resource).SerializeToString(deterministic=True)
    scope = InstrumentationScope.FromString(raw_scope).SerializeToString(deterministic=True)
    resource_key = resource + b"\x00" + resource_schema
    group = _Group(
        b"%s\x01%s\x00%s" % (resource_key, scope, scope_schema),
        resource_key,
        resource,
        resource_schema.decode(),
        scope,
        scope_schema.decode(),
    )
    if len(_GROUPS) >= _CACHE_LIMIT:
        _GROUPS.clear()
    _GROUPS[key] = group
    return group


def _chunk_ids(chunk: _Chunk) -> tuple[Sequence[bytes], Sequence[bytes]]:
    """The span ids and parent ids of ``chunk`` (read from its records if the extension staged it)."""
    meta = chunk.meta
    if meta is None:
        return chunk.span_ids, chunk.parent_ids
    size = _META_SIZE
    span_ids = [meta[at : at + 8] for at in range(0, len(meta), size)]
    parent_ids = [
        meta[at + 8 : at + 16] if meta[at + 24] & _META_PARENT else b"" for at in range(0, len(meta), size)
    ]
    return span_ids, parent_ids


#: The C extension's record per span: span id, parent id, own nanos, flags (``_serve_native.c``).
_META_SIZE: Final = 32
_META_PARENT: Final = 1


def _span_data(request: ExportTraceServiceRequest, raw: bytes) -> list[list[list[bytes]]]:
    """Each span of ``request`` serialized, by resource and scope, taken from ``raw`` as it is."""
    try:
        view = _RequestView.FromString(raw)
        data = [[ss.spans[:] for ss in rs.scope_spans] for rs in view.resource_spans]
    except DecodeError:
        data = []
    shape = [[len(ss.spans) for ss in rs.scope_spans] for rs in request.resource_spans]
    if [[len(spans) for spans in rs] for rs in data] != shape:
        # ``raw`` is not ``request`` (cannot happen from the receivers): encode each span.
        data = [
            [[span.SerializeToString() for span in ss.spans] for ss in rs.scope_spans]
            for rs in request.resource_spans
        ]
    return data


def _split_by_trace(
    group: _Group,
    trace_ids: list[bytes],
    data: list[bytes],
    span_ids: list[bytes],
    parent_ids: list[bytes],
) -> list[tuple[bytes, _Chunk]]:
    """One chunk per trace of a ``ScopeSpans`` that mixes traces (no gateway in front)."""
    positions: dict[bytes, list[int]] = {}
    for i, trace_id in enumerate(trace_ids):
        at = positions.get(trace_id)
        if at is None:
            positions[trace_id] = [i]
        else:
            at.append(i)
    return [
        (
            trace_id,
            _Chunk(
                group,
                [data[i] for i in at],
                [span_ids[i] for i in at],
                [parent_ids[i] for i in at],
            ),
        )
        for trace_id, at in positions.items()
    ]


class TraceWindow:
    """Buffers spans by trace until the trace is due; thread-safe, clock injectable.

    A trace is due ``linger`` after its root span arrived, or ``max_wait`` after its first
    span. Deadlines sit in a heap (stale entries skipped), so finding due traces is
    O(log n) per trace, not a scan of the window.
    """

    def __init__(
        self,
        *,
        linger: float,
        max_wait: float,
        remember_flushed: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._linger = linger
        self._max_wait = max_wait
        self._remember = remember_flushed
        self._clock = clock
        self.lock = threading.Condition()
        self._traces: dict[bytes, _Trace] = {}
        self._heap: list[tuple[float, int, bytes]] = []
        self._seq = 0
        self._spans = 0
        self._flushed: OrderedDict[bytes, None] = OrderedDict()
        self._wake_at = -math.inf
        self._wake = False

    @property
    def spans(self) -> int:
        """Spans in the window."""
        return self._spans

    @property
    def traces(self) -> int:
        """Traces in the window."""
        return len(self._traces)

    def add(self, staged: _Staged, *, limit: int) -> None:
        """Put ``staged`` spans in the window; ``BufferFullError`` if that would pass ``limit`` spans."""
        now = self._clock()
        with self.lock:
            if self._spans + staged.spans > limit:
                raise BufferFullError(f"window holds {self._spans} spans, limit {limit}")
            for trace_id, chunks in staged.traces.items():
                count = sum([len(chunk.data) for chunk in chunks])
                trace = self._traces.get(trace_id)
                if trace is None:
                    late = trace_id in self._flushed
                    # A late trace has no root to wait for: its spans go out after linger. A
                    # trace whose root came with its first spans needs one heap entry, not two.
                    deadline = now + self._linger if late or trace_id in staged.roots else None
                    trace = self._traces[trace_id] = _Trace(trace_id, chunks, count, now, deadline, late)
                    self._push(self._due(trace), trace_id)
                    continue
                trace.chunks.extend(chunks)
                trace.spans += count
                if trace.deadline is None and trace_id in staged.roots:
                    trace.deadline = now + self._linger
                    self._push(trace.deadline, trace_id)
            self._spans += staged.spans
            if self._wake:
                # Only when a trace is due before the flush thread would wake anyway: waking it
                # for every request cost a context switch each (and the GIL handed over twice).
                self._wake = False
                self._wake_at = -math.inf
                self.lock.notify()

    def wait_due(self, *, slack: float = 0.0, longest: float = 0.5) -> list[tuple[_Trace, str]]:
        """The traces due by now (+ ``slack``); if none, first wait until one may be due.

        Waits at most ``longest`` seconds, less when a trace is due sooner; ``add`` wakes the
        waiter only for a trace due before that. Returns what is due (maybe nothing) after the wait.
        """
        with self.lock:
            ready, wait = self.take_due(slack=slack)
            if ready:
                return ready
            timeout = longest if wait is None else min(wait, longest)
            self._wake_at = self._clock() + timeout
            try:
                self.lock.wait(timeout=timeout)
            finally:
                self._wake_at = -math.inf
                self._wake = False
            return self.take_due(slack=slack)[0]

    def _push(self, due: float, trace_id: bytes) -> None:
        if due < self._wake_at:
            self._wake = True
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, trace_id))

    def _due(self, trace: _Trace) -> float:
        due = trace.first_seen + self._max_wait
        return due if trace.deadline is None else min(due, trace.deadline)

    def take_due(self, *, slack: float = 0.0) -> tuple[list[tuple[_Trace, str]], float | None]:
        """Remove the traces due by now (+ ``slack``) with their flush reason; else seconds to the next."""
        now = self._clock()
        ready: list[tuple[_Trace, str]] = []
        with self.lock:
            heap = self._heap
            while heap:
                due, _seq, trace_id = heap[0]
                trace = self._traces.get(trace_id)
                if trace is None or self._due(trace) != due:
                    heapq.heappop(heap)  # stale: flushed already, or its deadline moved
                    continue
                if due > now + slack:
                    return ready, due - now
                heapq.heappop(heap)
                del self._traces[trace_id]
                self._spans -= trace.spans
                reason = "late" if trace.late else ("root" if trace.deadline is not None else "max_wait")
                ready.append((trace, reason))
                self._remember_flushed(trace_id)
        return ready, None

    def take_all(self) -> list[tuple[_Trace, str]]:
        """Remove every trace (shutdown)."""
        with self.lock:
            ready = [(t, "late" if t.late else "shutdown") for t in self._traces.values()]
            for trace in self._traces.values():
                self._remember_flushed(trace.trace_id)
            self._traces.clear()
            self._heap.clear()
            self._spans = 0
        return ready

    def _remember_flushed(self, trace_id: bytes) -> None:
        if not self._remember:
            return
        self._flushed[trace_id] = None
        self._flushed.move_to_end(trace_id)
        if len(self._flushed) > self._remember:
            self._flushed.popitem(last=False)


# --- rollup on serialized spans --------------------------------------------------------------


def _view_classes() -> dict[str, Any]:
    """Message classes that read OTLP messages partly as raw bytes.

    Each declares some fields of the real OTLP message, sub-messages as ``bytes``: parsing a
    request with ``RequestView`` hands out every span's bytes as they arrived, without
    building a Python object per span (a span the rollup leaves alone is forwarded as it came);
    ``SpanAttributesView`` hands out a span's attributes as serialized ``KeyValue``s and, with
    some deleted, writes the span back with every other field as it was.
    """
    proto = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="otel_costs/serve_views.proto", package="otel_costs.serve_views", syntax="proto2"
    )
    layout: dict[str, list[tuple[str, int, str | None, bool]]] = {
        # ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
        "RequestView": [("resource_spans", 1, "ResourceSpansView", True)],
        # ResourceSpans { repeated ScopeSpans scope_spans = 2; }
        "ResourceSpansView": [("scope_spans", 2, "ScopeSpansView", True)],
        # ScopeSpans { repeated Span spans = 2; }
        "ScopeSpansView": [("spans", 2, None, True)],
        # Span { repeated KeyValue attributes = 9; }
        "SpanAttributesView": [("attributes", 9, None, True)],
        # The same field as one message: the KeyValues merge into one, their keys add up.
        "SpanKeysView": [("attributes", 9, "KeysView", False)],
        # KeyValue { string key = 1; }
        "KeysView": [("key", 1, None, True)],
    }
    for name, fields in layout.items():
        message = file.message_type.add(name=name)
        for field_name, number, type_name, repeated in fields:
            label = proto.LABEL_REPEATED if repeated else proto.LABEL_OPTIONAL
            entry = message.field.add(name=field_name, number=number, label=label)
            if type_name is None:
                entry.type = proto.TYPE_BYTES
            else:
                entry.type = proto.TYPE_MESSAGE
                entry.type_name = f".otel_costs.serve_views.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"otel_costs.serve_views.{name}"))
        for name in layout
    }


_VIEWS: Final = _view_classes()
_RequestView: Final = _VIEWS["RequestView"]
_SpanAttributesView: Final = _VIEWS["SpanAttributesView"]
_SpanKeysView: Final = _VIEWS["SpanKeysView"]


def rollup_trace(
    chunks: Sequence[_Chunk], *, partial_reason: str | None = None
) -> list[tuple[_Group, list[bytes]]]:
    """Roll up the spans of one trace; returns each chunk's spans serialized with trace-scope figures.

    Rollup attributes an earlier rollup wrote (``cost.children*``, ``cost.total*``,
    ``cost.rollup.*``) are removed and the new ones appended; ``cost.direct*`` stays.
    ``partial_reason`` (``"late"``) flags every span ``cost.rollup.partial``. Spans that
    carry no cost attribute and get none are returned as they arrived.

    The new attributes are appended to the span's serialized bytes (a repeated field may
    continue anywhere in a message), which spares a protobuf copy per span: the hot path.
    The figures are those of ``rollup`` and ``rollup_attributes`` (the same engine as the
    in-process exporter); a trace of distinct span ids without parent loops, the usual case,
    is summed by walking up from its billable spans only (``_sparse_figures``).
    """
    if _NATIVE is not None:
        metas = [chunk.meta for chunk in chunks]
        if None not in metas:
            late = None if partial_reason is None else _late_entries(partial_reason)
            rolled = _NATIVE.rollup([chunk.data for chunk in chunks], metas, late)
            if rolled is not None:
                return list(zip([chunk.group for chunk in chunks], rolled, strict=True))
    ids = [_chunk_ids(chunk) for chunk in chunks]
    span_ids = list(chain.from_iterable([span_ids for span_ids, _parent_ids in ids]))
    parent_ids = list(chain.from_iterable([parent_ids for _span_ids, parent_ids in ids]))
    data: list[bytes] | None = None
    costs: dict[int, _Cost] = {}
    currencies: set[int] = set()
    offset = 0
    for chunk in chunks:
        spans = chunk.data
        if b"cost." in b"".join(spans):  # C-level test first: most spans carry no cost attribute
            for k, span in enumerate(spans):
                if b"cost." not in span:
                    continue
                i = offset + k
                read, values, has_currency = _read_cost_attributes(span)
                if read is not span:
                    if data is None:
                        data = list(chain.from_iterable([chunk.data for chunk in chunks]))
                    data[i] = read
                if values:
                    cost = own_cost(values)
                    if cost[0] or cost[1] or cost[2]:
                        costs[i] = cost
                if has_currency:
                    currencies.add(i)
        offset += len(spans)
    if data is None:
        data = list(chain.from_iterable([chunk.data for chunk in chunks]))
        unchanged = True
    else:
        unchanged = False
    extras = _sparse_figures(span_ids, parent_ids, costs, currencies, data, partial_reason)
    if extras is None:
        extras = _general_figures(span_ids, parent_ids, costs, currencies, data, partial_reason)
    if unchanged and not extras:
        return [(chunk.group, chunk.data) for chunk in chunks]
    for i, extra in extras.items():
        data[i] += extra
    out: list[tuple[_Group, list[bytes]]] = []
    start = 0
    for chunk in chunks:
        end = start + len(chunk.data)
        out.append((chunk.group, data[start:end]))
        start = end
    return out


#: ``own_cost``: a span's direct nano-USD, whether it is billable, whether it is unpriced.
_Cost = tuple[int, bool, bool]


def _sparse_figures(
    span_ids: list[bytes],
    parent_ids: list[bytes],
    costs: Mapping[int, _Cost],
    currencies: set[int],
    data: list[bytes],
    partial_reason: str | None,
) -> dict[int, bytes] | None:
    """The serialized rollup attributes per span index, as ``_general_figures`` gives them.

    Only for traces whose span ids are distinct and non-empty and whose parent links do not
    loop (``None`` otherwise): then a span's figures are the sums over the billable spans
    below it, found by walking up from each billable span, and every other span gets none
    unless it is a root whose parent is missing. Costs O(billable spans x depth) instead of
    a pass over every span; a deep trace with many billable spans (past ``4n + 64`` steps)
    goes to ``_general_figures``, which is O(n).
    """
    n = len(span_ids)
    index = dict(zip(span_ids, range(n), strict=True))
    if len(index) != n or b"" in index:
        return None  # repeated or empty span ids: rollup() flags them
    parent = list(map(index.get, parent_ids, repeat(n)))  # n: no parent among the trace's spans
    if not _acyclic(parent, n):
        return None
    children: dict[int, int] = {}
    unpriced: dict[int, int] = {}
    billable: set[int] = set()
    budget = 4 * n + 64
    for i, (direct, is_billable, is_unpriced) in costs.items():
        if is_billable:
            billable.add(i)
        if is_unpriced:
            unpriced[i] = unpriced.get(i, 0) + 1
        j = parent[i]
        while j != n:
            if direct:
                children[j] = children.get(j, 0) + direct
            if is_billable:
                billable.add(j)
            if is_unpriced:
                unpriced[j] = unpriced.get(j, 0) + 1
            j = parent[j]
            budget -= 1
            if budget < 0:
                return None
    kinds: dict[int, bytes] = {}
    if parent.count(n) != parent_ids.count(b""):  # some parent is missing: flag those roots
        for i in range(n):
            if parent[i] == n and parent_ids[i]:
                kinds[i] = _REMOTE_PARENT_ENTRY if _remote_parent(data[i]) else _ORPHAN_ENTRY
    if partial_reason is None:
        late = b""
        figured: Iterable[int] = billable.union(kinds)
    else:
        late = _late_entries(partial_reason)
        figured = range(n)
    extras: dict[int, bytes] = {}
    for i in figured:
        extra = late
        kind = kinds.get(i)
        if kind is not None:
            extra = kind + extra
        if i in billable:
            cost = costs.get(i)
            sub = children.get(i, 0)
            total = sub if cost is None else cost[0] + sub
            extra = _figure_entries(sub, total, unpriced.get(i, 0), currency=i not in currencies) + extra
        extras[i] = extra
    return extras


def _late_entries(partial_reason: str) -> bytes:
    """The serialized ``cost.rollup.partial`` flag and reason every span of a late trace gets."""
    return encode_attributes(
        {conv.COST_ROLLUP_PARTIAL: True, conv.COST_ROLLUP_PARTIAL_REASON: partial_reason}
    )


def _acyclic(parent: list[int], n: int) -> bool:
    """No chain of parents loops: following ``parent`` from any span reaches ``n`` (no parent).

    Squares the parent map until it stops changing, at most ``bit_length(n)`` times (then it
    jumps further than any chain is long), in C: ``bytes.translate`` for up to 255 spans,
    ``itemgetter`` beyond. A shallow tree settles after a few squarings.
    """
    steps = n.bit_length()
    if n < 256:
        table = bytes(parent) + bytes((n,)) * (256 - n)
        for _ in range(steps):
            squared = table.translate(table)
            if squared == table:
                break
            table = squared
        return table.count(n) == 256
    jump = [*parent, n]
    for _ in range(steps):
        squared_jump = list(operator.itemgetter(*jump)(jump))
        if squared_jump == jump:
            break
        jump = squared_jump
    return jump.count(n) == n + 1


def _general_figures(
    span_ids: list[bytes],
    parent_ids: list[bytes],
    costs: Mapping[int, _Cost],
    currencies: set[int],
    data: list[bytes],
    partial_reason: str | None,
) -> dict[int, bytes]:
    """The serialized rollup attributes per span index: ``rollup_columns`` over every span, any trace."""
    n = len(span_ids)
    known = set(span_ids)
    # rollup() reads remote_parent only where the parent is not among the trace's spans.
    remote = [bool(p) and p not in known and _remote_parent(data[i]) for i, p in enumerate(parent_ids)]
    direct = [0] * n
    billable = [False] * n
    unpriced = [0] * n
    for i, (nanos, is_billable, is_unpriced) in costs.items():
        direct[i] = nanos
        billable[i] = is_billable
        unpriced[i] = int(is_unpriced)
    parents: list[bytes | None] = [parent_id or None for parent_id in parent_ids]
    columns = rollup_columns(span_ids, parents, remote, direct, billable, unpriced)
    extras: dict[int, bytes] = {}
    for i, figures in enumerate(zip(*columns, strict=True)):
        result = NodeRollup(*figures)
        node = CostNode(span_ids[i], parents[i], direct[i], billable[i], bool(unpriced[i]), remote[i])
        extra = rollup_attributes(node, result, scope=conv.SCOPE_TRACE)
        if partial_reason is not None:
            extra[conv.COST_ROLLUP_PARTIAL] = True
            extra[conv.COST_ROLLUP_PARTIAL_REASON] = partial_reason
        if extra:
            if i in currencies:
                extra.pop(conv.COST_CURRENCY, None)  # the pricing already wrote it (always USD)
            extras[i] = encode_attributes(extra)
    return extras


def _remote_parent(span: bytes) -> bool:
    """The span's parent lives in another process (``Span.flags``)."""
    flags = Span.FromString(span).flags
    return bool(flags & _HAS_IS_REMOTE and flags & _IS_REMOTE)


def _read_cost_attributes(span: bytes) -> tuple[bytes, dict[str, object] | None, bool]:
    """Read a serialized span's cost attributes and drop the figures an earlier rollup wrote.

    Returns the span's bytes (re-encoded only if something was dropped), the attributes
    ``own_cost`` reads (``None``: none of them) and whether ``cost.currency`` is set.

    Two views parse the span in C: one hands out the attributes as serialized ``KeyValue``s,
    the other every attribute's key, in order (its ``KeyValue``s merge into one message whose
    repeated ``key`` collects them). When each ``KeyValue`` starts with its key and the counts
    agree, key ``i`` is attribute ``i``'s; otherwise ``_read_cost_entries`` reads entry by entry.
    """
    view = _SpanAttributesView.FromString(span)
    attributes = view.attributes
    entries = attributes[:]
    keys = _SpanKeysView.FromString(span).attributes.key[:]
    if len(keys) != len(entries) or not all(map(bytes.startswith, entries, repeat(b"\x0a"))):
        return _read_cost_entries(span)
    present = _COST_KEYS.intersection(keys)
    if not present:
        return span, None, False
    values: dict[str, object] | None = None
    for key in _READ_KEYS_SERIALIZED.intersection(present):
        if values is None:
            values = {}
        # A key set twice: the last one counts, as in a dict of the attributes.
        at = keys.index(key) if keys.count(key) == 1 else len(keys) - 1 - keys[::-1].index(key)
        values[_READ_KEY_NAMES[key]] = _key_first_value(entries[at])
    if not _DROP_KEYS.isdisjoint(present):
        for i in reversed(list(compress(range(len(keys)), map(_DROP_KEYS.__contains__, keys)))):
            del attributes[i]
        # The other fields are unknown to the view and written back as they were.
        span = view.SerializeToString()
    return span, values, _CURRENCY_KEY in present


def _key_first_value(kv: bytes) -> object:
    """The value of a serialized ``KeyValue`` that starts with its key (as ``_any_value``)."""
    end = kv[1] + 2
    if kv[1] < 0x80 and len(kv) > end + 1 and kv[end] == 0x12 and kv[end + 1] == len(kv) - end - 2 < 0x80:
        return _any_value(kv[end + 2 :])  # key, then the value, nothing else
    return _any_value(_key_value(kv)[1])


def _read_cost_entries(span: bytes) -> tuple[bytes, dict[str, object] | None, bool]:
    """``_read_cost_attributes`` for any encoding: splits each ``KeyValue`` holding ``cost.``."""
    view = _SpanAttributesView.FromString(span)
    attributes = view.attributes
    values: dict[str, object] | None = None
    has_currency = False
    drop: list[int] | None = None
    for i, kv in enumerate(attributes[:]):
        if b"cost." not in kv:  # its key cannot start with "cost."
            continue
        key, value = _key_value(kv)
        if key in _DROP_KEYS:
            if drop is None:
                drop = [i]
            else:
                drop.append(i)
            continue
        name = _READ_KEY_NAMES.get(key)
        if name is not None:
            if values is None:
                values = {}
            values[name] = _any_value(value)
        elif key == _CURRENCY_KEY:
            has_currency = True
    if drop is not None:
        for i in reversed(drop):
            del attributes[i]
        # The other fields are unknown to the view and written back as they were.
        span = view.SerializeToString()
    return span, values, has_currency


#: Serialized keys of the attributes an earlier rollup wrote, of the ones ``own_cost`` reads
#: (with their names), and of ``cost.currency``.
_DROP_KEYS: Final = frozenset(key.encode() for key in _REPLACED_KEYS)
_READ_KEY_NAMES: Final = {key.encode(): key for key in _READ_KEYS}
_CURRENCY_KEY: Final = conv.COST_CURRENCY.encode()
_READ_KEYS_SERIALIZED: Final = frozenset(_READ_KEY_NAMES)
_COST_KEYS: Final = _DROP_KEYS | _READ_KEYS_SERIALIZED | {_CURRENCY_KEY}


def _key_value(kv: bytes) -> tuple[bytes, bytes | AnyValue]:
    """The key of a serialized ``KeyValue`` (UTF-8) and its value, serialized or parsed.

    The usual encoding (the key, then the value, each once) is split by hand; any other is
    parsed by the protobuf runtime, and the value comes back parsed.
    """
    size = len(kv)
    if size > 1 and kv[0] == 0x0A and kv[1] < 0x80:
        end = kv[1] + 2
        if end == size:
            return kv[2:end], b""
        if end < size and kv[end] == 0x12:
            length, start = _read_varint(kv, end + 1)
            if start + length == size:
                return kv[2:end], kv[start:]
    parsed = KeyValue.FromString(kv)
    return parsed.key.encode(), parsed.value


def _any_value(value: bytes | AnyValue) -> object:
    """The Python value of an ``AnyValue`` (as ``any_value``), serialized or parsed.

    Strings, ints, doubles and bools in their usual encoding are read by hand.
    """
    if not isinstance(value, bytes):
        return any_value(value)
    size = len(value)
    if not size:
        return None
    tag = value[0]
    if tag == 0x0A and size > 1 and value[1] < 0x80 and value[1] + 2 == size:  # string_value < 128 B
        return value[2:].decode()
    if tag == 0x18:  # int_value: int64 as a varint
        number, end = _read_varint(value, 1)
        if end == size and 0 <= number < 1 << 64:
            return number - (1 << 64) if number >= 1 << 63 else number
    elif tag == 0x21 and size == 9:  # double_value
        double: float = _DOUBLE.unpack_from(value, 1)[0]
        return double
    elif tag == 0x10 and size == 2 and value[1] < 2:  # bool_value
        return value[1] == 1
    return any_value(AnyValue.FromString(value))


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    """The varint at ``data[at]`` and where it ends; ``(-1, len(data))`` if it is cut short."""
    number = 0
    shift = 0
    for end in range(at, len(data)):
        byte = data[end]
        number |= (byte & 0x7F) << shift
        if byte < 0x80:
            return number, end + 1
        shift += 7
    return -1, len(data)


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL_VARINTS[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL_VARINTS: Final = [bytes((i,)) for i in range(0x80)]
_DOUBLE: Final = struct.Struct("<d")
#: ``Span.attributes`` is field 9, length-delimited: tag byte 0x4A.
_ATTRIBUTE_TAG: Final = b"\x4a"
#: Per attribute key: the serialized ``KeyValue.key`` field plus ``KeyValue.value``'s tag.
_KEY_PREFIX: dict[str, bytes] = {}
#: Per key: the whole entry up to the 8 bytes of a double value (its length is fixed).
_DOUBLE_PREFIX: dict[str, bytes] = {}
#: Whole entries of (key, str or bool value): the scope, currency and flag attributes repeat.
_ENTRY: dict[tuple[str, object], bytes] = {}
_CACHE_LIMIT: Final = 1024


def _key_prefix(key: str) -> bytes:
    prefix = _KEY_PREFIX.get(key)
    if prefix is None:
        raw = key.encode()
        prefix = b"\x0a" + _varint(len(raw)) + raw + b"\x12"
        if len(_KEY_PREFIX) < _CACHE_LIMIT:
            _KEY_PREFIX[key] = prefix
    return prefix


def _entry(key: str, any_value: bytes) -> bytes:
    kv = _key_prefix(key) + _varint(len(any_value)) + any_value
    return _ATTRIBUTE_TAG + _varint(len(kv)) + kv


def encode_attributes(attributes: Mapping[str, object]) -> bytes:
    """``attributes`` as serialized ``Span.attributes`` entries (bool, int, float, str values).

    Appended to a serialized ``Span`` they add those attributes; used for the rollup figures.
    Raises ``ValueError`` for an int outside int64 (a sum of absurd costs): the worker then
    forwards that trace as it arrived.
    """
    parts: list[bytes] = []
    for key, value in attributes.items():
        kind = type(value)
        if kind is float:
            prefix = _DOUBLE_PREFIX.get(key)
            if prefix is None:
                prefix = _entry(key, b"\x21" + bytes(8))[:-8]
                if len(_DOUBLE_PREFIX) < _CACHE_LIMIT:
                    _DOUBLE_PREFIX[key] = prefix
            parts.append(prefix + _DOUBLE.pack(value))
        elif kind is int:
            number: int = value  # type: ignore[assignment]
            # int64 two's complement: negative numbers take ten varint bytes.
            parts.append(_int_entry(key, number))
        else:
            entry = _ENTRY.get((key, value))
            if entry is None:
                if kind is bool:
                    entry = _entry(key, b"\x10\x01" if value else b"\x10\x00")
                else:
                    raw = str(value).encode()
                    entry = _entry(key, b"\x0a" + _varint(len(raw)) + raw)
                if len(_ENTRY) < _CACHE_LIMIT:
                    _ENTRY[(key, value)] = entry
            parts.append(entry)
    return b"".join(parts)


def _figure_entries(children: int, total: int, unpriced: int, *, currency: bool) -> bytes:
    """``encode_attributes(rollup_attributes(...))`` of a span with a billable subtree, at trace scope.

    The same attributes in the same order (``cost.currency`` left out where the pricing wrote
    it), built from prepared entries.
    """
    parts = [
        _FIGURE_DOUBLES.pack(_CHILDREN_PREFIX, nanos_to_usd(children), _TOTAL_PREFIX, nanos_to_usd(total)),
        _int_entry(conv.COST_CHILDREN_NANOS, children),
        _int_entry(conv.COST_TOTAL_NANOS, total),
        _CURRENCY_AND_SCOPE_ENTRIES if currency else _SCOPE_ENTRY,
    ]
    if unpriced:
        parts.append(_int_entry(conv.COST_ROLLUP_UNPRICED, unpriced))
    return b"".join(parts)


def _int_entry(key: str, number: int) -> bytes:
    if not -(1 << 63) <= number < 1 << 63:
        # Written as is it would corrupt the whole forwarded batch (a varint past 10 bytes).
        raise ValueError(f"attribute {key} = {number} does not fit an int64")
    # int64 two's complement: negative numbers take ten varint bytes.
    value = _varint(number if number >= 0 else number + (1 << 64))
    headers = _INT_HEADERS.get(key)
    if headers is None:
        return _entry(key, b"\x18" + value)
    return headers[len(value)] + value


def _int_headers(key: str) -> list[bytes]:
    """Per varint length (1 to 10 bytes): the entry of ``key`` with an int value, up to the varint."""
    return [b""] + [_entry(key, b"\x18" + bytes(size))[:-size] for size in range(1, 11)]


#: Entry headers of the int figures, by the length of the value's varint.
_INT_HEADERS: Final = {
    key: _int_headers(key)
    for key in (conv.COST_CHILDREN_NANOS, conv.COST_TOTAL_NANOS, conv.COST_ROLLUP_UNPRICED)
}
_CHILDREN_PREFIX: Final = encode_attributes({conv.COST_CHILDREN: 0.0})[:-8]
_TOTAL_PREFIX: Final = encode_attributes({conv.COST_TOTAL: 0.0})[:-8]
#: ``cost.children`` and ``cost.total`` (doubles) with their entry headers, in one pack.
_FIGURE_DOUBLES: Final = struct.Struct(f"<{len(_CHILDREN_PREFIX)}sd{len(_TOTAL_PREFIX)}sd")
_SCOPE_ENTRY: Final = encode_attributes({conv.COST_ROLLUP_SCOPE: conv.SCOPE_TRACE})
_CURRENCY_AND_SCOPE_ENTRIES: Final = encode_attributes({conv.COST_CURRENCY: conv.CURRENCY_USD}) + _SCOPE_ENTRY
_REMOTE_PARENT_ENTRY: Final = encode_attributes({conv.COST_ROLLUP_REMOTE_PARENT: True})
_ORPHAN_ENTRY: Final = encode_attributes({conv.COST_ROLLUP_ORPHAN: True})


def _load_native() -> ModuleType | None:
    """The C extension, configured with the serialized keys and entries; ``None`` without it.

    Optional: built when a C compiler is at hand (``setup.py``). ``OTEL_COSTS_SERVE_NATIVE=0``
    turns it off (the pure-Python path is the reference and the fallback).
    """
    if os.environ.get("OTEL_COSTS_SERVE_NATIVE", "1").strip() == "0":
        return None
    try:
        from otel_costs import _serve_native
    except ImportError:
        return None
    billable = tuple(sorted(status.encode() for status in _BILLABLE))
    incomplete = tuple(sorted(status.encode() for status in _INCOMPLETE))
    _serve_native.configure(
        tuple(sorted(_DROP_KEYS)),
        billable,
        incomplete,
        conv.COST_STATUS.encode(),
        conv.COST_DIRECT_NANOS.encode(),
        conv.COST_DIRECT.encode(),
        _CURRENCY_KEY,
        _CHILDREN_PREFIX,
        _TOTAL_PREFIX,
        conv.COST_CHILDREN_NANOS.encode(),
        conv.COST_TOTAL_NANOS.encode(),
        conv.COST_ROLLUP_UNPRICED.encode(),
        _SCOPE_ENTRY,
        _CURRENCY_AND_SCOPE_ENTRIES,
        _REMOTE_PARENT_ENTRY,
        _ORPHAN_ENTRY,
        _HAS_IS_REMOTE,
        _IS_REMOTE,
    )
    return _serve_native


_NATIVE: ModuleType | None = _load_native()


def encode_batches(
    chunks: Iterable[tuple[_Group, Sequence[bytes]]], *, batch_spans: int, worker_id: str | None = None
) -> list[tuple[bytes, int]]:
    """Serialized ``ExportTraceServiceRequest``s of at most ``batch_spans`` spans, and their span counts.

    ``chunks`` are serialized ``Span``s with the group they arrived in. Spans that came with
    the same resource and scope share one ``ResourceSpans`` / ``ScopeSpans`` again, whichever
    request they arrived in.
    """
    out: list[tuple[bytes, int]] = []
    by_scope: dict[bytes, tuple[_Group, list[Sequence[bytes]]]] = {}
    count = 0
    for group, spans in chunks:
        size = len(spans)
        start = 0
        while start < size:
            take = min(size - start, batch_spans - count)
            part = spans if take == size else spans[start : start + take]
            slot = by_scope.get(group.key)
            if slot is None:
                by_scope[group.key] = (group, [part])
            else:
                slot[1].append(part)
            count += take
            start += take
            if count >= batch_spans:
                out.append((_encode(by_scope, worker_id), count))
                by_scope = {}
                count = 0
    if count:
        out.append((_encode(by_scope, worker_id), count))
    return out


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


#: Varints of 0 to 8191: the lengths of most spans and attributes.
_VARINTS: Final = [_varint(size) for size in range(8192)]


def _frame(tag: bytes, items: Sequence[bytes]) -> bytes:
    """``items`` as serialized entries of a repeated length-delimited field, without a Python loop."""
    try:
        lengths = list(map(_VARINTS.__getitem__, map(len, items)))
    except IndexError:  # an item of 8 KiB or more
        lengths = [_varint(len(item)) for item in items]
    parts = [tag] * (3 * len(items))
    parts[1::3] = lengths
    parts[2::3] = items
    return b"".join(parts)


def _encode(by_scope: dict[bytes, tuple[_Group, list[Sequence[bytes]]]], worker_id: str | None) -> bytes:
    # ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
    # ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
    # ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
    resources: dict[bytes, list[tuple[_Group, list[Sequence[bytes]]]]] = {}
    for group, pieces in by_scope.values():
        scopes = resources.get(group.resource_key)
        if scopes is None:
            resources[group.resource_key] = [(group, pieces)]
        else:
            scopes.append((group, pieces))
    if _NATIVE is not None:
        # One allocation for the whole request: copying a batch of megabytes once per level of
        # nesting (and the page faults of each new buffer) cost more than the rest of a flush.
        encoded: bytes = _NATIVE.encode_request(
            [
                (
                    _resource_bytes(scopes[0][0], worker_id),
                    [
                        (
                            group.scope,
                            [piece if type(piece) is list else list(piece) for piece in pieces],
                            group.scope_schema_url.encode(),
                        )
                        for group, pieces in scopes
                    ],
                    scopes[0][0].resource_schema_url.encode(),
                )
                for scopes in resources.values()
            ]
        )
        return encoded
    request = bytearray()
    for scopes in resources.values():
        first = scopes[0][0]
        parts = [_field(b"\x0a", _resource_bytes(first, worker_id))]
        for group, pieces in scopes:
            spans = pieces[0] if len(pieces) == 1 else list(chain.from_iterable(pieces))
            scope_spans = _field(b"\x0a", group.scope) + _frame(b"\x12", spans)
            if group.scope_schema_url:
                scope_spans += _field(b"\x1a", group.scope_schema_url.encode())
            parts.append(_field(b"\x12", scope_spans))
        if first.resource_schema_url:
            parts.append(_field(b"\x1a", first.resource_schema_url.encode()))
        request += _field(b"\x0a", b"".join(parts))
    return bytes(request)


def _resource_bytes(group: _Group, worker_id: str | None) -> bytes:
    return group.resource if worker_id is None else _tag_worker(group.resource, worker_id)


def _tag_worker(serialized: bytes, worker_id: str) -> bytes:
    """The serialized ``Resource`` with ``otel_costs.worker`` set to ``worker_id``."""
    resource = Resource.FromString(serialized)
    for kv in resource.attributes:
        if kv.key == WORKER_ATTRIBUTE:  # a chain of workers: the last one names itself
            kv.value.string_value = worker_id
            return resource.SerializeToString()
    kv = resource.attributes.add()
    kv.key = WORKER_ATTRIBUTE
    kv.value.string_value = worker_id
    return resource.SerializeToString()


# --- forwarding --------------------------------------------------------------------------------


class SendOutcome(NamedTuple):
    """What one export call to the next hop came to."""

    ok: bool
    """The next hop accepted the request (maybe partially: see ``rejected_spans``)."""
    retryable: bool
    """A failure the OTLP spec says to retry."""
    retry_after: float | None
    """Seconds the next hop asked us to wait, if it said."""
    message: str
    """The error, for logs."""
    rejected_spans: int = 0
    """Spans the next hop refused in a partial success."""


class _GrpcSender:
    """OTLP/gRPC export of already-serialized requests (no re-encoding on retries)."""

    def __init__(self, config: ForwardConfig) -> None:
        parts = urlsplit(config.endpoint if "://" in config.endpoint else "//" + config.endpoint)
        if not parts.hostname or not parts.port:
            raise ServeConfigError(f"gRPC forward endpoint must be host:port, got {config.endpoint!r}")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        target = f"{host}:{parts.port}"
        insecure = config.insecure if config.insecure is not None else parts.scheme != "https"
        options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        if insecure:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            root = None
            if config.certificate:
                with open(config.certificate, "rb") as fh:
                    root = fh.read()
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root), options=options)
        self._call = self._channel.unary_unary(
            _GRPC_EXPORT, request_serializer=None, response_deserializer=ExportTraceServiceResponse.FromString
        )
        self._timeout = config.timeout
        self._metadata = tuple(config.headers) or None
        self._compression = grpc.Compression.Gzip if config.compression == "gzip" else None

    def send(self, payload: bytes) -> SendOutcome:
        try:
            response = self._call(
                payload, timeout=self._timeout, metadata=self._metadata, compression=self._compression
            )
        except grpc.RpcError as exc:
            code = exc.code()
            retry_after = _grpc_retry_delay(exc)
            retryable = code in _GRPC_RETRYABLE or (
                code == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_after is not None
            )
            return SendOutcome(False, retryable, retry_after, f"gRPC {code.name}: {exc.details()}")
        rejected = response.partial_success.rejected_spans if response.HasField("partial_success") else 0
        return SendOutcome(True, False, None, response.partial_success.error_message, rejected)

    def close(self) -> None:
        self._channel.close()


def _grpc_retry_delay(exc: Any) -> float | None:
    try:
        for key, value in exc.trailing_metadata() or ():
            if key == _STATUS_DETAILS_KEY:
                status = status_pb2.Status.FromString(value)
                for detail in status.details:
                    info = error_details_pb2.RetryInfo()
                    if detail.Unpack(info):
                        return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    except Exception:  # a malformed details blob only loses the hint
        logger.debug("otel_costs: unreadable grpc-status-details-bin", exc_info=True)
    return None


class _HttpSender:
    """OTLP/HTTP protobuf export with one keep-alive connection per forwarding thread."""

    def __init__(self, config: ForwardConfig) -> None:
        parts = urlsplit(config.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServeConfigError(
                f"HTTP forward endpoint must be an http(s):// URL, got {config.endpoint!r}"
            )
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or TRACES_PATH) + (f"?{parts.query}" if parts.query else "")
        self._timeout = config.timeout
        self._context = ssl.create_default_context(cafile=config.certificate) if self._https else None
        self._headers = {"Content-Type": "application/x-protobuf", **dict(config.headers)}
        self._gzip = config.compression == "gzip"
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=self._context
                )
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
        return conn

    def send(self, payload: bytes) -> SendOutcome:
        body = _gzip(payload) if self._gzip else payload
        conn = self._connection()
        try:
            conn.request("POST", self._path, body=body, headers=self._headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self._local.conn = None
            return SendOutcome(False, True, None, f"HTTP send failed: {exc}")
        if 200 <= response.status < 300:
            rejected = 0
            message = ""
            with contextlib.suppress(DecodeError):
                parsed = ExportTraceServiceResponse.FromString(data)
                rejected = parsed.partial_success.rejected_spans
                message = parsed.partial_success.error_message
            return SendOutcome(True, False, None, message, rejected)
        retry_after = _parse_retry_after(response.getheader("Retry-After"))
        text = data[:200].decode("utf-8", "replace")
        return SendOutcome(
            False, response.status in _HTTP_RETRYABLE, retry_after, f"HTTP {response.status}: {text}"
        )

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()


def _gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class Sender(Protocol):
    """What ``Forwarder`` needs from a transport (``send`` must not raise)."""

    def send(self, payload: bytes) -> SendOutcome:
        """Export one serialized ``ExportTraceServiceRequest``."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def make_sender(config: ForwardConfig) -> Sender:
    """The transport for ``config.protocol``."""
    return _GrpcSender(config) if config.protocol == "grpc" else _HttpSender(config)


class Forwarder:
    """A queue of serialized requests and threads that export them, retrying with backoff.

    A batch that keeps failing with retryable errors is retried for ``max_elapsed`` seconds
    (exponential backoff with jitter, or the next hop's Retry-After), then dropped and
    counted. Non-retryable failures are dropped at once. ``queued_spans`` (including the
    batches being retried) counts against the worker's memory bound, so a stuck next hop
    makes the worker refuse new data instead of growing.
    """

    def __init__(
        self,
        config: ForwardConfig,
        metrics: ServeMetrics,
        *,
        sender: Sender | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._sender = sender if sender is not None else make_sender(config)
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: deque[tuple[bytes, int]] = deque()
        self._queued_spans = 0
        self._closing = False
        self._abort = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"otel_costs.serve.forward-{i}", daemon=True)
            for i in range(config.concurrency)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def queued_spans(self) -> int:
        """Spans waiting or being sent."""
        return self._queued_spans

    def put(self, payload: bytes, spans: int) -> None:
        """Queue one serialized request holding ``spans`` spans."""
        with self._cond:
            self._queue.append((payload, spans))
            self._queued_spans += spans
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                payload, spans = self._queue.popleft()
            try:
                self._deliver(payload, spans)
            except Exception:
                logger.exception("otel_costs serve: forwarding %d spans failed unexpectedly", spans)
                self._metrics.inc(SPANS_DROPPED, spans, reason="forward_failed")
            finally:
                with self._cond:
                    self._queued_spans -= spans
                    self._cond.notify_all()

    def _deliver(self, payload: bytes, spans: int) -> None:
        started = self._clock()
        attempt = 0
        while True:
            outcome = self._sender.send(payload)
            if outcome.ok:
                self._metrics.inc(FORWARD_REQUESTS, outcome="ok")
                delivered = spans - max(0, min(outcome.rejected_spans, spans))
                self._metrics.inc(SPANS_FORWARDED, delivered)
                if delivered < spans:
                    logger.warning(
                        "otel_costs serve: next hop rejected %d of %d spans: %s",
                        spans - delivered,
                        spans,
                        outcome.message,
                    )
                    self._metrics.inc(SPANS_DROPPED, spans - delivered, reason="rejected_downstream")
                return
            delay = min(self._config.max_backoff, self._config.initial_backoff * 2**attempt)
            delay = delay * random.uniform(0.8, 1.2)
            if outcome.retry_after is not None:
                delay = max(delay, outcome.retry_after)
            elapsed = self._clock() - started
            if not outcome.retryable or elapsed + delay > self._config.max_elapsed or self._abort.is_set():
                self._metrics.inc(FORWARD_REQUESTS, outcome="failed")
                reason = "forward_failed" if outcome.retryable else "rejected_downstream"
                self._metrics.inc(SPANS_DROPPED, spans, reason=reason)
                logger.error(
                    "otel_costs serve: dropping %d spans after %.1fs: %s", spans, elapsed, outcome.message
                )
                return
            self._metrics.inc(FORWARD_REQUESTS, outcome="retry")
            logger.warning(
                "otel_costs serve: forward failed (%s); retrying %d spans in %.2fs",
                outcome.message,
                spans,
                delay,
            )
            attempt += 1
            if self._abort.wait(delay):
                continue  # aborted: the loop sends once more, then drops on failure

    def close(self, timeout: float) -> bool:
        """Send what is queued for up to ``timeout`` seconds, then stop; ``True`` if all went out."""
        deadline = self._clock() + timeout
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while self._queued_spans and self._clock() < deadline:
                self._cond.wait(timeout=max(0.01, deadline - self._clock()))
            drained = not self._queued_spans
            if not drained:
                dropped = sum(spans for _payload, spans in self._queue)
                self._queue.clear()
                self._queued_spans -= dropped
                if dropped:
                    self._metrics.inc(SPANS_DROPPED, dropped, reason="shutdown")
        self._abort.set()
        for thread in self._threads:
            thread.join(timeout=max(0.1, self._config.timeout + 1))
        with contextlib.suppress(Exception):
            self._sender.close()
        return drained


# --- the worker -------------------------------------------------------------------------------


class ServeWorker:
    """Receives OTLP (gRPC and HTTP), rolls costs up trace-wide, forwards OTLP. Thread-safe.

    ``start()`` binds the ports and returns at once; ``stop()`` refuses new data, flushes
    every trace it holds, forwards for up to ``shutdown_timeout`` seconds and closes.

    Example::

        config = ServeConfig(ForwardConfig.from_env(endpoint="http://127.0.0.1:4317", protocol="grpc"))
        with ServeWorker(config).start() as worker:
            print(worker.grpc_port, worker.http_port)
    """

    def __init__(
        self,
        config: ServeConfig,
        *,
        sender: Sender | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        config.validate()
        self._config = config
        self._clock = clock
        self._window = TraceWindow(
            linger=config.linger,
            max_wait=config.max_wait,
            remember_flushed=config.remember_flushed,
            clock=clock,
        )
        self.metrics = ServeMetrics(
            worker_id=config.worker_id,
            gauges={
                TRACES_BUFFERED: lambda: self._window.traces,
                SPANS_BUFFERED: lambda: self._window.spans,
                SPANS_QUEUED: lambda: self._forwarder.queued_spans + self._flushing,
                SPANS_CAPACITY: lambda: config.max_buffered_spans,
            },
        )
        self._forwarder = Forwarder(config.forward, self.metrics, sender=sender, clock=clock)
        self._flushing = 0
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="otel_costs.serve.flush", daemon=True)
        self._grpc_server: Any = None
        self._http_server: _HttpServer | None = None
        self._http_thread: threading.Thread | None = None
        self.grpc_port: int | None = None
        """The bound OTLP/gRPC port (after ``start``)."""
        self.http_port: int | None = None
        """The bound OTLP/HTTP port (after ``start``)."""

    @property
    def config(self) -> ServeConfig:
        """The worker's settings."""
        return self._config

    @property
    def healthy(self) -> bool:
        """Serving and not stopping."""
        return not self._stopping.is_set()

    def start(self) -> ServeWorker:
        """Bind the receivers and start the flush and forward threads."""
        config = self._config
        try:
            if config.grpc_port is not None:
                self._grpc_server, self.grpc_port = _start_grpc(self, config)
            self._http_server = _HttpServer((config.host, config.http_port), self)
            self.http_port = self._http_server.server_address[1]
        except Exception:
            self._close_receivers()
            self._forwarder.close(0)
            raise
        self._http_thread = threading.Thread(
            target=self._http_server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="otel_costs.serve.http",
            daemon=True,
        )
        self._http_thread.start()
        self._flusher.start()
        logger.info(
            "otel_costs serve: OTLP gRPC on %s:%s, HTTP on %s:%s; forwarding to %s (%s)%s",
            config.host,
            self.grpc_port,
            config.host,
            self.http_port,
            config.forward.endpoint,
            config.forward.protocol,
            "" if config.rollup else " as a pass-through relay",
        )
        return self

    def __enter__(self) -> ServeWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- receiving ----------------------------------------------------------------------
    def accept(self, request: ExportTraceServiceRequest, protocol: str, raw: bytes | None = None) -> int:
        """Take the spans of ``request``; raises ``BufferFullError``, ``ShuttingDownError`` or
        ``RequestTooLargeError`` (the receivers turn them into OTLP answers). Returns the span count.

        ``raw`` is ``request`` serialized as it arrived, if the receiver has it: spans the
        rollup leaves alone are forwarded from it as they are.
        """
        if self._stopping.is_set():
            self.metrics.inc(REQUESTS_REJECTED, reason="shutting_down")
            raise ShuttingDownError("otel-costs serve is shutting down; retry")
        limit = self._config.max_buffered_spans
        if self._config.rollup:
            staged = stage_request(request, raw)
            spans = staged.spans
            self._check_size(spans)
            try:
                self._window.add(staged, limit=limit - self._forwarder.queued_spans - self._flushing)
            except BufferFullError:
                self.metrics.inc(REQUESTS_REJECTED, reason="full")
                raise
        else:
            spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            self._check_size(spans)
            if self._forwarder.queued_spans + spans > limit:
                self.metrics.inc(REQUESTS_REJECTED, reason="full")
                raise BufferFullError(
                    f"forward queue holds {self._forwarder.queued_spans} spans, limit {limit}"
                )
            self._forwarder.put(request.SerializeToString(), spans)
        self.metrics.inc(SPANS_RECEIVED, spans, protocol=protocol)
        return spans

    def _check_size(self, spans: int) -> None:
        if spans > self._config.max_buffered_spans:
            self.metrics.inc(REQUESTS_REJECTED, reason="oversized")
            raise RequestTooLargeError(
                f"request holds {spans} spans, more than --max-buffered-spans "
                f"{self._config.max_buffered_spans}: send smaller batches"
            )

    def reject(self, reason: str) -> None:
        """Count a request the receivers refused before it reached ``accept``."""
        self.metrics.inc(REQUESTS_REJECTED, reason=reason)

    # --- flushing -----------------------------------------------------------------------
    def _flush_loop(self) -> None:
        window = self._window
        while not self._stopping.is_set():
            try:
                ready = window.wait_due(slack=0.02, longest=0.5)
                if ready:
                    self._flush(ready)
            except Exception:
                logger.exception("otel_costs serve: flush loop error")

    def _flush(self, ready: list[tuple[_Trace, str]]) -> None:
        total = sum([trace.spans for trace, _reason in ready])
        self._flushing += total
        try:
            encoded: list[tuple[_Group, Sequence[bytes]]] = []
            for reason, traces in Counter([reason for _trace, reason in ready]).items():
                self.metrics.inc(TRACES_FLUSHED, traces, reason=reason)
            for trace, _reason in ready:
                try:
                    encoded.extend(rollup_trace(trace.chunks, partial_reason="late" if trace.late else None))
                except Exception:
                    logger.exception(
                        "otel_costs serve: rollup failed; forwarding %d spans as is", trace.spans
                    )
                    encoded.extend((chunk.group, chunk.data) for chunk in trace.chunks)
            for payload, count in encode_batches(
                encoded, batch_spans=self._config.forward_batch_spans, worker_id=self._config.worker_id
            ):
                self._forwarder.put(payload, count)
        except Exception:
            logger.exception("otel_costs serve: could not encode %d spans; dropped", total)
            self.metrics.inc(SPANS_DROPPED, total, reason="encode_failed")
        finally:
            self._flushing -= total

    def flush(self) -> None:
        """Roll up and queue every buffered trace now (as if each were due)."""
        ready = self._window.take_all()
        if ready:
            self._flush(ready)

    # --- stopping -----------------------------------------------------------------------
    def stop(self, timeout: float | None = None) -> bool:
        """Graceful stop; ``True`` if everything held was forwarded within ``timeout``."""
        if self._stopped.is_set():
            return True
        timeout = self._config.shutdown_timeout if timeout is None else timeout
        deadline = self._clock() + timeout
        self._stopping.set()
        with self._window.lock:
            self._window.lock.notify_all()
        self._close_receivers(grace=min(2.0, timeout))
        if self._flusher.is_alive():
            self._flusher.join(timeout=5)
        self.flush()
        drained = self._forwarder.close(max(0.0, deadline - self._clock()))
        self._stopped.set()
        logger.info("otel_costs serve: stopped (%s)", "all forwarded" if drained else "some spans dropped")
        return drained

    def _close_receivers(self, grace: float = 0.0) -> None:
        if self._grpc_server is not None:
            self._grpc_server.stop(grace).wait()
        if self._http_server is not None:
            self._http_server.shutdown_requested = True
            if self._http_thread is not None:
                self._http_server.shutdown()
            self._http_server.server_close()


# --- gRPC receiver ------------------------------------------------------------------------------


class _BadRequest(NamedTuple):
    """A gRPC payload that was not accepted as it arrived (the servicer answers INVALID_ARGUMENT)."""

    reason: str
    """``malformed`` or ``oversized`` (the ``requests_rejected_total`` label)."""
    message: str
    """What the client is told."""


class _Received(NamedTuple):
    """A decoded gRPC payload with the bytes it was decoded from."""

    request: ExportTraceServiceRequest
    """The decoded request."""
    raw: bytes
    """The request as it arrived."""


class OtlpTraceService(TraceServiceServicer):
    """The OTLP/gRPC ``TraceService`` of a worker."""

    def __init__(self, worker: ServeWorker) -> None:
        self._worker = worker

    def Export(
        self, request: ExportTraceServiceRequest | _Received | _BadRequest, context: Any
    ) -> ExportTraceServiceResponse:
        if isinstance(request, _BadRequest):
            self._worker.reject(request.reason)
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, request.message)
        try:
            if isinstance(request, _Received):
                self._worker.accept(request.request, "grpc", request.raw)
            else:
                self._worker.accept(request, "grpc")
        except (BufferFullError, ShuttingDownError) as exc:
            _abort_retryable(context, str(exc), self._worker.config.retry_after)
        except RequestTooLargeError as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return ExportTraceServiceResponse()


def _abort(context: Any, code: Any, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable")  # context.abort raises


def _abort_retryable(context: Any, message: str, retry_after: float) -> NoReturn:
    info = error_details_pb2.RetryInfo()
    info.retry_delay.FromNanoseconds(int(retry_after * 1e9))
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message)
    status.details.add().Pack(info)
    context.set_trailing_metadata(((_STATUS_DETAILS_KEY, status.SerializeToString()),))
    _abort(context, grpc.StatusCode.UNAVAILABLE, message)


def _start_grpc(worker: ServeWorker, config: ServeConfig) -> tuple[Any, int]:
    limit = config.max_request_bytes

    def decode(raw: bytes) -> _Received | _BadRequest:
        if len(raw) > limit:
            return _BadRequest(
                "oversized",
                f"OTLP request of {len(raw)} bytes exceeds --max-request-bytes {limit}: send smaller batches",
            )
        try:
            return _Received(ExportTraceServiceRequest.FromString(raw), raw)
        except DecodeError as exc:
            return _BadRequest("malformed", f"cannot decode ExportTraceServiceRequest protobuf: {exc}")

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="otel_costs.serve.grpc"),
        options=[
            # Twice the limit, so that oversized requests reach our clear INVALID_ARGUMENT; past
            # that gRPC itself answers RESOURCE_EXHAUSTED (without RetryInfo: not retried).
            ("grpc.max_receive_message_length", 2 * limit),
            ("grpc.so_reuseport", 0),
        ],
    )
    service = OtlpTraceService(worker)
    handler = grpc.method_handlers_generic_handler(
        _GRPC_SERVICE,
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                service.Export,
                request_deserializer=decode,
                response_serializer=ExportTraceServiceResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    host = f"[{config.host}]" if ":" in config.host else config.host
    try:
        port = server.add_insecure_port(f"{host}:{config.grpc_port}")
    except RuntimeError as exc:  # grpcio raises RuntimeError when the address is taken
        raise ServeConfigError(
            f"cannot bind OTLP/gRPC on {config.host}:{config.grpc_port} (in use?): pick another --grpc-port"
        ) from exc
    if port == 0:
        raise ServeConfigError(
            f"cannot bind OTLP/gRPC on {config.host}:{config.grpc_port} (in use?): pick another --grpc-port"
        )
    server.start()
    return server, port


# --- HTTP receiver ------------------------------------------------------------------------------


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], worker: ServeWorker) -> None:
        self.worker = worker
        self.shutdown_requested = False
        if ":" in address[0]:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__(address, _HttpHandler)


class _HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer
    server_version = "otel-costs-serve"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http %s " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        worker = self.server.worker
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            ok = worker.healthy
            self._reply(200 if ok else 503, b"ok\n" if ok else b"shutting down\n", "text/plain")
        elif path == "/metrics":
            self._reply(200, worker.metrics.render().encode(), "text/plain; version=0.0.4; charset=utf-8")
        else:
            self._reply(404, b"not found: POST /v1/traces, GET /healthz, GET /metrics\n", "text/plain")

    def do_POST(self) -> None:
        worker = self.server.worker
        if self.path.split("?", 1)[0] != TRACES_PATH:
            self._drain_or_close()
            self._reply(404, b"not found: POST OTLP traces to /v1/traces\n", "text/plain")
            return
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        is_json = ctype == "application/json"
        if ctype not in ("application/x-protobuf", "application/json"):
            worker.reject("unsupported")
            self._drain_or_close()
            self._status(
                415,
                f"unsupported Content-Type {ctype!r}: use application/x-protobuf or application/json",
                is_json,
            )
            return
        limit = worker.config.max_request_bytes
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            worker.reject("malformed")
            self.close_connection = True
            self._status(411, "Content-Length required", is_json)
            return
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError(length_header)
        except ValueError:
            worker.reject("malformed")
            self.close_connection = True
            self._status(400, f"bad Content-Length {length_header!r}", is_json)
            return
        if length > limit:
            worker.reject("oversized")
            self.close_connection = True  # the body is not read: this connection cannot be reused
            self._status(413, f"OTLP request of {length} bytes exceeds --max-request-bytes {limit}", is_json)
            return
        body = self.rfile.read(length)
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "gzip":
            try:
                body = _gunzip(body, limit)
            except _TooLargeError:
                worker.reject("oversized")
                self._status(413, f"decompressed OTLP request exceeds --max-request-bytes {limit}", is_json)
                return
            except zlib.error as exc:
                worker.reject("malformed")
                self._status(400, f"bad gzip body: {exc}", is_json)
                return
        elif encoding != "identity":
            worker.reject("unsupported")
            self._status(415, f"unsupported Content-Encoding {encoding!r}: use gzip or none", is_json)
            return
        try:
            request = json_to_request(body) if is_json else ExportTraceServiceRequest.FromString(body)
        except (OtlpFormatError, DecodeError) as exc:
            worker.reject("malformed")
            self._status(400, f"cannot decode OTLP ExportTraceServiceRequest: {exc}", is_json)
            return
        try:
            worker.accept(request, "http", None if is_json else body)
        except BufferFullError as exc:
            self._status(429, str(exc), is_json, retry_after=worker.config.retry_after)
            return
        except ShuttingDownError as exc:
            self._status(503, str(exc), is_json, retry_after=worker.config.retry_after)
            return
        except RequestTooLargeError as exc:
            self._status(413, str(exc), is_json)
            return
        if is_json:
            self._reply(200, b"{}", "application/json")
        else:
            self._reply(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

    def _drain_or_close(self) -> None:
        """Read a small unwanted body so the connection stays usable; close on a big one."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if 0 <= length <= 65536:
            self.rfile.read(length)
        else:
            self.close_connection = True

    def _status(self, code: int, message: str, is_json: bool, *, retry_after: float | None = None) -> None:
        """An OTLP error response: a ``google.rpc.Status`` body in the request's encoding."""
        rpc_code = code_pb2.UNAVAILABLE if code in (429, 503) else code_pb2.INVALID_ARGUMENT
        headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else {}
        if is_json:
            body = json.dumps({"code": rpc_code, "message": message}).encode()
            self._reply(code, body, "application/json", headers)
        else:
            body = status_pb2.Status(code=rpc_code, message=message).SerializeToString()
            self._reply(code, body, "application/x-protobuf", headers)

    def _reply(self, code: int, body: bytes, ctype: str, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection or self.server.shutdown_requested:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)


class _TooLargeError(Exception):
    pass


def _gunzip(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise _TooLargeError
    return out + inflater.flush()


# --- command line -----------------------------------------------------------------------------


def _header_arg(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key.strip().lower(), val


def add_serve_parser(subparsers: Any) -> None:
    """Register the ``serve`` subcommand on an ``argparse`` subparsers object.

    Example::

        sub = parser.add_subparsers(dest="command")
        add_serve_parser(sub)
    """
    p = subparsers.add_parser(
        "serve",
        help="trace-wide cost rollup worker: OTLP in, rolled-up OTLP out (run behind a gateway Collector)",
        description=(
            "Receive OTLP traces (gRPC and HTTP), roll costs up over every service's spans of each "
            "trace, forward them over OTLP. Run one or more behind a Collector whose loadbalancing "
            "exporter routes by trace ID. GET /healthz and /metrics on the HTTP port."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT, help="OTLP/gRPC port (default 4317)")
    p.add_argument("--no-grpc", action="store_true", help="do not listen for OTLP/gRPC")
    p.add_argument(
        "--http-port",
        type=int,
        default=DEFAULT_HTTP_PORT,
        help="OTLP/HTTP, /healthz, /metrics port (default 4318)",
    )
    p.add_argument(
        "--forward-endpoint",
        help="next OTLP hop (default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT)",
    )
    p.add_argument(
        "--forward-protocol",
        choices=("grpc", "http/protobuf"),
        help="next hop's protocol (default: OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL, else http/protobuf)",
    )
    p.add_argument(
        "--forward-header",
        action="append",
        type=_header_arg,
        default=[],
        metavar="KEY=VALUE",
        help="extra header for the next hop (repeatable; adds to OTEL_EXPORTER_OTLP_HEADERS)",
    )
    p.add_argument("--forward-timeout", type=float, help="seconds per export call (default 10)")
    p.add_argument(
        "--forward-max-elapsed",
        type=float,
        default=300.0,
        help="seconds to retry a batch before dropping it (default 300)",
    )
    p.add_argument("--forward-concurrency", type=int, default=2, help="export calls in flight (default 2)")
    p.add_argument(
        "--forward-batch-spans",
        type=int,
        default=4096,
        help="most spans per forwarded request (default 4096)",
    )
    p.add_argument(
        "--linger", type=float, default=5.0, help="seconds a trace waits after its root arrived (default 5)"
    )
    p.add_argument("--max-wait", type=float, default=60.0, help="seconds a trace waits at most (default 60)")
    p.add_argument(
        "--max-buffered-spans", type=int, default=200_000, help="memory bound in spans (default 200000)"
    )
    p.add_argument(
        "--max-request-bytes",
        type=int,
        default=16 * 1024 * 1024,
        help="largest request accepted (default 16 MiB)",
    )
    p.add_argument("--worker-id", help="written on forwarded resources as otel_costs.worker")
    p.add_argument(
        "--shutdown-timeout", type=float, default=30.0, help="seconds to flush on SIGTERM/SIGINT (default 30)"
    )
    p.add_argument(
        "--relay", action="store_true", help="pass-through relay without rollup (benchmark baseline)"
    )
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=_serve_command)


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """A ``ServeConfig`` from parsed ``serve`` arguments (and the environment)."""
    settings: dict[str, Any] = {
        "max_elapsed": args.forward_max_elapsed,
        "concurrency": args.forward_concurrency,
    }
    if args.forward_timeout is not None:
        settings["timeout"] = args.forward_timeout
    forward = ForwardConfig.from_env(
        endpoint=args.forward_endpoint,
        protocol=args.forward_protocol,
        headers=args.forward_header,
        **settings,
    )
    config = ServeConfig(
        forward=forward,
        host=args.host,
        grpc_port=None if args.no_grpc else args.grpc_port,
        http_port=args.http_port,
        linger=args.linger,
        max_wait=args.max_wait,
        max_buffered_spans=args.max_buffered_spans,
        max_request_bytes=args.max_request_bytes,
        forward_batch_spans=args.forward_batch_spans,
        worker_id=args.worker_id,
        shutdown_timeout=args.shutdown_timeout,
        rollup=not args.relay,
    )
    config.validate()
    return config


def run(config: ServeConfig, *, ready: Callable[[ServeWorker], None] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then stop gracefully. Returns the exit code (0: all forwarded).

    While it serves, the process's cyclic garbage collector runs less often (``_SERVE_GC_THRESHOLD``)
    and leaves the objects made at startup alone (``gc.freeze``); both are restored on return.
    """
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    thresholds = gc.get_threshold()
    try:
        worker = ServeWorker(config).start()
        # Every span makes a few short-lived containers (chunks, lists), none in cycles: with
        # the default threshold (700) the collector ran all the time and rescanned the window
        # and the startup objects; measured 20 % more spans/s for traces with LLM calls.
        gc.freeze()
        gc.set_threshold(*_SERVE_GC_THRESHOLD)
        if ready is not None:
            ready(worker)
        stop.wait()
        logger.info("otel_costs serve: signal received, flushing")
        return 0 if worker.stop() else 1
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


#: Garbage-collector thresholds while serving (generation 0 after 50,000 allocations).
_SERVE_GC_THRESHOLD: Final = (50_000, 20, 20)


def _serve_command(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = config_from_args(args)
    except ServeConfigError as exc:
        print(f"otel-costs serve: {exc}", file=sys.stderr)
        return 2
    try:
        return run(config)
    except (OSError, ServeConfigError) as exc:
        print(f"otel-costs serve: cannot start: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m otel_costs._serve [flags]``: the ``serve`` subcommand on its own."""
    parser = argparse.ArgumentParser(prog="otel-costs")
    add_serve_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
