#!/usr/bin/env bash
# Coverage-guided fuzzing of the store with cargo-fuzz (libFuzzer), on the
# stable toolchain. The targets are fuzz/fuzz_targets/{open_store,ops}.rs;
# their logic (fuzz/src/targets.rs) also runs as a plain test over the
# committed corpus in `make test` (crates/omendb/tests/fuzz_corpus.rs).
#
#   scripts/fuzz.sh                   both targets, 60 s each
#   scripts/fuzz.sh ops 14400         one target for four hours
#   scripts/fuzz.sh all 3600 2        both targets, an hour each, 2 jobs
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`, ~3 min) and a C++ compiler.
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address); on the stable
# toolchain RUSTC_BOOTSTRAP=1 lets them through. The first build compiles the
# crate and its dependencies with ASan (several minutes on 2 cores).
# New inputs land in fuzz/corpus/<target>/ (shrink with
# `cargo fuzz cmin <target>` before committing); crashes in
# fuzz/artifacts/<target>/ (replay: cargo fuzz run <target> <file>).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
target=${1:-all}
seconds=${2:-60}
jobs=${3:-1}
export RUSTC_BOOTSTRAP=1
# Scratch stores on tmpfs when there is one: file creation and removal on a
# disk mounted with `discard` dominate otherwise.
[ -d /dev/shm ] && export TMPDIR=${TMPDIR:-/dev/shm}
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 1
fi
targets=("$target")
[ "$target" = all ] && targets=(open_store ops)
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$seconds" -jobs="$jobs" -workers="$jobs" \
        -max_len=65536 -timeout=20 -rss_limit_mb=4096
done
