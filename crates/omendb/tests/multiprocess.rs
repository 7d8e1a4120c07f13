//! A second process opens the store read-only, again and again, while a
//! writer process works on it (puts, upserts, deletes, checkpoints,
//! compactions, PQ training). Every open must succeed (a read-only open
//! that races a compaction or a retraining, which delete the files of the
//! checkpoint it started from, retries from the new superblock inside
//! `Store::open`), and each opened store must hold exactly the state of the
//! checkpoint it reports, which the reader computes by replaying the
//! writer's seeded operations. One read-only handle is also kept open across
//! the whole run: it keeps reading its checkpoint while files are replaced.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::workload::{self, check_search, check_state, next_op, Flavor, Model, Op, State};
use common::{Rng, TempDir};
use omendb::{Options, Store};

const POOL: u64 = 200;
const OPS: usize = 500;
const SEED: u64 = 77;
const CHILD_ENV: &str = "OMENDB_WRITER_CHILD";

fn op_at(rng: &mut Rng, i: usize) -> Op {
    match i {
        _ if i % 12 == 11 => Op::Compact,
        20 | 150 | 300 => Op::Train,
        _ => match next_op(rng, Flavor::Pq, POOL) {
            Op::Reopen { .. } | Op::Train => Op::Checkpoint,
            op => op,
        },
    }
}

/// The content of every checkpoint the writer makes, by replaying its ops
/// (a checkpoint with nothing new keeps its number; compaction and training
/// always commit).
fn checkpoints() -> BTreeMap<u64, State> {
    let mut rng = Rng(SEED);
    let mut model = Model::default();
    let (mut seq, mut dirty) = (1u64, false);
    let mut states = BTreeMap::from([(1, State::new())]);
    for i in 0..OPS {
        let op = op_at(&mut rng, i);
        match &op {
            Op::Put(_) => dirty = true,
            Op::Delete(ids) => dirty |= ids.iter().any(|id| model.live.contains_key(id)),
            _ => {}
        }
        model.apply(&op, Flavor::Pq);
        let commits = match op {
            Op::Checkpoint => dirty,
            Op::Compact => true,
            Op::Train => !model.live.is_empty(),
            _ => false,
        };
        if commits {
            seq += 1;
            dirty = false;
            states.insert(seq, model.live.clone());
        }
    }
    if dirty {
        states.insert(seq + 1, model.live.clone()); // the writer's final checkpoint
    }
    states
}

#[test]
fn writer_child_entry() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let path = std::path::PathBuf::from(path);
    let mut store = Some(Store::open(&path, &Flavor::Pq.options()).unwrap());
    let mut rng = Rng(SEED);
    let mut model = Model::default();
    for i in 0..OPS {
        let op = op_at(&mut rng, i);
        let version = model.version;
        model.apply(&op, Flavor::Pq);
        workload::run_op(&mut store, &path, &op, version, 1).unwrap();
        // Paced, so the reader overlaps many commits (tmpfs is fast).
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    let s = store.take().unwrap();
    s.checkpoint().unwrap();
    println!("WRITER-DONE {}", s.checkpoint_seq());
    std::mem::forget(s); // no trimming at close: readers may still look
}

#[test]
fn read_only_process_beside_a_writer() {
    let states = checkpoints();
    let tmp = TempDir::scratch("multiprocess");
    let path = tmp.store();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "writer_child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read_only = Options { read_only: true, ..Options::default() };
    let start = Instant::now();
    while !omendb::Store::exists(&path) {
        assert!(start.elapsed() < Duration::from_secs(30), "the writer never created the store");
        std::thread::sleep(Duration::from_millis(1));
    }
    let held = Store::open(&path, &read_only).expect("first read-only open");
    let held_seq = held.checkpoint_seq();
    let (mut opens, mut seqs) = (0u64, std::collections::BTreeSet::new());
    let mut deep = 0u64;
    loop {
        let done = child.try_wait().unwrap().is_some();
        let store = Store::open(&path, &read_only).unwrap_or_else(|e| panic!("read-only open {opens}: {e}"));
        let seq = store.checkpoint_seq();
        let want = states.get(&seq).unwrap_or_else(|| panic!("opened checkpoint {seq}, which the writer never made"));
        check_state(&store, want, POOL).unwrap_or_else(|e| panic!("checkpoint {seq}: {e}"));
        if deep.is_multiple_of(8) {
            check_search(&store, want, POOL).unwrap_or_else(|e| panic!("checkpoint {seq}: {e}"));
        }
        deep += 1;
        // The long-lived handle still reads its own checkpoint.
        check_state(&held, &states[&held_seq], POOL).unwrap_or_else(|e| panic!("held handle: {e}"));
        opens += 1;
        seqs.insert(seq);
        if done {
            break;
        }
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "writer failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let last: u64 = stdout.split("WRITER-DONE ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(last, *states.keys().last().unwrap(), "the replay and the writer disagree");
    eprintln!(
        "{opens} read-only opens beside the writer saw {} of its {} checkpoints; all exact",
        seqs.len(),
        states.len()
    );
    assert!(seqs.len() > 5, "the reader saw only {} checkpoints", seqs.len());
}
