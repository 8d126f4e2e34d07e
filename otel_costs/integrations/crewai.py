"""CrewAI: each crew run a workflow, each task an agent scope of the agent doing it, retries counted.

CrewAI's interception hooks (``crewai.hooks``) run in the thread and context that executes the
crew and its tasks, unlike its event bus (whose handlers run on a thread pool, where a scope would
reach no model call). ``CrewAICosts`` registers four of them: ``execution_start``/``execution_end``
open and close an ``otel_costs.workflow`` per kickoff (one root, one run total), and
``pre_step``/``post_step`` an ``otel_costs.agent(role)`` scope around each task, its span carrying
``gen_ai.task.name``. Its ``step_callback`` (pass it to ``Crew(step_callback=...)``) opens a
``retry`` attempt, ``retry.depth`` one higher, after each tool call that failed validation, so the
model calls that retry it are counted as retries.

Example::

    costs = CrewAICosts().instrument()
    crew = Crew(agents=[researcher, writer], tasks=[research, write], step_callback=costs.step_callback)
    crew.kickoff()

Switch CrewAI's own telemetry off with ``CREWAI_DISABLE_TELEMETRY=true``, never
``OTEL_SDK_DISABLED`` (which switches off every OpenTelemetry SDK, otel-costs included). The
module imports CrewAI only in ``instrument()``; it never raises into CrewAI (it logs and goes on).
"""

from __future__ import annotations

import contextvars
import logging
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from opentelemetry import trace

import otel_costs
from otel_costs import conventions as conv

logger = logging.getLogger(__name__)

__all__ = ["CrewAICosts", "TOOL_VALIDATION_ERRORS"]

#: How CrewAI words a tool call it rejected before running the tool (its ``en.json`` error
#: texts): the model is asked again, so the next calls are a retry.
TOOL_VALIDATION_ERRORS: tuple[str, ...] = (
    "Error: the Action Input is not a valid key, value dictionary",
    "I encountered an error while trying to use the tool",
    "You tried to use the tool",
    "I encountered an error:",
    "Error executing tool",
)


@dataclass
class _Open:
    """One scope this integration entered: the context manager and the span it made current."""

    cm: AbstractContextManager[Any]
    span: trace.Span


@dataclass
class _TaskRun:
    """The scopes of one task execution, innermost last, and its retry attempts."""

    role: str
    scopes: list[_Open] = field(default_factory=list)
    retries_due: int = 0
    """Rejected tool calls seen so far: the ``retry.depth`` of the task's next model calls."""


#: The task run of the current context: CrewAI calls step callbacks and model calls in copies
#: of the task's context (other threads), where this still finds the run.
_RUN: contextvars.ContextVar[_TaskRun | None] = contextvars.ContextVar("otel_costs.crewai.run", default=None)
#: The retry attempts open around model calls in this context, innermost first.
_CALL: contextvars.ContextVar[tuple[_Open, Any] | None] = contextvars.ContextVar(
    "otel_costs.crewai.call", default=None
)


class CrewAICosts:
    """Workflow, agent and retry scopes for CrewAI crews, from CrewAI's interception hooks.

    - ``tracer_provider``: where the scopes' spans go (default: the global provider).
    - ``workflow_name``: the workflow's name (default: the crew's ``name``, else ``"crew"``).
    - ``workflow_kwargs``: passed to ``otel_costs.workflow`` (``user_id``, ``team_id``, ...).

    ``instrument()`` registers the hooks (returns ``self``), ``uninstrument()`` removes them and
    ends any scope still open; it is also a context manager doing both.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        workflow_name: str | None = None,
        workflow_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._workflow_name = workflow_name
        self._workflow_kwargs = dict(workflow_kwargs or {})
        self._lock = threading.Lock()
        self._crews: dict[int, _Open] = {}
        # Keyed by task, not by context: a hook that comes back in another context still finds
        # (and ends) the scopes of its task.
        self._tasks: dict[int, _TaskRun] = {}
        self._registered: list[tuple[Any, Any]] = []

    # --- registration -----------------------------------------------------------------------

    def instrument(self) -> CrewAICosts:
        """Register the hooks with CrewAI (idempotent). Example: ``costs = CrewAICosts().instrument()``."""
        if self._registered:
            return self
        from crewai.hooks import InterceptionPoint, register_hook

        for point, hook in (
            (InterceptionPoint.EXECUTION_START, self._on_execution_start),
            (InterceptionPoint.EXECUTION_END, self._on_execution_end),
            (InterceptionPoint.PRE_STEP, self._on_pre_step),
            (InterceptionPoint.POST_STEP, self._on_post_step),
            (InterceptionPoint.PRE_MODEL_CALL, self._on_pre_model_call),
            (InterceptionPoint.POST_MODEL_CALL, self._on_post_model_call),
        ):
            register_hook(point, hook)
            self._registered.append((point, hook))
        return self

    def uninstrument(self) -> None:
        """Remove the hooks and end every scope still open (innermost first)."""
        if self._registered:
            from crewai.hooks import unregister_hook

            for point, hook in reversed(self._registered):
                unregister_hook(point, hook)
            self._registered.clear()
        with self._lock:
            tasks, crews = list(self._tasks.values()), list(self._crews.values())
            self._tasks.clear()
            self._crews.clear()
        for run in reversed(tasks):
            for opened in reversed(run.scopes):
                _leave(opened)
        for opened in reversed(crews):
            _leave(opened)

    def __enter__(self) -> CrewAICosts:
        return self.instrument()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.uninstrument()

    # --- hooks ------------------------------------------------------------------------------

    def _on_execution_start(self, ctx: Any) -> None:
        try:
            crew = getattr(ctx, "crew", None)
            if crew is None or getattr(ctx, "flow", None) is not None:
                return
            name = self._workflow_name or _text(getattr(crew, "name", None)) or "crew"
            scope = otel_costs.workflow(name, tracer_provider=self._tracer_provider, **self._workflow_kwargs)
            opened = _enter(scope)
            if opened is not None:
                with self._lock:
                    previous = self._crews.pop(id(crew), None)
                    self._crews[id(crew)] = opened
                if previous is not None:
                    _leave(previous)
        except Exception:
            logger.exception("otel_costs: could not open the workflow scope of a CrewAI kickoff")

    def _on_execution_end(self, ctx: Any) -> None:
        try:
            crew = getattr(ctx, "crew", None)
            if crew is None:
                return
            with self._lock:
                opened = self._crews.pop(id(crew), None)
                # A failed task may never reach post_step: its scopes end here, before the crew's.
                keys = [key for key in self._tasks if _task_of_crew(key, crew)]
                leftover = [self._tasks.pop(key) for key in keys]
            for run in reversed(leftover):
                for scope in reversed(run.scopes):
                    _leave(scope)
            if opened is not None:
                _leave(opened)
        except Exception:
            logger.exception("otel_costs: could not close the workflow scope of a CrewAI kickoff")

    def _on_pre_step(self, ctx: Any) -> None:
        try:
            task = getattr(ctx, "task", None)
            if getattr(ctx, "kind", None) != "task" or task is None:
                return
            role = _text(getattr(ctx, "agent_role", None)) or "(crewai agent)"
            opened = _enter(otel_costs.agent(role, tracer_provider=self._tracer_provider))
            if opened is None:
                return
            task_name = _text(getattr(ctx, "step_name", None))
            if task_name:
                opened.span.set_attribute(conv.GEN_AI_TASK_NAME, task_name)
            run = _TaskRun(role, scopes=[opened])
            with self._lock:
                self._tasks[id(task)] = run
            _RUN.set(run)
        except Exception:
            logger.exception("otel_costs: could not open the agent scope of a CrewAI task")

    def _on_post_step(self, ctx: Any) -> None:
        try:
            task = getattr(ctx, "task", None)
            if getattr(ctx, "kind", None) != "task" or task is None:
                return
            with self._lock:
                run = self._tasks.pop(id(task), None)
            if _RUN.get() is run:
                _RUN.set(None)
            if run is not None:
                for opened in reversed(run.scopes):
                    _leave(opened)
        except Exception:
            logger.exception("otel_costs: could not close the agent scope of a CrewAI task")

    # --- step callback ----------------------------------------------------------------------

    def step_callback(self, step: Any) -> None:
        """``Crew(step_callback=...)``: after a tool call CrewAI rejected, count what follows as a retry.

        Each rejected tool call (an agent step whose ``result`` is one of
        ``TOOL_VALIDATION_ERRORS``) makes the task's next model call open the next
        ``retry {role} tool call`` attempt inside the task's agent scope, so the calls that retry
        it carry ``retry.depth`` 1, 2, ...; the task's end closes it.
        """
        try:
            run = _RUN.get()
            if run is not None and _is_tool_validation_error(step):
                run.retries_due += 1
        except Exception:
            logger.exception("otel_costs: could not count a CrewAI tool retry")

    def _on_pre_model_call(self, ctx: Any) -> None:
        # The attempt is opened here and closed after the call, in the context that makes the
        # call: CrewAI runs steps (and step callbacks) in copies of the task's context.
        try:
            run = _RUN.get()
            if run is None or run.retries_due == 0:
                return
            retried = otel_costs.retry(
                f"{run.role} tool call",
                max_attempts=run.retries_due + 1,
                tracer_provider=self._tracer_provider,
            )
            attempt = next(a for a in retried if a.depth == run.retries_due)
            opened = _enter(attempt)
            if opened is not None:
                _CALL.set((opened, _CALL.get()))
        except Exception:
            logger.exception("otel_costs: could not open a CrewAI retry attempt")

    def _on_post_model_call(self, ctx: Any) -> None:
        try:
            entry = _CALL.get()
            if entry is not None:
                _CALL.set(entry[1])
                _leave(entry[0])
        except Exception:
            logger.exception("otel_costs: could not close a CrewAI retry attempt")


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _task_of_crew(task_key: int, crew: Any) -> bool:
    tasks = getattr(crew, "tasks", None) or ()
    return any(id(task) == task_key for task in tasks)


def _is_tool_validation_error(step: Any) -> bool:
    # CrewAI hands the step callback the tool's ToolResult and then the AgentAction carrying
    # the same result: only the action (it names the tool) counts, so one rejection is one retry.
    if not hasattr(step, "tool"):
        return False
    result = getattr(step, "result", None)
    return isinstance(result, str) and result.lstrip().startswith(TOOL_VALIDATION_ERRORS)


def _enter(cm: AbstractContextManager[Any]) -> _Open | None:
    """Enter ``cm`` in the current context; remember the span it made current."""
    try:
        cm.__enter__()
    except Exception:
        logger.exception("otel_costs: could not enter %r", cm)
        return None
    return _Open(cm, trace.get_current_span())


def _leave(opened: _Open) -> None:
    """Leave ``opened``, and make sure its span has ended.

    A hook may come back in another context than the one it entered (CrewAI runs steps in
    copies of the task's context): the scope is told to exit all the same (otel-costs' scopes end
    their span cleanly there), and a span that is still open after that is ended here.
    """
    try:
        opened.cm.__exit__(None, None, None)
    except Exception:
        logger.exception("otel_costs: could not leave %r", opened.cm)
    try:
        if opened.span.is_recording():
            logger.debug("otel_costs: %s left in another context; ending its span", opened.cm)
            opened.span.end()
    except Exception:
        logger.exception("otel_costs: could not end the span of %r", opened.cm)


from otel_costs._public import publish as _publish  # noqa: E402

_publish(globals(), __all__, __name__)
