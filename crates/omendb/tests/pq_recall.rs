//! Recall of PQ + ADC on real data sets from `shared/data` (see its README).
//! Skipped, with a printed message, when the data directory is absent (a
//! failure instead when CI is set: see common/data.rs).
//! Release-mode figures: `cargo test --release --test pq_recall -- --nocapture`.

mod common;

use common::data::Dataset;
use omendb::quantization::{scan, Codebooks, PqConfig, PqMetric, TopK, TrainOptions};

fn load(dir: &str, name: &str, gt_file: &str) -> Option<Dataset> {
    Dataset::load(dir, name, gt_file)
}

fn exact(metric: PqMetric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        PqMetric::L2 => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
        PqMetric::InnerProduct => -a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>(),
    }
}

/// (recall@10 of the ADC top 10, recall@10 after re-ranking the ADC top 100 exactly).
fn evaluate(name: &str, ds: &Dataset, cfg: PqConfig, metric: PqMetric, seed: u64) -> (f64, f64) {
    let dim = ds.dim;
    let n = ds.base.len() / dim;
    let nq = ds.queries.len() / dim;
    let options = TrainOptions { iterations: 25, seed, threads: 2 };
    let cb = Codebooks::train(&cfg, &ds.base, &options, &mut |_, _| {}).unwrap();
    let mut codes = vec![0u8; n * cfg.code_size()];
    cb.encode(&ds.base, &mut codes, 2);
    let (mut hit, mut hit_rr) = (0usize, 0usize);
    for q in 0..nq {
        let query = &ds.queries[q * dim..(q + 1) * dim];
        let truth = &ds.gt[q * ds.gt_k..q * ds.gt_k + 10];
        let table = cb.query_table(query, metric);
        let mut top = TopK::new(100);
        scan(&table, &codes, 0, None, &mut top);
        let cands = top.into_sorted_vec();
        hit += cands.iter().take(10).filter(|c| truth.contains(&(c.1 as usize))).count();
        let mut rr: Vec<(f32, usize)> = cands
            .iter()
            .map(|&(_, p)| (exact(metric, query, &ds.base[p as usize * dim..(p as usize + 1) * dim]), p as usize))
            .collect();
        rr.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        hit_rr += rr.iter().take(10).filter(|c| truth.contains(&c.1)).count();
    }
    let (r, rr) = (hit as f64 / (10 * nq) as f64, hit_rr as f64 / (10 * nq) as f64);
    println!(
        "recall {name:<10} dim={dim:<4} m={:<2} bits={} {:<12}: recall@10 = {r:.3}, re-ranked top-100 recall@10 = {rr:.3}",
        cfg.m,
        cfg.bits,
        format!("{metric:?}")
    );
    (r, rr)
}

#[test]
fn siftsmall_pq16x8() {
    let Some(ds) = load("siftsmall", "siftsmall", "siftsmall_groundtruth.ivecs") else { return };
    let (r, rr) = evaluate("siftsmall", &ds, PqConfig { dim: 128, m: 16, bits: 8 }, PqMetric::L2, 0);
    // FAISS IndexPQ(128, 16, 8) reaches 0.734 on this set; measured 0.735-0.744 over seeds 0-3.
    assert!(r >= 0.71, "siftsmall m=16 bits=8 recall@10 {r}");
    assert!(rr >= 0.99, "siftsmall m=16 bits=8 re-ranked recall@10 {rr}");
}

#[test]
fn siftsmall_pq32x4() {
    let Some(ds) = load("siftsmall", "siftsmall", "siftsmall_groundtruth.ivecs") else { return };
    let (r, rr) = evaluate("siftsmall", &ds, PqConfig { dim: 128, m: 32, bits: 4 }, PqMetric::L2, 0);
    // Same 16-byte codes as PQ16x8 but 16 centroids per 4-d sub-space: coarser.
    // Measured 0.629-0.638 (re-ranked 0.989-0.993) over seeds 0-3; floor leaves ~0.03.
    assert!(r >= 0.60, "siftsmall m=32 bits=4 recall@10 {r}");
    assert!(rr >= 0.97, "siftsmall m=32 bits=4 re-ranked recall@10 {rr}");
}

#[test]
fn cohere768_pq32x8() {
    let Some(l2) = load("cohere768", "cohere768", "cohere768_groundtruth.ivecs") else { return };
    // Measured 0.766 / 0.999 (seed 0). Only 900 base vectors: k-means has ~3.5 points per centroid.
    let (r, rr) = evaluate("cohere768", &l2, PqConfig { dim: 768, m: 32, bits: 8 }, PqMetric::L2, 0);
    assert!(r >= 0.72 && rr >= 0.99, "cohere768 L2: {r} {rr}");
    let Some(ip) = load("cohere768", "cohere768", "cohere768_groundtruth_ip.ivecs") else { return };
    // Measured 0.742 / 0.999 (seed 0).
    let (r, rr) = evaluate("cohere768", &ip, PqConfig { dim: 768, m: 32, bits: 8 }, PqMetric::InnerProduct, 0);
    assert!(r >= 0.70 && rr >= 0.99, "cohere768 IP: {r} {rr}");
}

#[test]
fn bgem3_1024_pq32x8() {
    let Some(ds) = load("bgem3_1024", "bgem3_1024", "bgem3_1024_groundtruth.ivecs") else { return };
    // Unit vectors: L2 order is cosine order; inner product gives the same order.
    // Measured 0.784 / 1.000 (seed 0).
    let (r, rr) = evaluate("bgem3_1024", &ds, PqConfig { dim: 1024, m: 32, bits: 8 }, PqMetric::L2, 0);
    assert!(r >= 0.74 && rr >= 0.99, "bgem3 L2: {r} {rr}");
    // Measured 0.675 / 0.997 (seed 0). Lower than L2 on the same unit vectors:
    // the L2 table also charges ||reconstruction||^2, which -q.x ignores.
    let (r, rr) = evaluate("bgem3_1024", &ds, PqConfig { dim: 1024, m: 32, bits: 8 }, PqMetric::InnerProduct, 0);
    assert!(r >= 0.63 && rr >= 0.99, "bgem3 IP: {r} {rr}");
}
