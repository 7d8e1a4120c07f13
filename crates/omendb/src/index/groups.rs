//! The coarse quantizer's search structure for many lists: the centroids
//! clustered into about sqrt(nlist) groups, so that a vector scores the
//! group centroids, then only the members of its nearest few groups,
//! instead of every centroid (a two-level coarse quantizer, as faiss's
//! `IndexIVF` over an `IndexHNSWFlat` quantizer serves the same purpose).
//!
//! Derived data, never stored: built from the centroids (seeded k-means
//! over them, then each centroid joins its nearest group centroid), so the
//! same centroids always give the same groups. The coarse quantizer keeps
//! its centroid rows in group order, so each group's members are one
//! contiguous block of rows (one matrix product a group).

use crate::quantization::gemm;
use crate::quantization::kmeans;
use crate::quantization::PqMetric;

/// Seed of the grouping k-means.
const SEED: u64 = 0x6E0_C0A85E;
/// Grouping k-means iterations: the groups only steer the search, and the
/// members are scored exactly. With `SAMPLE_PER_GROUP`, the build (at
/// every open) takes 2.3x less time than 8 iterations on 32 centroids a
/// group, for about 1% more vectors out of their nearest list
/// (`ivf_put coarse`, 4,096 and 16,384 lists x 768).
const ITERATIONS: u32 = 4;
/// Centroids sampled per group for the grouping k-means (all of them
/// join a group afterwards).
const SAMPLE_PER_GROUP: usize = 16;

#[derive(Debug, Clone)]
pub(super) struct Groups {
    /// `groups x dim`: the mean of each group's members.
    pub centroids: Vec<f32>,
    /// Per group, as the coarse quantizer's row bias (`|g|^2 / 2` or 0).
    pub bias: Vec<f32>,
    /// Group `i`'s rows are `starts[i]..starts[i + 1]`.
    pub starts: Vec<u32>,
    /// The list of each row.
    pub list_at: Vec<u32>,
    /// The row of each list.
    pub row_of: Vec<u32>,
}

impl Groups {
    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        4 * (self.centroids.capacity() + self.bias.capacity() + self.starts.capacity() + self.list_at.capacity() + self.row_of.capacity())
    }
}

impl Groups {
    /// Groups the `nlist x dim` `centroids` (list order, all within the
    /// f32-safe range); returns the groups and the centroids in row
    /// (group) order.
    pub fn build(centroids: &[f32], dim: usize, metric: PqMetric) -> (Groups, Vec<f32>) {
        let nlist = centroids.len() / dim;
        let k = ((nlist as f64).sqrt().round() as usize).clamp(1, nlist);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        let mut rng = kmeans::Rng::new(SEED);
        let mut picks = kmeans::sample_indices(nlist, (SAMPLE_PER_GROUP * k).min(nlist), &mut rng);
        picks.sort_unstable();
        let sample: Vec<f32> = picks.iter().flat_map(|&i| &centroids[i * dim..(i + 1) * dim]).copied().collect();
        let problem = kmeans::Problem { data: &sample, dsub: dim, k, iterations: ITERATIONS, seed: SEED, threads };
        let seeds = kmeans::kmeans(&problem, &mut || {});
        let half = row_bias(&seeds, dim, PqMetric::L2);
        let mut group_of = vec![0u32; nlist];
        gemm::nearest_rows(&seeds, &half, dim, centroids, &mut group_of, threads);

        // Rows in group order (lists ascending within a group); groups
        // nobody joined are dropped.
        let mut counts = vec![0u32; k];
        for &g in &group_of {
            counts[g as usize] += 1;
        }
        let kept: Vec<usize> = (0..k).filter(|&g| counts[g] > 0).collect();
        let mut renumber = vec![u32::MAX; k];
        let mut starts = Vec::with_capacity(kept.len() + 1);
        starts.push(0u32);
        for (new, &g) in kept.iter().enumerate() {
            renumber[g] = new as u32;
            starts.push(starts[new] + counts[g]);
        }
        let mut next: Vec<u32> = starts[..kept.len()].to_vec();
        let mut list_at = vec![0u32; nlist];
        let mut row_of = vec![0u32; nlist];
        for (list, &g) in group_of.iter().enumerate() {
            let g = renumber[g as usize] as usize;
            let row = next[g];
            next[g] += 1;
            list_at[row as usize] = list as u32;
            row_of[list] = row;
        }
        let rows: Vec<f32> = list_at.iter().flat_map(|&l| &centroids[l as usize * dim..(l as usize + 1) * dim]).copied().collect();

        // Each group's centroid is its members' mean (in f64: finite).
        let mut means = Vec::with_capacity(kept.len() * dim);
        for w in starts.windows(2) {
            let mut sum = vec![0.0f64; dim];
            for row in rows[w[0] as usize * dim..w[1] as usize * dim].chunks_exact(dim) {
                sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
            }
            let inv = 1.0 / (w[1] - w[0]) as f64;
            means.extend(sum.iter().map(|s| (s * inv) as f32));
        }
        let bias = row_bias(&means, dim, metric);
        (Groups { centroids: means, bias, starts, list_at, row_of }, rows)
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.bias.len()
    }

    /// The rows of group `g`.
    pub fn rows(&self, g: usize) -> std::ops::Range<usize> {
        self.starts[g] as usize..self.starts[g + 1] as usize
    }
}

/// The score bias of each row of `rows`: `|c|^2 / 2` for L2 (so that
/// `bias - <x, c>` ranks as the squared distance), 0 for inner product.
pub(super) fn row_bias(rows: &[f32], dim: usize, metric: PqMetric) -> Vec<f32> {
    match metric {
        PqMetric::L2 => rows.chunks_exact(dim).map(|c| 0.5 * c.iter().map(|v| v * v).sum::<f32>()).collect(),
        PqMetric::InnerProduct => vec![0.0; rows.len() / dim],
    }
}
