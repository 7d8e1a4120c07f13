//! Shared helpers for integration tests.
#![allow(dead_code)]

pub mod data;
pub mod workload;

use std::path::{Path, PathBuf};

use omendb::{IdBuf, Options, Store};

pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "omendb-it-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// Like `new`, on tmpfs (/dev/shm) when there is one: for tests that
    /// create and delete thousands of small stores (and never cut the real
    /// power), where a disk mounted with `discard` makes every unlink slow.
    pub fn scratch(name: &str) -> TempDir {
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            return TempDir::new(name);
        }
        let path = shm.join(format!(
            "omendb-it-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        match std::fs::create_dir_all(&path) {
            Ok(()) => TempDir(path),
            Err(_) => TempDir::new(name),
        }
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A not-yet-existing store directory inside this one.
    pub fn store(&self) -> PathBuf {
        self.0.join("store")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// splitmix64: small, seedable, good enough for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    pub fn vectors(&mut self, n: usize, dim: usize) -> Vec<f32> {
        (0..n * dim).map(|_| self.f32()).collect()
    }
}

/// `n` vectors of `dim` around `centres` fixed centres (spread 0.15): the
/// shape an IVF index is for.
pub fn clustered(rng: &mut Rng, n: usize, dim: usize, centres: usize) -> Vec<f32> {
    let points = Rng(7).vectors(centres, dim);
    let mut v = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = rng.below(centres as u64) as usize;
        v.extend(points[c * dim..(c + 1) * dim].iter().map(|&x| x + 0.15 * rng.f32()));
    }
    v
}

pub fn ids(range: std::ops::Range<usize>) -> IdBuf {
    IdBuf::new(range.map(|i| format!("id-{i}")))
}

pub fn put(store: &Store, ids: &IdBuf, vectors: &[f32]) {
    store.put_batch(&ids.batch().unwrap(), vectors).unwrap();
}

pub fn create(path: &Path, dim: u32) -> Store {
    Store::open(path, &Options::create(dim)).unwrap()
}

/// Copies the files of a store directory (flat) into a new directory.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Sum of the apparent sizes of the files in a directory.
pub fn dir_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}
