#!/usr/bin/env bash
# Mojo host: the package bindings/mojo/omendb against an already built
# libomendb.so. Installs Mojo from PyPI into a venv under target/hosts/ once
# (about 700 MB; reruns reuse it). Then
#   - builds and runs bindings/mojo/{test_omendb,example}.mojo with the
#     package imported from source (-I bindings/mojo);
#   - precompiles the package (mojo precompile -> omendb.mojoc) and builds
#     example.mojo as a program in a directory outside the repository that
#     imports the precompiled package and links the library installed in a
#     prefix (make install-lib; flags from pkg-config), and runs it.
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

log "the precompiled package, imported by a program outside the repository"
install_prefix
mkdir -p "$WORK/pkg" "$WORK/app"
"$MOJO" precompile bindings/mojo/omendb -o "$WORK/pkg/omendb.mojoc"
cp bindings/mojo/example.mojo "$WORK/app/main.mojo"
read -r -a PC_LINK <<< "$(pkg-config --libs omendb)"
(cd "$WORK/app" && "$MOJO" build -I "$WORK/pkg" "${PC_LINK[@]/#/-Xlinker=}" main.mojo -o app)
out="$("$WORK/app/app" "$WORK/app")" || die "the program failed: $out"
echo "$out" >&2
case "$out" in "omendb $(pkg-config --modversion omendb)"*) ;; *) die "the program printed: $out" ;; esac
