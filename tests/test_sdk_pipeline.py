"""Every probe of the pipeline's sections of otel_costs/_sdk.py passes on the installed versions.

These tests test internals on purpose: a probe that misses does not break the library (the public,
slower path takes over), so only these tests can show that a dependency release changed a private
name the pipeline reads. Each fails, rather than skips, when its probe misses.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import baggage, context
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from otel_costs import _sdk
from otel_costs.pipeline._spans import annotated


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tracer_provider, exporter
    tracer_provider.shutdown()


# --- OpenTelemetry context and baggage ------------------------------------------------------


def test_baggage_dict_probe() -> None:
    """baggage_entries reads the API's baggage dict directly, and it equals baggage.get_all()."""
    assert _sdk.HAS_BAGGAGE_DICT, "opentelemetry-api no longer keeps baggage as a dict under _BAGGAGE_KEY"
    ctx = baggage.set_baggage("a", "1", baggage.set_baggage("b", "2"))
    assert _sdk.baggage_entries(ctx) == dict(baggage.get_all(ctx)) == {"a": "1", "b": "2"}
    assert not _sdk.baggage_entries(context.Context())
    token = context.attach(ctx)
    try:
        assert _sdk.baggage_entries(None) == {"a": "1", "b": "2"}
    finally:
        context.detach(token)


def test_context_variable_probe() -> None:
    """current_context is the runtime context's ContextVar.get, and follows attach/detach."""
    assert _sdk.HAS_CONTEXT_VARIABLE, "opentelemetry-api's _RUNTIME_CONTEXT._current_context is gone"
    token = context.attach(context.set_value("otel_costs.test", 1))
    try:
        assert _sdk.current_context() is context.get_current()
        assert _sdk.current_context().get("otel_costs.test") == 1
    finally:
        context.detach(token)
    assert _sdk.current_context() is context.get_current()


def test_suppress_instrumentation_key_probe() -> None:
    """suppress_instrumentation sets the key the OpenTelemetry instrumentations check."""
    assert _sdk.HAS_SUPPRESS_INSTRUMENTATION_KEY, "context._SUPPRESS_INSTRUMENTATION_KEY is gone"
    assert is_instrumentation_enabled()
    with _sdk.suppress_instrumentation():
        assert not is_instrumentation_enabled()
    assert is_instrumentation_enabled()


# --- OpenTelemetry SDK spans ----------------------------------------------------------------


def test_sdk_span_fields_probe(provider: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """ended_attributes reads the ended span's attribute dict; set_validated_attributes stores into it."""
    assert _sdk.HAS_SDK_SPAN_FIELDS, "the SDK span's _attributes/_dict/_immutable/_lock/_end_time changed"
    tracer_provider, exporter = provider
    span = tracer_provider.get_tracer("t").start_span("s", attributes={"a": 1})
    assert type(span) in _sdk.SDK_SPAN_TYPES
    _sdk.set_validated_attributes(span, {"b": "x", "a": 2}, 1)  # type: ignore[arg-type]
    span.end()
    (ended,) = exporter.get_finished_spans()
    raw = _sdk.ended_attributes(ended)
    assert raw == dict(ended.attributes or {}) == {"b": "x", "a": 2}
    assert list(raw) == ["b", "a"]  # a key set again moves to the end, as set_attributes does


def test_span_layout_probe(provider: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """span_copier copies every field of an ended span but its attributes, and keeps its dropped count."""
    assert _sdk.HAS_SPAN_LAYOUT, "ReadableSpan's fields are no longer _sdk._SPAN_FIELDS"
    tracer_provider, exporter = provider
    tracer_provider.get_tracer("t").start_span("s", attributes={"a": 1}).end()
    (ended,) = exporter.get_finished_spans()
    assert set(vars(ended)) == _sdk._SPAN_FIELDS

    class Copy(ReadableSpan):
        _dropped_events: int | None = None
        _dropped_links: int | None = None

    def fallback(span: ReadableSpan, attributes: dict[str, Any]) -> ReadableSpan:
        raise AssertionError("the SDK's span took the fallback")

    copier = _sdk.span_copier(Copy, fallback)
    copy = copier(ended, {"a": 2})
    assert type(copy) is Copy
    assert copy.attributes == {"a": 2}
    fields, own = vars(copy), vars(ended)
    assert set(fields) == _sdk._SPAN_FIELDS | {"_own", "_dropped"}
    assert all(fields[name] is own[name] for name in _sdk._SPAN_FIELDS - {"_attributes"})
    assert fields["_dropped"] == ended.dropped_attributes == 0
    assert ended.attributes == {"a": 1}
    # A copy of a copy keeps the copy's own fields too.
    copy._dropped, copy._dropped_events = 3, 2  # type: ignore[attr-defined]
    again = vars(copier(copy, {"a": 3}))
    assert (again["_attributes"], again["_own"], again["_dropped"], again["_dropped_events"]) == (
        {"a": 3},
        {"a": 3},
        3,
        2,
    )
    assert again["_dropped_links"] is None
    assert all(again[name] is own[name] for name in _sdk._SPAN_FIELDS - {"_attributes"})


def test_span_copier_falls_back_for_other_types() -> None:
    """A span of a type the copier does not know is copied by the fallback."""
    made: list[ReadableSpan] = []

    def fallback(span: ReadableSpan, attributes: dict[str, Any]) -> ReadableSpan:
        made.append(span)
        return span

    class Other(ReadableSpan):
        pass

    span = Other(name="o")
    assert _sdk.span_copier(ReadableSpan, fallback)(span, {}) is span
    assert made == [span]


def test_ended_call_reads_ids_parent_scope_and_times(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """ended_call gives an ended span's ids, parent, scope, start and end as its properties say."""
    tracer_provider, exporter = provider
    tracer = tracer_provider.get_tracer("scope-a")
    with tracer.start_as_current_span("parent"):
        tracer.start_span("child").end()
    child, parent = exporter.get_finished_spans()
    for span in (child, parent):
        assert span.context is not None
        assert _sdk.ended_call(span) == (
            span.context.trace_id,
            span.context.span_id,
            span.parent,
            span.instrumentation_scope,
            span.start_time,
            span.end_time,
        )
    assert _sdk.ended_call(child)[2] is not None and _sdk.ended_call(parent)[2] is None  # type: ignore[index]
    assert _sdk.ended_call(ReadableSpan(name="no context")) is None


def test_span_ids_read_the_context(provider: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """span_ids gives a span's trace and span id, and None for a span without a context."""
    tracer_provider, exporter = provider
    tracer_provider.get_tracer("t").start_span("s").end()
    (ended,) = exporter.get_finished_spans()
    assert ended.context is not None
    assert _sdk.span_ids(ended) == (ended.context.trace_id, ended.context.span_id)
    assert _sdk.span_ids(ReadableSpan(name="no context")) is None


def test_on_ending_probe() -> None:
    """forward_on_ending makes the SDK's on-ending call reach the next processor."""
    assert _sdk.HAS_ON_ENDING, "the SDK's Span.end no longer calls SpanProcessor._on_ending"
    seen: list[str] = []

    class Next(SpanProcessor):
        def _on_ending(self, span: Any) -> None:
            seen.append(span.name)

    class Wrapper(SpanProcessor):
        pass

    wrapper = Wrapper()
    _sdk.forward_on_ending(wrapper, Next())
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(wrapper)
    tracer_provider.get_tracer("t").start_span("ending").end()
    assert seen == ["ending"]


def _child_parent_and_remote_child(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> tuple[ReadableSpan, ...]:
    """Ended spans: a child, its local parent, and a child of a remote parent (trace 9, span 8)."""
    tracer_provider, exporter = provider
    tracer = tracer_provider.get_tracer("t")
    remote = SpanContext(trace_id=9, span_id=8, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with tracer.start_as_current_span("local parent"):
        tracer.start_span("child").end()
    tracer.start_span("remote child", context=set_span_in_context(NonRecordingSpan(remote))).end()
    return exporter.get_finished_spans()


def test_tree_ids_read_the_span_and_its_parent(provider: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """tree_ids gives a span's id, its parent's id and whether that parent is remote, as properties say."""
    child, parent, remote_child = _child_parent_and_remote_child(provider)
    assert child.context is not None and parent.context is not None and remote_child.context is not None
    assert _sdk.tree_ids(child) == (child.context.span_id, parent.context.span_id, False)
    assert _sdk.tree_ids(parent) == (parent.context.span_id, None, False)
    assert _sdk.tree_ids(remote_child) == (remote_child.context.span_id, 8, True)
    assert _sdk.tree_ids(ReadableSpan(name="no context")) == (None, None, False)


def test_trace_root_reads_the_trace_and_whether_a_local_root(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """trace_root gives a span's trace id and whether it has no parent or a remote one, as properties say."""
    assert _sdk.HAS_SPAN_LAYOUT, "ReadableSpan's fields moved: trace_root reads five properties per span"
    child, parent, remote_child = _child_parent_and_remote_child(provider)
    assert child.context is not None and parent.context is not None and remote_child.context is not None
    assert _sdk.trace_root(child) == (child.context.trace_id, False)
    assert _sdk.trace_root(parent) == (parent.context.trace_id, True)
    assert _sdk.trace_root(remote_child) == (9, True)
    assert _sdk.trace_root(ReadableSpan(name="no context")) is None


def test_a_copy_of_a_copy_keeps_the_dropped_count() -> None:
    """Copying a span that is itself a copy keeps the dropped-attribute count of the original span."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=1))
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer_provider.get_tracer("t").start_span("s", attributes={"a": 1, "b": 2}).end()
    (ended,) = exporter.get_finished_spans()
    assert ended.dropped_attributes == 1
    copy = annotated(ended, {"a": 2})
    again = annotated(copy, {"a": 3})
    assert (copy.dropped_attributes, again.dropped_attributes) == (1, 1)
    assert again.attributes == {"a": 3} and copy.attributes == {"a": 2}
