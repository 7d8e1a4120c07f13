//! The inverted lists, in memory: per list, the PQ codes of its vectors
//! in byte-planar blocks of 64 (`quantization::planar`: what the fast-scan
//! kernel reads without transposing) and their slots, both in slot order;
//! and per slot, its raw vector's checksum.

use crate::quantization::planar;

/// One list: `slots.len()` codes of `code_size` bytes, in planar blocks.
#[derive(Debug, Clone, Default)]
struct List {
    blocks: Vec<u8>,
    slots: Vec<u32>,
}

/// The lists of an IVF index. Holds live vectors only: a put appends, a
/// delete or replacement removes.
#[derive(Debug, Clone)]
pub struct InvertedLists {
    code_size: usize,
    lists: Vec<List>,
    len: usize,
    /// Per slot pushed, its raw vector's checksum (the slot record's
    /// `vector_crc`): the re-rank verifies a candidate's vector against it
    /// instead of reading the slot record, a second random read a
    /// candidate that maps the slots file into the process a fault-around
    /// window at a time (24 MB after one search at 1M vectors).
    vector_crcs: Vec<u32>,
}

impl InvertedLists {
    pub fn new(nlist: usize, code_size: usize) -> InvertedLists {
        InvertedLists { code_size, lists: vec![List::default(); nlist], len: 0, vector_crcs: Vec::new() }
    }

    /// Empty lists with room for exactly `sizes[i]` codes in list `i`,
    /// and for checksums of slots below `slots`.
    pub fn with_sizes(sizes: &[usize], code_size: usize, slots: usize) -> InvertedLists {
        let lists = sizes
            .iter()
            .map(|&n| List { blocks: Vec::with_capacity(planar::blocks_len(n, code_size)), slots: Vec::with_capacity(n) })
            .collect();
        InvertedLists { code_size, lists, len: 0, vector_crcs: Vec::with_capacity(slots) }
    }

    pub fn nlist(&self) -> usize {
        self.lists.len()
    }

    /// Vectors in all lists.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends `slot` (greater than every slot in the list) with its code
    /// and its raw vector's checksum.
    pub fn push(&mut self, list: u32, slot: u32, code: &[u8], vector_crc: u32) {
        self.set_vector_crc(slot, vector_crc);
        let l = &mut self.lists[list as usize];
        debug_assert!(l.slots.last().is_none_or(|&s| s < slot), "IVF list appended out of slot order");
        debug_assert_eq!(code.len(), self.code_size);
        planar::push(&mut l.blocks, l.slots.len(), code);
        l.slots.push(slot);
        self.len += 1;
    }

    fn set_vector_crc(&mut self, slot: u32, vector_crc: u32) {
        let slot = slot as usize;
        if slot >= self.vector_crcs.len() {
            self.vector_crcs.resize(slot + 1, 0);
        }
        self.vector_crcs[slot] = vector_crc;
    }

    /// The raw vector checksum pushed with `slot` (0 for a slot never pushed).
    pub fn vector_crc(&self, slot: u64) -> u32 {
        self.vector_crcs.get(slot as usize).copied().unwrap_or(0)
    }

    /// Appends `slots` (each greater than every slot in the list, their
    /// checksums already set) with their `codes`, one after another.
    fn push_many(&mut self, list: u32, slots: &[u32], codes: &[u8]) {
        let l = &mut self.lists[list as usize];
        debug_assert!(slots.first().is_none_or(|&s| l.slots.last().is_none_or(|&last| last < s)), "IVF list appended out of slot order");
        debug_assert_eq!(codes.len(), slots.len() * self.code_size);
        planar::push_rows(&mut l.blocks, l.slots.len(), codes, self.code_size);
        l.slots.extend_from_slice(slots);
        self.len += slots.len();
    }

    /// Removes `slot` from `list`; false if it is not there.
    pub fn remove(&mut self, list: u32, slot: u32) -> bool {
        let Some(l) = self.lists.get_mut(list as usize) else { return false };
        let Ok(i) = l.slots.binary_search(&slot) else { return false };
        planar::remove(&mut l.blocks, l.slots.len(), i, self.code_size);
        l.slots.remove(i);
        self.len -= 1;
        true
    }

    /// The codes (planar blocks) and slots of `list`.
    pub fn list(&self, list: u32) -> (&[u8], &[u32]) {
        let l = &self.lists[list as usize];
        (&l.blocks, &l.slots)
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> u64 {
        let per_list = std::mem::size_of::<List>() as u64;
        let lists: u64 = self.lists.iter().map(|l| per_list + l.blocks.capacity() as u64 + 4 * l.slots.capacity() as u64).sum();
        lists + 4 * self.vector_crcs.capacity() as u64
    }

    /// Gives back the spare capacity of every list (after a bulk build).
    pub fn shrink_to_fit(&mut self) {
        for l in &mut self.lists {
            l.blocks.shrink_to_fit();
            l.slots.shrink_to_fit();
        }
        self.vector_crcs.shrink_to_fit();
    }
}

/// Fills lists sized ahead (`InvertedLists::with_sizes`) from entries in
/// slot order: each list's codes wait in a small staging area, as whole
/// codes, and go into its planar blocks a block row at a time. (Pushed
/// one by one, a code's bytes go to `code_size` cache lines, one a row:
/// at 1M x 768, PQ192x4, that was 40% of an open.)
pub struct ListsBuilder {
    lists: InvertedLists,
    /// Codes a list stages (at most a block).
    stage: usize,
    /// Per list, room for `stage` codes and their slots, and how many are there.
    codes: Vec<u8>,
    slots: Vec<u32>,
    staged: Vec<u8>,
}

/// Bytes of staged codes a builder may hold.
const STAGE_BYTES: usize = 8 << 20;

impl ListsBuilder {
    pub fn new(lists: InvertedLists) -> ListsBuilder {
        let stage = STAGE_BYTES / (lists.nlist() * lists.code_size).max(1);
        ListsBuilder::with_stage(lists, stage.clamp(1, planar::BLOCK))
    }

    fn with_stage(lists: InvertedLists, stage: usize) -> ListsBuilder {
        let (nlist, cs) = (lists.nlist(), lists.code_size);
        debug_assert!((1..=planar::BLOCK).contains(&stage));
        ListsBuilder { lists, stage, codes: vec![0; nlist * stage * cs], slots: vec![0; nlist * stage], staged: vec![0; nlist] }
    }

    /// Appends `slot` (greater than every slot pushed to `list`) with its
    /// code and its raw vector's checksum.
    pub fn push(&mut self, list: u32, slot: u32, code: &[u8], vector_crc: u32) {
        self.lists.set_vector_crc(slot, vector_crc);
        let (l, cs, stage) = (list as usize, self.lists.code_size, self.stage);
        let n = self.staged[l] as usize;
        self.codes[(l * stage + n) * cs..][..cs].copy_from_slice(code);
        self.slots[l * stage + n] = slot;
        if n + 1 == stage {
            self.flush(l, stage);
        } else {
            self.staged[l] = (n + 1) as u8;
        }
    }

    fn flush(&mut self, l: usize, n: usize) {
        let (cs, stage) = (self.lists.code_size, self.stage);
        let slots = &self.slots[l * stage..l * stage + n];
        self.lists.push_many(l as u32, slots, &self.codes[l * stage * cs..(l * stage + n) * cs]);
        self.staged[l] = 0;
    }

    /// The lists, every staged code in them.
    pub fn finish(mut self) -> InvertedLists {
        for l in 0..self.lists.nlist() {
            let n = self.staged[l] as usize;
            self.flush(l, n);
        }
        self.lists
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_sized_ahead_never_grow() {
        let sizes = [0usize, 1, 64, 65, 200];
        let mut lists = InvertedLists::with_sizes(&sizes, 16, sizes.iter().sum());
        let before = lists.heap_bytes();
        let mut slot = 0;
        for (list, &n) in sizes.iter().enumerate() {
            for _ in 0..n {
                lists.push(list as u32, slot, &[slot as u8; 16], slot);
                slot += 1;
            }
        }
        assert_eq!(lists.heap_bytes(), before, "a list outgrew the size it was given");
        assert_eq!(lists.len(), sizes.iter().sum::<usize>());
    }

    #[test]
    fn push_remove_keep_slot_order() {
        let mut lists = InvertedLists::new(2, 2);
        lists.push(0, 1, &[1, 1], 11);
        lists.push(1, 2, &[2, 2], 12);
        lists.push(0, 3, &[3, 3], 13);
        lists.push(0, 7, &[7, 7], 17);
        assert_eq!(lists.len(), 4);
        assert!(lists.remove(0, 3));
        assert!(!lists.remove(0, 3));
        assert!(!lists.remove(1, 7));
        assert!(!lists.remove(9, 1));
        let codes = |list: u32| {
            let (blocks, slots) = lists.list(list);
            let mut out = vec![0u8; 2];
            (0..slots.len()).map(|i| { planar::get(blocks, i, &mut out); out.clone() }).collect::<Vec<_>>()
        };
        assert_eq!(codes(0), vec![vec![1u8, 1], vec![7, 7]]);
        assert_eq!(lists.list(0).1, &[1u32, 7][..]);
        assert_eq!(codes(1), vec![vec![2u8, 2]]);
        assert_eq!(lists.list(1).1, &[2u32][..]);
        assert_eq!(lists.len(), 3);
        assert_eq!([1, 2, 7, 4, 1000].map(|slot| lists.vector_crc(slot)), [11, 12, 17, 0, 0]);
    }

    #[test]
    fn builder_fills_the_lists_one_by_one_pushes_do() {
        let (nlist, cs) = (5usize, 3usize);
        let mut rng = crate::quantization::kmeans::Rng::new(3);
        let entries: Vec<(u32, u32, [u8; 3])> = (0..400u32)
            .map(|slot| {
                let list = (rng.next_u64() % nlist as u64) as u32;
                (list, slot, [slot as u8, (slot >> 8) as u8, list as u8 ^ 0x5A])
            })
            .collect();
        let mut sizes = vec![0usize; nlist];
        let mut want = InvertedLists::new(nlist, cs);
        for &(list, slot, code) in &entries {
            sizes[list as usize] += 1;
            want.push(list, slot, &code, slot.wrapping_mul(0x9E37_79B9));
        }
        for stage in [1, 2, 7, 63, 64] {
            let mut builder = ListsBuilder::with_stage(InvertedLists::with_sizes(&sizes, cs, entries.len()), stage);
            for &(list, slot, code) in &entries {
                builder.push(list, slot, &code, slot.wrapping_mul(0x9E37_79B9));
            }
            let got = builder.finish();
            assert_eq!(got.len(), want.len());
            for list in 0..nlist as u32 {
                assert_eq!(got.list(list), want.list(list), "list {list}, staging {stage}");
            }
            assert!((0..entries.len() as u64).all(|slot| got.vector_crc(slot) == want.vector_crc(slot)));
        }
    }
}
