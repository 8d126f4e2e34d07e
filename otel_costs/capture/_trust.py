"""Attribution across HTTP: the contract headers out, their signature, and whose attribution comes in.

Owns the outbound side (``attribution_headers``, the ``X-Workflow-Id``... headers and their HMAC
``X-Attribution-Signature`` that ``instrument_httpx`` adds for ``attribution_hosts``, their removal
from a request to any other host, redirect hops included (``strip_attribution_headers``), and the
removal of the attribution keys from the ``baggage`` sent there: ``strip_baggage_header`` and the
global propagator wrapper ``AttributionFilter``) and the receiving side (``AttributionTrust``,
``accept_attribution``, ``attribution_rejection``). Both sides sign through one canonical string
(``_signature.canonical_string``). See ``docs/security.md`` and ``docs/http-capture.md``.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import urllib.parse
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from opentelemetry import baggage, propagate, trace
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
from otel_costs.capture._signature import (
    ReplayCache,
    Signature,
    canonical_string,
    parse_signature,
    sign,
    verifies,
)
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
_KEY_FOR_HEADER: Final = MappingProxyType({h.lower(): k for k, h in _HEADER_FOR_KEY.items()})
_CONTRACT_HEADERS: Final = frozenset(
    name.lower() for name in (*_HEADER_FOR_KEY.values(), conv.HEADER_PARENT_AGENT_ID)
)
_SIGNATURE_HEADER: Final = HEADER_ATTRIBUTION_SIGNATURE.lower()
ATTRIBUTION_KEYS: Final = frozenset(conv.BAGGAGE_TO_ATTRIBUTE)
MAX_VALUE_LENGTH: Final = 256
#: W3C baggage limits (what ``W3CBaggagePropagator`` applies): members, bytes per member, per header.
_MAX_MEMBERS: Final = 180
_MAX_MEMBER_BYTES: Final = 4096
_MAX_BAGGAGE_BYTES: Final = 8192

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
    *,
    secret: bytes | str | None = None,
    context: Context | None = None,
    method: str | None = None,
    url: str | None = None,
) -> dict[str, str]:
    """The contract headers (``X-Workflow-Id``...) for the attribution in ``context`` (default: current).

    For clients other than httpx (``instrument_httpx`` adds them itself). With ``secret``, an
    ``X-Attribution-Signature`` is added, bound to ``method`` and ``url`` (both required then) and
    covering the headers and the attribution baggage the global propagator will send. Values that
    are not printable ASCII are left out (they still travel in ``baggage``). Example::

        url = "http://billing.internal/v1/run"
        headers = otel_costs.attribution_headers(secret=KEY, method="POST", url=url)
        requests.post(url, json=body, headers=headers)
    """
    headers: dict[str, str] = {}
    key = secret.encode() if isinstance(secret, str) else secret
    target = None
    if key is not None:
        if not method or not url:
            raise ValueError(
                "a signed attribution is bound to its request: pass method='POST', url='http://...'"
            )
        parts = urllib.parse.urlsplit(url)
        if not parts.netloc:
            raise ValueError(
                f"url {url!r} has no host: pass the full URL, e.g. 'http://billing.internal/run'"
            )
        target = (method, parts.netloc.rpartition("@")[2], parts.path)
    add_attribution_headers(headers, baggage.get_all(context), key, trace.get_current_span(context), target)
    return headers


def add_attribution_headers(
    headers: MutableMapping[str, str],
    entries: Mapping[str, object],
    secret: bytes | None,
    span: trace.Span,
    target: tuple[str, str, str] | None = None,
) -> None:
    """Add the contract headers for ``entries`` to ``headers``; with ``secret``, (re)sign them.

    ``target`` is the request's ``(method, host[:port], path)``. A signature already present (a
    redirect hop copies the previous hop's) is replaced: it was bound to the previous request.
    """
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
    if HEADER_ATTRIBUTION_SIGNATURE in headers:
        del headers[HEADER_ATTRIBUTION_SIGNATURE]
    if secret is None or target is None:
        return
    signed = {name.lower(): value for name, value in headers.items() if name.lower() in _CONTRACT_HEADERS}
    sent = _sent_baggage(entries) if "baggage" in propagate.get_global_textmap().fields else {}
    if signed or sent:
        method, host, path = target
        headers[HEADER_ATTRIBUTION_SIGNATURE] = sign(
            secret,
            timestamp=int(time.time()),
            method=method,
            host=host,
            path=path,
            headers=signed,
            entries=sent,
        )


def _sent_baggage(entries: Mapping[str, object]) -> dict[str, str]:
    """The attribution entries of ``entries`` that W3C baggage injection sends, as the receiver
    reads them back (the propagator drops members past the W3C limits; the receiver strips)."""
    sent: dict[str, str] = {}
    length = 0
    index = 0
    for key, value in entries.items():
        member = urllib.parse.quote_plus(str(key)) + "=" + urllib.parse.quote_plus(str(value))
        if len(member) > _MAX_MEMBER_BYTES:
            continue
        if index >= _MAX_MEMBERS:
            break
        length += (1 if index else 0) + len(member)
        if length > _MAX_BAGGAGE_BYTES:
            break
        index += 1
        if key in ATTRIBUTION_KEYS:
            sent[key] = str(value).strip()
    return sent


_STRIPPED_RAW: Final = frozenset(name.encode() for name in (*_CONTRACT_HEADERS, _SIGNATURE_HEADER))


def strip_attribution_headers(headers: Any) -> None:
    """Remove the contract headers and the signature from ``headers`` (httpx ``Headers``), sent to
    a host outside the allowlist. One pass over the raw names: this runs on every such request."""
    found = {name.lower() for name, _ in headers.raw if name.lower() in _STRIPPED_RAW}
    for name in found:
        del headers[name.decode("ascii")]


def strip_baggage_header(headers: Any) -> None:
    """Remove the attribution entries from the ``baggage`` header(s) of ``headers``."""
    values = headers.get_list("baggage") if hasattr(headers, "get_list") else [headers["baggage"]]
    kept = []
    for value in values:
        for entry in value.split(","):
            key = urllib.parse.unquote_plus(entry.split("=", 1)[0]).strip()
            if entry.strip() and key not in ATTRIBUTION_KEYS:
                kept.append(entry.strip())
    del headers["baggage"]
    if kept:
        headers["baggage"] = ",".join(kept)


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
    secrets: tuple[bytes, ...] = field(default=(), repr=False)  # never in a log line
    """Shared HMAC-SHA256 secrets (>= 16 bytes): a request whose ``X-Attribution-Signature`` verifies
    under any of them is trusted. While rotating, list both the new and the old secret."""
    max_skew_seconds: float = 300.0
    """How far a signature's timestamp may be from now, in seconds: the validity window is
    ``2 * max_skew_seconds`` wide (clock skew either way)."""
    untrusted_trace_context: bool = True
    """Whether an untrusted caller's ``traceparent`` is still used as the parent (it links traces
    and carries no billing data)."""
    replay_cache_size: int = 100_000
    """How many nonces of accepted signatures are remembered (each until its window closes). When
    full, new signatures are refused (fail closed) until old ones expire."""
    _parsed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, repr=False, compare=False, default=()
    )
    _replay: ReplayCache = field(init=False, repr=False, compare=False, default=None)  # type: ignore[assignment]

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
        object.__setattr__(self, "_replay", ReplayCache(self.replay_cache_size))

    def trusts_peer(self, peer: str | None) -> bool:
        """Whether the address ``peer`` is in a trusted network."""
        address = parse_ip(peer) if peer else None
        return address is not None and any(address in network for network in self._parsed)


def _normalise_headers(headers: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> dict[str, list[str]]:
    """Lower-cased header name -> values, from a mapping, ASGI pairs or a WSGI environ.

    A WSGI environ's ``REQUEST_METHOD``, ``SCRIPT_NAME`` and ``PATH_INFO`` come through as
    ``:method`` and ``:path`` (what a signature is bound to).
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    result: dict[str, list[str]] = {}
    wsgi: dict[str, str] = {}
    for raw_name, raw_value in items:
        name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else raw_name
        value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else raw_value
        if not isinstance(name, str) or not isinstance(value, str):
            continue
        if name in ("REQUEST_METHOD", "PATH_INFO", "SCRIPT_NAME"):
            wsgi[name] = value
            continue
        name = name.lower()
        if name.startswith("http_"):  # WSGI environ: HTTP_X_WORKFLOW_ID
            name = name[5:].replace("_", "-")
        result.setdefault(name, []).append(value)
    if "REQUEST_METHOD" in wsgi:
        result[":method"] = [wsgi["REQUEST_METHOD"]]
    if "PATH_INFO" in wsgi or "SCRIPT_NAME" in wsgi:
        result[":path"] = [wsgi.get("SCRIPT_NAME", "") + wsgi.get("PATH_INFO", "")]
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
    method: str | None = None,
    path: str | None = None,
) -> Context:
    """The context to serve an incoming request in: its trace parent, and its attribution if trusted.

    ``headers`` is a mapping (any case), ASGI ``scope["headers"]`` pairs, or a WSGI environ.
    ``peer`` is the socket peer address (ASGI ``scope["client"]``, WSGI ``REMOTE_ADDR``).
    ``method`` and ``path`` (ASGI ``scope["method"]``, ``scope["path"]``; read from a WSGI environ
    itself) are what a signature is bound to, with the ``Host`` header. Attribution (the
    attribution baggage keys and the ``X-Workflow-Id``... headers) is accepted when the peer is in
    ``trusted.networks`` (baggage first, headers fill gaps), or, key by key, where a valid
    ``X-Attribution-Signature`` covers it. Every key dropped (untrusted, not covered, a control
    character, too long, repeated) is listed in the current span's ``attribution.rejected`` and the
    context is flagged (``attribution_rejection``); other baggage entries and ``traceparent`` pass.
    Never raises on bad headers.

    Example (ASGI)::

        ctx = accept_attribution(scope["headers"], peer=scope["client"], trusted=TRUST,
                                 method=scope["method"], path=scope["path"])
        token = opentelemetry.context.attach(ctx)
    """
    if not isinstance(trusted, AttributionTrust):
        raise TypeError(
            "trusted must be an AttributionTrust, e.g. AttributionTrust(networks=('10.0.0.0/8',))"
        )
    base = context if context is not None else otel_context.get_current()
    try:
        normalised = _normalise_headers(headers)
        if method is not None:
            normalised[":method"] = [method]
        if path is not None:
            normalised[":path"] = [path]
        return _accept(normalised, _peer_address(peer), trusted, base, time.time() if now is None else now)
    except Exception:
        logger.exception("otel_costs: could not read the attribution of an incoming request")
        return base


@dataclass
class _Claims:
    """The attribution an incoming request claims, by source, and the keys already refused."""

    headers: dict[str, str] = field(default_factory=dict)
    """Lower-cased contract header -> its single value."""
    entries: dict[str, str] = field(default_factory=dict)
    """Attribution baggage key -> its single value."""
    rejected: dict[str, str] = field(default_factory=dict)
    """Attribution key -> why it is refused."""

    def keys(self) -> set[str]:
        """Every attribution key claimed, from either source."""
        return {*self.entries, *(_KEY_FOR_HEADER[h] for h in self.headers if h in _KEY_FOR_HEADER)}

    def reject_all(self, reason: str) -> None:
        for key in self.keys():
            self.rejected.setdefault(key, reason)
        self.headers.clear()
        self.entries.clear()


def _split_baggage(values: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """The attribution members of the ``baggage`` header(s), decoded, one by one whatever the
    header's size; and the other members, raw, for the W3C propagator (with its limits)."""
    ours: dict[str, list[str]] = {}
    others: list[str] = []
    for value in values:
        for member in value.split(","):
            name, sep, raw = member.partition("=")
            key = urllib.parse.unquote_plus(name).strip()
            if key in ATTRIBUTION_KEYS and sep:
                ours.setdefault(key, []).append(urllib.parse.unquote_plus(raw.split(";", 1)[0]).strip())
            elif member.strip():
                others.append(member.strip())
    return ours, _within_limits(others)


def _within_limits(members: list[str]) -> list[str]:
    """The leading ``members`` that fit the W3C limits (the propagator drops an over-long header
    whole: the members past the limit are dropped instead, and logged)."""
    members = [m for m in members if m.isascii() and len(m) <= _MAX_MEMBER_BYTES]  # as the propagator
    length = 0
    for index, member in enumerate(members):
        length += (1 if index else 0) + len(member)
        if index >= _MAX_MEMBERS or length > _MAX_BAGGAGE_BYTES:
            logger.info(
                "otel_costs: incoming baggage past the W3C limits: %d members dropped", len(members) - index
            )
            return members[:index]
    return members


def _claims(headers: dict[str, list[str]], baggage_members: dict[str, list[str]]) -> _Claims:
    claims = _Claims()
    for name in _CONTRACT_HEADERS:
        values = headers.get(name, [])
        if len(values) == 1:
            claims.headers[name] = values[0]
        elif values and name in _KEY_FOR_HEADER:
            claims.rejected[_KEY_FOR_HEADER[name]] = f"header {name} sent {len(values)} times"
    for key, values in baggage_members.items():
        if len(values) == 1:
            claims.entries[key] = values[0]
        else:
            claims.rejected[key] = f"baggage key {key} sent {len(values)} times"
    return claims


def _value_problem(value: str) -> str | None:
    """Why ``value`` cannot be attribution, or ``None``: control characters, size."""
    if not value:
        return "empty value"
    if len(value) > MAX_VALUE_LENGTH:
        return f"value longer than {MAX_VALUE_LENGTH} characters"
    if not value.isprintable():
        return "value contains a control character"
    return None


def _check_signature(
    headers: dict[str, list[str]], claims: _Claims, trust: AttributionTrust, now: float
) -> str | None:
    """Verify the request's signature; keep only the claims it covers. ``None`` or why it fails."""
    values = headers.get(_SIGNATURE_HEADER, [])
    if len(values) != 1:
        return "no attribution signature" if not values else "signature sent more than once"
    if not trust.secrets:
        return "signed, but no secrets configured to verify it"
    parsed = parse_signature(values[0], _CONTRACT_HEADERS, ATTRIBUTION_KEYS)
    if isinstance(parsed, str):
        return parsed
    if abs(now - parsed.timestamp) > trust.max_skew_seconds:
        return f"signature outside the validity window (+/- {trust.max_skew_seconds:g} s)"
    # HTTP/2 servers may pass the authority as ":authority" rather than "host".
    host = headers.get("host") or headers.get(":authority") or [""]
    request = [headers.get(":method", [""])[0], host[0], headers.get(":path", [""])[0]]
    if not request[0] or not request[2]:
        return "signature not checked: pass method= and path= to accept_attribution"
    if not request[1]:
        return "signature not checked: the request has no Host header"
    if not _covered_present(parsed, claims):
        return "a signed attribution entry is missing from the request"
    text = canonical_string(
        timestamp=parsed.timestamp,
        nonce=parsed.nonce,
        method=request[0],
        host=request[1],
        path=request[2],
        headers={name: claims.headers[name] for name in parsed.headers},
        entries={key: claims.entries[key] for key in parsed.entries},
    )
    if not any(verifies(secret, parsed, text) for secret in trust.secrets):
        return "signature does not verify (tampered, another host or path, or an unknown secret)"
    replayed = trust._replay.admit(parsed.nonce, parsed.timestamp + trust.max_skew_seconds, now)
    if replayed is not None:
        return replayed
    for name in [h for h in claims.headers if h not in parsed.headers]:
        if name in _KEY_FOR_HEADER:
            claims.rejected.setdefault(_KEY_FOR_HEADER[name], f"header {name} not covered by the signature")
        del claims.headers[name]
    for key in [k for k in claims.entries if k not in parsed.entries]:
        claims.rejected.setdefault(key, f"baggage key {key} not covered by the signature")
        del claims.entries[key]
    return None


def _covered_present(parsed: Signature, claims: _Claims) -> bool:
    return all(n in claims.headers for n in parsed.headers) and all(
        k in claims.entries for k in parsed.entries
    )


def _accept(
    headers: dict[str, list[str]], peer: str | None, trust: AttributionTrust, base: Context, now: float
) -> Context:
    carrier = {
        name: ",".join(values) for name, values in headers.items() if name in ("traceparent", "tracestate")
    }
    members, others = _split_baggage(headers.get("baggage", []))
    claims = _claims(headers, members)
    by_network = trust.trusts_peer(peer)
    failure = None if by_network else _check_signature(headers, claims, trust, now)
    if failure is not None:
        claims.reject_all(
            f"untrusted peer {peer or 'unknown'}: {failure}"
            if not headers.get(_SIGNATURE_HEADER)
            else failure
        )
    ctx = base
    if failure is None or trust.untrusted_trace_context:
        ctx = TraceContextTextMapPropagator().extract(carrier, context=ctx)
    if others:
        ctx = W3CBaggagePropagator().extract({"baggage": ",".join(others)}, context=ctx)
    from_headers = {_KEY_FOR_HEADER[h]: v for h, v in claims.headers.items() if h in _KEY_FOR_HEADER}
    # A trusted network's baggage and headers come from the same trusted caller: baggage first.
    # Under a signature both are signed; the headers (what the sender wrote itself) win.
    merged = {**claims.entries, **from_headers} if not by_network else {**from_headers, **claims.entries}
    for key, value in merged.items():
        if key in claims.rejected:
            continue  # a key refused from one source is not taken from the other
        problem = _value_problem(value)
        if problem is not None:
            claims.rejected[key] = problem
            continue
        ctx = baggage.set_baggage(key, value, ctx)
    if claims.rejected:
        ctx = _flag(ctx, claims.rejected)
    return ctx


def _flag(ctx: Context, rejected: Mapping[str, str]) -> Context:
    """Mark ``ctx`` and the current span with the refused keys and why."""
    keys = sorted(rejected)
    reason = "; ".join(f"{key}: {rejected[key]}" for key in keys)
    logger.info("otel_costs: attribution refused: %s", reason)
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(conv.ATTRIBUTION_REJECTED, keys)
    return otel_context.set_value(_REJECTION_KEY, reason, ctx)


def attribution_rejection(context: Context | None = None) -> str | None:
    """Why ``accept_attribution`` refused (some of) the caller's attribution in ``context``, or ``None``."""
    value = otel_context.get_value(_REJECTION_KEY, context)
    return value if isinstance(value, str) else None
