"""OmenDB for Python: a ctypes binding of the C ABI (include/omendb.h).

No compiled extension: the package loads ``libomendb.so`` with ctypes.

Library location, first match wins:
  1. the copy inside this package (what ``pip install ./bindings/python``
     builds and ships in the wheel): no environment variable needed;
  2. ``$OMENDB_LIB``, the path of ``libomendb.so`` itself (a source checkout
     of this package has no copy of its own);
  3. the system library, found by the dynamic loader (``libomendb.so.0``,
     as ``make install`` lays it out).
``load_library(path)`` loads that file instead, if called before any other
call needs the library.

IDs are byte strings of 1 to 1024 bytes. ``str`` IDs are encoded as UTF-8
(with ``surrogateescape``, so every byte string round-trips through ``str``).
Results carry IDs as ``bytes`` unless ``decode=True`` is given.

Buffers are passed in place: ``put`` hands the library the array's own data
pointer when it is already float32 and C-contiguous, and converts (one copy)
only otherwise. ID batches are packed once per call into one ``bytes``
buffer plus a numpy uint64 offsets array, Arrow-style.

Per-call overhead through ctypes is a few hundred nanoseconds: prefer the
batch calls (``put``, ``get_batch``, ``delete``, ``search_batch``).
"""

from __future__ import annotations

import ctypes
import importlib
import os
import sys
import threading
import warnings
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    byref,
    c_char,
    c_char_p,
    c_float,
    c_int32,
    c_size_t,
    c_uint32,
    c_uint64,
    c_uint8,
    c_void_p,
)
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Literal,
    Optional,
    Sequence,
    TextIO,
    Tuple,
    Union,
    overload,
)

import numpy as np
import numpy.typing as npt

__all__ = [
    "Store",
    "Cursor",
    "OmenError",
    "version",
    "status_name",
    "load_library",
    "library_path",
    "pack_ids",
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

# -------------------------------------------------------------------- types

#: An ID: ``str`` (stored as UTF-8) or bytes-like.
IdLike = Union[str, bytes, bytearray, memoryview]
#: One ID, or any iterable of them (list, tuple, generator, numpy array of str).
IdsLike = Union[IdLike, Iterable[IdLike]]
#: A float32 numpy array.
F32Array = npt.NDArray[np.float32]
#: ``progress=``: None/False (no progress), True (a bar), or a callable
#: receiving ``(done, total)``.
Progress = Union[bool, None, Callable[[int, int], object]]
#: A search filter predicate: called with a candidate's ID (bytes).
Predicate = Callable[[bytes], object]

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
OMEN_OPEN_HUGE_PAGES = 0x10
OMEN_OPEN_IVF = 0x20

OMEN_METRIC_L2 = 0
OMEN_METRIC_IP = 1
OMEN_METRIC_COSINE = 2

_METRICS = {"l2": OMEN_METRIC_L2, "ip": OMEN_METRIC_IP, "cosine": OMEN_METRIC_COSINE}
_METRIC_NAMES = {v: k for k, v in _METRICS.items()}

OMEN_SEARCH_EXCLUDE_SELF = 0x1

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
        ("ivf_lists", c_uint32),
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
        ("ivf_lists", c_uint32),
        ("index_status", c_uint32),
        ("calibration_queries", c_uint32),
        ("ivf_stages", c_uint32),
        ("ivf_list_code_bytes", c_uint32),
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
        ("nprobe", c_uint32),
        ("target_recall", c_float),
        ("query_threads", c_uint32),
    ]


class omen_search_plan(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("method", c_uint32),
        ("nprobe", c_uint32),
        ("rerank", c_uint32),
        ("calibrated_recall", c_float),
    ]


# omen_search_plan.method
SEARCH_METHOD_EXACT = 0
SEARCH_METHOD_PQ_SCAN = 1
SEARCH_METHOD_IVF = 2
_SEARCH_METHOD_NAMES = {SEARCH_METHOD_EXACT: "exact", SEARCH_METHOD_PQ_SCAN: "pq_scan", SEARCH_METHOD_IVF: "ivf"}


class omen_hit(Structure):
    _fields_ = [
        ("key", c_uint64),
        ("distance", c_float),
        ("reserved", c_uint32),
    ]


# omen_hit as a numpy record, so hit buffers are plain numpy arrays.
HIT_DTYPE = np.dtype([("key", "<u8"), ("distance", "<f4"), ("reserved", "<u4")])
assert HIT_DTYPE.itemsize == ctypes.sizeof(omen_hit) == 16
assert ctypes.sizeof(omen_options) == 36
assert ctypes.sizeof(omen_stats) == 112
assert ctypes.sizeof(omen_recovery) == 40
assert ctypes.sizeof(omen_search_params) == 72
assert ctypes.sizeof(omen_search_plan) == 20

PROGRESS_FN = CFUNCTYPE(None, c_void_p, c_uint64, c_uint64)

# Bytes reserved per hit for its ID on the first try; a longer total is
# retried once with the size the library reports.
_ID_BYTES_GUESS = 32

# ------------------------------------------------------------------ loading

_HERE = os.path.dirname(os.path.abspath(__file__))
# The file name cargo gives the library on this platform (setup.py copies it
# into the package under the same name).
_LIB_NAME = {"darwin": "libomendb.dylib", "win32": "omendb.dll"}.get(sys.platform, "libomendb.so")
# Names the dynamic loader is asked for when neither of the above is there:
# the soname first (what `make install` and cargo-c install), then the
# development link.
_SYSTEM_NAMES = ("libomendb.so.0", "libomendb.so") if _LIB_NAME == "libomendb.so" else (_LIB_NAME,)

_status = c_int32  # omen_status is an int32_t-sized C enum

# name -> (restype, argtypes)
_SIGNATURES: Dict[str, Tuple[Any, List[Any]]] = {
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
    "omen_rebuild_index": (_status, [c_void_p, PROGRESS_FN, c_void_p]),
    "omen_index_status": (_status, [c_void_p]),
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
    "omen_search_by_id_ids": (
        _status,
        [c_void_p, c_char_p, c_size_t, c_size_t, POINTER(omen_search_params), c_uint32, c_void_p,
         POINTER(c_size_t), c_void_p, c_size_t, c_void_p, POINTER(c_size_t)],
    ),
    "omen_range_search_ids": (
        _status,
        [c_void_p, c_void_p, c_float, c_size_t, POINTER(omen_search_params), c_void_p,
         POINTER(c_size_t), POINTER(c_uint64), c_void_p, c_size_t, c_void_p, POINTER(c_size_t)],
    ),
    "omen_cursor_open": (_status, [c_void_p, POINTER(c_void_p)]),
    "omen_cursor_next": (
        _status,
        [c_void_p, c_size_t, c_void_p, c_size_t, c_void_p, c_void_p, POINTER(c_size_t)],
    ),
    "omen_cursor_close": (None, [c_void_p]),
    "omen_key_id": (_status, [c_void_p, c_uint64, POINTER(c_void_p), POINTER(c_size_t)]),
    "omen_compact": (_status, [c_void_p]),
    "omen_store_stats": (_status, [c_void_p, POINTER(omen_stats)]),
    "omen_explain_search": (_status, [c_void_p, c_size_t, POINTER(omen_search_params), POINTER(omen_search_plan)]),
    "omen_calibration": (
        _status,
        [c_void_p, c_void_p, c_void_p, c_void_p, c_void_p, c_size_t, POINTER(c_size_t)],
    ),
    "omen_calibrate": (_status, [c_void_p, c_size_t, c_void_p, PROGRESS_FN, c_void_p]),
    "omen_close": (_status, [c_void_p]),
    "omen_close_discard": (_status, [c_void_p]),
    "omen_last_error": (c_char_p, []),
    "omen_status_name": (c_char_p, [c_int32]),
    "omen_version": (c_char_p, []),
}

_lib: Any = None
_lib_path: Optional[str] = None


def _declare(lib: Any, path: str) -> None:
    """Declares the signatures of the functions this binding calls; refuses a
    library that lacks one."""
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise OSError(
                "%s has no %s: the library is older than this binding (rebuild it, or "
                "install pyomendb from the same checkout)" % (path, name)
            ) from None
        fn.restype = restype
        fn.argtypes = argtypes


def _search_order() -> List[str]:
    bundled = os.path.join(_HERE, _LIB_NAME)
    if os.path.isfile(bundled):
        return [bundled]
    explicit = os.environ.get("OMENDB_LIB")
    if explicit:
        return [explicit]
    return list(_SYSTEM_NAMES)


def load_library(path: Union[str, os.PathLike[str], None] = None) -> Any:
    """Loads (once) and returns the ctypes handle of libomendb.

    Without ``path``, the first of: this package's own copy, ``$OMENDB_LIB``,
    the system library (see the module docstring). With ``path``, that file;
    refused once a different library is loaded (stores opened through one
    library cannot be handed to another).
    """
    global _lib, _lib_path
    if path is not None:
        path = os.fspath(path)
    if _lib is not None:
        if path is None or os.path.abspath(path) == _lib_path:
            return _lib
        raise RuntimeError("libomendb is already loaded from %s" % _lib_path)
    if path is not None:
        if not os.path.exists(path):
            raise OSError("no library at %r" % path)
        candidates = [path]
    else:
        candidates = _search_order()
    errors = []
    for name in candidates:
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            errors.append(str(e))
            continue
        _declare(lib, name)  # a library that is there but too old is an error, not a miss
        # A bare name was resolved by the loader: keep what was asked for.
        _lib, _lib_path = lib, (os.path.abspath(name) if os.sep in name else name)
        return lib
    raise OSError(
        "libomendb not found (tried %s): install pyomendb from a wheel, which carries the "
        "library, or set OMENDB_LIB to the path of libomendb.so" % "; ".join(errors)
    )


def library_path() -> str:
    """Where the loaded library came from (a path, or the name the dynamic
    loader resolved); loads it first if needed."""
    load_library()
    assert _lib_path is not None
    return _lib_path


def _L() -> Any:
    return _lib if _lib is not None else load_library()


def version() -> str:
    """The library's version (omen_version())."""
    return str(_L().omen_version().decode())


def status_name(status: int) -> str:
    """The name of a status code ("OMEN_ERR_CORRUPT", ...; "OMEN_UNKNOWN" for others)."""
    return str(_L().omen_status_name(int(status)).decode())


# ------------------------------------------------------------------- errors


class OmenError(Exception):
    """A failed OmenDB call: ``.status`` (int), ``.name`` (e.g. "OMEN_ERR_NOT_FOUND")
    and ``.message`` (omen_last_error() of the failed call, or the wrapper's own
    explanation when the wrapper refused the call before reaching the library)."""

    status: int
    name: str
    message: str
    func: Optional[str]

    def __init__(self, status: int, message: str = "", name: Optional[str] = None,
                 func: Optional[str] = None) -> None:
        self.status = int(status)
        self.name = name if name is not None else status_name(status)
        self.message = message
        self.func = func
        where = "%s: " % func if func else ""
        super().__init__("%s%s (%d): %s" % (where, self.name, self.status, message))

    def __reduce__(self) -> Tuple[Any, ...]:
        # Exceptions cross process boundaries pickled (multiprocessing,
        # distributed runners); the default rebuilds from self.args, which
        # holds only the formatted text.
        return (type(self), (self.status, self.message, self.name, self.func))


def _check(status: int, func: str) -> None:
    if status != OMEN_OK:
        lib = _L()
        msg = lib.omen_last_error()
        msg = msg.decode("utf-8", "replace") if msg else ""
        raise OmenError(status, msg, lib.omen_status_name(status).decode(), func)


def _wrapper_error(status: int, message: str, func: str) -> OmenError:
    # The wrapper refuses a call the library cannot check itself (e.g. a
    # vector buffer of the wrong width, which the C API cannot see).
    return OmenError(status, message, status_name(status), func)


# -------------------------------------------------------------------- utils


def _id_bytes(i: IdLike) -> bytes:
    if isinstance(i, bytes):
        return i
    if isinstance(i, str):
        return i.encode("utf-8", "surrogateescape")
    if isinstance(i, (bytearray, memoryview)):
        return bytes(i)
    raise TypeError("an ID must be str or bytes, not %s" % type(i).__name__)


def pack_ids(ids: IdsLike) -> Tuple[bytes, npt.NDArray[np.uint64], int]:
    """Packs IDs into (buffer: bytes, offsets: uint64 ndarray of n+1, n).

    One join and one cumsum per batch; lengths are not checked here (the
    library checks 1..1024 bytes and answers OMEN_ERR_INVALID_ARGUMENT).
    """
    if isinstance(ids, (str, bytes, bytearray, memoryview)):
        ids = [ids]
    enc = [_id_bytes(i) for i in ids]
    n = len(enc)
    offsets = np.zeros(n + 1, dtype=np.uint64)
    if n:
        np.cumsum(np.fromiter(map(len, enc), dtype=np.uint64, count=n), out=offsets[1:])
    return b"".join(enc), offsets, n


def _decode(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _with_id_buffer(slots: int, call: Callable[..., int], name: str) -> bytes:
    """Runs ``call(buf, cap, byref(needed))`` (an omen_*_ids call, its ID
    offsets going where the caller put room for ``slots + 1``) with an ID
    buffer, again with the needed size on OMEN_ERR_BUFFER_TOO_SMALL;
    returns the ID bytes."""
    need = c_size_t(0)
    cap = slots * _ID_BYTES_GUESS
    while True:
        buf = ctypes.create_string_buffer(cap) if cap else None
        st = call(buf, cap, byref(need))
        if st == OMEN_ERR_BUFFER_TOO_SMALL and need.value > cap:
            cap = need.value  # the store changed or the IDs are long: retry
            continue
        _check(st, name)
        return buf.raw[: need.value] if buf is not None else b""


def _one_query(k: int, sp: _SearchParams, name: str, decode: bool,
               call: Callable[..., int]) -> Tuple[Any, F32Array]:
    """Runs an omen_*_ids call answering one query, as
    ``call(params, hits, count, id_bytes, cap, id_offsets, needed)``;
    returns (IDs, distances) of its hits. The hits and offsets are ctypes
    arrays: they pass as pointers with no conversion (``ndarray.ctypes.data``
    builds a helper object a call, 0.9 us each, a tenth of a search of a
    small store from Python)."""
    hits: Any = (omen_hit * k)()
    offs: Any = (c_uint64 * (k + 1))()
    cnt = c_size_t(0)
    with sp as p:
        raw = _with_id_buffer(k, lambda buf, cap, need: call(
            byref(p.params), hits, byref(cnt), buf, cap, offs, need), name)
    n = cnt.value
    dists: F32Array = np.frombuffer(hits, dtype=HIT_DTYPE, count=n)["distance"].copy()
    return _split_ids(raw, offs[: n + 1], 0, n, decode), dists


def _split_ids(raw: bytes, offs: Sequence[int], first: int, n: int,
               decode: bool) -> Union[List[bytes], List[str]]:
    """IDs ``first .. first + n`` of an Arrow-style (bytes, offsets) pair
    (``offs`` a list: one conversion from an ndarray for all the queries)."""
    ids = [raw[a:b] for a, b in zip(offs[first : first + n], offs[first + 1 : first + n + 1])]
    if decode:
        return [_decode(i) for i in ids]
    return ids


def _vector_address(a: F32Array) -> int:
    """The address of the values of ``a`` (a C-contiguous vector, as
    ``_as_f32_vector`` returns it): through the buffer protocol where ``a``
    is writable (a third of the cost of ``a.ctypes.data``), else
    ``a.ctypes.data``."""
    if a.flags.writeable:
        values: Any = a  # a buffer of floats, typed as an array
        return ctypes.addressof(c_char.from_buffer(values))
    return a.ctypes.data


def _as_f32_matrix(a: npt.ArrayLike, dim: int, what: str) -> F32Array:
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


def _as_f32_vector(a: npt.ArrayLike, dim: int, what: str) -> F32Array:
    if not (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous
            and a.flags.aligned):
        a = np.require(a, dtype=np.float32, requirements=["C", "A"])
    a = a.reshape(-1)
    if a.shape[0] != dim:
        raise _wrapper_error(
            OMEN_ERR_DIMENSION,
            "%s has %d values, the store has dim %d" % (what, a.shape[0], dim),
            what,
        )
    return a


# ----------------------------------------------------------------- progress


class _TextBar:
    """A text progress bar on stderr: ``progress=True`` without tqdm."""

    def __init__(self, label: str, stream: Optional[TextIO] = None, width: int = 40) -> None:
        self.label, self.stream, self.width = label, stream or sys.stderr, width
        self.last_pct = -1

    def __call__(self, done: int, total: int) -> None:
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

    def close(self) -> None:
        pass


class _TqdmBar:
    """``progress=True`` with tqdm installed: one tqdm bar, opened at the
    first report (when the total is known), closed after the call."""

    def __init__(self, tqdm: Any, label: str) -> None:
        self.tqdm, self.label = tqdm, label
        self.bar: Any = None
        self.done = 0

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = self.tqdm(total=total, desc=self.label)
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress_reporter(progress: Progress, label: str) -> Optional[Callable[[int, int], object]]:
    """What ``progress=`` asks for: None (no reports), the caller's callable,
    or a bar (tqdm's when it is installed, else a text bar on stderr)."""
    if progress is True:
        try:
            tqdm = importlib.import_module("tqdm.auto").tqdm
        except ImportError:
            return _TextBar(label)
        return _TqdmBar(tqdm, label)
    if not progress:
        return None
    if not callable(progress):
        raise TypeError("progress must be a bool or a callable, not %s" % type(progress).__name__)
    return progress


def _with_progress(func: str, progress: Progress, call: Callable[[Any], int]) -> None:
    """Runs ``call(cb)``, a call of the C function ``func`` that takes the
    progress callback ``cb`` (its ``user`` NULL), and checks its status.
    ``progress`` as ``train_pq`` takes it: the bar is labelled ``func``
    without "omen_"; an exception raised by the caller's callable is kept
    (later reports are dropped) and re-raised once the call has returned
    (the call itself runs to its end)."""
    report = _progress_reporter(progress, func[len("omen_"):])
    if report is None:
        _check(call(PROGRESS_FN()), func)
        return
    errors: List[BaseException] = []

    def trampoline(_user: Any, done: int, total: int) -> None:
        if errors:
            return
        try:
            report(done, total)
        except BaseException as e:  # noqa: BLE001 - reported after the call
            errors.append(e)

    # `cb` stays referenced by this frame for the whole C call.
    cb = PROGRESS_FN(trampoline)
    try:
        _check(call(cb), func)
    finally:
        del cb
        if isinstance(report, (_TextBar, _TqdmBar)):
            report.close()
    if errors:
        raise errors[0]


# ------------------------------------------------------------------ options


def _u32(value: int, what: str) -> int:
    """``value`` as a uint32_t field, refused when out of range (ctypes would
    silently wrap -1 to 4294967295)."""
    v = int(value)
    if not 0 <= v <= 0xFFFFFFFF:
        raise ValueError("%s must be in 0..4294967295, not %d" % (what, v))
    return v


def _options(dim: int, metric: Union[str, int], create: bool, read_only: bool,
             sync_writes: bool, drop_raw: bool, pq_m: int, pq_bits: int,
             pq_train_size: int, threads: int, ivf_lists: Optional[int],
             huge_pages: bool) -> omen_options:
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
    if huge_pages:
        flags |= OMEN_OPEN_HUGE_PAGES
    if ivf_lists is not None:
        flags |= OMEN_OPEN_IVF
        o.ivf_lists = _u32(ivf_lists, "ivf_lists")
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


class _SearchParams:
    """omen_search_params for one call, with what its pointers point at.

    Used as ``with _SearchParams(...) as p: <C call with p.params>``: the
    packed allow-list and the ctypes callback stay referenced until the C
    call has returned, and an exception raised by the filter callable is
    re-raised on exit.
    """

    def __init__(self, rerank: int, exact: bool, threads: int,
                 filter_ids: Optional[IdsLike], filter: Optional[Predicate],
                 nprobe: int = 0, target_recall: Optional[float] = None,
                 query_threads: int = 0) -> None:
        p = omen_search_params()
        p.struct_size = ctypes.sizeof(omen_search_params)
        p.rerank = int(rerank)
        p.exact = 1 if exact else 0
        p.threads = int(threads)
        p.nprobe = _u32(nprobe, "nprobe")
        p.query_threads = _u32(query_threads, "query_threads")
        # None is the library's 0: its default target. The library checks
        # the range ((0, 1], finite) and says why it refuses.
        p.target_recall = 0.0 if target_recall is None else float(target_recall)
        self.params = p
        self._ids: Any = None
        self._cb: Any = None
        self._errors: List[BaseException] = []
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

            def trampoline(_user: Any, id_ptr: int, id_len: int) -> int:
                if errors:
                    return 0  # the callable raised: keep nothing more
                try:
                    return 1 if filter(ctypes.string_at(id_ptr, id_len)) else 0
                except BaseException as e:  # noqa: BLE001 - re-raised after the call
                    errors.append(e)
                    return 0

            self._cb = FILTER_FN(trampoline)
            p.filter_fn = self._cb

    def __enter__(self) -> _SearchParams:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._cb = self._ids = None
        if self._errors:
            # The callable's own exception says more than the call's status.
            raise self._errors[0]


# -------------------------------------------------------------------- Store


class Store:
    """An open OmenDB store (a directory). Use ``Store.open`` or ``Store.recover``.

    ``with Store.open(...) as s:`` closes the store (which checkpoints) on
    exit. A store that is never closed is freed when it is garbage-collected
    WITHOUT a checkpoint (``close(discard=True)``: no I/O in ``__del__``), with
    a ``ResourceWarning``: reopening finds it as of its last checkpoint, as
    after a crash. Close it, or call ``checkpoint()``, to keep what you wrote.
    """

    __slots__ = ("_h", "_dim", "_dim_c", "_path", "_vec_t", "__weakref__")

    def __init__(self, handle: int, path: str) -> None:
        # Kept as a c_void_p object: ctypes passes it without converting an int.
        self._h: Optional[c_void_p] = c_void_p(handle)
        self._path = path
        self._dim = 0
        self._dim = int(self.stats()["dim"])
        self._vec_t = c_float * self._dim  # output buffer type of get()
        self._dim_c = c_size_t(self._dim)  # pre-converted: one ctypes conversion less per get

    # ---- opening
    @classmethod
    def open(cls, path: Union[str, os.PathLike[str]], dim: int = 0,
             metric: Union[str, int] = "l2", create: bool = False, read_only: bool = False,
             sync_writes: bool = False, drop_raw: bool = False, pq_m: int = 0,
             pq_bits: int = 8, pq_train_size: int = 0, threads: int = 0,
             ivf_lists: Optional[int] = None, huge_pages: bool = False) -> Store:
        """Opens (``create=True``: creates if absent) the store at ``path``.

        ``dim=0`` takes the dimension of an existing store. ``metric``: "l2",
        "ip" or "cosine". ``pq_m`` > 0 sets up Product Quantization
        (``train_pq``, or automatic after ``pq_train_size`` vectors).
        ``ivf_lists`` (with ``pq_m``): an IVF index,
        trained with the PQ codebooks, whose searches scan only the lists
        nearest to the query; ``0`` lets training choose the number of lists
        (about sqrt(n)), ``None`` (the default) builds no index. Creation
        only, as the PQ settings: an existing store keeps its own.
        ``huge_pages`` (OMEN_OPEN_HUGE_PAGES, per open): keep the vectors
        file in 2 MiB pages (padded puts, mappings advised for huge pages):
        faster gets and re-ranks for a store that memory holds, slower
        puts of small batches.
        """
        lib = _L()
        o = _options(dim, metric, create, read_only, sync_writes, drop_raw, pq_m,
                     pq_bits, pq_train_size, threads, ivf_lists, huge_pages)
        h = c_void_p()
        _check(lib.omen_open(os.fsencode(path), byref(o), byref(h)), "omen_open")
        return cls(h.value or 0, os.fspath(path))

    @classmethod
    def recover(cls, path: Union[str, os.PathLike[str]], dim: int = 0,
                metric: Union[str, int] = "l2", create: bool = False, read_only: bool = False,
                sync_writes: bool = False, drop_raw: bool = False, pq_m: int = 0,
                pq_bits: int = 8, pq_train_size: int = 0, threads: int = 0,
                ivf_lists: Optional[int] = None,
                huge_pages: bool = False) -> Tuple[Store, Dict[str, int]]:
        """Opens after verifying every committed checksum; returns (Store,
        report dict). The arguments as for ``open``."""
        lib = _L()
        o = _options(dim, metric, create, read_only, sync_writes, drop_raw, pq_m,
                     pq_bits, pq_train_size, threads, ivf_lists, huge_pages)
        h = c_void_p()
        rep = omen_recovery()
        rep.struct_size = ctypes.sizeof(omen_recovery)
        _check(lib.omen_recover(os.fsencode(path), byref(o), byref(h), byref(rep)),
               "omen_recover")
        report = {
            "checkpoint_seq": int(rep.checkpoint_seq),
            "live_vectors": int(rep.live_vectors),
            "discarded_bytes": int(rep.discarded_bytes),
            "verified_bytes": int(rep.verified_bytes),
        }
        return cls(h.value or 0, os.fspath(path)), report

    def close(self, discard: bool = False) -> None:
        """Checkpoints and frees. Idempotent; the handle is gone even if this raises.

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

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # Garbage collection must not checkpoint (I/O, fsync, an error no one
        # sees, at an unpredictable moment): free as close(discard=True) does,
        # which leaves the files as a crash would, and say so.
        h = getattr(self, "_h", None)  # unset when __init__ failed
        if h is None:
            return
        self._h = None
        try:
            _lib.omen_close_discard(h)
        finally:
            warnings.warn(
                "pyomendb.Store(%r) was never closed: freed without a checkpoint, "
                "what was written since the last checkpoint is dropped" % self._path,
                ResourceWarning,
                source=self,
            )

    @property
    def closed(self) -> bool:
        return self._h is None

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def path(self) -> str:
        return self._path

    @property
    def handle(self) -> int:
        """The raw omen_store* as an int (for calling the C API directly)."""
        return self._handle().value or 0

    def _handle(self) -> c_void_p:
        h = self._h
        if h is None:
            raise ValueError("operation on a closed Store")
        return h

    # ---- writes
    def put(self, ids: IdsLike, vectors: npt.ArrayLike) -> None:
        """Upserts ``len(ids)`` vectors, all or nothing.

        ``ids``: any iterable of str/bytes (a single str/bytes is one ID).
        ``vectors``: (n, dim) array-like (a 1-D vector for one ID); passed in
        place when it is a float32 C-contiguous ndarray, else converted once.
        """
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

    def delete(self, ids: IdsLike) -> int:
        """Deletes IDs; returns how many existed."""
        h = self._handle()
        buf, offs, n = pack_ids(ids)
        out = c_uint64(0)
        if n == 0:
            _check(_lib.omen_delete_batch(h, 0, None, None, byref(out)), "omen_delete_batch")
            return 0
        _check(_lib.omen_delete_batch(h, n, buf, offs.ctypes.data, byref(out)),
               "omen_delete_batch")
        return int(out.value)

    def checkpoint(self) -> int:
        """Makes everything so far durable; returns the checkpoint sequence number."""
        seq = c_uint64(0)
        _check(_lib.omen_checkpoint(self._handle(), byref(seq)), "omen_checkpoint")
        return int(seq.value)

    def compact(self) -> None:
        """Reclaims dead slots. Invalidates search keys (not IDs)."""
        _check(_lib.omen_compact(self._handle()), "omen_compact")

    def train_pq(self, progress: Progress = None) -> None:
        """Trains PQ codebooks and encodes every vector.

        ``progress``: None/False (default) reports nothing; True draws a bar
        (tqdm's when tqdm is installed, else a text bar on stderr); a callable
        gets ``(done, total)``. An exception raised by the callable is
        re-raised after the call returns.
        """
        self._train("omen_train_pq", progress)

    def rebuild_index(self, progress: Progress = None) -> None:
        """Rebuilds the search index (PQ codebooks, IVF centroids and
        calibration, codes) from the raw vectors, as ``train_pq`` does, and
        removes the old or damaged index files: what a store whose index
        ``index_damage()`` reports damaged needs. ``progress`` as for
        ``train_pq``."""
        self._train("omen_rebuild_index", progress)

    def index_damage(self) -> Optional[str]:
        """None when the store's search index is intact (or it has none);
        else what open found damaged (which file, what). Such a store opened
        without its index: every vector is there, searches are exact,
        ``compact`` is refused until ``rebuild_index``."""
        status = _lib.omen_index_status(self._handle())
        if status == OMEN_OK:
            return None
        if status != OMEN_ERR_CORRUPT:
            _check(status, "omen_index_status")  # raises
        message: str = _lib.omen_last_error().decode("utf-8", "replace")
        return message.removeprefix("omen_index_status: ")

    def _train(self, func: str, progress: Progress) -> None:
        h = self._handle()
        call = getattr(_lib, func)
        _with_progress(func, progress, lambda cb: call(h, cb, None))

    # ---- reads
    def get(self, id: IdLike) -> F32Array:
        """The vector of ``id`` (float32, shape (dim,)); OmenError NOT_FOUND if absent."""
        h = self._handle()
        b = id if type(id) is bytes else _id_bytes(id)
        # A ctypes array passes as a pointer with no conversion, and
        # np.frombuffer wraps it without copying: several times cheaper per
        # call than ndarray.ctypes.data.
        buf: Any = self._vec_t()
        st = _lib.omen_get(h, b, len(b), buf, self._dim_c)
        if st:
            _check(st, "omen_get")
        out: F32Array = np.frombuffer(buf, np.float32)
        return out

    def contains(self, id: IdLike) -> bool:
        """Whether the store holds ``id`` (``id in store`` too), without copying its vector."""
        h = self._handle()
        b = id if type(id) is bytes else _id_bytes(id)
        found = c_uint8(0)
        st = _lib.omen_contains(h, b, len(b), byref(found))
        if st:
            _check(st, "omen_contains")
        return found.value == 1

    __contains__ = contains

    def get_batch(self, ids: IdsLike) -> Tuple[F32Array, npt.NDArray[np.bool_]]:
        """(array (n, dim) float32, found bool array (n,)); missing rows are zero."""
        h = self._handle()
        buf, offs, n = pack_ids(ids)
        out = np.zeros((n, self._dim), dtype=np.float32)
        found = np.zeros(n, dtype=np.uint8)
        if n:
            _check(_lib.omen_get_batch(h, n, buf, offs.ctypes.data, out.ctypes.data,
                                       found.ctypes.data), "omen_get_batch")
        return out, found.view(np.bool_)

    def key_id(self, key: int) -> bytes:
        """The ID (bytes) of a search key."""
        p = c_void_p()
        ln = c_size_t()
        _check(_lib.omen_key_id(self._handle(), key, byref(p), byref(ln)), "omen_key_id")
        return ctypes.string_at(p, ln.value) if ln.value else b""

    @overload
    def search(self, query: npt.ArrayLike, k: int, *, rerank: int = ..., exact: bool = ...,
               decode: Literal[False] = ..., filter_ids: Optional[IdsLike] = ...,
               filter: Optional[Predicate] = ..., nprobe: int = ...,
               target_recall: Optional[float] = ..., query_threads: int = ...
               ) -> Tuple[List[bytes], F32Array]: ...

    @overload
    def search(self, query: npt.ArrayLike, k: int, *, rerank: int = ..., exact: bool = ...,
               decode: Literal[True], filter_ids: Optional[IdsLike] = ...,
               filter: Optional[Predicate] = ..., nprobe: int = ...,
               target_recall: Optional[float] = ..., query_threads: int = ...
               ) -> Tuple[List[str], F32Array]: ...

    def search(self, query: npt.ArrayLike, k: int, *, rerank: int = 0, exact: bool = False,
               decode: bool = False, filter_ids: Optional[IdsLike] = None,
               filter: Optional[Predicate] = None, nprobe: int = 0,
               target_recall: Optional[float] = None, query_threads: int = 0) -> Tuple[Any, F32Array]:
        """The ``k`` nearest IDs to ``query``, closest first: (IDs, distances).

        IDs: a list of bytes (str with ``decode=True``); distances: a float32
        array of the same length (fewer than ``k`` when the store or the
        filter allows fewer). One C call (omen_search_ids) finds the hits and
        copies their IDs.

        ``rerank``: PQ candidates re-scored exactly; ``exact``: scan the raw
        vectors. ``filter_ids``: only these IDs (str or bytes) may be hits;
        an empty sequence allows none, None means no list. ``filter``: a
        callable taking an ID (bytes) that returns truthy to keep it; it runs
        on this thread, once per candidate. With both, both must allow. An
        exception raised by ``filter`` ends the filtering (nothing more is
        kept) and is re-raised once the search returns.

        IVF stores (``ivf_lists``): ``target_recall`` is the recall@10 to
        aim at, in (0, 1], as measured at training on the store's own
        vectors (or on the host's queries after ``calibrate``); None (or 0)
        is the default, 0.95; it chooses the lists scanned and (when
        ``rerank`` is 0) the re-rank depth. ``nprobe`` > 0 scans that many
        lists instead (all of them when larger).
        Other stores ignore both (a ``target_recall`` out of range is
        still refused: OmenError INVALID_ARGUMENT).

        ``query_threads`` > 1: up to that many threads (this one among
        them) share the query's own work (the lists, codes or vectors it
        reads and its re-rank), for latency on large stores; a query is
        split only as far as it reads 2 MiB a thread, and its hits are the
        same as on one thread. 0 or 1: one thread; at most 1024.
        """
        h = self._handle()
        q = _as_f32_vector(query, self._dim, "query")
        k = int(k)
        return _one_query(
            k, _SearchParams(rerank, exact, 0, filter_ids, filter, nprobe, target_recall, query_threads),
            "omen_search_ids", decode,
            lambda p, *out: _lib.omen_search_ids(h, _vector_address(q), k, p, *out))

    @overload
    def search_by_id(self, id: IdLike, k: int, *, exclude_self: bool = ..., rerank: int = ...,
                     exact: bool = ..., decode: Literal[False] = ...,
                     filter_ids: Optional[IdsLike] = ..., filter: Optional[Predicate] = ...,
                     nprobe: int = ..., target_recall: Optional[float] = ...,
                     query_threads: int = ...) -> Tuple[List[bytes], F32Array]: ...

    @overload
    def search_by_id(self, id: IdLike, k: int, *, exclude_self: bool = ..., rerank: int = ...,
                     exact: bool = ..., decode: Literal[True],
                     filter_ids: Optional[IdsLike] = ..., filter: Optional[Predicate] = ...,
                     nprobe: int = ..., target_recall: Optional[float] = ...,
                     query_threads: int = ...) -> Tuple[List[str], F32Array]: ...

    def search_by_id(self, id: IdLike, k: int, *, exclude_self: bool = False, rerank: int = 0,
                     exact: bool = False, decode: bool = False,
                     filter_ids: Optional[IdsLike] = None,
                     filter: Optional[Predicate] = None, nprobe: int = 0,
                     target_recall: Optional[float] = None, query_threads: int = 0) -> Tuple[Any, F32Array]:
        """``search`` with the vector stored under ``id`` as the query (as
        ``get`` returns it), in one C call (omen_search_by_id_ids).

        ``exclude_self=True`` leaves ``id``'s own entry out: the ``k``
        nearest others (another ID holding the same vector stays in).
        OmenError NOT_FOUND when the store holds no ``id``. The other
        arguments (``nprobe``, ``target_recall`` and ``query_threads`` too)
        as for ``search``.
        """
        h = self._handle()
        b = _id_bytes(id)
        k = int(k)
        flags = OMEN_SEARCH_EXCLUDE_SELF if exclude_self else 0
        return _one_query(
            k, _SearchParams(rerank, exact, 0, filter_ids, filter, nprobe, target_recall, query_threads),
            "omen_search_by_id_ids", decode, lambda p, *out: _lib.omen_search_by_id_ids(h, b, len(b), k, p, flags, *out))

    @overload
    def search_batch(self, queries: npt.ArrayLike, k: int, *, rerank: int = ...,
                     exact: bool = ..., threads: int = ..., decode: Literal[False] = ...,
                     filter_ids: Optional[IdsLike] = ..., filter: Optional[Predicate] = ...,
                     nprobe: int = ..., target_recall: Optional[float] = ...
                     ) -> Tuple[List[List[bytes]], F32Array]: ...

    @overload
    def search_batch(self, queries: npt.ArrayLike, k: int, *, rerank: int = ...,
                     exact: bool = ..., threads: int = ..., decode: Literal[True],
                     filter_ids: Optional[IdsLike] = ..., filter: Optional[Predicate] = ...,
                     nprobe: int = ..., target_recall: Optional[float] = ...
                     ) -> Tuple[List[List[str]], F32Array]: ...

    def search_batch(self, queries: npt.ArrayLike, k: int, *, rerank: int = 0,
                     exact: bool = False, threads: int = 0, decode: bool = False,
                     filter_ids: Optional[IdsLike] = None,
                     filter: Optional[Predicate] = None, nprobe: int = 0,
                     target_recall: Optional[float] = None, query_threads: int = 0) -> Tuple[Any, F32Array]:
        """The ``k`` nearest IDs to each row of ``queries`` (nq, dim): (IDs, distances).

        IDs: one list per query (bytes, str with ``decode=True``), closest
        first; distances: one (nq, k) float32 array, ``inf`` where a query
        has fewer than ``k`` hits (its ID list is then shorter than ``k``).
        One C call (omen_search_batch_ids) finds every hit and copies its ID.
        ``threads``: 0 = the store's default. ``filter_ids``, ``filter``,
        ``nprobe``, ``target_recall`` and ``query_threads`` (threads sharing
        each query) as for ``search``; ``filter`` is called once per
        candidate for the whole batch, not per query.
        """
        h = self._handle()
        q = _as_f32_matrix(queries, self._dim, "queries")
        nq, k = q.shape[0], int(k)
        hits = np.empty(nq * k, dtype=HIT_DTYPE)
        counts = np.zeros(nq, dtype=np.uintp)  # size_t
        offs = np.zeros(nq * k + 1, dtype=np.uint64)
        raw = b""
        if nq:
            with _SearchParams(rerank, exact, threads, filter_ids, filter, nprobe,
                               target_recall, query_threads) as p:
                raw = _with_id_buffer(nq * k, lambda buf, cap, need: _lib.omen_search_batch_ids(
                    h, nq, q.ctypes.data, k, byref(p.params), hits.ctypes.data, counts.ctypes.data,
                    buf, cap, offs.ctypes.data, need), "omen_search_batch_ids")
        n = counts.tolist()
        o = offs.tolist()
        ids = [_split_ids(raw, o, i * k, n[i], decode) for i in range(nq)]
        dists = hits["distance"].reshape(nq, k).copy()
        dists[np.arange(k) >= counts.astype(np.int64)[:, None]] = np.inf
        return ids, dists

    @overload
    def range_search(self, query: npt.ArrayLike, radius: float, *,
                     max_results: Optional[int] = ..., threads: int = ...,
                     decode: Literal[False] = ..., filter_ids: Optional[IdsLike] = ...,
                     filter: Optional[Predicate] = ...) -> Tuple[List[bytes], F32Array, int]: ...

    @overload
    def range_search(self, query: npt.ArrayLike, radius: float, *,
                     max_results: Optional[int] = ..., threads: int = ...,
                     decode: Literal[True], filter_ids: Optional[IdsLike] = ...,
                     filter: Optional[Predicate] = ...) -> Tuple[List[str], F32Array, int]: ...

    def range_search(self, query: npt.ArrayLike, radius: float, *,
                     max_results: Optional[int] = None, threads: int = 0, decode: bool = False,
                     filter_ids: Optional[IdsLike] = None,
                     filter: Optional[Predicate] = None) -> Tuple[Any, F32Array, int]:
        """Every live vector within distance ``radius`` of ``query`` (distance
        <= radius, in the store's metric as ``search`` reports it):
        (IDs, distances ascending, total).

        Always exact, over the raw vectors (a DROP_RAW store once trained has
        none: OmenError INVALID_ARGUMENT). ``max_results`` keeps the closest
        that many; ``total`` says how many lie within the radius in all
        (more than returned when the cap cut the list; 0 only counts).
        ``max_results=None`` returns them all: when the first call
        (1,024 hits) finds more, it is made again with room for the total,
        a second scan (and a second round of ``filter`` calls). NaN radius:
        INVALID_ARGUMENT; ``inf`` takes every vector. ``threads``,
        ``filter_ids`` and ``filter`` as for ``search_batch``. One C call
        (omen_range_search_ids) finds the hits and copies their IDs.
        """
        h = self._handle()
        q = _as_f32_vector(query, self._dim, "query")
        r = float(radius)
        total = c_uint64(0)
        cap = 1024 if max_results is None else int(max_results)
        while True:
            found, dists = _one_query(
                cap, _SearchParams(0, False, threads, filter_ids, filter), "omen_range_search_ids",
                decode, lambda p, hits, count, *id_out: _lib.omen_range_search_ids(
                    h, _vector_address(q), r, cap, p, hits, count, byref(total), *id_out))
            if max_results is not None or len(found) >= total.value:
                return found, dists, int(total.value)
            cap = int(total.value)  # more than the first call had room for

    # ---- listing
    def cursor(self, *, page_size: int = 1024, vectors: bool = True,
               decode: bool = False) -> Cursor:
        """A ``Cursor`` over the live entries as of now, in pages of at most
        ``page_size``: (IDs, (n, dim) vectors, or None with ``vectors=False``)."""
        return Cursor(self, page_size, vectors, decode)

    def __iter__(self) -> Iterator[bytes]:
        """The live IDs (bytes) as of the call: ``for id in store``."""
        return self.ids()

    @overload
    def ids(self, *, decode: Literal[False] = ..., page_size: int = ...) -> Iterator[bytes]: ...

    @overload
    def ids(self, *, decode: Literal[True], page_size: int = ...) -> Iterator[str]: ...

    def ids(self, *, decode: bool = False, page_size: int = 1024) -> Iterator[Any]:
        """The live IDs as of the call, in slot order, read ``page_size`` at a time
        (one C call a page). Writes during the iteration do not show in it."""
        return _entries(Cursor(self, page_size, False, decode))

    @overload
    def items(self, *, decode: Literal[False] = ...,
              page_size: int = ...) -> Iterator[Tuple[bytes, F32Array]]: ...

    @overload
    def items(self, *, decode: Literal[True],
              page_size: int = ...) -> Iterator[Tuple[str, F32Array]]: ...

    def items(self, *, decode: bool = False, page_size: int = 1024) -> Iterator[Tuple[Any, F32Array]]:
        """(ID, vector) of every live entry as of the call, as ``ids()``;
        each vector is checked against its stored checksum, as ``get`` does.
        A store without raw vectors (``drop_raw``, trained) has IDs only:
        OmenError INVALID_ARGUMENT."""
        return _entries(Cursor(self, page_size, True, decode))

    # ---- info
    def stats(self) -> Dict[str, Any]:
        """The store's omen_stats as a dict (plus "metric_name"); "ivf_lists"
        is the trained IVF index's number of lists (0 without one, or before
        training); "calibration_queries" how many host queries measured the
        calibration in use (``calibrate``; 0 = training's, on the store's own
        vectors); "ivf_stages" how the index searches (1: its lists hold whole
        codes; 2: they hold the first "ivf_list_code_bytes" of each code, and
        stage two ranks the candidates by whole codes; 0 without an index)."""
        s = omen_stats()
        s.struct_size = ctypes.sizeof(omen_stats)
        _check(_L().omen_store_stats(self._handle(), byref(s)), "omen_store_stats")
        names = (f[0] for f in omen_stats._fields_)
        d: Dict[str, Any] = {name: getattr(s, name) for name in names
                             if name not in ("struct_size", "reserved")}
        d["metric_name"] = _METRIC_NAMES.get(d["metric"], "unknown")
        for flag in ("pq_trained", "raw_kept", "drop_raw"):
            d[flag] = bool(d[flag])
        return d

    def explain_search(self, k: int = 10, *, rerank: int = 0, exact: bool = False, nprobe: int = 0,
                       target_recall: Optional[float] = None, filter_ids: Optional[IdsLike] = None,
                       filter: Optional[Predicate] = None) -> Dict[str, Any]:
        """How ``search`` runs a query for ``k`` results with these
        parameters (omen_explain_search), the filter included: a small
        allowed set is searched exactly, a larger one probes more lists
        (``filter`` is called for each live ID, as a search calls it). A dict with
        "method" ("exact", "pq_scan" or "ivf"), "nprobe" (IVF: the lists
        probed; 0 otherwise), "rerank" (candidates re-ranked by exact
        distance, at least k when any; 0 = none) and "calibrated_recall"
        (IVF without ``nprobe``: the recall@10 the calibration measured for
        this setting, on the store's own vectors or, after ``calibrate``, on
        the host's queries, less one standard error; None
        otherwise). Refused as the search would be (exact search of a store
        without raw vectors: OmenError INVALID_ARGUMENT)."""
        h = self._handle()
        k = int(k)
        if k < 0:
            raise ValueError("k must be >= 0, not %d" % k)
        plan = omen_search_plan()
        plan.struct_size = ctypes.sizeof(omen_search_plan)
        with _SearchParams(rerank, exact, 0, filter_ids, filter, nprobe, target_recall) as p:
            _check(_L().omen_explain_search(h, k, byref(p.params), byref(plan)), "omen_explain_search")
        return {
            "method": _SEARCH_METHOD_NAMES.get(plan.method, "unknown"),
            "nprobe": int(plan.nprobe),
            "rerank": int(plan.rerank),
            "calibrated_recall": float(plan.calibrated_recall) if plan.calibrated_recall > 0 else None,
        }

    def calibration(self) -> List[Dict[str, Any]]:
        """The IVF index's calibration (omen_calibration): the settings
        training (or ``calibrate``) measured and kept, cheapest first, each
        a dict of "recall" (recall@10 on the store's own vectors, or on the
        host's queries after ``calibrate``, less one standard error),
        "nprobe", "rerank_per_k" (candidates re-ranked per result; 0 =
        none) and "cost" (bytes a query reads, relative). A target gets the
        first whose recall reaches it. Empty without an IVF index, or where
        training had no raw vectors to measure with. ``stats()``'s
        "calibration_queries" says which measured it."""
        h = self._handle()
        count = c_size_t(0)
        while True:
            cap = count.value
            recall = np.zeros(cap, dtype=np.float32)
            nprobe = np.zeros(cap, dtype=np.uint32)
            per_k = np.zeros(cap, dtype=np.uint32)
            cost = np.zeros(cap, dtype=np.float64)
            ptrs = [a.ctypes.data if cap else None for a in (recall, nprobe, per_k, cost)]
            st = _L().omen_calibration(h, *ptrs, cap, byref(count))
            # Only a training or a calibrate changes it: the next try fits.
            if st == OMEN_ERR_BUFFER_TOO_SMALL and count.value > cap:
                continue
            _check(st, "omen_calibration")
            return [{"recall": float(r), "nprobe": int(n), "rerank_per_k": int(d), "cost": float(c)}
                    for r, n, d, c in zip(recall[:count.value], nprobe, per_k, cost)]

    def calibrate(self, queries: npt.ArrayLike, progress: Progress = None) -> List[Dict[str, Any]]:
        """Measures the IVF index's recall targets on ``queries`` (nq, dim),
        a sample of what this store will be asked (omen_calibrate), instead
        of on the store's own vectors, and commits the result: from then on
        (also after reopening) ``target_recall`` means recall@10 on queries
        like these. For queries unlike the stored vectors (another
        encoder's side of a pair, inner product, queries between the data's
        clusters), where a target measured on stored vectors can deliver
        less. Returns the new calibration, as ``calibration()`` does.

        Each query's exact neighbours are found by an exact scan: a few
        hundred queries measure recall to about 0.01 and take that many
        exact searches' time. ``train_pq`` and ``rebuild_index`` measure on
        stored vectors again; ``compact`` keeps it. Queries as for
        ``search_batch`` (passed in place when C-contiguous float32).
        OmenError INVALID_ARGUMENT for a store without a trained IVF index,
        a ``drop_raw`` store, one of 10 live vectors or fewer, no queries or
        more than 100,000, a value that is not finite; CORRUPT while the
        index is damaged (``rebuild_index`` first); READ_ONLY on a read-only
        store. A refused call leaves the calibration in use as it was.

        ``progress`` as for ``train_pq`` (None/False reports nothing; True
        draws a bar; a callable gets ``(done, total)``): ``total`` is 3 x nq
        (the queries' exact neighbours, then up to two grids measured, a
        query a unit), ``done`` never decreases, the last report has
        ``done == total`` once it has measured (the commit follows). An
        exception raised by the callable is re-raised after the call
        returns: the calibration has run (and, unless the library refused
        it, is committed) by then."""
        h = self._handle()
        q = _as_f32_matrix(queries, self._dim, "queries")
        # No nq == 0 shortcut (search_batch has one): the library refuses it.
        # `q` stays referenced by this frame for the whole C call.
        _with_progress("omen_calibrate", progress,
                       lambda cb: _lib.omen_calibrate(h, q.shape[0], q.ctypes.data, cb, None))
        return self.calibration()

    def __len__(self) -> int:
        """The number of live vectors."""
        return int(self.stats()["live_vectors"])

    def __repr__(self) -> str:
        state = "closed" if self._h is None else "dim=%d" % self._dim
        return "<pyomendb.Store %r %s>" % (self._path, state)


class Cursor:
    """The live entries of a store as of the moment the cursor opened
    (omen_cursor_open): puts, deletes, compactions and trainings after that
    do not show in it, and it does not block them.

    Iterating yields pages ``(ids, vectors)``: a list of at most
    ``page_size`` IDs (bytes, str with ``decode=True``) and their (n, dim)
    float32 vectors, or None when opened with ``vectors=False``; one C call
    a page. ``close()`` (or leaving ``with``, or the end of the iteration)
    frees it; so does garbage collection (memory only, no I/O). After its
    store is closed, the next page raises OmenError INVALID_ARGUMENT.
    Threads that share a cursor take turns (the C cursor allows one at a
    time).
    """

    __slots__ = ("_c", "_lock", "_store", "_page", "_vectors", "_decode", "_ids", "_offs")

    def __init__(self, store: Store, page_size: int = 1024, vectors: bool = True,
                 decode: bool = False) -> None:
        self._c: Optional[c_void_p] = None
        page = int(page_size)
        if page < 1:
            raise ValueError("page_size must be at least 1, not %d" % page)
        c = c_void_p()
        _check(_lib.omen_cursor_open(store._handle(), byref(c)), "omen_cursor_open")
        self._c = c
        self._lock = threading.Lock()  # ctypes lets go of the GIL during a call
        self._store, self._page, self._vectors, self._decode = store, page, vectors, decode
        # OMEN_MAX_ID_LEN bytes always hold one ID: a page never fails for lack
        # of room, it only stops early.
        self._ids = np.empty(max(MAX_ID_LEN, page * _ID_BYTES_GUESS), dtype=np.uint8)
        self._offs = np.empty(page + 1, dtype=np.uint64)

    def __iter__(self) -> Cursor:
        return self

    def __next__(self) -> Tuple[List[Any], Optional[F32Array]]:
        with self._lock:
            c = self._c
            if c is None:
                raise StopIteration
            vecs = np.empty((self._page, self._store.dim), dtype=np.float32) if self._vectors else None
            n = c_size_t(0)
            _check(_lib.omen_cursor_next(c, self._page, self._ids.ctypes.data, self._ids.size,
                                         self._offs.ctypes.data,
                                         None if vecs is None else vecs.ctypes.data, byref(n)),
                   "omen_cursor_next")
            count = n.value
            if count == 0:
                self._c = None
                _lib.omen_cursor_close(c)
                raise StopIteration
            raw = self._ids[: int(self._offs[count])].tobytes()
            ids = _split_ids(raw, self._offs[: count + 1].tolist(), 0, count, self._decode)
        return ids, None if vecs is None else vecs[:count]

    def close(self) -> None:
        """Frees the cursor. Idempotent."""
        with self._lock:
            c, self._c = self._c, None
            if c is not None:
                _lib.omen_cursor_close(c)

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()

    def __del__(self) -> None:
        c = getattr(self, "_c", None)  # unset when __init__ failed
        if c is not None:
            self._c = None
            _lib.omen_cursor_close(c)  # frees memory; touches no file


def _entries(cursor: Cursor) -> Iterator[Any]:
    """One entry at a time from ``cursor``'s pages: the ID, or (ID, vector)
    when it reads vectors. The cursor is already open (the snapshot is the
    caller's moment, not the first ``next``) and is closed at the end, or
    when the iterator is closed or collected."""
    with cursor:
        for ids, vectors in cursor:
            if vectors is None:
                yield from ids
            else:
                yield from zip(ids, vectors)
