"""The two Python services of the end-to-end test: an orchestrator agent and a sub-agent service.

Each runs in its own process with its own ``TracerProvider`` and the otel_costs pipeline
(``CostSpanProcessor -> BatchSpanProcessor -> CostRollupExporter -> OTLP/gRPC``) exporting
to the gateway Collector. The orchestrator calls the sub-agent over HTTP with httpx and
injects ``traceparent`` and ``baggage`` with the W3C propagators; the sub-agent extracts
them, so its spans join the orchestrator's trace and carry its ``workflow.id``. The LLM
calls are spans with GenAI usage attributes set by hand and priced with the fixed test
price table (``otel_costs.testing.fixed_price_book()``): no provider is called.

::

    python tests/e2e_services.py subagent --port 8001 --otlp-endpoint 127.0.0.1:4317
    python tests/e2e_services.py orchestrator --subagent-url http://127.0.0.1:8001 \\
        --otlp-endpoint 127.0.0.1:4317 --workflows 10 --out result.json

The orchestrator writes one JSON object per workflow to ``--out`` (one per line, as each
workflow ends): its trace id, workflow id and the token counts of every LLM call.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from opentelemetry import context, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import otel_costs
from otel_costs import conventions as conv
from otel_costs.testing import fixed_price_book

#: W3C trace context plus W3C baggage: what crosses the HTTP hop.
PROPAGATOR = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
#: The LLM calls each side makes: (model, input tokens, output tokens + workflow index).
ORCHESTRATOR_CALLS = (("gpt-5.2", 1_200, 300), ("claude-sonnet-4-5", 800, 150))
SUBAGENT_CALLS = (("gemini-3-pro", 2_000, 500), ("gpt-5.2", 600, 90))


def provider(service: str, endpoint: str) -> TracerProvider:
    """A TracerProvider for ``service`` with the otel_costs pipeline exporting OTLP/gRPC to ``endpoint``."""
    tp = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    rollup = otel_costs.CostRollupExporter(exporter, linger=0.3)
    tp.add_span_processor(
        otel_costs.CostSpanProcessor(
            BatchSpanProcessor(rollup, schedule_delay_millis=200), price_book=fixed_price_book()
        )
    )
    return tp


def llm_call(tracer: trace.Tracer, model: str, input_tokens: int, output_tokens: int) -> None:
    """One chat call as a GenAI instrumentation would record it (usage set by hand)."""
    with tracer.start_as_current_span(f"chat {model}", kind=trace.SpanKind.CLIENT) as span:
        span.set_attributes(
            {
                conv.GEN_AI_OPERATION_NAME: "chat",
                conv.GEN_AI_REQUEST_MODEL: model,
                "gen_ai.usage.input_tokens": input_tokens,
                "gen_ai.usage.output_tokens": output_tokens,
            }
        )


# --- sub-agent -------------------------------------------------------------------------------


def run_subagent(port: int, endpoint: str) -> int:
    """Serve POST /research (and GET /healthz) until SIGTERM, then flush the spans."""
    tp = provider("sub-agent", endpoint)
    tracer = tp.get_tracer("e2e.subagent")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._reply(200, {"ok": True})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            index = int(body.get("index", 0))
            ctx = PROPAGATOR.extract(dict(self.headers.items()))
            token = context.attach(ctx)
            try:
                with (
                    tracer.start_as_current_span("POST /research", kind=trace.SpanKind.SERVER),
                    otel_costs.agent("researcher", tracer_provider=tp),
                ):
                    for model, tokens_in, tokens_out in SUBAGENT_CALLS:
                        llm_call(tracer, model, tokens_in, tokens_out + index)
            finally:
                context.detach(token)
            self._reply(200, {"summary": f"findings {index}"})

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stop.wait()
    server.shutdown()
    tp.shutdown()
    return 0


# --- orchestrator ------------------------------------------------------------------------------


def run_orchestrator(subagent_url: str, endpoint: str, workflows: int, out: str, interval: float) -> int:
    """Run ``workflows`` research workflows, one JSON line per workflow to ``out``, then flush."""
    tp = provider("orchestrator", endpoint)
    tracer = tp.get_tracer("e2e.orchestrator")
    with httpx.Client(timeout=30) as client, open(out, "w", encoding="utf-8") as fh:
        for index in range(workflows):
            with otel_costs.workflow("research", tracer_provider=tp) as wf:
                trace_id = trace.get_current_span().get_span_context().trace_id
                with otel_costs.agent("planner", tracer_provider=tp):
                    model, tokens_in, tokens_out = ORCHESTRATOR_CALLS[0]
                    llm_call(tracer, model, tokens_in, tokens_out + index)
                    with tracer.start_as_current_span("POST /research", kind=trace.SpanKind.CLIENT):
                        headers: dict[str, str] = {}
                        PROPAGATOR.inject(headers)
                        response = client.post(
                            f"{subagent_url}/research", json={"index": index}, headers=headers
                        )
                        response.raise_for_status()
                    model, tokens_in, tokens_out = ORCHESTRATOR_CALLS[1]
                    llm_call(tracer, model, tokens_in, tokens_out + index)
            calls = [(m, i, o + index) for m, i, o in ORCHESTRATOR_CALLS + SUBAGENT_CALLS]
            fh.write(
                json.dumps({"trace_id": f"{trace_id:032x}", "workflow_id": wf.workflow_id, "calls": calls})
                + "\n"
            )
            fh.flush()
            if interval:
                time.sleep(interval)  # pacing a stream of workflows, not waiting for anything
    tp.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="role", required=True)
    sa = sub.add_parser("subagent")
    sa.add_argument("--port", type=int, required=True)
    sa.add_argument("--otlp-endpoint", required=True)
    orch = sub.add_parser("orchestrator")
    orch.add_argument("--subagent-url", required=True)
    orch.add_argument("--otlp-endpoint", required=True)
    orch.add_argument("--workflows", type=int, default=10)
    orch.add_argument("--interval", type=float, default=0.0, help="seconds between workflows")
    orch.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.role == "subagent":
        return run_subagent(args.port, args.otlp_endpoint)
    return run_orchestrator(args.subagent_url, args.otlp_endpoint, args.workflows, args.out, args.interval)


if __name__ == "__main__":
    sys.exit(main())
