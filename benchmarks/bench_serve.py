"""Throughput of one ``otel-costs serve`` worker against a pass-through OTLP relay, side by side.

Both runs start the same program (``python -m otel_costs._serve``) pinned to one core; the
relay run adds ``--relay`` (decode -> encode -> forward, no window, no rollup). A load
generator on the other core sends the same pre-encoded OTLP/gRPC requests (16-span traces of
two services, each trace split across two requests as two services would send it, one
``ScopeSpans`` per trace as a gateway routing by trace id sends them) and a sink acks what is
forwarded. Throughput = spans sent / (first send .. the worker's ``spans_forwarded_total``
reaching that count), read from the worker's ``/metrics``. Each run also reports spans per
CPU-second of the worker process (its ``utime + stime`` over the same interval, from
``/proc``): what one core sustains, much less disturbed than wall time when other jobs
share the machine. Both ratios are printed; each figure is the best of ``--rounds``
alternated runs.

The span mix: ``--mixes`` lists how many of each 16-span trace's spans are LLM calls carrying
the in-process exporter's ``cost.*`` attributes (``cost.direct*``, ``cost.status``, the
pricing attributes); their ancestors in the same service carry its process-scope rollup
figures, which serve replaces trace-wide, as a real exporter writes them. ``3`` (19 %) is a
realistic agent workload (HTTP, DB, tool and agent spans around a few model calls), ``16`` is
every span billable, ``0`` is a service without LLM calls. Spans carry 3 attributes of their
own, LLM calls 4 more (model, operation, tokens).

Run::

    python benchmarks/bench_serve.py                       # ~3 minutes on 2 cores
    python benchmarks/bench_serve.py --mixes 3 --rounds 1  # quicker
    python benchmarks/bench_serve.py --before /tmp/old     # also time serve from another checkout
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent import futures
from dataclasses import dataclass

import grpc  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from otel_costs import conventions as conv
from otel_costs._serve_metrics import parse_metrics

_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_SPANS_PER_TRACE = 16  # 8 per service


@dataclass(frozen=True)
class Result:
    """One timed run."""

    mode: str
    """``relay`` or ``rollup``."""
    spans: int
    """Spans sent and forwarded."""
    seconds: float
    """Wall time from the first send until the worker had forwarded them all."""
    cpu_seconds: float
    """CPU time the worker process used in that interval (user + system)."""

    @property
    def rate(self) -> float:
        """Spans per second."""
        return self.spans / self.seconds

    @property
    def cpu_rate(self) -> float:
        """Spans per CPU-second of the worker."""
        return self.spans / self.cpu_seconds


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from ``/proc``."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _attr(span: Span, key: str, value: object) -> None:
    kv = span.attributes.add()
    kv.key = key
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    else:
        kv.value.string_value = str(value)


#: Each service's eight spans: (position, parent position or None). 0 is the service's local
#: root, 1 an agent with three children, 5 a tool span with two children; the orchestrator's
#: span 6 calls the sub-agent, whose local root hangs under it.
_SHAPE = ((0, None), (1, 0), (2, 1), (3, 1), (4, 1), (5, 0), (6, 5), (7, 5))
#: LLM positions per service, filled in this order: the agent's children first.
_LLM_ORDER = (2, 3, 4, 6, 7, 1, 5, 0)


def _llm_positions(llm_spans: int) -> tuple[frozenset[int], frozenset[int]]:
    """Which positions of the orchestrator's and of the sub-agent's spans are LLM calls."""
    orchestrator = (llm_spans + 1) // 2
    return frozenset(_LLM_ORDER[:orchestrator]), frozenset(_LLM_ORDER[: llm_spans - orchestrator])


def _service_part(
    rs: ResourceSpans,
    service: str,
    trace_id: bytes,
    first: int,
    remote_parent: bytes | None,
    llm: frozenset[int],
) -> None:
    """Eight spans of one service; positions in ``llm`` are priced LLM calls."""
    ss = rs.scope_spans.add()
    ss.scope.name = "bench"
    ids = [(first + i).to_bytes(8, "big") for i in range(8)]
    parent_of = dict(_SHAPE)
    # The in-process exporter writes process-scope figures on every span above an LLM call.
    figured = set()
    for position in llm:
        at: int | None = position
        while at is not None:
            figured.add(at)
            at = parent_of[at]
    for i, parent in _SHAPE:
        span = ss.spans.add()
        span.trace_id = trace_id
        span.span_id = ids[i]
        parent_id = remote_parent if parent is None else ids[parent]
        if parent_id is not None:
            span.parent_span_id = parent_id
        span.name = f"{service} step {i}"
        span.kind = Span.SPAN_KIND_INTERNAL
        span.start_time_unix_nano = 1_700_000_000_000_000_000 + i
        span.end_time_unix_nano = 1_700_000_000_100_000_000 + i
        _attr(span, conv.WORKFLOW_ID, "01JBENCHWORKFLOW0000000000")
        _attr(span, conv.AGENT_NAME, service)
        _attr(span, "http.route", "/run")
        if i in llm:
            nanos = 1_000 * (i + 1)
            _attr(span, conv.GEN_AI_OPERATION_NAME, "chat")
            _attr(span, conv.GEN_AI_REQUEST_MODEL, "gpt-5.2")
            _attr(span, "gen_ai.usage.input_tokens", 120)
            _attr(span, "gen_ai.usage.output_tokens", 40)
            _attr(span, conv.COST_DIRECT, nanos / 1e9)
            _attr(span, conv.COST_DIRECT_NANOS, nanos)
            _attr(span, conv.COST_STATUS, conv.STATUS_PRICED)
            _attr(span, conv.COST_CURRENCY, conv.CURRENCY_USD)
        if i in figured:  # process-scope figures, replaced trace-wide
            _attr(span, conv.COST_TOTAL_NANOS, 3_000)
            _attr(span, conv.COST_CHILDREN_NANOS, 0)
            _attr(span, conv.COST_TOTAL, 3e-6)
            _attr(span, conv.COST_CHILDREN, 0.0)
            _attr(span, conv.COST_ROLLUP_SCOPE, conv.SCOPE_PROCESS)


def make_requests(total_spans: int, traces_per_request: int, llm_spans: int = 3) -> list[bytes]:
    """Pre-encoded requests: each trace's two services arrive in two different requests.

    ``llm_spans`` of each trace's 16 spans are priced LLM calls.
    """
    traces = max(1, total_spans // _SPANS_PER_TRACE)
    llm = dict(zip(("orchestrator", "sub-agent"), _llm_positions(llm_spans), strict=True))
    payloads: list[bytes] = []
    for start in range(0, traces, traces_per_request):
        ids = range(start, min(traces, start + traces_per_request))
        for service in ("orchestrator", "sub-agent"):
            request = ExportTraceServiceRequest()
            rs = request.resource_spans.add()
            kv = rs.resource.attributes.add()
            kv.key = "service.name"
            kv.value.string_value = service
            for t in ids:
                trace_id = (t + 1).to_bytes(16, "big")
                if service == "orchestrator":
                    _service_part(rs, service, trace_id, 1, None, llm[service])
                else:
                    # The sub-agent's local root hangs under the orchestrator's tool span (id 7).
                    _service_part(rs, service, trace_id, 101, (7).to_bytes(8, "big"), llm[service])
            payloads.append(request.SerializeToString())
    return payloads


class _Sink:
    """A gRPC OTLP endpoint that acks raw bytes without decoding (so it costs the worker's core nothing)."""

    def __init__(self) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        empty = ExportTraceServiceResponse().SerializeToString()
        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(lambda raw, ctx: empty)},
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()


def _metric(http_port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as response:
        values = parse_metrics(response.read().decode())
    return sum(v for k, v in values.items() if k.split("{")[0] == name)


def _wait_healthy(http_port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.05)  # polling a starting process: nothing to wait on but time
    raise RuntimeError("worker did not become healthy")


def run_once(
    mode: str,
    payloads: list[bytes],
    spans: int,
    sink_port: int,
    cpu: int,
    in_flight: int,
    source: str | None = None,
) -> Result:
    """Start a worker in ``mode`` (from the checkout at ``source``), push ``payloads`` through it, time it."""
    grpc_port, http_port = _free_port(), _free_port()
    cmd = [
        sys.executable, "-m", "otel_costs._serve",
        "--grpc-port", str(grpc_port), "--http-port", str(http_port),
        "--forward-endpoint", f"127.0.0.1:{sink_port}", "--forward-protocol", "grpc",
        "--linger", "0.05", "--max-wait", "5", "--max-buffered-spans", str(2 * spans + 10_000),
        "--log-level", "warning",
    ]  # fmt: skip
    if mode == "relay":
        cmd.append("--relay")
    env = dict(os.environ)
    if source is not None:  # ``python -m`` imports from the working directory first
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    proc = subprocess.Popen(["taskset", "-c", str(cpu), *cmd], cwd=source, env=env)
    try:
        _wait_healthy(http_port, proc)
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        call = channel.unary_unary(_EXPORT, request_serializer=None, response_deserializer=None)
        gate = threading.BoundedSemaphore(in_flight)
        errors: list[BaseException] = []

        def done(fut: grpc.Future) -> None:
            gate.release()
            if fut.exception() is not None:
                errors.append(fut.exception())

        cpu_started = _cpu_seconds(proc.pid)
        started = time.perf_counter()
        for payload in payloads:
            gate.acquire()
            call.future(payload, timeout=60).add_done_callback(done)
        for _ in range(in_flight):
            gate.acquire()
        if errors:
            raise RuntimeError(f"{len(errors)} sends failed, first: {errors[0]}")
        while _metric(http_port, "otel_costs_serve_spans_forwarded_total") < spans:
            time.sleep(0.01)  # polling the worker's counter: the end of the measurement
        seconds = time.perf_counter() - started
        cpu_seconds = _cpu_seconds(proc.pid) - cpu_started
        channel.close()
        return Result(mode, spans, seconds, cpu_seconds)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=160_000, help="spans per run (default 160000)")
    parser.add_argument(
        "--traces-per-request", type=int, default=32, help="traces per request (default 32: 256 spans)"
    )
    parser.add_argument(
        "--mixes",
        default="3,16,0",
        help="LLM spans per 16-span trace, one run set each (default 3,16,0: 19%%, all, none)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternated runs per mode (default 3)")
    parser.add_argument("--in-flight", type=int, default=4, help="concurrent requests (default 4)")
    parser.add_argument("--before", help="also time serve run from this checkout (an older version)")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    worker_cpu = cpus[0]
    # The load generator and the sink run on the other core(s), away from the worker's.
    if len(cpus) > 1:
        os.sched_setaffinity(0, set(cpus[1:]))
    spans = (args.spans // _SPANS_PER_TRACE) * _SPANS_PER_TRACE
    modes: list[tuple[str, str, str | None]] = [("relay", "relay", None), ("serve", "rollup", None)]
    if args.before:
        modes.append(("before", "rollup", os.path.abspath(args.before)))
    sink = _Sink()
    per_request = _SPANS_PER_TRACE // 2 * args.traces_per_request
    print(f"bench_serve: spans/request {per_request}, worker on cpu {worker_cpu}")
    summary: list[str] = []
    for mix in (int(m) for m in args.mixes.split(",")):
        payloads = make_requests(args.spans, args.traces_per_request, mix)
        rates: dict[str, float] = {}
        cpu_rates: dict[str, float] = {}
        for _ in range(args.rounds):
            for label, mode, source in modes:
                result = run_once(mode, payloads, spans, sink.port, worker_cpu, args.in_flight, source)
                print(
                    f"  mix {mix:2d}/16 {label:6s} {result.spans} spans in {result.seconds:6.2f}s"
                    f" = {result.rate:9,.0f} spans/s, {result.cpu_rate:9,.0f} per CPU-second"
                )
                rates[label] = max(rates.get(label, 0.0), result.rate)
                cpu_rates[label] = max(cpu_rates.get(label, 0.0), result.cpu_rate)
        for kind, best in (("wall", rates), ("cpu ", cpu_rates)):
            line = (
                f"LLM spans {mix:2d}/16 ({mix / _SPANS_PER_TRACE:4.0%}) {kind}: relay {best['relay']:9,.0f}"
                f"  serve {best['serve']:9,.0f}  ratio {best['serve'] / best['relay']:.2f}x"
            )
            if "before" in best:
                line += f"  (before {best['before']:9,.0f}, {best['before'] / best['relay']:.2f}x)"
            summary.append(line)
    sink.server.stop(0)
    print(f"best of {args.rounds}, spans/s (wall) and spans per worker CPU-second (cpu);")
    print("target: serve >= 0.7x relay and >= 30k spans/s")
    for line in summary:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
