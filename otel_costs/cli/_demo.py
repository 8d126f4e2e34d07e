"""``otel-costs demo``: a multi-agent workflow through the real openai SDK, costed end to end.

coordinator -> code_agent -> syntax_analyzer (whose first attempt fails with a 500 and is
retried with backoff), then a parallel fan-out of three reviewers with asyncio. The calls go
through the real ``openai`` SDK to the local fake provider (no network, no API key), are
captured by ``instrument_httpx``, priced with genai-prices by the real pipeline and written to
the embedded default (an OTLP/JSON file). The demo prints the cost tree and a by-agent table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from otel_costs.attribution._scopes import agent, retry, workflow
from otel_costs.capture._instrument import instrument_httpx, uninstrument_httpx
from otel_costs.cli._report import by_agent, cost_trees, format_by_agent, format_tree, trace_title
from otel_costs.pipeline._configure import FILE_ENV, configure
from otel_costs.pipeline._otlp import read_json_file
from otel_costs.testing._fake_provider import FakeLLMProvider, FakeUsage

#: The model each agent uses, and the usage the fake provider reports for it.
MODELS = {"gpt-5.2": FakeUsage(input_tokens=1800, output_tokens=600, cache_read_tokens=400)}
SMALL_MODEL = "gpt-5-mini"
USAGE = {**MODELS, SMALL_MODEL: FakeUsage(input_tokens=900, output_tokens=250)}


def _chat(client: Any, model: str, prompt: str) -> str:
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
    return str(reply.choices[0].message.content)


async def _review(client: Any, provider: TracerProvider, aspect: str) -> str:
    with agent(f"reviewer_{aspect}", tracer_provider=provider):
        reply = await client.chat.completions.create(
            model=SMALL_MODEL, messages=[{"role": "user", "content": f"Review the change for {aspect}."}]
        )
        return str(reply.choices[0].message.content)


def run_workflow(fake: FakeLLMProvider, provider: TracerProvider, *, backoff: float = 0.05) -> None:
    """The demo workflow on ``provider``, calling ``fake`` through the real openai SDK."""
    import openai

    # max_retries=0: retries are the workflow's own, so each attempt is attributed with retry.depth.
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="demo", max_retries=0)
    async_client = openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="demo", max_retries=0)

    async def fan_out() -> list[str]:
        try:
            aspects = ("security", "performance", "style")
            return list(await asyncio.gather(*(_review(async_client, provider, a) for a in aspects)))
        finally:
            await async_client.close()

    with (
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
                    retry_on=openai.APIStatusError,
                    backoff=lambda depth: backoff * 2 ** (depth - 1),
                    tracer_provider=provider,
                )
                for attempt in step:
                    with attempt:
                        _chat(client, SMALL_MODEL, "Check the syntax of the changed files.")
        asyncio.run(fan_out())  # the tasks copy this context: the reviewers' parent is the coordinator
    client.close()


def run(file_path: Path, *, latency: float = 0.0) -> str:
    """Run the demo, writing spans to ``file_path``; return the report it prints."""
    file_path.unlink(missing_ok=True)
    with FakeLLMProvider(usage=USAGE, latency=latency) as fake:
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
    parts.append(f"\nspans written to {file_path}; see them again with: otel-costs tree {file_path}")
    return "\n".join(parts)


def _main(args: argparse.Namespace) -> int:
    print(run(Path(args.file), latency=args.latency))
    return 0


def add_demo_parser(subparsers: Any) -> None:
    """Register ``otel-costs demo``."""
    demo = subparsers.add_parser("demo", help="run a costed multi-agent workflow against a local fake LLM")
    demo.add_argument(
        "--file",
        default=os.environ.get(FILE_ENV, "otel-costs-demo.jsonl"),
        help="where the spans are written (OTLP/JSON lines)",
    )
    demo.add_argument("--latency", type=float, default=0.0, help="seconds the fake provider waits per call")
    demo.set_defaults(func=_main)
