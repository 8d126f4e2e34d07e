"""workflow(), agent() and retry(): spans, W3C baggage, and attribution of every nested span."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from opentelemetry import baggage, context, propagate
from ulid import ULID

import otel_costs
from otel_costs import conventions as conv
from otel_costs.testing import InMemoryPipeline

LlmCallFn = Callable[..., None]


class Flaky(Exception):
    """The retryable failure of these tests."""


class Fatal(Exception):
    """A failure that is not retried."""


def attribution_of(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The attribution attributes among ``attributes``."""
    names = set(conv.BAGGAGE_TO_ATTRIBUTE.values()) | {conv.AGENT_PARENT_ID}
    return {k: v for k, v in attributes.items() if k in names}


# --- workflow() --------------------------------------------------------------------------


def test_workflow_context_manager_starts_span_with_new_ulid(pipeline: InMemoryPipeline) -> None:
    """workflow() starts ``invoke_workflow {name}`` and, with no id given, a fresh ULID per entry."""
    scope = otel_costs.workflow(
        "support", user_id="u-42", team_id="billing", tracer_provider=pipeline.tracer_provider
    )
    with scope:
        first = scope.workflow_id
        assert otel_costs.current_attribution()[conv.BAGGAGE_WORKFLOW_ID] == first
    with scope:
        second = scope.workflow_id
    assert first is not None and second is not None and first != second
    ULID.from_str(first)  # a valid ULID, or this raises
    spans = [s for s in pipeline.spans() if s.name == "invoke_workflow support"]
    assert [s.attributes[conv.WORKFLOW_ID] for s in spans if s.attributes] == [first, second]
    attrs = spans[0].attributes or {}
    assert attrs[conv.WORKFLOW_NAME] == "support"
    assert attrs[conv.USER_ID] == "u-42"
    assert attrs[conv.TEAM_ID] == "billing"
    assert attrs[conv.GEN_AI_OPERATION_NAME] == conv.OPERATION_INVOKE_WORKFLOW


def test_workflow_fixed_id_and_extra_attributes(pipeline: InMemoryPipeline) -> None:
    """A given workflow_id is used as is; extra keyword attributes go on the span and into baggage."""
    with otel_costs.workflow(
        "w", workflow_id="wf-1", tenant="acme", tracer_provider=pipeline.tracer_provider
    ):
        assert baggage.get_baggage("tenant") == "acme"
    attrs = pipeline.attributes("invoke_workflow w")
    assert attrs[conv.WORKFLOW_ID] == "wf-1"
    assert attrs["tenant"] == "acme"
    assert baggage.get_baggage("tenant") is None  # the baggage is gone after the scope


def test_workflow_decorator_sync_gives_a_new_id_per_call(pipeline: InMemoryPipeline) -> None:
    """Decorating a function gives each call its own span and workflow id."""

    @otel_costs.workflow("nightly", tracer_provider=pipeline.tracer_provider)
    def run(x: int) -> tuple[int, str]:
        return x * 2, otel_costs.current_attribution()[conv.BAGGAGE_WORKFLOW_ID]

    (r1, id1), (r2, id2) = run(1), run(2)
    assert (r1, r2) == (2, 4)
    assert id1 != id2
    assert run.__name__ == "run"
    ids = [
        (s.attributes or {})[conv.WORKFLOW_ID]
        for s in pipeline.spans()
        if s.name == "invoke_workflow nightly"
    ]
    assert ids == [id1, id2]


async def test_workflow_decorator_async_gives_a_new_id_per_call(pipeline: InMemoryPipeline) -> None:
    """An async function decorated with workflow() keeps its scope across awaits, one id per call."""

    @otel_costs.workflow("nightly", tracer_provider=pipeline.tracer_provider)
    async def run() -> str:
        await asyncio.sleep(0)
        return otel_costs.current_attribution()[conv.BAGGAGE_WORKFLOW_ID]

    assert asyncio.iscoroutinefunction(run)
    ids = await asyncio.gather(run(), run(), run())
    assert len(set(ids)) == 3
    spans = [s for s in pipeline.spans() if s.name == "invoke_workflow nightly"]
    assert sorted(str((s.attributes or {})[conv.WORKFLOW_ID]) for s in spans) == sorted(ids)


async def test_async_with_workflow(pipeline: InMemoryPipeline) -> None:
    """workflow() and agent() also work as async context managers."""
    tp = pipeline.tracer_provider
    async with otel_costs.workflow("w", tracer_provider=tp), otel_costs.agent("a", tracer_provider=tp):
        assert otel_costs.current_attribution()[conv.BAGGAGE_AGENT_NAME] == "a"
    assert {s.name for s in pipeline.spans()} == {"invoke_workflow w", "invoke_agent a"}


def test_workflow_span_records_exceptions(pipeline: InMemoryPipeline) -> None:
    """An exception leaving a workflow propagates and marks its span as an error."""
    with pytest.raises(Fatal), otel_costs.workflow("w", tracer_provider=pipeline.tracer_provider):
        raise Fatal("boom")
    span = pipeline.span("invoke_workflow w")
    assert not span.status.is_ok
    assert [e.name for e in span.events] == ["exception"]
    assert otel_costs.current_attribution() == {}


# --- agent() -----------------------------------------------------------------------------


def test_agent_spans_and_parent_agent(pipeline: InMemoryPipeline, llm_call: LlmCallFn) -> None:
    """agent() starts ``invoke_agent {name}``; the agent current on entry is its parent, and LLM spans
    below carry the innermost agent."""
    tp = pipeline.tracer_provider
    with (
        otel_costs.workflow("w", workflow_id="wf", tracer_provider=tp),
        otel_costs.agent("coordinator", tracer_provider=tp),
    ):
        with otel_costs.agent("coder", agent_id="coder-7", tracer_provider=tp):
            llm_call(tp, "gpt-5.2", 10, 10)
        with otel_costs.agent("reviewer", tracer_provider=tp):
            pass
    coordinator = pipeline.attributes("invoke_agent coordinator")
    assert coordinator[conv.AGENT_NAME] == "coordinator"
    assert coordinator[conv.AGENT_ID] == "coordinator"  # the id defaults to the name
    assert conv.AGENT_PARENT_ID not in coordinator
    assert coordinator[conv.GEN_AI_OPERATION_NAME] == conv.OPERATION_INVOKE_AGENT
    coder = pipeline.attributes("invoke_agent coder")
    assert (coder[conv.AGENT_ID], coder[conv.AGENT_PARENT_ID]) == ("coder-7", "coordinator")
    assert pipeline.attributes("invoke_agent reviewer")[conv.AGENT_PARENT_ID] == "coordinator"
    assert attribution_of(pipeline.attributes("chat gpt-5.2")) == {
        conv.WORKFLOW_ID: "wf",
        conv.WORKFLOW_NAME: "w",
        conv.AGENT_NAME: "coder",
        conv.AGENT_ID: "coder-7",
        conv.RETRY_DEPTH: 0,
        # Written by the exporter's agent-from-the-tree rule (issue 11): the next agent above.
        conv.AGENT_PARENT_ID: "coordinator",
    }


def test_new_workflow_starts_a_fresh_agent_chain(pipeline: InMemoryPipeline) -> None:
    """An agent of a nested workflow has no parent agent from the enclosing workflow."""
    tp = pipeline.tracer_provider
    with otel_costs.agent("outer", tracer_provider=tp), otel_costs.workflow("inner", tracer_provider=tp):
        assert conv.BAGGAGE_AGENT_NAME not in otel_costs.current_attribution()
        with otel_costs.agent("inner-agent", tracer_provider=tp):
            pass
    assert conv.AGENT_PARENT_ID not in pipeline.attributes("invoke_agent inner-agent")


@pytest.mark.parametrize("is_async", [False, True])
def test_agent_decorator(pipeline: InMemoryPipeline, is_async: bool) -> None:
    """agent() decorates sync and async functions; the caller's agent becomes the parent."""
    tp = pipeline.tracer_provider
    if is_async:

        @otel_costs.agent("helper", tracer_provider=tp)
        async def helper_async() -> str:
            return otel_costs.current_attribution()[conv.BAGGAGE_AGENT_NAME]

        def helper() -> str:
            return asyncio.run(helper_async())

    else:

        @otel_costs.agent("helper", tracer_provider=tp)
        def helper() -> str:
            return otel_costs.current_attribution()[conv.BAGGAGE_AGENT_NAME]

    with otel_costs.agent("boss", tracer_provider=tp):
        assert helper() == "helper"
        assert helper() == "helper"
    spans = [s for s in pipeline.spans() if s.name == "invoke_agent helper"]
    assert [(s.attributes or {})[conv.AGENT_PARENT_ID] for s in spans] == ["boss", "boss"]


# --- retry() -----------------------------------------------------------------------------


def failing(times: int, exc: type[Exception] = Flaky) -> Callable[[], int]:
    """A function that raises ``exc`` on its first ``times`` calls, then returns the retry depth."""
    calls = {"n": 0}

    def fn() -> int:
        calls["n"] += 1
        if calls["n"] <= times:
            raise exc(f"attempt {calls['n']}")
        return int(otel_costs.current_attribution()[conv.BAGGAGE_RETRY_DEPTH])

    return fn


def retry_depths(pipeline: InMemoryPipeline, step: str) -> list[object]:
    """The ``retry.depth`` of each ``retry {step}`` span, in the order they ended."""
    return [(s.attributes or {})[conv.RETRY_DEPTH] for s in pipeline.spans() if s.name == f"retry {step}"]


@pytest.mark.parametrize("is_async", [False, True])
def test_retry_decorator_counts_depth(
    pipeline: InMemoryPipeline, llm_call: LlmCallFn, is_async: bool
) -> None:
    """The decorated function is called again on a retryable error; depth 0 first, +1 per re-attempt."""
    tp = pipeline.tracer_provider
    backoffs: list[int] = []
    body = failing(2)

    def attempt_once() -> int:
        llm_call(tp, "gpt-5.2", 1, 1)
        return body()

    def backoff(depth: int) -> float:
        backoffs.append(depth)
        return 0.0

    if is_async:

        @otel_costs.retry("step", max_attempts=3, retry_on=Flaky, backoff=backoff, tracer_provider=tp)
        async def run_async() -> int:
            return attempt_once()

        result = asyncio.run(run_async())
    else:

        @otel_costs.retry("step", max_attempts=3, retry_on=Flaky, backoff=backoff, tracer_provider=tp)
        def run() -> int:
            return attempt_once()

        result = run()
    assert result == 2
    assert backoffs == [1, 2]
    assert retry_depths(pipeline, "step") == [0, 1, 2]
    llm_depths = [
        (s.attributes or {})[conv.RETRY_DEPTH] for s in pipeline.spans() if s.name == "chat gpt-5.2"
    ]
    assert llm_depths == [0, 1, 2]


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.parametrize(
    ("exc", "max_attempts", "attempts"),
    [(Fatal, 3, 1), (Flaky, 3, 3), (Flaky, 1, 1)],
    ids=["not-retryable", "last-failure", "single-attempt"],
)
def test_retry_decorator_propagates(
    pipeline: InMemoryPipeline, is_async: bool, exc: type[Exception], max_attempts: int, attempts: int
) -> None:
    """A non-retryable error propagates at once; the last attempt's error propagates after the last try."""
    body = failing(99, exc)
    retry = otel_costs.retry(
        "s", max_attempts=max_attempts, retry_on=(Flaky,), tracer_provider=pipeline.tracer_provider
    )
    if is_async:

        async def run_async() -> int:
            return body()

        with pytest.raises(exc, match=f"attempt {attempts}$"):
            asyncio.run(retry(run_async)())
    else:
        with pytest.raises(exc, match=f"attempt {attempts}$"):
            retry(body)()
    assert retry_depths(pipeline, "s") == list(range(attempts))
    assert otel_costs.current_attribution() == {}


def test_retry_for_attempt_form(pipeline: InMemoryPipeline) -> None:
    """``for attempt in retry(...): with attempt:`` retries retryable errors and stops after a success."""
    body = failing(1)
    results = []
    seen_failures: list[str] = []
    for attempt in otel_costs.retry("loop", max_attempts=5, tracer_provider=pipeline.tracer_provider):
        with attempt:
            results.append((attempt.depth, body()))
        if attempt.failed is not None:
            seen_failures.append(str(attempt.failed))
    assert results == [(1, 1)]
    assert seen_failures == ["attempt 1"]
    assert retry_depths(pipeline, "loop") == [0, 1]


@pytest.mark.parametrize(("exc", "attempts"), [(Fatal, 1), (Flaky, 3)])
def test_retry_for_attempt_form_propagates(
    pipeline: InMemoryPipeline, exc: type[Exception], attempts: int
) -> None:
    """In the loop form too, a non-retryable error and the last failure leave the loop."""
    body = failing(99, exc)
    with pytest.raises(exc, match=f"attempt {attempts}$"):
        for attempt in otel_costs.retry("loop", retry_on=Flaky, tracer_provider=pipeline.tracer_provider):
            with attempt:
                body()
    assert retry_depths(pipeline, "loop") == list(range(attempts))


def test_retry_rejects_zero_attempts() -> None:
    """max_attempts below 1 is a ValueError at construction."""
    with pytest.raises(ValueError, match="max_attempts"):
        otel_costs.retry("s", max_attempts=0)


def test_agent_resets_retry_depth(pipeline: InMemoryPipeline) -> None:
    """An agent called from a retried step starts its own calls at depth 0."""
    tp = pipeline.tracer_provider
    depths = []
    for attempt in otel_costs.retry("s", tracer_provider=tp):
        with attempt:
            if attempt.depth == 0:
                raise Flaky
            with otel_costs.agent("a", tracer_provider=tp):
                depths.append(otel_costs.current_attribution()[conv.BAGGAGE_RETRY_DEPTH])
    assert depths == ["0"]


# --- propagation -------------------------------------------------------------------------


def run_in_thread(target: Callable[[], None]) -> None:
    """Run ``target`` in a new thread and wait for it; re-raise what it raised."""
    errors: list[BaseException] = []

    def wrapped() -> None:
        try:
            target()
        except BaseException as exc:  # pragma: no cover - only on failure
            errors.append(exc)

    thread = threading.Thread(target=wrapped)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


EXPECTED_NESTED = {
    conv.WORKFLOW_ID: "wf-1",
    conv.WORKFLOW_NAME: "w",
    conv.USER_ID: "u",
    conv.TEAM_ID: "t",
    conv.AGENT_NAME: "a",
    conv.AGENT_ID: "a",
    conv.RETRY_DEPTH: 0,
}


@pytest.mark.parametrize("how", ["copy_context", "otel_attach"])
def test_baggage_reaches_threads_that_carry_the_context(
    pipeline: InMemoryPipeline, llm_call: LlmCallFn, how: str
) -> None:
    """A thread run in a copied context (or with the OTel context attached) attributes its spans."""
    tp = pipeline.tracer_provider
    with (
        otel_costs.workflow("w", workflow_id="wf-1", user_id="u", team_id="t", tracer_provider=tp),
        otel_costs.agent("a", tracer_provider=tp),
    ):
        if how == "copy_context":
            ctx = contextvars.copy_context()
            run_in_thread(lambda: ctx.run(llm_call, tp, "gpt-5.2", 1, 1))
        else:
            captured = context.get_current()

            def work() -> None:
                token = context.attach(captured)
                try:
                    llm_call(tp, "gpt-5.2", 1, 1)
                finally:
                    context.detach(token)

            run_in_thread(work)
    span = pipeline.span("chat gpt-5.2")
    assert attribution_of(span.attributes or {}) == EXPECTED_NESTED
    assert span.parent is not None and span.parent.span_id == pipeline.span("invoke_agent a").context.span_id


def test_thread_without_context_is_not_attributed(pipeline: InMemoryPipeline, llm_call: LlmCallFn) -> None:
    """A bare thread starts from an empty context: its spans carry no attribution (the control case)."""
    tp = pipeline.tracer_provider
    with otel_costs.workflow("w", workflow_id="wf-1", tracer_provider=tp):
        run_in_thread(lambda: llm_call(tp, "gpt-5.2", 1, 1))
    assert attribution_of(pipeline.attributes("chat gpt-5.2")) == {}


async def test_baggage_reaches_asyncio_tasks(pipeline: InMemoryPipeline, llm_call: LlmCallFn) -> None:
    """Tasks from gather() and create_task() inherit the attribution; parallel agents keep their own."""
    tp = pipeline.tracer_provider

    async def sub_agent(name: str) -> None:
        with otel_costs.agent(name, tracer_provider=tp):
            await asyncio.sleep(0)
            llm_call(tp, "gpt-5.2", 1, 1, **{"test.caller": name})

    async def plain_call() -> None:
        await asyncio.sleep(0)
        llm_call(tp, "gemini-3-pro", 1, 1)

    with (
        otel_costs.workflow("w", workflow_id="wf-1", user_id="u", team_id="t", tracer_provider=tp),
        otel_costs.agent("a", tracer_provider=tp),
    ):
        await asyncio.gather(sub_agent("x"), sub_agent("y"))
        await asyncio.create_task(plain_call())
    calls = [s for s in pipeline.spans() if s.name == "chat gpt-5.2"]
    assert len(calls) == 2
    for span in calls:
        attrs = span.attributes or {}
        assert attrs[conv.AGENT_NAME] == attrs["test.caller"]
        assert attrs[conv.WORKFLOW_ID] == "wf-1"
    for name in ("x", "y"):
        assert pipeline.attributes(f"invoke_agent {name}")[conv.AGENT_PARENT_ID] == "a"
    assert attribution_of(pipeline.attributes("chat gemini-3-pro")) == EXPECTED_NESTED


CHILD = """
import json, sys
from opentelemetry import context, propagate
from otel_costs.testing import InMemoryPipeline

carrier = json.loads(sys.stdin.read())
with InMemoryPipeline(service_name="child") as pipeline:
    token = context.attach(propagate.extract(carrier))
    try:
        with pipeline.tracer_provider.get_tracer("child").start_as_current_span("child work"):
            pass
    finally:
        context.detach(token)
    span = pipeline.span("child work")
pipeline.shutdown()
print(json.dumps({
    "attributes": dict(span.attributes),
    "trace_id": span.context.trace_id,
    "parent_id": span.parent.span_id,
    "remote": span.parent.is_remote,
}))
"""


def test_baggage_reaches_another_process(pipeline: InMemoryPipeline) -> None:
    """Injected into headers, the attribution and the trace reach a child process's spans."""
    tp = pipeline.tracer_provider
    carrier: dict[str, str] = {}
    with (
        otel_costs.workflow("w", workflow_id="wf-1", user_id="u", team_id="t", tracer_provider=tp),
        otel_costs.agent("a", tracer_provider=tp),
    ):
        for attempt in otel_costs.retry("s", tracer_provider=tp):
            with attempt:
                if attempt.depth == 0:
                    raise Flaky
                propagate.inject(carrier)
    assert "baggage" in carrier and "traceparent" in carrier
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=json.dumps(carrier),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    child = json.loads(done.stdout)
    assert attribution_of(child["attributes"]) == {**EXPECTED_NESTED, conv.RETRY_DEPTH: 1}
    assert child["remote"] is True
    assert child["attributes"][conv.COST_ROLLUP_REMOTE_PARENT] is True
    retry_span = [s for s in pipeline.spans() if s.name == "retry s"][-1]
    assert retry_span.context is not None
    assert (child["trace_id"], child["parent_id"]) == (
        retry_span.context.trace_id,
        retry_span.context.span_id,
    )


async def test_one_scope_object_entered_by_concurrent_tasks(pipeline: InMemoryPipeline) -> None:
    """A scope object shared by interleaved tasks gives each task its own span and restores its context."""
    tp = pipeline.tracer_provider
    shared = otel_costs.agent("shared", tracer_provider=tp)
    a_inside, b_inside, b_may_leave = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def first() -> dict[str, str]:
        with shared:
            a_inside.set()
            await b_inside.wait()
            with tp.get_tracer("t").start_as_current_span("a-child"):
                pass
        return otel_costs.current_attribution()  # left while the other task is still inside

    async def second() -> dict[str, str]:
        await a_inside.wait()
        with shared:
            b_inside.set()
            await b_may_leave.wait()
            with tp.get_tracer("t").start_as_current_span("b-child"):
                pass
        return otel_costs.current_attribution()

    task_a, task_b = asyncio.create_task(first()), asyncio.create_task(second())
    after_a = await task_a
    b_may_leave.set()
    after_b = await task_b
    assert after_a == {} and after_b == {}
    agents = [s for s in pipeline.spans() if s.name == "invoke_agent shared"]
    assert len(agents) == 2
    for child in ("a-child", "b-child"):
        parent = pipeline.span(child).parent
        assert parent is not None
        (owner,) = [s for s in agents if s.context is not None and s.context.span_id == parent.span_id]
        assert owner.end_time is not None and owner.end_time >= (pipeline.span(child).end_time or 0)


def test_scopes_record_the_application_call_site(pipeline: InMemoryPipeline) -> None:
    """workflow(), agent() and retry() spans carry the code.* location of the line that entered them."""
    with otel_costs.workflow("w", tracer_provider=pipeline.tracer_provider):
        line = sys._getframe().f_lineno - 1
        with otel_costs.agent("a", tracer_provider=pipeline.tracer_provider):
            pass
    for name, want_line in (("invoke_workflow w", line), ("invoke_agent a", line + 2)):
        attributes = pipeline.attributes(name)
        assert (
            attributes[conv.CODE_FUNCTION_NAME] == f"{__name__}.test_scopes_record_the_application_call_site"
        )
        assert attributes[conv.CODE_FILE_PATH] == __file__
        assert attributes[conv.CODE_LINE_NUMBER] == want_line


def test_a_decorated_function_records_its_caller(pipeline: InMemoryPipeline) -> None:
    """A scope used as a decorator records the caller of the decorated function, not the library's wrapper."""

    @otel_costs.agent("deco", tracer_provider=pipeline.tracer_provider)
    def work() -> None:
        pass

    work()
    line = sys._getframe().f_lineno - 1
    attributes = pipeline.attributes("invoke_agent deco")
    assert attributes[conv.CODE_FUNCTION_NAME] == f"{__name__}.test_a_decorated_function_records_its_caller"
    assert attributes[conv.CODE_LINE_NUMBER] == line


# --- scopes left in another context than they were entered (issue 11, item 8) --------------------

Factory = Callable[..., Any]
SCOPES: list[tuple[str, Factory]] = [
    ("agent", lambda tp: otel_costs.agent("hooked", tracer_provider=tp)),
    ("workflow", lambda tp: otel_costs.workflow("hooked", tracer_provider=tp)),
]


def _assert_clean_exit(
    pipeline: InMemoryPipeline, caplog: pytest.LogCaptureFixture, llm_call: Callable[..., None]
) -> None:
    """The scope's span ended, nothing was logged at warning or above, and a call made now is not
    attributed to the scope."""
    names = [s.name for s in pipeline.spans()]
    assert any(name.endswith(" hooked") for name in names), names
    assert [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")] == []
    llm_call(pipeline.tracer_provider, "gpt-5.2", 10, 10)
    assert attribution_of(pipeline.attributes("chat gpt-5.2")).get(conv.AGENT_NAME) is None
    assert conv.BAGGAGE_AGENT_NAME not in otel_costs.current_attribution()


@pytest.mark.parametrize(("kind", "make"), SCOPES, ids=[k for k, _ in SCOPES])
def test_scope_entered_in_one_task_and_exited_in_another(
    kind: str, make: Factory, pipeline: InMemoryPipeline, caplog: pytest.LogCaptureFixture, llm_call: Any
) -> None:
    """Entered in one asyncio task and exited in another (hooks of async frameworks): ends cleanly."""
    scope = make(pipeline.tracer_provider)

    async def main() -> None:
        entered = asyncio.Event()

        async def start() -> None:
            scope.__enter__()
            entered.set()

        async def end() -> None:
            await entered.wait()
            scope.__exit__(None, None, None)

        await asyncio.gather(asyncio.create_task(start()), asyncio.create_task(end()))

    asyncio.run(main())
    _assert_clean_exit(pipeline, caplog, llm_call)


@pytest.mark.parametrize(("kind", "make"), SCOPES, ids=[k for k, _ in SCOPES])
def test_scope_entered_in_a_copied_context_and_exited_outside(
    kind: str, make: Factory, pipeline: InMemoryPipeline, caplog: pytest.LogCaptureFixture, llm_call: Any
) -> None:
    """Entered inside ``copy_context().run`` and exited in the caller's context: ends cleanly."""
    scope = make(pipeline.tracer_provider)
    contextvars.copy_context().run(scope.__enter__)
    scope.__exit__(None, None, None)
    _assert_clean_exit(pipeline, caplog, llm_call)


@pytest.mark.parametrize(("kind", "make"), SCOPES, ids=[k for k, _ in SCOPES])
def test_scope_exited_in_a_context_copied_from_inside_it(
    kind: str, make: Factory, pipeline: InMemoryPipeline, caplog: pytest.LogCaptureFixture, llm_call: Any
) -> None:
    """Entered in a callback context and exited in a copy of it made inside the scope: that copy's
    next call is not attributed to the scope."""
    scope = make(pipeline.tracer_provider)
    hook = contextvars.copy_context()
    inner = hook.run(lambda: (scope.__enter__(), contextvars.copy_context())[1])

    def exit_and_call() -> None:
        scope.__exit__(None, None, None)
        _assert_clean_exit(pipeline, caplog, llm_call)

    inner.run(exit_and_call)


@pytest.mark.parametrize(("kind", "make"), SCOPES, ids=[k for k, _ in SCOPES])
def test_scope_entered_and_exited_in_different_threads(
    kind: str, make: Factory, pipeline: InMemoryPipeline, caplog: pytest.LogCaptureFixture, llm_call: Any
) -> None:
    """Entered in one thread and exited in another: the span ends, no error, no leak into the next call."""
    scope = make(pipeline.tracer_provider)
    entered = threading.Event()
    errors: list[BaseException] = []

    def run(fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    def exit_then_check() -> None:
        assert entered.wait(10)
        scope.__exit__(None, None, None)
        _assert_clean_exit(pipeline, caplog, llm_call)

    def enter() -> None:
        scope.__enter__()
        entered.set()

    first = threading.Thread(target=run, args=(enter,))
    second = threading.Thread(target=run, args=(exit_then_check,))
    first.start()
    second.start()
    first.join(10)
    second.join(10)
    assert errors == []
    assert not first.is_alive() and not second.is_alive()


def test_exception_recorded_when_exited_elsewhere(pipeline: InMemoryPipeline) -> None:
    """An error passed to an exit in another context is recorded on the scope's span."""
    scope = otel_costs.agent("hooked", tracer_provider=pipeline.tracer_provider)
    contextvars.copy_context().run(scope.__enter__)
    scope.__exit__(ValueError, ValueError("boom"), None)
    span = pipeline.span("invoke_agent hooked")
    assert span.status.description == "ValueError: boom"
    assert [e.name for e in span.events] == ["exception"]


def test_exit_without_entry_is_ignored(pipeline: InMemoryPipeline, caplog: pytest.LogCaptureFixture) -> None:
    """Exiting a scope that was never entered does nothing and logs no warning."""
    otel_costs.agent("never", tracer_provider=pipeline.tracer_provider).__exit__(None, None, None)
    assert pipeline.spans() == [] and [r for r in caplog.records if r.levelname == "WARNING"] == []
