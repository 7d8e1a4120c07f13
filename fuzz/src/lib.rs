//! The fuzz targets' logic lives in `targets.rs`, which the main crate's
//! tests also include (tests/fuzz_corpus.rs) to replay the committed corpus
//! and run a bounded stable-toolchain fuzzer in CI.
#[path = "targets.rs"]
mod targets;
pub use targets::*;

/// Installs the sync-skipping hook on this thread (idempotent).
pub fn init() {
    thread_local!(static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    if !DONE.with(|d| d.replace(true)) {
        omendb::storage::faults::set_hook(Some(Box::new(SkipSyncs)));
    }
}
