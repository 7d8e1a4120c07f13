#!/usr/bin/env bash
# Go host: cgo binding tests (bindings/go) against an already built
# libomendb.so, with the race detector (-race: Debian's golang-go ships its
# runtime; it needs cgo, as the binding does). Installs Debian's golang-go
# (and a C compiler) if missing.
# Usage: scripts/hosts/go.sh [go test args...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_lib
need_header
command -v go >/dev/null || apt_install golang-go
command -v gcc >/dev/null || command -v cc >/dev/null || apt_install gcc libc6-dev
# Flags from the environment come before the #cgo lines, so they win.
export CGO_ENABLED=1
export CGO_CFLAGS="-I$INC_DIR ${CGO_CFLAGS:-}"
export CGO_LDFLAGS="-L$LIB_DIR -Wl,-rpath,$LIB_DIR ${CGO_LDFLAGS:-}"
export GOCACHE="${GOCACHE:-$CACHE/go-build}"
export GOPATH="${GOPATH:-$CACHE/gopath}"
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export GOPROXY=off GOTOOLCHAIN=local
log "$(go version); tests against $LIB_DIR/libomendb.so"
cd "$ROOT/bindings/go"
go vet ./...
go test -race -count=1 "$@" ./...
