#!/usr/bin/env bash
# Smoke test of the documented chain on one host, loopback only: gateway.yaml -> worker.yaml
# (costrollup) -> Jaeger v2, on ports offset by SMOKE_PORT_BASE (20000) from the documented ones so
# it can run beside a real setup. Sends one two-service trace whose second service arrives after
# root_wait and checks in Jaeger's API that the root's cost.total_nanos is the exact sum of both
# services' LLM calls, unflagged.
#
#   collector/smoke/run.sh        # needs the built binaries (collector/build.sh) and .venv with otel-costs
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=${SMOKE_PORT_BASE:-20000}
BIN_DIR=$(dirname "$(bash "$HERE/collector/build.sh" 2>/dev/null | sed -n 1p)")
PY=${PYTHON:-$HERE/.venv/bin/python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/otel-costs-smoke.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ -n "${KEEP:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT

JAEGER_OTLP_GRPC_PORT=$((B + 4347)) JAEGER_OTLP_HTTP_PORT=$((B + 4348)) JAEGER_HEALTH_PORT=$((B + 13163)) \
    JAEGER_METRICS_PORT=$((B + 8918)) JAEGER_QUERY_HTTP_PORT=$((B + 16686)) JAEGER_QUERY_GRPC_PORT=$((B + 16685)) \
    "$BIN_DIR/jaeger" --config "$HERE/collector/jaeger.yaml" >"$WORK/jaeger.log" 2>&1 &
pids+=($!)
EXPORT_OTLP_ENDPOINT=127.0.0.1:$((B + 4347)) COSTROLLUP_PRICES_FILE="$HERE/tests/golden/prices.json" COSTROLLUP_ROOT_WAIT=1s \
    OTELCOL_OTLP_GRPC_PORT=$((B + 4327)) OTELCOL_OTLP_HTTP_PORT=$((B + 4328)) OTELCOL_HEALTH_PORT=$((B + 13143)) \
    OTELCOL_METRICS_PORT=$((B + 8898)) "$BIN_DIR/otelcol-otel-costs" --config "$HERE/collector/worker.yaml" >"$WORK/worker.log" 2>&1 &
pids+=($!)
WORKER_ENDPOINTS=127.0.0.1:$((B + 4327)) OTELCOL_OTLP_GRPC_PORT=$((B + 4317)) OTELCOL_OTLP_HTTP_PORT=$((B + 4318)) \
    OTELCOL_HEALTH_PORT=$((B + 13133)) OTELCOL_METRICS_PORT=$((B + 8888)) \
    "$BIN_DIR/otelcol-otel-costs" --config "$HERE/collector/gateway.yaml" >"$WORK/gateway.log" 2>&1 &
pids+=($!)
for port in $((B + 13133)) $((B + 13143)); do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done
done
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$((B + 13163))/status" >/dev/null && break; sleep 0.1; done
GATEWAY_OTLP_HTTP=http://127.0.0.1:$((B + 4318)) JAEGER_QUERY=http://127.0.0.1:$((B + 16686)) \
    "$PY" "$HERE/collector/smoke/send_two_services.py"
