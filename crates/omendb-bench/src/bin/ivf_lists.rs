//! How the number of IVF lists changes search speed on the real sets of
//! `shared/data` (docs/benchmarks.md, "Lists of at least a block").
//!
//! Per set, one store a floor F, each with `min(round(sqrt(n)), n / F)`
//! lists (at least 1) given explicitly (`Options::ivf_lists`): the default
//! list count is this with F = 64 (`index::auto_lists`). PQ(dim / 2)x4
//! codes, as scripts/ann.sh builds. Each store's recall@10 is measured at
//! every setting of the grid (nprobe x re-rank depth, explicit), against
//! the set's ground truth; then `--rounds` rounds time every setting on
//! every store in turn (one thread, this thread's CPU time, at least
//! `--pass-ms` of passes over the queries), the store measured first
//! rotating each round. Reported per store and recall target (0.95,
//! 0.99): the setting with the highest median queries/s among those that
//! reach it.
//!
//! Usage: cargo run --release -p omendb-bench --bin ivf_lists -- [--data DIR] [--floors 32,64,128] [--rounds 5] [--pass-ms 100] [--json PATH]
//! DIR defaults to $OMENDB_TEST_DATA, then ../shared/data beside the repository.

use std::path::PathBuf;

use omendb::{IdBuf, Metric, Options, PqSettings, SearchParams, Store};

#[path = "bench_common/args.rs"]
mod args;
#[path = "bench_common/stats.rs"]
mod stats;
#[path = "bench_common/texmex.rs"]
mod texmex;

use stats::median;

const K: usize = 10;
const TARGETS: [f64; 2] = [0.95, 0.99];
const RERANKS: [u32; 2] = [20, 40];

/// The sets: (directory, metric, ground-truth file).
const SETS: [(&str, Metric, &str); 4] = [
    ("siftsmall", Metric::L2, "siftsmall_groundtruth.ivecs"),
    ("cohere768", Metric::L2, "cohere768_groundtruth.ivecs"),
    ("cohere768", Metric::InnerProduct, "cohere768_groundtruth_ip.ivecs"),
    ("bgem3_1024", Metric::L2, "bgem3_1024_groundtruth.ivecs"),
];

/// This thread's CPU time, in seconds: a pass is not charged for time
/// the thread spent descheduled on a shared host.
fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The list count of floor `floor` for `n` vectors.
fn lists_for(n: usize, floor: usize) -> u32 {
    ((n as f64).sqrt().round() as usize).min(n / floor).max(1) as u32
}

struct Measured {
    floor: usize,
    lists: u32,
    /// Per setting: recall@10 and the queries/s of each round.
    recall: Vec<f64>,
    qps: Vec<Vec<f64>>,
}

fn main() {
    let flags = args::Flags::from_env();
    let root = texmex::data_root(flags.get("--data").map(PathBuf::from));
    let floors: Vec<usize> = flags.get("--floors").unwrap_or("32,64,128".into()).split(',').map(|f| f.parse().expect("--floors: integers")).collect();
    let rounds: usize = flags.parse_or("--rounds", 5);
    let pass_s = flags.parse_or("--pass-ms", 100.0) / 1000.0;
    let scratch = std::env::temp_dir().join(format!("omendb-ivf-lists-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap_or_else(|e| panic!("{}: {e}", scratch.display()));
    let mut report = Vec::new();
    for (dir, metric, gt_file) in SETS {
        let set = texmex::load(&root, dir, gt_file);
        let (dim, n, nq) = (set.dim, set.base.len() / set.dim, set.queries.len() / set.dim);
        let queries: Vec<&[f32]> = set.queries.chunks_exact(dim).collect();
        let truth: Vec<&[usize]> = set.gt.chunks_exact(set.gt_k).map(|row| &row[..K]).collect();
        let name = format!("{dir}{}", if metric == Metric::InnerProduct { " by inner product" } else { "" });
        let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        let mut stores = Vec::new();
        for &floor in &floors {
            let lists = lists_for(n, floor);
            let path = scratch.join(format!("{dir}-{}-{floor}", metric.code()));
            let _ = std::fs::remove_dir_all(&path);
            let options = Options {
                metric,
                pq: Some(PqSettings { m: (dim / 2) as u32, bits: 4, train_size: 0 }),
                ivf_lists: Some(lists),
                ..Options::create(dim as u32)
            };
            let store = Store::open(&path, &options).expect("create");
            store.put_batch(&IdBuf::new(ids.iter().map(String::as_str)).batch().expect("ids"), &set.base).expect("put");
            store.train_pq(&mut |_, _| {}).expect("train");
            stores.push((floor, lists, path, store));
        }
        // The grid: every probe count up to the largest store's lists.
        let max_lists = stores.iter().map(|s| s.1).max().unwrap_or(1);
        let grid: Vec<SearchParams> = (1..=max_lists.min(32))
            .flat_map(|nprobe| RERANKS.map(|rerank| SearchParams { nprobe, rerank, threads: 1, ..SearchParams::default() }))
            .collect();
        let mut measured: Vec<Measured> = stores
            .iter()
            .map(|(floor, lists, _, store)| {
                let recall = grid
                    .iter()
                    .map(|params| {
                        let found: usize = queries
                            .iter()
                            .zip(&truth)
                            .map(|(q, want)| {
                                let hits = store.search(q, K, params).expect("search");
                                hits.iter().filter(|h| want.contains(&String::from_utf8(store.key_id(h.key).expect("key")).unwrap().parse().unwrap())).count()
                            })
                            .sum();
                        found as f64 / (nq * K) as f64
                    })
                    .collect();
                Measured { floor: *floor, lists: *lists, recall, qps: vec![Vec::new(); grid.len()] }
            })
            .collect();
        for round in 0..rounds {
            for (g, params) in grid.iter().enumerate() {
                for s in 0..stores.len() {
                    let s = (s + round) % stores.len();
                    let store = &stores[s].3;
                    let start = thread_cpu_s();
                    let mut done = 0usize;
                    while thread_cpu_s() - start < pass_s {
                        for q in &queries {
                            std::hint::black_box(store.search(q, K, params).expect("search"));
                        }
                        done += nq;
                    }
                    measured[s].qps[g].push(done as f64 / (thread_cpu_s() - start));
                }
            }
        }
        let mut cases = Vec::new();
        for m in &measured {
            let mut line = format!("{name}: floor {} ({} lists)", m.floor, m.lists);
            let mut best_json = Vec::new();
            for target in TARGETS {
                let best = (0..grid.len()).filter(|&g| m.recall[g] >= target).map(|g| (median(m.qps[g].clone()), g)).max_by(|a, b| a.0.total_cmp(&b.0));
                match best {
                    Some((qps, g)) => {
                        line += &format!(" | >= {target}: {qps:.0} q/s (nprobe {}, re-rank {}, recall {:.3})", grid[g].nprobe, grid[g].rerank, m.recall[g]);
                        best_json.push(format!(
                            "{{\"target\": {target}, \"qps\": {qps:.1}, \"nprobe\": {}, \"rerank\": {}, \"recall\": {:.4}}}",
                            grid[g].nprobe, grid[g].rerank, m.recall[g]
                        ));
                    }
                    None => line += &format!(" | >= {target}: not reached"),
                }
            }
            println!("{line}");
            cases.push(format!("{{\"floor\": {}, \"lists\": {}, \"best\": [{}]}}", m.floor, m.lists, best_json.join(", ")));
        }
        report.push(format!("{{\"set\": \"{name}\", \"n\": {n}, \"dim\": {dim}, \"stores\": [{}]}}", cases.join(", ")));
        for (_, _, path, store) in stores {
            store.close().expect("close");
            let _ = std::fs::remove_dir_all(path);
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if let Some(path) = flags.get("--json") {
        let json = format!("{{\"rounds\": {rounds}, \"pass_ms\": {}, \"floors\": {floors:?}, \"sets\": [{}]}}\n", pass_s * 1000.0, report.join(", "));
        std::fs::write(&path, json).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}
