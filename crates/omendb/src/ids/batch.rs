//! Batches of IDs passed Arrow-style: one byte buffer and n + 1 offsets.

use crate::error::{Error, Result};
use crate::options::MAX_ID_LEN;

/// A validated, borrowed batch of IDs. `bytes[0]` is the byte at `offsets[0]`
/// (offsets may start past zero, as in an Arrow slice).
#[derive(Clone, Copy)]
pub struct IdBatch<'a> {
    bytes: &'a [u8],
    offsets: &'a [u64],
}

impl<'a> IdBatch<'a> {
    /// A batch of no IDs.
    pub const EMPTY: IdBatch<'static> = IdBatch { bytes: &[], offsets: &[0] };

    /// Checks the offsets alone (non-decreasing, every ID 1..=1024 bytes) and
    /// returns how many bytes they span from `offsets[0]`: what a caller must
    /// be able to read before building the byte slice.
    pub fn span(offsets: &[u64]) -> Result<u64> {
        let Some((&first, rest)) = offsets.split_first() else {
            return Err(Error::invalid("id_offsets must hold n + 1 entries"));
        };
        let mut prev = first;
        for (i, &next) in rest.iter().enumerate() {
            if next < prev {
                return Err(Error::invalid(format!(
                    "id_offsets[{}] = {next} is less than id_offsets[{i}] = {prev}: offsets must not decrease",
                    i + 1
                )));
            }
            check_id_len(next - prev, format_args!("id {i}"))?;
            prev = next;
        }
        Ok(prev - first)
    }

    /// The batch of IDs `bytes[offsets[i] - offsets[0]..offsets[i + 1] - offsets[0]]`;
    /// fails if the offsets decrease, an ID is empty or longer than 1024
    /// bytes, or `bytes` is shorter than the span.
    pub fn new(bytes: &'a [u8], offsets: &'a [u64]) -> Result<IdBatch<'a>> {
        let span = IdBatch::span(offsets)?;
        if (bytes.len() as u64) < span {
            return Err(Error::invalid(format!(
                "id offsets span {span} bytes but the id buffer holds {}",
                bytes.len()
            )));
        }
        Ok(IdBatch { bytes, offsets })
    }

    /// Number of IDs.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The batch holds no IDs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// ID `i` (panics when `i >= len()`).
    pub fn get(&self, i: usize) -> &'a [u8] {
        let base = self.offsets[0];
        &self.bytes[(self.offsets[i] - base) as usize..(self.offsets[i + 1] - base) as usize]
    }

    /// IDs `range` of the batch, as a batch of their own (an Arrow slice).
    pub fn slice(&self, range: std::ops::Range<usize>) -> IdBatch<'a> {
        let base = self.offsets[0];
        let offsets = &self.offsets[range.start..=range.end];
        IdBatch { bytes: &self.bytes[(offsets[0] - base) as usize..], offsets }
    }

    /// The IDs in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }

    /// Total ID bytes in the batch.
    pub fn total_bytes(&self) -> u64 {
        self.offsets[self.len()] - self.offsets[0]
    }
}

/// An owned batch, for Rust callers: `IdBuf::new(["a", "b"])`.
#[derive(Debug, Clone)]
pub struct IdBuf {
    bytes: Vec<u8>,
    offsets: Vec<u64>,
}

/// Empty, with its one offset (a derived default would have none).
impl Default for IdBuf {
    fn default() -> IdBuf {
        IdBuf::with_capacity(0, 0)
    }
}

impl IdBuf {
    /// Packs `ids` into one buffer and its offsets (checked by [`IdBuf::batch`]).
    pub fn new<I, T>(ids: I) -> IdBuf
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        let mut buf = IdBuf::with_capacity(0, 0);
        for id in ids {
            buf.push(id.as_ref());
        }
        buf
    }

    /// An empty buffer with room for `ids` IDs of `bytes` bytes in all.
    pub fn with_capacity(ids: usize, bytes: usize) -> IdBuf {
        let mut offsets = Vec::with_capacity(ids + 1);
        offsets.push(0);
        IdBuf { bytes: Vec::with_capacity(bytes), offsets }
    }

    /// Appends one ID.
    pub fn push(&mut self, id: &[u8]) {
        self.bytes.extend_from_slice(id);
        self.offsets.push(self.bytes.len() as u64);
    }

    /// Number of IDs.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether it holds no ID.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// ID `i` (panics when `i >= len()`).
    pub fn get(&self, i: usize) -> &[u8] {
        &self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Every ID's bytes, one after another (ID i is
    /// `bytes()[offsets()[i]..offsets()[i + 1]]`).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `len() + 1` offsets into `bytes()`, starting at 0.
    pub fn offsets(&self) -> &[u64] {
        &self.offsets
    }

    /// The batch view; fails if an ID is empty or longer than 1024 bytes.
    pub fn batch(&self) -> Result<IdBatch<'_>> {
        IdBatch::new(&self.bytes, &self.offsets)
    }
}

/// Formats an ID for error messages: text when printable, else hex.
/// Refuses an ID length outside 1..=1024 bytes (`what` names the ID).
pub(crate) fn check_id_len(len: u64, what: std::fmt::Arguments<'_>) -> Result<()> {
    if len == 0 || len > MAX_ID_LEN as u64 {
        return Err(Error::invalid(format!("{what} is {len} bytes long; ids must be 1 to {MAX_ID_LEN} bytes")));
    }
    Ok(())
}

pub fn display_id(id: &[u8]) -> String {
    let shown = &id[..id.len().min(64)];
    let more = if id.len() > 64 { "..." } else { "" };
    match std::str::from_utf8(shown) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s:?}{more}"),
        _ => {
            let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}{more}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_offsets() {
        assert!(IdBatch::new(b"abc", &[0, 1, 3]).is_ok());
        assert!(IdBatch::new(b"abc", &[0, 2, 1]).is_err(), "decreasing");
        assert!(IdBatch::new(b"abc", &[0, 0, 3]).is_err(), "empty id");
        assert!(IdBatch::new(b"abc", &[0, 4]).is_err(), "past buffer");
        assert!(IdBatch::new(b"", &[]).is_err(), "no offsets");
        let long = vec![7u8; 1025];
        assert!(IdBatch::new(&long, &[0, 1025]).is_err());
        assert!(IdBatch::new(&long, &[0, 1024]).is_ok());
        let sliced = IdBatch::new(b"cd", &[10, 11, 12]).unwrap();
        assert_eq!(sliced.get(1), b"d");
        assert_eq!(sliced.total_bytes(), 2);
    }

    #[test]
    fn displays_ids() {
        assert_eq!(display_id(b"abc"), "\"abc\"");
        assert_eq!(display_id(&[0, 255]), "0x00ff");
    }
}
