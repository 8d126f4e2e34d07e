"""The attribute contract: span attribute names, baggage keys and outbound headers.

Every other module imports its names from here, so the table in ``docs/conventions.md``
and the code cannot drift apart. Where an OpenTelemetry GenAI semantic convention exists
we use it (``gen_ai.*``); the rest are this project's own names.
"""

from __future__ import annotations

from typing import Final

# --- attribution: span attributes -------------------------------------------------
WORKFLOW_ID: Final = "workflow.id"
WORKFLOW_NAME: Final = "workflow.name"
AGENT_NAME: Final = "gen_ai.agent.name"
AGENT_ID: Final = "gen_ai.agent.id"
AGENT_PARENT_ID: Final = "agent.parent_id"
RETRY_DEPTH: Final = "retry.depth"
#: The logical step a ``retry {step}`` span makes attempts of.
RETRY_STEP: Final = "retry.step"
USER_ID: Final = "user.id"
TEAM_ID: Final = "team.id"

#: Attribution baggage keys whose values were malformed (too long, empty, a bad retry depth)
#: and so were not copied onto the span.
ATTRIBUTION_REJECTED: Final = "attribution.rejected"

# --- attribution: baggage keys ----------------------------------------------------
BAGGAGE_WORKFLOW_ID: Final = "workflow.id"
BAGGAGE_WORKFLOW_NAME: Final = "workflow.name"
BAGGAGE_AGENT_NAME: Final = "agent.name"
BAGGAGE_AGENT_ID: Final = "agent.id"
BAGGAGE_RETRY_DEPTH: Final = "retry.depth"
BAGGAGE_USER_ID: Final = "user.id"
BAGGAGE_TEAM_ID: Final = "team.id"

#: Baggage key -> span attribute, copied by ``CostSpanProcessor.on_start``.
#: The parent agent is derived (it is the agent that was current when the agent span started),
#: so it has no baggage key of its own.
BAGGAGE_TO_ATTRIBUTE: Final[dict[str, str]] = {
    BAGGAGE_WORKFLOW_ID: WORKFLOW_ID,
    BAGGAGE_WORKFLOW_NAME: WORKFLOW_NAME,
    BAGGAGE_AGENT_NAME: AGENT_NAME,
    BAGGAGE_AGENT_ID: AGENT_ID,
    BAGGAGE_RETRY_DEPTH: RETRY_DEPTH,
    BAGGAGE_USER_ID: USER_ID,
    BAGGAGE_TEAM_ID: TEAM_ID,
}

# --- attribution: outbound HTTP headers ---------------------------------------------
HEADER_WORKFLOW_ID: Final = "X-Workflow-Id"
HEADER_WORKFLOW_NAME: Final = "X-Workflow-Name"
HEADER_AGENT_ID: Final = "X-Agent-Id"
HEADER_PARENT_AGENT_ID: Final = "X-Parent-Agent-Id"
HEADER_RETRY_DEPTH: Final = "X-Retry-Depth"
HEADER_USER_ID: Final = "X-User-Id"
HEADER_TEAM_ID: Final = "X-Team-Id"
#: HMAC signature over the attribution headers, checked by ``accept_attribution``.
HEADER_ATTRIBUTION_SIGNATURE: Final = "X-Attribution-Signature"

# --- cost ------------------------------------------------------------------------
#: Own cost of a billable span, USD (double on the wire).
COST_DIRECT: Final = "cost.direct"
#: The same figure under the name Langfuse and OpenLIT read.
GEN_AI_USAGE_COST: Final = "gen_ai.usage.cost"
#: Sum of the children's ``cost.total``, USD.
COST_CHILDREN: Final = "cost.children"
#: ``cost.direct + cost.children``, USD.
COST_TOTAL: Final = "cost.total"
COST_CURRENCY: Final = "cost.currency"
CURRENCY_USD: Final = "USD"
#: Exact integer nano-USD (1e-9 USD) companions of the doubles above. The rollup sums these,
#: so a parent's total is exactly the sum of its subtree wherever the rollup runs.
COST_DIRECT_NANOS: Final = "cost.direct_nanos"
COST_CHILDREN_NANOS: Final = "cost.children_nanos"
COST_TOTAL_NANOS: Final = "cost.total_nanos"

#: Breakdown of the direct cost, USD.
COST_INPUT: Final = "cost.input"
COST_CACHE_READ: Final = "cost.cache_read"
COST_CACHE_WRITE: Final = "cost.cache_write"
COST_OUTPUT: Final = "cost.output"

#: Pricing outcome of a span, one of the ``STATUS_*`` values.
COST_STATUS: Final = "cost.status"
STATUS_PRICED: Final = "priced"
#: The span has usage but no price could be found: never a silent $0.
STATUS_UNPRICED: Final = "unpriced"
#: The usage on the span is incomplete (e.g. a stream closed before its usage record).
STATUS_PARTIAL: Final = "partial"
#: The usage attributes could not be read (negative, NaN, wrong type, absurd values).
STATUS_INVALID_USAGE: Final = "invalid_usage"
#: Aggregate usage on an agent/workflow/tool span, deliberately not priced (no double counting).
STATUS_AGGREGATE: Final = "aggregate"

#: The same model call (same ``gen_ai.response.id`` in the trace) was already priced on another
#: span, e.g. when two instrumentations trace one call: not counted again.
STATUS_DUPLICATE: Final = "duplicate"

#: Free-text reason when ``cost.status`` is not ``priced``.
COST_STATUS_REASON: Final = "cost.status_reason"
#: What priced the span.
COST_PROVIDER: Final = "cost.provider"
COST_MODEL: Final = "cost.model"
COST_PRICE_SOURCE: Final = "cost.price_source"
PRICE_SOURCE_OVERRIDE: Final = "override"
PRICE_SOURCE_GENAI_PRICES: Final = "genai-prices"

#: Scope of the rollup figures on a span: ``process`` (in-process exporter) or ``trace`` (collector side).
COST_ROLLUP_SCOPE: Final = "cost.rollup.scope"
SCOPE_PROCESS: Final = "process"
SCOPE_TRACE: Final = "trace"
#: True on a span whose parent lives in another process: its totals cover this process only.
COST_ROLLUP_REMOTE_PARENT: Final = "cost.rollup.remote_parent"
#: True on a span whose parent was never seen: exported as a root of its own.
COST_ROLLUP_ORPHAN: Final = "cost.rollup.orphan"
#: True when the rollup was cut short (memory bound, timeout, cycle): totals may be low.
COST_ROLLUP_PARTIAL: Final = "cost.rollup.partial"
COST_ROLLUP_PARTIAL_REASON: Final = "cost.rollup.partial_reason"
#: How many billable spans in the subtree could not be priced: the total is a lower bound.
COST_ROLLUP_UNPRICED: Final = "cost.rollup.unpriced"

#: Resource attribute naming the ``otel-costs serve`` worker that rolled a span up (``--worker-id``).
ROLLUP_WORKER: Final = "otel_costs.worker"

# --- GenAI semantic conventions we read or write --------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_SYSTEM: Final = "gen_ai.system"  # deprecated in favour of gen_ai.provider.name
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
#: Token usage (current semconv names; ``_usage`` also reads the deprecated and other tools' names).
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
#: Cache writes: the name in released semconv (<= 1.38); semconv main renames it ``cache_write``.
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
SERVER_ADDRESS: Final = "server.address"

#: ``gen_ai.operation.name`` values whose usage is an aggregate of child calls (never priced).
AGGREGATE_OPERATIONS: Final = frozenset({"invoke_agent", "invoke_workflow", "execute_tool", "create_agent"})
OPERATION_INVOKE_WORKFLOW: Final = "invoke_workflow"
OPERATION_INVOKE_AGENT: Final = "invoke_agent"
