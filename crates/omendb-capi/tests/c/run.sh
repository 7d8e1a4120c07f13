#!/bin/sh
# Builds the library (cargo build), then builds and runs the C ABI tests
# (tests/c) and the C demo (examples/c) against it.
#
#   crates/omendb-capi/tests/c/run.sh               debug library, tests + demo
#   crates/omendb-capi/tests/c/run.sh --valgrind    also run the test suite under valgrind
#   crates/omendb-capi/tests/c/run.sh --sanitize    also run it built with AddressSanitizer + UBSan
#   crates/omendb-capi/tests/c/run.sh test_name...  run only the named tests (+ the demo)
#
# Both flags may be given. Environment: OMEN_SKIP_CARGO=1 uses the library
# already in target/debug; OMEN_VALGRIND_LIB_DIR and OMEN_SANITIZE_LIB_DIR
# pick the library those runs use (e.g. target/release).
# Exit status is non-zero if the build, any test or the demo fails.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
crate=$(cd "$here/../.." && pwd)
root=$(cd "$crate/../.." && pwd)
valgrind=0
sanitize=0
while [ $# -gt 0 ]; do
    case "$1" in
        --valgrind) valgrind=1 ;;
        --sanitize) sanitize=1 ;;
        *) break ;;
    esac
    shift
done

if [ "${OMEN_SKIP_CARGO:-0}" != "1" ]; then
    (cd "$root" && cargo build -p omendb-capi)
fi
libdir="$root/target/debug"

status=0
# The demo first, so the test runner's "C tests: N passed, M failed" line
# closes the output.
echo "== C demo (examples/c) =="
make -s -C "$root/examples/c" OMEN_LIB_DIR="$libdir" -B demo
if "$root/examples/c/demo"; then
    make -s -C "$root/examples/c" clean
    echo "C demo: passed"
else
    echo "C demo: FAILED"
    status=1
fi

make -s -C "$here" OMEN_LIB_DIR="$libdir" all
make -s -C "$here" OMEN_LIB_DIR="$libdir" test TESTS="$*" || status=1
if [ "$valgrind" = 1 ]; then
    # OMEN_VALGRIND_LIB_DIR (e.g. target/release: optimized; function names
    # but no line numbers, target/profiling for those)
    # keeps the CPU-heavy tests affordable under valgrind.
    make -s -C "$here" OMEN_LIB_DIR="${OMEN_VALGRIND_LIB_DIR:-$libdir}" -B all
    make -s -C "$here" OMEN_LIB_DIR="${OMEN_VALGRIND_LIB_DIR:-$libdir}" valgrind TESTS="$*" || status=1
fi
if [ "$sanitize" = 1 ]; then
    make -s -C "$here" OMEN_LIB_DIR="${OMEN_SANITIZE_LIB_DIR:-$libdir}" asan TESTS="$*" || status=1
fi
exit $status
