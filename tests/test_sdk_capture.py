"""The probes of the capture section of ``otel_costs._sdk`` hold on the installed versions.

Internal by nature: each test reads a probe of another package's private names (the httpx
instrumentation's, wrapt's, the SDK sampler's). A probe that misses makes the capture fall back to
its public (slower) path without a word, so these tests FAIL on a miss: a dependency release
that breaks one is seen, not silently slower.
"""

from __future__ import annotations

from typing import Any

import httpx
import httpx2
import pytest
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor
from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
from opentelemetry.sdk.trace import sampling

from otel_costs import _sdk
from otel_costs._sdk import (
    HAS_SUPPRESS_HTTP_KEY,
    capture_probes,
    instrumentation_target,
    parent_based_delegates,
    suppress_http,
)

INSTRUMENTORS: list[tuple[Any, type[Any]]] = [
    (httpx, HTTPXClientInstrumentor),
    (httpx2, HTTPX2ClientInstrumentor),
]


def suppressed_in(ctx: otel_context.Context) -> bool:
    token = otel_context.attach(ctx)
    try:
        return not is_http_instrumentation_enabled()
    finally:
        otel_context.detach(token)


def test_the_suppress_http_key_probe_holds() -> None:
    """The private suppression key is found, and setting it suppresses the HTTP instrumentations."""
    assert HAS_SUPPRESS_HTTP_KEY, "opentelemetry.context._SUPPRESS_HTTP_INSTRUMENTATION_KEY is gone"
    base = otel_context.Context()
    assert not suppressed_in(base)
    assert suppressed_in(suppress_http(base))


def test_the_public_fallback_of_suppress_http_suppresses_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the private key, ``suppress_http`` gives a suppressed context through the public API."""
    monkeypatch.setattr(_sdk, "HAS_SUPPRESS_HTTP_KEY", False)
    base = otel_context.Context()
    before = otel_context.get_current()
    assert suppressed_in(suppress_http(base))
    assert otel_context.get_current() is before


def test_the_wrapt_probe_holds() -> None:
    """wrapt's FunctionWrapper shows its wrapper as ``_self_wrapper`` and its function as ``__wrapped__``."""
    assert capture_probes().wrapt_fields


@pytest.mark.parametrize(("module", "instrumentor_cls"), INSTRUMENTORS, ids=["httpx", "httpx2"])
def test_the_instrumentor_probe_finds_what_it_wraps(module: Any, instrumentor_cls: type[Any]) -> None:
    """On an instrumented transport the function under the instrumentor's wrapper is found, sync and async."""
    assert capture_probes().instrumentor_wrappers
    instrumentor = instrumentor_cls()
    was_on = instrumentor.is_instrumented_by_opentelemetry
    if not was_on:
        instrumentor.instrument()
    try:
        sync = module.HTTPTransport.__dict__["handle_request"]
        asynchronous = module.AsyncHTTPTransport.__dict__["handle_async_request"]
        assert instrumentation_target(sync, instrumentor_cls, asynchronous=False) is not None
        assert instrumentation_target(asynchronous, instrumentor_cls, asynchronous=True) is not None
    finally:
        if not was_on:
            instrumentor.uninstrument()


def test_the_parent_based_probe_holds() -> None:
    """A ParentBased sampler's five delegates are read, in the order of the SDK's constructor."""
    assert capture_probes().parent_based_delegates
    root = sampling.TraceIdRatioBased(0.5)
    delegates = parent_based_delegates(sampling.ParentBased(root))
    assert delegates is not None and len(delegates) == 5
    assert delegates[0] is root
    assert all(isinstance(delegate, sampling.Sampler) for delegate in delegates)
