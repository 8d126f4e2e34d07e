"""LLM usage capture and attribution headers at the HTTP layer, for httpx and httpx2 clients.

``instrument_httpx()`` turns on ``opentelemetry-instrumentation-httpx`` (``HTTPXClientInstrumentor``
and ``HTTPX2ClientInstrumentor``) and wraps the transports it wraps, one layer further out:

- A POST to an LLM API (host rule + path) gets an LLM-call span (``chat gpt-4o``) with the
  OpenTelemetry GenAI attributes; the instrumentation's HTTP span is its child. The response
  body is parsed as the application reads it (the instrumentation's hooks run before the body
  is read), and the LLM span ends when the body is exhausted, closed, fails or is collected.
- Outbound attribution: requests to ``attribution_hosts`` get the contract headers
  (``X-Workflow-Id`` ...) and keep the attribution baggage; requests to any other host have the
  attribution keys removed from their ``baggage`` header, so user, team and workflow ids do not
  leave for third parties.

``accept_attribution()`` is the receiving side: it accepts attribution from an incoming request
only from a trusted peer network or with a valid HMAC signature. See ``docs/http-capture.md``.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import ipaddress
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Generic, Protocol, TypeVar

from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import _SUPPRESS_HTTP_INSTRUMENTATION_KEY, Context
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.propagators.textmap import (
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace import sampling
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE
from opentelemetry.semconv.attributes.server_attributes import SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_FULL
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otel_costs import conventions as conv
from otel_costs.capture._responses import (
    OPENAI_CHAT,
    OPENAI_COMPLETIONS,
    ApiCall,
    CaptureResult,
    ResponseCapture,
    api_for_path,
    loads_json,
)
from otel_costs.conventions import RESERVATION_ID_ATTRIBUTE
from otel_costs.pipeline._processor import _add_attributes

logger = logging.getLogger("otel_costs")

__all__ = [
    "DEFAULT_LLM_HOSTS",
    "HEADER_ATTRIBUTION_SIGNATURE",
    "AttributionTrust",
    "accept_attribution",
    "attribution_headers",
    "attribution_rejection",
    "instrument_httpx",
    "uninstrument_httpx",
]

#: Public LLM API hosts -> ``gen_ai.provider.name``. ``None`` means "infer from the API path".
#: Extend it for your own servers: ``{**DEFAULT_LLM_HOSTS, "vllm.internal:8000": "vllm"}``.
DEFAULT_LLM_HOSTS: Final[Mapping[str, str | None]] = MappingProxyType(
    {
        "api.openai.com": "openai",
        "*.openai.azure.com": "azure.ai.openai",
        "*.cognitiveservices.azure.com": "azure.ai.openai",
        "*.services.ai.azure.com": "azure.ai.inference",
        "api.anthropic.com": "anthropic",
        "generativelanguage.googleapis.com": "gcp.gemini",
        "aiplatform.googleapis.com": "gcp.vertex_ai",
        "*-aiplatform.googleapis.com": "gcp.vertex_ai",
        "api.groq.com": "groq",
        "api.mistral.ai": "mistral_ai",
        "api.deepseek.com": "deepseek",
        "api.x.ai": "x_ai",
        "api.perplexity.ai": "perplexity",
        "api.together.xyz": "together",
        "api.together.ai": "together",
        "openrouter.ai": "openrouter",
        "api.fireworks.ai": "fireworks",
        "api.cohere.com": "cohere",
    }
)

#: HMAC signature over the attribution headers: ``t=<unix seconds>,v1=<hex HMAC-SHA256>``.
HEADER_ATTRIBUTION_SIGNATURE: Final = conv.HEADER_ATTRIBUTION_SIGNATURE

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
_ATTRIBUTION_KEYS: Final = frozenset(conv.BAGGAGE_TO_ATTRIBUTE)
_MAX_VALUE_LENGTH: Final = 256
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_MAX_REQUEST_PARSE_BYTES: Final = 4 * 1024 * 1024
_BATCH_BYTES: Final = 64 * 1024

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Host rules
# ---------------------------------------------------------------------------------------------

_NO_MATCH: Final = object()
_MISS: Final = object()


class _HostRules(Generic[T]):
    """Host patterns -> values: ``host``, ``host:port``, ``*.suffix`` / ``*`` globs, or CIDR networks."""

    def __init__(self, rules: Mapping[str, T]) -> None:
        self._exact: dict[tuple[str, int | None], T] = {}
        self._globs: list[tuple[re.Pattern[str], int | None, T]] = []
        self._networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None, T]] = []
        self._cache: dict[tuple[str, int | None], object] = {}
        for pattern, value in rules.items():
            if not isinstance(pattern, str) or not pattern.strip():
                raise ValueError(
                    f"host rule {pattern!r} must be a non-empty string like 'api.example.com:443'"
                )
            host, port = _split_host_port(pattern.strip().lower())
            if "/" in host:
                try:
                    network = ipaddress.ip_network(host, strict=False)
                except ValueError as exc:
                    raise ValueError(f"host rule {pattern!r} is not a valid CIDR network: {exc}") from None
                self._networks.append((network, port, value))
            elif "*" in host:
                regex = re.compile("^" + ".*".join(re.escape(part) for part in host.split("*")) + "$")
                self._globs.append((regex, port, value))
            else:
                self._exact[(host, port)] = value

    def __bool__(self) -> bool:
        return bool(self._exact or self._globs or self._networks)

    def match(self, host: str, port: int | None) -> object:
        """The value of the first rule matching ``host``/``port``, or ``_NO_MATCH``."""
        key = (host, port)
        cached = self._cache.get(key, _MISS)
        if cached is not _MISS:
            return cached
        found = self._lookup(host, port)
        if len(self._cache) < 1024:
            self._cache[key] = found
        return found

    def _lookup(self, host: str, port: int | None) -> object:
        for candidate in ((host, port), (host, None)):
            if candidate in self._exact:
                return self._exact[candidate]
        for regex, rule_port, value in self._globs:
            if (rule_port is None or rule_port == port) and regex.match(host):
                return value
        if self._networks:
            address = _ip(host)
            if address is not None:
                for network, rule_port, value in self._networks:
                    if (rule_port is None or rule_port == port) and address in network:
                        return value
        return _NO_MATCH


def _split_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):  # [::1]:8000
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        if not port.isdigit():
            raise ValueError(f"host rule {text!r} has a port that is not a number")
        return host, int(port)
    return text, None


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# ---------------------------------------------------------------------------------------------
# Configuration and installation
# ---------------------------------------------------------------------------------------------


class PreCallBudgets(Protocol):
    """What the capture needs of a ``BudgetManager``: the pre-call check-and-reserve."""

    def before_call(
        self,
        attributes: Mapping[str, object] | None = None,
        *,
        model: str | None,
        provider: str | None = None,
        input_chars: int | None = None,
        max_output_tokens: int | None = None,
    ) -> Any:
        """Estimate, reserve, wait if throttled; raise ``BudgetDenied`` if denied."""
        ...

    async def before_call_async(
        self,
        attributes: Mapping[str, object] | None = None,
        *,
        model: str | None,
        provider: str | None = None,
        input_chars: int | None = None,
        max_output_tokens: int | None = None,
    ) -> Any:
        """``before_call`` for async clients."""
        ...


@dataclass(frozen=True)
class _Config:
    """The settings of one ``instrument_httpx`` call."""

    tracer: trace.Tracer
    """Tracer of the LLM-call spans."""
    llm_hosts: _HostRules[str | None]
    """Host -> provider name (``None``: from the API path) of the LLM APIs to capture."""
    attribution_hosts: _HostRules[bool]
    """Hosts that receive attribution headers and baggage."""
    attribution_secret: bytes | None
    """HMAC secret signing the attribution headers, if any."""
    strip_attribution_baggage: bool
    """Remove the attribution keys from the baggage sent to other hosts."""
    defer_to_sdk_spans: bool
    """Make no LLM span inside an SDK's own LLM-call span (no double counting)."""
    http_spans: bool
    """Keep the httpx instrumentation's HTTP span under each LLM span (else the LLM span carries
    the HTTP attributes and this module propagates the trace context itself)."""
    max_body_bytes: int
    """A JSON body is parsed whole up to this size; past it only its head and tail are kept."""
    max_event_bytes: int
    """An SSE event longer than this is skipped."""
    budgets: PreCallBudgets | None = None
    """Checked (and a reservation made) before each LLM request is sent."""
    blind_sampler: bool = False
    """The tracer is the SDK's and its sampler never reads span attributes (``_ignores_attributes``):
    LLM spans can start without attributes and get them stored right after."""


@dataclass
class _Installation:
    """Our wrappers on one httpx-like module, and what they replaced."""

    module: Any
    sync_original: Any
    async_original: Any
    sync_wrapper: Callable[..., Any]
    async_wrapper: Callable[..., Any]
    instrumentor: BaseInstrumentor | None
    """The instrumentor this module instrumented (and so uninstruments), or ``None``."""


_LOCK = threading.Lock()
_CONFIG: _Config | None = None
_INSTALLED: list[_Installation] = []


def instrument_httpx(
    *,
    tracer_provider: TracerProvider | None = None,
    llm_hosts: Mapping[str, str | None] = DEFAULT_LLM_HOSTS,
    attribution_hosts: Collection[str] = (),
    attribution_secret: bytes | str | None = None,
    strip_attribution_baggage: bool = True,
    defer_to_sdk_spans: bool = True,
    http_spans: bool = True,
    max_body_bytes: int = 2 * 1024 * 1024,
    max_event_bytes: int = 1024 * 1024,
    budgets: PreCallBudgets | None = None,
) -> None:
    """Capture LLM calls and apply the attribution header policy on every httpx and httpx2 client.

    - ``tracer_provider``: where the LLM-call spans (and, if this call turns it on, the httpx
      instrumentation's HTTP spans) go; default the global provider.
    - ``llm_hosts``: host rule -> ``gen_ai.provider.name`` (``None``: inferred from the API path).
      Rules are ``host``, ``host:port``, globs like ``*.openai.azure.com`` or CIDR networks.
    - ``attribution_hosts``: host rules of your gateway and services; only they receive the
      ``X-Workflow-Id``... headers and the attribution baggage.
    - ``attribution_secret``: if set, requests to ``attribution_hosts`` carry an
      ``X-Attribution-Signature`` that ``accept_attribution`` verifies.
    - ``strip_attribution_baggage``: remove the attribution keys from the ``baggage`` header of
      requests to all other hosts (default True).
    - ``defer_to_sdk_spans``: no LLM span for a request made inside an SDK's own LLM-call span.
    - ``http_spans``: keep the httpx instrumentation's HTTP span (and duration metric) under each
      LLM span. ``False`` saves one span per LLM call: the LLM span then carries the HTTP method,
      URL (without its query) and status code, and the trace context is injected here.
    - ``max_body_bytes`` / ``max_event_bytes``: bounds of what is buffered per response.
    - ``budgets``: a ``BudgetManager`` checked before each LLM request is sent: it reserves an
      estimate (from the request's size, ``max_tokens`` and the model's prices), waits when
      throttled, and raises ``BudgetExceeded`` when denied, before any byte leaves. The openai
      SDK lets it through to the caller; the anthropic SDK wraps it in its ``APIConnectionError``
      (``__cause__`` is the ``BudgetExceeded``), retrying without sending anything.

    Calling it again replaces the settings. Example::

        otel_costs.instrument_httpx(attribution_hosts=["gateway.internal", "*.svc.cluster.local"])
    """
    if tracer_provider is not None and not isinstance(tracer_provider, TracerProvider):
        raise TypeError(f"tracer_provider must be an OpenTelemetry TracerProvider, got {tracer_provider!r}")
    if not isinstance(llm_hosts, Mapping):
        raise TypeError("llm_hosts must be a mapping host rule -> provider name (or None)")
    for provider in llm_hosts.values():
        if provider is not None and (not isinstance(provider, str) or not provider):
            raise TypeError(f"llm_hosts values must be provider names or None, got {provider!r}")
    if isinstance(attribution_hosts, str):
        raise TypeError("attribution_hosts must be a collection of host rules, not a single string")
    secret = attribution_secret.encode() if isinstance(attribution_secret, str) else attribution_secret
    if secret is not None and (not isinstance(secret, bytes) or len(secret) < 16):
        raise ValueError("attribution_secret must be at least 16 bytes (e.g. secrets.token_bytes(32))")
    if max_body_bytes < 1024 or max_event_bytes < 1024:
        raise ValueError("max_body_bytes and max_event_bytes must be >= 1024")
    tracer = trace.get_tracer("otel_costs.httpx", tracer_provider=tracer_provider)
    config = _Config(
        tracer=tracer,
        llm_hosts=_HostRules(llm_hosts),
        attribution_hosts=_HostRules(dict.fromkeys(attribution_hosts, True)),
        attribution_secret=secret,
        strip_attribution_baggage=strip_attribution_baggage,
        defer_to_sdk_spans=defer_to_sdk_spans,
        http_spans=http_spans,
        max_body_bytes=max_body_bytes,
        max_event_bytes=max_event_bytes,
        budgets=budgets,
        blind_sampler=type(tracer) is SdkTracer and _ignores_attributes(tracer.sampler),
    )
    global _CONFIG
    with _LOCK:
        _uninstall_locked()
        for name, instrumentor_cls in (
            ("httpx", HTTPXClientInstrumentor),
            ("httpx2", HTTPX2ClientInstrumentor),
        ):
            if importlib.util.find_spec(name) is None:
                continue
            _INSTALLED.append(_install(importlib.import_module(name), instrumentor_cls(), tracer_provider))
        if strip_attribution_baggage and not isinstance(propagate.get_global_textmap(), _AttributionFilter):
            propagate.set_global_textmap(_AttributionFilter(propagate.get_global_textmap()))
        _CONFIG = config


#: The SDK's samplers that decide without reading span attributes (ParentBased: if its delegates do).
#: Looked up by name: the private ``_AlwaysOn``... classes may not exist in every SDK release.
_BLIND_SAMPLERS: Final = tuple(
    kind
    for kind in (
        getattr(sampling, name, None)
        for name in ("StaticSampler", "TraceIdRatioBased", "_AlwaysOn", "_AlwaysOff")
    )
    if isinstance(kind, type)
)
_PARENT_BASED: Final = tuple(
    kind
    for kind in (
        getattr(sampling, name, None)
        for name in (
            "ParentBased",
            "ParentBasedTraceIdRatio",
            "_ParentBasedAlwaysOn",
            "_ParentBasedAlwaysOff",
        )
    )
    if isinstance(kind, type)
)


def _ignores_attributes(sampler: object) -> bool:
    """Whether ``sampler`` is one of the SDK's samplers that never read a new span's attributes.

    Only exact SDK types count (a subclass may read them); ``ParentBased`` counts when all five of
    its delegates do (read from its private fields; a missing field counts as "may read").
    """
    kind = type(sampler)
    if kind in _BLIND_SAMPLERS:
        return True
    if kind in _PARENT_BASED:
        delegates = (
            "_root",
            "_remote_parent_sampled",
            "_remote_parent_not_sampled",
            "_local_parent_sampled",
            "_local_parent_not_sampled",
        )
        return all(
            hasattr(sampler, name) and _ignores_attributes(getattr(sampler, name)) for name in delegates
        )
    return False


def uninstrument_httpx() -> None:
    """Undo ``instrument_httpx``: remove the wrappers and turn off the instrumentation it turned on."""
    with _LOCK:
        _uninstall_locked()


def _install(
    module: Any, instrumentor: BaseInstrumentor, tracer_provider: TracerProvider | None
) -> _Installation:
    # The instrumentation goes on first, so that our wrapper is outside its HTTP span: the
    # LLM span is the parent of the HTTP span and can outlive it (the body is read later).
    ours: BaseInstrumentor | None = None
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=tracer_provider)
        ours = instrumentor
    sync_original = module.HTTPTransport.__dict__["handle_request"]
    async_original = module.AsyncHTTPTransport.__dict__["handle_async_request"]
    # For a one-span LLM call (http_spans=False) the instrumentation's wrapper would only see its
    # suppression and call the method it wraps: call that method directly instead (one wrapper
    # call, one context value and one context attach fewer). None: not the instrumentation's
    # wrapper (another layer sits between), so go through it with the suppression as before.
    sync_direct = _instrumentation_target(sync_original, type(instrumentor)._handle_request_wrapper)
    async_direct = _instrumentation_target(async_original, type(instrumentor)._handle_async_request_wrapper)
    sync_stream = type("LLMCaptureSyncStream", (_SyncStream, module.SyncByteStream), {})
    async_stream = type("LLMCaptureAsyncStream", (_AsyncStream, module.AsyncByteStream), {})

    def handle_request(self: Any, request: Any) -> Any:
        config = _CONFIG
        if config is None:
            return sync_original.__get__(self, type(self))(request)
        call, ctx = _prepare(config, request, sync_direct is not None)
        if ctx is None:
            if call is None:
                return sync_original.__get__(self, type(self))(request)
            try:  # a one-span LLM call: trace context injected, nothing to attach
                if config.budgets is not None:
                    # Before any byte leaves: a denial raises from here (and ends the span as an error).
                    _reserved(call, config.budgets.before_call(**call.estimate))
                response = sync_direct(self, request)  # type: ignore[misc]
            except BaseException as exc:
                call.finish("error", exc)
                raise
            _wrap(call, response, sync_stream)
            return response
        token = otel_context.attach(ctx)
        try:
            if call is not None and config.budgets is not None:
                _reserved(call, config.budgets.before_call(**call.estimate))
            response = sync_original.__get__(self, type(self))(request)
        except BaseException as exc:
            if call is not None:
                call.finish("error", exc)
            raise
        finally:
            otel_context.detach(token)
        if call is not None:
            _wrap(call, response, sync_stream)
        return response

    async def handle_async_request(self: Any, request: Any) -> Any:
        config = _CONFIG
        if config is None:
            return await async_original.__get__(self, type(self))(request)
        call, ctx = _prepare(config, request, async_direct is not None)
        if ctx is None:
            if call is None:
                return await async_original.__get__(self, type(self))(request)
            try:
                if config.budgets is not None:
                    _reserved(call, await config.budgets.before_call_async(**call.estimate))
                response = await async_direct(self, request)  # type: ignore[misc]
            except BaseException as exc:
                call.finish("error", exc)
                raise
            _wrap(call, response, async_stream)
            return response
        token = otel_context.attach(ctx)
        try:
            if call is not None and config.budgets is not None:
                _reserved(call, await config.budgets.before_call_async(**call.estimate))
            response = await async_original.__get__(self, type(self))(request)
        except BaseException as exc:
            if call is not None:
                call.finish("error", exc)
            raise
        finally:
            otel_context.detach(token)
        if call is not None:
            _wrap(call, response, async_stream)
        return response

    module.HTTPTransport.handle_request = handle_request
    module.AsyncHTTPTransport.handle_async_request = handle_async_request
    return _Installation(module, sync_original, async_original, handle_request, handle_async_request, ours)


def _instrumentation_target(method: Any, wrapper: Any) -> Callable[..., Any] | None:
    """The function the httpx instrumentation's ``wrapper`` wraps in ``method``, else ``None``.

    ``method`` is what the transport class holds: when the instrumentation is on, a wrapt
    ``FunctionWrapper`` whose wrapper is a ``functools.partial`` of the instrumentor's
    ``_handle_request_wrapper``. Anything else (no instrumentation, another library's wrapper in
    between, another wrapt layout) gives ``None``.
    """
    try:
        partial = getattr(method, "_self_wrapper", None)
        target = getattr(method, "__wrapped__", None) if getattr(partial, "func", None) is wrapper else None
    except Exception:  # an exotic proxy: go through it
        return None
    return target if callable(target) else None


def _uninstall_locked() -> None:
    global _CONFIG
    _CONFIG = None
    current = propagate.get_global_textmap()
    if isinstance(current, _AttributionFilter):
        propagate.set_global_textmap(current.inner)
    while _INSTALLED:
        installed = _INSTALLED.pop()
        module = installed.module
        # Only restore what is still ours: a wrapper added on top of ours keeps working (ours
        # passes through while no config is set).
        if module.HTTPTransport.__dict__.get("handle_request") is installed.sync_wrapper:
            module.HTTPTransport.handle_request = installed.sync_original
        if module.AsyncHTTPTransport.__dict__.get("handle_async_request") is installed.async_wrapper:
            module.AsyncHTTPTransport.handle_async_request = installed.async_original
        if installed.instrumentor is not None:
            installed.instrumentor.uninstrument()


# ---------------------------------------------------------------------------------------------
# Per request
# ---------------------------------------------------------------------------------------------


def _prepare(config: _Config, request: Any, direct: bool) -> tuple[_Call | None, Context | None]:
    """Apply the header policy to ``request``; start its LLM span if it is an LLM call.

    Returns the call (or ``None``) and the context to send the request in: ``None`` with no call
    means unchanged; ``None`` with a call (only when ``direct``, the instrumentation's wrapper can
    be skipped) means a one-span call whose trace context is already injected, to be sent past
    the instrumentation with nothing attached. Never raises: telemetry must not break the request.
    """
    call: _Call | None = None
    try:
        url = request.url
        host: str = url.host
        port = url.port or _DEFAULT_PORTS.get(url.scheme)
        current = otel_context.get_current()  # looked up once, passed on
        entries = baggage.get_all(current)
        ours = [key for key in entries if key in _ATTRIBUTION_KEYS] if entries else []
        strip = False
        if config.attribution_hosts.match(host, port) is not _NO_MATCH:
            _add_attribution_headers(
                request.headers, entries, config.attribution_secret, trace.get_current_span(current)
            )
        elif config.strip_attribution_baggage:
            if "baggage" in request.headers:
                _strip_baggage_header(request.headers)
            strip = bool(ours)
        if request.method == "POST" and config.llm_hosts and is_instrumentation_enabled():
            provider = config.llm_hosts.match(host, port)
            if provider is not _NO_MATCH:
                api = api_for_path(url.path)
                if api is not None and not (config.defer_to_sdk_spans and _inside_llm_span(current)):
                    call = _start_call(config, request, api, provider, host, port, current)
        if call is None and not strip:
            return None, None
        ctx = current
        if call is not None:
            ctx = trace.set_span_in_context(call.span, ctx)
        if call is not None and not config.http_spans:
            # The instrumentation is left out for this request: propagate as it would have.
            textmap = propagate.get_global_textmap()
            if isinstance(textmap, _AttributionFilter):
                textmap = textmap.inner  # the keys are left out of this context already
            textmap.inject(request.headers, context=_without(ours, ctx) if strip else ctx)
            if direct:
                return call, None
            # What suppress_http_instrumentation() sets, put in the context attached for the
            # request anyway: one attach instead of two, and no context-manager generator.
            ctx = otel_context.set_value(_SUPPRESS_HTTP_INSTRUMENTATION_KEY, True, ctx)
        elif strip:
            if isinstance(propagate.get_global_textmap(), _AttributionFilter):
                # Spans started below keep the attribution; only the injected header loses it.
                ctx = otel_context.set_value(_STRIP_KEY, True, ctx)
            else:  # someone replaced the global propagator since: strip from the context itself
                ctx = _without(ours, ctx)
        return call, ctx
    except Exception:
        logger.exception("otel_costs: could not prepare the telemetry of an HTTP request")
        if call is not None:
            call.span.end()
        return None, None


def _without(keys: Iterable[str], ctx: Context) -> Context:
    for key in keys:
        ctx = baggage.remove_baggage(key, ctx)
    return ctx


_STRIP_KEY: Final = otel_context.create_key("otel_costs.strip_attribution_baggage")


class _AttributionFilter(TextMapPropagator):
    """Wraps the global propagator: leaves the attribution keys out of injected baggage when the
    context asks for it (a request to a host outside ``attribution_hosts``)."""

    def __init__(self, inner: TextMapPropagator) -> None:
        self.inner = inner

    def inject(
        self, carrier: Any, context: Context | None = None, setter: Setter[Any] = default_setter
    ) -> None:
        if otel_context.get_value(_STRIP_KEY, context):
            entries = baggage.get_all(context)
            context = _without(
                [key for key in entries if key in _ATTRIBUTION_KEYS], context or otel_context.get_current()
            )
        self.inner.inject(carrier, context=context, setter=setter)

    def extract(
        self, carrier: Any, context: Context | None = None, getter: Getter[Any] = default_getter
    ) -> Context:
        return self.inner.extract(carrier, context=context, getter=getter)

    @property
    def fields(self) -> set[str]:
        return self.inner.fields


def _inside_llm_span(ctx: Context) -> bool:
    """Whether the span of ``ctx`` is already an LLM call (e.g. the Anthropic SDK's own span)."""
    span = trace.get_current_span(ctx)
    if not span.is_recording():
        return False
    attributes = getattr(span, "attributes", None)
    operation = attributes.get(conv.GEN_AI_OPERATION_NAME) if isinstance(attributes, Mapping) else None
    return isinstance(operation, str) and operation not in conv.AGGREGATE_OPERATIONS


def _request_fields(request: Any) -> dict[str, Any]:
    """The JSON body of ``request`` if it is in memory and not huge, else ``{}``."""
    try:
        content = request.content
    except Exception:  # a streaming upload: the body is not in memory
        return {}
    if not content or len(content) > _MAX_REQUEST_PARSE_BYTES or content[:1] != b"{":
        return {}
    try:
        body = loads_json(content)
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the stack
        return {}
    return body if isinstance(body, dict) else {}


def _start_call(
    config: _Config, request: Any, api: ApiCall, provider: object, host: str, port: int | None, ctx: Context
) -> _Call:
    body = _request_fields(request)
    model = body.get("model")
    if not isinstance(model, str) or not 0 < len(model) <= _MAX_VALUE_LENGTH:
        model = api.path_model
    provider_name = provider if isinstance(provider, str) else api.provider
    attributes: dict[str, Any] = {
        conv.GEN_AI_OPERATION_NAME: api.operation,
        conv.GEN_AI_PROVIDER_NAME: provider_name,
        conv.SERVER_ADDRESS: host,
    }
    if port is not None:
        attributes[SERVER_PORT] = port
    if model:
        attributes[conv.GEN_AI_REQUEST_MODEL] = model
    if not config.http_spans:
        attributes[HTTP_REQUEST_METHOD] = request.method
        attributes[URL_FULL] = _url_without_query(request.url)
    name = f"{api.operation} {model}" if model else api.operation
    if config.blind_sampler:
        # The sampler does not read attributes: start bare and store the attributes, built and
        # checked here, without the SDK's per-value validation (~11% of the call's overhead).
        span = config.tracer.start_span(name, ctx, kind=SpanKind.CLIENT)
        longest = max([len(value) for value in attributes.values() if type(value) is str])
        _add_attributes(span, attributes, longest)  # type: ignore[arg-type]
    else:
        span = config.tracer.start_span(name, ctx, kind=SpanKind.CLIENT, attributes=attributes)
    no_usage_reason = None
    if api.dialect in (OPENAI_CHAT, OPENAI_COMPLETIONS) and body.get("stream") is True:
        options = body.get("stream_options")
        if not (isinstance(options, dict) and options.get("include_usage") is True):
            no_usage_reason = "streamed without stream_options.include_usage, so the provider sent no usage"
    call = _Call(span, api, config, no_usage_reason)
    if config.budgets is not None:
        max_out = next(
            (v for k in _MAX_OUTPUT_KEYS if type(v := body.get(k)) is int and v >= 0),
            None,
        )
        call.estimate = {
            "model": model or None,
            "provider": provider_name,
            "input_chars": _content_length(request),
            "max_output_tokens": max_out,
        }
    return call


#: Request fields that cap the output tokens, across the OpenAI, Anthropic and Gemini dialects.
_MAX_OUTPUT_KEYS: Final = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def _content_length(request: Any) -> int | None:
    try:
        return len(request.content)
    except Exception:  # a streaming upload: its size is not known up front
        return None


def _reserved(call: _Call, decision: Any) -> None:
    """Name the budget reservation on the LLM span, so the actual cost reconciles it."""
    reservation = getattr(decision, "reservation_id", None)
    if reservation:
        call.span.set_attribute(RESERVATION_ID_ATTRIBUTE, reservation)


def _url_without_query(url: Any) -> str:
    """``url`` without its query, fragment and user info (Gemini API keys travel as ``?key=...``).

    The same text as ``str(url.copy_with(query=None, fragment=None, username=None,
    password=None))`` from the already parsed parts: ``copy_with`` parses the whole URL again,
    which cost more CPU than the rest of the LLM span's set-up.
    """
    # netloc is the normalised host[:port] without user info; an encoded path holds no raw '?'.
    path = url.raw_path.decode("ascii").partition("?")[0]
    return f"{url.scheme}://{url.netloc.decode('ascii')}{path}"


def _wrap(call: _Call, response: Any, stream_cls: type[Any]) -> None:
    try:
        call.on_response(response.status_code, response.headers)
        response.stream = stream_cls(response.stream, call)
    except Exception:
        logger.exception("otel_costs: could not capture an LLM response")
        call.finish("no_body")


class _Call:
    """One LLM call: its span and the capture of its response, ended exactly once."""

    __slots__ = (
        "_once",
        "api",
        "capture",
        "config",
        "estimate",
        "no_usage_reason",
        "pending",
        "span",
        "status",
    )

    def __init__(self, span: trace.Span, api: ApiCall, config: _Config, no_usage_reason: str | None) -> None:
        self.span = span
        #: What a budget check estimates from: model, provider, request size, max output tokens.
        self.estimate: dict[str, Any] = {}
        self.api = api
        self.config = config
        self.no_usage_reason = no_usage_reason
        self.capture: ResponseCapture | None = None
        self.status = 0
        # Chunks read but not parsed yet (at most _BATCH_BYTES): parsing in batches keeps the
        # per-chunk cost to a list append, which matters for streams of many tiny events.
        self.pending: list[bytes] = []
        # finish() runs once: whoever pops this item. list.pop() is atomic, so of two threads, or
        # of finish() and another finish() run by a garbage collection inside it (a stream's
        # __del__), exactly one gets it; cheaper than a re-entrant lock per call.
        self._once = [True]

    def on_response(self, status: int, headers: Any) -> None:
        self.status = status
        self.capture = ResponseCapture(
            self.api.dialect,
            content_type=headers.get("content-type", ""),
            content_encoding=headers.get("content-encoding", ""),
            max_body_bytes=self.config.max_body_bytes,
            max_event_bytes=self.config.max_event_bytes,
        )

    def flush(self) -> None:
        """Parse the pending chunks. Never raises."""
        pending = self.pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        capture = self.capture
        if capture is not None:
            capture.feed(data)  # never raises

    def finish(self, how: str, exc: BaseException | None = None) -> None:
        """End the span. ``how``: eof, closed, error, abandoned or no_body. Never raises."""
        once = self._once
        if not once:  # the common second call (close after eof, then __del__)
            return
        try:
            once.pop()
        except IndexError:  # another thread got here first
            return
        try:
            self.flush()
            self._finish(how, exc)
        except Exception:
            logger.exception("otel_costs: could not finish an LLM-call span")
            self.span.end()
        finally:
            # httpx responses sit in reference cycles, freed only by the garbage collector: holding
            # the ended span and the parser from the response would keep them (some twenty
            # objects per call) alive into the collector's generations, adding collections.
            self.span = trace.INVALID_SPAN
            self.capture = None

    def _finish(self, how: str, exc: BaseException | None) -> None:
        span = self.span
        result = self.capture.close(eof=how == "eof") if self.capture is not None else None
        attributes: dict[str, Any] = {}
        if not self.config.http_spans and self.status:
            attributes[HTTP_RESPONSE_STATUS_CODE] = self.status
        if result is not None:
            if result.response_model:
                attributes[conv.GEN_AI_RESPONSE_MODEL] = result.response_model
            if result.response_id:
                attributes[conv.GEN_AI_RESPONSE_ID] = result.response_id
            if result.usage is not None:
                attributes.update(result.usage.attributes())
        error_type = None
        if exc is not None:
            error_type = type(exc).__qualname__
        elif self.status >= 400:
            error_type = result.error_type if result is not None and result.error_type else str(self.status)
        elif result is not None and result.error_type:
            error_type = result.error_type
        flag = self._flag(how, result, exc)
        if flag is not None:
            attributes[conv.COST_STATUS], attributes[conv.COST_STATUS_REASON] = flag
        if error_type is not None:
            attributes[ERROR_TYPE] = error_type
            span.set_status(Status(StatusCode.ERROR, flag[1] if flag else error_type))
        # Validated here already (str keys; int or str values): stored without the SDK's
        # per-value re-validation where the span and its limits allow, else set_attributes.
        longest = max([len(v) for v in attributes.values() if type(v) is str], default=0)
        _add_attributes(span, attributes, longest)  # type: ignore[arg-type]
        span.end()

    def _flag(
        self, how: str, result: CaptureResult | None, exc: BaseException | None
    ) -> tuple[str, str] | None:
        """``(cost.status, reason)`` when the usage on the span is not the call's whole usage."""
        if result is not None and result.complete:
            return None
        status = self.status
        if 100 <= status < 200 or 300 <= status < 400:
            return None  # an interim or redirect response is not a billed call
        if status == 0:
            name = type(exc).__name__ if exc is not None else "no response"
            return conv.STATUS_UNPRICED, f"the request failed before a response ({name})"
        if exc is not None:
            return (
                conv.STATUS_PARTIAL,
                f"reading the response failed before its usage record ({type(exc).__name__})",
            )
        if how == "closed":
            return conv.STATUS_PARTIAL, "the response was closed before its usage record was read"
        if how == "abandoned":
            return conv.STATUS_PARTIAL, "the response was discarded before its usage record was read"
        if status >= 400:
            kind = f" ({result.error_type})" if result is not None and result.error_type else ""
            return conv.STATUS_UNPRICED, f"HTTP {status}{kind}: the provider reported no usage"
        reason = self.no_usage_reason or (result.problem if result is not None else None) or "no usage"
        if result is not None and result.stream:
            return conv.STATUS_PARTIAL, reason
        return conv.STATUS_UNPRICED, reason


class _SyncStream:
    """Passes the response bytes through unchanged, feeding them to the call's capture."""

    def __init__(self, inner: Any, call: _Call) -> None:
        self._inner = inner
        self._call = call

    def __del__(self) -> None:
        # A response dropped without being read to its end or closed still ends its span.
        call = getattr(self, "_call", None)
        if call is not None:
            call.finish("abandoned")

    def __iter__(self) -> Iterator[bytes]:
        call = self._call
        append = call.pending.append
        size = 0
        try:
            for chunk in self._inner:
                append(chunk)
                size += len(chunk)
                if size >= _BATCH_BYTES:
                    call.flush()
                    size = 0
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            call.finish("error", exc)
            raise
        call.finish("eof")

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._call.finish("closed")


class _AsyncStream:
    """The async twin of ``_SyncStream``."""

    def __init__(self, inner: Any, call: _Call) -> None:
        self._inner = inner
        self._call = call

    def __del__(self) -> None:
        # A response dropped without being read to its end or closed still ends its span.
        call = getattr(self, "_call", None)
        if call is not None:
            call.finish("abandoned")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        call = self._call
        append = call.pending.append
        size = 0
        try:
            async for chunk in self._inner:
                append(chunk)
                size += len(chunk)
                if size >= _BATCH_BYTES:
                    call.flush()
                    size = 0
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            call.finish("error", exc)
            raise
        call.finish("eof")

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._call.finish("closed")


# ---------------------------------------------------------------------------------------------
# Outbound attribution
# ---------------------------------------------------------------------------------------------


def _header_value(value: object) -> str | None:
    """``value`` if it can travel as a plain header value (printable ASCII, <= 256 chars)."""
    if (
        isinstance(value, str)
        and 0 < len(value) <= _MAX_VALUE_LENGTH
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
    _add_attribution_headers(headers, baggage.get_all(context), key, trace.get_current_span(context))
    return headers


def _add_attribution_headers(
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


def _strip_baggage_header(headers: Any) -> None:
    """Remove the attribution entries from the ``baggage`` header(s) of ``headers``."""
    values = headers.get_list("baggage") if hasattr(headers, "get_list") else [headers["baggage"]]
    kept = []
    for value in values:
        for entry in value.split(","):
            key = entry.split("=", 1)[0].strip()
            if entry.strip() and key not in _ATTRIBUTION_KEYS:
                kept.append(entry.strip())
    del headers["baggage"]
    if kept:
        headers["baggage"] = ",".join(kept)


def _sign(secret: bytes, headers: Mapping[str, str], timestamp: int) -> str:
    """``t=<timestamp>,v1=<HMAC-SHA256 hex>`` over the lower-cased contract headers, sorted."""
    lines = ["v1", str(timestamp), *(f"{name}={headers[name]}" for name in sorted(headers))]
    digest = hmac.new(secret, "\n".join(lines).encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


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
        address = _ip(peer) if peer else None
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
    claimed_baggage = {k: v for k, v in incoming.items() if k in _ATTRIBUTION_KEYS}
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
        if key not in _ATTRIBUTION_KEYS:
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
        if isinstance(value, str) and 0 < len(value) <= _MAX_VALUE_LENGTH:
            ctx = baggage.set_baggage(key, value, ctx)
    return ctx


def attribution_rejection(context: Context | None = None) -> str | None:
    """Why ``accept_attribution`` dropped the caller's attribution in ``context``, or ``None``."""
    value = otel_context.get_value(_REJECTION_KEY, context)
    return value if isinstance(value, str) else None
