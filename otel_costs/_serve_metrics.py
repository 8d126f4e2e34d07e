"""The self-metrics of ``otel-costs serve``, rendered in the Prometheus text format.

A handful of counters and gauges need no metrics library: a lock, a dict and the
exposition format (``# HELP``, ``# TYPE``, ``name{label="v"} value``) are enough, and the
worker stays free of a Prometheus or OTel-metrics dependency. ``GET /metrics`` on the
worker's HTTP port serves ``ServeMetrics.render()``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

PREFIX: Final = "otel_costs_serve_"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric family the worker exports."""

    name: str
    """Name without the ``otel_costs_serve_`` prefix (counters end in ``_total``)."""
    kind: Literal["counter", "gauge"]
    """Prometheus metric type."""
    help: str
    """The ``# HELP`` line: what is counted, in which unit."""


SPANS_RECEIVED: Final = MetricSpec(
    "spans_received_total", "counter", "Spans accepted from OTLP requests, by protocol (grpc, http)."
)
SPANS_FORWARDED: Final = MetricSpec(
    "spans_forwarded_total", "counter", "Spans the next hop accepted (partial successes excluded)."
)
SPANS_DROPPED: Final = MetricSpec(
    "spans_dropped_total",
    "counter",
    "Spans accepted but never delivered, by reason (forward_failed, rejected_downstream, shutdown).",
)
REQUESTS_REJECTED: Final = MetricSpec(
    "requests_rejected_total",
    "counter",
    "OTLP requests refused, by reason (full, shutting_down, malformed, oversized, unsupported).",
)
TRACES_FLUSHED: Final = MetricSpec(
    "traces_flushed_total",
    "counter",
    "Traces rolled up and queued for forwarding, by reason (root: linger after the root arrived; "
    "max_wait: no root in time, partial; late: spans after their trace went out; shutdown).",
)
FORWARD_REQUESTS: Final = MetricSpec(
    "forward_requests_total",
    "counter",
    "Export calls to the next hop, by outcome (ok, retry, failed).",
)
TRACES_BUFFERED: Final = MetricSpec("traces_buffered", "gauge", "Traces waiting in the rollup window.")
SPANS_BUFFERED: Final = MetricSpec("spans_buffered", "gauge", "Spans waiting in the rollup window.")
SPANS_QUEUED: Final = MetricSpec(
    "spans_queued", "gauge", "Rolled-up spans waiting to be forwarded (including ones being retried)."
)
SPANS_CAPACITY: Final = MetricSpec(
    "spans_capacity", "gauge", "The memory bound: window plus queue; requests past it are refused."
)
INFO: Final = MetricSpec("info", "gauge", "Always 1; the worker label names this worker.")

_COUNTERS: Final = (
    SPANS_RECEIVED,
    SPANS_FORWARDED,
    SPANS_DROPPED,
    REQUESTS_REJECTED,
    TRACES_FLUSHED,
    FORWARD_REQUESTS,
)

Labels = tuple[tuple[str, str], ...]


class ServeMetrics:
    """Thread-safe counters plus gauges read at render time.

    Example::

        metrics = ServeMetrics(worker_id="w1", gauges={SPANS_BUFFERED: lambda: 0})
        metrics.inc(SPANS_RECEIVED, 10, protocol="grpc")
        metrics.value(SPANS_RECEIVED, protocol="grpc")  # -> 10
    """

    def __init__(
        self, *, worker_id: str | None = None, gauges: dict[MetricSpec, Callable[[], int]] | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, Labels], int] = {}
        self._worker_id = worker_id
        self._gauges = dict(gauges or {})

    def inc(self, spec: MetricSpec, amount: int = 1, **labels: str) -> None:
        """Add ``amount`` to the counter ``spec`` with ``labels``."""
        key = (spec.name, tuple(sorted(labels.items())))
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount

    def value(self, spec: MetricSpec, **labels: str) -> int:
        """The current value of a counter series (summed over unnamed labels) or of a gauge."""
        if spec in self._gauges:
            return self._gauges[spec]()
        wanted = set(labels.items())
        with self._lock:
            return sum(v for (name, ls), v in self._values.items() if name == spec.name and wanted <= set(ls))

    def render(self) -> str:
        """Every metric in the Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            values = dict(self._values)
        lines: list[str] = []
        for spec in _COUNTERS:
            _header(lines, spec)
            series = sorted((ls, v) for (name, ls), v in values.items() if name == spec.name)
            if not series:
                lines.append(f"{PREFIX}{spec.name} 0")
            for ls, v in series:
                lines.append(f"{PREFIX}{spec.name}{_labels(ls)} {v}")
        for spec, read in self._gauges.items():
            _header(lines, spec)
            lines.append(f"{PREFIX}{spec.name} {read()}")
        _header(lines, INFO)
        worker = (("worker", self._worker_id),) if self._worker_id else ()
        lines.append(f"{PREFIX}{INFO.name}{_labels(worker)} 1")
        return "\n".join(lines) + "\n"


def _header(lines: list[str], spec: MetricSpec) -> None:
    lines.append(f"# HELP {PREFIX}{spec.name} {spec.help}")
    lines.append(f"# TYPE {PREFIX}{spec.name} {spec.kind}")


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def parse_metrics(text: str) -> dict[str, float]:
    """Read Prometheus text back into ``{"name{labels}": value}`` (tests and benchmarks use it)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out
