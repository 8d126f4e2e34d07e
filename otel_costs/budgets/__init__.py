"""Budgets that act before the call: allow, throttle or deny an LLM call, per team, user, workflow, agent.

Define ``Budget`` limits (or load a ``BudgetConfig`` file), give them to a ``BudgetManager``, hand
the manager to the pipeline as a listener (``configure(listeners=[manager])``) so every priced
span's cost is recorded once, and to the HTTP capture (``instrument_httpx(budgets=manager)``) so
calls are checked before they leave. Ledgers are in ``otel_costs.budgets.ledger``.

Example::

    from otel_costs.budgets import Budget, BudgetManager

    manager = BudgetManager([Budget("team-daily", Decimal("25"), per=("team",))])
"""

from otel_costs._public import publish as _publish
from otel_costs.budgets._alerts import (
    AlertSink,
    BudgetAlert,
    BudgetMonitor,
    LoggingAlertSink,
    WebhookAlertSink,
)
from otel_costs.budgets._config import Budget, BudgetConfig, BudgetConfigError, FailPolicy
from otel_costs.budgets._decisions import (
    BudgetDecision,
    BudgetDenied,
    BudgetExceeded,
    BudgetStatus,
    BudgetUnavailable,
    Verdict,
)
from otel_costs.budgets._guard import current_reservation_id
from otel_costs.budgets._manager import BudgetManager

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
