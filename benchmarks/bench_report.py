"""Report throughput and memory: ``report``/``chargeback``/``audit`` next to a plain ``json.loads`` pass.

Run: ``python benchmarks/bench_report.py [--spans 1000000] [--small 250000] [--rounds 3]``.

The input is generated here: the test workload (ten summarize runs, a research run whose search
step retries three times, an unattributed and an unpriced call) run once through the real cost
pipeline and written as OTLP/JSON lines, then copied with fresh trace and workflow ids until the
file holds ``--spans`` spans (and a second file ``--small`` spans, to show memory does not grow
with the file). Each pass runs in a fresh child process pinned to one core, side by side in the
same run: a plain ``for line in file: json.loads(line)`` and then each command over the same file.
Reported: spans/s (CPU time of the pass, best of ``--rounds``), the ratio to the plain
``json.loads`` pass (target >= 0.5), and peak RSS (every child imports the report package, so
the baseline's memory includes it too). The commands run as the CLI runs them, under
``relaxed_gc()``; the same ``json.loads`` pass under it is shown too, so the share of the ratio
owed to the GC setting is visible.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

MODES = (
    "json.loads",
    "json.loads, relaxed gc",
    "report table",
    "chargeback",
    "report (all sections)",
    "audit",
)


def peak_rss_mb() -> float:
    """This process's peak resident memory (``VmHWM``: unlike ``ru_maxrss`` it restarts at exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(path: Path, spans: int) -> int:
    """Write about ``spans`` spans of the workload, copied with fresh ids; returns the span count."""
    from test_report_workload import workload_spans, write_otlp

    template = write_otlp(path.with_suffix(".template"), workload_spans(), batch=64).read_text().splitlines()
    per_copy = sum(line.count('"spanId"') for line in template)
    trace_ids = sorted(set(re.findall(r'"traceId":"([0-9a-f]{32})"', "\n".join(template))))
    workflow_ids = sorted(set(re.findall(r'"stringValue":"(01[0-9A-Z]{24})"', "\n".join(template))))
    copies = max(spans // per_copy, 1)
    with path.open("w") as out:
        for k in range(copies):
            for line in template:
                for old in trace_ids:
                    line = line.replace(old, old[:-8] + f"{k:08x}")
                for old in workflow_ids:
                    line = line.replace(old, old[:-7] + f"{k:07d}")
                out.write(line + "\n")
    return copies * per_copy


def child(mode: str, path: str) -> None:
    """One timed pass in this process; prints a JSON line with seconds, spans and peak RSS."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    gc_setting: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if mode != "json.loads":
        from otel_costs.report._spans import relaxed_gc

        gc_setting = relaxed_gc()  # as the CLI commands run
    from otel_costs.report import (
        AuditOptions,
        ReadStats,
        ReportOptions,
        audit_spans,
        build_report,
        read_files,
    )

    spans = 0
    start = time.process_time()  # CPU time of the pass (not the imports): the machine may be shared
    with gc_setting:
        if mode.startswith("json.loads"):
            with open(path, "rb") as fh:
                for line in fh:
                    data = json.loads(line)
                    spans += sum(len(ss["spans"]) for rs in data["resourceSpans"] for ss in rs["scopeSpans"])
        else:
            stats = ReadStats()
            batches = read_files([path], stats)
            if mode == "audit":
                audit_spans(batches, AuditOptions(max_trace_spans=50_000), stats)
            else:
                sections = (
                    frozenset({"table", "runs", "retries"})
                    if mode == "report (all sections)"
                    else frozenset()
                )
                by = "team.id" if mode == "chargeback" else None
                group_by = () if mode == "chargeback" else ("team", "model")
                build_report(
                    batches, ReportOptions(group_by=group_by, sections=sections, chargeback_by=by), stats
                )
            spans = stats.spans
    seconds = time.process_time() - start
    print(json.dumps({"mode": mode, "seconds": seconds, "spans": spans, "rss_mb": peak_rss_mb()}))


def run_child(mode: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(path)], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=250_000)
    parser.add_argument("--rounds", type=int, default=3, help="passes per mode; the fastest is kept")
    parser.add_argument("--modes", help="comma-separated passes to run (default: all)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    modes = [m for m in MODES if not args.modes or m in args.modes.split(",") or m == "json.loads"]
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        files = []
        for size in (args.small, args.spans):
            path = Path(tmp) / f"spans-{size}.jsonl"
            count = generate(path, size)
            files.append((path, count))
            print(f"generated {path.name}: {count} spans, {path.stat().st_size / 2**20:.0f} MB", flush=True)
        print(f"\n{'file':>12} {'pass':<24} {'spans/s':>10} {'ratio':>6} {'peak RSS':>9}")
        for path, count in files:
            best: dict[str, dict[str, float]] = {}
            for _ in range(args.rounds):
                for mode in modes:  # side by side: every mode in each round
                    result = run_child(mode, path)
                    if mode not in best or result["seconds"] < best[mode]["seconds"]:
                        best[mode] = result
            base = best["json.loads"]["spans"] / best["json.loads"]["seconds"]
            for mode in modes:
                rate = best[mode]["spans"] / best[mode]["seconds"]
                print(
                    f"{count:>12} {mode:<24} {rate:>10.0f} {rate / base:>6.2f} {best[mode]['rss_mb']:>7.0f}MB"
                )
            print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
