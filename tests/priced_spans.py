"""Ended, priced spans handed straight to a cost listener, for the budget and metric tests.

``spend(listener, "s1", {"team.id": "a"}, cost_nanos)`` is what ``CostSpanProcessor`` does for one
priced span: it calls ``listener.on_span_cost(span, cost_nanos)``. The same key always makes a span
with the same trace and span id, i.e. the same span (recorded once).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Protocol

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext, TraceFlags

from otel_costs.conventions import RESERVATION_ID_ATTRIBUTE

#: No resource detection per span (``Resource.create`` reads the environment each time).
EMPTY = Resource.get_empty()


class Listener(Protocol):
    """A ``CostListener``: ``BudgetManager`` or ``CostMetrics``."""

    def on_span_cost(self, span: ReadableSpan, cost_nanos: int) -> ReadableSpan | None: ...


def priced_span(
    key: str, attributes: Mapping[str, Any], *, reservation_id: str | None = None
) -> ReadableSpan:
    """An ended span named after ``key`` whose trace and span ids are derived from ``key``."""
    digest = hashlib.sha256(key.encode()).digest()
    context = SpanContext(
        trace_id=int.from_bytes(digest[:16], "big") or 1,
        span_id=int.from_bytes(digest[16:24], "big") or 1,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    attrs = dict(attributes)
    if reservation_id is not None:
        attrs[RESERVATION_ID_ATTRIBUTE] = reservation_id
    return ReadableSpan(
        name=f"chat {key}", context=context, attributes=attrs, start_time=1, end_time=2, resource=EMPTY
    )


def spend(
    listener: Listener,
    key: str,
    attributes: Mapping[str, Any],
    cost_nanos: int,
    *,
    reservation_id: str | None = None,
) -> tuple[Event, ...]:
    """Hand the listener one priced span; the events its replacement span adds (none: kept as is)."""
    span = priced_span(key, attributes, reservation_id=reservation_id)
    replaced = listener.on_span_cost(span, cost_nanos)
    if replaced is None:
        return ()
    return tuple(replaced.events[len(span.events) :])


def thresholds(events: tuple[Event, ...]) -> list[object]:
    """The ``budget.threshold`` of each threshold event."""
    return [(e.attributes or {}).get("budget.threshold") for e in events]
