//! The OmenDB release benchmark: every operation of the engine, at several
//! dimensions and sizes, each figure beside a hardware baseline measured in
//! the same run, medians of `--runs` runs, JSON output.
//!
//! Baselines (same bytes, same run, page cache in the same state):
//! - writes (put, encode-put, delete, checkpoint): memcpy of the bytes into a
//!   fresh file through a shared mapping, then msync + fdatasync;
//! - point reads (get, get_batch): a memcpy gather of the same random rows
//!   from a mapped file;
//! - scans and verification (search, open, recover, training): one
//!   sequential pass (a sum) over the bytes the operation must read: the
//!   memory-bandwidth floor.
//!
//! put, get, get_batch, delete, checkpoint, open, recover, train and search go
//! through the C ABI functions (`omendb-capi`'s source, compiled in): the host path.
//!
//! Usage (release builds only):
//!
//! ```text
//! cargo run --release -p omendb-bench --bin omendb_bench -- [options]
//!   --grid quick|full|compare  preset (default quick: about 20 minutes on 2 cores)
//!   --cases 768x100000,128x10000   explicit dim x n cases (overrides the grid)
//!   --runs N           runs per figure (default 3; medians)
//!   --threads T        the store's worker threads (default: all cores)
//!   --scaling 1,4      also run put and PQ (train, encode, search) at these thread counts
//!   --only a,b         workloads: put,get,get_batch,exact,checkpoint_delta,delete,
//!                      open,recover,pq (train + encode + PQ search)
//!   --data F --queries Q --gt G   raw little-endian f32 base/query files and
//!                      i32 ground truth (nq x 10) instead of synthetic data (one case)
//!   --json PATH        write the records as JSON (default: print only)
//!   --dir D            scratch directory (default $OMENDB_BENCH_DIR or target/bench-scratch)
//! ```

use std::ffi::CString;
use std::fs::OpenOptions;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

// The C ABI's own source, compiled into this program (crates/omendb-capi
// builds no rlib to link): the benchmark calls the exported functions the
// way a host does, through exactly the code of libomendb.so.
#[path = "../../../omendb-capi/src/lib.rs"]
#[allow(dead_code)]
mod capi;
use capi::*;

// ---------------------------------------------------------------- helpers

/// CPU seconds used by the whole process so far (all threads).
fn cpu_now() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn check(status: omen_status, what: &str) {
    if status != omen_status::OMEN_OK {
        let msg = unsafe { std::ffi::CStr::from_ptr(omen_last_error()) };
        panic!("{what}: {status:?}: {msg:?}");
    }
}

#[path = "bench_common/synthetic.rs"]
mod synthetic;
use synthetic::{SplitMix, Synthetic};

/// Arrow-style ids: "doc-%08d" (12 bytes), absolute offsets.
struct Ids {
    bytes: Vec<u8>,
    offsets: Vec<u64>,
}

impl Ids {
    fn new(prefix: &str, first: usize, n: usize) -> Ids {
        let mut bytes = Vec::with_capacity(n * (prefix.len() + 9));
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        for i in first..first + n {
            bytes.extend_from_slice(format!("{prefix}{i:08}").as_bytes());
            offsets.push(bytes.len() as u64);
        }
        Ids { bytes, offsets }
    }
    fn get(&self, i: usize) -> &[u8] {
        &self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

fn row_of_id(id: &[u8]) -> usize {
    std::str::from_utf8(&id[4..]).unwrap().parse().unwrap()
}

struct Handle(*mut omen_store);

impl Handle {
    fn open(path: &Path, dim: usize, pq: Option<(u32, u32)>, threads: u32, flags: u32) -> Handle {
        let mut opts = unsafe { std::mem::zeroed::<omen_options>() };
        unsafe { omen_options_default(&mut opts) };
        opts.flags = flags;
        opts.dim = dim as u32;
        opts.threads = threads;
        if let Some((m, bits)) = pq {
            opts.pq_m = m;
            opts.pq_bits = bits;
        }
        let cpath = CString::new(path.to_str().unwrap()).unwrap();
        let mut store = std::ptr::null_mut();
        check(unsafe { omen_open(cpath.as_ptr(), &opts, &mut store) }, "open");
        Handle(store)
    }

    fn put(&self, ids: &Ids, vectors: &[f32], dim: usize, batch: usize) {
        let n = ids.offsets.len() - 1;
        for b in (0..n).step_by(batch) {
            let m = batch.min(n - b);
            check(
                unsafe {
                    omen_put_batch(self.0, m, ids.bytes.as_ptr(), ids.offsets[b..].as_ptr(), vectors[b * dim..].as_ptr())
                },
                "put",
            );
        }
    }

    fn checkpoint(&self) {
        check(unsafe { omen_checkpoint(self.0, std::ptr::null_mut()) }, "checkpoint");
    }

    fn train(&self) {
        check(unsafe { omen_train_pq(self.0, None, std::ptr::null_mut()) }, "train");
    }

    fn stats(&self) -> omen_stats {
        let mut s = unsafe { std::mem::zeroed::<omen_stats>() };
        s.struct_size = std::mem::size_of::<omen_stats>() as u32;
        check(unsafe { omen_store_stats(self.0, &mut s) }, "stats");
        s
    }

    fn key_row(&self, key: u64) -> usize {
        let (mut p, mut len) = (std::ptr::null(), 0usize);
        check(unsafe { omen_key_id(self.0, key, &mut p, &mut len) }, "key_id");
        row_of_id(unsafe { std::slice::from_raw_parts(p, len) })
    }

    fn close(self) {
        check(unsafe { omen_close(self.0) }, "close");
        std::mem::forget(self);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        unsafe { omen_close(self.0) };
    }
}

fn params(rerank: u32, exact: bool, threads: u32) -> omen_search_params {
    omen_search_params {
        struct_size: std::mem::size_of::<omen_search_params>() as u32,
        rerank,
        exact: exact as u32,
        threads,
        filter_n: 0,
        filter_ids: std::ptr::null(),
        filter_id_offsets: std::ptr::null(),
        filter_fn: None,
        filter_user: std::ptr::null_mut(),
        nprobe: 0,
        target_recall: 0.0,
        query_threads: 0,
    }
}

/// memcpy `data` into a fresh file through a shared mapping, then msync + fdatasync.
fn baseline_write(path: &Path, data: &[u8]) -> f64 {
    let _ = std::fs::remove_file(path);
    let start = Instant::now();
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).unwrap();
    file.set_len(data.len().max(1) as u64).unwrap();
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file).unwrap() };
    map[..data.len()].copy_from_slice(data);
    map.flush().unwrap();
    file.sync_data().unwrap();
    start.elapsed().as_secs_f64()
}

/// One sequential pass (a vectorizable u64 sum) over `bytes`.
fn stream(bytes: &[u8]) -> u64 {
    let words: &[u64] = bytemuck::cast_slice(&bytes[..bytes.len() / 64 * 64]);
    let mut acc = [0u64; 8];
    for c in words.chunks_exact(8) {
        for i in 0..8 {
            acc[i] = acc[i].wrapping_add(c[i]);
        }
    }
    acc.iter().fold(0, |a, b| a.wrapping_add(*b))
}

/// Time of one sequential pass over every file of `dir` (skipping names
/// starting with `skip`), through fresh read-only mappings.
fn baseline_stream_dir(dir: &Path, skip: &[&str]) -> (f64, u64) {
    let mut maps = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        if skip.iter().any(|s| name.starts_with(s)) || e.metadata().unwrap().len() == 0 {
            continue;
        }
        let f = std::fs::File::open(e.path()).unwrap();
        maps.push(unsafe { memmap2::Mmap::map(&f).unwrap() });
    }
    let start = Instant::now();
    let mut bytes = 0;
    for m in &maps {
        black_box(stream(m));
        bytes += m.len() as u64;
    }
    (start.elapsed().as_secs_f64(), bytes)
}

// ---------------------------------------------------------------- records

struct Rec {
    workload: String,
    dim: usize,
    n: usize,
    threads: u32,
    /// Operations per run (vectors, calls, queries; 1 for a single timed event).
    ops: f64,
    unit: &'static str,
    times: Vec<f64>,
    /// Process CPU seconds of the omendb part of each run (where recorded).
    cpu: Vec<f64>,
    baseline: String,
    base_ops: f64,
    base_times: Vec<f64>,
    extra: Vec<(String, f64)>,
}

impl Rec {
    fn new(workload: &str, dim: usize, n: usize, threads: u32, ops: f64, unit: &'static str, baseline: &str) -> Rec {
        Rec {
            workload: workload.into(),
            dim,
            n,
            threads,
            ops,
            unit,
            times: vec![],
            cpu: vec![],
            baseline: baseline.into(),
            base_ops: ops,
            base_times: vec![],
            extra: vec![],
        }
    }
    /// Seconds per operation, median.
    fn per_op(&self) -> f64 {
        median(&self.times) / self.ops
    }
    fn base_per_op(&self) -> f64 {
        median(&self.base_times) / self.base_ops
    }
    /// > 1: faster than the baseline.
    fn ratio(&self) -> f64 {
        self.base_per_op() / self.per_op()
    }
    fn value(&self) -> f64 {
        if self.unit == "ms" {
            self.per_op() * 1e3
        } else {
            1.0 / self.per_op()
        }
    }
    fn base_value(&self) -> f64 {
        if self.unit == "ms" {
            self.base_per_op() * 1e3
        } else {
            1.0 / self.base_per_op()
        }
    }
    fn print(&self) {
        let mut extra: Vec<String> = self.extra.iter().map(|(k, v)| format!("{k}={v:.4}")).collect();
        if !self.cpu.is_empty() {
            extra.push(format!("cpu_s={:.3}", median(&self.cpu)));
        }
        println!(
            "{:<22} d={:<5} n={:<8} t={} {:>14.1} {:<10} | {:<28} {:>14.1} | ratio {:>7.3}x  {}",
            self.workload,
            self.dim,
            self.n,
            self.threads,
            self.value(),
            self.unit,
            self.baseline,
            self.base_value(),
            self.ratio(),
            extra.join(" ")
        );
    }
    fn json(&self) -> String {
        let list = |v: &[f64]| v.iter().map(|x| format!("{x:.6e}")).collect::<Vec<_>>().join(",");
        let extra: Vec<String> = self.extra.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!(
            "{{\"workload\":\"{}\",\"dim\":{},\"n\":{},\"threads\":{},\"ops\":{},\"unit\":\"{}\",\"value\":{:.6},\
             \"times_s\":[{}],\"baseline\":\"{}\",\"baseline_ops\":{},\"baseline_value\":{:.6},\"baseline_times_s\":[{}],\
             \"ratio\":{:.6},\"cpu_s\":[{}],\"extra\":{{{}}}}}",
            self.workload,
            self.dim,
            self.n,
            self.threads,
            self.ops,
            self.unit,
            self.value(),
            list(&self.times),
            self.baseline,
            self.base_ops,
            self.base_value(),
            list(&self.base_times),
            self.ratio(),
            list(&self.cpu),
            extra.join(",")
        )
    }
}

// ---------------------------------------------------------------- config

struct Config {
    cases: Vec<(usize, usize)>,
    runs: usize,
    threads: u32,
    /// Extra thread counts at which put and PQ (train, encode, search) run again.
    scaling: Vec<u32>,
    only: Option<Vec<String>>,
    data: Option<(PathBuf, PathBuf, Option<PathBuf>)>,
    json: Option<PathBuf>,
    dir: PathBuf,
    gets: usize,
    /// Full grid: exact search and PQ at every size.
    heavy: bool,
}

impl Config {
    fn wants(&self, w: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.iter().any(|x| x == w))
    }
}

fn parse_args() -> Config {
    let mut args = std::env::args().skip(1);
    let cores = std::thread::available_parallelism().map(|x| x.get()).unwrap_or(1) as u32;
    let mut grid = "quick".to_string();
    let mut cases = None;
    let mut cfg = Config {
        cases: vec![],
        runs: 3,
        threads: cores,
        scaling: vec![],
        only: None,
        data: None,
        json: None,
        dir: std::env::var_os("OMENDB_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/bench-scratch"))),
        gets: 200_000,
        heavy: false,
    };
    let (mut data, mut queries, mut gt) = (None, None, None);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--grid" => grid = val(),
            "--cases" => {
                cases = Some(
                    val()
                        .split(',')
                        .map(|c| {
                            let (d, n) = c.split_once('x').expect("case is DIMxN");
                            (d.parse().unwrap(), n.parse().unwrap())
                        })
                        .collect(),
                )
            }
            "--runs" => cfg.runs = val().parse().unwrap(),
            "--threads" => cfg.threads = val().parse().unwrap(),
            "--scaling" => cfg.scaling = val().split(',').map(|t| t.parse().unwrap()).collect(),
            "--only" => cfg.only = Some(val().split(',').map(String::from).collect()),
            "--data" => data = Some(PathBuf::from(val())),
            "--queries" => queries = Some(PathBuf::from(val())),
            "--gt" => gt = Some(PathBuf::from(val())),
            "--json" => cfg.json = Some(PathBuf::from(val())),
            "--dir" => cfg.dir = PathBuf::from(val()),
            "--gets" => cfg.gets = val().parse().unwrap(),
            "-h" | "--help" => {
                println!("see the doc comment at the top of crates/omendb-bench/src/bin/omendb_bench.rs");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
    }
    cfg.cases = cases.unwrap_or_else(|| match grid.as_str() {
        "quick" => vec![
            (128, 10_000),
            (128, 100_000),
            (128, 1_000_000),
            (768, 10_000),
            (768, 100_000),
            (768, 1_000_000),
            (1536, 10_000),
            (1536, 100_000),
        ],
        "full" => [128, 768, 1536].iter().flat_map(|&d| [10_000, 100_000, 1_000_000].map(|n| (d, n))).collect(),
        "compare" => vec![(768, 100_000)],
        g => panic!("unknown grid {g}"),
    });
    cfg.heavy = grid == "full";
    if let Some(d) = data {
        cfg.data = Some((d, queries.expect("--data needs --queries"), gt));
        assert_eq!(cfg.cases.len(), 1, "--data takes exactly one --cases DIMxN");
    }
    cfg
}

fn read_f32(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn read_i32(path: &Path) -> Vec<usize> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as usize).collect()
}

/// PQ shape per dimension: 24 dims per sub-space (PQ32 at 768), 8 at 128.
fn pq_m(dim: usize) -> u32 {
    match dim {
        128 => 16,
        d if d % 24 == 0 => (d / 24) as u32,
        d if d % 8 == 0 => (d / 8) as u32,
        d => d as u32,
    }
}

// ---------------------------------------------------------------- one case

struct Case<'a> {
    cfg: &'a Config,
    dim: usize,
    n: usize,
    base: Vec<f32>,
    queries: Vec<f32>,
    gt: Option<Vec<usize>>,
    ids: Ids,
    scratch: PathBuf,
    out: Vec<Rec>,
}

const BATCH: usize = 1000;
const K: usize = 10;

impl Case<'_> {
    fn path(&self, what: &str) -> PathBuf {
        self.scratch.join(format!("{what}-{}x{}", self.dim, self.n))
    }

    fn emit(&mut self, r: Rec) {
        r.print();
        self.out.push(r);
    }

    fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.base)
    }

    /// put_batch of every row in batches of 1,000, then checkpoint; leaves
    /// the store of the last run at `store` and the baseline file at `basefile`.
    fn put(&mut self, threads: u32, workload: &str) -> Handle {
        let (dim, n, runs) = (self.dim, self.n, self.cfg.runs);
        let mut rec = Rec::new(workload, dim, n, threads, n as f64, "vectors/s", "mmap memcpy+msync+fdatasync");
        let (mut put_only, mut ckpt) = (vec![], vec![]);
        let store_path = self.path("store");
        let base_path = self.path("base.f32");
        let mut last = None;
        for run in 0..runs {
            drop(last.take());
            let _ = std::fs::remove_dir_all(&store_path);
            for which in if run % 2 == 0 { [0, 1] } else { [1, 0] } {
                if which == 0 {
                    rec.base_times.push(baseline_write(&base_path, self.bytes()));
                    continue;
                }
                let (start, cpu) = (Instant::now(), cpu_now());
                let h = Handle::open(&store_path, dim, None, threads, OMEN_OPEN_CREATE);
                h.put(&self.ids, &self.base, dim, BATCH);
                let t1 = start.elapsed().as_secs_f64();
                h.checkpoint();
                let t = start.elapsed().as_secs_f64();
                rec.times.push(t);
                rec.cpu.push(cpu_now() - cpu);
                put_only.push(t1);
                ckpt.push(t - t1);
                last = Some(h);
            }
        }
        rec.extra.push(("put_only_vps".into(), n as f64 / median(&put_only)));
        rec.extra.push(("final_checkpoint_ms".into(), median(&ckpt) * 1e3));
        rec.extra.push(("gb_per_s".into(), (n * dim * 4) as f64 / median(&rec.times) / 1e9));
        self.emit(rec);
        last.unwrap()
    }

    fn get(&mut self, h: &Handle) {
        let (dim, n, runs) = (self.dim, self.n, self.cfg.runs);
        let gets = self.cfg.gets;
        let mut r = SplitMix(42);
        let probes: Vec<usize> = (0..gets).map(|_| (r.next() % n as u64) as usize).collect();
        let file = std::fs::File::open(self.path("base.f32")).unwrap();
        let map = unsafe { memmap2::Mmap::map(&file).unwrap() };
        let rows: &[f32] = bytemuck::cast_slice(&map[..]);
        let mut out = vec![0f32; dim];
        let mut rec = Rec::new("get", dim, n, 1, gets as f64, "calls/s", "memcpy gather from mmap");
        for _ in 0..runs {
            let start = Instant::now();
            for &p in &probes {
                out.copy_from_slice(&rows[p * dim..(p + 1) * dim]);
                black_box(&mut out);
            }
            rec.base_times.push(start.elapsed().as_secs_f64());
            let start = Instant::now();
            for &p in &probes {
                let id = self.ids.get(p);
                check(unsafe { omen_get(h.0, id.as_ptr(), id.len(), out.as_mut_ptr(), dim) }, "get");
                black_box(&mut out);
            }
            rec.times.push(start.elapsed().as_secs_f64());
        }
        self.emit(rec);

        // get_batch: batches of 1,000 random ids.
        let nb = (gets / BATCH).max(1);
        let mut bids = Vec::new();
        let mut boffs = Vec::new();
        for b in 0..nb {
            let mut bytes = Vec::new();
            let mut offs = vec![0u64];
            for &p in &probes[b * BATCH..((b + 1) * BATCH).min(gets)] {
                bytes.extend_from_slice(self.ids.get(p));
                offs.push(bytes.len() as u64);
            }
            bids.push(bytes);
            boffs.push(offs);
        }
        let mut bout = vec![0f32; BATCH * dim];
        let mut rec = Rec::new("get_batch(1000)", dim, n, 1, (nb * BATCH) as f64, "vectors/s", "memcpy gather from mmap");
        for _ in 0..runs {
            let start = Instant::now();
            for b in 0..nb {
                for (j, &p) in probes[b * BATCH..(b + 1) * BATCH].iter().enumerate() {
                    bout[j * dim..(j + 1) * dim].copy_from_slice(&rows[p * dim..(p + 1) * dim]);
                }
                black_box(&mut bout);
            }
            rec.base_times.push(start.elapsed().as_secs_f64());
            let start = Instant::now();
            for b in 0..nb {
                let m = boffs[b].len() - 1;
                check(
                    unsafe {
                        omen_get_batch(h.0, m, bids[b].as_ptr(), boffs[b].as_ptr(), bout.as_mut_ptr(), std::ptr::null_mut())
                    },
                    "get_batch",
                );
                black_box(&mut bout);
            }
            rec.times.push(start.elapsed().as_secs_f64());
        }
        self.emit(rec);
    }

    /// Exact search (single and batch) over the raw store.
    fn exact(&mut self, h: &Handle, threads: u32) {
        let (dim, n, runs) = (self.dim, self.n, self.cfg.runs);
        let file = std::fs::File::open(self.path("base.f32")).unwrap();
        let map = unsafe { memmap2::Mmap::map(&file).unwrap() };
        // Enough queries for ~0.3 s of scanning at ~5 GB/s, at least 4.
        let nq_single = ((1.5e9 / (n * dim * 4) as f64) as usize).clamp(4, 200).min(self.queries.len() / dim);
        let nq_batch = (nq_single * 2).min(self.queries.len() / dim).max(threads as usize);
        let mut hits = vec![omen_hit { key: 0, distance: 0.0, reserved: 0 }; nq_batch * K];
        let mut counts = vec![0usize; nq_batch];
        let p = params(0, true, threads);
        let mut single = Rec::new("search_exact", dim, n, 1, nq_single as f64, "queries/s", "1 pass over the vectors");
        let mut batch = Rec::new("search_exact_batch", dim, n, threads, nq_batch as f64, "queries/s", "1 pass over the vectors");
        for _ in 0..runs {
            let start = Instant::now();
            black_box(stream(&map[..]));
            let one = start.elapsed().as_secs_f64();
            single.base_times.push(one);
            batch.base_times.push(one);
            single.base_ops = 1.0;
            batch.base_ops = 1.0;
            let start = Instant::now();
            for q in 0..nq_single {
                let mut found = 0;
                check(
                    unsafe { omen_search(h.0, self.queries[q * dim..].as_ptr(), K, &p, hits.as_mut_ptr(), &mut found) },
                    "search",
                );
            }
            single.times.push(start.elapsed().as_secs_f64());
            let start = Instant::now();
            check(
                unsafe {
                    omen_search_batch(h.0, nq_batch, self.queries.as_ptr(), K, &p, hits.as_mut_ptr(), counts.as_mut_ptr())
                },
                "search_batch",
            );
            batch.times.push(start.elapsed().as_secs_f64());
        }
        self.emit(single);
        self.emit(batch);
    }

    /// Checkpoint after 1,000 new vectors, vs. a fresh-mmap write+sync of
    /// the same 1,000 vectors; the bare fdatasync of one 4 KiB page rides along.
    fn checkpoint_delta(&mut self, h: &Handle, round: usize) {
        let (dim, n) = (self.dim, self.n);
        let runs = self.cfg.runs.max(5);
        let delta = 1000;
        let mut rec = Rec::new("checkpoint_after_1000", dim, n, 1, 1.0, "ms", "mmap write+sync of 1000 vectors");
        let mut fsync_only = vec![];
        let mut put_t = vec![];
        let sync_path = self.path("fsync-probe");
        let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&sync_path).unwrap();
        for run in 0..runs {
            let ids = Ids::new(&format!("n{round}r{run}-"), 0, delta);
            let vectors = &self.base[..delta * dim];
            let start = Instant::now();
            h.put(&ids, vectors, dim, BATCH);
            put_t.push(start.elapsed().as_secs_f64());
            let (start, cpu) = (Instant::now(), cpu_now());
            h.checkpoint();
            rec.times.push(start.elapsed().as_secs_f64());
            rec.cpu.push(cpu_now() - cpu);
            rec.base_times.push(baseline_write(&self.path("delta.f32"), bytemuck::cast_slice(vectors)));
            use std::os::unix::fs::FileExt;
            let start = Instant::now();
            f.write_all_at(&[run as u8; 4096], 0).unwrap();
            f.sync_data().unwrap();
            fsync_only.push(start.elapsed().as_secs_f64());
        }
        rec.extra.push(("fdatasync_4k_ms".into(), median(&fsync_only) * 1e3));
        rec.extra.push(("put_1000_ms".into(), median(&put_t) * 1e3));
        let _ = std::fs::remove_file(&sync_path);
        let _ = std::fs::remove_file(self.path("delta.f32"));
        self.emit(rec);
    }

    /// delete_batch of n/20 distinct ids per run (batches of 1,000) + checkpoint.
    fn delete(&mut self, h: &Handle) {
        let (dim, n, runs) = (self.dim, self.n, self.cfg.runs);
        let per = (n / 20).max(1);
        let mut rec = Rec::new("delete+checkpoint", dim, n, 1, per as f64, "vectors/s", "mmap write+sync of 8 B/id");
        for run in 0..runs {
            let first = (run * per) % n;
            let ids = Ids::new("doc-", first, per.min(n - first));
            let start = Instant::now();
            for b in (0..ids.offsets.len() - 1).step_by(BATCH) {
                let m = BATCH.min(ids.offsets.len() - 1 - b);
                let mut deleted = 0;
                check(
                    unsafe { omen_delete_batch(h.0, m, ids.bytes.as_ptr(), ids.offsets[b..].as_ptr(), &mut deleted) },
                    "delete",
                );
            }
            h.checkpoint();
            rec.times.push(start.elapsed().as_secs_f64());
            rec.base_times.push(baseline_write(&self.path("tomb.bin"), &vec![7u8; per * 8]));
        }
        let _ = std::fs::remove_file(self.path("tomb.bin"));
        self.emit(rec);
    }

    /// omen_open (and omen_recover) of the closed store, page cache warm.
    fn open_recover(&mut self, path: &Path, workload_suffix: &str) {
        let (dim, n, runs) = (self.dim, self.n, self.cfg.runs.max(5));
        let cpath = CString::new(path.to_str().unwrap()).unwrap();
        if self.cfg.wants("open") {
            let mut rec = Rec::new(&format!("open{workload_suffix}"), dim, n, 1, 1.0, "ms", "1 pass over non-vector files");
            let mut heap = 0;
            for _ in 0..runs {
                let (t, b) = baseline_stream_dir(path, &["vectors", "LOCK"]);
                rec.base_times.push(t);
                rec.extra.retain(|(k, _)| k != "metadata_bytes");
                rec.extra.push(("metadata_bytes".into(), b as f64));
                let mut store = std::ptr::null_mut();
                let (start, cpu) = (Instant::now(), cpu_now());
                check(unsafe { omen_open(cpath.as_ptr(), std::ptr::null(), &mut store) }, "reopen");
                rec.times.push(start.elapsed().as_secs_f64());
                rec.cpu.push(cpu_now() - cpu);
                let h = Handle(store);
                heap = h.stats().heap_bytes;
                h.close();
            }
            rec.extra.push(("heap_bytes".into(), heap as f64));
            self.emit(rec);
        }
        if self.cfg.wants("recover") {
            let mut rec = Rec::new(&format!("recover{workload_suffix}"), dim, n, 1, 1.0, "ms", "1 pass over all files");
            for _ in 0..self.cfg.runs {
                let (t, b) = baseline_stream_dir(path, &["LOCK"]);
                rec.base_times.push(t);
                rec.extra.retain(|(k, _)| k != "store_bytes");
                rec.extra.push(("store_bytes".into(), b as f64));
                let mut store = std::ptr::null_mut();
                let mut report = unsafe { std::mem::zeroed::<omen_recovery>() };
                report.struct_size = std::mem::size_of::<omen_recovery>() as u32;
                let start = Instant::now();
                check(unsafe { omen_recover(cpath.as_ptr(), std::ptr::null(), &mut store, &mut report) }, "recover");
                rec.times.push(start.elapsed().as_secs_f64());
                Handle(store).close();
                rec.extra.retain(|(k, _)| k != "verified_gb_per_s");
                rec.extra.push(("verified_gb_per_s".into(), report.verified_bytes as f64 / rec.times.last().unwrap() / 1e9));
            }
            self.emit(rec);
        }
    }

    /// Exact top-10 of each query (from --gt, or by the store's exact scan).
    fn ground_truth(&mut self, h: &Handle, nq: usize) -> Vec<Vec<usize>> {
        if let Some(gt) = &self.gt {
            let k = gt.len() / (self.queries.len() / self.dim);
            return (0..nq).map(|q| gt[q * k..q * k + K].to_vec()).collect();
        }
        let mut hits = vec![omen_hit { key: 0, distance: 0.0, reserved: 0 }; nq * K];
        let mut counts = vec![0usize; nq];
        let p = params(0, true, 0);
        check(
            unsafe { omen_search_batch(h.0, nq, self.queries.as_ptr(), K, &p, hits.as_mut_ptr(), counts.as_mut_ptr()) },
            "gt search",
        );
        (0..nq).map(|q| hits[q * K..q * K + counts[q]].iter().map(|x| h.key_row(x.key)).collect()).collect()
    }

    /// PQ: per run a fresh store (PQ m = dim/24, 8 bits): put the first
    /// min(n/4, 25,000) rows, omen_train_pq (timed), put the rest (timed:
    /// encoding on put), checkpoint. Then search the last store.
    fn pq(&mut self, threads: u32, suffix: &str, search: bool) -> Option<Handle> {
        let (dim, n, runs) = (self.dim, self.n, self.cfg.runs);
        let m = pq_m(dim);
        let t = (n / 4).min(25_000);
        let rest = n - t;
        let path = self.path("pq");
        let train_ids = Ids::new("doc-", 0, t);
        let rest_ids = Ids::new("doc-", t, rest);
        let mut train = Rec::new(&format!("train_pq{suffix}"), dim, n, threads, 1.0, "ms", "1 pass over the sample");
        train.extra.push(("sample".into(), t as f64));
        train.extra.push(("pq_m".into(), m as f64));
        let mut enc = Rec::new(&format!("put_pq_encode{suffix}"), dim, n, threads, rest as f64, "vectors/s", "mmap memcpy+msync+fdatasync");
        let mut last = None;
        for run in 0..runs {
            drop(last.take());
            let _ = std::fs::remove_dir_all(&path);
            let h = Handle::open(&path, dim, Some((m, 8)), threads, OMEN_OPEN_CREATE);
            h.put(&train_ids, &self.base[..t * dim], dim, BATCH);
            let start = Instant::now();
            black_box(stream(bytemuck::cast_slice(&self.base[..t * dim])));
            train.base_times.push(start.elapsed().as_secs_f64());
            let (start, cpu) = (Instant::now(), cpu_now());
            h.train();
            train.times.push(start.elapsed().as_secs_f64());
            train.cpu.push(cpu_now() - cpu);
            let rest_bytes: &[u8] = bytemuck::cast_slice(&self.base[t * dim..]);
            let base_path = self.scratch.join("pqbase.f32");
            if run % 2 == 1 {
                enc.base_times.push(baseline_write(&base_path, rest_bytes));
            }
            let (start, cpu) = (Instant::now(), cpu_now());
            h.put(&rest_ids, &self.base[t * dim..], dim, BATCH);
            h.checkpoint();
            enc.times.push(start.elapsed().as_secs_f64());
            enc.cpu.push(cpu_now() - cpu);
            if run % 2 == 0 {
                enc.base_times.push(baseline_write(&base_path, rest_bytes));
            }
            last = Some(h);
        }
        let _ = std::fs::remove_file(self.scratch.join("pqbase.f32"));
        self.emit(train);
        self.emit(enc);
        let h = last.unwrap();
        if search {
            self.pq_search(&h, threads, suffix);
        }
        Some(h)
    }

    fn pq_search(&mut self, h: &Handle, threads: u32, suffix: &str) {
        let (dim, n, runs) = (self.dim, self.n, self.cfg.runs);
        let m = pq_m(dim) as usize;
        let nq_total = self.queries.len() / dim;
        // Single queries: ~0.5 s per run; batch: all queries (at most 1,000).
        let nq_single = ((2e9 / (n * m) as f64) as usize).clamp(20, nq_total);
        let nq_batch = nq_total.min(1000).max(nq_single);
        // Recall over every batch query when the ground truth is given (as the
        // peers in crates/omendb-bench/scripts/compare.py measure it), else over 100 exact searches.
        let nq_recall = if self.gt.is_some() { nq_batch } else { nq_total.min(100) };
        let gt = self.ground_truth(h, nq_recall);
        let codes_bytes = n * m;
        let scan_base: Vec<u8> = self.bytes()[..codes_bytes.min(self.bytes().len())].to_vec();
        let mut hits = vec![omen_hit { key: 0, distance: 0.0, reserved: 0 }; nq_batch * 100];
        let mut counts = vec![0usize; nq_batch];
        // rerank 20 (2k): the cheapest re-rank, which lifts recall above the plain scan's.
        for rerank in [0u32, 20, 100] {
            let p = params(rerank, false, threads);
            let name = |w: &str| if rerank > 0 { format!("{w}_rerank{rerank}{suffix}") } else { format!("{w}{suffix}") };
            let mut single = Rec::new(&name("search_pq"), dim, n, 1, nq_single as f64, "queries/s", "1 pass over the codes");
            let mut batch = Rec::new(&name("search_pq_batch"), dim, n, threads, nq_batch as f64, "queries/s", "1 pass over the codes");
            single.base_ops = 1.0;
            batch.base_ops = 1.0;
            for _ in 0..runs {
                let start = Instant::now();
                black_box(stream(&scan_base));
                let one = start.elapsed().as_secs_f64();
                single.base_times.push(one);
                batch.base_times.push(one);
                let (start, cpu) = (Instant::now(), cpu_now());
                for q in 0..nq_single {
                    let mut found = 0;
                    check(
                        unsafe { omen_search(h.0, self.queries[q * dim..].as_ptr(), K, &p, hits.as_mut_ptr(), &mut found) },
                        "pq search",
                    );
                }
                single.times.push(start.elapsed().as_secs_f64());
                single.cpu.push(cpu_now() - cpu);
                let (start, cpu) = (Instant::now(), cpu_now());
                check(
                    unsafe {
                        omen_search_batch(h.0, nq_batch, self.queries.as_ptr(), K, &p, hits.as_mut_ptr(), counts.as_mut_ptr())
                    },
                    "pq search batch",
                );
                batch.times.push(start.elapsed().as_secs_f64());
                batch.cpu.push(cpu_now() - cpu);
            }
            // recall@10 of the batch results (same code path as single).
            let mut sum = 0.0;
            for q in 0..nq_recall {
                let got: Vec<usize> = hits[q * K..q * K + counts[q]].iter().map(|x| h.key_row(x.key)).collect();
                sum += gt[q].iter().filter(|r| got.contains(r)).count() as f64 / K as f64;
            }
            let recall = sum / nq_recall as f64;
            single.extra.push(("recall_at_10".into(), recall));
            batch.extra.push(("recall_at_10".into(), recall));
            self.emit(single);
            self.emit(batch);
        }
    }

    fn cleanup(&self) {
        for w in ["store", "base.f32", "pq"] {
            let p = self.path(w);
            let _ = std::fs::remove_dir_all(&p);
            let _ = std::fs::remove_file(&p);
        }
    }
}

fn run_case(cfg: &Config, dim: usize, n: usize, round: usize) -> Vec<Rec> {
    let t0 = Instant::now();
    let (base, queries, gt) = match &cfg.data {
        Some((d, q, gt)) => {
            let base = read_f32(d);
            assert_eq!(base.len(), n * dim, "{}: expected {n} x {dim} floats", d.display());
            (base, read_f32(q), gt.as_ref().map(|g| read_i32(g)))
        }
        None => {
            let syn = Synthetic::new(dim);
            (syn.rows(0, n), syn.rows(1 << 40, 1000), None)
        }
    };
    println!("# case {dim} x {n}: data ready in {:.1} s", t0.elapsed().as_secs_f64());
    let scratch = cfg.dir.clone();
    std::fs::create_dir_all(&scratch).unwrap();
    let mut c = Case { cfg, dim, n, base, queries, gt, ids: Ids::new("doc-", 0, n), scratch, out: vec![], };
    let threads = cfg.threads;
    let raw_needed = ["put", "get", "get_batch", "exact", "checkpoint_delta", "delete", "open", "recover"]
        .iter()
        .any(|w| cfg.wants(w));
    if raw_needed {
        let h = c.put(threads, "put+checkpoint");
        if cfg.wants("get") || cfg.wants("get_batch") {
            c.get(&h);
        }
        // Exact scans over at most 1 GB per query in the default grids.
        if cfg.wants("exact") && (n * dim <= 100_000 * 1536 || cfg.heavy) {
            c.exact(&h, threads);
        }
        if cfg.wants("checkpoint_delta") {
            c.checkpoint_delta(&h, round);
        }
        if cfg.wants("delete") {
            c.delete(&h);
        }
        h.close();
        let path = c.path("store");
        c.open_recover(&path, "");
    }
    // PQ on 1M x 768 and larger only in the full grid (or when asked for).
    if cfg.wants("pq") && (n * dim <= 256_000_000 || cfg.heavy || cfg.only.is_some()) {
        let h = c.pq(threads, "", true).unwrap();
        h.close();
        let path = c.path("pq");
        c.open_recover(&path, "_pq");
    }
    for &t in &cfg.scaling {
        let sfx = format!("@{t}t");
        if cfg.wants("put") {
            drop(c.put(t, &format!("put+checkpoint{sfx}")));
        }
        if cfg.wants("pq") {
            drop(c.pq(t, &sfx, true));
        }
    }
    c.cleanup();
    println!("# case {dim} x {n} done in {:.1} s", t0.elapsed().as_secs_f64());
    c.out
}

fn main() {
    let cfg = parse_args();
    println!(
        "# omendb {} bench: cases {:?}, runs {}, threads {}, scratch {}",
        unsafe { std::ffi::CStr::from_ptr(omen_version()) }.to_string_lossy(),
        cfg.cases,
        cfg.runs,
        cfg.threads,
        cfg.dir.display()
    );
    println!("# every figure: median of the runs; ratio = baseline time per op / omendb time per op (> 1 = faster than the baseline)");
    let start = Instant::now();
    let mut all = vec![];
    for (round, &(dim, n)) in cfg.cases.iter().enumerate() {
        all.extend(run_case(&cfg, dim, n, round));
    }
    println!("# total {:.1} s", start.elapsed().as_secs_f64());
    if let Some(path) = &cfg.json {
        let body: Vec<String> = all.iter().map(|r| format!("  {}", r.json())).collect();
        let meta = format!(
            "{{\"version\":\"{}\",\"runs\":{},\"threads\":{},\"cores\":{},\"seconds\":{:.1}}}",
            unsafe { std::ffi::CStr::from_ptr(omen_version()) }.to_string_lossy(),
            cfg.runs,
            cfg.threads,
            std::thread::available_parallelism().map(|x| x.get()).unwrap_or(1),
            start.elapsed().as_secs_f64()
        );
        std::fs::write(path, format!("{{\"meta\":{meta},\"records\":[\n{}\n]}}\n", body.join(",\n"))).unwrap();
        println!("# wrote {}", path.display());
    }
}
