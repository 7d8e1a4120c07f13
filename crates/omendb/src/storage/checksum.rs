//! crc32c (Castagnoli), the checksum of every on-disk structure.
//!
//! Kilobyte buffers such as a vector go to `crc-fast` (carry-less
//! multiplication, about 2.5x faster there than the CRC instruction). Short
//! ones (slot records, IDs, a vector checksum's slot seed) take the SSE4.2
//! instruction inline, or the `crc32c` crate where the CPU lacks it. All
//! give identical values (tested below), so the choice is only about speed.

use crc_fast::{CrcAlgorithm, Digest};

/// Below this length the plain instruction loop beats the folding setup.
const LARGE: usize = 256;

/// The crc32c of `prefix ++ data`, given `crc` = the crc32c of `prefix`.
#[inline]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    if data.len() < LARGE {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: SSE4.2 was detected on this CPU just above, the only
            // requirement of this `target_feature(enable = "sse4.2")` fn.
            return unsafe { short_sse42(crc, data) };
        }
        return crc32c::crc32c_append(crc, data);
    }
    // crc-fast's state is the register before the final xor.
    let mut digest = Digest::new_with_init_state(CrcAlgorithm::Crc32Iscsi, u64::from(crc ^ u32::MAX));
    digest.update(data);
    digest.finalize() as u32
}

/// `crc32c_append` of a short buffer: eight bytes an instruction (unaligned
/// loads), then the rest a byte at a time. Inline, it replaces the crate's
/// call, which splits the bytes at 8-byte alignment first; as the 8-byte
/// slot seed of a re-ranked vector's checksum, that call cost about a
/// quarter of each candidate's time at 1M x 768, where memory is the limit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn short_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    // The instruction works on the register without the conventional
    // inversions; a u64 is consumed least significant byte first.
    let mut words = data.chunks_exact(8);
    let mut reg = u64::from(!crc);
    for word in &mut words {
        reg = _mm_crc32_u64(reg, u64::from_le_bytes(word.try_into().expect("chunks of 8")));
    }
    let mut reg = reg as u32;
    for &byte in words.remainder() {
        reg = _mm_crc32_u8(reg, byte);
    }
    !reg
}

#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
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
        for len in [0usize, 1, 7, 8, 9, 15, 16, 63, 64, 255, 256, 257, 1000, 3072, 4096, 65_537] {
            for seed in [0u32, 1, 0xdead_beef, u32::MAX] {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        (x >> 33) as u8
                    })
                    .collect();
                assert_eq!(super::crc32c_append(seed, &data), crc32c::crc32c_append(seed, &data), "len {len}");
            }
        }
    }
}
