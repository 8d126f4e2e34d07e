"""Cost metrics: the USD counter by low-cardinality attributes and the budget gauges, read back for real."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from decimal import Decimal

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from priced_spans import priced_span, spend

from otel_costs import conventions as conv
from otel_costs.budgets import Budget, BudgetManager
from otel_costs.conventions import COST_METRIC, LIMIT_METRIC, SPENT_METRIC, UTILIZATION_METRIC
from otel_costs.metrics import CostMetrics

USD = 1_000_000_000
CALL = {
    conv.GEN_AI_REQUEST_MODEL: "gpt-4o",
    conv.GEN_AI_PROVIDER_NAME: "openai",
    conv.AGENT_NAME: "coder",
    conv.WORKFLOW_NAME: "triage",
    conv.TEAM_ID: "a",
    conv.USER_ID: "u-123",
    conv.WORKFLOW_ID: "01HZX",
}


def points(reader: InMemoryMetricReader, name: str) -> dict[frozenset[tuple[str, object]], float]:
    """Data points of metric ``name``, keyed by their attribute set."""
    data = reader.get_metrics_data()
    out: dict[frozenset[tuple[str, object]], float] = {}
    if data is None:
        return out
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        out[frozenset((point.attributes or {}).items())] = point.value  # type: ignore[union-attr]
    return out


@pytest.fixture
def metrics_and_reader() -> Iterator[tuple[CostMetrics, InMemoryMetricReader]]:
    """CostMetrics on a MeterProvider read by an InMemoryMetricReader."""
    metric_reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[metric_reader])
    yield CostMetrics(meter_provider=provider), metric_reader
    provider.shutdown()


def test_cost_counter_in_usd_by_low_cardinality_attributes(
    metrics_and_reader: tuple[CostMetrics, InMemoryMetricReader],
) -> None:
    """Costs add up in USD per model/provider/agent/workflow/team, without user or run ids."""
    metrics, reader = metrics_and_reader
    spend(metrics, "call", CALL, 1_500_000)
    spend(metrics, "call", {**CALL, conv.USER_ID: "u-456", conv.WORKFLOW_ID: "01HZY"}, 2_500_000)
    ((attributes, value),) = points(reader, COST_METRIC).items()
    assert value == pytest.approx(0.004)
    assert dict(attributes) == {
        conv.GEN_AI_REQUEST_MODEL: "gpt-4o",
        conv.GEN_AI_PROVIDER_NAME: "openai",
        conv.AGENT_NAME: "coder",
        conv.WORKFLOW_NAME: "triage",
        conv.TEAM_ID: "a",
    }


def test_cost_counter_unit_and_fallbacks(
    metrics_and_reader: tuple[CostMetrics, InMemoryMetricReader],
) -> None:
    """The counter's unit is USD; the deprecated gen_ai.system and the response model fill in when needed."""
    metrics, reader = metrics_and_reader
    spend(metrics, "call", {conv.GEN_AI_SYSTEM: "anthropic", conv.GEN_AI_RESPONSE_MODEL: "claude-x"}, USD)
    data = reader.get_metrics_data()
    assert data is not None
    (metric,) = [
        m for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics if m.name == COST_METRIC
    ]
    assert metric.unit == "USD"
    ((attributes, _),) = points(reader, COST_METRIC).items()
    assert dict(attributes) == {conv.GEN_AI_PROVIDER_NAME: "anthropic", conv.GEN_AI_REQUEST_MODEL: "claude-x"}


@pytest.mark.parametrize("bad", [-5, 2.5, None, True])
def test_invalid_costs_are_logged_not_counted(
    bad: object,
    metrics_and_reader: tuple[CostMetrics, InMemoryMetricReader],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A cost that is not an int >= 0 is logged and not added."""
    metrics, reader = metrics_and_reader
    with caplog.at_level(logging.ERROR):
        spend(metrics, "call", CALL, bad)  # type: ignore[arg-type]
    assert points(reader, COST_METRIC) == {} and "invalid cost_nanos" in caplog.text


@pytest.mark.parametrize("key", [conv.USER_ID, conv.WORKFLOW_ID, conv.AGENT_ID])
def test_high_cardinality_attributes_are_refused(key: str) -> None:
    """Asking for a per-user or per-run attribute on the counter fails at construction."""
    with pytest.raises(ValueError, match="one value per user/run"):
        CostMetrics(meter_provider=MeterProvider(), attributes=(conv.TEAM_ID, key))


def test_manager_counts_each_span_once_and_reports_utilization(
    metrics_and_reader: tuple[CostMetrics, InMemoryMetricReader],
) -> None:
    """Through a BudgetManager, a span's cost is counted once, and gauges show each budget's utilization."""
    metrics, reader = metrics_and_reader
    manager = BudgetManager([Budget("team-daily", Decimal(10), per=("team",))], metrics=metrics)
    spend(manager, "s1", CALL, 4 * USD)
    spend(manager, "s1", CALL, 4 * USD)  # the same span again
    spend(manager, "s2", {**CALL, conv.TEAM_ID: "b"}, USD)
    assert sum(points(reader, COST_METRIC).values()) == pytest.approx(5.0)
    labels_a = frozenset(
        {"budget.name": "team-daily", "budget.window": "day@UTC", "budget.subject": "team.id=a"}.items()
    )
    utilization = points(reader, UTILIZATION_METRIC)
    assert utilization[labels_a] == pytest.approx(0.4) and len(utilization) == 2
    assert points(reader, SPENT_METRIC)[labels_a] == pytest.approx(4.0)
    assert points(reader, LIMIT_METRIC)[labels_a] == pytest.approx(10.0)


def test_gauges_keep_the_fullest_budgets_when_capped() -> None:
    """With more budget counters than max_budget_series, the gauges report the most utilized ones."""
    metric_reader = InMemoryMetricReader()
    metrics = CostMetrics(meter_provider=MeterProvider(metric_readers=[metric_reader]), max_budget_series=2)
    manager = BudgetManager([Budget("team", Decimal(10), per=("team",))], metrics=metrics)
    for team, dollars in (("a", 1), ("b", 9), ("c", 5)):
        spend(manager, team, {conv.TEAM_ID: team}, dollars * USD)
    subjects = {dict(k)["budget.subject"] for k in points(metric_reader, UTILIZATION_METRIC)}
    assert subjects == {"team.id=b", "team.id=c"}


def test_prometheus_exposition() -> None:
    """Through opentelemetry-exporter-prometheus the counter and gauges appear in Prometheus text format."""
    prometheus = pytest.importorskip("opentelemetry.exporter.prometheus")
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[prometheus.PrometheusMetricReader(registry=registry)])
    metrics = CostMetrics(meter_provider=provider)
    manager = BudgetManager([Budget("all", Decimal(10))], metrics=metrics)
    spend(manager, "s", CALL, 2 * USD)
    text = generate_latest(registry).decode()
    assert "gen_ai_client_cost_USD_total{" in text
    assert 'team_id="a"' in text and "user_id" not in text
    assert "otel_costs_budget_utilization_ratio{" in text or "otel_costs_budget_utilization{" in text
    provider.shutdown()


def test_prometheus_scrape_over_http() -> None:
    """A Prometheus scrape of the exporter's HTTP endpoint on loopback returns the cost counter."""
    prometheus = pytest.importorskip("opentelemetry.exporter.prometheus")
    from infra import free_port
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[prometheus.PrometheusMetricReader(registry=registry)])
    spend(CostMetrics(meter_provider=provider), "call", CALL, 3 * USD)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
        thread.join(10)
        provider.shutdown()
    (line,) = [x for x in body.splitlines() if x.startswith("gen_ai_client_cost_USD_total{")]
    assert float(line.rsplit(" ", 1)[1]) == 3.0


def test_cost_metrics_as_a_processor_cost_listener(
    metrics_and_reader: tuple[CostMetrics, InMemoryMetricReader],
) -> None:
    """``listeners=[metrics]`` counts each priced call from the pipeline, no budgets."""
    from otel_costs.testing import InMemoryPipeline

    metrics, reader = metrics_and_reader
    with InMemoryPipeline(listeners=[metrics]) as pipeline:
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-5.2",
            "gen_ai.usage.input_tokens": 1500,
            "gen_ai.usage.output_tokens": 500,
        }
        pipeline.tracer_provider.get_tracer("t").start_span("chat", attributes=attributes).end()
        pipeline.spans()
    ((_attributes, value),) = points(reader, COST_METRIC).items()
    assert value == pytest.approx(0.012)


@pytest.mark.parametrize(
    ("depth", "tier"),
    [(0, "0"), (1, "1"), (2, "2"), (3, ">2"), (40, ">2"), ("2", None), (True, None), (-1, None), ("x", None)],
)
def test_retry_depth_is_a_four_value_tier(
    metrics_and_reader: tuple[CostMetrics, InMemoryMetricReader], depth: object, tier: str | None
) -> None:
    """The counter carries retry.depth as 0, 1, 2 or >2 (bounded series); a non-depth is left off."""
    metrics, reader = metrics_and_reader
    spend(metrics, "call", {**CALL, conv.RETRY_DEPTH: depth}, 1_000)
    ((attributes, _),) = points(reader, COST_METRIC).items()
    assert dict(attributes).get(conv.RETRY_DEPTH) == tier


@pytest.mark.parametrize("key", [conv.DEPLOYMENT_ENVIRONMENT_NAME, conv.DEPLOYMENT_ENVIRONMENT])
def test_environment_comes_from_the_span_resource(
    metrics_and_reader: tuple[CostMetrics, InMemoryMetricReader], key: str
) -> None:
    """The span's resource names the environment (current or older semconv name) on the counter."""
    metrics, reader = metrics_and_reader
    ended = priced_span("call", CALL)
    span = ReadableSpan(
        name=ended.name, context=ended.context, attributes=CALL, resource=Resource.create({key: "prod"})
    )
    metrics.on_span_cost(span, 1_000)
    ((attributes, _),) = points(reader, COST_METRIC).items()
    assert dict(attributes)[conv.DEPLOYMENT_ENVIRONMENT_NAME] == "prod"


def histogram(
    reader: InMemoryMetricReader, name: str
) -> dict[frozenset[tuple[str, object]], tuple[int, float]]:
    """(count, sum) of each data point of histogram ``name``, keyed by its attribute set."""
    data = reader.get_metrics_data()
    out: dict[frozenset[tuple[str, object]], tuple[int, float]] = {}
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        out[frozenset((point.attributes or {}).items())] = (point.count, point.sum)  # type: ignore[union-attr]
    return out


def _run(pipeline: object, team: str, calls: int) -> None:
    """One run of the ``triage`` workflow making ``calls`` priced calls (0.012 USD each)."""
    import otel_costs

    provider = pipeline.tracer_provider  # type: ignore[attr-defined]
    with otel_costs.workflow("triage", team_id=team, tracer_provider=provider):
        for _ in range(calls):
            attributes = {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-5.2",
                "gen_ai.usage.input_tokens": 1500,
                "gen_ai.usage.output_tokens": 500,
            }
            provider.get_tracer("t").start_span("chat gpt-5.2", attributes=attributes).end()


def test_each_workflow_run_is_counted_with_its_exact_cost(
    metrics_and_reader: tuple[CostMetrics, InMemoryMetricReader],
) -> None:
    """Each workflow run adds one to the run counter and its cost.total to the cost-per-run histogram."""
    from otel_costs.testing import InMemoryPipeline

    metrics, reader = metrics_and_reader
    with InMemoryPipeline(listeners=[metrics]) as pipeline:
        _run(pipeline, "a", 1)
        _run(pipeline, "a", 3)
        _run(pipeline, "b", 0)
        totals = sorted(
            int((s.attributes or {}).get(conv.COST_TOTAL_NANOS, 0))
            for s in pipeline.spans()
            if s.name == "invoke_workflow triage"
        )
    assert totals == [0, 12_000_000, 36_000_000]
    runs = {dict(k)[conv.TEAM_ID]: v for k, v in points(reader, conv.WORKFLOW_RUNS_METRIC).items()}
    assert runs == {"a": 2, "b": 1}
    costs = {dict(k)[conv.TEAM_ID]: v for k, v in histogram(reader, conv.WORKFLOW_RUN_COST_METRIC).items()}
    assert costs["a"][0] == 2 and costs["a"][1] == pytest.approx(0.048)
    assert costs["b"] == (1, 0.0)


def test_run_metrics_carry_workflow_team_and_environment_only(
    metrics_and_reader: tuple[CostMetrics, InMemoryMetricReader],
) -> None:
    """A run's labels are its workflow name, team and environment: never its id, user or a model."""
    metrics, reader = metrics_and_reader
    ended = priced_span("invoke_workflow triage", CALL)
    span = ReadableSpan(
        name=ended.name,
        context=ended.context,
        attributes=CALL,
        resource=Resource.create({"deployment.environment.name": "prod"}),
    )
    metrics.on_run_cost(span, 5_000_000)
    ((labels, value),) = points(reader, conv.WORKFLOW_RUNS_METRIC).items()
    assert dict(labels) == {
        conv.WORKFLOW_NAME: "triage",
        conv.TEAM_ID: "a",
        conv.DEPLOYMENT_ENVIRONMENT_NAME: "prod",
    }
    assert value == 1


def test_invalid_run_totals_are_logged_not_counted(
    metrics_and_reader: tuple[CostMetrics, InMemoryMetricReader], caplog: pytest.LogCaptureFixture
) -> None:
    """A negative, bool or float run total is logged and counts no run."""
    metrics, reader = metrics_and_reader
    span = priced_span("invoke_workflow triage", CALL)
    for bad in (-1, True, 1.5):
        metrics.on_run_cost(span, bad)  # type: ignore[arg-type]
    assert points(reader, conv.WORKFLOW_RUNS_METRIC) == {}
    assert caplog.text.count("ignored invalid total_nanos") == 3


def test_a_failing_run_listener_is_logged_and_the_spans_still_go_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run listener that raises is logged; the trace is exported all the same."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from otel_costs.rollup import CostRollupExporter

    class Broken:
        def on_run_cost(self, span: ReadableSpan, total_nanos: int) -> None:
            raise RuntimeError("boom")

    exporter = InMemorySpanExporter()
    rollup = CostRollupExporter(exporter, linger=0.0, run_listeners=[Broken()])
    span = priced_span("invoke_workflow triage", {**CALL, conv.GEN_AI_OPERATION_NAME: "invoke_workflow"})
    rollup.export([span])
    assert rollup.force_flush()
    assert [s.name for s in exporter.get_finished_spans()] == [span.name]
    assert "run listener" in caplog.text and "boom" in caplog.text
    rollup.shutdown()


def test_a_run_listener_without_on_run_cost_is_refused() -> None:
    """``run_listeners`` objects must have ``on_run_cost``: a mistake is a TypeError at construction."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from otel_costs.rollup import CostRollupExporter

    with pytest.raises(TypeError, match="on_run_cost"):
        CostRollupExporter(InMemorySpanExporter(), run_listeners=[object()])  # type: ignore[list-item]


def test_configure_hands_run_listeners_to_the_rollup_exporter(
    metrics_and_reader: tuple[CostMetrics, InMemoryMetricReader],
) -> None:
    """``configure(listeners=[manager, metrics])`` counts runs on the metrics; the budgets only hear calls."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import otel_costs

    metrics, reader = metrics_and_reader
    manager = BudgetManager([Budget(name="b", limit_usd=1)])
    provider = otel_costs.configure(
        exporter=InMemorySpanExporter(), listeners=[manager, metrics], set_global=False, linger=0.0
    )
    with otel_costs.workflow("triage", team_id="a", tracer_provider=provider):
        pass
    provider.force_flush()
    provider.shutdown()
    assert list(points(reader, conv.WORKFLOW_RUNS_METRIC).values()) == [1]
