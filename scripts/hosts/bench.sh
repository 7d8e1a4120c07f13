#!/usr/bin/env bash
# Per-call overhead of each host (C baseline, Python ctypes, Go cgo, Mojo):
# N calls of omen_get on a present ID and N/1000 calls of a 1,000-vector
# put_batch of 768-dim vectors, median of 5 runs each.
# Usage: OMENDB_LIB_DIR=target/release scripts/hosts/bench.sh [N]   (default N=100000)
# Run python.sh / go.sh / mojo.sh once first, or let this install the same tools.
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_lib
need_header
N="${1:-${OMENDB_BENCH_N:-100000}}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"

log "C baseline"
command -v gcc >/dev/null || apt_install gcc libc6-dev
gcc -O2 -I"$INC_DIR" -o "$WORK/bench_c" scripts/hosts/bench_baseline.c \
  -L"$LIB_DIR" -lomendb -Wl,-rpath,"$LIB_DIR"
mkdir -p "$WORK/c" && "$WORK/bench_c" "$WORK/c" "$N"

log "python"
python_deps_venv
OMENDB_LIB="$LIB_DIR/libomendb.so" "$PY_DEPS/bin/python" bindings/python/bench_omendb.py "$N"

log "go"
command -v go >/dev/null || apt_install golang-go
(
  install_prefix # the binding finds the library with pkg-config, and runs it from there
  export CGO_ENABLED=1 GOCACHE="${GOCACHE:-$CACHE/go-build}" GOPATH="${GOPATH:-$CACHE/gopath}" GOPROXY=off
  cd bindings/go
  go build -o "$WORK/bench_go" ./cmd/omendb-bench
  TMPDIR="$WORK" "$WORK/bench_go" -n "$N"
)

log "mojo"
export MODULAR_TELEMETRY_ENABLED=false
make_venv "$CACHE/mojo-venv" "mojo==${OMENDB_MOJO_VERSION:-1.2.0}"
"$CACHE/mojo-venv/bin/mojo" build -I bindings/mojo -Xlinker "-L$LIB_DIR" -Xlinker -lomendb \
  -Xlinker -rpath -Xlinker "$LIB_DIR" bindings/mojo/bench_omendb.mojo -o "$WORK/bench_mojo"
mkdir -p "$WORK/mojo" && "$WORK/bench_mojo" "$WORK/mojo" "$N"
