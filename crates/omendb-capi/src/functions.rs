//! The exported functions. Each body runs inside `guard`; see API.md (and
//! the generated header) for the contract every one of them keeps.
//!
//! # Safety (every function here)
//! One contract, stated once rather than on each function: every pointer a
//! host passes is NULL (where the function allows it) or valid for the
//! length the call names (`n` IDs, `n * dim` floats, `out_len` floats, a
//! struct of its declared `struct_size`), and a store handle comes from
//! `omen_open` and is not used after `omen_close`. The boundary checks what
//! it can (NULLs, sizes, the handle's tag) and reports the rest of a
//! violation as undefined behaviour, as any C library must.
#![allow(clippy::missing_safety_doc)]

use std::ffi::CStr;
use std::os::raw::{c_char, c_void};
use std::path::PathBuf;

use super::boundary::{
    check_struct_size, cursor_mut, guard, host_slice, host_slice_mut, into_cursor_handle, into_handle, last_error_ptr,
    null_error, out_param, status_of, store_ref, take_cursor, take_handle,
};
use super::types::*;
use omendb::IdBatch;
use omendb::{Error, Result};
use omendb::{Metric, Options, PqSettings};
use omendb::{Filter, RecoveryReport, SearchParams, Store};

const KNOWN_OPEN_FLAGS: u32 =
    OMEN_OPEN_CREATE | OMEN_OPEN_READ_ONLY | OMEN_OPEN_SYNC_WRITES | OMEN_OPEN_DROP_RAW | OMEN_OPEN_HUGE_PAGES | OMEN_OPEN_IVF;

/// The `struct_size` a caller declared for a non-NULL struct, checked to
/// be at least `min` bytes.
///
/// # Safety
/// `ptr` is non-NULL and points to a struct whose first field is the
/// `uint32_t struct_size`.
unsafe fn declared_size<T>(ptr: *const T, min: usize, what: &str) -> Result<u32> {
    // SAFETY: every omen struct starts with a uint32_t struct_size.
    let declared = unsafe { *(ptr as *const u32) };
    check_struct_size(declared, min, what)?;
    Ok(declared)
}

/// Reads a caller's struct after checking its declared size.
///
/// # Safety
/// A non-NULL `ptr` points to at least `struct_size` readable bytes whose
/// first field is the `uint32_t struct_size`.
unsafe fn read_sized<T: Copy>(ptr: *const T, what: &str) -> Result<Option<T>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL, per the contract above.
    unsafe { declared_size(ptr, std::mem::size_of::<T>(), what)? };
    // SAFETY: the caller declared at least size_of::<T>() bytes.
    Ok(Some(unsafe { *ptr }))
}

/// The bytes of omen_options before `ivf_lists` (its first size).
const OPTIONS_SIZE_BEFORE_IVF: usize = std::mem::offset_of!(omen_options, ivf_lists);

/// Reads a host's omen_options of any size from the first layout on:
/// fields past its struct_size read as 0.
///
/// # Safety
/// A non-NULL `ptr` points to at least `struct_size` readable bytes.
unsafe fn read_options(ptr: *const omen_options) -> Result<Option<omen_options>> {
    // SAFETY: omen_options is all integers (all-zero is valid); the
    // pointer contract is this function's.
    unsafe { read_grown(ptr, OPTIONS_SIZE_BEFORE_IVF, "omen_options") }
}

/// Reads a struct that grew over time (NULL: `None`): the fields its
/// declared struct_size covers (at least `first_size`, the first
/// layout's), the later ones zero.
///
/// # Safety
/// All-zero bytes are a valid `T` (integers, NULL pointers, `None`
/// function pointers); a non-NULL `ptr` points to at least `struct_size`
/// readable bytes.
unsafe fn read_grown<T: Copy>(ptr: *const T, first_size: usize, what: &str) -> Result<Option<T>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: all-zero is a valid T, per this function's contract.
    let mut value: T = unsafe { std::mem::zeroed() };
    // SAFETY: non-NULL, per this function's contract.
    let declared = unsafe { declared_size(ptr, first_size, what)? };
    let len = (declared as usize).min(std::mem::size_of::<T>());
    // SAFETY: the caller declared `declared` readable bytes at `ptr`; `len`
    // is at most that and at most T's size; byte copies need no alignment,
    // and `value` is ours, so the regions cannot overlap.
    unsafe { std::ptr::copy_nonoverlapping(ptr as *const u8, &mut value as *mut T as *mut u8, len) };
    Ok(Some(value))
}

/// # Safety
/// A non-NULL `path` is a NUL-terminated string.
unsafe fn host_path(path: *const c_char) -> Result<PathBuf> {
    if path.is_null() {
        return Err(null_error("path"));
    }
    // SAFETY: NUL-terminated per the contract.
    let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
    if bytes.is_empty() {
        return Err(Error::invalid("path is empty"));
    }
    Ok(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes).into())
}

/// # Safety
/// For n > 0: `id_offsets` holds n + 1 values and `ids` the bytes they index.
unsafe fn host_ids<'a>(n: usize, ids: *const u8, id_offsets: *const u64) -> Result<IdBatch<'a>> {
    if n == 0 {
        return Ok(IdBatch::EMPTY);
    }
    let count = n.checked_add(1).ok_or_else(|| Error::invalid("n is too large"))?;
    // SAFETY: the host passes n + 1 offsets.
    let offsets = unsafe { host_slice(id_offsets, count, "id_offsets")? };
    let span = IdBatch::span(offsets)?;
    if ids.is_null() {
        return Err(null_error("ids"));
    }
    let start = usize::try_from(offsets[0]).map_err(|_| Error::invalid("id_offsets[0] is too large"))?;
    // SAFETY: the offsets index the host's ids buffer, so ids + offsets[0]
    // starts `span` readable bytes.
    let bytes = unsafe { host_slice(ids.wrapping_add(start), span as usize, "ids")? };
    IdBatch::new(bytes, offsets)
}

fn options_from(raw: Option<omen_options>, path: &std::path::Path) -> Result<Options> {
    let Some(raw) = raw else { return Ok(Options::default()) };
    if raw.flags & !KNOWN_OPEN_FLAGS != 0 {
        return Err(Error::invalid(format!("unknown bits in flags: {:#x}", raw.flags & !KNOWN_OPEN_FLAGS)));
    }
    let create = raw.flags & OMEN_OPEN_CREATE != 0;
    // Metric and PQ settings apply only to a store being created; on an
    // existing store they are ignored, as the contract says.
    let creating = create && raw.flags & OMEN_OPEN_READ_ONLY == 0 && !Store::exists(path);
    let metric = match Metric::from_code(raw.metric) {
        Some(m) => m,
        None if creating => return Err(Error::invalid(format!("unknown metric {}", raw.metric))),
        None => Metric::L2,
    };
    let pq = (raw.pq_m != 0).then_some(PqSettings {
        m: raw.pq_m,
        bits: if raw.pq_bits == 0 { 8 } else { raw.pq_bits },
        train_size: raw.pq_train_size,
    });
    if creating && raw.ivf_lists != 0 && raw.flags & OMEN_OPEN_IVF == 0 {
        return Err(Error::invalid(format!("ivf_lists {} without OMEN_OPEN_IVF: no index would be built", raw.ivf_lists)));
    }
    if creating && raw.pq_m == 0 && raw.pq_bits != 0 && raw.pq_bits != 8 && raw.pq_bits != 4 {
        return Err(Error::invalid(format!("pq_bits must be 8 or 4 (got {})", raw.pq_bits)));
    }
    Ok(Options {
        create,
        read_only: raw.flags & OMEN_OPEN_READ_ONLY != 0,
        sync_writes: raw.flags & OMEN_OPEN_SYNC_WRITES != 0,
        drop_raw: raw.flags & OMEN_OPEN_DROP_RAW != 0,
        huge_pages: raw.flags & OMEN_OPEN_HUGE_PAGES != 0,
        dim: raw.dim,
        metric,
        pq,
        ivf_lists: (raw.flags & OMEN_OPEN_IVF != 0).then_some(raw.ivf_lists),
        threads: raw.threads,
    })
}

/// The defaults of every omen_options field.
fn default_options() -> omen_options {
    omen_options {
        struct_size: std::mem::size_of::<omen_options>() as u32,
        flags: 0,
        dim: 0,
        metric: OMEN_METRIC_L2,
        pq_m: 0,
        pq_bits: 8,
        pq_train_size: 0,
        threads: 0,
        ivf_lists: 0,
    }
}

/// Writes the first `len` bytes of the defaults over `opts`, struct_size = `len`.
///
/// # Safety
/// `opts` points to at least `len` writable bytes; `len <= size_of::<omen_options>()`.
unsafe fn write_default_options(opts: *mut omen_options, len: usize) {
    let mut defaults = default_options();
    defaults.struct_size = len as u32;
    // SAFETY: per this function's contract; byte copies need no alignment,
    // and `defaults` is ours, so the regions cannot overlap.
    unsafe { std::ptr::copy_nonoverlapping(&defaults as *const omen_options as *const u8, opts as *mut u8, len) };
}

/// Fills `opts` with defaults: flags 0, dim 0, L2, no PQ, pq_bits 8,
/// threads 0 (all cores). It writes the first layout of omen_options only
/// (up to and including threads; struct_size = that size, 32), which is
/// what every caller built against an earlier header allocated. Fields
/// added since (ivf_lists) keep what the caller put there and are not read
/// at that struct_size: to set them, fill the struct with
/// `omen_options_init(opts, sizeof *opts)` instead. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn omen_options_default(opts: *mut omen_options) {
    if !opts.is_null() {
        // SAFETY: a non-NULL opts points to an omen_options of at least the
        // first layout (every header declared at least that much).
        unsafe { write_default_options(opts, OPTIONS_SIZE_BEFORE_IVF) };
    }
}

/// Fills the first `struct_size` bytes of `opts` with defaults (as
/// omen_options_default, plus ivf_lists 0) and sets `opts->struct_size` to
/// `struct_size`; pass `sizeof *opts`. A size larger than this library's
/// omen_options fills what it knows and sets struct_size to its own size
/// (the rest is untouched). OMEN_ERR_INVALID_ARGUMENT for NULL or a size
/// smaller than the first layout (32).
#[no_mangle]
pub unsafe extern "C" fn omen_options_init(opts: *mut omen_options, struct_size: u32) -> omen_status {
    guard("omen_options_init", || {
        if opts.is_null() {
            return Err(null_error("opts"));
        }
        let len = struct_size as usize;
        if len < OPTIONS_SIZE_BEFORE_IVF {
            return Err(Error::invalid(format!(
                "struct_size {struct_size} is smaller than the first omen_options layout ({OPTIONS_SIZE_BEFORE_IVF})"
            )));
        }
        // SAFETY: the caller declared `struct_size` writable bytes at opts;
        // we write at most that and at most our struct's size.
        unsafe { write_default_options(opts, len.min(std::mem::size_of::<omen_options>())) };
        Ok(())
    })
}

/// Opens (or with OMEN_OPEN_CREATE creates) the store in directory `path`.
/// Opening an existing store recovers it to its last checkpoint.
///
/// `path`: NUL-terminated, not NULL. `opts`: may be NULL on an existing
/// store (defaults). On success `*out` receives a handle the caller owns and
/// must release with `omen_close`; on failure `*out` is set to NULL.
#[no_mangle]
pub unsafe extern "C" fn omen_open(
    path: *const c_char,
    opts: *const omen_options,
    out: *mut *mut omen_store,
) -> omen_status {
    guard("omen_open", || {
        // SAFETY: pointers per the documented contract.
        let out = unsafe { out_param(out, "out")? };
        *out = std::ptr::null_mut();
        let path = unsafe { host_path(path)? };
        let options = options_from(unsafe { read_options(opts)? }, &path)?;
        *out = into_handle(Store::open(&path, &options)?);
        Ok(())
    })
}

/// Like `omen_open` on an existing store, but first verifies every checksum
/// of the committed data, drops whatever lies past the last valid
/// checkpoint, and fills `report` (may be NULL; its struct_size must be
/// set). OMEN_ERR_CORRUPT if committed data is damaged. With
/// OMEN_OPEN_READ_ONLY it verifies and reports but changes no file.
#[no_mangle]
pub unsafe extern "C" fn omen_recover(
    path: *const c_char,
    opts: *const omen_options,
    out: *mut *mut omen_store,
    report: *mut omen_recovery,
) -> omen_status {
    guard("omen_recover", || {
        // SAFETY: pointers per the documented contract.
        let out = unsafe { out_param(out, "out")? };
        *out = std::ptr::null_mut();
        let path = unsafe { host_path(path)? };
        if !report.is_null() {
            unsafe { read_sized(report as *const omen_recovery, "omen_recovery")? };
        }
        let options = options_from(unsafe { read_options(opts)? }, &path)?;
        let (store, found): (Store, RecoveryReport) = Store::recover(&path, &options)?;
        // SAFETY: checked non-NULL with a large enough struct_size above.
        if let Some(report) = unsafe { report.as_mut() } {
            report.reserved = 0;
            report.checkpoint_seq = found.checkpoint_seq;
            report.live_vectors = found.live_vectors;
            report.discarded_bytes = found.discarded_bytes;
            report.verified_bytes = found.verified_bytes;
        }
        *out = into_handle(store);
        Ok(())
    })
}

/// Upserts `n` vectors: ID i is `ids[id_offsets[i] .. id_offsets[i+1]]`
/// (1..1024 bytes), vector i is `vectors[i*dim .. (i+1)*dim]`. An existing
/// ID is replaced; within one batch the last occurrence wins. The whole
/// batch is validated first and applied all or nothing. The buffers are read
/// in place during the call and not retained. Visible to readers on return;
/// durable after the next omen_checkpoint (or on return with
/// OMEN_OPEN_SYNC_WRITES, where a batch whose commit fails is not applied
/// and the handle then refuses further changes). n == 0 is a no-op
/// (pointers may then be NULL). A put that brings the store to
/// pq_train_size vectors also trains it; if that training fails the put
/// still succeeds and omen_stats.pq_auto_train_status tells.
#[no_mangle]
pub unsafe extern "C" fn omen_put_batch(
    s: *mut omen_store,
    n: usize,
    ids: *const u8,
    id_offsets: *const u64,
    vectors: *const f32,
) -> omen_status {
    guard("omen_put_batch", || {
        // SAFETY: pointers per the documented contract.
        let store = unsafe { store_ref(s)? };
        let batch = unsafe { host_ids(n, ids, id_offsets)? };
        let len = n.checked_mul(store.dim()).ok_or_else(|| Error::invalid("n * dim overflows"))?;
        let vectors = unsafe { host_slice(vectors, len, "vectors")? };
        store.put_batch(&batch, vectors)
    })
}

/// Deletes the `n` IDs (same layout as omen_put_batch) that exist;
/// `*out_deleted` (may be NULL) receives how many did. Missing IDs are not
/// an error.
#[no_mangle]
pub unsafe extern "C" fn omen_delete_batch(
    s: *mut omen_store,
    n: usize,
    ids: *const u8,
    id_offsets: *const u64,
    out_deleted: *mut u64,
) -> omen_status {
    guard("omen_delete_batch", || {
        // SAFETY: pointers per the documented contract.
        let store = unsafe { store_ref(s)? };
        let batch = unsafe { host_ids(n, ids, id_offsets)? };
        let deleted = store.delete_batch(&batch)?;
        // SAFETY: a non-NULL out_deleted is writable.
        if let Some(out) = unsafe { out_deleted.as_mut() } {
            *out = deleted;
        }
        Ok(())
    })
}

/// Copies the vector of ID `id` (`id_len` bytes, 1..1024: else
/// OMEN_ERR_INVALID_ARGUMENT) into `out` (`out_len` floats, at least dim:
/// else OMEN_ERR_BUFFER_TOO_SMALL). Bit-exact as put; in a compressed
/// store, the PQ reconstruction. OMEN_ERR_NOT_FOUND if absent.
#[no_mangle]
pub unsafe extern "C" fn omen_get(
    s: *const omen_store,
    id: *const u8,
    id_len: usize,
    out: *mut f32,
    out_len: usize,
) -> omen_status {
    guard("omen_get", || {
        // SAFETY: pointers per the documented contract.
        let store = unsafe { store_ref(s)? };
        if id.is_null() {
            return Err(null_error("id"));
        }
        let id = unsafe { host_slice(id, id_len, "id")? };
        if out.is_null() {
            return Err(null_error("out"));
        }
        let out = unsafe { host_slice_mut(out, out_len, "out")? };
        store.get_into(id, out)
    })
}

/// Sets `*out_found` to 1 if the store holds a vector with ID `id`
/// (`id_len` bytes, 1..1024: else OMEN_ERR_INVALID_ARGUMENT), else 0,
/// without reading the vector. An absent ID is OMEN_OK with 0, not
/// OMEN_ERR_NOT_FOUND.
#[no_mangle]
pub unsafe extern "C" fn omen_contains(
    s: *const omen_store,
    id: *const u8,
    id_len: usize,
    out_found: *mut u8,
) -> omen_status {
    guard("omen_contains", || {
        // SAFETY: pointers per the documented contract.
        let store = unsafe { store_ref(s)? };
        if id.is_null() {
            return Err(null_error("id"));
        }
        let id = unsafe { host_slice(id, id_len, "id")? };
        // SAFETY: a non-NULL out_found is writable (contract).
        let Some(out) = (unsafe { out_found.as_mut() }) else {
            return Err(null_error("out_found"));
        };
        *out = store.contains(id)? as u8;
        Ok(())
    })
}

/// Fills row i of `out` (n*dim floats) with the vector of ID i. Missing IDs
/// leave their row zeroed and `found[i] = 0` (`found`: n bytes, may be NULL);
/// the call still returns OMEN_OK. A damaged vector fails the whole call
/// with OMEN_ERR_CORRUPT.
#[no_mangle]
pub unsafe extern "C" fn omen_get_batch(
    s: *const omen_store,
    n: usize,
    ids: *const u8,
    id_offsets: *const u64,
    out: *mut f32,
    found: *mut u8,
) -> omen_status {
    guard("omen_get_batch", || {
        // SAFETY: pointers per the documented contract.
        let store = unsafe { store_ref(s)? };
        let batch = unsafe { host_ids(n, ids, id_offsets)? };
        let len = n.checked_mul(store.dim()).ok_or_else(|| Error::invalid("n * dim overflows"))?;
        let out = unsafe { host_slice_mut(out, len, "out")? };
        let found = if found.is_null() { None } else { Some(unsafe { host_slice_mut(found, n, "found")? }) };
        store.get_batch_into(&batch, out, found)
    })
}

/// Makes everything put or deleted before the call survive a crash (process
/// kill or power loss). `*out_seq` (may be NULL) receives the checkpoint's
/// sequence number. Cost grows with what changed since the last checkpoint.
#[no_mangle]
pub unsafe extern "C" fn omen_checkpoint(s: *mut omen_store, out_seq: *mut u64) -> omen_status {
    guard("omen_checkpoint", || {
        // SAFETY: pointers per the documented contract.
        let store = unsafe { store_ref(s)? };
        let seq = store.checkpoint()?;
        if let Some(out) = unsafe { out_seq.as_mut() } {
            *out = seq;
        }
        Ok(())
    })
}

/// Trains PQ codebooks on a sample of the stored vectors and encodes every
/// vector. `progress` (may be NULL) is called on the calling thread only,
/// never concurrently, with `done` never decreasing and a last call with
/// `done == total`; `user` is passed through untouched. The callback may
/// read the store (get, search, key_id, stats); a write call or omen_close
/// on it from there returns OMEN_ERR_INVALID_ARGUMENT (the training holds
/// the writer), and such a close leaves the handle open.
#[no_mangle]
pub unsafe extern "C" fn omen_train_pq(s: *mut omen_store, progress: omen_progress_fn, user: *mut c_void) -> omen_status {
    guard("omen_train_pq", || {
        // SAFETY: pointers per the documented contract.
        let store = unsafe { store_ref(s)? };
        store.train_pq(&mut host_progress(progress, user))
    })
}

/// The host's progress callback (NULL: none) as the engine calls it.
fn host_progress(progress: omen_progress_fn, user: *mut c_void) -> impl FnMut(u64, u64) {
    move |done, total| {
        if let Some(callback) = progress {
            // SAFETY: the host's callback with its own user pointer, on
            // the thread that called the training (the engine's contract).
            unsafe { callback(user, done, total) };
        }
    }
}

/// Rebuilds the store's search index from its raw vectors: new PQ
/// codebooks (and with OMEN_OPEN_IVF new centroids and recall
/// calibration), every vector encoded, then committed; the old or damaged
/// index files are removed. What a store whose index was found damaged
/// (omen_index_status) needs; on any store with PQ settings that keeps its
/// raw vectors it is the same as omen_train_pq. `progress` and `user` as
/// for omen_train_pq. OMEN_ERR_INVALID_ARGUMENT for a store without PQ
/// settings or one whose raw vectors OMEN_OPEN_DROP_RAW dropped.
#[no_mangle]
pub unsafe extern "C" fn omen_rebuild_index(s: *mut omen_store, progress: omen_progress_fn, user: *mut c_void) -> omen_status {
    guard("omen_rebuild_index", || {
        // SAFETY: pointers per the documented contract.
        let store = unsafe { store_ref(s)? };
        store.rebuild_index(&mut host_progress(progress, user))
    })
}

/// The state of the store's search index: OMEN_OK when it is intact (or
/// the store has none); OMEN_ERR_CORRUPT when open found its files damaged
/// and it is not rebuilt yet, with omen_last_error() saying which file and
/// what. Such a store opened without its index: every vector is there (its
/// raw copy), searches are exact scans, puts work; omen_compact is refused
/// until omen_rebuild_index rebuilds the index. (A store created with
/// OMEN_OPEN_DROP_RAW has no raw copy: damage to its codes makes
/// omen_open fail with OMEN_ERR_CORRUPT instead.)
#[no_mangle]
pub unsafe extern "C" fn omen_index_status(s: *const omen_store) -> omen_status {
    guard("omen_index_status", || {
        // SAFETY: pointers per the documented contract.
        let store = unsafe { store_ref(s)? };
        match store.index_damage() {
            Some(damage) => Err(damage),
            None => Ok(()),
        }
    })
}

/// `sizeof(omen_search_params)` before the filter fields were added:
/// callers built against that layout keep working (unfiltered).
const SEARCH_PARAMS_SIZE_BEFORE_FILTER: usize = std::mem::offset_of!(omen_search_params, filter_n);

/// Reads a caller's omen_search_params (NULL: defaults): the fields its
/// declared struct_size covers, the later ones zero.
///
/// # Safety
/// A non-NULL `ptr` points to at least `struct_size` readable bytes.
unsafe fn read_search_params(ptr: *const omen_search_params) -> Result<omen_search_params> {
    // SAFETY: all-zero bytes are a valid omen_search_params (integers,
    // NULL pointers, a None function pointer), the documented defaults;
    // the pointer contract is this function's.
    let read = unsafe { read_grown(ptr, SEARCH_PARAMS_SIZE_BEFORE_FILTER, "omen_search_params")? };
    // SAFETY: as above, all-zero is valid.
    Ok(read.unwrap_or_else(|| unsafe { std::mem::zeroed() }))
}

fn search_params(p: &omen_search_params) -> Result<SearchParams> {
    if !(p.target_recall.is_finite() && (0.0..=1.0).contains(&p.target_recall)) {
        return Err(Error::invalid(format!("target_recall must be in (0, 1] or 0 for the default (got {})", p.target_recall)));
    }
    Ok(SearchParams {
        rerank: p.rerank,
        exact: p.exact != 0,
        threads: p.threads,
        nprobe: p.nprobe,
        target_recall: p.target_recall,
        query_threads: p.query_threads,
    })
}

/// Runs `search` with the filter the params describe.
///
/// # Safety
/// The filter fields of `p` follow omen_search_params' contract.
unsafe fn with_filter<T>(p: &omen_search_params, search: impl FnOnce(&Filter<'_>) -> Result<T>) -> Result<T> {
    let ids = if p.filter_id_offsets.is_null() {
        None
    } else {
        let n = usize::try_from(p.filter_n).map_err(|_| Error::invalid("filter_n is too large"))?;
        // SAFETY: per the contract, as for omen_put_batch's IDs.
        Some(unsafe { host_ids(n, p.filter_ids, p.filter_id_offsets) }.map_err(|e| e.context("filter"))?)
    };
    let (callback, user) = (p.filter_fn, p.filter_user);
    let accept = |id: &[u8]| match callback {
        // SAFETY: the host's predicate with its own user pointer; `id` is
        // valid for `id.len()` bytes during the call.
        Some(f) => unsafe { f(user, id.as_ptr(), id.len()) != 0 },
        None => true,
    };
    let filter = Filter { ids, accept: callback.map(|_| &accept as &dyn Fn(&[u8]) -> bool) };
    search(&filter)
}

fn write_hits(hits: &[omendb::Hit], out: &mut [omen_hit]) {
    for (slot, hit) in out.iter_mut().zip(hits) {
        *slot = omen_hit { key: hit.key, distance: hit.distance, reserved: 0 };
    }
}

/// The checked arguments of a search call.
struct SearchCall<'a> {
    store: &'a Store,
    queries: &'a [f32],
    params: omen_search_params,
    hits: &'a mut [omen_hit],
    counts: &'a mut [usize],
}

/// Checks the arguments the search functions share: `nq` queries (None:
/// omen_search's one `query` and its `out_count`), k hit slots each.
///
/// # Safety
/// Pointers per the search functions' contract.
unsafe fn search_call<'a>(
    s: *const omen_store,
    nq: Option<usize>,
    queries: *const f32,
    k: usize,
    params: *const omen_search_params,
    out_hits: *mut omen_hit,
    out_counts: *mut usize,
) -> Result<SearchCall<'a>> {
    // SAFETY: per this function's contract.
    let store = unsafe { store_ref(s)? };
    let (rows, queries) = match nq {
        None if queries.is_null() => return Err(null_error("query")),
        None => (1, unsafe { host_slice(queries, store.dim(), "query")? }),
        Some(nq) => {
            let len = nq.checked_mul(store.dim()).ok_or_else(|| Error::invalid("nq * dim overflows"))?;
            (nq, unsafe { host_slice(queries, len, "queries")? })
        }
    };
    let params = unsafe { read_search_params(params)? };
    let hits_len = rows.checked_mul(k).ok_or_else(|| Error::invalid("nq * k overflows"))?;
    let hits = unsafe { host_slice_mut(out_hits, hits_len, "out_hits")? };
    let counts = match nq {
        None => std::slice::from_mut(unsafe { out_param(out_counts, "out_count")? }),
        Some(nq) => unsafe { host_slice_mut(out_counts, nq, "out_counts")? },
    };
    Ok(SearchCall { store, queries, params, hits, counts })
}

/// Query i's hits to `out[i*k ..]`, their number to `counts[i]`.
fn write_rows(results: &[Vec<omendb::Hit>], k: usize, out: &mut [omen_hit], counts: &mut [usize]) {
    for (i, hits) in results.iter().enumerate() {
        write_hits(hits, &mut out[i * k..(i + 1) * k]);
        counts[i] = hits.len();
    }
}

/// The `k` nearest live vectors to `query` (dim floats), ascending by
/// distance, into `out_hits` (k entries); `*out_count` receives how many
/// were found (fewer than k when the store holds fewer). `params` may be
/// NULL (defaults). Without trained PQ (or with exact = 1), an exact scan.
#[no_mangle]
pub unsafe extern "C" fn omen_search(
    s: *const omen_store,
    query: *const f32,
    k: usize,
    params: *const omen_search_params,
    out_hits: *mut omen_hit,
    out_count: *mut usize,
) -> omen_status {
    guard("omen_search", || {
        // SAFETY: pointers per the documented contract.
        let call = unsafe { search_call(s, None, query, k, params, out_hits, out_count)? };
        let raw = call.params;
        let hits =
            unsafe { with_filter(&raw, |filter| call.store.search_filtered(call.queries, k, &search_params(&raw)?, filter))? };
        write_rows(std::slice::from_ref(&hits), k, call.hits, call.counts);
        Ok(())
    })
}

/// Fills `out` (its struct_size must be set) with how omen_search runs a
/// query for `k` results with `params` (NULL = defaults), its filter
/// included (evaluated as the search evaluates it: a small allowed set is
/// searched exactly, a larger one probes more lists): the method, the
/// lists probed, the candidates re-ranked and, where the calibration chose
/// them, the recall@10 it measured. Statuses as omen_search's for these
/// parameters (OMEN_ERR_INVALID_ARGUMENT for an exact search of a store
/// that keeps only PQ codes).
#[no_mangle]
pub unsafe extern "C" fn omen_explain_search(s: *const omen_store, k: usize, params: *const omen_search_params, out: *mut omen_search_plan) -> omen_status {
    guard("omen_explain_search", || {
        // SAFETY: pointers per the documented contract.
        let store = unsafe { store_ref(s)? };
        // SAFETY: NULL or a readable omen_search_params, per the contract.
        let raw = unsafe { read_search_params(params)? };
        if out.is_null() {
            return Err(null_error("out"));
        }
        // SAFETY: non-NULL (checked above), an omen_search_plan per the contract.
        unsafe { declared_size(out, std::mem::size_of::<omen_search_plan>(), "omen_search_plan")? };
        // SAFETY: the filter fields follow omen_search_params' contract.
        let plan = unsafe { with_filter(&raw, |filter| store.search_plan_filtered(k, &search_params(&raw)?, filter))? };
        let method = match plan.method {
            omendb::SearchMethod::Exact => OMEN_SEARCH_METHOD_EXACT,
            omendb::SearchMethod::PqScan => OMEN_SEARCH_METHOD_PQ_SCAN,
            omendb::SearchMethod::Ivf => OMEN_SEARCH_METHOD_IVF,
        };
        // SAFETY: non-NULL and at least size_of::<omen_search_plan>() bytes (checked above).
        let out = unsafe { &mut *out };
        *out = omen_search_plan {
            struct_size: out.struct_size,
            method,
            nprobe: plan.nprobe,
            rerank: plan.rerank,
            calibrated_recall: plan.calibrated_recall.unwrap_or(0.0),
        };
        Ok(())
    })
}

/// The IVF index's calibration: the settings training (or
/// omen_calibrate) measured and kept, cheapest first (a target gets the
/// first whose recall reaches it). `*out_count` receives their number (0
/// without an IVF index, or where training had no raw vectors to measure
/// with); point i is `recall[i]` (recall@10 on the store's own vectors, or
/// on the host's queries after omen_calibrate, less one standard error),
/// `nprobe[i]`, `rerank_per_k[i]` (candidates re-ranked per result; 0 =
/// none) and `cost[i]` (bytes a query reads, relative). The four arrays
/// hold `capacity` entries each (NULL allowed when capacity is 0); fewer
/// than the points: OMEN_ERR_BUFFER_TOO_SMALL, with `*out_count` set and
/// nothing written.
#[no_mangle]
pub unsafe extern "C" fn omen_calibration(
    s: *const omen_store,
    recall: *mut f32,
    nprobe: *mut u32,
    rerank_per_k: *mut u32,
    cost: *mut f64,
    capacity: usize,
    out_count: *mut usize,
) -> omen_status {
    guard("omen_calibration", || {
        // SAFETY: pointers per the documented contract.
        let store = unsafe { store_ref(s)? };
        // SAFETY: per the contract; NULL is refused.
        let count = unsafe { out_param(out_count, "out_count")? };
        let points = store.calibration()?;
        *count = points.len();
        if points.len() > capacity {
            return Err(Error::new(
                omendb::ErrorKind::BufferTooSmall,
                format!("the calibration has {} points, the arrays hold {capacity}", points.len()),
            ));
        }
        if points.is_empty() {
            return Ok(());
        }
        for (ptr, what) in [(recall as *const u8, "recall"), (nprobe as _, "nprobe"), (rerank_per_k as _, "rerank_per_k"), (cost as _, "cost")] {
            if ptr.is_null() {
                return Err(null_error(what));
            }
        }
        for (i, p) in points.iter().enumerate() {
            // SAFETY: each array is non-NULL (checked above) and holds
            // `capacity` >= points.len() > i entries, per the contract.
            unsafe {
                *recall.add(i) = p.recall;
                *nprobe.add(i) = p.nprobe;
                *rerank_per_k.add(i) = p.rerank_per_k;
                *cost.add(i) = p.cost;
            }
        }
        Ok(())
    })
}

/// Measures the IVF index's recall targets on `nq` of the host's own
/// queries (`queries`: nq*dim floats, a sample of what this store will be
/// asked, as omen_search takes them) instead of the store's own vectors,
/// and commits the result: when it returns OMEN_OK, `target_recall` means
/// recall@10 on queries like these, also after reopening (durable, like
/// a checkpoint, which it includes). For hosts whose queries differ from
/// the stored vectors (another encoder's side of a pair, inner product,
/// queries between the data's clusters), where a target measured on
/// stored vectors can deliver less. Each query's exact neighbours are
/// found by an exact scan: a few hundred queries measure recall to about
/// 0.01, and take that many exact searches' time (writes wait meanwhile:
/// it holds the writer; searches go on). omen_train_pq and
/// omen_rebuild_index measure on stored vectors again; omen_compact keeps
/// it; omen_store_stats' `calibration_queries` says which is in use.
/// `progress` (may be NULL) and `user` as for omen_train_pq: on the
/// calling thread only, `done` never decreasing, a last call with `done ==
/// total` once it has measured (the commit follows); `total` is 3 x nq
/// (the queries' exact neighbours, then up to two grids measured, a query
/// a unit). The callback may read the store; a write call from there is
/// refused.
/// OMEN_ERR_INVALID_ARGUMENT for a store without a trained IVF index,
/// one that keeps no raw vectors (OMEN_OPEN_DROP_RAW), one of 10 live
/// vectors or fewer, nq 0 or above 100,000, or a value that is not
/// finite; OMEN_ERR_CORRUPT while open found the index damaged
/// (omen_rebuild_index first); OMEN_ERR_READ_ONLY on a read-only handle;
/// OMEN_ERR_IO keeps the calibration in use (after a failed sync the handle
/// refuses changes, and a reopen finds the last checkpoint or this one).
#[no_mangle]
pub unsafe extern "C" fn omen_calibrate(
    s: *mut omen_store,
    nq: usize,
    queries: *const f32,
    progress: omen_progress_fn,
    user: *mut c_void,
) -> omen_status {
    guard("omen_calibrate", || {
        // SAFETY: pointers per the documented contract.
        let store = unsafe { store_ref(s)? };
        let len = nq.checked_mul(store.dim()).ok_or_else(|| Error::invalid("nq * dim overflows"))?;
        // SAFETY: `queries` holds nq*dim floats, per the contract.
        let queries = unsafe { host_slice(queries, len, "queries")? };
        store.calibrate(queries, &mut host_progress(progress, user)).map(|_| ())
    })
}

/// `nq` searches at once (`queries`: nq*dim floats), run in parallel on up
/// to `params->threads` threads (0 = the store's default). Query i's hits go
/// to `out_hits[i*k ..]` and their number to `out_counts[i]`.
#[no_mangle]
pub unsafe extern "C" fn omen_search_batch(
    s: *const omen_store,
    nq: usize,
    queries: *const f32,
    k: usize,
    params: *const omen_search_params,
    out_hits: *mut omen_hit,
    out_counts: *mut usize,
) -> omen_status {
    guard("omen_search_batch", || {
        // SAFETY: pointers per the documented contract.
        let call = unsafe { search_call(s, Some(nq), queries, k, params, out_hits, out_counts)? };
        let raw = call.params;
        let results = unsafe {
            with_filter(&raw, |filter| call.store.search_batch_filtered(call.queries, k, &search_params(&raw)?, filter))?
        };
        write_rows(&results, k, call.hits, call.counts);
        Ok(())
    })
}

/// Where the IDs of `omen_search_ids` / `omen_search_batch_ids` go: a
/// byte buffer of `cap` bytes and `slots + 1` offsets into it.
struct IdOut<'a> {
    bytes: *mut u8,
    cap: usize,
    offsets: &'a mut [u64],
    needed: &'a mut usize,
}

impl IdOut<'_> {
    /// # Safety
    /// `offsets` holds `slots + 1` writable u64s; a non-NULL `bytes` holds
    /// `cap` writable bytes.
    unsafe fn new<'a>(
        bytes: *mut u8,
        cap: usize,
        offsets: *mut u64,
        slots: usize,
        needed: *mut usize,
    ) -> Result<IdOut<'a>> {
        let len = slots.checked_add(1).ok_or_else(|| Error::invalid("too many hits"))?;
        // SAFETY: per this function's contract.
        let offsets = unsafe { host_slice_mut(offsets, len, "id_offsets")? };
        let needed = unsafe { out_param(needed, "out_id_bytes")? };
        if bytes.is_null() && cap != 0 {
            return Err(null_error("id_bytes"));
        }
        Ok(IdOut { bytes, cap, offsets, needed })
    }

    /// Writes the offsets of `results` (k slots per query, a short row's
    /// unused slots repeating its last offset), the needed size, and, when
    /// they fit, the ID bytes; else OMEN_ERR_BUFFER_TOO_SMALL.
    fn write(self, results: &omendb::SearchResults, k: usize) -> Result<()> {
        self.write_rows(&results.hits, &results.ids, k)
    }

    /// `write` for hits in `rows` whose IDs are `ids`, in order.
    fn write_rows(self, rows: &[Vec<omendb::Hit>], ids: &omendb::IdBuf, k: usize) -> Result<()> {
        let (bytes, ends) = (ids.bytes(), &ids.offsets()[1..]);
        self.offsets[0] = 0;
        let mut next = 0;
        for (i, hits) in rows.iter().enumerate() {
            for j in 0..k {
                let end = if j < hits.len() {
                    next += 1;
                    ends[next - 1]
                } else {
                    self.offsets[i * k + j]
                };
                self.offsets[i * k + j + 1] = end;
            }
        }
        *self.needed = bytes.len();
        if bytes.len() > self.cap {
            return Err(Error::new(
                omendb::ErrorKind::BufferTooSmall,
                format!("the hits' IDs need {} bytes, id_bytes holds {}", bytes.len(), self.cap),
            ));
        }
        if !bytes.is_empty() {
            // SAFETY: `self.bytes` holds `cap >= bytes.len()` writable bytes
            // (non-NULL: checked in `new` unless cap is 0, and cap >= a
            // non-zero length here); the host's buffer is not ours.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.bytes, bytes.len()) };
        }
        Ok(())
    }
}

/// `omen_search`, also writing each hit's ID, resolved in the same call
/// under the same view of the store as the search (so one call answers a
/// query). Hit j's ID is `id_bytes[id_offsets[j] .. id_offsets[j + 1]]`;
/// `id_offsets` holds k + 1 entries, starting at 0, and the entries past
/// `*out_count` repeat the last one (empty IDs for the missing hits).
/// `*out_id_bytes` receives the number of ID bytes the hits need. If that
/// exceeds `id_bytes_cap`: OMEN_ERR_BUFFER_TOO_SMALL, with `out_hits`,
/// `*out_count`, `id_offsets` and `*out_id_bytes` written as on success and
/// `id_bytes` untouched. Calling again with that size searches again; if
/// the store changed meanwhile the size may differ (retry in a loop, or
/// pass k * 1024 bytes, which always suffices). `id_bytes` may be NULL
/// when `id_bytes_cap` is 0.
#[no_mangle]
pub unsafe extern "C" fn omen_search_ids(
    s: *const omen_store,
    query: *const f32,
    k: usize,
    params: *const omen_search_params,
    out_hits: *mut omen_hit,
    out_count: *mut usize,
    id_bytes: *mut u8,
    id_bytes_cap: usize,
    id_offsets: *mut u64,
    out_id_bytes: *mut usize,
) -> omen_status {
    guard("omen_search_ids", || {
        // SAFETY: pointers per the documented contract.
        let call = unsafe { search_call(s, None, query, k, params, out_hits, out_count)? };
        let ids = unsafe { IdOut::new(id_bytes, id_bytes_cap, id_offsets, k, out_id_bytes)? };
        let raw = call.params;
        let results =
            unsafe { with_filter(&raw, |filter| call.store.search_with_ids(call.queries, k, &search_params(&raw)?, filter))? };
        write_rows(&results.hits, k, call.hits, call.counts);
        ids.write(&results, k)
    })
}

/// `omen_search_batch`, also writing each hit's ID as `omen_search_ids`
/// does, for all queries into one byte buffer: `id_offsets` holds
/// nq*k + 1 entries, and the ID of hit j of query i (the hit at
/// `out_hits[i*k + j]`) is `id_bytes[id_offsets[i*k + j] .. id_offsets[i*k + j + 1]]`,
/// empty for j >= `out_counts[i]` (a short row's unused entries repeat its
/// last offset). On OMEN_ERR_BUFFER_TOO_SMALL, as for `omen_search_ids`:
/// hits, counts, offsets and `*out_id_bytes` are written, `id_bytes` is not.
#[no_mangle]
pub unsafe extern "C" fn omen_search_batch_ids(
    s: *const omen_store,
    nq: usize,
    queries: *const f32,
    k: usize,
    params: *const omen_search_params,
    out_hits: *mut omen_hit,
    out_counts: *mut usize,
    id_bytes: *mut u8,
    id_bytes_cap: usize,
    id_offsets: *mut u64,
    out_id_bytes: *mut usize,
) -> omen_status {
    guard("omen_search_batch_ids", || {
        // SAFETY: pointers per the documented contract.
        let call = unsafe { search_call(s, Some(nq), queries, k, params, out_hits, out_counts)? };
        let ids = unsafe { IdOut::new(id_bytes, id_bytes_cap, id_offsets, call.hits.len(), out_id_bytes)? };
        let raw = call.params;
        let results = unsafe {
            with_filter(&raw, |filter| call.store.search_batch_with_ids(call.queries, k, &search_params(&raw)?, filter))?
        };
        write_rows(&results.hits, k, call.hits, call.counts);
        ids.write(&results, k)
    })
}

/// Reads `flags` of omen_search_by_id: whether to exclude the ID itself.
fn exclude_self(flags: u32) -> Result<bool> {
    if flags & !OMEN_SEARCH_EXCLUDE_SELF != 0 {
        return Err(Error::invalid(format!("unknown bits in flags: {:#x}", flags & !OMEN_SEARCH_EXCLUDE_SELF)));
    }
    Ok(flags & OMEN_SEARCH_EXCLUDE_SELF != 0)
}

/// The checked arguments of a search by ID: the store, the ID, the params
/// and the outputs for k hits.
///
/// # Safety
/// Pointers per omen_search_by_id's contract.
unsafe fn by_id_call<'a>(
    s: *const omen_store,
    id: *const u8,
    id_len: usize,
    k: usize,
    params: *const omen_search_params,
    out_hits: *mut omen_hit,
    out_count: *mut usize,
) -> Result<(SearchCall<'a>, &'a [u8])> {
    // SAFETY: per this function's contract.
    let store = unsafe { store_ref(s)? };
    if id.is_null() {
        return Err(null_error("id"));
    }
    let id = unsafe { host_slice(id, id_len, "id")? };
    let params = unsafe { read_search_params(params)? };
    let hits = unsafe { host_slice_mut(out_hits, k, "out_hits")? };
    let counts = std::slice::from_mut(unsafe { out_param(out_count, "out_count")? });
    Ok((SearchCall { store, queries: &[], params, hits, counts }, id))
}

/// The `k` nearest live vectors to the vector stored under ID `id`
/// (`id_len` bytes, 1..1024), searched as omen_search does with `params`
/// (NULL: defaults; its filter applies), into `out_hits` (k entries) and
/// `*out_count`. The query is the vector the ID holds when the call
/// starts, as omen_get returns it: in a DROP_RAW store once trained, its
/// PQ reconstruction. `flags`: 0 or OMEN_SEARCH_EXCLUDE_SELF, which leaves
/// the entry of `id` itself out (the k nearest others; another ID holding
/// the same vector stays in). OMEN_ERR_NOT_FOUND when the store holds no
/// `id`.
#[no_mangle]
pub unsafe extern "C" fn omen_search_by_id(
    s: *const omen_store,
    id: *const u8,
    id_len: usize,
    k: usize,
    params: *const omen_search_params,
    flags: u32,
    out_hits: *mut omen_hit,
    out_count: *mut usize,
) -> omen_status {
    guard("omen_search_by_id", || {
        let exclude = exclude_self(flags)?;
        // SAFETY: pointers per the documented contract.
        let (call, id) = unsafe { by_id_call(s, id, id_len, k, params, out_hits, out_count)? };
        let raw = call.params;
        let hits = unsafe {
            with_filter(&raw, |filter| call.store.search_by_id_filtered(id, k, &search_params(&raw)?, exclude, filter))?
        };
        write_rows(std::slice::from_ref(&hits), k, call.hits, call.counts);
        Ok(())
    })
}

/// `omen_search_by_id`, also writing each hit's ID exactly as
/// `omen_search_ids` does (the same buffers, sizes and
/// OMEN_ERR_BUFFER_TOO_SMALL behaviour).
#[no_mangle]
pub unsafe extern "C" fn omen_search_by_id_ids(
    s: *const omen_store,
    id: *const u8,
    id_len: usize,
    k: usize,
    params: *const omen_search_params,
    flags: u32,
    out_hits: *mut omen_hit,
    out_count: *mut usize,
    id_bytes: *mut u8,
    id_bytes_cap: usize,
    id_offsets: *mut u64,
    out_id_bytes: *mut usize,
) -> omen_status {
    guard("omen_search_by_id_ids", || {
        let exclude = exclude_self(flags)?;
        // SAFETY: pointers per the documented contract.
        let (call, id) = unsafe { by_id_call(s, id, id_len, k, params, out_hits, out_count)? };
        let ids = unsafe { IdOut::new(id_bytes, id_bytes_cap, id_offsets, k, out_id_bytes)? };
        let raw = call.params;
        let results = unsafe {
            with_filter(&raw, |filter| call.store.search_by_id_with_ids(id, k, &search_params(&raw)?, exclude, filter))?
        };
        write_rows(&results.hits, k, call.hits, call.counts);
        ids.write(&results, k)
    })
}

/// Every live vector within distance `radius` of `query` (dim floats):
/// distance <= radius, in the store's metric as omen_search reports it.
/// The closest `max_results` of them go to `out_hits` (max_results
/// entries), ascending by distance, their number to `*out_count`, and how
/// many lie within the radius in all to `*out_total` (may be NULL): more
/// than `*out_count` when the cap cut the list. Always exact, over the raw
/// vectors, also in a trained store (PQ distances are estimates: a cut on
/// them would miss and admit vectors near the radius); `params` (NULL:
/// defaults) gives the threads (0 = the store's default) and the filter,
/// its `rerank` and `exact` do not apply. A DROP_RAW store once trained
/// keeps no raw vectors: OMEN_ERR_INVALID_ARGUMENT. `radius` must not be
/// NaN (OMEN_ERR_INVALID_ARGUMENT); +infinity takes every vector.
/// `max_results` 0 only counts.
#[no_mangle]
pub unsafe extern "C" fn omen_range_search(
    s: *const omen_store,
    query: *const f32,
    radius: f32,
    max_results: usize,
    params: *const omen_search_params,
    out_hits: *mut omen_hit,
    out_count: *mut usize,
    out_total: *mut u64,
) -> omen_status {
    guard("omen_range_search", || {
        // SAFETY: pointers per the documented contract.
        let call = unsafe { search_call(s, None, query, max_results, params, out_hits, out_count)? };
        let raw = call.params;
        let found = unsafe {
            with_filter(&raw, |filter| {
                call.store.range_search_filtered(call.queries, radius, max_results, &search_params(&raw)?, filter)
            })?
        };
        // SAFETY: out_total per the documented contract.
        unsafe { write_range(call, &found, max_results, out_total) };
        Ok(())
    })
}

/// `omen_range_search`, also writing each hit's ID as `omen_search_ids`
/// does (`id_offsets`: max_results + 1 entries; the same buffers, sizes
/// and OMEN_ERR_BUFFER_TOO_SMALL behaviour, with `out_hits`, `*out_count`
/// and `*out_total` written then too).
#[no_mangle]
pub unsafe extern "C" fn omen_range_search_ids(
    s: *const omen_store,
    query: *const f32,
    radius: f32,
    max_results: usize,
    params: *const omen_search_params,
    out_hits: *mut omen_hit,
    out_count: *mut usize,
    out_total: *mut u64,
    id_bytes: *mut u8,
    id_bytes_cap: usize,
    id_offsets: *mut u64,
    out_id_bytes: *mut usize,
) -> omen_status {
    guard("omen_range_search_ids", || {
        // SAFETY: pointers per the documented contract.
        let call = unsafe { search_call(s, None, query, max_results, params, out_hits, out_count)? };
        let ids = unsafe { IdOut::new(id_bytes, id_bytes_cap, id_offsets, max_results, out_id_bytes)? };
        let raw = call.params;
        let found = unsafe {
            with_filter(&raw, |filter| {
                call.store.range_search_with_ids(call.queries, radius, max_results, &search_params(&raw)?, filter)
            })?
        };
        // SAFETY: out_total per the documented contract.
        unsafe { write_range(call, &found, max_results, out_total) };
        ids.write_rows(std::slice::from_ref(&found.hits), &found.ids, max_results)
    })
}

/// A range search's hits, count and total.
///
/// # Safety
/// `out_total` is NULL or points to a writable u64.
unsafe fn write_range(call: SearchCall<'_>, found: &omendb::RangeResults, max_results: usize, out_total: *mut u64) {
    write_rows(std::slice::from_ref(&found.hits), max_results, call.hits, call.counts);
    // SAFETY: per this function's contract.
    if let Some(total) = unsafe { out_total.as_mut() } {
        *total = found.total;
    }
}

/// Opens a cursor over the live (ID, vector) pairs of the store as of
/// now: puts, deletes, compactions and trainings after this call do not
/// show in it (it sees one moment, never part of a batch), and it does not
/// block them. It costs one bit per slot of memory until closed. On
/// success `*out` receives a cursor the caller owns and must release with
/// omen_cursor_close (also after its store is closed); on failure `*out`
/// is set to NULL. After omen_close or omen_close_discard of its store,
/// omen_cursor_next returns OMEN_ERR_INVALID_ARGUMENT (the cursor never
/// reads files the store no longer guards); omen_close must not race with
/// omen_cursor_next on the same store. A cursor must not be used by two
/// threads at once (different cursors may). In a process forked from the
/// one that opened it, omen_cursor_next returns OMEN_ERR_INVALID_ARGUMENT
/// and omen_cursor_close only frees memory.
#[no_mangle]
pub unsafe extern "C" fn omen_cursor_open(s: *const omen_store, out: *mut *mut omen_cursor) -> omen_status {
    guard("omen_cursor_open", || {
        // SAFETY: pointers per the documented contract.
        let out = unsafe { out_param(out, "out")? };
        *out = std::ptr::null_mut();
        let store = unsafe { store_ref(s)? };
        *out = into_cursor_handle(store.cursor()?);
        Ok(())
    })
}

/// The cursor's next page of at most `max_n` (at least 1) entries, in slot
/// order (the order IDs were last put). The IDs go Arrow-style into
/// `ids_out` (`ids_cap` bytes; may be NULL when ids_cap is 0) with
/// `id_offsets_out` (max_n + 1 entries, the first 0): ID i is
/// `ids_out[id_offsets_out[i] .. id_offsets_out[i+1]]`. With `vectors_out`
/// (max_n * dim floats) not NULL, row i gets the vector of ID i, checked
/// against its stored checksum as omen_get does (OMEN_ERR_CORRUPT on a
/// mismatch); NULL reads IDs only. `*n_out` receives the number of
/// entries written; 0 means the cursor is at its end. A page stops before
/// an ID that does not fit in `ids_cap`; when not even the first one does,
/// OMEN_ERR_BUFFER_TOO_SMALL with `id_offsets_out[1]` set to the bytes it
/// needs (an ids_cap of OMEN_MAX_ID_LEN always suffices). A store that
/// keeps no raw vectors (DROP_RAW, trained before the cursor opened)
/// answers OMEN_ERR_INVALID_ARGUMENT to a non-NULL `vectors_out`. On any
/// error the cursor does not move and `*n_out` is 0.
#[no_mangle]
pub unsafe extern "C" fn omen_cursor_next(
    c: *mut omen_cursor,
    max_n: usize,
    ids_out: *mut u8,
    ids_cap: usize,
    id_offsets_out: *mut u64,
    vectors_out: *mut f32,
    n_out: *mut usize,
) -> omen_status {
    guard("omen_cursor_next", || {
        // SAFETY: pointers per the documented contract.
        let n_out = unsafe { out_param(n_out, "n_out")? };
        *n_out = 0;
        let cursor = unsafe { cursor_mut(c)? };
        let count = max_n.checked_add(1).ok_or_else(|| Error::invalid("max_n is too large"))?;
        let offsets = unsafe { host_slice_mut(id_offsets_out, count, "id_offsets_out")? };
        if ids_out.is_null() && ids_cap != 0 {
            return Err(null_error("ids_out"));
        }
        let ids = unsafe { host_slice_mut(ids_out, ids_cap, "ids_out")? };
        let vectors = if vectors_out.is_null() {
            None
        } else {
            let len = max_n.checked_mul(cursor.dim()).ok_or_else(|| Error::invalid("max_n * dim overflows"))?;
            Some(unsafe { host_slice_mut(vectors_out, len, "vectors_out")? })
        };
        *n_out = cursor.next_into(max_n, ids, offsets, vectors)?;
        Ok(())
    })
}

/// Frees a cursor. NULL, or a cursor already closed, is a no-op. Must not
/// race with omen_cursor_next on the same cursor. Allowed (and needed)
/// after its store was closed.
#[no_mangle]
pub unsafe extern "C" fn omen_cursor_close(c: *mut omen_cursor) {
    // A panic cannot cross the boundary; a void function reports nothing.
    let _ = guard("omen_cursor_close", || {
        // SAFETY: any pointer: take_cursor looks it up first.
        drop(unsafe { take_cursor(c) });
        Ok(())
    });
}

/// The ID of a search hit's key. Zero-copy: `*out_id` points into the store
/// and stays valid until the next omen_compact or omen_close on this store
/// (training, also of a DROP_RAW store, does not end it); it is not
/// NUL-terminated (`*out_len` bytes). Keys are valid just as long.
/// OMEN_ERR_NOT_FOUND for a key the store never issued, or one issued
/// before the last omen_compact (never another entry's ID).
#[no_mangle]
pub unsafe extern "C" fn omen_key_id(
    s: *const omen_store,
    key: u64,
    out_id: *mut *const u8,
    out_len: *mut usize,
) -> omen_status {
    guard("omen_key_id", || {
        // SAFETY: pointers per the documented contract.
        let store = unsafe { store_ref(s)? };
        let out_id = unsafe { out_param(out_id, "out_id")? };
        let out_len = unsafe { out_param(out_len, "out_len")? };
        let (ptr, len) = store.with_key_id(key, |id| (id.as_ptr(), id.len()))?;
        *out_id = ptr;
        *out_len = len;
        Ok(())
    })
}

/// Reclaims dead slots by rewriting the live data; also a checkpoint.
/// Invalidates every key and every omen_key_id pointer issued before (an
/// old key then answers OMEN_ERR_NOT_FOUND from omen_key_id).
#[no_mangle]
pub unsafe extern "C" fn omen_compact(s: *mut omen_store) -> omen_status {
    guard("omen_compact", || {
        // SAFETY: pointers per the documented contract.
        unsafe { store_ref(s)? }.compact()
    })
}

/// `sizeof(omen_stats)` before `pq_bits` and the fields after it were
/// added: callers built against that layout keep working.
const STATS_SIZE_BEFORE_PQ_BITS: usize = std::mem::offset_of!(omen_stats, pq_bits);

/// Fills `out` (its struct_size must be set) with the store's counters.
/// A struct_size from an older header (at least 72, the layout ending at
/// heap_bytes) gets the fields that fit in it; nothing past it is written.
#[no_mangle]
pub unsafe extern "C" fn omen_store_stats(s: *const omen_store, out: *mut omen_stats) -> omen_status {
    guard("omen_store_stats", || {
        // SAFETY: pointers per the documented contract.
        let store = unsafe { store_ref(s)? };
        if out.is_null() {
            return Err(null_error("out"));
        }
        // SAFETY: non-NULL (checked above), an omen_stats per the contract.
        let declared = unsafe { declared_size(out, STATS_SIZE_BEFORE_PQ_BITS, "omen_stats")? };
        let stats = store.stats()?;
        let filled = omen_stats {
            struct_size: declared,
            dim: stats.dim,
            metric: stats.metric,
            pq_m: stats.pq_m,
            pq_trained: stats.pq_trained as u32,
            raw_kept: stats.raw_kept as u32,
            live_vectors: stats.live_vectors,
            dead_slots: stats.dead_slots,
            checkpoint_seq: stats.checkpoint_seq,
            disk_bytes: stats.disk_bytes,
            payload_bytes: stats.payload_bytes,
            heap_bytes: stats.heap_bytes,
            pq_bits: stats.pq_bits,
            pq_train_size: stats.pq_train_size,
            drop_raw: stats.drop_raw as u32,
            reserved: 0,
            pq_auto_train_status: stats.auto_train_error.map_or(0, |kind| status_of(kind) as u32),
            ivf_lists: stats.ivf_lists,
            index_status: stats.index_damage.map_or(0, |kind| status_of(kind) as u32),
            calibration_queries: stats.calibration_queries,
            ivf_stages: stats.ivf_stages,
            ivf_list_code_bytes: stats.ivf_list_code_bytes,
        };
        let len = (declared as usize).min(std::mem::size_of::<omen_stats>());
        // SAFETY: the caller declared `declared` writable bytes at `out`, and
        // `len` is at most that and at most the size of `filled`; byte copies
        // need no alignment and the regions cannot overlap (`filled` is ours).
        unsafe { std::ptr::copy_nonoverlapping(&filled as *const omen_stats as *const u8, out as *mut u8, len) };
        Ok(())
    })
}

/// Checkpoints, then frees the store. NULL is a no-op. The handle is
/// invalid afterwards even on error, except when called from inside this
/// store's progress callback (refused: OMEN_ERR_INVALID_ARGUMENT, the
/// handle stays open). Must not race with other calls on the same handle.
/// In a process forked from the one that opened the store, it only frees
/// the child's memory (no checkpoint, no file is touched); every other call
/// on an inherited handle returns OMEN_ERR_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn omen_close(s: *mut omen_store) -> omen_status {
    // SAFETY: forwarded from this function's contract.
    unsafe { close_handle(s, "omen_close", Store::close) }
}

/// Frees the store without checkpointing: puts and deletes since the last
/// checkpoint are not committed (reopening finds the store as of its last
/// checkpoint), and the files are not trimmed. The writer lock is released:
/// another writer may open the store at once. On a read-only handle, the
/// same as omen_close. NULL is a no-op. The handle is invalid afterwards,
/// except when called from inside this store's progress callback (refused:
/// OMEN_ERR_INVALID_ARGUMENT, the handle stays open). Must not race with
/// other calls on the same handle. In a forked child, as omen_close: only
/// frees the child's memory.
#[no_mangle]
pub unsafe extern "C" fn omen_close_discard(s: *mut omen_store) -> omen_status {
    // SAFETY: forwarded from this function's contract.
    unsafe { close_handle(s, "omen_close_discard", Store::close_discard) }
}

/// Takes the handle `s` back (NULL: a no-op) and closes its store with
/// `close`, reporting as `function`.
///
/// # Safety
/// As `take_handle`: no other call on this handle may be running.
unsafe fn close_handle(s: *mut omen_store, function: &str, close: fn(Store) -> Result<()>) -> omen_status {
    if s.is_null() {
        return omen_status::OMEN_OK;
    }
    guard(function, || {
        // SAFETY: a handle from omen_open, not used concurrently (contract).
        let handle = unsafe { take_handle(s, function)? };
        close(handle.store)
    })
}

/// This thread's last error message; "" if none. Never NULL. The string is
/// owned by the library and valid until this thread's next failing call.
#[no_mangle]
pub extern "C" fn omen_last_error() -> *const c_char {
    last_error_ptr()
}

/// The name of a status ("OMEN_ERR_CORRUPT" ...), "OMEN_UNKNOWN" for other
/// values. A static string; never NULL.
#[no_mangle]
pub extern "C" fn omen_status_name(status: i32) -> *const c_char {
    let name: &'static CStr = match status {
        0 => c"OMEN_OK",
        1 => c"OMEN_ERR_INVALID_ARGUMENT",
        2 => c"OMEN_ERR_DIMENSION",
        3 => c"OMEN_ERR_NOT_FOUND",
        4 => c"OMEN_ERR_IO",
        5 => c"OMEN_ERR_CORRUPT",
        6 => c"OMEN_ERR_LOCKED",
        7 => c"OMEN_ERR_VERSION",
        8 => c"OMEN_ERR_READ_ONLY",
        9 => c"OMEN_ERR_NOT_TRAINED",
        10 => c"OMEN_ERR_BUFFER_TOO_SMALL",
        11 => c"OMEN_ERR_INTERNAL",
        _ => c"OMEN_UNKNOWN",
    };
    name.as_ptr()
}

/// The library version, e.g. "0.1.0". A static string; never NULL.
#[no_mangle]
pub extern "C" fn omen_version() -> *const c_char {
    const VERSION: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("version contains NUL"),
    };
    VERSION.as_ptr()
}
