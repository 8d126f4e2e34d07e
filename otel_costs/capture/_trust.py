"""Attribution across HTTP: the contract headers out, their signature, and whose attribution comes in.

Owns the outbound side (``attribution_headers``, the ``X-Workflow-Id``... headers and their HMAC
``X-Attribution-Signature`` that ``instrument_httpx`` adds for ``attribution_hosts``, and the
removal of the attribution keys from the ``baggage`` sent to any other host: ``strip_baggage_header``
and the global propagator wrapper ``AttributionFilter``) and the receiving side
(``AttributionTrust``, ``accept_attribution``, ``attribution_rejection``). See
``docs/http-capture.md``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import time
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otel_costs import conventions as conv
from otel_costs.capture._hosts import parse_ip
from otel_costs.conventions import HEADER_ATTRIBUTION_SIGNATURE

logger = logging.getLogger("otel_costs")

#: Baggage key -> outbound header. ``agent.name`` travels in baggage only.
_HEADER_FOR_KEY: Final[Mapping[str, str]] = MappingProxyType(
    {
        conv.BAGGAGE_WORKFLOW_ID: conv.HEADER_WORKFLOW_ID,
        conv.BAGGAGE_WORKFLOW_NAME: conv.HEADER_WORKFLOW_NAME,
        conv.BAGGAGE_AGENT_ID: conv.HEADER_AGENT_ID,
        conv.BAGGAGE_RETRY_DEPTH: conv.HEADER_RETRY_DEPTH,
        conv.BAGGAGE_USER_ID: conv.HEADER_USER_ID,
        conv.BAGGAGE_TEAM_ID: conv.HEADER_TEAM_ID,
    }
)
_CONTRACT_HEADERS: Final = frozenset(
    name.lower() for name in (*_HEADER_FOR_KEY.values(), conv.HEADER_PARENT_AGENT_ID)
)
ATTRIBUTION_KEYS: Final = frozenset(conv.BAGGAGE_TO_ATTRIBUTE)
MAX_VALUE_LENGTH: Final = 256

# ---------------------------------------------------------------------------------------------
# Outbound attribution
# ---------------------------------------------------------------------------------------------


def _header_value(value: object) -> str | None:
    """``value`` if it can travel as a plain header value (printable ASCII, <= 256 chars)."""
    if (
        isinstance(value, str)
        and 0 < len(value) <= MAX_VALUE_LENGTH
        and value.isascii()
        and value.isprintable()
    ):
        return value
    return None


def attribution_headers(
    *, secret: bytes | str | None = None, context: Context | None = None
) -> dict[str, str]:
    """The contract headers (``X-Workflow-Id``...) for the attribution in ``context`` (default: current).

    For clients other than httpx (``instrument_httpx`` adds them itself). With ``secret``, an
    ``X-Attribution-Signature`` is added. Values that are not printable ASCII are left out (they
    still travel in ``baggage``). Example::

        requests.post(url, json=body, headers=otel_costs.attribution_headers())
    """
    headers: dict[str, str] = {}
    key = secret.encode() if isinstance(secret, str) else secret
    add_attribution_headers(headers, baggage.get_all(context), key, trace.get_current_span(context))
    return headers


def add_attribution_headers(
    headers: MutableMapping[str, str], entries: Mapping[str, object], secret: bytes | None, span: trace.Span
) -> None:
    for key, header in _HEADER_FOR_KEY.items():
        value = _header_value(entries.get(key))
        if value is not None and header not in headers:
            headers[header] = value
    if conv.HEADER_PARENT_AGENT_ID not in headers:
        attributes = getattr(span, "attributes", None)
        parent = (
            _header_value(attributes.get(conv.AGENT_PARENT_ID)) if isinstance(attributes, Mapping) else None
        )
        if parent is not None:
            headers[conv.HEADER_PARENT_AGENT_ID] = parent
    if secret is not None:
        signed = {name.lower(): value for name, value in headers.items() if name.lower() in _CONTRACT_HEADERS}
        if signed:
            headers[HEADER_ATTRIBUTION_SIGNATURE] = _sign(secret, signed, int(time.time()))


def strip_baggage_header(headers: Any) -> None:
    """Remove the attribution entries from the ``baggage`` header(s) of ``headers``."""
    values = headers.get_list("baggage") if hasattr(headers, "get_list") else [headers["baggage"]]
    kept = []
    for value in values:
        for entry in value.split(","):
            key = entry.split("=", 1)[0].strip()
            if entry.strip() and key not in ATTRIBUTION_KEYS:
                kept.append(entry.strip())
    del headers["baggage"]
    if kept:
        headers["baggage"] = ",".join(kept)


def _sign(secret: bytes, headers: Mapping[str, str], timestamp: int) -> str:
    """``t=<timestamp>,v1=<HMAC-SHA256 hex>`` over the lower-cased contract headers, sorted."""
    lines = ["v1", str(timestamp), *(f"{name}={headers[name]}" for name in sorted(headers))]
    digest = hmac.new(secret, "\n".join(lines).encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def without_keys(keys: Iterable[str], ctx: Context) -> Context:
    for key in keys:
        ctx = baggage.remove_baggage(key, ctx)
    return ctx


STRIP_KEY: Final = otel_context.create_key("otel_costs.strip_attribution_baggage")


class AttributionFilter(TextMapPropagator):
    """Wraps the global propagator: leaves the attribution keys out of injected baggage when the
    context asks for it (a request to a host outside ``attribution_hosts``)."""

    def __init__(self, inner: TextMapPropagator) -> None:
        self.inner = inner

    def inject(
        self, carrier: Any, context: Context | None = None, setter: Setter[Any] = default_setter
    ) -> None:
        if otel_context.get_value(STRIP_KEY, context):
            entries = baggage.get_all(context)
            context = without_keys(
                [key for key in entries if key in ATTRIBUTION_KEYS], context or otel_context.get_current()
            )
        self.inner.inject(carrier, context=context, setter=setter)

    def extract(
        self, carrier: Any, context: Context | None = None, getter: Getter[Any] = default_getter
    ) -> Context:
        return self.inner.extract(carrier, context=context, getter=getter)

    @property
    def fields(self) -> set[str]:
        return self.inner.fields


# ---------------------------------------------------------------------------------------------
# Inbound attribution
# ---------------------------------------------------------------------------------------------

_REJECTION_KEY: Final = otel_context.create_key("otel_costs.attribution_rejection")


@dataclass(frozen=True)
class AttributionTrust:
    """Whose attribution ``accept_attribution`` believes. Nothing is trusted by default.

    Example: ``AttributionTrust(networks=("10.0.0.0/8",), secrets=(os.environb[b"ATTR_KEY"],))``.
    """

    networks: tuple[str, ...] = ()
    """Peer addresses or CIDR networks whose attribution is accepted, e.g. ``("10.0.0.0/8", "::1")``.
    Pass the socket peer, not ``X-Forwarded-For`` (which any caller can write)."""
    secrets: tuple[bytes, ...] = ()
    """Shared HMAC-SHA256 secrets (>= 16 bytes): a request whose ``X-Attribution-Signature`` verifies
    under any of them is trusted. List the new secret first while rotating."""
    max_skew_seconds: float = 300.0
    """How far a signature's timestamp may be from now, in seconds (limits replay)."""
    untrusted_trace_context: bool = True
    """Whether an untrusted caller's ``traceparent`` is still used as the parent (it links traces
    and carries no billing data)."""
    _parsed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        if isinstance(self.networks, str) or isinstance(self.secrets, bytes | str):
            raise TypeError("networks and secrets must be tuples, e.g. networks=('10.0.0.0/8',)")
        parsed = []
        for network in self.networks:
            try:
                parsed.append(ipaddress.ip_network(network, strict=False))
            except ValueError as exc:
                raise ValueError(
                    f"trusted network {network!r} is not an address or CIDR network: {exc}"
                ) from None
        for secret in self.secrets:
            if not isinstance(secret, bytes) or len(secret) < 16:
                raise ValueError("each secret must be bytes of length >= 16")
        if not self.max_skew_seconds > 0:
            raise ValueError(f"max_skew_seconds must be > 0, got {self.max_skew_seconds}")
        object.__setattr__(self, "_parsed", tuple(parsed))

    def trusts_peer(self, peer: str | None) -> bool:
        """Whether the address ``peer`` is in a trusted network."""
        address = parse_ip(peer) if peer else None
        return address is not None and any(address in network for network in self._parsed)

    def verifies(self, signature: str | None, headers: Mapping[str, str], now: float) -> bool:
        """Whether ``signature`` signs the contract ``headers`` under one of the secrets, in time."""
        if not signature or not self.secrets:
            return False
        fields: dict[str, str] = {}
        for part in signature.split(","):
            name, _, value = part.strip().partition("=")
            fields[name] = value
        stamp, digest = fields.get("t", ""), fields.get("v1", "")
        if not stamp.isdigit() or len(stamp) > 12 or abs(now - int(stamp)) > self.max_skew_seconds:
            return False
        return any(
            hmac.compare_digest(_sign(secret, headers, int(stamp)).partition("v1=")[2], digest)
            for secret in self.secrets
        )


def _normalise_headers(headers: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> dict[str, list[str]]:
    """Lower-cased header name -> values, from a mapping, ASGI pairs or a WSGI environ."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    result: dict[str, list[str]] = {}
    for raw_name, raw_value in items:
        name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else raw_name
        value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else raw_value
        if not isinstance(name, str) or not isinstance(value, str):
            continue
        name = name.lower()
        if name.startswith("http_"):  # WSGI environ: HTTP_X_WORKFLOW_ID
            name = name[5:].replace("_", "-")
        result.setdefault(name, []).append(value)
    return result


def _peer_address(peer: str | tuple[Any, ...] | None) -> str | None:
    if isinstance(peer, tuple):
        peer = peer[0] if peer else None
    return peer if isinstance(peer, str) else None


def accept_attribution(
    headers: Mapping[Any, Any] | Iterable[tuple[Any, Any]],
    *,
    peer: str | tuple[Any, ...] | None,
    trusted: AttributionTrust,
    context: Context | None = None,
    now: float | None = None,
) -> Context:
    """The context to serve an incoming request in: its trace parent, and its attribution if trusted.

    ``headers`` is a mapping (any case), ASGI ``scope["headers"]`` pairs, or a WSGI environ.
    ``peer`` is the socket peer address (ASGI ``scope["client"]``, WSGI ``REMOTE_ADDR``).
    Attribution (the attribution baggage keys and the ``X-Workflow-Id``... headers) is accepted
    when the peer is in ``trusted.networks`` (baggage first, headers fill gaps) or the request
    carries a valid ``X-Attribution-Signature`` (the signed headers win). Otherwise it is dropped,
    the returned context is flagged (``attribution_rejection``) and the current span gets
    ``attribution.rejected``; other baggage entries pass through. Never raises on bad headers.

    Example (ASGI)::

        ctx = accept_attribution(scope["headers"], peer=scope["client"], trusted=TRUST)
        token = opentelemetry.context.attach(ctx)
    """
    if not isinstance(trusted, AttributionTrust):
        raise TypeError(
            "trusted must be an AttributionTrust, e.g. AttributionTrust(networks=('10.0.0.0/8',))"
        )
    base = context if context is not None else otel_context.get_current()
    try:
        return _accept(_normalise_headers(headers), _peer_address(peer), trusted, base, now)
    except Exception:
        logger.exception("otel_costs: could not read the attribution of an incoming request")
        return base


def _accept(
    headers: dict[str, list[str]], peer: str | None, trust: AttributionTrust, base: Context, now: float | None
) -> Context:
    carrier = {
        name: ",".join(values) for name, values in headers.items() if name in ("traceparent", "tracestate")
    }
    if "baggage" in headers:
        carrier["baggage"] = ",".join(headers["baggage"])
    incoming = baggage.get_all(W3CBaggagePropagator().extract(carrier, context=Context()))
    claimed_baggage = {k: v for k, v in incoming.items() if k in ATTRIBUTION_KEYS}
    contract = {
        name: values[0] for name, values in headers.items() if name in _CONTRACT_HEADERS and len(values) == 1
    }
    ambiguous = [name for name, values in headers.items() if name in _CONTRACT_HEADERS and len(values) > 1]
    by_network = trust.trusts_peer(peer)
    signatures = headers.get(HEADER_ATTRIBUTION_SIGNATURE.lower(), [])
    signature = signatures[0] if len(signatures) == 1 else None  # two signatures: ambiguous
    by_signature = not by_network and trust.verifies(signature, contract, time.time() if now is None else now)
    accepted = by_network or by_signature
    ctx = base
    if accepted or trust.untrusted_trace_context:
        ctx = TraceContextTextMapPropagator().extract(carrier, context=ctx)
    for key, value in incoming.items():
        if key not in ATTRIBUTION_KEYS:
            ctx = baggage.set_baggage(key, value, ctx)
    if not accepted:
        claimed_headers = {*contract, *ambiguous}
        dropped = sorted(
            {*claimed_baggage, *(k for k, h in _HEADER_FOR_KEY.items() if h.lower() in claimed_headers)}
        )
        if dropped:
            reason = f"untrusted peer {peer or 'unknown'}: attribution dropped ({', '.join(dropped)})"
            logger.info("otel_costs: %s", reason)
            ctx = otel_context.set_value(_REJECTION_KEY, reason, ctx)
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attribute(conv.ATTRIBUTION_REJECTED, dropped)
        return ctx
    from_headers = {
        key: contract[header.lower()] for key, header in _HEADER_FOR_KEY.items() if header.lower() in contract
    }
    # A trusted network's baggage and headers come from the same trusted caller: baggage first.
    # A signature covers the headers only: they win over (unsigned) baggage.
    merged = {**claimed_baggage, **from_headers} if by_signature else {**from_headers, **claimed_baggage}
    for key, value in merged.items():
        if isinstance(value, str) and 0 < len(value) <= MAX_VALUE_LENGTH:
            ctx = baggage.set_baggage(key, value, ctx)
    return ctx


def attribution_rejection(context: Context | None = None) -> str | None:
    """Why ``accept_attribution`` dropped the caller's attribution in ``context``, or ``None``."""
    value = otel_context.get_value(_REJECTION_KEY, context)
    return value if isinstance(value, str) else None
