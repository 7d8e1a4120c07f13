#!/usr/bin/env python3
"""IVF index build time: OmenDB (train_pq of a store with an IVF index,
phase by phase, by the ivf_build program) against faiss IVF-PQ fast-scan
(index_factory "IVF{nlist},PQ{m}x4fs": train on 50 rows a list, as
ann_curves.py does, then add every row), same data, same threads, rounds
interleaved (faiss, OmenDB, faiss, ...) so that load on the shared machine
hits both alike. Reports every round, the medians, the ratio of the
medians OmenDB train / faiss build (the bar: at most 1/3) and the median
of the rounds' own ratios.

Data: the clustered synthetic vectors of benchdata.make_data (ann.sh's).
nlist: round(sqrt(n)) for both (OmenDB's own choice at these sizes).
faiss runs with OMP_WAIT_POLICY=PASSIVE unless the environment sets it:
on a loaded shared machine OpenMP's default spin-waiting made its builds
about 3 times slower (100,000 x 128, 2 threads, load 6), which would
flatter the ratio.

  cargo build --release -p omendb-bench --bin ivf_build
  . crates/omendb-bench/scripts/venv.sh
  $VENV/bin/python crates/omendb-bench/scripts/ivf_build.py --n 100000 --dim 128 --m 32 --rounds 5 \
      --json crates/omendb-bench/results/ivf-build-100k-128.json
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchdata import make_data  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when faiss loads OpenMP


def faiss_build(base, nlist, m, threads):
    import faiss
    faiss.omp_set_num_threads(threads)
    index = faiss.index_factory(base.shape[1], f"IVF{nlist},PQ{m}x4fs")
    train = base[:min(len(base), 50 * nlist)]
    t = time.perf_counter()
    index.train(train)
    t_train = time.perf_counter() - t
    index.add(base)
    return {"build_s": time.perf_counter() - t, "train_s": t_train, "train_rows": len(train)}


def omendb_build(args, paths, nlist):
    cmd = [str(args.binary), "--base", paths["base"], "--dim", str(args.dim), "--m", str(args.m),
           "--threads", str(args.threads), "--lists", str(nlist), "--dir", paths["store"]]
    if args.nq:
        cmd += ["--queries", paths["queries"], "--nq", str(args.nq)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--m", type=int, default=32, help="PQ sub-quantizers (4-bit): faiss PQ{m}x4fs, OmenDB pq_m")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--nq", type=int, default=200, help="queries for OmenDB's recall check at target 0.95 (0 = none)")
    ap.add_argument("--clusters", type=int, default=256)
    ap.add_argument("--spread", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--binary", type=Path, default=ROOT / "target/release/ivf_build")
    ap.add_argument("--scratch", type=Path, default=ROOT / "target/tmp")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    nlist = max(1, round(math.sqrt(args.n)))
    base, queries = make_data(args.n, args.dim, max(args.nq, 1), seed=args.seed, clusters=args.clusters, spread=args.spread)
    args.scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ivf-build-", dir=args.scratch) as tmp:
        paths = {"base": f"{tmp}/base.f32", "queries": f"{tmp}/queries.f32", "store": f"{tmp}/store"}
        base.tofile(paths["base"])
        queries.tofile(paths["queries"])
        rounds = []
        for r in range(args.rounds):
            f = faiss_build(base, nlist, args.m, args.threads)
            o = omendb_build(args, paths, nlist)
            rounds.append({"faiss": f, "omendb": o})
            print(f"round {r + 1}: faiss {f['build_s']:.3f} s (train {f['train_s']:.3f}), OmenDB train {o['train_s']:.3f} s "
                  f"(coarse {o['coarse_s']:.3f}, pq {o['pq_s']:.3f}, encode {o['encode_s']:.3f}, "
                  f"calibrate+write {o['finish_s']:.3f}; put {o['put_checkpoint_s']:.3f})"
                  + (f", recall@10 at target 0.95: {o['recall_at_0.95']:.3f}" if args.nq else ""), flush=True)

    med = lambda xs: statistics.median(xs)  # noqa: E731
    faiss_s = med([r["faiss"]["build_s"] for r in rounds])
    phases = {k: med([r["omendb"][k] for r in rounds])
              for k in ("train_s", "coarse_s", "pq_s", "encode_s", "finish_s", "put_checkpoint_s")}
    summary = {"faiss_build_s": faiss_s, "omendb": phases,
               "ratio_train_over_faiss": phases["train_s"] / faiss_s,
               "median_round_ratio": med([r["omendb"]["train_s"] / r["faiss"]["build_s"] for r in rounds]),
               "ratio_put_and_train_over_faiss": med([(r["omendb"]["train_s"] + r["omendb"]["put_checkpoint_s"])
                                                      for r in rounds]) / faiss_s}
    if args.nq:
        summary["omendb_recall_at_0.95"] = med([r["omendb"]["recall_at_0.95"] for r in rounds])
    print(json.dumps(summary, indent=1))
    if args.json:
        import faiss
        out = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "nlist": nlist, "faiss_index": f"IVF{nlist},PQ{args.m}x4fs",
               "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "engine": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                        capture_output=True, text=True).stdout.strip(),
               "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "load_at_end": os.getloadavg()},
               "versions": {"numpy": np.__version__, "faiss-cpu": faiss.__version__},
               "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
               "rounds": rounds, "medians": summary}
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
