"""Budgets. (interim: the owner of this subpackage replaces this file)."""

from otel_costs._public import publish as _publish
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

__all__ = [
    "AlertSink",
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
    "FailPolicy",
    "LoggingAlertSink",
    "Verdict",
    "WebhookAlertSink",
    "current_reservation_id",
]

_publish(globals(), __all__, __name__)
