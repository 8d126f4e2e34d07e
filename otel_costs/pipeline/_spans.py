"""The one way to copy an ended span with other attributes or more events (``annotated``,
``with_attributes``, ``with_events``), and to read an ended span's attributes cheaply.

Ended SDK spans are immutable, so the processor (costs), the budgets (threshold events) and the
rollup exporter (subtree totals) hand on a copy. Every such copy is made here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan

from otel_costs._sdk import ended_attributes, span_copier


class _AnnotatedSpan(ReadableSpan):
    """A finished span with other attributes or more events; keeps the original's dropped counts."""

    #: The attributes handed to the copy (a plain dict from ``annotated``), for ``readable_attributes``.
    _own: Mapping[str, Any]
    #: Set where the events were replaced (the SDK's own list of them carries its dropped count).
    _dropped_events: int | None = None
    _dropped_links: int | None = None

    def __init__(
        self, span: ReadableSpan, attributes: Mapping[str, Any], events: Sequence[Event] | None = None
    ) -> None:
        super().__init__(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attributes,
            events=span.events if events is None else events,
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )
        self._own = attributes
        self._dropped = span.dropped_attributes
        self._dropped_events = span.dropped_events
        self._dropped_links = span.dropped_links

    @property
    def dropped_attributes(self) -> int:
        return self._dropped

    @property
    def dropped_events(self) -> int:
        return super().dropped_events if self._dropped_events is None else self._dropped_events

    @property
    def dropped_links(self) -> int:
        return super().dropped_links if self._dropped_links is None else self._dropped_links


#: ``annotated(span, attributes)``: a copy of the ended ``span`` whose attributes are
#: ``attributes`` (which the copy takes over). The caller builds ``attributes`` as the span's own
#: attributes updated with its additions, and must not change the dict afterwards. Everything
#: else is the span's, dropped counts included (``_sdk.span_copier`` copies its fields where the
#: SDK's layout allows: 10x cheaper than the constructor, which is the fallback).
annotated: Callable[[ReadableSpan, dict[str, Any]], ReadableSpan] = span_copier(
    _AnnotatedSpan, _AnnotatedSpan
)


def with_events(span: ReadableSpan, events: Sequence[Event]) -> ReadableSpan:
    """A copy of the ended ``span`` with ``events`` added after its own (e.g. budget alerts)."""
    return _AnnotatedSpan(span, span.attributes or {}, (*span.events, *events))


def readable_attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """The attributes of the ended ``span``, to be only read: the plain dict of a copy made here
    or of a span the SDK ended (no read-only proxy built), else ``span.attributes``."""
    if type(span) is _AnnotatedSpan:
        own: Mapping[str, Any] = span._own
        return own
    raw = ended_attributes(span)
    return raw if raw is not None else (span.attributes or {})


def attributes_dict(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """A span's ``attributes`` as a new plain ``dict`` (one C-level copy for SDK spans)."""
    if not attributes:
        return {}
    # ``ReadableSpan.attributes`` is a read-only proxy over the SDK's ``BoundedAttributes``;
    # the proxy's ``copy()`` calls ``BoundedAttributes.copy()``, a copy of its dict in C.
    # Anything else goes through ``dict()``.
    try:
        result = attributes.copy()  # type: ignore[attr-defined]
    except Exception:
        result = None
    return result if type(result) is dict else dict(attributes)


def with_attributes(span: ReadableSpan, extra: Mapping[str, Any]) -> ReadableSpan:
    """A copy of the ended ``span`` whose attributes are its own updated with ``extra``."""
    merged = attributes_dict(span.attributes)
    merged.update(extra)
    return annotated(span, merged)
