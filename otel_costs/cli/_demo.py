"""``otel-costs demo``: a multi-agent workflow over the OpenAI wire format, costed end to end.

coordinator -> code_agent -> syntax_analyzer (whose first attempt fails with a 500 and is
retried with backoff), then a parallel fan-out of three reviewers with asyncio. The calls are
OpenAI chat completions sent with ``httpx`` (what the ``openai`` SDK sends, without needing the
SDK: the base install has all the demo needs) to the local fake provider (no network, no API
key), captured by ``instrument_httpx``, priced with genai-prices by the real pipeline and
written to an OTLP/JSON file. When ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces endpoint) is
set, ``configure()`` sends the same spans there over OTLP too (protocol, headers and timeout
from the standard ``OTEL_EXPORTER_OTLP_*`` variables), so the demo feeds a Collector or Jaeger.
The demo prints the cost tree, a by-agent table and where the spans went.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace import TracerProvider

from otel_costs.attribution._scopes import agent, retry, workflow
from otel_costs.capture._httpx import instrument_httpx, uninstrument_httpx
from otel_costs.cli._report import by_agent, cost_trees, format_by_agent, format_tree, trace_title
from otel_costs.pipeline._configure import FILE_ENV, ConfigurationError, configure
from otel_costs.pipeline._otlp import read_json_file
from otel_costs.testing._fake_provider import FakeLLMProvider, FakeUsage

#: The model each agent uses, and the usage the fake provider reports for it.
MODELS = {"gpt-5.2": FakeUsage(input_tokens=1800, output_tokens=600, cache_read_tokens=400)}
SMALL_MODEL = "gpt-5-mini"
USAGE = {**MODELS, SMALL_MODEL: FakeUsage(input_tokens=900, output_tokens=250)}

_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOL_VARS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


def _chat_request(model: str, prompt: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}]}


def _reply_text(response: httpx.Response) -> str:
    # raise_for_status: a 5xx is an exception, which the workflow's retry() retries.
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])


def _chat(client: httpx.Client, model: str, prompt: str) -> str:
    return _reply_text(client.post("/chat/completions", json=_chat_request(model, prompt)))


async def _review(client: httpx.AsyncClient, provider: TracerProvider, aspect: str) -> str:
    with agent(f"reviewer_{aspect}", tracer_provider=provider):
        prompt = f"Review the change for {aspect}."
        return _reply_text(await client.post("/chat/completions", json=_chat_request(SMALL_MODEL, prompt)))


def run_workflow(fake: FakeLLMProvider, provider: TracerProvider, *, backoff: float = 0.05) -> None:
    """The demo workflow on ``provider``: OpenAI chat completions to ``fake`` over httpx."""
    headers = {"Authorization": "Bearer demo"}
    client = httpx.Client(base_url=fake.openai_base_url, headers=headers)
    async_client = httpx.AsyncClient(base_url=fake.openai_base_url, headers=headers)

    async def fan_out() -> list[str]:
        try:
            aspects = ("security", "performance", "style")
            return list(await asyncio.gather(*(_review(async_client, provider, a) for a in aspects)))
        finally:
            await async_client.aclose()

    with (
        client,
        workflow("code-review", user_id="demo-user", team_id="demo-team", tracer_provider=provider),
        agent("coordinator", tracer_provider=provider),
    ):
        _chat(client, "gpt-5.2", "Plan a review of the pull request.")
        with agent("code_agent", tracer_provider=provider):
            _chat(client, "gpt-5.2", "Read the diff and summarise it.")
            with agent("syntax_analyzer", tracer_provider=provider):
                fake.fail_next(1, status=500)  # the first attempt fails: a retry, with its own span
                step = retry(
                    "analyze",
                    max_attempts=3,
                    retry_on=httpx.HTTPStatusError,
                    backoff=lambda depth: backoff * 2 ** (depth - 1),
                    tracer_provider=provider,
                )
                for attempt in step:
                    with attempt:
                        _chat(client, SMALL_MODEL, "Check the syntax of the changed files.")
        asyncio.run(fan_out())  # the tasks copy this context: the reviewers' parent is the coordinator


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
    try:
        print(run_demo(Path(args.file), latency=args.latency))
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
        default=os.environ.get(FILE_ENV, "otel-costs-demo.jsonl"),
        help=f"where the spans are written, OTLP/JSON lines (default: ${FILE_ENV} or otel-costs-demo.jsonl)",
    )
    demo.add_argument("--latency", type=float, default=0.0, help="seconds the fake provider waits per call")
    demo.set_defaults(func=_main)
