//! The ID index: ID bytes -> slot. The table stores only the 4-byte slot
//! number; the ID bytes stay in the mapped ids file and are fetched through
//! a resolver when hashing or comparing, so the index costs about 5 bytes
//! of heap per live ID (plus the table's load-factor slack).

use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};

/// Maps a slot to its ID bytes. A slot whose ID cannot be read (damaged
/// file) yields `None`, which never compares equal.
pub trait IdResolver {
    fn id_of(&self, slot: u32) -> Option<&[u8]>;
}

pub struct IdIndex {
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl Default for IdIndex {
    fn default() -> IdIndex {
        IdIndex::with_capacity(0)
    }
}

impl IdIndex {
    pub fn with_capacity(capacity: usize) -> IdIndex {
        IdIndex { table: HashTable::with_capacity(capacity), hasher: DefaultHashBuilder::default() }
    }

    pub fn hash(&self, id: &[u8]) -> u64 {
        self.hasher.hash_one(id)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Heap bytes held by the table.
    pub fn heap_bytes(&self) -> usize {
        self.table.allocation_size()
    }

    pub fn get(&self, id: &[u8], ids: &impl IdResolver) -> Option<u32> {
        self.find(id, |slot| ids.id_of(slot) == Some(id))
    }

    /// The slot of `id`, as `get`, with the comparison left to the caller:
    /// `is_id(slot)` is asked for each candidate slot whose hash tag
    /// matches (nearly always one), and must say whether it holds `id`.
    /// Lets a reader fetch what it needs of the candidate in the same trip.
    #[inline]
    pub fn find(&self, id: &[u8], mut is_id: impl FnMut(u32) -> bool) -> Option<u32> {
        self.table.find(self.hash(id), |&slot| is_id(slot)).copied()
    }

    /// Points `id` at `slot`; returns the slot it pointed at before.
    pub fn insert(&mut self, id: &[u8], slot: u32, ids: &impl IdResolver) -> Option<u32> {
        let hash = self.hash(id);
        let hasher = &self.hasher;
        let rehash = |&s: &u32| hasher.hash_one(ids.id_of(s).unwrap_or(&[]));
        match self.table.entry(hash, |&s| ids.id_of(s) == Some(id), rehash) {
            Entry::Occupied(mut e) => Some(std::mem::replace(e.get_mut(), slot)),
            Entry::Vacant(e) => {
                e.insert(slot);
                None
            }
        }
    }

    /// Removes `id` if it currently points at `slot` (or at any slot when
    /// `slot` is None); returns the slot removed.
    pub fn remove(&mut self, id: &[u8], slot: Option<u32>, ids: &impl IdResolver) -> Option<u32> {
        let hash = self.hash(id);
        let entry = self.table.find_entry(hash, |&s| ids.id_of(s) == Some(id)).ok()?;
        if slot.is_some_and(|want| *entry.get() != want) {
            return None;
        }
        Some(entry.remove().0)
    }

    /// Loads many (ID, slot) entries at once, in slot order semantics: a
    /// later slot of an ID replaces an earlier one. `replaced(old_slot)` is
    /// called for every slot so replaced.
    ///
    /// The entries are hashed in one pass, then inserted in the order of
    /// their home bucket (a stable radix sort, so an ID's slots keep their
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
        // Home buckets are the low bits of the hash (for any table size
        // near this one, ordering by these bits gives a few sequential sweeps).
        let bits = (hashed.len().max(2) * 8 / 7).next_power_of_two().trailing_zeros().clamp(1, 32);
        radix_sort_by_low_bits(&mut hashed, bits);
        let hasher = &self.hasher;
        let rehash = |&s: &u32| hasher.hash_one(ids.id_of(s).unwrap_or(&[]));
        for (hash, slot) in hashed {
            // The ID bytes are needed only when a probe meets a candidate
            // with the same tag (an upsert, or a rare tag collision), so they
            // are fetched only then: in bucket order they would be random reads.
            let same_id = |&s: &u32| ids.id_of(s).is_some_and(|a| ids.id_of(slot) == Some(a));
            match self.table.entry(hash, same_id, rehash) {
                Entry::Occupied(mut e) => replaced(std::mem::replace(e.get_mut(), slot)),
                Entry::Vacant(e) => {
                    e.insert(slot);
                }
            }
        }
    }

    /// Keeps only the entries whose slot passes `keep`, in one sweep over
    /// the table (bucket order: sequential, unlike a remove per ID).
    pub fn retain(&mut self, mut keep: impl FnMut(u32) -> bool) {
        self.table.retain(|slot| keep(*slot));
    }

    pub fn reserve(&mut self, additional: usize, ids: &impl IdResolver) {
        let hasher = &self.hasher;
        self.table.reserve(additional, |&s| hasher.hash_one(ids.id_of(s).unwrap_or(&[])));
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

    #[test]
    fn radix_sort_is_stable() {
        let mut items: Vec<(u64, u32)> = (0..10_000u32).map(|i| ((i as u64 * 2_654_435_761) % 977, i)).collect();
        radix_sort_by_low_bits(&mut items, 24);
        assert!(items.windows(2).all(|w| w[0].0 < w[1].0 || (w[0].0 == w[1].0 && w[0].1 < w[1].1)));
    }
}
