//! Search: the flat (exact) distance kernels and the blocked exact search
//! of query batches (a matrix product). The store's search paths
//! (store/read.rs, store/pq.rs) use these and the PQ scans of
//! `quantization`; the ANN index will live here.

pub(crate) mod blocked;
pub(crate) mod distance;
