//! The coarse quantizer: `nlist` centroids, and for a vector the list of
//! its nearest one (or, for a query, the `nprobe` nearest lists).

use crate::quantization::gemm;
use crate::quantization::kernels;
use crate::quantization::PqMetric;

/// Coarse centroids in the space the PQ codes encode (unit vectors for a
/// cosine store). L2 stores assign by squared distance; inner-product
/// stores by the largest inner product.
#[derive(Debug, Clone)]
pub struct CoarseQuantizer {
    dim: usize,
    metric: PqMetric,
    /// `nlist x dim`, row-major.
    centroids: Vec<f32>,
    /// `|c|^2 / 2` (L2) or 0 (inner product): see `gemm`.
    bias: Vec<f32>,
    /// Some centroid is beyond the f32-safe range: score in f64.
    careful: bool,
}

const MAGIC: [u8; 8] = *b"OMENIVF1";
const HEADER_LEN: usize = 8 + 4 + 4 + 4;

impl CoarseQuantizer {
    /// From `nlist x dim` finite centroids.
    pub fn from_centroids(dim: usize, metric: PqMetric, centroids: Vec<f32>) -> Result<CoarseQuantizer, String> {
        if dim == 0 || centroids.is_empty() || !centroids.len().is_multiple_of(dim) {
            return Err(format!("IVF: {} centroid values do not make rows of dimension {dim}", centroids.len()));
        }
        if centroids.len() / dim > super::MAX_LISTS as usize {
            return Err(format!("IVF: {} lists, more than {}", centroids.len() / dim, super::MAX_LISTS));
        }
        if let Some(at) = centroids.iter().position(|v| !v.is_finite()) {
            return Err(format!("IVF: centroid value {} at {at} is not finite", centroids[at]));
        }
        let careful = !kernels::in_safe_range(crate::quantization::simd_max_abs(&centroids));
        let bias = match metric {
            PqMetric::L2 => centroids.chunks_exact(dim).map(|c| 0.5 * c.iter().map(|v| v * v).sum::<f32>()).collect(),
            PqMetric::InnerProduct => vec![0.0; centroids.len() / dim],
        };
        Ok(CoarseQuantizer { dim, metric, centroids, bias, careful })
    }

    /// Number of lists.
    pub fn nlist(&self) -> usize {
        self.bias.len()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn metric(&self) -> PqMetric {
        self.metric
    }

    /// The centroid of `list`.
    pub fn centroid(&self, list: u32) -> &[f32] {
        &self.centroids[list as usize * self.dim..(list as usize + 1) * self.dim]
    }

    /// `x - centroid(list)` for each row of `vectors` and its list,
    /// saturated at +-f32::MAX (a difference of two extreme values can
    /// overflow; the codes only need to rank, the re-rank is exact).
    pub fn residuals(&self, vectors: &[f32], lists: &[u32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(vectors.len());
        for (x, &list) in vectors.chunks_exact(self.dim).zip(lists) {
            out.extend(x.iter().zip(self.centroid(list)).map(|(&a, &c)| (a - c).clamp(-f32::MAX, f32::MAX)));
        }
        out
    }

    /// The score of list `c` for vector `x` in f64 (for values whose f32
    /// products could over- or underflow): smaller is nearer.
    fn score_f64(&self, x: &[f32], c: usize) -> f64 {
        let row = &self.centroids[c * self.dim..(c + 1) * self.dim];
        match self.metric {
            PqMetric::L2 => crate::search::distance::l2_squared_f64(row, x),
            PqMetric::InnerProduct => -crate::search::distance::dot_f64(row, x),
        }
    }

    fn row_is_safe(&self, x: &[f32]) -> bool {
        !self.careful && kernels::in_safe_range(crate::quantization::simd_max_abs(x))
    }

    /// The list of each vector of `vectors` (row-major) into `out`.
    pub fn assign(&self, vectors: &[f32], out: &mut [u32], threads: usize) {
        let n = vectors.len() / self.dim;
        assert_eq!(out.len(), n, "IVF assign: one list per vector");
        gemm::nearest_rows(&self.centroids, &self.bias, self.dim, vectors, out, threads);
        for (i, o) in out.iter_mut().enumerate() {
            let x = &vectors[i * self.dim..(i + 1) * self.dim];
            if !self.row_is_safe(x) {
                *o = (0..self.nlist()).map(|c| (self.score_f64(x, c), c)).fold((f64::INFINITY, 0), |b, s| if s.0 < b.0 { s } else { b }).1
                    as u32;
            }
        }
    }

    /// The `nprobe` lists nearest to `query`, nearest first (all of them
    /// when `nprobe >= nlist`). `scores` is scratch space.
    pub fn probe(&self, query: &[f32], nprobe: usize, scores: &mut Vec<f32>) -> Vec<u32> {
        let k = self.nlist();
        let nprobe = nprobe.clamp(1, k);
        let mut order: Vec<u32> = (0..k as u32).collect();
        if self.row_is_safe(query) {
            scores.resize(k, 0.0);
            self.scores_one(query, scores);
            nearest_first(&mut order, nprobe, |a, b| scores[a as usize].total_cmp(&scores[b as usize]));
        } else {
            let wide: Vec<f64> = (0..k).map(|c| self.score_f64(query, c)).collect();
            nearest_first(&mut order, nprobe, |a, b| wide[a as usize].total_cmp(&wide[b as usize]));
        }
        order
    }

    /// The scores of one query against every list: straight dot products
    /// over the centroid rows (a one-row GEMM would repack all centroids
    /// for each query).
    fn scores_one(&self, query: &[f32], out: &mut [f32]) {
        for ((s, row), &b) in out.iter_mut().zip(self.centroids.chunks_exact(self.dim)).zip(&self.bias) {
            *s = b - crate::search::distance::dot(query, row);
        }
    }

    /// Bytes of the serialized form: magic, dim, nlist, metric, the
    /// centroids (f32, little-endian), crc32c of all that.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.centroids.len() * 4 + 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        out.extend_from_slice(&(self.nlist() as u32).to_le_bytes());
        out.extend_from_slice(&(self.metric == PqMetric::InnerProduct).then_some(1u32).unwrap_or(0).to_le_bytes());
        for v in &self.centroids {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let crc = crate::storage::checksum::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Bytes of the serialized quantizer that `bytes` starts with, from its
    /// header (the caller then parses exactly that many).
    pub fn encoded_len(bytes: &[u8]) -> Result<usize, String> {
        if bytes.len() < HEADER_LEN {
            return Err("IVF centroids: missing".to_string());
        }
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize;
        let (dim, nlist) = (u32_at(8), u32_at(12));
        if dim > crate::options::MAX_DIM as usize || nlist > super::MAX_LISTS as usize {
            return Err(format!("IVF centroids: bad header (dim {dim}, {nlist} lists)"));
        }
        Ok(HEADER_LEN + nlist * dim * 4 + 4)
    }

    /// Parses `to_bytes` output (exactly), checking everything; never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<CoarseQuantizer, String> {
        if bytes.len() < HEADER_LEN + 4 || bytes[..8] != MAGIC {
            return Err("IVF centroids: bad magic or too short".to_string());
        }
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let (dim, nlist, metric) = (u32_at(8) as usize, u32_at(12) as usize, u32_at(16));
        if dim == 0 || dim > crate::options::MAX_DIM as usize || nlist == 0 || nlist > super::MAX_LISTS as usize || metric > 1 {
            return Err(format!("IVF centroids: bad header (dim {dim}, {nlist} lists, metric {metric})"));
        }
        let want = HEADER_LEN + nlist * dim * 4 + 4; // < 2^20 * 2^16 * 4: no overflow
        if bytes.len() != want {
            return Err(format!("IVF centroids: {} bytes, expected {want}", bytes.len()));
        }
        if crate::storage::checksum::crc32c(&bytes[..want - 4]) != u32_at(want - 4) {
            return Err("IVF centroids: checksum mismatch".to_string());
        }
        let centroids = bytes[HEADER_LEN..want - 4].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let metric = if metric == 1 { PqMetric::InnerProduct } else { PqMetric::L2 };
        CoarseQuantizer::from_centroids(dim, metric, centroids)
    }

    /// Trains `nlist` centroids on `sample` (row-major) with the PQ k-means
    /// (seeded, deterministic for a given sample). Inner-product stores
    /// cluster by L2 too, as faiss does; only assignment uses their metric.
    pub fn train(
        dim: usize,
        metric: PqMetric,
        sample: &[f32],
        nlist: usize,
        iterations: u32,
        seed: u64,
        threads: usize,
        on_iteration: &mut dyn FnMut(),
    ) -> Result<CoarseQuantizer, String> {
        let problem = crate::quantization::kmeans::Problem { data: sample, dsub: dim, k: nlist, iterations, seed, threads };
        let centroids = crate::quantization::kmeans::kmeans(&problem, on_iteration);
        CoarseQuantizer::from_centroids(dim, metric, centroids)
    }
}

/// Reorders `order` so that its first `n` entries are the smallest by
/// `cmp` (ties by list number), sorted; drops the rest.
fn nearest_first(order: &mut Vec<u32>, n: usize, cmp: impl Fn(u32, u32) -> std::cmp::Ordering) {
    let by = |a: &u32, b: &u32| cmp(*a, *b).then(a.cmp(b));
    if n < order.len() {
        order.select_nth_unstable_by(n - 1, by);
        order.truncate(n);
    }
    order.sort_unstable_by(by);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_damage_is_refused() {
        let c = CoarseQuantizer::from_centroids(3, PqMetric::L2, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let bytes = c.to_bytes();
        let back = CoarseQuantizer::from_bytes(&bytes).unwrap();
        assert_eq!(back.centroids, c.centroids);
        assert_eq!(back.nlist(), 2);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(CoarseQuantizer::from_bytes(&bad).is_err(), "flip at {i} accepted");
        }
        assert!(CoarseQuantizer::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn probe_orders_lists_by_distance_and_extremes_stay_exact() {
        let c = CoarseQuantizer::from_centroids(2, PqMetric::L2, vec![0.0, 0.0, 10.0, 0.0, 3.0, 0.0]).unwrap();
        let mut scratch = Vec::new();
        assert_eq!(c.probe(&[9.0, 0.0], 3, &mut scratch), vec![1, 2, 0]);
        assert_eq!(c.probe(&[9.0, 0.0], 1, &mut scratch), vec![1]);
        let mut out = [0u32; 2];
        c.assign(&[2.0, 0.0, 11.0, 0.0], &mut out, 1);
        assert_eq!(out, [2, 1]);
        // Beyond the f32-safe range (centroids or points), scored in f64.
        let big = CoarseQuantizer::from_centroids(2, PqMetric::L2, vec![0.0, 0.0, 1e30, 0.0, 3.0, 0.0]).unwrap();
        big.assign(&[2.0, 0.0, 9e29, 0.0], &mut out, 1);
        assert_eq!(out, [2, 1]);
        assert_eq!(big.probe(&[f32::MAX, 0.0], 3, &mut scratch)[0], 1);
        let ip = CoarseQuantizer::from_centroids(2, PqMetric::InnerProduct, vec![1.0, 0.0, 0.0, 5.0]).unwrap();
        assert_eq!(ip.probe(&[1.0, 1.0], 2, &mut scratch), vec![1, 0]);
    }
}
