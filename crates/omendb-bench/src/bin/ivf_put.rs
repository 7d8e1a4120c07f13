//! Writes and opens of an IVF store, and the coarse search behind them
//! (issue 19: "put_batch into a trained IVF store at least 0.5x the raw put
//! rate", "the coarse search over the centroids is itself fast for
//! 4,096-65,536 lists", "open of a 1M-vector IVF store under 200 ms").
//!
//! Usage (release build: `cargo run --release -p omendb-bench --bin ivf_put -- CMD ...`):
//!
//! - `put --dim D --base N --batch B --nlist L,L.. [--rounds R] [--batches K] [--code-bytes C]`:
//!   three stores side by side, each preloaded with the same N vectors:
//!   `raw` (no PQ, no index: the "raw put rate"), `pq` (trained flat PQ,
//!   no index) and one `ivf` store per nlist (0 = auto), trained. Each
//!   round puts the same K fresh batches of B vectors into every store in
//!   turn; the figures are the median over rounds of vectors/s and the
//!   whole stream's rate (all rounds' vectors over all their time, the
//!   files' growth steps included), each as a ratio to `raw`'s.
//! - `open --dim D --n N [--rounds R]`: a plain and an IVF store (auto
//!   nlist) of N vectors, checkpointed and closed; each round opens each,
//!   times the open and the first search (target recall 0.95), closes.
//! - `coarse --dim D --nlist L,L.. [--points P] [--queries Q] [--trained]`:
//!   the coarse quantizer alone (centroids = data rows, or with
//!   `--trained` the store's k-means over 40 rows a list), one thread: build time
//!   (the grouping, forced whatever nlist, and the screen), assignment of
//!   P vectors by scoring every centroid (`exact`) and as the store
//!   assigns (screened where the screen pays, else through the groups;
//!   `assign_grouped_us`, `"screened"` says which), probes of Q queries
//!   by scoring every centroid and through the groups, and how often
//!   they agree.
//! - Every command: `--like FILE.fvecs` draws vectors around the rows of
//!   a real set (TEXMEX; its dimension replaces `--dim`) instead of the
//!   clustered generator, e.g. SIFT's, where the projection screen does
//!   not apply and the byte screen does.
//!
//! - `recall --dim D --base N --nlist L [--queries Q]`: one IVF store of N
//!   vectors with L lists (0 = auto); recall@10 against exact search and
//!   microseconds a query, one thread, at targets 0.95 (the default) and 0.99 and at fixed
//!   nprobe without re-rank (how the coarse search's approximations show
//!   in search quality).
//!
//! - `growth --dim D --sizes N,N.. [--queries Q] [--rounds R]`: q/s and
//!   recall@10 at targets 0.95 and 0.99 of one IVF store per size (auto
//!   nlist), timed in turn in each round, one thread, and how many times
//!   fewer q/s each answers than the first size (issue 19: "at 10,000,000
//!   vectors, queries/s at recall 0.95 falls by at most 3x from 1M").
//!
//! - `latency --dim D --n N --query-threads T,T.. [--queries Q] [--rounds R]`:
//!   one IVF store of N vectors (auto nlist); queries one at a time at
//!   targets 0.95 and 0.99, and exact (a tenth of the queries), with each
//!   `query_threads` in turn in each round (in reverse order every other
//!   round): q/s (median over rounds), recall@10, and the ratio to the
//!   first `query_threads` (one query's work shared by threads).
//!
//! Every command takes `--json PATH` (appends one JSON object a line) and
//! `--dir DIR` (scratch, default target/bench-scratch/ivf_put).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use omendb::quantization::PqMetric;
use omendb::{CoarseQuantizer, IdBuf, Options, PqSettings, SearchParams, Store};

#[path = "bench_common/synthetic.rs"]
mod synthetic;
use synthetic::Synthetic;
#[path = "bench_common/texmex.rs"]
mod texmex;

struct Args {
    cmd: String,
    dir: PathBuf,
    dim: usize,
    base: usize,
    n: usize,
    sizes: Vec<usize>,
    batch: usize,
    batches: usize,
    rounds: usize,
    nlists: Vec<u32>,
    code_bytes: usize,
    points: usize,
    queries: usize,
    trained: bool,
    query_threads: Vec<u32>,
    json: Option<PathBuf>,
    /// `--like FILE.fvecs`: rows like that set's (`Synthetic::like`), its
    /// dimension for `--dim`.
    like: Option<Vec<f32>>,
}

fn parse() -> Args {
    let mut it = std::env::args().skip(1);
    let cmd = it.next().unwrap_or_else(|| "put".into());
    let mut a = Args {
        cmd,
        dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/bench-scratch/ivf_put")),
        dim: 128,
        base: 50_000,
        n: 1_000_000,
        sizes: vec![1_000_000, 10_000_000],
        batch: 10_000,
        batches: 2,
        rounds: 5,
        nlists: vec![0],
        code_bytes: 0,
        points: 4_000,
        queries: 200,
        trained: false,
        query_threads: vec![1, 2],
        json: None,
        like: None,
    };
    while let Some(x) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{x} needs a value"));
        match x.as_str() {
            "--dir" => a.dir = PathBuf::from(v()),
            "--dim" => a.dim = v().parse().unwrap(),
            "--base" => a.base = v().parse().unwrap(),
            "--n" => a.n = v().parse().unwrap(),
            "--sizes" => a.sizes = v().split(',').map(|s| s.parse().unwrap()).collect(),
            "--batch" => a.batch = v().parse().unwrap(),
            "--batches" => a.batches = v().parse().unwrap(),
            "--rounds" => a.rounds = v().parse().unwrap(),
            "--nlist" => a.nlists = v().split(',').map(|s| s.parse().unwrap()).collect(),
            "--code-bytes" => a.code_bytes = v().parse().unwrap(),
            "--points" => a.points = v().parse().unwrap(),
            "--queries" => a.queries = v().parse().unwrap(),
            "--trained" => a.trained = true,
            "--query-threads" => a.query_threads = v().split(',').map(|s| s.parse().unwrap()).collect(),
            "--json" => a.json = Some(PathBuf::from(v())),
            "--like" => {
                let (dim, rows) = texmex::read_vecs(&PathBuf::from(v()), f32::from_le_bytes);
                (a.dim, a.like) = (dim, Some(rows));
            }
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// The vectors every command draws: the clustered generator, or rows like
/// `--like`'s set.
fn synthetic(a: &Args) -> Synthetic {
    match &a.like {
        Some(rows) => Synthetic::like(rows.clone(), a.dim),
        None => Synthetic::new(a.dim),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ids(first: usize, n: usize) -> IdBuf {
    IdBuf::new((first..first + n).map(|i| format!("v{i:09}")))
}

fn put_all(store: &Store, syn: &Synthetic, first: usize, n: usize) {
    for b in (0..n).step_by(10_000) {
        let k = 10_000.min(n - b);
        let rows = syn.rows((first + b) as u64, k);
        store.put_batch(&ids(first + b, k).batch().unwrap(), &rows).unwrap();
    }
}

/// 4-bit PQ with `code_bytes` bytes a code (default dim / 8: 16 B at 128,
/// 96 B at 768), the largest such m that divides dim.
fn pq_settings(dim: usize, code_bytes: usize) -> PqSettings {
    let want = if code_bytes > 0 { code_bytes * 2 } else { dim / 4 };
    let m = (1..=want.min(dim)).rev().find(|m| dim.is_multiple_of(*m)).unwrap();
    PqSettings { m: m as u32, bits: 4, train_size: 0 }
}

/// The keys of each query's 10 exact nearest neighbours, by one exact batch
/// (blocked matrix products, every thread: at 10M vectors one exact search
/// at a time took minutes).
fn exact_neighbours(store: &Store, queries: &[f32]) -> Vec<Vec<u64>> {
    store
        .search_batch(queries, 10, &SearchParams { exact: true, ..Default::default() })
        .unwrap()
        .iter()
        .map(|hits| hits.iter().map(|h| h.key).collect())
        .collect()
}

fn emit(a: &Args, line: String) {
    println!("{line}");
    if let Some(path) = &a.json {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        writeln!(f, "{line}").unwrap();
    }
}

fn cmd_put(a: &Args) {
    let syn = synthetic(a);
    let pq = pq_settings(a.dim, a.code_bytes);
    let _ = std::fs::remove_dir_all(&a.dir);
    std::fs::create_dir_all(&a.dir).unwrap();
    let mut kinds: Vec<(String, Option<PqSettings>, Option<u32>)> = vec![("raw".into(), None, None), ("pq".into(), Some(pq), None)];
    for &l in &a.nlists {
        kinds.push((format!("ivf{}", if l == 0 { "auto".to_string() } else { l.to_string() }), Some(pq), Some(l)));
    }
    let mut stores = Vec::new();
    for (name, pq, ivf) in &kinds {
        let t = Instant::now();
        let opts = Options { pq: *pq, ivf_lists: *ivf, ..Options::create(a.dim as u32) };
        let store = Store::open(a.dir.join(name), &opts).unwrap();
        put_all(&store, &syn, 0, a.base);
        if pq.is_some() {
            store.train_pq(&mut |_, _| {}).unwrap();
        }
        store.checkpoint().unwrap();
        let lists = store.stats().unwrap().ivf_lists;
        eprintln!("{name}: {} x {} built in {:.1} s ({lists} lists)", a.base, a.dim, t.elapsed().as_secs_f64());
        stores.push((name.clone(), store, lists));
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); stores.len()];
    let mut seconds = vec![0.0f64; stores.len()];
    let mut next = a.base;
    for round in 0..a.rounds {
        let batches: Vec<(IdBuf, Vec<f32>)> =
            (0..a.batches).map(|b| (ids(next + b * a.batch, a.batch), syn.rows((next + b * a.batch) as u64, a.batch))).collect();
        next += a.batches * a.batch;
        // Rotate who goes first, so no store always follows another's writeback.
        for i in (0..stores.len()).map(|i| (i + round) % stores.len()) {
            let store = &stores[i].1;
            let t = Instant::now();
            for (ids, rows) in &batches {
                store.put_batch(&ids.batch().unwrap(), rows).unwrap();
            }
            let took = t.elapsed().as_secs_f64();
            rates[i].push((a.batches * a.batch) as f64 / took);
            seconds[i] += took;
        }
        eprintln!("round {round}: {:?}", rates.iter().map(|r| r.last().unwrap().round()).collect::<Vec<_>>());
    }
    // Two figures: the median of the rounds' rates, and the whole stream's
    // (every vector put over all the time it took). They differ because a
    // store's files grow in steps (up to 256 MiB each, `MappedFile`): the
    // rounds that grow them are the slow ones, and in memory (tmpfs) a
    // step's fallocate, which zero-fills its pages, is a large part of a
    // raw put. The median leaves the steps out; the stream counts them.
    let raw = median(rates[0].clone());
    let total = (a.rounds * a.batches * a.batch) as f64;
    let raw_stream = total / seconds[0];
    let mut parts = Vec::new();
    for (((name, _, lists), r), secs) in stores.iter().zip(&rates).zip(&seconds) {
        let (med, stream) = (median(r.clone()), total / secs);
        parts.push(format!(
            "\"{name}\": {{\"lists\": {lists}, \"per_s\": {med:.0}, \"ratio_to_raw\": {:.3}, \"stream_per_s\": {stream:.0}, \"stream_ratio_to_raw\": {:.3}, \"runs\": [{}]}}",
            med / raw,
            stream / raw_stream,
            r.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ")
        ));
        eprintln!(
            "{name:>10} ({lists:>5} lists): median of rounds {med:>10.0} vectors/s, {:.3} x raw; whole stream {stream:>10.0} vectors/s, {:.3} x raw",
            med / raw,
            stream / raw_stream
        );
    }
    emit(
        a,
        format!(
            "{{\"cmd\": \"put\", \"dim\": {}, \"base\": {}, \"batch\": {}, \"batches\": {}, \"rounds\": {}, \"pq_m\": {}, \"stores\": {{{}}}}}",
            a.dim,
            a.base,
            a.batch,
            a.batches,
            a.rounds,
            pq.m,
            parts.join(", ")
        ),
    );
    for (_, store, _) in stores {
        store.close_discard().unwrap();
    }
    let _ = std::fs::remove_dir_all(&a.dir);
}

fn cmd_open(a: &Args) {
    let syn = synthetic(a);
    let pq = pq_settings(a.dim, a.code_bytes);
    let query = syn.rows(1 << 40, 1);
    let kinds = [("raw", None, None), ("ivf", Some(pq), Some(0))];
    for (name, pq, ivf) in kinds {
        let dir = a.dir.join(format!("open-{name}-{}x{}", a.n, a.dim));
        if !dir.exists() {
            std::fs::create_dir_all(&a.dir).unwrap();
            let t = Instant::now();
            let store = Store::open(&dir, &Options { pq, ivf_lists: ivf, ..Options::create(a.dim as u32) }).unwrap();
            put_all(&store, &syn, 0, a.n);
            if pq.is_some() {
                store.train_pq(&mut |_, _| {}).unwrap();
            }
            store.close().unwrap();
            eprintln!("{name}: built {} x {} in {:.1} s", a.n, a.dim, t.elapsed().as_secs_f64());
        }
    }
    let mut times: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); kinds.len()];
    let mut lists = 0;
    for round in 0..a.rounds {
        for (i, (name, _, _)) in kinds.iter().enumerate() {
            let dir = a.dir.join(format!("open-{name}-{}x{}", a.n, a.dim));
            let t = Instant::now();
            let store = Store::open(&dir, &Options::default()).unwrap();
            let open_ms = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            let hits = store.search(&query, 10, &SearchParams::default()).unwrap();
            let search_ms = t.elapsed().as_secs_f64() * 1e3;
            assert_eq!(hits.len(), 10);
            if *name == "ivf" {
                lists = store.stats().unwrap().ivf_lists;
            }
            store.close().unwrap();
            times[i].0.push(open_ms);
            times[i].1.push(search_ms);
            eprintln!("round {round} {name}: open {open_ms:.1} ms, first search {search_ms:.2} ms");
        }
    }
    let parts: Vec<String> = kinds
        .iter()
        .zip(&times)
        .map(|((name, _, _), (o, s))| {
            format!(
                "\"{name}\": {{\"open_ms\": {:.1}, \"first_search_ms\": {:.2}, \"open_runs\": {:?}, \"search_runs\": {:?}}}",
                median(o.clone()),
                median(s.clone()),
                o.iter().map(|x| (x * 10.0).round() / 10.0).collect::<Vec<_>>(),
                s.iter().map(|x| (x * 100.0).round() / 100.0).collect::<Vec<_>>()
            )
        })
        .collect();
    emit(
        a,
        format!(
            "{{\"cmd\": \"open\", \"n\": {}, \"dim\": {}, \"lists\": {lists}, \"pq_m\": {}, \"rounds\": {}, {}}}",
            a.n,
            a.dim,
            pq.m,
            a.rounds,
            parts.join(", ")
        ),
    );
}

fn cmd_coarse(a: &Args) {
    let syn = synthetic(a);
    let dim = a.dim;
    let points = syn.rows(1 << 32, a.points);
    let queries = syn.rows(1 << 36, a.queries);
    for &nlist in &a.nlists {
        let nlist = nlist as usize;
        let centroids = if a.trained {
            // As training makes them: k-means over 40 rows a list.
            let sample = syn.rows(1 << 40, 40 * nlist);
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let c = CoarseQuantizer::train(dim, PqMetric::L2, &sample, nlist, 10, 7, threads, &mut || {}).unwrap();
            (0..nlist as u32).flat_map(|l| c.centroid(l).to_vec()).collect()
        } else {
            syn.rows(1 << 30, nlist)
        };
        let mut build = Vec::new();
        let mut coarse = None;
        for _ in 0..a.rounds {
            let t = Instant::now();
            let c = CoarseQuantizer::with_grouping(dim, PqMetric::L2, centroids.clone(), true).unwrap();
            // The screen is built at the first assignment: timed here.
            c.is_screened();
            coarse = Some(c);
            build.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let coarse = coarse.unwrap();
        let d2 = |x: &[f32], c: u32| -> f64 { x.iter().zip(coarse.centroid(c)).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum() };
        let (mut exact, mut fast) = (vec![0u32; a.points], vec![0u32; a.points]);
        let (mut t_exact, mut t_fast) = (Vec::new(), Vec::new());
        for _ in 0..a.rounds {
            let t = Instant::now();
            coarse.assign_exact(&points, &mut exact, 1);
            t_exact.push(t.elapsed().as_secs_f64() * 1e6 / a.points as f64);
            let t = Instant::now();
            coarse.assign(&points, &mut fast, 1);
            t_fast.push(t.elapsed().as_secs_f64() * 1e6 / a.points as f64);
        }
        let same = exact.iter().zip(&fast).filter(|(a, b)| a == b).count() as f64 / a.points as f64;
        let mut excess: Vec<f64> = points
            .chunks_exact(dim)
            .zip(exact.iter().zip(&fast))
            .map(|(x, (&e, &f))| d2(x, f) / d2(x, e).max(f64::MIN_POSITIVE) - 1.0)
            .collect();
        excess.sort_by(f64::total_cmp);
        let p99_excess = excess[(excess.len() * 99 / 100).min(excess.len() - 1)];
        let mut probes = Vec::new();
        for nprobe in [1usize, 16, 64] {
            let mut scratch = Vec::new();
            let (mut te, mut tf) = (Vec::new(), Vec::new());
            let mut found = 0usize;
            for _ in 0..a.rounds {
                let t = Instant::now();
                let want: Vec<Vec<u32>> = queries.chunks_exact(dim).map(|q| coarse.probe_exact(q, nprobe)).collect();
                te.push(t.elapsed().as_secs_f64() * 1e6 / a.queries as f64);
                let t = Instant::now();
                let got: Vec<Vec<u32>> = queries.chunks_exact(dim).map(|q| coarse.probe(q, nprobe, &mut scratch)).collect();
                tf.push(t.elapsed().as_secs_f64() * 1e6 / a.queries as f64);
                found = want.iter().zip(&got).map(|(w, g)| w.iter().filter(|l| g.contains(l)).count()).sum();
            }
            let recall = found as f64 / (a.queries * nprobe.min(nlist)) as f64;
            let (me, mf) = (median(te), median(tf));
            eprintln!("  nprobe {nprobe:>3}: exact {me:>8.1} us, grouped {mf:>8.1} us ({:.2}x), lists found {recall:.4}", me / mf);
            probes.push(format!(
                "{{\"nprobe\": {nprobe}, \"exact_us\": {me:.2}, \"grouped_us\": {mf:.2}, \"speedup\": {:.2}, \"lists_found\": {recall:.4}}}",
                me / mf
            ));
        }
        let (me, mf) = (median(t_exact), median(t_fast));
        eprintln!(
            "dim {dim} nlist {nlist}: build {:.1} ms; assign exact {me:.1} us, {} {mf:.1} us ({:.2}x), same list {same:.4}, p99 excess {p99_excess:.4}",
            median(build.clone()),
            if coarse.is_screened() { "screened" } else { "grouped" },
            me / mf
        );
        emit(
            a,
            format!(
                "{{\"cmd\": \"coarse\", \"dim\": {dim}, \"nlist\": {nlist}, \"trained\": {}, \"grouped_by_default\": {}, \"screened\": {}, \"build_ms\": {:.2}, \"assign_exact_us\": {me:.2}, \"assign_grouped_us\": {mf:.2}, \"assign_speedup\": {:.2}, \"assign_same\": {same:.4}, \"assign_p99_excess\": {p99_excess:.5}, \"probes\": [{}]}}",
                a.trained,
                omendb::CoarseQuantizer::grouped_for(nlist),
                coarse.is_screened(),
                median(build),
                me / mf,
                probes.join(", ")
            ),
        );
    }
}

fn cmd_recall(a: &Args) {
    let syn = synthetic(a);
    let pq = pq_settings(a.dim, a.code_bytes);
    let _ = std::fs::remove_dir_all(&a.dir);
    let store = Store::open(&a.dir, &Options { pq: Some(pq), ivf_lists: Some(a.nlists[0]), ..Options::create(a.dim as u32) }).unwrap();
    put_all(&store, &syn, 0, a.base);
    store.train_pq(&mut |_, _| {}).unwrap();
    // Half the queries are stored vectors' neighbours-to-be: put after training.
    put_all(&store, &syn, a.base, a.base / 10);
    let lists = store.stats().unwrap().ivf_lists;
    let queries = syn.rows(1 << 36, a.queries);
    let exact = exact_neighbours(&store, &queries);
    let mut parts = Vec::new();
    let settings = [
        ("target 0.95", SearchParams::default()),
        ("target 0.99", SearchParams { target_recall: 0.99, ..Default::default() }),
        ("nprobe 8", SearchParams { nprobe: 8, ..Default::default() }),
        ("nprobe 32", SearchParams { nprobe: 32, ..Default::default() }),
    ];
    for (name, params) in settings {
        let params = SearchParams { threads: 1, ..params };
        let mut times = Vec::new();
        let mut found = 0;
        for _ in 0..a.rounds {
            let t = Instant::now();
            found = 0;
            for (q, want) in queries.chunks_exact(a.dim).zip(&exact) {
                found += store.search(q, 10, &params).unwrap().iter().filter(|h| want.contains(&h.key)).count();
            }
            times.push(t.elapsed().as_secs_f64() * 1e6 / a.queries as f64);
        }
        let recall = found as f64 / (10 * a.queries) as f64;
        let us = median(times);
        eprintln!("{lists} lists, {name}: recall@10 {recall:.4}, {us:.1} us a query");
        parts.push(format!("{{\"search\": \"{name}\", \"recall\": {recall:.4}, \"us\": {us:.1}}}"));
    }
    emit(
        a,
        format!(
            "{{\"cmd\": \"recall\", \"dim\": {}, \"base\": {}, \"lists\": {lists}, \"grouped\": {}, \"pq_m\": {}, \"queries\": {}, \"results\": [{}]}}",
            a.dim,
            a.base,
            omendb::CoarseQuantizer::grouped_for(lists as usize),
            pq.m,
            a.queries,
            parts.join(", ")
        ),
    );
    store.close_discard().unwrap();
    let _ = std::fs::remove_dir_all(&a.dir);
}

/// Search speed as the store grows: one IVF store per size (auto nlist),
/// checkpointed, closed and reopened (no dirty pages left to write back
/// while timing); then rounds that time every store in turn, one thread,
/// one query a call, at targets 0.95 and 0.99, against each store's exact
/// neighbours. Ratios are to the first size, same rounds.
/// Seconds a query of `queries` (one at a time) took with `params`, and
/// the recall@10 of their hits against `exact`.
fn timed_searches(store: &Store, queries: &[f32], dim: usize, exact: &[Vec<u64>], params: &SearchParams) -> (f64, f64) {
    let start = Instant::now();
    let mut found = 0;
    for (q, want) in queries.chunks_exact(dim).zip(exact) {
        found += store.search(q, 10, params).unwrap().iter().filter(|h| want.contains(&h.key)).count();
    }
    let n = exact.len().max(1);
    (start.elapsed().as_secs_f64() / n as f64, found as f64 / (10 * n) as f64)
}

fn cmd_latency(a: &Args) {
    let syn = synthetic(a);
    let pq = pq_settings(a.dim, a.code_bytes);
    let _ = std::fs::remove_dir_all(&a.dir);
    std::fs::create_dir_all(&a.dir).unwrap();
    let path = a.dir.join("latency");
    let store = Store::open(&path, &Options { pq: Some(pq), ivf_lists: Some(0), ..Options::create(a.dim as u32) }).unwrap();
    put_all(&store, &syn, 0, a.n);
    store.train_pq(&mut |_, _| {}).unwrap();
    store.close().unwrap();
    let store = Store::open(&path, &Options::default()).unwrap();
    let queries = syn.rows(1 << 36, a.queries);
    let exact = exact_neighbours(&store, &queries);
    // Exact scans read every vector: a tenth of the queries.
    let few = (a.queries / 10).max(1);
    let settings: Vec<(String, SearchParams, usize)> = [0.95f32, 0.99]
        .iter()
        .map(|&t| (format!("target {t}"), SearchParams { target_recall: t, ..Default::default() }, a.queries))
        .chain(std::iter::once(("exact".to_string(), SearchParams { exact: true, ..Default::default() }, few)))
        .collect();
    // times[setting][query_threads]: seconds a query, one entry a round.
    let mut times = vec![vec![Vec::new(); a.query_threads.len()]; settings.len()];
    let mut recalls = vec![vec![0.0; a.query_threads.len()]; settings.len()];
    for round in 0..a.rounds {
        for (s, (_, params, count)) in settings.iter().enumerate() {
            // Alternate rounds take the settings in reverse order: a pass
            // after another finds its codes warmer (+10% at 100K x 768,
            // whose codes fit in the cache, with nothing split).
            let mut order: Vec<usize> = (0..a.query_threads.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for t in order {
                let params = SearchParams { query_threads: a.query_threads[t], threads: 1, ..*params };
                let (secs, recall) = timed_searches(&store, &queries[..count * a.dim], a.dim, &exact[..*count], &params);
                times[s][t].push(secs);
                recalls[s][t] = recall;
            }
        }
    }
    let lists = store.stats().unwrap().ivf_lists;
    let mut parts = Vec::new();
    for (s, (name, _, count)) in settings.iter().enumerate() {
        let qps: Vec<f64> = times[s].iter().map(|v| 1.0 / median(v.clone())).collect();
        for (t, &query_threads) in a.query_threads.iter().enumerate() {
            let ratio = qps[t] / qps[0];
            eprintln!("{name}, query_threads {query_threads}: recall@10 {:.4}, {:.1} q/s, {ratio:.2}x", recalls[s][t], qps[t]);
            parts.push(format!(
                "{{\"search\": \"{name}\", \"query_threads\": {query_threads}, \"queries\": {count}, \"recall\": {:.4}, \"qps\": {:.1}, \"ratio\": {ratio:.3}}}",
                recalls[s][t], qps[t]
            ));
        }
    }
    emit(a, format!("{{\"cmd\": \"latency\", \"n\": {}, \"dim\": {}, \"pq_m\": {}, \"lists\": {lists}, \"rounds\": {}, \"results\": [{}]}}", a.n, a.dim, pq.m, a.rounds, parts.join(", ")));
    store.close().unwrap();
    let _ = std::fs::remove_dir_all(&a.dir);
}

fn cmd_growth(a: &Args) {
    let syn = synthetic(a);
    let pq = pq_settings(a.dim, a.code_bytes);
    let _ = std::fs::remove_dir_all(&a.dir);
    std::fs::create_dir_all(&a.dir).unwrap();
    let queries = syn.rows(1 << 36, a.queries);
    let mut stores = Vec::new();
    for &n in &a.sizes {
        let path = a.dir.join(format!("n{n}"));
        let store = Store::open(&path, &Options { pq: Some(pq), ivf_lists: Some(0), ..Options::create(a.dim as u32) }).unwrap();
        put_all(&store, &syn, 0, n);
        let t = Instant::now();
        store.train_pq(&mut |_, _| {}).unwrap();
        eprintln!("{n}: trained in {:.1} s", t.elapsed().as_secs_f64());
        store.close().unwrap();
        let store = Store::open(&path, &Options::default()).unwrap();
        let exact = exact_neighbours(&store, &queries);
        stores.push((n, store, exact));
    }
    let targets = [0.95f32, 0.99];
    // times[store][target]: seconds a query, one entry a round.
    let mut times = vec![vec![Vec::new(); targets.len()]; stores.len()];
    let mut recalls = vec![vec![0.0; targets.len()]; stores.len()];
    for _ in 0..a.rounds {
        for (s, (_, store, exact)) in stores.iter().enumerate() {
            for (t, &target) in targets.iter().enumerate() {
                let params = SearchParams { target_recall: target, threads: 1, ..Default::default() };
                let (secs, recall) = timed_searches(store, &queries, a.dim, exact, &params);
                times[s][t].push(secs);
                recalls[s][t] = recall;
            }
        }
    }
    let qps: Vec<Vec<f64>> = times.into_iter().map(|per| per.into_iter().map(|v| 1.0 / median(v)).collect()).collect();
    let mut parts = Vec::new();
    for (s, (n, store, _)) in stores.iter().enumerate() {
        let lists = store.stats().unwrap().ivf_lists;
        for (t, target) in targets.iter().enumerate() {
            let fall = qps[0][t] / qps[s][t];
            eprintln!("{n} ({lists} lists), target {target}: recall@10 {:.4}, {:.0} q/s, {fall:.2}x fewer than {}", recalls[s][t], qps[s][t], stores[0].0);
            parts.push(format!(
                "{{\"n\": {n}, \"lists\": {lists}, \"target\": {target}, \"recall\": {:.4}, \"qps\": {:.1}, \"fall\": {fall:.3}}}",
                recalls[s][t], qps[s][t]
            ));
        }
    }
    emit(a, format!("{{\"cmd\": \"growth\", \"dim\": {}, \"pq_m\": {}, \"queries\": {}, \"rounds\": {}, \"results\": [{}]}}", a.dim, pq.m, a.queries, a.rounds, parts.join(", ")));
    for (_, store, _) in stores {
        store.close().unwrap();
    }
    let _ = std::fs::remove_dir_all(&a.dir);
}

fn main() {
    let a = parse();
    match a.cmd.as_str() {
        "put" => cmd_put(&a),
        "open" => cmd_open(&a),
        "coarse" => cmd_coarse(&a),
        "recall" => cmd_recall(&a),
        "growth" => cmd_growth(&a),
        "latency" => cmd_latency(&a),
        other => panic!("unknown command {other} (put, open, coarse, recall, growth, latency)"),
    }
}
