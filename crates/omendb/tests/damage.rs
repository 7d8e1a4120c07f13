//! Damaged stores: every kind of damage gives OMEN_ERR_CORRUPT / VERSION /
//! IO (or, where the damage lies outside committed data, the exact data),
//! never a crash, a hang or a wrong vector.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::*;
use omendb::{ErrorKind, IdBuf, Options, Store};

const DIM: usize = 16;
const N: usize = 300;

/// IDs from 200 on are longer than a slot record's ID head, so they live
/// in the ids file; the shorter ones live in their slot records alone.
fn key(i: usize) -> String {
    if i >= 200 {
        format!("an-id-longer-than-the-slot-head-{i}")
    } else {
        format!("id-{i}")
    }
}

fn keys(range: std::ops::Range<usize>) -> IdBuf {
    IdBuf::new(range.map(key))
}

fn build(path: &Path) -> Vec<f32> {
    let v = Rng(11).vectors(N, DIM);
    let store = create(path, DIM as u32);
    put(&store, &keys(0..N), &v);
    store.delete_batch(&keys(0..10).batch().unwrap()).unwrap();
    put(&store, &keys(20..30), &v[..10 * DIM]); // upserts: slots 300.. replace 20..30
    store.close().unwrap();
    v
}

fn expected(v: &[f32], i: usize) -> Option<Vec<f32>> {
    match i {
        0..=9 => None,
        20..=29 => Some(v[(i - 20) * DIM..(i - 19) * DIM].to_vec()),
        _ => Some(v[i * DIM..(i + 1) * DIM].to_vec()),
    }
}

fn files(path: &Path) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("LOCK"))
        .collect();
    f.sort();
    f
}

/// The store's data file of this kind ("slots", "vectors", ...).
fn data_file(path: &Path, stem: &str) -> PathBuf {
    files(path).into_iter().find(|p| p.to_str().unwrap().contains(stem)).unwrap()
}

fn flip(path: &Path, at: u64, mask: u8) {
    let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ mask], at).unwrap();
}

fn acceptable(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::Corrupt | ErrorKind::Version | ErrorKind::Io | ErrorKind::NotFound)
}

/// Opens (or recovers) a damaged store and reads everything: each outcome
/// must be an acceptable error or exactly the data that was put.
fn check_outcome(path: &Path, v: &[f32], recover: bool, case: &str) {
    let opened = if recover {
        Store::recover(path, &Options::default()).map(|(s, _)| s)
    } else {
        Store::open(path, &Options::default())
    };
    let store = match opened {
        Ok(s) => s,
        Err(e) => {
            assert!(acceptable(e.kind()), "{case}: open gave {e}");
            return;
        }
    };
    for i in 0..N {
        let id = key(i);
        match (store.get(id.as_bytes()), expected(v, i)) {
            (Ok(got), Some(want)) => assert_eq!(got, want, "{case}: wrong vector for {id}"),
            (Ok(_), None) => panic!("{case}: deleted {id} came back"),
            (Err(e), Some(_)) => assert!(acceptable(e.kind()), "{case}: get {id} gave {e}"),
            (Err(e), None) => assert!(e.kind() == ErrorKind::NotFound || acceptable(e.kind()), "{case}: {e}"),
        }
    }
    if let Ok(hits) = store.search(&v[..DIM], 5, &Default::default()) {
        assert!(hits.len() <= 5, "{case}");
    }
    if recover {
        // recover verified everything it kept, so no get may find damage.
        // (A damaged newest superblock slot is indistinguishable from a torn
        // write and falls back to the previous checkpoint: IDs may be absent.)
        for i in 10..N {
            if let Err(e) = store.get(key(i).as_bytes()) {
                assert_eq!(e.kind(), ErrorKind::NotFound, "{case}: recover passed a damaged vector: {e}");
            }
        }
    }
}

#[test]
fn bit_flips_in_every_file() {
    let dir = TempDir::new("flips");
    let pristine = dir.path().join("pristine");
    let v = build(&pristine);
    let mut rng = Rng(99);
    let mut cases = 0;
    for file in files(&pristine) {
        let len = std::fs::metadata(&file).unwrap().len();
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        // The header, then random committed bytes.
        let mut positions: Vec<u64> = vec![0, 9, 13, 20, 30, 61];
        positions.extend((0..40).map(|_| rng.below(len)));
        for (n, at) in positions.into_iter().filter(|&a| a < len).enumerate() {
            let case = dir.path().join(format!("c{cases}"));
            copy_dir(&pristine, &case);
            flip(&case.join(&name), at, 1 << (n % 8));
            check_outcome(&case, &v, n % 2 == 1, &format!("flip {name}@{at}"));
            std::fs::remove_dir_all(&case).unwrap();
            cases += 1;
        }
    }
    assert!(cases >= 200, "{cases} cases");
}

#[test]
fn flipped_vector_is_never_returned() {
    let dir = TempDir::new("vecflip");
    let path = dir.store();
    let v = build(&path);
    let vectors = data_file(&path, "vectors");
    // Slot 100 holds id-100.
    flip(&vectors, 4096 + 100 * DIM as u64 * 4 + 5, 0x40);
    let store = Store::open(&path, &Options::default()).expect("open does not read every vector");
    assert_eq!(store.get(b"id-100").unwrap_err().kind(), ErrorKind::Corrupt);
    assert_eq!(store.get(b"id-101").unwrap(), expected(&v, 101).unwrap());
    let mut out = vec![1.0; 2 * DIM];
    let err = store.get_batch_into(&IdBuf::new(["id-101", "id-100"]).batch().unwrap(), &mut out, None);
    assert_eq!(err.unwrap_err().kind(), ErrorKind::Corrupt);
    let q = expected(&v, 100).unwrap();
    assert_eq!(store.search(&q, 3, &Default::default()).unwrap_err().kind(), ErrorKind::Corrupt);
    drop(store);
    assert_eq!(Store::recover(&path, &Options::default()).unwrap_err().kind(), ErrorKind::Corrupt);
}

/// A re-ranking search verifies every vector it re-ranks (API.md): a
/// damaged vector fails the search whether it would be a hit or rank
/// below the hits; a search that does not re-rank it is unaffected. Flat
/// PQ and IVF, every metric.
#[test]
fn rerank_verifies_every_vector_it_reads() {
    use omendb::{Metric, PqSettings, SearchParams};
    const N: usize = 600;
    let v = Rng(5).vectors(N, DIM);
    for (ivf, metric) in [(false, Metric::L2), (true, Metric::L2), (true, Metric::Cosine), (true, Metric::InnerProduct)] {
        let case = format!("ivf {ivf}, {metric:?}");
        let dir = TempDir::new("rerank-flip");
        let path = dir.store();
        let options = Options {
            metric,
            pq: Some(PqSettings { m: 4, bits: 4, train_size: 0 }),
            ivf_lists: ivf.then_some(0),
            ..Options::create(DIM as u32)
        };
        let store = Store::open(&path, &options).unwrap();
        put(&store, &IdBuf::new((0..N).map(|i| format!("id-{i}"))), &v);
        store.train_pq(&mut |_, _| {}).unwrap();
        // Every vector a candidate: all lists, all re-ranked.
        let all = SearchParams { nprobe: u32::MAX, rerank: N as u32, ..Default::default() };
        let far = &v[300 * DIM..301 * DIM];
        let before = store.search(far, 3, &all).unwrap();
        for hit in &before {
            assert_ne!(store.key_id(hit.key).unwrap(), b"id-100", "{case}: pick another query");
        }
        store.close().unwrap();
        // The lowest mantissa bit of slot 100's first value: its distances
        // barely move, so it stays where it ranked.
        flip(&data_file(&path, "vectors"), 4096 + 100 * DIM as u64 * 4, 0x01);
        let store = Store::open(&path, &Options::default()).unwrap();
        let err = store.search(far, 3, &all).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{case}: re-ranked below the hits: {err}");
        let err = store.search(&v[100 * DIM..101 * DIM], 3, &all).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{case}: the damaged vector is the best hit: {err}");
        // Without re-rank no vector is read: the codes answer as before.
        let codes_only = SearchParams { nprobe: u32::MAX, rerank: 0, ..Default::default() };
        assert!(store.search(far, 3, &codes_only).is_ok(), "{case}: no re-rank, no vector read");
    }
}

/// Training reads every live vector: a damaged one fails the training
/// (OMEN_ERR_CORRUPT naming its ID) and nothing is committed, flat PQ and
/// IVF, with and without a deleted slot. (At this size the training
/// sample holds every vector, so the sample's read finds it; the encoding
/// pass's own check is `store::pq`'s `verified_crcs_checks_every_vector`.)
#[test]
fn training_verifies_every_vector_it_encodes() {
    use omendb::PqSettings;
    const N: usize = 600;
    let v = Rng(6).vectors(N, DIM);
    for (ivf, delete) in [(false, false), (true, false), (false, true), (true, true)] {
        let case = format!("ivf {ivf}, a deleted slot {delete}");
        let dir = TempDir::new("train-flip");
        let path = dir.store();
        let options = Options { pq: Some(PqSettings { m: 4, bits: 4, train_size: 0 }), ivf_lists: ivf.then_some(0), ..Options::create(DIM as u32) };
        let store = Store::open(&path, &options).unwrap();
        put(&store, &IdBuf::new((0..N).map(|i| format!("id-{i}"))), &v);
        if delete {
            store.delete_batch(&IdBuf::new(["id-7"]).batch().unwrap()).unwrap();
        }
        store.close().unwrap();
        flip(&data_file(&path, "vectors"), 4096 + 400 * DIM as u64 * 4 + 5, 0x10);
        let store = Store::open(&path, &Options::default()).unwrap();
        let err = store.train_pq(&mut |_, _| {}).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{case}: {err}");
        assert!(err.to_string().contains("id-400"), "{case}: the message names the vector: {err}");
        // Nothing committed: the store is still untrained, then and after a reopen.
        assert!(!store.stats().unwrap().pq_trained, "{case}: training committed");
        store.close().unwrap();
        assert!(!Store::open(&path, &Options::default()).unwrap().stats().unwrap().pq_trained, "{case}: training committed");
    }
}

/// Rewrites bytes of the record of `slot` (from byte `at` of it) and
/// re-seals the slots checksum in both superblock slots, as a writer bug
/// (not a bit flip) would leave the store: only the record's consistency
/// with its ID can catch it.
fn forge_slot_record(path: &Path, slot: u64, at: u64, bytes: &[u8]) {
    let f = OpenOptions::new().read(true).write(true).open(data_file(path, "slots")).unwrap();
    f.write_all_at(bytes, 4096 + slot * 32 + at).unwrap();
    let sb = OpenOptions::new().read(true).write(true).open(path.join("superblock")).unwrap();
    for copy in 0..2u64 {
        let mut b = [0u8; 256];
        sb.read_exact_at(&mut b, copy * 4096).unwrap();
        let slot_count = u64::from_le_bytes(b[64..72].try_into().unwrap());
        let mut data = vec![0u8; slot_count as usize * 32];
        f.read_exact_at(&mut data, 4096).unwrap();
        b[96..100].copy_from_slice(&crc32c::crc32c(&data).to_le_bytes());
        let crc = crc32c::crc32c(&b[..252]);
        b[252..256].copy_from_slice(&crc.to_le_bytes());
        sb.write_all_at(&b, copy * 4096).unwrap();
    }
}

/// A slot record must agree with its ID: a long ID's head with the bytes
/// in the ids file; a short ID's padding and ids-file offset are zero.
#[test]
fn slot_record_id_head_disagreeing_with_its_id_is_damage() {
    let dir = TempDir::new("idhead");
    let pristine = dir.path().join("pristine");
    build(&pristine);
    // Slot 250 holds a long ID (in the ids file), slot 150 "id-150": a
    // byte of the long ID's head, of the short ID's padding, of its offset.
    for (name, slot, at) in [("long", 250, 16 + 3), ("padding", 150, 16 + 10), ("offset", 150, 0)] {
        let case = dir.path().join(name);
        copy_dir(&pristine, &case);
        forge_slot_record(&case, slot, at, b"?");
        let e = Store::open(&case, &Options::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{name}: {e}");
        assert!(e.message().contains(&format!("slot {slot}")), "{name}: {e}");
    }
    // The forging itself is sound: rewriting a byte as it was opens cleanly.
    let case = dir.path().join("same");
    copy_dir(&pristine, &case);
    let mut same = [0u8];
    std::fs::File::open(data_file(&case, "slots")).unwrap().read_exact_at(&mut same, 4096 + 250 * 32 + 19).unwrap();
    forge_slot_record(&case, 250, 19, &same);
    Store::open(&case, &Options::default()).unwrap();
}

#[test]
fn truncation_garbage_missing_files_and_versions() {
    let dir = TempDir::new("structure");
    let pristine = dir.path().join("pristine");
    let v = build(&pristine);
    for (i, file) in files(&pristine).into_iter().enumerate() {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let len = std::fs::metadata(&file).unwrap().len();
        for cut in [0, 100, 4096, len / 2, len - 1] {
            let case = dir.path().join(format!("t{i}-{cut}"));
            copy_dir(&pristine, &case);
            OpenOptions::new().write(true).open(case.join(&name)).unwrap().set_len(cut).unwrap();
            let e = Store::open(&case, &Options::default()).unwrap_err();
            assert!(acceptable(e.kind()), "truncate {name} to {cut}: {e}");
        }
        // Garbage past the committed end is an interrupted session's tail: dropped.
        let case = dir.path().join(format!("g{i}"));
        copy_dir(&pristine, &case);
        let f = OpenOptions::new().append(true).open(case.join(&name)).unwrap();
        f.write_all_at(&[0xAB; 5000], len).unwrap();
        if name == "superblock" {
            let e = Store::open(&case, &Options::default()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "superblock with garbage: {e}");
        } else {
            let (store, report) = Store::recover(&case, &Options::default()).unwrap();
            assert_eq!(report.discarded_bytes, 5000, "{name}");
            store.close().unwrap();
            check_outcome(&case, &v, false, &format!("garbage after {name}"));
            assert_eq!(std::fs::metadata(case.join(&name)).unwrap().len(), len, "tail trimmed");
        }
        let case = dir.path().join(format!("m{i}"));
        copy_dir(&pristine, &case);
        std::fs::remove_file(case.join(&name)).unwrap();
        let e = Store::open(&case, &Options::default()).unwrap_err();
        let want = if name == "superblock" { ErrorKind::NotFound } else { ErrorKind::Corrupt };
        assert_eq!(e.kind(), want, "missing {name}: {e}");
    }
}

#[test]
fn newer_format_versions_are_refused() {
    let dir = TempDir::new("version");
    let path = dir.store();
    build(&path);
    // A data file header claiming the next version (with a valid crc).
    let slots = data_file(&path, "slots");
    let f = OpenOptions::new().read(true).write(true).open(&slots).unwrap();
    let mut header = [0u8; 64];
    f.read_exact_at(&mut header, 0).unwrap();
    let next = u32::from_le_bytes(header[8..12].try_into().unwrap()) + 1;
    header[8..12].copy_from_slice(&next.to_le_bytes());
    let crc = crc32c::crc32c(&header[..60]);
    header[60..64].copy_from_slice(&crc.to_le_bytes());
    f.write_all_at(&header, 0).unwrap();
    assert_eq!(Store::open(&path, &Options::default()).unwrap_err().kind(), ErrorKind::Version);
    // A superblock slot claiming the next version.
    let sb = path.join("superblock");
    let f = OpenOptions::new().read(true).write(true).open(&sb).unwrap();
    for slot in 0..2u64 {
        let mut b = [0u8; 256];
        f.read_exact_at(&mut b, slot * 4096).unwrap();
        if b.iter().all(|&x| x == 0) {
            continue;
        }
        b[8..12].copy_from_slice(&next.to_le_bytes());
        let crc = crc32c::crc32c(&b[..252]);
        b[252..256].copy_from_slice(&crc.to_le_bytes());
        f.write_all_at(&b, slot * 4096).unwrap();
    }
    assert_eq!(Store::open(&path, &Options::default()).unwrap_err().kind(), ErrorKind::Version);
}

#[test]
fn torn_newest_superblock_falls_back_to_previous_checkpoint() {
    let dir = TempDir::new("torn");
    let path = dir.store();
    let sb_path = path.join("superblock");
    let store = create(&path, 4);
    put(&store, &ids(0..5), &[1.0; 20]);
    assert_eq!(store.checkpoint().unwrap(), 2);
    let at_two = std::fs::read(&sb_path).unwrap();
    put(&store, &ids(5..10), &[2.0; 20]);
    assert_eq!(store.checkpoint().unwrap(), 3);
    std::mem::forget(store); // crash without close
    // A crash inside checkpoint 3's first superblock write: slot 1 torn,
    // slot 0 still holds checkpoint 2 (the mirror was not written yet).
    std::fs::write(&sb_path, &at_two).unwrap();
    let mut torn = std::fs::read(path.join("superblock")).unwrap();
    torn[4096..4096 + 256].copy_from_slice(&vec![0x5A; 256]);
    std::fs::write(&sb_path, &torn).unwrap();
    let (store, report) = Store::recover(&path, &Options { read_only: true, ..Options::default() }).unwrap();
    assert_eq!(report.checkpoint_seq, 2);
    assert_eq!(store.stats().unwrap().live_vectors, 5);
    assert_eq!(store.get(b"id-4").unwrap(), vec![1.0; 4]);
}

/// A completed checkpoint is mirrored in both superblock slots: damage to
/// either one loses nothing; damage to both is OMEN_ERR_CORRUPT, never a
/// silent fall-back to an older checkpoint.
#[test]
fn damaged_commit_record_is_recovered_from_its_mirror() {
    let dir = TempDir::new("mirror");
    let path = dir.store();
    let store = create(&path, 4);
    put(&store, &ids(0..5), &[1.0; 20]);
    store.checkpoint().unwrap();
    put(&store, &ids(5..10), &[2.0; 20]);
    assert_eq!(store.checkpoint().unwrap(), 3);
    store.close().unwrap();
    let sb_path = path.join("superblock");
    let pristine = std::fs::read(&sb_path).unwrap();
    for slot in [0usize, 1] {
        let mut damaged = pristine.clone();
        damaged[slot * 4096 + 30] ^= 0x08;
        std::fs::write(&sb_path, &damaged).unwrap();
        let store = Store::open(&path, &Options { read_only: true, ..Options::default() }).unwrap();
        assert_eq!(store.checkpoint_seq(), 3, "slot {slot} damaged");
        assert_eq!(store.get(b"id-9").unwrap(), vec![2.0; 4]);
    }
    let mut both = pristine.clone();
    both[30] ^= 0x08;
    both[4096 + 30] ^= 0x08;
    std::fs::write(&sb_path, &both).unwrap();
    assert_eq!(Store::open(&path, &Options::default()).unwrap_err().kind(), ErrorKind::Corrupt);
}

