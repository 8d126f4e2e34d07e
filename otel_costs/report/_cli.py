"""The ``report``, ``chargeback`` and ``audit`` subcommands: ``add_report_parsers(subparsers)``.

Inputs: OTLP/JSON-lines files and globs (default: the file ``otel_costs.configure()`` writes),
``-`` or a pipe for stdin, or a Jaeger query API (``--jaeger URL --service S``). Bad input is
reported as ``file:line: ...`` on stderr with the count of skipped records, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from typing import Any

from otel_costs.report._audit import AuditOptions, audit_spans, render_audit
from otel_costs.report._jaeger import JaegerError, JaegerSource
from otel_costs.report._prometheus import PrometheusError
from otel_costs.report._render import (
    FORMATS,
    chargeback_csv,
    chargeback_tables,
    render_tables,
    report_csv,
    report_tables,
    to_json,
)
from otel_costs.report._report import ReportOptions, build_report
from otel_costs.report._runs import FeaturesError, load_features
from otel_costs.report._spans import ReadStats, Span, read_files, relaxed_gc, total_size
from otel_costs.report._time import BUCKETS, PeriodError, month_period, parse_instant, zone

#: Inputs above this size get a progress bar on a terminal.
_PROGRESS_BYTES = 8 << 20


class _Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self._shown = total, 0, -1

    def __call__(self, n: int) -> None:
        self.done += n
        percent = min(100 * self.done // self.total, 100)
        if percent != self._shown:
            self._shown = percent
            bar = "#" * (percent // 4)
            print(f"\rreading [{bar:<25}] {percent:3d}% of {self.total >> 20} MB", end="", file=sys.stderr)
            if percent == 100:
                print(file=sys.stderr)


def _default_file() -> tuple[str, str]:
    """The file ``otel_costs.configure()`` writes by default, and the variable that moves it."""
    from otel_costs.pipeline._configure import DEFAULT_FILE, FILE_ENV  # the pipeline: only when needed

    return DEFAULT_FILE, FILE_ENV


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    default_file, file_env = _default_file()
    parser.add_argument(
        "inputs",
        nargs="*",
        help=f"OTLP/JSON-lines files or globs, '-' for stdin (default: ${file_env} or {default_file})",
    )
    parser.add_argument("--jaeger", metavar="URL", help="read spans from a Jaeger query API instead")
    parser.add_argument("--service", help="with --jaeger: the service whose traces to read")
    parser.add_argument("--limit", type=int, default=1000, help="with --jaeger: traces per query window")
    parser.add_argument("--since", help="start (2026-11-01, 2026-11-01T08:00, or 7d/24h ago), inclusive")
    parser.add_argument("--until", help="end, exclusive (same forms as --since)")
    parser.add_argument("--month", help="the calendar month YYYY-MM (instead of --since/--until)")
    parser.add_argument("--tz", default="UTC", help="time zone of dates, buckets and months (IANA name)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on large inputs")


def _period(args: argparse.Namespace) -> tuple[int | None, int | None]:
    tz = zone(args.tz)
    if args.month:
        if args.since or args.until:
            raise PeriodError("give either --month or --since/--until")
        return month_period(args.month, tz)
    since = parse_instant(args.since, tz) if args.since else None
    until = parse_instant(args.until, tz) if args.until else None
    return since, until


def _spans(
    args: argparse.Namespace, stats: ReadStats, since: int | None, until: int | None
) -> Iterator[list[Span]]:
    if args.jaeger:
        source = JaegerSource(args.jaeger, limit=args.limit)
        if not args.service and not getattr(args, "trace", None):
            raise PeriodError("--jaeger needs --service (or, for audit, --trace)")
        if getattr(args, "trace", None):
            return source.trace(args.trace, stats)
        return source.traces(args.service, since, until, stats)
    inputs = list(args.inputs)
    if not inputs:
        default_file, file_env = _default_file()
        inputs = ["-"] if not sys.stdin.isatty() else [os.environ.get(file_env) or default_file]
    progress = None
    if not args.no_progress and sys.stderr.isatty():
        size = total_size(inputs)
        if size > _PROGRESS_BYTES:
            progress = _Progress(size)
    return read_files(inputs, stats, progress)


def _report_problems(stats: ReadStats) -> None:
    for message in stats.messages:
        print(f"otel-costs: {message}", file=sys.stderr)
    if stats.skipped or stats.messages:
        more = len(stats.messages) < stats.skipped
        extra = " (first messages above)" if more else ""
        print(f"otel-costs: {stats.summary()}{extra}", file=sys.stderr)


def _guarded(run: Any) -> Any:
    def command(args: argparse.Namespace) -> int:
        try:
            with relaxed_gc():
                code: int = run(args)
            return code
        except (PeriodError, FeaturesError, JaegerError, PrometheusError, OSError) as exc:
            print(f"otel-costs: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130

    return command


def _group_by(values: list[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for value in values or ["team"]:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return tuple(out)


def _report(args: argparse.Namespace) -> int:
    since, until = _period(args)
    if args.prometheus:
        from otel_costs.report._prometheus import prometheus_report

        print(prometheus_report(args.prometheus, since, until, zone(args.tz), args.format), end="")
        return 0
    options = ReportOptions(
        group_by=_group_by(args.group_by),
        bucket=args.bucket,
        since=since,
        until=until,
        tz=args.tz,
        features=load_features(args.features) if args.features else {},
        outlier_multiple=args.outlier_multiple,
        retry_threshold=args.retry_threshold,
    )
    stats = ReadStats()
    audit_options = AuditOptions() if args.html else None
    batches = _spans(args, stats, since, until)
    if audit_options is not None:
        from otel_costs.report._html import build_page_data, write_html

        data = build_page_data(batches, options, audit_options, stats)
        write_html(args.html, data)
        report = data["report"]
        print(f"otel-costs: wrote {args.html}", file=sys.stderr)
    else:
        report = build_report(batches, options, stats)
    _report_problems(stats)
    if args.format == "json":
        print(to_json(report), end="")
    elif args.format == "csv":
        print(report_csv(report), end="")
    else:
        print(render_tables(report_tables(report), args.format), end="")
    return 0


def _chargeback(args: argparse.Namespace) -> int:
    since, until = _period(args)
    options = ReportOptions(group_by=(), since=since, until=until, tz=args.tz, sections=frozenset(),
                            chargeback_by=args.by)  # fmt: skip
    stats = ReadStats()
    report = build_report(_spans(args, stats, since, until), options, stats)
    _report_problems(stats)
    chargeback = {**report["chargeback"], "period": report["period"], "input": report["input"]}
    if args.format == "json":
        print(to_json(chargeback), end="")
    elif args.format == "csv":
        print(chargeback_csv(chargeback), end="")
    else:
        title = f"chargeback {args.month or ''}".strip()
        print(render_tables(chargeback_tables(chargeback, title), args.format), end="")
    return 0


def _audit(args: argparse.Namespace) -> int:
    since, until = _period(args)
    stats = ReadStats()
    options = AuditOptions(ignore=frozenset(args.ignore or ()), max_trace_spans=args.window)
    result = audit_spans(_spans(args, stats, since, until), options, stats)
    _report_problems(stats)
    print(render_audit(result, "json" if args.format == "json" else "table"), end="")
    return 1 if result["findings_count"] else 0


def add_report_parsers(subparsers: Any) -> None:
    """Register ``otel-costs report``, ``chargeback`` and ``audit`` on an argparse subparsers object."""
    report = subparsers.add_parser("report", help="cost by team, user, workflow, agent, model, day...")
    _add_inputs(report)
    report.add_argument(
        "--group-by",
        "-g",
        action="append",
        help="dimensions, comma-separated or repeated: team, user, workflow, agent, model, provider, "
        "service, retry, environment, or any attribute name (default: team)",
    )
    report.add_argument("--bucket", choices=BUCKETS, help="also split rows by day, week or month")
    report.add_argument("--format", choices=FORMATS, default="table")
    report.add_argument("--features", metavar="YAML", help="features.yaml mapping workflow names to features")
    report.add_argument(
        "--outlier-multiple", type=float, help="outlier runs: above this multiple of the median"
    )
    report.add_argument("--retry-threshold", type=int, default=2, help="list steps retried more than N times")
    report.add_argument("--html", metavar="FILE", help="also write a self-contained HTML cost view")
    report.add_argument("--prometheus", metavar="URL", help="answer from a Prometheus's cost counter instead")
    report.set_defaults(func=_guarded(_report))

    charge = subparsers.add_parser("chargeback", help="one invoice per tenant, lines per model")
    _add_inputs(charge)
    charge.add_argument("--by", default="team.id", help="the tenant dimension (default team.id)")
    charge.add_argument("--format", choices=FORMATS, default="table")
    charge.set_defaults(func=_guarded(_chargeback))

    audit = subparsers.add_parser("audit", help="check attribution is complete; exit 1 on findings")
    _add_inputs(audit)
    audit.add_argument("--trace", help="with --jaeger: audit this one trace id")
    audit.add_argument("--format", choices=("table", "json"), default="table")
    audit.add_argument("--ignore", action="append", help="a finding kind not to report (repeatable)")
    audit.add_argument(
        "--window", type=int, default=200_000, help="spans held while waiting for a trace to complete"
    )
    audit.set_defaults(func=_guarded(_audit))
