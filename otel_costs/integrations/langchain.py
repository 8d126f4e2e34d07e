"""LangChain and LangGraph: agent, workflow and retry scopes opened from run metadata.

``CostCallbackHandler`` is a LangChain callback handler that turns the run metadata the official
OpenTelemetry LangChain instrumentation reads (``agent_name``, ``lc_agent_name``,
``langgraph_node``, ``otel_agent_span``, ``otel_workflow_span``, ``thread_id``) and LangChain's
retry tags (``retry:attempt:N``) into ``otel_costs.workflow`` / ``agent`` / ``retry`` scopes.
Everything a run does (``ChatOpenAI``, or the ``openai`` SDK called directly inside a node) then
carries its agent in baggage, in span attributes and as the parent span, which the span tree alone
cannot know when no instrumentation (or one that writes no agent) is installed.

Example::

    from otel_costs.integrations.langchain import CostCallbackHandler, instrument_langchain

    instrument_langchain()  # every run, after any instrumentation's handler
    graph.invoke(state)  # or per run: config={"callbacks": [CostCallbackHandler()]}

A run's callbacks can arrive in different contexts (async graphs, thread pools). The handler keeps
its own map run id -> scope, ends a run's unfinished descendants before the run itself, and only
restores the OpenTelemetry context where it attached it; elsewhere it ends the scope's span alone.
It never raises into LangChain: a failure is logged and the run goes on.

``instrument_langchain()`` also wraps LangGraph's ``Pregel.stream``/``astream`` so that a graph
run's workflow is open before LangGraph calls any handler: a sync run calls its handlers in list
order, and OpenInference's tracer (added when the callback manager is made) comes before the
configure hook's handler, so a workflow opened in ``on_chain_start`` would start after
OpenInference's root span and the run would be two traces.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry import context, trace
from opentelemetry.trace import Status, StatusCode

import otel_costs
from otel_costs.attribution import Attempt, Scope, current_attribution
from otel_costs.integrations._contexts import _PROBE, _heal, _is_stale, _mark_stale, _same_context

logger = logging.getLogger("otel_costs")

#: LangChain's ``RunnableRetry`` tags each re-attempt's run ``retry:attempt:N`` (N = 2, 3, ...).
_RETRY_TAG = re.compile(r"^retry:attempt:(\d+)$")
#: LangGraph nodes that are plumbing, not agents (the official instrumentation skips them too).
_NOT_AGENTS = frozenset({"__start__", "__end__"})
_MIDDLEWARE_PREFIX = "Middleware."


@dataclass(slots=True)
class _Opened:
    """One scope the handler entered, and how to leave it."""

    scope: Scope | Attempt
    span: trace.Span
    entered: context.Context
    """The OpenTelemetry context current right after entry."""
    before: context.Context
    """The OpenTelemetry context current before entry."""
    probe: contextvars.Token[object]


@dataclass(slots=True)
class _Run:
    """What the handler knows of one LangChain run."""

    parent: UUID | None
    agent: str | None
    """The agent in effect for this run (its own scope's, or inherited from its parent run)."""
    opened: list[_Opened] = field(default_factory=list)
    """Scopes entered for this run, outermost first."""
    children: list[UUID] = field(default_factory=list)
    task: str | None = None
    """The LangGraph task namespace (``langgraph_checkpoint_ns``): the same across its retries."""
    flagged: bool = False
    """Whether its metadata says ``otel_workflow_span=True`` (which its child runs inherit)."""


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _run_name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> str | None:
    name = _text(kwargs.get("name"))
    if name is None and isinstance(serialized, Mapping):
        name = _text(serialized.get("name"))
    return name


def _is_graph(
    serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], meta: Mapping[str, Any]
) -> bool:
    # LangGraph tags its runs' metadata (inherited by child runs: callers check the parent too);
    # a graph compiled with a name is not called "LangGraph".
    if meta.get("ls_integration") == "langgraph" or _run_name(serialized, kwargs) == "LangGraph":
        return True
    graph = serialized.get("graph") if isinstance(serialized, Mapping) else None
    return isinstance(graph, Mapping) and str(graph.get("id", "")).startswith("LangGraph")


def agent_name_of(
    metadata: Mapping[str, Any] | None, serialized: Mapping[str, Any] | None = None, **kwargs: Any
) -> str | None:
    """The agent a run names in its metadata, or ``None`` if it names none.

    ``agent_name`` wins, then ``lc_agent_name`` (``create_agent(name=...)``), then the LangGraph
    node (``langgraph_node``, except ``__start__``/``__end__`` and middleware nodes);
    ``otel_agent_span=True`` with none of these names the agent after the run.

    >>> agent_name_of({"langgraph_node": "researcher"})
    'researcher'
    """
    meta = metadata if isinstance(metadata, Mapping) else {}
    for key in ("agent_name", "lc_agent_name"):
        if (name := _text(meta.get(key))) is not None:
            return name
    if meta.get("otel_agent_span") is False:
        return None
    node = _text(meta.get("langgraph_node"))
    if node is not None and node not in _NOT_AGENTS and not node.startswith(_MIDDLEWARE_PREFIX):
        return node
    if meta.get("otel_agent_span") is True:
        return _run_name(serialized, kwargs)
    return None


def _wants_workflow(
    graph: bool, parent_run_id: UUID | None, meta: Mapping[str, Any], parent_flagged: bool
) -> bool:
    """Whether a run is one run of a workflow: ``otel_workflow_span``, else a top-level graph.

    ``otel_workflow_span=True`` opens one for the run that says it, not for each child run that
    inherits the metadata (``parent_flagged``): those are parts of that workflow.
    """
    flag = meta.get("otel_workflow_span")
    if flag is False:
        return False
    if flag is True and not parent_flagged:
        return True
    # A top-level graph is one run of a workflow, unless the caller opened one around it.
    return parent_run_id is None and graph and "workflow.id" not in current_attribution()


def _workflow_scope(
    name: str,
    meta: Mapping[str, Any],
    configurable: Mapping[str, Any] | None,
    tracer_provider: trace.TracerProvider | None,
) -> Scope:
    """The workflow scope of one run, its id the run's ``thread_id`` when it has one."""
    thread = meta.get("thread_id")
    if thread is None and configurable is not None:
        thread = configurable.get("thread_id")
    workflow_id = str(thread) if thread is not None and str(thread) else None
    return otel_costs.workflow(name, workflow_id=workflow_id, tracer_provider=tracer_provider)


class CostCallbackHandler(BaseCallbackHandler):
    """Opens ``otel_costs`` workflow, agent and retry scopes for LangChain/LangGraph runs.

    - **workflow**: a top-level LangGraph run (or the outermost run with ``otel_workflow_span=True``),
      unless a workflow is already current; its id is the run's ``thread_id`` when it has one.
      ``otel_workflow_span=False`` opts out. Under :func:`instrument_langchain` a graph run's
      workflow is opened by its ``Pregel.stream``/``astream`` wrapper, before any callback.
    - **agent**: a run whose metadata names an agent (see :func:`agent_name_of`) other than the
      one already in effect (metadata is inherited by child runs: one scope per agent, not per run).
    - **retry**: a re-attempt (``retry:attempt:N`` tag, or a LangGraph task started again after
      an error) gets ``retry.depth`` N-1.

    Sync and async safe (``run_inline``: called in the run's own context); never raises.
    ``tracer_provider`` defaults to the global one. Example::

        handler = CostCallbackHandler()
        graph.invoke(state, config={"callbacks": [handler]})
    """

    run_inline = True
    raise_error = False

    def __init__(self, *, tracer_provider: trace.TracerProvider | None = None) -> None:
        super().__init__()
        self._tracer_provider = tracer_provider
        self._runs: dict[UUID, _Run] = {}
        #: (parent run, LangGraph task namespace) -> how many attempts of that task failed.
        self._failures: dict[tuple[UUID | None, str], int] = {}
        self._lock = threading.Lock()
        # A handler passed in ``config`` needs the ``astream`` wrapper too: LangGraph ends an async
        # run's node tasks and the graph's own run in other tasks, so only code around ``astream``,
        # in the caller's context, can put that context back. With no instrument_langchain()
        # handler the wrappers open no workflow: they only restore the caller's context.
        try:
            with _hook_lock:
                _wrap_pregel()
        except Exception:  # a LangGraph whose Pregel differs: the handler works, without the repair
            logger.exception("otel_costs: could not wrap LangGraph's Pregel.stream/astream")

    # -- LangChain callbacks ---------------------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Enter the run's scopes (see the class docstring)."""
        try:
            self._start(serialized, run_id, parent_run_id, tags, metadata, kwargs)
        except Exception:  # never into LangChain
            logger.exception("otel_costs: could not open scopes for LangChain run %s", run_id)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Leave the run's scopes."""
        self._end(run_id, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Leave the run's scopes, marking their spans as failed."""
        self._end(run_id, error)

    # -- internals -------------------------------------------------------------------------

    def _start(
        self,
        serialized: Mapping[str, Any] | None,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        meta: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else {}
        with self._lock:
            parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        inherited = parent.agent if parent is not None else current_attribution().get("gen_ai.agent.name")
        run = _Run(parent_run_id, inherited)
        task = meta.get("langgraph_checkpoint_ns")
        run.task = task if isinstance(task, str) and task else None
        run.flagged = meta.get("otel_workflow_span") is True
        scopes: list[Scope | Attempt] = []
        graph = _is_graph(serialized, kwargs, meta)
        if _claim_graph_workflow():
            # The graph's own run, whose workflow the Pregel.stream/astream wrapper opened first.
            run.agent = None
        elif _wants_workflow(graph, parent_run_id, meta, parent is not None and parent.flagged):
            name = _run_name(serialized, kwargs) or "LangGraph"
            scopes.append(_workflow_scope(name, meta, None, self._tracer_provider))
            run.agent = None
        agent = agent_name_of(meta, serialized, **kwargs)
        if agent is not None and agent != run.agent:
            scopes.append(otel_costs.agent(agent, tracer_provider=self._tracer_provider))
            run.agent = agent
        depth = self._retry_depth(parent_run_id, tags, meta)
        if depth > 0:
            step = agent or _run_name(serialized, kwargs) or "run"
            scopes.append(Attempt(otel_costs.retry(step, max_attempts=depth + 1), depth))
        _heal()
        for scope in scopes:
            before = context.get_current()
            probe = _PROBE.set(object())
            scope.__enter__()
            run.opened.append(_Opened(scope, trace.get_current_span(), context.get_current(), before, probe))
        with self._lock:
            self._runs[run_id] = run
            if parent is not None:
                parent.children.append(run_id)

    def _flagged(self, run_id: UUID | None) -> bool:
        """Whether the run ``run_id`` (``None``: no run) said ``otel_workflow_span=True``."""
        with self._lock:
            run = self._runs.get(run_id) if run_id is not None else None
        return run is not None and run.flagged

    def _retry_depth(
        self, parent_run_id: UUID | None, tags: Sequence[str] | None, meta: Mapping[str, Any]
    ) -> int:
        for tag in tags or ():
            if isinstance(tag, str) and (match := _RETRY_TAG.match(tag)):
                return max(int(match.group(1)) - 1, 0)
        task = meta.get("langgraph_checkpoint_ns")
        if isinstance(task, str) and task:
            with self._lock:
                return self._failures.get((parent_run_id, task), 0)
        return 0

    def _end(self, run_id: UUID, error: BaseException | None) -> None:
        try:
            with self._lock:
                run = self._runs.pop(run_id, None)
                if run is None:
                    return
                # Descendants whose end never came (a cancelled task) end first, innermost first.
                pending = [run_id]
                order: list[_Run] = []
                while pending:
                    rid = pending.pop()
                    current = run if rid == run_id else self._runs.pop(rid, None)
                    if current is None:
                        continue
                    order.append(current)
                    pending.extend(current.children)
            for each in reversed(order):
                self._leave(each, error if each is run else None)
            with self._lock:
                if error is not None:
                    self._count_failure(run)
                for key in [k for k in self._failures if k[0] == run_id]:
                    del self._failures[key]
        except Exception:  # never into LangChain
            logger.exception("otel_costs: could not close scopes of LangChain run %s", run_id)

    def _count_failure(self, run: _Run) -> None:
        """Remember a failed LangGraph task, so its next attempt gets the next ``retry.depth``."""
        if run.task:
            key = (run.parent, run.task)
            self._failures[key] = self._failures.get(key, 0) + 1

    @staticmethod
    def _leave(run: _Run, error: BaseException | None) -> None:
        for opened in reversed(run.opened):
            try:
                if _same_context(opened.probe):
                    # Leaving restores the context as it was on entry; if another handler changed it
                    # meanwhile (OpenLLMetry attaches its own spans), keep what it left instead.
                    observed = context.get_current()
                    if error is None:
                        opened.scope.__exit__(None, None, None)
                    else:
                        opened.scope.__exit__(type(error), error, error.__traceback__)
                    if observed is not opened.entered and not _is_stale(observed):
                        context.attach(observed)
                    continue
                # Left in another contextvars.Context: the entry's context is not ours to restore
                # from here, so end the span alone, with the outcome.
                if error is not None:
                    opened.span.record_exception(error)
                    opened.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
                opened.span.end()
                _mark_stale(opened.entered, opened.before)
                _heal()
            except Exception:
                logger.exception("otel_costs: could not end scope %r", opened.scope)


class _Dispatch(BaseCallbackHandler):
    """Added to every LangChain run once :func:`instrument_langchain` ran: forwards to the handler."""

    run_inline = True
    raise_error = False
    handler: CostCallbackHandler | None = None

    def on_chain_start(self, serialized: dict[str, Any], inputs: dict[str, Any], **kwargs: Any) -> None:
        if (handler := self.handler) is not None:
            handler.on_chain_start(serialized, inputs, **kwargs)

    def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
        if (handler := self.handler) is not None:
            handler.on_chain_end(outputs, **kwargs)

    def on_chain_error(self, error: BaseException, **kwargs: Any) -> None:
        if (handler := self.handler) is not None:
            handler.on_chain_error(error, **kwargs)


_DISPATCH = _Dispatch()
#: The configure hook's variable: its default reaches every thread and task, unlike a set().
_HOOK: contextvars.ContextVar[BaseCallbackHandler | None] = contextvars.ContextVar(
    "otel_costs.langchain.handler", default=_DISPATCH
)
_hooked = False
_hook_lock = threading.Lock()


def instrument_langchain(*, tracer_provider: trace.TracerProvider | None = None) -> CostCallbackHandler:
    """Attach a :class:`CostCallbackHandler` to every LangChain/LangGraph run, in every thread.

    It goes through LangChain's configure hook, so it comes after the handlers instrumentations
    add (OpenInference, OpenLLMetry): it then enters its scopes inside theirs and leaves them
    after theirs, which keeps the context right. Each LangGraph run's workflow opens earlier, in a
    wrapper of ``Pregel.stream``/``astream``, so every instrumentation's spans of the run are in
    its trace. Calling it again replaces the handler; undo it with :func:`uninstrument_langchain`.
    Example::

        otel_costs.integrations.langchain.instrument_langchain()
        graph.invoke(state)
    """
    global _hooked
    handler = CostCallbackHandler(tracer_provider=tracer_provider)
    with _hook_lock:
        if not _hooked:
            from langchain_core.tracers.context import register_configure_hook

            register_configure_hook(_HOOK, inheritable=True)
            _hooked = True
        _DISPATCH.handler = handler
        _wrap_pregel()
    return handler


@dataclass(slots=True)
class _GraphRun:
    """The workflow a ``Pregel.stream``/``astream`` wrapper opened around one graph run."""

    scope: Scope | None
    """The entered workflow scope, or ``None`` if the run wants none (nested, opted out)."""
    token: contextvars.Token[_GraphRun | None] | None = None
    claimed: bool = False
    """Whether the handler has seen the run's first callback (the graph's own run)."""


#: The graph run a stream wrapper is in (in its caller's context, so nested graphs see theirs).
_GRAPH_RUN: contextvars.ContextVar[_GraphRun | None] = contextvars.ContextVar(
    "otel_costs.langchain.graph_run", default=None
)


def _claim_graph_workflow() -> bool:
    """Whether this callback is the first of a graph run whose wrapper opened its workflow."""
    run = _GRAPH_RUN.get()
    if run is None or run.scope is None or run.claimed:
        return False
    run.claimed = True
    return True


def _enter_graph_run(graph: Any, config: Any) -> _GraphRun | None:
    """Open the workflow of a graph run before LangGraph calls any callback (never raises).

    Why here and not in ``on_chain_start``: a sync run calls its handlers in list order, and an
    instrumentation that adds its handler when the callback manager is made (OpenInference) comes
    before the configure hook's, so it would start its root span before the workflow existed and
    the run would be two traces. Opened here, every handler's first span is inside the workflow.
    """
    handler = _DISPATCH.handler
    if handler is None:
        return None
    scope: Scope | None = None
    try:
        from langchain_core.callbacks import BaseCallbackManager
        from langchain_core.runnables.config import ensure_config, merge_configs

        # What LangGraph itself merges: the graph's bound config, the call's, the parent run's.
        merged = ensure_config(merge_configs(getattr(graph, "config", None), config))
        callbacks = merged.get("callbacks")
        parent = callbacks.parent_run_id if isinstance(callbacks, BaseCallbackManager) else None
        meta: Mapping[str, Any] = merged.get("metadata") or {}
        if _wants_workflow(True, parent, meta, handler._flagged(parent)):
            name = _text(merged.get("run_name")) or _text(graph.get_name()) or "LangGraph"
            _heal()
            scope = _workflow_scope(name, meta, merged.get("configurable"), handler._tracer_provider)
            scope.__enter__()
    except Exception:  # never into LangGraph: the handler opens the workflow then, as before
        logger.exception("otel_costs: could not open the workflow of a LangGraph run")
        scope = None
    run = _GraphRun(scope)
    run.token = _GRAPH_RUN.set(run)
    return run


def _leave_graph_run(run: _GraphRun | None, error: BaseException | None) -> None:
    """Close what :func:`_enter_graph_run` opened (never raises)."""
    if run is None:
        return
    try:
        with suppress(ValueError, RuntimeError):  # left in another context (closed elsewhere)
            if run.token is not None:
                _GRAPH_RUN.reset(run.token)
        if run.scope is not None:
            if error is None:
                run.scope.__exit__(None, None, None)
            else:
                run.scope.__exit__(type(error), error, error.__traceback__)
    except Exception:  # never into LangGraph
        logger.exception("otel_costs: could not close the workflow of a LangGraph run")


def _config_of(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """The ``config`` argument of ``Pregel.stream(input, config=None, ...)``."""
    return args[1] if len(args) > 1 else kwargs.get("config")


#: LangGraph's ``Pregel.stream`` and ``astream`` before :func:`instrument_langchain` wrapped them.
_originals: dict[str, Any] = {}


def _wrap_pregel() -> None:
    """Wrap ``Pregel.stream`` (so ``invoke``) and ``astream`` (so ``ainvoke``) around each graph run.

    The wrappers open the run's workflow before LangGraph's first callback (``_enter_graph_run``)
    and close it when the run ends, in the caller's context. ``astream`` also puts the caller's
    context back (``_heal``): LangGraph starts each async node task in the caller's context and ends
    it (and the graph's own run) in another, so no callback can. Without langgraph: nothing to do.
    """
    if _originals:
        return
    try:
        from langgraph.pregel import Pregel
    except ImportError:
        return
    # The raw class attributes: another instrumentation's wrapt wrapper, not a bound view of it,
    # so that restoring them lets that instrumentation unwrap itself later.
    raw = {name: inspect.getattr_static(Pregel, name) for name in ("stream", "astream")}
    original_stream, original_astream = Pregel.stream, Pregel.astream

    @functools.wraps(original_stream)
    def stream(self: Any, *args: Any, **kwargs: Any) -> Any:
        run = _enter_graph_run(self, _config_of(args, kwargs))
        error: BaseException | None = None
        try:
            yield from original_stream(self, *args, **kwargs)
        except BaseException as exc:
            error = exc
            raise
        finally:
            _leave_graph_run(run, error)

    @functools.wraps(original_astream)
    async def astream(self: Any, *args: Any, **kwargs: Any) -> Any:
        run = _enter_graph_run(self, _config_of(args, kwargs))
        error: BaseException | None = None
        try:
            async for item in original_astream(self, *args, **kwargs):
                yield item
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                _heal()
            except Exception:  # never into LangGraph
                logger.exception("otel_costs: could not restore the context after a LangGraph stream")
            _leave_graph_run(run, error)

    for name, wrapper in (("stream", stream), ("astream", astream)):
        setattr(Pregel, name, wrapper)
    _originals.update(raw)


def _unwrap_pregel() -> None:
    if not _originals:
        return
    from langgraph.pregel import Pregel

    for name, attribute in _originals.items():
        setattr(Pregel, name, attribute)
    _originals.clear()


def uninstrument_langchain() -> None:
    """Stop attaching the handler of :func:`instrument_langchain` to new runs (idempotent).

    It also puts back the ``Pregel.stream``/``astream`` it found (a :class:`CostCallbackHandler`
    made later wraps them again, to restore the caller's context after ``astream``).
    """
    with _hook_lock:
        _DISPATCH.handler = None
        _unwrap_pregel()


__all__ = ["CostCallbackHandler", "agent_name_of", "instrument_langchain", "uninstrument_langchain"]

from otel_costs._public import publish  # noqa: E402 - after __all__, as every public module

publish(globals(), __all__, __name__)
