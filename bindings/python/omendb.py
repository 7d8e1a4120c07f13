"""OmenDB for Python: a pure-ctypes binding of the C ABI (include/omendb.h).

No compiled extension: the module loads ``libomendb.so`` with ctypes.

Library location, first match wins:
  1. ``$OMENDB_LIB``: the path of ``libomendb.so`` itself;
  2. ``$OMENDB_LIB_DIR/libomendb.so``;
  3. ``<repo>/target/release/libomendb.so`` (this file is ``<repo>/bindings/python/omendb.py``).

IDs are byte strings of 1 to 1024 bytes. ``str`` IDs are encoded as UTF-8
(with ``surrogateescape``, so every byte string round-trips through ``str``).
Results carry IDs as ``bytes`` unless ``decode=True`` is given.

Buffers are passed in place: ``put`` hands the library the array's own data
pointer when it is already float32, C-contiguous and 2-D, and converts
(one copy) only otherwise. ID batches are packed once per call into one
``bytes`` buffer plus a numpy uint64 offsets array, Arrow-style.

Per-call overhead through ctypes is a few hundred nanoseconds: prefer the
batch calls (``put``, ``get_batch``, ``delete``, ``search_batch``).
"""

import ctypes
import os
import sys
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    byref,
    c_char_p,
    c_float,
    c_int32,
    c_size_t,
    c_uint32,
    c_uint64,
    c_uint8,
    c_void_p,
)

import numpy as np

__all__ = [
    "Store",
    "OmenError",
    "version",
    "status_name",
    "load_library",
    "OMEN_OK",
    "OMEN_ERR_INVALID_ARGUMENT",
    "OMEN_ERR_DIMENSION",
    "OMEN_ERR_NOT_FOUND",
    "OMEN_ERR_IO",
    "OMEN_ERR_CORRUPT",
    "OMEN_ERR_LOCKED",
    "OMEN_ERR_VERSION",
    "OMEN_ERR_READ_ONLY",
    "OMEN_ERR_NOT_TRAINED",
    "OMEN_ERR_BUFFER_TOO_SMALL",
    "OMEN_ERR_INTERNAL",
]

# ---------------------------------------------------------------- constants

OMEN_OK = 0
OMEN_ERR_INVALID_ARGUMENT = 1
OMEN_ERR_DIMENSION = 2
OMEN_ERR_NOT_FOUND = 3
OMEN_ERR_IO = 4
OMEN_ERR_CORRUPT = 5
OMEN_ERR_LOCKED = 6
OMEN_ERR_VERSION = 7
OMEN_ERR_READ_ONLY = 8
OMEN_ERR_NOT_TRAINED = 9
OMEN_ERR_BUFFER_TOO_SMALL = 10
OMEN_ERR_INTERNAL = 11

OMEN_OPEN_CREATE = 0x1
OMEN_OPEN_READ_ONLY = 0x2
OMEN_OPEN_SYNC_WRITES = 0x4
OMEN_OPEN_DROP_RAW = 0x8

OMEN_METRIC_L2 = 0
OMEN_METRIC_IP = 1
OMEN_METRIC_COSINE = 2

_METRICS = {"l2": OMEN_METRIC_L2, "ip": OMEN_METRIC_IP, "cosine": OMEN_METRIC_COSINE}
_METRIC_NAMES = {v: k for k, v in _METRICS.items()}

MAX_ID_LEN = 1024

# ------------------------------------------------------------------ structs


class omen_options(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("dim", c_uint32),
        ("metric", c_uint32),
        ("pq_m", c_uint32),
        ("pq_bits", c_uint32),
        ("pq_train_size", c_uint32),
        ("threads", c_uint32),
    ]


class omen_stats(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("dim", c_uint32),
        ("metric", c_uint32),
        ("pq_m", c_uint32),
        ("pq_trained", c_uint32),
        ("raw_kept", c_uint32),
        ("live_vectors", c_uint64),
        ("dead_slots", c_uint64),
        ("checkpoint_seq", c_uint64),
        ("disk_bytes", c_uint64),
        ("payload_bytes", c_uint64),
        ("heap_bytes", c_uint64),
        ("pq_bits", c_uint32),
        ("pq_train_size", c_uint32),
        ("drop_raw", c_uint32),
        ("reserved", c_uint32),
        ("pq_auto_train_status", c_uint32),
        ("reserved2", c_uint32),
    ]


class omen_recovery(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("reserved", c_uint32),
        ("checkpoint_seq", c_uint64),
        ("live_vectors", c_uint64),
        ("discarded_bytes", c_uint64),
        ("verified_bytes", c_uint64),
    ]


# omen_filter_fn: int32_t (*)(void *user, const uint8_t *id, size_t id_len)
FILTER_FN = CFUNCTYPE(c_int32, c_void_p, c_void_p, c_size_t)


class omen_search_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("rerank", c_uint32),
        ("exact", c_uint32),
        ("threads", c_uint32),
        ("filter_n", c_uint64),
        ("filter_ids", c_void_p),
        ("filter_id_offsets", c_void_p),
        ("filter_fn", FILTER_FN),
        ("filter_user", c_void_p),
    ]


class omen_hit(Structure):
    _fields_ = [
        ("key", c_uint64),
        ("distance", c_float),
        ("reserved", c_uint32),
    ]


# omen_hit as a numpy record, so hit buffers are plain numpy arrays.
HIT_DTYPE = np.dtype([("key", "<u8"), ("distance", "<f4"), ("reserved", "<u4")])
assert HIT_DTYPE.itemsize == ctypes.sizeof(omen_hit) == 16
assert ctypes.sizeof(omen_options) == 32
assert ctypes.sizeof(omen_stats) == 96
assert ctypes.sizeof(omen_recovery) == 40
assert ctypes.sizeof(omen_search_params) == 56

PROGRESS_FN = CFUNCTYPE(None, c_void_p, c_uint64, c_uint64)

# Bytes reserved per hit for its ID on the first try; a longer total is
# retried once with the size the library reports.
_ID_BYTES_GUESS = 32


def _with_id_buffer(slots, call, name):
    """Runs ``call(buf, cap, offsets, byref(needed))`` (an omen_search*_ids
    call) with an ID buffer, again with the needed size on
    OMEN_ERR_BUFFER_TOO_SMALL; returns (ID bytes, offsets ndarray)."""
    offs = np.empty(slots + 1, dtype=np.uint64)
    need = c_size_t(0)
    cap = slots * _ID_BYTES_GUESS
    while True:
        buf = ctypes.create_string_buffer(cap) if cap else None
        st = call(buf, cap, offs, byref(need))
        if st == OMEN_ERR_BUFFER_TOO_SMALL and need.value > cap:
            cap = need.value  # the store changed or the IDs are long: retry
            continue
        _check(st, name)
        return (buf.raw[: need.value] if buf is not None else b""), offs


def _split_ids(raw, offs, first, n, decode):
    """IDs ``first .. first + n`` of an Arrow-style (bytes, offsets) pair."""
    o = offs[first : first + n + 1].tolist()
    if decode:
        return [_decode(raw[o[i] : o[i + 1]]) for i in range(n)]
    return [raw[o[i] : o[i + 1]] for i in range(n)]


# ------------------------------------------------------------------ loading

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(os.path.dirname(_HERE))


def _default_library_path():
    p = os.environ.get("OMENDB_LIB")
    if p:
        return p
    d = os.environ.get("OMENDB_LIB_DIR")
    if d:
        return os.path.join(d, "libomendb.so")
    return os.path.join(_REPO, "target", "release", "libomendb.so")


_status = c_int32  # omen_status is an int32_t-sized C enum

# name -> (restype, argtypes)
_SIGNATURES = {
    "omen_options_default": (None, [POINTER(omen_options)]),
    "omen_open": (_status, [c_char_p, POINTER(omen_options), POINTER(c_void_p)]),
    "omen_recover": (
        _status,
        [c_char_p, POINTER(omen_options), POINTER(c_void_p), POINTER(omen_recovery)],
    ),
    # Buffers are declared c_void_p: the wrapper passes raw addresses
    # (ndarray.ctypes.data, bytes) so no ctypes pointer object is built per call.
    "omen_put_batch": (_status, [c_void_p, c_size_t, c_char_p, c_void_p, c_void_p]),
    "omen_delete_batch": (
        _status,
        [c_void_p, c_size_t, c_char_p, c_void_p, POINTER(c_uint64)],
    ),
    "omen_get": (_status, [c_void_p, c_char_p, c_size_t, c_void_p, c_size_t]),
    "omen_contains": (_status, [c_void_p, c_char_p, c_size_t, c_void_p]),
    "omen_get_batch": (
        _status,
        [c_void_p, c_size_t, c_char_p, c_void_p, c_void_p, c_void_p],
    ),
    "omen_checkpoint": (_status, [c_void_p, POINTER(c_uint64)]),
    "omen_train_pq": (_status, [c_void_p, PROGRESS_FN, c_void_p]),
    "omen_search": (
        _status,
        [c_void_p, c_void_p, c_size_t, POINTER(omen_search_params), c_void_p, POINTER(c_size_t)],
    ),
    "omen_search_batch": (
        _status,
        [c_void_p, c_size_t, c_void_p, c_size_t, POINTER(omen_search_params), c_void_p, c_void_p],
    ),
    "omen_search_ids": (
        _status,
        [c_void_p, c_void_p, c_size_t, POINTER(omen_search_params), c_void_p, POINTER(c_size_t),
         c_void_p, c_size_t, c_void_p, POINTER(c_size_t)],
    ),
    "omen_search_batch_ids": (
        _status,
        [c_void_p, c_size_t, c_void_p, c_size_t, POINTER(omen_search_params), c_void_p, c_void_p,
         c_void_p, c_size_t, c_void_p, POINTER(c_size_t)],
    ),
    "omen_key_id": (_status, [c_void_p, c_uint64, POINTER(c_void_p), POINTER(c_size_t)]),
    "omen_compact": (_status, [c_void_p]),
    "omen_store_stats": (_status, [c_void_p, POINTER(omen_stats)]),
    "omen_close": (_status, [c_void_p]),
    "omen_close_discard": (_status, [c_void_p]),
    "omen_last_error": (c_char_p, []),
    "omen_status_name": (c_char_p, [c_int32]),
    "omen_version": (c_char_p, []),
}

_lib = None
_lib_path = None


def load_library(path=None):
    """Load (once) and return the ctypes handle of libomendb.so."""
    global _lib, _lib_path
    if _lib is not None and (path is None or path == _lib_path):
        return _lib
    path = path or _default_library_path()
    if not os.path.exists(path):
        raise OSError(
            "libomendb.so not found at %r: build it (cargo build --release) or set "
            "OMENDB_LIB to the library path" % path
        )
    lib = ctypes.CDLL(path)
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    _lib, _lib_path = lib, path
    return lib


def _L():
    return _lib if _lib is not None else load_library()


def version():
    return _L().omen_version().decode()


def status_name(status):
    return _L().omen_status_name(int(status)).decode()


# ------------------------------------------------------------------- errors


class OmenError(Exception):
    """A failed OmenDB call: ``.status`` (int), ``.name`` (e.g. "OMEN_ERR_NOT_FOUND")
    and ``.message`` (omen_last_error() of the failed call, or the wrapper's own
    explanation when the wrapper refused the call before reaching the library)."""

    def __init__(self, status, message="", name=None, func=None):
        self.status = int(status)
        self.name = name if name is not None else status_name(status)
        self.message = message
        self.func = func
        where = "%s: " % func if func else ""
        super().__init__("%s%s (%d): %s" % (where, self.name, self.status, message))

    def __reduce__(self):
        # Exceptions cross process boundaries pickled (multiprocessing,
        # distributed runners); the default rebuilds from self.args, which
        # holds only the formatted text.
        return (type(self), (self.status, self.message, self.name, self.func))


def _check(status, func):
    if status != OMEN_OK:
        lib = _L()
        msg = lib.omen_last_error()
        msg = msg.decode("utf-8", "replace") if msg else ""
        raise OmenError(status, msg, lib.omen_status_name(status).decode(), func)


def _wrapper_error(status, message, func):
    # The wrapper refuses a call the library cannot check itself (e.g. a
    # vector buffer of the wrong width, which the C API cannot see).
    return OmenError(status, message, status_name(status), func)


# -------------------------------------------------------------------- utils


def _id_bytes(i):
    if isinstance(i, bytes):
        return i
    if isinstance(i, str):
        return i.encode("utf-8", "surrogateescape")
    if isinstance(i, (bytearray, memoryview)):
        return bytes(i)
    raise TypeError("an ID must be str or bytes, not %s" % type(i).__name__)


def pack_ids(ids):
    """Pack IDs into (buffer: bytes, offsets: uint64 ndarray of n+1, n).

    One join and one cumsum per batch; lengths are not checked here (the
    library checks 1..1024 bytes and answers OMEN_ERR_INVALID_ARGUMENT).
    """
    if isinstance(ids, (str, bytes)):
        ids = [ids]
    enc = [_id_bytes(i) for i in ids]
    n = len(enc)
    offsets = np.zeros(n + 1, dtype=np.uint64)
    if n:
        np.cumsum(np.fromiter(map(len, enc), dtype=np.uint64, count=n), out=offsets[1:])
    return b"".join(enc), offsets, n


def _decode(b):
    return b.decode("utf-8", "surrogateescape")


def _as_f32_matrix(a, dim, what):
    """float32 C-contiguous, aligned 2-D view of ``a``; no copy when ``a``
    already is one. A misaligned array (a view at an odd offset into a byte
    buffer, say), which the library refuses, is copied once."""
    if not (
        isinstance(a, np.ndarray)
        and a.dtype == np.float32
        and a.ndim == 2
        and a.flags.c_contiguous
        and a.flags.aligned
    ):
        a = np.require(a, dtype=np.float32, requirements=["C", "A"])
        if a.ndim == 1:
            a = a.reshape(1, -1)
        if a.ndim != 2:
            raise ValueError("%s must be 2-D (n, dim), got shape %r" % (what, a.shape))
    if a.shape[1] != dim and a.shape[0] != 0:
        raise _wrapper_error(
            OMEN_ERR_DIMENSION,
            "%s have %d columns, the store has dim %d" % (what, a.shape[1], dim),
            what,
        )
    return a


def _as_f32_vector(a, dim, what):
    if not (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous and a.flags.aligned):
        a = np.require(a, dtype=np.float32, requirements=["C", "A"])
    a = a.reshape(-1)
    if a.shape[0] != dim:
        raise _wrapper_error(
            OMEN_ERR_DIMENSION,
            "%s has %d values, the store has dim %d" % (what, a.shape[0], dim),
            what,
        )
    return a


class _ProgressBar:
    """Text progress bar on stderr, driven by omen_progress_fn."""

    def __init__(self, label="train_pq", stream=None, width=40):
        self.label, self.stream, self.width = label, stream or sys.stderr, width
        self.last_pct = -1
        self.calls = 0

    def __call__(self, done, total):
        self.calls += 1
        pct = 100 if total == 0 else int(done * 100 // total)
        if pct == self.last_pct and done != total:
            return
        self.last_pct = pct
        fill = self.width * pct // 100
        self.stream.write(
            "\r%s [%s%s] %3d%% (%d/%d)"
            % (self.label, "#" * fill, "." * (self.width - fill), pct, done, total)
        )
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _options(dim, metric, create, read_only, sync_writes, drop_raw, pq_m, pq_bits,
             pq_train_size, threads):
    lib = _L()
    o = omen_options()
    lib.omen_options_default(byref(o))
    o.struct_size = ctypes.sizeof(omen_options)
    flags = 0
    if create:
        flags |= OMEN_OPEN_CREATE
    if read_only:
        flags |= OMEN_OPEN_READ_ONLY
    if sync_writes:
        flags |= OMEN_OPEN_SYNC_WRITES
    if drop_raw:
        flags |= OMEN_OPEN_DROP_RAW
    if isinstance(metric, str):
        try:
            metric = _METRICS[metric.lower()]
        except KeyError:
            raise ValueError("metric must be one of %s" % sorted(_METRICS)) from None
    o.flags = flags
    o.dim = int(dim)
    o.metric = int(metric)
    o.pq_m = int(pq_m)
    o.pq_bits = int(pq_bits)
    o.pq_train_size = int(pq_train_size)
    o.threads = int(threads)
    return o


def _path_bytes(path):
    return os.fsencode(path)


class _SearchParams:
    """omen_search_params for one call, with what its pointers point at.

    Used as ``with _SearchParams(...) as p: <C call with p.params>``: the
    packed allow-list and the ctypes callback stay referenced until the C
    call has returned, and an exception raised by the filter callable is
    re-raised on exit.
    """

    def __init__(self, rerank, exact, threads, filter_ids, filter):
        p = omen_search_params()
        p.struct_size = ctypes.sizeof(omen_search_params)
        p.rerank = int(rerank)
        p.exact = 1 if exact else 0
        p.threads = int(threads)
        self.params = p
        self._ids = None
        self._cb = None
        self._errors = []
        if filter_ids is not None:
            buf, offs, n = pack_ids(filter_ids)
            self._ids = (buf, offs)  # referenced for the whole call
            p.filter_n = n
            p.filter_ids = ctypes.cast(c_char_p(buf), c_void_p).value if buf else None
            p.filter_id_offsets = offs.ctypes.data  # never NULL: a list, maybe empty
        if filter is not None:
            if not callable(filter):
                raise TypeError("filter must be callable, not %s" % type(filter).__name__)
            errors = self._errors

            def trampoline(_user, id_ptr, id_len):
                if errors:
                    return 0  # the callable raised: keep nothing more
                try:
                    return 1 if filter(ctypes.string_at(id_ptr, id_len)) else 0
                except BaseException as e:  # noqa: BLE001 - re-raised after the call
                    errors.append(e)
                    return 0

            self._cb = FILTER_FN(trampoline)
            p.filter_fn = self._cb

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self._cb = self._ids = None
        if self._errors:
            # The callable's own exception says more than the call's status.
            raise self._errors[0]
        return False


# -------------------------------------------------------------------- Store


class Store:
    """An open OmenDB store (a directory). Use ``Store.open`` or ``Store.recover``.

    ``with Store.open(...) as s:`` closes the store (which checkpoints) on exit.
    """

    __slots__ = ("_h", "_dim", "_dim_c", "_path", "_vec_t", "__weakref__")

    def __init__(self, handle, path):
        # Kept as a c_void_p object: ctypes passes it without converting an int.
        self._h = c_void_p(handle)
        self._path = path
        self._dim = 0
        self._dim = self.stats()["dim"]
        self._vec_t = c_float * self._dim  # output buffer type of get()
        self._dim_c = c_size_t(self._dim)  # pre-converted: one ctypes conversion less per get

    # ---- opening
    @classmethod
    def open(cls, path, dim=0, metric="l2", create=False, read_only=False,
             sync_writes=False, drop_raw=False, pq_m=0, pq_bits=8, pq_train_size=0,
             threads=0):
        lib = _L()
        o = _options(dim, metric, create, read_only, sync_writes, drop_raw, pq_m,
                     pq_bits, pq_train_size, threads)
        h = c_void_p()
        _check(lib.omen_open(_path_bytes(path), byref(o), byref(h)), "omen_open")
        return cls(h.value, path)

    @classmethod
    def recover(cls, path, dim=0, metric="l2", create=False, read_only=False,
                sync_writes=False, drop_raw=False, pq_m=0, pq_bits=8, pq_train_size=0,
                threads=0):
        """Open after verifying every committed checksum; returns (Store, report dict)."""
        lib = _L()
        o = _options(dim, metric, create, read_only, sync_writes, drop_raw, pq_m,
                     pq_bits, pq_train_size, threads)
        h = c_void_p()
        rep = omen_recovery()
        rep.struct_size = ctypes.sizeof(omen_recovery)
        _check(lib.omen_recover(_path_bytes(path), byref(o), byref(h), byref(rep)),
               "omen_recover")
        report = {
            "checkpoint_seq": rep.checkpoint_seq,
            "live_vectors": rep.live_vectors,
            "discarded_bytes": rep.discarded_bytes,
            "verified_bytes": rep.verified_bytes,
        }
        return cls(h.value, path), report

    def close(self, discard=False):
        """Checkpoint and free. Idempotent; the handle is gone even if this raises.

        ``discard=True`` frees without checkpointing: puts and deletes since
        the last checkpoint are dropped (reopening finds the store as of its
        last checkpoint) and the writer lock is released at once.
        """
        h, self._h = self._h, None
        if h is not None:
            if discard:
                _check(_L().omen_close_discard(h), "omen_close_discard")
            else:
                _check(_L().omen_close(h), "omen_close")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    def __del__(self):
        # Safety net only: close() explicitly (or use `with`) to see errors.
        try:
            h, self._h = self._h, None
            if h is not None and _lib is not None:
                _lib.omen_close(h)
        except Exception:
            pass

    @property
    def closed(self):
        return self._h is None

    @property
    def dim(self):
        return self._dim

    @property
    def path(self):
        return self._path

    @property
    def handle(self):
        """The raw omen_store* as an int (for calling the C API directly)."""
        return self._handle().value

    def _handle(self):
        h = self._h
        if h is None:
            raise ValueError("operation on a closed Store")
        return h

    # ---- writes
    def put(self, ids, vectors):
        """Upsert ``len(ids)`` vectors. ``vectors``: (n, dim) array-like; passed
        zero-copy when it is a float32 C-contiguous 2-D ndarray."""
        h = self._handle()
        buf, offs, n = pack_ids(ids)
        if n == 0:
            _check(_lib.omen_put_batch(h, 0, None, None, None), "omen_put_batch")
            return
        v = _as_f32_matrix(vectors, self._dim, "vectors")
        if v.shape[0] != n:
            raise ValueError("%d ids but %d vectors" % (n, v.shape[0]))
        _check(_lib.omen_put_batch(h, n, buf, offs.ctypes.data, v.ctypes.data),
               "omen_put_batch")

    def delete(self, ids):
        """Delete IDs; returns how many existed."""
        h = self._handle()
        buf, offs, n = pack_ids(ids)
        out = c_uint64(0)
        if n == 0:
            _check(_lib.omen_delete_batch(h, 0, None, None, byref(out)), "omen_delete_batch")
            return 0
        _check(_lib.omen_delete_batch(h, n, buf, offs.ctypes.data, byref(out)),
               "omen_delete_batch")
        return out.value

    def checkpoint(self):
        """Make everything so far durable; returns the checkpoint sequence number."""
        seq = c_uint64(0)
        _check(_lib.omen_checkpoint(self._handle(), byref(seq)), "omen_checkpoint")
        return seq.value

    def compact(self):
        """Reclaim dead slots. Invalidates search keys (not IDs)."""
        _check(_lib.omen_compact(self._handle()), "omen_compact")

    def train_pq(self, progress=True):
        """Train PQ codebooks and encode every vector.

        ``progress``: True draws a bar on stderr, a callable gets (done, total),
        False/None passes NULL. An exception raised by a callable is re-raised
        after the call returns.
        """
        h = self._handle()
        if progress is True:
            progress = _ProgressBar()
        if not progress:
            _check(_lib.omen_train_pq(h, PROGRESS_FN(), None), "omen_train_pq")
            return
        errors = []

        def trampoline(_user, done, total):
            if errors:
                return
            try:
                progress(done, total)
            except BaseException as e:  # noqa: BLE001 - reported after the call
                errors.append(e)

        # `cb` stays referenced by this frame for the whole C call.
        cb = PROGRESS_FN(trampoline)
        try:
            _check(_lib.omen_train_pq(h, cb, None), "omen_train_pq")
        finally:
            del cb
        if errors:
            raise errors[0]

    # ---- reads
    def get(self, id):
        """The vector of ``id`` (float32, shape (dim,)); OmenError NOT_FOUND if absent."""
        h = self._handle()
        b = id if type(id) is bytes else _id_bytes(id)
        # A ctypes array passes as a pointer with no conversion, and
        # np.frombuffer wraps it without copying: several times cheaper per
        # call than ndarray.ctypes.data.
        buf = self._vec_t()
        st = _lib.omen_get(h, b, len(b), buf, self._dim_c)
        if st:
            _check(st, "omen_get")
        return np.frombuffer(buf, np.float32)

    def contains(self, id):
        """Whether the store holds ``id`` (``id in store`` too), without copying its vector."""
        h = self._handle()
        b = id if type(id) is bytes else _id_bytes(id)
        found = c_uint8(0)
        st = _lib.omen_contains(h, b, len(b), byref(found))
        if st:
            _check(st, "omen_contains")
        return found.value == 1

    __contains__ = contains

    def get_batch(self, ids):
        """(array (n, dim) float32, found bool array (n,)); missing rows are zero."""
        h = self._handle()
        buf, offs, n = pack_ids(ids)
        out = np.zeros((n, self._dim), dtype=np.float32)
        found = np.zeros(n, dtype=np.uint8)
        if n:
            _check(_lib.omen_get_batch(h, n, buf, offs.ctypes.data, out.ctypes.data,
                                       found.ctypes.data), "omen_get_batch")
        return out, found.view(np.bool_)

    def key_id(self, key):
        """The ID (bytes) of a search key."""
        p = c_void_p()
        ln = c_size_t()
        _check(_lib.omen_key_id(self._handle(), key, byref(p), byref(ln)), "omen_key_id")
        return ctypes.string_at(p.value, ln.value) if ln.value else b""

    def search(self, query, k, rerank=0, exact=False, decode=False, filter_ids=None,
               filter=None):
        """k nearest IDs to ``query``: (ids list, distances float32 array), closest first.

        One C call (omen_search_ids) finds the hits and copies their IDs.
        ``filter_ids``: only these IDs (str or bytes) may be hits; an empty
        sequence allows none, None means no list. ``filter``: a callable
        taking an ID (bytes) that returns truthy to keep it; it runs on this
        thread, once per candidate. With both, both must allow. An exception
        raised by ``filter`` ends the filtering (nothing more is kept) and is
        re-raised once the search returns.
        """
        h = self._handle()
        q = _as_f32_vector(query, self._dim, "query")
        k = int(k)
        hits = np.empty(k, dtype=HIT_DTYPE)
        cnt = c_size_t(0)
        with _SearchParams(rerank, exact, 0, filter_ids, filter) as p:
            raw, offs = _with_id_buffer(k, lambda buf, cap, offs, need: _lib.omen_search_ids(
                h, q.ctypes.data, k, byref(p.params), hits.ctypes.data, byref(cnt),
                buf, cap, offs.ctypes.data, need), "omen_search_ids")
        n = cnt.value
        return _split_ids(raw, offs, 0, n, decode), hits["distance"][:n].copy()

    def search_batch(self, queries, k, rerank=0, exact=False, threads=0, decode=False,
                     filter_ids=None, filter=None, dense=False):
        """Per query (ids list, distances array): returns (list of id lists, list of arrays).

        With ``dense=True`` the distances come as one (nq, k) float32 array
        instead, ``inf`` where a query has fewer than k hits (its ID list is
        then shorter than k). One C call (omen_search_batch_ids) finds every
        hit and copies its ID. ``filter_ids`` and ``filter`` as for
        ``search``; ``filter`` is called once per candidate for the whole
        batch, not per query.
        """
        h = self._handle()
        q = _as_f32_matrix(queries, self._dim, "queries")
        nq, k = q.shape[0], int(k)
        hits = np.empty(nq * k, dtype=HIT_DTYPE)
        counts = np.zeros(nq, dtype=np.uintp)  # size_t
        raw, offs = b"", np.zeros(1, dtype=np.uint64)
        if nq:
            with _SearchParams(rerank, exact, threads, filter_ids, filter) as p:
                raw, offs = _with_id_buffer(nq * k, lambda buf, cap, o, need: _lib.omen_search_batch_ids(
                    h, nq, q.ctypes.data, k, byref(p.params), hits.ctypes.data, counts.ctypes.data,
                    buf, cap, o.ctypes.data, need), "omen_search_batch_ids")
        hits = hits.reshape(nq, k)
        counts = counts.tolist()
        ids = [_split_ids(raw, offs, i * k, counts[i], decode) for i in range(nq)]
        if dense:
            dists = np.full((nq, k), np.inf, dtype=np.float32)
            for i in range(nq):
                dists[i, : counts[i]] = hits["distance"][i, : counts[i]]
            return ids, dists
        return ids, [hits["distance"][i, : counts[i]].copy() for i in range(nq)]

    # ---- info
    def stats(self):
        s = omen_stats()
        s.struct_size = ctypes.sizeof(omen_stats)
        _check(_L().omen_store_stats(self._handle(), byref(s)), "omen_store_stats")
        d = {name: getattr(s, name) for name, _ in omen_stats._fields_ if name not in ("struct_size", "reserved", "reserved2")}
        d["metric_name"] = _METRIC_NAMES.get(d["metric"], "unknown")
        for flag in ("pq_trained", "raw_kept", "drop_raw"):
            d[flag] = bool(d[flag])
        return d

    def __len__(self):
        return self.stats()["live_vectors"]

    def __repr__(self):
        state = "closed" if self._h is None else "dim=%d" % self._dim
        return "<omendb.Store %r %s>" % (self._path, state)
