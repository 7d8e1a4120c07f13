//! A cache-line prefetch hint: the one `unsafe` both the ID table and the
//! mapped files need to start a load early.

/// Asks the CPU to start loading the cache line holding `addr` into all
/// cache levels. Only a hint: it never faults, whatever the address, and
/// reads nothing into the program. A no-op off x86_64.
#[inline(always)]
pub(crate) fn prefetch_line(addr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is architecturally a hint: it cannot fault or
    // change memory, for any address (valid, unmapped or null).
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(addr.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// `prefetch_line` for every cache line of the `len` bytes from `base`
/// (any address: prefetches never fault).
#[inline]
pub(crate) fn prefetch_range(base: *const u8, len: usize) {
    for line in (0..len).step_by(64) {
        prefetch_line(base.wrapping_add(line));
    }
}

/// `prefetch_range` over `data`.
#[inline]
pub(crate) fn prefetch_slice<T>(data: &[T]) {
    prefetch_range(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data));
}
