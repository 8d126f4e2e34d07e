"""The workflow of a LangGraph run, opened by ``instrument_langchain()`` around ``Pregel.stream``/``astream``.

Real graphs (nodes that call no model), sync and async, with no instrumentation and with
OpenInference's, whose tracer comes first in LangChain's handler list in a sync run: the
workflow must exist before any handler's first span, so a run is one trace under one root.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any, TypedDict

import pytest
from langgraph.graph import START, StateGraph
from langgraph.pregel import Pregel
from opentelemetry import baggage, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

import otel_costs
from otel_costs import conventions as conv
from otel_costs import current_attribution
from otel_costs.integrations.langchain import (
    CostCallbackHandler,
    instrument_langchain,
    uninstrument_langchain,
)
from otel_costs.testing import InMemoryPipeline

WORKFLOW = f"{conv.OPERATION_INVOKE_WORKFLOW} "


class State(TypedDict):
    """The graph's state: the nodes that ran, in order."""

    seen: list[str]


def _node(name: str, *, fail: bool = False) -> Any:
    def node(state: State) -> dict[str, Any]:
        if fail:
            raise RuntimeError(f"{name} failed")
        return {"seen": [*state["seen"], name]}

    return node


def build(*, name: str | None = None, fail: bool = False, subgraph: Any = None) -> Any:
    """START -> first -> second (or the subgraph); ``fail``: second raises."""
    graph = StateGraph(State)
    graph.add_node("first", _node("first"))
    graph.add_node("second", subgraph if subgraph is not None else _node("second", fail=fail))
    graph.add_edge(START, "first")
    graph.add_edge("first", "second")
    return graph.compile(name=name) if name is not None else graph.compile()


async def run(app: Any, *, streamed: bool, config: dict[str, Any] | None = None) -> None:
    """One run of ``app``: ``astream`` if streamed, else ``invoke``."""
    if streamed:
        async for _ in app.astream({"seen": []}, config):
            pass
    else:
        app.invoke({"seen": []}, config)


@pytest.fixture
def instrumented(pipeline: InMemoryPipeline) -> Iterator[InMemoryPipeline]:
    """The test's pipeline with ``instrument_langchain()`` on, removed when the test ends."""
    instrument_langchain(tracer_provider=pipeline.tracer_provider)
    try:
        yield pipeline
    finally:
        uninstrument_langchain()


@pytest.fixture
def handler(pipeline: InMemoryPipeline) -> CostCallbackHandler:
    """A handler to pass in ``config`` (the conftest removes the ``Pregel`` wrappers it adds)."""
    return CostCallbackHandler(tracer_provider=pipeline.tracer_provider)


def workflows(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    """The ``invoke_workflow`` spans."""
    return [s for s in spans if s.name.startswith(WORKFLOW)]


def assert_one_trace_under(spans: list[ReadableSpan], root_name: str) -> ReadableSpan:
    """All spans are one trace whose only root is ``root_name``; returns that root."""
    roots = [s for s in spans if s.parent is None]
    assert [r.name for r in roots] == [root_name], sorted((s.name, s.parent is None) for s in spans)
    assert {s.context.trace_id for s in spans} == {roots[0].context.trace_id}
    return roots[0]


def assert_caller_context_clean() -> None:
    """Nothing of the run is left in the caller's context."""
    assert current_attribution() == {} and not baggage.get_all()
    assert not trace.get_current_span().get_span_context().is_valid


STREAMED = pytest.mark.parametrize("streamed", [False, True], ids=["invoke", "astream"])
BOTH = pytest.mark.parametrize("pipeline", ["none", "openinference"], indirect=True)


@BOTH
@STREAMED
async def test_a_named_graph_is_one_trace_under_its_workflow(
    instrumented: InMemoryPipeline, streamed: bool
) -> None:
    """A graph compiled with a name is one trace under ``invoke_workflow {name}``, instrumentations inside."""
    await run(build(name="report"), streamed=streamed)
    spans = instrumented.spans()
    root = assert_one_trace_under(spans, f"{WORKFLOW}report")
    assert (root.attributes or {})[conv.WORKFLOW_NAME] == "report"
    assert len(workflows(spans)) == 1
    assert_caller_context_clean()


@BOTH
@STREAMED
async def test_thread_id_is_the_workflow_id(instrumented: InMemoryPipeline, streamed: bool) -> None:
    """The run's ``configurable.thread_id`` is its workflow's ``workflow.id``."""
    await run(build(), streamed=streamed, config={"configurable": {"thread_id": "t-42"}})
    root = assert_one_trace_under(instrumented.spans(), f"{WORKFLOW}LangGraph")
    assert (root.attributes or {})[conv.WORKFLOW_ID] == "t-42"


@BOTH
@STREAMED
async def test_otel_workflow_span_true_opens_exactly_one_workflow(
    instrumented: InMemoryPipeline, streamed: bool
) -> None:
    """``otel_workflow_span=True`` gives one workflow span (not the wrapper's and the handler's)."""
    await run(build(), streamed=streamed, config={"metadata": {"otel_workflow_span": True}})
    spans = instrumented.spans()
    assert_one_trace_under(spans, f"{WORKFLOW}LangGraph")
    assert len(workflows(spans)) == 1


@STREAMED
async def test_otel_workflow_span_false_opens_none(instrumented: InMemoryPipeline, streamed: bool) -> None:
    """``otel_workflow_span=False`` opens no workflow, and leaves nothing current."""
    await run(build(), streamed=streamed, config={"metadata": {"otel_workflow_span": False}})
    assert workflows(instrumented.spans()) == []
    assert_caller_context_clean()


@BOTH
@STREAMED
async def test_a_workflow_the_caller_opened_is_the_runs(
    instrumented: InMemoryPipeline, streamed: bool
) -> None:
    """Inside the caller's ``otel_costs.workflow``, the run opens no workflow of its own."""
    with otel_costs.workflow("nightly", tracer_provider=instrumented.tracer_provider):
        await run(build(), streamed=streamed)
    spans = instrumented.spans()
    assert_one_trace_under(spans, f"{WORKFLOW}nightly")
    assert [s.name for s in workflows(spans)] == [f"{WORKFLOW}nightly"]


@BOTH
@STREAMED
async def test_a_subgraph_node_runs_in_its_parents_workflow(
    instrumented: InMemoryPipeline, streamed: bool
) -> None:
    """A compiled graph used as a node opens no second workflow: one trace, one workflow."""
    await run(build(subgraph=build(name="inner")), streamed=streamed)
    spans = instrumented.spans()
    assert_one_trace_under(spans, f"{WORKFLOW}LangGraph")
    assert len(workflows(spans)) == 1


@BOTH
@STREAMED
async def test_a_failing_run_ends_its_workflow_as_failed(
    instrumented: InMemoryPipeline, streamed: bool
) -> None:
    """A node's exception reaches the caller, the workflow span ends with status ERROR, nothing leaks."""
    with pytest.raises(RuntimeError, match="second failed"):
        await run(build(fail=True), streamed=streamed)
    spans = instrumented.spans()
    root = assert_one_trace_under(spans, f"{WORKFLOW}LangGraph")
    assert root.status.status_code is StatusCode.ERROR
    assert_caller_context_clean()


@BOTH
@STREAMED
async def test_a_handler_passed_in_config_is_one_trace(
    handler: CostCallbackHandler, pipeline: InMemoryPipeline, streamed: bool
) -> None:
    """Without ``instrument_langchain()``, a handler in ``config`` makes a run one trace under a workflow."""
    await run(build(name="report"), streamed=streamed, config={"callbacks": [handler]})
    spans = pipeline.spans()
    assert_one_trace_under(spans, f"{WORKFLOW}report")
    assert len(workflows(spans)) == 1
    assert_caller_context_clean()


@BOTH
@STREAMED
async def test_without_the_integration_a_callers_workflow_is_one_trace(
    pipeline: InMemoryPipeline, streamed: bool
) -> None:
    """With no otel-costs handler, a run inside ``otel_costs.workflow`` is one trace under it."""
    with otel_costs.workflow("report", tracer_provider=pipeline.tracer_provider):
        await run(build(), streamed=streamed)
    spans = pipeline.spans()
    assert_one_trace_under(spans, f"{WORKFLOW}report")
    assert [s.name for s in workflows(spans)] == [f"{WORKFLOW}report"]


@pytest.mark.parametrize("pipeline", ["none", "openinference"], indirect=True)
def test_a_sync_stream_left_early_ends_its_workflow(instrumented: InMemoryPipeline) -> None:
    """Leaving ``stream`` after its first item ends the workflow span and restores the caller's context."""
    stream = build().stream({"seen": []})
    first = next(stream)
    assert first, "the graph streamed nothing"
    assert current_attribution()[conv.BAGGAGE_WORKFLOW_NAME] == "LangGraph"
    stream.close()
    spans = instrumented.spans()
    assert [s.name for s in workflows(spans)] == [f"{WORKFLOW}LangGraph"]
    assert_caller_context_clean()


@pytest.mark.parametrize("pipeline", ["none"], indirect=True)
def test_uninstrument_restores_pregel_stream_and_astream(pipeline: InMemoryPipeline) -> None:
    """``uninstrument_langchain()`` puts back the very ``Pregel.stream``/``astream`` it found."""
    uninstrument_langchain()  # whatever an earlier test in this process left
    before = [inspect.getattr_static(Pregel, name) for name in ("stream", "astream")]
    instrument_langchain(tracer_provider=pipeline.tracer_provider)
    try:
        assert [inspect.getattr_static(Pregel, name) for name in ("stream", "astream")] != before
    finally:
        uninstrument_langchain()
    assert [inspect.getattr_static(Pregel, name) for name in ("stream", "astream")] == before
    build().invoke({"seen": []})
    assert workflows(pipeline.spans()) == []


@pytest.mark.parametrize("pipeline", ["none"], indirect=True)
async def test_a_handler_in_config_leaves_the_callers_context_clean_after_astream(
    handler: CostCallbackHandler, pipeline: InMemoryPipeline
) -> None:
    """After ``astream`` with a handler in ``config``, the caller's next span is a root, agent-less."""
    await run(build(name="report"), streamed=True, config={"callbacks": [handler]})
    with pipeline.tracer_provider.get_tracer("test").start_as_current_span("after"):
        pass
    after = next(s for s in pipeline.spans() if s.name == "after")
    assert after.parent is None
    assert conv.AGENT_NAME not in (after.attributes or {})
