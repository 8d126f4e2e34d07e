"""A deterministic fake LLM provider: a real HTTP server on 127.0.0.1 speaking the real wire formats.

This module owns the server: its settings, lifecycle, addresses, recorded requests, pending
faults and the usage each call reports. The HTTP side (parsing, streaming, faults on the wire) is
in ``_fake_http``, the providers' wire formats in ``_fake_wire``, the data types in ``_fake_model``.

It answers the OpenAI (chat completions, Responses, embeddings, legacy completions), Anthropic
Messages and Gemini ``generateContent`` APIs, streamed (SSE) and not, so tests, examples and
demos can drive the real ``openai`` and ``anthropic`` SDKs (and plain httpx) against it without
the network. Every request is recorded (``.requests``) so a test can assert what left the
process, and faults can be injected: error statuses, latency, and bad output (malformed JSON,
truncated or interleaved SSE, missing usage, gzip/br bodies, very large or binary bodies).

Token usage is deterministic. Unless configured, a call's input tokens are the number of
characters in every JSON string value of its prompt fields (``messages``, ``input``,
``instructions``, ``prompt``, ``system``, ``contents``, ``systemInstruction``) divided by 4,
rounded up, at least 1; its output tokens are the number of text pieces in the reply, plus one
per tool call of a scripted ``FakeReply``, plus the configured reasoning tokens. ``FakeUsage``
overrides any of these, for all models or per model.
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

import json
import math
import threading
from collections.abc import Mapping
from dataclasses import replace
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final

from otel_costs.testing._fake_http import _Handler
from otel_costs.testing._fake_model import (
    FakeReply,
    FakeToolCall,
    FakeUsage,
    Misbehaviour,
    RecordedRequest,
    Responder,
    _Fault,
)

__all__ = ["FakeLLMProvider", "FakeReply", "FakeToolCall", "FakeUsage", "Misbehaviour", "RecordedRequest"]

#: The default usage: every figure derived from the request (see the module doc).
_DERIVED: Final = FakeUsage()

_PROMPT_FIELDS: Final = (
    "messages",
    "input",
    "instructions",
    "prompt",
    "system",
    "contents",
    "systemInstruction",
)


class FakeLLMProvider:
    """A fake OpenAI/Anthropic/Gemini server on 127.0.0.1, started by ``start()`` or ``with``.

    Keyword arguments:

    - ``usage``: a ``FakeUsage`` for every model, or a mapping model name -> ``FakeUsage``
      (models not in it get the derived default).
    - ``reply``: the assistant's text; streamed one word per delta event.
    - ``responder``: a function ``(RecordedRequest) -> FakeReply | None`` that scripts the answer to
      each request (text and tool calls, e.g. for agent handoffs); ``None`` from it, or no
      responder, means the ``reply`` text. If it raises, the request gets an HTTP 500.
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
        usage: FakeUsage | Mapping[str, FakeUsage] = _DERIVED,
        reply: str = "Hello from the fake provider.",
        stream_chunks: int | None = None,
        latency: float = 0.0,
        chunk_interval: float = 0.0,
        response_models: Mapping[str, str] | None = None,
        large_body_bytes: int = 4 * 1024 * 1024,
        port: int = 0,
        unique_ids: bool = True,
        responder: Responder | None = None,
    ) -> None:
        if latency < 0 or chunk_interval < 0:
            raise ValueError("latency and chunk_interval must be >= 0 seconds")
        if stream_chunks is not None and stream_chunks < 1:
            raise ValueError(f"stream_chunks must be >= 1 or None, got {stream_chunks}")
        if not reply.split():
            raise ValueError("reply must contain at least one word")
        if responder is not None and not callable(responder):
            raise TypeError(
                f"responder must be a function (RecordedRequest) -> FakeReply | None, got {responder!r}"
            )
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
        self._responder = responder
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


def main(argv: list[str] | None = None) -> None:
    """Run a fake provider until stdin closes.

    ``python -m otel_costs.testing [--port P] [--stream-chunks N]``.

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
