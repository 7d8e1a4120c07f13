#!/usr/bin/env python3
"""OmenDB against numpy.memmap, faiss IndexPQ and usearch, in one run.

Run through crates/omendb-bench/scripts/compare.sh (it creates the virtualenv under target/ and
builds the release benchmark). Every round runs OmenDB (the release program
crates/omendb-bench/src/bin/omendb_bench.rs, through the C ABI) and then each peer on the same
data files with the same thread count; figures are medians over the rounds
and every ratio is between medians measured in this one invocation.

Workloads (defaults: 100,000 x 768, 1,000 queries, k = 10, 25,000 training rows):
  numpy.memmap   bulk write of all rows into a fresh memmap + flush;
                 random row reads with copy, one Python call each (mm[i].copy());
                 gathers of 1,000 random rows (mm[idx]) for get_batch
  faiss IndexPQ  train on rows 0..25,000 (PQ32 x 8 bits), add all rows,
                 search single queries (one call each) and a batch; recall@10;
                 IndexRefineFlat(k_factor=10) as the equivalent of rerank=100;
                 OMP_WAIT_POLICY=PASSIVE, single queries at the faster of 1 and
                 `threads` OpenMP threads (both in faiss's favour, see below)
  usearch        HNSW (f32) add, get one key per call, save, view (mmap open)
  omendb         put_batch (batches of 1,000) + checkpoint, get (one C call
                 each), get_batch, encode-put into a trained PQ32 store, train,
                 PQ search single / batch with and without rerank=100, open
  write floor    crates/omendb-bench/scripts/write_floor.c: the same bytes with pwrite + fdatasync
                 at 1 and 2 threads, nothing checked (what put cannot beat)
Once per invocation, recall@10 of both PQ32 trainings over several k-means
seeds (faiss IndexPQ with pq.cp.seed; OmenDB's training code through
crates/omendb-bench/src/bin/pq_seeds.rs): one seed is one draw, and the two libraries' draws
differ by more than their codebooks do (docs/pq.md, *Recall and the k-means seed*).
Writes docs/benchmarks.md (the part between the GENERATED markers) and
docs/benchmarks.png, and the raw figures to target/bench/compare.json.
`--render-only` renders the docs again from saved figures without running
anything (numpy and matplotlib only), e.g. from the committed run:
  python crates/omendb-bench/scripts/compare.py --render-only --compare-json crates/omendb-bench/results/compare.json \
      --grid-json crates/omendb-bench/results/grid.json --mem-json crates/omendb-bench/results/mem.json
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchdata import ground_truth, make_data, recall  # this script's folder is on sys.path

# libgomp's default (spin before sleeping) collapses when the cores are
# oversubscribed, as on this shared machine: faiss at 2 threads measured 8
# single queries/s and a 38 s training where PASSIVE gave 452 qps and 2.9 s.
# PASSIVE is the setting a user on a busy host would pick; it favours faiss.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[3]  # crates/omendb-bench/scripts/ -> the repository root
WORK = ROOT / "target" / "bench"
BENCH_BIN = ROOT / "target" / "release" / "omendb_bench"
SEEDS_BIN = ROOT / "target" / "release" / "pq_seeds"
K = 10


def med(xs):
    return statistics.median(xs) if xs else float("nan")


# ------------------------------------------------------------------ peers

def numpy_round(base, probes, batch_probes, scratch):
    out = {}
    path = scratch / "numpy.memmap"
    if path.exists():
        path.unlink()
    t = time.perf_counter()
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=base.shape)
    mm[:] = base
    mm.flush()  # msync(MS_SYNC) of the mapping
    out["write_s"] = time.perf_counter() - t
    del mm
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=base.shape)
    np.add.reduce(mm[::97], axis=0)  # same page-cache state as omendb: file just written
    t = time.perf_counter()
    for i in probes:
        row = mm[i].copy()
    out["get_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for b in batch_probes:
        rows = mm[b]
    out["get_batch_s"] = time.perf_counter() - t
    del mm, row, rows
    path.unlink()
    return out


def faiss_round(base, queries, gt, train_n, m, threads, nq_single):
    import faiss
    faiss.omp_set_num_threads(threads)
    dim = base.shape[1]
    out = {}
    index = faiss.IndexPQ(dim, m, 8, faiss.METRIC_L2)
    t, c = time.perf_counter(), time.process_time()
    index.train(base[:train_n])
    out["train_s"], out["train_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    index.add(base)
    out["add_s"], out["add_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    # One query runs on one thread in faiss anyway; the OpenMP fork only costs.
    # The faster of 1 thread and `threads` is kept (in faiss's favour).
    single = []
    for t_single in sorted({1, threads}):
        faiss.omp_set_num_threads(t_single)
        t, c = time.perf_counter(), time.process_time()
        for i in range(nq_single):
            index.search(queries[i:i + 1], K)
        single.append((time.perf_counter() - t, time.process_time() - c))
    faiss.omp_set_num_threads(threads)
    out["search_single_s"], out["search_single_cpu_s"] = min(single)
    t, c = time.perf_counter(), time.process_time()
    _, ids = index.search(queries, K)
    out["search_batch_s"], out["search_batch_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    out["recall"] = recall(ids, gt)
    # The equivalent of omendb's rerank=100: exact re-rank of 10 x k PQ candidates.
    refine = faiss.IndexRefineFlat(index, faiss.swig_ptr(base))
    refine.k_factor = 10
    single = []
    for t_single in sorted({1, threads}):
        faiss.omp_set_num_threads(t_single)
        t = time.perf_counter()
        for i in range(nq_single):
            refine.search(queries[i:i + 1], K)
        single.append(time.perf_counter() - t)
    faiss.omp_set_num_threads(threads)
    out["search_rerank_single_s"] = min(single)
    t = time.perf_counter()
    _, ids = refine.search(queries, K)
    out["search_rerank_batch_s"] = time.perf_counter() - t
    out["recall_rerank"] = recall(ids, gt)
    return out


def usearch_round(base, probes, threads, n_us, scratch):
    from usearch.index import Index
    out = {}
    x = base[:n_us]
    keys = np.arange(n_us, dtype=np.uint64)
    index = Index(ndim=x.shape[1], metric="l2sq", dtype="f32")
    t = time.perf_counter()
    index.add(keys, x, threads=threads)
    out["add_s"] = time.perf_counter() - t
    p = [int(i) % n_us for i in probes[:50_000]]
    t = time.perf_counter()
    for i in p:
        v = index.get(i)
    out["get_s"] = time.perf_counter() - t
    out["get_calls"] = len(p)
    path = scratch / "usearch.index"
    t = time.perf_counter()
    index.save(str(path))
    out["save_s"] = time.perf_counter() - t
    del index
    t = time.perf_counter()
    view = Index.restore(str(path), view=True)
    out["view_s"] = time.perf_counter() - t
    assert len(view) == n_us
    del view
    path.unlink()
    return out


def omendb_round(args, files, scratch, rnd):
    out_json = WORK / f"omendb-round{rnd}.json"
    cmd = [
        str(BENCH_BIN), "--cases", f"{args.dim}x{args.n}", "--runs", "1", "--threads", str(args.threads),
        "--data", str(files["base"]), "--queries", str(files["queries"]), "--gt", str(files["gt"]),
        "--only", "put,get,get_batch,checkpoint_delta,open,pq", "--dir", str(scratch), "--json", str(out_json),
    ]
    if args.scaling:
        cmd += ["--scaling", "1"]
    log = WORK / f"omendb-round{rnd}.log"
    with open(log, "w") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)
    recs = json.loads(out_json.read_text())["records"]
    return {r["workload"]: r for r in recs}


def c_round(args, scratch, *words):
    """crates/omendb-bench/scripts/c_get.c: put + random omen_get from a C program linked to libomendb.so
    (`words`: c_get's options, e.g. "huge" for OMEN_OPEN_HUGE_PAGES)."""
    store = scratch / "c-store"
    shutil.rmtree(store, ignore_errors=True)
    out = subprocess.run([str(WORK / "c_get"), str(store), str(args.n), str(args.dim), str(args.gets), *words],
                         check=True, capture_output=True, text=True).stdout
    shutil.rmtree(store, ignore_errors=True)
    return json.loads(out.strip().splitlines()[-1])


def write_floor_round(args, scratch):
    """crates/omendb-bench/scripts/write_floor.c, one round: the put's bytes written with pwrite and
    fdatasync'd, at 1 thread and at 2 (two halves side by side)."""
    out = subprocess.run([str(WORK / "write_floor"), str(scratch), str(args.n), str(args.dim), "1"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def faiss_pq_at_seed(base, queries, gt, train_n, m, seed):
    """faiss IndexPQ (m x 8 bits) trained on base[:train_n] with k-means seed
    `seed`, all of base added: (the index, its recall@10 on the queries)."""
    import faiss
    index = faiss.IndexPQ(base.shape[1], m, 8, faiss.METRIC_L2)
    index.pq.cp.seed = seed
    index.train(base[:train_n])
    index.add(base)
    _, ids = index.search(queries, K)
    return index, recall(ids, gt)


def recall_over_seeds(args, base, queries, gt, files):
    """recall@10 of faiss IndexPQ and of OmenDB's PQ training for each k-means
    seed of --recall-seeds: same training rows, same codes budget, exact ADC."""
    import faiss
    faiss.omp_set_num_threads(args.threads)
    seeds = [int(x) for x in args.recall_seeds.split(",")]
    out = {"seeds": seeds, "faiss": [faiss_pq_at_seed(base, queries, gt, args.train, args.m, s)[1] for s in seeds]}
    text = subprocess.run([str(SEEDS_BIN), str(files["base"]), str(files["queries"]), str(files["gt"]), str(args.dim),
                           "25", args.recall_seeds, str(args.m)], check=True, capture_output=True, text=True).stdout
    found = {int(m[0]): float(m[1]) for m in re.findall(r"seed (\d+): recall@10 ([0-9.]+)", text)}
    out["omendb"] = [found[seed] for seed in seeds]
    return out


# ------------------------------------------------------------------ report

def fmt(x, unit=""):
    if x != x:
        return "n/a"
    if x >= 100:
        s = f"{x:,.0f}"
    elif x >= 10:
        s = f"{x:.1f}"
    else:
        s = f"{x:.3g}"
    return s + (" " + unit if unit else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--m", type=int, default=32)
    ap.add_argument("--train", type=int, default=25_000)
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--single", type=int, default=200, help="queries run one call each")
    ap.add_argument("--gets", type=int, default=200_000)
    ap.add_argument("--usearch-n", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--no-scaling", dest="scaling", action="store_false")
    ap.add_argument("--recall-seeds", default="1234,1,2,3,4",
                    help="k-means seeds of the recall-over-seeds comparison (faiss's default is 1234); empty: skip")
    ap.add_argument("--grid-json", default=str(WORK / "grid.json"))
    ap.add_argument("--mem-json", default=str(WORK / "mem.json"))
    ap.add_argument("--docs", default=str(ROOT / "docs"))
    ap.add_argument("--compare-json", default=str(WORK / "compare.json"),
                    help="the saved figures --render-only reads (a run writes target/bench/compare.json)")
    ap.set_defaults(render_only=False)
    ap.add_argument("--render-only", action="store_true",
                    help="re-render docs from --compare-json (e.g. after a newer grid or memory run)")
    args = ap.parse_args()
    if args.render_only:
        saved = json.loads(Path(args.compare_json).read_text())
        docs, grid_json, mem_json = args.docs, args.grid_json, args.mem_json
        args = argparse.Namespace(**saved["args"])
        args.docs, args.grid_json, args.mem_json = docs, grid_json, mem_json
        args.render_only = True
        return analyze(args, saved["rounds"], time.time(), saved.get("generated"), saved.get("machine"),
                       saved.get("versions"))
    assert args.train == min(args.n // 4, 25_000), "omendb_bench and pq_seeds train on min(n/4, 25,000) rows"

    WORK.mkdir(parents=True, exist_ok=True)
    scratch = WORK / "compare-scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    t0 = time.time()
    base, queries = make_data(args.n, args.dim, args.nq)
    gt = ground_truth(base, queries, args.threads)
    files = {"base": WORK / "cmp-base.f32", "queries": WORK / "cmp-queries.f32", "gt": WORK / "cmp-gt.i32"}
    base.tofile(files["base"])
    queries.tofile(files["queries"])
    gt.tofile(files["gt"])
    rng = np.random.default_rng(42)
    probes = rng.integers(0, args.n, args.gets)
    batch_probes = [probes[i:i + 1000] for i in range(0, args.gets - 999, 1000)]
    print(f"data {args.n} x {args.dim} + {args.nq} queries, ground truth: {time.time() - t0:.1f} s", flush=True)

    rounds = {"omendb": [], "c": [], "c_huge": [], "floor": [], "numpy": [], "faiss": [], "usearch": []}
    for r in range(args.runs):
        t = time.time()
        rounds["omendb"].append(omendb_round(args, files, scratch, r))
        print(f"round {r}: omendb {time.time() - t:.1f} s", flush=True)
        if (WORK / "c_get").exists():
            rounds["c"].append(c_round(args, scratch))
            rounds["c_huge"].append(c_round(args, scratch, "huge"))
        if (WORK / "write_floor").exists():
            rounds["floor"].append(write_floor_round(args, scratch))
        t = time.time()
        rounds["numpy"].append(numpy_round(base, probes, batch_probes, scratch))
        print(f"round {r}: numpy {time.time() - t:.1f} s", flush=True)
        t = time.time()
        rounds["faiss"].append(faiss_round(base, queries, gt, args.train, args.m, args.threads, args.single))
        print(f"round {r}: faiss {time.time() - t:.1f} s", flush=True)
        t = time.time()
        rounds["usearch"].append(usearch_round(base, probes, args.threads, args.usearch_n, scratch))
        print(f"round {r}: usearch {time.time() - t:.1f} s", flush=True)
    if args.recall_seeds:
        t = time.time()
        rounds["recall_seeds"] = recall_over_seeds(args, base, queries, gt, files)
        print(f"recall over seeds: {time.time() - t:.1f} s", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    for f in files.values():
        f.unlink()
    return analyze(args, rounds, t0, None, None)


def analyze(args, rounds, t0, generated, machine, versions=None):
    """The figures, the targets and the docs from the rounds; `generated`,
    `machine` and `versions` are the saved run's when re-rendering."""
    n_batches = len(range(0, args.gets - 999, 1000))

    # ---- medians
    def om(workload, key="value"):
        return med([rd[workload][key] for rd in rounds["omendb"] if workload in rd])

    def om_extra(workload, key):
        return med([rd[workload]["extra"][key] for rd in rounds["omendb"] if workload in rd])

    def peer(name, key):
        return med([rd[key] for rd in rounds[name]])

    def om_cpu(workload):
        """CPU seconds per operation (all threads), median over rounds."""
        return med([rd[workload]["cpu_s"][0] / rd[workload]["ops"] for rd in rounds["omendb"]
                    if workload in rd and rd[workload].get("cpu_s")])

    n, T = args.n, args.threads
    enc_n = args.n - args.train
    fig = {
        "omendb_put_vps": om("put+checkpoint"),
        "mmap_write_vps": om("put+checkpoint", "baseline_value"),
        "numpy_write_vps": n / peer("numpy", "write_s"),
        "omendb_get_per_s": om("get"),
        "gather_get_per_s": om("get", "baseline_value"),
        "numpy_get_per_s": args.gets / peer("numpy", "get_s"),
        "c_get_per_s": peer("c", "c_get_per_s") if rounds["c"] else float("nan"),
        "c_gather_per_s": peer("c", "c_gather_per_s") if rounds["c"] else float("nan"),
        "c_put_vps": peer("c", "c_put_vps") if rounds["c"] else float("nan"),
        "c_huge_get_per_s": peer("c_huge", "c_get_per_s") if rounds.get("c_huge") else float("nan"),
        "c_huge_put_vps": peer("c_huge", "c_put_vps") if rounds.get("c_huge") else float("nan"),
        "omendb_get_batch_vps": om("get_batch(1000)"),
        "numpy_get_batch_vps": n_batches * 1000 / peer("numpy", "get_batch_s"),
        "omendb_encode_vps": om("put_pq_encode"),
        "faiss_add_vps": n / peer("faiss", "add_s"),
        "omendb_train_s": om("train_pq") / 1e3,
        "faiss_train_s": peer("faiss", "train_s"),
        "omendb_search_qps": om("search_pq"),
        "omendb_search_batch_qps": om("search_pq_batch"),
        "omendb_recall": om_extra("search_pq", "recall_at_10"),
        "omendb_search_rr20_qps": om("search_pq_rerank20"),
        "omendb_search_rr20_batch_qps": om("search_pq_batch_rerank20"),
        "omendb_recall_rr20": om_extra("search_pq_rerank20", "recall_at_10"),
        "omendb_search_rr_qps": om("search_pq_rerank100"),
        "omendb_search_rr_batch_qps": om("search_pq_batch_rerank100"),
        "omendb_recall_rr": om_extra("search_pq_rerank100", "recall_at_10"),
        "faiss_search_qps": args.single / peer("faiss", "search_single_s"),
        "faiss_search_batch_qps": args.nq / peer("faiss", "search_batch_s"),
        "faiss_recall": peer("faiss", "recall"),
        "faiss_search_rr_qps": args.single / peer("faiss", "search_rerank_single_s"),
        "faiss_search_rr_batch_qps": args.nq / peer("faiss", "search_rerank_batch_s"),
        "faiss_recall_rr": peer("faiss", "recall_rerank"),
        "usearch_add_vps": args.usearch_n / peer("usearch", "add_s"),
        "usearch_get_per_s": med([rd["get_calls"] / rd["get_s"] for rd in rounds["usearch"]]),
        "usearch_view_ms": peer("usearch", "view_s") * 1e3,
        "usearch_save_ms": peer("usearch", "save_s") * 1e3,
        "omendb_open_ms": om("open_pq"),
        "omendb_ckpt_ms": om("checkpoint_after_1000"),
    }
    # CPU time per operation: robust against the other tenants of the machine
    # (wall time is what the targets use; this says whether a ratio is load noise).
    cpu = {
        "encode (CPU-s per vector)": (om_cpu("put_pq_encode"), peer("faiss", "add_cpu_s") / n),
        "training (CPU-s)": (om_cpu("train_pq"), peer("faiss", "train_cpu_s")),
        "PQ search, single (CPU-s per query)": (om_cpu("search_pq"), peer("faiss", "search_single_cpu_s") / args.single),
        "PQ search, batch (CPU-s per query)": (om_cpu("search_pq_batch"), peer("faiss", "search_batch_cpu_s") / args.nq),
    }
    fig["cpu"] = cpu
    sweep = rounds.get("recall_seeds")
    if sweep:
        fig["seed_list"] = ",".join(str(x) for x in sweep["seeds"])
        fig["omendb_recall_seeds_median"] = med(sweep["omendb"])
        fig["faiss_recall_seeds_median"] = med(sweep["faiss"])
        fig["faiss_recall_seeds_max"] = max(sweep["faiss"])
    if rounds.get("floor"):
        fig["floor_1t_s"] = peer("floor", "write_sync_s_1t")
        fig["floor_2t_s"] = peer("floor", "write_sync_s_2t")
    if args.scaling:
        for w in ["put+checkpoint", "put_pq_encode", "search_pq_batch", "train_pq"]:
            one = w + "@1t" if w != "put+checkpoint" else "put+checkpoint@1t"
            fig[f"scale_{w}"] = (om(w) / om(one)) if w != "train_pq" else (om(one) / om(w))
    # Targets need the grid JSON (1M-vector store) when present.
    grid = {}
    if Path(args.grid_json).exists():
        for r in json.loads(Path(args.grid_json).read_text())["records"]:
            grid[(r["workload"], r["dim"], r["n"])] = r
    mem = json.loads(Path(args.mem_json).read_text()) if Path(args.mem_json).exists() else None

    targets = []

    def target(name, measured, goal, met, source):
        status = {True: "met", False: "**not met**", None: "not measurable here", "reference": "reference"}[met]
        targets.append((name, measured, goal, status, source))

    put_vs_mmap = fig["omendb_put_vps"] / fig["mmap_write_vps"]
    target("put_batch 100K x 768 (batches of 1,000) + checkpoint vs fresh mmap write + sync",
           f"{put_vs_mmap:.2f}x ({fmt(fig['omendb_put_vps'])} vs {fmt(fig['mmap_write_vps'])} vectors/s)", ">= 0.8x",
           put_vs_mmap >= 0.8, "issue 6")
    put_vs_np = fig["omendb_put_vps"] / fig["numpy_write_vps"]
    target("put_batch + checkpoint vs numpy.memmap bulk write + flush",
           f"{put_vs_np:.2f}x ({fmt(fig['numpy_write_vps'])} vectors/s)", ">= 1.5x", put_vs_np >= 1.5, "issue 6")
    get_vs_np = fig["omendb_get_per_s"] / fig["numpy_get_per_s"]
    # Issue 6 asks for get "one call each from C": the C program's row below.
    # This row is the Rust harness calling the same C ABI, kept for reference.
    target("get of random ids, one call each through the C ABI from the Rust harness (omendb_bench), vs numpy.memmap row read + copy",
           f"{get_vs_np:.2f}x ({fmt(fig['omendb_get_per_s'])} vs {fmt(fig['numpy_get_per_s'])} calls/s)",
           "reference: issue 6 asks for >= 4x from C (next row)" if rounds["c"] else ">= 4x",
           "reference" if rounds["c"] else get_vs_np >= 4, "issue 6")
    if rounds["c"]:
        x = fig["c_get_per_s"] / fig["numpy_get_per_s"]
        target("the same from a C program (crates/omendb-bench/scripts/c_get.c, libomendb.so) vs numpy.memmap row read + copy",
               f"{x:.2f}x ({fmt(fig['c_get_per_s'])} calls/s; memcpy gather in that program {fmt(fig['c_gather_per_s'])}/s)",
               ">= 4x", x >= 4, "issue 6")
    enc = fig["omendb_encode_vps"] / fig["faiss_add_vps"]
    target("encode-put into a trained 768-dim PQ32 store vs faiss IndexPQ.add",
           f"{enc:.2f}x ({fmt(fig['omendb_encode_vps'])} vs {fmt(fig['faiss_add_vps'])} vectors/s)", ">= 3x (issue 6)",
           enc >= 3, "issue 6")
    target("the same, issue 3's bar", f"{enc:.2f}x", ">= 2x (issue 3)", enc >= 2, "issue 3")
    # The PQ scan alone, then the same scan plus an exact re-rank of its best
    # 20 (2k) from the raw vectors: what a store that keeps them would run
    # for recall >= faiss's.
    #
    # Recall: each library's figure at its default k-means seed is one draw;
    # with the sweep, the plain scan is judged on the medians over the same
    # number of seeds, and the re-ranked scan against faiss's best seed.
    for name, key in [("PQ search", ""), ("PQ search + rerank 20", "_rr20")]:
        recall = fig[f"omendb_recall{key}"]
        words = f"recall@10 {recall:.3f} vs {fig['faiss_recall']:.3f}"
        ours, theirs, goal = recall, fig["faiss_recall"], ">= 2x at >= recall"
        if sweep and not key:
            ours, theirs = fig["omendb_recall_seeds_median"], fig["faiss_recall_seeds_median"]
            words += (f" at each library's default seed; medians over k-means seeds {fig['seed_list']}: "
                      f"{ours:.4f} vs {theirs:.4f}")
            goal = ">= 2x at >= recall (median over seeds)"
        elif sweep:
            theirs = max(theirs, fig["faiss_recall_seeds_max"])
            words += f"; faiss's best seed of {fig['seed_list']}: {fig['faiss_recall_seeds_max']:.3f}"
        for label, kind in [("single", ""), ("batch", "_batch")]:
            a, b = f"omendb_search{key}{kind}_qps", f"faiss_search{kind}_qps"
            x = fig[a] / fig[b]
            target(f"{name}{' 100K x 768 PQ32' if not key else ''}, {label} queries, vs faiss IndexPQ ({words})",
                   f"{x:.2f}x ({fmt(fig[a])} vs {fmt(fig[b])} qps)", f"{goal} (issue 6); >= 1x (issue 3)",
                   x >= 2 and ours >= theirs - 1e-9, "issues 6, 3")
    tr = fig["faiss_train_s"] / fig["omendb_train_s"]
    target("training 25K x 768 PQ32 (omen_train_pq: k-means + encode 25K) vs faiss train",
           f"{tr:.2f}x ({fig['omendb_train_s']:.2f} s vs {fig['faiss_train_s']:.2f} s)", ">= 1x", tr >= 1, "issues 6, 3")
    for d in (768, 128):
        o = grid.get(("open", d, 1_000_000))
        if o:
            target(f"open of a 1,000,000 x {d} store (warm page cache)", f"{o['value']:.1f} ms (median of {len(o['times_s'])})",
                   "< 200 ms", o["value"] < 200, "issue 6")
        c = grid.get(("checkpoint_after_1000", d, 1_000_000))
        if c:
            fs = c["extra"]["fdatasync_4k_ms"]
            target(f"checkpoint after 1,000 new vectors in the 1M x {d} store",
                   f"{c['value']:.1f} ms, of which fsync floor: mmap write+sync of the same 1,000 vectors {c['baseline_value']:.1f} ms, bare fdatasync {fs:.1f} ms",
                   "< 10 ms + the fsync", c["value"] - c["baseline_value"] < 10, "issue 6")
    if args.scaling:
        def cores(w):
            return med([rd[w]["cpu_s"][0] / rd[w]["times_s"][0] for rd in rounds["omendb"] if rd[w].get("cpu_s")])
        scaled = [("put+checkpoint", "put_batch + checkpoint"), ("put_pq_encode", "encode-put"),
                  ("search_pq_batch", "batch PQ search"), ("train_pq", "training")]
        # Under sched_autogroup a busy machine gives the session a share, not
        # a core per thread: no wall-time ratio can show scaling then. Whether
        # the machine gave two cores is read off the workload that used the
        # most: one that stays near 1 core beside it does not use the second.
        two_cores = max(cores(w) for w, _ in scaled) >= 1.2
        for w, label in scaled:
            x = fig[f"scale_{w}"]
            one = w + "@1t"
            eff = om_cpu(one) / om_cpu(w)
            measured = (f"{x:.2f}x wall; the process got {cores(w):.2f} cores at 2 threads, {cores(one):.2f} at 1; "
                        f"CPU per op 1t/2t = {eff:.2f}")
            goal, met = "scales (> 1.3x)", (x > 1.3) if two_cores else None
            if w == "put+checkpoint" and "floor_2t_s" in fig:
                # put is bound by the disk: the floor (the same bytes, pwrite +
                # fdatasync, nothing checked) is what a second thread could
                # approach. Issue 6 accepts 0.8x of a hardware write baseline
                # for put; the same fraction of the 2-thread floor is the bar.
                put_2t_s = n / fig["omendb_put_vps"]
                floor_scale = fig["floor_1t_s"] / fig["floor_2t_s"]
                of_floor = fig["floor_2t_s"] / put_2t_s
                measured += (f"; write floor (crates/omendb-bench/scripts/write_floor.c, same rounds): {fig['floor_2t_s'] * 1e3:.1f} ms at 2 threads, "
                             f"{floor_scale:.2f}x of 1 thread's; put + checkpoint at 2 threads runs at {of_floor:.2f}x the floor's rate")
                goal = "scales (> 1.3x), or >= 0.8x of the write floor's rate where the floor gains < 10% from a thread"
                if two_cores:
                    met = x > 1.3 or (floor_scale < 1.1 and of_floor >= 0.8)
            target(f"2 threads vs 1: {label}", measured, goal, met, "issue 6")
    if mem:
        g = [s for s in mem["snapshots"] if s["label"] == "after 1 PQ search"][0]["growth_bytes_per_vector"]
        target("resident growth per vector, 1M x 768 PQ32, reopen + 1 PQ search (fresh process)", f"{g:.1f} B/vector",
               "<= 48 B/vector", g <= 48, "issue 3")

    # ---- outputs
    generated = generated or time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    result = {"args": vars(args), "figures": fig, "rounds": rounds, "targets": targets, "generated": generated,
              "machine": machine or {"cores": os.cpu_count(), "python": platform.python_version(),
                                     "load_at_end": os.getloadavg()}}
    if versions is None:
        import faiss, usearch
        versions = {"numpy": np.__version__, "faiss": faiss.__version__, "usearch": usearch.__version__}
    result["versions"] = versions
    if not args.render_only:
        (WORK / "compare.json").write_text(json.dumps(result, indent=1, default=str))
    write_docs(args, fig, targets, grid, mem, result, Path(args.docs))
    print(json.dumps(fig, indent=1))
    print(f"total {time.time() - t0:.0f} s")


def write_docs(args, fig, targets, grid, mem, result, docs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        ("put_batch + checkpoint (vectors/s)", fig["omendb_put_vps"],
         [("fresh mmap write+sync", fig["mmap_write_vps"]), ("numpy.memmap write+flush", fig["numpy_write_vps"])]
         + ([("write floor: pwrite + fdatasync, 2 threads", args.n / fig["floor_2t_s"])] if "floor_2t_s" in fig else [])),
        ("get, one call each (calls/s)", fig["omendb_get_per_s"],
         [("memcpy gather", fig["gather_get_per_s"]), ("numpy.memmap row copy", fig["numpy_get_per_s"]),
          (f"usearch get ({args.usearch_n:,} HNSW)", fig["usearch_get_per_s"])]),
        ("get from a C program (calls/s)", fig["c_get_per_s"], [("numpy.memmap row copy", fig["numpy_get_per_s"])]),
    ] + ([
        ("get from C, OMEN_OPEN_HUGE_PAGES (calls/s)", fig["c_huge_get_per_s"],
         [("numpy.memmap row copy", fig["numpy_get_per_s"]), ("get from C, default", fig["c_get_per_s"])]),
        ("put + checkpoint from C, OMEN_OPEN_HUGE_PAGES (vectors/s)", fig["c_huge_put_vps"],
         [("numpy.memmap write+flush", fig["numpy_write_vps"]), ("put from C, default", fig["c_put_vps"])]),
    ] if fig["c_huge_get_per_s"] == fig["c_huge_get_per_s"] else []) + [  # NaN when the run had no c_huge rounds
        ("get_batch of 1,000 (vectors/s)", fig["omendb_get_batch_vps"],
         [("numpy.memmap fancy index", fig["numpy_get_batch_vps"])]),
        ("PQ32 encode on put (vectors/s)", fig["omendb_encode_vps"],
         [("faiss IndexPQ.add", fig["faiss_add_vps"]), (f"usearch add ({args.usearch_n:,} HNSW)", fig["usearch_add_vps"])]),
        ("PQ32 training 25K (1/s)", 1 / fig["omendb_train_s"], [("faiss train", 1 / fig["faiss_train_s"])]),
        ("PQ search, single (qps)", fig["omendb_search_qps"], [("faiss IndexPQ", fig["faiss_search_qps"])]),
        ("PQ search, batch (qps)", fig["omendb_search_batch_qps"], [("faiss IndexPQ", fig["faiss_search_batch_qps"])]),
        ("PQ + rerank 20, batch (qps)", fig["omendb_search_rr20_batch_qps"], [("faiss IndexPQ (lower recall)", fig["faiss_search_batch_qps"])]),
        ("PQ + rerank 100, single (qps)", fig["omendb_search_rr_qps"], [("faiss IndexRefineFlat x10", fig["faiss_search_rr_qps"])]),
        ("PQ + rerank 100, batch (qps)", fig["omendb_search_rr_batch_qps"], [("faiss IndexRefineFlat x10", fig["faiss_search_rr_batch_qps"])]),
        ("open (1/ms)", 1 / fig["omendb_open_ms"], [(f"usearch view ({args.usearch_n:,} vectors; OmenDB {args.n:,})", 1 / fig["usearch_view_ms"])]),
    ]
    # Plot: omendb / peer ratio per workload, log scale, 1x line.
    labels, vals, colors = [], [], []
    palette = {"faiss": "#4c72b0", "numpy": "#dd8452", "usearch": "#55a868"}
    for name, o, peers in rows:
        for pname, p in peers:
            labels.append(f"{name.split(' (')[0]}\nvs {pname}")
            vals.append(o / p)
            colors.append(next((c for k, c in palette.items() if k in pname), "#8c8c8c"))
    fig_h = 0.42 * len(labels) + 1.2
    f, ax = plt.subplots(figsize=(10.5, fig_h))
    y = np.arange(len(labels))
    ax.barh(y, vals, color=colors)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", lw=1)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    for yi, v in zip(y, vals):
        ax.text(v, yi, f" {v:.2f}x", va="center", fontsize=7)
    ax.set_xlabel("OmenDB speed / peer speed (log; > 1 = OmenDB faster); medians of %d rounds, one run\n"
                  "grey: hardware baseline, blue: faiss, orange: numpy, green: usearch" % args.runs)
    ax.set_title(f"OmenDB vs baselines and peers, {args.n:,} x {args.dim}, {args.threads} threads, {result['machine']['cores']} cores (shared)",
                 fontsize=9)
    plt.tight_layout()
    plt.savefig(docs / "benchmarks.png", dpi=110)

    v = result["versions"]
    lines = []
    lines.append(f"Generated by `crates/omendb-bench/scripts/compare.sh` on {result['generated']}: "
                 f"{args.n:,} x {args.dim} clustered float32 vectors, {args.nq:,} queries, k = {K}, "
                 f"{args.threads} threads for every library, {args.runs} rounds (each round runs OmenDB then every peer), "
                 f"medians; numpy {v['numpy']}, faiss-cpu {v['faiss']}, usearch {v['usearch']}. "
                 f"Load average at the end: {', '.join(f'{x:.1f}' for x in result['machine']['load_at_end'])} "
                 f"on {result['machine']['cores']} cores (the machine is shared; ratios are what to read).")
    lines.append("")
    lines.append("### Targets (issue 6 item 3, issue 3 items 7-8)")
    lines.append("")
    lines.append("| target | measured | goal | status |")
    lines.append("|---|---|---|---|")
    for name, measured, goal, status, src in targets:
        lines.append(f"| {name} ({src}) | {measured} | {goal} | {status} |")
    lines.append("")
    lines.append("### OmenDB vs peers, same data, same run")
    lines.append("")
    lines.append("| workload | OmenDB | peer | peer figure | OmenDB / peer |")
    lines.append("|---|---:|---|---:|---:|")
    for name, o, peers in rows:
        for pname, p in peers:
            lines.append(f"| {name} | {fmt(o)} | {pname} | {fmt(p)} | {o / p:.2f}x |")
    lines.append(f"| recall@10, PQ32 | {fig['omendb_recall']:.3f} | faiss IndexPQ | {fig['faiss_recall']:.3f} | |")
    lines.append(f"| recall@10, rerank 20 | {fig['omendb_recall_rr20']:.3f} | faiss IndexPQ | {fig['faiss_recall']:.3f} | |")
    lines.append(f"| recall@10, rerank 100 | {fig['omendb_recall_rr']:.3f} | faiss IndexRefineFlat x10 | {fig['faiss_recall_rr']:.3f} | |")
    sweep = result["rounds"].get("recall_seeds")
    if sweep:
        per_seed = lambda xs: ", ".join(f"{x:.4f}" for x in xs)  # noqa: E731
        lines.append(f"| recall@10, PQ32, k-means seeds {fig['seed_list']} (median) | {per_seed(sweep['omendb'])} "
                     f"({fig['omendb_recall_seeds_median']:.4f}) | faiss IndexPQ | {per_seed(sweep['faiss'])} "
                     f"({fig['faiss_recall_seeds_median']:.4f}) | |")
    lines.append(f"| usearch save ({args.usearch_n:,}) | | usearch | {fmt(fig['usearch_save_ms'], 'ms')} | |")
    lines.append("")
    lines.append("CPU time per operation (process CPU seconds, all threads; not disturbed by other tenants the way wall time is):")
    lines.append("")
    lines.append("| workload | OmenDB CPU-s | faiss CPU-s | faiss / OmenDB |")
    lines.append("|---|---:|---:|---:|")
    for name, (o, p) in fig["cpu"].items():
        lines.append(f"| {name} | {o:.3g} | {p:.3g} | {p / o:.2f}x |")
    lines.append("")
    lines.append("![OmenDB vs peers](benchmarks.png)")
    lines.append("")
    if grid:
        lines.append("### The OmenDB grid (`omendb_bench --grid quick`), each figure beside its same-run baseline")
        lines.append("")
        lines.append("| workload | dim | n | threads | OmenDB | unit | baseline | baseline figure | ratio | notes |")
        lines.append("|---|---:|---:|---:|---:|---|---|---:|---:|---|")
        for (w, d, nn), r in grid.items():
            notes = ", ".join(f"{k} {fmt(x)}" for k, x in r["extra"].items() if k not in ("pq_m",))
            lines.append(f"| {w} | {d} | {nn:,} | {r['threads']} | {fmt(r['value'])} | {r['unit']} | {r['baseline']} | "
                         f"{fmt(r['baseline_value'])} | {r['ratio']:.3f} | {notes} |")
        lines.append("")
    if mem:
        lines.append(f"### Memory: {mem['n']:,} x {mem['dim']} PQ{mem['pq_m']} (raw kept: {mem['raw_kept']}), fresh process")
        lines.append("")
        lines.append("| state | VmRSS MB | RssAnon MB | RssFile MB | growth B/vector (all / anon / file) | store files resident |")
        lines.append("|---|---:|---:|---:|---|---|")
        for s in mem["snapshots"]:
            st = s["status"]
            files = ", ".join(f"{k} {x / 1e6:.1f} MB" for k, x in s["store_files_rss"].items())
            lines.append(f"| {s['label']} | {st['VmRSS'] / 1e6:.1f} | {st['RssAnon'] / 1e6:.1f} | {st['RssFile'] / 1e6:.1f} | "
                         f"{s['growth_bytes_per_vector']:.2f} / {s['anon_growth_bytes_per_vector']:.2f} / "
                         f"{s['file_growth_bytes_per_vector']:.2f} | {files} |")
        lines.append("")
        lines.append(f"stats.heap_bytes = {mem['heap_bytes']:,} ({mem['heap_bytes'] / mem['n']:.2f} B/vector); open {mem['open_ms']:.0f} ms, "
                     f"first PQ search {mem['search_ms']:.0f} ms (cold).")
        lines.append("")
    body = "\n".join(lines)
    md = docs / "benchmarks.md"
    begin, end = "<!-- BEGIN GENERATED by crates/omendb-bench/scripts/compare.py -->", "<!-- END GENERATED -->"
    text = md.read_text() if md.exists() else f"# Benchmarks\n\n{begin}\n{end}\n"
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    pre, rest = text.split(begin, 1)
    _, post = rest.split(end, 1)
    md.write_text(f"{pre}{begin}\n{body}\n{end}{post}")
    print(f"wrote {md} and {docs / 'benchmarks.png'}")


if __name__ == "__main__":
    sys.exit(main())
