"""The cost pipeline. (interim: the owner of this subpackage replaces this file)."""

from otel_costs._public import publish as _publish
from otel_costs.pipeline._configure import ConfigurationError, configure, default_exporter
from otel_costs.pipeline._otlp import OtlpFormatError, OtlpJsonFileExporter
from otel_costs.pipeline._processor import CostListener, CostSpanProcessor
from otel_costs.pipeline._sampling import RecordLlmSpans

__all__ = [
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
