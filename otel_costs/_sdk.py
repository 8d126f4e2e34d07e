"""Every private name of another package that otel-costs reads, each behind a probe.

Other packages' private names (the OpenTelemetry SDK's, the httpx instrumentation's, wrapt's)
are read here and nowhere else. Each is probed once, at import: a probe that misses leaves the
public (slower) path in force, and ``tests/test_sdk.py`` fails for it on the versions that
``pyproject.toml`` allows, so a dependency release that breaks one is seen rather than silently
slower.
"""

from __future__ import annotations

# --- OpenTelemetry context and baggage (attribution) -------------------------------------------
#
# The baggage dict under the API's private context key, the contextvars runtime context's private
# ContextVar, and the private suppress-instrumentation key: read on every span start (attribution)
# and around every export (the rollup exporter). Public fallbacks: baggage.get_all(),
# context.get_current(), and no suppression.
#
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from opentelemetry import baggage as _baggage
from opentelemetry import context as _context
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext


def _probe_baggage_key() -> str | None:
    """The context key under which the API keeps the baggage as a plain dict, if it does.

    ``baggage.get_all()`` is four calls and a read-only proxy around one context lookup: a fifth
    of what attribution costs on every span start.
    """
    key = getattr(_baggage, "_BAGGAGE_KEY", None)
    if not isinstance(key, str):
        return None
    try:
        probe = _baggage.set_baggage("otel_costs.probe", "1", Context())
        found = probe.get(key)
        if type(found) is dict and found == dict(_baggage.get_all(probe)) == {"otel_costs.probe": "1"}:
            return key
    except Exception:
        pass
    return None


_BAGGAGE_KEY = _probe_baggage_key()
#: ``baggage_entries`` reads the baggage dict straight from the context.
HAS_BAGGAGE_DICT = _BAGGAGE_KEY is not None


def _probe_context_variable() -> ContextVar[Context] | None:
    """The ``ContextVar`` behind ``context.get_current()``, if the default runtime context is used."""
    try:
        runtime = getattr(_context, "_RUNTIME_CONTEXT", None)
        if type(runtime) is not ContextVarsRuntimeContext:
            return None
        variable = runtime.__dict__.get("_current_context")
        if isinstance(variable, ContextVar) and variable.get() is _context.get_current():
            return variable
    except Exception:
        pass
    return None


_CONTEXT_VARIABLE = _probe_context_variable()
#: ``current_context`` is the runtime context's ``ContextVar.get`` (two Python calls fewer).
HAS_CONTEXT_VARIABLE = _CONTEXT_VARIABLE is not None
#: The current OpenTelemetry context: ``context.get_current()``, or the ``ContextVar.get`` it ends in.
current_context: Callable[[], Context] = (
    _CONTEXT_VARIABLE.get if _CONTEXT_VARIABLE is not None else _context.get_current
)


def _baggage_entries_public(parent_context: Context | None) -> Mapping[str, object] | None:
    return _baggage.get_all(parent_context)


def _baggage_entries_fast(
    parent_context: Context | None,
    _key: str = _BAGGAGE_KEY or "",
    _current: Callable[[], Context] = current_context,
) -> Mapping[str, object] | None:
    entries = (parent_context if parent_context is not None else _current()).get(_key)
    return entries if type(entries) is dict else None  # what get_all() reads as no baggage


#: ``baggage_entries(parent_context)``: the baggage of ``parent_context`` (default: the current
#: context), ``None`` or empty for none; what ``baggage.get_all(parent_context)`` returns, without
#: its copy, when ``HAS_BAGGAGE_DICT``. The mapping is only read. It runs on every span start.
baggage_entries: Callable[[Context | None], Mapping[str, object] | None] = (
    _baggage_entries_fast if HAS_BAGGAGE_DICT else _baggage_entries_public
)


_SUPPRESS_KEY = getattr(_context, "_SUPPRESS_INSTRUMENTATION_KEY", None)
#: ``suppress_instrumentation`` sets the key the instrumentations check (else it does nothing).
HAS_SUPPRESS_INSTRUMENTATION_KEY = isinstance(_SUPPRESS_KEY, str) and bool(_SUPPRESS_KEY)


@contextmanager
def suppress_instrumentation() -> Iterator[None]:
    """Within it, instrumented clients (an OTLP exporter's HTTP calls) make no spans of their own."""
    if not HAS_SUPPRESS_INSTRUMENTATION_KEY:
        yield
        return
    token = _context.attach(_context.set_value(str(_SUPPRESS_KEY), True))
    try:
        yield
    finally:
        _context.detach(token)


# --- OpenTelemetry SDK spans (pipeline: processor, exporter) -----------------------------------
#
# The SDK span's private fields: its ``_attributes`` (a ``BoundedAttributes`` with ``_dict``,
# ``_immutable`` and ``_lock``), ``Span._end_time``/``_lock``, the tracer's private ``_Span`` class,
# ``ReadableSpan``'s instance-dict layout (its ``_context`` a ``SpanContext``, a tuple), and the
# experimental ``SpanProcessor._on_ending`` hook. Public fallbacks: ``span.attributes``,
# ``set_attributes``, the ``ReadableSpan`` constructor, ``span.context.trace_id``, and no on-ending
# forwarding.
#

from opentelemetry.attributes import BoundedAttributes  # noqa: E402
from opentelemetry.sdk import trace as _sdk_trace  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor  # noqa: E402
from opentelemetry.sdk.util.instrumentation import InstrumentationScope  # noqa: E402
from opentelemetry.trace import SpanContext  # noqa: E402

#: The span class the SDK's tracer creates (private; ``Span`` itself refuses to be instantiated).
_TRACER_SPAN: type[Span] | None = getattr(_sdk_trace, "_Span", None)
if not (isinstance(_TRACER_SPAN, type) and issubclass(_TRACER_SPAN, Span)):
    _TRACER_SPAN = None
#: The SDK's span classes: any other span type keeps or checks its attributes its own way.
SDK_SPAN_TYPES: tuple[type[Span], ...] = (Span,) if _TRACER_SPAN is None else (_TRACER_SPAN, Span)
_BOUNDED_FIELDS = ("_dict", "_immutable", "_lock", "maxlen", "max_value_len")


def _probe_sdk_span() -> bool:
    """True if an SDK span keeps a ``BoundedAttributes`` in ``_attributes`` with the fields read here,
    and hands the processors a ``ReadableSpan`` over that same ``BoundedAttributes`` once ended."""
    try:
        if _TRACER_SPAN is None:
            return False  # the tracer's own span class is gone or renamed
        ended: list[ReadableSpan] = []

        class Recorder(SpanProcessor):
            def on_end(self, span: ReadableSpan) -> None:
                ended.append(span)

        span = _TRACER_SPAN("probe", SpanContext(1, 1, is_remote=False), span_processor=Recorder())
        span.start()
        span.set_attributes({"k": 1})
        bounded = span.__dict__.get("_attributes")
        if type(bounded) is not BoundedAttributes or not all(hasattr(bounded, f) for f in _BOUNDED_FIELDS):
            return False
        if bounded._dict != {"k": 1} or bounded._immutable is not False or span._end_time is not None:
            return False
        with span._lock, bounded._lock:  # both are locks, taken in this order by set_attributes
            pass
        span.end()
        return (
            bounded._immutable is True
            and span._end_time is not None
            and len(ended) == 1
            and type(ended[0]) is ReadableSpan
            and ended[0].__dict__.get("_attributes") is bounded
        )
    except Exception:
        return False


#: ``ended_attributes`` and ``set_validated_attributes`` read and write the SDK span's fields.
HAS_SDK_SPAN_FIELDS = _probe_sdk_span()


def _ended_attributes_public(span: ReadableSpan) -> dict[str, Any] | None:
    return None


def _ended_attributes_fast(
    span: ReadableSpan, _readable: type = ReadableSpan, _bounded: type = BoundedAttributes
) -> dict[str, Any] | None:
    if type(span) is not _readable:
        return None
    try:  # attribute reads, not getattr() calls: this runs on every span end
        bounded = span._attributes
        if type(bounded) is not _bounded:
            return None
        raw = bounded._dict  # type: ignore[union-attr]
    except AttributeError:
        return None
    return raw if type(raw) is dict else None


#: ``ended_attributes(span)``: the plain dict under the attributes of a span the SDK ended, to be
#: only read; else ``None`` (then read ``span.attributes``). ``span.attributes`` is a read-only
#: proxy over its ``BoundedAttributes``, whose iteration is Python code: testing and copying the
#: dict inside costs a fifth as much. The span has ended, so nothing writes to it. It runs on
#: every span end.
ended_attributes: Callable[[ReadableSpan], dict[str, Any] | None] = (
    _ended_attributes_fast if HAS_SDK_SPAN_FIELDS else _ended_attributes_public
)


def _started_attributes_public(span: Span) -> Mapping[str, object] | None:
    attributes = getattr(span, "attributes", None)
    return attributes if isinstance(attributes, Mapping) else None


def _started_attributes_fast(span: Span, _bounded: type = BoundedAttributes) -> Mapping[str, object] | None:
    bounded = span.__dict__.get("_attributes") if type(span) in SDK_SPAN_TYPES else None
    if type(bounded) is not _bounded:
        return _started_attributes_public(span)
    raw = getattr(bounded, "_dict", None)
    return raw if type(raw) is dict else None


#: ``started_attributes(span)``: the attributes of a span in ``on_start``, to be only read (a few
#: ``get``s: is it a model call?): the plain dict under an SDK span's ``BoundedAttributes``, whose
#: own ``get`` is Python code; else ``span.attributes``.
started_attributes: Callable[[Span], Mapping[str, object] | None] = (
    _started_attributes_fast if HAS_SDK_SPAN_FIELDS else _started_attributes_public
)


def set_validated_attributes(
    span: Span, attributes: dict[str, Any], longest: int, starting: bool = False
) -> dict[str, Any] | None:
    """``span.set_attributes(attributes)``, for attributes already validated by the caller.

    ``set_attributes`` re-validates every value (about 1 µs per attribute). The values here are
    already what that validation returns (non-empty str keys; str, int or tuple-of-str values no
    longer than ``longest``; ``longest < 0``: not known, validate), so on the SDK's own span, when
    its limits cannot drop or truncate anything, they are stored directly, as ``BoundedAttributes``
    would, under the same two locks in the same order as ``Span.set_attributes``; without them
    when ``starting`` (in ``on_start`` the span is not yet returned to anyone, so no other thread
    can touch it). Anything else (another layout, a limit that could bite, an ended span) goes
    through ``set_attributes``, which then warns or drops exactly as it always does.
    Returns, when ``starting`` on the SDK's span, the span's stored attributes dict (to be only
    read, as ``started_attributes`` gives it); else ``None``.
    """
    if HAS_SDK_SPAN_FIELDS and longest >= 0 and type(span) in SDK_SPAN_TYPES:
        try:  # an attribute read, not a getattr() call: this runs on every span start
            bounded = span._attributes
        except AttributeError:
            bounded = None
        if type(bounded) is BoundedAttributes:
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
                        return stored
                else:
                    with span._lock, bounded._lock:
                        if span._end_time is None:
                            _merge(stored, attributes)
                            return None
    span.set_attributes(attributes)
    return None


def _merge(stored: dict[str, Any], attributes: dict[str, Any]) -> None:
    if stored and not stored.keys().isdisjoint(attributes):
        # A key set again moves to the end, as BoundedAttributes does it.
        for key in attributes:
            stored.pop(key, None)
    stored.update(attributes)


#: ``ended_call``'s answer: trace id, span id, parent (``None`` for a root), instrumentation
#: scope, start and end (ns).
EndedCallFields = tuple[int, int, SpanContext | None, InstrumentationScope | None, int | None, int | None]


def _ended_call_public(span: ReadableSpan) -> EndedCallFields | None:
    context = span.context
    if context is None:
        return None
    return (
        context.trace_id,
        context.span_id,
        span.parent,
        span.instrumentation_scope,
        span.start_time,
        span.end_time,
    )


def _ended_call_fast(span: ReadableSpan) -> EndedCallFields | None:
    try:
        s: Any = span  # fields read as attributes: no instance dict is made for them
        context = s._context
        return context[0], context[1], s._parent, s._instrumentation_scope, s._start_time, s._end_time
    except (AttributeError, KeyError, TypeError, IndexError):  # not the SDK's layout, or no context
        return _ended_call_public(span)


def _tree_ids_public(span: ReadableSpan) -> tuple[int | None, int | None, bool]:
    context, parent = span.context, span.parent
    span_id = None if context is None else context.span_id
    return (span_id, None, False) if parent is None else (span_id, parent.span_id, parent.is_remote)


def _tree_ids_fast(span: ReadableSpan) -> tuple[int | None, int | None, bool]:
    try:
        s: Any = span
        span_id, parent = s._context[1], s._parent
        return (span_id, None, False) if parent is None else (span_id, parent[1], parent[2])
    except (AttributeError, KeyError, TypeError, IndexError):  # not the SDK's layout, or no context
        return _tree_ids_public(span)


def _trace_root_public(span: ReadableSpan) -> tuple[int, bool] | None:
    context, parent = span.context, span.parent
    return None if context is None else (context.trace_id, parent is None or parent.is_remote)


def _trace_root_fast(span: ReadableSpan) -> tuple[int, bool] | None:
    try:
        s: Any = span
        parent = s._parent
        return s._context[0], parent is None or parent[2]
    except (AttributeError, KeyError, TypeError, IndexError):  # not the SDK's layout, or no context
        return _trace_root_public(span)


#: Every field of an SDK ``ReadableSpan`` (what its constructor sets), as ``span_copier`` copies them.
_SPAN_FIELDS = frozenset(
    {
        "_name",
        "_context",
        "_kind",
        "_instrumentation_info",
        "_instrumentation_scope",
        "_parent",
        "_start_time",
        "_end_time",
        "_attributes",
        "_events",
        "_links",
        "_resource",
        "_status",
    }
)


def _probe_span_layout() -> bool:
    """True if a ``ReadableSpan``'s fields are exactly ``_SPAN_FIELDS``, attributes in ``_attributes``."""
    try:
        probe = ReadableSpan(name="probe", attributes={"k": 1})
        if set(vars(probe)) != _SPAN_FIELDS:
            return False  # a field added or renamed: a copy made field by field would miss it
        # ``span_ids`` reads the span's ``_context`` field as the tuple ``SpanContext`` is;
        # ``ended_call`` reads its scope, start and end fields too.
        context = SpanContext(5, 7, is_remote=False)
        parent = SpanContext(5, 6, is_remote=False)
        remote = SpanContext(5, 6, is_remote=True)
        scope = InstrumentationScope("probe")
        with_context = ReadableSpan(
            name="probe",
            context=context,
            parent=parent,
            start_time=3,
            end_time=4,
            instrumentation_scope=scope,
        )
        return (
            (probe.attributes or {}).get("k") == 1
            and vars(with_context).get("_context") is context
            and isinstance(context, tuple)
            and context[:2] == (context.trace_id, context.span_id) == (5, 7)
            and _tree_ids_fast(with_context) == _tree_ids_public(with_context) == (7, 6, False)
            and _tree_ids_fast(ReadableSpan(name="probe", context=context, parent=remote)) == (7, 6, True)
            and _trace_root_fast(with_context) == _trace_root_public(with_context) == (5, False)
            and _trace_root_fast(ReadableSpan(name="probe", context=context, parent=remote)) == (5, True)
            and _trace_root_fast(ReadableSpan(name="probe", context=context)) == (5, True)
            and _ended_call_fast(with_context)
            == _ended_call_public(with_context)
            == (5, 7, parent, scope, 3, 4)
        )
    except Exception:
        return False


#: ``span_copier`` copies a span's fields (10x cheaper than the constructor); ``span_ids`` reads
#: the trace and span id from its ``_context`` field, ``ended_call`` that field and the parent,
#: scope, start and end fields, ``tree_ids`` the context and parent fields.
HAS_SPAN_LAYOUT = _probe_span_layout()


def _span_ids_public(span: ReadableSpan) -> tuple[int, int] | None:
    context = span.context
    return None if context is None else (context.trace_id, context.span_id)


def _span_ids_fast(span: ReadableSpan) -> tuple[int, int] | None:
    try:
        ids: tuple[int, int] = span._context[:2]  # type: ignore[index]
        return ids
    except (AttributeError, TypeError):  # not the SDK's layout, or no context
        return _span_ids_public(span)


#: ``span_ids(span)``: ``(span.context.trace_id, span.context.span_id)`` (``None`` without a
#: context), read as one field and one tuple slice instead of three properties: it runs on every
#: model-call span's start and end (the exactly-once bookkeeping is per trace).
span_ids: Callable[[ReadableSpan], tuple[int, int] | None] = (
    _span_ids_fast if HAS_SPAN_LAYOUT else _span_ids_public
)


#: ``tree_ids(span)``: ``(span id, parent span id, parent is remote)`` of an ended span (span id
#: ``None`` without a context; ``(id, None, False)`` for a root), read as fields instead of five
#: properties: the rollup exporter reads them of every span it forwards.
tree_ids: Callable[[ReadableSpan], tuple[int | None, int | None, bool]] = (
    _tree_ids_fast if HAS_SPAN_LAYOUT else _tree_ids_public
)

#: ``trace_root(span)``: ``(trace id, is a local root)`` of an ended span (a local root has no
#: parent, or a remote one; ``None`` without a context), read as fields instead of four
#: properties: the rollup exporter reads it of every span it buffers.
trace_root: Callable[[ReadableSpan], tuple[int, bool] | None] = (
    _trace_root_fast if HAS_SPAN_LAYOUT else _trace_root_public
)

#: ``ended_call(span)``: ``EndedCallFields`` of an ended span (``None`` without a context), read
#: as six fields instead of six properties: what ``CostSpanProcessor.on_end`` needs of a span with
#: usage (its trace and id for the exactly-once bookkeeping, its parent, and the record kept of a
#: counted call).
ended_call: Callable[[ReadableSpan], EndedCallFields | None] = (
    _ended_call_fast if HAS_SPAN_LAYOUT else _ended_call_public
)


_S = TypeVar("_S", bound=ReadableSpan)


def span_copier(
    cls: type[_S],
    fallback: Callable[[ReadableSpan, dict[str, Any]], ReadableSpan],
) -> Callable[[ReadableSpan, dict[str, Any]], ReadableSpan]:
    """``copy(span, attributes)``: a new ``cls`` with the fields of the ended ``span`` (an SDK
    ``ReadableSpan`` or a ``cls``), ``attributes`` in place of its own and kept as ``_own`` too,
    and its dropped-attribute count as ``_dropped``; ``fallback(span, attributes)`` for any other
    span, or for every span without the SDK's layout. ``cls`` is a ``ReadableSpan`` subclass
    whose own fields are ``_own``, ``_dropped``, ``_dropped_events`` and ``_dropped_links`` (the
    last two with class defaults): a copy of a ``cls`` keeps them.

    ``ReadableSpan`` has no public copy: the public way is its constructor, fed from a dozen
    properties (``events`` and ``links`` each build a tuple), about 4 µs a span; storing its
    fields (``_SPAN_FIELDS``, which the layout probe checks are all of them) is about 10x cheaper,
    and the copy keeps them inline as the SDK's span does: no instance dict is built, copied or
    traversed by the garbage collector. The dropped count is read as the one its
    ``BoundedAttributes`` keeps, without the two properties in between. It runs for every priced
    span (one call) and every span the rollup annotates.
    """
    if not HAS_SPAN_LAYOUT:
        return fallback
    new = object.__new__
    bounded_type = BoundedAttributes
    sdk_type = ReadableSpan

    def copy(span: ReadableSpan, attributes: dict[str, Any]) -> ReadableSpan:
        kind = type(span)
        if kind is not sdk_type and kind is not cls:
            return fallback(span, attributes)
        s: Any = span
        result: Any = new(cls)
        # One field per line, always in this order: instances of ``cls`` then share one layout.
        result._name = s._name
        result._context = s._context
        result._kind = s._kind
        result._instrumentation_info = s._instrumentation_info
        result._instrumentation_scope = s._instrumentation_scope
        result._parent = s._parent
        result._start_time = s._start_time
        result._end_time = s._end_time
        result._events = s._events
        result._links = s._links
        result._resource = s._resource
        result._status = s._status
        result._attributes = result._own = attributes
        if kind is sdk_type:
            own = s._attributes
            result._dropped = own.dropped if type(own) is bounded_type else span.dropped_attributes
        else:
            result._dropped = s._dropped
            result._dropped_events = s._dropped_events
            result._dropped_links = s._dropped_links
        copied: ReadableSpan = result
        return copied

    return copy


def _probe_on_ending() -> bool:
    """True if the SDK's ``Span.end`` calls its processor's ``_on_ending`` before ``on_end``."""
    try:
        calls: list[str] = []

        class Recorder(SpanProcessor):
            def _on_ending(self, span: Span) -> None:
                calls.append("on_ending")

            def on_end(self, span: ReadableSpan) -> None:
                calls.append("on_end")

        if _TRACER_SPAN is None:
            return False
        span = _TRACER_SPAN("probe", SpanContext(1, 1, is_remote=False), span_processor=Recorder())
        span.start()
        span.end()
        return calls == ["on_ending", "on_end"] and callable(getattr(SpanProcessor, "_on_ending", None))
    except Exception:
        return False


#: ``forward_on_ending`` hands the SDK's experimental on-ending hook to the next processor.
HAS_ON_ENDING = _probe_on_ending()


def forward_on_ending(processor: SpanProcessor, next_processor: SpanProcessor) -> None:
    """Make the SDK's ``_on_ending`` calls on ``processor`` go straight to ``next_processor``'s."""
    if HAS_ON_ENDING:
        processor._on_ending = next_processor._on_ending  # type: ignore[method-assign]


# --- opentelemetry-instrumentation-httpx and wrapt (capture) -----------------------------------
#
# Read by otel_costs.capture.
#
# - opentelemetry.context._SUPPRESS_HTTP_INSTRUMENTATION_KEY (probe at import: HAS_SUPPRESS_HTTP_KEY):
#   the context key that suppress_http_instrumentation() sets, set directly in a one-span call's
#   context (one attach). Public fallback: attach the context, enter suppress_http_instrumentation().
# - wrapt FunctionWrapper._self_wrapper / __wrapped__, and HTTPX(2)ClientInstrumentor's
#   _handle_request_wrapper / _handle_async_request_wrapper: which function the instrumentation
#   wraps, so a one-span call skips its wrapper. Fallback: go through the wrapper, suppressed.
# - sampling.ParentBased._root, ._remote_parent_sampled ... (its five delegates): whether a
#   parent-based sampler reads span attributes. Fallback: assume it may (attributes at start).
#
# wrapt, the httpx instrumentation and the SDK are not imported here at import (some 200 modules
# for every user of this module): the last two probes run once, on the first ``capture_probes()``
# (``capture._instrument`` calls it when it is imported), and are cached.
# ``tests/test_sdk_capture.py`` fails when any probe misses.

#: The httpx instrumentors' wrapper functions, sync and async.
_INSTRUMENTOR_WRAPPERS = ("_handle_request_wrapper", "_handle_async_request_wrapper")
#: Where ``sampling.ParentBased`` keeps its delegates.
_PARENT_BASED_DELEGATES = (
    "_root",
    "_remote_parent_sampled",
    "_remote_parent_not_sampled",
    "_local_parent_sampled",
    "_local_parent_not_sampled",
)

import functools as _functools  # noqa: E402
from collections.abc import Callable as _Callable  # noqa: E402
from dataclasses import dataclass as _dataclass  # noqa: E402
from typing import Any as _Any  # noqa: E402
from typing import Final as _Final  # noqa: E402

from opentelemetry import context as _otel_context  # noqa: E402

_SUPPRESS_HTTP_KEY: _Final = getattr(_otel_context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", None)
HAS_SUPPRESS_HTTP_KEY: _Final = isinstance(_SUPPRESS_HTTP_KEY, str)


def suppress_http(ctx: _otel_context.Context) -> _otel_context.Context:
    """``ctx`` with the HTTP instrumentations suppressed, as ``suppress_http_instrumentation()`` sets it."""
    if HAS_SUPPRESS_HTTP_KEY:
        return _otel_context.set_value(_SUPPRESS_HTTP_KEY, True, ctx)  # type: ignore[arg-type]
    from opentelemetry.instrumentation.utils import suppress_http_instrumentation

    token = _otel_context.attach(ctx)
    try:
        with suppress_http_instrumentation():
            return _otel_context.get_current()
    finally:
        _otel_context.detach(token)


@_dataclass(frozen=True)
class CaptureProbes:
    """Which private names of wrapt, the httpx instrumentation and the SDK sampler are as expected."""

    wrapt_fields: bool
    """A wrapt ``FunctionWrapper`` shows its wrapper as ``_self_wrapper``, its function as ``__wrapped__``."""
    instrumentor_wrappers: bool
    """``HTTPXClientInstrumentor`` and ``HTTPX2ClientInstrumentor`` have the functions
    ``_handle_request_wrapper`` and ``_handle_async_request_wrapper``."""
    parent_based_delegates: bool
    """``sampling.ParentBased`` keeps its five delegates in ``_root``, ``_remote_parent_sampled``..."""


@_functools.cache
def capture_probes() -> CaptureProbes:
    """Run this section's probes (once; cached)."""
    from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor
    from opentelemetry.sdk.trace import sampling

    def target(value: object) -> object:
        return value

    def wrapper(tag: object, wrapped: object, instance: object, args: object, kwargs: object) -> object:
        return wrapped

    wrapt_fields = False
    try:
        import wrapt

        partial = _functools.partial(wrapper, None)
        wrapped = wrapt.FunctionWrapper(target, partial)
        wrapt_fields = getattr(wrapped, "_self_wrapper", None) is partial and wrapped.__wrapped__ is target
    except Exception:  # wrapt changed shape: the public path
        wrapt_fields = False
    instrumentor_wrappers = all(
        callable(getattr(cls, name, None))
        for cls in (HTTPXClientInstrumentor, HTTPX2ClientInstrumentor)
        for name in _INSTRUMENTOR_WRAPPERS
    )
    parent_based = sampling.ParentBased(sampling.ALWAYS_ON)
    parent_based_delegates = all(
        isinstance(getattr(parent_based, name, None), sampling.Sampler) for name in _PARENT_BASED_DELEGATES
    )
    return CaptureProbes(wrapt_fields, instrumentor_wrappers, parent_based_delegates)


def instrumentation_target(
    method: object, instrumentor: type, *, asynchronous: bool
) -> _Callable[..., _Any] | None:
    """The function that the httpx instrumentor's wrapper wraps in ``method``, else ``None``.

    ``method`` is what a transport class holds: when the instrumentation is on, a wrapt
    ``FunctionWrapper`` whose wrapper is a ``functools.partial`` of ``instrumentor``'s
    ``_handle_request_wrapper`` (``_handle_async_request_wrapper`` if ``asynchronous``). Anything
    else (no instrumentation, another library's wrapper in between, a probe that missed) gives
    ``None``: go through ``method``.
    """
    probes = capture_probes()
    if not (probes.wrapt_fields and probes.instrumentor_wrappers):
        return None
    wrapper = getattr(instrumentor, _INSTRUMENTOR_WRAPPERS[1 if asynchronous else 0], None)
    try:
        partial = getattr(method, "_self_wrapper", None)
        target = getattr(method, "__wrapped__", None) if getattr(partial, "func", None) is wrapper else None
    except Exception:  # an exotic proxy: go through it
        return None
    return target if callable(target) else None


def parent_based_delegates(sampler: object) -> tuple[object, ...] | None:
    """The five delegates of an SDK ``ParentBased`` sampler, or ``None`` if they cannot be read."""
    if not capture_probes().parent_based_delegates:
        return None
    delegates = tuple(getattr(sampler, name, None) for name in _PARENT_BASED_DELEGATES)
    return None if any(delegate is None for delegate in delegates) else delegates
