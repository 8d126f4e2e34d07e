"""What the fake LLM provider is configured with and what it records.

``FakeUsage`` (the token usage it reports), ``FakeReply`` and ``FakeToolCall`` (a scripted
answer: text and tool calls), ``Misbehaviour`` (the bad-output modes it can be told to inject),
``RecordedRequest`` (one request as it arrived) and the pending-fault record the server and its
request handler share.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping, Sequence
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


@dataclass(frozen=True)
class FakeToolCall:
    """One tool (function) call in a scripted reply, in each provider's wire format."""

    name: str
    """The tool's name, e.g. ``"transfer_to_billing"``."""
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    """The call's arguments: a mapping (sent as JSON), or a JSON string sent as it is."""
    id: str | None = None
    """The call id (OpenAI ``call_id``, Anthropic ``tool_use`` id); ``None`` = derived from the
    response and the call's position."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"FakeToolCall.name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.arguments, str | Mapping):
            raise TypeError(
                f"FakeToolCall.arguments must be a mapping or a JSON string, got {self.arguments!r}"
            )

    @property
    def arguments_json(self) -> str:
        """The arguments as the JSON string OpenAI sends."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments), separators=(",", ":"))

    @property
    def arguments_object(self) -> dict[str, Any]:
        """The arguments as the JSON object Anthropic and Gemini send (``{}`` if not an object)."""
        if not isinstance(self.arguments, str):
            return dict(self.arguments)
        try:
            value = json.loads(self.arguments)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class FakeReply:
    """A scripted answer to one request: the assistant's text and the tools it calls.

    Returned by a ``FakeLLMProvider(responder=...)`` function. The output tokens it reports
    (unless ``FakeUsage`` sets them) are its text's words plus one per tool call.

    Example::

        def responder(request: RecordedRequest) -> FakeReply | None:
            if "tools" in request.body and not any(m.get("role") == "tool" for m in request.body["messages"]):
                return FakeReply(tool_calls=[FakeToolCall("transfer_to_billing")])
            return None  # the provider's default text reply
    """

    text: str = ""
    """The assistant's text, streamed one word per delta event; may be empty with tool calls."""
    tool_calls: Sequence[FakeToolCall] = ()
    """The tool calls, in order (OpenAI chat ``tool_calls``, Responses ``function_call`` items,
    Anthropic ``tool_use`` blocks, Gemini ``functionCall`` parts)."""

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"FakeReply.text must be a string, got {self.text!r}")
        calls = tuple(self.tool_calls)
        if not all(isinstance(call, FakeToolCall) for call in calls):
            raise TypeError("FakeReply.tool_calls must hold FakeToolCall objects")
        if not self.text.split() and not calls:
            raise ValueError("a FakeReply needs some text or at least one tool call")
        object.__setattr__(self, "tool_calls", calls)


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


Responder = Callable[[RecordedRequest], "FakeReply | None"]
"""Chooses the answer to a request (``usage`` and ``status`` of the request are not known yet)."""


@dataclass
class _Fault:
    remaining: int | None
    status: int | None = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    modes: frozenset[Misbehaviour] = frozenset()
