//! The inverted lists, in memory: per list, the PQ codes of its vectors
//! contiguous (so a probe streams them through the ADC scan) and their
//! slots, both in slot order.

/// One list: `slots.len()` codes of `code_size` bytes.
#[derive(Debug, Clone, Default)]
struct List {
    codes: Vec<u8>,
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

    /// Lists from each one's codes and slots (slots ascending, codes
    /// `code_size` bytes each in the same order).
    pub fn from_parts(code_size: usize, parts: Vec<(Vec<u8>, Vec<u32>)>) -> InvertedLists {
        debug_assert!(parts.iter().all(|(c, s)| c.len() == s.len() * code_size && s.windows(2).all(|w| w[0] < w[1])));
        let len = parts.iter().map(|p| p.1.len()).sum();
        InvertedLists { code_size, lists: parts.into_iter().map(|(codes, slots)| List { codes, slots }).collect(), len }
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
        l.codes.extend_from_slice(code);
        l.slots.push(slot);
        self.len += 1;
    }

    /// Removes `slot` from `list`; false if it is not there.
    pub fn remove(&mut self, list: u32, slot: u32) -> bool {
        let Some(l) = self.lists.get_mut(list as usize) else { return false };
        let Ok(i) = l.slots.binary_search(&slot) else { return false };
        l.slots.remove(i);
        l.codes.drain(i * self.code_size..(i + 1) * self.code_size);
        self.len -= 1;
        true
    }

    /// The codes and slots of `list`.
    pub fn list(&self, list: u32) -> (&[u8], &[u32]) {
        let l = &self.lists[list as usize];
        (&l.codes, &l.slots)
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> u64 {
        let per_list = std::mem::size_of::<List>() as u64;
        self.lists.iter().map(|l| per_list + l.codes.capacity() as u64 + 4 * l.slots.capacity() as u64).sum()
    }

    /// Gives back the spare capacity of every list (after a bulk build).
    pub fn shrink_to_fit(&mut self) {
        for l in &mut self.lists {
            l.codes.shrink_to_fit();
            l.slots.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(lists.list(0), (&[1u8, 1, 7, 7][..], &[1u32, 7][..]));
        assert_eq!(lists.list(1), (&[2u8, 2][..], &[2u32][..]));
        assert_eq!(lists.len(), 3);
    }
}
