"""The span-kind table and its classifier (``otel_costs._kinds``), and the stages that ask it."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_costs import conventions as conv
from otel_costs._kinds import (
    OWN_AGENT_KEYS,
    aggregate_reason,
    is_aggregate,
    is_model_call,
    metadata_agent,
    own_agent,
    same_model,
    scope_name,
    span_kind,
)
from otel_costs.capture import instrument_httpx, uninstrument_httpx
from otel_costs.pipeline import CostSpanProcessor
from otel_costs.pipeline._sampling import is_llm_call
from otel_costs.testing import FakeLLMProvider, FakeUsage, fixed_price_book

OP = conv.GEN_AI_OPERATION_NAME


@pytest.mark.parametrize(
    ("attributes", "kind"),
    [
        ({OP: "chat"}, conv.KIND_MODEL_CALL),
        ({OP: "text_completion"}, conv.KIND_MODEL_CALL),
        ({OP: "generate_content"}, conv.KIND_MODEL_CALL),
        ({OP: "embeddings"}, conv.KIND_MODEL_CALL),
        ({OP: "invoke_agent"}, conv.KIND_AGENT),
        ({OP: "invoke_workflow"}, conv.KIND_WORKFLOW),
        ({OP: "execute_task"}, conv.KIND_TASK),
        ({OP: "handoff"}, conv.KIND_TASK),
        ({OP: "execute_tool"}, conv.KIND_TOOL),
        ({OP: "create_agent"}, conv.KIND_AGGREGATE),
        ({conv.OI_SPAN_KIND: "LLM"}, conv.KIND_MODEL_CALL),
        ({conv.OI_SPAN_KIND: "llm"}, conv.KIND_MODEL_CALL),
        ({conv.OI_SPAN_KIND: "EMBEDDING"}, conv.KIND_MODEL_CALL),
        ({conv.OI_SPAN_KIND: "AGENT"}, conv.KIND_AGENT),
        ({conv.OI_SPAN_KIND: "CHAIN"}, conv.KIND_AGGREGATE),
        ({conv.OI_SPAN_KIND: "TOOL"}, conv.KIND_TOOL),
        ({conv.TRACELOOP_SPAN_KIND: "llm"}, conv.KIND_MODEL_CALL),
        ({conv.TRACELOOP_SPAN_KIND: "Workflow"}, conv.KIND_WORKFLOW),
        ({conv.TRACELOOP_SPAN_KIND: "task"}, conv.KIND_TASK),
        ({conv.TRACELOOP_REQUEST_TYPE: "completion"}, conv.KIND_MODEL_CALL),
        ({OP: "some_future_op"}, None),
        ({OP: "some_future_op", conv.OI_SPAN_KIND: "LLM"}, conv.KIND_MODEL_CALL),
        ({OP: "chat", conv.OI_SPAN_KIND: "CHAIN"}, conv.KIND_AGGREGATE),
        ({OP: 7}, None),
        ({}, None),
    ],
)
def test_span_kind_reads_every_convention(attributes: dict[str, object], kind: str | None) -> None:
    """Each convention's markers map to one kind; an unknown or non-string value has none."""
    assert span_kind(attributes) == kind
    assert is_model_call(attributes) is (kind == conv.KIND_MODEL_CALL)
    assert is_aggregate(attributes) is (kind in conv.AGGREGATE_KINDS)
    assert (aggregate_reason(attributes) is not None) is (kind in conv.AGGREGATE_KINDS)


@pytest.mark.parametrize("operation", ["execute_task", "handoff", "some_future_op"])
def test_unknown_or_task_operations_are_no_llm_call_for_sampling(operation: str) -> None:
    """The sampler keeps a task, handoff or unknown operation without a model unrecorded-as-call."""
    assert is_llm_call("s", {OP: operation}) is False
    assert is_llm_call("s", {OP: "chat"}) is True


@pytest.mark.parametrize(
    ("attributes", "agent"),
    [
        ({conv.AGENT_NAME: " triage "}, "triage"),
        ({conv.TRACELOOP_LC_AGENT_NAME: "researcher"}, "researcher"),
        ({conv.OI_METADATA: '{"lc_agent_name": "writer", "langgraph_node": "n"}'}, "writer"),
        ({conv.OI_METADATA: '{"agent_name": "w2"}'}, "w2"),
        ({conv.OI_METADATA: "not json"}, None),
        ({conv.OI_METADATA: '{"lc_agent_name": 5}'}, None),
        ({conv.OI_METADATA: "[1]"}, None),
        ({conv.AGENT_NAME: ""}, None),
        ({conv.AGENT_NAME: "x" * 300}, None),
        ({}, None),
    ],
)
def test_own_agent_reads_every_convention(attributes: dict[str, object], agent: str | None) -> None:
    """A model-call span's own agent comes from any convention's name; malformed values are none."""
    assert own_agent(attributes) == agent


@pytest.mark.parametrize("key", sorted(OWN_AGENT_KEYS))
def test_own_agent_keys_are_the_keys_it_reads(key: str) -> None:
    """Each of OWN_AGENT_KEYS can name a span's own agent, and with none of them it names none."""
    value = '{"lc_agent_name": "writer"}' if key == conv.OI_METADATA else "writer"
    # Names an agent or task span gives its scope, but no call span's own agent is read from.
    others = {k: "writer" for k in conv.SCOPE_AGENT_NAME_KEYS if k not in OWN_AGENT_KEYS}
    assert others
    assert own_agent({key: value}) == "writer"
    assert own_agent(others) is None


def test_metadata_agent_ignores_huge_strings() -> None:
    """A ``metadata`` string past 64 KiB is not parsed."""
    assert metadata_agent({conv.OI_METADATA: '{"lc_agent_name": "a", "pad": "' + "x" * 70_000 + '"}'}) is None


@pytest.mark.parametrize(
    ("attributes", "kind", "name"),
    [
        ({conv.AGENT_NAME: "a"}, conv.KIND_AGENT, "a"),
        ({conv.OI_AGENT_NAME: "b"}, conv.KIND_AGENT, "b"),
        ({conv.GEN_AI_TASK_NAME: "node"}, conv.KIND_TASK, "node"),
        ({conv.TRACELOOP_ENTITY_NAME: "crew"}, conv.KIND_WORKFLOW, "crew"),
        ({conv.WORKFLOW_NAME: "wf", conv.TRACELOOP_ENTITY_NAME: "x"}, conv.KIND_WORKFLOW, "wf"),
        ({conv.AGENT_NAME: "a"}, conv.KIND_TOOL, None),
    ],
)
def test_scope_names(attributes: dict[str, object], kind: str, name: str | None) -> None:
    """Agent, task and workflow spans give their names; other kinds give none."""
    assert scope_name(attributes, kind) == name


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("gpt-4o", "gpt-4o-2024-08-06", True),
        ("openai/GPT-4o", "gpt-4o", True),
        ("gpt-4o", "gpt-4o-mini", True),
        ("gpt-4o", "claude-sonnet-4-5", False),
        (None, "gpt-4o", True),
    ],
)
def test_same_model_compares_normalized(a: object, b: object, same: bool) -> None:
    """Model names compare lower-case, without a provider prefix, a dated spelling equal."""
    assert same_model(a, b) is same


@pytest.fixture
def fake() -> Iterator[FakeLLMProvider]:
    with FakeLLMProvider(usage=FakeUsage(input_tokens=100, output_tokens=10)) as provider:
        yield provider


def test_calls_inside_task_handoff_and_agent_spans_are_all_priced(fake: FakeLLMProvider) -> None:
    """SDK calls inside ``execute_task``, ``handoff`` and ``invoke_agent`` spans are all priced."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(
        CostSpanProcessor(SimpleSpanProcessor(exporter), price_book=fixed_price_book())
    )
    instrument_httpx(tracer_provider=provider, llm_hosts={fake.host: None})
    try:
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)
        tracer = provider.get_tracer("test")
        for operation in ("execute_task", "handoff", "invoke_agent"):
            with tracer.start_as_current_span(f"{operation} node", attributes={OP: operation}):
                client.chat.completions.create(model="gpt-5.2", messages=[{"role": "user", "content": "hi"}])
    finally:
        uninstrument_httpx()
        provider.shutdown()
    calls = [s for s in exporter.get_finished_spans() if (s.attributes or {}).get(OP) == "chat"]
    assert len(calls) == 3
    assert [(s.attributes or {}).get(conv.COST_STATUS) for s in calls] == [conv.STATUS_PRICED] * 3


def test_an_openinference_llm_span_makes_the_capture_stand_down(fake: FakeLLMProvider) -> None:
    """Told to defer, under an OpenInference ``LLM`` span the HTTP capture adds no second model-call span."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument_httpx(tracer_provider=provider, llm_hosts={fake.host: None}, defer_to_sdk_spans=True)
    try:
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)
        with provider.get_tracer("test").start_as_current_span(
            "ChatOpenAI", attributes={conv.OI_SPAN_KIND: "LLM"}
        ):
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    finally:
        uninstrument_httpx()
        provider.shutdown()
    calls = [s.name for s in exporter.get_finished_spans() if is_model_call(s.attributes or {})]
    assert calls == ["ChatOpenAI"]


def test_capture_span_inside_an_llm_span_is_counted_once(fake: FakeLLMProvider) -> None:
    """Capture told not to stand down, under an OpenInference LLM span: one of the two is priced, once."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(
        CostSpanProcessor(SimpleSpanProcessor(exporter), price_book=fixed_price_book())
    )
    instrument_httpx(tracer_provider=provider, llm_hosts={fake.host: None}, defer_to_sdk_spans=False)
    try:
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)
        oi = {
            conv.OI_SPAN_KIND: "LLM",
            conv.OI_MODEL_NAME: "gpt-5.2",
            conv.OI_TOKEN_COUNT_PROMPT: 100,
            conv.OI_TOKEN_COUNT_COMPLETION: 10,
        }
        with provider.get_tracer("test").start_as_current_span("ChatOpenAI", attributes=oi):
            client.chat.completions.create(model="gpt-5.2", messages=[{"role": "user", "content": "hi"}])
    finally:
        uninstrument_httpx()
        provider.shutdown()
    statuses = sorted(
        str((s.attributes or {}).get(conv.COST_STATUS))
        for s in exporter.get_finished_spans()
        if is_model_call(s.attributes or {})
    )
    assert statuses == [conv.STATUS_DUPLICATE, conv.STATUS_PRICED]
