"""Real Pydantic AI against the fake provider: a supervisor delegating to two sub-agents through tools.

Each run is priced by the real pipeline (``InMemoryPipeline`` + ``instrument_httpx``), with
Pydantic AI's own instrumentation on (``otel_costs.integrations.pydantic_ai.instrument``) or off
(then the program names its agents with ``otel_costs.agent``), alone or beside OpenInference's or
OpenLLMetry's openai instrumentation, streamed and not.
"""

from __future__ import annotations

import contextlib
import importlib
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import wrapt
from agent_run_checks import check_run, priced_pipeline
from openai import AsyncOpenAI
from opentelemetry.sdk.trace import TracerProvider
from pydantic_ai import Agent, AgentRunResultEvent, RunContext
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

import otel_costs
from otel_costs.integrations import pydantic_ai as integration
from otel_costs.testing import FakeLLMProvider, FakeReply, FakeToolCall, InMemoryPipeline, RecordedRequest

#: A model genai-prices prices; the fake answers with its dated snapshot name, as the API does.
MODEL = "gpt-4o"
RESPONSE_MODELS = {MODEL: "gpt-4o-2024-08-06"}
#: The openai SDK classes whose methods the openai instrumentations patch (module, class names).
OPENAI_SDK_CLASSES = (
    ("openai.resources.chat.completions", ("Completions", "AsyncCompletions")),
    ("openai.resources.responses", ("Responses", "AsyncResponses")),
)

INSTRUCTIONS = {
    "supervisor": "You are the supervisor. Delegate to the researcher and the writer.",
    "researcher": "You are the researcher. Find the facts.",
    "writer": "You are the writer. Write the summary.",
}


def unwrap_openai_sdk() -> None:
    """Remove the wrapt patches an ``uninstrument()`` left on the openai SDK.

    OpenLLMetry's openai instrumentation leaves some behind, which would send the next test's
    spans to a pipeline already shut down (``tests/instrumentations``' helper does the same).
    """
    for module_name, class_names in OPENAI_SDK_CLASSES:
        module = importlib.import_module(module_name)
        for cls in (getattr(module, name) for name in class_names):
            for name, value in list(vars(cls).items()):
                while isinstance(value, wrapt.FunctionWrapper):
                    value = value.__wrapped__
                    setattr(cls, name, value)


def _system_text(body: Any) -> str:
    messages = (body or {}).get("messages") or []
    return " ".join(str(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))


def agent_of(request: RecordedRequest) -> str:
    """The agent whose instructions the request's system message carries."""
    text = _system_text(request.body)
    found = [name for name, instructions in INSTRUCTIONS.items() if instructions in text]
    assert len(found) == 1, f"which agent sent {request.body!r}?"
    return found[0]


def responder(request: RecordedRequest) -> FakeReply | None:
    """The supervisor asks both sub-agents at once, then answers; the sub-agents answer in text."""
    if agent_of(request) != "supervisor":
        return None
    if any(m.get("role") == "tool" for m in request.body.get("messages", [])):
        return None
    return FakeReply(
        tool_calls=[
            FakeToolCall("ask_researcher", {"question": "facts?"}),
            FakeToolCall("ask_writer", {"question": "summary?"}),
        ]
    )


@pytest.fixture
def fake() -> Iterator[FakeLLMProvider]:
    """The fake provider, scripted for the delegation."""
    with FakeLLMProvider(responder=responder, response_models=RESPONSE_MODELS) as provider:
        yield provider


@pytest.fixture
def pipeline(fake: FakeLLMProvider) -> Iterator[InMemoryPipeline]:
    """The real pipeline at genai-prices' rates, ``instrument_httpx`` capturing the fake's calls."""
    with priced_pipeline(fake) as p:
        try:
            yield p
        finally:
            Agent.instrument_all(False)


@pytest.fixture(params=["none", "openinference", "openllmetry"])
def openai_instrumentation(request: pytest.FixtureRequest, pipeline: InMemoryPipeline) -> Iterator[str]:
    """An openai SDK instrumentation beside Pydantic AI's (or none), through its public API."""
    which = str(request.param)
    instrumentor: Any = None
    if which == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor

        instrumentor = OpenAIInstrumentor()
    elif which == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor as Traceloop

        instrumentor = Traceloop()
    if instrumentor is not None:
        instrumentor.instrument(tracer_provider=pipeline.tracer_provider)
    try:
        yield which
    finally:
        if instrumentor is not None:
            instrumentor.uninstrument()
            unwrap_openai_sdk()


def _scope(name: str, provider: TracerProvider | None) -> contextlib.AbstractContextManager[Any]:
    """Without Pydantic AI's instrumentation (``provider`` set) the program names its agents itself."""
    return contextlib.nullcontext() if provider is None else otel_costs.agent(name, tracer_provider=provider)


def _agents(client: AsyncOpenAI, streamed: bool, provider: TracerProvider | None) -> Agent[None, str]:
    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client))
    subs = {
        name: Agent(model, name=name, instructions=INSTRUCTIONS[name]) for name in ("researcher", "writer")
    }
    supervisor: Agent[None, str] = Agent(model, name="supervisor", instructions=INSTRUCTIONS["supervisor"])

    async def delegate(ctx: RunContext[None], name: str, question: str) -> str:
        with _scope(name, provider):
            return await _run(subs[name], question, streamed, ctx)

    @supervisor.tool
    async def ask_researcher(ctx: RunContext[None], question: str) -> str:
        """Ask the researcher."""
        return await delegate(ctx, "researcher", question)

    @supervisor.tool
    async def ask_writer(ctx: RunContext[None], question: str) -> str:
        """Ask the writer."""
        return await delegate(ctx, "writer", question)

    return supervisor


async def _run(
    agent: Agent[None, str], prompt: str, streamed: bool, ctx: RunContext[None] | None = None
) -> str:
    usage = ctx.usage if ctx is not None else None
    if not streamed:
        return (await agent.run(prompt, usage=usage)).output
    output = ""
    async with agent.run_stream_events(prompt, usage=usage) as events:
        async for event in events:
            if isinstance(event, AgentRunResultEvent):
                output = str(event.result.output)
    return output


@contextlib.asynccontextmanager
async def _run_scope(provider: TracerProvider | None) -> AsyncIterator[None]:
    """The run's root: Pydantic AI's ``invoke_agent supervisor`` span, or the program's workflow."""
    if provider is None:
        yield
    else:
        with (
            otel_costs.workflow("delegation", tracer_provider=provider),
            otel_costs.agent("supervisor", tracer_provider=provider),
        ):
            yield


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("instrumented", [True, False], ids=["pydantic-ai-on", "pydantic-ai-off"])
async def test_each_call_is_priced_once_under_its_agent_with_one_exact_root(
    fake: FakeLLMProvider,
    pipeline: InMemoryPipeline,
    openai_instrumentation: str,
    instrumented: bool,
    streamed: bool,
    tmp_path: Path,
) -> None:
    """Supervisor -> researcher and writer (tools): each call priced once, by agent, one exact root."""
    if instrumented:
        integration.instrument(tracer_provider=pipeline.tracer_provider)
    client = AsyncOpenAI(base_url=fake.openai_base_url, api_key="test")
    scopes = None if instrumented else pipeline.tracer_provider
    supervisor = _agents(client, streamed, scopes)
    async with _run_scope(scopes):
        await _run(supervisor, "Summarise the incident", streamed)
    assert sorted(agent_of(r) for r in fake.requests) == ["researcher", "supervisor", "supervisor", "writer"]
    table = check_run(pipeline.spans(), fake, agent_of, tmp_path / "spans.jsonl").by_agent
    label = (
        f"{openai_instrumentation} {'on' if instrumented else 'off'} {'streamed' if streamed else 'whole'}"
    )
    print(f"\n[{label}]\n{pipeline.tree()}\n{table}")


def test_all_lists_exactly_the_public_names() -> None:
    """``__all__`` is alphabetised and each name's ``__module__`` is the public module."""
    assert integration.__all__ == sorted(integration.__all__) == ["instrument"]
    assert integration.instrument.__module__ == "otel_costs.integrations.pydantic_ai"


def test_importing_the_module_does_not_import_pydantic_ai() -> None:
    """Importing the module loads nothing of Pydantic AI until ``instrument()`` is called."""
    code = "import sys, otel_costs.integrations.pydantic_ai; print('pydantic_ai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
