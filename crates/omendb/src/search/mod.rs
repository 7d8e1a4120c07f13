//! Search: the flat (exact) distance kernels. The store's search paths
//! (store/read.rs, store/pq.rs) use these and the PQ scans of
//! `quantization`; the ANN index will live here.

pub(crate) mod distance;
