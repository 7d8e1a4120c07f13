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
        let hash = self.hash(id);
        self.table.find(hash, |&slot| ids.id_of(slot) == Some(id)).copied()
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

    pub fn reserve(&mut self, additional: usize, ids: &impl IdResolver) {
        let hasher = &self.hasher;
        self.table.reserve(additional, |&s| hasher.hash_one(ids.id_of(s).unwrap_or(&[])));
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
}
