#!/usr/bin/env bash
# Worker Collector throughput with and without the costrollup processor, side by side, one core.
#
#   benchmarks/bench_collector.sh                # 20 s per run
#   DURATION=60s RUNS=3 benchmarks/bench_collector.sh
#   DURATION=60s WARMUP=30 benchmarks/bench_collector.sh   # steady state: spans/cpu_s from 30 s in
#
# Builds the distribution (collector/build.sh, cached) and the load generator
# (collector/costrollupprocessor/internal/loadgen), then for each pipeline runs collector/worker.yaml
# pinned to CPU ${WORKER_CPU:-0} (taskset) while the load generator and the OTLP sink the worker
# exports to run on CPU ${LOAD_CPU:-1}:
#   with:     memory_limiter, costrollup (defaults, prices from tests/golden/prices.json, and
#             max_buffered_spans 3M: at 100k+ spans/s x root_wait 5 s the default 1M would make the
#             run measure early, buffer_full releases instead of the steady state), batch
#   without:  memory_limiter, batch (the same file with costrollup taken out)
# Load: traces of 16 spans, 3 of them LLM calls (the realistic mix of the former otel-costs serve benchmark), 100
# traces per request, 4 concurrent senders, as fast as the worker accepts them, in two mixes:
#   priced   the LLM spans were priced in-process (cost.* on them): the worker rolls up only
#   usage    the LLM spans carry token usage only: the worker prices them too (no otel-costs in the app)
# MIXES="priced usage none" picks them ("none": no LLM spans). WORKER_GOGC / WORKER_GOMEMLIMIT set
# GOGC / GOMEMLIMIT for both pipelines' worker (e.g. WORKER_GOGC=off WORKER_GOMEMLIMIT=2GiB: a worker
# holds rate x root_wait spans, and with the default GOGC=100 every allocation pays for marking
# that window again). Reported: spans/s
# arriving at the sink (spans out of the worker per second), the share of its core the worker used
# (cpu_share; below ~0.9 the load generator and sink on the other core were the limit, not the
# worker), spans per worker CPU-second (the worker's throughput on one full core), both ratios,
# the worker's peak RSS,
# and memory per buffered span ((RSS with - RSS without) / mean spans held by costrollup).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-0}
RUNS=${RUNS:-1}
MIXES=${MIXES:-priced usage}
WORKER_CPU=${WORKER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${BENCH_PORT:-14327}
SINK_PORT=${BENCH_SINK_PORT:-14347}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

BIN=$(bash "$HERE/collector/build.sh" 2>/dev/null | sed -n 1p)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-collector.XXXXXX")
trap '[[ -n "${KEEP:-}" ]] || rm -rf "$WORK"' EXIT
(cd "$HERE/collector/costrollupprocessor" && "$GO" build -o "$WORK/loadgen" ./internal/loadgen)

cp "$HERE/collector/worker.yaml" "$WORK/with.yaml"
sed 's/processors: \[memory_limiter, costrollup, batch\]/processors: [memory_limiter, batch]/' \
    "$HERE/collector/worker.yaml" >"$WORK/without.yaml"
grep -q 'processors: \[memory_limiter, batch\]' "$WORK/without.yaml"

cpu_ticks() { # user+system CPU ticks of a process
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}
TICKS=$(getconf CLK_TCK)

metric() { # metric PORT NAME: a gauge from the worker's Prometheus endpoint (0 when absent)
    curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 ~ "^"n"({|$)" {v=$2} END {print v+0}'
}

run() { # run NAME CONFIG MIX: prints "spans_per_s peak_rss_kib mean_rss_kib mean_spans_buffered spans_per_cpu_s cpu_share"
    local name=$1 config=$2 mix=$3 metrics_port=$((PORT + 2)) health_port=$((PORT + 3))
    EXPORT_OTLP_ENDPOINT=127.0.0.1:$SINK_PORT OTELCOL_OTLP_GRPC_PORT=$PORT OTELCOL_OTLP_HTTP_PORT=$((PORT + 1)) \
        OTELCOL_METRICS_PORT=$metrics_port OTELCOL_HEALTH_PORT=$health_port OTELCOL_LOG_LEVEL=warn \
        COSTROLLUP_PRICES_FILE="$HERE/tests/golden/prices.json" COSTROLLUP_MAX_SPANS=${COSTROLLUP_MAX_SPANS:-3000000} \
        env ${WORKER_GOGC:+GOGC=$WORKER_GOGC} ${WORKER_GOMEMLIMIT:+GOMEMLIMIT=$WORKER_GOMEMLIMIT} \
        taskset -c "$WORKER_CPU" "$BIN" --config "$config" >"$WORK/$name.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$health_port/" >/dev/null && break
        sleep 0.1
    done
    : >"$WORK/$name.samples"
    (
        while kill -0 "$pid" 2>/dev/null; do
            rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
            buffered=$(metric "$metrics_port" otelcol_processor_costrollup_spans_buffered)
            echo "$rss $buffered" >>"$WORK/$name.samples"
            sleep 0.5
        done
    ) &
    local sampler=$!
    local ticks0 sent0=0 sent1=0
    ticks0=$(cpu_ticks "$pid")
    taskset -c "$LOAD_CPU" "$WORK/loadgen" -target "127.0.0.1:$PORT" -sink "127.0.0.1:$SINK_PORT" \
        -duration "$DURATION" -spans 16 -mix "$mix" >"$WORK/$name.json" &
    local loadgen=$!
    if ((WARMUP > 0)); then
        # Steady state: count from WARMUP s in to 1 s before sending stops (the window is full,
        # the first touch of the worker's memory and the first release burst are behind).
        sleep "$WARMUP"
        sent0=$(metric "$metrics_port" otelcol_exporter_sent_spans)
        ticks0=$(cpu_ticks "$pid")
        sleep $((${DURATION%s} - WARMUP - 1))
        sent1=$(metric "$metrics_port" otelcol_exporter_sent_spans)
    fi
    local ticks1
    ticks1=$(cpu_ticks "$pid")
    wait "$loadgen"
    ((WARMUP > 0)) || ticks1=$(cpu_ticks "$pid")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    local rate
    rate=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['spans_per_s']))" "$WORK/$name.json")
    # Steady state: samples from the middle half of the run.
    python3 - "$WORK/$name.samples" "$rate" "$WORK/$name.json" $(( ticks1 - ticks0 )) "$TICKS" "$WARMUP" \
        $(( sent1 - sent0 )) "${DURATION%s}" <<'PY'
import json, sys
rows = [tuple(map(float, line.split())) for line in open(sys.argv[1]) if line.strip()]
result = json.load(open(sys.argv[3]))
cpu_s = int(sys.argv[4]) / int(sys.argv[5])
warmup, steady_spans, duration = int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
if warmup > 0:  # the steady-state window: spans the worker exported, its CPU, over that window
    per_cpu = steady_spans / cpu_s if cpu_s else 0
    share = cpu_s / (duration - warmup - 1)
else:
    per_cpu = result["sunk_spans"] / cpu_s if cpu_s else 0
    share = cpu_s / result["sink_window_s"] if result["sink_window_s"] else 0
mid = rows[len(rows) // 4 : max(len(rows) * 3 // 4, len(rows) // 4 + 1)] or rows
peak = max(r[0] for r in rows) if rows else 0
mean_rss = sum(r[0] for r in mid) / len(mid) if mid else 0
mean_buf = sum(r[1] for r in mid) / len(mid) if mid else 0
print(sys.argv[2], int(peak), int(mean_rss), int(mean_buf), int(per_cpu), f"{share:.2f}")
PY
}

printf 'worker Collector, one core (CPU %s), %s per run (spans/cpu_s %s), traces of 16 spans (3 LLM calls), GOGC=%s GOMEMLIMIT=%s\n' \
    "$WORKER_CPU" "$DURATION" "$( ((WARMUP > 0)) && echo "from ${WARMUP} s in: steady state" || echo "over the whole run")" \
    "${WORKER_GOGC:-default}" "${WORKER_GOMEMLIMIT:-unset}"
printf '%-4s %-7s %-31s %10s %9s %14s %9s %9s %9s\n' run mix pipeline spans/s cpu_share spans/cpu_s peak_MiB mean_MiB buffered
for r in $(seq "$RUNS"); do
  for mix in $MIXES; do
    read -r w_rate w_peak w_rss w_buf w_cpu w_share < <(run with "$WORK/with.yaml" "$mix")
    read -r o_rate o_peak o_rss o_buf o_cpu o_share < <(run without "$WORK/without.yaml" "$mix")
    printf '%-4s %-7s %-31s %10s %9s %14s %9s %9s %9s\n' "$r" "$mix" "with costrollup" "$w_rate" "$w_share" "$w_cpu" $((w_peak / 1024)) $((w_rss / 1024)) "$w_buf"
    printf '%-4s %-7s %-31s %10s %9s %14s %9s %9s %9s\n' "$r" "$mix" "without (memory_limiter, batch)" "$o_rate" "$o_share" "$o_cpu" $((o_peak / 1024)) $((o_rss / 1024)) "$o_buf"
    python3 -c "
import sys
w, o, wr, orr, buf, wc, oc = map(float, sys.argv[1:])
print(f'             ratio {w / o:.2f}x wall, {wc / oc:.2f}x per worker CPU-second (target >= 0.8x)', end='')
print(f'; memory per buffered span {(wr - orr) * 1024 / buf:.0f} bytes' if buf > 0 else '')
" "$w_rate" "$o_rate" "$w_rss" "$o_rss" "$w_buf" "$w_cpu" "$o_cpu"
  done
done
