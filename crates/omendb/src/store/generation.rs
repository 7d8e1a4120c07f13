//! One generation of data files: vectors, slots, ids and tombstones. A
//! compaction writes the next generation and switches to it atomically.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::storage::format::{
    vector_checksum, FileHeader, FileKind, SlotRecord, Superblock, FILE_HEADER_LEN, ID_HEAD_LEN, SLOT_RECORD_LEN, TOMB_RECORD_LEN,
};
use crate::storage::fsutil;
use crate::ids::table::IdResolver;
use crate::storage::mmap::{FileWriter, MappedFile};
use crate::options::{Metric, MAX_ID_LEN};
use crate::index::Quantizer;

/// Trained PQ state: the codebooks (and IVF centroids) and the codes file
/// of one PQ generation.
#[derive(Clone)]
pub struct PqData {
    pub generation: u64,
    pub quantizer: Arc<Quantizer>,
    /// One code record per slot (`Quantizer::record_size` bytes).
    pub codes: Arc<MappedFile>,
    /// Size of the codebooks file (for disk_bytes).
    pub codebooks_file_len: u64,
}

/// The read side, shared by readers.
pub struct Generation {
    pub number: u64,
    pub dim: usize,
    pub metric: Metric,
    /// Absent when the store keeps no raw vectors.
    pub vectors: Option<Arc<MappedFile>>,
    pub slots: Arc<MappedFile>,
    pub ids: Arc<MappedFile>,
    pub tombs: Arc<MappedFile>,
    pub pq: Option<PqData>,
}

/// The write side, owned by the single writer.
pub struct GenerationWriter {
    pub vectors: Option<FileWriter>,
    pub slots: FileWriter,
    pub ids: FileWriter,
    pub tombs: FileWriter,
    /// Present once trained.
    pub codes: Option<FileWriter>,
}

impl GenerationWriter {
    /// Whether appends to the vectors file pad their last huge page
    /// (`FileWriter::pad_huge_pages`); the other files stay small.
    pub fn pad_huge_pages(&mut self, on: bool) {
        if let Some(v) = self.vectors.as_mut() {
            v.pad_huge_pages(on);
        }
    }

    pub fn all_mut(&mut self) -> impl Iterator<Item = &mut FileWriter> {
        self.vectors.iter_mut().chain([&mut self.slots, &mut self.ids, &mut self.tombs]).chain(self.codes.iter_mut())
    }
}

pub use crate::storage::format::vector_record_len;

fn header(kind: FileKind, number: u64, dim: usize, record_size: u64) -> FileHeader {
    FileHeader { kind, generation: number, dim: dim as u32, record_size: record_size as u32 }
}

fn layout(dim: usize, with_vectors: bool) -> Vec<(FileKind, u64)> {
    let mut files = vec![
        (FileKind::Slots, SLOT_RECORD_LEN),
        (FileKind::Ids, 1),
        (FileKind::Tombs, TOMB_RECORD_LEN),
    ];
    if with_vectors {
        files.insert(0, (FileKind::Vectors, vector_record_len(dim)));
    }
    files
}

impl Generation {
    /// Maps the vectors file for 2 MiB pages, reads included
    /// (`MappedFile::advise_huge_pages`): the read side of
    /// `Options::huge_pages`. Stores without raw vectors have none.
    pub fn advise_huge_pages(&self) {
        if let Some(vectors) = &self.vectors {
            vectors.advise_huge_pages();
        }
    }

    /// Creates the empty files of a generation (headers written and synced).
    pub fn create_files(dir: &Path, number: u64, dim: usize, with_vectors: bool) -> Result<()> {
        for (kind, record) in layout(dim, with_vectors) {
            fsutil::create_data_file(&dir.join(kind.file_name(number)), &header(kind, number, dim, record))?;
        }
        Ok(())
    }

    /// Opens the generation a superblock names, checking every header and
    /// that each file holds at least its committed length; a damaged PQ
    /// generation is an error.
    pub fn open(dir: &Path, sb: &Superblock, writable: bool) -> Result<(Generation, Option<GenerationWriter>)> {
        let (generation, writer, damage) = Generation::open_tolerant(dir, sb, writable)?;
        match damage {
            Some(e) => Err(e),
            None => Ok((generation, writer)),
        }
    }

    /// Like `open`, but a PQ generation that fails its checks while the raw
    /// vectors are kept (so nothing is lost without it) is left out: the
    /// generation opens untrained, and the third value says what was wrong.
    pub fn open_tolerant(
        dir: &Path,
        sb: &Superblock,
        writable: bool,
    ) -> Result<(Generation, Option<GenerationWriter>, Option<Error>)> {
        let dim = sb.dim as usize;
        let mut maps = Vec::new();
        let mut writers = Vec::new();
        for (kind, record) in layout(dim, !sb.raw_dropped()) {
            let path = dir.join(kind.file_name(sb.generation));
            let file = fsutil::open_data_file(&path, writable)?;
            let expected = header(kind, sb.generation, dim, record);
            FileHeader::check(&crate::storage::mmap::read_header(&file, &path)?, &expected, &path.display().to_string())?;
            let (map, writer) = MappedFile::open(&path, file, record, sb.committed_len(kind)?, writable)?;
            maps.push(map);
            writers.push(writer);
        }
        let vectors = if sb.raw_dropped() { None } else { Some(maps.remove(0)) };
        let vectors_writer = if sb.raw_dropped() { None } else { writers.remove(0) };
        let mut maps = maps.into_iter();
        let (pq, codes_writer, damage) = if sb.trained() {
            // The superblock's own lengths first: absurd ones are damage to
            // the superblock (Corrupt), not to the index files.
            sb.committed_len(FileKind::Codes)?;
            sb.committed_len(FileKind::Codebooks)?;
            match open_pq(dir, sb, writable) {
                Ok((pq, writer)) => (Some(pq), writer, None),
                Err(e) => (None, None, Some(index_damage(sb, e)?)),
            }
        } else {
            (None, None, None)
        };
        let metric = Metric::from_code(sb.metric).ok_or_else(|| Error::corrupt("unknown metric in superblock"))?;
        let generation = Generation {
            number: sb.generation,
            dim,
            metric,
            vectors,
            slots: maps.next().expect("slots"),
            ids: maps.next().expect("ids"),
            tombs: maps.next().expect("tombs"),
            pq,
        };
        let writer = if writable {
            let mut w = writers.into_iter().map(|w| w.expect("writable"));
            Some(GenerationWriter {
                vectors: vectors_writer,
                slots: w.next().expect("slots"),
                ids: w.next().expect("ids"),
                tombs: w.next().expect("tombs"),
                codes: codes_writer,
            })
        } else {
            None
        };
        Ok((generation, writer, damage))
    }

    pub fn files(&self) -> impl Iterator<Item = &Arc<MappedFile>> {
        self.vectors.iter().chain([&self.slots, &self.ids, &self.tombs]).chain(self.pq.as_ref().map(|p| &p.codes))
    }

    pub fn disk_bytes(&self) -> u64 {
        let codebooks = self.pq.as_ref().map_or(0, |p| p.codebooks_file_len);
        self.files().map(|f| f.file_len()).sum::<u64>() + codebooks
    }

    /// The same data files with other PQ state (after training).
    pub fn with_pq(&self, pq: Option<PqData>) -> Generation {
        Generation {
            number: self.number,
            dim: self.dim,
            metric: self.metric,
            vectors: self.vectors.clone(),
            slots: self.slots.clone(),
            ids: self.ids.clone(),
            tombs: self.tombs.clone(),
            pq,
        }
    }

    /// The codes-file record of a slot: its PQ code, then (IVF) its list.
    pub fn code_record(&self, slot: u64) -> Result<&[u8]> {
        let pq = self.pq.as_ref().ok_or_else(|| Error::new(crate::ErrorKind::NotTrained, "the store has no PQ codes"))?;
        let size = pq.quantizer.record_size() as u64;
        pq.codes.read(slot * size, size)
    }

    /// The search key of `slot`: the slot, tagged in its upper 32 bits
    /// with this generation's number, so that a key of another generation
    /// (before a compaction renumbered the slots) is told apart instead of
    /// naming whatever now sits in its slot.
    pub fn key(&self, slot: u64) -> u64 {
        self.key_tag() << 32 | slot
    }

    /// The tag in the upper bits of this generation's keys.
    pub fn key_tag(&self) -> u64 {
        self.number & u64::from(u32::MAX)
    }

    /// The slot a key of this generation names, if it is one.
    pub fn slot_of_key(&self, key: u64) -> Option<u64> {
        let slot = key & u64::from(u32::MAX);
        (key >> 32 == self.key_tag() && slot < self.slot_count()).then_some(slot)
    }

    /// What `key_id` needs of this generation once it is replaced: its slot
    /// records and ID bytes, without its vectors and codes (whose disk
    /// space a compressing training frees).
    pub fn id_tables(&self) -> Generation {
        Generation { vectors: None, pq: None, ..self.with_pq(None) }
    }

    /// Slots visible to readers.
    pub fn slot_count(&self) -> u64 {
        self.slots.published() / SLOT_RECORD_LEN
    }

    pub fn slot_record(&self, slot: u64) -> Result<SlotRecord> {
        let bytes = self.slots.read(slot * SLOT_RECORD_LEN, SLOT_RECORD_LEN)?;
        Ok(bytemuck::pod_read_unaligned(bytes))
    }

    /// The ID bytes of `slot`, whose record is `record`, checked for a sane
    /// length: in the record's head for a short ID, else in the ids file.
    pub fn id_for(&self, slot: u64, record: &SlotRecord) -> Result<&[u8]> {
        let len = record.id_len();
        if len == 0 || len > MAX_ID_LEN {
            return Err(Error::corrupt(format!(
                "{}: slot record {slot} holds an id length of {len}",
                self.slots.path().display()
            )));
        }
        if len <= ID_HEAD_LEN {
            return self.slots.read(slot * SLOT_RECORD_LEN + SlotRecord::HEAD_OFFSET, len as u64);
        }
        self.ids.read(record.id_offset(), len as u64)
    }

    /// The ID of a slot, checked against its record's head (open reads
    /// every slot's ID this way, so a read may trust a head afterwards).
    pub fn id(&self, slot: u64) -> Result<&[u8]> {
        let record = self.slot_record(slot)?;
        let id = self.id_for(slot, &record)?;
        if !record.agrees_with(id) {
            return Err(Error::corrupt(format!(
                "{}: the record of slot {slot} disagrees with its ID (head, padding or offset)",
                self.slots.path().display()
            )));
        }
        Ok(id)
    }

    /// Starts loading a slot's vector into cache: its first lines only
    /// (and its page's TLB entry); the hardware streamer follows on. (All
    /// 48 lines of a 768-d vector at once into every level measured no
    /// faster: software prefetches wait for line-fill buffers, which the
    /// lookup's own misses then wait for too. For one read, all lines
    /// marked so are faster: `prefetch_vector_once`.)
    pub fn prefetch_vector(&self, slot: u64) {
        const LINES: u64 = 8;
        if let Some(vectors) = &self.vectors {
            let len = vector_record_len(self.dim);
            vectors.prefetch(slot * len, len.min(LINES * 64));
        }
    }

    /// Starts loading all of a slot's vector for one read soon (the re-rank's
    /// candidates: `prefetch_once`).
    pub fn prefetch_vector_once(&self, slot: u64) {
        if let Some(vectors) = &self.vectors {
            let len = vector_record_len(self.dim);
            vectors.prefetch_once(slot * len, len);
        }
    }

    /// Starts loading what a read of `slot` needs first: its slot record
    /// and the start of its vector (batched lookups, see `get_batch_into`).
    pub fn prefetch_slot(&self, slot: u64) {
        self.slots.prefetch(slot * SLOT_RECORD_LEN, SLOT_RECORD_LEN);
        self.prefetch_vector(slot);
    }

    /// Starts loading the ID bytes a slot record points at when a
    /// comparison will need them: IDs longer than the record's head (no
    /// checks: a bad record is refused when the ID is read).
    pub fn prefetch_id(&self, record: &SlotRecord) {
        if record.id_len() > ID_HEAD_LEN {
            self.ids.prefetch(record.id_offset(), (record.id_len() as u64).min(64));
        }
    }

    /// For a read of `id`'s vector: the record of `slot` if that slot holds
    /// `id`. A candidate slot is nearly always the match, so its vector
    /// starts loading first, overlapping the slot record's fetch (and, for
    /// an ID too long for the record's head, the ID bytes' after it)
    /// instead of following them.
    #[inline]
    pub fn record_if_id(&self, slot: u64, id: &[u8]) -> Option<SlotRecord> {
        self.prefetch_vector(slot);
        let record = self.slot_record(slot).ok()?;
        self.holds(slot, &record, id).then_some(record)
    }

    /// Whether `slot`, whose record is `record`, holds `id` (the ids file
    /// is read only for an ID longer than the record's head).
    #[inline]
    pub fn holds(&self, slot: u64, record: &SlotRecord, id: &[u8]) -> bool {
        record.holds_id(id, || self.id_for(slot, record).ok())
    }

    /// The raw vector of a slot, unverified (scans verify what they return).
    pub fn vector_unchecked(&self, slot: u64) -> Result<&[f32]> {
        let len = vector_record_len(self.dim);
        Ok(bytemuck::cast_slice(self.raw_vectors()?.read(slot * len, len)?))
    }

    fn raw_vectors(&self) -> Result<&MappedFile> {
        self.vectors.as_deref().ok_or_else(|| {
            Error::new(crate::ErrorKind::Internal, "raw vectors requested from a store that keeps none")
        })
    }

    /// The raw vectors of slots `first..first + count`, unverified, as one
    /// slice when they lie in one mapping chunk (else `None`).
    pub fn vectors_in(&self, first: u64, count: u64) -> Result<Option<&[f32]>> {
        let vectors = self.raw_vectors()?;
        let len = vector_record_len(self.dim);
        if !vectors.fits_in_chunk(first * len, count * len) {
            return Ok(None);
        }
        Ok(Some(bytemuck::cast_slice(vectors.read(first * len, count * len)?)))
    }

    /// The raw vector of a slot, verified against its stored checksum.
    pub fn vector(&self, slot: u64, record: &SlotRecord) -> Result<&[f32]> {
        let v = self.vector_unchecked(slot)?;
        self.verify_vector(slot, record, v)?;
        Ok(v)
    }

    /// The mapped vector of `slot`, verified against `vector_crc`: its slot
    /// record's checksum, kept elsewhere (the IVF lists).
    pub fn vector_with_crc(&self, slot: u64, vector_crc: u32) -> Result<&[f32]> {
        let v = self.vector_unchecked(slot)?;
        if vector_checksum(slot, bytemuck::cast_slice(v)) == vector_crc {
            return Ok(v);
        }
        Err(self.vector_mismatch(slot, self.slot_record(slot).ok().as_ref()))
    }

    /// Verifies a slot's mapped vector against its checksum, then copies it
    /// into `out`. (Checksumming the copy instead made a `get` 11% slower:
    /// the checksum's loads then wait on the copy's stores.) Published
    /// bytes are never written again, so what was verified is what is
    /// copied. On a mismatch `out` is zeroed, so damaged bytes never reach
    /// the host. A store that keeps no
    /// raw vectors gives the PQ reconstruction (its codes were verified
    /// when the store was opened).
    pub fn copy_vector(&self, slot: u64, record: &SlotRecord, out: &mut [f32]) -> Result<()> {
        if self.vectors.is_none() {
            let pq = self.pq.as_ref().ok_or_else(|| Error::new(crate::ErrorKind::Internal, "no vectors and no codes"))?;
            let code_record = self.code_record(slot)?;
            pq.quantizer.codebooks.decode(pq.quantizer.code_of(code_record), out);
            if let Some(ivf) = pq.quantizer.ivf.as_ref().filter(|ivf| ivf.residual) {
                // Residual IVF codes encode the vector minus its list's centroid.
                let list = pq.quantizer.list_of(code_record);
                if list as usize >= ivf.coarse.nlist() {
                    return Err(Error::corrupt(format!("{}: slot {slot} names IVF list {list}", pq.codes.path().display())));
                }
                let centroid = ivf.coarse.centroid(list);
                out.iter_mut().zip(centroid).for_each(|(x, &c)| *x = (*x + c).clamp(-f32::MAX, f32::MAX));
            }
            if self.metric == Metric::Cosine {
                // Codes of a cosine store encode the unit vector.
                out.iter_mut().for_each(|x| *x *= record.norm);
            }
            return Ok(());
        }
        let vector = self.vector_unchecked(slot)?;
        self.verify_vector(slot, record, vector).inspect_err(|_| out.fill(0.0))?;
        out.copy_from_slice(vector);
        Ok(())
    }

    fn verify_vector(&self, slot: u64, record: &SlotRecord, v: &[f32]) -> Result<()> {
        if vector_checksum(slot, bytemuck::cast_slice(v)) == record.vector_crc {
            return Ok(());
        }
        Err(self.vector_mismatch(slot, Some(record)))
    }

    /// The error for a vector that fails its checksum, naming its ID.
    fn vector_mismatch(&self, slot: u64, record: Option<&SlotRecord>) -> Error {
        let id = record.and_then(|record| self.id_for(slot, record).ok());
        Error::corrupt(format!(
            "{}: checksum mismatch in the vector of slot {slot} (id {})",
            self.vectors.as_ref().map(|f| f.path().display().to_string()).unwrap_or_default(),
            id.map(crate::ids::batch::display_id).unwrap_or_else(|| "unreadable".into()),
        ))
    }
}

fn codes_header(pq_generation: u64, dim: usize, code_size: usize) -> FileHeader {
    header(FileKind::Codes, pq_generation, dim, code_size as u64)
}

fn codebooks_header(pq_generation: u64, dim: usize) -> FileHeader {
    header(FileKind::Codebooks, pq_generation, dim, 1)
}

/// Opens (`committed` bytes of) the codes file of a PQ generation.
pub fn open_codes(
    dir: &Path,
    pq_generation: u64,
    dim: usize,
    code_size: usize,
    committed: u64,
    writable: bool,
) -> Result<(Arc<MappedFile>, Option<FileWriter>)> {
    let path = dir.join(FileKind::Codes.file_name(pq_generation));
    let file = fsutil::open_data_file(&path, writable)?;
    let expected = codes_header(pq_generation, dim, code_size);
    FileHeader::check(&crate::storage::mmap::read_header(&file, &path)?, &expected, &path.display().to_string())?;
    MappedFile::open(&path, file, code_size as u64, committed, writable)
}

/// Creates an empty codes file for a new PQ generation and opens it for writing.
pub fn create_codes(dir: &Path, pq_generation: u64, dim: usize, code_size: usize) -> Result<(Arc<MappedFile>, FileWriter)> {
    let path = dir.join(FileKind::Codes.file_name(pq_generation));
    fsutil::create_data_file(&path, &codes_header(pq_generation, dim, code_size))?;
    let (map, writer) = open_codes(dir, pq_generation, dim, code_size, 0, true)?;
    Ok((map, writer.expect("opened writable")))
}

/// Writes (and syncs) the codebooks file of a PQ generation; returns the
/// length and crc32c of its data area, for the superblock. The bytes must
/// first pass the reader's check ([`check_codebooks`]): codebooks that an
/// open would reject are never written, let alone committed.
pub fn write_codebooks(dir: &Path, pq_generation: u64, dim: usize, quantizer: &Quantizer) -> Result<(u64, u32)> {
    let path = dir.join(FileKind::Codebooks.file_name(pq_generation));
    let bytes = quantizer.to_bytes();
    let c = quantizer.codebooks.config();
    check_codebooks(&bytes, dim, c.m, c.bits, quantizer.ivf.is_some()).map_err(|e| {
        Error::new(crate::ErrorKind::Internal, format!("PQ codebooks not written, a reader would reject them: {e}"))
    })?;
    let file = fsutil::create_data_file(&path, &codebooks_header(pq_generation, dim))?;
    fsutil::write_at(&file, &path, &bytes, FILE_HEADER_LEN).map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    fsutil::sync_data(&file, &path)?;
    Ok((bytes.len() as u64, crate::storage::checksum::crc32c(&bytes)))
}

/// Opens the PQ generation a (trained) superblock names: its codebooks,
/// and its codes file with the committed records' checksum verified.
fn open_pq(dir: &Path, sb: &Superblock, writable: bool) -> Result<(PqData, Option<FileWriter>)> {
    let quantizer = read_codebooks(dir, sb)?;
    let committed = sb.committed_len(FileKind::Codes)?;
    let (codes, writer) = open_codes(dir, sb.pq_generation, sb.dim as usize, sb.code_record_size(), committed, writable)?;
    if codes.crc32c(0, committed)? != sb.codes_crc {
        return Err(Error::corrupt(format!("{}: checksum mismatch in committed data", codes.path().display())));
    }
    // committed_len bounds the data area so that the header page fits beside it.
    let codebooks_file_len = FILE_HEADER_LEN + sb.committed_len(FileKind::Codebooks)?;
    Ok((PqData { generation: sb.pq_generation, quantizer: Arc::new(quantizer), codes, codebooks_file_len }, writer))
}

/// What becomes of `error`, found in the PQ generation `sb` names: in a
/// store that keeps its raw vectors the index is derived data, so damage
/// (`Corrupt`) is reported as the index's and the store opens without it
/// (`Ok`: the description); an I/O error stays an error (it may pass, and
/// must not cost a rebuild), and in a store whose raw vectors were dropped
/// the codes are the vectors, so damage is the store's (`Err`).
pub fn index_damage(sb: &Superblock, error: Error) -> Result<Error> {
    if error.kind() != crate::ErrorKind::Corrupt {
        return Err(error);
    }
    if sb.raw_dropped() {
        return Err(error.context(format!(
            "PQ generation {} of a store that keeps no raw vectors (DROP_RAW): its codes are the only copy of the vectors, \
             so it cannot be rebuilt",
            sb.pq_generation
        )));
    }
    Ok(error.context(format!(
        "the search index (PQ generation {}) is damaged; the raw vectors are intact, searches are exact until \
         rebuild_index rebuilds it",
        sb.pq_generation
    )))
}

/// Reads and checks the codebooks (and IVF centroids) a superblock names.
/// Bytes past the committed length are a calibration appended and not (or
/// not yet) committed (`Store::calibrate`): not read.
fn read_codebooks(dir: &Path, sb: &Superblock) -> Result<Quantizer> {
    let path = dir.join(FileKind::Codebooks.file_name(sb.pq_generation));
    let name = path.display().to_string();
    // committed_len bounds the data area so that the header page fits beside it.
    let want = FILE_HEADER_LEN + sb.committed_len(FileKind::Codebooks)?;
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .and_then(|file| std::io::Read::read_to_end(&mut std::io::Read::take(file, want), &mut bytes))
        .map_err(|e| Error::io_in_store(format!("read {name}"), e))?;
    if (bytes.len() as u64) < want {
        return Err(Error::corrupt(format!("{name}: {} bytes, the checkpoint recorded {want}", bytes.len())));
    }
    FileHeader::check(&bytes[..FILE_HEADER_LEN as usize], &codebooks_header(sb.pq_generation, sb.dim as usize), &name)?;
    let data = &bytes[FILE_HEADER_LEN as usize..];
    if crate::storage::checksum::crc32c(data) != sb.codebooks_crc {
        return Err(Error::corrupt(format!("{name}: checksum mismatch")));
    }
    check_codebooks(data, sb.dim as usize, sb.pq_m as usize, sb.pq_bits, sb.ivf()).map_err(|e| Error::corrupt(format!("{name}: {e}")))
}

/// The check a codebooks file's data area must pass for a store of
/// dimension `dim` with `m` sub-spaces of `bits`-bit codes (and an IVF
/// index or not): the reader's on open, and the writer's before it writes
/// (so the two cannot drift).
pub fn check_codebooks(data: &[u8], dim: usize, m: usize, bits: u32, ivf: bool) -> std::result::Result<Quantizer, String> {
    let quantizer = Quantizer::from_bytes(data, ivf)?;
    let c = quantizer.codebooks.config();
    if (c.dim, c.m, c.bits) != (dim, m, bits) {
        return Err("codebook shape does not match the store".to_string());
    }
    Ok(quantizer)
}

impl IdResolver for Generation {
    fn id_of(&self, slot: u32) -> Option<&[u8]> {
        self.id(slot as u64).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantization::{Codebooks, PqConfig};

    /// The writer refuses codebooks its reader would reject, before it
    /// creates their file.
    #[test]
    fn unreadable_codebooks_are_not_written() {
        let dir = crate::testutil::TempDir::new("cbgate");
        let config = PqConfig { dim: 4, m: 2, bits: 4 };
        let codebooks = Codebooks::from_centroids(&config, vec![0.5; 2 * 16 * 2]).unwrap();
        let mut quantizer = Quantizer { codebooks, ivf: None };
        assert!(write_codebooks(dir.path(), 1, 4, &quantizer).is_ok());
        quantizer.codebooks.centroids[7] = f32::INFINITY;
        let err = write_codebooks(dir.path(), 2, 4, &quantizer).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Internal, "{err}");
        assert!(err.to_string().contains("non-finite centroid"), "{err}");
        assert!(!dir.path().join(FileKind::Codebooks.file_name(2)).exists());
    }
}
