//! The I/O seam. Every system call that changes a store's files on disk
//! (create, write, fdatasync/fsync, grow, truncate, rename, remove, mkdir)
//! runs through [`io`]. Store data is written only with `pwrite` (the
//! mappings are read-only), so every byte that reaches a file passes here.
//!
//! Built with the `faults` cargo feature (the crate's own tests enable it
//! through a dev-dependency on itself; release builds and the C library do
//! not have it), a [`Hook`] installed on a thread sees each call that thread
//! and the helper threads of its parallel work make (one at a time), before
//! and after it runs, and may fail it. The reliability tests use this
//! to record file images at every sync point (power-loss simulation) and to
//! inject ENOSPC, EIO and EFBIG at every call. Without the feature, `io` is
//! the call itself.

use std::fs::File;
use std::path::Path;

/// What a call does to the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `mkdir` of the store directory.
    Mkdir,
    /// `open` with `O_CREAT` (data files, `superblock.tmp`, `LOCK`).
    Create,
    /// `pwrite`/`write` (file headers, superblock slots, codebooks).
    Write,
    /// `fdatasync` of a file.
    Sync,
    /// `fsync` of the store directory (or of its parent after `mkdir`).
    SyncDir,
    /// `fallocate` making room for data (`ftruncate` upwards for the
    /// superblock file).
    Grow,
    /// `ftruncate` to a length: trimming after a session or a compaction,
    /// or extending a data file sparsely where the filesystem cannot
    /// `fallocate` (the `Grow` before it failed with EOPNOTSUPP or ENOSYS).
    Truncate,
    /// `rename(path, to)`.
    Rename,
    /// `unlink`.
    Remove,
}

/// One intercepted call.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub op: Op,
    pub path: &'a Path,
    /// The destination of a rename.
    pub to: Option<&'a Path>,
    /// The file length a `Grow` or `Truncate` of a data file asks for
    /// (header included).
    pub size: Option<u64>,
}

/// A test's view of the calls made on its thread and on the helper threads
/// its calls into the store start (`Send`: it runs on those too).
pub trait Hook {
    /// Runs before the call; an error is returned in its place (the call is
    /// not made).
    fn before(&mut self, call: &Call<'_>) -> std::io::Result<()>;
    /// Runs after the call was made; `ok` tells whether it succeeded.
    fn after(&mut self, call: &Call<'_>, ok: bool);
    /// Whether `Sync` and `SyncDir` calls that `before` lets through are
    /// skipped (reported as done). Simulations that never cut the real power
    /// use this to run at page-cache speed.
    fn skip_syncs(&self) -> bool {
        false
    }
}

#[cfg(feature = "faults")]
mod hook {
    use super::{Call, Hook, Op};
    use std::cell::RefCell;
    use std::fs::File;
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    /// A hook shared by the thread that installed it and the helper threads
    /// its work starts (`Inherit`): the mutex serializes their calls into it.
    pub(super) type Shared = Arc<Mutex<Box<dyn Hook + Send>>>;

    thread_local! {
        static HOOK: RefCell<Option<Shared>> = const { RefCell::new(None) };
    }

    /// Installs `hook` for calls made on this thread and on the helper
    /// threads of its parallel work (None removes it); returns the previous
    /// one.
    pub fn set_hook(hook: Option<Box<dyn Hook + Send>>) -> Option<Box<dyn Hook + Send>> {
        let previous = HOOK.with(|h| std::mem::replace(&mut *h.borrow_mut(), hook.map(|b| Arc::new(Mutex::new(b)))));
        // Helper threads hold a clone only while the work that started them
        // runs, and that work has returned before this thread gets here.
        previous.map(|shared| match Arc::try_unwrap(shared) {
            Ok(m) => m.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()),
            Err(_) => unreachable!("a helper thread outlived the work that installed the hook"),
        })
    }

    pub(super) fn current() -> Option<Shared> {
        HOOK.with(|h| h.borrow().clone())
    }

    /// Installs `shared` on this thread until the guard drops.
    pub(super) fn enter(shared: Option<Shared>) -> impl Drop {
        struct Restore(Option<Shared>);
        impl Drop for Restore {
            fn drop(&mut self) {
                HOOK.with(|h| *h.borrow_mut() = self.0.take());
            }
        }
        Restore(HOOK.with(|h| std::mem::replace(&mut *h.borrow_mut(), shared)))
    }

    /// Runs `f` on the hook, with the hook taken off this thread meanwhile,
    /// so calls the hook itself makes (opening another store, say) are not
    /// intercepted. Other threads sharing it wait on its mutex.
    fn with_hook<R>(f: impl FnOnce(&mut dyn Hook) -> R) -> Option<R> {
        let shared = HOOK.with(|h| h.borrow_mut().take())?;
        let r = {
            let mut hook = shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(hook.as_mut())
        };
        HOOK.with(|h| {
            let mut slot = h.borrow_mut();
            if slot.is_none() {
                *slot = Some(shared);
            }
        });
        Some(r)
    }

    pub(crate) fn io<T>(call: Call<'_>, f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
        with_hook(|h| h.before(&call)).transpose()?;
        let r = f();
        with_hook(|h| h.after(&call, r.is_ok()));
        r
    }

    /// `super::sync_files` with a hook: every call's `before` runs here,
    /// in order, before any sync starts; the syncs that `before` let through
    /// (and does not skip) run concurrently; then every `after`, in order.
    pub(crate) fn sync_files(files: &[(&Path, &File)]) -> Vec<std::io::Result<()>> {
        let calls: Vec<Call<'_>> = files.iter().map(|&(path, _)| Call { op: Op::Sync, path, to: None, size: None }).collect();
        // None: refused by the hook (the error is in `refused`); Some(skip).
        let mut refused: Vec<Option<std::io::Error>> = Vec::with_capacity(files.len());
        let mut run: Vec<bool> = Vec::with_capacity(files.len());
        for call in &calls {
            match with_hook(|h| h.before(call).map(|_| h.skip_syncs())).transpose() {
                Err(e) => {
                    refused.push(Some(e));
                    run.push(false);
                }
                Ok(skip) => {
                    refused.push(None);
                    run.push(!skip.unwrap_or(false));
                }
            }
        }
        // The syncs themselves make no hooked calls: they run side by side
        // with the hook taken off this thread (so the helpers get none).
        let sync_all = || crate::parallel::on_own_threads(files.len(), |i| if run[i] { files[i].1.sync_data() } else { Ok(()) });
        let mut results = with_hook(|_| sync_all()).unwrap_or_else(sync_all);
        for (i, call) in calls.iter().enumerate() {
            match refused[i].take() {
                Some(e) => results[i] = Err(e),
                None => {
                    let ok = results[i].is_ok();
                    with_hook(|h| h.after(call, ok));
                }
            }
        }
        results
    }

    pub(crate) fn sync(call: Call<'_>, f: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
        let skip = with_hook(|h| h.before(&call).map(|_| h.skip_syncs())).transpose()?.unwrap_or(false);
        let r = if skip { Ok(()) } else { f() };
        with_hook(|h| h.after(&call, r.is_ok()));
        r
    }
}

#[cfg(feature = "faults")]
pub use hook::set_hook;

/// The test hook of the thread that starts parallel work, for its helper
/// threads (`parallel`): each helper `enter`s it for the
/// duration of its part, so the hook sees every file call of the work, on
/// whichever thread. Empty without the `faults` feature.
#[derive(Clone, Default)]
pub(crate) struct Inherit {
    #[cfg(feature = "faults")]
    shared: Option<hook::Shared>,
}

impl Inherit {
    /// The hook installed on this thread, if any.
    #[inline(always)]
    pub(crate) fn here() -> Inherit {
        Inherit {
            #[cfg(feature = "faults")]
            shared: hook::current(),
        }
    }

    /// Whether a hook is installed (never without the `faults` feature).
    #[inline(always)]
    pub(crate) fn is_set(&self) -> bool {
        #[cfg(feature = "faults")]
        return self.shared.is_some();
        #[cfg(not(feature = "faults"))]
        false
    }

    /// Installs the hook on this (helper) thread while `f` runs.
    #[inline(always)]
    pub(crate) fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        #[cfg(feature = "faults")]
        let _restore = hook::enter(self.shared.clone());
        f()
    }
}

/// Makes the call `f` (`op` on `path`), through the test hook when built
/// with the `faults` feature.
#[inline(always)]
pub(crate) fn io<T>(op: Op, path: &Path, to: Option<&Path>, f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    call(Call { op, path, to, size: None }, f)
}

/// Like `io`, for a call that makes a data file `size` bytes long
/// (`Op::Grow` or `Op::Truncate`): a hook sees the size.
#[inline(always)]
pub(crate) fn resize(op: Op, path: &Path, size: u64, f: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
    call(Call { op, path, to: None, size: Some(size) }, f)
}

#[inline(always)]
fn call<T>(c: Call<'_>, f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    #[cfg(feature = "faults")]
    {
        hook::io(c, f)
    }
    #[cfg(not(feature = "faults"))]
    {
        let _ = c;
        f()
    }
}

/// Like `io`, for a sync (`Op::Sync` or `Op::SyncDir`), which a hook may skip.
#[inline(always)]
pub(crate) fn sync(op: Op, path: &Path, f: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
    #[cfg(feature = "faults")]
    {
        hook::sync(Call { op, path, to: None, size: None }, f)
    }
    #[cfg(not(feature = "faults"))]
    {
        let _ = (op, path);
        f()
    }
}

/// `fdatasync`s several files at once (each an `Op::Sync`), concurrently:
/// one thread per file beyond the first, so the filesystem can flush them
/// together (one journal commit for all, on ext4) instead of one after the
/// other. Returns each file's result, in order. A hook sees the calls as it
/// would serial ones, on this thread: every `before` (in order) before any
/// sync starts, every `after` once all have ended.
pub(crate) fn sync_files(files: &[(&Path, &File)]) -> Vec<std::io::Result<()>> {
    #[cfg(feature = "faults")]
    {
        hook::sync_files(files)
    }
    #[cfg(not(feature = "faults"))]
    {
        crate::parallel::on_own_threads(files.len(), |i| files[i].1.sync_data())
    }
}

