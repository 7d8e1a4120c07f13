//! The on-disk format: every magic number, offset and record layout in one
//! place. docs/format.md describes the same bytes for humans; keep them in step.
//!
//! All integers are little-endian. The crate refuses to build on big-endian
//! targets rather than write a second byte order.

use crate::error::{Error, Result};

#[cfg(not(target_endian = "little"))]
compile_error!("omendb's file format is little-endian and the crate maps records in place");

/// Page size assumed for atomicity (a 4 KiB aligned write either lands or not
/// as a whole on every medium we support) and used for alignment.
pub(crate) const PAGE: u64 = 4096;

/// Format version written by this build. Files with another version are refused.
pub(crate) const FORMAT_VERSION: u32 = 2;

pub(crate) const SUPERBLOCK_MAGIC: [u8; 8] = *b"OMENSUPB";
pub(crate) const FILE_MAGIC: [u8; 8] = *b"OMENDATA";

pub(crate) const SUPERBLOCK_FILE: &str = "superblock";
pub(crate) const SUPERBLOCK_TMP: &str = "superblock.tmp";
pub(crate) const LOCK_FILE: &str = "LOCK";

/// The superblock file holds two slots of one page each; checkpoint `seq`
/// is written to slot `seq % 2`, so the previous checkpoint is never touched.
pub(crate) const SUPERBLOCK_SLOTS: u64 = 2;
pub(crate) const SUPERBLOCK_FILE_LEN: u64 = PAGE * SUPERBLOCK_SLOTS;
/// Bytes of a superblock slot that carry data (the rest of the page is zero).
pub(crate) const SUPERBLOCK_LEN: usize = 256;

/// Store flag: the store was created with OMEN_OPEN_DROP_RAW.
pub(crate) const STORE_FLAG_DROP_RAW: u32 = 1;
/// Store flag: this generation keeps no raw vectors file.
pub(crate) const STORE_FLAG_RAW_DROPPED: u32 = 2;
/// Store flag: the store has an IVF index (trained with the PQ codebooks);
/// each code record ends with the vector's list number.
pub const STORE_FLAG_IVF: u32 = 4;
const KNOWN_STORE_FLAGS: u32 = STORE_FLAG_DROP_RAW | STORE_FLAG_RAW_DROPPED | STORE_FLAG_IVF;

/// Every data file starts with one page of header.
pub(crate) const FILE_HEADER_LEN: u64 = PAGE;
const FILE_HEADER_USED: usize = 64;

/// Bytes of one raw vector record (dim float32s).
pub fn vector_record_len(dim: usize) -> u64 {
    dim as u64 * 4
}

/// The largest data area a file can hold: Linux file offsets are signed
/// 64-bit (`off_t`), less the header page.
pub(crate) const MAX_DATA_LEN: u64 = i64::MAX as u64 - FILE_HEADER_LEN;

/// Bytes of `count` records of `record` bytes, when a data area can hold
/// them; a count read from disk that cannot is corrupt.
pub(crate) fn data_len(count: u64, record: u64) -> Result<u64> {
    count
        .checked_mul(record)
        .filter(|&len| len <= MAX_DATA_LEN)
        .ok_or_else(|| Error::corrupt(format!("{count} records of {record} bytes do not fit in a file")))
}

/// The kinds of data file in a store directory, each named `<stem>.<generation as 16 hex digits>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Raw float32 vectors, one fixed-size record per slot.
    Vectors = 1,
    /// One `SlotRecord` per slot.
    Slots = 2,
    /// ID bytes, appended; slot records point into it.
    Ids = 3,
    /// Tombstones: the slot numbers of deleted entries (u64 each).
    Tombs = 4,
    /// PQ codes, one fixed-size record per slot.
    Codes = 5,
    /// Trained PQ codebooks, written once.
    Codebooks = 6,
}

impl FileKind {
    pub(crate) const ALL: [FileKind; 6] = [
        FileKind::Vectors,
        FileKind::Slots,
        FileKind::Ids,
        FileKind::Tombs,
        FileKind::Codes,
        FileKind::Codebooks,
    ];

    pub fn stem(self) -> &'static str {
        match self {
            FileKind::Vectors => "vectors",
            FileKind::Slots => "slots",
            FileKind::Ids => "ids",
            FileKind::Tombs => "tombs",
            FileKind::Codes => "codes",
            FileKind::Codebooks => "codebooks",
        }
    }

    pub fn file_name(self, generation: u64) -> String {
        format!("{}.{generation:016x}", self.stem())
    }

    /// Parses a file name written by `file_name`.
    pub fn parse_file_name(name: &str) -> Option<(FileKind, u64)> {
        let (stem, gen) = name.split_once('.')?;
        let kind = FileKind::ALL.into_iter().find(|k| k.stem() == stem)?;
        if gen.len() != 16 {
            return None;
        }
        Some((kind, u64::from_str_radix(gen, 16).ok()?))
    }
}

/// One committed state of the store, as recorded in a superblock slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Superblock {
    pub store_flags: u32,
    /// Checkpoint sequence number; creation is 1.
    pub seq: u64,
    pub dim: u32,
    pub metric: u32,
    pub pq_m: u32,
    pub pq_bits: u32,
    pub pq_train_size: u32,
    /// IVF lists asked for at creation; 0 = chosen at training (with
    /// `STORE_FLAG_IVF`; without it, always 0).
    pub ivf_lists: u32,
    /// Generation of the vectors/slots/ids/tombs files (changes on compaction).
    pub generation: u64,
    /// Generation of the codes/codebooks files; 0 = not trained.
    pub pq_generation: u64,
    /// Committed slots (records in vectors, slots and codes).
    pub slot_count: u64,
    /// Committed bytes of the ids file's data area.
    pub ids_len: u64,
    /// Committed tombstones.
    pub tomb_count: u64,
    /// Live IDs after replaying slots and tombstones (a cross-check).
    pub live_count: u64,
    /// crc32c of the committed data area of each file.
    pub slots_crc: u32,
    pub ids_crc: u32,
    pub tombs_crc: u32,
    pub codes_crc: u32,
    /// Length and crc32c of the codebooks file's data area.
    pub codebooks_len: u64,
    pub codebooks_crc: u32,
}

/// Byte offsets inside a superblock slot. crc covers bytes 0..CRC.
mod sb {
    pub(crate) const MAGIC: usize = 0;
    pub(crate) const VERSION: usize = 8;
    pub(crate) const STORE_FLAGS: usize = 12;
    pub(crate) const SEQ: usize = 16;
    pub(crate) const DIM: usize = 24;
    pub(crate) const METRIC: usize = 28;
    pub(crate) const PQ_M: usize = 32;
    pub(crate) const PQ_BITS: usize = 36;
    pub(crate) const PQ_TRAIN_SIZE: usize = 40;
    pub(crate) const IVF_LISTS: usize = 44;
    pub(crate) const GENERATION: usize = 48;
    pub(crate) const PQ_GENERATION: usize = 56;
    pub(crate) const SLOT_COUNT: usize = 64;
    pub(crate) const IDS_LEN: usize = 72;
    pub(crate) const TOMB_COUNT: usize = 80;
    pub(crate) const LIVE_COUNT: usize = 88;
    pub(crate) const SLOTS_CRC: usize = 96;
    pub(crate) const IDS_CRC: usize = 100;
    pub(crate) const TOMBS_CRC: usize = 104;
    pub(crate) const CODES_CRC: usize = 108;
    pub(crate) const CODEBOOKS_LEN: usize = 112;
    pub(crate) const CODEBOOKS_CRC: usize = 120;
    // 124..252 reserved (zero)
    pub(crate) const CRC: usize = 252;
}

/// What reading one superblock slot found.
#[derive(Debug, PartialEq, Eq)]
pub enum SlotState {
    /// Never written (all zero).
    Empty,
    Valid(Superblock),
    /// Our magic, but a format version we do not know.
    UnknownVersion(u32),
    /// Torn or damaged: magic or checksum wrong.
    Damaged,
}

impl Superblock {
    pub fn encode(&self) -> [u8; SUPERBLOCK_LEN] {
        let mut b = [0u8; SUPERBLOCK_LEN];
        b[sb::MAGIC..sb::MAGIC + 8].copy_from_slice(&SUPERBLOCK_MAGIC);
        put_u32(&mut b, sb::VERSION, FORMAT_VERSION);
        put_u32(&mut b, sb::STORE_FLAGS, self.store_flags);
        put_u64(&mut b, sb::SEQ, self.seq);
        put_u32(&mut b, sb::DIM, self.dim);
        put_u32(&mut b, sb::METRIC, self.metric);
        put_u32(&mut b, sb::PQ_M, self.pq_m);
        put_u32(&mut b, sb::PQ_BITS, self.pq_bits);
        put_u32(&mut b, sb::PQ_TRAIN_SIZE, self.pq_train_size);
        put_u32(&mut b, sb::IVF_LISTS, self.ivf_lists);
        put_u64(&mut b, sb::GENERATION, self.generation);
        put_u64(&mut b, sb::PQ_GENERATION, self.pq_generation);
        put_u64(&mut b, sb::SLOT_COUNT, self.slot_count);
        put_u64(&mut b, sb::IDS_LEN, self.ids_len);
        put_u64(&mut b, sb::TOMB_COUNT, self.tomb_count);
        put_u64(&mut b, sb::LIVE_COUNT, self.live_count);
        put_u32(&mut b, sb::SLOTS_CRC, self.slots_crc);
        put_u32(&mut b, sb::IDS_CRC, self.ids_crc);
        put_u32(&mut b, sb::TOMBS_CRC, self.tombs_crc);
        put_u32(&mut b, sb::CODES_CRC, self.codes_crc);
        put_u64(&mut b, sb::CODEBOOKS_LEN, self.codebooks_len);
        put_u32(&mut b, sb::CODEBOOKS_CRC, self.codebooks_crc);
        let crc = crate::storage::checksum::crc32c(&b[..sb::CRC]);
        put_u32(&mut b, sb::CRC, crc);
        b
    }

    /// Decodes one slot (a whole page, or just its first SUPERBLOCK_LEN bytes).
    /// Structural sanity (dim, metric, flags) is checked
    /// here too, so a Valid superblock can be trusted for sizes.
    pub fn decode(b: &[u8]) -> SlotState {
        if b.len() < SUPERBLOCK_LEN {
            return SlotState::Damaged;
        }
        let (b, padding) = b.split_at(SUPERBLOCK_LEN);
        if b.iter().all(|&x| x == 0) && padding.iter().all(|&x| x == 0) {
            return SlotState::Empty;
        }
        // The rest of the page is written as zeros: anything else is damage.
        if padding.iter().any(|&x| x != 0) {
            return SlotState::Damaged;
        }
        if b[sb::MAGIC..sb::MAGIC + 8] != SUPERBLOCK_MAGIC {
            return SlotState::Damaged;
        }
        if crate::storage::checksum::crc32c(&b[..sb::CRC]) != get_u32(b, sb::CRC) {
            return SlotState::Damaged;
        }
        let version = get_u32(b, sb::VERSION);
        if version != FORMAT_VERSION {
            return SlotState::UnknownVersion(version);
        }
        let s = Superblock {
            store_flags: get_u32(b, sb::STORE_FLAGS),
            seq: get_u64(b, sb::SEQ),
            dim: get_u32(b, sb::DIM),
            metric: get_u32(b, sb::METRIC),
            pq_m: get_u32(b, sb::PQ_M),
            pq_bits: get_u32(b, sb::PQ_BITS),
            pq_train_size: get_u32(b, sb::PQ_TRAIN_SIZE),
            ivf_lists: get_u32(b, sb::IVF_LISTS),
            generation: get_u64(b, sb::GENERATION),
            pq_generation: get_u64(b, sb::PQ_GENERATION),
            slot_count: get_u64(b, sb::SLOT_COUNT),
            ids_len: get_u64(b, sb::IDS_LEN),
            tomb_count: get_u64(b, sb::TOMB_COUNT),
            live_count: get_u64(b, sb::LIVE_COUNT),
            slots_crc: get_u32(b, sb::SLOTS_CRC),
            ids_crc: get_u32(b, sb::IDS_CRC),
            tombs_crc: get_u32(b, sb::TOMBS_CRC),
            codes_crc: get_u32(b, sb::CODES_CRC),
            codebooks_len: get_u64(b, sb::CODEBOOKS_LEN),
            codebooks_crc: get_u32(b, sb::CODEBOOKS_CRC),
        };
        if s.sanity_check().is_err() {
            return SlotState::Damaged;
        }
        SlotState::Valid(s)
    }

    fn sanity_check(&self) -> Result<()> {
        let ok = self.seq >= 1
            && self.dim >= 1
            && self.dim <= crate::options::MAX_DIM
            && self.metric <= 2
            && self.store_flags & !KNOWN_STORE_FLAGS == 0
            && self.generation >= 1
            && self.live_count <= self.slot_count
            && self.slot_count <= u32::MAX as u64
            && FileKind::ALL.into_iter().all(|kind| self.committed_len(kind).is_ok())
            && (self.pq_m == 0
                || crate::options::validate_pq(
                    self.dim,
                    crate::options::PqSettings {
                        m: self.pq_m,
                        bits: self.pq_bits,
                        train_size: self.pq_train_size,
                    },
                )
                .is_ok())
            && (self.pq_generation == 0 || self.pq_m != 0)
            && (self.ivf() || self.ivf_lists == 0)
            && (!self.ivf() || self.pq_m != 0)
            && self.ivf_lists <= crate::index::MAX_LISTS;
        if ok {
            Ok(())
        } else {
            Err(Error::corrupt("superblock fields out of range"))
        }
    }

    /// Bytes of `kind`'s data area this checkpoint commits (checked: every
    /// product and the header page added to it fit in a file offset).
    pub(crate) fn committed_len(&self, kind: FileKind) -> Result<u64> {
        match kind {
            FileKind::Vectors => data_len(self.slot_count, vector_record_len(self.dim as usize)),
            FileKind::Slots => data_len(self.slot_count, SLOT_RECORD_LEN),
            FileKind::Ids => data_len(self.ids_len, 1),
            FileKind::Tombs => data_len(self.tomb_count, TOMB_RECORD_LEN),
            FileKind::Codes => data_len(self.slot_count, self.code_record_size() as u64),
            FileKind::Codebooks => data_len(self.codebooks_len, 1),
        }
    }

    pub fn drop_raw(&self) -> bool {
        self.store_flags & STORE_FLAG_DROP_RAW != 0
    }

    pub fn raw_dropped(&self) -> bool {
        self.store_flags & STORE_FLAG_RAW_DROPPED != 0
    }

    /// The store has an IVF index (once trained).
    pub fn ivf(&self) -> bool {
        self.store_flags & STORE_FLAG_IVF != 0
    }

    /// Bytes per codes-file record: the code, and with IVF its list.
    pub fn code_record_size(&self) -> usize {
        self.code_size() + if self.ivf() { crate::index::LIST_LEN } else { 0 }
    }

    pub fn trained(&self) -> bool {
        self.pq_generation != 0
    }

    /// Bytes per code record, 0 without PQ.
    pub fn code_size(&self) -> usize {
        match (self.pq_m, self.pq_bits) {
            (0, _) => 0,
            (m, 4) => (m / 2) as usize,
            (m, _) => m as usize,
        }
    }
}

/// The header page of a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    pub kind: FileKind,
    pub generation: u64,
    pub dim: u32,
    pub record_size: u32,
}

mod fh {
    pub(crate) const MAGIC: usize = 0;
    pub(crate) const VERSION: usize = 8;
    pub(crate) const KIND: usize = 12;
    pub(crate) const GENERATION: usize = 16;
    pub(crate) const DIM: usize = 24;
    pub(crate) const RECORD_SIZE: usize = 28;
    // 32..60 reserved (zero)
    pub(crate) const CRC: usize = 60;
}

impl FileHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; FILE_HEADER_LEN as usize];
        b[fh::MAGIC..fh::MAGIC + 8].copy_from_slice(&FILE_MAGIC);
        put_u32(&mut b, fh::VERSION, FORMAT_VERSION);
        put_u32(&mut b, fh::KIND, self.kind as u32);
        put_u64(&mut b, fh::GENERATION, self.generation);
        put_u32(&mut b, fh::DIM, self.dim);
        put_u32(&mut b, fh::RECORD_SIZE, self.record_size);
        let crc = crate::storage::checksum::crc32c(&b[..fh::CRC]);
        put_u32(&mut b, fh::CRC, crc);
        b
    }

    /// Checks a header page against what the superblock says the file must be.
    pub fn check(bytes: &[u8], expected: &FileHeader, file: &str) -> Result<()> {
        if bytes.len() < FILE_HEADER_USED || bytes[fh::MAGIC..fh::MAGIC + 8] != FILE_MAGIC {
            return Err(Error::corrupt(format!("{file}: not an omendb data file (bad magic)")));
        }
        let version = get_u32(bytes, fh::VERSION);
        if crate::storage::checksum::crc32c(&bytes[..fh::CRC]) != get_u32(bytes, fh::CRC) {
            return Err(Error::corrupt(format!("{file}: header checksum mismatch")));
        }
        if version != FORMAT_VERSION {
            return Err(Error::new(
                crate::error::ErrorKind::Version,
                format!("{file}: format version {version}, this build reads {FORMAT_VERSION}"),
            ));
        }
        let found = (
            get_u32(bytes, fh::KIND),
            get_u64(bytes, fh::GENERATION),
            get_u32(bytes, fh::DIM),
            get_u32(bytes, fh::RECORD_SIZE),
        );
        let want = (
            expected.kind as u32,
            expected.generation,
            expected.dim,
            expected.record_size,
        );
        if found != want {
            return Err(Error::corrupt(format!(
                "{file}: header (kind, generation, dim, record size) = {found:?}, superblock expects {want:?}"
            )));
        }
        Ok(())
    }
}

/// One slot: where its ID lives (and, inline, its first bytes), the
/// checksum of its vector, its norm.
///
/// An ID of up to `ID_HEAD_LEN` bytes lives in the head alone; a longer one
/// lives in the ids file and the head repeats its first bytes. A read then
/// confirms that a candidate slot holds the ID it looks for from the record
/// alone (for a long ID, the rest in the ids file after the head matched),
/// which saves a random `get` a dependent cache and TLB miss.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SlotRecord {
    /// Offset of the ID in the ids data area (low 48 bits; 0 for an ID that
    /// lives in the head) and its length (high 16 bits).
    pub id_ref: u64,
    /// `vector_checksum(slot, raw vector bytes)`.
    pub vector_crc: u32,
    /// Euclidean norm of the vector (used by the cosine metric and PQ decoding).
    pub norm: f32,
    /// The ID's first `min(len, ID_HEAD_LEN)` bytes, zero-padded.
    pub id_head: [u8; ID_HEAD_LEN],
}

pub(crate) const ID_HEAD_LEN: usize = 16;
pub(crate) const SLOT_RECORD_LEN: u64 = std::mem::size_of::<SlotRecord>() as u64;
pub(crate) const TOMB_RECORD_LEN: u64 = 8;
const ID_OFFSET_MASK: u64 = (1 << 48) - 1;

impl SlotRecord {
    /// Where `id_head` lies in the record (and so in the slots file).
    pub const HEAD_OFFSET: u64 = std::mem::offset_of!(SlotRecord, id_head) as u64;

    pub fn new(id_offset: u64, id: &[u8], vector_crc: u32, norm: f32) -> SlotRecord {
        debug_assert!(id_offset <= ID_OFFSET_MASK && id.len() <= u16::MAX as usize);
        let mut id_head = [0; ID_HEAD_LEN];
        let head = id.len().min(ID_HEAD_LEN);
        id_head[..head].copy_from_slice(&id[..head]);
        SlotRecord { id_ref: id_offset | ((id.len() as u64) << 48), vector_crc, norm, id_head }
    }

    pub fn id_offset(&self) -> u64 {
        self.id_ref & ID_OFFSET_MASK
    }

    pub fn id_len(&self) -> usize {
        (self.id_ref >> 48) as usize
    }

    /// Whether the record's ID is `id`: its length and head decide alone
    /// for a short ID; a longer one whose head matches is compared whole
    /// with `full()`, the ID bytes in the ids file.
    #[inline]
    pub fn holds_id<'a>(&self, id: &[u8], full: impl FnOnce() -> Option<&'a [u8]>) -> bool {
        self.agrees_with(id) && (id.len() <= ID_HEAD_LEN || full() == Some(id))
    }

    /// Whether the record is consistent with `id` as its ID: the same
    /// length, the head its first bytes then zeros, and no ids-file offset
    /// for an ID the head holds whole (checked for every record at open).
    #[inline]
    pub fn agrees_with(&self, id: &[u8]) -> bool {
        let head = id.len().min(ID_HEAD_LEN);
        self.id_len() == id.len()
            && self.id_head[..head] == id[..head]
            && self.id_head[head..].iter().all(|&b| b == 0)
            && (id.len() > ID_HEAD_LEN || self.id_offset() == 0)
    }
}

/// The checksum stored for a slot's vector. Seeding it with the slot number
/// catches a vector written to (or read from) the wrong place, not only bit flips.
pub fn vector_checksum(slot: u64, bytes: &[u8]) -> u32 {
    crate::storage::checksum::crc32c_append(crate::storage::checksum::crc32c(&slot.to_le_bytes()), bytes)
}

/// For fuzzing past the checksums (fuzz/src/targets.rs, re-sealing mode):
/// gives a superblock slot that starts with our magic the checksums a reader
/// checks, whatever its fields say. First each metadata checksum, from
/// `area(kind, generation, len)`: the crc32c of the first `len` data bytes
/// of that file, None to leave the field (the file is absent or shorter);
/// then the slot's own checksum.
pub fn reseal_superblock_slot(slot: &mut [u8], area: &mut dyn FnMut(FileKind, u64, u64) -> Option<u32>) {
    if slot.len() < SUPERBLOCK_LEN || slot[sb::MAGIC..sb::MAGIC + 8] != SUPERBLOCK_MAGIC {
        return;
    }
    let b = &mut slot[..SUPERBLOCK_LEN];
    let fields = Superblock {
        dim: get_u32(b, sb::DIM),
        pq_m: get_u32(b, sb::PQ_M),
        pq_bits: get_u32(b, sb::PQ_BITS),
        slot_count: get_u64(b, sb::SLOT_COUNT),
        ids_len: get_u64(b, sb::IDS_LEN),
        tomb_count: get_u64(b, sb::TOMB_COUNT),
        codebooks_len: get_u64(b, sb::CODEBOOKS_LEN),
        ..Superblock::default()
    };
    let (generation, pq_generation) = (get_u64(b, sb::GENERATION), get_u64(b, sb::PQ_GENERATION));
    for (kind, generation, at) in [
        (FileKind::Slots, generation, sb::SLOTS_CRC),
        (FileKind::Ids, generation, sb::IDS_CRC),
        (FileKind::Tombs, generation, sb::TOMBS_CRC),
        (FileKind::Codes, pq_generation, sb::CODES_CRC),
        (FileKind::Codebooks, pq_generation, sb::CODEBOOKS_CRC),
    ] {
        if let Some(crc) = fields.committed_len(kind).ok().and_then(|len| area(kind, generation, len)) {
            put_u32(b, at, crc);
        }
    }
    let crc = crate::storage::checksum::crc32c(&b[..sb::CRC]);
    put_u32(b, sb::CRC, crc);
}

/// For fuzzing: gives a data file's header page that starts with our magic
/// its checksum, whatever its fields say.
pub fn reseal_file_header(page: &mut [u8]) {
    if page.len() >= FILE_HEADER_USED && page[fh::MAGIC..fh::MAGIC + 8] == FILE_MAGIC {
        let crc = crate::storage::checksum::crc32c(&page[..fh::CRC]);
        put_u32(page, fh::CRC, crc);
    }
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Superblock {
        Superblock {
            seq: 7,
            dim: 768,
            metric: 2,
            generation: 3,
            slot_count: 10,
            live_count: 9,
            ids_len: 55,
            ids_crc: 0xdead_beef,
            ..Superblock::default()
        }
    }

    #[test]
    fn superblock_round_trip_and_damage() {
        let s = sample();
        let bytes = s.encode();
        assert_eq!(Superblock::decode(&bytes), SlotState::Valid(s));
        assert_eq!(Superblock::decode(&[0u8; SUPERBLOCK_LEN]), SlotState::Empty);
        for i in 0..SUPERBLOCK_LEN {
            let mut b = bytes;
            b[i] ^= 0x10;
            assert_eq!(Superblock::decode(&b), SlotState::Damaged, "flip at byte {i}");
        }
    }

    /// Counts whose byte lengths do not fit in a file make a slot Damaged,
    /// even with a right checksum; committed_len answers Corrupt for them.
    #[test]
    fn superblock_lengths_must_fit_a_file() {
        for edit in [
            (|s: &mut Superblock| s.tomb_count = 1 << 61) as fn(&mut Superblock),
            |s| s.tomb_count = u64::MAX,
            |s| s.ids_len = u64::MAX - 100,
            |s| s.ids_len = MAX_DATA_LEN + 1,
            |s| s.codebooks_len = u64::MAX,
        ] {
            let mut s = sample();
            edit(&mut s);
            assert_eq!(Superblock::decode(&s.encode()), SlotState::Damaged, "{s:?}");
            let worst = FileKind::ALL.into_iter().filter_map(|k| s.committed_len(k).err()).next();
            assert_eq!(worst.map(|e| e.kind()), Some(crate::ErrorKind::Corrupt), "{s:?}");
        }
        let mut s = sample();
        s.ids_len = MAX_DATA_LEN;
        assert_eq!(Superblock::decode(&s.encode()), SlotState::Valid(s), "the largest data area is allowed");
    }

    #[test]
    fn reseal_restores_the_checksums() {
        let mut slot = [0u8; PAGE as usize];
        slot[..SUPERBLOCK_LEN].copy_from_slice(&sample().encode());
        put_u64(&mut slot, sb::TOMB_COUNT, 2);
        assert_eq!(Superblock::decode(&slot), SlotState::Damaged);
        reseal_superblock_slot(&mut slot, &mut |kind, generation, len| {
            (kind == FileKind::Tombs && generation == 3 && len == 16).then_some(0xabcd)
        });
        let SlotState::Valid(s) = Superblock::decode(&slot) else { panic!("not resealed") };
        assert_eq!((s.tomb_count, s.tombs_crc, s.ids_crc), (2, 0xabcd, 0xdead_beef));
        let h = FileHeader { kind: FileKind::Ids, generation: 3, dim: 768, record_size: 1 };
        let mut page = h.encode();
        put_u32(&mut page, fh::GENERATION, 4);
        reseal_file_header(&mut page);
        FileHeader::check(&page, &FileHeader { generation: 4, ..h }, "f").unwrap();
    }

    #[test]
    fn superblock_unknown_version() {
        let mut b = sample().encode();
        put_u32(&mut b, sb::VERSION, 99);
        let crc = crate::storage::checksum::crc32c(&b[..sb::CRC]);
        put_u32(&mut b, sb::CRC, crc);
        assert_eq!(Superblock::decode(&b), SlotState::UnknownVersion(99));
    }

    #[test]
    fn file_header_checks() {
        let h = FileHeader { kind: FileKind::Slots, generation: 2, dim: 8, record_size: 16 };
        let bytes = h.encode();
        FileHeader::check(&bytes, &h, "f").unwrap();
        let other = FileHeader { generation: 3, ..h };
        assert_eq!(FileHeader::check(&bytes, &other, "f").unwrap_err().kind(), crate::ErrorKind::Corrupt);
        let mut bad = bytes.clone();
        bad[3] ^= 1;
        assert_eq!(FileHeader::check(&bad, &h, "f").unwrap_err().kind(), crate::ErrorKind::Corrupt);
    }

    #[test]
    fn file_names_round_trip() {
        for kind in FileKind::ALL {
            assert_eq!(FileKind::parse_file_name(&kind.file_name(0x1f)), Some((kind, 0x1f)));
        }
        assert_eq!(FileKind::parse_file_name("vectors.12"), None);
        assert_eq!(FileKind::parse_file_name("LOCK"), None);
    }

    #[test]
    fn slot_record_packs_id_ref_and_head() {
        let long = [7u8; 1024];
        let r = SlotRecord::new(123_456_789, &long, 5, 1.5);
        assert_eq!((r.id_offset(), r.id_len()), (123_456_789, 1024));
        assert_eq!(r.id_head, [7; ID_HEAD_LEN]);
        assert_eq!((SLOT_RECORD_LEN, SlotRecord::HEAD_OFFSET), (32, 16));
        let short = SlotRecord::new(0, b"doc-1", 0, 0.0);
        assert_eq!(&short.id_head[..6], b"doc-1\0");
        assert!(short.agrees_with(b"doc-1") && !short.agrees_with(b"doc-2") && !short.agrees_with(b"doc-10"));
        let mut padded = short;
        padded.id_head[10] = 1;
        assert!(!padded.agrees_with(b"doc-1"), "non-zero padding after the head is damage");
        let stray = SlotRecord::new(4096, b"doc-1", 0, 0.0);
        assert!(!stray.agrees_with(b"doc-1"), "a short ID has no ids-file offset");
        assert!(SlotRecord::new(4096, &long, 0, 0.0).agrees_with(&long));
    }

    #[test]
    fn holds_id_reads_the_ids_file_only_for_long_ids() {
        let never = || -> Option<&'static [u8]> { panic!("a short ID is decided by its head") };
        let short = SlotRecord::new(0, b"doc-1", 0, 0.0);
        assert!(short.holds_id(b"doc-1", never));
        assert!(!short.holds_id(b"doc-2", never));
        assert!(!short.holds_id(b"doc-1\0", never), "same head, other length");
        let id = b"a-rather-long-identifier-0001";
        let long = SlotRecord::new(0, id, 0, 0.0);
        assert!(long.holds_id(id, || Some(&id[..])));
        // Same length and head, another tail: decided by the full bytes.
        assert!(!long.holds_id(b"a-rather-long-identifier-0002", || Some(&id[..])));
        assert!(!long.holds_id(id, || None), "unreadable ID bytes never match");
        assert!(!long.holds_id(b"b-rather-long-identifier-0001", never));
    }
}
