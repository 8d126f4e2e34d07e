"""Cost reports over spans: the cost table, chargeback, cost per run, retry tail, the Attribution
Auditor, an HTML cost view, and the same questions answered from Prometheus.

``otel-costs report``, ``chargeback`` and ``audit`` (registered by ``add_report_parsers``) are
built from these; see ``docs/reports.md``.
"""

from otel_costs.report._audit import AuditOptions, assert_attribution_complete, audit_spans
from otel_costs.report._cli import add_report_parsers
from otel_costs.report._jaeger import JaegerSource
from otel_costs.report._report import ReportOptions, build_report
from otel_costs.report._spans import ReadStats, Span, read_files

__all__ = [
    "AuditOptions",
    "JaegerSource",
    "ReadStats",
    "ReportOptions",
    "Span",
    "add_report_parsers",
    "assert_attribution_complete",
    "audit_spans",
    "build_report",
    "read_files",
]

from otel_costs._public import publish as _publish

_publish(globals(), __all__, __name__)
