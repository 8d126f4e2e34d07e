"""A two-agent AutoGen ``RoundRobinGroupChat`` priced per call, per agent and per run, under each tracing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_run_checks import assert_public_module, check_run, modules_loaded_by_import, priced_pipeline
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_ext.models.openai import OpenAIChatCompletionClient
from openinference.instrumentation.autogen_agentchat import AutogenAgentChatInstrumentor
from opentelemetry import trace

import otel_costs
from otel_costs import conventions as conv
from otel_costs.integrations import autogen as oc_autogen
from otel_costs.testing import FakeLLMProvider, InMemoryPipeline, RecordedRequest

MODEL = "gpt-4o-mini"
AGENTS = ("writer", "critic")
#: Each agent's system prompt names it, so the fake's log says which agent sent each request.
SYSTEM = {name: f"You are the {name} of a two-agent team." for name in AGENTS}
MODEL_INFO = {
    "vision": False,
    "function_calling": True,
    "json_output": False,
    "family": "unknown",
    "structured_output": False,
}


class _RoutedTracer(trace.Tracer):
    """A tracer that asks the route for its target provider at each span start (no-op without one)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _tracer(self) -> trace.Tracer:
        target = _ROUTE.target
        return target.get_tracer(self._name) if target is not None else trace.NoOpTracer()

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._tracer().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self._tracer().start_as_current_span(*args, **kwargs)


class _Route(trace.TracerProvider):
    """The global provider: the running test's pipeline when it wants AutoGen's native spans, else no-op.

    AutoGen's native ``invoke_agent`` and runtime spans always go to the global tracer provider,
    which can be set once per process; a no-op tracer (not a dropping SDK provider) keeps the
    pipeline's trees whole when a test does not want them.
    """

    target: trace.TracerProvider | None = None

    def get_tracer(self, instrumenting_module_name: str, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _RoutedTracer(instrumenting_module_name)


_ROUTE = _Route()
trace.set_tracer_provider(_ROUTE)


@pytest.fixture
def fake() -> Iterator[FakeLLMProvider]:
    """The fake OpenAI-compatible provider on loopback."""
    with FakeLLMProvider(reply="A short answer from the fake.") as provider:
        yield provider


@pytest.fixture
def pipeline(fake: FakeLLMProvider) -> Iterator[InMemoryPipeline]:
    """The real pipeline (genai-prices) with ``instrument_httpx`` writing to it."""
    with priced_pipeline(fake) as p:
        yield p


@pytest.fixture(params=["none", "openinference", "native"])
def tracing(request: pytest.FixtureRequest, pipeline: InMemoryPipeline) -> Iterator[str]:
    """The tracing the user runs beside otel-costs: none, OpenInference's, or AutoGen's own."""
    mode = str(request.param)
    instrumentor = AutogenAgentChatInstrumentor()
    if mode == "openinference":
        instrumentor.instrument(tracer_provider=pipeline.tracer_provider)
    if mode == "native":
        _ROUTE.target = pipeline.tracer_provider
    try:
        yield mode
    finally:
        _ROUTE.target = None
        if mode == "openinference":
            instrumentor.uninstrument()


def _team(fake: FakeLLMProvider, *, stream: bool, include_usage: bool = True) -> tuple[Any, list[Any]]:
    def client() -> OpenAIChatCompletionClient:
        extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
        return OpenAIChatCompletionClient(
            model=MODEL, base_url=fake.openai_base_url, api_key="test", model_info=MODEL_INFO, **extra
        )

    agents = [
        AssistantAgent(name, model_client=client(), system_message=SYSTEM[name], model_client_stream=stream)
        for name in AGENTS
    ]
    return RoundRobinGroupChat(agents, termination_condition=MaxMessageTermination(5)), agents


def agent_of(request: RecordedRequest) -> str:
    """The agent whose system prompt opens ``request``."""
    first = request.body["messages"][0]["content"]
    return next(name for name, text in SYSTEM.items() if text in str(first))


async def _run(team: Any, agents: list[Any], tracing: str, pipeline: InMemoryPipeline, stream: bool) -> None:
    # Under AutoGen's native tracing its invoke_agent spans name the agents; otherwise the
    # integration wraps each agent's turns in an agent scope.
    wrapped = [] if tracing == "native" else agents
    kwargs: dict[str, Any] = {"agents": wrapped, "tracer_provider": pipeline.tracer_provider}
    if stream:
        async for _ in oc_autogen.run_stream(team, "poem", task="Write a two-line poem.", **kwargs):
            pass
    else:
        await oc_autogen.run(team, "poem", task="Write a two-line poem.", **kwargs)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_each_call_is_priced_once_by_its_agent_under_one_root(
    fake: FakeLLMProvider, pipeline: InMemoryPipeline, tracing: str, stream: bool, tmp_path: Path
) -> None:
    """Every call of the team run is priced once at the genai-prices figure, by its agent, under one root."""
    team, agents = _team(fake, stream=stream)

    await _run(team, agents, tracing, pipeline, stream)

    result = check_run(pipeline.spans(), fake, agent_of, tmp_path / "spans.jsonl")
    assert result.calls == 4  # MaxMessageTermination(5): the task and four replies
    print(f"\n[autogen {tracing} {'streamed' if stream else 'whole'}]\n{result.by_agent}")


async def test_a_stream_without_usage_is_unpriced_never_zero(
    fake: FakeLLMProvider, pipeline: InMemoryPipeline, tracing: str, tmp_path: Path
) -> None:
    """A streamed run whose calls reported no usage is flagged on every call (unpriced or partial, with
    the reason), never priced as a whole $0."""
    team, agents = _team(fake, stream=True, include_usage=False)

    await _run(team, agents, tracing, pipeline, stream=True)

    assert fake.requests and all(r.usage is None for r in fake.requests)
    spans = pipeline.spans()
    zero_priced = [s.name for s in spans if (s.attributes or {}).get(conv.COST_STATUS) == conv.STATUS_PRICED]
    assert zero_priced == [], f"calls without usage priced (at $0): {zero_priced}"
    # The spec (issue 11.3): the call is flagged, unpriced or partial, with the capture layer's reason
    # ("streamed without include_usage") or "usage reported as zero" for an instrumentation's zeros.
    flagged = [
        s
        for s in spans
        if (s.attributes or {}).get(conv.COST_STATUS) in (conv.STATUS_UNPRICED, conv.STATUS_PARTIAL)
    ]
    assert len(flagged) >= len(fake.requests), [
        (s.name, (s.attributes or {}).get(conv.COST_STATUS)) for s in spans
    ]
    reasons = {str((s.attributes or {}).get(conv.COST_STATUS_REASON)) for s in flagged}
    assert all("include_usage" in r or "usage reported as zero" in r for r in reasons), reasons


async def test_scopes_end_and_unwrap_when_the_run_fails(
    fake: FakeLLMProvider, pipeline: InMemoryPipeline
) -> None:
    """A failing team run still ends its workflow and agent scopes, restores the agents, leaks nothing."""
    fake.fail_next(10, status=400)
    team, agents = _team(fake, stream=True)

    with pytest.raises(Exception):  # noqa: B017 - whatever AutoGen raises for the 400
        await _run(team, agents, "none", pipeline, stream=True)

    assert all("on_messages_stream" not in vars(a) for a in agents)
    assert otel_costs.current_attribution() == {}
    names = [s.name for s in pipeline.spans()]
    assert "invoke_workflow poem" in names


def test_all_names_the_public_api() -> None:
    """The module's ``__all__`` is exactly its public names, alphabetised, each published under it."""
    assert_public_module(oc_autogen)


def test_importing_the_integration_does_not_import_autogen() -> None:
    """``import otel_costs.integrations.autogen`` loads no AutoGen module (it only duck-types teams)."""
    assert modules_loaded_by_import("otel_costs.integrations.autogen", ("autogen", "openai")) == []
