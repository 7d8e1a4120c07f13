//! One generation of data files: vectors, slots, ids and tombstones. A
//! compaction writes the next generation and switches to it atomically.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{
    vector_checksum, FileHeader, FileKind, SlotRecord, Superblock, SLOT_RECORD_LEN, TOMB_RECORD_LEN,
};
use crate::fsutil;
use crate::index::IdResolver;
use crate::mmap::{FileWriter, MappedFile};
use crate::options::MAX_ID_LEN;

/// The read side, shared by readers.
pub struct Generation {
    pub number: u64,
    pub dim: usize,
    /// Absent when the store keeps no raw vectors.
    pub vectors: Option<Arc<MappedFile>>,
    pub slots: Arc<MappedFile>,
    pub ids: Arc<MappedFile>,
    pub tombs: Arc<MappedFile>,
}

/// The write side, owned by the single writer.
pub struct GenerationWriter {
    pub vectors: Option<FileWriter>,
    pub slots: FileWriter,
    pub ids: FileWriter,
    pub tombs: FileWriter,
}

pub fn vector_record_len(dim: usize) -> u64 {
    dim as u64 * 4
}

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
    /// Creates the empty files of a generation (headers written and synced).
    pub fn create_files(dir: &Path, number: u64, dim: usize, with_vectors: bool) -> Result<()> {
        for (kind, record) in layout(dim, with_vectors) {
            fsutil::create_data_file(&dir.join(kind.file_name(number)), &header(kind, number, dim, record))?;
        }
        Ok(())
    }

    /// Opens the generation a superblock names, checking every header and
    /// that each file holds at least its committed length.
    pub fn open(dir: &Path, sb: &Superblock, writable: bool) -> Result<(Generation, Option<GenerationWriter>)> {
        let dim = sb.dim as usize;
        let committed = |kind: FileKind| match kind {
            FileKind::Vectors => sb.slot_count * vector_record_len(dim),
            FileKind::Slots => sb.slot_count * SLOT_RECORD_LEN,
            FileKind::Ids => sb.ids_len,
            FileKind::Tombs => sb.tomb_count * TOMB_RECORD_LEN,
            FileKind::Codes | FileKind::Codebooks => 0,
        };
        let mut maps = Vec::new();
        let mut writers = Vec::new();
        for (kind, record) in layout(dim, !sb.raw_dropped()) {
            let path = dir.join(kind.file_name(sb.generation));
            let file = fsutil::open_data_file(&path, writable)?;
            let expected = header(kind, sb.generation, dim, record);
            FileHeader::check(&crate::mmap::read_header(&file, &path)?, &expected, &path.display().to_string())?;
            let (map, writer) = MappedFile::open(&path, file, record, committed(kind), writable)?;
            maps.push(map);
            writers.push(writer);
        }
        let vectors = if sb.raw_dropped() { None } else { Some(maps.remove(0)) };
        let vectors_writer = if sb.raw_dropped() { None } else { writers.remove(0) };
        let mut maps = maps.into_iter();
        let generation = Generation {
            number: sb.generation,
            dim,
            vectors,
            slots: maps.next().expect("slots"),
            ids: maps.next().expect("ids"),
            tombs: maps.next().expect("tombs"),
        };
        let writer = if writable {
            let mut w = writers.into_iter().map(|w| w.expect("writable"));
            Some(GenerationWriter {
                vectors: vectors_writer,
                slots: w.next().expect("slots"),
                ids: w.next().expect("ids"),
                tombs: w.next().expect("tombs"),
            })
        } else {
            None
        };
        Ok((generation, writer))
    }

    pub fn files(&self) -> impl Iterator<Item = &Arc<MappedFile>> {
        self.vectors.iter().chain([&self.slots, &self.ids, &self.tombs])
    }

    pub fn disk_bytes(&self) -> u64 {
        self.files().map(|f| f.file_len()).sum()
    }

    /// Slots visible to readers.
    pub fn slot_count(&self) -> u64 {
        self.slots.published() / SLOT_RECORD_LEN
    }

    pub fn slot_record(&self, slot: u64) -> Result<SlotRecord> {
        let bytes = self.slots.read(slot * SLOT_RECORD_LEN, SLOT_RECORD_LEN)?;
        Ok(bytemuck::pod_read_unaligned(bytes))
    }

    /// The ID bytes a slot record points at, checked for a sane length.
    pub fn id_for(&self, record: &SlotRecord) -> Result<&[u8]> {
        let len = record.id_len();
        if len == 0 || len > MAX_ID_LEN {
            return Err(Error::corrupt(format!(
                "{}: slot record holds an id length of {len}",
                self.slots.path().display()
            )));
        }
        self.ids.read(record.id_offset(), len as u64)
    }

    pub fn id(&self, slot: u64) -> Result<&[u8]> {
        self.id_for(&self.slot_record(slot)?)
    }

    /// The raw vector of a slot, unverified (scans verify what they return).
    pub fn vector_unchecked(&self, slot: u64) -> Result<&[f32]> {
        let vectors = self.vectors.as_ref().ok_or_else(|| {
            Error::new(crate::ErrorKind::Internal, "raw vectors requested from a store that keeps none")
        })?;
        let len = vector_record_len(self.dim);
        Ok(bytemuck::cast_slice(vectors.read(slot * len, len)?))
    }

    /// The raw vector of a slot, verified against its stored checksum.
    pub fn vector(&self, slot: u64, record: &SlotRecord) -> Result<&[f32]> {
        let v = self.vector_unchecked(slot)?;
        self.verify_vector(slot, record, v)?;
        Ok(v)
    }

    /// Copies a slot's vector into `out`, then verifies the copy: copying
    /// first reads the mapped pages with memcpy's memory-level parallelism,
    /// and the checksum then runs on cache-hot data. On a mismatch `out` is
    /// zeroed, so damaged bytes never reach the host.
    pub fn copy_vector(&self, slot: u64, record: &SlotRecord, out: &mut [f32]) -> Result<()> {
        out.copy_from_slice(self.vector_unchecked(slot)?);
        self.verify_vector(slot, record, out).inspect_err(|_| out.fill(0.0))
    }

    fn verify_vector(&self, slot: u64, record: &SlotRecord, v: &[f32]) -> Result<()> {
        if vector_checksum(slot, bytemuck::cast_slice(v)) == record.vector_crc {
            return Ok(());
        }
        Err(Error::corrupt(format!(
            "{}: checksum mismatch in the vector of slot {slot} (id {})",
            self.vectors.as_ref().map(|f| f.path().display().to_string()).unwrap_or_default(),
            self.id_for(record).map(crate::batch::display_id).unwrap_or_else(|_| "unreadable".into()),
        )))
    }
}

impl IdResolver for Generation {
    fn id_of(&self, slot: u32) -> Option<&[u8]> {
        self.id(slot as u64).ok()
    }
}
