"""Exact money helpers: nano-USD rounding and the USD double on the wire.

``otel_costs._money`` is internal: these are the unit tests of the one module that converts money.
"""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from otel_costs._money import NANOS_PER_USD, nanos_to_decimal, nanos_to_usd, to_nanos, usd_wire_to_nanos


@pytest.mark.parametrize(
    ("usd", "nanos"),
    [
        (Decimal("0.03325"), 33_250_000),
        (Decimal(0), 0),
        (Decimal(1), NANOS_PER_USD),
        (Decimal("0.0000000005"), 0),  # half-even: ties go to the even nano
        (Decimal("0.0000000015"), 2),
        (Decimal("0.0000000025"), 2),
        (Decimal("0.00000000251"), 3),
        (Decimal("123456.123456789"), 123_456_123_456_789),
    ],
)
def test_to_nanos_rounds_half_even(usd: Decimal, nanos: int) -> None:
    """A USD amount becomes whole nano-USD, rounded half-even."""
    assert to_nanos(usd) == nanos


@pytest.mark.parametrize("nanos", [0, 1, 33_250_000, 10**9, 123_456_123_456_789])
def test_nanos_round_trip_through_decimal_and_wire(nanos: int) -> None:
    """Nano-USD survive the exact Decimal and, below $9M, the wire double."""
    assert to_nanos(nanos_to_decimal(nanos)) == nanos
    assert usd_wire_to_nanos(nanos_to_usd(nanos)) == nanos


def test_wire_form_is_usd_double() -> None:
    """The wire form of 33_250_000 nano-USD is the double 0.03325."""
    assert nanos_to_usd(33_250_000) == 0.03325
    assert nanos_to_decimal(33_250_000) == Decimal("0.03325")


@pytest.mark.parametrize(
    "value",
    [
        -0.01,
        -1,
        math.nan,
        math.inf,
        -math.inf,
        True,
        False,
        "0.1",
        None,
        [0.1],
        Decimal("0.1"),
        1e300,
        10**40,
    ],
)
def test_usd_wire_to_nanos_rejects_non_amounts(value: object) -> None:
    """Anything but a finite number >= 0 that fits in nano-USD reads as None, never raises."""
    assert usd_wire_to_nanos(value) is None


@pytest.mark.parametrize(("value", "nanos"), [(0.1, 100_000_000), (0, 0), (3, 3 * NANOS_PER_USD), (1e-10, 0)])
def test_usd_wire_to_nanos_reads_numbers(value: float, nanos: int) -> None:
    """Ints and finite floats read back to the nearest nano-USD."""
    assert usd_wire_to_nanos(value) == nanos
