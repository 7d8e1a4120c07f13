//! The ID index: ID bytes -> slot.
//!
//! An open-addressing hash table of 64-byte chunks. Each chunk holds 12
//! one-byte tags (7 bits of the ID's hash, or EMPTY / DELETED) and the 12
//! slot numbers they stand for, in one cache line, so a lookup costs one
//! cache miss for the table. (A SwissTable keeps its tags and its entries in
//! two arrays: two dependent misses, which were a third of a `get`.)
//! Probing, deletion markers and growth follow the SwissTable design.
//!
//! Only the 4-byte slot number is stored: the ID bytes stay in the mapped
//! ids file and are fetched through a resolver when an entry must be
//! compared or rehashed, so the index costs about 6.1 bytes of heap per
//! live ID at its fullest (plus growth slack: a table doubles when full).

use std::hash::BuildHasher;

use foldhash::fast::RandomState;

/// Maps a slot to its ID bytes. A slot whose ID cannot be read (damaged
/// file) yields `None`, which never compares equal.
pub trait IdResolver {
    fn id_of(&self, slot: u32) -> Option<&[u8]>;
}

pub struct IdIndex {
    table: Table,
    hasher: RandomState,
}

impl Default for IdIndex {
    fn default() -> IdIndex {
        IdIndex::with_capacity(0)
    }
}

impl IdIndex {
    pub fn with_capacity(capacity: usize) -> IdIndex {
        IdIndex { table: Table::with_capacity(capacity), hasher: RandomState::default() }
    }

    pub fn hash(&self, id: &[u8]) -> u64 {
        self.hasher.hash_one(id)
    }

    pub fn len(&self) -> usize {
        self.table.len
    }

    /// Heap bytes held by the table.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.table.chunks)
    }

    pub fn get(&self, id: &[u8], ids: &impl IdResolver) -> Option<u32> {
        self.find(id, |slot| ids.id_of(slot) == Some(id))
    }

    /// The slot of `id`, as `get`, with the comparison left to the caller:
    /// `is_id(slot)` is asked for each candidate slot whose hash tag
    /// matches (nearly always one), and must say whether it holds `id`.
    /// Lets a reader fetch what it needs of the candidate in the same trip.
    #[inline]
    pub fn find(&self, id: &[u8], is_id: impl FnMut(u32) -> bool) -> Option<u32> {
        self.find_hashed(self.hash(id), is_id)
    }

    /// `find` with the hash already computed (by `hash`).
    #[inline]
    pub fn find_hashed(&self, hash: u64, is_id: impl FnMut(u32) -> bool) -> Option<u32> {
        self.table.find(hash, is_id).map(|(c, i)| self.table.chunks[c].slots[i])
    }

    /// Starts loading the chunk where a lookup of `hash` begins (for
    /// lookups in batches: the misses of several IDs then overlap).
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        let chunk: *const Chunk = &self.table.chunks[self.table.home(hash)];
        crate::storage::prefetch::prefetch_line(chunk.cast());
    }

    /// Points `id` at `slot`; returns the slot it pointed at before.
    pub fn insert(&mut self, id: &[u8], slot: u32, ids: &impl IdResolver) -> Option<u32> {
        let hash = self.hash(id);
        let hasher = &self.hasher;
        self.table.upsert(hash, slot, |s| ids.id_of(s) == Some(id), |s| rehash(hasher, ids, s))
    }

    /// Removes `id` if it currently points at `slot` (or at any slot when
    /// `slot` is None); returns the slot removed.
    pub fn remove(&mut self, id: &[u8], slot: Option<u32>, ids: &impl IdResolver) -> Option<u32> {
        let (c, i) = self.table.find(self.hash(id), |s| ids.id_of(s) == Some(id))?;
        let found = self.table.chunks[c].slots[i];
        if slot.is_some_and(|want| found != want) {
            return None;
        }
        self.table.erase(c, i);
        Some(found)
    }

    /// Loads many (ID, slot) entries at once, in slot order semantics: a
    /// later slot of an ID replaces an earlier one. `replaced(old_slot)` is
    /// called for every slot so replaced.
    ///
    /// The entries are hashed in one pass, then inserted in the order of
    /// their home chunk (a stable radix sort, so an ID's slots keep their
    /// order): the table is filled in one sweep instead of one random cache
    /// and TLB miss per insert, which is what dominates opening a store.
    pub fn bulk_load<'a>(
        &mut self,
        entries: impl Iterator<Item = (u32, &'a [u8])>,
        ids: &impl IdResolver,
        mut replaced: impl FnMut(u32),
    ) {
        let mut hashed: Vec<(u64, u32)> = entries.map(|(slot, id)| (self.hash(id), slot)).collect();
        self.reserve(hashed.len(), ids);
        // The home chunk is the low bits of the hash; the table no longer
        // grows below, so this order is one sequential sweep.
        radix_sort_by_low_bits(&mut hashed, self.table.chunks.len().trailing_zeros());
        let hasher = &self.hasher;
        for (hash, slot) in hashed {
            // The ID bytes are needed only when a probe meets a candidate
            // with the same tag (an upsert, or a rare tag collision), so they
            // are fetched only then: in chunk order they would be random reads.
            let same_id = |s: u32| ids.id_of(s).is_some_and(|a| ids.id_of(slot) == Some(a));
            if let Some(old) = self.table.upsert(hash, slot, same_id, |s| rehash(hasher, ids, s)) {
                replaced(old);
            }
        }
    }

    /// Keeps only the entries whose slot passes `keep`, in one sweep over
    /// the table (chunk order: sequential, unlike a remove per ID).
    pub fn retain(&mut self, mut keep: impl FnMut(u32) -> bool) {
        for c in 0..self.table.chunks.len() {
            for i in bits(self.table.chunks[c].full()) {
                if !keep(self.table.chunks[c].slots[i]) {
                    self.table.erase(c, i);
                }
            }
        }
    }

    /// Makes room for `additional` more entries without a rebuild.
    pub fn reserve(&mut self, additional: usize, ids: &impl IdResolver) {
        if additional > self.table.growth_left {
            let hasher = &self.hasher;
            self.table.rebuild(self.table.len + additional, |s| rehash(hasher, ids, s));
        }
    }
}

/// The hash of a stored slot's ID, for moving it in a rebuild. An
/// unreadable ID hashes as empty: its entry stays findable by slot sweeps
/// (retain) though no lookup by ID can match it anyway.
fn rehash(hasher: &RandomState, ids: &impl IdResolver, slot: u32) -> u64 {
    hasher.hash_one(ids.id_of(slot).unwrap_or(&[]))
}

const CHUNK_ENTRIES: usize = 12;
const ENTRY_BITS: u16 = (1 << CHUNK_ENTRIES) - 1;
/// Tag of an entry never used since the last rebuild: a probe stops here.
const EMPTY: u8 = 0xFF;
/// Tag of an erased entry in a chunk that once was full: probes go on.
const DELETED: u8 = 0x80;
// Tags of live entries are 0..=127 (high bit clear).

/// The positions of the set bits of `mask`, lowest first.
#[inline(always)]
fn bits(mut mask: u16) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let i = mask.trailing_zeros() as usize;
        mask &= mask.wrapping_sub(1);
        (i < 16).then_some(i)
    })
}

/// One cache line: 12 tags (4 bytes of padding, kept EMPTY and masked off)
/// and the 12 slots.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Chunk {
    tags: [u8; 16],
    slots: [u32; CHUNK_ENTRIES],
}

const _: () = assert!(std::mem::size_of::<Chunk>() == 64);

impl Chunk {
    const EMPTY: Chunk = Chunk { tags: [EMPTY; 16], slots: [0; CHUNK_ENTRIES] };

    /// Bit i set where `tags[i]` satisfies `f` (i < 12). Written as a plain
    /// loop over the 16 tags, which the compiler turns into one vector
    /// compare and mask.
    #[inline(always)]
    fn mask(&self, f: impl Fn(u8) -> bool) -> u16 {
        let mut m = 0u16;
        for (i, &t) in self.tags.iter().enumerate() {
            m |= (f(t) as u16) << i;
        }
        m & ENTRY_BITS
    }

    #[inline(always)]
    fn matching(&self, tag: u8) -> u16 {
        self.mask(|t| t == tag)
    }

    #[inline(always)]
    fn empties(&self) -> u16 {
        self.mask(|t| t == EMPTY)
    }

    /// EMPTY or DELETED: where an insert may go.
    #[inline(always)]
    fn free(&self) -> u16 {
        self.mask(|t| t & 0x80 != 0)
    }

    #[inline(always)]
    fn full(&self) -> u16 {
        self.mask(|t| t & 0x80 == 0)
    }
}

/// The table proper, on hashes and slots (the ID bytes are the caller's).
///
/// Invariants: `chunks.len()` is a power of two; live + DELETED entries
/// never exceed `capacity(chunks.len())`, so EMPTY entries always remain and
/// every probe ends; `growth_left` = that capacity - live - DELETED. A chunk
/// that has an EMPTY entry has never been full since the last rebuild, so no
/// probe ever went past it: an erase there may leave EMPTY (which stops
/// probes), elsewhere it must leave DELETED.
struct Table {
    chunks: Box<[Chunk]>,
    len: usize,
    growth_left: usize,
}

/// Entries a table of `chunks` chunks takes before it is rebuilt: 7/8 full.
fn capacity(chunks: usize) -> usize {
    chunks * CHUNK_ENTRIES * 7 / 8
}

fn chunks_for(entries: usize) -> usize {
    let mut chunks = entries.div_ceil(CHUNK_ENTRIES * 7 / 8).max(1).next_power_of_two();
    while capacity(chunks) < entries {
        chunks *= 2;
    }
    chunks
}

fn tag_of(hash: u64) -> u8 {
    (hash >> 57) as u8
}

impl Table {
    fn with_capacity(entries: usize) -> Table {
        let chunks = chunks_for(entries);
        Table { chunks: vec![Chunk::EMPTY; chunks].into_boxed_slice(), len: 0, growth_left: capacity(chunks) }
    }

    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        hash as usize & (self.chunks.len() - 1)
    }

    /// Triangular probing: home, home+1, home+3, home+6, ... (mod the chunk
    /// count, a power of two), which visits every chunk.
    #[inline(always)]
    fn probe(&self, hash: u64) -> impl Iterator<Item = usize> {
        let mask = self.chunks.len() - 1;
        let mut pos = self.home(hash);
        let mut stride = 0;
        std::iter::from_fn(move || {
            let here = pos;
            stride += 1;
            pos = (pos + stride) & mask;
            Some(here)
        })
    }

    /// The (chunk, entry) of the live entry with `hash` for which `eq`
    /// holds. `eq` is asked only about entries whose tag matches.
    #[inline]
    fn find(&self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<(usize, usize)> {
        self.find_or_free(hash, eq).ok()
    }

    /// As `find`; when absent, `Err` holds where an insert of `hash` goes:
    /// the first EMPTY or DELETED entry on its probe sequence (found on the
    /// same walk, which ends at the first chunk with an EMPTY entry).
    #[inline]
    fn find_or_free(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Result<(usize, usize), (usize, usize)> {
        let tag = tag_of(hash);
        let mut free = None;
        for c in self.probe(hash) {
            let chunk = &self.chunks[c];
            for i in bits(chunk.matching(tag)) {
                if eq(chunk.slots[i]) {
                    return Ok((c, i));
                }
            }
            if free.is_none() {
                free = bits(chunk.free()).next().map(|i| (c, i));
            }
            let empties = chunk.empties();
            if empties != 0 {
                return Err(free.unwrap_or((c, empties.trailing_zeros() as usize)));
            }
        }
        unreachable!("a probe sequence visits every chunk and some entry is EMPTY")
    }

    /// The first EMPTY or DELETED entry on `hash`'s probe sequence.
    fn first_free(&self, hash: u64) -> (usize, usize) {
        for c in self.probe(hash) {
            let free = self.chunks[c].free();
            if free != 0 {
                return (c, free.trailing_zeros() as usize);
            }
        }
        unreachable!("a probe sequence visits every chunk and some entry is EMPTY")
    }

    /// Points the entry `eq` picks at `slot` and returns the slot it held,
    /// or adds an entry for `hash` and returns None. `rehash(slot)` gives
    /// the hash of any stored entry, should the table need rebuilding.
    fn upsert(&mut self, hash: u64, slot: u32, eq: impl FnMut(u32) -> bool, rehash: impl Fn(u32) -> u64) -> Option<u32> {
        let mut at = match self.find_or_free(hash, eq) {
            Ok((c, i)) => return Some(std::mem::replace(&mut self.chunks[c].slots[i], slot)),
            Err(at) => at,
        };
        if self.growth_left == 0 && self.chunks[at.0].tags[at.1] == EMPTY {
            // Double when more than half full of live entries; otherwise
            // the DELETED markers are what fill it: rebuild at this size.
            let full = capacity(self.chunks.len());
            let want = if self.len + 1 > full / 2 { (self.len + 1).max(full + 1) } else { self.len + 1 };
            self.rebuild(want, rehash);
            at = self.first_free(hash);
        }
        self.fill(at, hash, slot);
        None
    }

    /// Stores `slot` with `hash`'s tag in the free entry `at`.
    fn fill(&mut self, (c, i): (usize, usize), hash: u64, slot: u32) {
        if self.chunks[c].tags[i] == EMPTY {
            self.growth_left -= 1;
        }
        self.chunks[c].tags[i] = tag_of(hash);
        self.chunks[c].slots[i] = slot;
        self.len += 1;
    }

    fn erase(&mut self, c: usize, i: usize) {
        let chunk = &mut self.chunks[c];
        if chunk.empties() != 0 {
            chunk.tags[i] = EMPTY;
            self.growth_left += 1;
        } else {
            chunk.tags[i] = DELETED;
        }
        self.len -= 1;
    }

    /// Moves every live entry into a fresh table sized for `entries`
    /// (at least the live count), dropping DELETED markers.
    fn rebuild(&mut self, entries: usize, rehash: impl Fn(u32) -> u64) {
        let mut fresh = Table::with_capacity(entries.max(self.len));
        for chunk in self.chunks.iter() {
            for i in bits(chunk.full()) {
                let hash = rehash(chunk.slots[i]);
                fresh.fill(fresh.first_free(hash), hash, chunk.slots[i]);
            }
        }
        *self = fresh;
    }
}

/// Stable LSD radix sort of `(hash, slot)` pairs by the low `bits` bits of
/// the hash, 11 bits per pass.
fn radix_sort_by_low_bits(items: &mut Vec<(u64, u32)>, bits: u32) {
    const RADIX: u32 = 11;
    let mut scratch = vec![(0u64, 0u32); items.len()];
    let mut shift = 0;
    while shift < bits {
        let width = RADIX.min(bits - shift);
        let mask = (1u64 << width) - 1;
        let mut counts = vec![0usize; 1 << width];
        for &(h, _) in items.iter() {
            counts[((h >> shift) & mask) as usize] += 1;
        }
        let mut start = 0;
        for c in counts.iter_mut() {
            (*c, start) = (start, start + *c);
        }
        for &item in items.iter() {
            let b = ((item.0 >> shift) & mask) as usize;
            scratch[counts[b]] = item;
            counts[b] += 1;
        }
        std::mem::swap(items, &mut scratch);
        shift += width;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct VecIds(Vec<Vec<u8>>);
    impl IdResolver for VecIds {
        fn id_of(&self, slot: u32) -> Option<&[u8]> {
            self.0.get(slot as usize).map(|v| v.as_slice())
        }
    }

    #[test]
    fn insert_replace_remove() {
        let mut ids = VecIds(vec![]);
        let mut index = IdIndex::default();
        for i in 0..1000u32 {
            ids.0.push(format!("id-{}", i % 600).into_bytes());
            let prev = index.insert(&ids.0[i as usize].clone(), i, &ids);
            assert_eq!(prev, if i >= 600 { Some(i - 600) } else { None });
        }
        assert_eq!(index.len(), 600);
        assert_eq!(index.get(b"id-5", &ids), Some(605));
        assert_eq!(index.get(b"id-599", &ids), Some(599));
        assert_eq!(index.get(b"nope", &ids), None);
        assert_eq!(index.remove(b"id-5", Some(5), &ids), None, "stale slot does not remove");
        assert_eq!(index.remove(b"id-5", Some(605), &ids), Some(605));
        assert_eq!(index.get(b"id-5", &ids), None);
        assert_eq!(index.remove(b"id-6", None, &ids), Some(606));
        assert_eq!(index.len(), 598);
        assert!(index.heap_bytes() >= 598 * 5);
    }

    #[test]
    fn bulk_load_matches_one_by_one_inserts() {
        let ids = VecIds((0..5000u32).map(|i| format!("id-{}", (i * 7919) % 3001).into_bytes()).collect());
        let mut one_by_one = IdIndex::default();
        let mut replaced_a = Vec::new();
        for (slot, id) in ids.0.iter().enumerate() {
            if let Some(old) = one_by_one.insert(id, slot as u32, &ids) {
                replaced_a.push(old);
            }
        }
        let mut bulk = IdIndex::default();
        let mut replaced_b = Vec::new();
        bulk.bulk_load(ids.0.iter().enumerate().map(|(s, id)| (s as u32, id.as_slice())), &ids, |old| replaced_b.push(old));
        replaced_a.sort_unstable();
        replaced_b.sort_unstable();
        assert_eq!(replaced_a, replaced_b);
        assert_eq!(bulk.len(), one_by_one.len());
        for id in &ids.0 {
            assert_eq!(bulk.get(id, &ids), one_by_one.get(id, &ids));
        }
    }

    /// Random upserts, removes, sweeps and bulk loads against a HashMap.
    #[test]
    fn matches_a_hash_map_under_churn() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut ids = VecIds(vec![]);
        let mut index = IdIndex::default();
        let mut model = std::collections::HashMap::<Vec<u8>, u32>::new();
        for round in 0..40_000u32 {
            let key = format!("k{}", next(3_000)).into_bytes();
            match next(100) {
                0..=59 => {
                    let slot = ids.0.len() as u32;
                    ids.0.push(key.clone());
                    assert_eq!(index.insert(&key, slot, &ids), model.insert(key, slot), "round {round}");
                }
                60..=97 => {
                    let want = model.get(&key).copied();
                    // Half the time name the slot: a stale one must not remove.
                    let named = if next(2) == 0 { want.map(|s| s + next(2) as u32) } else { None };
                    let removed = index.remove(&key, named, &ids);
                    let expect = match (want, named) {
                        (Some(w), Some(n)) if n != w => None,
                        (w, _) => w,
                    };
                    assert_eq!(removed, expect, "round {round}");
                    if expect.is_some() {
                        model.remove(&key);
                    }
                }
                98 => {
                    let cut = next(3) as u32;
                    index.retain(|slot| slot % 3 != cut);
                    model.retain(|_, slot| *slot % 3 != cut);
                }
                _ => index.reserve(next(500) as usize, &ids),
            }
            assert_eq!(index.len(), model.len());
        }
        for (key, slot) in &model {
            assert_eq!(index.get(key, &ids), Some(*slot));
        }
        for k in 3_000..3_100 {
            assert_eq!(index.get(format!("k{k}").as_bytes(), &ids), None);
        }
        // Churn at a bounded size must not grow the table without bound.
        assert!(index.heap_bytes() <= 1024 * 64, "{} bytes for {} ids", index.heap_bytes(), index.len());
    }

    /// Every entry on one home chunk with one tag: long probe chains,
    /// DELETED markers reused, rebuilds at the same size and doubled.
    #[test]
    fn colliding_hashes_probe_past_full_chunks() {
        let hash_of = |slot: u32| (0x5au64 << 57) | (u64::from(slot) << 32); // same home (low bits 0), same tag
        let mut table = Table::with_capacity(0);
        let find = |t: &Table, slot: u32| t.find(hash_of(slot), |s| s == slot).map(|(c, i)| t.chunks[c].slots[i]);
        for slot in 0..200 {
            table.upsert(hash_of(slot), slot, |_| false, hash_of);
        }
        assert_eq!(table.len, 200);
        assert!(table.chunks.len() >= 32);
        for slot in (0..200).step_by(2) {
            let (c, i) = table.find(hash_of(slot), |s| s == slot).unwrap();
            table.erase(c, i);
        }
        for slot in 0..200 {
            assert_eq!(find(&table, slot), (slot % 2 == 1).then_some(slot), "slot {slot}");
        }
        // Churn through the DELETED markers; sizes stay bounded.
        let chunks = table.chunks.len();
        for round in 0..50u32 {
            for k in 0..100 {
                let slot = 1_000 + round * 100 + k;
                table.upsert(hash_of(slot), slot, |_| false, hash_of);
            }
            for k in 0..100 {
                let slot = 1_000 + round * 100 + k;
                let (c, i) = table.find(hash_of(slot), |s| s == slot).unwrap();
                table.erase(c, i);
            }
            assert_eq!(table.len, 100);
        }
        assert!(table.chunks.len() <= chunks * 2, "{} chunks after churn, {chunks} before", table.chunks.len());
        for slot in 0..200 {
            assert_eq!(find(&table, slot), (slot % 2 == 1).then_some(slot), "slot {slot}");
        }
        assert_eq!(find(&table, 5_000), None);
    }

    #[test]
    fn chunk_sizing_keeps_empty_entries() {
        for entries in [0usize, 1, 10, 11, 12, 100, 10_000, 1_000_000] {
            let chunks = chunks_for(entries);
            assert!(chunks.is_power_of_two());
            assert!(capacity(chunks) >= entries);
            assert!(capacity(chunks) < chunks * CHUNK_ENTRIES, "no EMPTY entry left at {entries}");
            assert!(chunks == 1 || capacity(chunks / 2) < entries, "oversized for {entries}");
        }
    }

    #[test]
    fn radix_sort_is_stable() {
        let mut items: Vec<(u64, u32)> = (0..10_000u32).map(|i| ((i as u64 * 2_654_435_761) % 977, i)).collect();
        radix_sort_by_low_bits(&mut items, 24);
        assert!(items.windows(2).all(|w| w[0].0 < w[1].0 || (w[0].0 == w[1].0 && w[0].1 < w[1].1)));
    }
}
