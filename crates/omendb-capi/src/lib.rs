//! The C ABI of OmenDB: the only `extern "C"` code in the workspace. Each
//! exported function checks its arguments, turns C views into Rust slices
//! without copying, calls the safe engine (the `omendb` crate) and maps the
//! result to an `omen_status`, all inside one panic boundary
//! (`boundary::guard`). The header include/omendb.h is generated from these
//! files by cbindgen (tests/header.rs).
//!
//! The modules refer to each other with `super::` and to the engine as
//! `omendb::`, never `crate::`: crates/omendb-bench compiles this file as a
//! module of its programs, which call the C functions directly.

mod boundary;
mod functions;
mod types;

pub use functions::*;
pub use types::*;
