//! A real file size limit: RLIMIT_FSIZE in a child process (SIGXFSZ
//! ignored) makes `fallocate` fail with EFBIG. The failing put returns
//! OMEN_ERR_IO "File too large"; the store keeps working once the limit is
//! lifted, and everything reopens exactly.

mod common;

use common::TempDir;
use omendb::{ErrorKind, Options, Store};

const CHILD_ENV: &str = "OMENDB_FSIZE_CHILD";

/// The child: a soft RLIMIT_FSIZE of 256 KiB (SIGXFSZ ignored, so the
/// kernel returns EFBIG), puts until a call fails, then raises the limit
/// and goes on.
#[test]
fn fsize_child_entry() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let limit = libc::rlimit { rlim_cur: 256 << 10, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain libc calls on this (single-purpose child) process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let store = Store::open(&path, &Options::create(64)).unwrap();
    let mut n = 0u64;
    let err = loop {
        let ids = common::ids(n as usize..n as usize + 100);
        match store.put_batch(&ids.batch().unwrap(), &vec![n as f32; 100 * 64]) {
            Ok(()) => n += 100,
            Err(e) => break e,
        }
        if n.is_multiple_of(500) {
            store.checkpoint().unwrap();
        }
        assert!(n < 100_000, "the file size limit never hit");
    };
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.message().contains("File too large"), "{err}");
    println!("LIMIT-HIT {n} {err}");
    let committed = store.checkpoint().unwrap();
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: as above.
    unsafe { assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &unlimited), 0) };
    let ids = common::ids(n as usize..n as usize + 100);
    store.put_batch(&ids.batch().unwrap(), &vec![n as f32; 100 * 64]).unwrap();
    store.close().unwrap();
    println!("DONE {} {committed}", n + 100);
}

#[test]
fn file_size_limit_gives_efbig_and_the_store_keeps_working() {
    let tmp = TempDir::scratch("fsize");
    let path = tmp.store();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "fsize_child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let done = stdout.split("DONE ").nth(1).expect("child finished").lines().next().unwrap();
    let total: usize = done.split(' ').next().unwrap().parse().unwrap();
    let store = Store::open(&path, &Options::default()).unwrap();
    assert_eq!(store.stats().unwrap().live_vectors, total as u64);
    for n in (0..total).step_by(100) {
        assert_eq!(store.get(format!("id-{n}").as_bytes()).unwrap(), vec![(n / 100 * 100) as f32; 64]);
    }
    eprintln!("RLIMIT_FSIZE: {}", stdout.split("LIMIT-HIT").nth(1).and_then(|s| s.lines().next()).unwrap_or(""));
}
