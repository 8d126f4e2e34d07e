"""Cost of the core pipeline, as ratios measured side by side in one run.

    python benchmarks/bench_pipeline.py [--spans 20000] [--rounds 7]

1. Span start+end on the caller's thread, with vs without ``CostSpanProcessor`` in front of
   the same ``BatchSpanProcessor``, inside a workflow (so attribution baggage is present):
   plain spans, and LLM-call spans carrying token usage (priced on end).
   Targets: <= 1.10x plain, <= 1.25x LLM.
2. ``CostRollupExporter`` throughput (buffer, rebuild trees, annotate, forward) over
   ready-made trace trees, and the bare path it wraps (OTLP protobuf encoding of the same
   spans) for scale. Target: rollup >= 100k spans/s on one core.

Rounds alternate A and B so drift on a shared machine hits both; each figure is the median.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

from opentelemetry import baggage, context, trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from otel_costs import CostRollupExporter, CostSpanProcessor
from otel_costs.testing import fixed_price_book


class NullExporter(SpanExporter):
    """Drops spans: measures the pipeline, not a backend."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


class EncodingExporter(SpanExporter):
    """Encodes to OTLP protobuf and drops the bytes: the work every real exporter does."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        encode_spans(spans).SerializeToString()
        return SpanExportResult.SUCCESS


LLM_ATTRIBUTES = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-5.2",
    "gen_ai.response.model": "gpt-5.2",
    "gen_ai.usage.input_tokens": 1500,
    "gen_ai.usage.output_tokens": 500,
}


def provider_for(with_costs: bool) -> TracerProvider:
    batch = BatchSpanProcessor(NullExporter(), max_queue_size=1_000_000, schedule_delay_millis=60_000)
    provider = TracerProvider()
    provider.add_span_processor(CostSpanProcessor(batch, price_book=fixed_price_book()) if with_costs else batch)
    return provider


def time_spans(provider: TracerProvider, n: int, attributes: dict[str, object] | None) -> float:
    """Seconds of CPU to start and end ``n`` spans inside a workflow's baggage."""
    tracer = provider.get_tracer("bench")
    ctx = context.get_current()
    for key, value in {"workflow.id": "01J0000000000000000000000", "team.id": "t1", "agent.name": "a"}.items():
        ctx = baggage.set_baggage(key, value, ctx)
    token = context.attach(ctx)
    try:
        start = time.process_time()
        for _ in range(n):
            span = tracer.start_span("llm" if attributes else "work", attributes=attributes)  # type: ignore[arg-type]
            span.end()
        return time.process_time() - start
    finally:
        context.detach(token)


def compare(label: str, rounds: int, a: Callable[[], float], b: Callable[[], float]) -> float:
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(rounds):
        ta.append(a())
        tb.append(b())
    ratio = statistics.median(tb) / statistics.median(ta)
    print(f"{label}: without {statistics.median(ta) * 1e6 / N:.2f} us/span, "
          f"with {statistics.median(tb) * 1e6 / N:.2f} us/span, ratio {ratio:.3f}x")
    return ratio


def trace_trees(n_spans: int, fanout: int = 8) -> list[ReadableSpan]:
    """Finished spans of many traces: a workflow root, agents, and LLM calls with costs."""
    provider = TracerProvider()
    exporter = NullExporter()
    collected: list[ReadableSpan] = []

    class Collect(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            collected.extend(spans)
            return SpanExportResult.SUCCESS

    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider.add_span_processor(CostSpanProcessor(SimpleSpanProcessor(Collect()), price_book=fixed_price_book()))
    tracer = provider.get_tracer("bench")
    del exporter
    while len(collected) < n_spans:
        with tracer.start_as_current_span("invoke_workflow w"):
            for _ in range(fanout):
                with tracer.start_as_current_span("invoke_agent a"):
                    for _ in range(fanout):
                        with tracer.start_as_current_span("chat gpt-5.2", attributes=LLM_ATTRIBUTES):  # type: ignore[arg-type]
                            pass
    return collected[:n_spans]


def rollup_seconds(spans: list[ReadableSpan], batch: int = 512) -> float:
    exporter = CostRollupExporter(NullExporter(), linger=3600, max_wait=3600, max_buffered_spans=len(spans) + 1)
    start = time.process_time()
    for i in range(0, len(spans), batch):
        exporter.export(spans[i : i + batch])
    exporter.force_flush()
    elapsed = time.process_time() - start
    exporter.shutdown()
    return elapsed


def encode_seconds(spans: list[ReadableSpan], batch: int = 512) -> float:
    exporter = EncodingExporter()
    start = time.process_time()
    for i in range(0, len(spans), batch):
        exporter.export(spans[i : i + batch])
    return time.process_time() - start


N = 20_000


def main() -> None:
    global N
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    N = args.spans
    plain_without, plain_with = provider_for(False), provider_for(True)
    time_spans(plain_with, 2000, LLM_ATTRIBUTES)  # warm caches (price lookups) before timing
    print(f"span start+end, {N} spans x {args.rounds} rounds")
    plain = compare("plain spans", args.rounds, lambda: time_spans(plain_without, N, None),
                    lambda: time_spans(plain_with, N, None))
    llm = compare("LLM spans  ", args.rounds, lambda: time_spans(plain_without, N, LLM_ATTRIBUTES),
                  lambda: time_spans(plain_with, N, LLM_ATTRIBUTES))
    spans = trace_trees(N)
    rollup_t = statistics.median(rollup_seconds(spans) for _ in range(args.rounds))
    encode_t = statistics.median(encode_seconds(spans) for _ in range(args.rounds))
    print(f"rollup exporter: {len(spans) / rollup_t:,.0f} spans/s; "
          f"bare OTLP encoding of the same spans: {len(spans) / encode_t:,.0f} spans/s; "
          f"rollup costs {rollup_t / encode_t:.2f}x the encoding")
    print(f"targets: plain <= 1.10x ({'ok' if plain <= 1.10 else 'MISSED'}), "
          f"LLM <= 1.25x ({'ok' if llm <= 1.25 else 'MISSED'}), "
          f"rollup >= 100k spans/s ({'ok' if len(spans) / rollup_t >= 100_000 else 'MISSED'})")


if __name__ == "__main__":
    main()
