"""Cost per run (per ``workflow.name``, mapped to features) with outliers, and the retry tail.

A *run* is one ``workflow.id``; its cost is the exact sum of its priced calls. Memory is one
small entry per run (and, for the retry tail, one per span inside a retry at depth >= 1), not
per span: months of spans read in the space of their runs.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from otel_costs import conventions as conv
from otel_costs.report._aggregate import UNPRICED, retry_tier, usd
from otel_costs.report._spans import Span

_MONTH_NS: Final = 30 * 86400 * 1_000_000_000
#: A projection needs at least an hour of observed spend (a demo's second scaled to a month means nothing).
_MIN_WINDOW_NS: Final = 3600 * 1_000_000_000
#: Outliers listed per feature, most expensive first (the count is always exact).
MAX_OUTLIERS: Final = 20
#: Traces listed where a step retried more than N times.
MAX_RETRY_TRACES: Final = 50
UNNAMED: Final = "(unnamed workflow)"


class FeaturesError(ValueError):
    """A ``features.yaml`` that cannot be read."""


def load_features(path: str | Path) -> dict[str, str]:
    """``workflow.name -> feature`` from ``features.yaml``.

    Either ``{features: {feature: [workflow names]}}`` or a flat ``{workflow name: feature}``.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise FeaturesError(f"{path}: cannot read features: {exc}") from exc
    if not isinstance(data, dict):
        raise FeaturesError(f"{path}: expected a mapping (features: {{feature: [workflow names]}})")
    mapping: dict[str, str] = {}
    if isinstance(data.get("features"), dict):
        for feature, names in data["features"].items():
            for name in [names] if isinstance(names, str) else names or ():
                mapping[str(name)] = str(feature)
        return mapping
    return {str(k): str(v) for k, v in data.items()}


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of ascending ints (exact: one of the values)."""
    if not sorted_values:
        return 0
    rank = max(math.ceil(q * len(sorted_values)), 1)
    return sorted_values[rank - 1]


@dataclass
class CostPerRun:
    """Runs, mean, p50, p95, max cost and calls per run per feature; monthly projection; outliers."""

    features: Mapping[str, str] = field(default_factory=dict)
    outlier_multiple: float | None = None
    """List runs above this multiple of the median; ``None``: runs above the p99."""

    def __post_init__(self) -> None:
        # Columns, not an object per run: about 130 bytes a run (mostly its workflow.id key).
        self._index: dict[Any, int] = {}
        self._nanos = array("q")
        self._calls = array("q")
        self._unpriced = array("q")
        self._name = array("l")
        self._names: dict[str, int] = {}

    def add(self, span: Span, state: int, nanos: int) -> None:
        """Count one model call on its run (calls without ``workflow.id`` belong to no run)."""
        run_id = span.get(conv.WORKFLOW_ID)
        if run_id is None:
            return
        i = self._index.get(run_id)
        if i is None:
            i = self._index[run_id] = len(self._nanos)
            name = span.get(conv.WORKFLOW_NAME)
            name = UNNAMED if name is None else str(name)
            self._name.append(self._names.setdefault(name, len(self._names)))
            self._nanos.append(0)
            self._calls.append(0)
            self._unpriced.append(0)
        self._nanos[i] += nanos
        self._calls[i] += 1
        self._unpriced[i] += state == UNPRICED

    def to_dict(self, window_ns: int) -> dict[str, Any]:
        """Per feature, most expensive first; ``window_ns`` is the period the projection scales."""
        names = list(self._names)
        run_ids = list(self._index)  # index -> workflow.id (references, not copies)
        nanos, calls, unpriced = self._nanos, self._calls, self._unpriced
        by_feature: dict[str, array[int]] = {}
        for i, name_index in enumerate(self._name):
            name = names[name_index]
            by_feature.setdefault(self.features.get(name, name), array("l")).append(i)
        out: list[dict[str, Any]] = []
        for feature, runs in by_feature.items():
            costs = sorted(nanos[i] for i in runs)
            total = sum(costs)
            p50, p99 = percentile(costs, 0.5), percentile(costs, 0.99)
            limit = p99 if self.outlier_multiple is None else int(p50 * self.outlier_multiple)
            outliers = sorted(
                (i for i in runs if nanos[i] > limit), key=lambda i: (-nanos[i], str(run_ids[i]))
            )
            out.append(
                {
                    "feature": feature,
                    "workflows": sorted({names[self._name[i]] for i in runs}),
                    "runs": len(runs),
                    "cost_nanos": total,
                    "cost_usd": usd(total),
                    "mean_nanos": total // len(runs),
                    "p50_nanos": p50,
                    "p95_nanos": percentile(costs, 0.95),
                    "max_nanos": costs[-1],
                    "calls_per_run": round(sum(calls[i] for i in runs) / len(runs), 2),
                    "unpriced_calls": sum(unpriced[i] for i in runs),
                    "monthly_projection_nanos": (
                        total * _MONTH_NS // window_ns if window_ns >= _MIN_WINDOW_NS else None
                    ),
                    "outlier_threshold_nanos": limit,
                    "outlier_count": len(outliers),
                    "outliers": [
                        {
                            "workflow.id": str(run_ids[i]),
                            "cost_nanos": nanos[i],
                            "cost_usd": usd(nanos[i]),
                            "calls": calls[i],
                        }
                        for i in outliers[:MAX_OUTLIERS]
                    ],
                }
            )
        out.sort(key=lambda f: (-f["cost_nanos"], f["feature"]))
        return {"window_ns": window_ns, "outlier_rule": self._rule(), "features": out}

    def _rule(self) -> str:
        return "above p99" if self.outlier_multiple is None else f"above {self.outlier_multiple}x the median"


class _Step(str):
    """A ``retry.step`` name (told apart from a parent span id in ``RetryTail._inside``)."""

    __slots__ = ()


@dataclass
class RetryTail:
    """Cost and share by ``retry.depth`` tier, the steps with the most retry cost, deep retries."""

    threshold: int = 2
    """List traces where one step's attempts went beyond this many retries."""

    def __post_init__(self) -> None:
        self._tiers: dict[str, list[int]] = {t: [0, 0] for t in conv.RETRY_DEPTH_TIERS}
        #: span id -> its retry.step (a retry scope) or its parent's id, for every span at depth >= 1:
        #: resolves a call's step. Keyed by the 64-bit random span id alone (no tuple per span).
        self._inside: dict[str, _Step | str | None] = {}
        self._retried_calls: list[tuple[str, int, str]] = []
        self._deep: dict[tuple[str, str, str], list[Any]] = {}
        self.deep_count = 0

    def observe(self, span: Span) -> None:
        """Look at any span (retry scopes are not calls): remember retry structure."""
        depth = span.attributes.get(conv.RETRY_DEPTH)
        if type(depth) is not int or depth < 1:
            return
        step = span.attributes.get(conv.RETRY_STEP)
        self._inside[span.span_id] = span.parent_id if step is None else _Step(str(step))
        if step is not None and depth > self.threshold:
            key = (span.trace_id, str(step), str(span.get(conv.AGENT_NAME) or ""))
            entry = self._deep.get(key)
            if entry is None:
                self.deep_count += 1
                if len(self._deep) >= MAX_RETRY_TRACES:
                    return
                self._deep[key] = entry = [depth, span.get(conv.WORKFLOW_ID), span.service]
            entry[0] = max(entry[0], depth)

    def add(self, span: Span, state: int, nanos: int) -> None:
        """Count one model call in its tier."""
        tier = retry_tier(span.attributes.get(conv.RETRY_DEPTH))
        self._tiers[tier][0] += nanos
        self._tiers[tier][1] += 1
        if tier != "0":
            agent = str(span.get(conv.AGENT_NAME) or "(no agent)")
            self._retried_calls.append((span.span_id, nanos, agent))

    def _step_of(self, span_id: str | None) -> str:
        for _ in range(64):  # a bounded walk up the retry scopes
            if span_id is None or span_id not in self._inside:
                break
            found = self._inside[span_id]
            if isinstance(found, _Step):
                return str(found)
            span_id = found
        return "(no retry step)"

    def to_dict(self) -> dict[str, Any]:
        """Tiers with exact shares of the total, top steps by retry cost, and the deep-retry traces."""
        total = sum(t[0] for t in self._tiers.values())
        steps: dict[tuple[str, str], list[int]] = {}
        for span_id, nanos, agent in self._retried_calls:
            row = steps.setdefault((agent, self._step_of(span_id)), [0, 0])
            row[0] += nanos
            row[1] += 1
        top = sorted(steps.items(), key=lambda kv: (-kv[1][0], kv[0]))[:20]
        return {
            "total_nanos": total,
            "tiers": [
                {
                    "retry.depth": tier,
                    "calls": calls,
                    "cost_nanos": nanos,
                    "cost_usd": usd(nanos),
                    "share": nanos / total if total else 0.0,
                }
                for tier, (nanos, calls) in self._tiers.items()
            ],
            "steps": [
                {"agent": a, "step": s, "retry_calls": c, "retry_cost_nanos": n, "retry_cost_usd": usd(n)}
                for (a, s), (n, c) in top
            ],
            "threshold": self.threshold,
            "deep_retry_count": self.deep_count,
            "deep_retries": [
                {"trace_id": t, "step": s, "agent": a, "max_depth": d, "workflow.id": w, "service": svc}
                for (t, s, a), (d, w, svc) in sorted(self._deep.items(), key=lambda kv: -kv[1][0])
            ],
        }
