"""Budget ledgers: where spend and in-flight reservations are counted, in integer nano-USD.

* ``MemoryLedger``: one process, the default.
* ``SqliteLedger``: a file shared by the processes of one host; survives restarts.
* ``RedisLedger``: shared by hosts (the ``redis`` package is imported only when one is built).

All three keep the contract of ``Ledger`` (``otel_costs.budgets.ledger._base``).
"""

from otel_costs._public import publish as _publish
from otel_costs.budgets.ledger._base import Ledger, LedgerUnavailable
from otel_costs.budgets.ledger._memory import MemoryLedger
from otel_costs.budgets.ledger._redis import RedisLedger
from otel_costs.budgets.ledger._sqlite import SqliteLedger

__all__ = ["Ledger", "LedgerUnavailable", "MemoryLedger", "RedisLedger", "SqliteLedger"]

_publish(globals(), __all__, __name__)
