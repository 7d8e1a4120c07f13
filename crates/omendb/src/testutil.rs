//! Helpers for unit tests.

use std::path::{Path, PathBuf};

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "omendb-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `VmFlags` of each of this process's mappings of `path`
/// (`/proc/self/smaps`), one line a mapping.
pub fn vm_flags_of(path: &Path) -> Vec<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut flags = Vec::new();
    let mut ours = false;
    for line in smaps.lines() {
        if let Some(rest) = line.strip_prefix("VmFlags:") {
            if ours {
                flags.push(rest.trim().to_string());
            }
        } else if line.split_whitespace().next().is_some_and(|f| f.contains('-') && f.chars().all(|c| c.is_ascii_hexdigit() || c == '-')) {
            // A mapping's first line: its address range first, its path last.
            ours = line.ends_with(&*path.to_string_lossy());
        }
    }
    flags
}

/// Whether a mapping's `VmFlags` hold `hg` (advised `MADV_HUGEPAGE`).
pub fn advised_huge(flags: &str) -> bool {
    flags.split_whitespace().any(|f| f == "hg")
}

/// Whether this kernel has transparent huge pages (else it refuses the advice).
pub fn thp_available() -> bool {
    Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists()
}
