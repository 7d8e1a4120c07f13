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
/// Stored vectors per product (a multiple of 64: whole words of the live set).
pub const TILE: usize = 1024;
/// Queries per product. Bounds the scores (`QUERY_BLOCK x TILE` floats) and
/// the candidate lists (`QUERY_BLOCK x (2k + LIST_SLACK)` entries).
pub const QUERY_BLOCK: usize = 256;
/// Room a candidate list has beyond `2k` before it is pruned.
const LIST_SLACK: usize = 4096;

/// Largest norm for which every f32 value of the path stays finite:
/// squares and products of two norms stay below 4e36 < f32::MAX.
const MAX_NORM: f32 = 1e18;

/// The unit roundoff of f32, 2^-24.
const U: f32 = f32::EPSILON / 2.0;

/// Per stored vector of a tile: an upper bound of its norm and its squared
/// norm as computed in f32, and whether the fast bounds apply to it.
struct TileNorms {
    bound: Vec<f32>,
    squared: Vec<f32>,
    tame: Vec<bool>,
}

/// One query of a block.
struct Query {
    /// An upper bound of `|q|`, and `|q|^2` as computed in f32.
    bound: f32,
    squared: f32,
    /// `|q|` as the cosine kernel computes it (`PreparedQuery`).
    kernel_norm: f32,
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
        // dot products: 2 gamma_{n+1} |q| |v|. Inflated by 1.25 for the
        // rounding of gamma's denominator and of the bound itself.
        let rel = match metric {
            Metric::L2 => 1.25 * (2.0 * n + 10.0) * U,
            Metric::InnerProduct | Metric::Cosine => 1.25 * (2.0 * n + 2.0) * U,
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
                Query { bound, squared, kernel_norm, kept: tame.then(Vec::new), threshold: f32::INFINITY }
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
            norms: TileNorms { bound: Vec::new(), squared: Vec::new(), tame: Vec::new() },
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
        norms.tame.clear();
        for (i, v) in vectors.chunks_exact(dim).enumerate() {
            let squared = if take[i] { dot_f32(v, v) } else { 0.0 };
            let bound = norm_bound(squared, dim);
            norms.squared.push(squared);
            norms.bound.push(bound);
            norms.tame.push(bound <= MAX_NORM && (!cosine || exact_norm(record_norms[i])));
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
        let (rel, abs, k) = (self.rel, self.abs, self.k);
        let limit = 2 * k + LIST_SLACK;
        for (q, scores) in self.queries.iter_mut().zip(self.scores.chunks_exact(rows)) {
            let Some(kept) = q.kept.as_mut() else { continue };
            let (qb, qs, qk) = (q.bound, q.squared, q.kernel_norm);
            for i in 0..rows {
                if !take[i] {
                    continue;
                }
                if !norms.tame[i] {
                    kept.push((f32::NEG_INFINITY, f32::INFINITY, slots[i]));
                    continue;
                }
                let (s, vb) = (scores[i], norms.bound[i]);
                let (a, b) = match self.metric {
                    Metric::L2 => {
                        let t = qb + vb;
                        (qs + norms.squared[i] - 2.0 * s, rel * t * t + abs)
                    }
                    Metric::InnerProduct => (-s, rel * qb * vb + abs),
                    Metric::Cosine => {
                        // As `PreparedQuery::distance` divides; it takes its
                        // f64 path where the product is not normal.
                        let denom = qk * record_norms[i];
                        if !denom.is_normal() {
                            kept.push((f32::NEG_INFINITY, f32::INFINITY, slots[i]));
                            continue;
                        }
                        let r = s / denom;
                        (1.0 - r, (rel * qb * vb + abs) / denom + 5.0 * U * (1.0 + r.abs()))
                    }
                };
                let (lo, hi) = (a - b, a + b);
                if !(lo > q.threshold) {
                    // A bound that is not finite keeps the vector whatever happens.
                    let entry = if lo.is_finite() && hi.is_finite() { (lo, hi, slots[i]) } else { (f32::NEG_INFINITY, f32::INFINITY, slots[i]) };
                    kept.push(entry);
                }
            }
            if kept.len() >= limit {
                q.threshold = prune(kept, k, &mut self.scratch);
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
