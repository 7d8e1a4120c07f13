//! I/O errors: ENOSPC, EIO and EFBIG injected at every create, write,
//! sync, grow, truncate, rename, remove and mkdir call of a workload
//! (creation, puts, upserts, deletes, checkpoints, compaction, PQ training,
//! SYNC_WRITES, reopening, close), one run per call and error. The fault
//! stays until the failing operation returns. Each run checks that:
//!
//! - the failing call returns `ErrorKind::Io` (OMEN_ERR_IO) with the OS
//!   reason in its message;
//! - the handle shows the state before or after the operation, nothing else;
//! - once the fault clears, the handle either keeps working (a checkpoint
//!   succeeds), or, after a failed sync, refuses every change with a clear
//!   message, and reopening gives the last checkpoint (or the one in
//!   flight), so nothing checkpointed is lost;
//! - the workload then runs to the end and the store reopens to the model.
//!
//! tests/file_size_limit.rs does the same with the kernel itself
//! (RLIMIT_FSIZE). It lives in its own test binary: the child process it
//! spawns would inherit, between fork and exec, the writer-lock descriptors
//! of the stores these tests reopen in parallel threads, and a reopen in
//! that window gets OMEN_ERR_LOCKED (flock locks belong to the open file
//! description, which the child shares until its exec).

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::workload::{self, check_state, Flavor, Model, Op, State};
use common::TempDir;
use omendb::storage::faults::{self, Call, Hook, Op as IoOp};
use omendb::{ErrorKind, Options, Store};

const POOL: u64 = 60;

#[derive(Default)]
struct Fault {
    calls: usize,
    /// Fail call number `target` (counting from 0) and every call after it while `armed`.
    target: Option<usize>,
    errno: i32,
    armed: bool,
    /// The failing operation returned: the fault is gone.
    cleared: bool,
    fired: Option<(IoOp, String)>,
    /// The thread running the workload; calls from any other are counted.
    driver: Option<std::thread::ThreadId>,
    helper_calls: usize,
    /// The fault first fired on a thread other than the workload's.
    fired_on_helper: bool,
}

struct FaultHook(Arc<Mutex<Fault>>);

impl Hook for FaultHook {
    fn before(&mut self, call: &Call<'_>) -> std::io::Result<()> {
        let mut f = self.0.lock().unwrap();
        let n = f.calls;
        f.calls += 1;
        if f.driver.is_some_and(|d| d != std::thread::current().id()) {
            f.helper_calls += 1;
        }
        let hit = f.target.is_some_and(|t| n == t || (n > t && f.fired.is_some() && !f.cleared));
        if hit && f.armed {
            if f.fired.is_none() {
                f.fired = Some((call.op, call.path.display().to_string()));
                f.fired_on_helper = f.driver.is_some_and(|d| d != std::thread::current().id());
            }
            return Err(std::io::Error::from_raw_os_error(f.errno));
        }
        Ok(())
    }

    fn after(&mut self, _: &Call<'_>, _: bool) {}

    fn skip_syncs(&self) -> bool {
        true
    }
}

fn reason(errno: i32) -> &'static str {
    match errno {
        libc::ENOSPC => "No space left on device (os error 28)",
        libc::EIO => "Input/output error (os error 5)",
        libc::EFBIG => "File too large (os error 27)",
        _ => unreachable!(),
    }
}

/// The workload: every kind of operation, each touching the disk.
fn workload(flavor: Flavor) -> Vec<Op> {
    let ids = |r: std::ops::Range<u64>| r.collect::<Vec<_>>();
    let mut ops = vec![
        Op::Put(ids(0..30)),
        Op::Put([ids(10..20), ids(30..40)].concat()), // upserts
        Op::Delete(ids(5..8)),
        Op::Checkpoint,
        Op::Put(ids(40..45)),
        Op::Compact,
    ];
    if flavor != Flavor::Plain {
        ops.extend([Op::Train, Op::Put(ids(45..50)), Op::Delete(ids(0..2))]);
    }
    if flavor == Flavor::Ivf {
        // Appends to the codebooks file and commits; twice, so that the
        // second appends past a committed calibration.
        ops.extend([Op::Calibrate(1), Op::Put(ids(60..62)), Op::Calibrate(2)]);
    }
    ops.extend([
        Op::Checkpoint,
        Op::Reopen { sync_writes: true },
        Op::Put(ids(50..55)),
        Op::Delete(ids(20..22)),
        Op::Reopen { sync_writes: false },
        Op::Put(ids(55..60)),
        Op::Compact,
        Op::Put(ids(12..14)),
    ]);
    ops
}

/// The threaded workload: puts of `workload::BULK` IDs past the pool, which
/// put_batch splits across threads (and, after PQ training, PQ encodes on
/// several), among a few other operations. Shorter than `workload`: each
/// check reads every bulk ID back.
fn bulk_workload(flavor: Flavor) -> Vec<Op> {
    let big = || Op::PutRange(POOL..POOL + workload::BULK);
    let mut ops = vec![big(), Op::Put((0..30).collect()), Op::Checkpoint];
    if flavor != Flavor::Plain {
        ops.push(Op::Train);
    }
    ops.extend([big(), Op::Delete(vec![3, POOL + 5]), Op::Compact, Op::Checkpoint]);
    ops
}

/// Whether the store holds the model's state for IDs below `pool` (IDs
/// only once a DROP_RAW store has dropped its raw vectors: it gives PQ
/// reconstructions).
fn holds(store: &Store, live: &State, pool: u64) -> bool {
    if store.stats().map(|s| s.raw_kept).unwrap_or(true) {
        check_state(store, live, pool).is_ok()
    } else {
        let snap = workload::snapshot(store, pool);
        snap.keys().eq(live.keys()) && store.stats().unwrap().live_vectors == live.len() as u64
    }
}

struct Run {
    /// Hooked calls in all.
    calls: usize,
    /// The calls (numbered from 0) made during the bulk puts.
    bulk_calls: Vec<usize>,
    /// Calls made on threads other than the workload's.
    helper_calls: usize,
    /// The injected fault hit a call of a worker thread.
    fired_on_helper: bool,
    failures: usize,
    kept_working: usize,
    reopened: usize,
}

/// Runs the workload with `threads` worker threads (the bulk puts with
/// more than one); with `fault`, call `target` fails with `errno`.
fn run(flavor: Flavor, threads: u32, dir: &Path, fault: Option<(usize, i32)>) -> Run {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("store");
    let bulk = if threads > 1 { workload::BULK } else { 0 };
    let pool = POOL + bulk;
    let holds = |store: &Store, live: &State| holds(store, live, pool);
    let state = Arc::new(Mutex::new(Fault {
        target: fault.map(|f| f.0),
        errno: fault.map_or(0, |f| f.1),
        driver: Some(std::thread::current().id()),
        ..Default::default()
    }));
    faults::set_hook(Some(Box::new(FaultHook(state.clone()))));
    let case = format!("{flavor:?} fault {fault:?}");
    let mut run = Run { calls: 0, bulk_calls: Vec::new(), helper_calls: 0, fired_on_helper: false, failures: 0, kept_working: 0, reopened: 0 };
    let arm = |on: bool| {
        let mut f = state.lock().unwrap();
        f.armed = on;
        f.cleared |= !on && f.fired.is_some();
    };
    // After a failed call: the fault must be the one injected and the message must name it.
    let check_error = |e: &omendb::Error, what: &str| {
        let fired = state.lock().unwrap().fired.clone();
        let (op, file) = fired.unwrap_or_else(|| panic!("{case}: {what} failed with no fault injected: {e}"));
        assert_eq!(e.kind(), ErrorKind::Io, "{case}: {what}: {op:?} {file}: {e}");
        let errno = fault.unwrap().1;
        assert!(e.message().contains(reason(errno)), "{case}: {what}: {op:?} {file}: no OS reason in {e}");
    };

    // Creation.
    arm(true);
    let created = Store::open(&path, &flavor.options_threads(threads));
    arm(false);
    let mut store = Some(match created {
        Ok(s) => s,
        Err(e) => {
            check_error(&e, "create");
            run.failures += 1;
            Store::open(&path, &flavor.options_threads(threads)).unwrap_or_else(|e| panic!("{case}: create after the fault: {e}"))
        }
    });
    let mut model = Model::default();
    // The last checkpoint known durable, and its content.
    let mut committed: (u64, State) = (store.as_ref().unwrap().checkpoint_seq(), State::new());

    let ops = if bulk > 0 { bulk_workload(flavor) } else { workload(flavor) };
    for (i, op) in ops.iter().enumerate() {
        let before = model.clone();
        let mut after = model.clone();
        after.apply(op, flavor);
        let first_call = state.lock().unwrap().calls;
        arm(true);
        let result = workload::run_op(&mut store, &path, op, before.version, threads);
        arm(false);
        if matches!(op, Op::PutRange(_)) {
            run.bulk_calls.extend(first_call..state.lock().unwrap().calls);
        }
        let what = format!("op {i} {op:?}");
        match result {
            Ok(()) => {
                model = after;
                let s = store.as_ref().unwrap();
                assert!(holds(s, &model.live), "{case}: {what}: live state differs from the model");
                if s.checkpoint_seq() != committed.0 {
                    committed = (s.checkpoint_seq(), model.live.clone());
                }
                continue;
            }
            Err(e) => {
                check_error(&e, &what);
                run.failures += 1;
            }
        }
        // The handle (if any) shows the state before or after the op.
        let mut usable = false;
        if let Some(s) = store.as_ref() {
            model = if holds(s, &after.live) {
                after.clone()
            } else if holds(s, &before.live) {
                before.clone()
            } else {
                panic!("{case}: {what}: after the failure the handle shows neither the old nor the new state")
            };
            match s.checkpoint() {
                Ok(seq) => {
                    usable = true;
                    run.kept_working += 1;
                    committed = (seq, model.live.clone());
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::Io, "{case}: {what}: checkpoint after the fault: {e}");
                    assert!(e.message().contains("refuses further changes"), "{case}: {what}: {e}");
                    // Writes are refused too, with the same message.
                    let put = s.put_batch(&workload::id_batch(&[0]).batch().unwrap(), &workload::vector(0, 1));
                    assert!(put.unwrap_err().message().contains("refuses further changes"), "{case}: {what}");
                }
            }
        }
        if !usable {
            // Close without committing (a poisoned handle cannot), then reopen.
            if let Some(s) = store.take() {
                let closed = s.close();
                assert!(closed.is_ok() || closed.unwrap_err().kind() == ErrorKind::Io, "{case}: {what}: close");
            }
            let s = Store::open(&path, &Options { threads, ..Options::default() })
                .unwrap_or_else(|e| panic!("{case}: {what}: reopen after the fault: {e}"));
            let seq = s.checkpoint_seq();
            assert!(seq == committed.0 || seq == committed.0 + 1, "{case}: {what}: reopened at {seq}, last checkpoint {}", committed.0);
            if seq == committed.0 {
                assert!(holds(&s, &committed.1), "{case}: {what}: checkpoint {seq} lost data");
                model.live = committed.1.clone();
            } else {
                // The in-flight commit landed: it holds the state the op committed.
                model = if holds(&s, &after.live) { after.clone() } else { before.clone() };
                assert!(holds(&s, &model.live), "{case}: {what}: in-flight checkpoint {seq} holds neither state");
            }
            model.version = after.version; // versions stay unique
            committed = (seq, model.live.clone());
            store = Some(s);
            run.reopened += 1;
        }
    }
    // Close (a checkpoint) and reopen: the final state is the model's.
    arm(true);
    let closed = store.take().unwrap().close();
    arm(false);
    if let Err(e) = closed {
        check_error(&e, "close");
        run.failures += 1;
    }
    faults::set_hook(None);
    run.calls = state.lock().unwrap().calls;
    run.helper_calls = state.lock().unwrap().helper_calls;
    run.fired_on_helper = state.lock().unwrap().fired_on_helper;
    let s = Store::open(&path, &Options { read_only: true, ..Options::default() })
        .unwrap_or_else(|e| panic!("{case}: final reopen: {e}"));
    assert!(s.checkpoint_seq() >= committed.0, "{case}: final reopen lost checkpoint {}", committed.0);
    assert!(holds(&s, &model.live) || holds(&s, &committed.1), "{case}: final state differs from the model");
    if fault.is_some() {
        assert!(state.lock().unwrap().fired.is_some(), "{case}: the fault never fired");
    }
    run
}

fn every_call(flavor: Flavor) {
    faults_at(flavor, 1, |clean| (0..clean.calls).collect());
}

/// With two worker threads: a fault at every call of the bulk puts, which
/// run on both threads (the hook sees the worker's calls too).
fn every_bulk_call(flavor: Flavor) {
    faults_at(flavor, 2, |clean| {
        assert!(clean.helper_calls > 0, "no file call came from a worker thread: the threaded put went unchecked");
        clean.bulk_calls.clone()
    });
}

/// A clean run, then one run per call that `targets` picks from it and per error.
fn faults_at(flavor: Flavor, threads: u32, targets: impl Fn(&Run) -> Vec<usize>) {
    let tmp = TempDir::scratch(&format!("ioerr-{flavor:?}-{threads}"));
    let clean = run(flavor, threads, &tmp.path().join("clean"), None);
    assert_eq!(clean.failures, 0);
    let calls = clean.calls;
    let (mut runs, mut failures, mut kept, mut reopened, mut on_helpers) = (0, 0, 0, 0, 0);
    for target in targets(&clean) {
        for errno in [libc::ENOSPC, libc::EIO, libc::EFBIG] {
            let dir = tmp.path().join(format!("c{target}-{errno}"));
            let r = run(flavor, threads, &dir, Some((target, errno)));
            std::fs::remove_dir_all(&dir).unwrap();
            runs += 1;
            failures += r.failures;
            kept += r.kept_working;
            reopened += r.reopened;
            on_helpers += r.fired_on_helper as usize;
        }
    }
    if threads > 1 {
        assert!(on_helpers > 0, "no injected fault hit a worker thread's call");
    }
    eprintln!(
        "io errors {flavor:?}, {threads} threads: {calls} calls ({} on worker threads), {runs} runs \
         ({on_helpers} failing a worker's call), {failures} failed calls, \
         {kept} handles kept working, {reopened} reopened after a failed sync",
        clean.helper_calls
    );
}

#[test]
fn io_errors_plain_store() {
    every_call(Flavor::Plain);
}

#[test]
fn io_errors_pq_store() {
    every_call(Flavor::Pq);
}

#[test]
fn io_errors_drop_raw_store() {
    every_call(Flavor::DropRaw);
}

#[test]
fn io_errors_ivf_store() {
    every_call(Flavor::Ivf);
}

#[test]
fn io_errors_ivf_drop_raw_store() {
    every_call(Flavor::IvfDropRaw);
}

#[test]
fn io_errors_threaded_plain_store() {
    every_bulk_call(Flavor::Plain);
}

#[test]
fn io_errors_threaded_pq_store() {
    every_bulk_call(Flavor::Pq);
}

/// Records the file name of every sync call a checkpoint makes.
struct SyncLog(Arc<Mutex<Vec<String>>>);

impl Hook for SyncLog {
    fn before(&mut self, call: &Call<'_>) -> std::io::Result<()> {
        if call.op == IoOp::Sync {
            let name = call.path.file_name().unwrap().to_string_lossy();
            self.0.lock().unwrap().push(name.split('.').next().unwrap().to_string());
        }
        Ok(())
    }
    fn after(&mut self, _: &Call<'_>, _: bool) {}
}

/// A checkpoint syncs exactly the data files that hold bytes published
/// since their last sync (committed bytes never change), then the
/// superblock twice; a failed data sync still refuses further changes.
#[test]
fn checkpoint_syncs_only_files_with_new_data() {
    let dir = TempDir::new("sync-only-new");
    let path = dir.store();
    let store = Store::open(&path, &Options { create: true, dim: 4, ..Options::default() }).unwrap();
    let ids = |r: std::ops::Range<usize>| omendb::IdBuf::new(r.map(|i| format!("id-{i}")));
    let log = Arc::new(Mutex::new(Vec::new()));
    let checkpoint = |what: &dyn Fn(&Store)| {
        what(&store);
        log.lock().unwrap().clear();
        faults::set_hook(Some(Box::new(SyncLog(log.clone()))));
        store.checkpoint().unwrap();
        faults::set_hook(None);
        let mut synced = log.lock().unwrap().clone();
        synced.sort();
        synced
    };
    let puts = checkpoint(&|s| s.put_batch(&ids(0..10).batch().unwrap(), &[1.0; 40]).unwrap());
    // Short IDs live in their slot records: the ids file gets nothing.
    assert_eq!(puts, ["slots", "superblock", "superblock", "vectors"]);
    let deletes = checkpoint(&|s| assert_eq!(s.delete_batch(&ids(0..3).batch().unwrap()).unwrap(), 3));
    assert_eq!(deletes, ["superblock", "superblock", "tombs"]);
    let long = omendb::IdBuf::new(["an-id-longer-than-the-slot-head"]);
    let both = checkpoint(&|s| {
        s.put_batch(&long.batch().unwrap(), &[2.0; 4]).unwrap();
        s.delete_batch(&ids(4..5).batch().unwrap()).unwrap();
    });
    assert_eq!(both, ["ids", "slots", "superblock", "superblock", "tombs", "vectors"]);
    assert!(checkpoint(&|_| {}).is_empty(), "nothing new: no sync at all");

    // A failing data sync among the concurrent ones: the checkpoint fails
    // and the handle refuses changes (fsyncgate rule).
    store.put_batch(&ids(20..21).batch().unwrap(), &[3.0; 4]).unwrap();
    let fault = Arc::new(Mutex::new(Fault { target: Some(1), errno: libc::EIO, armed: true, ..Fault::default() }));
    faults::set_hook(Some(Box::new(FaultHook(fault.clone()))));
    let err = store.checkpoint().unwrap_err();
    faults::set_hook(None);
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.message().contains("fdatasync"), "{err}");
    let refused = store.put_batch(&ids(30..31).batch().unwrap(), &[4.0; 4]).unwrap_err();
    assert!(refused.message().contains("sync failed"), "{refused}");
    drop(store);
    let store = Store::open(&path, &Options::default()).unwrap();
    assert_eq!(store.stats().unwrap().live_vectors, 7); // id-4..=id-9 and the long one
}
