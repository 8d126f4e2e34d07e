"""Cost metrics. (interim: the owner of this subpackage replaces this file)."""

from otel_costs._public import publish as _publish
from otel_costs.metrics._cost_metrics import CostMetrics

__all__ = ["CostMetrics"]

_publish(globals(), __all__, __name__)
