//! crc32c (Castagnoli), the checksum of every on-disk structure.
//!
//! Two well-kept implementations of the same function: `crc-fast` (carry-
//! less multiplication, about 2.5x faster on kilobyte buffers such as a
//! vector) and `crc32c` (SSE4.2 instruction, faster on the tiny appends of
//! slot records and IDs). Both give identical values (tested below), so the
//! choice is only about speed.

use crc_fast::{CrcAlgorithm, Digest};

/// Below this length the plain instruction loop beats the folding setup.
const LARGE: usize = 256;

/// The crc32c of `prefix ++ data`, given `crc` = the crc32c of `prefix`.
#[inline]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    if data.len() < LARGE {
        return crc32c::crc32c_append(crc, data);
    }
    // crc-fast's state is the register before the final xor.
    let mut digest = Digest::new_with_init_state(CrcAlgorithm::Crc32Iscsi, u64::from(crc ^ u32::MAX));
    digest.update(data);
    digest.finalize() as u32
}

#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

/// `crc32c_append(crc, &value.to_le_bytes())` in one SSE4.2 instruction
/// where the CPU has it. (The general path splits the bytes at 8-byte
/// alignment and steps through them; as the seed of a re-ranked vector's
/// checksum it cost about a quarter of each candidate's time at 1M x 768,
/// where memory is the limit.)
#[inline]
pub fn crc32c_append_u64(crc: u32, value: u64) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: SSE4.2 was detected on this CPU just above, the only
        // requirement of this `target_feature(enable = "sse4.2")` fn.
        return unsafe { crc32c_u64_sse42(crc, value) };
    }
    crc32c_append(crc, &value.to_le_bytes())
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn crc32c_u64_sse42(crc: u32, value: u64) -> u32 {
    // The instruction takes the register without the conventional
    // inversions; it consumes the eight bytes least significant first,
    // as they lie in memory little-endian.
    !(std::arch::x86_64::_mm_crc32_u64(u64::from(!crc), value) as u32)
}

/// Seals `out`: appends the crc32c of its contents (little-endian), as
/// every self-contained byte format of the store ends.
pub fn seal(out: &mut Vec<u8>) {
    let crc = crc32c(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The contents of sealed bytes (`seal`'s output), `None` when they are
/// too short to hold a crc or it does not match.
pub fn unseal(bytes: &[u8]) -> Option<&[u8]> {
    let (body, crc) = bytes.split_last_chunk::<4>()?;
    (crc32c(body) == u32::from_le_bytes(*crc)).then_some(body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sealed_bytes_unseal_and_damage_is_refused() {
        let mut out = b"contents".to_vec();
        super::seal(&mut out);
        assert_eq!(super::unseal(&out), Some(&b"contents"[..]));
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 1;
            assert_eq!(super::unseal(&bad), None, "byte {i}");
        }
        assert_eq!(super::unseal(&out[..3]), None);
    }

    #[test]
    fn both_implementations_agree() {
        let mut x = 7u64;
        for len in [0usize, 1, 8, 9, 15, 16, 255, 256, 257, 1000, 3072, 4096, 65_537] {
            for seed in [0u32, 1, 0xdead_beef, u32::MAX] {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        (x >> 33) as u8
                    })
                    .collect();
                assert_eq!(super::crc32c_append(seed, &data), crc32c::crc32c_append(seed, &data), "len {len}");
                if let Ok(word) = <[u8; 8]>::try_from(&data[..len.min(8)]) {
                    let value = u64::from_le_bytes(word);
                    assert_eq!(super::crc32c_append_u64(seed, value), crc32c::crc32c_append(seed, &word), "u64 {value:#x}");
                }
            }
        }
    }
}
