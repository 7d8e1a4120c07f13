#!/usr/bin/env bash
# Recall/QPS curves of OmenDB's search beside faiss, usearch and hnswlib
# (crates/omendb-bench/scripts/ann_curves.py; `make ann`). Creates (once) the
# virtualenv target/bench-venv (crates/omendb-bench/scripts/venv.sh), builds
# the release library for the Python binding, and runs the sweep.
# Arguments are passed to ann_curves.py (--data, --n, --dim, --clusters, --batch, ...).
set -euo pipefail
cd "$(dirname "$0")/../../.."   # the repository root
. crates/omendb-bench/scripts/venv.sh
cargo build --release -p omendb-capi
exec "$VENV/bin/python" crates/omendb-bench/scripts/ann_curves.py "$@"
