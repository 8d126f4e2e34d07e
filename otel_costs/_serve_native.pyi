"""Type stub of the optional C extension ``otel_costs._serve_native`` (``_serve_native.c``)."""

def configure(
    drop_keys: tuple[bytes, ...],
    billable_statuses: tuple[bytes, ...],
    incomplete_statuses: tuple[bytes, ...],
    status_key: bytes,
    direct_nanos_key: bytes,
    direct_key: bytes,
    currency_key: bytes,
    children_prefix: bytes,
    total_prefix: bytes,
    children_nanos_key: bytes,
    total_nanos_key: bytes,
    unpriced_key: bytes,
    scope_entry: bytes,
    currency_scope_entry: bytes,
    remote_parent_entry: bytes,
    orphan_entry: bytes,
    has_is_remote_mask: int,
    is_remote_mask: int,
    /,
) -> None:
    """Set the serialized attribute keys and prepared entries (``_serve._load_native`` does, once)."""

def stage(
    raw: bytes, /
) -> tuple[list[tuple[bytes, bytes, bytes, bytes]], list[tuple[bytes, int, list[bytes], bytes, bool]]] | None:
    """A serialized ``ExportTraceServiceRequest`` split by trace.

    Returns the groups (resource, its schema URL, scope, its schema URL, as they arrived) and
    the chunks (trace id, group index, the spans' bytes, 32 bytes of record a span, whether a
    span has no parent); ``None`` when the request needs the Python path. Raises
    ``ValueError`` for bytes that are not a valid protobuf message.
    """

def rollup(datas: list[list[bytes]], metas: list[bytes], late: bytes | None, /) -> list[list[bytes]] | None:
    """The spans of one trace's chunks with trace-wide rollup figures (``late``: entries for every span).

    ``None`` when the trace needs the Python path (repeated span ids, parent loops, sums past
    2**53 nano-USD). Raises ``ValueError`` for records or spans it cannot read.
    """

def encode_request(
    resources: list[tuple[bytes, list[tuple[bytes, list[list[bytes]], bytes]], bytes]], /
) -> bytes:
    """A serialized ``ExportTraceServiceRequest`` in one allocation.

    ``resources``: per ``ResourceSpans`` the serialized resource, its scopes (serialized scope,
    the spans' bytes in pieces, the scope's schema URL) and its schema URL; empty schema URLs
    are left out, as ``_serve._encode`` writes them.
    """
