//! The coarse quantizer's screen for assignment: the few directions that
//! hold nearly all of the centroids' spread (their principal subspace).
//!
//! A vector's score against a centroid, `bias - <x, c>`, splits into the
//! part inside that subspace (a short dot product: `d` of `dim` values)
//! and the part outside it, which is at most `|x'_out| * |c'_out|` (primes:
//! centred on the centroids' mean; Cauchy-Schwarz). With both norms known,
//! every centroid gets an interval that holds its true score; only the
//! centroids whose interval reaches below the best upper end can be the
//! nearest, and only those are scored in full. So the list chosen is the
//! one scoring every centroid gives (up to f32 rounding between
//! near-ties, which the slack below covers); the data decide only how
//! much work it saves: on the clustered 1M x 768 set of the benchmarks,
//! 16 directions of 768 (tuned on the vectors: `Screen::build`) leave
//! about 6 of 1,000 centroids as candidates, scored nearest-first until
//! none can win.
//!
//! Derived data, never stored: built from the centroids and the first
//! vectors assigned (seeded: the same centroids and vectors give the same
//! screen) at a store's first assignment after open, and by training's
//! k-means at its second iteration, then moved to each later iteration's
//! centroids (`Screen::for_rows`).

use crate::quantization::{gemm, kernels};
use crate::quantization::kmeans::Rng;
use crate::quantization::PqMetric;
use crate::search::distance::{dot, dot_f64};

/// Share of the centroids' spread (squared distances to their mean) the
/// kept directions must hold (fewer directions, more centroids to score).
const KEEP: f64 = 0.99;
/// Below this share held by the most directions allowed, no screen: too
/// many centroids would pass it (random centroids, isotropic data).
const MIN_HELD: f64 = 0.9;
/// At most this many directions, and at most a quarter of the dimensions.
const MAX_DIRECTIONS: usize = 64;
/// Block power iterations finding the subspace: the directions need not
/// be exact eigenvectors (any orthonormal basis keeps the bound true),
/// only to hold most of the spread.
const POWER_ITERATIONS: usize = 4;
const SEED: u64 = 0x05C8_EE11_D1EC;
/// Rows that the directions are found from (a sample beyond that: from
/// 4,096 rows, building took 0.13 s at 4,096 lists of 768 dimensions).
const SAMPLE_ROWS: usize = 1024;
/// `Screen::nearest`'s answer for a vector beyond the f32-safe range
/// (checked as it is centred): its caller scores it in f64.
pub(super) const BEYOND_F32: u32 = u32::MAX;
/// Vectors screened at once (one matrix product each for the projection
/// and the screen).
pub(super) const BLOCK: usize = 256;
/// Vectors the number of directions is tuned on (the first this many of
/// those given), and the fewest that tune it: with fewer, `KEEP` decides.
const PROBES: usize = 256;
pub(super) const MIN_PROBES: usize = 64;
/// A candidate's full score costs this many multiply-adds of the screen's
/// products (each of its `dim`: one `dot` against a centroid fetched from
/// cache, 0.195 ns a multiply-add, against 0.018 in the projection and the
/// screen's product; 1M x 768 clustered, 1,000 lists), and scoring every
/// row when the screen is too wide a third of one (a deep matrix product).
const CANDIDATE_COST: usize = 11;
const WIDE_COST_DIVISOR: usize = 3;

/// See the module documentation.
#[derive(Debug, Clone)]
pub(super) struct Screen {
    /// Directions kept.
    d: usize,
    dim: usize,
    /// `d x dim`, orthonormal rows.
    basis: Vec<f32>,
    /// The centroids' mean.
    mean: Vec<f32>,
    /// `rows x d`: each centred centroid's coordinates in the basis.
    coords: Vec<f32>,
    /// Per row, the score's part that depends on the centroid alone,
    /// centred (`|c'|^2 / 2` for L2, `-<mean, c'>` for inner product).
    offset: Vec<f32>,
    /// Per row, `|c'_out|`: the centred centroid's norm outside the basis.
    outside: Vec<f32>,
    /// The largest `|c'|^2`: the scale of the rounding slack.
    spread: f32,
    metric: PqMetric,
    /// `|mean|^2`, and bounds on every row's `|c|` and `|bias|`: the scale
    /// of the rounding between a full score and its centred counterpart.
    mean_sq: f32,
    row_norm_max: f32,
    bias_max: f32,
}

impl Screen {
    /// The screen of `rows` (`dim` wide, finite, within the f32-safe
    /// range), or `None` where it would not pay: fewer than 8 directions
    /// allowed, the directions holding under `MIN_HELD` of the spread, or
    /// `pays` says no.
    ///
    /// How many directions: with `MIN_PROBES` vectors or more in `probes`
    /// (row-major; vectors like those that will be screened), the number
    /// (a multiple of 8) that screens the first `PROBES` of them in the
    /// fewest multiply-adds, counting each candidate's full score; else the
    /// fewest holding `KEEP` of the spread. The directions decide only how
    /// much work the screen saves, never which row it finds: the
    /// centroids' spread says little about the vectors' own part outside
    /// the directions, which widens every interval (on 1M x 768 clustered
    /// vectors, 1,000 lists: `KEEP` took 40 directions, 5.1 candidates a
    /// vector, where 16 leave 5.8 and screen in 0.77x the time).
    pub fn build(rows: &[f32], dim: usize, metric: PqMetric, probes: &[f32]) -> Option<Screen> {
        Screen::build_inner(rows, dim, metric, probes, None)
    }

    /// The screen with `d` directions, whether it pays or not.
    #[cfg(test)]
    fn build_with(rows: &[f32], dim: usize, metric: PqMetric, d: usize) -> Screen {
        Screen::build_inner(rows, dim, metric, &[], Some(d)).expect("rows with some spread")
    }

    fn build_inner(rows: &[f32], dim: usize, metric: PqMetric, probes: &[f32], forced: Option<usize>) -> Option<Screen> {
        let n = rows.len() / dim.max(1);
        let most = (MAX_DIRECTIONS.min(dim / 4).min(n) / 8) * 8;
        if most == 0 || !pays(8, dim, n) {
            return None;
        }
        // The directions, and whether they pay, from at most SAMPLE_ROWS
        // of the rows, centred on the sample's mean (any centre keeps the
        // bound true: every row's part outside the directions is measured
        // below).
        let step = n.div_ceil(SAMPLE_ROWS);
        let mut mean = vec![0.0f64; dim];
        for row in rows.chunks_exact(dim).step_by(step) {
            mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
        }
        let sampled = n.div_ceil(step);
        // Rounded to f32 at once: vectors are centred on the f32 value,
        // so the rows must be too (else the difference would be a term
        // the bound does not hold).
        mean.iter_mut().for_each(|m| *m = (*m / sampled as f64) as f32 as f64);
        let sample = centre(rows.chunks_exact(dim).step_by(step), &mean);
        let total: f64 = sample.chunks_exact(dim).map(|r| dot_f64(r, r)).sum();
        if total == 0.0 {
            return None;
        }
        let (basis, spread_of) = principal_directions(&sample, sampled, dim, most);
        // The fewest directions (a multiple of 8) that hold KEEP of it.
        let mut d = most;
        let mut held = 0.0;
        for (i, &s) in spread_of.iter().enumerate() {
            held += s;
            if (i + 1) % 8 == 0 && held >= KEEP * total {
                d = i + 1;
                break;
            }
        }
        if held < MIN_HELD * total && forced.is_none() {
            return None;
        }
        let centred = if step == 1 { sample } else { centre(rows.chunks_exact(dim), &mean) };
        let norms: Vec<f64> = centred.chunks_exact(dim).map(|r| dot_f64(r, r)).collect();
        let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        let with = |d: usize| Screen::with_directions(&centred, &norms, &basis[..d * dim], d, dim, &mean, &mean32, metric);
        if let Some(d) = forced {
            return Some(with(d));
        }
        let probes = &probes[..probes.len().min(PROBES * dim)];
        if probes.len() / dim < MIN_PROBES {
            return pays(d, dim, n).then(|| with(d));
        }
        let bias = super::groups::row_bias(rows, dim, metric);
        let mut best: Option<(usize, Screen)> = None;
        for d in (8..=most).step_by(8).filter(|&d| pays(d, dim, n)) {
            let screen = with(d);
            let mut scratch = Scratch::default();
            let mut got = vec![0u32; probes.len() / dim];
            for (x, o) in probes.chunks(BLOCK * dim).zip(got.chunks_mut(BLOCK)) {
                screen.nearest(rows, &bias, x, o, &mut scratch);
            }
            let cost = got.len() * d * (dim + n) + scratch.candidates_scored * CANDIDATE_COST * dim + scratch.wide * n * dim / WIDE_COST_DIVISOR;
            if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                best = Some((cost, screen));
            }
        }
        // Not worth it unless it beats scoring every row several times
        // over (as `pays` asks of the multiply-adds alone).
        best.filter(|(cost, _)| 4 * cost <= probes.len() / dim * n * dim).map(|(_, screen)| screen)
    }

    /// The screen of `rows` (as many, as wide and as finite as those this
    /// one was built from) in this one's directions and around its centre.
    pub fn for_rows(&self, rows: &[f32]) -> Screen {
        let dim = self.dim;
        let mean: Vec<f64> = self.mean.iter().map(|&m| m as f64).collect();
        let centred = centre(rows.chunks_exact(dim), &mean);
        let norms: Vec<f64> = centred.chunks_exact(dim).map(|r| dot_f64(r, r)).collect();
        Screen::with_directions(&centred, &norms, &self.basis, self.d, dim, &mean, &self.mean, self.metric)
    }

    /// The screen of the centred `rows` (their squared norms `norms`) in
    /// the `d` directions `basis`.
    #[allow(clippy::too_many_arguments)]
    fn with_directions(centred: &[f32], norms: &[f64], basis: &[f32], d: usize, dim: usize, mean: &[f64], mean32: &[f32], metric: PqMetric) -> Screen {
        let n = norms.len();
        let mut coords = vec![0.0f32; n * d];
        gemm::product(centred, n, basis, d, dim, &mut coords, true);
        let (mut offset, mut outside, mut spread) = (Vec::with_capacity(n), Vec::with_capacity(n), 0.0f32);
        for ((c, k), &norm2) in centred.chunks_exact(dim).zip(coords.chunks_exact(d)).zip(norms) {
            // The part outside the basis, `|c'|^2 - |k|^2`: the coordinates'
            // f32 rounding (relative, about 1e-6 of |c'|^2 at most) is added
            // back, so that the norm is never under-estimated.
            let inside = dot_f64(k, k);
            outside.push(((norm2 - inside).max(0.0) + 1e-5 * norm2).sqrt() as f32);
            spread = spread.max(norm2 as f32);
            offset.push(match metric {
                PqMetric::L2 => (0.5 * norm2) as f32,
                PqMetric::InnerProduct => -c.iter().zip(mean).map(|(&v, &m)| v as f64 * m).sum::<f64>() as f32,
            });
        }
        let mean_sq = dot_f64(mean32, mean32);
        let row_norm_max = (spread as f64).sqrt() + mean_sq.sqrt();
        let bias_max = if metric == PqMetric::L2 { 0.5 * row_norm_max * row_norm_max } else { 0.0 };
        Screen {
            d,
            dim,
            basis: basis.to_vec(),
            mean: mean32.to_vec(),
            coords,
            offset,
            outside,
            spread,
            metric,
            mean_sq: mean_sq as f32,
            row_norm_max: row_norm_max as f32,
            bias_max: bias_max as f32,
        }
    }

    /// Directions kept.
    #[cfg(test)]
    pub fn directions(&self) -> usize {
        self.d
    }

    /// For a centred vector (squared norm `norm2`, the rounding slack of
    /// its centred scores `slack`): the shift from a centred score to the
    /// full one, and the margin for the full score's rounding (`dot`'s:
    /// at most (dim + 4) eps times the sum of the products' magnitudes).
    fn skip_terms(&self, centred: &[f32], norm2: f32, slack: f32) -> (f32, f32) {
        let xm = dot(centred, &self.mean);
        let shift = match self.metric {
            PqMetric::L2 => -xm - 0.5 * self.mean_sq,
            PqMetric::InnerProduct => -xm - self.mean_sq,
        };
        let (x_centred, mean_norm) = (norm2.sqrt(), self.mean_sq.sqrt());
        let gamma = (self.dim + 4) as f32 * f32::EPSILON;
        let margin = slack + gamma * ((x_centred + mean_norm) * self.row_norm_max + self.bias_max + x_centred * mean_norm + self.mean_sq);
        (shift, margin)
    }

    /// The directions (`d x dim`, orthonormal rows) and the centre.
    pub fn projection(&self) -> (&[f32], &[f32]) {
        (&self.basis, &self.mean)
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        4 * (self.basis.capacity() + self.mean.capacity() + self.coords.capacity() + self.offset.capacity() + self.outside.capacity())
    }

    /// For each vector of `x` (row-major, at most `BLOCK` of them), the
    /// row of `rows` with the smallest `bias[row] - <x, row>` (ties to the
    /// lower row, as `gemm::nearest_rows`) into `out`, or `BEYOND_F32`
    /// for a vector outside the f32-safe range. `rows` and `bias` are
    /// those the screen was built from.
    pub fn nearest(&self, rows: &[f32], bias: &[f32], x: &[f32], out: &mut [u32], scratch: &mut Scratch) {
        let (d, dim, n) = (self.d, self.dim, out.len());
        let nrows = bias.len();
        debug_assert!(n <= BLOCK && x.len() == n * dim && rows.len() == nrows * dim);
        let Scratch {
            centred,
            norms,
            unsafe_rows,
            projected,
            scores,
            candidates,
            by_lower,
            fallback,
            candidates_scored,
            wide,
            score_every_candidate,
        } = scratch;
        centred.clear();
        norms.clear();
        unsafe_rows.clear();
        for (i, v) in x.chunks_exact(dim).enumerate() {
            if !kernels::in_safe_range(crate::quantization::simd_max_abs(v)) {
                unsafe_rows.push(i);
            }
            let start = centred.len();
            centred.extend(v.iter().zip(&self.mean).map(|(&a, &m)| a - m));
            let c = &centred[start..];
            norms.push(dot(c, c));
        }
        projected.resize(n * d, 0.0);
        gemm::product(centred, n, &self.basis, d, dim, projected, true);
        scores.resize(n * nrows, 0.0);
        gemm::scores(&self.coords, &self.offset, d, projected, n, 0, nrows, scores);
        fallback.clear();
        for (i, o) in out.iter_mut().enumerate() {
            if unsafe_rows.contains(&i) {
                *o = BEYOND_F32;
                continue;
            }
            let (p, s) = (&projected[i * d..(i + 1) * d], &scores[i * nrows..(i + 1) * nrows]);
            let norm2 = norms[i];
            // |x'_out|, from |x'|^2 - |x'_in|^2: the small term under the
            // root covers that difference's rounding (it only widens).
            let out_norm = ((norm2 - dot(p, p)).max(0.0) + 1e-5 * norm2).sqrt();
            let slack = 1e-4 * (norm2 + self.spread);
            screen_rows(s, &self.outside, out_norm, slack, candidates);
            if candidates.len() * 8 > nrows.max(64) {
                // Too wide to pay: scored with every row below.
                fallback.push(i as u32);
                *wide += 1;
                continue;
            }
            // The candidates in the order of their intervals' lower ends,
            // up to the first that cannot beat the best full score so far:
            // a row's full score is its centred score (at least `lower -
            // slack`) plus a shift, up to a rounding margin (`skip_terms`).
            // So the row found is the one scoring every candidate gives,
            // with fewer centroids fetched.
            by_lower.clear();
            by_lower.extend(candidates.iter().map(|&r| (s[r as usize] - out_norm * self.outside[r as usize], r)));
            by_lower.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            // (A lone candidate needs no bound: it is the nearest.)
            let skip = (by_lower.len() > 1 && !*score_every_candidate)
                .then(|| self.skip_terms(&centred[i * dim..(i + 1) * dim], norm2, slack));
            let v = &x[i * dim..(i + 1) * dim];
            let mut best = (f32::INFINITY, u32::MAX);
            for &(lower, row) in by_lower.iter() {
                if skip.is_some_and(|(shift, margin)| lower > best.0 - shift + margin) {
                    break;
                }
                *candidates_scored += 1;
                let r = row as usize;
                let score = bias[r] - dot(v, &rows[r * dim..(r + 1) * dim]);
                if score < best.0 || (score == best.0 && row < best.1) {
                    best = (score, row);
                }
            }
            *o = if best.1 == u32::MAX { 0 } else { best.1 };
        }
        if !fallback.is_empty() {
            let wide: Vec<f32> = fallback.iter().flat_map(|&i| &x[i as usize * dim..(i as usize + 1) * dim]).copied().collect();
            let mut got = vec![0u32; fallback.len()];
            gemm::nearest_rows(rows, bias, dim, &wide, &mut got, 1);
            for (&i, &row) in fallback.iter().zip(&got) {
                out[i as usize] = row;
            }
        }
    }
}

/// `rows` less `mean`, computed in f64 and rounded once (as the rows the
/// screen measures must be: see `Screen::build`), one after another.
fn centre<'a>(rows: impl Iterator<Item = &'a [f32]>, mean: &[f64]) -> Vec<f32> {
    let mut out = Vec::new();
    for r in rows {
        out.extend(r.iter().zip(mean).map(|(&v, &m)| (v as f64 - m) as f32));
    }
    out
}

/// Buffers `Screen::nearest` reuses from block to block.
#[derive(Default)]
pub(super) struct Scratch {
    centred: Vec<f32>,
    norms: Vec<f32>,
    /// The vectors (of the block) beyond the f32-safe range.
    unsafe_rows: Vec<usize>,
    projected: Vec<f32>,
    scores: Vec<f32>,
    candidates: Vec<u32>,
    /// The candidates with their intervals' lower ends.
    by_lower: Vec<(f32, u32)>,
    fallback: Vec<u32>,
    /// Candidates scored in full, and vectors scored against every row,
    /// so far (what tuning the directions counts).
    candidates_scored: usize,
    wide: usize,
    /// Score every candidate, none skipped (what the tests compare with).
    score_every_candidate: bool,
}

/// Whether projecting onto `d` directions and screening `rows` centroids
/// in them (plus a few centroids scored in full) costs at most a quarter
/// of scoring every centroid, in multiply-adds a vector: the screen's
/// passes over each vector and its scores run slower than the full
/// product's kernel (`ivf_put coarse` at 128 dimensions, 256 lists: a
/// screen that saved two thirds of the multiply-adds took 1.9x as long).
fn pays(d: usize, dim: usize, rows: usize) -> bool {
    4 * (d * (dim + rows) + 8 * dim) <= rows * dim
}

/// The rows whose interval reaches below the lowest upper end (plus
/// `slack`) into `candidates`, in row order; returns that ceiling. With
/// AVX-512 the same operations in registers (a multiply, then an add or
/// a subtraction: no fused multiply-add), so the same ceiling and
/// candidates. (Built for the baseline x86-64, these two passes over every
/// row ran in SSE with a scalar test of each lane: a third of an
/// assignment at 1,024 lists of 768 dimensions, perf.)
fn screen_rows(scores: &[f32], outside: &[f32], out_norm: f32, slack: f32, candidates: &mut Vec<u32>) -> f32 {
    assert_eq!(scores.len(), outside.len(), "screen: one bound per row");
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::avx512f() {
        // SAFETY: AVX-512F was detected on this CPU just above, and the
        // lengths are equal (asserted): what `screen_rows_avx512` requires.
        return unsafe { screen_rows_avx512(scores, outside, out_norm, slack, candidates) };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::avx2() {
        // SAFETY: AVX2 was detected on this CPU just above, and the lengths
        // are equal (asserted): what `screen_rows_avx2` requires.
        return unsafe { screen_rows_avx2(scores, outside, out_norm, slack, candidates) };
    }
    screen_rows_lanes(scores, outside, out_norm, slack, candidates)
}

/// Every path of [`screen_rows`] this CPU runs, by name: the ceiling and
/// the candidates.
#[cfg(test)]
fn screen_rows_all_paths(scores: &[f32], outside: &[f32], out_norm: f32, slack: f32) -> Vec<(&'static str, f32, Vec<u32>)> {
    let mut runs = Vec::new();
    let mut c = Vec::new();
    runs.push(("lanes", screen_rows_lanes(scores, outside, out_norm, slack, &mut c), c.clone()));
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 detected just above; the callers pass equal lengths.
            runs.push(("avx2", unsafe { screen_rows_avx2(scores, outside, out_norm, slack, &mut c) }, c.clone()));
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F detected just above; the callers pass equal lengths.
            runs.push(("avx512", unsafe { screen_rows_avx512(scores, outside, out_norm, slack, &mut c) }, c.clone()));
        }
    }
    runs
}

/// The SIMD passes' scalar rest: `lowest` lowered by rows `from..` of the
/// upper ends, the same operations as in the registers.
#[cfg(target_arch = "x86_64")]
fn rest_lowest(scores: &[f32], outside: &[f32], out_norm: f32, from: usize, lowest: f32) -> f32 {
    scores[from..].iter().zip(&outside[from..]).fold(lowest, |low, (&s, &o)| low.min(s + out_norm * o))
}

/// The SIMD passes' scalar rest: rows `from..` whose lower end is at most
/// `ceiling` into `candidates`.
#[cfg(target_arch = "x86_64")]
fn push_rest(scores: &[f32], outside: &[f32], out_norm: f32, from: usize, ceiling: f32, candidates: &mut Vec<u32>) {
    for (i, (&s, &o)) in scores.iter().zip(outside).enumerate().skip(from) {
        if s - out_norm * o <= ceiling {
            candidates.push(i as u32);
        }
    }
}

/// Rows `first + b` for each set bit `b` of `mask` into `candidates`, in order.
#[cfg(target_arch = "x86_64")]
#[inline]
fn push_lanes(candidates: &mut Vec<u32>, first: usize, mut mask: u64) {
    while mask != 0 {
        candidates.push(first as u32 + mask.trailing_zeros());
        mask &= mask - 1;
    }
}

/// [`screen_rows`] in AVX2 registers, as [`screen_rows_avx512`] (the same
/// operations, eight lanes at a time).
///
/// Requires: AVX2 on this CPU; `scores.len() == outside.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn screen_rows_avx2(scores: &[f32], outside: &[f32], out_norm: f32, slack: f32, candidates: &mut Vec<u32>) -> f32 {
    use std::arch::x86_64::*;
    const LANES: usize = 8;
    let full = scores.len() / LANES * LANES;
    let (sp, op) = (scores.as_ptr(), outside.as_ptr());
    let norm = _mm256_set1_ps(out_norm);
    let mut lowest = _mm256_set1_ps(f32::INFINITY);
    for i in (0..full).step_by(LANES) {
        // SAFETY: i + 8 <= full <= scores.len() = outside.len().
        let (s, o) = (_mm256_loadu_ps(sp.add(i)), _mm256_loadu_ps(op.add(i)));
        lowest = _mm256_min_ps(lowest, _mm256_add_ps(s, _mm256_mul_ps(norm, o)));
    }
    let mut lanes = [0f32; LANES];
    // SAFETY: eight f32s; unaligned store.
    _mm256_storeu_ps(lanes.as_mut_ptr(), lowest);
    let lowest = rest_lowest(scores, outside, out_norm, full, lanes.iter().fold(f32::INFINITY, |a, &b| a.min(b)));
    let ceiling = lowest + slack;
    let top = _mm256_set1_ps(ceiling);
    candidates.clear();
    for i in (0..full).step_by(LANES) {
        // SAFETY: as above.
        let (s, o) = (_mm256_loadu_ps(sp.add(i)), _mm256_loadu_ps(op.add(i)));
        push_lanes(candidates, i, _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(_mm256_sub_ps(s, _mm256_mul_ps(norm, o)), top)) as u32 as u64);
    }
    push_rest(scores, outside, out_norm, full, ceiling, candidates);
    ceiling
}

/// [`screen_rows`] in AVX-512 registers.
///
/// Requires: AVX-512F on this CPU; `scores.len() == outside.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn screen_rows_avx512(scores: &[f32], outside: &[f32], out_norm: f32, slack: f32, candidates: &mut Vec<u32>) -> f32 {
    use std::arch::x86_64::*;
    const LANES: usize = 16;
    let full = scores.len() / LANES * LANES;
    let (sp, op) = (scores.as_ptr(), outside.as_ptr());
    let norm = _mm512_set1_ps(out_norm);
    let mut lowest = _mm512_set1_ps(f32::INFINITY);
    for i in (0..full).step_by(LANES) {
        // SAFETY: i + 16 <= full <= scores.len() = outside.len().
        let (s, o) = (_mm512_loadu_ps(sp.add(i)), _mm512_loadu_ps(op.add(i)));
        lowest = _mm512_min_ps(lowest, _mm512_add_ps(s, _mm512_mul_ps(norm, o)));
    }
    let lowest = rest_lowest(scores, outside, out_norm, full, _mm512_reduce_min_ps(lowest));
    let ceiling = lowest + slack;
    let top = _mm512_set1_ps(ceiling);
    candidates.clear();
    for i in (0..full).step_by(LANES) {
        // SAFETY: as above.
        let (s, o) = (_mm512_loadu_ps(sp.add(i)), _mm512_loadu_ps(op.add(i)));
        push_lanes(candidates, i, u64::from(_mm512_cmp_ps_mask::<_CMP_LE_OQ>(_mm512_sub_ps(s, _mm512_mul_ps(norm, o)), top)));
    }
    push_rest(scores, outside, out_norm, full, ceiling, candidates);
    ceiling
}

/// [`screen_rows`] in lanes of 16 the compiler vectorizes: the lowest
/// upper end `screen + out_norm * outside`, then the test `screen -
/// out_norm * outside <= ceiling` of 16 lanes at once (few hold a
/// candidate).
fn screen_rows_lanes(scores: &[f32], outside: &[f32], out_norm: f32, slack: f32, candidates: &mut Vec<u32>) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [f32::INFINITY; LANES];
    let (s_blocks, o_blocks) = (scores.chunks_exact(LANES), outside.chunks_exact(LANES));
    let (s_rest, o_rest) = (s_blocks.remainder(), o_blocks.remainder());
    for (s, o) in s_blocks.zip(o_blocks) {
        for j in 0..LANES {
            let v = s[j] + out_norm * o[j];
            lanes[j] = if v < lanes[j] { v } else { lanes[j] };
        }
    }
    let mut lowest = lanes.iter().fold(f32::INFINITY, |a, &b| a.min(b));
    for (&s, &o) in s_rest.iter().zip(o_rest) {
        lowest = lowest.min(s + out_norm * o);
    }
    let ceiling = lowest + slack;
    candidates.clear();
    for (chunk, (sc, oc)) in scores.chunks(LANES).zip(outside.chunks(LANES)).enumerate() {
        let hit = sc.iter().zip(oc).fold(false, |h, (&a, &b)| h | (a - out_norm * b <= ceiling));
        if hit {
            for (j, (&a, &b)) in sc.iter().zip(oc).enumerate() {
                if a - out_norm * b <= ceiling {
                    candidates.push((chunk * LANES + j) as u32);
                }
            }
        }
    }
    ceiling
}

/// `k` orthonormal directions (`k x dim`, row-major) holding most of the
/// spread of the `n x dim` centred rows, most first, and the spread along
/// each (sum of squared coordinates): block power iteration from seeded
/// random directions, then a Rayleigh-Ritz rotation (Jacobi) that sorts
/// them.
fn principal_directions(centred: &[f32], n: usize, dim: usize, k: usize) -> (Vec<f32>, Vec<f64>) {
    let mut rng = Rng::new(SEED);
    let mut q: Vec<f32> = (0..k * dim).map(|_| (rng.below(1 << 20) as f32 / (1 << 19) as f32) - 1.0).collect();
    orthonormalize(&mut q, k, dim);
    // The rows transposed (`dim x n`), for `C'^T Z` as one product.
    // (In tiles, so that the scattered writes stay in cache.)
    const TILE: usize = 32;
    let mut transposed = vec![0.0f32; dim * n];
    for i0 in (0..n).step_by(TILE) {
        for j0 in (0..dim).step_by(TILE) {
            for i in i0..(i0 + TILE).min(n) {
                for j in j0..(j0 + TILE).min(dim) {
                    transposed[j * n + i] = centred[i * dim + j];
                }
            }
        }
    }
    let mut z = vec![0.0f32; k * n];
    for _ in 0..POWER_ITERATIONS {
        // z = Q C'^T (k x n), then Q = orth(z C') (k x dim).
        gemm::product(&q, k, centred, n, dim, &mut z, true);
        gemm::product(&z, k, &transposed, dim, n, &mut q, true);
        orthonormalize(&mut q, k, dim);
    }
    // Rayleigh-Ritz: the k x k matrix (C' Q^T)^T (C' Q^T), diagonalized.
    gemm::product(&q, k, centred, n, dim, &mut z, true);
    let z64: Vec<f64> = z.iter().map(|&v| v as f64).collect();
    let mut t = vec![0.0f64; k * k];
    for a in 0..k {
        for b in a..k {
            let v = dot64(&z64[a * n..(a + 1) * n], &z64[b * n..(b + 1) * n]);
            t[a * k + b] = v;
            t[b * k + a] = v;
        }
    }
    let (values, vectors) = jacobi_eigen(t, k);
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    let mut out = vec![0.0f32; k * dim];
    for (new, &e) in order.iter().enumerate() {
        let row = &mut out[new * dim..(new + 1) * dim];
        for a in 0..k {
            let w = vectors[a * k + e];
            row.iter_mut().zip(&q[a * dim..(a + 1) * dim]).for_each(|(r, &v)| *r += (w * v as f64) as f32);
        }
    }
    orthonormalize(&mut out, k, dim);
    (out, order.iter().map(|&e| values[e].max(0.0)).collect())
}

/// Modified Gram-Schmidt on the `k` rows of `q` (in f64); a row that
/// vanishes is replaced by a unit vector orthogonal to those before it.
fn orthonormalize(q: &mut [f32], k: usize, dim: usize) {
    let mut rows: Vec<f64> = q.iter().map(|&v| v as f64).collect();
    for i in 0..k {
        let (done, rest) = rows.split_at_mut(i * dim);
        let row = &mut rest[..dim];
        for attempt in 0..=dim {
            for prev in done.chunks_exact(dim) {
                let p = dot64(row, prev);
                row.iter_mut().zip(prev).for_each(|(a, b)| *a -= p * b);
            }
            let norm = dot64(row, row).sqrt();
            if norm > 1e-9 {
                row.iter_mut().for_each(|a| *a /= norm);
                break;
            }
            // Degenerate (the rows span fewer directions): a basis vector.
            row.iter_mut().enumerate().for_each(|(d, a)| *a = f64::from(u8::from(d == (i + attempt) % dim)));
        }
    }
    q.iter_mut().zip(&rows).for_each(|(d, &s)| *d = s as f32);
}

/// `<a, b>` in f64, in lanes the compiler vectorizes.
fn dot64(a: &[f64], b: &[f64]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            lanes[j] += x[j] * y[j];
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Eigenvalues and eigenvectors (column `e` of the row-major `k x k`
/// result) of the symmetric `a`, by cyclic Jacobi rotations.
fn jacobi_eigen(mut a: Vec<f64>, k: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0f64; k * k];
    (0..k).for_each(|i| v[i * k + i] = 1.0);
    for _sweep in 0..50 {
        let off: f64 = (0..k).flat_map(|i| (0..k).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| a[i * k + j].powi(2)).sum();
        let diag: f64 = (0..k).map(|i| a[i * k + i].powi(2)).sum();
        if off <= 1e-24 * diag.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..k {
            for r in p + 1..k {
                let apr = a[p * k + r];
                if apr == 0.0 {
                    continue;
                }
                let theta = (a[r * k + r] - a[p * k + p]) / (2.0 * apr);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for i in 0..k {
                    let (aip, air) = (a[i * k + p], a[i * k + r]);
                    a[i * k + p] = c * aip - s * air;
                    a[i * k + r] = s * aip + c * air;
                }
                for i in 0..k {
                    let (api, ari) = (a[p * k + i], a[r * k + i]);
                    a[p * k + i] = c * api - s * ari;
                    a[r * k + i] = s * api + c * ari;
                }
                for i in 0..k {
                    let (vip, vir) = (v[i * k + p], v[i * k + r]);
                    v[i * k + p] = c * vip - s * vir;
                    v[i * k + r] = s * vip + c * vir;
                }
            }
        }
    }
    ((0..k).map(|i| a[i * k + i]).collect(), v)
}

/// `Screen::nearest` over any number of vectors, split across `threads`
/// in whole blocks (each vector's answer does not depend on the split).
pub(super) fn nearest_rows(screen: &Screen, rows: &[f32], bias: &[f32], x: &[f32], out: &mut [u32], threads: usize) {
    let (dim, n) = (screen.dim, out.len());
    assert!(x.len() == n * dim, "screen: one answer per vector");
    // A few blocks per thread at least, so spawning pays.
    let threads = threads.min(n.div_ceil(BLOCK).div_ceil(4));
    crate::parallel::by_blocks(x, dim, out, BLOCK, threads, |x, out| {
        let mut scratch = Scratch::default();
        for (xb, ob) in x.chunks(BLOCK * dim).zip(out.chunks_mut(BLOCK)) {
            screen.nearest(rows, bias, xb, ob, &mut scratch);
        }
    });
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::quantization::kmeans::{self, Rng};

    /// `n` points of `dim` values near 40 centres that lie in an
    /// 8-dimensional subspace, plus isotropic noise of `noise`: centroids
    /// of such data hold most of their spread in a few directions (as
    /// trained centroids do), and the noise is what the bound must cover.
    pub(in crate::index) fn data(n: usize, dim: usize, noise: f32, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(7);
        let val = |rng: &mut Rng| (rng.below(2001) as f32 - 1000.0) / 1000.0;
        let mix: Vec<f32> = (0..8 * dim).map(|_| val(&mut rng)).collect();
        let centres: Vec<f32> = (0..40 * 8).map(|_| 3.0 * val(&mut rng)).collect();
        let mut rng = Rng::new(seed);
        let mut out = Vec::with_capacity(n * dim);
        for i in 0..n {
            let c = &centres[(i % 40) * 8..(i % 40 + 1) * 8];
            let latent: Vec<f32> = c.iter().map(|&v| v + 0.5 * val(&mut rng)).collect();
            for d in 0..dim {
                let inside: f32 = (0..8).map(|j| latent[j] * mix[j * dim + d]).sum();
                out.push(inside + 2.0 + noise * val(&mut rng));
            }
        }
        out
    }

    fn bias_of(rows: &[f32], dim: usize, metric: PqMetric) -> Vec<f32> {
        super::super::groups::row_bias(rows, dim, metric)
    }

    /// The smallest score over all rows, in f64, and the score of `row`.
    fn scores_f64(rows: &[f32], bias: &[f32], dim: usize, x: &[f32], row: usize) -> (f64, f64) {
        let score = |r: usize| bias[r] as f64 - dot_f64(&rows[r * dim..(r + 1) * dim], x);
        ((0..bias.len()).map(score).fold(f64::INFINITY, f64::min), score(row))
    }

    #[test]
    fn the_screen_finds_the_nearest_row_that_scoring_all_finds() {
        for (dim, metric) in [(64, PqMetric::L2), (96, PqMetric::InnerProduct), (128, PqMetric::L2)] {
            let rows = data(600, dim, 0.05, 1);
            let bias = bias_of(&rows, dim, metric);
            let untuned = Screen::build(&rows, dim, metric, &[]).expect("pays on such centroids");
            assert!(untuned.directions() < dim / 4, "{dim}: {} directions", untuned.directions());
            for (noise, tuned) in [(0.05, false), (1.0, false), (0.05, true), (1.0, true)] {
                let n = 2000;
                let x = data(n, dim, noise, 2);
                let built;
                let screen = if tuned {
                    built = Screen::build(&rows, dim, metric, &x).expect("pays on such centroids and vectors");
                    &built
                } else {
                    &untuned
                };
                let mut got = vec![0u32; n];
                nearest_rows(screen, &rows, &bias, &x, &mut got, 1);
                let mut again = vec![0u32; n];
                nearest_rows(screen, &rows, &bias, &x, &mut again, 3);
                assert_eq!(again, got, "independent of the threads");
                let mut exact = vec![0u32; n];
                gemm::nearest_rows(&rows, &bias, dim, &x, &mut exact, 1);
                let mut differ = 0;
                for (i, (&g, &e)) in got.iter().zip(&exact).enumerate() {
                    let v = &x[i * dim..(i + 1) * dim];
                    let (best, mine) = scores_f64(&rows, &bias, dim, v, g as usize);
                    assert!(mine - best <= 1e-5 * (1.0 + best.abs()), "{dim} {metric:?} {noise}: row {i} scores {mine}, best {best}");
                    differ += usize::from(g != e);
                }
                assert!(differ * 1000 <= n, "{dim} {metric:?} {noise}: {differ} of {n} differ from the full product (ties only)");

                // The subspace alone would not do: the bound and the full
                // scores of the candidates are needed (else this test
                // could not fail).
                let mut alone = 0;
                for (i, &e) in exact.iter().enumerate() {
                    let v = &x[i * dim..(i + 1) * dim];
                    let centred: Vec<f32> = v.iter().zip(&screen.mean).map(|(a, m)| a - m).collect();
                    let p: Vec<f32> = screen.basis.chunks_exact(dim).map(|b| dot(b, &centred)).collect();
                    let inside = |r: usize| screen.offset[r] - dot(&p, &screen.coords[r * screen.d..(r + 1) * screen.d]);
                    let pick = (0..bias.len()).min_by(|&a, &b| inside(a).total_cmp(&inside(b))).unwrap();
                    alone += usize::from(pick as u32 != e);
                }
                if noise > 0.1 && metric == PqMetric::L2 {
                    assert!(alone * 100 >= n, "{dim} {metric:?}: the subspace alone picked the nearest for all but {alone} of {n}");
                }
            }
        }
    }

    #[test]
    fn skipping_candidates_finds_the_row_that_scoring_all_of_them_finds() {
        // The candidates are scored in the order of their lower ends and
        // the rest skipped once none can win: the row must be the one
        // scoring every candidate gives, also far from the origin, where
        // the full and the centred scores differ by a large shift (near
        // the origin, also the one `dot` scores lowest over all rows).
        let cases = [(128, PqMetric::L2, 0.0f32), (128, PqMetric::L2, 300.0), (96, PqMetric::InnerProduct, 0.0), (96, PqMetric::InnerProduct, 30.0)];
        for (dim, metric, offset) in cases {
            let shifted = |v: Vec<f32>| -> Vec<f32> { v.into_iter().map(|a| a + offset).collect() };
            let rows = shifted(data(600, dim, 0.05, 1));
            let bias = bias_of(&rows, dim, metric);
            let x = shifted(data(2000, dim, 1.0, 2));
            let screen = Screen::build(&rows, dim, metric, &x).expect("pays");
            let (mut pruned, mut every) = (Scratch::default(), Scratch { score_every_candidate: true, ..Scratch::default() });
            let mut checked = 0;
            for (b, xb) in x.chunks(BLOCK * dim).enumerate() {
                let (mut got, mut want) = (vec![0u32; xb.len() / dim], vec![0u32; xb.len() / dim]);
                screen.nearest(&rows, &bias, xb, &mut got, &mut pruned);
                screen.nearest(&rows, &bias, xb, &mut want, &mut every);
                assert_eq!(got, want, "{dim} {metric:?} +{offset}: block {b}");
                for (i, &g) in got.iter().enumerate().filter(|(i, _)| offset == 0.0 && !pruned.fallback.contains(&(*i as u32))) {
                    let v = &xb[i * dim..(i + 1) * dim];
                    let score = |r: usize| bias[r] - dot(v, &rows[r * dim..(r + 1) * dim]);
                    let lowest = (0..bias.len()).fold(0, |best, r| if score(r) < score(best) { r } else { best });
                    assert_eq!(g as usize, lowest, "{dim} {metric:?}: vector {}", b * BLOCK + i);
                    checked += 1;
                }
            }
            assert!(offset != 0.0 || checked >= 1900, "{dim} {metric:?}: {checked} of 2000 screened");
            // (Far from the origin the rounding margin is too wide to skip.)
            assert!(offset != 0.0 || pruned.candidates_scored < every.candidates_scored, "{dim} {metric:?}: nothing skipped");
        }
    }

    #[test]
    fn a_screen_moved_to_other_rows_finds_their_nearest() {
        // As k-means' later iterations use it: the directions and centre of
        // one set of centroids, the rows measured anew. Moved rows (shifted
        // and partly replaced) must still give every vector its nearest.
        let (dim, metric) = (64, PqMetric::L2);
        let rows = data(600, dim, 0.05, 1);
        let screen = Screen::build(&rows, dim, metric, &[]).unwrap();
        let mut moved = data(600, dim, 0.3, 4);
        moved.iter_mut().enumerate().for_each(|(i, v)| *v += 0.5 * ((i % dim) as f32 / dim as f32));
        let bias = bias_of(&moved, dim, metric);
        let x = data(1000, dim, 0.5, 2);
        let mut got = vec![0u32; 1000];
        nearest_rows(&screen.for_rows(&moved), &moved, &bias, &x, &mut got, 1);
        for (i, &g) in got.iter().enumerate() {
            let (best, mine) = scores_f64(&moved, &bias, dim, &x[i * dim..(i + 1) * dim], g as usize);
            assert!(mine - best <= 1e-5 * (1.0 + best.abs()), "vector {i} scores {mine}, best {best}");
        }
        // (The screen of the old rows would not do.)
        let mut stale = vec![0u32; 1000];
        nearest_rows(&screen, &moved, &bias, &x, &mut stale, 1);
        assert!(stale != got, "the old rows' screen found the same rows");
    }

    /// The multiply-adds a screen spends on `x`, as tuning counts them.
    fn work(screen: &Screen, rows: &[f32], bias: &[f32], x: &[f32]) -> usize {
        let (dim, n) = (screen.dim, bias.len());
        let mut scratch = Scratch::default();
        let mut got = vec![0u32; x.len() / dim];
        for (xb, ob) in x.chunks(BLOCK * dim).zip(got.chunks_mut(BLOCK)) {
            screen.nearest(rows, bias, xb, ob, &mut scratch);
        }
        got.len() * screen.d * (dim + n) + scratch.candidates_scored * CANDIDATE_COST * dim + scratch.wide * n * dim / WIDE_COST_DIVISOR
    }

    #[test]
    fn tuning_takes_the_directions_that_cost_least_on_the_probes() {
        // Centroids holding most of their spread in 24 directions, and
        // vectors whose own noise (isotropic) outweighs the last of them:
        // fewer directions than KEEP asks for screen them for less.
        let (dim, n) = (128, 1000);
        let mut rng = Rng::new(5);
        let val = |rng: &mut Rng| (rng.below(2001) as f32 - 1000.0) / 1000.0;
        let scales: Vec<f32> = (0..24).map(|j| if j < 16 { 4.0 } else { 1.0 }).collect();
        let mix: Vec<f32> = (0..24 * dim).map(|_| val(&mut rng) * 0.18).collect();
        let point = |rng: &mut Rng, centre: &[f32], noise: f32| -> Vec<f32> {
            (0..dim).map(|d| (0..24).map(|j| centre[j] * mix[j * dim + d]).sum::<f32>() + noise * val(rng)).collect()
        };
        let centres: Vec<Vec<f32>> = (0..n).map(|_| scales.iter().map(|&s| s * val(&mut rng)).collect()).collect();
        let rows: Vec<f32> = centres.iter().flat_map(|c| point(&mut rng, c, 0.0)).collect();
        let probes: Vec<f32> = (0..PROBES).flat_map(|i| point(&mut rng, &centres[(i * 7) % n], 1.0)).collect();
        let bias = bias_of(&rows, dim, PqMetric::L2);
        let untuned = Screen::build(&rows, dim, PqMetric::L2, &[]).unwrap();
        let tuned = Screen::build(&rows, dim, PqMetric::L2, &probes).unwrap();
        assert_ne!(tuned.d, untuned.d, "the probes changed the choice");
        for d in (8..=MAX_DIRECTIONS.min(dim / 4)).step_by(8).filter(|&d| pays(d, dim, n)) {
            let other = Screen::build_with(&rows, dim, PqMetric::L2, d);
            assert!(work(&tuned, &rows, &bias, &probes) <= work(&other, &rows, &bias, &probes), "{d} directions cost less than {}", tuned.d);
        }
        // A probe set too small to tune: as without probes.
        let few = Screen::build(&rows, dim, PqMetric::L2, &probes[..(MIN_PROBES - 1) * dim]).unwrap();
        assert_eq!(few.d, untuned.d);
    }

    #[test]
    fn vectors_far_outside_the_subspace_fall_back_to_every_row() {
        let dim = 64;
        let rows = data(600, dim, 0.4, 1);
        let bias = bias_of(&rows, dim, PqMetric::L2);
        let screen = Screen::build(&rows, dim, PqMetric::L2, &[]).unwrap();
        let x = data(BLOCK, dim, 20.0, 3);
        let mut got = vec![0u32; BLOCK];
        let mut scratch = Scratch::default();
        screen.nearest(&rows, &bias, &x, &mut got, &mut scratch);
        assert!(scratch.fallback.len() * 2 > BLOCK, "{} of {BLOCK} fell back", scratch.fallback.len());
        for (i, &g) in got.iter().enumerate() {
            let (best, mine) = scores_f64(&rows, &bias, dim, &x[i * dim..(i + 1) * dim], g as usize);
            assert!(mine - best <= 1e-5 * (1.0 + best.abs()), "row {i}");
        }
    }

    #[test]
    fn no_screen_where_it_cannot_pay() {
        // Too few dimensions or rows, identical rows, isotropic rows.
        assert!(Screen::build(&data(600, 16, 0.05, 1), 16, PqMetric::L2, &[]).is_none());
        assert!(Screen::build(&data(7, 64, 0.05, 1), 64, PqMetric::L2, &[]).is_none());
        assert!(Screen::build(&[1.5f32; 64 * 300], 64, PqMetric::L2, &[]).is_none());
        let mut rng = Rng::new(9);
        let iso: Vec<f32> = (0..64 * 300).map(|_| rng.below(1000) as f32).collect();
        assert!(Screen::build(&iso, 64, PqMetric::L2, &[]).is_none());
        // Nor where the vectors lie far outside the centroids' directions
        // (every one would be scored against every row).
        let far = data(PROBES, 64, 20.0, 3);
        let rows = data(600, 64, 0.4, 1);
        assert!(Screen::build(&rows, 64, PqMetric::L2, &[]).is_some());
        assert!(Screen::build(&rows, 64, PqMetric::L2, &far).is_none());
    }

    #[test]
    fn principal_directions_are_orthonormal_and_hold_the_spread() {
        // Rows spread along 3 directions only, with spreads 9 : 4 : 1.
        let (n, dim) = (200, 40);
        let mut rng = Rng::new(3);
        let axes = [(5, 3.0f32), (17, 2.0), (30, 1.0)];
        let mut rows = vec![0.0f32; n * dim];
        for r in rows.chunks_exact_mut(dim) {
            for &(a, s) in &axes {
                r[a] = s * (rng.below(2001) as f32 - 1000.0) / 1000.0;
            }
        }
        let (basis, spread) = principal_directions(&rows, n, dim, 8);
        for i in 0..8 {
            for j in 0..8 {
                let p = dot(&basis[i * dim..(i + 1) * dim], &basis[j * dim..(j + 1) * dim]);
                assert!((p - f32::from(u8::from(i == j))).abs() < 1e-5, "<b{i}, b{j}> = {p}");
            }
        }
        assert!(spread.windows(2).all(|w| w[0] >= w[1]), "{spread:?}");
        let total: f64 = rows.iter().map(|&v| v as f64 * v as f64).sum();
        assert!((spread[..3].iter().sum::<f64>() - total).abs() < 1e-6 * total, "{spread:?} of {total}");
        // The first 3 directions span the 3 axes (the sample's own
        // principal axes are those, turned a little by its correlations).
        for &(a, _) in &axes {
            let held: f32 = (0..3).map(|i| basis[i * dim + a].powi(2)).sum();
            assert!(held > 0.9999, "axis {a}: {held} of it in the first 3 directions");
        }
    }

    #[test]
    fn screened_k_means_trains_the_centroids_scoring_all_would() {
        let dim = 64;
        let sample = data(20_000, dim, 0.05, 5);
        let problem = kmeans::Problem { data: &sample, dsub: dim, k: 500, iterations: 6, seed: 11, threads: 2 };
        let plain = kmeans::kmeans(&problem, &mut || {});
        let coarse = crate::index::CoarseQuantizer::train(dim, PqMetric::L2, &sample, 500, 6, 11, 2, &mut || {}).unwrap();
        let trained: Vec<f32> = (0..500u32).flat_map(|l| coarse.centroid(l).to_vec()).collect();
        let same = plain.chunks_exact(dim).zip(trained.chunks_exact(dim)).filter(|(a, b)| a == b).count();
        assert!(same >= 495, "{same} of 500 centroids equal");
        assert!(Screen::build(&trained, dim, PqMetric::L2, &sample).is_some(), "the screen was in use");
    }

    #[test]
    fn screen_rows_dispatch_matches_the_lanes() {
        // Lengths around the 8 and 16 lanes. Even rounds: values on a coarse
        // grid (so many bounds tie with the ceiling exactly), negative ones
        // and zeros; odd rounds: fine values, whose products round (so a
        // fused multiply-add would change the ceiling's bits).
        let mut rng = Rng::new(3);
        for n in [1, 7, 8, 9, 15, 16, 17, 64, 100, 1024, 1031] {
            for round in 0..20 {
                let fine = round % 2 == 1;
                let mut value = |range: u64, scale: f32| if fine { (rng.below(range << 20) as f32 / (1 << 20) as f32) * scale } else { rng.below(range) as f32 * scale };
                let scores: Vec<f32> = (0..n).map(|_| value(64, 0.25) - 5.0).collect();
                let outside: Vec<f32> = (0..n).map(|_| value(16, 0.125)).collect();
                let (out_norm, slack) = if fine { (0.731_234_5 + round as f32 * 0.1, 1e-3) } else { (0.5 + round as f32 * 0.25, 0.0) };
                let (mut got, mut want) = (Vec::new(), Vec::new());
                let ceiling = screen_rows(&scores, &outside, out_norm, slack, &mut got);
                assert_eq!(ceiling.to_bits(), screen_rows_lanes(&scores, &outside, out_norm, slack, &mut want).to_bits(), "n {n}");
                assert_eq!(got, want, "n {n}, round {round}");
                // Every path, and what they all compute, by its definition.
                let lowest = scores.iter().zip(&outside).map(|(&s, &o)| s + out_norm * o).fold(f32::INFINITY, f32::min);
                assert_eq!(ceiling, lowest + slack);
                let defined: Vec<u32> = (0..n as u32).filter(|&r| scores[r as usize] - out_norm * outside[r as usize] <= ceiling).collect();
                for (path, c, rows) in screen_rows_all_paths(&scores, &outside, out_norm, slack) {
                    assert_eq!((c.to_bits(), &rows), (ceiling.to_bits(), &defined), "{path}: n {n}, round {round}");
                }
                assert!(!got.is_empty(), "the row with the lowest upper end is a candidate");
            }
        }
        // A row exactly on the ceiling as the lanes compute it (its
        // product rounded up, then subtracted), above it with the product
        // unrounded (as a fused multiply-add computes it), in the vector
        // lanes and in the tail: a candidate. Row 0 sets the ceiling to
        // 0.25 (no slack); every other row's upper end is 3 or more. (The
        // product in [1, 2) rounds by up to 2^-24, more than half of
        // 0.25's ulp, so the unrounded difference lies above 0.25.)
        let out_norm = 0.731_234_5;
        let (on_ceiling, o) = (1..)
            .map(|k| 1.4 + k as f32 * 0.000_7)
            .map(|o| (0.25 + out_norm * o, o))
            .find(|&(s, o)| s - out_norm * o == 0.25 && ((s as f64 - out_norm as f64 * o as f64) as f32) > 0.25)
            .unwrap();
        for (n, at) in [(64, 37), (100, 98)] {
            let mut scores: Vec<f32> = (0..n).map(|_| 3.0 + rng.below(1 << 20) as f32 / (1 << 18) as f32).collect();
            let mut outside: Vec<f32> = (0..n).map(|_| rng.below(1 << 20) as f32 / (1 << 22) as f32).collect();
            (scores[0], outside[0], scores[at], outside[at]) = (0.25, 0.0, on_ceiling, o);
            let mut got = Vec::new();
            assert_eq!(screen_rows(&scores, &outside, out_norm, 0.0, &mut got), 0.25);
            assert_eq!(got, vec![0, at as u32], "n {n}");
            for (path, c, rows) in screen_rows_all_paths(&scores, &outside, out_norm, 0.0) {
                assert_eq!((c, rows), (0.25, vec![0, at as u32]), "{path}: n {n}");
            }
        }
    }
}
