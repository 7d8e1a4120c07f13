#!/usr/bin/env python3
"""faiss IndexPQ recall@10 on crates/omendb-bench/scripts/compare.py's data set for several k-means
seeds (faiss's default is 1234), each with its reconstruction error: how much
of a recall difference is the seed.

    target/bench-venv/bin/python crates/omendb-bench/scripts/faiss_seeds.py --write /tmp/cmpdata
    cargo run --release -p omendb-bench --bin pq_seeds -- /tmp/cmpdata/base.f32 /tmp/cmpdata/q.f32 /tmp/cmpdata/gt.i32 768 25 1234,1,2,3,4
"""
import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np  # noqa: E402

import compare  # noqa: E402  (crates/omendb-bench/scripts/compare.py: the same data and ground truth)

ap = argparse.ArgumentParser()
ap.add_argument("--write", required=True, help="directory for base.f32, q.f32, gt.i32")
ap.add_argument("--seeds", default="1234,1,2,3")
args = ap.parse_args()

out = Path(args.write)
out.mkdir(parents=True, exist_ok=True)
base, queries = compare.make_data(100_000, 768, 1000)
gt = compare.ground_truth(base, queries, os.cpu_count())
base.tofile(out / "base.f32")
queries.tofile(out / "q.f32")
gt.astype(np.int32).tofile(out / "gt.i32")
for seed in [int(s) for s in args.seeds.split(",")]:
    index, recall = compare.faiss_pq_at_seed(base, queries, gt, 25_000, 32, seed)
    # Mean squared reconstruction error of the encoded rows: what k-means
    # minimizes (crates/omendb-bench/src/bin/pq_seeds.rs prints the same for OmenDB).
    decoded = index.pq.decode(index.pq.compute_codes(base))
    mse = float(((decoded - base) ** 2).sum(axis=1).mean())
    print(f"faiss IndexPQ 32x8, seed {seed}: recall@10 {recall:.4f} mse {mse:.4f}", flush=True)
