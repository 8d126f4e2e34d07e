"""The public surface of ``otel_costs.integrations.langchain`` and what importing it loads."""

from __future__ import annotations

import contextvars
import logging
import subprocess
import sys

import pytest

import otel_costs.integrations.langchain as module


def test_all_is_alphabetised_and_public() -> None:
    """``__all__`` is sorted, and each of its names is defined with the module as its public path."""
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        assert getattr(module, name).__module__ == module.__name__, name


def test_import_does_not_load_langgraph_or_the_model_clients() -> None:
    """Importing the integration loads langchain_core only: no langgraph, langchain_openai or openai."""
    code = (
        "import sys, otel_costs.integrations.langchain; "
        "print(sorted(m for m in ('langgraph', 'langchain_openai', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_run_ended_in_another_context_ends_its_scope_cleanly_and_does_not_leak(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A node started in one context and ended in another ends its agent span, logs no error, and
    the next run started in the first context does not run under the stale agent."""
    from uuid import uuid4

    from opentelemetry import trace

    from otel_costs import current_attribution
    from otel_costs.integrations.langchain import CostCallbackHandler
    from otel_costs.testing import InMemoryPipeline

    with InMemoryPipeline() as pipeline:
        handler = CostCallbackHandler(tracer_provider=pipeline.tracer_provider)
        first, second = contextvars.copy_context(), contextvars.copy_context()
        graph, node, later = uuid4(), uuid4(), uuid4()
        node_meta = {"langgraph_node": "researcher"}

        def start(run_id: object, parent: object, metadata: dict[str, str]) -> None:
            handler.on_chain_start({}, {}, run_id=run_id, parent_run_id=parent, metadata=metadata)

        first.run(start, graph, None, {"otel_workflow_span": True})
        first.run(start, node, graph, node_meta)
        assert first.run(current_attribution)["agent.name"] == "researcher"
        # The node's task ends in a copy of the context, as LangGraph's async tasks do.
        first.copy().run(handler.on_chain_end, {}, run_id=node)
        first.run(start, later, graph, {"langgraph_node": "writer"})
        assert first.run(current_attribution)["agent.name"] == "writer"
        assert first.run(current_attribution).get("agent.parent_id") is None
        first.run(handler.on_chain_end, {}, run_id=later)
        second.run(handler.on_chain_end, {}, run_id=graph)
        names = [s.name for s in pipeline.spans()]
        assert sorted(names) == [
            "invoke_agent researcher",
            "invoke_agent writer",
            "invoke_workflow LangGraph",
        ]
        spans = {s.name: s for s in pipeline.spans()}
        writer = spans["invoke_agent writer"]
        assert writer.parent is not None
        assert writer.parent.span_id == spans["invoke_workflow LangGraph"].context.span_id
        assert not trace.get_current_span().get_span_context().is_valid
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize(
    ("tags", "failures_before", "depth"),
    [(["retry:attempt:2"], 0, "1"), (["retry:attempt:3"], 0, "2"), ([], 1, "1"), ([], 0, None)],
    ids=["runnable-retry-2", "runnable-retry-3", "langgraph-task-again", "first-attempt"],
)
def test_a_re_attempt_runs_at_the_next_retry_depth(
    tags: list[str], failures_before: int, depth: str | None
) -> None:
    """A ``retry:attempt:N`` run, or a LangGraph task started again after a failure, is at depth N-1."""
    from uuid import uuid4

    from otel_costs import current_attribution
    from otel_costs.integrations.langchain import CostCallbackHandler
    from otel_costs.testing import InMemoryPipeline

    with InMemoryPipeline() as pipeline:
        handler = CostCallbackHandler(tracer_provider=pipeline.tracer_provider)
        graph = uuid4()
        task = {"langgraph_node": "researcher", "langgraph_checkpoint_ns": "researcher:task-1"}
        handler.on_chain_start({}, {}, run_id=graph, metadata={"otel_workflow_span": True})
        for _ in range(failures_before):
            failed = uuid4()
            handler.on_chain_start({}, {}, run_id=failed, parent_run_id=graph, metadata=task)
            handler.on_chain_error(RuntimeError("rate limited"), run_id=failed)
        again = uuid4()
        handler.on_chain_start({}, {}, run_id=again, parent_run_id=graph, tags=tags, metadata=task)
        seen = current_attribution().get("retry.depth")
        handler.on_chain_end({}, run_id=again)
        handler.on_chain_end({}, run_id=graph)
    assert seen == (depth or "0")
