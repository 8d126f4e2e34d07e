"""Attribution: who a span's cost belongs to (workflow, agent, parent agent, retry depth, user, team).

``workflow()``, ``agent()`` and ``retry()`` start a span and put their fields into W3C baggage;
``CostSpanProcessor`` copies the baggage onto every span started below them. The scope types are
public so that code can annotate them; create them with the three functions.

Example::

    from otel_costs.attribution import agent, workflow

    with workflow("support-ticket", team_id="billing"), agent("triage"):
        ...  # LLM calls made here carry workflow.id, team.id and gen_ai.agent.name
"""

from otel_costs._public import publish as _publish
from otel_costs.attribution._scopes import (
    AgentScope,
    Attempt,
    RetryScope,
    Scope,
    WorkflowScope,
    agent,
    current_attribution,
    retry,
    workflow,
)

__all__ = [
    "AgentScope",
    "Attempt",
    "RetryScope",
    "Scope",
    "WorkflowScope",
    "agent",
    "current_attribution",
    "retry",
    "workflow",
]

_publish(globals(), __all__, __name__)
