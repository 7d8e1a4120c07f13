//! The real data sets of `shared/data` (see its README): TEXMEX `.fvecs`
//! / `.ivecs` files (each record an i32 dimension, then that many values).
#![allow(dead_code)] // each benchmark uses part of it

use std::path::{Path, PathBuf};

/// Records of `path` as (dimension, values), each value converted from
/// its 4 little-endian bytes.
pub fn read_vecs<T>(path: &Path, convert: fn([u8; 4]) -> T) -> (usize, Vec<T>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dim = i32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let rec = 4 * (dim + 1);
    assert_eq!(bytes.len() % rec, 0, "{}: not whole records", path.display());
    let out = bytes.chunks_exact(rec).flat_map(|r| r[4..].chunks_exact(4).map(|b| convert(b.try_into().unwrap()))).collect();
    (dim, out)
}

/// One set: base vectors, queries and ground truth (`gt_k` rows a query,
/// nearest first).
pub struct RealSet {
    pub dim: usize,
    pub base: Vec<f32>,
    pub queries: Vec<f32>,
    pub gt: Vec<usize>,
    pub gt_k: usize,
}

/// `root/dir/{dir}_base.fvecs`, `{dir}_query.fvecs` and `gt_file`.
pub fn load(root: &Path, dir: &str, gt_file: &str) -> RealSet {
    let d = root.join(dir);
    let (dim, base) = read_vecs(&d.join(format!("{dir}_base.fvecs")), f32::from_le_bytes);
    let (_, queries) = read_vecs(&d.join(format!("{dir}_query.fvecs")), f32::from_le_bytes);
    let (gt_k, gt) = read_vecs(&d.join(gt_file), |b| i32::from_le_bytes(b) as usize);
    RealSet { dim, base, queries, gt, gt_k }
}

/// The data directory: `given` (`--data`), else $OMENDB_TEST_DATA, else
/// `shared/data` beside the repository; the program exits (2) when it is absent.
pub fn data_root(given: Option<PathBuf>) -> PathBuf {
    let root = given
        .or_else(|| std::env::var_os("OMENDB_TEST_DATA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")));
    if !root.is_dir() {
        eprintln!("data directory {} is absent: pass --data or set OMENDB_TEST_DATA", root.display());
        std::process::exit(2);
    }
    root
}
