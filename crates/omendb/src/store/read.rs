//! The read path: get, get_batch, key_id, search. Readers share the view
//! lock; every vector handed out is checked against its stored checksum.

use std::sync::atomic::Ordering;

use parking_lot::RwLockReadGuard;

use super::generation::Generation;
use super::{LiveSet, Store, View};
use crate::ids::batch::{display_id, IdBatch};
use crate::search::blocked::{Blocked, QUERY_BLOCK, TILE};
use crate::search::distance::PreparedQuery;
use crate::error::{Error, ErrorKind, Result};
use crate::storage::format::SlotRecord;
use crate::quantization::TopK;

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Names the vector's entry for `key_id`: valid while the store is
    /// open and not compacted (a key from before a compaction is refused
    /// as stale, never resolved to another ID).
    pub key: u64,
    /// Distance to the query in the store's metric (smaller is closer).
    pub distance: f32,
}

/// Search results with the ID of every hit, resolved under the same view
/// of the store the search ran on (so a write or compaction racing with
/// the search cannot leave a hit without its ID).
#[derive(Debug, Clone, Default)]
pub struct SearchResults {
    /// One list per query, ascending by distance.
    pub hits: Vec<Vec<Hit>>,
    /// The ID of every hit: query 0's hits in order, then query 1's, ...
    pub ids: crate::IdBuf,
}

/// Chunks of a batch's queries per search thread (`Store::search_rows`):
/// enough that threads finishing early take more.
const CHUNKS_PER_THREAD: usize = 4;

/// Bytes a query must read for each thread its work is split among
/// (`SearchParams::query_threads`): a sleeping worker takes about 30 us
/// to wake here, and the parts' candidates must be merged. On this
/// project's 2-core host, IVF queries of 100,000 x 768 (1-2 MB of codes
/// read) answered 0.8-1.1x the queries/s split in two (when the split
/// began at 256 KiB a thread); of 1M x 768 (24-45 MB), 1.27-1.60x
/// (`ivf_put latency`, docs/benchmarks.md). Hence 2 MiB. (The unit tests split small stores.)
const SPLIT_MIN_BYTES: usize = if cfg!(test) { 1 << 10 } else { 2 << 20 };

/// The threads a query's work reading `bytes` is split among: at most
/// `query_threads`, each reading at least `SPLIT_MIN_BYTES`.
pub(super) fn split_parts(query_threads: u32, bytes: usize) -> usize {
    let parts = (query_threads as usize).min(bytes / SPLIT_MIN_BYTES).max(1);
    #[cfg(test)]
    if parts > 1 {
        SPLITS.with(|splits| splits.set(splits.get() + 1));
    }
    parts
}

#[cfg(test)]
thread_local! {
    /// Splits `split_parts` chose on this thread (the tests' proof that a
    /// search they compare was split).
    pub(super) static SPLITS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How to search; `SearchParams::default()` is a PQ search when the store
/// is trained, else exact. Not `#[non_exhaustive]`, for the same reason as
/// `Options`: callers build it with struct-update syntax
/// (`SearchParams { rerank: 100, ..Default::default() }`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SearchParams {
    /// Re-rank this many PQ candidates with exact distances; 0 = none.
    pub rerank: u32,
    /// Exact scan of the raw vectors (no PQ).
    pub exact: bool,
    /// Threads for batch search; 0 = the store's default.
    pub threads: u32,
    /// IVF stores: the lists to scan per query; 0 = as `target_recall` needs.
    pub nprobe: u32,
    /// IVF stores: the recall@10 to aim at (0 < t <= 1), as measured at
    /// training on the store's own vectors; 0 = 0.95. Chooses `nprobe` and
    /// (unless `rerank` is given) the re-rank depth. Ignored with `nprobe`.
    pub target_recall: f32,
    /// Threads that share each query's own work (the lists or codes it
    /// scans, the vectors it reads, its re-rank), this one among them;
    /// 0 or 1 = one; at most 1024. A query is split only as far as it
    /// reads 2 MiB a thread; hits are the same as on one thread, bit for
    /// bit. For latency: `threads` spreads a batch's queries instead.
    pub query_threads: u32,
}

/// How a search runs (`Store::search_plan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMethod {
    /// Exact distances to every live vector.
    Exact,
    /// A scan of every PQ code, then the re-rank.
    PqScan,
    /// The codes of the IVF index's `nprobe` nearest lists, then the re-rank.
    Ivf,
}

/// How `Store::search` runs a query with given parameters (and filter).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchPlan {
    /// Exact, a scan of every code, or the IVF index.
    pub method: SearchMethod,
    /// IVF: the lists probed a query; 0 otherwise.
    pub nprobe: u32,
    /// Candidates whose exact distances rank the results (at least k when
    /// any); 0 = the codes' order alone, or an exact search.
    pub rerank: u32,
    /// IVF without an explicit `nprobe`: the recall@10 that training
    /// measured for this setting on the store's own vectors, less one
    /// standard error (the calibration's point, see `Store::calibration`;
    /// with a filter, the unfiltered setting's, whose probe count the
    /// filter raised).
    pub calibrated_recall: Option<f32>,
}

/// Which vectors a search may return, besides being live: those whose ID
/// is in `ids` (when given) and that `accept` accepts (when given).
/// `Filter::default()` allows every live vector.
///
/// A small allowed set is searched exactly (distances to each allowed
/// vector) instead of by scanning every PQ code, when that reads fewer
/// bytes; otherwise the scan skips what the filter excludes. Either way,
/// no hit is outside the filter.
#[derive(Clone, Copy, Default)]
pub struct Filter<'a> {
    /// Only these IDs (IDs the store does not hold are ignored).
    pub ids: Option<IdBatch<'a>>,
    /// Only IDs for which it returns true. It runs on the calling thread,
    /// once per candidate per call (not per query of a batch), with no
    /// lock of the store held: it may call back into the store.
    #[allow(clippy::type_complexity)]
    pub accept: Option<&'a dyn Fn(&[u8]) -> bool>,
}

impl std::fmt::Debug for Filter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("ids", &self.ids.map(|ids| ids.len()))
            .field("accept", &self.accept.is_some())
            .finish()
    }
}

impl Store {
    /// Copies the vector of `id` into `out` (at least `dim` floats).
    pub fn get_into(&self, id: &[u8], out: &mut [f32]) -> Result<()> {
        self.check_usable()?;
        crate::ids::batch::check_id_len(id.len() as u64, format_args!("the id"))?;
        if out.len() < self.dim {
            return Err(Error::new(
                ErrorKind::BufferTooSmall,
                format!("output holds {} floats, the store's vectors have {}", out.len(), self.dim),
            ));
        }
        let view = self.view.read();
        let (slot, record) = lookup(&view, id).ok_or_else(|| {
            Error::new(ErrorKind::NotFound, format!("no vector with id {}", display_id(id)))
        })?;
        view.generation.copy_vector(slot, &record, &mut out[..self.dim])
    }

    /// The vector of `id`; `NotFound` when there is none.
    pub fn get(&self, id: &[u8]) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.dim];
        self.get_into(id, &mut out)?;
        Ok(out)
    }

    /// Whether the store holds a vector with `id`, without reading the
    /// vector. IDs are checked like `get`'s (1 to `MAX_ID_LEN` bytes).
    pub fn contains(&self, id: &[u8]) -> Result<bool> {
        self.check_usable()?;
        crate::ids::batch::check_id_len(id.len() as u64, format_args!("the id"))?;
        Ok(lookup(&self.view.read(), id).is_some())
    }

    /// Fills row i of `out` with the vector of ID i; a missing ID leaves
    /// its row zeroed and `found[i] = false`. A damaged vector fails the call.
    pub fn get_batch_into(&self, ids: &IdBatch<'_>, out: &mut [f32], mut found: Option<&mut [u8]>) -> Result<()> {
        self.check_usable()?;
        let n = ids.len();
        if out.len() < n * self.dim || found.as_ref().is_some_and(|f| f.len() < n) {
            return Err(Error::new(ErrorKind::BufferTooSmall, format!("output buffers too small for {n} ids")));
        }
        let view = self.view.read();
        let generation = &view.generation;
        // In groups, stage by stage, so the cache misses of different IDs
        // overlap instead of each lookup waiting on its own chain of them
        // (table, slot record, ID bytes, vector): first every ID is hashed
        // and its table line requested; then every ID's table probe, taking
        // the first slot whose hash tag matches as its candidate (nearly
        // always the one) and starting its record and vector loading; then
        // the ID bytes of candidates whose IDs are too long for a slot
        // record's head; then the checks and copies. A candidate
        // that is not the ID (a tag collision) falls back to a full lookup.
        const GROUP: usize = 8;
        let dim = self.dim.max(1);
        for start in (0..n).step_by(GROUP) {
            let end = (start + GROUP).min(n);
            let mut hashes = [0u64; GROUP];
            for (i, hash) in (start..end).zip(hashes.iter_mut()) {
                *hash = view.index.hash(ids.get(i));
                view.index.prefetch(*hash);
            }
            let mut candidates = [None; GROUP];
            for (hash, candidate) in hashes[..end - start].iter().zip(candidates.iter_mut()) {
                *candidate = view.index.find_hashed(*hash, |slot| {
                    generation.prefetch_slot(slot as u64);
                    true
                });
            }
            let mut records = [None; GROUP];
            for (candidate, record) in candidates.iter().zip(records.iter_mut()) {
                *record = candidate.and_then(|slot| generation.slot_record(slot as u64).ok());
                if let Some(record) = record {
                    generation.prefetch_id(record);
                }
            }
            for (i, candidate) in (start..end).zip(candidates) {
                let id = ids.get(i);
                let hit = match (candidate, records[i - start]) {
                    (Some(slot), Some(record)) if generation.holds(slot as u64, &record, id) => Some((slot as u64, record)),
                    (Some(_), _) => lookup(&view, id),
                    (None, _) => None,
                };
                let row = &mut out[i * dim..(i + 1) * dim];
                match &hit {
                    Some((slot, record)) => generation.copy_vector(*slot, record, row)?,
                    None => row.fill(0.0),
                }
                if let Some(found) = found.as_deref_mut() {
                    found[i] = hit.is_some() as u8;
                }
            }
        }
        Ok(())
    }

    /// The IDs of every live vector, in the order they were first stored
    /// (slot order), as of one moment: no batch is half in it.
    pub fn live_ids(&self) -> Result<crate::IdBuf> {
        self.check_usable()?;
        let view = self.view.read();
        let mut ids = crate::IdBuf::with_capacity(view.index.len(), view.live_id_bytes as usize);
        for slot in view.live.iter() {
            ids.push(view.generation.id(slot)?);
        }
        Ok(ids)
    }

    /// The ID of a search hit's key, copied.
    pub fn key_id(&self, key: u64) -> Result<Vec<u8>> {
        self.with_key_id(key, |id| id.to_vec())
    }

    /// Calls `f` with the ID bytes of `key`, in place in the mapped file.
    /// (The C API hands out the pointer itself: it stays valid until the
    /// next compaction or close, which the C contract makes the host's duty.)
    /// Keys issued before a compressing training (which renumbers the
    /// slots) still resolve, through the ID tables kept for them until the
    /// next compaction; a key from before a compaction is `NotFound`.
    pub fn with_key_id<T>(&self, key: u64, f: impl FnOnce(&[u8]) -> T) -> Result<T> {
        self.check_usable()?;
        let view = self.view.read();
        let current = &view.generation;
        if let Some(slot) = current.slot_of_key(key) {
            return Ok(f(current.id(slot)?));
        }
        let retired = self.retired.lock();
        if let Some((generation, slot)) = retired.iter().find_map(|g| Some((g, g.slot_of_key(key)?))) {
            return Ok(f(generation.id(slot)?));
        }
        let why = if key >> 32 < current.key_tag() {
            "it was issued before the last compaction of this store; search again"
        } else {
            "this store never issued it"
        };
        Err(Error::new(ErrorKind::NotFound, format!("no key {key}: {why}")))
    }

    pub(super) fn check_query(&self, query: &[f32]) -> Result<()> {
        if query.len() != self.dim {
            return Err(Error::new(
                ErrorKind::Dimension,
                format!("query has {} values, the store's vectors have {}", query.len(), self.dim),
            ));
        }
        if !super::write::all_finite(query) {
            let at = super::write::first_non_finite(query);
            return Err(Error::invalid(format!("query holds {} at index {at}; values must be finite", query[at])));
        }
        Ok(())
    }

    /// The `k` nearest live vectors, ascending by distance.
    /// Without trained PQ, or with `params.exact`, an exact scan; otherwise
    /// an ADC scan of the codes, re-ranked exactly when `params.rerank > 0`.
    pub fn search(&self, query: &[f32], k: usize, params: &SearchParams) -> Result<Vec<Hit>> {
        self.search_filtered(query, k, params, &Filter::default())
    }

    /// How `search` would run a query for `k` results with `params` (no
    /// filter): the method, the lists probed and candidates re-ranked,
    /// and, where the calibration chose them, the recall it measured.
    /// Errors as the search would on the parameters (an exact search of a
    /// store without raw vectors).
    pub fn search_plan(&self, k: usize, params: &SearchParams) -> Result<SearchPlan> {
        self.search_plan_filtered(k, params, &Filter::default())
    }

    /// `search_plan` of `search_filtered` with `filter`: a small allowed
    /// set is searched exactly, a larger one probes more lists (evaluating
    /// the filter, as the search does).
    pub fn search_plan_filtered(&self, k: usize, params: &SearchParams, filter: &Filter<'_>) -> Result<SearchPlan> {
        self.check_usable()?;
        check_search_params(params)?;
        let (view, allowed) = self.candidates(filter)?;
        let candidates = candidate_set(&view, &allowed);
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let method = method_of(&view, params, candidates)?;
        let (nprobe, rerank, point) = match (method, &view.generation.pq, &view.lists) {
            (SearchMethod::Ivf, Some(pq), Some(lists)) => super::ivf::plan(&view, pq, lists, params, k, allowed.as_ref()),
            (SearchMethod::PqScan, ..) => (0, super::pq::rerank_kept(&view.generation, params.rerank as usize), None),
            _ => (0, 0, None),
        };
        Ok(SearchPlan {
            method,
            nprobe: count(nprobe),
            rerank: count(super::pq::reranked(rerank, k)),
            calibrated_recall: point.map(|p| p.recall),
        })
    }

    /// The IVF index's calibration: the settings training measured and
    /// kept (none beats another on both recall and cost), cheapest first;
    /// a target gets the first whose recall reaches it. Empty without an
    /// IVF index, or where training had no raw vectors to measure with.
    pub fn calibration(&self) -> Result<Vec<crate::index::CalibrationPoint>> {
        self.check_usable()?;
        let view = self.view.read();
        let points = view.generation.pq.as_ref().and_then(|pq| pq.quantizer.ivf.as_ref()).map(|ivf| ivf.calibration().points().to_vec());
        Ok(points.unwrap_or_default())
    }

    /// Like `search`, among the live vectors that `filter` allows only.
    pub fn search_filtered(&self, query: &[f32], k: usize, params: &SearchParams, filter: &Filter<'_>) -> Result<Vec<Hit>> {
        self.check_usable()?;
        self.check_query(query)?;
        self.search_rows(&[query], k, params, filter, 1, |_, mut hits| Ok(hits.pop().unwrap_or_default()))
    }

    /// Like `search_filtered`, with the ID of every hit (`hits` holds one
    /// list), resolved under the view the search ran on.
    pub fn search_with_ids(&self, query: &[f32], k: usize, params: &SearchParams, filter: &Filter<'_>) -> Result<SearchResults> {
        self.check_usable()?;
        self.check_query(query)?;
        self.search_rows(&[query], k, params, filter, 1, with_ids)
    }

    /// One result list per query (`queries` holds them row-major), computed
    /// in parallel on up to `params.threads` threads.
    pub fn search_batch(&self, queries: &[f32], k: usize, params: &SearchParams) -> Result<Vec<Vec<Hit>>> {
        self.search_batch_filtered(queries, k, params, &Filter::default())
    }

    /// Like `search_batch`, among the live vectors that `filter` allows
    /// only (the filter is evaluated once for the whole batch).
    pub fn search_batch_filtered(
        &self,
        queries: &[f32],
        k: usize,
        params: &SearchParams,
        filter: &Filter<'_>,
    ) -> Result<Vec<Vec<Hit>>> {
        let (rows, threads) = self.batch_rows(queries, params)?;
        self.search_rows(&rows, k, params, filter, threads, |_, hits| Ok(hits))
    }

    /// Like `search_batch_filtered`, with the ID of every hit, resolved
    /// under the view the searches ran on.
    pub fn search_batch_with_ids(
        &self,
        queries: &[f32],
        k: usize,
        params: &SearchParams,
        filter: &Filter<'_>,
    ) -> Result<SearchResults> {
        let (rows, threads) = self.batch_rows(queries, params)?;
        self.search_rows(&rows, k, params, filter, threads, with_ids)
    }

    /// `queries` as rows of `dim`, each checked as a search checks its query.
    pub(super) fn query_rows<'q>(&self, queries: &'q [f32]) -> Result<Vec<&'q [f32]>> {
        let dim = self.dim.max(1);
        if !queries.len().is_multiple_of(dim) {
            return Err(Error::new(ErrorKind::Dimension, format!("queries length {} is not a multiple of dim {dim}", queries.len())));
        }
        let rows: Vec<&[f32]> = queries.chunks_exact(dim).collect();
        for row in &rows {
            self.check_query(row)?;
        }
        Ok(rows)
    }

    /// The checked rows of a batch of queries and the threads to search them on.
    fn batch_rows<'q>(&self, queries: &'q [f32], params: &SearchParams) -> Result<(Vec<&'q [f32]>, usize)> {
        self.check_usable()?;
        let rows = self.query_rows(queries)?;
        super::check_threads(params.threads, "search threads")?;
        let threads = match params.threads {
            0 => self.threads,
            t => t as usize,
        }
        .clamp(1, rows.len().max(1));
        Ok((rows, threads))
    }

    /// Searches `rows` on up to `threads` threads, then hands the results
    /// to `finish` while the view they came from is still held.
    pub(super) fn search_rows<T>(
        &self,
        rows: &[&[f32]],
        k: usize,
        params: &SearchParams,
        filter: &Filter<'_>,
        threads: usize,
        finish: impl FnOnce(&View, Vec<Vec<Hit>>) -> Result<T>,
    ) -> Result<T> {
        check_search_params(params)?;
        let (view, allowed) = self.candidates(filter)?;
        let candidates = candidate_set(&view, &allowed);
        if exact_search(&view, params, candidates) && Blocked::applies(rows.len(), k) {
            // Threads split the vectors, not the queries: each product
            // then has every query (see `blocked_scan`).
            let hits = blocked_scan(&view.generation, self, rows, k, candidates, threads)?;
            return finish(&view, hits);
        }
        if threads <= 1 {
            let hits = search_queries(&view, self, rows, k, params, candidates)?;
            return finish(&view, hits);
        }
        // Threads take chunks of queries as they finish their last (this
        // thread too): queries differ in cost (lists probed, their sizes,
        // a filter), and halves fixed in advance left a thread idle at
        // the end of small batches. Where the IVF scans group queries (a
        // group shares each list's reads), a chunk is a whole group, or
        // an even share of a smaller batch, so that sharing stays as it was.
        let grouped = match (&view.generation.pq, &view.lists) {
            (Some(pq), Some(lists)) => super::ivf::groups_queries(pq, lists),
            _ => false,
        };
        let chunk = if grouped {
            rows.len().div_ceil(threads).clamp(1, super::ivf::QUERY_GROUP)
        } else {
            rows.len().div_ceil(threads * CHUNKS_PER_THREAD).max(1)
        };
        let chunks = rows.len().div_ceil(chunk);
        let view_ref = &*view;
        let parts = crate::parallel::claimed(chunks, threads, |i| {
            let part = &rows[i * chunk..((i + 1) * chunk).min(rows.len())];
            crate::parallel::or_internal("search worker", || search_queries(view_ref, self, part, k, params, candidates))
        });
        let mut out = Vec::with_capacity(rows.len());
        for part in parts {
            out.extend(part?);
        }
        finish(&view, out)
    }

    /// The view a search runs on, and the slots it may return: the live
    /// ones, or those `filter` allows too. A predicate runs on this thread
    /// with no lock held (it may call back into the store, even write to
    /// it), over the IDs of a snapshot; the result is then intersected
    /// with the live set of the view the search runs on, so a vector
    /// deleted meanwhile is never returned. If a compaction renumbered the
    /// slots meanwhile, the filter is evaluated again.
    /// `None` for an unfiltered search: then the view's live set is the
    /// candidate set, borrowed (see `candidate_set`).
    pub(super) fn candidates(&self, filter: &Filter<'_>) -> Result<(RwLockReadGuard<'_, View>, Option<LiveSet>)> {
        const ATTEMPTS: usize = 8;
        let Some(accept) = filter.accept else {
            // No callback: the view stays locked from the ID lookups to the search.
            let view = self.view.read();
            let allowed = filter.ids.map(|ids| allowed_ids(&view, &ids));
            return Ok((view, allowed));
        };
        for _ in 0..ATTEMPTS {
            let (generation, candidates) = {
                let view = self.view.read();
                let candidates = match &filter.ids {
                    Some(ids) => allowed_ids(&view, ids),
                    None => view.live.clone(),
                };
                (view.generation.clone(), candidates)
            };
            let mut allowed = LiveSet::default();
            allowed.grow(generation.slot_count());
            for slot in candidates.iter() {
                if accept(generation.id(slot)?) {
                    allowed.set(slot);
                }
            }
            let view = self.view.read();
            // Same slot numbering: no compaction or compressing training since.
            if view.generation.number == generation.number {
                allowed.intersect(&view.live);
                return Ok((view, Some(allowed)));
            }
        }
        Err(Error::new(
            ErrorKind::Internal,
            format!("the store was rewritten {ATTEMPTS} times while a search filter was evaluated"),
        ))
    }

    /// Whether the store is usable (not closed, not broken).
    pub fn is_open(&self) -> bool {
        !self.closed.load(Ordering::SeqCst) && !self.broken.load(Ordering::SeqCst)
    }
}

/// The live slots of the IDs in `ids` (the ID table holds only live ones).
fn allowed_ids(view: &View, ids: &IdBatch<'_>) -> LiveSet {
    let mut allowed = LiveSet::default();
    allowed.grow(view.generation.slot_count());
    for id in ids.iter() {
        if let Some((slot, _)) = lookup(view, id) {
            allowed.set(slot);
        }
    }
    allowed
}

/// `hits` with their IDs, read from `view`, the view that issued their keys.
pub(super) fn with_ids(view: &View, hits: Vec<Vec<Hit>>) -> Result<SearchResults> {
    let generation = &view.generation;
    let count = hits.iter().map(Vec::len).sum();
    let mut ids = crate::IdBuf::with_capacity(count, count * 16);
    for hit in hits.iter().flatten() {
        let slot = generation.slot_of_key(hit.key).ok_or_else(|| {
            Error::new(ErrorKind::Internal, format!("search hit key {} is not of the view it came from", hit.key))
        })?;
        ids.push(generation.id(slot)?);
    }
    Ok(SearchResults { hits, ids })
}

/// The slots a search may return: those a filter allowed, else every live one.
pub(super) fn candidate_set<'a>(view: &'a View, allowed: &'a Option<LiveSet>) -> &'a LiveSet {
    allowed.as_ref().unwrap_or(&view.live)
}

/// The slot of `id` and its record (read once, for the ID comparison and
/// then for the vector's checksum).
#[inline]
pub(super) fn lookup(view: &View, id: &[u8]) -> Option<(u64, SlotRecord)> {
    let generation = &view.generation;
    let mut record = None;
    let slot = view.index.find(id, |slot| {
        record = generation.record_if_id(slot as u64, id);
        record.is_some()
    })?;
    Some((slot as u64, record?))
}

/// Searches `queries` (one for `search`, a worker's share for
/// `search_batch`): PQ queries go through the codes in groups that share one
/// pass (`pq::SCAN_GROUP`); exact searches one by one (batches large
/// enough for a matrix product went to `blocked_scan` instead).
fn search_queries(
    view: &View,
    store: &Store,
    queries: &[&[f32]],
    k: usize,
    params: &SearchParams,
    candidates: &LiveSet,
) -> Result<Vec<Vec<Hit>>> {
    match (method_of(view, params, candidates)?, &view.generation.pq, &view.lists) {
        (SearchMethod::Ivf, Some(pq), Some(lists)) => {
            let allowed = (!std::ptr::eq(candidates, &view.live)).then_some(candidates);
            super::ivf::ivf_search_many(view, store, pq, lists, queries, k, params, allowed)
        }
        (SearchMethod::PqScan, Some(pq), _) => {
            let mut out = Vec::with_capacity(queries.len());
            for group in queries.chunks(crate::quantization::SCAN_GROUP) {
                out.extend(super::pq::pq_search_many(view, store, pq, group, k, params.rerank as usize, candidates, params.query_threads)?);
            }
            Ok(out)
        }
        _ => queries.iter().map(|q| exact_scan(&view.generation, store, q, k, candidates, params.query_threads)).collect(),
    }
}

/// What every search (and its plan) refuses in `params` whatever the
/// store: a `query_threads` over `MAX_THREADS`.
fn check_search_params(params: &SearchParams) -> Result<()> {
    super::check_threads(params.query_threads, "query threads")
}

/// How a search of `candidates` with `params` runs on `view`: the IVF
/// index or every code when PQ is trained and the search is not exact
/// (`exact_search`), else exact, which needs the raw vectors. One choice
/// for the search and its plan (`Store::search_plan_filtered`).
fn method_of(view: &View, params: &SearchParams, candidates: &LiveSet) -> Result<SearchMethod> {
    match (&view.generation.pq, &view.lists) {
        (Some(_), Some(_)) if !exact_search(view, params, candidates) => Ok(SearchMethod::Ivf),
        (Some(_), None) if !exact_search(view, params, candidates) => Ok(SearchMethod::PqScan),
        _ if view.generation.vectors.is_none() => Err(no_raw_vectors()),
        _ => Ok(SearchMethod::Exact),
    }
}

/// An exact search of a store that keeps only PQ codes.
fn no_raw_vectors() -> Error {
    Error::invalid("exact search needs raw vectors; this compressed store keeps only PQ codes")
}

/// Whether a search computes exact distances to the candidates (no PQ,
/// `params.exact`, or a small filtered set: `scan_directly`) rather than
/// scanning PQ codes.
fn exact_search(view: &View, params: &SearchParams, candidates: &LiveSet) -> bool {
    match &view.generation.pq {
        Some(pq) => params.exact || scan_directly(view, pq, candidates),
        None => true,
    }
}

/// Whether a filtered PQ search should compute exact distances to the
/// allowed vectors instead of scanning every code: when that reads fewer
/// bytes (with PQ32 at 768 dimensions, an allowed set under 1% of the
/// store). It is then exact, so also more accurate.
fn scan_directly(view: &View, pq: &super::generation::PqData, candidates: &LiveSet) -> bool {
    let generation = &view.generation;
    if generation.vectors.is_none() || std::ptr::eq(candidates, &view.live) {
        return false;
    }
    let raw_bytes = candidates.count() * super::generation::vector_record_len(generation.dim);
    raw_bytes <= generation.slot_count() * pq.quantizer.code_size() as u64
}

/// Distances to every live vector; the best `k`, whose vectors are then
/// verified against their checksums before they are reported.
/// With `query_threads` > 1, the candidates are split into runs of
/// consecutive slots, one a thread (`split_parts`), and the best `k` of
/// the runs' best are the same hits.
pub(super) fn exact_scan(generation: &Generation, store: &Store, query: &[f32], k: usize, candidates: &LiveSet, query_threads: u32) -> Result<Vec<Hit>> {
    // (Counting the candidates is a pass over the live set: not for one
    // thread, whose filtered searches scan a few allowed vectors directly.)
    let parts = match query_threads {
        0 | 1 => 1,
        _ => split_parts(query_threads, usize::try_from(candidates.count()).unwrap_or(usize::MAX).saturating_mul(4 * generation.dim)),
    };
    if parts == 1 {
        return exact_top(generation, store, query, k, candidates.iter());
    }
    let runs = candidates.split(parts);
    let tops = crate::parallel::concurrently(runs.len(), |r| exact_kept(generation, store, query, k, candidates.iter_words(runs[r].clone())));
    verified_hits(generation, TopK::merged(k, tops.into_iter().collect::<Result<Vec<_>>>()?))
}

/// The best `k` of `slots` by the exact kernels, verified as `exact_scan`'s.
fn exact_top(generation: &Generation, store: &Store, query: &[f32], k: usize, slots: impl Iterator<Item = u64>) -> Result<Vec<Hit>> {
    verified_hits(generation, exact_kept(generation, store, query, k, slots)?)
}

/// The best `k` of `slots` by the exact kernels, not yet verified.
fn exact_kept(generation: &Generation, store: &Store, query: &[f32], k: usize, slots: impl Iterator<Item = u64>) -> Result<TopK> {
    let prepared = PreparedQuery::new(query, store.metric);
    let mut top = TopK::new(k);
    let needs_norm = store.metric == crate::options::Metric::Cosine;
    for slot in slots {
        let vector = generation.vector_unchecked(slot)?;
        let norm = if needs_norm { generation.slot_record(slot)?.norm } else { 0.0 };
        top.push(prepared.distance(vector, norm), slot);
    }
    Ok(top)
}

/// The pairs of `top` as hits, nearest first, each vector verified against
/// its checksum (a scan reads them unverified).
fn verified_hits(generation: &Generation, top: TopK) -> Result<Vec<Hit>> {
    let hits = top.into_sorted_vec();
    for &(_, slot) in &hits {
        generation.vector(slot, &generation.slot_record(slot)?)?;
    }
    Ok(hits.into_iter().map(|(distance, slot)| Hit { key: generation.key(slot), distance }).collect())
}

/// Exact search of a batch as blocked matrix products
/// (`search::blocked`): the candidates are split into `threads` parts of
/// consecutive slots, each searched for every query of a block on its own
/// thread; then each query's candidates from all parts get `exact_top`, so
/// every result equals `exact_scan`'s. A query that a part gives up on
/// (too many near-ties) gets `exact_scan`.
pub(super) fn blocked_scan(
    generation: &Generation,
    store: &Store,
    queries: &[&[f32]],
    k: usize,
    candidates: &LiveSet,
    threads: usize,
) -> Result<Vec<Vec<Hit>>> {
    if generation.vectors.is_none() {
        return Err(no_raw_vectors());
    }
    let parts = candidates.split(threads);
    let mut out = Vec::with_capacity(queries.len());
    for group in queries.chunks(QUERY_BLOCK) {
        let found = crate::parallel::concurrently(parts.len(), |p| {
            part_candidates(generation, store, group, k, candidates.iter_words(parts[p].clone()))
        });
        let mut merged: Vec<Option<Vec<u64>>> = vec![Some(Vec::new()); group.len()];
        for part in found {
            for (all, some) in merged.iter_mut().zip(part?) {
                match (all.as_mut(), some) {
                    (Some(all), Some(some)) => all.extend(some),
                    _ => *all = None,
                }
            }
        }
        for (query, found) in group.iter().zip(merged) {
            out.push(match found {
                Some(slots) => exact_top(generation, store, query, k, slots.into_iter())?,
                None => exact_scan(generation, store, query, k, candidates, 1)?,
            });
        }
    }
    Ok(out)
}

/// The candidates among `slots` (ascending) of each query of `queries`
/// (`None`: search it alone), from matrix products over tiles of their
/// vectors (`for_tiles`).
fn part_candidates(
    generation: &Generation,
    store: &Store,
    queries: &[&[f32]],
    k: usize,
    slots: impl Iterator<Item = u64>,
) -> Result<Vec<Option<Vec<u64>>>> {
    let cosine = store.metric == crate::options::Metric::Cosine;
    let mut blocked = Blocked::new(queries, generation.dim, store.metric, k);
    let mut norms = Vec::new();
    for_tiles(generation, slots, |vectors, tile, take| {
        if !blocked.active() {
            return Ok(false);
        }
        norms.clear();
        if cosine {
            for (&slot, &taken) in tile.iter().zip(take) {
                norms.push(if taken { generation.slot_record(slot)?.norm } else { 0.0 });
            }
        }
        blocked.add_tile(vectors, tile, take, &norms);
        Ok(blocked.active())
    })?;
    Ok(blocked.finish())
}

/// Runs `each` on the vectors of `slots` (ascending) a tile of up to
/// `TILE` at a time, with the tile's slots and which of them are in
/// `slots`: read in place where at least half of a run of `TILE` slots
/// are (the others masked), else gathered. Stops when `each` says so.
fn for_tiles(
    generation: &Generation,
    slots: impl Iterator<Item = u64>,
    mut each: impl FnMut(&[f32], &[u64], &[bool]) -> Result<bool>,
) -> Result<()> {
    let (mut tile, mut take, mut gathered) = (Vec::with_capacity(TILE), Vec::new(), Vec::new());
    let mut next = slots.peekable();
    loop {
        let Some(&first) = next.peek() else { return Ok(()) };
        tile.clear();
        while let Some(slot) = next.next_if(|&s| s < first + TILE as u64) {
            tile.push(slot);
        }
        let span = tile[tile.len() - 1] - first + 1;
        let dense = 2 * tile.len() as u64 >= span;
        let vectors = match if dense { generation.vectors_in(first, span)? } else { None } {
            Some(run) => {
                take.clear();
                take.resize(span as usize, false);
                for &slot in &tile {
                    take[(slot - first) as usize] = true;
                }
                tile.clear();
                tile.extend(first..first + span);
                run
            }
            None => {
                tile.extend(next.by_ref().take(TILE - tile.len()));
                gathered.clear();
                for &slot in &tile {
                    gathered.extend_from_slice(generation.vector_unchecked(slot)?);
                }
                take.clear();
                take.resize(tile.len(), true);
                &gathered[..]
            }
        };
        if !each(vectors, &tile, &take)? {
            return Ok(());
        }
    }
}

/// Exact L2 search of `queries` for `k` results each among `candidates`,
/// given for each query a distance `bounds[i]` that its `k`-th nearest is
/// within (the `k`-th smallest distance of some `k` candidates): a vector
/// is scored only where its distance to the query projected onto the
/// orthonormal directions `basis` (`d x dim`, around `mean`), which is at
/// most their distance, is within the bound, every rounding involved
/// allowed for. Projecting costs `d` multiply-adds of each vector's `dim`,
/// and a pair `d`, so with few directions that hold most of the spread
/// (the coarse quantizer's screen) few pairs are scored in full. The
/// results equal `exact_scan`'s (the same kernel, order and checks).
#[allow(clippy::too_many_arguments)]
pub(super) fn projected_scan(
    generation: &Generation,
    store: &Store,
    queries: &[&[f32]],
    k: usize,
    candidates: &LiveSet,
    threads: usize,
    (basis, mean): (&[f32], &[f32]),
    bounds: &[f32],
) -> Result<Vec<Vec<Hit>>> {
    if generation.vectors.is_none() {
        return Err(no_raw_vectors());
    }
    assert!(store.metric == crate::options::Metric::L2 && bounds.len() == queries.len(), "projected scan: L2, a bound a query");
    let (dim, nq) = (generation.dim, queries.len());
    let d = basis.len() / dim;
    let gemm = crate::quantization::gemm::product;
    let project = |rows: &[f32], n: usize, out: &mut Vec<f32>, norms: &mut Vec<f32>, centred: &mut Vec<f32>| {
        centred.clear();
        norms.clear();
        for r in rows.chunks_exact(dim) {
            centred.extend(r.iter().zip(mean).map(|(&a, &m)| a - m));
            let c = &centred[centred.len() - dim..];
            norms.push(crate::search::distance::dot(c, c).sqrt());
        }
        out.resize(n * d, 0.0);
        gemm(centred, n, basis, d, dim, out, true);
    };
    let (mut q_proj, mut q_norms) = (Vec::new(), Vec::new());
    project(&queries.concat(), nq, &mut q_proj, &mut q_norms, &mut Vec::new());
    let q_sq: Vec<f32> = q_proj.chunks_exact(d).map(|p| crate::search::distance::dot(p, p)).collect();
    // Roundings (u = f32::EPSILON / 2; each term over-counted): the
    // kernel's distance is within (dim + 3) u of the true one, so the true
    // k-th nearest is within `bound (1 + 2 gamma)`; the projection (f32
    // rows orthonormal to ~1e-7) stretches no distance by 1e-5; each
    // projected coordinate is within `e = gamma (|q'| + |x'|)` of the true
    // one, so a projected distance of at most D is computed as at most
    // `D + 2 sqrt(d D) e + d e^2`, and expanding it into `|p|^2 + |p_x|^2 -
    // 2 <p, p_x>` adds at most `2 gamma (|p|^2 + |p_x|^2)`.
    let gamma = (dim + 4) as f32 * f32::EPSILON;
    let widen = |b: f32| b * (1.0 + 2.0 * gamma) * (1.0 + 1e-5);
    let within: Vec<f32> = bounds.iter().map(|&b| widen(b)).collect();
    let prepared: Vec<PreparedQuery<'_>> = queries.iter().map(|q| PreparedQuery::new(q, store.metric)).collect();
    let parts = candidates.split(threads);
    let found = crate::parallel::concurrently(parts.len(), |p| -> Result<Vec<TopK>> {
        let mut tops: Vec<TopK> = (0..nq).map(|_| TopK::new(k)).collect();
        let (mut x_proj, mut x_norms, mut x_sq, mut dots) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut centred, mut limit) = (Vec::new(), vec![0.0f32; nq]);
        for_tiles(generation, candidates.iter_words(parts[p].clone()), |vectors, tile, take| {
            let n = tile.len();
            project(vectors, n, &mut x_proj, &mut x_norms, &mut centred);
            x_sq.clear();
            x_sq.extend(x_proj.chunks_exact(d).map(|p| crate::search::distance::dot(p, p)));
            dots.resize(n * nq, 0.0);
            gemm(&x_proj, n, &q_proj, nq, d, &mut dots, true);
            // One limit a query for the whole tile, from its largest norms.
            let (x_norm, x_sq_max) = (x_norms.iter().fold(0.0f32, |a, &b| a.max(b)), x_sq.iter().fold(0.0f32, |a, &b| a.max(b)));
            for (q, l) in limit.iter_mut().enumerate() {
                let e = gamma * (q_norms[q] + x_norm);
                // The bound, or tighter, the k-th distance found so far.
                let w = within[q].min(widen(tops[q].threshold()));
                *l = (w + 2.0 * (d as f32 * w).sqrt() * e + d as f32 * e * e + 2.0 * gamma * (q_sq[q] + x_sq_max)) * (1.0 + 2.0 * gamma);
            }
            for (x, ((&slot, &taken), row)) in tile.iter().zip(take).zip(dots.chunks_exact(nq)).enumerate() {
                if !taken {
                    continue;
                }
                let vector = &vectors[x * dim..(x + 1) * dim];
                for (q, (&dot, &l)) in row.iter().zip(&limit).enumerate() {
                    if q_sq[q] + x_sq[x] - 2.0 * dot <= l {
                        tops[q].push(prepared[q].distance(vector, 0.0), slot);
                    }
                }
            }
            Ok(true)
        })?;
        Ok(tops)
    });
    let mut merged: Vec<TopK> = (0..nq).map(|_| TopK::new(k)).collect();
    for part in found {
        for (all, some) in merged.iter_mut().zip(part?) {
            all.merge(some);
        }
    }
    merged.into_iter().map(|top| verified_hits(generation, top)).collect()
}
