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
/// at least 1, and never so many that a list would average fewer than
/// `LIST_BLOCK_CODES` vectors. Each probed list costs a table beside its
/// codes, so fewer, longer lists win: in two full make ann runs (100,000 x
/// 128, one thread, recall@10 >= 0.95) OmenDB answered 0.31x faiss
/// IVF-PQ's queries/s (same run) with 1,265 lists (4 sqrt(n), faiss's
/// usual advice) and 0.68x with 316. The floor binds below 4,096 vectors.
pub fn auto_lists(vectors: u64) -> u32 {
    let by_sqrt = (vectors as f64).sqrt().round() as u64;
    by_sqrt.min(vectors / LIST_BLOCK_CODES).clamp(1, MAX_LISTS as u64) as u32
}

/// The fewest vectors a default list averages: one block of the fast-scan
/// kernel (64 codes), which a shorter list pads, scanning the padding too.
/// With 32 (the floor before), 826 and 900 vectors (bgem3_1024, cohere768)
/// made 25 and 28 lists of one half-empty block each; with 64 (12 and 14
/// lists) the fastest setting reaching recall@10 0.95 / 0.99 answered
/// 1.08x / 1.13x the queries/s on bgem3_1024, 1.11x / 1.02x on cohere768
/// by L2 and 1.18x / 1.30x by inner product (one thread; the
/// `ivf_lists` benchmark, docs/benchmarks.md). 128 (6 and 7 lists) lost
/// on cohere768; 10,000 vectors (siftsmall: 100 lists, 78 at 128)
/// measured the same within the noise.
const LIST_BLOCK_CODES: u64 = crate::quantization::planar::BLOCK as u64;

/// The most lists an index may have.
pub const MAX_LISTS: u32 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_lists_are_about_sqrt_n_and_average_a_kernel_block() {
        // sqrt(n) from 4,096 vectors on; below, n / 64 (a list averages
        // one 64-code block); at least one list.
        for (vectors, lists) in [(0, 1), (63, 1), (64, 1), (128, 2), (826, 12), (900, 14), (4_000, 62), (4_096, 64), (10_000, 100), (1_000_000, 1_000)] {
            assert_eq!(auto_lists(vectors), lists, "{vectors} vectors");
        }
        assert_eq!(LIST_BLOCK_CODES, 64);
        assert_eq!(auto_lists(u64::MAX), MAX_LISTS, "capped");
    }
}
