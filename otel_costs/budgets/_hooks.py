"""What the budget manager reads from a call and writes on its span: the two ends of the spend path.

Before a call (the HTTP capture's ``before_call``): an upper estimate of its cost from the request
(``estimate_nanos``). After it (``on_span_cost``): the ended span's key and reservation id, and a
copy of the span carrying one ``budget.threshold_crossed`` event per threshold its cost crossed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from opentelemetry.sdk.trace import Event, ReadableSpan

from otel_costs._money import to_nanos
from otel_costs.budgets._alerts import BudgetAlert
from otel_costs.budgets._config import Budget
from otel_costs.conventions import (
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    RESERVATION_ID_ATTRIBUTE,
    THRESHOLD_EVENT,
)

logger = logging.getLogger("otel_costs.budgets")


class RateTierLike(Protocol):
    """The rates that apply to one call (``_pricing.RateTier`` has these), USD per 1M tokens."""

    @property
    def input(self) -> Decimal: ...
    @property
    def output(self) -> Decimal: ...


class ModelRatesLike(Protocol):
    """Per-1M-token USD rates of a model (``_pricing.ModelRates`` has these)."""

    @property
    def per_request(self) -> Decimal: ...
    def for_input_tokens(self, input_tokens: int) -> RateTierLike: ...


class RateLookup(Protocol):
    """Finds a model's rates (``_pricing.PriceBook`` is one)."""

    def model_prices(
        self, model: str, provider: str | None = None, *, at: datetime | None = None
    ) -> ModelRatesLike | None: ...


#: Picks a cheaper model for a throttled call: (current model or None, throttling budget) -> model or None.
DowngradeHook = Callable[[str | None, Budget], str | None]


def call_attributes(
    attributes: Mapping[str, object], model: str | None, provider: str | None
) -> dict[str, object]:
    """A call's attributes for the budget check: ``attributes`` plus the request's model and provider."""
    merged = dict(attributes)
    if model is not None:
        merged.setdefault(GEN_AI_REQUEST_MODEL, model)
    if provider is not None:
        merged.setdefault(GEN_AI_PROVIDER_NAME, provider)
    return merged


class Estimator:
    """Upper estimates of calls' costs from their requests (see ``BudgetManager.estimate_nanos``)."""

    __slots__ = ("_default_output", "_rates", "_unpriced")

    def __init__(self, rates: RateLookup | None, default_output_tokens: int, unpriced_nanos: int) -> None:
        self._rates = rates
        self._default_output = default_output_tokens
        self._unpriced = unpriced_nanos

    def nanos(
        self,
        model: str | None,
        provider: str | None,
        input_chars: int | None,
        input_tokens: int | None,
        max_output_tokens: int | None,
    ) -> int:
        """The estimate, nano-USD; the unpriced estimate for a model without rates. Never raises."""
        try:
            if model is None or self._rates is None:
                return self._unpriced
            found = self._rates.model_prices(model, provider=provider)
            if found is None:
                return self._unpriced
            tokens_in = input_tokens if input_tokens is not None else math.ceil((input_chars or 0) / 4)
            tokens_out = max_output_tokens if max_output_tokens is not None else self._default_output
            tokens_in, tokens_out = max(0, tokens_in), max(0, tokens_out)
            tier = found.for_input_tokens(tokens_in)
            usd = (tokens_in * tier.input + tokens_out * tier.output) / 1_000_000 + found.per_request
            return max(0, to_nanos(usd))
        except Exception:
            logger.exception("budget estimate failed for model %r; using the unpriced estimate", model)
            return self._unpriced


def downgrade(
    attributes: Mapping[str, object], throttling: Sequence[Budget], hook: DowngradeHook | None
) -> str | None:
    """The cheaper model for a throttled call: the first budget's ``downgrade_to`` or hook choice, if any."""
    current = attributes.get(GEN_AI_REQUEST_MODEL)
    model = current if isinstance(current, str) else None
    for budget in throttling:
        choice = budget.downgrade_to
        if choice is None and hook is not None:
            try:
                choice = hook(model, budget)
            except Exception:
                logger.exception("budget downgrade hook failed; keeping the model")
        if choice is not None and choice != model:
            return choice
    return None


def span_key(span: ReadableSpan) -> str:
    """The key a span's cost is committed under, exactly once: trace id + span id in hex."""
    context = span.context
    if context is not None and context.is_valid:
        return f"{context.trace_id:032x}{context.span_id:016x}"
    return f"{span.name}@{span.start_time}-{span.end_time}"


def span_reservation(attributes: Mapping[str, object]) -> str | None:
    """The reservation id the HTTP capture put on the span (``RESERVATION_ID_ATTRIBUTE``), if any."""
    rid = attributes.get(RESERVATION_ID_ATTRIBUTE)
    return rid if isinstance(rid, str) and rid else None


def with_threshold_events(span: ReadableSpan, alerts: Sequence[BudgetAlert]) -> ReadableSpan:
    """A copy of the ended ``span`` with one ``budget.threshold_crossed`` event per alert, at its end time."""
    # The one span-copy helper; imported here, as importing otel_costs.budgets loads no pipeline.
    from otel_costs.pipeline._spans import with_events

    events = [Event(THRESHOLD_EVENT, alert.event_attributes(), span.end_time) for alert in alerts]
    return with_events(span, events)
