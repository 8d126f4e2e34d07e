"""LLM usage capture at the HTTP layer, and the attribution trust boundary, against the fake provider."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otel_costs import conventions as conv
from otel_costs._sdk import instrumentation_target
from otel_costs.capture import (
    DEFAULT_LLM_HOSTS,
    AttributionTrust,
    accept_attribution,
    attribution_headers,
    attribution_rejection,
    instrument_httpx,
    uninstrument_httpx,
)
from otel_costs.capture._call import _request_fields, _url_without_query
from otel_costs.capture._hosts import HostRules
from otel_costs.conventions import GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS as CACHE_WRITE
from otel_costs.conventions import GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS as CACHE_READ
from otel_costs.conventions import GEN_AI_USAGE_INPUT_TOKENS as INPUT
from otel_costs.conventions import GEN_AI_USAGE_OUTPUT_TOKENS as OUTPUT
from otel_costs.conventions import GEN_AI_USAGE_REASONING_OUTPUT_TOKENS as REASONING
from otel_costs.conventions import HEADER_ATTRIBUTION_SIGNATURE
from otel_costs.testing import FakeLLMProvider, FakeUsage, Misbehaviour, RecordedRequest

USAGE = FakeUsage(cache_read_tokens=30, cache_write_tokens=20, reasoning_tokens=4)
MESSAGES: list[Any] = [{"role": "user", "content": "Summarise the quarterly report in one line, please."}]
CLAUDE = "claude-test-1"
SECRET = b"0123456789abcdef0123456789abcdef"
SIGNATURE = HEADER_ATTRIBUTION_SIGNATURE.lower()
ATTRIBUTION = {
    conv.BAGGAGE_WORKFLOW_ID: "wf-1",
    conv.BAGGAGE_WORKFLOW_NAME: "support",
    conv.BAGGAGE_AGENT_ID: "agent-7",
    conv.BAGGAGE_AGENT_NAME: "triage",
    conv.BAGGAGE_RETRY_DEPTH: "1",
    conv.BAGGAGE_USER_ID: "u-42",
    conv.BAGGAGE_TEAM_ID: "billing",
}


class Capture:
    """One test's tracer provider, exporter and instrumentation switch."""

    def __init__(self, fake: FakeLLMProvider) -> None:
        self.fake = fake
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def on(self, **kwargs: Any) -> None:
        kwargs.setdefault("llm_hosts", {self.fake.host: None})
        instrument_httpx(tracer_provider=self.provider, **kwargs)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def llm_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if (s.attributes or {}).get(conv.GEN_AI_OPERATION_NAME)]

    def one_llm_span(self) -> ReadableSpan:
        spans = self.llm_spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]


@pytest.fixture
def fake() -> Iterator[FakeLLMProvider]:
    with FakeLLMProvider(
        usage=USAGE, response_models={"gpt-4o": "gpt-4o-2024-08-06"}, unique_ids=False
    ) as provider:
        yield provider


@pytest.fixture
def capture(fake: FakeLLMProvider) -> Iterator[Capture]:
    state = Capture(fake)
    state.on()
    yield state
    uninstrument_httpx()
    state.provider.shutdown()


def expected_usage(
    recorded: RecordedRequest, *, reasoning: bool = True, cache_write: bool = True
) -> dict[str, int]:
    usage = recorded.usage
    assert usage is not None and usage.input_tokens is not None and usage.output_tokens is not None
    expected = {INPUT: usage.input_tokens, OUTPUT: usage.output_tokens, CACHE_READ: usage.cache_read_tokens}
    if cache_write:
        expected[CACHE_WRITE] = usage.cache_write_tokens
    if reasoning:
        expected[REASONING] = usage.reasoning_tokens
    return expected


def usage_of(span: ReadableSpan) -> dict[str, Any]:
    attributes = span.attributes or {}
    return {k: attributes[k] for k in (INPUT, OUTPUT, CACHE_READ, CACHE_WRITE, REASONING) if k in attributes}


def assert_parent_of_http_span(capture: Capture, llm: ReadableSpan) -> None:
    http = [s for s in capture.spans() if s.name == "POST"]
    assert http, "the httpx instrumentation made no HTTP span"
    assert any(s.parent is not None and s.parent.span_id == llm.context.span_id for s in http)


# ---------------------------------------------------------------------------------------------
# The real SDKs, sync and async, streamed and not
# ---------------------------------------------------------------------------------------------


def openai_chat(fake: FakeLLMProvider, stream: bool) -> None:
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)
    if stream:
        chunks = client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        assert [c for c in chunks]
    else:
        assert client.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices


async def openai_chat_async(fake: FakeLLMProvider, stream: bool) -> None:
    client = openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)
    if stream:
        chunks = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        assert [c async for c in chunks]
    else:
        assert (await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)).choices


def openai_responses(fake: FakeLLMProvider, stream: bool) -> None:
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)
    if stream:
        with client.responses.stream(model="gpt-4o", input="Summarise the report") as events:
            assert events.get_final_response().output_text
    else:
        assert client.responses.create(model="gpt-4o", input="Summarise the report").output_text


async def openai_responses_async(fake: FakeLLMProvider, stream: bool) -> None:
    client = openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)
    if stream:
        events = await client.responses.create(model="gpt-4o", input="Summarise the report", stream=True)
        assert [e async for e in events]
    else:
        assert (await client.responses.create(model="gpt-4o", input="Summarise the report")).output_text


def anthropic_messages(fake: FakeLLMProvider, stream: bool) -> None:
    client = anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="test", max_retries=0)
    if stream:
        with client.messages.stream(model=CLAUDE, max_tokens=64, messages=MESSAGES) as events:
            assert events.get_final_message().content
    else:
        assert client.messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES).content


async def anthropic_messages_async(fake: FakeLLMProvider, stream: bool) -> None:
    client = anthropic.AsyncAnthropic(base_url=fake.anthropic_base_url, api_key="test", max_retries=0)
    if stream:
        events = await client.messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True)
        assert [e async for e in events]
    else:
        assert (await client.messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES)).content


SDK_CALLS: list[Any] = [
    pytest.param(openai_chat, "openai", "chat gpt-4o", "gpt-4o-2024-08-06", True, id="openai-chat"),
    pytest.param(
        openai_chat_async, "openai", "chat gpt-4o", "gpt-4o-2024-08-06", True, id="openai-chat-async"
    ),
    pytest.param(openai_responses, "openai", "chat gpt-4o", "gpt-4o-2024-08-06", True, id="openai-responses"),
    pytest.param(
        openai_responses_async,
        "openai",
        "chat gpt-4o",
        "gpt-4o-2024-08-06",
        True,
        id="openai-responses-async",
    ),
    pytest.param(anthropic_messages, "anthropic", f"chat {CLAUDE}", CLAUDE, False, id="anthropic"),
    pytest.param(
        anthropic_messages_async, "anthropic", f"chat {CLAUDE}", CLAUDE, False, id="anthropic-async"
    ),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("call", "provider", "name", "response_model", "reasoning"), SDK_CALLS)
def test_sdk_calls_become_llm_spans_with_usage(
    capture: Capture,
    fake: FakeLLMProvider,
    call: Callable[[FakeLLMProvider, bool], Any],
    provider: str,
    name: str,
    response_model: str,
    reasoning: bool,
    stream: bool,
) -> None:
    """Each SDK call, streamed or not, becomes one LLM span with OTel-semantics usage (cache included)."""
    result = call(fake, stream)
    if asyncio.iscoroutine(result):
        asyncio.run(result)
    span = capture.one_llm_span()
    attributes = span.attributes or {}
    assert span.name == name and span.kind is SpanKind.CLIENT
    assert attributes[conv.GEN_AI_PROVIDER_NAME] == provider
    assert attributes[conv.GEN_AI_OPERATION_NAME] == "chat"
    assert attributes[conv.GEN_AI_RESPONSE_MODEL] == response_model
    assert attributes[conv.SERVER_ADDRESS] == "127.0.0.1"
    assert usage_of(span) == expected_usage(fake.requests[-1], reasoning=reasoning)
    assert conv.COST_STATUS not in attributes
    assert_parent_of_http_span(capture, span)


def test_anthropic_input_tokens_include_cache_reads_and_writes(
    capture: Capture, fake: FakeLLMProvider
) -> None:
    """Anthropic's wire input_tokens excludes cache tokens; the span's input_tokens adds them back."""
    client = anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="test", max_retries=0)
    usage = client.messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES).usage
    attributes = capture.one_llm_span().attributes or {}
    assert usage.cache_read_input_tokens == 30 and usage.cache_creation_input_tokens == 20
    assert attributes[INPUT] == usage.input_tokens + 30 + 20
    assert (attributes[CACHE_READ], attributes[CACHE_WRITE]) == (30, 20)


def test_embeddings_record_input_tokens_only(capture: Capture, fake: FakeLLMProvider) -> None:
    """An embeddings call is an ``embeddings`` span with input tokens and no output tokens."""
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)
    client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    span = capture.one_llm_span()
    assert span.name == "embeddings text-embedding-3-small"
    assert usage_of(span) == {INPUT: fake.requests[-1].usage.input_tokens}  # type: ignore[union-attr]


@pytest.mark.parametrize("http_spans", [True, False], ids=["http-spans", "one-span"])
def test_llm_spans_record_the_application_call_site(
    capture: Capture, fake: FakeLLMProvider, http_spans: bool
) -> None:
    """An LLM span carries the code.* location of the application line that called the SDK."""
    capture.on(http_spans=http_spans)
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    line = sys._getframe().f_lineno - 1
    attributes = capture.one_llm_span().attributes or {}
    assert (
        attributes[conv.CODE_FUNCTION_NAME] == f"{__name__}.test_llm_spans_record_the_application_call_site"
    )
    assert attributes[conv.CODE_FILE_PATH] == __file__
    assert attributes[conv.CODE_LINE_NUMBER] == line


# ---------------------------------------------------------------------------------------------
# httpx and httpx2 directly (Gemini), sync and async
# ---------------------------------------------------------------------------------------------

GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "Summarise the report"}]}]}
MODULES = [pytest.param(httpx, id="httpx"), pytest.param(httpx2, id="httpx2")]


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize(
    "suffix", [":generateContent", ":streamGenerateContent?alt=sse", ":streamGenerateContent"]
)
def test_gemini_over_httpx_and_httpx2(
    capture: Capture, fake: FakeLLMProvider, module: Any, suffix: str
) -> None:
    """Gemini calls (plain, SSE, JSON-array stream) over both clients are generate_content spans."""
    url = f"{fake.gemini_base_url}/v1beta/models/gemini-2.5-flash{suffix}"
    with module.Client() as client:
        client.post(url, json=GEMINI_BODY).raise_for_status()
    span = capture.one_llm_span()
    assert span.name == "generate_content gemini-2.5-flash"
    assert (span.attributes or {})[conv.GEN_AI_PROVIDER_NAME] == "gcp.gemini"
    assert usage_of(span) == expected_usage(fake.requests[-1], cache_write=False)


@pytest.mark.parametrize("http_spans", [True, False], ids=["http-spans", "one-span"])
@pytest.mark.parametrize("module", MODULES)
def test_async_clients_are_captured(
    capture: Capture, fake: FakeLLMProvider, module: Any, http_spans: bool
) -> None:
    """AsyncClient streams are captured the same way as sync ones, with or without HTTP spans."""
    capture.on(http_spans=http_spans)

    async def run() -> bytes:
        url = f"{fake.gemini_base_url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        async with module.AsyncClient() as client, client.stream("POST", url, json=GEMINI_BODY) as response:
            return b"".join([chunk async for chunk in response.aiter_bytes()])

    assert asyncio.run(run()).startswith(b"data: ")
    span = capture.one_llm_span()
    assert usage_of(span) == expected_usage(fake.requests[-1], cache_write=False)
    http = [s for s in capture.spans() if s.name == "POST"]
    assert len(http) == (1 if http_spans else 0)
    sent_parent = fake.requests[-1].headers["traceparent"].split("-")[2]
    parent = http[0] if http_spans else span
    assert sent_parent == format(parent.context.span_id, "016x")


# ---------------------------------------------------------------------------------------------
# However the caller consumes the body
# ---------------------------------------------------------------------------------------------

CHAT_STREAM = {
    "model": "gpt-4o",
    "messages": MESSAGES,
    "stream": True,
    "stream_options": {"include_usage": True},
}


def consume_all(response: Any) -> None:
    response.read()


def consume_chunks(response: Any) -> None:
    for _ in response.iter_bytes(chunk_size=17):
        pass


def consume_lines(response: Any) -> None:
    for _ in response.iter_lines():
        pass


def consume_raw(response: Any) -> None:
    for _ in response.iter_raw():
        pass


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("consume", [consume_all, consume_chunks, consume_lines, consume_raw])
def test_usage_lands_however_the_body_is_read(
    capture: Capture, fake: FakeLLMProvider, module: Any, consume: Callable[[Any], None]
) -> None:
    """Reading the stream whole, by chunks, by lines or raw all give the same complete usage."""
    with (
        module.Client() as client,
        client.stream("POST", f"{fake.openai_base_url}/chat/completions", json=CHAT_STREAM) as response,
    ):
        consume(response)
    assert usage_of(capture.one_llm_span()) == expected_usage(fake.requests[-1])


@pytest.mark.parametrize("module", MODULES)
def test_a_stream_closed_early_is_partial_never_zero(
    capture: Capture, fake: FakeLLMProvider, module: Any
) -> None:
    """Closing a stream before its usage chunk flags the span partial, with a reason."""
    with (
        module.Client() as client,
        client.stream("POST", f"{fake.openai_base_url}/chat/completions", json=CHAT_STREAM) as response,
    ):
        next(response.iter_raw(64))
    attributes = capture.one_llm_span().attributes or {}
    assert attributes[conv.COST_STATUS] == conv.STATUS_PARTIAL
    assert "closed before its usage record" in str(attributes[conv.COST_STATUS_REASON])
    assert OUTPUT not in attributes


def test_an_sdk_stream_abandoned_mid_way_is_partial(capture: Capture, fake: FakeLLMProvider) -> None:
    """Breaking out of an SDK stream and closing it ends the LLM span as partial."""
    with FakeLLMProvider(stream_chunks=2000) as long_fake:
        capture.on(llm_hosts={long_fake.host: None})
        client = anthropic.Anthropic(base_url=long_fake.anthropic_base_url, api_key="test", max_retries=0)
        stream = client.messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True)
        for event in stream:
            if event.type == "content_block_delta":
                break
        stream.close()
    attributes = capture.one_llm_span().attributes or {}
    assert attributes[conv.COST_STATUS] == conv.STATUS_PARTIAL
    assert attributes[INPUT] == long_fake.requests[-1].usage.input_tokens  # type: ignore[union-attr]


def test_a_response_dropped_unread_is_partial(capture: Capture, fake: FakeLLMProvider) -> None:
    """A streamed response garbage-collected without being read or closed still ends its span."""
    client = httpx.Client()
    request = client.build_request("POST", f"{fake.openai_base_url}/chat/completions", json=CHAT_STREAM)
    response = client.send(request, stream=True)
    del response
    gc.collect()
    attributes = capture.one_llm_span().attributes or {}
    assert attributes[conv.COST_STATUS] == conv.STATUS_PARTIAL
    assert "discarded" in str(attributes[conv.COST_STATUS_REASON])
    client.close()


def test_stream_without_include_usage_says_why(capture: Capture, fake: FakeLLMProvider) -> None:
    """A chat stream requested without include_usage is partial, and the reason names the option."""
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
    httpx.post(f"{fake.openai_base_url}/chat/completions", json=body)
    attributes = capture.one_llm_span().attributes or {}
    assert attributes[conv.COST_STATUS] == conv.STATUS_PARTIAL
    assert "include_usage" in str(attributes[conv.COST_STATUS_REASON])


# ---------------------------------------------------------------------------------------------
# Bad input: the caller's bytes are unchanged, nothing raises, the span says what happened
# ---------------------------------------------------------------------------------------------


def fetch(
    module: Any, url: str, body: Any, mode: Misbehaviour | None, fake: FakeLLMProvider
) -> tuple[Any, ...]:
    """What the caller sees of one request, twice: the raw wire bytes, then the decoded body."""
    seen: list[Any] = []
    with module.Client() as client:
        for raw in (True, False):
            if mode is not None:
                fake.misbehave(mode)
            try:
                with client.stream("POST", url, json=body) as response:
                    payload = b"".join(response.iter_raw() if raw else response.iter_bytes())
                seen += [response.status_code, dict(response.headers), payload]
            except module.HTTPError as exc:
                seen.append(type(exc).__name__)
    return tuple(seen)


BAD_OUTPUT: list[Any] = [
    # mode, stream, expected cost.status (None: priced as is), reason fragment
    (None, False, None, None),
    (None, True, None, None),
    (Misbehaviour.GZIP, False, None, None),
    (Misbehaviour.GZIP, True, None, None),
    (Misbehaviour.BROTLI, False, None, None),
    (Misbehaviour.BROTLI, True, None, None),
    (Misbehaviour.LARGE, False, None, None),
    (Misbehaviour.LARGE, True, None, None),
    (Misbehaviour.INTERLEAVED, True, None, None),
    (Misbehaviour.MALFORMED_JSON, True, None, None),
    (Misbehaviour.MALFORMED_JSON, False, conv.STATUS_UNPRICED, "not valid JSON"),
    (Misbehaviour.TRUNCATED, False, conv.STATUS_UNPRICED, "not valid JSON"),
    (Misbehaviour.TRUNCATED, True, conv.STATUS_PARTIAL, "ended before its usage record"),
    (Misbehaviour.MISSING_USAGE, False, conv.STATUS_UNPRICED, "carried no usage"),
    (Misbehaviour.MISSING_USAGE, True, conv.STATUS_PARTIAL, "ended before its usage record"),
    (Misbehaviour.BINARY, False, conv.STATUS_UNPRICED, "not JSON"),
    (Misbehaviour.STREAM_ERROR, True, conv.STATUS_PARTIAL, "error event"),
    (Misbehaviour.DISCONNECT, True, conv.STATUS_PARTIAL, "RemoteProtocolError"),
]


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize(("mode", "stream", "status", "reason"), BAD_OUTPUT)
def test_bad_output_is_flagged_and_the_body_is_unchanged(
    fake: FakeLLMProvider,
    module: Any,
    mode: Misbehaviour | None,
    stream: bool,
    status: str | None,
    reason: str | None,
) -> None:
    """Whatever the provider sends, the caller sees the same bytes as uninstrumented; the span a verdict."""
    if mode is Misbehaviour.BROTLI:
        pytest.importorskip("brotli")
    url = f"{fake.openai_base_url}/chat/completions"
    body = CHAT_STREAM if stream else {"model": "gpt-4o", "messages": MESSAGES}
    baseline = fetch(module, url, body, mode, fake)
    capture = Capture(fake)
    capture.on()
    try:
        observed = fetch(module, url, body, mode, fake)
    finally:
        uninstrument_httpx()
    assert strip_volatile(observed) == strip_volatile(baseline)
    spans = capture.llm_spans()
    assert len(spans) == 2
    for span in spans:
        attributes = span.attributes or {}
        assert attributes.get(conv.COST_STATUS) == status, attributes.get(conv.COST_STATUS_REASON)
        if reason is None:
            assert usage_of(span) == expected_usage(fake.requests[-1])
        else:
            assert reason in str(attributes[conv.COST_STATUS_REASON])


def strip_volatile(seen: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop the headers that differ between any two answers (date, request id)."""
    return tuple(
        {k: v for k, v in item.items() if k not in ("date", "request-id")} if isinstance(item, dict) else item
        for item in seen
    )


def test_a_body_larger_than_the_buffer_is_read_from_head_and_tail(fake: FakeLLMProvider) -> None:
    """A non-stream body past max_body_bytes still yields model and usage from its head and tail."""
    capture = Capture(fake)
    capture.on(max_body_bytes=64 * 1024)
    try:
        fake.misbehave(Misbehaviour.LARGE)
        response = httpx.post(
            f"{fake.openai_base_url}/chat/completions", json={"model": "gpt-4o", "messages": []}
        )
    finally:
        uninstrument_httpx()
    assert len(response.content) > 4 * 1024 * 1024
    span = capture.one_llm_span()
    assert usage_of(span) == expected_usage(fake.requests[-1])
    assert (span.attributes or {})[conv.GEN_AI_RESPONSE_MODEL] == "gpt-4o-2024-08-06"


@pytest.mark.parametrize(("status", "error_type"), [(429, "invalid_request_error"), (500, "server_error")])
def test_http_errors_without_usage_are_flagged_unpriced(
    capture: Capture, fake: FakeLLMProvider, status: int, error_type: str
) -> None:
    """A 4xx/5xx that reports no usage is an ERROR span flagged unpriced; the SDK raises as usual."""
    fake.fail_next(status=status)
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    span = capture.one_llm_span()
    attributes = span.attributes or {}
    assert span.status.status_code is StatusCode.ERROR
    assert attributes["error.type"] == error_type
    assert attributes[conv.COST_STATUS] == conv.STATUS_UNPRICED
    assert f"HTTP {status}" in str(attributes[conv.COST_STATUS_REASON])


def test_an_error_that_reports_usage_is_priced(capture: Capture, fake: FakeLLMProvider) -> None:
    """An error response carrying usage puts that usage on the span and no flag."""
    fake.fail_next(status=500, body={"error": {"type": "server_error"}, "usage": {"prompt_tokens": 11}})
    httpx.post(f"{fake.openai_base_url}/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
    attributes = capture.one_llm_span().attributes or {}
    assert attributes[INPUT] == 11 and conv.COST_STATUS not in attributes
    assert attributes["error.type"] == "server_error"


def test_connection_errors_propagate_unchanged(capture: Capture) -> None:
    """A refused connection raises the client's own error; the span records it, unpriced."""
    with FakeLLMProvider() as gone:
        host, url = gone.host, f"{gone.openai_base_url}/chat/completions"
    capture.on(llm_hosts={host: None})
    with pytest.raises(httpx.ConnectError):
        httpx.post(url, json={"model": "gpt-4o", "messages": []})
    attributes = capture.one_llm_span().attributes or {}
    assert attributes["error.type"] == "ConnectError"
    assert attributes[conv.COST_STATUS] == conv.STATUS_UNPRICED


# ---------------------------------------------------------------------------------------------
# What is and is not an LLM call
# ---------------------------------------------------------------------------------------------


def test_other_hosts_and_paths_are_not_llm_calls(capture: Capture, fake: FakeLLMProvider) -> None:
    """A host not in llm_hosts, a GET, or a non-LLM path makes no LLM span (the HTTP span remains)."""
    httpx.get(f"{fake.openai_base_url}/chat/completions")
    httpx.post(f"{fake.base_url}/v1/files", json={})
    capture.on(llm_hosts={"api.openai.com": "openai"})
    httpx.post(f"{fake.openai_base_url}/chat/completions", json={"model": "gpt-4o", "messages": []})
    assert capture.llm_spans() == []
    assert len([s for s in capture.spans() if s.name in ("GET", "POST")]) == 3


def test_an_sdk_span_already_reporting_the_call_is_not_doubled(
    capture: Capture, fake: FakeLLMProvider
) -> None:
    """Told to defer (``defer_to_sdk_spans=True``), inside the Anthropic SDK's own LLM span the HTTP
    layer adds no second LLM span."""
    capture.on(defer_to_sdk_spans=True)
    client = anthropic.Anthropic(
        base_url=fake.anthropic_base_url,
        api_key="test",
        max_retries=0,
        open_telemetry={"tracer_provider": capture.provider},
    )
    client.messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES)
    llm = capture.llm_spans()
    assert [s.instrumentation_scope.name for s in llm if s.instrumentation_scope] == [
        "com.anthropic.sdk.python"
    ]


def test_an_agent_span_above_does_not_suppress_capture(capture: Capture, fake: FakeLLMProvider) -> None:
    """An invoke_agent span is an aggregate, not an LLM call: the call below it is still captured."""
    tracer = capture.provider.get_tracer("test")
    with tracer.start_as_current_span(
        "invoke_agent triage", attributes={conv.GEN_AI_OPERATION_NAME: "invoke_agent"}
    ):
        openai_chat(fake, stream=False)
    names = [s.name for s in capture.llm_spans()]
    assert "chat gpt-4o" in names and "invoke_agent triage" in names


def test_host_rules_match_exact_port_glob_and_network() -> None:
    """Host rules take exact hosts, host:port, globs and CIDR networks; the first match wins.

    Internal (``HostRules``): the matcher behind ``llm_hosts`` and ``attribution_hosts``, tested on
    hosts (IPv6, CIDR) that a loopback fake provider cannot be reached at.
    """
    rules = HostRules(
        {
            "api.example.com": "a",
            "vllm:8000": "b",
            "*.openai.azure.com": "c",
            "10.0.0.0/8": "d",
            "[::1]:9": "e",
        }
    )
    assert rules.match("api.example.com", 443) == "a"
    assert rules.match("vllm", 8000) == "b"
    assert rules.match("vllm", 8001) != "b"
    assert rules.match("me.openai.azure.com", 443) == "c"
    assert rules.match("10.2.3.4", 80) == "d"
    assert rules.match("::1", 9) == "e"
    assert HostRules(DEFAULT_LLM_HOSTS).match("api.anthropic.com", 443) == "anthropic"
    with pytest.raises(ValueError, match="CIDR"):
        HostRules({"10.0.0.0/99": True})


def test_concurrent_streams_each_get_their_own_usage(capture: Capture, fake: FakeLLMProvider) -> None:
    """Streams read concurrently from several threads end in as many correct spans."""

    def one(_: int) -> None:
        with (
            httpx.Client() as client,
            client.stream("POST", f"{fake.openai_base_url}/chat/completions", json=CHAT_STREAM) as response,
        ):
            consume_chunks(response)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, range(12)))
    spans = capture.llm_spans()
    assert len(spans) == 12
    assert all(usage_of(s) == expected_usage(fake.requests[-1]) for s in spans)


def test_uninstrument_restores_the_transports(fake: FakeLLMProvider) -> None:
    """After uninstrument_httpx, requests make no spans and the transport methods are the originals."""
    original = httpx.HTTPTransport.__dict__["handle_request"]
    capture = Capture(fake)
    capture.on()
    try:
        assert httpx.HTTPTransport.__dict__["handle_request"] is not original
    finally:
        uninstrument_httpx()
    assert httpx.HTTPTransport.__dict__["handle_request"] is original
    httpx.post(f"{fake.openai_base_url}/chat/completions", json={"model": "gpt-4o", "messages": []})
    assert capture.spans() == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"llm_hosts": ["api.openai.com"]}, TypeError),
        ({"attribution_hosts": "gateway"}, TypeError),
        ({"attribution_secret": b"short"}, ValueError),
        ({"max_body_bytes": 10}, ValueError),
        ({"llm_hosts": {"a:b:c:x": None, "host:port": None}}, ValueError),
        ({"tracer_provider": object()}, TypeError),
    ],
)
def test_bad_settings_raise_at_setup(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """Invalid settings are refused when instrumenting, with a message saying what to pass."""
    with pytest.raises(error):
        instrument_httpx(**kwargs)


# ---------------------------------------------------------------------------------------------
# Outbound attribution: only allowlisted hosts get it
# ---------------------------------------------------------------------------------------------


def with_attribution(extra: dict[str, str] | None = None) -> Any:
    ctx = otel_context.get_current()
    for key, value in {**ATTRIBUTION, **(extra or {})}.items():
        ctx = baggage.set_baggage(key, value, ctx)
    return otel_context.attach(ctx)


def baggage_keys(recorded: RecordedRequest) -> set[str]:
    header = recorded.headers.get("baggage", "")
    return {entry.split("=", 1)[0].strip() for entry in header.split(",") if entry.strip()}


def test_allowlisted_hosts_get_headers_and_baggage(capture: Capture, fake: FakeLLMProvider) -> None:
    """A request to an attribution host carries the contract headers and the attribution baggage."""
    capture.on(attribution_hosts=[fake.host])
    token = with_attribution()
    try:
        httpx.post(f"{fake.openai_base_url}/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
    finally:
        otel_context.detach(token)
    headers = fake.requests[-1].headers
    assert headers["x-workflow-id"] == "wf-1" and headers["x-user-id"] == "u-42"
    assert headers["x-team-id"] == "billing" and headers["x-agent-id"] == "agent-7"
    assert headers["x-retry-depth"] == "1" and headers["x-workflow-name"] == "support"
    assert set(ATTRIBUTION) <= baggage_keys(fake.requests[-1])
    assert "traceparent" in headers


@pytest.mark.parametrize("module", MODULES)
def test_third_party_hosts_get_no_attribution(capture: Capture, fake: FakeLLMProvider, module: Any) -> None:
    """A provider host gets no contract headers and no attribution baggage; other baggage passes."""
    token = with_attribution({"region": "eu"})
    try:
        with module.Client() as client:
            client.post(
                f"{fake.openai_base_url}/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES}
            )
    finally:
        otel_context.detach(token)
    recorded = fake.requests[-1]
    assert not [h for h in recorded.headers if h.startswith("x-")]
    assert baggage_keys(recorded) == {"region"}
    assert "traceparent" in recorded.headers
    assert capture.one_llm_span().name == "chat gpt-4o"


def test_sdk_injected_baggage_is_stripped_too(capture: Capture, fake: FakeLLMProvider) -> None:
    """The Anthropic SDK writes its own baggage header; the attribution keys are still removed."""
    client = anthropic.Anthropic(
        base_url=fake.anthropic_base_url,
        api_key="test",
        max_retries=0,
        open_telemetry={"tracer_provider": capture.provider},
    )
    token = with_attribution()
    try:
        client.messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES)
    finally:
        otel_context.detach(token)
    assert baggage_keys(fake.requests[-1]).isdisjoint(ATTRIBUTION)


def test_signed_attribution_round_trips(capture: Capture, fake: FakeLLMProvider) -> None:
    """With a secret, allowlisted requests are signed and accept_attribution trusts them from anywhere."""
    capture.on(attribution_hosts=[fake.host], attribution_secret=SECRET)
    token = with_attribution()
    try:
        httpx.post(f"{fake.base_url}/v1/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
    finally:
        otel_context.detach(token)
    headers = dict(fake.requests[-1].headers)
    assert HEADER_ATTRIBUTION_SIGNATURE.lower() in headers
    request = {"method": "POST", "path": fake.requests[-1].path}
    trust = AttributionTrust(secrets=(SECRET,))
    accepted = accept_attribution(headers, peer="203.0.113.9", trusted=trust, **request)
    assert baggage.get_baggage(conv.BAGGAGE_TEAM_ID, accepted) == "billing"
    assert attribution_rejection(accepted) is None
    headers["x-team-id"] = "someone-else"
    forged = accept_attribution(headers, peer="203.0.113.9", trusted=trust, **request)
    assert baggage.get_baggage(conv.BAGGAGE_TEAM_ID, forged) is None
    assert attribution_rejection(forged) is not None


# ---------------------------------------------------------------------------------------------
# Inbound attribution: the trust boundary
# ---------------------------------------------------------------------------------------------

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
INCOMING = {
    "traceparent": TRACEPARENT,
    "baggage": "team.id=billing,user.id=u-42,region=eu",
    "X-Workflow-Id": "wf-9",
    "X-Team-Id": "billing",
}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(INCOMING, id="mapping"),
        pytest.param([(k.lower().encode(), v.encode()) for k, v in INCOMING.items()], id="asgi"),
        pytest.param({f"HTTP_{k.upper().replace('-', '_')}": v for k, v in INCOMING.items()}, id="wsgi"),
    ],
)
def test_trusted_network_attribution_is_accepted(headers: Any) -> None:
    """From a trusted network, baggage and contract headers become the context's attribution."""
    ctx = accept_attribution(
        headers, peer=("10.1.2.3", 5555), trusted=AttributionTrust(networks=("10.0.0.0/8",))
    )
    assert baggage.get_baggage(conv.BAGGAGE_TEAM_ID, ctx) == "billing"
    assert baggage.get_baggage(conv.BAGGAGE_WORKFLOW_ID, ctx) == "wf-9"
    assert baggage.get_baggage("region", ctx) == "eu"
    assert trace.get_current_span(ctx).get_span_context().trace_id == int(TRACEPARENT.split("-")[1], 16)
    assert attribution_rejection(ctx) is None


def test_untrusted_attribution_is_dropped_and_flagged() -> None:
    """From an untrusted peer, attribution is dropped, the context flagged and the current span marked."""
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("server"):
        ctx = accept_attribution(
            INCOMING, peer="198.51.100.7", trusted=AttributionTrust(networks=("10.0.0.0/8",))
        )
    assert baggage.get_baggage(conv.BAGGAGE_TEAM_ID, ctx) is None
    assert baggage.get_baggage(conv.BAGGAGE_WORKFLOW_ID, ctx) is None
    assert baggage.get_baggage("region", ctx) == "eu"
    assert "198.51.100.7" in str(attribution_rejection(ctx))
    rejected = (exporter.get_finished_spans()[0].attributes or {})[conv.ATTRIBUTION_REJECTED]
    assert isinstance(rejected, tuple) and set(rejected) == {
        conv.BAGGAGE_TEAM_ID,
        conv.BAGGAGE_USER_ID,
        conv.BAGGAGE_WORKFLOW_ID,
    }
    assert trace.get_current_span(ctx).get_span_context().is_valid


def test_untrusted_trace_context_can_be_refused() -> None:
    """With untrusted_trace_context=False an untrusted caller cannot even become the trace parent."""
    ctx = accept_attribution(INCOMING, peer=None, trusted=AttributionTrust(untrusted_trace_context=False))
    assert not trace.get_current_span(ctx).get_span_context().is_valid


@pytest.mark.parametrize(
    ("mutate", "ok"),
    [
        (lambda h, now: None, True),
        (lambda h, now: h.update({HEADER_ATTRIBUTION_SIGNATURE: h[SIGNATURE]}), False),
        (lambda h, now: h.update({"x-team-id": "other"}), False),
        (lambda h, now: h.update({SIGNATURE: f"t={int(now) - 3600},v1=00"}), False),
        (lambda h, now: h.pop(SIGNATURE), False),
        (lambda h, now: h.update({SIGNATURE: "garbage"}), False),
    ],
    ids=["valid", "repeated", "tampered", "expired", "unsigned", "garbage"],
)
def test_signatures_are_checked(mutate: Callable[[dict[str, str], float], None], ok: bool) -> None:
    """Only an intact signature made within the allowed skew is trusted."""
    token = with_attribution()
    try:
        signed = attribution_headers(secret=SECRET, method="POST", url="http://svc.internal/run")
        headers = {k.lower(): v for k, v in signed.items()}
        # What the global propagator sends alongside (the signature covers it too).
        propagate.inject(headers)
    finally:
        otel_context.detach(token)
    headers["baggage"] += ",region=eu"
    headers["host"] = "svc.internal"
    now = time.time()
    mutate(headers, now)
    ctx = accept_attribution(
        headers,
        peer="203.0.113.1",
        trusted=AttributionTrust(secrets=(SECRET,)),
        now=now,
        method="POST",
        path="/run",
    )
    assert (baggage.get_baggage(conv.BAGGAGE_USER_ID, ctx) == "u-42") is ok
    assert (attribution_rejection(ctx) is None) is ok


def test_repeated_contract_headers_are_not_trusted() -> None:
    """A contract header sent twice is ambiguous and never accepted, even from a trusted network."""
    headers = [(b"x-team-id", b"billing"), (b"x-team-id", b"other"), (b"x-user-id", b"u-1")]
    ctx = accept_attribution(headers, peer="10.0.0.1", trusted=AttributionTrust(networks=("10.0.0.0/8",)))
    assert baggage.get_baggage(conv.BAGGAGE_TEAM_ID, ctx) is None
    assert baggage.get_baggage(conv.BAGGAGE_USER_ID, ctx) == "u-1"


def test_trust_policy_validation() -> None:
    """Bad trust settings are refused with a message saying what to pass."""
    with pytest.raises(ValueError, match="CIDR"):
        AttributionTrust(networks=("not-a-network",))
    with pytest.raises(ValueError, match="16"):
        AttributionTrust(secrets=(b"short",))
    with pytest.raises(TypeError):
        AttributionTrust(networks="10.0.0.0/8")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        accept_attribution({}, peer=None, trusted=None)  # type: ignore[arg-type]


def test_threads_keep_their_own_context(capture: Capture, fake: FakeLLMProvider) -> None:
    """The context attached around a request is restored afterwards, in every thread."""
    before = otel_context.get_current()
    done = threading.Event()

    def worker() -> None:
        httpx.post(f"{fake.openai_base_url}/chat/completions", json={"model": "gpt-4o", "messages": []})
        done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    assert done.wait(10)
    thread.join(10)
    token = with_attribution()
    try:
        inside = otel_context.get_current()
        httpx.post(f"{fake.openai_base_url}/chat/completions", json={"model": "gpt-4o", "messages": []})
        assert otel_context.get_current() is inside
    finally:
        otel_context.detach(token)
    assert otel_context.get_current() is before


# ---------------------------------------------------------------------------------------------
# http_spans=False: one span per LLM call
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
def test_without_http_spans_the_llm_span_carries_the_http_attributes(
    capture: Capture, fake: FakeLLMProvider, module: Any
) -> None:
    """With http_spans=False an LLM call is one span: HTTP attributes on it, its own traceparent sent."""
    capture.on(http_spans=False)
    url = f"{fake.gemini_base_url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=secret"
    token = with_attribution({"region": "eu"})
    try:
        with module.Client() as client:
            client.post(url, json=GEMINI_BODY)
            client.get(f"{fake.base_url}/v1/models")
    finally:
        otel_context.detach(token)
    span = capture.one_llm_span()
    attributes = span.attributes or {}
    assert attributes["http.request.method"] == "POST"
    assert attributes["http.response.status_code"] == 200
    assert (
        attributes["url.full"]
        == f"{fake.gemini_base_url}/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    )
    assert usage_of(span) == expected_usage(fake.requests[-2], cache_write=False)
    assert [s.name for s in capture.spans()] == ["generate_content gemini-2.5-flash", "GET"]
    sent = fake.requests[-2]
    assert sent.headers["traceparent"].split("-")[2] == format(span.context.span_id, "016x")
    assert baggage_keys(sent) == {"region"}


def test_without_http_spans_sdk_streams_still_complete(capture: Capture, fake: FakeLLMProvider) -> None:
    """SDK streams are captured the same way when the HTTP span is left out."""
    capture.on(http_spans=False)
    anthropic_messages(fake, stream=True)
    span = capture.one_llm_span()
    assert usage_of(span) == expected_usage(fake.requests[-1], reasoning=False)
    assert capture.spans() == [span]


INSTRUMENTORS = {httpx: HTTPXClientInstrumentor, httpx2: HTTPX2ClientInstrumentor}


@pytest.mark.parametrize("module", MODULES)
def test_without_http_spans_a_wrapper_between_is_still_called(fake: FakeLLMProvider, module: Any) -> None:
    """A wrapper between ours and the instrumentation's is not skipped: the call goes through it.

    Internal (``_sdk.instrumentation_target``): asserts which method the one-span path would call.
    """
    instrumentor = INSTRUMENTORS[module]()
    instrumentor.instrument()
    theirs = module.HTTPTransport.__dict__["handle_request"]
    assert instrumentation_target(theirs, type(instrumentor), asynchronous=False) is not None
    seen: list[str] = []

    def between(self: Any, request: Any) -> Any:
        seen.append(str(request.url))
        return theirs.__get__(self, type(self))(request)

    assert instrumentation_target(between, type(instrumentor), asynchronous=False) is None
    module.HTTPTransport.handle_request = between
    capture = Capture(fake)
    try:
        capture.on(http_spans=False)
        with module.Client() as client:
            client.post(f"{fake.openai_base_url}/chat/completions", json={"model": "gpt-4o", "messages": []})
    finally:
        uninstrument_httpx()
        module.HTTPTransport.handle_request = theirs
        instrumentor.uninstrument()
    assert seen == [f"{fake.openai_base_url}/chat/completions"]
    span = capture.one_llm_span()
    assert usage_of(span) == expected_usage(fake.requests[-1])
    assert capture.spans() == [span]


class AttributeSampler(Sampler):
    """Samples every span and records the attributes it was asked with."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, Any]] = {}

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        self.seen[name] = dict(attributes or {})
        return ALWAYS_ON.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return "AttributeSampler"


@pytest.mark.parametrize("http_spans", [True, False])
def test_a_sampler_that_reads_attributes_sees_the_llm_call(fake: FakeLLMProvider, http_spans: bool) -> None:
    """With a sampler of its own the LLM span's attributes are given at its start, as before."""
    sampler = AttributeSampler()
    capture = Capture(fake)
    capture.provider = TracerProvider(sampler=sampler)
    capture.provider.add_span_processor(SimpleSpanProcessor(capture.exporter))
    capture.on(http_spans=http_spans)
    try:
        httpx.post(f"{fake.openai_base_url}/chat/completions", json={"model": "gpt-4o", "messages": []})
    finally:
        uninstrument_httpx()
    asked = sampler.seen["chat gpt-4o"]
    assert asked[conv.GEN_AI_REQUEST_MODEL] == "gpt-4o" and asked[conv.GEN_AI_OPERATION_NAME] == "chat"
    assert ("url.full" in asked) is not http_spans
    span = capture.one_llm_span()
    assert (span.attributes or {})[conv.GEN_AI_REQUEST_MODEL] == "gpt-4o"
    assert usage_of(span) == expected_usage(fake.requests[-1])


def test_span_limits_apply_to_the_llm_span_attributes(fake: FakeLLMProvider) -> None:
    """Attribute length limits truncate the LLM span's attributes as the SDK's set_attributes would."""
    capture = Capture(fake)
    capture.provider = TracerProvider(span_limits=SpanLimits(max_span_attribute_length=12))
    capture.provider.add_span_processor(SimpleSpanProcessor(capture.exporter))
    capture.on(http_spans=False)
    try:
        httpx.post(f"{fake.openai_base_url}/chat/completions", json={"model": "gpt-4o", "messages": []})
    finally:
        uninstrument_httpx()
    attributes = capture.one_llm_span().attributes or {}
    assert attributes["url.full"] == f"{fake.openai_base_url}/chat/completions"[:12]
    assert attributes[conv.GEN_AI_RESPONSE_MODEL] == "gpt-4o-2024-08-06"[:12]
    assert attributes[conv.GEN_AI_REQUEST_MODEL] == "gpt-4o"
    assert attributes[OUTPUT] == expected_usage(fake.requests[-1])[OUTPUT]


def test_parent_agent_header_comes_from_the_current_agent_span(
    capture: Capture, fake: FakeLLMProvider
) -> None:
    """Inside an agent span that has a parent agent, allowlisted requests carry X-Parent-Agent-Id."""
    capture.on(attribution_hosts=[fake.host])
    tracer = capture.provider.get_tracer("test")
    token = with_attribution()
    try:
        with tracer.start_as_current_span(
            "invoke_agent triage", attributes={conv.AGENT_PARENT_ID: "planner"}
        ):
            httpx.post(f"{fake.base_url}/v1/chat/completions", json={"model": "gpt-4o", "messages": []})
            headers = attribution_headers()
    finally:
        otel_context.detach(token)
    assert fake.requests[-1].headers["x-parent-agent-id"] == "planner"
    assert headers[conv.HEADER_PARENT_AGENT_ID] == "planner"
    assert headers[conv.HEADER_TEAM_ID] == "billing" and HEADER_ATTRIBUTION_SIGNATURE not in headers


class BaggageAtStart(SpanProcessor):
    """Records the baggage each span started under."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, object]] = {}

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.seen[span.name] = dict(baggage.get_all(parent_context))


def test_spans_keep_attribution_while_the_header_loses_it(capture: Capture, fake: FakeLLMProvider) -> None:
    """The LLM and HTTP spans start with the attribution baggage; only the sent header is filtered."""
    recorder = BaggageAtStart()
    capture.provider.add_span_processor(recorder)
    token = with_attribution()
    try:
        openai_chat(fake, stream=False)
    finally:
        otel_context.detach(token)
    assert set(ATTRIBUTION) <= set(recorder.seen["chat gpt-4o"])
    assert set(ATTRIBUTION) <= set(recorder.seen["POST"])
    assert baggage_keys(fake.requests[-1]).isdisjoint(ATTRIBUTION)


def test_a_replaced_propagator_still_sends_no_attribution(capture: Capture, fake: FakeLLMProvider) -> None:
    """If the global propagator is replaced after instrumenting, the attribution is still not sent."""
    original = propagate.get_global_textmap()
    replacement = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    propagate.set_global_textmap(replacement)
    token = with_attribution({"region": "eu"})
    try:
        httpx.post(f"{fake.openai_base_url}/chat/completions", json={"model": "gpt-4o", "messages": []})
    finally:
        otel_context.detach(token)
        propagate.set_global_textmap(original)
    assert baggage_keys(fake.requests[-1]) == {"region"}


def test_uninstrument_restores_the_global_propagator(fake: FakeLLMProvider) -> None:
    """instrument_httpx wraps the global propagator; uninstrument_httpx puts the original back."""
    original = propagate.get_global_textmap()
    Capture(fake).on()
    try:
        assert propagate.get_global_textmap() is not original
    finally:
        uninstrument_httpx()
    assert propagate.get_global_textmap() is original


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b'{"model": "gpt-4o", "messages": [', id="truncated"),
        pytest.param(b'{"model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="too-deep"),
        pytest.param(b'{"model": "gpt-4o"} trailing', id="extra-data"),
        pytest.param(b'{"model": "\xff"}', id="not-utf-8"),
        pytest.param(b"", id="empty"),
    ],
)
def test_an_unreadable_request_body_gives_no_fields(content: bytes) -> None:
    """A request body that is not one JSON object reads as no fields (the model then comes from the path).

    Internal (``_call._request_fields``): bodies no SDK sends, fed to the reader directly.
    """

    class Request:
        pass

    request = Request()
    request.content = content  # type: ignore[attr-defined]
    assert _request_fields(request) == {}


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize(
    "url",
    [
        "http://user:pw@127.0.0.1:8000/v1/chat/completions?key=abc#frag",
        "https://api.openai.com:443/v1/chat/completions",
        "https://[::1]:8443/v1/a%20b/responses?x=1",
        "https://bücher.example/v1/messages",
        "HTTPS://API.Example.COM/v1/models/gemini-pro:generateContent?key=k",
        "http://h/./v1/../v1/embeddings",
        "http://h/v1/caf\u00e9/chat/completions?q=%3F",
    ],
)
def test_url_full_is_the_url_without_query_or_credentials(module: Any, url: str) -> None:
    """url.full is exactly what re-parsing the URL without query, fragment and user info gives.

    Internal (``_call._url_without_query``): compared with httpx's own re-parse on URLs (IPv6,
    IDNA, dot segments) that the loopback fake provider cannot be reached at.
    """
    parsed = module.URL(url)
    expected = str(parsed.copy_with(query=None, fragment=None, username=None, password=None))
    assert _url_without_query(parsed) == expected
    assert "?" not in expected and "pw" not in expected


class SpanRefs(SpanProcessor):
    """Weak references to the spans started, to see what keeps them alive."""

    def __init__(self) -> None:
        self.refs: list[weakref.ref[Any]] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.refs.append(weakref.ref(span))


@pytest.mark.parametrize("http_spans", [True, False])
def test_a_read_response_does_not_keep_its_llm_span_alive(
    capture: Capture, fake: FakeLLMProvider, http_spans: bool
) -> None:
    """Once the body is read the span is ended and released, though the response object lives on."""
    capture.on(http_spans=http_spans)
    refs = SpanRefs()
    capture.provider.add_span_processor(refs)
    with httpx.Client() as client:
        response = client.post(
            f"{fake.base_url}/v1/chat/completions", json={"model": "gpt-4o", "messages": []}
        )
        assert usage_of(capture.one_llm_span()) == expected_usage(fake.requests[-1])
        assert refs.refs and all(ref() is None for ref in refs.refs)
        assert response.status_code == 200
