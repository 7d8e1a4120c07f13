//! OmenDB storage engine.
pub mod pq;
