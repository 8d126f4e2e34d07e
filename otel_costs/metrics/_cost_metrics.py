"""Cost metrics through the OpenTelemetry metrics API: a cost counter, workflow-run metrics and
budget-utilization gauges.

They go wherever the application's ``MeterProvider`` sends metrics: OTLP, Prometheus
(``opentelemetry-exporter-prometheus``), or an ``InMemoryMetricReader`` in tests.

The counter carries low-cardinality attributes only (model, provider, agent name, workflow
name, team): never a user id or a workflow *run* id, which would create one time series per
user or run and overwhelm a metrics backend. Per-user spend belongs in traces and budgets.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Protocol

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.sdk.trace import ReadableSpan

from otel_costs._money import nanos_to_usd
from otel_costs.conventions import (
    AGENT_ID,
    AGENT_NAME,
    BUDGET_NAME,
    BUDGET_SUBJECT,
    BUDGET_WINDOW,
    COST_METRIC,
    DEPLOYMENT_ENVIRONMENT,
    DEPLOYMENT_ENVIRONMENT_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_SYSTEM,
    LIMIT_METRIC,
    RETRY_DEPTH,
    SPENT_METRIC,
    TEAM_ID,
    USER_ID,
    UTILIZATION_METRIC,
    WORKFLOW_ID,
    WORKFLOW_NAME,
    WORKFLOW_RUN_COST_METRIC,
    WORKFLOW_RUNS_METRIC,
    retry_depth_tier,
)

logger = logging.getLogger(__name__)


#: Attributes the cost counter copies from a span (when present). ``retry.depth`` is put on it as
#: a tier (``0``, ``1``, ``2``, ``>2``: four values at most), and ``deployment.environment.name``
#: is read from the span's resource (or the older ``deployment.environment``).
COST_METRIC_ATTRIBUTES: Final = (
    GEN_AI_REQUEST_MODEL,
    GEN_AI_PROVIDER_NAME,
    AGENT_NAME,
    WORKFLOW_NAME,
    TEAM_ID,
    RETRY_DEPTH,
    DEPLOYMENT_ENVIRONMENT_NAME,
)
#: Attributes refused on the counter: one series per user, run or agent instance.
HIGH_CARDINALITY_ATTRIBUTES: Final = frozenset({USER_ID, WORKFLOW_ID, AGENT_ID})
#: Of the counter's attributes, those the run metrics carry: a run has no single model or agent.
RUN_METRIC_ATTRIBUTES: Final = frozenset({WORKFLOW_NAME, TEAM_ID, DEPLOYMENT_ENVIRONMENT_NAME})
#: Bucket bounds of the cost-per-run histogram, USD: runs cost from a fraction of a cent to
#: dollars, and the SDK's default bounds (0 to 10,000) would put nearly all of them in one bucket.
RUN_COST_BUCKETS_USD: Final = (
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 100.0,
)  # fmt: skip
#: Longest attribute value put on the counter; longer values are cut (bounded series size).
_MAX_VALUE_LEN: Final = 128


class BudgetUsageView(Protocol):
    """What a utilization gauge reads of one budget counter (``BudgetStatus`` has these)."""

    @property
    def budget(self) -> str: ...
    @property
    def window(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def spent_nanos(self) -> int: ...
    @property
    def limit_nanos(self) -> int: ...


class BudgetSource(Protocol):
    """Something with budget counters to observe (``BudgetManager``)."""

    def snapshot(self) -> Sequence[BudgetUsageView]:
        """The latest known usage of every tracked counter; must not block on I/O."""


class CostMetrics:
    """The cost counter, the workflow-run metrics and the budget gauges on one meter.

    A ``CostListener`` (``on_span_cost``: each priced call onto the cost counter) and a
    ``RunListener`` (``on_run_cost``: each workflow run onto the run counter and the cost-per-run
    histogram); ``configure(listeners=[metrics])`` wires both.

    Example::

        metrics = CostMetrics()                      # global MeterProvider
        otel_costs.configure(listeners=[metrics])
        # ... or with budgets: BudgetManager(budgets, metrics=metrics)
    """

    def __init__(
        self,
        *,
        meter_provider: MeterProvider | None = None,
        attributes: Sequence[str] = COST_METRIC_ATTRIBUTES,
        max_budget_series: int = 1000,
    ) -> None:
        refused = sorted(HIGH_CARDINALITY_ATTRIBUTES.intersection(attributes))
        if refused:
            raise ValueError(
                f"cost metric attributes {refused} have one value per user/run: drop them "
                "(per-user spend is in traces and budgets, not metrics)"
            )
        if max_budget_series < 1:
            raise ValueError(f"max_budget_series must be >= 1, got {max_budget_series!r}")
        provider = meter_provider or metrics.get_meter_provider()
        meter = provider.get_meter("otel_costs")
        self._attributes = tuple(attributes)
        self._max_series = max_budget_series
        self._sources: list[BudgetSource] = []
        self._lock = threading.Lock()
        self._cost = meter.create_counter(
            COST_METRIC,
            unit="USD",
            description="Cost of LLM calls in US dollars, by model, provider, agent, team",
        )
        self._run_attributes = tuple(key for key in self._attributes if key in RUN_METRIC_ATTRIBUTES)
        self._runs = meter.create_counter(
            WORKFLOW_RUNS_METRIC,
            unit="{run}",
            description="Workflow runs, by workflow name, team and environment",
        )
        self._run_cost = meter.create_histogram(
            WORKFLOW_RUN_COST_METRIC,
            unit="USD",
            description="Cost of each workflow run (its cost.total) in US dollars",
            explicit_bucket_boundaries_advisory=RUN_COST_BUCKETS_USD,
        )
        meter.create_observable_gauge(
            UTILIZATION_METRIC,
            callbacks=[self._observe_utilization],
            unit="1",
            description="Budget spend in the current window divided by its limit (1 = limit reached)",
        )
        meter.create_observable_gauge(
            SPENT_METRIC,
            callbacks=[self._observe_spent],
            unit="USD",
            description="Budget spend in the current window, US dollars",
        )
        meter.create_observable_gauge(
            LIMIT_METRIC, callbacks=[self._observe_limit], unit="USD", description="Budget limit, US dollars"
        )

    def metric_attributes(
        self, attributes: Mapping[str, object], resource: Mapping[str, object] | None = None
    ) -> dict[str, str]:
        """The counter's attributes for a span's attributes (and its resource's): the allow-listed
        keys, as short strings; ``retry.depth`` as its tier."""
        out: dict[str, str] = {}
        for key in self._attributes:
            value = attributes.get(key)
            if key == RETRY_DEPTH:
                tier = retry_depth_tier(value)
                if tier is not None:
                    out[key] = tier
                continue
            if value is None and key == DEPLOYMENT_ENVIRONMENT_NAME and resource is not None:
                value = resource.get(key)
                if value is None:
                    value = resource.get(DEPLOYMENT_ENVIRONMENT)
            if value is None and key == GEN_AI_PROVIDER_NAME:
                value = attributes.get(GEN_AI_SYSTEM)  # the deprecated name, still common
            if value is None and key == GEN_AI_REQUEST_MODEL:
                value = attributes.get(GEN_AI_RESPONSE_MODEL)
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                out[key] = str(value)[:_MAX_VALUE_LEN]
        return out

    def on_span_cost(self, span: ReadableSpan, cost_nanos: int) -> None:
        """The ``CostListener`` hook: add a priced span's cost to the counter (keeps the span). Never raises.

        Example: ``CostSpanProcessor(next_processor, listeners=[metrics])``.
        """
        resource = span.resource.attributes if span.resource is not None else None
        self._count(span.attributes or {}, cost_nanos, resource)

    def on_run_cost(self, span: ReadableSpan, total_nanos: int) -> None:
        """The ``RunListener`` hook: count a workflow run and its cost (``total_nanos``, nano-USD)
        on the run counter and the cost-per-run histogram. Never raises."""
        try:
            if isinstance(total_nanos, bool) or not isinstance(total_nanos, int) or total_nanos < 0:
                logger.error("run metrics: ignored invalid total_nanos %r (want an int >= 0)", total_nanos)
                return
            resource = span.resource.attributes if span.resource is not None else None
            every = self.metric_attributes(span.attributes or {}, resource)
            labels = {key: every[key] for key in self._run_attributes if key in every}
            self._runs.add(1, labels)
            self._run_cost.record(nanos_to_usd(total_nanos), labels)
        except Exception:
            logger.exception("run metrics: recording failed")

    def _count(
        self, attributes: Mapping[str, object], cost_nanos: int, resource: Mapping[str, object] | None = None
    ) -> None:
        """Add one call's cost (nano-USD) to the counter; ``BudgetManager`` calls it too. Never raises."""
        try:
            if isinstance(cost_nanos, bool) or not isinstance(cost_nanos, int) or cost_nanos < 0:
                logger.error("cost metric: ignored invalid cost_nanos %r (want an int >= 0)", cost_nanos)
                return
            self._cost.add(nanos_to_usd(cost_nanos), self.metric_attributes(attributes, resource))
        except Exception:
            logger.exception("cost metric: recording failed")

    def watch(self, source: BudgetSource) -> None:
        """Report ``source``'s budget counters on the gauges (idempotent)."""
        with self._lock:
            if all(s is not source for s in self._sources):
                self._sources.append(source)

    def _views(self) -> list[BudgetUsageView]:
        with self._lock:
            sources = list(self._sources)
        views: list[BudgetUsageView] = []
        for source in sources:
            try:
                views.extend(source.snapshot())
            except Exception:
                logger.exception("budget gauges: reading a snapshot failed")
        if len(views) > self._max_series:
            # Keep the fullest budgets: those are the ones someone needs to see.
            views.sort(key=lambda v: v.spent_nanos / v.limit_nanos if v.limit_nanos else 0.0, reverse=True)
            del views[self._max_series :]
        return views

    @staticmethod
    def _labels(view: BudgetUsageView) -> dict[str, str]:
        return {BUDGET_NAME: view.budget, BUDGET_WINDOW: view.window, BUDGET_SUBJECT: view.subject}

    def _observe_utilization(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(v.spent_nanos / v.limit_nanos if v.limit_nanos else 0.0, self._labels(v))
            for v in self._views()
        ]

    def _observe_spent(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(nanos_to_usd(v.spent_nanos), self._labels(v)) for v in self._views()]

    def _observe_limit(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(nanos_to_usd(v.limit_nanos), self._labels(v)) for v in self._views()]
