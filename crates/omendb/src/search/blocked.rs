//! Exact search of many queries at once as a blocked matrix product.
//!
//! The inner products of a block of queries with a tile of stored vectors
//! come from one GEMM (the `gemm` crate), and from them an approximate
//! distance `a` per pair: `|q|^2 + |v|^2 - 2 q.v` for L2, `-q.v` for inner
//! product, `1 - q.v / (|q| |v|)` for cosine. Rounding makes `a` differ from
//! what the one-query kernels (`distance.rs`) compute, so `a` only selects
//! candidates: with `b` a proven bound on `|a - e|` (`e` the kernel's
//! distance), a vector can be among the `k` nearest only if
//! `a - b <= T`, where `T` is the `k`-th smallest `a + b` seen (`k` vectors
//! have `e <= T`). The candidates' distances are then computed by the
//! kernels, so the results equal a one-query search's exactly, whatever
//! the rounding.
//!
//! The bounds are worst-case (Higham's `gamma_n = n u / (1 - n u)` for a
//! sum of `n` products in any order, fused or not), so they hold for every
//! GEMM kernel. Where f32 could overflow (a norm above `MAX_NORM`) or the
//! cosine kernel would take its f64 path, a vector is always a candidate
//! and a query is searched one vector at a time instead.

use crate::options::Metric;
use crate::search::distance::{dot_f32, exact_norm, norm};

/// Most results per query the blocked path keeps candidates for; a larger
/// `k` is searched one query at a time.
pub const MAX_K: usize = 1024;
/// Fewest queries worth a matrix product (fewer: one scan each).
pub const MIN_QUERIES: usize = 8;
/// Stored vectors per product: 256 measured faster than 512 and 1,024 (the
/// scores of 1,000 queries then stay in L2 between the product and the scan).
pub const TILE: usize = 256;
/// Queries per product. Bounds the scores (`QUERY_BLOCK x TILE` floats) and
/// the candidate lists (`QUERY_BLOCK x (2k + LIST_SLACK)` entries).
pub const QUERY_BLOCK: usize = 1024;
/// Rows whose lower bounds are tested against a threshold at once.
const RUN: usize = 16;
/// Room a candidate list has beyond `2k` before it is pruned.
const LIST_SLACK: usize = 1024;

/// Largest norm for which every f32 value of the path stays finite:
/// squares and products of two norms stay below 4e36 < f32::MAX.
const MAX_NORM: f32 = 1e18;

/// The unit roundoff of f32, 2^-24.
const U: f32 = f32::EPSILON / 2.0;

/// Per stored vector of a tile: an upper bound of its norm and its squared
/// norm as computed in f32; `gate` is 0 for a candidate the bounds apply
/// to and NaN for the others (added to a lower bound, it fails every
/// comparison); `wild` lists the candidates the bounds do not apply to.
#[derive(Default)]
struct TileNorms {
    bound: Vec<f32>,
    squared: Vec<f32>,
    gate: Vec<f32>,
    /// The row's terms of a lower bound (`Bounds::lower`), gate included.
    base: Vec<f32>,
    wild: Vec<usize>,
}

/// Norms of one query of a block.
struct QueryNorms {
    /// An upper bound of `|q|`, and `|q|^2` as computed in f32.
    bound: f32,
    squared: f32,
    /// `|q|` as the cosine kernel computes it (`PreparedQuery`).
    kernel_norm: f32,
}

/// One query of a block.
struct Query {
    norms: QueryNorms,
    /// Candidates (lower bound, upper bound, slot); `None` once the query
    /// is left to a one-query scan.
    kept: Option<Vec<(f32, f32, u64)>>,
    /// The `k`-th smallest upper bound at the last pruning (+inf before).
    threshold: f32,
}

/// A block of queries and the candidates found for them so far.
pub struct Blocked {
    metric: Metric,
    dim: usize,
    k: usize,
    /// The queries, row-major (`queries.len() x dim`).
    values: Vec<f32>,
    queries: Vec<Query>,
    /// `|a - e| <= rel * (norm bounds term) + abs` (see `add_tile`).
    rel: f32,
    abs: f32,
    scores: Vec<f32>,
    norms: TileNorms,
    /// One query's lower bounds over a tile, and per run of `RUN` rows
    /// whether one of them is at most the query's threshold.
    lower: Vec<f32>,
    runs: Vec<bool>,
    scratch: Vec<f32>,
}

/// An upper bound of `sqrt(x)` for `x` the f32 sum of `dim` squares: covers
/// the sum's rounding (`gamma_dim`, inflated) and its underflow (`dim`
/// terms each lost below f32::MIN_POSITIVE at worst).
fn norm_bound(squared: f32, dim: usize) -> f32 {
    let d = dim as f32;
    (squared * (1.0 + 2.0 * d * U) + d * f32::MIN_POSITIVE).sqrt() * (1.0 + 4.0 * U)
}

impl Blocked {
    /// Whether a search of `queries` queries for `k` results is worth a
    /// matrix product.
    pub fn applies(queries: usize, k: usize) -> bool {
        queries >= MIN_QUERIES && (1..=MAX_K).contains(&k)
    }

    /// Prepares a block (at most `QUERY_BLOCK` queries of `dim` values).
    pub fn new(rows: &[&[f32]], dim: usize, metric: Metric, k: usize) -> Blocked {
        debug_assert!(rows.len() <= QUERY_BLOCK && (1..=MAX_K).contains(&k));
        let n = dim as f32;
        // L2: the distance's error from the norms, the product and the
        // kernel's own sum is at most (2 gamma_{n+3} + 2u)(|q| + |v|)^2;
        // dot products: 2 gamma_{n+1} |q| |v|. Inflated by 1.25 for
        // gamma's denominator, plus 32u for the rounding of the few
        // operations that compute a bound (in any order: `lower_rows`).
        let rel = match metric {
            Metric::L2 => (1.25 * (2.0 * n + 10.0) + 32.0) * U,
            Metric::InnerProduct | Metric::Cosine => (1.25 * (2.0 * n + 2.0) + 32.0) * U,
        };
        // Products and squares that underflow lose at most MIN_POSITIVE
        // each (4 sums of n terms in the worst case, L2).
        let abs = 4.0 * n * f32::MIN_POSITIVE;
        let queries = rows
            .iter()
            .map(|q| {
                let squared = dot_f32(q, q);
                let bound = norm_bound(squared, dim);
                let kernel_norm = if metric == Metric::Cosine { norm(q) } else { 0.0 };
                let tame = bound <= MAX_NORM && (metric != Metric::Cosine || exact_norm(kernel_norm));
                Query { norms: QueryNorms { bound, squared, kernel_norm }, kept: tame.then(Vec::new), threshold: f32::INFINITY }
            })
            .collect();
        Blocked {
            metric,
            dim,
            k,
            values: rows.concat(),
            queries,
            rel,
            abs,
            scores: Vec::new(),
            norms: TileNorms::default(),
            lower: Vec::new(),
            runs: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Whether some query still takes candidates from tiles.
    pub fn active(&self) -> bool {
        self.queries.iter().any(|q| q.kept.is_some())
    }

    /// Offers a tile: `vectors` holds `slots.len()` stored vectors
    /// row-major; row `i` is slot `slots[i]`, a candidate when `take[i]`.
    /// `record_norms[i]` is its slot record's norm (cosine only; the
    /// kernel divides by it).
    pub fn add_tile(&mut self, vectors: &[f32], slots: &[u64], take: &[bool], record_norms: &[f32]) {
        let (rows, dim, m) = (slots.len(), self.dim, self.queries.len());
        debug_assert!(vectors.len() == rows * dim && take.len() == rows && rows <= TILE);
        debug_assert!(self.metric != Metric::Cosine || record_norms.len() == rows);
        if rows == 0 || !self.active() {
            return;
        }
        let cosine = self.metric == Metric::Cosine;
        let norms = &mut self.norms;
        norms.bound.clear();
        norms.squared.clear();
        norms.gate.clear();
        norms.base.clear();
        norms.wild.clear();
        for (i, v) in vectors.chunks_exact(dim).enumerate() {
            let squared = if take[i] { dot_f32(v, v) } else { 0.0 };
            let bound = norm_bound(squared, dim);
            let tame = bound <= MAX_NORM && (!cosine || exact_norm(record_norms[i]));
            if take[i] && !tame {
                norms.wild.push(i);
            }
            norms.squared.push(squared);
            norms.bound.push(bound);
            let gate = if take[i] && tame { 0.0 } else { f32::NAN };
            norms.gate.push(gate);
            norms.base.push(match self.metric {
                Metric::L2 => squared - self.rel * bound * bound - self.abs + gate,
                Metric::InnerProduct | Metric::Cosine => -self.abs + gate,
            });
        }
        self.scores.resize(m * rows, 0.0);
        // SAFETY: the three matrices lie inside their slices: `dst` is
        // m x rows row-major (`scores`, resized to m * rows), `lhs` the
        // m x dim queries row-major (`values`), `rhs` the dim x rows
        // transpose of the rows x dim `vectors` (column j is row j of
        // `vectors`: column stride dim, row stride 1). `read_dst` is
        // false, so `scores`' old contents are never read.
        unsafe {
            gemm::gemm(
                m,
                rows,
                dim,
                self.scores.as_mut_ptr(),
                1,
                rows as isize,
                false,
                self.values.as_ptr(),
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
        let bounds = Bounds { metric: self.metric, rel: self.rel, abs: self.abs };
        let limit = 2 * self.k + LIST_SLACK;
        let lower = &mut self.lower;
        lower.resize(rows, 0.0);
        let runs = &mut self.runs;
        runs.resize(rows.div_ceil(RUN), false);
        for (q, scores) in self.queries.iter_mut().zip(self.scores.chunks_exact(rows)) {
            let Some(kept) = q.kept.as_mut() else { continue };
            kept.extend(norms.wild.iter().map(|&i| (f32::NEG_INFINITY, f32::INFINITY, slots[i])));
            // All lower bounds first (a loop the compiler vectorizes), then
            // the few rows under the threshold.
            let threshold = q.threshold;
            bounds.lower(&q.norms, scores, norms, record_norms, threshold, lower, runs);
            for (c, run) in lower.chunks(RUN).enumerate().filter(|&(c, _)| runs[c]) {
                for (i, &lo) in (c * RUN..).zip(run) {
                    if lo <= threshold {
                        let (a, b) = bounds.of(&q.norms, scores[i], norms.squared[i], norms.bound[i], record_norms.get(i).copied());
                        // A bound that is not finite keeps the vector whatever happens.
                        let (lo, hi) = (a - b, a + b);
                        kept.push(if lo.is_finite() && hi.is_finite() { (lo, hi, slots[i]) } else { (f32::NEG_INFINITY, f32::INFINITY, slots[i]) });
                    }
                }
            }
            // Also as soon as k are kept: a finite threshold early spares
            // pushing whole tiles.
            if kept.len() >= limit || (q.threshold == f32::INFINITY && kept.len() >= self.k) {
                q.threshold = prune(kept, self.k, &mut self.scratch);
                if kept.len() > limit / 2 {
                    // Too many near-ties to prune: one scan is cheaper.
                    q.kept = None;
                }
            }
        }
    }

    /// Per query, in order: the candidate slots (ascending), or `None`
    /// for a query to search one vector at a time.
    pub fn finish(mut self) -> Vec<Option<Vec<u64>>> {
        let k = self.k;
        let scratch = &mut self.scratch;
        self.queries
            .into_iter()
            .map(|q| {
                let mut kept = q.kept?;
                prune(&mut kept, k, scratch);
                Some(kept.into_iter().map(|(_, _, slot)| slot).collect())
            })
            .collect()
    }
}

/// The bound of `|a - e|` for one metric (see `Blocked::new`).
struct Bounds {
    metric: Metric,
    rel: f32,
    abs: f32,
}

impl Bounds {
    /// `(a, b)` for query `q`, a stored vector whose inner product with it
    /// came out as `s`, whose squared norm came out as `squared` and whose
    /// norm is at most `bound`; `record_norm` is its slot record's norm
    /// (cosine). A cosine whose kernel divides by a product that is not a
    /// normal number gets `(-inf, inf)`: always a candidate.
    #[inline(always)]
    fn of(&self, q: &QueryNorms, s: f32, squared: f32, bound: f32, record_norm: Option<f32>) -> (f32, f32) {
        let (rel, abs) = (self.rel, self.abs);
        match self.metric {
            Metric::L2 => {
                let t = q.bound + bound;
                (q.squared + squared - 2.0 * s, rel * t * t + abs)
            }
            Metric::InnerProduct => (-s, rel * q.bound * bound + abs),
            Metric::Cosine => {
                // As `PreparedQuery::distance` divides; it takes its f64
                // path where the product is not normal.
                let denom = q.kernel_norm * record_norm.unwrap_or(0.0);
                let r = s / denom;
                let b = (rel * q.bound * bound + abs) / denom + 5.0 * U * (1.0 + r.abs());
                if denom.is_normal() {
                    (1.0 - r, b)
                } else {
                    (f32::NEG_INFINITY, f32::INFINITY)
                }
            }
        }
    }

    /// A lower bound of the kernel's distance for every row of a tile
    /// into `lower`: `a - b` rearranged so that each row costs two or
    /// three operations (the terms of a row are computed once per tile in
    /// `base`); the rounding of the rearrangement is within `rel`'s margin.
    /// NaN for a row that is no candidate or a wild one (its `gate`), -inf
    /// where `b` is infinite. `runs[c]`: whether a row of `lower`'s run `c`
    /// (of `RUN`) is at most `threshold`.
    #[allow(clippy::too_many_arguments)]
    fn lower(&self, q: &QueryNorms, scores: &[f32], norms: &TileNorms, record_norms: &[f32], threshold: f32, lower: &mut [f32], runs: &mut [bool]) {
        let rows = lower.len();
        let (scores, bound, base) = (&scores[..rows], &norms.bound[..rows], &norms.base[..rows]);
        let query = match self.metric {
            // a - b = (|q|^2 - rel qb^2) + (|v|^2 - rel vb^2 - abs) - 2s - (2 rel qb) vb
            Metric::L2 => Rows::Linear { constant: q.squared - self.rel * q.bound * q.bound, by_score: -2.0, by_bound: -2.0 * self.rel * q.bound },
            // a - b = -s - (rel qb) vb - abs
            Metric::InnerProduct => Rows::Linear { constant: 0.0, by_score: -1.0, by_bound: -self.rel * q.bound },
            Metric::Cosine => Rows::Cosine { bounds: self, query: q, record_norms: &record_norms[..rows], gate: &norms.gate[..rows] },
        };
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: AVX-512F was detected on this CPU just above.
                unsafe { lower_rows_avx512(&query, scores, bound, base, threshold, lower, runs) };
                return;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 was detected on this CPU just above.
                unsafe { lower_rows_avx2(&query, scores, bound, base, threshold, lower, runs) };
                return;
            }
        }
        lower_rows(&query, scores, bound, base, threshold, lower, runs)
    }
}

/// What `lower_rows` computes for one query.
enum Rows<'a> {
    /// `constant + base[i] + by_score * s + by_bound * vb` (L2, inner product).
    Linear { constant: f32, by_score: f32, by_bound: f32 },
    /// `a - b + gate[i]` from `Bounds::of`.
    Cosine { bounds: &'a Bounds, query: &'a QueryNorms, record_norms: &'a [f32], gate: &'a [f32] },
}

/// The rows of `Bounds::lower` (`base` is unused for cosine): one plain
/// loop per metric, compiled again below for wider vector units.
#[inline(always)]
fn lower_rows(rows: &Rows<'_>, scores: &[f32], bound: &[f32], base: &[f32], threshold: f32, lower: &mut [f32], runs: &mut [bool]) {
    match *rows {
        Rows::Linear { constant, by_score, by_bound } => {
            for (((lo, &s), &vb), &base) in lower.iter_mut().zip(scores).zip(bound).zip(base) {
                *lo = constant + base + by_score * s + by_bound * vb;
            }
        }
        Rows::Cosine { bounds, query, record_norms, gate } => {
            for ((((lo, &s), &vb), &norm), &gate) in lower.iter_mut().zip(scores).zip(bound).zip(record_norms).zip(gate) {
                let (a, b) = bounds.of(query, s, 0.0, vb, Some(norm));
                *lo = a - b + gate;
            }
        }
    }
    for (any, run) in runs.iter_mut().zip(lower.chunks(RUN)) {
        *any = run.iter().fold(false, |any, &lo| any | (lo <= threshold));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn lower_rows_avx2(rows: &Rows<'_>, scores: &[f32], bound: &[f32], base: &[f32], threshold: f32, lower: &mut [f32], runs: &mut [bool]) {
    lower_rows(rows, scores, bound, base, threshold, lower, runs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn lower_rows_avx512(rows: &Rows<'_>, scores: &[f32], bound: &[f32], base: &[f32], threshold: f32, lower: &mut [f32], runs: &mut [bool]) {
    lower_rows(rows, scores, bound, base, threshold, lower, runs)
}

/// Drops the entries that cannot be among the `k` nearest (lower bound
/// above the `k`-th smallest upper bound) and returns that threshold.
/// Keeps the entries' order.
fn prune(kept: &mut Vec<(f32, f32, u64)>, k: usize, scratch: &mut Vec<f32>) -> f32 {
    if kept.len() <= k {
        return f32::INFINITY;
    }
    scratch.clear();
    scratch.extend(kept.iter().map(|e| e.1));
    let threshold = *scratch.select_nth_unstable_by(k - 1, f32::total_cmp).1;
    kept.retain(|e| e.0 <= threshold);
    threshold
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::distance::PreparedQuery;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / (1 << 24) as f32 - 0.5).collect()
    }

    /// On ordinary data every query keeps a short candidate list (the
    /// product path does not quietly turn into one scan per query) that
    /// holds the exact top k, tiles with holes included.
    #[test]
    fn candidates_are_few_and_hold_the_top_k() {
        let (n, dim, k) = (5000, 64, 10);
        let data = values(n * dim, 1);
        let queries = values(16 * dim, 2);
        let rows: Vec<&[f32]> = queries.chunks_exact(dim).collect();
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            let mut blocked = Blocked::new(&rows, dim, metric, k);
            let take: Vec<bool> = (0..n).map(|i| i % 5 != 3).collect();
            let norms: Vec<f32> = data.chunks_exact(dim).map(norm).collect();
            for start in (0..n).step_by(TILE) {
                let end = (start + TILE).min(n);
                let slots: Vec<u64> = (start as u64..end as u64).collect();
                let record_norms = if metric == Metric::Cosine { &norms[start..end] } else { &[][..] };
                blocked.add_tile(&data[start * dim..end * dim], &slots, &take[start..end], record_norms);
            }
            for (q, found) in rows.iter().zip(blocked.finish()) {
                let found = found.expect("no fall-back on ordinary data");
                assert!(found.len() < 100, "{metric:?}: {} candidates", found.len());
                let prepared = PreparedQuery::new(q, metric);
                let mut all: Vec<(f32, u64)> = (0..n)
                    .filter(|&i| take[i])
                    .map(|i| (prepared.distance(&data[i * dim..(i + 1) * dim], norms[i]), i as u64))
                    .collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                for (_, slot) in &all[..k] {
                    assert!(found.contains(slot), "{metric:?}: top-k slot {slot} missing");
                }
            }
        }
    }
}
