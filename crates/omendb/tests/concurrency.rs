//! One handle, many threads: readers (get, get_batch, search, key_id,
//! stats) run while a writer upserts, deletes, checkpoints and compacts
//! (and, on an IVF store, while another thread calibrates it).
//! Vectors describe themselves (id, version, and a pattern derived from
//! both), so a reader can tell a torn or misplaced vector from a good one.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use omendb::{ErrorKind, IdBuf, SearchParams};

const DIM: usize = 32;
const IDS: u64 = 500;

fn vector(id: u64, version: u64) -> Vec<f32> {
    let mut v = vec![id as f32, version as f32];
    v.extend((2..DIM).map(|d| ((id * 7 + version * 13 + d as u64) % 1009) as f32));
    v
}

fn check_vector(v: &[f32], id: Option<u64>) {
    let (got_id, version) = (v[0] as u64, v[1] as u64);
    if let Some(id) = id {
        assert_eq!(got_id, id, "vector of another id");
    }
    assert_eq!(v, vector(got_id, version).as_slice(), "torn or damaged vector");
}

/// The writer's put: 1 to 50 IDs (upserts among them), all at `version`,
/// which then moves on.
fn put_some(store: &omendb::Store, rng: &mut Rng, version: &mut u64) {
    let ids: Vec<u64> = (0..1 + rng.below(50)).map(|_| rng.below(IDS)).collect();
    let values: Vec<f32> = ids.iter().flat_map(|&i| vector(i, *version)).collect();
    *version += 1;
    put(store, &IdBuf::new(ids.iter().map(|i| format!("k{i}"))), &values);
}

/// The writer's delete: 1 to 10 IDs, present or not.
fn delete_some(store: &omendb::Store, rng: &mut Rng) {
    let ids = IdBuf::new((0..1 + rng.below(10)).map(|_| format!("k{}", rng.below(IDS))));
    store.delete_batch(&ids.batch().unwrap()).unwrap();
}

#[test]
fn readers_see_consistent_vectors_while_a_writer_works() {
    let dir = TempDir::new("conc");
    let store = create(&dir.store(), DIM as u32);
    let initial: Vec<f32> = (0..IDS).flat_map(|i| vector(i, 0)).collect();
    put(&store, &IdBuf::new((0..IDS).map(|i| format!("k{i}"))), &initial);
    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_secs(3);

    std::thread::scope(|s| {
        for r in 0..4u64 {
            let (store, stop, reads) = (&store, &stop, &reads);
            s.spawn(move || {
                let mut rng = Rng(r + 1);
                while !stop.load(Ordering::Relaxed) {
                    let id = rng.below(IDS);
                    match r % 4 {
                        0 => match store.get(format!("k{id}").as_bytes()) {
                            Ok(v) => check_vector(&v, Some(id)),
                            Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound, "{e}"),
                        },
                        1 => {
                            let want: Vec<u64> = (0..8).map(|_| rng.below(IDS)).collect();
                            let ids = IdBuf::new(want.iter().map(|i| format!("k{i}")));
                            let mut out = vec![0.0; 8 * DIM];
                            let mut found = vec![0u8; 8];
                            store.get_batch_into(&ids.batch().unwrap(), &mut out, Some(&mut found)).unwrap();
                            for (i, row) in out.chunks(DIM).enumerate() {
                                if found[i] == 1 {
                                    check_vector(row, Some(want[i]));
                                } else {
                                    assert!(row.iter().all(|&x| x == 0.0));
                                }
                            }
                        }
                        2 => {
                            let q = vector(id, 0);
                            match store.search(&q, 5, &SearchParams::default()) {
                                Ok(hits) => {
                                    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
                                    for hit in hits {
                                        // A compaction may renumber keys between the search and here.
                                        if let Ok(id) = store.key_id(hit.key) {
                                            assert!(id.starts_with(b"k"));
                                        }
                                    }
                                }
                                Err(e) => panic!("search: {e}"),
                            }
                        }
                        _ => {
                            let stats = store.stats().unwrap();
                            assert!(stats.live_vectors <= IDS);
                        }
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // The writer.
        let mut rng = Rng(77);
        let mut version = 1;
        let mut ops = 0;
        while Instant::now() < deadline {
            match rng.below(20) {
                0..=11 => put_some(&store, &mut rng, &mut version),
                12..=15 => delete_some(&store, &mut rng),
                16..=18 => {
                    store.checkpoint().unwrap();
                }
                _ => store.compact().unwrap(),
            }
            ops += 1;
        }
        stop.store(true, Ordering::Relaxed);
        eprintln!("writer ops: {ops}; reads: {}", reads.load(Ordering::Relaxed));
        assert!(ops > 50 && reads.load(Ordering::Relaxed) > 1000);
    });
    store.close().unwrap();
}

/// An IVF store calibrated on the host's queries again and again while
/// readers search it at a target and a writer puts, deletes and compacts:
/// nothing blocks for good, every search answers in order, and the store
/// reopens with the last calibration.
#[test]
fn calibrations_beside_searches_and_writes() {
    let dir = TempDir::new("conc-calibrate");
    let options = omendb::Options {
        pq: Some(omendb::PqSettings { m: 8, bits: 4, train_size: 0 }),
        ivf_lists: Some(0),
        threads: 2,
        ..omendb::Options::create(DIM as u32)
    };
    let store = omendb::Store::open(dir.store(), &options).unwrap();
    let initial: Vec<f32> = (0..IDS).flat_map(|i| vector(i, 0)).collect();
    put(&store, &IdBuf::new((0..IDS).map(|i| format!("k{i}"))), &initial);
    store.train_pq(&mut |_, _| {}).unwrap();
    let stop = AtomicBool::new(false);
    let (searches, calibrations) = (AtomicU64::new(0), AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(3);
    let last = std::sync::Mutex::new(Vec::new());

    std::thread::scope(|s| {
        for r in 0..2u64 {
            let (store, stop, searches) = (&store, &stop, &searches);
            s.spawn(move || {
                let mut rng = Rng(r + 11);
                while !stop.load(Ordering::Relaxed) {
                    let q = vector(rng.below(IDS), 0);
                    let target = [0.9, 0.95, 0.99][rng.below(3) as usize];
                    let hits = store.search(&q, 5, &SearchParams { target_recall: target, ..Default::default() }).unwrap();
                    assert!(!hits.is_empty() && hits.windows(2).all(|w| w[0].distance <= w[1].distance));
                    store.search_plan(5, &SearchParams { target_recall: target, ..Default::default() }).unwrap();
                    searches.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        {
            let (store, stop, calibrations, last) = (&store, &stop, &calibrations, &last);
            s.spawn(move || {
                let mut rng = Rng(5);
                while !stop.load(Ordering::Relaxed) {
                    let n = 10 + rng.below(20);
                    let queries: Vec<f32> = (0..n).flat_map(|_| vector(rng.below(IDS), 1 + rng.below(3))).collect();
                    let points = store.calibrate(&queries, &mut |_, _| {}).unwrap();
                    assert_eq!(store.stats().unwrap().calibration_queries as u64, n);
                    *last.lock().unwrap() = points;
                    calibrations.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let mut rng = Rng(78);
        let mut version = 1;
        while Instant::now() < deadline {
            match rng.below(10) {
                0..=6 => put_some(&store, &mut rng, &mut version),
                7..=8 => delete_some(&store, &mut rng),
                _ => store.compact().unwrap(),
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let (searched, calibrated) = (searches.load(Ordering::Relaxed), calibrations.load(Ordering::Relaxed));
    eprintln!("searches: {searched}; calibrations: {calibrated}");
    assert!(searched > 100 && calibrated > 3, "searches {searched}, calibrations {calibrated}");
    let last = last.into_inner().unwrap();
    store.close().unwrap();
    let store = omendb::Store::open(dir.store(), &omendb::Options::default()).unwrap();
    assert_eq!(store.calibration().unwrap(), last);
    store.close().unwrap();
}
