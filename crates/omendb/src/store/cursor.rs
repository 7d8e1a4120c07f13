//! A cursor over the live (ID, vector) pairs of one moment of a store.
//!
//! It holds the generation that was current (an `Arc`: its files stay
//! mapped even if a compaction or training replaces it) and a copy of the
//! live set, both taken under one read of the view, which writers change
//! only to publish whole batches. Slots are append-only within a
//! generation and their records and vectors are never written again once
//! published, so every read of the cursor sees that moment, whatever
//! writers do meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::generation::Generation;
use super::{process, LiveSet, Store};
use crate::error::{Error, ErrorKind, Result};
use crate::IdBuf;

/// The live (ID, vector) pairs of a store as of the moment
/// [`Store::cursor`] was called, in slot order (the order IDs were last
/// put), page by page. Puts, deletes, compactions and trainings after that
/// moment do not show: no batch is ever half in it.
///
/// A cursor does not borrow its store, but it reads only while the store
/// is open: once the store is closed (or dropped), `next_page` and
/// `next_into` fail with `InvalidArgument`, so a cursor never reads files
/// another open may have truncated since. In a process forked from the one
/// that opened the store it fails the same way.
///
/// ```
/// use omendb::{IdBuf, Options, Store};
///
/// # fn main() -> omendb::Result<()> {
/// # let dir = std::env::temp_dir().join(format!("omendb-doc-cursor-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let store = Store::open(&dir, &Options::create(2))?;
/// store.put_batch(&IdBuf::new(["a", "b", "c"]).batch()?, &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0])?;
/// let mut cursor = store.cursor()?;
/// store.put_batch(&IdBuf::new(["d"]).batch()?, &[2.0, 2.0])?; // after the moment: not seen
/// let page = cursor.next_page(2, true)?;
/// assert_eq!((page.ids.get(0), page.ids.get(1)), (&b"a"[..], &b"b"[..]));
/// assert_eq!(page.vectors, vec![1.0, 0.0, 0.0, 1.0]);
/// assert_eq!(cursor.next_page(2, true)?.ids.len(), 1); // "c"
/// assert!(cursor.next_page(2, true)?.ids.is_empty()); // the end
/// # store.close()?;
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(())
/// # }
/// ```
pub struct Cursor {
    generation: Arc<Generation>,
    live: LiveSet,
    /// The first slot not yet returned.
    next: u64,
    /// Live entries not yet returned.
    remaining: u64,
    dim: usize,
    closed: Arc<AtomicBool>,
    fork_epoch: u64,
}

/// One page of a [`Cursor`]: `ids.len()` entries; row i of `vectors`
/// (`dim` floats) is the vector of ID i, or `vectors` is empty when the
/// page was asked for IDs only.
#[derive(Debug, Clone, Default)]
pub struct CursorPage {
    /// The IDs, in slot order.
    pub ids: IdBuf,
    /// Their vectors, row-major (empty for an IDs-only page).
    pub vectors: Vec<f32>,
}

impl Store {
    /// A cursor over the live entries as of now (see [`Cursor`]). Costs a
    /// copy of the live set (one bit per slot); nothing is read until its
    /// pages are.
    pub fn cursor(&self) -> Result<Cursor> {
        self.check_usable()?;
        let view = self.view.read();
        Ok(Cursor {
            generation: view.generation.clone(),
            remaining: view.live.count(),
            live: view.live.clone(),
            next: 0,
            dim: self.dim,
            closed: self.closed.clone(),
            fork_epoch: self.fork_epoch,
        })
    }
}

impl Cursor {
    /// Vector dimension of the store.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Whether the store kept raw vectors at the cursor's moment: false
    /// once a `drop_raw` store is trained, and then only IDs can be read.
    pub fn has_vectors(&self) -> bool {
        self.generation.vectors.is_some()
    }

    /// Entries not yet returned.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next at most `max` entries (`max` at least 1; fewer at the end;
    /// none once all were returned), with their vectors when `with_vectors` (an error in
    /// a store that keeps no raw vectors, see `has_vectors`). Vectors are
    /// checked against their stored checksums, as `Store::get` does; on
    /// any error the cursor does not move.
    pub fn next_page(&mut self, max: usize, with_vectors: bool) -> Result<CursorPage> {
        check_max(max)?;
        let rows = max.min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let mut page = CursorPage { ids: IdBuf::with_capacity(rows, rows * 16), vectors: Vec::new() };
        if with_vectors {
            page.vectors = vec![0.0; rows * self.dim];
        }
        let vectors = with_vectors.then_some(&mut page.vectors[..]);
        let ids = &mut page.ids;
        self.walk(rows, vectors, |_, id| {
            ids.push(id);
            true
        })?;
        Ok(page)
    }

    /// The next at most `max` entries into caller buffers, the layout of
    /// the C ABI's `omen_cursor_next`: the IDs Arrow-style into `id_bytes`
    /// with `max + 1` offsets (`id_offsets[0] = 0`), and, when `vectors`
    /// is given (`max * dim` floats), row i the vector of ID i. Returns the
    /// number written: 0 at the end. A page stops before an ID that does
    /// not fit in `id_bytes`; when not even the first one fits, the error
    /// is `BufferTooSmall` with `id_offsets[1]` set to the bytes that ID
    /// needs (never more than `MAX_ID_LEN`). On any error the cursor does
    /// not move.
    pub fn next_into(
        &mut self,
        max: usize,
        id_bytes: &mut [u8],
        id_offsets: &mut [u64],
        vectors: Option<&mut [f32]>,
    ) -> Result<usize> {
        check_max(max)?;
        if id_offsets.len() <= max {
            return Err(Error::new(
                ErrorKind::BufferTooSmall,
                format!("id_offsets holds {} entries, a page of {max} needs {}", id_offsets.len(), max + 1),
            ));
        }
        id_offsets[0] = 0;
        let cap = id_bytes.len();
        let mut used = 0;
        let mut first_needs = None;
        let n = self.walk(max, vectors, |i, id| {
            let end = used + id.len();
            if end > cap {
                if i == 0 {
                    first_needs = Some(id.len());
                }
                return false;
            }
            id_bytes[used..end].copy_from_slice(id);
            id_offsets[i + 1] = end as u64;
            used = end;
            true
        })?;
        if let Some(needs) = first_needs {
            id_offsets[1] = needs as u64;
            return Err(Error::new(
                ErrorKind::BufferTooSmall,
                format!("the next ID needs {needs} bytes, the ID buffer holds {cap}"),
            ));
        }
        Ok(n)
    }

    /// Refuses to read once the store is closed, or from a forked child.
    fn check_usable(&self) -> Result<()> {
        if process::fork_epoch() != self.fork_epoch {
            return Err(Error::invalid(
                "this cursor was opened by the parent of this forked process; a child must open the store and a cursor itself",
            ));
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::invalid("the store of this cursor is closed"));
        }
        Ok(())
    }

    /// Hands the next at most `max` live entries' IDs to `take(i, id)`
    /// (false: it does not fit, the page ends before it) and copies their
    /// vectors into `vectors` row by row. Moves the cursor only on success.
    fn walk(&mut self, max: usize, mut vectors: Option<&mut [f32]>, mut take: impl FnMut(usize, &[u8]) -> bool) -> Result<usize> {
        self.check_usable()?;
        let generation = &self.generation;
        let dim = self.dim;
        if let Some(out) = &vectors {
            if generation.vectors.is_none() {
                return Err(Error::invalid(
                    "this compressed store keeps only PQ codes, no raw vectors: read its IDs only",
                ));
            }
            if out.len() < max.saturating_mul(dim) {
                return Err(Error::new(
                    ErrorKind::BufferTooSmall,
                    format!("the vector buffer holds {} floats, a page of {max} needs {}", out.len(), max.saturating_mul(dim)),
                ));
            }
        }
        let (mut n, mut next) = (0, self.next);
        for slot in self.live.iter_from(self.next) {
            if n == max {
                break;
            }
            let id = generation.id(slot)?;
            if !take(n, id) {
                break;
            }
            if let Some(out) = vectors.as_deref_mut() {
                generation.copy_vector(slot, &generation.slot_record(slot)?, &mut out[n * dim..(n + 1) * dim])?;
            }
            n += 1;
            next = slot + 1;
        }
        self.next = next;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// A page of 0 entries could not be told from the end.
fn check_max(max: usize) -> Result<()> {
    if max == 0 {
        return Err(Error::invalid("a page must hold at least 1 entry (0 cannot be told from the end)"));
    }
    Ok(())
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("dim", &self.dim)
            .field("remaining", &self.remaining)
            .field("has_vectors", &self.has_vectors())
            .finish_non_exhaustive()
    }
}
