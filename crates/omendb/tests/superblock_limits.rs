//! Superblocks whose checksum is right (re-sealed) but whose counts and
//! lengths are absurd: every open mode must answer Corrupt, never overflow
//! (a panic in a debug build, a wrapped length in a release one).

mod common;

use std::path::Path;

use common::workload::{self, Flavor};
use common::TempDir;
use omendb::storage::format::{SlotState, Superblock};
use omendb::{ErrorKind, Options, Store};

const PAGE: usize = 4096;

/// A store of `flavor` with puts, deletes (tombstones), long IDs and, for
/// PQ, trained codebooks.
fn build(path: &Path, flavor: Flavor) {
    let mut store = Some(Store::open(path, &flavor.options()).unwrap());
    let mut model = workload::Model::default();
    for op in [workload::Op::Put((0..40).collect()), workload::Op::Delete(vec![1, 2, 3]), workload::Op::Train] {
        let version = model.version;
        model.apply(&op, flavor);
        workload::run_op(&mut store, path, &op, version, 1).unwrap();
    }
    store.take().unwrap().close().unwrap();
}

/// Rewrites the newest superblock slot through `edit` (encode computes the
/// checksum anew) and empties the other, so no older checkpoint remains.
fn reseal(path: &Path, edit: impl Fn(&mut Superblock)) {
    let file = path.join("superblock");
    let mut bytes = std::fs::read(&file).unwrap();
    let (newest, mut sb) = (0..2)
        .filter_map(|i| match Superblock::decode(&bytes[i * PAGE..(i + 1) * PAGE]) {
            SlotState::Valid(sb) => Some((i, sb)),
            _ => None,
        })
        .max_by_key(|(_, sb)| sb.seq)
        .unwrap();
    edit(&mut sb);
    bytes.fill(0);
    let encoded = sb.encode();
    bytes[newest * PAGE..newest * PAGE + encoded.len()].copy_from_slice(&encoded);
    std::fs::write(&file, &bytes).unwrap();
}

fn assert_corrupt(flavor: Flavor, what: &str, edit: impl Fn(&mut Superblock)) {
    let tmp = TempDir::new("sb-limits");
    let path = tmp.store();
    build(&path, flavor);
    reseal(&path, edit);
    let read_only = Options { read_only: true, ..Options::default() };
    let opened = [
        ("open", Store::open(&path, &Options::default())),
        ("read-only open", Store::open(&path, &read_only)),
        ("recover", Store::recover(&path, &Options::default()).map(|(s, _)| s)),
    ];
    for (mode, opened) in opened {
        match opened {
            Ok(_) => panic!("{flavor:?}, {what}: {mode} succeeded"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt, "{flavor:?}, {what}: {mode}: {e}"),
        }
    }
}

#[test]
fn huge_tomb_count_is_corrupt() {
    // tomb_count * 8 overflows u64.
    assert_corrupt(Flavor::Plain, "tomb_count 2^61", |sb| sb.tomb_count = 1 << 61);
    assert_corrupt(Flavor::Plain, "tomb_count u64::MAX", |sb| sb.tomb_count = u64::MAX);
}

#[test]
fn huge_ids_len_is_corrupt() {
    // The file length check adds the header page to it.
    assert_corrupt(Flavor::Plain, "ids_len u64::MAX - 100", |sb| sb.ids_len = u64::MAX - 100);
    assert_corrupt(Flavor::Plain, "ids_len 2^63", |sb| sb.ids_len = 1 << 63);
}

#[test]
fn huge_slot_count_is_corrupt() {
    assert_corrupt(Flavor::Plain, "slot_count u32::MAX", |sb| sb.slot_count = u32::MAX as u64);
    assert_corrupt(Flavor::Pq, "slot_count u32::MAX, trained", |sb| sb.slot_count = u32::MAX as u64);
}

#[test]
fn huge_codebooks_len_is_corrupt() {
    assert_corrupt(Flavor::Pq, "codebooks_len u64::MAX", |sb| sb.codebooks_len = u64::MAX);
    assert_corrupt(Flavor::Pq, "codebooks_len u64::MAX - 4095", |sb| sb.codebooks_len = u64::MAX - 4095);
}

/// Open (also read-only) opens the store without its search index (the
/// raw vectors are all there) and reports the index's damage, whose
/// message holds `says`; all 37 vectors are live. Recover says Corrupt.
fn assert_index_damaged(path: &Path, what: &str, says: &str) {
    let read_only = Options { read_only: true, ..Options::default() };
    let err = Store::recover(path, &Options::default()).err().unwrap_or_else(|| panic!("{what}: recover opened it"));
    assert!(err.kind() == ErrorKind::Corrupt && err.message().contains(says), "{what}: recover: {err}");
    for mode in ["read-only open", "open"] {
        let opened = match mode {
            "open" => Store::open(path, &Options::default()),
            _ => Store::open(path, &read_only),
        };
        let store = opened.unwrap_or_else(|e| panic!("{what}: {mode}: {e}"));
        let damage = store.index_damage().unwrap_or_else(|| panic!("{what}: {mode}: no index damage reported"));
        assert_eq!(damage.kind(), ErrorKind::Corrupt, "{what}: {mode}: {damage}");
        assert!(damage.message().contains(says), "{what}: {mode}: {damage}");
        let stats = store.stats().unwrap();
        assert_eq!((stats.live_vectors, stats.pq_trained, stats.index_damage), (37, false, Some(ErrorKind::Corrupt)), "{what}: {mode}");
        store.close().unwrap();
    }
}

/// The IVF flag and fields, re-sealed inconsistently: the codes records,
/// the codebooks file and the superblock must agree. A superblock whose
/// own fields disagree is Corrupt; one that disagrees with the index files
/// leaves the index out, reported damaged (the raw vectors are intact).
#[test]
fn inconsistent_ivf_settings_are_corrupt() {
    use omendb::storage::format::STORE_FLAG_IVF;
    // (The IVF store's ivf_lists is 4: without the flag the superblock disagrees with itself.)
    assert_corrupt(Flavor::Ivf, "IVF flag cleared", |sb| sb.store_flags &= !STORE_FLAG_IVF);
    assert_corrupt(Flavor::Pq, "ivf_lists without the flag", |sb| sb.ivf_lists = 4);
    assert_corrupt(Flavor::Ivf, "ivf_lists past the limit", |sb| sb.ivf_lists = u32::MAX);
    let tmp = TempDir::new("sb-limits-ivf");
    let path = tmp.store();
    build(&path, Flavor::Pq);
    reseal(&path, |sb| sb.store_flags |= STORE_FLAG_IVF);
    assert_index_damaged(&path, "IVF flag on a store without the index", "codebooks.");
}

/// A code record naming a list the index does not have (its checksum
/// re-sealed): open leaves the index out and reports it, recover is Corrupt.
#[test]
fn list_number_out_of_range_is_index_damage() {
    let tmp = TempDir::new("sb-limits-list");
    let path = tmp.store();
    build(&path, Flavor::Ivf);
    let sb_bytes = std::fs::read(path.join("superblock")).unwrap();
    let sb = (0..2)
        .filter_map(|i| match Superblock::decode(&sb_bytes[i * PAGE..(i + 1) * PAGE]) {
            SlotState::Valid(sb) => Some(sb),
            _ => None,
        })
        .max_by_key(|sb| sb.seq)
        .unwrap();
    assert!(sb.ivf() && sb.trained());
    let codes = path.join(format!("codes.{:016x}", sb.pq_generation));
    let mut bytes = std::fs::read(&codes).unwrap();
    let record = sb.code_record_size();
    let data_len = sb.slot_count as usize * record;
    // Slot 0 is live (IDs 1-3 were deleted, ID 0 was not): its list.
    let at = PAGE + record - 4;
    bytes[at..at + 4].copy_from_slice(&1000u32.to_le_bytes());
    let crc = omendb::storage::checksum::crc32c(&bytes[PAGE..PAGE + data_len]);
    std::fs::write(&codes, &bytes).unwrap();
    reseal(&path, |sb| sb.codes_crc = crc);
    assert_index_damaged(&path, "list 1000", "IVF list 1000");
}
