//! Release benchmark of the core store against the hardware, through the C
//! ABI functions, each figure beside a baseline measured in the same run:
//!
//! - put: 100,000 x 768 vectors in batches of 1,000 through omen_put_batch,
//!   then omen_checkpoint, vs. memcpy of the same bytes into a fresh mmap'd
//!   file + fdatasync;
//! - get: random omen_get of present ids, vs. a memcpy gather of random rows
//!   from a mapped file.
//!
//! Usage: cargo run --release -p omendb-bench --bin bench -- [n] [dim] [runs]
//! Prints one line per run and the medians with ratios (JSON on the last line).

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

#[path = "bench_common/stats.rs"]
mod stats;
use stats::median;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn check(status: omen_status, what: &str) {
    if status != omen_status::OMEN_OK {
        let msg = unsafe { std::ffi::CStr::from_ptr(omen_last_error()) };
        panic!("{what}: {status:?}: {msg:?}");
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::var_os("OMENDB_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let p = dir.join(format!("omendb-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    let _ = std::fs::remove_file(&p);
    p
}

/// memcpy `data` into a fresh file through a shared mapping, then fdatasync.
fn baseline_write(path: &Path, data: &[u8]) -> f64 {
    let start = Instant::now();
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).unwrap();
    file.set_len(data.len() as u64).unwrap();
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file).unwrap() };
    map.copy_from_slice(data);
    map.flush().unwrap();
    file.sync_data().unwrap();
    start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("numeric argument")).collect();
    let n = *args.first().unwrap_or(&100_000);
    let dim = *args.get(1).unwrap_or(&768);
    let runs = *args.get(2).unwrap_or(&5);
    let batch = 1000;
    let gets: usize = std::env::var("OMENDB_BENCH_GETS").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000);

    let mut rng = Rng(0x9E3779B97F4A7C15);
    let vectors: Vec<f32> = (0..n * dim).map(|_| (rng.next() >> 40) as f32 / 16_777_216.0).collect();
    let mut ids = Vec::new();
    let mut offsets = vec![0u64];
    for i in 0..n {
        ids.extend_from_slice(format!("doc-{i:08}").as_bytes());
        offsets.push(ids.len() as u64);
    }
    let bytes: &[u8] = bytemuck::cast_slice(&vectors);
    let probes: Vec<usize> = (0..gets).map(|_| (rng.next() % n as u64) as usize).collect();

    let (mut put_s, mut base_w, mut get_s, mut base_r) = (vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        // Baseline write first in odd runs, second in even ones, so page-cache
        // state favours neither.
        let base_path = scratch("baseline");
        let store_path = scratch("store");
        let mut order = [0, 1];
        if run % 2 == 1 {
            order.reverse();
        }
        let mut store: *mut omen_store = std::ptr::null_mut();
        for which in order {
            if which == 0 {
                base_w.push(baseline_write(&base_path, bytes));
                continue;
            }
            let mut opts = unsafe { std::mem::zeroed::<omen_options>() };
            unsafe { omen_options_default(&mut opts) };
            opts.flags = OMEN_OPEN_CREATE;
            opts.dim = dim as u32;
            let cpath = CString::new(store_path.to_str().unwrap()).unwrap();
            let start = Instant::now();
            check(unsafe { omen_open(cpath.as_ptr(), &opts, &mut store) }, "open");
            for b in (0..n).step_by(batch) {
                let m = batch.min(n - b);
                check(
                    unsafe {
                        omen_put_batch(store, m, ids.as_ptr(), offsets[b..].as_ptr(), vectors[b * dim..].as_ptr())
                    },
                    "put",
                );
            }
            check(unsafe { omen_checkpoint(store, std::ptr::null_mut()) }, "checkpoint");
            put_s.push(start.elapsed().as_secs_f64());
        }

        // Random reads: omen_get vs. a gather from a mapped file.
        let file = std::fs::File::open(&base_path).unwrap();
        let map = unsafe { memmap2::Mmap::map(&file).unwrap() };
        let rows: &[f32] = bytemuck::cast_slice(&map[..]);
        let mut out = vec![0f32; dim];
        let start = Instant::now();
        for &p in &probes {
            out.copy_from_slice(&rows[p * dim..(p + 1) * dim]);
            black_box(&out);
        }
        base_r.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        for &p in &probes {
            let id = &ids[offsets[p] as usize..offsets[p + 1] as usize];
            check(unsafe { omen_get(store, id.as_ptr(), id.len(), out.as_mut_ptr(), dim) }, "get");
            black_box(&out);
        }
        get_s.push(start.elapsed().as_secs_f64());
        check(unsafe { omen_close(store) }, "close");
        let _ = std::fs::remove_dir_all(&store_path);
        let _ = std::fs::remove_file(&base_path);
        println!(
            "run {run}: put+checkpoint {:.0} vec/s (mmap+sync baseline {:.0}); get {:.0}/s (gather baseline {:.0}/s)",
            n as f64 / put_s[run],
            n as f64 / base_w[run],
            gets as f64 / get_s[run],
            gets as f64 / base_r[run]
        );
    }
    let (put, bw, get, br) = (median(put_s), median(base_w), median(get_s), median(base_r));
    println!(
        "median of {runs}: put {:.0} vec/s = {:.2}x mmap+sync baseline ({:.0} vec/s, {:.2} GB/s); \
         get {:.0}/s = {:.2}x gather baseline ({:.0}/s)",
        n as f64 / put,
        bw / put,
        n as f64 / bw,
        bytes.len() as f64 / bw / 1e9,
        gets as f64 / get,
        br / get,
        gets as f64 / br
    );
    println!(
        "{{\"n\":{n},\"dim\":{dim},\"runs\":{runs},\"put_vps\":{:.0},\"put_baseline_vps\":{:.0},\"put_ratio\":{:.3},\
         \"get_per_s\":{:.0},\"get_baseline_per_s\":{:.0},\"get_ratio\":{:.3}}}",
        n as f64 / put,
        n as f64 / bw,
        bw / put,
        gets as f64 / get,
        gets as f64 / br,
        br / get
    );
}
