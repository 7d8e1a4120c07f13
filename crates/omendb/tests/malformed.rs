//! Malformed stores: random bit flips, truncations, zeroed pages, appended
//! garbage, deleted and swapped files, alone and combined, in every file of
//! stores of every kind (plain, PQ with codes and codebooks, DROP_RAW, and a
//! store left open with uncommitted tails). Opening, recovering (and
//! opening read-only) each damaged copy must give OMEN_ERR_CORRUPT /
//! VERSION / IO / NOT_FOUND, or a store holding exactly one of the two
//! checkpoints its superblock holds (the newest, or the previous one when
//! the newest slot is damaged: a torn slot looks the same), where every
//! read gives the exact vector or reports damage. Never a crash, a hang
//! (a watchdog aborts after 120 s without progress) or a wrong vector.
//!
//! OMENDB_MALFORMED_CASES sets the number of damaged stores per kind of store.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::workload::{self, key, snapshot, vector, Flavor, State};
use common::{copy_dir, Rng, TempDir};
use omendb::storage::faults::{self, Call, Hook, Op as IoOp};
use omendb::{ErrorKind, Options, Store};

const POOL: u64 = 150;

static PROGRESS: AtomicU64 = AtomicU64::new(0);

fn watchdog() {
    static START: std::sync::Once = std::sync::Once::new();
    START.call_once(|| {
        std::thread::spawn(|| {
            let mut last = u64::MAX;
            loop {
                std::thread::sleep(Duration::from_secs(120));
                let now = PROGRESS.load(Ordering::SeqCst);
                if now == last {
                    eprintln!("malformed: no progress for 120 s (a hang?)");
                    std::process::abort();
                }
                last = now;
            }
        });
    });
}

/// A store of `flavor` with two checkpoints of different content; returns
/// the content of each checkpoint.
fn build(path: &Path, flavor: Flavor, open_tail: bool) -> BTreeMap<u64, State> {
    let store = Store::open(path, &flavor.options()).unwrap();
    let mut version = 0;
    let mut put = |store: &Store, ids: std::ops::Range<u64>| {
        let ids: Vec<u64> = ids.collect();
        let mut values = Vec::new();
        for &id in &ids {
            version += 1;
            values.extend(vector(id, version));
        }
        store.put_batch(&workload::id_batch(&ids).batch().unwrap(), &values).unwrap();
    };
    put(&store, 0..120);
    store.delete_batch(&workload::id_batch(&[3, 4, 5, 70]).batch().unwrap()).unwrap();
    put(&store, 10..30); // upserts
    if flavor != Flavor::Plain {
        store.train_pq(&mut |_, _| {}).unwrap();
    }
    // Calibrations appended to the codebooks file: one committed by the
    // first checkpoint's state, one after it.
    let calibrate = |store: &Store, seed: u64| {
        if flavor == Flavor::Ivf {
            store.calibrate(&workload::calibration_queries(seed), &mut |_, _| {}).unwrap();
        }
    };
    calibrate(&store, 1);
    put(&store, 120..140);
    let mut states = BTreeMap::new();
    let seq = store.checkpoint().unwrap();
    states.insert(seq, snapshot(&store, POOL));
    put(&store, 130..150);
    store.delete_batch(&workload::id_batch(&[0, 1, 100]).batch().unwrap()).unwrap();
    calibrate(&store, 2);
    let seq = store.checkpoint().unwrap();
    states.insert(seq, snapshot(&store, POOL));
    if open_tail {
        // Uncommitted tails past every committed length, then a "crash".
        put(&store, 0..40);
        if flavor == Flavor::Ivf {
            // A calibration appended and synced, its superblock never
            // written: a tail on the codebooks file too.
            struct NoSuperblock;
            impl Hook for NoSuperblock {
                fn before(&mut self, call: &Call<'_>) -> std::io::Result<()> {
                    match call.op {
                        IoOp::Write if call.path.ends_with("superblock") => Err(std::io::Error::from_raw_os_error(libc::EIO)),
                        _ => Ok(()),
                    }
                }
                fn after(&mut self, _: &Call<'_>, _: bool) {}
            }
            faults::set_hook(Some(Box::new(NoSuperblock)));
            let failed = store.calibrate(&workload::calibration_queries(3), &mut |_, _| {});
            faults::set_hook(None);
            assert_eq!(failed.unwrap_err().kind(), ErrorKind::Io);
        }
        std::mem::forget(store);
    } else {
        store.close().unwrap();
    }
    states
}

fn files(path: &Path) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> =
        std::fs::read_dir(path).unwrap().map(|e| e.unwrap().path()).filter(|p| !p.ends_with("LOCK")).collect();
    f.sort();
    f
}


/// Applies one random damage to one file of the store in `dir`; describes it.
fn damage(dir: &Path, rng: &mut Rng) -> String {
    let all = files(dir);
    if all.is_empty() {
        return "nothing left".into();
    }
    let file = &all[rng.below(all.len() as u64) as usize];
    let name = file.file_name().unwrap().to_str().unwrap().to_string();
    let mut bytes = std::fs::read(file).unwrap();
    let len = bytes.len() as u64;
    let what = match rng.below(12) {
        0..=3 if len > 0 => {
            let flips = 1 + rng.below(8);
            // Half the flips land in the first page (headers, superblock fields).
            for _ in 0..flips {
                let at = if rng.below(2) == 0 { rng.below(len.min(4096 + 256)) } else { rng.below(len) };
                bytes[at as usize] ^= 1 << rng.below(8);
            }
            format!("{flips} bit flips")
        }
        4 | 5 => {
            let cut = rng.below(len + 1);
            bytes.truncate(cut as usize);
            format!("truncated to {cut}")
        }
        6 | 7 if len > 0 => {
            let page = rng.below(len.div_ceil(4096)) as usize * 4096;
            let end = (page + 4096).min(bytes.len());
            bytes[page..end].fill(0);
            format!("zeroed page at {page}")
        }
        8 | 9 => {
            let n = 1 + rng.below(9000) as usize;
            let fill = rng.below(3);
            bytes.extend((0..n).map(|_| match fill {
                0 => 0,
                1 => 0xFF,
                _ => rng.below(256) as u8,
            }));
            format!("{n} bytes of garbage appended")
        }
        10 => {
            std::fs::remove_file(file).unwrap();
            return format!("{name} deleted");
        }
        _ => {
            let other = &all[rng.below(all.len() as u64) as usize];
            bytes = std::fs::read(other).unwrap();
            format!("replaced by a copy of {}", other.file_name().unwrap().to_str().unwrap())
        }
    };
    std::fs::write(file, &bytes).unwrap();
    format!("{name}: {what}")
}

fn acceptable(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::Corrupt | ErrorKind::Version | ErrorKind::Io | ErrorKind::NotFound)
}

/// Opens a damaged store (mode 0 open, 1 recover, 2 read-only) and reads
/// everything; returns whether it opened.
fn check(dir: &Path, states: &BTreeMap<u64, State>, mode: u64) -> Result<bool, String> {
    let opened = match mode {
        0 => Store::open(dir, &Options::default()),
        1 => Store::recover(dir, &Options::default()).map(|(s, _)| s),
        _ => Store::open(dir, &Options { read_only: true, ..Options::default() }),
    };
    let store = match opened {
        Ok(s) => s,
        Err(e) if acceptable(e.kind()) => return Ok(false),
        Err(e) => return Err(format!("open gave {e}")),
    };
    let seq = store.checkpoint_seq();
    let want = states.get(&seq).ok_or_else(|| format!("opened checkpoint {seq}, which the store never had"))?;
    let stats = store.stats().map_err(|e| format!("stats: {e}"))?;
    if stats.live_vectors != want.len() as u64 {
        return Err(format!("{} live vectors at checkpoint {seq}, expected {}", stats.live_vectors, want.len()));
    }
    for id in 0..POOL {
        match (store.get(key(id).as_bytes()), want.get(&id)) {
            (Ok(got), Some(v)) if got.iter().map(|x| x.to_bits()).eq(v.iter().map(|x| x.to_bits())) => {}
            (Ok(got), _) => return Err(format!("{}: wrong vector {got:?} (expected {:?})", key(id), want.get(&id))),
            (Err(e), None) if e.kind() == ErrorKind::NotFound => {}
            (Err(e), Some(_)) if e.kind() == ErrorKind::Corrupt && mode != 1 => {}
            (Err(e), _) => return Err(format!("{}: {e}", key(id))),
        }
    }
    let query = want.values().next().cloned().unwrap_or_else(|| vector(0, 0));
    for params in [omendb::SearchParams::default(), omendb::SearchParams { exact: true, ..Default::default() }] {
        match store.search(&query, 5, &params) {
            Ok(hits) => {
                for hit in hits {
                    let id = store.key_id(hit.key).map_err(|e| format!("key_id of a hit: {e}"))?;
                    if !want.keys().any(|&i| key(i).as_bytes() == id) {
                        return Err(format!("search returned {}, which is not live", String::from_utf8_lossy(&id)));
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::Corrupt || e.kind() == ErrorKind::InvalidArgument => {}
            Err(e) => return Err(format!("search: {e}")),
        }
    }
    store.close().map_err(|e| format!("close: {e}"))?;
    Ok(true)
}

fn run(flavor: Flavor, open_tail: bool, seed: u64) {
    watchdog();
    let cases: u64 = std::env::var("OMENDB_MALFORMED_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let tmp = TempDir::scratch(&format!("malformed-{flavor:?}"));
    let pristine = tmp.path().join("pristine");
    let states = build(&pristine, flavor, open_tail);
    // The pristine copy itself opens to its newest checkpoint.
    let check_copy = tmp.path().join("copy");
    copy_dir(&pristine, &check_copy);
    assert_eq!(check(&check_copy, &states, 2), Ok(true));
    // With its index (an uncommitted calibration ignored) and, on an IVF
    // store that keeps its raw vectors, the calibration last committed.
    let store = Store::open(&check_copy, &Options::default()).unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(stats.index_damage, None, "{:?}", store.index_damage());
    assert_eq!(stats.calibration_queries, if flavor == Flavor::Ivf { 4 } else { 0 });
    store.close().unwrap();
    let mut rng = Rng(seed);
    let (mut opened, mut refused) = (0, 0);
    let mut names: BTreeMap<String, u64> = BTreeMap::new();
    for case in 0..cases {
        let dir = tmp.path().join(format!("case-{case}"));
        copy_dir(&pristine, &dir);
        let n = if rng.below(4) == 0 { 2 + rng.below(2) } else { 1 };
        let what: Vec<String> = (0..n).map(|_| damage(&dir, &mut rng)).collect();
        for w in &what {
            *names.entry(w.split(':').next().unwrap().split(' ').next().unwrap().to_string()).or_default() += 1;
        }
        match check(&dir, &states, case % 3) {
            Ok(true) => opened += 1,
            Ok(false) => refused += 1,
            Err(e) => panic!("{flavor:?} case {case} ({}): {e}\nkept in {}", what.join("; "), dir.display()),
        }
        PROGRESS.fetch_add(1, Ordering::SeqCst);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!(
        "malformed {flavor:?}{}: {cases} damaged stores, {opened} opened with exact data, {refused} refused; damage per file {names:?}",
        if open_tail { " (with uncommitted tails)" } else { "" }
    );
}

#[test]
fn malformed_plain_store() {
    run(Flavor::Plain, false, 1);
}

#[test]
fn malformed_store_with_tails() {
    run(Flavor::Plain, true, 2);
}

#[test]
fn malformed_pq_store() {
    run(Flavor::Pq, false, 3);
}

#[test]
fn malformed_drop_raw_store() {
    run(Flavor::DropRaw, false, 4);
}

#[test]
fn malformed_pq_store_with_tails() {
    run(Flavor::PqAuto, true, 5);
}

#[test]
fn malformed_ivf_store() {
    run(Flavor::Ivf, false, 6);
}

#[test]
fn malformed_ivf_store_with_tails() {
    run(Flavor::Ivf, true, 8);
}

#[test]
fn malformed_ivf_drop_raw_store() {
    run(Flavor::IvfDropRaw, false, 7);
}
