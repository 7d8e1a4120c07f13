//! PQ inside the store: training, automatic training, encoding on put,
//! persistence, retraining, compressed (drop_raw) stores, and recall floors
//! on real data through the store's own search.

mod common;

use common::data::Dataset;
use common::*;
use omendb::{ErrorKind, Metric, Options, PqSettings, SearchParams, Store};

fn pq_options(dim: u32, m: u32, bits: u32, train_size: u32) -> Options {
    Options { pq: Some(PqSettings { m, bits, train_size }), ..Options::create(dim) }
}

fn row_of(store: &Store, key: u64) -> usize {
    let id = store.key_id(key).unwrap();
    std::str::from_utf8(&id).unwrap().trim_start_matches("id-").parse().unwrap()
}

fn put_rows(store: &Store, base: &[f32], dim: usize) {
    let n = base.len() / dim;
    for start in (0..n).step_by(1000) {
        let end = (start + 1000).min(n);
        put(store, &ids(start..end), &base[start * dim..end * dim]);
    }
}

#[test]
fn train_reports_progress_and_persists() {
    let dir = TempDir::new("pqtrain");
    let path = dir.store();
    let (n, dim) = (3000, 32);
    let v = Rng(4).vectors(n, dim);
    let store = Store::open(&path, &pq_options(dim as u32, 8, 8, 0)).unwrap();
    assert_eq!(store.train_pq(&mut |_, _| {}).unwrap_err().kind(), ErrorKind::InvalidArgument, "no vectors yet");
    put_rows(&store, &v, dim);
    let caller = std::thread::current().id();
    let mut calls: Vec<(u64, u64)> = Vec::new();
    store
        .train_pq(&mut |done, total| {
            assert_eq!(std::thread::current().id(), caller, "progress on the calling thread");
            calls.push((done, total));
        })
        .unwrap();
    assert!(calls.len() > 10);
    let total = calls[0].1;
    assert!(calls.iter().all(|&(_, t)| t == total), "total is fixed");
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0), "done never decreases");
    assert_eq!(calls.last().unwrap(), &(total, total));

    let stats = store.stats().unwrap();
    assert!(stats.pq_trained && stats.raw_kept && !stats.drop_raw);
    assert_eq!((stats.pq_m, stats.pq_bits, stats.pq_train_size), (8, 8, 0));
    assert_eq!(stats.payload_bytes, (n * (dim * 4 + 8)) as u64 + ids(0..n).batch().unwrap().total_bytes());
    // New puts are encoded as they are written; PQ search finds them.
    let extra = Rng(5).vectors(10, dim);
    put(&store, &ids(n..n + 10), &extra);
    let hits = store.search(&extra[..dim], 5, &SearchParams { rerank: 50, ..Default::default() }).unwrap();
    assert_eq!(row_of(&store, hits[0].key), n);
    assert!(hits[0].distance.abs() < 1e-3, "re-ranked distances are exact");
    let approx = store.search(&extra[..dim], 5, &SearchParams::default()).unwrap();
    let seq = store.checkpoint().unwrap();
    store.close().unwrap();

    let store = Store::open(&path, &Options::default()).unwrap();
    assert!(store.stats().unwrap().pq_trained);
    assert_eq!(store.checkpoint_seq(), seq);
    assert_eq!(store.search(&extra[..dim], 5, &SearchParams::default()).unwrap(), approx, "same codes after reopen");
    // Retraining re-encodes everything and stays consistent.
    store.train_pq(&mut |_, _| {}).unwrap();
    let hits = store.search(&extra[..dim], 1, &SearchParams { rerank: 20, ..Default::default() }).unwrap();
    assert_eq!(row_of(&store, hits[0].key), n);
    let exact = store.search(&extra[..dim], 1, &SearchParams { exact: true, ..Default::default() }).unwrap();
    assert_eq!(exact[0].distance, 0.0);
    store.close().unwrap();
    let names: Vec<String> = std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.iter().filter(|n| n.starts_with("codes.")).count(), 1, "old PQ generation removed: {names:?}");
}

#[test]
fn training_is_deterministic() {
    let dir = TempDir::new("pqdet");
    let v = Rng(8).vectors(2000, 16);
    let mut results = Vec::new();
    for threads in [1, 2] {
        let path = dir.path().join(format!("t{threads}"));
        let store = Store::open(&path, &Options { threads, ..pq_options(16, 4, 8, 0) }).unwrap();
        put_rows(&store, &v, 16);
        store.train_pq(&mut |_, _| {}).unwrap();
        results.push(store.search(&v[..16], 10, &SearchParams::default()).unwrap());
    }
    assert_eq!(results[0], results[1]);
}

#[test]
fn automatic_training_at_the_threshold() {
    let dir = TempDir::new("pqauto");
    let store = Store::open(dir.store(), &pq_options(16, 4, 4, 1500)).unwrap();
    let v = Rng(9).vectors(2000, 16);
    put(&store, &ids(0..1000), &v[..1000 * 16]);
    assert!(!store.stats().unwrap().pq_trained);
    put(&store, &ids(1000..2000), &v[1000 * 16..]);
    let stats = store.stats().unwrap();
    assert!(stats.pq_trained, "trained once 1500 vectors were stored");
    assert_eq!(stats.payload_bytes - ids(0..2000).batch().unwrap().total_bytes(), 2000 * (16 * 4 + 2), "4-bit codes: m/2 bytes");
    let hits = store.search(&v[..16], 1, &SearchParams { rerank: 30, ..Default::default() }).unwrap();
    assert_eq!(row_of(&store, hits[0].key), 0);
}

#[test]
fn compressed_store_keeps_only_codes() {
    let dir = TempDir::new("pqdrop");
    let path = dir.store();
    let (n, dim) = (2000, 768);
    let mut rng = Rng(10);
    // Clustered data, so PQ reconstructions are close.
    let centers = rng.vectors(20, dim);
    let v: Vec<f32> = (0..n).flat_map(|i| {
        let c = &centers[(i % 20) * dim..(i % 20 + 1) * dim];
        c.iter().map(|x| x + rng.f32() * 0.05).collect::<Vec<_>>()
    }).collect();
    let store = Store::open(&path, &Options { drop_raw: true, ..pq_options(dim as u32, 32, 8, 0) }).unwrap();
    put_rows(&store, &v, dim);
    assert!(store.stats().unwrap().raw_kept, "raw vectors stay until trained");
    store.train_pq(&mut |_, _| {}).unwrap();
    let stats = store.stats().unwrap();
    assert!(stats.pq_trained && !stats.raw_kept && stats.drop_raw);
    let got = store.get(b"id-7").unwrap();
    let err: f32 = got.iter().zip(&v[7 * dim..8 * dim]).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() / dim as f32;
    assert!(err < 0.01, "reconstruction error {err}");
    assert_eq!(
        store.search(&v[..dim], 3, &SearchParams { exact: true, ..Default::default() }).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    // A batch large enough for the matrix-product path: the same answer.
    assert_eq!(
        store.search_batch(&v[..8 * dim], 3, &SearchParams { exact: true, ..Default::default() }).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let hits = store.search(&v[..dim], 20, &SearchParams::default()).unwrap();
    assert!(hits.iter().any(|h| row_of(&store, h.key) == 0));
    // New puts in a compressed store are stored as codes only.
    put(&store, &ids(n..n + 100), &v[..100 * dim]);
    store.delete_batch(&ids(1000..1050).batch().unwrap()).unwrap();
    store.compact().unwrap();
    let stats = store.stats().unwrap();
    store.close().unwrap();
    // Per vector: its 32-byte code and its 32-byte slot record, which
    // holds an ID of up to 16 bytes ("id-N" here) itself. The fixed cost
    // (the codebooks, one header page per file, the superblock) does not
    // grow with the store.
    assert!(ids(0..n + 100).batch().unwrap().iter().all(|id| id.len() <= 16));
    let codebooks = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.file_name().to_str().unwrap().starts_with("codebooks."))
        .unwrap()
        .metadata()
        .unwrap()
        .len();
    let files = std::fs::read_dir(&path).unwrap().count() as u64;
    assert!(std::fs::read_dir(&path).unwrap().all(|e| !e.unwrap().file_name().to_str().unwrap().starts_with("vectors.")));
    let fixed = codebooks + 8192 + (files - 3) * 4096; // minus superblock, LOCK, codebooks
    let per_vector = (dir_bytes(&path) - fixed) as f64 / stats.live_vectors as f64;
    assert!(per_vector <= 32.0 + 32.0, "{per_vector} bytes per vector");
    let store = Store::open(&path, &Options::default()).unwrap();
    assert_eq!(store.stats().unwrap().live_vectors, n as u64 + 50);
    assert_eq!(store.get(b"id-7").unwrap(), got, "the reconstruction survives reopen");
    assert_eq!(store.train_pq(&mut |_, _| {}).unwrap_err().kind(), ErrorKind::InvalidArgument, "no raw to retrain from");
}

#[test]
fn cosine_and_inner_product_pq() {
    let dir = TempDir::new("pqmetric");
    let v = Rng(12).vectors(3000, 32);
    for metric in [Metric::InnerProduct, Metric::Cosine] {
        let store = Store::open(dir.path().join(format!("{metric:?}")), &Options { metric, ..pq_options(32, 8, 8, 0) }).unwrap();
        put_rows(&store, &v, 32);
        store.train_pq(&mut |_, _| {}).unwrap();
        let q = &v[5 * 32..6 * 32];
        let exact = store.search(q, 10, &SearchParams { exact: true, ..Default::default() }).unwrap();
        let reranked = store.search(q, 10, &SearchParams { rerank: 300, ..Default::default() }).unwrap();
        assert_eq!(exact[0].key, reranked[0].key, "{metric:?}");
        let approx = store.search(q, 10, &SearchParams::default()).unwrap();
        let overlap = approx.iter().filter(|h| exact.iter().any(|e| e.key == h.key)).count();
        assert!(overlap >= 3, "{metric:?}: {overlap} of 10");
        if metric == Metric::Cosine {
            assert!(approx.iter().all(|h| h.distance > -0.5 && h.distance < 2.5), "cosine ADC distances are 1 - cos");
        }
    }
}

/// The floors on SIFT10K: m = 16, 8 bits, recall@10 >= 0.71 without
/// re-rank, >= 0.99 with rerank = 100, through the store's search.
#[test]
fn sift10k_recall_through_the_store() {
    let Some(data) = Dataset::load("siftsmall", "siftsmall", "siftsmall_groundtruth.ivecs") else { return };
    let dir = TempDir::new("pqsift");
    let store = Store::open(dir.store(), &pq_options(data.dim as u32, 16, 8, 0)).unwrap();
    put_rows(&store, &data.base, data.dim);
    store.train_pq(&mut |_, _| {}).unwrap();
    let run = |rerank: u32| -> Vec<Vec<usize>> {
        let params = SearchParams { rerank, threads: 2, ..Default::default() };
        store
            .search_batch(&data.queries, 10, &params)
            .unwrap()
            .iter()
            .map(|hits| hits.iter().map(|h| row_of(&store, h.key)).collect())
            .collect()
    };
    let plain = data.recall(&run(0), 10);
    let reranked = data.recall(&run(100), 10);
    println!("SIFT10K PQ16x8 through the store: recall@10 {plain:.3}, with rerank=100 {reranked:.3}");
    assert!(plain >= 0.71, "recall@10 {plain}");
    assert!(reranked >= 0.99, "recall@10 with rerank {reranked}");
}

/// search_batch scans PQ codes for groups of queries in one pass; every
/// query's hits must equal its own search, with deletes (dead codes), every
/// metric, with and without rerank, 1 or 2 worker threads.
#[test]
fn batch_search_equals_single_searches() {
    for (metric, bits) in [(Metric::L2, 8), (Metric::InnerProduct, 8), (Metric::Cosine, 8), (Metric::L2, 4)] {
        let dim = 64;
        let dir = TempDir::new("pqbatch");
        let opts = Options { metric, ..pq_options(dim as u32, 32, bits, 0) };
        let store = Store::open(dir.store(), &opts).unwrap();
        let mut rng = Rng(99);
        let base = rng.vectors(3000, dim);
        put_rows(&store, &base, dim);
        store.train_pq(&mut |_, _| {}).unwrap();
        store.delete_batch(&ids(100..400).batch().unwrap()).unwrap();
        let mut queries = rng.vectors(5, dim);
        queries.extend_from_slice(&base[..6 * dim]); // near stored (and deleted) rows
        for rerank in [0u32, 20] {
            for threads in [1u32, 2] {
                let params = SearchParams { rerank, threads, ..Default::default() };
                let batch = store.search_batch(&queries, 10, &params).unwrap();
                assert_eq!(batch.len(), 11);
                for (q, got) in queries.chunks_exact(dim).zip(&batch) {
                    let want = store.search(q, 10, &params).unwrap();
                    assert_eq!(got.len(), 10);
                    let pairs = |h: &[omendb::Hit]| h.iter().map(|h| (h.key, h.distance.to_bits())).collect::<Vec<_>>();
                    assert_eq!(pairs(got), pairs(&want), "{metric:?} bits={bits} rerank={rerank} threads={threads}");
                }
            }
        }
    }
}

/// The PQ training sample is drawn at random, not evenly spaced: vectors
/// written alternately from two far-apart groups put every even slot in
/// one group, and an evenly spaced sample of every second slot (8,192
/// vectors, 4,096 sample points at 4 bits) then trained the codebooks on
/// that group alone: the other's vectors all got nearly the same code and
/// their searches ranked at random.
#[test]
fn training_sample_does_not_alias_with_the_write_order() {
    const DIM: usize = 8;
    let dir = TempDir::new("pqalias");
    let store = Store::open(dir.store(), &pq_options(DIM as u32, 4, 4, 0)).unwrap();
    let mut rng = Rng(21);
    let n = 8192;
    let vectors: Vec<f32> = (0..n).flat_map(|i| [if i % 2 == 0 { 0.0 } else { 100.0 }; DIM]).map(|base| base + rng.f32()).collect();
    put_rows(&store, &vectors, DIM);
    store.train_pq(&mut |_, _| {}).unwrap();
    // Queries near the odd group; candidates re-ranked exactly.
    let params = SearchParams { rerank: 100, ..Default::default() };
    let exact = SearchParams { exact: true, ..Default::default() };
    let mut found = 0;
    let queries = 50;
    for _ in 0..queries {
        let q: Vec<f32> = (0..DIM).map(|_| 100.0 + rng.f32()).collect();
        let truth: Vec<u64> = store.search(&q, 10, &exact).unwrap().iter().map(|h| h.key).collect();
        found += store.search(&q, 10, &params).unwrap().iter().filter(|h| truth.contains(&h.key)).count();
    }
    let recall = found as f64 / (queries * 10) as f64;
    assert!(recall >= 0.8, "recall@10 {recall} in the group the sample must not miss");
}
