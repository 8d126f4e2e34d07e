"""Prices for LLM calls. (interim: the owner of this subpackage replaces this file)."""

from otel_costs._public import publish as _publish
from otel_costs.pricing._book import CostBreakdown, ModelRates, PriceBook, PriceConfigError, RateTier
from otel_costs.pricing._usage import LlmCall, TokenUsage, UsageReading, read_usage

__all__ = [
    "CostBreakdown",
    "LlmCall",
    "ModelRates",
    "PriceBook",
    "PriceConfigError",
    "RateTier",
    "TokenUsage",
    "UsageReading",
    "read_usage",
]

_publish(globals(), __all__, __name__)
