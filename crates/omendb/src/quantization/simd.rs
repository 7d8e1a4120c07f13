//! Runtime CPU-feature dispatch: the only `unsafe` code of the PQ module.
//!
//! The kernels themselves are safe Rust (`kernels.rs`); here they are compiled a
//! second time inside `#[target_feature(enable = "avx2")]` functions so LLVM may
//! use 256-bit registers, and the hot ones are also written with intrinsics:
//! the AVX-512 register-blocked nearest-centroid tile (training and encoding),
//! the AVX2 gather ADC block and the 4-bit fast scan. Calling such a function
//! is `unsafe` because running instructions the CPU lacks is undefined
//! behaviour. (AVX-512 intrinsics need Rust 1.89, the crate's MSRV.)
//!
//! INVARIANT (every `unsafe` block below): a function compiled for a CPU
//! feature is only called after `is_x86_feature_detected!` returned true for
//! that feature on this CPU.
//!
//! Results are bit-identical to the portable path: the kernels vectorize across
//! independent lanes, never reorder a sum, and use no FMA (neither `avx2` nor
//! `avx512f` enables it, and Rust never contracts `a * b + c` anyway).

use super::kernels;

#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx2() -> bool {
    crate::cpu::avx2()
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx512() -> bool {
    crate::cpu::avx512f()
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
        if has_avx512() {
            // SAFETY: AVX-512F was detected on this CPU just above (module
            // invariant); the asserts inside check the bounds it relies on.
            unsafe { nearest_many_avx512(ct, half_norms, k, dsub, x, stride, n, out) };
            return;
        }
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

/// AVX-512 nearest centroid: a register-blocked tile of `P` points x `16 * C`
/// centroids (`P * C` accumulators stay in zmm registers while `d` runs, so each
/// centroid row loaded is used `P` times and each point coordinate, broadcast,
/// `16 * C` times), with the argmin kept per lane across tiles. The sums are
/// the portable kernel's, operation for operation (`acc += x * c` from 0 in
/// `d` order, then `half_norm - acc`, no FMA), so scores are bit-identical;
/// per lane a strictly smaller score replaces the best, and the final pick is
/// the lowest index among lanes holding the minimum: ties go to the lowest
/// centroid index, as in the portable kernel.
///
/// Requires: AVX-512F on this CPU (module invariant). Bounds are asserted.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn nearest_many_avx512(
    ct: &[f32],
    half_norms: &[f32],
    k: usize,
    dsub: usize,
    x: &[f32],
    stride: usize,
    n: usize,
    out: &mut [u32],
) {
    assert!(k.is_multiple_of(16) && k <= 256 && ct.len() == k * dsub && half_norms.len() == k && out.len() >= n);
    if n == 0 {
        return;
    }
    assert!(stride >= dsub && x.len() >= (n - 1) * stride + dsub);
    if k == 16 && (16 * stride) as u64 <= i32::MAX as u64 {
        // 4-bit PQ, at the sub-space widths (dim / m) of its usual shapes.
        let (h, c) = (half_norms, ct);
        match dsub {
            1 => return nearest16_avx512::<1>(c, h, x, stride, n, out),
            2 => return nearest16_avx512::<2>(c, h, x, stride, n, out),
            3 => return nearest16_avx512::<3>(c, h, x, stride, n, out),
            4 => return nearest16_avx512::<4>(c, h, x, stride, n, out),
            6 => return nearest16_avx512::<6>(c, h, x, stride, n, out),
            8 => return nearest16_avx512::<8>(c, h, x, stride, n, out),
            12 => return nearest16_avx512::<12>(c, h, x, stride, n, out),
            16 => return nearest16_avx512::<16>(c, h, x, stride, n, out),
            _ => {}
        }
    }
    nearest_many_tiles(ct, half_norms, k, dsub, x, stride, n, out)
}

/// [`nearest_many_avx512`] by register tiles of points x centroids.
///
/// Requires: as [`nearest_many_avx512`], whose asserts it relies on.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn nearest_many_tiles(ct: &[f32], half_norms: &[f32], k: usize, dsub: usize, x: &[f32], stride: usize, n: usize, out: &mut [u32]) {
    let mut i = 0;
    if k.is_multiple_of(32) {
        // 12 points x 32 centroids: 24 accumulators + 2 centroid rows of 32 zmm.
        while i + 12 <= n {
            nearest_tile_avx512::<12, 2>(ct, half_norms, k, dsub, &x[i * stride..], stride, &mut out[i..i + 12]);
            i += 12;
        }
        while i < n {
            nearest_tile_avx512::<1, 2>(ct, half_norms, k, dsub, &x[i * stride..], stride, &mut out[i..i + 1]);
            i += 1;
        }
    } else {
        while i + 16 <= n {
            nearest_tile_avx512::<16, 1>(ct, half_norms, k, dsub, &x[i * stride..], stride, &mut out[i..i + 16]);
            i += 16;
        }
        while i < n {
            nearest_tile_avx512::<1, 1>(ct, half_norms, k, dsub, &x[i * stride..], stride, &mut out[i..i + 1]);
            i += 1;
        }
    }
}

/// [`nearest_many_avx512`] for 16 centroids (4-bit PQ): 16 points in the
/// lanes and the centroids one after another, so each point's argmin is
/// a lane's running minimum, with no reduction across lanes. (The
/// general tile, centroids in the lanes, ends each point and sub-space
/// with two horizontal reductions, which for 16 centroids of a few
/// dimensions outweigh the products: this path encoded PQ192x4 at 768
/// dimensions 1.4x as fast, one thread.)
/// Same sums, operation for operation, as the general kernel; a strictly
/// smaller score replaces the best, centroids in increasing order, so
/// ties go to the lowest index and a point whose scores are all NaN gets
/// centroid 0, as there.
///
/// Requires: AVX-512F on this CPU; `ct.len() == 16 * D`,
/// `half_norms.len() == 16`, `16 * stride <= i32::MAX`, `stride >= D`,
/// `out.len() >= n`, `x.len() >= (n - 1) * stride + D` (the caller
/// asserts them).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn nearest16_avx512<const D: usize>(ct: &[f32], half_norms: &[f32], x: &[f32], stride: usize, n: usize, out: &mut [u32]) {
    use std::arch::x86_64::*;
    debug_assert!(ct.len() == 16 * D && half_norms.len() == 16 && out.len() >= n);
    debug_assert!(n == 0 || x.len() >= (n - 1) * stride + D);
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let offsets = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(stride as i32));
    let mut xs = [_mm512_setzero_ps(); D];
    let mut i = 0;
    while i < n {
        // Lanes past the last point are masked off: not read, not written.
        let valid: __mmask16 = if n - i >= 16 { 0xFFFF } else { (1u16 << (n - i)) - 1 };
        for (d, xd) in xs.iter_mut().enumerate() {
            // SAFETY: lane p reads x[(i + p) * stride + d], only for
            // i + p < n, where (n - 1) * stride + D <= x.len().
            *xd = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), valid, offsets, x.as_ptr().add(i * stride + d));
        }
        let mut best = _mm512_set1_ps(f32::INFINITY);
        let mut best_idx = _mm512_setzero_si512();
        for c in 0..16 {
            let mut acc = _mm512_setzero_ps();
            for (d, &xd) in xs.iter().enumerate() {
                acc = _mm512_add_ps(acc, _mm512_mul_ps(xd, _mm512_set1_ps(ct[d * 16 + c])));
            }
            let s = _mm512_sub_ps(_mm512_set1_ps(half_norms[c]), acc);
            let lt = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(s, best);
            best = _mm512_mask_mov_ps(best, lt, s);
            best_idx = _mm512_mask_mov_epi32(best_idx, lt, _mm512_set1_epi32(c as i32));
        }
        // SAFETY: the masked lanes p are i + p < n <= out.len().
        _mm512_mask_storeu_epi32(out.as_mut_ptr().add(i) as *mut i32, valid, best_idx);
        i += 16;
    }
}

/// One tile of [`nearest_many_avx512`]: points `x[p * stride..p * stride + dsub]`
/// for `p < P`, answers in `out[..P]`.
///
/// Requires: AVX-512F; `k % (16 * C) == 0`, `ct.len() == k * dsub`,
/// `half_norms.len() == k`, `x.len() >= (P - 1) * stride + dsub`, `out.len() >= P`
/// (asserted in debug builds; the caller asserts the release-mode equivalents).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::needless_range_loop)] // fixed-size register arrays, indexed in lockstep
unsafe fn nearest_tile_avx512<const P: usize, const C: usize>(
    ct: &[f32],
    half_norms: &[f32],
    k: usize,
    dsub: usize,
    x: &[f32],
    stride: usize,
    out: &mut [u32],
) {
    use std::arch::x86_64::*;
    debug_assert!(k.is_multiple_of(16 * C) && ct.len() == k * dsub && half_norms.len() == k);
    debug_assert!(x.len() >= (P - 1) * stride + dsub && out.len() >= P);
    let (cp, hp, xp) = (ct.as_ptr(), half_norms.as_ptr(), x.as_ptr());
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let mut best = [_mm512_set1_ps(f32::INFINITY); P];
    let mut best_idx = [_mm512_setzero_si512(); P];
    let mut c0 = 0;
    while c0 < k {
        let mut acc = [[_mm512_setzero_ps(); C]; P];
        for d in 0..dsub {
            let mut row = [_mm512_setzero_ps(); C];
            for (c, r) in row.iter_mut().enumerate() {
                // SAFETY: d * k + c0 + 16 * c + 16 <= k * dsub = ct.len().
                *r = _mm512_loadu_ps(cp.add(d * k + c0 + 16 * c));
            }
            for (p, a) in acc.iter_mut().enumerate() {
                // SAFETY: p * stride + d < (P - 1) * stride + dsub <= x.len().
                let xb = _mm512_set1_ps(*xp.add(p * stride + d));
                for c in 0..C {
                    a[c] = _mm512_add_ps(a[c], _mm512_mul_ps(xb, row[c]));
                }
            }
        }
        for c in 0..C {
            // SAFETY: c0 + 16 * c + 16 <= k = half_norms.len().
            let h = _mm512_loadu_ps(hp.add(c0 + 16 * c));
            let idx = _mm512_add_epi32(lanes, _mm512_set1_epi32((c0 + 16 * c) as i32));
            for p in 0..P {
                let s = _mm512_sub_ps(h, acc[p][c]);
                let lt = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(s, best[p]);
                best[p] = _mm512_mask_mov_ps(best[p], lt, s);
                best_idx[p] = _mm512_mask_mov_epi32(best_idx[p], lt, idx);
            }
        }
        c0 += 16 * C;
    }
    for p in 0..P {
        let min = _mm512_reduce_min_ps(best[p]);
        let at_min = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(best[p], _mm512_set1_ps(min));
        let cand = _mm512_mask_blend_epi32(at_min, _mm512_set1_epi32(i32::MAX), best_idx[p]);
        // No lane at the minimum only if every score was NaN: index 0, as the portable kernel.
        let pick = _mm512_reduce_min_epi32(cand);
        out[p] = if pick == i32::MAX { 0 } else { pick as u32 };
    }
}

/// Every nearest-centroid path this CPU can run, by name, for tests that
/// compare them (the dispatcher only ever takes the widest).
#[cfg(test)]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(crate) fn nearest_many_all_paths(
    ct: &[f32],
    half_norms: &[f32],
    k: usize,
    dsub: usize,
    x: &[f32],
    stride: usize,
    n: usize,
) -> Vec<(&'static str, Vec<u32>)> {
    let mut runs = Vec::new();
    let mut out = vec![0u32; n];
    nearest_many_portable(ct, half_norms, k, dsub, x, stride, n, &mut out);
    runs.push(("portable", out.clone()));
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: AVX2 detected just above (module invariant).
            unsafe { nearest_many_avx2(ct, half_norms, k, dsub, x, stride, n, &mut out) };
            runs.push(("avx2", out.clone()));
        }
        if has_avx512() {
            // SAFETY: AVX-512F detected just above (module invariant).
            unsafe { nearest_many_avx512(ct, half_norms, k, dsub, x, stride, n, &mut out) };
            runs.push(("avx512", out.clone()));
        }
    }
    runs
}

/// Every path of [`table_min_max`] this CPU can run, by name: each
/// sub-space's `(min, max)`.
#[cfg(test)]
pub(crate) fn table_min_max_all_paths(t: &[f32], k: usize) -> Vec<(&'static str, Vec<f32>, Vec<f32>)> {
    let m = t.len() / k;
    let mut runs = Vec::new();
    let (mut lo, mut hi) = (vec![0.0; m], vec![0.0; m]);
    kernels::table_min_max(t, k, &mut lo, &mut hi);
    runs.push(("portable", lo.clone(), hi.clone()));
    #[cfg(target_arch = "x86_64")]
    {
        if k == 16 && has_avx2() {
            // SAFETY: AVX2 detected just above (module invariant).
            unsafe { table_min_max_avx2(t, &mut lo, &mut hi) };
            runs.push(("avx2", lo.clone(), hi.clone()));
        }
        if has_avx512() {
            // SAFETY: AVX-512F detected just above (module invariant).
            unsafe { table_min_max_avx512(t, k, &mut lo, &mut hi) };
            runs.push(("avx512", lo, hi));
        }
    }
    runs
}

/// Every path of [`quantize_tables`] this CPU can run, by name.
#[cfg(test)]
pub(crate) fn quantize_tables_all_paths(t: &[f32], k: usize, mins: &[f32], inv: f32) -> Vec<(&'static str, Vec<u8>)> {
    let mut runs = Vec::new();
    let mut q = vec![0u8; t.len()];
    kernels::quantize_tables(t, k, mins, inv, &mut q);
    runs.push(("portable", q.clone()));
    #[cfg(target_arch = "x86_64")]
    {
        if k.is_multiple_of(16) && has_avx2() {
            // SAFETY: AVX2 detected just above (module invariant).
            unsafe { quantize_tables_avx2(t, k, mins, inv, &mut q) };
            runs.push(("avx2", q.clone()));
        }
        if has_avx512() {
            // SAFETY: AVX-512F detected just above (module invariant).
            unsafe { quantize_tables_avx512(t, k, mins, inv, &mut q) };
            runs.push(("avx512", q));
        }
    }
    runs
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

/// Largest magnitude in `x`; see [`kernels::max_abs`].
pub(crate) fn max_abs(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: AVX-512F was detected on this CPU just above (module invariant).
            return unsafe { max_abs_avx512(x) };
        }
        if has_avx2() {
            // SAFETY: AVX2 was detected on this CPU just above (module invariant).
            return unsafe { max_abs_avx2(x) };
        }
    }
    kernels::max_abs(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_abs_avx512(x: &[f32]) -> f32 {
    kernels::max_abs(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_abs_avx2(x: &[f32]) -> f32 {
    kernels::max_abs(x)
}

/// Every sub-space's ADC table; see [`kernels::subspace_tables`].
pub(crate) fn subspace_tables(ct: &[f32], k: usize, dsub: usize, q: &[f32], l2: bool, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: AVX-512F was detected on this CPU just above (module invariant).
            unsafe { subspace_tables_avx512(ct, k, dsub, q, l2, out) };
            return;
        }
        if has_avx2() {
            // SAFETY: AVX2 was detected on this CPU just above (module invariant).
            unsafe { subspace_tables_avx2(ct, k, dsub, q, l2, out) };
            return;
        }
    }
    kernels::subspace_tables(ct, k, dsub, q, l2, out)
}

/// [`kernels::subspace_tables`]; 4-bit tables (`k == 16`) with intrinsics,
/// one register a table, the same operations in the same order (LLVM
/// vectorized the portable loop across tables, with gathers: three times
/// slower at 384 sub-spaces of 2 dimensions).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn subspace_tables_avx512(ct: &[f32], k: usize, dsub: usize, q: &[f32], l2: bool, out: &mut [f32]) {
    use std::arch::x86_64::*;
    if k != 16 || dsub == 0 {
        return kernels::subspace_tables(ct, k, dsub, q, l2, out);
    }
    let m = out.len() / 16;
    assert!(out.len() == m * 16 && ct.len() == m * 16 * dsub && q.len() == m * dsub, "PQ subspace_tables: m x k entries");
    for ((o, c), qj) in out.chunks_exact_mut(16).zip(ct.chunks_exact(16 * dsub)).zip(q.chunks_exact(dsub)) {
        let mut acc = _mm512_setzero_ps();
        for (d, &qv) in qj.iter().enumerate() {
            // SAFETY: c is dsub rows of 16 f32s (chunks_exact), d < dsub; unaligned load.
            let row = _mm512_loadu_ps(c.as_ptr().add(d * 16));
            let qv = _mm512_set1_ps(qv);
            acc = if l2 {
                let t = _mm512_sub_ps(qv, row);
                _mm512_add_ps(acc, _mm512_mul_ps(t, t))
            } else {
                _mm512_add_ps(acc, _mm512_mul_ps(qv, row))
            };
        }
        // Negation flips the sign bit, as `-a` does.
        let acc = if l2 { acc } else { _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(acc), _mm512_set1_epi32(i32::MIN))) };
        // SAFETY: o is 16 f32s (chunks_exact); unaligned store.
        _mm512_storeu_ps(o.as_mut_ptr(), acc);
    }
}

/// [`subspace_tables_avx512`] in two 8-lane halves.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn subspace_tables_avx2(ct: &[f32], k: usize, dsub: usize, q: &[f32], l2: bool, out: &mut [f32]) {
    use std::arch::x86_64::*;
    if k != 16 || dsub == 0 {
        return kernels::subspace_tables(ct, k, dsub, q, l2, out);
    }
    let m = out.len() / 16;
    assert!(out.len() == m * 16 && ct.len() == m * 16 * dsub && q.len() == m * dsub, "PQ subspace_tables: m x k entries");
    let sign = _mm256_set1_ps(-0.0);
    for ((o, c), qj) in out.chunks_exact_mut(16).zip(ct.chunks_exact(16 * dsub)).zip(q.chunks_exact(dsub)) {
        let mut acc = [_mm256_setzero_ps(); 2];
        for (d, &qv) in qj.iter().enumerate() {
            let qv = _mm256_set1_ps(qv);
            for (h, acc) in acc.iter_mut().enumerate() {
                // SAFETY: c is dsub rows of 16 f32s (chunks_exact), d < dsub, h < 2; unaligned load.
                let row = _mm256_loadu_ps(c.as_ptr().add(d * 16 + h * 8));
                *acc = if l2 {
                    let t = _mm256_sub_ps(qv, row);
                    _mm256_add_ps(*acc, _mm256_mul_ps(t, t))
                } else {
                    _mm256_add_ps(*acc, _mm256_mul_ps(qv, row))
                };
            }
        }
        for (h, acc) in acc.into_iter().enumerate() {
            // Negation flips the sign bit, as `-a` does.
            let acc = if l2 { acc } else { _mm256_xor_ps(acc, sign) };
            // SAFETY: o is 16 f32s (chunks_exact), h < 2; unaligned store.
            _mm256_storeu_ps(o.as_mut_ptr().add(h * 8), acc);
        }
    }
}

/// The fast scan's u8 tables; see [`kernels::quantize_tables`]. (The
/// saturating float-to-u8 conversion only vectorizes well with AVX-512.)
pub(crate) fn quantize_tables(t: &[f32], k: usize, mins: &[f32], inv: f32, q: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: AVX-512F was detected on this CPU just above (module invariant).
            unsafe { quantize_tables_avx512(t, k, mins, inv, q) };
            return;
        }
        if k.is_multiple_of(16) && has_avx2() {
            // SAFETY: AVX2 was detected on this CPU just above (module
            // invariant); `k % 16 == 0` as it requires (lengths asserted there).
            unsafe { quantize_tables_avx2(t, k, mins, inv, q) };
            return;
        }
    }
    kernels::quantize_tables(t, k, mins, inv, q)
}

/// Lanes of [`span_lanes`]'s sums.
pub(crate) const SPAN_LANES: usize = 8;

/// The larger of two, or NaN when either is (`f32::max` drops a NaN): a
/// table's NaN bound then fails its range check, and the table is made in
/// f64 instead of summing NaN entries. (Vectorizes: a compare and a blend.)
#[inline(always)]
pub(crate) fn larger(a: f32, b: f32) -> f32 {
    if a > b || a.is_nan() {
        a
    } else {
        b
    }
}

/// Over sub-spaces `i`, `i + 8`, `i + 16`, ... in that order, lane `i` of:
/// the widest `maxs - mins`, the sum of `mins`, the sum of the larger
/// magnitude of each pair (`mins.len()` a multiple of 8; the caller folds
/// the lanes and the rest). AVX2 where the CPU has it, the same operations
/// in the same order (same results; LLVM kept the portable loop scalar).
pub(crate) fn span_lanes(mins: &[f32], maxs: &[f32]) -> [[f32; SPAN_LANES]; 3] {
    assert!(mins.len() == maxs.len() && mins.len().is_multiple_of(SPAN_LANES));
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: AVX2 was detected just above (module invariant); the
            // lengths asserted above are the ones `span_lanes_avx2` requires.
            return unsafe { span_lanes_avx2(mins, maxs) };
        }
    }
    kernels::span_lanes(mins, maxs)
}

/// Requires: AVX2 on this CPU; equal lengths, multiples of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn span_lanes_avx2(mins: &[f32], maxs: &[f32]) -> [[f32; SPAN_LANES]; 3] {
    use std::arch::x86_64::*;
    let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
    // `larger(a, b)`: a where a > b or a is NaN, else b.
    let larger = |a: __m256, b: __m256| {
        let take = _mm256_or_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(a, b), _mm256_cmp_ps::<_CMP_UNORD_Q>(a, a));
        _mm256_blendv_ps(b, a, take)
    };
    let (mut widest, mut sum_min, mut sum_abs) = (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
    for (lo, hi) in mins.chunks_exact(SPAN_LANES).zip(maxs.chunks_exact(SPAN_LANES)) {
        // SAFETY: lo and hi are 8 f32s each (chunks_exact); unaligned loads.
        let (lo, hi) = (_mm256_loadu_ps(lo.as_ptr()), _mm256_loadu_ps(hi.as_ptr()));
        widest = larger(_mm256_sub_ps(hi, lo), widest);
        sum_min = _mm256_add_ps(sum_min, lo);
        sum_abs = _mm256_add_ps(sum_abs, larger(_mm256_and_ps(lo, magnitude), _mm256_and_ps(hi, magnitude)));
    }
    let mut out = [[0f32; SPAN_LANES]; 3];
    for (o, v) in out.iter_mut().zip([widest, sum_min, sum_abs]) {
        // SAFETY: o is 8 f32s; unaligned store.
        _mm256_storeu_ps(o.as_mut_ptr(), v);
    }
    out
}

/// Per-table minimum and maximum; see [`kernels::table_min_max`].
pub(crate) fn table_min_max(t: &[f32], k: usize, mins: &mut [f32], maxs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: AVX-512F was detected on this CPU just above (module invariant).
            unsafe { table_min_max_avx512(t, k, mins, maxs) };
            return;
        }
        if k == 16 && has_avx2() {
            // SAFETY: AVX2 was detected on this CPU just above (module invariant).
            unsafe { table_min_max_avx2(t, mins, maxs) };
            return;
        }
    }
    kernels::table_min_max(t, k, mins, maxs)
}

/// An IVF list's L2 table from the query's shared inner-product table and
/// the list's terms: `t = 2 shared + terms`, `base` added to the first
/// sub-space's `k` entries, and each sub-space's minimum and maximum (as
/// [`table_min_max`] gives them). One pass where the CPU has AVX-512 and
/// `k == 16` (4-bit codes): a register a sub-space.
pub(crate) fn list_table_l2(shared: &[f32], terms: &[f32], base: f32, k: usize, t: &mut [f32], mins: &mut [f32], maxs: &mut [f32]) {
    assert!(shared.len() == t.len() && terms.len() == t.len() && k > 0 && t.len() == mins.len() * k && maxs.len() == mins.len());
    #[cfg(target_arch = "x86_64")]
    {
        if k == 16 && has_avx512() {
            // SAFETY: AVX-512F was detected on this CPU just above (module
            // invariant); the lengths asserted above are whole sub-spaces.
            unsafe { list_table_l2_avx512(shared, terms, base, t, mins, maxs) };
            return;
        }
    }
    for ((e, &s), &r) in t.iter_mut().zip(shared).zip(terms) {
        *e = 2.0 * s + r;
    }
    t[..k].iter_mut().for_each(|e| *e += base);
    table_min_max(t, k, mins, maxs);
}

/// Requires: AVX-512F on this CPU; `t`, `shared` and `terms` of the same
/// length, 16 entries of each for every entry of `mins` and `maxs`. The
/// loop reads and writes through whole 16-entry chunks only. The same operations
/// in the same order as the portable loop (`2 s` is exact, then one
/// rounded add; `base` after): bit-identical tables.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn list_table_l2_avx512(shared: &[f32], terms: &[f32], base: f32, t: &mut [f32], mins: &mut [f32], maxs: &mut [f32]) {
    use std::arch::x86_64::*;
    let two = _mm512_set1_ps(2.0);
    let subspaces = t.chunks_exact_mut(16).zip(shared.chunks_exact(16)).zip(terms.chunks_exact(16));
    for (j, (((tj, sj), rj), (lo, hi))) in subspaces.zip(mins.iter_mut().zip(maxs.iter_mut())).enumerate() {
        // SAFETY: each chunk is 16 f32s (chunks_exact); unaligned loads and store.
        let mut x = _mm512_add_ps(_mm512_mul_ps(two, _mm512_loadu_ps(sj.as_ptr())), _mm512_loadu_ps(rj.as_ptr()));
        if j == 0 {
            x = _mm512_add_ps(x, _mm512_set1_ps(base));
        }
        _mm512_storeu_ps(tj.as_mut_ptr(), x);
        *lo = _mm512_reduce_min_ps(x);
        *hi = _mm512_reduce_max_ps(x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn table_min_max_avx512(t: &[f32], k: usize, mins: &mut [f32], maxs: &mut [f32]) {
    use std::arch::x86_64::*;
    if k != 16 {
        return kernels::table_min_max(t, k, mins, maxs);
    }
    // 4-bit tables: one register a sub-space. Sixteen sub-spaces at a time
    // are reduced together, halving each register's values in a tree of
    // shuffles, so that the last minimum holds the sixteen results (a
    // register reduced on its own costs four shuffles and four minimums
    // for one result; the portable kernel's 16-lane fold is a chain of 32
    // scalar steps). Min and max of finite values do not depend on the
    // order: same results.
    let groups = t.len() / 256;
    for g in 0..groups {
        // SAFETY: g * 256 + 255 < t.len(); unaligned loads.
        let at = t.as_ptr().add(g * 256);
        macro_rules! ld {
            ($($i:literal)*) => { [$(_mm512_loadu_ps(at.add($i * 16))),*] };
        }
        let x: [__m512; 16] = ld!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
        let (lo, hi) = min_max16(x);
        // SAFETY: 16 sub-spaces of this group: g * 16 + 15 < t.len() / 16 <= mins.len(), maxs.len().
        _mm512_storeu_ps(mins.as_mut_ptr().add(g * 16), lo);
        _mm512_storeu_ps(maxs.as_mut_ptr().add(g * 16), hi);
    }
    for ((tj, lo), hi) in t[groups * 256..].chunks_exact(16).zip(mins[groups * 16..].iter_mut()).zip(maxs[groups * 16..].iter_mut()) {
        // SAFETY: tj is 16 f32s (chunks_exact); unaligned load.
        let x = _mm512_loadu_ps(tj.as_ptr());
        *lo = _mm512_reduce_min_ps(x);
        *hi = _mm512_reduce_max_ps(x);
    }
}

/// Lane `l` of the results: the minimum and the maximum of `x[l]`'s sixteen
/// values. Each level pairs registers and keeps, in each, half of the
/// partial results of both: 16 registers of 16 values, 8 of 8 per
/// register pair, 4 of 4 per quad, 2 of 2, and the last level's lane
/// `4q + r` holds register `q + 4r`, which one permutation puts in place.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn min_max16(x: [std::arch::x86_64::__m512; 16]) -> (std::arch::x86_64::__m512, std::arch::x86_64::__m512) {
    use std::arch::x86_64::*;
    // Level 1: lanes 0-7 of pair i hold register 2i's halves, 8-15 register 2i + 1's.
    let mut lo = [_mm512_setzero_ps(); 8];
    let mut hi = [_mm512_setzero_ps(); 8];
    for i in 0..8 {
        let a = _mm512_shuffle_f32x4::<0b01_00_01_00>(x[2 * i], x[2 * i + 1]);
        let b = _mm512_shuffle_f32x4::<0b11_10_11_10>(x[2 * i], x[2 * i + 1]);
        lo[i] = _mm512_min_ps(a, b);
        hi[i] = _mm512_max_ps(a, b);
    }
    // Each later level: `$n` pairs of registers, two shuffles and a
    // minimum (or maximum) each.
    macro_rules! level {
        ($v:ident, $n:literal, $shuffle:ident, $a:literal, $b:literal, $op:ident) => {{
            let mut out = [_mm512_setzero_ps(); $n];
            for i in 0..$n {
                let a = $shuffle::<$a>($v[2 * i], $v[2 * i + 1]);
                let b = $shuffle::<$b>($v[2 * i], $v[2 * i + 1]);
                out[i] = $op(a, b);
            }
            out
        }};
    }
    // Level 2: 128-bit block q of register i holds register 4i + q's four.
    let lo = level!(lo, 4, _mm512_shuffle_f32x4, 0b10_00_10_00, 0b11_01_11_01, _mm512_min_ps);
    let hi = level!(hi, 4, _mm512_shuffle_f32x4, 0b10_00_10_00, 0b11_01_11_01, _mm512_max_ps);
    // Level 3 (within 128-bit blocks): block q of register i holds two of
    // register 8i + q's, then two of register 8i + 4 + q's.
    let lo = level!(lo, 2, _mm512_shuffle_ps, 0b01_00_01_00, 0b11_10_11_10, _mm512_min_ps);
    let hi = level!(hi, 2, _mm512_shuffle_ps, 0b01_00_01_00, 0b11_10_11_10, _mm512_max_ps);
    // Level 4: block q holds registers q, q + 4, q + 8, q + 12.
    let [lo] = level!(lo, 1, _mm512_shuffle_ps, 0b10_00_10_00, 0b11_01_11_01, _mm512_min_ps);
    let [hi] = level!(hi, 1, _mm512_shuffle_ps, 0b10_00_10_00, 0b11_01_11_01, _mm512_max_ps);
    // Register l = q + 4r sits in lane 4q + r.
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    (_mm512_permutexvar_ps(order, lo), _mm512_permutexvar_ps(order, hi))
}

/// [`table_min_max`] of 4-bit tables (16 entries a sub-space, two
/// registers) with AVX2: eight sub-spaces at a time, reduced together in a
/// tree of shuffles as [`min_max16`] does, the rest one at a time. Min and
/// max of finite values do not depend on the order: the portable results.
///
/// Requires: AVX2 on this CPU. Reads whole sub-spaces of `t` only, and
/// writes `mins` and `maxs` up to the shortest of the three's sub-spaces.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn table_min_max_avx2(t: &[f32], mins: &mut [f32], maxs: &mut [f32]) {
    use std::arch::x86_64::*;
    let m = (t.len() / 16).min(mins.len()).min(maxs.len());
    let groups = m / 8;
    // Each level pairs registers and keeps, in each, half of both's partial
    // results; the last leaves sub-space `i` in lane `[0, 4, 1, 5, 2, 6, 3, 7][i]`.
    macro_rules! reduce {
        ($x:expr, $op:ident) => {{
            let x = $x;
            let mut a = [_mm256_setzero_ps(); 4];
            for i in 0..4 {
                // 128-bit halves: lanes 0-3 hold four of sub-space 2i's, 4-7 of 2i + 1's.
                let (p, q) = (x[2 * i], x[2 * i + 1]);
                a[i] = $op(_mm256_permute2f128_ps::<0x20>(p, q), _mm256_permute2f128_ps::<0x31>(p, q));
            }
            let mut b = [_mm256_setzero_ps(); 2];
            for i in 0..2 {
                let (p, q) = (a[2 * i], a[2 * i + 1]);
                b[i] = $op(_mm256_shuffle_ps::<0b01_00_01_00>(p, q), _mm256_shuffle_ps::<0b11_10_11_10>(p, q));
            }
            let c = $op(_mm256_shuffle_ps::<0b10_00_10_00>(b[0], b[1]), _mm256_shuffle_ps::<0b11_01_11_01>(b[0], b[1]));
            _mm256_permutevar8x32_ps(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
        }};
    }
    for g in 0..groups {
        // SAFETY: sub-spaces 8 g .. 8 g + 8 lie within t (8 g + 8 <= m <= t.len() / 16); unaligned loads.
        let at = t.as_ptr().add(g * 128);
        let (mut lo, mut hi) = ([_mm256_setzero_ps(); 8], [_mm256_setzero_ps(); 8]);
        for j in 0..8 {
            let (a, b) = (_mm256_loadu_ps(at.add(16 * j)), _mm256_loadu_ps(at.add(16 * j + 8)));
            lo[j] = _mm256_min_ps(a, b);
            hi[j] = _mm256_max_ps(a, b);
        }
        // SAFETY: 8 g + 8 <= m <= mins.len(), maxs.len(); unaligned stores.
        _mm256_storeu_ps(mins.as_mut_ptr().add(8 * g), reduce!(lo, _mm256_min_ps));
        _mm256_storeu_ps(maxs.as_mut_ptr().add(8 * g), reduce!(hi, _mm256_max_ps));
    }
    let rest = 8 * groups..m;
    kernels::table_min_max(&t[16 * rest.start..16 * rest.end], 16, &mut mins[rest.clone()], &mut maxs[rest]);
}

/// [`kernels::quantize_tables`] with AVX2 intrinsics, as
/// [`quantize_tables_avx512`] (the same clamps, truncation and narrowing,
/// eight values a register).
///
/// Requires: AVX2 on this CPU; `k % 16 == 0`; `t.len() == q.len()`, a
/// multiple of `k`, and `mins.len() >= t.len() / k` (asserted).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_tables_avx2(t: &[f32], k: usize, mins: &[f32], inv: f32, q: &mut [u8]) {
    use std::arch::x86_64::*;
    assert!(k.is_multiple_of(16) && t.len() == q.len() && t.len().is_multiple_of(k) && mins.len() >= t.len() / k);
    let (zero, top, scale) = (_mm256_setzero_ps(), _mm256_set1_ps(255.0), _mm256_set1_ps(inv));
    // Table by table, as the AVX-512 kernel.
    for ((tj, qj), &min) in t.chunks_exact(k).zip(q.chunks_exact_mut(k)).zip(mins) {
        let lo = _mm256_set1_ps(min);
        let clamp = |x: __m256| _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_sub_ps(x, lo), scale), zero), top));
        for (tc, qc) in tj.chunks_exact(16).zip(qj.chunks_exact_mut(16)) {
            // SAFETY: tc is 16 f32s and qc 16 bytes (chunks_exact); unaligned loads and store.
            let (a, b) = (clamp(_mm256_loadu_ps(tc.as_ptr())), clamp(_mm256_loadu_ps(tc.as_ptr().add(8))));
            // Words in 128-bit lanes (a0-3 b0-3 | a4-7 b4-7), put in order, then bytes.
            let w = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(a, b));
            _mm_storeu_si128(qc.as_mut_ptr() as *mut __m128i, _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256::<1>(w)));
        }
    }
}

/// [`kernels::quantize_tables`] with intrinsics (LLVM keeps the saturating
/// cast scalar): `max(x, 0)` (which also maps NaN to 0: `vmaxps` returns its
/// second operand when the first is NaN), `min(x, 255)`, truncate, narrow.
///
/// Requires: AVX-512F on this CPU; `k % 16 == 0`; `t.len() == q.len()`,
/// a multiple of `k`, and `mins.len() >= t.len() / k` (asserted).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn quantize_tables_avx512(t: &[f32], k: usize, mins: &[f32], inv: f32, q: &mut [u8]) {
    use std::arch::x86_64::*;
    assert!(k.is_multiple_of(16) && t.len() == q.len() && t.len().is_multiple_of(k) && mins.len() >= t.len() / k);
    let (zero, top, scale) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0), _mm512_set1_ps(inv));
    // Table by table (a division a 16 entries to find the table's minimum
    // was a third of this kernel at 384 4-bit tables).
    for ((tj, qj), &min) in t.chunks_exact(k).zip(q.chunks_exact_mut(k)).zip(mins) {
        let lo = _mm512_set1_ps(min);
        for (tc, qc) in tj.chunks_exact(16).zip(qj.chunks_exact_mut(16)) {
            // SAFETY: tc is 16 f32s and qc 16 bytes (chunks_exact); unaligned load and store.
            let x = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(tc.as_ptr()), lo), scale);
            let x = _mm512_min_ps(_mm512_max_ps(x, zero), top);
            _mm_storeu_si128(qc.as_mut_ptr().add(0) as *mut __m128i, _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(x)));
        }
    }
}

/// ADC distances of 8 consecutive codes (`codes[..8 * cs]`) with the
/// per-code summation order of `adc::code_distance` (bit-identical results).
/// `lut` is `cs x 256`. Uses AVX2 gathers when available and `cs % 8 == 0`.
pub(crate) fn block8_distances(lut: &[f32], codes: &[u8], cs: usize, out: &mut [f32; 8]) {
    assert!(cs > 0 && codes.len() >= 8 * cs && lut.len() >= cs * 256);
    #[cfg(target_arch = "x86_64")]
    {
        if cs.is_multiple_of(8) && 8 * cs <= i32::MAX as usize && has_avx2() {
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

/// Whether [`fastscan_block16`] runs SIMD code on this CPU (else callers
/// should not use the fast-scan filter at all: the portable version is slower
/// than the plain scan).
pub(crate) fn fastscan_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx2()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// 4-bit fast-scan: for 16 consecutive codes (`codes[..16 * cs]`, `cs % 16 == 0`,
/// low nibble = even sub-space), `sums[i]` = sum over sub-spaces `j` of
/// `qt[j * 16 + nibble_j(code i)]`, where `qt` holds `2 * cs` tables of 16
/// quantized `u8` entries. Exact integer arithmetic as long as no sum
/// passes `u16::MAX`, which callers ensure (each entry at most `u16::MAX /
/// (2 cs)`; checked in debug builds).
pub(crate) fn fastscan_block16(qt: &[u8], codes: &[u8], cs: usize, sums: &mut [u16; 16]) {
    assert!(cs > 0 && cs.is_multiple_of(16) && codes.len() >= 16 * cs && qt.len() >= 2 * cs * 16);
    debug_assert!(sums_fit_u16(&qt[..2 * cs * 16], 2 * cs));
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: AVX2 was detected just above (module invariant); the
            // lengths asserted above are the ones `fastscan_avx2` requires.
            unsafe { fastscan_avx2(qt, codes, cs, sums) };
            return;
        }
    }
    fastscan_portable(qt, codes, cs, sums)
}

/// Reference implementation of [`fastscan_block16`].
pub(crate) fn fastscan_portable(qt: &[u8], codes: &[u8], cs: usize, sums: &mut [u16; 16]) {
    for (s, code) in sums.iter_mut().zip(codes.chunks_exact(cs)) {
        let mut acc = 0u16;
        for (b, &byte) in code.iter().enumerate() {
            acc += qt[2 * b * 16 + (byte & 15) as usize] as u16;
            acc += qt[(2 * b + 1) * 16 + (byte >> 4) as usize] as u16;
        }
        *s = acc;
    }
}

/// Rows are loaded in 4-bit bit-reversed order so that, after the four
/// unpack stages of the 16 x 16 byte transpose, lane `i` of output vector
/// `b` is byte `b` of code `i`.
#[cfg(target_arch = "x86_64")]
const BITREV4: [usize; 16] = [0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15];

/// Requires: AVX2 on this CPU, `cs % 16 == 0`, `codes.len() >= 16 * cs` (every
/// 16-byte load at `BITREV4[k] * cs + 16 * g`, `g < cs / 16`, is in bounds),
/// `qt.len() >= 2 * cs * 16` (every 16-byte table load at `j * 16`, `j < 2 * cs`,
/// is in bounds); sums that fit a u16 (else wrapped: wrong, not unsafe).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fastscan_avx2(qt: &[u8], codes: &[u8], cs: usize, sums: &mut [u16; 16]) {
    use std::arch::x86_64::*;
    let zero = _mm_setzero_si128();
    let nib = _mm_set1_epi8(0x0F);
    let (mut acc_lo, mut acc_hi) = (zero, zero);
    let cp = codes.as_ptr();
    let qp = qt.as_ptr();
    for g in 0..cs / 16 {
        let mut x = [zero; 16];
        for (k, v) in x.iter_mut().enumerate() {
            // SAFETY: BITREV4[k] * cs + 16 * g + 16 <= 16 * cs <= codes.len().
            *v = _mm_loadu_si128(cp.add(BITREV4[k] * cs + 16 * g) as *const __m128i);
        }
        macro_rules! stage {
            ($lo:ident, $hi:ident) => {{
                let mut y = [zero; 16];
                for k in 0..8 {
                    y[2 * k] = $lo(x[k], x[k + 8]);
                    y[2 * k + 1] = $hi(x[k], x[k + 8]);
                }
                x = y;
            }};
        }
        stage!(_mm_unpacklo_epi8, _mm_unpackhi_epi8);
        stage!(_mm_unpacklo_epi16, _mm_unpackhi_epi16);
        stage!(_mm_unpacklo_epi32, _mm_unpackhi_epi32);
        stage!(_mm_unpacklo_epi64, _mm_unpackhi_epi64);
        for (b, &t) in x.iter().enumerate() {
            let j = 2 * (16 * g + b);
            // SAFETY: (j + 1) * 16 + 16 <= 2 * cs * 16 <= qt.len().
            let q_even = _mm_loadu_si128(qp.add(j * 16) as *const __m128i);
            let q_odd = _mm_loadu_si128(qp.add((j + 1) * 16) as *const __m128i);
            let a = _mm_shuffle_epi8(q_even, _mm_and_si128(t, nib));
            let c = _mm_shuffle_epi8(q_odd, _mm_and_si128(_mm_srli_epi16(t, 4), nib));
            acc_lo = _mm_add_epi16(acc_lo, _mm_add_epi16(_mm_unpacklo_epi8(a, zero), _mm_unpacklo_epi8(c, zero)));
            acc_hi = _mm_add_epi16(acc_hi, _mm_add_epi16(_mm_unpackhi_epi8(a, zero), _mm_unpackhi_epi8(c, zero)));
        }
    }
    // SAFETY: sums is 16 u16 = two 16-byte unaligned stores.
    _mm_storeu_si128(sums.as_mut_ptr() as *mut __m128i, acc_lo);
    _mm_storeu_si128(sums.as_mut_ptr().add(8) as *mut __m128i, acc_hi);
}

/// The AVX-512 fast-scan kernel for one code width. It can only be obtained
/// from [`fast64`], on a CPU that runs the kernel, so holding one is the
/// feature check and the per-block calls need not repeat it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fast64 {
    bits: u32,
}

/// The fast-scan kernel for `bits`-bit codes (4 or 8), if this CPU runs it:
/// AVX-512BW (+ VBMI for 8-bit codes, whose 256-entry tables are looked up
/// with two-register byte permutes) and BMI2.
pub(crate) fn fast64(bits: u32) -> Option<Fast64> {
    ((bits == 4 || bits == 8) && fastscan64_available(bits)).then_some(Fast64 { bits })
}

fn fastscan64_available(bits: u32) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        crate::cpu::allows_avx512() && has!("avx512f") && has!("avx512bw") && has!("bmi2") && (bits == 4 || has!("avx512vbmi"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = bits;
        false
    }
}

/// Quantized sums of 64 consecutive codes (`codes[..64 * cs]`), the reference
/// for [`fastscan_filter64`]. `qt` holds one u8 table per look-up: for 8-bit
/// codes `cs` tables of 256 entries (byte `j` looks up table `j`); for 4-bit
/// codes `2 * cs` tables of 16 (low nibble of byte `j`: table `2j`, high: `2j + 1`).
#[cfg(test)]
pub(crate) fn fastscan_sums64_portable(qt: &[u8], bits: u32, codes: &[u8], cs: usize) -> [u32; 64] {
    let mut sums = [0u32; 64];
    for (s, code) in sums.iter_mut().zip(codes.chunks_exact(cs)) {
        for (j, &byte) in code.iter().enumerate() {
            *s += if bits == 8 {
                qt[j * 256 + byte as usize] as u32
            } else {
                qt[2 * j * 16 + (byte & 15) as usize] as u32 + qt[(2 * j + 1) * 16 + (byte >> 4) as usize] as u32
            };
        }
    }
    sums
}

/// Fast-scan filter over 64 consecutive codes: bit `i` of the result is set
/// when the quantized sum of code `i` (see [`fastscan_sums64_portable`]) is at
/// most `qthr`. Requires `cs % 16 == 0`, `codes.len() >= 64 * cs`, `qt` as
/// described there, and sums that fit a u16.
/// (Tests: the kernel where the CPU has it, else the reference.)
#[cfg(test)]
pub(crate) fn fastscan_filter64(qt: &[u8], bits: u32, codes: &[u8], cs: usize, qthr: u16) -> u64 {
    if let Some(kernel) = fast64(bits) {
        return fastscan_filter64_multi::<1>(kernel, [qt], codes, cs, [qthr])[0];
    }
    let sums = fastscan_sums64_portable(qt, bits, codes, cs);
    sums.iter().enumerate().fold(0, |mask, (i, &s)| mask | ((s <= qthr as u32) as u64) << i)
}

/// [`fastscan_filter64`] for `Q` queries at once (one table and threshold
/// each) over the same codes: the transpose of the codes, most of the work
/// for a single query, is shared.
pub(crate) fn fastscan_filter64_multi<const Q: usize>(
    kernel: Fast64,
    qts: [&[u8]; Q],
    codes: &[u8],
    cs: usize,
    qthr: [u16; Q],
) -> [u64; Q] {
    let bits = kernel.bits;
    for qt in qts {
        check_kernel_args(bits, cs, codes.len(), qt);
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `kernel` exists only where `fast64` detected the features
        // (module invariant); the lengths asserted above are the ones the
        // kernel requires.
        unsafe {
            if bits == 8 {
                fastscan64_avx512::<8, Q, false, false>(qts, codes, &[], cs, qthr, None)
            } else {
                fastscan64_avx512::<4, Q, false, false>(qts, codes, &[], cs, qthr, None)
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (qts, codes, qthr);
        unreachable!("fast64 never returns a kernel on this architecture")
    }
}

/// The quantized sums of 64 codes, as [`fastscan_sums64`] leaves them.
pub(crate) struct Sums64([u16; 64]);

impl Sums64 {
    pub(crate) fn new() -> Sums64 {
        Sums64([0; 64])
    }

    /// The sums of 64 codes, code `i`'s at `sums[i]`, as the kernel lays
    /// them out (tests).
    #[cfg(test)]
    pub(crate) fn of_codes(sums: [u16; 64]) -> Sums64 {
        let mut out = Sums64::new();
        for (i, &s) in sums.iter().enumerate() {
            out.0[Sums64::slot(i)] = s;
        }
        out
    }

    /// Where code `i`'s sum is stored (see `get`).
    #[inline]
    fn slot(i: usize) -> usize {
        (i & 1) * 32 + (i >> 1)
    }

    /// The sum of code `i` (< 64): the kernel keeps even and odd codes'
    /// sums in separate registers, stored one after the other.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> u16 {
        self.0[Sums64::slot(i)]
    }
}

/// [`fastscan_filter64_multi`] for one query that also leaves every code's
/// quantized sum in `sums` (row-major codes: a two-stage scan's gathered
/// codes, and the reference of the planar scan's estimated ranking).
pub(crate) fn fastscan_sums64(kernel: Fast64, qt: &[u8], codes: &[u8], cs: usize, qthr: u16, sums: &mut Sums64) -> u64 {
    let bits = kernel.bits;
    check_kernel_args(bits, cs, codes.len(), qt);
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: as in `fastscan_filter64_multi`; `sums` holds the 64
        // words the kernel stores.
        unsafe {
            if bits == 8 {
                fastscan64_avx512::<8, 1, true, false>([qt], codes, &[], cs, [qthr], Some(std::array::from_mut(sums)))[0]
            } else {
                fastscan64_avx512::<4, 1, true, false>([qt], codes, &[], cs, [qthr], Some(std::array::from_mut(sums)))[0]
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (qt, codes, qthr, sums);
        unreachable!("fast64 never returns a kernel on this architecture")
    }
}

/// Checks what every 64-code kernel requires of its arguments for
/// `bits`-bit codes of `cs` bytes: whole 16-byte groups, 64 codes, a table
/// per look-up. Sums must not wrap a u16 either (a wrapped sum is a wrong
/// filter, not a memory error): the tables' quantization keeps each entry
/// at most `u16::MAX / lookups` (255 up to 257 look-ups), checked in debug
/// builds.
fn check_kernel_args(bits: u32, cs: usize, codes_len: usize, qt: &[u8]) {
    let lookups = if bits == 8 { cs } else { 2 * cs };
    let table = if bits == 8 { 256 } else { 16 };
    assert!(bits == 4 || bits == 8);
    assert!(cs > 0 && cs.is_multiple_of(16) && codes_len >= 64 * cs && qt.len() >= lookups * table);
    debug_assert!(sums_fit_u16(&qt[..lookups * table], lookups));
    debug_assert!(qt[..lookups * table].iter().all(|&v| v as usize <= table_entry_max(bits)));
}

/// Whether `lookups` entries of the tables `qt`, each at most their
/// largest, sum to at most `u16::MAX` (the kernels' accumulators).
fn sums_fit_u16(qt: &[u8], lookups: usize) -> bool {
    qt.iter().map(|&v| v as usize).max().unwrap_or(0) * lookups <= u16::MAX as usize
}

/// A fast-scan kernel over byte-planar blocks of 64 codes (see `planar`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PlanarKernel {
    /// 4- or 8-bit codes, AVX-512 (as [`fast64`]).
    Avx512(Fast64),
    /// 4-bit codes, AVX2.
    Avx2,
}

impl PlanarKernel {
    /// The code width the kernel takes.
    pub(crate) fn bits(self) -> u32 {
        match self {
            PlanarKernel::Avx512(k) => k.bits,
            PlanarKernel::Avx2 => 4,
        }
    }
}

/// The planar kernel for `bits`-bit codes this CPU runs, if any (the
/// scans take it from their tables' filter).
#[cfg(test)]
pub(crate) fn planar_kernel(bits: u32) -> Option<PlanarKernel> {
    if let Some(kernel) = fast64(bits) {
        return Some(PlanarKernel::Avx512(kernel));
    }
    (bits == 4 && fastscan_available()).then_some(PlanarKernel::Avx2)
}

/// [`fastscan_sums64`] over one planar block of 64 codes (`block.len() >=
/// 64 * cs`): bit `i` of the result is set when code `i`'s sum is at most
/// `qthr`, and `sums` receives every code's sum. The bytes of `ahead` (up
/// to a block's worth: the codes a scan reads next) are asked for while
/// the block is scanned, a cache line for each line of the block.
pub(crate) fn fastscan_planar64(kernel: PlanarKernel, qt: &[u8], block: &[u8], ahead: &[u8], cs: usize, qthr: u16, sums: &mut Sums64) -> u64 {
    fastscan_planar64_multi::<1>(kernel, [qt], block, ahead, cs, [qthr], std::array::from_mut(sums))[0]
}

/// [`fastscan_planar64`] for `Q` queries over the same block: each code
/// row is loaded and split into nibbles once for all of them. `qts[q]`, `qthr[q]` and `sums[q]` are query `q`'s;
/// `ahead` as there.
pub(crate) fn fastscan_planar64_multi<const Q: usize>(
    kernel: PlanarKernel,
    qts: [&[u8]; Q],
    block: &[u8],
    ahead: &[u8],
    cs: usize,
    qthr: [u16; Q],
    sums: &mut [Sums64; Q],
) -> [u64; Q] {
    let bits = kernel.bits();
    for qt in qts {
        check_kernel_args(bits, cs, block.len(), qt);
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: a PlanarKernel exists only where `planar_kernel` (or
        // `fast64`) detected its features (module invariant); the lengths
        // asserted above are the ones the kernels require; each `sums[q]`
        // holds the 64 words stored.
        unsafe {
            match kernel {
                PlanarKernel::Avx512(_) if bits == 8 => fastscan64_avx512::<8, Q, true, true>(qts, block, ahead, cs, qthr, Some(sums)),
                PlanarKernel::Avx512(_) => fastscan64_avx512::<4, Q, true, true>(qts, block, ahead, cs, qthr, Some(sums)),
                PlanarKernel::Avx2 => fastscan_planar64_avx2::<Q>(qts, block, ahead, cs, qthr, sums),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (qts, block, ahead, qthr, sums);
        unreachable!("planar_kernel never returns a kernel on this architecture")
    }
}

/// The AVX2 planar kernel for 4-bit codes, for `Q` queries over the same
/// block: each half block of 32 codes in one register per code byte,
/// summed as the AVX-512 kernel does (even and odd codes' sums in separate
/// u16 words, stored as [`Sums64`] lays them out; two code bytes' four
/// look-ups added in bytes before one widening, entries being at most
/// [`FOUR_BIT_LEVELS`]). The code rows are loaded and split into nibbles
/// once for all the queries; each query has its own tables and accumulators.
///
/// Requires: AVX2 on this CPU; `cs % 16 == 0`; `block.len() >= 64 * cs`;
/// every `qts[q].len() >= 2 * cs * 16`; 4-bit entries at most
/// [`FOUR_BIT_LEVELS`]; sums below 2^16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fastscan_planar64_avx2<const Q: usize>(
    qts: [&[u8]; Q],
    block: &[u8],
    ahead: &[u8],
    cs: usize,
    qthr: [u16; Q],
    sums: &mut [Sums64; Q],
) -> [u64; Q] {
    use std::arch::x86_64::*;
    let nib = _mm256_set1_epi8(0x0F);
    let bp = block.as_ptr();
    let mut pass = [0u64; Q];
    let mut words = [[_mm256_setzero_si256(); Q]; 2];
    let mut odd = [[_mm256_setzero_si256(); Q]; 2];
    // Code bytes j and j + 1 of half `half` into every query's accumulators.
    macro_rules! step {
        ($half:expr, $j:expr) => {{
            let (half, j) = ($half, $j);
            // SAFETY: j + 1 < cs (cs is even): (j + 1) * 64 + 32 * half + 32 <= 64 * cs <= block.len().
            let x = _mm256_loadu_si256(bp.add(j * 64 + 32 * half) as *const __m256i);
            let y = _mm256_loadu_si256(bp.add((j + 1) * 64 + 32 * half) as *const __m256i);
            let (xl, xh) = (_mm256_and_si256(x, nib), _mm256_and_si256(_mm256_srli_epi16::<4>(x), nib));
            let (yl, yh) = (_mm256_and_si256(y, nib), _mm256_and_si256(_mm256_srli_epi16::<4>(y), nib));
            for q in 0..Q {
                let qp = qts[q].as_ptr();
                macro_rules! table {
                    ($i:expr) => {
                        // SAFETY: $i <= 2 j + 3 < 2 cs: ($i + 1) * 16 <= 2 * cs * 16 <= qts[q].len().
                        _mm256_broadcastsi128_si256(_mm_loadu_si128(qp.add($i * 16) as *const __m128i))
                    };
                }
                let v = _mm256_add_epi8(
                    _mm256_add_epi8(_mm256_shuffle_epi8(table!(2 * j), xl), _mm256_shuffle_epi8(table!(2 * j + 1), xh)),
                    _mm256_add_epi8(_mm256_shuffle_epi8(table!(2 * j + 2), yl), _mm256_shuffle_epi8(table!(2 * j + 3), yh)),
                );
                words[half][q] = _mm256_add_epi16(words[half][q], v);
                odd[half][q] = _mm256_add_epi16(odd[half][q], _mm256_srli_epi16::<8>(v));
            }
        }};
    }
    // Lines j and j + 1 of `ahead` as those of the block are read (see
    // `prefetch_ahead_line`). Up to two queries, both halves each step
    // (their tables loaded once: a single query answered 3-5% fewer
    // queries/s half by half); more, half by half, as both halves'
    // accumulators would not fit the 16 registers.
    if Q <= 2 {
        for j in (0..cs).step_by(2) {
            prefetch_ahead_line(ahead, j);
            prefetch_ahead_line(ahead, j + 1);
            step!(0, j);
            step!(1, j);
        }
    } else {
        for half in 0..2 {
            for j in (0..cs).step_by(2) {
                if half == 0 {
                    prefetch_ahead_line(ahead, j);
                    prefetch_ahead_line(ahead, j + 1);
                }
                step!(half, j);
            }
        }
    }
    for half in 0..2 {
        for q in 0..Q {
            let even = _mm256_sub_epi16(words[half][q], _mm256_slli_epi16::<8>(odd[half][q]));
            // SAFETY: 16 words each, at 16 half (even) and 32 + 16 half (odd) of the 64.
            let out = sums[q].0.as_mut_ptr();
            _mm256_storeu_si256(out.add(16 * half) as *mut __m256i, even);
            _mm256_storeu_si256(out.add(32 + 16 * half) as *mut __m256i, odd[half][q]);
            // Unsigned `s <= limit` as `min(s, limit) == s`; word e of each
            // is code 2e (even) or 2e + 1 (odd) of the half. Interleaved
            // within each 128-bit lane (codes 0-7 and 16-23 in `lo`, 8-15
            // and 24-31 in `hi`), then packed to bytes lane by lane: codes
            // 0-31 in order.
            let limit = _mm256_set1_epi16(qthr[q] as i16);
            let me = _mm256_cmpeq_epi16(_mm256_min_epu16(even, limit), even);
            let mo = _mm256_cmpeq_epi16(_mm256_min_epu16(odd[half][q], limit), odd[half][q]);
            let bytes = _mm256_packs_epi16(_mm256_unpacklo_epi16(me, mo), _mm256_unpackhi_epi16(me, mo));
            pass[q] |= u64::from(_mm256_movemask_epi8(bytes) as u32) << (32 * half);
        }
    }
    pass
}

/// The largest entry of a 4-bit fast-scan table (`adc::levels`): the
/// AVX-512 kernel sums four look-ups (two registers' two nibbles) in bytes
/// before widening them, which 4 x 63 = 252 keeps exact. 6-bit entries
/// rank the candidates as 8-bit ones do: a simulation of the fast-scan
/// estimates on the 1M x 768 benchmark store (PQ192x4, 256 of 1,000 lists,
/// 40 queries) and on the four shared real sets found the same share of the
/// true top 10 among the first 80-640 (1M) or 10-80 candidates within
/// +-0.003 (scratch `lut.py`, `lut_small.py`), where 4-bit entries lost up
/// to 0.05.
pub(crate) const FOUR_BIT_LEVELS: usize = 63;

/// The largest entry the kernels take in a table of `bits`-bit codes:
/// `FOUR_BIT_LEVELS`, or 255 for 8-bit codes.
pub(crate) fn table_entry_max(bits: u32) -> usize {
    if bits == 4 {
        FOUR_BIT_LEVELS
    } else {
        u8::MAX as usize
    }
}

/// Asks for cache line `line` of `ahead` when it has one. The planar
/// kernels ask for the codes they read next a line for each line they
/// read, so that the requests keep pace with the scan: asked for a block
/// at a time before it was scanned (96 lines at 96-byte codes), they
/// queued behind one another, and a 1M x 768 IVF search (PQ192x4, lists
/// beyond the cache, one thread, AMD Zen 5) answered 0.70-0.80x the
/// queries/s with the AVX-512 kernel, 0.73-0.79x with the AVX2 one.
#[inline(always)]
fn prefetch_ahead_line(ahead: &[u8], line: usize) {
    if let Some(byte) = ahead.get(line * 64) {
        crate::storage::prefetch::prefetch_line(byte);
    }
}

/// The AVX-512 fast scan. Per group of 16 code bytes, register `r` holds in
/// its 128-bit lane `l` the group of code `16 * l + BITREV4[r]`; the four
/// in-lane unpack stages then leave in register `b` byte `b` of the group for
/// all 64 codes, in code order. Look-ups: `pshufb` on 16-entry tables
/// broadcast to every lane (4-bit), or two `vpermi2b` on the 128-entry halves
/// of a 256-entry table, chosen by the index's top bit (8-bit). Bytes are
/// accumulated as u16 words faiss-style: `words += v` adds even and odd bytes
/// at once (even + 256 * odd, mod 2^16) and `odd += v >> 8` the odd ones, so
/// even sums are `words - (odd << 8)`; 4-bit look-ups of two registers (four
/// a code) are first added in bytes, one `v` for both. Each of the `Q`
/// queries has its own tables and accumulators; the transposed codes are
/// shared.
///
/// Requires: AVX-512F/BW, BMI2 (and VBMI when `BITS == 8`) on this CPU;
/// `cs % 16 == 0`; `codes.len() >= 64 * cs` (each 16-byte load at
/// `c * cs + 16 * g`, `c < 64`, `g < cs / 16`, is in bounds); every
/// `qts[i].len() >=` `cs * 256` (8-bit) or `2 * cs * 16` (4-bit); 4-bit
/// entries at most [`FOUR_BIT_LEVELS`] (else the byte sums wrap); sums below 2^16.
/// With `SUMS`, each query's even codes' sums then its odd codes' go to
/// its `sums` (see [`Sums64`]). With `PLANAR`, `ahead` is asked for as
/// [`fastscan_planar64`] says (non-planar scans pass it empty).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,bmi2")]
unsafe fn fastscan64_avx512<const BITS: u32, const Q: usize, const SUMS: bool, const PLANAR: bool>(
    qts: [&[u8]; Q],
    codes: &[u8],
    ahead: &[u8],
    cs: usize,
    qthr: [u16; Q],
    sums: Option<&mut [Sums64; Q]>,
) -> [u64; Q] {
    use std::arch::x86_64::*;
    let cp = codes.as_ptr();
    let nib = _mm512_set1_epi8(0x0F);
    let mut words = [_mm512_setzero_si512(); Q];
    let mut odd = [_mm512_setzero_si512(); Q];
    for g in 0..cs / 16 {
        macro_rules! lookup {
            ($x:expr) => {
                for (b, &t) in $x.iter().enumerate() {
                    let j = 16 * g + b;
                    if BITS == 8 {
                        let high = _mm512_movepi8_mask(t);
                        for q in 0..Q {
                            // SAFETY: (j + 1) * 256 <= cs * 256 <= qts[q].len().
                            let tp = qts[q].as_ptr().add(j * 256);
                            let t0 = _mm512_loadu_si512(tp as *const __m512i);
                            let t1 = _mm512_loadu_si512(tp.add(64) as *const __m512i);
                            let t2 = _mm512_loadu_si512(tp.add(128) as *const __m512i);
                            let t3 = _mm512_loadu_si512(tp.add(192) as *const __m512i);
                            let lo = _mm512_permutex2var_epi8(t0, t, t1);
                            let hi = _mm512_permutex2var_epi8(t2, t, t3);
                            let v = _mm512_mask_blend_epi8(high, lo, hi);
                            words[q] = _mm512_add_epi16(words[q], v);
                            odd[q] = _mm512_add_epi16(odd[q], _mm512_srli_epi16::<8>(v));
                        }
                    } else if b % 2 == 0 {
                        // Registers b and b + 1 together: 4-bit entries are
                        // at most 63 (`FOUR_BIT_LEVELS`), so their four
                        // look-ups sum in bytes (<= 252) before one widening.
                        let u = $x[b + 1];
                        let (ilo, ihi) = (_mm512_and_si512(t, nib), _mm512_and_si512(_mm512_srli_epi16::<4>(t), nib));
                        let (ulo, uhi) = (_mm512_and_si512(u, nib), _mm512_and_si512(_mm512_srli_epi16::<4>(u), nib));
                        for q in 0..Q {
                            // SAFETY: (2 * (j + 1) + 1) * 16 + 16 <= 2 * cs * 16 <= qts[q].len()
                            // (b + 1 < 16, so j + 1 < 16 * g + 16 <= cs).
                            let qp = qts[q].as_ptr();
                            macro_rules! table {
                                ($i:expr) => {
                                    _mm512_broadcast_i32x4(_mm_loadu_si128(qp.add($i * 16) as *const __m128i))
                                };
                            }
                            let v = _mm512_add_epi8(
                                _mm512_add_epi8(_mm512_shuffle_epi8(table!(2 * j), ilo), _mm512_shuffle_epi8(table!(2 * j + 1), ihi)),
                                _mm512_add_epi8(_mm512_shuffle_epi8(table!(2 * j + 2), ulo), _mm512_shuffle_epi8(table!(2 * j + 3), uhi)),
                            );
                            words[q] = _mm512_add_epi16(words[q], v);
                            odd[q] = _mm512_add_epi16(odd[q], _mm512_srli_epi16::<8>(v));
                        }
                    }
                }
            };
        }
        // (A macro, not a loop: LLVM kept a 16-iteration loop with the
        // registers round-tripping through the stack.)
        macro_rules! row {
            ($r:expr) => {{
                // SAFETY: code c = 16 * l + BITREV4[r] < 64; c * cs + 16 * g + 16 <= 64 * cs.
                let p = cp.add(BITREV4[$r] * cs + 16 * g);
                let z = _mm512_castsi128_si512(_mm_loadu_si128(p as *const __m128i));
                let z = _mm512_inserti32x4::<1>(z, _mm_loadu_si128(p.add(16 * cs) as *const __m128i));
                let z = _mm512_inserti32x4::<2>(z, _mm_loadu_si128(p.add(32 * cs) as *const __m128i));
                _mm512_inserti32x4::<3>(z, _mm_loadu_si128(p.add(48 * cs) as *const __m128i))
            }};
        }
        if PLANAR {
            for b in 0..16 {
                prefetch_ahead_line(ahead, 16 * g + b);
            }
            // Already transposed: row `b` of the group is byte 16 g + b of the 64 codes.
            // SAFETY: (16 g + 15) * 64 + 64 <= 64 * cs <= codes.len().
            // (Listed, not `array::from_fn`: that built the array in memory and copied it.)
            macro_rules! ld {
                ($b:expr) => {
                    _mm512_loadu_si512(cp.add((16 * g + $b) * 64) as *const __m512i)
                };
            }
            let x = [
                ld!(0), ld!(1), ld!(2), ld!(3), ld!(4), ld!(5), ld!(6), ld!(7),
                ld!(8), ld!(9), ld!(10), ld!(11), ld!(12), ld!(13), ld!(14), ld!(15),
            ];
            lookup!(x);
            continue;
        }
        let mut x = [
            row!(0), row!(1), row!(2), row!(3), row!(4), row!(5), row!(6), row!(7),
            row!(8), row!(9), row!(10), row!(11), row!(12), row!(13), row!(14), row!(15),
        ];
        macro_rules! stage {
            ($lo:ident, $hi:ident) => {{
                let mut y = [_mm512_setzero_si512(); 16];
                for k in 0..8 {
                    y[2 * k] = $lo(x[k], x[k + 8]);
                    y[2 * k + 1] = $hi(x[k], x[k + 8]);
                }
                x = y;
            }};
        }
        stage!(_mm512_unpacklo_epi8, _mm512_unpackhi_epi8);
        stage!(_mm512_unpacklo_epi16, _mm512_unpackhi_epi16);
        stage!(_mm512_unpacklo_epi32, _mm512_unpackhi_epi32);
        stage!(_mm512_unpacklo_epi64, _mm512_unpackhi_epi64);
        lookup!(x);
    }
    let mut out = [0u64; Q];
    let mut sums = sums;
    for q in 0..Q {
        let even = _mm512_sub_epi16(words[q], _mm512_slli_epi16::<8>(odd[q]));
        let limit = _mm512_set1_epi16(qthr[q] as i16);
        // Word e holds codes 2e (even) and 2e + 1 (odd); interleave the two masks.
        let pass_even = _mm512_cmple_epu16_mask(even, limit) as u64;
        let pass_odd = _mm512_cmple_epu16_mask(odd[q], limit) as u64;
        out[q] = _pdep_u64(pass_even, 0x5555_5555_5555_5555) | _pdep_u64(pass_odd, 0xAAAA_AAAA_AAAA_AAAA);
        if SUMS {
            if let Some(sums) = sums.as_deref_mut() {
                // SAFETY: two unaligned 64-byte stores into the 128 bytes of `sums[q]`.
                let out = sums[q].0.as_mut_ptr();
                _mm512_storeu_si512(out as *mut __m512i, even);
                _mm512_storeu_si512(out.add(32) as *mut __m512i, odd[q]);
            }
        }
    }
    out
}
