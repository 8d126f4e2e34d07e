"""CPU overhead of ``instrument_httpx`` on a streamed and a plain LLM response, side by side.

The fake provider runs in a child process, so only the client's CPU is measured
(``time.process_time`` of this process). The client set-ups below are measured in interleaved rounds
(so drift in machine load hits them alike):

- ``bare``: plain httpx, no instrumentation at all;
- ``http-only``: opentelemetry-instrumentation-httpx alone, for httpx and httpx2 (the openai SDK
  uses httpx2): HTTP spans, no LLM capture;
- ``capture``: ``otel_costs.instrument_httpx`` (HTTP span + LLM span + incremental parsing);
- ``capture-1span``: the same with ``http_spans=False`` (the LLM span carries the HTTP attributes);
- ``span-floor``: no capture, only one SDK span (no attributes) started and ended around each
  request by a few-line wrapper on the httpx and httpx2 transports: the floor of anything that
  makes one span per call, for reading the other figures (not a target).

Workloads: an OpenAI chat stream of 1,000 content chunks (read with ``iter_bytes``, the cheapest
way a caller can read it, so the ratio is the least flattering one) and a plain JSON chat completion;
the targets apply to these. The same two calls made through the ``openai`` SDK are measured too,
for context (what an application that uses the SDK pays). Spans go to a TracerProvider with no
processors: exporting is not what is measured here. The order of the set-ups rotates every round
and garbage is collected before each batch, so no set-up pays for another's garbage.

    python benchmarks/bench_httpx.py            # full run (about a minute)
    python benchmarks/bench_httpx.py --quick    # a smoke run
    python benchmarks/bench_httpx.py --instructions [--against DIR]

``--instructions`` counts the client's instructions per request instead (valgrind's cachegrind,
``PYTHONHASHSEED=0``, the fake provider outside valgrind): the difference between a long and a
short loop of one set-up and workload in a process of its own. It is steady where CPU time is not,
so it is the comparison of two versions: ``--against DIR`` counts the same with the ``otel_costs``
package found in ``DIR`` (e.g. ``git archive main | tar -x -C DIR``), side by side.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import httpx2
import openai
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

try:
    from otel_costs.capture import instrument_httpx, uninstrument_httpx
except ImportError:  # --against a tree from before otel_costs.capture exported them
    from otel_costs import instrument_httpx, uninstrument_httpx

TARGETS = {"stream": 1.05, "plain": 1.15}
MESSAGES: list[Any] = [{"role": "user", "content": "Summarise the quarterly report in one line, please."}]


def start_fake(chunks: int) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "otel_costs.testing._fake_provider", "--stream-chunks", str(chunks)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    base_url = process.stdout.readline().strip()
    if not base_url.startswith("http://127.0.0.1:"):
        process.kill()
        raise RuntimeError(f"the fake provider did not start (got {base_url!r})")
    return process, base_url


def workloads(client: httpx.Client, sdk: openai.OpenAI, base_url: str) -> dict[str, Callable[[], int]]:
    url = f"{base_url}/v1/chat/completions"
    stream_body = {
        "model": "gpt-4o",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    plain_body = {"model": "gpt-4o", "messages": MESSAGES}

    def stream() -> int:
        size = 0
        with client.stream("POST", url, json=stream_body) as response:
            for chunk in response.iter_bytes():
                size += len(chunk)
        return size

    def plain() -> int:
        return len(client.post(url, json=plain_body).content)

    def sdk_stream() -> int:
        chunks = sdk.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        return sum(1 for _ in chunks)

    def sdk_plain() -> int:
        return len(sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices)

    return {"stream": stream, "plain": plain, "sdk-stream": sdk_stream, "sdk-plain": sdk_plain}


Setups = dict[str, tuple[Callable[[], None], Callable[[], None]]]


def make_setups(provider: TracerProvider, host: str) -> Setups:
    """Each client set-up as (turn on, turn off), spans to ``provider``, LLM calls to ``host``."""
    http_only = (HTTPXClientInstrumentor(), HTTPX2ClientInstrumentor())

    def http_on() -> None:
        for instrumentor in http_only:
            instrumentor.instrument(tracer_provider=provider)

    def http_off() -> None:
        for instrumentor in http_only:
            instrumentor.uninstrument()

    floor_tracer = provider.get_tracer("bench.floor")
    originals = {module: module.HTTPTransport.handle_request for module in (httpx, httpx2)}

    def floor_on() -> None:
        for module, original in originals.items():

            def with_span(self: Any, request: Any, original: Any = original) -> Any:
                span = floor_tracer.start_span("chat gpt-4o", kind=SpanKind.CLIENT)
                try:
                    return original(self, request)
                finally:
                    span.end()

            module.HTTPTransport.handle_request = with_span

    def floor_off() -> None:
        for module, original in originals.items():
            module.HTTPTransport.handle_request = original

    return {
        "bare": (lambda: None, lambda: None),
        "http-only": (http_on, http_off),
        "capture": (
            lambda: instrument_httpx(tracer_provider=provider, llm_hosts={host: None}),
            uninstrument_httpx,
        ),
        "capture-1span": (
            lambda: instrument_httpx(tracer_provider=provider, llm_hosts={host: None}, http_spans=False),
            uninstrument_httpx,
        ),
        "span-floor": (floor_on, floor_off),
    }


#: (small, large) loop lengths of each workload for --instructions.
LOOPS = {"plain": (20, 220), "stream": (3, 13)}
COUNTED = ("bare", "http-only", "capture", "capture-1span")


def loop(setup: str, work: str, count: int) -> None:
    """``count`` requests of ``work`` with ``setup`` on, after a warm-up (for --instructions)."""
    process, base_url = start_fake(1000)
    try:
        on, _ = make_setups(TracerProvider(), base_url.removeprefix("http://"))[setup]
        on()
        sdk = openai.OpenAI(base_url=f"{base_url}/v1", api_key="bench", max_retries=0)
        with httpx.Client() as client, sdk:
            job = workloads(client, sdk, base_url)[work]
            for _ in range(3):
                job()
            gc.collect()
            for _ in range(count):
                job()
    finally:
        process.stdin.close()  # type: ignore[union-attr]
        process.wait(timeout=10)


def count_instructions(against: str | None) -> None:
    """Instructions per request of each set-up and workload, for this tree and ``against``."""

    def total(setup: str, work: str, count: int, path: str | None) -> int:
        command = [
            "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
            sys.executable, os.path.abspath(__file__), "--loop", setup, work, str(count),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        if path is not None:
            env["PYTHONPATH"] = path
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=path, check=False)
        found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
        if done.returncode or found is None:
            raise SystemExit(f"valgrind failed (is it installed?):\n{done.stderr[-2000:]}")
        return int(found.group(1).replace(",", ""))

    trees: list[tuple[str, str | None]] = [("this tree", None)]
    if against is not None:
        trees.append((against, os.path.abspath(against)))
    print("instructions per request (client process only; difference of two loop lengths)")
    for work, (small, large) in LOOPS.items():
        for label, path in trees:
            counts = {
                setup: (total(setup, work, large, path) - total(setup, work, small, path)) // (large - small)
                for setup in COUNTED
            }
            bare = counts["bare"]
            extra = ", ".join(f"{setup} +{counts[setup] - bare:,}" for setup in COUNTED[1:])
            print(f"{work:<7} {label}: bare {bare:,}; {extra}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few iterations, for a smoke run")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--workloads", default=None, help="comma-separated subset, e.g. plain,stream (default: all)"
    )
    parser.add_argument("--instructions", action="store_true", help="count instructions with valgrind")
    parser.add_argument("--against", default=None, help="with --instructions: another tree to compare")
    parser.add_argument("--loop", nargs=3, help=argparse.SUPPRESS)  # setup work count
    args = parser.parse_args()
    if args.loop:
        setup, work, count = args.loop
        loop(setup, work, int(count))
        return 0
    if args.instructions:
        count_instructions(args.against)
        return 0
    rounds = args.rounds or (3 if args.quick else 21)
    scale = 1 if args.quick else 2
    per_round = {"stream": 2 * scale, "plain": 30 * scale, "sdk-stream": 1 * scale, "sdk-plain": 20 * scale}
    if args.workloads:
        wanted = args.workloads.split(",")
        unknown = set(wanted) - set(per_round)
        if unknown:
            parser.error(f"unknown workloads {sorted(unknown)}; choose from {sorted(per_round)}")
        per_round = {work: count for work, count in per_round.items() if work in wanted}

    process, base_url = start_fake(1000)
    setups = make_setups(TracerProvider(), base_url.removeprefix("http://"))
    # cpu[(setup, work)] holds one CPU-seconds-per-request figure per round.
    cpu: dict[tuple[str, str], list[float]] = {(setup, work): [] for setup in setups for work in per_round}
    try:
        sdk = openai.OpenAI(base_url=f"{base_url}/v1", api_key="bench", max_retries=0)
        with httpx.Client() as client, sdk:
            jobs = workloads(client, sdk, base_url)
            for job in jobs.values():  # warm up connections, imports and caches
                job()
            names = list(setups)
            for round_ in range(rounds):
                shift = round_ % len(names)
                for setup in names[shift:] + names[:shift]:
                    on, off = setups[setup]
                    on()
                    try:
                        for work, count in per_round.items():
                            job = jobs[work]
                            gc.collect()
                            started = time.process_time()
                            for _ in range(count):
                                job()
                            cpu[(setup, work)].append((time.process_time() - started) / count)
                    finally:
                        off()
    finally:
        process.stdin.close()  # type: ignore[union-attr]
        process.wait(timeout=10)

    failed = False
    print(f"{rounds} interleaved rounds; ratio = median over rounds of (set-up CPU / bare CPU) in that round")
    print(f"{'workload':<11} {'setup':<14} {'CPU/request':>12} {'vs bare':>8}  {'vs http-only':>12}  target")
    for work in per_round:
        bare = cpu[("bare", work)]
        http = cpu[("http-only", work)]
        for setup in setups:
            runs = cpu[(setup, work)]
            ratio = statistics.median(r / b for r, b in zip(runs, bare, strict=True))
            vs_http = statistics.median(r / h for r, h in zip(runs, http, strict=True))
            target = TARGETS.get(work) if setup.startswith("capture") else None
            verdict = ""
            if target is not None:
                ok = ratio <= target
                failed |= not ok and setup == "capture"
                verdict = f"<={target:.2f} {'ok' if ok else 'missed'}"
            per_request = statistics.median(runs) * 1e6
            print(
                f"{work:<11} {setup:<14} {per_request:>10.0f}us {ratio:>7.3f}x  {vs_http:>11.3f}x  {verdict}"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
