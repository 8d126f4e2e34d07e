"""Pydantic AI: its own OpenTelemetry instrumentation already gives exact per-agent cost.

Pydantic AI's instrumentation (``Agent.instrument_all()`` or ``Agent(instrument=...)``) writes an
``invoke_agent {name}`` span per agent run with ``gen_ai.agent.name``, a GenAI ``chat {model}``
span per model call with its token usage, and ``execute_tool`` spans; an agent that delegates
to another from a tool nests the other's run below the tool's span. otel-costs prices the chat
spans (``instrument_httpx`` stands down under them), gives each the nearest agent above it and
rolls the cost up to the run's root: nothing else is needed. This module owns only
``instrument``, which turns that instrumentation on with settings suited to cost tracking.

Example::

    from otel_costs.integrations.pydantic_ai import instrument
    instrument()  # every Agent, on the global tracer provider
    result = await supervisor.run("Summarise the incident")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider


def instrument(*, tracer_provider: TracerProvider | None = None, include_content: bool = False) -> None:
    """Turn on Pydantic AI's instrumentation for every agent (``Agent.instrument_all``).

    - ``tracer_provider``: where its spans go (default: the global provider, as
      ``otel_costs.configure()`` sets it).
    - ``include_content``: record prompts and completions on the spans (default ``False``: cost
      tracking needs only the usage, and prompts may be sensitive).

    Agents that set ``instrument=`` themselves keep their own settings. Example::

        instrument(tracer_provider=provider)
    """
    from pydantic_ai import Agent, InstrumentationSettings

    Agent.instrument_all(
        InstrumentationSettings(tracer_provider=tracer_provider, include_content=include_content)
    )


__all__ = ["instrument"]

from otel_costs._public import publish  # noqa: E402

publish(globals(), __all__, __name__)
