"""Budgets wired into the cost pipeline: spend recorded from ended spans, events exported, sampling."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import otel_costs
from otel_costs import conventions as conv
from otel_costs.testing import InMemoryPipeline, fixed_price_book

LlmCallFn = Callable[..., None]


def team_budget(limit: str) -> otel_costs.BudgetManager:
    """A daily budget per team, in memory."""
    return otel_costs.BudgetManager([otel_costs.Budget("team-daily", Decimal(limit), per=("team",))])


def test_spend_is_recorded_once_per_span_and_threshold_events_are_exported(llm_call: LlmCallFn) -> None:
    """The span that crosses a threshold is exported with its budget event; spend is the exact sum."""
    manager = team_budget("0.02")
    with InMemoryPipeline(listeners=[manager]) as pipeline:
        tp = pipeline.tracer_provider
        with otel_costs.workflow("w", team_id="t1", tracer_provider=tp):
            llm_call(tp, "gpt-5.2", 1500, 500)  # $0.012: 60% of the limit
            llm_call(tp, "gpt-5.2", 2000, 800, **{"gen_ai.request.model": "gpt-5.2", "call": 2})  # +$0.018
        spans = {(s.name, (s.attributes or {}).get("call")): s for s in pipeline.spans()}
    first, second = spans[("chat gpt-5.2", None)], spans[("chat gpt-5.2", 2)]
    assert [e.name for e in first.events] == []
    crossed = [e for e in second.events if e.name == "budget.threshold_crossed"]
    assert crossed, [e.name for e in second.events]
    (status,) = manager.usage({conv.TEAM_ID: "t1"})
    assert status.spent_nanos == 30_000_000
    manager.close()


def test_aggregate_spans_are_not_recorded_as_spend(llm_call: LlmCallFn) -> None:
    """Only billable calls count: agent and workflow spans carrying aggregate usage are not spend."""
    manager = team_budget("10")
    with InMemoryPipeline(listeners=[manager]) as pipeline:
        tp = pipeline.tracer_provider
        with (
            otel_costs.workflow("w", team_id="t1", tracer_provider=tp),
            otel_costs.agent("a", tracer_provider=tp) as scope,
        ):
            scope.span.set_attributes({"gen_ai.usage.input_tokens": 10_000, "gen_ai.usage.output_tokens": 10})
            llm_call(tp, "gpt-5.2", 1500, 500)
        pipeline.spans()
    (status,) = manager.usage({conv.TEAM_ID: "t1"})
    assert status.spent_nanos == 12_000_000
    manager.close()


class Nothing(SpanExporter):
    """Counts what reaches the backend."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: object) -> SpanExportResult:
        self.exported += len(spans)  # type: ignore[arg-type]
        return SpanExportResult.SUCCESS


def test_configure_with_a_budget_listener_counts_llm_calls_the_sampler_drops(
    llm_call: LlmCallFn, tmp_path: Path
) -> None:
    """With a sampler that drops everything, LLM calls are still recorded for budgets but not exported."""
    manager = team_budget("10")
    backend = Nothing()
    provider = otel_costs.configure(
        set_global=False,
        price_book=fixed_price_book(),
        exporter=backend,
        sampler=ALWAYS_OFF,
        listeners=[manager],
    )
    with otel_costs.workflow("w", team_id="t1", tracer_provider=provider):
        llm_call(provider, "gpt-5.2", 1500, 500)
    provider.shutdown()
    (status,) = manager.usage({conv.TEAM_ID: "t1"})
    assert status.spent_nanos == 12_000_000
    assert backend.exported == 0
    manager.close()
