"""otel-costs: where the money goes in multi-agent LLM systems, on plain OpenTelemetry.

Attribute spans to workflows, agents, retries, users and teams; price every LLM call from
its token usage; roll costs up span trees; export to any OTLP backend.

Example::

    import otel_costs

    otel_costs.configure(service_name="agents")
    with otel_costs.workflow("support", team_id="billing"), otel_costs.agent("triage"):
        ...  # LLM calls made here are priced and attributed
"""

from otel_costs._serve import ForwardConfig, ServeConfig, ServeWorker
from otel_costs.attribution._scopes import Attempt, Retry, agent, current_attribution, retry, workflow
from otel_costs.budgets._alerts import (
    AlertSink,
    BudgetAlert,
    BudgetMonitor,
    LoggingAlertSink,
    WebhookAlertSink,
)
from otel_costs.budgets._manager import (
    Budget,
    BudgetConfig,
    BudgetConfigError,
    BudgetDecision,
    BudgetDenied,
    BudgetExceeded,
    BudgetManager,
    BudgetStatus,
    BudgetUnavailable,
    FailPolicy,
    Verdict,
    current_reservation_id,
)
from otel_costs.budgets.ledger._ledgers import (
    Ledger,
    LedgerUnavailable,
    MemoryLedger,
    RedisLedger,
    SqliteLedger,
)
from otel_costs.capture import (
    DEFAULT_LLM_HOSTS,
    AttributionTrust,
    accept_attribution,
    attribution_headers,
    attribution_rejection,
    instrument_httpx,
    uninstrument_httpx,
)
from otel_costs.conventions import HEADER_ATTRIBUTION_SIGNATURE, RESERVATION_ID_ATTRIBUTE
from otel_costs.metrics._cost_metrics import CostMetrics
from otel_costs.pipeline._configure import ConfigurationError, configure, default_exporter
from otel_costs.pipeline._otlp import OtlpFormatError, OtlpJsonFileExporter
from otel_costs.pipeline._processor import CostListener, CostSpanProcessor, SpendRecorder
from otel_costs.pipeline._sampling import RecordLlmSpans
from otel_costs.pricing._book import CostBreakdown, ModelRates, PriceBook, PriceConfigError, RateTier
from otel_costs.pricing._usage import LlmCall, TokenUsage, UsageReading, read_usage
from otel_costs.rollup._exporter import CostRollupExporter
from otel_costs.rollup._tree import CostNode, NodeRollup, cost_node, rollup

__all__ = [
    "AlertSink",
    "Attempt",
    "AttributionTrust",
    "Budget",
    "BudgetAlert",
    "BudgetConfig",
    "BudgetConfigError",
    "BudgetDecision",
    "BudgetDenied",
    "BudgetExceeded",
    "BudgetManager",
    "BudgetMonitor",
    "BudgetStatus",
    "BudgetUnavailable",
    "ConfigurationError",
    "CostBreakdown",
    "CostListener",
    "CostMetrics",
    "CostNode",
    "CostRollupExporter",
    "CostSpanProcessor",
    "DEFAULT_LLM_HOSTS",
    "FailPolicy",
    "ForwardConfig",
    "HEADER_ATTRIBUTION_SIGNATURE",
    "Ledger",
    "LedgerUnavailable",
    "LlmCall",
    "LoggingAlertSink",
    "MemoryLedger",
    "ModelRates",
    "NodeRollup",
    "OtlpFormatError",
    "OtlpJsonFileExporter",
    "PriceBook",
    "PriceConfigError",
    "RESERVATION_ID_ATTRIBUTE",
    "RateTier",
    "RecordLlmSpans",
    "RedisLedger",
    "Retry",
    "ServeConfig",
    "ServeWorker",
    "SpendRecorder",
    "SqliteLedger",
    "TokenUsage",
    "UsageReading",
    "Verdict",
    "WebhookAlertSink",
    "accept_attribution",
    "agent",
    "attribution_headers",
    "attribution_rejection",
    "configure",
    "cost_node",
    "current_attribution",
    "current_reservation_id",
    "default_exporter",
    "instrument_httpx",
    "read_usage",
    "retry",
    "rollup",
    "uninstrument_httpx",
    "workflow",
]
