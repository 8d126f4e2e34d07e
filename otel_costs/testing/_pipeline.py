"""The in-memory cost pipeline and the fixed price table of ``otel_costs.testing``.

``InMemoryPipeline`` runs the real pipeline (pricing, listeners, rollup) over an in-memory
exporter on its own ``TracerProvider``; ``fixed_price_book`` prices a few model names at
``FIXED_PRICES``, never genai-prices, so tests do not move when the price data updates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_costs import conventions as conv
from otel_costs._money import nanos_to_decimal
from otel_costs.cli._report import cost_trees, format_tree
from otel_costs.pipeline._configure import run_listeners
from otel_costs.pipeline._otlp import SpanRecord
from otel_costs.pipeline._processor import CostListener, CostSpanProcessor
from otel_costs.pricing._book import PriceBook
from otel_costs.rollup._exporter import CostRollupExporter

#: USD per 1M tokens for a few model names, fixed so tests do not move when genai-prices
#: updates. The numbers of ``examples/hierarchical_agents.py``.
FIXED_PRICES: Mapping[str, Mapping[str, float]] = {
    "gpt-5.2": {"input": 3.0, "output": 15.0, "cached_input": 0.3},
    "gemini-3-pro": {"input": 2.5, "output": 10.0, "cached_input": 0.25},
    "claude-sonnet-4-5": {"input": 3.0, "output": 15.0, "cached_input": 0.3, "cache_write": 3.75},
}


def fixed_price_book(extra: Mapping[str, Mapping[str, object]] | None = None) -> PriceBook:
    """A ``PriceBook`` with only ``FIXED_PRICES`` (plus ``extra``), never genai-prices: stable in tests."""
    return PriceBook({**FIXED_PRICES, **(extra or {})}, use_genai_prices=False)


class InMemoryPipeline:
    """The whole cost pipeline over an in-memory exporter, on its own ``TracerProvider``.

    ``CostSpanProcessor -> SimpleSpanProcessor -> CostRollupExporter -> InMemorySpanExporter``.
    ``listeners`` (``otel_costs.pipeline.CostListener``, e.g. a ``BudgetManager`` or
    ``CostMetrics``) hear of every priced span, and those with ``on_run_cost`` of every workflow
    run, as with ``configure(listeners=...)``.
    It does not touch the global tracer provider: pass ``pipeline.tracer_provider`` to the
    code under test (``otel_costs.workflow(..., tracer_provider=...)``, instrumentations).
    """

    def __init__(
        self,
        *,
        price_book: PriceBook | None = None,
        listeners: Sequence[CostListener] = (),
        service_name: str = "test",
    ) -> None:
        self.exporter = InMemorySpanExporter()
        self.rollup = CostRollupExporter(self.exporter, linger=0.0, run_listeners=run_listeners(listeners))
        self.processor = CostSpanProcessor(
            SimpleSpanProcessor(self.rollup),
            price_book=price_book if price_book is not None else fixed_price_book(),
            listeners=listeners,
        )
        self.tracer_provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self.tracer_provider.add_span_processor(self.processor)

    def __enter__(self) -> InMemoryPipeline:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.tracer_provider.force_flush()

    def spans(self) -> list[ReadableSpan]:
        """Every finished span so far, costed and rolled up (flushes the pipeline first)."""
        self.tracer_provider.force_flush()
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        """The one finished span called ``name``; ``LookupError`` if there is none or several."""
        found = [s for s in self.spans() if s.name == name]
        if len(found) != 1:
            names = sorted({s.name for s in self.spans()})
            raise LookupError(f"expected one span named {name!r}, found {len(found)}; spans: {names}")
        return found[0]

    def attributes(self, name: str) -> Mapping[str, Any]:
        """The attributes of the span called ``name``."""
        return self.span(name).attributes or {}

    def total(self, name: str) -> Decimal:
        """The exact ``cost.total`` (USD) of the span called ``name``; 0 if nothing below it is billable."""
        return nanos_to_decimal(int(self.attributes(name).get(conv.COST_TOTAL_NANOS, 0)))

    def direct(self, name: str) -> Decimal:
        """The exact ``cost.direct`` (USD) of the span called ``name``."""
        return nanos_to_decimal(int(self.attributes(name).get(conv.COST_DIRECT_NANOS, 0)))

    def tree(self) -> str:
        """Every trace drawn as a cost tree, as ``otel-costs tree`` prints it."""
        records = [_record(s) for s in self.spans()]
        return "\n\n".join(format_tree(roots) for roots in cost_trees(records))

    def clear(self) -> None:
        """Forget the spans exported so far."""
        self.tracer_provider.force_flush()
        self.exporter.clear()

    def shutdown(self) -> None:
        """Shut the provider (and so the pipeline) down."""
        self.tracer_provider.shutdown()


def _record(span: ReadableSpan) -> SpanRecord:
    ctx = span.context
    parent = span.parent
    return SpanRecord(
        trace_id=ctx.trace_id.to_bytes(16, "big") if ctx else b"",
        span_id=ctx.span_id.to_bytes(8, "big") if ctx else b"",
        parent_span_id=parent.span_id.to_bytes(8, "big") if parent else None,
        name=span.name,
        attributes=dict(span.attributes or {}),
        service_name=str(span.resource.attributes.get("service.name", "")) or None,
        start_time_unix_nano=span.start_time or 0,
        end_time_unix_nano=span.end_time or 0,
        remote_parent=bool(parent and parent.is_remote),
    )
