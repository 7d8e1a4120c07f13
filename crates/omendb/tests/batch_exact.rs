//! Exact batch search (a blocked matrix product for 8 queries or more)
//! returns what one exact search per query returns, bit for bit: every
//! metric, with deletes, filters, ties and the whole finite f32 range.

mod common;

use common::*;
use omendb::{Filter, Hit, IdBuf, Metric, Options, SearchParams, Store};

const METRICS: [Metric; 3] = [Metric::L2, Metric::InnerProduct, Metric::Cosine];

fn bits(hits: &[Hit]) -> Vec<(u64, u32)> {
    hits.iter().map(|h| (h.key, h.distance.to_bits())).collect()
}

/// Every query of `queries` searched in one batch (at 1 and 2 threads)
/// and one by one, exactly, with each filter and `k`: the same hits.
fn assert_batch_is_single(store: &Store, queries: &[f32], dim: usize, filters: &[(&str, Filter<'_>)], ks: &[usize], what: &str) {
    for (name, filter) in filters {
        for &k in ks {
            let exact = SearchParams { exact: true, ..SearchParams::default() };
            let single: Vec<Vec<Hit>> =
                queries.chunks_exact(dim).map(|q| store.search_filtered(q, k, &exact, filter).unwrap()).collect();
            assert!(single.iter().any(|hits| !hits.is_empty()), "{what} {name} k={k}: a test needs hits");
            // All the queries, and the first 40: blocks of 256 queries or
            // more take a row-major product, smaller ones a column-major one.
            for (threads, n) in [(1, single.len()), (2, single.len()), (1, single.len().min(40)), (2, single.len().min(40))] {
                let params = SearchParams { threads, ..exact };
                let batch = store.search_batch_filtered(&queries[..n * dim], k, &params, filter).unwrap();
                assert_eq!(batch.len(), n);
                for (i, (b, s)) in batch.iter().zip(&single).enumerate() {
                    assert_eq!(bits(b), bits(s), "{what}, filter {name}, k={k}, threads={threads}, {n} queries, query {i}");
                }
            }
        }
    }
}

fn store_with(dir: &TempDir, dim: usize, metric: Metric, vectors: &[f32]) -> Store {
    let store = Store::open(dir.store(), &Options { metric, ..Options::create(dim as u32) }).unwrap();
    put(&store, &ids(0..vectors.len() / dim), vectors);
    store
}

/// 3,000 vectors (three tiles of the product and a partial one) with
/// duplicates, a deleted run (a sparse stretch, gathered) and every
/// seventh deleted (holes in dense stretches, read in place); filters by
/// ID list (sparse: gathered) and by predicate.
#[test]
fn batch_equals_single_for_every_metric() {
    let (n, dim) = (3000, 37);
    let mut rng = Rng(7);
    let mut vectors = rng.vectors(n, dim);
    // Exact ties: vector 0 stored five more times, 1 twice more.
    for copy in [10, 500, 1500, 2999, 2048] {
        vectors.copy_within(0..dim, copy * dim);
    }
    for copy in [11, 1200] {
        vectors.copy_within(dim..2 * dim, copy * dim);
    }
    // Over 256: row-major products (`assert_batch_is_single`).
    let mut queries = rng.vectors(297, dim);
    queries.extend_from_slice(&vectors[..dim]); // a stored vector: ties at distance 0
    queries.extend_from_slice(&vectors[700 * dim..701 * dim]); // deleted below
    queries.extend(std::iter::repeat_n(0.0, dim)); // the zero query (cosine's f64 path)
    let deleted = IdBuf::new((1000..1900).chain((0..n).step_by(7)).map(|i| format!("id-{i}")));
    let listed = IdBuf::new((0..n).step_by(9).map(|i| format!("id-{i}")));
    let even = |id: &[u8]| id.last().is_some_and(|c| c % 2 == 0);
    for metric in METRICS {
        let dir = TempDir::new("batch-exact");
        let store = store_with(&dir, dim, metric, &vectors);
        store.delete_batch(&deleted.batch().unwrap()).unwrap();
        let filters = [
            ("none", Filter::default()),
            ("ids", Filter { ids: Some(listed.batch().unwrap()), ..Filter::default() }),
            ("accept", Filter { accept: Some(&even), ..Filter::default() }),
        ];
        assert_batch_is_single(&store, &queries, dim, &filters, &[1, 10, 100], &format!("{metric:?}"));
    }
}

/// Vectors and queries over the whole finite range: components near
/// f32::MAX (where a product overflows f32), huge, tiny and denormal,
/// mixed with ordinary ones.
#[test]
fn batch_equals_single_for_extreme_floats() {
    let (n, dim) = (1500, 16);
    let mut rng = Rng(11);
    let mut vectors = rng.vectors(n, dim);
    let scales = [3.38e38, f32::MAX, 1e30, 1e19, 1e-20, 1e-38, 1e-42, 0.0];
    for (i, row) in vectors.chunks_exact_mut(dim).enumerate() {
        match i % 5 {
            // All of a row at one scale.
            0 => row.iter_mut().for_each(|x| *x *= scales[i / 5 % scales.len()]),
            // One component at a scale, the rest ordinary.
            1 => row[i % dim] = scales[i / 5 % scales.len()],
            _ => {}
        }
    }
    let mut queries = rng.vectors(258, dim);
    for (i, row) in queries.chunks_exact_mut(dim).enumerate().skip(4) {
        row.iter_mut().for_each(|x| *x *= scales[i % scales.len()]);
    }
    queries.extend_from_slice(&vectors[..dim]);
    queries.extend_from_slice(&vectors[6 * dim..7 * dim]);
    for metric in METRICS {
        let dir = TempDir::new("batch-extreme");
        let store = store_with(&dir, dim, metric, &vectors);
        assert_batch_is_single(&store, &queries, dim, &[("none", Filter::default())], &[1, 10, 50], &format!("{metric:?}"));
    }
}

/// 6,000 vectors equally far from every query: too many near-ties to
/// prune, so each query is left to a one-query scan, with the same result.
#[test]
fn batch_equals_single_when_everything_ties() {
    let (n, dim) = (6000, 8);
    let mut rng = Rng(3);
    let vectors: Vec<f32> = std::iter::repeat_n(0.5, n * dim).collect();
    let mut queries = rng.vectors(9, dim);
    // Nearly equal, not equal: 1 ulp apart in one component.
    let mut near = vectors.clone();
    for (i, row) in near.chunks_exact_mut(dim).enumerate() {
        row[i % dim] = f32::from_bits(0.5f32.to_bits() + (i % 3) as u32);
    }
    queries.extend_from_slice(&[0.25; 8]);
    for metric in METRICS {
        for (name, data) in [("equal", &vectors), ("1 ulp apart", &near)] {
            let dir = TempDir::new("batch-ties");
            let store = store_with(&dir, dim, metric, data);
            assert_batch_is_single(&store, &queries, dim, &[("none", Filter::default())], &[1, 10], &format!("{metric:?} {name}"));
        }
    }
}
