"""Budgets enforced by the HTTP capture before an LLM request leaves the process."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

import otel_costs
from otel_costs import conventions as conv
from otel_costs.testing import FakeLLMProvider, FakeUsage, InMemoryPipeline, fixed_price_book

#: gpt-5.2 at $3 / $15 per 1M tokens: each call below costs exactly $0.012.
USAGE = FakeUsage(input_tokens=1500, output_tokens=500)
#: An LLM host where nothing listens: requests to it fail before a response.
NOTHING_LISTENS = "127.0.0.1:9"
BODY = {"model": "gpt-5.2", "max_tokens": 500, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def fake() -> Iterator[FakeLLMProvider]:
    """The fake provider, reporting the same usage for every call."""
    with FakeLLMProvider(usage=USAGE) as provider:
        yield provider


def setup(
    fake: FakeLLMProvider,
    limit: str,
    *,
    sleeps: list[float] | None = None,
    http_spans: bool = True,
    **budget: object,
) -> tuple[otel_costs.BudgetManager, InMemoryPipeline]:
    """A per-team budget of ``limit`` USD, the pipeline recording spend into it, the capture enforcing it."""
    book = fixed_price_book()
    manager = otel_costs.BudgetManager(
        [otel_costs.Budget("team-daily", Decimal(limit), per=("team",), **budget)],  # type: ignore[arg-type]
        rates=book,
        sleep=(sleeps.append if sleeps is not None else lambda _s: None),
    )
    pipeline = InMemoryPipeline(price_book=book, listeners=[manager])
    otel_costs.instrument_httpx(
        tracer_provider=pipeline.tracer_provider,
        llm_hosts={fake.host: "openai", NOTHING_LISTENS: "openai"},
        budgets=manager,
        http_spans=http_spans,
    )
    return manager, pipeline


@pytest.fixture(autouse=True)
def _uninstrument() -> Iterator[None]:
    yield
    otel_costs.uninstrument_httpx()


@pytest.mark.parametrize("http_spans", [True, False], ids=["http-spans", "one-span"])
def test_a_denied_call_raises_before_any_byte_leaves(fake: FakeLLMProvider, http_spans: bool) -> None:
    """Past the hard limit the request is refused with BudgetExceeded and never reaches the provider."""
    manager, pipeline = setup(fake, "0.04", http_spans=http_spans)
    url = f"{fake.openai_base_url}/chat/completions"
    with (
        httpx.Client() as client,
        otel_costs.workflow("w", team_id="t1", tracer_provider=pipeline.tracer_provider),
    ):
        # Each check reserves its estimate (500 output tokens: $0.0075, plus the input): the 4th
        # call would bring $0.036 spent to over $0.04.
        for _ in range(3):
            assert client.post(url, json=BODY).status_code == 200
        with pytest.raises(otel_costs.BudgetExceeded) as denied:
            client.post(url, json=BODY)
    assert len(fake.requests) == 3
    message = str(denied.value)
    assert "team-daily" in message and "0.04" in message
    (status,) = manager.usage({conv.TEAM_ID: "t1"})
    assert status.spent_nanos == 36_000_000
    assert status.reserved_nanos == 0  # every reservation was reconciled or released
    manager.close()


def test_through_the_openai_sdk_the_denial_reaches_the_caller(fake: FakeLLMProvider) -> None:
    """Through the real openai SDK a denied call raises BudgetExceeded and sends nothing."""
    manager, pipeline = setup(fake, "0.001")
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=2)
    with (
        otel_costs.workflow("w", team_id="t1", tracer_provider=pipeline.tracer_provider),
        pytest.raises(otel_costs.BudgetExceeded, match="team-daily"),
    ):
        client.chat.completions.create(
            model="gpt-5.2", max_tokens=500, messages=[{"role": "user", "content": "x"}]
        )
    assert fake.requests == []
    client.close()
    manager.close()


@pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")
def test_through_the_anthropic_sdk_the_denial_is_the_cause_of_its_connection_error(
    fake: FakeLLMProvider,
) -> None:
    """The anthropic SDK wraps transport errors: APIConnectionError caused by BudgetExceeded, nothing sent."""
    manager, pipeline = setup(fake, "0.0001")
    client = anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="test", max_retries=2)
    with (
        otel_costs.workflow("w", team_id="t1", tracer_provider=pipeline.tracer_provider),
        pytest.raises(anthropic.APIConnectionError) as err,
    ):
        client.messages.create(
            model="claude-sonnet-4-5", max_tokens=500, messages=[{"role": "user", "content": "x"}]
        )
    assert isinstance(err.value.__cause__, otel_costs.BudgetExceeded)
    assert fake.requests == []
    client.close()
    manager.close()


def test_throttle_waits_then_sends(fake: FakeLLMProvider) -> None:
    """Past the throttle threshold the call is delayed (by the manager's sleep) and still sent."""
    sleeps: list[float] = []
    manager, pipeline = setup(fake, "1", sleeps=sleeps, throttle_at=0.01, throttle_delay_s=0.25)
    url = f"{fake.openai_base_url}/chat/completions"
    with (
        httpx.Client() as client,
        otel_costs.workflow("w", team_id="t1", tracer_provider=pipeline.tracer_provider),
    ):
        for _ in range(2):
            assert client.post(url, json=BODY).status_code == 200
    assert len(fake.requests) == 2
    assert sleeps and all(delay > 0 for delay in sleeps)
    manager.close()


@pytest.mark.parametrize("http_spans", [True, False], ids=["http-spans", "one-span"])
def test_the_reservation_is_on_the_span_and_released_when_the_request_fails(
    fake: FakeLLMProvider, http_spans: bool
) -> None:
    """The LLM span names its reservation; a request that fails to send releases it."""
    manager, pipeline = setup(fake, "1", http_spans=http_spans)
    with otel_costs.workflow("w", team_id="t1", tracer_provider=pipeline.tracer_provider):
        with httpx.Client() as client:
            assert client.post(f"{fake.openai_base_url}/chat/completions", json=BODY).status_code == 200
        with httpx.Client() as client, pytest.raises(httpx.ConnectError):
            client.post(f"http://{NOTHING_LISTENS}/v1/chat/completions", json=BODY)
    spans = [s for s in pipeline.spans() if s.name == "chat gpt-5.2"]
    assert len(spans) == 2
    assert all(conv.RESERVATION_ID_ATTRIBUTE in (s.attributes or {}) for s in spans)
    assert (spans[1].attributes or {})[conv.COST_STATUS] == conv.STATUS_UNPRICED
    (status,) = manager.usage({conv.TEAM_ID: "t1"})
    assert status.reserved_nanos == 0
    assert status.spent_nanos == 12_000_000
    manager.close()
