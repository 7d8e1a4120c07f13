//! Search keys: what a key names, for how long, and what a stale one gives.
//! A key names one slot of one generation of files; compaction renumbers
//! the slots, so a key from before it must be refused, never resolved to
//! whatever sits in its slot now. A compressing training (DROP_RAW) also
//! renumbers them, but it may run inside an ordinary put, so its keys stay
//! valid until the next compaction.

mod common;

use common::*;
use omendb::{ErrorKind, IdBuf, Options, PqSettings, SearchParams, Store};

const DIM: usize = 8;

/// Vector i: a one-hot-ish vector so that a query finds exactly it.
fn vector(i: usize) -> Vec<f32> {
    (0..DIM).map(|d| if d == i % DIM { 10.0 + i as f32 } else { (i as f32) * 0.01 }).collect()
}

fn vectors(range: std::ops::Range<usize>) -> Vec<f32> {
    range.flat_map(vector).collect()
}

fn nearest_key(store: &Store, i: usize) -> u64 {
    let params = SearchParams { exact: store.stats().unwrap().raw_kept, ..SearchParams::default() };
    store.search(&vector(i), 1, &params).unwrap()[0].key
}

/// The reproduction: "aaa", "bbb", "ccc"; "aaa" deleted; compaction moves
/// "bbb" to slot 0 and "ccc" to slot 1, where "bbb" was.
#[test]
fn a_key_from_before_a_compaction_is_refused_not_renamed() {
    let dir = TempDir::new("keys-compact");
    let store = create(&dir.store(), DIM as u32);
    put(&store, &IdBuf::new(["aaa", "bbb", "ccc"]), &vectors(0..3));
    let bbb = nearest_key(&store, 1);
    let ccc = nearest_key(&store, 2);
    assert_eq!(store.key_id(bbb).unwrap(), b"bbb");
    store.delete_batch(&IdBuf::new(["aaa"]).batch().unwrap()).unwrap();
    assert_eq!(store.key_id(bbb).unwrap(), b"bbb", "writes without compaction keep keys");
    store.compact().unwrap();
    for stale in [bbb, ccc] {
        let err = store.key_id(stale).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.message().contains("before the last compaction"), "{err}");
    }
    assert_eq!(store.key_id(nearest_key(&store, 1)).unwrap(), b"bbb", "new keys work");
    assert_eq!(store.key_id(nearest_key(&store, 2)).unwrap(), b"ccc");
    let never = store.key_id(u64::MAX).unwrap_err();
    assert_eq!(never.kind(), ErrorKind::NotFound);
    assert!(never.message().contains("never issued"), "{never}");
}

/// Keys survive a reopen of the same generation (a key names a slot of a
/// generation, which reopening does not renumber).
#[test]
fn keys_survive_reopen_without_compaction() {
    let dir = TempDir::new("keys-reopen");
    let path = dir.store();
    let store = create(&path, DIM as u32);
    put(&store, &ids(0..20), &vectors(0..20));
    let key = nearest_key(&store, 7);
    store.close().unwrap();
    let store = Store::open(&path, &Options::default()).unwrap();
    assert_eq!(store.key_id(key).unwrap(), b"id-7");
}

fn drop_raw_options(train_size: u32) -> Options {
    Options { drop_raw: true, pq: Some(PqSettings { m: 2, bits: 8, train_size }), ..Options::create(DIM as u32) }
}

/// Training a DROP_RAW store rewrites it without raw vectors (new slot
/// numbers); keys issued before it keep naming their IDs until the next
/// compaction, whether the training was asked for or started by a put.
#[test]
fn keys_survive_a_compressing_training_until_the_next_compaction() {
    for automatic in [false, true] {
        let dir = TempDir::new("keys-drop-raw");
        let n = 600;
        // Live after the last put: ids 10..n.
        let store = Store::open(dir.store(), &drop_raw_options(if automatic { (n - 10) as u32 } else { 0 })).unwrap();
        // Replaced and deleted entries, so that the rewrite renumbers.
        put(&store, &ids(0..50), &vectors(100..150));
        store.delete_batch(&ids(0..10).batch().unwrap()).unwrap();
        put(&store, &ids(10..n - 1), &vectors(10..n - 1));
        let before: Vec<(usize, u64)> = [10, 11, 300, n - 2].iter().map(|&i| (i, nearest_key(&store, i))).collect();
        // The key_id pointer of a key from before (the C API hands it out).
        let pointer = store.with_key_id(before[0].1, |id| (id.as_ptr(), id.len())).unwrap();
        put(&store, &ids(n - 1..n), &vectors(n - 1..n)); // reaches train_size when automatic
        if !automatic {
            store.train_pq(&mut |_, _| {}).unwrap();
        }
        let stats = store.stats().unwrap();
        assert!(stats.pq_trained && !stats.raw_kept, "automatic={automatic}: {stats:?}");
        for &(i, key) in &before {
            assert_eq!(store.key_id(key).unwrap(), format!("id-{i}").as_bytes(), "automatic={automatic}, key of {i}");
        }
        // SAFETY: the ID bytes stay mapped until the next compaction or close.
        let still = unsafe { std::slice::from_raw_parts(pointer.0, pointer.1) };
        assert_eq!(still, b"id-10");
        store.compact().unwrap();
        for &(_, key) in &before {
            assert_eq!(store.key_id(key).unwrap_err().kind(), ErrorKind::NotFound, "automatic={automatic}");
        }
    }
}
