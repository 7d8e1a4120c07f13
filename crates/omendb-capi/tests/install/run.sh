#!/usr/bin/env bash
# Proves the library installs like a C library: `make install` into a
# temporary prefix, then
#   - the layout: lib/libomendb.so.X.Y.Z, its soname link libomendb.so.X and
#     the dev link libomendb.so, lib/libomendb.a, include/omendb.h,
#     lib/pkgconfig/omendb.pc, bin/omendb;
#   - `readelf -d` shows the soname, and a program linked against the
#     installed library records NEEDED libomendb.so.X;
#   - `cc app.c $(pkg-config --cflags --libs omendb)` builds a program that
#     runs (PKG_CONFIG_PATH pointing at the prefix);
#   - static linking against libomendb.a with pkg-config's Libs.private
#     builds a program that needs no libomendb.so at run time;
#   - DESTDIR staging writes under DESTDIR while omendb.pc names the PREFIX;
#   - the installed `omendb` tool reads the store the program wrote.
# Usage: bash crates/omendb-capi/tests/install/run.sh   (from anywhere; builds what it needs)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CRATE="$(cd "$HERE/../.." && pwd)"
ROOT="$(cd "$CRATE/../.." && pwd)"
CC="${CC:-cc}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

fail() { echo "install test FAILED: $*" >&2; exit 1; }
step() { echo "== install test: $*" >&2; }

command -v pkg-config >/dev/null || fail "pkg-config is not installed (apt-get install pkg-config)"
command -v readelf >/dev/null || fail "readelf is not installed (apt-get install binutils)"

VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/ s/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)"
MAJOR="${VERSION%%.*}"
PREFIX="$WORK/prefix"

step "make install PREFIX=$PREFIX"
make -s -C "$ROOT" install PREFIX="$PREFIX" >/dev/null

step "layout"
for f in lib/libomendb.so."$VERSION" lib/libomendb.a include/omendb.h lib/pkgconfig/omendb.pc bin/omendb; do
    [ -f "$PREFIX/$f" ] || fail "missing $f"
done
[ "$(readlink "$PREFIX/lib/libomendb.so.$MAJOR")" = "libomendb.so.$VERSION" ] || fail "libomendb.so.$MAJOR is not a link to libomendb.so.$VERSION"
[ "$(readlink "$PREFIX/lib/libomendb.so")" = "libomendb.so.$MAJOR" ] || fail "libomendb.so is not a link to libomendb.so.$MAJOR"
cmp -s "$ROOT/include/omendb.h" "$PREFIX/include/omendb.h" || fail "installed header differs from include/omendb.h"

step "soname"
readelf -d "$PREFIX/lib/libomendb.so.$VERSION" | grep -q "(SONAME).*\[libomendb.so.$MAJOR\]" \
    || fail "no SONAME libomendb.so.$MAJOR in: $(readelf -d "$PREFIX/lib/libomendb.so.$VERSION" | grep SONAME)"

step "pkg-config"
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"
[ "$(pkg-config --modversion omendb)" = "$VERSION" ] || fail "pkg-config --modversion: $(pkg-config --modversion omendb)"
[ "$(pkg-config --variable=libdir omendb)" = "$PREFIX/lib" ] || fail "libdir: $(pkg-config --variable=libdir omendb)"
pkg-config --validate omendb 2>/dev/null || pkg-config --exists omendb || fail "omendb.pc does not validate"

step "dynamic: cc app.c \$(pkg-config --cflags --libs omendb)"
# shellcheck disable=SC2046
"$CC" -std=c11 -Wall -Wextra -Werror -pedantic -o "$WORK/app" "$HERE/app.c" $(pkg-config --cflags --libs omendb)
readelf -d "$WORK/app" | grep -q "(NEEDED).*\[libomendb.so.$MAJOR\]" || fail "app does not record NEEDED libomendb.so.$MAJOR"
out="$(LD_LIBRARY_PATH="$PREFIX/lib" "$WORK/app" "$WORK/store")" || fail "app failed: $out"
echo "$out" >&2
case "$out" in "ok: omendb $VERSION"*) ;; *) fail "app printed: $out" ;; esac
# Without the library path the loader must not find it: the binary really uses the install.
if env -u LD_LIBRARY_PATH "$WORK/app" "$WORK/store-x" >/dev/null 2>&1; then
    [ -e "/usr/lib/libomendb.so.$MAJOR" ] || [ -e "/usr/local/lib/libomendb.so.$MAJOR" ] || ldconfig -p 2>/dev/null | grep -q libomendb \
        || fail "app ran without LD_LIBRARY_PATH: where did it find libomendb.so.$MAJOR?"
fi

step "static: cc app.c libomendb.a \$(pkg-config --static --libs-only-l omendb)"
LIBDIR="$(pkg-config --variable=libdir omendb)"
PRIVATE="$(pkg-config --static --libs-only-l omendb | sed 's/-lomendb\b//')"
# shellcheck disable=SC2046,SC2086
"$CC" -std=c11 -Wall -Wextra -Werror -pedantic -o "$WORK/app-static" "$HERE/app.c" $(pkg-config --cflags omendb) \
    "$LIBDIR/libomendb.a" $PRIVATE
if readelf -d "$WORK/app-static" | grep -q "libomendb"; then fail "the static build still needs libomendb.so"; fi
env -u LD_LIBRARY_PATH "$WORK/app-static" "$WORK/store-static" >/dev/null || fail "the static build did not run"

step "the installed tool reads the store"
"$PREFIX/bin/omendb" info "$WORK/store" | grep -q "live vectors    3" || fail "bin/omendb info"
"$PREFIX/bin/omendb" verify "$WORK/store" >/dev/null || fail "bin/omendb verify"

step "DESTDIR staging"
make -s -C "$ROOT" install-lib PREFIX=/opt/omendb DESTDIR="$WORK/stage" >/dev/null
[ -f "$WORK/stage/opt/omendb/lib/libomendb.so.$VERSION" ] || fail "DESTDIR: library not staged"
grep -qx 'prefix=/opt/omendb' "$WORK/stage/opt/omendb/lib/pkgconfig/omendb.pc" || fail "DESTDIR: omendb.pc must name PREFIX, not DESTDIR"
make -s -C "$ROOT" uninstall PREFIX=/opt/omendb DESTDIR="$WORK/stage" >/dev/null
[ ! -e "$WORK/stage/opt/omendb/lib/libomendb.so" ] || fail "uninstall left libomendb.so"

echo "install test passed: $PREFIX layout, soname libomendb.so.$MAJOR, pkg-config build (dynamic and static), DESTDIR" >&2
