# Sourced by tests/instrumentations/run.sh and tests/frameworks/run.sh: one pinned venv per set.
#
#   ensure_venv VENV REQUIREMENTS   # (re)create VENV with otel-costs (editable) and REQUIREMENTS
#
# A venv is rebuilt when its requirements file or the project's pyproject.toml changes (a stamp
# file holds their hash), and `pip check` must pass in it: a set whose pins conflict fails here.
ensure_venv() {
  local venv=$1 requirements=$2 root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  local stamp="$venv/.requirements.sha256" wanted
  wanted="$(cat "$requirements" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "== creating $venv from ${requirements#"$root"/}"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -e "$root" -r "$requirements"
    echo "$wanted" >"$stamp"
  fi
  "$venv/bin/pip" check
}
