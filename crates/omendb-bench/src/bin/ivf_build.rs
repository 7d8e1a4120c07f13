//! The OmenDB side of the IVF build benchmark against faiss IVF-PQ
//! fast-scan (crates/omendb-bench/scripts/ivf_build.py drives it, and
//! builds faiss between its runs on the same data).
//!
//! Usage: ivf_build --base FILE --dim D --m M --threads T --dir SCRATCH
//!        [--lists N] [--queries FILE --nq Q]
//! FILE: raw little-endian f32 rows of D values. Creates a fresh store in
//! SCRATCH (removed first) with PQ M x 4 and an IVF index (N lists, 0 =
//! the store's choice), puts every row (put_batch + checkpoint), trains,
//! and prints one JSON line: the put and train seconds, and the train time
//! split into phases by the progress callback's units (in train_pq's
//! order: `--coarse-iters` coarse k-means iterations, then the PQ k-means
//! units, then one unit per 4,096 slots encoded; what follows the last
//! unit is the calibration, the codebooks file, the syncs and the commit).
//! With --queries, the first Q queries' recall@10 at target recall 0.95
//! (against an exact search of the same store) is added.

use std::path::PathBuf;
use std::time::Instant;

use omendb::{IdBuf, Options, PqSettings, SearchParams, Store};

const K: usize = 10;
/// Slots a progress unit of the encoding covers (store/pq.rs ENCODE_CHUNK).
const ENCODE_CHUNK: u64 = 4096;

#[path = "bench_common/args.rs"]
mod args;
use args::{read_f32, Flags};

fn main() {
    let flags = Flags::from_env();
    let dir = PathBuf::from(flags.need("--dir"));
    let dim: usize = flags.need("--dim").parse().expect("--dim");
    let m: u32 = flags.need("--m").parse().expect("--m");
    let threads: u32 = flags.need("--threads").parse().expect("--threads");
    let lists: u32 = flags.parse_or("--lists", 0);
    let coarse_iters: u64 = flags.parse_or("--coarse-iters", 10);
    let base = read_f32(&flags.need("--base"));
    let n = base.len() / dim;

    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("remove the old store");
    }
    let options = Options {
        pq: Some(PqSettings { m, bits: 4, train_size: 0 }),
        ivf_lists: Some(lists),
        threads,
        ..Options::create(dim as u32)
    };
    let t = Instant::now();
    let store = Store::open(&dir, &options).expect("create");
    for (b, rows) in base.chunks(10_000 * dim).enumerate() {
        let first = b * 10_000;
        let ids = IdBuf::new((first..first + rows.len() / dim).map(|i| i.to_string()));
        store.put_batch(&ids.batch().unwrap(), rows).expect("put_batch");
    }
    store.checkpoint().expect("checkpoint");
    let put_s = t.elapsed().as_secs_f64();

    // Seconds since the start of training at each progress unit.
    let mut ticks: Vec<(u64, u64, f64)> = Vec::new();
    let t = Instant::now();
    store.train_pq(&mut |done, total| ticks.push((done, total, t.elapsed().as_secs_f64()))).expect("train_pq");
    let train_s = t.elapsed().as_secs_f64();
    let total = ticks.last().map_or(0, |&(_, total, _)| total);
    let encode_units = (n as u64).div_ceil(ENCODE_CHUNK);
    let at = |unit: u64| ticks.iter().find(|&&(done, _, _)| done >= unit).map_or(0.0, |&(_, _, s)| s);
    let (coarse_end, train_end, encode_end) = (at(coarse_iters), at(total - encode_units), at(total));
    let stats = store.stats().expect("stats");

    let mut recall = String::new();
    if let Some(path) = flags.get("--queries") {
        let queries = read_f32(&path);
        let nq: usize = flags.parse_or("--nq", queries.len() / dim);
        let queries = &queries[..nq * dim];
        let exact = SearchParams { exact: true, ..SearchParams::default() };
        let truth = store.search_batch(queries, K, &exact).expect("exact search");
        let ivf = SearchParams { target_recall: 0.95, threads: 1, ..SearchParams::default() };
        let found = store.search_batch(queries, K, &ivf).expect("IVF search");
        let hits: usize = truth
            .iter()
            .zip(&found)
            .map(|(t, f)| f.iter().filter(|h| t.iter().any(|e| e.key == h.key)).count())
            .sum();
        recall = format!(", \"recall_at_0.95\": {}", hits as f64 / (nq * K) as f64);
    }
    println!(
        "{{\"n\": {n}, \"dim\": {dim}, \"m\": {m}, \"threads\": {threads}, \"ivf_lists\": {}, \"put_checkpoint_s\": {put_s}, \
         \"train_s\": {train_s}, \"coarse_s\": {coarse_end}, \"pq_s\": {}, \"encode_s\": {}, \"finish_s\": {}{recall}}}",
        stats.ivf_lists,
        train_end - coarse_end,
        encode_end - train_end,
        train_s - encode_end,
    );
    drop(store);
    std::fs::remove_dir_all(&dir).expect("remove the store");
}
