"""End to end: two services -> gateway Collector -> two worker Collectors (costrollup) -> Jaeger v2.

The orchestrator and sub-agent services (``tests/e2e_services.py``, two processes on
``otel_costs.configure()`` defaults, both calling the fake LLM provider through
``instrument_httpx``) export OTLP/HTTP to the gateway Collector (``collector/gateway.yaml``), whose
``load_balancing`` exporter routes by trace ID to two workers (``collector/worker.yaml``:
memory_limiter, costrollup, batch, on its defaults), which export to Jaeger. Every trace is read
back from Jaeger's ``/api/traces/<id>``: its root's ``cost.total_nanos`` must be the exact sum of
its LLM calls' ``cost.direct_nanos`` across both services, scope ``trace``, with no partial flag.
The faults are in ``tests/test_collector_faults.py``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_services import CALLS_PER_TRACE
from infra import (
    GATEWAY_CONFIG,
    LOOPBACK,
    WORKER_CONFIG,
    CollectorProcess,
    free_port,
    jaeger_trace,
    poll_until,
    run_collector,
    run_jaeger,
    tags,
)

from otel_costs import conventions as conv
from otel_costs.testing import FakeLLMProvider

REPO = Path(__file__).resolve().parent.parent
SERVICES = Path(__file__).resolve().parent / "e2e_services.py"

pytestmark = pytest.mark.slow


@dataclass
class Pipeline:
    """Everything of one end-to-end run."""

    gateway: CollectorProcess
    workers: list[CollectorProcess]
    jaeger_query_port: int
    subagent_url: str
    llm_host: str
    tmp: Path

    def run_orchestrator(self, workflows: int, *, name: str = "run") -> subprocess.Popen[bytes]:
        """Start the orchestrator for ``workflows`` workflows; its results stream to ``<name>.jsonl``."""
        argv = [sys.executable, str(SERVICES), "orchestrator", "--subagent-url", self.subagent_url]
        argv += ["--llm-host", self.llm_host, "--workflows", str(workflows)]
        argv += ["--out", str(self.tmp / f"{name}.jsonl")]
        log = (self.tmp / f"{name}-orchestrator.log").open("wb")
        env = service_env(self.gateway, "orchestrator")
        return subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)

    def results(self, name: str = "run") -> list[dict[str, Any]]:
        """The workflows the orchestrator finished, as it recorded them."""
        lines = (self.tmp / f"{name}.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]


def service_env(gateway: CollectorProcess, service: str) -> dict[str, str]:
    """What a service gets: the gateway's OTLP/HTTP base URL (http/protobuf, the default) and its name."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return {
        **env,
        "PYTHONPATH": str(REPO),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{LOOPBACK}:{gateway.otlp_http_port}",
        "OTEL_SERVICE_NAME": service,
    }


@contextmanager
def pipeline(tmp_path: Path, fake: FakeLLMProvider) -> Iterator[Pipeline]:
    """Jaeger, two workers on worker.yaml's defaults, the gateway, and the sub-agent service."""
    with ExitStack() as stack:
        jaeger = stack.enter_context(run_jaeger(log_dir=tmp_path))
        workers = [
            stack.enter_context(
                run_collector(
                    WORKER_CONFIG,
                    {"EXPORT_OTLP_ENDPOINT": jaeger.otlp_grpc_endpoint},
                    log_dir=tmp_path,
                    name=f"worker-{i}",
                )
            )
            for i in (1, 2)
        ]
        endpoints = ",".join(w.otlp_grpc_endpoint for w in workers)
        gateway = stack.enter_context(
            run_collector(GATEWAY_CONFIG, {"WORKER_ENDPOINTS": endpoints}, log_dir=tmp_path, name="gateway")
        )
        port = free_port()
        log = stack.enter_context((tmp_path / "subagent.log").open("wb"))
        argv = [sys.executable, str(SERVICES), "subagent", "--port", str(port), "--llm-host", fake.host]
        subagent = subprocess.Popen(
            argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=service_env(gateway, "sub-agent")
        )
        # Stopped (SIGTERM: it flushes its spans) before the Collectors, which the stack stops next.
        stack.callback(_terminate, subagent)
        url = f"http://{LOOPBACK}:{port}"
        poll_until(lambda: _answers(f"{url}/healthz", subagent), timeout=30, what="sub-agent service")
        yield Pipeline(gateway, workers, jaeger.query_port, url, fake.host, tmp_path)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)


def _answers(url: str, process: subprocess.Popen[bytes]) -> bool | None:
    if process.poll() is not None:
        raise RuntimeError(f"{url}: the service exited with {process.returncode}")
    try:
        return httpx.get(url, timeout=1).status_code == 200 or None
    except httpx.TransportError:
        return None


@dataclass
class TraceView:
    """One workflow's trace as Jaeger returned it."""

    spans: list[dict[str, Any]]
    processes: dict[str, Any]

    def root(self) -> dict[str, Any] | None:
        """The span without a parent, if exactly one."""
        roots = [s for s in self.spans if not s.get("references")]
        return roots[0] if len(roots) == 1 else None

    def span_tags(self) -> list[dict[str, Any]]:
        """Each span's tags."""
        return [tags(s) for s in self.spans]

    def calls(self) -> list[dict[str, Any]]:
        """The LLM-call spans: those with a direct cost."""
        return [t for t in self.span_tags() if conv.COST_DIRECT_NANOS in t]

    def services(self) -> set[str]:
        """The services whose spans the trace holds."""
        return {self.processes[s["processID"]]["serviceName"] for s in self.spans}

    def complete(self) -> bool:
        """Both services' LLM calls are there and the root has its trace-wide rollup."""
        root = self.root()
        return (
            root is not None
            and len(self.calls()) == CALLS_PER_TRACE
            and tags(root).get(conv.COST_ROLLUP_SCOPE) == conv.SCOPE_TRACE
        )


def fetch(query_port: int, trace_id: str) -> TraceView | None:
    """A trace from Jaeger's HTTP API, or None."""
    data = jaeger_trace(query_port, trace_id)
    return None if data is None else TraceView(data["spans"], data["processes"])


def wait_complete(query_port: int, results: list[dict[str, Any]], timeout: float) -> dict[str, TraceView]:
    """Poll Jaeger until every workflow's trace holds all its calls and a trace-scope root."""

    def check() -> dict[str, TraceView] | None:
        views: dict[str, TraceView] = {}
        for result in results:
            view = fetch(query_port, result["trace_id"])
            if view is None or not view.complete():
                return None
            views[result["trace_id"]] = view
        return views

    return poll_until(check, timeout=timeout, what=f"{len(results)} complete traces in Jaeger", interval=1.0)


@pytest.mark.timeout(240)
def test_workflow_costs_roll_up_across_services_and_workers(tmp_path: Path) -> None:
    """Every root's cost.total_nanos is exactly the sum of both services' LLM calls, unflagged.

    Everything on its documented defaults: the apps' 5 s batch delay plus the in-process linger,
    the workers' root_wait 5 s / max_wait 60 s with await_children.
    """
    workflows = 12
    with FakeLLMProvider() as fake, pipeline(tmp_path, fake) as p:
        assert p.run_orchestrator(workflows).wait(timeout=120) == 0
        results = p.results()
        assert len(results) == workflows
        # The sub-agent exports on its own 5 s schedule; the workers hold each trace for it.
        views = wait_complete(p.jaeger_query_port, results, timeout=120)
        received = [w.metric("otelcol_processor_costrollup_spans_received") for w in p.workers]
        released = [w.metric("otelcol_processor_costrollup_spans_released") for w in p.workers]
        missing_child = sum(w.metric("otelcol_processor_costrollup_traces_missing_child") for w in p.workers)
        llm_requests = len(fake.requests)
    assert llm_requests == workflows * CALLS_PER_TRACE
    # First the headline figure over all traces (how many roots lack money), then the details.
    split = []
    for result in results:
        view = views[result["trace_id"]]
        root = tags(view.root() or {})
        calls_sum = sum(c[conv.COST_DIRECT_NANOS] for c in view.calls())
        if root.get(conv.COST_TOTAL_NANOS) != calls_sum:
            split.append(
                (
                    result["trace_id"],
                    root.get(conv.COST_TOTAL_NANOS),
                    calls_sum,
                    root.get(conv.COST_ROLLUP_PARTIAL),
                )
            )
    assert not split, (
        f"{len(split)} of {workflows} roots short of their calls (id, root total, sum, partial): {split}"
    )
    spans_in_jaeger = 0
    for result in results:
        view = views[result["trace_id"]]
        spans_in_jaeger += len(view.spans)
        span_tags = view.span_tags()
        calls = view.calls()
        assert all(c[conv.COST_STATUS] == conv.STATUS_PRICED and c[conv.COST_DIRECT_NANOS] > 0 for c in calls)
        root = tags(view.root() or {})
        detail = [
            (s["operationName"], view.processes[s["processID"]]["serviceName"], tags(s)) for s in view.spans
        ]
        (tmp_path / f"trace-{result['trace_id']}.json").write_text(json.dumps(detail, indent=1, default=str))
        assert root[conv.COST_TOTAL_NANOS] == sum(c[conv.COST_DIRECT_NANOS] for c in calls)
        assert root[conv.COST_TOTAL] == pytest.approx(root[conv.COST_TOTAL_NANOS] / 1e9)
        assert root[conv.COST_ROLLUP_SCOPE] == conv.SCOPE_TRACE
        assert not any(t.get(conv.COST_ROLLUP_PARTIAL) for t in span_tags), "no partial flag anywhere"
        assert view.services() == {"orchestrator", "sub-agent"}
        # Attribution crossed the hop: the sub-agent's spans carry the orchestrator's workflow.id.
        assert all(t.get(conv.WORKFLOW_ID) == result["workflow_id"] for t in calls)
    assert missing_child == 0
    assert all(n > 0 for n in received), f"both workers get traffic: {received}"
    # Every span each worker took in went out, and what went out is what Jaeger holds.
    assert received == released
    assert sum(released) == spans_in_jaeger


def _otlp_span(
    trace_id: str, span_id: str, parent: str | None, name: str, kind: int, **attrs: Any
) -> dict[str, Any]:
    now = time.time_ns()
    values = [
        {
            "key": k.replace("__", "."),
            "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v},
        }
        for k, v in attrs.items()
    ]
    span = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(now),
        "endTimeUnixNano": str(now + 1000),
        "attributes": values,
    }
    if parent:
        span["parentSpanId"] = parent
    return span


def _otlp_post(url: str, service: str, spans: list[dict[str, Any]]) -> None:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}
    httpx.post(url, json=body, timeout=10).raise_for_status()


@pytest.mark.xfail(
    strict=True,
    reason="costrollup exempts a CLIENT span from await_children when its parent carries any cost.* "
    "attribute, and the in-process rollup (configure()) writes cost.children* on every agent/workflow "
    "span: an HTTP call into another service made under an agent span is not awaited, the trace goes "
    "out at root_wait and the root's total misses that service, unflagged",
)
@pytest.mark.timeout(90)
def test_client_call_under_a_priced_agent_span_holds_the_trace(tmp_path: Path) -> None:
    """What configure() emits: workflow > agent (cost.children*) > CLIENT into service B; B arrives late.

    The deterministic form of what the two-service test above catches now and then: service A's
    spans (in-process rollup written) arrive first, B's 3 s later, past root_wait (1 s here).
    """
    trace_id = f"{random.getrandbits(128) | 1:032x}"
    with ExitStack() as stack:
        jaeger = stack.enter_context(run_jaeger(log_dir=tmp_path))
        worker = stack.enter_context(
            run_collector(
                WORKER_CONFIG,
                {"EXPORT_OTLP_ENDPOINT": jaeger.otlp_grpc_endpoint, "COSTROLLUP_ROOT_WAIT": "1s"},
                log_dir=tmp_path,
                name="worker",
            )
        )
        a_spans = [
            _otlp_span(trace_id, "a1" * 8, None, "invoke_workflow research", 1, cost__children_nanos=1000),
            _otlp_span(trace_id, "a2" * 8, "a1" * 8, "invoke_agent planner", 1, cost__children_nanos=1000),
            _otlp_span(
                trace_id, "a3" * 8, "a2" * 8, "chat", 3, cost__direct_nanos=1000, cost__status="priced"
            ),
            _otlp_span(
                trace_id,
                "a4" * 8,
                "a2" * 8,
                "POST",
                3,
                server__address="127.0.0.1",
                http__request__method="POST",
            ),
        ]
        _otlp_post(worker.otlp_http_traces_url, "svc-a", a_spans)
        sent = time.monotonic()
        poll_until(lambda: time.monotonic() - sent >= 3 or None, timeout=10, what="service B 3 s late")
        b_spans = [
            _otlp_span(trace_id, "b1" * 8, "a4" * 8, "POST /research", 2),
            _otlp_span(
                trace_id, "b2" * 8, "b1" * 8, "chat", 3, cost__direct_nanos=2000, cost__status="priced"
            ),
        ]
        _otlp_post(worker.otlp_http_traces_url, "svc-b", b_spans)

        def stored() -> dict[str, Any] | None:
            data = jaeger_trace(jaeger.query_port, trace_id)
            return data if data and len(data["spans"]) == 6 else None

        data = poll_until(stored, timeout=30, what="the 6 spans in Jaeger")
    root = tags(next(s for s in data["spans"] if not s.get("references")))
    assert root[conv.COST_TOTAL_NANOS] == 3000
    assert not root.get(conv.COST_ROLLUP_PARTIAL)
