#!/usr/bin/env python3
"""Exact batch search: OmenDB against faiss IndexFlatL2 / IndexFlatIP, in one run.

Run through crates/omendb-bench/scripts/exact_batch.sh (it creates the
virtualenv under target/ and builds the release program). For each case
(n x dim, metric) both libraries load the same data (benchdata.make_data,
the clustered synthetic set of compare.py) and search the same queries for
their 10 nearest, exactly: batches of 100 and 1,000 queries at 1 and 2
threads. Each round runs every (batch, threads) on OmenDB
(crates/omendb-bench/src/bin/exact_batch.rs, a process kept open between
searches, fed commands on stdin) and then on faiss, alternating, so both
see the same load on a shared machine. Figures are medians over the rounds
(queries/s = batch size / seconds); ratios are OmenDB's median over faiss's.
OmenDB's hits are checked against faiss's (recall@10, 1.0 but for ties).

faiss runs with OMP_WAIT_POLICY=PASSIVE (as compare.py: in faiss's favour
on a busy machine) and faiss.omp_set_num_threads(threads), which also sets
the threads of the OpenMP OpenBLAS inside the faiss-cpu wheel. It is timed
two ways each round: as installed (faiss-cpu 1.15's
distance_compute_blas_threshold is 128,000 queries, so these batches take
its SIMD scan) and with the threshold at 20 (its former default: batches
go through BLAS sgemm). The bar is the faster of the two, per batch and
thread count; both are in the JSON.

Writes the figures to target/bench/exact_batch.json (--json to change) and
prints the markdown table of docs/benchmarks.md.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from benchdata import make_data  # noqa: E402  (this script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[3]
BIN = ROOT / "target" / "release" / "exact_batch"
WORK = ROOT / "target" / "bench" / "exact_batch"
K = 10


class OmenDB:
    def __init__(self, store, base_file, queries_file, dim, metric):
        self.p = subprocess.Popen(
            [str(BIN), "--dir", str(store), "--base", str(base_file), "--queries", str(queries_file),
             "--dim", str(dim), "--metric", metric],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def search(self, nq, threads):
        self.p.stdin.write(f"search {nq} {threads}\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            sys.exit("exact_batch ended early")
        out = json.loads(line)
        return out["secs"], np.array(out["ids"], dtype=np.int64).reshape(nq, K)

    def close(self):
        self.p.stdin.write("quit\n")
        self.p.stdin.close()
        self.p.wait()


FAISS_WAYS = {"faiss": None, "faiss_blas": 20}  # name: distance_compute_blas_threshold (None: as installed)


def faiss_search(index, queries, threads, blas_threshold):
    import faiss
    faiss.omp_set_num_threads(threads)
    faiss.cvar.distance_compute_blas_threshold = blas_threshold
    t = time.perf_counter()
    _, ids = index.search(queries, K)
    return time.perf_counter() - t, ids


def recall(got, want):
    return float(np.mean([len(set(g) & set(w)) / K for g, w in zip(got, want)]))


def run_case(n, dim, metric, batches, threads_list, rounds):
    import faiss
    base, queries = make_data(n, dim, max(batches), seed=dim)
    WORK.mkdir(parents=True, exist_ok=True)
    base_file, queries_file = WORK / f"base-{n}x{dim}.f32", WORK / f"queries-{dim}.f32"
    base.tofile(base_file)
    queries.tofile(queries_file)
    store = WORK / f"store-{n}x{dim}-{metric}"
    if store.exists():
        subprocess.run(["rm", "-rf", str(store)], check=True)
    t = time.perf_counter()
    omendb = OmenDB(store, base_file, queries_file, dim, metric)
    omendb.search(1, 1)  # waits for the store to be built
    print(f"  {n} x {dim} {metric}: store built in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    index = (faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP)(dim)
    index.add(base)
    del base
    installed = faiss.cvar.distance_compute_blas_threshold
    ways = {name: installed if t is None else t for name, t in FAISS_WAYS.items()}
    libs = ["omendb", *ways]
    times = {(lib, b, t): [] for lib in libs for b in batches for t in threads_list}
    agree = {}
    for r in range(rounds):
        for b in batches:
            for th in threads_list:
                ids = {}
                # Each round starts with the next library: none always runs first.
                for lib in libs[r % len(libs):] + libs[:r % len(libs)]:
                    if lib == "omendb":
                        secs, ids[lib] = omendb.search(b, th)
                    else:
                        secs, ids[lib] = faiss_search(index, queries[:b], th, ways[lib])
                    times[(lib, b, th)].append(secs)
                agree[(b, th)] = recall(ids["omendb"], ids["faiss"])
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr)
    omendb.close()
    subprocess.run(["rm", "-rf", str(store), str(base_file)], check=True)
    rows = []
    for b in batches:
        for th in threads_list:
            med = {lib: statistics.median(times[(lib, b, th)]) for lib in libs}
            best = min(ways, key=lambda w: med[w])
            rows.append({
                "n": n, "dim": dim, "metric": metric, "batch": b, "threads": th, "k": K,
                "omendb_qps": b / med["omendb"], "faiss_qps": b / med["faiss"], "faiss_blas_qps": b / med["faiss_blas"],
                "bar": best, "ratio": med[best] / med["omendb"],
                **{f"{lib}_secs": times[(lib, b, th)] for lib in libs},
                "recall_vs_faiss": agree[(b, th)],
            })
    return rows


def table(rows):
    lines = ["| n x dim | metric | batch | threads | OmenDB q/s | faiss q/s (as installed) | faiss q/s (BLAS) "
             "| OmenDB / faster faiss | hits = faiss's |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        peer = "IndexFlatL2" if r["metric"] == "l2" else "IndexFlatIP"
        lines.append(f"| {r['n']:,} x {r['dim']} | {r['metric']} ({peer}) | {r['batch']:,} | {r['threads']} | "
                     f"{r['omendb_qps']:,.0f} | {r['faiss_qps']:,.0f} | {r['faiss_blas_qps']:,.0f} | "
                     f"{r['ratio']:.2f} | {r['recall_vs_faiss']:.4f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dims", default="768,128")
    ap.add_argument("--metrics", default="l2,ip")
    ap.add_argument("--batches", default="100,1000")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default=str(ROOT / "target" / "bench" / "exact_batch.json"))
    a = ap.parse_args()
    import faiss
    batches = [int(x) for x in a.batches.split(",")]
    threads = [int(x) for x in a.threads.split(",")]
    rows = []
    for dim in [int(x) for x in a.dims.split(",")]:
        for metric in a.metrics.split(","):
            rows += run_case(a.n, dim, metric, batches, threads, a.rounds)
    out = {
        "what": "exact batch search, k = 10: OmenDB search_batch (exact) vs faiss IndexFlatL2/IndexFlatIP "
                "(faiss: as installed; faiss_blas: distance_compute_blas_threshold = 20); ratio = OmenDB q/s "
                "over the faster faiss's (bar), medians over the rounds",
        "rounds": a.rounds, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "faiss": faiss.__version__, "numpy": np.__version__, "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
        "rows": rows,
    }
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
