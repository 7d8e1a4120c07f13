#!/usr/bin/env python3
"""Would a two-stage scan of the IVF lists read fewer bytes for the same
recall? A simulation in numpy and faiss (ranking and bytes only, no timing).

Today a probed list's codes are the vectors' full PQ codes (PQ{dim/4}x4 at
the ANN benchmark's 96 bytes), ranked by ADC, and the best R re-ranked
exactly from the raw vectors. At 1M x 768 a query at recall 0.99 reads
~37 MB of codes and the scan is bound by memory bandwidth on one thread.

The two-stage scan this measures:
  stage 1   the lists hold a short code (S bytes); every probed code is
            ranked by it and the best X kept;
  stage 2   those X are ranked by the full code (read from a per-vector
            array, one gather each) and the best R kept;
  re-rank   the R exactly (recall@10 is then the share of the true 10
            among the R).
Short codes, two kinds:
  prefix    the first S bytes of the full code (its first 2S sub-spaces:
            no second quantizer, nothing more to store or encode)
  separate  a second PQ of 2S sub-spaces over all dimensions (trained and
            encoded beside the full one)
Distances are exact float ADC (OmenDB ranks by 64-level tables: within
a few percent of it).

Prints, for each short code and X, recall@10 at each R, and the bytes a
query reads (codes scanned x S + X x full code + R x raw vector), beside
the one-stage scan (full codes, best R).

  target/bench-venv/bin/python crates/omendb-bench/scripts/twostage_sim.py --synthetic 1000000,768,1000 --nlist 1000 --nprobe 384 --queries 100 --short 16,32 --x 1280,2560,5120,10240 --r 160,320,480,640
  target/bench-venv/bin/python crates/omendb-bench/scripts/twostage_sim.py --data ../shared/data --set siftsmall --nlist 100 --nprobe 8 --m 64 --short 8,16 --x 40,80,160,320 --r 10,20,40,80

--synthetic N,DIM,CLUSTERS: the ANN curves' generator (benchdata.make_data,
seed 7, --queries fresh queries; exact ground truth); else
DIR/NAME/NAME_{base,query}.fvecs (the first --queries queries, exact
ground truth computed here). Short codes are whole bytes of 4-bit codes.
"""
import argparse
import time

import numpy as np
import faiss


def unpack4(codes, m):
    """faiss 4-bit PQ codes (n, m/2 bytes, low nibble first) -> (n, m) indices."""
    lo, hi = codes & 15, codes >> 4
    out = np.empty((codes.shape[0], m), dtype=np.uint8)
    out[:, 0::2], out[:, 1::2] = lo, hi
    return out


def pq4(dim, m, train, base):
    pq = faiss.ProductQuantizer(dim, m, 4)
    pq.train(train)
    return pq, unpack4(pq.compute_codes(base), m)


def tables(pq, q):
    """(m, 16) squared-L2 ADC table of one query."""
    cent = faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub)
    return ((cent - q.reshape(pq.M, 1, pq.dsub)) ** 2).sum(axis=2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--synthetic")
    ap.add_argument("--data", help="DIR holding NAME/NAME_{base,query}.fvecs, NAME_groundtruth.ivecs")
    ap.add_argument("--set")
    ap.add_argument("--m", type=int, default=0, help="full code sub-spaces (default dim / 4)")
    ap.add_argument("--r", default="20,40,80,160,320,640", help="stage-2 depths")
    ap.add_argument("--nlist", type=int, default=450)
    ap.add_argument("--nprobe", type=int, default=256)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--short", default="24,32,48", help="short code bytes")
    ap.add_argument("--x", default="1000,2000,4000,8000,16000", help="stage-1 depths")
    args = ap.parse_args()
    from benchdata import ground_truth, make_data, read_vecs  # this script's folder
    if args.synthetic:
        n, dim, clusters = (int(x) for x in args.synthetic.split(","))
        base, q = make_data(n, dim, args.queries, seed=7, clusters=clusters)
        gt = ground_truth(base, q, 2, 10)
        name = f"synthetic ({clusters} clusters)"
    else:
        d = f"{args.data}/{args.set}/{args.set}"
        base, q = read_vecs(f"{d}_base.fvecs"), read_vecs(f"{d}_query.fvecs")[:args.queries]
        gt = ground_truth(base, q, 2, 10)
        n, dim = base.shape
        name = args.set
    rs = [int(x) for x in args.r.split(",")]
    xs = [int(x) for x in args.x.split(",")]
    faiss.omp_set_num_threads(2)
    t = time.time()
    km = faiss.Kmeans(dim, args.nlist, niter=10, seed=7)
    km.train(base[:args.nlist * 40])
    quant = faiss.IndexFlatL2(dim)
    quant.add(km.centroids)
    lists = quant.search(base, 1)[1][:, 0]
    probes = quant.search(q, args.nprobe)[1]
    order = np.argsort(lists, kind="stable")
    starts = np.searchsorted(lists[order], np.arange(args.nlist + 1))
    train = base[:50000]
    m = args.m or dim // 4
    full_pq, full = pq4(dim, m, train, base)
    separate = {s: pq4(dim, 2 * s, train, base) for s in (int(x) for x in args.short.split(","))}
    print(f"{name} {n:,} x {dim}, {args.nlist} lists, nprobe {args.nprobe}, "
          f"full codes PQ{m}x4 ({m // 2} B); built in {time.time() - t:.0f} s", flush=True)

    def recall_at(cands):
        return [round(float(np.mean([len(set(c[:r]) & set(g)) / 10 for c, g in zip(cands, gt)])), 4) for r in rs]

    scanned = 0
    one_stage = []
    two = {(kind, s, x): [] for kind in ("prefix", "separate") for s in separate for x in xs}
    for i in range(len(q)):
        ids = np.concatenate([order[starts[l]:starts[l + 1]] for l in probes[i]])
        scanned += len(ids)
        parts = tables(full_pq, q[i])[np.arange(m)[None, :], full[ids]]  # (cands, m)
        d_full = parts.sum(axis=1)
        one_stage.append(ids[np.argsort(d_full, kind="stable")[:max(rs)]])
        cum = np.cumsum(parts, axis=1)
        for s, (pq_s, codes_s) in separate.items():
            d_prefix = cum[:, 2 * s - 1]
            d_sep = tables(pq_s, q[i])[np.arange(2 * s)[None, :], codes_s[ids]].sum(axis=1)
            for kind, d1 in (("prefix", d_prefix), ("separate", d_sep)):
                first = np.argsort(d1, kind="stable")
                for x in xs:
                    keep = first[:x]
                    two[(kind, s, x)].append(ids[keep[np.argsort(d_full[keep], kind="stable")[:max(rs)]]])
    per_query = scanned / len(q)
    raw = 4 * dim
    print(f"codes scanned a query: {per_query:,.0f}; recall@10 among the best R = {rs}; MB read a query at each R")

    def mb(code_bytes, x, r):
        return (per_query * code_bytes + x * m // 2 + r * raw) / 1e6

    print(f"one stage, {m // 2} B codes: {recall_at(one_stage)}  MB {[round(mb(m // 2, 0, r), 1) for r in rs]}")
    for (kind, s, x), cands in two.items():
        print(f"{kind:8s} {s:3d} B, X {x:6d}: {recall_at(cands)}  MB {[round(mb(s, x, r), 1) for r in rs]}", flush=True)


if __name__ == "__main__":
    main()
