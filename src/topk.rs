//! Keeps the k smallest (distance, key) pairs seen.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub distance: f32,
    pub key: u64,
}

impl Eq for Candidate {}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance.total_cmp(&other.distance).then(self.key.cmp(&other.key))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A bounded max-heap: the root is the worst candidate kept.
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Candidate>,
}

impl TopK {
    pub fn new(k: usize) -> TopK {
        TopK { k, heap: BinaryHeap::with_capacity(k.min(1 << 16) + 1) }
    }

    /// Distance a candidate must beat to enter (infinite until k are kept).
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::INFINITY
        } else {
            self.heap.peek().map_or(f32::INFINITY, |c| c.distance)
        }
    }

    #[inline]
    pub fn push(&mut self, distance: f32, key: u64) {
        if self.k == 0 {
            return;
        }
        let c = Candidate { distance, key };
        if self.heap.len() < self.k {
            self.heap.push(c);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if c < *worst {
                *worst = c;
            }
        }
    }

    /// The candidates, best first.
    pub fn into_sorted(self) -> Vec<Candidate> {
        self.heap.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_smallest_sorted() {
        let values: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32).collect();
        let mut top = TopK::new(10);
        for (i, &d) in values.iter().enumerate() {
            top.push(d, i as u64);
        }
        let got: Vec<f32> = top.into_sorted().iter().map(|c| c.distance).collect();
        assert_eq!(got, (0..10).map(|x| x as f32).collect::<Vec<_>>());
        let mut empty = TopK::new(0);
        empty.push(1.0, 1);
        assert!(empty.into_sorted().is_empty());
    }
}
