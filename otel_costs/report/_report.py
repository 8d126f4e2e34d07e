"""One pass over spans that builds every section of a cost report (or a chargeback).

``build_report`` streams spans once and feeds each model call, exactly once, to the cost table,
the cost per run, the retry tail and the chargeback; the result is a plain JSON-able dict (the
``--format json`` output, and what the HTML view and the terminal renderers draw).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from otel_costs import conventions as conv
from otel_costs.report._aggregate import (
    NOT_A_CALL,
    Chargeback,
    CostTable,
    Period,
    classify,
    figures_dict,
    tokens,
)
from otel_costs.report._runs import CostPerRun, RetryTail
from otel_costs.report._spans import ReadStats, Span
from otel_costs.report._time import Bucketer, iso, zone


@dataclass
class ReportOptions:
    """What a report groups by and over which period."""

    group_by: Sequence[str] = ("team",)
    bucket: str | None = None
    """``day``, ``week``, ``month`` or ``None`` (one bucket)."""
    since: int | None = None
    until: int | None = None
    tz: str = "UTC"
    features: Mapping[str, str] = field(default_factory=dict)
    outlier_multiple: float | None = None
    retry_threshold: int = 2
    sections: frozenset[str] = frozenset({"table", "runs", "retries"})
    chargeback_by: str | None = None
    """Also build the chargeback by this dimension (``team.id``)."""


class ReportBuilder:
    """Feed spans (``add``), then ``result()``: the report as a JSON-able dict."""

    def __init__(self, options: ReportOptions) -> None:
        self.options = options
        self._tz = zone(options.tz)
        bucketer = Bucketer(options.bucket, self._tz) if options.bucket else None
        self.period = Period(options.since, options.until)
        self.table = CostTable(tuple(options.group_by), bucketer)
        sections = options.sections
        self.runs = CostPerRun(options.features, options.outlier_multiple) if "runs" in sections else None
        self.retries = RetryTail(options.retry_threshold) if "retries" in sections else None
        self.chargeback = Chargeback(options.chargeback_by) if options.chargeback_by else None
        self.duplicates = 0
        #: Without --since/--until every span is in the period: only the observed window is kept.
        self._bounded = options.since is not None or options.until is not None

    def add(self, span: Span) -> None:
        """Count one span (anything not a model call inside the period only shapes the retry tail)."""
        period = self.period
        if self._bounded:
            if not period.admits(span.start):
                return
        else:  # every span is in: only the observed window is kept, without a call
            start = span.start
            if period.first is None or start < period.first:
                period.first = start
            if period.last is None or start > period.last:
                period.last = start
        if self.retries is not None:
            self.retries.observe(span)
        state, nanos = classify(span.attributes)
        if state == NOT_A_CALL:
            self.duplicates += span.attributes.get(conv.COST_STATUS) == conv.STATUS_DUPLICATE
            return
        toks = tokens(span.attributes)
        self.table.add(span, state, nanos, toks)
        if self.runs is not None:
            self.runs.add(span, state, nanos)
        if self.retries is not None:
            self.retries.add(span, state, nanos)
        if self.chargeback is not None:
            self.chargeback.add(span, state, nanos, toks)

    def add_all(self, batches: Iterable[Iterable[Span]]) -> ReportBuilder:
        """``add`` every span of ``batches`` (lists of spans, as the readers yield them)."""
        add = self.add
        for batch in batches:
            for span in batch:
                add(span)
        return self

    def result(self, stats: ReadStats | None = None) -> dict[str, Any]:
        """The report: period, rows, total, and the optional sections."""
        opts = self.options
        total = self.table.total()
        out: dict[str, Any] = {
            "period": {
                "since": None if opts.since is None else iso(opts.since, self._tz),
                "until": None if opts.until is None else iso(opts.until, self._tz),
                "timezone": opts.tz,
                "bucket": opts.bucket,
                "first_span": None if self.period.first is None else iso(self.period.first, self._tz),
                "last_span": None if self.period.last is None else iso(self.period.last, self._tz),
            },
            "group_by": list(opts.group_by),
            "rows": self.table.rows(),
            "total": figures_dict(total),
            "duplicate_calls": self.duplicates,
        }
        if self.runs is not None:
            out["cost_per_run"] = self.runs.to_dict(self.period.window_ns())
        if self.retries is not None:
            out["retry_tail"] = self.retries.to_dict()
        if self.chargeback is not None:
            out["chargeback"] = self.chargeback.to_dict()
        if stats is not None:
            out["input"] = {"spans": stats.spans, "skipped": stats.skipped, "problems": list(stats.messages)}
        return out


def build_report(
    batches: Iterable[Iterable[Span]], options: ReportOptions, stats: ReadStats | None = None
) -> dict[str, Any]:
    """The report of the spans in ``batches`` (streamed once) under ``options``."""
    return ReportBuilder(options).add_all(batches).result(stats)
