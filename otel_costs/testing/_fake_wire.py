"""The fake provider's wire formats: response bodies and stream events, per provider API.

OpenAI (chat completions, Responses, embeddings, legacy completions), Anthropic Messages and
Gemini ``generateContent``, as each provider's API sends them (field names, usage semantics,
event order), plus each provider's error body and the route of a request path to its API.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from otel_costs.testing._fake_model import FakeToolCall, FakeUsage

_CREATED: Final = 1_735_689_600  # 2025-01-01T00:00:00Z: fixed, so bodies are reproducible.

Events = Iterator[tuple[str | None, Any]]
"""A stream as (SSE event name or None, JSON payload or a raw ``str`` data value)."""


def api_of(path: str) -> str | None:
    if path.endswith("/chat/completions"):
        return "openai_chat"
    if path.endswith("/responses"):
        return "openai_responses"
    if path.endswith("/embeddings"):
        return "openai_embeddings"
    if path.endswith("/completions"):
        return "openai_completions"
    if path.endswith("/messages"):
        return "anthropic"
    if path.endswith((":generateContent", ":streamGenerateContent")) and "/models/" in path:
        return "gemini"
    return None


def error_body(api: str, status: int, message: str | None = None) -> dict[str, Any]:
    message = message or f"fake provider error {status}"
    if api == "anthropic":
        kind = {429: "rate_limit_error", 529: "overloaded_error", 400: "invalid_request_error"}
        return {"type": "error", "error": {"type": kind.get(status, "api_error"), "message": message}}
    if api == "gemini":
        names = {400: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}
        return {"error": {"code": status, "message": message, "status": names.get(status, "INTERNAL")}}
    kind_openai = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind_openai, "param": None, "code": None}}


@dataclass
class Builder:
    """Builds bodies and stream events of one API call in its provider's wire format."""

    api: str
    model: str
    response_model: str
    serial: int
    pieces: list[str]
    usage: FakeUsage
    include_usage: bool
    request: dict[str, Any]
    tool_calls: tuple[FakeToolCall, ...] = ()

    def _call_id(self, index: int, prefix: str = "call") -> str:
        call = self.tool_calls[index]
        return call.id if call.id is not None else f"{prefix}_fake{self.serial:06d}_{index}"

    @property
    def _has_message(self) -> bool:
        """Whether the reply has a text part (a reply of tool calls only has none)."""
        return bool(self.pieces) or not self.tool_calls

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def _in(self) -> int:
        return self.usage.input_tokens or 0

    @property
    def _out(self) -> int:
        return self.usage.output_tokens or 0

    # --- OpenAI ---------------------------------------------------------------------------
    def _openai_chat_usage(self) -> dict[str, Any]:
        u = self.usage
        return {
            "prompt_tokens": self._in,
            "completion_tokens": self._out,
            "total_tokens": self._in + self._out,
            "prompt_tokens_details": self._openai_input_details("audio_tokens"),
            "completion_tokens_details": {
                "reasoning_tokens": u.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _openai_input_details(self, *zero_fields: str) -> dict[str, Any]:
        details: dict[str, Any] = {"cached_tokens": self.usage.cache_read_tokens}
        details.update(dict.fromkeys(zero_fields, 0))
        if self.usage.cache_write_tokens:
            details["cache_write_tokens"] = self.usage.cache_write_tokens
        return details

    def _responses_usage(self) -> dict[str, Any]:
        return {
            "input_tokens": self._in,
            "input_tokens_details": self._openai_input_details(),
            "output_tokens": self._out,
            "output_tokens_details": {"reasoning_tokens": self.usage.reasoning_tokens},
            "total_tokens": self._in + self._out,
        }

    def _response_object(self, status: str, text: str | None) -> dict[str, Any]:
        output: list[dict[str, Any]] = []
        if text is not None:
            if self._has_message:
                output.append(self._message_item("completed", text))
            output += [self._function_call_item(i, "completed") for i in range(len(self.tool_calls))]
        return {
            "id": f"resp_fake{self.serial:06d}",
            "object": "response",
            "created_at": _CREATED,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "instructions": self.request.get("instructions"),
            "max_output_tokens": self.request.get("max_output_tokens"),
            "model": self.response_model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": True,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": self._responses_usage() if status == "completed" and self.include_usage else None,
            "user": None,
            "metadata": {},
        }

    def _message_item(self, status: str, text: str) -> dict[str, Any]:
        content = (
            [{"type": "output_text", "text": text, "annotations": []}]
            if text or status == "completed"
            else []
        )
        return {
            "type": "message",
            "id": f"msg_fake{self.serial:06d}",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def _function_call_item(self, index: int, status: str) -> dict[str, Any]:
        call = self.tool_calls[index]
        return {
            "type": "function_call",
            "id": f"fc_fake{self.serial:06d}_{index}",
            "call_id": self._call_id(index),
            "name": call.name,
            "arguments": call.arguments_json if status == "completed" else "",
            "status": status,
        }

    def _chat_tool_calls(self) -> list[dict[str, Any]]:
        return [
            {
                "id": self._call_id(i),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
            for i, call in enumerate(self.tool_calls)
        ]

    @property
    def _finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"

    def _chat_chunk(self, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": f"chatcmpl-fake{self.serial:06d}",
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": self.response_model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    # --- Anthropic ------------------------------------------------------------------------
    def _anthropic_usage(self, *, final: bool) -> dict[str, Any]:
        u = self.usage
        return {
            "input_tokens": self._in - u.cache_read_tokens - u.cache_write_tokens,
            "cache_creation_input_tokens": u.cache_write_tokens,
            "cache_read_input_tokens": u.cache_read_tokens,
            "output_tokens": self._out if final else 1,
            "service_tier": "standard",
        }

    def _anthropic_message(self, text: str | None, *, final: bool) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": f"msg_fake{self.serial:06d}",
            "type": "message",
            "role": "assistant",
            "model": self.response_model,
            "content": self._anthropic_content(text),
            "stop_reason": ("tool_use" if self.tool_calls else "end_turn") if final else None,
            "stop_sequence": None,
        }
        if self.include_usage:
            message["usage"] = self._anthropic_usage(final=final)
        return message

    def _anthropic_content(self, text: str | None) -> list[dict[str, Any]]:
        if text is None:
            return []
        content: list[dict[str, Any]] = [{"type": "text", "text": text}] if self._has_message else []
        for index, call in enumerate(self.tool_calls):
            content.append(self._tool_use_block(index, call.arguments_object))
        return content

    def _tool_use_block(self, index: int, arguments: dict[str, Any]) -> dict[str, Any]:
        name = self.tool_calls[index].name
        return {"type": "tool_use", "id": self._call_id(index, "toolu"), "name": name, "input": arguments}

    # --- Gemini ---------------------------------------------------------------------------
    def _gemini_usage(self, final: bool, pieces_so_far: int) -> dict[str, Any]:
        u = self.usage
        candidates = self._out - u.reasoning_tokens if final else pieces_so_far
        usage: dict[str, Any] = {
            "promptTokenCount": self._in,
            "candidatesTokenCount": candidates,
            "totalTokenCount": self._in + (self._out if final else pieces_so_far),
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self._in}],
        }
        if u.cache_read_tokens:
            usage["cachedContentTokenCount"] = u.cache_read_tokens
        if final and u.reasoning_tokens:
            usage["thoughtsTokenCount"] = u.reasoning_tokens
        return usage

    def _gemini_chunk(self, text: str, final: bool, pieces_so_far: int) -> dict[str, Any]:
        parts: list[dict[str, Any]] = [{"text": text}] if self._has_message else []
        if final:
            parts += [
                {"functionCall": {"name": call.name, "args": call.arguments_object}}
                for call in self.tool_calls
            ]
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if final:
            candidate["finishReason"] = "STOP"
        chunk: dict[str, Any] = {"candidates": [candidate]}
        if self.include_usage:
            chunk["usageMetadata"] = self._gemini_usage(final, pieces_so_far)
        chunk["modelVersion"] = self.response_model
        chunk["responseId"] = f"fake{self.serial:06d}"
        return chunk

    # --- public builders ------------------------------------------------------------------
    def body(self) -> dict[str, Any]:
        """The non-streamed response body."""
        if self.api == "openai_chat":
            body: dict[str, Any] = {
                "id": f"chatcmpl-fake{self.serial:06d}",
                "object": "chat.completion",
                "created": _CREATED,
                "model": self.response_model,
                "choices": [
                    {
                        "index": 0,
                        "message": self._chat_message(),
                        "logprobs": None,
                        "finish_reason": self._finish_reason,
                    }
                ],
            }
            if self.include_usage:
                body["usage"] = self._openai_chat_usage()
            body["service_tier"] = "default"
            body["system_fingerprint"] = "fp_fake"
            return body
        if self.api == "openai_completions":
            body = {
                "id": f"cmpl-fake{self.serial:06d}",
                "object": "text_completion",
                "created": _CREATED,
                "model": self.response_model,
                "choices": [{"text": self.text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
            }
            if self.include_usage:
                body["usage"] = {
                    "prompt_tokens": self._in,
                    "completion_tokens": self._out,
                    "total_tokens": self._in + self._out,
                }
            return body
        if self.api == "openai_responses":
            return self._response_object("completed", self.text)
        if self.api == "anthropic":
            return self._anthropic_message(self.text, final=True)
        return self._gemini_chunk(self.text, True, len(self.pieces))

    def _chat_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.text if self._has_message else None,
            "refusal": None,
            "annotations": [],
        }
        if self.tool_calls:
            message["tool_calls"] = self._chat_tool_calls()
        return message

    def embeddings(self) -> dict[str, Any]:
        """The body of an embeddings response (base64 when the request asked for it, as the SDK does)."""
        raw_input = self.request.get("input")
        inputs = raw_input if isinstance(raw_input, list) else [raw_input]
        dimensions = self.request.get("dimensions")
        size = dimensions if isinstance(dimensions, int) and 0 < dimensions <= 4096 else 8
        data = []
        for index, item in enumerate(inputs):
            digest = hashlib.sha256(json.dumps(item).encode()).digest()
            vector = [(digest[i % len(digest)] - 128) / 128.0 for i in range(size)]
            embedding: Any = vector
            if self.request.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        body: dict[str, Any] = {"object": "list", "data": data, "model": self.response_model}
        if self.include_usage:
            body["usage"] = {"prompt_tokens": self._in, "total_tokens": self._in}
        return body

    def error_event(self) -> tuple[str | None, Any]:
        """An error event as the provider sends it mid-stream."""
        if self.api == "anthropic":
            return "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        if self.api == "openai_responses":
            return "error", {
                "type": "error",
                "code": "server_error",
                "message": "fake stream error",
                "param": None,
            }
        if self.api == "gemini":
            return None, {"error": {"code": 503, "message": "fake stream error", "status": "UNAVAILABLE"}}
        return None, {
            "error": {"message": "fake stream error", "type": "server_error", "param": None, "code": None}
        }

    def events(self) -> Events:
        """The stream events of the response, in order."""
        if self.api == "openai_chat":
            yield None, self._chat_chunk({"role": "assistant", "content": "", "refusal": None}, None)
            for piece in self.pieces:
                yield None, self._chat_chunk({"content": piece}, None)
            for index, call in enumerate(self._chat_tool_calls()):
                # The SDKs' accumulators: id, type and name first, then the arguments in deltas.
                head = {"index": index, "id": call["id"], "type": "function"}
                head["function"] = {"name": call["function"]["name"], "arguments": ""}
                yield None, self._chat_chunk({"tool_calls": [head]}, None)
                arguments = {"index": index, "function": {"arguments": call["function"]["arguments"]}}
                yield None, self._chat_chunk({"tool_calls": [arguments]}, None)
            yield None, self._chat_chunk({}, self._finish_reason)
            if self.include_usage:
                last = self._chat_chunk({}, None)
                last["choices"] = []
                last["usage"] = self._openai_chat_usage()
                yield None, last
            yield None, "[DONE]"
        elif self.api == "openai_completions":
            for index, piece in enumerate(self.pieces):
                finish = "stop" if index == len(self.pieces) - 1 else None
                yield (
                    None,
                    {
                        "id": f"cmpl-fake{self.serial:06d}",
                        "object": "text_completion",
                        "created": _CREATED,
                        "model": self.response_model,
                        "choices": [{"text": piece, "index": 0, "logprobs": None, "finish_reason": finish}],
                    },
                )
            yield None, "[DONE]"
        elif self.api == "openai_responses":
            yield from self._responses_events()
        elif self.api == "anthropic":
            yield from self._anthropic_events()
        else:
            for index, piece in enumerate(self.pieces):
                yield None, self._gemini_chunk(piece, index == len(self.pieces) - 1, index + 1)

    def _responses_events(self) -> Events:
        seq = iter(range(1_000_000_000))
        created = self._response_object("in_progress", None)
        for kind in ("response.created", "response.in_progress"):
            yield kind, {"type": kind, "sequence_number": next(seq), "response": created}
        output_index = 0
        if self._has_message:
            yield from self._responses_message_events(seq)
            output_index = 1
        for index in range(len(self.tool_calls)):
            yield from self._responses_call_events(seq, index, output_index + index)
        yield (
            "response.completed",
            {
                "type": "response.completed",
                "sequence_number": next(seq),
                "response": self._response_object("completed", self.text),
            },
        )

    def _responses_message_events(self, seq: Iterator[int]) -> Events:
        item_id = f"msg_fake{self.serial:06d}"
        yield (
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "sequence_number": next(seq),
                "output_index": 0,
                "item": self._message_item("in_progress", ""),
            },
        )
        part = {"type": "output_text", "text": "", "annotations": []}
        common = {"item_id": item_id, "output_index": 0, "content_index": 0}
        yield (
            "response.content_part.added",
            {"type": "response.content_part.added", "sequence_number": next(seq), **common, "part": part},
        )
        for piece in self.pieces:
            yield (
                "response.output_text.delta",
                {
                    "type": "response.output_text.delta",
                    "sequence_number": next(seq),
                    **common,
                    "delta": piece,
                    "logprobs": [],
                },
            )
        yield (
            "response.output_text.done",
            {
                "type": "response.output_text.done",
                "sequence_number": next(seq),
                **common,
                "text": self.text,
                "logprobs": [],
            },
        )
        done_part = {"type": "output_text", "text": self.text, "annotations": []}
        yield (
            "response.content_part.done",
            {"type": "response.content_part.done", "sequence_number": next(seq), **common, "part": done_part},
        )
        yield (
            "response.output_item.done",
            {
                "type": "response.output_item.done",
                "sequence_number": next(seq),
                "output_index": 0,
                "item": self._message_item("completed", self.text),
            },
        )

    def _responses_call_events(self, seq: Iterator[int], index: int, output_index: int) -> Events:
        item = self._function_call_item(index, "in_progress")
        at = {"item_id": item["id"], "output_index": output_index}
        added = {
            "type": "response.output_item.added",
            "sequence_number": next(seq),
            "output_index": output_index,
        }
        yield "response.output_item.added", {**added, "item": item}
        arguments = self.tool_calls[index].arguments_json
        kind = "response.function_call_arguments.delta"
        yield kind, {"type": kind, "sequence_number": next(seq), **at, "delta": arguments}
        kind = "response.function_call_arguments.done"
        yield kind, {"type": kind, "sequence_number": next(seq), **at, "arguments": arguments}
        done = {
            "type": "response.output_item.done",
            "sequence_number": next(seq),
            "output_index": output_index,
        }
        yield "response.output_item.done", {**done, "item": self._function_call_item(index, "completed")}

    def _anthropic_events(self) -> Events:
        yield (
            "message_start",
            {"type": "message_start", "message": self._anthropic_message(None, final=False)},
        )
        block = 0
        if self._has_message:
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            for piece in self.pieces:
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
            yield "content_block_stop", {"type": "content_block_stop", "index": 0}
            block = 1
        for index, call in enumerate(self.tool_calls):
            start = {
                "type": "content_block_start",
                "index": block,
                "content_block": self._tool_use_block(index, {}),
            }
            yield "content_block_start", start
            partial = json.dumps(call.arguments_object, separators=(",", ":"))
            json_delta = {"type": "input_json_delta", "partial_json": partial}
            yield "content_block_delta", {"type": "content_block_delta", "index": block, "delta": json_delta}
            yield "content_block_stop", {"type": "content_block_stop", "index": block}
            block += 1
        delta: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use" if self.tool_calls else "end_turn", "stop_sequence": None},
        }
        if self.include_usage:
            delta["usage"] = {"output_tokens": self._out}
        yield "message_delta", delta
        yield "message_stop", {"type": "message_stop"}
