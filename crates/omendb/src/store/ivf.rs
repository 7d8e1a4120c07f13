//! The IVF index inside the store: its lists built from the codes file,
//! kept current by puts and deletes, the probe-and-re-rank search, and the
//! calibration measured at training.

use super::generation::{Generation, PqData};
use super::read::{Hit, SearchParams};
use super::{LiveSet, Store, View};
use crate::error::{Error, Result};
use crate::index::{Calibration, CalibrationPoint, InvertedLists, Quantizer};
use crate::quantization::{scan_own_bitmap, TopK};
use crate::search::distance::PreparedQuery;

/// The recall a search aims at when it names neither a target nor `nprobe`.
pub const DEFAULT_TARGET_RECALL: f32 = 0.95;
/// Stored vectors searched (as held-out queries) to calibrate.
const CALIBRATION_QUERIES: usize = 200;
/// Seed of the calibration's sample (deterministic for a given store).
const CALIBRATION_SEED: u64 = 0xCA1_1B4A7E;
/// The neighbours calibration measures recall of (recall@10).
const CALIBRATION_K: usize = 10;
/// Re-rank depths tried, per result wanted (0 = the ADC order alone).
const RERANK_GRID: [u32; 8] = [0, 1, 2, 4, 8, 16, 32, 64];

/// Up to `count` of `live`, drawn at random with `seed`, in slot order.
/// Not evenly spaced: that can alias with the order the vectors were
/// written in (a round-robin over 40 clusters put every 20th slot in two
/// of them, and the calibration then promised recall 0.99 for 0.90).
pub(super) fn random_slots(live: &[u64], count: usize, seed: u64) -> Vec<u64> {
    let mut rng = crate::quantization::kmeans::Rng::new(seed);
    let mut picks = crate::quantization::kmeans::sample_indices(live.len(), count.min(live.len()), &mut rng);
    picks.sort_unstable();
    picks.into_iter().map(|i| live[i]).collect()
}

/// The lists of every live slot of `generation`, from its codes file: one
/// pass reads (and checks) each live record's list, then every list is
/// allocated at its final size and filled, so none grows or shrinks (at
/// open of 1M x 768 vectors, growing them was most of the lists' cost).
pub(super) fn build_lists(generation: &Generation, live: &LiveSet) -> Result<Option<InvertedLists>> {
    let Some(pq) = &generation.pq else { return Ok(None) };
    let Some(ivf) = &pq.quantizer.ivf else { return Ok(None) };
    let nlist = ivf.coarse.nlist();
    let code_size = pq.quantizer.code_size();
    let mut records = Vec::with_capacity(live.count() as usize);
    let mut counts = vec![0usize; nlist];
    for slot in live.iter() {
        let record = generation.code_record(slot)?;
        let list = pq.quantizer.list_of(record);
        if list as usize >= nlist {
            return Err(Error::corrupt(format!(
                "{}: slot {slot} names IVF list {list}, the index has {nlist}",
                pq.codes.path().display()
            )));
        }
        counts[list as usize] += 1;
        records.push((list, slot as u32, pq.quantizer.code_of(record)));
    }
    let mut parts: Vec<(Vec<u8>, Vec<u32>)> = counts.iter().map(|&n| (Vec::with_capacity(n * code_size), Vec::with_capacity(n))).collect();
    for (list, slot, code) in records {
        let (codes, slots) = &mut parts[list as usize];
        codes.extend_from_slice(code);
        slots.push(slot);
    }
    Ok(Some(InvertedLists::from_parts(code_size, parts)))
}

/// Adds the records `records` of slots `first..` that are `live`.
pub(super) fn add_records(lists: &mut InvertedLists, quantizer: &Quantizer, first: u64, records: &[u8], live: impl Fn(u64) -> bool) {
    for (i, record) in records.chunks_exact(quantizer.record_size()).enumerate() {
        let slot = first + i as u64;
        if live(slot) {
            lists.push(quantizer.list_of(record), slot as u32, quantizer.code_of(record));
        }
    }
}

/// Removes `slot` (live in `generation` until now) from its list. Runs
/// while readers wait, so it cannot fail half-way: a record that cannot be
/// read (it was checked at open or written by this process, so never) is
/// looked for in every list.
pub(super) fn remove_slot(lists: &mut InvertedLists, generation: &Generation, slot: u64) {
    let pq = generation.pq.as_ref().expect("lists exist only with codes");
    let found = generation.code_record(slot).is_ok_and(|record| lists.remove(pq.quantizer.list_of(record), slot as u32));
    if !found {
        (0..lists.nlist() as u32).any(|list| lists.remove(list, slot as u32));
    }
}

/// What a search probes and re-ranks: explicit `nprobe` (with `rerank`
/// as given), else the calibration's setting for the target recall
/// (`params.rerank` overriding its depth when given).
fn settings(pq: &PqData, params: &SearchParams, k: usize, nlist: usize) -> (usize, usize) {
    if params.nprobe > 0 {
        return ((params.nprobe as usize).min(nlist), params.rerank as usize);
    }
    let target = if params.target_recall > 0.0 { params.target_recall } else { DEFAULT_TARGET_RECALL };
    let ivf = pq.quantizer.ivf.as_ref().expect("IVF store");
    match ivf.calibration.for_target(target) {
        Some(p) => {
            // Measured for 10 results: fewer need no less depth.
            let rerank = if params.rerank > 0 { params.rerank as usize } else { p.rerank_per_k as usize * k.max(CALIBRATION_K) };
            (p.nprobe as usize, rerank)
        }
        // Not calibrated (no raw vectors to measure with): a tenth of the lists.
        None => (nlist.div_ceil(10), params.rerank as usize),
    }
}

/// The ADC candidates of one query from its `nprobe` nearest lists, best
/// first, as (ADC distance, slot); `allowed` (when filtering) limits them.
/// Each list has its own table (its codes are residuals from its centroid).
fn probe_candidates(
    pq: &PqData,
    lists: &InvertedLists,
    input: &[f32],
    nprobe: usize,
    depth: usize,
    allowed: Option<&LiveSet>,
    scratch: &mut Vec<f32>,
) -> Vec<(f32, u64)> {
    let ivf = pq.quantizer.ivf.as_ref().expect("IVF store");
    let tables = pq.quantizer.probe_tables(input);
    let mut top = TopK::new(depth);
    let mut own = Vec::new();
    for list in ivf.coarse.probe(input, nprobe, scratch) {
        let (codes, slots) = lists.list(list);
        let own_live = allowed.map(|a| {
            own.clear();
            own.resize(slots.len().div_ceil(64), 0u64);
            for (i, &s) in slots.iter().enumerate() {
                if a.contains(s as u64) {
                    own[i / 64] |= 1 << (i % 64);
                }
            }
            &own[..]
        });
        // Nothing to scan: skip the table too.
        if slots.is_empty() || own_live.is_some_and(|o| o.iter().all(|&w| w == 0)) {
            continue;
        }
        let table = tables.table(list, scratch);
        if table.unscale(1.0) == 1.0 {
            scan_own_bitmap(&table, codes, (list as u64) << 32, own_live, &mut top);
        } else {
            // A table scaled for extreme values: its distances join the
            // others' in the metric's units.
            let mut local = TopK::new(depth);
            scan_own_bitmap(&table, codes, (list as u64) << 32, own_live, &mut local);
            for (d, position) in local.into_sorted_vec() {
                top.push(table.unscale(d), position);
            }
        }
    }
    top.into_sorted_vec()
        .into_iter()
        .map(|(d, position)| (d, lists.list((position >> 32) as u32).1[(position & 0xFFFF_FFFF) as usize] as u64))
        .collect()
}

/// IVF search of `queries`: probe, scan, re-rank exactly when asked and
/// possible.
pub(super) fn ivf_search_many(
    view: &View,
    store: &Store,
    pq: &PqData,
    lists: &InvertedLists,
    queries: &[&[f32]],
    k: usize,
    params: &SearchParams,
    allowed: Option<&LiveSet>,
) -> Result<Vec<Vec<Hit>>> {
    let (mut nprobe, rerank) = settings(pq, params, k, lists.nlist());
    if let (Some(allowed), 0) = (allowed, params.nprobe) {
        // A filter leaves a fraction f of each list: the calibrated probe
        // count would find about f of the neighbours it was measured to
        // find, so probe 1 / f times as many lists (all, below 1 / nlist).
        let fraction = allowed.count() as f64 / lists.len().max(1) as f64;
        if fraction > 0.0 {
            nprobe = ((nprobe as f64 / fraction).ceil() as usize).clamp(nprobe, lists.nlist());
        }
    }
    let mut scratch = Vec::new();
    let mut out = Vec::with_capacity(queries.len());
    for query in queries {
        let input = store.pq_input(query);
        let rerank = if view.generation.vectors.is_some() { rerank } else { 0 };
        let candidates = probe_candidates(pq, lists, &input, nprobe, k.max(rerank), allowed, &mut scratch);
        out.push(super::pq::finish(&view.generation, store, query, candidates, k, rerank)?);
    }
    Ok(out)
}

/// Measures, on up to `CALIBRATION_QUERIES` stored vectors searched as
/// queries (each left out of its own results), the recall@10 and cost of a
/// grid of probe counts and re-rank depths. Needs the raw vectors.
pub(super) fn calibrate(
    store: &Store,
    generation: &Generation,
    pq: &PqData,
    lists: &InvertedLists,
    live: &[u64],
) -> Result<Calibration> {
    if generation.vectors.is_none() || live.len() <= CALIBRATION_K {
        return Ok(Calibration::default());
    }
    let nlist = lists.nlist();
    let queries = random_slots(live, CALIBRATION_QUERIES, CALIBRATION_SEED);
    let mut nprobes: Vec<usize> = std::iter::successors(Some(1usize), |&p| (p < nlist).then(|| (p * 2).min(nlist))).collect();
    nprobes.dedup();
    let max_depth = CALIBRATION_K * *RERANK_GRID.last().expect("grid") as usize;
    // hits[p][r]: true neighbours found with nprobes[p] and RERANK_GRID[r].
    let per_query = |&q: &u64| -> Result<Vec<Vec<usize>>> {
        let vector = generation.vector(q, &generation.slot_record(q)?)?;
        let prepared = PreparedQuery::new(vector, store.metric());
        let exact = |slot: u64| -> Result<f32> {
            let record = generation.slot_record(slot)?;
            Ok(prepared.distance(generation.vector_unchecked(slot)?, record.norm))
        };
        let mut truth = TopK::new(CALIBRATION_K);
        for &slot in live.iter().filter(|&&s| s != q) {
            truth.push(exact(slot)?, slot);
        }
        let truth: Vec<u64> = truth.into_sorted_vec().into_iter().map(|(_, s)| s).collect();
        let input = store.pq_input(vector);
        let mut scratch = Vec::new();
        let mut exact_cache = std::collections::HashMap::new();
        let mut hits: Vec<Vec<usize>> = Vec::with_capacity(nprobes.len());
        for &nprobe in &nprobes {
            let mut candidates = probe_candidates(pq, lists, &input, nprobe, max_depth + 1, None, &mut scratch);
            candidates.retain(|&(_, s)| s != q);
            let mut row = Vec::with_capacity(RERANK_GRID.len());
            for &per_k in &RERANK_GRID {
                let found: Vec<u64> = if per_k == 0 {
                    candidates.iter().take(CALIBRATION_K).map(|&(_, s)| s).collect()
                } else {
                    let mut top = TopK::new(CALIBRATION_K);
                    for &(_, slot) in candidates.iter().take(per_k as usize * CALIBRATION_K) {
                        let d = match exact_cache.get(&slot) {
                            Some(&d) => d,
                            None => *exact_cache.entry(slot).or_insert(exact(slot)?),
                        };
                        top.push(d, slot);
                    }
                    top.into_sorted_vec().into_iter().map(|(_, s)| s).collect()
                };
                row.push(found.iter().filter(|s| truth.contains(s)).count());
            }
            hits.push(row);
        }
        Ok(hits)
    };
    let threads = store.threads.clamp(1, queries.len());
    let per = queries.len().div_ceil(threads);
    let parts = crate::parallel::concurrently(threads, "omendb-calibrate", |t| {
        queries.iter().skip(t * per).take(per).map(per_query).collect::<Vec<_>>()
    });
    let mut totals = vec![vec![0usize; RERANK_GRID.len()]; nprobes.len()];
    for r in parts.into_iter().flatten() {
        for (t, row) in totals.iter_mut().zip(r?) {
            for (a, b) in t.iter_mut().zip(row) {
                *a += b;
            }
        }
    }
    // Cost, in bytes a search reads: per list its table's making (a pass
    // over the 16 or 256 centroids of every sub-space) and its codes; per
    // re-ranked vector twice its bytes (read at random). A rough model:
    // one exploratory run at 100,000 x 128, PQ32x4 (not a benchmark) put
    // a list at a few microseconds and a re-ranked vector under one.
    let avg_list = lists.len() as f64 / nlist as f64;
    let code_size = pq.quantizer.code_size() as f64;
    let vector_bytes = 4.0 * generation.dim as f64;
    let table_bytes = pq.quantizer.codebooks.config().ksub() as f64 * vector_bytes;
    let wanted = (queries.len() * CALIBRATION_K) as f32;
    let mut points = Vec::new();
    for (p, &nprobe) in nprobes.iter().enumerate() {
        for (r, &per_k) in RERANK_GRID.iter().enumerate() {
            points.push(CalibrationPoint {
                recall: totals[p][r] as f32 / wanted,
                nprobe: nprobe as u32,
                rerank_per_k: per_k,
                cost: nprobe as f64 * (table_bytes + avg_list * code_size)
                    + 2.0 * (per_k as usize * CALIBRATION_K) as f64 * vector_bytes,
            });
        }
    }
    Ok(Calibration::from_measurements(points))
}
