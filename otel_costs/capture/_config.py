"""The settings of the HTTP capture: what one ``instrument_httpx`` call decided, read per request.

Owns ``Config`` (frozen; ``instrument_httpx`` builds one and swaps it in whole, so a request reads
one consistent set of settings) and ``PreCallBudgets``, what the capture needs of a budget manager.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import trace

from otel_costs.capture._hosts import HostRules


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
class Config:
    """The settings of one ``instrument_httpx`` call."""

    tracer: trace.Tracer
    """Tracer of the LLM-call spans."""
    llm_hosts: HostRules[str | None]
    """Host -> provider name (``None``: from the API path) of the LLM APIs to capture."""
    attribution_hosts: HostRules[bool]
    """Hosts that receive attribution headers and baggage."""
    attribution_secret: bytes | None = field(repr=False)  # never in a log line
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
    """The tracer is the SDK's and its sampler never reads span attributes
    (``_instrument.ignores_attributes``): LLM spans can start bare and get them stored right after."""
