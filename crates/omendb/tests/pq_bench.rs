//! Rough PQ throughput figures. Ignored by default; run in release mode:
//! `cargo test --release --test pq_bench -- --ignored --nocapture --test-threads 1`

use std::time::Instant;

use omendb::quantization::{scan, scan_parallel, Codebooks, PqConfig, PqMetric, TopK, TrainOptions};

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// CPU seconds used so far by this thread or this process: robust against
/// other processes competing for the cores, unlike wall-clock time.
fn cpu_seconds(process: bool) -> f64 {
    let clock = if process { libc::CLOCK_PROCESS_CPUTIME_ID } else { libc::CLOCK_THREAD_CPUTIME_ID };
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn threads() -> usize {
    std::env::var("PQ_BENCH_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(2)
}

#[test]
#[ignore]
fn bench_train_768_m32_b8() {
    let cfg = PqConfig { dim: 768, m: 32, bits: 8 };
    let sample = random(25_000 * 768, 1);
    let threads = threads();
    let (t, c) = (Instant::now(), cpu_seconds(true));
    let cb = Codebooks::train(&cfg, &sample, &TrainOptions { iterations: 25, seed: 1, threads }, &mut |_, _| {})
        .unwrap();
    let (s, c) = (t.elapsed().as_secs_f64(), cpu_seconds(true) - c);
    println!("train 25,000 x 768, m=32, bits=8, 25 iterations, {threads} threads: {s:.2} s wall, {c:.2} CPU-s");
    assert_eq!(cb.centroids().len(), 32 * 256 * 24);
}

#[test]
#[ignore]
fn bench_encode_768() {
    for (m, bits) in [(32usize, 8u32), (64, 4)] {
        let cfg = PqConfig { dim: 768, m, bits };
        let cb = Codebooks::from_centroids(&cfg, random(m * cfg.ksub() * cfg.dsub(), 2)).unwrap();
        let n = 50_000;
        let data = random(n * 768, 3);
        let mut codes = vec![0u8; n * cfg.code_size()];
        for threads in [1, threads()] {
            let (t, c) = (Instant::now(), cpu_seconds(true));
            cb.encode(&data, &mut codes, threads);
            let (s, c) = (t.elapsed().as_secs_f64(), cpu_seconds(true) - c);
            println!(
                "encode 768-d m={m} bits={bits}, {threads} threads: {:.0} vectors/s wall, {:.0} vectors per CPU-s",
                n as f64 / s,
                n as f64 / c
            );
        }
    }
}

#[test]
#[ignore]
fn bench_scan() {
    for (dim, m, bits) in [(768usize, 32usize, 8u32), (768, 64, 4), (768, 32, 4), (128, 16, 8)] {
        let cfg = PqConfig { dim, m, bits };
        let cb = Codebooks::from_centroids(&cfg, random(m * cfg.ksub() * cfg.dsub(), 4)).unwrap();
        // 100,000 codes: the size of issue 6's search benchmark (fits in L2 at
        // 32 bytes a code; 1M codes would measure L3 bandwidth instead).
        let n = 100_000;
        let cs = cfg.code_size();
        let codes: Vec<u8> = random(n * cs, 5).iter().map(|v| ((v + 0.5) * 256.0) as u8).collect();
        let q = random(dim, 6);
        let table = cb.query_table(&q, PqMetric::L2);
        let reps = 50;
        let (t, c) = (Instant::now(), cpu_seconds(false));
        let mut sink = 0.0f32;
        for _ in 0..reps {
            let mut top = TopK::new(10);
            scan(&table, &codes, 0, None, &mut top);
            sink += top.into_sorted_vec()[0].0;
        }
        let (s, c) = (t.elapsed().as_secs_f64(), cpu_seconds(false) - c);
        let live: Vec<u64> = (0..n.div_ceil(64)).map(|i| if i % 2 == 0 { u64::MAX } else { 0xAAAA_AAAA_AAAA_AAAA }).collect();
        let c2 = cpu_seconds(false);
        let mut top = TopK::new(10);
        scan(&table, &codes, 0, Some(&live), &mut top);
        let s2 = cpu_seconds(false) - c2;
        let tp = Instant::now();
        for _ in 0..reps {
            sink += scan_parallel(&table, &codes, 0, None, 10, threads()).into_sorted_vec()[0].0;
        }
        let sp = tp.elapsed().as_secs_f64();
        let tq = Instant::now();
        for _ in 0..100 {
            sink += cb.query_table(&q, PqMetric::L2).distance(&codes[..cs]);
        }
        let sq = tq.elapsed().as_secs_f64() / 100.0;
        println!(
            "scan dim={dim} m={m} bits={bits} ({cs} B codes), k=10, 1 thread: {:.0} M codes/s wall, {:.0} M codes per CPU-s; 75% live: {:.0} M codes per CPU-s; scan_parallel {} threads: {:.0} M codes/s wall; query table {:.1} us ({sink:.1})",
            (reps * n) as f64 / s / 1e6,
            (reps * n) as f64 / c / 1e6,
            n as f64 / s2 / 1e6,
            threads(),
            (reps * n) as f64 / sp / 1e6,
            sq * 1e6
        );
    }
}
