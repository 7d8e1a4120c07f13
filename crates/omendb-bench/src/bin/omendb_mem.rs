//! Memory benchmark (issue 3 item 7): resident memory of a process that
//! opens a 1,000,000 x 768 PQ32 store and runs one PQ search.
//!
//! `run` builds the store (clustered synthetic data; PQ trained on the first
//! 25,000 vectors, the rest encoded on put), then measures it in a FRESH
//! process (`measure`), so nothing of the build is resident: VmRSS, RssAnon
//! and RssFile from /proc/self/status, Rss / Anonymous from
//! /proc/self/smaps_rollup, and the Rss of each store file's mappings from
//! /proc/self/smaps, before open, after open, after one PQ search (and,
//! for context, after a search with rerank = 100). Finally the store is deleted.
//!
//! With `--ivf` the store has an IVF index (4-bit PQ, `--m` sub-spaces,
//! the default number of lists), trained once every vector is stored, and
//! the first search is a default IVF search (target recall 0.95, which
//! re-ranks); the report adds the resident bytes per vector beyond the
//! mapped raw vectors (issue 19's memory bar).
//!
//! Usage: cargo run --release -p omendb-bench --bin omendb_mem -- run [--n N] [--dim D] [--m M]
//!        [--drop-raw] [--ivf] [--dir D] [--json PATH] [--keep]
//!        (`build DIR ...` and `measure DIR` are the two halves.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use omendb::{IdBuf, Options, PqSettings, SearchParams, Store};

#[path = "bench_common/synthetic.rs"]
mod synthetic;
use synthetic::Synthetic;

struct Args {
    cmd: String,
    dir: PathBuf,
    n: usize,
    dim: usize,
    m: u32,
    drop_raw: bool,
    ivf: bool,
    json: Option<PathBuf>,
    keep: bool,
}

fn parse() -> Args {
    let mut it = std::env::args().skip(1);
    let cmd = it.next().unwrap_or_else(|| "run".into());
    let mut a = Args {
        cmd,
        dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/bench-scratch/mem-store")),
        n: 1_000_000,
        dim: 768,
        m: 32,
        drop_raw: false,
        ivf: false,
        json: None,
        keep: false,
    };
    while let Some(x) = it.next() {
        match x.as_str() {
            "--n" => a.n = it.next().unwrap().parse().unwrap(),
            "--dim" => a.dim = it.next().unwrap().parse().unwrap(),
            "--m" => a.m = it.next().unwrap().parse().unwrap(),
            "--drop-raw" => a.drop_raw = true,
            "--ivf" => a.ivf = true,
            "--dir" => a.dir = PathBuf::from(it.next().unwrap()),
            "--json" => a.json = Some(PathBuf::from(it.next().unwrap())),
            "--keep" => a.keep = true,
            other if !other.starts_with('-') => a.dir = PathBuf::from(other),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn ids(first: usize, n: usize) -> IdBuf {
    IdBuf::new((first..first + n).map(|i| format!("doc-{i:08}")))
}

fn build(a: &Args) {
    let _ = std::fs::remove_dir_all(&a.dir);
    // A fresh checkout has no scratch folder yet (the store creates only its own).
    if let Some(parent) = a.dir.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let t0 = Instant::now();
    let opts = Options {
        create: true,
        dim: a.dim as u32,
        drop_raw: a.drop_raw,
        pq: Some(PqSettings { m: a.m, bits: if a.ivf { 4 } else { 8 }, train_size: 0 }),
        ivf_lists: a.ivf.then_some(0),
        ..Options::default()
    };
    let store = Store::open(&a.dir, &opts).unwrap();
    let syn = Synthetic::new(a.dim);
    // An IVF index is trained on everything (its lists follow the data).
    let train = if a.ivf { a.n } else { 25_000.min(a.n) };
    let step = 10_000;
    let mut done = 0;
    while done < a.n {
        if done == train {
            store.train_pq(&mut |_, _| {}).unwrap();
            eprintln!("trained after {done} vectors, {:.1} s", t0.elapsed().as_secs_f64());
        }
        let m = step.min(a.n - done).min(if done < train { train - done } else { usize::MAX });
        let rows = syn.rows(done as u64, m);
        for b in (0..m).step_by(1000) {
            let k = 1000.min(m - b);
            store.put_batch(&ids(done + b, k).batch().unwrap(), &rows[b * a.dim..(b + k) * a.dim]).unwrap();
        }
        done += m;
    }
    if done == train {
        store.train_pq(&mut |_, _| {}).unwrap();
    }
    store.close().unwrap();
    eprintln!("built {} x {} PQ{} (drop_raw {}, ivf {}) in {:.1} s", a.n, a.dim, a.m, a.drop_raw, a.ivf, t0.elapsed().as_secs_f64());
}

/// kB fields of a /proc file, as bytes.
fn proc_fields(path: &str, keys: &[&str]) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(':') {
            if keys.contains(&k) {
                let kb: u64 = v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
                out.insert(k.to_string(), kb * 1024);
            }
        }
    }
    out
}

/// Rss of the mappings of files under `dir`, per file name.
fn store_file_rss(dir: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    // smaps names files by their canonical paths (the default `dir` holds "..").
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()).to_string_lossy().to_string();
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            current = line.split_whitespace().nth(5).filter(|p| p.starts_with(&dir)).map(|p| {
                let name = Path::new(p).file_name().unwrap().to_string_lossy().to_string();
                name.split('.').next().unwrap().to_string()
            });
        } else if let (Some(name), Some(v)) = (&current, line.strip_prefix("Rss:")) {
            let kb: u64 = v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
            *out.entry(name.clone()).or_insert(0) += kb * 1024;
        }
    }
    out
}

struct Snap {
    label: &'static str,
    status: BTreeMap<String, u64>,
    rollup: BTreeMap<String, u64>,
    files: BTreeMap<String, u64>,
}

fn snap(label: &'static str, dir: &Path) -> Snap {
    Snap {
        label,
        status: proc_fields("/proc/self/status", &["VmRSS", "RssAnon", "RssFile", "RssShmem"]),
        rollup: proc_fields("/proc/self/smaps_rollup", &["Rss", "Anonymous", "Pss_Anon", "Pss_File"]),
        files: store_file_rss(dir),
    }
}

fn measure(a: &Args) -> String {
    let dir = &a.dir;
    let syn = Synthetic::new(a.dim);
    let query = syn.rows(1 << 40, 1);
    let mut snaps = vec![snap("before open", dir)];
    let t = Instant::now();
    let store = Store::open(dir, &Options::default()).unwrap();
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    snaps.push(snap("after open", dir));
    let t = Instant::now();
    let hits = store.search(&query, 10, &SearchParams::default()).unwrap();
    let search_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(hits.len(), 10);
    snaps.push(snap("after 1 PQ search", dir));
    let stats = store.stats().unwrap();
    let raw = stats.raw_kept;
    if raw {
        store.search(&query, 10, &SearchParams { rerank: 100, ..SearchParams::default() }).unwrap();
        snaps.push(snap("after +1 search rerank=100", dir));
    }
    let n = stats.live_vectors as f64;
    let base = &snaps[0];
    println!(
        "store: {} live x {} dims, pq_m {}, raw kept {}, disk {:.1} MB, heap_bytes {} ({:.2} B/vector); open {:.1} ms, first PQ search {:.1} ms",
        stats.live_vectors, stats.dim, stats.pq_m, raw, stats.disk_bytes as f64 / 1e6, stats.heap_bytes,
        stats.heap_bytes as f64 / n, open_ms, search_ms
    );
    println!("| state | VmRSS MB | RssAnon MB | RssFile MB | growth B/vector (all / anon / file) | store files resident (MB) |");
    println!("|---|---:|---:|---:|---|---|");
    let mut json_snaps = vec![];
    for s in &snaps {
        let g = |k: &str| (s.status[k] as f64 - base.status[k] as f64) / n;
        let files: Vec<String> = s.files.iter().map(|(k, v)| format!("{k} {:.1}", *v as f64 / 1e6)).collect();
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.2} / {:.2} / {:.2} | {} |",
            s.label,
            s.status["VmRSS"] as f64 / 1e6,
            s.status["RssAnon"] as f64 / 1e6,
            s.status["RssFile"] as f64 / 1e6,
            g("VmRSS"),
            g("RssAnon"),
            g("RssFile"),
            files.join(", ")
        );
        let obj = |m: &BTreeMap<String, u64>| m.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(",");
        json_snaps.push(format!(
            "{{\"label\":\"{}\",\"status\":{{{}}},\"smaps_rollup\":{{{}}},\"store_files_rss\":{{{}}},\"growth_bytes_per_vector\":{:.3},\"anon_growth_bytes_per_vector\":{:.3},\"file_growth_bytes_per_vector\":{:.3}}}",
            s.label, obj(&s.status), obj(&s.rollup), obj(&s.files), g("VmRSS"), g("RssAnon"), g("RssFile")
        ));
    }
    let after = &snaps[2];
    let anon_growth = after.status["RssAnon"] as i64 - base.status["RssAnon"] as i64;
    println!(
        "after one PQ search: {:.2} B/vector resident growth ({:.2} anon + {:.2} file); heap_bytes {} vs anon growth {} ({:+.1}%)",
        (after.status["VmRSS"] as f64 - base.status["VmRSS"] as f64) / n,
        anon_growth as f64 / n,
        (after.status["RssFile"] as f64 - base.status["RssFile"] as f64) / n,
        stats.heap_bytes,
        anon_growth,
        (anon_growth as f64 / stats.heap_bytes as f64 - 1.0) * 100.0
    );
    // The raw vectors are mapped and read at random by the re-rank: the
    // bar counts what is resident besides them.
    let vectors_rss = |s: &Snap| s.files.iter().filter(|(k, _)| k.starts_with("vectors")).map(|(_, v)| *v).sum::<u64>();
    let beyond = |s: &Snap| (s.status["VmRSS"] as f64 - vectors_rss(s) as f64 - base.status["VmRSS"] as f64) / n;
    println!(
        "resident beyond the mapped raw vectors: {:.2} B/vector after open, {:.2} after one search (ivf_lists {})",
        beyond(&snaps[1]),
        beyond(after),
        stats.ivf_lists
    );
    drop(store);
    format!(
        "{{\"n\":{},\"dim\":{},\"pq_m\":{},\"raw_kept\":{},\"disk_bytes\":{},\"heap_bytes\":{},\"open_ms\":{:.2},\"search_ms\":{:.2},\"snapshots\":[{}]}}",
        stats.live_vectors, stats.dim, stats.pq_m, raw, stats.disk_bytes, stats.heap_bytes, open_ms, search_ms, json_snaps.join(",")
    )
}

fn main() {
    let a = parse();
    match a.cmd.as_str() {
        "build" => build(&a),
        "measure" => {
            let j = measure(&a);
            if let Some(p) = &a.json {
                std::fs::write(p, j + "\n").unwrap();
            }
        }
        "run" => {
            build(&a);
            // A fresh process: nothing of the build is resident or cached in the allocator.
            let exe = std::env::current_exe().unwrap();
            let mut cmd = std::process::Command::new(exe);
            cmd.arg("measure").arg(&a.dir).arg("--dim").arg(a.dim.to_string());
            if let Some(p) = &a.json {
                cmd.arg("--json").arg(p);
            }
            let status = cmd.status().unwrap();
            if !a.keep {
                let _ = std::fs::remove_dir_all(&a.dir);
            }
            assert!(status.success(), "measure failed");
        }
        c => panic!("unknown command {c} (run, build, measure)"),
    }
}
