//! The store: a directory of memory-mapped files behind one writer and many
//! readers.
//!
//! Locking: `writer` (a mutex) serializes every operation that changes the
//! store; `view` (a read-write lock) guards what readers use: the current
//! generation's mapped files, the ID index and the live set. A writer does
//! its copying into unpublished file space while readers run, and takes
//! `view` exclusively only to publish (index updates, a few microseconds per
//! thousand vectors). Lock order: `writer`, then `view`.

mod calibrate;
mod cursor;
mod generation;
mod ivf;
mod live;
mod open;
mod pq;
pub(crate) mod process;
mod query;
mod read;
mod rewrite;
mod write;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLock};

use crate::error::{Error, ErrorKind, Result};
use crate::storage::format::Superblock;
use crate::storage::fsutil::WriterLock;
use crate::ids::table::IdIndex;
use crate::options::{Metric, Options};

pub use self::calibrate::MAX_CALIBRATION_QUERIES;
pub use self::cursor::{Cursor, CursorPage};
pub use self::query::RangeResults;
pub use self::read::{Filter, Hit, SearchMethod, SearchParams, SearchPlan, SearchResults};
use self::generation::{Generation, GenerationWriter};
use self::live::LiveSet;

/// What [`Store::recover`] found. Output only: more fields may be added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The checkpoint the store was recovered to.
    pub checkpoint_seq: u64,
    /// Vectors in the recovered store.
    pub live_vectors: u64,
    /// Bytes past the last checkpoint that were dropped (or, read-only, ignored).
    pub discarded_bytes: u64,
    /// Committed bytes whose checksums were verified.
    pub verified_bytes: u64,
}

/// A snapshot of a store's shape and size ([`Store::stats`]). Output only:
/// more fields will be added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Vector dimension.
    pub dim: u32,
    /// The metric's code ([`Metric::code`]).
    pub metric: u32,
    /// PQ sub-quantizers; 0 when the store has no PQ.
    pub pq_m: u32,
    /// PQ codebooks are trained (searches use the codes).
    pub pq_trained: bool,
    /// The raw vectors are kept (false once a `drop_raw` store is trained).
    pub raw_kept: bool,
    /// Vectors stored (deleted and replaced ones not counted).
    pub live_vectors: u64,
    /// Slots of deleted or replaced vectors that compaction would reclaim.
    pub dead_slots: u64,
    /// Sequence number of the last durable checkpoint.
    pub checkpoint_seq: u64,
    /// Bytes of the store's files on disk.
    pub disk_bytes: u64,
    /// Bytes of live data: vectors (or codes) and IDs.
    pub payload_bytes: u64,
    /// Heap bytes the open store holds (the ID table, the live set, the PQ
    /// codebooks, and an IVF index's lists, centroids and list terms).
    pub heap_bytes: u64,
    /// Bits per sub-quantizer code (8 or 4); 0 when the store has no PQ.
    pub pq_bits: u32,
    /// Stored vectors that start training on their own; 0 = only on request.
    pub pq_train_size: u32,
    /// Created with `Options::drop_raw`: training drops the raw vectors.
    pub drop_raw: bool,
    /// The kind of error of the last automatic training (started by a put
    /// once `pq_train_size` vectors are stored) if it failed and none has
    /// succeeded since; `Store::auto_train_error` has its message.
    pub auto_train_error: Option<ErrorKind>,
    /// Lists of the trained IVF index; 0 without one (or before training).
    pub ivf_lists: u32,
    /// The kind of error (`Corrupt`) found in the search index's files at
    /// open, while it is not rebuilt: the store opened without its index
    /// (`pq_trained` false, searches exact); [`Store::index_damage`] has
    /// the message, [`Store::rebuild_index`] rebuilds it.
    pub index_damage: Option<ErrorKind>,
    /// How many of the host's queries measured the IVF calibration in use
    /// ([`Store::calibrate`]); 0 when training measured it on the store's
    /// own vectors (or there is none).
    pub calibration_queries: u32,
    /// How the trained IVF index searches: 1 (its lists hold whole codes),
    /// 2 (stage one scans the lists, which hold each code's first
    /// `ivf_list_code_bytes`; stage two ranks its candidates by their whole
    /// codes, read from the codes file); 0 without one (or before training).
    pub ivf_stages: u32,
    /// Bytes of each vector's code the IVF lists hold (in memory): the
    /// whole code with one stage, its first bytes with two; 0 without an
    /// index.
    pub ivf_list_code_bytes: u32,
}

/// What readers see. Replaced wholesale by compaction.
struct View {
    generation: Arc<Generation>,
    index: IdIndex,
    live: LiveSet,
    /// Sum of the lengths of live IDs (for payload_bytes).
    live_id_bytes: u64,
    /// The IVF index's lists (a trained IVF store): live slots only.
    lists: Option<crate::index::InvertedLists>,
}

/// State only the writer touches.
struct Writer {
    files: GenerationWriter,
    superblock_file: File,
    /// The last durable checkpoint.
    committed: Superblock,
    /// Running crc32c of each file's data area up to what is published.
    slots_crc: u32,
    ids_crc: u32,
    tombs_crc: u32,
    codes_crc: u32,
    /// Something was published since `committed`.
    dirty: bool,
    /// Why the writer refuses every further change, once it must: after a
    /// failed fsync/fdatasync (the kernel may have dropped the dirty pages
    /// and cleared the error, so a retried sync could succeed without the
    /// data ever reaching the disk: "fsyncgate"), or after a SYNC_WRITES
    /// batch that could not be committed. Reopening recovers the last
    /// checkpoint from what is really on disk.
    refused: Option<String>,
    /// Automatic training waits until the store holds this many live
    /// vectors again after a failed attempt.
    auto_train_retry_at: u64,
}

/// An open store: a directory of memory-mapped files with one writer and
/// many readers. `&Store` may be shared between threads; writes are
/// serialized inside, reads run concurrently with them.
///
/// ```
/// use omendb::{IdBuf, Options, SearchParams, Store};
///
/// # fn main() -> omendb::Result<()> {
/// # let dir = std::env::temp_dir().join(format!("omendb-doc-store-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let store = Store::open(&dir, &Options::create(3))?;
/// store.put_batch(&IdBuf::new(["x", "y"]).batch()?, &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0])?;
/// store.checkpoint()?; // durable from here on
/// assert_eq!(store.get(b"y")?, vec![0.0, 1.0, 0.0]);
///
/// let hits = store.search(&[0.9, 0.1, 0.0], 1, &SearchParams::default())?;
/// assert_eq!(store.key_id(hits[0].key)?, b"x");
///
/// assert_eq!(store.delete_batch(&IdBuf::new(["x"]).batch()?)?, 1);
/// assert_eq!(store.stats()?.live_vectors, 1);
/// store.close()?;
///
/// // close checkpoints; reopening finds the store as it was left.
/// let store = Store::open(&dir, &Options::default())?;
/// assert_eq!(store.get(b"x").unwrap_err().kind(), omendb::ErrorKind::NotFound);
/// assert_eq!(store.dim(), 3);
/// # store.close()?;
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(())
/// # }
/// ```
pub struct Store {
    dir: PathBuf,
    dim: usize,
    metric: Metric,
    read_only: bool,
    sync_writes: bool,
    /// Puts pad the vectors file to 2 MiB pages (`Options::huge_pages`).
    huge_pages: bool,
    threads: usize,
    /// Store-level settings fixed at creation, as committed.
    settings: Superblock,
    view: RwLock<View>,
    /// The ID tables of generations a compressing training replaced, so
    /// that their keys and `key_id` pointers stay valid until the next
    /// compaction, as the C contract promises. Lock order: after `view`.
    retired: Mutex<Vec<Arc<Generation>>>,
    /// Why the last automatic training failed, until one succeeds.
    auto_train_failure: Mutex<Option<Error>>,
    writer: Mutex<Option<Writer>>,
    checkpoint_seq: AtomicU64,
    /// Set when a writer panicked mid-operation: the store is no longer trusted.
    broken: AtomicBool,
    /// Shared with the store's cursors, which refuse to read once it is set.
    closed: Arc<AtomicBool>,
    /// `process::fork_epoch()` at open: another value means this call runs
    /// in a forked child, which must not touch the store.
    fork_epoch: u64,
    /// `process::thread_token()` of the thread holding `writer`, 0 if none:
    /// a write call from inside a progress callback (same thread) would
    /// wait for itself forever.
    writer_thread: AtomicU64,
    /// What was wrong with the index files open found damaged (and left
    /// out). Reported while the store has no PQ generation in use, that is
    /// until a training commits a new one; with the bytes of its files.
    index_damage: Option<(Error, u64)>,
    _lock: Option<WriterLock>,
}

/// Most worker threads a store or a batch search accepts: more only costs
/// thread starts (a million made training take minutes).
pub const MAX_THREADS: u32 = 1024;

/// The writer state, locked. Marks the store broken if the thread unwinds
/// while holding it, and records which thread holds it (see
/// `Store::writer_thread`).
struct WriterGuard<'a> {
    guard: MutexGuard<'a, Option<Writer>>,
    store: &'a Store,
}

impl Deref for WriterGuard<'_> {
    type Target = Writer;
    fn deref(&self) -> &Writer {
        self.guard.as_ref().expect("present: checked by lock_writer")
    }
}

impl DerefMut for WriterGuard<'_> {
    fn deref_mut(&mut self) -> &mut Writer {
        self.guard.as_mut().expect("present: checked by lock_writer")
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.store.broken.store(true, Ordering::SeqCst);
        }
        self.store.writer_thread.store(0, Ordering::Release);
    }
}

impl Store {
    /// Opens (or, with `options.create`, creates) the store in directory
    /// `path`. An existing store is recovered to its last checkpoint.
    pub fn open(path: impl AsRef<Path>, options: &Options) -> Result<Store> {
        open::open(path.as_ref(), options, false).map(|(store, _)| store)
    }

    /// Like `open` on an existing store, but first verifies every checksum of
    /// the committed data and reports what it found. Any damage is
    /// `Corrupt`, a damaged search index too (where `open` opens the store
    /// without it: see [`Store::index_damage`]).
    pub fn recover(path: impl AsRef<Path>, options: &Options) -> Result<(Store, RecoveryReport)> {
        open::open(path.as_ref(), options, true)
    }

    /// Whether `path` holds a store (a committed superblock).
    pub fn exists(path: impl AsRef<Path>) -> bool {
        path.as_ref().join(crate::storage::format::SUPERBLOCK_FILE).is_file()
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The store's distance.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Opened with `Options::read_only`.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Sequence number of the last durable checkpoint.
    pub fn checkpoint_seq(&self) -> u64 {
        self.checkpoint_seq.load(Ordering::Acquire)
    }

    fn check_usable(&self) -> Result<()> {
        if self.forked() {
            return Err(Error::invalid(format!(
                "this handle of {} was opened by the parent of this forked process; a child must open the store itself",
                self.dir.display()
            )));
        }
        if self.broken.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::Internal,
                "an earlier call panicked while changing this store; it can no longer be trusted (reopen it)",
            ));
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::invalid("the store is closed"));
        }
        Ok(())
    }

    /// Whether this call runs in a process forked from the one that opened
    /// the store.
    fn forked(&self) -> bool {
        process::fork_epoch() != self.fork_epoch
    }

    /// Whether the calling thread holds the writer: it is inside a progress
    /// callback of this store's training. Public for the C ABI (`omen_close`
    /// refuses to free a handle from inside its callback), not an API.
    #[doc(hidden)]
    pub fn in_writer_callback(&self) -> bool {
        self.writer_thread.load(Ordering::Acquire) == process::thread_token()
    }

    /// Locks the writer state; `ReadOnly` on a read-only store.
    fn lock_writer(&self) -> Result<WriterGuard<'_>> {
        self.check_usable()?;
        if self.read_only {
            return Err(Error::new(ErrorKind::ReadOnly, format!("{} is open read-only", self.dir.display())));
        }
        if self.in_writer_callback() {
            return Err(reentry_error(&self.dir));
        }
        let guard = self.writer.lock();
        match guard.as_ref() {
            None => return Err(Error::invalid("the store is closed")),
            Some(w) => w.usable(&self.dir)?,
        }
        self.writer_thread.store(process::thread_token(), Ordering::Release);
        Ok(WriterGuard { guard, store: self })
    }

    /// Counts and sizes of the store as it is now.
    pub fn stats(&self) -> Result<Stats> {
        self.check_usable()?;
        let view = self.view.read();
        let generation = &view.generation;
        let live = view.index.len() as u64;
        let raw_kept = generation.vectors.is_some();
        // Open refuses a superblock of any other size: no need to stat it.
        let superblock_bytes = crate::storage::format::SUPERBLOCK_FILE_LEN;
        let raw_bytes = if raw_kept { live * self.dim as u64 * 4 } else { 0 };
        let code_bytes = generation.pq.as_ref().map_or(0, |p| live * p.quantizer.record_size() as u64);
        let heap = std::mem::size_of::<Store>()
            + std::mem::size_of::<Generation>()
            + view.index.heap_bytes()
            + view.live.heap_bytes()
            + generation.pq.as_ref().map_or(0, |p| p.quantizer.heap_bytes())
            + view.lists.as_ref().map_or(0, |l| l.heap_bytes() as usize)
            + self.dir.as_os_str().len();
        Ok(Stats {
            dim: self.dim as u32,
            metric: self.metric.code(),
            pq_m: self.settings.pq_m,
            pq_trained: generation.pq.is_some(),
            raw_kept,
            live_vectors: live,
            dead_slots: generation.slot_count() - live,
            checkpoint_seq: self.checkpoint_seq(),
            disk_bytes: superblock_bytes + generation.disk_bytes() + self.damaged_index(&view).map_or(0, |d| d.1),
            payload_bytes: raw_bytes + code_bytes + view.live_id_bytes,
            heap_bytes: heap as u64,
            pq_bits: self.settings.pq_bits,
            pq_train_size: self.settings.pq_train_size,
            drop_raw: self.settings.drop_raw(),
            auto_train_error: self.auto_train_failure.lock().as_ref().map(Error::kind),
            ivf_lists: view.lists.as_ref().map_or(0, |l| l.nlist() as u32),
            index_damage: self.damaged_index(&view).map(|d| d.0.kind()),
            calibration_queries: generation
                .pq
                .as_ref()
                .and_then(|pq| pq.quantizer.ivf.as_ref())
                .map_or(0, |ivf| ivf.calibration_queries()),
            ivf_stages: match generation.pq.as_ref().filter(|_| view.lists.is_some()) {
                Some(pq) if pq.quantizer.stage_one_bytes().is_some() => 2,
                Some(_) => 1,
                None => 0,
            },
            ivf_list_code_bytes: view.lists.as_ref().map_or(0, |l| l.code_size() as u32),
        })
    }

    /// The damage open found in the search index's files, while the index
    /// is not rebuilt. The store then opened without the index (`open`,
    /// also read-only; `recover`, which verifies everything, answers
    /// `Corrupt` instead, after verifying every vector): every
    /// vector is there (its raw copy), searches are exact scans (slower,
    /// never less accurate), puts are stored without codes. Nothing else
    /// is touched until [`Store::rebuild_index`] (or `train_pq`, or an
    /// automatic training) commits a new index; the damaged files stay
    /// until then, and a reopen reports the damage again. Only stores that
    /// keep their raw vectors open this way: where `drop_raw` dropped them,
    /// the codes are the vectors, and their damage makes open fail
    /// (`Corrupt`).
    pub fn index_damage(&self) -> Option<Error> {
        self.damaged_index(&self.view.read()).map(|d| d.0.clone())
    }

    fn damaged_index(&self, view: &View) -> Option<&(Error, u64)> {
        self.index_damage.as_ref().filter(|_| view.generation.pq.is_none())
    }

    /// Rebuilds the search index from the raw vectors: trains new PQ
    /// codebooks (and, with IVF, the coarse centroids and the recall
    /// calibration) and encodes every vector, as `train_pq` does, then
    /// commits the new index and removes the old (or damaged) one. This is
    /// how a store whose index files were damaged
    /// ([`Store::index_damage`]) gets its index back; no vector is read
    /// from the old index. `InvalidArgument` for a store without PQ
    /// settings or one that keeps no raw vectors (`drop_raw`: its codes
    /// cannot be rebuilt, only retrained from the vectors it no longer has).
    pub fn rebuild_index(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        self.train_pq(progress)
    }

    /// Refuses an operation that would need (or silently drop) the index
    /// while it is damaged.
    fn refuse_damaged_index(&self, doing: &str) -> Result<()> {
        match self.index_damage() {
            None => Ok(()),
            Some(e) => Err(Error::new(
                ErrorKind::Corrupt,
                format!("{doing} {}: the search index is damaged; rebuild it first (rebuild_index): {}", self.dir.display(), e.message()),
            )),
        }
    }

    /// Why the last automatic training failed, if it did and none has
    /// succeeded since. The put that started it succeeded all the same
    /// (its batch is applied); the store stays untrained, and the next
    /// attempt comes after another `pq_train_size` vectors, or with
    /// `train_pq`.
    pub fn auto_train_error(&self) -> Option<Error> {
        self.auto_train_failure.lock().clone()
    }

    /// Checkpoints, trims the files to their committed length and releases
    /// the store. Dropping a store does the same but cannot report errors.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    /// Releases the store without checkpointing: what was put or deleted
    /// since the last checkpoint is not committed, and the files are not
    /// trimmed. Reopening the store recovers its last checkpoint (what
    /// `Store::checkpoint`, a `sync_writes` batch, or an earlier close
    /// committed). The writer lock is released, so another writer may open
    /// the store right after. On a read-only store it is the same as
    /// `close`.
    pub fn close_discard(self) -> Result<()> {
        self.begin_close()?;
        // Dropping the writer state unmaps the files without syncing them;
        // what lies past the committed lengths is dropped by the next open.
        // A forked child must not wait for `writer` (see `shutdown`), and
        // the lock is only needed while another thread may hold it.
        if !self.forked() {
            *self.writer.lock() = None;
        }
        Ok(())
    }

    /// Marks the store closed; false when it already was. Refused from
    /// inside a progress callback of this store.
    fn begin_close(&self) -> Result<bool> {
        if self.in_writer_callback() {
            // Only the C ABI can get here (it checks first); in Rust a
            // callback cannot own the store it runs for.
            return Err(reentry_error(&self.dir));
        }
        Ok(!self.closed.swap(true, Ordering::SeqCst))
    }

    fn shutdown(&self) -> Result<()> {
        if !self.begin_close()? {
            return Ok(());
        }
        // A forked child only frees its memory: the files are the parent's.
        // (Nor may it wait for `writer`: a parent thread may have held it at
        // the fork, and no thread of the child will ever release it.)
        if self.forked() || self.read_only || self.broken.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut guard = self.writer.lock();
        let Some(writer) = guard.as_mut() else { return Ok(()) };
        let result = self.checkpoint_locked(writer).and_then(|_| writer.trim());
        *guard = None;
        result.map(|_| ())
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("dim", &self.dim)
            .field("metric", &self.metric)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Refuses a thread count over `MAX_THREADS`.
pub(crate) fn check_threads(threads: u32, what: &str) -> Result<()> {
    if threads > MAX_THREADS {
        return Err(Error::invalid(format!("{what} must be 0 (all cores) to {MAX_THREADS} (got {threads})")));
    }
    Ok(())
}

fn reentry_error(dir: &Path) -> Error {
    Error::invalid(format!(
        "{}: called from inside a progress callback of this store's training, which holds its writer; \
         only reads (get, search, stats) may run there",
        dir.display()
    ))
}

impl Writer {
    /// Refuses changes once `refused` is set.
    fn usable(&self, dir: &Path) -> Result<()> {
        match &self.refused {
            None => Ok(()),
            Some(why) => Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{}: this handle refuses further changes because {why}; \
                     close and reopen the store to recover its last checkpoint",
                    dir.display()
                ),
            )),
        }
    }

    /// From now on every change is refused, for the first reason given.
    fn refuse(&mut self, why: String) {
        self.refused.get_or_insert(why);
    }

    /// Passes `result` on, remembering a sync failure in it.
    fn check_sync<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            if e.is_sync_failure() {
                self.refuse(format!("a sync failed ({})", e.message()));
            }
        }
        result
    }

    /// Gives back the unused space grown past the committed data.
    fn trim(&mut self) -> Result<()> {
        for file in self.files.all_mut() {
            file.truncate(file.published())?;
        }
        Ok(())
    }
}
