//! Which of the CPU's SIMD paths the engine's own kernels take (the
//! checksum and matrix-product crates choose their own).
//!
//! Every kernel has a portable twin with the same results (each tested
//! against it), so the choice changes speed only. `OMENDB_SIMD`, read once
//! at the first kernel call, caps it: `avx2` leaves out the AVX-512 paths,
//! `portable` every SIMD path (what a CPU without them, or another
//! architecture, runs); unset or any other value, every path the CPU has.
//! The tests run the integration suites under both caps, and a benchmark
//! under a cap measures a narrower CPU's paths on a wider one.

use std::sync::OnceLock;

/// The widest paths allowed, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Portable,
    Avx2,
    Avx512,
}

fn cap() -> Level {
    static CAP: OnceLock<Level> = OnceLock::new();
    *CAP.get_or_init(|| parse(std::env::var("OMENDB_SIMD").ok().as_deref()))
}

fn parse(value: Option<&str>) -> Level {
    match value.map(str::trim).map(str::to_ascii_lowercase).as_deref() {
        Some("portable") => Level::Portable,
        Some("avx2") => Level::Avx2,
        _ => Level::Avx512,
    }
}

/// Whether the AVX2 paths may run (the CPU's features still decide).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only x86-64 has such paths
#[inline]
pub(crate) fn allows_avx2() -> bool {
    cap() >= Level::Avx2
}

/// Whether the AVX-512 paths may run (the CPU's features still decide).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only x86-64 has such paths
#[inline]
pub(crate) fn allows_avx512() -> bool {
    cap() >= Level::Avx512
}

/// AVX2 on this CPU, and allowed.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn avx2() -> bool {
    // std caches the CPUID result in an atomic; this is two loads and tests.
    allows_avx2() && std::arch::is_x86_feature_detected!("avx2")
}

/// AVX-512F on this CPU, and allowed.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn avx512f() -> bool {
    allows_avx512() && std::arch::is_x86_feature_detected!("avx512f")
}

/// AVX-512 VNNI (byte products summed into 32-bit lanes) on this CPU, and
/// the AVX-512 paths allowed.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn avx512vnni() -> bool {
    avx512f() && std::arch::is_x86_feature_detected!("avx512vnni")
}

/// Whether this CPU is AMD's (CPUID's vendor string): where a hint's
/// effect differs between vendors (`storage::prefetch`). False off x86-64.
#[inline]
pub(crate) fn amd() -> bool {
    static AMD: OnceLock<bool> = OnceLock::new();
    *AMD.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            // Leaf 0: the vendor string in EBX, EDX, ECX.
            let leaf = std::arch::x86_64::__cpuid(0);
            [leaf.ebx, leaf.edx, leaf.ecx].iter().flat_map(|r| r.to_le_bytes()).eq(*b"AuthenticAMD")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn the_vendor_is_the_one_linux_reports() {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("Linux has /proc/cpuinfo");
        let vendor = cpuinfo.lines().find_map(|l| l.strip_prefix("vendor_id")).map(|v| v.trim_start_matches([' ', '\t', ':']).trim());
        assert_eq!(amd(), vendor == Some("AuthenticAMD"), "vendor {vendor:?}");
    }

    #[test]
    fn the_cap_is_read_from_the_variable() {
        assert_eq!(parse(None), Level::Avx512);
        assert_eq!(parse(Some("avx2")), Level::Avx2);
        assert_eq!(parse(Some(" AVX2\n")), Level::Avx2);
        assert_eq!(parse(Some("portable")), Level::Portable);
        assert_eq!(parse(Some("")), Level::Avx512);
        assert_eq!(parse(Some("sse")), Level::Avx512);
        assert!(Level::Portable < Level::Avx2 && Level::Avx2 < Level::Avx512);
    }
}
