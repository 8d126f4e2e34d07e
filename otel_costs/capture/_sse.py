"""Server-sent-event (SSE) response bodies: cut into events at their boundaries, the few that matter parsed.

Owns ``SseBody`` (a bounded SSE splitter: at most ``limit`` bytes of an unfinished event are kept,
an oversized event is skipped and counted) and ``EventHandler`` (reads the events of one dialect
into the ``CallState``). Only events that can carry the model or the usage are parsed: a byte
search for each dialect's markers decides.
"""

from __future__ import annotations

import json
from typing import Final

from otel_costs.capture._dialects import (
    ANTHROPIC_MESSAGES,
    GEMINI_GENERATE,
    OPENAI_CHAT,
    OPENAI_COMPLETIONS,
    OPENAI_EMBEDDINGS,
    OPENAI_RESPONSES,
    CallState,
)

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


class EventHandler:
    """Reads the SSE events of one dialect into the call state."""

    def __init__(self, state: CallState) -> None:
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


class SseBody:
    """Cuts a byte stream into SSE events, keeping at most ``limit`` bytes of an unfinished event."""

    def __init__(self, handler: EventHandler, limit: int) -> None:
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
