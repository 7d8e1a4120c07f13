#!/usr/bin/env python3
"""How well RaBitQ-style codes would rank candidates inside OmenDB's IVF
scan, against 4-bit PQ codes of the same bytes (docs/indexes.md, "Why 4-bit
PQ codes, not RaBitQ's"). A simulation in numpy (ranking only, no timing).

Both codes are built over the same coarse quantizer (faiss k-means, nlist
lists, 10 iterations on 40 rows a list) and probed with the same nprobe:

  PQ         faiss IndexIVFPQ(PQ{dim/4}x4), codes of the vectors themselves
             (by_residual False, as OmenDB's L2 codes), ranked by exact ADC
  RaBitQ     1 bit a dimension: o = P(x - c) / |x - c| for a random rotation
             P and the vector's list centroid c; the code is sign(o). The
             scan would use one table a query, built from Pq (16 entries per
             4 dimensions, as OmenDB's 4-bit tables), because
             <sign(o), P(q - c)> = <sign(o), Pq> - <sign(o), Pc> and the
             second term is stored per vector with |x - c| and
             <sign(o)/sqrt(dim), o>: three floats. Ranked by the estimate
             |x-c|^2 + |q-c|^2 - 2 |x-c| (S - g) / f, its table exact or in
             64 levels (OmenDB's fast-scan tables).

Prints, per system, recall@10 of the true 10 nearest among the best R
candidates of the probed lists, and the probed lists' ceiling.

  target/bench-venv/bin/python crates/omendb-bench/scripts/rabitq_sim.py --synthetic 200000,768,200 [--nlist 450] [--nprobe 128]
  target/bench-venv/bin/python crates/omendb-bench/scripts/rabitq_sim.py --data ../shared/data --set siftsmall --nlist 100 --nprobe 8

--synthetic N,DIM,CLUSTERS: the ANN curves' generator (benchdata.make_data,
seed 7, 200 queries; exact ground truth); else DIR/NAME/NAME_{base,query}.fvecs
and NAME_groundtruth.ivecs (TEXMEX).
"""
import argparse
import time

import numpy as np
import faiss


def read_vecs(path, dtype=np.float32):
    a = np.fromfile(path, dtype=np.int32)
    return a.reshape(-1, a[0] + 1)[:, 1:].copy().view(dtype)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--synthetic")
    ap.add_argument("--data")
    ap.add_argument("--set")
    ap.add_argument("--nlist", type=int, default=450)
    ap.add_argument("--nprobe", type=int, default=128)
    args = ap.parse_args()
    if args.synthetic:
        from benchdata import ground_truth, make_data  # this script's folder
        n, dim, clusters = (int(x) for x in args.synthetic.split(","))
        base, q = make_data(n, dim, 200, seed=7, clusters=clusters)
        gt = ground_truth(base, q, 2, 10)
        args.set = f"synthetic ({clusters} clusters)"
    else:
        d = f"{args.data}/{args.set}/{args.set}"
        base, q = read_vecs(f"{d}_base.fvecs"), read_vecs(f"{d}_query.fvecs")
        gt = read_vecs(f"{d}_groundtruth.ivecs", np.int32)[:, :10]
    n, dim = base.shape
    rs = [10, 20, 40, 80, 160, 320]
    faiss.omp_set_num_threads(2)
    km = faiss.Kmeans(dim, args.nlist, niter=10, seed=7)
    km.train(base[:args.nlist * 40])
    cent = km.centroids
    quant = faiss.IndexFlatL2(dim)
    quant.add(cent)
    lists = quant.search(base, 1)[1][:, 0]
    probes = quant.search(q, args.nprobe)[1]

    def recall(cands):
        return {r: round(float(np.mean([len(set(c[:r]) & set(g)) / 10 for c, g in zip(cands, gt)])), 4) for r in rs}

    ceiling = np.mean([np.isin(lists[g], p).mean() for g, p in zip(gt, probes)])
    print(f"{args.set} {n:,} x {dim}, {args.nlist} lists, nprobe {args.nprobe}: ceiling {ceiling:.4f}")

    ivf = faiss.IndexIVFPQ(quant, dim, args.nlist, dim // 4, 4)
    ivf.by_residual = False
    ivf.train(base[:50000])
    ivf.add(base)
    ivf.nprobe = args.nprobe
    print(f"PQ{dim // 4}x4 ({dim // 8} bytes), exact ADC:", recall(ivf.search(q, max(rs))[1]))

    rng = np.random.default_rng(3)
    rot = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)
    res = base - cent[lists]
    norm = np.linalg.norm(res, axis=1)
    o = (res @ rot.T) / np.maximum(norm, np.finfo(np.float32).tiny)[:, None]
    bits = o > 0
    obar = np.where(bits, 1.0, -1.0).astype(np.float32) / np.sqrt(dim)
    f = np.maximum(np.sum(obar * o, axis=1), 1e-6)  # a zero residual: any code, weight 0
    g = np.sum(obar * (cent @ rot.T)[lists], axis=1)
    qrot = q @ rot.T
    groups = dim // 4
    signs = np.array([[1.0 if (k >> b) & 1 else -1.0 for b in range(4)] for k in range(16)], dtype=np.float32)
    codes = (bits.reshape(n, groups, 4) * (1 << np.arange(4))).sum(axis=2)
    order = np.argsort(lists, kind="stable")
    starts = np.searchsorted(lists[order], np.arange(args.nlist + 1))

    def run(levels):
        cands = []
        for i in range(len(q)):
            table = (qrot[i].reshape(groups, 4) @ signs.T) / np.sqrt(dim)
            if levels:
                low = table.min(axis=1, keepdims=True)
                delta = (table.max(axis=1) - table.min(axis=1)).max() / (levels - 1)
                table = low + delta * np.round((table - low) / delta)
            ids = np.concatenate([order[starts[l]:starts[l + 1]] for l in probes[i]])
            s = table[np.arange(groups)[None, :], codes[ids]].sum(axis=1)
            qc = np.sum((q[i][None, :] - cent[lists[ids]]) ** 2, axis=1)
            est = norm[ids] ** 2 + qc - 2 * norm[ids] * (s - g[ids]) / f[ids]
            cands.append(ids[np.argsort(est, kind="stable")[:max(rs)]])
        return cands

    t = time.time()
    print(f"RaBitQ 1 bit ({dim // 8} bytes + 3 floats), exact table:", recall(run(0)), f"({time.time() - t:.0f} s)")
    print(f"RaBitQ 1 bit ({dim // 8} bytes + 3 floats), 64-level table:", recall(run(64)))


if __name__ == "__main__":
    main()
