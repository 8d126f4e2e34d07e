"""Small helpers over SDK spans shared by the processor and the exporter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan


class _AnnotatedSpan(ReadableSpan):
    """A finished span with extra attributes; keeps the original's dropped-attribute count."""

    def __init__(self, span: ReadableSpan, attributes: Mapping[str, Any]) -> None:
        super().__init__(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attributes,
            events=span.events,
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )
        self._dropped = span.dropped_attributes

    @property
    def dropped_attributes(self) -> int:
        return self._dropped


def with_attributes(span: ReadableSpan, extra: Mapping[str, Any]) -> ReadableSpan:
    """A copy of the ended ``span`` whose attributes are its own updated with ``extra``.

    Ended spans are immutable in the SDK, so costs are added by handing on a copy.
    """
    attributes = span.attributes
    # BoundedAttributes.copy() copies its dict in one C call; a plain Mapping goes through dict().
    merged: dict[str, Any] = dict(
        attributes.copy() if isinstance(attributes, BoundedAttributes) else attributes or {}
    )
    merged.update(extra)
    return _AnnotatedSpan(span, merged)
