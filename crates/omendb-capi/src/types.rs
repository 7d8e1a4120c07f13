//! C-visible types and constants. Names match the C contract exactly.
#![allow(non_camel_case_types)]

use std::os::raw::c_void;

/// Result of every call. `OMEN_OK` is 0; on failure nothing the call was
/// asked to do has been applied, and `omen_last_error()` says why.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum omen_status {
    OMEN_OK = 0,
    /// NULL pointer, bad length/offsets, non-finite value, bad option.
    OMEN_ERR_INVALID_ARGUMENT = 1,
    /// Buffer or store dimension does not match.
    OMEN_ERR_DIMENSION = 2,
    /// No such ID, or no store at path without OMEN_OPEN_CREATE.
    OMEN_ERR_NOT_FOUND = 3,
    /// The OS said no: ENOSPC, EACCES, EIO ... (the message says which).
    OMEN_ERR_IO = 4,
    /// A checksum or structural check failed.
    OMEN_ERR_CORRUPT = 5,
    /// Another process (or handle) holds the store for writing.
    OMEN_ERR_LOCKED = 6,
    /// File format written by an incompatible version.
    OMEN_ERR_VERSION = 7,
    /// Write on a store opened read-only.
    OMEN_ERR_READ_ONLY = 8,
    /// Operation needs PQ codebooks that do not exist yet.
    OMEN_ERR_NOT_TRAINED = 9,
    /// An output buffer is shorter than needed.
    OMEN_ERR_BUFFER_TOO_SMALL = 10,
    /// A bug: a caught panic or broken invariant.
    OMEN_ERR_INTERNAL = 11,
}

/// A store handle (opaque). Obtained from `omen_open`/`omen_recover`, released by `omen_close`.
pub struct omen_store {
    pub(crate) tag: u64,
    pub(crate) store: omendb::Store,
}

/// A cursor over a store's live (ID, vector) pairs as of one moment
/// (opaque). Obtained from `omen_cursor_open`, released by
/// `omen_cursor_close`.
pub struct omen_cursor {
    pub(crate) tag: u64,
    pub(crate) cursor: omendb::Cursor,
}

/// Flag of `omen_search_by_id`: leave the queried ID's own entry out of the hits.
pub const OMEN_SEARCH_EXCLUDE_SELF: u32 = 0x1;

/// Create the store if the directory holds none.
pub const OMEN_OPEN_CREATE: u32 = 0x1;
/// Open for reading only; shares the store with other readers and the writer.
pub const OMEN_OPEN_READ_ONLY: u32 = 0x2;
/// Every put/delete batch is durable on return (each is a checkpoint).
pub const OMEN_OPEN_SYNC_WRITES: u32 = 0x4;
/// Keep only PQ codes once trained (compressed store); fixed at creation.
pub const OMEN_OPEN_DROP_RAW: u32 = 0x8;
/// Pad each put's vectors to the end of their 2 MiB page (the next put
/// writes over the zeros) and advise the vectors file's mappings for huge
/// pages, so the vectors file is cached and read back in 2 MiB pages:
/// faster random gets and re-ranks for a store memory holds, slower puts
/// of small batches, 2 MiB read a fault. Per open, not stored.
pub const OMEN_OPEN_HUGE_PAGES: u32 = 0x10;
/// Build an IVF index (needs PQ; with OMEN_OPEN_DROP_RAW it searches the
/// codes without re-rank, and is calibrated so) when PQ is
/// trained: searches then scan only the lists nearest to the query, as
/// many as `omen_search_params.target_recall` needs. Creation only.
pub const OMEN_OPEN_IVF: u32 = 0x20;

/// Squared Euclidean distance.
pub const OMEN_METRIC_L2: u32 = 0;
/// Negative inner product.
pub const OMEN_METRIC_IP: u32 = 1;
/// 1 - cosine similarity.
pub const OMEN_METRIC_COSINE: u32 = 2;

/// Options for `omen_open`/`omen_recover`. Fill with `omen_options_default`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct omen_options {
    /// sizeof(omen_options), set by the caller (omen_options_default does it).
    pub struct_size: u32,
    /// OMEN_OPEN_* bits.
    pub flags: u32,
    /// Required to create; 0 = take it from the existing store.
    pub dim: u32,
    /// OMEN_METRIC_*; used at creation only.
    pub metric: u32,
    /// PQ sub-quantizers (bytes per code at 8 bits); 0 = no PQ; must divide dim. Creation only.
    pub pq_m: u32,
    /// Bits per sub-quantizer code: 8 or 4; 0 = 8. Creation only.
    pub pq_bits: u32,
    /// Vectors that trigger automatic training; 0 = train only on omen_train_pq. Creation only.
    pub pq_train_size: u32,
    /// Worker threads for training, encoding, batch search and large
    /// put batches; 0 = all cores; at most 1024 (else
    /// OMEN_ERR_INVALID_ARGUMENT).
    pub threads: u32,
    /// With OMEN_OPEN_IVF: the IVF lists; 0 = about sqrt(n), chosen at
    /// training (without the flag it must be 0). Creation only. Added
    /// later: read only when struct_size covers it, which
    /// omen_options_default's (32, the first layout) does not: fill the
    /// struct with omen_options_init(&opts, sizeof opts) to set it.
    pub ivf_lists: u32,
}

/// Filled by `omen_store_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct omen_stats {
    /// sizeof(omen_stats), set by the caller.
    pub struct_size: u32,
    pub dim: u32,
    pub metric: u32,
    pub pq_m: u32,
    /// 0 or 1.
    pub pq_trained: u32,
    /// 0 when OMEN_OPEN_DROP_RAW dropped the raw vectors.
    pub raw_kept: u32,
    /// IDs that get() finds.
    pub live_vectors: u64,
    /// Replaced or deleted entries awaiting compaction.
    pub dead_slots: u64,
    /// Sequence number of the last durable checkpoint.
    pub checkpoint_seq: u64,
    /// Bytes of all files of the store.
    pub disk_bytes: u64,
    /// Bytes of live vectors, codes and IDs as the caller gave them.
    pub payload_bytes: u64,
    /// Bytes the library holds on its own heap for this store.
    pub heap_bytes: u64,
    /// Bits per sub-quantizer code (8 or 4); 0 when the store has no PQ.
    /// This field and the ones after it were added later: a caller built
    /// against the older header (struct_size 72, ending at heap_bytes) gets
    /// every field up to heap_bytes and nothing past it.
    pub pq_bits: u32,
    /// Stored vectors that start training on their own; 0 = only omen_train_pq.
    pub pq_train_size: u32,
    /// 1 when the store was created with OMEN_OPEN_DROP_RAW.
    pub drop_raw: u32,
    /// 0; explicit padding.
    pub reserved: u32,
    /// The omen_status of the last automatic training (started by
    /// omen_put_batch once pq_train_size vectors are stored) if it failed
    /// and none has succeeded since; 0 otherwise. The put that started it
    /// succeeded (its batch is applied); the store stays untrained and
    /// tries again after another pq_train_size vectors, or on
    /// omen_train_pq. Added after reserved: a caller whose struct_size
    /// ends at reserved (88) gets every field up to it.
    pub pq_auto_train_status: u32,
    /// Lists of the trained IVF index (OMEN_OPEN_IVF); 0 without one or
    /// before training. (It was padding, always 0, before IVF: older
    /// libraries write 0 here.)
    pub ivf_lists: u32,
    /// OMEN_ERR_CORRUPT when the store's search index (PQ codebooks, IVF
    /// centroids, codes) was found damaged at open and is not rebuilt yet;
    /// 0 otherwise. The store then opened without it (the raw vectors are
    /// all there; searches are exact scans, pq_trained is 0):
    /// omen_index_status says what was wrong, omen_rebuild_index rebuilds
    /// it. Added after ivf_lists: a caller whose struct_size ends at
    /// ivf_lists (96) gets every field up to it.
    pub index_status: u32,
    /// How many of the host's queries measured the IVF calibration in use
    /// (omen_calibrate); 0 when training measured it on the store's own
    /// vectors, or there is none. (It was padding, always 0, before
    /// omen_calibrate: older libraries write 0 here.)
    pub calibration_queries: u32,
    /// How the trained IVF index searches: 1 (its lists hold whole codes),
    /// 2 (stage one scans the lists, which hold each code's first
    /// ivf_list_code_bytes; stage two ranks its candidates by their whole
    /// codes, read from the codes file); 0 without one or before training.
    /// Added after calibration_queries: a caller whose struct_size ends
    /// there (104) gets every field up to it.
    pub ivf_stages: u32,
    /// Bytes of each vector's code the IVF lists hold in memory: the whole
    /// code (pq_m * pq_bits / 8) with one stage, its first bytes with two;
    /// 0 without an index.
    pub ivf_list_code_bytes: u32,
}

/// Filled by `omen_recover`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct omen_recovery {
    /// sizeof(omen_recovery), set by the caller.
    pub struct_size: u32,
    /// 0; explicit so hand-written host layouts match.
    pub reserved: u32,
    /// The checkpoint the store was recovered to.
    pub checkpoint_seq: u64,
    pub live_vectors: u64,
    /// Bytes past the last checkpoint that were dropped.
    pub discarded_bytes: u64,
    /// Committed bytes whose checksums were verified.
    pub verified_bytes: u64,
}

/// omen_search_plan.method: exact distances to every live vector.
pub const OMEN_SEARCH_METHOD_EXACT: u32 = 0;
/// omen_search_plan.method: a scan of every PQ code, then the re-rank.
pub const OMEN_SEARCH_METHOD_PQ_SCAN: u32 = 1;
/// omen_search_plan.method: the codes of the IVF index's nprobe nearest
/// lists, then the re-rank.
pub const OMEN_SEARCH_METHOD_IVF: u32 = 2;

/// Filled by `omen_explain_search`: how omen_search runs a query.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct omen_search_plan {
    /// sizeof(omen_search_plan), set by the caller.
    pub struct_size: u32,
    /// OMEN_SEARCH_METHOD_EXACT, _PQ_SCAN or _IVF.
    pub method: u32,
    /// IVF: the lists probed a query; 0 otherwise.
    pub nprobe: u32,
    /// Candidates whose exact distances rank the results (at least k when
    /// any); 0 = the codes' order alone, or an exact search.
    pub rerank: u32,
    /// IVF without an explicit nprobe: the recall@10 that training
    /// measured for this setting on the store's own vectors, less one
    /// standard error (with a filter, for the unfiltered setting whose
    /// probe count the filter raised); 0 otherwise.
    pub calibrated_recall: f32,
}

/// Search parameters; NULL means all defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct omen_search_params {
    /// sizeof(omen_search_params), set by the caller.
    pub struct_size: u32,
    /// Re-rank this many PQ candidates with exact distances; 0 = none.
    pub rerank: u32,
    /// 1 = exact scan of raw vectors (no PQ).
    pub exact: u32,
    /// For omen_search_batch; 0 = store default; at most 1024.
    pub threads: u32,
    /// Filter, part 1: an allow-list of IDs, in the layout of
    /// omen_put_batch (`filter_n` IDs; `filter_id_offsets` holds n + 1
    /// offsets into `filter_ids`). Only listed IDs are returned (IDs the
    /// store lacks are ignored). `filter_id_offsets` NULL = no list;
    /// `filter_n` 0 with a non-NULL `filter_id_offsets` = an empty list,
    /// which allows nothing. The fields from here on were added later: a
    /// caller whose struct_size is 16 (ending at threads) searches
    /// unfiltered.
    pub filter_n: u64,
    pub filter_ids: *const u8,
    pub filter_id_offsets: *const u64,
    /// Filter, part 2: only IDs for which it returns nonzero (NULL = no
    /// predicate; with a list too, both must allow). Called on the thread
    /// that called the search, once per candidate vector per call (not per
    /// query of a batch), with no lock of the store held: it may call the
    /// library, on this store too.
    pub filter_fn: omen_filter_fn,
    /// Passed to `filter_fn` untouched.
    pub filter_user: *mut c_void,
    /// IVF stores: lists scanned per query; 0 = as many as
    /// `target_recall` needs. Added later (as is `target_recall`): a
    /// caller whose struct_size ends at filter_user gets 0 for both.
    pub nprobe: u32,
    /// IVF stores: the recall@10 to aim at, in (0, 1], as measured at
    /// training on the store's own vectors; 0 = 0.95. It chooses the lists
    /// scanned and (when `rerank` is 0) the re-rank depth.
    pub target_recall: f32,
    /// Threads that share each query's own work (the lists or codes it
    /// scans, the vectors it reads, its re-rank), the calling thread among
    /// them; 0 or 1 = one; at most 1024. A query is split only as far as
    /// it reads 2 MiB a thread, and its hits are the same as on one
    /// thread: for latency (`threads` spreads a batch's queries instead).
    /// Added later: a caller whose struct_size ends at target_recall gets 0.
    pub query_threads: u32,
}

/// One search result.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct omen_hit {
    /// Names the hit's entry until the next omen_compact or omen_close
    /// (training does not end it); resolve with omen_key_id. A key from
    /// before a compaction answers OMEN_ERR_NOT_FOUND there.
    pub key: u64,
    /// Per the store metric; smaller is closer.
    pub distance: f32,
    /// 0; explicit padding.
    pub reserved: u32,
}

/// A search filter's predicate: nonzero keeps the vector of ID `id`
/// (`id_len` bytes, not NUL-terminated, valid during the call only).
pub type omen_filter_fn = Option<unsafe extern "C" fn(user: *mut c_void, id: *const u8, id_len: usize) -> i32>;

/// Progress callback for PQ training: `done` of `total` units of work.
pub type omen_progress_fn = Option<unsafe extern "C" fn(user: *mut c_void, done: u64, total: u64)>;

/// Longest ID in bytes (IDs are 1 to OMEN_MAX_ID_LEN bytes).
pub const OMEN_MAX_ID_LEN: u32 = 1024;
/// Largest vector dimension a store accepts.
pub const OMEN_MAX_DIM: u32 = 65536;

// The C constants are literals (cbindgen cannot evaluate paths); keep them in step.
const _: () = assert!(OMEN_MAX_ID_LEN as usize == omendb::MAX_ID_LEN);
const _: () = assert!(OMEN_MAX_DIM == omendb::MAX_DIM);
