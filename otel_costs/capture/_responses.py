"""Incremental, bounded parsers of LLM provider responses: what the HTTP capture reads from a body.

``ResponseCapture`` is fed the raw (possibly compressed) response bytes as the application reads
them and, at the end, says which model answered and how many tokens were used, in OpenTelemetry
GenAI semantics (input tokens include cached ones, output tokens include reasoning ones).

It never holds an unbounded body: a JSON body is kept whole only up to ``max_body_bytes``; past
that only its head and tail are kept (the usage record is at the end of every provider's body).
An SSE stream goes to ``_sse.SseBody``. Content decoding (gzip, deflate, brotli) is bounded too.
Nothing here raises on bad input: problems end up in ``CaptureResult.problem``.
"""

from __future__ import annotations

import importlib
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from otel_costs import conventions as conv
from otel_costs.capture._dialects import GEMINI_GENERATE, CallState, loads_json
from otel_costs.capture._sse import EventHandler, SseBody
from otel_costs.pricing._usage import TokenUsage

_HEAD_BYTES: Final = 64 * 1024
_TAIL_BYTES: Final = 256 * 1024
_DECODE_STEP: Final = 256 * 1024
_MODEL_RE: Final = re.compile(r'"model"\s*:\s*"([^"\\]{1,256})"')
_MODEL_VERSION_RE: Final = re.compile(r'"modelVersion"\s*:\s*"([^"\\]{1,256})"')


@dataclass(frozen=True)
class CaptureResult:
    """What was learned from one response body."""

    usage_attributes: Mapping[str, int]
    """The ``gen_ai.usage.*`` attributes of the counts the provider reported, possibly partial (see
    ``complete``); a count it did not report is left out (not written as 0)."""
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
    usage_flag: tuple[str, str] | None = None
    """``(cost.status, reason)`` when the provider's usage record is not whole although it was
    read: ``invalid_usage`` for an unusable field (negative, bool, float, string: "invalid usage
    field prompt_tokens=-5"), ``partial`` for a count it lacks or sends as ``null``; else ``None``."""

    @property
    def usage(self) -> TokenUsage | None:
        """The usage seen as pricing's ``TokenUsage`` (a count not reported is 0), ``None`` if none was.

        The parsers tell "not reported" from 0 (only reported counts go on the span); pricing's
        ``TokenUsage`` has no "not reported": this is where the one becomes the other.
        """
        counts = self.usage_attributes
        if not counts:
            return None
        return TokenUsage(
            counts.get(conv.GEN_AI_USAGE_INPUT_TOKENS, 0),
            counts.get(conv.GEN_AI_USAGE_OUTPUT_TOKENS, 0),
            counts.get(conv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, 0),
            counts.get(conv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, 0),
            counts.get(conv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, 0),
        )


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
        self._state = CallState(dialect)
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
            self._body = SseBody(EventHandler(self._state), max_event_bytes)
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
        usage_flag: tuple[str, str] | None = None
        if state.invalid is not None:
            usage_flag = (conv.STATUS_INVALID_USAGE, state.invalid)
        else:
            missing = state.missing_count()
            if missing is not None:
                usage_flag = (conv.STATUS_PARTIAL, missing)
                problem = problem or missing
        return CaptureResult(
            usage_attributes=state.usage_attributes(),
            complete=state.complete,
            response_model=state.model,
            response_id=state.response_id,
            error_type=state.error_type,
            problem=problem,
            stream=self._stream,
            usage_flag=usage_flag,
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
# Non-streamed JSON bodies
# ---------------------------------------------------------------------------------------------


class _JsonBody:
    """Keeps the whole body up to ``limit`` bytes, else its head and tail only."""

    def __init__(self, state: CallState, limit: int) -> None:
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
