//! Searches beyond k-nearest of a given query: by a stored ID's vector,
//! and every vector within a distance (range search).

use super::read::{candidate_set, with_ids, Filter, Hit, SearchParams, SearchResults};
use super::{LiveSet, Store, View};
use crate::error::{Error, ErrorKind, Result};
use crate::options::Metric;
use crate::quantization::TopK;
use crate::search::distance::PreparedQuery;

/// What [`Store::range_search`] found.
#[derive(Debug, Clone, Default)]
pub struct RangeResults {
    /// The closest of the vectors within the radius, at most the cap
    /// asked for, ascending by distance.
    pub hits: Vec<Hit>,
    /// The ID of every hit, in order ([`Store::range_search_with_ids`];
    /// empty from the other range searches).
    pub ids: crate::IdBuf,
    /// How many vectors lie within the radius in all: more than
    /// `hits.len()` when the cap cut the list.
    pub total: u64,
}

/// Slots one thread of a range search scans at least (fewer threads below).
const RANGE_SLOTS_PER_THREAD: u64 = 16384;

impl Store {
    /// The `k` nearest live vectors to the vector stored under `id` (the
    /// vector it holds when the call starts, as `get` returns it: in a
    /// store that keeps only PQ codes, its PQ reconstruction), searched as
    /// `search` does. With `exclude_self`, the entry of `id` itself is left
    /// out (the `k` others are returned). `NotFound` when the store holds
    /// no `id`.
    pub fn search_by_id(&self, id: &[u8], k: usize, params: &SearchParams, exclude_self: bool) -> Result<Vec<Hit>> {
        self.search_by_id_filtered(id, k, params, exclude_self, &Filter::default())
    }

    /// Like `search_by_id`, among the live vectors that `filter` allows only.
    pub fn search_by_id_filtered(
        &self,
        id: &[u8],
        k: usize,
        params: &SearchParams,
        exclude_self: bool,
        filter: &Filter<'_>,
    ) -> Result<Vec<Hit>> {
        self.by_id(id, k, params, exclude_self, filter, |_, mut hits| Ok(hits.pop().unwrap_or_default()))
    }

    /// Like `search_by_id_filtered`, with the ID of every hit, resolved
    /// under the view the search ran on (`hits` holds one list).
    pub fn search_by_id_with_ids(
        &self,
        id: &[u8],
        k: usize,
        params: &SearchParams,
        exclude_self: bool,
        filter: &Filter<'_>,
    ) -> Result<SearchResults> {
        self.by_id(id, k, params, exclude_self, filter, with_ids)
    }

    /// Searches with the vector of `id`; with `exclude_self`, for one more
    /// hit and then without the hit whose ID is `id` (told by its ID, not
    /// its slot: a put or a compaction may move it between the two steps).
    fn by_id<T>(
        &self,
        id: &[u8],
        k: usize,
        params: &SearchParams,
        exclude_self: bool,
        filter: &Filter<'_>,
        finish: impl FnOnce(&View, Vec<Vec<Hit>>) -> Result<T>,
    ) -> Result<T> {
        let query = self.get(id)?;
        let wanted = if exclude_self { k.saturating_add(1) } else { k };
        self.search_rows(&[&query], wanted, params, filter, 1, |view, mut rows| {
            let mut hits = rows.pop().unwrap_or_default();
            if exclude_self {
                let generation = &view.generation;
                let mut own = None;
                for (i, hit) in hits.iter().enumerate() {
                    let slot = generation.slot_of_key(hit.key).ok_or_else(|| {
                        Error::new(ErrorKind::Internal, format!("search hit key {} is not of the view it came from", hit.key))
                    })?;
                    if generation.id(slot)? == id {
                        own = Some(i);
                        break;
                    }
                }
                if let Some(i) = own {
                    hits.remove(i);
                }
                hits.truncate(k);
            }
            finish(view, vec![hits])
        })
    }

    /// Every live vector within distance `radius` of `query` (distance <=
    /// radius, in the store's metric as `search` reports it), the closest
    /// `max` of them ascending by distance, and how many there are in all.
    /// Always exact, over the raw vectors (a PQ store's codes are not
    /// used: their distances are estimates, and a cut on an estimate
    /// would both miss and admit vectors near the radius), on up to
    /// `params.threads` threads; `params.rerank` and `params.exact` do not
    /// apply. A store that keeps only PQ codes refuses it
    /// (`InvalidArgument`). `radius` must not be NaN (infinity takes
    /// every vector).
    pub fn range_search(&self, query: &[f32], radius: f32, max: usize, params: &SearchParams) -> Result<RangeResults> {
        self.range_search_filtered(query, radius, max, params, &Filter::default())
    }

    /// Like `range_search`, among the live vectors that `filter` allows only.
    pub fn range_search_filtered(
        &self,
        query: &[f32],
        radius: f32,
        max: usize,
        params: &SearchParams,
        filter: &Filter<'_>,
    ) -> Result<RangeResults> {
        self.range_rows(query, radius, max, params, filter, |_, hits, total| {
            Ok(RangeResults { hits, ids: crate::IdBuf::default(), total })
        })
    }

    /// Like `range_search_filtered`, with the ID of every hit, resolved
    /// under the view the search ran on.
    pub fn range_search_with_ids(
        &self,
        query: &[f32],
        radius: f32,
        max: usize,
        params: &SearchParams,
        filter: &Filter<'_>,
    ) -> Result<RangeResults> {
        self.range_rows(query, radius, max, params, filter, |view, hits, total| {
            let found = with_ids(view, vec![hits])?;
            Ok(RangeResults { hits: found.hits.into_iter().next().unwrap_or_default(), ids: found.ids, total })
        })
    }

    /// The range search; hands the hits and the total to `finish` while
    /// the view they came from is still held.
    fn range_rows<T>(
        &self,
        query: &[f32],
        radius: f32,
        max: usize,
        params: &SearchParams,
        filter: &Filter<'_>,
        finish: impl FnOnce(&View, Vec<Hit>, u64) -> Result<T>,
    ) -> Result<T> {
        self.check_usable()?;
        self.check_query(query)?;
        if radius.is_nan() {
            return Err(Error::invalid("radius is NaN"));
        }
        super::check_threads(params.threads, "search threads")?;
        let (view, allowed) = self.candidates(filter)?;
        let generation = &view.generation;
        if generation.vectors.is_none() {
            return Err(Error::invalid(
                "range search is exact and needs raw vectors; this compressed store keeps only PQ codes",
            ));
        }
        let candidates = candidate_set(&view, &allowed);
        let slots = generation.slot_count();
        let threads = match params.threads {
            0 => self.threads,
            t => t as usize,
        }
        .clamp(1, slots.div_ceil(RANGE_SLOTS_PER_THREAD).max(1) as usize);
        let prepared = PreparedQuery::new(query, self.metric);
        let scan = |lo: u64, hi: u64| range_scan(&view, &prepared, self.metric, radius, max, candidates, lo, hi);
        let (top, total) = if threads == 1 {
            scan(0, slots)?
        } else {
            let per_thread = slots.div_ceil(threads as u64);
            let parts = crate::parallel::by_ranges(slots as usize, per_thread as usize, |run| {
                crate::parallel::or_internal("range search worker", || scan(run.start as u64, run.end as u64))
            });
            let mut merged = (TopK::new(max), 0);
            for part in parts {
                let (top, total) = part?;
                merged.0.merge(top);
                merged.1 += total;
            }
            merged
        };
        let kept = top.into_sorted_vec();
        // What is reported was read unverified by the scan: verify it now.
        for &(_, slot) in &kept {
            generation.vector(slot, &generation.slot_record(slot)?)?;
        }
        let hits = kept.into_iter().map(|(distance, slot)| Hit { key: generation.key(slot), distance }).collect();
        finish(&view, hits, total)
    }
}

/// The candidates among slots `[lo, hi)` within `radius`: the closest
/// `max` of them, and their number.
#[allow(clippy::too_many_arguments)]
fn range_scan(
    view: &View,
    prepared: &PreparedQuery<'_>,
    metric: Metric,
    radius: f32,
    max: usize,
    candidates: &LiveSet,
    lo: u64,
    hi: u64,
) -> Result<(TopK, u64)> {
    let generation = &view.generation;
    let mut top = TopK::new(max);
    let mut total = 0;
    for slot in candidates.iter_from(lo).take_while(|&slot| slot < hi) {
        let norm = if metric == Metric::Cosine { generation.slot_record(slot)?.norm } else { 0.0 };
        let distance = prepared.distance(generation.vector_unchecked(slot)?, norm);
        if distance <= radius {
            total += 1;
            top.push(distance, slot);
        }
    }
    Ok((top, total))
}
