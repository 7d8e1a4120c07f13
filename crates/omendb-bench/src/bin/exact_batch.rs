//! The OmenDB side of the exact batch search comparison with faiss
//! IndexFlatL2 / IndexFlatIP (crates/omendb-bench/scripts/exact_batch.py
//! drives it, and runs faiss between its searches on the same data).
//!
//! Usage: exact_batch --dir STORE --base FILE --queries FILE --dim D --metric l2|ip
//! FILE: raw little-endian f32 rows of D values. Creates the store from
//! --base (put_batch + checkpoint) when STORE does not exist, then reads
//! commands from stdin, one a line: `search NQ THREADS` runs one exact
//! `search_batch_with_ids` of the first NQ queries (k = 10) and answers
//! one JSON line: {"secs": S, "ids": [row numbers of the hits, query by query]}.
//! `quit` (or the end of stdin) ends it.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use omendb::{Filter, IdBuf, Metric, Options, SearchParams, Store};

const K: usize = 10;

#[path = "bench_common/args.rs"]
mod args;
use args::{read_f32, Flags};

fn main() {
    let flags = Flags::from_env();
    let arg = |name: &str| flags.need(name);
    let dir = PathBuf::from(arg("--dir"));
    let dim: usize = arg("--dim").parse().expect("--dim");
    let metric = match arg("--metric").as_str() {
        "l2" => Metric::L2,
        "ip" => Metric::InnerProduct,
        other => panic!("--metric l2|ip, not {other}"),
    };
    let queries = read_f32(&arg("--queries"));
    let store = if dir.exists() {
        Store::open(&dir, &Options::default()).expect("open")
    } else {
        let base = read_f32(&arg("--base"));
        let store = Store::open(&dir, &Options { metric, ..Options::create(dim as u32) }).expect("create");
        for (b, rows) in base.chunks(10_000 * dim).enumerate() {
            let first = b * 10_000;
            let ids = IdBuf::new((first..first + rows.len() / dim).map(|i| i.to_string()));
            store.put_batch(&ids.batch().unwrap(), rows).expect("put_batch");
        }
        store.checkpoint().expect("checkpoint");
        store
    };
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["search", nq, threads] => {
                let nq: usize = nq.parse().expect("NQ");
                let params = SearchParams { exact: true, threads: threads.parse().expect("THREADS"), ..SearchParams::default() };
                let t = Instant::now();
                let found = store.search_batch_with_ids(&queries[..nq * dim], K, &params, &Filter::default()).expect("search");
                let secs = t.elapsed().as_secs_f64();
                let ids: Vec<&str> = (0..found.ids.len()).map(|i| std::str::from_utf8(found.ids.get(i)).unwrap()).collect();
                let mut out = stdout.lock();
                writeln!(out, "{{\"secs\": {secs}, \"ids\": [{}]}}", ids.join(",")).unwrap();
                out.flush().unwrap();
            }
            ["quit"] => break,
            _ => panic!("unknown command {line:?}"),
        }
    }
}
