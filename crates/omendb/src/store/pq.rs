//! PQ inside the store: training (sample, k-means, encode every slot,
//! commit), and the approximate search with exact re-rank.

use std::sync::Arc;

use super::generation::{check_codebooks, create_codes, write_codebooks, PqData};
use super::read::Hit;
use super::rewrite::{remove_generation_files, CodesPlan, UncommittedFiles, REWRITE_CHUNK};
use super::{LiveSet, Store, View, Writer};
use crate::search::distance::{PreparedQuery, MANY};
use crate::error::{Error, Result};
use crate::options::Metric;
use crate::index::{InvertedLists, Quantizer};
use crate::quantization::{scan_many, Codebooks, PqConfig, PqMetric, TopK, TrainOptions, MAX_POINTS_PER_CENTROID};

/// k-means iterations per sub-space.
const TRAIN_ITERATIONS: u32 = 25;
/// Fixed seed: training is deterministic for a given store content.
const TRAIN_SEED: u64 = 0x0DB_5EED;
/// Seed of the PQ codebooks' training sample.
const PQ_SAMPLE_SEED: u64 = 0x0DB_5A3B1E;
/// k-means iterations of the IVF coarse centroids.
const COARSE_ITERATIONS: u32 = 10;
/// Most training points per IVF list (faiss warns below 39 and samples up
/// to 256; its benchmarks train on 50). The exact re-rank makes the lists'
/// exact borders matter little.
const COARSE_POINTS_PER_LIST: usize = 40;
/// Slots encoded per step when training a store that keeps raw vectors.
const ENCODE_CHUNK: u64 = 4096;

#[cfg(test)]
thread_local! {
    /// Tests: training on this thread gives L2 stores IVF codes of
    /// residuals, as stores trained before codes of the vectors (which stay
    /// readable and writable) hold.
    pub(super) static TRAIN_RESIDUAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether IVF codes of a store scored by `metric` encode residuals.
/// Inner product keeps them: a residual code leaves `<q, c>` exact and
/// approximates only `<q, r>` (tests/ivf.rs's clustered set: recall@10 at
/// the default target 0.9725 on fresh queries with residuals, 0.941 with
/// codes of the vectors). L2 (and cosine, L2 on unit vectors) encodes
/// the vectors: one table a query, and they ranked better (0.975 against
/// 0.952 there; docs/indexes.md for the ANN sets).
fn residual_codes(metric: PqMetric) -> bool {
    #[cfg(test)]
    if TRAIN_RESIDUAL.with(|r| r.get()) {
        return true;
    }
    metric == PqMetric::InnerProduct
}

/// The ADC distance a metric scans with. Cosine stores encode unit vectors
/// and scan with L2: for unit vectors |q - v|^2 / 2 = 1 - cos, and unlike
/// -<q, v> it also accounts for the reconstruction's error in norm, which
/// ranks better (bgem3_1024 at 32x8: recall@10 0.784 against 0.675).
pub(super) fn pq_metric(metric: Metric) -> PqMetric {
    match metric {
        Metric::L2 | Metric::Cosine => PqMetric::L2,
        Metric::InnerProduct => PqMetric::InnerProduct,
    }
}

/// Converts an ADC distance to the store metric's scale.
fn metric_distance(metric: Metric, adc: f32) -> f32 {
    match metric {
        Metric::Cosine => adc / 2.0,
        Metric::L2 | Metric::InnerProduct => adc,
    }
}

impl Store {
    /// Trains PQ codebooks on a sample of the stored vectors and encodes
    /// every vector. `progress(done, total)` runs on the calling thread,
    /// never concurrently; `total` is fixed for the run, `done` never
    /// decreases and the last call has `done == total`. Allowed again on a
    /// trained store that keeps its raw vectors (it re-encodes everything).
    /// In a store created with `drop_raw`, training rewrites the store
    /// without raw vectors (like a compaction: keys are invalidated).
    pub fn train_pq(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let mut guard = self.lock_writer()?;
        let w: &mut Writer = &mut guard;
        self.train_locked(w, progress)?;
        *self.auto_train_failure.lock() = None;
        Ok(())
    }

    pub(super) fn train_locked(&self, w: &mut Writer, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let settings = &self.settings;
        if settings.pq_m == 0 {
            return Err(Error::invalid(format!("{} was created without PQ (pq_m = 0)", self.dir.display())));
        }
        let config = PqConfig { dim: self.dim, m: settings.pq_m as usize, bits: settings.pq_bits };
        let (generation, live): (Arc<super::Generation>, Vec<u64>) = {
            let view = self.view.read();
            (view.generation.clone(), view.live.iter().collect())
        };
        if generation.vectors.is_none() {
            return Err(Error::invalid("this compressed store keeps no raw vectors to retrain from"));
        }
        if live.is_empty() {
            return Err(Error::invalid("the store holds no vectors to train on"));
        }

        // At most MAX_POINTS_PER_CENTROID points per centroid, drawn at
        // random with a fixed seed (evenly spaced slots alias with the
        // order the vectors were written in), independently of the coarse
        // sample (whose residuals, when the codes are residuals, its own
        // centroids fit too well).
        let cap = MAX_POINTS_PER_CENTROID * config.ksub();
        let picks = super::ivf::random_slots(&live, cap, PQ_SAMPLE_SEED);
        let sample = self.pq_input(&gather(&generation, picks)?).into_owned();

        let drop_raw = settings.drop_raw();
        // With an IVF index, its coarse centroids first: k-means over up to
        // COARSE_POINTS_PER_LIST vectors per list, drawn at random.
        let nlist = settings.ivf().then(|| match settings.ivf_lists {
            0 => crate::index::auto_lists(live.len() as u64),
            n => n.min((live.len() as u32).max(1)),
        });
        let coarse_units = nlist.map_or(0, |_| COARSE_ITERATIONS as u64);
        let train_units = coarse_units + (config.m as u64) * TRAIN_ITERATIONS as u64;
        // A DROP_RAW store with IVF encodes twice: once in place, to
        // calibrate while the raw vectors exist, then in the rewrite.
        let in_place_units = generation.slot_count().div_ceil(ENCODE_CHUNK);
        let encode_units = match (drop_raw, settings.ivf()) {
            (false, _) => in_place_units,
            (true, false) => live.len().div_ceil(REWRITE_CHUNK) as u64,
            (true, true) => in_place_units + live.len().div_ceil(REWRITE_CHUNK) as u64,
        };
        let total = train_units + encode_units;
        let coarse = match nlist {
            Some(nlist) => {
                let cap = COARSE_POINTS_PER_LIST * nlist as usize;
                let picks = super::ivf::random_slots(&live, cap, TRAIN_SEED);
                let coarse_sample = self.pq_input(&gather(&generation, picks)?).into_owned();
                let mut done = 0;
                let coarse = crate::index::CoarseQuantizer::train(
                    self.dim,
                    pq_metric(self.metric),
                    &coarse_sample,
                    nlist as usize,
                    COARSE_ITERATIONS,
                    TRAIN_SEED,
                    self.threads,
                    &mut || {
                        done += 1;
                        progress(done, total)
                    },
                )
                .map_err(|e| Error::new(crate::ErrorKind::Internal, format!("IVF training failed: {e}")))?;
                Some(coarse)
            }
            None => None,
        };
        // IVF codes encode the vectors themselves (as the codes of a store
        // without an index), or residuals, which the codebooks then learn
        // (see `residual_codes`).
        let residual = coarse.as_ref().is_some_and(|c| residual_codes(c.metric()));
        let sample = match &coarse {
            Some(coarse) if residual => {
                let mut lists = vec![0u32; sample.len() / self.dim];
                coarse.assign(&sample, &mut lists, self.threads);
                coarse.residuals(&sample, &lists)
            }
            _ => sample,
        };
        let options = TrainOptions { iterations: TRAIN_ITERATIONS, seed: TRAIN_SEED, threads: self.threads };
        let codebooks = Codebooks::train(&config, &sample, &options, &mut |done, _| progress(coarse_units + done, total))
            .map_err(|e| Error::invalid(format!("PQ training failed: {e}")))?;
        // Large indexes are searched in two stages (docs/indexes.md); the
        // calibration below measures that search.
        let two_stage = live.len() >= super::ivf::two_stage_min_vectors();
        let ivf = coarse.map(|coarse| crate::index::Ivf::new(coarse, Default::default(), &codebooks, residual, two_stage));
        let quantizer = Quantizer { codebooks, ivf };
        // The reader's check, before any file is created (`write_codebooks`
        // repeats it, for every writer of codebooks).
        check_codebooks(&quantizer.to_bytes(), self.dim, config.m, config.bits, settings.ivf())
            .map_err(|e| Error::new(crate::ErrorKind::Internal, format!("PQ training produced unreadable codebooks: {e}")))?;
        let trained = if drop_raw {
            let mut done_before = train_units;
            let quantizer = if settings.ivf() {
                // Calibrated now, from exact distances between the raw
                // vectors (searched without re-rank: there will be none);
                // the codes written for it are not kept.
                let mut encoded = |done: u64, _: u64| progress(train_units + done, total);
                let calibrated = self.encode_locked(w, &generation, quantizer, &mut encoded);
                done_before += in_place_units;
                w.check_sync(calibrated)?.quantizer
            } else {
                quantizer
            };
            let mut encoded = |done: u64, _: u64| progress(done_before + done, total);
            self.rewrite_locked(w, true, CodesPlan::Encode(Arc::new(quantizer)), &mut encoded)
        } else {
            let mut encoded = |done: u64, _: u64| progress(train_units + done, total);
            self.encode_all_locked(w, &generation, quantizer, &mut encoded)
        };
        w.check_sync(trained)
    }

    /// Writes a new PQ generation for the current data files: codebooks,
    /// and a code for every slot (zeros for dead ones), then commits it.
    fn encode_all_locked(
        &self,
        w: &mut Writer,
        generation: &super::Generation,
        quantizer: Quantizer,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<()> {
        let Encoded { pq_generation, quantizer, codes, mut writer, crc, lists, uncommitted } =
            self.encode_locked(w, generation, quantizer, progress)?;
        let (codebooks_len, codebooks_crc) = write_codebooks(&self.dir, pq_generation, self.dim, &quantizer)?;
        // The new files' directory entries must be durable before the
        // superblock that names them; their data too (synced here, not in
        // the commit, so that a failed sync leaves them unnamed, removed).
        crate::storage::fsutil::sync_dir(&self.dir)?;
        crate::storage::mmap::sync_published(std::iter::once(&mut writer))?;
        uncommitted.keep();

        // The PQ generation being replaced: the one in use, or the damaged
        // one open left out (`Store::index_damage`), whose files go too.
        let old_pq = Some(w.committed.pq_generation).filter(|&g| g != 0);
        let old_codes = w.files.codes.replace(writer);
        let old_crc = std::mem::replace(&mut w.codes_crc, crc);
        let committed = self.commit_locked(w, true, |sb| {
            sb.pq_generation = pq_generation;
            sb.codebooks_len = codebooks_len;
            sb.codebooks_crc = codebooks_crc;
        });
        if let Err(e) = committed {
            w.files.codes = old_codes;
            w.codes_crc = old_crc;
            return Err(e);
        }
        {
            let mut view = self.view.write();
            let pq = PqData {
                generation: pq_generation,
                quantizer: Arc::new(quantizer),
                codes,
                codebooks_file_len: crate::storage::format::FILE_HEADER_LEN + codebooks_len,
            };
            view.generation = Arc::new(view.generation.with_pq(Some(pq)));
            // Puts wait for the writer lock, which is held: the live set
            // the lists were built from is still the view's.
            view.lists = lists;
        }
        drop(old_codes);
        match old_pq {
            // Only the PQ files of the old PQ generation go; the data files stay.
            Some(g) => remove_generation_files(&self.dir, None, Some(g)),
            None => Ok(()),
        }
    }

    /// Encodes every slot of `generation` into the codes file of the next
    /// PQ generation (zeros for dead slots), and with IVF builds the lists
    /// and calibrates `quantizer` on them. Nothing is committed: the files
    /// are removed when the result is dropped without `uncommitted.keep()`.
    fn encode_locked(
        &self,
        w: &Writer,
        generation: &super::Generation,
        mut quantizer: Quantizer,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Encoded<'_>> {
        let pq_generation = w.committed.pq_generation + 1;
        let record_size = quantizer.record_size();
        let uncommitted = UncommittedFiles::new(&self.dir, None, Some(pq_generation));
        let (codes, mut writer) = create_codes(&self.dir, pq_generation, self.dim, record_size)?;
        let slots = generation.slot_count();
        let live_set = self.view.read().live.clone();
        let is_live = |s: u64| live_set.contains(s);
        // With IVF, the raw vectors' checksums for the lists, built once
        // every code is written (`lists_from_codes`, as an open builds
        // them: lists grown record by record and then packed took twice
        // the memory and a copy of every code).
        let ivf = quantizer.ivf.is_some();
        let mut vector_crcs = Vec::with_capacity(if ivf { slots as usize } else { 0 });
        let chunks = slots.div_ceil(ENCODE_CHUNK);
        let mut raw = Vec::with_capacity(ENCODE_CHUNK as usize * self.dim);
        let mut out = Vec::new();
        let mut crc = 0u32;
        for c in 0..chunks {
            let (start, end) = (c * ENCODE_CHUNK, ((c + 1) * ENCODE_CHUNK).min(slots));
            // A chunk of live slots in one mapped run is encoded where it
            // lies, its checksums verified by every thread; others are
            // copied, dead slots as zeros. (Copying and verifying every
            // chunk on one thread was 0.45 s of a 2.6 s encode at 1M x
            // 768, the other thread idle.)
            let in_place = if (start..end).all(is_live) { generation.vectors_in(start, end - start)? } else { None };
            let chunk = match in_place {
                Some(run) => {
                    let crcs = verified_crcs(generation, start, run, self.threads)?;
                    if ivf {
                        vector_crcs.extend(crcs);
                    }
                    run
                }
                None => {
                    raw.clear();
                    for slot in start..end {
                        let vector_crc = if is_live(slot) {
                            let record = generation.slot_record(slot)?;
                            raw.extend_from_slice(generation.vector(slot, &record)?);
                            record.vector_crc
                        } else {
                            raw.resize(raw.len() + self.dim, 0.0);
                            0
                        };
                        if ivf {
                            vector_crcs.push(vector_crc);
                        }
                    }
                    &raw[..]
                }
            };
            out.clear();
            out.resize((end - start) as usize * record_size, 0);
            quantizer.encode(&self.pq_input(chunk), &mut out, self.threads);
            // Dead slots keep all-zero records; they are never scanned.
            for (i, slot) in (start..end).enumerate() {
                if !is_live(slot) {
                    out[i * record_size..(i + 1) * record_size].fill(0);
                }
            }
            writer.write_at(start * record_size as u64, &out)?;
            crc = crate::storage::checksum::crc32c_append(crc, &out);
            progress(c + 1, chunks);
        }
        writer.publish(slots * record_size as u64);
        let (mut lists, mut sample) = (None, None);
        while ivf && lists.is_none() {
            let live_slots = || (0..slots).filter(|&s| is_live(s));
            let built = super::ivf::lists_from_codes(&quantizer, &codes, slots, live_slots, |s| Ok(vector_crcs[s as usize]))?;
            // Calibrated on the codes just written (through a PqData that
            // is not yet anyone's), then saved with the centroids.
            let provisional = PqData { generation: pq_generation, quantizer: Arc::new(quantizer), codes: codes.clone(), codebooks_file_len: 0 };
            let measured = super::ivf::calibrate(self, generation, &provisional, &built, &live_set, &mut sample)?;
            let pays = super::ivf::two_stage_pays(generation, &provisional, &built, &measured);
            quantizer = Arc::into_inner(provisional.quantizer).expect("the provisional PqData held the only reference");
            let ivf = quantizer.ivf.as_ref().expect("IVF");
            if !pays {
                // Its search would cost more than one stage's: one stage,
                // its lists of whole codes calibrated anew.
                quantizer.ivf.as_mut().expect("IVF").two_stage = false;
                continue;
            }
            ivf.set_calibration(crate::index::Calibration::from_measurements(measured));
            lists = Some(built);
        }
        Ok(Encoded { pq_generation, quantizer, codes, writer, crc, lists, uncommitted })
    }
}

/// A PQ generation encoded and not yet committed (`Store::encode_locked`).
struct Encoded<'a> {
    pq_generation: u64,
    quantizer: Quantizer,
    codes: Arc<crate::storage::mmap::MappedFile>,
    writer: crate::storage::mmap::FileWriter,
    /// crc32c of the codes file's data.
    crc: u32,
    lists: Option<InvertedLists>,
    uncommitted: UncommittedFiles<'a>,
}

/// The stored checksums of the vectors of slots `first..` (`run`, one
/// after another in the mapping), each verified against its vector, on
/// `threads` threads.
fn verified_crcs(generation: &super::Generation, first: u64, run: &[f32], threads: usize) -> Result<Vec<u32>> {
    let count = run.len() / generation.dim.max(1);
    let per = count.div_ceil(threads.max(1)).max(1);
    let parts = crate::parallel::by_ranges(count, per, |rows| {
        // `vector` verifies the mapped vector, the same bytes as `run`'s.
        rows.map(|i| {
            let slot = first + i as u64;
            let record = generation.slot_record(slot)?;
            generation.vector(slot, &record)?;
            Ok(record.vector_crc)
        })
        .collect::<Result<Vec<u32>>>()
    });
    let mut crcs = Vec::with_capacity(count);
    for part in parts {
        crcs.extend(part?);
    }
    Ok(crcs)
}

/// The verified raw vectors of `slots`, row after row.
fn gather(generation: &super::Generation, slots: impl IntoIterator<Item = u64>) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for slot in slots {
        out.extend_from_slice(generation.vector(slot, &generation.slot_record(slot)?)?);
    }
    Ok(out)
}

/// Approximate search of one or more queries: an ADC scan of the codes for
/// each query's best `k` (or `rerank`) candidates, in one pass for all of
/// them (see `pq::scan_many`; results are the same as one search per query);
/// with `rerank` and raw vectors, exact distances re-rank them (`finish`).
/// `query_threads` splits the scan into runs of slots, and the re-rank.
#[allow(clippy::too_many_arguments)]
pub(super) fn pq_search_many(
    view: &View,
    store: &Store,
    pq: &PqData,
    queries: &[&[f32]],
    k: usize,
    rerank: usize,
    candidates: &LiveSet,
    query_threads: u32,
) -> Result<Vec<Vec<Hit>>> {
    let generation = &view.generation;
    let metric = store.metric();
    let tables: Vec<_> =
        queries.iter().map(|q| pq.quantizer.codebooks.query_table(&store.pq_input(q), pq_metric(metric))).collect();
    let table_refs: Vec<_> = tables.iter().collect();
    let rerank = rerank_kept(generation, rerank);
    let depth = k.max(rerank);
    let code_size = pq.quantizer.record_size() as u64;
    let live = candidates.words();
    let slots = generation.slot_count();
    let scan = |range: std::ops::Range<u64>| -> Result<Vec<TopK>> {
        let mut tops: Vec<TopK> = queries.iter().map(|_| TopK::new(depth)).collect();
        pq.codes.for_each_piece(range.start * code_size, range.end * code_size, |offset, codes| {
            scan_many(&table_refs, codes, offset / code_size, Some(live), &mut tops);
            Ok(())
        })?;
        Ok(tops)
    };
    let parts = super::read::split_parts(query_threads, usize::try_from(slots * code_size).unwrap_or(usize::MAX));
    let tops = if parts > 1 {
        // Runs of slots, one a thread (whole 64-code blocks: only the
        // last has a tail); each query's best `depth` of theirs are its
        // best of all (`TopK`).
        let per = slots.div_ceil(parts as u64).next_multiple_of(64);
        let found = crate::parallel::concurrently(parts, |p| scan((p as u64 * per).min(slots)..((p as u64 + 1) * per).min(slots)));
        let mut found: Vec<std::vec::IntoIter<TopK>> = found.into_iter().map(|part| part.map(Vec::into_iter)).collect::<Result<_>>()?;
        (0..queries.len()).map(|_| TopK::merged(depth, found.iter_mut().map(|part| part.next().expect("a TopK a query")))).collect()
    } else {
        scan(0..slots)?
    };
    let mut out = Vec::with_capacity(queries.len());
    for ((query, top), table) in queries.iter().zip(tops).zip(&tables) {
        let candidates = top.into_sorted_vec().into_iter().map(|(d, slot)| (table.unscale(d), slot)).collect();
        out.push(finish(generation, store, query, candidates, k, rerank, None, query_threads)?);
    }
    Ok(out)
}

/// Bytes of raw vectors from which an IVF re-rank asks for all of each
/// candidate vector ahead (`finish`). Below, the vectors stay in cache from
/// one query to the next, and the extra requests cost more than they save:
/// 900 x 768 and 826 x 1,024 stores answered 2-4% fewer queries/s with them
/// (harness, one thread, target 0.95), where the 1M x 768 store's re-rank
/// alone answered 4-26% more (pairs of alternating runs).
const FAR_VECTORS: u64 = 64 << 20;

/// Whether the raw vectors outgrow the cache (`FAR_VECTORS`): each vector
/// a re-rank reads is then a random read from memory.
pub(super) fn vectors_far(generation: &super::Generation) -> bool {
    generation.slot_count().saturating_mul(super::generation::vector_record_len(generation.dim)) >= FAR_VECTORS
}

/// The re-rank depth a PQ search keeps of `rerank`: none without raw
/// vectors to re-rank with.
pub(super) fn rerank_kept(generation: &super::Generation, rerank: usize) -> usize {
    if generation.vectors.is_some() {
        rerank
    } else {
        0
    }
}

/// The candidates `finish` re-ranks for `k` results at depth `rerank`: at
/// least k when it re-ranks at all.
pub(super) fn reranked(rerank: usize, k: usize) -> usize {
    if rerank > 0 {
        rerank.max(k)
    } else {
        0
    }
}

/// The hits of one query from its ADC candidates (distances unscaled):
/// the first `k` (best first), or with `rerank > 0` the best `k` by exact
/// distance among the first `max(k, rerank)` (in any order when that is
/// all of them). Every re-ranked vector is verified against its checksum
/// (API.md: the exact re-rank of a search is checked, a mismatch is
/// `Corrupt`), so a damaged one fails the search even when it would not
/// have been a hit: the checksum `lists` keep when given (IVF), else the
/// slot record's.
#[allow(clippy::too_many_arguments)]
pub(super) fn finish(
    generation: &super::Generation,
    store: &Store,
    query: &[f32],
    candidates: Vec<(f32, u64)>,
    k: usize,
    rerank: usize,
    lists: Option<&InvertedLists>,
    query_threads: u32,
) -> Result<Vec<Hit>> {
    let metric = store.metric();
    if rerank == 0 {
        return Ok(candidates
            .into_iter()
            .take(k)
            .map(|(d, slot)| Hit { key: generation.key(slot), distance: metric_distance(metric, d) })
            .collect());
    }
    let prepared = PreparedQuery::new(query, metric);
    let candidates = &candidates[..candidates.len().min(reranked(rerank, k))];
    let parts = super::read::split_parts(query_threads, candidates.len() * 4 * generation.dim);
    let exact = if parts > 1 {
        // Each part keeps its best k; the best k of theirs are the best k
        // of all (as `TopK` keeps them, whatever the order offered).
        let per = candidates.len().div_ceil(parts);
        let tops = crate::parallel::concurrently(parts, |p| {
            let part = &candidates[(p * per).min(candidates.len())..((p + 1) * per).min(candidates.len())];
            rerank_part(generation, metric, &prepared, part, k, lists)
        });
        TopK::merged(k, tops.into_iter().collect::<Result<Vec<_>>>()?)
    } else {
        rerank_part(generation, metric, &prepared, candidates, k, lists)?
    };
    Ok(exact.into_sorted_vec().into_iter().map(|(distance, slot)| Hit { key: generation.key(slot), distance }).collect())
}

/// The best `k` of `candidates` by exact distance to the `prepared` query,
/// each candidate's vector verified against its checksum (`finish`).
fn rerank_part(
    generation: &super::Generation,
    metric: Metric,
    prepared: &PreparedQuery,
    candidates: &[(f32, u64)],
    k: usize,
    lists: Option<&InvertedLists>,
) -> Result<TopK> {
    let mut exact = TopK::new(k);
    // The candidates lie anywhere in the files: load some ahead, so that
    // their cache misses overlap instead of following one another. With
    // the index, the vector's first lines, 6 candidates ahead, or where
    // the vectors outgrow the cache (`FAR_VECTORS`) all of each vector,
    // `prefetch::once_ahead` candidates ahead, marked for one use on AMD
    // (`prefetch_vector_once`), and its checksum; without, the slot
    // record and the vector's first lines (`prefetch_slot`).
    let far = lists.is_some() && vectors_far(generation);
    let ahead = if far { crate::storage::prefetch::once_ahead(super::generation::vector_record_len(generation.dim) as usize) } else { 6 };
    let prefetch = |slot| match lists {
        Some(lists) if far => {
            lists.prefetch_vector_crc(slot);
            generation.prefetch_vector_once(slot);
        }
        Some(_) => generation.prefetch_vector(slot),
        None => generation.prefetch_slot(slot),
    };
    candidates.iter().take(ahead).for_each(|&(_, slot)| prefetch(slot));
    // (Verifying in a second pass, after the distances, measured slower:
    // the records were out of cache again.)
    // Each candidate's vector (verified) and norm, its successor `ahead`
    // asked for.
    let vector = |i: usize| -> Result<(&[f32], f32)> {
        if let Some(&(_, next)) = candidates.get(i + ahead) {
            prefetch(next);
        }
        let slot = candidates[i].1;
        match lists {
            Some(lists) => {
                let vector = generation.vector_with_crc(slot, lists.vector_crc(slot))?;
                // Only cosine reads the norm: the one put stored, recomputed.
                let norm = if metric == Metric::Cosine { crate::search::distance::norm(vector) } else { 0.0 };
                Ok((vector, norm))
            }
            None => {
                let record = generation.slot_record(slot)?;
                Ok((generation.vector(slot, &record)?, record.norm))
            }
        }
    };
    // Scored `MANY` at a time (`PreparedQuery::distances`: the same bits,
    // several vectors' sums side by side), the rest one by one.
    let whole = candidates.len() / MANY * MANY;
    for at in (0..whole).step_by(MANY) {
        let mut got = [(&[][..], 0.0f32); MANY];
        for (r, g) in got.iter_mut().enumerate() {
            *g = vector(at + r)?;
        }
        let distances = prepared.distances(got.map(|g| g.0), got.map(|g| g.1));
        for (r, d) in distances.into_iter().enumerate() {
            exact.push(d, candidates[at + r].1);
        }
    }
    for (i, &(_, slot)) in candidates.iter().enumerate().skip(whole) {
        let (v, norm) = vector(i)?;
        exact.push(prepared.distance(v, norm), slot);
    }
    Ok(exact)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Options;

    /// `verified_crcs` gives each slot's stored checksum whatever the
    /// thread count, and fails on a damaged vector, naming its ID.
    #[test]
    fn verified_crcs_checks_every_vector() {
        let (dim, n) = (8usize, 1000usize);
        let dir = crate::testutil::TempDir::new("verified-crcs");
        let path = dir.path().join("store");
        let vectors: Vec<f32> = (0..n * dim).map(|i| (i % 97) as f32 - 48.0).collect();
        let store = Store::open(&path, &Options::create(dim as u32)).unwrap();
        let ids = crate::IdBuf::new((0..n).map(|i| format!("id-{i}")));
        store.put_batch(&ids.batch().unwrap(), &vectors).unwrap();
        store.close().unwrap();
        let vectors_file = std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().contains("vectors")).unwrap();
        for damaged in [false, true] {
            if damaged {
                use std::os::unix::fs::FileExt;
                let f = std::fs::OpenOptions::new().read(true).write(true).open(&vectors_file).unwrap();
                let at = 4096 + 777 * dim as u64 * 4 + 2;
                let mut b = [0u8];
                f.read_exact_at(&mut b, at).unwrap();
                f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
            }
            let store = Store::open(&path, &Options::default()).unwrap();
            let view = store.view.read();
            let generation = &view.generation;
            let run = generation.vectors_in(0, n as u64).unwrap().expect("one mapped run");
            let want: Vec<u32> = (0..n as u64).map(|s| generation.slot_record(s).unwrap().vector_crc).collect();
            for threads in [1, 2, 3] {
                match verified_crcs(generation, 0, run, threads) {
                    Ok(crcs) => assert!(!damaged && crcs == want, "threads {threads}, damaged {damaged}"),
                    Err(e) => assert!(damaged && e.kind() == crate::ErrorKind::Corrupt && e.to_string().contains("id-777"), "threads {threads}: {e}"),
                }
            }
        }
    }
}
