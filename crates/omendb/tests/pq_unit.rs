//! Functional tests of the public PQ API (no timing, no data files).

use omendb::quantization::{scan, scan_distances, scan_many, scan_parallel, Codebooks, PqConfig, PqMetric, TopK, TrainOptions};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
}

fn cfg(dim: usize, m: usize, bits: u32) -> PqConfig {
    PqConfig { dim, m, bits }
}

fn opts(iterations: u32, seed: u64, threads: usize) -> TrainOptions {
    TrainOptions { iterations, seed, threads }
}

fn train(c: &PqConfig, sample: &[f32], o: &TrainOptions) -> Codebooks {
    Codebooks::train(c, sample, o, &mut |_, _| {}).unwrap()
}

/// Codebooks trained (3 iterations) on 400 random points, and `n` random
/// vectors encoded with them.
fn trained_and_encoded(rng: &mut Rng, dim: usize, m: usize, bits: u32, n: usize) -> (PqConfig, Codebooks, Vec<f32>, Vec<u8>) {
    let c = cfg(dim, m, bits);
    let cb = train(&c, &rng.vec(400 * dim), &opts(3, 1, 1));
    let data = rng.vec(n * dim);
    let mut codes = vec![0u8; n * c.code_size()];
    cb.encode(&data, &mut codes, 2);
    (c, cb, data, codes)
}

#[test]
fn config_validation() {
    assert!(cfg(128, 16, 8).validate().is_ok());
    assert!(cfg(128, 32, 4).validate().is_ok());
    assert!(cfg(1, 1, 8).validate().is_ok());
    assert!(cfg(768, 768, 8).validate().is_ok());
    assert!(cfg(128, 0, 8).validate().is_err());
    assert!(cfg(0, 1, 8).validate().is_err());
    assert!(cfg(128, 3, 8).validate().is_err()); // does not divide
    assert!(cfg(128, 16, 2).validate().is_err());
    assert!(cfg(128, 16, 16).validate().is_err());
    assert!(cfg(128, 16, 0).validate().is_err());
    assert!(cfg(3, 1, 4).validate().is_err()); // odd m at 4 bits
    assert!(cfg(6, 3, 4).validate().is_err());
    assert!(cfg(usize::MAX, 1, 8).validate().is_err());

    let c = cfg(768, 32, 8);
    assert_eq!((c.code_size(), c.ksub(), c.dsub()), (32, 256, 24));
    let c = cfg(128, 32, 4);
    assert_eq!((c.code_size(), c.ksub(), c.dsub()), (16, 16, 4));

    // train refuses a bad config and bad samples
    let bad = Codebooks::train(&cfg(8, 3, 8), &[0.0; 8], &TrainOptions::default(), &mut |_, _| {});
    assert!(bad.is_err());
    let c = cfg(8, 2, 8);
    let o = TrainOptions::default();
    assert!(Codebooks::train(&c, &[], &o, &mut |_, _| {}).is_err());
    assert!(Codebooks::train(&c, &[0.0; 12], &o, &mut |_, _| {}).is_err());
    let mut s = vec![0.0; 16];
    s[9] = f32::NAN;
    assert!(Codebooks::train(&c, &s, &o, &mut |_, _| {}).is_err());
    s[9] = f32::INFINITY;
    assert!(Codebooks::train(&c, &s, &o, &mut |_, _| {}).is_err());
}

/// Codebooks with given distinct centroids: decode(code) -> encode gives back
/// the same code, and decode is exact.
#[test]
fn encode_decode_round_trip_on_representable_data() {
    for &(dim, m, bits) in &[(32usize, 8usize, 8u32), (32, 8, 4), (12, 3, 8), (24, 24, 8), (16, 16, 4)] {
        let c = cfg(dim, m, bits);
        let mut rng = Rng(dim as u64 * 7 + m as u64 + bits as u64);
        // Centroids on a grid, each coordinate a permutation of distinct values:
        // far enough apart that f32 rounding cannot confuse the nearest one.
        let (k, dsub) = (c.ksub(), c.dsub());
        let mut centroids = vec![0.0f32; m * k * dsub];
        for j in 0..m {
            for t in 0..dsub {
                let mut perm: Vec<usize> = (0..256).collect();
                for i in (1..256).rev() {
                    perm.swap(i, (rng.next() % (i as u64 + 1)) as usize);
                }
                for ci in 0..k {
                    centroids[(j * k + ci) * dsub + t] = perm[ci] as f32 * 0.25 - 32.0;
                }
            }
        }
        let cb = Codebooks::from_centroids(&c, centroids).unwrap();
        let n = 300;
        let cs = c.code_size();
        let codes: Vec<u8> = (0..n * cs).map(|_| rng.next() as u8).collect();
        let mut vectors = vec![0.0f32; n * dim];
        for i in 0..n {
            cb.decode(&codes[i * cs..(i + 1) * cs], &mut vectors[i * dim..(i + 1) * dim]);
        }
        for threads in [1, 3] {
            let mut again = vec![0u8; n * cs];
            cb.encode(&vectors, &mut again, threads);
            let bad = again.iter().zip(&codes).position(|(a, b)| a != b);
            assert_eq!(bad, None, "{c:?} threads={threads}");
        }
        // And the decoded values are the centroids bit for bit.
        for i in 0..n {
            for j in 0..m {
                let code = &codes[i * cs..(i + 1) * cs];
                let idx = cb.code_index(code, j);
                let want = &cb.centroids()[(j * c.ksub() + idx) * c.dsub()..][..c.dsub()];
                assert_eq!(&vectors[i * dim + j * c.dsub()..][..c.dsub()], want);
            }
        }
    }
}

/// Fewer sample points than centroids: the points become centroids, so they
/// encode and decode exactly.
#[test]
fn trained_on_few_points_is_exact() {
    for &(bits, n) in &[(8u32, 1usize), (8, 3), (8, 200), (8, 256), (4, 16), (4, 5)] {
        let c = cfg(16, 4, bits);
        let mut rng = Rng(n as u64);
        let sample = rng.vec(n * 16);
        let cb = train(&c, &sample, &opts(10, 1, 2));
        let mut codes = vec![0u8; n * c.code_size()];
        cb.encode(&sample, &mut codes, 1);
        let mut out = vec![0.0f32; 16];
        for i in 0..n {
            cb.decode(&codes[i * c.code_size()..(i + 1) * c.code_size()], &mut out);
            assert_eq!(&out[..], &sample[i * 16..(i + 1) * 16], "bits={bits} n={n} i={i}");
        }
    }
}

#[test]
fn degenerate_samples() {
    // Identical points (far more than ksub), and all-zero points.
    for value in [0.0f32, 3.5] {
        for bits in [8u32, 4] {
            let c = cfg(8, 2, bits);
            let sample = vec![value; 1000 * 8];
            let cb = train(&c, &sample, &opts(5, 9, 2));
            assert!(cb.centroids().iter().all(|v| v.is_finite()));
            let mut code = vec![0u8; c.code_size()];
            cb.encode(&sample[..8], &mut code, 1);
            let mut out = vec![0.0f32; 8];
            cb.decode(&code, &mut out);
            for v in out {
                assert!((v - value).abs() <= value.abs() * 2e-3, "{v} vs {value}");
            }
        }
    }
    // Only 3 distinct points, repeated: quantization error must be ~0.
    let c = cfg(4, 1, 8);
    let pts = [[1.0f32, 2.0, 3.0, 4.0], [-5.0, 0.0, 5.0, 0.0], [9.0, 9.0, 9.0, 9.0]];
    let sample: Vec<f32> = (0..900).flat_map(|i| pts[i % 3]).collect();
    let cb = train(&c, &sample, &opts(25, 3, 1));
    let mut codes = vec![0u8; 900];
    cb.encode(&sample, &mut codes, 2);
    let mut out = [0.0f32; 4];
    for i in 0..900 {
        cb.decode(&codes[i..i + 1], &mut out);
        for t in 0..4 {
            assert!((out[t] - pts[i % 3][t]).abs() < 0.05, "{out:?} vs {:?}", pts[i % 3]);
        }
    }
}

#[test]
fn training_is_deterministic_across_threads() {
    let mut rng = Rng(42);
    // Sub-space parallel path (m >= threads) and point-parallel path (m < threads).
    let cases = [(cfg(32, 8, 8), 1500usize), (cfg(32, 8, 4), 1500), (cfg(4, 2, 8), 5000), (cfg(6, 1, 8), 9000)];
    for (c, n) in cases {
        let sample = rng.vec(n * c.dim);
        let base = train(&c, &sample, &opts(4, 11, 1));
        for threads in [2, 3, 16] {
            let other = train(&c, &sample, &opts(4, 11, threads));
            assert_eq!(base.to_bytes(), other.to_bytes(), "{c:?} threads={threads}");
        }
        // A different seed gives a different result (sanity of the seeding).
        assert_ne!(base.to_bytes(), train(&c, &sample, &opts(4, 12, 1)).to_bytes());
        let mut a = vec![0u8; n * c.code_size()];
        let mut b = vec![0u8; n * c.code_size()];
        base.encode(&sample, &mut a, 1);
        base.encode(&sample, &mut b, 4);
        assert_eq!(a, b);
    }
}

#[test]
fn subsampling_large_samples_is_deterministic() {
    // 4 bits: more than 256 * 16 = 4096 points triggers the seeded sub-sample.
    let c = cfg(8, 2, 4);
    let sample = Rng(8).vec(5000 * 8);
    let a = train(&c, &sample, &opts(3, 5, 1));
    let b = train(&c, &sample, &opts(3, 5, 2));
    assert_eq!(a, b);
}

#[test]
fn training_reduces_quantization_error() {
    let c = cfg(16, 4, 4);
    let sample = Rng(77).vec(2000 * 16);
    let err = |cb: &Codebooks| -> f64 {
        let mut codes = vec![0u8; 2000 * c.code_size()];
        cb.encode(&sample, &mut codes, 1);
        let mut out = vec![0.0f32; 16];
        let mut e = 0.0f64;
        for i in 0..2000 {
            cb.decode(&codes[i * c.code_size()..(i + 1) * c.code_size()], &mut out);
            e += out.iter().zip(&sample[i * 16..]).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>();
        }
        e
    };
    let e0 = err(&train(&c, &sample, &opts(0, 1, 1)));
    let e10 = err(&train(&c, &sample, &opts(10, 1, 1)));
    assert!(e10 < e0 * 0.9, "{e10} vs {e0}");
}

#[test]
fn progress_callback_contract() {
    let mut rng = Rng(3);
    let cases = [
        (cfg(16, 8, 8), 600usize, 5u32, 1usize),
        (cfg(16, 8, 8), 600, 5, 2),
        (cfg(16, 8, 4), 600, 7, 3),
        (cfg(4, 1, 8), 5000, 6, 2), // m < threads: point-parallel
        (cfg(16, 8, 8), 100, 5, 2), // n < ksub: no real iterations
        (cfg(16, 8, 8), 600, 0, 2), // no iterations at all
    ];
    for (c, n, iterations, threads) in cases {
        let sample = rng.vec(n * c.dim);
        let me = std::thread::current().id();
        let mut calls: Vec<(u64, u64)> = Vec::new();
        let mut foreign = false;
        Codebooks::train(&c, &sample, &opts(iterations, 1, threads), &mut |d, t| {
            foreign |= std::thread::current().id() != me;
            calls.push((d, t));
        })
        .unwrap();
        let what = format!("{c:?} n={n} it={iterations} threads={threads}: {calls:?}");
        assert!(!foreign, "callback ran on another thread: {what}");
        assert!(!calls.is_empty(), "{what}");
        let total = calls[0].1;
        assert_eq!(total, c.m as u64 * iterations as u64, "{what}");
        assert!(calls.iter().all(|&(_, t)| t == total), "{what}");
        assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0), "{what}");
        assert_eq!(*calls.last().unwrap(), (total, total), "{what}");
        if threads == 1 && total > 0 {
            assert_eq!(calls.len() as u64, total, "one call per unit: {what}");
        }
    }
}

fn small_codebooks() -> Codebooks {
    let c = cfg(4, 2, 4);
    train(&c, &Rng(1).vec(400 * 4), &opts(3, 1, 1))
}

#[test]
fn bytes_round_trip() {
    for (c, n) in [(cfg(4, 2, 4), 400usize), (cfg(12, 3, 8), 600)] {
        let cb = train(&c, &Rng(2).vec(n * c.dim), &opts(3, 1, 1));
        let bytes = cb.to_bytes();
        let back = Codebooks::from_bytes(&bytes).unwrap();
        assert_eq!(back, cb);
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(back.config(), &c);
        assert!(cb.heap_bytes() >= cb.centroids().len() * 4);
    }
}

#[test]
fn from_bytes_rejects_damage_without_panicking() {
    let bytes = small_codebooks().to_bytes();
    // Truncated (and over-long) input.
    for len in 0..bytes.len() {
        assert!(Codebooks::from_bytes(&bytes[..len]).is_err(), "len {len}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Codebooks::from_bytes(&longer).is_err());
    // Every single bit flip.
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        assert!(Codebooks::from_bytes(&b).is_err(), "bit {i}");
    }
    // Garbage, with and without a plausible header.
    let mut rng = Rng(99);
    for len in [1usize, 7, 24, 28, 100, 284, 1000, 5000] {
        for _ in 0..50 {
            let mut g: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            assert!(Codebooks::from_bytes(&g).is_err());
            if len >= 24 {
                g[..24].copy_from_slice(&bytes[..24]);
                assert!(Codebooks::from_bytes(&g).is_err());
            }
        }
    }
    // Headers claiming absurd sizes.
    for (dim, m, bits) in [(u32::MAX, 1u32, 8u32), (1 << 20, 1, 8), (4, 0, 8), (4, 2, 5), (4, 3, 8)] {
        let mut b = bytes.clone();
        b[12..16].copy_from_slice(&dim.to_le_bytes());
        b[16..20].copy_from_slice(&m.to_le_bytes());
        b[20..24].copy_from_slice(&bits.to_le_bytes());
        assert!(Codebooks::from_bytes(&b).is_err());
    }
    // A valid checksum over a non-finite value is still refused.
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut b = bytes.clone();
        b[24..28].copy_from_slice(&bad.to_le_bytes());
        let n = b.len();
        let crc = crc32c::crc32c(&b[..n - 4]);
        b[n - 4..].copy_from_slice(&crc.to_le_bytes());
        assert!(Codebooks::from_bytes(&b).unwrap_err().contains("non-finite"));
    }
    // Wrong version with a valid checksum.
    let mut b = bytes.clone();
    b[8] = 2;
    let n = b.len();
    let crc = crc32c::crc32c(&b[..n - 4]);
    b[n - 4..].copy_from_slice(&crc.to_le_bytes());
    assert!(Codebooks::from_bytes(&b).unwrap_err().contains("version"));
}

#[test]
fn topk_matches_sort() {
    let mut rng = Rng(5);
    for &n in &[0usize, 1, 5, 100, 1000] {
        for &k in &[0usize, 1, 2, 10, 15, 16, 63, 64, 99, 100, 499, 2000] {
            // Few distinct distances so ties are common.
            let items: Vec<(f32, u64)> = (0..n).map(|i| ((rng.next() % 20) as f32 * 0.5, i as u64 * 3 + 1)).collect();
            let mut top = TopK::new(k);
            // Push in a scrambled order: the result must not depend on it.
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
            }
            for &i in &order {
                top.push(items[i].0, items[i].1);
                // A heap's threshold is its worst pair once full.
                if top.len() == k && 0 < k && k < 16 {
                    assert!(top.threshold().is_finite());
                }
            }
            // A reservoir's (k >= 16) is set by its first cut back to k,
            // when 2k pairs were kept.
            if k >= 16 && n >= 2 * k {
                assert!(top.threshold().is_finite(), "n={n} k={k}");
            }
            if top.len() < k {
                assert_eq!(top.threshold(), f32::INFINITY);
            }
            let mut want = items.clone();
            want.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
            want.truncate(k);
            // Whatever its mode, the threshold never drops below the k-th best.
            if let Some(worst) = want.last().filter(|_| want.len() == k) {
                assert!(top.threshold() >= worst.0, "n={n} k={k}");
            }
            assert_eq!(top.len(), want.len());
            assert_eq!(top.into_sorted_vec(), want, "n={n} k={k}");
        }
    }
    // -0.0 and 0.0 are the same distance; merge works.
    let mut a = TopK::new(3);
    a.push(0.0, 5);
    a.push(-0.0, 2);
    let mut b = TopK::new(3);
    b.push(-1.0, 9);
    b.push(7.0, 1);
    a.merge(b);
    let v = a.into_sorted_vec();
    assert_eq!(v.iter().map(|x| x.1).collect::<Vec<_>>(), vec![9, 2, 5]);
}

#[test]
fn query_table_matches_decoded_distances() {
    for &(dim, m, bits) in &[(32usize, 8usize, 8u32), (32, 8, 4), (30, 10, 8), (64, 32, 4), (24, 2, 4)] {
        let c = cfg(dim, m, bits);
        let mut rng = Rng(dim as u64 + bits as u64);
        let cb = train(&c, &rng.vec(500 * dim), &opts(3, 1, 1));
        let n = 77;
        let data = rng.vec(n * dim);
        let cs = c.code_size();
        let mut codes = vec![0u8; n * cs];
        cb.encode(&data, &mut codes, 1);
        let q = rng.vec(dim);
        for metric in [PqMetric::L2, PqMetric::InnerProduct] {
            let t = cb.query_table(&q, metric);
            assert_eq!(t.code_size(), cs);
            let mut all = vec![0.0f32; n];
            scan_distances(&t, &codes, &mut all);
            let mut rec = vec![0.0f32; dim];
            for i in 0..n {
                let code = &codes[i * cs..(i + 1) * cs];
                cb.decode(code, &mut rec);
                let exact: f64 = match metric {
                    PqMetric::L2 => rec.iter().zip(&q).map(|(a, b)| ((a - b) as f64).powi(2)).sum(),
                    PqMetric::InnerProduct => -rec.iter().zip(&q).map(|(a, b)| (a * b) as f64).sum::<f64>(),
                };
                let d = t.distance(code);
                assert!((d as f64 - exact).abs() < 1e-4 * (1.0 + exact.abs()), "{c:?} {metric:?}: {d} vs {exact}");
                assert_eq!(all[i].to_bits(), d.to_bits());
            }
        }
    }
}

#[test]
fn scan_matches_brute_force_with_live_bitmap() {
    // (64, 32, 4) and (128, 64, 4) take the 4-bit fast-scan path on AVX2 CPUs.
    for &(dim, m, bits) in &[(16usize, 8usize, 8u32), (16, 8, 4), (40, 20, 8), (12, 6, 4), (64, 32, 4), (128, 64, 4)] {
        let c = cfg(dim, m, bits);
        let mut rng = Rng(m as u64 * 13 + bits as u64);
        let cb = train(&c, &rng.vec(300 * dim), &opts(3, 1, 1));
        let n = 1003;
        let cs = c.code_size();
        let mut codes = vec![0u8; n * cs];
        cb.encode(&rng.vec(n * dim), &mut codes, 2);
        let t = cb.query_table(&rng.vec(dim), PqMetric::L2);
        for &first in &[0u64, 1, 63, 64, 130] {
            // Bitmap covering only part of the range: positions past it are dead.
            let words = ((first as usize + n) / 64).saturating_sub(2).max(1);
            let live: Vec<u64> = (0..words).map(|w| if w == 3 { 0 } else { rng.next() }).collect();
            for live_opt in [None, Some(&live[..])] {
                for k in [0usize, 1, 10, 5000] {
                    let mut top = TopK::new(k);
                    scan(&t, &codes, first, live_opt, &mut top);
                    let is_live = |p: u64| match live_opt {
                        None => true,
                        Some(l) => (p / 64) < l.len() as u64 && l[(p / 64) as usize] >> (p % 64) & 1 == 1,
                    };
                    let mut want: Vec<(f32, u64)> = (0..n)
                        .map(|i| (t.distance(&codes[i * cs..(i + 1) * cs]), first + i as u64))
                        .filter(|&(_, p)| is_live(p))
                        .collect();
                    want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    want.truncate(k);
                    assert_eq!(top.into_sorted_vec(), want, "{c:?} first={first} k={k}");
                }
            }
        }
        // Scanning in pieces gives the same answer as in one go.
        let mut whole = TopK::new(20);
        scan(&t, &codes, 0, None, &mut whole);
        let mut parts = TopK::new(20);
        for (i, piece) in codes.chunks(cs * 97).enumerate() {
            scan(&t, piece, (i * 97) as u64, None, &mut parts);
        }
        assert_eq!(whole.into_sorted_vec(), parts.into_sorted_vec());
    }
}

#[test]
fn fast_scan_gives_the_same_results_as_the_plain_scan() {
    let mut rng = Rng(2024);
    for &(dim, m, bits) in &[(64usize, 32usize, 4u32), (128, 64, 4), (96, 96, 4), (512, 256, 4), (64, 32, 8), (96, 16, 8), (128, 64, 8)] {
        let n = 2000 + 7;
        let (c, cb, data, codes) = trained_and_encoded(&mut rng, dim, m, bits, n);
        let cs = c.code_size();
        for metric in [PqMetric::L2, PqMetric::InnerProduct] {
            for qi in 0..5 {
                // Queries near data points (tight thresholds) and random ones.
                let q: Vec<f32> = if qi % 2 == 0 { data[qi * dim..(qi + 1) * dim].to_vec() } else { rng.vec(dim) };
                let fast = cb.query_table(&q, metric);
                // OMENDB_SIMD caps the paths the engine takes (the suite
                // also runs under "avx2" and "portable").
                let cap = std::env::var("OMENDB_SIMD").unwrap_or_default().trim().to_ascii_lowercase();
                let has = |f: &str| match f {
                    "avx2" => cap != "portable" && std::arch::is_x86_feature_detected!("avx2"),
                    _ => {
                        cap != "portable"
                            && cap != "avx2"
                            && std::arch::is_x86_feature_detected!("avx512bw")
                            && std::arch::is_x86_feature_detected!("avx512vbmi")
                            && std::arch::is_x86_feature_detected!("bmi2")
                    }
                };
                let kernel = if bits == 4 { has("avx2") } else { has("avx512") };
                if cs.is_multiple_of(16) && kernel && m * 255 <= 65535 {
                    assert!(fast.uses_fast_scan(), "{c:?}");
                }
                let plain = fast.without_fast_scan();
                assert!(!plain.uses_fast_scan());
                for k in [1usize, 10, 100] {
                    for live in [None, Some(vec![0xF0F0_FFFF_0000_FFFFu64; n / 64])] {
                        let mut a = TopK::new(k);
                        let mut b = TopK::new(k);
                        scan(&fast, &codes, 5, live.as_deref(), &mut a);
                        scan(&plain, &codes, 5, live.as_deref(), &mut b);
                        let (a, b) = (a.into_sorted_vec(), b.into_sorted_vec());
                        assert_eq!(a.len(), b.len());
                        for (x, y) in a.iter().zip(&b) {
                            assert_eq!((x.0.to_bits(), x.1), (y.0.to_bits(), y.1), "{c:?} {metric:?} k={k}");
                        }
                    }
                }
            }
        }
    }
    // Flat tables (all centroids equal): no filter, still correct.
    let c = cfg(64, 32, 4);
    let cb = Codebooks::from_centroids(&c, vec![0.5; 32 * 16 * 2]).unwrap();
    let t = cb.query_table(&[1.0; 64], PqMetric::L2);
    assert!(!t.uses_fast_scan());
    let mut top = TopK::new(3);
    scan(&t, &[0u8; 16 * 40], 0, None, &mut top);
    assert_eq!(top.into_sorted_vec().iter().map(|x| x.1).collect::<Vec<_>>(), vec![0, 1, 2]);
}

#[test]
fn scan_many_equals_one_scan_per_query() {
    let mut rng = Rng(77);
    for &(dim, m, bits) in &[(64usize, 32usize, 8u32), (128, 64, 4), (40, 20, 8)] {
        let n = 3000 + 29;
        let (c, cb, data, codes) = trained_and_encoded(&mut rng, dim, m, bits, n);
        let live: Vec<u64> = (0..n.div_ceil(64)).map(|_| rng.next() | rng.next()).collect();
        // 1..=9 queries: full groups of SCAN_GROUP and every remainder.
        for nq in 1..=9usize {
            let queries: Vec<Vec<f32>> = (0..nq)
                .map(|i| if i % 2 == 0 { data[i * 7 * dim..(i * 7 + 1) * dim].to_vec() } else { rng.vec(dim) })
                .collect();
            for metric in [PqMetric::L2, PqMetric::InnerProduct] {
                let tables: Vec<_> = queries.iter().map(|q| cb.query_table(q, metric)).collect();
                let refs: Vec<&_> = tables.iter().collect();
                for live_opt in [None, Some(&live[..])] {
                    let ks = [1usize, 10, 37];
                    let mut tops: Vec<TopK> = (0..nq).map(|i| TopK::new(ks[i % 3])).collect();
                    scan_many(&refs, &codes, 3, live_opt, &mut tops);
                    for (i, got) in tops.into_iter().enumerate() {
                        let mut want = TopK::new(ks[i % 3]);
                        scan(&tables[i], &codes, 3, live_opt, &mut want);
                        assert_eq!(got.into_sorted_vec(), want.into_sorted_vec(), "{c:?} nq={nq} query {i}");
                    }
                }
            }
        }
    }
}

#[test]
fn parallel_scan_equals_serial_scan() {
    let c = cfg(16, 8, 8);
    let mut rng = Rng(31);
    let cb = train(&c, &rng.vec(500 * 16), &opts(2, 1, 1));
    let n = 200_003;
    let mut codes = vec![0u8; n * c.code_size()];
    cb.encode(&rng.vec(n * 16), &mut codes, 2);
    let t = cb.query_table(&rng.vec(16), PqMetric::L2);
    let live: Vec<u64> = (0..n / 64 + 1).map(|_| rng.next()).collect();
    for live in [None, Some(&live[..])] {
        let mut serial = TopK::new(50);
        scan(&t, &codes, 7, live, &mut serial);
        let serial = serial.into_sorted_vec();
        for threads in [0, 1, 2, 3, 8] {
            assert_eq!(scan_parallel(&t, &codes, 7, live, 50, threads).into_sorted_vec(), serial, "threads={threads}");
        }
    }
}
