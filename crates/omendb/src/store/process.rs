//! Which process and thread a store belongs to at this moment.
//!
//! A handle belongs to the process that opened it. A forked child inherits
//! the mappings and descriptors, and a checkpoint or trim from the child
//! would rewrite files under the parent (a truncation there is a SIGBUS in
//! the parent). So every store records the fork count at open, and a
//! `pthread_atfork` child handler bumps it in every child: one relaxed
//! atomic load tells a call whether it runs in the owning process
//! (`getpid()` would be a system call on every `get`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static FORKS: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();

extern "C" fn count_fork_in_child() {
    // Async-signal-safe: one atomic add, no allocation, no lock.
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// The fork count of this process: different in every forked child of a
/// process that called it before the fork.
pub(crate) fn fork_epoch() -> u64 {
    REGISTER.call_once(|| {
        // SAFETY: registers a plain extern "C" function with no captured
        // state; pthread_atfork only stores the pointer. It fails only for
        // lack of memory, and then forks simply go undetected.
        unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
    });
    FORKS.load(Ordering::Relaxed)
}

/// A small number unique to the calling thread for the life of the process
/// (never 0), for "does this thread hold the writer" checks.
pub(crate) fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TOKEN.with(|t| *t)
}
