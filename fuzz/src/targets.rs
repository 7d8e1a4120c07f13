//! Fuzz targets, written against the public `omendb` API only, so the
//! same code runs under cargo-fuzz (fuzz/fuzz_targets/) and as a plain test
//! over the committed corpus (tests/fuzz_corpus.rs).
//!
//! - `open_store`: the input is a store directory's contents (see
//!   `decode_files`); opening, recovering or opening it read-only must give
//!   an acceptable error or a store whose every read gives a vector or an
//!   acceptable error: never a panic, a hang or OMEN_ERR_INTERNAL. In its
//!   re-sealing mode the checksums of the superblock, of the data-file
//!   headers and of the metadata areas the superblock names are recomputed
//!   after decoding, so mutated fields get past them to the checks behind.
//! - `ops`: the input is a sequence of operations (put, upsert, delete,
//!   checkpoint, reopen, compact, train, search) run against a store and an
//!   in-memory model; after every operation the store must hold exactly
//!   the model's vectors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use omendb::{ErrorKind, IdBuf, Options, PqSettings, SearchParams, Store};

/// Files an input can hold (a name index selects one).
pub const NAMES: &[&str] = &[
    "superblock",
    "vectors.0000000000000001",
    "slots.0000000000000001",
    "ids.0000000000000001",
    "tombs.0000000000000001",
    "codes.0000000000000001",
    "codebooks.0000000000000001",
    "vectors.0000000000000002",
    "slots.0000000000000002",
    "ids.0000000000000002",
    "tombs.0000000000000002",
    "codes.0000000000000002",
    "codebooks.0000000000000002",
    "superblock.tmp",
];

/// A scratch directory for this process and thread.
fn scratch(what: &str) -> PathBuf {
    // tmpfs when there is one: the targets never cut the real power.
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    let dir = base.join(format!(
        "omendb-fuzz-{what}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The mode byte's flag for re-sealing (`reseal`).
pub const RESEAL: u8 = 0x80;

/// Input format of `open_store`: one mode byte (its low 7 bits modulo 3:
/// 0 open, 1 recover, 2 read-only; `RESEAL` set: re-seal the files), then
/// records of (name index u8, length u16 LE, bytes); records for the same
/// name append. Returns the mode (0..3), whether to re-seal, and the files.
pub fn decode_files(data: &[u8]) -> (u8, bool, BTreeMap<&'static str, Vec<u8>>) {
    let mut files: BTreeMap<&'static str, Vec<u8>> = BTreeMap::new();
    let Some((&mode, mut rest)) = data.split_first() else { return (0, false, files) };
    while rest.len() >= 3 {
        let name = NAMES[rest[0] as usize % NAMES.len()];
        let len = (u16::from_le_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
        files.entry(name).or_default().extend_from_slice(&rest[3..3 + len]);
        rest = &rest[3 + len..];
    }
    ((mode & !RESEAL) % 3, mode & RESEAL != 0, files)
}

/// Recomputes every checksum a reader checks before it trusts the fields
/// they cover: each data file's header checksum, then in each superblock
/// page the checksums of the metadata areas it names (over the files as they
/// are, where they hold that many bytes) and the slot's own.
pub fn reseal(files: &mut BTreeMap<&'static str, Vec<u8>>) {
    use omendb::storage::format::{reseal_file_header, reseal_superblock_slot};
    const PAGE: usize = 4096;
    for (name, bytes) in files.iter_mut() {
        if !name.starts_with("superblock") {
            let header = bytes.len().min(PAGE);
            reseal_file_header(&mut bytes[..header]);
        }
    }
    for name in ["superblock", "superblock.tmp"] {
        let Some(mut sb) = files.remove(name) else { continue };
        let mut area = |kind: omendb::storage::format::FileKind, generation: u64, len: u64| {
            let data = files.get(kind.file_name(generation).as_str())?.get(PAGE..)?;
            Some(omendb::storage::checksum::crc32c(data.get(..usize::try_from(len).ok()?)?))
        };
        for page in sb.chunks_mut(PAGE) {
            reseal_superblock_slot(page, &mut area);
        }
        files.insert(name, sb);
    }
}

/// The input that `decode_files` turns back into the store in `dir`.
pub fn encode_store(dir: &Path, mode: u8) -> Vec<u8> {
    let mut out = vec![mode];
    for (i, name) in NAMES.iter().enumerate() {
        let Ok(bytes) = std::fs::read(dir.join(name)) else { continue };
        for chunk in bytes.chunks(u16::MAX as usize) {
            out.push(i as u8);
            out.extend_from_slice(&(chunk.len() as u16).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        if bytes.is_empty() {
            out.extend_from_slice(&[i as u8, 0, 0]);
        }
    }
    out
}

fn acceptable_open_error(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::Corrupt | ErrorKind::Version | ErrorKind::Io | ErrorKind::NotFound)
}

pub fn open_store(data: &[u8]) {
    let (mode, resealed, mut files) = decode_files(data);
    if resealed {
        reseal(&mut files);
    }
    let dir = scratch("open");
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let opened = match mode {
        0 => Store::open(&dir, &Options::default()),
        1 => Store::recover(&dir, &Options::default()).map(|(s, _)| s),
        _ => Store::open(&dir, &Options { read_only: true, ..Options::default() }),
    };
    let store = match opened {
        Ok(store) => store,
        Err(e) => {
            assert!(acceptable_open_error(e.kind()), "open gave {e}");
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
    };
    let read_ok = |r: &omendb::Result<()>| match r {
        Ok(()) => {}
        Err(e) => assert!(matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Corrupt), "read gave {e}"),
    };
    let stats = store.stats().expect("stats of an open store");
    let dim = store.dim();
    let mut found = 0;
    for i in 0..64u64 {
        let r = store.get(key(i).as_bytes());
        if let Ok(v) = &r {
            assert_eq!(v.len(), dim);
            found += 1;
        }
        read_ok(&r.map(|_| ()));
    }
    assert!(found <= stats.live_vectors, "{found} IDs found, {} live", stats.live_vectors);
    let query = vec![0.25f32; dim];
    for params in [SearchParams::default(), SearchParams { exact: true, ..Default::default() }, SearchParams { rerank: 8, ..Default::default() }] {
        match store.search(&query, 4, &params) {
            Ok(hits) => {
                assert!(hits.len() <= 4);
                for hit in hits {
                    let id = store.key_id(hit.key).expect("key of a hit");
                    read_ok(&store.get(&id).map(|_| ()));
                }
            }
            Err(e) => assert!(
                matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::InvalidArgument | ErrorKind::NotTrained),
                "search gave {e}"
            ),
        }
    }
    let ids = IdBuf::new((0..8u64).map(key));
    let mut out = vec![0f32; 8 * dim];
    read_ok(&store.get_batch_into(&ids.batch().unwrap(), &mut out, None));
    if mode != 2 {
        // A writable store takes a write and a checkpoint.
        let r = store.put_batch(&IdBuf::new(["fuzz"]).batch().unwrap(), &vec![1.0; dim]).and_then(|_| store.checkpoint().map(|_| ()));
        if let Err(e) = r {
            assert!(matches!(e.kind(), ErrorKind::Io | ErrorKind::Corrupt | ErrorKind::InvalidArgument), "write gave {e}");
        }
    }
    if let Err(e) = store.close() {
        assert!(matches!(e.kind(), ErrorKind::Io | ErrorKind::Corrupt), "close gave {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

const DIM: usize = 8;
const POOL: u8 = 32;

fn vector(id: u8, version: u32) -> Vec<f32> {
    (0..DIM).map(|d| (id as u32 * 10_000 + version) as f32 + d as f32 / 8.0).collect()
}

/// The IDs of tests/common/workload.rs (which builds the corpus seeds):
/// every third one longer than a slot record's ID head.
fn key(id: impl Into<u64>) -> String {
    let id = id.into();
    if id.is_multiple_of(3) {
        format!("key-{id}-longer-than-a-slot-head")
    } else {
        format!("key-{id}")
    }
}

/// Input format of `ops`: one byte picks the store (plain, PQ, automatic PQ
/// training, DROP_RAW; bit 2: SYNC_WRITES; bit 3: the PQ stores with an IVF
/// index), then each operation is a byte (modulo 8: put, put, delete,
/// checkpoint, reopen, compact, train, search) followed by its arguments.
/// A search's ID byte with its top bit set calibrates the IVF index on
/// that vector and a few near it instead.
pub fn ops(data: &[u8]) {
    let Some((&setup, mut rest)) = data.split_first() else { return };
    let pq = |train_size| Some(PqSettings { m: 4, bits: 4, train_size });
    let base = Options { threads: 1, sync_writes: setup & 4 != 0, ..Options::create(DIM as u32) };
    let options = match setup % 4 {
        0 => base,
        1 => Options { pq: pq(0), ..base },
        2 => Options { pq: pq(12), ..base },
        _ => Options { pq: pq(0), drop_raw: true, ..base },
    };
    let options = match options.pq {
        Some(_) if setup & 8 != 0 => Options { ivf_lists: Some(0), ..options },
        _ => options,
    };
    let dir = scratch("ops").join("store");
    let mut store = Some(Store::open(&dir, &options).expect("create"));
    let mut model: BTreeMap<u8, Vec<f32>> = BTreeMap::new();
    let mut version = 0u32;
    // A trained DROP_RAW store gives PQ reconstructions: only IDs are compared.
    let mut lossy = false;
    let next = |rest: &mut &[u8]| -> u8 {
        let (b, r) = rest.split_first().map(|(b, r)| (*b, r)).unwrap_or((0, &[]));
        *rest = r;
        b
    };
    for step in 0..64 {
        if rest.is_empty() {
            break;
        }
        let op = next(&mut rest) % 8;
        let s = store.as_ref().unwrap();
        match op {
            0 | 1 => {
                let n = next(&mut rest) % 8 + 1;
                let ids: Vec<u8> = (0..n).map(|_| next(&mut rest) % POOL).collect();
                let mut values = Vec::new();
                for &id in &ids {
                    version += 1;
                    values.extend(vector(id, version));
                    model.insert(id, vector(id, version));
                }
                s.put_batch(&IdBuf::new(ids.iter().map(|&i| key(i))).batch().unwrap(), &values).expect("put");
            }
            2 => {
                let n = next(&mut rest) % 4 + 1;
                let ids: Vec<u8> = (0..n).map(|_| next(&mut rest) % POOL).collect();
                let existed = ids.iter().collect::<std::collections::BTreeSet<_>>().into_iter().filter(|id| model.remove(id).is_some()).count();
                let deleted = s.delete_batch(&IdBuf::new(ids.iter().map(|&i| key(i))).batch().unwrap()).expect("delete");
                assert_eq!(deleted, existed as u64, "step {step}: deleted count");
            }
            3 => {
                s.checkpoint().expect("checkpoint");
            }
            4 => {
                store.take().unwrap().close().expect("close");
                store = Some(Store::open(&dir, &Options { threads: 1, ..Options::default() }).expect("reopen"));
            }
            5 => s.compact().expect("compact"),
            6 => match s.train_pq(&mut |_, _| {}) {
                Ok(()) => lossy |= options.drop_raw,
                Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidArgument, "step {step}: train: {e}"),
            },
            _ => {
                let byte = next(&mut rest);
                let id = byte % POOL;
                if byte & 0x80 != 0 {
                    // Queries about the vector (or the origin): a calibration commits or is refused whole.
                    let v = model.get(&id).cloned().unwrap_or_else(|| vec![0.0; DIM]);
                    let queries: Vec<f32> = (0..3).flat_map(|i| v.iter().map(move |x| x + i as f32 / 8.0)).collect();
                    let seq = s.checkpoint_seq();
                    match s.calibrate(&queries, &mut |_, _| {}) {
                        Ok(points) => {
                            assert!(!points.is_empty(), "step {step}: a calibration without points");
                            assert_eq!(s.stats().unwrap().calibration_queries, 3, "step {step}");
                        }
                        Err(e) => {
                            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "step {step}: calibrate: {e}");
                            assert_eq!(s.checkpoint_seq(), seq, "step {step}: a refused calibration committed");
                        }
                    }
                } else if let Some(v) = model.get(&id) {
                    // (Every IVF list.)
                    let params = SearchParams { rerank: POOL as u32, nprobe: u32::MAX, ..Default::default() };
                    let hits = s.search(v, 2, &params).expect("search");
                    assert!(!hits.is_empty(), "step {step}: search found nothing");
                    if s.stats().unwrap().raw_kept {
                        assert_eq!(hits[0].distance, 0.0, "step {step}: {} not found by search", key(id));
                    }
                }
            }
        }
        // Automatic training of a DROP_RAW store also drops the raw vectors.
        let s = store.as_ref().unwrap();
        lossy |= !s.stats().unwrap().raw_kept;
        assert_eq!(s.stats().unwrap().live_vectors, model.len() as u64, "step {step}: live count");
        for id in 0..POOL {
            match (s.get(key(id).as_bytes()), model.get(&id)) {
                (Ok(got), Some(want)) => {
                    assert!(lossy || got.iter().map(|x| x.to_bits()).eq(want.iter().map(|x| x.to_bits())), "step {step}: {} differs", key(id))
                }
                (Err(e), None) => assert_eq!(e.kind(), ErrorKind::NotFound, "step {step}: {e}"),
                (got, want) => panic!("step {step}: {}: store {got:?}, model {want:?}", key(id)),
            }
        }
    }
    store.take().unwrap().close().expect("close");
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}

/// The targets never cut the power: skip real syncs (page-cache speed).
pub struct SkipSyncs;

impl omendb::storage::faults::Hook for SkipSyncs {
    fn before(&mut self, _: &omendb::storage::faults::Call<'_>) -> std::io::Result<()> {
        Ok(())
    }
    fn after(&mut self, _: &omendb::storage::faults::Call<'_>, _: bool) {}
    fn skip_syncs(&self) -> bool {
        true
    }
}
