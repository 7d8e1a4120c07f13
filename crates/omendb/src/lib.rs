//! OmenDB storage engine: an embedded, durable vector store on memory-mapped
//! files, with Product Quantization, behind a C ABI.
//!
//! Layers, top to bottom:
//! - `ffi`: the C ABI (the only `extern "C"` code), a thin shell over
//! - `store`: the safe Rust core (`Store`, `Options`, `Error`), built on
//! - `index` (ID -> slot), `distance`/`topk` (search), and
//! - `format` (on-disk layouts), `mmap` (mapped files), `fsutil` (locks, syncs).

pub mod batch;
pub mod checksum;
pub mod distance;
pub mod error;
#[doc(hidden)]
pub mod faults;
pub mod ffi;

pub mod format;
mod fsutil;
pub mod index;
mod mmap;
mod prefetch;
pub mod options;
mod parallel;
pub mod pq;
pub mod store;

#[cfg(test)]
mod testutil;

pub use batch::{IdBatch, IdBuf};
pub use error::{Error, ErrorKind, Result};
pub use options::{Metric, Options, PqSettings};
pub use store::{Hit, RecoveryReport, SearchParams, Stats, Store};
