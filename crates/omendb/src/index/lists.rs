//! The inverted lists, in memory: per list, the PQ codes of its vectors
//! in byte-planar blocks of 64 (`quantization::planar`: what the fast-scan
//! kernel reads without transposing) and their slots, both in slot order.

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
}

impl InvertedLists {
    pub fn new(nlist: usize, code_size: usize) -> InvertedLists {
        InvertedLists { code_size, lists: vec![List::default(); nlist], len: 0 }
    }

    /// Empty lists with room for exactly `sizes[i]` codes in list `i`.
    pub fn with_sizes(sizes: &[usize], code_size: usize) -> InvertedLists {
        let lists = sizes
            .iter()
            .map(|&n| List { blocks: Vec::with_capacity(planar::blocks_len(n, code_size)), slots: Vec::with_capacity(n) })
            .collect();
        InvertedLists { code_size, lists, len: 0 }
    }

    pub fn nlist(&self) -> usize {
        self.lists.len()
    }

    /// Vectors in all lists.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends `slot` (greater than every slot in the list) with its code.
    pub fn push(&mut self, list: u32, slot: u32, code: &[u8]) {
        let l = &mut self.lists[list as usize];
        debug_assert!(l.slots.last().is_none_or(|&s| s < slot), "IVF list appended out of slot order");
        debug_assert_eq!(code.len(), self.code_size);
        planar::push(&mut l.blocks, l.slots.len(), code);
        l.slots.push(slot);
        self.len += 1;
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
        self.lists.iter().map(|l| per_list + l.blocks.capacity() as u64 + 4 * l.slots.capacity() as u64).sum()
    }

    /// Gives back the spare capacity of every list (after a bulk build).
    pub fn shrink_to_fit(&mut self) {
        for l in &mut self.lists {
            l.blocks.shrink_to_fit();
            l.slots.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_sized_ahead_never_grow() {
        let sizes = [0usize, 1, 64, 65, 200];
        let mut lists = InvertedLists::with_sizes(&sizes, 16);
        let before = lists.heap_bytes();
        let mut slot = 0;
        for (list, &n) in sizes.iter().enumerate() {
            for _ in 0..n {
                lists.push(list as u32, slot, &[slot as u8; 16]);
                slot += 1;
            }
        }
        assert_eq!(lists.heap_bytes(), before, "a list outgrew the size it was given");
        assert_eq!(lists.len(), sizes.iter().sum::<usize>());
    }

    #[test]
    fn push_remove_keep_slot_order() {
        let mut lists = InvertedLists::new(2, 2);
        lists.push(0, 1, &[1, 1]);
        lists.push(1, 2, &[2, 2]);
        lists.push(0, 3, &[3, 3]);
        lists.push(0, 7, &[7, 7]);
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
    }
}
