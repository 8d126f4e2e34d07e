"""Every private name of another package that otel-costs reads, each behind a probe.

Other packages' private names (the OpenTelemetry SDK's, the httpx instrumentation's, wrapt's)
are read here and nowhere else. Each is probed once, at import: a probe that misses leaves the
public (slower) path in force, and ``tests/test_sdk.py`` fails for it on the versions that
``pyproject.toml`` allows, so a dependency release that breaks one is seen rather than silently
slower.
"""

from __future__ import annotations

# --- OpenTelemetry context and baggage (attribution) -------------------------------------------
#
#
#
#
#

# --- OpenTelemetry SDK spans (pipeline: processor, exporter) -----------------------------------
#
#
#
#
#

# --- opentelemetry-instrumentation-httpx and wrapt (capture) -----------------------------------
#
# Read by otel_costs.capture.
#
# - opentelemetry.context._SUPPRESS_HTTP_INSTRUMENTATION_KEY (probe at import: HAS_SUPPRESS_HTTP_KEY):
#   the context key that suppress_http_instrumentation() sets, set directly in a one-span call's
#   context (one attach). Public fallback: attach the context, enter suppress_http_instrumentation().
# - wrapt FunctionWrapper._self_wrapper / __wrapped__, and HTTPX(2)ClientInstrumentor's
#   _handle_request_wrapper / _handle_async_request_wrapper: which function the instrumentation
#   wraps, so a one-span call skips its wrapper. Fallback: go through the wrapper, suppressed.
# - sampling.ParentBased._root, ._remote_parent_sampled ... (its five delegates): whether a
#   parent-based sampler reads span attributes. Fallback: assume it may (attributes at start).
#
# wrapt, the httpx instrumentation and the SDK are not imported here at import (some 200 modules
# for every user of this module): the last two probes run once, on the first ``capture_probes()``
# (``capture._instrument`` calls it when it is imported), and are cached.
# ``tests/test_sdk_capture.py`` fails when any probe misses.

#: The httpx instrumentors' wrapper functions, sync and async.
_INSTRUMENTOR_WRAPPERS = ("_handle_request_wrapper", "_handle_async_request_wrapper")
#: Where ``sampling.ParentBased`` keeps its delegates.
_PARENT_BASED_DELEGATES = (
    "_root",
    "_remote_parent_sampled",
    "_remote_parent_not_sampled",
    "_local_parent_sampled",
    "_local_parent_not_sampled",
)

import functools as _functools  # noqa: E402
from collections.abc import Callable as _Callable  # noqa: E402
from dataclasses import dataclass as _dataclass  # noqa: E402
from typing import Any as _Any  # noqa: E402
from typing import Final as _Final  # noqa: E402

from opentelemetry import context as _otel_context  # noqa: E402

_SUPPRESS_HTTP_KEY: _Final = getattr(_otel_context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", None)
HAS_SUPPRESS_HTTP_KEY: _Final = isinstance(_SUPPRESS_HTTP_KEY, str)


def suppress_http(ctx: _otel_context.Context) -> _otel_context.Context:
    """``ctx`` with the HTTP instrumentations suppressed, as ``suppress_http_instrumentation()`` sets it."""
    if HAS_SUPPRESS_HTTP_KEY:
        return _otel_context.set_value(_SUPPRESS_HTTP_KEY, True, ctx)  # type: ignore[arg-type]
    from opentelemetry.instrumentation.utils import suppress_http_instrumentation

    token = _otel_context.attach(ctx)
    try:
        with suppress_http_instrumentation():
            return _otel_context.get_current()
    finally:
        _otel_context.detach(token)


@_dataclass(frozen=True)
class CaptureProbes:
    """Which private names of wrapt, the httpx instrumentation and the SDK sampler are as expected."""

    wrapt_fields: bool
    """A wrapt ``FunctionWrapper`` shows its wrapper as ``_self_wrapper``, its function as ``__wrapped__``."""
    instrumentor_wrappers: bool
    """``HTTPXClientInstrumentor`` and ``HTTPX2ClientInstrumentor`` have the functions
    ``_handle_request_wrapper`` and ``_handle_async_request_wrapper``."""
    parent_based_delegates: bool
    """``sampling.ParentBased`` keeps its five delegates in ``_root``, ``_remote_parent_sampled``..."""


@_functools.cache
def capture_probes() -> CaptureProbes:
    """Run this section's probes (once; cached)."""
    from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor
    from opentelemetry.sdk.trace import sampling

    def target(value: object) -> object:
        return value

    def wrapper(tag: object, wrapped: object, instance: object, args: object, kwargs: object) -> object:
        return wrapped

    wrapt_fields = False
    try:
        import wrapt

        partial = _functools.partial(wrapper, None)
        wrapped = wrapt.FunctionWrapper(target, partial)
        wrapt_fields = getattr(wrapped, "_self_wrapper", None) is partial and wrapped.__wrapped__ is target
    except Exception:  # wrapt changed shape: the public path
        wrapt_fields = False
    instrumentor_wrappers = all(
        callable(getattr(cls, name, None))
        for cls in (HTTPXClientInstrumentor, HTTPX2ClientInstrumentor)
        for name in _INSTRUMENTOR_WRAPPERS
    )
    parent_based = sampling.ParentBased(sampling.ALWAYS_ON)
    parent_based_delegates = all(
        isinstance(getattr(parent_based, name, None), sampling.Sampler) for name in _PARENT_BASED_DELEGATES
    )
    return CaptureProbes(wrapt_fields, instrumentor_wrappers, parent_based_delegates)


def instrumentation_target(
    method: object, instrumentor: type, *, asynchronous: bool
) -> _Callable[..., _Any] | None:
    """The function that the httpx instrumentor's wrapper wraps in ``method``, else ``None``.

    ``method`` is what a transport class holds: when the instrumentation is on, a wrapt
    ``FunctionWrapper`` whose wrapper is a ``functools.partial`` of ``instrumentor``'s
    ``_handle_request_wrapper`` (``_handle_async_request_wrapper`` if ``asynchronous``). Anything
    else (no instrumentation, another library's wrapper in between, a probe that missed) gives
    ``None``: go through ``method``.
    """
    probes = capture_probes()
    if not (probes.wrapt_fields and probes.instrumentor_wrappers):
        return None
    wrapper = getattr(instrumentor, _INSTRUMENTOR_WRAPPERS[1 if asynchronous else 0], None)
    try:
        partial = getattr(method, "_self_wrapper", None)
        target = getattr(method, "__wrapped__", None) if getattr(partial, "func", None) is wrapper else None
    except Exception:  # an exotic proxy: go through it
        return None
    return target if callable(target) else None


def parent_based_delegates(sampler: object) -> tuple[object, ...] | None:
    """The five delegates of an SDK ``ParentBased`` sampler, or ``None`` if they cannot be read."""
    if not capture_probes().parent_based_delegates:
        return None
    delegates = tuple(getattr(sampler, name, None) for name in _PARENT_BASED_DELEGATES)
    return None if any(delegate is None for delegate in delegates) else delegates
