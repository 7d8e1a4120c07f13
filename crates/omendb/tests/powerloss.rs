//! Power-loss simulation. A workload runs with a hook on every system call
//! that changes the store's files (src/faults.rs). At each one (each sync,
//! superblock write, rename, unlink, truncate, creation) the harness records
//! a *crash point*: for every file, its content as of its last completed
//! fdatasync and the 4 KiB pages that differ in the live file (found by
//! diffing images: the seam sees each call, not its bytes), plus the
//! directory as of its last fsync and the namespace operations since.
//!
//! After the workload, crash images are built from the points: each file is
//! its synced content with a random subset of its changed pages, each one new,
//! old or zeroed, its length the synced or the live one; the directory holds
//! the synced entries plus a random prefix (or, strictly per POSIX, a random
//! subset) of the creates, renames and unlinks since. Each image is opened and
//! must give exactly the newest checkpoint whose superblock slot it holds,
//! which must be the last completed checkpoint or the one in flight, with
//! exactly the content the model had at that checkpoint, bit for bit, and
//! nothing else. Some images are also recovered (every checksum), searched,
//! and written to and reopened.
//!
//! OMENDB_POWERLOSS_SCALE multiplies the number of images (default 1).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::workload::{self, check_search, check_state, next_op, Flavor, Model, Op, State};
use common::{Rng, TempDir};
use omendb::storage::faults::{self, Call, Hook, Op as IoOp};
use omendb::storage::format::{SlotState, Superblock};
use omendb::{ErrorKind, Options, Store};

const PAGE: usize = 4096;
const POOL: u64 = 120;

#[derive(Debug, Clone)]
enum NsOp {
    Create(String, usize),
    Rename(String, String),
    Remove(String),
}

struct Inode {
    /// Content as of the last completed fdatasync (empty if never synced).
    durable: Arc<Vec<u8>>,
    /// Content when it was unlinked.
    unlinked: Option<Arc<Vec<u8>>>,
}

/// One file at a crash point: its synced content and what changed since.
struct FileAt {
    durable: Arc<Vec<u8>>,
    live_len: usize,
    /// Pages whose live content differs from the synced one: (index, live bytes, zero-padded).
    changed: Vec<(usize, Vec<u8>)>,
}

struct CrashPoint {
    label: String,
    durable_ns: BTreeMap<String, usize>,
    pending: Vec<NsOp>,
    files: HashMap<usize, FileAt>,
    completed: Option<u64>,
    in_flight: Option<u64>,
    /// The store's superblock is in the synced directory: "no store" is no longer acceptable.
    store_durable: bool,
}

#[derive(Default)]
struct Recorder {
    dir: PathBuf,
    inodes: Vec<Inode>,
    live_ns: BTreeMap<String, usize>,
    durable_ns: BTreeMap<String, usize>,
    pending: Vec<NsOp>,
    completed: Option<u64>,
    in_flight: Option<u64>,
    store_durable: bool,
    points: Vec<CrashPoint>,
    /// What the driver is doing (for failure messages).
    label: String,
    /// Superblock seqs written during the current op.
    written: Vec<u64>,
    calls: HashMap<IoOp, usize>,
    /// The thread running the workload; calls from any other are counted.
    driver: Option<std::thread::ThreadId>,
    helper_calls: usize,
}

fn name_in(dir: &Path, path: &Path) -> Option<String> {
    (path.parent() == Some(dir)).then(|| path.file_name().unwrap().to_str().unwrap().to_string())
}

fn is_superblock(name: &str) -> bool {
    name == "superblock" || name == "superblock.tmp"
}

fn newest_seq(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != 2 * PAGE {
        return None;
    }
    bytes
        .chunks(PAGE)
        .filter_map(|p| match Superblock::decode(p) {
            SlotState::Valid(sb) => Some(sb.seq),
            _ => None,
        })
        .max()
}

impl Recorder {
    fn live_content(&self, ino: usize) -> Arc<Vec<u8>> {
        match self.live_ns.iter().find(|(_, &i)| i == ino) {
            Some((name, _)) => Arc::new(std::fs::read(self.dir.join(name)).unwrap()),
            None => self.inodes[ino].unlinked.clone().unwrap_or_else(|| self.inodes[ino].durable.clone()),
        }
    }

    fn crash_point(&mut self, what: String) {
        let mut files = HashMap::new();
        let mut inodes: Vec<usize> = self.durable_ns.values().copied().collect();
        for op in &self.pending {
            if let NsOp::Create(_, ino) = op {
                inodes.push(*ino);
            }
        }
        for ino in inodes {
            if files.contains_key(&ino) {
                continue;
            }
            let durable = self.inodes[ino].durable.clone();
            let live = self.live_content(ino);
            let pages = durable.len().max(live.len()).div_ceil(PAGE);
            let page = |b: &[u8], p: usize| {
                let mut out = vec![0u8; PAGE];
                let (s, e) = ((p * PAGE).min(b.len()), ((p + 1) * PAGE).min(b.len()));
                out[..e - s].copy_from_slice(&b[s..e]);
                out
            };
            let changed = (0..pages)
                .filter_map(|p| {
                    let new = page(&live, p);
                    (new != page(&durable, p)).then_some((p, new))
                })
                .collect();
            files.insert(ino, FileAt { durable, live_len: live.len(), changed });
        }
        self.points.push(CrashPoint {
            label: format!("{} / {what}", self.label),
            durable_ns: self.durable_ns.clone(),
            pending: self.pending.clone(),
            files,
            completed: self.completed,
            in_flight: self.in_flight,
            store_durable: self.store_durable,
        });
    }
}

struct PowerHook(Arc<Mutex<Recorder>>);

impl Hook for PowerHook {
    fn before(&mut self, call: &Call<'_>) -> std::io::Result<()> {
        let mut r = self.0.lock().unwrap();
        *r.calls.entry(call.op).or_default() += 1;
        if r.driver != Some(std::thread::current().id()) {
            r.helper_calls += 1;
        }
        let dir = r.dir.clone();
        let name = name_in(&dir, call.path);
        let point = match call.op {
            IoOp::Mkdir | IoOp::Grow => false,
            IoOp::Write => name.as_deref().is_some_and(is_superblock),
            IoOp::SyncDir => call.path == dir,
            _ => name.is_some(),
        };
        if point {
            r.crash_point(format!("before {:?} {}", call.op, name.clone().unwrap_or_default()));
        }
        if call.op == IoOp::Remove {
            if let Some(&ino) = name.as_ref().and_then(|n| r.live_ns.get(n)) {
                r.inodes[ino].unlinked = Some(Arc::new(std::fs::read(call.path).unwrap()));
            }
        }
        Ok(())
    }

    fn after(&mut self, call: &Call<'_>, ok: bool) {
        if !ok {
            return; // only a remove of a file that is already gone fails here
        }
        let mut r = self.0.lock().unwrap();
        let dir = r.dir.clone();
        if call.op == IoOp::SyncDir {
            if call.path == dir {
                r.durable_ns = r.live_ns.clone();
                r.pending.clear();
                r.store_durable |= r.durable_ns.contains_key("superblock");
            }
            return;
        }
        let Some(name) = name_in(&dir, call.path) else { return };
        match call.op {
            IoOp::Create if !r.live_ns.contains_key(&name) => {
                let ino = r.inodes.len();
                r.inodes.push(Inode { durable: Arc::new(Vec::new()), unlinked: None });
                r.live_ns.insert(name.clone(), ino);
                r.pending.push(NsOp::Create(name, ino));
            }
            IoOp::Sync => {
                let ino = r.live_ns[&name];
                r.inodes[ino].durable = Arc::new(std::fs::read(call.path).unwrap());
                if is_superblock(&name) {
                    if let Some(seq) = r.in_flight.take() {
                        r.completed = Some(seq);
                    }
                }
            }
            IoOp::Write if is_superblock(&name) => {
                let seq = newest_seq(&std::fs::read(call.path).unwrap()).expect("a valid slot was just written");
                r.in_flight = Some(seq);
                r.written.push(seq);
            }
            IoOp::Rename => {
                let to = name_in(&dir, call.to.unwrap()).unwrap();
                let ino = r.live_ns.remove(&name).unwrap();
                r.live_ns.insert(to.clone(), ino);
                r.pending.push(NsOp::Rename(name, to));
            }
            IoOp::Remove => {
                r.live_ns.remove(&name);
                r.pending.push(NsOp::Remove(name));
            }
            _ => {}
        }
    }

    fn skip_syncs(&self) -> bool {
        true
    }
}

/// Builds one crash image of `point` in `out`.
fn build_image(point: &CrashPoint, rng: &mut Rng, out: &Path, psow: bool) -> String {
    let mut ns = point.durable_ns.clone();
    let strict = rng.below(10) < 3;
    let prefix = rng.below(point.pending.len() as u64 + 1) as usize;
    let mut applied = 0;
    for (i, op) in point.pending.iter().enumerate() {
        let apply = if strict { rng.below(2) == 0 } else { i < prefix };
        if !apply {
            continue;
        }
        applied += 1;
        match op {
            NsOp::Create(name, ino) => {
                ns.insert(name.clone(), *ino);
            }
            NsOp::Rename(from, to) => {
                if let Some(ino) = ns.remove(from) {
                    ns.insert(to.clone(), ino);
                }
            }
            NsOp::Remove(name) => {
                ns.remove(name);
            }
        }
    }
    std::fs::create_dir_all(out).unwrap();
    let mut pages = 0;
    for (name, ino) in &ns {
        let f = &point.files[ino];
        let len = if rng.below(2) == 0 { f.durable.len() } else { f.live_len };
        let mut bytes = f.durable.to_vec();
        bytes.resize(f.durable.len().max(f.live_len), 0);
        for (p, new) in &f.changed {
            let start = p * PAGE;
            let end = ((p + 1) * PAGE).min(bytes.len());
            // Per 512-byte sector: the old bytes, the new ones, or zeros
            // where bytes were written (a write that never landed on a fresh
            // block). Bytes the write did not change keep their value unless
            // the medium is not power-safe (then the whole page may be zeroed).
            let page_mode = rng.below(10);
            if page_mode < 4 {
                continue;
            }
            pages += 1;
            if !psow && page_mode == 9 {
                bytes[start..end].fill(0);
                continue;
            }
            for sector in (start..end).step_by(512) {
                let mode = if page_mode == 8 { rng.below(3) } else { page_mode % 2 + 1 };
                for at in sector..(sector + 512).min(end) {
                    let (old, new) = (bytes[at], new[at - start]);
                    if old != new {
                        bytes[at] = [old, new, 0][mode as usize];
                    }
                }
            }
        }
        bytes.truncate(len);
        std::fs::write(out.join(name), &bytes).unwrap();
    }
    format!(
        "{} namespace ops of {} applied ({}), {pages} unsynced pages{}",
        applied,
        point.pending.len(),
        if strict { "subset" } else { "prefix" },
        if psow { "" } else { ", medium not power-safe" }
    )
}

/// Opens one crash image and checks it; `depth` picks the extra checks.
fn check_image(point: &CrashPoint, dir: &Path, states: &BTreeMap<u64, State>, depth: u64, pool: u64) -> Result<(), String> {
    let sb = std::fs::read(dir.join("superblock")).ok();
    let Some(sb) = sb else {
        if point.store_durable {
            return Err("the superblock vanished after its creation was durable".into());
        }
        return match Store::open(dir, &Options::default()) {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("no superblock: open gave {e}, expected NotFound")),
            Ok(_) => Err("no superblock, yet open succeeded".into()),
        };
    };
    let expected = newest_seq(&sb).ok_or("no valid superblock slot in the image")?;
    if Some(expected) != point.completed && Some(expected) != point.in_flight {
        return Err(format!(
            "the image holds checkpoint {expected}; completed {:?}, in flight {:?}",
            point.completed, point.in_flight
        ));
    }
    let want = &states[&expected];
    let open = |read_only| Options { read_only, ..Options::default() };
    let store = if depth % 4 == 1 {
        Store::recover(dir, &open(false)).map(|(s, _)| s)
    } else {
        Store::open(dir, &open(false))
    }
    .map_err(|e| format!("open: {e}"))?;
    if store.checkpoint_seq() != expected {
        return Err(format!("opened checkpoint {}, the image's newest is {expected}", store.checkpoint_seq()));
    }
    check_state(&store, want, pool)?;
    if depth % 4 == 2 {
        check_search(&store, want, pool)?;
    }
    if depth % 4 == 3 {
        // The recovered store keeps working.
        let extra = workload::vector(pool + 1, 1);
        store.put_batch(&workload::id_batch(&[pool + 1]).batch().unwrap(), &extra).map_err(|e| format!("put: {e}"))?;
        store.checkpoint().map_err(|e| format!("checkpoint: {e}"))?;
        // (A trained DROP_RAW store gives back the PQ reconstruction.)
        let extra = store.get(workload::key(pool + 1).as_bytes()).map_err(|e| format!("get: {e}"))?;
        store.close().map_err(|e| format!("close: {e}"))?;
        let again = Store::open(dir, &open(true)).map_err(|e| format!("reopen: {e}"))?;
        let mut want = want.clone();
        want.insert(pool + 1, extra);
        check_state(&again, &want, pool + 2).map_err(|e| format!("after a write: {e}"))?;
    } else {
        store.close().map_err(|e| format!("close: {e}"))?;
    }
    Ok(())
}

/// Runs `ops` operations of a seeded workload on a store of `flavor`,
/// recording crash points, then checks `images` crash images.
fn run(flavor: Flavor, seed: u64, ops: usize, images: usize) {
    run_threads(flavor, seed, ops, images, 1);
}

/// `run` with `threads` worker threads. Above one, the workload also puts
/// `BULK` rows at a time (op 3, and op 33, after PQ training), so put_batch
/// splits its rows across threads and PQ encodes on several threads; the
/// hook must then see file calls from threads other than this one.
fn run_threads(flavor: Flavor, seed: u64, ops: usize, images: usize, threads: u32) {
    let scale: usize = std::env::var("OMENDB_POWERLOSS_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let images = images * scale;
    let tmp = TempDir::scratch(&format!("powerloss-{flavor:?}"));
    let path = tmp.store();
    std::fs::create_dir(&path).unwrap();
    let recorder = Arc::new(Mutex::new(Recorder {
        dir: path.clone(),
        driver: Some(std::thread::current().id()),
        ..Default::default()
    }));
    let bulk = if threads > 1 { workload::BULK } else { 0 };
    let pool = POOL + bulk;
    faults::set_hook(Some(Box::new(PowerHook(recorder.clone()))));

    let mut states: BTreeMap<u64, State> = BTreeMap::new();
    let mut model = Model::default();
    let mut rng = Rng(seed);
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    recorder.lock().unwrap().label = "create".into();
    let mut store = Some(Store::open(&path, &flavor.options_threads(threads)).unwrap());
    for seq in recorder.lock().unwrap().written.drain(..) {
        states.insert(seq, State::new());
    }
    for i in 0..ops {
        // Every workload compacts and (with PQ) trains, whatever the draw.
        let op = match i {
            _ if i % 23 == 22 => Op::Compact,
            30 if flavor != Flavor::Plain => Op::Train,
            31 | 52 if flavor == Flavor::Ivf => Op::Calibrate(i as u64),
            3 | 33 if bulk > 0 => Op::PutRange(POOL..pool),
            _ => next_op(&mut rng, flavor, POOL),
        };
        *kinds.entry(format!("{op:?}").split(['(', ' ']).next().unwrap().to_string().leak()).or_default() += 1;
        recorder.lock().unwrap().label = format!("op {i} {op:?}");
        let version = model.version;
        model.apply(&op, flavor);
        workload::run_op(&mut store, &path, &op, version, threads).unwrap_or_else(|e| panic!("op {i} {op:?}: {e}"));
        let s = store.as_ref().unwrap();
        let state = if model.lossy {
            // PQ reconstructions: the live store's answers are the reference
            // (its IDs are still checked against the model).
            let snap = workload::snapshot(s, pool);
            assert!(snap.keys().eq(model.live.keys()), "op {i}: live IDs differ from the model");
            snap
        } else {
            check_state(s, &model.live, pool).unwrap_or_else(|e| panic!("op {i} {op:?}: live store: {e}"));
            model.live.clone()
        };
        for seq in recorder.lock().unwrap().written.drain(..) {
            states.insert(seq, state.clone());
        }
    }
    recorder.lock().unwrap().label = "end".into();
    recorder.lock().unwrap().crash_point("after the last op".into());
    faults::set_hook(None);
    // The crash: the handle is never closed (closing would commit).
    std::mem::forget(store.take());

    let r = recorder.lock().unwrap();
    let points = &r.points;
    assert!(points.len() > 20, "{} crash points", points.len());
    if threads > 1 {
        assert!(r.helper_calls > 0, "no file call came from a worker thread: the threaded paths went unchecked");
    }
    let mut images_rng = Rng(seed ^ 0x5EED);
    let per_point = images.div_ceil(points.len()).max(1);
    let mut checked = 0;
    let mut in_flight_landed = 0;
    let mut detected = 0;
    for (p, point) in points.iter().enumerate() {
        for k in 0..per_point {
            let dir = tmp.path().join(format!("img-{p}-{k}"));
            // One image in five assumes a medium without power-safe
            // overwrite: damage must then be reported, never returned.
            let psow = images_rng.below(5) != 0;
            let how = build_image(point, &mut images_rng, &dir, psow);
            let sb = std::fs::read(dir.join("superblock")).ok();
            if sb.as_deref().and_then(newest_seq).is_some_and(|s| Some(s) == point.in_flight) {
                in_flight_landed += 1;
            }
            match check_image(point, &dir, &states, checked as u64, pool) {
                Ok(()) => {}
                Err(e) if !psow && e.contains("Corrupt") => detected += 1,
                Err(e) => panic!("crash point {p} ({}), image {k} ({how}): {e}\nkept in {}", point.label, dir.display()),
            }
            std::fs::remove_dir_all(&dir).unwrap();
            checked += 1;
        }
    }
    eprintln!(
        "powerloss {flavor:?}, {threads} threads: {ops} ops {kinds:?}, {} checkpoints, {} crash points, {checked} images checked \
         ({in_flight_landed} held the in-flight checkpoint, {detected} non-power-safe ones reported damage); calls {:?}, \
         {} from worker threads",
        states.len(),
        points.len(),
        r.calls,
        r.helper_calls
    );
}

#[test]
fn power_loss_plain_store() {
    run(Flavor::Plain, 1, 70, 700);
}

#[test]
fn power_loss_pq_store() {
    run(Flavor::Pq, 2, 70, 600);
}

#[test]
fn power_loss_pq_auto_training() {
    run(Flavor::PqAuto, 3, 60, 400);
}

#[test]
fn power_loss_drop_raw_store() {
    run(Flavor::DropRaw, 4, 70, 500);
}

/// IVF training (automatic and on request), list appends, upserts,
/// deletes and compaction under power loss.
#[test]
fn power_loss_ivf_store() {
    run(Flavor::Ivf, 7, 70, 500);
}

/// IVF with DROP_RAW: the in-place encoding for the calibration (never
/// committed), then the rewrite without raw vectors, under power loss.
#[test]
fn power_loss_ivf_drop_raw_store() {
    run(Flavor::IvfDropRaw, 8, 70, 500);
}

/// The threaded paths under power loss: put_batch split across two threads
/// (their writes seen by the hook), PQ training and encoding on two threads.
#[test]
fn power_loss_threaded_plain_store() {
    run_threads(Flavor::Plain, 5, 40, 150, 2);
}

#[test]
fn power_loss_threaded_pq_store() {
    run_threads(Flavor::Pq, 6, 40, 150, 2);
}
