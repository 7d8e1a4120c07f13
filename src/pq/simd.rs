//! Runtime CPU-feature dispatch: the only `unsafe` code of the PQ module.
//!
//! The kernels themselves are safe Rust (`kernels.rs`); here they are compiled a
//! second time inside `#[target_feature(enable = "avx2")]` functions so LLVM may
//! use 256-bit registers. Calling such a function is `unsafe` because running
//! AVX2 instructions on a CPU without AVX2 is undefined behaviour. (They are
//! `unsafe fn` rather than safe `#[target_feature]` fns: the crate's MSRV,
//! 1.80, predates target_feature 1.1.) The ADC block kernel `block8_avx2` also
//! uses intrinsics directly (gathers), with its bounds invariants stated on it.
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
unsafe fn nearest_many_avx2(
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
unsafe fn subspace_table_avx2(ct: &[f32], k: usize, dsub: usize, q: &[f32], l2: bool, out: &mut [f32]) {
    kernels::subspace_table(ct, k, dsub, q, l2, out)
}

/// ADC distances of 8 consecutive codes (`codes[..8 * cs]`) with the
/// per-code summation order of `adc::code_distance` (bit-identical results).
/// `lut` is `cs x 256`. Uses AVX2 gathers when available and `cs % 8 == 0`.
pub(crate) fn block8_distances(lut: &[f32], codes: &[u8], cs: usize, out: &mut [f32; 8]) {
    assert!(cs > 0 && codes.len() >= 8 * cs && lut.len() >= cs * 256);
    #[cfg(target_arch = "x86_64")]
    {
        if cs % 8 == 0 && 8 * cs <= i32::MAX as usize && has_avx2() {
            // SAFETY: AVX2 was detected just above (module invariant); the
            // lengths asserted above are the ones `block8_avx2` requires.
            unsafe { block8_avx2(lut, codes, cs, out) };
            return;
        }
    }
    for (o, code) in out.iter_mut().zip(codes.chunks_exact(cs)) {
        *o = super::adc::code_distance(lut, code);
    }
}

/// Requires: AVX2 on this CPU, `cs % 8 == 0`, `codes.len() >= 8 * cs` (so
/// every 4-byte code gather at `g * cs + b`, `b + 4 <= cs`, `g < 8`, is in
/// bounds), `lut.len() >= cs * 256` (every table gather index is
/// `b * 256 + byte < cs * 256`), and `8 * cs` fits an `i32` offset.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn block8_avx2(lut: &[f32], codes: &[u8], cs: usize, out: &mut [f32; 8]) {
    use std::arch::x86_64::*;
    let cs32 = cs as i32;
    let rows = _mm256_setr_epi32(0, cs32, 2 * cs32, 3 * cs32, 4 * cs32, 5 * cs32, 6 * cs32, 7 * cs32);
    let byte_mask = _mm256_set1_epi32(0xFF);
    let cp = codes.as_ptr() as *const i32;
    let lp = lut.as_ptr();
    // Table entries for byte `i` (0..4) of the gathered words, code byte index `b`.
    // (A macro, not a closure, so it is compiled with AVX2 enabled.)
    macro_rules! entry {
        ($words:expr, $i:expr, $b:expr) => {{
            let byte = _mm256_and_si256(_mm256_srlv_epi32($words, _mm256_set1_epi32(8 * $i)), byte_mask);
            let idx = _mm256_add_epi32(byte, _mm256_set1_epi32(($b * 256) as i32));
            // SAFETY: idx < cs * 256 <= lut.len() (byte < 256, b < cs).
            _mm256_i32gather_ps::<4>(lp, idx)
        }};
    }
    let mut sum = _mm256_setzero_ps();
    let mut b = 0;
    while b < cs {
        // SAFETY: offsets g * cs + b (+ 4) with b + 8 <= cs stay inside codes[..8 * cs].
        let lo = _mm256_i32gather_epi32::<1>(cp.byte_add(b), rows);
        let hi = _mm256_i32gather_epi32::<1>(cp.byte_add(b + 4), rows);
        let (v0, v1, v2, v3) = (entry!(lo, 0, b), entry!(lo, 1, b + 1), entry!(lo, 2, b + 2), entry!(lo, 3, b + 3));
        let (v4, v5, v6, v7) = (entry!(hi, 0, b + 4), entry!(hi, 1, b + 5), entry!(hi, 2, b + 6), entry!(hi, 3, b + 7));
        let t = _mm256_add_ps(
            _mm256_add_ps(_mm256_add_ps(v0, v1), _mm256_add_ps(v2, v3)),
            _mm256_add_ps(_mm256_add_ps(v4, v5), _mm256_add_ps(v6, v7)),
        );
        sum = _mm256_add_ps(sum, t);
        b += 8;
    }
    // SAFETY: out is 8 f32s; unaligned store.
    _mm256_storeu_ps(out.as_mut_ptr(), sum);
}
