#!/usr/bin/env bash
# Run the instrumentation tests (tests/instrumentations) in their own virtualenvs.
#
# The instrumentation packages need exact versions, and the two sets cannot share one environment
# (opentelemetry-instrumentation-openai-v2 needs opentelemetry-util-genai <= 1.1b0, its successor
# opentelemetry-instrumentation-genai-openai needs >= 1.3b0; see docs/instrumentations.md), so
# each set gets a venv under .venv-instrumentations/ with otel-costs (editable) and its pins.
# A venv is rebuilt when its requirements file changes (tests/venv.sh), and `pip check` must pass.
#
# Usage: bash tests/instrumentations/run.sh [SET ...] [-- PYTEST_ARGS ...]   (sets: main genai)
# PYTEST_ARGS default to tests/instrumentations.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
# shellcheck source=../venv.sh
. "$root/tests/venv.sh"

sets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    main | genai) sets+=("$1"); shift ;;
    *) echo "run.sh: unknown set '$1' (expected: main, genai; pytest arguments go after --)" >&2; exit 2 ;;
  esac
done
[ ${#sets[@]} -gt 0 ] || sets=(main genai)
[ $# -gt 0 ] || set -- tests/instrumentations

for set in "${sets[@]}"; do
  case "$set" in
    main) requirements="$here/requirements.txt" ;;
    genai) requirements="$here/requirements-genai.txt" ;;
  esac
  venv="$root/.venv-instrumentations/$set"
  ensure_venv "$venv" "$requirements"
  echo "== instrumentation set '$set'"
  OTEL_COSTS_INSTRUMENTATION_SET="$set" "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
done
