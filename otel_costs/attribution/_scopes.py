"""Attribution context: ``workflow()``, ``agent()`` and ``retry()``.

Each helper starts a span and puts its fields into W3C baggage, so every span started
below it (in this thread, in asyncio tasks and threads that carry the context, and in other
processes through the ``baggage`` header) can be attributed. ``CostSpanProcessor`` copies
the baggage onto each span as it starts.

Example::

    with otel_costs.workflow("support-ticket", user_id="u-42", team_id="billing"):
        with otel_costs.agent("triage"):
            client.chat.completions.create(...)
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from opentelemetry import baggage, context, trace
from opentelemetry.trace import Status, StatusCode
from ulid import ULID

from otel_costs import conventions as conv
from otel_costs._callsite import call_site

logger = logging.getLogger("otel_costs")

P = ParamSpec("P")
R = TypeVar("R")

_TRACER_NAME = "otel_costs"


@dataclass(slots=True)
class _Entry:
    """One active entry of a scope."""

    token: object
    """The token of the context attached on entry (the scope's baggage and span)."""
    span: trace.Span
    """The scope's span."""
    before: context.Context
    """The context that was current on entry."""
    previous: contextvars.Token[tuple[_Entry, ...]] | None = None
    """Restores the scope's entry stack as it was before this entry."""
    done: bool = False
    """The entry was exited (in its own context or another)."""


def _tracer(provider: trace.TracerProvider | None) -> trace.Tracer:
    return trace.get_tracer(_TRACER_NAME, tracer_provider=provider)


def current_attribution(ctx: context.Context | None = None) -> dict[str, str]:
    """The attribution baggage in ``ctx`` (default: the current context), keyed by baggage key.

    >>> with workflow("w", team_id="t"):
    ...     current_attribution()["team.id"]
    't'
    """
    entries = baggage.get_all(ctx)
    return {k: str(v) for k, v in entries.items() if k in conv.BAGGAGE_TO_ATTRIBUTE}


class Scope(AbstractContextManager["Scope"]):
    """A span plus baggage entries, entered as a context manager or applied as a decorator.

    Subclasses fill in ``_prepare``, which runs at entry and returns the span name, its
    attributes and the baggage to set. A decorator makes a fresh copy of the scope per call,
    so each call gets its own span (and, for workflows, its own id).
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None) -> None:
        self._tracer_provider = tracer_provider
        # The active entries live in the context, not on the object: one scope object may be
        # entered concurrently by several asyncio tasks or threads, each leaving its own entry.
        self._stack: contextvars.ContextVar[tuple[_Entry, ...]] = contextvars.ContextVar(
            "otel_costs.scope", default=()
        )
        # Also on the object, in entry order: a scope left in another context than it was
        # entered (framework callbacks, another asyncio task) finds its entry here.
        self._open: list[_Entry] = []
        self._open_lock = threading.Lock()

    def _prepare(self) -> tuple[str, dict[str, Any], dict[str, str | None]]:
        """Span name, span attributes, and baggage entries to set (``None``: remove the key)."""
        raise NotImplementedError

    def _copy(self) -> Scope:
        raise NotImplementedError

    def __enter__(self) -> Scope:
        name, attributes, entries = self._prepare()
        attributes.update(call_site())
        before = ctx = context.get_current()
        for key, value in entries.items():
            ctx = baggage.remove_baggage(key, ctx) if value is None else baggage.set_baggage(key, value, ctx)
        # One attach for baggage and span (not start_as_current_span, whose generator would
        # detach its own token wherever it is garbage-collected: an error log in another context).
        span = _tracer(self._tracer_provider).start_span(name, context=ctx, attributes=attributes)
        token = context.attach(trace.set_span_in_context(span, ctx))
        entry = _Entry(token, span, before)
        entry.previous = self._stack.set((*self._stack.get(), entry))
        with self._open_lock:
            self._open.append(entry)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack = self._stack.get()
        entry = stack[-1] if stack and not stack[-1].done else None
        if entry is not None:
            try:
                self._stack.reset(cast(Any, entry.previous))
            except (ValueError, RuntimeError):
                # A copy of the entering context (a task or callback started inside the scope):
                # this is another context than the one the scope was entered in.
                self._stack.set(stack[:-1])
                self._exit_elsewhere(entry, exc)
                return
            self._close(entry, exc)
            context.detach(cast(Any, entry.token))
            return
        with self._open_lock:
            entry = next((e for e in reversed(self._open) if not e.done), None)
        if entry is None:
            logger.debug("otel_costs: %r exited more often than entered; ignored", self)
            return
        self._exit_elsewhere(entry, exc)

    def _close(self, entry: _Entry, exc: BaseException | None) -> None:
        """End the entry's span (recording ``exc`` as ``start_as_current_span`` would)."""
        with self._open_lock:
            entry.done = True
            with suppress(ValueError):
                self._open.remove(entry)
        span = entry.span
        if isinstance(exc, Exception) and span.is_recording():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()

    def _exit_elsewhere(self, entry: _Entry, exc: BaseException | None) -> None:
        """Leave ``entry`` from another context than it was entered in: end its span, and if this
        context still carries the scope (it was copied from inside it), restore what was current
        before the entry, so the next call here is not attributed to the ended scope. The
        entering context's token cannot be detached here (a ``contextvars`` token belongs to its
        context): it is left to that context, which the frameworks discard."""
        self._close(entry, exc)
        if trace.get_current_span() is entry.span:
            context.attach(entry.before)  # this context never attached the entry: nothing to detach

    async def __aenter__(self) -> Scope:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    @property
    def span(self) -> trace.Span:
        """The span of the innermost active entry of this scope."""
        stack = self._stack.get()
        return stack[-1].span if stack else trace.INVALID_SPAN

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):
            async_fn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with self._copy():
                    return await async_fn(*args, **kwargs)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with self._copy():
                return fn(*args, **kwargs)

        return wrapper


class WorkflowScope(Scope):
    """What :func:`workflow` returns: an ``invoke_workflow {name}`` span plus the workflow's baggage.

    ``workflow_id`` is the id of the innermost entry (a new ULID per entry unless one was given);
    ``name``, ``user_id``, ``team_id`` and ``attributes`` are as passed to :func:`workflow`.
    """

    def __init__(
        self,
        name: str,
        workflow_id: str | None,
        user_id: str | None,
        team_id: str | None,
        attributes: dict[str, str],
        tracer_provider: trace.TracerProvider | None,
    ) -> None:
        super().__init__(tracer_provider)
        self.name = name
        self._fixed_id = workflow_id
        self.user_id = user_id
        self.team_id = team_id
        self.attributes = attributes
        self.workflow_id: str | None = workflow_id

    def _copy(self) -> WorkflowScope:
        return WorkflowScope(
            self.name, self._fixed_id, self.user_id, self.team_id, self.attributes, self._tracer_provider
        )

    def _prepare(self) -> tuple[str, dict[str, Any], dict[str, str | None]]:
        self.workflow_id = self._fixed_id or str(ULID())
        entries = {conv.BAGGAGE_WORKFLOW_ID: self.workflow_id, conv.BAGGAGE_WORKFLOW_NAME: self.name}
        if self.user_id is not None:
            entries[conv.BAGGAGE_USER_ID] = self.user_id
        if self.team_id is not None:
            entries[conv.BAGGAGE_TEAM_ID] = self.team_id
        entries.update(self.attributes)
        span_attributes: dict[str, Any] = {conv.BAGGAGE_TO_ATTRIBUTE.get(k, k): v for k, v in entries.items()}
        span_attributes[conv.GEN_AI_OPERATION_NAME] = conv.OPERATION_INVOKE_WORKFLOW
        baggage_entries: dict[str, str | None] = dict(entries)
        # A new workflow starts a fresh agent chain and retry count: agents of an enclosing
        # workflow are not parents of this one's.
        baggage_entries.update(
            {conv.BAGGAGE_AGENT_ID: None, conv.BAGGAGE_AGENT_NAME: None, conv.BAGGAGE_RETRY_DEPTH: "0"}
        )
        return f"{conv.OPERATION_INVOKE_WORKFLOW} {self.name}", span_attributes, baggage_entries


class AgentScope(Scope):
    """What :func:`agent` returns: an ``invoke_agent {name}`` span, child of the agent current on entry."""

    def __init__(self, name: str, agent_id: str | None, tracer_provider: trace.TracerProvider | None) -> None:
        super().__init__(tracer_provider)
        self.name = name
        self.agent_id = agent_id or name

    def _copy(self) -> AgentScope:
        return AgentScope(self.name, self.agent_id, self._tracer_provider)

    def _prepare(self) -> tuple[str, dict[str, Any], dict[str, str | None]]:
        current = baggage.get_all()
        parent = current.get(conv.BAGGAGE_AGENT_ID) or current.get(conv.BAGGAGE_AGENT_NAME)
        attributes: dict[str, Any] = {
            conv.GEN_AI_OPERATION_NAME: conv.OPERATION_INVOKE_AGENT,
            conv.AGENT_NAME: self.name,
            conv.AGENT_ID: self.agent_id,
        }
        if parent is not None:
            attributes[conv.AGENT_PARENT_ID] = str(parent)
        entries: dict[str, str | None] = {
            conv.BAGGAGE_AGENT_NAME: self.name,
            conv.BAGGAGE_AGENT_ID: self.agent_id,
            # Each agent's own calls start at depth 0; a retried agent is wrapped by retry().
            conv.BAGGAGE_RETRY_DEPTH: "0",
        }
        return f"{conv.OPERATION_INVOKE_AGENT} {self.name}", attributes, entries


def workflow(
    name: str,
    *,
    workflow_id: str | None = None,
    user_id: str | None = None,
    team_id: str | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    **attributes: str,
) -> WorkflowScope:
    """Start an ``invoke_workflow {name}`` span and put the workflow's attribution in baggage.

    ``workflow_id`` defaults to a new ULID per entry (per call when used as a decorator).
    Extra keyword ``attributes`` go on the workflow span and into baggage under the same key.

    Example::

        @otel_costs.workflow("nightly-report", team_id="analytics")
        async def run() -> None: ...
    """
    return WorkflowScope(
        name, workflow_id, user_id, team_id, {k: str(v) for k, v in attributes.items()}, tracer_provider
    )


def agent(
    name: str, *, agent_id: str | None = None, tracer_provider: trace.TracerProvider | None = None
) -> AgentScope:
    """Start an ``invoke_agent {name}`` span; the agent current on entry becomes its parent.

    ``agent_id`` defaults to ``name``. Example::

        with otel_costs.agent("code_agent"):
            ...
    """
    return AgentScope(name, agent_id, tracer_provider)


class Attempt(AbstractContextManager["Attempt"]):
    """One attempt of a retried step: a ``retry {step}`` span with ``retry.depth`` in baggage.

    Exceptions of the retried types are swallowed by ``__exit__`` while attempts remain, so the
    ``for attempt in retry(...): with attempt: ...`` loop goes on to the next attempt.
    """

    def __init__(self, owner: RetryScope, depth: int) -> None:
        self.depth = depth
        self._owner = owner
        self._scope: Scope | None = None
        self.failed: BaseException | None = None

    def __enter__(self) -> Attempt:
        self._scope = _AttemptScope(self._owner.step, self.depth, self._owner._tracer_provider)
        self._scope.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._scope is not None
        self._scope.__exit__(exc_type, exc, tb)
        if exc is None:
            self._owner._done = True
            return False
        retryable = isinstance(exc, self._owner.retry_on)
        if retryable and self.depth + 1 < self._owner.max_attempts:
            self.failed = exc
            return True
        return False


class _AttemptScope(Scope):
    def __init__(self, step: str, depth: int, tracer_provider: trace.TracerProvider | None) -> None:
        super().__init__(tracer_provider)
        self.step = step
        self.depth = depth

    def _copy(self) -> _AttemptScope:
        return _AttemptScope(self.step, self.depth, self._tracer_provider)

    def _prepare(self) -> tuple[str, dict[str, Any], dict[str, str | None]]:
        attributes: dict[str, Any] = {conv.RETRY_DEPTH: self.depth, conv.RETRY_STEP: self.step}
        return f"retry {self.step}", attributes, {conv.BAGGAGE_RETRY_DEPTH: str(self.depth)}


class RetryScope:
    """What :func:`retry` returns: attempts of one step, ``retry.depth`` 0 on the first, +1 per re-attempt.

    Use it as a decorator (sync or async: the function is called again on a retryable
    exception, after ``backoff(depth)`` seconds) or as an iterator of ``Attempt`` context managers::

        @otel_costs.retry("summarize", max_attempts=3, retry_on=(openai.APIError,))
        def summarize() -> str: ...

        for attempt in otel_costs.retry("summarize", max_attempts=3):
            with attempt:
                summarize_once()
    """

    def __init__(
        self,
        step: str,
        *,
        max_attempts: int = 3,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        backoff: Callable[[int], float] | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.step = step
        self.max_attempts = max_attempts
        self.retry_on = retry_on
        self.backoff = backoff or (lambda depth: 0.0)
        self._tracer_provider = tracer_provider
        self._done = False

    def _fresh(self) -> RetryScope:
        return RetryScope(
            self.step,
            max_attempts=self.max_attempts,
            retry_on=self.retry_on,
            backoff=self.backoff,
            tracer_provider=self._tracer_provider,
        )

    def __iter__(self) -> Iterator[Attempt]:
        self._done = False
        for depth in range(self.max_attempts):
            if depth:
                delay = self.backoff(depth)
                if delay > 0:
                    time.sleep(delay)
            yield Attempt(self, depth)
            if self._done:
                return

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):
            async_fn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                owner = self._fresh()
                for depth in range(owner.max_attempts):
                    if depth and (delay := owner.backoff(depth)) > 0:
                        await asyncio.sleep(delay)
                    attempt = Attempt(owner, depth)
                    with attempt:
                        return await async_fn(*args, **kwargs)
                raise AssertionError("unreachable: the last attempt re-raises")  # pragma: no cover

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            for attempt in self._fresh():
                with attempt:
                    return fn(*args, **kwargs)
            raise AssertionError("unreachable: the last attempt re-raises")  # pragma: no cover

        return wrapper


def retry(
    step: str,
    *,
    max_attempts: int = 3,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    backoff: Callable[[int], float] | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> RetryScope:
    """Attempts of one logical step, each attributed with ``retry.depth`` (see ``RetryScope``)."""
    return RetryScope(
        step, max_attempts=max_attempts, retry_on=retry_on, backoff=backoff, tracer_provider=tracer_provider
    )
