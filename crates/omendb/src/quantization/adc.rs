//! Asymmetric distance computation: per-query look-up tables, the code scan,
//! and the bounded top-k heap.

use super::codebooks::Codebooks;
use super::simd;
use super::PqMetric;

/// Entries per byte table: one per possible code byte.
const BYTE_VALUES: usize = 256;

/// The ADC look-up table of one query.
///
/// Internally one 256-entry table per *code byte*: at 8 bits that is the
/// sub-space table itself; at 4 bits, byte `b` holds both sub-spaces `2b`
/// (low nibble) and `2b + 1` (high nibble), pre-added, so a 4-bit scan does
/// `m / 2` look-ups per code instead of `m`.
///
/// Entries and every sum of them are finite. Tables whose f32 computation
/// over- or underflowed are recomputed in f64 and scaled by `2^scale_exp`
/// (a power of two: the order of distances is kept); [`QueryTable::distance`]
/// and the scans then give distances in these scaled units, which
/// [`QueryTable::unscale`] converts back (saturated at f32::MAX).
#[derive(Clone, Debug)]
pub struct QueryTable {
    code_size: usize,
    /// `code_size x 256`. With 4-bit codes built on first use by a path
    /// that needs it (the gather scan without the fast-scan filter,
    /// `distance`, `scan_distances`): 16 KiB per 16 code bytes, far more
    /// than an IVF list's scan, which needs only `nibbles`.
    lut: std::sync::OnceLock<Vec<f32>>,
    /// 4-bit codes: the `m x 16` sub-space tables (empty at 8 bits); a code
    /// byte's entry is the same sum the byte table would hold.
    nibbles: Vec<f32>,
    /// The u8-quantized filter of the fast scan, where the CPU has one.
    fast: Option<FastTables>,
    /// Table entries are distances times `2^scale_exp` (0 for ordinary data).
    scale_exp: i32,
    /// Scratch of `refill`: each sub-space's smallest and largest entry.
    mins: Vec<f32>,
    maxs: Vec<f32>,
}

/// Bounds on the sum over sub-spaces of each table's largest magnitude
/// (which bounds every code's distance and every partial sum of the scan):
/// at most `TABLE_MAX` nothing overflows; at least `TABLE_MIN` the large
/// entries are normal floats. Tables outside are computed in f64 and scaled.
const TABLE_MAX: f32 = f32::MAX / 4.0;
const TABLE_MIN: f32 = 1.0 / (1u64 << 60) as f32;
/// A scaled table's bound lands in `[2^62, 2^63)`.
const SCALED_BOUND_EXP: i32 = 62;

/// Quantized per-sub-space tables for the fast scan (faiss-style in-register
/// look-ups: `pshufb` for 4-bit codes, `vpermi2b` for 8-bit), used only as a
/// *filter*: for every code,
/// `bias + delta * sum_j q_j[v_j]` is a lower bound of its float distance (up
/// to rounding, covered by `margin`), so a code whose bound exceeds the heap
/// threshold can be skipped; every other code gets its exact float distance.
/// The scan's result is therefore identical with and without the filter.
#[derive(Clone, Debug)]
struct FastTables {
    /// `m x k`: `q_j[v] = floor((t_j[v] - min_j) / delta)`, at most
    /// `levels(m, bits)`.
    q: Vec<u8>,
    /// `m`: look-ups per code (sub-spaces).
    lookups: usize,
    /// The AVX-512 kernel (64 codes a block) where this CPU runs it; else
    /// the AVX2 one (16 codes a block, 4-bit codes only) is used.
    wide: Option<simd::Fast64>,
    /// The AVX2 16-code kernel runs on this CPU (4-bit codes).
    narrow: bool,
    /// `sum_j min_j`.
    bias: f32,
    /// `max_j (max t_j - min_j) / levels(m, bits)`, > 0.
    delta: f32,
    /// Slack for float rounding in the bound and in the exact sums.
    margin: f32,
}

/// The largest quantized entry of a filter of `m` look-ups of `bits`-bit
/// codes: `simd::table_entry_max(bits)` (255, or 63 for 4-bit), or fewer where `m`
/// entries that large would overflow the kernels' u16 sums (`m > 257`: 127
/// at 512 sub-spaces, which had no filter at all before, every code of such
/// a table scored exactly through 256-entry byte tables); 0 past
/// `u16::MAX` look-ups (no filter).
fn levels(m: usize, bits: u32) -> usize {
    (u16::MAX as usize / m.max(1)).min(simd::table_entry_max(bits))
}

impl FastTables {
    /// `t` is `m x k` float tables (`k = 2^bits`), `cs` the code size. None when
    /// this CPU has no kernel for these codes or the filter cannot work (all
    /// tables flat, or sums that could overflow u16).
    fn new(t: &[f32], m: usize, bits: u32, cs: usize) -> Option<FastTables> {
        let k = 1usize << bits;
        let mut mins = vec![0.0f32; m];
        let mut maxs = vec![0.0f32; m];
        simd::table_min_max(t, k, &mut mins, &mut maxs);
        FastTables::with_bounds(t, m, bits, cs, &mins, Spans::of(&mins, &maxs))
    }

    /// `new` with each sub-space's minimum and the spans already known.
    fn with_bounds(t: &[f32], m: usize, bits: u32, cs: usize, mins: &[f32], spans: Spans) -> Option<FastTables> {
        let k = 1usize << bits;
        let wide = simd::fast64(bits);
        let narrow = bits == 4 && simd::fastscan_available();
        if levels(m, bits) == 0 || !cs.is_multiple_of(16) || !(wide.is_some() || narrow) {
            return None;
        }
        let mut fast = FastTables { q: vec![0u8; m * k], lookups: m, wide, narrow, bias: 0.0, delta: 0.0, margin: 0.0 };
        fast.requantize(t, k, mins, spans).then_some(fast)
    }

    /// Quantizes new tables `t` (same shape) into this filter, given each
    /// sub-space's minimum and the spans; false when they are flat or not
    /// finite (no filter then).
    fn requantize(&mut self, t: &[f32], k: usize, mins: &[f32], spans: Spans) -> bool {
        let m = mins.len();
        let Spans { widest: range, sum_min: bias, sum_abs: abs } = spans;
        let delta = range / levels(m, k.trailing_zeros()) as f32;
        if !(delta > 0.0 && delta.is_finite() && bias.is_finite() && abs.is_finite()) {
            return false;
        }
        simd::quantize_tables(t, k, mins, 1.0 / delta, &mut self.q);
        // One quantum for a quotient rounded up to the next integer before the
        // floor, plus a bound on f32 rounding in the sums of m terms (each
        // addition errs by at most eps of the magnitude reached, <= `abs`).
        (self.bias, self.delta) = (bias, delta);
        self.margin = delta + 2.0 * m as f32 * f32::EPSILON * abs;
        true
    }

    /// A code's quantized sum, one look-up a sub-space (the kernels' sum).
    fn sum(&self, code: &[u8]) -> u16 {
        let k = self.q.len() / self.lookups;
        let sum: u32 = if k == 256 {
            code.iter().enumerate().map(|(j, &b)| self.q[j * 256 + b as usize] as u32).sum()
        } else {
            code.iter()
                .enumerate()
                .map(|(j, &b)| self.q[2 * j * 16 + (b & 15) as usize] as u32 + self.q[(2 * j + 1) * 16 + (b >> 4) as usize] as u32)
                .sum()
        };
        sum as u16
    }

    /// Largest quantized sum that may still beat `thr`; `None` = nothing can be skipped.
    fn qthreshold(&self, thr: f32) -> Option<u16> {
        let x = (thr as f64 + self.margin as f64 - self.bias as f64) / self.delta as f64;
        if x.is_nan() || x >= u16::MAX as f64 {
            return None; // +inf threshold (heap not full) or beyond any sum
        }
        // x < 0 would allow skipping everything; clamping to 0 keeps the
        // test simple and only lets sums of exactly 0 through (harmless).
        // (The cast truncates: the floor of a value in [0, 2^16).)
        Some(x.max(0.0) as u16)
    }
}

/// Over a table's sub-spaces: the widest range of entries, the sum of the
/// minimums and the sum of the largest magnitudes (the bound on any sum of
/// one entry per sub-space).
#[derive(Clone, Copy)]
struct Spans {
    widest: f32,
    sum_min: f32,
    sum_abs: f32,
}

impl Spans {
    /// Summed in eight lanes, then across them (one chain of dependent
    /// adds per sum, 192 long at m = 192, was a sixth of making an IVF
    /// list's table; the order changes the sums by rounding only). The
    /// lanes in one AVX2 register where the CPU has it: the same
    /// operations in the same order, the same results.
    fn of(mins: &[f32], maxs: &[f32]) -> Spans {
        let whole = mins.len() / simd::SPAN_LANES * simd::SPAN_LANES;
        let [widest, sum_min, sum_abs] = simd::span_lanes(&mins[..whole], &maxs[..whole]);
        let mut spans = Spans {
            widest: widest.iter().fold(0f32, |a, &b| simd::larger(b, a)),
            sum_min: sum_min.iter().sum(),
            sum_abs: sum_abs.iter().sum(),
        };
        for (&lo, &hi) in mins[whole..].iter().zip(&maxs[whole..]) {
            [spans.widest, spans.sum_min, spans.sum_abs] = super::kernels::span_step([spans.widest, spans.sum_min, spans.sum_abs], lo, hi);
        }
        spans
    }
}

/// A code's distance estimated from its quantized sum `s`: each of the
/// `lookups` quantized entries is its float entry's floor, on average half a
/// quantum below it, so `bias + delta * (s + lookups / 2)` (its error has a
/// standard deviation of about `delta * sqrt(lookups / 12)`).
struct Estimates {
    bias: f32,
    delta: f32,
    half: f32,
}

impl Estimates {
    /// Estimates `shift` more than the table's distances.
    fn new(fast: &FastTables, shift: f32) -> Estimates {
        Estimates { bias: fast.bias + shift, delta: fast.delta, half: 0.5 * fast.lookups as f32 }
    }

    #[inline]
    fn of(&self, sum: u16) -> f32 {
        self.bias + self.delta * (sum as f32 + self.half)
    }

    /// The largest sum whose estimate does not exceed `thr` (u16::MAX:
    /// any; 0 where none: the caller's check of the estimate refuses it).
    #[inline]
    fn max_sum(&self, thr: f32) -> u16 {
        // The cast truncates, the floor of a value in [0, 2^16 - 1): no
        // `floor()`, which the baseline x86-64 build calls in libm (2% of
        // a 1M x 768 batch, perf).
        let x = (thr - self.bias) / self.delta - self.half;
        if x.is_nan() || x >= u16::MAX as f32 {
            return u16::MAX;
        }
        let sum = x.max(0.0) as u16;
        // The quotient of a threshold that is itself an estimate can round
        // just below its sum: that sum's codes tie with the heap's worst,
        // and the heap takes a tie at a lower position, so the filter
        // must pass them.
        if sum < u16::MAX && self.of(sum + 1) <= thr {
            sum + 1
        } else {
            sum
        }
    }
}

/// [`scan_own_bitmap`] that ranks codes by their distances *estimated* from
/// the fast-scan filter's quantized sums (see `Estimates`) instead of exact
/// float ADC: for candidates that an exact re-rank will score anew, where
/// the estimate's error (far below the ADC's own) does not matter and the
/// exact sums of every passing code cost as much as the filter. Tables
/// without a fast-scan filter are scanned exactly.
#[cfg(test)]
pub(crate) fn scan_estimated(table: &QueryTable, codes: &[u8], first_position: u64, own_live: Option<&[u64]>, top: &mut TopK) {
    let cs = table.code_size;
    assert!(codes.len().is_multiple_of(cs), "PQ scan: codes length not a multiple of code_size");
    let Some(fast) = table.fast.as_ref().filter(|_| top.k > 0) else {
        scan_own_bitmap(table, codes, first_position, own_live, top);
        return;
    };
    let live = own_live.map(|words| Live { words, first: first_position });
    let est = Estimates::new(fast, 0.0);
    let mut max_sum = est.max_sum(top.threshold());
    let offer = |sum: u16, position: u64, top: &mut TopK, max_sum: &mut u16| {
        let d = est.of(sum);
        if d <= top.threshold() {
            top.push(d, position);
            *max_sum = est.max_sum(top.threshold());
        }
    };
    let mut pos = first_position;
    let mut rest = codes;
    if let Some(kernel) = fast.wide {
        let mut sums = simd::Sums64::new();
        let mut blocks = rest.chunks_exact(64 * cs);
        for block in &mut blocks {
            let live_mask = live.map_or(u64::MAX, |l| bits_at(l, pos, 64));
            if live_mask != 0 {
                let mut pass = live_mask & simd::fastscan_sums64(kernel, &fast.q, block, cs, max_sum, &mut sums);
                while pass != 0 {
                    let i = pass.trailing_zeros() as usize;
                    pass &= pass - 1;
                    offer(sums.get(i), pos + i as u64, top, &mut max_sum);
                }
            }
            pos += 64;
        }
        rest = blocks.remainder();
    }
    if fast.narrow {
        let mut blocks = rest.chunks_exact(16 * cs);
        for block in &mut blocks {
            let live_mask = live.map_or(0xFFFF, |l| bits_at(l, pos, 16));
            if live_mask != 0 {
                let mut sums = [0u16; 16];
                simd::fastscan_block16(&fast.q, block, cs, &mut sums);
                for (i, &s) in sums.iter().enumerate() {
                    if live_mask >> i & 1 != 0 && s <= max_sum {
                        offer(s, pos + i as u64, top, &mut max_sum);
                    }
                }
            }
            pos += 16;
        }
        rest = blocks.remainder();
    }
    for code in rest.chunks_exact(cs) {
        if live.is_none_or(|l| bits_at(l, pos, 1) != 0) {
            offer(fast.sum(code), pos, top, &mut max_sum);
        }
        pos += 1;
    }
}

/// Stage two of a two-stage scan: ranks `positions.len()` whole codes,
/// gathered row-major into `codes`, offering code `i` to `top` at
/// `positions[i]` with its distance `shifts[i]` more than the table's
/// (each code's list constant; empty: none): estimated from the fast-scan
/// sums when `estimated` (as [`scan_planar`] ranks them; exactly where
/// the table has no filter), else exact ADC distances.
pub fn rank_gathered(table: &QueryTable, codes: &[u8], positions: &[u64], shifts: &[f32], estimated: bool, top: &mut TopK) {
    let cs = table.code_size;
    assert_eq!(codes.len(), positions.len() * cs, "PQ rank_gathered: a code a position");
    assert!(shifts.is_empty() || shifts.len() == positions.len(), "PQ rank_gathered: a shift a code, or none");
    if top.k == 0 {
        return;
    }
    let shift = |i: usize| shifts.get(i).copied().unwrap_or(0.0);
    let fast = table.fast.as_ref().filter(|_| estimated);
    let Some(fast) = fast else {
        for (i, code) in codes.chunks_exact(cs).enumerate() {
            let d = table.exact(code) + shift(i);
            if d <= top.threshold() {
                top.push(d, positions[i]);
            }
        }
        return;
    };
    let offer = |top: &mut TopK, sum: u16, i: usize| {
        // As `scan_planar` estimates a code of a list shifted so.
        let d = Estimates::new(fast, shift(i)).of(sum);
        if d <= top.threshold() {
            top.push(d, positions[i]);
        }
    };
    let mut done = 0;
    if let Some(kernel) = fast.wide {
        let mut sums = simd::Sums64::new();
        // Without per-code shifts one estimate serves every code: the
        // kernel skips those the heap would refuse (most of a two-stage
        // search's, once its heap is full), as the planar scan's does.
        let unshifted = shifts.is_empty().then(|| Estimates::new(fast, 0.0));
        for block in codes.chunks_exact(64 * cs) {
            let qthr = unshifted.as_ref().map_or(u16::MAX, |est| est.max_sum(top.threshold()));
            let mut pass = simd::fastscan_sums64(kernel, &fast.q, block, cs, qthr, &mut sums);
            while pass != 0 {
                let i = pass.trailing_zeros() as usize;
                pass &= pass - 1;
                offer(top, sums.get(i), done + i);
            }
            done += 64;
        }
    }
    if fast.narrow {
        for block in codes[done * cs..].chunks_exact(16 * cs) {
            let mut sums = [0u16; 16];
            simd::fastscan_block16(&fast.q, block, cs, &mut sums);
            for (i, &s) in sums.iter().enumerate() {
                offer(top, s, done + i);
            }
            done += 16;
        }
    }
    for (i, code) in codes[done * cs..].chunks_exact(cs).enumerate() {
        offer(top, fast.sum(code), done + i);
    }
}

/// [`scan_own_bitmap`] over `n` codes in byte-planar blocks (see
/// `planar`): the same candidates and distances, read by the fast-scan
/// kernel without transposing. With `estimated` (for candidates that an
/// exact re-rank scores anew), codes are ranked by distances estimated
/// from the kernel's quantized sums instead (`Estimates`; tables without
/// a fast-scan filter are scanned exactly). Code `i` has position
/// `first_position + i`; `own_live` as for `scan_own_bitmap`. Every
/// distance offered to `top` is `shift` more than the table's (a constant
/// that a caller keeps out of the table, such as an inner-product IVF
/// list's centroid term: one table then serves every list; see
/// [`QueryTable::shiftable`]).
#[allow(clippy::too_many_arguments)]
pub fn scan_planar(
    table: &QueryTable,
    blocks: &[u8],
    n: usize,
    first_position: u64,
    own_live: Option<&[u64]>,
    estimated: bool,
    shift: f32,
    top: &mut TopK,
) {
    let cs = table.code_size;
    assert_eq!(blocks.len(), super::planar::blocks_len(n, cs), "PQ scan: planar blocks of n codes");
    if top.k == 0 {
        return;
    }
    let live = own_live.map(|words| Live { words, first: first_position });
    let fast = table.fast.as_ref();
    let kernel = fast.and_then(|f| f.wide.map(simd::PlanarKernel::Avx512).or(f.narrow.then_some(simd::PlanarKernel::Avx2)));
    let (Some(fast), Some(kernel)) = (fast, kernel) else {
        // No kernel: every live code scored exactly, a block's 64 codes at
        // a time from the byte tables.
        let lut = table.lut();
        let mut distances = [0f32; super::planar::BLOCK];
        let mut thr = top.threshold();
        for (b, block) in blocks.chunks_exact(super::planar::BLOCK * cs).enumerate() {
            let pos = first_position + (b * super::planar::BLOCK) as u64;
            let count = (n - b * super::planar::BLOCK).min(super::planar::BLOCK);
            let lanes = if count == 64 { u64::MAX } else { (1u64 << count) - 1 };
            let mut live_mask = live.map_or(lanes, |l| bits_at(l, pos, count));
            if live_mask == 0 {
                continue;
            }
            planar_block_distances(lut, block, cs, &mut distances);
            while live_mask != 0 {
                let i = live_mask.trailing_zeros() as usize;
                live_mask &= live_mask - 1;
                let d = distances[i] + shift;
                if d <= thr {
                    top.push(d, pos + i as u64);
                    thr = top.threshold();
                }
            }
        }
        return;
    };
    let codes = PlanarCodes { blocks, n, first_position, own_live, estimated };
    planar_pass::<1>([table], [fast], [shift], codes, &mut [top], |block, ahead, qthr, sums| {
        [simd::fastscan_planar64(kernel, &fast.q, block, ahead, cs, qthr[0], &mut sums[0])]
    });
}

/// [`scan_planar`] of several tables over the same blocks: `tops[i]`
/// receives what `scan_planar(tables[i], .., shifts[i], tops[i])` would give. Up to
/// [`SCAN_GROUP`] tables with the same kernel (AVX-512, or AVX2 for 4-bit
/// codes) go through one pass, each code row loaded and split into nibbles
/// once for all of them.
#[allow(clippy::too_many_arguments)]
pub fn scan_planar_many(
    tables: &[&QueryTable],
    blocks: &[u8],
    n: usize,
    first_position: u64,
    own_live: Option<&[u64]>,
    estimated: bool,
    shifts: &[f32],
    tops: &mut [&mut TopK],
) {
    assert!(tables.len() == tops.len() && tables.len() == shifts.len(), "PQ scan_planar_many: one TopK and one shift per table");
    let Some(kernel) = shared_planar_kernel(tables, tops.iter().map(|t| t.k)) else {
        for ((table, top), &shift) in tables.iter().zip(tops.iter_mut()).zip(shifts) {
            scan_planar(table, blocks, n, first_position, own_live, estimated, shift, top);
        }
        return;
    };
    let cs = tables[0].code_size;
    assert_eq!(blocks.len(), super::planar::blocks_len(n, cs), "PQ scan: planar blocks of n codes");
    fn group<const Q: usize>(kernel: simd::PlanarKernel, ts: &[&QueryTable], shifts: &[f32], codes: PlanarCodes<'_>, tops: &mut [&mut TopK]) {
        let ts: [&QueryTable; Q] = std::array::from_fn(|q| ts[q]);
        let shifts: [f32; Q] = std::array::from_fn(|q| shifts[q]);
        let fasts = std::array::from_fn(|q| ts[q].fast.as_ref().expect("checked by scan_planar_many"));
        let qts: [&[u8]; Q] = std::array::from_fn(|q| &fasts[q].q[..]);
        let cs = ts[0].code_size;
        planar_pass::<Q>(ts, fasts, shifts, codes, tops, |block, ahead, qthr, sums| {
            simd::fastscan_planar64_multi::<Q>(kernel, qts, block, ahead, cs, qthr, sums)
        });
    }
    let codes = PlanarCodes { blocks, n, first_position, own_live, estimated };
    for ((ts, tops), shifts) in tables.chunks(SCAN_GROUP).zip(tops.chunks_mut(SCAN_GROUP)).zip(shifts.chunks(SCAN_GROUP)) {
        match ts.len() {
            4 => group::<4>(kernel, ts, shifts, codes, tops),
            3 => group::<3>(kernel, ts, shifts, codes, tops),
            2 => group::<2>(kernel, ts, shifts, codes, tops),
            _ => group::<1>(kernel, ts, shifts, codes, tops),
        }
    }
}

/// The codes a planar scan reads: `n` codes in `blocks`, code `i` at
/// position `first_position + i`, `own_live` as for `scan_own_bitmap`,
/// ranked by estimates when `estimated`.
#[derive(Clone, Copy)]
struct PlanarCodes<'a> {
    blocks: &'a [u8],
    n: usize,
    first_position: u64,
    own_live: Option<&'a [u64]>,
    estimated: bool,
}

/// The planar kernel every table's filter uses (AVX-512 where they all
/// have it, else AVX2), when they share one (same code size too) and every
/// heap keeps something: what one planar pass for several tables needs.
fn shared_planar_kernel(tables: &[&QueryTable], mut ks: impl Iterator<Item = usize> + Clone) -> Option<simd::PlanarKernel> {
    if let Some(wide) = shared_wide_kernel(tables, ks.clone()) {
        return Some(simd::PlanarKernel::Avx512(wide));
    }
    let narrow = tables.iter().all(|t| t.code_size == tables[0].code_size && t.fast.as_ref().is_some_and(|f| f.narrow));
    (!tables.is_empty() && narrow && ks.all(|k| k > 0)).then_some(simd::PlanarKernel::Avx2)
}

/// The AVX-512 kernel every table's filter uses, when they share one (same
/// code size too) and every heap keeps something: what one pass for
/// several tables needs.
fn shared_wide_kernel(tables: &[&QueryTable], ks: impl IntoIterator<Item = usize>) -> Option<simd::Fast64> {
    let kernel = tables.first().and_then(|t| t.fast.as_ref()?.wide)?;
    let same = tables.iter().all(|t| t.code_size == tables[0].code_size && t.fast.as_ref().and_then(|f| f.wide) == Some(kernel));
    (same && ks.into_iter().all(|k| k > 0)).then_some(kernel)
}

/// How far ahead of the block it scans a scan asks for the codes
/// (`SCAN_AHEAD` bytes on). The hardware prefetcher alone left a 1M x 768
/// IVF search (PQ192x4, 96 KiB a list, lists beyond the cache) waiting on
/// memory. A planar scan's kernel asks for one line ahead for each line it
/// reads (`simd::fastscan_planar64`): on an AMD EPYC (Zen 5), one thread,
/// target 0.95, 4 KiB ahead answered 963-991 queries/s, 8 KiB 931-973,
/// 12 KiB 868-934, 2 KiB 844-875 (a harness, alternating builds; those
/// builds also asked past a list's end, which made no measurable
/// difference; the gain over asking for a block at a time is measured at
/// `simd::prefetch_ahead_line`). An IVF search loads the first
/// `SCAN_AHEAD` bytes of the next list itself. The flat scan of row-major
/// codes (`scan_wide`) asks for a block each step: 1.3x queries/s on a
/// 1M x 768 PQ96x8 store (96 MB of codes a query) against none.
pub(crate) const SCAN_AHEAD: usize = 4096;

/// The `len` bytes of `codes` that lie `SCAN_AHEAD` past `at` (the block
/// a scan is at), those in `codes` only: what the scan asks for next.
#[inline]
fn ahead_of(codes: &[u8], at: usize, len: usize) -> &[u8] {
    let start = (at + SCAN_AHEAD).min(codes.len());
    &codes[start..(start + len).min(codes.len())]
}

/// The fast-scan pass of [`scan_planar`] for `Q` tables at once: per block,
/// each table's kernel threshold from its heap, one `run` of the kernel
/// (pass masks and quantized sums), then each table's passing codes
/// offered to its heap (estimated from the sums, or scored exactly).
fn planar_pass<const Q: usize>(
    tables: [&QueryTable; Q],
    fasts: [&FastTables; Q],
    shifts: [f32; Q],
    codes: PlanarCodes<'_>,
    tops: &mut [&mut TopK],
    mut run: impl FnMut(&[u8], &[u8], [u16; Q], &mut [simd::Sums64; Q]) -> [u64; Q],
) {
    let PlanarCodes { blocks, n, first_position, own_live, estimated } = codes;
    let cs = tables[0].code_size;
    let live = own_live.map(|words| Live { words, first: first_position });
    let est: [Estimates; Q] = std::array::from_fn(|q| Estimates::new(fasts[q], shifts[q]));
    let mut exact: [Candidates<'_>; Q] = std::array::from_fn(|q| Candidates::shifted(tables[q], fasts[q], tops[q], shifts[q]));
    let mut sums: [simd::Sums64; Q] = std::array::from_fn(|_| simd::Sums64::new());
    // A code's bytes, for exact scoring only (an estimated scan, the one
    // a re-rank follows, allocates nothing a list).
    let mut code = if estimated { Vec::new() } else { vec![0u8; cs] };
    // Each heap's threshold and its largest passing sum, remade only when
    // the threshold moves (a reservoir's, at its cuts alone).
    let mut bounds: [Option<(u32, u16)>; Q] = [None; Q];
    let block_len = super::planar::BLOCK * cs;
    for (b, block) in blocks.chunks_exact(block_len).enumerate() {
        let ahead = ahead_of(blocks, b * block_len, block_len);
        let pos = first_position + (b * super::planar::BLOCK) as u64;
        let count = (n - b * super::planar::BLOCK).min(super::planar::BLOCK);
        let lanes = if count == 64 { u64::MAX } else { (1u64 << count) - 1 };
        let live_mask = live.map_or(lanes, |l| bits_at(l, pos, count));
        if live_mask == 0 {
            continue;
        }
        let qthr = std::array::from_fn(|q| {
            if !estimated {
                return exact[q].kernel_threshold();
            }
            let thr = tops[q].threshold();
            match bounds[q] {
                Some((bits, sum)) if bits == thr.to_bits() => sum,
                _ => {
                    let sum = est[q].max_sum(thr);
                    bounds[q] = Some((thr.to_bits(), sum));
                    sum
                }
            }
        });
        let passes = run(block, ahead, qthr, &mut sums);
        for q in 0..Q {
            let mut pass = live_mask & passes[q];
            if estimated {
                tops[q].push_estimates(pass, &sums[q], &est[q], pos);
                continue;
            }
            while pass != 0 {
                let i = pass.trailing_zeros() as usize;
                pass &= pass - 1;
                super::planar::get(block, i, &mut code);
                exact[q].offer(&code, pos + i as u64, tops[q]);
            }
        }
    }
}

impl QueryTable {
    pub(crate) fn new(cb: &Codebooks, query: &[f32], metric: PqMetric) -> QueryTable {
        QueryTable::with_bias(cb, query, metric, 0.0)
    }

    /// A table whose every distance is `bias` more (added to the first
    /// sub-space's entries): an IVF list's constant term.
    pub(crate) fn with_bias(cb: &Codebooks, query: &[f32], metric: PqMetric, bias: f32) -> QueryTable {
        let cfg = cb.config;
        assert_eq!(query.len(), cfg.dim, "PQ query_table: query length must be dim");
        let k = cfg.ksub();
        let l2 = metric == PqMetric::L2;
        // One k-entry table per sub-space.
        let mut t = cb.subspace_tables(query, metric);
        t[..k].iter_mut().for_each(|e| *e += bias);
        // (The range check table by table, one call each, was a fifth of a
        // query's time at 512 sub-spaces on 826 vectors.)
        if let Some(fast) = filter_if_in_range(&t, cfg) {
            return QueryTable::from_parts(cfg, t, 0, fast);
        }
        let scale_exp = careful_tables(cb, query, l2, bias, &mut t);
        let fast = FastTables::new(&t, cfg.m, cfg.bits, cfg.code_size());
        QueryTable::from_parts(cfg, t, scale_exp, fast)
    }

    /// A table from its `m x k` sub-space tables, computed by the caller
    /// (an IVF list's: the query's shared part plus the list's terms);
    /// `None` when they are outside the range the scans can sum exactly
    /// (the caller then builds it with `with_bias`, which rescales).
    pub(crate) fn from_tables(cb: &Codebooks, t: Vec<f32>) -> Option<QueryTable> {
        let cfg = cb.config;
        let (m, k) = (cfg.m, cfg.ksub());
        assert_eq!(t.len(), m * k, "PQ from_tables: m x k entries");
        let fast = filter_if_in_range(&t, cfg)?;
        Some(QueryTable::from_parts(cfg, t, 0, fast))
    }

    /// Makes this table (built by [`QueryTable::from_tables`]) over from
    /// new `m x k` sub-space tables that `fill` writes, reusing its memory:
    /// an IVF search makes one table per probed list. `false` (the table is
    /// then unusable) when they are outside the range the scans sum exactly,
    /// as `from_tables` would return `None`. (Tests; search fills with
    /// `refill_bounded`.)
    #[cfg(test)]
    pub(crate) fn refill(&mut self, m: usize, bits: u32, fill: impl FnOnce(&mut [f32])) -> bool {
        let k = 1usize << bits;
        self.refill_bounded(m, bits, |t, mins, maxs| {
            fill(t);
            simd::table_min_max(t, k, mins, maxs);
        })
    }

    /// `refill` whose `fill` also writes each sub-space's minimum and
    /// maximum of what it wrote (as `simd::table_min_max` would).
    pub(crate) fn refill_bounded(&mut self, m: usize, bits: u32, fill: impl FnOnce(&mut [f32], &mut [f32], &mut [f32])) -> bool {
        let k = 1usize << bits;
        self.scale_exp = 0;
        let t = if bits == 8 {
            // The 8-bit table is its own byte table.
            self.lut.get_mut().expect("an 8-bit table keeps its byte table")
        } else {
            self.lut.take();
            &mut self.nibbles
        };
        assert_eq!(t.len(), m * k, "PQ refill: a table of the same shape");
        let (mut mins, mut maxs) = (std::mem::take(&mut self.mins), std::mem::take(&mut self.maxs));
        mins.resize(m, 0.0);
        maxs.resize(m, 0.0);
        fill(t, &mut mins, &mut maxs);
        let t = if bits == 8 { &self.lut.get().expect("set above")[..] } else { &self.nibbles[..] };
        let spans = Spans::of(&mins, &maxs);
        let ok = bound_in_range(spans.sum_abs);
        if ok {
            let refilled = match &mut self.fast {
                Some(fast) => fast.requantize(t, k, &mins, spans),
                None => false,
            };
            if !refilled {
                self.fast = FastTables::with_bounds(t, m, bits, self.code_size, &mins, spans);
            }
        }
        (self.mins, self.maxs) = (mins, maxs);
        ok
    }

    fn from_parts(cfg: super::PqConfig, t: Vec<f32>, scale_exp: i32, fast: Option<FastTables>) -> QueryTable {
        let cs = cfg.code_size();
        let (lut, nibbles) = if cfg.bits == 8 {
            // One code byte per sub-space: the tables themselves.
            (std::sync::OnceLock::from(t), Vec::new())
        } else {
            let lut = std::sync::OnceLock::new();
            if fast.is_none() {
                let _ = lut.set(byte_tables(&t, cs)); // the gather scan needs it at once
            }
            (lut, t)
        };
        QueryTable { code_size: cs, lut, nibbles, fast, scale_exp, mins: Vec::new(), maxs: Vec::new() }
    }

    /// The table of the first `bytes` bytes of these 4-bit codes (their
    /// first `2 * bytes` sub-spaces, in this table's units), for stage one
    /// of a two-stage search, whose lists hold those bytes alone: with a
    /// fast-scan filter of its own where the CPU has a kernel and the
    /// prefix's entries vary. `None` only for 8-bit codes, or `bytes` not
    /// a multiple of 16 below the code size.
    pub fn prefix(&self, bytes: usize) -> Option<QueryTable> {
        if self.nibbles.is_empty() || bytes == 0 || !bytes.is_multiple_of(16) || bytes >= self.code_size {
            return None;
        }
        let m = 2 * bytes;
        let t = self.nibbles[..m * 16].to_vec();
        // A scaled table's partial sums are bounded as its whole sums are:
        // the prefix keeps its scale.
        let fast = FastTables::new(&t, m, 4, bytes);
        Some(QueryTable::from_parts(super::PqConfig { dim: m, m, bits: 4 }, t, self.scale_exp, fast))
    }

    /// The byte tables (built now if they were not).
    fn lut(&self) -> &[f32] {
        self.lut.get_or_init(|| byte_tables(&self.nibbles, self.code_size))
    }

    /// Exact distance of a code for the fast scan's survivors: from the
    /// nibble tables when the byte tables were not built (same sums).
    #[inline]
    fn exact(&self, code: &[u8]) -> f32 {
        match self.lut.get() {
            Some(lut) => code_distance(lut, code),
            None => code_distance_nibbles(&self.nibbles, code),
        }
    }

    /// Whether a scan may add `shift` to this table's distances (the
    /// `shift` of [`scan_planar`]): an unscaled table's distances are at
    /// most `TABLE_MAX` in magnitude, so adding a finite shift of at most
    /// as much cannot overflow.
    pub(crate) fn shiftable(&self, shift: f32) -> bool {
        self.scale_exp == 0 && shift.is_finite() && shift.abs() <= TABLE_MAX
    }

    /// A distance from [`QueryTable::distance`] or a scan with this table,
    /// in the metric's units: finite, saturated at +-f32::MAX.
    #[inline]
    pub fn unscale(&self, distance: f32) -> f32 {
        if self.scale_exp == 0 {
            distance
        } else {
            crate::search::distance::saturate(distance as f64 * 2f64.powi(-self.scale_exp))
        }
    }

    /// Bytes per code this table expects.
    pub fn code_size(&self) -> usize {
        self.code_size
    }

    /// Approximate distance of one code; bit-identical to what [`scan`]
    /// computes (in the table's units: see [`QueryTable::unscale`]).
    #[inline]
    pub fn distance(&self, code: &[u8]) -> f32 {
        assert_eq!(code.len(), self.code_size, "PQ distance: code length");
        code_distance(self.lut(), code)
    }

    /// Heap bytes owned by the table.
    pub fn heap_bytes(&self) -> usize {
        (self.lut.get().map_or(0, Vec::capacity) + self.nibbles.capacity()) * std::mem::size_of::<f32>()
            + self.fast.as_ref().map_or(0, |f| f.q.capacity())
    }

    /// Whether [`scan`] uses the fast-scan filter with this table: code size a
    /// multiple of 16 and a CPU with the kernel (AVX-512BW + VBMI for 8-bit
    /// codes; AVX2 or AVX-512BW for 4-bit). Results are the same either way.
    pub fn uses_fast_scan(&self) -> bool {
        self.fast.is_some()
    }

    /// The same table without the fast-scan filter (for comparisons and tests).
    pub fn without_fast_scan(&self) -> QueryTable {
        let lut = std::sync::OnceLock::from(self.lut().to_vec());
        QueryTable { code_size: self.code_size, lut, nibbles: self.nibbles.clone(), fast: None, scale_exp: self.scale_exp, mins: Vec::new(), maxs: Vec::new() }
    }
}

/// For the `m x k` tables `t`: `None` when they are out of range (see
/// `bound_in_range`), else their fast-scan filter (`None` inside where
/// there is none), from one pass over them for both.
fn filter_if_in_range(t: &[f32], cfg: super::PqConfig) -> Option<Option<FastTables>> {
    let (mut mins, mut maxs) = (vec![0.0f32; cfg.m], vec![0.0f32; cfg.m]);
    simd::table_min_max(t, cfg.ksub(), &mut mins, &mut maxs);
    let spans = Spans::of(&mins, &maxs);
    bound_in_range(spans.sum_abs).then(|| FastTables::with_bounds(t, cfg.m, cfg.bits, cfg.code_size(), &mins, spans))
}

/// Whether every sum of one entry per sub-space of a table is a finite f32
/// far from overflow, with normal large entries (see TABLE_MAX), from the
/// sum over sub-spaces of each one's largest magnitude (`Spans::sum_abs`).
fn bound_in_range(bound: f32) -> bool {
    (TABLE_MIN..=TABLE_MAX).contains(&bound) && bound.is_finite()
}

/// Recomputes the `m` sub-space tables `t` (`m x k`) of `query` in f64, where
/// no f32 input over- or underflows, and stores them times `2^e` with `e`
/// chosen so that the sum over sub-spaces of the largest magnitudes is in
/// `[2^62, 2^63)`: every entry and every sum of one entry per sub-space is a
/// finite f32. Returns `e` (0 when every entry is zero).
#[cold]
fn careful_tables(cb: &Codebooks, query: &[f32], l2: bool, bias: f32, t: &mut [f32]) -> i32 {
    let cfg = cb.config;
    let (k, dsub) = (cfg.ksub(), cfg.dsub());
    let mut wide = vec![0.0f64; t.len()];
    for (j, tj) in wide.chunks_exact_mut(k).enumerate() {
        let q = &query[j * dsub..(j + 1) * dsub];
        for (c, e) in tj.iter_mut().enumerate() {
            let row = &cb.centroids[(j * k + c) * dsub..(j * k + c + 1) * dsub];
            *e = if l2 { crate::search::distance::l2_squared_f64(q, row) } else { -crate::search::distance::dot_f64(q, row) };
            if j == 0 {
                *e += bias as f64;
            }
        }
    }
    let bound: f64 = wide.chunks_exact(k).map(|tj| tj.iter().fold(0.0f64, |m, v| m.max(v.abs()))).sum();
    let exp = if bound > 0.0 { SCALED_BOUND_EXP - bound.log2().floor() as i32 } else { 0 };
    let scale = 2f64.powi(exp);
    for (o, &w) in t.iter_mut().zip(&wide) {
        *o = (w * scale) as f32;
    }
    exp
}

/// The 4-bit byte tables from the `m x 16` sub-space tables: byte `b`'s
/// entry for value `v` is `t[2b][v & 15] + t[2b + 1][v >> 4]`.
fn byte_tables(t: &[f32], cs: usize) -> Vec<f32> {
    const K: usize = 16;
    let mut lut = vec![0.0f32; cs * BYTE_VALUES];
    for b in 0..cs {
        let (lo, hi) = (&t[2 * b * K..(2 * b + 1) * K], &t[(2 * b + 1) * K..(2 * b + 2) * K]);
        // Value v = 16 h + l: row h is `lo` plus `hi[h]`, a vector add (the
        // loop over v indexed both tables, which LLVM kept scalar).
        for (row, &h) in lut[b * BYTE_VALUES..(b + 1) * BYTE_VALUES].chunks_exact_mut(K).zip(hi) {
            for (e, &l) in row.iter_mut().zip(lo) {
                *e = l + h;
            }
        }
    }
    lut
}

/// [`code_distance`] of a 4-bit code from the `m x 16` sub-space tables:
/// each byte's entry is computed as `byte_tables` would store it, then
/// summed in the same order, so the result is bit-identical.
#[inline(always)]
fn code_distance_nibbles(t: &[f32], code: &[u8]) -> f32 {
    let entry = |b: usize, v: u8| t[2 * b * 16 + (v & 15) as usize] + t[(2 * b + 1) * 16 + (v >> 4) as usize];
    let cs = code.len();
    let mut sum = 0.0f32;
    let mut b = 0;
    while b + 8 <= cs {
        let v = |i: usize| entry(b + i, code[b + i]);
        sum += ((v(0) + v(1)) + (v(2) + v(3))) + ((v(4) + v(5)) + (v(6) + v(7)));
        b += 8;
    }
    while b < cs {
        sum += entry(b, code[b]);
        b += 1;
    }
    sum
}

/// [`code_distance`] of each of a planar block's 64 codes (`block`: 64 x
/// `cs` bytes, row `j` holding byte `j` of every code), in its order, so
/// with its bits: the bytes in groups of eight, each group's tree added to
/// the running sum, then the leftover bytes. The 64 sums run side by side
/// (independent additions) instead of one code's bytes gathered at a time:
/// an IVF search without a fast-scan kernel (`OMENDB_SIMD=portable`, a
/// harness, target 0.95) answered 1.15-1.65x the queries/s on the shared
/// real sets and 2.5x at 1M x 768.
fn planar_block_distances(lut: &[f32], block: &[u8], cs: usize, out: &mut [f32; super::planar::BLOCK]) {
    const B: usize = super::planar::BLOCK;
    let (lut, block) = (&lut[..cs * BYTE_VALUES], &block[..cs * B]);
    *out = [0.0; B];
    let mut b = 0;
    while b + 8 <= cs {
        let t: &[f32; 8 * BYTE_VALUES] = lut[b * BYTE_VALUES..(b + 8) * BYTE_VALUES].try_into().unwrap();
        let rows: &[u8; 8 * B] = block[b * B..(b + 8) * B].try_into().unwrap();
        for (c, o) in out.iter_mut().enumerate() {
            let v = |i: usize| t[i * BYTE_VALUES + rows[i * B + c] as usize];
            *o += ((v(0) + v(1)) + (v(2) + v(3))) + ((v(4) + v(5)) + (v(6) + v(7)));
        }
        b += 8;
    }
    while b < cs {
        let t: &[f32; BYTE_VALUES] = lut[b * BYTE_VALUES..(b + 1) * BYTE_VALUES].try_into().unwrap();
        for (o, &v) in out.iter_mut().zip(&block[b * B..(b + 1) * B]) {
            *o += t[v as usize];
        }
        b += 1;
    }
}

/// Distance of one code. Summation order (shared by [`QueryTable::distance`],
/// [`scan`] and [`scan_distances`]): the code bytes in groups of eight, each
/// group summed as a balanced tree `((t0 + t1) + (t2 + t3)) + ((t4 + t5) + (t6 + t7))`
/// and added to the running sum; leftover bytes (when `code_size % 8 != 0`) are
/// then added one by one. The trees are independent of the running sum, so the
/// loop-carried dependency is one add per eight look-ups.
#[inline(always)]
pub(crate) fn code_distance(lut: &[f32], code: &[u8]) -> f32 {
    let cs = code.len();
    let lut = &lut[..cs * BYTE_VALUES];
    let mut sum = 0.0f32;
    let mut b = 0;
    while b + 8 <= cs {
        // Eight code bytes per load; bytes are then taken out with shifts.
        let x = u64::from_le_bytes(code[b..b + 8].try_into().unwrap());
        let t: &[f32; 8 * BYTE_VALUES] = lut[b * BYTE_VALUES..(b + 8) * BYTE_VALUES].try_into().unwrap();
        let v = |i: usize| t[i * BYTE_VALUES + ((x >> (8 * i)) & 0xFF) as usize];
        sum += ((v(0) + v(1)) + (v(2) + v(3))) + ((v(4) + v(5)) + (v(6) + v(7)));
        b += 8;
    }
    while b < cs {
        sum += lut[b * BYTE_VALUES + code[b] as usize];
        b += 1;
    }
    sum
}

/// A bitmap of the positions a scan may return: bit `p - first` of
/// `words[(p - first) / 64]` for position `p` (`first` lets a scan whose
/// positions do not start at 0 use a bitmap of its own codes).
#[derive(Clone, Copy)]
struct Live<'a> {
    words: &'a [u64],
    first: u64,
}

/// Bits `pos..pos + n` (`n <= 64`) of the bitmap as the low bits of a word;
/// positions past the bitmap's end read as clear.
#[inline]
fn bits_at(live: Live<'_>, pos: u64, n: usize) -> u64 {
    let (live, pos) = (live.words, pos - live.first);
    let w = (pos / 64) as usize;
    let off = (pos % 64) as u32;
    let lo = live.get(w).copied().unwrap_or(0) >> off;
    let hi = if off == 0 { 0 } else { live.get(w + 1).copied().unwrap_or(0) << (64 - off) };
    let mask = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    (lo | hi) & mask
}

/// Asymmetric-distance scan over `codes` (`n = codes.len() / code_size` codes,
/// contiguous; code `i` has position `first_position + i`).
///
/// Skips positions whose bit is clear in `live` when `live` is `Some` (bit `p`
/// of `live[p / 64]`; positions past the end of `live` count as clear).
/// Pushes candidates into `top`, which keeps the `k` smallest distances.
/// No allocation. Panics if `codes.len()` is not a multiple of the code size.
pub fn scan(table: &QueryTable, codes: &[u8], first_position: u64, live: Option<&[u64]>, top: &mut TopK) {
    scan_live(table, codes, first_position, live.map(|words| Live { words, first: 0 }), top);
}

/// [`scan`] with a bitmap of these codes only: bit `i` of `own_live`
/// (`own_live[i / 64] >> (i % 64)`) says whether code `i` (position
/// `first_position + i`) may be returned.
pub fn scan_own_bitmap(table: &QueryTable, codes: &[u8], first_position: u64, own_live: Option<&[u64]>, top: &mut TopK) {
    scan_live(table, codes, first_position, own_live.map(|words| Live { words, first: first_position }), top);
}

fn scan_live(table: &QueryTable, codes: &[u8], first_position: u64, live: Option<Live<'_>>, top: &mut TopK) {
    let cs = table.code_size;
    assert!(codes.len().is_multiple_of(cs), "PQ scan: codes length not a multiple of code_size");
    if top.k == 0 {
        return;
    }
    if let Some(fast) = &table.fast {
        scan_fast(table, fast, codes, first_position, live, top);
        return;
    }
    let lut = table.lut();
    // Candidates must beat the heap's threshold; checked here so the common
    // case (rejected) costs one compare. Ties go to `push`, which orders by position.
    let mut thr = top.threshold();
    let mut dist = [0.0f32; 8];
    let mut pos = first_position;
    let mut blocks = codes.chunks_exact(8 * cs);
    for block in &mut blocks {
        let mask = match live {
            Some(l) => bits_at(l, pos, 8),
            None => 0xFF,
        };
        if mask != 0 {
            simd::block8_distances(lut, block, cs, &mut dist);
            for (i, &d) in dist.iter().enumerate() {
                if d <= thr && mask >> i & 1 != 0 {
                    top.push(d, pos + i as u64);
                    thr = top.threshold();
                }
            }
        }
        pos += 8;
    }
    for code in blocks.remainder().chunks_exact(cs) {
        let is_live = live.is_none_or(|l| bits_at(l, pos, 1) != 0);
        if is_live {
            let d = code_distance(lut, code);
            if d <= thr {
                top.push(d, pos);
                thr = top.threshold();
            }
        }
        pos += 1;
    }
}

/// One query's running state in a filtered scan: its heap's threshold, and
/// the quantized threshold the fast-scan kernel compares against (both in
/// the table's units: the heap's less `shift`).
struct Candidates<'a> {
    table: &'a QueryTable,
    fast: &'a FastTables,
    shift: f32,
    thr: f32,
    qthr: Option<u16>,
}

impl<'a> Candidates<'a> {
    fn new(table: &'a QueryTable, fast: &'a FastTables, top: &TopK) -> Candidates<'a> {
        Candidates::shifted(table, fast, top, 0.0)
    }

    /// Offers the heap distances `shift` more than the table's.
    fn shifted(table: &'a QueryTable, fast: &'a FastTables, top: &TopK, shift: f32) -> Candidates<'a> {
        let thr = top.threshold() - shift;
        Candidates { table, fast, shift, thr, qthr: fast.qthreshold(thr) }
    }

    /// The kernel's threshold: every code passes while the heap is not full.
    fn kernel_threshold(&self) -> u16 {
        self.qthr.unwrap_or(u16::MAX)
    }

    /// Exact distance of a code that passed the filter, offered to the heap.
    #[inline]
    fn offer(&mut self, code: &[u8], position: u64, top: &mut TopK) {
        let d = self.table.exact(code);
        if d <= self.thr {
            top.push(d + self.shift, position);
            let t = top.threshold() - self.shift;
            if t != self.thr {
                self.thr = t;
                self.qthr = self.fast.qthreshold(t);
            }
        }
    }

    /// Offers the codes of `block` (at `pos`) whose bits are set in `mask`.
    fn offer_mask(&mut self, mut mask: u64, block: &[u8], cs: usize, pos: u64, top: &mut TopK) {
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            self.offer(&block[i * cs..(i + 1) * cs], pos + i as u64, top);
        }
    }
}

/// [`scan`] with the fast-scan filter: blocks of codes (64 with the AVX-512
/// kernel, 16 with the AVX2 one) get quantized lower bounds from SIMD code;
/// only codes whose bound does not exceed the threshold get their exact distance.
fn scan_fast(table: &QueryTable, fast: &FastTables, codes: &[u8], first_position: u64, live: Option<Live<'_>>, top: &mut TopK) {
    let cs = table.code_size;
    let (mut codes, mut first_position) = (codes, first_position);
    if let Some(kernel) = fast.wide {
        // The 4-bit narrow kernel takes the tail in blocks of 16 (an IVF
        // list's tail is a large share of it); otherwise the wide scan
        // scores its tail code by code.
        if !fast.narrow {
            scan_wide::<1>(kernel, [table], [fast], codes, first_position, live, std::slice::from_mut(top));
            return;
        }
        let wide_len = codes.len() / (64 * cs) * 64 * cs;
        scan_wide::<1>(kernel, [table], [fast], &codes[..wide_len], first_position, live, std::slice::from_mut(top));
        first_position += (wide_len / cs) as u64;
        codes = &codes[wide_len..];
    }
    let mut c = Candidates::new(table, fast, top);
    let mut pos = first_position;
    let mut blocks = codes.chunks_exact(16 * cs);
    for block in &mut blocks {
        let mut cand: u64 = match live {
            Some(l) => bits_at(l, pos, 16),
            None => 0xFFFF,
        };
        if cand != 0 {
            let mut sums = [0u16; 16];
            simd::fastscan_block16(&fast.q, block, cs, &mut sums);
            let q = c.kernel_threshold();
            for (i, &s) in sums.iter().enumerate() {
                cand &= !(((s > q) as u64) << i);
            }
            c.offer_mask(cand, block, cs, pos, top);
        }
        pos += 16;
    }
    for code in blocks.remainder().chunks_exact(cs) {
        if live.is_none_or(|l| bits_at(l, pos, 1) != 0) {
            c.offer(code, pos, top);
        }
        pos += 1;
    }
}

/// The AVX-512 filtered scan for `Q` queries over the same codes, one pass:
/// the kernel transposes each block of 64 codes once for all of them.
fn scan_wide<const Q: usize>(
    kernel: simd::Fast64,
    tables: [&QueryTable; Q],
    fasts: [&FastTables; Q],
    codes: &[u8],
    first_position: u64,
    live: Option<Live<'_>>,
    tops: &mut [TopK],
) {
    let cs = tables[0].code_size;
    debug_assert!(tables.iter().all(|t| t.code_size == cs) && fasts.iter().all(|f| f.wide == Some(kernel)));
    assert_eq!(tops.len(), Q);
    let mut cands: [Candidates<'_>; Q] = std::array::from_fn(|q| Candidates::new(tables[q], fasts[q], &tops[q]));
    let qts: [&[u8]; Q] = std::array::from_fn(|q| &fasts[q].q[..]);
    let mut pos = first_position;
    let block_len = 64 * cs;
    let mut blocks = codes.chunks_exact(block_len);
    for (b, block) in (&mut blocks).enumerate() {
        crate::storage::prefetch::prefetch_slice(ahead_of(codes, b * block_len, block_len));
        let live_mask = match live {
            Some(l) => bits_at(l, pos, 64),
            None => u64::MAX,
        };
        if live_mask != 0 {
            let thresholds: [u16; Q] = std::array::from_fn(|q| cands[q].kernel_threshold());
            let pass = simd::fastscan_filter64_multi::<Q>(kernel, qts, block, cs, thresholds);
            for ((c, top), p) in cands.iter_mut().zip(tops.iter_mut()).zip(pass) {
                c.offer_mask(live_mask & p, block, cs, pos, top);
            }
        }
        pos += 64;
    }
    for code in blocks.remainder().chunks_exact(cs) {
        if live.is_none_or(|l| bits_at(l, pos, 1) != 0) {
            for (c, top) in cands.iter_mut().zip(tops.iter_mut()) {
                c.offer(code, pos, top);
            }
        }
        pos += 1;
    }
}

/// Queries scanned together by [`scan_many`] (shared transposes; more would
/// spill the kernel's accumulators out of registers).
pub const SCAN_GROUP: usize = 4;

/// [`scan`] for several queries over the same codes: `tops[i]` receives the
/// candidates of `tables[i]`, exactly as `scan(tables[i], ..)` would give.
/// With the AVX-512 fast scan, up to [`SCAN_GROUP`] queries share one pass.
pub fn scan_many(tables: &[&QueryTable], codes: &[u8], first_position: u64, live: Option<&[u64]>, tops: &mut [TopK]) {
    assert_eq!(tables.len(), tops.len(), "PQ scan_many: one TopK per table");
    // One pass needs the AVX-512 kernel, the same for every table (same code
    // width and size), and heaps that keep something.
    let Some(kernel) = shared_wide_kernel(tables, tops.iter().map(|t| t.k)) else {
        for (t, top) in tables.iter().zip(tops.iter_mut()) {
            scan(t, codes, first_position, live, top);
        }
        return;
    };
    assert!(codes.len().is_multiple_of(tables[0].code_size), "PQ scan: codes length not a multiple of code_size");
    fn group<const Q: usize>(
        kernel: simd::Fast64,
        ts: &[&QueryTable],
        codes: &[u8],
        first_position: u64,
        live: Option<Live<'_>>,
        tops: &mut [TopK],
    ) {
        let fasts = std::array::from_fn(|q| ts[q].fast.as_ref().expect("checked by scan_many"));
        scan_wide::<Q>(kernel, std::array::from_fn(|q| ts[q]), fasts, codes, first_position, live, tops);
    }
    let live = live.map(|words| Live { words, first: 0 });
    for (ts, tops) in tables.chunks(SCAN_GROUP).zip(tops.chunks_mut(SCAN_GROUP)) {
        match ts.len() {
            4 => group::<4>(kernel, ts, codes, first_position, live, tops),
            3 => group::<3>(kernel, ts, codes, first_position, live, tops),
            2 => group::<2>(kernel, ts, codes, first_position, live, tops),
            _ => group::<1>(kernel, ts, codes, first_position, live, tops),
        }
    }
}

/// Distances of all codes into `out` (`out.len() == codes.len() / code_size`),
/// bit-identical to [`scan`]'s.
pub fn scan_distances(table: &QueryTable, codes: &[u8], out: &mut [f32]) {
    let cs = table.code_size;
    assert!(codes.len().is_multiple_of(cs) && out.len() == codes.len() / cs, "PQ scan_distances: lengths");
    let mut blocks = codes.chunks_exact(8 * cs);
    let mut outs = out.chunks_exact_mut(8);
    for (block, o) in (&mut blocks).zip(&mut outs) {
        simd::block8_distances(table.lut(), block, cs, o.try_into().unwrap());
    }
    for (code, o) in blocks.remainder().chunks_exact(cs).zip(outs.into_remainder()) {
        *o = code_distance(table.lut(), code);
    }
}

/// [`scan`] split across `threads` (0 = 1) scoped threads, each with its own
/// [`TopK`], merged at the end. The result is the same as one [`scan`] over
/// all codes: `TopK` orders by (distance, position), a total order.
pub fn scan_parallel(
    table: &QueryTable,
    codes: &[u8],
    first_position: u64,
    live: Option<&[u64]>,
    k: usize,
    threads: usize,
) -> TopK {
    let cs = table.code_size;
    assert!(codes.len().is_multiple_of(cs), "PQ scan: codes length not a multiple of code_size");
    let n = codes.len() / cs;
    // At least 64K codes per thread, so spawning pays for itself.
    let threads = threads.clamp(1, n.div_ceil(1 << 16).max(1));
    let mut top = TopK::new(k);
    if threads == 1 {
        scan(table, codes, first_position, live, &mut top);
        return top;
    }
    // Pieces of a multiple of 64 codes keep the live-bitmap reads word-aligned.
    let per = n.div_ceil(threads).div_ceil(64) * 64;
    let parts = crate::parallel::by_ranges(n, per, |run| {
        let mut t = TopK::new(k);
        scan(table, &codes[run.start * cs..run.end * cs], first_position + run.start as u64, live, &mut t);
        t
    });
    for t in parts {
        top.merge(t);
    }
    top
}

/// Keeps the `k` smallest `(distance, position)` pairs offered.
///
/// Pairs are ordered by distance (IEEE total order, with -0.0 read as +0.0),
/// then by position, so ties are resolved the same way whatever the push order.
///
/// Small `k`: a bounded max-heap (the threshold tightens at every push).
/// Large `k` (the candidates of a re-rank): a reservoir of up to `2k`
/// pairs cut back to the best `k` when full, as faiss's fast scan does:
/// a push costs O(1) amortized instead of a sift through log2(k) levels,
/// for a threshold that tightens only at each cut.
#[derive(Clone, Debug)]
pub struct TopK {
    k: usize,
    /// Pairs as `pair_key`s. Heap mode: a max-heap, `heap[0]` the worst
    /// kept pair. Reservoir mode: unordered pairs, each better than `cut`.
    heap: Vec<u128>,
    reservoir: bool,
    /// Reservoir mode: the worst pair kept at the last cut (pairs not
    /// better can never be among the best `k`).
    cut: u128,
}

/// The smallest `k` kept as a reservoir (below, a heap is faster: its
/// threshold tightens sooner, and a sift is short). From 16: IVF probes
/// keeping 20 to 60 candidates answered 10-20% more queries/s with a
/// reservoir than with a heap (throwaway harness, thread CPU time, 3
/// alternating runs).
const RESERVOIR_MIN_K: usize = 16;

/// `x`'s bits mapped so that their unsigned order is `f32::total_cmp`'s:
/// negative values with every bit flipped, the others with the sign bit set.
#[inline]
pub(crate) fn total_order_bits(x: f32) -> u32 {
    let bits = x.to_bits();
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | 1 << 31
    }
}

/// `total_order_bits` for an f64: unsigned order is `f64::total_cmp`'s.
#[inline]
pub(crate) fn total_order_bits_f64(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

/// The inverse of `total_order_bits`.
#[inline]
fn from_total_order_bits(bits: u32) -> f32 {
    f32::from_bits(if bits >> 31 == 1 { bits & !(1 << 31) } else { !bits })
}

/// A `(distance, position)` pair as one integer ordered as the pairs are
/// (distance in total order, then position): the cut's selection compares
/// integers instead of floats and then positions (a third less time in the
/// cut on a 10,000 x 128 store's queries, perf).
#[inline]
fn pair_key(distance: f32, position: u64) -> u128 {
    (u128::from(total_order_bits(distance)) << 64) | u128::from(position)
}

#[inline]
fn key_pair(key: u128) -> (f32, u64) {
    (from_total_order_bits((key >> 64) as u32), key as u64)
}

impl TopK {
    /// An empty heap keeping at most `k` pairs (`k == 0` keeps nothing).
    pub fn new(k: usize) -> TopK {
        let reservoir = k >= RESERVOIR_MIN_K;
        // Capacity bounded so a huge k from a host does not allocate up front.
        // (A reservoir takes up to a block's codes past 2k: `push_estimates`.)
        let capacity = if reservoir { k.saturating_mul(2).saturating_add(super::planar::BLOCK) } else { k };
        TopK { k, heap: Vec::with_capacity(capacity.min(1 << 16)), reservoir, cut: pair_key(f32::INFINITY, u64::MAX) }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Pairs kept (at most `k`).
    pub fn len(&self) -> usize {
        self.heap.len().min(self.k)
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The pairs kept, in no order: the best `k` offered and, in a
    /// reservoir between cuts, some worse ones (each a pair offered).
    pub fn kept(&self) -> impl Iterator<Item = (f32, u64)> + '_ {
        self.heap.iter().map(|&key| key_pair(key))
    }

    /// The distance a new candidate must beat (or tie with a smaller
    /// position) to be kept: the worst kept distance when full (reservoir:
    /// at the last cut), `+inf` before.
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.reservoir {
            key_pair(self.cut).0
        } else if self.k > 0 && self.heap.len() == self.k {
            key_pair(self.heap[0]).0
        } else {
            f32::INFINITY
        }
    }

    /// Offers one candidate.
    #[inline]
    pub fn push(&mut self, distance: f32, position: u64) {
        let item = pair_key(distance + 0.0, position); // -0.0 + 0.0 == +0.0
        if self.reservoir {
            self.keep(item);
            self.cut_if_full();
        } else if self.heap.len() < self.k {
            self.heap.push(item);
            self.sift_up(self.heap.len() - 1);
        } else if self.k > 0 && item < self.heap[0] {
            self.heap[0] = item;
            self.sift_down(0);
        }
    }

    /// Offers the codes of a block (at `position`) whose bits are set in
    /// `pass`, each at its distance estimated from its sum. A reservoir
    /// takes the whole block before it checks for a cut, and the loop
    /// stays in the caller (a call and a size check a candidate: on a
    /// 10,000 x 128 store 1.02-1.15x the queries/s at 8-16 lists and
    /// 30-80 candidates, one thread, in-process A/B of 9 rounds). What it
    /// keeps is what `push` of each would keep: a cut keeps the best `k`
    /// whenever it comes, and a pair beyond a cut is beyond every later
    /// one.
    #[inline]
    fn push_estimates(&mut self, mut pass: u64, sums: &simd::Sums64, est: &Estimates, position: u64) {
        if !self.reservoir {
            while pass != 0 {
                let i = pass.trailing_zeros() as usize;
                pass &= pass - 1;
                self.push(est.of(sums.get(i)), position + i as u64);
            }
            return;
        }
        self.heap.reserve(pass.count_ones() as usize);
        while pass != 0 {
            let i = pass.trailing_zeros() as usize;
            pass &= pass - 1;
            self.keep(pair_key(est.of(sums.get(i)) + 0.0, position + i as u64));
        }
        self.cut_if_full();
    }

    /// Reservoir mode: keeps `item` if it is better than the cut.
    #[inline]
    fn keep(&mut self, item: u128) {
        if item < self.cut {
            self.heap.push(item);
        }
    }

    /// Reservoir mode: cuts back to the best `k` once it holds `2k`.
    #[inline]
    fn cut_if_full(&mut self) {
        if self.heap.len() >= self.k.saturating_mul(2) {
            self.cut_back();
        }
    }

    /// Reservoir mode: keeps the best `k` pairs, the worst of them the new cut.
    #[cold]
    fn cut_back(&mut self) {
        self.heap.select_nth_unstable(self.k - 1);
        self.heap.truncate(self.k);
        self.cut = self.heap[self.k - 1];
    }

    /// Offers every pair of `other` (e.g. to merge per-thread results).
    pub fn merge(&mut self, other: TopK) {
        for key in other.heap {
            let (d, p) = key_pair(key);
            self.push(d, p);
        }
    }

    /// The best `k` pairs kept, in no particular order: for a consumer
    /// that reads them all (an exact re-rank), cheaper than sorting.
    pub fn into_vec(self) -> Vec<(f32, u64)> {
        let mut v = self.heap;
        if v.len() > self.k {
            v.select_nth_unstable(self.k);
            v.truncate(self.k);
        }
        v.into_iter().map(key_pair).collect()
    }

    /// The best `k` of the pairs `parts` kept (each a `TopK` of at least
    /// `k`): the best `k` of all the pairs offered to any of them, as one
    /// `TopK` offered them all in any order would keep (pairs are ordered
    /// by distance, then position). A search split among threads merges
    /// its parts with it.
    pub fn merged(k: usize, parts: impl IntoIterator<Item = TopK>) -> TopK {
        let mut top = TopK::new(k);
        for (distance, position) in parts.into_iter().flat_map(TopK::into_vec) {
            top.push(distance, position);
        }
        top
    }

    /// Kept pairs, ascending by distance then position.
    pub fn into_sorted_vec(self) -> Vec<(f32, u64)> {
        let mut v = self.heap;
        v.sort_unstable();
        v.truncate(self.k);
        v.into_iter().map(key_pair).collect()
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[i] > self.heap[parent] {
                self.heap.swap(i, parent);
                i = parent;
            } else {
                break;
            }
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut big = i;
            if l < n && self.heap[l] > self.heap[big] {
                big = l;
            }
            if r < n && self.heap[r] > self.heap[big] {
                big = r;
            }
            if big == i {
                break;
            }
            self.heap.swap(i, big);
            i = big;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{simd, Estimates, TopK};

    /// A block offered through `push_estimates` keeps what `push` of each
    /// of its codes keeps, heaps and reservoirs alike, through cuts that
    /// fall inside a block and ties of estimates (sums from a short range).
    #[test]
    fn push_estimates_keeps_what_push_keeps() {
        let mut seed = 0x5EED_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let est = Estimates { bias: -2.5, delta: 0.125, half: 8.0 };
        for k in [1, 5, 15, 16, 20, 40, 100] {
            for range in [8u64, 300, 60_000] {
                let (mut blocks, mut single) = (TopK::new(k), TopK::new(k));
                for b in 0..40u64 {
                    let sums: [u16; 64] = std::array::from_fn(|_| (next() % range) as u16);
                    let block = simd::Sums64::of_codes(sums);
                    let pass = next() & next() | next() & 0xFF;
                    let position = b * 64 + (next() % 3) * 10_000;
                    blocks.push_estimates(pass, &block, &est, position);
                    for i in (0..64).filter(|i| pass >> i & 1 == 1) {
                        single.push(est.of(sums[i]), position + i as u64);
                    }
                }
                assert_eq!(blocks.into_sorted_vec(), single.into_sorted_vec(), "k {k}, sums below {range}");
            }
        }
    }

    /// No sum above `max_sum` has an estimate within the threshold, and at
    /// most one at or below it has not (the floor of a quotient rounded
    /// up), for every kind of threshold: estimates themselves (scales
    /// whose quotient rounds both ways), between and beside them, below
    /// the sums' range, above it, infinite and NaN.
    #[test]
    fn max_sum_is_the_largest_sum_within_the_threshold() {
        let mut rounded_below = 0;
        for est in [Estimates { bias: -3.25, delta: 0.0625, half: 16.0 }, Estimates { bias: 0.37, delta: 0.013, half: 48.0 }, Estimates { bias: -11.1, delta: 0.7013, half: 96.0 }] {
            let mut thresholds = vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -1e30, 1e30, est.bias, 0.0, -0.0];
            for sum in (0u32..70_000).step_by(7).chain([1, 2, 4095, 65533, 65534, 65535, 65536]) {
                let at = est.bias + est.delta * (sum as f32 + est.half);
                thresholds.extend([at, at + 0.5 * est.delta, at - 0.5 * est.delta, f32::from_bits(at.to_bits() + 1), f32::from_bits(at.to_bits() - 1)]);
                let floor = ((at - est.bias) / est.delta - est.half).floor();
                rounded_below += usize::from(sum < 65535 && floor < sum as f32);
            }
            for thr in thresholds {
                let got = est.max_sum(thr);
                if thr.is_nan() || thr >= est.of(u16::MAX) {
                    assert_eq!(got, u16::MAX, "threshold {thr}");
                    continue;
                }
                assert!(got == u16::MAX || est.of(got + 1) > thr, "threshold {thr}: sum {} is within it too", got + 1);
                // (A quotient rounded up lets one sum beyond it through the
                // filter, which the caller's check of the estimate refuses.)
                assert!(got == 0 || est.of(got - 1) <= thr, "threshold {thr}: sum {} is beyond it", got - 1);
            }
        }
        assert!(rounded_below > 0, "some quotient rounded below its sum");
    }
}
