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

/// Centroids per inner block (a multiple of every supported `k`: 16 and 256).
pub(crate) const CHUNK: usize = 16;

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
    assert!(k % CHUNK == 0 && ct.len() == k * dsub && half_norms.len() == k);
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
fn nearest_block<const P: usize>(
    ct: &[f32],
    half_norms: &[f32],
    k: usize,
    dsub: usize,
    x: &[f32],
    stride: usize,
) -> [u32; P] {
    let mut best_v = [[f32::INFINITY; CHUNK]; P];
    let mut best_i = [[0u32; CHUNK]; P];
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
            for l in 0..CHUNK {
                let s = hn[l] - acc[p][l];
                // Strict `<`: an earlier chunk wins ties, so per lane the lowest index wins.
                let better = s < best_v[p][l];
                best_v[p][l] = if better { s } else { best_v[p][l] };
                best_i[p][l] = if better { (c0 + l) as u32 } else { best_i[p][l] };
            }
        }
        c0 += CHUNK;
    }
    let mut out = [0u32; P];
    for p in 0..P {
        let mut bv = best_v[p][0];
        let mut bi = best_i[p][0];
        for l in 1..CHUNK {
            let (v, i) = (best_v[p][l], best_i[p][l]);
            if v < bv || (v == bv && i < bi) {
                bv = v;
                bi = i;
            }
        }
        // All scores NaN/inf cannot happen for finite inputs; index 0 is a safe fallback.
        out[p] = bi;
    }
    out
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
