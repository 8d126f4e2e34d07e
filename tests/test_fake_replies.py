"""Scripted replies of the fake provider: text and tool calls, as the real SDKs parse them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from otel_costs.testing import FakeLLMProvider, FakeReply, FakeToolCall, RecordedRequest

CALLS = (
    FakeToolCall("transfer_to_billing", {"reason": "refund"}),
    FakeToolCall("lookup", '{"order": 42}', id="call_given"),
)
MESSAGES: list[Any] = [{"role": "user", "content": "I want my money back"}]
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
    for name in ("transfer_to_billing", "lookup")
]


def respond(request: RecordedRequest) -> FakeReply | None:
    """Tool calls while the conversation has no tool result yet, then the default text."""
    body = request.body if isinstance(request.body, dict) else {}
    history = json.dumps(body.get("messages") or body.get("input") or [])
    if "tool_result" in history or '"tool"' in history or "function_call_output" in history:
        return None
    return FakeReply(text="Let me check.", tool_calls=CALLS)


@pytest.fixture
def fake() -> Iterator[FakeLLMProvider]:
    with FakeLLMProvider(responder=respond) as provider:
        yield provider


def openai_client(fake: FakeLLMProvider) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)


def test_chat_completion_carries_the_scripted_tool_calls(fake: FakeLLMProvider) -> None:
    """A chat completion has the scripted text, tool calls (ids, names, JSON arguments) and finish reason."""
    completion = openai_client(fake).chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=TOOLS)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    calls = choice.message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("transfer_to_billing", {"reason": "refund"}),
        ("lookup", {"order": 42}),
    ]
    assert calls[1].id == "call_given" and calls[0].id.startswith("call_fake")


def test_chat_stream_accumulates_to_the_same_tool_calls(fake: FakeLLMProvider) -> None:
    """The streamed chat deltas accumulate (the SDK's own stream helper) to the same tool calls."""
    with openai_client(fake).chat.completions.stream(
        model="gpt-4o", messages=MESSAGES, tools=TOOLS, stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["transfer_to_billing", "lookup"]
    assert json.loads(calls[1].function.arguments) == {"order": 42}
    assert final.usage is not None and final.usage.completion_tokens == 3 + 2  # three words, two calls


def test_a_tool_result_turn_gets_the_default_text(fake: FakeLLMProvider) -> None:
    """A responder returning None gives the provider's default reply, with no tool calls."""
    messages = [
        *MESSAGES,
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "found"},
    ]
    completion = openai_client(fake).chat.completions.create(model="gpt-4o", messages=messages)
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].message.content == "Hello from the fake provider."
    assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("stream", [False, True])
def test_responses_api_returns_function_call_items(fake: FakeLLMProvider, stream: bool) -> None:
    """The Responses API answer has a message item and one function_call item per call, streamed or not."""
    client = openai_client(fake)
    tools: Any = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
    if stream:
        with client.responses.stream(model="gpt-4o", input="refund", tools=tools) as events:
            response = events.get_final_response()
    else:
        response = client.responses.create(model="gpt-4o", input="refund", tools=tools)
    kinds = [item.type for item in response.output]
    assert kinds == ["message", "function_call", "function_call"]
    calls = [item for item in response.output if item.type == "function_call"]
    assert [(c.name, c.call_id, json.loads(c.arguments)) for c in calls][1] == (
        "lookup",
        "call_given",
        {"order": 42},
    )
    assert response.output_text == "Let me check."


def test_a_reply_of_tool_calls_only_has_no_text_part() -> None:
    """A FakeReply without text answers with tool calls only: no message item, no text block."""
    only_calls = FakeReply(tool_calls=[FakeToolCall("lookup")])
    with FakeLLMProvider(responder=lambda request: only_calls) as fake:
        response = openai_client(fake).responses.create(model="gpt-4o", input="x")
        chat = openai_client(fake).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        message = anthropic.Anthropic(
            base_url=fake.anthropic_base_url, api_key="t", max_retries=0
        ).messages.create(model="claude-test-1", max_tokens=10, messages=MESSAGES)
    assert [item.type for item in response.output] == ["function_call"]
    assert chat.choices[0].message.content is None
    assert [block.type for block in message.content] == ["tool_use"]
    assert fake.requests[0].usage is not None and fake.requests[0].usage.output_tokens == 1


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_messages_carry_tool_use_blocks(fake: FakeLLMProvider, stream: bool) -> None:
    """Anthropic answers have a text block and tool_use blocks with object inputs, streamed or not."""
    client = anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="test", max_retries=0)
    if stream:
        with client.messages.stream(model="claude-test-1", max_tokens=50, messages=MESSAGES) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(model="claude-test-1", max_tokens=50, messages=MESSAGES)
    assert message.stop_reason == "tool_use"
    blocks = [(b.type, getattr(b, "name", None), getattr(b, "input", None)) for b in message.content]
    assert blocks == [
        ("text", None, None),
        ("tool_use", "transfer_to_billing", {"reason": "refund"}),
        ("tool_use", "lookup", {"order": 42}),
    ]


def test_the_responder_sees_the_request_as_it_arrived() -> None:
    """The responder gets the request's path, headers and parsed body before the answer is built."""
    seen: list[RecordedRequest] = []

    def record(request: RecordedRequest) -> None:
        seen.append(request)

    with FakeLLMProvider(responder=record) as fake:
        openai_client(fake).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert seen[0].path == "/v1/chat/completions" and seen[0].body["model"] == "gpt-4o"
    assert "authorization" in seen[0].headers and seen[0].usage is None
    assert fake.requests[0].status == 200 and fake.requests[0].usage is not None


def test_a_responder_that_raises_answers_http_500() -> None:
    """A responder that raises gives the client an HTTP 500 naming the error, and the server goes on."""

    def broken(request: RecordedRequest) -> FakeReply:
        raise KeyError("messages")

    with FakeLLMProvider(responder=broken) as fake:
        with pytest.raises(openai.InternalServerError, match="responder raised KeyError"):
            openai_client(fake).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert [r.status for r in fake.requests] == [500]


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: FakeReply(), ValueError),
        (lambda: FakeReply(text="  "), ValueError),
        (lambda: FakeReply(tool_calls=["lookup"]), TypeError),  # type: ignore[list-item]
        (lambda: FakeToolCall(""), ValueError),
        (lambda: FakeToolCall("x", arguments=3), TypeError),  # type: ignore[arg-type]
        (lambda: FakeLLMProvider(responder="reply"), TypeError),  # type: ignore[arg-type]
    ],
)
def test_bad_scripts_are_refused_when_built(make: Any, error: type[Exception]) -> None:
    """A reply with nothing in it, a non-call, an unnamed call or a non-callable responder is refused."""
    with pytest.raises(error):
        make()
