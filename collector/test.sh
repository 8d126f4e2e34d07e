#!/usr/bin/env bash
# CI checks of the Go code under collector/: gofmt, go vet and go test -race for the costrollup
# processor module (its tests read the shared golden cases in tests/golden/).
#
#   collector/test.sh            # all three; exit 1 on the first failure
#   collector/test.sh -short     # extra flags go to `go test` (here: skip the slow memory test)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GO=${GO:-$(command -v go || true)}
if [[ -z "$GO" && -x /usr/local/go/bin/go ]]; then
    GO=/usr/local/go/bin/go
fi
if [[ -z "$GO" ]]; then
    echo "collector/test.sh: Go not found (install Go >= 1.26 or set GO=/path/to/go)" >&2
    exit 2
fi
GOFMT="$(dirname "$GO")/gofmt"
[[ -x "$GOFMT" ]] || GOFMT=gofmt

cd "$HERE/costrollupprocessor"
echo "collector/test.sh: gofmt -l" >&2
unformatted=$("$GOFMT" -l .)
if [[ -n "$unformatted" ]]; then
    echo "gofmt: these files need formatting (gofmt -w):" >&2
    echo "$unformatted" >&2
    exit 1
fi
echo "collector/test.sh: go vet ./..." >&2
"$GO" vet ./...
echo "collector/test.sh: go test -race ./..." >&2
"$GO" test -race -count=1 "$@" ./...
