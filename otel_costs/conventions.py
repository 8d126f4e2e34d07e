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


# --- usage attributes of every instrumentation (read by otel_costs.pricing) ---
# --- attribute names read here (not in _conventions: only this module reads them) -----------
# OpenTelemetry GenAI semantic conventions, current.
#: The name on semconv main; released semconv (<= 1.38) calls it ``cache_creation``.
# OpenTelemetry GenAI semantic conventions, deprecated (still written by OpenLLMetry).
GEN_AI_USAGE_PROMPT_TOKENS: Final = "gen_ai.usage.prompt_tokens"
GEN_AI_USAGE_COMPLETION_TOKENS: Final = "gen_ai.usage.completion_tokens"
GEN_AI_USAGE_TOTAL_TOKENS: Final = "gen_ai.usage.total_tokens"
# OpenLLMetry (traceloop semconv_ai).
TRACELOOP_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read_input_tokens"
TRACELOOP_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation_input_tokens"
TRACELOOP_REASONING_TOKENS: Final = "gen_ai.usage.reasoning_tokens"
TRACELOOP_LLM_REASONING_TOKENS: Final = "llm.usage.reasoning_tokens"
TRACELOOP_TOTAL_TOKENS: Final = "llm.usage.total_tokens"
TRACELOOP_SPAN_KIND: Final = "traceloop.span.kind"
OPENAI_API_BASE: Final = "gen_ai.openai.api_base"
# OpenInference.
OI_TOKEN_COUNT_PROMPT: Final = "llm.token_count.prompt"
OI_TOKEN_COUNT_COMPLETION: Final = "llm.token_count.completion"
OI_TOKEN_COUNT_TOTAL: Final = "llm.token_count.total"
OI_CACHE_READ: Final = "llm.token_count.prompt_details.cache_read"
OI_CACHE_WRITE: Final = "llm.token_count.prompt_details.cache_write"
OI_REASONING: Final = "llm.token_count.completion_details.reasoning"
OI_MODEL_NAME: Final = "llm.model_name"
OI_PROVIDER: Final = "llm.provider"
OI_SYSTEM: Final = "llm.system"
OI_SPAN_KIND: Final = "openinference.span.kind"
OI_EMBEDDING_MODEL_NAME: Final = "embedding.model_name"
# Pydantic AI / Logfire.
PYDANTIC_CACHE_READ: Final = "gen_ai.usage.details.cache_read_tokens"
PYDANTIC_CACHE_WRITE: Final = "gen_ai.usage.details.cache_write_tokens"
PYDANTIC_REASONING: Final = "gen_ai.usage.details.reasoning_tokens"

#: Per field, the attribute names in priority order: the first one present wins.
INPUT_KEYS: Final = (GEN_AI_USAGE_INPUT_TOKENS, GEN_AI_USAGE_PROMPT_TOKENS, OI_TOKEN_COUNT_PROMPT)
OUTPUT_KEYS: Final = (GEN_AI_USAGE_OUTPUT_TOKENS, GEN_AI_USAGE_COMPLETION_TOKENS, OI_TOKEN_COUNT_COMPLETION)
CACHE_READ_KEYS: Final = (
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    TRACELOOP_CACHE_READ_INPUT_TOKENS,
    OI_CACHE_READ,
    PYDANTIC_CACHE_READ,
)
CACHE_WRITE_KEYS: Final = (
    GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    TRACELOOP_CACHE_CREATION_INPUT_TOKENS,
    OI_CACHE_WRITE,
    PYDANTIC_CACHE_WRITE,
)
REASONING_KEYS: Final = (
    GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    TRACELOOP_REASONING_TOKENS,
    TRACELOOP_LLM_REASONING_TOKENS,
    OI_REASONING,
    PYDANTIC_REASONING,
)
#: A total alone cannot be priced, but it marks a span as carrying usage (so it is flagged, not skipped).
TOTAL_KEYS: Final = (GEN_AI_USAGE_TOTAL_TOKENS, TRACELOOP_TOTAL_TOKENS, OI_TOKEN_COUNT_TOTAL)
MODEL_KEYS: Final = (GEN_AI_RESPONSE_MODEL, GEN_AI_REQUEST_MODEL, OI_MODEL_NAME, OI_EMBEDDING_MODEL_NAME)
PROVIDER_KEYS: Final = (GEN_AI_PROVIDER_NAME, GEN_AI_SYSTEM, OI_PROVIDER, OI_SYSTEM)
SERVER_KEYS: Final = (SERVER_ADDRESS, OPENAI_API_BASE)

#: OpenInference span kinds whose token counts sum their children's (upper-case, as written).
OI_AGGREGATE_KINDS: Final = frozenset({"AGENT", "CHAIN", "TOOL"})
#: traceloop span kinds whose token counts sum their children's.
TRACELOOP_AGGREGATE_KINDS: Final = frozenset({"workflow", "agent", "task", "tool"})

#: ``gen_ai.operation.name`` values of a single model call, and OpenInference span kinds of one:
#: such a span with no usage at all is flagged (e.g. a stream read without its usage record).
LLM_OPERATIONS: Final = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
OI_LLM_KINDS: Final = frozenset({"LLM", "EMBEDDING"})


# --- budget alerts: the threshold event and its attributes ---
#: Name of the span event added to the span whose cost crossed a threshold.
THRESHOLD_EVENT: Final = "budget.threshold_crossed"

# Attribute names of the threshold event and of the utilization gauges.
BUDGET_NAME: Final = "budget.name"
BUDGET_WINDOW: Final = "budget.window"
BUDGET_SUBJECT: Final = "budget.subject"
BUDGET_THRESHOLD: Final = "budget.threshold"
BUDGET_SEVERITY: Final = "budget.severity"
BUDGET_SPENT: Final = "budget.spent"
BUDGET_LIMIT: Final = "budget.limit"
BUDGET_UTILIZATION: Final = "budget.utilization"

SEVERITY_WARNING: Final = "warning"
SEVERITY_CRITICAL: Final = "critical"
SEVERITY_EXCEEDED: Final = "exceeded"


# --- metrics ---
#: Counter of money spent on LLM calls, USD.
COST_METRIC: Final = "gen_ai.client.cost"
#: Gauge: spent / limit of each budget counter (1.0 = the limit).
UTILIZATION_METRIC: Final = "otel_costs.budget.utilization"
#: Gauge: spend in the current window of each budget counter, USD.
SPENT_METRIC: Final = "otel_costs.budget.spent"
#: Gauge: the limit of each budget counter, USD.
LIMIT_METRIC: Final = "otel_costs.budget.limit"


# --- budgets ---
#: Span attribute where the HTTP layer puts the reservation id of a call, for the processor to reconcile.
RESERVATION_ID_ATTRIBUTE: Final = "cost.budget.reservation_id"
