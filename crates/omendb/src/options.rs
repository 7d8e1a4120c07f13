//! Options for opening a store: the safe-Rust twin of `omen_options`.

use crate::error::{Error, Result};

/// Largest dimension a store accepts: bounds every per-vector allocation.
pub const MAX_DIM: u32 = 65_536;
/// IDs are 1 to 1024 bytes.
pub const MAX_ID_LEN: usize = 1024;

/// How distances are measured; fixed when the store is created. Smaller is
/// always closer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Squared Euclidean distance.
    L2,
    /// Negative inner product (smaller is closer).
    InnerProduct,
    /// 1 - cosine similarity.
    Cosine,
}

impl Metric {
    /// The metric of a C ABI / on-disk code (0 L2, 1 inner product, 2 cosine).
    pub fn from_code(code: u32) -> Option<Metric> {
        match code {
            0 => Some(Metric::L2),
            1 => Some(Metric::InnerProduct),
            2 => Some(Metric::Cosine),
            _ => None,
        }
    }

    /// The C ABI / on-disk code of the metric.
    pub fn code(self) -> u32 {
        match self {
            Metric::L2 => 0,
            Metric::InnerProduct => 1,
            Metric::Cosine => 2,
        }
    }
}

/// Product Quantization settings, fixed when the store is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PqSettings {
    /// Sub-quantizers; must divide `dim`.
    pub m: u32,
    /// Bits per sub-quantizer code: 8 or 4.
    pub bits: u32,
    /// Number of stored vectors that triggers automatic training; 0 = only on request.
    pub train_size: u32,
}

/// How to open (or create) a store: `Options::create(dim)` or
/// `Options::default()`, then change fields with struct-update syntax:
/// `Options { threads: 1, ..Options::create(16) }`.
///
/// Not `#[non_exhaustive]`, although fields will be added: that attribute
/// would forbid the struct-update syntax above outside this crate, which is
/// how callers build options. New fields get defaults in `Default`, so such
/// callers keep compiling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Create the store if the directory holds none.
    pub create: bool,
    /// Open for reading only: no writer lock, every change is refused.
    pub read_only: bool,
    /// Every put/delete batch is a checkpoint.
    pub sync_writes: bool,
    /// Keep only PQ codes once trained (fixed at creation).
    pub drop_raw: bool,
    /// Each put pads the 2 MiB page its vectors end in with zeros (the next
    /// put writes over them), so the kernel caches the vectors file in 2 MiB
    /// pages that readers map with one TLB entry each: random gets and the
    /// re-rank of a search are faster, puts of small batches slower (a
    /// batch of 1,000 768-d vectors, 3 MB, writes 1 MiB of zeros on
    /// average). The vectors file's mappings are advised for huge pages
    /// too (`MADV_HUGEPAGE`), so that what is read back after an eviction,
    /// or by a process that opens the store later, comes in 2 MiB pages:
    /// each fault then reads 2 MiB, which suits a store that memory holds,
    /// not one read at random from a disk much larger than memory. Per
    /// open, not stored.
    pub huge_pages: bool,
    /// Required to create; 0 = take it from the existing store.
    pub dim: u32,
    /// The distance of a new store (an existing store keeps its own).
    pub metric: Metric,
    /// Product Quantization of a new store; `None` = exact search only.
    pub pq: Option<PqSettings>,
    /// An IVF index, trained with the PQ codebooks (creation only; needs
    /// `pq`): `Some(0)` chooses the number of lists at training (about
    /// sqrt(n), at most n / 64), `Some(n)` asks for `n` (no more than
    /// the vectors stored at training). Searches then scan only the lists nearest to
    /// the query (see `SearchParams::target_recall`).
    pub ivf_lists: Option<u32>,
    /// Worker threads for training, encoding, batch search and large put
    /// batches (512 KiB of rows or more per thread); 0 = all cores.
    pub threads: u32,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            create: false,
            read_only: false,
            sync_writes: false,
            drop_raw: false,
            huge_pages: false,
            dim: 0,
            metric: Metric::L2,
            pq: None,
            ivf_lists: None,
            threads: 0,
        }
    }
}

impl Options {
    /// Options for creating a store of `dim` dimensions (or opening it).
    pub fn create(dim: u32) -> Options {
        Options { create: true, dim, ..Options::default() }
    }

    /// Checks what creation needs: a dimension, and a PQ shape that fits it.
    pub(crate) fn validate_for_create(&self) -> Result<()> {
        if self.dim == 0 || self.dim > MAX_DIM {
            return Err(Error::invalid(format!(
                "dim must be 1..={MAX_DIM} to create a store (got {})",
                self.dim
            )));
        }
        if self.read_only {
            return Err(Error::invalid("cannot create a store read-only"));
        }
        if let Some(pq) = self.pq {
            validate_pq(self.dim, pq)?;
        } else if self.drop_raw {
            return Err(Error::invalid("OMEN_OPEN_DROP_RAW needs PQ (pq_m > 0)"));
        } else if self.ivf_lists.is_some() {
            return Err(Error::invalid("an IVF index needs PQ (pq_m > 0): its lists hold PQ codes"));
        }
        if self.ivf_lists.is_some_and(|n| n > crate::index::MAX_LISTS) {
            return Err(Error::invalid(format!("ivf_lists must be at most {} (got {:?})", crate::index::MAX_LISTS, self.ivf_lists)));
        }
        Ok(())
    }

    /// Number of worker threads to use for parallel work.
    pub(crate) fn worker_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n as usize,
        }
    }
}

pub(crate) fn validate_pq(dim: u32, pq: PqSettings) -> Result<()> {
    if pq.bits != 8 && pq.bits != 4 {
        return Err(Error::invalid(format!("pq_bits must be 8 or 4 (got {})", pq.bits)));
    }
    if pq.m == 0 || !dim.is_multiple_of(pq.m) {
        return Err(Error::invalid(format!("pq_m ({}) must divide dim ({dim})", pq.m)));
    }
    if pq.bits == 4 && !pq.m.is_multiple_of(2) {
        return Err(Error::invalid(format!("4-bit PQ needs an even pq_m (got {})", pq.m)));
    }
    Ok(())
}
