//! Nearest-centroid search as a matrix product, for many centroids (the
//! IVF coarse quantizer's thousands of lists, where the register-blocked
//! kernels of `kernels.rs`, built for 16 or 256 sub-space centroids, do not
//! apply): scores `bias[c] - <x, c>` for a block of rows against a block of
//! centroids by one GEMM, then the minimum.
//! For L2, `bias = |c|^2 / 2` (the same argmin as the squared distance);
//! for inner product, `bias = 0`.
//!
//! Callers keep values within `kernels::in_safe_range` (or score in f64):
//! the products would over- or underflow otherwise.
//!
//! `product` is the crate's one matrix product (the `gemm` crate), shared
//! with exact batch search (`search/blocked.rs`).

/// `out = queries . vectors^T` for `m` queries and `rows` vectors (both
/// row-major, `dim` values a row) by one GEMM: `out[i * m + q]`
/// (column-major) or, when `row_major`, `out[q * rows + i]`.
///
/// Column-major lets the product read the vectors in place; row-major
/// makes it copy (pack) each tile of vectors first, 27% of a batch of 100
/// queries, but spares packing the queries for every tile, which costs
/// more from a few hundred queries on (measured, 200,000 x 768, one
/// thread: 100 queries 0.42 s column-major against 0.58 s; 1,000 queries
/// 3.46 s against 3.18 s).
pub(crate) fn product(queries: &[f32], m: usize, vectors: &[f32], rows: usize, dim: usize, out: &mut [f32], row_major: bool) {
    assert!(queries.len() == m * dim && vectors.len() == rows * dim && out.len() == m * rows);
    let (out_cs, out_rs) = if row_major { (1, rows as isize) } else { (m as isize, 1) };
    // SAFETY: the three matrices lie inside their slices (asserted just
    // above): `dst` is m x rows (`out`, m * rows floats) with the strides
    // of the layout asked for, `lhs` the m x dim queries row-major, `rhs`
    // the dim x rows transpose of the rows x dim `vectors` (column j is
    // row j of `vectors`: column stride dim, row stride 1). `read_dst` is
    // false, so `out`'s old contents are never read.
    unsafe {
        gemm::gemm(
            m,
            rows,
            dim,
            out.as_mut_ptr(),
            out_cs,
            out_rs,
            false,
            queries.as_ptr(),
            1,
            dim as isize,
            vectors.as_ptr(),
            dim as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Rows per block: with `LISTS_PER_BLOCK` columns, the scores stay in L2.
const ROWS_PER_BLOCK: usize = 64;
/// Centroids per block.
const LISTS_PER_BLOCK: usize = 1024;

/// `out[r * cols + c] = bias[c0 + c] - <x_r, centroid_{c0 + c}>` for the
/// `rows` rows of `x` (row-major, `dim` wide) and centroids `c0..c0 + cols`.
// (The grouped coarse assignment wants the scores themselves;
// `nearest_rows` scores column-major and keeps only the best.)
#[allow(clippy::too_many_arguments)]
pub(crate) fn scores(centroids: &[f32], bias: &[f32], dim: usize, x: &[f32], rows: usize, c0: usize, cols: usize, out: &mut [f32]) {
    assert!(x.len() >= rows * dim && centroids.len() >= (c0 + cols) * dim && bias.len() >= c0 + cols);
    assert!(out.len() >= rows * cols);
    if rows == 0 || cols == 0 {
        return;
    }
    let centroids = &centroids[c0 * dim..(c0 + cols) * dim];
    product(&x[..rows * dim], rows, centroids, cols, dim, &mut out[..rows * cols], true);
    for row in out[..rows * cols].chunks_exact_mut(cols) {
        for (s, &b) in row.iter_mut().zip(&bias[c0..c0 + cols]) {
            *s = b - *s;
        }
    }
}

/// For each row of `x` (`out.len()` rows, `dim` wide), the centroid with the
/// smallest score (ties to the lowest index). `threads` (0 = 1) splits the
/// rows in whole blocks, so each row's answer does not depend on it.
pub(crate) fn nearest_rows(centroids: &[f32], bias: &[f32], dim: usize, x: &[f32], out: &mut [u32], threads: usize) {
    let n = out.len();
    assert!(x.len() >= n * dim);
    // A few blocks per thread at least, so spawning pays.
    let threads = threads.min(n.div_ceil(ROWS_PER_BLOCK).div_ceil(8));
    crate::parallel::by_blocks(x, dim, out, ROWS_PER_BLOCK, threads, |x, out| {
        let mut buf = vec![0.0f32; ROWS_PER_BLOCK * LISTS_PER_BLOCK.min(bias.len())];
        let mut best = [(f32::INFINITY, 0u32); ROWS_PER_BLOCK];
        for (xb, ob) in x.chunks(ROWS_PER_BLOCK * dim.max(1)).zip(out.chunks_mut(ROWS_PER_BLOCK)) {
            let rows = ob.len();
            best[..rows].fill((f32::INFINITY, 0));
            let k = bias.len();
            for c0 in (0..k).step_by(LISTS_PER_BLOCK) {
                let cols = LISTS_PER_BLOCK.min(k - c0);
                // Column-major: the product reads the centroids in place
                // instead of packing all of them again for every block of
                // rows (a fifth of k-means' time at 768 dimensions).
                let block = &centroids[c0 * dim..(c0 + cols) * dim];
                product(&xb[..rows * dim], rows, block, cols, dim, &mut buf[..rows * cols], false);
                for (c, dots) in buf[..rows * cols].chunks_exact(rows).enumerate() {
                    let (list, bias) = ((c0 + c) as u32, bias[c0 + c]);
                    for (b, &dot) in best[..rows].iter_mut().zip(dots) {
                        let s = bias - dot;
                        if s < b.0 {
                            *b = (s, list);
                        }
                    }
                }
            }
            for (o, b) in ob.iter_mut().zip(&best[..rows]) {
                *o = b.1;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rows_matches_brute_force() {
        let (dim, k, n) = (7, 1500, 300);
        let mut rng = crate::quantization::kmeans::Rng::new(5);
        let mut val = || (rng.below(2001) as f32 - 1000.0) / 100.0;
        let centroids: Vec<f32> = (0..k * dim).map(|_| val()).collect();
        let x: Vec<f32> = (0..n * dim).map(|_| val()).collect();
        let half: Vec<f32> = centroids.chunks(dim).map(|c| 0.5 * c.iter().map(|v| v * v).sum::<f32>()).collect();
        for threads in [1, 3] {
            let mut out = vec![0u32; n];
            nearest_rows(&centroids, &half, dim, &x, &mut out, threads);
            for (i, &got) in out.iter().enumerate() {
                let row = &x[i * dim..(i + 1) * dim];
                let d = |c: usize| crate::search::distance::l2_squared_f64(&centroids[c * dim..(c + 1) * dim], row);
                let best = (0..k).map(d).fold(f64::INFINITY, f64::min);
                // The GEMM scores are f32: the winner is within rounding of the best.
                assert!(d(got as usize) <= best * (1.0 + 1e-4) + 1e-4, "row {i}: {} vs {best}", d(got as usize));
            }
        }
    }
}
