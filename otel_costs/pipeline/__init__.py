"""The cost pipeline: ``CostSpanProcessor`` (attribute on start, price on end), ``configure()``,
the sampler that keeps LLM calls recorded, and the OTLP/JSON file exporter.

Example::

    from otel_costs.pipeline import configure

    provider = configure(service_name="agents")
"""

from otel_costs._config_checks import ConfigError
from otel_costs._public import publish as _publish
from otel_costs.pipeline._configure import ConfigurationError, configure, default_exporter
from otel_costs.pipeline._otlp import OtlpFormatError, OtlpJsonFileExporter
from otel_costs.pipeline._processor import CostListener, CostSpanProcessor
from otel_costs.pipeline._sampling import RecordLlmSpans

__all__ = [
    "ConfigError",
    "ConfigurationError",
    "CostListener",
    "CostSpanProcessor",
    "OtlpFormatError",
    "OtlpJsonFileExporter",
    "RecordLlmSpans",
    "configure",
    "default_exporter",
]

_publish(globals(), __all__, __name__)
