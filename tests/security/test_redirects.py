"""Nothing follows a redirect out: attribution reaches allowlisted hosts only, hop by hop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from loopback import ATTRIBUTION, CONTRACT_HEADERS, SECRET, Recorder, Seen, attributed
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_costs.capture import (
    AttributionTrust,
    accept_attribution,
    attribution_rejection,
    instrument_httpx,
    uninstrument_httpx,
)
from otel_costs.testing import FakeLLMProvider

REDIRECTS = [301, 302, 303, 307, 308]
MODULES = [pytest.param(httpx, id="httpx"), pytest.param(httpx2, id="httpx2")]
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


class Setup:
    """An allowlisted gateway redirecting to a host outside the allowlist, and the capture."""

    def __init__(self, gateway: Recorder, outside: Recorder) -> None:
        self.gateway = gateway
        self.outside = outside
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def on(self, *, llm: bool, http_spans: bool) -> None:
        """Capture with the two hosts as LLM APIs (``llm``) or as plain hosts."""
        hosts: dict[str, str | None] = {self.gateway.host: None, self.outside.host: None} if llm else {}
        instrument_httpx(
            tracer_provider=self.provider,
            llm_hosts=hosts,
            attribution_hosts=[self.gateway.host],
            attribution_secret=SECRET,
            http_spans=http_spans,
        )

    def hops(self) -> tuple[Seen, Seen]:
        """The request the gateway received and the one the outside host received."""
        assert len(self.gateway.seen) == 1 and len(self.outside.seen) == 1
        return self.gateway.seen[0], self.outside.seen[0]


@pytest.fixture
def setup() -> Iterator[Setup]:
    with Recorder() as outside, Recorder(redirect_to=outside.base_url) as gateway:
        state = Setup(gateway, outside)
        yield state
        uninstrument_httpx()
        state.provider.shutdown()


def assert_nothing_followed(setup: Setup, code: int, llm: bool) -> None:
    first, second = setup.hops()
    # The allowlisted hop had everything (so the test would see a leak), the next hop nothing.
    assert {"x-team-id", "x-user-id", "x-attribution-signature"} <= first.leaked()
    assert second.leaked() == set(), second.headers
    assert second.baggage_keys() == {"region"}  # baggage still propagates, minus attribution
    assert "traceparent" in second.headers
    assert second.method == ("POST" if code in (307, 308) else "GET")  # as browsers do
    if llm:
        names = {s.name for s in setup.exporter.get_finished_spans()}
        assert any(name.startswith("chat") for name in names), names


@pytest.mark.parametrize("code", REDIRECTS)
@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("http_spans", [True, False], ids=["http-spans", "one-span"])
@pytest.mark.parametrize("llm", [True, False], ids=["llm-hosts", "plain-hosts"])
def test_sync_redirect_out_of_the_allowlist_carries_nothing(
    setup: Setup, code: int, module: Any, http_spans: bool, llm: bool
) -> None:
    """A sync redirect from an allowlisted host to another host strips headers, signature and baggage."""
    setup.on(llm=llm, http_spans=http_spans)
    with attributed({"region": "eu"}), module.Client(follow_redirects=True) as client:
        client.post(f"{setup.gateway.base_url}/r{code}/v1/chat/completions", json=BODY)
    assert_nothing_followed(setup, code, llm)


@pytest.mark.parametrize("code", REDIRECTS)
@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("http_spans", [True, False], ids=["http-spans", "one-span"])
@pytest.mark.parametrize("llm", [True, False], ids=["llm-hosts", "plain-hosts"])
async def test_async_redirect_out_of_the_allowlist_carries_nothing(
    setup: Setup, code: int, module: Any, http_spans: bool, llm: bool
) -> None:
    """An async redirect from an allowlisted host to another host strips headers, signature and baggage."""
    setup.on(llm=llm, http_spans=http_spans)
    with attributed({"region": "eu"}):
        async with module.AsyncClient(follow_redirects=True) as client:
            await client.post(f"{setup.gateway.base_url}/r{code}/v1/chat/completions", json=BODY)
    assert_nothing_followed(setup, code, llm)


@pytest.mark.parametrize("code", [303, 307])
@pytest.mark.parametrize("module", MODULES)
def test_redirect_within_the_allowlist_is_signed_again(module: Any, code: int) -> None:
    """A hop to another allowlisted host or path gets a fresh signature bound to that hop."""
    with Recorder() as inner, Recorder(redirect_to=f"{inner.base_url}/next") as gateway:
        instrument_httpx(
            llm_hosts={}, attribution_hosts=[gateway.host, inner.host], attribution_secret=SECRET
        )
        try:
            with attributed(), module.Client(follow_redirects=True) as client:
                client.post(f"{gateway.base_url}/r{code}/run", json=BODY)
        finally:
            uninstrument_httpx()
        first, second = gateway.seen[0], inner.seen[0]
    trust = AttributionTrust(secrets=(SECRET,))
    ctx = accept_attribution(
        second.headers, peer="203.0.113.5", trusted=trust, method=second.method, path=second.path
    )
    assert attribution_rejection(ctx) is None
    assert first.headers["x-attribution-signature"] != second.headers["x-attribution-signature"]
    # The first hop's signature does not verify for the second hop's request.
    replayed = {**second.headers, "x-attribution-signature": first.headers["x-attribution-signature"]}
    ctx = accept_attribution(
        replayed, peer="203.0.113.5", trusted=trust, method=second.method, path=second.path
    )
    assert attribution_rejection(ctx) is not None


# ---------------------------------------------------------------------------------------------
# Through the real SDKs: an allowlisted gateway redirects to the provider (the fake)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def provider_behind_gateway() -> Iterator[tuple[FakeLLMProvider, Recorder]]:
    with FakeLLMProvider() as fake, Recorder(redirect_to=fake.base_url) as gateway:
        instrument_httpx(
            llm_hosts={fake.host: None}, attribution_hosts=[gateway.host], attribution_secret=SECRET
        )
        try:
            yield fake, gateway
        finally:
            uninstrument_httpx()


def assert_provider_got_nothing(fake: FakeLLMProvider, gateway: Recorder, code: int) -> None:
    assert {"x-team-id", "x-attribution-signature"} <= gateway.seen[-1].leaked()
    received = fake.requests[-1]
    assert received.method == ("POST" if code in (307, 308) else "GET")
    assert not set(received.headers) & CONTRACT_HEADERS, received.headers
    keys = {e.split("=", 1)[0].strip() for e in received.headers.get("baggage", "").split(",") if e.strip()}
    assert keys.isdisjoint(ATTRIBUTION)


def call_sdk(sdk: str, base_url: str, code: int) -> Any:
    """The request made through ``sdk`` (a POST the redirect may turn into a GET)."""
    messages: Any = [{"role": "user", "content": "hi"}]
    if sdk.startswith("openai"):
        url = f"{base_url}/r{code}/v1"
        if sdk.endswith("async"):
            return openai.AsyncOpenAI(base_url=url, api_key="t", max_retries=0).chat.completions.create(
                model="gpt-4o", messages=messages
            )
        return openai.OpenAI(base_url=url, api_key="t", max_retries=0).chat.completions.create(
            model="gpt-4o", messages=messages
        )
    url = f"{base_url}/r{code}"
    client: Any = anthropic.AsyncAnthropic if sdk.endswith("async") else anthropic.Anthropic
    return client(base_url=url, api_key="t", max_retries=0).messages.create(
        model="claude-test-1", max_tokens=32, messages=messages
    )


SDK_ERRORS = (openai.APIStatusError, anthropic.APIStatusError)


@pytest.mark.parametrize("code", REDIRECTS)
@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_sdk_redirect_carries_nothing(
    provider_behind_gateway: tuple[FakeLLMProvider, Recorder], sdk: str, code: int
) -> None:
    """The openai and anthropic SDKs follow the gateway's redirect; the provider receives no attribution."""
    fake, gateway = provider_behind_gateway
    with attributed():
        if code in (307, 308):
            call_sdk(sdk, gateway.base_url, code)
        else:  # the POST became a GET, which the fake does not serve
            with pytest.raises(SDK_ERRORS):
                call_sdk(sdk, gateway.base_url, code)
    assert_provider_got_nothing(fake, gateway, code)


@pytest.mark.parametrize("code", REDIRECTS)
@pytest.mark.parametrize("sdk", ["openai-async", "anthropic-async"])
async def test_async_sdk_redirect_carries_nothing(
    provider_behind_gateway: tuple[FakeLLMProvider, Recorder], sdk: str, code: int
) -> None:
    """The async openai and anthropic SDKs follow the redirect; the provider receives no attribution."""
    fake, gateway = provider_behind_gateway
    with attributed():
        if code in (307, 308):
            await call_sdk(sdk, gateway.base_url, code)
        else:
            with pytest.raises(SDK_ERRORS):
                await call_sdk(sdk, gateway.base_url, code)
    assert_provider_got_nothing(fake, gateway, code)
