//! The ANN index: an inverted file (IVF) over the store's PQ codes.
//!
//! Training (beside the PQ codebooks) clusters a sample of the vectors
//! into `nlist` coarse centroids ([`CoarseQuantizer`]); every vector is
//! assigned to the list of its nearest centroid when it is encoded, and its
//! list number is stored next to its code (the codes file's record). The
//! lists themselves ([`InvertedLists`]: each list's codes contiguous, with
//! their slots) are derived data, built in memory when the store opens and
//! kept current by every put, delete and compaction, so nothing about them
//! can be torn on disk. A search scans the codes of the `nprobe` lists
//! nearest to the query, then re-ranks the best candidates exactly.
//!
//! [`Calibration`] maps a recall target to (`nprobe`, re-rank depth), as
//! measured at training on held-out samples of the store's own vectors.

mod bytescreen;
mod calibration;
mod coarse;
mod groups;
mod lists;
mod quantizer;
mod screen;

pub use calibration::{Calibration, CalibrationPoint};
pub use coarse::CoarseQuantizer;
pub use lists::{InvertedLists, ListsBuilder};
pub use quantizer::{Ivf, ProbeTables, Quantizer, LIST_LEN};

/// The number of lists chosen when the store does not say: about sqrt(n),
/// at least 1, and never so many that a list would average fewer than 32
/// vectors. Each probed list costs a table beside its codes, so fewer,
/// longer lists win: in two full make ann runs (100,000 x 128, one thread,
/// recall@10 >= 0.95) OmenDB answered 0.31x faiss IVF-PQ's queries/s
/// (same run) with 1,265 lists (4 sqrt(n), faiss's usual advice) and 0.68x
/// with 316.
pub fn auto_lists(vectors: u64) -> u32 {
    let by_sqrt = (vectors as f64).sqrt().round() as u64;
    by_sqrt.min(vectors / 32).clamp(1, MAX_LISTS as u64) as u32
}

/// The most lists an index may have.
pub const MAX_LISTS: u32 = 1 << 20;
