//! Command-line flags and raw vector files of the benchmark programs
//! driven by scripts (`exact_batch`, `ivf_build`) and `ivf_lists`.
#![allow(dead_code)] // each benchmark uses part of it

/// `--name VALUE` flags, as given.
pub struct Flags(Vec<String>);

impl Flags {
    pub fn from_env() -> Flags {
        Flags(std::env::args().skip(1).collect())
    }

    /// The value after `name`, if the flag is given.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0.iter().position(|a| a == name).map(|at| self.0.get(at + 1).unwrap_or_else(|| panic!("{name} needs a value")).clone())
    }

    /// The value after `name`; panics when the flag is missing.
    pub fn need(&self, name: &str) -> String {
        self.get(name).unwrap_or_else(|| panic!("missing {name}"))
    }

    /// The value after `name` parsed, or `default` when the flag is missing.
    pub fn parse_or<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        self.get(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}: bad value {v:?}")))
    }
}

/// A file of raw little-endian f32 values.
pub fn read_f32(path: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}
