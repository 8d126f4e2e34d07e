"""The fake provider's HTTP side: request parsing, routing, recording, SSE framing and faults.

One ``_Handler`` per connection (``http.server``, HTTP/1.1, chunked streams); it reads the
request, takes the next pending fault, asks ``Builder`` for the body or the stream events of the
request's API and writes them, applying the ``Misbehaviour`` modes (compression, truncation,
odd chunk cuts, disconnects, error events) on the way out.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import json
import logging
import socket
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlsplit

from otel_costs.testing._fake_model import FakeReply, FakeUsage, Misbehaviour, RecordedRequest, _Fault
from otel_costs.testing._fake_wire import Builder, api_of, error_body

if TYPE_CHECKING:
    from otel_costs.testing._fake_provider import FakeLLMProvider

logger = logging.getLogger("otel_costs")

#: What ``_scripted`` returns when the responder failed and an error was already sent.
_FAILED: Final = object()


class _Handler(BaseHTTPRequestHandler):
    provider: FakeLLMProvider
    protocol_version = "HTTP/1.1"
    server_version = "FakeLLMProvider/1"
    timeout = 30

    def setup(self) -> None:
        super().setup()
        # Without TCP_NODELAY, header and body writes meet delayed ACKs: ~40 ms per response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fake provider: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    # --- plumbing ---------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        provider = self.provider
        split = urlsplit(self.path)
        path, query = split.path, dict(parse_qsl(split.query))
        raw = self._read_body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        fault = provider._take_fault()
        if provider._latency:
            time.sleep(provider._latency)
        self._usage: FakeUsage | None = None
        self._recorded = False
        arrived = RecordedRequest(
            method=self.command,
            path=path,
            query=MappingProxyType(query),
            headers=MappingProxyType(headers),
            raw_body=raw,
            body=body,
            usage=None,
            status=0,
        )

        def record(status: int) -> None:
            # Recorded before the first byte of the answer leaves, so a client that has its
            # response can rely on finding its request in ``requests``.
            if not self._recorded:
                self._recorded = True
                provider._record(replace(arrived, usage=self._usage, status=status))

        self._record_as = record
        try:
            self._route(arrived, fault)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, arrived: RecordedRequest, fault: _Fault | None) -> None:
        path, query, body, raw = arrived.path, arrived.query, arrived.body, arrived.raw_body
        api = api_of(path)
        if api is None or self.command != "POST":
            self._send_json(404, error_body("openai", 404, f"no route for {self.command} {path}"))
            return
        if fault is not None and fault.status is not None:
            payload = (
                fault.body if fault.body is not None else json.dumps(error_body(api, fault.status)).encode()
            )
            self._send_bytes(fault.status, payload, "application/json", fault.headers)
            return
        modes = fault.modes if fault is not None else frozenset()
        request = body if isinstance(body, dict) else {}
        if api == "gemini":
            model = path.rsplit("/", 1)[-1].split(":", 1)[0]
            stream = path.endswith(":streamGenerateContent")
        else:
            model = str(request.get("model", "unknown-model"))
            stream = bool(request.get("stream"))
        if Misbehaviour.BINARY in modes:
            blob = bytes(range(256)) * 64
            self._send_bytes(200, blob, "application/octet-stream", {})
            return
        reply = self._scripted(arrived, api)
        if reply is _FAILED:
            return
        if isinstance(reply, FakeReply):
            words = reply.text.split()
            pieces = [("" if i == 0 else " ") + word for i, word in enumerate(words)]
            tool_calls = tuple(reply.tool_calls)
        else:
            pieces, tool_calls = list(self.provider._pieces), ()
        counted = len(pieces) + len(tool_calls)
        if Misbehaviour.LARGE in modes:
            pieces.append(" " + "x" * self.provider._large_body_bytes)
        usage = self.provider._resolve_usage(model, body, counted)
        include_usage = Misbehaviour.MISSING_USAGE not in modes
        if api == "openai_chat" and stream:
            options = request.get("stream_options")
            include_usage = include_usage and isinstance(options, dict) and bool(options.get("include_usage"))
        self._usage = usage if include_usage else None
        response_model = self.provider._response_models.get(model, model)
        if self.provider._unique_ids:
            serial = self.provider._next_id()
        else:  # derived from the request: the same request gets a byte-identical answer
            serial = (
                int.from_bytes(hashlib.sha256(path.encode() + b"\0" + raw).digest()[:4], "big") % 1_000_000
            )
        builder = Builder(
            api, model, response_model, serial, pieces, usage, include_usage, request, tool_calls
        )
        if api == "openai_embeddings":
            self._usage = replace(usage, output_tokens=0) if include_usage else None
            self._send_json(200, builder.embeddings(), modes)
            return
        if not stream:
            self._send_json(200, builder.body(), modes)
            return
        sse = not (api == "gemini" and query.get("alt") != "sse")
        if not sse:
            # Gemini without alt=sse streams one JSON array of GenerateContentResponse objects.
            chunks = [event for _, event in builder.events()]
            self._send_json(200, chunks, modes)
            return
        self._send_stream(builder, modes)

    def _scripted(self, arrived: RecordedRequest, api: str) -> FakeReply | object | None:
        """The responder's answer to ``arrived``; ``_FAILED`` (a 500 was sent) if it raised."""
        responder = self.provider._responder
        if responder is None:
            return None
        try:
            reply = responder(arrived)
            if reply is not None and not isinstance(reply, FakeReply):
                raise TypeError(f"the responder returned {reply!r}, not a FakeReply or None")
        except Exception as exc:
            logger.exception("fake provider: the responder raised on %s", arrived.path)
            message = f"the fake provider's responder raised {type(exc).__name__}: {exc}"
            self._send_json(500, error_body(api, 500, message))
            return _FAILED
        return reply

    # --- senders ------------------------------------------------------------------------
    def _send_bytes(
        self, status: int, payload: bytes, content_type: str, headers: Mapping[str, str], encoding: str = ""
    ) -> None:
        self._record_as(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("request-id", f"req_fake_{self.provider._next_id()}")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _send_json(self, status: int, obj: Any, modes: frozenset[Misbehaviour] = frozenset()) -> None:
        payload = json.dumps(obj, separators=(",", ":")).encode()
        if Misbehaviour.MALFORMED_JSON in modes or Misbehaviour.TRUNCATED in modes:
            payload = payload[: max(1, len(payload) * 2 // 3)]
        encoding = ""
        if Misbehaviour.GZIP in modes:
            payload, encoding = gzip.compress(payload, mtime=0), "gzip"
        elif Misbehaviour.BROTLI in modes:
            payload, encoding = _brotli().compress(payload), "br"
        self._send_bytes(status, payload, "application/json", {}, encoding)

    def _send_stream(self, builder: Builder, modes: frozenset[Misbehaviour]) -> None:
        self._record_as(200)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", f"req_fake_{self.provider._next_id()}")
        compressor: Callable[[bytes], bytes] | None = None
        if Misbehaviour.GZIP in modes:
            self.send_header("Content-Encoding", "gzip")
            gz = zlib.compressobj(wbits=31)
            compressor = lambda data: gz.compress(data) + gz.flush(zlib.Z_SYNC_FLUSH)  # noqa: E731
            finish: Callable[[], bytes] = gz.flush
        elif Misbehaviour.BROTLI in modes:
            self.send_header("Content-Encoding", "br")
            br = _brotli().Compressor()
            compressor = lambda data: br.process(data) + br.flush()  # noqa: E731
            finish = br.finish
        self.end_headers()
        interleaved = Misbehaviour.INTERLEAVED in modes
        newline = "\r\n" if interleaved else "\n"
        events = list(builder.events())
        if Misbehaviour.TRUNCATED in modes or Misbehaviour.DISCONNECT in modes:
            events = events[: max(1, len(events) // 2)]
        if Misbehaviour.STREAM_ERROR in modes:
            events = [*events[: max(1, len(events) // 2)], builder.error_event()]
        if Misbehaviour.MALFORMED_JSON in modes:
            # Just before the usage-bearing event, so a parser must survive it to see the usage.
            before_usage = len(events) - (2 if builder.api in ("openai_chat", "anthropic") else 1)
            events.insert(max(0, before_usage), (None, '{"id": "broken", "choices": [{"delta": {"content": '))
        if interleaved:
            events.insert(1, ("ping", {"type": "ping"}) if builder.api == "anthropic" else (None, None))
        pending = bytearray()
        for index, (name, payload) in enumerate(events):
            text = _sse_event(name, payload, newline, multiline=interleaved and index == 2)
            if interleaved and index % 3 == 0:
                text = f": keep-alive{newline}{newline}" + text
            pending += text.encode()
            if interleaved and index % 2 == 0 and index + 1 < len(events):
                continue  # two events in one write
            self._write_chunks(bytes(pending), compressor, odd_cuts=interleaved)
            pending.clear()
            if self.provider._chunk_interval:
                time.sleep(self.provider._chunk_interval)
        if pending:
            self._write_chunks(bytes(pending), compressor, odd_cuts=interleaved)
        if Misbehaviour.DISCONNECT in modes:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if compressor is not None:
            tail = finish()
            if tail:
                self._write_chunk(tail)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _write_chunks(
        self, data: bytes, compressor: Callable[[bytes], bytes] | None, *, odd_cuts: bool
    ) -> None:
        if compressor is not None:
            data = compressor(data)
        if not odd_cuts:
            self._write_chunk(data)
            return
        # Cut at odd offsets so that lines, CRLFs and events straddle chunk boundaries.
        step = 7
        for start in range(0, len(data), step):
            self._write_chunk(data[start : start + step])

    def _write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()


def _brotli() -> Any:
    try:
        return importlib.import_module("brotli")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("Misbehaviour.BROTLI needs the 'brotli' package: pip install brotli") from exc


def _sse_event(name: str | None, payload: Any, newline: str, *, multiline: bool) -> str:
    if payload is None:
        return f": ping{newline}{newline}"
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    lines = []
    if name is not None:
        lines.append(f"event: {name}")
    if multiline and data.startswith("{") and "," in data:
        # One JSON value over two data lines: SSE joins them with a newline, which JSON allows.
        head, tail = data.split(",", 1)
        lines += [f"data: {head},", f"data: {tail}"]
    else:
        lines.append(f"data: {data}")
    return newline.join(lines) + newline + newline
