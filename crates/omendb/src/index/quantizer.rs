//! What a PQ generation encodes vectors with: the PQ codebooks and, in a
//! store with an IVF index, the coarse quantizer and its calibration. One
//! codes-file record per slot: the PQ code, then (IVF) the vector's list
//! as a little-endian u32. With IVF the code encodes the vector's residual
//! (the vector minus its list's centroid, as faiss's IVF-PQ does): a
//! residual varies far less than the vector, so the same code bytes rank
//! far better.

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

/// The IVF part of a quantizer.
#[derive(Debug)]
pub struct Ivf {
    pub coarse: CoarseQuantizer,
    pub calibration: Calibration,
}

impl Quantizer {
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
        self.codebooks.encode(&ivf.coarse.residuals(vectors, &lists), &mut codes, threads);
        for ((record, code), list) in out.chunks_exact_mut(rs).zip(codes.chunks_exact(cs)).zip(&lists) {
            record[..cs].copy_from_slice(code);
            record[cs..].copy_from_slice(&list.to_le_bytes());
        }
    }

    /// The ADC table of a query (in PQ input space) for the codes of
    /// `list`: the codes are residuals, so L2 scores `query - centroid`,
    /// and inner product adds `-<query, centroid>` to every distance.
    pub fn list_table(&self, query: &[f32], list: u32, scratch: &mut Vec<f32>) -> QueryTable {
        let ivf = self.ivf.as_ref().expect("list tables exist with an IVF index");
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
            out.extend_from_slice(&ivf.coarse.to_bytes());
            out.extend_from_slice(&ivf.calibration.to_bytes());
        }
        out
    }

    /// Parses `to_bytes` output; `ivf` says whether the store has an IVF
    /// index (so the IVF parts must be there, or must not).
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
        let coarse = CoarseQuantizer::from_bytes(&rest[..coarse_len])?;
        let calibration = Calibration::from_bytes(&rest[coarse_len..])?;
        if coarse.dim() != codebooks.config().dim {
            return Err("IVF centroids and PQ codebooks differ in dimension".to_string());
        }
        Ok(Quantizer { codebooks, ivf: Some(Ivf { coarse, calibration }) })
    }
}
