//! A seeded workload over a small ID pool (puts, upserts, deletes,
//! checkpoints, compactions, PQ training, IVF calibration, reopening) with an in-memory model
//! of what the store must hold, shared by the power-loss, fault-injection
//! and concurrency tests.

use std::collections::BTreeMap;
use std::path::Path;

use super::Rng;
use omendb::{ErrorKind, IdBuf, Options, PqSettings, Store};

pub const DIM: usize = 8;

/// Rows of a put that `put_batch` splits across two threads: each part gets
/// at least two 256 KiB blocks of rows (`RowBlocks::check_and_write` in
/// src/store/write.rs), and DIM rows are 32 bytes, so 8192 rows a block.
/// Above 64 rows PQ encoding splits across threads too.
pub const BULK: u64 = 4 * 8192;

/// Every vector ever put is distinct: id and version are encoded in it.
pub fn vector(id: u64, version: u64) -> Vec<f32> {
    (0..DIM).map(|d| (id * 1000 + version) as f32 + d as f32 / 16.0).collect()
}

/// Every third ID is longer than a slot record's ID head (16 bytes), so
/// both homes of an ID (the record alone, or the ids file) are exercised.
pub fn key(id: u64) -> String {
    if id.is_multiple_of(3) {
        format!("key-{id}-longer-than-a-slot-head")
    } else {
        format!("key-{id}")
    }
}

/// Four queries for `Store::calibrate` (seeded): vectors of IDs from
/// `seed`, of a version no put writes.
pub fn calibration_queries(seed: u64) -> Vec<f32> {
    (0..4).flat_map(|i| vector(seed + i, 7)).collect()
}

pub fn id_batch(ids: &[u64]) -> IdBuf {
    IdBuf::new(ids.iter().map(|&i| key(i)))
}

#[derive(Debug, Clone)]
pub enum Op {
    Put(Vec<u64>),
    /// A put of a range of IDs (a big batch, printed short).
    PutRange(std::ops::Range<u64>),
    Delete(Vec<u64>),
    Checkpoint,
    Compact,
    Train,
    /// Calibrate the IVF index on a few queries (`Store::calibrate`): the
    /// seed of the queries.
    Calibrate(u64),
    /// Close (a checkpoint) and open again, with or without SYNC_WRITES.
    Reopen { sync_writes: bool },
}

/// The kind of store a workload runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Plain,
    /// PQ trained on request (raw vectors kept); puts after training are encoded.
    Pq,
    /// PQ with automatic training at 40 vectors.
    PqAuto,
    /// OMEN_OPEN_DROP_RAW: training rewrites the store without raw vectors.
    DropRaw,
    /// PQ with an IVF index of up to 4 lists, trained automatically at 40
    /// vectors (and on request): puts append to the lists, deletes and
    /// upserts leave them, compaction rebuilds them.
    Ivf,
    /// An IVF index with OMEN_OPEN_DROP_RAW: training encodes in place to
    /// calibrate, then rewrites the store without raw vectors.
    IvfDropRaw,
}

impl Flavor {
    pub fn options(self) -> Options {
        self.options_threads(1)
    }

    /// With `threads` worker threads for puts, PQ training and encoding.
    pub fn options_threads(self, threads: u32) -> Options {
        let pq = |train_size| Some(PqSettings { m: 4, bits: 4, train_size });
        let base = Options { threads, ..Options::create(DIM as u32) };
        match self {
            Flavor::Plain => base,
            Flavor::Pq => Options { pq: pq(0), ..base },
            Flavor::PqAuto => Options { pq: pq(40), ..base },
            Flavor::DropRaw => Options { pq: pq(0), drop_raw: true, ..base },
            Flavor::Ivf => Options { pq: pq(40), ivf_lists: Some(4), ..base },
            Flavor::IvfDropRaw => Options { pq: pq(0), drop_raw: true, ivf_lists: Some(4), ..base },
        }
    }

    /// Training drops the raw vectors.
    pub fn drops_raw(self) -> bool {
        matches!(self, Flavor::DropRaw | Flavor::IvfDropRaw)
    }
}

pub fn next_op(rng: &mut Rng, flavor: Flavor, pool: u64) -> Op {
    let batch = |rng: &mut Rng, max: u64| (0..1 + rng.below(max)).map(|_| rng.below(pool)).collect();
    match rng.below(100) {
        0..=44 => Op::Put(batch(rng, 24)),
        45..=62 => Op::Delete(batch(rng, 8)),
        63..=84 => Op::Checkpoint,
        85..=89 => Op::Compact,
        90..=91 if matches!(flavor, Flavor::Ivf | Flavor::IvfDropRaw) => Op::Calibrate(rng.below(1000)),
        90..=94 if flavor != Flavor::Plain => Op::Train,
        90..=94 => Op::Checkpoint,
        _ => Op::Reopen { sync_writes: rng.below(3) == 0 },
    }
}

/// What the store must hold: id -> vector.
pub type State = BTreeMap<u64, Vec<f32>>;

/// The model: the live vectors, and the version counter that makes each
/// put distinct.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub live: State,
    pub version: u64,
    /// A DROP_RAW store has been trained: get gives PQ reconstructions, which
    /// the model cannot predict; callers snapshot the store instead.
    pub lossy: bool,
}

impl Model {
    /// The model after `op` (which the store is about to run).
    pub fn apply(&mut self, op: &Op, flavor: Flavor) {
        match op {
            Op::Put(ids) => self.put(ids.iter().copied()),
            Op::PutRange(ids) => self.put(ids.clone()),
            Op::Delete(ids) => {
                for id in ids {
                    self.live.remove(id);
                }
            }
            Op::Train if flavor.drops_raw() && !self.live.is_empty() => self.lossy = true,
            _ => {}
        }
    }

    fn put(&mut self, ids: impl Iterator<Item = u64>) {
        for id in ids {
            self.version += 1;
            self.live.insert(id, vector(id, self.version));
        }
    }
}

/// Runs `op` on the store (which may be replaced by a reopen, with
/// `threads` worker threads). `version` is the model's counter before the op.
pub fn run_op(store: &mut Option<Store>, path: &Path, op: &Op, version: u64, threads: u32) -> omendb::Result<()> {
    let s = store.as_ref().expect("store open");
    let put = |ids: &[u64]| {
        let mut values = Vec::with_capacity(ids.len() * DIM);
        for (i, &id) in ids.iter().enumerate() {
            values.extend(vector(id, version + 1 + i as u64));
        }
        s.put_batch(&id_batch(ids).batch().unwrap(), &values)
    };
    match op {
        Op::Put(ids) => put(ids),
        Op::PutRange(ids) => put(&ids.clone().collect::<Vec<_>>()),
        Op::Delete(ids) => s.delete_batch(&id_batch(ids).batch().unwrap()).map(|_| ()),
        Op::Checkpoint => s.checkpoint().map(|_| ()),
        Op::Compact => s.compact(),
        Op::Train => match s.train_pq(&mut |_, _| {}) {
            Err(e) if e.kind() == ErrorKind::InvalidArgument => Ok(()), // nothing to train on, or raw dropped
            r => r,
        },
        Op::Calibrate(seed) => {
            match s.calibrate(&calibration_queries(*seed), &mut |_, _| {}) {
                // Not trained, too few vectors, or the raw vectors dropped.
                Err(e) if e.kind() == ErrorKind::InvalidArgument => Ok(()),
                r => r.map(|_| ()),
            }
        }
        Op::Reopen { sync_writes } => {
            let closed = store.take().expect("store open").close();
            let options = Options { sync_writes: *sync_writes, threads, ..Options::default() };
            *store = Some(Store::open(path, &options)?);
            closed
        }
    }
}

/// Everything the store holds for the pool's IDs.
pub fn snapshot(store: &Store, pool: u64) -> State {
    (0..pool).filter_map(|id| store.get(key(id).as_bytes()).ok().map(|v| (id, v))).collect()
}

/// Checks that `store` holds exactly `want` (bit for bit) and nothing else.
pub fn check_state(store: &Store, want: &State, pool: u64) -> Result<(), String> {
    let stats = store.stats().map_err(|e| format!("stats: {e}"))?;
    if stats.live_vectors != want.len() as u64 {
        return Err(format!("{} live vectors, expected {}", stats.live_vectors, want.len()));
    }
    // What was committed opens whole, the index included.
    if let Some(kind) = stats.index_damage {
        return Err(format!("the index is reported damaged ({kind:?}): {:?}", store.index_damage()));
    }
    for id in 0..pool {
        match (store.get(key(id).as_bytes()), want.get(&id)) {
            (Ok(got), Some(v)) => {
                if got.iter().map(|x| x.to_bits()).ne(v.iter().map(|x| x.to_bits())) {
                    return Err(format!("{}: got {got:?}, expected {v:?}", key(id)));
                }
            }
            (Ok(got), None) => return Err(format!("{} should be absent, got {got:?}", key(id))),
            (Err(e), Some(_)) => return Err(format!("{}: {e}", key(id))),
            (Err(e), None) if e.kind() == ErrorKind::NotFound => {}
            (Err(e), None) => return Err(format!("{}: {e}", key(id))),
        }
    }
    Ok(())
}

/// Searches for one live vector: it must be found (exact re-rank over the
/// whole pool where raw vectors are kept), and every hit must name a live ID.
pub fn check_search(store: &Store, want: &State, pool: u64) -> Result<(), String> {
    let Some((&id, v)) = want.iter().next() else { return Ok(()) };
    // Every IVF list, so that the check is exact there too.
    let params = omendb::SearchParams { rerank: pool as u32, nprobe: u32::MAX, ..Default::default() };
    let hits = store.search(v, 3, &params).map_err(|e| format!("search: {e}"))?;
    if hits.is_empty() || hits.len() > 3 {
        return Err(format!("search gave {} hits", hits.len()));
    }
    for hit in &hits {
        let id = store.key_id(hit.key).map_err(|e| format!("key_id: {e}"))?;
        let id = String::from_utf8(id).unwrap();
        if !want.keys().any(|&i| key(i) == id) {
            return Err(format!("search hit {id} is not live"));
        }
    }
    if store.stats().unwrap().raw_kept && hits[0].distance != 0.0 {
        return Err(format!("search for {} found distance {}", key(id), hits[0].distance));
    }
    Ok(())
}
