#!/usr/bin/env python3
"""faiss IndexPQ recall@10 (and IndexRefineFlat k_factor=10, the equivalent of
omendb's rerank=100) on the same data sets and settings as
crates/omendb-bench/src/bin/pq_recall.rs, for the comparison column of docs/pq.md.
Usage: target/bench-venv/bin/python crates/omendb-bench/scripts/faiss_recall.py DATA_DIR OUT.json"""
import json
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import faiss  # noqa: E402
import numpy as np  # noqa: E402

from benchdata import read_vecs as vecs  # noqa: E402


def main():
    root, out = sys.argv[1], sys.argv[2]
    faiss.omp_set_num_threads(int(os.environ.get("THREADS", "2")))
    sets = [("siftsmall", "L2", "siftsmall_groundtruth.ivecs"), ("cohere768", "L2", "cohere768_groundtruth.ivecs"),
            ("cohere768", "IP", "cohere768_groundtruth_ip.ivecs"), ("bgem3_1024", "cosine", "bgem3_1024_groundtruth.ivecs")]
    rows = []
    for name, metric, gtf in sets:
        d = os.path.join(root, name)
        base = vecs(os.path.join(d, f"{name}_base.fvecs"), np.float32)
        q = vecs(os.path.join(d, f"{name}_query.fvecs"), np.float32)
        gt = vecs(os.path.join(d, gtf), np.int32)[:, :10]
        if metric == "cosine":
            base = base / np.linalg.norm(base, axis=1, keepdims=True)
            q = q / np.linalg.norm(q, axis=1, keepdims=True)
        # Cosine: unit vectors scanned with L2, as omendb does (same exact
        # ranking; the ADC also sees the reconstruction's norm error).
        fm = faiss.METRIC_INNER_PRODUCT if metric == "IP" else faiss.METRIC_L2
        dim = base.shape[1]
        for m in (8, 16, 32, 64):
            if dim % m:
                continue
            for bits in (8, 4):
                pq = faiss.IndexPQ(dim, m, bits, fm)
                pq.train(base)
                pq.add(base)
                _, ids = pq.search(q, 10)
                r = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, gt)])
                ref = faiss.IndexRefineFlat(pq, faiss.swig_ptr(base))
                ref.k_factor = 10
                _, ids = ref.search(q, 10)
                rr = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, gt)])
                rows.append({"dataset": name, "metric": metric, "pq_m": m, "bits": bits,
                             "recall_at_10": round(float(r), 4), "recall_at_10_refine100": round(float(rr), 4)})
                print(rows[-1], flush=True)
    json.dump(rows, open(out, "w"), indent=1)


main()
