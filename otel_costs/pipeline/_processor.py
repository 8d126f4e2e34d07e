"""``CostSpanProcessor``: attribute spans as they start, price LLM calls as they end."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Protocol

from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context, get_current
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

from otel_costs import conventions as conv
from otel_costs.pipeline._spans import annotated, attributes_dict, with_attributes
from otel_costs.pricing._book import PriceBook
from otel_costs.pricing._results import CostBreakdown, write_breakdown
from otel_costs.pricing._usage import (
    USAGE_OR_CALL_KEYS,
    Counts,
    LlmCall,
    TokenUsage,
    UsageReading,
    billable_counts,
    read_usage,
)

logger = logging.getLogger("otel_costs")

#: Called with each billable span (already carrying its cost attributes) and its direct cost
#: in nano-USD (0 when it could not be priced). Budgets and cost metrics hang off this.
CostListener = Callable[[ReadableSpan, int], None]


class SpendRecorder(Protocol):
    """Records each billable span's cost, e.g. ``BudgetManager``; may hand back an annotated copy."""

    def record_ended_span(self, span: ReadableSpan, cost_nanos: int) -> ReadableSpan:
        """Record ``cost_nanos`` for ``span``; return the span to hand on (with any events added)."""
        ...


#: Baggage values longer than this are not copied onto spans (they are ids, not payloads).
DEFAULT_MAX_VALUE_LENGTH = 256
_MAX_RETRY_DEPTH = 10_000
#: How many (trace, response id) pairs are remembered to catch one call traced twice.
_SEEN_RESPONSES = 4096
#: How many distinct baggage contents keep their prepared span attributes.
_ATTRIBUTION_CACHE = 1024
#: Prepared attribution of one baggage content: the span attributes to add (the rejected keys
#: included), and the length of their longest string (-1: add them through ``set_attributes``).
_Additions = tuple[dict[str, Any], int]
_NOTHING: _Additions = ({}, -1)


class CostSpanProcessor(SpanProcessor):
    """Wraps the next processor: copies attribution baggage onto spans and prices LLM calls.

    On start, the baggage keys in ``baggage_keys`` (default: the attribution table of
    ``docs/conventions.md``) are copied onto the span as attributes. On end, a span carrying
    token usage gets ``cost.direct`` (USD), its exact ``cost.direct_nanos``, a breakdown,
    ``cost.status`` and what priced it, and the costed copy is handed to ``next_processor``.
    Aggregate usage on agent/workflow/tool spans is marked, never priced. Each billable span's
    cost goes to ``budgets`` (exactly once per span; threshold events land on the exported
    span) and to every ``cost_listeners`` callable.

    Example::

        provider.add_span_processor(
            CostSpanProcessor(BatchSpanProcessor(CostRollupExporter(OTLPSpanExporter())))
        )
    """

    def __init__(
        self,
        next_processor: SpanProcessor,
        *,
        price_book: PriceBook | None = None,
        baggage_keys: Mapping[str, str] | None = None,
        cost_listeners: Sequence[CostListener] = (),
        budgets: SpendRecorder | None = None,
        max_value_length: int = DEFAULT_MAX_VALUE_LENGTH,
    ) -> None:
        if not isinstance(next_processor, SpanProcessor):
            raise TypeError(
                f"next_processor must be a SpanProcessor (e.g. BatchSpanProcessor), got {next_processor!r}"
            )
        if max_value_length < 1:
            raise ValueError(f"max_value_length must be >= 1, got {max_value_length}")
        self._next = next_processor
        self._price_book = price_book if price_book is not None else PriceBook()
        self._baggage_keys = dict(conv.BAGGAGE_TO_ATTRIBUTE if baggage_keys is None else baggage_keys)
        self._listeners = tuple(cost_listeners)
        self._budgets = budgets
        self._seen: OrderedDict[tuple[int, str], None] = OrderedDict()
        self._seen_lock = threading.Lock()
        self._max_value_length = max_value_length
        self._attribution_cache: dict[tuple[tuple[str, object], ...], _Additions] = {}
        self._attribution_lock = threading.Lock()
        #: The baggage content seen last and its additions, recognised by one dict comparison.
        self._last_attribution: tuple[dict[str, object], _Additions] = ({}, _NOTHING)
        book = self._price_book
        # The SDK calls ``_on_ending`` (its experimental "OnEnding" hook) on every span: hand it
        # straight to the next processor, at no cost of ours per span.
        self._on_ending = next_processor._on_ending  # type: ignore[method-assign]
        #: The one pricing entry of a PriceBook (which asks a subclass's own price()).
        self._cost_attributes = book._cost_attributes if isinstance(book, PriceBook) else None

    @property
    def price_book(self) -> PriceBook:
        """The price book that prices this processor's spans."""
        return self._price_book

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            if _BAGGAGE_KEY is not None:
                context = parent_context if parent_context is not None else _current_context()
                entries = context.get(_BAGGAGE_KEY)
                if type(entries) is not dict:
                    entries = None  # what baggage.get_all() reads as no baggage
            else:
                entries = baggage.get_all(parent_context)
            if entries:
                # The common case, many spans in a row under one workflow step: one comparison.
                last_entries, additions = self._last_attribution
                try:
                    same = entries == last_entries
                except Exception:
                    same = False  # a baggage value that cannot be compared
                if not same:
                    additions = self._additions(entries)
                attributes, longest = additions
                if attributes:
                    _add_attributes(span, attributes, longest, True)
        except Exception:
            logger.exception("otel_costs: could not attribute span %r", getattr(span, "name", span))
        self._next.on_start(span, parent_context)

    def _additions(self, entries: Mapping[str, object]) -> _Additions:
        """The prepared attribution of the baggage ``entries``, computed once per baggage content.

        Every span started in one workflow step sees the same baggage: validating it once and
        reusing the result leaves one attribute update per span.
        """
        try:
            key = tuple(entries.items())
            found = self._attribution_cache.get(key)
        except Exception:
            # A baggage value that cannot be compared or be a dict key: prepare it for this span only.
            return self._prepare(entries)
        if found is None:
            found = self._prepare(entries)
            with self._attribution_lock:
                if len(self._attribution_cache) >= _ATTRIBUTION_CACHE:
                    self._attribution_cache.pop(next(iter(self._attribution_cache)))
                self._attribution_cache[key] = found
        self._last_attribution = (dict(key), found)
        return found

    def _prepare(self, entries: Mapping[str, object]) -> _Additions:
        attributes, rejected = self._attribution(entries)
        if not attributes and not rejected:
            return _NOTHING
        additions: dict[str, Any] = dict(attributes)
        longest = 0
        for key, value in attributes.items():
            if not isinstance(key, str) or not key:
                longest = -1  # an odd attribute name from baggage_keys: let the SDK judge it
                break
            if isinstance(value, str):
                longest = max(longest, len(value))
        if rejected:
            # The SDK stores a list attribute as a tuple: store what it would.
            additions[conv.ATTRIBUTION_REJECTED] = tuple(rejected)
            if longest >= 0:
                if all(type(key) is str for key in rejected):
                    longest = max(longest, *map(len, rejected))
                else:
                    longest = -1  # odd keys from baggage_keys: let the SDK clean them
        return additions, longest

    def _attribution(self, entries: Mapping[str, object]) -> tuple[dict[str, Any], list[str]]:
        """The span attributes for the baggage ``entries``, and the keys rejected as malformed."""
        attributes: dict[str, Any] = {}
        rejected: list[str] = []
        for key, value in entries.items():
            attribute = self._baggage_keys.get(key)
            if attribute is None:
                continue
            if not isinstance(value, str) or not value or len(value) > self._max_value_length:
                rejected.append(key)
                continue
            if attribute == conv.RETRY_DEPTH:
                depth = _parse_depth(value)
                if depth is None:
                    rejected.append(key)
                    continue
                attributes[attribute] = depth
            else:
                attributes[attribute] = value
        return attributes, rejected

    def on_end(self, span: ReadableSpan) -> None:
        try:
            # The plain dict under the attributes of a span the SDK ended: ``span.attributes`` is
            # a read-only proxy over its BoundedAttributes, whose iteration is Python code, and
            # testing and copying the dict inside costs a fifth as much. The span has ended, so
            # nothing writes to it. Private fields of the SDK: any other span type or layout is
            # read through ``attributes``.
            raw: object = span.__dict__.get("_attributes") if type(span) is ReadableSpan else None
            if type(raw) is BoundedAttributes:
                raw = raw.__dict__.get("_dict")
            if type(raw) is dict:
                # Most spans carry no LLM usage: one set test over their keys says so.
                if not USAGE_OR_CALL_KEYS.isdisjoint(raw):
                    span = self._priced(span, raw)
            else:
                span = self._priced_any(span)
        except Exception:
            logger.exception("otel_costs: could not price span %r", span.name)
        self._next.on_end(span)

    def _priced_any(self, span: ReadableSpan) -> ReadableSpan:
        """``on_end``'s pricing of a span of another type, read through its ``attributes``."""
        attributes = span.attributes
        if not attributes:
            return span
        try:
            own = None if USAGE_OR_CALL_KEYS.isdisjoint(attributes) else attributes_dict(attributes)
        except Exception:
            # Unreadable attributes: read_usage reads (and flags) the attributes themselves.
            reading = read_usage(attributes)
            if reading is None:
                return span
            span, cost, counted = self._costed(span, reading, None)
            return self._notify(span, cost) if counted else span
        return span if own is None else self._priced(span, own)

    def _priced(self, span: ReadableSpan, attributes: dict[str, Any]) -> ReadableSpan:
        """The costed copy of ``span``, which carries usage (handed to budgets and listeners), or
        ``span`` itself when its usage needs no attributes. ``attributes``: the span's, as a
        plain dict that is only read."""
        if self._cost_attributes is not None:
            costed = self._cost_attributes(attributes, span.start_time)  # never raises
            if costed is None:
                return span  # no usage, no model call
            if costed.get(conv.COST_STATUS) == conv.STATUS_AGGREGATE:
                return annotated(span, costed)
            response_id = attributes.get(conv.GEN_AI_RESPONSE_ID)
            if response_id is not None and self._already_counted(span, response_id):
                return annotated(span, _mark_duplicate(dict(attributes)))
            span = annotated(span, costed)
            if self._budgets is None and not self._listeners:
                return span
            return self._notify(span, costed.get(conv.COST_DIRECT_NANOS, 0))
        own = dict(attributes)  # read from, and then the costed copy's own attributes
        fields = billable_counts(own)
        if fields is not None:
            return self._costed_call(span, own, *fields)
        reading = read_usage(own)
        if reading is None:
            return span
        span, cost, counted = self._costed(span, reading, own)
        return self._notify(span, cost) if counted else span

    def _costed_call(
        self,
        span: ReadableSpan,
        own: dict[str, Any],
        model: str | None,
        provider: str | None,
        server: str | None,
        counts: Counts,
    ) -> ReadableSpan:
        """``_costed`` of a span that ``read_usage`` reads as billable, from ``billable_counts``:
        the costed copy, handed to budgets and listeners unless it is a duplicate."""
        response_id = own.get(conv.GEN_AI_RESPONSE_ID)
        if response_id is not None and self._already_counted(span, response_id):
            return annotated(span, _mark_duplicate(own))
        extra = {conv.COST_CURRENCY: conv.CURRENCY_USD}
        nanos = self._price_into(extra, span, LlmCall(model, provider, server, TokenUsage(*counts)))
        if own.get(conv.COST_STATUS) == conv.STATUS_PARTIAL:
            extra[conv.COST_STATUS] = conv.STATUS_PARTIAL
        own.update(extra)
        return self._notify(annotated(span, own), nanos)

    def _costed(
        self, span: ReadableSpan, reading: UsageReading, own: dict[str, Any] | None
    ) -> tuple[ReadableSpan, int, bool]:
        """A copy of ``span`` with its cost attributes, its direct cost in nano-USD, and whether it
        counts as a billable call (not an aggregate, not a call already counted).

        ``own`` is a plain copy of the span's attributes that the costed copy may take over, or
        ``None`` when they could not be copied."""
        attributes: Mapping[str, object] = own if own is not None else (span.attributes or {})
        extra: dict[str, Any] = {conv.COST_CURRENCY: conv.CURRENCY_USD}
        nanos = 0
        if reading.kind != "aggregate" and self._already_counted(
            span, attributes.get(conv.GEN_AI_RESPONSE_ID)
        ):
            _mark_duplicate(extra)
            return _with_extra(span, own, extra), 0, False
        if reading.kind == "aggregate":
            extra[conv.COST_STATUS] = conv.STATUS_AGGREGATE
            extra[conv.COST_STATUS_REASON] = reading.reason or "aggregate usage of child calls"
        elif reading.kind == "missing":
            extra[conv.COST_STATUS] = conv.STATUS_UNPRICED
            extra[conv.COST_STATUS_REASON] = reading.reason or "no token usage reported"
        elif reading.kind == "invalid" or reading.call is None:
            extra[conv.COST_STATUS] = conv.STATUS_INVALID_USAGE
            extra[conv.COST_STATUS_REASON] = reading.reason or "unreadable usage"
        else:
            nanos = self._price_into(extra, span, reading.call)
            if attributes.get(conv.COST_STATUS) == conv.STATUS_PARTIAL:
                # The capture layer saw only part of the usage (e.g. a stream closed early):
                # what was seen is priced, and the span stays flagged as a lower bound.
                extra[conv.COST_STATUS] = conv.STATUS_PARTIAL
        return _with_extra(span, own, extra), nanos, reading.kind != "aggregate"

    def _price_into(self, extra: dict[str, Any], span: ReadableSpan, call: LlmCall) -> int:
        """Price ``call`` with the price book, add the outcome to ``extra``; the cost in nano-USD."""
        priced: dict[str, Any] = {}
        try:
            cost = self._price_book.price(call, at=_start_time(span))
            nanos = _publish(cost, priced)
        except Exception as exc:
            # PriceBook.price never raises, but a subclass or another book might: the span
            # must still say it carries usage that was not priced, never pass as $0.
            logger.exception("otel_costs: price book %r raised", self._price_book)
            nanos = 0
            priced = {
                conv.COST_STATUS: conv.STATUS_UNPRICED,
                conv.COST_STATUS_REASON: f"price book raised {type(exc).__name__}: {exc}"[:256],
            }
        extra.update(priced)
        return nanos

    def _already_counted(self, span: ReadableSpan, response_id: object) -> bool:
        """True if a span of the same trace with the same ``gen_ai.response.id`` was seen before."""
        ctx = span.context
        if not isinstance(response_id, str) or not response_id or ctx is None:
            return False
        key = (ctx.trace_id, response_id)
        with self._seen_lock:
            if key in self._seen:
                return True
            self._seen[key] = None
            if len(self._seen) > _SEEN_RESPONSES:
                self._seen.popitem(last=False)
        return False

    def _notify(self, span: ReadableSpan, nanos: int) -> ReadableSpan:
        """Hand the span's cost to the budgets and listeners; the span to pass on."""
        if self._budgets is None and not self._listeners:
            return span
        if self._budgets is not None:
            try:
                span = self._budgets.record_ended_span(span, nanos)
            except Exception:
                logger.exception("otel_costs: budgets could not record span %r", span.name)
        for listener in self._listeners:
            try:
                listener(span, nanos)
            except Exception:
                logger.exception("otel_costs: cost listener %r failed", listener)
        return span

    def shutdown(self) -> None:
        self._next.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        flushed = self._next.force_flush(timeout_millis)
        # The SDK's Simple/BatchSpanProcessor never flush their exporter, so a CostRollupExporter
        # behind them would keep its buffered traces until ``linger``: flush it too.
        exporter = getattr(self._next, "span_exporter", None)
        if isinstance(exporter, SpanExporter):
            try:
                flushed = exporter.force_flush(timeout_millis) and flushed
            except Exception:
                logger.exception("otel_costs: force_flush of %r failed", exporter)
                return False
        return flushed


def _publish(cost: CostBreakdown, extra: dict[str, Any]) -> int:
    """Fill ``extra`` with the attributes of ``cost``; return the direct cost in nano-USD."""
    return write_breakdown(extra, cost)


def _mark_duplicate(extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` with the attributes of a call already counted on another span; ``extra`` itself."""
    extra[conv.COST_CURRENCY] = conv.CURRENCY_USD
    extra[conv.COST_STATUS] = conv.STATUS_DUPLICATE
    extra[conv.COST_STATUS_REASON] = (
        "this response was already counted on another span of the trace (two instrumentations "
        "traced one call); instrument each call once"
    )
    return extra


def _with_extra(span: ReadableSpan, own: dict[str, Any] | None, extra: dict[str, Any]) -> ReadableSpan:
    """The copy of ``span`` with ``extra`` added, taking over ``own`` (its attributes) if given."""
    if own is None:
        return with_attributes(span, extra)
    own.update(extra)
    return annotated(span, own)


#: The SDK's span classes (its tracer creates the private ``_Span``): another span type, which
#: may keep or check its attributes its own way, is always updated through ``set_attributes``.
_SDK_SPANS = (Span, getattr(sdk_trace, "_Span", Span))


def _baggage_key() -> str | None:
    """The context key under which the API keeps the baggage dict, if this API version does.

    ``baggage.get_all()`` is four calls and a read-only proxy around one context lookup; on
    every span start that was a fifth of what attribution costs. The key is private, so it is
    used only if this probe shows the API's layout (the baggage as a plain ``dict``).
    """
    key = getattr(baggage, "_BAGGAGE_KEY", None)
    if not isinstance(key, str):
        return None
    try:
        context = baggage.set_baggage("otel_costs.probe", "1", Context())
        found = context.get(key)
        if type(found) is dict and found == dict(baggage.get_all(context)) == {"otel_costs.probe": "1"}:
            return key
    except Exception:
        logger.debug("otel_costs: reading baggage through baggage.get_all()", exc_info=True)
    return None


_BAGGAGE_KEY = _baggage_key()


def _context_reader() -> Callable[[], Context]:
    """``opentelemetry.context.get_current``, or the ``ContextVar.get`` it ends in.

    ``get_current()`` is two Python calls around the runtime context's ``ContextVar``: on every
    span start that was a tenth of what attribution costs. The variable is private, so it is
    read directly only if the default contextvars runtime context is in use and returns the
    same context; otherwise through ``get_current``.
    """
    try:
        runtime = otel_context._RUNTIME_CONTEXT
        variable = (
            runtime.__dict__.get("_current_context") if type(runtime) is ContextVarsRuntimeContext else None
        )
        if isinstance(variable, ContextVar) and variable.get() is get_current():
            read: Callable[[], Context] = variable.get
            return read
    except Exception:
        logger.debug("otel_costs: reading the context through get_current()", exc_info=True)
    return get_current


_current_context = _context_reader()


def _add_attributes(span: Span, attributes: dict[str, Any], longest: int, starting: bool = False) -> None:
    """``span.set_attributes(attributes)``, for attributes already validated by ``_prepare``.

    ``set_attributes`` re-validates every value (``_clean_attribute_value``), about 1 µs per
    attribute: 3 µs for a workflow's three baggage entries, the whole budget of the plain-span
    target (docs/performance.md). The values here are already what that validation returns
    (non-empty str keys; str, int or tuple-of-str values no longer than ``longest``), so on the
    SDK's own span, when its limits cannot drop or truncate anything, they are stored directly,
    as ``BoundedAttributes`` would, under the same two locks in the same order as
    ``Span.set_attributes``; without them when ``starting`` (``on_start``: the span is not
    returned to anyone yet, so no other thread can touch it, and the locks were a third of
    attribution's cost). This reads private fields of the SDK's ``Span`` and
    ``BoundedAttributes``: a missing field (another SDK layout), a limit that could drop or
    truncate, or an ended span, and it goes through ``set_attributes`` (which then warns or
    drops exactly as it always did).
    """
    bounded = getattr(span, "_attributes", None) if longest >= 0 and type(span) in _SDK_SPANS else None
    if type(bounded) is BoundedAttributes:
        try:
            stored = bounded._dict
            maxlen = bounded.maxlen
            max_value_len = bounded.max_value_len
            if (
                bounded._immutable is False
                and (maxlen is None or len(stored) + len(attributes) <= maxlen)
                and (max_value_len is None or longest <= max_value_len)
            ):
                if starting:
                    if span._end_time is None:
                        if stored and not stored.keys().isdisjoint(attributes):
                            _merge(stored, attributes)  # an instrumentation's start attribute set again
                        else:
                            stored.update(attributes)
                        return
                else:
                    with span._lock, bounded._lock:
                        if span._end_time is None:
                            _merge(stored, attributes)
                            return
        except AttributeError:
            pass  # another SDK layout
    span.set_attributes(attributes)


def _merge(stored: dict[str, Any], attributes: dict[str, Any]) -> None:
    if stored and not stored.keys().isdisjoint(attributes):
        # A key set again moves to the end, as BoundedAttributes does it.
        for key in attributes:
            stored.pop(key, None)
    stored.update(attributes)


def _start_time(span: ReadableSpan) -> datetime | None:
    start = span.start_time
    return datetime.fromtimestamp(start / 1e9, tz=UTC) if start else None


def _parse_depth(value: str) -> int | None:
    # isascii(): str.isdigit() is also true for "²" or "١٢", which int() rejects or reads as 12.
    if not (value.isascii() and value.isdigit()) or len(value) > 5:
        return None
    depth = int(value)
    return depth if depth <= _MAX_RETRY_DEPTH else None
