"""The sending side of signed attribution: what a signature covers, and the settings it needs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import baggage, propagate
from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otel_costs import conventions as conv
from otel_costs.capture import (
    AttributionTrust,
    accept_attribution,
    attribution_headers,
    attribution_rejection,
)

SECRET = b"0123456789abcdef0123456789abcdef"
URL = "http://svc.internal:8080/run"


@pytest.fixture
def entries() -> Iterator[None]:
    ctx = otel_context.get_current()
    for key, value in {conv.BAGGAGE_TEAM_ID: "billing", conv.BAGGAGE_AGENT_NAME: "triage"}.items():
        ctx = baggage.set_baggage(key, value, ctx)
    token = otel_context.attach(ctx)
    yield
    otel_context.detach(token)


@pytest.fixture
def propagator() -> Iterator[None]:
    """Lets a test swap the global propagator; the original is restored."""
    original = propagate.get_global_textmap()
    yield
    propagate.set_global_textmap(original)


def receive(headers: dict[str, str]) -> otel_context.Context:
    headers = {k.lower(): v for k, v in headers.items()}
    propagate.inject(headers)
    headers["host"] = "svc.internal:8080"
    return accept_attribution(
        headers, peer="203.0.113.8", trusted=AttributionTrust(secrets=(SECRET,)), method="POST", path="/run"
    )


def test_a_signature_needs_method_and_url() -> None:
    """attribution_headers(secret=...) without the request it is bound to says what to pass."""
    with pytest.raises(ValueError, match="method='POST', url="):
        attribution_headers(secret=SECRET)
    with pytest.raises(ValueError, match="no host"):
        attribution_headers(secret=SECRET, method="POST", url="/relative")


def test_the_signature_covers_the_baggage_the_propagator_sends(entries: None) -> None:
    """Baggage-only keys (agent.name) are covered too, and the receiver accepts them."""
    headers = attribution_headers(secret=SECRET, method="POST", url=URL)
    signature = headers[conv.HEADER_ATTRIBUTION_SIGNATURE]
    assert "b=agent.name;team.id" in signature and "h=x-team-id" in signature
    ctx = receive(headers)
    assert baggage.get_baggage(conv.BAGGAGE_AGENT_NAME, ctx) == "triage"
    assert attribution_rejection(ctx) is None


def test_without_baggage_propagation_only_the_headers_are_signed(entries: None, propagator: None) -> None:
    """With a trace-context-only propagator, no baggage is sent, none is signed, and it still verifies."""
    propagate.set_global_textmap(TraceContextTextMapPropagator())
    headers = attribution_headers(secret=SECRET, method="POST", url=URL)
    assert ",b=," in headers[conv.HEADER_ATTRIBUTION_SIGNATURE]
    ctx = receive(headers)
    assert baggage.get_baggage(conv.BAGGAGE_TEAM_ID, ctx) == "billing"
    assert attribution_rejection(ctx) is None


def test_baggage_past_the_w3c_limits_is_not_signed() -> None:
    """An entry the propagator will drop (past 8,192 bytes) is not claimed by the signature."""
    ctx = baggage.set_baggage("padding", "p" * 4000, otel_context.get_current())
    ctx = baggage.set_baggage("padding2", "p" * 4000, ctx)
    ctx = baggage.set_baggage(conv.BAGGAGE_AGENT_NAME, "x" * 400, ctx)  # past 8,192 bytes in total
    ctx = baggage.set_baggage(conv.BAGGAGE_TEAM_ID, "billing", ctx)
    token = otel_context.attach(ctx)
    try:
        headers = attribution_headers(secret=SECRET, method="POST", url=URL)
        accepted = receive(headers)
    finally:
        otel_context.detach(token)
    assert "agent.name" not in headers[conv.HEADER_ATTRIBUTION_SIGNATURE]
    assert baggage.get_baggage(conv.BAGGAGE_TEAM_ID, accepted) == "billing"
    assert attribution_rejection(accepted) is None


def test_replay_cache_size_is_checked() -> None:
    """A replay cache of no entries is refused with the setting's name."""
    with pytest.raises(ValueError, match="replay_cache_size"):
        AttributionTrust(secrets=(SECRET,), replay_cache_size=0)
