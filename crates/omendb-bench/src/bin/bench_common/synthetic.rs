//! Shared by the benchmark examples: a fast deterministic RNG and clustered
//! synthetic embeddings (`center + low-rank latent + small noise`), so PQ
//! figures mean something (uniform noise is PQ's worst case, real embeddings
//! are not like it).
#![allow(dead_code)]

pub struct SplitMix(pub u64);
impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / 16_777_216.0
    }
    /// Roughly standard normal (Irwin-Hall of 4, rescaled).
    pub fn normal(&mut self) -> f32 {
        (self.unit() + self.unit() + self.unit() + self.unit() - 2.0) * 1.732
    }
}

/// Clustered synthetic embeddings with a low intrinsic dimension:
/// `center[c] + basis * z + 0.05 * noise`, 256 clusters, 16 latent factors.
/// Or ([`Synthetic::like`]) rows drawn around those of a real set.
pub struct Synthetic {
    pub dim: usize,
    centers: Vec<f32>,
    basis: Vec<f32>,
    /// `Some(spread)` for [`Synthetic::like`]: `centers` are the set's
    /// rows, and each row is one of them plus uniform noise of that width.
    around: Option<f32>,
}

const CLUSTERS: usize = 256;
const LATENT: usize = 16;

impl Synthetic {
    pub fn new(dim: usize) -> Synthetic {
        let mut r = SplitMix(0xC0FFEE ^ dim as u64);
        let centers = (0..CLUSTERS * dim).map(|_| r.normal()).collect();
        let basis = (0..LATENT * dim).map(|_| r.normal() * 0.5).collect();
        Synthetic { dim, centers, basis, around: None }
    }

    /// Rows like those of a real set (`rows`, `dim` wide): each a row of
    /// it chosen at random plus uniform noise a tenth of the set's mean
    /// absolute value wide, so a store of any size keeps the set's
    /// distribution (its intrinsic dimension, which decides e.g. whether
    /// the coarse quantizer's projection screen applies).
    pub fn like(rows: Vec<f32>, dim: usize) -> Synthetic {
        let mean_abs = rows.iter().map(|v| v.abs() as f64).sum::<f64>() / rows.len().max(1) as f64;
        Synthetic { dim, centers: rows, basis: Vec::new(), around: Some(0.1 * mean_abs as f32) }
    }

    pub fn row(&self, i: u64, out: &mut [f32]) {
        let mut r = SplitMix(i.wrapping_mul(0xA076_1D64_78BD_642F) ^ 0x5EED);
        if let Some(spread) = self.around {
            let c = (r.next() % (self.centers.len() / self.dim) as u64) as usize;
            out.copy_from_slice(&self.centers[c * self.dim..(c + 1) * self.dim]);
            for o in out.iter_mut() {
                *o += spread * (r.unit() - 0.5);
            }
            return;
        }
        let c = (r.next() % CLUSTERS as u64) as usize;
        out.copy_from_slice(&self.centers[c * self.dim..(c + 1) * self.dim]);
        for l in 0..LATENT {
            let z = r.normal();
            for (o, b) in out.iter_mut().zip(&self.basis[l * self.dim..(l + 1) * self.dim]) {
                *o += z * b;
            }
        }
        for o in out.iter_mut() {
            *o += 0.05 * (r.unit() - 0.5);
        }
    }

    /// Rows `first..first + n`, generated on all cores.
    pub fn rows(&self, first: u64, n: usize) -> Vec<f32> {
        let mut out = vec![0f32; n * self.dim];
        let threads = std::thread::available_parallelism().map(|x| x.get()).unwrap_or(1);
        let per = n.div_ceil(threads).max(1);
        std::thread::scope(|s| {
            for (t, part) in out.chunks_mut(per * self.dim).enumerate() {
                s.spawn(move || {
                    for (j, row) in part.chunks_exact_mut(self.dim).enumerate() {
                        self.row(first + (t * per + j) as u64, row);
                    }
                });
            }
        });
        out
    }
}

