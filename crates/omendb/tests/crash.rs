//! Crash test: a child process runs a deterministic loop of puts, upserts,
//! deletes, checkpoints, compactions and PQ training (and, on a store with
//! an IVF index, calibrations on the host's queries) and is killed with SIGKILL at a
//! random moment. The parent then reopens the store and checks that it holds
//! exactly the state of a checkpoint at least as new as the last one the
//! child saw return (the one in flight may also have landed), bit for bit,
//! by replaying the same operations on an in-memory model.
//!
//! OMENDB_CRASH_ROUNDS sets the number of rounds (default 40).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Rng, TempDir};
use omendb::{IdBuf, Options, Store};

const DIM: usize = 8;
const ID_POOL: u64 = 400;
const CHILD_ENV: &str = "OMENDB_CRASH_CHILD";

fn vector(id: u64, version: u64) -> Vec<f32> {
    (0..DIM).map(|d| (id * 1000 + version) as f32 + d as f32 / 16.0).collect()
}

/// One step of the workload, drawn from the round's RNG.
enum Op {
    Put(Vec<u64>),
    Delete(Vec<u64>),
    Checkpoint,
    Compact,
    Train,
    /// `Store::calibrate` on a few queries (seeded): on an IVF store only.
    Calibrate(u64),
}

fn next_op(rng: &mut Rng, ivf: bool) -> Op {
    let roll = rng.below(100);
    let batch = |rng: &mut Rng, max: u64| (0..1 + rng.below(max)).map(|_| rng.below(ID_POOL)).collect();
    match roll {
        0..=54 => Op::Put(batch(rng, 40)),
        55..=74 => Op::Delete(batch(rng, 10)),
        75 if ivf => Op::Calibrate(rng.below(1000)),
        75..=95 => Op::Checkpoint,
        96..=97 => Op::Train,
        _ => Op::Compact,
    }
}

/// The in-memory model: id -> version, plus the checkpoint bookkeeping that
/// mirrors the store's (a checkpoint with nothing to commit keeps its number).
struct Model {
    live: BTreeMap<u64, u64>,
    version: u64,
    seq: u64,
    dirty: bool,
    /// A training has committed (so a calibration can).
    trained: bool,
}

impl Model {
    /// Applies one op; returns true when it completed a checkpoint.
    fn apply(&mut self, op: &Op, sync_writes: bool) -> bool {
        match op {
            Op::Put(ids) => {
                for &id in ids {
                    self.version += 1;
                    self.live.insert(id, self.version);
                }
                self.dirty = true;
            }
            Op::Delete(ids) => {
                for id in ids {
                    self.dirty |= self.live.remove(id).is_some();
                }
            }
            Op::Checkpoint => {}
            // Training commits (like compaction) unless there is nothing to train on.
            Op::Train if self.live.is_empty() => return false,
            // A calibration commits once there is an index and more live
            // vectors than the neighbours it measures.
            Op::Calibrate(_) if !self.trained || self.live.len() <= 10 => return false,
            Op::Train | Op::Compact | Op::Calibrate(_) => {
                self.trained |= matches!(op, Op::Train);
                self.seq += 1;
                self.dirty = false;
                return true;
            }
        }
        let commit = matches!(op, Op::Checkpoint) || (sync_writes && matches!(op, Op::Put(_) | Op::Delete(_)));
        if commit && self.dirty {
            self.seq += 1;
            self.dirty = false;
            return true;
        }
        false
    }
}

fn id_batch(ids: &[u64]) -> IdBuf {
    IdBuf::new(ids.iter().map(|&i| common::workload::key(i)))
}

fn run_op(store: &Store, op: &Op, model_version: &mut u64) {
    match op {
        Op::Put(ids) => {
            let mut values = Vec::with_capacity(ids.len() * DIM);
            for &id in ids {
                *model_version += 1;
                values.extend(vector(id, *model_version));
            }
            store.put_batch(&id_batch(ids).batch().unwrap(), &values).unwrap();
        }
        Op::Delete(ids) => {
            store.delete_batch(&id_batch(ids).batch().unwrap()).unwrap();
        }
        Op::Checkpoint => {
            store.checkpoint().unwrap();
        }
        Op::Compact => store.compact().unwrap(),
        Op::Train => {
            if store.stats().unwrap().live_vectors > 0 {
                store.train_pq(&mut |_, _| {}).unwrap();
            }
        }
        Op::Calibrate(seed) => {
            let stats = store.stats().unwrap();
            if stats.ivf_lists > 0 && stats.live_vectors > 10 {
                store.calibrate(&common::workload::calibration_queries(*seed), &mut |_, _| {}).unwrap();
            }
        }
    }
}

/// The store has PQ (trained by the Train op), so training and the
/// encoding of later puts are crash-tested too.
fn options(sync_writes: bool, ivf: bool) -> Options {
    let pq = omendb::PqSettings { m: 4, bits: if ivf { 4 } else { 8 }, train_size: 0 };
    Options { sync_writes, pq: Some(pq), ivf_lists: ivf.then_some(0), ..Options::create(DIM as u32) }
}

/// The child: runs ops forever, printing the sequence number after every
/// completed checkpoint. `version` continues from where the model left it.
#[test]
fn crash_child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let parts: Vec<&str> = spec.split(',').collect();
    let (path, seed, version, sync, ivf) =
        (parts[0], parts[1].parse().unwrap(), parts[2].parse().unwrap(), parts[3] == "1", parts[4] == "1");
    let store = Store::open(path, &options(sync, ivf)).unwrap();
    let mut rng = Rng(seed);
    let mut version: u64 = version;
    let mut out = std::io::stdout();
    writeln!(out, "OPEN {}", store.checkpoint_seq()).unwrap();
    loop {
        let op = next_op(&mut rng, ivf);
        run_op(&store, &op, &mut version);
        writeln!(out, "SEQ {}", store.checkpoint_seq()).unwrap();
        out.flush().unwrap();
    }
}

fn verify(path: &Path, model: &Model) {
    let (store, report) = Store::recover(path, &Options::default()).expect("reopen after crash");
    assert_eq!(report.checkpoint_seq, model.seq);
    let stats = store.stats().unwrap();
    assert_eq!(stats.live_vectors, model.live.len() as u64, "live count at seq {}", model.seq);
    assert_eq!(stats.index_damage, None, "the index at seq {}: {:?}", model.seq, store.index_damage());
    for id in 0..ID_POOL {
        let got = store.get(common::workload::key(id).as_bytes());
        match model.live.get(&id) {
            Some(&version) => assert_eq!(got.unwrap(), vector(id, version), "key-{id} at seq {}", model.seq),
            None => assert!(got.is_err(), "key-{id} should be absent at seq {}", model.seq),
        }
    }
    // PQ search (when trained) must agree with the model too.
    if let Some((&id, &version)) = model.live.iter().next() {
        // rerank over every live vector: each must have a code, and re-rank is exact.
        // (Every IVF list.)
        let params = omendb::SearchParams { rerank: ID_POOL as u32, nprobe: u32::MAX, ..Default::default() };
        let hits = store.search(&vector(id, version), 1, &params).unwrap();
        assert_eq!(hits[0].distance, 0.0, "seq {}", model.seq);
    }
    store.close().unwrap();
}

#[test]
fn kill9_at_random_moments_loses_nothing_checkpointed() {
    kill9_rounds(false, 40);
}

/// The same on a store with an IVF index, whose workload also calibrates.
#[test]
fn kill9_at_random_moments_loses_nothing_checkpointed_with_an_index() {
    kill9_rounds(true, 20);
}

/// `default_rounds` rounds (`OMENDB_CRASH_ROUNDS` overrides) of a child
/// killed while it works, each followed by the check.
fn kill9_rounds(ivf: bool, default_rounds: u64) {
    let rounds: u64 = std::env::var("OMENDB_CRASH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default_rounds);
    let dir = TempDir::new(if ivf { "crash-ivf" } else { "crash" });
    let path = dir.store();
    let exe = std::env::current_exe().unwrap();
    let mut model = Model { live: BTreeMap::new(), version: 0, seq: 1, dirty: false, trained: false };
    let mut calibrated = 0;
    let mut timing = Rng(0xC0FFEE);
    let mut landed_in_flight = 0;
    for round in 0..rounds {
        let sync = round % 4 == 3;
        let seed = 1000 + round;
        // The child's stderr goes to a file, so that a child that dies
        // before it works (it failed to open the store?) says why.
        let stderr_path = path.with_file_name(format!("child-{round}.stderr"));
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child_entry", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{},{seed},{},{},{}", path.display(), model.version, sync as u8, ivf as u8))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(seq) = line.strip_prefix("SEQ ").or_else(|| line.strip_prefix("OPEN ")) {
                    let _ = tx.send(seq.parse::<u64>().unwrap());
                }
            }
        });
        // Let it open and work for a while, then kill it mid-flight.
        if let Err(e) = rx.recv_timeout(Duration::from_secs(20)) {
            let _ = child.kill();
            let _ = child.wait();
            let said = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("round {round}: the child did not open the store ({e:?}); its stderr:\n{said}");
        }
        std::thread::sleep(Duration::from_millis(5 + timing.below(200)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let _ = std::fs::remove_file(&stderr_path);
        let last_seen = rx.try_iter().last().unwrap_or(model.seq);

        // Replay the child's ops on the model up to the checkpoint on disk.
        let on_disk = Store::open(&path, &Options { read_only: true, ..Options::default() })
            .unwrap()
            .checkpoint_seq();
        assert!(on_disk >= last_seen, "round {round}: store at seq {on_disk}, child saw {last_seen} return");
        let mut rng = Rng(seed);
        let mut replay = Model { live: model.live.clone(), ..model };
        let mut best = if replay.seq == on_disk { Some((replay.live.clone(), replay.version, replay.trained)) } else { None };
        let mut steps = 0;
        while replay.seq < on_disk {
            let op = next_op(&mut rng, ivf);
            let committed = replay.apply(&op, sync);
            calibrated += (committed && matches!(op, Op::Calibrate(_))) as usize;
            steps += 1;
            assert!(steps < 1_000_000, "round {round}: model never reached seq {on_disk}");
            if replay.seq == on_disk {
                best = Some((replay.live.clone(), replay.version, replay.trained));
            }
        }
        let (live, _, trained) = best.expect("model reaches the on-disk checkpoint");
        if on_disk > last_seen {
            landed_in_flight += 1;
        }
        // Later children draw versions from a fresh range, so no (id,
        // version) pair written after the checkpoint is ever reused.
        model = Model { live, version: replay.version + 1_000_000, seq: on_disk, dirty: false, trained };
        verify(&path, &Model { live: model.live.clone(), ..model });
    }
    eprintln!(
        "{rounds} kill -9 rounds passed (final seq {}); {landed_in_flight} recovered a checkpoint whose call had not returned; \
         {calibrated} calibrations committed",
        model.seq
    );
    if ivf {
        assert!(calibrated > 0, "no calibration was committed: the workload did not test them");
    }
}
