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
    for &(k, dsub) in &[(256usize, 1usize), (256, 3), (256, 8), (16, 1), (16, 2), (16, 3), (16, 4), (16, 6), (16, 8), (16, 12), (16, 16), (16, 5), (16, 24), (256, 24)] {
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
fn sixteen_centroid_kernel_ties_nan_and_remainders() {
    // The 16-centroid path (points in lanes): ties to the lowest index,
    // a NaN point to centroid 0, and every count of points past a whole
    // block of 16, against the portable kernel.
    let (k, dsub) = (16, 4);
    let mut centroids = random_vec(k * dsub, 11).iter().map(|v| v + 10.0).collect::<Vec<f32>>();
    for c in [9usize, 3] {
        centroids[c * dsub..(c + 1) * dsub].copy_from_slice(&[0.25, 0.75, -0.5, 0.0]);
    }
    let mut ct = vec![0.0; k * dsub];
    let mut hn = vec![0.0; k];
    kernels::prepare(&centroids, k, dsub, &mut ct, &mut hn);
    let mut x = vec![0.3f32; 40 * dsub];
    x[17 * dsub + 2] = f32::NAN;
    for n in [1, 15, 16, 17, 33, 40] {
        for (path, got) in simd::nearest_many_all_paths(&ct, &hn, k, dsub, &x, dsub, n) {
            let want: Vec<u32> = (0..n).map(|i| if i == 17 { 0 } else { 3 }).collect();
            assert_eq!(got, want, "path {path}, {n} points");
        }
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
        let qt: Vec<u8> = (0..2 * cs * 16).map(|_| table_entry(&mut r, 4)).collect();
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
            // 4-bit entries up to the kernels' largest (and every entry at
            // it once: the byte sums must not overflow).
            let qt: Vec<u8> = (0..lookups * table).map(|_| table_entry(&mut r, bits)).collect();
            let codes: Vec<u8> = (0..64 * cs).map(|_| r.next_u64() as u8).collect();
            for qt in [qt, vec![entry_max(bits); lookups * table]] {
                let sums = simd::fastscan_sums64_portable(&qt, bits, &codes, cs);
                let sums: Vec<u32> = sums.to_vec();
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
                    let other: Vec<u8> = qt.iter().map(|&v| (v as u16 * 7 % (entry_max(bits) as u16 + 1)) as u8).collect();
                    let other_sums = simd::fastscan_sums64_portable(&other, bits, &codes, cs);
                    let want_other = other_sums.iter().enumerate().fold(0u64, |m, (i, &s)| m | ((s <= t) as u64) << i);
                    if let Some(kernel) = simd::fast64(bits) {
                        let mut left = simd::Sums64::new();
                        assert_eq!(simd::fastscan_sums64(kernel, &qt, &codes, cs, t as u16, &mut left), want);
                        assert!((0..64).all(|i| left.get(i) as u32 == sums[i]), "bits={bits} cs={cs}: sums left");
                        let got3 = simd::fastscan_filter64_multi::<3>(kernel, [&qt, &other, &qt], &codes, cs, [t as u16, t as u16, 0]);
                        let want_zero = sums.iter().enumerate().fold(0u64, |m, (i, &s)| m | ((s == 0) as u64) << i);
                        assert_eq!(got3, [want, want_other, want_zero], "bits={bits} cs={cs} threshold={t}");
                    }
                }
            }
        }
    }
}

/// The largest entry of a fast-scan table of `bits`-bit codes.
fn entry_max(bits: u32) -> u8 {
    simd::table_entry_max(bits) as u8
}

/// A random fast-scan table entry, up to `entry_max(bits)`.
fn table_entry(r: &mut Rng, bits: u32) -> u8 {
    (r.next_u64() % (entry_max(bits) as u64 + 1)) as u8
}

/// The 4-bit tables' minimum and maximum, sixteen sub-spaces at a time
/// where the CPU has AVX-512 (a tree of shuffles), one at a time for the
/// rest: the portable kernel's results for every sub-space, whatever the
/// count (whole groups of 16, a remainder, or both) and wherever in its
/// table the extreme entry lies.
#[test]
fn four_bit_table_bounds_match_portable() {
    let k = 16;
    for m in [1usize, 15, 16, 17, 31, 32, 33, 48, 100, 384] {
        let mut t = random_vec(m * k, 43 + m as u64);
        // Each sub-space's extreme entries at a different place in its table.
        for j in 0..m {
            t[j * k + j % k] = 1e30 + j as f32;
            t[j * k + (j * 7 + 3) % k] = -1e30 - j as f32;
        }
        // And without planted extremes (distinct values everywhere).
        for t in [t, random_vec(m * k, 7 + m as u64)] {
            let runs = simd::table_min_max_all_paths(&t, k);
            let (_, pmins, pmaxs) = &runs[0];
            for (path, mins, maxs) in &runs[1..] {
                assert_eq!((mins, maxs), (pmins, pmaxs), "{path}, m = {m}");
            }
            let (mut mins, mut maxs) = (vec![0.0; m], vec![0.0; m]);
            simd::table_min_max(&t, k, &mut mins, &mut maxs);
            assert_eq!((&mins, &maxs), (pmins, pmaxs), "dispatched, m = {m}");
        }
    }
}

/// The sums of the tables' bounds in AVX2 lanes: the portable lanes' bits,
/// and a NaN bound anywhere makes the widest span and the magnitude sum NaN
/// (so the table fails its range check; `f32::max` would have dropped it).
#[test]
fn span_lanes_match_portable() {
    let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    for m in [8usize, 16, 48, 384] {
        let mins: Vec<f32> = random_vec(m, 3 + m as u64).iter().map(|v| v - 1.0).collect();
        let maxs: Vec<f32> = random_vec(m, 5 + m as u64).iter().map(|v| v + 1.0).collect();
        let (got, want) = (simd::span_lanes(&mins, &maxs), kernels::span_lanes(&mins, &maxs));
        assert!(got.iter().flatten().zip(want.iter().flatten()).all(|(&a, &b)| same(a, b)), "m = {m}");
        for at in [0, m / 2, m - 1] {
            for lo_nan in [true, false] {
                let (mut lo, mut hi) = (mins.clone(), maxs.clone());
                if lo_nan { lo[at] = f32::NAN } else { hi[at] = f32::NAN }
                let (got, want) = (simd::span_lanes(&lo, &hi), kernels::span_lanes(&lo, &hi));
                assert!(got.iter().flatten().zip(want.iter().flatten()).all(|(&a, &b)| same(a, b)), "m = {m}, NaN at {at}");
                let lane = at % simd::SPAN_LANES;
                assert!(got[0][lane].is_nan() && got[2][lane].is_nan(), "m = {m}, NaN at {at}: {got:?}");
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
    // Every path, 4- and 8-bit tables, with NaN, below-minimum, saturating
    // and fractional entries.
    for k in [16usize, 256] {
        let mut t: Vec<f32> = random_vec(6 * k, 47).iter().map(|v| v * 3.0).collect();
        t[1] = f32::NAN;
        t[k + 2] = 1e30;
        t[2 * k + 3] = -1e30;
        t[3 * k + 4] = -0.0;
        let mins: Vec<f32> = (0..6).map(|j| t[j * k..(j + 1) * k].iter().copied().filter(|v| v.abs() < 1e29).fold(f32::INFINITY, f32::min)).collect();
        let runs = simd::quantize_tables_all_paths(&t, k, &mins, 40.5);
        assert!(runs[0].1.contains(&255) && runs[0].1.iter().any(|&b| b > 0 && b < 255), "k {k}: the table spans the range");
        for (path, q) in &runs[1..] {
            assert_eq!(q, &runs[0].1, "{path}, k {k}");
        }
    }
    assert_eq!((a[5], a[7]), (0, 255));
    for (i, &v) in t.iter().enumerate().filter(|&(i, _)| i != 5 && i != 7) {
        let x = ((v - mins[i / k]) * 100.0).floor().clamp(0.0, 255.0);
        assert_eq!(a[i] as f32, x, "entry {i}");
    }
}

#[test]
fn whole_table_build_matches_one_subspace_at_a_time() {
    // The dispatched whole-table build (and its 4-bit fixed-width path)
    // gives the bits of the portable one-sub-space kernel, NaN and
    // infinities included.
    for (k, dsub) in [(16, 1), (16, 2), (16, 3), (16, 8), (256, 1), (256, 4), (4, 2)] {
        let m = 6;
        let mut ct = random_vec(m * k * dsub, 7 + k as u64);
        ct[3] = f32::NAN;
        ct[k * dsub + 1] = f32::INFINITY;
        let mut q = random_vec(m * dsub, 9);
        q[m * dsub - 1] = 3e38;
        for l2 in [true, false] {
            let mut got = vec![0.0; m * k];
            simd::subspace_tables(&ct, k, dsub, &q, l2, &mut got);
            let mut want = vec![0.0; m * k];
            for j in 0..m {
                kernels::subspace_table(&ct[j * k * dsub..(j + 1) * k * dsub], k, dsub, &q[j * dsub..(j + 1) * dsub], l2, &mut want[j * k..(j + 1) * k]);
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "k {k} dsub {dsub} l2 {l2}");
        }
    }
}

/// Magnitudes across the whole finite f32 range, denormals included.
const EXTREMES: [f32; 14] = [
    f32::MAX, -f32::MAX, 3.38e38, 1e20, -1e20, 1e-20, 1e-38, f32::MIN_POSITIVE, 1e-45, -1e-45, 0.0, -0.0, 1.0, -2.5,
];

/// `n * dim` values drawn from `EXTREMES`, each scaled by a random factor in [0.5, 1).
fn extreme_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|_| EXTREMES[r.below(EXTREMES.len() as u64) as usize] * (0.5 + (r.next_u64() >> 40) as f32 / (1u64 << 25) as f32))
        .collect()
}

#[test]
fn kmeans_stays_finite_with_a_coordinate_at_f32_max() {
    // The shape: every point has one coordinate near f32::MAX. The
    // f32 scores were NaN, every point went to cluster 0, and its repeated
    // splits pushed a centroid past f32::MAX.
    let dsub = 4;
    for value in [3.38e38f32, f32::MAX, -f32::MAX] {
        let mut data = random_vec(600 * dsub, 9);
        data.chunks_exact_mut(dsub).for_each(|p| p[1] = value);
        let p = Problem { data: &data, dsub, k: 256, iterations: 25, seed: 3, threads: 1 };
        let c = kmeans::kmeans(&p, &mut || {});
        assert!(c.iter().all(|v| v.is_finite()), "{value}");
    }
    // Duplicates at f32::MAX: the initial centroids repeat, all but one
    // cluster start empty and are split off the one at f32::MAX.
    let mut data = vec![f32::MAX; 600 * dsub];
    data.extend(random_vec(8 * dsub, 10));
    let p = Problem { data: &data, dsub, k: 16, iterations: 5, seed: 3, threads: 1 };
    assert!(kmeans::kmeans(&p, &mut || {}).iter().all(|v| v.is_finite()), "duplicates at f32::MAX");
    // Extremes everywhere: centroids finite.
    let data = extreme_vec(2000 * dsub, 4);
    let p = Problem { data: &data, dsub, k: 16, iterations: 10, seed: 5, threads: 1 };
    let c = kmeans::kmeans(&p, &mut || {});
    assert!(c.iter().all(|v| v.is_finite()));
}

#[test]
fn kmeans_clusters_huge_and_tiny_data_like_ordinary_data() {
    // Two tight groups at +-s: whatever the scale, k-means must find them
    // (f32 scores of 1e30-sized data overflowed, of 1e-30 underflowed, and
    // every point went to one cluster).
    let dsub = 4;
    for s in [1.0f32, 1e30, -3e38, 1e-30, 1e-42] {
        let noise = random_vec(400 * dsub, 12);
        let data: Vec<f32> =
            noise.iter().enumerate().map(|(i, r)| if i / dsub < 200 { s } else { -s } * (1.0 + 0.01 * r)).collect();
        let p = Problem { data: &data, dsub, k: 16, iterations: 10, seed: 2, threads: 1 };
        let c = kmeans::kmeans(&p, &mut || {});
        let (mut err, mut total) = (0.0f64, 0.0f64);
        for x in data.chunks_exact(dsub) {
            err += c.chunks_exact(dsub).map(|c| d64(x, c)).fold(f64::INFINITY, f64::min);
            total += d64(x, &[0.0; 4]);
        }
        assert!(err <= total * 1e-3, "scale {s}: quantization error {err} of {total}");
    }
}

/// f64 squared distance, the reference.
fn d64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum()
}

#[test]
fn encoding_picks_the_nearest_centroid_over_the_whole_float_range() {
    let (dim, m) = (8, 2);
    for bits in [8u32, 4] {
        let config = super::PqConfig { dim, m, bits };
        let (k, dsub) = (config.ksub(), config.dsub());
        let cb = super::Codebooks::from_centroids(&config, extreme_vec(m * k * dsub, bits as u64)).unwrap();
        // The centroids themselves (each must get a centroid at distance 0)
        // and other extreme vectors.
        let mut points = Vec::new();
        for c in 0..k {
            (0..m).for_each(|j| points.extend_from_slice(&cb.centroids[(j * k + c) * dsub..(j * k + c + 1) * dsub]));
        }
        points.extend(extreme_vec(200 * dim, 11 + bits as u64));
        let n = points.len() / dim;
        let mut codes = vec![0u8; n * config.code_size()];
        cb.encode(&points, &mut codes, 1);
        for (i, (p, code)) in points.chunks_exact(dim).zip(codes.chunks_exact(config.code_size())).enumerate() {
            for j in 0..m {
                let x = &p[j * dsub..(j + 1) * dsub];
                let row = |c: usize| &cb.centroids[(j * k + c) * dsub..(j * k + c + 1) * dsub];
                let best = (0..k).map(|c| d64(x, row(c))).fold(f64::INFINITY, f64::min);
                let got = d64(x, row(cb.code_index(code, j)));
                assert!(got <= best * (1.0 + 1e-12), "bits {bits} point {i} sub-space {j}: {got} > {best}");
            }
        }
    }
}

#[test]
fn query_tables_are_finite_and_ordered_over_the_whole_float_range() {
    use super::{scan, scan_distances, PqMetric, TopK};
    // 16-byte codes: the fast scan runs where the CPU has it; and more
    // sub-spaces than 257 bytes of 255 fit in the kernels' u16 sums (their
    // filter quantizes to fewer levels).
    for (m, bits) in [(16usize, 8u32), (32, 4), (288, 8), (512, 4)] {
        let config = super::PqConfig { dim: m * 2, m, bits };
        let (k, dsub, cs) = (config.ksub(), config.dsub(), config.code_size());
        let cb = super::Codebooks::from_centroids(&config, extreme_vec(m * k * dsub, 21)).unwrap();
        let n = 300;
        let mut codes = vec![0u8; n * cs];
        cb.encode(&extreme_vec(n * config.dim, 22), &mut codes, 1);
        let mut queries = extreme_vec(20 * config.dim, 23);
        queries.extend(std::iter::repeat_n(1e-45f32, config.dim)); // all denormal
        queries.extend(std::iter::repeat_n(f32::MAX, config.dim));
        let mut decoded = vec![0.0f32; config.dim];
        for q in queries.chunks_exact(config.dim) {
            for metric in [PqMetric::L2, PqMetric::InnerProduct] {
                let t = cb.query_table(q, metric);
                let kernel = super::simd::fast64(bits).is_some() || (bits == 4 && super::simd::fastscan_available());
                if kernel {
                    assert!(t.uses_fast_scan(), "{m} x {bits}-bit {metric:?}: no fast scan");
                }
                let mut dist = vec![0.0f32; n];
                scan_distances(&t, &codes, &mut dist);
                assert!(dist.iter().all(|d| d.is_finite() && t.unscale(*d).is_finite()), "{bits}-bit {metric:?}");
                // The best code by the table is the best by f64 ADC distances.
                let reference: Vec<f64> = codes
                    .chunks_exact(cs)
                    .map(|code| {
                        cb.decode(code, &mut decoded);
                        match metric {
                            PqMetric::L2 => d64(q, &decoded),
                            PqMetric::InnerProduct => -q.iter().zip(&decoded).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>(),
                        }
                    })
                    .collect();
                let mut top = TopK::new(5);
                scan(&t, &codes, 0, None, &mut top);
                let mut plain = TopK::new(5);
                scan(&t.without_fast_scan(), &codes, 0, None, &mut plain);
                let got = top.into_sorted_vec();
                assert_eq!(got, plain.into_sorted_vec(), "{bits}-bit {metric:?}: fast scan differs");
                let best = reference.iter().copied().fold(f64::INFINITY, f64::min);
                let scale = reference.iter().fold(0.0f64, |a, r| a.max(r.abs()));
                let picked = reference[got[0].1 as usize];
                assert!(picked - best <= scale * 1e-6, "{bits}-bit {metric:?}: picked {picked}, best {best}");
            }
        }
    }
}

/// A table refilled in place (as an IVF search does, list after list)
/// scores and scans exactly as one made afresh from the same sub-space
/// tables, for 4- and 8-bit codes, also after a refill out of range.
#[test]
fn refilled_tables_scan_like_fresh_ones() {
    use super::{scan, Codebooks, PqConfig, PqMetric, TopK, TrainOptions};
    for bits in [4u32, 8] {
        let config = PqConfig { dim: 32, m: 16, bits };
        let sample = random_vec(32 * 600, 5);
        let options = TrainOptions { iterations: 4, seed: 1, threads: 1 };
        let cb = Codebooks::train(&config, &sample, &options, &mut |_, _| {}).unwrap();
        let mut codes = vec![0u8; 300 * config.code_size()];
        cb.encode(&random_vec(32 * 300, 6), &mut codes, 1);
        let mut reused = cb.table_from(cb.subspace_tables(&random_vec(32, 7), PqMetric::L2)).unwrap();
        for round in 0..4u64 {
            let t = cb.subspace_tables(&random_vec(32, 100 + round), PqMetric::InnerProduct);
            if round == 2 {
                // Out of the summable range: refused, and the next refill recovers.
                assert!(!reused.refill(config.m, bits, |e| e.fill(f32::MAX)));
                continue;
            }
            assert!(reused.refill(config.m, bits, |e| e.copy_from_slice(&t)));
            let fresh = cb.table_from(t).unwrap();
            assert_eq!(reused.uses_fast_scan(), fresh.uses_fast_scan());
            let (mut a, mut b) = (TopK::new(40), TopK::new(40));
            scan(&reused, &codes, 0, None, &mut a);
            scan(&fresh, &codes, 0, None, &mut b);
            assert_eq!(a.into_sorted_vec(), b.into_sorted_vec(), "bits {bits} round {round}");
            for code in codes.chunks_exact(config.code_size()).take(20) {
                assert_eq!(reused.distance(code).to_bits(), fresh.distance(code).to_bits());
            }
        }
    }
}

/// 64-d codebooks with fast-scan sized codes (32 x 4-bit or 16 x 8-bit),
/// trained on uniform data drawn with `seed`.
fn codebooks_64d(bits: u32, seed: u64) -> (super::PqConfig, super::Codebooks) {
    codebooks_64d_m(if bits == 4 { 32 } else { 16 }, bits, seed)
}

fn codebooks_64d_m(m: usize, bits: u32, seed: u64) -> (super::PqConfig, super::Codebooks) {
    let config = super::PqConfig { dim: 64, m, bits };
    let options = super::TrainOptions { iterations: 4, seed: 1, threads: 1 };
    let cb = super::Codebooks::train(&config, &random_vec(64 * 4000, seed), &options, &mut |_, _| {}).unwrap();
    (config, cb)
}

/// Distances estimated from the fast-scan sums stay within the quantization
/// error of the exact ADC distances, and rank nearly the same candidates,
/// on every kernel path (64-code blocks, 16-code blocks, single codes) and
/// with a bitmap of the codes' own.
#[test]
fn estimated_scan_tracks_the_exact_scan() {
    use super::{scan_estimated, scan_own_bitmap, PqMetric, TopK};
    for bits in [4u32, 8] {
        let (config, cb) = codebooks_64d(bits, 8);
        let n = 64 * 5 + 16 * 2 + 7;
        let mut codes = vec![0u8; n * config.code_size()];
        cb.encode(&random_vec(64 * n, 9), &mut codes, 1);
        // (Without a kernel on this CPU scan_estimated is the exact scan,
        // which the checks below hold to as well.)
        let table = cb.query_table(&random_vec(64, 10), PqMetric::L2);
        let own: Vec<u64> = (0..n.div_ceil(64)).map(|w| 0xF7F7_F7F7_F7F7_F7F7u64.rotate_left(w as u32)).collect();
        for (k, live) in [(10, None), (100, None), (n, None), (100, Some(&own[..]))] {
            let (mut est, mut exact) = (TopK::new(k), TopK::new(k));
            scan_estimated(&table, &codes, 1000, live, &mut est);
            scan_own_bitmap(&table, &codes, 1000, live, &mut exact);
            let (est, exact) = (est.into_sorted_vec(), exact.into_sorted_vec());
            assert_eq!(est.len(), exact.len());
            let spread = exact.last().unwrap().0 - exact[0].0;
            let exact_of = |p: u64| table.distance(&codes[(p - 1000) as usize * config.code_size()..][..config.code_size()]);
            for &(d, p) in &est {
                assert!(live.is_none_or(|l| l[(p - 1000) as usize / 64] >> ((p - 1000) % 64) & 1 == 1));
                let e = exact_of(p);
                // Within 1% at 255 levels, proportionally more at fewer.
                let share = 0.01 * 255.0 / simd::table_entry_max(bits) as f32;
                assert!((d - e).abs() <= share * e.abs().max(spread), "bits {bits} k {k}: estimate {d} exact {e}");
            }
            let same = est.iter().filter(|(_, p)| exact.iter().any(|(_, q)| q == p)).count();
            assert!(same * 10 >= est.len() * 9, "bits {bits} k {k}: {same} of {} shared", est.len());
        }
    }
}

/// The planar kernels leave the same sums and pass masks as the row-major
/// reference, for every code width they take.
#[test]
fn planar_kernel_matches_portable() {
    let mut r = Rng::new(29);
    // Each kernel this CPU runs (the AVX2 one also where AVX-512 is preferred).
    let mut kernels: Vec<(u32, simd::PlanarKernel)> = [4u32, 8].iter().filter_map(|&b| Some((b, simd::planar_kernel(b)?))).collect();
    if simd::fastscan_available() {
        kernels.push((4, simd::PlanarKernel::Avx2));
    }
    for (bits, kernel) in kernels {
        for cs in [16usize, 32, 48] {
            let lookups = if bits == 8 { cs } else { 2 * cs };
            let entries = lookups * if bits == 8 { 256 } else { 16 };
            let drawn: Vec<u8> = (0..entries).map(|_| table_entry(&mut r, bits)).collect();
            // Every entry the largest allowed: the byte sums of 4-bit
            // look-ups at their bound (wrapped with one level more).
            let full = vec![entry_max(bits); entries];
            let codes: Vec<u8> = (0..64 * cs).map(|_| r.next_u64() as u8).collect();
            let mut blocks = Vec::new();
            for (i, code) in codes.chunks_exact(cs).enumerate() {
                super::planar::push(&mut blocks, i, code);
            }
            for qt in [drawn, full] {
                let want = simd::fastscan_sums64_portable(&qt, bits, &codes, cs);
                for t in [0u16, want[5] as u16, want[40] as u16, (want[63] as u16).saturating_sub(1), u16::MAX] {
                    let mut sums = simd::Sums64::new();
                    let pass = simd::fastscan_planar64(kernel, &qt, &blocks, &blocks, cs, t, &mut sums);
                    let want_pass = want.iter().enumerate().fold(0u64, |m, (i, &s)| m | ((s <= t as u32) as u64) << i);
                    assert_eq!(pass, want_pass, "{kernel:?} bits {bits} cs {cs} threshold {t}");
                    assert!((0..64).all(|i| sums.get(i) as u32 == want[i]), "{kernel:?} bits {bits} cs {cs}: sums");
                    // Several queries in one pass: this table and another, each
                    // with its own threshold, as one query would get them.
                    let other: Vec<u8> = qt.iter().map(|&v| (v as u16 * 7 % (entry_max(bits) as u16 + 1)) as u8).collect();
                    let want_other = simd::fastscan_sums64_portable(&other, bits, &codes, cs);
                    let mask = |w: &[u32; 64], t: u16| w.iter().enumerate().fold(0u64, |m, (i, &s)| m | ((s <= t as u32) as u64) << i);
                    let qts = [&qt[..], &other[..], &qt[..], &other[..]];
                    let wants = [&want, &want_other, &want, &want_other];
                    let thresholds = [t, t, 0, u16::MAX - t];
                    macro_rules! many {
                        ($q:literal) => {{
                            let mut sums: [simd::Sums64; $q] = std::array::from_fn(|_| simd::Sums64::new());
                            let qts: [&[u8]; $q] = std::array::from_fn(|q| qts[q]);
                            let thr: [u16; $q] = std::array::from_fn(|q| thresholds[q]);
                            let passes = simd::fastscan_planar64_multi::<$q>(kernel, qts, &blocks, &blocks, cs, thr, &mut sums);
                            for q in 0..$q {
                                assert_eq!(passes[q], mask(wants[q], thr[q]), "{kernel:?} bits {bits} cs {cs}: query {q} of {}", $q);
                                assert!((0..64).all(|i| sums[q].get(i) as u32 == wants[q][i]), "{kernel:?} bits {bits} cs {cs}: sums of query {q} of {}", $q);
                            }
                        }};
                    }
                    many!(2);
                    many!(3);
                    many!(4);
                }
            }
        }
    }
}

/// A scan of planar blocks gives exactly what the row-major scans give:
/// the exact scan's candidates and distances, or the estimated scan's,
/// over whole and partial blocks, with and without an own bitmap; also
/// for 4-byte codes, which no kernel takes (scored one by one).
#[test]
fn planar_scan_equals_row_major_scans() {
    use super::{scan_estimated, scan_own_bitmap, scan_planar, PqMetric, TopK};
    for (m, bits) in [(32, 4u32), (16, 8), (8, 4)] {
        let (config, cb) = codebooks_64d_m(m, bits, 11);
        for n in [1usize, 63, 64, 65, 64 * 4 + 37] {
            let cs = config.code_size();
            let mut codes = vec![0u8; n * cs];
            cb.encode(&random_vec(64 * n, 12 + n as u64), &mut codes, 1);
            let mut blocks = Vec::new();
            for (i, code) in codes.chunks_exact(cs).enumerate() {
                super::planar::push(&mut blocks, i, code);
            }
            let table = cb.query_table(&random_vec(64, 13), PqMetric::L2);
            let own: Vec<u64> = (0..n.div_ceil(64)).map(|w| 0xDEAD_BEEF_F00D_CAFEu64.rotate_left(w as u32)).collect();
            for k in [1usize, 10, 100] {
                for live in [None, Some(&own[..])] {
                    let (mut a, mut b) = (TopK::new(k), TopK::new(k));
                    scan_planar(&table, &blocks, n, 500, live, false, 0.0, &mut a);
                    scan_own_bitmap(&table, &codes, 500, live, &mut b);
                    assert_eq!(a.into_sorted_vec(), b.into_sorted_vec(), "exact: bits {bits} n {n} k {k}");
                    let (mut a, mut b) = (TopK::new(k), TopK::new(k));
                    scan_planar(&table, &blocks, n, 500, live, true, 0.0, &mut a);
                    scan_estimated(&table, &codes, 500, live, &mut b);
                    assert_eq!(a.into_sorted_vec(), b.into_sorted_vec(), "estimated: bits {bits} n {n} k {k}");
                }
            }
        }
    }
}

/// A scan whose distances are shifted (an inner-product IVF list's
/// constant, kept out of the table) gives what offering every live code's
/// exact distance plus the shift to the heap gives, into a heap that
/// already holds another list's candidates; with a shift of 0, what the
/// unshifted scan gives (bit for bit, distances included).
#[test]
fn shifted_planar_scan_offers_distances_plus_the_shift() {
    use super::{scan_own_bitmap, scan_planar, PqMetric, TopK};
    for (m, bits) in [(32, 4u32), (16, 8), (8, 4)] {
        let (config, cb) = codebooks_64d_m(m, bits, 51);
        let cs = config.code_size();
        let n = 64 * 3 + 17;
        let mut codes = vec![0u8; n * cs];
        cb.encode(&random_vec(64 * n, 52), &mut codes, 1);
        let mut blocks = Vec::new();
        for (i, code) in codes.chunks_exact(cs).enumerate() {
            super::planar::push(&mut blocks, i, code);
        }
        let table = cb.query_table(&random_vec(64, 53), PqMetric::L2);
        let own: Vec<u64> = (0..n.div_ceil(64)).map(|w| 0x0F1E_2D3C_4B5A_6978u64.rotate_left(5 * w as u32)).collect();
        let mut all = TopK::new(n);
        scan_own_bitmap(&table, &codes, 0, None, &mut all);
        let exact = all.into_sorted_vec();
        for shift in [0.0f32, -37.25, 1e4, -1e4] {
            for live in [None, Some(&own[..])] {
                for k in [1usize, 10, 100] {
                    // Another list's candidates, around this list's distances.
                    let earlier = |top: &mut TopK| (0..k as u64).for_each(|i| top.push(exact[(i as usize * 7) % n].0 + shift + 0.01, 1 << 40 | i));
                    let (mut got, mut want) = (TopK::new(k), TopK::new(k));
                    earlier(&mut got);
                    earlier(&mut want);
                    scan_planar(&table, &blocks, n, 0, live, false, shift, &mut got);
                    for &(d, pos) in &exact {
                        if live.is_none_or(|w| w[pos as usize / 64] >> (pos % 64) & 1 == 1) {
                            want.push(d + shift, pos);
                        }
                    }
                    assert_eq!(got.into_sorted_vec(), want.into_sorted_vec(), "bits {bits} shift {shift} k {k}");
                }
            }
        }
    }
}

/// A scan may shift a table's distances only where every sum stays finite:
/// an unscaled table (its distances at most f32::MAX / 4 in magnitude) and
/// a finite shift of at most as much; never a table scaled for extreme
/// values (its distances are in other units).
#[test]
fn a_shift_is_allowed_only_where_the_sums_stay_finite() {
    use super::PqMetric;
    let (_, cb) = codebooks_64d_m(32, 4, 61);
    let table = cb.query_table(&random_vec(64, 62), PqMetric::InnerProduct);
    assert_eq!(table.unscale(1.0), 1.0);
    for ok in [0.0f32, -1e30, 1e30, f32::MAX / 4.0, -f32::MAX / 4.0] {
        assert!(table.shiftable(ok), "{ok}");
    }
    for not in [f32::MAX / 2.0, -f32::MAX, f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
        assert!(!table.shiftable(not), "{not}");
    }
    let scaled = cb.query_table(&vec![3e38f32; 64], PqMetric::InnerProduct);
    assert_ne!(scaled.unscale(1.0), 1.0, "a table scaled for extreme values");
    assert!(!scaled.shiftable(0.0));
}

/// Several tables scanned together give each what its own planar scan
/// gives: 1 to 5 tables (groups of up to four share a pass, the rest go
/// alone), both rankings, with and without an own bitmap, over whole and
/// partial blocks, 4- and 8-bit codes, heaps of different sizes.
#[test]
fn planar_scans_of_several_tables_equal_one_by_one() {
    use super::{scan_planar, scan_planar_many, PqMetric, TopK};
    for (m, bits) in [(32, 4u32), (16, 8)] {
        let (config, cb) = codebooks_64d_m(m, bits, 21);
        let cs = config.code_size();
        for n in [63usize, 64 * 3 + 5] {
            let mut codes = vec![0u8; n * cs];
            cb.encode(&random_vec(64 * n, 22 + n as u64), &mut codes, 1);
            let blocks = planar_blocks(codes.chunks_exact(cs));
            let tables: Vec<_> = (0..5).map(|q| cb.query_table(&random_vec(64, 30 + q), PqMetric::L2)).collect();
            let own: Vec<u64> = (0..n.div_ceil(64)).map(|w| 0xF0F0_FF00_0FF0_A5A5u64.rotate_left(3 * w as u32)).collect();
            for count in 1..=5 {
                let refs: Vec<&super::QueryTable> = tables[..count].iter().collect();
                for live in [None, Some(&own[..])] {
                    for estimated in [false, true] {
                        let ks = [10usize, 1, 37, 5, 200];
                        let shifts = [0.0f32, -3.5, 1e4, 0.25, -1e3];
                        let mut together: Vec<TopK> = ks[..count].iter().map(|&k| TopK::new(k)).collect();
                        scan_planar_many(&refs, &blocks, n, 7, live, estimated, &shifts[..count], &mut together.iter_mut().collect::<Vec<_>>());
                        for (q, got) in together.into_iter().enumerate() {
                            let mut alone = TopK::new(ks[q]);
                            scan_planar(refs[q], &blocks, n, 7, live, estimated, shifts[q], &mut alone);
                            assert_eq!(got.into_sorted_vec(), alone.into_sorted_vec(), "bits {bits} n {n} tables {count} query {q} estimated {estimated}");
                        }
                    }
                }
            }
        }
    }
}

/// An IVF list's L2 table made in one pass equals the loop it replaces,
/// bit for bit: `2 s + r`, the base on the first sub-space, and the
/// portable kernel's minimum and maximum of each sub-space.
#[test]
fn list_table_in_one_pass_equals_fill_then_min_max() {
    for (m, k) in [(192usize, 16usize), (8, 16), (4, 256)] {
        let shared = random_vec(m * k, 41);
        let terms: Vec<f32> = random_vec(m * k, 42).iter().map(|x| x * 1e3).collect();
        let base = 12345.678f32;
        let mut want = vec![0f32; m * k];
        for ((e, &s), &r) in want.iter_mut().zip(&shared).zip(&terms) {
            *e = 2.0 * s + r;
        }
        want[..k].iter_mut().for_each(|e| *e += base);
        let (mut want_lo, mut want_hi) = (vec![0f32; m], vec![0f32; m]);
        super::kernels::table_min_max(&want, k, &mut want_lo, &mut want_hi);
        let (mut t, mut lo, mut hi) = (vec![0f32; m * k], vec![0f32; m], vec![0f32; m]);
        super::list_table_l2(&shared, &terms, base, k, &mut t, &mut lo, &mut hi);
        assert!(t.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "m {m} k {k}: tables");
        assert_eq!((lo, hi), (want_lo, want_hi), "m {m} k {k}: bounds");
    }
}

/// TopK keeps the `k` smallest pairs in IEEE total order (-0.0 read as
/// +0.0), ties to the smaller position, in heap mode (small `k`) and in
/// reservoir mode, whatever the push order.
#[test]
fn top_k_keeps_the_smallest_pairs_in_total_order() {
    use super::adc::total_order_bits;
    use super::TopK;
    let specials = [
        f32::NEG_INFINITY, -f32::MAX, -1e30, -2.5, -1.0, -f32::MIN_POSITIVE, -1e-45, -0.0, 0.0, 1e-45,
        f32::MIN_POSITIVE, 1.0, 2.5, 1e30, f32::MAX, f32::INFINITY,
    ];
    // The key order is total_cmp's, and -0.0 sorts just below +0.0.
    for a in specials {
        for b in specials {
            assert_eq!(total_order_bits(a).cmp(&total_order_bits(b)), a.total_cmp(&b), "{a} vs {b}");
        }
    }
    let mut x = 5u64;
    let mut next = move || {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    };
    for k in [1usize, 5, 15, 16, 40, 300] {
        // Few distinct distances, so that ties on distance are common.
        let pairs: Vec<(f32, u64)> = (0..1000).map(|_| (specials[next() as usize % specials.len()], next() % 5000)).collect();
        let mut want: Vec<(f32, u64)> = pairs.iter().map(|&(d, p)| (d + 0.0, p)).collect();
        want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        want.truncate(k);
        for reversed in [false, true] {
            let mut top = TopK::new(k);
            let order: Vec<&(f32, u64)> = if reversed { pairs.iter().rev().collect() } else { pairs.iter().collect() };
            for &(d, p) in order {
                top.push(d, p);
            }
            // Heap mode: the k-th kept; reservoir mode: the k-th at the last
            // cut, so no tighter than that.
            let threshold = top.threshold();
            if k < 16 {
                assert_eq!(threshold.to_bits(), want[k - 1].0.to_bits(), "k {k}: threshold");
            } else {
                assert!(threshold.total_cmp(&want[k - 1].0).is_ge(), "k {k}: threshold {threshold}");
            }
            let (mut unsorted, sorted) = (top.clone().into_vec(), top.into_sorted_vec());
            unsorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            assert_eq!(sorted.iter().map(|p| (p.0.to_bits(), p.1)).collect::<Vec<_>>(), want.iter().map(|p| (p.0.to_bits(), p.1)).collect::<Vec<_>>(), "k {k}");
            assert_eq!(unsorted, sorted, "k {k}: into_vec");
        }
    }
}

/// `codes` in planar blocks, as a list holds them.
fn planar_blocks<'a>(codes: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut blocks = Vec::new();
    for (i, code) in codes.enumerate() {
        super::planar::push(&mut blocks, i, code);
    }
    blocks
}

/// Stage one of a two-stage search scans lists of the codes' first bytes
/// with a prefix table: it scores a code's first bytes as the whole table
/// scores them (codes sharing their other bytes differ by the same
/// amount under both), in the whole table's units, on every CPU (a
/// fast-scan filter or none) and for tables scaled for extreme values;
/// its planar scans, alone and grouped, rank as scans of any table do.
/// Stage two ranks gathered whole codes as the planar scan of those codes
/// ranks them.
#[test]
fn two_stage_scans_rank_as_the_scans_of_their_codes() {
    use super::{rank_gathered, scan_planar, scan_planar_many, PqMetric, TopK};
    let config = super::PqConfig { dim: 96, m: 96, bits: 4 };
    let options = super::TrainOptions { iterations: 4, seed: 1, threads: 1 };
    let cb = super::Codebooks::train(&config, &random_vec(96 * 2000, 31), &options, &mut |_, _| {}).unwrap();
    let cs = config.code_size();
    assert_eq!(cs, 48);
    for n in [63usize, 64 * 90 + 5] {
        let mut codes = vec![0u8; n * cs];
        cb.encode(&random_vec(96 * n, 32 + n as u64), &mut codes, 1);
        let blocks = planar_blocks(codes.chunks_exact(cs));
        let own: Vec<u64> = (0..n.div_ceil(64)).map(|w| 0xF0F0_FF00_0FF0_A5A5u64.rotate_left(3 * w as u32)).collect();
        let mut tables: Vec<_> = (0..3).map(|q| cb.query_table(&random_vec(96, 40 + q), PqMetric::L2)).collect();
        let huge: Vec<f32> = random_vec(96, 44).iter().map(|v| v * 1e19).collect();
        tables.push(cb.query_table(&huge, PqMetric::L2));
        assert!(tables[3].unscale(1.0) != 1.0, "a table scaled for extreme values");
        for bytes in [16usize, 32] {
            let cut = planar_blocks(codes.chunks_exact(cs).map(|code| &code[..bytes]));
            let prefixes: Vec<_> = tables.iter().map(|t| t.prefix(bytes).expect("a prefix table")).collect();
            for (q, (table, prefix)) in tables.iter().zip(&prefixes).enumerate() {
                assert_eq!(prefix.code_size(), bytes);
                assert_eq!(prefix.unscale(1.0), table.unscale(1.0), "query {q}: the whole table's units");
                assert_eq!(prefix.uses_fast_scan(), table.uses_fast_scan(), "query {q}");
                // Every code with the first code's other bytes.
                let mut same_rest = Vec::new();
                let (whole, first): (Vec<f32>, Vec<f32>) = codes
                    .chunks_exact(cs)
                    .map(|code| {
                        same_rest.clear();
                        same_rest.extend_from_slice(&code[..bytes]);
                        same_rest.extend_from_slice(&codes[bytes..cs]);
                        (table.distance(&same_rest), prefix.distance(&code[..bytes]))
                    })
                    .unzip();
                let scale = whole.iter().chain(&first).fold(0f32, |m, d| m.max(d.abs()));
                let rest = whole[0] - first[0];
                for (i, (w, f)) in whole.iter().zip(&first).enumerate() {
                    assert!((w - f - rest).abs() <= 1e-4 * scale, "n {n} bytes {bytes} query {q} code {i}: {w} - {f} against {rest}");
                }
                for live in [None, Some(&own[..])] {
                    // Exact: the prefix's ADC distances of the cut codes.
                    let mut got = TopK::new(40);
                    scan_planar(prefix, &cut, n, 11, live, false, 0.0, &mut got);
                    let mut want = TopK::new(40);
                    for (i, &d) in first.iter().enumerate() {
                        if live.is_none_or(|l| l[i / 64] >> (i % 64) & 1 == 1) {
                            want.push(d, 11 + i as u64);
                        }
                    }
                    assert_eq!(got.into_sorted_vec(), want.into_sorted_vec(), "n {n} bytes {bytes} query {q}");
                }
            }
            for live in [None, Some(&own[..])] {
                let refs: Vec<&super::QueryTable> = prefixes.iter().collect();
                let shifts = [0.0f32; 4];
                let mut together: Vec<TopK> = (0..4).map(|_| TopK::new(40)).collect();
                scan_planar_many(&refs, &cut, n, 11, live, true, &shifts, &mut together.iter_mut().collect::<Vec<_>>());
                for (q, got) in together.into_iter().enumerate() {
                    let mut want = TopK::new(40);
                    scan_planar(refs[q], &cut, n, 11, live, true, 0.0, &mut want);
                    assert_eq!(got.into_sorted_vec(), want.into_sorted_vec(), "grouped: n {n} bytes {bytes} query {q}");
                }
            }
            assert!(tables[0].prefix(bytes + 8).is_none(), "whole groups of 16 bytes only");
        }
        assert!(tables[0].prefix(cs).is_none(), "a prefix is shorter than the code");
        let eight = super::Codebooks::train(&super::PqConfig { dim: 96, m: 48, bits: 8 }, &random_vec(96 * 2000, 33), &options, &mut |_, _| {}).unwrap();
        assert!(eight.query_table(&random_vec(96, 45), PqMetric::L2).prefix(16).is_none(), "8-bit codes have no prefix table");
        // Stage two: every code gathered in another order, at its own
        // position, with its list's shift.
        let order: Vec<usize> = (0..n).rev().collect();
        let gathered: Vec<u8> = order.iter().flat_map(|&i| codes[i * cs..(i + 1) * cs].iter().copied()).collect();
        let positions: Vec<u64> = order.iter().map(|&i| 11 + i as u64).collect();
        // (Without shifts, as a two-stage search ranks, the kernel skips
        // the codes the heap would refuse.)
        for estimated in [true, false] {
            for k in [1usize, 30, n] {
                for shift in [-2.5f32, 0.0] {
                    let shifts = if shift == 0.0 { Vec::new() } else { vec![shift; n] };
                    let mut got = TopK::new(k);
                    rank_gathered(&tables[1], &gathered, &positions, &shifts, estimated, &mut got);
                    let mut want = TopK::new(k);
                    scan_planar(&tables[1], &blocks, n, 11, None, estimated, shift, &mut want);
                    assert_eq!(got.into_sorted_vec(), want.into_sorted_vec(), "stage two: n {n} k {k} estimated {estimated} shift {shift}");
                }
            }
        }
    }
}
