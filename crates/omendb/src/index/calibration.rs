//! Recall targets to search settings, as measured at training: held-out
//! samples of the store's own vectors are searched with a grid of probe
//! counts and re-rank depths, against their exact neighbours (excluding
//! themselves); the settings that no other beats on both recall and cost
//! are kept.

/// One measured setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationPoint {
    /// recall@10 measured on the sample, less one standard error.
    pub recall: f32,
    /// Lists probed.
    pub nprobe: u32,
    /// Candidates re-ranked exactly, per result wanted (times k); 0 = none.
    pub rerank_per_k: u32,
    /// Relative cost (bytes scanned and re-ranked per query).
    pub cost: f64,
}

/// The measured settings, cheapest first, recall increasing with cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calibration {
    points: Vec<CalibrationPoint>,
}

const MAGIC: [u8; 8] = *b"OMENCAL1";
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
        Calibration { points }
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
        let mut out = Vec::with_capacity(12 + self.points.len() * POINT_LEN + 4);
        out.extend_from_slice(&MAGIC);
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

    /// Parses `to_bytes` output exactly; never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Calibration, String> {
        if bytes.len() < 16 || bytes[..8] != MAGIC {
            return Err("IVF calibration: bad magic or too short".to_string());
        }
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
        let n = u32_at(8) as usize;
        if n > MAX_POINTS || bytes.len() != 12 + n * POINT_LEN + 4 {
            return Err(format!("IVF calibration: {} bytes do not hold {n} points", bytes.len()));
        }
        let Some(body) = crate::storage::checksum::unseal(bytes) else {
            return Err("IVF calibration: checksum mismatch".to_string());
        };
        let points: Vec<CalibrationPoint> = body[12..]
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
        Ok(Calibration { points })
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
        let bytes = c.to_bytes();
        assert_eq!(Calibration::from_bytes(&bytes).unwrap(), c);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(Calibration::from_bytes(&bad).is_err(), "flip at {i} accepted");
        }
        assert_eq!(Calibration::default().for_target(0.5), None);
    }
}
