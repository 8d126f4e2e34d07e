"""The real OpenAI Agents SDK against the fake provider: a triage agent, a handoff and an agent as a tool.

Each run is priced by the real pipeline (``InMemoryPipeline`` + ``instrument_httpx``) with
``CostTracingProcessor`` registered, alone and beside OpenInference's or OpenLLMetry's Agents SDK
instrumentation, streamed and not, over the Responses API and the chat-completions model.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from agent_run_checks import check_run, priced_pipeline
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    agent_span,
    set_default_openai_client,
    set_trace_processors,
)
from agents import trace as sdk_trace
from openai import AsyncOpenAI
from opentelemetry.sdk.trace import ReadableSpan

import otel_costs
from otel_costs import conventions as conv
from otel_costs.integrations import openai_agents
from otel_costs.integrations.openai_agents import CostTracingProcessor
from otel_costs.testing import FakeLLMProvider, FakeReply, FakeToolCall, InMemoryPipeline, RecordedRequest

#: A model genai-prices prices; the fake answers with its dated snapshot name, as the API does.
MODEL = "gpt-4o"
RESPONSE_MODELS = {MODEL: "gpt-4o-2024-08-06"}

INSTRUCTIONS = {
    "triage": "You are triage. Ask the researcher, then hand off to billing.",
    "researcher": "You are the researcher. Answer briefly.",
    "billing": "You are billing. Settle the refund.",
}


def priced_spans(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    """The spans otel-costs priced (``cost.status=priced``)."""
    return [s for s in spans if (s.attributes or {}).get(conv.COST_STATUS) == conv.STATUS_PRICED]


def last_user_text(body: Any) -> str:
    """Every string in a request body, joined (to find which agent's instructions it carries)."""
    if isinstance(body, str):
        return body
    if isinstance(body, Mapping):
        return " ".join(last_user_text(v) for v in body.values())
    if isinstance(body, list):
        return " ".join(last_user_text(v) for v in body)
    return ""


def agent_of(request: RecordedRequest) -> str:
    """The agent whose instructions the request carries."""
    text = last_user_text(request.body)
    found = [name for name, instructions in INSTRUCTIONS.items() if instructions in text]
    assert len(found) >= 1, f"no agent's instructions in {request.body!r}"
    # A handed-off agent sees the triage conversation too; its own instructions come first.
    body = request.body or {}
    own = str(body.get("instructions") or (body.get("messages") or [{}])[0].get("content", ""))
    return next((name for name in found if INSTRUCTIONS[name] == own), found[0])


def responder(request: RecordedRequest) -> FakeReply | None:
    """Triage calls the researcher tool, then hands off to billing; the others answer in text."""
    if agent_of(request) != "triage":
        return None
    text = last_user_text(request.body)
    if "research_result" in text or "Hello from the fake provider" in text:
        return FakeReply(tool_calls=[FakeToolCall("transfer_to_billing", {})])
    return FakeReply(tool_calls=[FakeToolCall("ask_researcher", {"input": "research_result please"})])


@pytest.fixture
def fake() -> Iterator[FakeLLMProvider]:
    """The fake provider, scripted for the handoff and the agent tool."""
    with FakeLLMProvider(responder=responder, response_models=RESPONSE_MODELS) as provider:
        yield provider


@pytest.fixture
def pipeline(fake: FakeLLMProvider) -> Iterator[InMemoryPipeline]:
    """The real pipeline at genai-prices' rates, ``instrument_httpx`` capturing the fake's calls."""
    with priced_pipeline(fake) as p:
        yield p


def _instrumentor(which: str) -> Any:
    if which == "openinference":
        from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

        return OpenAIAgentsInstrumentor()
    from opentelemetry.instrumentation.openai_agents import OpenAIAgentsInstrumentor as Traceloop

    return Traceloop()


@pytest.fixture(params=["none", "openinference", "openllmetry"])
def instrumentation(request: pytest.FixtureRequest, pipeline: InMemoryPipeline) -> Iterator[str]:
    """The SDK's processors replaced by ours (nothing reaches api.openai.com), then the instrumentation's."""
    set_trace_processors([CostTracingProcessor(tracer_provider=pipeline.tracer_provider)])
    which = str(request.param)
    instrumentor = None
    if which != "none":
        instrumentor = _instrumentor(which)
        options = {"exclusive_processor": False} if which == "openinference" else {}
        instrumentor.instrument(tracer_provider=pipeline.tracer_provider, **options)
    try:
        yield which
    finally:
        if instrumentor is not None:
            instrumentor.uninstrument()
        set_trace_processors([])


def _agents(client: AsyncOpenAI, api: str) -> Agent[Any]:
    model_type = OpenAIResponsesModel if api == "responses" else OpenAIChatCompletionsModel
    model = model_type(model=MODEL, openai_client=client)
    # A chat-completions stream reports usage only when asked (the SDK does not ask by default).
    settings = ModelSettings(include_usage=True) if api == "chat" else ModelSettings()
    billing = Agent(
        name="billing", instructions=INSTRUCTIONS["billing"], model=model, model_settings=settings
    )
    researcher = Agent(
        name="researcher", instructions=INSTRUCTIONS["researcher"], model=model, model_settings=settings
    )
    return Agent(
        name="triage",
        instructions=INSTRUCTIONS["triage"],
        model=model,
        model_settings=settings,
        handoffs=[billing],
        tools=[researcher.as_tool(tool_name="ask_researcher", tool_description="Ask the researcher.")],
    )


@pytest.mark.parametrize("api", ["responses", "chat"])
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
async def test_each_call_is_priced_once_under_its_agent_with_one_exact_root(
    fake: FakeLLMProvider,
    pipeline: InMemoryPipeline,
    instrumentation: str,
    api: str,
    streamed: bool,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Triage -> researcher (tool) -> handoff to billing: each call priced once, by agent, one exact root."""
    client = AsyncOpenAI(base_url=fake.openai_base_url, api_key="test")
    set_default_openai_client(client, use_for_tracing=False)
    triage = _agents(client, api)
    with caplog.at_level(logging.WARNING):
        if streamed:
            result = Runner.run_streamed(triage, "I was charged twice")
            async for _ in result.stream_events():
                pass
        else:
            result = await Runner.run(triage, "I was charged twice")
    assert result.last_agent.name == "billing"
    assert otel_costs.current_attribution() == {}, "the run's scopes leaked into the caller's context"
    assert [agent_of(r) for r in fake.requests] == ["triage", "researcher", "triage", "billing"]
    table = check_run(pipeline.spans(), fake, agent_of, tmp_path / "spans.jsonl").by_agent
    priced = priced_spans(pipeline.spans())
    workflows = {str((s.attributes or {}).get(conv.WORKFLOW_ID)) for s in priced}
    assert len(workflows) == 1 and workflows.pop().startswith("trace_"), "one workflow per run: the SDK trace"
    print(f"\n[{instrumentation} {api} {'streamed' if streamed else 'whole'}]\n{pipeline.tree()}\n{table}")
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "detach" in m or "another context" in m]


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
async def test_each_call_carries_its_parent_agent(
    fake: FakeLLMProvider, pipeline: InMemoryPipeline, instrumentation: str, streamed: bool
) -> None:
    """Each priced call names its parent agent: triage for the researcher (tool) and for billing (handoff)."""
    client = AsyncOpenAI(base_url=fake.openai_base_url, api_key="test")
    if streamed:
        result = Runner.run_streamed(_agents(client, "responses"), "I was charged twice")
        async for _ in result.stream_events():
            pass
    else:
        await Runner.run(_agents(client, "responses"), "I was charged twice")
    priced = priced_spans(pipeline.spans())
    parents = {
        str((s.attributes or {}).get(conv.AGENT_NAME)): (s.attributes or {}).get(conv.AGENT_PARENT_ID)
        for s in priced
    }
    assert parents == {"triage": None, "researcher": "triage", "billing": "triage"}, parents


async def test_handed_off_agent_has_the_triage_agent_as_parent(
    fake: FakeLLMProvider, pipeline: InMemoryPipeline, tmp_path: Path
) -> None:
    """Billing's agent span names triage as its parent agent, and the researcher's too (agent as tool)."""
    set_trace_processors([CostTracingProcessor(tracer_provider=pipeline.tracer_provider)])
    try:
        client = AsyncOpenAI(base_url=fake.openai_base_url, api_key="test")
        await Runner.run(_agents(client, "responses"), "I was charged twice")
    finally:
        set_trace_processors([])
    parents = {
        str(a.get("gen_ai.agent.name")): a.get("agent.parent_id")
        for a in (s.attributes or {} for s in pipeline.spans())
        if str(a.get("gen_ai.operation.name")) == "invoke_agent"
    }
    assert parents == {"triage": None, "researcher": "triage", "billing": "triage"}


def test_the_processor_never_raises_into_the_sdk(caplog: pytest.LogCaptureFixture) -> None:
    """Events for spans it never saw, or malformed ones, are logged or ignored, never raised."""
    processor = CostTracingProcessor()

    class Broken:
        trace_id = "trace_x"
        span_id = "span_x"
        parent_id = None

        @property
        def span_data(self) -> Any:
            raise RuntimeError("boom")

    processor.on_span_start(Broken())  # type: ignore[arg-type]
    processor.on_span_end(Broken())  # type: ignore[arg-type]
    processor.on_trace_end(Broken())  # type: ignore[arg-type]
    processor.shutdown()
    assert any("could not start the agent scope" in r.getMessage() for r in caplog.records)


def test_all_lists_exactly_the_public_names() -> None:
    """``__all__`` is alphabetised and each name's ``__module__`` is the public module."""
    assert openai_agents.__all__ == sorted(openai_agents.__all__) == ["CostTracingProcessor", "install"]
    for name in openai_agents.__all__:
        assert getattr(openai_agents, name).__module__ == "otel_costs.integrations.openai_agents"


def test_importing_the_module_does_not_import_the_instrumentations() -> None:
    """Importing the module loads the SDK's tracing, not OpenInference's or OpenLLMetry's instrumentation."""
    code = (
        "import sys, otel_costs.integrations.openai_agents as m; "
        "names = ('openinference', 'opentelemetry.instrumentation.openai_agents'); "
        "print(any(n.startswith(names) for n in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("where", ["same", "child_task"])
async def test_a_span_started_in_another_task_ends_cleanly_without_leaking(
    pipeline: InMemoryPipeline, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An SDK agent span started in a child task and ended here ends cleanly: no log, no leak."""
    set_trace_processors([CostTracingProcessor(tracer_provider=pipeline.tracer_provider)])
    try:
        with caplog.at_level(logging.WARNING):
            run = sdk_trace("w")
            run.start(mark_as_current=True)
            span = agent_span("a")
            if where == "same":
                span.start()
            else:

                async def start() -> None:
                    span.start()

                await asyncio.create_task(start())
            span.finish()
            run.finish(reset_current=True)
    finally:
        set_trace_processors([])
    assert sorted(s.name for s in pipeline.spans()) == ["invoke_agent a", "invoke_workflow w"]
    assert all(s.end_time for s in pipeline.spans())
    assert otel_costs.current_attribution() == {}
    assert not [r.getMessage() for r in caplog.records]


async def test_install_replaces_the_sdk_processors_and_names_the_workflow(
    fake: FakeLLMProvider, pipeline: InMemoryPipeline
) -> None:
    """``install(replace=True, workflow_name=...)`` alone is enough: the run is one named workflow."""
    openai_agents.install(tracer_provider=pipeline.tracer_provider, workflow_name="refunds", replace=True)
    try:
        client = AsyncOpenAI(base_url=fake.openai_base_url, api_key="test")
        await Runner.run(_agents(client, "responses"), "I was charged twice")
    finally:
        set_trace_processors([])
    assert pipeline.attributes("invoke_workflow refunds")[conv.WORKFLOW_NAME] == "refunds"
    assert {str((s.attributes or {}).get(conv.WORKFLOW_NAME)) for s in priced_spans(pipeline.spans())} == {
        "refunds"
    }
