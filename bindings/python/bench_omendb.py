"""Per-call overhead of OmenDB through Python ctypes.

Times N calls of omen_get on a present ID and N/1000 calls of a 1,000-vector
put_batch of 768-dim vectors; reports the median of 5 runs.

Usage: OMENDB_LIB=target/release/libomendb.so python bench_omendb.py [N]
(N defaults to $OMENDB_BENCH_N or 100000). Imports pyomendb from this
checkout (src/), which has no library of its own: $OMENDB_LIB names it.
"""

import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))
import pyomendb as omendb  # noqa: E402

DIM = 768
BATCH = 1000
RUNS = 5


def median_ns_per_call(fn, calls):
    per = []
    for _ in range(RUNS):
        t0 = time.perf_counter_ns()
        fn()
        per.append((time.perf_counter_ns() - t0) / calls)
    return statistics.median(per)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("OMENDB_BENCH_N", "100000"))
    lib = omendb.load_library()
    tmp = tempfile.mkdtemp(prefix="omendb-bench-py-")
    rng = np.random.default_rng(0)
    try:
        # ---- get
        with omendb.Store.open(os.path.join(tmp, "get"), dim=DIM, create=True) as s:
            s.put(["present"], rng.standard_normal((1, DIM), dtype=np.float32))

            def wrapper_get():
                g = s.get
                for _ in range(n):
                    g("present")

            out = np.empty(DIM, dtype=np.float32)
            h, outp, f = s.handle, out.ctypes.data, lib.omen_get

            def raw_get():
                for _ in range(n):
                    f(h, b"present", 7, outp, DIM)

            vf = lib.omen_version

            def raw_noop():
                for _ in range(n):
                    vf()

            ns_wrap = median_ns_per_call(wrapper_get, n)
            ns_raw = median_ns_per_call(raw_get, n)
            ns_noop = median_ns_per_call(raw_noop, n)

        # ---- put_batch: fresh store per run, fresh IDs per batch
        calls = max(1, n // 1000)
        vecs = rng.standard_normal((BATCH, DIM), dtype=np.float32)
        id_lists = [["b%d-%d" % (b, i) for i in range(BATCH)] for b in range(calls)]
        per = []
        for run in range(RUNS):
            path = os.path.join(tmp, "put%d" % run)
            with omendb.Store.open(path, dim=DIM, create=True) as s:
                t0 = time.perf_counter_ns()
                for ids in id_lists:
                    s.put(ids, vecs)
                per.append((time.perf_counter_ns() - t0) / calls)
            shutil.rmtree(path)
        ns_put = statistics.median(per)

        print("host=python version=%s N=%d runs=%d (median)" % (omendb.version(), n, RUNS))
        print("  get, Store.get (allocates result)    : %8.0f ns/call" % ns_wrap)
        print("  get, raw ctypes omen_get (prealloc)  : %8.0f ns/call" % ns_raw)
        print("  omen_version (bare ctypes call)      : %8.0f ns/call" % ns_noop)
        print("  put_batch 1000x768, Store.put        : %8.0f ns/call = %.0f vectors/s"
              % (ns_put, BATCH * 1e9 / ns_put))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
