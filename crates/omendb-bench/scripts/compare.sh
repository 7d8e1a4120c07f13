#!/usr/bin/env bash
# OmenDB vs numpy.memmap, faiss-cpu and usearch in one run (see crates/omendb-bench/scripts/compare.py).
# Creates (once) a virtualenv under target/bench-venv with numpy, faiss-cpu,
# usearch and matplotlib (crates/omendb-bench/scripts/venv.sh), builds the release benchmark, and runs the comparison.
# Arguments are passed to compare.py (--runs, --threads, --n, --dim, ...).
set -euo pipefail
cd "$(dirname "$0")/../../.."   # the repository root
. crates/omendb-bench/scripts/venv.sh
cargo build --release -p omendb-capi
cargo build --release -p omendb-bench --bin omendb_bench --bin pq_seeds
mkdir -p target/bench
cc -O2 -Wall -Wextra -Iinclude crates/omendb-bench/scripts/c_get.c -Ltarget/release -lomendb -Wl,-rpath,"$PWD/target/release" -o target/bench/c_get
cc -O2 -Wall -Wextra -pthread crates/omendb-bench/scripts/write_floor.c -o target/bench/write_floor
exec "$VENV/bin/python" crates/omendb-bench/scripts/compare.py "$@"
