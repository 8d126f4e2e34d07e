"""Turning the HTTP capture on and off: ``instrument_httpx`` and ``uninstrument_httpx``.

Owns the instrumentor wiring: ``instrument_httpx`` checks its arguments, builds the ``Config``,
turns on ``opentelemetry-instrumentation-httpx`` (``HTTPXClientInstrumentor`` and
``HTTPX2ClientInstrumentor``) where it is off, and wraps the transport methods it wraps one layer
further out (``_transport.transport_methods``), so that the LLM span is the parent of its HTTP
span and can outlive it; it also wraps the global propagator (``_trust.AttributionFilter``).
``uninstrument_httpx`` undoes exactly what is still ours. See ``docs/http-capture.md``.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry import propagate, trace
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace import sampling
from opentelemetry.trace import TracerProvider

from otel_costs._sdk import capture_probes, instrumentation_target, parent_based_delegates
from otel_costs.capture._config import Config, PreCallBudgets
from otel_costs.capture._hosts import DEFAULT_LLM_HOSTS, HostRules
from otel_costs.capture._transport import activate, transport_methods
from otel_costs.capture._trust import AttributionFilter


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


capture_probes()  # once, at import: see otel_costs._sdk

_LOCK = threading.Lock()
_INSTALLED: list[_Installation] = []


def instrument_httpx(
    *,
    tracer_provider: TracerProvider | None = None,
    llm_hosts: Mapping[str, str | None] = DEFAULT_LLM_HOSTS,
    attribution_hosts: Collection[str] = (),
    attribution_secret: bytes | str | None = None,
    strip_attribution_baggage: bool = True,
    defer_to_sdk_spans: bool = False,
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
    - ``defer_to_sdk_spans``: no LLM span for a request made inside an SDK's or instrumentation's
      own LLM-call span (default ``False``: the capture makes its span there too, and
      ``CostSpanProcessor`` prices the fuller of the two readings once and marks the other
      ``duplicate``; with ``True`` a call whose outer span carries no usage ends unpriced).
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
    config = Config(
        tracer=tracer,
        llm_hosts=HostRules(llm_hosts),
        attribution_hosts=HostRules(dict.fromkeys(attribution_hosts, True)),
        attribution_secret=secret,
        strip_attribution_baggage=strip_attribution_baggage,
        defer_to_sdk_spans=defer_to_sdk_spans,
        http_spans=http_spans,
        max_body_bytes=max_body_bytes,
        max_event_bytes=max_event_bytes,
        budgets=budgets,
        blind_sampler=type(tracer) is SdkTracer and ignores_attributes(tracer.sampler),
    )
    with _LOCK:
        _uninstall_locked()
        for name, instrumentor_cls in (
            ("httpx", HTTPXClientInstrumentor),
            ("httpx2", HTTPX2ClientInstrumentor),
        ):
            if importlib.util.find_spec(name) is None:
                continue
            _INSTALLED.append(_install(importlib.import_module(name), instrumentor_cls(), tracer_provider))
        if strip_attribution_baggage and not isinstance(propagate.get_global_textmap(), AttributionFilter):
            propagate.set_global_textmap(AttributionFilter(propagate.get_global_textmap()))
        activate(config)


#: The SDK's samplers that decide without reading span attributes, by exact type (a subclass may
#: read them): the public classes and the types of the SDK's public sampler constants.
_BLIND_SAMPLERS: Final = frozenset(
    {sampling.StaticSampler, sampling.TraceIdRatioBased, type(sampling.ALWAYS_ON), type(sampling.ALWAYS_OFF)}
)
#: The SDK's parent-based samplers: blind when all five of their delegates are.
_PARENT_BASED: Final = frozenset(
    {
        sampling.ParentBased,
        sampling.ParentBasedTraceIdRatio,
        type(sampling.DEFAULT_ON),
        type(sampling.DEFAULT_OFF),
    }
)


def ignores_attributes(sampler: object) -> bool:
    """Whether ``sampler`` is one of the SDK's samplers that never read a new span's attributes.

    Only exact SDK types count; a ``ParentBased`` counts when all its delegates do (when they
    cannot be read, ``_sdk.parent_based_delegates`` says ``None``: it counts as "may read").
    """
    kind = type(sampler)
    if kind in _BLIND_SAMPLERS:
        return True
    if kind in _PARENT_BASED:
        delegates = parent_based_delegates(sampler)
        return delegates is not None and all(ignores_attributes(delegate) for delegate in delegates)
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
    # What the instrumentation's wrappers wrap, for one-span calls; None: not the
    # instrumentation's wrapper (another layer sits between), so go through it.
    sync_direct = instrumentation_target(sync_original, type(instrumentor), asynchronous=False)
    async_direct = instrumentation_target(async_original, type(instrumentor), asynchronous=True)
    handle_request, handle_async_request = transport_methods(
        module, sync_original, async_original, sync_direct, async_direct
    )
    module.HTTPTransport.handle_request = handle_request
    module.AsyncHTTPTransport.handle_async_request = handle_async_request
    return _Installation(module, sync_original, async_original, handle_request, handle_async_request, ours)


def _uninstall_locked() -> None:
    activate(None)
    current = propagate.get_global_textmap()
    if isinstance(current, AttributionFilter):
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
