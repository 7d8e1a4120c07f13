//! Calibration on the host's own queries. Training calibrates on held-out
//! stored vectors; where the queries differ from what is stored (another
//! encoder's side, inner product, queries far from the data) a target
//! measured that way is not what the queries get. The host hands a sample
//! of its queries; the same grid is measured on them and committed.
//!
//! Durability: the calibration is a part appended to the codebooks file
//! past its committed length, synced, then committed by a superblock whose
//! `codebooks_len` and `codebooks_crc` take it in (the reader keeps the
//! last calibration part). Until that superblock is written the part is an
//! uncommitted tail, which readers ignore and the next append overwrites.
//! Training and rebuilding write a new codebooks file with a calibration
//! of their own; compaction carries the one in use.

use std::sync::Arc;

use super::generation::PqData;
use super::{Store, Writer};
use crate::error::{Error, ErrorKind, Result};
use crate::index::CalibrationPoint;
use crate::storage::format::{FileKind, FILE_HEADER_LEN};
use crate::storage::fsutil;

/// The most queries one calibration takes (each costs an exact search).
pub const MAX_CALIBRATION_QUERIES: usize = 100_000;

impl Store {
    /// Measures the IVF index's recall targets on `queries` (rows of `dim`
    /// floats: a sample of the queries this store answers, in the space
    /// searches take them) and commits the result: from then on (and after
    /// reopening) `target_recall` means recall@10 on queries like these.
    /// Returns the kept settings, cheapest first. Each query's exact
    /// neighbours are found by an exact search, so the raw vectors are
    /// needed; a few hundred queries measure recall to about 0.01. Writes
    /// wait while it measures (it holds the writer); searches go on.
    /// Training or rebuilding the index measures on stored vectors again.
    /// `progress(done, total)` as for `train_pq`: on the calling thread,
    /// never concurrently, `total` fixed, `done` never decreasing, the last
    /// call with `done == total` once it has measured (the commit follows).
    pub fn calibrate(&self, queries: &[f32], progress: &mut dyn FnMut(u64, u64)) -> Result<Vec<CalibrationPoint>> {
        let mut guard = self.lock_writer()?;
        let w: &mut Writer = &mut guard;
        let rows = self.calibration_rows(queries)?;
        // The writer lock keeps the view's lists and live set as they are
        // (puts, deletes and compaction wait for it); searches go on.
        let (calibration, pq) = {
            let view = self.view.read();
            let (Some(pq), Some(lists)) = (view.generation.pq.as_ref(), view.lists.as_ref()) else {
                return Err(self.no_index_to_calibrate());
            };
            if view.generation.vectors.is_none() {
                return Err(Error::invalid(
                    "this store keeps no raw vectors (DROP_RAW): the queries' exact neighbours cannot be found",
                ));
            }
            let live = view.live.count();
            if live <= super::ivf::CALIBRATION_K as u64 {
                return Err(Error::invalid(format!(
                    "the store holds {live} vectors; calibrating recall@{} needs more",
                    super::ivf::CALIBRATION_K
                )));
            }
            let calibration = super::ivf::calibrate_on_queries(self, &view.generation, pq, lists, &view.live, &rows, progress)?;
            (calibration, pq.clone())
        };
        let part = calibration.to_bytes();
        let len = self.append_calibration(w, &pq, &part)?;
        let points = calibration.points().to_vec();
        pq.quantizer.ivf.as_ref().expect("an IVF store's quantizer").set_calibration(calibration);
        let mut view = self.view.write();
        let with_len = PqData { codebooks_file_len: FILE_HEADER_LEN + len, ..pq };
        view.generation = Arc::new(view.generation.with_pq(Some(with_len)));
        Ok(points)
    }

    /// `queries` as rows checked as a batch search checks them, as many as a
    /// calibration takes.
    fn calibration_rows<'q>(&self, queries: &'q [f32]) -> Result<Vec<&'q [f32]>> {
        let rows = self.query_rows(queries)?;
        if rows.is_empty() || rows.len() > MAX_CALIBRATION_QUERIES {
            return Err(Error::invalid(format!(
                "{} queries; a calibration takes 1 to {MAX_CALIBRATION_QUERIES}",
                rows.len()
            )));
        }
        Ok(rows)
    }

    /// Why a store without an IVF index in use cannot calibrate.
    fn no_index_to_calibrate(&self) -> Error {
        if !self.settings.ivf() {
            return Error::invalid(format!("{} was created without an IVF index: nothing to calibrate", self.dir.display()));
        }
        match self.index_damage() {
            Some(damage) => damage.context("calibrate needs the IVF index: rebuild it first (rebuild_index)"),
            None => Error::invalid("the IVF index is not trained yet: train_pq first"),
        }
    }

    /// Appends the calibration `part` to `pq`'s codebooks file and commits
    /// it; returns the new length of the codebooks data area.
    fn append_calibration(&self, w: &mut Writer, pq: &PqData, part: &[u8]) -> Result<u64> {
        let path = self.dir.join(FileKind::Codebooks.file_name(pq.generation));
        let committed = w.committed;
        let (len, crc) = (committed.codebooks_len + part.len() as u64, crate::storage::checksum::crc32c_append(committed.codebooks_crc, part));
        // What the reader accepts after the parts it accepted at open (the
        // file's committed bytes, unchanged since): the part, by the
        // reader's own rule for appended parts.
        crate::index::Quantizer::appended_calibration(part)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("calibration not written, a reader would reject it: {e}")))?;
        let file = fsutil::open_data_file(&path, true)?;
        // An earlier append that was never committed leaves a tail: gone first.
        let end = FILE_HEADER_LEN + committed.codebooks_len;
        fsutil::truncate(&file, &path, end).map_err(|e| Error::io(format!("truncate {}", path.display()), e))?;
        fsutil::write_at(&file, &path, part, end).map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        w.check_sync(fsutil::sync_data(&file, &path))?;
        self.commit_locked(w, true, |sb| {
            sb.codebooks_len = len;
            sb.codebooks_crc = crc;
        })?;
        Ok(len)
    }
}
