"""Spans from a Jaeger query API (``/api/traces``), as the reports' ``Span``s.

``JaegerSource(url).traces(service, since, until, stats)`` walks ``[since, until)`` in windows
(``/api/traces?service=...&start=...&end=...&limit=...``, times in µs), halving a window whose
answer is full (``limit`` traces), so memory holds one window's traces. ``trace(id)`` reads one
trace (``/api/traces/{id}``). A Jaeger that is down, answers an error or HTML, or sends spans that
cannot be read is described in ``ReadStats`` with the URL; whatever could be read is reported.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any, Final

from otel_costs.report._spans import SERVICE_NAME, BadRecord, ReadStats, Span, check_numbers

_DEFAULT_LOOKBACK_NS: Final = 7 * 86400 * 1_000_000_000
_WINDOW_NS: Final = 3600 * 1_000_000_000
_MIN_WINDOW_NS: Final = 1_000_000_000
_TYPES: Final = {"string": str, "int64": int, "float64": float, "bool": bool}


class JaegerError(RuntimeError):
    """A Jaeger query that cannot be made at all (bad URL)."""


def _tags(tags: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tag in tags or ():
        convert = _TYPES.get(tag.get("type", "string"))
        value = tag.get("value")
        if convert is int and isinstance(value, str):
            try:
                value = int(value)
            except ValueError as exc:
                raise BadRecord(f"tag {tag.get('key')}: int64 tag holds {value!r:.60}") from exc
        elif convert is float and isinstance(value, str):
            value = float(value)
        out[str(tag["key"])] = value
    return out


def decode_trace(trace: dict[str, Any], where: str, stats: ReadStats) -> list[Span]:
    """The spans of one trace of Jaeger's JSON; spans that cannot be read are counted in ``stats``."""
    processes = {
        pid: {**_tags(p.get("tags")), SERVICE_NAME: p.get("serviceName")}
        for pid, p in (trace.get("processes") or {}).items()
    }
    spans: list[Span] = []
    for raw in trace.get("spans") or ():
        try:
            attributes = _tags(raw.get("tags"))
            check_numbers(attributes)
            parent = None
            for ref in raw.get("references") or ():
                if ref.get("refType") == "CHILD_OF":
                    parent = str(ref["spanID"]).rjust(16, "0")
                    break
            start = int(raw["startTime"]) * 1000
            spans.append(
                Span(
                    str(raw["traceID"]).rjust(32, "0"),
                    str(raw["spanID"]).rjust(16, "0"),
                    parent,
                    str(raw.get("operationName", "")),
                    start,
                    start + int(raw.get("duration", 0)) * 1000,
                    attributes,
                    processes.get(raw.get("processID"), {}),
                    # Jaeger does not keep is_remote: a server span's parent is another process's.
                    parent is not None and attributes.get("span.kind") == "server",
                )
            )
        except (BadRecord, KeyError, TypeError, ValueError, AttributeError) as exc:
            stats.problem(where, f"span skipped: {exc}")
    stats.spans += len(spans)
    return spans


class JaegerSource:
    """Reads traces from the Jaeger query service at ``url`` (e.g. ``http://localhost:16686``)."""

    def __init__(self, url: str, *, limit: int = 1000, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise JaegerError(f"--jaeger needs an http(s) URL such as http://localhost:16686, got {url!r}")
        self.url = url.rstrip("/")
        self.limit = max(int(limit), 1)
        self.timeout = timeout

    def _get(self, url: str, stats: ReadStats) -> list[dict[str, Any]] | None:
        """The ``data`` of one query, or ``None`` (described in ``stats``) when it failed."""
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body = response.read()
                kind = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            stats.problem(url, f"Jaeger answered HTTP {exc.code} {exc.reason}: query skipped")
            return None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            stats.problem(url, f"cannot reach Jaeger ({reason}): query skipped")
            raise _Unreachable from exc
        try:
            data = json.loads(body)
        except ValueError:
            what = (
                "HTML" if b"<html" in body[:512].lower() or "html" in kind else "something that is not JSON"
            )
            stats.problem(url, f"Jaeger answered {what}, not its JSON API (is this the query service, /api?)")
            return None
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            errors = data.get("errors") if isinstance(data, dict) else None
            stats.problem(url, f"not a Jaeger /api/traces answer{f': {errors}' if errors else ''}")
            return None
        traces: list[dict[str, Any]] = data["data"]
        return traces

    def trace(self, trace_id: str, stats: ReadStats) -> Iterator[list[Span]]:
        """The spans of one trace."""
        url = f"{self.url}/api/traces/{urllib.parse.quote(trace_id)}"
        try:
            for trace in self._get(url, stats) or ():
                yield decode_trace(trace, url, stats)
        except _Unreachable:
            return

    def traces(
        self, service: str, since: int | None, until: int | None, stats: ReadStats
    ) -> Iterator[list[Span]]:
        """Every trace of ``service`` that starts in ``[since, until)`` (default: the last 7 days)."""
        end = until if until is not None else time.time_ns()
        start = since if since is not None else end - _DEFAULT_LOOKBACK_NS
        windows = [(s, min(s + _WINDOW_NS, end)) for s in range(start, end, _WINDOW_NS)]
        windows.reverse()
        seen: set[object] = set()  # trace ids: a few dozen bytes per trace, not its spans
        try:
            while windows:
                low, high = windows.pop()
                query = urllib.parse.urlencode(
                    {"service": service, "start": low // 1000, "end": high // 1000, "limit": self.limit}
                )
                url = f"{self.url}/api/traces?{query}"
                data = self._get(url, stats)
                if data is None:
                    continue
                if len(data) >= self.limit and high - low > _MIN_WINDOW_NS:
                    middle = (low + high) // 2  # a full answer may hide traces: ask in halves
                    windows.extend([(middle, high), (low, middle)])
                    continue
                for trace in data:
                    trace_id = trace.get("traceID") if isinstance(trace, dict) else None
                    if trace_id in seen:  # a trace spanning two windows is answered twice
                        continue
                    seen.add(trace_id)
                    yield decode_trace(trace, url, stats)
        except _Unreachable:
            return


class _Unreachable(Exception):
    """Jaeger cannot be reached: stop querying (the problem is already in the stats)."""
