"""The attribute contract: span attribute names, baggage keys and outbound headers.

Every other module imports its names from here, so the table in ``docs/conventions.md``
and the code cannot drift apart. Where an OpenTelemetry GenAI semantic convention exists
we use it (``gen_ai.*``); the rest are this project's own names.
"""

from __future__ import annotations

from typing import Final as _Final

# --- attribution: span attributes -------------------------------------------------
WORKFLOW_ID: _Final = "workflow.id"
WORKFLOW_NAME: _Final = "workflow.name"
AGENT_NAME: _Final = "gen_ai.agent.name"
AGENT_ID: _Final = "gen_ai.agent.id"
AGENT_PARENT_ID: _Final = "agent.parent_id"
RETRY_DEPTH: _Final = "retry.depth"
#: The logical step a ``retry {step}`` span makes attempts of.
RETRY_STEP: _Final = "retry.step"
#: The values ``retry.depth`` takes where it is grouped (the cost counter's label, the reports'
#: retry tail): four at most, so a metric keeps a bounded number of series.
RETRY_DEPTH_TIERS: _Final = ("0", "1", "2", ">2")


def retry_depth_tier(depth: object) -> str | None:
    """The tier of a ``retry.depth`` value (an ``int`` >= 0, as the processor writes it); ``None``
    for anything else (absent, a bool, a string, a negative number). ``retry_depth_tier(5) == ">2"``."""
    if type(depth) is not int or depth < 0:
        return None
    return RETRY_DEPTH_TIERS[depth] if depth < 3 else RETRY_DEPTH_TIERS[3]


USER_ID: _Final = "user.id"
TEAM_ID: _Final = "team.id"

#: Attribution baggage keys whose values were malformed (too long, empty, a bad retry depth)
#: and so were not copied onto the span.
ATTRIBUTION_REJECTED: _Final = "attribution.rejected"

# --- attribution: baggage keys ----------------------------------------------------
BAGGAGE_WORKFLOW_ID: _Final = "workflow.id"
BAGGAGE_WORKFLOW_NAME: _Final = "workflow.name"
BAGGAGE_AGENT_NAME: _Final = "agent.name"
BAGGAGE_AGENT_ID: _Final = "agent.id"
BAGGAGE_RETRY_DEPTH: _Final = "retry.depth"
BAGGAGE_USER_ID: _Final = "user.id"
BAGGAGE_TEAM_ID: _Final = "team.id"

#: Baggage key -> span attribute, copied by ``CostSpanProcessor.on_start``.
#: The parent agent is derived (it is the agent that was current when the agent span started),
#: so it has no baggage key of its own.
BAGGAGE_TO_ATTRIBUTE: _Final[dict[str, str]] = {
    BAGGAGE_WORKFLOW_ID: WORKFLOW_ID,
    BAGGAGE_WORKFLOW_NAME: WORKFLOW_NAME,
    BAGGAGE_AGENT_NAME: AGENT_NAME,
    BAGGAGE_AGENT_ID: AGENT_ID,
    BAGGAGE_RETRY_DEPTH: RETRY_DEPTH,
    BAGGAGE_USER_ID: USER_ID,
    BAGGAGE_TEAM_ID: TEAM_ID,
}

# --- attribution: outbound HTTP headers ---------------------------------------------
HEADER_WORKFLOW_ID: _Final = "X-Workflow-Id"
HEADER_WORKFLOW_NAME: _Final = "X-Workflow-Name"
HEADER_AGENT_ID: _Final = "X-Agent-Id"
HEADER_PARENT_AGENT_ID: _Final = "X-Parent-Agent-Id"
HEADER_RETRY_DEPTH: _Final = "X-Retry-Depth"
HEADER_USER_ID: _Final = "X-User-Id"
HEADER_TEAM_ID: _Final = "X-Team-Id"
#: HMAC signature over the attribution headers, checked by ``accept_attribution``.
HEADER_ATTRIBUTION_SIGNATURE: _Final = "X-Attribution-Signature"

# --- cost ------------------------------------------------------------------------
#: Own cost of a billable span, USD (double on the wire).
COST_DIRECT: _Final = "cost.direct"
#: The same figure under the name Langfuse and OpenLIT read.
GEN_AI_USAGE_COST: _Final = "gen_ai.usage.cost"
#: Sum of the children's ``cost.total``, USD.
COST_CHILDREN: _Final = "cost.children"
#: ``cost.direct + cost.children``, USD.
COST_TOTAL: _Final = "cost.total"
COST_CURRENCY: _Final = "cost.currency"
CURRENCY_USD: _Final = "USD"
#: Exact integer nano-USD (1e-9 USD) companions of the doubles above. The rollup sums these,
#: so a parent's total is exactly the sum of its subtree wherever the rollup runs.
COST_DIRECT_NANOS: _Final = "cost.direct_nanos"
COST_CHILDREN_NANOS: _Final = "cost.children_nanos"
COST_TOTAL_NANOS: _Final = "cost.total_nanos"

#: Breakdown of the direct cost, USD.
COST_INPUT: _Final = "cost.input"
COST_CACHE_READ: _Final = "cost.cache_read"
COST_CACHE_WRITE: _Final = "cost.cache_write"
COST_OUTPUT: _Final = "cost.output"

#: Pricing outcome of a span, one of the ``STATUS_*`` values.
COST_STATUS: _Final = "cost.status"
STATUS_PRICED: _Final = "priced"
#: The span has usage but no price could be found: never a silent $0.
STATUS_UNPRICED: _Final = "unpriced"
#: The usage on the span is incomplete (e.g. a stream closed before its usage record).
STATUS_PARTIAL: _Final = "partial"
#: The usage attributes could not be read (negative, NaN, wrong type, absurd values).
STATUS_INVALID_USAGE: _Final = "invalid_usage"
#: Aggregate usage on an agent/workflow/tool span, deliberately not priced (no double counting).
STATUS_AGGREGATE: _Final = "aggregate"

#: The same model call (same ``gen_ai.response.id`` in the trace) was already priced on another
#: span, e.g. when two instrumentations trace one call: not counted again.
STATUS_DUPLICATE: _Final = "duplicate"

#: Free-text reason when ``cost.status`` is not ``priced``.
COST_STATUS_REASON: _Final = "cost.status_reason"
#: What priced the span.
COST_PROVIDER: _Final = "cost.provider"
COST_MODEL: _Final = "cost.model"
COST_PRICE_SOURCE: _Final = "cost.price_source"
PRICE_SOURCE_OVERRIDE: _Final = "override"
PRICE_SOURCE_GENAI_PRICES: _Final = "genai-prices"

#: Scope of the rollup figures on a span: ``process`` (in-process exporter) or ``trace`` (collector side).
COST_ROLLUP_SCOPE: _Final = "cost.rollup.scope"
SCOPE_PROCESS: _Final = "process"
SCOPE_TRACE: _Final = "trace"
#: True on a span whose parent lives in another process: its totals cover this process only.
COST_ROLLUP_REMOTE_PARENT: _Final = "cost.rollup.remote_parent"
#: True on a span whose parent was never seen: exported as a root of its own.
COST_ROLLUP_ORPHAN: _Final = "cost.rollup.orphan"
#: True when the rollup was cut short (memory bound, timeout, cycle): totals may be low.
COST_ROLLUP_PARTIAL: _Final = "cost.rollup.partial"
COST_ROLLUP_PARTIAL_REASON: _Final = "cost.rollup.partial_reason"
#: How many billable spans in the subtree could not be priced: the total is a lower bound.
COST_ROLLUP_UNPRICED: _Final = "cost.rollup.unpriced"

# --- GenAI semantic conventions we read or write --------------------------------------
GEN_AI_OPERATION_NAME: _Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: _Final = "gen_ai.provider.name"
GEN_AI_SYSTEM: _Final = "gen_ai.system"  # deprecated in favour of gen_ai.provider.name
GEN_AI_REQUEST_MODEL: _Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: _Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: _Final = "gen_ai.response.id"
#: OpenTelemetry's error attribute: on a failed call, a missing output count is not a gap.
ERROR_TYPE: _Final = "error.type"
#: Token usage (current semconv names; ``_usage`` also reads the deprecated and other tools' names).
GEN_AI_USAGE_INPUT_TOKENS: _Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: _Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: _Final = "gen_ai.usage.cache_read.input_tokens"
#: Cache writes: the name in released semconv (<= 1.38); semconv main renames it ``cache_write``.
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: _Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: _Final = "gen_ai.usage.cache_write.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: _Final = "gen_ai.usage.reasoning.output_tokens"
SERVER_ADDRESS: _Final = "server.address"


# --- usage attributes of every instrumentation (read by otel_costs.pricing) ---
# --- attribute names read here (not in _conventions: only this module reads them) -----------
# OpenTelemetry GenAI semantic conventions, current.
#: The name on semconv main; released semconv (<= 1.38) calls it ``cache_creation``.
# OpenTelemetry GenAI semantic conventions, deprecated (still written by OpenLLMetry).
GEN_AI_USAGE_PROMPT_TOKENS: _Final = "gen_ai.usage.prompt_tokens"
GEN_AI_USAGE_COMPLETION_TOKENS: _Final = "gen_ai.usage.completion_tokens"
GEN_AI_USAGE_TOTAL_TOKENS: _Final = "gen_ai.usage.total_tokens"
# OpenLLMetry (traceloop semconv_ai).
TRACELOOP_CACHE_READ_INPUT_TOKENS: _Final = "gen_ai.usage.cache_read_input_tokens"
TRACELOOP_CACHE_CREATION_INPUT_TOKENS: _Final = "gen_ai.usage.cache_creation_input_tokens"
TRACELOOP_REASONING_TOKENS: _Final = "gen_ai.usage.reasoning_tokens"
TRACELOOP_LLM_REASONING_TOKENS: _Final = "llm.usage.reasoning_tokens"
TRACELOOP_TOTAL_TOKENS: _Final = "llm.usage.total_tokens"
TRACELOOP_SPAN_KIND: _Final = "traceloop.span.kind"
OPENAI_API_BASE: _Final = "gen_ai.openai.api_base"
# OpenInference.
OI_TOKEN_COUNT_PROMPT: _Final = "llm.token_count.prompt"
OI_TOKEN_COUNT_COMPLETION: _Final = "llm.token_count.completion"
OI_TOKEN_COUNT_TOTAL: _Final = "llm.token_count.total"
OI_CACHE_READ: _Final = "llm.token_count.prompt_details.cache_read"
OI_CACHE_WRITE: _Final = "llm.token_count.prompt_details.cache_write"
OI_REASONING: _Final = "llm.token_count.completion_details.reasoning"
OI_MODEL_NAME: _Final = "llm.model_name"
OI_PROVIDER: _Final = "llm.provider"
OI_SYSTEM: _Final = "llm.system"
OI_SPAN_KIND: _Final = "openinference.span.kind"
OI_EMBEDDING_MODEL_NAME: _Final = "embedding.model_name"
# Pydantic AI / Logfire.
PYDANTIC_CACHE_READ: _Final = "gen_ai.usage.details.cache_read_tokens"
PYDANTIC_CACHE_WRITE: _Final = "gen_ai.usage.details.cache_write_tokens"
PYDANTIC_REASONING: _Final = "gen_ai.usage.details.reasoning_tokens"

#: Per field, the attribute names in priority order: the first one present wins.
INPUT_KEYS: _Final = (GEN_AI_USAGE_INPUT_TOKENS, GEN_AI_USAGE_PROMPT_TOKENS, OI_TOKEN_COUNT_PROMPT)
OUTPUT_KEYS: _Final = (GEN_AI_USAGE_OUTPUT_TOKENS, GEN_AI_USAGE_COMPLETION_TOKENS, OI_TOKEN_COUNT_COMPLETION)
CACHE_READ_KEYS: _Final = (
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    TRACELOOP_CACHE_READ_INPUT_TOKENS,
    OI_CACHE_READ,
    PYDANTIC_CACHE_READ,
)
CACHE_WRITE_KEYS: _Final = (
    GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    TRACELOOP_CACHE_CREATION_INPUT_TOKENS,
    OI_CACHE_WRITE,
    PYDANTIC_CACHE_WRITE,
)
REASONING_KEYS: _Final = (
    GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    TRACELOOP_REASONING_TOKENS,
    TRACELOOP_LLM_REASONING_TOKENS,
    OI_REASONING,
    PYDANTIC_REASONING,
)
#: A total alone cannot be priced, but it marks a span as carrying usage (so it is flagged, not skipped).
TOTAL_KEYS: _Final = (GEN_AI_USAGE_TOTAL_TOKENS, TRACELOOP_TOTAL_TOKENS, OI_TOKEN_COUNT_TOTAL)
MODEL_KEYS: _Final = (GEN_AI_RESPONSE_MODEL, GEN_AI_REQUEST_MODEL, OI_MODEL_NAME, OI_EMBEDDING_MODEL_NAME)
PROVIDER_KEYS: _Final = (GEN_AI_PROVIDER_NAME, GEN_AI_SYSTEM, OI_PROVIDER, OI_SYSTEM)
SERVER_KEYS: _Final = (SERVER_ADDRESS, OPENAI_API_BASE)

# --- span kinds: the one table of which spans are model calls, agents, workflows, tasks, tools ---
# Read only through ``otel_costs._kinds`` (``span_kind``, ``is_model_call``, ``is_aggregate``,
# ``agent_of``), which every stage asks: capture stand-down, pricing, dedupe, sampling, rollup,
# reports. docs/conventions.md ("Span kinds") is the same table in prose.
#: A single model call (chat, completion, embeddings): priced.
KIND_MODEL_CALL: _Final = "model_call"
#: An agent invocation: its name is the agent of the calls below it.
KIND_AGENT: _Final = "agent"
#: A workflow (a run of agents): its name is the workflow of the calls below it.
KIND_WORKFLOW: _Final = "workflow"
#: A task, a graph node or a handoff: an aggregate; names an agent only where no agent span is above.
KIND_TASK: _Final = "task"
#: A tool execution: an aggregate.
KIND_TOOL: _Final = "tool"
#: Any other span whose usage sums its children's (an OpenInference CHAIN, ``create_agent``).
KIND_AGGREGATE: _Final = "aggregate"
#: The kinds whose usage is the sum of their child calls: never priced.
AGGREGATE_KINDS: _Final = frozenset({KIND_AGENT, KIND_WORKFLOW, KIND_TASK, KIND_TOOL, KIND_AGGREGATE})

OPERATION_INVOKE_WORKFLOW: _Final = "invoke_workflow"
OPERATION_INVOKE_AGENT: _Final = "invoke_agent"
#: OpenLLMetry's request type on its LLM spans (``chat``, ``completion``, ``embedding``, ``rerank``).
TRACELOOP_REQUEST_TYPE: _Final = "llm.request.type"

#: Marker attribute -> its values (as written; the classifier also tries them lower-cased, and
#: upper-cased for OpenInference) -> kind. A span that any marker calls an agent, workflow,
#: task, tool or aggregate is that kind (never priced); else it is a model call if a marker says so;
#: a span with no known value has no kind: **an unknown operation is not a
#: model call** (nor an aggregate).
SPAN_KINDS: _Final[dict[str, dict[str, str]]] = {
    # OpenTelemetry GenAI semantic conventions (gen-ai-spans.md, gen-ai-agent-spans.md), plus the
    # operations OpenLLMetry and the OpenAI Agents SDK instrumentations write in that attribute.
    GEN_AI_OPERATION_NAME: {
        "chat": KIND_MODEL_CALL,
        "text_completion": KIND_MODEL_CALL,
        "generate_content": KIND_MODEL_CALL,
        "embeddings": KIND_MODEL_CALL,
        "invoke_agent": KIND_AGENT,
        "create_agent": KIND_AGGREGATE,
        "invoke_workflow": KIND_WORKFLOW,
        "execute_task": KIND_TASK,
        "handoff": KIND_TASK,
        "execute_tool": KIND_TOOL,
    },
    # OpenInference (openinference-semantic-conventions), upper-case as written.
    OI_SPAN_KIND: {
        "LLM": KIND_MODEL_CALL,
        "EMBEDDING": KIND_MODEL_CALL,
        "AGENT": KIND_AGENT,
        "CHAIN": KIND_AGGREGATE,
        "TOOL": KIND_TOOL,
    },
    # OpenLLMetry (traceloop semconv_ai), lower-case as written.
    TRACELOOP_SPAN_KIND: {
        "llm": KIND_MODEL_CALL,
        "workflow": KIND_WORKFLOW,
        "agent": KIND_AGENT,
        "task": KIND_TASK,
        "tool": KIND_TOOL,
    },
    TRACELOOP_REQUEST_TYPE: {
        "chat": KIND_MODEL_CALL,
        "completion": KIND_MODEL_CALL,
        "embedding": KIND_MODEL_CALL,
    },
}

# Where each convention puts the agent's and the workflow's names (read by ``_kinds.agent_of``).
#: OpenInference AGENT spans: the agent's name and, in a graph, its node and parent node.
OI_AGENT_NAME: _Final = "agent.name"
OI_GRAPH_NODE_ID: _Final = "graph.node.id"
OI_GRAPH_NODE_PARENT_ID: _Final = "graph.node.parent_id"
#: OpenInference LangChain spans: a JSON object string holding ``lc_agent_name``/``langgraph_node``.
OI_METADATA: _Final = "metadata"
#: Keys of that JSON object (and of LangChain run metadata) naming the agent, in priority order.
LC_AGENT_NAME_KEYS: _Final = ("lc_agent_name", "agent_name")
#: OpenLLMetry: task/agent/workflow spans name their entity; LangChain LLM spans carry the agent
#: in the association properties and the chain of entity names above them in ``entity.path``.
GEN_AI_TASK_NAME: _Final = "gen_ai.task.name"
TRACELOOP_ENTITY_NAME: _Final = "traceloop.entity.name"
TRACELOOP_ENTITY_PATH: _Final = "traceloop.entity.path"
TRACELOOP_LC_AGENT_NAME: _Final = "traceloop.association.properties.lc_agent_name"
#: A model-call span's own agent, first present wins: the names a call span carries itself.
CALL_AGENT_NAME_KEYS: _Final = (AGENT_NAME, TRACELOOP_LC_AGENT_NAME, OI_AGENT_NAME)
#: An agent (or task) span's name, first present wins.
SCOPE_AGENT_NAME_KEYS: _Final = (AGENT_NAME, OI_AGENT_NAME, GEN_AI_TASK_NAME, TRACELOOP_ENTITY_NAME)
#: A workflow span's name, first present wins.
SCOPE_WORKFLOW_NAME_KEYS: _Final = (WORKFLOW_NAME, TRACELOOP_ENTITY_NAME)
#: Where the agent written on a model-call span came from: the span itself (``own``: one of
#: ``CALL_AGENT_NAME_KEYS`` or the ``metadata`` JSON) or the nearest agent above it (``inherited``).
#: Written by ``CostRollupExporter`` (and the Collector's ``costrollup``) on every billable span
#: it finds an agent for; ``gen_ai.agent.name``, ``agent.parent_id`` and ``workflow.name`` are
#: written only when absent.
AGENT_SOURCE: _Final = "otel_costs.agent.source"
AGENT_SOURCE_OWN: _Final = "own"
AGENT_SOURCE_INHERITED: _Final = "inherited"


# --- derived views of SPAN_KINDS (kept for existing readers and tests) ---
def _values(marker: str, *kinds: str) -> frozenset[str]:
    return frozenset(value for value, kind in SPAN_KINDS[marker].items() if kind in kinds)


#: ``gen_ai.operation.name`` values whose usage is an aggregate of child calls (never priced).
AGGREGATE_OPERATIONS: _Final = _values(GEN_AI_OPERATION_NAME, *AGGREGATE_KINDS)
#: ``gen_ai.operation.name`` values of a single model call, and OpenInference span kinds of one.
LLM_OPERATIONS: _Final = _values(GEN_AI_OPERATION_NAME, KIND_MODEL_CALL)
OI_LLM_KINDS: _Final = _values(OI_SPAN_KIND, KIND_MODEL_CALL)
#: OpenInference span kinds whose token counts sum their children's (upper-case, as written).
OI_AGGREGATE_KINDS: _Final = _values(OI_SPAN_KIND, *AGGREGATE_KINDS)
#: traceloop span kinds whose token counts sum their children's.
TRACELOOP_AGGREGATE_KINDS: _Final = _values(TRACELOOP_SPAN_KIND, *AGGREGATE_KINDS)

# --- budget alerts: the threshold event and its attributes ---
#: Name of the span event added to the span whose cost crossed a threshold.
THRESHOLD_EVENT: _Final = "budget.threshold_crossed"

# Attribute names of the threshold event and of the utilization gauges.
BUDGET_NAME: _Final = "budget.name"
BUDGET_WINDOW: _Final = "budget.window"
BUDGET_SUBJECT: _Final = "budget.subject"
BUDGET_THRESHOLD: _Final = "budget.threshold"
BUDGET_SEVERITY: _Final = "budget.severity"
BUDGET_SPENT: _Final = "budget.spent"
BUDGET_LIMIT: _Final = "budget.limit"
BUDGET_UTILIZATION: _Final = "budget.utilization"

SEVERITY_WARNING: _Final = "warning"
SEVERITY_CRITICAL: _Final = "critical"
SEVERITY_EXCEEDED: _Final = "exceeded"


# --- metrics ---
#: Counter of money spent on LLM calls, USD.
COST_METRIC: _Final = "gen_ai.client.cost"
#: Gauge: spent / limit of each budget counter (1.0 = the limit).
UTILIZATION_METRIC: _Final = "otel_costs.budget.utilization"
#: Gauge: spend in the current window of each budget counter, USD.
SPENT_METRIC: _Final = "otel_costs.budget.spent"
#: Gauge: the limit of each budget counter, USD.
LIMIT_METRIC: _Final = "otel_costs.budget.limit"
#: Counter of workflow runs (``invoke_workflow`` spans rolled up), by workflow name, team, environment.
WORKFLOW_RUNS_METRIC: _Final = "otel_costs.workflow.runs"
#: Histogram of the cost of each workflow run (its ``cost.total``), USD.
WORKFLOW_RUN_COST_METRIC: _Final = "otel_costs.workflow.run_cost"


# --- budgets ---
#: Span attribute where the HTTP layer puts the reservation id of a call, for the processor to reconcile.
RESERVATION_ID_ATTRIBUTE: _Final = "cost.budget.reservation_id"

# --- call sites and resources (OpenTelemetry semantic conventions) ---
#: Where the application made the call or entered the scope (recorded by workflow(), agent(),
#: retry() and the HTTP capture's LLM spans; the Attribution Auditor groups findings by them).
CODE_FUNCTION_NAME: _Final = "code.function.name"
CODE_FILE_PATH: _Final = "code.file.path"
CODE_LINE_NUMBER: _Final = "code.line.number"
#: Resource attributes the reports group by (``deployment.environment`` is the older name).
SERVICE_NAME: _Final = "service.name"
DEPLOYMENT_ENVIRONMENT_NAME: _Final = "deployment.environment.name"
DEPLOYMENT_ENVIRONMENT: _Final = "deployment.environment"

__all__ = [
    "AGENT_ID",
    "AGENT_NAME",
    "AGENT_PARENT_ID",
    "AGENT_SOURCE",
    "AGENT_SOURCE_INHERITED",
    "AGENT_SOURCE_OWN",
    "AGGREGATE_KINDS",
    "AGGREGATE_OPERATIONS",
    "ATTRIBUTION_REJECTED",
    "BAGGAGE_AGENT_ID",
    "BAGGAGE_AGENT_NAME",
    "BAGGAGE_RETRY_DEPTH",
    "BAGGAGE_TEAM_ID",
    "BAGGAGE_TO_ATTRIBUTE",
    "BAGGAGE_USER_ID",
    "BAGGAGE_WORKFLOW_ID",
    "BAGGAGE_WORKFLOW_NAME",
    "BUDGET_LIMIT",
    "BUDGET_NAME",
    "BUDGET_SEVERITY",
    "BUDGET_SPENT",
    "BUDGET_SUBJECT",
    "BUDGET_THRESHOLD",
    "BUDGET_UTILIZATION",
    "BUDGET_WINDOW",
    "CACHE_READ_KEYS",
    "CACHE_WRITE_KEYS",
    "CALL_AGENT_NAME_KEYS",
    "CODE_FILE_PATH",
    "CODE_FUNCTION_NAME",
    "CODE_LINE_NUMBER",
    "COST_CACHE_READ",
    "COST_CACHE_WRITE",
    "COST_CHILDREN",
    "COST_CHILDREN_NANOS",
    "COST_CURRENCY",
    "COST_DIRECT",
    "COST_DIRECT_NANOS",
    "COST_INPUT",
    "COST_METRIC",
    "COST_MODEL",
    "COST_OUTPUT",
    "COST_PRICE_SOURCE",
    "COST_PROVIDER",
    "COST_ROLLUP_ORPHAN",
    "COST_ROLLUP_PARTIAL",
    "COST_ROLLUP_PARTIAL_REASON",
    "COST_ROLLUP_REMOTE_PARENT",
    "COST_ROLLUP_SCOPE",
    "COST_ROLLUP_UNPRICED",
    "COST_STATUS",
    "COST_STATUS_REASON",
    "COST_TOTAL",
    "COST_TOTAL_NANOS",
    "CURRENCY_USD",
    "DEPLOYMENT_ENVIRONMENT",
    "DEPLOYMENT_ENVIRONMENT_NAME",
    "ERROR_TYPE",
    "GEN_AI_OPERATION_NAME",
    "GEN_AI_PROVIDER_NAME",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_RESPONSE_ID",
    "GEN_AI_RESPONSE_MODEL",
    "GEN_AI_SYSTEM",
    "GEN_AI_TASK_NAME",
    "GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS",
    "GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS",
    "GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS",
    "GEN_AI_USAGE_COMPLETION_TOKENS",
    "GEN_AI_USAGE_COST",
    "GEN_AI_USAGE_INPUT_TOKENS",
    "GEN_AI_USAGE_OUTPUT_TOKENS",
    "GEN_AI_USAGE_PROMPT_TOKENS",
    "GEN_AI_USAGE_REASONING_OUTPUT_TOKENS",
    "GEN_AI_USAGE_TOTAL_TOKENS",
    "HEADER_AGENT_ID",
    "HEADER_ATTRIBUTION_SIGNATURE",
    "HEADER_PARENT_AGENT_ID",
    "HEADER_RETRY_DEPTH",
    "HEADER_TEAM_ID",
    "HEADER_USER_ID",
    "HEADER_WORKFLOW_ID",
    "HEADER_WORKFLOW_NAME",
    "INPUT_KEYS",
    "KIND_AGENT",
    "KIND_AGGREGATE",
    "KIND_MODEL_CALL",
    "KIND_TASK",
    "KIND_TOOL",
    "KIND_WORKFLOW",
    "LC_AGENT_NAME_KEYS",
    "LIMIT_METRIC",
    "LLM_OPERATIONS",
    "MODEL_KEYS",
    "OI_AGENT_NAME",
    "OI_AGGREGATE_KINDS",
    "OI_CACHE_READ",
    "OI_CACHE_WRITE",
    "OI_EMBEDDING_MODEL_NAME",
    "OI_GRAPH_NODE_ID",
    "OI_GRAPH_NODE_PARENT_ID",
    "OI_LLM_KINDS",
    "OI_METADATA",
    "OI_MODEL_NAME",
    "OI_PROVIDER",
    "OI_REASONING",
    "OI_SPAN_KIND",
    "OI_SYSTEM",
    "OI_TOKEN_COUNT_COMPLETION",
    "OI_TOKEN_COUNT_PROMPT",
    "OI_TOKEN_COUNT_TOTAL",
    "OPENAI_API_BASE",
    "OPERATION_INVOKE_AGENT",
    "OPERATION_INVOKE_WORKFLOW",
    "OUTPUT_KEYS",
    "PRICE_SOURCE_GENAI_PRICES",
    "PRICE_SOURCE_OVERRIDE",
    "PROVIDER_KEYS",
    "PYDANTIC_CACHE_READ",
    "PYDANTIC_CACHE_WRITE",
    "PYDANTIC_REASONING",
    "REASONING_KEYS",
    "RESERVATION_ID_ATTRIBUTE",
    "RETRY_DEPTH",
    "RETRY_DEPTH_TIERS",
    "RETRY_STEP",
    "SCOPE_AGENT_NAME_KEYS",
    "SCOPE_PROCESS",
    "SCOPE_TRACE",
    "SCOPE_WORKFLOW_NAME_KEYS",
    "SERVER_ADDRESS",
    "SERVER_KEYS",
    "SERVICE_NAME",
    "SEVERITY_CRITICAL",
    "SEVERITY_EXCEEDED",
    "SEVERITY_WARNING",
    "SPAN_KINDS",
    "SPENT_METRIC",
    "STATUS_AGGREGATE",
    "STATUS_DUPLICATE",
    "STATUS_INVALID_USAGE",
    "STATUS_PARTIAL",
    "STATUS_PRICED",
    "STATUS_UNPRICED",
    "TEAM_ID",
    "THRESHOLD_EVENT",
    "TOTAL_KEYS",
    "TRACELOOP_AGGREGATE_KINDS",
    "TRACELOOP_CACHE_CREATION_INPUT_TOKENS",
    "TRACELOOP_CACHE_READ_INPUT_TOKENS",
    "TRACELOOP_ENTITY_NAME",
    "TRACELOOP_ENTITY_PATH",
    "TRACELOOP_LC_AGENT_NAME",
    "TRACELOOP_LLM_REASONING_TOKENS",
    "TRACELOOP_REASONING_TOKENS",
    "TRACELOOP_REQUEST_TYPE",
    "TRACELOOP_SPAN_KIND",
    "TRACELOOP_TOTAL_TOKENS",
    "USER_ID",
    "UTILIZATION_METRIC",
    "WORKFLOW_ID",
    "WORKFLOW_NAME",
    "WORKFLOW_RUNS_METRIC",
    "WORKFLOW_RUN_COST_METRIC",
    "retry_depth_tier",
]
