//! Asymmetric distance computation: per-query look-up tables, the code scan,
//! and the bounded top-k heap.

use std::cmp::Ordering;

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
#[derive(Clone, Debug)]
pub struct QueryTable {
    code_size: usize,
    /// `code_size x 256`.
    lut: Vec<f32>,
}

impl QueryTable {
    pub(crate) fn new(cb: &Codebooks, query: &[f32], metric: PqMetric) -> QueryTable {
        let cfg = cb.config;
        assert_eq!(query.len(), cfg.dim, "PQ query_table: query length must be dim");
        let (m, k, dsub, cs) = (cfg.m, cfg.ksub(), cfg.dsub(), cfg.code_size());
        let l2 = metric == PqMetric::L2;
        let mut lut = vec![0.0f32; cs * BYTE_VALUES];
        if cfg.bits == 8 {
            for j in 0..m {
                let ct = &cb.ct[j * k * dsub..(j + 1) * k * dsub];
                simd::subspace_table(ct, k, dsub, &query[j * dsub..(j + 1) * dsub], l2, &mut lut[j * k..(j + 1) * k]);
            }
        } else {
            let mut t = vec![0.0f32; m * k];
            for j in 0..m {
                let ct = &cb.ct[j * k * dsub..(j + 1) * k * dsub];
                simd::subspace_table(ct, k, dsub, &query[j * dsub..(j + 1) * dsub], l2, &mut t[j * k..(j + 1) * k]);
            }
            for b in 0..cs {
                let (lo, hi) = (&t[2 * b * k..(2 * b + 1) * k], &t[(2 * b + 1) * k..(2 * b + 2) * k]);
                for (v, e) in lut[b * BYTE_VALUES..(b + 1) * BYTE_VALUES].iter_mut().enumerate() {
                    *e = lo[v & 15] + hi[v >> 4];
                }
            }
        }
        QueryTable { code_size: cs, lut }
    }

    /// Bytes per code this table expects.
    pub fn code_size(&self) -> usize {
        self.code_size
    }

    /// Approximate distance of one code; bit-identical to what [`scan`] computes.
    #[inline]
    pub fn distance(&self, code: &[u8]) -> f32 {
        assert_eq!(code.len(), self.code_size, "PQ distance: code length");
        let mut acc = 0.0f32;
        for (t, &c) in self.lut.chunks_exact(BYTE_VALUES).zip(code) {
            acc += t[c as usize];
        }
        acc
    }

    /// Heap bytes owned by the table.
    pub fn heap_bytes(&self) -> usize {
        self.lut.capacity() * std::mem::size_of::<f32>()
    }
}

/// Codes evaluated together: independent accumulators hide the add latency.
const GROUP: usize = 8;

/// Distances of `GROUP` consecutive codes. Per code the sum runs over the
/// code bytes in order, exactly like [`QueryTable::distance`].
#[inline(always)]
fn group_distances(lut: &[f32], cs: usize, codes: &[u8], out: &mut [f32; GROUP]) {
    let codes = &codes[..GROUP * cs];
    let mut acc = [0.0f32; GROUP];
    let words = cs / 8;
    for w in 0..words {
        // Eight code bytes per load; bytes are then taken out with shifts.
        let mut x = [0u64; GROUP];
        for g in 0..GROUP {
            let o = g * cs + w * 8;
            x[g] = u64::from_le_bytes(codes[o..o + 8].try_into().unwrap());
        }
        for byte in 0..8 {
            let t: &[f32; BYTE_VALUES] = lut[(w * 8 + byte) * BYTE_VALUES..][..BYTE_VALUES].try_into().unwrap();
            for g in 0..GROUP {
                acc[g] += t[((x[g] >> (8 * byte)) & 0xFF) as usize];
            }
        }
    }
    for b in words * 8..cs {
        let t: &[f32; BYTE_VALUES] = lut[b * BYTE_VALUES..][..BYTE_VALUES].try_into().unwrap();
        for g in 0..GROUP {
            acc[g] += t[codes[g * cs + b] as usize];
        }
    }
    *out = acc;
}

/// Bits `pos..pos + n` (`n <= 64`) of the bitmap as the low bits of a word;
/// positions past the bitmap's end read as clear.
#[inline]
fn bits_at(live: &[u64], pos: u64, n: usize) -> u64 {
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
    let cs = table.code_size;
    assert!(codes.len() % cs == 0, "PQ scan: codes length not a multiple of code_size");
    if top.k == 0 {
        return;
    }
    let lut = &table.lut[..];
    let mut dist = [0.0f32; GROUP];
    let mut pos = first_position;
    for group in codes.chunks(GROUP * cs) {
        let ng = group.len() / cs;
        let mask = match live {
            Some(l) => bits_at(l, pos, ng),
            None => (1u64 << ng) - 1,
        };
        if mask != 0 {
            if ng == GROUP {
                group_distances(lut, cs, group, &mut dist);
            } else {
                for (d, code) in dist.iter_mut().zip(group.chunks_exact(cs)) {
                    *d = table.distance(code);
                }
            }
            for (i, &d) in dist[..ng].iter().enumerate() {
                if mask >> i & 1 != 0 {
                    top.push(d, pos + i as u64);
                }
            }
        }
        pos += ng as u64;
    }
}

/// Distances of all codes into `out` (`out.len() == codes.len() / code_size`),
/// bit-identical to [`scan`]'s.
pub fn scan_distances(table: &QueryTable, codes: &[u8], out: &mut [f32]) {
    let cs = table.code_size;
    assert!(codes.len() % cs == 0 && out.len() == codes.len() / cs, "PQ scan_distances: lengths");
    let mut chunks = codes.chunks_exact(GROUP * cs);
    let mut outs = out.chunks_exact_mut(GROUP);
    for (group, o) in (&mut chunks).zip(&mut outs) {
        group_distances(&table.lut, cs, group, o.try_into().unwrap());
    }
    for (code, o) in chunks.remainder().chunks_exact(cs).zip(outs.into_remainder()) {
        *o = table.distance(code);
    }
}

/// Bounded max-heap keeping the `k` smallest `(distance, position)` pairs.
///
/// Pairs are ordered by distance (IEEE total order, with -0.0 read as +0.0),
/// then by position, so ties are resolved the same way whatever the push order.
#[derive(Clone, Debug)]
pub struct TopK {
    k: usize,
    /// Max-heap: `heap[0]` is the worst kept pair.
    heap: Vec<(f32, u64)>,
}

#[inline]
fn cmp_pair(a: &(f32, u64), b: &(f32, u64)) -> Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

impl TopK {
    /// An empty heap keeping at most `k` pairs (`k == 0` keeps nothing).
    pub fn new(k: usize) -> TopK {
        // Capacity bounded so a huge k from a host does not allocate up front.
        TopK { k, heap: Vec::with_capacity(k.min(1 << 16)) }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The distance a new candidate must beat (or tie with a smaller position):
    /// the worst kept distance when full, `+inf` before.
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.k > 0 && self.heap.len() == self.k {
            self.heap[0].0
        } else {
            f32::INFINITY
        }
    }

    /// Offers one candidate.
    #[inline]
    pub fn push(&mut self, distance: f32, position: u64) {
        let item = (distance + 0.0, position); // -0.0 + 0.0 == +0.0
        if self.heap.len() < self.k {
            self.heap.push(item);
            self.sift_up(self.heap.len() - 1);
        } else if self.k > 0 && cmp_pair(&item, &self.heap[0]) == Ordering::Less {
            self.heap[0] = item;
            self.sift_down(0);
        }
    }

    /// Offers every pair of `other` (e.g. to merge per-thread results).
    pub fn merge(&mut self, other: TopK) {
        for (d, p) in other.heap {
            self.push(d, p);
        }
    }

    /// Kept pairs, ascending by distance then position.
    pub fn into_sorted_vec(self) -> Vec<(f32, u64)> {
        let mut v = self.heap;
        v.sort_unstable_by(cmp_pair);
        v
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if cmp_pair(&self.heap[i], &self.heap[parent]) == Ordering::Greater {
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
            if l < n && cmp_pair(&self.heap[l], &self.heap[big]) == Ordering::Greater {
                big = l;
            }
            if r < n && cmp_pair(&self.heap[r], &self.heap[big]) == Ordering::Greater {
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
