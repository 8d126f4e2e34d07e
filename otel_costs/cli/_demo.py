"""``otel-costs demo``: the command that runs the demo workflow on the real pipeline and reports.

The workflow (``_demo_workflow``: agents, a retried step, a parallel fan-out, OpenAI chat
completions over ``httpx``) calls the local fake provider (no network, no API key); its calls
are captured by ``instrument_httpx``, priced with genai-prices by the real pipeline and written
to an OTLP/JSON file. When ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces endpoint) is set,
``configure()`` sends the same spans there over OTLP too (protocol, headers and timeout from the
standard ``OTEL_EXPORTER_OTLP_*`` variables), so the demo feeds a Collector or Jaeger. The demo
prints the cost tree, a by-agent table and where the spans went. The pipeline, the capture layer
and the workflow are imported when the demo runs, so ``otel-costs --help`` and ``tree`` start
fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

#: Where the demo writes its spans unless ``--file`` or ``$OTEL_COSTS_FILE`` says otherwise.
DEFAULT_FILE = "otel-costs-demo.jsonl"

_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOL_VARS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


def otlp_destination() -> str | None:
    """Where the standard ``OTEL_EXPORTER_OTLP_*`` variables send traces, or ``None`` if unset."""
    env = os.environ
    traces, generic = (env.get(name, "").strip() for name in _ENDPOINT_VARS)
    protocol = next((env[n].strip() for n in _PROTOCOL_VARS if env.get(n, "").strip()), "http/protobuf")
    if traces:
        return f"{traces} ({protocol})"
    if not generic:
        return None
    if protocol == "http/protobuf":  # the SDK appends the signal's path to the generic endpoint
        return f"{generic.rstrip('/')}/v1/traces ({protocol})"
    return f"{generic} ({protocol})"


def run_demo(file_path: Path, *, latency: float = 0.0) -> str:
    """Run the demo, writing spans to ``file_path`` (and to the OTLP endpoint if one is set).

    Returns the report it prints, ending with where the spans went.
    """
    from otel_costs.capture._instrument import instrument_httpx, uninstrument_httpx
    from otel_costs.cli._demo_workflow import USAGE, run_workflow
    from otel_costs.cli._report import by_agent, cost_trees, format_by_agent, format_tree, trace_title
    from otel_costs.pipeline._configure import configure
    from otel_costs.pipeline._otlp import read_json_file
    from otel_costs.testing._fake_provider import FakeLLMProvider

    file_path.unlink(missing_ok=True)
    destination = otlp_destination()
    with FakeLLMProvider(usage=USAGE, latency=latency) as fake:
        # With an OTLP endpoint in the environment, configure() writes the file and sends there too.
        provider = configure(service_name="otel-costs-demo", file_path=file_path, set_global=False)
        instrument_httpx(tracer_provider=provider, llm_hosts={fake.host: "openai"})
        try:
            run_workflow(fake, provider)
        finally:
            uninstrument_httpx()
            provider.shutdown()
    records, _ = read_json_file(file_path)
    parts = []
    for roots in cost_trees(records):
        parts.append(trace_title(roots))
        parts.append(format_tree(roots))
    parts.append("")
    parts.append(format_by_agent(by_agent(records)))
    parts.append("")
    if destination is not None:
        parts.append(f"spans sent over OTLP to {destination}")
    parts.append(f"spans written to {file_path}; see them again with: otel-costs tree {file_path}")
    return "\n".join(parts)


def _main(args: argparse.Namespace) -> int:
    from otel_costs.pipeline._configure import FILE_ENV, ConfigurationError

    path = Path(args.file or os.environ.get(FILE_ENV) or DEFAULT_FILE)
    try:
        print(run_demo(path, latency=args.latency))
    except ConfigurationError as exc:  # e.g. OTEL_EXPORTER_OTLP_PROTOCOL=grpc without the grpc extra
        print(f"otel-costs demo: {exc}", file=sys.stderr)
        return 2
    return 0


def add_demo_parser(subparsers: Any) -> None:
    """Register ``otel-costs demo``."""
    demo = subparsers.add_parser(
        "demo",
        help="run a costed multi-agent workflow against a local fake LLM",
        description=(
            "Run a multi-agent workflow (OpenAI chat completions over httpx) against a local fake "
            "LLM provider, cost it with the real pipeline and print the cost tree. The spans are "
            "written to --file; when OTEL_EXPORTER_OTLP_ENDPOINT or "
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set they are also sent there over OTLP "
            "(OTEL_EXPORTER_OTLP_PROTOCOL, _HEADERS and _TIMEOUT apply), e.g. to a Collector "
            "or Jaeger. The last lines say where the spans went."
        ),
    )
    demo.add_argument(
        "--file",
        help=f"where the spans are written, OTLP/JSON lines (default: $OTEL_COSTS_FILE or {DEFAULT_FILE})",
    )
    demo.add_argument("--latency", type=float, default=0.0, help="seconds the fake provider waits per call")
    demo.set_defaults(func=_main)
