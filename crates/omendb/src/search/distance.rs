//! Distance kernels. Sums run in 32 lanes (four AVX2 registers: four
//! independent chains of additions) and are added up in a fixed tree, so
//! the portable code and the AVX2 code give the same bits.
//!
//! Every finite input gives a finite result: the f32 kernel runs first and,
//! only when its result overflowed (or, for norms, left f32's normal range),
//! the value is recomputed in f64 (exact products, no overflow or underflow
//! for any f32 input) and saturated to +-f32::MAX.

use crate::options::Metric;

const LANES: usize = 32;

/// `$name` runs `$avx2` where this CPU has AVX2, else `$lanes`: the same
/// operations in the same order (no FMA), so the same bits.
macro_rules! with_avx2 {
    ($(#[$doc:meta])* $vis:vis fn $name:ident = $lanes:ident / $avx2:ident) => {
        $(#[$doc])*
        #[inline]
        $vis fn $name(a: &[f32], b: &[f32]) -> f32 {
            #[cfg(target_arch = "x86_64")]
            if crate::cpu::avx2() {
                // SAFETY: AVX2 was detected on this CPU just above, the
                // only requirement of a `target_feature(enable = "avx2")` fn.
                return unsafe { $avx2(a, b) };
            }
            $lanes(a, b)
        }
    };
}

with_avx2!(pub(crate) fn dot_f32 = dot_lanes / dot_avx2);
with_avx2!(fn l2_squared_f32 = l2_squared_lanes / l2_squared_avx2);

/// `term(a[i], b[i])` summed: lane `l` of the 32 takes every 32nd term
/// from `l`, the lanes are added as a tree (16, 8, 4, 2, 1 apart), then
/// the remaining terms one at a time. The AVX2 kernels do exactly this.
#[inline(always)]
fn lanes_sum(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; LANES];
    let (ac, ar) = a.split_at(a.len() / LANES * LANES);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(LANES).zip(bc.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += term(x[l], y[l]);
        }
    }
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            acc[l] += acc[l + width];
        }
        width /= 2;
    }
    let mut sum = acc[0];
    for (x, y) in ar.iter().zip(br) {
        sum += term(*x, *y);
    }
    sum
}

fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    lanes_sum(a, b, |x, y| x * y)
}

fn l2_squared_lanes(a: &[f32], b: &[f32]) -> f32 {
    lanes_sum(a, b, |x, y| {
        let d = x - y;
        d * d
    })
}

/// `lanes_sum` in four AVX2 registers; `$term` maps two registers (or
/// two scalars, for the remainder) to the terms.
macro_rules! avx2_lanes_sum {
    ($name:ident, |$x:ident, $y:ident| $term:expr, |$sx:ident, $sy:ident| $scalar:expr) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        fn $name(a: &[f32], b: &[f32]) -> f32 {
            use std::arch::x86_64::*;
            debug_assert_eq!(a.len(), b.len());
            let n = a.len().min(b.len());
            let wide = n / LANES * LANES;
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut s = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i < wide {
                for (r, acc) in s.iter_mut().enumerate() {
                    // SAFETY: i + 8 * r + 8 <= wide <= the length of both
                    // slices; unaligned loads.
                    let ($x, $y) = unsafe { (_mm256_loadu_ps(pa.add(i + 8 * r)), _mm256_loadu_ps(pb.add(i + 8 * r))) };
                    *acc = _mm256_add_ps(*acc, $term);
                }
                i += LANES;
            }
            // The tree: lanes 16 apart (registers 0 += 2, 1 += 3), 8 apart,
            // then within the register 4, 2 and 1 apart.
            let s01 = _mm256_add_ps(_mm256_add_ps(s[0], s[2]), _mm256_add_ps(s[1], s[3]));
            let q = _mm_add_ps(_mm256_castps256_ps128(s01), _mm256_extractf128_ps::<1>(s01));
            let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
            let q = _mm_add_ss(q, _mm_shuffle_ps::<1>(q, q));
            let mut sum = _mm_cvtss_f32(q);
            for j in wide..n {
                let ($sx, $sy) = (a[j], b[j]);
                sum += $scalar;
            }
            sum
        }
    };
}

avx2_lanes_sum!(dot_avx2, |x, y| _mm256_mul_ps(x, y), |x, y| x * y);
avx2_lanes_sum!(l2_squared_avx2, |x, y| {
    let d = _mm256_sub_ps(x, y);
    _mm256_mul_ps(d, d)
}, |x, y| {
    let d = x - y;
    d * d
});

/// `lanes_sum` of one vector `a` against `R` rows at once in AVX-512
/// registers: each row's 32 lanes in two registers, summed exactly as
/// `avx2_lanes_sum` sums them (lane `l` takes every 32nd term from `l`,
/// then the same tree), so each result has the single kernel's bits. One
/// row's sum is a chain of dependent additions per lane; `R` rows side by
/// side keep the adders busy (and load `a` once for all of them).
macro_rules! avx512_lanes_many {
    ($name:ident, |$x:ident, $y:ident| $term:expr, |$sx:ident, $sy:ident| $scalar:expr) => {
        /// Requires: AVX-512F on this CPU; every row as long as `a`.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        unsafe fn $name<const R: usize>(a: &[f32], rows: [&[f32]; R]) -> [f32; R] {
            use std::arch::x86_64::*;
            let n = a.len();
            let wide = n / LANES * LANES;
            let pa = a.as_ptr();
            let mut acc = [[_mm512_setzero_ps(); 2]; R];
            let mut i = 0;
            while i < wide {
                // SAFETY: i + 32 <= wide <= n, the length of `a` and of every
                // row (the caller's requirement); unaligned loads.
                let (a0, a1) = unsafe { (_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pa.add(i + 16))) };
                for r in 0..R {
                    let pb = rows[r].as_ptr();
                    // SAFETY: as above.
                    let (b0, b1) = unsafe { (_mm512_loadu_ps(pb.add(i)), _mm512_loadu_ps(pb.add(i + 16))) };
                    let ($x, $y) = (a0, b0);
                    acc[r][0] = _mm512_add_ps(acc[r][0], $term);
                    let ($x, $y) = (a1, b1);
                    acc[r][1] = _mm512_add_ps(acc[r][1], $term);
                }
                i += LANES;
            }
            let mut out = [0f32; R];
            for r in 0..R {
                // The tree: lanes 16 apart (the two registers), 8 apart (the
                // register's halves), then 4, 2 and 1 apart.
                let t = _mm512_add_ps(acc[r][0], acc[r][1]);
                let s = _mm256_add_ps(_mm512_castps512_ps256(t), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(t))));
                let q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
                let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
                let q = _mm_add_ss(q, _mm_shuffle_ps::<1>(q, q));
                let mut sum = _mm_cvtss_f32(q);
                for j in wide..n {
                    let ($sx, $sy) = (a[j], rows[r][j]);
                    sum += $scalar;
                }
                out[r] = sum;
            }
            out
        }
    };
}

avx512_lanes_many!(dot_many_avx512, |x, y| _mm512_mul_ps(x, y), |x, y| x * y);
avx512_lanes_many!(l2_squared_many_avx512, |x, y| {
    let d = _mm512_sub_ps(x, y);
    _mm512_mul_ps(d, d)
}, |x, y| {
    let d = x - y;
    d * d
});

/// Rows scored together by [`dot_many`] and [`l2_squared_many`].
pub(crate) const MANY: usize = 4;

/// `$name(a, rows)[r]` is `$single(a, rows[r])`, bit for bit: the rows side
/// by side where the CPU has AVX-512, else one at a time.
macro_rules! many {
    ($(#[$doc:meta])* $vis:vis fn $name:ident = $single:ident / $avx512:ident, $exact:ident) => {
        $(#[$doc])*
        #[inline]
        $vis fn $name(a: &[f32], rows: [&[f32]; MANY]) -> [f32; MANY] {
            assert!(rows.iter().all(|r| r.len() == a.len()), "{}: rows of the vector's length", stringify!($name));
            #[cfg(target_arch = "x86_64")]
            if crate::cpu::avx512f() {
                // SAFETY: AVX-512F was detected just above; the lengths
                // asserted above are the kernel's other requirement.
                let fast = unsafe { $avx512::<MANY>(a, rows) };
                return std::array::from_fn(|r| finite_or(fast[r], || $exact(a, rows[r])));
            }
            rows.map(|row| $single(a, row))
        }
    };
}

many!(
    /// [`dot`] of `a` and each row.
    pub(crate) fn dot_many = dot / dot_many_avx512, dot_f64
);
many!(
    /// [`l2_squared`] of `a` and each row.
    pub(crate) fn l2_squared_many = l2_squared / l2_squared_many_avx512, l2_squared_f64
);

/// An f64 value as a finite f32, saturated at +-f32::MAX.
pub(crate) fn saturate(x: f64) -> f32 {
    x.clamp(-(f32::MAX as f64), f32::MAX as f64) as f32
}

/// `sum a[i] * b[i]` in f64: products of f32s are exact, sums cannot overflow.
pub(crate) fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// `sum (a[i] - b[i])^2` in f64.
pub(crate) fn l2_squared_f64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum()
}

/// `fast` when finite, else `exact()` saturated: one check on the hot path.
#[inline]
fn finite_or(fast: f32, exact: impl FnOnce() -> f64) -> f32 {
    if fast.is_finite() {
        fast
    } else {
        saturate(exact())
    }
}

/// Dot product, saturated at +-f32::MAX.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    finite_or(dot_f32(a, b), || dot_f64(a, b))
}

/// Squared Euclidean distance, saturated at f32::MAX.
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    finite_or(l2_squared_f32(a, b), || l2_squared_f64(a, b))
}

/// Euclidean norm, saturated at f32::MAX. Exact to f32 rounding also when
/// the squares under- or overflow f32 (the f32 sum is then not normal).
pub fn norm(a: &[f32]) -> f32 {
    let s = dot_f32(a, a);
    if s.is_normal() {
        s.sqrt()
    } else {
        saturate(dot_f64(a, a).sqrt())
    }
}

/// Scales `a` to unit length (a zero vector stays zero), for any finite `a`.
pub fn normalize(a: &mut [f32]) {
    let s = dot_f32(a, a);
    if s.is_normal() {
        let n = s.sqrt();
        a.iter_mut().for_each(|x| *x /= n);
    } else {
        // The norm may not be an f32 (above f32::MAX, or subnormal and inexact).
        let n = dot_f64(a, a).sqrt();
        if n > 0.0 {
            a.iter_mut().for_each(|x| *x = (*x as f64 / n) as f32);
        }
    }
}

/// Whether a norm from [`norm`] is the norm to f32 precision: normal and
/// not saturated.
#[inline]
pub(crate) fn exact_norm(n: f32) -> bool {
    n.is_normal() && n < f32::MAX
}

/// `1 - cos(a, b)` in f64 (1 when either is zero), for any finite inputs.
fn cosine_f64(a: &[f32], b: &[f32]) -> f32 {
    let (aa, bb) = (dot_f64(a, a), dot_f64(b, b));
    if aa == 0.0 || bb == 0.0 {
        return 1.0;
    }
    (1.0 - dot_f64(a, b) / (aa.sqrt() * bb.sqrt())) as f32
}

/// A query prepared for one metric: its norm is computed once.
pub struct PreparedQuery<'a> {
    pub values: &'a [f32],
    pub metric: Metric,
    norm: f32,
}

impl<'a> PreparedQuery<'a> {
    pub fn new(values: &'a [f32], metric: Metric) -> PreparedQuery<'a> {
        let norm = if metric == Metric::Cosine { norm(values) } else { 0.0 };
        PreparedQuery { values, metric, norm }
    }

    /// Distance to a stored vector whose norm is `vector_norm` (cosine only).
    /// Always finite.
    #[inline]
    pub fn distance(&self, vector: &[f32], vector_norm: f32) -> f32 {
        match self.metric {
            Metric::L2 => l2_squared(self.values, vector),
            Metric::InnerProduct => -dot(self.values, vector),
            Metric::Cosine => {
                let denom = self.norm * vector_norm;
                let d = dot_f32(self.values, vector);
                // The f32 quotient is accurate when the dot product is finite,
                // neither norm saturated and their product a normal number;
                // otherwise (also for zero vectors) recompute from the values.
                if d.is_finite() && denom.is_normal() && exact_norm(self.norm) && exact_norm(vector_norm) {
                    1.0 - d / denom
                } else {
                    cosine_f64(self.values, vector)
                }
            }
        }
    }

    /// [`distance`](Self::distance) to each of [`MANY`] stored vectors,
    /// bit for bit (L2 and inner product side by side: [`l2_squared_many`],
    /// [`dot_many`]).
    #[inline]
    pub fn distances(&self, vectors: [&[f32]; MANY], norms: [f32; MANY]) -> [f32; MANY] {
        match self.metric {
            Metric::L2 => l2_squared_many(self.values, vectors),
            Metric::InnerProduct => dot_many(self.values, vectors).map(|d| -d),
            Metric::Cosine => std::array::from_fn(|r| self.distance(vectors[r], norms[r])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 builds sum exactly as the portable lanes do (results are
    /// the same on every CPU).
    #[test]
    fn dispatched_kernels_are_bit_identical_to_the_lanes() {
        for n in [0usize, 1, 7, 8, 9, 31, 32, 33, 63, 64, 100, 768, 1001] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos() * 1e-2).collect();
            assert_eq!(dot_f32(&a, &b).to_bits(), dot_lanes(&a, &b).to_bits(), "dot n={n}");
            assert_eq!(l2_squared_f32(&a, &b).to_bits(), l2_squared_lanes(&a, &b).to_bits(), "l2 n={n}");
        }
    }

    /// Rows scored side by side give each row's single result, bit for
    /// bit, for every length (whole 32-lane steps, a remainder, or both),
    /// and the saturated f64 result where the f32 sum overflows.
    #[test]
    fn rows_side_by_side_equal_one_at_a_time() {
        for n in [0usize, 1, 31, 32, 33, 100, 128, 768, 1001] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
            let rows: Vec<Vec<f32>> = (0..MANY).map(|r| (0..n).map(|i| ((i * (r + 3)) as f32 * 0.11).cos() * 10f32.powi(r as i32 - 2)).collect()).collect();
            let refs: [&[f32]; MANY] = std::array::from_fn(|r| &rows[r][..]);
            let (dots, l2s) = (dot_many(&a, refs), l2_squared_many(&a, refs));
            for r in 0..MANY {
                assert_eq!(dots[r].to_bits(), dot(&a, refs[r]).to_bits(), "dot n={n} row {r}");
                assert_eq!(l2s[r].to_bits(), l2_squared(&a, refs[r]).to_bits(), "l2 n={n} row {r}");
            }
        }
        let big = vec![3e38f32; 64];
        let neg: Vec<f32> = big.iter().map(|x| -x).collect();
        let refs: [&[f32]; MANY] = [&big, &neg, &big, &big[..]];
        let (dots, l2s) = (dot_many(&big, refs), l2_squared_many(&big, refs));
        assert_eq!((dots[0], dots[1], l2s[0], l2s[1]), (f32::MAX, -f32::MAX, 0.0, f32::MAX));
    }

    #[test]
    fn kernels_match_naive() {
        for n in [0usize, 1, 7, 8, 9, 100, 768] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let d: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let l: f64 = a.iter().zip(&b).map(|(x, y)| ((*x - *y) as f64).powi(2)).sum();
            assert!((dot(&a, &b) as f64 - d).abs() < 1e-3, "dot n={n}");
            assert!((l2_squared(&a, &b) as f64 - l).abs() < 1e-3, "l2 n={n}");
        }
    }

    #[test]
    fn finite_inputs_give_finite_distances() {
        let max = f32::MAX;
        // Squares and sums past f32::MAX saturate.
        assert_eq!(l2_squared(&[max, 0.0], &[-max, 0.0]), max);
        assert_eq!(l2_squared(&[1e20; 9], &[-1e20; 9]), max);
        assert_eq!(dot(&[max; 9], &[max; 9]), max);
        assert_eq!(dot(&[max; 9], &[-max; 9]), -max);
        // +inf + -inf in f32 (NaN): the exact value is 0.
        assert_eq!(dot(&[max, max], &[max, -max]), 0.0);
        assert_eq!(norm(&[max; 16]), max);
        assert_eq!(norm(&[2e38, 2e38]), 2e38 * std::f32::consts::SQRT_2);
        // Squares that underflow f32: the norm is still right.
        assert_eq!(norm(&[3e-30, 4e-30]), 5e-30);
        assert_eq!(norm(&[1e-45]), 1e-45);
        assert_eq!(norm(&[0.0, -0.0]), 0.0);
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            for v in [[max, -max, 1e-45, 0.0], [1e-45, 1e-45, 0.0, -1e-45], [1e20, -1e20, 1e-38, max], [0.0; 4]] {
                let p = PreparedQuery::new(&v, metric);
                for w in [[max; 4], [-max; 4], [1e-45; 4], [0.0; 4], v] {
                    let d = p.distance(&w, norm(&w));
                    assert!(d.is_finite(), "{metric:?} {v:?} {w:?}: {d}");
                }
            }
        }
    }

    #[test]
    fn cosine_is_exact_for_huge_and_tiny_vectors() {
        for scale in [f32::MAX / 2.0, 1e20, 1e-20, 1e-38, 1e-44] {
            let v = [scale, scale, 0.0, scale];
            let p = PreparedQuery::new(&v, Metric::Cosine);
            assert!(p.distance(&v, norm(&v)).abs() < 1e-6, "{scale}: {}", p.distance(&v, norm(&v)));
            // Orthogonal: 1.
            let w = [scale, -scale, 0.0, 0.0];
            assert!((p.distance(&w, norm(&w)) - 1.0).abs() < 1e-6, "{scale}");
        }
        let mut u = [f32::MAX, f32::MAX, 0.0];
        normalize(&mut u);
        assert_eq!(u, [std::f32::consts::FRAC_1_SQRT_2, std::f32::consts::FRAC_1_SQRT_2, 0.0]);
        let mut u = [1e-45, 0.0];
        normalize(&mut u);
        assert_eq!(u, [1.0, 0.0]);
    }

    #[test]
    fn cosine_of_parallel_and_zero_vectors() {
        let q = [1.0, 2.0, 3.0];
        let p = PreparedQuery::new(&q, Metric::Cosine);
        let v = [2.0, 4.0, 6.0];
        assert!(p.distance(&v, norm(&v)).abs() < 1e-6);
        assert_eq!(p.distance(&[0.0; 3], 0.0), 1.0);
    }
}
