"""The bounded, incremental response parsers, on bodies the fake provider does not produce.

Internal (``otel_costs.capture._responses`` and ``_dialects``): these parsers have no public name;
they are fed bodies (bombs, bare CRs, bytes cut anywhere, invalid counts) that no real provider
sends, which the HTTP-level tests in ``test_httpx_capture.py`` cannot produce.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest

from otel_costs.capture._dialects import (
    ANTHROPIC_MESSAGES,
    GEMINI_GENERATE,
    OPENAI_CHAT,
    OPENAI_RESPONSES,
    api_for_path,
    loads_json,
)
from otel_costs.capture._responses import CaptureResult, ResponseCapture
from otel_costs.pricing._usage import TokenUsage


def parse(
    dialect: str, body: bytes, *, sse: bool = False, encoding: str = "", pieces: int = 1, **limits: Any
) -> CaptureResult:
    capture = ResponseCapture(
        dialect,
        content_type="text/event-stream" if sse else "application/json",
        content_encoding=encoding,
        **limits,
    )
    step = max(1, len(body) // pieces)
    for start in range(0, len(body), step):
        capture.feed(body[start : start + step])
    return capture.close(eof=True)


CHAT = {"id": "c1", "model": "gpt-4o", "usage": {"prompt_tokens": 10, "completion_tokens": 5}}


@pytest.mark.parametrize(
    ("path", "operation", "provider", "model"),
    [
        ("/v1/chat/completions", "chat", "openai", None),
        ("/openai/deployments/gpt4/chat/completions", "chat", "openai", None),
        ("/v1/responses", "chat", "openai", None),
        ("/v1/embeddings", "embeddings", "openai", None),
        ("/v1/completions", "text_completion", "openai", None),
        ("/v1/messages", "chat", "anthropic", None),
        ("/v1beta/models/gemini-2.5-pro:generateContent", "generate_content", "gcp.gemini", "gemini-2.5-pro"),
        (
            "/v1/projects/p/locations/l/publishers/google/models/gemini-2.5-flash:streamGenerateContent",
            "generate_content",
            "gcp.vertex_ai",
            "gemini-2.5-flash",
        ),
    ],
)
def test_paths_name_their_api(path: str, operation: str, provider: str, model: str | None) -> None:
    """Each LLM endpoint path maps to its operation, default provider and (Gemini) model."""
    api = api_for_path(path)
    assert api is not None
    assert (api.operation, api.provider, api.path_model) == (operation, provider, model)


@pytest.mark.parametrize("path", ["/v1/models", "/v1/files", "/v1/messages/count_tokens", "/"])
def test_other_paths_are_not_calls(path: str) -> None:
    """Paths that bill nothing are not LLM calls."""
    assert api_for_path(path) is None


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),  # zlib-wrapped, as most servers send "deflate"
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as the RFC says
    ],
)
def test_compressed_bodies_are_decoded(encoding: str, encode: Any) -> None:
    """gzip and both flavours of deflate are decoded, even fed byte by byte."""
    body = encode(json.dumps(CHAT).encode())
    result = parse(OPENAI_CHAT, body, encoding=encoding, pieces=len(body))
    assert result.usage == TokenUsage(input_tokens=10, output_tokens=5)
    assert result.complete and result.problem is None


@pytest.mark.parametrize(("encoding", "reason"), [("zstd", "'zstd'"), ("gzip, br", "stacked")])
def test_undecodable_encodings_are_flagged(encoding: str, reason: str) -> None:
    """An encoding the process cannot decode is reported, not guessed."""
    result = parse(OPENAI_CHAT, b"\x28\xb5\x2f\xfd garbage", encoding=encoding)
    assert result.usage is None and not result.complete
    assert result.problem is not None and reason in result.problem


def test_a_decompression_bomb_is_parsed_in_bounded_steps() -> None:
    """A 64 MiB gzip bomb is streamed through, never materialised; the usage at its end is found."""
    padding = b" " * (64 * 1024 * 1024)
    body = gzip.compress(
        b'{"model":"m","pad":"' + padding + b'","usage":{"prompt_tokens":3,"completion_tokens":1}}'
    )
    result = parse(OPENAI_CHAT, body, encoding="gzip", pieces=8)
    assert result.usage == TokenUsage(input_tokens=3, output_tokens=1)
    assert result.response_model == "m"


def test_cr_only_line_endings_and_split_events() -> None:
    """SSE with bare CR line endings, cut at every byte, still yields the usage."""
    events = [
        {"id": "c1", "model": "gpt-4o", "choices": [{"delta": {"content": "hi"}}], "usage": None},
        {"id": "c1", "model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}},
    ]
    body = "".join(f"data: {json.dumps(e)}\r\r" for e in events).encode() + b"data: [DONE]\r\r"
    result = parse(OPENAI_CHAT, body, sse=True, pieces=len(body))
    assert result.usage == TokenUsage(input_tokens=7, output_tokens=2) and result.complete


def test_an_oversized_event_is_skipped_and_counted() -> None:
    """An event past max_event_bytes is dropped; if the usage was in it, the reason says so."""
    huge = {"model": "gpt-4o", "usage": {"prompt_tokens": 1, "completion_tokens": 1}, "pad": "x" * 5000}
    body = f"data: {json.dumps({'model': 'gpt-4o'})}\n\ndata: {json.dumps(huge)}\n\n".encode()
    result = parse(OPENAI_CHAT, body, sse=True, pieces=50, max_event_bytes=1024)
    assert result.usage is None
    assert result.problem is not None and "oversized" in result.problem


def test_a_final_event_without_its_blank_line_counts() -> None:
    """A server that closes right after its last event (no blank line) still gets its usage read."""
    body = b'data: {"model":"m","usage":{"prompt_tokens":4,"completion_tokens":4}}'
    assert parse(OPENAI_CHAT, body, sse=True).complete


@pytest.mark.parametrize("bad", [-1, True, 2**60, "12", 1.5])
def test_invalid_usage_values_are_refused(bad: object) -> None:
    """Negative, boolean, absurd, string and fractional token counts are not written."""
    body = json.dumps({"model": "m", "usage": {"prompt_tokens": bad, "completion_tokens": 5}}).encode()
    result = parse(OPENAI_CHAT, body)
    assert result.usage == TokenUsage(output_tokens=5)
    assert result.problem is not None and "prompt_tokens" in result.problem


def test_anthropic_message_delta_may_restate_input() -> None:
    """message_delta's cumulative usage (with input fields) overrides message_start's."""
    start = {"type": "message_start", "message": {"model": "c", "id": "m1", "usage": {"input_tokens": 1}}}
    delta = {
        "type": "message_delta",
        "usage": {"input_tokens": 5, "cache_read_input_tokens": 2, "output_tokens": 9},
    }
    body = (
        f"event: message_start\ndata: {json.dumps(start)}\n\n"
        f"event: message_delta\ndata: {json.dumps(delta)}\n\n"
    )
    result = parse(ANTHROPIC_MESSAGES, body.encode(), sse=True)
    assert result.usage == TokenUsage(input_tokens=7, output_tokens=9, cache_read_tokens=2)


def test_gemini_tool_prompt_and_thoughts_count() -> None:
    """Gemini input adds tool-use prompt tokens; output adds thoughts to candidates."""
    body = {
        "modelVersion": "gemini-2.5-pro",
        "candidates": [{"finishReason": "STOP"}],
        "usageMetadata": {
            "promptTokenCount": 100,
            "toolUsePromptTokenCount": 20,
            "candidatesTokenCount": 30,
            "thoughtsTokenCount": 40,
            "cachedContentTokenCount": 50,
        },
    }
    result = parse(GEMINI_GENERATE, json.dumps(body).encode())
    assert result.usage == TokenUsage(
        input_tokens=120, output_tokens=70, cache_read_tokens=50, reasoning_tokens=40
    )


def test_responses_failed_event_keeps_usage_and_error() -> None:
    """A response.failed event carries both the usage billed so far and the error type."""
    failed = {
        "type": "response.failed",
        "response": {
            "model": "gpt-4o",
            "error": {"code": "server_error", "message": "boom"},
            "usage": {"input_tokens": 8, "output_tokens": 1},
        },
    }
    result = parse(OPENAI_RESPONSES, f"data: {json.dumps(failed)}\n\n".encode(), sse=True)
    assert result.usage == TokenUsage(input_tokens=8, output_tokens=1)
    assert result.error_type == "server_error"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "empty"),
        (b" \r\n\t\x0b\x0c", "empty"),
        (b"[1, 2]", "not an object"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b'  {"usage": ', "not valid JSON"),
    ],
)
def test_bodies_without_usage_say_why(body: bytes, problem: str) -> None:
    """Empty, non-object and non-UTF-8 bodies end with a reason instead of an exception."""
    result = parse(OPENAI_CHAT, body)
    assert result.usage is None and result.problem is not None and problem in result.problem


def test_an_unread_body_is_not_complete() -> None:
    """Closing before the end of the body reports it, even with part of the JSON seen."""
    capture = ResponseCapture(OPENAI_CHAT, content_type="application/json", content_encoding="")
    capture.feed(json.dumps(CHAT).encode()[:20])
    result = capture.close(eof=False)
    assert not result.complete and result.problem == "the body was not read to its end"


@pytest.mark.parametrize("pieces", [1, 2, 7, 1000])
def test_a_json_body_in_any_number_of_chunks_parses_the_same(pieces: int) -> None:
    """A JSON body within the limit gives the same result whether it arrives whole or in pieces."""
    result = parse(OPENAI_CHAT, json.dumps(CHAT).encode(), pieces=pieces)
    assert result.complete and result.usage == TokenUsage(input_tokens=10, output_tokens=5)
    assert result.response_model == "gpt-4o" and result.problem is None


def test_a_mutable_buffer_fed_then_reused_does_not_change_what_was_read() -> None:
    """The parser keeps its own copy of a bytearray it was fed, so reusing the buffer is safe."""
    capture = ResponseCapture(OPENAI_CHAT, content_type="application/json", content_encoding="")
    buffer = bytearray(json.dumps(CHAT).encode())
    capture.feed(buffer)  # type: ignore[arg-type]
    buffer[:] = b"x" * len(buffer)
    result = capture.close(eof=True)
    assert result.complete and result.usage == TokenUsage(input_tokens=10, output_tokens=5)


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "gpt-4o", "n": [1, 2.5, null, true]}',
        b'[{"a": "\\u00e9\\n"}]',
        '{"caf\u00e9": "\u65e5\u672c"}'.encode(),
        b'{"a": 1}\r\n\t ',
        b'  {"a": 1}',
        b'\xef\xbb\xbf{"a": 1}',
        '{"a": 1}'.encode("utf-16"),
        b'{"a": 1} {"b": 2}',
        b'{"a": 1}\x0b',
        b'{"a": 1}\xa0',
        '{"a": 1}\u00a0'.encode(),
        b'{"a": \xff}',
        b'{"a": 1',
        b"[",
        b"{}",
        b"",
        b"3",
    ],
)
def test_loads_json_matches_json_loads(body: bytes) -> None:
    """loads_json gives json.loads's result, or raises a ValueError where json.loads does."""
    try:
        expected: Any = ("ok", json.loads(body))
    except ValueError:
        expected = ("error",)
    try:
        got: Any = ("ok", loads_json(body))
    except ValueError:
        got = ("error",)
    assert got == expected
