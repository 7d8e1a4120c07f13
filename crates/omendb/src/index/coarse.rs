//! The coarse quantizer: `nlist` centroids, and for a vector the list of
//! its nearest one (or, for a query, the `nprobe` nearest lists).

use super::bytescreen::{self, ByteScreen};
use super::groups::{row_bias, Groups};
use super::screen::{self, Screen};
use crate::quantization::gemm;
use crate::quantization::kernels;
use crate::quantization::PqMetric;

/// Coarse centroids in the space the PQ codes encode (unit vectors for a
/// cosine store). L2 stores assign by squared distance; inner-product
/// stores by the largest inner product.
///
/// A vector's list is its nearest centroid's. With enough lists, the
/// centroids' principal subspace screens them (index/screen.rs) so that
/// only the few that can be nearest are scored in full. Where it would
/// not pay, with many lists ([`Self::grouped_for`]) the centroids are
/// grouped (index/groups.rs) and a vector scores only the members of its
/// nearest groups: its list is then usually its nearest centroid's (how
/// often depends on the data and nlist: docs/indexes.md), otherwise a near
/// one (the list number is stored with the code, so that costs ranking
/// quality, never correctness). Queries' probes use the groups only.
/// Where the CPU sums byte products, the byte screen (index/bytescreen.rs)
/// takes the assignment up to `BYTES_UP_TO` lists, grouped or not: every
/// centroid scored in bytes, the few that can be nearest in full.
/// Otherwise, and for extreme values, every centroid is scored.
#[derive(Debug, Clone)]
pub struct CoarseQuantizer {
    dim: usize,
    metric: PqMetric,
    /// `nlist x dim`, row-major, in row order: list order, or group order
    /// with `groups` (its `row_of` / `list_at` map lists and rows).
    rows: Vec<f32>,
    /// Per row, `|c|^2 / 2` (L2) or 0 (inner product): see `gemm`.
    bias: Vec<f32>,
    /// Some centroid is beyond the f32-safe range: score in f64.
    careful: bool,
    groups: Option<Groups>,
    /// Built at the first assignment of `screen::MIN_PROBES` vectors or
    /// more, its directions tuned on them (searches never need it, so open
    /// does not pay for it: 35 ms at 1,000 x 768); `None` where it would
    /// not pay.
    screen: std::sync::OnceLock<Option<Screen>>,
    /// From the centroids alone: for assignments of fewer vectors before
    /// that.
    untuned: std::sync::OnceLock<Option<Screen>>,
    /// Built at the first assignment the screen above does not take, where
    /// the CPU has the byte kernel (`None` elsewhere).
    bytes: std::sync::OnceLock<Option<ByteScreen>>,
}

/// Groups whose members a vector's assignment scores.
const ASSIGN_GROUPS: usize = 16;
/// A probe scores at least this many groups, and enough of them to score
/// `PROBE_MEMBERS` candidates per list it returns. (16 lost fresh queries'
/// lists: at 10M x 128, 3,162 lists, target 0.95 delivered recall 0.88
/// where scoring every centroid gave 0.966, and the calibration, whose
/// queries are stored vectors, did not see it; with 32, 0.960.)
const PROBE_GROUPS: usize = 32;
const PROBE_MEMBERS: usize = 4;
/// Bytes of centroids `probe_many` scores a batch against at a time: half
/// the first-level data cache of the x86 cores we run on (32-48 KiB).
const PROBE_TILE_BYTES: usize = 16 * 1024;
/// The most lists whose assignment the byte screen takes (where there is
/// no projection screen). It scores every centroid (in bytes), so its cost
/// grows with the lists, a grouped assignment's with their square root:
/// at 128 dimensions, one thread, it took 2.1 us a vector against the
/// groups' 3.8 at 2,048 lists, 3.9 against 5.8 at 4,096, 9.4 at 8,192 and
/// 22.8 against 11.3 at 16,384 (`ivf_put coarse`, the generator's rows as
/// centroids), where the groups put 4%, 6% and 16% of the vectors in
/// another list than their nearest.
const BYTES_UP_TO: usize = 4096;

/// Vectors a grouped assignment handles at once: with `ASSIGN_GROUPS`
/// each, a group's matrix product has rows enough to run at speed, and a
/// batch of 1,000 still splits between two threads.
const ASSIGN_BLOCK: usize = 512;

const MAGIC: [u8; 8] = *b"OMENIVF1";
/// The header's flag for codes of the vectors themselves (not residuals).
const VECTOR_CODES: u32 = 2;
/// The header's flag for an index searched in two stages (docs/indexes.md):
/// its calibration measured that search. Codes of the vectors only.
const TWO_STAGE: u32 = 4;
const HEADER_LEN: usize = 8 + 4 + 4 + 4;

impl CoarseQuantizer {
    /// Lists from which the centroids are grouped (below, scoring all of
    /// them is as fast or faster: a grouped assignment measured 0.84x /
    /// 0.88x the speed at 1,024 lists of 128 / 768 dimensions and 1.21x /
    /// 1.35x at 2,048: `ivf_put coarse`, docs/benchmarks.md, "The coarse
    /// search").
    pub const GROUPED_FROM: usize = 2048;

    /// Whether `nlist` centroids are grouped.
    pub fn grouped_for(nlist: usize) -> bool {
        nlist >= Self::GROUPED_FROM
    }

    /// From `nlist x dim` finite centroids; grouped when
    /// [`Self::grouped_for`] says so.
    pub fn from_centroids(dim: usize, metric: PqMetric, centroids: Vec<f32>) -> Result<CoarseQuantizer, String> {
        let grouped = dim > 0 && Self::grouped_for(centroids.len() / dim);
        CoarseQuantizer::with_grouping(dim, metric, centroids, grouped)
    }

    /// `from_centroids` with the grouping forced on or off (benchmarks and
    /// tests); extreme centroids are never grouped.
    #[doc(hidden)]
    pub fn with_grouping(dim: usize, metric: PqMetric, centroids: Vec<f32>, grouped: bool) -> Result<CoarseQuantizer, String> {
        if dim == 0 || centroids.is_empty() || !centroids.len().is_multiple_of(dim) {
            return Err(format!("IVF: {} centroid values do not make rows of dimension {dim}", centroids.len()));
        }
        if centroids.len() / dim > super::MAX_LISTS as usize {
            return Err(format!("IVF: {} lists, more than {}", centroids.len() / dim, super::MAX_LISTS));
        }
        if let Some(at) = centroids.iter().position(|v| !v.is_finite()) {
            return Err(format!("IVF: centroid value {} at {at} is not finite", centroids[at]));
        }
        let careful = !kernels::in_safe_range(crate::quantization::simd_max_abs(&centroids));
        let (groups, rows) = if grouped && !careful {
            let (groups, rows) = Groups::build(&centroids, dim, metric);
            (Some(groups), rows)
        } else {
            (None, centroids)
        };
        let bias = row_bias(&rows, dim, metric);
        Ok(CoarseQuantizer {
            dim,
            metric,
            rows,
            bias,
            careful,
            groups,
            screen: std::sync::OnceLock::new(),
            untuned: std::sync::OnceLock::new(),
            bytes: std::sync::OnceLock::new(),
        })
    }

    /// Heap bytes held (the centroids, their groups when grouped, the
    /// screens once built).
    pub fn heap_bytes(&self) -> usize {
        4 * (self.rows.capacity() + self.bias.capacity())
            + self.groups.as_ref().map_or(0, Groups::heap_bytes)
            + [&self.screen, &self.untuned].iter().filter_map(|s| s.get().and_then(Option::as_ref)).map(Screen::heap_bytes).sum::<usize>()
            + self.bytes.get().and_then(Option::as_ref).map_or(0, ByteScreen::heap_bytes)
    }

    /// Number of lists.
    pub fn nlist(&self) -> usize {
        self.bias.len()
    }

    /// Dimension of the centroids.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// What assignment minimises (L2) or maximises (inner product).
    pub fn metric(&self) -> PqMetric {
        self.metric
    }

    /// Whether the centroids are grouped (the search scores only some).
    pub fn is_grouped(&self) -> bool {
        self.groups.is_some()
    }

    /// Whether assignment screens the centroids (index/screen.rs), as far
    /// as the centroids alone tell (the screen tuned on the first vectors
    /// assigned can still find that it does not pay).
    pub fn is_screened(&self) -> bool {
        self.screen_for(&[]).is_some()
    }

    /// The assignment screen's directions (`d x dim`, orthonormal rows)
    /// and centre, where assignment is screened: projected onto them, two
    /// vectors are no farther apart than they are (a lower bound on their
    /// distance that exact scans can prune with).
    pub fn projection(&self) -> Option<(&[f32], &[f32])> {
        self.screen_for(&[]).map(Screen::projection)
    }

    /// The screen for assigning `vectors`: tuned on them if none is yet
    /// and they are enough to tune it.
    fn screen_for(&self, vectors: &[f32]) -> Option<&Screen> {
        if self.careful {
            return None;
        }
        if let Some(screen) = self.screen.get() {
            return screen.as_ref();
        }
        if vectors.len() / self.dim >= screen::MIN_PROBES {
            return self.screen.get_or_init(|| Screen::build(&self.rows, self.dim, self.metric, vectors)).as_ref();
        }
        self.untuned.get_or_init(|| Screen::build(&self.rows, self.dim, self.metric, &[])).as_ref()
    }

    /// The byte screen, where the CPU has its kernel and the centroids
    /// allow it, up to `BYTES_UP_TO` lists.
    fn byte_screen(&self) -> Option<&ByteScreen> {
        if self.careful || self.nlist() > BYTES_UP_TO {
            return None;
        }
        self.bytes.get_or_init(|| ByteScreen::available().then(|| ByteScreen::build(&self.rows, &self.bias, self.dim)).flatten()).as_ref()
    }

    fn row_of(&self, list: u32) -> usize {
        self.groups.as_ref().map_or(list as usize, |g| g.row_of[list as usize] as usize)
    }

    fn list_at(&self, row: usize) -> u32 {
        self.groups.as_ref().map_or(row as u32, |g| g.list_at[row])
    }

    /// The centroid of `list`.
    pub fn centroid(&self, list: u32) -> &[f32] {
        let row = self.row_of(list);
        &self.rows[row * self.dim..(row + 1) * self.dim]
    }

    /// `x - centroid(list)` for each row of `vectors` and its list,
    /// saturated at +-f32::MAX (a difference of two extreme values can
    /// overflow; the codes only need to rank, the re-rank is exact).
    pub fn residuals(&self, vectors: &[f32], lists: &[u32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(vectors.len());
        for (x, &list) in vectors.chunks_exact(self.dim).zip(lists) {
            out.extend(x.iter().zip(self.centroid(list)).map(|(&a, &c)| (a - c).clamp(-f32::MAX, f32::MAX)));
        }
        out
    }

    /// The score of list `c` for vector `x` in f64 (for values whose f32
    /// products could over- or underflow): smaller is nearer.
    fn score_f64(&self, x: &[f32], c: usize) -> f64 {
        let row = self.centroid(c as u32);
        match self.metric {
            PqMetric::L2 => crate::search::distance::l2_squared_f64(row, x),
            PqMetric::InnerProduct => -crate::search::distance::dot_f64(row, x),
        }
    }

    fn row_is_safe(&self, x: &[f32]) -> bool {
        !self.careful && kernels::in_safe_range(crate::quantization::simd_max_abs(x))
    }

    /// The nearest list of `x` in f64, over every centroid.
    fn nearest_f64(&self, x: &[f32]) -> u32 {
        (0..self.nlist()).map(|c| (self.score_f64(x, c), c)).fold((f64::INFINITY, 0), |b, s| if s.0 < b.0 { s } else { b }).1 as u32
    }

    /// The list of each vector of `vectors` (row-major) into `out`: its
    /// nearest centroid's, or with grouped centroids and no screen nearly
    /// always so.
    pub fn assign(&self, vectors: &[f32], out: &mut [u32], threads: usize) {
        // Either screen's rows to lists; a vector it found beyond the
        // f32-safe range (checked as it read each vector) scored in f64.
        let screened = |out: &mut [u32]| {
            for (o, x) in out.iter_mut().zip(vectors.chunks_exact(self.dim)) {
                *o = if *o == screen::BEYOND_F32 { self.nearest_f64(x) } else { self.list_at(*o as usize) };
            }
        };
        if let Some(screen) = self.screen_for(vectors) {
            assert_eq!(out.len() * self.dim, vectors.len(), "IVF assign: one list per vector");
            screen::nearest_rows(screen, &self.rows, &self.bias, vectors, out, threads);
            return screened(out);
        }
        if let Some(bytes) = self.byte_screen() {
            assert_eq!(out.len() * self.dim, vectors.len(), "IVF assign: one list per vector");
            bytescreen::nearest_rows(bytes, &self.rows, &self.bias, vectors, out, threads);
            return screened(out);
        }
        let Some(groups) = &self.groups else {
            self.assign_exact(vectors, out, threads);
            return;
        };
        let n = vectors.len() / self.dim;
        assert_eq!(out.len(), n, "IVF assign: one list per vector");
        let dim = self.dim;
        // Whole blocks per thread, so a vector's list does not depend on it.
        crate::parallel::by_blocks(vectors, dim, out, ASSIGN_BLOCK, threads, |x, out| {
            for (xb, ob) in x.chunks(ASSIGN_BLOCK * dim).zip(out.chunks_mut(ASSIGN_BLOCK)) {
                self.assign_block(groups, xb, ob);
            }
        });
    }

    /// Grouped assignment of one block: the group centroids by one matrix
    /// product, then, group by group, the vectors that chose it against
    /// its members (one product each).
    fn assign_block(&self, groups: &Groups, x: &[f32], out: &mut [u32]) {
        let (dim, n, ng) = (self.dim, out.len(), groups.len());
        let take = ASSIGN_GROUPS.min(ng);
        let mut scores = vec![0.0f32; n * ng];
        gemm::scores(&groups.centroids, &groups.bias, dim, x, n, 0, ng, &mut scores);
        // chosen[i * take..]: vector i's `take` best groups.
        let mut chosen = vec![0u32; n * take];
        let mut scratch = Vec::with_capacity(ng);
        for (row, pick) in scores.chunks_exact(ng).zip(chosen.chunks_exact_mut(take)) {
            smallest(row, pick, &mut scratch);
        }
        // The vectors of each group, by counting sort.
        let mut starts = vec![0usize; ng + 1];
        for &g in &chosen {
            starts[g as usize + 1] += 1;
        }
        for g in 0..ng {
            starts[g + 1] += starts[g];
        }
        let mut fill = starts.clone();
        let mut members = vec![0u32; chosen.len()];
        for (i, pick) in chosen.chunks_exact(take).enumerate() {
            for &g in pick {
                members[fill[g as usize]] = i as u32;
                fill[g as usize] += 1;
            }
        }
        let mut best = vec![(f32::INFINITY, u32::MAX); n];
        let (mut gathered, mut buf) = (Vec::new(), Vec::new());
        for g in 0..ng {
            let who = &members[starts[g]..starts[g + 1]];
            if who.is_empty() {
                continue;
            }
            gathered.clear();
            for &i in who {
                gathered.extend_from_slice(&x[i as usize * dim..(i as usize + 1) * dim]);
            }
            let rows = groups.rows(g);
            buf.resize(who.len() * rows.len(), 0.0);
            gemm::scores(&self.rows, &self.bias, dim, &gathered, who.len(), rows.start, rows.len(), &mut buf);
            for (&i, s) in who.iter().zip(buf.chunks_exact(rows.len())) {
                // The first minimum: a group's rows are in list order.
                let (c, v) = s.iter().enumerate().fold((0, f32::INFINITY), |b, (c, &v)| if v < b.1 { (c, v) } else { b });
                let list = groups.list_at[rows.start + c];
                let b = &mut best[i as usize];
                if v < b.0 || (v == b.0 && list < b.1) {
                    *b = (v, list);
                }
            }
        }
        for ((o, b), xr) in out.iter_mut().zip(&best).zip(x.chunks_exact(dim)) {
            *o = if self.row_is_safe(xr) && b.1 != u32::MAX { b.1 } else { self.nearest_f64(xr) };
        }
    }

    /// The nearest list of each vector of `vectors` by scoring every centroid.
    pub fn assign_exact(&self, vectors: &[f32], out: &mut [u32], threads: usize) {
        let n = vectors.len() / self.dim;
        assert_eq!(out.len(), n, "IVF assign: one list per vector");
        gemm::nearest_rows(&self.rows, &self.bias, self.dim, vectors, out, threads);
        self.rows_to_lists(vectors, out);
    }

    /// Nearest rows (f32 scores) to lists; vectors beyond the f32-safe
    /// range are assigned again in f64.
    fn rows_to_lists(&self, vectors: &[f32], out: &mut [u32]) {
        for (o, x) in out.iter_mut().zip(vectors.chunks_exact(self.dim)) {
            *o = if self.row_is_safe(x) { self.list_at(*o as usize) } else { self.nearest_f64(x) };
        }
    }

    /// The `nprobe` lists nearest to `query`, nearest first (all of them
    /// when `nprobe >= nlist`). `scores` is scratch space. With grouped
    /// centroids, the nearest among the members of the query's nearest
    /// groups (at least `PROBE_MEMBERS` candidates per list wanted); all
    /// centroids are scored when that would be half of them or more.
    pub fn probe(&self, query: &[f32], nprobe: usize, scores: &mut Vec<f32>) -> Vec<u32> {
        let nprobe = nprobe.clamp(1, self.nlist());
        let Some(groups) = self.groups.as_ref().filter(|_| self.row_is_safe(query) && !self.probes_every_row(nprobe)) else {
            return self.probe_exact(query, nprobe);
        };
        let want = nprobe * PROBE_MEMBERS;
        let ng = groups.len();
        scores.resize(ng, 0.0);
        for ((s, row), &b) in scores.iter_mut().zip(groups.centroids.chunks_exact(self.dim)).zip(&groups.bias) {
            *s = b - crate::search::distance::dot(query, row);
        }
        let mut order: Vec<u32> = (0..ng as u32).collect();
        order.sort_unstable_by(|&a, &b| scores[a as usize].total_cmp(&scores[b as usize]).then(a.cmp(&b)));
        let mut candidates: Vec<u64> = Vec::with_capacity(want * 2);
        for (taken, &g) in order.iter().enumerate() {
            if taken >= PROBE_GROUPS && candidates.len() >= want {
                break;
            }
            for row in groups.rows(g as usize) {
                let c = &self.rows[row * self.dim..(row + 1) * self.dim];
                candidates.push(score_key(self.bias[row] - crate::search::distance::dot(query, c), groups.list_at[row]));
            }
        }
        let n = nprobe.min(candidates.len());
        nearest_keys(&mut candidates, n)
    }

    /// Whether a probe for `nprobe` lists scores every centroid (for a
    /// query in the f32-safe range): without groups, or where the groups
    /// would have it score half of them anyway.
    fn probes_every_row(&self, nprobe: usize) -> bool {
        self.groups.as_ref().is_none_or(|groups| nprobe * PROBE_MEMBERS * 2 >= self.nlist() || PROBE_GROUPS * 2 >= groups.len())
    }

    /// `probe` of each of `queries`, the same lists. Those that score every
    /// centroid are scored together, a tile of centroids at a time
    /// (`PROBE_TILE_BYTES`, in the first-level cache) against each query
    /// in turn: one query at a time reads every centroid from memory or
    /// the last-level cache (3 MiB at 1,000 x 768: 14% of a batched
    /// query's time went to it), a batch reads them once.
    pub fn probe_many(&self, queries: &[&[f32]], nprobe: usize, scores: &mut Vec<f32>) -> Vec<Vec<u32>> {
        let nprobe = nprobe.clamp(1, self.nlist());
        // Each tiled query's keys; `None` for the queries `probe` takes.
        let every = self.probes_every_row(nprobe);
        let mut keys: Vec<Option<Vec<u64>>> = queries.iter().map(|q| (every && self.row_is_safe(q)).then(|| Vec::with_capacity(self.nlist()))).collect();
        let tile = (PROBE_TILE_BYTES / (self.dim * 4)).max(1).next_multiple_of(crate::search::distance::MANY);
        for start in (0..self.nlist()).step_by(tile) {
            let rows = start..(start + tile).min(self.nlist());
            for (query, keys) in queries.iter().zip(&mut keys) {
                if let Some(keys) = keys {
                    self.row_keys(query, rows.clone(), keys);
                }
            }
        }
        queries
            .iter()
            .zip(keys)
            .map(|(query, keys)| match keys {
                Some(mut keys) => nearest_keys(&mut keys, nprobe),
                None => self.probe(query, nprobe, scores),
            })
            .collect()
    }

    /// Pushes the `score_key` of each of `rows` (in the f32-safe range)
    /// for `query` onto `keys`, in row order: four rows at a time
    /// (`dot_many` gives `dot`'s bits, faster).
    fn row_keys(&self, query: &[f32], rows: std::ops::Range<usize>, keys: &mut Vec<u64>) {
        use crate::search::distance::{dot, dot_many, MANY};
        let first = rows.start;
        let mut quads = self.rows[rows.start * self.dim..rows.end * self.dim].chunks_exact(self.dim * MANY);
        for (group, four) in (&mut quads).enumerate() {
            let dots = dot_many(query, std::array::from_fn(|r| &four[r * self.dim..(r + 1) * self.dim]));
            for (r, d) in dots.into_iter().enumerate() {
                let row = first + group * MANY + r;
                keys.push(score_key(self.bias[row] - d, self.list_at(row)));
            }
        }
        let done = first + (rows.len() / MANY) * MANY;
        for (c, row) in quads.remainder().chunks_exact(self.dim).zip(done..) {
            keys.push(score_key(self.bias[row] - dot(query, c), self.list_at(row)));
        }
    }

    /// `probe` by scoring every centroid.
    pub fn probe_exact(&self, query: &[f32], nprobe: usize) -> Vec<u32> {
        let k = self.nlist();
        let nprobe = nprobe.clamp(1, k);
        if self.row_is_safe(query) {
            // Rows in memory order, each keyed by its score, then its list.
            let mut keys: Vec<u64> = Vec::with_capacity(k);
            self.row_keys(query, 0..k, &mut keys);
            return nearest_keys(&mut keys, nprobe);
        }
        // Beyond the f32-safe range: scores in f64, keyed the same way.
        let mut keys: Vec<(u64, u32)> = (0..k as u32).map(|list| (crate::quantization::total_order_bits_f64(self.score_f64(query, list as usize)), list)).collect();
        nearest_by(&mut keys, nprobe, |&(_, list)| list)
    }

    /// Bytes of the serialized form: magic, dim, nlist, flags, the
    /// centroids (f32, little-endian), crc32c of all that. Flags: bit 0
    /// the metric (inner product), bit 1 set when the codes encode the
    /// vectors themselves, not residuals (`residual` false; clear in the
    /// stores trained before, whose codes are residuals), bit 2 set when
    /// the index is searched in two stages (`two_stage`; codes of the
    /// vectors only).
    pub fn to_bytes(&self, residual: bool, two_stage: bool) -> Vec<u8> {
        debug_assert!(!(residual && two_stage), "two stages scan codes of the vectors");
        let mut out = Vec::with_capacity(HEADER_LEN + self.rows.len() * 4 + 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        out.extend_from_slice(&(self.nlist() as u32).to_le_bytes());
        let flags = u32::from(self.metric == PqMetric::InnerProduct) | if residual { 0 } else { VECTOR_CODES } | if two_stage { TWO_STAGE } else { 0 };
        out.extend_from_slice(&flags.to_le_bytes());
        for list in 0..self.nlist() as u32 {
            for v in self.centroid(list) {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        crate::storage::checksum::seal(&mut out);
        out
    }

    /// Bytes of the serialized quantizer that `bytes` starts with, from its
    /// header (the caller then parses exactly that many).
    pub fn encoded_len(bytes: &[u8]) -> Result<usize, String> {
        if bytes.len() < HEADER_LEN {
            return Err("IVF centroids: missing".to_string());
        }
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize;
        let (dim, nlist) = (u32_at(8), u32_at(12));
        if dim > crate::options::MAX_DIM as usize || nlist > super::MAX_LISTS as usize {
            return Err(format!("IVF centroids: bad header (dim {dim}, {nlist} lists)"));
        }
        Ok(HEADER_LEN + nlist * dim * 4 + 4)
    }

    /// Parses `to_bytes` output (exactly), checking everything; never
    /// panics. Also gives whether the codes are residuals, and whether the
    /// index is searched in two stages.
    pub fn from_bytes(bytes: &[u8]) -> Result<(CoarseQuantizer, bool, bool), String> {
        if bytes.len() < HEADER_LEN + 4 || bytes[..8] != MAGIC {
            return Err("IVF centroids: bad magic or too short".to_string());
        }
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let (dim, nlist, flags) = (u32_at(8) as usize, u32_at(12) as usize, u32_at(16));
        let known = 1 | VECTOR_CODES | TWO_STAGE;
        let two_stage_of_residuals = flags & TWO_STAGE != 0 && flags & VECTOR_CODES == 0;
        if dim == 0 || dim > crate::options::MAX_DIM as usize || nlist == 0 || nlist > super::MAX_LISTS as usize || flags & !known != 0 || two_stage_of_residuals {
            return Err(format!("IVF centroids: bad header (dim {dim}, {nlist} lists, flags {flags})"));
        }
        let want = HEADER_LEN + nlist * dim * 4 + 4; // < 2^20 * 2^16 * 4: no overflow
        if bytes.len() != want {
            return Err(format!("IVF centroids: {} bytes, expected {want}", bytes.len()));
        }
        let Some(body) = crate::storage::checksum::unseal(bytes) else {
            return Err("IVF centroids: checksum mismatch".to_string());
        };
        let centroids = body[HEADER_LEN..].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let metric = if flags & 1 == 1 { PqMetric::InnerProduct } else { PqMetric::L2 };
        Ok((CoarseQuantizer::from_centroids(dim, metric, centroids)?, flags & VECTOR_CODES == 0, flags & TWO_STAGE != 0))
    }

    /// Trains `nlist` centroids on `sample` (row-major) with the PQ k-means
    /// (seeded, deterministic for a given sample). Inner-product stores
    /// cluster by L2 too, as faiss does; only assignment uses their metric.
    #[allow(clippy::too_many_arguments)]
    pub fn train(
        dim: usize,
        metric: PqMetric,
        sample: &[f32],
        nlist: usize,
        iterations: u32,
        seed: u64,
        threads: usize,
        on_iteration: &mut dyn FnMut(),
    ) -> Result<CoarseQuantizer, String> {
        let problem = crate::quantization::kmeans::Problem { data: sample, dsub: dim, k: nlist, iterations, seed, threads };
        // Each iteration's assignment screened by that iteration's
        // centroids (the same answers as scoring all of them), but the
        // first: random points as centroids spread over too many
        // directions for a screen to pay.
        // Later iterations keep the first screen's directions, its centre
        // and their number, and measure only the new centroids in them
        // (any orthonormal directions and any centre keep the bound true;
        // the centroids' subspace hardly moves from one iteration to the
        // next, and finding and tuning the directions again took a third
        // of each iteration: 30 of 95 ms at 1,000 x 768).
        let first = std::cell::Cell::new(true);
        let previous: std::cell::RefCell<Option<Screen>> = std::cell::RefCell::new(None);
        // Later iterations without a screen score every centroid in bytes
        // where the CPU has the byte screen's kernel (the same answers as
        // `dot` against all of them), else by a matrix product.
        let every = |c: &[f32], bias: &[f32], x: &[f32], out: &mut [u32]| match ByteScreen::available().then(|| ByteScreen::build(c, bias, dim)).flatten() {
            Some(bytes) => bytescreen::nearest_rows(&bytes, c, bias, x, out, threads),
            None => gemm::nearest_rows(c, bias, dim, x, out, threads),
        };
        let nearest = |c: &[f32], bias: &[f32], x: &[f32], out: &mut [u32]| {
            if first.replace(false) {
                return gemm::nearest_rows(c, bias, dim, x, out, threads);
            }
            let screen = match previous.borrow().as_ref() {
                Some(before) => Some(before.for_rows(c)),
                None => Screen::build(c, dim, PqMetric::L2, x),
            };
            match &screen {
                Some(screen) => screen::nearest_rows(screen, c, bias, x, out, threads),
                None => every(c, bias, x, out),
            }
            *previous.borrow_mut() = screen;
        };
        let centroids = crate::quantization::kmeans::kmeans_with(&problem, &nearest, on_iteration);
        CoarseQuantizer::from_centroids(dim, metric, centroids)
    }
}

/// The indices of the `pick.len()` smallest of `row` (ties to the lower
/// index), in no particular order.
fn smallest(row: &[f32], pick: &mut [u32], scratch: &mut Vec<f32>) {
    let take = pick.len();
    // The take-th smallest value, then the indices below it and, up to
    // `take`, those equal to it (in index order).
    scratch.clear();
    scratch.extend_from_slice(row);
    let (_, &mut edge, _) = scratch.select_nth_unstable_by(take - 1, f32::total_cmp);
    let mut n = 0;
    for (i, &s) in row.iter().enumerate() {
        if s.total_cmp(&edge).is_lt() {
            pick[n] = i as u32;
            n += 1;
        }
    }
    for (i, &s) in row.iter().enumerate() {
        if n < take && s.total_cmp(&edge).is_eq() {
            pick[n] = i as u32;
            n += 1;
        }
    }
}

/// A list's score as a key whose unsigned order is the scores' `total_cmp`
/// order, ties to the lower list: selecting and sorting plain integers
/// costs a fraction of comparing scores looked up through list numbers
/// (7% of a query on a 10,000 x 128 store, 100 lists, went to that).
#[inline]
fn score_key(score: f32, list: u32) -> u64 {
    (u64::from(crate::quantization::total_order_bits(score)) << 32) | u64::from(list)
}

/// The lists of the `n` smallest `keys` (`score_key`s), smallest first.
fn nearest_keys(keys: &mut Vec<u64>, n: usize) -> Vec<u32> {
    nearest_by(keys, n, |&key| key as u32)
}

/// The lists (`list` of each key) of the `n` smallest `keys`, smallest first.
fn nearest_by<K: Ord>(keys: &mut Vec<K>, n: usize, list: impl Fn(&K) -> u32) -> Vec<u32> {
    if n == 0 {
        return Vec::new();
    }
    if n < keys.len() {
        keys.select_nth_unstable(n - 1);
        keys.truncate(n);
    }
    keys.sort_unstable();
    keys.iter().map(list).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_damage_is_refused() {
        for (metric, residual) in [(PqMetric::L2, false), (PqMetric::L2, true), (PqMetric::InnerProduct, false), (PqMetric::InnerProduct, true)] {
            let c = CoarseQuantizer::from_centroids(3, metric, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
            for two_stage in [false, !residual] {
                let (back, back_residual, back_two_stage) = CoarseQuantizer::from_bytes(&c.to_bytes(residual, two_stage)).unwrap();
                assert_eq!((back.rows.clone(), back.metric(), back_residual, back_two_stage), (c.rows.clone(), metric, residual, two_stage));
            }
        }
        // Residual codes leave the flags word as stores trained before the
        // flag wrote it (the metric alone), and such headers read as residual.
        let c = CoarseQuantizer::from_centroids(3, PqMetric::InnerProduct, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let legacy = c.to_bytes(true, false);
        assert_eq!(u32::from_le_bytes(legacy[16..20].try_into().unwrap()), 1);
        assert!(CoarseQuantizer::from_bytes(&legacy).unwrap().1);
        // An unknown flag is refused, even with a valid checksum, and so is
        // a two-stage search of residual codes.
        for flag in [8u8, 4] {
            let mut bad = legacy.clone();
            bad.truncate(bad.len() - 4);
            bad[16] |= flag;
            crate::storage::checksum::seal(&mut bad);
            assert!(CoarseQuantizer::from_bytes(&bad).unwrap_err().contains("flags"), "flag {flag}");
        }

        let c = CoarseQuantizer::from_centroids(3, PqMetric::L2, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let bytes = c.to_bytes(false, true);
        let (back, _, _) = CoarseQuantizer::from_bytes(&bytes).unwrap();
        assert_eq!(back.rows, c.rows);
        assert_eq!(back.nlist(), 2);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(CoarseQuantizer::from_bytes(&bad).is_err(), "flip at {i} accepted");
        }
        assert!(CoarseQuantizer::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn probe_orders_lists_by_distance_and_extremes_stay_exact() {
        let c = CoarseQuantizer::from_centroids(2, PqMetric::L2, vec![0.0, 0.0, 10.0, 0.0, 3.0, 0.0]).unwrap();
        let mut scratch = Vec::new();
        assert_eq!(c.probe(&[9.0, 0.0], 3, &mut scratch), vec![1, 2, 0]);
        assert_eq!(c.probe(&[9.0, 0.0], 1, &mut scratch), vec![1]);
        let mut out = [0u32; 2];
        c.assign(&[2.0, 0.0, 11.0, 0.0], &mut out, 1);
        assert_eq!(out, [2, 1]);
        // Beyond the f32-safe range (centroids or points), scored in f64.
        let big = CoarseQuantizer::from_centroids(2, PqMetric::L2, vec![0.0, 0.0, 1e30, 0.0, 3.0, 0.0]).unwrap();
        big.assign(&[2.0, 0.0, 9e29, 0.0], &mut out, 1);
        assert_eq!(out, [2, 1]);
        assert_eq!(big.probe(&[f32::MAX, 0.0], 3, &mut scratch)[0], 1);
        let ip = CoarseQuantizer::from_centroids(2, PqMetric::InnerProduct, vec![1.0, 0.0, 0.0, 5.0]).unwrap();
        assert_eq!(ip.probe(&[1.0, 1.0], 2, &mut scratch), vec![1, 0]);
        // Equal scores go to the lower list, negative scores (inner
        // product) before positive ones, scored exactly or through groups.
        let tied = CoarseQuantizer::from_centroids(2, PqMetric::L2, vec![2.0, 0.0, 1.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0, -1.0]).unwrap();
        assert_eq!(tied.probe(&[0.0, 0.0], 5, &mut scratch), vec![1, 2, 3, 4, 0]);
        assert_eq!(tied.probe(&[0.0, 0.0], 2, &mut scratch), vec![1, 2]);
        let mixed = CoarseQuantizer::from_centroids(1, PqMetric::InnerProduct, vec![-2.0, 3.0, 0.0, 3.0, -1.0]).unwrap();
        assert_eq!(mixed.probe(&[1.0], 5, &mut scratch), vec![1, 3, 2, 4, 0]);
        // The same order when the scores need f64 (a query beyond the
        // f32-safe range): negative first, ties to the lower list.
        let wide = CoarseQuantizer::from_centroids(1, PqMetric::InnerProduct, vec![-1e30, 3e30, 0.0, 3e30, -2e30]).unwrap();
        assert_eq!(wide.probe(&[f32::MAX], 5, &mut scratch), vec![1, 3, 2, 0, 4]);
        assert_eq!(wide.probe_exact(&[f32::MAX], 2), vec![1, 3]);
    }

    /// `n` points of dimension `dim` around 64 centres (spread 0.3).
    fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::quantization::kmeans::Rng::new(seed);
        let mut val = |scale: f32| (rng.below(2001) as f32 - 1000.0) / 1000.0 * scale;
        let centres: Vec<f32> = (0..64 * dim).map(|_| val(1.0)).collect();
        let mut out = Vec::with_capacity(n * dim);
        for i in 0..n {
            let c = (i * 7 + i / 64) % 64;
            for d in 0..dim {
                out.push(centres[c * dim + d] + val(0.3));
            }
        }
        out
    }

    #[test]
    fn many_lists_are_grouped_and_agree_with_the_full_scan() {
        let dim = 16;
        let centroids = clustered(CoarseQuantizer::GROUPED_FROM, dim, 1);
        for metric in [PqMetric::L2, PqMetric::InnerProduct] {
            let c = CoarseQuantizer::from_centroids(dim, metric, centroids.clone()).unwrap();
            assert!(c.is_grouped());
            // Stored in list order whatever the grouping: the same bytes back.
            let flat = CoarseQuantizer::with_grouping(dim, metric, centroids.clone(), false).unwrap();
            assert!(!flat.is_grouped());
            assert_eq!(c.to_bytes(false, false), flat.to_bytes(false, false));
            assert_eq!(CoarseQuantizer::from_bytes(&c.to_bytes(false, false)).unwrap().0.to_bytes(false, false), c.to_bytes(false, false));
            for list in [0u32, 7, CoarseQuantizer::GROUPED_FROM as u32 - 1] {
                assert_eq!(c.centroid(list), flat.centroid(list));
            }

            let n = 3000;
            let points = clustered(n, dim, 2);
            let (mut got, mut want) = (vec![0u32; n], vec![0u32; n]);
            c.assign(&points, &mut got, 1);
            flat.assign(&points, &mut want, 1);
            let same = got.iter().zip(&want).filter(|(a, b)| a == b).count();
            assert!(same * 100 >= n * 95, "{metric:?}: {same} of {n} assigned to their nearest list");
            // Deterministic and independent of the thread count.
            let mut again = vec![0u32; n];
            c.assign(&points, &mut again, 3);
            assert_eq!(again, got);
            c.assign(&[], &mut [], 2);
            let (rebuilt, _, _) = CoarseQuantizer::from_bytes(&c.to_bytes(false, false)).unwrap();
            rebuilt.assign(&points, &mut again, 2);
            assert_eq!(again, got);

            let (mut first, mut found, mut scratch) = (0, 0, Vec::new());
            let queries = clustered(200, dim, 3);
            for q in queries.chunks_exact(dim) {
                let exact = flat.probe(q, 32, &mut scratch);
                let lists = c.probe(q, 32, &mut scratch);
                assert_eq!(lists.len(), 32);
                // Nearest first.
                let score = |l: u32| c.score_f64(q, l as usize);
                assert!(lists.windows(2).all(|w| score(w[0]) <= score(w[1]) + 1e-5 * (1.0 + score(w[1]).abs())), "{metric:?}: order");
                first += usize::from(lists[0] == exact[0]);
                found += lists.iter().filter(|l| exact.contains(l)).count();
                assert_eq!(c.probe(q, 1, &mut scratch)[0], lists[0]);
                // Half the lists or more: the full scan.
                assert_eq!(c.probe(q, CoarseQuantizer::GROUPED_FROM / 2, &mut scratch), flat.probe(q, CoarseQuantizer::GROUPED_FROM / 2, &mut scratch));
            }
            assert!(first >= 190, "{metric:?}: nearest list found for {first} of 200 queries");
            assert!(found * 100 >= 200 * 32 * 90, "{metric:?}: {found} of the 32 nearest lists of 200 queries found");
        }
    }

    #[test]
    fn screened_assignment_is_the_nearest_list_grouped_or_not() {
        let dim = 64;
        for (nlist, metric) in [(600, PqMetric::L2), (CoarseQuantizer::GROUPED_FROM, PqMetric::L2), (CoarseQuantizer::GROUPED_FROM, PqMetric::InnerProduct)] {
            let c = CoarseQuantizer::from_centroids(dim, metric, super::super::screen::tests::data(nlist, dim, 0.05, 1)).unwrap();
            assert!(c.is_screened(), "{nlist}: screened");
            assert_eq!(c.is_grouped(), CoarseQuantizer::grouped_for(nlist));
            let n = 3000;
            let mut points = super::super::screen::tests::data(n, dim, 0.5, 2);
            // A few beyond the f32-safe range (huge, or tiny): scored in f64.
            for (i, v) in [(7, 3e30f32), (500, 1e-30), (2999, -2e25)] {
                points[i * dim..(i + 1) * dim].iter_mut().for_each(|x| *x *= v);
            }
            let (mut got, mut exact) = (vec![0u32; n], vec![0u32; n]);
            c.assign(&points, &mut got, 2);
            c.assign_exact(&points, &mut exact, 1);
            let differ = got.iter().zip(&exact).filter(|(a, b)| a != b).count();
            assert!(differ * 1000 <= n, "{nlist} {metric:?}: {differ} of {n} differ (near-ties only)");
            for i in [7, 500, 2999] {
                assert_eq!(got[i], c.nearest_f64(&points[i * dim..(i + 1) * dim]), "{nlist} {metric:?}: vector {i}");
            }
            for (x, &list) in points.chunks_exact(dim).zip(&got) {
                let best = (0..nlist).map(|l| c.score_f64(x, l)).fold(f64::INFINITY, f64::min);
                assert!(c.score_f64(x, list as usize) - best <= 1e-5 * (1.0 + best.abs()), "{nlist} {metric:?}");
            }
        }
    }

    #[test]
    fn unscreened_assignment_is_the_least_dot_score_where_bytes_screen_it() {
        // 8 dimensions: no projection screen. 300 lists one row each, and
        // 2,100 grouped (rows in group order).
        let dim = 8;
        for (nlist, metric) in [(300, PqMetric::L2), (300, PqMetric::InnerProduct), (2100, PqMetric::L2)] {
            let c = CoarseQuantizer::from_centroids(dim, metric, clustered(nlist, dim, 9)).unwrap();
            assert!(!c.is_screened(), "{nlist}");
            let n = 2000;
            let mut points = clustered(n, dim, 10);
            // One beyond the f32-safe range (scored in f64) and one beyond
            // the byte screen's range but f32-safe (every row scored).
            points[5 * dim..6 * dim].iter_mut().for_each(|x| *x *= 3e30);
            points[6 * dim..7 * dim].iter_mut().for_each(|x| *x *= 1e14);
            let mut got = vec![0u32; n];
            c.assign(&points, &mut got, 2);
            assert_eq!(got[5], c.nearest_f64(&points[5 * dim..6 * dim]));
            for (i, (x, &list)) in points.chunks_exact(dim).zip(&got).enumerate().filter(|&(i, _)| i != 5) {
                // Every row scored with `dot`, ties to the lower row.
                let mut best = (f32::INFINITY, 0);
                for (row, centroid) in c.rows.chunks_exact(dim).enumerate() {
                    let s = c.bias[row] - crate::search::distance::dot(x, centroid);
                    if s < best.0 {
                        best = (s, row);
                    }
                }
                let want = c.list_at(best.1);
                if ByteScreen::available() {
                    assert_eq!(list, want, "{nlist} {metric:?}: vector {i}");
                } else if !c.is_grouped() {
                    // The matrix product: the same up to its rounding.
                    let (a, b) = (c.score_f64(x, list as usize), c.score_f64(x, want as usize));
                    assert!(a - b <= 1e-5 * (1.0 + b.abs()), "{nlist} {metric:?}: vector {i}");
                }
            }
        }
    }

    #[test]
    fn probes_of_many_queries_are_each_query_s_probe() {
        // Grouped and not, both metrics, a dimension that leaves rows
        // outside a tile's four-row steps (`PROBE_TILE_BYTES` over 4 x 18
        // bytes) and a list count that is not a whole number of tiles;
        // queries in and beyond the f32-safe range, probes narrow enough
        // for the groups and wide enough for every centroid.
        let dim = 18;
        // (Groups are narrower than every centroid from 65^2 lists:
        // `PROBE_GROUPS`.)
        let nlist = 3 * CoarseQuantizer::GROUPED_FROM + 3;
        let mut rng = crate::quantization::kmeans::Rng::new(5);
        let mut uniform = |n: usize| -> Vec<f32> { (0..n * dim).map(|_| rng.below(2001) as f32 / 1000.0 - 1.0).collect() };
        let centroids = uniform(nlist);
        let mut queries = uniform(70);
        queries[3 * dim + 2] = 3e30;
        queries[40 * dim] = -f32::MAX;
        let queries: Vec<&[f32]> = queries.chunks_exact(dim).collect();
        for metric in [PqMetric::L2, PqMetric::InnerProduct] {
            for grouped in [true, false] {
                let c = CoarseQuantizer::with_grouping(dim, metric, centroids.clone(), grouped).unwrap();
                assert_eq!(c.is_grouped(), grouped);
                let (mut scratch, mut not_exact) = (Vec::new(), 0);
                for nprobe in [1, 8, 32, nlist / 2, nlist, nlist + 5] {
                    let many = c.probe_many(&queries, nprobe, &mut scratch);
                    assert_eq!(many.len(), queries.len());
                    for (q, lists) in queries.iter().zip(&many) {
                        assert_eq!(lists, &c.probe(q, nprobe, &mut scratch), "{metric:?}, grouped {grouped}, nprobe {nprobe}");
                        not_exact += usize::from(lists != &c.probe_exact(q, nprobe));
                    }
                }
                // The groups' narrow probes differ from scoring every
                // centroid somewhere: both paths were taken.
                assert_eq!(not_exact > 0, grouped, "{metric:?}");
                assert!(c.probe_many(&[], 4, &mut scratch).is_empty());
            }
        }
    }

    #[test]
    fn grouped_lists_score_extremes_exactly() {
        let dim = 8;
        let mut centroids = clustered(CoarseQuantizer::GROUPED_FROM, dim, 4);
        let c = CoarseQuantizer::from_centroids(dim, PqMetric::L2, centroids.clone()).unwrap();
        assert!(c.is_grouped());
        // A point beyond the f32-safe range is assigned and probed in f64.
        let mut far = vec![0.0f32; dim];
        far[0] = 3e30;
        let mut out = [0u32; 1];
        c.assign(&far, &mut out, 1);
        assert_eq!(out[0], c.nearest_f64(&far));
        assert_eq!(c.probe(&far, 1, &mut Vec::new())[0], out[0]);
        // Extreme centroids: never grouped.
        centroids[5] = 1e30;
        assert!(!CoarseQuantizer::from_centroids(dim, PqMetric::L2, centroids).unwrap().is_grouped());
    }
}
