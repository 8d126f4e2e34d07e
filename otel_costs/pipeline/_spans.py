"""Small helpers over SDK spans shared by the processor and the exporter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def _can_copy_fields() -> bool:
    """True if a ``ReadableSpan`` keeps its fields in its ``__dict__`` with attributes in ``_attributes``.

    ``ReadableSpan`` has no public copy: the public way is its constructor, fed from a dozen
    properties (``events`` and ``links`` each build a tuple), about 4 µs a span, which is most of
    the cost of pricing one. Copying the instance dict and replacing the attributes is 10x
    cheaper. It relies on the SDK's private field layout, so it is used only if this probe of the
    installed SDK shows that layout; otherwise every copy goes through the constructor.
    """
    try:
        probe = ReadableSpan(name="probe", attributes={"k": 1})
        fields = vars(probe)
        if "_attributes" not in fields or "_name" not in fields:
            return False
        copy = object.__new__(_AnnotatedSpan)
        copy.__dict__ = {**fields, "_attributes": {"k": 2}, "_dropped": 0}
        return (
            copy.name == "probe"
            and (copy.attributes or {}).get("k") == 2
            and (probe.attributes or {}).get("k") == 1
            and copy.dropped_attributes == 0
        )
    except Exception:
        return False


_FAST_COPY = _can_copy_fields()
_new = object.__new__
#: Span types whose fields are all plain instance-dict entries (no subclass properties to honour).
_COPYABLE = (ReadableSpan, _AnnotatedSpan)


def annotated(span: ReadableSpan, attributes: dict[str, Any]) -> ReadableSpan:
    """A copy of the ended ``span`` whose attributes are ``attributes`` (which the copy takes over).

    The caller builds ``attributes`` as the span's own attributes updated with its additions,
    and must not change the dict afterwards.
    """
    if _FAST_COPY and type(span) in _COPYABLE:
        # Everything the SDK stored (events and links keep their dropped counts), new attributes.
        fields = span.__dict__.copy()
        fields["_attributes"] = attributes
        if type(span) is not _AnnotatedSpan:  # a copy of a copy already has it
            fields["_dropped"] = span.dropped_attributes
        copy = _new(_AnnotatedSpan)
        copy.__dict__ = fields
        return copy
    return _AnnotatedSpan(span, attributes)


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
    """A copy of the ended ``span`` whose attributes are its own updated with ``extra``.

    Ended spans are immutable in the SDK, so costs are added by handing on a copy.
    """
    merged = attributes_dict(span.attributes)
    merged.update(extra)
    return annotated(span, merged)
