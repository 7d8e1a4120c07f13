//! Full disks on real filesystems, mounted for the test when the process
//! may mount them (root with CAP_SYS_ADMIN, as in a privileged container);
//! where it may not, the test says so on stderr and checks nothing here,
//! except under CI (CI set), where that is a failure.
//! tests/full_disk.rs covers the same ground everywhere, through the I/O
//! seam.
//!
//! - ext2 on a loop device has no `fallocate` (EOPNOTSUPP), so the store's
//!   files grow sparsely. With the disk filled up under them, a put whose
//!   slot records find no space (dimension 1: a record is 8 times its
//!   vector) and a delete whose tombstones find none return OMEN_ERR_IO
//!   "No space left on device", change nothing, and succeed once there is
//!   space. They run in a child process: data stored through a mapping
//!   into a sparse file on a full disk raises SIGBUS, which would kill the
//!   test binary.
//! - tmpfs of 8 MiB holding 4.7 MB of store: a put that needs 0.3 MB more
//!   succeeds with 3.6 MB free, although the file's growth step is 4 MB.
//!
//! Its own test binary: a child process inherits the writer-lock
//! descriptors of stores that other tests in the binary reopen (see
//! tests/file_size_limit.rs).

mod common;

use std::fs::File;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use omendb::{ErrorKind, IdBuf, Options, Store};

const CHILD_ENV: &str = "OMENDB_EXT2_CHILD";
const NO_SPACE: &str = "No space left on device (os error 28)";

/// A filesystem mounted for a test, unmounted (and its image removed) on drop.
struct Mount {
    base: PathBuf,
    dir: PathBuf,
}

fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Mount {
    /// Mounts a `size_mib` MiB filesystem of type `fstype` ("ext2", on a
    /// loop device, or "tmpfs"), or says why not.
    fn new(fstype: &str, size_mib: u64) -> Option<Mount> {
        let base = std::env::temp_dir().join(format!("omendb-mnt-{fstype}-{}", std::process::id()));
        let dir = base.join("mnt");
        std::fs::create_dir_all(&dir).unwrap();
        let size = format!("size={size_mib}m");
        let dir_arg = dir.to_str().unwrap();
        let mounted = if fstype == "ext2" {
            let image = base.join("fs.img");
            File::create(&image).unwrap().set_len(size_mib << 20).unwrap();
            let image = image.to_str().unwrap();
            run("mkfs.ext2", &["-q", "-F", "-m", "0", image]) && run("mount", &["-t", "ext2", "-o", "loop", image, dir_arg])
        } else {
            run("mount", &["-t", fstype, "-o", &size, fstype, dir_arg])
        };
        if !mounted {
            let _ = std::fs::remove_dir_all(&base);
            // CI runs as root on a machine that mounts them: there a failed
            // mount is a failure, not a reason to check nothing.
            assert!(std::env::var_os("CI").is_none(), "cannot mount {fstype} in CI (CI is set)");
            eprintln!("cannot mount {fstype} here: its full-disk checks are skipped (tests/full_disk.rs covers them through the seam)");
            return None;
        }
        Some(Mount { base, dir })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let dir = self.dir.to_str().unwrap();
        if !run("umount", &[dir]) {
            run("umount", &["-l", dir]);
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// Bytes free for this process on the filesystem of `dir`.
fn free_bytes(dir: &Path) -> u64 {
    let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: statvfs writes into the struct we pass; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0);
    st.f_bavail * st.f_frsize
}

/// Appends to `path` until the disk is full, then gives back `leave` bytes.
fn fill(path: &Path, leave: u64) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    let block = vec![0xA5u8; 64 << 10];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("fill {}: {e}", path.display()),
        }
    }
    let len = file.metadata().unwrap().len();
    file.set_len(len.saturating_sub(leave)).unwrap();
    file.sync_all().unwrap();
}

fn ids(r: std::ops::Range<usize>) -> IdBuf {
    common::ids(r)
}

/// The child: fills the ext2 disk under the store's sparse files, then puts
/// and deletes.
#[test]
fn ext2_child_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let dir = PathBuf::from(dir);
    let path = dir.join("store");
    let filler = dir.join("filler");
    let store = Store::open(&path, &Options { threads: 1, ..Options::create(1) }).unwrap();
    let put = |r: std::ops::Range<usize>| {
        let values: Vec<f32> = r.clone().map(|i| i as f32).collect();
        store.put_batch(&ids(r).batch().unwrap(), &values)
    };
    put(0..1000).unwrap();
    store.checkpoint().unwrap();

    // Room for 64 KiB of vectors, not for their 512 KiB of slot records.
    fill(&filler, 256 << 10);
    let err = put(1000..17_384).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.message().contains(NO_SPACE), "{err}");
    assert_eq!(store.stats().unwrap().live_vectors, 1000);
    assert!(store.get(b"id-1000").is_err());
    println!("\nPUT {err}");

    // Not a block left: the tombstones find no space.
    fill(&filler, 0);
    let err = store.delete_batch(&ids(0..1000).batch().unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.message().contains(NO_SPACE), "{err}");
    assert_eq!(store.stats().unwrap().live_vectors, 1000);
    assert_eq!(store.get(b"id-7").unwrap(), vec![7.0]);
    println!("DELETE {err}");

    // Space again: the same calls succeed.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(store.delete_batch(&ids(0..500).batch().unwrap()).unwrap(), 500);
    put(1000..17_384).unwrap();
    store.close().unwrap();
    println!("DONE");
}

/// Puts and deletes on a full ext2 disk (no fallocate: sparse files).
fn ext2_full_disk() {
    let Some(mount) = Mount::new("ext2", 16) else { return };
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "ext2_child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &mount.dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(signal) = out.status.signal() {
        panic!("the child died of signal {signal} (SIGBUS is {}): {stdout}\n{stderr}", libc::SIGBUS);
    }
    assert!(out.status.success() && stdout.contains("DONE"), "child failed: {stdout}\n{stderr}");
    for line in stdout.lines().filter(|l| l.starts_with("PUT") || l.starts_with("DELETE")) {
        eprintln!("ext2, disk full: {line}");
    }
    let store = Store::open(mount.dir.join("store"), &Options::default()).unwrap();
    assert_eq!(store.stats().unwrap().live_vectors, 16_884);
    assert!(store.get(b"id-499").is_err());
    assert_eq!(store.get(b"id-500").unwrap(), vec![500.0]);
    assert_eq!(store.get(b"id-17383").unwrap(), vec![17_383.0]);
}

/// A put that needs less than the free space but less than the growth
/// step too, on tmpfs (which has fallocate).
fn tmpfs_growth_falls_back() {
    let Some(mount) = Mount::new("tmpfs", 8) else { return };
    let path = mount.dir.join("store");
    const DIM: usize = 64;
    let store = Store::open(&path, &Options { threads: 1, ..Options::create(DIM as u32) }).unwrap();
    let put = |r: std::ops::Range<usize>| {
        let values: Vec<f32> = r.clone().flat_map(|i| [i as f32; DIM]).collect();
        store.put_batch(&ids(r).batch().unwrap(), &values)
    };
    for b in 0..16 {
        put(b * 1000..(b + 1) * 1000).unwrap();
    }
    let vectors = std::fs::metadata(path.join("vectors.0000000000000001")).unwrap().len();
    let free = free_bytes(&mount.dir);
    let needed = 1200 * DIM as u64 * 4;
    assert!(needed < free && free < vectors, "{needed} B needed, {free} B free, growth step {vectors} B");
    put(16_000..17_200).unwrap_or_else(|e| panic!("a put of {needed} B with {free} B free failed: {e}"));
    eprintln!("tmpfs: a put of {needed} B with {free} B free (growth step {vectors} B) succeeded");
    store.close().unwrap();
    let store = Store::open(&path, &Options::default()).unwrap();
    assert_eq!(store.stats().unwrap().live_vectors, 17_200);
    assert_eq!(store.get(b"id-17199").unwrap(), vec![17_199.0; DIM]);
}

#[test]
fn full_disks_on_mounted_filesystems() {
    ext2_full_disk();
    tmpfs_growth_falls_back();
}
