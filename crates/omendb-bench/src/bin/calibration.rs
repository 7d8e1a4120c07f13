//! What `target_recall` delivers, calibrated at training (on held-out
//! stored vectors) and by `Store::calibrate` on the host's queries, on
//! queries that are not stored vectors.
//!
//! Each case's queries are split into two halves; each half calibrates
//! the store in turn and the other half measures (two-fold: every query
//! is measured by a calibration it took no part in). Per target: recall@10
//! against the true top 10 with training's calibration (all queries) and
//! with the host's (the two held-out halves), the setting each chose
//! (nprobe, re-rank depth) and queries/s on one thread (median of
//! `--rounds` rounds, each timing both calibrations' settings, given
//! explicitly, over at least 50 ms of passes over the queries,
//! alternating which goes first).
//!
//! Cases: the real sets of `shared/data` (siftsmall L2, cohere768 by inner
//! product and by L2, bgem3_1024 cosine; 100 queries each, so halves of
//! 50: recall moves by about 0.01 between halves), and the synthetic
//! generator's 100,000 x 128 with 1,000 queries halfway between two
//! stored vectors (true neighbours by exact search).
//!
//! Usage: cargo run --release -p omendb-bench --bin calibration -- [--data DIR] [--json PATH] [--rounds R]
//! DIR defaults to $OMENDB_TEST_DATA, then ../shared/data beside the repository.
//! `--synthetic N,DIM[,Q]` runs only the synthetic case at that size (Q
//! queries, default 1,000): what calibrating costs on a large store.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use omendb::{IdBuf, Metric, Options, PqSettings, SearchParams, Store};

#[path = "bench_common/synthetic.rs"]
mod synthetic;
#[path = "bench_common/stats.rs"]
mod stats;
#[path = "bench_common/texmex.rs"]
mod texmex;

use stats::median;

const K: usize = 10;
const TARGETS: [f32; 3] = [0.9, 0.95, 0.99];

struct Case {
    name: String,
    metric: Metric,
    dim: usize,
    /// PQ sub-spaces (4-bit codes).
    pq_m: usize,
    base: Vec<f32>,
    queries: Vec<f32>,
    /// Per query, the true top K rows (None: found by exact search).
    truth: Option<Vec<Vec<usize>>>,
}

fn real(root: &Path, dir: &str, metric: Metric, gt: &str) -> Case {
    let texmex::RealSet { dim, base, queries, gt, gt_k } = texmex::load(root, dir, gt);
    let truth = gt.chunks_exact(gt_k).map(|row| row[..K].to_vec()).collect();
    let name = format!("{dir} {}", metric_name(metric));
    Case { name, metric, dim, pq_m: dim / 2, base, queries, truth: Some(truth) }
}

/// Synthetic vectors; queries halfway between two stored rows.
fn between(n: usize, dim: usize, nq: usize, metric: Metric) -> Case {
    let gen = synthetic::Synthetic::new(dim);
    let base = gen.rows(0, n);
    let mut rng = synthetic::SplitMix(0xCA1B);
    let mut queries = Vec::with_capacity(nq * dim);
    for _ in 0..nq {
        let (a, b) = ((rng.next() % n as u64) as usize, (rng.next() % n as u64) as usize);
        queries.extend((0..dim).map(|d| (base[a * dim + d] + base[b * dim + d]) / 2.0));
    }
    let name = format!("synthetic {n}x{dim} {}, queries between two stored vectors", metric_name(metric));
    // Codes of dim / 8 bytes from 768 dimensions (the 1M x 768 ANN runs' 96).
    let pq_m = if dim >= 768 { dim / 4 } else { dim / 2 };
    Case { name, metric, dim, pq_m, base, queries, truth: None }
}

/// Tight clusters about `centres` random centres; queries between two
/// centres (30-70% of the way), where no stored vector is: their
/// neighbours lie in several lists, unlike a stored vector's.
fn between_clusters(n: usize, dim: usize, centres: usize, nq: usize, metric: Metric) -> Case {
    let mut rng = synthetic::SplitMix(0xC1A5);
    let points: Vec<f32> = (0..centres * dim).map(|_| rng.unit() * 2.0 - 1.0).collect();
    let mut base = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = (rng.next() % centres as u64) as usize;
        base.extend((0..dim).map(|d| points[c * dim + d] + 0.15 * rng.normal()));
    }
    let mut queries = Vec::with_capacity(nq * dim);
    for _ in 0..nq {
        let (a, b) = ((rng.next() % centres as u64) as usize, (rng.next() % centres as u64) as usize);
        let t = 0.3 + 0.4 * rng.unit();
        queries.extend((0..dim).map(|d| (1.0 - t) * points[a * dim + d] + t * points[b * dim + d] + 0.15 * rng.normal()));
    }
    let name = format!("clusters {n}x{dim} {} ({centres} centres), queries between two centres", metric_name(metric));
    Case { name, metric, dim, pq_m: dim / 2, base, queries, truth: None }
}

fn metric_name(m: Metric) -> &'static str {
    match m {
        Metric::L2 => "L2",
        Metric::InnerProduct => "IP",
        Metric::Cosine => "cosine",
    }
}

fn row_of(store: &Store, key: u64) -> usize {
    String::from_utf8(store.key_id(key).unwrap()).unwrap()[1..].parse().unwrap()
}

/// Least time one q/s figure is measured over (passes over the queries
/// repeated): a pass of 50 queries over a small set takes under 1 ms.
const MIN_PASS_S: f64 = 0.05;

/// recall@K of `rows` (indices into the queries) at `params`, and q/s of
/// passes over them (at least `MIN_PASS_S` of them).
fn measure(store: &Store, case: &Case, truth: &[Vec<usize>], rows: &[usize], params: &SearchParams) -> (f64, f64) {
    let search = |q: usize| store.search(&case.queries[q * case.dim..][..case.dim], K, params).unwrap();
    let start = Instant::now();
    let hits: Vec<_> = rows.iter().map(|&q| search(q)).collect();
    let mut searched = rows.len();
    while start.elapsed().as_secs_f64() < MIN_PASS_S {
        rows.iter().for_each(|&q| drop(search(q)));
        searched += rows.len();
    }
    let qps = searched as f64 / start.elapsed().as_secs_f64();
    let mut found = 0;
    for (&q, hits) in rows.iter().zip(hits) {
        found += hits.iter().filter(|h| truth[q].contains(&row_of(store, h.key))).count();
    }
    (found as f64 / (rows.len() * K) as f64, qps)
}

fn run(case: &Case, rounds: usize, scratch: &Path, json: &mut Option<std::fs::File>) {
    let dim = case.dim;
    let (n, nq) = (case.base.len() / dim, case.queries.len() / dim);
    let dir = scratch.join("store");
    let _ = std::fs::remove_dir_all(&dir);
    let pq = PqSettings { m: case.pq_m as u32, bits: 4, train_size: 0 };
    let options = Options { metric: case.metric, pq: Some(pq), ivf_lists: Some(0), ..Options::create(dim as u32) };
    let store = Store::open(&dir, &options).unwrap();
    let ids = IdBuf::new((0..n).map(|i| format!("r{i}")));
    store.put_batch(&ids.batch().unwrap(), &case.base).unwrap();
    store.train_pq(&mut |_, _| {}).unwrap();
    let truth: Vec<Vec<usize>> = match &case.truth {
        Some(t) => t.clone(),
        None => {
            let exact = SearchParams { exact: true, ..Default::default() };
            let hits = store.search_batch(&case.queries, K, &exact).unwrap();
            hits.iter().map(|h| h.iter().map(|h| row_of(&store, h.key)).collect()).collect()
        }
    };
    let halves: [Vec<usize>; 2] = [(0..nq).filter(|q| q % 2 == 0).collect(), (0..nq).filter(|q| q % 2 == 1).collect()];
    let all: Vec<usize> = (0..nq).collect();
    let at = |t: f32| SearchParams { target_recall: t, ..Default::default() };
    let plan = |store: &Store, t: f32| {
        let p = store.search_plan(K, &at(t)).unwrap();
        (p.nprobe, p.rerank)
    };
    let nlist = store.stats().unwrap().ivf_lists;
    println!("\n{} ({n} vectors, {nq} queries, {nlist} lists, PQ{}x4)", case.name, case.pq_m);
    println!("| target | training: recall / nprobe, re-rank / q/s | host's queries: recall (held-out halves) / nprobe, re-rank / q/s |");
    println!("|---:|---|---|");

    // Training's calibration, then each half's (measuring the other).
    let trained_plans: Vec<_> = TARGETS.iter().map(|&t| plan(&store, t)).collect();
    let trained_recall: Vec<f64> = TARGETS.iter().map(|&t| measure(&store, case, &truth, &all, &at(t)).0).collect();
    let mut host_plans = vec![Vec::new(); 2];
    let mut host_found = vec![0.0; TARGETS.len()];
    let mut calibrate_s = Vec::new();
    for (h, half) in halves.iter().enumerate() {
        let queries: Vec<f32> = half.iter().flat_map(|&q| case.queries[q * dim..][..dim].iter().copied()).collect();
        let t0 = Instant::now();
        store.calibrate(&queries, &mut |_, _| {}).unwrap();
        calibrate_s.push(t0.elapsed().as_secs_f64());
        let other = &halves[1 - h];
        for (i, &t) in TARGETS.iter().enumerate() {
            host_plans[h].push(plan(&store, t));
            host_found[i] += measure(&store, case, &truth, other, &at(t)).0 * other.len() as f64;
        }
    }
    // Timing: the trained settings and each half's, given explicitly (the
    // setting is what a calibration chooses), in the same rounds.
    let explicit = |(nprobe, rerank): (u32, u32)| SearchParams { nprobe, rerank, ..Default::default() };
    for (i, &t) in TARGETS.iter().enumerate() {
        let (mut qps_trained, mut qps_host) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let mut pass = |which: bool| {
                if which {
                    qps_trained.push(measure(&store, case, &truth, &all, &explicit(trained_plans[i])).1);
                } else {
                    // Each half's setting on the other half: as measured.
                    let q: Vec<f64> = (0..2).map(|h| measure(&store, case, &truth, &halves[1 - h], &explicit(host_plans[h][i])).1).collect();
                    qps_host.push(2.0 / (1.0 / q[0] + 1.0 / q[1]));
                }
            };
            pass(round % 2 == 0);
            pass(round % 2 == 1);
        }
        let host_recall = host_found[i] / nq as f64;
        let (tq, hq) = (median(qps_trained), median(qps_host));
        let hp: Vec<String> = host_plans.iter().map(|p| format!("{}, {}", p[i].0, p[i].1)).collect();
        println!(
            "| {t} | {:.3} / {}, {} / {:.0} | {host_recall:.3} / {} / {hq:.0} ({:.2}x) |",
            trained_recall[i],
            trained_plans[i].0,
            trained_plans[i].1,
            tq,
            hp.join(" and "),
            hq / tq
        );
        if let Some(f) = json {
            writeln!(
                f,
                "{{\"case\": \"{}\", \"n\": {n}, \"queries\": {nq}, \"nlist\": {nlist}, \"target\": {t}, \
                 \"trained_recall\": {:.4}, \"trained_nprobe\": {}, \"trained_rerank\": {}, \"trained_qps\": {tq:.1}, \
                 \"host_recall\": {host_recall:.4}, \"host_settings\": [[{}, {}], [{}, {}]], \"host_qps\": {hq:.1}, \
                 \"calibrate_s\": [{:.3}, {:.3}], \"rounds\": {rounds}}}",
                case.name,
                trained_recall[i],
                trained_plans[i].0,
                trained_plans[i].1,
                host_plans[0][i].0,
                host_plans[0][i].1,
                host_plans[1][i].0,
                host_plans[1][i].1,
                calibrate_s[0],
                calibrate_s[1]
            )
            .unwrap();
        }
    }
    println!("calibrate: {:.3} s and {:.3} s ({} queries each)", calibrate_s[0], calibrate_s[1], halves[0].len());
    store.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    let rounds: usize = flag("--rounds").map_or(5, |r| r.parse().unwrap());
    let mut json = flag("--json").map(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).unwrap());
    let scratch = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-scratch/calibration");
    std::fs::create_dir_all(&scratch).unwrap();
    if let Some(size) = flag("--synthetic") {
        let v: Vec<usize> = size.split(',').map(|x| x.parse().unwrap()).collect();
        run(&between(v[0], v[1], v.get(2).copied().unwrap_or(1000), Metric::L2), rounds, &scratch, &mut json);
        return;
    }
    let root = texmex::data_root(flag("--data").map(PathBuf::from));
    let cases = [
        real(&root, "siftsmall", Metric::L2, "siftsmall_groundtruth.ivecs"),
        real(&root, "cohere768", Metric::InnerProduct, "cohere768_groundtruth_ip.ivecs"),
        real(&root, "cohere768", Metric::L2, "cohere768_groundtruth.ivecs"),
        real(&root, "bgem3_1024", Metric::Cosine, "bgem3_1024_groundtruth.ivecs"),
        between(100_000, 128, 1000, Metric::L2),
        between_clusters(100_000, 64, 256, 1000, Metric::L2),
        between_clusters(100_000, 64, 256, 1000, Metric::InnerProduct),
    ];
    for case in &cases {
        run(case, rounds, &scratch, &mut json);
    }
}
