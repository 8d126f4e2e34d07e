"""Import time of otel-costs against the OpenTelemetry SDK plus the OTLP/HTTP exporter, side by side.

    python benchmarks/bench_import.py [--rounds 31]

Each round starts one fresh interpreter per set-up (alternating, so drift on a shared machine hits
every set-up alike) and times only the import statement inside it (``time.perf_counter`` around
it, so interpreter start-up is not counted). Figures are medians over the rounds; each ratio is
the median of the per-round ratios against the baseline of the same round.

* baseline: ``import opentelemetry.sdk.trace`` + the OTLP/HTTP span exporter: what an
  application that exports spans imports anyway.
* ``import otel_costs``: the root alone (its names resolve on first use); the target is at most
  1.3x the baseline.
* the pipeline names an application uses (``configure``, ``workflow``, ``agent``, ``retry``,
  ``CostSpanProcessor``, ``CostRollupExporter``) plus the baseline: the whole import cost of an
  application that exports over OTLP.
* the same plus ``instrument_httpx``, which brings the upstream httpx instrumentation (and
  httpx and httpx2 themselves).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

BASELINE = "import opentelemetry.sdk.trace\nimport opentelemetry.exporter.otlp.proto.http.trace_exporter\n"
PIPELINE = "from otel_costs import configure, workflow, agent, retry, CostSpanProcessor, CostRollupExporter\n"
CAPTURE = "from otel_costs import instrument_httpx\n"
SETUPS = {
    "baseline: SDK + OTLP/HTTP exporter": BASELINE,
    "import otel_costs": "import otel_costs\n",
    "pipeline names + baseline": PIPELINE + BASELINE,
    "pipeline + instrument_httpx + baseline": PIPELINE + CAPTURE + BASELINE,
}


def _time_import(code: str) -> float:
    probe = f"import time\nt0 = time.perf_counter()\n{code}print(time.perf_counter() - t0)\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=31)
    args = parser.parse_args()
    for code in SETUPS.values():  # warm the file system cache and __pycache__
        _time_import(code)
    times: dict[str, list[float]] = {name: [] for name in SETUPS}
    for _ in range(args.rounds):
        for name, code in SETUPS.items():
            times[name].append(_time_import(code))
    base = times["baseline: SDK + OTLP/HTTP exporter"]
    print(f"{'set-up':40} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'ratio (median of rounds)':>26}")
    for name, values in times.items():
        ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
        print(
            f"{name:40} {statistics.median(values) * 1e3:10.1f} {min(values) * 1e3:8.1f} "
            f"{max(values) * 1e3:8.1f} {ratio:26.2f}x"
        )


if __name__ == "__main__":
    main()
