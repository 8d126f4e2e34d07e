"""configure() and default_exporter(): the one-call pipeline and the standard OTEL_* variables.

The OTLP/JSON reader (``pipeline._otlp``, internal) reads back what the embedded default wrote.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_costs
from otel_costs import conventions as conv
from otel_costs.pipeline import ConfigurationError, OtlpJsonFileExporter, default_exporter
from otel_costs.pipeline._otlp import SpanRecord, iter_records, read_json_file

RunFn = Callable[[trace.TracerProvider], None]
ROOT = "invoke_agent coordinator"
WAIT = 30.0


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No OTEL_* variables from the outside, and the default file lands in tmp_path."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def root_of(records: list[SpanRecord]) -> SpanRecord:
    (root,) = [r for r in records if r.name == ROOT]
    return root


@pytest.mark.parametrize("how", ["file_path", "env", "default"])
def test_without_endpoint_spans_go_to_an_otlp_json_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    hierarchical_book: otel_costs.PriceBook,
    run_hierarchical: RunFn,
    how: str,
) -> None:
    """With no endpoint, rolled-up spans go to file_path, $OTEL_COSTS_FILE or the default file."""
    path = {
        "file_path": tmp_path / "a.jsonl",
        "env": tmp_path / "b.jsonl",
        "default": tmp_path / "otel-costs-traces.jsonl",
    }[how]
    if how == "env":
        monkeypatch.setenv("OTEL_COSTS_FILE", str(path))
    provider = otel_costs.configure(
        file_path=path if how == "file_path" else None, price_book=hierarchical_book, set_global=False
    )
    run_hierarchical(provider)
    provider.shutdown()
    records, problems = read_json_file(path)
    assert problems == []
    assert len(records) == 6
    assert root_of(records).attributes[conv.COST_TOTAL_NANOS] == 33_250_000


@pytest.mark.parametrize(
    ("env", "service_name", "expected"),
    [
        ({"OTEL_SERVICE_NAME": "from-env"}, None, "from-env"),
        ({"OTEL_SERVICE_NAME": "from-env"}, "explicit", "explicit"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs,team=x"}, None, "from-attrs"),
    ],
)
def test_service_name(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run_hierarchical: RunFn,
    env: dict[str, str],
    service_name: str | None,
    expected: str,
) -> None:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are honoured; service_name= wins over them."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    provider = otel_costs.configure(
        service_name=service_name, file_path=tmp_path / "t.jsonl", set_global=False
    )
    run_hierarchical(provider)
    provider.shutdown()
    records, _ = read_json_file(tmp_path / "t.jsonl")
    assert {r.service_name for r in records} == {expected}


@pytest.mark.parametrize(
    ("env", "endpoint", "expected"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, None, HttpExporter),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            None,
            HttpExporter,
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            None,
            GrpcExporter,
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317/",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            },
            None,
            GrpcExporter,
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            },
            None,
            GrpcExporter,
        ),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "http://127.0.0.1:4317", GrpcExporter),
        ({}, "http://127.0.0.1:4318", HttpExporter),
        ({"OTEL_TRACES_EXPORTER": "console"}, None, ConsoleSpanExporter),
        ({}, None, OtlpJsonFileExporter),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            None,
            OtlpJsonFileExporter,
        ),  # a protocol alone is no endpoint
    ],
)
def test_default_exporter_picks_the_exporter(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], endpoint: str | None, expected: type
) -> None:
    """An OTLP endpoint selects OTLP over the set protocol (default http/protobuf), else the file."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    exporter = default_exporter(endpoint=endpoint)
    try:
        assert type(exporter) is expected
    finally:
        assert exporter is not None
        exporter.shutdown()


def test_traces_exporter_none_exports_nothing_but_still_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_TRACES_EXPORTER=none picks no exporter; configure() still prices spans for cost listeners."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert default_exporter() is None
    seen: list[int] = []

    class Listener:
        def on_span_cost(self, span: ReadableSpan, cost_nanos: int) -> None:
            seen.append(cost_nanos)

    provider = otel_costs.configure(
        set_global=False, prices={"gpt-5.2": {"input": 3, "output": 15}}, listeners=[Listener()]
    )
    tracer = provider.get_tracer("t")
    attributes = {
        "gen_ai.request.model": "gpt-5.2",
        "gen_ai.usage.input_tokens": 1500,
        "gen_ai.usage.output_tokens": 500,
    }
    tracer.start_span("chat gpt-5.2", attributes=attributes).end()
    provider.shutdown()
    assert seen == [12_000_000]


def test_explicit_file_path_wins_over_console_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An explicit file_path= is used even when OTEL_TRACES_EXPORTER says console."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    exporter = default_exporter(file_path=tmp_path / "t.jsonl")
    assert isinstance(exporter, OtlpJsonFileExporter)
    exporter.shutdown()


def test_http_json_protocol_is_refused_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    """http/json is not silently sent as protobuf: configure() says which protocols work."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ConfigurationError, match="http/protobuf"):
        otel_costs.configure(set_global=False)


@pytest.mark.parametrize("protocol", ["thrift", "http", "GRPC ", "zipkin"])
def test_bad_protocol_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    """An unknown OTEL_EXPORTER_OTLP_PROTOCOL is refused with a message naming the valid values."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    with pytest.raises(ConfigurationError, match="grpc"):
        otel_costs.configure(set_global=False)


@pytest.mark.parametrize(
    "kwargs",
    [
        {
            "prices": {"m": {"input": 1, "output": 1}},
            "price_book": otel_costs.PriceBook(use_genai_prices=False),
        },
        {"exporter": InMemorySpanExporter(), "endpoint": "http://127.0.0.1:4318"},
        {"exporter": InMemorySpanExporter(), "file_path": "x.jsonl"},
        {"endpoint": "http://127.0.0.1:4318", "file_path": "x.jsonl"},
    ],
    ids=["prices+price_book", "exporter+endpoint", "exporter+file_path", "endpoint+file_path"],
)
def test_conflicting_arguments(kwargs: dict[str, Any]) -> None:
    """Arguments that cannot both apply are a ConfigurationError, not a silent choice."""
    with pytest.raises(ConfigurationError, match="not both"):
        otel_costs.configure(set_global=False, **kwargs)


def test_sdk_disabled_installs_no_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_hierarchical: RunFn
) -> None:
    """With OTEL_SDK_DISABLED=true nothing is recorded or written."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    path = tmp_path / "t.jsonl"
    provider = otel_costs.configure(file_path=path, set_global=False)
    run_hierarchical(provider)
    provider.shutdown()
    assert not path.exists()


def test_explicit_exporter_and_prices(run_hierarchical: RunFn) -> None:
    """exporter= receives the costed spans; prices= overrides are used for pricing."""
    memory = InMemorySpanExporter()
    provider = otel_costs.configure(
        exporter=memory,
        prices={"gpt-5.2": {"input": 3, "output": 15}, "gemini-3-pro": {"input": 2.5, "output": 10}},
        set_global=False,
    )
    run_hierarchical(provider)
    assert provider.force_flush() is True
    (root,) = [s for s in memory.get_finished_spans() if s.name == ROOT]
    assert (root.attributes or {})[conv.COST_TOTAL_NANOS] == 33_250_000
    provider.shutdown()


def test_prices_from_a_file(tmp_path: Path, run_hierarchical: RunFn) -> None:
    """prices= may be a TOML file of overrides."""
    prices = tmp_path / "prices.toml"
    prices.write_text('["gpt-5.2"]\ninput = 3\noutput = 15\n\n["gemini-3-pro"]\ninput = 2.5\noutput = 10\n')
    memory = InMemorySpanExporter()
    provider = otel_costs.configure(exporter=memory, prices=prices, set_global=False)
    run_hierarchical(provider)
    provider.force_flush()
    (root,) = [s for s in memory.get_finished_spans() if s.name == ROOT]
    assert (root.attributes or {})[conv.COST_TOTAL_NANOS] == 33_250_000
    provider.shutdown()


# --- real OTLP receivers on loopback ---------------------------------------------------------


class Received:
    """What a loopback OTLP receiver got."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, trace_service_pb2.ExportTraceServiceRequest]] = []
        self.headers: list[dict[str, str]] = []
        self.event = threading.Event()

    def add(self, where: str, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        self.requests.append((where, request))
        self.event.set()

    def records(self) -> list[SpanRecord]:
        return [r for _, request in self.requests for r in iter_records(request)]


@pytest.fixture
def http_receiver() -> Iterator[tuple[str, Received]]:
    """An OTLP/HTTP (protobuf) receiver on 127.0.0.1: (base URL, what it received)."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            received.headers.append({key.lower(): value for key, value in self.headers.items()})
            received.add(self.path, request)
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def grpc_receiver() -> Iterator[tuple[str, Received]]:
    """An OTLP/gRPC receiver on 127.0.0.1: (endpoint URL, what it received)."""
    received = Received()

    class Service(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(
            self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
        ) -> trace_service_pb2.ExportTraceServiceResponse:
            received.add("Export", request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}", received
    server.stop(grace=None)


def test_http_endpoint_receives_costed_spans(
    http_receiver: tuple[str, Received], hierarchical_book: otel_costs.PriceBook, run_hierarchical: RunFn
) -> None:
    """configure(endpoint=...) sends OTLP/HTTP protobuf to {endpoint}/v1/traces with the rolled-up costs."""
    url, received = http_receiver
    provider = otel_costs.configure(endpoint=url, price_book=hierarchical_book, set_global=False)
    run_hierarchical(provider)
    provider.shutdown()
    assert received.event.wait(WAIT)
    assert {where for where, _ in received.requests} == {"/v1/traces"}
    assert root_of(received.records()).attributes[conv.COST_TOTAL_NANOS] == 33_250_000


def test_grpc_endpoint_from_env_receives_costed_spans(
    grpc_receiver: tuple[str, Received],
    monkeypatch: pytest.MonkeyPatch,
    hierarchical_book: otel_costs.PriceBook,
    run_hierarchical: RunFn,
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT + OTEL_EXPORTER_OTLP_PROTOCOL=grpc send the costed spans over gRPC."""
    url, received = grpc_receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "grpc-test")
    provider = otel_costs.configure(price_book=hierarchical_book, set_global=False)
    run_hierarchical(provider)
    provider.shutdown()
    assert received.event.wait(WAIT)
    records = received.records()
    assert {r.service_name for r in records} == {"grpc-test"}
    assert root_of(records).attributes[conv.COST_TOTAL_NANOS] == 33_250_000


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
def test_endpoint_env_with_file_path_sends_and_writes(
    http_receiver: tuple[str, Received],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    hierarchical_book: otel_costs.PriceBook,
    run_hierarchical: RunFn,
    variable: str,
) -> None:
    """With an OTLP endpoint in the env, configure(file_path=...) (the demo) sends there and writes it."""
    url, received = http_receiver
    monkeypatch.setenv(variable, url if variable == "OTEL_EXPORTER_OTLP_ENDPOINT" else url + "/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=billing,authorization=Bearer%20t")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "5000")
    path = tmp_path / "demo.jsonl"
    provider = otel_costs.configure(
        service_name="demo", file_path=path, price_book=hierarchical_book, set_global=False
    )
    run_hierarchical(provider)
    provider.shutdown()
    assert received.event.wait(WAIT)
    assert {where for where, _ in received.requests} == {"/v1/traces"}
    assert root_of(received.records()).attributes[conv.COST_TOTAL_NANOS] == 33_250_000
    assert received.headers[0]["x-team"] == "billing"
    assert received.headers[0]["authorization"] == "Bearer t"
    records, problems = read_json_file(path)
    assert problems == []
    assert root_of(records).attributes[conv.COST_TOTAL_NANOS] == 33_250_000


def test_traces_exporter_otlp_without_endpoint_uses_the_sdk_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_TRACES_EXPORTER=otlp with no endpoint is OTLP to the exporter's default, as with the SDK alone."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    exporter = default_exporter()
    assert type(exporter) is HttpExporter
    exporter.shutdown()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    exporter = default_exporter()
    assert type(exporter) is GrpcExporter
    exporter.shutdown()


@pytest.mark.parametrize("value", ["zipkin", "jaeger", "otlp,prometheus"])
def test_unknown_traces_exporter_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """An OTEL_TRACES_EXPORTER this library cannot honour is refused with the values it can."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    with pytest.raises(ConfigurationError, match="'otlp', 'console' or 'none'"):
        otel_costs.configure(set_global=False)


def test_explicit_exporter_wins_over_the_endpoint_env(
    monkeypatch: pytest.MonkeyPatch, run_hierarchical: RunFn
) -> None:
    """exporter= gets the spans even when OTEL_EXPORTER_OTLP_ENDPOINT is set (nothing else is built)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    memory = InMemorySpanExporter()
    provider = otel_costs.configure(
        exporter=memory, prices={"gpt-5.2": {"input": 3, "output": 15}}, set_global=False
    )
    run_hierarchical(provider)
    assert provider.force_flush() is True
    assert any(s.name == ROOT for s in memory.get_finished_spans())
    provider.shutdown()


def test_listeners_hear_llm_calls_the_sampler_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    """With listeners, an LLM call in a trace the sampler drops is still priced for them, not exported."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    seen: list[tuple[str, int]] = []

    class Listener:
        def on_span_cost(self, span: ReadableSpan, cost_nanos: int) -> None:
            seen.append((span.name, cost_nanos))

    memory = InMemorySpanExporter()
    provider = otel_costs.configure(
        exporter=memory,
        prices={"gpt-5.2": {"input": 3, "output": 15}},
        listeners=[Listener()],
        set_global=False,
    )
    tracer = provider.get_tracer("t")
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-5.2",
        "gen_ai.usage.input_tokens": 1500,
        "gen_ai.usage.output_tokens": 500,
    }
    with tracer.start_as_current_span("handler"):
        tracer.start_span("chat gpt-5.2", attributes=attributes).end()
    provider.force_flush()
    provider.shutdown()
    assert seen == [("chat gpt-5.2", 12_000_000)]
    assert memory.get_finished_spans() == ()
