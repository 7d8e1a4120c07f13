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
use crate::quantization::gemm::product;
use crate::search::distance::{dot_f32, exact_norm, norm};

/// Most results per query the blocked path keeps candidates for; a larger
/// `k` is searched one query at a time.
pub const MAX_K: usize = 1024;
/// Fewest queries worth a matrix product (fewer: one scan each).
pub const MIN_QUERIES: usize = 8;
/// Stored vectors per product: 256 measured faster than 512 and 1,024
/// for 1,000 queries and no slower for 100 (a tile stays in L2 from its
/// norms to its product).
pub const TILE: usize = 256;
/// From this many queries a block's products are computed row-major
/// (`product`).
const ROW_MAJOR_FROM: usize = 256;
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
/// norm as computed in f32; `base` its terms of a lower bound
/// (`lower`); `tame` whether the bounds apply to it.
#[derive(Default)]
struct TileNorms {
    bound: Vec<f32>,
    squared: Vec<f32>,
    base: Vec<f32>,
    tame: Vec<bool>,
    /// 0 for a tame candidate, NaN for the other rows (in `base` too): a
    /// lower bound it is added to fails every comparison.
    gate: Vec<f32>,
}

/// The queries of a block, one entry per query in each.
#[derive(Default)]
struct Queries {
    /// An upper bound of `|q|`, and `|q|^2` as computed in f32.
    bound: Vec<f32>,
    squared: Vec<f32>,
    /// `|q|` as the cosine kernel computes it (`PreparedQuery`).
    kernel_norm: Vec<f32>,
    /// A lower bound is `constant + base + by_score * s + by_bound * vb`
    /// (L2 and inner product; see `lower`).
    constant: Vec<f32>,
    by_bound: Vec<f32>,
    /// Candidates (lower bound, upper bound, slot); `None` once the query
    /// is left to a one-query scan.
    kept: Vec<Option<Vec<(f32, f32, u64)>>>,
    /// The `k`-th smallest upper bound at the last pruning (+inf before;
    /// NaN, which nothing is under, once the query is left to a scan).
    threshold: Vec<f32>,
    /// Candidates left by the last pruning (0 before).
    pruned: Vec<usize>,
}

/// A block of queries and the candidates found for them so far.
pub struct Blocked {
    metric: Metric,
    dim: usize,
    k: usize,
    /// The queries, row-major (`m x dim`).
    values: Vec<f32>,
    queries: Queries,
    /// `|a - e| <= rel * (norm bounds term) + abs` (see `Blocked::of`).
    rel: f32,
    abs: f32,
    /// A tile's products: column-major (`scores[i * m + q]` is `q.v_i`)
    /// below `ROW_MAJOR_FROM` queries, else row-major (see `product`).
    scores: Vec<f32>,
    norms: TileNorms,
    /// The lower bounds of one vector's or one query's pairs, and per run
    /// of `RUN` of them whether one is at most its query's threshold.
    lower: Vec<f32>,
    runs: Vec<bool>,
    /// The rows (or queries) of a tile's products with a pair under its
    /// threshold.
    under: Vec<usize>,
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
        // operations that compute a bound (in any order: `lower`).
        let rel = match metric {
            Metric::L2 => (1.25 * (2.0 * n + 10.0) + 32.0) * U,
            Metric::InnerProduct | Metric::Cosine => (1.25 * (2.0 * n + 2.0) + 32.0) * U,
        };
        // Products and squares that underflow lose at most MIN_POSITIVE
        // each (4 sums of n terms in the worst case, L2).
        let abs = 4.0 * n * f32::MIN_POSITIVE;
        let mut queries = Queries::default();
        for q in rows {
            let squared = dot_f32(q, q);
            let bound = norm_bound(squared, dim);
            let kernel_norm = if metric == Metric::Cosine { norm(q) } else { 0.0 };
            let tame = bound <= MAX_NORM && (metric != Metric::Cosine || exact_norm(kernel_norm));
            let (constant, by_bound) = match metric {
                // a - b = (|q|^2 - rel qb^2) + (|v|^2 - rel vb^2 - abs) - 2s - (2 rel qb) vb
                Metric::L2 => (squared - rel * bound * bound, -2.0 * rel * bound),
                // a - b = -s - (rel qb) vb - abs
                Metric::InnerProduct | Metric::Cosine => (0.0, -rel * bound),
            };
            queries.bound.push(bound);
            queries.squared.push(squared);
            queries.kernel_norm.push(kernel_norm);
            queries.constant.push(constant);
            queries.by_bound.push(by_bound);
            queries.kept.push(tame.then(Vec::new));
            queries.threshold.push(if tame { f32::INFINITY } else { f32::NAN });
            queries.pruned.push(0);
        }
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
            under: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Whether some query still takes candidates from tiles.
    pub fn active(&self) -> bool {
        self.queries.kept.iter().any(Option::is_some)
    }

    /// Offers a tile: `vectors` holds `slots.len()` stored vectors
    /// row-major; row `i` is slot `slots[i]`, a candidate when `take[i]`.
    /// `record_norms[i]` is its slot record's norm (cosine only; the
    /// kernel divides by it).
    pub fn add_tile(&mut self, vectors: &[f32], slots: &[u64], take: &[bool], record_norms: &[f32]) {
        let (rows, dim, m) = (slots.len(), self.dim, self.queries.kept.len());
        debug_assert!(vectors.len() == rows * dim && take.len() == rows && rows <= TILE);
        debug_assert!(self.metric != Metric::Cosine || record_norms.len() == rows);
        if rows == 0 || !self.active() {
            return;
        }
        let cosine = self.metric == Metric::Cosine;
        let norms = &mut self.norms;
        norms.bound.clear();
        norms.squared.clear();
        norms.base.clear();
        norms.tame.clear();
        norms.gate.clear();
        squares(vectors, dim, &mut norms.squared);
        for (i, squared) in norms.squared.iter_mut().enumerate() {
            if !take[i] {
                *squared = 0.0;
            }
            let squared = *squared;
            let bound = norm_bound(squared, dim);
            let tame = bound <= MAX_NORM && (!cosine || exact_norm(record_norms[i]));
            let gate = if take[i] && tame { 0.0 } else { f32::NAN };
            norms.bound.push(bound);
            norms.tame.push(tame);
            norms.gate.push(gate);
            norms.base.push(gate + match self.metric {
                Metric::L2 => squared - self.rel * bound * bound - self.abs,
                Metric::InnerProduct | Metric::Cosine => -self.abs,
            });
        }
        let queries = &mut self.queries;
        for i in (0..rows).filter(|&i| take[i] && !norms.tame[i]) {
            for kept in queries.kept.iter_mut().flatten() {
                kept.push((f32::NEG_INFINITY, f32::INFINITY, slots[i]));
            }
        }
        let pair = Pair { metric: self.metric, rel: self.rel, abs: self.abs };
        // Which vectors (or queries) have a pair under its threshold first
        // (one vectorized pass over the tile), then those vectors' (or
        // queries') lower bounds, then the few pairs under.
        let (lower, runs) = (&mut self.lower, &mut self.runs);
        let entry = |q: QueryNorms, i: usize, s: f32| {
            let record_norm = record_norms.get(i).copied().unwrap_or(0.0);
            let (a, b) = pair.of(q, s, norms.squared[i], norms.bound[i], record_norm);
            // A bound that is not finite keeps the vector whatever happens.
            let (lo, hi) = (a - b, a + b);
            if lo.is_finite() && hi.is_finite() { (lo, hi, slots[i]) } else { (f32::NEG_INFINITY, f32::INFINITY, slots[i]) }
        };
        let offer = |queries: &mut Queries, q: usize, i: usize, s: f32| {
            let entry = entry(queries.at(q), i, s);
            queries.kept[q].as_mut().expect("a query under its threshold is active").push(entry);
        };
        let row_major = m >= ROW_MAJOR_FROM;
        self.scores.resize(m * rows, 0.0);
        product(&self.values, m, vectors, rows, dim, &mut self.scores, row_major);
        // A query's first tile sets its threshold from its own pairs (the
        // k-th smallest upper bound among them), so that only the pairs
        // under it are kept rather than the whole tile (in a small store
        // the whole first tile was most of the candidates pushed).
        let scores = &self.scores;
        let score = |q: usize, i: usize| if row_major { scores[q * rows + i] } else { scores[i * m + q] };
        for q in 0..m {
            if queries.threshold[q] != f32::INFINITY {
                continue;
            }
            let (at, scratch) = (queries.at(q), &mut self.scratch);
            scratch.clear();
            scratch.extend((0..rows).filter(|&i| norms.gate[i] == 0.0).map(|i| entry(at, i, score(q, i)).1).filter(|hi| hi.is_finite()));
            if scratch.len() >= self.k {
                queries.threshold[q] = *scratch.select_nth_unstable_by(self.k - 1, f32::total_cmp).1;
            }
        }
        if !row_major {
            lower.resize(m, 0.0);
            runs.resize(m.div_ceil(RUN), false);
            pair.vectors_under(queries, norms, &self.scores, m, &mut self.under);
            for &i in &self.under {
                let scores = &self.scores[i * m..(i + 1) * m];
                let vector = Vector { base: norms.base[i], bound: norms.bound[i], record_norm: record_norms.get(i).copied().unwrap_or(0.0) };
                pair.lower(Side::Vector(vector, queries), scores, lower, runs);
                for (c, run) in lower.chunks(RUN).enumerate().filter(|&(c, _)| runs[c]) {
                    for (q, &lo) in (c * RUN..).zip(run) {
                        if lo <= queries.threshold[q] {
                            offer(queries, q, i, scores[q]);
                        }
                    }
                }
            }
        } else {
            lower.resize(rows, 0.0);
            runs.resize(rows.div_ceil(RUN), false);
            pair.queries_under(queries, norms, &self.scores, rows, &mut self.under);
            for &q in &self.under {
                let scores = &self.scores[q * rows..(q + 1) * rows];
                let threshold = queries.threshold[q];
                let query = (queries.at(q), queries.constant[q], queries.by_bound[q], threshold);
                pair.lower(Side::Query(query, norms, record_norms), scores, lower, runs);
                for (c, run) in lower.chunks(RUN).enumerate().filter(|&(c, _)| runs[c]) {
                    for (i, &lo) in (c * RUN..).zip(run) {
                        if lo <= threshold {
                            offer(queries, q, i, scores[i]);
                        }
                    }
                }
            }
        }
        let limit = 2 * self.k + LIST_SLACK;
        let queries = &mut self.queries;
        for ((slot, threshold), pruned) in queries.kept.iter_mut().zip(&mut queries.threshold).zip(&mut queries.pruned) {
            let Some(kept) = slot.as_mut() else { continue };
            // Also as soon as k are kept (a finite threshold early spares
            // pushing whole tiles), and whenever the list has doubled
            // since the last pruning: the threshold tightens as the tiles
            // go by (costing linear time in all), where waiting for the
            // limit let a small store's queries keep hundreds of
            // candidates under the first tile's loose threshold.
            let doubled = kept.len() >= 2 * (*pruned).max(self.k);
            if kept.len() >= limit || doubled || (*threshold == f32::INFINITY && kept.len() >= self.k) {
                *threshold = prune(kept, self.k, &mut self.scratch);
                *pruned = kept.len();
                if kept.len() > limit / 2 {
                    // Too many near-ties to prune: one scan is cheaper.
                    *slot = None;
                    *threshold = f32::NAN;
                }
            }
        }
    }

    /// Per query, in order: the candidate slots (in no order), or `None`
    /// for a query to search one vector at a time.
    pub fn finish(mut self) -> Vec<Option<Vec<u64>>> {
        let k = self.k;
        let scratch = &mut self.scratch;
        self.queries
            .kept
            .into_iter()
            .map(|kept| {
                let mut kept = kept?;
                prune(&mut kept, k, scratch);
                Some(kept.into_iter().map(|(_, _, slot)| slot).collect())
            })
            .collect()
    }
}

/// One query's norms.
#[derive(Clone, Copy)]
struct QueryNorms {
    bound: f32,
    squared: f32,
    kernel_norm: f32,
}

impl Queries {
    fn at(&self, q: usize) -> QueryNorms {
        QueryNorms { bound: self.bound[q], squared: self.squared[q], kernel_norm: self.kernel_norm[q] }
    }
}

/// One tame candidate of a tile, as `lower` needs it.
#[derive(Clone, Copy)]
struct Vector {
    base: f32,
    bound: f32,
    record_norm: f32,
}

/// The bounds of one metric (`Blocked::new` derives them).
#[derive(Clone, Copy)]
struct Pair {
    metric: Metric,
    rel: f32,
    abs: f32,
}

/// Whose pairs `Pair::lower` bounds: one vector's with every query of a
/// block (the products column-major), or one query's with every vector of
/// a tile (row-major): the query's norms, `constant`, `by_bound` and
/// threshold, and the tile's norms and record norms.
enum Side<'a> {
    Vector(Vector, &'a Queries),
    Query((QueryNorms, f32, f32, f32), &'a TileNorms, &'a [f32]),
}

impl Pair {
    /// `(a, b)` for query `q` and a stored vector whose inner product with
    /// it came out as `s`, whose squared norm came out as `squared` and
    /// whose norm is at most `bound`; `record_norm` is its slot record's
    /// norm (cosine). A cosine whose kernel divides by a product that is
    /// not a normal number gets `(-inf, inf)`: always a candidate.
    #[inline(always)]
    fn of(self, q: QueryNorms, s: f32, squared: f32, bound: f32, record_norm: f32) -> (f32, f32) {
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
                let denom = q.kernel_norm * record_norm;
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

    /// A lower bound of the kernel's distance for each pair of `side`
    /// (`scores` their products) into `lower` (NaN for a pair that is no
    /// candidate, -inf where `b` is infinite), and in `runs[c]` whether
    /// one of run `c` (of `RUN` pairs) is at most its query's threshold.
    /// For L2 and inner product `a - b` rearranged so that each pair costs
    /// two or three operations (the terms of a query or a vector computed
    /// once); the rounding of the rearrangement is within `rel`'s margin.
    /// Compiled for AVX-512 and AVX2 where the CPU has them.
    fn lower(self, side: Side<'_>, scores: &[f32], lower: &mut [f32], runs: &mut [bool]) {
        lower_vectorized(self, side, scores, lower, runs)
    }

    /// Into `out`, the rows of a tile's column-major products (`m` a row)
    /// that have a pair whose lower bound is at most its query's
    /// threshold: the vectors `lower` can find a candidate for. The same
    /// sums in the same order as `lower`'s, so a row left out has none.
    /// (Cosine: every candidate row.)
    fn vectors_under(self, queries: &Queries, norms: &TileNorms, scores: &[f32], m: usize, out: &mut Vec<usize>) {
        out.clear();
        if self.metric == Metric::Cosine {
            // A gate that is not 0: not a candidate, or wild (NaN != 0).
            out.extend((0..norms.gate.len()).filter(|&i| norms.gate[i] == 0.0));
        } else {
            vectors_under_vectorized(self, queries, norms, scores, m, out)
        }
    }

    /// As `vectors_under` for a tile's row-major products (`rows` a
    /// query): the queries with a pair under their threshold. (Cosine:
    /// every query not left to a scan.)
    fn queries_under(self, queries: &Queries, norms: &TileNorms, scores: &[f32], rows: usize, out: &mut Vec<usize>) {
        out.clear();
        if self.metric == Metric::Cosine {
            out.extend((0..queries.threshold.len()).filter(|&q| !queries.threshold[q].is_nan()));
        } else {
            queries_under_vectorized(self, queries, norms, scores, rows, out)
        }
    }
}

/// `$name` runs `$body` compiled for AVX-512 or AVX2 where this CPU has
/// them (`$body` is `inline(always)`, so it is compiled into each).
macro_rules! vectorized {
    (fn $name:ident($($arg:ident: $ty:ty),*) = $body:ident) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if crate::cpu::avx512f() {
                    // SAFETY: AVX-512F was detected on this CPU just above.
                    return unsafe { avx512($($arg),*) };
                }
                if crate::cpu::avx2() {
                    // SAFETY: AVX2 was detected on this CPU just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

vectorized!(fn lower_vectorized(pair: Pair, side: Side<'_>, scores: &[f32], lower: &mut [f32], runs: &mut [bool]) = lower_generic);
vectorized!(fn vectors_under_vectorized(pair: Pair, queries: &Queries, norms: &TileNorms, scores: &[f32], m: usize, out: &mut Vec<usize>) = vectors_under_generic);
vectorized!(fn queries_under_vectorized(pair: Pair, queries: &Queries, norms: &TileNorms, scores: &[f32], rows: usize, out: &mut Vec<usize>) = queries_under_generic);
vectorized!(fn squares(vectors: &[f32], dim: usize, out: &mut Vec<f32>) = squares_generic);

#[inline(always)]
fn vectors_under_generic(pair: Pair, queries: &Queries, norms: &TileNorms, scores: &[f32], m: usize, out: &mut Vec<usize>) {
    let by_score = if pair.metric == Metric::L2 { -2.0 } else { -1.0 };
    let (c, g, t) = (&queries.constant[..m], &queries.by_bound[..m], &queries.threshold[..m]);
    for (i, scores) in scores.chunks_exact(m).enumerate() {
        if norms.gate[i] != 0.0 {
            continue; // not a candidate, or wild (NaN != 0)
        }
        let (base, vb) = (norms.base[i], norms.bound[i]);
        let pairs = scores.iter().zip(c).zip(g).zip(t);
        let under = pairs.fold(0u32, |n, (((&s, &c), &g), &t)| n + u32::from(c + base + by_score * s + g * vb <= t));
        if under > 0 {
            out.push(i);
        }
    }
}

#[inline(always)]
fn queries_under_generic(pair: Pair, queries: &Queries, norms: &TileNorms, scores: &[f32], rows: usize, out: &mut Vec<usize>) {
    let by_score = if pair.metric == Metric::L2 { -2.0 } else { -1.0 };
    let (base, bound) = (&norms.base[..rows], &norms.bound[..rows]);
    for (q, scores) in scores.chunks_exact(rows).enumerate() {
        let (c, g, t) = (queries.constant[q], queries.by_bound[q], queries.threshold[q]);
        if t.is_nan() {
            continue; // left to a scan
        }
        let pairs = scores.iter().zip(base).zip(bound);
        let under = pairs.fold(0u32, |n, ((&s, &base), &vb)| n + u32::from(c + base + by_score * s + g * vb <= t));
        if under > 0 {
            out.push(q);
        }
    }
}

/// The f32 sum of squares of each row of `vectors` (`dim` wide) into
/// `out`, in sixteen lanes (the order of a sum does not matter:
/// `norm_bound` covers any).
#[inline(always)]
fn squares_generic(vectors: &[f32], dim: usize, out: &mut Vec<f32>) {
    const W: usize = 16;
    out.clear();
    // Plain loops: closures would be compiled apart, without the features.
    for row in vectors.chunks_exact(dim) {
        let mut acc = [0f32; W];
        let mut lanes = row.chunks_exact(W);
        for x in lanes.by_ref() {
            for l in 0..W {
                acc[l] += x[l] * x[l];
            }
        }
        let mut sum = 0.0;
        for a in acc {
            sum += a;
        }
        for &x in lanes.remainder() {
            sum += x * x;
        }
        out.push(sum);
    }
}

#[inline(always)]
fn lower_generic(pair: Pair, side: Side<'_>, scores: &[f32], lower: &mut [f32], runs: &mut [bool]) {
    let n = lower.len();
    let scores = &scores[..n];
    let by_score = if pair.metric == Metric::L2 { -2.0 } else { -1.0 };
    let cosine = pair.metric == Metric::Cosine;
    match side {
        Side::Vector(v, queries) => {
            if cosine {
                for (((lo, &s), &bound), &kernel_norm) in lower.iter_mut().zip(scores).zip(&queries.bound[..n]).zip(&queries.kernel_norm[..n]) {
                    let (a, b) = pair.of(QueryNorms { bound, squared: 0.0, kernel_norm }, s, 0.0, v.bound, v.record_norm);
                    *lo = a - b;
                }
            } else {
                for (((lo, &s), &c), &g) in lower.iter_mut().zip(scores).zip(&queries.constant[..n]).zip(&queries.by_bound[..n]) {
                    *lo = c + v.base + by_score * s + g * v.bound;
                }
            }
            let threshold = &queries.threshold[..n];
            for ((any, run), threshold) in runs.iter_mut().zip(lower.chunks(RUN)).zip(threshold.chunks(RUN)) {
                *any = run.iter().zip(threshold).fold(false, |any, (&lo, &t)| any | (lo <= t));
            }
        }
        Side::Query((q, c, g, threshold), norms, record_norms) => {
            let (base, bound) = (&norms.base[..n], &norms.bound[..n]);
            if cosine {
                let (record_norms, gate) = (&record_norms[..n], &norms.gate[..n]);
                for ((((lo, &s), &vb), &rn), &gate) in lower.iter_mut().zip(scores).zip(bound).zip(record_norms).zip(gate) {
                    let (a, b) = pair.of(q, s, 0.0, vb, rn);
                    *lo = a - b + gate;
                }
            } else {
                for (((lo, &s), &base), &vb) in lower.iter_mut().zip(scores).zip(base).zip(bound) {
                    *lo = c + base + by_score * s + g * vb;
                }
            }
            for (any, run) in runs.iter_mut().zip(lower.chunks(RUN)) {
                *any = run.iter().fold(false, |any, &lo| any | (lo <= threshold));
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::distance::PreparedQuery;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / (1 << 24) as f32 - 0.5).collect()
    }

    /// A query's first tile pushes only the pairs under the threshold that
    /// tile gives it, not the whole tile (which the end of the tile would
    /// then prune), in both product layouts.
    #[test]
    fn the_first_tile_keeps_few_candidates() {
        let (dim, k) = (24, 10);
        let data = values(TILE * dim, 5);
        let slots: Vec<u64> = (0..TILE as u64).collect();
        for m in [16, ROW_MAJOR_FROM] {
            let queries = values(m * dim, 6);
            let rows: Vec<&[f32]> = queries.chunks_exact(dim).collect();
            for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
                let norms: Vec<f32> = data.chunks_exact(dim).map(norm).collect();
                let record_norms = if metric == Metric::Cosine { &norms[..] } else { &[][..] };
                let mut blocked = Blocked::new(&rows, dim, metric, k);
                blocked.add_tile(&data, &slots, &vec![true; TILE], record_norms);
                for (q, kept) in blocked.queries.kept.iter().enumerate() {
                    let kept = kept.as_ref().expect("active");
                    assert!((k..=2 * k).contains(&kept.len()), "{metric:?}, {m} queries, query {q}: {} kept", kept.len());
                    // Filtered as they were offered: nothing to prune.
                    assert_eq!(blocked.queries.pruned[q], 0, "{metric:?}, {m} queries, query {q}: the whole tile was pushed");
                }
            }
        }
    }

    /// The vectorized passes pick exactly the rows (column-major products)
    /// and the queries (row-major) that have a pair whose lower bound from
    /// `lower` is at most its query's threshold, with thresholds that
    /// are finite, infinite and NaN (a query left to a scan) and rows
    /// that are no candidate; and `squares` is within `norm_bound`.
    #[test]
    fn the_passes_pick_what_lower_finds() {
        let (dim, rows, m) = (21, 40, 35);
        let vectors = values(rows * dim, 3);
        let queries = values(m * dim, 4);
        let query_rows: Vec<&[f32]> = queries.chunks_exact(dim).collect();
        for metric in [Metric::L2, Metric::InnerProduct] {
            let mut blocked = Blocked::new(&query_rows, dim, metric, 10);
            let take: Vec<bool> = (0..rows).map(|i| i % 6 != 1).collect();
            blocked.add_tile(&vectors, &(0..rows as u64).collect::<Vec<_>>(), &take, &[]);
            for (i, v) in vectors.chunks_exact(dim).enumerate() {
                let exact: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
                let got = if take[i] { blocked.norms.squared[i] } else { exact as f32 };
                assert!(f64::from(norm_bound(got, dim)) >= exact.sqrt(), "{metric:?} row {i}");
            }
            let pair = Pair { metric, rel: blocked.rel, abs: blocked.abs };
            let (mut lower, mut runs, mut under) = (vec![0.0; m * rows], vec![false; rows.div_ceil(RUN)], Vec::new());
            let (mut column_major, mut row_major) = (vec![0.0; m * rows], vec![0.0; m * rows]);
            product(&blocked.values, m, &vectors, rows, dim, &mut column_major, false);
            product(&blocked.values, m, &vectors, rows, dim, &mut row_major, true);
            // Every pair's lower bound (row-major, as `lower` gives them),
            // and per query its second smallest (NaN: no candidate).
            let mut second = Vec::new();
            for (q, lower) in lower.chunks_exact_mut(rows).enumerate() {
                let queries = &blocked.queries;
                let query = (queries.at(q), queries.constant[q], queries.by_bound[q], f32::INFINITY);
                pair.lower(Side::Query(query, &blocked.norms, &[]), &row_major[q * rows..(q + 1) * rows], lower, &mut runs);
                let mut sorted: Vec<f32> = lower.iter().copied().filter(|lo| !lo.is_nan()).collect();
                sorted.sort_by(f32::total_cmp);
                second.push(sorted[1]);
            }
            let under_threshold = |q: usize, i: usize, t: &[f32]| lower[q * rows + i] <= t[q];
            // Rows: a few queries with two pairs under, some left to a
            // scan (NaN), the others with none (-inf).
            let thresholds: Vec<f32> =
                (0..m).map(|q| if q % 5 == 0 { f32::NAN } else if q % 7 == 2 { second[q] } else { f32::NEG_INFINITY }).collect();
            blocked.queries.threshold.clone_from(&thresholds);
            let want: Vec<usize> = (0..rows).filter(|&i| (0..m).any(|q| under_threshold(q, i, &thresholds))).collect();
            pair.vectors_under(&blocked.queries, &blocked.norms, &column_major, m, &mut under);
            assert_eq!(under, want, "{metric:?}: rows");
            assert!(!want.is_empty() && want.len() < rows / 2, "{metric:?}: rows {want:?}");
            // Queries: also one with every pair under (+inf).
            let thresholds: Vec<f32> = (0..m)
                .map(|q| match q % 5 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    2 => f32::NEG_INFINITY,
                    _ => second[q],
                })
                .collect();
            blocked.queries.threshold.clone_from(&thresholds);
            let want: Vec<usize> = (0..m).filter(|&q| (0..rows).any(|i| under_threshold(q, i, &thresholds))).collect();
            pair.queries_under(&blocked.queries, &blocked.norms, &row_major, rows, &mut under);
            assert_eq!(under, want, "{metric:?}: queries");
            assert_eq!(want.len(), (0..m).filter(|q| ![0, 2].contains(&(q % 5))).count(), "{metric:?}: queries {want:?}");
        }
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
