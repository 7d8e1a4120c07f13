//! Filtered search: every hit is allowed by the filter (an ID allow-list, a
//! predicate on the ID, or both), live, and the hits are the nearest allowed
//! vectors: exactly so for exact search and for small allowed sets (which a
//! PQ store searches exactly), as well as unfiltered PQ search ranks for
//! large ones.

mod common;

use std::collections::HashSet;

use common::*;
use omendb::{Filter, IdBuf, Options, PqSettings, SearchParams, Store};

const DIM: usize = 32;
const N: usize = 4000;

fn store_with_pq(dir: &TempDir, rng: &mut Rng) -> (Store, Vec<f32>) {
    let options = Options { pq: Some(PqSettings { m: 8, bits: 8, train_size: 0 }), ..Options::create(DIM as u32) };
    let store = Store::open(dir.store(), &options).unwrap();
    let v = rng.vectors(N, DIM);
    put(&store, &ids(0..N), &v);
    store.train_pq(&mut |_, _| {}).unwrap();
    (store, v)
}

fn index_of(store: &Store, key: u64) -> usize {
    String::from_utf8(store.key_id(key).unwrap()).unwrap()[3..].parse().unwrap()
}

/// The exact `k` nearest among `allowed` (L2).
fn truth(v: &[f32], query: &[f32], allowed: &[usize], k: usize) -> Vec<usize> {
    let mut d: Vec<(f32, usize)> = allowed
        .iter()
        .map(|&i| (v[i * DIM..(i + 1) * DIM].iter().zip(query).map(|(a, b)| (a - b) * (a - b)).sum(), i))
        .collect();
    d.sort_by(|a, b| a.partial_cmp(b).unwrap());
    d.into_iter().take(k).map(|(_, i)| i).collect()
}

fn recall(got: &[usize], want: &[usize]) -> f64 {
    let want: HashSet<_> = want.iter().collect();
    got.iter().filter(|i| want.contains(i)).count() as f64 / want.len().max(1) as f64
}

/// Allow-lists at 1%, 10% and 50% selectivity, exact and PQ (with and
/// without re-rank), single and batch: no hit outside the list; recall@10
/// among the allowed vectors 1.0 where the search is exact.
#[test]
fn id_allow_lists_at_several_selectivities() {
    let dir = TempDir::new("filter-ids");
    let mut rng = Rng(11);
    let (store, v) = store_with_pq(&dir, &mut rng);
    let queries = rng.vectors(20, DIM);
    for percent in [1, 10, 50] {
        let allowed: Vec<usize> = (0..N).filter(|i| (i * 7919) % 100 < percent).collect();
        let list = IdBuf::new(allowed.iter().map(|i| format!("id-{i}")));
        let filter = Filter { ids: Some(list.batch().unwrap()), ..Filter::default() };
        let allowed_set: HashSet<usize> = allowed.iter().copied().collect();
        for (name, params) in [
            ("exact", SearchParams { exact: true, ..SearchParams::default() }),
            ("pq", SearchParams::default()),
            ("pq+rerank", SearchParams { rerank: 100, ..SearchParams::default() }),
        ] {
            let batch = store.search_batch_filtered(&queries, 10, &params, &filter).unwrap();
            let mut total = 0.0;
            for (q, hits) in queries.chunks(DIM).zip(&batch) {
                let single = store.search_filtered(q, 10, &params, &filter).unwrap();
                assert_eq!(&single, hits, "{percent}% {name}: batch and single agree");
                let got: Vec<usize> = hits.iter().map(|h| index_of(&store, h.key)).collect();
                assert!(got.iter().all(|i| allowed_set.contains(i)), "{percent}% {name}: a hit outside the filter");
                assert_eq!(got.len(), 10.min(allowed.len()), "{percent}% {name}");
                total += recall(&got, &truth(&v, q, &allowed, 10));
            }
            let recall = total / 20.0;
            // 1% of a 32-d PQ8 store is searched exactly (fewer bytes than the codes).
            if name == "exact" || percent == 1 {
                assert_eq!(recall, 1.0, "{percent}% {name}");
            }
            if name == "pq+rerank" {
                assert!(recall >= 0.9, "{percent}% {name}: recall@10 {recall}");
            }
            println!("{percent:>2}% {name:<10} recall@10 among the allowed {recall:.3}");
        }
    }
}

/// A predicate on the ID, alone and with an allow-list: both must pass.
/// It runs with no lock held, so it may read and even write the store.
#[test]
fn predicates_and_both_filters() {
    let dir = TempDir::new("filter-predicate");
    let mut rng = Rng(12);
    let (store, v) = store_with_pq(&dir, &mut rng);
    let query = rng.vectors(1, DIM);
    let calls = std::cell::Cell::new(0usize);
    let even = |id: &[u8]| {
        calls.set(calls.get() + 1);
        // Reads the store from inside the filter (no deadlock).
        assert!(store.get(id).is_ok());
        std::str::from_utf8(&id[3..]).unwrap().parse::<usize>().unwrap() % 2 == 0
    };
    let exact = SearchParams { exact: true, ..SearchParams::default() };
    let hits = store.search_filtered(&query, 10, &exact, &Filter { accept: Some(&even), ..Filter::default() }).unwrap();
    let got: Vec<usize> = hits.iter().map(|h| index_of(&store, h.key)).collect();
    let evens: Vec<usize> = (0..N).step_by(2).collect();
    assert_eq!(got, truth(&v, &query, &evens, 10));
    assert_eq!(calls.get(), N, "once per live vector");

    let list = IdBuf::new((0..100).map(|i| format!("id-{i}")));
    let both = Filter { ids: Some(list.batch().unwrap()), accept: Some(&even) };
    calls.set(0);
    let hits = store.search_filtered(&query, 100, &exact, &both).unwrap();
    let got: HashSet<usize> = hits.iter().map(|h| index_of(&store, h.key)).collect();
    assert_eq!(got, (0..100).step_by(2).collect::<HashSet<_>>());
    assert_eq!(calls.get(), 100, "the predicate sees only what the list allows");

    // A filter that writes: the vectors it deletes are not returned.
    let deleting = |id: &[u8]| {
        store.delete_batch(&IdBuf::new([id]).batch().unwrap()).unwrap();
        true
    };
    let few = IdBuf::new(["id-1", "id-3"]);
    let filter = Filter { ids: Some(few.batch().unwrap()), accept: Some(&deleting) };
    assert!(store.search_filtered(&query, 10, &exact, &filter).unwrap().is_empty());
    assert_eq!(store.stats().unwrap().live_vectors, N as u64 - 2);
}

/// Deleted and replaced vectors are not returned though the list names
/// them; an empty list allows nothing; IDs the store lacks are ignored.
#[test]
fn only_live_vectors_and_empty_lists() {
    let dir = TempDir::new("filter-live");
    let store = create(&dir.store(), 4);
    put(&store, &IdBuf::new(["a", "b", "c"]), &[0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0]);
    store.delete_batch(&IdBuf::new(["a"]).batch().unwrap()).unwrap();
    put(&store, &IdBuf::new(["b"]), &[5.0, 0.0, 0.0, 0.0]);
    let list = IdBuf::new(["a", "b", "zzz"]);
    let filter = Filter { ids: Some(list.batch().unwrap()), ..Filter::default() };
    let hits = store.search_filtered(&[0.0; 4], 10, &SearchParams::default(), &filter).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(store.key_id(hits[0].key).unwrap(), b"b");
    assert_eq!(hits[0].distance, 25.0, "the replacement, not the old vector");
    let none = Filter { ids: Some(omendb::IdBatch::EMPTY), ..Filter::default() };
    assert!(store.search_filtered(&[0.0; 4], 10, &SearchParams::default(), &none).unwrap().is_empty());
}

/// `search_with_ids` / `search_batch_with_ids` return the hits of
/// `search_filtered` / `search_batch_filtered` (PQ, re-ranked and exact,
/// with and without a filter) and each hit's ID, as `key_id` gives it.
#[test]
fn search_with_ids_matches_search_and_key_id() {
    let dir = TempDir::new("search-ids");
    let mut rng = Rng(14);
    let (store, _) = store_with_pq(&dir, &mut rng);
    let queries = rng.vectors(5, DIM);
    let odd = |id: &[u8]| std::str::from_utf8(&id[3..]).unwrap().parse::<usize>().unwrap() % 2 == 1;
    let list = IdBuf::new((0..30).map(|i| format!("id-{i}")));
    let filters =
        [Filter::default(), Filter { accept: Some(&odd), ..Filter::default() }, Filter { ids: Some(list.batch().unwrap()), accept: Some(&odd) }];
    for params in [
        SearchParams::default(),
        SearchParams { rerank: 50, ..SearchParams::default() },
        SearchParams { exact: true, ..SearchParams::default() },
    ] {
        for filter in &filters {
            let one = store.search_with_ids(&queries[..DIM], 20, &params, filter).unwrap();
            assert_eq!(one.hits, vec![store.search_filtered(&queries[..DIM], 20, &params, filter).unwrap()]);
            let batch = store.search_batch_with_ids(&queries, 20, &params, filter).unwrap();
            assert_eq!(batch.hits, store.search_batch_filtered(&queries, 20, &params, filter).unwrap());
            for results in [&one, &batch] {
                let hits: Vec<_> = results.hits.iter().flatten().collect();
                assert_eq!(hits.len(), results.ids.len());
                for (i, hit) in hits.into_iter().enumerate() {
                    assert_eq!(results.ids.get(i), store.key_id(hit.key).unwrap());
                }
            }
        }
    }
    // The filter with 15 allowed vectors leaves every row short of k.
    let short = store.search_batch_with_ids(&queries, 20, &SearchParams::default(), &filters[2]).unwrap();
    assert!(short.hits.iter().all(|row| row.len() == 15));
}

/// Every hit's ID resolves though compactions (which invalidate keys) run
/// all along: the IDs are read under the view the search ran on.
#[test]
fn search_with_ids_survives_concurrent_compaction() {
    let dir = TempDir::new("search-ids-compact");
    let store = Store::open(dir.store(), &Options::create(DIM as u32)).unwrap();
    let mut rng = Rng(15);
    let v = rng.vectors(500, DIM);
    put(&store, &ids(0..500), &v);
    let queries = rng.vectors(4, DIM);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for round in 0..40 {
                let dead = ids(round * 5..round * 5 + 5);
                store.delete_batch(&dead.batch().unwrap()).unwrap();
                put(&store, &dead, &v[round * 5 * DIM..(round * 5 + 5) * DIM]);
                store.compact().unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut searches = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) || searches == 0 {
            let results = store.search_batch_with_ids(&queries, 10, &SearchParams::default(), &Filter::default()).unwrap();
            assert_eq!(results.ids.len(), 40);
            for i in 0..results.ids.len() {
                assert!(results.ids.get(i).starts_with(b"id-"));
            }
            searches += 1;
        }
    });
}
