"""AutoGen AgentChat: one workflow (one root, one run total) per team run, and agent scopes.

AutoGen runs each turn of a team as runtime messages; without an enclosing span its turns land in
separate traces and nothing adds them up. ``team_run`` wraps one run of a team in an
``otel_costs.workflow`` scope, so every turn, every agent and every model call of the run shares
one root whose ``cost.total`` is the run's exact cost. With AutoGen's native tracing (a global
tracer provider) its ``invoke_agent`` spans name each agent and the span tree does the rest;
without it (or under OpenInference), pass the team's agents and each one's turns are wrapped in an
``otel_costs.agent`` scope for that run.

Example::

    with team_run(team, "support", agents=[writer, critic]):
        result = await team.run(task="Draft the reply")
    # or: result = await run(team, "support", task="Draft the reply", agents=[writer, critic])

This module never imports AutoGen: it works on any object with AutoGen's ``run``/``run_stream``
and ``on_messages_stream`` methods, and never raises into AutoGen (it logs and goes on).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace

import otel_costs
from otel_costs.attribution import AgentScope, WorkflowScope

logger = logging.getLogger(__name__)

__all__ = ["run", "run_stream", "team_run"]


def _team_name(team: Any) -> str:
    name = getattr(team, "name", None)
    return name if isinstance(name, str) and name else type(team).__name__


@contextmanager
def team_run(
    team: Any,
    name: str | None = None,
    *,
    agents: Iterable[Any] = (),
    tracer_provider: trace.TracerProvider | None = None,
    **workflow_kwargs: Any,
) -> Iterator[WorkflowScope]:
    """One ``invoke_workflow {name}`` root over one run of ``team`` (all its turns, all its calls).

    - ``name``: the workflow's name (default: the team's ``name``, e.g. ``"RoundRobinGroupChat"``).
    - ``agents``: the team's agents to wrap in an ``otel_costs.agent(agent.name)`` scope while
      they take their turns in this run (needed only when AutoGen's own ``invoke_agent`` spans are
      not recorded, i.e. no global tracer provider, or under OpenInference).
    - ``workflow_kwargs``: passed to ``otel_costs.workflow`` (``workflow_id``, ``user_id``,
      ``team_id``, extra attributes).

    Enter it around ``await team.run(...)`` or the ``async for`` over ``team.run_stream(...)``::

        with team_run(team, "triage", agents=[writer, critic], team_id="support"):
            await team.run(task="...")
    """
    scope = otel_costs.workflow(name or _team_name(team), tracer_provider=tracer_provider, **workflow_kwargs)
    restore = [_wrap_agent(a, tracer_provider) for a in agents]
    try:
        with scope:
            yield scope
    finally:
        for undo in reversed(restore):
            undo()


async def run(
    team: Any,
    name: str | None = None,
    *,
    agents: Iterable[Any] = (),
    tracer_provider: trace.TracerProvider | None = None,
    workflow_kwargs: dict[str, Any] | None = None,
    **run_kwargs: Any,
) -> Any:
    """``await team.run(**run_kwargs)`` inside ``team_run(team, name, ...)``; returns the ``TaskResult``.

    Example: ``result = await run(team, "support", task="Draft the reply", agents=[a, b])``.
    """
    with team_run(team, name, agents=agents, tracer_provider=tracer_provider, **(workflow_kwargs or {})):
        return await team.run(**run_kwargs)


async def run_stream(
    team: Any,
    name: str | None = None,
    *,
    agents: Iterable[Any] = (),
    tracer_provider: trace.TracerProvider | None = None,
    workflow_kwargs: dict[str, Any] | None = None,
    **run_kwargs: Any,
) -> AsyncGenerator[Any, None]:
    """``team.run_stream(**run_kwargs)`` with the whole run under one workflow root; yields its messages.

    The workflow's context is attached only while the team works (one step at a time), never
    while the caller handles a yielded message, so the caller's own calls are not the run's.

    Example: ``async for message in run_stream(team, "support", task="Draft the reply"): ...``
    """
    kwargs = dict(workflow_kwargs or {})
    manager = team_run(team, name, agents=agents, tracer_provider=tracer_provider, **kwargs)
    async for item in _stepwise(manager, lambda: team.run_stream(**run_kwargs)):
        yield item


async def _stepwise(manager: Any, start: Callable[[], AsyncIterator[Any]]) -> AsyncGenerator[Any, None]:
    """Iterate ``start()`` with ``manager`` entered in a context of its own, one step at a time.

    Entering a scope in an async generator and yielding inside it would leave the scope attached
    in the consumer's context between items, and end it in whichever context closes the
    generator. Here the scope lives in a copied context: it is entered, stepped and left there,
    each step a task of that context, so attach and detach always pair up in one context.
    """
    ctx = contextvars.copy_context()
    entered = False
    try:
        ctx.run(manager.__enter__)
        entered = True
    except Exception:  # never fail the team run for attribution's sake
        logger.exception("otel_costs: could not start the workflow scope of a team run; running without it")
        ctx = contextvars.copy_context()
    iterator = ctx.run(start).__aiter__()
    failure: BaseException | None = None
    try:
        while True:
            try:
                item = await _in_context(ctx, iterator)
            except StopAsyncIteration:
                return
            yield item
    except BaseException as exc:
        failure = exc
        raise
    finally:
        closer = getattr(iterator, "aclose", None)
        if closer is not None and failure is not None:
            try:
                await asyncio.get_running_loop().create_task(closer(), context=ctx)
            except Exception:
                logger.debug("otel_costs: closing the team's stream failed", exc_info=True)
        if entered:
            _exit_in(ctx, manager, failure)


async def _in_context(ctx: contextvars.Context, iterator: AsyncIterator[Any]) -> Any:
    """``await iterator.__anext__()`` as a task running in ``ctx`` (cancelled with the caller)."""

    async def step() -> Any:
        return await iterator.__anext__()

    task = asyncio.get_running_loop().create_task(step(), context=ctx)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        raise


def _exit_in(ctx: contextvars.Context, manager: Any, failure: BaseException | None) -> None:
    try:
        if failure is None:
            ctx.run(manager.__exit__, None, None, None)
        else:
            ctx.run(manager.__exit__, type(failure), failure, failure.__traceback__)
    except Exception:
        logger.exception("otel_costs: could not end the workflow scope of a team run")


def _wrap_agent(agent: Any, tracer_provider: trace.TracerProvider | None) -> Callable[[], None]:
    """Wrap ``agent.on_messages_stream`` in an agent scope on this instance; return the undo."""
    name = getattr(agent, "name", None)
    original = getattr(agent, "on_messages_stream", None)
    if not isinstance(name, str) or original is None:
        logger.warning("otel_costs: %r has no name or on_messages_stream: not attributed as an agent", agent)
        return lambda: None
    had_own = "on_messages_stream" in vars(agent)

    def on_messages_stream(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        scope: AgentScope = otel_costs.agent(name, tracer_provider=tracer_provider)
        return _stepwise(_Entered(scope), lambda: original(*args, **kwargs))

    try:
        agent.on_messages_stream = on_messages_stream
    except (AttributeError, TypeError, ValueError):
        logger.warning("otel_costs: cannot wrap %r's on_messages_stream: not attributed as an agent", name)
        return lambda: None

    def undo() -> None:
        try:
            if had_own:
                agent.on_messages_stream = original
            else:
                del agent.on_messages_stream
        except (AttributeError, TypeError, ValueError):
            logger.warning("otel_costs: could not unwrap %r's on_messages_stream", name)

    return undo


class _Entered:
    """A scope as a plain context manager whose ``__enter__`` returns nothing (for ``_stepwise``)."""

    def __init__(self, scope: AgentScope) -> None:
        self._scope = scope

    def __enter__(self) -> None:
        self._scope.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._scope.__exit__(*exc)


from otel_costs._public import publish as _publish  # noqa: E402

_publish(globals(), __all__, __name__)
