//! OmenDB storage engine: an embedded, durable vector store on memory-mapped
//! files, with Product Quantization.
//!
//! This crate is the engine as a safe Rust library. The C ABI
//! (`libomendb.so`, `omendb.h`) is a separate crate over it,
//! `crates/omendb-capi`; a Rust program depends on this crate alone.
//!
//! A [`Store`] is a directory. [`Options`] say how to open it,
//! [`Store::put_batch`] and [`Store::delete_batch`] change it,
//! [`Store::checkpoint`] makes the changes durable, [`Store::get`] and
//! [`Store::search`] read it, and every failure is an [`Error`] with an
//! [`ErrorKind`].
//!
//! ```
//! use omendb::{IdBuf, Options, SearchParams, Store};
//!
//! # fn main() -> omendb::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("omendb-doc-lib-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let store = Store::open(&dir, &Options::create(2))?;
//! store.put_batch(&IdBuf::new(["a", "b"]).batch()?, &[1.0, 0.0, 0.0, 1.0])?;
//! let hits = store.search(&[0.9, 0.1], 1, &SearchParams::default())?;
//! assert_eq!(hits.len(), 1);
//! store.close()?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```
//!
//! Layers, top to bottom (one folder each, docs/ARCHITECTURE.md):
//! - `store`: open and recovery, writes, reads, generations;
//! - `index`: the ANN index (IVF lists over the PQ codes, its coarse
//!   quantizer and calibration);
//! - `search`: flat distance kernels and the exact batch search;
//! - `quantization`: Product Quantization (k-means, codebooks, ADC scans, top-k);
//! - `ids`: the ID table (ID -> slot) and ID batches;
//! - `storage`: the file format, mapped files, file-system helpers,
//!   checksums and the I/O fault seam.
//!
//! `error.rs` and `options.rs` hold the public types every layer shares;
//! `parallel.rs` runs closures side by side for the store and storage layers.

#![warn(missing_docs)]

mod cpu;
mod error;
mod index;
mod ids;
mod options;
mod parallel;
#[doc(hidden)]
pub mod quantization;
mod search;
mod store;
#[doc(hidden)]
pub mod storage;

#[cfg(test)]
mod testutil;

pub use error::{Error, ErrorKind, Result};
/// The IVF coarse quantizer, for the benchmark programs (not API).
#[doc(hidden)]
pub use index::CoarseQuantizer;
pub use ids::batch::{IdBatch, IdBuf};
pub use options::{Metric, Options, PqSettings, MAX_DIM, MAX_ID_LEN};
pub use store::{
    Cursor, CursorPage, Filter, Hit, RangeResults, RecoveryReport, SearchMethod, SearchParams, SearchPlan, SearchResults, Stats, Store,
    MAX_CALIBRATION_QUERIES, MAX_THREADS,
};
pub use index::CalibrationPoint;
