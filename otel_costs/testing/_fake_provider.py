"""A deterministic fake LLM provider: a real HTTP server on 127.0.0.1 speaking the real wire formats.

It answers the OpenAI (chat completions, Responses, embeddings, legacy completions), Anthropic
Messages and Gemini ``generateContent`` APIs, streamed (SSE) and not, so tests, examples and
demos can drive the real ``openai`` and ``anthropic`` SDKs (and plain httpx) against it without
the network. Every request is recorded (``.requests``) so a test can assert what left the
process, and faults can be injected: error statuses, latency, and bad output (malformed JSON,
truncated or interleaved SSE, missing usage, gzip/br bodies, very large or binary bodies).

Token usage is deterministic. Unless configured, a call's input tokens are the number of
characters in every JSON string value of its prompt fields (``messages``, ``input``,
``instructions``, ``prompt``, ``system``, ``contents``, ``systemInstruction``) divided by 4,
rounded up, at least 1; its output tokens are the number of text pieces in the reply plus the
configured reasoning tokens. ``FakeUsage`` overrides any of these, for all models or per model.
The usage the fake reported for a call is recorded on its ``RecordedRequest`` in OpenTelemetry
semantics (input includes cached tokens, output includes reasoning tokens), whatever the
provider's own wire semantics.

Example::

    with FakeLLMProvider(usage=FakeUsage(cache_read_tokens=10)) as fake:
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="test")
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert fake.requests[-1].usage.cache_read_tokens == 10
"""

from __future__ import annotations

import base64
import enum
import gzip
import hashlib
import importlib
import json
import logging
import math
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType, TracebackType
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

logger = logging.getLogger("otel_costs")

_CREATED: Final = 1_735_689_600  # 2025-01-01T00:00:00Z: fixed, so bodies are reproducible.
_PROMPT_FIELDS: Final = (
    "messages",
    "input",
    "instructions",
    "prompt",
    "system",
    "contents",
    "systemInstruction",
)


@dataclass(frozen=True)
class FakeUsage:
    """Token usage the fake reports. ``None`` fields are derived from the request (see the module doc)."""

    input_tokens: int | None = None
    """All input tokens, cached ones included (OpenTelemetry semantics); ``None`` = derived from the prompt.
    Raised to ``cache_read_tokens + cache_write_tokens`` if it would be smaller."""
    output_tokens: int | None = None
    """All output tokens, reasoning included; ``None`` = text pieces in the reply + ``reasoning_tokens``."""
    cache_read_tokens: int = 0
    """Input tokens served from the provider's prompt cache (reported by OpenAI, Anthropic and Gemini)."""
    cache_write_tokens: int = 0
    """Input tokens written to the prompt cache (Anthropic ``cache_creation_input_tokens``; OpenAI
    ``cache_write_tokens`` in the prompt/input token details when non-zero; not reported by Gemini)."""
    reasoning_tokens: int = 0
    """Output tokens spent on reasoning/thinking (OpenAI and Gemini report them separately)."""


class Misbehaviour(enum.StrEnum):
    """Bad-output modes for robustness tests; several can be combined (e.g. ``GZIP`` with ``LARGE``)."""

    MALFORMED_JSON = "malformed_json"
    """Non-stream: a body cut mid-JSON. Stream: one broken ``data:`` event before the usage event."""
    TRUNCATED = "truncated"
    """Stream: the body ends cleanly before the final usage/terminal events. Non-stream: JSON cut short."""
    DISCONNECT = "disconnect"
    """Stream: the connection is dropped mid-body, without the final chunk of the chunked encoding."""
    MISSING_USAGE = "missing_usage"
    """The usage fields are left out of the body or the stream."""
    GZIP = "gzip"
    """The body is gzip-compressed (``Content-Encoding: gzip``), streams flushed event by event."""
    BROTLI = "br"
    """The body is brotli-compressed (``Content-Encoding: br``); needs the ``brotli`` package."""
    LARGE = "large"
    """The reply text is padded to ``large_body_bytes`` (for a stream: one single huge delta event)."""
    BINARY = "binary"
    """A 200 response with ``application/octet-stream`` bytes that are not JSON."""
    INTERLEAVED = "interleaved"
    """Stream: CRLF line endings, comments, pings, a multi-line ``data:`` event, two events per write
    and writes cut at odd byte offsets so events straddle chunk boundaries."""
    STREAM_ERROR = "stream_error"
    """Stream: an error event in the middle of the stream, which then ends."""


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received, as it arrived."""

    method: str
    """HTTP method, e.g. ``"POST"``."""
    path: str
    """URL path without the query, e.g. ``"/v1/chat/completions"``."""
    query: Mapping[str, str]
    """Query parameters (last value wins)."""
    headers: Mapping[str, str]
    """Request headers, names lower-cased (repeated headers joined with ``", "``)."""
    raw_body: bytes
    """The request body as sent."""
    body: Any
    """The body parsed as JSON, or ``None`` if it was empty or not JSON."""
    usage: FakeUsage | None
    """The usage the fake reported for this call, every field resolved (OpenTelemetry semantics);
    ``None`` when the response carried no usage (errors, embeddings-free paths, ``MISSING_USAGE``)."""
    status: int
    """The status code the fake answered with."""


@dataclass
class _Fault:
    remaining: int | None
    status: int | None = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    modes: frozenset[Misbehaviour] = frozenset()


class FakeLLMProvider:
    """A fake OpenAI/Anthropic/Gemini server on 127.0.0.1, started by ``start()`` or ``with``.

    Keyword arguments:

    - ``usage``: a ``FakeUsage`` for every model, or a mapping model name -> ``FakeUsage``
      (models not in it get the derived default).
    - ``reply``: the assistant's text; streamed one word per delta event.
    - ``stream_chunks``: if set, the reply is exactly this many pieces (words of ``reply``, cycled).
    - ``latency``: seconds to wait before answering each request.
    - ``chunk_interval``: seconds to wait between streamed events.
    - ``response_models``: request model -> the model name the response reports (default: echoed).
    - ``large_body_bytes``: the padding size of ``Misbehaviour.LARGE``.
    - ``port``: the port to bind (0 = any free port).
    - ``unique_ids``: every response gets a new id, as real providers do (default). ``False``
      derives the id from the request, so the same request gets a byte-identical answer (for
      tests that compare bodies across calls).

    Example::

        with FakeLLMProvider() as fake:
            httpx.post(f"{fake.gemini_base_url}/v1beta/models/gemini-2.5-flash:generateContent",
                       json={"contents": [{"parts": [{"text": "hi"}]}]})
    """

    def __init__(
        self,
        *,
        usage: FakeUsage | Mapping[str, FakeUsage] = FakeUsage(),
        reply: str = "Hello from the fake provider.",
        stream_chunks: int | None = None,
        latency: float = 0.0,
        chunk_interval: float = 0.0,
        response_models: Mapping[str, str] | None = None,
        large_body_bytes: int = 4 * 1024 * 1024,
        port: int = 0,
        unique_ids: bool = True,
    ) -> None:
        if latency < 0 or chunk_interval < 0:
            raise ValueError("latency and chunk_interval must be >= 0 seconds")
        if stream_chunks is not None and stream_chunks < 1:
            raise ValueError(f"stream_chunks must be >= 1 or None, got {stream_chunks}")
        if not reply.split():
            raise ValueError("reply must contain at least one word")
        if large_body_bytes < 1:
            raise ValueError(f"large_body_bytes must be >= 1, got {large_body_bytes}")
        if not isinstance(usage, FakeUsage | Mapping):
            raise TypeError(f"usage must be a FakeUsage or a mapping model -> FakeUsage, got {usage!r}")
        self._usage = usage
        words = reply.split()
        count = stream_chunks if stream_chunks is not None else len(words)
        self._pieces = tuple(("" if i == 0 else " ") + words[i % len(words)] for i in range(count))
        self._latency = latency
        self._chunk_interval = chunk_interval
        self._response_models = dict(response_models or {})
        self._large_body_bytes = large_body_bytes
        self._port = port
        self._unique_ids = unique_ids
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._serial = 0

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> FakeLLMProvider:
        """Bind 127.0.0.1 and serve in a daemon thread. Returns ``self``."""
        with self._lock:
            if self._server is not None:
                return self
            handler = type("_BoundHandler", (_Handler,), {"provider": self})
            server = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
            server.daemon_threads = True
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="fake-llm-provider",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket. Idempotent."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> FakeLLMProvider:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- addresses ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port; raises ``RuntimeError`` before ``start()``."""
        server = self._server
        if server is None:
            raise RuntimeError("FakeLLMProvider is not running: call start() or use it as a context manager")
        return int(server.server_address[1])

    @property
    def host(self) -> str:
        """``"127.0.0.1:<port>"``: the host rule that matches this server (e.g. for ``llm_hosts``)."""
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}"

    @property
    def openai_base_url(self) -> str:
        """Base URL for ``openai.OpenAI(base_url=...)``: ``.../v1``."""
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for ``anthropic.Anthropic(base_url=...)`` (the SDK appends ``/v1/messages``)."""
        return self.base_url

    @property
    def gemini_base_url(self) -> str:
        """Base URL of the Gemini API: POST ``{gemini_base_url}/v1beta/models/{model}:generateContent``."""
        return self.base_url

    # --- assertions and faults -----------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 500,
        body: bytes | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``n`` requests with ``status`` and ``body`` (default: the provider's error)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not 100 <= status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {status}")
        raw = json.dumps(body).encode() if isinstance(body, Mapping) else body
        with self._lock:
            self._faults.append(_Fault(remaining=n, status=status, body=raw, headers=dict(headers or {})))

    def misbehave(self, *modes: Misbehaviour | str, times: int | None = 1) -> None:
        """Apply the bad-output ``modes`` to the next ``times`` requests (``None``: until ``reset()``)."""
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None, got {times}")
        parsed = frozenset(Misbehaviour(m) for m in modes)
        if not parsed:
            raise ValueError("give at least one Misbehaviour")
        with self._lock:
            self._faults.append(_Fault(remaining=times, modes=parsed))

    def reset(self) -> None:
        """Forget recorded requests and pending faults."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()

    # --- internals used by the handler ----------------------------------------------------
    def _take_fault(self) -> _Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.pop(0)
            return fault

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_id(self) -> int:
        with self._lock:
            self._serial += 1
            return self._serial

    def _resolve_usage(self, model: str, body: Any, pieces: int) -> FakeUsage:
        usage = self._usage if isinstance(self._usage, FakeUsage) else self._usage.get(model, FakeUsage())
        input_tokens = usage.input_tokens
        if input_tokens is None:
            chars = sum(_string_chars(body.get(k)) for k in _PROMPT_FIELDS) if isinstance(body, dict) else 0
            input_tokens = max(1, math.ceil(chars / 4))
        input_tokens = max(input_tokens, usage.cache_read_tokens + usage.cache_write_tokens)
        output_tokens = usage.output_tokens
        if output_tokens is None:
            output_tokens = pieces + usage.reasoning_tokens
        return replace(usage, input_tokens=input_tokens, output_tokens=output_tokens)


def _string_chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_string_chars(v) for v in value.values())
    if isinstance(value, list):
        return sum(_string_chars(v) for v in value)
    return 0


# ---------------------------------------------------------------------------------------
# The request handler
# ---------------------------------------------------------------------------------------

_Events = Iterator[tuple[str | None, Any]]
"""A stream as (SSE event name or None, JSON payload or a raw ``str`` data value)."""


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

        def record(status: int) -> None:
            # Recorded before the first byte of the answer leaves, so a client that has its
            # response can rely on finding its request in ``requests``.
            if not self._recorded:
                self._recorded = True
                provider._record(
                    RecordedRequest(
                        method=self.command,
                        path=path,
                        query=MappingProxyType(query),
                        headers=MappingProxyType(headers),
                        raw_body=raw,
                        body=body,
                        usage=self._usage,
                        status=status,
                    )
                )

        self._record_as = record
        try:
            self._route(path, query, body, raw, fault)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(
        self, path: str, query: Mapping[str, str], body: Any, raw: bytes, fault: _Fault | None
    ) -> None:
        api = _api_of(path)
        if api is None or self.command != "POST":
            self._send_json(404, _error_body("openai", 404, f"no route for {self.command} {path}"))
            return
        if fault is not None and fault.status is not None:
            payload = (
                fault.body if fault.body is not None else json.dumps(_error_body(api, fault.status)).encode()
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
        pieces = list(self.provider._pieces)
        if Misbehaviour.LARGE in modes:
            pieces.append(" " + "x" * self.provider._large_body_bytes)
        usage = self.provider._resolve_usage(model, body, len(self.provider._pieces))
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
        builder = _Builder(api, model, response_model, serial, pieces, usage, include_usage, request)
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

    def _send_stream(self, builder: _Builder, modes: frozenset[Misbehaviour]) -> None:
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


def _api_of(path: str) -> str | None:
    if path.endswith("/chat/completions"):
        return "openai_chat"
    if path.endswith("/responses"):
        return "openai_responses"
    if path.endswith("/embeddings"):
        return "openai_embeddings"
    if path.endswith("/completions"):
        return "openai_completions"
    if path.endswith("/messages"):
        return "anthropic"
    if path.endswith((":generateContent", ":streamGenerateContent")) and "/models/" in path:
        return "gemini"
    return None


def _error_body(api: str, status: int, message: str | None = None) -> dict[str, Any]:
    message = message or f"fake provider error {status}"
    if api == "anthropic":
        kind = {429: "rate_limit_error", 529: "overloaded_error", 400: "invalid_request_error"}
        return {"type": "error", "error": {"type": kind.get(status, "api_error"), "message": message}}
    if api == "gemini":
        names = {400: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}
        return {"error": {"code": status, "message": message, "status": names.get(status, "INTERNAL")}}
    kind_openai = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind_openai, "param": None, "code": None}}


@dataclass
class _Builder:
    """Builds bodies and stream events of one API call in its provider's wire format."""

    api: str
    model: str
    response_model: str
    serial: int
    pieces: list[str]
    usage: FakeUsage
    include_usage: bool
    request: dict[str, Any]

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def _in(self) -> int:
        return self.usage.input_tokens or 0

    @property
    def _out(self) -> int:
        return self.usage.output_tokens or 0

    # --- OpenAI ---------------------------------------------------------------------------
    def _openai_chat_usage(self) -> dict[str, Any]:
        u = self.usage
        return {
            "prompt_tokens": self._in,
            "completion_tokens": self._out,
            "total_tokens": self._in + self._out,
            "prompt_tokens_details": self._openai_input_details("audio_tokens"),
            "completion_tokens_details": {
                "reasoning_tokens": u.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _openai_input_details(self, *zero_fields: str) -> dict[str, Any]:
        details: dict[str, Any] = {"cached_tokens": self.usage.cache_read_tokens}
        details.update(dict.fromkeys(zero_fields, 0))
        if self.usage.cache_write_tokens:
            details["cache_write_tokens"] = self.usage.cache_write_tokens
        return details

    def _responses_usage(self) -> dict[str, Any]:
        return {
            "input_tokens": self._in,
            "input_tokens_details": self._openai_input_details(),
            "output_tokens": self._out,
            "output_tokens_details": {"reasoning_tokens": self.usage.reasoning_tokens},
            "total_tokens": self._in + self._out,
        }

    def _response_object(self, status: str, text: str | None) -> dict[str, Any]:
        output: list[dict[str, Any]] = []
        if text is not None:
            output.append(self._message_item("completed", text))
        return {
            "id": f"resp_fake{self.serial:06d}",
            "object": "response",
            "created_at": _CREATED,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "instructions": self.request.get("instructions"),
            "max_output_tokens": self.request.get("max_output_tokens"),
            "model": self.response_model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": True,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": self._responses_usage() if status == "completed" and self.include_usage else None,
            "user": None,
            "metadata": {},
        }

    def _message_item(self, status: str, text: str) -> dict[str, Any]:
        content = (
            [{"type": "output_text", "text": text, "annotations": []}]
            if text or status == "completed"
            else []
        )
        return {
            "type": "message",
            "id": f"msg_fake{self.serial:06d}",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def _chat_chunk(self, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": f"chatcmpl-fake{self.serial:06d}",
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": self.response_model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    # --- Anthropic ------------------------------------------------------------------------
    def _anthropic_usage(self, *, final: bool) -> dict[str, Any]:
        u = self.usage
        return {
            "input_tokens": self._in - u.cache_read_tokens - u.cache_write_tokens,
            "cache_creation_input_tokens": u.cache_write_tokens,
            "cache_read_input_tokens": u.cache_read_tokens,
            "output_tokens": self._out if final else 1,
            "service_tier": "standard",
        }

    def _anthropic_message(self, text: str | None, *, final: bool) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": f"msg_fake{self.serial:06d}",
            "type": "message",
            "role": "assistant",
            "model": self.response_model,
            "content": [{"type": "text", "text": text}] if text is not None else [],
            "stop_reason": "end_turn" if final else None,
            "stop_sequence": None,
        }
        if self.include_usage:
            message["usage"] = self._anthropic_usage(final=final)
        return message

    # --- Gemini ---------------------------------------------------------------------------
    def _gemini_usage(self, final: bool, pieces_so_far: int) -> dict[str, Any]:
        u = self.usage
        candidates = self._out - u.reasoning_tokens if final else pieces_so_far
        usage: dict[str, Any] = {
            "promptTokenCount": self._in,
            "candidatesTokenCount": candidates,
            "totalTokenCount": self._in + (self._out if final else pieces_so_far),
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self._in}],
        }
        if u.cache_read_tokens:
            usage["cachedContentTokenCount"] = u.cache_read_tokens
        if final and u.reasoning_tokens:
            usage["thoughtsTokenCount"] = u.reasoning_tokens
        return usage

    def _gemini_chunk(self, text: str, final: bool, pieces_so_far: int) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if final:
            candidate["finishReason"] = "STOP"
        chunk: dict[str, Any] = {"candidates": [candidate]}
        if self.include_usage:
            chunk["usageMetadata"] = self._gemini_usage(final, pieces_so_far)
        chunk["modelVersion"] = self.response_model
        chunk["responseId"] = f"fake{self.serial:06d}"
        return chunk

    # --- public builders ------------------------------------------------------------------
    def body(self) -> dict[str, Any]:
        """The non-streamed response body."""
        if self.api == "openai_chat":
            body: dict[str, Any] = {
                "id": f"chatcmpl-fake{self.serial:06d}",
                "object": "chat.completion",
                "created": _CREATED,
                "model": self.response_model,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": self.text,
                            "refusal": None,
                            "annotations": [],
                        },
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
            }
            if self.include_usage:
                body["usage"] = self._openai_chat_usage()
            body["service_tier"] = "default"
            body["system_fingerprint"] = "fp_fake"
            return body
        if self.api == "openai_completions":
            body = {
                "id": f"cmpl-fake{self.serial:06d}",
                "object": "text_completion",
                "created": _CREATED,
                "model": self.response_model,
                "choices": [{"text": self.text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
            }
            if self.include_usage:
                body["usage"] = {
                    "prompt_tokens": self._in,
                    "completion_tokens": self._out,
                    "total_tokens": self._in + self._out,
                }
            return body
        if self.api == "openai_responses":
            return self._response_object("completed", self.text)
        if self.api == "anthropic":
            return self._anthropic_message(self.text, final=True)
        return self._gemini_chunk(self.text, True, len(self.pieces))

    def embeddings(self) -> dict[str, Any]:
        """The body of an embeddings response (base64 when the request asked for it, as the SDK does)."""
        raw_input = self.request.get("input")
        inputs = raw_input if isinstance(raw_input, list) else [raw_input]
        dimensions = self.request.get("dimensions")
        size = dimensions if isinstance(dimensions, int) and 0 < dimensions <= 4096 else 8
        data = []
        for index, item in enumerate(inputs):
            digest = hashlib.sha256(json.dumps(item).encode()).digest()
            vector = [(digest[i % len(digest)] - 128) / 128.0 for i in range(size)]
            embedding: Any = vector
            if self.request.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        body: dict[str, Any] = {"object": "list", "data": data, "model": self.response_model}
        if self.include_usage:
            body["usage"] = {"prompt_tokens": self._in, "total_tokens": self._in}
        return body

    def error_event(self) -> tuple[str | None, Any]:
        """An error event as the provider sends it mid-stream."""
        if self.api == "anthropic":
            return "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        if self.api == "openai_responses":
            return "error", {
                "type": "error",
                "code": "server_error",
                "message": "fake stream error",
                "param": None,
            }
        if self.api == "gemini":
            return None, {"error": {"code": 503, "message": "fake stream error", "status": "UNAVAILABLE"}}
        return None, {
            "error": {"message": "fake stream error", "type": "server_error", "param": None, "code": None}
        }

    def events(self) -> _Events:
        """The stream events of the response, in order."""
        if self.api == "openai_chat":
            yield None, self._chat_chunk({"role": "assistant", "content": "", "refusal": None}, None)
            for piece in self.pieces:
                yield None, self._chat_chunk({"content": piece}, None)
            yield None, self._chat_chunk({}, "stop")
            if self.include_usage:
                last = self._chat_chunk({}, None)
                last["choices"] = []
                last["usage"] = self._openai_chat_usage()
                yield None, last
            yield None, "[DONE]"
        elif self.api == "openai_completions":
            for index, piece in enumerate(self.pieces):
                finish = "stop" if index == len(self.pieces) - 1 else None
                yield (
                    None,
                    {
                        "id": f"cmpl-fake{self.serial:06d}",
                        "object": "text_completion",
                        "created": _CREATED,
                        "model": self.response_model,
                        "choices": [{"text": piece, "index": 0, "logprobs": None, "finish_reason": finish}],
                    },
                )
            yield None, "[DONE]"
        elif self.api == "openai_responses":
            yield from self._responses_events()
        elif self.api == "anthropic":
            yield from self._anthropic_events()
        else:
            for index, piece in enumerate(self.pieces):
                yield None, self._gemini_chunk(piece, index == len(self.pieces) - 1, index + 1)

    def _responses_events(self) -> _Events:
        seq = iter(range(1_000_000_000))
        item_id = f"msg_fake{self.serial:06d}"
        created = self._response_object("in_progress", None)
        yield (
            "response.created",
            {"type": "response.created", "sequence_number": next(seq), "response": created},
        )
        yield (
            "response.in_progress",
            {"type": "response.in_progress", "sequence_number": next(seq), "response": created},
        )
        yield (
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "sequence_number": next(seq),
                "output_index": 0,
                "item": self._message_item("in_progress", ""),
            },
        )
        part = {"type": "output_text", "text": "", "annotations": []}
        common = {"item_id": item_id, "output_index": 0, "content_index": 0}
        yield (
            "response.content_part.added",
            {"type": "response.content_part.added", "sequence_number": next(seq), **common, "part": part},
        )
        for piece in self.pieces:
            yield (
                "response.output_text.delta",
                {
                    "type": "response.output_text.delta",
                    "sequence_number": next(seq),
                    **common,
                    "delta": piece,
                    "logprobs": [],
                },
            )
        yield (
            "response.output_text.done",
            {
                "type": "response.output_text.done",
                "sequence_number": next(seq),
                **common,
                "text": self.text,
                "logprobs": [],
            },
        )
        done_part = {"type": "output_text", "text": self.text, "annotations": []}
        yield (
            "response.content_part.done",
            {"type": "response.content_part.done", "sequence_number": next(seq), **common, "part": done_part},
        )
        yield (
            "response.output_item.done",
            {
                "type": "response.output_item.done",
                "sequence_number": next(seq),
                "output_index": 0,
                "item": self._message_item("completed", self.text),
            },
        )
        yield (
            "response.completed",
            {
                "type": "response.completed",
                "sequence_number": next(seq),
                "response": self._response_object("completed", self.text),
            },
        )

    def _anthropic_events(self) -> _Events:
        yield (
            "message_start",
            {"type": "message_start", "message": self._anthropic_message(None, final=False)},
        )
        yield (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
        for piece in self.pieces:
            yield (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
            )
        yield "content_block_stop", {"type": "content_block_stop", "index": 0}
        delta: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        }
        if self.include_usage:
            delta["usage"] = {"output_tokens": self._out}
        yield "message_delta", delta
        yield "message_stop", {"type": "message_stop"}


def main(argv: list[str] | None = None) -> None:
    """Run a fake provider until stdin closes.

    ``python -m otel_costs.testing._fake_provider [--stream-chunks N]``.

    Prints the base URL on the first line of stdout, so a parent process can read it.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stream-chunks", type=int, default=None)
    args = parser.parse_args(argv)
    with FakeLLMProvider(port=args.port, stream_chunks=args.stream_chunks) as fake:
        print(fake.base_url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
