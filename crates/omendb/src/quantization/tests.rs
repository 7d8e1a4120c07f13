//! Unit tests of crate-private pieces (the public API is tested in tests/pq_*.rs).

use super::kernels;
use super::kmeans::{self, Problem, Rng};
use super::simd;

fn random_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| (r.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0).collect()
}

#[test]
fn dispatched_kernel_matches_portable_and_brute_force() {
    for &(k, dsub) in &[(256usize, 1usize), (256, 3), (256, 8), (16, 4), (16, 24), (256, 24)] {
        let centroids = random_vec(k * dsub, k as u64 * 31 + dsub as u64);
        let mut ct = vec![0.0; k * dsub];
        let mut hn = vec![0.0; k];
        kernels::prepare(&centroids, k, dsub, &mut ct, &mut hn);
        // 37 points: whole register tiles (12 or 16 points) plus a remainder.
        let n = 37;
        let x = random_vec(n * dsub, 7);
        let mut a = vec![0u32; n];
        let mut b = vec![0u32; n];
        simd::nearest_many(&ct, &hn, k, dsub, &x, dsub, n, &mut a);
        simd::nearest_many_portable(&ct, &hn, k, dsub, &x, dsub, n, &mut b);
        assert_eq!(a, b, "k={k} dsub={dsub}");
        for (path, got) in simd::nearest_many_all_paths(&ct, &hn, k, dsub, &x, dsub, n) {
            assert_eq!(got, b, "path {path}: k={k} dsub={dsub}");
        }
        // Strided points (as encoding reads sub-space j of whole vectors).
        let stride = dsub * 3;
        let xs = random_vec(n * stride, 8);
        let runs = simd::nearest_many_all_paths(&ct, &hn, k, dsub, &xs[dsub..], stride, n - 1);
        for (path, got) in &runs {
            assert_eq!(got, &runs[0].1, "path {path}, strided: k={k} dsub={dsub}");
        }
        for i in 0..n {
            let p = &x[i * dsub..(i + 1) * dsub];
            let d = |c: usize| -> f64 {
                (0..dsub).map(|t| (p[t] as f64 - centroids[c * dsub + t] as f64).powi(2)).sum()
            };
            let best = (0..k).map(d).fold(f64::INFINITY, f64::min);
            // The kernel's choice is optimal up to f32 rounding.
            assert!(d(a[i] as usize) <= best + 1e-4, "k={k} dsub={dsub} i={i}");
        }
    }
}

#[test]
fn kernel_ties_go_to_lowest_index() {
    let (k, dsub) = (256, 2);
    let centroids = vec![1.0f32; k * dsub]; // all identical
    let mut ct = vec![0.0; k * dsub];
    let mut hn = vec![0.0; k];
    kernels::prepare(&centroids, k, dsub, &mut ct, &mut hn);
    let x = vec![0.5f32; 30 * dsub];
    let mut out = vec![9u32; 30];
    simd::nearest_many(&ct, &hn, k, dsub, &x, dsub, 30, &mut out);
    assert!(out.iter().all(|&c| c == 0));
    for (path, got) in simd::nearest_many_all_paths(&ct, &hn, k, dsub, &x, dsub, 30) {
        assert!(got.iter().all(|&c| c == 0), "path {path}");
    }
    // Ties between later equal centroids: 40 and 200 identical and nearest.
    let mut centroids = random_vec(k * dsub, 3).iter().map(|v| v + 10.0).collect::<Vec<f32>>();
    for c in [200usize, 40] {
        centroids[c * dsub..(c + 1) * dsub].copy_from_slice(&[0.25, 0.75]);
    }
    kernels::prepare(&centroids, k, dsub, &mut ct, &mut hn);
    let x = vec![0.3f32; 30 * dsub];
    for (path, got) in simd::nearest_many_all_paths(&ct, &hn, k, dsub, &x, dsub, 30) {
        assert!(got.iter().all(|&c| c == 40), "path {path}: {got:?}");
    }
}

#[test]
fn sample_indices_are_distinct_and_seeded() {
    let mut r = Rng::new(5);
    let a = kmeans::sample_indices(1000, 300, &mut r);
    let mut s = a.clone();
    s.sort_unstable();
    s.dedup();
    assert_eq!(s.len(), 300);
    assert!(s.iter().all(|&i| i < 1000));
    let mut r2 = Rng::new(5);
    assert_eq!(a, kmeans::sample_indices(1000, 300, &mut r2));
}

#[test]
fn kmeans_splits_empty_clusters() {
    // 2 well separated groups of 100 points, k = 16: with random init every
    // centroid ends up used (splits keep all populated or at least finite).
    let dsub = 2;
    let mut data = Vec::new();
    for i in 0..200 {
        let base = if i < 100 { 0.0 } else { 100.0 };
        data.push(base + (i % 10) as f32 * 0.01);
        data.push(base - (i % 7) as f32 * 0.01);
    }
    let p = Problem { data: &data, dsub, k: 16, iterations: 10, seed: 1, threads: 1 };
    let c = kmeans::kmeans(&p, &mut || {});
    assert_eq!(c.len(), 16 * dsub);
    assert!(c.iter().all(|v| v.is_finite()));
}

#[test]
fn fastscan_kernel_matches_portable() {
    let mut r = Rng::new(17);
    for cs in [16usize, 32, 48, 128] {
        let qt: Vec<u8> = (0..2 * cs * 16).map(|_| r.next_u64() as u8).collect();
        let codes: Vec<u8> = (0..16 * cs).map(|_| r.next_u64() as u8).collect();
        let mut a = [0u16; 16];
        let mut b = [0u16; 16];
        simd::fastscan_block16(&qt, &codes, cs, &mut a);
        simd::fastscan_portable(&qt, &codes, cs, &mut b);
        assert_eq!(a, b, "cs={cs}");
    }
}

#[test]
fn fastscan64_kernel_matches_portable() {
    let mut r = Rng::new(23);
    for bits in [4u32, 8] {
        for cs in [16usize, 32, 48, 64] {
            let lookups = if bits == 8 { cs } else { 2 * cs };
            let table = if bits == 8 { 256 } else { 16 };
            let qt: Vec<u8> = (0..lookups * table).map(|_| r.next_u64() as u8).collect();
            let codes: Vec<u8> = (0..64 * cs).map(|_| r.next_u64() as u8).collect();
            let sums = simd::fastscan_sums64_portable(&qt, bits, &codes, cs);
            // Thresholds at, just below and just above some codes' sums, and the extremes.
            let mut thresholds = vec![0u32, u16::MAX as u32];
            for &i in &[0usize, 1, 17, 32, 63] {
                thresholds.extend([sums[i].saturating_sub(1), sums[i], sums[i] + 1]);
            }
            for &t in &thresholds {
                let want = sums.iter().enumerate().fold(0u64, |m, (i, &s)| m | ((s <= t) as u64) << i);
                let got = simd::fastscan_filter64(&qt, bits, &codes, cs, t as u16);
                assert_eq!(got, want, "bits={bits} cs={cs} threshold={t}");
                // Three queries in one pass: this table with three thresholds,
                // and two other tables.
                let other: Vec<u8> = qt.iter().map(|&v| v.wrapping_mul(7)).collect();
                let other_sums = simd::fastscan_sums64_portable(&other, bits, &codes, cs);
                let want_other = other_sums.iter().enumerate().fold(0u64, |m, (i, &s)| m | ((s <= t) as u64) << i);
                if let Some(kernel) = simd::fast64(bits) {
                    let got3 = simd::fastscan_filter64_multi::<3>(kernel, [&qt, &other, &qt], &codes, cs, [t as u16, t as u16, 0]);
                    let want_zero = sums.iter().enumerate().fold(0u64, |m, (i, &s)| m | ((s == 0) as u64) << i);
                    assert_eq!(got3, [want, want_other, want_zero], "bits={bits} cs={cs} threshold={t}");
                }
            }
        }
    }
}

#[test]
fn table_quantization_matches_portable() {
    let k = 256;
    let mut t = random_vec(4 * k, 41);
    t[5] = f32::NAN; // NaN quantizes to 0 on every path
    t[7] = 1e30; // saturates at 255
    let mut mins = vec![0.0; 4];
    let mut maxs = vec![0.0; 4];
    simd::table_min_max(&t, k, &mut mins, &mut maxs);
    let (mut pmins, mut pmaxs) = (vec![0.0; 4], vec![0.0; 4]);
    kernels::table_min_max(&t, k, &mut pmins, &mut pmaxs);
    assert_eq!((&mins, &maxs), (&pmins, &pmaxs));
    let mut a = vec![0u8; 4 * k];
    let mut b = vec![0u8; 4 * k];
    simd::quantize_tables(&t, k, &mins, 100.0, &mut a);
    kernels::quantize_tables(&t, k, &mins, 100.0, &mut b);
    assert_eq!(a, b);
    assert_eq!((a[5], a[7]), (0, 255));
    for (i, &v) in t.iter().enumerate().filter(|&(i, _)| i != 5 && i != 7) {
        let x = ((v - mins[i / k]) * 100.0).floor().clamp(0.0, 255.0);
        assert_eq!(a[i] as f32, x, "entry {i}");
    }
}
