//! The C ABI: the only `extern "C"` code in the crate. Each exported
//! function checks its arguments, turns C views into Rust slices without
//! copying, calls the safe core (`crate::store`) and maps the result to an
//! `omen_status`, all inside one panic boundary (`boundary::guard`).
//! The header include/omendb.h is generated from these files by cbindgen.

mod boundary;
mod functions;
mod types;

pub use functions::*;
pub use types::*;
