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
        self.iter_words(0..self.words.len())
    }

    /// Live slots from `start` on, in ascending order.
    pub fn iter_from(&self, start: u64) -> impl Iterator<Item = u64> + '_ {
        let first = ((start / 64) as usize).min(self.words.len());
        // Only the first word holds slots below `start`.
        self.iter_words(first..self.words.len()).filter(move |&s| s >= start)
    }

    /// Live slots of the words in `words` (slots `64 * words.start` to
    /// `64 * words.end`), in ascending order.
    pub fn iter_words(&self, words: std::ops::Range<usize>) -> impl Iterator<Item = u64> + '_ {
        let first = words.start;
        self.words[words].iter().enumerate().flat_map(move |(w, &bits)| {
            let w = first + w;
            let mut bits = bits;
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

    /// Up to `parts` consecutive ranges of words, together all of them,
    /// holding about as many slots each (none empty unless the set is).
    pub fn split(&self, parts: usize) -> Vec<std::ops::Range<usize>> {
        let per_part = self.count().div_ceil(parts.max(1) as u64).max(1);
        let mut ranges = Vec::with_capacity(parts);
        let (mut start, mut held) = (0, 0);
        for (w, bits) in self.words.iter().enumerate() {
            held += u64::from(bits.count_ones());
            if held >= per_part {
                ranges.push(start..w + 1);
                (start, held) = (w + 1, 0);
            }
        }
        match ranges.last_mut() {
            Some(last) if held == 0 => last.end = self.words.len(),
            _ => ranges.push(start..self.words.len()),
        }
        ranges
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
        assert_eq!(live.iter_words(1..4).collect::<Vec<_>>(), vec![64, 130, 199]);
    }

    #[test]
    fn split_covers_every_word_in_balanced_parts() {
        let mut live = LiveSet::default();
        live.grow(64 * 10);
        for s in (0..64 * 10).step_by(3) {
            live.set(s);
        }
        for parts in 1..=12 {
            let ranges = live.split(parts);
            assert!(!ranges.is_empty() && ranges.len() <= parts, "{parts}: {ranges:?}");
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[ranges.len() - 1].end, 10);
            assert!(ranges.windows(2).all(|w| w[0].end == w[1].start), "{ranges:?}");
            let counts: Vec<usize> = ranges.iter().map(|r| live.iter_words(r.clone()).count()).collect();
            assert_eq!(counts.iter().sum::<usize>(), live.count() as usize);
            assert!(counts.iter().all(|&c| c > 0), "{parts}: {counts:?}");
        }
        assert_eq!(LiveSet::default().split(2), vec![0..0]);
    }
}
