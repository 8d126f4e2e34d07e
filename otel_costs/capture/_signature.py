"""The attribution signature: one canonical string for both sides, and the replay cache.

Owns the ``X-Attribution-Signature`` format (``v2``), ``canonical_string`` (the exact text the
HMAC covers, used by the sending side in ``_trust.add_attribution_headers`` and by the receiving
side in ``_trust.accept_attribution``, so the two cannot drift), ``canonical_host``, the parsing
of a received signature (``parse_signature``, which never raises) and ``ReplayCache``, the bounded
thread-safe record of the nonces seen within the validity window. See ``docs/security.md``.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import secrets
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

#: The version tag of the signed text and of the header's digest field.
VERSION: Final = "v2"
#: The sides of the request a signed attribution entry came from.
HEADER_SIDE: Final = "h"
BAGGAGE_SIDE: Final = "b"
#: Longest signature header read, in characters: anything longer is malformed.
MAX_SIGNATURE_LENGTH: Final = 1024
_DEFAULT_PORTS: Final = (":80", ":443")
_HEX: Final = frozenset("0123456789abcdef")


def canonical_host(host: str) -> str:
    """``host`` (a ``Host`` header: ``host[:port]``, IPv6 in brackets) lower-cased, without a
    default port (the receiver does not know the scheme, so ``:80`` and ``:443`` both go).

    Example: ``canonical_host("[::1]:443") == "[::1]"``; ``canonical_host("API.x:8080") == "api.x:8080"``.
    """
    text = host.strip().lower()
    for default in _DEFAULT_PORTS:
        if text.endswith(default):
            return text[: -len(default)]
    return text


def canonical_path(path: str) -> str:
    """The request path without its query, percent-decoded (either spelling signs the same)."""
    return urllib.parse.unquote(path.partition("?")[0]) or "/"


def canonical_string(
    *,
    timestamp: int,
    nonce: str,
    method: str,
    host: str,
    path: str,
    headers: Mapping[str, str],
    entries: Mapping[str, str],
) -> str:
    """The text the HMAC covers: version, time, nonce, request line and every attribution entry.

    ``headers`` are the attribution headers (lower-cased names) and ``entries`` the attribution
    baggage entries, each ``name -> value``; both sides build them from what they send / received.
    """
    lines = [
        VERSION,
        str(timestamp),
        nonce,
        method.upper(),
        canonical_host(host),
        canonical_path(path),
        *(f"{HEADER_SIDE}:{name}={headers[name]}" for name in sorted(headers)),
        *(f"{BAGGAGE_SIDE}:{key}={entries[key]}" for key in sorted(entries)),
    ]
    return "\n".join(lines)


def _digest(secret: bytes, text: str) -> str:
    return hmac.new(secret, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def sign(
    secret: bytes,
    *,
    timestamp: int,
    method: str,
    host: str,
    path: str,
    headers: Mapping[str, str],
    entries: Mapping[str, str],
    nonce: str | None = None,
) -> str:
    """The ``X-Attribution-Signature`` value: ``t=<unix s>,n=<nonce>,h=<names>,b=<keys>,v2=<hex>``.

    ``h`` and ``b`` list (``;``-separated) the header names and baggage keys covered, so the
    receiving side can tell an entry added in transit (rejected) from a signed one.
    """
    nonce = nonce if nonce is not None else secrets.token_hex(16)
    text = canonical_string(
        timestamp=timestamp,
        nonce=nonce,
        method=method,
        host=host,
        path=path,
        headers=headers,
        entries=entries,
    )
    covered_h = ";".join(sorted(headers))
    covered_b = ";".join(sorted(entries))
    return f"t={timestamp},n={nonce},h={covered_h},b={covered_b},{VERSION}={_digest(secret, text)}"


@dataclass(frozen=True)
class Signature:
    """A parsed ``X-Attribution-Signature``: what it claims to cover, not yet verified."""

    timestamp: int
    nonce: str
    headers: tuple[str, ...]
    """Lower-cased attribution header names covered."""
    entries: tuple[str, ...]
    """Attribution baggage keys covered."""
    digest: str


def parse_signature(value: str, header_names: frozenset[str], entry_keys: frozenset[str]) -> Signature | str:
    """``value`` parsed, or a reason (text) why it is malformed. Never raises.

    Only names in ``header_names`` / ``entry_keys`` may be listed as covered.
    """
    if len(value) > MAX_SIGNATURE_LENGTH or not value.isascii() or not value.isprintable():
        return "malformed signature (too long or not printable ASCII)"
    fields: dict[str, str] = {}
    for part in value.split(","):
        name, sep, field_value = part.strip().partition("=")
        if not sep or name in fields:
            return f"malformed signature (field {name!r} missing '=' or repeated)"
        fields[name] = field_value
    if "v1" in fields and VERSION not in fields:
        return "signature version v1 is no longer accepted: upgrade the sender (v2 signs baggage too)"
    if set(fields) != {"t", "n", "h", "b", VERSION}:
        return f"malformed signature (expected the fields t, n, h, b, {VERSION})"
    stamp, nonce, digest = fields["t"], fields["n"], fields[VERSION]
    # isascii first: "²".isdigit() is True and int("²") raises.
    if not (stamp.isascii() and stamp.isdigit() and 0 < len(stamp) <= 12):
        return f"malformed signature timestamp {stamp[:20]!r} (unix seconds expected)"
    if not (16 <= len(nonce) <= 64 and set(nonce) <= _HEX):
        return "malformed signature nonce (16 to 64 lower-case hex digits expected)"
    if not (len(digest) == 64 and set(digest) <= _HEX):
        return "malformed signature digest (64 lower-case hex digits expected)"
    headers = tuple(fields["h"].split(";")) if fields["h"] else ()
    entries = tuple(fields["b"].split(";")) if fields["b"] else ()
    if not set(headers) <= header_names or not set(entries) <= entry_keys:
        return "malformed signature (it lists names that are not attribution headers or keys)"
    if len(set(headers)) != len(headers) or len(set(entries)) != len(entries):
        return "malformed signature (a covered name is listed twice)"
    return Signature(int(stamp), nonce, headers, entries, digest)


def verifies(secret: bytes, signature: Signature, text: str) -> bool:
    """Whether ``signature``'s digest is the HMAC of ``text`` under ``secret`` (constant time)."""
    return hmac.compare_digest(_digest(secret, text), signature.digest)


class ReplayCache:
    """The nonces of the signatures accepted, each kept until its signature's window closes.

    Bounded at ``size`` entries: when full of unexpired nonces, a new signature is refused (the
    cache fails closed rather than forget a nonce that could then be replayed). Thread-safe.
    """

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"replay_cache_size must be an int >= 1, got {size!r}")
        self.size = size
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def admit(self, nonce: str, expires: float, now: float) -> str | None:
        """Record ``nonce`` until ``expires``; ``None`` if new, else why it is refused."""
        with self._lock:
            heap, expiry = self._heap, self._expiry
            while heap and heap[0][0] < now:
                _, old = heapq.heappop(heap)
                if expiry.get(old, now + 1) < now:
                    del expiry[old]
            if nonce in expiry:
                return "signature nonce already used (replayed request)"
            if len(expiry) >= self.size:
                return f"replay cache full ({self.size} nonces in the window): signature refused"
            expiry[nonce] = expires
            heapq.heappush(heap, (expires, nonce))
            return None
