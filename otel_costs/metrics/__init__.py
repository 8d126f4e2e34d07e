"""Cost metrics through the OpenTelemetry metrics API: the cost counter and the budget gauges.

Example::

    from otel_costs.metrics import CostMetrics

    metrics = CostMetrics()
    otel_costs.configure(listeners=[metrics])  # or BudgetManager(budgets, metrics=metrics)
"""

from otel_costs._public import publish as _publish
from otel_costs.metrics._cost_metrics import CostMetrics

__all__ = ["CostMetrics"]

_publish(globals(), __all__, __name__)
