"""The demo's multi-agent workflow: OpenAI chat completions over httpx, attributed to agents.

coordinator -> code_agent -> syntax_analyzer (whose first attempt fails with a 500 and is
retried with backoff), then a parallel fan-out of three reviewers with asyncio. The requests are
what the ``openai`` SDK sends for ``chat.completions.create``, so the demo needs only the base
install; ``otel_costs.cli._demo`` runs it on the configured pipeline.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from opentelemetry.sdk.trace import TracerProvider

from otel_costs.attribution._scopes import agent, retry, workflow
from otel_costs.testing._fake_model import FakeUsage
from otel_costs.testing._fake_provider import FakeLLMProvider

#: The model each agent uses, and the usage the fake provider reports for it.
MODELS = {"gpt-5.2": FakeUsage(input_tokens=1800, output_tokens=600, cache_read_tokens=400)}
SMALL_MODEL = "gpt-5-mini"
USAGE = {**MODELS, SMALL_MODEL: FakeUsage(input_tokens=900, output_tokens=250)}


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
