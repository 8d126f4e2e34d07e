"""Ledgers. (interim: the owner of this subpackage replaces this file)."""

from otel_costs._public import publish as _publish
from otel_costs.budgets.ledger._ledgers import (
    Ledger,
    LedgerUnavailable,
    MemoryLedger,
    RedisLedger,
    SqliteLedger,
)

__all__ = ["Ledger", "LedgerUnavailable", "MemoryLedger", "RedisLedger", "SqliteLedger"]

_publish(globals(), __all__, __name__)
