# OmenDB for Mojo (tested with Mojo 1.2.0 from PyPI): the package
# `omendb` (this directory). Import it from source (`-I bindings/mojo`) or
# precompiled (`mojo precompile bindings/mojo/omendb -o omendb.mojoc`, then
# `-I <dir of omendb.mojoc>`).
#
# Calls libomendb.so through `external_call`, so programs importing this
# package must be linked with the library:
#
#   mojo run|build -I bindings/mojo \
#     -Xlinker -L<libdir> -Xlinker -lomendb -Xlinker -rpath -Xlinker <libdir> app.mojo
#
# Buffers are handed to the library in place (`List.unsafe_ptr()`); no vector
# is copied on the way in. C structs are laid out by hand in List[UInt32] /
# List[UInt64] words, matching include/omendb.h exactly, so this module does
# not depend on how Mojo lays out its own structs.
#
# The handle is kept as an Int (an omen_store* address): the pointer types of
# Mojo change between releases, the C ABI does not.

from std.ffi import external_call, c_size_t
from std.memory import bitcast

comptime OMEN_OK = 0
comptime OMEN_ERR_INVALID_ARGUMENT = 1
comptime OMEN_ERR_DIMENSION = 2
comptime OMEN_ERR_NOT_FOUND = 3
comptime OMEN_ERR_IO = 4
comptime OMEN_ERR_CORRUPT = 5
comptime OMEN_ERR_LOCKED = 6
comptime OMEN_ERR_VERSION = 7
comptime OMEN_ERR_READ_ONLY = 8
comptime OMEN_ERR_NOT_TRAINED = 9
comptime OMEN_ERR_BUFFER_TOO_SMALL = 10
comptime OMEN_ERR_INTERNAL = 11

comptime OMEN_OPEN_CREATE = 1
comptime OMEN_OPEN_READ_ONLY = 2
comptime OMEN_OPEN_SYNC_WRITES = 4
comptime OMEN_OPEN_DROP_RAW = 8
comptime OMEN_OPEN_HUGE_PAGES = 16
comptime OMEN_OPEN_IVF = 32

comptime OMEN_SEARCH_EXCLUDE_SELF = 1

comptime METRIC_L2 = 0
comptime METRIC_IP = 1
comptime METRIC_COSINE = 2

comptime SIZEOF_OPTIONS = 36
comptime SIZEOF_STATS = 112
comptime SIZEOF_RECOVERY = 40
comptime SIZEOF_SEARCH_PARAMS = 72
comptime SIZEOF_SEARCH_PLAN = 20
# omen_search_plan.method
comptime OMEN_SEARCH_METHOD_EXACT = 0
comptime OMEN_SEARCH_METHOD_PQ_SCAN = 1
comptime OMEN_SEARCH_METHOD_IVF = 2
comptime SIZEOF_HIT = 16

comptime CStr = Pointer[UInt8, ImmutAnyOrigin]


def _c_string(p: CStr) -> String:
    var n = external_call["strlen", Int](p)
    if n == 0:
        return String("")
    return String(StringSlice(unsafe_from_utf8=Span(unsafe_ptr=p, length=n)))


def version() -> String:
    return _c_string(external_call["omen_version", CStr]())


def status_name(status: Int) -> String:
    return _c_string(external_call["omen_status_name", CStr](Int32(status)))


def last_error() -> String:
    return _c_string(external_call["omen_last_error", CStr]())


def _check(st: Int32, op: String) raises:
    """Raise "NAME (status): message [op]" for a failed call."""
    if st != 0:
        var s = Int(st)
        raise Error(
            status_name(s) + " (" + String(s) + "): " + last_error() + " [" + op + "]"
        )


def _wrapper_error(status: Int, msg: String, op: String) raises:
    raise Error(status_name(status) + " (" + String(status) + "): " + msg + " [" + op + "]")


def _u32(v: Int, what: String, op: String) raises -> UInt32:
    """`v` as a uint32_t field, refused when out of range (UInt32(v) would
    wrap -1 to 4294967295)."""
    if v < 0 or v > 0xFFFFFFFF:
        _wrapper_error(
            OMEN_ERR_INVALID_ARGUMENT, what + " must be in 0..4294967295, not " + String(v), op
        )
    return UInt32(v)


def error_status(e: Error) -> Int:
    """The omen_status in an error raised by this module, or -1."""
    var s = String(e)
    for i in range(12):
        if s.startswith(status_name(i) + " ("):
            return i
    return -1


@fieldwise_init
struct Options(Copyable, Movable):
    var create: Bool
    var read_only: Bool
    var sync_writes: Bool
    var drop_raw: Bool
    # Keeps the vectors file in 2 MiB pages (OMEN_OPEN_HUGE_PAGES, per
    # open): padded puts, mappings advised for huge pages. Faster gets and
    # re-ranks for a store that memory holds; slower small puts.
    var huge_pages: Bool
    var dim: Int
    var metric: Int
    var pq_m: Int
    var pq_bits: Int
    var pq_train_size: Int
    var threads: Int
    # An IVF index, built when PQ is trained (OMEN_OPEN_IVF; creation only,
    # needs pq_m, not with drop_raw): searches then scan only the lists
    # nearest to the query (`target_recall`, `nprobe`).
    var ivf: Bool
    # With `ivf`: the number of lists; 0 = chosen at training (about
    # sqrt(n), at most n/64). Without `ivf` it must be 0.
    var ivf_lists: Int

    def __init__(out self):
        self.create = False
        self.read_only = False
        self.sync_writes = False
        self.drop_raw = False
        self.huge_pages = False
        self.dim = 0
        self.metric = METRIC_L2
        self.pq_m = 0
        self.pq_bits = 8
        self.pq_train_size = 0
        self.threads = 0
        self.ivf = False
        self.ivf_lists = 0

    def words(self) raises -> List[UInt32]:
        """The omen_options struct as 9 uint32 words. Refuses ivf_lists
        without ivf, which the library would ignore (no index, silently)."""
        if self.ivf_lists != 0 and not self.ivf:
            _wrapper_error(
                OMEN_ERR_INVALID_ARGUMENT,
                "ivf_lists is " + String(self.ivf_lists) + " but ivf is False: set ivf to build the index",
                "omen_open",
            )
        var w = List[UInt32](length=9, fill=0)
        external_call["omen_options_default", NoneType](w.unsafe_ptr())
        var flags = 0
        if self.create:
            flags |= OMEN_OPEN_CREATE
        if self.read_only:
            flags |= OMEN_OPEN_READ_ONLY
        if self.sync_writes:
            flags |= OMEN_OPEN_SYNC_WRITES
        if self.drop_raw:
            flags |= OMEN_OPEN_DROP_RAW
        if self.huge_pages:
            flags |= OMEN_OPEN_HUGE_PAGES
        if self.ivf:
            flags |= OMEN_OPEN_IVF
        w[0] = UInt32(SIZEOF_OPTIONS)
        w[1] = UInt32(flags)
        w[2] = UInt32(self.dim)
        w[3] = UInt32(self.metric)
        w[4] = UInt32(self.pq_m)
        w[5] = UInt32(self.pq_bits)
        w[6] = UInt32(self.pq_train_size)
        w[7] = UInt32(self.threads)
        w[8] = _u32(self.ivf_lists, "ivf_lists", "omen_open")
        return w^


@fieldwise_init
struct Stats(Copyable, Movable, Writable):
    var dim: Int
    var metric: Int
    var pq_m: Int
    var pq_trained: Bool
    var raw_kept: Bool
    var live_vectors: UInt64
    var dead_slots: UInt64
    var checkpoint_seq: UInt64
    var disk_bytes: UInt64
    var payload_bytes: UInt64
    var heap_bytes: UInt64
    var pq_bits: Int
    var pq_train_size: Int
    var drop_raw: Bool
    var ivf_lists: Int  # lists of the trained IVF index; 0 without one or before training
    # OMEN_ERR_CORRUPT while the search index open found damaged is not
    # rebuilt (`Store.index_damage` says what; pq_trained is then False); 0
    # otherwise.
    var index_status: Int
    # How many host queries measured the IVF calibration in use
    # (`Store.calibrate`); 0 = training's, on the store's own vectors.
    var calibration_queries: Int
    # How the trained IVF index searches: 1 (its lists hold whole codes),
    # 2 (they hold each code's first ivf_list_code_bytes; stage two ranks
    # the candidates by whole codes); 0 without one.
    var ivf_stages: Int
    var ivf_list_code_bytes: Int  # bytes of each code the IVF lists hold; 0 without an index

    def write_to(self, mut writer: Some[Writer]):
        writer.write(
            "Stats(dim=", self.dim, ", metric=", self.metric, ", pq_m=", self.pq_m,
            ", pq_trained=", self.pq_trained, ", raw_kept=", self.raw_kept,
            ", live=", self.live_vectors, ", dead=", self.dead_slots,
            ", seq=", self.checkpoint_seq, ", disk=", self.disk_bytes,
            ", payload=", self.payload_bytes, ", heap=", self.heap_bytes,
            ", pq_bits=", self.pq_bits, ", pq_train_size=", self.pq_train_size,
            ", drop_raw=", self.drop_raw, ", ivf_lists=", self.ivf_lists,
            ", index_status=", self.index_status,
            ", calibration_queries=", self.calibration_queries,
            ", ivf_stages=", self.ivf_stages, ", ivf_list_code_bytes=", self.ivf_list_code_bytes, ")",
        )


@fieldwise_init
struct SearchPlan(Copyable, Movable, Writable):
    """How a search runs: omen_search_plan (Store.explain_search)."""
    var method: Int  # OMEN_SEARCH_METHOD_EXACT, _PQ_SCAN or _IVF
    var nprobe: Int  # IVF: the lists probed a query; 0 otherwise
    # Candidates whose exact distances rank the results (at least k when
    # any); 0 = the codes' order alone, or an exact search.
    var rerank: Int
    # IVF without nprobe: the recall@10 the calibration measured for this
    # setting (training's on the store's own vectors, or Store.calibrate's
    # on the host's queries), less one standard error; 0 otherwise.
    var calibrated_recall: Float32

    def write_to(self, mut writer: Some[Writer]):
        writer.write(
            "SearchPlan(method=", self.method, ", nprobe=", self.nprobe, ", rerank=", self.rerank,
            ", calibrated_recall=", self.calibrated_recall, ")",
        )


@fieldwise_init
struct CalibrationPoint(Copyable, Movable):
    """One setting of omen_calibration (Store.calibration)."""
    # recall@10 on the store's own vectors (or on the host's queries after
    # Store.calibrate), less one standard error
    var recall: Float32
    var nprobe: Int
    var rerank_per_k: Int  # candidates re-ranked per result; 0 = none
    var cost: Float64  # bytes a query reads, relative


@fieldwise_init
struct RecoveryReport(Copyable, Movable):
    var checkpoint_seq: UInt64
    var live_vectors: UInt64
    var discarded_bytes: UInt64
    var verified_bytes: UInt64

    def __init__(out self):
        self.checkpoint_seq = 0
        self.live_vectors = 0
        self.discarded_bytes = 0
        self.verified_bytes = 0


@fieldwise_init
struct Hit(Copyable, Movable, Writable):
    var id: String
    var key: UInt64
    var distance: Float32

    def write_to(self, mut writer: Some[Writer]):
        writer.write("Hit(", self.id, ", ", self.distance, ")")


struct IdBatch(Movable, Sized):
    """IDs packed Arrow-style: one byte buffer and n+1 uint64 offsets."""

    var buf: List[UInt8]
    var offsets: List[UInt64]

    def __init__(out self, ids: List[String]):
        var total = 0
        for i in range(len(ids)):
            total += ids[i].byte_length()
        self.buf = List[UInt8](capacity=total + 1)
        self.offsets = List[UInt64](capacity=len(ids) + 1)
        self.offsets.append(0)
        for i in range(len(ids)):
            self.buf.extend(ids[i].as_bytes())
            self.offsets.append(UInt64(len(self.buf)))

    def __len__(self) -> Int:
        return len(self.offsets) - 1


comptime FilterFn = def(String) thin -> Bool
"""A search filter's predicate on the ID: True keeps it. A plain (thin,
non-capturing, non-raising) function."""


def _allow_all(id: String) -> Bool:
    return True


struct Filter(Movable):
    """What a search may return: an allow-list of IDs, a predicate on the
    ID, both (both must allow) or neither (`Filter()`, no filter).

    An empty allow-list allows nothing; listed IDs the store lacks are
    ignored. The predicate runs on the searching thread, once per candidate
    per call (per search_batch, not per query), with no lock of the store
    held."""

    var ids: IdBatch
    var has_ids: Bool
    var pred: FilterFn
    var has_pred: Bool

    def __init__(out self):
        self.ids = IdBatch(List[String]())
        self.has_ids = False
        self.pred = _allow_all
        self.has_pred = False

    def __init__(out self, ids: List[String]):
        self.ids = IdBatch(ids)
        self.has_ids = True
        self.pred = _allow_all
        self.has_pred = False

    def __init__(out self, pred: FilterFn):
        self.ids = IdBatch(List[String]())
        self.has_ids = False
        self.pred = pred
        self.has_pred = True

    def __init__(out self, ids: List[String], pred: FilterFn):
        self.ids = IdBatch(ids)
        self.has_ids = True
        self.pred = pred
        self.has_pred = True


def _filter_cb(user: Int, id: Int, id_len: Int) abi("C") -> Int32:
    # omen_filter_fn: `user` is the address of the search's Filter.
    var f = Pointer[Filter, ImmutAnyOrigin](unsafe_from_address=user)
    var p = Pointer[UInt8, ImmutAnyOrigin](unsafe_from_address=id)
    var s = String(StringSlice(unsafe_from_utf8=Span(unsafe_ptr=p, length=id_len)))
    return 1 if f[].pred(s) else 0


struct Progress(Movable):
    """What the progress callback of one omen_train_pq, omen_rebuild_index
    or omen_calibrate run saw."""

    var calls: Int
    var first_total: UInt64
    var last_done: UInt64
    var last_total: UInt64
    var monotone: Bool  # done never decreased
    var total_fixed: Bool  # total never changed
    var show: Bool
    var last_pct: Int
    var label: String  # the bar's name

    def __init__(out self, show: Bool, label: String = "train_pq"):
        self.calls = 0
        self.first_total = 0
        self.last_done = 0
        self.last_total = 0
        self.monotone = True
        self.total_fixed = True
        self.show = show
        self.last_pct = -1
        self.label = label

    def record(mut self, done: UInt64, total: UInt64):
        if self.calls == 0:
            self.first_total = total
        elif done < self.last_done:
            self.monotone = False
        if total != self.first_total:
            self.total_fixed = False
        self.calls += 1
        self.last_done = done
        self.last_total = total
        if self.show:
            var pct = 100 if total == 0 else Int(done * 100 // total)
            if pct != self.last_pct or done == total:
                self.last_pct = pct
                var bar = String()
                for i in range(40):
                    bar += "#" if i < pct * 40 // 100 else "."
                print("\r" + self.label + " [" + bar + "] " + String(pct) + "% (" + String(done) + "/"
                      + String(total) + ")", end="\n" if done >= total else "")

    def finished(self) -> Bool:
        """The last call had done == total."""
        return self.calls > 0 and self.last_done == self.last_total


def _progress_cb(user: Int, done: UInt64, total: UInt64) abi("C"):
    # omen_progress_fn: `user` is the address of the Progress of this run.
    var p = Pointer[Progress, MutAnyOrigin](unsafe_from_address=user)
    p[].record(done, total)


comptime _SEARCH = 0
comptime _BATCH = 1
comptime _BY_ID = 2
comptime _RANGE = 3


def _search_op(kind: Int) -> String:
    """The C function a search of `kind` calls (for error messages)."""
    if kind == _SEARCH:
        return "omen_search_ids"
    if kind == _BATCH:
        return "omen_search_batch_ids"
    return "omen_search_by_id_ids" if kind == _BY_ID else "omen_range_search_ids"


def _id_at(buf: List[UInt8], offs: List[UInt64], i: Int) -> String:
    """ID i of an Arrow-style buffer: buf[offs[i] .. offs[i+1]]."""
    var start = Int(offs[i])
    return String(StringSlice(unsafe_from_utf8=Span(
        unsafe_ptr=buf.unsafe_ptr().unsafe_offset(start), length=Int(offs[i + 1]) - start)))


struct Found(Movable):
    """What a search found: one list of hits per query, and for
    `range_search` how many vectors lie within the radius in all."""

    var rows: List[List[Hit]]
    var total: UInt64

    def __init__(out self, var rows: List[List[Hit]], total: UInt64):
        self.rows = rows^
        self.total = total


struct Cursor(Movable):
    """The live (ID, vector) pairs of a store as of the moment
    `Store.cursor()` was called, in slot order: later puts, deletes and
    compactions do not show, and no batch is ever half in it. Read pages
    with `next` until it returns no IDs; its destructor (or `close`) frees
    it. Once the store is closed, `next` raises OMEN_ERR_INVALID_ARGUMENT."""

    var _h: Int  # omen_cursor*; 0 once closed
    var dim: Int
    var _ids: List[UInt8]
    var _offs: List[UInt64]

    def __init__(out self, handle: Int, dim: Int):
        self._h = handle
        self.dim = dim
        self._ids = List[UInt8]()
        self._offs = List[UInt64]()

    def __deinit__(deinit self):
        if self._h != 0:
            external_call["omen_cursor_close", NoneType](self._h)

    def close(mut self):
        """Free the cursor now (a second close does nothing)."""
        var h = self._h
        self._h = 0
        if h != 0:
            external_call["omen_cursor_close", NoneType](h)

    def next(mut self, max: Int, mut vectors: List[Float32], with_vectors: Bool = True) raises -> List[String]:
        """The next at most `max` (>= 1) IDs; no IDs means the end. With
        `with_vectors`, `vectors` gets their vectors (len(ids)*dim floats,
        checked against their checksums); a trained drop_raw store lists
        IDs only (with_vectors=False)."""
        if self._h == 0:
            _wrapper_error(OMEN_ERR_INVALID_ARGUMENT, "cursor is closed", "omen_cursor_next")
        if max < 1:
            _wrapper_error(OMEN_ERR_INVALID_ARGUMENT, "max must be at least 1", "omen_cursor_next")
        if len(self._offs) < max + 1:
            self._offs = List[UInt64](length=max + 1, fill=0)
        if len(self._ids) < max * 32:
            self._ids = List[UInt8](length=max * 32, fill=0)
        vectors = List[Float32](length=max * self.dim if with_vectors else 0, fill=0)
        var vp = Int(vectors.unsafe_ptr()) if with_vectors else 0
        var n: List[Int] = [0]
        while True:
            var st = external_call["omen_cursor_next", Int32](
                self._h, c_size_t(max), self._ids.unsafe_ptr(), c_size_t(len(self._ids)),
                self._offs.unsafe_ptr(), vp, n.unsafe_ptr(),
            )
            if st == OMEN_ERR_BUFFER_TOO_SMALL and Int(self._offs[1]) > len(self._ids):
                # The next ID is longer than the room: grow it, again.
                self._ids = List[UInt8](length=Int(self._offs[1]), fill=0)
                continue
            _check(st, "omen_cursor_next")
            break
        var ids = List[String](capacity=n[0])
        for i in range(n[0]):
            ids.append(_id_at(self._ids, self._offs, i))
        if with_vectors:
            vectors.resize(n[0] * self.dim, 0)
        return ids^


struct Store(Movable):
    """An open OmenDB store; closed (checkpointed) by its destructor.

    Mojo 1.2.0 names the destructor `__deinit__` (`__del__` is deprecated)."""

    var _h: Int  # omen_store*; 0 once closed
    var dim: Int

    def __init__(out self, handle: Int):
        self._h = handle
        self.dim = 0

    @staticmethod
    def open(path: String, opts: Options) raises -> Store:
        var p = path.copy()
        var w = opts.words()
        var out: List[Int] = [0]
        _check(
            external_call["omen_open", Int32](
                p.as_c_string_span().ptr(), w.unsafe_ptr(), out.unsafe_ptr()
            ),
            "omen_open",
        )
        var s = Store(out[0])
        s.dim = s.stats().dim
        return s^

    @staticmethod
    def recover(path: String, opts: Options, mut report: RecoveryReport) raises -> Store:
        """Verify every committed checksum, then open; fills `report`."""
        var p = path.copy()
        var w = opts.words()
        var out: List[Int] = [0]
        var r = List[UInt64](length=5, fill=0)
        r[0] = UInt64(SIZEOF_RECOVERY)
        _check(
            external_call["omen_recover", Int32](
                p.as_c_string_span().ptr(), w.unsafe_ptr(), out.unsafe_ptr(), r.unsafe_ptr()
            ),
            "omen_recover",
        )
        report = RecoveryReport(r[1], r[2], r[3], r[4])
        var s = Store(out[0])
        s.dim = s.stats().dim
        return s^

    def __deinit__(deinit self):
        if self._h != 0:
            _ = external_call["omen_close", Int32](self._h)

    def close(mut self) raises:
        """Checkpoint and free now (instead of at end of scope) and see errors."""
        var h = self._h
        self._h = 0
        if h != 0:
            _check(external_call["omen_close", Int32](h), "omen_close")

    def close_discard(mut self) raises:
        """Free now without checkpointing: puts and deletes since the last
        checkpoint are dropped (reopening finds the store as of its last
        checkpoint), and the writer lock is released at once."""
        var h = self._h
        self._h = 0
        if h != 0:
            _check(external_call["omen_close_discard", Int32](h), "omen_close_discard")

    def _handle(self, op: String) raises -> Int:
        if self._h == 0:
            _wrapper_error(OMEN_ERR_INVALID_ARGUMENT, "store is closed", op)
        return self._h

    # ---- writes

    def put(mut self, ids: List[String], vectors: List[Float32]) raises:
        """Upsert len(ids) vectors; `vectors` is len(ids)*dim floats, read in place."""
        var b = IdBatch(ids)
        self.put_packed(b, vectors)

    def put_packed(mut self, ids: IdBatch, vectors: List[Float32]) raises:
        var h = self._handle("omen_put_batch")
        var n = len(ids)
        if len(vectors) != n * self.dim:
            _wrapper_error(
                OMEN_ERR_DIMENSION,
                String(n) + " ids need " + String(n * self.dim) + " floats, got "
                + String(len(vectors)),
                "omen_put_batch",
            )
        _check(
            external_call["omen_put_batch", Int32](
                h, c_size_t(n), ids.buf.unsafe_ptr(), ids.offsets.unsafe_ptr(),
                vectors.unsafe_ptr(),
            ),
            "omen_put_batch",
        )

    def delete(mut self, ids: List[String]) raises -> Int:
        var h = self._handle("omen_delete_batch")
        var b = IdBatch(ids)
        var out: List[UInt64] = [0]
        _check(
            external_call["omen_delete_batch", Int32](
                h, c_size_t(len(b)), b.buf.unsafe_ptr(), b.offsets.unsafe_ptr(),
                out.unsafe_ptr(),
            ),
            "omen_delete_batch",
        )
        return Int(out[0])

    def checkpoint(mut self) raises -> UInt64:
        var h = self._handle("omen_checkpoint")
        var out: List[UInt64] = [0]
        _check(external_call["omen_checkpoint", Int32](h, out.unsafe_ptr()), "omen_checkpoint")
        return out[0]

    def compact(mut self) raises:
        var h = self._handle("omen_compact")
        _check(external_call["omen_compact", Int32](h), "omen_compact")

    def train_pq(mut self, show_progress: Bool = True) raises -> Progress:
        """Train PQ codebooks and encode every vector.

        The library reports progress through a C callback (a Mojo `def` with
        `abi("C")`); the returned Progress says what it saw, and with
        `show_progress` a bar is drawn on stdout.
        """
        return self._train("omen_train_pq", show_progress)

    def rebuild_index(mut self, show_progress: Bool = True) raises -> Progress:
        """Rebuild the search index (PQ codebooks, IVF centroids and
        calibration, codes) from the raw vectors, as `train_pq` does, and
        remove the old or damaged index files: what a store whose index
        `index_damage()` reports damaged needs. Progress as for `train_pq`.
        OMEN_ERR_INVALID_ARGUMENT for a store without PQ settings or one
        whose raw vectors drop_raw dropped."""
        return self._train("omen_rebuild_index", show_progress)

    def _train(mut self, op: String, show_progress: Bool) raises -> Progress:
        """omen_train_pq or omen_rebuild_index (`op`), which take the same
        arguments, with the progress callback."""
        var h = self._handle(op)
        var p = Progress(show_progress, String(op[byte=5:]))
        var user = Int(Pointer(to=p))
        var st: Int32
        if op == "omen_rebuild_index":
            st = external_call["omen_rebuild_index", Int32](h, _progress_cb, user)
        else:
            st = external_call["omen_train_pq", Int32](h, _progress_cb, user)
        _check(st, op)
        return p^

    def index_damage(self) raises -> Optional[String]:
        """None when the store's search index is intact (or it has none);
        else what open found damaged (which file, what). Such a store opened
        without its index: every vector is there, searches are exact scans,
        `compact` is refused (OMEN_ERR_CORRUPT) until `rebuild_index`."""
        var h = self._handle("omen_index_status")
        var st = external_call["omen_index_status", Int32](h)
        if st == OMEN_OK:
            return None
        if st != OMEN_ERR_CORRUPT:
            _check(st, "omen_index_status")
        var msg = last_error()
        var prefix = "omen_index_status: "
        if msg.startswith(prefix):
            return String(msg[byte=prefix.byte_length():])
        return msg

    # ---- reads

    def get(self, id: String) raises -> List[Float32]:
        var out = List[Float32](length=self.dim, fill=0)
        self.get_into(id, out)
        return out^

    def get_into(self, id: String, mut out: List[Float32]) raises:
        """Write the vector of `id` into `out` (len >= dim): no allocation."""
        var h = self._handle("omen_get")
        _check(
            external_call["omen_get", Int32](
                h, id.unsafe_ptr(), c_size_t(id.byte_length()), out.unsafe_ptr(),
                c_size_t(len(out)),
            ),
            "omen_get",
        )

    def contains(self, id: String) raises -> Bool:
        """Whether the store holds `id`, without copying its vector."""
        var h = self._handle("omen_contains")
        var found: List[UInt8] = [0]
        _check(
            external_call["omen_contains", Int32](
                h, id.unsafe_ptr(), c_size_t(id.byte_length()), found.unsafe_ptr()
            ),
            "omen_contains",
        )
        return found[0] == 1

    def get_batch(self, ids: List[String], mut found: List[Bool]) raises -> List[Float32]:
        """Return len(ids)*dim floats (missing rows zero); found[i] tells which exist."""
        var h = self._handle("omen_get_batch")
        var b = IdBatch(ids)
        var n = len(b)
        var out = List[Float32](length=n * self.dim, fill=0)
        var f = List[UInt8](length=n + 1, fill=0)
        if n > 0:
            _check(
                external_call["omen_get_batch", Int32](
                    h, c_size_t(n), b.buf.unsafe_ptr(), b.offsets.unsafe_ptr(),
                    out.unsafe_ptr(), f.unsafe_ptr(),
                ),
                "omen_get_batch",
            )
        found = List[Bool](capacity=n)
        for i in range(n):
            found.append(f[i] != 0)
        return out^

    def _params(
        self, rerank: Int, exact: Bool, threads: Int, filter: Filter, op: String,
        nprobe: Int = 0, target_recall: Float32 = 0, query_threads: Int = 0,
    ) raises -> List[UInt64]:
        """omen_search_params as 9 uint64 words: 4 x uint32, filter_n, then
        the pointers filter_ids, filter_id_offsets, filter_fn, filter_user,
        which point into `filter`: it must outlive the call; then nprobe and
        target_recall (uint32, float); last query_threads (uint32, padded).
        The library checks target_recall and query_threads' range."""
        var p = List[UInt64](length=9, fill=0)
        p[0] = UInt64(SIZEOF_SEARCH_PARAMS) | (UInt64(rerank) << 32)
        p[1] = UInt64(1 if exact else 0) | (UInt64(threads) << 32)
        p[7] = UInt64(_u32(nprobe, "nprobe", op)) | (
            UInt64(bitcast[DType.uint32](target_recall)) << 32
        )
        p[8] = UInt64(_u32(query_threads, "query_threads", op))
        if filter.has_ids:
            p[2] = UInt64(len(filter.ids))
            p[3] = UInt64(Int(filter.ids.buf.unsafe_ptr()))
            p[4] = UInt64(Int(filter.ids.offsets.unsafe_ptr()))
        if filter.has_pred:
            var cb = _filter_cb
            p[5] = UInt64(Pointer(to=cb).unsafe_bitcast[Int]()[])
            p[6] = UInt64(Int(Pointer(to=filter)))
        return p^

    def _search(
        self, h: Int, kind: Int, nq: Int, queries: List[Float32], k: Int, p: List[UInt64],
        id: String = "", flags: Int = 0, radius: Float32 = 0,
    ) raises -> Found:
        """One of the searches that write their hits' IDs, by `kind`:
        _SEARCH (omen_search_ids), _BATCH (omen_search_batch_ids, nq
        queries), _BY_ID (omen_search_by_id_ids with `id` and `flags`) or
        _RANGE (omen_range_search_ids with `radius`, k = the cap): the hits
        and their IDs from one call, retried with the size the library
        reports when the IDs outgrow the first guess (32 bytes a hit)."""
        var rows = nq if kind == _BATCH else 1
        # omen_hit = { uint64 key; float distance; uint32 reserved } = 2 words.
        var words = List[UInt64](length=2 * rows * k + 2, fill=0)
        var counts = List[Int](length=rows, fill=0)
        var offs = List[UInt64](length=rows * k + 1, fill=0)
        var need: List[Int] = [0]
        var total: List[UInt64] = [0]
        var cap = rows * k * 32
        var buf = List[UInt8](length=cap + 1, fill=0)
        while True:
            var st: Int32
            if kind == _SEARCH:
                st = external_call["omen_search_ids", Int32](
                    h, queries.unsafe_ptr(), c_size_t(k), p.unsafe_ptr(), words.unsafe_ptr(),
                    counts.unsafe_ptr(), buf.unsafe_ptr(), c_size_t(cap), offs.unsafe_ptr(),
                    need.unsafe_ptr(),
                )
            elif kind == _BATCH:
                st = external_call["omen_search_batch_ids", Int32](
                    h, c_size_t(nq), queries.unsafe_ptr(), c_size_t(k), p.unsafe_ptr(),
                    words.unsafe_ptr(), counts.unsafe_ptr(), buf.unsafe_ptr(), c_size_t(cap),
                    offs.unsafe_ptr(), need.unsafe_ptr(),
                )
            elif kind == _BY_ID:
                st = external_call["omen_search_by_id_ids", Int32](
                    h, id.unsafe_ptr(), c_size_t(id.byte_length()), c_size_t(k), p.unsafe_ptr(),
                    UInt32(flags), words.unsafe_ptr(), counts.unsafe_ptr(), buf.unsafe_ptr(),
                    c_size_t(cap), offs.unsafe_ptr(), need.unsafe_ptr(),
                )
            else:
                st = external_call["omen_range_search_ids", Int32](
                    h, queries.unsafe_ptr(), radius, c_size_t(k), p.unsafe_ptr(), words.unsafe_ptr(),
                    counts.unsafe_ptr(), total.unsafe_ptr(), buf.unsafe_ptr(), c_size_t(cap),
                    offs.unsafe_ptr(), need.unsafe_ptr(),
                )
            if st == OMEN_ERR_BUFFER_TOO_SMALL and need[0] > cap:
                cap = need[0]
                buf = List[UInt8](length=cap + 1, fill=0)
                continue
            _check(st, _search_op(kind))
            break
        var out = List[List[Hit]](capacity=rows)
        for r in range(rows):
            var hits = List[Hit](capacity=counts[r])
            for j in range(counts[r]):
                var i = r * k + j
                var dist = bitcast[DType.float32](UInt32(words[2 * i + 1] & 0xFFFFFFFF))
                hits.append(Hit(_id_at(buf, offs, i), words[2 * i], dist))
            out.append(hits^)
        return Found(out^, total[0])

    def search(
        self, query: List[Float32], k: Int, rerank: Int = 0, exact: Bool = False,
        filter: Filter = Filter(), nprobe: Int = 0, target_recall: Float32 = 0,
        query_threads: Int = 0,
    ) raises -> List[Hit]:
        """Up to k hits nearest to `query` (dim floats, read in place), closest
        first, with their IDs from the same call; only IDs that `filter` allows.

        IVF stores: `target_recall` is the recall@10 to aim at, in (0, 1],
        as measured at training or by `calibrate` (0 = 0.95; it picks the
        lists scanned and, when `rerank` is 0, the re-rank depth); `nprobe`
        > 0 scans that many lists instead (all when larger), with `rerank`
        as given. Other stores ignore both; every store refuses a
        `target_recall` outside [0, 1] (OMEN_ERR_INVALID_ARGUMENT).

        `query_threads` > 1: up to that many threads (this one among them)
        share the query's own work (the lists, codes or vectors it reads,
        its re-rank), for latency on large stores; a query is split only
        as far as it reads 2 MiB a thread, and its hits are the same as on
        one thread. 0 or 1 = one; at most 1024."""
        var h = self._handle("omen_search_ids")
        if len(query) != self.dim:
            _wrapper_error(
                OMEN_ERR_DIMENSION,
                "query has " + String(len(query)) + " floats, dim is " + String(self.dim),
                "omen_search_ids",
            )
        var p = self._params(
            rerank, exact, 0, filter, "omen_search_ids", nprobe, target_recall, query_threads
        )
        return self._search(h, _SEARCH, 1, query, k, p).rows[0].copy()

    def search_batch(
        self, queries: List[Float32], k: Int, rerank: Int = 0, exact: Bool = False,
        threads: Int = 0, filter: Filter = Filter(), nprobe: Int = 0,
        target_recall: Float32 = 0, query_threads: Int = 0,
    ) raises -> List[List[Hit]]:
        """Run len(queries)/dim searches, hits and IDs in one call; only IDs that
        `filter` allows; `nprobe`, `target_recall` and `query_threads` (threads
        sharing each query) as for `search`."""
        var h = self._handle("omen_search_batch_ids")
        if self.dim == 0 or len(queries) % self.dim != 0:
            _wrapper_error(
                OMEN_ERR_DIMENSION,
                String(len(queries)) + " floats is not a multiple of dim " + String(self.dim),
                "omen_search_batch_ids",
            )
        var nq = len(queries) // self.dim
        if nq == 0:
            return List[List[Hit]]()
        var p = self._params(
            rerank, exact, threads, filter, "omen_search_batch_ids", nprobe, target_recall,
            query_threads,
        )
        return self._search(h, _BATCH, nq, queries, k, p).rows.copy()

    def search_by_id(
        self, id: String, k: Int, exclude_self: Bool = False, rerank: Int = 0,
        exact: Bool = False, filter: Filter = Filter(), nprobe: Int = 0,
        target_recall: Float32 = 0, query_threads: Int = 0,
    ) raises -> List[Hit]:
        """Up to k hits nearest to the vector stored under `id` (as `get`
        returns it: in a trained drop_raw store, its PQ reconstruction),
        searched as `search` does, with their IDs. With `exclude_self`, the
        entry of `id` itself is left out. OMEN_ERR_NOT_FOUND when the
        store holds no `id`. `nprobe`, `target_recall` and `query_threads`
        as for `search`."""
        var h = self._handle("omen_search_by_id_ids")
        var p = self._params(
            rerank, exact, 0, filter, "omen_search_by_id_ids", nprobe, target_recall,
            query_threads,
        )
        var flags = OMEN_SEARCH_EXCLUDE_SELF if exclude_self else 0
        var none = List[Float32]()
        return self._search(h, _BY_ID, 1, none, k, p, id=id, flags=flags).rows[0].copy()

    def range_search(
        self, query: List[Float32], radius: Float32, max: Int, threads: Int = 0,
        filter: Filter = Filter(),
    ) raises -> Found:
        """Every vector within distance `radius` of `query` (distance <=
        radius, on the scale `search` reports): `rows[0]` holds the closest
        `max` of them with their IDs, `total` how many lie within the
        radius in all. Exact over the raw vectors, also in a trained store;
        a trained drop_raw store keeps none (OMEN_ERR_INVALID_ARGUMENT)."""
        var h = self._handle("omen_range_search_ids")
        if len(query) != self.dim:
            _wrapper_error(
                OMEN_ERR_DIMENSION,
                "query has " + String(len(query)) + " floats, dim is " + String(self.dim),
                "omen_range_search_ids",
            )
        var p = self._params(0, False, threads, filter, "omen_range_search_ids")
        return self._search(h, _RANGE, 1, query, max, p, radius=radius)

    def cursor(self) raises -> Cursor:
        """A cursor over the live (ID, vector) pairs as of now (see Cursor)."""
        var h = self._handle("omen_cursor_open")
        var out: List[Int] = [0]
        _check(external_call["omen_cursor_open", Int32](h, out.unsafe_ptr()), "omen_cursor_open")
        return Cursor(out[0], self.dim)

    def explain_search(
        self, k: Int, rerank: Int = 0, exact: Bool = False, filter: Filter = Filter(), nprobe: Int = 0,
        target_recall: Float32 = 0,
    ) raises -> SearchPlan:
        """How `search` runs a query for k results with these parameters
        (omen_explain_search), `filter` included (a small allowed set is
        searched exactly, a larger one probes more lists): the method, the
        lists probed, the candidates re-ranked and, where the calibration
        chose them, the recall@10 it measured. Refused as the search would
        be."""
        var h = self._handle("omen_explain_search")
        if k < 0:
            _wrapper_error(OMEN_ERR_INVALID_ARGUMENT, "k is negative (" + String(k) + ")", "omen_explain_search")
        var p = self._params(rerank, exact, 0, filter, "omen_explain_search", nprobe, target_recall)
        var w = List[UInt32](length=5, fill=0)
        w[0] = UInt32(SIZEOF_SEARCH_PLAN)
        _check(
            external_call["omen_explain_search", Int32](h, c_size_t(k), p.unsafe_ptr(), w.unsafe_ptr()),
            "omen_explain_search",
        )
        return SearchPlan(Int(w[1]), Int(w[2]), Int(w[3]), bitcast[DType.float32](w[4]))

    def calibration(self) raises -> List[CalibrationPoint]:
        """The IVF index's calibration (omen_calibration): the settings
        training (or `calibrate`) measured and kept, cheapest first (a
        target gets the first whose recall reaches it); empty without an
        IVF index, or where training had no raw vectors to measure with.
        `stats().calibration_queries` says which measured it."""
        var h = self._handle("omen_calibration")
        var count: List[Int] = [0]
        while True:
            var cap = count[0]
            var recall = List[Float32](length=cap + 1, fill=0)
            var nprobe = List[UInt32](length=cap + 1, fill=0)
            var per_k = List[UInt32](length=cap + 1, fill=0)
            var cost = List[Float64](length=cap + 1, fill=0)
            var st = external_call["omen_calibration", Int32](
                h, recall.unsafe_ptr(), nprobe.unsafe_ptr(), per_k.unsafe_ptr(), cost.unsafe_ptr(),
                c_size_t(cap), count.unsafe_ptr(),
            )
            # Only a training or a calibrate changes it: the next try fits.
            if st == OMEN_ERR_BUFFER_TOO_SMALL and count[0] > cap:
                continue
            _check(st, "omen_calibration")
            var out = List[CalibrationPoint](capacity=count[0])
            for i in range(count[0]):
                out.append(CalibrationPoint(recall[i], Int(nprobe[i]), Int(per_k[i]), cost[i]))
            return out^

    def calibrate(mut self, queries: List[Float32], show_progress: Bool = False) raises -> List[CalibrationPoint]:
        """Measure the IVF index's recall targets on len(queries)/dim of the
        host's own queries (read in place, as `search_batch` takes them)
        instead of on the store's own vectors, and commit the result
        (omen_calibrate): from then on, also after reopening,
        `target_recall` means recall@10 on queries like these. For queries
        unlike the stored vectors (another encoder's side, inner product),
        where a target measured on stored vectors can deliver less; a few
        hundred queries measure recall to about 0.01, each costing an exact
        search. Returns the new `calibration()`. `train_pq` and
        `rebuild_index` measure on stored vectors again; `compact` keeps it.
        OMEN_ERR_INVALID_ARGUMENT without a trained IVF index, with
        drop_raw, 10 live vectors or fewer, no queries or over 100,000, or
        a value that is not finite; OMEN_ERR_CORRUPT while the index is
        damaged; OMEN_ERR_READ_ONLY on a read-only store.

        With `show_progress` a bar is drawn on stdout, as `train_pq` draws
        one (off by default); `calibrate(queries, progress)` instead records
        what the callback saw into a Progress of the caller's."""
        var p = Progress(show_progress, "calibrate")
        return self.calibrate(queries, p)

    def calibrate(mut self, queries: List[Float32], mut progress: Progress) raises -> List[CalibrationPoint]:
        """`calibrate`, its progress recorded in `progress` (a bar drawn when
        its `show` is set), as `train_pq` returns it: total 3 x nq (the
        queries' exact neighbours, then up to two grids measured, a query
        a unit), done never decreasing, the last call done == total once
        it has measured (the commit follows)."""
        var h = self._handle("omen_calibrate")
        if self.dim == 0 or len(queries) % self.dim != 0:
            _wrapper_error(
                OMEN_ERR_DIMENSION,
                String(len(queries)) + " floats is not a multiple of dim " + String(self.dim),
                "omen_calibrate",
            )
        # No nq == 0 shortcut (search_batch has one): the library refuses it.
        var nq = len(queries) // self.dim
        var user = Int(Pointer(to=progress))
        _check(
            external_call["omen_calibrate", Int32](h, c_size_t(nq), queries.unsafe_ptr(), _progress_cb, user),
            "omen_calibrate",
        )
        return self.calibration()

    def stats(self) raises -> Stats:
        var h = self._handle("omen_store_stats")
        # omen_stats: 6 x uint32 (3 words), 6 x uint64, 10 x uint32 (5 words).
        var w = List[UInt64](length=14, fill=0)
        w[0] = UInt64(SIZEOF_STATS)
        _check(external_call["omen_store_stats", Int32](h, w.unsafe_ptr()), "omen_store_stats")
        return Stats(
            Int(w[0] >> 32),
            Int(w[1] & 0xFFFFFFFF),
            Int(w[1] >> 32),
            (w[2] & 0xFFFFFFFF) != 0,
            (w[2] >> 32) != 0,
            w[3], w[4], w[5], w[6], w[7], w[8],
            Int(w[9] & 0xFFFFFFFF),
            Int(w[9] >> 32),
            (w[10] & 0xFFFFFFFF) != 0,
            Int(w[11] >> 32),
            Int(w[12] & 0xFFFFFFFF),
            Int(w[12] >> 32),
            Int(w[13] & 0xFFFFFFFF),
            Int(w[13] >> 32),
        )
