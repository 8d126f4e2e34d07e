"""Usage that is not whole, tried as a hostile or broken provider would send it (issue 13.4, 11.3).

Provider replies go through the real httpx capture against ``FakeLLMProvider`` and the real cost
pipeline; third-party spans are real SDK spans with the attribute names each instrumentation
writes. Every case ends with a ``cost.status`` and, when not plainly priced, a reason naming
what is wrong: never a silent whole price, never a silent $0, never no status at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import SpanLimits, TracerProvider

from otel_costs import conventions as conv
from otel_costs.capture import instrument_httpx, uninstrument_httpx
from otel_costs.testing import FakeLLMProvider, InMemoryPipeline, fixed_price_book

PRICES = {
    "gpt-4o": {"input": 2.5, "output": 10.0},
    "claude-sonnet-4-5": {"input": 3.0, "output": 15.0},
    "gemini-2.5-pro": {"input": 1.25, "output": 10.0},
    "text-embedding-3-small": {"input": 0.02, "output": 0.0},
}
MESSAGES = [{"role": "user", "content": "hi"}]
LIMIT_HINT = "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT"


@pytest.fixture
def fake() -> Iterator[FakeLLMProvider]:
    with FakeLLMProvider() as provider:
        yield provider


@pytest.fixture
def costs() -> Iterator[InMemoryPipeline]:
    pipeline = InMemoryPipeline(price_book=fixed_price_book(PRICES))
    yield pipeline
    pipeline.shutdown()


@pytest.fixture
def captured(fake: FakeLLMProvider, costs: InMemoryPipeline) -> Iterator[InMemoryPipeline]:
    instrument_httpx(tracer_provider=costs.tracer_provider, llm_hosts={fake.host: None})
    yield costs
    uninstrument_httpx()


def llm_span(pipeline: InMemoryPipeline) -> Mapping[str, Any]:
    """The attributes of the one exported model-call span."""
    spans = [s for s in pipeline.spans() if conv.COST_STATUS in (s.attributes or {})]
    assert len(spans) == 1, [(s.name, dict(s.attributes or {})) for s in pipeline.spans()]
    return spans[0].attributes or {}


def assert_flagged(attributes: Mapping[str, Any], status: str, fragment: str) -> None:
    """The span has ``status`` and a reason holding ``fragment``; a partial one carries a cost
    (what was seen, a lower bound), any other flag none."""
    assert attributes[conv.COST_STATUS] == status
    assert fragment in str(attributes.get(conv.COST_STATUS_REASON))
    if status == conv.STATUS_PARTIAL:
        assert attributes[conv.COST_DIRECT_NANOS] > 0
    else:
        assert conv.COST_DIRECT_NANOS not in attributes


def reply(fake: FakeLLMProvider, path: str, body: object, *, sse: bool = False) -> None:
    """Have the fake provider answer the next request with ``body`` (JSON, or SSE events)."""
    if sse:
        assert isinstance(body, list)
        raw = "".join(f"data: {json.dumps(event)}\n\n" for event in body).encode()
        fake.fail_next(status=200, body=raw, headers={"content-type": "text/event-stream"})
    else:
        fake.fail_next(
            status=200, body=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
    url = {
        "chat": f"{fake.openai_base_url}/chat/completions",
        "responses": f"{fake.openai_base_url}/responses",
        "embeddings": f"{fake.openai_base_url}/embeddings",
        "anthropic": f"{fake.anthropic_base_url}/v1/messages",
        "gemini": f"{fake.gemini_base_url}/v1beta/models/gemini-2.5-pro:generateContent",
    }[path]
    httpx.post(url, json={"model": "m", "messages": MESSAGES, "input": "x"}).read()


def chat(usage: object, model: str = "gpt-4o") -> dict[str, Any]:
    return {"id": "c1", "model": model, "choices": [], "usage": usage}


# --- provider replies ------------------------------------------------------------------------

REPLY_CASES = [
    # (id, path, body, sse, status, fragment of the reason)
    ("chat-negative-input", "chat", chat({"prompt_tokens": -5, "completion_tokens": 10}), False,
     conv.STATUS_INVALID_USAGE, "prompt_tokens=-5"),
    ("chat-null-input", "chat", chat({"prompt_tokens": None, "completion_tokens": 10}), False,
     conv.STATUS_PARTIAL, "prompt_tokens"),
    ("chat-bool-input", "chat", chat({"prompt_tokens": True, "completion_tokens": 10}), False,
     conv.STATUS_INVALID_USAGE, "prompt_tokens=True"),
    ("chat-float-output", "chat", chat({"prompt_tokens": 5, "completion_tokens": 1.5}), False,
     conv.STATUS_INVALID_USAGE, "completion_tokens=1.5"),
    ("chat-string-output", "chat", chat({"prompt_tokens": 5, "completion_tokens": "10"}), False,
     conv.STATUS_INVALID_USAGE, "completion_tokens='10'"),
    ("chat-negative-cached", "chat",
     chat({"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": -1}}),
     False, conv.STATUS_INVALID_USAGE, "prompt_tokens_details.cached_tokens"),
    ("chat-missing-output", "chat", chat({"prompt_tokens": 5}), False, conv.STATUS_PARTIAL,
     "completion_tokens"),
    ("chat-missing-input", "chat", chat({"completion_tokens": 5}), False, conv.STATUS_PARTIAL,
     "prompt_tokens"),
    ("chat-all-zero", "chat", chat({"prompt_tokens": 0, "completion_tokens": 0}), False,
     conv.STATUS_UNPRICED, "usage reported as zero"),
    ("chat-stream-negative", "chat",
     [{"id": "c1", "model": "gpt-4o", "choices": [{"delta": {"content": "hi"}}]},
      chat({"prompt_tokens": 3, "completion_tokens": -2})], True,
     conv.STATUS_INVALID_USAGE, "completion_tokens=-2"),
    ("responses-null-output", "responses",
     {"id": "r1", "model": "gpt-4o", "usage": {"input_tokens": 5, "output_tokens": None}}, False,
     conv.STATUS_PARTIAL, "output_tokens"),
    ("anthropic-negative-input", "anthropic",
     {"id": "m1", "type": "message", "model": "claude-sonnet-4-5",
      "usage": {"input_tokens": -1, "output_tokens": 3}}, False,
     conv.STATUS_INVALID_USAGE, "input_tokens=-1"),
    ("anthropic-missing-output", "anthropic",
     {"id": "m1", "type": "message", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 4}}, False,
     conv.STATUS_PARTIAL, "output_tokens"),
    ("gemini-string-prompt", "gemini",
     {"modelVersion": "gemini-2.5-pro",
      "usageMetadata": {"promptTokenCount": "5", "candidatesTokenCount": 2}},
     False, conv.STATUS_INVALID_USAGE, "promptTokenCount='5'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "sse", "status", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in REPLY_CASES],
)
def test_a_reply_whose_usage_is_not_whole_is_flagged(
    fake: FakeLLMProvider,
    captured: InMemoryPipeline,
    path: str,
    body: object,
    sse: bool,
    status: str,
    fragment: str,
) -> None:
    """A provider reply with negative, null, non-integer, missing or all-zero counts gets the flag
    and a reason naming the field on the exported span; a partial one is priced on what it has."""
    reply(fake, path, body, sse=sse)
    assert_flagged(llm_span(captured), status, fragment)


def test_an_embeddings_reply_without_output_is_priced_whole(
    fake: FakeLLMProvider, captured: InMemoryPipeline
) -> None:
    """An embeddings reply reports input tokens only: that is its whole usage, priced, no flag."""
    reply(
        fake,
        "embeddings",
        {"model": "text-embedding-3-small", "usage": {"prompt_tokens": 1000, "total_tokens": 1000}},
    )
    attributes = llm_span(captured)
    assert attributes[conv.COST_STATUS] == conv.STATUS_PRICED
    assert conv.COST_STATUS_REASON not in attributes
    assert attributes[conv.COST_DIRECT_NANOS] == 20_000  # 1000 tokens at $0.02 per 1M


# --- the capture layer's own flag reaches the exported span unchanged --------------------------


def test_stream_without_include_usage_keeps_the_capture_reason(
    fake: FakeLLMProvider, captured: InMemoryPipeline
) -> None:
    """A chat stream requested without include_usage reaches the exporter with the capture
    layer's own status and reason, not pricing's generic guess."""
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", f"{fake.openai_base_url}/chat/completions", json=body) as response:
        response.read()
    attributes = llm_span(captured)
    assert attributes[conv.COST_STATUS] == conv.STATUS_PARTIAL
    assert attributes[conv.COST_STATUS_REASON] == (
        "streamed without stream_options.include_usage, so the provider sent no usage"
    )


def test_http_500_keeps_the_capture_reason(fake: FakeLLMProvider, captured: InMemoryPipeline) -> None:
    """An HTTP 500 reaches the exporter unpriced with the capture layer's "HTTP 500" reason."""
    fake.fail_next(status=500)
    httpx.post(f"{fake.openai_base_url}/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
    attributes = llm_span(captured)
    assert attributes[conv.COST_STATUS] == conv.STATUS_UNPRICED
    assert str(attributes[conv.COST_STATUS_REASON]).startswith("HTTP 500")


def test_a_cut_stream_keeps_the_capture_reason(fake: FakeLLMProvider, captured: InMemoryPipeline) -> None:
    """A stream whose connection drops before its usage record reaches the exporter partial, with
    the reason naming the client's error."""
    fake.misbehave("disconnect")
    body = {
        "model": "gpt-4o",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", f"{fake.openai_base_url}/chat/completions", json=body) as response,
    ):
        response.read()
    attributes = llm_span(captured)
    assert attributes[conv.COST_STATUS] == conv.STATUS_PARTIAL
    assert "RemoteProtocolError" in str(attributes[conv.COST_STATUS_REASON])


# --- third-party spans -------------------------------------------------------------------------

SPAN_CASES = [
    # (id, attributes, status, fragment of the reason)
    ("openinference-autogen-zero",
     {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o",
      "llm.token_count.prompt": 0, "llm.token_count.completion": 0},
     conv.STATUS_UNPRICED, "usage reported as zero"),
    ("genai-all-zero",
     {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
      "gen_ai.usage.input_tokens": 0, "gen_ai.usage.output_tokens": 0},
     conv.STATUS_UNPRICED, "usage reported as zero"),
    ("openllmetry-negative",
     {"llm.request.type": "chat", "gen_ai.request.model": "gpt-4o",
      "gen_ai.usage.prompt_tokens": -5, "gen_ai.usage.completion_tokens": 10},
     conv.STATUS_INVALID_USAGE, "gen_ai.usage.prompt_tokens is negative"),
    ("genai-input-only",
     {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10},
     conv.STATUS_PARTIAL, "gen_ai.usage.output_tokens"),
    ("genai-output-only",
     {"gen_ai.operation.name": "text_completion", "gen_ai.request.model": "gpt-4o",
      "gen_ai.usage.output_tokens": 10},
     conv.STATUS_PARTIAL, "gen_ai.usage.input_tokens"),
    ("openinference-input-only",
     {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o", "llm.token_count.prompt": 7},
     conv.STATUS_PARTIAL, "output token count"),
    ("genai-bool",
     {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
      "gen_ai.usage.input_tokens": True, "gen_ai.usage.output_tokens": 1},
     conv.STATUS_INVALID_USAGE, "is a bool"),
    ("genai-fraction",
     {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
      "gen_ai.usage.input_tokens": 1.5, "gen_ai.usage.output_tokens": 1},
     conv.STATUS_INVALID_USAGE, "not a whole number"),
    ("genai-string",
     {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
      "gen_ai.usage.input_tokens": "ten", "gen_ai.usage.output_tokens": 1},
     conv.STATUS_INVALID_USAGE, "not a whole number"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("attributes", "status", "fragment"), [pytest.param(*case[1:], id=case[0]) for case in SPAN_CASES]
)
def test_a_third_party_span_whose_usage_is_not_whole_is_flagged(
    costs: InMemoryPipeline, attributes: dict[str, Any], status: str, fragment: str
) -> None:
    """Usage read off OTel GenAI, OpenInference and OpenLLMetry spans that is one-sided, all zero,
    negative or not an integer gets the flag and a reason naming the field, never a whole price."""
    costs.tracer_provider.get_tracer("third-party").start_span("llm", attributes=attributes).end()
    assert_flagged(llm_span(costs), status, fragment)


@pytest.mark.parametrize(
    "attributes",
    [
        {"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "text-embedding-3-small"},
        {"openinference.span.kind": "EMBEDDING", "embedding.model_name": "text-embedding-3-small"},
        {"llm.request.type": "embedding", "gen_ai.request.model": "text-embedding-3-small"},
    ],
)
def test_a_third_party_embeddings_span_with_input_only_is_priced(
    costs: InMemoryPipeline, attributes: dict[str, Any]
) -> None:
    """Embeddings spans of each convention report input tokens only: priced whole, no flag."""
    tokens = {"gen_ai.usage.input_tokens": 1000}
    costs.tracer_provider.get_tracer("third-party").start_span(
        "embed", attributes={**attributes, **tokens}
    ).end()
    got = llm_span(costs)
    assert got[conv.COST_STATUS] == conv.STATUS_PRICED and got[conv.COST_DIRECT_NANOS] == 20_000


# --- the SDK's attribute count limit -------------------------------------------------------------


def test_a_third_party_span_whose_usage_was_evicted_is_flagged(costs: InMemoryPipeline) -> None:
    """A model-call span that loses its usage and kind marker to the SDK's 128-attribute limit
    (the oldest keys go first) still ends with cost.status, and the reason says how to fix it."""
    tracer = costs.tracer_provider.get_tracer("third-party")
    span = tracer.start_span("chat gpt-4o", attributes={"gen_ai.operation.name": "chat"})
    span.set_attributes({"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10})
    span.set_attributes({"gen_ai.usage.output_tokens": 5})
    span.set_attributes({f"llm.output_messages.{i}.message.content": "x" for i in range(200)})
    span.end()
    (exported,) = costs.spans()
    attributes = exported.attributes or {}
    assert exported.dropped_attributes > 0 and "gen_ai.usage.input_tokens" not in attributes
    assert attributes[conv.COST_STATUS] == conv.STATUS_UNPRICED
    assert LIMIT_HINT in str(attributes[conv.COST_STATUS_REASON])


def test_a_span_whose_input_was_evicted_says_so(costs: InMemoryPipeline) -> None:
    """A span whose input count was evicted but whose output count and marker survive is partial,
    and the reason names the attribute limit as well as the missing count."""
    tracer = costs.tracer_provider.get_tracer("third-party")
    span = tracer.start_span("chat gpt-4o")
    span.set_attribute("gen_ai.usage.input_tokens", 10)
    span.set_attributes({f"llm.input_messages.{i}.message.content": "x" for i in range(130)})
    span.set_attributes(
        {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.output_tokens": 5}
    )
    span.end()
    attributes = llm_span(costs)
    assert attributes[conv.COST_STATUS] == conv.STATUS_PARTIAL
    reason = str(attributes[conv.COST_STATUS_REASON])
    assert LIMIT_HINT in reason and "gen_ai.usage.input_tokens" in reason


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 6, 128])
def test_our_capture_span_over_the_attribute_limit_is_priced_or_flagged(
    fake: FakeLLMProvider, costs: InMemoryPipeline, limit: int
) -> None:
    """The capture's own LLM span under an attribute limit small enough to evict its usage or
    model is priced when they survive, else flagged with a reason naming the limit."""
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=limit))
    provider.add_span_processor(costs.processor)
    instrument_httpx(tracer_provider=provider, llm_hosts={fake.host: None}, http_spans=False)
    try:
        reply(fake, "chat", chat({"prompt_tokens": 1000, "completion_tokens": 100}))
    finally:
        uninstrument_httpx()
    provider.force_flush()
    (exported,) = costs.spans()
    attributes = exported.attributes or {}
    assert conv.COST_STATUS in attributes, dict(attributes)
    if attributes[conv.COST_STATUS] == conv.STATUS_PRICED:
        assert attributes[conv.COST_DIRECT_NANOS] == 3_500_000  # 1000 in at $2.5, 100 out at $10 per 1M
    else:
        assert exported.dropped_attributes > 0
        assert LIMIT_HINT in str(attributes.get(conv.COST_STATUS_REASON)), dict(attributes)
