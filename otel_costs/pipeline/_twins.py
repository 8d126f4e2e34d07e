"""One model call traced twice: the records and rules ``CostSpanProcessor`` pairs twins with.

Two spans describe one call when two instrumentations trace it (an instrumentation's LLM span and
the HTTP capture span, or two instrumentations side by side), nested, siblings or with a span in
between. The processor holds a call span while a model-call span of the same trace and model is
open, then prices the fuller reading (``fullness``) and marks the other ``duplicate`` with one of
the reasons here; the bounds keep the records small. The rule and its limits are in
``docs/conventions.md`` ("One call traced twice").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, Span

from otel_costs import conventions as conv

#: How many open (started, not ended) model-call spans are tracked; past it the oldest trace's are
#: forgotten (calls paired with them are then priced as they are).
MAX_OPEN_CALLS = 4096
#: How many nested model-call spans may wait for their outer span; past it they are priced at once.
MAX_HELD = 1024
#: A nested span whose outer span has not ended after this many seconds is priced as it is.
HOLD_SECONDS = 60.0
#: How many traces keep the call spans that ended priced in them last (each at most
#: ``ENDED_PER_TRACE``): a call span not known as one at start that overlapped one of them of
#: another instrumentation scope is the same call, already counted.
ENDED_TRACES = 1024
ENDED_PER_TRACE = 8
#: The usage parts whose presence makes one span's usage fuller than another's.
PART_KEYS = (conv.CACHE_READ_KEYS, conv.CACHE_WRITE_KEYS, conv.REASONING_KEYS)
STATUS_RANK = {conv.STATUS_PRICED: 2, conv.STATUS_PARTIAL: 1}
#: The instrumentation scope of ``instrument_httpx``'s spans (``capture/_instrument.py``): its
#: reading is the provider's own usage, so it wins a tie.
CAPTURE_SCOPE = "otel_costs.httpx"
#: A call span waiting for its partner: since when, the span, its attributes, its cost.
HeldSpan = tuple[float, ReadableSpan, dict[str, Any], dict[str, Any]]
#: An open model-call span, as the SDK's live span (its scope and model are read when a span may
#: pair with it: nothing is prepared per call on the common path).
OpenCall = Span
#: A call span that ended priced: its scope name, model, start and end (ns), and the scopes of
#: the spans found to be its twin (``None``: none yet).
EndedCall = list[Any]


RESPONSE_REASON = (
    "this response was already counted on another span of the trace (two instrumentations "
    "traced one call); instrument each call once"
)
ENDED_REASON = (
    "a model-call span that overlapped another of the trace for the same model that ended first "
    "and was counted (two instrumentations traced one call): counted once, on that span"
)
NESTED_REASON = (
    "a model-call span nested in or overlapping another of the trace for the same model (two "
    "instrumentations traced one call): counted once, on the span with the fuller usage"
)


def mark_duplicate(extra: dict[str, Any], reason: str = RESPONSE_REASON) -> dict[str, Any]:
    """``extra`` with the attributes of a call already counted on another span; ``extra`` itself."""
    extra[conv.COST_CURRENCY] = conv.CURRENCY_USD
    extra[conv.COST_STATUS] = conv.STATUS_DUPLICATE
    extra[conv.COST_STATUS_REASON] = reason
    return extra


def model_of(attributes: Mapping[str, Any]) -> object:
    for key in conv.MODEL_KEYS:
        value = attributes.get(key)
        if value is not None:
            return value
    return None


def scope_name(span: ReadableSpan) -> str | None:
    scope = span.instrumentation_scope
    return scope.name if scope is not None else None


def is_capture(span: ReadableSpan) -> bool:
    scope = span.instrumentation_scope
    return scope is not None and scope.name == CAPTURE_SCOPE


def fullness(attributes: Mapping[str, Any], costed: Mapping[str, Any]) -> tuple[int, int]:
    """How complete a span's reading of one call is: its status (priced > partial > other), then
    how many usage parts (cache read, cache write, reasoning) it reports."""
    parts = 0
    for keys in PART_KEYS:
        if any(attributes.get(key) for key in keys):
            parts += 1
    status = costed.get(conv.COST_STATUS)
    return (STATUS_RANK.get(status, 0) if isinstance(status, str) else 0), parts
