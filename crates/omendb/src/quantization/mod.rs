//! Product Quantization (PQ): k-means codebooks, encoding, decoding and the
//! asymmetric-distance (ADC) scan.
//!
//! This module is pure computation: it knows nothing about the store, files or
//! IDs. The store samples vectors, calls [`Codebooks::train`], keeps the bytes
//! from [`Codebooks::to_bytes`], encodes vectors with [`Codebooks::encode`] and
//! searches with [`Codebooks::query_table`] + [`scan`] into a [`TopK`].
//!
//! Layout of the pieces:
//! - `kernels.rs`: the nearest-centroid and table kernels (safe, written so LLVM vectorizes them).
//! - `simd.rs`: the only `unsafe` in the module: runtime CPU feature dispatch
//!   (AVX2 builds of the safe kernels) and the intrinsics kernels: the AVX-512
//!   register-blocked nearest-centroid tile, the AVX2 gather ADC block and the
//!   4-bit fast scan (`pshufb` over transposed codes).
//! - `kmeans.rs`: seeded k-means (one sub-space, or the IVF coarse centroids), and the RNG.
//! - `gemm.rs`: nearest of many centroids as a matrix product (the IVF lists).
//! - `codebooks.rs`: training schedule, encode/decode, the byte format.
//! - `adc.rs`: query tables, the scans, the bounded top-k heap.
//! - `planar.rs`: codes in byte-planar blocks of 64 (an IVF list), read by the kernels untransposed.
//!
//! Scans are exact with respect to the float ADC table: the AVX2 gather path
//! sums in the same order as the scalar one, and the 4-bit fast scan only uses
//! its u8-quantized tables to skip codes that provably cannot enter the top-k.
//!
//! Determinism: training output depends only on `(config, sample, iterations, seed)`,
//! never on `threads` nor on which SIMD path the CPU takes. Every floating-point
//! sum is evaluated in the same order on every path (vectorization is across
//! centroids or codes, never inside one sum) and no fused multiply-add is used.

mod adc;
mod codebooks;
pub(crate) mod gemm;
pub(crate) mod kernels;
pub(crate) mod kmeans;
pub mod planar;
mod simd;
#[cfg(test)]
mod tests;

pub(crate) use adc::{total_order_bits, total_order_bits_f64};
pub use adc::{
    rank_gathered, scan, scan_distances, scan_many, scan_own_bitmap, scan_parallel, scan_planar, scan_planar_many, QueryTable, TopK, SCAN_GROUP,
};
pub(crate) use adc::SCAN_AHEAD;
pub use codebooks::{Codebooks, MAX_POINTS_PER_CENTROID};
pub(crate) use simd::max_abs as simd_max_abs;
pub(crate) use simd::list_table_l2;
/// The row-major reference of `scan_planar`'s estimated ranking (tests).
#[cfg(test)]
pub(crate) use adc::scan_estimated;

/// The distance an ADC table computes. Smaller is always closer.
///
/// Cosine is not a separate metric here: the store normalizes vectors and
/// queries and then uses `InnerProduct` (or `L2`) on unit vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PqMetric {
    /// Squared Euclidean distance.
    L2,
    /// Negative dot product.
    InnerProduct,
}

/// Shape of a product quantizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PqConfig {
    /// Vector dimension.
    pub dim: usize,
    /// Number of sub-spaces (sub-quantizers); must divide `dim`.
    pub m: usize,
    /// Bits per sub-space code: 8 (256 centroids) or 4 (16 centroids).
    pub bits: u32,
}

/// Largest dimension accepted (keeps size arithmetic far from overflow and
/// lets [`Codebooks::from_bytes`] refuse absurd headers before allocating).
pub const MAX_DIM: usize = 1 << 16;

impl PqConfig {
    /// Checks `dim >= 1` (and `<= MAX_DIM`), `m >= 1`, `m` divides `dim`,
    /// `bits` is 4 or 8, and 4-bit codes have an even `m` (two codes per byte).
    pub fn validate(&self) -> Result<(), String> {
        if self.dim == 0 || self.dim > MAX_DIM {
            return Err(format!("PQ: dim {} out of range 1..={}", self.dim, MAX_DIM));
        }
        if self.m == 0 {
            return Err("PQ: m must be at least 1".to_string());
        }
        if !self.dim.is_multiple_of(self.m) {
            return Err(format!("PQ: m {} does not divide dim {}", self.m, self.dim));
        }
        match self.bits {
            8 => {}
            4 => {
                if !self.m.is_multiple_of(2) {
                    return Err(format!("PQ: 4-bit codes need an even m, got {}", self.m));
                }
            }
            b => return Err(format!("PQ: bits must be 4 or 8, got {b}")),
        }
        Ok(())
    }

    /// Bytes per code: `m` for 8 bits, `m / 2` for 4 bits (low nibble = even sub-space).
    pub fn code_size(&self) -> usize {
        if self.bits == 4 {
            self.m / 2
        } else {
            self.m
        }
    }

    /// Centroids per sub-space: `2^bits`.
    pub fn ksub(&self) -> usize {
        1usize << self.bits
    }

    /// Dimensions per sub-space: `dim / m`.
    pub fn dsub(&self) -> usize {
        self.dim / self.m
    }
}

/// Training knobs. `Default` gives 25 iterations, seed 0, 1 thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrainOptions {
    /// k-means iterations (assignment + update) per sub-space. 0 keeps the seeded initial centroids.
    pub iterations: u32,
    /// Seed of the deterministic RNG (initial centroids, sub-sampling, empty-cluster splits).
    pub seed: u64,
    /// Worker threads including the caller; 0 is treated as 1. Does not change the result.
    pub threads: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions { iterations: 25, seed: 0, threads: 1 }
    }
}
