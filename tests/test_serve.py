"""``otel-costs serve``: trace-wide rollup over OTLP, backpressure, bad payloads, retries, shutdown."""

from __future__ import annotations

import argparse
import contextlib
import gc
import gzip
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from otel_costs import _serve
from otel_costs import conventions as conv
from otel_costs._serve import (
    _READ_KEYS,
    _REPLACED_KEYS,
    _SERVE_GC_THRESHOLD,
    WORKER_ATTRIBUTE,
    BufferFullError,
    ForwardConfig,
    SendOutcome,
    ServeConfig,
    ServeConfigError,
    ServeWorker,
    TraceWindow,
    _chunk_ids,
    _general_figures,
    _read_cost_attributes,
    _sparse_figures,
    add_serve_parser,
    config_from_args,
    encode_attributes,
    encode_batches,
    rollup_trace,
    run,
    stage_request,
)
from otel_costs._serve_metrics import SPANS_DROPPED, SPANS_FORWARDED, SPANS_RECEIVED, parse_metrics
from otel_costs.pipeline._otlp import SpanRecord, any_value, iter_records, request_to_json
from otel_costs.rollup._tree import cost_node, own_cost, rollup, rollup_attributes

REPO = Path(__file__).resolve().parent.parent
TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture(autouse=True, params=["native", "python"])
def serve_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on the C extension's path and on the pure-Python one (the reference)."""
    if request.param == "native":
        if _serve._NATIVE is None:
            if os.environ.get("OTEL_COSTS_REQUIRE_NATIVE", "").strip() == "1":  # CI: it must have built
                pytest.fail("otel_costs._serve_native is not built, and OTEL_COSTS_REQUIRE_NATIVE=1")
            pytest.skip("otel_costs._serve_native is not built (or OTEL_COSTS_SERVE_NATIVE=0)")
        monkeypatch.setenv("OTEL_COSTS_SERVE_NATIVE", "1")  # worker subprocesses too
    else:
        monkeypatch.setattr(_serve, "_NATIVE", None)
        monkeypatch.setenv("OTEL_COSTS_SERVE_NATIVE", "0")
    return str(request.param)


# --- building OTLP requests -------------------------------------------------------------------


def sid(n: int) -> bytes:
    """An 8-byte span id."""
    return n.to_bytes(8, "big")


@dataclass
class S:
    """One span to put in a request."""

    span_id: int
    parent: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    trace_id: bytes = TRACE
    remote_parent: bool = False


def llm(span_id: int, parent: int, nanos: int) -> S:
    """An LLM call as ``CostSpanProcessor`` wrote it, with process-scope rollup figures."""
    return S(
        span_id,
        parent,
        {
            conv.COST_DIRECT_NANOS: nanos,
            conv.COST_DIRECT: nanos / 1e9,
            conv.COST_STATUS: conv.STATUS_PRICED,
            conv.COST_CURRENCY: conv.CURRENCY_USD,
            conv.COST_TOTAL_NANOS: nanos,
            conv.COST_CHILDREN_NANOS: 0,
            conv.COST_ROLLUP_SCOPE: conv.SCOPE_PROCESS,
        },
    )


def add_spans(rs: ResourceSpans, spans: list[S], scope: str = "test") -> None:
    """Append ``spans`` to ``rs`` under one instrumentation scope."""
    ss = rs.scope_spans.add()
    ss.scope.name = scope
    for s in spans:
        span = ss.spans.add()
        span.trace_id = s.trace_id
        span.span_id = sid(s.span_id)
        span.name = f"span-{s.span_id}"
        if s.parent is not None:
            span.parent_span_id = sid(s.parent)
        if s.remote_parent:
            span.flags = 0x300
        for key, value in s.attributes.items():
            kv = span.attributes.add()
            kv.key = key
            if isinstance(value, bool):
                kv.value.bool_value = value
            elif isinstance(value, int):
                kv.value.int_value = value
            elif isinstance(value, float):
                kv.value.double_value = value
            else:
                kv.value.string_value = value


def request(service: str, spans: list[S]) -> ExportTraceServiceRequest:
    """One ``ExportTraceServiceRequest`` of ``service``'s spans."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key = "service.name"
    kv.value.string_value = service
    add_spans(rs, spans)
    return req


#: Two services: the orchestrator (root 1, agent 2, LLM 3, client span 4) calls the sub-agent
#: (server span 10 with remote parent 4, LLM 11 and 12). Every LLM cost, in nano-USD.
ORCHESTRATOR = [S(1), S(2, 1), llm(3, 2, 1_250_000), S(4, 2, {conv.COST_TOTAL_NANOS: 0})]
SUB_AGENT = [
    S(10, 4, {conv.COST_ROLLUP_REMOTE_PARENT: True, conv.COST_TOTAL_NANOS: 3_000_007}, remote_parent=True),
    llm(11, 10, 1_000_000),
    llm(12, 10, 2_000_007),
]
TRACE_TOTAL = 1_250_000 + 1_000_000 + 2_000_007


def by_id(records: list[SpanRecord]) -> dict[int, SpanRecord]:
    """Records keyed by their span id as an int."""
    return {int.from_bytes(r.span_id, "big"): r for r in records}


def records_of(payloads: list[bytes]) -> list[SpanRecord]:
    """The span records in serialized requests."""
    return [r for p in payloads for r in iter_records(ExportTraceServiceRequest.FromString(p))]


# --- pure units --------------------------------------------------------------------------------


def _rolled(*requests: ExportTraceServiceRequest, late: bool = False) -> dict[int, SpanRecord]:
    chunks = [c for req in requests for c in stage_request(req).traces[TRACE]]
    rolled = rollup_trace(chunks, partial_reason="late" if late else None)
    payloads = encode_batches(rolled, batch_spans=100)
    return by_id(records_of([p for p, _n in payloads]))


def test_rollup_trace_sums_every_service() -> None:
    """The workflow root's total covers the LLM calls of both services, exactly, at trace scope."""
    spans = _rolled(request("sub-agent", SUB_AGENT), request("orchestrator", ORCHESTRATOR))
    root = spans[1].attributes
    assert root[conv.COST_TOTAL_NANOS] == TRACE_TOTAL
    assert root[conv.COST_ROLLUP_SCOPE] == conv.SCOPE_TRACE
    assert spans[4].attributes[conv.COST_TOTAL_NANOS] == 3_000_007
    assert spans[2].attributes[conv.COST_CHILDREN_NANOS] == TRACE_TOTAL


def test_rollup_trace_replaces_process_scope_figures_and_keeps_direct_cost() -> None:
    """Earlier rollup keys are replaced, never duplicated; stale remote-parent flags go; direct cost stays."""
    chunks = [
        c
        for req in (request("o", ORCHESTRATOR), request("s", SUB_AGENT))
        for c in stage_request(req).traces[TRACE]
    ]
    spans = [Span.FromString(data) for _group, rolled in rollup_trace(chunks) for data in rolled]
    for span in spans:
        keys = [kv.key for kv in span.attributes]
        assert len(keys) == len(set(keys)), keys
    server = next(s for s in spans if s.span_id == sid(10))
    server_attrs = {kv.key: kv.value for kv in server.attributes}
    assert conv.COST_ROLLUP_REMOTE_PARENT not in server_attrs
    assert server_attrs[conv.COST_ROLLUP_SCOPE].string_value == conv.SCOPE_TRACE
    llm_span = next(s for s in spans if s.span_id == sid(12))
    values = {kv.key: kv.value for kv in llm_span.attributes}
    assert values[conv.COST_DIRECT_NANOS].int_value == 2_000_007
    assert values[conv.COST_CURRENCY].string_value == conv.CURRENCY_USD


def test_rollup_trace_flags_a_trace_missing_its_root() -> None:
    """Without the orchestrator's spans, the sub-agent's server span is flagged a remote-parent root."""
    spans = _rolled(request("sub-agent", SUB_AGENT))
    assert spans[10].attributes[conv.COST_ROLLUP_REMOTE_PARENT] is True
    assert spans[10].attributes[conv.COST_TOTAL_NANOS] == 3_000_007


def test_rollup_trace_flags_late_spans_partial() -> None:
    """Spans flushed late carry cost.rollup.partial with reason late."""
    spans = _rolled(request("sub-agent", SUB_AGENT), late=True)
    assert all(s.attributes[conv.COST_ROLLUP_PARTIAL] is True for s in spans.values())
    assert {s.attributes[conv.COST_ROLLUP_PARTIAL_REASON] for s in spans.values()} == {"late"}


def _len_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (field numbers below 16)."""
    size = len(payload)
    assert size < 1 << 14
    length = bytes([size]) if size < 0x80 else bytes([size & 0x7F | 0x80, size >> 7])
    return bytes([number << 3 | 2]) + length + payload


def test_spans_the_rollup_leaves_alone_are_forwarded_as_they_arrived() -> None:
    """A span the rollup does not change keeps its exact bytes (field order, unknown fields)."""
    # Name before the ids and an unknown field 99: re-encoding would reorder and could drop.
    plain = (
        _len_field(5, b"plain")
        + _len_field(1, TRACE)
        + _len_field(2, sid(2))
        + _len_field(4, sid(1))
        + b"\x98\x06\x07"
    )
    costly = llm(3, 1, 500).attributes
    root = Span(trace_id=TRACE, span_id=sid(1), name="root").SerializeToString()
    billed = Span(trace_id=TRACE, span_id=sid(3), parent_span_id=sid(1), name="llm")
    for key, value in costly.items():
        kv = billed.attributes.add(key=key)
        if isinstance(value, str):
            kv.value.string_value = value
        elif isinstance(value, int):
            kv.value.int_value = value
        else:
            kv.value.double_value = value
    scope_spans = b"".join(_len_field(2, span) for span in (plain, root, billed.SerializeToString()))
    raw = _len_field(1, _len_field(2, scope_spans))
    staged = stage_request(ExportTraceServiceRequest.FromString(raw), raw)
    assert staged.roots == {TRACE} and staged.spans == 3
    rolled = rollup_trace(staged.traces[TRACE])
    [(payload, count)] = encode_batches(rolled, batch_spans=10)
    assert count == 3
    assert _len_field(2, plain) in payload
    spans = by_id(records_of([payload]))
    assert spans[2].name == "plain" and spans[2].parent_span_id == sid(1)
    assert spans[1].attributes[conv.COST_TOTAL_NANOS] == 500
    assert spans[3].attributes[conv.COST_ROLLUP_SCOPE] == conv.SCOPE_TRACE


def test_a_scope_mixing_traces_is_split_by_trace() -> None:
    """Spans of several traces in one ScopeSpans (no gateway in front) are grouped per trace, in order."""
    other = bytes.fromhex("11" * 16)
    mixed = [
        S(1),
        S(1, trace_id=other),
        llm(2, 1, 7),
        llm(2, 1, 11),
        S(3, 2),
    ]
    mixed[3].trace_id = other
    staged = stage_request(request("svc", mixed))
    assert staged.spans == 5 and staged.roots == {TRACE, other}
    ids = {t: [s for c in chunks for s in _chunk_ids(c)[0]] for t, chunks in staged.traces.items()}
    assert ids == {TRACE: [sid(1), sid(2), sid(3)], other: [sid(1), sid(2)]}
    totals = {}
    for trace_id, chunks in staged.traces.items():
        [(payload, _n)] = encode_batches(rollup_trace(chunks), batch_spans=10)
        totals[trace_id] = by_id(records_of([payload]))[1].attributes[conv.COST_TOTAL_NANOS]
    assert totals == {TRACE: 7, other: 11}


#: Attribute keys the rollup drops, reads or checks, one it ignores, and ordinary ones.
_KEYS = [
    conv.COST_TOTAL_NANOS,
    conv.COST_CHILDREN,
    conv.COST_ROLLUP_REMOTE_PARENT,
    conv.COST_STATUS,
    conv.COST_DIRECT_NANOS,
    conv.COST_DIRECT,
    conv.COST_CURRENCY,
    "cost.status_reason",
    "http.route",
    "cost." + "k" * 130,
]


def _any(rng: random.Random) -> bytes:
    """A serialized AnyValue of a random kind, in the usual encoding or an unusual one."""
    value = AnyValue()
    kind = rng.randrange(11)
    if kind == 0:
        value.string_value = rng.choice([conv.STATUS_PRICED, conv.STATUS_UNPRICED, "cost.x", "é" * 70])
    elif kind == 1:
        value.int_value = rng.choice([0, 5, 300, 2**40, 2**63 - 1, -1, -(2**63)])
    elif kind == 2:
        value.double_value = rng.choice([0.0, 1e-9, 0.25, -3.5, float("inf")])
    elif kind == 3:
        value.bool_value = rng.random() < 0.5
    elif kind == 4:
        value.bytes_value = b"\x00cost."
    elif kind == 5:
        value.array_value.values.add().int_value = 3
    elif kind == 6:
        value.kvlist_value.values.add(key="cost.status").value.string_value = "priced"
    elif kind == 7:
        return b""  # no value set
    elif kind == 8:
        value.string_value = "long " * 40
    elif kind == 9:  # an int written in a needlessly long varint, then overwritten: last wins
        return b"\x18\x85\x80\x00" + b"\x18\x07"
    else:  # two fields of the oneof: the last one wins
        return b"\x0a\x03abc" + b"\x18\x2a"
    return value.SerializeToString()


def _key_value_bytes(rng: random.Random, key: str, value: bytes) -> bytes:
    """A serialized KeyValue: usually key then value; sometimes value first, or a stale key first."""
    form = rng.randrange(6)
    if form == 0:
        return _len_field(2, value) + _len_field(1, key.encode())
    if form == 1:  # the key field twice: the last one counts
        return _len_field(1, rng.choice(_KEYS).encode()) + _len_field(1, key.encode()) + _len_field(2, value)
    return _len_field(1, key.encode()) + _len_field(2, value)


def _reference_cost_attributes(data: bytes) -> tuple[Span, dict[str, object] | None, bool]:
    """What the rollup reads from a span, through the protobuf API: the kept span, values, currency."""
    span = Span.FromString(data)
    values: dict[str, object] = {}
    currency = False
    for i in reversed(range(len(span.attributes))):
        if span.attributes[i].key in _REPLACED_KEYS:
            del span.attributes[i]
    for kv in span.attributes:
        if kv.key in _READ_KEYS:
            values[kv.key] = any_value(kv.value)
        elif kv.key == conv.COST_CURRENCY:
            currency = True
    return span, values or None, currency


def test_cost_attributes_read_from_serialized_key_values_match_the_protobuf_api() -> None:
    """Reading cost attributes from raw KeyValue bytes gives what the protobuf API gives, any encoding."""
    rng = random.Random(7)
    for _ in range(400):
        attributes = [
            _len_field(9, _key_value_bytes(rng, rng.choice(_KEYS), _any(rng)))
            for _ in range(rng.randrange(9))
        ]
        data = Span(trace_id=TRACE, span_id=sid(1), name="s").SerializeToString() + b"".join(attributes)
        span, values, currency = _read_cost_attributes(data)
        expected_span, expected_values, expected_currency = _reference_cost_attributes(data)
        assert Span.FromString(span) == expected_span
        assert currency == expected_currency
        assert repr(sorted((values or {}).items())) == repr(sorted((expected_values or {}).items()))
        assert (values is None) == (expected_values is None)
        if not _REPLACED_KEYS & {kv.key for kv in Span.FromString(data).attributes}:
            assert span == data, "re-encoded though nothing was dropped"


def _random_trace(
    rng: random.Random,
) -> tuple[list[bytes], list[bytes], list[bytes], dict[int, tuple[int, bool, bool]], set[int]]:
    """A random trace: span ids, parent ids, serialized spans, own costs of the costed spans, currencies.

    Mostly trees (several services, missing parents, remote parents); sometimes repeated or
    empty span ids and parent loops, which the sparse path must hand to rollup().
    """
    n = rng.randrange(1, 40)
    odd = rng.random() < 0.3
    ids = [sid(rng.randrange(1, n + 3) if odd and rng.random() < 0.2 else 100 + i) for i in range(n)]
    if odd and rng.random() < 0.2:
        ids[rng.randrange(n)] = b""
    parents: list[bytes] = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.1:
            parents.append(b"")
        elif roll < 0.18:
            parents.append(sid(999 + i))  # never seen: an orphan or a remote parent
        elif odd and roll < 0.3:
            parents.append(ids[rng.randrange(n)])  # anywhere, itself included: loops
        else:
            parents.append(ids[rng.randrange(i)] if i else b"")
    data = []
    for span_id, parent_id in zip(ids, parents, strict=True):
        flags = rng.choice([0, 0x100, 0x300])
        data.append(
            Span(trace_id=TRACE, span_id=span_id, parent_span_id=parent_id, flags=flags).SerializeToString()
        )
    costs: dict[int, tuple[int, bool, bool]] = {}
    for i in range(n):
        if rng.random() < 0.4:
            values: dict[str, object] = {}
            if rng.random() < 0.8:
                values[conv.COST_DIRECT_NANOS] = rng.choice([0, 1, 1_250_000, 7 * 10**12, -3, "12"])
            elif rng.random() < 0.5:
                values[conv.COST_DIRECT] = rng.choice([0.5, 1e-9, -1.0, float("nan")])
            if rng.random() < 0.7:
                values[conv.COST_STATUS] = rng.choice(
                    [conv.STATUS_PRICED, conv.STATUS_UNPRICED, conv.STATUS_PARTIAL, conv.STATUS_AGGREGATE]
                )
            cost = own_cost(values)
            if cost[0] or cost[1] or cost[2]:
                costs[i] = cost
    currencies = {i for i in range(n) if rng.random() < 0.3}
    return ids, parents, data, costs, currencies


def test_sparse_rollup_matches_rollup_on_random_traces() -> None:
    """Walking up from billable spans gives rollup()'s attributes byte for byte, or defers to rollup()."""
    rng = random.Random(11)
    sparse_used = deferred = 0
    for _ in range(3000):
        ids, parents, data, costs, currencies = _random_trace(rng)
        late = rng.choice([None, None, "late"])
        sparse = _sparse_figures(ids, parents, costs, currencies, data, late)
        general = _general_figures(ids, parents, costs, currencies, data, late)
        if sparse is None:
            deferred += 1
            continue
        sparse_used += 1
        assert sparse == general
    assert sparse_used > 1500 and deferred > 300, (sparse_used, deferred)


def test_sparse_rollup_defers_deep_costly_traces_and_loops() -> None:
    """A 3,000-deep chain of billable spans and a parent loop go to rollup(), still exact."""
    n = 3000
    ids = [sid(i + 1) for i in range(n)]
    parents = [b"", *ids[:-1]]
    costs = {i: own_cost({conv.COST_DIRECT_NANOS: i}) for i in range(n)}
    data = [b""] * n
    assert _sparse_figures(ids, parents, costs, set(), data, None) is None
    assert _sparse_figures(ids[:300], parents[:300], {}, set(), data, None) == {}
    looped = [ids[299], *ids[:299]]  # the chain's top hangs under its last span
    assert _sparse_figures(ids[:300], looped, {}, set(), data, None) is None
    figures = _general_figures(ids, parents, costs, set(), data, None)
    root = Span.FromString(b"\x12\x08" + ids[0] + figures[0])
    values = {kv.key: any_value(kv.value) for kv in root.attributes}
    assert values[conv.COST_TOTAL_NANOS] == sum(range(n))


def _random_request(rng: random.Random, traces: list[bytes], number: int) -> ExportTraceServiceRequest:
    """A request of two services whose spans carry random cost attributes, stale figures included."""
    req = ExportTraceServiceRequest()
    for service in ("orchestrator", "sub-agent"):
        rs = req.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = service
        for _scope in range(rng.randrange(1, 3)):
            ss = rs.scope_spans.add()
            ss.scope.name = rng.choice(["a", "b"])
            for _ in range(rng.randrange(0, 12)):
                number += 1
                span = ss.spans.add(trace_id=rng.choice(traces), span_id=sid(rng.randrange(1, 30)))
                span.name = f"s{number}"
                if rng.random() < 0.8:
                    span.parent_span_id = sid(rng.randrange(1, 32))
                span.flags = rng.choice([0, 0x300])
                for key in rng.sample(_KEYS, rng.randrange(4)):
                    span.attributes.add(key=key).value.MergeFrom(AnyValue.FromString(_any(rng)))
                if rng.random() < 0.5:
                    span.attributes.add(key=conv.COST_DIRECT_NANOS).value.int_value = rng.randrange(10**7)
                    span.attributes.add(key=conv.COST_STATUS).value.string_value = rng.choice(
                        [conv.STATUS_PRICED, conv.STATUS_UNPRICED]
                    )
    return req


def _reference_rollup(spans: list[Span], late: bool) -> dict[str, list[tuple[str, object]]]:
    """Each span's attributes after a trace-wide rollup, computed through the protobuf API and rollup()."""
    nodes = []
    for span in spans:
        values = {kv.key: any_value(kv.value) for kv in span.attributes if kv.key in _READ_KEYS}
        remote = bool(span.flags & 0x100 and span.flags & 0x200)
        nodes.append(cost_node(span.span_id, span.parent_span_id or None, values, remote_parent=remote))
    expected = {}
    for span, node, result in zip(spans, nodes, rollup(nodes), strict=True):
        kept = [(kv.key, any_value(kv.value)) for kv in span.attributes if kv.key not in _REPLACED_KEYS]
        extra = rollup_attributes(node, result, scope=conv.SCOPE_TRACE)
        if late:
            extra[conv.COST_ROLLUP_PARTIAL] = True
            extra[conv.COST_ROLLUP_PARTIAL_REASON] = "late"
        if any(key == conv.COST_CURRENCY for key, _value in kept):
            extra.pop(conv.COST_CURRENCY, None)
        expected[span.name] = kept + list(extra.items())
    return expected


def test_rollup_trace_matches_a_protobuf_api_reference_on_random_requests() -> None:
    """Staged, rolled up and encoded, every span carries exactly what rollup() over decoded spans gives."""
    rng = random.Random(5)
    traces = [bytes([t]) * 16 for t in range(1, 4)]
    for _ in range(150):
        requests = [_random_request(rng, traces, 1000 * k) for k in range(rng.randrange(1, 3))]
        late = rng.random() < 0.2
        chunks: dict[bytes, list[Any]] = {}
        for req in requests:
            for trace_id, staged in stage_request(req).traces.items():
                chunks.setdefault(trace_id, []).extend(staged)
        for trace_id, trace_chunks in chunks.items():
            spans = [
                span
                for req in requests
                for rs in req.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
                if span.trace_id == trace_id
            ]
            try:
                expected = _reference_rollup(spans, late)
            except TypeError:  # a cost.status rollup cannot read (a list, a map): the worker forwards as is
                with pytest.raises(TypeError):
                    rollup_trace(trace_chunks)
                continue
            if any(
                type(value) is int and not -(2**63) <= value < 2**63
                for attributes in expected.values()
                for _key, value in attributes
            ):  # a sum past int64: the worker forwards the trace as is
                with pytest.raises(ValueError, match="int64"):
                    rollup_trace(trace_chunks)
                continue
            rolled = rollup_trace(trace_chunks, partial_reason="late" if late else None)
            payloads = [p for p, _n in encode_batches(rolled, batch_spans=rng.randrange(1, 30))]
            got = {}
            for payload in payloads:
                for rs in ExportTraceServiceRequest.FromString(payload).resource_spans:
                    for ss in rs.scope_spans:
                        for span in ss.spans:
                            got[span.name] = [(kv.key, repr(any_value(kv.value))) for kv in span.attributes]
            assert got == {name: [(k, repr(v)) for k, v in kvs] for name, kvs in expected.items()}


# --- the C extension against the Python path -------------------------------------------------


def _staged_view(staged: Any) -> tuple[object, ...]:
    """What a staging holds, comparable across paths: per trace its chunks' groups, spans and ids."""
    traces = {
        trace_id: [(c.group.key, list(c.data), *map(list, _chunk_ids(c))) for c in chunks]
        for trace_id, chunks in staged.traces.items()
    }
    return list(traces.items()), staged.roots, staged.spans


def _rolled_or_error(chunks: list[Any], late: bool) -> object:
    """``rollup_trace``'s spans per group key, or the name of the error it raised."""
    try:
        rolled = rollup_trace(chunks, partial_reason="late" if late else None)
    except (ValueError, TypeError) as exc:  # the worker forwards such a trace as it arrived
        return type(exc).__name__
    return [(group.key, list(data)) for group, data in rolled]


def _garble(rng: random.Random, raw: bytes) -> bytes:
    """``raw`` truncated, with bytes flipped, cut out, repeated or inserted; or random bytes."""
    kind = rng.randrange(7)
    at = rng.randrange(len(raw) + 1)
    if kind == 0:
        return raw[:at]
    if kind == 1 and raw:
        flipped = bytearray(raw)
        for _ in range(rng.randrange(1, 4)):
            flipped[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        return bytes(flipped)
    if kind == 2:
        return raw[:at] + raw[at + rng.randrange(1, 40) :]
    if kind == 3:
        return raw[:at] + raw[at : at + rng.randrange(1, 60)] + raw[at:]
    if kind == 4:
        return raw[:at] + rng.randbytes(rng.randrange(1, 12)) + raw[at:]
    if kind == 5:  # a varint that never ends, or a length past the end
        return raw[:at] + rng.choice([b"\\xff" * 11, b"\\x0a\\xff\\xff\\xff\\x0f", b"\\x0b"])
    return rng.randbytes(rng.randrange(200))


def _python_path() -> Any:
    """A context in which ``_serve`` runs its pure-Python path."""
    return pytest.MonkeyPatch.context()


@pytest.mark.parametrize("serve_path", ["native"], indirect=True)
def test_native_staging_of_garbled_requests_is_a_clean_error_or_what_python_gives(serve_path: str) -> None:
    """Truncated, garbled and random bytes: the C parser declines or gives the Python path's bytes."""
    native = _serve._NATIVE
    assert native is not None
    rng = random.Random(2026)
    traces = [bytes([t]) * 16 for t in range(1, 4)]
    outcomes: Counter[str] = Counter()
    for case in range(4000):
        if rng.random() < 0.5:
            base = _random_request(rng, traces, 0)
        else:  # only values the C path reads itself
            base = request("svc", [S(1), llm(2, 1, rng.randrange(10**9)), S(3, 2), llm(4, 3, 5)])
            base.resource_spans[0].scope_spans[0].spans[rng.randrange(4)].trace_id = rng.choice(traces)
        raw = base.SerializeToString()
        if case % 5:
            raw = _garble(rng, raw)
        try:
            parsed = native.stage(raw)
        except ValueError:
            outcomes["clean error"] += 1
            continue
        staged = _serve._stage_native(raw)
        if parsed is None or staged is None:
            outcomes["declined"] += 1
            continue
        late = rng.random() < 0.2
        try:
            decoded = ExportTraceServiceRequest.FromString(raw)
        except DecodeError:  # upb rejects what the receivers would refuse: the C path must not crash
            for chunks in staged.traces.values():
                with contextlib.suppress(ValueError):
                    native.rollup([c.data for c in chunks], [c.meta for c in chunks], b"" if late else None)
            outcomes["rejected by upb"] += 1
            continue
        with _python_path() as patch:
            patch.setattr(_serve, "_NATIVE", None)
            reference = stage_request(decoded, raw)
            expected = {t: _rolled_or_error(chunks, late) for t, chunks in reference.traces.items()}
        assert _staged_view(staged) == _staged_view(reference)
        got = {t: _rolled_or_error(chunks, late) for t, chunks in staged.traces.items()}
        assert got == expected
        outcomes["same as python"] += 1
    assert outcomes["same as python"] > 600 and outcomes["clean error"] > 1500, outcomes
    assert outcomes["declined"] > 500 and outcomes["rejected by upb"] > 20, outcomes


@pytest.mark.parametrize("serve_path", ["native"], indirect=True)
def test_native_rollup_of_garbled_records_never_crashes(serve_path: str) -> None:
    """Random span bytes and records: rollup answers a list, None or a clean error, never a crash."""
    native = _serve._NATIVE
    assert native is not None
    rng = random.Random(99)
    answers: Counter[str] = Counter()
    for _ in range(3000):
        chunks = rng.randrange(1, 4)
        datas: list[Any] = []
        metas: list[Any] = []
        for _chunk in range(chunks):
            n = rng.randrange(0, 6)
            datas.append([rng.randbytes(rng.randrange(30)) for _ in range(n)])
            meta = bytearray(rng.randbytes(32 * n))
            for at in range(0, len(meta), 32):  # small ids and flags, so that trees and loops occur
                meta[at : at + 24] = (
                    sid(rng.randrange(1, 60)) + sid(rng.randrange(60)) + sid(rng.randrange(9))
                )
                meta[at + 16 : at + 24] = meta[at + 16 : at + 24][::-1]  # little-endian nanos
            metas.append(bytes(meta) if rng.random() < 0.95 else bytes(meta) + b"x")
        late = rng.choice([None, b"", b"\\x4a\\x00"])
        try:
            result = native.rollup(datas, metas, late)
        except ValueError:
            answers["error"] += 1
            continue
        answers["none" if result is None else "list"] += 1
        if result is not None:
            assert [len(spans) for spans in result] == [len(spans) for spans in datas]
    assert answers["error"] > 50 and answers["none"] > 50 and answers["list"] > 300, answers


@pytest.mark.parametrize("serve_path", ["native"], indirect=True)
def test_native_path_handles_the_usual_requests_itself(serve_path: str) -> None:
    """A gateway's request of priced LLM spans is staged and rolled up in C, not handed back to Python."""
    raw = request("svc", ORCHESTRATOR + SUB_AGENT).SerializeToString()
    staged = _serve._stage_native(raw)
    assert staged is not None
    [chunks] = staged.traces.values()
    assert all(c.meta is not None for c in chunks)
    assert _serve._NATIVE is not None
    rolled = _serve._NATIVE.rollup([c.data for c in chunks], [c.meta for c in chunks], None)
    assert rolled is not None and rolled[0] != chunks[0].data


@pytest.mark.parametrize("serve_path", ["native"], indirect=True)
def test_native_framing_writes_the_python_framing_byte_for_byte(serve_path: str) -> None:
    """Forwarded requests framed in C are exactly the bytes the Python framing writes, any grouping."""
    rng = random.Random(3)
    traces = [bytes([t]) * 16 for t in range(1, 4)]
    for _ in range(300):
        req = _random_request(rng, traces, 0)
        for rs in req.resource_spans:
            if rng.random() < 0.5:
                rs.schema_url = "https://opentelemetry.io/schemas/1.26.0"
            for ss in rs.scope_spans:
                if rng.random() < 0.5:
                    ss.schema_url = "s" * rng.randrange(1, 200)
        if rng.random() < 0.3:
            req.resource_spans[0].ClearField("resource")
        staged = stage_request(req)
        chunks = [
            (c.group, c.data if rng.random() < 0.7 else tuple(c.data))
            for trace_chunks in staged.traces.values()
            for c in trace_chunks
        ]
        batch_spans = rng.randrange(1, 40)
        worker_id = rng.choice([None, "w-1"])
        native = encode_batches(chunks, batch_spans=batch_spans, worker_id=worker_id)
        with _python_path() as patch:
            patch.setattr(_serve, "_NATIVE", None)
            assert encode_batches(chunks, batch_spans=batch_spans, worker_id=worker_id) == native


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("parts", "advance", "reason"),
    [
        ([ORCHESTRATOR], 2.0, "root"),
        ([SUB_AGENT], 10.0, "max_wait"),
    ],
    ids=["root-then-linger", "no-root-max-wait"],
)
def test_window_flushes_after_linger_or_max_wait(parts: list[list[S]], advance: float, reason: str) -> None:
    """A trace is due linger after its root arrived, else max_wait after its first span."""
    clock = FakeClock()
    window = TraceWindow(linger=2.0, max_wait=10.0, clock=clock)
    for spans in parts:
        window.add(stage_request(request("svc", spans)), limit=100)
    clock.now += advance - 0.5
    ready, wait = window.take_due()
    assert ready == [] and wait == pytest.approx(0.5)
    clock.now += 0.5
    ready, _ = window.take_due()
    assert [(t.trace_id, r) for t, r in ready] == [(TRACE, reason)]
    assert window.spans == 0 and window.traces == 0


def test_window_marks_spans_after_their_trace_late() -> None:
    """Spans of a trace that already went out wait linger and are flushed with reason late."""
    clock = FakeClock()
    window = TraceWindow(linger=1.0, max_wait=10.0, clock=clock)
    window.add(stage_request(request("o", ORCHESTRATOR)), limit=100)
    clock.now += 1.0
    assert [r for _t, r in window.take_due()[0]] == ["root"]
    window.add(stage_request(request("s", SUB_AGENT)), limit=100)
    clock.now += 1.0
    ready, _ = window.take_due()
    assert [(r, t.late) for t, r in ready] == [("late", True)]


def test_window_refuses_past_its_limit() -> None:
    """A request that would pass the span limit raises BufferFullError and changes nothing."""
    window = TraceWindow(linger=1.0, max_wait=10.0)
    window.add(stage_request(request("o", ORCHESTRATOR)), limit=5)
    with pytest.raises(BufferFullError):
        window.add(stage_request(request("s", SUB_AGENT)), limit=5)
    assert window.spans == 4


def test_window_wakes_a_waiting_flusher_only_for_an_earlier_trace() -> None:
    """A trace due before the waiter's wake-up wakes it; one due later leaves it asleep until then."""
    window = TraceWindow(linger=0.0, max_wait=60.0)
    got: list[list[Any]] = []
    done = threading.Event()

    def flusher() -> None:
        got.append(window.wait_due(longest=30.0))
        done.set()

    thread = threading.Thread(target=flusher, daemon=True)
    thread.start()
    asleep = threading.Event()
    deadline = time.monotonic() + 10.0
    while not asleep.wait(0.001):  # until the flusher waits (its wake-up time is set under the lock)
        assert time.monotonic() < deadline, "the flusher never went to sleep"
        with window.lock:
            if window._wake_at > 0:
                asleep.set()
    with window.lock:
        sleeps_for = window._wake_at - time.monotonic()
    window.add(stage_request(request("o", [S(5, 4, trace_id=bytes(16))])), limit=100)  # no root: due in 60 s
    assert not window._wake, "a trace due after the wake-up must not wake the flusher"
    window.add(stage_request(request("o", ORCHESTRATOR)), limit=100)  # a root, linger 0: due now
    assert done.wait(10), "the flusher was not woken"
    thread.join(5)
    assert [trace.trace_id for trace, _reason in got[0]] == [TRACE]
    assert sleeps_for > 20, sleeps_for


def test_encode_batches_regroups_resources_and_scopes_and_tags_the_worker() -> None:
    """Spans of one resource/scope from several requests share one ResourceSpans; batches respect the cap."""
    reqs = [request("a", [S(1)]), request("b", [S(2, 1)]), request("a", [S(3, 1)])]
    items = [(c.group, c.data) for r in reqs for c in stage_request(r).traces[TRACE]]
    whole = encode_batches(items, batch_spans=10, worker_id="w-7")
    assert [n for _p, n in whole] == [3]
    decoded = ExportTraceServiceRequest.FromString(whole[0][0])
    services = []
    for rs in decoded.resource_spans:
        attrs = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
        services.append(
            (attrs["service.name"], attrs[WORKER_ATTRIBUTE], sum(len(ss.spans) for ss in rs.scope_spans))
        )
    assert sorted(services) == [("a", "w-7", 2), ("b", "w-7", 1)]
    assert [n for _p, n in encode_batches(items, batch_spans=2)] == [2, 1]


@pytest.mark.parametrize(
    "value",
    [True, False, 0, 7, 2**62, 2**63 - 1, -5, -(2**63), 0.1, 1e-9, "trace", "héllo wörld", "x" * 300],
)
def test_encode_attributes_round_trips(value: object) -> None:
    """Appended attribute bytes decode to the same value, after the span's own attributes."""
    span = Span(name="s")
    span.attributes.add(key="first").value.string_value = "kept"
    decoded = Span.FromString(span.SerializeToString() + encode_attributes({"k": value}))
    attrs = {kv.key: kv.value for kv in decoded.attributes}
    got = attrs["k"]
    assert getattr(got, got.WhichOneof("value")) == value
    assert attrs["first"].string_value == "kept"


class RecordingSender:
    """A next hop that accepts every request and keeps it (the transport seam of ``Forwarder``)."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []

    def send(self, payload: bytes) -> SendOutcome:
        self.payloads.append(payload)
        return SendOutcome(True, False, None, "")

    def close(self) -> None:
        pass


def test_a_trace_whose_costs_overflow_int64_goes_out_as_it_arrived() -> None:
    """Costs summing past int64 nano-USD fail only their trace's rollup: it is forwarded as received."""
    with pytest.raises(ValueError, match="int64"):
        encode_attributes({conv.COST_TOTAL_NANOS: 2**63})
    huge = S(1, attributes={conv.COST_TOTAL_NANOS: 5})
    overflowing = [huge, llm(2, 1, 2**62), llm(3, 1, 2**62)]
    other = bytes.fromhex("22" * 16)
    fine = [S(1, trace_id=other), llm(2, 1, 7)]
    fine[1].trace_id = other
    sender = RecordingSender()
    config = ServeConfig(ForwardConfig("127.0.0.1:9", "grpc"), grpc_port=None, http_port=0)
    worker = ServeWorker(config, sender=sender)
    worker.accept(request("svc", overflowing + fine), "grpc")
    worker.flush()
    assert worker.stop(timeout=5)
    records = records_of(sender.payloads)
    assert len(records) == 5
    by_trace = {(r.trace_id, int.from_bytes(r.span_id, "big")): r.attributes for r in records}
    assert by_trace[(TRACE, 1)] == {conv.COST_TOTAL_NANOS: 5}, "forwarded as it arrived"
    assert by_trace[(other, 1)][conv.COST_TOTAL_NANOS] == 7


@pytest.mark.parametrize(
    ("kwargs", "env", "expected"),
    [
        ({"endpoint": "127.0.0.1:4317", "protocol": "grpc"}, {}, ("127.0.0.1:4317", "grpc")),
        (
            {},
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"},
            ("http://jaeger:4318/v1/traces", "http/protobuf"),
        ),
        (
            {},
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://j:4318/custom",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x",
            },
            ("http://j:4318/custom", "http/protobuf"),
        ),
        (
            {"endpoint": "j:4318", "protocol": "http/protobuf"},
            {},
            ("http://j:4318/v1/traces", "http/protobuf"),
        ),
        (
            {},
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://j:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            ("http://j:4317", "grpc"),
        ),
    ],
)
def test_forward_config_from_env(
    kwargs: dict[str, str], env: dict[str, str], expected: tuple[str, str]
) -> None:
    """Flags win over the OTEL_EXPORTER_OTLP_* variables; HTTP endpoints get /v1/traces as the spec says."""
    config = ForwardConfig.from_env(env=env, **kwargs)  # type: ignore[arg-type]
    assert (config.endpoint, config.protocol) == expected


def test_forward_config_reads_headers_timeout_and_compression() -> None:
    """Headers (URL-decoded, flags added last), timeout in milliseconds and gzip come from the environment."""
    env = {
        "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20abc,x-tenant=t1",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2500",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
    }
    config = ForwardConfig.from_env(endpoint="h:1", protocol="grpc", headers=[("x-tenant", "t2")], env=env)
    assert dict(config.headers) == {"authorization": "Bearer abc", "x-tenant": "t2"}
    assert config.timeout == 2.5 and config.compression == "gzip"


@pytest.mark.parametrize(
    ("kwargs", "env", "message"),
    [
        ({}, {}, "no forward endpoint"),
        ({"endpoint": "h:1", "protocol": "thrift"}, {}, "unsupported forward protocol"),
        ({"endpoint": "h:1"}, {"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, "bad OTLP header"),
        ({"endpoint": "h:1"}, {"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, "milliseconds"),
    ],
)
def test_forward_config_errors_say_what_to_fix(
    kwargs: dict[str, str], env: dict[str, str], message: str
) -> None:
    """Unusable forward settings raise ServeConfigError naming the flag or variable."""
    with pytest.raises(ServeConfigError, match=message):
        ForwardConfig.from_env(env=env, **kwargs)  # type: ignore[arg-type]


def test_cli_flags_build_the_config() -> None:
    """add_serve_parser registers `serve`; its flags land in the ServeConfig."""
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    flags = (
        "serve --grpc-port 0 --http-port 0 --forward-endpoint 127.0.0.1:9 --forward-protocol grpc "
        "--forward-header x-a=1 --linger 1.5 --max-wait 9 --max-buffered-spans 50 --worker-id w1 --relay"
    )
    args = parser.parse_args(flags.split())
    config = config_from_args(args)
    assert callable(args.func)
    assert (config.linger, config.max_wait, config.max_buffered_spans, config.worker_id) == (
        1.5,
        9.0,
        50,
        "w1",
    )
    assert config.rollup is False and dict(config.forward.headers) == {"x-a": "1"}
    with pytest.raises(ServeConfigError, match="linger"):
        bad = "serve --forward-endpoint h:1 --linger 5 --max-wait 1"
        config_from_args(parser.parse_args(bad.split()))


# --- a real downstream OTLP receiver -----------------------------------------------------------


class Downstream:
    """The next hop: a real OTLP/gRPC and OTLP/HTTP receiver that records what it gets.

    ``fail_next(n, code)`` makes the next ``n`` exports fail with gRPC ``code`` (HTTP 503 or 400).
    """

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self._cond = threading.Condition()
        self._failures: list[grpc.StatusCode] = []
        self.grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(self._grpc_export)},
        )
        self.grpc_server.add_generic_rpc_handlers((handler,))
        self.grpc_port = self.grpc_server.add_insecure_port("127.0.0.1:0")
        self.grpc_server.start()
        downstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                code = downstream._take(body)
                status = 200 if code is None else (503 if code == grpc.StatusCode.UNAVAILABLE else 400)
                reply = ExportTraceServiceResponse().SerializeToString() if status == 200 else b"no"
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.http_server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http_server.daemon_threads = True
        self.http_port = self.http_server.server_address[1]
        threading.Thread(target=self.http_server.serve_forever, daemon=True).start()

    def fail_next(self, n: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        """Fail the next ``n`` exports with ``code``."""
        with self._cond:
            self._failures.extend([code] * n)

    def _take(self, body: bytes) -> grpc.StatusCode | None:
        with self._cond:
            if self._failures:
                return self._failures.pop(0)
            self.payloads.append(body)
            self._cond.notify_all()
            return None

    def _grpc_export(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        code = self._take(raw)
        if code is not None:
            context.abort(code, "downstream says no")
        return ExportTraceServiceResponse().SerializeToString()

    def records(self) -> list[SpanRecord]:
        """Every span received so far."""
        with self._cond:
            return records_of(list(self.payloads))

    def wait_spans(self, n: int, timeout: float = 15.0) -> list[SpanRecord]:
        """Block until ``n`` spans arrived; return them."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(records_of(self.payloads)) >= n, timeout=timeout)
        records = self.records()
        assert ok, f"downstream got {len(records)} spans, expected {n}"
        return records

    def close(self) -> None:
        self.grpc_server.stop(0)
        self.http_server.shutdown()
        self.http_server.server_close()


@pytest.fixture
def downstream() -> Iterator[Downstream]:
    """A running downstream receiver."""
    d = Downstream()
    yield d
    d.close()


def make_worker(downstream: Downstream, *, protocol: str = "grpc", **settings: Any) -> ServeWorker:
    """A started worker on free ports forwarding to ``downstream``."""
    if protocol == "grpc":
        forward = ForwardConfig(
            f"127.0.0.1:{downstream.grpc_port}", "grpc", initial_backoff=0.05, max_backoff=0.2
        )
    else:
        forward = ForwardConfig(
            f"http://127.0.0.1:{downstream.http_port}/v1/traces",
            "http/protobuf",
            initial_backoff=0.05,
            max_backoff=0.2,
        )
    defaults: dict[str, Any] = {"grpc_port": 0, "http_port": 0, "linger": 0.2, "max_wait": 3.0}
    defaults.update(settings)
    forward_settings = defaults.pop("forward", {})
    if forward_settings:
        forward = ForwardConfig(**{**_fields(forward), **forward_settings})
    return ServeWorker(ServeConfig(forward=forward, **defaults)).start()


def _fields(config: ForwardConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in ForwardConfig.__dataclass_fields__}


@pytest.fixture
def worker(downstream: Downstream) -> Iterator[ServeWorker]:
    """A started worker (linger 0.2 s) forwarding over gRPC to ``downstream``; stopped after the test."""
    w = make_worker(downstream, worker_id="w-test")
    yield w
    w.stop(timeout=5)


def grpc_export(worker: ServeWorker, payload: ExportTraceServiceRequest | bytes) -> None:
    """Send one request over OTLP/gRPC (bytes are sent as they are)."""
    with grpc.insecure_channel(f"127.0.0.1:{worker.grpc_port}") as channel:
        if isinstance(payload, bytes):
            channel.unary_unary(_EXPORT)(payload, timeout=10)
        else:
            TraceServiceStub(channel).Export(payload, timeout=10)


def http_export(
    worker: ServeWorker, body: bytes, ctype: str = "application/x-protobuf", **headers: str
) -> httpx.Response:
    """POST one body to the worker's /v1/traces."""
    return httpx.post(
        f"http://127.0.0.1:{worker.http_port}/v1/traces",
        content=body,
        headers={"Content-Type": ctype, **headers},
        timeout=10,
    )


def metric(worker: ServeWorker, name: str) -> float:
    """A summed series of the worker's /metrics, read over HTTP as Prometheus would."""
    text = httpx.get(f"http://127.0.0.1:{worker.http_port}/metrics", timeout=5).text
    return sum(v for k, v in parse_metrics(text).items() if k.split("{")[0] == f"otel_costs_serve_{name}")


# --- over real sockets -----------------------------------------------------------------------


@pytest.mark.slow
def test_two_services_out_of_order_are_rolled_up_trace_wide(
    worker: ServeWorker, downstream: Downstream
) -> None:
    """The sub-agent's spans arrive first (HTTP), the orchestrator's later (gRPC): one trace-wide rollup."""
    assert http_export(worker, request("sub-agent", SUB_AGENT).SerializeToString()).status_code == 200
    grpc_export(worker, request("orchestrator", ORCHESTRATOR))
    spans = by_id(downstream.wait_spans(7))
    assert spans[1].attributes[conv.COST_TOTAL_NANOS] == TRACE_TOTAL
    assert spans[1].attributes[conv.COST_ROLLUP_SCOPE] == conv.SCOPE_TRACE
    assert {spans[i].service_name for i in (1, 10)} == {"orchestrator", "sub-agent"}
    assert len(downstream.payloads) == 1, "the whole trace goes out in one forwarded request"
    resources = ExportTraceServiceRequest.FromString(downstream.payloads[0]).resource_spans
    assert sorted(len(rs.scope_spans[0].spans) for rs in resources) == [3, 4]
    assert metric(worker, "spans_received_total") == 7
    assert metric(worker, "traces_flushed_total") == 1


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["json", "gzip"])
def test_http_accepts_otlp_json_and_gzip(worker: ServeWorker, downstream: Downstream, encoding: str) -> None:
    """OTLP/JSON with hex ids and gzip-compressed protobuf are both accepted."""
    req = request("orchestrator", ORCHESTRATOR)
    if encoding == "json":
        response = http_export(worker, request_to_json(req).encode(), "application/json")
        assert response.json() == {}
    else:
        response = http_export(worker, gzip.compress(req.SerializeToString()), **{"Content-Encoding": "gzip"})
    assert response.status_code == 200
    spans = by_id(downstream.wait_spans(4))
    assert spans[1].attributes[conv.COST_TOTAL_NANOS] == 1_250_000
    assert spans[1].trace_id == TRACE


@pytest.mark.slow
def test_full_worker_answers_retryable_errors_then_recovers(downstream: Downstream) -> None:
    """Past the span bound gRPC says UNAVAILABLE with RetryInfo and HTTP says 429 with Retry-After."""
    w = make_worker(downstream, max_buffered_spans=5, linger=30.0, max_wait=60.0)
    try:
        grpc_export(w, request("orchestrator", ORCHESTRATOR))
        with pytest.raises(grpc.RpcError) as raised:
            grpc_export(w, request("sub-agent", SUB_AGENT))
        error = raised.value
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        details = dict(error.trailing_metadata())["grpc-status-details-bin"]
        info = error_details_pb2.RetryInfo()
        assert status_pb2.Status.FromString(details).details[0].Unpack(info)
        assert info.retry_delay.seconds == 1
        response = http_export(w, request("sub-agent", SUB_AGENT).SerializeToString())
        assert response.status_code == 429 and response.headers["Retry-After"] == "1"
        assert status_pb2.Status.FromString(response.content).message.startswith("window holds")
        assert metric(w, "requests_rejected_total") == 2
        w.flush()  # the window empties (as when linger passes): room again
        downstream.wait_spans(4)
        grpc_export(w, request("sub-agent", SUB_AGENT))
    finally:
        w.stop(timeout=5)
    assert len(downstream.wait_spans(7)) == 7


def _gzip_bomb() -> bytes:
    return gzip.compress(b"\0" * (3 * 1024 * 1024))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "ctype", "headers", "status", "says"),
    [
        (b"\xff\xff\xff garbage", "application/x-protobuf", {}, 400, "cannot decode"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            "application/json",
            {},
            400,
            "cannot decode",
        ),
        (b"not json", "application/json", {}, 400, "cannot decode"),
        (b"x" * (2 * 1024 * 1024), "application/x-protobuf", {}, 413, "exceeds --max-request-bytes"),
        (_gzip_bomb(), "application/x-protobuf", {"Content-Encoding": "gzip"}, 413, "decompressed"),
        (b"\x1f\x8bnot gzip", "application/x-protobuf", {"Content-Encoding": "gzip"}, 400, "gzip"),
        (b"hello", "text/plain", {}, 415, "unsupported Content-Type"),
        (b"hello", "application/x-protobuf", {"Content-Encoding": "br"}, 415, "Content-Encoding"),
    ],
    ids=[
        "garbage",
        "bad-hex-id",
        "not-json",
        "oversized",
        "gzip-bomb",
        "bad-gzip",
        "content-type",
        "encoding",
    ],
)
def test_http_bad_payloads_get_clear_errors_and_the_server_stays_up(
    downstream: Downstream, body: bytes, ctype: str, headers: dict[str, str], status: int, says: str
) -> None:
    """Malformed, oversized or unsupported HTTP payloads get 4xx with a message; good requests still work."""
    w = make_worker(downstream, max_request_bytes=1024 * 1024)
    try:
        response = http_export(w, body, ctype, **headers)
        assert response.status_code == status
        message = (
            response.json()["message"]
            if ctype == "application/json"
            else status_pb2.Status.FromString(response.content).message
        )
        assert says in message
        assert httpx.get(f"http://127.0.0.1:{w.http_port}/healthz", timeout=5).status_code == 200
        assert http_export(w, request("o", ORCHESTRATOR).SerializeToString()).status_code == 200
        assert metric(w, "requests_rejected_total") == 1
    finally:
        w.stop(timeout=5)
    assert len(downstream.wait_spans(4)) == 4


@pytest.mark.slow
@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"\xff\xff\xff garbage", "cannot decode"),
        (b"\x0a" + b"\x80" * 9, "cannot decode"),
        (b"\0" * 1_500_000, "exceeds"),
    ],
    ids=["garbage", "truncated", "oversized"],
)
def test_grpc_bad_payloads_get_invalid_argument_and_the_server_stays_up(
    downstream: Downstream, payload: bytes, says: str
) -> None:
    """Undecodable or oversized gRPC requests get INVALID_ARGUMENT (not retried); good requests still work."""
    w = make_worker(downstream, max_request_bytes=1024 * 1024)
    try:
        with pytest.raises(grpc.RpcError) as raised:
            grpc_export(w, payload)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert says in raised.value.details()
        grpc_export(w, request("o", ORCHESTRATOR))
    finally:
        w.stop(timeout=5)
    assert len(downstream.wait_spans(4)) == 4


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_forward_failures_are_retried_until_delivered(downstream: Downstream, protocol: str) -> None:
    """The next hop failing twice with a retryable error delays delivery but loses nothing."""
    downstream.fail_next(2)
    w = make_worker(downstream, protocol=protocol)
    try:
        grpc_export(w, request("o", ORCHESTRATOR))
        spans = by_id(downstream.wait_spans(4))
        assert spans[1].attributes[conv.COST_TOTAL_NANOS] == 1_250_000
        assert metric(w, "forward_requests_total") == 3
        assert w.metrics.value(SPANS_FORWARDED) == 4
    finally:
        w.stop(timeout=5)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("code", "failures", "reason"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 1, "rejected_downstream"),
        (grpc.StatusCode.UNAVAILABLE, 100, "forward_failed"),
    ],
    ids=["permanent", "retries-exhausted"],
)
def test_forward_gives_up_and_counts_the_loss(
    downstream: Downstream, code: grpc.StatusCode, failures: int, reason: str
) -> None:
    """A permanent error drops at once; retryable ones after max_elapsed; both are counted, never raised."""
    downstream.fail_next(failures, code)
    w = make_worker(downstream, forward={"max_elapsed": 0.5})
    try:
        grpc_export(w, request("o", ORCHESTRATOR))
        w.flush()
    finally:
        w.stop(timeout=5)
    assert w.metrics.value(SPANS_DROPPED, reason=reason) == 4
    assert w.metrics.value(SPANS_FORWARDED) == 0


@pytest.mark.slow
def test_late_spans_are_forwarded_flagged_partial(worker: ServeWorker, downstream: Downstream) -> None:
    """Spans arriving after their trace went out are forwarded, flagged cost.rollup.partial=late."""
    grpc_export(worker, request("orchestrator", ORCHESTRATOR))
    downstream.wait_spans(4)
    grpc_export(worker, request("sub-agent", SUB_AGENT))
    late = by_id(downstream.wait_spans(7))
    assert late[10].attributes[conv.COST_ROLLUP_PARTIAL_REASON] == "late"
    assert metric(worker, "traces_flushed_total") == 2


@pytest.mark.slow
def test_flood_past_the_memory_bound_is_refused_not_lost(downstream: Downstream) -> None:
    """Eight senders flooding a small worker get refusals; whatever was accepted is forwarded; it stays up."""
    w = make_worker(downstream, max_buffered_spans=2_000, linger=0.3, max_wait=1.0)
    accepted = 0
    refused = 0
    lock = threading.Lock()

    def sender(k: int) -> None:
        nonlocal accepted, refused
        with grpc.insecure_channel(f"127.0.0.1:{w.grpc_port}") as channel:
            stub = TraceServiceStub(channel)
            for i in range(40):
                tid = (k * 1000 + i).to_bytes(16, "big")
                spans = [S(1, trace_id=tid)] + [S(n, 1, trace_id=tid) for n in range(2, 100)]
                try:
                    stub.Export(request("flood", spans), timeout=10)
                    with lock:
                        accepted += 99
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE
                    with lock:
                        refused += 1

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert refused > 0, "the flood never hit the bound"
        assert httpx.get(f"http://127.0.0.1:{w.http_port}/healthz", timeout=5).status_code == 200
    finally:
        assert w.stop(timeout=15)
    assert w.metrics.value(SPANS_RECEIVED) == accepted
    assert w.metrics.value(SPANS_FORWARDED) == accepted
    assert len(downstream.records()) == accepted


@pytest.mark.slow
def test_health_and_metrics_endpoints(worker: ServeWorker) -> None:
    """GET /healthz answers ok; /metrics is Prometheus text naming the worker; other paths 404."""
    base = f"http://127.0.0.1:{worker.http_port}"
    assert httpx.get(f"{base}/healthz").text == "ok\n"
    text = httpx.get(f"{base}/metrics").text
    assert "# TYPE otel_costs_serve_spans_received_total counter" in text
    assert 'otel_costs_serve_info{worker="w-test"} 1' in text
    assert httpx.get(f"{base}/nope").status_code == 404


@pytest.mark.slow
def test_sigterm_flushes_what_the_window_holds(downstream: Downstream, tmp_path: Path) -> None:
    """`python -m otel_costs._serve` on SIGTERM rolls up and forwards the buffered trace, then exits 0."""
    from infra import free_port, poll_until

    grpc_port, http_port = free_port(), free_port()
    log = (tmp_path / "serve.log").open("wb")
    argv = [sys.executable, "-m", "otel_costs._serve", "--grpc-port", str(grpc_port)]
    argv += ["--http-port", str(http_port), "--linger", "60", "--max-wait", "120"]
    argv += ["--forward-endpoint", f"127.0.0.1:{downstream.grpc_port}", "--forward-protocol", "grpc"]
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        poll_until(lambda: _healthy(http_port), timeout=30, what="serve /healthz")
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            TraceServiceStub(channel).Export(request("orchestrator", ORCHESTRATOR + SUB_AGENT), timeout=10)
        assert downstream.records() == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    spans = by_id(downstream.wait_spans(7))
    assert spans[1].attributes[conv.COST_TOTAL_NANOS] == TRACE_TOTAL


def _healthy(port: int) -> bool | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200 or None
    except httpx.TransportError:
        return None


@pytest.mark.slow
def test_run_tunes_the_collector_while_serving_and_restores_it(downstream: Downstream) -> None:
    """run() serves with its collector thresholds, flushes what it holds on SIGTERM, then restores them."""
    before = gc.get_threshold()
    seen: dict[str, object] = {}

    def ready(worker: ServeWorker) -> None:
        seen["threshold"] = gc.get_threshold()
        grpc_export(worker, request("orchestrator", ORCHESTRATOR))
        os.kill(os.getpid(), signal.SIGTERM)

    forward = ForwardConfig(f"127.0.0.1:{downstream.grpc_port}", "grpc")
    assert run(ServeConfig(forward, grpc_port=0, http_port=0, linger=30.0, max_wait=60.0), ready=ready) == 0
    assert seen["threshold"] == _SERVE_GC_THRESHOLD
    assert gc.get_threshold() == before
    assert by_id(downstream.wait_spans(4))[1].attributes[conv.COST_TOTAL_NANOS] == 1_250_000


@pytest.mark.slow
def test_stopping_worker_refuses_with_a_retryable_answer(downstream: Downstream) -> None:
    """Once stop() began, requests get UNAVAILABLE (gRPC) or 503 (HTTP): senders retry later."""
    w = make_worker(downstream)
    w._stopping.set()  # the state stop() enters first; the receivers are still bound here
    try:
        with pytest.raises(grpc.RpcError) as raised:
            grpc_export(w, request("o", ORCHESTRATOR))
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        response = http_export(w, request("o", ORCHESTRATOR).SerializeToString())
        assert response.status_code == 503 and "Retry-After" in response.headers
        assert httpx.get(f"http://127.0.0.1:{w.http_port}/healthz").status_code == 503
    finally:
        w._stopping.clear()
        w.stop(timeout=5)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["grpc_port", "http_port"])
def test_a_taken_port_is_a_clear_startup_error(downstream: Downstream, which: str) -> None:
    """Binding a port something else listens on fails at start with an error naming the port."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises((ServeConfigError, OSError), match=f"{port}|in use"):
            make_worker(downstream, **{which: port})
