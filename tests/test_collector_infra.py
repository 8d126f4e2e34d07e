"""The shipped Collector and Jaeger configs, run for real: what the end-to-end tests stand on.

Spans go from the real OTel Python SDK through the gateway Collector (``collector/gateway.yaml``)
to Jaeger v2 (``collector/jaeger.yaml``) and are read back from Jaeger's HTTP API. The routing test
puts two Collectors running ``collector/backend-jaeger.yaml`` where the worker Collectors go, each
stamping its name on the spans it forwards, and checks that the gateway sends every trace whole to
one of them. ``collector/docker-compose.yaml`` is checked against the configs and build.sh.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra import (
    BACKEND_JAEGER_CONFIG,
    BACKEND_TEMPO_CONFIG,
    BUILD_SCRIPT,
    COLLECTOR_DIR,
    GATEWAY_CONFIG,
    JAEGER_CONFIG,
    WORKER_CONFIG,
    CollectorProcess,
    ensure_binaries,
    jaeger_trace,
    run_collector,
    run_jaeger,
    tags,
    wait_for_traces,
)
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from otel_costs import conventions as conv

#: Resource attribute each stand-in worker upserts on what it forwards (test-only, not a convention).
STANDIN_ATTRIBUTE = "test.standin"


def _provider(service: str, exporter: SpanExporter) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporter(protocol: str, gateway: CollectorProcess) -> SpanExporter:
    if protocol == "grpc":
        return GrpcSpanExporter(endpoint=gateway.otlp_grpc_endpoint, insecure=True)
    return HttpSpanExporter(endpoint=gateway.otlp_http_traces_url)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "env"),
    [
        (GATEWAY_CONFIG, {"WORKER_ENDPOINTS": "127.0.0.1:14317,127.0.0.1:24317"}),
        (GATEWAY_CONFIG, {"WORKER_ENDPOINTS": "[127.0.0.1:14317, 127.0.0.1:24317]"}),
        (BACKEND_JAEGER_CONFIG, {"JAEGER_OTLP_ENDPOINT": "127.0.0.1:14317"}),
        (BACKEND_TEMPO_CONFIG, {"TEMPO_OTLP_ENDPOINT": "127.0.0.1:14317"}),
        (WORKER_CONFIG, {"EXPORT_OTLP_ENDPOINT": "127.0.0.1:14317"}),
        (WORKER_CONFIG, {"EXPORT_OTLP_ENDPOINT": "127.0.0.1:14317", "OTELCOL_MEMORY_LIMIT_MIB": "64"}),
    ],
    ids=[
        "gateway-comma-list",
        "gateway-yaml-list",
        "backend-jaeger",
        "backend-tempo",
        "worker",
        "worker-mib",
    ],
)
def test_collector_configs_validate(config: Path, env: dict[str, str]) -> None:
    """Each shipped Collector config passes the built Collector's own `validate` command."""
    collector_bin, _ = ensure_binaries()
    result = subprocess.run(
        [str(collector_bin), "validate", "--config", str(config)],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "missing"),
    [
        (GATEWAY_CONFIG, "no endpoints"),
        (BACKEND_JAEGER_CONFIG, "endpoint"),
        (BACKEND_TEMPO_CONFIG, "endpoint"),
        (WORKER_CONFIG, "endpoint"),
    ],
    ids=["gateway", "backend-jaeger", "backend-tempo", "worker"],
)
def test_collector_configs_reject_missing_downstream(config: Path, missing: str) -> None:
    """A Collector config whose downstream variable is unset fails validation with a clear error."""
    collector_bin, _ = ensure_binaries()
    result = subprocess.run(
        [str(collector_bin), "validate", "--config", str(config)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert missing in result.stderr


@pytest.mark.slow
def test_jaeger_config_validates() -> None:
    """The shipped Jaeger config passes the built Jaeger's `validate` command."""
    _, jaeger_bin = ensure_binaries()
    result = subprocess.run(
        [str(jaeger_bin), "validate", "--config", str(JAEGER_CONFIG)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_span_attributes_survive_gateway_to_jaeger(tmp_path: Path, protocol: str) -> None:
    """Cost doubles, exact nano-USD ints, strings and bools arrive in Jaeger exactly as the SDK sent them."""
    service = "infra-attributes"
    # Doubles whose shortest repr has 17 digits, and an int above 2**53: any float detour loses them.
    root_attributes: dict[str, Any] = {
        conv.COST_TOTAL: 0.30000000000000004,
        conv.COST_TOTAL_NANOS: 2**53 + 1,
        conv.COST_CURRENCY: conv.CURRENCY_USD,
        conv.COST_ROLLUP_PARTIAL: False,
        conv.WORKFLOW_ID: "wf-1",
    }
    child_attributes: dict[str, Any] = {
        conv.COST_DIRECT: 1.2345678901234567e-07,
        conv.COST_DIRECT_NANOS: 123,
        conv.COST_STATUS: conv.STATUS_PRICED,
        conv.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
    }
    with (
        run_jaeger(log_dir=tmp_path) as jaeger,
        run_collector(
            GATEWAY_CONFIG, {"WORKER_ENDPOINTS": jaeger.otlp_grpc_endpoint}, log_dir=tmp_path, name="gateway"
        ) as gateway,
    ):
        provider = _provider(service, _exporter(protocol, gateway))
        tracer = provider.get_tracer("tests.infra")
        with (
            tracer.start_as_current_span("workflow", attributes=root_attributes) as root,
            tracer.start_as_current_span("chat", attributes=child_attributes),
        ):
            pass
        provider.shutdown()

        trace_id = trace.format_trace_id(root.get_span_context().trace_id)
        wait_for_traces(jaeger.query_port, service, min_traces=1, min_spans=2)
        stored = jaeger_trace(jaeger.query_port, trace_id)

    assert stored is not None
    by_name = {span["operationName"]: tags(span) for span in stored["spans"]}
    for name, sent in (("workflow", root_attributes), ("chat", child_attributes)):
        received = by_name[name]
        for key, value in sent.items():
            assert received[key] == value, key
            assert type(received[key]) is type(value), key


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "variable"),
    [(BACKEND_JAEGER_CONFIG, "JAEGER_OTLP_ENDPOINT"), (BACKEND_TEMPO_CONFIG, "TEMPO_OTLP_ENDPOINT")],
    ids=["backend-jaeger", "backend-tempo"],
)
def test_backend_config_forwards_to_its_otlp_backend(tmp_path: Path, config: Path, variable: str) -> None:
    """A backend Collector forwards what it receives to the OTLP endpoint its variable names.

    Jaeger stands in for Tempo too: both take OTLP/gRPC, which is all the Tempo config speaks.
    """
    service = "infra-backend"
    with (
        run_jaeger(log_dir=tmp_path) as jaeger,
        run_collector(
            config, {variable: jaeger.otlp_grpc_endpoint}, log_dir=tmp_path, name="backend"
        ) as backend,
    ):
        provider = _provider(service, _exporter("grpc", backend))
        with provider.get_tracer("tests.infra").start_as_current_span(
            "forwarded", attributes={conv.COST_TOTAL: 0.5}
        ):
            pass
        provider.shutdown()
        stored = wait_for_traces(jaeger.query_port, service, min_traces=1, min_spans=1)

    assert [tags(span)[conv.COST_TOTAL] for span in stored[0]["spans"]] == [0.5]


@pytest.mark.slow
def test_gateway_routes_each_trace_whole_to_one_worker(tmp_path: Path) -> None:
    """With two downstream workers, both get traffic and every trace's spans all go to the same one."""
    service = "infra-routing"
    traces_sent, children_per_trace = 30, 3
    overlay = tmp_path / "standin-overlay.yaml"
    overlay.write_text(
        "processors:\n"
        "  resource/standin:\n"
        "    attributes:\n"
        f"      - key: {STANDIN_ATTRIBUTE}\n"
        "        value: ${env:STANDIN_NAME}\n"
        "        action: upsert\n"
        "service:\n"
        "  pipelines:\n"
        "    traces:\n"
        "      processors: [memory_limiter, resource/standin, batch]\n"
    )
    with run_jaeger(log_dir=tmp_path) as jaeger:
        standin_env = {"JAEGER_OTLP_ENDPOINT": jaeger.otlp_grpc_endpoint}
        configs = [BACKEND_JAEGER_CONFIG, overlay]
        with (
            run_collector(configs, {**standin_env, "STANDIN_NAME": "w1"}, log_dir=tmp_path, name="w1") as w1,
            run_collector(configs, {**standin_env, "STANDIN_NAME": "w2"}, log_dir=tmp_path, name="w2") as w2,
        ):
            workers = f"{w1.otlp_grpc_endpoint},{w2.otlp_grpc_endpoint}"
            with run_collector(
                GATEWAY_CONFIG, {"WORKER_ENDPOINTS": workers}, log_dir=tmp_path, name="gateway"
            ) as gateway:
                provider = _provider(service, _exporter("grpc", gateway))
                tracer = provider.get_tracer("tests.infra")
                roots = [tracer.start_span(f"root-{i}") for i in range(traces_sent)]
                # Each round is one export request holding one span of every trace, so each trace
                # reaches the gateway in several requests that it must route the same way.
                for round_number in range(children_per_trace):
                    for root in roots:
                        with tracer.start_as_current_span(
                            f"child-{round_number}", context=trace.set_span_in_context(root)
                        ):
                            pass
                    provider.force_flush()
                for root in roots:
                    root.end()
                provider.shutdown()

                total_spans = traces_sent * (children_per_trace + 1)
                stored = wait_for_traces(
                    jaeger.query_port, service, min_traces=traces_sent, min_spans=total_spans
                )
            accepted = {
                "w1": w1.metric("otelcol_receiver_accepted_spans"),
                "w2": w2.metric("otelcol_receiver_accepted_spans"),
            }

    spans_per_worker: Counter[str] = Counter()
    for stored_trace in stored:
        processes = stored_trace["processes"]
        workers_of_trace = {
            tags(processes[span["processID"]])[STANDIN_ATTRIBUTE] for span in stored_trace["spans"]
        }
        assert len(workers_of_trace) == 1, f"trace {stored_trace['traceID']} split over {workers_of_trace}"
        spans_per_worker[workers_of_trace.pop()] += len(stored_trace["spans"])
    assert len(stored) == traces_sent
    assert set(spans_per_worker) == {"w1", "w2"}
    # Each stand-in's own receiver count agrees with what Jaeger attributes to it.
    assert accepted == {name: float(count) for name, count in spans_per_worker.items()}


def _required_variables(config: Path) -> set[str]:
    """``${env:X}`` references in ``config`` that have no ``:-default``."""
    return set(re.findall(r"\$\{env:([A-Z0-9_]+)\}", config.read_text()))


def _build_version(name: str) -> str:
    match = re.search(rf"^{name}=v(\S+)$", BUILD_SCRIPT.read_text(), re.MULTILINE)
    assert match, name
    return match.group(1)


def test_docker_compose_matches_configs_and_build() -> None:
    """Compose mounts existing configs, sets their required variables, pins the releases build.sh builds."""
    compose = yaml.safe_load((COLLECTOR_DIR / "docker-compose.yaml").read_text())
    services: dict[str, Any] = compose["services"]
    images = set()
    for name, service in services.items():
        images.add(service["image"])
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            config = COLLECTOR_DIR / source
            assert config.is_file(), f"{name} mounts missing {source}"
            assert f"--config={target}" in service["command"], name
            missing = _required_variables(config) - set(service.get("environment", {}))
            assert not missing, f"{name} runs {source} without {missing}"
    worker_hosts = {
        endpoint.split(":")[0]
        for endpoint in services["gateway"]["environment"]["WORKER_ENDPOINTS"].split(",")
    }
    workers = {name: service for name, service in services.items() if name.startswith("worker-")}
    assert worker_hosts == set(workers)
    # The gateway reaches each worker on worker.yaml's OTLP/gRPC port.
    worker_port = re.search(r"OTELCOL_OTLP_GRPC_PORT:-(\d+)", WORKER_CONFIG.read_text())
    assert worker_port
    assert {
        endpoint.split(":")[1]
        for endpoint in services["gateway"]["environment"]["WORKER_ENDPOINTS"].split(",")
    } == {worker_port.group(1)}
    # Workers are the project's distribution with worker.yaml (no Python serve); the gateway runs it too.
    for name, service in workers.items():
        assert service["command"] == ["--config=/etc/otel-costs/worker.yaml"], name
        assert service["image"] == services["gateway"]["image"] == "otel-costs-collector:local", name
    dockerfile = COLLECTOR_DIR / services["worker-1"]["build"]["dockerfile"].removeprefix("collector/")
    text = dockerfile.read_text()
    assert "collector/build.sh" in text and "otelcol-otel-costs" in text and "worker.yaml" in text
    assert "otel-costs serve" not in text and "pip install" not in text
    assert f"otel/opentelemetry-collector-contrib:{_build_version('OCB_VERSION')}" in images
    assert f"jaegertracing/jaeger:{_build_version('JAEGER_RELEASE')}" in images
