//! Storage, the bottom layer: the on-disk format (`format`), memory-mapped
//! data files (`mmap`), file-system helpers (`fsutil`), checksums
//! (`checksum`), the cache-line prefetch hint (`prefetch`) and the I/O fault
//! seam every file-changing call goes through (`faults`).
//!
//! `format`, `faults` and `checksum` are public but hidden from the docs:
//! the crate's tests and fuzz/ reach into them (the fuzzer re-seals the
//! checksums of files it damages); they are not a stable API.

#[doc(hidden)]
pub mod checksum;
// Hidden: its docs are for engine developers and link its private items.
#[doc(hidden)]
#[allow(rustdoc::private_intra_doc_links)]
pub mod faults;
#[doc(hidden)]
pub mod format;
pub(crate) mod fsutil;
pub(crate) mod mmap;
pub(crate) mod prefetch;
