//! Distance kernels. Written with eight independent accumulators so the
//! compiler vectorizes them without reassociating floating-point sums.

use crate::options::Metric;

const LANES: usize = 8;

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; LANES];
    let (ac, ar) = a.split_at(a.len() / LANES * LANES);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(LANES).zip(bc.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (x, y) in ar.iter().zip(br) {
        sum += x * y;
    }
    sum
}

pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; LANES];
    let (ac, ar) = a.split_at(a.len() / LANES * LANES);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(LANES).zip(bc.chunks_exact(LANES)) {
        for l in 0..LANES {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (x, y) in ar.iter().zip(br) {
        let d = x - y;
        sum += d * d;
    }
    sum
}

pub fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
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
    pub fn distance(&self, vector: &[f32], vector_norm: f32) -> f32 {
        match self.metric {
            Metric::L2 => l2_squared(self.values, vector),
            Metric::InnerProduct => -dot(self.values, vector),
            Metric::Cosine => {
                let denom = self.norm * vector_norm;
                if denom > 0.0 {
                    1.0 - dot(self.values, vector) / denom
                } else {
                    1.0
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn cosine_of_parallel_and_zero_vectors() {
        let q = [1.0, 2.0, 3.0];
        let p = PreparedQuery::new(&q, Metric::Cosine);
        let v = [2.0, 4.0, 6.0];
        assert!(p.distance(&v, norm(&v)).abs() < 1e-6);
        assert_eq!(p.distance(&[0.0; 3], 0.0), 1.0);
    }
}
