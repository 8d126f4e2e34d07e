"""Loopback servers for the attack suite: a recorder that can redirect, and attribution in force.

``Recorder`` listens on 127.0.0.1 on a free port and records every request it receives (method,
path, headers). A path ``/r<code>/<rest>`` is answered with ``<code>`` and
``Location: <redirect_to>/<rest>``; anything else with ``200 {}``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry import baggage
from opentelemetry import context as otel_context

from otel_costs import conventions as conv

ATTRIBUTION = {
    conv.BAGGAGE_WORKFLOW_ID: "wf-1",
    conv.BAGGAGE_WORKFLOW_NAME: "support",
    conv.BAGGAGE_AGENT_ID: "agent-7",
    conv.BAGGAGE_AGENT_NAME: "triage",
    conv.BAGGAGE_RETRY_DEPTH: "1",
    conv.BAGGAGE_USER_ID: "u-42",
    conv.BAGGAGE_TEAM_ID: "billing",
}
CONTRACT_HEADERS = frozenset(
    h.lower()
    for h in (
        conv.HEADER_WORKFLOW_ID,
        conv.HEADER_WORKFLOW_NAME,
        conv.HEADER_AGENT_ID,
        conv.HEADER_PARENT_AGENT_ID,
        conv.HEADER_RETRY_DEPTH,
        conv.HEADER_USER_ID,
        conv.HEADER_TEAM_ID,
        conv.HEADER_ATTRIBUTION_SIGNATURE,
    )
)
SECRET = b"0123456789abcdef0123456789abcdef"


@dataclass(frozen=True)
class Seen:
    """One request a ``Recorder`` received."""

    method: str
    path: str
    headers: dict[str, str]
    """Lower-cased names; a repeated header's values joined with ``", "``."""

    def baggage_keys(self) -> set[str]:
        """The keys of the ``baggage`` header."""
        header = self.headers.get("baggage", "")
        return {entry.split("=", 1)[0].strip() for entry in header.split(",") if entry.strip()}

    def leaked(self) -> set[str]:
        """The attribution this request carried: contract headers, signature, baggage keys."""
        return {h for h in self.headers if h in CONTRACT_HEADERS} | (self.baggage_keys() & set(ATTRIBUTION))


class Recorder:
    """A loopback HTTP server that records what it receives and can redirect."""

    def __init__(self, redirect_to: str | None = None) -> None:
        self.redirect_to = redirect_to
        self.seen: list[Seen] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return  # keep the test output clean

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                headers: dict[str, str] = {}
                for name, value in self.headers.items():
                    key = name.lower()
                    headers[key] = f"{headers[key]}, {value}" if key in headers else value
                recorder.seen.append(Seen(self.command, self.path, headers))
                code, _, rest = self.path[2:].partition("/")
                if self.path.startswith("/r") and code.isdigit() and recorder.redirect_to:
                    self.send_response(int(code))
                    self.send_header("Location", f"{recorder.redirect_to}/{rest}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits for the serving loop to see its flag.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: the host rule matching only this server."""
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}"

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@contextmanager
def attributed(extra: dict[str, str] | None = None) -> Iterator[None]:
    """The attribution baggage (and ``extra`` entries) attached for the block."""
    ctx = otel_context.get_current()
    for key, value in {**ATTRIBUTION, **(extra or {})}.items():
        ctx = baggage.set_baggage(key, value, ctx)
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)
