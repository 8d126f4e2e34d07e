"""Pricing LLM calls: token usage read from span attributes, priced from genai-prices' data and
the user's overrides, exact to the nano-USD (``docs/pricing.md``).

Importing this package loads neither genai-prices nor its price data: the first use of a
:class:`PriceBook` does.
"""

from otel_costs._public import publish as _publish
from otel_costs.pricing._book import PriceBook
from otel_costs.pricing._export import export_prices
from otel_costs.pricing._overrides import PriceConfigError
from otel_costs.pricing._results import CostBreakdown, ModelRates, RateTier
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
    "export_prices",
    "read_usage",
]

_publish(globals(), __all__, __name__)
