//! The real data sets in `shared/data` beside the repository (see its
//! README). Loaders return None, after printing why, when they are absent:
//! CI clones the repository with shared/ beside it.

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
        println!("SKIPPED: data directory {} is absent (CI clones shared/ beside the repo)", p.display());
        None
    }
}

/// TEXMEX `.fvecs` / `.ivecs`: per record an i32 dim, then dim 4-byte values.
fn read_vecs(path: &PathBuf) -> Option<(usize, Vec<[u8; 4]>)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            println!("SKIPPED: cannot read {}: {e}", path.display());
            return None;
        }
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
