"""What the fake LLM provider is configured with and what it records.

``FakeUsage`` (the token usage it reports), ``Misbehaviour`` (the bad-output modes it can be
told to inject), ``RecordedRequest`` (one request as it arrived) and the pending-fault record
the server and its request handler share.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FakeUsage:
    """Token usage the fake reports. ``None`` fields are derived from the request (see the module doc)."""

    input_tokens: int | None = None
    """All input tokens, cached ones included (OpenTelemetry semantics); ``None`` = derived from the prompt.
    Raised to ``cache_read_tokens + cache_write_tokens`` if it would be smaller."""
    output_tokens: int | None = None
    """All output tokens, reasoning included; ``None`` = text pieces in the reply + ``reasoning_tokens``."""
    cache_read_tokens: int = 0
    """Input tokens served from the provider's prompt cache (reported by OpenAI, Anthropic and Gemini)."""
    cache_write_tokens: int = 0
    """Input tokens written to the prompt cache (Anthropic ``cache_creation_input_tokens``; OpenAI
    ``cache_write_tokens`` in the prompt/input token details when non-zero; not reported by Gemini)."""
    reasoning_tokens: int = 0
    """Output tokens spent on reasoning/thinking (OpenAI and Gemini report them separately)."""


class Misbehaviour(enum.StrEnum):
    """Bad-output modes for robustness tests; several can be combined (e.g. ``GZIP`` with ``LARGE``)."""

    MALFORMED_JSON = "malformed_json"
    """Non-stream: a body cut mid-JSON. Stream: one broken ``data:`` event before the usage event."""
    TRUNCATED = "truncated"
    """Stream: the body ends cleanly before the final usage/terminal events. Non-stream: JSON cut short."""
    DISCONNECT = "disconnect"
    """Stream: the connection is dropped mid-body, without the final chunk of the chunked encoding."""
    MISSING_USAGE = "missing_usage"
    """The usage fields are left out of the body or the stream."""
    GZIP = "gzip"
    """The body is gzip-compressed (``Content-Encoding: gzip``), streams flushed event by event."""
    BROTLI = "br"
    """The body is brotli-compressed (``Content-Encoding: br``); needs the ``brotli`` package."""
    LARGE = "large"
    """The reply text is padded to ``large_body_bytes`` (for a stream: one single huge delta event)."""
    BINARY = "binary"
    """A 200 response with ``application/octet-stream`` bytes that are not JSON."""
    INTERLEAVED = "interleaved"
    """Stream: CRLF line endings, comments, pings, a multi-line ``data:`` event, two events per write
    and writes cut at odd byte offsets so events straddle chunk boundaries."""
    STREAM_ERROR = "stream_error"
    """Stream: an error event in the middle of the stream, which then ends."""


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received, as it arrived."""

    method: str
    """HTTP method, e.g. ``"POST"``."""
    path: str
    """URL path without the query, e.g. ``"/v1/chat/completions"``."""
    query: Mapping[str, str]
    """Query parameters (last value wins)."""
    headers: Mapping[str, str]
    """Request headers, names lower-cased (repeated headers joined with ``", "``)."""
    raw_body: bytes
    """The request body as sent."""
    body: Any
    """The body parsed as JSON, or ``None`` if it was empty or not JSON."""
    usage: FakeUsage | None
    """The usage the fake reported for this call, every field resolved (OpenTelemetry semantics);
    ``None`` when the response carried no usage (errors, embeddings-free paths, ``MISSING_USAGE``)."""
    status: int
    """The status code the fake answered with."""


@dataclass
class _Fault:
    remaining: int | None
    status: int | None = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    modes: frozenset[Misbehaviour] = frozenset()
