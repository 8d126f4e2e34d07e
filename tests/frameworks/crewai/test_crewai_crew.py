"""A sequential CrewAI crew of two agents and two tasks priced per call, per agent and per run."""

from __future__ import annotations

import contextvars
import logging
import os

# CrewAI's own switches, never OTEL_SDK_DISABLED (which would switch otel-costs off too); set
# before crewai is imported, which reads them.
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("CREWAI_TESTING", "true")

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_run_checks import assert_public_module, check_run, modules_loaded_by_import, priced_pipeline
from crewai import LLM, Agent, Crew, Process, Task
from crewai.hooks import InterceptionPoint, dispatch
from crewai.hooks.contexts import StepContext
from crewai.tools import tool
from openinference.instrumentation.crewai import CrewAIInstrumentor as OpenInferenceCrewAI
from opentelemetry.instrumentation.crewai import CrewAIInstrumentor as OpenLLMetryCrewAI

import otel_costs
from otel_costs import conventions as conv
from otel_costs.integrations import crewai as oc_crewai
from otel_costs.testing import FakeLLMProvider, FakeReply, InMemoryPipeline, RecordedRequest

MODEL = "gpt-4o-mini"
ROLES = ("Researcher", "Writer")


@pytest.fixture
def fake() -> Iterator[FakeLLMProvider]:
    """The fake OpenAI-compatible provider on loopback, answering in CrewAI's final-answer format."""
    with FakeLLMProvider(reply="Final Answer: a short answer") as provider:
        yield provider


@pytest.fixture
def pipeline(fake: FakeLLMProvider) -> Iterator[InMemoryPipeline]:
    """The real pipeline (genai-prices) with ``instrument_httpx`` and the CrewAI hooks writing to it."""
    with priced_pipeline(fake) as p:
        yield p


@pytest.fixture
def costs(pipeline: InMemoryPipeline) -> Iterator[oc_crewai.CrewAICosts]:
    """The integration, its hooks registered for the test."""
    with oc_crewai.CrewAICosts(tracer_provider=pipeline.tracer_provider) as integration:
        yield integration


@pytest.fixture(params=["none", "openinference", "openllmetry"])
def tracing(request: pytest.FixtureRequest, pipeline: InMemoryPipeline) -> Iterator[str]:
    """The CrewAI instrumentation the user runs beside otel-costs, through its public API."""
    mode = str(request.param)
    instrumentor: Any = {"openinference": OpenInferenceCrewAI, "openllmetry": OpenLLMetryCrewAI}.get(mode)
    active = instrumentor() if instrumentor is not None else None
    if active is not None:
        active.instrument(tracer_provider=pipeline.tracer_provider)
    try:
        yield mode
    finally:
        if active is not None:
            active.uninstrument()


def _llm(fake: FakeLLMProvider, *, stream: bool) -> Any:
    return LLM(model=f"openai/{MODEL}", base_url=fake.openai_base_url, api_key="test", stream=stream)


def _crew(fake: FakeLLMProvider, costs: oc_crewai.CrewAICosts, *, stream: bool) -> Crew:
    researcher = Agent(
        role="Researcher", goal="Find facts", backstory="You research.", llm=_llm(fake, stream=stream)
    )
    writer = Agent(role="Writer", goal="Write", backstory="You write.", llm=_llm(fake, stream=stream))
    research = Task(description="Research cats", expected_output="Facts", agent=researcher)
    write = Task(description="Write about cats", expected_output="A text", agent=writer)
    return Crew(
        agents=[researcher, writer],
        tasks=[research, write],
        process=Process.sequential,
        step_callback=costs.step_callback,
        name="cats",
    )


def agent_of(request: RecordedRequest) -> str:
    """The agent whose role opens ``request``'s system prompt (CrewAI's "You are {role}.")."""
    first = str(request.body["messages"][0]["content"])
    return next(role for role in ROLES if f"You are {role}" in first)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_each_call_is_priced_once_by_its_agent_under_one_root(
    fake: FakeLLMProvider,
    pipeline: InMemoryPipeline,
    costs: oc_crewai.CrewAICosts,
    tracing: str,
    stream: bool,
    tmp_path: Path,
) -> None:
    """Every call of the kickoff is priced once at the genai-prices figure, by its agent, under one root."""
    _crew(fake, costs, stream=stream).kickoff()

    assert all(bool((r.body or {}).get("stream")) == stream for r in fake.requests)
    result = check_run(pipeline.spans(), fake, agent_of, tmp_path / "spans.jsonl")
    assert result.calls == 2  # one model call per task
    print(f"\n[crewai {tracing} {'streamed' if stream else 'whole'}]\n{result.by_agent}")


def test_a_rejected_tool_call_makes_the_next_call_a_retry(
    fake: FakeLLMProvider, pipeline: InMemoryPipeline, costs: oc_crewai.CrewAICosts, monkeypatch: Any
) -> None:
    """After CrewAI rejects a tool call's input, the model call that retries it carries ``retry.depth`` 1."""
    replies = iter(
        [
            FakeReply(text="Thought: I need the tool\nAction: lookup\nAction Input: Paris, not a dict"),
            FakeReply(text="Thought: I know it now\nFinal Answer: done"),
        ]
    )
    fake_with_tools = FakeLLMProvider(responder=lambda request: next(replies, None))

    @tool("lookup")
    def lookup(city: str) -> str:
        """Look a city up."""
        return f"{city} is nice"

    with fake_with_tools:
        otel_costs.instrument_httpx(
            tracer_provider=pipeline.tracer_provider, llm_hosts={fake_with_tools.host: "openai"}
        )
        llm = _llm(fake_with_tools, stream=False)
        # CrewAI's ReAct path (models without native function calling) is where it hands the
        # step callback the rejected tool call; force it for this model.
        object.__setattr__(llm, "supports_function_calling", lambda: False)
        agent = Agent(
            role="Researcher", goal="Find facts", backstory="You research.", llm=llm, tools=[lookup]
        )
        task = Task(description="Research Paris", expected_output="Facts", agent=agent)
        Crew(agents=[agent], tasks=[task], step_callback=costs.step_callback).kickoff()

    calls = [s for s in pipeline.spans() if (s.attributes or {}).get(conv.COST_STATUS) == conv.STATUS_PRICED]
    assert len(calls) == len(fake_with_tools.requests) == 2
    depths = sorted(int((s.attributes or {}).get(conv.RETRY_DEPTH, -1)) for s in calls)
    assert depths == [0, 1]
    assert all((s.attributes or {}).get(conv.AGENT_NAME) == "Researcher" for s in calls)


def test_a_failed_task_still_ends_its_scopes(
    fake: FakeLLMProvider, pipeline: InMemoryPipeline, costs: oc_crewai.CrewAICosts
) -> None:
    """A kickoff whose model calls fail ends its agent and workflow scopes and leaks no attribution."""
    fake.fail_next(20, status=400)

    with pytest.raises(Exception):  # noqa: B017 - whatever CrewAI raises for the 400
        _crew(fake, costs, stream=False).kickoff()

    assert otel_costs.current_attribution() == {}
    names = {s.name for s in pipeline.spans()}
    assert {"invoke_workflow cats", "invoke_agent Researcher"} <= names


def test_a_task_left_in_another_context_ends_cleanly(
    pipeline: InMemoryPipeline, costs: oc_crewai.CrewAICosts, caplog: pytest.LogCaptureFixture
) -> None:
    """A task whose post_step comes back in another context still ends its agent span, logging no error."""
    task = object()
    step = {"kind": "task", "agent_role": "Researcher", "task": task, "step_name": "Research cats"}
    entered = contextvars.copy_context()
    entered.run(dispatch, InterceptionPoint.PRE_STEP, StepContext(**step))
    contextvars.copy_context().run(dispatch, InterceptionPoint.POST_STEP, StepContext(**step))

    agent_spans = [s for s in pipeline.spans() if s.name == "invoke_agent Researcher"]
    assert len(agent_spans) == 1
    assert (agent_spans[0].attributes or {})[conv.GEN_AI_TASK_NAME] == "Research cats"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert otel_costs.current_attribution() == {}


def test_all_names_the_public_api() -> None:
    """The module's ``__all__`` is exactly its public names, alphabetised, each published under it."""
    assert_public_module(oc_crewai)


def test_importing_the_integration_does_not_import_crewai() -> None:
    """``import otel_costs.integrations.crewai`` loads no CrewAI module until ``instrument()``."""
    assert modules_loaded_by_import("otel_costs.integrations.crewai", ("crewai",)) == []
