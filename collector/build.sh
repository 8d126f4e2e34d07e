#!/usr/bin/env bash
# Build the otel-costs OpenTelemetry Collector distribution and Jaeger v2 from their Go modules.
#
#   collector/build.sh          # build what is missing or stale, print the two binary paths
#
# Outputs (in ${OTEL_COSTS_BIN_DIR:-$HOME/.cache/otel-costs/bin}):
#   otelcol-otel-costs   the Collector built by ocb from collector/builder-config.yaml
#   jaeger               Jaeger v2 (github.com/jaegertracing/jaeger/cmd/jaeger)
# Each binary has a .stamp file holding a hash of everything that decides its content (manifest,
# versions, Go version). A binary whose stamp matches is reused, so a rerun takes about a second;
# edit the manifest or a version below and the next run rebuilds that binary only.
#
# Needs: Go >= 1.26 (on PATH, at /usr/local/go/bin/go, or named by $GO) and the Go module proxy.
# The first build compiles a few hundred modules and takes minutes on 2 cores; the Go build cache
# stays in its default place so that later rebuilds are much faster.
set -euo pipefail

# --- versions: change them here (the stamps pick the change up) ------------------------------
# ocb must be the release of the components in builder-config.yaml.
OCB_VERSION=v0.161.0
# Jaeger tags each release twice; the Go module only sees the v1 tag. v1.75.0 is Jaeger v2.12.0 (v1.76.0 is not an approved release).
JAEGER_MODULE_VERSION=v1.75.0
JAEGER_RELEASE=v2.12.0

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MANIFEST="$HERE/builder-config.yaml"
# The costrollup processor's Go module (a local `path:` in the manifest).
PROCESSOR_DIR="$HERE/costrollupprocessor"
BIN_DIR=${OTEL_COSTS_BIN_DIR:-$HOME/.cache/otel-costs/bin}
TOOLS_DIR="$BIN_DIR/.tools"
COLLECTOR_BIN="$BIN_DIR/otelcol-otel-costs"
JAEGER_BIN="$BIN_DIR/jaeger"

log() { printf 'build.sh: %s\n' "$*" >&2; }

GO=${GO:-$(command -v go || true)}
if [[ -z "$GO" && -x /usr/local/go/bin/go ]]; then
    GO=/usr/local/go/bin/go
fi
if [[ -z "$GO" ]]; then
    log "Go not found: install Go >= 1.26, put it on PATH or set GO=/path/to/go, then rerun."
    exit 2
fi
# ocb runs `go` itself, so the same Go must come first on PATH.
GO_BIN_DIR=$(dirname "$GO")
export PATH="$GO_BIN_DIR:$PATH"
# Resolve module requirements on the fly (ocb's generated module has no vendor directory).
export GOFLAGS=-mod=mod
# Static binaries, like the official Collector and Jaeger releases.
export CGO_ENABLED=0
GO_VERSION=$("$GO" env GOVERSION)

mkdir -p "$BIN_DIR" "$TOOLS_DIR"
# One build at a time per bin dir: parallel test workers or two shells must not race on the output.
# (flock is util-linux; without it, e.g. on macOS, concurrent runs are simply not serialized.)
if command -v flock >/dev/null 2>&1; then
    exec 9>"$BIN_DIR/.build.lock"
    flock 9
fi

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/otel-costs-build.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT

# up_to_date BINARY KEY: true when BINARY exists and was built from KEY.
up_to_date() {
    [[ -x "$1" && -f "$1.stamp" && "$(cat "$1.stamp")" == "$2" ]]
}

# install_binary BUILT TARGET KEY: move into place atomically, then record what it was built from.
install_binary() {
    mv -f "$1" "$2.tmp.$$"
    mv -f "$2.tmp.$$" "$2"
    printf '%s\n' "$3" >"$2.stamp"
}

build_collector() {
    local key
    # The key covers the manifest and the processor's sources (tests and testdata aside: they do
    # not go into the binary), so editing the processor rebuilds the Collector.
    key=$( {
        printf 'ocb=%s go=%s\n' "$OCB_VERSION" "$GO_VERSION"
        cat "$MANIFEST"
        (cd "$PROCESSOR_DIR" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum -o -name metadata.yaml \) \
            ! -name '*_test.go' ! -path './testdata/*' | LC_ALL=C sort | xargs sha256sum)
    } | sha256sum | cut -d' ' -f1)
    if up_to_date "$COLLECTOR_BIN" "$key"; then
        log "collector up to date ($COLLECTOR_BIN)"
        return
    fi
    local ocb="$TOOLS_DIR/ocb-$OCB_VERSION"
    if [[ ! -x "$ocb" ]]; then
        log "installing ocb $OCB_VERSION"
        GOBIN="$SCRATCH/gobin" "$GO" install "go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION"
        mv -f "$SCRATCH/gobin/builder" "$ocb"
    fi
    log "building the Collector from $MANIFEST (minutes on a cold Go build cache)"
    local started=$SECONDS
    # output_path in the manifest is relative: the sources and the binary land in the scratch dir.
    # The builder resolves a module's relative `path:` against its working directory (the scratch
    # dir), so the manifest it reads has the processor's path made absolute.
    local manifest="$SCRATCH/builder-config.yaml"
    sed "s|^\([[:space:]]*path:\)[[:space:]]*\./costrollupprocessor[[:space:]]*\$|\1 $PROCESSOR_DIR|" "$MANIFEST" >"$manifest"
    if ! grep -q "path: $PROCESSOR_DIR\$" "$manifest"; then
        log "builder-config.yaml: expected 'path: ./costrollupprocessor' for the costrollup processor"
        exit 1
    fi
    (cd "$SCRATCH" && "$ocb" --config "$manifest") >&2
    install_binary "$SCRATCH/otelcol-otel-costs/otelcol-otel-costs" "$COLLECTOR_BIN" "$key"
    log "collector built in $((SECONDS - started))s"
}

build_jaeger() {
    local key
    key=$(printf 'jaeger=%s release=%s go=%s\n' "$JAEGER_MODULE_VERSION" "$JAEGER_RELEASE" "$GO_VERSION" \
        | sha256sum | cut -d' ' -f1)
    if up_to_date "$JAEGER_BIN" "$key"; then
        log "jaeger up to date ($JAEGER_BIN)"
        return
    fi
    log "building Jaeger $JAEGER_RELEASE (module $JAEGER_MODULE_VERSION; minutes on a cold Go build cache)"
    local started=$SECONDS
    local mod="$SCRATCH/jaeger-build" jaeger_dir
    mkdir -p "$mod"
    # `go install pkg@version` refuses Jaeger because its go.mod has replace directives, so the
    # binary is built as a tool of a throwaway module instead.
    jaeger_dir=$(cd "$SCRATCH" && "$GO" mod download -json "github.com/jaegertracing/jaeger@$JAEGER_MODULE_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    if [[ ! -f "$jaeger_dir/go.sum" ]]; then
        log "could not locate the downloaded Jaeger module (got '$jaeger_dir')"
        exit 1
    fi
    (
        cd "$mod"
        "$GO" mod init otel-costs.local/jaeger-build >/dev/null 2>&1
        # Seed go.sum with Jaeger's own: the build then verifies every dependency against the exact
        # hashes Jaeger released with, and needs no checksum-database lookups for them (the
        # database does not answer for all of them everywhere).
        cp "$jaeger_dir/go.sum" go.sum
        # `go get` lists each of the ~400 modules it adds: keep that out of the way unless it fails.
        if ! "$GO" get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_MODULE_VERSION" >go-get.log 2>&1; then
            cat go-get.log >&2
            exit 1
        fi
        "$GO" build -trimpath -o "$SCRATCH/jaeger" \
            -ldflags "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$JAEGER_RELEASE" \
            github.com/jaegertracing/jaeger/cmd/jaeger >&2
    )
    install_binary "$SCRATCH/jaeger" "$JAEGER_BIN" "$key"
    log "jaeger built in $((SECONDS - started))s"
}

build_collector
build_jaeger
log "binaries:"
printf '%s\n' "$COLLECTOR_BIN" "$JAEGER_BIN"
