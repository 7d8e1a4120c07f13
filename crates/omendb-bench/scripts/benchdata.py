"""Data helpers shared by the Python benchmark scripts (compare.py,
faiss_recall.py, ann_curves.py): the clustered synthetic set, TEXMEX
.fvecs/.ivecs files, exact ground truth and recall@k."""

import numpy as np


def make_data(n, dim, nq, seed=7, clusters=256, spread=0.5):
    """Clustered embeddings with a low intrinsic dimension, like
    crates/omendb-bench/src/bin/bench_common/synthetic.rs: `clusters` centres +
    16 latent factors (scaled by `spread`) + noise. The nq queries are fresh draws from the same
    distribution: near the data, never rows of it. Deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim), dtype=np.float32)
    basis = (rng.standard_normal((16, dim), dtype=np.float32) * spread).astype(np.float32)

    def rows(m):
        out = np.empty((m, dim), dtype=np.float32)
        for s in range(0, m, 100_000):  # in blocks: 1M x 768 needs no 3 GB temporaries
            e = min(m, s + 100_000)
            c = rng.integers(0, clusters, e - s)
            z = rng.standard_normal((e - s, 16), dtype=np.float32)
            out[s:e] = centers[c] + z @ basis + 0.05 * (rng.random((e - s, dim), dtype=np.float32) - 0.5)
        return out

    return rows(n), rows(nq)


def read_vecs(path, dtype=np.float32):
    """A TEXMEX .fvecs (dtype float32) or .ivecs (int32) file as an (n, dim) array."""
    a = np.fromfile(path, dtype=np.int32)
    d = a[0]
    return a.reshape(-1, d + 1)[:, 1:].copy().view(dtype)


def ground_truth(base, queries, threads, k=10, block=1000):
    """Exact L2 k nearest rows of `base` for each query (faiss IndexFlatL2,
    queries in blocks), as int32 (nq, k)."""
    import faiss
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexFlatL2(base.shape[1])
    index.add(base)
    out = np.empty((len(queries), k), dtype=np.int32)
    for s in range(0, len(queries), block):
        _, ids = index.search(queries[s:s + block], k)
        out[s:s + block] = ids
    return out


def recall(ids, gt, k=10):
    """Mean recall@k: the share of each query's k true neighbours found in its first k results."""
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(ids, gt)]))
