"""One model call traced twice: the records and rules ``CostSpanProcessor`` pairs twins with.

Two spans describe one call when two instrumentations trace it (an instrumentation's LLM span and
the HTTP capture span, or two instrumentations side by side), nested, siblings or with a span in
between. The processor holds a call span while a model-call span of the same trace and model is
open, then prices the fuller reading (``fullness``) and marks the other ``duplicate`` with one of
the reasons here; the bounds keep the records small. ``Twins`` is that bookkeeping for one
processor (which spans are open, paired, held, ended lately); the processor's hot path reads its
``open`` table directly. The rule and its limits are in ``docs/conventions.md`` ("One call traced
twice").
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, Span
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_costs import conventions as conv
from otel_costs._kinds import is_model_call, same_model
from otel_costs._sdk import EndedCallFields

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
_STATUS = conv.COST_STATUS
_FIRST_MODEL_KEY = conv.MODEL_KEYS[0]
#: The instrumentation scope of ``instrument_httpx``'s spans (``capture/_instrument.py``): its
#: reading is the provider's own usage, so it wins a tie.
CAPTURE_SCOPE = "otel_costs.httpx"
#: A call span waiting for its partner: since when, the span, its attributes, its cost.
HeldSpan = tuple[float, ReadableSpan, dict[str, Any], dict[str, Any]]
#: An open model-call span, as the SDK's live span (its scope and model are read when a span may
#: pair with it: nothing is prepared per call on the common path).
OpenCall = Span
#: The open model-call spans of one trace: ``(span id, span)`` while it is the trace's only one,
#: else a dict of them by span id.
OpenEntry = tuple[int, OpenCall] | dict[int, OpenCall]
#: A call span that ended priced: its instrumentation scope (whose name is read only when a span
#: may be its twin), model, start and end (ns), and the scopes of the spans found to be its twin
#: (``None``: none yet).
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
    return _name(span.instrumentation_scope)


def _name(scope: InstrumentationScope | None) -> str | None:
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


def members(entry: OpenEntry | None) -> dict[int, OpenCall]:
    """The open model-call spans of one trace's ``entry`` in ``Twins.open``, by span id."""
    if entry is None:
        return {}
    if isinstance(entry, dict):
        return entry
    return {entry[0]: entry[1]}


class Twins:
    """One processor's exactly-once bookkeeping: the open model-call spans per trace, the scopes
    paired with each, the spans held for their partner and the call spans that ended lately.

    ``open`` is read and grown by the processor's hot path without the lock: a model-call span
    that starts alone in its trace is stored as ``(span id, span)`` with one ``setdefault`` (a single C call,
    so it cannot interleave with another thread's); everything else that changes ``open`` (a
    second span of a trace, an end, an eviction) holds ``lock``. So a present entry only changes
    under the lock, and the end of a trace's only call (in ``CostSpanProcessor.on_end``) needs
    no more than the lock around one look-up and one delete.
    """

    def __init__(self) -> None:
        #: Open model-call spans by trace id (``OpenEntry``), oldest trace first.
        self.open: dict[int | None, OpenEntry] = {}
        #: How many spans ``open`` holds beyond the first of each trace.
        self.extra = 0
        #: Per open model-call span id, the scopes of the spans already paired with it.
        self.paired: dict[int, set[str | None]] = {}
        #: Call spans that ended priced lately, by trace id (oldest trace first).
        self.ended: OrderedDict[int, deque[EndedCall]] = OrderedDict()
        #: Call spans held, by the span id of the open model-call span they are paired with.
        self.holding: dict[int, list[HeldSpan]] = {}
        self.held_count = 0
        self.lock = threading.Lock()

    @property
    def open_count(self) -> int:
        """How many model-call spans are open (tracked from their start)."""
        return len(self.open) + self.extra

    def evict(self) -> None:
        """Forget the oldest trace's open model-call spans (spans that never ended)."""
        with self.lock:
            try:
                oldest = next(iter(self.open))
            except (StopIteration, RuntimeError):  # empty, or grown by another thread meanwhile
                return
            forgotten = members(self.open.pop(oldest, None))
            self.extra -= max(len(forgotten) - 1, 0)
            for span_id in forgotten:
                self.paired.pop(span_id, None)

    def add(self, trace_id: int, cell: tuple[int, OpenCall]) -> None:
        """Track the span of ``cell`` (``(span id, span)``), which started while its trace had an
        open model-call span already."""
        with self.lock:
            current = self.open.setdefault(trace_id, cell)
            if current is cell:
                return  # that one ended meanwhile
            if isinstance(current, dict):
                current[cell[0]] = cell[1]
            else:
                self.open[trace_id] = {current[0]: current[1], cell[0]: cell[1]}
            self.extra += 1

    def close(self, trace_id: int, span_id: int) -> tuple[bool, bool, list[HeldSpan] | None]:
        """Stop tracking the ended span ``span_id``: whether it was tracked, whether other
        model-call spans of its trace are still open, and the spans held for it (taken)."""
        registered = others = False
        held: list[HeldSpan] | None = None
        with self.lock:
            entry = self.open.get(trace_id)
            if isinstance(entry, dict):
                registered = entry.pop(span_id, None) is not None
                if registered and entry:
                    self.extra -= 1
                    if len(entry) == 1:
                        self.open[trace_id] = next(iter(entry.items()))
                elif not entry:
                    del self.open[trace_id]
                others = bool(entry)
            elif entry is not None:
                if entry[0] == span_id:
                    del self.open[trace_id]
                    registered = True
                else:
                    others = True
            if registered:
                self.paired.pop(span_id, None)
            if self.holding:
                held = self.holding.pop(span_id, None)
                if held:
                    self.held_count -= len(held)
        return registered, others, held

    def pair(
        self, span: ReadableSpan, attributes: dict[str, Any], costed: dict[str, Any], max_held: int
    ) -> bool:
        """Hold the ended call ``span`` for an open model-call span of its trace that may describe
        the same call: its parent if that is one, else one of another instrumentation scope not yet
        paired with this span's scope (the earliest started); the model must match (``same_model``).
        ``False`` when there is none, or ``max_held`` spans are held already."""
        ctx = span.context
        if ctx is None:
            return False
        model = model_of(attributes)
        scope = scope_name(span)
        parent = span.parent
        with self.lock:
            trace_calls = members(self.open.get(ctx.trace_id))
            if not trace_calls or self.held_count >= max_held:
                return False
            partner = None
            if parent is not None:
                record = trace_calls.get(parent.span_id)
                if record is not None and same_model(model, model_of(record.attributes or {})):
                    partner = parent.span_id
            if partner is None:
                # Not its parent: a sibling or cousin (an instrumentation whose spans are never
                # current, or whose callback ran in a copy of the context). One scope traces each
                # call once, so two spans of one scope are two calls.
                paired = self.paired
                for span_id, record in trace_calls.items():
                    if scope_name(record) == scope or scope in paired.get(span_id, ()):
                        continue
                    if same_model(model, model_of(record.attributes or {})):
                        partner = span_id
                        break
                if partner is None:
                    return False
                paired.setdefault(partner, set()).add(scope)
            self.holding.setdefault(partner, []).append((time.monotonic(), span, dict(attributes), costed))
            self.held_count += 1
        return True

    def remember(
        self, fields: EndedCallFields | None, attributes: Mapping[str, Any], call: bool = False
    ) -> None:
        """Keep the call span of ``fields`` (``ended_call`` of it, as handed on, with ``attributes``)
        for ``ended_twin`` if it was counted; ``call``: it was tracked from its start as a model
        call (so it is one, without asking ``is_model_call`` again).

        It runs for every counted call span that has a parent: the record is four of the span's
        fields and its model; the scope's name is read only by ``ended_twin``."""
        if (
            fields is None
            or attributes.get(_STATUS) not in STATUS_RANK
            or not (call or is_model_call(attributes))
        ):
            return
        trace_id, _, _, scope, start, end = fields
        if start is None or end is None:
            return
        model = attributes.get(_FIRST_MODEL_KEY)
        record: EndedCall = [scope, model_of(attributes) if model is None else model, start, end, None]
        calls = self.ended.get(trace_id)
        if calls is None:
            calls = self._ended_calls(trace_id)
        # No lock: a bounded deque's append (one C call) drops its oldest record itself.
        calls.append(record)

    def _ended_calls(self, trace_id: int) -> deque[EndedCall]:
        """The records of ``trace_id``'s ended calls, made (the oldest trace's forgotten past
        ``ENDED_TRACES``) under the lock so two threads cannot make two."""
        ended = self.ended
        with self.lock:
            calls = ended.get(trace_id)
            if calls is None:
                if len(ended) >= ENDED_TRACES:
                    ended.popitem(last=False)
                calls = ended[trace_id] = deque(maxlen=ENDED_PER_TRACE)
            return calls

    def ended_twin(self, span: ReadableSpan, attributes: Mapping[str, Any]) -> bool:
        """Whether a call span of ``span``'s trace that ended counted overlapped it in time, for the
        same model, from another instrumentation scope not yet matched with this one's (then it is
        the same call; the pairing is recorded)."""
        ctx = span.context
        start = span.start_time
        if ctx is None or start is None or ctx.trace_id not in self.ended or not is_model_call(attributes):
            return False
        scope = scope_name(span)
        model = model_of(attributes)
        with self.lock:
            # A copy (one C call): ``remember`` appends without the lock.
            for record in reversed(tuple(self.ended.get(ctx.trace_id, ()))):
                if (
                    _name(record[0]) == scope
                    or record[3] < start
                    or (record[4] is not None and scope in record[4])
                ):
                    continue
                if same_model(model, record[1]):
                    if record[4] is None:
                        record[4] = {scope}
                    else:
                        record[4].add(scope)
                    return True
        return False

    def take_stale(self, hold_seconds: float, everything: bool = False) -> list[HeldSpan]:
        """The held spans older than ``hold_seconds`` (all of them: ``everything``), taken."""
        now = time.monotonic()
        released: list[HeldSpan] = []
        with self.lock:
            for outer, held in list(self.holding.items()):
                keep = [] if everything else [h for h in held if now - h[0] < hold_seconds]
                if len(keep) == len(held):
                    continue
                released += [h for h in held if h not in keep]
                if keep:
                    self.holding[outer] = keep
                else:
                    del self.holding[outer]
            self.held_count -= len(released)
        return released


def resolve(
    held: list[HeldSpan],
    span: ReadableSpan,
    attributes: dict[str, Any],
    costed: dict[str, Any],
    finish: Callable[[ReadableSpan, dict[str, Any], dict[str, Any]], ReadableSpan],
    duplicate: Callable[[ReadableSpan, dict[str, Any]], ReadableSpan],
) -> list[ReadableSpan]:
    """The nested spans ``held`` and last ``span``: of those for ``span``'s model, the one with the
    fuller usage is counted (``finish``) and the others are marked ``duplicate``."""
    model = model_of(attributes)
    out = [finish(s, a, c) for _, s, a, c in held if not same_model(model, model_of(a))]
    candidates = [(s, a, c) for _, s, a, c in held if same_model(model, model_of(a))]
    candidates.append((span, attributes, costed))
    # Fuller usage first; on a tie the capture's reading (the provider's own usage), then the
    # span that ended first.
    best = max(
        range(len(candidates)),
        key=lambda k: (fullness(candidates[k][1], candidates[k][2]), is_capture(candidates[k][0]), -k),
    )
    for k, (s, a, c) in enumerate(candidates):
        out.append(finish(s, a, c) if k == best else duplicate(s, mark_duplicate(dict(a), NESTED_REASON)))
    return out
