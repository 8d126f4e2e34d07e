"""The two Python services of the end-to-end test: an orchestrator agent and a sub-agent service.

Each runs in its own process on ``otel_costs.configure()`` defaults (the SDK's 5 s batch delay,
the in-process linger, ``PriceBook()`` from genai-prices): only ``OTEL_EXPORTER_OTLP_ENDPOINT``
(``http://<gateway>:<otlp http port>``, http/protobuf) and ``OTEL_SERVICE_NAME`` come from the
environment. Both call the fake LLM provider (``otel_costs.testing.FakeLLMProvider``, started by
the test) with plain httpx, captured by ``otel_costs.instrument_httpx``. The orchestrator calls the
sub-agent over HTTP; ``instrument_httpx`` injects ``traceparent`` and the attribution headers and
baggage (the sub-agent is an attribution host), and the sub-agent takes them with
``accept_attribution`` (loopback trusted), so its spans join the orchestrator's trace and carry its
``workflow.id``.

::

    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_SERVICE_NAME=sub-agent \\
        python tests/e2e_services.py subagent --port 8001 --llm-host 127.0.0.1:9000
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_SERVICE_NAME=orchestrator \\
        python tests/e2e_services.py orchestrator --subagent-url http://127.0.0.1:8001 \\
        --llm-host 127.0.0.1:9000 --workflows 10 --out result.jsonl

The orchestrator writes one JSON object per workflow to ``--out`` (one per line, as each workflow
ends): its trace id and workflow id.
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
from urllib.parse import urlsplit

import httpx
from opentelemetry import context, trace

import otel_costs
from otel_costs.capture import AttributionTrust

#: The LLM calls each side makes: (API, model, prompt). The fake derives the usage from the prompt.
ORCHESTRATOR_CALLS = (("openai", "gpt-4o", "plan the research"), ("anthropic", "claude-sonnet-4-5", "sum up"))
SUBAGENT_CALLS = (
    ("openai", "gpt-4o-mini", "search the papers"),
    ("anthropic", "claude-sonnet-4-5", "digest"),
)
#: LLM calls per workflow, over both services.
CALLS_PER_TRACE = len(ORCHESTRATOR_CALLS) + len(SUBAGENT_CALLS)
TRUST = AttributionTrust(networks=("127.0.0.1/32",))


def llm_call(client: httpx.Client, llm: str, api: str, model: str, prompt: str, index: int) -> None:
    """One chat call to the fake provider, as an app would make it (captured by instrument_httpx)."""
    text = f"{prompt} #{index}"
    if api == "openai":
        body = {"model": model, "messages": [{"role": "user", "content": text}]}
        response = client.post(f"{llm}/v1/chat/completions", json=body)
    else:
        body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}
        response = client.post(f"{llm}/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    response.raise_for_status()


def setup(llm_host: str, attribution_hosts: list[str]) -> trace.TracerProvider:
    """``configure()`` on its defaults plus ``instrument_httpx`` for the fake provider's host."""
    provider = otel_costs.configure()
    otel_costs.instrument_httpx(llm_hosts={llm_host: None}, attribution_hosts=attribution_hosts)
    return provider


# --- sub-agent -------------------------------------------------------------------------------


def run_subagent(port: int, llm_host: str) -> int:
    """Serve POST /research (and GET /healthz) until SIGTERM, then flush the spans."""
    provider = setup(llm_host, [])
    tracer = trace.get_tracer("e2e.subagent")
    llm = f"http://{llm_host}"
    client = httpx.Client(timeout=30)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._reply(200, {"ok": True})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            index = int(body.get("index", 0))
            ctx = accept(dict(self.headers.items()), self.client_address)
            token = context.attach(ctx)
            try:
                with (
                    tracer.start_as_current_span("POST /research", kind=trace.SpanKind.SERVER),
                    otel_costs.agent("researcher"),
                ):
                    for api, model, prompt in SUBAGENT_CALLS:
                        llm_call(client, llm, api, model, prompt, index)
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
    provider.shutdown()  # type: ignore[attr-defined]
    return 0


def accept(headers: dict[str, str], peer: tuple[Any, ...]) -> context.Context:
    """The request's trace parent and attribution (trusted: loopback)."""
    return otel_costs.accept_attribution(headers, peer=peer, trusted=TRUST)


# --- orchestrator ------------------------------------------------------------------------------


def run_orchestrator(subagent_url: str, llm_host: str, workflows: int, out: str, interval: float) -> int:
    """Run ``workflows`` research workflows, one JSON line per workflow to ``out``, then flush."""
    provider = setup(llm_host, [urlsplit(subagent_url).netloc])
    llm = f"http://{llm_host}"
    with httpx.Client(timeout=30) as client, open(out, "w", encoding="utf-8") as fh:
        for index in range(workflows):
            with otel_costs.workflow("research") as wf:
                trace_id = trace.get_current_span().get_span_context().trace_id
                with otel_costs.agent("planner"):
                    llm_call(client, llm, *ORCHESTRATOR_CALLS[0], index)
                    client.post(f"{subagent_url}/research", json={"index": index}).raise_for_status()
                    llm_call(client, llm, *ORCHESTRATOR_CALLS[1], index)
            fh.write(json.dumps({"trace_id": f"{trace_id:032x}", "workflow_id": wf.workflow_id}) + "\n")
            fh.flush()
            if interval:
                time.sleep(interval)  # pacing a stream of workflows, not waiting for anything
    provider.shutdown()  # type: ignore[attr-defined]
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="role", required=True)
    sa = sub.add_parser("subagent")
    sa.add_argument("--port", type=int, required=True)
    sa.add_argument("--llm-host", required=True, help="the fake provider's host:port")
    orch = sub.add_parser("orchestrator")
    orch.add_argument("--subagent-url", required=True)
    orch.add_argument("--llm-host", required=True, help="the fake provider's host:port")
    orch.add_argument("--workflows", type=int, default=10)
    orch.add_argument("--interval", type=float, default=0.0, help="seconds between workflows")
    orch.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.role == "subagent":
        return run_subagent(args.port, args.llm_host)
    return run_orchestrator(args.subagent_url, args.llm_host, args.workflows, args.out, args.interval)


if __name__ == "__main__":
    sys.exit(main())
