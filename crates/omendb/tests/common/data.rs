//! The real data sets in `shared/data` beside the repository (see its
//! README). When they are absent, loaders panic under CI (the environment
//! variable CI is set: CI clones the repository with shared/ beside it, so a
//! missing file there is a broken setup, not a reason to pass), and elsewhere
//! return None after printing why, so the test skips loudly.

use std::path::PathBuf;

/// `shared/data`; `OMENDB_TEST_DATA` overrides it (e.g. from a git worktree).
pub fn data_dir() -> Option<PathBuf> {
    let p = match std::env::var_os("OMENDB_TEST_DATA") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")),
    };
    if p.is_dir() {
        Some(p)
    } else {
        absent(format_args!("data directory {} is absent (CI clones shared/ beside the repo)", p.display()))
    }
}

/// True when the environment variable CI is set to anything but "", "0" or "false".
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// Missing data: a failure under CI, a loud skip (None) elsewhere.
fn absent<T>(why: std::fmt::Arguments) -> Option<T> {
    if in_ci() {
        panic!("test data missing under CI: {why}; set OMENDB_TEST_DATA or put shared/data beside the repository");
    }
    println!("SKIPPED: {why} (set CI=true to make this a failure)");
    None
}

/// TEXMEX `.fvecs` / `.ivecs`: per record an i32 dim, then dim 4-byte values.
fn read_vecs(path: &PathBuf) -> Option<(usize, Vec<[u8; 4]>)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return absent(format_args!("cannot read {}: {e}", path.display())),
    };
    let dim = i32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let rec = 4 * (dim + 1);
    assert_eq!(bytes.len() % rec, 0, "{}: not a whole number of records", path.display());
    let mut out = Vec::with_capacity(bytes.len() / rec * dim);
    for r in bytes.chunks_exact(rec) {
        assert_eq!(i32::from_le_bytes(r[..4].try_into().unwrap()) as usize, dim);
        out.extend(r[4..].chunks_exact(4).map(|b| <[u8; 4]>::try_from(b).unwrap()));
    }
    Some((dim, out))
}

pub struct Dataset {
    pub dim: usize,
    pub base: Vec<f32>,
    pub queries: Vec<f32>,
    /// Ground truth: `gt_k` base rows per query, nearest first.
    pub gt: Vec<usize>,
    pub gt_k: usize,
}

impl Dataset {
    pub fn load(dir: &str, name: &str, gt_file: &str) -> Option<Dataset> {
        let root = data_dir()?.join(dir);
        let (dim, base) = read_vecs(&root.join(format!("{name}_base.fvecs")))?;
        let (qdim, queries) = read_vecs(&root.join(format!("{name}_query.fvecs")))?;
        let (gt_k, gt) = read_vecs(&root.join(gt_file))?;
        assert_eq!(dim, qdim);
        Some(Dataset {
            dim,
            base: base.into_iter().map(f32::from_le_bytes).collect(),
            queries: queries.into_iter().map(f32::from_le_bytes).collect(),
            gt: gt.into_iter().map(|b| i32::from_le_bytes(b) as usize).collect(),
            gt_k,
        })
    }

    pub fn n(&self) -> usize {
        self.base.len() / self.dim
    }

    pub fn nq(&self) -> usize {
        self.queries.len() / self.dim
    }

    pub fn query(&self, q: usize) -> &[f32] {
        &self.queries[q * self.dim..(q + 1) * self.dim]
    }

    /// |found ∩ true top-k| / k, averaged over queries; `found[q]` holds base rows.
    pub fn recall(&self, found: &[Vec<usize>], k: usize) -> f64 {
        let mut hits = 0;
        for (q, rows) in found.iter().enumerate() {
            let truth = &self.gt[q * self.gt_k..q * self.gt_k + k];
            hits += rows.iter().take(k).filter(|r| truth.contains(r)).count();
        }
        hits as f64 / (found.len() * k) as f64
    }
}
