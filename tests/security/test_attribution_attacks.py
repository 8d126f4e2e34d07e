"""The receiving side under attack: forged, replayed, re-targeted and dirty attribution, on loopback.

``otel_costs.capture._signature`` is internal: the replay cache and the canonical string have no
public path, and the attacks on them (a full cache, racing threads, one text for both sides) are
unit tests of that module. Every other attack goes through the public ``accept_attribution``.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from loopback import ATTRIBUTION, SECRET, Recorder, attributed
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_costs import conventions as conv
from otel_costs.capture import (
    AttributionTrust,
    accept_attribution,
    attribution_headers,
    attribution_rejection,
    instrument_httpx,
    uninstrument_httpx,
)
from otel_costs.capture._signature import ReplayCache, canonical_string, sign

OTHER_SECRET = b"fedcba9876543210fedcba9876543210"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_ID = int(TRACEPARENT.split("-")[1], 16)
URL = "http://svc.internal/run"
REQUEST = {"method": "POST", "path": "/run"}
SIGNED_TRUST = AttributionTrust(secrets=(SECRET,))
NETWORK_TRUST = AttributionTrust(networks=("10.0.0.0/8",))
MALLORY = "203.0.113.66"


def signed_request(
    entries: dict[str, str] | None = None, *, secret: bytes = SECRET, url: str = URL, method: str = "POST"
) -> dict[str, str]:
    """The headers a legitimate sender sends for ``entries`` (default: the full attribution)."""
    ctx = otel_context.get_current()
    for key, value in (ATTRIBUTION if entries is None else entries).items():
        ctx = baggage.set_baggage(key, value, ctx)
    token = otel_context.attach(ctx)
    try:
        headers = {
            k.lower(): v for k, v in attribution_headers(secret=secret, method=method, url=url).items()
        }
        propagate.inject(headers)
    finally:
        otel_context.detach(token)
    headers["host"] = httpx.URL(url).netloc.decode()
    headers["traceparent"] = TRACEPARENT
    return headers


class Server:
    """A recording server span to accept requests under, as an ASGI/WSGI middleware would."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def accept(
        self, headers: Any, *, peer: Any = MALLORY, trust: AttributionTrust = SIGNED_TRUST, **kw: Any
    ) -> Any:
        with self.provider.get_tracer("server").start_as_current_span("server"):
            return accept_attribution(headers, peer=peer, trusted=trust, **{**REQUEST, **kw})

    def rejected(self) -> set[str]:
        """The keys in the last server span's ``attribution.rejected``."""
        attributes = self.exporter.get_finished_spans()[-1].attributes or {}
        value = attributes.get(conv.ATTRIBUTION_REJECTED, ())
        assert isinstance(value, tuple)
        return set(value)


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()
    yield state
    state.provider.shutdown()


def attribution(ctx: Any) -> dict[str, object]:
    return {k: v for k, v in baggage.get_all(ctx).items() if k in ATTRIBUTION}


# ---------------------------------------------------------------------------------------------
# Forgery: what the signature does not cover is not believed
# ---------------------------------------------------------------------------------------------


def test_baggage_added_to_a_signature_over_the_workflow_only_is_rejected(server: Server) -> None:
    """A request signed over the workflow only cannot add team.id/user.id in baggage: they are rejected."""
    headers = signed_request({conv.BAGGAGE_WORKFLOW_ID: "wf-1"})
    headers["baggage"] += ",team.id=victim,user.id=mallory"
    ctx = server.accept(headers)
    assert attribution(ctx) == {conv.BAGGAGE_WORKFLOW_ID: "wf-1"}
    assert server.rejected() == {conv.BAGGAGE_TEAM_ID, conv.BAGGAGE_USER_ID}
    assert "not covered by the signature" in str(attribution_rejection(ctx))


def test_header_added_to_a_signature_is_rejected(server: Server) -> None:
    """A contract header the signature does not cover is rejected, the covered ones accepted."""
    headers = signed_request({conv.BAGGAGE_WORKFLOW_ID: "wf-1"})
    headers["x-team-id"] = "victim"
    ctx = server.accept(headers)
    assert attribution(ctx) == {conv.BAGGAGE_WORKFLOW_ID: "wf-1"}
    assert server.rejected() == {conv.BAGGAGE_TEAM_ID}


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h: h.update({"x-team-id": "victim"}), id="header-value"),
        pytest.param(
            lambda h: h.update({"baggage": h["baggage"].replace("billing", "victim")}), id="baggage-value"
        ),
        pytest.param(
            lambda h: h.update({"baggage": h["baggage"].replace("team.id=billing", "")}), id="entry-removed"
        ),
        pytest.param(lambda h: h.pop("x-team-id"), id="header-removed"),
    ],
)
def test_tampered_signed_values_reject_everything(server: Server, tamper: Any) -> None:
    """Changing or removing a signed value voids the signature: no attribution key is accepted."""
    headers = signed_request()
    tamper(headers)
    ctx = server.accept(headers)
    assert attribution(ctx) == {}
    assert conv.BAGGAGE_TEAM_ID in server.rejected() or conv.BAGGAGE_WORKFLOW_ID in server.rejected()
    assert trace.get_current_span(ctx).get_span_context().trace_id == TRACE_ID


def test_an_untrusted_peer_without_signature_is_refused(server: Server) -> None:
    """Unsigned attribution from an untrusted peer is dropped and flagged (X-Forwarded-For is ignored)."""
    headers = {
        "baggage": "team.id=victim,region=eu",
        "x-forwarded-for": "10.0.0.1",
        "traceparent": TRACEPARENT,
    }
    ctx = server.accept(headers, trust=NETWORK_TRUST)
    assert attribution(ctx) == {} and baggage.get_baggage("region", ctx) == "eu"
    assert server.rejected() == {conv.BAGGAGE_TEAM_ID}


# ---------------------------------------------------------------------------------------------
# Replay and re-targeting
# ---------------------------------------------------------------------------------------------


def test_a_replayed_signature_is_rejected(server: Server) -> None:
    """The same signed request is accepted once; sent again (from any peer) it is a flagged replay."""
    headers = signed_request()
    trust = AttributionTrust(secrets=(SECRET,))
    first = server.accept(headers, trust=trust, peer="198.51.100.1")
    second = server.accept(headers, trust=trust, peer=MALLORY)
    assert attribution(first) == ATTRIBUTION and attribution_rejection(first) is None
    assert attribution(second) == {} and "replayed" in str(attribution_rejection(second))
    assert server.rejected() == set(ATTRIBUTION)


@pytest.mark.parametrize(
    "retarget",
    [
        pytest.param({"method": "DELETE"}, id="method"),
        pytest.param({"path": "/admin"}, id="path"),
        pytest.param({"host": "other.internal"}, id="host"),
    ],
)
def test_a_signature_is_bound_to_method_host_and_path(server: Server, retarget: dict[str, str]) -> None:
    """A signature replayed against another method, path or host does not verify."""
    headers = signed_request()
    headers["host"] = retarget.get("host", headers["host"])
    ctx = server.accept(headers, method=retarget.get("method", "POST"), path=retarget.get("path", "/run"))
    assert attribution(ctx) == {}
    assert "does not verify" in str(attribution_rejection(ctx))


def test_a_leaked_signature_replayed_with_another_team_is_rejected(server: Server) -> None:
    """The redirect-leak chain: a third party resends a captured signature with its own team.id."""
    headers = signed_request()
    headers["baggage"] = headers["baggage"].replace("team.id=billing", "team.id=mallory")
    headers["x-team-id"] = "mallory"
    ctx = server.accept(headers)
    assert baggage.get_baggage(conv.BAGGAGE_TEAM_ID, ctx) is None
    assert conv.BAGGAGE_TEAM_ID in server.rejected()


@pytest.mark.parametrize(("offset", "ok"), [(-290, True), (290, True), (-310, False), (310, False)])
def test_the_validity_window_allows_clock_skew_both_ways(server: Server, offset: int, ok: bool) -> None:
    """A signature within max_skew_seconds of now (either way) verifies; outside it does not."""
    headers = signed_request()
    ctx = server.accept(headers, trust=AttributionTrust(secrets=(SECRET,)), now=time.time() + offset)
    assert (attribution(ctx) == ATTRIBUTION) is ok
    assert ("validity window" in str(attribution_rejection(ctx))) is not ok


def test_a_version_1_signature_is_refused_with_what_to_do(server: Server) -> None:
    """The old header-only v1 format is refused, and the reason says to upgrade the sender."""
    headers = signed_request()
    headers["x-attribution-signature"] = f"t={int(time.time())},v1={'0' * 64}"
    ctx = server.accept(headers)
    assert attribution(ctx) == {} and "upgrade the sender" in str(attribution_rejection(ctx))


def test_a_signature_needs_the_request_line() -> None:
    """Without method and path (not a WSGI environ), a signature is not checked, and the reason says so."""
    ctx = accept_attribution(signed_request(), peer=MALLORY, trusted=SIGNED_TRUST)
    assert attribution(ctx) == {} and "pass method= and path=" in str(attribution_rejection(ctx))


def test_a_wsgi_environ_carries_its_own_request_line() -> None:
    """From a WSGI environ, the method and path are read from REQUEST_METHOD, SCRIPT_NAME and PATH_INFO."""
    headers = signed_request(url="http://svc.internal/app/run")
    environ = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    environ.update(REQUEST_METHOD="POST", SCRIPT_NAME="/app", PATH_INFO="/run")
    ctx = accept_attribution(environ, peer=MALLORY, trusted=SIGNED_TRUST)
    assert attribution(ctx) == ATTRIBUTION


# ---------------------------------------------------------------------------------------------
# Keys: rotation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signer", "ok"),
    [(SECRET, True), (OTHER_SECRET, True), (b"retired-key-0123456789abcdef", False)],
    ids=["new", "old", "retired"],
)
def test_two_keys_are_active_while_rotating(server: Server, signer: bytes, ok: bool) -> None:
    """With the new and the old secret configured, both verify; a retired one does not."""
    headers = signed_request(secret=signer)
    ctx = server.accept(headers, trust=AttributionTrust(secrets=(SECRET, OTHER_SECRET)))
    assert (attribution(ctx) == ATTRIBUTION) is ok


# ---------------------------------------------------------------------------------------------
# Inbound values cleaned, one by one
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"baggage": "team.id=a%0D%0AX-Evil: 1,user.id=u-1"}, id="baggage-crlf"),
        pytest.param({"baggage": "team.id=a%00b,user.id=u-1"}, id="baggage-nul"),
        pytest.param({"baggage": "user.id=u-1", "x-team-id": "a\x1bb"}, id="header-escape"),
        pytest.param({"baggage": "user.id=u-1", "x-team-id": "a\tb"}, id="header-tab"),
    ],
)
def test_control_characters_are_rejected_per_value(server: Server, headers: dict[str, str]) -> None:
    """From a trusted peer, a value with a control character is rejected and flagged; the others are kept."""
    ctx = server.accept(headers, peer="10.0.0.5", trust=NETWORK_TRUST)
    assert attribution(ctx) == {conv.BAGGAGE_USER_ID: "u-1"}
    assert server.rejected() == {conv.BAGGAGE_TEAM_ID}
    assert "control character" in str(attribution_rejection(ctx))


def test_oversized_baggage_keeps_the_attribution_keys_one_by_one(server: Server) -> None:
    """Baggage over 8,192 bytes keeps its valid attribution keys and flags each oversized one."""
    header = ",".join(
        [
            "team.id=billing",
            f"user.id={'u' * 5000}",
            f"padding={'p' * 4000}",
            f"workflow.id={'w' * 300}",
            "agent.id=agent-7",
            "region=eu",
        ]
    )
    assert len(header) > 8192
    ctx = server.accept({"baggage": header}, peer="10.0.0.5", trust=NETWORK_TRUST)
    assert attribution(ctx) == {conv.BAGGAGE_TEAM_ID: "billing", conv.BAGGAGE_AGENT_ID: "agent-7"}
    assert server.rejected() == {conv.BAGGAGE_USER_ID, conv.BAGGAGE_WORKFLOW_ID}
    assert baggage.get_baggage("region", ctx) == "eu"


def test_oversized_baggage_keeps_its_leading_other_members(server: Server) -> None:
    """Other baggage past 8,192 bytes loses only the members past the limit, not the whole header."""
    header = ",".join(
        ["a=" + "p" * 3000, "b=" + "p" * 3000, "region=eu", "c=" + "p" * 3000, "team.id=billing"]
    )
    ctx = server.accept({"baggage": header}, peer="10.0.0.5", trust=NETWORK_TRUST)
    assert baggage.get_baggage("region", ctx) == "eu" and baggage.get_baggage("c", ctx) is None
    assert attribution(ctx) == {conv.BAGGAGE_TEAM_ID: "billing"}


@pytest.mark.parametrize(
    "member", ["team%2Eid=victim", "team.id%20=victim", "+team.id=victim", "team.id\t=victim"]
)
def test_an_encoded_attribution_key_is_not_smuggled_as_other_baggage(server: Server, member: str) -> None:
    """A percent-encoded or padded attribution key is still one: refused, not passed on as other baggage."""
    ctx = server.accept({"baggage": f"{member},region=eu"}, trust=NETWORK_TRUST)
    assert baggage.get_baggage(conv.BAGGAGE_TEAM_ID, ctx) is None
    assert baggage.get_baggage("region", ctx) == "eu"
    assert server.rejected() == {conv.BAGGAGE_TEAM_ID}


def test_case_variants_of_a_header_are_a_repeat(server: Server) -> None:
    """X-Team-Id and x-team-id in one mapping are the same header sent twice: ambiguous, refused."""
    ctx = server.accept(
        {"X-Team-Id": "a", "x-team-id": "b", "x-user-id": "u-1"}, peer="10.0.0.5", trust=NETWORK_TRUST
    )
    assert attribution(ctx) == {conv.BAGGAGE_USER_ID: "u-1"}
    assert server.rejected() == {conv.BAGGAGE_TEAM_ID}


def test_secrets_stay_out_of_reprs() -> None:
    """A trust policy printed or logged does not show its secrets."""
    assert SECRET.decode() not in repr(AttributionTrust(secrets=(SECRET,)))


def test_a_repeated_key_is_ambiguous_and_flagged(server: Server) -> None:
    """The same attribution key twice in baggage is neither value: rejected and flagged."""
    ctx = server.accept({"baggage": "team.id=a,team.id=b,user.id=u-1"}, peer="10.0.0.5", trust=NETWORK_TRUST)
    assert attribution(ctx) == {conv.BAGGAGE_USER_ID: "u-1"}
    assert server.rejected() == {conv.BAGGAGE_TEAM_ID}


@pytest.mark.parametrize(
    "signature",
    [
        "t=²,n=00112233445566778899aabbccddeeff,h=,b=team.id,v2=" + "0" * 64,
        "t=1,t=2",
        "garbage",
        "t=1700000000,n=zz,h=,b=team.id,v2=" + "0" * 64,
        "t=1700000000,n=00112233445566778899aabbccddeeff,h=x-evil,b=,v2=" + "0" * 64,
        "t=1700000000,n=00112233445566778899aabbccddeeff,h=,b=team.id,v2=short",
        "x" * 5000,
        "t=1700000000\r\n,v2=00",
    ],
    ids=["superscript-digit", "repeated", "garbage", "nonce", "unknown-header", "digest", "huge", "crlf"],
)
def test_a_malformed_signature_is_a_flagged_rejection_keeping_the_rest(
    server: Server, signature: str
) -> None:
    """A malformed signature rejects the attribution, flagged, and keeps traceparent and other baggage."""
    headers = {
        "traceparent": TRACEPARENT,
        "baggage": "team.id=victim,region=eu",
        "x-attribution-signature": signature,
        "host": "svc.internal",
    }
    ctx = server.accept(headers)
    assert attribution(ctx) == {}
    assert baggage.get_baggage("region", ctx) == "eu"
    assert trace.get_current_span(ctx).get_span_context().trace_id == TRACE_ID
    assert server.rejected() == {conv.BAGGAGE_TEAM_ID}
    assert attribution_rejection(ctx)


# ---------------------------------------------------------------------------------------------
# The replay cache and the one canonical string
# ---------------------------------------------------------------------------------------------


def test_the_replay_cache_is_bounded_and_fails_closed() -> None:
    """A full cache refuses new nonces until the old ones' windows close, then admits again."""
    cache = ReplayCache(2)
    assert cache.admit("a" * 32, expires=100.0, now=0.0) is None
    assert cache.admit("b" * 32, expires=200.0, now=0.0) is None
    assert "full" in str(cache.admit("c" * 32, expires=300.0, now=50.0))
    assert cache.admit("c" * 32, expires=300.0, now=150.0) is None  # "a" expired
    assert len(cache) == 2
    with pytest.raises(ValueError, match="replay_cache_size"):
        ReplayCache(0)


def test_the_replay_cache_admits_a_nonce_once_across_threads() -> None:
    """Eight threads presenting the same nonce at once: exactly one is admitted."""
    cache = ReplayCache(100)
    barrier = threading.Barrier(8, timeout=10)
    results: list[str | None] = []
    lock = threading.Lock()

    def present() -> None:
        barrier.wait()
        outcome = cache.admit("d" * 32, expires=1e12, now=0.0)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=present) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results.count(None) == 1 and len(results) == 8


def test_sender_and_receiver_share_one_canonical_string() -> None:
    """The digest in a signature is the HMAC of canonical_string over the request as received."""
    header = sign(
        SECRET,
        timestamp=1,
        method="post",
        host="Svc.Internal:443",
        path="/a%20b?q=1",
        headers={},
        entries={"team.id": "t"},
    )
    fields = dict(part.split("=", 1) for part in header.split(","))
    text = canonical_string(
        timestamp=1,
        nonce=fields["n"],
        method="POST",
        host="svc.internal",
        path="/a b",
        headers={},
        entries={"team.id": "t"},
    )
    assert fields["v2"] == hmac.new(SECRET, text.encode(), hashlib.sha256).hexdigest()


def test_signed_attribution_round_trips_over_http(server: Server) -> None:
    """instrument_httpx signs a real request; the receiver verifies it from what arrived."""
    with Recorder() as service:
        instrument_httpx(llm_hosts={}, attribution_hosts=[service.host], attribution_secret=SECRET)
        try:
            with attributed(), httpx.Client() as client:
                client.put(f"{service.base_url}/jobs/7?x=1", json={})
        finally:
            uninstrument_httpx()
        seen = service.seen[0]
    ctx = server.accept(seen.headers, method=seen.method, path=seen.path)
    assert attribution(ctx) == ATTRIBUTION and attribution_rejection(ctx) is None
