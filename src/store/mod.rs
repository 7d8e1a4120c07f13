//! The store: a directory of memory-mapped files behind one writer and many
//! readers.
//!
//! Locking: `writer` (a mutex) serializes every operation that changes the
//! store; `view` (a read-write lock) guards what readers use: the current
//! generation's mapped files, the ID index and the live set. A writer does
//! its copying into unpublished file space while readers run, and takes
//! `view` exclusively only to publish (index updates, a few microseconds per
//! thousand vectors). Lock order: `writer`, then `view`.

mod generation;
mod live;
mod open;
mod pq;
mod read;
mod rewrite;
mod write;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLock};

use crate::error::{Error, ErrorKind, Result};
use crate::format::Superblock;
use crate::fsutil::WriterLock;
use crate::index::IdIndex;
use crate::options::{Metric, Options};

pub use self::read::{Hit, SearchParams};
use self::generation::{Generation, GenerationWriter};
use self::live::LiveSet;

/// What `recover` found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The checkpoint the store was recovered to.
    pub checkpoint_seq: u64,
    pub live_vectors: u64,
    /// Bytes past the last checkpoint that were dropped (or, read-only, ignored).
    pub discarded_bytes: u64,
    /// Committed bytes whose checksums were verified.
    pub verified_bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub dim: u32,
    pub metric: u32,
    pub pq_m: u32,
    pub pq_trained: bool,
    pub raw_kept: bool,
    pub live_vectors: u64,
    pub dead_slots: u64,
    pub checkpoint_seq: u64,
    pub disk_bytes: u64,
    pub payload_bytes: u64,
    pub heap_bytes: u64,
    /// Bits per sub-quantizer code (8 or 4); 0 when the store has no PQ.
    pub pq_bits: u32,
    /// Stored vectors that start training on their own; 0 = only on request.
    pub pq_train_size: u32,
    /// Created with `Options::drop_raw`: training drops the raw vectors.
    pub drop_raw: bool,
}

/// What readers see. Replaced wholesale by compaction.
struct View {
    generation: Arc<Generation>,
    index: IdIndex,
    live: LiveSet,
    /// Sum of the lengths of live IDs (for payload_bytes).
    live_id_bytes: u64,
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
    /// Set when an fsync/fdatasync failed. The kernel may have dropped the
    /// dirty pages and cleared the error, so a retried sync could succeed
    /// without the data ever reaching the disk ("fsyncgate"). The writer
    /// therefore refuses every further change; reopening recovers the last
    /// checkpoint from what is really on disk.
    failed_sync: Option<String>,
}

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
    writer: Mutex<Option<Writer>>,
    checkpoint_seq: AtomicU64,
    /// Set when a writer panicked mid-operation: the store is no longer trusted.
    broken: AtomicBool,
    closed: AtomicBool,
    _lock: Option<WriterLock>,
}

/// Marks the store broken if the current thread unwinds while holding it.
struct BreakOnPanic<'a>(&'a AtomicBool);

impl Drop for BreakOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

impl Store {
    /// Opens (or, with `options.create`, creates) the store in directory
    /// `path`. An existing store is recovered to its last checkpoint.
    pub fn open(path: impl AsRef<Path>, options: &Options) -> Result<Store> {
        open::open(path.as_ref(), options, false).map(|(store, _)| store)
    }

    /// Like `open` on an existing store, but first verifies every checksum of
    /// the committed data and reports what it found.
    pub fn recover(path: impl AsRef<Path>, options: &Options) -> Result<(Store, RecoveryReport)> {
        open::open(path.as_ref(), options, true)
    }

    /// Whether `path` holds a store (a committed superblock).
    pub fn exists(path: impl AsRef<Path>) -> bool {
        path.as_ref().join(crate::format::SUPERBLOCK_FILE).is_file()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Sequence number of the last durable checkpoint.
    pub fn checkpoint_seq(&self) -> u64 {
        self.checkpoint_seq.load(Ordering::Acquire)
    }

    fn check_usable(&self) -> Result<()> {
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

    /// Locks the writer state; `ReadOnly` on a read-only store.
    fn lock_writer(&self) -> Result<(MutexGuard<'_, Option<Writer>>, BreakOnPanic<'_>)> {
        self.check_usable()?;
        if self.read_only {
            return Err(Error::new(ErrorKind::ReadOnly, format!("{} is open read-only", self.dir.display())));
        }
        let guard = self.writer.lock();
        match guard.as_ref() {
            None => return Err(Error::invalid("the store is closed")),
            Some(w) => w.usable(&self.dir)?,
        }
        Ok((guard, BreakOnPanic(&self.broken)))
    }

    pub fn stats(&self) -> Result<Stats> {
        self.check_usable()?;
        let view = self.view.read();
        let generation = &view.generation;
        let live = view.index.len() as u64;
        let raw_kept = generation.vectors.is_some();
        // Open refuses a superblock of any other size: no need to stat it.
        let superblock_bytes = crate::format::SUPERBLOCK_FILE_LEN;
        let raw_bytes = if raw_kept { live * self.dim as u64 * 4 } else { 0 };
        let code_bytes = generation.pq.as_ref().map_or(0, |p| live * p.codebooks.config().code_size() as u64);
        let heap = std::mem::size_of::<Store>()
            + std::mem::size_of::<Generation>()
            + view.index.heap_bytes()
            + view.live.heap_bytes()
            + generation.pq.as_ref().map_or(0, |p| p.codebooks.heap_bytes())
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
            disk_bytes: superblock_bytes + generation.disk_bytes(),
            payload_bytes: raw_bytes + code_bytes + view.live_id_bytes,
            heap_bytes: heap as u64,
            pq_bits: self.settings.pq_bits,
            pq_train_size: self.settings.pq_train_size,
            drop_raw: self.settings.drop_raw(),
        })
    }

    /// Checkpoints, trims the files to their committed length and releases
    /// the store. Dropping a store does the same but cannot report errors.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        if self.read_only || self.broken.load(Ordering::SeqCst) {
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

impl Writer {
    /// Refuses changes after a failed sync.
    fn usable(&self, dir: &Path) -> Result<()> {
        match &self.failed_sync {
            None => Ok(()),
            Some(why) => Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{}: this handle refuses further changes because a sync failed ({why}); \
                     close and reopen the store to recover its last checkpoint",
                    dir.display()
                ),
            )),
        }
    }

    /// Passes `result` on, remembering a sync failure in it.
    fn check_sync<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            if e.is_sync_failure() && self.failed_sync.is_none() {
                self.failed_sync = Some(e.message().to_string());
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
