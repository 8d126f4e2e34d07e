"""Exact money: integer nano-USD inside, doubles only on the wire.

A span's direct cost is computed as a ``Decimal`` (identical to genai-prices) and then
quantized once to whole nano-dollars (1e-9 USD, half-even). From there on every sum is an
integer sum, so a parent's total is exactly the sum of its subtree, in any process.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

NANOS_PER_USD = 1_000_000_000
_NANO = Decimal(1).scaleb(-9)


def to_nanos(usd: Decimal) -> int:
    """Round a USD amount to whole nano-USD, half-even. ``Decimal("0.03325")`` -> ``33_250_000``."""
    # Rounding passed by position: the same call, half the cost of the keyword (0.5 vs 1 µs).
    return int(usd.quantize(_NANO, ROUND_HALF_EVEN).scaleb(9))


def nanos_to_usd(nanos: int) -> float:
    """The wire form of an amount: USD as a double (``33_250_000`` -> ``0.03325``).

    The two writers on the span path, ``write_priced`` and ``write_rollup``, divide by
    ``NANOS_PER_USD`` inline instead (the same operation, without a call per value)."""
    return nanos / NANOS_PER_USD


def nanos_to_decimal(nanos: int) -> Decimal:
    """The exact USD amount of ``nanos`` as a ``Decimal``."""
    return Decimal(nanos).scaleb(-9)


def usd_wire_to_nanos(value: object) -> int | None:
    """Read a USD double from the wire back to nano-USD; ``None`` if it is not a finite number >= 0.

    Used where only the double survived (e.g. spans costed by another tool): a double carries
    15-17 significant digits, so amounts below $9M round-trip to the nano exactly.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value < 0:
        return None
    try:
        return to_nanos(Decimal(repr(value)) if isinstance(value, float) else Decimal(value))
    except (InvalidOperation, ValueError):
        return None
