//! The coarse quantizer's byte screen for assignment, where the
//! centroids' principal subspace does not screen them (index/screen.rs:
//! e.g. SIFT's 128 dimensions, where the directions allowed hold too
//! little of the centroids' spread) and the CPU sums byte products
//! (AVX-512 VNNI: 64 multiply-adds an instruction, four times its f32
//! rate).
//!
//! Each centroid row `c` is kept as bytes `C` and a scale (`ĉ = s_c C`,
//! `|C_j| <= 127`); each vector `x` is rounded the same way when it is
//! assigned (`x̂ = s_x X`), and `<x̂, ĉ> = s_x s_c <X, C>` is an exact
//! integer sum. Since `<x, c> - <x̂, ĉ> = <x - x̂, c> + <x̂, c - ĉ>`, at most
//! `|x - x̂| |c| + |x̂| |c - ĉ|` (Cauchy-Schwarz), every row's score
//! `bias - <x, c>` lies in an interval known from the bytes, widened to
//! hold its f32 score too (`SLACK`). Only the rows whose interval reaches
//! below the least upper end can have the least f32 score, and only those
//! are scored in full (`dot`). So the answer is the row with the least
//! `bias - dot(x, c)`, ties to the lower row: what scoring every row with
//! `dot` gives, bit for bit. The data decide only how many rows are scored
//! in full.
//!
//! Derived data, never stored: built from the centroids at a store's first
//! assignment after open, and for each iteration of training's k-means.

use super::screen::BEYOND_F32;
use crate::quantization::kernels;
use crate::search::distance::dot;

/// The most dimensions screened: the integer sums `<X, C>` then stay below
/// 2^24 (exact in f32: 127 x 127 x 1,024), and `dot`'s rounding (at most
/// about `dim` units in the last place of `|x| |c|`) below `SLACK`.
pub(super) const MAX_DIM: usize = 1024;
/// Largest magnitudes a row or vector may have to be screened (or zero):
/// far from f32's limits, so that the scales' products stay normal
/// floats. Vectors outside it (but inside the f32-safe range) score every
/// row with `dot`; rows outside it leave the quantizer unscreened.
const RANGE: (f32, f32) = (1.0 / (1u64 << 40) as f32, (1u64 << 40) as f32);
/// The intervals' relative widening, of `|bias| + |x| |c|`: it holds the
/// f32 rounding of `dot` (dim <= MAX_DIM), of the scales' products and of
/// the bounds themselves, each under 1e-4 of that.
const SLACK: f32 = 1e-4;
/// The bounds' norms, computed in f32, rounded up by this factor too.
const WIDEN: f32 = 1.001;
/// Rows a kernel pass scores (4 blocks of 16 lanes) and vectors it takes.
const ROW_TILE: usize = 64;
const VECTOR_TILE: usize = 4;
/// Vectors screened at once (a thread's share is split in such blocks),
/// at most: fewer where the rows are many, so that their byte sums
/// (`SUMS_BYTES` at most) stay in cache.
const BLOCK: usize = 256;
const SUMS_BYTES: usize = 1 << 20;
/// Rows whose bytes the kernel runs every vector of a block over before
/// moving on (their table then stays in cache; 512 KiB at 1,024
/// dimensions, 64 KiB at 128).
const ROW_CHUNK: usize = 8 * ROW_TILE;
/// `x + ROUNDER - ROUNDER` rounds `x` (|x| < 2^22) to the nearest whole
/// number, in plain f32 operations that vectorize (`f32::round` calls
/// libm in the baseline build).
const ROUNDER: f32 = 12_582_912.0; // 1.5 x 2^23

/// The centroid rows as bytes, and what their bounds need.
#[derive(Debug, Clone)]
pub(super) struct ByteScreen {
    dim: usize,
    /// Groups of 4 dimensions (the last padded with zeros).
    groups: usize,
    rows: usize,
    /// Rows rounded up to `ROW_TILE`: rows past `rows` are zeros.
    width: usize,
    /// Block `b` of 16 rows, group `g`: the 16 rows' 4 bytes each (row
    /// `16 b + l` in bytes `4 l..4 l + 4`), at `(b * groups + g) * 64`.
    table: Vec<i8>,
    /// Per row: the scale `s_c`, `128 * sum C` (a vector's bytes are
    /// unsigned, `X + 128`, so that sum comes off), `|c|` and `|c - ĉ|`
    /// (rounded up), `|bias|`.
    scale: Vec<f32>,
    offset: Vec<i32>,
    norm: Vec<f32>,
    error: Vec<f32>,
    abs_bias: Vec<f32>,
}

/// A vector as the screen sees it.
#[derive(Debug, Clone, Copy)]
enum Rounded {
    /// Its bytes: scale `s`, `|x̂| = xh`, `|x - x̂| = ex` (rounded up).
    Bytes { s: f32, xh: f32, ex: f32 },
    /// Outside `RANGE`, inside the f32-safe range: every row scored.
    Full,
    /// Outside the f32-safe range: its caller scores it in f64.
    Beyond,
}

/// Buffers a thread reuses from block to block.
#[derive(Default)]
struct Scratch {
    bytes: Vec<u8>,
    rounded: Vec<Rounded>,
    sums: Vec<i32>,
    /// Per row, the lower end of its interval.
    lower: Vec<f32>,
    candidates: Vec<u32>,
}

/// `v` (of a row or vector whose largest magnitude is `127 / inv`) as its
/// byte level, a whole number in -127..=127 (in f32; `inv` 0: zero).
#[inline(always)]
fn level(v: f32, inv: f32) -> f32 {
    ((v * inv + ROUNDER) - ROUNDER).clamp(-127.0, 127.0)
}

fn in_range(max_abs: f32) -> bool {
    max_abs == 0.0 || (RANGE.0..=RANGE.1).contains(&max_abs)
}

/// `sqrt(sum v^2)` in f64, rounded up to f32.
fn norm_up(v: impl Iterator<Item = f64>) -> f32 {
    (v.map(|x| x * x).sum::<f64>().sqrt() as f32) * WIDEN
}

impl ByteScreen {
    /// Whether this CPU runs the byte kernel (elsewhere the matrix product
    /// of every row is faster than the portable sums).
    pub(super) fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            crate::cpu::avx512vnni()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The screen of `rows` (`bias.len()` rows of `dim`), or `None` when it
    /// does not apply: more than `MAX_DIM` dimensions, or a row outside
    /// `RANGE`.
    pub(super) fn build(rows: &[f32], bias: &[f32], dim: usize) -> Option<ByteScreen> {
        let n = bias.len();
        if dim == 0 || dim > MAX_DIM || rows.len() != n * dim || n == 0 {
            return None;
        }
        let groups = dim.div_ceil(4);
        let width = n.div_ceil(ROW_TILE) * ROW_TILE;
        let mut table = vec![0i8; width * groups * 4];
        let (mut scale, mut offset, mut norm, mut error) = (vec![0f32; n], vec![0i32; n], vec![0f32; n], vec![0f32; n]);
        let mut bytes = vec![0i8; dim];
        for (r, c) in rows.chunks_exact(dim).enumerate() {
            let m = crate::quantization::simd_max_abs(c);
            if !in_range(m) {
                return None;
            }
            let s = m / 127.0;
            let inv = if m == 0.0 { 0.0 } else { 127.0 / m };
            for (b, &v) in bytes.iter_mut().zip(c) {
                *b = level(v, inv) as i8;
            }
            scale[r] = s;
            offset[r] = 128 * bytes.iter().map(|&b| b as i32).sum::<i32>();
            norm[r] = norm_up(c.iter().map(|&v| v as f64));
            error[r] = norm_up(c.iter().zip(&bytes).map(|(&v, &b)| v as f64 - s as f64 * b as f64));
            let (block, lane) = (r / 16, r % 16);
            for (j, &b) in bytes.iter().enumerate() {
                table[(block * groups + j / 4) * 64 + lane * 4 + j % 4] = b;
            }
        }
        let abs_bias = bias.iter().map(|b| b.abs()).collect();
        Some(ByteScreen { dim, groups, rows: n, width, table, scale, offset, norm, error, abs_bias })
    }

    /// Vectors a block holds: at most `BLOCK`, and few enough that their
    /// sums fit in `SUMS_BYTES`.
    fn block(&self) -> usize {
        (SUMS_BYTES / (4 * self.width)).clamp(VECTOR_TILE, BLOCK)
    }

    /// Heap bytes held.
    pub(super) fn heap_bytes(&self) -> usize {
        self.table.capacity() + 4 * (self.scale.capacity() + self.offset.capacity() + self.norm.capacity() + self.error.capacity() + self.abs_bias.capacity())
    }

    /// For each vector of `x` (row-major, at most `block()` of them), the
    /// row with the least `bias[row] - dot(x, row)` (ties to the lower
    /// row) into `out`, or `BEYOND_F32` for a vector outside the f32-safe
    /// range; its sums from the byte kernel (`fast`) or the portable loops
    /// (the same integers). `rows` and `bias` are those the screen was
    /// built from.
    fn nearest(&self, rows: &[f32], bias: &[f32], x: &[f32], out: &mut [u32], scratch: &mut Scratch, fast: bool) {
        let (dim, n) = (self.dim, out.len());
        assert!(n <= self.block() && x.len() == n * dim && rows.len() == self.rows * dim && bias.len() == self.rows, "byte screen: rows and vectors");
        let padded = self.groups * 4;
        let tiles = n.div_ceil(VECTOR_TILE) * VECTOR_TILE;
        let Scratch { bytes, rounded, sums, lower, candidates } = scratch;
        // Pad values (and a tile's missing vectors) read as zeros: 128s.
        bytes.clear();
        bytes.resize(tiles * padded, 128);
        rounded.clear();
        rounded.extend(x.chunks_exact(dim).zip(bytes.chunks_exact_mut(padded)).map(|(v, b)| round_vector(v, &mut b[..dim])));
        // The kernel writes every sum: no need to zero them first.
        if sums.len() < tiles * self.width {
            sums.resize(tiles * self.width, 0);
        }
        let sums = &mut sums[..tiles * self.width];
        self.sums(bytes, tiles, sums, fast);
        lower.resize(self.rows, 0.0);
        for (i, (v, o)) in x.chunks_exact(dim).zip(out.iter_mut()).enumerate() {
            candidates.clear();
            match rounded[i] {
                Rounded::Beyond => {
                    *o = BEYOND_F32;
                    continue;
                }
                Rounded::Full => candidates.extend(0..self.rows as u32),
                Rounded::Bytes { s, xh, ex } => self.candidates(&sums[i * self.width..][..self.rows], bias, (s, xh, ex), lower, candidates, fast),
            }
            let mut best = (f32::INFINITY, 0u32);
            for &r in candidates.iter() {
                let s = bias[r as usize] - dot(v, &rows[r as usize * dim..(r as usize + 1) * dim]);
                if s < best.0 {
                    best = (s, r);
                }
            }
            *o = best.1;
        }
    }

    /// The rows whose interval reaches below the least upper end, in
    /// increasing order, into `candidates`, for a vector rounded with scale
    /// `s`, `|x̂| = xh` and `|x - x̂| = ex`, whose byte sums are `sums`;
    /// each row's lower end into `lower`.
    fn candidates(&self, sums: &[i32], bias: &[f32], (s, xh, ex): (f32, f32, f32), lower: &mut [f32], candidates: &mut Vec<u32>, fast: bool) {
        // |x| <= xh + ex: the slack's scale.
        let around = SLACK * (xh + ex);
        let k = Coefficients { s, a: (ex + around) * WIDEN, b: (xh + around) * WIDEN, c: SLACK * WIDEN };
        let rows = Rows { sums, bias, scale: &self.scale, offset: &self.offset, norm: &self.norm, error: &self.error, abs_bias: &self.abs_bias };
        #[cfg(target_arch = "x86_64")]
        if fast && crate::cpu::avx512f() {
            // SAFETY: AVX-512F is on this CPU (checked just above); every
            // slice of `rows` and `lower` holds `self.rows` values (`sums`
            // at least that many), as `candidates_avx512` requires.
            unsafe { candidates_avx512(&rows, k, lower, candidates) };
            return;
        }
        let _ = fast;
        let mut upper = f32::INFINITY;
        for (r, l) in lower.iter_mut().enumerate() {
            let (e, w) = k.interval(&rows, r);
            *l = e - w;
            if e + w < upper {
                upper = e + w;
            }
        }
        candidates.extend((0..self.rows as u32).filter(|&r| lower[r as usize] <= upper));
    }

    /// `sums[v * width + r] = sum_j bytes[v * padded + j] * C_rj` for the
    /// `tiles` vectors (a multiple of `VECTOR_TILE`) and every row.
    fn sums(&self, bytes: &[u8], tiles: usize, sums: &mut [i32], fast: bool) {
        assert!(tiles.is_multiple_of(VECTOR_TILE) && bytes.len() == tiles * self.groups * 4 && sums.len() == tiles * self.width, "byte screen: sums of whole tiles");
        #[cfg(target_arch = "x86_64")]
        if fast && crate::cpu::avx512vnni() {
            // SAFETY: AVX-512F and VNNI are on this CPU (checked just
            // above); `bytes` and `sums` have the lengths `sums_vnni`
            // requires (asserted just above), and `table` holds
            // `width * groups * 4` bytes with `width` a multiple of
            // `ROW_TILE` (`build`).
            unsafe { sums_vnni(&self.table, self.groups, self.width, bytes, tiles, sums) };
            return;
        }
        let _ = fast;
        let padded = self.groups * 4;
        for (xb, out) in bytes.chunks_exact(padded).zip(sums.chunks_exact_mut(self.width)) {
            for (r, o) in out.iter_mut().enumerate() {
                let (block, lane) = (r / 16, r % 16);
                let mut acc = 0i32;
                for g in 0..self.groups {
                    let c = &self.table[(block * self.groups + g) * 64 + lane * 4..][..4];
                    for t in 0..4 {
                        acc += xb[4 * g + t] as i32 * c[t] as i32;
                    }
                }
                *o = acc;
            }
        }
    }
}

/// What a vector's intervals are made of: its scale `s`, and the
/// coefficients of each row's half-width `a |c| + b |c - ĉ| + c |bias|`.
#[derive(Clone, Copy)]
struct Coefficients {
    s: f32,
    a: f32,
    b: f32,
    c: f32,
}

/// Per row: the vector's byte sum, and the row's terms (see `ByteScreen`).
struct Rows<'a> {
    sums: &'a [i32],
    bias: &'a [f32],
    scale: &'a [f32],
    offset: &'a [i32],
    norm: &'a [f32],
    error: &'a [f32],
    abs_bias: &'a [f32],
}

impl Coefficients {
    /// Row `r`'s estimated score and half-width (the SIMD path computes
    /// the same, operation for operation).
    #[inline]
    fn interval(self, rows: &Rows<'_>, r: usize) -> (f32, f32) {
        let e = rows.bias[r] - (self.s * rows.scale[r]) * (rows.sums[r] - rows.offset[r]) as f32;
        let w = ((self.a * rows.norm[r] + self.b * rows.error[r]) + self.c * rows.abs_bias[r]) + f32::MIN_POSITIVE;
        (e, w)
    }
}

/// `ByteScreen::candidates`' two passes in AVX-512: 16 rows at a time,
/// the same operations as `Coefficients::interval` (no fused multiply-add),
/// then the rows whose lower end is at most the least upper end.
///
/// Requires: AVX-512F on this CPU; `rows.bias`, `scale`, `offset`, `norm`,
/// `error`, `abs_bias` and `lower` of one length `n`, `rows.sums` at least
/// `n` long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn candidates_avx512(rows: &Rows<'_>, k: Coefficients, lower: &mut [f32], candidates: &mut Vec<u32>) {
    use std::arch::x86_64::*;
    let n = rows.bias.len();
    debug_assert!(rows.sums.len() >= n && [rows.scale.len(), rows.norm.len(), rows.error.len(), rows.abs_bias.len(), lower.len(), rows.offset.len()].iter().all(|&l| l == n));
    let (s, a, b, c) = (_mm512_set1_ps(k.s), _mm512_set1_ps(k.a), _mm512_set1_ps(k.b), _mm512_set1_ps(k.c));
    let tiny = _mm512_set1_ps(f32::MIN_POSITIVE);
    let mut upper = _mm512_set1_ps(f32::INFINITY);
    for r in (0..n).step_by(16) {
        let m: __mmask16 = if n - r >= 16 { 0xFFFF } else { (1u16 << (n - r)) - 1 };
        // SAFETY (every load and store here): lanes r .. r + 16 masked to
        // those below n, the length of each slice (at least, for `sums`).
        let ld = |p: *const f32| _mm512_maskz_loadu_ps(m, p.add(r));
        let sums = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(m, rows.sums.as_ptr().add(r)), _mm512_maskz_loadu_epi32(m, rows.offset.as_ptr().add(r)));
        let e = _mm512_sub_ps(ld(rows.bias.as_ptr()), _mm512_mul_ps(_mm512_mul_ps(s, ld(rows.scale.as_ptr())), _mm512_cvtepi32_ps(sums)));
        let w = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(a, ld(rows.norm.as_ptr())), _mm512_mul_ps(b, ld(rows.error.as_ptr()))), _mm512_mul_ps(c, ld(rows.abs_bias.as_ptr()))), tiny);
        _mm512_mask_storeu_ps(lower.as_mut_ptr().add(r), m, _mm512_sub_ps(e, w));
        upper = _mm512_mask_min_ps(upper, m, upper, _mm512_add_ps(e, w));
    }
    let upper = _mm512_set1_ps(_mm512_reduce_min_ps(upper));
    for r in (0..n).step_by(16) {
        let m: __mmask16 = if n - r >= 16 { 0xFFFF } else { (1u16 << (n - r)) - 1 };
        // SAFETY: as above.
        let mut pass = _mm512_mask_cmp_ps_mask::<_CMP_LE_OQ>(m, _mm512_maskz_loadu_ps(m, lower.as_ptr().add(r)), upper) as u32;
        while pass != 0 {
            candidates.push((r + pass.trailing_zeros() as usize) as u32);
            pass &= pass - 1;
        }
    }
}

/// Rounds `v` to bytes (`X + 128`, `|X| <= 127`) into `out` (left alone
/// unless `Rounded::Bytes`).
#[inline]
fn round_vector(v: &[f32], out: &mut [u8]) -> Rounded {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::avx512f() {
        // SAFETY: AVX-512F is on this CPU (checked just above).
        return unsafe { round_vector_avx512(v, out) };
    }
    round_lanes(v, out)
}

/// `round_lanes` compiled for AVX-512 (the same operations, wider).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn round_vector_avx512(v: &[f32], out: &mut [u8]) -> Rounded {
    round_lanes(v, out)
}

/// `round_vector`: 16 values at a time in lanes, so that it vectorizes.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // fixed-size lane loops, written for the vectorizer
fn round_lanes(v: &[f32], out: &mut [u8]) -> Rounded {
    let m = crate::quantization::simd_max_abs(v);
    if !kernels::in_safe_range(m) {
        return Rounded::Beyond;
    }
    if !in_range(m) {
        return Rounded::Full;
    }
    if m == 0.0 {
        out.fill(128);
        return Rounded::Bytes { s: 0.0, xh: 0.0, ex: 0.0 };
    }
    let (s, inv) = (m / 127.0, 127.0 / m);
    let (mut inside, mut outside) = ([0f32; 16], [0f32; 16]);
    let mut step = |o: &mut u8, x: f32, l: usize| {
        let q = level(x, inv);
        // The byte q + 128 from the float's low mantissa bits (an `as`
        // cast checks every lane for NaN and does not vectorize).
        *o = ((q + (128.0 + ROUNDER)).to_bits() & 0xFF) as u8;
        let r = s * q;
        inside[l] += r * r;
        outside[l] += (x - r) * (x - r);
    };
    let mut chunks = out.chunks_exact_mut(16).zip(v.chunks_exact(16));
    for (o, x) in &mut chunks {
        for l in 0..16 {
            step(&mut o[l], x[l], l);
        }
    }
    let tail = v.len() / 16 * 16;
    for (j, (o, &x)) in out[tail..].iter_mut().zip(&v[tail..]).enumerate() {
        step(o, x, j);
    }
    // f32 sums of squares: off by far less than WIDEN and SLACK cover.
    let (xh, ex) = (inside.iter().sum::<f32>().sqrt(), outside.iter().sum::<f32>().sqrt());
    Rounded::Bytes { s, xh: xh * WIDEN, ex: ex * WIDEN }
}

/// `ByteScreen::sums` on AVX-512 VNNI: tiles of `VECTOR_TILE` vectors x
/// `ROW_TILE` rows, each group of 4 bytes of a vector broadcast and
/// multiplied into 4 blocks of 16 rows (`vpdpbusd`), 16 accumulators;
/// `ROW_CHUNK` rows at a time for every vector.
///
/// Requires: AVX-512F and AVX-512 VNNI on this CPU; `table.len() == width
/// * groups * 4`, `width % ROW_TILE == 0`, `tiles % VECTOR_TILE == 0`,
/// `bytes.len() == tiles * groups * 4`, `sums.len() == tiles * width`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn sums_vnni(table: &[i8], groups: usize, width: usize, bytes: &[u8], tiles: usize, sums: &mut [i32]) {
    use std::arch::x86_64::*;
    debug_assert!(table.len() == width * groups * 4 && width.is_multiple_of(ROW_TILE) && tiles.is_multiple_of(VECTOR_TILE));
    debug_assert!(bytes.len() == tiles * groups * 4 && sums.len() == tiles * width);
    let padded = groups * 4;
    let block_len = groups * 64;
    for chunk in (0..width).step_by(ROW_CHUNK) {
        for v0 in (0..tiles).step_by(VECTOR_TILE) {
            for r0 in (chunk..width.min(chunk + ROW_CHUNK)).step_by(ROW_TILE) {
                // SAFETY: blocks r0 / 16 .. r0 / 16 + 4 lie in `table`
                // (r0 + 64 <= width); vectors v0 .. v0 + 4 in `bytes`
                // (v0 + 4 <= tiles).
                let base = table.as_ptr().add((r0 / 16) * block_len);
                let mut acc = [[_mm512_setzero_si512(); 4]; VECTOR_TILE];
                for g in 0..groups {
                    let c: [__m512i; 4] = std::array::from_fn(|b| _mm512_loadu_si512(base.add(b * block_len + g * 64) as *const __m512i));
                    for (p, accp) in acc.iter_mut().enumerate() {
                        let x = _mm512_set1_epi32((bytes.as_ptr().add((v0 + p) * padded + 4 * g) as *const i32).read_unaligned());
                        for (a, &cb) in accp.iter_mut().zip(&c) {
                            *a = _mm512_dpbusd_epi32(*a, x, cb);
                        }
                    }
                }
                for (p, accp) in acc.iter().enumerate() {
                    for (b, &a) in accp.iter().enumerate() {
                        // SAFETY: row r0 + 16 b + 16 <= width, vector v0 + p < tiles.
                        _mm512_storeu_si512(sums.as_mut_ptr().add((v0 + p) * width + r0 + 16 * b) as *mut __m512i, a);
                    }
                }
            }
        }
    }
}

/// The nearest row of each vector of `x` (`ByteScreen::nearest`, the byte
/// kernel where the CPU has it), split across `threads` in whole blocks
/// (each vector's answer does not depend on the split).
pub(super) fn nearest_rows(screen: &ByteScreen, rows: &[f32], bias: &[f32], x: &[f32], out: &mut [u32], threads: usize) {
    let (dim, n) = (screen.dim, out.len());
    assert!(x.len() == n * dim, "byte screen: one answer per vector");
    let (block, fast) = (screen.block(), ByteScreen::available());
    // A few blocks per thread at least, so spawning pays.
    let threads = threads.min(n.div_ceil(block).div_ceil(4));
    crate::parallel::by_blocks(x, dim, out, block, threads, |x, out| {
        let mut scratch = Scratch::default();
        for (xb, ob) in x.chunks(block * dim).zip(out.chunks_mut(block)) {
            screen.nearest(rows, bias, xb, ob, &mut scratch, fast);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantization::kmeans::Rng;
    use crate::quantization::PqMetric;

    /// The row with the least `bias - dot(x, row)`, ties to the lower row,
    /// by scoring every row: what the screen must give.
    fn every_row(rows: &[f32], bias: &[f32], dim: usize, x: &[f32]) -> u32 {
        let mut best = (f32::INFINITY, 0u32);
        for (r, c) in rows.chunks_exact(dim).enumerate() {
            let s = bias[r] - dot(x, c);
            if s < best.0 {
                best = (s, r as u32);
            }
        }
        best.1
    }

    /// Screens every vector of `x` in blocks, by the portable sums and by
    /// the kernel, and asserts each answer is `every_row`'s (`what` names
    /// the case).
    fn assert_least_dot_score(screen: &ByteScreen, rows: &[f32], bias: &[f32], x: &[f32], what: &str) {
        let (dim, per) = (screen.dim, screen.block());
        let mut scratch = Scratch::default();
        for fast in [false, true] {
            for (xb, block) in x.chunks(per * dim).zip(0..) {
                let mut got = vec![0u32; xb.len() / dim];
                screen.nearest(rows, bias, xb, &mut got, &mut scratch, fast);
                for (i, (v, &g)) in xb.chunks_exact(dim).zip(&got).enumerate() {
                    assert_eq!(g, every_row(rows, bias, dim, v), "{what}, fast {fast}, vector {}", block * per + i);
                }
            }
        }
    }

    fn values(n: usize, rng: &mut Rng, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| scale * (rng.below(20001) as f32 - 10000.0) / 10000.0)
            .collect()
    }

    /// Vectors near the rows (a few exactly on one, some halfway between
    /// two, one zero), and fresh ones: near-ties the bounds must not lose.
    fn queries(rows: &[f32], dim: usize, rng: &mut Rng, scale: f32) -> Vec<f32> {
        let nrows = rows.len() / dim;
        let mut out = Vec::new();
        for i in 0..300 {
            let a = &rows[(rng.below(nrows as u64) as usize) * dim..][..dim];
            let b = &rows[(rng.below(nrows as u64) as usize) * dim..][..dim];
            let noise = values(dim, rng, scale * 0.05);
            out.extend((0..dim).map(|j| match i % 4 {
                0 => a[j],
                1 => 0.5 * (a[j] + b[j]),
                2 => a[j] + noise[j],
                _ => noise[j] * 20.0,
            }));
        }
        out.extend(std::iter::repeat_n(0.0, dim));
        out
    }

    #[test]
    fn the_answer_is_the_least_dot_score_bit_for_bit() {
        let mut rng = Rng::new(11);
        // Dimensions not a multiple of 4 and rows not of 64; both metrics;
        // magnitudes from tiny to large (within RANGE).
        for (dim, nrows, scale) in [
            (7, 1, 1.0f32),
            (7, 65, 1.0),
            (128, 1000, 1.0),
            (130, 63, 1e-9),
            (33, 300, 1e9),
            (1024, 70, 3.0),
        ] {
            let mut rows = values(nrows * dim, &mut rng, scale);
            // Two identical rows (a tie goes to the lower) and a zero row.
            if nrows > 4 {
                rows.copy_within(0..dim, 3 * dim);
                rows[dim..2 * dim].fill(0.0);
            }
            let x = queries(&rows, dim, &mut rng, scale);
            for metric in [PqMetric::L2, PqMetric::InnerProduct] {
                let bias = super::super::groups::row_bias(&rows, dim, metric);
                let screen = ByteScreen::build(&rows, &bias, dim).expect("in range");
                assert_least_dot_score(&screen, &rows, &bias, &x, &format!("dim {dim}, rows {nrows}, {metric:?}"));
            }
        }
    }

    /// `v` moved onto the byte grid of scale 1/8 with its largest value
    /// 127/8: its bytes are then exact (no rounding error on that side).
    fn on_grid(v: &mut [f32]) {
        v[0] = 127.0 / 8.0;
        for x in &mut v[1..] {
            *x = (*x * 8.0).round().clamp(-127.0, 127.0) / 8.0;
        }
    }

    #[test]
    fn either_side_s_rounding_is_bounded_alone() {
        // Rows exact in bytes, vectors not (only `|x - x̂| |c|` bounds the
        // error), then vectors exact, rows not (only `|x̂| |c - ĉ|`): each
        // case fails if its term is left out.
        let mut rng = Rng::new(21);
        let (dim, nrows) = (64, 500);
        for rows_exact in [true, false] {
            let mut rows = values(nrows * dim, &mut rng, 15.0);
            rows.chunks_exact_mut(dim).for_each(|r| r[0] = 15.9);
            if rows_exact {
                rows.chunks_exact_mut(dim).for_each(on_grid);
            }
            let mut x = queries(&rows, dim, &mut rng, 15.0);
            if !rows_exact {
                x.chunks_exact_mut(dim).for_each(on_grid);
            }
            let bias = super::super::groups::row_bias(&rows, dim, PqMetric::L2);
            let screen = ByteScreen::build(&rows, &bias, dim).unwrap();
            assert_eq!(screen.error.iter().all(|&e| e == 0.0), rows_exact);
            assert_least_dot_score(&screen, &rows, &bias, &x, &format!("rows exact {rows_exact}"));
        }
    }

    #[test]
    fn float_rounding_between_exact_ties_is_covered() {
        // Vectors v and rows v + d, v - d, all on a byte grid whose scale
        // is not a power of two: both sides' bytes exact (up to the
        // rounding of the scale's products), and each vector exactly as
        // far from its two rows in real numbers, so that `dot`'s f32
        // rounding alone decides. Only `SLACK` covers that rounding (the
        // test fails without it).
        let mut rng = Rng::new(31);
        let (dim, pairs) = (96, 300);
        let s = 0.1f32;
        let grid = |rng: &mut Rng, half: u64| (rng.below(2 * half + 1) as f32 - half as f32) * s;
        let (mut rows, mut x) = (Vec::new(), Vec::new());
        for _ in 0..pairs {
            let v: Vec<f32> = std::iter::once(127.0 * s).chain((1..dim).map(|_| grid(&mut rng, 100))).collect();
            let d: Vec<f32> = std::iter::once(0.0).chain((1..dim).map(|_| grid(&mut rng, 3))).collect();
            rows.extend(v.iter().zip(&d).map(|(&a, &b)| a + b));
            rows.extend(v.iter().zip(&d).map(|(&a, &b)| a - b));
            x.extend(v);
        }
        for metric in [PqMetric::L2, PqMetric::InnerProduct] {
            let bias = super::super::groups::row_bias(&rows, dim, metric);
            let screen = ByteScreen::build(&rows, &bias, dim).unwrap();
            assert_least_dot_score(&screen, &rows, &bias, &x, &format!("{metric:?}"));
        }
    }

    #[test]
    fn the_simd_paths_give_the_portable_sums_and_candidates() {
        #[cfg(target_arch = "x86_64")]
        if crate::cpu::avx512vnni() {
            let mut rng = Rng::new(5);
            for (dim, nrows, n) in [(4, 64, 4), (128, 1000, 12), (131, 130, 8), (16, 17, 4)] {
                let rows = values(nrows * dim, &mut rng, 2.0);
                let bias = super::super::groups::row_bias(&rows, dim, PqMetric::L2);
                let screen = ByteScreen::build(&rows, &bias, dim).unwrap();
                let x = queries(&rows, dim, &mut rng, 2.0);
                let padded = screen.groups * 4;
                let mut bytes = vec![128u8; n * padded];
                let rounded: Vec<_> = x.chunks_exact(dim).zip(bytes.chunks_exact_mut(padded)).map(|(v, b)| match round_vector(v, &mut b[..dim]) {
                        Rounded::Bytes { s, xh, ex } => (s, xh, ex),
                        other => panic!("{other:?}"),
                    })
                    .collect();
                let (mut fast, mut portable) = (vec![0i32; n * screen.width], vec![0i32; n * screen.width]);
                screen.sums(&bytes, n, &mut fast, true);
                screen.sums(&bytes, n, &mut portable, false);
                assert_eq!(fast, portable, "dim {dim}");
                let mut lower = vec![0f32; nrows];
                for (i, &sxe) in rounded.iter().enumerate() {
                    let sums = &fast[i * screen.width..][..nrows];
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    screen.candidates(sums, &bias, sxe, &mut lower, &mut a, true);
                    let simd = lower.clone();
                    screen.candidates(sums, &bias, sxe, &mut lower, &mut b, false);
                    assert_eq!(a, b, "dim {dim}, vector {i}");
                    assert_eq!(simd, lower, "dim {dim}, vector {i}: the same intervals, bit for bit");
                    assert!(!a.is_empty());
                }
            }
        }
    }

    #[test]
    fn out_of_range_rows_are_not_screened_and_vectors_are_scored_in_full() {
        let dim = 8;
        let mut rows = vec![1.0f32; 4 * dim];
        rows[5] = 1e20;
        assert!(ByteScreen::build(&rows, &[0.0; 4], dim).is_none());
        assert!(ByteScreen::build(&vec![1.0; 2 * (MAX_DIM + 1)], &[0.0; 2], MAX_DIM + 1).is_none());
        // A vector beyond RANGE but f32-safe: every row scored, the same
        // answer; beyond the f32-safe range: BEYOND_F32.
        let mut rng = Rng::new(3);
        let rows = values(40 * dim, &mut rng, 1.0);
        let bias = super::super::groups::row_bias(&rows, dim, PqMetric::L2);
        let screen = ByteScreen::build(&rows, &bias, dim).unwrap();
        let mut x = values(3 * dim, &mut rng, 1.0);
        x[..dim].iter_mut().for_each(|v| *v *= 1e13);
        x[2 * dim] = 1e30;
        let mut got = [0u32; 3];
        screen.nearest(&rows, &bias, &x, &mut got, &mut Scratch::default(), ByteScreen::available());
        assert_eq!(got[0], every_row(&rows, &bias, dim, &x[..dim]));
        assert_eq!(got[1], every_row(&rows, &bias, dim, &x[dim..2 * dim]));
        assert_eq!(got[2], BEYOND_F32);
    }
}
