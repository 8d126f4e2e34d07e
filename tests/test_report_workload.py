"""A realistic workload for the report tests: workflows, agents, retries, run through the real pipeline.

Imported by the report, chargeback, audit and cost-view tests; its own tests check the workload
is what they assume.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan

import otel_costs
from otel_costs import conventions as conv
from otel_costs.pipeline import OtlpJsonFileExporter
from otel_costs.report import add_report_parsers
from otel_costs.testing import InMemoryPipeline

#: 2026-11-03T10:00:00Z, inside the month the chargeback tests bill.
NOV_3: int = 1_793_700_000 * 1_000_000_000
DAY_NS = 86_400 * 1_000_000_000
#: Tokens per summarize run; the last run is the outlier.
SUMMARIZE_INPUT = (1000, 1200, 1100, 1300, 1000, 1250, 1150, 1050, 1200, 30000)


class Flaky(RuntimeError):
    """The error a flaky step raises."""


def llm(tp: trace.TracerProvider, model: str, input_tokens: int, output_tokens: int, **extra: Any) -> None:
    """One chat call span, with the usage attributes an instrumentation writes."""
    provider = (
        "google" if model.startswith("gemini") else "anthropic" if model.startswith("claude") else "openai"
    )
    attributes: dict[str, Any] = {
        conv.GEN_AI_OPERATION_NAME: "chat",
        conv.GEN_AI_PROVIDER_NAME: provider,
        conv.GEN_AI_REQUEST_MODEL: model,
        conv.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
        conv.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
        **extra,
    }
    with tp.get_tracer("tests").start_as_current_span(f"chat {model}", attributes=attributes):
        pass


def run_workload(tp: trace.TracerProvider, *, retries: int = 3) -> None:
    """Ten summarize runs (team alpha), a research run with a step retried ``retries`` times (team
    beta), a call outside any workflow (unattributed) and a call to a model with no price."""
    for i, tokens in enumerate(SUMMARIZE_INPUT):
        with (
            otel_costs.workflow("summarize", team_id="alpha", user_id=f"user{i % 2}", tracer_provider=tp),
            otel_costs.agent("writer", tracer_provider=tp),
        ):
            llm(tp, "gpt-5.2", tokens, 200)
    with (
        otel_costs.workflow("research", team_id="beta", user_id="user9", tracer_provider=tp),
        otel_costs.agent("coordinator", tracer_provider=tp),
    ):
        llm(tp, "gemini-3-pro", 3000, 500)
        with otel_costs.agent("researcher", tracer_provider=tp):
            step = otel_costs.retry("search", max_attempts=retries + 1, retry_on=Flaky, tracer_provider=tp)
            for attempt in step:
                with attempt:
                    llm(tp, "claude-sonnet-4-5", 800, 100)
                    if attempt.depth < retries:
                        raise Flaky("try again")
    llm(tp, "gpt-5.2", 500, 50)  # no workflow: unattributed
    with otel_costs.workflow("summarize", team_id="alpha", user_id="user0", tracer_provider=tp):
        llm(tp, "mystery-model", 10, 10)  # no price: unpriced


def workload_spans(**kwargs: Any) -> list[ReadableSpan]:
    """The finished, costed spans of ``run_workload``."""
    pipeline = InMemoryPipeline(service_name="reports")
    try:
        run_workload(pipeline.tracer_provider, **kwargs)
        return pipeline.spans()
    finally:
        pipeline.shutdown()


def write_otlp(path: Path, spans: Sequence[ReadableSpan], *, batch: int = 7) -> Path:
    """Write ``spans`` as OTLP/JSON lines, ``batch`` spans a line (as an exporter would)."""
    exporter = OtlpJsonFileExporter(path)
    for i in range(0, len(spans), batch):
        exporter.export(spans[i : i + batch])
    exporter.shutdown()
    return path


def shift_times(path: Path, to_ns: int, *, spread_ns: int = 0) -> None:
    """Move the spans of ``path`` to start at ``to_ns``; trace ``k`` moves ``k * spread_ns`` more."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    spans = [
        s for data in lines for rs in data["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]
    ]
    first = min(int(s["startTimeUnixNano"]) for s in spans)
    traces: dict[str, int] = {}
    for s in spans:
        k = traces.setdefault(s["traceId"], len(traces))
        for key in ("startTimeUnixNano", "endTimeUnixNano"):
            s[key] = str(int(s[key]) - first + to_ns + k * spread_ns)
    path.write_text("".join(json.dumps(data) + "\n" for data in lines))


def priced_nanos(spans: Sequence[ReadableSpan], keep: Callable[[Any], bool] = lambda a: True) -> int:
    """The oracle: the sum of ``cost.direct_nanos`` over priced spans (as the pipeline wrote them)."""
    return sum(
        int(s.attributes[conv.COST_DIRECT_NANOS])
        for s in spans
        if s.attributes and s.attributes.get(conv.COST_STATUS) == conv.STATUS_PRICED and keep(s.attributes)
    )


def run_cli(argv: Sequence[str]) -> int:
    """Run ``otel-costs <argv>`` with the report parsers wired as the lead will wire them."""
    import argparse

    parser = argparse.ArgumentParser(prog="otel-costs")
    add_report_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


@pytest.fixture(scope="module")
def spans() -> Iterator[list[ReadableSpan]]:
    """The workload's spans, made once per module."""
    yield workload_spans()


def test_workload_prices_every_call_but_the_mystery_model(spans: list[ReadableSpan]) -> None:
    """Every chat span of the workload is priced except the one to a model with no price."""
    statuses = sorted(
        str((s.attributes or {}).get(conv.COST_STATUS)) for s in spans if s.name.startswith("chat")
    )
    assert statuses.count(conv.STATUS_UNPRICED) == 1
    assert statuses.count(conv.STATUS_PRICED) == len(SUMMARIZE_INPUT) + 1 + 4 + 1


def test_workload_retries_the_search_step_three_times(spans: list[ReadableSpan]) -> None:
    """The research run's search step has attempts at retry.depth 0, 1, 2 and 3."""
    depths = sorted(int((s.attributes or {})[conv.RETRY_DEPTH]) for s in spans if s.name == "retry search")
    assert depths == [0, 1, 2, 3]
