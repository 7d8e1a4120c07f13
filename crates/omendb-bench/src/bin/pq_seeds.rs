//! How much recall@10 of a PQ32x8 index moves with the k-means seed alone.
//! Trains on the first 25,000 rows (as crates/omendb-bench/scripts/compare.py does), encodes all,
//! scans with k = 10 and scores against the ground truth, for each seed of
//! SEEDS (a comma-separated list); beside each recall, the mean squared reconstruction error of the
//! encoded rows (what k-means minimizes), to show whether recall follows it.
//! The faiss counterpart is crates/omendb-bench/scripts/faiss_seeds.py (docs/pq.md has both).
//!
//!     cargo run --release -p omendb-bench --bin pq_seeds -- BASE.f32 QUERIES.f32 GT.i32 [DIM] [ITERATIONS] [SEEDS] [M]
//!
//! crates/omendb-bench/scripts/compare.py runs it for the recall-over-seeds figure of its PQ rows.
//!
//! BASE/QUERIES: raw little-endian f32 rows; GT: 10 i32 row numbers per query.
//! crates/omendb-bench/scripts/faiss_seeds.py --write DIR writes the benchmark's data set there.

use omendb::quantization::{scan, Codebooks, PqConfig, PqMetric, TopK, TrainOptions};

fn read_f32(path: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: pq_seeds BASE.f32 QUERIES.f32 GT.i32 [DIM=768] [ITERATIONS=25] [SEEDS=1,2,3,4] [M=DIM/24]");
        std::process::exit(2);
    }
    let dim: usize = args.get(4).map_or(768, |s| s.parse().unwrap());
    let iterations: u32 = args.get(5).map_or(25, |s| s.parse().unwrap());
    let seeds: Vec<u64> = args.get(6).map_or("1,2,3,4", |s| s.as_str()).split(',').map(|s| s.trim().parse().unwrap()).collect();
    let (base, queries) = (read_f32(&args[1]), read_f32(&args[2]));
    let gt: Vec<u32> = std::fs::read(&args[3]).unwrap().chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
    let (n, nq) = (base.len() / dim, queries.len() / dim);
    let m: usize = args.get(7).map_or(dim / 24, |s| s.parse().unwrap());
    let cfg = PqConfig { dim, m, bits: 8 };
    let train_n = (n / 4).min(25_000);
    for seed in seeds {
        let options = TrainOptions { iterations, seed, threads: 2 };
        let cb = Codebooks::train(&cfg, &base[..train_n * dim], &options, &mut |_, _| {}).unwrap();
        let mut codes = vec![0u8; n * cfg.code_size()];
        cb.encode(&base, &mut codes, 2);
        let mut found = 0;
        for (q, truth) in queries.chunks_exact(dim).zip(gt.chunks_exact(10)) {
            let mut top = TopK::new(10);
            scan(&cb.query_table(q, PqMetric::L2), &codes, 0, None, &mut top);
            let got: Vec<u64> = top.into_sorted_vec().iter().map(|x| x.1).collect();
            found += truth.iter().filter(|&&g| got.contains(&(g as u64))).count();
        }
        let mut decoded = vec![0.0f32; dim];
        let mut squared_error = 0.0f64;
        for (row, code) in base.chunks_exact(dim).zip(codes.chunks_exact(cfg.code_size())) {
            cb.decode(code, &mut decoded);
            squared_error += row.iter().zip(&decoded).map(|(a, b)| ((a - b) * (a - b)) as f64).sum::<f64>();
        }
        println!(
            "omendb PQ{m}x8, {iterations} iterations, seed {seed}: recall@10 {:.4} mse {:.4}",
            found as f64 / (nq * 10) as f64,
            squared_error / n as f64
        );
    }
}
