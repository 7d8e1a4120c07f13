#!/usr/bin/env bash
# `make bench`: the whole benchmark suite, 25-35 minutes on 2 shared cores.
#   1. the OmenDB grid (omendb_bench --grid quick) -> target/bench/grid.json
#   2. the memory benchmark (1M x 768 PQ32, fresh process) -> target/bench/mem.json
#   3. the comparison with numpy / faiss / usearch, which also renders the
#      targets, the grid and the memory figures into docs/benchmarks.md + .png
# BENCH_GRID=full for the full grid (dims 128/768/1536 x 10K/100K/1M, hours).
set -euo pipefail
cd "$(dirname "$0")/../../.."   # the repository root
mkdir -p target/bench
cargo build --release -p omendb-bench --bins
target/release/omendb_bench --grid "${BENCH_GRID:-quick}" --runs "${BENCH_RUNS:-3}" \
    --json target/bench/grid.json | tee target/bench/grid.log
target/release/omendb_mem run --json target/bench/mem.json | tee target/bench/mem.log
bash crates/omendb-bench/scripts/compare.sh --runs "${BENCH_RUNS:-3}" "$@" | tee target/bench/compare.log
