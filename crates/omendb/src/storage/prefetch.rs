//! Cache-line prefetch hints: the one `unsafe` both the ID table and the
//! mapped files need to start a load early.

/// x86's encodings of the hints used (`_MM_HINT_T0`, `_MM_HINT_NTA`).
const INTO_ALL_LEVELS: i32 = 3;
const FOR_ONE_USE: i32 = 0;

#[inline(always)]
fn prefetch<const HINT: i32>(addr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` and `prefetchnta` are architecturally hints: they
    // cannot fault or change memory, for any address (valid, unmapped or null).
    unsafe {
        core::arch::x86_64::_mm_prefetch::<HINT>(addr.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// Asks the CPU to start loading the cache line holding `addr` into all
/// cache levels. Only a hint: it never faults, whatever the address, and
/// reads nothing into the program. A no-op off x86_64.
#[inline(always)]
pub(crate) fn prefetch_line(addr: *const u8) {
    prefetch::<INTO_ALL_LEVELS>(addr);
}

/// `prefetch_line` for every cache line of the `len` bytes from `base`
/// (any address: prefetches never fault).
#[inline]
pub(crate) fn prefetch_range(base: *const u8, len: usize) {
    for line in (0..len).step_by(64) {
        prefetch_line(base.wrapping_add(line));
    }
}

/// `prefetch_range` for bytes read once, soon (the re-rank's pattern: 3
/// KiB vectors at random places in a 3 GB file, all of each 8 vectors
/// ahead). On AMD `prefetchnta` (into the first-level cache, without the
/// outer levels' usual room for them): on an EPYC (Zen 5) microbenchmark
/// 387-459 ns a vector against 517-549 with `prefetch_range`. Elsewhere
/// `prefetch_range` itself: on an Intel Xeon (Granite Rapids) the same
/// microbenchmark took 1,453 ns a vector with `prefetchnta`, 1,066 with
/// no prefetch and 1,031 with `prefetcht0` (and a 1M x 768 batch search
/// answered 1.06x the queries/s with `prefetcht0`).
#[inline]
pub(crate) fn prefetch_range_once(base: *const u8, len: usize) {
    if crate::cpu::amd() {
        for line in (0..len).step_by(64) {
            prefetch::<FOR_ONE_USE>(base.wrapping_add(line));
        }
    } else {
        prefetch_range(base, len);
    }
}

/// The bytes of items read once (`prefetch_range_once`) to ask for ahead
/// of the one being read, within a core's second-level cache: the
/// re-rank's far vectors, 256 at 768 dimensions. On the Intel Xeon host,
/// 1M x 768 (harness, 5 alternating runs, 315 lists, 120 candidates),
/// every candidate asked for first answered 1.04x the queries/s of 8
/// ahead one at a time and 1.075x in batches; at 640 candidates, all
/// ahead answered 0.96x of 128 ahead (the first fell out of the cache
/// before their turn), and 256 ahead as many as 128 there and as all at
/// 320.
const ONCE_AHEAD_BYTES: usize = 768 << 10;

/// How many items of `item_bytes` each a reader of items read once asks
/// for ahead: `ONCE_AHEAD_BYTES` of them (at least 8), or on AMD 8 (its
/// `prefetchnta` lines, measured there at 8, keep no place in the outer
/// caches to wait in).
pub(crate) fn once_ahead(item_bytes: usize) -> usize {
    if crate::cpu::amd() {
        8
    } else {
        (ONCE_AHEAD_BYTES / item_bytes.max(1)).max(8)
    }
}

/// `prefetch_range` over `data`.
#[inline]
pub(crate) fn prefetch_slice<T>(data: &[T]) {
    prefetch_range(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data));
}

#[cfg(test)]
mod tests {
    /// A re-rank of far vectors asks for `ONCE_AHEAD_BYTES` of them ahead
    /// (never fewer than 8 vectors, whatever their size), 8 on AMD.
    #[test]
    fn far_vectors_are_asked_for_within_the_window() {
        for (dim, window) in [(768, 256), (128, 1536), (1024, 192), (65_536, 8), (1, 196_608)] {
            let want = if crate::cpu::amd() { 8 } else { window };
            let bytes = crate::storage::format::vector_record_len(dim) as usize;
            assert_eq!(super::once_ahead(bytes), want, "{dim} dimensions");
        }
    }
}
