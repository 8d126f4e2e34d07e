"""otel-costs: where the money goes in multi-agent LLM systems, on plain OpenTelemetry.

Attribute spans to workflows, agents, retries, users and teams; price every LLM call from
its token usage; roll costs up span trees; export to any OTLP backend.

Example::

    import otel_costs

    otel_costs.configure(service_name="agents")
    with otel_costs.workflow("support", team_id="billing"), otel_costs.agent("triage"):
        ...  # LLM calls made here are priced and attributed
"""

from ._attribution import Attempt, Retry, agent, current_attribution, retry, workflow
from ._configure import ConfigurationError, configure, default_exporter
from ._exporter import CostRollupExporter
from ._otlp import OtlpFormatError, OtlpJsonFileExporter
from ._pricing import CostBreakdown, ModelRates, PriceBook, PriceConfigError, RateTier
from ._processor import CostListener, CostSpanProcessor
from ._rollup import CostNode, NodeRollup, cost_node, rollup
from ._usage import LlmCall, TokenUsage, UsageReading, read_usage

__all__ = [
    "Attempt",
    "ConfigurationError",
    "CostBreakdown",
    "CostListener",
    "CostNode",
    "CostRollupExporter",
    "CostSpanProcessor",
    "LlmCall",
    "ModelRates",
    "NodeRollup",
    "OtlpFormatError",
    "OtlpJsonFileExporter",
    "PriceBook",
    "PriceConfigError",
    "RateTier",
    "Retry",
    "TokenUsage",
    "UsageReading",
    "agent",
    "configure",
    "cost_node",
    "current_attribution",
    "default_exporter",
    "read_usage",
    "retry",
    "rollup",
    "workflow",
]
