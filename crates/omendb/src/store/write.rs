//! The write path: put, delete, checkpoint, compact. Every operation writes
//! past the published end of each file, publishes, then updates the index
//! under a short exclusive lock, so a failure part-way leaves nothing visible.

use std::sync::atomic::Ordering;

use super::generation::{vector_record_len, GenerationWriter};
use super::open::write_superblock;
use super::{Store, View, Writer};

use crate::ids::batch::{display_id, IdBatch};
use crate::search::distance;
use crate::error::{Error, ErrorKind, Result};
use crate::storage::format::{vector_checksum, SlotRecord, Superblock, ID_HEAD_LEN, SLOT_RECORD_LEN, SUPERBLOCK_FILE, TOMB_RECORD_LEN};
use crate::storage::mmap::{huge_page_floor, RangeWriter, HUGE_PAGE};
use crate::options::Metric;

/// Bytes of vectors put_batch checks at a time (cache-sized).
const WRITE_BLOCK: u64 = 256 << 10;

/// False if `values` holds a NaN or an infinity. Branch-free over the
/// whole row, so the compiler vectorizes it (queries are checked so too:
/// an early-exit scan of a 768-value query was 3% of a search).
#[inline]
pub(super) fn all_finite(values: &[f32]) -> bool {
    values.iter().fold(0u32, |bad, x| bad | ((x.to_bits() & 0x7f80_0000) == 0x7f80_0000) as u32) == 0
}

/// What a row's slot record needs of it.
#[derive(Debug, Clone, Copy)]
struct RowSums {
    crc: u32,
    norm: f32,
}

/// The rows of a put, taken in blocks of about `WRITE_BLOCK` bytes: each
/// block's rows are checked and summed, then the block is written while it
/// is still in cache, as one `pwrite` (rows are contiguous in the host's
/// buffer and in the file).
struct RowBlocks<'a> {
    vectors: &'a [f32],
    ids: &'a IdBatch<'a>,
    dim: usize,
    /// The slot of row 0.
    first_slot: u64,
    want_norm: bool,
}

impl RowBlocks<'_> {
    fn block_rows(&self) -> usize {
        (WRITE_BLOCK / vector_record_len(self.dim)).max(1) as usize
    }

    /// Checks, sums and writes (to `out`, when the store keeps raw vectors)
    /// every row, on up to `threads` threads, each taking a contiguous run
    /// of at least two blocks: the first read of the host's rows and the
    /// kernel's copy into the page cache are most of a put. An error names
    /// the first bad row of the first run that failed (a failed write in an
    /// earlier run takes precedence).
    fn check_and_write(&self, threads: usize, out: Option<&RangeWriter<'_>>) -> Result<Vec<RowSums>> {
        let n = self.vectors.len() / self.dim;
        let block_rows = self.block_rows();
        let blocks = n.div_ceil(block_rows);
        let parts = threads.min(blocks / 2).max(1);
        let rows_per_part = blocks.div_ceil(parts) * block_rows;
        let part_count = n.div_ceil(rows_per_part);
        // Each run writes the bytes from the huge-page boundary nearest its
        // first row to the next run's, so that no huge page of the file is
        // split between two runs' writes (see `write_piece`). A run thereby
        // writes a few rows that its neighbour checks: harmless, as nothing
        // past the published end is visible until every check has passed.
        let record_len = vector_record_len(self.dim);
        let batch = self.bytes();
        let cut = |p: usize| match p {
            0 => batch.start,
            p if p >= part_count => batch.end,
            p => {
                let split = batch.start + (p * rows_per_part) as u64 * record_len;
                let below = huge_page_floor(split);
                let nearest = if split - below <= HUGE_PAGE / 2 { below } else { below + HUGE_PAGE };
                nearest.clamp(batch.start, batch.end)
            }
        };
        let results = crate::parallel::concurrently(part_count, |p| {
            self.check_and_write_range(p * rows_per_part..((p + 1) * rows_per_part).min(n), cut(p)..cut(p + 1), out)
        });
        let mut sums = Vec::with_capacity(n);
        for part in results {
            sums.extend(part?);
        }
        Ok(sums)
    }

    /// Checks and sums `rows` block by block, writing the data bytes `bytes`
    /// of the batch ahead of the checks, up to a huge page at a time, so
    /// that the checks read rows the write has just brought into cache.
    /// (Checking a whole huge page before writing it measured slower: the
    /// kernel's copy then reads rows that have left the cache.)
    fn check_and_write_range(
        &self,
        rows: std::ops::Range<usize>,
        bytes: std::ops::Range<u64>,
        out: Option<&RangeWriter<'_>>,
    ) -> Result<Vec<RowSums>> {
        let mut sums = Vec::with_capacity(rows.len());
        let part = &self.vectors[rows.start * self.dim..rows.end * self.dim];
        let block_rows = self.block_rows();
        let mut written = bytes.start;
        let record_len = vector_record_len(self.dim);
        for (b, block) in part.chunks(block_rows * self.dim).enumerate() {
            let block_first = rows.start + b * block_rows;
            if let Some(out) = out {
                let block_end = (self.first_slot + (block_first + block.len() / self.dim) as u64) * record_len;
                if block_end > written {
                    let to = (huge_page_floor(block_end) + HUGE_PAGE).min(bytes.end);
                    written = self.write_piece(out, written, to)?;
                }
            }
            for (j, src) in block.chunks_exact(self.dim).enumerate() {
                let i = block_first + j;
                if !all_finite(src) {
                    return Err(non_finite_error(i, self.ids.get(i), src));
                }
                let slot = self.first_slot + i as u64;
                let crc = vector_checksum(slot, bytemuck::cast_slice(src));
                let norm = if self.want_norm { distance::norm(src) } else { 0.0 };
                sums.push(RowSums { crc, norm });
            }
        }
        if let Some(out) = out {
            self.write_piece(out, written, bytes.end)?;
        }
        Ok(sums)
    }

    /// Writes the batch's data bytes `[from, to)` (nothing if `to <= from`)
    /// and returns where the written bytes end. Pieces end at huge-page
    /// boundaries because a write that covers a whole aligned huge page is
    /// what lets the kernel cache it as one folio, which readers' mappings
    /// then reach through one TLB entry instead of 512: a random `get` waits
    /// mostly on that translation otherwise (CHANGELOG.md: the vectors file in 2 MiB folios).
    /// With `Options::huge_pages` the batch's last piece is padded so that
    /// its huge page is one folio too (`RangeWriter::write_last`).
    fn write_piece(&self, out: &RangeWriter<'_>, from: u64, to: u64) -> Result<u64> {
        if to > from {
            out.write_huge_pages(from, self.host_bytes(from..to))?;
        }
        Ok(to.max(from))
    }

    /// The data offsets of the file the batch's rows go to.
    fn bytes(&self) -> std::ops::Range<u64> {
        let record_len = vector_record_len(self.dim);
        self.first_slot * record_len..self.first_slot * record_len + std::mem::size_of_val(self.vectors) as u64
    }

    /// The host's bytes that go to data offsets `range` of the file.
    fn host_bytes(&self, range: std::ops::Range<u64>) -> &[u8] {
        let start = self.bytes().start;
        &bytemuck::cast_slice(self.vectors)[(range.start - start) as usize..(range.end - start) as usize]
    }
}

/// Where `values` first holds a NaN or an infinity (0 where none does:
/// the caller found one with `all_finite`).
pub(super) fn first_non_finite(values: &[f32]) -> usize {
    values.iter().position(|x| !x.is_finite()).unwrap_or(0)
}

fn non_finite_error(row: usize, id: &[u8], vector: &[f32]) -> Error {
    let at = first_non_finite(vector);
    Error::invalid(format!(
        "vector {row} (id {}) holds {} at index {at}; values must be finite",
        display_id(id),
        vector[at]
    ))
}

/// Appends slot entries (a long ID's bytes, then its slot record) to a
/// generation's files, carrying the end of the ID data and the running
/// checksums of both files. Used by put and by compaction's rewrite.
/// Entries are gathered in memory and written by `flush` (on its own every
/// `ENTRY_FLUSH` bytes): one `pwrite` per file for a run of entries, never
/// a store into the mapping, so that a full disk is an error of the write.
/// The owner flushes before publishing.
pub(super) struct EntryAppender {
    pub ids_end: u64,
    pub ids_crc: u32,
    pub slots_crc: u32,
    /// Slot records not yet written, of the slots from `first_slot` on.
    slots: Vec<u8>,
    first_slot: u64,
    /// ID bytes not yet written; they end at `ids_end`.
    ids: Vec<u8>,
}

/// Bytes of slot records (or of ID bytes) an appender gathers before it
/// writes them.
const ENTRY_FLUSH: usize = 1 << 20;

impl EntryAppender {
    pub(super) fn new(ids_end: u64, ids_crc: u32, slots_crc: u32) -> EntryAppender {
        EntryAppender { ids_end, ids_crc, slots_crc, slots: Vec::new(), first_slot: 0, ids: Vec::new() }
    }

    /// Appends the entry of `slot`, which follows the last one appended.
    pub(super) fn append(&mut self, files: &mut GenerationWriter, slot: u64, id: &[u8], vector_crc: u32, norm: f32) -> Result<()> {
        if self.slots.is_empty() {
            self.first_slot = slot;
        } else if slot != self.first_slot + (self.slots.len() as u64) / SLOT_RECORD_LEN {
            return Err(Error::new(ErrorKind::Internal, format!("slot {slot} appended out of order")));
        }
        // A short ID lives in its slot record's head alone.
        let id_offset = if id.len() > ID_HEAD_LEN { self.append_id(files, id) } else { 0 };
        let record = SlotRecord::new(id_offset, id, vector_crc, norm);
        let bytes = bytemuck::bytes_of(&record);
        self.slots.extend_from_slice(bytes);
        self.slots_crc = crate::storage::checksum::crc32c_append(self.slots_crc, bytes);
        if self.slots.len() >= ENTRY_FLUSH || self.ids.len() >= ENTRY_FLUSH {
            self.flush(files)?;
        }
        Ok(())
    }

    /// Appends a long ID's bytes; returns their offset in the ids file.
    fn append_id(&mut self, files: &GenerationWriter, id: &[u8]) -> u64 {
        let ids = files.ids.mapped();
        let len = id.len() as u64;
        // An ID never straddles two mapping chunks: pad to the next one.
        if !ids.fits_in_chunk(self.ids_end, len) {
            let next = ids.next_chunk_start(self.ids_end);
            let from = self.ids.len();
            self.ids.resize(from + (next - self.ids_end) as usize, 0);
            self.ids_crc = crate::storage::checksum::crc32c_append(self.ids_crc, &self.ids[from..]);
            self.ids_end = next;
        }
        self.ids.extend_from_slice(id);
        self.ids_crc = crate::storage::checksum::crc32c_append(self.ids_crc, id);
        let offset = self.ids_end;
        self.ids_end += len;
        offset
    }

    /// Writes the gathered ID bytes and slot records.
    pub(super) fn flush(&mut self, files: &mut GenerationWriter) -> Result<()> {
        if !self.ids.is_empty() {
            files.ids.write_at(self.ids_end - self.ids.len() as u64, &self.ids)?;
            self.ids.clear();
        }
        if !self.slots.is_empty() {
            files.slots.write_at(self.first_slot * SLOT_RECORD_LEN, &self.slots)?;
            self.slots.clear();
        }
        Ok(())
    }
}

impl Store {
    /// Upserts `ids.len()` vectors (row-major in `vectors`). An existing ID
    /// is replaced; within a batch the last occurrence wins. All or nothing.
    pub fn put_batch(&self, ids: &IdBatch<'_>, vectors: &[f32]) -> Result<()> {
        let n = ids.len();
        if vectors.len() != n * self.dim {
            return Err(Error::new(
                ErrorKind::Dimension,
                format!("{n} ids need {} floats of dimension {}, got {}", n * self.dim, self.dim, vectors.len()),
            ));
        }
        let mut guard = self.lock_writer()?;
        if n == 0 {
            return Ok(());
        }
        let w: &mut Writer = &mut guard;
        let generation = self.view.read().generation.clone();
        let first = generation.slot_count();
        if first + n as u64 > u32::MAX as u64 {
            return Err(Error::invalid(format!(
                "the store holds {first} slots; {n} more would pass the limit of {} (compact it)",
                u32::MAX
            )));
        }
        let dim = self.dim;
        let record_len = vector_record_len(dim);
        let end_slot = first + n as u64;
        w.files.slots.reserve(end_slot * SLOT_RECORD_LEN)?;
        let ids_end = w.files.ids.published();
        w.files.ids.reserve(ids_end + ids.total_bytes())?;

        // The rows first (`RowBlocks::check_and_write`: finiteness,
        // checksums and norms, then the file), split between worker threads
        // in large batches; then, on this thread, their IDs and slot records.
        // Compressed stores keep the norm to scale cosine reconstructions.
        let rows = RowBlocks {
            vectors: &vectors[..n * dim],
            ids,
            dim,
            first_slot: first,
            want_norm: self.metric == Metric::Cosine || w.files.vectors.is_none(),
        };
        let out = match w.files.vectors.as_mut() {
            Some(v) => Some(v.range_writer(first * record_len, end_slot * record_len)?),
            None => None,
        };
        let sums = rows.check_and_write(self.threads, out.as_ref())?;
        let mut entries = EntryAppender::new(ids_end, w.ids_crc, w.slots_crc);
        for (i, (id, sum)) in ids.iter().zip(&sums).enumerate() {
            entries.append(&mut w.files, first + i as u64, id, sum.crc, sum.norm)?;
        }
        entries.flush(&mut w.files)?;
        // Write-behind: the disk starts on this batch's rows now, while the
        // host prepares the next one; the checkpoint's sync still waits for them.
        if let Some(v) = w.files.vectors.as_ref() {
            v.start_writeback(first * record_len, n as u64 * record_len);
        }

        // Once trained, every vector gets its code as it is written.
        let mut codes_crc = w.codes_crc;
        let mut codes = Vec::new();
        if let Some(pq) = &generation.pq {
            let code_size = pq.quantizer.record_size() as u64;
            codes = vec![0u8; n * code_size as usize];
            pq.quantizer.encode(&self.pq_input(vectors), &mut codes, self.threads);
            let writer = w.files.codes.as_mut().ok_or_else(|| Error::new(ErrorKind::Internal, "trained store without a codes writer"))?;
            writer.write_at(first * code_size, &codes)?;
            codes_crc = crate::storage::checksum::crc32c_append(codes_crc, &codes);
            writer.publish(end_slot * code_size);
        }

        // Publish the file data, then (after the commit, with SYNC_WRITES)
        // the index entries.
        if let Some(v) = w.files.vectors.as_mut() {
            v.publish(end_slot * record_len);
        }
        w.files.ids.publish(entries.ids_end);
        w.files.slots.publish(end_slot * SLOT_RECORD_LEN);
        (w.slots_crc, w.ids_crc, w.codes_crc, w.dirty) = (entries.slots_crc, entries.ids_crc, codes_crc, true);
        if self.sync_writes {
            let live_after = self.live_after_put(ids, &generation);
            self.commit_batch_locked(w, live_after)?;
        }
        {
            let mut view = self.view.write();
            let View { index, live, live_id_bytes, lists, .. } = &mut *view;
            index.reserve(n, &*generation);
            live.grow(end_slot);
            for (i, id) in ids.iter().enumerate() {
                let slot = first + i as u64;
                match index.insert(id, slot as u32, &*generation) {
                    Some(old) => {
                        live.clear(old as u64);
                        if let Some(lists) = lists.as_mut() {
                            super::ivf::remove_slot(lists, &generation, old as u64);
                        }
                    }
                    None => *live_id_bytes += id.len() as u64,
                }
                live.set(slot);
            }
            if let (Some(lists), Some(pq)) = (lists.as_mut(), generation.pq.as_ref()) {
                // A repeated ID within the batch: only its last row is live.
                let vector_crcs: Vec<u32> = sums.iter().map(|s| s.crc).collect();
                super::ivf::add_records(lists, &pq.quantizer, first, &codes, &vector_crcs, |slot| live.contains(slot));
            }
        }
        self.train_if_due(w, &generation);
        Ok(())
    }

    /// How many IDs are live once `ids` are put (before the index says so).
    fn live_after_put(&self, ids: &IdBatch<'_>, generation: &super::Generation) -> u64 {
        let view = self.view.read();
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        let new = ids.iter().filter(|id| seen.insert(*id) && view.index.get(id, generation).is_none()).count();
        (view.index.len() + new) as u64
    }

    /// With SYNC_WRITES, commits a batch whose files are published but
    /// whose index entries are not: readers see it only once it is durable.
    /// If the commit fails, the batch is not applied, and the writer
    /// refuses every later change: a later checkpoint would otherwise
    /// commit the batch's published slots, and reopening would revive it.
    fn commit_batch_locked(&self, w: &mut Writer, live_after: u64) -> Result<()> {
        let committed = self.commit_locked(w, false, |sb| sb.live_count = live_after);
        if let Err(e) = &committed {
            w.refuse(format!("a SYNC_WRITES batch could not be committed ({})", e.message()));
        }
        committed.map(|_| ())
    }

    /// Automatic training, once the store holds `pq_train_size` vectors.
    /// The batch that triggers it is applied whatever training does. A
    /// failure (a full disk, say) leaves the store untrained and is kept
    /// for `auto_train_error` and the stats; the next attempt waits until
    /// another `pq_train_size` vectors have arrived (or `train_pq`), so a
    /// lasting failure does not make every put pay for a training.
    fn train_if_due(&self, w: &mut Writer, generation: &super::Generation) {
        let threshold = self.settings.pq_train_size as u64;
        let live = self.view.read().index.len() as u64;
        let due = generation.pq.is_none()
            && self.settings.pq_m != 0
            && threshold > 0
            && generation.vectors.is_some()
            && live >= threshold.max(w.auto_train_retry_at);
        if !due {
            return;
        }
        let trained = self.train_locked(w, &mut |_, _| {});
        let mut failure = self.auto_train_failure.lock();
        match trained {
            Ok(()) => *failure = None,
            Err(e) => {
                w.auto_train_retry_at = live + threshold;
                *failure = Some(e.context("automatic PQ training"));
            }
        }
    }

    /// Deletes the IDs that exist; returns how many did.
    pub fn delete_batch(&self, ids: &IdBatch<'_>) -> Result<u64> {
        let mut guard = self.lock_writer()?;
        if ids.is_empty() {
            return Ok(0);
        }
        let w: &mut Writer = &mut guard;
        let (generation, mut targets) = {
            let view = self.view.read();
            let generation = view.generation.clone();
            let targets: Vec<u64> =
                ids.iter().filter_map(|id| view.index.get(id, &*generation)).map(u64::from).collect();
            (generation, targets)
        };
        targets.sort_unstable();
        targets.dedup();
        if targets.is_empty() {
            return Ok(0);
        }
        let start = w.files.tombs.published();
        let end = start + targets.len() as u64 * TOMB_RECORD_LEN;
        let records: Vec<u8> = targets.iter().flat_map(|slot| slot.to_le_bytes()).collect();
        w.files.tombs.write_at(start, &records)?;
        let tombs_crc = crate::storage::checksum::crc32c_append(w.tombs_crc, &records);
        w.files.tombs.publish(end);
        (w.tombs_crc, w.dirty) = (tombs_crc, true);
        if self.sync_writes {
            let live_after = self.view.read().index.len() as u64 - targets.len() as u64;
            self.commit_batch_locked(w, live_after)?;
        }
        {
            let mut view = self.view.write();
            let View { index, live, live_id_bytes, lists, .. } = &mut *view;
            for &slot in &targets {
                let id = generation.id(slot)?;
                index.remove(id, Some(slot as u32), &*generation);
                live.clear(slot);
                *live_id_bytes -= id.len() as u64;
                if let Some(lists) = lists.as_mut() {
                    super::ivf::remove_slot(lists, &generation, slot);
                }
            }
        }
        Ok(targets.len() as u64)
    }

    /// Makes everything put or deleted so far durable; returns the
    /// checkpoint's sequence number.
    pub fn checkpoint(&self) -> Result<u64> {
        let mut guard = self.lock_writer()?;
        let w: &mut Writer = &mut guard;
        self.checkpoint_locked(w)
    }

    pub(super) fn checkpoint_locked(&self, w: &mut Writer) -> Result<u64> {
        self.commit_locked(w, false, |_| {})
    }

    /// Commits what the writer's files hold: syncs them, then writes the
    /// next superblock (after `edit` has adjusted it). Without `force`, a
    /// checkpoint with nothing to commit keeps the current number.
    pub(super) fn commit_locked(&self, w: &mut Writer, force: bool, edit: impl FnOnce(&mut Superblock)) -> Result<u64> {
        if !w.dirty && !force {
            return Ok(w.committed.seq);
        }
        w.usable(&self.dir)?;
        // 1. The new data reaches the medium: every data file with bytes
        //    published since its last sync, all at once (only pages written
        //    since the last checkpoint are dirty, so the cost follows the
        //    delta). All of them have returned before step 2 begins.
        let synced = crate::storage::mmap::sync_published(w.files.all_mut());
        w.check_sync(synced)?;
        // 2. Then the superblock slot that names it.
        let files = &w.files;
        let live_count = self.view.read().index.len() as u64;
        let mut sb = Superblock {
            seq: w.committed.seq + 1,
            slot_count: files.slots.published() / SLOT_RECORD_LEN,
            ids_len: files.ids.published(),
            tomb_count: files.tombs.published() / TOMB_RECORD_LEN,
            live_count,
            slots_crc: w.slots_crc,
            ids_crc: w.ids_crc,
            tombs_crc: w.tombs_crc,
            codes_crc: w.codes_crc,
            ..w.committed
        };
        edit(&mut sb);
        let written = write_superblock(&w.superblock_file, &self.dir.join(SUPERBLOCK_FILE), &sb);
        w.check_sync(written)?;
        w.committed = sb;
        w.dirty = false;
        self.checkpoint_seq.store(sb.seq, Ordering::Release);
        Ok(sb.seq)
    }

    /// Rewrites the live vectors into a new generation of files, dropping
    /// dead slots, and switches to it with one superblock write. Keys and
    /// `key_id` pointers from before are invalid afterwards. Also a checkpoint.
    /// Refused (`Corrupt`) while the index is damaged: the new generation
    /// would have no index, and nothing would tell it was lost.
    pub fn compact(&self) -> Result<()> {
        let mut guard = self.lock_writer()?;
        let w: &mut Writer = &mut guard;
        self.refuse_damaged_index("compact")?;
        let trained = self.view.read().generation.pq.is_some();
        let codes = if trained { super::rewrite::CodesPlan::Copy } else { super::rewrite::CodesPlan::None };
        let compacted = self.rewrite_locked(w, false, codes, &mut |_, _| {});
        w.check_sync(compacted)
    }

    /// The vectors PQ encodes: unit vectors for the cosine metric.
    pub(super) fn pq_input<'a>(&self, vectors: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        if self.metric != Metric::Cosine {
            return std::borrow::Cow::Borrowed(vectors);
        }
        let mut unit = vectors.to_vec();
        unit.chunks_exact_mut(self.dim.max(1)).for_each(distance::normalize);
        std::borrow::Cow::Owned(unit)
    }
}
