# Tests of the Mojo binding against libomendb.so. Prints pass/fail counts;
# exits 1 on any failure.
# Usage: mojo run -I bindings/mojo <link flags> bindings/mojo/test_omendb.mojo <empty-dir>
from std.os import listdir
from std.sys import argv, exit
from omendb import (
    Store, Options, Stats, Hit, RecoveryReport, Filter, Cursor, Found, version, status_name, error_status,
    METRIC_L2, METRIC_IP, OMEN_ERR_INVALID_ARGUMENT, OMEN_ERR_DIMENSION,
    OMEN_ERR_NOT_FOUND, OMEN_ERR_CORRUPT, OMEN_ERR_READ_ONLY, OMEN_ERR_BUFFER_TOO_SMALL,
    OMEN_OPEN_HUGE_PAGES, OMEN_SEARCH_METHOD_EXACT, OMEN_SEARCH_METHOD_IVF, SearchPlan, CalibrationPoint,
    Progress,
)


struct T:
    var passed: Int
    var failed: Int
    var dir: String
    var n: Int

    def __init__(out self, dir: String):
        self.passed = 0
        self.failed = 0
        self.dir = dir
        self.n = 0

    def check(mut self, cond: Bool, name: String):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL:", name)

    def path(mut self) -> String:
        """A fresh store directory for each test."""
        self.n += 1
        return self.dir + "/s" + String(self.n)


def opts_create(dim: Int, metric: Int = METRIC_L2) -> Options:
    var o = Options()
    o.create = True
    o.dim = dim
    o.metric = metric
    return o^


struct Rng:
    """Xorshift64*: deterministic test data without imports."""

    var s: UInt64

    def __init__(out self, seed: UInt64):
        self.s = seed

    def next(mut self) -> Float32:
        self.s ^= self.s >> 12
        self.s ^= self.s << 25
        self.s ^= self.s >> 27
        var x = (self.s * 2685821657736338717) >> 40
        return Float32(Int(x)) / Float32(1 << 24) * 2.0 - 1.0

    def vecs(mut self, n: Int) -> List[Float32]:
        var v = List[Float32](capacity=n)
        for _ in range(n):
            v.append(self.next())
        return v^


def ids_of(n: Int, prefix: String) -> List[String]:
    var ids = List[String](capacity=n)
    for i in range(n):
        ids.append(prefix + String(i))
    return ids^


def row(v: List[Float32], i: Int, dim: Int) -> List[Float32]:
    var r = List[Float32](capacity=dim)
    for j in range(dim):
        r.append(v[i * dim + j])
    return r^


def same(a: List[Float32], b: List[Float32]) -> Bool:
    if len(a) != len(b):
        return False
    for i in range(len(a)):
        if a[i] != b[i]:
            return False
    return True


def expect_status(mut t: T, e: Error, status: Int, name: String):
    var got = error_status(e)
    t.check(got == status, name + ": want " + status_name(status) + ", got " + String(e))


def test_basics(mut t: T) raises:
    t.check(version().byte_length() > 0, "version")
    t.check(status_name(0) == "OMEN_OK", "status_name(0)")
    t.check(status_name(5) == "OMEN_ERR_CORRUPT", "status_name(5)")
    t.check(status_name(99) == "OMEN_UNKNOWN", "status_name(99)")


def test_round_trip(mut t: T) raises:
    var dim = 8
    var rng = Rng(1)
    var s = Store.open(t.path(), opts_create(dim))
    var ids = ids_of(50, "id-")
    ids.append("\u00e9\u4e2d-unicode")
    var v = rng.vecs(51 * dim)
    s.put(ids, v)
    t.check(same(s.get("id-0"), row(v, 0, dim)), "get id-0 bit-exact")
    t.check(same(s.get("id-49"), row(v, 49, dim)), "get id-49 bit-exact")
    t.check(same(s.get("\u00e9\u4e2d-unicode"), row(v, 50, dim)), "get unicode id")
    t.check(s.stats().live_vectors == 51, "live_vectors 51")
    # upsert, last occurrence in a batch wins
    var up: List[String] = ["k", "other", "k"]
    var uv = List[Float32](length=3 * dim, fill=1.0)
    for j in range(dim):
        uv[2 * dim + j] = 3.0
    s.put(up, uv)
    t.check(s.get("k")[0] == 3.0, "last occurrence wins")
    var found = List[Bool]()
    var got = s.get_batch(["id-3", "missing", "k"], found)
    t.check(len(found) == 3 and found[0] and not found[1] and found[2], "get_batch found")
    t.check(got[dim] == 0.0 and got[0] == v[3 * dim], "get_batch rows")
    var out = List[Float32](length=dim, fill=0)
    s.get_into("id-7", out)
    t.check(same(out, row(v, 7, dim)), "get_into")
    t.check(s.delete(["id-1", "id-2", "nope"]) == 2, "delete count")
    try:
        _ = s.get("id-1")
        t.check(False, "get deleted must fail")
    except e:
        expect_status(t, e, OMEN_ERR_NOT_FOUND, "get deleted")
    t.check(s.delete(List[String]()) == 0, "empty delete")
    s.put(List[String](), List[Float32]())
    t.check(s.stats().live_vectors == 51, "live after delete + upsert")


def test_errors(mut t: T) raises:
    var dim = 4
    var path = t.path()
    var s = Store.open(path, opts_create(dim))
    var bad: List[Float32] = [1.0, 2.0, 3.0, 4.0]
    try:
        _ = s.get("never")
        t.check(False, "missing id must fail")
    except e:
        expect_status(t, e, OMEN_ERR_NOT_FOUND, "missing id")
    bad[2] = Float32.MAX * 2.0  # inf
    try:
        s.put(["a"], bad)
        t.check(False, "inf must fail")
    except e:
        expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "inf")
    bad[2] = bad[2] - bad[2]  # nan
    try:
        s.put(["a"], bad)
        t.check(False, "nan must fail")
    except e:
        expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "nan")
    t.check(s.stats().live_vectors == 0, "failed batches applied nothing")
    var ok: List[Float32] = [1.0, 2.0, 3.0, 4.0]
    try:
        s.put([""], ok)
        t.check(False, "empty id must fail")
    except e:
        expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "empty id")
    try:
        s.put(["a", "b"], ok)
        t.check(False, "short vector buffer must fail")
    except e:
        expect_status(t, e, OMEN_ERR_DIMENSION, "short vector buffer")
    s.put(["a"], ok)
    var small = List[Float32](length=2, fill=0)
    try:
        s.get_into("a", small)
        t.check(False, "small out buffer must fail")
    except e:
        expect_status(t, e, OMEN_ERR_BUFFER_TOO_SMALL, "small out buffer")
    s.close()
    try:
        _ = s.get("a")
        t.check(False, "closed store must fail")
    except e:
        expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "closed store")
    try:
        var o = Options()
        o.dim = dim + 1
        _ = Store.open(path, o)
        t.check(False, "reopen with other dim must fail")
    except e:
        expect_status(t, e, OMEN_ERR_DIMENSION, "reopen with other dim")
    try:
        _ = Store.open(path + "-absent", Options())
        t.check(False, "open missing must fail")
    except e:
        expect_status(t, e, OMEN_ERR_NOT_FOUND, "open missing")
    var ro = Options()
    ro.read_only = True
    var r = Store.open(path, ro)
    t.check(r.get("a")[3] == 4.0, "read-only get")
    try:
        r.put(["b"], ok)
        t.check(False, "read-only put must fail")
    except e:
        expect_status(t, e, OMEN_ERR_READ_ONLY, "read-only put")


def brute_top(data: List[Float32], q: List[Float32], dim: Int, k: Int, ip: Bool) -> List[Int]:
    var n = len(data) // dim
    var d = List[Float64](capacity=n)
    for i in range(n):
        var acc: Float64 = 0
        for j in range(dim):
            var a = Float64(data[i * dim + j])
            var b = Float64(q[j])
            if ip:
                acc -= a * b
            else:
                acc += (a - b) * (a - b)
        d.append(acc)
    var top = List[Int](capacity=k)
    var used = List[Bool](length=n, fill=False)
    for _ in range(k):
        var best = -1
        for i in range(n):
            if not used[i] and (best < 0 or d[i] < d[best]):
                best = i
        used[best] = True
        top.append(best)
    return top^


def test_search(mut t: T) raises:
    var dim = 16
    var n = 300
    var k = 5
    for m in range(2):
        var rng = Rng(UInt64(7 + m))
        var s = Store.open(t.path(), opts_create(dim, METRIC_IP if m == 1 else METRIC_L2))
        var data = rng.vecs(n * dim)
        var ids = ids_of(n, "v")
        s.put(ids, data)
        var all_ok = True
        for _ in range(4):
            var q = rng.vecs(dim)
            var hits = s.search(q, k)
            var want = brute_top(data, q, dim, k, m == 1)
            if len(hits) != k:
                all_ok = False
                continue
            for i in range(k):
                if hits[i].id != ids[want[i]]:
                    all_ok = False
                if i > 0 and hits[i].distance < hits[i - 1].distance:
                    all_ok = False
            var ex = s.search(q, k, exact=True)
            if len(ex) != k or ex[0].id != hits[0].id:
                all_ok = False
        t.check(all_ok, "search matches brute force (metric " + String(m) + ")")
        var qs = rng.vecs(3 * dim)
        var batch = s.search_batch(qs, k, threads=2)
        var batch_ok = len(batch) == 3
        for i in range(len(batch)):
            var one = s.search(row(qs, i, dim), k)
            for j in range(k):
                if batch[i][j].id != one[j].id or batch[i][j].distance != one[j].distance:
                    batch_ok = False
        t.check(batch_ok, "search_batch equals single searches")
    var s2 = Store.open(t.path(), opts_create(2))
    s2.put(["a", "b"], [0.0, 0.0, 1.0, 1.0])
    var few = s2.search([0.0, 0.0], 10)
    t.check(len(few) == 2 and few[0].id == "a", "k larger than store")


def test_search_long_ids(mut t: T) raises:
    """1000-byte IDs outgrow the first ID buffer: the search retries with the
    reported size and returns whole IDs; short rows come back short."""
    var dim = 4
    var rng = Rng(UInt64(21))
    var s = Store.open(t.path(), opts_create(dim))
    var ids = List[String](capacity=8)
    for i in range(8):
        var id = String("")
        for _ in range(250):
            id += String(1000 + i)
        ids.append(id^)
    var data = rng.vecs(8 * dim)
    s.put(ids, data)
    var hits = s.search(row(data, 3, dim), 5)
    t.check(len(hits) == 5 and hits[0].id == ids[3], "long IDs: single search")
    var batch = s.search_batch(data, 4)
    var ok = len(batch) == 8
    for i in range(len(batch)):
        if len(batch[i]) != 4 or batch[i][0].id != ids[i]:
            ok = False
    t.check(ok, "long IDs: batch search")
    var listed = List[String]()
    listed.append(ids[6])
    listed.append(ids[7])
    var short = s.search_batch(data, 4, filter=Filter(listed))
    var short_ok = len(short) == 8
    for i in range(len(short)):
        if len(short[i]) != 2:
            short_ok = False
    t.check(short_ok, "rows with fewer hits than k")


def ends_in_5_or_0(id: String) -> Bool:
    return id.endswith("5") or id.endswith("0")


def brute_allowed(
    data: List[Float32], ids: List[String], q: List[Float32], dim: Int, k: Int,
    allowed: List[Bool],
) -> List[String]:
    """The IDs of the k nearest (L2) rows among the allowed ones."""
    var sub = List[Float32]()
    var sub_ids = List[String]()
    for i in range(len(ids)):
        if allowed[i]:
            sub.extend(row(data, i, dim))
            sub_ids.append(ids[i])
    var top = brute_top(sub, q, dim, min(k, len(sub_ids)), False)
    var out = List[String](capacity=len(top))
    for i in range(len(top)):
        out.append(sub_ids[top[i]])
    return out^


def same_ids(hits: List[Hit], want: List[String]) -> Bool:
    if len(hits) != len(want):
        return False
    for i in range(len(want)):
        if hits[i].id != want[i]:
            return False
    return True


def test_filters(mut t: T) raises:
    var dim = 8
    var n = 300
    var k = 6
    var rng = Rng(UInt64(21))
    var s = Store.open(t.path(), opts_create(dim))
    var data = rng.vecs(n * dim)
    var ids = ids_of(n, "v")
    s.put(ids, data)
    # Allow-list: every 7th ID and one the store lacks (ignored).
    var listed = List[String]()
    var in_list = List[Bool](length=n, fill=False)
    var by_pred = List[Bool](length=n, fill=False)
    var both = List[Bool](length=n, fill=False)
    for i in range(n):
        if i % 7 == 0:
            listed.append(ids[i])
            in_list[i] = True
        by_pred[i] = ends_in_5_or_0(ids[i])
        both[i] = in_list[i] and by_pred[i]
    listed.append("absent")
    var ok_ids = True
    var ok_pred = True
    var ok_both = True
    for _ in range(4):
        var q = rng.vecs(dim)
        for exact in range(2):
            var got = s.search(q, k, exact=exact == 1, filter=Filter(listed))
            ok_ids = ok_ids and same_ids(got, brute_allowed(data, ids, q, dim, k, in_list))
        var got_pred = s.search(q, k, filter=Filter(ends_in_5_or_0))
        ok_pred = ok_pred and same_ids(got_pred, brute_allowed(data, ids, q, dim, k, by_pred))
        var got_both = s.search(q, k, filter=Filter(listed, ends_in_5_or_0))
        ok_both = ok_both and same_ids(got_both, brute_allowed(data, ids, q, dim, k, both))
    t.check(ok_ids, "filter: allow-list matches brute force over the list")
    t.check(ok_pred, "filter: predicate matches brute force over what it keeps")
    t.check(ok_both, "filter: list and predicate, both must allow")
    # k past the list: every live listed ID, nothing else.
    var all_listed = s.search(row(data, 0, dim), 1000, filter=Filter(listed))
    t.check(len(all_listed) == len(listed) - 1, "filter: k past the list returns the list")
    # An empty list allows nothing; no filter is Filter().
    t.check(len(s.search(row(data, 0, dim), k, filter=Filter(List[String]()))) == 0,
            "filter: empty allow-list finds nothing")
    t.check(len(s.search(row(data, 0, dim), k, filter=Filter())) == k, "Filter() filters nothing")
    # Batch: each query as its own filtered search.
    var qs = rng.vecs(4 * dim)
    var batch = s.search_batch(qs, k, threads=2, filter=Filter(listed, ends_in_5_or_0))
    var ok_batch = len(batch) == 4
    for i in range(len(batch)):
        ok_batch = ok_batch and same_ids(batch[i], brute_allowed(data, ids, row(qs, i, dim), dim, k, both))
    t.check(ok_batch, "filter: search_batch matches brute force per query")
    var empty = s.search_batch(qs, k, filter=Filter(List[String]()))
    t.check(len(empty) == 4 and len(empty[0]) == 0 and len(empty[3]) == 0,
            "filter: empty allow-list in a batch")


def test_persistence(mut t: T) raises:
    var dim = 4
    var path = t.path()
    var s = Store.open(path, opts_create(dim))
    t.check(s.stats().checkpoint_seq == 1, "creation is checkpoint 1")
    s.put(["p", "q"], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    var seq = s.checkpoint()
    t.check(seq > 1, "checkpoint seq grows")
    s.put(["late"], [9.0, 9.0, 9.0, 9.0])
    s.close()
    var s2 = Store.open(path, Options())
    t.check(s2.dim == dim, "dim from store")
    t.check(s2.stats().live_vectors == 3, "reopen live")
    t.check(s2.get("q")[3] == 8.0 and s2.get("late")[0] == 9.0, "reopen data")
    t.check(s2.stats().checkpoint_seq > seq, "close checkpointed")
    _ = s2.delete(["p"])
    var before = s2.stats()
    t.check(before.dead_slots >= 1, "dead slot after delete")
    s2.compact()
    t.check(s2.stats().dead_slots == 0 and s2.stats().live_vectors == 2, "compact")
    s2.close()
    var rep = RecoveryReport()
    var s3 = Store.recover(path, Options(), rep)
    t.check(rep.live_vectors == 2 and rep.checkpoint_seq > seq, "recover report")
    t.check(s3.get("late")[1] == 9.0, "recover data")


def test_huge_pages(mut t: T) raises:
    var o = opts_create(4)
    o.huge_pages = True
    t.check((o.words()[1] & UInt32(OMEN_OPEN_HUGE_PAGES)) != 0, "huge_pages sets OMEN_OPEN_HUGE_PAGES")
    t.check((opts_create(4).words()[1] & UInt32(OMEN_OPEN_HUGE_PAGES)) == 0, "huge_pages off by default")
    var s = Store.open(t.path(), o)
    s.put(["h"], [1.0, 2.0, 3.0, 4.0])
    _ = s.checkpoint()
    t.check(s.get("h")[2] == 3.0, "a huge_pages store reads back")
    s.close()


def test_contains(mut t: T) raises:
    var s = Store.open(t.path(), opts_create(2))
    s.put(["a", "b"], [1.0, 2.0, 3.0, 4.0])
    _ = s.delete(["a"])
    t.check(s.contains("b") and not s.contains("a") and not s.contains("zz"), "contains")
    try:
        _ = s.contains("")
        t.check(False, "contains of an empty id must fail")
    except e:
        expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "contains empty id")


def test_close_discard(mut t: T) raises:
    var path = t.path()
    var s = Store.open(path, opts_create(2))
    s.put(["a", "b"], [1.0, 2.0, 3.0, 4.0])
    var seq = s.checkpoint()
    s.put(["c"], [5.0, 6.0])
    _ = s.delete(["a"])
    s.close_discard()
    s.close_discard()  # a no-op, like close
    # The writer lock is free at once.
    var s2 = Store.open(path, Options())
    t.check(s2.stats().checkpoint_seq == seq, "discard keeps the checkpoint seq")
    t.check(s2.contains("a") and not s2.contains("c"), "discard drops puts and deletes")
    _ = s2.delete(["a", "b"])
    s2.close_discard()
    var ro_opts = Options()
    ro_opts.read_only = True
    var r = Store.open(path, ro_opts)
    t.check(r.stats().live_vectors == 2, "discarded deletes")
    r.close_discard()


def open_and_drop(path: String, dim: Int) raises:
    var s = Store.open(path, opts_create(dim))
    s.put(["x"], [1.0, 2.0])
    # no close(): the destructor closes (and checkpoints)


def test_destructor(mut t: T) raises:
    var path = t.path()
    open_and_drop(path, 2)
    # The write lock was released and the data checkpointed by the destructor.
    var s = Store.open(path, Options())
    t.check(s.get("x")[1] == 2.0, "destructor closed and checkpointed")


def test_train_pq(mut t: T) raises:
    var dim = 16
    var o = opts_create(dim)
    o.pq_m = 4
    var s = Store.open(t.path(), o)
    var rng = Rng(3)
    var data = rng.vecs(1000 * dim)
    var ids = ids_of(1000, "t")
    s.put(ids, data)
    var prog = s.train_pq(show_progress=True)
    t.check(prog.calls > 0, "progress callback called")
    t.check(prog.monotone and prog.total_fixed, "progress monotone, total fixed")
    t.check(prog.finished(), "last progress call has done == total")
    var st = s.stats()
    t.check(st.pq_trained and st.pq_m == 4, "pq trained")
    t.check(st.pq_bits == 8 and not st.drop_raw, "pq_bits 8, raw kept")
    var hits = s.search(row(data, 17, dim), 5, rerank=50)
    t.check(len(hits) == 5 and hits[0].id == "t17", "pq search with rerank")


def drain(mut c: Cursor, page: Int, with_vectors: Bool, mut vecs: List[Float32]) raises -> List[String]:
    """Every ID (and vector) of a cursor, read in pages of `page`."""
    var all = List[String]()
    vecs = List[Float32]()
    while True:
        var v = List[Float32]()
        var ids = c.next(page, v, with_vectors)
        if len(ids) == 0:
            return all^
        for i in range(len(ids)):
            all.append(ids[i])
        vecs.extend(v^)


def test_cursor(mut t: T) raises:
    var dim = 8
    var s = Store.open(t.path(), opts_create(dim))
    var rng = Rng(21)
    var data = rng.vecs(200 * dim)
    var ids = ids_of(200, "c")
    ids[5] = String("L") * 100  # longer than the first try's room
    s.put(ids, data)
    var c = s.cursor()
    # After the moment: a new batch, deletes, a compaction.
    s.put(ids_of(30, "late"), rng.vecs(30 * dim))
    _ = s.delete(ids_of(10, "c"))
    s.compact()
    var vecs = List[Float32]()
    var got = drain(c, 7, True, vecs)
    var all_same = len(got) == len(ids)
    for i in range(len(got)):
        if i < len(ids) and got[i] != ids[i]:
            all_same = False
    t.check(all_same, "cursor lists the IDs of its moment in slot order")
    t.check(same(vecs, data), "cursor gives the vectors put")
    var c2 = s.cursor()
    var none = List[Float32]()
    t.check(len(drain(c2, 64, False, none)) == 221, "a new cursor sees the changes")
    try:
        _ = c2.next(0, none, False)
        t.check(False, "next(0) refused")
    except e:
        expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "next(0) refused")
    var c3 = s.cursor()
    s.close()
    try:
        _ = c3.next(5, none)
        t.check(False, "cursor of a closed store refuses")
    except e:
        expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "cursor of a closed store refuses")
    c3.close()
    c3.close()


def test_search_by_id_and_range(mut t: T) raises:
    var dim = 8
    var o = opts_create(dim)
    o.pq_m = 4
    var s = Store.open(t.path(), o)
    var rng = Rng(22)
    var data = rng.vecs(400 * dim)
    var ids = ids_of(400, "r")
    s.put(ids, data)
    _ = s.train_pq(show_progress=False)
    var q = row(data, 42, dim)
    var plain = s.search(q, 11, exact=True)
    var mine = s.search_by_id("r42", 10, exact=True)
    var agree = len(mine) == 10
    for i in range(len(mine)):
        agree = agree and mine[i].id == plain[i].id
    t.check(agree, "search_by_id is search with the stored vector")
    var others = s.search_by_id("r42", 10, exclude_self=True, exact=True)
    var j = 0
    var excl = len(others) == 10
    for i in range(len(plain)):
        if plain[i].id == "r42":
            continue
        if j < len(others):
            excl = excl and others[j].id == plain[i].id
        j += 1
    t.check(excl, "exclude_self leaves the ID out, the rest in order")
    try:
        _ = s.search_by_id("nope", 3)
        t.check(False, "search_by_id of an absent ID")
    except e:
        expect_status(t, e, OMEN_ERR_NOT_FOUND, "search_by_id of an absent ID")
    # Range: exact even though the store is trained.
    var all = s.search(q, 400, exact=True)
    var radius = (all[29].distance + all[30].distance) / 2
    var found = s.range_search(q, radius, 1000)
    var exact_30 = found.total == 30 and len(found.rows[0]) == 30
    for i in range(len(found.rows[0])):
        exact_30 = exact_30 and found.rows[0][i].id == all[i].id
    t.check(exact_30, "range_search finds the 30 within the radius, closest first")
    var capped = s.range_search(q, radius, 5, threads=2)
    t.check(capped.total == 30 and len(capped.rows[0]) == 5, "the cap cuts the list, total counts all")
    var counted = s.range_search(q, radius, 0)
    t.check(counted.total == 30 and len(counted.rows[0]) == 0, "max 0 counts")


def test_query_threads(mut t: T) raises:
    # 10,000 x 128 floats (5 MB): an exact scan that splits from 2 MiB a thread.
    var dim = 128
    var s = Store.open(t.path(), opts_create(dim))
    var rng = Rng(23)
    var data = rng.vecs(10000 * dim)
    s.put(ids_of(10000, "q"), data)
    var queries = rng.vecs(3 * dim)
    var alone = s.search_batch(queries, 10)
    var shares: List[Int] = [2, 3, 1024]
    for share in shares:
        var batch = s.search_batch(queries, 10, query_threads=share)
        var same = len(batch) == 3
        for i in range(3):
            same = same and same_hits(batch[i], alone[i])
            var one = s.search(row(queries, i, dim), 10, query_threads=share)
            same = same and same_hits(one, alone[i])
        var by_id = s.search_by_id("q7", 10, query_threads=share)
        same = same and same_hits(by_id, s.search_by_id("q7", 10))
        t.check(same, "query_threads " + String(share) + " finds the hits one thread finds")
    try:
        _ = s.search(row(queries, 0, dim), 10, query_threads=1025)
        t.check(False, "query_threads over 1024")
    except e:
        expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "query_threads over 1024")


def test_drop_raw_cursor(mut t: T) raises:
    var dim = 8
    var o = opts_create(dim)
    o.pq_m = 4
    o.drop_raw = True
    var s = Store.open(t.path(), o)
    var rng = Rng(23)
    s.put(ids_of(300, "d"), rng.vecs(300 * dim))
    _ = s.train_pq(show_progress=False)
    var c = s.cursor()
    var v = List[Float32]()
    try:
        _ = c.next(10, v, True)
        t.check(False, "vectors of a compressed store refused")
    except e:
        expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "vectors of a compressed store refused")
    t.check(len(drain(c, 64, False, v)) == 300, "a compressed store lists its IDs")
    var hits = s.search_by_id("d7", 3, exclude_self=True)
    t.check(len(hits) == 3 and hits[0].id != "d7", "search_by_id in a compressed store")
    try:
        _ = s.range_search(rng.vecs(dim), 1.0, 10)
        t.check(False, "range_search in a compressed store refused")
    except e:
        expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "range_search in a compressed store refused")


def clustered(mut rng: Rng, centres: List[Float32], n: Int, dim: Int) -> List[Float32]:
    """`n` vectors around `centres` (each value +-0.1): the shape IVF is for."""
    var nc = len(centres) // dim
    var v = List[Float32](capacity=n * dim)
    for _ in range(n):
        var c = Int((rng.next() + 1.0) * 0.5 * Float32(nc)) % nc
        for j in range(dim):
            v.append(centres[c * dim + j] + 0.1 * rng.next())
    return v^


def recall(found: List[List[Hit]], exact: List[List[Hit]]) -> Float64:
    """The share of exact's IDs that found holds, row by row."""
    var hit = 0
    var all = 0
    for i in range(len(exact)):
        for a in range(len(exact[i])):
            all += 1
            for b in range(len(found[i])):
                if found[i][b].id == exact[i][a].id:
                    hit += 1
                    break
    return Float64(hit) / Float64(all)


def same_hits(a: List[Hit], b: List[Hit]) -> Bool:
    if len(a) != len(b):
        return False
    for i in range(len(a)):
        if a[i].id != b[i].id or a[i].distance != b[i].distance:
            return False
    return True


def same_points(a: List[CalibrationPoint], b: List[CalibrationPoint]) -> Bool:
    if len(a) != len(b):
        return False
    for i in range(len(a)):
        if a[i].recall != b[i].recall or a[i].nprobe != b[i].nprobe or a[i].rerank_per_k != b[i].rerank_per_k:
            return False
    return True


def ivf_opts(dim: Int, lists: Int) -> Options:
    var o = opts_create(dim)
    o.pq_m = 8
    o.pq_bits = 4
    o.ivf = True
    o.ivf_lists = lists
    return o^


def test_ivf(mut t: T) raises:
    """A trained IVF store (PQ 4-bit, 4,000 clustered vectors): the default
    search meets its target, nprobe and target_recall reach the library
    from every search, the index survives reopening."""
    var dim = 16
    var n = 4000
    var path = t.path()
    var s = Store.open(path, ivf_opts(dim, 0))
    t.check(s.stats().ivf_lists == 0 and s.stats().ivf_stages == 0 and s.stats().ivf_list_code_bytes == 0,
            "ivf: no lists before training: " + String(s.stats()))
    var rng = Rng(29)
    var centres = rng.vecs(40 * dim)
    var data = clustered(rng, centres, n, dim)
    s.put(ids_of(n, "v"), data)
    _ = s.train_pq(show_progress=False)
    t.check(s.stats().ivf_lists == 62, "ivf: about sqrt(n) lists (round(sqrt(4000)) = 63), at most n/64 (62): " + String(s.stats()))
    # One stage (4-byte codes, 4,000 vectors): the lists hold whole PQ8x4 codes.
    t.check(s.stats().ivf_stages == 1 and s.stats().ivf_list_code_bytes == 4, "ivf: one stage, whole codes: " + String(s.stats()))
    var qs = clustered(rng, centres, 200, dim)
    var exact = s.search_batch(qs, 10, exact=True)
    var dflt = recall(s.search_batch(qs, 10), exact)
    var one = recall(s.search_batch(qs, 10, nprobe=1), exact)
    var low = recall(s.search_batch(qs, 10, target_recall=0.5), exact)
    var high = recall(s.search_batch(qs, 10, target_recall=0.99), exact)
    var every = recall(s.search_batch(qs, 10, rerank=1000, nprobe=n), exact)
    t.check(dflt >= 0.9, "ivf: default recall@10 " + String(dflt))
    t.check(one < dflt, "ivf: nprobe 1 gives " + String(one) + ", the default " + String(dflt))
    t.check(low < high and high >= 0.95, "ivf: target 0.5 gives " + String(low) + ", 0.99 " + String(high))
    t.check(every == 1.0, "ivf: every list and a deep re-rank give " + String(every))
    # search and search_by_id pass the parameters as search_batch does.
    var batch = s.search_batch(qs, 10, nprobe=1)
    var low_batch = s.search_batch(qs, 10, target_recall=0.5)
    for i in range(20):
        t.check(same_hits(s.search(row(qs, i, dim), 10, nprobe=1), batch[i]), "ivf: search = batch, nprobe 1")
        t.check(same_hits(s.search(row(qs, i, dim), 10, target_recall=0.5), low_batch[i]),
                "ivf: search = batch, target 0.5")
        var id = "v" + String(i * 200)
        t.check(same_hits(s.search_by_id(id, 10, nprobe=1), s.search(s.get(id), 10, nprobe=1)),
                "ivf: search_by_id = search of the stored vector, nprobe 1")
        t.check(same_hits(s.search_by_id(id, 10, target_recall=0.5), s.search(s.get(id), 10, target_recall=0.5)),
                "ivf: search_by_id = search of the stored vector, target 0.5")
    # Refused: a target outside [0, 1] (the library), nprobe outside uint32 (the binding).
    try:
        _ = s.search(row(qs, 0, dim), 10, target_recall=1.5)
        t.check(False, "ivf: search target 1.5 refused")
    except e:
        expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "ivf: search target 1.5 refused")
    try:
        _ = s.search_batch(qs, 10, target_recall=-0.5)
        t.check(False, "ivf: search_batch target -0.5 refused")
    except e:
        expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "ivf: search_batch target -0.5 refused")
    try:
        _ = s.search_by_id("v0", 10, target_recall=1.5)
        t.check(False, "ivf: search_by_id target 1.5 refused")
    except e:
        expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "ivf: search_by_id target 1.5 refused")
    try:
        _ = s.search(row(qs, 0, dim), 10, nprobe=-1)
        t.check(False, "ivf: nprobe -1 refused")
    except e:
        expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "ivf: nprobe -1 refused")
    # explain_search: what the search does (its setting, given explicitly,
    # finds the same); calibration: the points the targets choose from.
    var points = s.calibration()
    t.check(len(points) > 1, "ivf: calibration points " + String(len(points)))
    for i in range(1, len(points)):
        t.check(points[i].recall > points[i - 1].recall and points[i].cost >= points[i - 1].cost,
                "ivf: calibration point " + String(i) + " after the one before")
    var want = len(points) - 1
    for i in range(len(points)):
        if points[i].recall >= 0.9:
            want = i
            break
    var plan = s.explain_search(10, target_recall=0.9)
    t.check(plan.method == OMEN_SEARCH_METHOD_IVF and plan.nprobe == points[want].nprobe
            and plan.rerank == 10 * points[want].rerank_per_k and plan.calibrated_recall == points[want].recall,
            "ivf: the plan for 0.9 is its calibration point: " + String(plan))
    var by_target = s.search_batch(qs, 10, target_recall=0.9)
    var by_plan = s.search_batch(qs, 10, rerank=plan.rerank, nprobe=plan.nprobe)
    var same = True
    for i in range(len(by_target)):
        same = same and same_hits(by_target[i], by_plan[i])
    t.check(same, "ivf: the plan's setting searches as the target does")
    var explicit = s.explain_search(5, rerank=3, nprobe=2)
    t.check(explicit.method == OMEN_SEARCH_METHOD_IVF and explicit.nprobe == 2 and explicit.rerank == 5
            and explicit.calibrated_recall == 0, "ivf: an explicit plan: " + String(explicit))
    t.check(s.explain_search(10, exact=True).method == OMEN_SEARCH_METHOD_EXACT, "ivf: an exact plan")
    # A filter: a fifth of the store probes more lists; two IDs are searched exactly.
    var fifth = s.explain_search(10, target_recall=0.9, filter=Filter(ends_in_5_or_0))
    t.check(fifth.method == OMEN_SEARCH_METHOD_IVF and fifth.nprobe > plan.nprobe,
            "ivf: a filtered plan probes more lists: " + String(fifth) + " against " + String(plan))
    var two = List[String]()
    two.append("v1")
    two.append("v2")
    t.check(s.explain_search(10, filter=Filter(two)).method == OMEN_SEARCH_METHOD_EXACT, "ivf: two allowed IDs are searched exactly")
    try:
        _ = s.explain_search(10, target_recall=1.5)
        t.check(False, "ivf: explain_search target 1.5 refused")
    except e:
        expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "ivf: explain_search target 1.5 refused")
    # calibrate: the targets measured on 48 host queries halfway between
    # two stored vectors (like none of them) replace training's points.
    t.check(s.stats().calibration_queries == 0, "ivf: training's calibration: " + String(s.stats()))
    var seq = s.stats().checkpoint_seq
    var mids = List[Float32](capacity=48 * dim)
    for i in range(48):
        for j in range(dim):
            mids.append((data[2 * i * dim + j] + data[(2 * i + 1) * dim + j]) * 0.5)
    var prog = Progress(False, "calibrate")
    var host = s.calibrate(mids, prog)
    # Its progress: total 3 x nq throughout, done never decreasing, the
    # last call done == total.
    t.check(prog.calls > 0 and prog.first_total == 3 * 48 and prog.total_fixed and prog.monotone
            and prog.finished(), "ivf: calibrate progress: " + String(prog.calls) + " calls, last "
            + String(prog.last_done) + "/" + String(prog.last_total))
    var st = s.stats()
    t.check(st.calibration_queries == 48 and st.checkpoint_seq > seq, "ivf: calibrate counted and committed: " + String(st))
    t.check(len(host) > 0 and not same_points(host, points), "ivf: calibrate changed the calibration")
    t.check(same_points(s.calibration(), host), "ivf: calibration() is what calibrate returned")
    # The same queries measure the same points; with show_progress a bar.
    t.check(same_points(s.calibrate(mids, show_progress=True), host), "ivf: calibrate again with a bar")
    want = len(host) - 1
    for i in range(len(host)):
        if host[i].recall >= 0.9:
            want = i
            break
    plan = s.explain_search(10, target_recall=0.9)
    t.check(plan.nprobe == host[want].nprobe and plan.calibrated_recall == host[want].recall,
            "ivf: the plan for 0.9 follows the host's calibration: " + String(plan))
    # Refused, the calibration in use kept: a value that is not finite, a
    # ragged buffer, a read-only handle (which sees the committed one).
    var nan_q = mids.copy()
    nan_q[5] = Float32.MAX * 2.0  # inf
    nan_q[5] = nan_q[5] - nan_q[5]  # nan
    try:
        _ = s.calibrate(nan_q)
        t.check(False, "ivf: calibrate NaN refused")
    except e:
        expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "ivf: calibrate NaN refused")
    var ragged = row(mids, 0, dim)
    ragged.append(1.0)
    try:
        _ = s.calibrate(ragged)
        t.check(False, "ivf: calibrate ragged refused")
    except e:
        expect_status(t, e, OMEN_ERR_DIMENSION, "ivf: calibrate ragged refused")
    var ro = Options()
    ro.read_only = True
    var reader = Store.open(path, ro)
    t.check(reader.stats().calibration_queries == 48 and same_points(reader.calibration(), host),
            "ivf: a read-only open sees the committed calibration")
    try:
        _ = reader.calibrate(mids)
        t.check(False, "ivf: calibrate read-only refused")
    except e:
        expect_status(t, e, OMEN_ERR_READ_ONLY, "ivf: calibrate read-only refused")
    reader.close()
    t.check(s.stats().calibration_queries == 48 and same_points(s.calibration(), host),
            "ivf: refused calibrations kept the one in use")
    # Reopened: the same lists, the same answers.
    var before = s.search_batch(qs, 10)
    s.close()
    var again = Store.open(path, Options())
    t.check(again.stats().ivf_lists == 62, "ivf: lists after reopen")
    t.check(again.stats().calibration_queries == 48 and same_points(again.calibration(), host),
            "ivf: the host's calibration after reopen")
    var after = again.search_batch(qs, 10)
    var kept = len(after) == len(before)
    for i in range(len(before)):
        kept = kept and same_hits(after[i], before[i])
    t.check(kept, "ivf: reopening kept the results")


def test_ivf_options(mut t: T) raises:
    var dim = 16
    var rng = Rng(31)
    var centres = rng.vecs(40 * dim)
    var asked = Store.open(t.path(), ivf_opts(dim, 20))
    asked.put(ids_of(4000, "a"), clustered(rng, centres, 4000, dim))
    _ = asked.train_pq(show_progress=False)
    t.check(asked.stats().ivf_lists == 20, "ivf_lists 20 honoured: " + String(asked.stats()))
    var flat_opts = ivf_opts(dim, 0)
    flat_opts.ivf = False
    var flat = Store.open(t.path(), flat_opts)
    flat.put(ids_of(4000, "f"), clustered(rng, centres, 4000, dim))
    _ = flat.train_pq(show_progress=False)
    t.check(flat.stats().pq_trained and flat.stats().ivf_lists == 0, "no index without ivf")
    try:
        _ = flat.calibrate(clustered(rng, centres, 20, dim))
        t.check(False, "calibrate without ivf refused")
    except e:
        expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "calibrate without ivf refused")
    t.check(flat.stats().calibration_queries == 0, "no calibration without ivf")
    # Refused: without PQ (the library); lists without ivf, lists outside
    # uint32 (the binding).
    var no_pq = ivf_opts(dim, 0)
    no_pq.pq_m = 0
    var lists_only = ivf_opts(dim, 10)
    lists_only.ivf = False
    var negative = ivf_opts(dim, -1)
    var bad = List[Options]()
    bad.append(no_pq^)
    bad.append(lists_only^)
    bad.append(negative^)
    for i in range(len(bad)):
        try:
            _ = Store.open(t.path(), bad[i])
            t.check(False, "ivf options " + String(i) + " refused")
        except e:
            expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "ivf options " + String(i) + " refused")


def file_named(dir: String, prefix: String) raises -> String:
    """The path of the file in `dir` whose name starts with `prefix`."""
    var names = listdir(dir)
    for i in range(len(names)):
        if names[i].startswith(prefix):
            return dir + "/" + names[i]
    raise Error("no " + prefix + "* file in " + dir)


def flip_byte(path: String, at: Int) raises:
    var b: List[UInt8]
    with open(path, "r") as f:
        b = f.read_bytes()
    if at >= len(b):
        raise Error(path + " has " + String(len(b)) + " bytes, none at " + String(at))
    b[at] ^= 0xFF
    with open(path, "w") as f:
        f.write_bytes(b)


def self_hits(s: Store, data: List[Float32], dim: Int) -> Int:
    """Of the first 100 stored vectors, how many a search finds first."""
    var found = 0
    try:
        for i in range(100):
            var hits = s.search(row(data, i, dim), 1)
            if len(hits) == 1 and hits[0].id == "v" + String(i):
                found += 1
    except e:
        print("self_hits:", e)
        return -1
    return found


def test_damaged_index(mut t: T) raises:
    """An IVF store whose codebooks file (then a code record) is damaged
    opens without its index: index_damage() names the file, stats say
    index_status CORRUPT and untrained, every vector reads back, searches
    are exact, compact is refused; rebuild_index() brings the index back
    and removes the damage for good (a reopen finds it intact)."""
    var dim = 16
    var n = 600
    var files: List[String] = ["codebooks.", "codes."]
    for f in range(len(files)):
        var prefix = files[f]
        var path = t.path()
        var what = "damaged " + prefix + ": "
        var rng = Rng(UInt64(37))
        var centres = rng.vecs(20 * dim)
        var data = clustered(rng, centres, n, dim)
        var s = Store.open(path, ivf_opts(dim, 0))
        s.put(ids_of(n, "v"), data)
        _ = s.train_pq(show_progress=False)
        t.check(not s.index_damage() and s.stats().index_status == 0, what + "intact after training")
        var lists = s.stats().ivf_lists
        s.close()
        flip_byte(file_named(path, prefix), 4096 + 40)

        var d = Store.open(path, Options())
        var damage = d.index_damage()
        t.check(Bool(damage) and prefix in damage.value() and not damage.value().startswith("omen_"),
                what + "index_damage names the file (no function prefix): "
                + (damage.value() if damage else String("None")))
        var st = d.stats()
        t.check(st.index_status == OMEN_ERR_CORRUPT and not st.pq_trained and st.ivf_lists == 0,
                what + "stats " + String(st))
        var reads = True
        for i in range(0, n, 7):
            reads = reads and same(d.get("v" + String(i)), row(data, i, dim))
        t.check(reads, what + "every vector reads back")
        # Without the index every search is an exact scan: the default one,
        # one with nprobe 1, equal the exact search.
        var qs = clustered(rng, centres, 20, dim)
        var exact = d.search_batch(qs, 10, exact=True)
        var dflt = d.search_batch(qs, 10)
        var one = d.search_batch(qs, 10, nprobe=1)
        var all_exact = len(dflt) == len(exact) and len(one) == len(exact)
        for i in range(len(exact)):
            all_exact = all_exact and same_hits(dflt[i], exact[i]) and same_hits(one[i], exact[i])
        t.check(all_exact, what + "searches are exact")
        t.check(self_hits(d, data, dim) == 100, what + "every vector finds itself first")
        try:
            d.compact()
            t.check(False, what + "compact refused")
        except e:
            expect_status(t, e, OMEN_ERR_CORRUPT, what + "compact refused")

        var prog = d.rebuild_index(show_progress=False)
        t.check(prog.calls > 0 and prog.monotone and prog.finished(), what + "rebuild progress")
        t.check(not d.index_damage(), what + "no damage after the rebuild")
        st = d.stats()
        t.check(st.index_status == 0 and st.pq_trained and st.ivf_lists == lists,
                what + "stats after the rebuild " + String(st))
        var hits = self_hits(d, data, dim)
        t.check(hits >= 90, what + "the rebuilt index finds " + String(hits) + " of 100 first")
        d.close()
        var again = Store.open(path, Options())
        t.check(not again.index_damage() and again.stats().ivf_lists == lists, what + "intact after reopen")
        again.compact()
        t.check(again.stats().live_vectors == UInt64(n), what + "compact after the rebuild")
        again.close()
        try:
            _ = again.index_damage()
            t.check(False, what + "index_damage of a closed store")
        except e:
            expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, what + "index_damage of a closed store")
    # A store without PQ settings has no index to rebuild.
    var flat = Store.open(t.path(), opts_create(dim))
    var one_vec = List[Float32](length=dim, fill=0.5)
    flat.put(["a"], one_vec)
    t.check(not flat.index_damage() and flat.stats().index_status == 0, "no index: no damage")
    try:
        _ = flat.rebuild_index(show_progress=False)
        t.check(False, "rebuild_index without PQ refused")
    except e:
        expect_status(t, e, OMEN_ERR_INVALID_ARGUMENT, "rebuild_index without PQ refused")


def main() raises:
    var args = argv()
    if len(args) < 2:
        print("usage: test_omendb <empty-dir>")
        exit(2)
    var t = T(String(args[1]))
    test_basics(t)
    test_round_trip(t)
    test_errors(t)
    test_search(t)
    test_search_long_ids(t)
    test_filters(t)
    test_persistence(t)
    test_huge_pages(t)
    test_contains(t)
    test_close_discard(t)
    test_destructor(t)
    test_train_pq(t)
    test_cursor(t)
    test_search_by_id_and_range(t)
    test_query_threads(t)
    test_drop_raw_cursor(t)
    test_ivf(t)
    test_ivf_options(t)
    test_damaged_index(t)
    print("mojo tests:", t.passed, "passed,", t.failed, "failed")
    if t.failed > 0:
        exit(1)
