# Per-call overhead of OmenDB from Mojo: N calls of omen_get on a present ID
# and N/1000 calls of a 1,000-vector put_batch of 768-dim vectors; median of
# 5 runs.
# Usage: bench_omendb <empty-dir> [N]
from std.sys import argv, exit
from std.time import perf_counter_ns
from std.ffi import external_call
from omendb import Store, Options, version, CStr

comptime DIM = 768
comptime BATCH = 1000
comptime RUNS = 5


def median(var xs: List[Float64]) -> Float64:
    # insertion sort: 5 values
    for i in range(1, len(xs)):
        var j = i
        while j > 0 and xs[j - 1] > xs[j]:
            var t = xs[j]
            xs[j] = xs[j - 1]
            xs[j - 1] = t
            j -= 1
    return xs[len(xs) // 2]


def main() raises:
    var args = argv()
    if len(args) < 2:
        print("usage: bench_omendb <empty-dir> [N]")
        exit(2)
    var dir = String(args[1])
    var n = 100000
    if len(args) > 2:
        n = Int(String(args[2]))
    var o = Options()
    o.create = True
    o.dim = DIM
    var s = Store.open(dir + "/get", o)
    var v = List[Float32](length=DIM, fill=0.5)
    s.put(["present"], v)
    var out = List[Float32](length=DIM, fill=0)
    var id = String("present")

    var per_get = List[Float64]()
    for _ in range(RUNS):
        var t0 = perf_counter_ns()
        for _ in range(n):
            s.get_into(id, out)
        per_get.append(Float64(perf_counter_ns() - t0) / Float64(n))
    var per_get_alloc = List[Float64]()
    for _ in range(RUNS):
        var t0 = perf_counter_ns()
        for _ in range(n):
            var r = s.get(id)
            if r[0] != 0.5:
                raise Error("bad value")
        per_get_alloc.append(Float64(perf_counter_ns() - t0) / Float64(n))
    var per_noop = List[Float64]()
    for _ in range(RUNS):
        var t0 = perf_counter_ns()
        for _ in range(n):
            # Same signature as in the omendb package: Mojo rejects one symbol
            # declared with two signatures in a program.
            _ = external_call["omen_version", CStr]()
        per_noop.append(Float64(perf_counter_ns() - t0) / Float64(n))
    s.close()

    var calls = n // 1000
    if calls < 1:
        calls = 1
    var vecs = List[Float32](capacity=BATCH * DIM)
    for i in range(BATCH * DIM):
        vecs.append(Float32(i % 1000) * 0.001)
    var id_lists = List[List[String]]()
    for b in range(calls):
        var ids = List[String](capacity=BATCH)
        for i in range(BATCH):
            ids.append("b" + String(b) + "-" + String(i))
        id_lists.append(ids^)
    var per_put = List[Float64]()
    for run in range(RUNS):
        var ps = Store.open(dir + "/put" + String(run), o)
        var t0 = perf_counter_ns()
        for b in range(calls):
            ps.put(id_lists[b], vecs)
        per_put.append(Float64(perf_counter_ns() - t0) / Float64(calls))
        ps.close()
    var put_ns = median(per_put^)
    print("host=mojo version=" + version() + " N=" + String(n) + " runs=5 (median)")
    print("  get, Store.get_into (no alloc)       :", Int(median(per_get^)), "ns/call")
    print("  get, Store.get (allocates result)    :", Int(median(per_get_alloc^)), "ns/call")
    print("  omen_version (bare external_call)    :", Int(median(per_noop^)), "ns/call")
    print(
        "  put_batch 1000x768, Store.put        :", Int(put_ns), "ns/call =",
        Int(Float64(BATCH) * 1e9 / put_ns), "vectors/s",
    )
