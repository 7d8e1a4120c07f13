#!/usr/bin/env bash
# Exact batch search: OmenDB vs faiss IndexFlatL2 / IndexFlatIP in one run
# (see crates/omendb-bench/scripts/exact_batch.py). Creates (once) the
# benchmark virtualenv (crates/omendb-bench/scripts/venv.sh), builds the
# release program and runs the comparison. Arguments are passed to
# exact_batch.py (--n, --dims, --rounds, --json, ...).
set -euo pipefail
cd "$(dirname "$0")/../../.."   # the repository root
. crates/omendb-bench/scripts/venv.sh
cargo build --release -p omendb-bench --bin exact_batch
exec "$VENV/bin/python" crates/omendb-bench/scripts/exact_batch.py "$@"
