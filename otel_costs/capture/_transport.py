"""The wrapped httpx transports: per request, the header policy and the LLM span, sync and async.

Owns what runs inside ``HTTPTransport.handle_request`` and ``AsyncHTTPTransport.handle_async_request``
(once per hop of a redirect) once ``instrument_httpx`` has wrapped them (``transport_methods``
makes the pair for one httpx-like module). The work is sans-IO and shared: ``_prepare`` applies
the attribution header policy and starts the LLM-call span (``_call.start_call``); ``_received``
hands the response body to the call; the body's end ends the span (``_call.Call``). The sync and
async methods and streams are thin shells that only do the I/O (and differ only by ``await``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Final

from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from otel_costs._sdk import suppress_http
from otel_costs.capture._call import BATCH_BYTES, Call, inside_llm_span, start_call
from otel_costs.capture._config import Config
from otel_costs.capture._dialects import api_for_path
from otel_costs.capture._hosts import NO_MATCH
from otel_costs.capture._trust import (
    ATTRIBUTION_KEYS,
    STRIP_KEY,
    AttributionFilter,
    add_attribution_headers,
    strip_attribution_headers,
    strip_baggage_header,
    without_keys,
)

logger = logging.getLogger("otel_costs")

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

#: The settings in force; ``None``: the wrapped methods pass every request through untouched.
_CONFIG: Config | None = None


def activate(config: Config | None) -> None:
    """Put ``config`` in force for every request from now on (``None``: capture nothing)."""
    global _CONFIG
    _CONFIG = config


# ---------------------------------------------------------------------------------------------
# Sans-IO: before the request is sent, and when its response arrives
# ---------------------------------------------------------------------------------------------


def _begin(request: Any, direct: bool) -> tuple[Call | None, object]:
    """Prepare ``request`` (see ``_prepare``); attach the context it is to be sent in, if any.

    Returns the call (or ``None``) and the token of the attached context (or ``None``). Both
    ``None``: send the request as it is, through the method wrapped. A call and no token: a
    one-span call, sent straight to the method the instrumentation wraps.
    """
    config = _CONFIG
    if config is None:
        return None, None
    call, ctx = _prepare(config, request, direct)
    return call, None if ctx is None else otel_context.attach(ctx)


def _failed(call: Call | None, exc: BaseException) -> None:
    """Sending the request (or the budget check before it) raised ``exc``."""
    if call is not None:
        call.finish("error", exc)


def _detach(token: object) -> None:
    if token is not None:
        otel_context.detach(token)  # type: ignore[arg-type]


def _received(call: Call | None, response: Any, stream_cls: type[Any]) -> Any:
    """Hand ``response``'s body to ``call`` (read through ``stream_cls``); returns ``response``."""
    if call is not None:
        try:
            call.on_response(response.status_code, response.headers)
            response.stream = stream_cls(response.stream, call)
        except Exception:
            logger.exception("otel_costs: could not capture an LLM response")
            call.finish("no_body")
    return response


def _prepare(config: Config, request: Any, direct: bool) -> tuple[Call | None, Context | None]:
    """Apply the header policy to ``request``; start its LLM span if it is an LLM call.

    Returns the call (or ``None``) and the context to send the request in: ``None`` with no call
    means unchanged; ``None`` with a call (only when ``direct``, the instrumentation's wrapper can
    be skipped) means a one-span call whose trace context is already injected, to be sent past
    the instrumentation with nothing attached. Never raises: telemetry must not break the request.
    """
    call: Call | None = None
    try:
        url = request.url
        host: str = url.host
        port = url.port or _DEFAULT_PORTS.get(url.scheme)
        current = otel_context.get_current()  # looked up once, passed on
        entries = baggage.get_all(current)
        ours = [key for key in entries if key in ATTRIBUTION_KEYS] if entries else []
        strip = False
        # Every hop of a redirect comes through here with the previous hop's headers copied:
        # the policy is applied to each hop's own host, and a signature is made for each hop.
        if config.attribution_hosts.match(host, port) is not NO_MATCH:
            target = (request.method, request.headers.get("host") or url.netloc.decode("ascii"), url.path)
            add_attribution_headers(
                request.headers, entries, config.attribution_secret, trace.get_current_span(current), target
            )
        else:
            strip_attribution_headers(request.headers)
            if config.strip_attribution_baggage:
                if "baggage" in request.headers:
                    strip_baggage_header(request.headers)
                strip = bool(ours)
        if request.method == "POST" and config.llm_hosts and is_instrumentation_enabled():
            provider = config.llm_hosts.match(host, port)
            if provider is not NO_MATCH:
                api = api_for_path(url.path)
                if api is not None and not (config.defer_to_sdk_spans and inside_llm_span(current)):
                    call = start_call(config, request, api, provider, host, port, current)
        if call is None and not strip:
            return None, None
        ctx = current
        if call is not None:
            ctx = trace.set_span_in_context(call.span, ctx)
        if call is not None and not config.http_spans:
            # The instrumentation is left out for this request: propagate as it would have.
            textmap = propagate.get_global_textmap()
            if isinstance(textmap, AttributionFilter):
                textmap = textmap.inner  # the keys are left out of this context already
            textmap.inject(request.headers, context=without_keys(ours, ctx) if strip else ctx)
            if direct:
                return call, None
            # What suppress_http_instrumentation() sets, put in the context attached for the
            # request anyway: one attach instead of two, and no context-manager generator.
            ctx = suppress_http(ctx)
        elif strip:
            if isinstance(propagate.get_global_textmap(), AttributionFilter):
                # Spans started below keep the attribution; only the injected header loses it.
                ctx = otel_context.set_value(STRIP_KEY, True, ctx)
            else:  # someone replaced the global propagator since: strip from the context itself
                ctx = without_keys(ours, ctx)
        return call, ctx
    except Exception:
        logger.exception("otel_costs: could not prepare the telemetry of an HTTP request")
        if call is not None:
            call.span.end()
        return None, None


# ---------------------------------------------------------------------------------------------
# The I/O shells: the wrapped transport methods and the response streams, sync and async
# ---------------------------------------------------------------------------------------------


class _Stream:
    """Passes the response bytes through unchanged, queueing them for the call's parser, which
    parses the queue every ``BATCH_BYTES`` and at the end (``Call.flush``)."""

    def __init__(self, inner: Any, call: Call) -> None:
        self._inner = inner
        self._call = call

    def __del__(self) -> None:
        # A response dropped without being read to its end or closed still ends its span.
        call = getattr(self, "_call", None)
        if call is not None:
            call.finish("abandoned")


class _SyncStream(_Stream):
    def __iter__(self) -> Iterator[bytes]:
        call = self._call
        append, size = call.pending.append, 0
        with call:  # ends the span at eof or on an error
            for chunk in self._inner:
                append(chunk)  # inline, not a method call: a stream has ~1,000 chunks
                size += len(chunk)
                if size >= BATCH_BYTES:
                    call.flush()
                    size = 0
                yield chunk

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._call.finish("closed")


class _AsyncStream(_Stream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        call = self._call
        append, size = call.pending.append, 0
        with call:
            async for chunk in self._inner:
                append(chunk)
                size += len(chunk)
                if size >= BATCH_BYTES:
                    call.flush()
                    size = 0
                yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._call.finish("closed")


def transport_methods(
    module: Any,
    sync_original: Any,
    async_original: Any,
    sync_direct: Callable[..., Any] | None,
    async_direct: Callable[..., Any] | None,
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The ``handle_request`` and ``handle_async_request`` that replace ``sync_original`` and
    ``async_original`` on ``module``'s transports.

    ``*_direct`` is the method the httpx instrumentation's wrapper (the ``*_original``) wraps, if
    known: a one-span call (``http_spans=False``) is sent straight to it, past the wrapper that
    would only see its suppression (one wrapper call, one context value and one attach fewer).
    """
    sync_stream = type("LLMCaptureSyncStream", (_SyncStream, module.SyncByteStream), {})
    async_stream = type("LLMCaptureAsyncStream", (_AsyncStream, module.AsyncByteStream), {})
    # Never called when unknown: _prepare only returns "direct" when asked to.
    sync_call = sync_direct if sync_direct is not None else sync_original
    async_call = async_direct if async_direct is not None else async_original
    sync_ok, async_ok = sync_direct is not None, async_direct is not None

    # The two methods below differ only by async/await: the work is in _begin and _received.
    def handle_request(self: Any, request: Any) -> Any:
        call, token = _begin(request, sync_ok)
        if call is None and token is None:
            return sync_original.__get__(self, type(self))(request)
        try:
            if call is not None and call.budgets is not None:
                # Before any byte leaves: a denial raises from here (and ends the span as an error).
                call.reserved(call.budgets.before_call(**call.estimate))
            if token is None:  # a one-span LLM call: trace context injected, nothing attached
                response = sync_call(self, request)
            else:
                response = sync_original.__get__(self, type(self))(request)
        except BaseException as exc:
            _failed(call, exc)
            raise
        finally:
            _detach(token)
        return _received(call, response, sync_stream)

    async def handle_async_request(self: Any, request: Any) -> Any:
        call, token = _begin(request, async_ok)
        if call is None and token is None:
            return await async_original.__get__(self, type(self))(request)
        try:
            if call is not None and call.budgets is not None:
                call.reserved(await call.budgets.before_call_async(**call.estimate))
            if token is None:
                response = await async_call(self, request)
            else:
                response = await async_original.__get__(self, type(self))(request)
        except BaseException as exc:
            _failed(call, exc)
            raise
        finally:
            _detach(token)
        return _received(call, response, async_stream)

    return handle_request, handle_async_request
