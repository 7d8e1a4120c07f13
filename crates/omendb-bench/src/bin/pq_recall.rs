//! PQ recall table, measured through the store (Store::open with
//! PqSettings, put_batch, train_pq, search), on the real data sets of
//! `shared/data` (see its README): recall@10 of the top 10 against the true
//! top 10, without re-rank and with rerank = 100, for several pq_m and both
//! bit widths.
//!
//! Usage: cargo run --release -p omendb-bench --bin pq_recall -- [--data DIR] [--json PATH] [--threads T]
//! DIR defaults to $OMENDB_TEST_DATA, then ../shared/data beside the repository.
//! Prints a markdown table (the one in docs/pq.md).

use std::path::{Path, PathBuf};
use std::time::Instant;

use omendb::{IdBuf, Metric, Options, PqSettings, SearchParams, Store};

#[path = "bench_common/texmex.rs"]
mod texmex;

struct Dataset {
    name: &'static str,
    metric: Metric,
    dim: usize,
    base: Vec<f32>,
    queries: Vec<f32>,
    gt: Vec<usize>,
    gt_k: usize,
}

fn load(root: &Path, dir: &str, name: &'static str, gt_file: &str, metric: Metric) -> Dataset {
    let texmex::RealSet { dim, base, queries, gt, gt_k } = texmex::load(root, dir, gt_file);
    Dataset { name, metric, dim, base, queries, gt, gt_k }
}

struct Row {
    dataset: &'static str,
    metric: &'static str,
    n: usize,
    dim: usize,
    m: u32,
    bits: u32,
    code_bytes: usize,
    recall: f64,
    recall_rerank: f64,
    train_s: f64,
    qps: f64,
    qps_rerank: f64,
}

fn metric_name(m: Metric) -> &'static str {
    match m {
        Metric::L2 => "L2",
        Metric::InnerProduct => "IP",
        Metric::Cosine => "cosine",
    }
}

fn evaluate(ds: &Dataset, m: u32, bits: u32, threads: u32, scratch: &Path) -> Row {
    let dim = ds.dim;
    let n = ds.base.len() / dim;
    let nq = ds.queries.len() / dim;
    let path = scratch.join(format!("recall-{}-{}-{m}-{bits}", ds.name, metric_name(ds.metric)));
    let _ = std::fs::remove_dir_all(&path);
    let opts = Options {
        create: true,
        dim: dim as u32,
        metric: ds.metric,
        pq: Some(PqSettings { m, bits, train_size: 0 }),
        threads,
        ..Options::default()
    };
    let store = Store::open(&path, &opts).unwrap();
    let ids = IdBuf::new((0..n).map(|i| i.to_string()));
    store.put_batch(&ids.batch().unwrap(), &ds.base).unwrap();
    let t = Instant::now();
    store.train_pq(&mut |_, _| {}).unwrap();
    let train_s = t.elapsed().as_secs_f64();
    let mut recalls = [0.0f64; 2];
    let mut qps = [0.0f64; 2];
    for (i, rerank) in [0u32, 100].into_iter().enumerate() {
        let params = SearchParams { rerank, ..Default::default() };
        let t = Instant::now();
        let mut sum = 0.0;
        for q in 0..nq {
            let hits = store.search(&ds.queries[q * dim..(q + 1) * dim], 10, &params).unwrap();
            let got: Vec<usize> = hits
                .iter()
                .map(|h| String::from_utf8(store.key_id(h.key).unwrap()).unwrap().parse().unwrap())
                .collect();
            let truth = &ds.gt[q * ds.gt_k..q * ds.gt_k + 10];
            sum += truth.iter().filter(|r| got.contains(r)).count() as f64 / 10.0;
        }
        qps[i] = nq as f64 / t.elapsed().as_secs_f64();
        recalls[i] = sum / nq as f64;
    }
    let code_bytes = if bits == 4 { m as usize / 2 } else { m as usize };
    drop(store);
    let _ = std::fs::remove_dir_all(&path);
    Row {
        dataset: ds.name,
        metric: metric_name(ds.metric),
        n,
        dim,
        m,
        bits,
        code_bytes,
        recall: recalls[0],
        recall_rerank: recalls[1],
        train_s,
        qps: qps[0],
        qps_rerank: qps[1],
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut data: Option<PathBuf> = None;
    let mut json: Option<PathBuf> = None;
    let mut threads = 0u32;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data" => data = args.next().map(PathBuf::from),
            "--json" => json = args.next().map(PathBuf::from),
            "--threads" => threads = args.next().unwrap().parse().unwrap(),
            other => panic!("unknown argument {other}"),
        }
    }
    let root = texmex::data_root(data);
    let scratch = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/bench-scratch"));
    std::fs::create_dir_all(&scratch).unwrap();
    let sets = [
        load(&root, "siftsmall", "siftsmall", "siftsmall_groundtruth.ivecs", Metric::L2),
        load(&root, "cohere768", "cohere768", "cohere768_groundtruth.ivecs", Metric::L2),
        load(&root, "cohere768", "cohere768", "cohere768_groundtruth_ip.ivecs", Metric::InnerProduct),
        load(&root, "bgem3_1024", "bgem3_1024", "bgem3_1024_groundtruth.ivecs", Metric::Cosine),
    ];
    let mut rows = vec![];
    println!("| data set | metric | n x dim | pq_m | bits | code bytes | recall@10 | recall@10, rerank=100 | train s | qps | qps rerank |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for ds in &sets {
        for m in [8u32, 16, 32, 64] {
            if ds.dim % m as usize != 0 {
                continue;
            }
            for bits in [8u32, 4] {
                let r = evaluate(ds, m, bits, threads, &scratch);
                println!(
                    "| {} | {} | {} x {} | {} | {} | {} | {:.3} | {:.3} | {:.2} | {:.0} | {:.0} |",
                    r.dataset, r.metric, r.n, r.dim, r.m, r.bits, r.code_bytes, r.recall, r.recall_rerank, r.train_s, r.qps, r.qps_rerank
                );
                rows.push(r);
            }
        }
    }
    if let Some(path) = json {
        let body: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "  {{\"dataset\":\"{}\",\"metric\":\"{}\",\"n\":{},\"dim\":{},\"pq_m\":{},\"bits\":{},\"code_bytes\":{},\
                     \"recall_at_10\":{:.4},\"recall_at_10_rerank100\":{:.4},\"train_s\":{:.4},\"qps\":{:.1},\"qps_rerank\":{:.1}}}",
                    r.dataset, r.metric, r.n, r.dim, r.m, r.bits, r.code_bytes, r.recall, r.recall_rerank, r.train_s, r.qps, r.qps_rerank
                )
            })
            .collect();
        std::fs::write(&path, format!("[\n{}\n]\n", body.join(",\n"))).unwrap();
        println!("wrote {}", path.display());
    }
}
