//! OmenDB storage engine.
