"""The fake LLM provider speaks the real wire formats: driven by the real openai and anthropic SDKs."""

from __future__ import annotations

import gzip
import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from otel_costs.testing import FakeLLMProvider, FakeUsage, Misbehaviour

USAGE = FakeUsage(cache_read_tokens=3, cache_write_tokens=2, reasoning_tokens=4)
MESSAGES: list[Any] = [{"role": "user", "content": "What is the capital of France?"}]
CLAUDE = "claude-test-1"


@pytest.fixture
def fake() -> Iterator[FakeLLMProvider]:
    with FakeLLMProvider(usage=USAGE, response_models={"gpt-4o": "gpt-4o-2024-08-06"}) as provider:
        yield provider


def openai_client(fake: FakeLLMProvider) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)


def anthropic_client(fake: FakeLLMProvider) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="test", max_retries=0)


def test_chat_completion_reports_usage_in_openai_shape(fake: FakeLLMProvider) -> None:
    """A chat completion carries OpenAI's usage with cached and reasoning token details."""
    completion = openai_client(fake).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    recorded = fake.requests[-1].usage
    assert recorded is not None and completion.usage is not None
    assert completion.model == "gpt-4o-2024-08-06"
    assert completion.choices[0].message.content == "Hello from the fake provider."
    assert completion.usage.prompt_tokens == recorded.input_tokens
    assert completion.usage.completion_tokens == recorded.output_tokens
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 3
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 4


@pytest.mark.parametrize("include_usage", [True, False])
def test_chat_stream_sends_a_usage_chunk_only_when_asked(fake: FakeLLMProvider, include_usage: bool) -> None:
    """A chat stream ends with a usage chunk (empty choices) only with stream_options.include_usage."""
    options: Any = {"include_usage": True} if include_usage else openai.NOT_GIVEN
    stream = openai_client(fake).chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options=options
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake provider."
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    if include_usage:
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert chunks[-1].usage.prompt_tokens == fake.requests[-1].usage.input_tokens  # type: ignore[union-attr]
        assert all(c.usage is None for c in chunks[:-1])
    else:
        assert all(c.usage is None for c in chunks)
        assert fake.requests[-1].usage is None


async def test_async_openai_stream_matches_the_sync_one(fake: FakeLLMProvider) -> None:
    """The async SDK reads the same stream, final usage included."""
    client = openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 9


def test_responses_api_non_stream_and_stream_agree(fake: FakeLLMProvider) -> None:
    """The Responses API answers a plain call and a stream with the same text and usage."""
    client = openai_client(fake)
    response = client.responses.create(model="gpt-4.1", input="Say hello")
    with client.responses.stream(model="gpt-4.1", input="Say hello") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert response.output_text == final.output_text == "Hello from the fake provider."
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    assert response.usage is not None and final.usage is not None
    assert response.usage.input_tokens == final.usage.input_tokens
    assert final.usage.input_tokens_details.cached_tokens == 3
    assert final.usage.output_tokens_details.reasoning_tokens == 4


def test_embeddings_answer_base64_the_way_the_sdk_asks(fake: FakeLLMProvider) -> None:
    """The SDK's default base64 embeddings decode to deterministic vectors, with prompt-token usage."""
    client = openai_client(fake)
    first = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"], dimensions=4)
    second = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"], dimensions=4)
    assert [len(d.embedding) for d in first.data] == [4, 4]
    assert first.data[0].embedding == second.data[0].embedding != first.data[1].embedding
    assert first.usage.prompt_tokens == first.usage.total_tokens == fake.requests[-1].usage.input_tokens  # type: ignore[union-attr]


def test_anthropic_message_splits_input_from_cache_tokens(fake: FakeLLMProvider) -> None:
    """Anthropic's input_tokens exclude cache reads and writes, which are reported beside them."""
    message = anthropic_client(fake).messages.create(model=CLAUDE, max_tokens=50, messages=MESSAGES)
    recorded = fake.requests[-1].usage
    assert recorded is not None and recorded.input_tokens is not None
    assert message.content[0].type == "text" and message.content[0].text == "Hello from the fake provider."
    assert message.usage.cache_read_input_tokens == 3
    assert message.usage.cache_creation_input_tokens == 2
    assert message.usage.input_tokens == recorded.input_tokens - 3 - 2
    assert message.usage.output_tokens == recorded.output_tokens


def test_anthropic_stream_helper_accumulates_the_message(fake: FakeLLMProvider) -> None:
    """The SDK's stream helper rebuilds the message from message_start ... message_stop events."""
    with anthropic_client(fake).messages.stream(model=CLAUDE, max_tokens=50, messages=MESSAGES) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(kinds)
    assert final.content[0].type == "text" and final.content[0].text == "Hello from the fake provider."
    assert final.usage.output_tokens == 9 and final.usage.cache_read_input_tokens == 3


async def test_async_anthropic_stream(fake: FakeLLMProvider) -> None:
    """The async Anthropic SDK streams the same events."""
    client = anthropic.AsyncAnthropic(base_url=fake.anthropic_base_url, api_key="test", max_retries=0)
    stream = await client.messages.create(model=CLAUDE, max_tokens=50, messages=MESSAGES, stream=True)
    kinds = [event.type async for event in stream]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"


@pytest.mark.parametrize(
    "suffix", [":generateContent", ":streamGenerateContent?alt=sse", ":streamGenerateContent"]
)
def test_gemini_reports_usage_metadata(fake: FakeLLMProvider, suffix: str) -> None:
    """Gemini's usageMetadata: prompt includes the cache, candidates exclude thoughts (SSE, array, plain)."""
    url = f"{fake.gemini_base_url}/v1beta/models/gemini-2.5-flash{suffix}"
    response = httpx.post(url, json={"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]})
    if "alt=sse" in suffix:
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    else:
        body = response.json()
        chunks = body if isinstance(body, list) else [body]
    final = chunks[-1]["usageMetadata"]
    recorded = fake.requests[-1].usage
    assert recorded is not None and recorded.output_tokens is not None
    assert final["promptTokenCount"] == recorded.input_tokens
    assert final["cachedContentTokenCount"] == 3
    assert final["thoughtsTokenCount"] == 4
    assert final["candidatesTokenCount"] == recorded.output_tokens - 4
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["modelVersion"] == "gemini-2.5-flash"


def test_input_tokens_follow_the_documented_rule() -> None:
    """Without configuration, input tokens are ceil(characters of the prompt's strings / 4)."""
    prompt = "x" * 41
    with FakeLLMProvider() as fake:
        openai_client(fake).chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}])
        usage = fake.requests[-1].usage
    assert usage is not None
    assert usage.input_tokens == math.ceil((len(prompt) + len("user")) / 4)
    assert usage.output_tokens == 5  # one per word of the default reply


def test_usage_can_be_set_per_model() -> None:
    """A mapping gives each model its own usage; other models get the derived default."""
    with FakeLLMProvider(usage={"big": FakeUsage(input_tokens=1000, output_tokens=7)}) as fake:
        client = openai_client(fake)
        big = client.chat.completions.create(model="big", messages=MESSAGES)
        small = client.chat.completions.create(model="small", messages=MESSAGES)
    assert big.usage is not None and small.usage is not None
    assert (big.usage.prompt_tokens, big.usage.completion_tokens) == (1000, 7)
    assert small.usage.prompt_tokens < 1000


def test_stream_chunks_sets_the_number_of_deltas() -> None:
    """stream_chunks=N streams exactly N content deltas."""
    with FakeLLMProvider(stream_chunks=25) as fake:
        stream = openai_client(fake).chat.completions.create(model="m", messages=MESSAGES, stream=True)
        deltas = [c for c in stream if c.choices and c.choices[0].delta.content]
    assert len(deltas) == 25


@pytest.mark.parametrize(
    ("status", "exception"),
    [(429, openai.RateLimitError), (500, openai.InternalServerError), (400, openai.BadRequestError)],
)
def test_fail_next_answers_openai_errors(
    fake: FakeLLMProvider, status: int, exception: type[Exception]
) -> None:
    """fail_next makes the next call fail with the status and OpenAI's error body; the one after succeeds."""
    fake.fail_next(1, status=status)
    client = openai_client(fake)
    with pytest.raises(exception):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert client.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices
    assert [r.status for r in fake.requests] == [status, 200]
    assert fake.requests[0].usage is None


def test_fail_next_answers_anthropic_errors(fake: FakeLLMProvider) -> None:
    """Anthropic errors come in Anthropic's error shape, which the SDK maps to its exception types."""
    fake.fail_next(1, status=529)
    with pytest.raises(anthropic.APIStatusError) as raised:
        anthropic_client(fake).messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
    assert raised.value.status_code == 529
    assert raised.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "fake provider error 529"},
    }


def test_fail_next_with_a_custom_body(fake: FakeLLMProvider) -> None:
    """A custom error body (e.g. one that reports usage) is sent as given."""
    body = {"error": {"message": "cut"}, "usage": {"prompt_tokens": 4, "completion_tokens": 1}}
    fake.fail_next(status=502, body=body, headers={"x-extra": "1"})
    response = httpx.post(f"{fake.openai_base_url}/chat/completions", json={"model": "m", "messages": []})
    assert response.status_code == 502 and response.json() == body and response.headers["x-extra"] == "1"


def test_requests_record_what_left_the_client(fake: FakeLLMProvider) -> None:
    """Each request is recorded with its method, path, query, lower-cased headers and parsed body."""
    httpx.post(
        f"{fake.gemini_base_url}/v1beta/models/g:streamGenerateContent?alt=sse&key=k",
        json={"contents": []},
        headers={"X-Team-Id": "billing"},
    )
    recorded = fake.requests[-1]
    assert (recorded.method, recorded.path) == ("POST", "/v1beta/models/g:streamGenerateContent")
    assert dict(recorded.query) == {"alt": "sse", "key": "k"}
    assert recorded.headers["x-team-id"] == "billing"
    assert recorded.body == {"contents": []}
    assert recorded.raw_body == b'{"contents":[]}' or json.loads(recorded.raw_body) == {"contents": []}


def test_unknown_routes_are_404(fake: FakeLLMProvider) -> None:
    """Paths that are not an LLM API get a 404 in OpenAI's error shape."""
    response = httpx.get(f"{fake.base_url}/v1/models")
    assert response.status_code == 404 and "error" in response.json()


def chat_stream(fake: FakeLLMProvider, **extra: Any) -> httpx.Response:
    body = {"model": "m", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    return httpx.post(f"{fake.openai_base_url}/chat/completions", json=body, **extra)


def test_gzip_and_brotli_bodies_decode_to_the_plain_body(fake: FakeLLMProvider) -> None:
    """GZIP and BROTLI compress the body on the wire; decoded it equals the uncompressed stream."""
    pytest.importorskip("brotli")

    def normalised(body: bytes) -> bytes:
        return re.sub(rb"fake\d+", b"fake", body)

    plain = normalised(chat_stream(fake).content)
    for mode, encoding in ((Misbehaviour.GZIP, "gzip"), (Misbehaviour.BROTLI, "br")):
        fake.misbehave(mode)
        response = chat_stream(fake)
        assert response.headers["content-encoding"] == encoding
        assert normalised(response.content) == plain
    fake.misbehave(Misbehaviour.GZIP)
    url = f"{fake.openai_base_url}/chat/completions"
    with httpx.stream("POST", url, json={"model": "m", "messages": MESSAGES}) as response:
        wire = b"".join(response.iter_raw())
    assert wire[:2] == b"\x1f\x8b"
    assert json.loads(gzip.decompress(wire))["usage"]["prompt_tokens"] > 0


def test_truncated_and_missing_usage_streams_lack_the_usage_chunk(fake: FakeLLMProvider) -> None:
    """TRUNCATED ends the stream early (no [DONE]); MISSING_USAGE drops the usage chunk but ends normally."""
    fake.misbehave(Misbehaviour.TRUNCATED)
    truncated = chat_stream(fake).text
    fake.misbehave(Misbehaviour.MISSING_USAGE)
    missing = chat_stream(fake).text
    assert "[DONE]" not in truncated and "prompt_tokens" not in truncated
    assert missing.rstrip().endswith("data: [DONE]") and "prompt_tokens" not in missing


def test_disconnect_drops_the_connection_mid_stream(fake: FakeLLMProvider) -> None:
    """DISCONNECT closes the socket mid-body, which the client sees as a protocol error."""
    fake.misbehave(Misbehaviour.DISCONNECT)
    with pytest.raises(httpx.RemoteProtocolError):
        chat_stream(fake)


def test_interleaved_stream_is_still_valid_sse(fake: FakeLLMProvider) -> None:
    """INTERLEAVED (CRLF, comments, ids, multi-line data, odd cuts) still parses in the real SDK."""
    fake.misbehave(Misbehaviour.INTERLEAVED)
    stream = openai_client(fake).chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "Hello from the fake provider."
    )
    assert chunks[-1].usage is not None
    raw = fake.requests[-1]
    assert raw.usage is not None


def test_binary_large_malformed_and_error_event_bodies(fake: FakeLLMProvider) -> None:
    """BINARY, LARGE, MALFORMED_JSON and STREAM_ERROR produce the bad output they name."""
    url = f"{fake.openai_base_url}/chat/completions"
    fake.misbehave(Misbehaviour.BINARY)
    binary = httpx.post(url, json={"model": "m", "messages": MESSAGES})
    assert binary.headers["content-type"] == "application/octet-stream" and b"\xff\x00" in binary.content
    fake.misbehave(Misbehaviour.LARGE)
    large = httpx.post(url, json={"model": "m", "messages": MESSAGES})
    assert len(large.content) > 4 * 1024 * 1024 and large.json()["usage"]["prompt_tokens"] > 0
    fake.misbehave(Misbehaviour.MALFORMED_JSON)
    with pytest.raises(json.JSONDecodeError):
        httpx.post(url, json={"model": "m", "messages": MESSAGES}).json()
    fake.misbehave(Misbehaviour.STREAM_ERROR)
    assert '"error"' in chat_stream(fake).text


def test_misbehave_until_reset(fake: FakeLLMProvider) -> None:
    """times=None applies a mode to every request until reset()."""
    fake.misbehave(Misbehaviour.GZIP, times=None)
    encodings = [chat_stream(fake).headers.get("content-encoding") for _ in range(3)]
    fake.reset()
    assert encodings == ["gzip"] * 3
    assert chat_stream(fake).headers.get("content-encoding") is None
    assert len(fake.requests) == 1


def test_latency_delays_each_answer() -> None:
    """latency delays every response by at least that many seconds."""
    with FakeLLMProvider(latency=0.2) as fake:
        started = time.monotonic()
        httpx.post(f"{fake.openai_base_url}/chat/completions", json={"model": "m", "messages": MESSAGES})
        assert time.monotonic() - started >= 0.2


def test_lifecycle_and_validation() -> None:
    """Addresses need a running server, stop() is idempotent, and bad arguments say what to fix."""
    fake = FakeLLMProvider()
    with pytest.raises(RuntimeError, match="start"):
        _ = fake.base_url
    fake.start()
    assert fake.openai_base_url == f"http://127.0.0.1:{fake.port}/v1"
    fake.stop()
    fake.stop()
    for kwargs in ({"latency": -1}, {"stream_chunks": 0}, {"reply": " "}, {"large_body_bytes": 0}):
        with pytest.raises(ValueError):
            FakeLLMProvider(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fake.misbehave("no-such-mode")
    with pytest.raises(ValueError):
        fake.fail_next(0)


def test_module_entry_point_serves_until_stdin_closes() -> None:
    """``python -m otel_costs.testing`` prints its base URL, answers there, and exits when stdin closes."""
    with subprocess.Popen(
        [sys.executable, "-m", "otel_costs.testing", "--stream-chunks", "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None and process.stdin is not None
        base_url = process.stdout.readline().strip()
        reply = httpx.post(f"{base_url}/v1/chat/completions", json={"model": "m", "messages": MESSAGES})
        assert reply.json()["choices"][0]["message"]["content"] == "Hello from"
        process.stdin.close()
        assert process.wait(timeout=30) == 0
        assert process.stderr is not None and process.stderr.read() == ""
