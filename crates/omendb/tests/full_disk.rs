//! Full disks, through the I/O seam (src/faults.rs):
//!
//! - On a filesystem without `fallocate` (every fallocate of a data file
//!   fails with EOPNOTSUPP, so the files grow sparsely with `ftruncate`)
//!   the disk fills up at each data write, in turn, that a put, a
//!   SYNC_WRITES put, a delete, a compaction or a PQ training (8-bit,
//!   4-bit, DROP_RAW) makes, and stays full until the operation returns.
//!   Data written through a mapping would then raise SIGBUS; with every
//!   write a `pwrite`, the operation returns OMEN_ERR_IO with the OS
//!   reason, the handle shows the state before, the directory holds the
//!   files it held before, the handle keeps working, reopening gives the
//!   last checkpoint, and the operation succeeds once there is space.
//! - A compaction or training that fails at any of its calls before its
//!   commit removes the files of the new generation, and the handle keeps
//!   working (after a failed sync it refuses changes; reopening recovers).
//! - Where a growth step does not fit (ENOSPC, EFBIG), the file grows by
//!   what the put needs.
//!
//! tests/full_disk_mounted.rs does the same on real filesystems when the
//! process may mount them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::workload::{self, check_state, Flavor, Model, Op, DIM};
use common::TempDir;
use omendb::storage::faults::{self, Call, Hook, Op as IoOp};
use omendb::{ErrorKind, Options, PqSettings, Store};

const POOL: u64 = 130;

fn reason(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

/// The kind of a data file ("slots", "codes", ...) from its path; None for
/// the superblock and the lock file.
fn data_kind(path: &Path) -> Option<String> {
    let (stem, generation) = path.file_name()?.to_str()?.split_once('.')?;
    (generation.len() == 16).then(|| stem.to_string())
}

/// The names of the files in a store directory.
fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

/// A disk, as the hook plays it.
#[derive(Default)]
struct Disk {
    /// Every fallocate of a data file fails with EOPNOTSUPP.
    no_fallocate: bool,
    /// The data file whose fallocate was just refused.
    refused: Option<PathBuf>,
    /// Sparse extensions: `ftruncate` upwards after a refused fallocate.
    sparse: usize,
    /// Data-file writes are counted (and may fail) while on.
    counting: bool,
    writes: usize,
    /// Counted writes past a file's header, by file kind.
    data_writes: BTreeMap<String, usize>,
    /// Files created while counting whose header is not written yet.
    fresh: Vec<PathBuf>,
    /// The disk is full from this counted write on.
    full_at: Option<usize>,
    fired: bool,
    /// A fallocate asking for more than this past a file's length fails
    /// with `grow_errno`.
    grow_room: Option<u64>,
    grow_errno: i32,
    refused_grows: usize,
}

struct DiskHook(Arc<Mutex<Disk>>);

impl Hook for DiskHook {
    fn before(&mut self, call: &Call<'_>) -> std::io::Result<()> {
        let mut d = self.0.lock().unwrap();
        let kind = data_kind(call.path);
        match call.op {
            IoOp::Grow if kind.is_some() => {
                if d.no_fallocate {
                    d.refused = Some(call.path.to_path_buf());
                    return Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP));
                }
                if let Some(room) = d.grow_room {
                    let len = std::fs::metadata(call.path).unwrap().len();
                    if call.size.expect("a grow names its size") > len + room {
                        d.refused_grows += 1;
                        return Err(std::io::Error::from_raw_os_error(d.grow_errno));
                    }
                }
            }
            IoOp::Truncate if d.refused.as_deref() == Some(call.path) => {
                d.refused = None;
                d.sparse += 1;
            }
            IoOp::Create if d.counting => d.fresh.push(call.path.to_path_buf()),
            IoOp::Write if d.counting && kind.is_some() => {
                let n = d.writes;
                d.writes += 1;
                match d.fresh.iter().position(|p| p == call.path) {
                    Some(i) => drop(d.fresh.remove(i)), // its header
                    None => *d.data_writes.entry(kind.unwrap()).or_default() += 1,
                }
                if d.full_at.is_some_and(|k| n >= k) {
                    d.fired = true;
                    return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn after(&mut self, _: &Call<'_>, _: bool) {}

    fn skip_syncs(&self) -> bool {
        true
    }
}

fn options(pq_bits: Option<u32>, drop_raw: bool, sync_writes: bool) -> Options {
    let pq = pq_bits.map(|bits| PqSettings { m: 4, bits, train_size: 0 });
    Options { threads: 1, pq, drop_raw, sync_writes, ..Options::create(DIM as u32) }
}

fn flavor(options: &Options) -> Flavor {
    match (options.pq.is_some(), options.drop_raw) {
        (false, _) => Flavor::Plain,
        (true, false) => Flavor::Pq,
        (true, true) => Flavor::DropRaw,
    }
}

/// Whether the store holds the model's state (IDs only once a DROP_RAW
/// store has dropped its raw vectors: it gives PQ reconstructions).
fn holds(store: &Store, model: &Model) -> bool {
    if store.stats().unwrap().raw_kept {
        check_state(store, &model.live, POOL).is_ok()
    } else {
        workload::snapshot(store, POOL).keys().eq(model.live.keys())
            && store.stats().unwrap().live_vectors == model.live.len() as u64
    }
}

fn ids(r: std::ops::Range<u64>) -> Vec<u64> {
    r.collect()
}

/// A store built by `setup` and checkpointed, then `op`.
struct Scenario {
    name: &'static str,
    options: Options,
    setup: Vec<Op>,
    op: Op,
}

impl Scenario {
    fn new(name: &'static str, options: Options, setup: Vec<Op>, op: Op) -> Scenario {
        Scenario { name, options, setup, op }
    }

    /// Builds the store at `path`; returns it, its model and its checkpoint.
    fn build(&self, path: &Path) -> (Option<Store>, Model, u64) {
        let mut store = Some(Store::open(path, &self.options).unwrap());
        let mut model = Model::default();
        for op in &self.setup {
            workload::run_op(&mut store, path, op, model.version, 1).unwrap();
            model.apply(op, flavor(&self.options));
        }
        let seq = store.as_ref().unwrap().checkpoint().unwrap();
        (store, model, seq)
    }

    fn after(&self, model: &Model) -> Model {
        let mut after = model.clone();
        after.apply(&self.op, flavor(&self.options));
        after
    }
}

/// Runs `s` on a filesystem without fallocate, the disk full from the op's
/// `full_at`-th data write on; returns the data writes the op made, by
/// file kind.
fn run_sparse(s: &Scenario, dir: &Path, full_at: Option<usize>) -> (usize, BTreeMap<String, usize>) {
    let case = format!("{}: disk full at write {full_at:?}", s.name);
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("store");
    let disk = Arc::new(Mutex::new(Disk { no_fallocate: true, ..Disk::default() }));
    faults::set_hook(Some(Box::new(DiskHook(disk.clone()))));
    let (mut store, model, seq) = s.build(&path);
    let before = listing(&path);
    {
        let mut d = disk.lock().unwrap();
        (d.counting, d.full_at) = (true, full_at);
    }
    let result = workload::run_op(&mut store, &path, &s.op, model.version, 1);
    disk.lock().unwrap().counting = false;
    let after = s.after(&model);
    if full_at.is_some() {
        let e = result.expect_err(&case);
        assert!(disk.lock().unwrap().fired, "{case}: failed with no full disk: {e}");
        assert_eq!(e.kind(), ErrorKind::Io, "{case}: {e}");
        assert!(e.message().contains(&reason(libc::ENOSPC)), "{case}: no OS reason in {e}");
        let s1 = store.as_ref().unwrap();
        assert!(holds(s1, &model), "{case}: the failed op left a change visible");
        assert_eq!(listing(&path), before, "{case}: the failed op left files behind");
        assert_eq!(s1.checkpoint().unwrap(), seq, "{case}: nothing new to commit");
        store.take().unwrap().close().unwrap();
        store = Some(Store::open(&path, &Options { threads: 1, ..Options::default() }).unwrap());
        let s1 = store.as_ref().unwrap();
        assert_eq!(s1.checkpoint_seq(), seq, "{case}: reopened elsewhere than the last checkpoint");
        assert!(holds(s1, &model), "{case}: reopened store differs from the last checkpoint");
        // Space again: the op succeeds.
        workload::run_op(&mut store, &path, &s.op, model.version, 1).unwrap_or_else(|e| panic!("{case}: retry: {e}"));
    } else {
        result.unwrap_or_else(|e| panic!("{case}: {e}"));
    }
    assert!(holds(store.as_ref().unwrap(), &after), "{case}: the op's result differs from the model");
    store.take().unwrap().close().unwrap();
    faults::set_hook(None);
    assert!(disk.lock().unwrap().sparse > 0, "{case}: the files never grew sparsely");
    let d = disk.lock().unwrap();
    (d.writes, d.data_writes.clone())
}

/// Every operation, the disk filling up at each of its writes on a
/// filesystem without fallocate.
#[test]
fn full_disk_without_fallocate_is_an_io_error_at_every_write() {
    let (put, del, train, compact) = (Op::Put(ids(40..100)), Op::Delete(ids(10..40)), Op::Train, Op::Compact);
    let base = vec![Op::Put(ids(0..60))];
    let trained = vec![Op::Put(ids(0..100)), Op::Train, Op::Delete(ids(0..10))];
    let plain = options(None, false, false);
    // (scenario, the files its records go to)
    let scenarios = [
        (Scenario::new("put", plain.clone(), base.clone(), put.clone()), &["ids", "slots", "vectors"][..]),
        (Scenario::new("put, SYNC_WRITES", options(None, false, true), base.clone(), put.clone()), &["ids", "slots", "vectors"]),
        (Scenario::new("delete", plain.clone(), base.clone(), del.clone()), &["tombs"]),
        (Scenario::new("compact", plain.clone(), vec![Op::Put(ids(0..60)), Op::Delete(ids(5..20))], compact.clone()), &["ids", "slots", "vectors"]),
        (Scenario::new("train 8-bit", options(Some(8), false, false), vec![Op::Put(ids(0..100))], train.clone()), &["codebooks", "codes"]),
        (Scenario::new("train 4-bit", options(Some(4), false, false), vec![Op::Put(ids(0..100))], train.clone()), &["codebooks", "codes"]),
        (Scenario::new("put, 8-bit codes", options(Some(8), false, false), trained.clone(), Op::Put(ids(90..130))), &["codes", "ids", "slots", "vectors"]),
        (Scenario::new("put, 4-bit codes", options(Some(4), false, false), trained.clone(), Op::Put(ids(90..130))), &["codes", "ids", "slots", "vectors"]),
        (Scenario::new("compact, 8-bit codes", options(Some(8), false, false), trained.clone(), compact.clone()), &["codebooks", "codes", "ids", "slots", "vectors"]),
        (Scenario::new("train DROP_RAW 8-bit", options(Some(8), true, false), vec![Op::Put(ids(0..100))], train.clone()), &["codebooks", "codes", "ids", "slots"]),
        (Scenario::new("train DROP_RAW 4-bit", options(Some(4), true, false), vec![Op::Put(ids(0..100))], train.clone()), &["codebooks", "codes", "ids", "slots"]),
        (Scenario::new("put, DROP_RAW", options(Some(4), true, false), trained.clone(), Op::Put(ids(90..130))), &["codes", "ids", "slots"]),
        (Scenario::new("delete, DROP_RAW", options(Some(8), true, false), trained.clone(), del.clone()), &["tombs"]),
    ];
    let tmp = TempDir::scratch("full-sparse");
    let mut runs = 0;
    for (i, (s, files)) in scenarios.iter().enumerate() {
        let (writes, data_writes) = run_sparse(s, &tmp.path().join(format!("{i}-clean")), None);
        let written: Vec<&str> = data_writes.keys().map(String::as_str).collect();
        assert_eq!(written, *files, "{}: the records reach the files through the seam", s.name);
        for full_at in 0..writes {
            let dir = tmp.path().join(format!("{i}-{full_at}"));
            run_sparse(s, &dir, Some(full_at));
            std::fs::remove_dir_all(&dir).unwrap();
            runs += 1;
        }
    }
    eprintln!("full disk without fallocate: {} scenarios, {runs} runs", scenarios.len());
}

/// Fails call `target` of those made while recording (ENOSPC, or EIO for a sync).
#[derive(Default)]
struct OneFault {
    recording: bool,
    calls: Vec<(IoOp, String)>,
    target: Option<usize>,
    fired: Option<(IoOp, String)>,
}

struct OneFaultHook(Arc<Mutex<OneFault>>);

impl Hook for OneFaultHook {
    fn before(&mut self, call: &Call<'_>) -> std::io::Result<()> {
        let mut f = self.0.lock().unwrap();
        if !f.recording {
            return Ok(());
        }
        let name = call.path.file_name().unwrap().to_string_lossy().into_owned();
        if f.target == Some(f.calls.len()) {
            f.fired = Some((call.op, name.clone()));
            let errno = if matches!(call.op, IoOp::Sync | IoOp::SyncDir) { libc::EIO } else { libc::ENOSPC };
            f.calls.push((call.op, name));
            return Err(std::io::Error::from_raw_os_error(errno));
        }
        f.calls.push((call.op, name));
        Ok(())
    }

    fn after(&mut self, _: &Call<'_>, _: bool) {}

    fn skip_syncs(&self) -> bool {
        true
    }
}

/// Runs `s` with call `target` of its op failing; returns the calls the op
/// made before its superblock write (the commit), if it got there.
fn run_failing_rewrite(s: &Scenario, dir: &Path, target: Option<usize>) -> Option<usize> {
    let case = format!("{}: call {target:?} fails", s.name);
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("store");
    let (mut store, model, seq) = s.build(&path);
    let before = listing(&path);
    let fault = Arc::new(Mutex::new(OneFault { recording: true, target, ..OneFault::default() }));
    faults::set_hook(Some(Box::new(OneFaultHook(fault.clone()))));
    let result = workload::run_op(&mut store, &path, &s.op, model.version, 1);
    faults::set_hook(None);
    let after = s.after(&model);
    let f = fault.lock().unwrap();
    let commit = f.calls.iter().position(|(op, name)| *op == IoOp::Write && name == "superblock");
    let s1 = store.as_ref().unwrap();
    match (target, result) {
        (None, result) => {
            result.unwrap_or_else(|e| panic!("{case}: {e}"));
            assert!(holds(s1, &after), "{case}");
        }
        (Some(_), Ok(())) => {
            // Only a growth step can fail without failing the op: the file
            // then grows by what is needed.
            let (op, file) = f.fired.clone().expect("fired");
            assert_eq!(op, IoOp::Grow, "{case}: {op:?} {file} failed and the op succeeded");
            assert!(holds(s1, &after), "{case}");
        }
        (Some(_), Err(e)) => {
            let (op, file) = f.fired.clone().unwrap_or_else(|| panic!("{case}: failed with no fault: {e}"));
            let case = format!("{case} ({op:?} {file})");
            assert_eq!(e.kind(), ErrorKind::Io, "{case}: {e}");
            assert_eq!(listing(&path), before, "{case}: files of the new generation left behind");
            assert!(holds(s1, &model), "{case}: the failed op left a change visible");
            if matches!(op, IoOp::Sync | IoOp::SyncDir) {
                let refused = s1.checkpoint().unwrap_err();
                assert!(refused.message().contains("refuses further changes"), "{case}: {refused}");
                store.take().unwrap().close().ok();
                store = Some(Store::open(&path, &Options { threads: 1, ..Options::default() }).unwrap());
                assert_eq!(store.as_ref().unwrap().checkpoint_seq(), seq, "{case}");
            } else {
                assert_eq!(s1.checkpoint().unwrap(), seq, "{case}: the handle keeps working");
            }
            assert!(holds(store.as_ref().unwrap(), &model), "{case}");
            workload::run_op(&mut store, &path, &s.op, model.version, 1).unwrap_or_else(|e| panic!("{case}: retry: {e}"));
            assert!(holds(store.as_ref().unwrap(), &after), "{case}: retry");
        }
    }
    store.take().unwrap().close().unwrap();
    commit
}

/// Compaction and training (which writes a new PQ generation, or with
/// DROP_RAW rewrites the store) failing at each call before the commit.
#[test]
fn failed_compaction_or_training_removes_its_files() {
    let puts = vec![Op::Put(ids(0..100)), Op::Delete(ids(10..30))];
    let trained = vec![Op::Put(ids(0..100)), Op::Train, Op::Delete(ids(10..30))];
    let scenarios = [
        Scenario::new("compact", options(None, false, false), puts.clone(), Op::Compact),
        Scenario::new("compact, 8-bit codes", options(Some(8), false, false), trained.clone(), Op::Compact),
        Scenario::new("train 4-bit", options(Some(4), false, false), puts.clone(), Op::Train),
        Scenario::new("retrain 8-bit", options(Some(8), false, false), trained.clone(), Op::Train),
        Scenario::new("train DROP_RAW", options(Some(8), true, false), puts.clone(), Op::Train),
    ];
    let tmp = TempDir::scratch("failed-rewrite");
    let mut runs = 0;
    for (i, s) in scenarios.iter().enumerate() {
        let calls = run_failing_rewrite(s, &tmp.path().join(format!("{i}-clean")), None).expect("the op commits");
        for target in 0..calls {
            let dir = tmp.path().join(format!("{i}-{target}"));
            run_failing_rewrite(s, &dir, Some(target));
            std::fs::remove_dir_all(&dir).unwrap();
            runs += 1;
        }
    }
    eprintln!("failed compactions and trainings: {runs} runs");
}

/// A growth step that does not fit (ENOSPC, or EFBIG under a file size
/// limit) gives way to growth by what the put needs; a put that does not
/// fit even so fails whole.
#[test]
fn growth_falls_back_to_the_size_needed() {
    const DIM64: usize = 64;
    const ROOM: u64 = 256 << 10;
    let record = (DIM64 * 4) as u64;
    for errno in [libc::ENOSPC, libc::EFBIG] {
        let tmp = TempDir::scratch("growth");
        let path = tmp.store();
        let store = Store::open(&path, &Options { threads: 1, ..Options::create(DIM64 as u32) }).unwrap();
        let put = |from: usize, n: usize| {
            let vectors: Vec<f32> = (from..from + n).flat_map(|i| vec![i as f32; DIM64]).collect();
            store.put_batch(&common::ids(from..from + n).batch().unwrap(), &vectors)
        };
        for b in 0..4 {
            put(b * 1000, 1000).unwrap();
        }
        let vectors_file = path.join("vectors.0000000000000001");
        let capacity = std::fs::metadata(&vectors_file).unwrap().len() - 4096;
        assert!(capacity > 2 * ROOM, "the growth step ({capacity} bytes) exceeds the room");
        // Past the capacity by 200 vectors (51 KB): the step does not fit.
        let n = ((capacity - 4000 * record) / record + 200) as usize;
        let disk = Arc::new(Mutex::new(Disk { grow_room: Some(ROOM), grow_errno: errno, ..Disk::default() }));
        faults::set_hook(Some(Box::new(DiskHook(disk.clone()))));
        put(4000, n).unwrap_or_else(|e| panic!("{}: a put that fits failed: {e}", reason(errno)));
        assert!(disk.lock().unwrap().refused_grows > 0, "the growth step was never refused");
        let len = std::fs::metadata(&vectors_file).unwrap().len();
        assert_eq!(len, 4096 + ((4000 + n) as u64 * record).next_multiple_of(4096), "grown by what was needed");
        // A put that needs more than the room fails, and changes nothing.
        let err = put(10_000, (2 * ROOM / record) as usize).unwrap_err();
        faults::set_hook(None);
        assert_eq!(err.kind(), ErrorKind::Io, "{err}");
        assert!(err.message().contains(&reason(errno)), "{err}");
        assert_eq!(store.stats().unwrap().live_vectors, (4000 + n) as u64);
        put(10_000, 10).unwrap();
        store.close().unwrap();
        let store = Store::open(&path, &Options::default()).unwrap();
        assert_eq!(store.stats().unwrap().live_vectors, (4010 + n) as u64);
        assert_eq!(store.get(format!("id-{}", 3999 + n).as_bytes()).unwrap(), vec![(3999 + n) as f32; DIM64]);
    }
}

/// A batch whose slot records and long IDs outgrow the writer's buffers is
/// written in several runs (one `pwrite` each), and its IDs still never
/// straddle a mapping chunk of the ids file (8 MiB): the ID that would is
/// moved past the boundary, the gap zero-filled and checksummed. Reopening
/// verifies every checksum and every slot's ID.
#[test]
fn large_batches_are_written_in_runs() {
    let tmp = TempDir::scratch("large-batch");
    let path = tmp.store();
    let id = |i: usize| format!("{i:07}-{}", "x".repeat(993)); // 1,001 bytes
    let n = 9_000; // 9 MB of IDs, 288 KB of slot records
    let ids = omendb::IdBuf::new((0..n).map(id));
    let vectors: Vec<f32> = (0..n * 4).map(|i| i as f32).collect();
    let disk = Arc::new(Mutex::new(Disk { counting: true, ..Disk::default() }));
    faults::set_hook(Some(Box::new(DiskHook(disk.clone()))));
    let store = Store::open(&path, &Options { threads: 1, ..Options::create(4) }).unwrap();
    store.put_batch(&ids.batch().unwrap(), &vectors).unwrap();
    faults::set_hook(None);
    let ids_writes = disk.lock().unwrap().data_writes["ids"];
    assert!((8..=20).contains(&ids_writes), "{ids_writes} writes of the ids file: one per MiB gathered");
    assert_eq!(disk.lock().unwrap().data_writes["slots"], ids_writes, "each run writes both files");
    store.close().unwrap();
    let (store, report) = Store::recover(&path, &Options::default()).unwrap();
    assert_eq!(report.live_vectors, n as u64);
    for i in [0, 1, 8_379, 8_380, 8_381, n - 1] {
        assert_eq!(store.get(id(i).as_bytes()).unwrap(), vectors[i * 4..i * 4 + 4], "{i}");
    }
    let ids_len = std::fs::metadata(path.join("ids.0000000000000001")).unwrap().len() - 4096;
    assert!(ids_len > (n * 1001) as u64, "the chunk boundary was padded ({ids_len} bytes)");
}
