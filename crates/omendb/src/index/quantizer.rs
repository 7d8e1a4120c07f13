//! What a PQ generation encodes vectors with: the PQ codebooks and, in a
//! store with an IVF index, the coarse quantizer and its calibration. One
//! codes-file record per slot: the PQ code, then (IVF) the vector's list
//! as a little-endian u32. With IVF the code of an L2 or cosine store
//! encodes the vector itself, as faiss's fast-scan IVF does by default
//! (`Ivf::residual` false): one table serves every list a query probes,
//! and on the sets measured these codes ranked better than residuals
//! (docs/indexes.md). Inner-product stores, and stores trained before,
//! encode the vector's residual (the vector minus its list's centroid, as
//! faiss's `IndexIVFPQ` does), scored with a table per probed list.

use super::{Calibration, CoarseQuantizer};
use crate::quantization::{Codebooks, PqMetric, QueryTable};

/// Bytes of a record's list number.
pub const LIST_LEN: usize = 4;

#[derive(Debug)]
pub struct Quantizer {
    pub codebooks: Codebooks,
    /// Present in a store with an IVF index.
    pub ivf: Option<Ivf>,
}

/// The bytes of each code that stage one of a two-stage search reads:
/// about a third, in whole groups of 16 (the kernels' step), for 4-bit
/// codes of at least `TWO_STAGE_MIN_CODE` bytes. On 768 dimensions the
/// first third of a 96-byte code ranked the candidates as the whole code
/// does (`scripts/twostage_sim.py`, docs/benchmarks.md); on SIFT's 128
/// dimensions half of a 32-byte code needed eight times the candidates.
pub fn stage_one_bytes(bits: u32, code_size: usize) -> Option<usize> {
    (bits == 4 && code_size >= TWO_STAGE_MIN_CODE).then(|| (code_size / 3 / 16 * 16).max(16))
}

/// The shortest codes searched in two stages.
pub const TWO_STAGE_MIN_CODE: usize = 64;

/// The IVF part of a quantizer.
#[derive(Debug)]
pub struct Ivf {
    pub coarse: CoarseQuantizer,
    /// Replaced in place when the host calibrates with its own queries
    /// (`Store::calibrate`): settings for searches, not part of what the
    /// codes mean, so readers of this PQ generation just see the newer one.
    calibration: parking_lot::RwLock<Calibration>,
    /// Whether the codes encode residuals from the lists' centroids
    /// (inner-product stores, and stores trained before codes of the
    /// vectors existed), not the vectors.
    pub residual: bool,
    /// Whether the index is searched in two stages (`stage_one_bytes`):
    /// set at training, when its calibration measured that search; stores
    /// trained before, and small ones, scan whole codes.
    pub two_stage: bool,
    /// Residual codes, L2, 4-bit: per list, sub-space and codeword,
    /// `|r|^2 + 2 <c, r>` (`nlist x m x 16`; faiss's precomputed table),
    /// so that a list's table is the query's shared part plus these, not
    /// a table of `query - centroid` made anew. Derived, not stored.
    terms: Vec<f32>,
}

impl Ivf {
    /// The IVF part for `codebooks` (which encode residuals when
    /// `residual`), its list terms computed; searched in two stages when
    /// `two_stage` asks (training, for a large store) and the codes allow
    /// it (4-bit codes of the vectors, at least `TWO_STAGE_MIN_CODE`
    /// bytes), so a two-stage index always has a prefix to scan. (Reading
    /// a header, `from_bytes` refuses the flag where they do not.)
    pub fn new(coarse: CoarseQuantizer, calibration: Calibration, codebooks: &Codebooks, residual: bool, two_stage: bool) -> Ivf {
        let two_stage = two_stage && !residual && stage_one_bytes(codebooks.config().bits, codebooks.config().code_size()).is_some();
        let cfg = codebooks.config();
        let (m, k, dsub) = (cfg.m, cfg.ksub(), cfg.dsub());
        let mut terms = Vec::new();
        if residual && coarse.metric() == PqMetric::L2 && cfg.bits == 4 {
            let words = codebooks.centroids();
            terms.reserve(coarse.nlist() * m * k);
            for list in 0..coarse.nlist() as u32 {
                let c = coarse.centroid(list);
                for j in 0..m {
                    let cj = &c[j * dsub..(j + 1) * dsub];
                    for v in 0..k {
                        let r = &words[(j * k + v) * dsub..(j * k + v + 1) * dsub];
                        let (norm, dot) = r.iter().zip(cj).fold((0.0f64, 0.0f64), |(n, d), (&r, &c)| {
                            (n + r as f64 * r as f64, d + r as f64 * c as f64)
                        });
                        terms.push(crate::search::distance::saturate(norm + 2.0 * dot));
                    }
                }
            }
        }
        Ivf { coarse, calibration: parking_lot::RwLock::new(calibration), residual, two_stage, terms }
    }

    /// The bytes of each code stage one of this index's search reads, if
    /// it is searched in two stages.
    pub fn stage_one_bytes(&self, bits: u32, code_size: usize) -> Option<usize> {
        self.two_stage.then(|| stage_one_bytes(bits, code_size)).flatten()
    }

    /// The calibration in use.
    pub fn calibration(&self) -> Calibration {
        self.calibration.read().clone()
    }

    /// The cheapest setting measured to reach `target` (`Calibration::for_target`).
    pub fn calibrated_for(&self, target: f32) -> Option<super::CalibrationPoint> {
        self.calibration.read().for_target(target)
    }

    /// How many of the host's queries measured the calibration in use (0: training's).
    pub fn calibration_queries(&self) -> u32 {
        self.calibration.read().queries()
    }

    pub fn set_calibration(&self, calibration: Calibration) {
        *self.calibration.write() = calibration;
    }
}

/// The tables a query scans the lists it probes with: one for every list
/// (codes of the vectors; inner-product residual codes, whose lists differ
/// by a constant), or (L2 residual codes) the query's parts shared by
/// every list and the table of the list probed last (remade in place for
/// the next: one table per probed list, without allocating).
#[derive(Clone)]
pub struct ProbeTables<'a> {
    quantizer: &'a Quantizer,
    query: &'a [f32],
    /// L2 residual codes: the query's `m x k` inner-product table
    /// (`-<q_j, r>`); empty otherwise.
    shared: Vec<f32>,
    /// Inner-product residual codes: the table of `-<q, r>`, every list's
    /// table less its constant `-<q, c>` (`None` when out of the exactly
    /// summable range: each list's table is then made whole).
    residual_ip: Option<QueryTable>,
    /// The table `fill` made last, to be refilled.
    reused: Option<QueryTable>,
    /// The table of every list (codes of the vectors; made by
    /// `probe_tables`), or (residual codes) one made from `query -
    /// centroid` directly (see `table`).
    direct: Option<QueryTable>,
}

impl ProbeTables<'_> {
    /// The one table of every list, where the codes are the vectors'
    /// (what a two-stage search scans with: its prefix, then itself).
    pub fn shared(&self) -> Option<&QueryTable> {
        self.quantizer.ivf.as_ref().filter(|ivf| !ivf.residual).and(self.direct.as_ref())
    }

    /// Starts loading what making `list`'s table reads from memory (its
    /// terms: `m x k` floats a list, far apart for lists far apart).
    pub fn prefetch(&self, list: u32) {
        let Some(ivf) = self.quantizer.ivf.as_ref().filter(|ivf| ivf.residual) else { return };
        let n = self.shared.len();
        if let Some(terms) = ivf.terms.get(list as usize * n..(list as usize + 1) * n) {
            crate::storage::prefetch::prefetch_slice(terms);
        }
    }

    /// The ADC table of the query for the codes of `list` (residuals from
    /// its centroid), and the constant a scan adds to its distances (the
    /// `shift` of `scan_planar`). L2: `|q - c|^2 + |r|^2 + 2<c, r> - 2<q,
    /// r>`, from the shared table and the list's terms, remade for each
    /// list; inner product: `-<q, r>` (one table for every list, made once)
    /// shifted by `-<q, c>`. Tables out of the exactly summable range
    /// (extreme values) and 8-bit L2 (whose terms would take 16 times the
    /// memory) are made from `query - centroid` directly.
    pub fn table(&mut self, list: u32, scratch: &mut Vec<f32>) -> (&QueryTable, f32) {
        let q = self.quantizer;
        let ivf = q.ivf.as_ref().expect("probe tables exist with an IVF index");
        if !ivf.residual {
            return (self.direct.as_ref().expect("made by probe_tables"), 0.0);
        }
        let centroid = ivf.coarse.centroid(list);
        if ivf.coarse.metric() == PqMetric::InnerProduct {
            let shift = -crate::search::distance::dot(self.query, centroid);
            if let Some(table) = self.residual_ip.as_ref().filter(|t| t.shiftable(shift)) {
                return (table, shift);
            }
            return (self.direct.insert(q.list_table(self.query, list, scratch)), 0.0);
        }
        let cfg = q.codebooks.config();
        let (k, n) = (cfg.ksub(), self.shared.len());
        let shared = &self.shared;
        let fill = |t: &mut [f32], mins: &mut [f32], maxs: &mut [f32]| {
            let terms = &ivf.terms[list as usize * n..(list as usize + 1) * n];
            let base = crate::search::distance::l2_squared(self.query, centroid);
            crate::quantization::list_table_l2(shared, terms, base, k, t, mins, maxs);
        };
        if !ivf.terms.is_empty() {
            let made = match &mut self.reused {
                Some(table) => table.refill_bounded(cfg.m, cfg.bits, fill),
                None => {
                    let mut t = vec![0.0f32; n];
                    fill(&mut t, &mut vec![0.0; cfg.m], &mut vec![0.0; cfg.m]);
                    self.reused = q.codebooks.table_from(t);
                    self.reused.is_some()
                }
            };
            if made {
                return (self.reused.as_ref().expect("made"), 0.0);
            }
            // Not summable: the next list's table is made anew.
            self.reused = None;
        }
        (self.direct.insert(q.list_table(self.query, list, scratch)), 0.0)
    }
}

impl Quantizer {
    /// Heap bytes held: the codebooks and (IVF) the coarse quantizer and
    /// the list terms.
    pub fn heap_bytes(&self) -> usize {
        self.codebooks.heap_bytes() + self.ivf.as_ref().map_or(0, |ivf| ivf.coarse.heap_bytes() + 4 * ivf.terms.capacity())
    }

    /// Bytes of a PQ code.
    pub fn code_size(&self) -> usize {
        self.codebooks.config().code_size()
    }

    /// Bytes of a codes-file record.
    pub fn record_size(&self) -> usize {
        self.code_size() + if self.ivf.is_some() { LIST_LEN } else { 0 }
    }

    /// The PQ code in a record.
    pub fn code_of<'a>(&self, record: &'a [u8]) -> &'a [u8] {
        &record[..self.code_size()]
    }

    /// The bytes of each code stage one reads, where the index is
    /// searched in two stages.
    pub fn stage_one_bytes(&self) -> Option<usize> {
        let cfg = self.codebooks.config();
        self.ivf.as_ref()?.stage_one_bytes(cfg.bits, cfg.code_size())
    }

    /// Bytes of each code the IVF lists hold: stage one's prefix where the
    /// index is searched in two stages (stage two reads whole codes from
    /// the codes file), else the whole code.
    pub fn list_code_size(&self) -> usize {
        self.stage_one_bytes().unwrap_or(self.code_size())
    }

    /// The part of a record's code its list holds (`list_code_size`).
    pub fn list_code_of<'a>(&self, record: &'a [u8]) -> &'a [u8] {
        &record[..self.list_code_size()]
    }

    /// The list in a record (IVF stores).
    pub fn list_of(&self, record: &[u8]) -> u32 {
        let cs = self.code_size();
        u32::from_le_bytes(record[cs..cs + LIST_LEN].try_into().expect("a record holds its list"))
    }

    /// Encodes `vectors` (row-major, already in PQ input space: unit
    /// vectors for cosine) into records, `out.len() == n * record_size()`.
    pub fn encode(&self, vectors: &[f32], out: &mut [u8], threads: usize) {
        let Some(ivf) = &self.ivf else {
            self.codebooks.encode(vectors, out, threads);
            return;
        };
        let (cs, rs) = (self.code_size(), self.record_size());
        let n = out.len() / rs;
        let mut codes = vec![0u8; n * cs];
        let mut lists = vec![0u32; n];
        ivf.coarse.assign(vectors, &mut lists, threads);
        if ivf.residual {
            self.codebooks.encode(&ivf.coarse.residuals(vectors, &lists), &mut codes, threads);
        } else {
            self.codebooks.encode(vectors, &mut codes, threads);
        }
        for ((record, code), list) in out.chunks_exact_mut(rs).zip(codes.chunks_exact(cs)).zip(&lists) {
            record[..cs].copy_from_slice(code);
            record[cs..].copy_from_slice(&list.to_le_bytes());
        }
    }

    /// The tables of `query` (in PQ input space) for the lists it probes:
    /// codes of the vectors need one, made here; residual codes share a part.
    pub fn probe_tables<'a>(&'a self, query: &'a [f32]) -> ProbeTables<'a> {
        let ivf = self.ivf.as_ref().expect("probe tables exist with an IVF index");
        if !ivf.residual {
            let direct = Some(self.codebooks.query_table(query, ivf.coarse.metric()));
            return ProbeTables { quantizer: self, query, shared: Vec::new(), residual_ip: None, reused: None, direct };
        }
        let shared = self.codebooks.subspace_tables(query, PqMetric::InnerProduct);
        if ivf.coarse.metric() == PqMetric::InnerProduct {
            let residual_ip = self.codebooks.table_from(shared);
            return ProbeTables { quantizer: self, query, shared: Vec::new(), residual_ip, reused: None, direct: None };
        }
        ProbeTables { quantizer: self, query, shared, residual_ip: None, reused: None, direct: None }
    }

    /// The ADC table of a query (in PQ input space) for the residual codes
    /// of `list`: L2 scores `query - centroid`, and inner product adds
    /// `-<query, centroid>` to every distance. (Codes of the vectors use
    /// the query's one table, made by `probe_tables`.)
    pub fn list_table(&self, query: &[f32], list: u32, scratch: &mut Vec<f32>) -> QueryTable {
        let ivf = self.ivf.as_ref().expect("list tables exist with an IVF index");
        debug_assert!(ivf.residual, "a list table of codes of the vectors");
        let centroid = ivf.coarse.centroid(list);
        match ivf.coarse.metric() {
            PqMetric::L2 => {
                scratch.clear();
                scratch.extend(query.iter().zip(centroid).map(|(&q, &c)| (q - c).clamp(-f32::MAX, f32::MAX)));
                self.codebooks.query_table(scratch, PqMetric::L2)
            }
            PqMetric::InnerProduct => {
                let bias = crate::search::distance::saturate(-crate::search::distance::dot_f64(query, centroid));
                self.codebooks.query_table_with_bias(query, PqMetric::InnerProduct, bias)
            }
        }
    }

    /// The codebooks file's data: the codebooks' bytes, then (IVF) the
    /// coarse quantizer's and the calibration's.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.codebooks.to_bytes();
        if let Some(ivf) = &self.ivf {
            out.extend_from_slice(&ivf.coarse.to_bytes(ivf.residual, ivf.two_stage));
            out.extend_from_slice(&ivf.calibration.read().to_bytes());
        }
        out
    }

    /// A calibration part appended after the codebooks file's first one
    /// (`Store::calibrate`), as the reader accepts it: only the host's
    /// calibrations are ever appended. The writer checks its part with it.
    pub fn appended_calibration(part: &[u8]) -> Result<Calibration, String> {
        let calibration = Calibration::from_bytes(part)?;
        if calibration.queries() == 0 {
            return Err("IVF calibration: a training calibration after the first".to_string());
        }
        Ok(calibration)
    }

    /// Parses `to_bytes` output, with any calibrations the host measured
    /// appended after it (`Store::calibrate`; the last one is in use);
    /// `ivf` says whether the store has an IVF index (so the IVF parts
    /// must be there, or must not).
    pub fn from_bytes(bytes: &[u8], ivf: bool) -> Result<Quantizer, String> {
        let pq_len = Codebooks::encoded_len(bytes)?.min(bytes.len());
        let codebooks = Codebooks::from_bytes(&bytes[..pq_len])?;
        let rest = &bytes[pq_len..];
        if !ivf {
            if !rest.is_empty() {
                return Err(format!("{} bytes after the PQ codebooks of a store without an IVF index", rest.len()));
            }
            return Ok(Quantizer { codebooks, ivf: None });
        }
        let coarse_len = CoarseQuantizer::encoded_len(rest)?.min(rest.len());
        let (coarse, residual, two_stage) = CoarseQuantizer::from_bytes(&rest[..coarse_len])?;
        let len = Calibration::encoded_len(&rest[coarse_len..])?.min(rest.len() - coarse_len);
        let mut calibration = Calibration::from_bytes(&rest[coarse_len..coarse_len + len])?;
        let mut rest = &rest[coarse_len + len..];
        while !rest.is_empty() {
            let len = Calibration::encoded_len(rest)?.min(rest.len());
            calibration = Quantizer::appended_calibration(&rest[..len])?;
            rest = &rest[len..];
        }
        if coarse.dim() != codebooks.config().dim {
            return Err("IVF centroids and PQ codebooks differ in dimension".to_string());
        }
        if two_stage && stage_one_bytes(codebooks.config().bits, codebooks.config().code_size()).is_none() {
            return Err("IVF centroids: a two-stage search of codes too short for it".to_string());
        }
        let ivf = Ivf::new(coarse, calibration, &codebooks, residual, two_stage);
        Ok(Quantizer { codebooks, ivf: Some(ivf) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantization::{PqConfig, TrainOptions};

    #[test]
    fn records_are_the_batch_assigned_then_encoded_at_any_thread_count() {
        // Screened lists (600) and lists scored in full (20), codes of the
        // vectors and of residuals: a record is the vector's list and its
        // code, whatever the threads.
        let dim = 64;
        let points = crate::index::screen::tests::data(1000, dim, 0.5, 2);
        let config = PqConfig { dim, m: 16, bits: 4 };
        let options = TrainOptions { iterations: 4, seed: 1, threads: 1 };
        for (nlist, screened) in [(600, true), (20, false)] {
            for residual in [false, true] {
                let centroids = crate::index::screen::tests::data(nlist, dim, 0.05, 1);
                let coarse = CoarseQuantizer::from_centroids(dim, PqMetric::L2, centroids).unwrap();
                assert_eq!(coarse.is_screened(), screened, "{nlist} lists");
                let codebooks = Codebooks::train(&config, &points, &options, &mut |_, _| {}).unwrap();
                let ivf = Ivf::new(coarse, Calibration::default(), &codebooks, residual, false);
                let q = Quantizer { codebooks, ivf: Some(ivf) };
                let ivf = q.ivf.as_ref().unwrap();
                for n in [1000, 300, 1] {
                    let x = &points[..n * dim];
                    let mut lists = vec![0u32; n];
                    ivf.coarse.assign(x, &mut lists, 1);
                    let input = if residual { ivf.coarse.residuals(x, &lists) } else { x.to_vec() };
                    let mut codes = vec![0u8; n * q.code_size()];
                    q.codebooks.encode(&input, &mut codes, 1);
                    let what = format!("{nlist} lists, residual {residual}, n {n}");
                    for threads in [1, 2, 3] {
                        let mut records = vec![0u8; n * q.record_size()];
                        q.encode(x, &mut records, threads);
                        for (i, record) in records.chunks_exact(q.record_size()).enumerate() {
                            assert_eq!(q.list_of(record), lists[i], "{what}, threads {threads}: list of {i}");
                            assert_eq!(q.code_of(record), &codes[i * q.code_size()..(i + 1) * q.code_size()], "{what}, threads {threads}: code of {i}");
                        }
                    }
                }
            }
        }
    }
}
