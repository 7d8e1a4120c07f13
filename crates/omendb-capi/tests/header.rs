//! include/omendb.h is generated from src/ (the C ABI crate) by cbindgen and checked in.
//! This test fails when the checked-in copy is stale; run
//! `OMENDB_BLESS=1 cargo test --test header` to regenerate it.

use std::path::Path;

#[test]
fn header_is_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    // Only the C ABI's own files are parsed: nothing of the engine can leak into the C API.
    cbindgen::Builder::new()
        .with_src(root.join("src/types.rs"))
        .with_src(root.join("src/functions.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen failed")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    // The header sits at the repository root, where API.md and hosts expect it.
    let path = root.join("../../include/omendb.h");
    if std::env::var_os("OMENDB_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "include/omendb.h is stale: regenerate it with `OMENDB_BLESS=1 cargo test --test header`"
    );
}
