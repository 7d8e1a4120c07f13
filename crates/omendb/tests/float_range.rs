//! The whole finite f32 range through the store: huge (up to +-f32::MAX),
//! tiny (denormals) and mixed components are accepted, train PQ, search
//! with finite distances and reopen. (Issue 17 item 1: a component near
//! f32::MAX once made training commit codebooks the reader rejects.)

mod common;

use common::*;
use omendb::{Metric, Options, PqSettings, SearchParams, Store};

const BIG: f32 = 3.38e38;

fn pq_options(dim: u32, m: u32, bits: u32, metric: Metric) -> Options {
    Options { metric, pq: Some(PqSettings { m, bits, train_size: 0 }), ..Options::create(dim) }
}

/// Every vector of the store, by row, equals `want` bit for bit.
fn assert_vectors(store: &Store, want: &[f32], dim: usize, what: &str) {
    for (i, v) in want.chunks_exact(dim).enumerate() {
        let got = store.get(format!("id-{i}").as_bytes()).unwrap_or_else(|e| panic!("{what}: get id-{i}: {e}"));
        assert_eq!(
            got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "{what}: id-{i}"
        );
    }
}

/// Opens the store every way a host can (open, recover, read-only) and
/// checks it holds `n` vectors, each finite and, with raw vectors, the one put.
fn reopen_every_way(path: &std::path::Path, want: &[f32], dim: usize, raw: bool) {
    let n = want.len() / dim;
    let check = |store: &Store, what: &str| {
        assert_eq!(store.stats().unwrap().live_vectors, n as u64, "{what}");
        assert!(store.stats().unwrap().pq_trained, "{what}");
        if raw {
            assert_vectors(store, want, dim, what);
        } else {
            for i in 0..n {
                let got = store.get(format!("id-{i}").as_bytes()).unwrap_or_else(|e| panic!("{what}: id-{i}: {e}"));
                assert!(got.iter().all(|x| x.is_finite()), "{what}: id-{i} reconstruction {got:?}");
            }
        }
        let hits = store.search(&want[..dim], 10, &SearchParams::default()).unwrap();
        assert_eq!(hits.len(), 10.min(n), "{what}");
        assert!(hits.iter().all(|h| h.distance.is_finite()), "{what}: {hits:?}");
    };
    let store = Store::open(path, &Options::default()).unwrap_or_else(|e| panic!("open: {e}"));
    check(&store, "open");
    store.close().unwrap();
    let (store, _) = Store::recover(path, &Options::default()).unwrap_or_else(|e| panic!("recover: {e}"));
    check(&store, "recover");
    store.close().unwrap();
    let store = Store::open(path, &Options { read_only: true, ..Options::default() })
        .unwrap_or_else(|e| panic!("read-only open: {e}"));
    check(&store, "read-only open");
}

/// The reproduction: 600 x 16, pq_m 4, one component of every
/// vector >= 3.38e38 (k-means sent every point to one cluster, whose
/// repeated empty-cluster splits grew a centroid past f32::MAX).
#[test]
fn training_with_a_component_near_f32_max_reopens() {
    let (n, dim) = (600, 16);
    for (value, metric) in [(BIG, Metric::L2), (f32::MAX, Metric::L2), (-f32::MAX, Metric::InnerProduct), (BIG, Metric::Cosine)] {
        for drop_raw in [false, true] {
            let dir = TempDir::new("floatrepro");
            let path = dir.store();
            let mut v = Rng(17).vectors(n, dim);
            for row in v.chunks_exact_mut(dim) {
                row[5] = value;
            }
            let store = Store::open(&path, &Options { drop_raw, ..pq_options(dim as u32, 4, 8, metric) }).unwrap();
            put(&store, &ids(0..n), &v);
            store.train_pq(&mut |_, _| {}).unwrap();
            store.close().unwrap();
            reopen_every_way(&path, &v, dim, !drop_raw);
        }
    }
}

/// Components across the whole finite range.
const SPECIAL: [f32; 16] = [
    f32::MAX,
    -f32::MAX,
    BIG,
    1e20,
    -1e20,
    1e-38,
    -1e-38,
    1e-45,
    -1e-45,
    f32::MIN_POSITIVE,
    0.0,
    -0.0,
    1.0,
    -3.5,
    1e-20,
    6e37,
];

/// `n` vectors of `dim` mixing the special values: some uniform (every
/// component one value), some scaled copies of random data (to tiny and
/// huge magnitudes), some mixing huge and tiny in one vector. (Some repeat,
/// e.g. the zero vector: a vector is then tied with its copies.)
fn sweep_vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(n * dim);
    for i in 0..n {
        let kind = i % 4;
        let s = SPECIAL[(i / 4 + i / 64) % SPECIAL.len()];
        for d in 0..dim {
            let r = rng.f32();
            out.push(match kind {
                // Uniform, but distinct: one coordinate marks the row.
                0 => if d == i % dim { s * 0.5 } else { s },
                // Random data scaled to the special magnitude.
                1 => r * s,
                // Huge and tiny mixed.
                2 => SPECIAL[(i + d * 5) % SPECIAL.len()] * (0.5 + r.abs() * 0.5),
                // Ordinary values.
                _ => r,
            });
        }
    }
    out
}

/// Exact and PQ (8-bit and 4-bit, with the fast scan where the CPU has it)
/// search for every metric over the sweep vectors, with and without raw
/// vectors: every distance finite and sorted, the store's own vector its own
/// nearest neighbour where that means something, training and reopen fine.
#[test]
fn whole_float_range_searches_with_finite_distances() {
    // dim 64: 8-bit m 16 and 4-bit m 32 both have 16-byte codes (the fast
    // scan's width). 600 vectors run k-means; 16 make every code exact.
    let dim = 64;
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        for (m, bits) in [(16, 8), (32, 4)] {
            for n in [600, 16] {
                let what = format!("{metric:?} m{m} {bits}-bit n{n}");
                let v = sweep_vectors(n, dim, 3 + n as u64);
                let dir = TempDir::new("floatsweep");
                let path = dir.store();
                let store = Store::open(&path, &pq_options(dim as u32, m, bits, metric)).unwrap();
                put(&store, &ids(0..n), &v);
                let exact = SearchParams { exact: true, ..Default::default() };
                check_search(&store, &v, dim, metric, &exact, true, &format!("{what} exact before training"));
                store.train_pq(&mut |_, _| {}).unwrap_or_else(|e| panic!("{what}: train: {e}"));
                check_search(&store, &v, dim, metric, &exact, true, &format!("{what} exact"));
                // Every code is its vector when n <= 2^bits (centroids are the points).
                let codes_exact = n <= 16;
                check_search(&store, &v, dim, metric, &SearchParams::default(), codes_exact, &format!("{what} pq"));
                let rerank = SearchParams { rerank: 50, ..Default::default() };
                check_search(&store, &v, dim, metric, &rerank, false, &format!("{what} rerank"));
                store.close().unwrap();
                reopen_every_way(&path, &v, dim, true);
            }
            // A compressed store: only codes (and the norms) remain.
            let what = format!("{metric:?} m{m} {bits}-bit drop_raw");
            let v = sweep_vectors(600, dim, 5);
            let dir = TempDir::new("floatsweepdrop");
            let path = dir.store();
            let store = Store::open(&path, &Options { drop_raw: true, ..pq_options(dim as u32, m, bits, metric) }).unwrap();
            put(&store, &ids(0..600), &v);
            store.train_pq(&mut |_, _| {}).unwrap_or_else(|e| panic!("{what}: train: {e}"));
            check_search(&store, &v, dim, metric, &SearchParams::default(), false, &what);
            store.close().unwrap();
            reopen_every_way(&path, &v, dim, false);
        }
    }
}

/// Searches every stored vector's own value (all `n` hits): finite distances
/// in ascending order and, where `self_nearest` and the metric has a self
/// (L2, cosine of a non-zero vector), the vector itself at the smallest
/// distance (tied with its copies, and for cosine with parallel vectors).
fn check_search(store: &Store, v: &[f32], dim: usize, metric: Metric, params: &SearchParams, self_nearest: bool, what: &str) {
    let n = v.len() / dim;
    for (i, q) in v.chunks_exact(dim).enumerate() {
        let hits = store.search(q, n, params).unwrap_or_else(|e| panic!("{what}: search {i}: {e}"));
        // Failure messages show the query's head and the first hits.
        let (q, top) = (&q[..4], &hits[..hits.len().min(6)]);
        assert_eq!(hits.len(), n, "{what}: query {i}");
        let bad = hits.iter().find(|h| !h.distance.is_finite());
        assert!(bad.is_none(), "{what}: query {i} {q:?}..: {bad:?} among {top:?}..");
        assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance), "{what}: query {i}: unsorted");
        let zero = v[i * dim..(i + 1) * dim].iter().all(|&x| x == 0.0);
        if !self_nearest || metric == Metric::InnerProduct || (metric == Metric::Cosine && zero) {
            continue;
        }
        let own = hits.iter().find(|h| store.key_id(h.key).unwrap() == format!("id-{i}").as_bytes()).unwrap();
        // Cosine: parallel vectors tie with it, up to rounding.
        let slack = if metric == Metric::Cosine { 1e-6 } else { 0.0 };
        assert!(own.distance <= hits[0].distance + slack, "{what}: query {i} {q:?}: not its own nearest ({own:?}): {top:?}..");
        if params.exact {
            assert!(own.distance.abs() <= 1e-6, "{what}: query {i} {q:?}: own distance {}", own.distance);
        }
    }
}

/// An IVF store of the sweep vectors calibrated on queries from the whole
/// range (`Store::calibrate`): the calibration commits, is one the reader
/// accepts (every way of reopening, with the index), and searches at its
/// targets give finite, sorted distances.
#[test]
fn whole_float_range_calibrates_on_host_queries() {
    let dim = 64;
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        let what = format!("{metric:?} IVF calibrated");
        let v = sweep_vectors(600, dim, 7);
        let dir = TempDir::new("floatsweepcal");
        let path = dir.store();
        let options = Options { ivf_lists: Some(0), ..pq_options(dim as u32, 32, 4, metric) };
        let store = Store::open(&path, &options).unwrap();
        put(&store, &ids(0..600), &v);
        store.train_pq(&mut |_, _| {}).unwrap_or_else(|e| panic!("{what}: train: {e}"));
        let queries = sweep_vectors(120, dim, 8);
        let points = store.calibrate(&queries, &mut |_, _| {}).unwrap_or_else(|e| panic!("{what}: calibrate: {e}"));
        assert!(!points.is_empty(), "{what}: no points");
        assert!(points.iter().all(|p| (0.0..=1.0).contains(&p.recall) && p.cost.is_finite()), "{what}: {points:?}");
        for target in [0.5, 0.95, 1.0] {
            let params = SearchParams { target_recall: target, ..Default::default() };
            for (i, q) in v.chunks_exact(dim).chain(queries.chunks_exact(dim)).enumerate() {
                let hits = store.search(q, 10, &params).unwrap_or_else(|e| panic!("{what} at {target}: query {i}: {e}"));
                assert!(!hits.is_empty(), "{what} at {target}: query {i} found nothing");
                assert!(hits.iter().all(|h| h.distance.is_finite()), "{what} at {target}: query {i}: {hits:?}");
                assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance), "{what} at {target}: query {i}: {hits:?}");
            }
        }
        store.close().unwrap();
        reopen_every_way(&path, &v, dim, true);
        let store = Store::open(&path, &Options::default()).unwrap();
        assert_eq!((store.calibration().unwrap(), store.stats().unwrap().calibration_queries), (points, 120), "{what}");
        assert_eq!(store.stats().unwrap().index_damage, None, "{what}");
        store.close().unwrap();
    }
}
