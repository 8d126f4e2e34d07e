#!/usr/bin/env bash
# Run the framework tests (tests/frameworks/<set>/) in one pinned venv per framework.
#
# Each framework pins its own versions (tests/frameworks/<set>/requirements.txt: a pip freeze of
# the newest versions the index serves, with the framework's OpenInference and OpenLLMetry
# instrumentations beside it), built by tests/venv.sh under .venv-frameworks/<set> (rebuilt when
# the requirements change; `pip check` must pass). The tests choose the instrumentation per test.
#
# Usage: bash tests/frameworks/run.sh [SET ...] [-- PYTEST_ARGS ...]
#        (sets: langgraph crewai autogen openai-agents pydantic-ai)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
# shellcheck source=../venv.sh
. "$root/tests/venv.sh"

ALL_SETS=(langgraph crewai autogen openai-agents pydantic-ai)
sets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    langgraph | crewai | autogen | openai-agents | pydantic-ai) sets+=("$1"); shift ;;
    *) echo "run.sh: unknown set '$1' (expected: ${ALL_SETS[*]}; pytest arguments go after --)" >&2; exit 2 ;;
  esac
done
[ ${#sets[@]} -gt 0 ] || sets=("${ALL_SETS[@]}")

for set in "${sets[@]}"; do
  dir="$here/${set//-/_}"
  if [ ! -f "$dir/requirements.txt" ]; then
    echo "run.sh: no $dir/requirements.txt" >&2
    exit 1
  fi
  venv="$root/.venv-frameworks/$set"
  ensure_venv "$venv" "$dir/requirements.txt"
  echo "== framework set '$set'"
  if [ $# -gt 0 ]; then
    OTEL_COSTS_FRAMEWORK_SET="$set" "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
  else
    OTEL_COSTS_FRAMEWORK_SET="$set" "$venv/bin/python" -m pytest -p no:cacheprovider "$dir"
  fi
done
