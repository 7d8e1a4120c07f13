//! The set of live slots, one bit each: exact and PQ scans skip dead slots
//! without touching the ID index.

#[derive(Clone, Default)]
pub struct LiveSet {
    words: Vec<u64>,
}

impl LiveSet {
    /// Makes room for slots below `slots` (new slots start dead).
    pub fn grow(&mut self, slots: u64) {
        let words = slots.div_ceil(64) as usize;
        if words > self.words.len() {
            self.words.resize(words, 0);
        }
    }

    pub fn set(&mut self, slot: u64) {
        self.words[(slot / 64) as usize] |= 1 << (slot % 64);
    }

    pub fn clear(&mut self, slot: u64) {
        self.words[(slot / 64) as usize] &= !(1 << (slot % 64));
    }

    pub fn contains(&self, slot: u64) -> bool {
        self.words.get((slot / 64) as usize).is_some_and(|w| w & (1 << (slot % 64)) != 0)
    }

    /// The bitmap: bit `s % 64` of word `s / 64` is slot `s`.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Live slots in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.iter_from(0)
    }

    /// Live slots from `start` on, in ascending order.
    pub fn iter_from(&self, start: u64) -> impl Iterator<Item = u64> + '_ {
        let first = (start / 64) as usize;
        self.words.iter().enumerate().skip(first).flat_map(move |(w, &bits)| {
            // The first word loses the bits below `start`.
            let mut bits = if w == first { bits & (u64::MAX << (start % 64)) } else { bits };
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let b = bits.trailing_zeros() as u64;
                bits &= bits - 1;
                Some(w as u64 * 64 + b)
            })
        })
    }

    /// Number of slots in the set.
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Keeps only the slots that are in `other` too.
    pub fn intersect(&mut self, other: &LiveSet) {
        for (i, word) in self.words.iter_mut().enumerate() {
            *word &= other.words.get(i).copied().unwrap_or(0);
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.words.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_clear_iterate() {
        let mut live = LiveSet::default();
        live.grow(200);
        for s in [0, 5, 63, 64, 130, 199] {
            live.set(s);
        }
        live.clear(5);
        assert_eq!(live.iter().collect::<Vec<_>>(), vec![0, 63, 64, 130, 199]);
        assert!(live.contains(64) && !live.contains(5) && !live.contains(1000));
        assert_eq!(live.iter_from(63).collect::<Vec<_>>(), vec![63, 64, 130, 199]);
        assert_eq!(live.iter_from(65).collect::<Vec<_>>(), vec![130, 199]);
        assert_eq!(live.iter_from(200).count(), 0);
    }
}
