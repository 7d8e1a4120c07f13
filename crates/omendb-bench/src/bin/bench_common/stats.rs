//! Summaries of repeated timings shared by the benchmark programs.

/// The median of `v` (the upper of the two middle values for an even
/// count); `v` must not be empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
