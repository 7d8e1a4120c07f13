"""pytest tests of pyomendb, run against the INSTALLED package.

scripts/hosts/python.sh builds the wheel, installs it in a fresh virtualenv
and runs these tests from a directory where the sources are not importable.
"""

import ctypes
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from ctypes import byref, c_size_t, c_void_p

import numpy as np
import pytest

import pyomendb
from pyomendb import OmenError, Store

DIM = 16


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "store")


@pytest.fixture
def store(path):
    with Store.open(path, dim=DIM, create=True) as s:
        yield s


def ids_of(n, prefix="id"):
    return ["%s-%d" % (prefix, i) for i in range(n)]


class SpyLib:
    """Stands in for the ctypes library and records the arguments of some calls."""

    def __init__(self, real, names):
        self._real = real
        self.calls = {n: [] for n in names}
        for n in names:
            setattr(self, n, self._spy(n))

    def _spy(self, name):
        real_fn = getattr(self._real, name)

        def fn(*args):
            self.calls[name].append(args)
            return real_fn(*args)

        return fn

    def __getattr__(self, name):
        return getattr(self._real, name)


@pytest.fixture
def spy(monkeypatch):
    real = pyomendb.load_library()
    s = SpyLib(real, ["omen_put_batch", "omen_search_ids", "omen_search_batch_ids", "omen_key_id",
                      "omen_cursor_next", "omen_range_search_ids"])
    monkeypatch.setattr(pyomendb, "_lib", s)
    return s


# ------------------------------------------------------------------ basics


def test_version_and_status_names():
    assert pyomendb.version()
    assert pyomendb.status_name(0) == "OMEN_OK"
    assert pyomendb.status_name(pyomendb.OMEN_ERR_CORRUPT) == "OMEN_ERR_CORRUPT"
    assert pyomendb.status_name(pyomendb.OMEN_ERR_INTERNAL) == "OMEN_ERR_INTERNAL"
    assert pyomendb.status_name(12345) == "OMEN_UNKNOWN"
    assert pyomendb.status_name(-1) == "OMEN_UNKNOWN"


def test_options_default():
    # omen_options_default fills the first layout only (32 bytes: callers
    # built against an earlier header allocate no more); fields after it
    # keep what was there.
    lib = pyomendb.load_library()
    o = pyomendb.omen_options()
    ctypes.memset(ctypes.byref(o), 0xFF, ctypes.sizeof(o))
    lib.omen_options_default(ctypes.byref(o))
    assert o.struct_size == pyomendb.omen_options.ivf_lists.offset
    assert (o.flags, o.dim, o.metric, o.pq_m, o.pq_bits) == (0, 0, 0, 0, 8)
    assert o.ivf_lists == 0xFFFFFFFF


def test_put_get_round_trip(store, rng):
    ids = ids_of(100)
    v = rng.standard_normal((100, DIM), dtype=np.float32)
    store.put(ids, v)
    for i in (0, 17, 99):
        got = store.get(ids[i])
        assert got.dtype == np.float32 and got.shape == (DIM,)
        assert np.array_equal(got, v[i])  # bit-exact
    assert len(store) == 100
    assert "id-5" in store and "nope" not in store


def test_bytes_and_str_ids(store, rng):
    ids = [b"\x00\xff\xfe binary", "unicode-\u00e9\u4e2d", b"x" * 1024]
    v = rng.standard_normal((3, DIM), dtype=np.float32)
    store.put(ids, v)
    assert np.array_equal(store.get(b"\x00\xff\xfe binary"), v[0])
    assert np.array_equal(store.get("unicode-\u00e9\u4e2d".encode()), v[1])
    assert np.array_equal(store.get(b"x" * 1024), v[2])
    got, _ = store.search(v[0], 1)
    assert got == [b"\x00\xff\xfe binary"]
    got, _ = store.search(v[1], 1, decode=True)
    assert got == ["unicode-\u00e9\u4e2d"]


def test_upsert_and_last_occurrence_wins(store):
    a = np.full((3, DIM), 1.0, dtype=np.float32)
    a[1] = 2.0
    a[2] = 3.0
    store.put(["k", "other", "k"], a)
    assert np.array_equal(store.get("k"), a[2])
    store.put(["k"], np.full((1, DIM), 7.0, dtype=np.float32))
    assert np.array_equal(store.get("k"), np.full(DIM, 7.0, dtype=np.float32))
    assert len(store) == 2


def test_get_batch_found_mask(store, rng):
    v = rng.standard_normal((4, DIM), dtype=np.float32)
    store.put(["a", "b", "c", "d"], v)
    out, found = store.get_batch(["b", "missing", "d"])
    assert found.tolist() == [True, False, True]
    assert np.array_equal(out[0], v[1])
    assert np.array_equal(out[1], np.zeros(DIM, dtype=np.float32))
    assert np.array_equal(out[2], v[3])
    out, found = store.get_batch([])
    assert out.shape == (0, DIM) and found.shape == (0,)


def test_delete(store, rng):
    store.put(ids_of(10), rng.standard_normal((10, DIM), dtype=np.float32))
    assert store.delete(["id-1", "id-2", "nope"]) == 2
    assert store.delete(["id-1"]) == 0
    assert store.delete([]) == 0
    assert len(store) == 8
    with pytest.raises(OmenError) as e:
        store.get("id-1")
    assert e.value.status == pyomendb.OMEN_ERR_NOT_FOUND


def test_empty_batches_are_noops(store):
    store.put([], np.zeros((0, DIM), dtype=np.float32))
    assert len(store) == 0
    ids, dists = store.search_batch(np.zeros((0, DIM), dtype=np.float32), 5)
    assert ids == [] and dists.shape == (0, 5)


def test_arrow_slice_offsets(store):
    # id_offsets[0] may be non-zero: pass a slice of a larger buffer directly.
    lib = pyomendb.load_library()
    buf = b"XXXabcdefg"
    offs = np.array([3, 6, 10], dtype=np.uint64)  # "abc", "defg"
    v = np.arange(2 * DIM, dtype=np.float32).reshape(2, DIM)
    st = lib.omen_put_batch(store.handle, 2, buf, offs.ctypes.data, v.ctypes.data)
    assert st == 0, lib.omen_last_error()
    assert np.array_equal(store.get("abc"), v[0])
    assert np.array_equal(store.get("defg"), v[1])


# -------------------------------------------------------------- zero copy


def test_put_is_zero_copy_for_f32_c_contiguous(store, spy, rng):
    v = rng.standard_normal((50, DIM), dtype=np.float32)
    assert v.flags.c_contiguous
    store.put(ids_of(50), v)
    (args,) = spy.calls["omen_put_batch"]
    assert args[4] == v.ctypes.data, "wrapper copied a float32 C-contiguous array"
    # the ID batch is one bytes buffer + one uint64 offsets array
    assert isinstance(args[2], bytes) and args[1] == 50


def test_put_zero_copy_of_a_row_slice(store, spy, rng):
    big = rng.standard_normal((100, DIM), dtype=np.float32)
    part = big[10:20]  # still C-contiguous: no copy
    store.put(ids_of(10), part)
    assert spy.calls["omen_put_batch"][0][4] == part.ctypes.data
    assert np.array_equal(store.get("id-0"), big[10])


def test_search_query_is_zero_copy(store, spy, rng):
    data = rng.standard_normal((5, DIM), dtype=np.float32)
    store.put(ids_of(5), data)
    q = rng.standard_normal(DIM, dtype=np.float32)
    first = store.search(q, 3)
    assert spy.calls["omen_search_ids"][0][1] == q.ctypes.data
    # A read-only query (its address taken another way) and a row of a
    # matrix (a view into it) are passed in place too, with the same hits.
    frozen = q.copy()
    frozen.flags.writeable = False
    again = store.search(frozen, 3)
    assert spy.calls["omen_search_ids"][1][1] == frozen.ctypes.data
    assert again[0] == first[0] and np.array_equal(again[1], first[1])
    store.search(data[3], 3)
    assert spy.calls["omen_search_ids"][2][1] == data[3].ctypes.data
    qs = rng.standard_normal((4, DIM), dtype=np.float32)
    store.search_batch(qs, 3)
    assert spy.calls["omen_search_batch_ids"][0][2] == qs.ctypes.data


def test_search_resolves_ids_in_one_call(store, spy, rng):
    data = rng.standard_normal((50, DIM), dtype=np.float32)
    store.put(ids_of(50), data)
    ids, d = store.search(data[7], 10)
    assert ids[0] == b"id-7" and len(ids) == 10 and d.shape == (10,)
    bids, bd = store.search_batch(data[:4], 10, decode=True)
    assert [row[0] for row in bids] == ["id-0", "id-1", "id-2", "id-3"]
    assert len(spy.calls["omen_search_ids"]) == 1
    assert len(spy.calls["omen_search_batch_ids"]) == 1
    assert spy.calls["omen_key_id"] == []  # no call per hit
    for q, (row, dists) in enumerate(zip(bids, bd)):
        for id, dist in zip(row, dists):
            assert np.isclose(dist, np.sum((store.get(id) - data[q]) ** 2), rtol=1e-4, atol=1e-5)


def test_search_retries_with_the_needed_id_size(store, spy, rng):
    # 1000-byte IDs outgrow the first guess (32 bytes a hit): one retry
    # with the size the library reports.
    ids = [("%04d" % i).encode() * 250 for i in range(8)]
    data = rng.standard_normal((8, DIM), dtype=np.float32)
    store.put(ids, data)
    got, _ = store.search(data[3], 5)
    assert got[0] == ids[3] and len(got) == 5 and all(g in ids for g in got)
    assert len(spy.calls["omen_search_ids"]) == 2
    bids, _ = store.search_batch(data[:3], 4)
    assert [row[0] for row in bids] == ids[:3] and all(len(row) == 4 for row in bids)
    assert len(spy.calls["omen_search_batch_ids"]) == 2


def test_search_batch_returns_an_nq_by_k_distance_array(store, rng):
    data = rng.standard_normal((20, DIM), dtype=np.float32)
    store.put(ids_of(20), data)
    ids, d = store.search_batch(data[:3], 5)
    assert isinstance(d, np.ndarray) and d.shape == (3, 5) and d.dtype == np.float32
    for i in range(3):
        single_ids, single_d = store.search(data[i], 5)
        assert ids[i] == single_ids and np.array_equal(d[i], single_d)
    # Rows with fewer hits than k: shorter ID lists, inf in the missing slots.
    ids, d = store.search_batch(data[:3], 8, filter_ids=["id-1", "id-2", "id-9"])
    assert [len(row) for row in ids] == [3, 3, 3]
    assert sorted(ids[0]) == [b"id-1", b"id-2", b"id-9"]
    assert np.all(np.isfinite(d[:, :3])) and np.all(np.isinf(d[:, 3:]))
    ids, d = store.search_batch(np.zeros((0, DIM), dtype=np.float32), 4)
    assert ids == [] and d.shape == (0, 4)


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a.astype(np.float64),  # other dtype
        lambda a: np.asfortranarray(a),  # column-major
        lambda a: np.repeat(a, 2, axis=1)[:, ::2],  # strided view
        lambda a: a.tolist(),  # plain lists
    ],
    ids=["float64", "fortran", "strided", "list"],
)
def test_put_converts_other_inputs(store, spy, rng, make):
    v = rng.standard_normal((20, DIM), dtype=np.float32)
    src = make(v)
    store.put(ids_of(20), src)
    args = spy.calls["omen_put_batch"][0]
    if isinstance(src, np.ndarray):
        assert args[4] != src.ctypes.data, "non-float32-C input must be converted"
    for i in (0, 19):
        assert np.array_equal(store.get(ids_of(20)[i]), v[i])


# ------------------------------------------------------------------ errors


def test_error_dimension_on_reopen(path):
    Store.open(path, dim=DIM, create=True).close()
    with pytest.raises(OmenError) as e:
        Store.open(path, dim=DIM + 1)
    assert e.value.status == pyomendb.OMEN_ERR_DIMENSION
    assert e.value.name == "OMEN_ERR_DIMENSION"
    assert e.value.message  # omen_last_error() text
    assert "OMEN_ERR_DIMENSION" in str(e.value)


def test_error_dimension_of_put_buffer(store):
    with pytest.raises(OmenError) as e:
        store.put(["a"], np.zeros((1, DIM + 3), dtype=np.float32))
    assert e.value.status == pyomendb.OMEN_ERR_DIMENSION
    with pytest.raises(OmenError) as e:
        store.search(np.zeros(DIM - 1, dtype=np.float32), 1)
    assert e.value.status == pyomendb.OMEN_ERR_DIMENSION
    with pytest.raises(ValueError):
        store.put(["a", "b"], np.zeros((1, DIM), dtype=np.float32))


def test_error_missing_id(store):
    with pytest.raises(OmenError) as e:
        store.get("never-put")
    assert e.value.status == pyomendb.OMEN_ERR_NOT_FOUND
    assert e.value.name == "OMEN_ERR_NOT_FOUND"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_error_non_finite(store, bad):
    v = np.ones((3, DIM), dtype=np.float32)
    v[2, 5] = bad
    with pytest.raises(OmenError) as e:
        store.put(["a", "b", "c"], v)
    assert e.value.status == pyomendb.OMEN_ERR_INVALID_ARGUMENT
    assert e.value.message
    # all or nothing: the good rows of the failed batch were not applied
    assert len(store) == 0
    assert "a" not in store


def test_error_bad_ids(store):
    v = np.ones((1, DIM), dtype=np.float32)
    for bad in (b"", b"y" * 1025):
        with pytest.raises(OmenError) as e:
            store.put([bad], v)
        assert e.value.status == pyomendb.OMEN_ERR_INVALID_ARGUMENT
    with pytest.raises(TypeError):
        store.put([42], v)


def test_error_decreasing_offsets(store):
    lib = pyomendb.load_library()
    offs = np.array([0, 3, 2], dtype=np.uint64)
    v = np.ones((2, DIM), dtype=np.float32)
    st = lib.omen_put_batch(store.handle, 2, b"abc", offs.ctypes.data, v.ctypes.data)
    assert st == pyomendb.OMEN_ERR_INVALID_ARGUMENT
    assert lib.omen_last_error()


def test_error_open_missing_without_create(tmp_path):
    with pytest.raises(OmenError) as e:
        Store.open(str(tmp_path / "absent"))
    assert e.value.status == pyomendb.OMEN_ERR_NOT_FOUND
    with pytest.raises(OmenError) as e:
        Store.open(str(tmp_path / "no" / "parent"), dim=4, create=True)
    assert e.value.status == pyomendb.OMEN_ERR_NOT_FOUND


def test_error_read_only(path):
    with Store.open(path, dim=DIM, create=True) as s:
        s.put(["a"], np.ones((1, DIM), dtype=np.float32))
    with Store.open(path, read_only=True) as r:
        assert np.array_equal(r.get("a"), np.ones(DIM, dtype=np.float32))
        with pytest.raises(OmenError) as e:
            r.put(["b"], np.ones((1, DIM), dtype=np.float32))
        assert e.value.status == pyomendb.OMEN_ERR_READ_ONLY


def test_error_locked_by_other_process(path):
    with Store.open(path, dim=DIM, create=True):
        code = textwrap.dedent(
            """
            import pyomendb
            try:
                pyomendb.Store.open(%r)
            except pyomendb.OmenError as e:
                print(e.name)
            else:
                print("opened")
            """
            % path
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60)
        assert out.stdout.strip() == "OMEN_ERR_LOCKED", out.stdout + out.stderr


def test_error_bad_metric_and_pq_m(tmp_path):
    with pytest.raises(ValueError):
        Store.open(str(tmp_path / "a"), dim=8, metric="manhattan", create=True)
    with pytest.raises(OmenError) as e:
        Store.open(str(tmp_path / "b"), dim=8, metric=99, create=True)
    assert e.value.status == pyomendb.OMEN_ERR_INVALID_ARGUMENT
    with pytest.raises(OmenError) as e:
        Store.open(str(tmp_path / "c"), dim=10, pq_m=3, create=True)
    assert e.value.status == pyomendb.OMEN_ERR_INVALID_ARGUMENT


# ------------------------------------------------------- context manager


def test_context_manager_closes(path):
    with Store.open(path, dim=DIM, create=True) as s:
        s.put(["a"], np.ones((1, DIM), dtype=np.float32))
        assert not s.closed
    assert s.closed
    with pytest.raises(ValueError):
        s.get("a")
    s.close()  # idempotent


def test_context_manager_closes_on_exception(path):
    with pytest.raises(RuntimeError):
        with Store.open(path, dim=DIM, create=True) as s:
            s.put(["a"], np.ones((1, DIM), dtype=np.float32))
            raise RuntimeError("boom")
    assert s.closed
    # close checkpointed: the write survived and the lock was released
    with Store.open(path) as s2:
        assert "a" in s2


# ------------------------------------------------------------------ search


def brute(data, q, k, metric):
    if metric == "l2":
        d = ((data - q) ** 2).sum(1)
    elif metric == "ip":
        d = -(data @ q)
    else:
        d = 1.0 - (data @ q) / (np.linalg.norm(data, axis=1) * np.linalg.norm(q))
    order = np.argsort(d, kind="stable")[:k]
    return order, d[order]


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_search_matches_numpy(tmp_path, rng, metric):
    n, k = 500, 10
    data = rng.standard_normal((n, DIM), dtype=np.float32)
    ids = ids_of(n)
    with Store.open(str(tmp_path / metric), dim=DIM, metric=metric, create=True) as s:
        assert s.stats()["metric_name"] == metric
        s.put(ids, data)
        for _ in range(5):
            q = rng.standard_normal(DIM, dtype=np.float32)
            got_ids, got_d = s.search(q, k)
            order, want_d = brute(data.astype(np.float64), q.astype(np.float64), k, metric)
            assert got_ids == [ids[i].encode() for i in order]
            assert np.allclose(got_d, want_d, rtol=1e-4, atol=1e-4), (got_d, want_d)
            assert np.all(np.diff(got_d) >= 0)
            got2, _ = s.search(q, k, exact=True)
            assert got2 == got_ids


def test_search_batch_matches_single(store, rng):
    data = rng.standard_normal((300, DIM), dtype=np.float32)
    store.put(ids_of(300), data)
    qs = rng.standard_normal((7, DIM), dtype=np.float32)
    bids, bd = store.search_batch(qs, 5, threads=2)
    assert len(bids) == 7
    for i in range(7):
        sids, sd = store.search(qs[i], 5)
        assert bids[i] == sids
        assert np.array_equal(bd[i], sd)


def test_search_k_larger_than_store(store, rng):
    store.put(ids_of(3), rng.standard_normal((3, DIM), dtype=np.float32))
    ids, d = store.search(np.zeros(DIM, dtype=np.float32), 10)
    assert len(ids) == 3 and d.shape == (3,)
    bids, _ = store.search_batch(np.zeros((2, DIM), dtype=np.float32), 10)
    assert [len(x) for x in bids] == [3, 3]


def test_search_does_not_return_deleted(store, rng):
    data = rng.standard_normal((20, DIM), dtype=np.float32)
    store.put(ids_of(20), data)
    store.delete(["id-3"])
    ids, _ = store.search(data[3], 20)
    assert b"id-3" not in ids and len(ids) == 19


def test_search_nan_query(store):
    store.put(["a"], np.ones((1, DIM), dtype=np.float32))
    q = np.ones(DIM, dtype=np.float32)
    q[0] = np.nan
    with pytest.raises(OmenError) as e:
        store.search(q, 1)
    assert e.value.status == pyomendb.OMEN_ERR_INVALID_ARGUMENT


# ------------------------------------------------------------------ filters


def brute_allowed(data, ids, q, k, allowed):
    """The k nearest (L2) of the rows whose ID is in ``allowed``, as ID bytes."""
    rows = [i for i, name in enumerate(ids) if name.encode() in allowed]
    d = ((data[rows].astype(np.float64) - q.astype(np.float64)) ** 2).sum(axis=1)
    return [ids[rows[j]].encode() for j in np.argsort(d, kind="stable")[:k]]


@pytest.fixture
def filled(store, rng):
    data = rng.standard_normal((400, DIM), dtype=np.float32)
    ids = ids_of(400)
    store.put(ids, data)
    return store, data, ids


def test_filter_ids_allow_list(filled, rng):
    s, data, ids = filled
    # str and bytes IDs mixed; an ID the store lacks is ignored.
    listed = ["id-%d" % i for i in range(0, 400, 10)] + [b"id-7", b"absent"]
    allowed = {i if isinstance(i, bytes) else i.encode() for i in listed}
    for _ in range(3):
        q = rng.standard_normal(DIM, dtype=np.float32)
        for exact in (False, True):
            got, d = s.search(q, 8, exact=exact, filter_ids=listed)
            assert got == brute_allowed(data, ids, q, 8, allowed)
            assert np.all(np.diff(d) >= 0)
    # k past the allowed set: every live listed ID, nothing else.
    got, _ = s.search(data[7], 100, filter_ids=listed)
    assert got[0] == b"id-7" and set(got) == allowed - {b"absent"}
    # A tuple, a generator and a single str work as lists too.
    assert s.search(data[7], 1, filter_ids=("id-7",))[0] == [b"id-7"]
    assert s.search(data[7], 1, filter_ids=(i for i in ["id-7"]))[0] == [b"id-7"]
    assert s.search(data[7], 1, filter_ids="id-20")[0] == [b"id-20"]


def test_filter_ids_empty_allows_nothing(filled):
    s, data, _ = filled
    ids, dists = s.search(data[0], 5, filter_ids=[])
    assert ids == [] and len(dists) == 0
    ids, dists = s.search_batch(data[:3], 5, filter_ids=[])
    assert ids == [[], [], []] and dists.shape == (3, 5) and np.all(np.isinf(dists))
    # None is no list at all.
    assert len(s.search(data[0], 5, filter_ids=None)[0]) == 5


def test_filter_predicate(filled, rng):
    s, data, ids = filled
    seen = []

    def third(id):
        seen.append(id)
        return int(id.split(b"-")[1]) % 3 == 0

    allowed = {i.encode() for i in ids if int(i.split("-")[1]) % 3 == 0}
    q = rng.standard_normal(DIM, dtype=np.float32)
    got, _ = s.search(q, 10, filter=third)
    assert got == brute_allowed(data, ids, q, 10, allowed)
    # Called with bytes, once per live vector.
    assert all(type(i) is bytes for i in seen)
    assert sorted(seen) == sorted(i.encode() for i in ids)
    # Any truthy/falsy return value works; a non-callable is refused.
    assert s.search(data[5], 3, filter=lambda id: "yes" if id == b"id-5" else None)[0] == [b"id-5"]
    with pytest.raises(TypeError):
        s.search(q, 3, filter=42)


def test_filter_ids_and_predicate_both_must_allow(filled, rng):
    s, data, ids = filled
    listed = ids_of(100)  # id-0 .. id-99
    calls = []

    def even(id):
        calls.append(id)
        return int(id.split(b"-")[1]) % 2 == 0

    allowed = {("id-%d" % i).encode() for i in range(0, 100, 2)}
    q = rng.standard_normal(DIM, dtype=np.float32)
    got, _ = s.search(q, 12, filter_ids=listed, filter=even)
    assert got == brute_allowed(data, ids, q, 12, allowed)
    assert sorted(calls) == sorted(i.encode() for i in listed), "asked only about listed IDs"


def test_filter_exception_propagates(filled):
    s, data, _ = filled
    calls = []

    class Boom(Exception):
        pass

    def bad(id):
        calls.append(id)
        if len(calls) == 5:
            raise Boom("from the filter")
        return True

    with pytest.raises(Boom, match="from the filter"):
        s.search(data[0], 5, filter=bad)
    # After raising, the callable is not called again within that search.
    assert len(calls) == 5
    calls.clear()
    with pytest.raises(Boom):
        s.search_batch(data[:4], 5, filter=bad)
    assert len(calls) == 5
    # The store is fine afterwards.
    assert s.search(data[0], 1)[0] == [b"id-0"]


def test_filter_search_batch(filled, rng):
    s, data, ids = filled
    listed = ["id-%d" % i for i in range(1, 400, 4)]
    allowed = {i.encode() for i in listed}
    qs = rng.standard_normal((6, DIM), dtype=np.float32)
    calls = []

    def keep(id):
        calls.append(id)
        return True

    for kw in ({"filter_ids": listed}, {"filter": lambda id: id in allowed},
               {"filter_ids": listed, "filter": keep}):
        calls.clear()
        got, dists = s.search_batch(qs, 7, threads=2, **kw)
        for i in range(6):
            assert got[i] == brute_allowed(data, ids, qs[i], 7, allowed), kw
            single, sd = s.search(qs[i], 7, **kw)
            assert single == got[i] and np.array_equal(sd, dists[i, : len(sd)])
    # The predicate runs once per candidate for the whole batch, not per query.
    calls.clear()
    s.search_batch(qs, 7, filter_ids=listed, filter=keep)
    assert len(calls) == len(listed)


def test_search_params_layout():
    # The trailing filter and IVF fields of omen_search_params, at the header's offsets.
    P = pyomendb.omen_search_params
    assert [(f, getattr(P, f).offset) for f, _ in P._fields_] == [
        ("struct_size", 0), ("rerank", 4), ("exact", 8), ("threads", 12), ("filter_n", 16),
        ("filter_ids", 24), ("filter_id_offsets", 32), ("filter_fn", 40), ("filter_user", 48),
        ("nprobe", 56), ("target_recall", 60), ("query_threads", 64),
    ]


def test_options_and_stats_layout():
    # The trailing fields of omen_options and omen_stats, at the header's offsets.
    assert pyomendb.omen_options.ivf_lists.offset == 32
    assert pyomendb.omen_stats.pq_auto_train_status.offset == 88
    assert pyomendb.omen_stats.ivf_lists.offset == 92
    assert pyomendb.omen_stats.index_status.offset == 96
    assert pyomendb.omen_stats.calibration_queries.offset == 100
    assert pyomendb.omen_stats.ivf_stages.offset == 104
    assert pyomendb.omen_stats.ivf_list_code_bytes.offset == 108
    assert ctypes.sizeof(pyomendb.omen_stats) == 112


# ----------------------------------------------------- persistence & info


def test_reopen_persistence(path, rng):
    data = rng.standard_normal((200, DIM), dtype=np.float32)
    with Store.open(path, dim=DIM, create=True) as s:
        assert s.stats()["checkpoint_seq"] == 1  # creation is checkpoint 1
        s.put(ids_of(200), data)
        s.delete(["id-7"])
        seq = s.checkpoint()
        assert seq > 1
        assert s.checkpoint() >= seq  # nothing to commit: may keep the number
        s.put(["late"], data[:1])
    # close checkpointed "late" too
    with Store.open(path) as s:  # dim=0: take it from the store
        assert s.dim == DIM
        st = s.stats()
        assert st["live_vectors"] == 200
        assert st["checkpoint_seq"] > seq
        assert np.array_equal(s.get("id-0"), data[0])
        assert np.array_equal(s.get("late"), data[0])
        assert "id-7" not in s
        ids, _ = s.search(data[42], 1)
        assert ids == [b"id-42"]


def test_contains_without_copying(store, monkeypatch):
    store.put(["a", b"\x00b"], np.ones((2, DIM), dtype=np.float32))
    store.delete(["a"])
    monkeypatch.setattr(pyomendb, "_lib", SpyLib(pyomendb._lib, ["omen_get"]))
    assert b"\x00b" in store and store.contains(b"\x00b")
    assert "a" not in store and not store.contains("a")
    assert "never" not in store
    assert pyomendb._lib.calls["omen_get"] == [], "contains copied vectors with omen_get"
    for bad in ("", b"x" * 1025):
        with pytest.raises(OmenError) as e:
            store.contains(bad)
        assert e.value.status == pyomendb.OMEN_ERR_INVALID_ARGUMENT
        with pytest.raises(OmenError):
            bad in store


def test_close_discard_keeps_the_last_checkpoint(path):
    ones = np.ones((3, DIM), dtype=np.float32)
    s = Store.open(path, dim=DIM, create=True)
    s.put(["a", "b", "c"], ones)
    seq = s.checkpoint()
    s.put(["d"], ones[:1])
    s.put(["a"], 2 * ones[:1])
    s.delete(["b"])
    s.close(discard=True)
    assert s.closed
    s.close(discard=True)  # idempotent, like close()
    # The lock is released at once: a writer opens right away.
    s = Store.open(path)
    assert s.stats()["checkpoint_seq"] == seq and s.stats()["live_vectors"] == 3
    assert "b" in s and "d" not in s
    assert np.array_equal(s.get("a"), ones[0])
    s.delete(["a", "b", "c"])
    s.close(discard=True)
    with Store.open(path) as s:
        assert s.stats()["live_vectors"] == 3
        s.put(["e"], ones[:1])
    with Store.open(path, read_only=True) as r:
        assert "e" in r
        r.close(discard=True)
        assert r.closed


def test_sync_writes_checkpoints_every_batch(path):
    with Store.open(path, dim=4, create=True, sync_writes=True) as s:
        a = s.stats()["checkpoint_seq"]
        s.put(["x"], np.ones((1, 4), dtype=np.float32))
        b = s.stats()["checkpoint_seq"]
        s.delete(["x"])
        c = s.stats()["checkpoint_seq"]
        assert a < b < c


def _vectors_vm_flags(path):
    """VmFlags of this process's mappings of the store's vectors file."""
    vectors = sorted(str(p) for p in Path(path).iterdir() if p.name.startswith("vectors."))[-1]
    flags, ours = [], False
    with open("/proc/self/smaps") as f:
        for line in f:
            if line.startswith("VmFlags:"):
                if ours:
                    flags.append(line.split()[1:])
            elif "-" in line.split()[0]:
                ours = line.rstrip().endswith(vectors)
    return flags


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps is Linux's")
def test_huge_pages_maps_the_vectors_for_huge_pages(path, rng):
    thp = os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled")
    data = rng.standard_normal((200, 8), dtype=np.float32)
    with Store.open(path, dim=8, create=True, huge_pages=True) as s:
        s.put(ids_of(200), data)
        s.checkpoint()
        flags = _vectors_vm_flags(path)
        assert flags and all(("hg" in f) or not thp for f in flags), flags
        assert np.array_equal(s.get("id-7"), data[7])
    with Store.open(path) as s:
        flags = _vectors_vm_flags(path)
        assert flags and not any("hg" in f for f in flags), flags
    s, report = Store.recover(path, huge_pages=True)
    with s:
        assert report["live_vectors"] == 200
        flags = _vectors_vm_flags(path)
        assert flags and all(("hg" in f) or not thp for f in flags), flags


def test_compact(store, rng):
    data = rng.standard_normal((100, DIM), dtype=np.float32)
    store.put(ids_of(100), data)
    store.put(ids_of(10), data[:10] + 1)  # replace 10
    store.delete(ids_of(20)[10:])  # delete 10
    st = store.stats()
    assert st["live_vectors"] == 90
    assert st["dead_slots"] >= 20
    store.compact()
    st = store.stats()
    assert st["live_vectors"] == 90 and st["dead_slots"] == 0
    assert np.array_equal(store.get("id-0"), data[0] + 1)
    ids, _ = store.search(data[50], 1)
    assert ids == [b"id-50"]


def test_stats_fields(store, rng):
    store.put(ids_of(10), rng.standard_normal((10, DIM), dtype=np.float32))
    st = store.stats()
    for key in ("dim", "metric", "pq_m", "pq_trained", "raw_kept", "live_vectors", "dead_slots",
                "checkpoint_seq", "disk_bytes", "payload_bytes", "heap_bytes", "pq_bits", "pq_train_size", "drop_raw",
                "pq_auto_train_status", "ivf_lists", "index_status", "calibration_queries", "ivf_stages",
                "ivf_list_code_bytes"):
        assert key in st
    assert not [k for k in st if k.startswith("reserved")], st
    assert st["ivf_lists"] == 0 and st["calibration_queries"] == 0
    assert st["ivf_stages"] == 0 and st["ivf_list_code_bytes"] == 0
    assert st["dim"] == DIM and st["live_vectors"] == 10 and st["raw_kept"] is True
    assert st["pq_trained"] is False
    assert st["pq_m"] == 0 and st["pq_bits"] == 0 and st["pq_train_size"] == 0 and st["drop_raw"] is False
    assert st["payload_bytes"] >= 10 * DIM * 4


def test_recover_report(path, rng):
    with Store.open(path, dim=DIM, create=True) as s:
        s.put(ids_of(30), rng.standard_normal((30, DIM), dtype=np.float32))
        seq = s.checkpoint()
    s2, rep = Store.recover(path)
    with s2:
        assert set(rep) == {"checkpoint_seq", "live_vectors", "discarded_bytes",
                            "verified_bytes"}
        assert rep["checkpoint_seq"] >= seq
        assert rep["live_vectors"] == 30
        assert len(s2) == 30


def test_recover_read_only_changes_nothing(path, rng):
    with Store.open(path, dim=DIM, create=True) as s:
        s.put(ids_of(5), rng.standard_normal((5, DIM), dtype=np.float32))

    def snapshot():
        out = {}
        for root, _, files in os.walk(path):
            for f in files:
                p = os.path.join(root, f)
                with open(p, "rb") as fh:
                    out[p] = fh.read()
        return out

    before = snapshot()
    s2, rep = Store.recover(path, read_only=True)
    s2.close()
    assert rep["live_vectors"] == 5
    assert snapshot() == before


# --------------------------------------------------------------- PQ / progress


def test_train_pq_progress_callback(path, rng):
    n, dim = 2000, 32
    data = rng.standard_normal((n, dim), dtype=np.float32)
    calls = []
    with Store.open(path, dim=dim, pq_m=8, create=True) as s:
        s.put(ids_of(n), data)
        s.train_pq(progress=lambda done, total: calls.append((done, total)))
        assert calls, "progress callback never called"
        totals = {t for _, t in calls}
        assert len(totals) == 1, "total changed during one run"
        dones = [d for d, _ in calls]
        assert dones == sorted(dones), "done decreased"
        assert calls[-1][0] == calls[-1][1], "last call must have done == total"
        st = s.stats()
        assert st["pq_trained"] is True and st["pq_m"] == 8
        # PQ search + exact rerank finds an exact duplicate first
        ids, _ = s.search(data[123], 10, rerank=50)
        assert ids[0] == b"id-123"
        ids, _ = s.search(data[123], 5, exact=True)
        assert ids[0] == b"id-123"
        assert np.array_equal(s.get("id-123"), data[123])  # raw kept


def _train_with_stderr(path, rng, monkeypatch, **kw):
    """Trains a small PQ store and returns what was written to sys.stderr."""
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    with Store.open(path, dim=16, pq_m=4, create=True) as s:
        s.put(ids_of(1000), rng.standard_normal((1000, 16), dtype=np.float32))
        s.train_pq(**kw)
        assert s.stats()["pq_trained"] is True
    return buf.getvalue()


def test_train_pq_draws_no_bar_unless_asked(path, rng, monkeypatch):
    assert _train_with_stderr(path, rng, monkeypatch) == ""


def test_train_pq_progress_true_uses_tqdm(path, rng, monkeypatch):
    # tqdm is a test dependency (pyproject's "test" extra): its bar, not ours.
    text = _train_with_stderr(path, rng, monkeypatch, progress=True)
    assert "train_pq: 100%|" in text, text
    assert "train_pq [" not in text


def test_train_pq_progress_true_without_tqdm_draws_a_text_bar(path, rng, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now fails
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    text = _train_with_stderr(path, rng, monkeypatch, progress=True)
    assert "train_pq [" in text and "100%" in text


def test_train_pq_callback_exception_is_reraised(path, rng):
    class Stop(Exception):
        pass

    def cb(done, total):
        raise Stop()

    with Store.open(path, dim=16, pq_m=4, create=True) as s:
        s.put(ids_of(1000), rng.standard_normal((1000, 16), dtype=np.float32))
        try:
            s.train_pq(progress=cb)
        except Stop:
            return
        pytest.fail("exception raised in the progress callback was swallowed")


# ------------------------------------------------------------------- IVF index

IVF_N, IVF_DIM = 4000, 16


def _clustered(rng, centres, n):
    """Vectors around ``centres`` (spread 0.1 each way): the shape IVF is for."""
    picked = centres[rng.integers(0, len(centres), n)]
    return (picked + rng.uniform(-0.1, 0.1, (n, centres.shape[1]))).astype(np.float32)


@pytest.fixture
def ivf_store(path, rng):
    """A trained IVF store (PQ 4-bit, lists chosen at training) of IVF_N
    clustered vectors, with 200 queries from the same clusters."""
    centres = rng.uniform(-1, 1, (40, IVF_DIM)).astype(np.float32)
    data = _clustered(rng, centres, IVF_N)
    with Store.open(path, dim=IVF_DIM, pq_m=8, pq_bits=4, ivf_lists=0, create=True) as s:
        assert s.stats()["ivf_lists"] == 0  # no index before training
        s.put(ids_of(IVF_N), data)
        s.train_pq()
        yield s, data, _clustered(rng, centres, 200)


def _recall(found, exact):
    return sum(len(set(f) & set(e)) for f, e in zip(found, exact)) / sum(map(len, exact))


def test_ivf_search_meets_the_target_and_nprobe_changes_it(ivf_store):
    s, _, queries = ivf_store
    # About sqrt(n) lists (round(sqrt(4000)) = 63), at most n / 64: 62.
    st = s.stats()
    assert st["ivf_lists"] == min(round(IVF_N ** 0.5), IVF_N // 64) == 62
    # One stage (4-byte codes, 4,000 vectors): the lists hold whole PQ8x4 codes.
    assert (st["ivf_stages"], st["ivf_list_code_bytes"]) == (1, 4), st
    exact, _ = s.search_batch(queries, 10, exact=True)

    def recall(**kw):
        found, _ = s.search_batch(queries, 10, **kw)
        return _recall(found, exact)

    default = recall()
    assert default >= 0.9, default
    assert recall(target_recall=None) == default
    one = recall(nprobe=1)  # one list, no re-rank: far from exact
    assert one < default, (one, default)
    low, high = recall(target_recall=0.5), recall(target_recall=0.99)
    assert low < high and high >= 0.95, (low, high)
    assert recall(nprobe=IVF_N, rerank=1000) == 1.0  # every list, a deep re-rank
    # search and search_by_id pass the same parameters as search_batch.
    for kw in ({}, {"nprobe": 1}, {"target_recall": 0.5}):
        found, dists = s.search_batch(queries[:20], 10, **kw)
        for i in range(20):
            single, sd = s.search(queries[i], 10, **kw)
            # One list may hold fewer than k: the batch row ends in inf.
            assert single == found[i] and np.array_equal(sd, dists[i, : len(sd)]), kw


def test_ivf_search_by_id_takes_nprobe_and_target(ivf_store):
    s, data, _ = ivf_store
    picked = ["id-%d" % i for i in range(0, IVF_N, 40)]
    exact = [s.search_by_id(i, 10, exact=True)[0] for i in picked]

    def recall(**kw):
        found = []
        for i in picked:
            ids, dists = s.search_by_id(i, 10, **kw)
            q_ids, q_dists = s.search(s.get(i), 10, **kw)
            assert ids == q_ids and np.array_equal(dists, q_dists), (i, kw)
            found.append(ids)
        return _recall(found, exact)

    default = recall()
    assert default >= 0.9 and recall(nprobe=1) < default
    assert recall(target_recall=0.5) < recall(target_recall=0.99)


def test_explain_search_and_calibration(ivf_store, path):
    s, _, queries = ivf_store
    points = s.calibration()
    assert len(points) > 1
    assert all(a["recall"] < b["recall"] and a["cost"] <= b["cost"] for a, b in zip(points, points[1:])), points
    for target in (0.5, 0.9, 0.99):
        plan = s.explain_search(10, target_recall=target)
        point = next((p for p in points if p["recall"] >= target), points[-1])
        assert plan == {"method": "ivf", "nprobe": point["nprobe"], "rerank": 10 * point["rerank_per_k"],
                        "calibrated_recall": pytest.approx(point["recall"])}, (target, plan, point)
        # The plan's setting, given explicitly, is the search the target ran.
        found, dists = s.search_batch(queries[:30], 10, target_recall=target)
        again, again_d = s.search_batch(queries[:30], 10, nprobe=plan["nprobe"], rerank=plan["rerank"])
        assert found == again and np.array_equal(dists, again_d)
    assert s.explain_search(5, nprobe=2, rerank=3) == {"method": "ivf", "nprobe": 2, "rerank": 5, "calibrated_recall": None}
    assert s.explain_search(exact=True)["method"] == "exact"
    # A filter: half the store probes more lists; a few IDs are searched exactly.
    half = s.explain_search(10, target_recall=0.9, filter_ids=["id-%d" % i for i in range(0, IVF_N, 2)])
    assert half["method"] == "ivf" and half["nprobe"] > s.explain_search(10, target_recall=0.9)["nprobe"], half
    assert s.explain_search(10, filter=lambda i: i.endswith(b"0"))["nprobe"] > s.explain_search(10)["nprobe"]
    assert s.explain_search(10, filter_ids=["id-1", "id-2"])["method"] == "exact"
    with pytest.raises(ValueError):
        s.explain_search(-1)
    with pytest.raises(OmenError) as e:
        s.explain_search(10, target_recall=1.5)
    assert e.value.status == pyomendb.OMEN_ERR_INVALID_ARGUMENT
    flat = Store.open(str(path) + "-flat", dim=IVF_DIM, pq_m=8, create=True)
    flat.put(ids_of(500), _clustered(np.random.default_rng(3), queries[:8], 500))
    assert flat.explain_search(10, rerank=20)["method"] == "exact" and flat.calibration() == []
    flat.train_pq()
    assert flat.explain_search(10, rerank=20) == {"method": "pq_scan", "nprobe": 0, "rerank": 20, "calibrated_recall": None}
    assert flat.calibration() == []
    flat.close()


def test_ivf_survives_reopen(ivf_store, path):
    s, _, queries = ivf_store
    before = s.search_batch(queries, 10)
    s.close()
    with Store.open(path) as again:
        assert again.stats()["ivf_lists"] == min(round(IVF_N ** 0.5), IVF_N // 64)
        after = again.search_batch(queries, 10)
    assert after[0] == before[0] and np.array_equal(after[1], before[1])


def test_calibrate_on_host_queries(ivf_store, path, monkeypatch):
    # Queries halfway between two stored vectors (mostly of different
    # clusters): unlike anything stored, so what they measure is not what
    # training measured on stored vectors.
    s, data, _ = ivf_store
    trained = s.calibration()
    st = s.stats()
    assert trained and st["calibration_queries"] == 0
    pairs = np.arange(0, 2 * 64, 2)
    queries = (data[pairs] + data[pairs + 1]) / 2
    assert queries.dtype == np.float32 and queries.flags.c_contiguous
    spy = SpyLib(pyomendb.load_library(), ["omen_calibrate"])
    monkeypatch.setattr(pyomendb, "_lib", spy)
    points = s.calibrate(queries)
    monkeypatch.undo()
    # Handed over in place, all 64 rows; no progress asked: a NULL callback.
    ((_, nq, address, progress, user),) = spy.calls["omen_calibrate"]
    assert nq == 64 and address == queries.ctypes.data
    assert not progress and user is None
    after = s.stats()
    assert after["calibration_queries"] == 64, after
    assert after["checkpoint_seq"] > st["checkpoint_seq"]  # committed by the call
    assert points and points != trained and s.calibration() == points, (trained, points)
    assert all(a["recall"] < b["recall"] for a, b in zip(points, points[1:])), points
    # Targets now choose from the new points.
    point = next((p for p in points if p["recall"] >= 0.9), points[-1])
    plan = s.explain_search(10, target_recall=0.9)
    assert (plan["nprobe"], plan["calibrated_recall"]) == (point["nprobe"], pytest.approx(point["recall"])), plan
    # Anything search_batch takes: a float64 list of rows is converted.
    assert s.calibrate(queries.astype(np.float64).tolist()) == points

    # Refused, and the calibration in use stays.
    nan = queries.copy()
    nan[3, 2] = np.nan
    for bad, status in ((queries.reshape(-1), pyomendb.OMEN_ERR_DIMENSION),
                        (queries[:, :8], pyomendb.OMEN_ERR_DIMENSION),
                        (nan, pyomendb.OMEN_ERR_INVALID_ARGUMENT),
                        (np.empty((0, IVF_DIM), dtype=np.float32), pyomendb.OMEN_ERR_INVALID_ARGUMENT),
                        ([], pyomendb.OMEN_ERR_DIMENSION)):
        with pytest.raises(OmenError) as e:
            s.calibrate(bad)
        assert e.value.status == status, (np.shape(bad), e.value)
    assert s.calibration() == points and s.stats()["calibration_queries"] == 64

    # Durable without a close that commits: reopened, read-only, it is there.
    s.close(discard=True)
    with Store.open(path, read_only=True) as r:
        assert r.calibration() == points and r.stats()["calibration_queries"] == 64
        with pytest.raises(OmenError) as e:
            r.calibrate(queries)
        assert e.value.status == pyomendb.OMEN_ERR_READ_ONLY
    with Store.open(path) as again:
        assert again.calibration() == points and again.stats()["calibration_queries"] == 64
        # Training measures on the stored vectors again.
        again.train_pq()
        assert again.stats()["calibration_queries"] == 0 and again.calibration() != points

    # Stores without an IVF index to calibrate (no PQ, PQ without IVF, IVF
    # untrained) or without the raw vectors that find the exact neighbours.
    for name, kw, train in (("flat", {}, False), ("pq", {"pq_m": 8}, True),
                            ("untrained", {"pq_m": 8, "ivf_lists": 0}, False),
                            ("drop-raw", {"pq_m": 8, "pq_bits": 4, "ivf_lists": 0, "drop_raw": True}, True)):
        with Store.open(path + "-" + name, dim=IVF_DIM, create=True, **kw) as other:
            other.put(ids_of(500), data[:500])
            if train:
                other.train_pq()
            kept = other.calibration()
            with pytest.raises(OmenError) as e:
                other.calibrate(queries)
            assert e.value.status == pyomendb.OMEN_ERR_INVALID_ARGUMENT, name
            assert other.calibration() == kept and other.stats()["calibration_queries"] == 0, name


def test_calibrate_progress(ivf_store, monkeypatch):
    s, data, _ = ivf_store
    pairs = np.arange(0, 2 * 50, 2)
    queries = (data[pairs] + data[pairs + 1]) / 2
    # A callable gets (done, total): total 3 x nq throughout, done never
    # decreasing, the last report done == total. It may read the store; a
    # write from there is refused (and re-raised once calibrate returns).
    calls, reads = [], []

    def record(done, total):
        calls.append((done, total))
        reads.append(s.stats()["live_vectors"])

    points = s.calibrate(queries, progress=record)
    assert calls, "progress callback never called"
    assert {t for _, t in calls} == {3 * 50}, calls
    dones = [d for d, _ in calls]
    assert dones == sorted(dones), "done decreased: %s" % calls
    assert calls[-1] == (150, 150), calls
    assert reads == [IVF_N] * len(calls)
    assert s.stats()["calibration_queries"] == 50 and s.calibration() == points

    def write(done, total):
        s.put(["id-new"], data[:1])

    with pytest.raises(OmenError) as e:
        s.calibrate(queries[:20], progress=write)
    assert e.value.status == pyomendb.OMEN_ERR_INVALID_ARGUMENT and e.value.func == "omen_put_batch", e.value
    assert "id-new" not in s and s.stats()["calibration_queries"] == 20

    # An exception raised by the callable: the later reports are dropped,
    # the calibration runs to its end and is committed (the callback cannot
    # stop it, as for train_pq), and the exception is re-raised after it.
    class Stop(Exception):
        pass

    seen = []

    def stop(done, total):
        seen.append(done)
        raise Stop()

    with pytest.raises(Stop):
        s.calibrate(queries[:30], progress=stop)
    assert len(seen) == 1, seen
    assert s.stats()["calibration_queries"] == 30

    # True: a bar (tqdm's: a test dependency), labelled calibrate; None or
    # False: nothing; anything else is refused before the call.
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    s.calibrate(queries[:40])
    s.calibrate(queries[:40], progress=False)
    assert buf.getvalue() == ""
    s.calibrate(queries[:40], progress=True)
    assert "calibrate: 100%|" in buf.getvalue() and "120/120" in buf.getvalue(), buf.getvalue()
    monkeypatch.undo()
    with pytest.raises(TypeError):
        s.calibrate(queries, progress="yes")
    assert s.stats()["calibration_queries"] == 40


def test_damaged_index_is_reported_and_rebuilt(ivf_store, path):
    # A bit of the codebooks file flipped: the store opens without its
    # index (every vector there, searches exact), says so, and rebuilds it.
    s, data, queries = ivf_store
    assert s.index_damage() is None and s.stats()["index_status"] == 0
    s.close()
    (codebooks,) = [f for f in os.listdir(path) if f.startswith("codebooks.")]
    with open(os.path.join(path, codebooks), "r+b") as f:
        f.seek(4096 + 40)
        byte = f.read(1)
        f.seek(4096 + 40)
        f.write(bytes([byte[0] ^ 0x10]))
    with Store.open(path) as damaged:
        message = damaged.index_damage()
        assert message is not None and codebooks in message, message
        st = damaged.stats()
        assert st["index_status"] == pyomendb.OMEN_ERR_CORRUPT and not st["pq_trained"], st
        assert not [k for k in st if k.startswith("reserved")] and st["calibration_queries"] == 0, st
        assert np.array_equal(damaged.get("id-7"), data[7])
        exact, _ = damaged.search_batch(queries[:20], 10, exact=True)
        assert damaged.search_batch(queries[:20], 10, nprobe=1)[0] == exact
        with pytest.raises(OmenError) as e:
            damaged.compact()
        assert e.value.status == pyomendb.OMEN_ERR_CORRUPT
        calls = []
        damaged.rebuild_index(progress=lambda done, total: calls.append((done, total)))
        assert calls and calls[-1][0] == calls[-1][1]
        assert damaged.index_damage() is None and damaged.stats()["ivf_lists"] > 0
    assert not os.path.exists(os.path.join(path, codebooks))


def test_ivf_lists_asked_for(path, rng):
    centres = rng.uniform(-1, 1, (40, IVF_DIM)).astype(np.float32)
    with Store.open(path, dim=IVF_DIM, pq_m=8, pq_bits=4, ivf_lists=20, create=True) as s:
        s.put(ids_of(IVF_N), _clustered(rng, centres, IVF_N))
        s.train_pq()
        assert s.stats()["ivf_lists"] == 20
    # Without ivf_lists no index is built.
    with Store.open(path + "-flat", dim=IVF_DIM, pq_m=8, pq_bits=4, create=True) as s:
        s.put(ids_of(IVF_N), _clustered(rng, centres, IVF_N))
        s.train_pq()
        assert s.stats()["ivf_lists"] == 0


def test_ivf_refusals(path, ivf_store):
    s, _, queries = ivf_store
    for bad in (1.5, -0.5, float("nan"), float("inf")):
        with pytest.raises(OmenError) as e:
            s.search(queries[0], 10, target_recall=bad)
        assert e.value.status == pyomendb.OMEN_ERR_INVALID_ARGUMENT
        assert "target_recall must be in (0, 1]" in e.value.message
        with pytest.raises(OmenError):
            s.search_batch(queries, 10, target_recall=bad)
        with pytest.raises(OmenError):
            s.search_by_id("id-0", 10, target_recall=bad)
    # ctypes would wrap these to 4294967295 or drop the high bits.
    for bad_n in (-1, 2**32):
        with pytest.raises(ValueError, match="nprobe must be in 0..4294967295"):
            s.search(queries[0], 10, nprobe=bad_n)
        with pytest.raises(ValueError, match="ivf_lists must be in 0..4294967295"):
            Store.open(path + "-x", dim=IVF_DIM, pq_m=8, ivf_lists=bad_n, create=True)
    # An IVF index needs PQ.
    with pytest.raises(OmenError) as e:
        Store.open(path + "-no-pq", dim=IVF_DIM, ivf_lists=0, create=True)
    assert e.value.status == pyomendb.OMEN_ERR_INVALID_ARGUMENT and "needs PQ" in e.value.message
    for p in (path + "-x", path + "-no-pq"):
        assert not os.path.exists(p)


# ----------------------------------------------- C ABI contract (API.md) probes


def _raw(store):
    return pyomendb.load_library(), c_void_p(store.handle)


def test_contract_null_pointers(store):
    lib, h = _raw(store)
    INV = pyomendb.OMEN_ERR_INVALID_ARGUMENT
    offs = np.array([0, 1], dtype=np.uint64)
    v = np.ones(DIM, dtype=np.float32)
    out = np.zeros(DIM, dtype=np.float32)
    hits = np.zeros(4, dtype=pyomendb.HIT_DTYPE)
    cnt = c_size_t(99)
    o = pyomendb.omen_options()
    lib.omen_options_default(byref(o))
    cases = {
        "open(NULL path)": lambda: lib.omen_open(None, byref(o), byref(c_void_p())),
        "open(NULL out)": lambda: lib.omen_open(store.path.encode(), byref(o), None),
        "put(NULL store)": lambda: lib.omen_put_batch(None, 1, b"a", offs.ctypes.data, v.ctypes.data),
        "put(NULL ids)": lambda: lib.omen_put_batch(h, 1, None, offs.ctypes.data, v.ctypes.data),
        "put(NULL offsets)": lambda: lib.omen_put_batch(h, 1, b"a", None, v.ctypes.data),
        "put(NULL vectors)": lambda: lib.omen_put_batch(h, 1, b"a", offs.ctypes.data, None),
        "get(NULL id)": lambda: lib.omen_get(h, None, 1, out.ctypes.data, DIM),
        "get(NULL out)": lambda: lib.omen_get(h, b"a", 1, None, DIM),
        "contains(NULL store)": lambda: lib.omen_contains(None, b"a", 1, out.ctypes.data),
        "contains(NULL id)": lambda: lib.omen_contains(h, None, 1, out.ctypes.data),
        "contains(NULL out)": lambda: lib.omen_contains(h, b"a", 1, None),
        "search(NULL query)": lambda: lib.omen_search(h, None, 4, None, hits.ctypes.data, byref(cnt)),
        "search(NULL hits)": lambda: lib.omen_search(h, v.ctypes.data, 4, None, None, byref(cnt)),
        "search(NULL count)": lambda: lib.omen_search(h, v.ctypes.data, 4, None, hits.ctypes.data, None),
        "stats(NULL out)": lambda: lib.omen_store_stats(h, None),
        "key_id(NULL out)": lambda: lib.omen_key_id(h, 0, None, None),
        "checkpoint(NULL store)": lambda: lib.omen_checkpoint(None, None),
    }
    bad = {name: pyomendb.status_name(f()) for name, f in cases.items()}
    bad = {k: s for k, s in bad.items() if s != "OMEN_ERR_INVALID_ARGUMENT"}
    assert not bad, "NULL pointer not refused with INVALID_ARGUMENT: %r" % bad
    assert lib.omen_last_error()  # a message for the last failure
    assert INV == 1


def test_contract_nullable_and_empty(store):
    lib, h = _raw(store)
    assert lib.omen_close(None) == 0  # NULL is a no-op
    assert lib.omen_close_discard(None) == 0
    assert lib.omen_put_batch(h, 0, None, None, None) == 0
    assert lib.omen_delete_batch(h, 0, None, None, None) == 0
    assert lib.omen_get_batch(h, 0, None, None, None, None) == 0
    assert lib.omen_checkpoint(h, None) == 0
    store.put(["a", "b"], np.ones((2, DIM), dtype=np.float32))
    offs = np.array([0, 1, 2], dtype=np.uint64)
    out = np.zeros((2, DIM), dtype=np.float32)
    assert lib.omen_get_batch(h, 2, b"ax", offs.ctypes.data, out.ctypes.data, None) == 0
    assert out[0, 0] == 1.0 and out[1, 0] == 0.0
    assert lib.omen_delete_batch(h, 1, b"a", offs.ctypes.data, None) == 0
    # search with NULL params = defaults; k = 0 finds nothing
    q = np.ones(DIM, dtype=np.float32)
    hits = np.zeros(2, dtype=pyomendb.HIT_DTYPE)
    cnt = c_size_t(99)
    assert lib.omen_search(h, q.ctypes.data, 2, None, hits.ctypes.data, byref(cnt)) == 0
    assert cnt.value == 1 and hits[0]["reserved"] == 0
    assert lib.omen_search(h, q.ctypes.data, 0, None, hits.ctypes.data, byref(cnt)) == 0
    assert cnt.value == 0
    # a successful call after a failure: omen_last_error never NULL
    assert lib.omen_last_error() is not None


def test_contract_get_buffer_too_small(store):
    lib, h = _raw(store)
    store.put(["a"], np.ones((1, DIM), dtype=np.float32))
    out = np.zeros(DIM, dtype=np.float32)
    assert lib.omen_get(h, b"a", 1, out.ctypes.data, DIM - 1) == pyomendb.OMEN_ERR_BUFFER_TOO_SMALL
    assert lib.omen_get(h, b"a", 1, out.ctypes.data, DIM) == 0


def test_contract_key_after_compact_and_bad_key(store):
    store.put(ids_of(5), np.eye(5, DIM, dtype=np.float32))
    with pytest.raises(OmenError) as e:
        store.key_id(2 ** 63)
    assert e.value.status in (pyomendb.OMEN_ERR_NOT_FOUND, pyomendb.OMEN_ERR_INVALID_ARGUMENT)
    ids, _ = store.search(np.eye(5, DIM, dtype=np.float32)[3], 1)
    assert ids == [b"id-3"]


def test_contract_readers_share_with_writer(path):
    with Store.open(path, dim=DIM, create=True) as w:
        w.put(["a"], np.ones((1, DIM), dtype=np.float32))
        w.checkpoint()
        with Store.open(path, read_only=True) as r1, Store.open(path, read_only=True) as r2:
            assert "a" in r1 and "a" in r2


def test_contract_concurrent_readers(store, rng):
    import threading

    data = rng.standard_normal((2000, DIM), dtype=np.float32)
    store.put(ids_of(2000), data)
    errors = []

    def reader(seed):
        try:
            r = np.random.default_rng(seed)
            for _ in range(200):
                i = int(r.integers(0, 1000))
                assert np.array_equal(store.get("id-%d" % i), data[i])
                ids, _ = store.search(data[i], 1)
                assert ids == [("id-%d" % i).encode()]
                try:
                    store.get("missing-%d" % seed)
                except OmenError as e:
                    assert e.status == pyomendb.OMEN_ERR_NOT_FOUND
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    def writer():
        try:
            for b in range(20):
                store.put(["w%d-%d" % (b, i) for i in range(50)], data[1000:1050])
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(store) == 2000 + 20 * 50


def test_contract_bit_flip_is_corrupt(path):
    # A bit flipped in a stored vector is OMEN_ERR_CORRUPT, never data.
    v = np.full((3, 8), 1234.5678, dtype=np.float32)
    v[1], v[2] = 2.0, 3.0
    with Store.open(path, dim=8, create=True) as s:
        s.put(["a", "b", "c"], v)
    pattern = v[0].tobytes()
    flipped = False
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                data = bytearray(fh.read())
            i = data.find(pattern)
            if i >= 0:
                data[i + 5] ^= 0x10
                with open(p, "wb") as fh:
                    fh.write(data)
                flipped = True
    # Raw vectors are stored as little-endian f32 (docs/format.md): not finding
    # them means the layout changed and this test must be rewritten, not skipped.
    assert flipped, "raw vector bytes not found in the store files"
    with Store.open(path) as s:
        assert np.array_equal(s.get("b"), v[1])  # undamaged vectors still read
        for call in (lambda: s.get("a"), lambda: s.get_batch(["b", "a"])):
            with pytest.raises(OmenError) as e:
                call()
            assert e.value.status == pyomendb.OMEN_ERR_CORRUPT
    with pytest.raises(OmenError) as e:
        Store.recover(path)
    assert e.value.status == pyomendb.OMEN_ERR_CORRUPT


def _child_uses_inherited_store(store, conn):
    """In a forked worker: every call on the parent's handle is refused,
    then leaving `with` (close) only frees memory."""
    refused = []
    for call in (lambda: store.get("id-1"), lambda: store.checkpoint(),
                 lambda: store.put(["c-1"], np.zeros((1, DIM), np.float32))):
        try:
            call()
            refused.append("not refused")
        except OmenError as e:
            refused.append(e.status == pyomendb.OMEN_ERR_INVALID_ARGUMENT and "forked" in str(e))
    with store:
        pass
    conn.send(refused)
    conn.close()


def test_forked_worker_closing_an_inherited_store_leaves_the_parent_intact(path, rng):
    import multiprocessing

    vectors = rng.random((6000, DIM), dtype=np.float32)
    store = Store.open(path, dim=DIM, create=True)
    store.put(ids_of(3000), vectors[:3000])
    store.checkpoint()
    store.put(ids_of(6000)[3000:4000], vectors[3000:4000])  # not checkpointed yet
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    worker = ctx.Process(target=_child_uses_inherited_store, args=(store, child_end))
    worker.start()
    refused = parent_end.recv()
    worker.join(60)
    assert worker.exitcode == 0
    assert refused == [True, True, True]
    # The parent goes on past what the child had published (this died of
    # SIGBUS when the child's close truncated the files).
    store.put(ids_of(6000)[4000:], vectors[4000:])
    store.checkpoint()
    store.close()
    with Store.open(path) as s:
        assert len(s) == 6000
        np.testing.assert_array_equal(s.get("id-5999"), vectors[5999])
        np.testing.assert_array_equal(s.get("id-3500"), vectors[3500])


def test_errors_pickle_with_their_fields(path):
    import pickle

    with pytest.raises(OmenError) as caught:
        Store.open(path)  # no store there, no create
    e = caught.value
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is OmenError
    assert (back.status, back.name, back.message, back.func) == (e.status, e.name, e.message, e.func)
    assert str(back) == str(e)


def test_misaligned_arrays_are_copied_not_refused(store, rng):
    vectors = rng.random((3, DIM), dtype=np.float32)
    raw = bytearray(vectors.nbytes + 1)
    misaligned = np.frombuffer(raw, dtype=np.float32, count=3 * DIM, offset=1).reshape(3, DIM)
    misaligned[...] = vectors
    assert not misaligned.flags.aligned
    store.put(ids_of(3), misaligned)
    np.testing.assert_array_equal(store.get("id-2"), vectors[2])
    query = np.frombuffer(raw, dtype=np.float32, count=DIM, offset=1)
    assert not query.flags.aligned
    ids, _ = store.search(query, 1)
    assert ids[0] == b"id-0"


# ------------------------------------------------------------ typed, numpy-native


def test_put_takes_any_id_sequence_and_float_array(store, rng):
    v = rng.standard_normal((4, DIM))  # float64: converted once
    store.put(("t-0", b"t-1", bytearray(b"t-2"), memoryview(b"t-3")), v)
    store.put((("g-%d" % i) for i in range(4)), v.tolist())  # a generator, nested lists
    store.put(np.array(["n-0", "n-1", "n-2", "n-3"]), v.astype(np.float16))  # numpy str array
    store.put("one", v[0])  # one ID, one 1-D vector
    assert len(store) == 13
    for name in ("t-2", "t-3", "g-3"):
        np.testing.assert_array_equal(store.get(name), v[int(name[-1])].astype(np.float32))
    np.testing.assert_array_equal(store.get("one"), v[0].astype(np.float32))
    np.testing.assert_array_equal(store.get("n-2"), v[2].astype(np.float16).astype(np.float32))


def test_search_takes_any_float_query(store, rng):
    data = rng.standard_normal((10, DIM), dtype=np.float32)
    store.put(ids_of(10), data)
    for q in (data[4].astype(np.float64), data[4].tolist(), data[4:5]):
        ids, d = store.search(q, 2)
        assert ids[0] == b"id-4" and d.dtype == np.float32 and d.shape == (2,)


def test_unclosed_store_is_freed_without_checkpoint_and_warns(path):
    import gc

    s = Store.open(path, dim=DIM, create=True)
    s.put(["kept"], np.ones((1, DIM), dtype=np.float32))
    s.checkpoint()
    s.put(["after-checkpoint"], np.ones((1, DIM), dtype=np.float32))
    with pytest.warns(ResourceWarning, match="never closed"):
        del s
        gc.collect()
    # No checkpoint was written by the garbage collector, and the writer lock
    # is gone: a writer opens at once and finds the last checkpoint.
    with Store.open(path) as s:
        assert "kept" in s and "after-checkpoint" not in s


def test_closed_store_does_not_warn(path, recwarn):
    import gc

    s = Store.open(path, dim=DIM, create=True)
    s.close()
    del s
    gc.collect()
    assert not [w for w in recwarn if issubclass(w.category, ResourceWarning)]


# ------------------------------------------------- listing, search by ID


def test_iteration_lists_every_live_id_once(store, rng):
    data = rng.standard_normal((2500, DIM), dtype=np.float32)
    store.put(ids_of(2500), data)
    store.delete(ids_of(100)[::3])
    store.put(ids_of(10), data[:10] + 1)  # upserts: new slots, same IDs
    want = {i.encode() for i in ids_of(2500)} - {i.encode() for i in ids_of(100)[::3]}
    want |= {i.encode() for i in ids_of(10)}
    got = list(store)
    assert len(got) == len(set(got)) == len(store) == len(want)
    assert set(got) == want and all(type(i) is bytes for i in got)
    assert sorted(store.ids(page_size=7, decode=True)) == sorted(i.decode() for i in want)
    items = dict(store.items(page_size=300))
    assert set(items) == want
    np.testing.assert_array_equal(items[b"id-5"], data[5] + 1)
    np.testing.assert_array_equal(items[b"id-2000"], data[2000])
    assert all(v.dtype == np.float32 and v.shape == (DIM,) for v in items.values())


def test_iteration_of_an_empty_store(store):
    assert list(store) == [] and list(store.items()) == []


def test_iteration_reads_a_page_per_call(store, spy, rng):
    store.put(ids_of(250), rng.standard_normal((250, DIM), dtype=np.float32))
    assert len(list(store.ids(page_size=100))) == 250
    # 100 + 100 + 50, then the empty page that ends it.
    assert len(spy.calls["omen_cursor_next"]) == 4


def test_iteration_sees_the_moment_it_started(store, rng):
    data = rng.standard_normal((300, DIM), dtype=np.float32)
    store.put(ids_of(200), data[:200])
    it = store.items(page_size=16)  # the snapshot is taken here
    first = next(it)
    store.put(ids_of(300)[200:], data[200:])  # not blocked by the open cursor
    store.delete(ids_of(50))
    store.compact()
    rest = dict(it)
    rest[first[0]] = first[1]
    assert set(rest) == {i.encode() for i in ids_of(200)}
    np.testing.assert_array_equal(rest[b"id-10"], data[10])  # deleted since, still listed
    assert len(list(store)) == 250  # a new iteration sees the writes


def test_cursor_pages(store, rng):
    data = rng.standard_normal((230, DIM), dtype=np.float32)
    store.put(ids_of(230), data)
    with store.cursor(page_size=100, decode=True) as c:
        pages = list(c)
    assert [len(ids) for ids, _ in pages] == [100, 100, 30]
    assert all(v is not None and v.shape == (len(ids), DIM) for ids, v in pages)
    ids, vectors = pages[2]
    np.testing.assert_array_equal(vectors[0], data[int(ids[0].split("-")[1])])
    with store.cursor(vectors=False) as c:
        ids, vectors = next(c)
        assert vectors is None and len(ids) == 230
        c.close()
        assert list(c) == []  # closed: the iteration is over
    with pytest.raises(ValueError):
        store.cursor(page_size=0)


def test_cursor_lists_the_longest_ids(store, rng):
    ids = [("%04d" % i).encode() * 256 for i in range(9)]  # 1024 bytes each
    store.put(ids, rng.standard_normal((9, DIM), dtype=np.float32))
    assert sorted(store.ids(page_size=4)) == sorted(ids)


def test_cursor_after_its_store_closed(path):
    s = Store.open(path, dim=DIM, create=True)
    s.put(ids_of(3), np.ones((3, DIM), dtype=np.float32))
    c = s.cursor()
    s.close()
    with pytest.raises(OmenError) as e:
        next(c)
    assert e.value.status == pyomendb.OMEN_ERR_INVALID_ARGUMENT
    c.close()


def test_items_of_a_store_without_raw_vectors(path, rng):
    with Store.open(path, dim=16, pq_m=4, drop_raw=True, create=True) as s:
        s.put(ids_of(1000), rng.standard_normal((1000, 16), dtype=np.float32))
        s.train_pq()
        assert len(list(s)) == 1000  # IDs still list
        with pytest.raises(OmenError) as e:
            next(s.items())
        assert e.value.status == pyomendb.OMEN_ERR_INVALID_ARGUMENT


def test_search_by_id(filled):
    s, data, ids = filled
    got, d = s.search_by_id("id-42", 5)
    want, want_d = s.search(s.get("id-42"), 5)
    assert got == want and np.array_equal(d, want_d) and got[0] == b"id-42"
    others, _ = s.search_by_id(b"id-42", 4, exclude_self=True, decode=True)
    assert others == [i.decode() for i in want[1:]]
    listed = ["id-%d" % i for i in range(0, 400, 2)]
    got, _ = s.search_by_id("id-42", 3, filter_ids=listed, exact=True)
    assert got == brute_allowed(data, ids, data[42], 3, {i.encode() for i in listed})
    with pytest.raises(OmenError) as e:
        s.search_by_id("absent", 3)
    assert e.value.status == pyomendb.OMEN_ERR_NOT_FOUND


def test_range_search(filled, rng):
    s, data, ids = filled
    q = rng.standard_normal(DIM, dtype=np.float32)
    d_all = ((data.astype(np.float64) - q) ** 2).sum(axis=1)
    radius = float(np.sort(d_all)[40])  # 41 vectors within it (ties aside)
    inside = np.flatnonzero(d_all <= radius * (1 - 1e-5))
    got, d, total = s.range_search(q, radius)
    assert total == len(got) == len(d) and len(got) >= len(inside)
    assert set(got) >= {ids[i].encode() for i in inside}
    assert np.all(np.diff(d) >= 0) and np.all(d <= radius)
    # The cap keeps the closest; the total still counts every one.
    capped, cd, ctotal = s.range_search(q, radius, max_results=5, decode=True)
    assert ctotal == total and capped == [i.decode() for i in got[:5]]
    np.testing.assert_array_equal(cd, d[:5])
    none, nd, ntotal = s.range_search(q, radius, max_results=0)  # counts only
    assert none == [] and nd.shape == (0,) and ntotal == total
    # Filters apply; inf takes every vector, NaN is refused.
    listed = [ids[i] for i in inside[:3]]
    assert sorted(s.range_search(q, radius, filter_ids=listed)[0]) == sorted(
        i.encode() for i in listed)
    assert s.range_search(q, np.inf, max_results=1)[2] == 400
    with pytest.raises(OmenError) as e:
        s.range_search(q, np.nan)
    assert e.value.status == pyomendb.OMEN_ERR_INVALID_ARGUMENT


def test_range_search_returns_every_hit_past_the_first_call(store, spy, rng):
    store.put(ids_of(1500), rng.standard_normal((1500, DIM), dtype=np.float32))
    got, d, total = store.range_search(np.zeros(DIM), np.inf)
    assert total == 1500 and len(got) == len(set(got)) == 1500 and d.shape == (1500,)
    assert len(spy.calls["omen_range_search_ids"]) == 2  # 1,024 hits first, then all


def test_threads_sharing_a_cursor_take_turns(store, monkeypatch, rng):
    import threading
    import time

    store.put(ids_of(400), rng.standard_normal((400, DIM), dtype=np.float32))
    real = pyomendb.load_library()
    inside, most = [0], [0]

    class Watch(SpyLib):
        def omen_cursor_next(self, *args):
            # The C cursor must not be used by two threads at once: count
            # the calls in flight (the sleep lets another thread in).
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            time.sleep(0.002)
            try:
                return real.omen_cursor_next(*args)
            finally:
                inside[0] -= 1

    monkeypatch.setattr(pyomendb, "_lib", Watch(real, []))
    seen, errors = [], []
    with store.cursor(page_size=10) as c:

        def pull():
            try:
                for ids, _ in c:
                    seen.extend(ids)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=pull) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    assert most[0] == 1
    assert sorted(seen) == sorted(i.encode() for i in ids_of(400))


def test_query_threads_share_a_query_and_find_the_same_hits(tmp_path, rng):
    # 10,000 x 128 float32 (5 MB): an exact scan that splits from 2 MiB a thread.
    data = rng.standard_normal((10_000, 128)).astype(np.float32)
    queries = rng.standard_normal((3, 128)).astype(np.float32)
    with Store.open(str(tmp_path / "qt"), dim=128, create=True) as s:
        s.put(ids_of(len(data)), data)
        alone = s.search_batch(queries, 10)
        for query_threads in (2, 3, 1024):
            split_ids, split_dists = s.search_batch(queries, 10, query_threads=query_threads)
            assert split_ids == alone[0] and np.array_equal(split_dists, alone[1]), query_threads
            for i, q in enumerate(queries):
                ids, dists = s.search(q, 10, query_threads=query_threads)
                assert ids == alone[0][i] and np.array_equal(dists, alone[1][i]), (query_threads, i)
            by_id, by_id_dists = s.search_by_id("id-7", 10, query_threads=query_threads)
            want, want_dists = s.search_by_id("id-7", 10)
            assert by_id == want and np.array_equal(by_id_dists, want_dists), query_threads
        with pytest.raises(OmenError) as e:
            s.search(queries[0], 10, query_threads=1025)
        assert e.value.status == pyomendb.OMEN_ERR_INVALID_ARGUMENT
        with pytest.raises(ValueError):
            s.search_batch(queries, 10, query_threads=-1)
