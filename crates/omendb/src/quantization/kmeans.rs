//! Seeded k-means for one sub-space, and the small RNG it uses.

use super::kernels;
use super::simd;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, good enough for sampling.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by 128-bit multiply (Lemire); bias below 2^-64 * n.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// Seed of an independent stream, e.g. one per sub-space.
pub(crate) fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut r = Rng::new(seed ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    r.next_u64()
}

/// `count` distinct indices from `0..n` (`count <= n`), in the order drawn
/// (partial Fisher-Yates over an index array).
pub(crate) fn sample_indices(n: usize, count: usize, rng: &mut Rng) -> Vec<usize> {
    debug_assert!(count <= n);
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..count {
        let j = i + rng.below((n - i) as u64) as usize;
        idx.swap(i, j);
    }
    idx.truncate(count);
    idx
}

/// Relative perturbation when an empty cluster takes half of a big one (as faiss).
const SPLIT_EPS: f32 = 1.0 / 1024.0;

/// Problem statement for one sub-space.
pub(crate) struct Problem<'a> {
    /// `n x dsub`, row-major.
    pub data: &'a [f32],
    pub dsub: usize,
    /// Centroids wanted (16 or 256 for PQ; the IVF lists for the coarse quantizer).
    pub k: usize,
    pub iterations: u32,
    pub seed: u64,
    /// Threads for the assignment step (1 = run on the caller only).
    pub threads: usize,
}

/// Runs k-means and returns `k x dsub` centroids. Calls `on_iteration` after
/// each iteration (exactly `iterations` times, also when no iteration is needed).
///
/// - `n <= k`: the centroids are the points themselves, repeated cyclically to
///   fill `k` (exact for the sample; duplicates are never chosen by encoding,
///   which prefers the lowest index).
/// - otherwise: `k` distinct sample points chosen by the seeded RNG, then
///   `iterations` rounds of assignment + mean update; an empty cluster takes
///   half of a cluster chosen with probability proportional to `size - 1`,
///   and the two centroids are pushed apart by `1 +- SPLIT_EPS` (faiss).
///
/// Every finite input gives finite centroids: points or centroids beyond the
/// f32 kernel's safe range are assigned with f64 distances, means are taken
/// in f64, and a split never pushes a coordinate past f32::MAX.
pub(crate) fn kmeans(p: &Problem<'_>, on_iteration: &mut dyn FnMut()) -> Vec<f32> {
    let nearest = |c: &[f32], bias: &[f32], x: &[f32], out: &mut [u32]| super::gemm::nearest_rows(c, bias, p.dsub, x, out, p.threads);
    kmeans_with(p, &nearest, on_iteration)
}

/// A nearest-centroid search for `kmeans_with`: `(centroids, half_norms,
/// points, out)`, each point's centroid of smallest `half_norm - <x, c>`
/// (its nearest) into `out`.
pub(crate) type Nearest<'a> = dyn Fn(&[f32], &[f32], &[f32], &mut [u32]) + 'a;

/// `kmeans`, with the assignment of many centroids (more than the
/// register-blocked kernels take: the IVF lists) done by `nearest`.
pub(crate) fn kmeans_with(p: &Problem<'_>, nearest: &Nearest<'_>, on_iteration: &mut dyn FnMut()) -> Vec<f32> {
    let (dsub, k) = (p.dsub, p.k);
    let n = p.data.len() / dsub;
    debug_assert_eq!(p.data.len(), n * dsub);
    let mut centroids = vec![0.0f32; k * dsub];

    if n <= k {
        if n > 0 {
            for c in 0..k {
                let s = c % n;
                centroids[c * dsub..(c + 1) * dsub].copy_from_slice(&p.data[s * dsub..(s + 1) * dsub]);
            }
        }
        for _ in 0..p.iterations {
            on_iteration();
        }
        return centroids;
    }

    let mut rng = Rng::new(p.seed);
    for (c, &s) in sample_indices(n, k, &mut rng).iter().enumerate() {
        centroids[c * dsub..(c + 1) * dsub].copy_from_slice(&p.data[s * dsub..(s + 1) * dsub]);
    }

    let mut ct = vec![0.0f32; k * dsub];
    let mut half_norms = vec![0.0f32; k];
    let mut assign = vec![0u32; n];
    let mut sums = vec![0.0f64; k * dsub];
    let mut counts = vec![0u64; k];
    // Points whose f32 scores could over- or underflow are assigned in f64.
    let careful: Vec<usize> =
        (0..n).filter(|&i| !kernels::in_safe_range(simd::max_abs(&p.data[i * dsub..(i + 1) * dsub]))).collect();
    for _ in 0..p.iterations {
        if kernels::in_safe_range(simd::max_abs(&centroids)) {
            kernels::prepare(&centroids, k, dsub, &mut ct, &mut half_norms);
            if k <= kernels::MAX_K && k.is_multiple_of(kernels::CHUNK) {
                assign_parallel(&ct, &half_norms, k, dsub, p.data, n, &mut assign, p.threads);
            } else {
                // The IVF coarse centroids: thousands.
                nearest(&centroids, &half_norms, p.data, &mut assign);
            }
            for &i in &careful {
                assign[i] = kernels::nearest_f64(&centroids, k, dsub, &p.data[i * dsub..]);
            }
        } else {
            for (i, a) in assign.iter_mut().enumerate() {
                *a = kernels::nearest_f64(&centroids, k, dsub, &p.data[i * dsub..]);
            }
        }

        // Update: sums in f64, in point order, whatever the thread count.
        sums.fill(0.0);
        counts.fill(0);
        for (i, &a) in assign.iter().enumerate() {
            let a = a as usize;
            counts[a] += 1;
            let s = &mut sums[a * dsub..(a + 1) * dsub];
            for (acc, &v) in s.iter_mut().zip(&p.data[i * dsub..(i + 1) * dsub]) {
                *acc += v as f64;
            }
        }
        for c in 0..k {
            if counts[c] > 0 {
                let inv = 1.0 / counts[c] as f64;
                for d in 0..dsub {
                    // A mean of finite values, within their range: finite.
                    centroids[c * dsub + d] = (sums[c * dsub + d] * inv) as f32;
                }
            }
        }
        split_empty(&mut centroids, &mut counts, dsub, n, &mut rng);
        on_iteration();
    }
    centroids
}

/// Gives every empty cluster a copy of a populous one (faiss `split_clusters`).
fn split_empty(centroids: &mut [f32], counts: &mut [u64], dsub: usize, n: usize, rng: &mut Rng) {
    let k = counts.len();
    for ci in 0..k {
        if counts[ci] != 0 {
            continue;
        }
        // Weight of cluster j is counts[j] - 1; positive total since n > k and
        // at least one cluster is empty (pigeonhole: some cluster has >= 2).
        let total: u64 = counts.iter().map(|&c| c.saturating_sub(1)).sum();
        if total == 0 {
            debug_assert!(n <= k);
            return;
        }
        let mut r = rng.below(total);
        let mut cj = 0;
        loop {
            let w = counts[cj].saturating_sub(1);
            if r < w {
                break;
            }
            r -= w;
            cj += 1;
        }
        let (src, dst) = if cj < ci {
            let (a, b) = centroids.split_at_mut(ci * dsub);
            (&mut a[cj * dsub..(cj + 1) * dsub], &mut b[..dsub])
        } else {
            let (a, b) = centroids.split_at_mut(cj * dsub);
            (&mut b[..dsub], &mut a[ci * dsub..(ci + 1) * dsub])
        };
        for d in 0..dsub {
            let v = src[d];
            // Near f32::MAX the outward push would overflow: that side keeps v
            // (the inward one still moves, so the two stay apart).
            let (down, up) = (v * (1.0 - SPLIT_EPS), v * (1.0 + SPLIT_EPS));
            let up = if up.is_finite() { up } else { v };
            if d % 2 == 0 {
                (dst[d], src[d]) = (up, down);
            } else {
                (dst[d], src[d]) = (down, up);
            }
        }
        counts[ci] = counts[cj] / 2;
        counts[cj] -= counts[ci];
    }
}

/// Nearest-centroid assignment of `n` contiguous points, split across `threads`.
/// Each point's answer is independent of the split.
#[allow(clippy::too_many_arguments)]
pub(crate) fn assign_parallel(
    ct: &[f32],
    half_norms: &[f32],
    k: usize,
    dsub: usize,
    data: &[f32],
    n: usize,
    assign: &mut [u32],
    threads: usize,
) {
    // Below a few thousand points per thread, spawning costs more than it
    // saves (and a huge `threads` would start that many threads per
    // iteration).
    const MIN_POINTS_PER_THREAD: usize = 2048;
    let threads = threads.clamp(1, (n / MIN_POINTS_PER_THREAD).max(1));
    if threads == 1 {
        simd::nearest_many(ct, half_norms, k, dsub, data, dsub, n, assign);
        return;
    }
    crate::parallel::by_blocks(&data[..n * dsub], dsub, &mut assign[..n], 1, threads, |x, out| {
        simd::nearest_many(ct, half_norms, k, dsub, x, dsub, out.len(), out)
    });
}
