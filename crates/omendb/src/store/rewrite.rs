//! Rewriting the store into a new generation of files: compaction (dropping
//! dead slots), and training of a compressed store (dropping the raw
//! vectors once every vector has its code). The new files are written and
//! synced beside the old ones; one superblock write switches to them.

use std::path::Path;
use std::sync::Arc;

use super::generation::{create_codes, vector_record_len, write_codebooks, Generation, PqData};
use super::write::EntryAppender;
use super::{LiveSet, Store, View, Writer};
use crate::error::{Error, ErrorKind, Result};
use crate::storage::format::{vector_checksum, FileKind, SLOT_RECORD_LEN, STORE_FLAG_RAW_DROPPED};
use crate::storage::fsutil;
use crate::storage::mmap::huge_page_floor;
use crate::ids::table::IdIndex;
use crate::index::Quantizer;

/// What the new generation's PQ codes come from.
pub(super) enum CodesPlan {
    /// No PQ.
    None,
    /// The current codebooks; each live slot's code is copied.
    Copy,
    /// New codebooks; each live slot's raw vector is encoded.
    Encode(Arc<Quantizer>),
}

/// Live slots are rewritten in chunks of this many (the unit of progress).
pub(super) const REWRITE_CHUNK: usize = 4096;

impl Store {
    /// `progress(done, total)` counts chunks of `REWRITE_CHUNK` live slots.
    pub(super) fn rewrite_locked(
        &self,
        w: &mut Writer,
        drop_raw: bool,
        codes_plan: CodesPlan,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<()> {
        let old = self.view.read().generation.clone();
        let number = old.number + 1;
        let keep_raw = old.vectors.is_some() && !drop_raw;
        let codebooks = match &codes_plan {
            CodesPlan::None => None,
            CodesPlan::Copy => Some(old.pq.as_ref().ok_or_else(|| Error::new(ErrorKind::Internal, "copying codes of an untrained store"))?.quantizer.clone()),
            CodesPlan::Encode(c) => Some(c.clone()),
        };
        if matches!(codes_plan, CodesPlan::Encode(_)) && old.vectors.is_none() {
            return Err(Error::invalid("the store keeps no raw vectors to encode"));
        }

        // The new generation's empty files, and its PQ files; removed again
        // if anything fails before the commit.
        let pq_generation = w.committed.pq_generation + 1;
        let uncommitted = UncommittedFiles::new(&self.dir, Some(number), codebooks.as_ref().map(|_| pq_generation));
        Generation::create_files(&self.dir, number, self.dim, keep_raw)?;
        let mut flags = w.committed.store_flags;
        if !keep_raw {
            flags |= STORE_FLAG_RAW_DROPPED;
        }
        let empty = crate::storage::format::Superblock {
            generation: number,
            store_flags: flags,
            pq_generation: 0,
            slot_count: 0,
            ids_len: 0,
            tomb_count: 0,
            live_count: 0,
            ..w.committed
        };
        let (mut generation, files) = Generation::open(&self.dir, &empty, true)?;
        let mut files = files.expect("opened writable");
        files.pad_huge_pages(self.huge_pages);
        if self.huge_pages {
            generation.advise_huge_pages();
        }
        let mut pq_meta = None;
        if let Some(codebooks) = &codebooks {
            let code_size = codebooks.record_size();
            let (len, crc) = write_codebooks(&self.dir, pq_generation, self.dim, codebooks)?;
            let (codes, writer) = create_codes(&self.dir, pq_generation, self.dim, code_size)?;
            files.codes = Some(writer);
            pq_meta = Some((len, crc));
            generation.pq = Some(PqData {
                generation: pq_generation,
                quantizer: codebooks.clone(),
                codes,
                codebooks_file_len: crate::storage::format::FILE_HEADER_LEN + len,
            });
        }

        let live_slots: Vec<u64> = self.view.read().live.iter().collect();
        let n = live_slots.len() as u64;
        let record_len = vector_record_len(self.dim);
        let code_size = codebooks.as_ref().map_or(0, |c| c.record_size());
        if let Some(v) = files.vectors.as_mut() {
            v.reserve(n * record_len)?;
        }
        files.slots.reserve(n * SLOT_RECORD_LEN)?;
        let mut entries = EntryAppender::new(0, 0, 0);
        let (mut codes_crc, mut live_id_bytes) = (0u32, 0u64);
        let chunks = live_slots.len().div_ceil(REWRITE_CHUNK) as u64;
        // The kept vectors gathered and not yet written, from data offset
        // `raw_start`: each chunk's vectors are written up to the last huge
        // page they fill, and the rest waits for the next chunk's, so that
        // every huge page of the new file is written by one `pwrite` and
        // cached as one folio (as by put with `huge_pages`, without zeros).
        let mut raw: Vec<f32> = Vec::new();
        let mut raw_start = 0u64;
        let mut codes = Vec::new();
        for (c, chunk) in live_slots.chunks(REWRITE_CHUNK).enumerate() {
            let base = (c * REWRITE_CHUNK) as u64;
            if files.vectors.is_none() {
                raw.clear(); // gathered only to be encoded
            }
            let carried = raw.len();
            codes.clear();
            for (j, &old_slot) in chunk.iter().enumerate() {
                let new_slot = base + j as u64;
                let record = old.slot_record(old_slot)?;
                let id = old.id_for(old_slot, &record)?;
                let vector = if old.vectors.is_some() { Some(old.vector(old_slot, &record)?) } else { None };
                let vector_crc = match vector {
                    Some(v) => vector_checksum(new_slot, bytemuck::cast_slice(v)),
                    None => record.vector_crc,
                };
                // The chunk's vectors are gathered and written below; the
                // encoder reads them from the same buffer.
                if let Some(v) = vector.filter(|_| keep_raw || matches!(codes_plan, CodesPlan::Encode(_))) {
                    raw.extend_from_slice(v);
                }
                if let CodesPlan::Copy = codes_plan {
                    codes.extend_from_slice(old.code_record(old_slot)?);
                }
                entries.append(&mut files, new_slot, id, vector_crc, record.norm)?;
                live_id_bytes += id.len() as u64;
            }
            if let (CodesPlan::Encode(codebooks), Some(_)) = (&codes_plan, files.codes.as_ref()) {
                codes.resize(chunk.len() * code_size, 0);
                codebooks.encode(&self.pq_input(&raw[carried..]), &mut codes, self.threads);
            }
            if let Some(v) = files.vectors.as_mut() {
                // Offsets are multiples of 4 (huge-page boundaries are
                // multiples of the 4 KiB header), so cuts fall between floats.
                const F32: usize = std::mem::size_of::<f32>();
                let end = raw_start + (raw.len() * F32) as u64;
                let to = if c as u64 + 1 == chunks { end } else { huge_page_floor(end).max(raw_start) };
                if to > raw_start {
                    let out = v.range_writer(raw_start, to)?;
                    let len = (to - raw_start) as usize;
                    out.write_huge_pages(raw_start, &bytemuck::cast_slice(&raw)[..len])?;
                    raw.drain(..len / F32);
                    raw_start = to;
                }
            }
            if let Some(writer) = files.codes.as_mut() {
                writer.write_at(base * code_size as u64, &codes)?;
                codes_crc = crate::storage::checksum::crc32c_append(codes_crc, &codes);
            }
            progress(c as u64 + 1, chunks);
        }
        entries.flush(&mut files)?;
        if let Some(v) = files.vectors.as_mut() {
            v.publish(n * record_len);
        }
        files.slots.publish(n * SLOT_RECORD_LEN);
        files.ids.publish(entries.ids_end);
        if let Some(c) = files.codes.as_mut() {
            c.publish(n * code_size as u64);
        }
        for file in files.all_mut() {
            file.truncate(file.published())?;
        }
        fsutil::sync_dir(&self.dir)?;
        // The new files' data reaches the medium here rather than in the
        // commit's first step (which then finds nothing to sync), so that a
        // failed sync, too, leaves the new files unnamed and removed.
        crate::storage::mmap::sync_published(files.all_mut())?;

        let mut index = IdIndex::with_capacity(n as usize);
        let mut live = LiveSet::default();
        live.grow(n);
        for slot in 0..n {
            index.insert(generation.id(slot)?, slot as u32, &generation);
            live.set(slot);
        }

        // Commit: the writer switches to the new files (restored if the
        // commit fails), then readers do. A failed commit leaves the new
        // files: its superblock write may have reached the disk, and the
        // next open, which knows, removes whichever generation is unnamed.
        let lists = super::ivf::build_lists(&generation, &live)?;
        uncommitted.keep();
        let old_files = std::mem::replace(&mut w.files, files);
        let old_crcs = (w.slots_crc, w.ids_crc, w.tombs_crc, w.codes_crc);
        (w.slots_crc, w.ids_crc, w.tombs_crc, w.codes_crc) = (entries.slots_crc, entries.ids_crc, 0, codes_crc);
        let committed = self.commit_locked(w, true, |sb| {
            sb.generation = number;
            sb.store_flags = flags;
            (sb.pq_generation, sb.codebooks_len, sb.codebooks_crc) = match pq_meta {
                Some((len, crc)) => (pq_generation, len, crc),
                None => (0, 0, 0),
            };
        });
        if let Err(e) = committed {
            w.files = old_files;
            (w.slots_crc, w.ids_crc, w.tombs_crc, w.codes_crc) = old_crcs;
            return Err(e);
        }
        *self.view.write() = View { generation: Arc::new(generation), index, live, live_id_bytes, lists };
        {
            // A compaction ends the life of every earlier key; a training
            // (which the host may not even have asked for: automatic
            // training in a put) must not end it.
            let mut retired = self.retired.lock();
            if drop_raw {
                retired.push(Arc::new(old.id_tables()));
            } else {
                retired.clear();
            }
        }
        let old_pq = old.pq.as_ref().map(|p| p.generation);
        drop(old);
        drop(old_files);
        remove_generation_files(&self.dir, Some(number - 1), old_pq)
    }
}

/// Removes the files of a data generation (and of a PQ generation) that the
/// committed superblock no longer names.
pub(super) fn remove_generation_files(dir: &Path, data: Option<u64>, pq: Option<u64>) -> Result<()> {
    remove_files(dir, data, pq)?;
    fsutil::sync_dir(dir)
}

/// Removes the files of a data generation and of a PQ generation (those
/// that exist).
fn remove_files(dir: &Path, data: Option<u64>, pq: Option<u64>) -> Result<()> {
    let data_files = data.map(|g| [FileKind::Vectors, FileKind::Slots, FileKind::Ids, FileKind::Tombs].map(|k| k.file_name(g)));
    let pq_files = pq.map(|g| [FileKind::Codes, FileKind::Codebooks].map(|k| k.file_name(g)));
    for name in data_files.iter().flatten().chain(pq_files.iter().flatten()) {
        let path = dir.join(name);
        match fsutil::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("remove {}", path.display()), e)),
        }
    }
    Ok(())
}

/// The files of a new data generation and of a new PQ generation while
/// they are written, before a commit names them: dropped without `keep`
/// (an error, or a panic, on the way), it removes them, so that a failed
/// compaction or training gives its disk space back at once. Best effort
/// and without a directory sync: a file it leaves (its removal failed, or
/// a crash undid it) is unnamed, and the next open removes it.
pub(super) struct UncommittedFiles<'a> {
    dir: &'a Path,
    data: Option<u64>,
    pq: Option<u64>,
}

impl<'a> UncommittedFiles<'a> {
    pub(super) fn new(dir: &'a Path, data: Option<u64>, pq: Option<u64>) -> UncommittedFiles<'a> {
        UncommittedFiles { dir, data, pq }
    }

    /// The commit is about to name the files: they stay.
    pub(super) fn keep(mut self) {
        (self.data, self.pq) = (None, None);
    }
}

impl Drop for UncommittedFiles<'_> {
    fn drop(&mut self) {
        if self.data.is_some() || self.pq.is_some() {
            let _ = remove_files(self.dir, self.data, self.pq);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{advised_huge, thp_available, vm_flags_of, TempDir};
    use crate::{IdBuf, Options, Store};

    /// The mappings of the store's current vectors file: their `VmFlags`.
    fn vectors_flags(dir: &std::path::Path) -> Vec<String> {
        let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.to_string_lossy().contains("vectors.")).collect();
        files.sort();
        vm_flags_of(files.last().expect("a vectors file"))
    }

    /// With `huge_pages` the vectors file is mapped for huge pages (reads
    /// after an eviction come back in 2 MiB pages), after open and after a
    /// compaction's new generation, wherever the kernel has transparent
    /// huge pages; opened without it, it is not.
    #[test]
    fn huge_pages_advise_the_vectors_mappings() {
        let dir = TempDir::new("huge-advice");
        let path = dir.path().join("store");
        let dim = 64u32;
        let vectors: Vec<f32> = (0..1000 * dim as usize).map(|i| (i % 89) as f32).collect();
        let ids = IdBuf::new((0..1000).map(|i| format!("id-{i}")));
        {
            let store = Store::open(&path, &Options { huge_pages: true, ..Options::create(dim) }).unwrap();
            store.put_batch(&ids.batch().unwrap(), &vectors).unwrap();
            store.checkpoint().unwrap();
            let flags = vectors_flags(&path);
            assert!(!flags.is_empty() && flags.iter().all(|f| advised_huge(f) || !thp_available()), "after open: {flags:?}");
            store.delete_batch(&IdBuf::new((0..500).map(|i| format!("id-{i}"))).batch().unwrap()).unwrap();
            store.compact().unwrap();
            let flags = vectors_flags(&path);
            assert!(!flags.is_empty() && flags.iter().all(|f| advised_huge(f) || !thp_available()), "after compaction: {flags:?}");
            assert_eq!(store.get(b"id-777").unwrap(), vectors[777 * dim as usize..778 * dim as usize]);
            store.close().unwrap();
        }
        let store = Store::open(&path, &Options::default()).unwrap();
        let flags = vectors_flags(&path);
        assert!(!flags.is_empty() && flags.iter().all(|f| !advised_huge(f)), "without huge_pages: {flags:?}");
        drop(store);
    }
}
