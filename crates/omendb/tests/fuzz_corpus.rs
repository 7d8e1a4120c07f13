//! The fuzz targets (fuzz/src/targets.rs) as plain tests, for CI on the
//! stable toolchain: every input of the committed corpus (fuzz/corpus/),
//! seeds built from real stores of every kind, then a bounded, seeded
//! mutation fuzzer over them (not coverage-guided: that is what
//! `scripts/fuzz.sh` and cargo-fuzz are for).
//!
//! OMENDB_FUZZ_ITERS sets the number of mutated inputs per target (default
//! 1500 for open_store, half of them re-sealed, and 300 for ops). OMENDB_FUZZ_BLESS=1 writes the seeds
//! into fuzz/corpus/. A failing input is saved under target/fuzz-failures/.

mod common;

#[allow(dead_code)]
#[path = "../../../fuzz/src/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};

use common::workload::{self, Flavor};
use common::{Rng, TempDir};
use omendb::Store;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(corpus_dir(target)) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// Runs `f(input)`; on a panic saves the input and fails with its path.
fn run_saving(target: &str, input: &[u8], f: fn(&[u8])) {
    if std::panic::catch_unwind(|| f(input)).is_err() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-failures").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("crash-{:08x}", crc32c::crc32c(input)));
        std::fs::write(&path, input).unwrap();
        panic!("{target} failed on the input saved in {} (replay: cargo fuzz run {target} {0})", path.display());
    }
}

/// Real stores of every kind, encoded as open_store inputs.
fn store_seeds() -> Vec<Vec<u8>> {
    let tmp = TempDir::scratch("fuzz-seeds");
    let mut seeds = Vec::new();
    for (i, flavor) in [Flavor::Plain, Flavor::Pq, Flavor::DropRaw].into_iter().enumerate() {
        let path = tmp.path().join(format!("s{i}"));
        let mut store = Some(Store::open(&path, &flavor.options()).unwrap());
        let mut model = workload::Model::default();
        let ops = [
            workload::Op::Put((0..40).collect()),
            workload::Op::Delete(vec![1, 2, 3]),
            workload::Op::Put((10..20).collect()),
            workload::Op::Checkpoint,
            workload::Op::Train,
            workload::Op::Put((40..48).collect()),
            workload::Op::Delete(vec![44]),
        ];
        for op in &ops {
            let version = model.version;
            model.apply(op, flavor);
            workload::run_op(&mut store, &path, op, version, 1).unwrap();
        }
        store.take().unwrap().close().unwrap();
        for mode in 0..3 {
            seeds.push(targets::encode_store(&path, mode));
        }
        // Re-sealing: mutations of the superblock and headers reach the checks behind their checksums.
        seeds.push(targets::encode_store(&path, targets::RESEAL));
    }
    seeds
}

fn op_seeds() -> Vec<Vec<u8>> {
    let mut rng = Rng(0x0905);
    let mut seeds = vec![
        // put, delete, checkpoint, reopen, compact, train, search on each kind of store
        vec![0, 0, 7, 1, 2, 3, 4, 5, 6, 7, 2, 1, 3, 3, 4, 5, 6, 7, 2],
        vec![1, 0, 7, 1, 2, 3, 4, 5, 6, 7, 6, 0, 3, 9, 9, 9, 7, 9, 5, 7, 1],
        vec![2, 1, 7, 0, 1, 2, 3, 4, 5, 6, 1, 7, 7, 8, 9, 10, 11, 12, 13, 3, 7, 2],
        vec![3, 0, 7, 1, 2, 3, 4, 5, 6, 7, 6, 0, 3, 9, 9, 9, 4, 5, 7, 1],
        vec![7, 0, 7, 1, 2, 3, 4, 5, 6, 7, 6, 2, 1, 1, 4, 0, 2, 30, 31, 6, 5],
    ];
    // IVF stores (setup bit 3): 24 vectors, train, calibrate (a search byte
    // with its top bit set), search, compact, reopen, calibrate again.
    let ivf_ops: Vec<u8> = [0u8, 7]
        .into_iter()
        .chain(0..8)
        .chain([0, 7])
        .chain(8..16)
        .chain([0, 7])
        .chain(16..24)
        .chain([6, 7, 0x83, 7, 3, 5, 4, 7, 0x85, 2, 0, 4, 7, 5, 3])
        .collect();
    for setup in [9u8, 10, 11, 13] {
        seeds.push([setup].into_iter().chain(ivf_ops.iter().copied()).collect());
    }
    for _ in 0..11 {
        seeds.push((0..40).map(|_| rng.below(256) as u8).collect());
    }
    seeds
}

fn mutate(rng: &mut Rng, pool: &[Vec<u8>]) -> Vec<u8> {
    let mut input = pool[rng.below(pool.len() as u64) as usize].clone();
    for _ in 0..1 + rng.below(4) {
        let len = input.len() as u64;
        match rng.below(6) {
            0 | 1 if len > 0 => {
                let at = rng.below(len) as usize;
                input[at] ^= 1 << rng.below(8);
            }
            2 if len > 0 => {
                let at = rng.below(len) as usize;
                input[at] = [0, 0xFF, 1, 0x80][rng.below(4) as usize];
            }
            3 => input.truncate(rng.below(len + 1) as usize),
            4 => {
                let at = rng.below(len + 1) as usize;
                let bytes: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.below(256) as u8).collect();
                input.splice(at..at, bytes);
            }
            _ => {
                let other = &pool[rng.below(pool.len() as u64) as usize];
                let at = rng.below(other.len() as u64 + 1) as usize;
                input.truncate(rng.below(len + 1) as usize);
                input.extend_from_slice(&other[at..]);
            }
        }
    }
    input
}

/// Extreme values for superblock fields: zero, one, around the u32 and
/// file-offset limits, products that overflow u64 (x 8, x 32), u64::MAX.
const EXTREMES: [u64; 10] =
    [0, 1, u32::MAX as u64, 1 << 32, (1 << 58) + 1, 1 << 61, i64::MAX as u64 - 4095, 1 << 63, u64::MAX - 100, u64::MAX];

/// Re-sealing mode (every other open_store input): sets the mode's RESEAL
/// flag and, half the time, puts an extreme value in a field of a
/// superblock slot (an input from `encode_store` starts with the superblock
/// record: mode byte, name index 0, u16 length). Without re-sealing, the
/// slot checksum would turn every such change into a damaged slot.
fn reseal_mutation(rng: &mut Rng, input: &mut [u8]) {
    if input.is_empty() {
        return;
    }
    input[0] |= targets::RESEAL;
    let sb_len = if input.len() >= 4 && input[1] == 0 { u16::from_le_bytes([input[2], input[3]]) as usize } else { 0 };
    if rng.below(2) == 0 || sb_len < 256 {
        return;
    }
    // A slot, then a field among the checksummed bytes past magic and version (16..252).
    let slot = 4 + 4096 * rng.below((sb_len / 4096).max(1) as u64) as usize;
    let field = slot + 16 + 4 * rng.below((252 - 16) / 4) as usize;
    let value = EXTREMES[rng.below(EXTREMES.len() as u64) as usize];
    let width = if rng.below(2) == 0 { 8 } else { 4 };
    if field + width <= input.len() {
        input[field..field + width].copy_from_slice(&value.to_le_bytes()[..width]);
    }
}

fn fuzz(target: &'static str, f: fn(&[u8]), seeds: Vec<Vec<u8>>, default_iters: u64, seed: u64) {
    fuzz_with(target, f, seeds, default_iters, seed, None)
}

/// `fuzz`, with `extra` applied to every other mutated input.
fn fuzz_with(
    target: &'static str,
    f: fn(&[u8]),
    seeds: Vec<Vec<u8>>,
    default_iters: u64,
    seed: u64,
    extra: Option<fn(&mut Rng, &mut [u8])>,
) {
    omendb::storage::faults::set_hook(Some(Box::new(targets::SkipSyncs)));
    if std::env::var_os("OMENDB_FUZZ_BLESS").is_some() {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for s in &seeds {
            std::fs::write(dir.join(format!("seed-{:08x}", crc32c::crc32c(s))), s).unwrap();
        }
    }
    let mut pool = corpus(target);
    let committed = pool.len();
    pool.extend(seeds);
    for input in &pool {
        run_saving(target, input, f);
    }
    let iters: u64 = std::env::var("OMENDB_FUZZ_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(default_iters);
    let mut rng = Rng(seed);
    for i in 0..iters {
        let mut input = mutate(&mut rng, &pool);
        if let Some(extra) = extra.filter(|_| i % 2 == 1) {
            extra(&mut rng, &mut input);
        }
        run_saving(target, &input, f);
    }
    eprintln!("{target}: {committed} corpus inputs, {} seeds, {iters} mutated inputs", pool.len() - committed);
}

#[test]
fn fuzz_open_store() {
    fuzz_with("open_store", targets::open_store, store_seeds(), 1500, 1, Some(reseal_mutation));
}

#[test]
fn fuzz_ops() {
    fuzz("ops", targets::ops, op_seeds(), 300, 2);
}
