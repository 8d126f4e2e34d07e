"""The OpenAI Agents SDK: one workflow per run and an agent scope per SDK agent span.

This module owns ``CostTracingProcessor``, an Agents SDK ``TracingProcessor`` that turns the SDK's
own trace events into otel-costs scopes: each SDK trace (one per ``Runner.run`` /
``Runner.run_streamed``, nested runs of agents used as tools included) becomes an
``otel_costs.workflow`` and each ``agent`` span an ``otel_costs.agent``, so every model call the
SDK makes carries its agent, its parent agent (the agent that handed off to it, or that called it
as a tool) and the workflow, whatever instrumentation (none, OpenInference, OpenLLMetry) writes
the model-call spans. ``RunHooks`` cannot do this: the SDK runs them in tasks of their own, so a
scope entered there never reaches the model calls.

The SDK calls the processor in the context where each span starts and ends; the processor keeps
its own map SDK span id -> scope, ends scopes innermost first, and when a span ends in another
context than it started in (or under another processor's still-attached context) it ends the
scope's span without detaching a context that is not there to detach. It never raises into the
SDK: a failure is logged and the run goes on.

Example::

    from otel_costs.integrations.openai_agents import install
    install()  # before any other tracing processor (e.g. OpenInference's instrument())
    await Runner.run(triage_agent, "I was charged twice")
"""

from __future__ import annotations

import contextvars
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import baggage, context, trace

import otel_costs
from otel_costs import conventions as conv

if TYPE_CHECKING:
    from agents.tracing import Span as SdkSpan
    from agents.tracing import Trace as SdkTrace

    from otel_costs.attribution import AgentScope, WorkflowScope

logger = logging.getLogger("otel_costs")

#: Set once per scope entry: resetting its token fails with ``ValueError`` in any other context,
#: which tells whether a scope is being left where it was entered.
_ENTRY_PROBE: contextvars.ContextVar[object] = contextvars.ContextVar("otel_costs.agents_entry", default=None)

if TYPE_CHECKING:
    _Base = object
else:
    try:  # the SDK's base class when it is installed; the SDK calls the processor by duck typing
        from agents.tracing import TracingProcessor as _Base
    except ImportError:  # pragma: no cover - the SDK is this module's extra
        _Base = object


@dataclass(slots=True)
class _Open:
    """One scope the processor entered for an SDK trace or span."""

    scope: WorkflowScope | AgentScope
    span: trace.Span
    """The scope's span, kept so it can be ended from another context."""
    probe: contextvars.Token[object]
    parent_token: object | None = None
    """The baggage context attached before the scope (a handoff's parent agent), detached after it."""
    closing: bool = False
    children: list[str] = field(default_factory=list)


class CostTracingProcessor(_Base):
    """An Agents SDK ``TracingProcessor``: SDK traces as workflows, SDK agent spans as agents.

    - ``tracer_provider``: where the workflow and agent spans go (default: the global provider).
    - ``workflow_name``: the workflow's name; default the SDK trace's name (``Runner.run``'s
      ``RunConfig.workflow_name``, "Agent workflow" unless set).
    - ``user_id`` / ``team_id``: attribution for every run, as ``otel_costs.workflow`` takes them.

    The workflow id is the SDK's trace id (``trace_...``), so a run can be found in both.
    Register it before other processors (``install()`` does): OpenInference's root span then
    lies under the workflow and each run has one root.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        workflow_name: str | None = None,
        user_id: str | None = None,
        team_id: str | None = None,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._workflow_name = workflow_name
        self._user_id = user_id
        self._team_id = team_id
        self._lock = threading.Lock()
        self._open: dict[str, _Open] = {}  # SDK trace id or span id -> its scope
        self._handoffs: dict[str, str] = {}  # SDK trace id -> the agent that last handed off

    # --- the SDK's TracingProcessor interface ------------------------------------------------

    def on_trace_start(self, trace: SdkTrace) -> None:
        """Enter a workflow scope for the run (the SDK calls this where the run starts)."""
        try:
            scope = otel_costs.workflow(
                self._workflow_name or str(getattr(trace, "name", "") or "agent-workflow"),
                workflow_id=str(trace.trace_id),
                user_id=self._user_id,
                team_id=self._team_id,
                tracer_provider=self._tracer_provider,
            )
            self._enter(str(trace.trace_id), None, scope, None)
        except Exception:
            logger.warning("otel_costs: could not start the workflow of an Agents SDK trace", exc_info=True)

    def on_trace_end(self, trace: SdkTrace) -> None:
        """Leave the run's workflow scope, and any agent scope of the run still open."""
        try:
            with self._lock:
                self._handoffs.pop(str(trace.trace_id), None)
            self._close(str(trace.trace_id), force=True)
        except Exception:
            logger.warning("otel_costs: could not end the workflow of an Agents SDK trace", exc_info=True)

    def on_span_start(self, span: SdkSpan[Any]) -> None:
        """Enter an agent scope for an SDK agent span; remember who hands off to whom."""
        try:
            self._drain()
            data = span.span_data
            kind = getattr(data, "type", None)
            trace_id = str(span.trace_id)
            if kind == "handoff":
                source = getattr(data, "from_agent", None)
                if source:
                    with self._lock:
                        self._handoffs[trace_id] = str(source)
                return
            if kind != "agent":
                return
            name = str(getattr(data, "name", "") or "agent")
            parent_key = self._parent_key(span)
            with self._lock:
                handed_off_by = self._handoffs.pop(trace_id, None)
            parent_token = None
            if handed_off_by is not None and baggage.get_baggage(conv.BAGGAGE_AGENT_ID) is None:
                # After a handoff the SDK starts the new agent beside the old one, not under it:
                # the agent that handed off is its parent.
                ctx = baggage.set_baggage(conv.BAGGAGE_AGENT_ID, handed_off_by)
                ctx = baggage.set_baggage(conv.BAGGAGE_AGENT_NAME, handed_off_by, ctx)
                parent_token = context.attach(ctx)
            scope = otel_costs.agent(name, tracer_provider=self._tracer_provider)
            self._enter(str(span.span_id), parent_key, scope, parent_token)
        except Exception:
            logger.warning("otel_costs: could not start the agent scope of an Agents SDK span", exc_info=True)

    def on_span_end(self, span: SdkSpan[Any]) -> None:
        """Leave the agent scope of an SDK agent span (children first)."""
        try:
            key = str(span.span_id)
            with self._lock:
                known = key in self._open
            if known:
                self._close(key, force=False)
            else:
                self._drain()
        except Exception:
            logger.warning("otel_costs: could not end the agent scope of an Agents SDK span", exc_info=True)

    def shutdown(self) -> None:
        """End every scope still open (their spans end; nothing else is held)."""
        with self._lock:
            children = {c for entry in self._open.values() for c in entry.children}
            roots = [key for key in self._open if key not in children]
        for key in roots:
            self._close(key, force=True)

    def force_flush(self) -> None:
        """Nothing is buffered here: the spans go to the tracer provider's processors."""

    # --- scopes -----------------------------------------------------------------------------

    def _parent_key(self, span: SdkSpan[Any]) -> str | None:
        """The nearest open scope above ``span``: its SDK parent if open, else the trace's workflow."""
        with self._lock:
            parent = getattr(span, "parent_id", None)
            if parent is not None and str(parent) in self._open:
                return str(parent)
            trace_id = str(span.trace_id)
            return trace_id if trace_id in self._open else None

    def _enter(
        self, key: str, parent_key: str | None, scope: WorkflowScope | AgentScope, parent_token: object | None
    ) -> None:
        scope.__enter__()
        entry = _Open(scope, scope.span, _ENTRY_PROBE.set(object()), parent_token)
        with self._lock:
            self._open[key] = entry
            if parent_key is not None and parent_key in self._open:
                self._open[parent_key].children.append(key)

    def _close(self, key: str, *, force: bool) -> None:
        """Mark ``key`` and its descendants closing; leave those that can be left now, innermost first.

        ``force`` (a trace's end) ends every marked span even when its context cannot be detached
        here; otherwise a scope under another processor's attached context waits for the next
        event in its context (``_drain``).
        """
        with self._lock:
            order = self._subtree(key)
            for k in order:
                self._open[k].closing = True
        self._drain()
        if force:
            for k in reversed(order):
                with self._lock:
                    entry = self._open.pop(k, None)
                if entry is not None:
                    entry.span.end()  # left in another context: its context goes with that context

    def _subtree(self, key: str) -> list[str]:
        """``key`` and its open descendants, parents before children (call under the lock)."""
        entry = self._open.get(key)
        if entry is None:
            return []
        found = [key]
        for child in entry.children:
            found.extend(self._subtree(child))
        return found

    def _drain(self) -> None:
        """Leave, innermost first, every closing scope whose span is the current span here."""
        while True:
            with self._lock:
                current = trace.get_current_span()
                match = next(
                    (k for k, o in self._open.items() if o.closing and o.span is current),
                    None,
                )
                entry = self._open.pop(match, None) if match is not None else None
            if entry is None:
                return
            self._leave(entry)

    def _leave(self, entry: _Open) -> None:
        try:
            _ENTRY_PROBE.reset(entry.probe)
        except (ValueError, RuntimeError):  # another context: end the span, detach nothing
            entry.span.end()
            return
        entry.scope.__exit__(None, None, None)
        if entry.parent_token is not None:
            context.detach(entry.parent_token)  # type: ignore[arg-type]


def install(
    *,
    tracer_provider: trace.TracerProvider | None = None,
    workflow_name: str | None = None,
    user_id: str | None = None,
    team_id: str | None = None,
    replace: bool = False,
) -> CostTracingProcessor:
    """Register a ``CostTracingProcessor`` with the Agents SDK and return it.

    ``replace=True`` replaces the SDK's processors (its default exporter to the OpenAI tracing
    backend included) instead of adding to them. Call it before other instrumentations register
    their processors. Example::

        install(team_id="support")
    """
    from agents import TracingProcessor, add_trace_processor, set_trace_processors

    processor = CostTracingProcessor(
        tracer_provider=tracer_provider, workflow_name=workflow_name, user_id=user_id, team_id=team_id
    )
    # The SDK's base class when it is installed (see _Base); the type checker may not know it.
    registered = cast("TracingProcessor", processor)
    if replace:
        set_trace_processors([registered])
    else:
        add_trace_processor(registered)
    return processor


__all__ = ["CostTracingProcessor", "install"]

from otel_costs._public import publish  # noqa: E402

publish(globals(), __all__, __name__)
