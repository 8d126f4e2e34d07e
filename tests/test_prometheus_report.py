"""Reports from metrics: the PromQL of each question, and a real Prometheus scraping an instrumented app.

The PromQL builders (``report._prometheus``, internal) are tested directly: their text is what
docs/reports.md shows.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_report_workload import run_cli, run_workload, write_otlp

from otel_costs.report._prometheus import (
    METRIC,
    RUN_COST_BUCKETS,
    RUNS_METRIC,
    PrometheusError,
    prometheus_chargeback,
    queries,
    query,
)

PROMETHEUS = "/usr/bin/prometheus"
NS = 1_000_000_000


def test_every_question_has_a_query_over_the_period() -> None:
    """Chargeback, cost by team/model/agent/workflow, the retry tail and cost per run each have PromQL
    over the period."""
    found = queries(since=0, until=30 * 86400 * NS)
    assert set(found) == {
        "chargeback", "by_team", "by_model", "by_agent", "by_workflow", "retry_tail", "total",
        "runs", "cost_per_run", "run_cost_p95",
    }  # fmt: skip
    assert all("[2592000s]" in q for q in found.values())
    assert all(METRIC in q for name, q in found.items() if name not in {"runs", "run_cost_p95"})
    assert RUNS_METRIC in found["runs"] and RUNS_METRIC in found["cost_per_run"]
    assert RUN_COST_BUCKETS in found["run_cost_p95"] and found["run_cost_p95"].startswith(
        "histogram_quantile(0.95"
    )
    assert found["chargeback"].startswith("sum by (team_id, gen_ai_request_model)")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_prometheus_is_named_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    """``report --prometheus URL`` with nothing listening ends with a message naming the URL, exit 2."""
    url = f"http://127.0.0.1:{_closed_port()}"
    assert run_cli(["report", "--prometheus", url, "--since", "7d"]) == 2
    err = capsys.readouterr().err
    assert url in err and "cannot reach Prometheus" in err and "Traceback" not in err
    with pytest.raises(PrometheusError):
        query(url, "up", time.time_ns())


@contextlib.contextmanager
def instrumented_app() -> Iterator[tuple[int, list[Any]]]:
    """The workload run through a pipeline whose cost counter is exposed for Prometheus on loopback."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry, start_http_server

    from otel_costs.metrics import CostMetrics
    from otel_costs.testing import InMemoryPipeline

    registry = CollectorRegistry()
    reader = PrometheusMetricReader()
    registry.register(reader._collector)
    meter_provider = MeterProvider(metric_readers=[reader])
    cost_metrics = CostMetrics(meter_provider=meter_provider)
    pipeline = InMemoryPipeline(service_name="reports-metrics", listeners=[cost_metrics])
    run_workload(pipeline.tracer_provider)
    spans = pipeline.spans()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield server.server_address[1], spans
    finally:
        server.shutdown()
        thread.join(timeout=10)
        pipeline.shutdown()
        meter_provider.shutdown()


@contextlib.contextmanager
def prometheus(tmp_path: Path, target_port: int) -> Iterator[str]:
    """Debian's Prometheus on loopback, scraping ``target_port`` every second."""
    port = _closed_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs: [{{job_name: app, static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]}}]\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _poll(check: Any, timeout: float, what: str) -> Any:
    import infra

    return infra.poll_until(check, timeout=timeout, what=what, interval=0.2)


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.skipif(
    not shutil.which(PROMETHEUS) and not os.environ.get("CI"), reason="Debian's prometheus is not installed"
)
def test_promql_chargeback_equals_the_trace_file_chargeback(tmp_path: Path) -> None:
    """A real Prometheus scraping the app's cost metrics gives, by PromQL, the trace file's invoices,
    runs per workflow and mean cost per run."""
    since = time.time_ns() - 300 * NS
    with instrumented_app() as (app_port, spans), prometheus(tmp_path, app_port) as url:
        traces = write_otlp(tmp_path / "t.jsonl", spans)
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert run_cli(["chargeback", str(traces), "--format", "json"]) == 0
        expected = json.loads(out.getvalue())
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert run_cli(["report", str(traces), "--format", "json"]) == 0
        per_run = json.loads(out.getvalue())

        def scraped() -> bool | None:
            try:
                series = query(url, f"sum({METRIC})", time.time_ns())
            except PrometheusError:
                return None  # not up yet
            return True if series and series[0][1] == expected["total"]["cost_nanos"] else None

        _poll(scraped, 120, "Prometheus to scrape the whole cost counter")
        got = prometheus_chargeback(url, since, time.time_ns())
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert run_cli(["report", "--prometheus", url, "--since", "10m", "--format", "json"]) == 0
        answers = json.loads(out.getvalue())
    assert got["total"]["cost_nanos"] == expected["total"]["cost_nanos"]
    want = {
        (inv["tenant"], line["model"]): line["cost_nanos"]
        for inv in expected["invoices"]
        for line in inv["lines"]
        if line["cost_nanos"]
    }
    have = {
        (inv["tenant"], line["model"]): line["cost_nanos"] for inv in got["invoices"] for line in inv["lines"]
    }
    assert {k: v for k, v in have.items() if v} == want
    by_team = {
        row["labels"].get("team_id"): row["cost_nanos"] for row in answers["queries"]["by_team"]["rows"]
    }
    assert by_team == {inv["tenant"]: inv["total"]["cost_nanos"] for inv in expected["invoices"]}
    # Cost per run: the run counter gives the trace report's runs per workflow, and the mean.
    features = {f["feature"]: f for f in per_run["cost_per_run"]["features"]}
    runs = {row["labels"]["workflow_name"]: row["count"] for row in answers["queries"]["runs"]["rows"]}
    assert runs == {name: f["runs"] for name, f in features.items()}
    means = {
        row["labels"]["workflow_name"]: row["cost_nanos"]
        for row in answers["queries"]["cost_per_run"]["rows"]
    }
    assert {
        name: abs(means[name] - f["cost_nanos"] / f["runs"]) <= 1 for name, f in features.items()
    } == dict.fromkeys(features, True)
