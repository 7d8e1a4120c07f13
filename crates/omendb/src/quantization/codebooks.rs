//! Codebooks: training schedule, encode/decode, and the byte format.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use super::adc::QueryTable;
use super::kernels;
use super::kmeans::{self, Problem, Rng};
use super::simd;
use super::{PqConfig, PqMetric, TrainOptions};

/// Training uses at most this many sample points per centroid (as faiss):
/// a larger sample is sub-sampled with the seeded RNG (65,536 points at 8 bits).
pub const MAX_POINTS_PER_CENTROID: usize = 256;

// ---- Byte format (little-endian) ------------------------------------------
//
// | offset | size            | field                                          |
// |--------|-----------------|------------------------------------------------|
// | 0      | 8               | magic `OMENPQCB`                               |
// | 8      | 4               | format version (1)                             |
// | 12     | 4               | dim                                            |
// | 16     | 4               | m                                              |
// | 20     | 4               | bits (4 or 8)                                  |
// | 24     | 4 * m*ksub*dsub | centroids f32, sub-space major, then centroid  |
// | end-4  | 4               | crc32c of every byte before it                 |
const MAGIC: [u8; 8] = *b"OMENPQCB";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 24;
const CRC_LEN: usize = 4;

/// Trained PQ codebooks: for each of `m` sub-spaces, `ksub` centroids of `dsub` floats.
#[derive(Clone, Debug, PartialEq)]
pub struct Codebooks {
    pub(crate) config: PqConfig,
    /// `m x ksub x dsub`, sub-space major.
    pub(crate) centroids: Vec<f32>,
    /// Derived: per sub-space, the centroids transposed (`dsub x ksub`).
    pub(crate) ct: Vec<f32>,
    /// Derived: `m x ksub`, `0.5 * ||c||^2`.
    pub(crate) half_norms: Vec<f32>,
    /// Derived: per sub-space, whether its centroids are outside the f32
    /// kernel's safe range (every point is then encoded in f64).
    pub(crate) careful: Vec<bool>,
}

/// Calls the user's progress callback; keeps the contract (monotone, fixed
/// total, a final call with `done == total`).
struct Reporter<'a> {
    done: u64,
    total: u64,
    last: Option<u64>,
    f: &'a mut dyn FnMut(u64, u64),
}

impl Reporter<'_> {
    fn add(&mut self, units: u64) {
        self.done = (self.done + units).min(self.total);
        if self.last != Some(self.done) {
            self.last = Some(self.done);
            (self.f)(self.done, self.total);
        }
    }
    fn finish(&mut self) {
        self.done = self.total;
        if self.last != Some(self.total) {
            self.last = Some(self.total);
            (self.f)(self.total, self.total);
        }
    }
}

impl Codebooks {
    /// Trains the codebooks: k-means per sub-space on `sample` (`n x dim`, row-major).
    ///
    /// Deterministic for `(config, sample, options.iterations, options.seed)`;
    /// `options.threads` only changes the speed. Samples larger than
    /// `MAX_POINTS_PER_CENTROID * ksub` points are sub-sampled (seeded).
    /// `progress(done, total)` runs only on the calling thread, after each
    /// (sub-space, iteration) unit, with `total = m * iterations`; `done` never
    /// decreases and the last call has `done == total` (a single `(0, 0)` call
    /// when `iterations == 0`).
    ///
    /// Errors: invalid config, empty sample, length not a multiple of `dim`,
    /// non-finite values.
    pub fn train(
        config: &PqConfig,
        sample: &[f32],
        options: &TrainOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Codebooks, String> {
        config.validate()?;
        let (dim, m, k, dsub) = (config.dim, config.m, config.ksub(), config.dsub());
        if !sample.len().is_multiple_of(dim) {
            return Err(format!("PQ train: sample length {} is not a multiple of dim {}", sample.len(), dim));
        }
        let n = sample.len() / dim;
        if n == 0 {
            return Err("PQ train: empty sample".to_string());
        }
        if let Some(i) = sample.iter().position(|v| !v.is_finite()) {
            return Err(format!("PQ train: non-finite value in sample vector {}", i / dim));
        }

        let max_n = MAX_POINTS_PER_CENTROID * k;
        let rows: Option<Vec<usize>> = (n > max_n).then(|| {
            let mut rng = Rng::new(kmeans::derive_seed(options.seed, u64::MAX));
            let mut idx = kmeans::sample_indices(n, max_n, &mut rng);
            idx.sort_unstable();
            idx
        });
        let n_used = rows.as_ref().map_or(n, |r| r.len());

        // The sub-matrix of sub-space j, `n_used x dsub`.
        let extract = |j: usize| -> Vec<f32> {
            let mut out = Vec::with_capacity(n_used * dsub);
            let mut push = |r: usize| out.extend_from_slice(&sample[r * dim + j * dsub..r * dim + (j + 1) * dsub]);
            match &rows {
                Some(rows) => rows.iter().for_each(|&r| push(r)),
                None => (0..n).for_each(push),
            }
            out
        };
        let run = |j: usize, threads: usize, on_iteration: &mut dyn FnMut()| -> Vec<f32> {
            let data = extract(j);
            let problem = Problem {
                data: &data,
                dsub,
                k,
                iterations: options.iterations,
                seed: kmeans::derive_seed(options.seed, j as u64),
                threads,
            };
            kmeans::kmeans(&problem, on_iteration)
        };

        let threads = options.threads.max(1);
        let total = m as u64 * options.iterations as u64;
        let mut reporter = Reporter { done: 0, total, last: None, f: progress };
        let mut centroids = vec![0.0f32; m * k * dsub];

        if threads == 1 || m < threads {
            // Sub-spaces one after another; the assignment step uses all threads.
            for j in 0..m {
                let c = run(j, threads, &mut || reporter.add(1));
                centroids[j * k * dsub..(j + 1) * k * dsub].copy_from_slice(&c);
            }
        } else {
            // Sub-spaces in parallel; the caller works too and relays the
            // workers' progress ticks, so the callback only runs here.
            let next = AtomicUsize::new(0);
            let (tx, rx) = mpsc::channel::<()>();
            let parts: Vec<(usize, Vec<f32>)> = std::thread::scope(|s| {
                let mut handles = Vec::with_capacity(threads - 1);
                for _ in 1..threads {
                    let tx = tx.clone();
                    let (next, run) = (&next, &run);
                    handles.push(s.spawn(move || {
                        let mut out = Vec::new();
                        loop {
                            let j = next.fetch_add(1, Ordering::Relaxed);
                            if j >= m {
                                break;
                            }
                            out.push((j, run(j, 1, &mut || {
                                let _ = tx.send(());
                            })));
                        }
                        out
                    }));
                }
                drop(tx);
                let mut out = Vec::new();
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    if j >= m {
                        break;
                    }
                    out.push((j, run(j, 1, &mut || {
                        let mut units = 1;
                        while rx.try_recv().is_ok() {
                            units += 1;
                        }
                        reporter.add(units);
                    })));
                }
                // Relay until every worker has dropped its sender (finished or panicked).
                while rx.recv().is_ok() {
                    reporter.add(1);
                }
                for h in handles {
                    match h.join() {
                        Ok(v) => out.extend(v),
                        Err(e) => std::panic::resume_unwind(e),
                    }
                }
                out
            });
            for (j, c) in parts {
                centroids[j * k * dsub..(j + 1) * k * dsub].copy_from_slice(&c);
            }
        }
        reporter.finish();
        // The reader's check (`from_bytes` ends with it): training never
        // hands out codebooks that a store could not open again.
        Codebooks::from_centroids(config, centroids).map_err(|e| format!("PQ train: produced invalid codebooks: {e}"))
    }

    /// Builds codebooks from given centroids (`m x ksub x dsub`, sub-space major).
    /// Errors on an invalid config, a wrong length or non-finite values.
    /// This is the validity check of codebook contents that training and
    /// [`Codebooks::from_bytes`] (the store's reader) apply.
    pub fn from_centroids(config: &PqConfig, centroids: Vec<f32>) -> Result<Codebooks, String> {
        config.validate()?;
        let want = config.m * config.ksub() * config.dsub();
        if centroids.len() != want {
            return Err(format!("PQ: {} centroid values, expected {}", centroids.len(), want));
        }
        if centroids.iter().any(|v| !v.is_finite()) {
            return Err("PQ: non-finite centroid value".to_string());
        }
        Ok(Codebooks::from_parts(*config, centroids))
    }

    fn from_parts(config: PqConfig, centroids: Vec<f32>) -> Codebooks {
        let (m, k, dsub) = (config.m, config.ksub(), config.dsub());
        let mut ct = vec![0.0f32; m * k * dsub];
        let mut half_norms = vec![0.0f32; m * k];
        let mut careful = vec![false; m];
        for j in 0..m {
            let sub = &centroids[j * k * dsub..(j + 1) * k * dsub];
            kernels::prepare(sub, k, dsub, &mut ct[j * k * dsub..(j + 1) * k * dsub], &mut half_norms[j * k..(j + 1) * k]);
            careful[j] = !kernels::in_safe_range(simd::max_abs(sub));
        }
        Codebooks { config, centroids, ct, half_norms, careful }
    }

    pub fn config(&self) -> &PqConfig {
        &self.config
    }

    /// The centroids, `m x ksub x dsub`, sub-space major.
    pub fn centroids(&self) -> &[f32] {
        &self.centroids
    }

    /// Encodes `n = vectors.len() / dim` vectors into `codes_out` (`n * code_size`
    /// bytes): the nearest centroid (L2) per sub-space, ties to the lowest index,
    /// for every finite input (vectors or codebooks beyond the f32 kernel's
    /// safe range are scored in f64).
    /// `threads` (0 = 1) splits the vectors; the codes do not depend on it.
    ///
    /// Panics if `vectors.len()` is not a multiple of `dim` or `codes_out` is not
    /// exactly `n * code_size` bytes (the caller checks lengths).
    pub fn encode(&self, vectors: &[f32], codes_out: &mut [u8], threads: usize) {
        let (dim, cs) = (self.config.dim, self.config.code_size());
        assert!(vectors.len().is_multiple_of(dim), "PQ encode: vectors length not a multiple of dim");
        let n = vectors.len() / dim;
        assert_eq!(codes_out.len(), n * cs, "PQ encode: codes_out must hold n * code_size bytes");
        // At least ENCODE_BLOCK vectors per thread.
        let threads = threads.clamp(1, n.div_ceil(ENCODE_BLOCK).max(1));
        if threads == 1 {
            self.encode_serial(vectors, codes_out);
            return;
        }
        let per = n.div_ceil(threads);
        let parts: Vec<(&[f32], &mut [u8])> = vectors.chunks(per * dim).zip(codes_out.chunks_mut(per * cs)).collect();
        crate::parallel::each_part(parts, threads, |(v, c)| self.encode_serial(v, c));
    }

    fn encode_serial(&self, vectors: &[f32], codes: &mut [u8]) {
        let (dim, m, k, dsub, cs) =
            (self.config.dim, self.config.m, self.config.ksub(), self.config.dsub(), self.config.code_size());
        let four = self.config.bits == 4;
        let mut idx = [0u32; ENCODE_BLOCK];
        let mut extreme = [false; ENCODE_BLOCK];
        for (vb, cb) in vectors.chunks(ENCODE_BLOCK * dim).zip(codes.chunks_mut(ENCODE_BLOCK * cs)) {
            let nb = vb.len() / dim;
            cb.fill(0);
            // Vectors whose f32 scores could over- or underflow are encoded in f64.
            for (e, v) in extreme.iter_mut().zip(vb.chunks_exact(dim)) {
                *e = !kernels::in_safe_range(simd::max_abs(v));
            }
            let any_extreme = extreme[..nb].contains(&true);
            // Sub-space outer: its transposed centroids stay in L1 for the whole block.
            for j in 0..m {
                let centroids = &self.centroids[j * k * dsub..(j + 1) * k * dsub];
                if !self.careful[j] {
                    simd::nearest_many(
                        &self.ct[j * k * dsub..(j + 1) * k * dsub],
                        &self.half_norms[j * k..(j + 1) * k],
                        k,
                        dsub,
                        &vb[j * dsub..],
                        dim,
                        nb,
                        &mut idx,
                    );
                }
                if self.careful[j] || any_extreme {
                    for i in (0..nb).filter(|&i| self.careful[j] || extreme[i]) {
                        idx[i] = kernels::nearest_f64(centroids, k, dsub, &vb[i * dim + j * dsub..]);
                    }
                }
                if four {
                    let (byte, shift) = (j / 2, 4 * (j & 1));
                    for (i, &c) in idx[..nb].iter().enumerate() {
                        cb[i * cs + byte] |= (c as u8) << shift;
                    }
                } else {
                    for (i, &c) in idx[..nb].iter().enumerate() {
                        cb[i * cs + j] = c as u8;
                    }
                }
            }
        }
    }

    /// Sub-space code `j` of `code` (a centroid index).
    #[inline]
    pub fn code_index(&self, code: &[u8], j: usize) -> usize {
        if self.config.bits == 4 {
            ((code[j / 2] >> (4 * (j & 1))) & 15) as usize
        } else {
            code[j] as usize
        }
    }

    /// Reconstructs one vector (`out.len() == dim`) from one code (`code_size` bytes).
    /// Panics on wrong lengths.
    pub fn decode(&self, code: &[u8], out: &mut [f32]) {
        let (m, k, dsub) = (self.config.m, self.config.ksub(), self.config.dsub());
        assert_eq!(code.len(), self.config.code_size(), "PQ decode: code length");
        assert_eq!(out.len(), self.config.dim, "PQ decode: output length");
        for j in 0..m {
            let c = self.code_index(code, j);
            let src = &self.centroids[(j * k + c) * dsub..(j * k + c + 1) * dsub];
            out[j * dsub..(j + 1) * dsub].copy_from_slice(src);
        }
    }

    /// Serializes to the self-describing little-endian format above (exact round trip).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.centroids.len() * 4 + CRC_LEN);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.config.dim as u32).to_le_bytes());
        out.extend_from_slice(&(self.config.m as u32).to_le_bytes());
        out.extend_from_slice(&self.config.bits.to_le_bytes());
        for v in &self.centroids {
            out.extend_from_slice(&v.to_le_bytes());
        }
        crate::storage::checksum::seal(&mut out);
        out
    }

    /// Bytes of the serialized codebooks that `bytes` starts with, from
    /// their header (checked as `from_bytes` checks it).
    pub fn encoded_len(bytes: &[u8]) -> Result<usize, String> {
        if bytes.len() < HEADER_LEN {
            return Err(format!("PQ codebooks: {} bytes is shorter than the header", bytes.len()));
        }
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let config = PqConfig { dim: u32_at(12) as usize, m: u32_at(16) as usize, bits: u32_at(20) };
        config.validate().map_err(|e| format!("PQ codebooks: bad header: {e}"))?;
        Ok(HEADER_LEN + config.m * config.ksub() * config.dsub() * 4 + CRC_LEN)
    }

    /// Parses [`Codebooks::to_bytes`] output. Checks magic, version, config,
    /// exact length, checksum and that every value is finite; returns `Err`
    /// (never panics) on anything else.
    pub fn from_bytes(bytes: &[u8]) -> Result<Codebooks, String> {
        if bytes.len() < HEADER_LEN + CRC_LEN {
            return Err(format!("PQ codebooks: {} bytes is shorter than the header", bytes.len()));
        }
        if bytes[..8] != MAGIC {
            return Err("PQ codebooks: bad magic".to_string());
        }
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(format!("PQ codebooks: unsupported format version {version}"));
        }
        let config = PqConfig { dim: u32_at(12) as usize, m: u32_at(16) as usize, bits: u32_at(20) };
        config.validate().map_err(|e| format!("PQ codebooks: bad header: {e}"))?;
        let values = config.m * config.ksub() * config.dsub(); // <= 256 * MAX_DIM, no overflow
        let want = HEADER_LEN + values * 4 + CRC_LEN;
        if bytes.len() != want {
            return Err(format!("PQ codebooks: {} bytes, expected {} for {:?}", bytes.len(), want, config));
        }
        let Some(body) = crate::storage::checksum::unseal(bytes) else {
            return Err("PQ codebooks: checksum mismatch".to_string());
        };
        let centroids: Vec<f32> = body[HEADER_LEN..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Codebooks::from_centroids(&config, centroids).map_err(|e| format!("PQ codebooks: {e}"))
    }

    /// Heap bytes owned (centroids plus the derived transposed copy and norms).
    pub fn heap_bytes(&self) -> usize {
        (self.centroids.capacity() + self.ct.capacity() + self.half_norms.capacity()) * std::mem::size_of::<f32>()
    }

    /// The ADC look-up table of one query (`query.len() == dim`; panics otherwise).
    pub fn query_table(&self, query: &[f32], metric: PqMetric) -> QueryTable {
        QueryTable::new(self, query, metric)
    }

    /// The raw `m x k` sub-space tables of `query` (f32; the caller checks
    /// their range): squared distances (L2) or negated inner products.
    pub fn subspace_tables(&self, query: &[f32], metric: PqMetric) -> Vec<f32> {
        let (m, k, dsub) = (self.config.m, self.config.ksub(), self.config.dsub());
        let mut t = vec![0.0f32; m * k];
        super::simd::subspace_tables(&self.ct, k, dsub, query, metric == PqMetric::L2, &mut t);
        t
    }

    /// A query table from `m x k` sub-space tables the caller computed;
    /// `None` when they are out of the range the scans sum exactly.
    pub fn table_from(&self, t: Vec<f32>) -> Option<QueryTable> {
        QueryTable::from_tables(self, t)
    }

    /// [`Codebooks::query_table`] with `bias` added to every distance.
    pub fn query_table_with_bias(&self, query: &[f32], metric: PqMetric, bias: f32) -> QueryTable {
        QueryTable::with_bias(self, query, metric, bias)
    }
}

/// Vectors per encode block (and the minimum per encode thread).
const ENCODE_BLOCK: usize = 64;
