//! Runtime CPU-feature dispatch: the only `unsafe` code of the PQ module.
//!
//! The kernels themselves are safe Rust (`kernels.rs`); here they are compiled a
//! second time inside `#[target_feature(enable = "avx2")]` functions so LLVM may
//! use 256-bit registers. Calling such a function is `unsafe` because running
//! AVX2 instructions on a CPU without AVX2 is undefined behaviour.
//!
//! INVARIANT (every `unsafe` block below): the AVX2 function is only called
//! after `is_x86_feature_detected!("avx2")` returned true on this CPU.
//!
//! Results are bit-identical to the portable path: the kernels vectorize across
//! independent lanes, never reorder a sum, and `avx2` alone does not enable FMA
//! (and Rust never contracts `a * b + c` anyway).

use super::kernels;

#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx2() -> bool {
    // std caches the CPUID result in an atomic; this is a load and a test.
    std::arch::is_x86_feature_detected!("avx2")
}

/// Nearest centroid for `n` points; see [`kernels::nearest_many`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn nearest_many(
    ct: &[f32],
    half_norms: &[f32],
    k: usize,
    dsub: usize,
    x: &[f32],
    stride: usize,
    n: usize,
    out: &mut [u32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: AVX2 was detected on this CPU just above (module invariant).
            unsafe { nearest_many_avx2(ct, half_norms, k, dsub, x, stride, n, out) };
            return;
        }
    }
    // Two points at a time: 2 x 16 accumulators fit the 16 SSE registers.
    kernels::nearest_many::<2>(ct, half_norms, k, dsub, x, stride, n, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
fn nearest_many_avx2(
    ct: &[f32],
    half_norms: &[f32],
    k: usize,
    dsub: usize,
    x: &[f32],
    stride: usize,
    n: usize,
    out: &mut [u32],
) {
    // Four points at a time: 4 x 16 accumulators are 8 ymm registers.
    kernels::nearest_many::<4>(ct, half_norms, k, dsub, x, stride, n, out)
}

/// The portable path, for tests that compare it with the dispatched one.
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn nearest_many_portable(
    ct: &[f32],
    half_norms: &[f32],
    k: usize,
    dsub: usize,
    x: &[f32],
    stride: usize,
    n: usize,
    out: &mut [u32],
) {
    kernels::nearest_many::<2>(ct, half_norms, k, dsub, x, stride, n, out)
}

/// One sub-space's ADC table; see [`kernels::subspace_table`].
pub(crate) fn subspace_table(ct: &[f32], k: usize, dsub: usize, q: &[f32], l2: bool, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: AVX2 was detected on this CPU just above (module invariant).
            unsafe { subspace_table_avx2(ct, k, dsub, q, l2, out) };
            return;
        }
    }
    kernels::subspace_table(ct, k, dsub, q, l2, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn subspace_table_avx2(ct: &[f32], k: usize, dsub: usize, q: &[f32], l2: bool, out: &mut [f32]) {
    kernels::subspace_table(ct, k, dsub, q, l2, out)
}
