#!/usr/bin/env bash
# Go host: the cgo binding (bindings/go, module omendb.dev/omendb) against
# an already built libomendb.so, installed first into a prefix outside the
# repository (`make install-lib`, see install_prefix in common.sh): the binding finds it with pkg-config
# (`#cgo pkg-config: omendb`), as it does an installed library. Then
#   - go vet, and the tests with the race detector (-race: Debian's
#     golang-go ships its runtime; it needs cgo, as the binding does);
#   - a Go program in a directory outside the repository, depending on
#     the module, builds against the installed library with pkg-config
#     alone, records no path of the repository, and runs.
# Installs Debian's golang-go, pkg-config (and a C compiler) if missing.
# Usage: scripts/hosts/go.sh [go test args...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_lib
need_header
command -v go >/dev/null || apt_install golang-go
command -v gcc >/dev/null || command -v cc >/dev/null || apt_install gcc libc6-dev
install_prefix
APP="$(mktemp -d)"
trap 'rm -rf "$APP"' EXIT
export CGO_ENABLED=1
export GOCACHE="${GOCACHE:-$CACHE/go-build}"
export GOPATH="${GOPATH:-$CACHE/gopath}"
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export GOPROXY=off GOTOOLCHAIN=local
log "$(go version); tests against libomendb $(pkg-config --modversion omendb) installed from $LIB_DIR"
cd "$ROOT/bindings/go"
go vet ./...
go test -race -count=1 "$@" ./...

log "a program outside the repository, built with pkg-config against the installed library"
# The module comes from this checkout through a replace directive (no
# network here); the library and header only from the prefix.
cat > "$APP/go.mod" <<MOD
module example.com/omendb-app

go 1.19

require omendb.dev/omendb v0.0.0

replace omendb.dev/omendb => $ROOT/bindings/go
MOD
cp "$ROOT/bindings/go/example/main.go" "$APP/main.go"
(cd "$APP" && go build -o app .)
if readelf -d "$APP/app" | grep -E "RPATH|RUNPATH" | grep -qF "$ROOT"; then
  die "the program records a path of the repository: $(readelf -d "$APP/app" | grep -E 'RPATH|RUNPATH')"
fi
readelf -d "$APP/app" | grep -q "(NEEDED).*libomendb.so" || die "the program does not link libomendb.so"
out="$("$APP/app" "$APP/store")" || die "the program failed: $out"
echo "$out" >&2
case "$out" in *"ok: omendb $(pkg-config --modversion omendb)"*) ;; *) die "the program printed: $out" ;; esac
# It runs from the prefix: without LD_LIBRARY_PATH the loader finds no library.
if env -u LD_LIBRARY_PATH "$APP/app" "$APP/store2" >/dev/null 2>&1; then
  ldconfig -p 2>/dev/null | grep -q libomendb || die "the program ran without LD_LIBRARY_PATH: it did not use the install"
fi
