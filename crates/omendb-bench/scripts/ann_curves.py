#!/usr/bin/env python3
"""Recall/QPS curves: OmenDB's search beside faiss, usearch and hnswlib (issue 19).

Every system is built on the same vectors and swept over its search
parameters; each configuration is timed on the same queries with the same k,
and every point (system, parameters, recall@k, queries/s, build seconds) is
kept. Systems and sweeps (--systems picks a subset):

  faiss-ivfpq    index_factory "IVF{nlist},PQ{m}x4fs,RFlat": IVF with 4-bit
                 PQ fast-scan codes and an exact re-rank of k_factor x k
                 candidates; nlist in {sqrt(n) / 2, sqrt(n), 4 sqrt(n)}
                 (--nlist; at most n / 39, faiss's minimum of training rows a
                 list; sqrt(n) / 2 is about OmenDB's own count on the small
                 sets, whose lists hold at least 64 codes, and answered
                 faster there for faiss too), nprobe 1-512 (steps
                 of about 1.5x, up to nlist) and k_factor 1-256 swept (the
                 depth pruned, see below); trained on min(n, 50 nlist) rows
  faiss-ivfrabitq  index_factory "IVF{nlist},RaBitQfs{bits},RFlat": the same
                 IVF, lists, training rows, nprobe x k_factor grid and re-rank,
                 with faiss's RaBitQ fast-scan codes of the same bytes (bits =
                 8 x code bytes / dim a dimension; faiss adds 8 bytes of
                 factors a vector at 1 bit, more at more bits)
  faiss-hnsw     IndexHNSWFlat, M 16 and 32, efConstruction 200; efSearch swept
  usearch-hnsw   usearch Index (f32, l2sq), connectivity 16 and 32,
                 expansion_add 200; expansion_search swept
  hnswlib        (when installed) M 16 and 32, ef_construction 200; ef swept
  omendb-exact   OmenDB's exact scan (omen_search with exact = 1)
  omendb-pq      OmenDB's PQ scan (pq_m = the code bytes of faiss-ivfpq, 8-bit
                 codes), rerank swept (0 = ADC order alone)
  omendb-ivf     OmenDB's IVF index (--ivf-lists, default 0: the store's
                 choice, about sqrt(n) lists, at most n / 64), PQ{2B}x4 codes (the same bytes as
                 faiss-ivfpq's; of the vectors, residuals for inner product), target_recall swept (the store's own
                 calibration picks nprobe and the re-rank depth), then
                 explicitly faiss-ivfpq's grid: nprobe 1-512 (up to nlist)
                 x rerank k x k_factor (10-2,560 at k = 10), pruned alike

Steps (--grid): the lists above are the coarse grid (about 1.5x a step);
--grid fine takes steps of about 1.25x for every system alike (nprobe,
k_factor and rerank, efSearch / expansion_search / ef), for the small sets,
where one coarse step moves recall by several points.

Re-rank depth pruning (the three IVF systems): at each nprobe the depth rises
until a step adds no recall; the deeper settings of that nprobe (as much
work or more, for no more recall) are not run.

Code size: --code-bytes B (default dim / 4): faiss-ivfpq stores PQ{2B}x4fs
(B bytes a vector, 2 dimensions a 4-bit code at the default), OmenDB PQ{B}x8
(B bytes too).

Timing. Single: one query per call, one thread (faiss.omp_set_num_threads(1),
hnswlib set_num_threads(1), usearch threads=1; OmenDB's omen_search runs on
the calling thread). Batch (--batch): all --nq queries in one call per
pass, --threads threads for every system. Before timing: one warm-up query
(single) or one warm-up pass (batch). Each configuration runs --passes passes
(at least 3) over the query set; queries/s = queries / median pass time;
recall@k is from the last pass. A pass goes over the query set as
many times as it takes to last about --min-pass-s (sized by the warm-up
pass), so fast configurations on small sets are not timed on milliseconds. OmenDB is driven through its Python binding
(pyomendb from bindings/python/src, ctypes over target/release/libomendb.so) with the
raw omen_search / omen_search_batch calls and preallocated buffers (their
addresses and the parameters' taken once, not at every call), so that,
like the peers, a search returns integer keys (mapped to rows after timing).
Build seconds: train + add (faiss, OmenDB: put + checkpoint + train_pq;
OmenDB exact: put + checkpoint) at --threads threads.

Data: --data synthetic (--n, --dim, --clusters, --spread; clustered vectors
with a low intrinsic dimension, benchdata.make_data, seed --seed; at the
default spread 0.5 the clusters overlap (a point's spread around its centre
exceeds the distance between centres), so the set behaves like a 16-dim
Gaussian cloud and is hard for IVF; a smaller --spread separates them; the --nq queries are
fresh draws near the data, not rows of it; ground truth by exact search,
faiss IndexFlatL2 in blocks) or a real set of ../shared/data (siftsmall,
cohere768, bgem3_1024: the TEXMEX files at their own sizes, 100 queries, the
shipped L2 ground truth; bgem3_1024 is unit-norm, so L2 order = cosine order).
--metric ip (cohere768, whose original metric it is; the sets shipping an
inner-product ground truth): every system searches by inner product
(faiss METRIC_INNER_PRODUCT, usearch "ip", hnswlib "ip", OmenDB "ip"),
against that ground truth.

Outputs (--out, default target/bench/ann-<data>): ann.json (the arguments,
the machine, the versions, every point, the Pareto front of each system),
ann.png (recall on x, queries/s on a log y axis, one line per system's Pareto
front, faint dots for the other points; one panel per mode) and ann.md
(queries/s at recall >= 0.9 / 0.95 / 0.99 per system: the best measured point
at or above the target, no interpolation).

The machine is shared: read ratios of points measured in the same run, not
absolute figures. Reproduce (creates target/bench-venv, builds the library):
  bash crates/omendb-bench/scripts/ann.sh --data synthetic --n 100000 --dim 128 --clusters 256
  bash crates/omendb-bench/scripts/ann.sh --data siftsmall
  make ann                        # the default: 100,000 x 128 synthetic, single + batch
Re-render the plot and table from a saved run (numpy, matplotlib):
  target/bench-venv/bin/python crates/omendb-bench/scripts/ann_curves.py --render-only target/bench/ann-synthetic/ann.json
  (--out DIR writes ann.json / ann.png / ann.md to DIR instead, e.g. for the
  runs committed in crates/omendb-bench/results/)
"""

import argparse
import ctypes
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# See compare.py: libgomp's spinning collapses on an oversubscribed machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from benchdata import ground_truth, make_data, read_vecs, recall  # noqa: E402  (this script's folder)

ROOT = Path(__file__).resolve().parents[3]  # crates/omendb-bench/scripts/ -> the repository root
DATA = ROOT.parent / "shared" / "data"
SYSTEMS = ["faiss-ivfpq", "faiss-ivfrabitq", "faiss-hnsw", "usearch-hnsw", "hnswlib", "omendb-exact", "omendb-pq", "omendb-ivf"]
TARGETS = (0.9, 0.95, 0.99)
HNSW_EF = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
# Steps of about 1.5x, as OmenDB's calibration measures probe counts (a
# grid of powers of 2 left faiss between 128 and 256 at recall 0.95).
NPROBE = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
K_FACTOR = [1, 2, 4, 8, 16, 32, 64, 128, 256]
RERANK = [0, 10, 20, 50, 100, 200, 500, 1000]
# --grid fine: steps of about 1.25x, for every system alike. On the small
# real sets a 1.5x step moves recall by a few points (siftsmall: OmenDB's
# re-rank 20 -> 40 took recall@10 from 0.931 to 0.975 at 12 lists), so a
# system's fastest setting at 0.95 may lie between two coarse points.
FINE_HNSW_EF = [10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512]
FINE_NPROBE = [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96,
               128, 160, 192, 256, 320, 384, 512]
FINE_K_FACTOR = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256]
# 0: the store's default (no target named).
TARGET_RECALL = [0, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995]


# ------------------------------------------------------------------ data

def load(args):
    """(name, base, queries, ground truth (nq, k) int32)."""
    if args.data == "synthetic":
        if args.metric == "ip":
            sys.exit("--metric ip: the real sets that ship an inner-product ground truth (cohere768)")
        base, queries = make_data(args.n, args.dim, args.nq, seed=args.seed, clusters=args.clusters, spread=args.spread)
        t = time.perf_counter()
        gt = ground_truth(base, queries, args.threads, args.k)
        print(f"ground truth: {time.perf_counter() - t:.1f} s", flush=True)
        return f"synthetic {args.n:,} x {args.dim}, {args.clusters} clusters, spread {args.spread}", base, queries, gt
    d = Path(args.data_dir) / args.data
    base = read_vecs(d / f"{args.data}_base.fvecs")
    queries = read_vecs(d / f"{args.data}_query.fvecs")
    truth = d / (f"{args.data}_groundtruth_ip.ivecs" if args.metric == "ip" else f"{args.data}_groundtruth.ivecs")
    if not truth.exists():
        sys.exit(f"--metric {args.metric}: {args.data} has no {truth.name}")
    gt = read_vecs(truth, np.int32)[:, :args.k]
    name = f"{args.data} {len(base):,} x {base.shape[1]}" + (", inner product" if args.metric == "ip" else "")
    return name, np.ascontiguousarray(base), np.ascontiguousarray(queries), gt


# ------------------------------------------------------------------ systems
#
# A system: build(base) -> (build seconds, extra info); configs() -> a list of
# parameter dicts, each applied by set(params); one(q) -> k ids of one query;
# batch(Q) -> (nq, k) ids. Ids are row numbers of base.

def faiss_metric(args):
    import faiss
    return faiss.METRIC_INNER_PRODUCT if args.metric == "ip" else faiss.METRIC_L2


class FaissIVFPQ:
    family = "faiss-ivfpq"

    def __init__(self, args, nlist, m):
        self.args, self.nlist = args, nlist
        self.factory = f"IVF{nlist},PQ{m}x4fs,RFlat"
        self.name = f"faiss {self.factory}"

    def build(self, base):
        import faiss
        faiss.omp_set_num_threads(self.args.threads)
        self.index = faiss.index_factory(base.shape[1], self.factory, faiss_metric(self.args))
        train = base[:min(len(base), 50 * self.nlist)]
        t = time.perf_counter()
        self.index.train(train)
        self.index.add(base)
        s = time.perf_counter() - t
        self.ivf = faiss.extract_index_ivf(self.index)
        self.refine = faiss.downcast_index(self.index)
        return s, {"train_rows": len(train), "code_size": int(self.ivf.code_size)}

    def configs(self):
        return [{"nlist": self.nlist, "nprobe": p, "k_factor": kf}
                for p in NPROBE if p <= self.nlist for kf in K_FACTOR]

    def set(self, p):
        self.ivf.nprobe = p["nprobe"]
        self.refine.k_factor = p["k_factor"]

    def threads(self, t):
        import faiss
        faiss.omp_set_num_threads(t)

    def one(self, q):
        return self.index.search(q.reshape(1, -1), self.args.k)[1][0]

    def batch(self, qs):
        return self.index.search(qs, self.args.k)[1]


class FaissIVFRaBitQ(FaissIVFPQ):
    """faiss's RaBitQ codes in the same IVF and re-rank: `bits` bits a
    dimension (the rotated vector's residual from its list centroid), scanned
    by faiss's RaBitQ fast-scan kernel; faiss adds a few float factors a
    vector to the code (its `code_size`, kept in the builds)."""
    family = "faiss-ivfrabitq"

    def __init__(self, args, nlist, bits):
        self.args, self.nlist = args, nlist
        self.factory = f"IVF{nlist},RaBitQfs{bits},RFlat"
        self.name = f"faiss {self.factory}"


class FaissHNSW:
    family = "faiss-hnsw"

    def __init__(self, args, m):
        self.args, self.m = args, m
        self.name = f"faiss HNSW{m},Flat"

    def build(self, base):
        import faiss
        faiss.omp_set_num_threads(self.args.threads)
        self.index = faiss.IndexHNSWFlat(base.shape[1], self.m, faiss_metric(self.args))
        self.index.hnsw.efConstruction = self.args.ef_construction
        t = time.perf_counter()
        self.index.add(base)
        return time.perf_counter() - t, {"efConstruction": self.args.ef_construction}

    def configs(self):
        return [{"M": self.m, "efSearch": ef} for ef in HNSW_EF]

    def set(self, p):
        self.index.hnsw.efSearch = p["efSearch"]

    threads = FaissIVFPQ.threads
    one = FaissIVFPQ.one
    batch = FaissIVFPQ.batch


class USearchHNSW:
    family = "usearch-hnsw"

    def __init__(self, args, m):
        self.args, self.m = args, m
        self.name = f"usearch HNSW connectivity {m}"
        self.t = 1

    def build(self, base):
        from usearch.index import Index
        self.index = Index(ndim=base.shape[1], metric="ip" if self.args.metric == "ip" else "l2sq", dtype="f32", connectivity=self.m,
                           expansion_add=self.args.ef_construction)
        t = time.perf_counter()
        self.index.add(np.arange(len(base), dtype=np.uint64), base, threads=self.args.threads)
        return time.perf_counter() - t, {"expansion_add": self.args.ef_construction}

    def configs(self):
        return [{"connectivity": self.m, "expansion_search": ef} for ef in HNSW_EF]

    def set(self, p):
        self.index.expansion_search = p["expansion_search"]

    def threads(self, t):
        self.t = t

    def one(self, q):
        return self.index.search(q, self.args.k, threads=1).keys

    def batch(self, qs):
        return self.index.search(qs, self.args.k, threads=self.t).keys


class HNSWLib:
    family = "hnswlib"

    def __init__(self, args, m):
        self.args, self.m = args, m
        self.name = f"hnswlib M{m}"
        self.t = 1

    def build(self, base):
        import hnswlib
        self.index = hnswlib.Index(space=self.args.metric, dim=base.shape[1])
        self.index.init_index(max_elements=len(base), ef_construction=self.args.ef_construction, M=self.m, random_seed=1)
        t = time.perf_counter()
        self.index.add_items(base, np.arange(len(base)), num_threads=self.args.threads)
        return time.perf_counter() - t, {"ef_construction": self.args.ef_construction}

    def configs(self):
        return [{"M": self.m, "ef": ef} for ef in HNSW_EF]

    def set(self, p):
        self.index.set_ef(max(p["ef"], self.args.k))

    def threads(self, t):
        self.t = t
        self.index.set_num_threads(t)

    def one(self, q):
        return self.index.knn_query(q, self.args.k, num_threads=1)[0][0]

    def batch(self, qs):
        return self.index.knn_query(qs, self.args.k, num_threads=self.t)[0]


def omendb_binding():
    """The Python binding of this checkout (bindings/python/src, not an installed
    pyomendb) on the release library ann.sh builds."""
    sys.path.insert(0, str(ROOT / "bindings" / "python" / "src"))
    import pyomendb
    pyomendb.load_library(str(ROOT / "target" / "release" / "libomendb.so"))
    return pyomendb


class OmenDB:
    """OmenDB's search through the Python binding's raw calls (see the docstring)."""

    def __init__(self, args, pq_m, scratch, ivf=False):
        omendb = omendb_binding()
        self.om, self.args, self.pq_m, self.ivf = omendb, args, pq_m, ivf
        self.lib = omendb.load_library()
        self.dir = Path(tempfile.mkdtemp(prefix="omendb-ann-", dir=scratch))
        self.family = "omendb-ivf" if ivf else "omendb-pq" if pq_m else "omendb-exact"
        self.name = (f"OmenDB IVF,PQ{pq_m}x4" if ivf else
                     f"OmenDB PQ{pq_m}x8 scan" if pq_m else "OmenDB exact scan")
        self.params = omendb.omen_search_params()
        self.params.struct_size = ctypes.sizeof(omendb.omen_search_params)
        self.params.exact = 0 if pq_m else 1
        self.t = 1

    def build(self, base):
        om = self.om
        n, dim = base.shape
        t = time.perf_counter()
        self.store = om.Store.open(str(self.dir / "store"), dim=dim, create=True, metric=self.args.metric, pq_m=self.pq_m,
                                   pq_bits=4 if self.ivf else 8,
                                   ivf_lists=self.args.ivf_lists if self.ivf else None,
                                   threads=self.args.threads, huge_pages=self.args.huge_pages)
        for s in range(0, n, 10_000):
            self.store.put([str(i) for i in range(s, min(n, s + 10_000))], base[s:s + 10_000])
        self.store.checkpoint()
        put_s = time.perf_counter() - t
        extra = {"put_checkpoint_s": put_s}
        if self.pq_m:
            t2 = time.perf_counter()
            self.store.train_pq(progress=False)
            extra["train_pq_s"] = time.perf_counter() - t2
            if self.ivf:
                extra["ivf_lists"] = self.nlist = self.store.stats()["ivf_lists"]
        k = self.args.k
        self.hits = np.empty(k, dtype=om.HIT_DTYPE)
        self.cnt = ctypes.c_size_t(0)
        # The one-query call's fixed arguments, taken once (each .ctypes /
        # byref / attribute lookup costs a Python object a call: about 1 us
        # of the 9 a siftsmall query took through ctypes).
        self.one_call = (self.lib.omen_search, self.store._h, k, ctypes.byref(self.params),
                         self.hits.ctypes.data, ctypes.byref(self.cnt), self.hits["key"])
        self.key_row = {}
        return time.perf_counter() - t, extra

    def configs(self):
        if not self.pq_m:
            return [{"exact": 1}]
        if self.ivf:
            return ([{"target_recall": t} for t in TARGET_RECALL] +
                    [{"nprobe": p, "rerank": self.args.k * kf}
                     for p in NPROBE if p <= self.nlist for kf in K_FACTOR])
        return [{"pq_m": self.pq_m, "rerank": r} for r in RERANK]

    def set(self, p):
        self.params.rerank = p.get("rerank", 0)
        self.params.nprobe = p.get("nprobe", 0)
        self.params.target_recall = p.get("target_recall", 0.0)

    def threads(self, t):
        self.t = t
        self.params.threads = t

    def one(self, q):
        search, h, k, params, hits, cnt, keys = self.one_call
        # The binding's own address helper: a third of q.ctypes.data's cost.
        st = search(h, self.om._vector_address(q), k, params, hits, cnt)
        if st:
            self.om._check(st, "omen_search")
        return keys[:self.cnt.value].copy()

    def batch(self, qs):
        nq, k = len(qs), self.args.k
        hits = np.empty(nq * k, dtype=self.om.HIT_DTYPE)
        counts = np.zeros(nq, dtype=np.uintp)
        st = self.lib.omen_search_batch(self.store._h, nq, qs.ctypes.data, k, ctypes.byref(self.params),
                                        hits.ctypes.data, counts.ctypes.data)
        if st:
            self.om._check(st, "omen_search_batch")
        keys = hits["key"].reshape(nq, k)
        # Fewer than k only where the lists probed hold fewer (an explicit
        # nprobe on a small store).
        return [keys[i, :c] for i, c in enumerate(counts.tolist())]

    def rows(self, keys):
        """Search keys -> base rows (the IDs are the row numbers), after
        timing; per query, as a query may have fewer than k hits."""
        def row(key):
            r = self.key_row.get(key)
            if r is None:
                r = self.key_row[key] = int(self.store.key_id(key))
            return r
        return [[row(key) for key in np.asarray(q).tolist()] for q in keys]

    def close(self):
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def code_bytes(args, dim):
    return args.code_bytes or dim // 4


def make_systems(args, n, dim, scratch):
    b = code_bytes(args, dim)
    want = set(args.systems.split(","))
    unknown = want - set(SYSTEMS)
    if unknown:
        sys.exit(f"unknown systems {sorted(unknown)}; known: {SYSTEMS}")
    out = []
    nlists = [int(x) for x in args.nlist.split(",")] if args.nlist else \
        sorted({max(1, round(f * math.sqrt(n))) for f in (0.5, 1, 4)})
    # faiss wants >= 39 training rows a list: small sets get fewer lists.
    nlists = sorted({min(nl, max(1, n // 39)) for nl in nlists})
    if "faiss-ivfpq" in want:
        if dim % (2 * b):
            sys.exit(f"--code-bytes {b}: PQ{2 * b}x4fs needs dim % {2 * b} == 0")
        out += [FaissIVFPQ(args, nl, 2 * b) for nl in nlists]
    if "faiss-ivfrabitq" in want:
        # The same code bytes: 8 B / dim bits a dimension (faiss: 1 to 9).
        if (8 * b) % dim or not 1 <= 8 * b // dim <= 9:
            sys.exit(f"--code-bytes {b}: RaBitQ needs 8 x code bytes / dim to be a whole 1 to 9 (dim {dim})")
        out += [FaissIVFRaBitQ(args, nl, 8 * b // dim) for nl in nlists]
    for m in (int(x) for x in args.hnsw_m.split(",")):
        if "faiss-hnsw" in want:
            out.append(FaissHNSW(args, m))
        if "usearch-hnsw" in want:
            out.append(USearchHNSW(args, m))
        if "hnswlib" in want:
            try:
                import hnswlib  # noqa: F401
                out.append(HNSWLib(args, m))
            except ImportError:
                print("hnswlib is not installed: skipped", flush=True)
    if "omendb-exact" in want:
        out.append(OmenDB(args, 0, scratch))
    if "omendb-pq" in want:
        if dim % b:
            sys.exit(f"--code-bytes {b}: OmenDB pq_m must divide dim {dim}")
        out.append(OmenDB(args, b, scratch))
    if "omendb-ivf" in want:
        if dim % (2 * b):
            sys.exit(f"--code-bytes {b}: OmenDB PQ{2 * b}x4 needs dim % {2 * b} == 0")
        out.append(OmenDB(args, 2 * b, scratch, ivf=True))
    return out


# ------------------------------------------------------------------ timing

def single_pass(sysm, queries):
    one = sysm.one
    return [one(q) for q in queries]


def batch_pass(sysm, queries):
    return sysm.batch(queries)


def timed(run_pass, sysm, queries, passes, min_pass_s):
    """Seconds a query takes (median over `passes` passes) and the last pass's
    ids. The first, untimed pass warms up and sizes the passes: each timed
    pass goes over the query set often enough to last about min_pass_s, so a
    fast configuration on a small set is not timed on a few milliseconds."""
    t = time.perf_counter()
    run_pass(sysm, queries)
    reps = max(1, math.ceil(min_pass_s / max(time.perf_counter() - t, 1e-9)))
    times = []
    for _ in range(passes):
        t = time.perf_counter()
        for _ in range(reps):
            ids = run_pass(sysm, queries)
        times.append((time.perf_counter() - t) / (reps * len(queries)))
    return statistics.median(times), ids


class DepthPruning:
    """Skips an IVF-PQ setting whose re-rank depth (faiss k_factor, OmenDB
    rerank) is deeper than one that added no recall at the same nprobe: the
    systems' grids list each nprobe's depths in rising order, and a deeper
    re-rank only adds work. Other settings always run."""

    def __init__(self):
        self.last, self.done = {}, set()

    @staticmethod
    def key(p):
        return p["nprobe"] if "nprobe" in p and ("k_factor" in p or "rerank" in p) else None

    def skip(self, p):
        return self.key(p) in self.done

    def measured(self, p, recall):
        key = self.key(p)
        if key is None:
            return
        if key in self.last and recall <= self.last[key]:
            self.done.add(key)
        self.last[key] = recall


def pareto(points):
    """The points no other point beats on both recall and queries/s, by recall."""
    front, best = [], -1.0
    for p in sorted(points, key=lambda p: (-p["recall"], -p["qps"])):
        if p["qps"] > best:
            front.append(p)
            best = p["qps"]
    return sorted(front, key=lambda p: p["recall"])


def run(args):
    import faiss
    faiss.omp_set_num_threads(args.threads)
    name, base, queries, gt = load(args)
    n, dim = base.shape
    print(f"{name}: {len(queries)} queries, k = {args.k}", flush=True)
    scratch = Path(args.out)
    scratch.mkdir(parents=True, exist_ok=True)
    modes = ["single"] + (["batch"] if args.batch else [])
    points, builds = [], []
    t_all = time.time()
    for sysm in make_systems(args, n, dim, scratch):
        build_s, extra = sysm.build(base)
        builds.append({"system": sysm.family, "index": sysm.name, "build_s": build_s, **extra})
        print(f"{sysm.name}: built in {build_s:.2f} s {extra}", flush=True)
        for mode in modes:
            sysm.threads(1 if mode == "single" else args.threads)
            depth = DepthPruning()
            for p in sysm.configs():
                if depth.skip(p):
                    continue
                sysm.set(p)
                secs, ids = timed(single_pass if mode == "single" else batch_pass, sysm, queries, args.passes,
                                  args.min_pass_s)
                ids = sysm.rows(ids) if hasattr(sysm, "rows") else ids
                pt = {"system": sysm.family, "index": sysm.name, "mode": mode, "params": p,
                      "recall": recall(ids, gt, args.k), "qps": 1 / secs, "build_s": build_s}
                points.append(pt)
                depth.measured(p, pt["recall"])
                print(f"  {mode:6} {json.dumps(p):55} recall@{args.k} {pt['recall']:.4f}  {pt['qps']:10.1f} q/s", flush=True)
        if hasattr(sysm, "close"):
            sysm.close()
        del sysm
    from importlib import metadata
    versions = {}
    for dist in ("numpy", "faiss-cpu", "usearch", "hnswlib"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    versions["omendb"] = omendb_binding().version()
    return {
        "args": vars(args), "data": name, "n": n, "dim": dim, "nq": len(queries), "k": args.k,
        "code_bytes": code_bytes(args, dim),
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "total_s": time.time() - t_all,
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "load_at_end": os.getloadavg(),
                    "shared": True},
        "versions": versions, "builds": builds, "points": points,
    }


# ------------------------------------------------------------------ report

def fronts(result):
    """{(mode, system): Pareto front}; a system's front is over all its indexes
    (e.g. both nlist, both M), so it is the best any of its settings reached."""
    out = {}
    for p in result["points"]:
        out.setdefault((p["mode"], p["system"]), []).append(p)
    return {key: pareto(pts) for key, pts in out.items()}


def best_at(front, target):
    ok = [p for p in front if p["recall"] >= target]
    return max(ok, key=lambda p: p["qps"]) if ok else None


def short(params):
    return ", ".join(f"{k} {v}" for k, v in params.items())


def render(result, out):
    out.mkdir(parents=True, exist_ok=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fr = fronts(result)
    result["pareto"] = {f"{mode}/{system}": front for (mode, system), front in fr.items()}
    modes = [m for m in ("single", "batch") if any(k[0] == m for k in fr)]
    colors = {"faiss-ivfpq": "#4c72b0", "faiss-ivfrabitq": "#64b5cd", "faiss-hnsw": "#8172b3", "usearch-hnsw": "#55a868",
              "hnswlib": "#937860", "omendb-exact": "#c44e52", "omendb-pq": "#dd8452",
              "omendb-ivf": "#da1e28"}
    threads = result["args"]["threads"]
    top = 1 - 1 / (2 * result["nq"] * result["k"])
    f, axes = plt.subplots(1, len(modes), figsize=(7.5 * len(modes), 5.5), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for system in SYSTEMS:
            front = fr.get((mode, system))
            if not front:
                continue
            c = colors[system]
            every = [p for p in result["points"] if p["mode"] == mode and p["system"] == system]
            ax.scatter([min(p["recall"], top) for p in every], [p["qps"] for p in every], s=8, color=c, alpha=0.25)
            ax.plot([min(p["recall"], top) for p in front], [p["qps"] for p in front], "o-", ms=4, color=c,
                    label=system)
        ax.set_yscale("log")
        # Logit x: spreads 0.9 / 0.99 / 0.999 apart; a recall of 1 is drawn at
        # 1 - 1 / (2 nq k) (half a missed neighbour), just inside the axis.
        ax.set_xscale("logit")
        # Left edge 0.5: lower recalls are in ann.json, not on the plot.
        ax.set_xlim(0.5, 1 - 1 / (4 * result["nq"] * result["k"]))
        ax.set_xlabel(f"recall@{result['k']} (logit scale from 0.5; recall 1 drawn at {top:.5f})")
        ax.set_ylabel("queries/s (log)")
        for t in TARGETS[1:]:
            ax.axvline(t, color="grey", lw=0.6, ls=":")
        ax.grid(True, which="both", lw=0.3, alpha=0.5)
        how = "1 thread, one query per call" if mode == "single" else \
            f"{threads} threads, batches of {result['nq']:,} queries"
        ax.set_title(f"{result['data']}, {how}", fontsize=9)
        ax.legend(fontsize=8, loc="lower left")
        ax.set_xticks([x for x in (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.999, 0.9999) if x < top])
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    f.suptitle(f"Pareto fronts (lines) and every configuration (dots); median of {result['args']['passes']} passes; "
               f"{result['machine']['cores']} shared cores, load {result['machine']['load_at_end'][0]:.1f} at the end",
               fontsize=8)
    plt.tight_layout()
    plt.savefig(out / "ann.png", dpi=110)

    lines = [f"{result['data']}, {result['nq']:,} queries, k = {result['k']}; generated {result['generated']} on "
             f"{result['machine']['cores']} shared cores (load average at the end "
             f"{', '.join(f'{x:.1f}' for x in result['machine']['load_at_end'])}); "
             + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + ".", ""]
    builds = {}
    for b in result["builds"]:
        builds.setdefault(b["system"], []).append(f"{b['index']} {b['build_s']:.2f} s")
    for mode in modes:
        how = "one thread, one query per call" if mode == "single" else f"{threads} threads, one batch of all queries"
        lines += [f"### {how}", "",
                  "| system | " + " | ".join(f"q/s at recall >= {t}" for t in TARGETS) + " | best recall | build (train + add) |",
                  "|---|" + "---:|" * (len(TARGETS) + 1) + "---|"]
        for system in SYSTEMS:
            front = fr.get((mode, system))
            if not front:
                continue
            cells = []
            for t in TARGETS:
                p = best_at(front, t)
                cells.append(f"{p['qps']:,.0f} ({short(p['params'])}; {p['recall']:.3f})" if p else "not reached")
            lines.append(f"| {system} | " + " | ".join(cells) + f" | {front[-1]['recall']:.4f} | "
                         + "; ".join(builds[system]) + " |")
        lines.append("")
    lines.append("Each cell: the fastest measured configuration at or above the recall (its parameters; its recall). "
                 "No interpolation.")
    (out / "ann.md").write_text("\n".join(lines) + "\n")
    (out / "ann.json").write_text(json.dumps(result, indent=1, default=str))
    print("\n".join(lines))
    print(f"wrote {out / 'ann.json'}, {out / 'ann.png'}, {out / 'ann.md'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="synthetic", choices=["synthetic", "siftsmall", "cohere768", "bgem3_1024"])
    ap.add_argument("--data-dir", default=str(DATA))
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--clusters", type=int, default=256)
    ap.add_argument("--spread", type=float, default=0.5,
                    help="scale of the within-cluster latent factors (benchdata.make_data; 0.5 = compare.py's data)")
    ap.add_argument("--nq", type=int, default=1000, help="queries (synthetic)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--metric", default="l2", choices=["l2", "ip"],
                    help="ip: inner product, against the set's inner-product ground truth (real sets that ship one)")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--min-pass-s", type=float, default=0.2, help="a timed pass repeats the queries to last this long")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="build and batch threads")
    ap.add_argument("--batch", action="store_true", help="also the batch curves at --threads threads")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--code-bytes", type=int, default=0, help="PQ code bytes a vector (0: dim / 4)")
    ap.add_argument("--nlist", default="", help="comma-separated IVF list counts (default sqrt(n) / 2, sqrt(n), 4 sqrt(n))")
    ap.add_argument("--ivf-lists", type=int, default=0, help="OmenDB's IVF lists (0: the store's choice, about sqrt(n))")
    ap.add_argument("--huge-pages", action="store_true",
                    help="open OmenDB's stores with OMEN_OPEN_HUGE_PAGES (the vectors file in 2 MiB pages)")
    ap.add_argument("--hnsw-m", default="16,32")
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--out", default="", help="output folder (default target/bench/ann-<data>; "
                    "with --render-only, the saved file's folder)")
    ap.add_argument("--grid", default="coarse", choices=["coarse", "fine"],
                    help="parameter steps of every system: about 1.5x (coarse) or 1.25x (fine)")
    ap.add_argument("--render-only", metavar="ANN_JSON", help="re-render the plot and table from a saved ann.json")
    args = ap.parse_args()
    if args.render_only:
        path = Path(args.render_only)
        render(json.loads(path.read_text()), Path(args.out) if args.out else path.parent)
        return
    if args.passes < 3:
        sys.exit("--passes must be at least 3 (the median of several passes)")
    if args.grid == "fine":
        global HNSW_EF, NPROBE, K_FACTOR
        HNSW_EF, NPROBE, K_FACTOR = FINE_HNSW_EF, FINE_NPROBE, FINE_K_FACTOR
    args.out = args.out or str(ROOT / "target" / "bench" / f"ann-{args.data}")
    result = run(args)
    render(result, Path(args.out))


if __name__ == "__main__":
    main()
