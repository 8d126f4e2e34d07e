"""Incremental, bounded parsers of LLM provider responses: what the HTTP capture reads from a body.

``ResponseCapture`` is fed the raw (possibly compressed) response bytes as the application reads
them and, at the end, says which model answered and how many tokens were used, in OpenTelemetry
GenAI semantics (input tokens include cached ones, output tokens include reasoning ones).

It never holds an unbounded body: a JSON body is kept whole only up to ``max_body_bytes``; past
that only its head and tail are kept (the usage record is at the end of every provider's body).
An SSE stream is cut at event boundaries; only events that can carry the model or the usage
are parsed (a cheap byte search decides), and an event longer than ``max_event_bytes`` is dropped.
Nothing here raises on bad input: problems end up in ``CaptureResult.problem``.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any, Final, Protocol

from otel_costs import conventions as conv

# --- API dialects: the wire format of a request path --------------------------------------------
OPENAI_CHAT: Final = "openai.chat_completions"
OPENAI_COMPLETIONS: Final = "openai.completions"
OPENAI_RESPONSES: Final = "openai.responses"
OPENAI_EMBEDDINGS: Final = "openai.embeddings"
ANTHROPIC_MESSAGES: Final = "anthropic.messages"
GEMINI_GENERATE: Final = "gemini.generate_content"

_MAX_TOKENS: Final = 2**53
_HEAD_BYTES: Final = 64 * 1024
_TAIL_BYTES: Final = 256 * 1024
_DECODE_STEP: Final = 256 * 1024
_MODEL_RE: Final = re.compile(r'"model"\s*:\s*"([^"\\]{1,256})"')
_MODEL_VERSION_RE: Final = re.compile(r'"modelVersion"\s*:\s*"([^"\\]{1,256})"')
_DECODER: Final = json.JSONDecoder()
_JSON_WHITESPACE: Final = " \t\n\r"


def loads_json(data: bytes) -> Any:
    """``json.loads(data)``, quicker for the usual UTF-8 object or array: same result, same errors.

    ``json.loads`` of bytes first guesses the encoding and runs two whitespace regexes, about
    half of its time on a small body. A body starting with ``{`` or ``[`` can only be UTF-8 (a
    UTF-16/32 body or a BOM starts otherwise), so it is decoded and scanned directly; anything
    else goes to ``json.loads``. Raises ``ValueError`` (``JSONDecodeError``, ``UnicodeDecodeError``).
    """
    if data[:1] not in (b"{", b"["):
        return json.loads(data)
    text = data.decode("utf-8")
    obj, end = _DECODER.raw_decode(text)
    if end != len(text) and text[end:].strip(_JSON_WHITESPACE):
        raise json.JSONDecodeError("Extra data", text, end)
    return obj


@dataclass(frozen=True)
class ApiCall:
    """What a request path says about an LLM API call."""

    dialect: str
    """The wire format, one of the dialect constants of this module."""
    operation: str
    """``gen_ai.operation.name``: ``chat``, ``text_completion``, ``embeddings`` or ``generate_content``."""
    provider: str
    """The ``gen_ai.provider.name`` this API belongs to when no host rule names another."""
    path_model: str | None = None
    """The model named in the path (Gemini), else ``None``."""


@functools.lru_cache(maxsize=512)
def api_for_path(path: str) -> ApiCall | None:
    """The LLM API a POST to ``path`` calls, or ``None`` if it is not a billable LLM endpoint.

    >>> api_for_path("/v1/chat/completions").operation
    'chat'
    """
    if path.endswith("/chat/completions"):
        return ApiCall(OPENAI_CHAT, "chat", "openai")
    if path.endswith("/responses"):
        return ApiCall(OPENAI_RESPONSES, "chat", "openai")
    if path.endswith("/embeddings"):
        return ApiCall(OPENAI_EMBEDDINGS, "embeddings", "openai")
    if path.endswith("/completions"):
        return ApiCall(OPENAI_COMPLETIONS, "text_completion", "openai")
    if path.endswith("/v1/messages"):
        return ApiCall(ANTHROPIC_MESSAGES, "chat", "anthropic")
    if path.endswith((":generateContent", ":streamGenerateContent")):
        _, sep, rest = path.rpartition("/models/")
        model = rest.split(":", 1)[0] if sep else ""
        provider = "gcp.vertex_ai" if "/publishers/google/" in path else "gcp.gemini"
        return ApiCall(GEMINI_GENERATE, "generate_content", provider, model or None)
    return None


@dataclass(frozen=True)
class TokenUsage:
    """Token counts of one call in OpenTelemetry GenAI semantics; ``None`` = not reported."""

    input_tokens: int | None = None
    """All input tokens, cached ones included."""
    output_tokens: int | None = None
    """All output tokens, reasoning ones included."""
    cache_read_tokens: int | None = None
    """Input tokens served from the provider's prompt cache."""
    cache_write_tokens: int | None = None
    """Input tokens written to the provider's prompt cache."""
    reasoning_tokens: int | None = None
    """Output tokens spent on reasoning."""

    def attributes(self) -> dict[str, int]:
        """The ``gen_ai.usage.*`` span attributes of the fields that are set."""
        pairs = (
            (conv.GEN_AI_USAGE_INPUT_TOKENS, self.input_tokens),
            (conv.GEN_AI_USAGE_OUTPUT_TOKENS, self.output_tokens),
            (conv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, self.cache_read_tokens),
            (conv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, self.cache_write_tokens),
            (conv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, self.reasoning_tokens),
        )
        return {name: value for name, value in pairs if value is not None}


@dataclass(frozen=True)
class CaptureResult:
    """What was learned from one response body."""

    usage: TokenUsage | None
    """The usage seen, possibly partial (see ``complete``)."""
    complete: bool
    """True when the final usage record was seen (the usage is the call's whole usage)."""
    response_model: str | None
    """The model the provider says answered."""
    response_id: str | None
    """The provider's id of the response."""
    error_type: str | None
    """The provider's error type when the body or the stream carried an error."""
    problem: str | None
    """Why the usage is missing or may be incomplete; ``None`` when nothing went wrong."""
    stream: bool
    """True for a server-sent-events body."""


class _Body(Protocol):
    def feed(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class _Decoder(Protocol):
    def decode(self, data: bytes, sink: _Body) -> None: ...
    def flush(self, sink: _Body) -> None: ...


class ResponseCapture:
    """Parses one response body incrementally; ``feed`` raw bytes, then ``close``.

    Example::

        capture = ResponseCapture(OPENAI_CHAT, content_type="application/json", content_encoding="")
        capture.feed(body)
        result = capture.close(eof=True)
    """

    def __init__(
        self,
        dialect: str,
        *,
        content_type: str,
        content_encoding: str,
        max_body_bytes: int = 2 * 1024 * 1024,
        max_event_bytes: int = 1024 * 1024,
    ) -> None:
        self._state = _State(dialect)
        self._problem: str | None = None
        content_type = content_type.lower()
        self._stream = "text/event-stream" in content_type
        if (
            not self._stream
            and content_type
            and "json" not in content_type
            and "text/plain" not in content_type
        ):
            self._problem = f"the response is not JSON (content-type {content_type[:100]!r})"
        self._body: _Body
        if self._stream:
            self._body = _SseBody(_EventHandler(self._state), max_event_bytes)
        else:
            self._body = _JsonBody(self._state, max_body_bytes)
        self._decoder: _Decoder | None = None
        if content_encoding:  # most responses have none: skip the parsing below
            encodings = [e.strip().lower() for e in content_encoding.split(",") if e.strip()]
            encodings = [e for e in encodings if e != "identity"]
            if len(encodings) > 1:
                self._problem = f"cannot decode stacked content-encodings {content_encoding!r}"
            elif encodings:
                self._decoder = _decoder_for(encodings[0])
                if self._decoder is None:
                    self._problem = f"cannot decode content-encoding {encodings[0]!r}"
        self._broken = self._problem is not None

    def feed(self, data: bytes) -> None:
        """Parse the next raw bytes of the body. Never raises."""
        if self._broken:
            return
        try:
            if self._decoder is None:
                self._body.feed(data)
            else:
                self._decoder.decode(data, self._body)
        except Exception as exc:
            self._fail(exc)

    def close(self, *, eof: bool) -> CaptureResult:
        """Finish parsing; ``eof`` says whether the whole body was read. Never raises."""
        if not self._broken:
            try:
                if eof and self._decoder is not None:
                    self._decoder.flush(self._body)
                # Parsed even when the body was not read to its end: it may all be here already.
                self._body.close()
            except Exception as exc:
                self._fail(exc)
        state = self._state
        problem = self._problem
        if problem is None and not state.complete:
            if not eof:
                problem = "the body was not read to its end"
            elif state.problem:
                problem = state.problem
            elif state.dropped_events:
                problem = f"{state.dropped_events} oversized stream event(s) were skipped"
            elif self._stream:
                problem = "the stream ended before its usage record"
            else:
                problem = "the response carried no usage"
        problem = problem or state.problem
        return CaptureResult(
            usage=state.usage(),
            complete=state.complete,
            response_model=state.model,
            response_id=state.response_id,
            error_type=state.error_type,
            problem=problem,
            stream=self._stream,
        )

    def _fail(self, exc: Exception) -> None:
        self._broken = True
        if self._problem is None:
            self._problem = f"could not parse the body: {type(exc).__name__}: {exc}"[:300]


# ---------------------------------------------------------------------------------------------
# Content decoding (bounded: never more than _DECODE_STEP bytes of output at a time)
# ---------------------------------------------------------------------------------------------


class _ZlibDecoder:
    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._inner = zlib.decompressobj(wbits)
        self._head: bytes | None = b"" if wbits < 0 else None

    def decode(self, data: bytes, sink: _Body) -> None:
        if self._head is not None:
            # "deflate" is mostly sent zlib-wrapped although it names raw deflate: sniff the
            # two-byte zlib header before decoding anything.
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return
            self._head = None
            if data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0:
                self._inner = zlib.decompressobj(zlib.MAX_WBITS)
        chunk = self._inner.decompress(data, _DECODE_STEP)
        while True:
            if chunk:
                sink.feed(chunk)
            tail = self._inner.unconsumed_tail
            if not tail:
                return
            chunk = self._inner.decompress(tail, _DECODE_STEP)

    def flush(self, sink: _Body) -> None:
        rest = self._inner.flush()
        if rest:
            sink.feed(rest)


class _BrotliDecoder:
    def __init__(self, module: Any) -> None:
        self._inner = module.Decompressor()

    def decode(self, data: bytes, sink: _Body) -> None:
        chunk = self._inner.process(data, output_buffer_limit=_DECODE_STEP)
        while True:
            if chunk:
                sink.feed(chunk)
            if self._inner.can_accept_more_data():
                return
            chunk = self._inner.process(b"", output_buffer_limit=_DECODE_STEP)

    def flush(self, sink: _Body) -> None:
        return None


def _decoder_for(encoding: str) -> _Decoder | None:
    if encoding in ("gzip", "x-gzip"):
        return _ZlibDecoder(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return _ZlibDecoder(-zlib.MAX_WBITS)
    if encoding == "br":
        for name in ("brotli", "brotlicffi"):
            try:
                return _BrotliDecoder(importlib.import_module(name))
            except ImportError:
                continue
    return None


# ---------------------------------------------------------------------------------------------
# What is known about the call so far
# ---------------------------------------------------------------------------------------------


class _State:
    """The model, usage and outcome of one call, filled in by the body parsers."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.model: str | None = None
        self.response_id: str | None = None
        self.error_type: str | None = None
        self.problem: str | None = None
        self.complete = False
        self.input: int | None = None
        self.output: int | None = None
        self.cache_read: int | None = None
        self.cache_write: int | None = None
        self.reasoning: int | None = None
        # Anthropic reports input, cache read and cache write separately: summed in usage().
        self.raw_input: int | None = None
        self.dropped_events = 0

    def usage(self) -> TokenUsage | None:
        if not self.has_usage():
            return None
        input_tokens = self.input
        if self.dialect == ANTHROPIC_MESSAGES and self.raw_input is not None:
            input_tokens = self.raw_input + (self.cache_read or 0) + (self.cache_write or 0)
        return TokenUsage(input_tokens, self.output, self.cache_read, self.cache_write, self.reasoning)

    def has_usage(self) -> bool:
        return (
            self.input is not None
            or self.raw_input is not None
            or self.output is not None
            or self.cache_read is not None
            or self.cache_write is not None
            or self.reasoning is not None
        )

    def note_model(self, obj: dict[str, Any]) -> None:
        if self.model is None:
            model = obj.get("modelVersion" if self.dialect == GEMINI_GENERATE else "model")
            if isinstance(model, str) and 0 < len(model) <= 256:
                self.model = model
        if self.response_id is None:
            rid = obj.get("responseId" if self.dialect == GEMINI_GENERATE else "id")
            if isinstance(rid, str) and 0 < len(rid) <= 256:
                self.response_id = rid

    def note_error(self, obj: dict[str, Any]) -> bool:
        """Record an error object (any provider's shape); True if ``obj`` was one."""
        error = obj.get("error")
        if obj.get("type") == "error" and isinstance(error, dict):  # Anthropic
            kind = error.get("type")
        elif isinstance(error, dict):  # OpenAI, Gemini
            kind = error.get("type") or error.get("status") or error.get("code")
        elif obj.get("type") == "error":  # OpenAI Responses stream error event
            kind = obj.get("code") or "error"
        else:
            return False
        self.error_type = str(kind)[:100] if kind is not None else "error"
        return True

    def _tokens(self, container: dict[str, Any], key: str, sub: str | None = None) -> int | None:
        """The token count at ``container[key]`` (``container[key][sub]`` with ``sub``), if valid."""
        value = container.get(key)
        if sub is not None:
            value = value.get(sub) if isinstance(value, dict) else None
        if value is None:
            return None
        if type(value) is not int or not 0 <= value < _MAX_TOKENS:  # bool is not an int here
            path = f"{key}.{sub}" if sub is not None else key
            self.problem = f"invalid usage field {path}={value!r}"[:200]
            return None
        return value

    def note_usage(self, usage: Any, *, final: bool = True) -> None:
        """Read a usage object of this dialect; ``final`` marks the call's last usage record."""
        if not isinstance(usage, dict):
            return
        t = self._tokens
        if self.dialect == ANTHROPIC_MESSAGES:
            # message_delta usage is cumulative and may repeat the input fields: take what it has.
            for attr, key in (
                ("raw_input", "input_tokens"),
                ("cache_read", "cache_read_input_tokens"),
                ("cache_write", "cache_creation_input_tokens"),
            ):
                value = t(usage, key)
                if value is not None:
                    setattr(self, attr, value)
            if final:
                self.output = t(usage, "output_tokens")
                self.reasoning = t(usage, "output_tokens_details", "thinking_tokens")
        elif self.dialect == GEMINI_GENERATE:
            prompt = t(usage, "promptTokenCount")
            tool_prompt = t(usage, "toolUsePromptTokenCount")
            candidates = t(usage, "candidatesTokenCount")
            thoughts = t(usage, "thoughtsTokenCount")
            if prompt is not None or tool_prompt is not None:
                self.input = (prompt or 0) + (tool_prompt or 0)
            if candidates is not None or thoughts is not None:
                self.output = (candidates or 0) + (thoughts or 0)
            self.cache_read = t(usage, "cachedContentTokenCount")
            self.reasoning = thoughts
        elif "prompt_tokens" in usage or "completion_tokens" in usage:
            # Chat completions, completions, embeddings and most OpenAI-compatible servers.
            self.input = t(usage, "prompt_tokens")
            if self.dialect != OPENAI_EMBEDDINGS or "completion_tokens" in usage:
                self.output = t(usage, "completion_tokens")
            self.cache_read = t(usage, "prompt_tokens_details", "cached_tokens")
            self.cache_write = t(usage, "prompt_tokens_details", "cache_write_tokens")
            self.reasoning = t(usage, "completion_tokens_details", "reasoning_tokens")
        else:
            # The Responses API shape (also used by some compatible servers on chat completions).
            self.input = t(usage, "input_tokens")
            self.output = t(usage, "output_tokens")
            self.cache_read = t(usage, "input_tokens_details", "cached_tokens")
            self.cache_write = t(usage, "input_tokens_details", "cache_write_tokens")
            self.reasoning = t(usage, "output_tokens_details", "reasoning_tokens")
        if final and self.has_usage():
            self.complete = True

    def note_body(self, obj: Any) -> None:
        """Read a whole (non-streamed) response body."""
        if isinstance(obj, list) and self.dialect == GEMINI_GENERATE:
            # Gemini streamGenerateContent without alt=sse: a JSON array of chunks.
            for item in obj:
                if isinstance(item, dict):
                    self.note_body(item)
            return
        if not isinstance(obj, dict):
            self.problem = "the response body is JSON but not an object"
            return
        self.note_error(obj)
        self.note_model(obj)
        if self.dialect == GEMINI_GENERATE:
            if "usageMetadata" in obj:
                self.note_usage(obj["usageMetadata"], final=False)
                self.complete = self.has_usage()
            return
        if "usage" in obj:
            self.note_usage(obj["usage"])
        elif isinstance(obj.get("response"), dict):
            self.note_body(obj["response"])


# ---------------------------------------------------------------------------------------------
# Non-streamed JSON bodies
# ---------------------------------------------------------------------------------------------


class _JsonBody:
    """Keeps the whole body up to ``limit`` bytes, else its head and tail only."""

    def __init__(self, state: _State, limit: int) -> None:
        self._state = state
        self._limit = limit
        # The chunks of a body within the limit, joined only at the end: a body that arrives in
        # one chunk (most of them) is parsed from that chunk, never copied.
        self._chunks: list[bytes] | None = []
        self._buffered = 0
        self._head = b""
        self._tail = bytearray()
        self._size = 0

    def feed(self, data: bytes) -> None:
        self._size += len(data)
        chunks = self._chunks
        if chunks is not None:
            chunks.append(bytes(data))  # a copy only if given a mutable buffer
            self._buffered += len(data)
            if self._buffered <= self._limit:
                return
            buffer = b"".join(chunks)
            self._head = buffer[:_HEAD_BYTES]
            self._tail = bytearray(buffer[-_TAIL_BYTES:])
            self._chunks = None
            return
        self._tail += data
        if len(self._tail) > 2 * _TAIL_BYTES:
            del self._tail[:-_TAIL_BYTES]

    def close(self) -> None:
        state = self._state
        chunks = self._chunks
        if chunks is not None:
            self._chunks = None
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if not body or body.isspace():  # isspace: the whitespace strip() removes, without a copy
                state.problem = "the response body is empty"
                return
            try:
                obj = loads_json(body)
            except ValueError:
                state.problem = "the response body is not valid JSON"
                return
            state.note_body(obj)
            return
        self._close_large()

    def _close_large(self) -> None:
        """Find the model in the head and the usage record in the tail of a body too large to keep."""
        state = self._state
        head = self._head.decode("utf-8", "replace")
        tail = bytes(self._tail[-_TAIL_BYTES:]).decode("utf-8", "replace")
        gemini = state.dialect == GEMINI_GENERATE
        match = (_MODEL_VERSION_RE if gemini else _MODEL_RE).search(tail if gemini else head)
        if match:
            state.model = match.group(1)
        key = '"usageMetadata"' if gemini else '"usage"'
        at = tail.rfind(key)
        usage: Any = None
        colon = tail.find(":", at + len(key)) if at >= 0 else -1
        if colon >= 0:
            start = colon + 1
            while start < len(tail) and tail[start] in " \t\r\n":
                start += 1
            try:
                usage, _ = json.JSONDecoder().raw_decode(tail, start)
            except ValueError:
                usage = None
        if not isinstance(usage, dict):
            state.problem = (
                f"no usage record found in the last {_TAIL_BYTES} bytes of a {self._size}-byte body"
            )
            return
        state.note_usage(usage, final=True)
        if gemini:
            state.complete = state.has_usage()


# ---------------------------------------------------------------------------------------------
# Server-sent events
# ---------------------------------------------------------------------------------------------

# Byte strings that only occur in events worth parsing (JSON keys and event names are never
# escaped, and a raw quote cannot occur inside a JSON string), per dialect.
_MODEL_PROBES: Final = 3
_MARKERS: Final[dict[str, tuple[bytes, ...]]] = {
    # '_tokens"' is in both usage shapes (prompt_tokens, input_tokens): one scan instead of two.
    OPENAI_CHAT: (b'_tokens"', b'"error"'),
    OPENAI_COMPLETIONS: (b'"prompt_tokens"', b'"error"'),
    OPENAI_EMBEDDINGS: (b'"prompt_tokens"', b'"error"'),
    OPENAI_RESPONSES: (
        b'"response.completed"',
        b'"response.incomplete"',
        b'"response.failed"',
        b'"error"',
    ),
    ANTHROPIC_MESSAGES: (b'"message_start"', b'"message_delta"', b'"error"'),
    GEMINI_GENERATE: (b'"usageMetadata"', b'"finishReason"', b'"error"'),
}


class _EventHandler:
    """Reads the SSE events of one dialect into the call state."""

    def __init__(self, state: _State) -> None:
        self.state = state
        self.markers = _MARKERS.get(state.dialect, (b'"usage"', b'"error"'))
        # The first events are parsed whatever they hold, to find the model (it is in the first
        # event of every provider's stream); after that only events holding a marker are.
        self.probes = _MODEL_PROBES

    def on_event(self, name: bytes | None, data: bytes) -> None:
        state = self.state
        if data == b"[DONE]":
            return
        if state.model is not None and not any(marker in data for marker in self.markers):
            return
        try:
            obj = json.loads(data)
        except ValueError:
            state.problem = state.problem or "a stream event is not valid JSON"
            return
        if not isinstance(obj, dict):
            return
        if state.note_error(obj):
            if state.problem is None or state.problem == "a stream event is not valid JSON":
                state.problem = f"the stream carried an error event ({state.error_type})"
            return
        dialect = state.dialect
        if dialect == ANTHROPIC_MESSAGES:
            kind = obj.get("type")
            if kind == "message_start" and isinstance(obj.get("message"), dict):
                message = obj["message"]
                state.note_model(message)
                # message_start's output_tokens is a placeholder: only the input side counts here.
                state.note_usage(message.get("usage"), final=False)
            elif kind == "message_delta":
                state.note_usage(obj.get("usage"), final=True)
        elif dialect == OPENAI_RESPONSES:
            response = obj.get("response")
            if isinstance(response, dict):
                state.note_model(response)
                if obj.get("type") in ("response.completed", "response.incomplete", "response.failed"):
                    state.note_usage(response.get("usage"))
                    if obj.get("type") == "response.failed":
                        state.note_error(response)
        elif dialect == GEMINI_GENERATE:
            state.note_model(obj)
            if "usageMetadata" in obj:
                state.note_usage(obj["usageMetadata"], final=False)
            candidates = obj.get("candidates")
            if isinstance(candidates, list) and any(
                isinstance(c, dict) and c.get("finishReason") for c in candidates
            ):
                state.complete = state.has_usage()
        else:
            state.note_model(obj)
            if isinstance(obj.get("usage"), dict):
                state.note_usage(obj["usage"])


class _SseBody:
    """Cuts a byte stream into SSE events, keeping at most ``limit`` bytes of an unfinished event."""

    def __init__(self, handler: _EventHandler, limit: int) -> None:
        self._handler = handler
        self._limit = limit
        self._pending = b""
        self._skipping = False

    def feed(self, data: bytes) -> None:
        buffer = self._pending + data if self._pending else data
        if b"\r" in buffer:
            # Normalise CRLF and CR line endings; a trailing CR may be half of a CRLF.
            trailing_cr = buffer.endswith(b"\r")
            if trailing_cr:
                buffer = buffer[:-1]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if trailing_cr:
                buffer += b"\r"
        if self._skipping:
            end = buffer.find(b"\n\n")
            if end < 0:
                self._pending = buffer[-2:]
                return
            self._skipping = False
            buffer = buffer[end + 2 :]
        cut = buffer.rfind(b"\n\n")
        if cut < 0:
            self._pending = buffer
            self._check_size()
            return
        self._pending = buffer[cut + 2 :]
        self._process(buffer, cut)
        self._check_size()

    def _process(self, block: bytes, end: int) -> None:
        """Parse the events of ``block[:end]`` (whole events) that may matter, in order."""
        handler = self._handler
        position = 0
        while handler.probes > 0 and position < end:
            stop = block.find(b"\n\n", position, end)
            stop = end if stop < 0 else stop
            if stop > position:
                self._event(block[position:stop])
                handler.probes = 0 if handler.state.model is not None else handler.probes - 1
            position = stop + 2
        if position >= end:
            return
        # Find the few events holding a marker with byte searches, instead of splitting them all.
        spans: set[tuple[int, int]] = set()
        for marker in handler.markers:
            found = block.find(marker, position, end)
            while found >= 0:
                start = block.rfind(b"\n\n", position, found)
                start = position if start < 0 else start + 2
                stop = block.find(b"\n\n", found, end)
                stop = end if stop < 0 else stop
                spans.add((start, stop))
                found = block.find(marker, stop, end)
        for start, stop in sorted(spans):
            self._event(block[start:stop])

    def _check_size(self) -> None:
        if len(self._pending) > self._limit:
            # Drop the oversized event; skip to the next event boundary.
            self._handler.state.dropped_events += 1
            self._pending = self._pending[-2:]
            self._skipping = True

    def _event(self, raw: bytes) -> None:
        name: bytes | None = None
        data: list[bytes] = []
        for line in raw.split(b"\n"):
            if line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            elif line.startswith(b"event:"):
                name = line[6:].strip()
        if data:
            self._handler.on_event(name, b"\n".join(data))

    def close(self) -> None:
        if self._pending and not self._skipping:
            pending = self._pending.rstrip(b"\r\n")
            self._pending = b""
            # A final event without its blank line still counts (servers that just close).
            if pending.strip():
                self._process(pending, len(pending))
