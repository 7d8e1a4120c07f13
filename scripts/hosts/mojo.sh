#!/usr/bin/env bash
# Mojo host: builds and runs bindings/mojo/{test_omendb,example}.mojo against
# an already built libomendb.so. Installs Mojo from PyPI into a venv under
# target/hosts/ once (about 700 MB; reruns reuse it).
# Usage: scripts/hosts/mojo.sh
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_lib
export MODULAR_TELEMETRY_ENABLED=false
MOJO_VERSION="${OMENDB_MOJO_VERSION:-1.2.0}"
VENV="$CACHE/mojo-venv"
make_venv "$VENV" "mojo==$MOJO_VERSION"
MOJO="$VENV/bin/mojo"
log "$("$MOJO" --version); tests against $LIB_DIR/libomendb.so"
LINK=(-Xlinker "-L$LIB_DIR" -Xlinker -lomendb -Xlinker -rpath -Xlinker "$LIB_DIR")
BIN="$CACHE/mojo-bin"
mkdir -p "$BIN"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"
for prog in test_omendb example; do
  "$MOJO" build -I bindings/mojo "${LINK[@]}" "bindings/mojo/$prog.mojo" -o "$BIN/$prog"
done
mkdir -p "$WORK/example"
"$BIN/example" "$WORK/example"
mkdir -p "$WORK/test"
"$BIN/test_omendb" "$WORK/test"
