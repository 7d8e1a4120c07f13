//! The IVF index inside the store: its lists built from the codes file,
//! kept current by puts and deletes, the probe-and-re-rank search, and the
//! calibration measured at training.

use super::generation::{Generation, PqData};
use super::read::{Hit, SearchParams};
use super::{LiveSet, Store, View};
use crate::error::{Error, Result};
use crate::index::{Calibration, CalibrationPoint, InvertedLists, ListsBuilder, ProbeTables, Quantizer};
use crate::quantization::{rank_gathered, scan_planar, scan_planar_many, QueryTable, TopK, SCAN_AHEAD, SCAN_GROUP};

/// The recall a search aims at when it names neither a target nor `nprobe`.
pub const DEFAULT_TARGET_RECALL: f32 = 0.95;
/// What such a search asks the calibration for: the default with half a
/// point to spare. The calibration's queries are stored vectors, which sit
/// a little closer to their neighbours than fresh queries do; with no more
/// than the standard error to spare, the cohere768 set by inner product
/// delivered 0.949 on its fresh queries (ANN benchmark, two engine
/// versions). Only the default has it: an explicit target is the caller's
/// to set.
const DEFAULT_TARGET_ASKED: f32 = DEFAULT_TARGET_RECALL + 0.005;
/// Stored vectors searched (as held-out queries) to calibrate.
const CALIBRATION_QUERIES: usize = 200;
/// Seed of the calibration's sample (deterministic for a given store).
const CALIBRATION_SEED: u64 = 0xCA1_1B4A7E;
/// The neighbours calibration measures recall of (recall@10).
pub(super) const CALIBRATION_K: usize = 10;
/// Calibration queries whose lists are scanned together: each keeps a
/// heap of up to twice `CALIBRATION_K` x the deepest re-rank per probe
/// count (about 80 KiB each at 1,000 lists), so a group of 25 holds a few
/// tens of MB.
const CALIBRATION_GROUP: usize = 25;
/// The codes and table terms an index must hold for grouped calibration
/// scans; below, each query scans the lists on its own. Throwaway-harness
/// train_pq runs, grouped against not: 1M x 768 PQ192x4 (96 MB)
/// calibration + write 1.95-2.04 s against 2.17-2.24; 200k x 768 (19 MB)
/// 0.58-0.60 against 0.55-0.64; 100k x 128 (under 2 MB) 0.25 against 0.18
/// (the heaps per probe count and their merges cost more than the reads
/// they save when the lists stay in cache).
const CALIBRATION_GROUP_MIN_BYTES: usize = 32 << 20;
/// Queries of a batch whose lists are scanned together
/// (`probe_candidates_grouped`). Throwaway-harness runs, one thread,
/// batches of 1,000 at 1M x 768 (PQ192x4), 2 runs each: 16 / 32 / 64 / 128
/// queries 1.45x / 1.58x / 1.64x / 1.66x the q/s of one at a time at
/// target 0.95.
pub(super) const QUERY_GROUP: usize = 64;
/// Live vectors from which training makes an index searched in two
/// stages (codes of at least `index::TWO_STAGE_MIN_CODE` bytes): stage one
/// scans the lists by the first third of each code, keeping
/// `STAGE_ONE_PER_DEPTH` candidates for each one the search keeps; stage
/// two ranks those by their whole codes, read from the codes file. It pays
/// where the codes scanned are many and costly to read, and stage two's
/// random reads few beside them: which depends on the data as well as
/// the size. Throwaway harness, one thread, Intel Xeon, PQ192x4 over 768
/// dimensions, the lists holding the prefix alone, at the calibrated
/// settings for targets 0.9 / 0.95 / 0.99, queries/s of two stages over
/// one: 1.28x / 1.42x / 1.33x at 100,000 vectors of 100 clusters, but
/// 0.86x / 0.82x / 0.99x at 100,000 of 1,000 clusters (whose targets
/// need deeper re-ranks: 16 x 120 random reads against 93 lists of 316);
/// 1.23x / 1.32x / 1.81x at 200,000 of 200 clusters and 1.01x / 1.02x /
/// 1.08x at 200,000 of 1,000; at 1,000,000 of 1,000 one stage was
/// 1.1-1.8x slower at nprobe 256-384 (against lists of whole codes, slower
/// than the prefix lists since); at 50,000
/// 1.08-1.18x of 50 clusters, 0.83-0.88x of 1,000. So training makes a
/// two-stage index from 50,000 vectors, then keeps it only where its
/// calibrated default search costs less than one stage's
/// (`two_stage_pays`), else makes it one-stage. (With lists of whole
/// codes they lost at 100,000 and 200,000.)
pub(super) const TWO_STAGE_MIN_VECTORS: usize = 50_000;
/// What one random read of a whole code (stage two's) costs, in bytes of
/// a list's sequential scan (`Prices`). Fitted to the measurements above
/// (docs/benchmarks.md, "The calibration's prices"): with 1,024 to 2,048,
/// `two_stage_pays` keeps the faster mode at target 0.95 on the
/// harness's grids of four of five sets and of 1M x 768 (the fifth,
/// 100,000 of 100 clusters, then trains two-stage, which measured 0.97x
/// one stage there); 512 or 3,072 err on more. This is the middle.
const RANDOM_READ_BYTES: f64 = 1536.0;
/// What reading one 64-byte line at random costs, in the same bytes: half
/// a whole code's read (a 96-byte code spans two lines). A re-ranked
/// vector that the cache does not hold costs one a line: at 1M x 768
/// (3 KiB vectors) the harness measured a re-ranked candidate (its vector
/// and stage two's 16 whole codes, as stage one then kept) at what 80 KB
/// of a two-stage list's scan cost; this prices it at 61 KB, the model
/// before at 9 KB.
const RANDOM_LINE_BYTES: f64 = RANDOM_READ_BYTES / 2.0;

/// The calibration's cost model: what a search reads, in bytes of a
/// list's sequential scan. Per list probed, its table's making (a pass
/// over the 16 or 256 centroids of every sub-space, for residual codes)
/// and its codes; per candidate re-ranked, its vector: a random read of
/// each of its lines where the vectors outgrow the cache
/// (`RANDOM_LINE_BYTES`), else twice its bytes (one exploratory run at
/// 100,000 x 128, PQ32x4, put a list at a few microseconds and a
/// re-ranked vector under one); and in a two-stage search, stage two's
/// `STAGE_ONE_PER_DEPTH` random reads of whole codes a candidate
/// (`RANDOM_READ_BYTES` each). Priced at twice its bytes everywhere, a
/// re-rank at 1M x 768 was nine times too cheap: training chose 210 lists
/// and 240 candidates for 0.95 (recall 0.9528 on the benchmark's
/// queries), where 320 lists and 120 candidates answer 1.27x the
/// queries/s (1.34x in batches) at 0.9580 on the same store.
#[derive(Debug, Clone, Copy)]
struct Prices {
    avg_list: f64,
    code_size: f64,
    table_bytes: f64,
    reranked: f64,
}

impl Prices {
    fn of(generation: &Generation, pq: &PqData, lists: &InvertedLists) -> Prices {
        let vector_bytes = 4.0 * generation.dim as f64;
        // A residual code's list needs a table of its own (made from the
        // codebooks: ksub codewords of dim values); codes of the vectors
        // share the query's one table.
        let residual = pq.quantizer.ivf.as_ref().is_some_and(|ivf| ivf.residual);
        Prices {
            avg_list: lists.len() as f64 / lists.nlist().max(1) as f64,
            code_size: pq.quantizer.code_size() as f64,
            table_bytes: if residual { pq.quantizer.codebooks.config().ksub() as f64 * vector_bytes } else { 0.0 },
            reranked: Prices::rerank_read(vector_bytes, super::pq::vectors_far(generation)),
        }
    }

    /// A re-ranked vector of `bytes`: a random read of each of its lines
    /// where the vectors are `far` (beyond the cache), else twice its bytes.
    fn rerank_read(bytes: f64, far: bool) -> f64 {
        if far {
            (bytes / 64.0).ceil() * RANDOM_LINE_BYTES
        } else {
            2.0 * bytes
        }
    }

    /// A search probing `nprobe` lists and re-ranking `per_k` candidates
    /// a result (`CALIBRATION_K` results), of lists that hold `stage_one`
    /// bytes of each code (a two-stage index), or whole codes (`None`).
    fn cost(&self, nprobe: u32, per_k: u32, stage_one: Option<usize>) -> f64 {
        let scanned = stage_one.map_or(self.code_size, |bytes| bytes as f64);
        let gathered = if stage_one.is_some() { STAGE_ONE_PER_DEPTH as f64 * RANDOM_READ_BYTES } else { 0.0 };
        nprobe as f64 * (self.table_bytes + self.avg_list * scanned)
            + (per_k.max(1) as usize * CALIBRATION_K) as f64 * gathered
            + (per_k as usize * CALIBRATION_K) as f64 * self.reranked
    }
}

/// Whether two stages (lists of `prefix` bytes of each code) cost less
/// than one at the default target: the cheapest of the measured `points`
/// that reach it (or, where none does, of those with the best recall),
/// priced two-stage, against the cheapest priced one-stage. Two stages
/// keep one stage's recall at every setting within 0.005
/// (`STAGE_ONE_PER_DEPTH`), so one grid measures both.
fn two_stage_cheaper(points: &[CalibrationPoint], prices: &Prices, prefix: usize) -> bool {
    let best = points.iter().map(|p| p.recall).fold(0.0f32, f32::max);
    let reach = DEFAULT_TARGET_ASKED.min(best);
    let cheapest = |stage_one: Option<usize>| {
        points.iter().filter(|p| p.recall >= reach).map(|p| prices.cost(p.nprobe, p.rerank_per_k, stage_one)).fold(f64::INFINITY, f64::min)
    };
    cheapest(Some(prefix)) < cheapest(None)
}

/// Whether training keeps a two-stage index two-stage, from the points
/// its calibration measured on `lists` (`two_stage_cheaper`). An index
/// without a prefix, or without measurements to judge by, stays as it is.
pub(super) fn two_stage_pays(generation: &Generation, pq: &PqData, lists: &InvertedLists, points: &[CalibrationPoint]) -> bool {
    #[cfg(test)]
    if !tests::JUDGE_TWO_STAGE.with(|judge| judge.get()) {
        return true;
    }
    match pq.quantizer.stage_one_bytes() {
        Some(prefix) if !points.is_empty() => two_stage_cheaper(points, &Prices::of(generation, pq, lists), prefix),
        _ => true,
    }
}

/// The live vectors from which training makes a two-stage index
/// (`TWO_STAGE_MIN_VECTORS`; tests set it lower, on their thread).
pub(super) fn two_stage_min_vectors() -> usize {
    #[cfg(test)]
    {
        tests::TWO_STAGE_FROM.with(|from| from.get())
    }
    #[cfg(not(test))]
    TWO_STAGE_MIN_VECTORS
}

/// Stage one's candidates for each one a two-stage search keeps. At 1M x
/// 768 (the first 32 of 96 bytes) 16 kept the one-stage recall at every
/// setting measured and 8 lost up to 0.005, but 8 reaches each recall
/// sooner: stage two's random reads halve, so a setting with a few more
/// lists or candidates costs less. Harness grids, one thread, the
/// fastest setting reaching 0.95 / 0.96 / 0.97 / 0.98 / 0.99 answered
/// 1.17x / 1.19x / 1.13x / 1.19x / 1.14x the queries/s with 8 (4 and 6:
/// no faster than 8, and 4 never reached 0.99 within 512 lists and 32
/// candidates a result), and 1.23x and 1.21x at 0.95 on 100,000 and
/// 200,000 of 1,000 clusters (docs/benchmarks.md, "Stage one's depth").
const STAGE_ONE_PER_DEPTH: usize = 8;
/// Records a gather of stage two asks for ahead of the one it reads.
const GATHER_AHEAD: usize = 16;
/// Items a query's lists are dealt into for each thread that shares them
/// (`probe_candidates`).
const SPLIT_ITEMS: usize = 2;
/// The codes and table terms an index must hold for grouped scans: below,
/// the lists stay in cache from one query to the next anyway, and grouping
/// measured 5-11% slower (100k x 128, 1.6 MB); at 9.6 MB (100k x 768) and
/// above it was faster.
const GROUP_MIN_BYTES: usize = 4 << 20;
/// Re-rank depths tried, per result wanted (0 = the ADC order alone).
/// (Steps of about 1.5x: every depth is a prefix of one candidate list,
/// so a finer grid costs nothing to measure, and the doubling grid made
/// the cheapest setting above 0.99 twice the cost of the one below. Up
/// to 256: with 64-byte codes at 1M x 768 (PQ128x4) no probe count
/// reached 0.99 within 64 per result (best 0.975, which a target of 0.99
/// then got), while 128 per result reached 0.992 at 473 of 1,000 lists.)
const RERANK_GRID: [u32; 17] = [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256];
/// The grids of a two-stage index (codes of at least 64 bytes, which rank
/// well enough for re-rank depths this shallow: at 1M x 768, 96-byte
/// codes reached 0.99 at 48 per result): stage one's heaps are
/// `STAGE_ONE_PER_DEPTH` times as deep as the re-rank, so the first grid
/// stops at 64 per result and the deeper one at 256.
const TWO_STAGE_GRID_END: usize = 12;
const TWO_STAGE_DEEPER_GRID: [u32; 4] = [96, 128, 192, 256];
/// Deeper re-rank depths, measured in a second pass only where the first
/// grid's best recall falls short of `DEEPER_BELOW` (codes too coarse for
/// 256 per result: with 32-byte codes at 1M x 768, PQ64x4 on the ANN
/// benchmark's clustered set, every target from 0.95 up got the first
/// grid's best, recall 0.93 on fresh queries, where 512 per result
/// reached 0.96 and 1,024 0.99). A second pass, not a deeper first grid:
/// its heaps are four times as deep, a cost the stores that need no more
/// than 256 per result should not pay.
const DEEPER_GRID: [u32; 4] = [384, 512, 768, 1024];
const DEEPER_BELOW: f32 = 0.99;

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

/// Whether `generation`'s codes have IVF lists (an IVF quantizer).
pub(super) fn has_lists(generation: &Generation) -> bool {
    generation.pq.as_ref().is_some_and(|pq| pq.quantizer.ivf.is_some())
}

/// The lists of every live slot of `generation`, from its codes file.
pub(super) fn build_lists(generation: &Generation, live: &LiveSet) -> Result<Option<InvertedLists>> {
    let Some(pq) = generation.pq.as_ref().filter(|_| has_lists(generation)) else { return Ok(None) };
    let vector_crc = |slot: u64| Ok(generation.slot_record(slot)?.vector_crc);
    lists_from_codes(&pq.quantizer, &pq.codes, generation.slot_count(), || live.iter(), vector_crc).map(Some)
}

/// The lists of the slots `slots()` yields (increasing, each below
/// `slot_count`), from their records in `codes`, each with its raw
/// vector's checksum `vector_crc(slot)`. Two passes: the lists' sizes,
/// then their contents into rooms of that size (buffers grown as they
/// fill left the allocator half as much memory again as they held).
pub(super) fn lists_from_codes<I: Iterator<Item = u64>>(
    quantizer: &Quantizer,
    codes: &crate::storage::mmap::MappedFile,
    slot_count: u64,
    slots: impl Fn() -> I,
    vector_crc: impl Fn(u64) -> Result<u32>,
) -> Result<InvertedLists> {
    let ivf = quantizer.ivf.as_ref().expect("lists only for an IVF quantizer");
    let nlist = ivf.coarse.nlist();
    let size = quantizer.record_size() as u64;
    let record = |slot: u64| codes.read(slot * size, size);
    let mut sizes = vec![0usize; nlist];
    for slot in slots() {
        let list = quantizer.list_of(record(slot)?);
        match sizes.get_mut(list as usize) {
            Some(size) => *size += 1,
            None => {
                return Err(Error::corrupt(format!(
                    "{}: slot {slot} names IVF list {list}, the index has {nlist}",
                    codes.path().display()
                )))
            }
        }
    }
    let mut lists = ListsBuilder::new(InvertedLists::with_sizes(&sizes, quantizer.list_code_size(), slot_count as usize));
    for slot in slots() {
        let record = record(slot)?;
        lists.push(quantizer.list_of(record), slot as u32, quantizer.list_code_of(record), vector_crc(slot)?);
    }
    Ok(lists.finish())
}

/// Adds the records `records` of slots `first..` that are `live`, with
/// their raw vectors' checksums `vector_crcs` (one a record).
pub(super) fn add_records(
    lists: &mut InvertedLists,
    quantizer: &Quantizer,
    first: u64,
    records: &[u8],
    vector_crcs: &[u32],
    live: impl Fn(u64) -> bool,
) {
    let records = records.chunks_exact(quantizer.record_size());
    debug_assert_eq!(records.len(), vector_crcs.len());
    let entries = records.zip(vector_crcs).enumerate().filter_map(|(i, (record, &vector_crc))| {
        let slot = first + i as u64;
        live(slot).then(|| (quantizer.list_of(record), slot as u32, quantizer.list_code_of(record), vector_crc))
    });
    lists.push_batch(entries);
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
/// The calibration's point when it chose them (no explicit `nprobe`).
fn settings(pq: &PqData, params: &SearchParams, k: usize, nlist: usize) -> (usize, usize, Option<CalibrationPoint>) {
    if params.nprobe > 0 {
        return ((params.nprobe as usize).min(nlist), params.rerank as usize, None);
    }
    let ivf = pq.quantizer.ivf.as_ref().expect("IVF store");
    match ivf.calibrated_for(target_asked(params)) {
        Some(p) => {
            // Measured for 10 results: fewer need no less depth.
            let rerank = if params.rerank > 0 { params.rerank as usize } else { p.rerank_per_k as usize * k.max(CALIBRATION_K) };
            (p.nprobe as usize, rerank, Some(p))
        }
        // Not calibrated (no raw vectors to measure with): a tenth of the lists.
        None => (nlist.div_ceil(10), params.rerank as usize, None),
    }
}

/// What an IVF search of `k` results with `params` probes and re-ranks
/// (no re-rank without raw vectors), among the vectors `allowed` when
/// filtering, and the calibration's point behind it: `ivf_search_many`'s
/// settings, for `Store::search_plan` too.
pub(super) fn plan(
    view: &View,
    pq: &PqData,
    lists: &InvertedLists,
    params: &SearchParams,
    k: usize,
    allowed: Option<&LiveSet>,
) -> (usize, usize, Option<CalibrationPoint>) {
    let (mut nprobe, rerank, point) = settings(pq, params, k, lists.nlist());
    if let (Some(allowed), 0) = (allowed, params.nprobe) {
        // A filter leaves a fraction f of each list: the calibrated probe
        // count would find about f of the neighbours it was measured to
        // find, so probe 1 / f times as many lists (all, below 1 / nlist).
        let fraction = allowed.count() as f64 / lists.len().max(1) as f64;
        if fraction > 0.0 {
            nprobe = ((nprobe as f64 / fraction).ceil() as usize).clamp(nprobe, lists.nlist());
        }
    }
    (nprobe, super::pq::rerank_kept(&view.generation, rerank), point)
}

/// The recall a search asks the calibration for.
fn target_asked(params: &SearchParams) -> f32 {
    if params.target_recall > 0.0 {
        params.target_recall
    } else {
        DEFAULT_TARGET_ASKED
    }
}

/// A scan's candidates: (distance, slot) pairs.
type Candidates = Vec<(f32, u64)>;

/// How a probe ranks the codes it scans.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ranking {
    /// Exact ADC distances (the hits' distances when nothing re-ranks).
    Adc,
    /// ADC distances estimated from the fast-scan sums (`scan_planar`):
    /// for candidates an exact re-rank scores anew.
    Estimated,
}

/// The ADC candidates of one query from its `nprobe` nearest lists, as
/// (ADC distance, slot): best first when ranked by exact ADC (the hits
/// without re-rank), in any order when estimated (a re-rank reads them
/// all); `allowed` (when filtering) limits them. Each list has its own
/// table (its codes are residuals from its centroid).
///
/// With `parts` > 1, that many threads (this one among them) share the
/// lists: dealt out to `SPLIT_ITEMS` items a thread (list `i` of the
/// nearest-first order to item `i % items`, so each gets near and far
/// lists alike), which the threads claim as they finish their last, so
/// that a worker slow to wake (30 us here) takes fewer. Each item keeps
/// its own best `depth`; the best `depth` of their union are those one
/// thread keeps (a `TopK` keeps the best by distance, then position,
/// whatever the order it is offered them in).
#[allow(clippy::too_many_arguments)]
fn probe_candidates(
    pq: &PqData,
    lists: &InvertedLists,
    input: &[f32],
    nprobe: usize,
    depth: usize,
    ranking: Ranking,
    allowed: Option<&LiveSet>,
    parts: usize,
    scratch: &mut Vec<f32>,
) -> Result<Vec<(f32, u64)>> {
    let ordered = ranking == Ranking::Adc;
    if parts == 1 {
        return Ok(probe_candidates_at(pq, lists, input, &[nprobe], depth, ranking, allowed, ordered, scratch)?.pop().expect("one probe count"));
    }
    let ivf = pq.quantizer.ivf.as_ref().expect("IVF store");
    let probed = ivf.coarse.probe(input, nprobe, scratch);
    let tables = pq.quantizer.probe_tables(input);
    let prefix = stage_one_table(pq, &tables);
    let first_depth = stage_one_depth(prefix.is_some(), depth);
    let items = (parts * SPLIT_ITEMS).min(probed.len());
    let tops = crate::parallel::claimed(items, parts, |item| {
        let mut tables = tables.clone();
        let (mut own, mut scratch) = (Vec::new(), Vec::new());
        let mut top = TopK::new(first_depth);
        let mut mine = probed.iter().skip(item).step_by(items).peekable();
        while let Some(&list) = mine.next() {
            if let Some(&&next) = mine.peek() {
                prefetch_list(lists, &tables, next);
            }
            scan_probed(lists, &mut tables, prefix.as_ref(), list, allowed, ranking, &mut top, &mut own, &mut scratch);
        }
        top
    });
    candidates_from(pq, lists, &tables, prefix.is_some(), TopK::merged(first_depth, tops), depth, ranking, ordered)
}

/// Stage one's table for a query with `tables`, where the index is
/// searched in two stages (its lists hold the codes' first bytes alone):
/// the prefix of its one table. `None` (whole codes scanned) elsewhere.
fn stage_one_table(pq: &PqData, tables: &ProbeTables<'_>) -> Option<QueryTable> {
    let bytes = pq.quantizer.stage_one_bytes()?;
    // A two-stage index has 4-bit codes of the vectors (`Ivf::new`): one
    // table for every list, and `bytes` whole 16s below the code size.
    let table = tables.shared().expect("a two-stage index has codes of the vectors");
    Some(table.prefix(bytes).expect("a 4-bit table has a prefix of whole 16 bytes"))
}

/// Stage one's tables of a batch's queries (`stage_one_table`), where the
/// index is searched in two stages.
fn stage_one_tables(pq: &PqData, tables: &[ProbeTables<'_>]) -> Option<Vec<QueryTable>> {
    tables.iter().map(|t| stage_one_table(pq, t)).collect()
}

/// The depth of a scan that keeps `depth` candidates: stage one's
/// (`STAGE_ONE_PER_DEPTH` times more) in a `two_stage` search.
fn stage_one_depth(two_stage: bool, depth: usize) -> usize {
    if two_stage {
        depth.saturating_mul(STAGE_ONE_PER_DEPTH)
    } else {
        depth
    }
}

/// The candidates a scan kept in `top`, as (distance, slot), best first
/// when `ordered`: its own, or (stage one's heap of a two-stage search)
/// the best `depth` of them by their whole codes.
#[allow(clippy::too_many_arguments)]
fn candidates_from(
    pq: &PqData,
    lists: &InvertedLists,
    tables: &ProbeTables<'_>,
    two_stage: bool,
    top: TopK,
    depth: usize,
    ranking: Ranking,
    ordered: bool,
) -> Result<Vec<(f32, u64)>> {
    let top = if two_stage { stage_two(pq, lists, tables, top, depth, ranking)? } else { top };
    Ok(candidates_of(lists, top, ordered))
}

/// Stage two of a two-stage search: the candidates stage one kept in
/// `first` ranked by their whole codes (read from the codes file) with the
/// query's one table, as `ranking` ranks a one-stage scan's (estimated
/// from the fast-scan sums, or exact ADC); the best `depth`, by position
/// as stage one's.
fn stage_two(pq: &PqData, lists: &InvertedLists, tables: &ProbeTables<'_>, first: TopK, depth: usize, ranking: Ranking) -> Result<TopK> {
    let table = tables.shared().expect("a two-stage search's table is shared by every list");
    let positions: Vec<u64> = first.into_vec().into_iter().map(|(_, position)| position).collect();
    let mut top = TopK::new(depth);
    let estimated = ranking == Ranking::Estimated;
    for_gathered(pq, lists, &positions, |codes, positions| rank_gathered(table, codes, positions, &[], estimated, &mut top))?;
    if table.unscale(1.0) == 1.0 {
        return Ok(top);
    }
    // A table scaled for extreme values: its distances in the metric's
    // units, as a one-stage scan gives them.
    let mut unscaled = TopK::new(depth);
    push_unscaled(table, top, &mut unscaled);
    Ok(unscaled)
}

/// Offers `scaled`'s candidates (distances in `table`'s units) to `top`
/// in the metric's units.
fn push_unscaled(table: &QueryTable, scaled: TopK, top: &mut TopK) {
    for (d, position) in scaled.into_vec() {
        top.push(table.unscale(d), position);
    }
}

/// Calls `rank` with the whole codes of the list entries at `positions`,
/// 64 at a time (a block of the kernel, in cache), and those positions:
/// read from their slots' records in the codes file, the records
/// `GATHER_AHEAD` on asked for while one is read (each a random read: at
/// 1M x 768, a miss in every cache).
fn for_gathered(pq: &PqData, lists: &InvertedLists, positions: &[u64], mut rank: impl FnMut(&[u8], &[u64])) -> Result<()> {
    let cs = pq.quantizer.code_size() as u64;
    let record = pq.quantizer.record_size() as u64;
    let slots: Vec<u64> = positions.iter().map(|&position| lists.slot_at(position)).collect();
    let ask = |slot: u64| {
        if let Ok(code) = pq.codes.read(slot * record, cs) {
            crate::storage::prefetch::prefetch_slice(code);
        }
    };
    slots.iter().take(GATHER_AHEAD).for_each(|&slot| ask(slot));
    let mut block = Vec::with_capacity(64 * cs as usize);
    for (b, chunk) in slots.chunks(64).enumerate() {
        block.clear();
        for (i, &slot) in chunk.iter().enumerate() {
            if let Some(&ahead) = slots.get(b * 64 + i + GATHER_AHEAD) {
                ask(ahead);
            }
            block.extend_from_slice(pq.codes.read(slot * record, cs)?);
        }
        rank(&block, &positions[b * 64..b * 64 + chunk.len()]);
    }
    Ok(())
}

/// `probe_candidates` for each of `nprobes` (ascending) in one pass: the
/// lists are scanned nearest first, so the candidates of `p` lists are the
/// best of the first `p`, taken on the way (as scanning them alone would);
/// best first when `ordered`.
#[allow(clippy::too_many_arguments)]
fn probe_candidates_at(
    pq: &PqData,
    lists: &InvertedLists,
    input: &[f32],
    nprobes: &[usize],
    depth: usize,
    ranking: Ranking,
    allowed: Option<&LiveSet>,
    ordered: bool,
    scratch: &mut Vec<f32>,
) -> Result<Vec<Vec<(f32, u64)>>> {
    let mut heaps = Vec::with_capacity(nprobes.len());
    let (tables, prefix) = probe_stops(pq, lists, input, nprobes, depth, ranking, allowed, scratch, |_, top, _| heaps.push(top.clone()));
    heaps.into_iter().map(|top| candidates_from(pq, lists, &tables, prefix.is_some(), top, depth, ranking, ordered)).collect()
}

/// The scan of `probe_candidates_at`: the query's tables and stage one's
/// table where the search has two stages; for each of `nprobes`, the heap
/// of the first lists' best candidates (`depth` of them, or stage one's
/// depth) goes to `at_stop` with its index among them and every list the
/// scan probes, nearest first.
#[allow(clippy::too_many_arguments)]
fn probe_stops<'a>(
    pq: &'a PqData,
    lists: &InvertedLists,
    input: &'a [f32],
    nprobes: &[usize],
    depth: usize,
    ranking: Ranking,
    allowed: Option<&LiveSet>,
    scratch: &mut Vec<f32>,
    mut at_stop: impl FnMut(usize, &TopK, &[u32]),
) -> (ProbeTables<'a>, Option<QueryTable>) {
    debug_assert!(nprobes.is_sorted());
    let ivf = pq.quantizer.ivf.as_ref().expect("IVF store");
    let mut tables = pq.quantizer.probe_tables(input);
    let prefix = stage_one_table(pq, &tables);
    let mut top = TopK::new(stage_one_depth(prefix.is_some(), depth));
    let mut own = Vec::new();
    let nlist = lists.nlist();
    let mut stops = nprobes.iter().map(|&p| p.clamp(1, nlist)).peekable();
    let mut stop = 0;
    let probed = ivf.coarse.probe(input, nprobes.last().copied().unwrap_or(1), scratch);
    for (done, &list) in probed.iter().enumerate() {
        if let Some(&next) = probed.get(done + 1) {
            prefetch_list(lists, &tables, next);
        }
        while stops.next_if(|&p| p <= done).is_some() {
            at_stop(stop, &top, &probed);
            stop += 1;
        }
        scan_probed(lists, &mut tables, prefix.as_ref(), list, allowed, ranking, &mut top, &mut own, scratch);
    }
    for _ in stops {
        at_stop(stop, &top, &probed);
        stop += 1;
    }
    (tables, prefix)
}

/// Scans probed `list` into `top`: its entries that `allowed` (when
/// filtering) lets the search return, with the list's own table, or
/// (stage one of a two-stage search, whose lists hold the codes' first
/// bytes) with `prefix`; the bitmap of allowed entries goes in `own`.
#[allow(clippy::too_many_arguments)]
fn scan_probed(
    lists: &InvertedLists,
    tables: &mut ProbeTables<'_>,
    prefix: Option<&QueryTable>,
    list: u32,
    allowed: Option<&LiveSet>,
    ranking: Ranking,
    top: &mut TopK,
    own: &mut Vec<u64>,
    scratch: &mut Vec<f32>,
) {
    let (codes, slots) = lists.list(list);
    let Some(own_live) = ListEntries::of(allowed, slots, own).to_scan() else { return };
    if let Some(prefix) = prefix {
        // Stage one: estimated, in the prefix table's units (stage two
        // scores the candidates anew).
        scan_planar(prefix, codes, slots.len(), (list as u64) << 32, own_live, true, 0.0, top);
        return;
    }
    let (table, shift) = tables.table(list, scratch);
    scan_list(table, shift, list, codes, slots.len(), own_live, ranking, top);
}

/// `probe_candidates` of several queries at once, list by list: a list
/// that several of them probe is scanned for each while its codes and
/// table terms are in cache (queries that probe many lists share most of
/// them: at 1M x 768, a list's codes are ~100 KiB read from memory). The
/// candidates are those of one `probe_candidates` per query: a list's
/// candidates do not depend on when it is scanned.
#[allow(clippy::too_many_arguments)]
fn probe_candidates_grouped(
    pq: &PqData,
    lists: &InvertedLists,
    inputs: &[&[f32]],
    nprobe: usize,
    depth: usize,
    ranking: Ranking,
    allowed: Option<&LiveSet>,
    scratch: &mut Vec<f32>,
) -> Result<Vec<Vec<(f32, u64)>>> {
    let ivf = pq.quantizer.ivf.as_ref().expect("IVF store");
    // (list, query) for every list a query probes, by list.
    let mut pairs: Vec<(u32, u32)> = Vec::with_capacity(inputs.len() * nprobe.min(lists.nlist()));
    for (q, probed) in ivf.coarse.probe_many(inputs, nprobe, scratch).into_iter().enumerate() {
        pairs.extend(probed.into_iter().map(|list| (list, q as u32)));
    }
    pairs.sort_unstable();
    let mut tables: Vec<_> = inputs.iter().map(|input| pq.quantizer.probe_tables(input)).collect();
    let prefixes = stage_one_tables(pq, &tables);
    let first_depth = stage_one_depth(prefixes.is_some(), depth);
    let mut tops: Vec<TopK> = (0..inputs.len()).map(|_| TopK::new(first_depth)).collect();
    let mut own = Vec::new();
    for (list, these, next) in list_runs(&pairs, |&(l, q)| (l, q)) {
        if let Some((next, q)) = next {
            prefetch_list(lists, &tables[q as usize], next);
        }
        let (codes, slots) = lists.list(list);
        let Some(own_live) = ListEntries::of(allowed, slots, &mut own).to_scan() else { continue };
        let queries: Vec<usize> = these.iter().map(|&(_, q)| q as usize).collect();
        let scan = ListScan { list, codes, count: slots.len(), own_live, ranking };
        scan.for_many(&mut tables, prefixes.as_deref(), &queries, pick_mut(&mut tops, &queries), scratch);
    }
    let ordered = ranking == Ranking::Adc;
    tops.into_iter().zip(&tables).map(|(top, tables)| candidates_from(pq, lists, tables, prefixes.is_some(), top, depth, ranking, ordered)).collect()
}

/// `probe_candidates_at` (no filter) of several queries at once, list by
/// list as `probe_candidates_grouped`, so that each list's codes are read
/// from memory once for all of them. A list that a query probes at rank
/// `r` goes to a heap of its own for the probe counts past `r`; each
/// probe count's candidates are then the best `depth` of the heaps up to
/// it (the best of a union are the best of its parts' best: `TopK` ranks
/// by distance, then position).
#[allow(clippy::too_many_arguments)]
fn probe_candidates_at_grouped(
    pq: &PqData,
    lists: &InvertedLists,
    inputs: &[&[f32]],
    nprobes: &[usize],
    depth: usize,
    ranking: Ranking,
    ordered: bool,
    scratch: &mut Vec<f32>,
) -> Result<Vec<Vec<Candidates>>> {
    debug_assert!(nprobes.is_sorted());
    let ivf = pq.quantizer.ivf.as_ref().expect("IVF store");
    let stops: Vec<usize> = nprobes.iter().map(|&p| p.clamp(1, lists.nlist())).collect();
    let segments = stops.len();
    // (list, query, segment) for every list a query probes, by list.
    let mut pairs: Vec<(u32, u32, u32)> = Vec::new();
    for (q, probed) in ivf.coarse.probe_many(inputs, stops.last().copied().unwrap_or(1), scratch).into_iter().enumerate() {
        pairs.extend(probed.into_iter().enumerate().map(|(rank, list)| (list, q as u32, stops.partition_point(|&p| p <= rank) as u32)));
    }
    pairs.sort_unstable();
    let mut tables: Vec<_> = inputs.iter().map(|input| pq.quantizer.probe_tables(input)).collect();
    let prefixes = stage_one_tables(pq, &tables);
    let first_depth = stage_one_depth(prefixes.is_some(), depth);
    let mut heaps: Vec<TopK> = (0..inputs.len() * segments).map(|_| TopK::new(first_depth)).collect();
    for (list, these, next) in list_runs(&pairs, |&(l, q, _)| (l, q)) {
        if let Some((next, q)) = next {
            prefetch_list(lists, &tables[q as usize], next);
        }
        let (codes, slots) = lists.list(list);
        if slots.is_empty() {
            continue;
        }
        let queries: Vec<usize> = these.iter().map(|&(_, q, _)| q as usize).collect();
        // One heap a query: ascending with the queries.
        let picked: Vec<usize> = these.iter().map(|&(_, q, segment)| q as usize * segments + segment as usize).collect();
        let scan = ListScan { list, codes, count: slots.len(), own_live: None, ranking };
        scan.for_many(&mut tables, prefixes.as_deref(), &queries, pick_mut(&mut heaps, &picked), scratch);
    }
    let mut heaps = heaps.into_iter();
    (0..inputs.len())
        .map(|q| {
            let mut running = TopK::new(first_depth);
            (0..segments)
                .map(|_| {
                    for (d, position) in heaps.next().expect("a heap a segment").into_vec() {
                        running.push(d, position);
                    }
                    candidates_from(pq, lists, &tables[q], prefixes.is_some(), running.clone(), depth, ranking, ordered)
                })
                .collect()
        })
        .collect()
}

/// One list's codes to scan: `count` entries, `own_live` as `ListEntries`
/// gives it, positions `list << 32 | entry`.
struct ListScan<'a> {
    list: u32,
    codes: &'a [u8],
    count: usize,
    own_live: Option<&'a [u64]>,
    ranking: Ranking,
}

impl ListScan<'_> {
    /// Scans the list with the table of each of `queries` (ascending, in
    /// `tables`) into its heap in `heaps`, or (stage one of a two-stage
    /// search) with stage one's table in `prefixes`, estimated: up to
    /// `SCAN_GROUP` queries at a time share one pass over the codes.
    fn for_many(&self, tables: &mut [ProbeTables<'_>], prefixes: Option<&[QueryTable]>, queries: &[usize], mut heaps: Vec<&mut TopK>, scratch: &mut Vec<f32>) {
        let estimated = self.ranking == Ranking::Estimated;
        let position = (self.list as u64) << 32;
        for (some, heaps) in queries.chunks(SCAN_GROUP).zip(heaps.chunks_mut(SCAN_GROUP)) {
            if let Some(prefixes) = prefixes {
                // Each query's own heap, in its prefix table's units.
                let made: Vec<&QueryTable> = some.iter().map(|&q| &prefixes[q]).collect();
                scan_planar_many(&made, self.codes, self.count, position, self.own_live, true, &vec![0.0; made.len()], heaps);
                continue;
            }
            let (made, shifts): (Vec<&QueryTable>, Vec<f32>) = pick_mut(tables, some).into_iter().map(|t| t.table(self.list, scratch)).unzip();
            if made.iter().all(|t| t.unscale(1.0) == 1.0) {
                scan_planar_many(&made, self.codes, self.count, position, self.own_live, estimated, &shifts, heaps);
            } else {
                for ((table, shift), top) in made.into_iter().zip(shifts).zip(heaps.iter_mut()) {
                    scan_list(table, shift, self.list, self.codes, self.count, self.own_live, self.ranking, top);
                }
            }
        }
    }
}

/// `pairs` (sorted by list), one list at a time: its number, its run of
/// pairs, and the (list, query) of the next run's first pair (to prefetch
/// while this one is scanned); `key` gives a pair's (list, query).
fn list_runs<T>(pairs: &[T], key: impl Fn(&T) -> (u32, u32)) -> impl Iterator<Item = (u32, &[T], Option<(u32, u32)>)> {
    let mut rest = pairs;
    std::iter::from_fn(move || {
        let list = key(rest.first()?).0;
        let same = rest.iter().take_while(|p| key(p).0 == list).count();
        let (these, after) = rest.split_at(same);
        rest = after;
        Some((list, these, rest.first().map(&key)))
    })
}

/// `items[i]` for each `i` of `picks` (ascending, each once), mutably.
fn pick_mut<'a, T>(items: &'a mut [T], picks: &[usize]) -> Vec<&'a mut T> {
    let mut out = Vec::with_capacity(picks.len());
    let (mut rest, mut offset) = (items, 0);
    for &i in picks {
        let (picked, after) = std::mem::take(&mut rest)[i - offset..].split_first_mut().expect("picks ascend within items");
        out.push(picked);
        (rest, offset) = (after, i + 1);
    }
    out
}

/// Starts loading what scanning `list` first reads: its table terms and
/// its first `SCAN_AHEAD` bytes of codes (the scan loads the rest ahead
/// itself), while the list before it is scanned: at 1M x 768, PQ192x4,
/// the terms are 12 KiB a list, and waiting for them was a sixth of a
/// search.
fn prefetch_list(lists: &InvertedLists, tables: &ProbeTables<'_>, list: u32) {
    tables.prefetch(list);
    let codes = lists.list(list).0;
    crate::storage::prefetch::prefetch_slice(&codes[..codes.len().min(SCAN_AHEAD)]);
}

/// Which entries of a list a search may return.
#[derive(Clone, Copy)]
enum ListEntries<'o> {
    /// None: the list is empty or the filter allows none of it (no table
    /// is made).
    Skip,
    /// All of them (no filter).
    All,
    /// Those whose bit is set, one bit per entry.
    Allowed(&'o [u64]),
}

impl<'o> ListEntries<'o> {
    /// The entries of a list (its `slots`) that `allowed` (when filtering)
    /// lets a search return; the bitmap goes in `own`.
    fn of(allowed: Option<&LiveSet>, slots: &[u32], own: &'o mut Vec<u64>) -> ListEntries<'o> {
        if slots.is_empty() {
            return ListEntries::Skip;
        }
        let Some(allowed) = allowed else { return ListEntries::All };
        own.clear();
        own.resize(slots.len().div_ceil(64), 0u64);
        for (i, &s) in slots.iter().enumerate() {
            if allowed.contains(s as u64) {
                own[i / 64] |= 1 << (i % 64);
            }
        }
        if own.iter().all(|&w| w == 0) {
            return ListEntries::Skip;
        }
        ListEntries::Allowed(own)
    }

    /// The scan's own bitmap (`None`: every entry), or `None` for a list to skip.
    fn to_scan(self) -> Option<Option<&'o [u64]>> {
        match self {
            ListEntries::Skip => None,
            ListEntries::All => Some(None),
            ListEntries::Allowed(bits) => Some(Some(bits)),
        }
    }
}

/// Scans `list`'s codes with its table (distances `shift` more than the
/// table's, as `ProbeTables::table` gives them) into `top`, as positions
/// `list << 32 | entry`.
#[allow(clippy::too_many_arguments)]
fn scan_list(table: &QueryTable, shift: f32, list: u32, codes: &[u8], count: usize, own_live: Option<&[u64]>, ranking: Ranking, top: &mut TopK) {
    let estimated = ranking == Ranking::Estimated;
    if table.unscale(1.0) == 1.0 {
        scan_planar(table, codes, count, (list as u64) << 32, own_live, estimated, shift, top);
    } else {
        // A table scaled for extreme values (made whole: no shift): its
        // distances join the others' in the metric's units.
        debug_assert_eq!(shift, 0.0, "scaled tables are made whole");
        let mut local = TopK::new(top.k());
        scan_planar(table, codes, count, (list as u64) << 32, own_live, estimated, 0.0, &mut local);
        push_unscaled(table, local, top);
    }
}

/// The candidates a scan kept, as (distance, slot): best first when
/// `ordered`, else in any order.
fn candidates_of(lists: &InvertedLists, top: TopK, ordered: bool) -> Vec<(f32, u64)> {
    let best = if ordered { top.into_sorted_vec() } else { top.into_vec() };
    best.into_iter()
        .map(|(d, position)| (d, lists.list((position >> 32) as u32).1[(position & 0xFFFF_FFFF) as usize] as u64))
        .collect()
}

/// The bytes a scan of every list reads: the codes the lists hold and the
/// quantizer's tables and terms (what decides whether lists stay in cache
/// from one query to the next).
fn index_bytes(pq: &PqData, lists: &InvertedLists) -> usize {
    lists.len() * lists.code_size() + pq.quantizer.heap_bytes()
}

/// Whether a batch's queries are searched in groups of `QUERY_GROUP` whose
/// lists are scanned together (from `GROUP_MIN_BYTES` of index).
pub(super) fn groups_queries(pq: &PqData, lists: &InvertedLists) -> bool {
    index_bytes(pq, lists) >= GROUP_MIN_BYTES
}

/// IVF search of `queries`: probe, scan, re-rank exactly when asked and
/// possible. Queries go in groups whose lists are scanned together once
/// the index outgrows the cache (`GROUP_MIN_BYTES`); results are the same.
#[allow(clippy::too_many_arguments)]
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
    let (nprobe, rerank, _) = plan(view, pq, lists, params, k, allowed);
    let ranking = if rerank > 0 { Ranking::Estimated } else { Ranking::Adc };
    let depth = k.max(rerank);
    let mut scratch = Vec::new();
    let mut out = Vec::with_capacity(queries.len());
    // A query split among threads is searched on its own: its lists are
    // read once anyway.
    let scanned = nprobe.min(lists.nlist()) * (lists.len() / lists.nlist().max(1)) * lists.code_size();
    let parts = super::read::split_parts(params.query_threads, scanned);
    let group = if parts == 1 && groups_queries(pq, lists) { QUERY_GROUP } else { 1 };
    for group in queries.chunks(group) {
        let inputs: Vec<_> = group.iter().map(|q| store.pq_input(q)).collect();
        let found = if let [input] = &inputs[..] {
            vec![probe_candidates(pq, lists, input, nprobe, depth, ranking, allowed, parts, &mut scratch)?]
        } else {
            let inputs: Vec<&[f32]> = inputs.iter().map(|i| &i[..]).collect();
            probe_candidates_grouped(pq, lists, &inputs, nprobe, depth, ranking, allowed, &mut scratch)?
        };
        for (query, candidates) in group.iter().zip(found) {
            out.push(super::pq::finish(&view.generation, store, query, candidates, k, rerank, Some(lists), params.query_threads)?);
        }
    }
    Ok(out)
}

/// Measures, on up to `CALIBRATION_QUERIES` stored vectors searched as
/// queries (each left out of its own results), the recall@10 and cost of a
/// grid of probe counts and re-rank depths: every point measured (the
/// caller keeps the front, `Calibration::from_measurements`, and judges a
/// two-stage index by them all); none without the raw vectors or with
/// too few live ones. `sample` keeps the queries and their exact neighbours for a second
/// calibration of the same vectors (training's, when it makes a two-stage
/// index one-stage: they do not depend on the lists' mode).
pub(super) fn calibrate<'g>(
    store: &Store,
    generation: &'g Generation,
    pq: &PqData,
    lists: &InvertedLists,
    live: &LiveSet,
    sample: &mut Option<Sample<'g>>,
) -> Result<Vec<CalibrationPoint>> {
    if generation.vectors.is_none() || live.count() <= CALIBRATION_K as u64 {
        return Ok(Vec::new());
    }
    let sample = match sample {
        Some(sample) => sample,
        None => sample.insert(Sample::of(store, generation, pq, lists, live)?),
    };
    calibrate_sample(store, generation, pq, lists, sample, &mut |_, _| {})
}

/// Measures the grid as `calibrate` does on `queries`, the host's own (in
/// the caller's space, as searches take them): their exact neighbours
/// among the `live` slots, then every setting's recall@10 and cost. The
/// caller checks the store has raw vectors and more than
/// `CALIBRATION_K` live ones. `progress(done, total)` on the calling
/// thread: the exact neighbours of every query count one unit a query
/// (reported once they are all found), and each grid measured one a
/// query; a second grid that is not needed is skipped to the end.
pub(super) fn calibrate_on_queries(
    store: &Store,
    generation: &Generation,
    pq: &PqData,
    lists: &InvertedLists,
    live: &LiveSet,
    queries: &[&[f32]],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Calibration> {
    let nq = queries.len() as u64;
    let total = 3 * nq;
    progress(0, total);
    // No query is a stored vector to leave out of its own results.
    let slots = vec![u64::MAX; queries.len()];
    let truths = exact_neighbours(store, generation, pq, lists, &slots, queries, live)?;
    progress(nq, total);
    let sample = Sample { queries: slots, vectors: queries.to_vec(), truths };
    let points = calibrate_sample(store, generation, pq, lists, &sample, &mut |grid, done| {
        progress(nq * (1 + grid as u64) + done as u64, total)
    })?;
    progress(total, total);
    Ok(Calibration::from_measurements(points).measured_on(queries.len() as u32))
}

/// The points `sample` measures: the first grid, and the deeper one
/// where the first does not reach `DEEPER_BELOW`. `progress(grid, done)`:
/// `done` queries of grid 0 (the first) or 1 measured.
fn calibrate_sample(
    store: &Store,
    generation: &Generation,
    pq: &PqData,
    lists: &InvertedLists,
    sample: &Sample<'_>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<CalibrationPoint>> {
    // Grouped scans where the index outgrows the caches (`measure` takes a
    // two-stage index's queries one at a time).
    let two_stage = pq.quantizer.stage_one_bytes().is_some();
    let group = if index_bytes(pq, lists) >= CALIBRATION_GROUP_MIN_BYTES { CALIBRATION_GROUP } else { 1 };
    let grid = rerank_grid(store, two_stage);
    let deeper_grid: &[u32] = if two_stage { &TWO_STAGE_DEEPER_GRID } else { &DEEPER_GRID };
    let first = measure(store, pq, lists, sample, group, grid, &mut |done| progress(0, done))?;
    let mut points = calibration_points(generation, pq, lists, grid, first);
    let best = points.iter().map(|p| p.recall).fold(0.0f32, f32::max);
    // (Not where searches cannot re-rank: a grid of depth 0 alone.)
    if grid != [0] && best < DEEPER_BELOW {
        // Heaps as deep as the deepest depth: fewer queries a group keep
        // a group's heaps about as large as the first pass's.
        let group = (group * *grid.last().expect("grid") as usize / *deeper_grid.last().expect("grid") as usize).max(1);
        let deeper = measure(store, pq, lists, sample, group, deeper_grid, &mut |done| progress(1, done))?;
        points.extend(calibration_points(generation, pq, lists, deeper_grid, deeper));
    }
    Ok(points)
}

/// The points of a measured grid (`grid`: its re-rank depths), each with
/// its recall less one standard error and its cost.
fn calibration_points(
    generation: &Generation,
    pq: &PqData,
    lists: &InvertedLists,
    grid: &[u32],
    measured: Measured,
) -> Vec<CalibrationPoint> {
    let Measured { queries, nprobes, found } = measured;
    let prices = Prices::of(generation, pq, lists);
    let stage_one = pq.quantizer.stage_one_bytes();
    let wanted = (queries * CALIBRATION_K) as f32;
    let mut points = Vec::new();
    for (p, &nprobe) in nprobes.iter().enumerate() {
        for (r, &per_k) in grid.iter().enumerate() {
            points.push(CalibrationPoint {
                recall: confident_recall(found[p][r], wanted),
                nprobe: nprobe as u32,
                rerank_per_k: per_k,
                cost: prices.cost(nprobe as u32, per_k, stage_one),
            });
        }
    }
    points
}

/// The recall `found` of `wanted` neighbours less one standard error of
/// that measurement (a binomial proportion): a target is promised only
/// by a setting whose measured recall is clear of it by that much. (At
/// 0.99, without the margin, the setting chosen measured 0.989 on the
/// ann benchmark's fresh queries: the held-out stored vectors sit a
/// little closer to their neighbours.)
fn confident_recall(found: usize, wanted: f32) -> f32 {
    let r = found as f32 / wanted;
    r - (r * (1.0 - r) / wanted).max(0.0).sqrt()
}

/// What calibration measures: over `queries` queries, for each probe
/// count `nprobes[p]` and re-rank depth `grid[r]` (the grid measured), the
/// true neighbours found (`found[p][r]`, of `queries * CALIBRATION_K`).
#[derive(Debug, PartialEq)]
struct Measured {
    queries: usize,
    nprobes: Vec<usize>,
    found: Vec<Vec<usize>>,
}

/// The calibration's queries (live slots drawn with the fixed seed) and
/// their verified vectors.
fn calibration_queries<'g>(generation: &'g Generation, live: &LiveSet) -> Result<(Vec<u64>, Vec<&'g [f32]>)> {
    let queries = random_slots(&live.iter().collect::<Vec<_>>(), CALIBRATION_QUERIES, CALIBRATION_SEED);
    let vectors = queries.iter().map(|&q| generation.vector(q, &generation.slot_record(q)?)).collect::<Result<Vec<_>>>()?;
    Ok((queries, vectors))
}

/// The calibration's queries, their vectors and their exact neighbours
/// (found once for every grid measured).
pub(super) struct Sample<'g> {
    queries: Vec<u64>,
    vectors: Vec<&'g [f32]>,
    truths: Vec<Vec<u64>>,
}

impl<'g> Sample<'g> {
    fn of(store: &Store, generation: &'g Generation, pq: &PqData, lists: &InvertedLists, live: &LiveSet) -> Result<Sample<'g>> {
        let (queries, vectors) = calibration_queries(generation, live)?;
        let truths = exact_neighbours(store, generation, pq, lists, &queries, &vectors, live)?;
        Ok(Sample { queries, vectors, truths })
    }
}

/// The re-rank depths measured: a DROP_RAW store's searches cannot
/// re-rank (its raw vectors go once it is trained), so only depth 0 (the
/// ADC order) there. Other stores start at one candidate per result: a
/// search without re-rank ranks its lists by exact ADC, not by the fast
/// scan's estimates, which the cost model does not see (harness, one
/// thread, nprobe 1-3: re-ranking 10 candidates answered 2-3.5x the
/// queries/s of depth 0 at the same recall on siftsmall and cohere768;
/// the calibration chose depth 0 for targets up to 0.85).
fn rerank_grid(store: &Store, two_stage: bool) -> &'static [u32] {
    if store.settings.drop_raw() {
        &RERANK_GRID[..1]
    } else if two_stage {
        &RERANK_GRID[1..=TWO_STAGE_GRID_END]
    } else {
        &RERANK_GRID[1..]
    }
}

/// The probe counts measured: 1, 2, 3, 4, 6, 9, ... (steps of about 1.5x;
/// all read off one scan of a query's lists), nlist.
fn probe_counts(nlist: usize) -> Vec<usize> {
    let mut nprobes: Vec<usize> =
        std::iter::successors(Some(1usize), |&p| (p < nlist).then(|| (p + p.div_ceil(2)).min(nlist))).collect();
    nprobes.dedup();
    nprobes
}

/// Measures the re-rank depths `grid` for the sample's queries (their
/// exact neighbours found at once by `exact_neighbours`): per query one
/// scan of its lists, nearest first, whose candidates are taken at each
/// probe count on the way (`probe_candidates_at`; with `group` > 1, that
/// many queries share each list's scan: `probe_candidates_at_grouped`).
/// Every re-rank depth is a prefix of those candidates; a two-stage
/// index's queries are measured one at a time, each depth with its own
/// stage one (`staged_hits_of`). It counts what probing and re-ranking
/// each setting on its own would (the test below holds it to that).
/// `progress(done)` on the calling thread, after each round of groups,
/// with the queries measured so far.
fn measure(
    store: &Store,
    pq: &PqData,
    lists: &InvertedLists,
    sample: &Sample<'_>,
    group: usize,
    grid: &[u32],
    progress: &mut dyn FnMut(usize),
) -> Result<Measured> {
    let Sample { queries, vectors, truths } = sample;
    let nprobes = probe_counts(lists.nlist());
    let max_depth = CALIBRATION_K * (*grid.last().expect("grid") as usize).max(1);
    // Candidates ranked as the searches measured rank them: by exact ADC
    // without re-rank (a grid of depth 0 alone), else by the fast-scan
    // estimates (depth 0 then reads the estimates' order, which matches
    // the exact ADC order far more closely than the ADC matches the true
    // distances).
    let ranking = if grid == [0] { Ranking::Adc } else { Ranking::Estimated };
    // Per query, hits[p][r]: true neighbours found with nprobes[p] and
    // grid[r]. A re-rank of the first d candidates finds exactly the
    // true neighbours among them, with no distance to compute: the truth
    // is the best CALIBRATION_K of all vectors in the order the re-rank
    // uses (exact distance, then slot), so each true neighbour in the
    // prefix is among the prefix's best CALIBRATION_K. Without re-rank
    // (depth 0) the hits are the first CALIBRATION_K candidates.
    let hits_of = |i: usize, probed: Vec<Vec<(f32, u64)>>| -> Vec<Vec<usize>> {
        let (q, truth) = (queries[i], &truths[i]);
        let mut hits = Vec::with_capacity(nprobes.len());
        for mut candidates in probed {
            candidates.retain(|&(_, s)| s != q);
            let at: Vec<usize> = (0..candidates.len()).filter(|&c| truth.contains(&candidates[c].1)).collect();
            let depths = grid.iter().map(|&per_k| per_k.max(1) as usize * CALIBRATION_K);
            hits.push(depths.map(|depth| at.iter().filter(|&&c| c < depth).count()).collect());
        }
        hits
    };
    // A two-stage search of depth d keeps stage one's best
    // STAGE_ONE_PER_DEPTH x d, then their best d by whole codes. Per
    // query, one scan deep enough for the deepest d (`stage_k`, one more
    // for the query itself); the stops' candidates, each once, in stage
    // one's order; and each one's whole code's distance (one gather). A
    // candidate in a stop's heap was in the heap of the stop that probed
    // its list (adding lists only pushes candidates out), so each is taken
    // from that stop's heap alone, and a stop's stage one is the first
    // `stage_k` candidates of the lists it probed. A true neighbour counts
    // at d when it is among stage one's first STAGE_ONE_PER_DEPTH x d and
    // fewer than d of those rank before it by whole codes.
    let stage_k = stage_one_depth(true, max_depth + 1);
    let depths: Vec<usize> = grid.iter().map(|&per_k| per_k.max(1) as usize * CALIBRATION_K).collect();
    let staged_hits_of = |i: usize, input: &[f32]| -> Result<Vec<Vec<usize>>> {
        let (q, truth) = (queries[i], &truths[i]);
        // The stop that probed each list (the first whose count passes
        // its rank), and the stops' candidates, each once: (stage one's
        // distance in total order, position). A heap kept as a reservoir
        // may hold more than its best `stage_k`: scanned candidates too,
        // which rank after those, so a stop's first `stage_k` are its
        // heap's best all the same.
        let (mut stop_of, mut union) = (Vec::new(), Vec::new());
        let (tables, prefix) = probe_stops(pq, lists, input, &nprobes, max_depth + 1, ranking, None, &mut Vec::new(), |s, top, probed| {
            if s == 0 {
                stop_of = vec![u16::MAX; lists.nlist()];
                for (rank, &list) in probed.iter().enumerate() {
                    stop_of[list as usize] = nprobes.partition_point(|&p| p <= rank) as u16;
                }
            }
            let new = top.kept().filter(|&(_, position)| stop_of[(position >> 32) as usize] as usize == s);
            union.extend(new.map(|(d, position)| (crate::quantization::total_order_bits(d), position)));
        });
        assert!(prefix.is_some(), "a two-stage index's searches have stage one's table");
        let table = tables.shared().expect("a two-stage search's table is shared by every list");
        let stop_of_position = |position: u64| stop_of[(position >> 32) as usize] as usize;
        union.sort_unstable();
        let positions: Vec<u64> = union.iter().map(|&(_, position)| position).collect();
        let slots: Vec<u64> = positions.iter().map(|&position| lists.slot_at(position)).collect();
        // Each stop's stage one as indexes into `union` (ascending: best
        // first): the best `stage_k` of the stop before's and its own new
        // candidates, the query then left out.
        let mut new = vec![Vec::new(); nprobes.len()];
        for (u, &position) in positions.iter().enumerate() {
            new[stop_of_position(position)].push(u);
        }
        let (mut running, mut firsts) = (Vec::new(), Vec::with_capacity(nprobes.len()));
        let mut needed = vec![false; union.len()];
        for new in &new {
            running = merge_best(&running, new, stage_k);
            let first: Vec<usize> = running.iter().copied().filter(|&u| slots[u] != q).collect();
            first.iter().for_each(|&u| needed[u] = true);
            firsts.push(first);
        }
        // Their whole codes' distances in total order, by index into
        // `union` (gathered with the indexes as positions).
        let wanted: Vec<u64> = (0..union.len() as u64).filter(|&u| needed[u as usize]).collect();
        let mut all = TopK::new(wanted.len());
        let mut gathered = 0;
        let wanted_positions: Vec<u64> = wanted.iter().map(|&u| positions[u as usize]).collect();
        for_gathered(pq, lists, &wanted_positions, |codes, chunk| {
            rank_gathered(table, codes, &wanted[gathered..gathered + chunk.len()], &[], ranking == Ranking::Estimated, &mut all);
            gathered += chunk.len();
        })?;
        let mut whole = vec![0u32; union.len()];
        for (d, u) in all.into_vec() {
            whole[u as usize] = crate::quantization::total_order_bits(d);
        }
        let is_truth: Vec<bool> = slots.iter().map(|slot| truth.contains(slot)).collect();
        let mut hits = Vec::with_capacity(nprobes.len());
        for first in &firsts {
            // Whole-code order: (distance, position), as `TopK` keeps it.
            let key = |u: usize| (whole[u], positions[u]);
            // The true neighbours stage one found: (key, place in stage
            // one), in whole-code order.
            let mut truths: Vec<((u32, u64), usize)> = first.iter().enumerate().filter(|&(_, &u)| is_truth[u]).map(|(c, &u)| (key(u), c)).collect();
            truths.sort_unstable();
            let mut found = vec![0usize; depths.len()];
            if !truths.is_empty() {
                // One pass over stage one's first kept[r] at every depth:
                // `after[m]` counts those ranking after exactly m of the
                // neighbours by whole codes, so before the i-th neighbour
                // rank those counted in after[..=i] (a neighbour ranks
                // after itself). Most rank after every neighbour.
                let mut after = vec![0usize; truths.len() + 1];
                let mut j = 0;
                for (r, &depth) in depths.iter().enumerate() {
                    let kept = (depth * STAGE_ONE_PER_DEPTH).min(first.len());
                    for &u in &first[j..kept] {
                        let mut m = truths.len();
                        while m > 0 && truths[m - 1].0 > key(u) {
                            m -= 1;
                        }
                        after[m] += 1;
                    }
                    j = kept;
                    let mut before = 0;
                    for (i, &(_, c)) in truths.iter().enumerate() {
                        before += after[i];
                        found[r] += usize::from(c < kept && before < depth);
                    }
                }
            }
            hits.push(found);
        }
        Ok(hits)
    };
    // Groups of `group` queries scan the lists together (each list read
    // from memory once a group), the groups split among the threads, in
    // rounds of ROUND_GROUPS a thread (progress is reported between them).
    const ROUND_GROUPS: usize = 16;
    // A two-stage index's queries one at a time: each depth's stage one
    // keeps its own number of candidates, which `staged_hits_of` follows
    // (a grouped scan's candidates are stage two's of the deepest stage
    // one; its heaps would also be STAGE_ONE_PER_DEPTH times as deep).
    let two_stage = pq.quantizer.stage_one_bytes().is_some();
    let group = if two_stage { 1 } else { group.max(1) };
    let groups: Vec<std::ops::Range<usize>> = (0..queries.len()).step_by(group).map(|g| g..(g + group).min(queries.len())).collect();
    let threads = store.threads.clamp(1, groups.len().max(1));
    let mut parts = Vec::new();
    for round in groups.chunks(threads * ROUND_GROUPS) {
        let workers = threads.min(round.len());
        parts.extend(crate::parallel::concurrently(workers, |t| {
            let mut hits = Vec::new();
            for group in round.iter().skip(t).step_by(workers) {
                let inputs: Vec<_> = group.clone().map(|i| store.pq_input(vectors[i])).collect();
                let inputs: Vec<&[f32]> = inputs.iter().map(|i| &i[..]).collect();
                if let [input] = &inputs[..] {
                    let i = group.start;
                    if two_stage {
                        hits.push(staged_hits_of(i, input)?);
                    } else {
                        let probed = probe_candidates_at(pq, lists, input, &nprobes, max_depth + 1, ranking, None, true, &mut Vec::new())?;
                        hits.push(hits_of(i, probed));
                    }
                    continue;
                }
                let probed = probe_candidates_at_grouped(pq, lists, &inputs, &nprobes, max_depth + 1, ranking, true, &mut Vec::new())?;
                hits.extend(group.clone().zip(probed).map(|(i, probed)| hits_of(i, probed)));
            }
            Ok(hits)
        }));
        progress(round.last().map_or(0, |g| g.end));
    }
    let mut found = vec![vec![0usize; grid.len()]; nprobes.len()];
    for hits in parts.into_iter().collect::<Result<Vec<_>>>()?.into_iter().flatten() {
        for (total, row) in found.iter_mut().zip(hits) {
            for (a, b) in total.iter_mut().zip(row) {
                *a += b;
            }
        }
    }
    Ok(Measured { queries: queries.len(), nprobes, found })
}

/// The first `k` of the ascending `a` and `b` merged (ascending).
fn merge_best(a: &[usize], b: &[usize], k: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(k.min(a.len() + b.len()));
    let (mut i, mut j) = (0, 0);
    while out.len() < k && (i < a.len() || j < b.len()) {
        if j == b.len() || (i < a.len() && a[i] < b[j]) {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out
}

/// For each of `vectors` (L2), the `k`-th smallest distance to the live
/// vectors of its nearest lists (enough lists for `k` of them): a bound
/// its `k`-th nearest neighbour is within, for `projected_scan` (`None`
/// where the lists hold fewer than `k` live vectors).
fn neighbour_bounds(
    store: &Store,
    generation: &Generation,
    pq: &PqData,
    lists: &InvertedLists,
    vectors: &[&[f32]],
    k: usize,
    live: &LiveSet,
) -> Result<Option<Vec<f32>>> {
    let Some(ivf) = pq.quantizer.ivf.as_ref() else { return Ok(None) };
    let bound = |v: &[f32], scores: &mut Vec<f32>, distances: &mut Vec<f32>| -> Result<Option<f32>> {
        let prepared = crate::search::distance::PreparedQuery::new(v, crate::options::Metric::L2);
        distances.clear();
        // The nearest lists first, a few at a time.
        let mut probed = 0;
        while distances.len() < k && probed < lists.nlist() {
            let more = ivf.coarse.probe(v, (probed + 4).min(lists.nlist()), scores);
            for &list in &more[probed..] {
                for &slot in lists.list(list).1 {
                    if live.contains(slot as u64) {
                        distances.push(prepared.distance(generation.vector_unchecked(slot as u64)?, 0.0));
                    }
                }
                if distances.len() >= k {
                    break;
                }
            }
            probed = more.len();
        }
        if distances.len() < k {
            return Ok(None);
        }
        let (_, &mut kth, _) = distances.select_nth_unstable_by(k - 1, f32::total_cmp);
        Ok(Some(kth))
    };
    let chunk = vectors.len().div_ceil(store.threads.max(1)).max(1);
    let parts = crate::parallel::by_ranges(vectors.len(), chunk, |run| -> Result<Vec<Option<f32>>> {
        let (mut scores, mut distances) = (Vec::new(), Vec::new());
        vectors[run].iter().map(|v| bound(v, &mut scores, &mut distances)).collect()
    });
    let mut bounds = Vec::with_capacity(vectors.len());
    for part in parts {
        for b in part? {
            let Some(b) = b else { return Ok(None) };
            bounds.push(b);
        }
    }
    Ok(Some(bounds))
}

/// The `CALIBRATION_K` exact nearest neighbours of each of `queries` (live
/// slots whose verified vectors are `vectors`) among the `live` slots, the
/// query itself left out (`CALIBRATION_K + 1` results, the query's own
/// slot dropped): every query at once, in one pass over the vectors. An
/// L2 store whose assignment is screened prunes with the screen's
/// directions (`read::projected_scan`: at 1M x 768, 16 directions, 200
/// queries, 0.8 s instead of 1.2, about 14,000 of 1M vectors scored in
/// full a query); else blocked matrix products (`search::blocked`).
fn exact_neighbours(
    store: &Store,
    generation: &Generation,
    pq: &PqData,
    lists: &InvertedLists,
    queries: &[u64],
    vectors: &[&[f32]],
    live: &LiveSet,
) -> Result<Vec<Vec<u64>>> {
    let k = CALIBRATION_K + 1;
    let projection = pq.quantizer.ivf.as_ref().and_then(|ivf| ivf.coarse.projection());
    let bounds = match projection {
        Some(_) if store.metric == crate::options::Metric::L2 => neighbour_bounds(store, generation, pq, lists, vectors, k, live)?,
        _ => None,
    };
    let hits = if let (Some(projection), Some(bounds)) = (projection, bounds) {
        super::read::projected_scan(generation, store, vectors, k, live, store.threads, projection, &bounds)?
    } else if crate::search::blocked::Blocked::applies(vectors.len(), k) {
        super::read::blocked_scan(generation, store, vectors, k, live, store.threads)?
    } else {
        vectors.iter().map(|v| super::read::exact_scan(generation, store, v, k, live, 1)).collect::<Result<_>>()?
    };
    let mut out = Vec::with_capacity(queries.len());
    for (&q, hits) in queries.iter().zip(hits) {
        let mut slots = Vec::with_capacity(CALIBRATION_K);
        for hit in hits {
            let slot = generation.slot_of_key(hit.key).ok_or_else(|| {
                Error::new(crate::ErrorKind::Internal, format!("calibration: hit key {} is not of its generation", hit.key))
            })?;
            if slot != q && slots.len() < CALIBRATION_K {
                slots.push(slot);
            }
        }
        out.push(slots);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{Metric, Options, PqSettings};
    use crate::quantization::kmeans::Rng;
    use crate::search::distance::PreparedQuery;
    use crate::{IdBuf, SearchMethod};

    const DIM: usize = 16;

    thread_local! {
        /// `two_stage_min_vectors` on this thread.
        pub(super) static TWO_STAGE_FROM: std::cell::Cell<usize> = const { std::cell::Cell::new(TWO_STAGE_MIN_VECTORS) };
        /// Whether training on this thread judges a two-stage index by its
        /// calibration (`two_stage_pays`); off, it keeps what it made
        /// (these stores are too small for two stages to pay).
        pub(super) static JUDGE_TWO_STAGE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// 3,000 vectors about 20 centres (every seventh deleted) in a trained
    /// IVF store (PQ8x4) of `metric`, and the vectors.
    fn clustered_store(dir: &crate::testutil::TempDir, metric: Metric, seed: u64) -> (Store, Vec<f32>) {
        let mut rng = Rng::new(seed);
        let mut value = || rng.below(2001) as f32 / 1000.0 - 1.0;
        let centres: Vec<f32> = (0..20 * DIM).map(|_| 4.0 * value()).collect();
        let n = 3000;
        let vectors: Vec<f32> = (0..n).flat_map(|i| (0..DIM).map(move |d| (i % 20) * DIM + d)).map(|at| centres[at] + value()).collect();
        let options = Options {
            metric,
            pq: Some(PqSettings { m: 8, bits: 4, train_size: 0 }),
            ivf_lists: Some(0),
            threads: 2,
            ..Options::create(DIM as u32)
        };
        let store = Store::open(dir.path().join("store"), &options).unwrap();
        store.put_batch(&IdBuf::new((0..n).map(|i| format!("v{i}"))).batch().unwrap(), &vectors).unwrap();
        store.delete_batch(&IdBuf::new((0..n).step_by(7).map(|i| format!("v{i}"))).batch().unwrap()).unwrap();
        store.train_pq(&mut |_, _| {}).unwrap();
        (store, vectors)
    }

    /// `clustered_store`'s vectors widened to `DIM * 8` dimensions (each
    /// value repeated with small noise) in a store with 64-byte codes
    /// (PQ128x4), trained as a two-stage index (the minimum lowered on this
    /// thread), and the vectors (of `DIM * 8` values each).
    fn two_stage_store(dir: &crate::testutil::TempDir, metric: Metric, seed: u64) -> (Store, Vec<f32>) {
        wide_store(dir, metric, seed, true, 20)
    }

    /// `two_stage_store`'s store (of vectors about `centres` centres), or
    /// (`two_stage` false) its twin trained the same but scanned whole.
    fn wide_store(dir: &crate::testutil::TempDir, metric: Metric, seed: u64, two_stage: bool, centres: usize) -> (Store, Vec<f32>) {
        let dim = DIM * 8;
        let mut rng = Rng::new(seed);
        let mut value = || rng.below(2001) as f32 / 1000.0 - 1.0;
        let count = centres;
        let centres: Vec<f32> = (0..count * dim).map(|_| 4.0 * value()).collect();
        let n = 3000;
        let vectors: Vec<f32> = (0..n).flat_map(|i| (0..dim).map(move |d| (i % count) * dim + d)).map(|at| centres[at] + value()).collect();
        let options = Options { metric, pq: Some(PqSettings { m: 128, bits: 4, train_size: 0 }), ivf_lists: Some(0), threads: 2, ..Options::create(dim as u32) };
        let store = Store::open(dir.path().join("store"), &options).unwrap();
        store.put_batch(&IdBuf::new((0..n).map(|i| format!("v{i}"))).batch().unwrap(), &vectors).unwrap();
        store.delete_batch(&IdBuf::new((0..n).step_by(7).map(|i| format!("v{i}"))).batch().unwrap()).unwrap();
        TWO_STAGE_FROM.with(|from| from.set(if two_stage { 0 } else { usize::MAX }));
        let trained = store.train_pq(&mut |_, _| {});
        TWO_STAGE_FROM.with(|from| from.set(TWO_STAGE_MIN_VECTORS));
        trained.unwrap();
        (store, vectors)
    }

    /// `count` of the store's vectors (every `step`-th, wrapping around),
    /// in PQ input space, as queries.
    fn stored_queries(store: &Store, vectors: &[f32], count: usize, step: usize) -> Vec<Vec<f32>> {
        let dim = store.dim;
        let n = vectors.len() / dim;
        (0..count).map(|i| store.pq_input(&vectors[(i * step % n) * dim..][..dim]).into_owned()).collect()
    }

    /// The calibration of the re-rank depths `grid` as defined: per
    /// query, exact distances to every other live vector, and every probe
    /// count and re-rank depth probed and re-ranked on its own.
    fn measure_by_definition(store: &Store, generation: &Generation, pq: &PqData, lists: &InvertedLists, live: &LiveSet, grid: &[u32]) -> Measured {
        let (queries, vectors) = calibration_queries(generation, live).unwrap();
        let nprobes = probe_counts(lists.nlist());
        let mut found = vec![vec![0; grid.len()]; nprobes.len()];
        for (&q, &vector) in queries.iter().zip(&vectors) {
            let prepared = PreparedQuery::new(vector, store.metric());
            let exact = |slot: u64| prepared.distance(generation.vector_unchecked(slot).unwrap(), generation.slot_record(slot).unwrap().norm);
            let mut truth = TopK::new(CALIBRATION_K);
            for slot in live.iter().filter(|&s| s != q) {
                truth.push(exact(slot), slot);
            }
            let truth: Vec<u64> = truth.into_sorted_vec().into_iter().map(|(_, s)| s).collect();
            let input = store.pq_input(vector);
            for (p, &nprobe) in nprobes.iter().enumerate() {
                let depth = CALIBRATION_K * *grid.last().unwrap() as usize + 1;
                let probed = probe_candidates_at(pq, lists, &input, &[nprobe], depth, Ranking::Estimated, None, true, &mut Vec::new()).unwrap();
                let mut candidates = probed.into_iter().next().unwrap();
                candidates.retain(|&(_, s)| s != q);
                for (r, &per_k) in grid.iter().enumerate() {
                    // A two-stage index: this depth's own search, the query
                    // left out of stage one (whose heap keeps one more).
                    let two_stage = pq.quantizer.ivf.as_ref().unwrap().two_stage;
                    let candidates = match two_stage {
                        false => candidates.clone(),
                        true => {
                            let depth = per_k.max(1) as usize * CALIBRATION_K;
                            let mut heap = None;
                            let (tables, prefix) = probe_stops(pq, lists, &input, &[nprobe], depth + 1, Ranking::Estimated, None, &mut Vec::new(), |_, top, _| heap = Some(top.clone()));
                            assert!(prefix.is_some());
                            let mut first = TopK::new(depth * STAGE_ONE_PER_DEPTH);
                            for (d, position) in heap.unwrap().into_sorted_vec() {
                                if lists.slot_at(position) != q {
                                    first.push(d, position);
                                }
                            }
                            let second = stage_two(pq, lists, &tables, first, depth, Ranking::Estimated).unwrap();
                            candidates_of(lists, second, true)
                        }
                    };
                    let kept: Vec<u64> = if per_k == 0 {
                        candidates.iter().take(CALIBRATION_K).map(|&(_, s)| s).collect()
                    } else {
                        let mut top = TopK::new(CALIBRATION_K);
                        for &(_, slot) in candidates.iter().take(per_k as usize * CALIBRATION_K) {
                            top.push(exact(slot), slot);
                        }
                        top.into_sorted_vec().into_iter().map(|(_, s)| s).collect()
                    };
                    found[p][r] += kept.iter().filter(|s| truth.contains(s)).count();
                }
            }
        }
        Measured { queries: queries.len(), nprobes, found }
    }

    /// The judgement that keeps a two-stage index two-stage picks the
    /// faster mode at target 0.95 on the sets measured (docs/benchmarks.md,
    /// "Stage one's depth"; 96-byte codes, 32 of them in the lists, 768-d
    /// vectors beyond the cache; two stages measured faster on all since
    /// stage one keeps 8 candidates a result): each set's measured points
    /// (recall, lists, re-rank a result) where each mode's cheapest
    /// setting that reaches 0.95 lies, and a cheaper one that falls short.
    #[test]
    fn two_stage_is_kept_where_it_measured_faster() {
        // (recall, lists, re-rank a result) of each measured point.
        type Points = &'static [(f32, u32, u32)];
        let cases: [(&str, f64, Points, bool); 7] = [
            ("50,000, 50 clusters: two stages 1.40x", 50_000.0 / 224.0, &[(0.9220, 62, 4), (0.9686, 93, 4)], true),
            ("100,000, 100 clusters: 1.24x", 100_000.0 / 316.0, &[(0.9350, 93, 4), (0.9540, 93, 6), (0.9625, 140, 4)], true),
            ("100,000, 1,000 clusters: 1.08x", 100_000.0 / 316.0, &[(0.9386, 140, 6), (0.9548, 93, 8)], true),
            ("200,000, 200 clusters: 1.41x", 200_000.0 / 447.0, &[(0.9290, 140, 4), (0.9565, 140, 6)], true),
            ("200,000, 1,000 clusters: 1.18x", 200_000.0 / 447.0, &[(0.9408, 140, 8), (0.9532, 210, 8), (0.9638, 140, 12)], true),
            ("1,000,000, 1,000 clusters: 1.80x", 1000.0, &[(0.9410, 210, 16), (0.9506, 210, 24), (0.9550, 256, 16)], true),
            // Constructed: few lists probed and a deep re-rank, where
            // stage two reads more at random than stage one spares.
            ("8 lists probed, 16 candidates a result", 2000.0, &[(0.90, 4, 2), (0.96, 8, 16)], false),
        ];
        for (set, avg_list, measured, faster) in cases {
            let prices = Prices { avg_list, code_size: 96.0, table_bytes: 0.0, reranked: 48.0 * RANDOM_LINE_BYTES };
            let points: Vec<CalibrationPoint> = measured.iter().map(|&(recall, nprobe, rerank_per_k)| CalibrationPoint { recall, nprobe, rerank_per_k, cost: 0.0 }).collect();
            assert_eq!(two_stage_cheaper(&points, &prices, 32), faster, "{set}");
        }
        // A 768-d vector beyond the cache is 48 lines read at random; in
        // cache, twice its bytes; a 100-d one's 400 bytes span 7 lines.
        assert_eq!(Prices::rerank_read(3072.0, true), 48.0 * 768.0);
        assert_eq!(Prices::rerank_read(3072.0, false), 6144.0);
        assert_eq!(Prices::rerank_read(400.0, true), 7.0 * 768.0);
        // Where no point reaches the target, those with the best recall decide.
        let prices = Prices { avg_list: 1000.0, code_size: 96.0, table_bytes: 0.0, reranked: 48.0 * RANDOM_LINE_BYTES };
        let short = [CalibrationPoint { recall: 0.5, nprobe: 1000, rerank_per_k: 1, cost: 0.0 }, CalibrationPoint { recall: 0.4, nprobe: 1, rerank_per_k: 64, cost: 0.0 }];
        assert!(two_stage_cheaper(&short, &prices, 32), "1,000 whole lists cost more than their prefixes and ten reads");
    }

    /// A store trained two-stage whose calibrated search would read more
    /// at random in stage two than stage one spares (a small store: short
    /// lists) is made one-stage: the same lists, calibration and hits as
    /// its twin trained one-stage, and so after a reopen.
    #[test]
    fn a_two_stage_index_that_would_not_pay_is_trained_one_stage() {
        let (dir_judged, dir_one) = (crate::testutil::TempDir::new("ivf-judged"), crate::testutil::TempDir::new("ivf-judged-twin"));
        JUDGE_TWO_STAGE.with(|judge| judge.set(true));
        let judged = wide_store(&dir_judged, Metric::L2, 13, true, 20);
        JUDGE_TWO_STAGE.with(|judge| judge.set(false));
        let (judged, vectors) = judged;
        let (one, _) = wide_store(&dir_one, Metric::L2, 13, false, 20);
        let said = |s: &Store| {
            let stats = s.stats().unwrap();
            (stats.ivf_stages, stats.ivf_list_code_bytes)
        };
        let queries = stored_queries(&judged, &vectors, 12, 211);
        let check = |judged: &Store, when: &str| {
            assert_eq!((said(judged), said(&one)), ((1, 64), (1, 64)), "{when}");
            assert_eq!(judged.calibration().unwrap(), one.calibration().unwrap(), "{when}");
            for q in &queries {
                assert_eq!(judged.search(q, 10, &SearchParams::default()).unwrap(), one.search(q, 10, &SearchParams::default()).unwrap(), "{when}");
            }
        };
        check(&judged, "trained");
        drop(judged);
        let reopened = Store::open(dir_judged.path().join("store"), &Options::default()).unwrap();
        check(&reopened, "reopened");
    }

    /// A two-stage search whose first stage keeps every candidate of the
    /// lists it probes finds what the whole-code scan of its twin (same
    /// vectors, same training) finds, hit for hit, with a re-rank and
    /// without (exact ADC), single and batched, with a filter, for a query
    /// of extreme values (scaled tables); and so after puts, deletes,
    /// compaction and a reopen, which rebuild or change the lists (each
    /// holding the codes' first bytes alone). Where stage one keeps fewer,
    /// recall stays near the twin's.
    #[test]
    fn two_stage_search_keeping_every_candidate_finds_the_one_stage_hits() {
        for metric in [Metric::L2, Metric::Cosine] {
            let (dir_two, dir_one) = (crate::testutil::TempDir::new("ivf-two-stage"), crate::testutil::TempDir::new("ivf-one-stage"));
            let (mut two, vectors) = wide_store(&dir_two, metric, 13, true, 20);
            let (mut one, _) = wide_store(&dir_one, metric, 13, false, 20);
            let dim = two.dim;
            let flag = |s: &Store| s.view.read().generation.pq.as_ref().unwrap().quantizer.ivf.as_ref().unwrap().two_stage;
            assert!(flag(&two) && !flag(&one), "{metric:?}");
            let mut queries: Vec<Vec<f32>> = (0..12).map(|i| vectors[(i * 211 % 3000) * dim..][..dim].to_vec()).collect();
            // Extreme values: tables scaled, every distance saturated (the
            // hits' distances say which units they are in).
            queries.push(vectors[5 * dim..6 * dim].iter().map(|v| v * 1e19).collect());
            let flat: Vec<f32> = queries.concat();
            // (Every third: each cluster, `i % 20`, has some allowed.)
            let ids = IdBuf::new((0..3000).step_by(3).map(|i| format!("v{i}")));
            let allowed = crate::Filter { ids: Some(ids.batch().unwrap()), accept: None };
            let everything = crate::Filter::default();
            let same_hits = |two: &Store, one: &Store, when: &str| {
                let list_bytes = |s: &Store| s.view.read().lists.as_ref().unwrap().code_size();
                assert_eq!((list_bytes(two), list_bytes(one)), (16, 64), "{metric:?} {when}: the lists of a two-stage index hold the first 16 of 64 bytes");
                let (two_stats, one_stats) = (two.stats().unwrap(), one.stats().unwrap());
                let said = |s: &crate::Stats| (s.ivf_stages, s.ivf_list_code_bytes);
                assert_eq!((said(&two_stats), said(&one_stats)), ((2, 16), (1, 64)), "{metric:?} {when}: the stats say so");
                // Stage one keeps every candidate of any 3 lists: its
                // depth (`STAGE_ONE_PER_DEPTH` x the larger of k and the
                // re-rank) is at least the 3 longest lists' entries.
                let longest: usize = {
                    let view = two.view.read();
                    let lists = view.lists.as_ref().unwrap();
                    let mut lengths: Vec<usize> = (0..lists.nlist() as u32).map(|l| lists.list(l).1.len()).collect();
                    lengths.sort_unstable();
                    lengths.iter().rev().take(3).sum()
                };
                for (rerank, k, filtered) in [(64u32, 10, false), (0, 64, false), (64, 10, true)] {
                    assert!(stage_one_depth(true, k.max(rerank as usize)) >= longest, "{metric:?} {when}: 3 lists hold {longest} entries");
                    let params = SearchParams { nprobe: 3, rerank, ..SearchParams::default() };
                    let filter = if filtered { &allowed } else { &everything };
                    let a = two.search_batch_filtered(&flat, k, &params, filter).unwrap();
                    let b = one.search_batch_filtered(&flat, k, &params, filter).unwrap();
                    for (q, (a, b)) in a.iter().zip(&b).enumerate() {
                        let key = |hits: &[Hit]| hits.iter().map(|h| (two.key_id(h.key).unwrap(), h.distance)).collect::<Vec<_>>();
                        let b_keys: Vec<_> = b.iter().map(|h| (one.key_id(h.key).unwrap(), h.distance)).collect();
                        assert_eq!(b_keys.len(), k, "{metric:?} {when}: rerank {rerank} filter {filtered} query {q}: {:?}", key(a));
                        assert_eq!(key(a), b_keys, "{metric:?} {when}: rerank {rerank} filter {filtered} query {q}");
                        let single = two.search_filtered(&queries[q], k, &params, filter).unwrap();
                        assert_eq!(key(&single), b_keys, "{metric:?} {when}: single, rerank {rerank} query {q}");
                    }
                }
            };
            same_hits(&two, &one, "trained");
            // Puts (new vectors, and replacements), deletes, then
            // compaction, then a reopen: the same on both.
            let fresh: Vec<f32> = vectors[..300 * dim].iter().map(|v| v * 0.9 + 0.05).collect();
            let put = IdBuf::new((0..300).map(|i| if i % 3 == 0 { format!("v{}", i + 1) } else { format!("new{i}") }));
            let gone = IdBuf::new((0..3000).step_by(11).map(|i| format!("v{i}")));
            for store in [&two, &one] {
                store.put_batch(&put.batch().unwrap(), &fresh).unwrap();
                store.delete_batch(&gone.batch().unwrap()).unwrap();
            }
            same_hits(&two, &one, "after puts and deletes");
            for store in [&two, &one] {
                store.compact().unwrap();
            }
            same_hits(&two, &one, "compacted");
            drop((two, one));
            two = Store::open(dir_two.path().join("store"), &Options::default()).unwrap();
            one = Store::open(dir_one.path().join("store"), &Options::default()).unwrap();
            assert!(flag(&two) && !flag(&one), "{metric:?}: reopened");
            same_hits(&two, &one, "reopened");
            // Every list, a shallow re-rank: stage one keeps 8 x 10 of ~2,600.
            let params = SearchParams { nprobe: u32::MAX, rerank: 10, ..SearchParams::default() };
            let recall = |s: &Store| -> usize {
                queries[..12].iter().map(|q| {
                    let exact = s.search(q, 10, &SearchParams { exact: true, ..SearchParams::default() }).unwrap();
                    let got = s.search(q, 10, &params).unwrap();
                    got.iter().filter(|h| exact.iter().any(|e| s.key_id(e.key).unwrap() == s.key_id(h.key).unwrap())).count()
                }).sum()
            };
            let (r_two, r_one) = (recall(&two), recall(&one));
            assert!(r_two + 6 >= r_one, "{metric:?}: two stages found {r_two} of the true neighbours, one stage {r_one}");
        }
    }

    /// A reopen builds the lists beside the ID index from every slot no
    /// tombstone names, then takes out the slots a later put of their ID
    /// replaced (a few) or builds the lists again (many): either way, on
    /// one thread or two, they are the lists of the live slots.
    #[test]
    fn reopened_lists_are_those_of_the_live_slots() {
        // 3,000 slots: up to 2 replaced are taken out, 50 rebuild.
        for (replaced, threads) in [(0, 2), (2, 2), (50, 2), (0, 1), (2, 1), (50, 1)] {
            let dir = crate::testutil::TempDir::new("ivf-reopen-lists");
            let (store, vectors) = clustered_store(&dir, Metric::L2, 3);
            // Live IDs (every seventh was deleted), put again with new values.
            let rows: Vec<usize> = (1..3000).filter(|i| i % 7 != 0).take(replaced).collect();
            let values: Vec<f32> = rows.iter().flat_map(|&r| vectors[r * DIM..(r + 1) * DIM].iter().map(|v| v + 0.25)).collect();
            if replaced > 0 {
                store.put_batch(&IdBuf::new(rows.iter().map(|r| format!("v{r}"))).batch().unwrap(), &values).unwrap();
            }
            store.close().unwrap();
            let store = Store::open(dir.path().join("store"), &Options { threads, ..Options::default() }).unwrap();
            let view = store.view.read();
            assert!(view.generation.slot_count() - view.live.count() >= replaced as u64);
            let lists = view.lists.as_ref().unwrap();
            let built = build_lists(&view.generation, &view.live).unwrap().unwrap();
            assert_eq!(lists.len() as u64, view.live.count(), "{replaced} replaced, {threads} threads");
            for list in 0..built.nlist() as u32 {
                assert_eq!(lists.list(list), built.list(list), "list {list}: {replaced} replaced, {threads} threads");
            }
            for slot in view.live.iter() {
                assert_eq!(lists.vector_crc(slot), built.vector_crc(slot), "slot {slot}");
            }
        }
    }

    /// Lists scanned for a group of queries give each query the
    /// candidates of its own probe: every metric and ranking, with and
    /// without a filter.
    #[test]
    fn grouped_probes_find_what_single_probes_do() {
        for (metric, two_stage) in [(Metric::L2, false), (Metric::Cosine, false), (Metric::InnerProduct, false), (Metric::L2, true), (Metric::Cosine, true)] {
            let dir = crate::testutil::TempDir::new("ivf-grouped");
            let (store, vectors) = if two_stage { two_stage_store(&dir, metric, 5) } else { clustered_store(&dir, metric, 5) };
            let view = store.view.read();
            let (generation, lists) = (&view.generation, view.lists.as_ref().unwrap());
            let pq = generation.pq.as_ref().unwrap();
            let mut filter = LiveSet::default();
            filter.grow(generation.slot_count());
            view.live.iter().filter(|s| s % 3 == 0).for_each(|s| filter.set(s));
            let mut queries = stored_queries(&store, &vectors, 40, 71);
            // Two of extreme values (scaled tables), grouped with the others.
            queries.extend([3, 7].map(|q| queries[q].iter().map(|v| v * 1e19).collect::<Vec<f32>>()));
            let inputs: Vec<&[f32]> = queries.iter().map(|q| &q[..]).collect();
            let sorted = |mut c: Vec<(f32, u64)>| {
                c.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                c
            };
            for (ranking, depth) in [(Ranking::Adc, 10), (Ranking::Estimated, 60)] {
                for allowed in [None, Some(&filter)] {
                    for nprobe in [1, 3, lists.nlist()] {
                        let grouped = probe_candidates_grouped(pq, lists, &inputs, nprobe, depth, ranking, allowed, &mut Vec::new()).unwrap();
                        for (input, found) in inputs.iter().zip(grouped) {
                            let single = probe_candidates(pq, lists, input, nprobe, depth, ranking, allowed, 1, &mut Vec::new()).unwrap();
                            assert!(!single.is_empty());
                            if ranking == Ranking::Adc {
                                assert_eq!(found, single, "{metric:?}, nprobe {nprobe}, filter {}", allowed.is_some());
                            } else {
                                assert_eq!(sorted(found), sorted(single), "{metric:?}, nprobe {nprobe}, filter {}", allowed.is_some());
                            }
                        }
                    }
                }
            }
        }
    }

    /// Lists scanned for a group of queries give each query, at every
    /// probe count, the candidates of its own probe: heaps deep enough to
    /// fill, and shallow ones.
    #[test]
    fn grouped_probe_counts_find_what_single_probes_do() {
        for (metric, two_stage) in [(Metric::L2, false), (Metric::InnerProduct, false), (Metric::L2, true)] {
            let dir = crate::testutil::TempDir::new("ivf-grouped-at");
            let (store, vectors) = if two_stage { two_stage_store(&dir, metric, 9) } else { clustered_store(&dir, metric, 9) };
            let view = store.view.read();
            let (generation, lists) = (&view.generation, view.lists.as_ref().unwrap());
            let pq = generation.pq.as_ref().unwrap();
            let queries = stored_queries(&store, &vectors, 30, 97);
            let inputs: Vec<&[f32]> = queries.iter().map(|q| &q[..]).collect();
            let nprobes = probe_counts(lists.nlist());
            assert!(nprobes.len() >= 4, "{metric:?}: {nprobes:?}");
            for (ranking, depth) in [(Ranking::Adc, 11), (Ranking::Adc, 40), (Ranking::Estimated, 20), (Ranking::Estimated, 150)] {
                let grouped = probe_candidates_at_grouped(pq, lists, &inputs, &nprobes, depth, ranking, true, &mut Vec::new()).unwrap();
                for (input, found) in inputs.iter().zip(grouped) {
                    let single = probe_candidates_at(pq, lists, input, &nprobes, depth, ranking, None, true, &mut Vec::new()).unwrap();
                    assert_eq!(found, single, "{metric:?}, depth {depth}");
                }
            }
        }
    }

    /// The one-pass measurement (blocked exact neighbours, every probe
    /// count from one scan, the depths as prefixes) counts exactly what
    /// the definition does, for every metric, with deleted slots.
    #[test]
    fn calibration_measures_what_its_definition_does() {
        for (metric, two_stage) in [(Metric::L2, false), (Metric::Cosine, false), (Metric::InnerProduct, false), (Metric::L2, true), (Metric::Cosine, true)] {
            let dir = crate::testutil::TempDir::new("ivf-calibration");
            let (store, _) = if two_stage { two_stage_store(&dir, metric, 3) } else { clustered_store(&dir, metric, 3) };
            check_calibration_measures(&store, two_stage, metric);
        }
        // Two clusters of ~1,300 live vectors: stage one's shallowest heap
        // (176) fills within a cluster and later lists push its first
        // candidates out.
        let dir = crate::testutil::TempDir::new("ivf-calibration-wide");
        let (store, _) = wide_store(&dir, Metric::L2, 3, true, 2);
        check_calibration_measures(&store, true, Metric::L2);
    }

    /// `measure` counts what `measure_by_definition` does on `store` for
    /// every grid, one query at a time and in groups.
    fn check_calibration_measures(store: &Store, two_stage: bool, metric: Metric) {
        assert_eq!(store.view.read().generation.pq.as_ref().unwrap().quantizer.ivf.as_ref().unwrap().two_stage, two_stage);
        let view = store.view.read();
        let (generation, lists) = (&view.generation, view.lists.as_ref().unwrap());
        let pq = generation.pq.as_ref().unwrap();
        let sample = Sample::of(store, generation, pq, lists, &view.live).unwrap();
        // The first grid and the deeper one (whose heaps outgrow these
        // stores' 2,571 live vectors: they hold every candidate), and a
        // shallow one whose heaps keep a few hundred at most (stage one's
        // too).
        let grids = if two_stage {
            [&RERANK_GRID[..=TWO_STAGE_GRID_END], &TWO_STAGE_DEEPER_GRID[..], &RERANK_GRID[1..=2]]
        } else {
            [&RERANK_GRID[..], &DEEPER_GRID[..], &RERANK_GRID[1..=2]]
        };
        for grid in grids {
            let defined = measure_by_definition(store, generation, pq, lists, &view.live, grid);
            // One query at a time and in groups (grouped from 32 MB of
            // index: these lists are too small to choose it).
            for group in [1, CALIBRATION_GROUP] {
                let measured = measure(store, pq, lists, &sample, group, grid, &mut |_| {}).unwrap();
                assert_eq!(measured.nprobes.last(), Some(&lists.nlist()), "{metric:?}");
                assert_eq!(measured, defined, "{metric:?}, groups of {group}, grid {grid:?}");
            }
        }
    }

    /// With raw vectors at hand, every calibrated setting re-ranks (the
    /// ADC order costs more than a shallow re-rank of the fast scan's),
    /// so the lowest target re-ranks too.
    #[test]
    fn a_store_with_raw_vectors_calibrates_re_ranked_settings() {
        let dir = crate::testutil::TempDir::new("ivf-calibration-depths");
        let (store, _) = clustered_store(&dir, Metric::L2, 5);
        let view = store.view.read();
        let pq = view.generation.pq.as_ref().unwrap();
        let calibration = pq.quantizer.ivf.as_ref().unwrap().calibration();
        assert!(calibration.points().len() > 1);
        assert!(calibration.points().iter().all(|p| p.rerank_per_k >= 1), "{:?}", calibration.points());
        let lowest = SearchParams { target_recall: 0.01, ..SearchParams::default() };
        let (nprobe, rerank, _) = settings(pq, &lowest, 10, view.lists.as_ref().unwrap().nlist());
        assert!(nprobe >= 1 && rerank >= 10, "nprobe {nprobe}, rerank {rerank}");
    }

    /// `search_plan` tells what the search does: a search with the plan's
    /// probe count and depth given explicitly returns the same hits, for
    /// targets, an explicit setting, a re-rank under k and a probe count
    /// past nlist; the calibration is the points the targets choose from.
    /// A query split among threads (`query_threads`) finds the hits one
    /// thread finds, bit for bit: IVF by each metric, with a filter, with
    /// and without a re-rank deep enough to split too; the flat PQ scan;
    /// the exact scan; single searches and batches.
    #[test]
    fn a_query_split_among_threads_finds_what_one_thread_finds() {
        let splits = || super::super::read::SPLITS.with(|s| s.get());
        let check = |store: &Store, vectors: &[f32], params: SearchParams, filter: &crate::Filter<'_>| {
            let queries = stored_queries(store, vectors, 12, 211);
            let alone: Vec<_> = queries.iter().map(|q| store.search_filtered(q, 10, &params, filter).unwrap()).collect();
            assert!(alone.iter().all(|hits| hits.len() == 10));
            let flat: Vec<f32> = queries.concat();
            for query_threads in [2, 3, 8] {
                let split = SearchParams { query_threads, ..params };
                let before = splits();
                for (query, hits) in queries.iter().zip(&alone) {
                    assert_eq!(&store.search_filtered(query, 10, &split, filter).unwrap(), hits, "{split:?}");
                }
                assert!(splits() >= before + queries.len(), "{split:?}: the searches were not split");
                for threads in [1, 4] {
                    let batch = SearchParams { threads, ..split };
                    assert_eq!(store.search_batch_filtered(&flat, 10, &batch, filter).unwrap(), alone, "{batch:?}");
                }
            }
        };
        let none = crate::Filter::default();
        for (metric, seed) in [(Metric::L2, 3), (Metric::InnerProduct, 4), (Metric::Cosine, 5)] {
            let dir = crate::testutil::TempDir::new("ivf-split");
            let (store, vectors) = clustered_store(&dir, metric, seed);
            let nlist = store.stats().unwrap().ivf_lists;
            check(&store, &vectors, SearchParams { nprobe: nlist / 2, rerank: 40, ..SearchParams::default() }, &none);
            check(&store, &vectors, SearchParams { nprobe: nlist, rerank: 600, ..SearchParams::default() }, &none);
            check(&store, &vectors, SearchParams { nprobe: nlist / 2, ..SearchParams::default() }, &none);
            check(&store, &vectors, SearchParams { exact: true, ..SearchParams::default() }, &none);
            let half = IdBuf::new((0..3000).filter(|i| i % 2 == 1).map(|i| format!("v{i}")));
            let filter = crate::Filter { ids: Some(half.batch().unwrap()), accept: None };
            check(&store, &vectors, SearchParams { nprobe: nlist, rerank: 40, ..SearchParams::default() }, &filter);
        }
        // A flat PQ scan (no index).
        let dir = crate::testutil::TempDir::new("pq-split");
        let (_, vectors) = clustered_store(&dir, Metric::L2, 6);
        let options = Options { pq: Some(PqSettings { m: 8, bits: 4, train_size: 0 }), ..Options::create(DIM as u32) };
        let store = Store::open(dir.path().join("flat"), &options).unwrap();
        store.put_batch(&IdBuf::new((0..3000).map(|i| format!("v{i}"))).batch().unwrap(), &vectors).unwrap();
        store.train_pq(&mut |_, _| {}).unwrap();
        assert_eq!(store.search_plan(10, &SearchParams::default()).unwrap().method, SearchMethod::PqScan);
        check(&store, &vectors, SearchParams::default(), &none);
        check(&store, &vectors, SearchParams { rerank: 40, ..SearchParams::default() }, &none);
    }

    /// A split query verifies what it reads as one thread does: a damaged
    /// vector among the re-ranked candidates, or an exact scan's hit,
    /// fails the search (OMEN_ERR_CORRUPT), whichever part reads it.
    #[test]
    fn a_split_query_verifies_what_it_reads() {
        let dir = crate::testutil::TempDir::new("ivf-split-damage");
        let (store, vectors) = clustered_store(&dir, Metric::L2, 7);
        let nlist = store.stats().unwrap().ivf_lists;
        store.close().unwrap();
        // The lowest mantissa bit of slot 100's first value (v100, live).
        let file = dir.path().join("store").join("vectors.0000000000000001");
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[4096 + 100 * DIM * 4] ^= 0x01;
        std::fs::write(&file, bytes).unwrap();
        let store = Store::open(dir.path().join("store"), &Options::default()).unwrap();
        let query = &vectors[100 * DIM..101 * DIM];
        let splits = || super::super::read::SPLITS.with(|s| s.get());
        for params in [
            SearchParams { nprobe: nlist, rerank: 600, ..SearchParams::default() },
            SearchParams { exact: true, ..SearchParams::default() },
        ] {
            for query_threads in [1, 2, 3] {
                let before = splits();
                let err = store.search(query, 10, &SearchParams { query_threads, ..params }).unwrap_err();
                assert_eq!(err.kind(), crate::ErrorKind::Corrupt, "{params:?}, query_threads {query_threads}: {err}");
                assert_eq!(splits() > before, query_threads > 1, "{params:?}, query_threads {query_threads}");
            }
        }
    }

    #[test]
    fn the_search_plan_is_what_the_search_does() {
        let dir = crate::testutil::TempDir::new("ivf-search-plan");
        let (store, vectors) = clustered_store(&dir, Metric::L2, 9);
        let points = store.calibration().unwrap();
        assert!(points.len() > 1);
        assert!(points.windows(2).all(|w| w[0].recall < w[1].recall && w[0].cost <= w[1].cost), "{points:?}");
        let nlist = store.stats().unwrap().ivf_lists;
        let cases = [
            (10, SearchParams { target_recall: 0.5, ..SearchParams::default() }),
            (10, SearchParams { target_recall: 0.99, ..SearchParams::default() }),
            (3, SearchParams::default()),
            (10, SearchParams { nprobe: 2, rerank: 4, ..SearchParams::default() }),
            (5, SearchParams { nprobe: 1_000_000, rerank: 40, ..SearchParams::default() }),
        ];
        for (k, params) in cases {
            let plan = store.search_plan(k, &params).unwrap();
            assert_eq!(plan.method, SearchMethod::Ivf);
            assert!(plan.nprobe >= 1 && plan.nprobe <= nlist, "{plan:?}");
            assert!(plan.rerank as usize >= k, "{plan:?}");
            if params.nprobe > 0 {
                assert_eq!(plan.calibrated_recall, None);
                assert_eq!(plan.nprobe, params.nprobe.min(nlist));
                assert_eq!(plan.rerank, params.rerank.max(k as u32));
            } else {
                let target = if params.target_recall > 0.0 { params.target_recall } else { DEFAULT_TARGET_ASKED };
                let point = points.iter().find(|p| p.recall >= target).or(points.last()).unwrap();
                assert_eq!((plan.nprobe, plan.rerank, plan.calibrated_recall), (point.nprobe, point.rerank_per_k * 10, Some(point.recall)));
            }
            let explicit = SearchParams { nprobe: plan.nprobe, rerank: plan.rerank, ..SearchParams::default() };
            for query in stored_queries(&store, &vectors, 20, 149) {
                assert_eq!(store.search(&query, k, &params).unwrap(), store.search(&query, k, &explicit).unwrap(), "{params:?} as {plan:?}");
            }
        }
        let exact = store.search_plan(10, &SearchParams { exact: true, ..SearchParams::default() }).unwrap();
        assert_eq!((exact.method, exact.nprobe, exact.rerank, exact.calibrated_recall), (SearchMethod::Exact, 0, 0, None));

        // Filtered: half the vectors probe about twice the lists, and the
        // plan's setting given explicitly (which a filter does not scale)
        // searches the same; a few vectors are searched exactly.
        let target = SearchParams { target_recall: 0.9, ..SearchParams::default() };
        let unfiltered = store.search_plan(10, &target).unwrap();
        let half = IdBuf::new((0..3000).filter(|i| i % 2 == 0).map(|i| format!("v{i}")));
        let filter = crate::Filter { ids: Some(half.batch().unwrap()), accept: None };
        let plan = store.search_plan_filtered(10, &target, &filter).unwrap();
        assert_eq!((plan.method, plan.rerank, plan.calibrated_recall), (SearchMethod::Ivf, unfiltered.rerank, unfiltered.calibrated_recall));
        assert!(plan.nprobe > unfiltered.nprobe && plan.nprobe <= (2 * unfiltered.nprobe + 1).min(nlist), "{plan:?} from {unfiltered:?}");
        let explicit = SearchParams { nprobe: plan.nprobe, rerank: plan.rerank, ..SearchParams::default() };
        for query in stored_queries(&store, &vectors, 20, 149) {
            assert_eq!(store.search_filtered(&query, 10, &target, &filter).unwrap(), store.search_filtered(&query, 10, &explicit, &filter).unwrap());
        }
        let few = IdBuf::new((0..30).map(|i| format!("v{}", i * 97 + 1)));
        let plan = store.search_plan_filtered(10, &target, &crate::Filter { ids: Some(few.batch().unwrap()), accept: None }).unwrap();
        assert_eq!(plan.method, SearchMethod::Exact, "{plan:?}");
        let odd = |id: &[u8]| id.last().is_some_and(|b| b % 2 == 1);
        let by_predicate = store.search_plan_filtered(10, &target, &crate::Filter { ids: None, accept: Some(&odd) }).unwrap();
        assert!(by_predicate.method == SearchMethod::Ivf && by_predicate.nprobe > unfiltered.nprobe, "{by_predicate:?}");
    }

    /// The default asks for more than its recall: a setting measured just
    /// above 0.95 serves an explicit 0.95, not the default.
    #[test]
    fn the_default_target_has_room_to_spare() {
        let point = |recall, nprobe, cost| CalibrationPoint { recall, nprobe, rerank_per_k: 2, cost };
        let calibration = Calibration::from_measurements(vec![point(0.951, 3, 1.0), point(0.96, 4, 2.0)]);
        let explicit = SearchParams { target_recall: DEFAULT_TARGET_RECALL, ..SearchParams::default() };
        assert_eq!(calibration.for_target(target_asked(&explicit)).unwrap().nprobe, 3);
        assert_eq!(calibration.for_target(target_asked(&SearchParams::default())).unwrap().nprobe, 4);
    }

    /// Calibration's exact neighbours pruned by the screen's projection
    /// (L2) are the blocked scan's, hit for hit, also far from the origin;
    /// and the bounds they prune with are what they claim.
    #[test]
    fn projected_exact_neighbours_are_the_blocked_scans() {
        let dim = 128;
        for offset in [0.0f32, 50.0] {
            let mut rng = Rng::new(21);
            let mut value = || rng.below(2001) as f32 / 1000.0 - 1.0;
            let mix: Vec<f32> = (0..8 * dim).map(|_| value()).collect();
            let centres: Vec<f32> = (0..40 * 8).map(|_| 3.0 * value()).collect();
            let n = 12_000;
            let mut vectors = Vec::with_capacity(n * dim);
            for i in 0..n {
                let latent: Vec<f32> = (0..8).map(|j| centres[(i % 40) * 8 + j] + 0.5 * value()).collect();
                for d in 0..dim {
                    vectors.push((0..8).map(|j| latent[j] * mix[j * dim + d]).sum::<f32>() + offset + 0.3 * value());
                }
            }
            let dir = crate::testutil::TempDir::new("ivf-projected");
            let options = Options { pq: Some(PqSettings { m: 16, bits: 4, train_size: 0 }), ivf_lists: Some(400), threads: 2, ..Options::create(dim as u32) };
            let store = Store::open(dir.path().join("store"), &options).unwrap();
            store.put_batch(&IdBuf::new((0..n).map(|i| format!("v{i}"))).batch().unwrap(), &vectors).unwrap();
            store.delete_batch(&IdBuf::new((0..n).step_by(11).map(|i| format!("v{i}"))).batch().unwrap()).unwrap();
            store.train_pq(&mut |_, _| {}).unwrap();
            let view = store.view.read();
            let (generation, lists, live) = (&view.generation, view.lists.as_ref().unwrap(), &view.live);
            let pq = generation.pq.as_ref().unwrap();
            let projection = pq.quantizer.ivf.as_ref().unwrap().coarse.projection().expect("a screen on such data");
            let (_, vectors) = calibration_queries(generation, live).unwrap();
            let k = CALIBRATION_K + 1;
            let bounds = neighbour_bounds(&store, generation, pq, lists, &vectors, k, live).unwrap().unwrap();
            let blocked = super::super::read::blocked_scan(generation, &store, &vectors, k, live, 2).unwrap();
            for (hits, &bound) in blocked.iter().zip(&bounds) {
                assert!(hits[k - 1].distance <= bound, "+{offset}: the k-th nearest beyond its bound");
            }
            let projected = super::super::read::projected_scan(generation, &store, &vectors, k, live, 2, projection, &bounds).unwrap();
            assert_eq!(projected, blocked, "+{offset}");
            // (Bounds too tight lose neighbours: the comparison can fail.)
            let tight: Vec<f32> = bounds.iter().map(|b| b * 0.5).collect();
            let lost = super::super::read::projected_scan(generation, &store, &vectors, k, live, 2, projection, &tight).unwrap();
            assert_ne!(lost, blocked, "+{offset}");
        }
    }

    /// Codes of the vectors (L2 and cosine stores) and residual codes
    /// (inner product, and stores trained before: forced here with
    /// `TRAIN_RESIDUAL`): a list's exact ADC distances are those of the
    /// codes' reconstructions, the kind survives a reopen, and vectors put
    /// after it are encoded the same way.
    #[test]
    fn both_code_kinds_score_their_reconstructions_and_persist() {
        for (metric, forced) in [(Metric::L2, false), (Metric::L2, true), (Metric::Cosine, false), (Metric::Cosine, true), (Metric::InnerProduct, false)] {
            let dir = crate::testutil::TempDir::new("ivf-code-kinds");
            super::super::pq::TRAIN_RESIDUAL.with(|r| r.set(forced));
            let (store, vectors) = clustered_store(&dir, metric, 9);
            super::super::pq::TRAIN_RESIDUAL.with(|r| r.set(false));
            let residual = forced || metric == Metric::InnerProduct;
            let n = vectors.len() / DIM;
            let check = |store: &Store| {
                let view = store.view.read();
                let (generation, lists) = (&view.generation, view.lists.as_ref().unwrap());
                let pq = generation.pq.as_ref().unwrap();
                let ivf = pq.quantizer.ivf.as_ref().unwrap();
                assert_eq!(ivf.residual, residual, "{metric:?}, forced {forced}");
                let live = view.live.count() as usize;
                let (mut right, mut wrong) = (0.0f32, 0.0f32);
                for i in [0usize, 13, 2999] {
                    let input = store.pq_input(&vectors[(i % n) * DIM..][..DIM]).into_owned();
                    let all = probe_candidates(pq, lists, &input, lists.nlist(), live, Ranking::Adc, None, 1, &mut Vec::new()).unwrap();
                    assert_eq!(all.len(), live);
                    for &(adc, slot) in all.iter().step_by(97) {
                        let record = generation.code_record(slot).unwrap();
                        let mut x = vec![0.0f32; DIM];
                        pq.quantizer.codebooks.decode(pq.quantizer.code_of(record), &mut x);
                        if residual {
                            let centroid = ivf.coarse.centroid(pq.quantizer.list_of(record));
                            x.iter_mut().zip(centroid).for_each(|(x, &c)| *x += c);
                        }
                        let want: f64 = match metric {
                            Metric::InnerProduct => -input.iter().zip(&x).map(|(&q, &v)| q as f64 * v as f64).sum::<f64>(),
                            _ => input.iter().zip(&x).map(|(&q, &v)| (q as f64 - v as f64).powi(2)).sum::<f64>(),
                        };
                        let tolerance = 1e-3 * (1.0 + want.abs());
                        assert!((adc as f64 - want).abs() <= tolerance, "{metric:?}, forced {forced}: slot {slot} ADC {adc}, reconstruction {want}");
                        // And the code encodes what the kind says: read the
                        // other way, it reconstructs the vector worse.
                        let raw = store.pq_input(generation.vector_unchecked(slot).unwrap()).into_owned();
                        let centroid = ivf.coarse.centroid(pq.quantizer.list_of(record));
                        let sign = if residual { -1.0 } else { 1.0 };
                        let err = |shift: f32| raw.iter().zip(&x).zip(centroid).map(|((&r, &v), &c)| (r - v - shift * c).powi(2)).sum::<f32>();
                        (right, wrong) = (right + err(0.0), wrong + err(sign));
                    }
                }
                assert!(right < wrong / 4.0, "{metric:?}, forced {forced}: reconstruction error {right}, read as the other kind {wrong}");
            };
            check(&store);
            // Vectors put after training (and after a reopen) join the lists
            // encoded as the store's kind says.
            let more: Vec<f32> = vectors[..300 * DIM].iter().map(|v| v * 0.9).collect();
            store.put_batch(&IdBuf::new((0..300).map(|i| format!("w{i}"))).batch().unwrap(), &more).unwrap();
            check(&store);
            store.close().unwrap();
            let store = Store::open(dir.path().join("store"), &Options::default()).unwrap();
            check(&store);
            store.put_batch(&IdBuf::new((0..300).map(|i| format!("x{i}"))).batch().unwrap(), &more).unwrap();
            check(&store);
        }
    }

    /// Codes that rank candidates poorly (2 bytes for 32 dimensions of
    /// uniform noise) need a re-rank deeper than 64 per result to reach
    /// 0.99: the calibration must measure such depths, or a target of
    /// 0.99 silently gets less (as 64-byte codes at 1M x 768 did).
    #[test]
    fn a_target_needing_a_deep_re_rank_is_reached() {
        let dir = crate::testutil::TempDir::new("ivf-deep-rerank");
        let (dim, n) = (32usize, 4000usize);
        let mut rng = Rng::new(17);
        let mut value = || rng.below(2001) as f32 / 1000.0 - 1.0;
        let vectors: Vec<f32> = (0..n * dim).map(|_| value()).collect();
        let queries: Vec<f32> = (0..60 * dim).map(|_| value()).collect();
        let options = Options { pq: Some(PqSettings { m: 4, bits: 4, train_size: 0 }), ivf_lists: Some(4), threads: 2, ..Options::create(dim as u32) };
        let store = Store::open(dir.path().join("store"), &options).unwrap();
        store.put_batch(&IdBuf::new((0..n).map(|i| format!("v{i}"))).batch().unwrap(), &vectors).unwrap();
        store.train_pq(&mut |_, _| {}).unwrap();
        let recall = |params: &SearchParams| {
            let mut found = 0;
            for q in queries.chunks_exact(dim) {
                let want = store.search(q, 10, &SearchParams { exact: true, ..Default::default() }).unwrap();
                let got = store.search(q, 10, params).unwrap();
                found += got.iter().filter(|h| want.iter().any(|w| w.key == h.key)).count();
            }
            found as f64 / (10 * queries.len() / dim) as f64
        };
        // The depth the grid stopped at before falls short on these codes.
        let shallow = recall(&SearchParams { nprobe: 4, rerank: 640, ..Default::default() });
        assert!(shallow < 0.97, "the data do not need a deep re-rank: {shallow} at 64 per result");
        let reached = recall(&SearchParams { target_recall: 0.99, ..Default::default() });
        assert!(reached >= 0.98, "target 0.99 delivered {reached}");
    }
}
