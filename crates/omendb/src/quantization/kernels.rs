//! Safe numeric kernels, written so that LLVM vectorizes them.
//!
//! Centroids of one sub-space are kept transposed (`ct[d * k + c]` is coordinate
//! `d` of centroid `c`), so every inner loop runs across centroids: each lane
//! owns one centroid and accumulates over `d` in order. The floating-point
//! result for a (point, centroid) pair is therefore the same whatever the
//! vector width, and the same in the SSE2 and AVX2 builds of these functions
//! (see `simd.rs`). No `mul_add`: Rust never contracts `a * b + c` into an FMA.
//!
//! The score minimised is `0.5 * ||c||^2 - x.c`, which orders centroids exactly
//! like `||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2` (up to rounding) and costs one
//! multiply-add per coordinate.

/// Magnitude range in which the f32 scores of [`nearest_many`] are accurate:
/// with every coordinate of the points and centroids at most `SAFE_MAX`
/// (2^54), `|x.c|` and `||c||^2` stay below `dsub * 2^108 <= 2^124` for any
/// `dsub <= MAX_DIM` (no overflow); with a point's largest coordinate and the
/// centroids' at least `SAFE_MIN` (2^-60), their products are normal floats
/// (no loss to subnormals). Points or codebooks outside it use [`nearest_f64`].
const SAFE_MAX: f32 = (1u64 << 54) as f32;
const SAFE_MIN: f32 = 1.0 / (1u64 << 60) as f32;

/// Whether points (or centroids) whose largest magnitude is `max_abs` can be
/// scored in f32 (see `SAFE_MAX`); zero always can.
#[inline]
pub(crate) fn in_safe_range(max_abs: f32) -> bool {
    max_abs == 0.0 || (SAFE_MIN..=SAFE_MAX).contains(&max_abs)
}

/// Largest magnitude in `x`, in 16 lanes so it vectorizes.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // fixed-size lane loops, written for the vectorizer
pub(crate) fn max_abs(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let mut chunks = x.chunks_exact(16);
    for ch in &mut chunks {
        for l in 0..16 {
            let a = ch[l].abs();
            lanes[l] = if a > lanes[l] { a } else { lanes[l] };
        }
    }
    chunks.remainder().iter().chain(&lanes).fold(0.0f32, |m, v| m.max(v.abs()))
}

/// Nearest of `k` centroids (`k x dsub`, row-major) to the point `x[..dsub]`
/// by squared distances in f64, exact enough for every finite input (f32
/// products are exact in f64 and cannot overflow or underflow there). Ties go
/// to the lowest index, as in [`nearest_many`].
pub(crate) fn nearest_f64(centroids: &[f32], k: usize, dsub: usize, x: &[f32]) -> u32 {
    let x = &x[..dsub];
    let mut best = (f64::INFINITY, 0u32);
    for (c, row) in centroids[..k * dsub].chunks_exact(dsub).enumerate() {
        let d = crate::search::distance::l2_squared_f64(row, x);
        if d < best.0 {
            best = (d, c as u32);
        }
    }
    best.1
}

/// Centroids per inner block (a multiple of every supported `k`: 16 and 256).
pub(crate) const CHUNK: usize = 16;
/// Largest supported `k` (8-bit codes).
pub(crate) const MAX_K: usize = 256;

/// Transposes `k x dsub` centroids into `dsub x k` and computes `0.5 * ||c||^2`.
pub(crate) fn prepare(centroids: &[f32], k: usize, dsub: usize, ct: &mut [f32], half_norms: &mut [f32]) {
    debug_assert_eq!(centroids.len(), k * dsub);
    for c in 0..k {
        let row = &centroids[c * dsub..(c + 1) * dsub];
        let mut s = 0.0f32;
        for (d, &v) in row.iter().enumerate() {
            ct[d * k + c] = v;
            s += v * v;
        }
        half_norms[c] = 0.5 * s;
    }
}

/// For each of `n` points (point `i` is `x[i * stride..i * stride + dsub]`),
/// writes the index of its nearest centroid to `out[i]`. Ties go to the lowest
/// centroid index. `P` points are processed together so each centroid row
/// loaded from memory is used `P` times.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn nearest_many<const P: usize>(
    ct: &[f32],
    half_norms: &[f32],
    k: usize,
    dsub: usize,
    x: &[f32],
    stride: usize,
    n: usize,
    out: &mut [u32],
) {
    assert!(k.is_multiple_of(CHUNK) && k <= MAX_K && ct.len() == k * dsub && half_norms.len() == k);
    assert!(out.len() >= n);
    if n > 0 {
        assert!(x.len() >= (n - 1) * stride + dsub);
    }
    let mut i = 0;
    while i + P <= n {
        let r = nearest_block::<P>(ct, half_norms, k, dsub, &x[i * stride..], stride);
        out[i..i + P].copy_from_slice(&r);
        i += P;
    }
    while i < n {
        let r = nearest_block::<1>(ct, half_norms, k, dsub, &x[i * stride..], stride);
        out[i] = r[0];
        i += 1;
    }
}

#[inline(always)]
#[allow(clippy::needless_range_loop)] // fixed-size lane loops, written for the vectorizer
fn nearest_block<const P: usize>(
    ct: &[f32],
    half_norms: &[f32],
    k: usize,
    dsub: usize,
    x: &[f32],
    stride: usize,
) -> [u32; P] {
    // Scores of all k centroids per point, then min and first index of the min.
    // (Tracking the argmin inside the chunk loop made LLVM emit scalar selects.)
    let mut scores = [[0.0f32; MAX_K]; P];
    let mut c0 = 0;
    while c0 < k {
        let mut acc = [[0.0f32; CHUNK]; P];
        for d in 0..dsub {
            let row: &[f32; CHUNK] = ct[d * k + c0..d * k + c0 + CHUNK].try_into().unwrap();
            for p in 0..P {
                let xv = x[p * stride + d];
                for l in 0..CHUNK {
                    acc[p][l] += xv * row[l];
                }
            }
        }
        let hn: &[f32; CHUNK] = half_norms[c0..c0 + CHUNK].try_into().unwrap();
        for p in 0..P {
            let sc: &mut [f32; CHUNK] = (&mut scores[p][c0..c0 + CHUNK]).try_into().unwrap();
            for l in 0..CHUNK {
                sc[l] = hn[l] - acc[p][l];
            }
        }
        c0 += CHUNK;
    }
    let mut out = [0u32; P];
    for p in 0..P {
        let sc = &scores[p][..k];
        let mut lanes = [f32::INFINITY; CHUNK];
        for ch in sc.chunks_exact(CHUNK) {
            for l in 0..CHUNK {
                lanes[l] = if ch[l] < lanes[l] { ch[l] } else { lanes[l] };
            }
        }
        let mut min = lanes[0];
        for &v in &lanes[1..] {
            min = if v < min { v } else { min };
        }
        // First index holding the minimum: ties go to the lowest index. (All
        // scores NaN cannot happen for inputs in the safe range; index 0 is
        // the fallback.)
        for (ci, ch) in sc.chunks_exact(CHUNK).enumerate() {
            let mut mask = 0u32;
            for l in 0..CHUNK {
                mask |= ((ch[l] == min) as u32) << l;
            }
            if mask != 0 {
                out[p] = (ci * CHUNK) as u32 + mask.trailing_zeros();
                break;
            }
        }
    }
    out
}

/// The ADC tables of every sub-space: [`subspace_table`] of sub-space `j`
/// (its `k x dsub` transposed centroids at `ct[j * k * dsub..]`, its query
/// part at `q[j * dsub..]`) into `out[j * k..]`. One call for the whole
/// table, so a SIMD build dispatches once rather than once a sub-space (512
/// calls of a few instructions each were a sixth of a query at 826 x 1,024).
/// 4-bit codes (`k == 16`) take a fixed-width path; the same operations in
/// the same order either way.
#[inline(always)]
pub(crate) fn subspace_tables(ct: &[f32], k: usize, dsub: usize, q: &[f32], l2: bool, out: &mut [f32]) {
    let m = out.len() / k;
    assert!(out.len() == m * k && ct.len() == m * k * dsub && q.len() == m * dsub, "PQ subspace_tables: m x k entries");
    if k == 16 {
        for ((o, c), qj) in out.chunks_exact_mut(16).zip(ct.chunks_exact(16 * dsub)).zip(q.chunks_exact(dsub)) {
            let mut acc = [0.0f32; 16];
            for (row, &qv) in c.chunks_exact(16).zip(qj) {
                if l2 {
                    for (a, &cv) in acc.iter_mut().zip(row) {
                        let t = qv - cv;
                        *a += t * t;
                    }
                } else {
                    for (a, &cv) in acc.iter_mut().zip(row) {
                        *a += qv * cv;
                    }
                }
            }
            for (o, a) in o.iter_mut().zip(acc) {
                *o = if l2 { a } else { -a };
            }
        }
        return;
    }
    for j in 0..m {
        subspace_table(&ct[j * k * dsub..(j + 1) * k * dsub], k, dsub, &q[j * dsub..(j + 1) * dsub], l2, &mut out[j * k..(j + 1) * k]);
    }
}

/// ADC table of one sub-space: `out[c] = ||q - c||^2` (L2) or `-(q.c)` (inner product).
#[inline(always)]
pub(crate) fn subspace_table(ct: &[f32], k: usize, dsub: usize, q: &[f32], l2: bool, out: &mut [f32]) {
    let out = &mut out[..k];
    out.fill(0.0);
    for d in 0..dsub {
        let row = &ct[d * k..(d + 1) * k];
        let qv = q[d];
        if l2 {
            for (o, &c) in out.iter_mut().zip(row) {
                let t = qv - c;
                *o += t * t;
            }
        } else {
            for (o, &c) in out.iter_mut().zip(row) {
                *o += qv * c;
            }
        }
    }
    if !l2 {
        for o in out.iter_mut() {
            *o = -*o;
        }
    }
}

/// u8 look-up tables of the fast scan: `q[j * k + v] = floor((t[j * k + v] - mins[j]) * inv)`,
/// saturated to 0..=255 (truncation is the floor for these non-negative
/// values; NaN gives 0). `mins` from [`table_min_max`].
#[inline(always)]
pub(crate) fn quantize_tables(t: &[f32], k: usize, mins: &[f32], inv: f32, q: &mut [u8]) {
    for ((qj, tj), &lo) in q.chunks_exact_mut(k).zip(t.chunks_exact(k)).zip(mins) {
        for (e, &v) in qj.iter_mut().zip(tj) {
            // Clamped by hand (NaN fails both tests and gives 0) so the cast is
            // a plain truncation that vectorizes; `as u8` alone does not.
            let x = (v - lo) * inv;
            let x = if x > 0.0 { x } else { 0.0 };
            let x = if x < 255.0 { x } else { 255.0 };
            *e = x as i32 as u8;
        }
    }
}

/// One sub-space's bounds `lo`, `hi` added to `[widest, sum_min, sum_abs]`
/// (see [`super::simd::span_lanes`]): the widest span, the sum of the
/// minimums, the sum of the larger magnitudes.
#[inline(always)]
pub(crate) fn span_step([widest, sum_min, sum_abs]: [f32; 3], lo: f32, hi: f32) -> [f32; 3] {
    use super::simd::larger;
    [larger(hi - lo, widest), sum_min + lo, sum_abs + larger(lo.abs(), hi.abs())]
}

/// See [`super::simd::span_lanes`].
#[inline(always)]
pub(crate) fn span_lanes(mins: &[f32], maxs: &[f32]) -> [[f32; super::simd::SPAN_LANES]; 3] {
    use super::simd::SPAN_LANES;
    let mut lanes = [[0f32; 3]; SPAN_LANES];
    for (lo, hi) in mins.chunks_exact(SPAN_LANES).zip(maxs.chunks_exact(SPAN_LANES)) {
        for (lane, (&lo, &hi)) in lanes.iter_mut().zip(lo.iter().zip(hi)) {
            *lane = span_step(*lane, lo, hi);
        }
    }
    std::array::from_fn(|sum| lanes.map(|lane| lane[sum]))
}

/// Smallest and largest entry of each `k`-entry table of `t` (`k` a multiple
/// of 16), in 16 lanes so it vectorizes (a fold over `f32::min` does not).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // fixed-size lane loops, written for the vectorizer
pub(crate) fn table_min_max(t: &[f32], k: usize, mins: &mut [f32], maxs: &mut [f32]) {
    for ((tj, lo_out), hi_out) in t.chunks_exact(k).zip(mins.iter_mut()).zip(maxs.iter_mut()) {
        let mut lo = [f32::INFINITY; 16];
        let mut hi = [f32::NEG_INFINITY; 16];
        for ch in tj.chunks_exact(16) {
            for l in 0..16 {
                lo[l] = if ch[l] < lo[l] { ch[l] } else { lo[l] };
                hi[l] = if ch[l] > hi[l] { ch[l] } else { hi[l] };
            }
        }
        // The 16 lanes (never NaN: a NaN entry left its lane as it was)
        // halved in a tree, which vectorizes, instead of a chain of 16.
        for width in [8, 4, 2, 1] {
            for l in 0..width {
                lo[l] = if lo[l + width] < lo[l] { lo[l + width] } else { lo[l] };
                hi[l] = if hi[l + width] > hi[l] { hi[l + width] } else { hi[l] };
            }
        }
        (*lo_out, *hi_out) = (lo[0], hi[0]);
    }
}
