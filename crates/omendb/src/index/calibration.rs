//! Recall targets to search settings, as measured at training: held-out
//! samples of the store's own vectors are searched with a grid of probe
//! counts and re-rank depths, against their exact neighbours (excluding
//! themselves); the settings that no other beats on both recall and cost
//! are kept. A host whose queries differ from the stored vectors measures
//! the same grid on its own queries instead (`Store::calibrate`).

/// One measured setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationPoint {
    /// recall@10 measured on the sample, less one standard error.
    pub recall: f32,
    /// Lists probed.
    pub nprobe: u32,
    /// Candidates re-ranked exactly, per result wanted (times k); 0 = none.
    pub rerank_per_k: u32,
    /// Relative cost: the bytes of list scan a query costs (the scan, the
    /// re-rank's random reads; `ivf::Prices`).
    pub cost: f64,
}

/// The measured settings, cheapest first, recall increasing with cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calibration {
    points: Vec<CalibrationPoint>,
    /// How many of the host's queries measured it; 0: the store's own
    /// vectors did (at training).
    queries: u32,
}

/// A calibration measured at training.
const MAGIC: [u8; 8] = *b"OMENCAL1";
/// One measured on the host's queries: the query count follows the magic.
const MAGIC_HOST: [u8; 8] = *b"OMENCAL2";
const POINT_LEN: usize = 4 + 4 + 4 + 8;
/// More points than any grid makes: a corrupt count is refused before allocating.
const MAX_POINTS: usize = 4096;

impl Calibration {
    /// Keeps the Pareto front of `measured` (no other point has at least
    /// its recall at a lower cost).
    pub fn from_measurements(mut measured: Vec<CalibrationPoint>) -> Calibration {
        measured.retain(|p| p.recall.is_finite() && p.cost.is_finite());
        measured.sort_by(|a, b| a.cost.total_cmp(&b.cost).then(b.recall.total_cmp(&a.recall)));
        let mut points: Vec<CalibrationPoint> = Vec::new();
        for p in measured {
            if points.last().is_none_or(|last| p.recall > last.recall) {
                points.push(p);
            }
        }
        points.truncate(MAX_POINTS);
        Calibration { points, queries: 0 }
    }

    /// This calibration, as measured on `queries` of the host's queries.
    pub fn measured_on(self, queries: u32) -> Calibration {
        Calibration { queries, ..self }
    }

    /// How many of the host's queries measured it; 0 when the store's own
    /// vectors did, at training.
    pub fn queries(&self) -> u32 {
        self.queries
    }

    /// The kept settings, cheapest first (recall increasing).
    pub fn points(&self) -> &[CalibrationPoint] {
        &self.points
    }

    /// The cheapest setting measured to reach `target`, or the one with the
    /// best recall when none did; `None` only without measurements.
    pub fn for_target(&self, target: f32) -> Option<CalibrationPoint> {
        self.points.iter().find(|p| p.recall >= target).or(self.points.last()).copied()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.points.len() * POINT_LEN + 4);
        if self.queries == 0 {
            out.extend_from_slice(&MAGIC);
        } else {
            out.extend_from_slice(&MAGIC_HOST);
            out.extend_from_slice(&self.queries.to_le_bytes());
        }
        out.extend_from_slice(&(self.points.len() as u32).to_le_bytes());
        for p in &self.points {
            out.extend_from_slice(&p.recall.to_le_bytes());
            out.extend_from_slice(&p.nprobe.to_le_bytes());
            out.extend_from_slice(&p.rerank_per_k.to_le_bytes());
            out.extend_from_slice(&p.cost.to_le_bytes());
        }
        crate::storage::checksum::seal(&mut out);
        out
    }

    /// The length of the calibration `bytes` start with (more may follow),
    /// as its header gives it; never panics.
    pub fn encoded_len(bytes: &[u8]) -> Result<usize, String> {
        let header = match bytes.get(..8) {
            Some(m) if m == MAGIC => 12,
            Some(m) if m == MAGIC_HOST => 16,
            _ => return Err("IVF calibration: bad magic or too short".to_string()),
        };
        let Some(count) = bytes.get(header - 4..header) else {
            return Err("IVF calibration: too short".to_string());
        };
        let n = u32::from_le_bytes(count.try_into().expect("4 bytes")) as usize;
        if n > MAX_POINTS {
            return Err(format!("IVF calibration: {n} points, more than any calibration measures"));
        }
        Ok(header + n * POINT_LEN + 4)
    }

    /// Parses `to_bytes` output exactly; never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Calibration, String> {
        let len = Calibration::encoded_len(bytes)?;
        if bytes.len() != len {
            return Err(format!("IVF calibration: {} bytes, its header says {len}", bytes.len()));
        }
        let Some(body) = crate::storage::checksum::unseal(bytes) else {
            return Err("IVF calibration: checksum mismatch".to_string());
        };
        let (queries, header) = if body[..8] == MAGIC_HOST {
            match u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")) {
                0 => return Err("IVF calibration: measured on the host's queries, but on none".to_string()),
                q => (q, 16),
            }
        } else {
            (0, 12)
        };
        let points: Vec<CalibrationPoint> = body[header..]
            .chunks_exact(POINT_LEN)
            .map(|b| CalibrationPoint {
                recall: f32::from_le_bytes(b[0..4].try_into().expect("4 bytes")),
                nprobe: u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")),
                rerank_per_k: u32::from_le_bytes(b[8..12].try_into().expect("4 bytes")),
                cost: f64::from_le_bytes(b[12..20].try_into().expect("8 bytes")),
            })
            .collect();
        if points.iter().any(|p| !(0.0..=1.0).contains(&p.recall) || p.nprobe == 0 || !p.cost.is_finite()) {
            return Err("IVF calibration: a point is out of range".to_string());
        }
        Ok(Calibration { points, queries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(recall: f32, nprobe: u32, cost: f64) -> CalibrationPoint {
        CalibrationPoint { recall, nprobe, rerank_per_k: 4, cost }
    }

    #[test]
    fn keeps_the_front_and_picks_the_cheapest_reaching_a_target() {
        let c = Calibration::from_measurements(vec![
            point(0.9, 4, 40.0),
            point(0.8, 8, 80.0), // dominated
            point(0.5, 1, 10.0),
            point(0.99, 16, 160.0),
        ]);
        assert_eq!(c.points().iter().map(|p| p.nprobe).collect::<Vec<_>>(), vec![1, 4, 16]);
        assert_eq!(c.for_target(0.85).unwrap().nprobe, 4);
        assert_eq!(c.for_target(0.9).unwrap().nprobe, 4);
        assert_eq!(c.for_target(0.999).unwrap().nprobe, 16);
        for c in [c.clone(), c.measured_on(37)] {
            let bytes = c.to_bytes();
            assert_eq!(Calibration::encoded_len(&bytes), Ok(bytes.len()));
            assert_eq!(Calibration::from_bytes(&bytes).unwrap(), c);
            for i in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[i] ^= 1;
                assert!(Calibration::from_bytes(&bad).is_err(), "flip at {i} accepted");
            }
            for cut in 0..bytes.len() {
                assert!(Calibration::from_bytes(&bytes[..cut]).is_err(), "{cut} bytes accepted");
            }
        }
        assert_eq!(Calibration::default().for_target(0.5), None);
    }

    /// The host's calibration names how many queries measured it; one
    /// that claims none is malformed, even with a valid checksum.
    #[test]
    fn a_host_calibration_keeps_its_query_count() {
        let c = Calibration::from_measurements(vec![point(0.9, 4, 40.0)]);
        assert_eq!(c.queries(), 0);
        assert_eq!(c.to_bytes()[..8], MAGIC);
        let host = c.clone().measured_on(500);
        assert_eq!(host.to_bytes()[..8], MAGIC_HOST);
        assert_eq!(Calibration::from_bytes(&host.to_bytes()).unwrap().queries(), 500);
        let mut none = host.to_bytes();
        none[8..12].fill(0);
        none.truncate(none.len() - 4);
        crate::storage::checksum::seal(&mut none);
        let err = Calibration::from_bytes(&none).unwrap_err();
        assert!(err.contains("on none"), "{err}");
    }
}
