"""``CostSpanProcessor``: attribute spans as they start, price LLM calls as they end.

Its ``on_end`` is the whole per-span path, readable top to bottom: read the ended span's
attributes; skip spans without LLM usage; ask the price book for the cost attributes (its one
entry, ``PriceBook._cost_attributes``); flag a call already counted; copy the span with them
(``pipeline/_spans.py``); hand the copy to each ``CostListener``; pass it on. Also home of the
``CostListener`` protocol, the one way to listen to priced spans.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

from otel_costs import conventions as conv
from otel_costs._kinds import MARKER_KEYS, is_model_call, span_kind
from otel_costs._sdk import (
    EndedCallFields,
    baggage_entries,
    ended_attributes,
    ended_call,
    forward_on_ending,
    set_validated_attributes,
    span_ids,
    started_attributes,
)
from otel_costs.pipeline._spans import annotated, attributes_dict, readable_attributes
from otel_costs.pipeline._twins import (
    ENDED_REASON,
    HOLD_SECONDS,
    MAX_HELD,
    MAX_OPEN_CALLS,
    HeldSpan,
    Twins,
    mark_duplicate,
    resolve,
)
from otel_costs.pricing._results import attribute_count_limit, flag_evicted
from otel_costs.pricing._usage import USAGE_OR_CALL_KEYS

#: Keys of a span that may be a model call or carry usage: others skip pricing at once.
_PRICE_KEYS = USAGE_OR_CALL_KEYS | MARKER_KEYS

if TYPE_CHECKING:
    from otel_costs.pricing._book import PriceBook

logger = logging.getLogger("otel_costs")


@runtime_checkable
class CostListener(Protocol):
    """Listens to priced spans: budgets (``BudgetManager``), cost metrics (``CostMetrics``), yours.

    Example::

        class Log:
            def on_span_cost(self, span, cost_nanos):
                print(span.name, cost_nanos)

        CostSpanProcessor(next_processor, listeners=[Log()])
    """

    def on_span_cost(self, span: ReadableSpan, cost_nanos: int) -> ReadableSpan | None:
        """Called once per priced span (``cost_nanos`` = its ``cost.direct_nanos``; 0 when it was
        priced at zero or could not be priced), after pricing, before the span goes to the next
        processor. Return a replacement span (e.g. with added events) or ``None`` to keep it.
        Exceptions are caught and logged by the processor."""
        ...


#: Baggage values longer than this are not copied onto spans (they are ids, not payloads).
DEFAULT_MAX_VALUE_LENGTH = 256
_MAX_RETRY_DEPTH = 10_000
#: How many (trace, response id) pairs are remembered at least to catch one call traced twice;
#: past it by ``_SEEN_BATCH`` the oldest ``_SEEN_BATCH`` are forgotten at once.
_SEEN_RESPONSES = 4096
_SEEN_BATCH = 1024
#: How many distinct baggage contents keep their prepared span attributes.
_ATTRIBUTION_CACHE = 1024
#: Prepared attribution of one baggage content: the span attributes to add (the rejected keys
#: included), and the length of their longest string (-1: add them through ``set_attributes``).
_Additions = tuple[dict[str, Any], int]
_NOTHING: _Additions = ({}, -1)
_PRICED = conv.STATUS_PRICED
_AGGREGATE = conv.STATUS_AGGREGATE
_UNPRICED = conv.STATUS_UNPRICED
_STATUS = conv.COST_STATUS
_RESPONSE_ID = conv.GEN_AI_RESPONSE_ID
_MODEL_CALL = conv.KIND_MODEL_CALL
_OPERATION = conv.GEN_AI_OPERATION_NAME
#: ``gen_ai.operation.name`` values of a model call: the common case, tested inline in ``on_start``.
_CALL_OPERATIONS = conv.LLM_OPERATIONS


#: ``_alone``'s answers: the ended span was not tracked from its start / it was.
_UNTRACKED = 1
_TRACKED = 2


class CostSpanProcessor(SpanProcessor):
    """Wraps the next processor: copies attribution baggage onto spans and prices LLM calls.

    On start, the baggage keys in ``baggage_keys`` (default: the attribution table of
    ``docs/conventions.md``) are copied onto the span as attributes. On end, a span carrying
    token usage gets ``cost.direct`` (USD), its exact ``cost.direct_nanos``, a breakdown,
    ``cost.status`` and what priced it, and the costed copy is handed to ``next_processor``.
    Aggregate usage on agent/workflow/tool spans is marked, never priced. Each billable span
    (not aggregate, not a call already counted on another span) goes to every listener in
    ``listeners`` (``CostListener``: e.g. a ``BudgetManager``, whose threshold events then land
    on the exported span, or ``CostMetrics``), exactly once per span, in order. One call traced
    twice is counted once: by ``gen_ai.response.id`` within a trace, and by structure: a model-call
    span that ends while another of its trace for the same model is open (its parent, or one of
    another instrumentation scope not yet paired with this one's) is held until that one ends,
    then the fuller reading is priced and the other marked ``duplicate`` (at most ``MAX_HELD``
    held, each for at most ``HOLD_SECONDS``; ``force_flush`` and ``shutdown`` release them).

    Example::

        provider.add_span_processor(
            CostSpanProcessor(BatchSpanProcessor(CostRollupExporter(OTLPSpanExporter())), listeners=[budgets])
        )
    """

    def __init__(
        self,
        next_processor: SpanProcessor,
        *,
        price_book: PriceBook | None = None,
        listeners: Sequence[CostListener] = (),
        baggage_keys: Mapping[str, str] | None = None,
        max_value_length: int = DEFAULT_MAX_VALUE_LENGTH,
    ) -> None:
        if not isinstance(next_processor, SpanProcessor):
            raise TypeError(
                f"next_processor must be a SpanProcessor (e.g. BatchSpanProcessor), got {next_processor!r}"
            )
        if max_value_length < 1:
            raise ValueError(f"max_value_length must be >= 1, got {max_value_length}")
        for listener in listeners:
            if not callable(getattr(listener, "on_span_cost", None)):
                raise TypeError(
                    f"each listener must have an on_span_cost(span, cost_nanos) method (a CostListener, "
                    f"e.g. a BudgetManager or CostMetrics), got {listener!r}"
                )
        self._next = next_processor
        if price_book is None:
            # Imported here: importing otel_costs.pipeline loads no price data.
            from otel_costs.pricing._book import PriceBook

            price_book = PriceBook()
        self._price_book = price_book
        #: The bound ``on_span_cost`` of each listener, looked up once.
        self._listeners = tuple(listener.on_span_cost for listener in listeners)
        self._baggage_keys = dict(conv.BAGGAGE_TO_ATTRIBUTE if baggage_keys is None else baggage_keys)
        #: Response ids counted, by (trace id, id), oldest first (a dict keeps insertion order).
        self._seen: dict[tuple[int, str], object] = {}
        self._seen_lock = threading.Lock()
        #: Attributes an ended span has when the SDK's limit may have evicted some: below it,
        #: ``dropped_attributes`` is not even read (the env limit; a smaller one set in code is missed).
        self._attribute_limit = attribute_count_limit()
        #: The exactly-once bookkeeping (``pipeline/_twins.py``); its open-call table and held
        #: spans bound here too, for the hot path's one attribute read each.
        self._twins = twins = Twins()
        self._open = twins.open
        self._twins_lock = twins.lock
        self._holding = twins.holding
        self._max_value_length = max_value_length
        self._attribution_cache: dict[tuple[tuple[str, object], ...], _Additions] = {}
        self._attribution_lock = threading.Lock()
        #: The baggage content seen last and its additions, recognised by one dict comparison.
        self._last_attribution: tuple[dict[str, object], _Additions] = ({}, _NOTHING)
        # The SDK calls ``_on_ending`` (its experimental "OnEnding" hook) on every span: hand it
        # straight to the next processor, at no cost of ours per span.
        forward_on_ending(self, next_processor)

    @property
    def price_book(self) -> PriceBook:
        """The price book that prices this processor's spans."""
        return self._price_book

    # --- on start: attribution ------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        started: Mapping[str, object] | None
        try:
            entries = baggage_entries(parent_context)
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
                started = set_validated_attributes(span, attributes, longest, True) if attributes else None
            else:
                started = None
            # An open model-call span is tracked until it ends: a call span that ends meanwhile in
            # its trace may be the same call traced twice (``Twins.pair``).
            if started is None:
                started = started_attributes(span)
            # Most spans carry no kind marker at start: one set test over their keys says so; a
            # call in the GenAI names is then settled by its operation.
            if (
                started
                and not MARKER_KEYS.isdisjoint(started)
                and (
                    (type(operation := started.get(_OPERATION)) is str and operation in _CALL_OPERATIONS)
                    or span_kind(started) == _MODEL_CALL
                )
            ):
                # Tracked as (span id, span), with one C-level setdefault and no lock, while it is
                # its trace's only open call (the common case); ``Twins.add`` builds the rest.
                opened = self._open
                if len(opened) + self._twins.extra >= MAX_OPEN_CALLS:
                    self._twins.evict()  # spans that never ended: forget the oldest trace's
                ids = span_ids(span)
                if ids is not None:
                    cell = (ids[1], span)
                    if opened.setdefault(ids[0], cell) is not cell:
                        self._twins.add(ids[0], cell)
        except Exception:
            logger.exception("otel_costs: could not attribute span %r", getattr(span, "name", span))
        self._next.on_start(span, parent_context)

    @property
    def _open_count(self) -> int:
        """How many model-call spans are tracked as open (for the bound's test)."""
        return self._twins.open_count

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

    # --- on end: pricing -------------------------------------------------------------------

    def on_end(self, span: ReadableSpan) -> None:
        try:
            # The plain dict under an SDK span's attributes (only read), else a copy of them.
            attributes = ended_attributes(span)
            if attributes is None:
                attributes = attributes_dict(span.attributes)
            # Most spans carry no LLM usage: one set test over their keys says so.
            if not _PRICE_KEYS.isdisjoint(attributes):
                alone = 0
                # Its ids, parent, scope and times, read once: the bookkeeping below needs them.
                fields = ended_call(span)
                if not self._holding:
                    # No span held: is this one alone in its trace (no other model call open)?
                    opened = self._open
                    if fields is None:
                        alone = 0 if opened else _UNTRACKED  # no context: left to _ended_call
                    else:
                        entry = opened.get(fields[0])
                        if entry is None:
                            alone = _UNTRACKED
                        elif type(entry) is tuple and entry[0] == fields[1]:
                            # The trace's only open call ends: untracked under the lock (a present
                            # entry only changes under it: ``Twins``), taken inline, the hot path.
                            lock = self._twins_lock
                            lock.acquire()
                            try:
                                if opened.get(fields[0]) is entry:
                                    del opened[fields[0]]
                                    alone = _TRACKED
                                    if self._twins.paired:
                                        self._twins.paired.pop(fields[1], None)
                            finally:
                                lock.release()
                if not alone:
                    ended = self._ended_call(span, attributes)
                    if ended is None:
                        return  # held: paired with an open model-call span, handed on when that ends
                    span = ended[-1]
                    for out in ended[:-1]:
                        self._next.on_end(out)
                else:
                    # The common path: no other model-call span open in the trace (``fields`` is
                    # not None here unless the span has no context, then it is untracked). A root
                    # has no sibling that ended before it.
                    if (
                        alone == _UNTRACKED
                        and self._twins.ended
                        and (span.parent if fields is None else fields[2]) is not None
                        and self._twins.ended_twin(span, attributes)
                    ):
                        span = annotated(span, mark_duplicate(dict(attributes), ENDED_REASON))
                    else:
                        # ``_costed`` without held spans and ``_cost`` inline (one status read).
                        try:
                            # The span as its start time: read only if the price depends on the date.
                            costed = self._price_book._cost_attributes(attributes, span)
                            status = costed.get(_STATUS) if costed else None
                            # Not priced, and over the SDK's attribute limit: usage may have been evicted.
                            if costed and status != _PRICED and span.dropped_attributes:
                                costed = flag_evicted(attributes, costed, span.dropped_attributes)
                                status = costed.get(_STATUS) if costed else None
                        except Exception as exc:
                            # A span with usage must still say it was not priced, never pass as $0.
                            logger.exception("otel_costs: price book %r raised", self._price_book)
                            costed = _unpriced(attributes, exc)
                            status = _UNPRICED
                        if costed is not None:
                            span = (
                                annotated(span, costed)  # the usage of child calls: marked, never counted
                                if status == _AGGREGATE
                                else self._finish(span, attributes, costed, fields, alone == _TRACKED)
                            )
            elif len(attributes) >= self._attribute_limit and span.dropped_attributes:
                # Over the SDK's attribute count limit (the oldest keys, usage and kind marker
                # first, are evicted): a GenAI span still says why it has no cost.
                span = self._evicted(span, attributes)
        except Exception:
            logger.exception("otel_costs: could not price span %r", span.name)
        self._next.on_end(span)

    def _ended_call(self, span: ReadableSpan, attributes: dict[str, Any]) -> list[ReadableSpan] | None:
        """The spans to hand on now that ``span`` (with usage or a call marker) ended while model-call
        spans are open or held: itself costed last, after the call spans paired with it and any held
        span released by age; ``None`` when ``span`` itself is held for an open partner."""
        ctx = span.context
        if ctx is None:
            return [self._costed(span, attributes, ())]
        twins = self._twins
        held: list[HeldSpan] | None = None
        others = registered = False
        if twins.open or twins.holding:
            registered, others, held = twins.close(ctx.trace_id, ctx.span_id)
        out = self._release_stale() if twins.held_count else []
        if held:
            out.append(self._costed(span, attributes, held))
            return out
        if not is_model_call(attributes):
            out.append(self._costed(span, attributes, ()))
            return out
        costed = self._cost(span, attributes)
        if costed is not None and costed.get(conv.COST_STATUS) != conv.STATUS_AGGREGATE:
            if others and twins.pair(span, attributes, costed, MAX_HELD):
                return out or None
            # Not known as a model call when it started (markers set later, as OpenLLMetry's
            # LangChain spans, or a bare capture span), so no twin could have waited for it.
            if not registered and twins.ended_twin(span, attributes):
                out.append(annotated(span, mark_duplicate(dict(attributes), ENDED_REASON)))
                return out
        finished = self._costed(span, attributes, (), costed, True)
        twins.remember(ended_call(finished), readable_attributes(finished))
        out.append(finished)
        return out

    def _costed(
        self,
        span: ReadableSpan,
        attributes: dict[str, Any],
        held: Sequence[HeldSpan],
        costed: dict[str, Any] | None = None,
        known: bool = False,
    ) -> ReadableSpan:
        """The copy of ``span`` (which carries usage; ``attributes`` are its own, only read) to
        hand on: with its cost attributes and whatever the listeners added; or ``span`` itself.
        ``held``: nested call spans that ended inside it, resolved against it first (handed on
        through ``self._next`` here; ``known``: ``costed`` is the price book's answer already)."""
        if costed is None and not known:
            costed = self._cost(span, attributes)
        if costed is None or costed.get(_STATUS) == _AGGREGATE:
            for _, s, a, c in held:
                self._next.on_end(self._finish(s, a, c))
            # Nothing to price (e.g. an agent span without usage), or the usage of child calls:
            # marked, never counted.
            return span if costed is None else annotated(span, costed)
        if held:
            *others, span = resolve(list(held), span, attributes, costed, self._finish, annotated)
            for other in others:
                self._next.on_end(other)
            return span
        return self._finish(span, attributes, costed)

    def _cost(self, span: ReadableSpan, attributes: dict[str, Any]) -> dict[str, Any] | None:
        """The cost attributes of ``span`` (``attributes`` are its own, only read), or ``None``."""
        try:
            costed = self._price_book._cost_attributes(attributes, span)
            # Not priced, and over the SDK's attribute limit: usage may have been evicted.
            if costed and costed.get(_STATUS) != _PRICED and span.dropped_attributes:
                costed = flag_evicted(attributes, costed, span.dropped_attributes)
            return costed
        except Exception as exc:
            # A span with usage must still say it was not priced, never pass as $0.
            logger.exception("otel_costs: price book %r raised", self._price_book)
            return _unpriced(attributes, exc)

    def _evicted(self, span: ReadableSpan, attributes: dict[str, Any]) -> ReadableSpan:
        """``span`` flagged when the SDK's attribute limit evicted its usage and kind marker and
        what is left is a GenAI span's (else ``span`` itself): never left without ``cost.status``."""
        costed = flag_evicted(attributes, None, span.dropped_attributes)
        return span if costed is None else self._costed(span, attributes, (), costed)

    def _finish(
        self,
        span: ReadableSpan,
        attributes: dict[str, Any],
        costed: dict[str, Any],
        fields: EndedCallFields | None = None,
        tracked: bool | None = None,
    ) -> ReadableSpan:
        """The copy of ``span`` to hand on: costed and seen by the listeners, or marked duplicate
        when its ``gen_ai.response.id`` was already counted in the trace (``fields``: its
        ``ended_call``, if read already). ``tracked`` (the common path: not ``None``): a counted
        call span with a parent is also kept for ``Twins.ended_twin``, as a model call if it was
        tracked from its start as one."""
        response_id = attributes.get(_RESPONSE_ID)
        if isinstance(response_id, str) and response_id:
            if fields is None:
                fields = ended_call(span)
            if fields is not None:
                seen = self._seen
                # One C call both tests and records the response (so two threads cannot both
                # count it): the value stored is this call's own key, a new tuple.
                key = (fields[0], response_id)
                if seen.setdefault(key, key) is not key:
                    return annotated(span, mark_duplicate(dict(attributes)))
                if len(seen) > _SEEN_RESPONSES + _SEEN_BATCH:
                    self._forget_responses()
        copy = span = annotated(span, costed)
        if self._listeners:
            nanos = costed.get(conv.COST_DIRECT_NANOS, 0)
            for on_span_cost in self._listeners:
                try:
                    replacement = on_span_cost(span, nanos)
                except Exception:
                    logger.exception(
                        "otel_costs: cost listener %r failed on span %r", on_span_cost, span.name
                    )
                    continue
                if replacement is not None:
                    span = replacement
        if tracked is not None and fields is not None and fields[2] is not None:
            # A root has no sibling to end after it.
            self._twins.remember(fields, costed if span is copy else readable_attributes(span), tracked)
        return span

    def _forget_responses(self) -> None:
        """Forget the oldest ``_SEEN_BATCH`` response ids, once per that many (a batch, not one
        per call: a plain dict's ``setdefault`` is the cheapest test-and-record)."""
        seen = self._seen
        with self._seen_lock:
            if len(seen) > _SEEN_RESPONSES + _SEEN_BATCH:  # not already done by another thread
                # ``list(islice(...))`` is one C loop: no other thread's insert can interleave.
                for key in list(islice(seen, _SEEN_BATCH)):
                    seen.pop(key, None)

    def _release_stale(self, everything: bool = False) -> list[ReadableSpan]:
        """Price the held spans older than ``HOLD_SECONDS`` (all of them: ``everything``) as they are."""
        return [self._finish(s, a, c) for _, s, a, c in self._twins.take_stale(HOLD_SECONDS, everything)]

    def _release_all(self) -> None:
        """Hand on every held nested span, priced as it is (flush, shutdown)."""
        if not self._twins.held_count:
            return
        try:
            for span in self._release_stale(everything=True):
                self._next.on_end(span)
        except Exception:
            logger.exception("otel_costs: could not release held spans")

    def shutdown(self) -> None:
        self._release_all()
        self._next.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self._release_all()
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


def _unpriced(attributes: Mapping[str, Any], exc: Exception) -> dict[str, Any]:
    """A copy of ``attributes`` flagged unpriced because the price book raised ``exc``."""
    flagged = dict(attributes)
    flagged[conv.COST_CURRENCY] = conv.CURRENCY_USD
    flagged[conv.COST_STATUS] = conv.STATUS_UNPRICED
    flagged[conv.COST_STATUS_REASON] = f"price book raised {type(exc).__name__}: {exc}"[:256]
    return flagged


def _parse_depth(value: str) -> int | None:
    # isascii(): str.isdigit() is also true for "²" or "١٢", which int() rejects or reads as 12.
    if not (value.isascii() and value.isdigit()) or len(value) > 5:
        return None
    depth = int(value)
    return depth if depth <= _MAX_RETRY_DEPTH else None
