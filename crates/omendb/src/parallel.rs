//! Running closures side by side on the process's worker threads.
//!
//! A batch search, a put or a training splits its work into parts; the
//! calling thread and a pool of workers, started on first use and kept for
//! the life of the process, claim them one at a time (`claimed`). Starting
//! and joining a thread per part cost about 40 us on the development VM,
//! 11% of a 100-query batch on the small real sets. The pool is rayon's
//! (`rayon-core`: its work-stealing queues and sleeping workers); a call
//! waits only for parts a worker has claimed, so one caller's long parts
//! never hold up another's.
//!
//! A forked child has none of its parent's threads: it gets a pool of its
//! own on first use (`workers` checks the fork count), and the parent's
//! is never touched there. Blocking system calls that should overlap
//! whatever the pool's size (`fdatasync`s) run on threads of their own
//! (`on_own_threads`).

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::storage::faults::Inherit;

/// The pool of one process (`epoch`: its fork count when made).
struct Workers {
    epoch: u64,
    pool: rayon_core::ThreadPool,
    /// The pool this one replaced (a forked child's copy of its parent's),
    /// kept reachable: it is leaked on purpose, not lost.
    _replaced: *const Workers,
}

/// The current process's pool: null until first use; each pool stored is
/// leaked, never freed (a forked child's copy of its parent's pool must not
/// be dropped: dropping signals threads that do not exist there).
static WORKERS: AtomicPtr<Workers> = AtomicPtr::new(std::ptr::null_mut());

/// This process's worker threads, one per CPU the process may use; `None`
/// where they cannot be started (work then runs on the calling thread).
/// Never inlined: the C tests' valgrind suppressions name its frame (the
/// parent's pool as a forked child sees it, tests/c/valgrind.supp).
#[inline(never)]
fn workers() -> Option<&'static rayon_core::ThreadPool> {
    let epoch = crate::store::process::fork_epoch();
    loop {
        let seen = WORKERS.load(Ordering::Acquire);
        // SAFETY: WORKERS holds null or a pointer from `Box::into_raw`
        // below, which is never freed: valid for the rest of the process.
        if let Some(workers) = unsafe { seen.as_ref() } {
            if workers.epoch == epoch {
                return Some(&workers.pool);
            }
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pool = rayon_core::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("omendb-worker-{i}"))
            .build()
            .ok()?;
        let made = Box::into_raw(Box::new(Workers { epoch, pool, _replaced: seen }));
        match WORKERS.compare_exchange(seen, made, Ordering::AcqRel, Ordering::Acquire) {
            // SAFETY: `made` is the pointer just stored, never freed.
            Ok(_) => return Some(unsafe { &(*made).pool }),
            // Another thread stored a pool first: ours was never shared,
            // so it is dropped (its threads stop), and theirs looked at.
            // SAFETY: `made` came from `Box::into_raw` and nothing else has it.
            Err(_) => drop(unsafe { Box::from_raw(made) }),
        }
    }
}

/// What the helpers of one `claimed` call share with its caller (kept
/// alive by each helper's job, which may start after the call returned).
struct Claims {
    items: usize,
    /// The next item to claim (at or past `items`: none left).
    next: AtomicUsize,
    /// Items whose run has ended, returned or panicked.
    ended: AtomicUsize,
    /// Helpers that have made their first claim (for `hooked` waits).
    started: AtomicUsize,
    /// The first panic of an item, resumed on the caller.
    panic: parking_lot::Mutex<Option<Box<dyn std::any::Any + Send>>>,
    caller: std::thread::Thread,
}

impl Claims {
    fn claim(&self) -> Option<usize> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.items).then_some(i)
    }

    /// Runs claimed item `i`, then claims and runs items until none is left.
    fn work_from(&self, mut i: usize, run: &(dyn Fn(usize) + Sync)) {
        loop {
            if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(i))) {
                self.panic.lock().get_or_insert(payload);
            }
            self.end(1);
            match self.claim() {
                Some(next) => i = next,
                None => return,
            }
        }
    }

    fn end(&self, count: usize) {
        if self.ended.fetch_add(count, Ordering::AcqRel) + count >= self.items {
            self.caller.unpark();
        }
    }
}

/// Ends a `claimed` call, also when it unwinds: no item is claimed after
/// it (those left count as ended, never run) and it returns once every
/// claimed one has ended, so no helper calls the caller's closure later.
struct EndClaims<'a>(&'a Claims);

impl Drop for EndClaims<'_> {
    fn drop(&mut self) {
        let claims = self.0;
        let claimed = claims.next.swap(claims.items, Ordering::AcqRel).min(claims.items);
        if claimed < claims.items {
            claims.end(claims.items - claimed);
        }
        while claims.ended.load(Ordering::Acquire) < claims.items {
            std::thread::park();
        }
    }
}

/// Runs `f(0)`, ..., `f(n - 1)` side by side and returns their results in
/// order: this thread and up to `n - 1` workers each claim the next part as
/// they finish their last. A panic in a part resumes on this thread.
///
/// A `faults` test hook installed on this thread is installed on the
/// workers for their parts too, so the hook sees every file call the
/// closures make.
pub(crate) fn concurrently<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    claimed(n, n, f)
}

/// Runs `a` and `b` side by side on up to `threads` threads (this one
/// among them; on one, in turn) and returns both results. A panic in
/// either resumes on this thread.
pub(crate) fn both<A: Send, B: Send>(threads: usize, a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
    enum Side<A, B> {
        A(A),
        B(B),
    }
    let (a, b) = (parking_lot::Mutex::new(Some(a)), parking_lot::Mutex::new(Some(b)));
    let mut sides = claimed(2, threads, |i| match i {
        0 => Side::A(a.lock().take().expect("each side runs once")()),
        _ => Side::B(b.lock().take().expect("each side runs once")()),
    });
    match (sides.pop(), sides.pop()) {
        (Some(Side::B(b)), Some(Side::A(a))) => (a, b),
        _ => unreachable!("claimed returns its items' results in order"),
    }
}

/// `concurrently` over `0..count` cut into runs of `per` items (the last
/// shorter): `f` of each run, in order.
pub(crate) fn by_ranges<T: Send>(count: usize, per: usize, f: impl Fn(std::ops::Range<usize>) -> T + Sync) -> Vec<T> {
    let per = per.max(1);
    concurrently(count.div_ceil(per), |i| f(i * per..((i + 1) * per).min(count)))
}

/// Runs `f(0)`, ..., `f(items - 1)` on up to `threads` threads (this one
/// among them), each claiming the next item as it finishes its last, and
/// returns the results in item order: for items of uneven cost, where
/// shares fixed in advance leave a thread idle at the end. A panic in an
/// item resumes on this thread once every claimed item has ended.
///
/// This thread claims items too and waits only for items a worker has
/// claimed, never for a worker to start: while every worker is busy with
/// another caller's long parts (a training, a large put), a search here
/// still ends as soon as its own items are done.
pub(crate) fn claimed<T: Send>(items: usize, threads: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let helpers = threads.min(items).saturating_sub(1);
    let pool = if helpers > 0 { workers() } else { None };
    let Some(pool) = pool else {
        return (0..items).map(f).collect();
    };
    let slots: Vec<parking_lot::Mutex<Option<T>>> = (0..items).map(|_| parking_lot::Mutex::new(None)).collect();
    let run = |i: usize| {
        let result = f(i);
        *slots[i].lock() = Some(result);
    };
    let hook = Inherit::here();
    let on_worker = |i: usize| hook.run(|| run(i));
    let claims = std::sync::Arc::new(Claims {
        items,
        next: AtomicUsize::new(0),
        ended: AtomicUsize::new(0),
        started: AtomicUsize::new(0),
        panic: parking_lot::Mutex::new(None),
        caller: std::thread::current(),
    });
    {
        let end = EndClaims(&claims);
        let on_worker: &(dyn Fn(usize) + Sync) = &on_worker;
        // SAFETY: the helpers call `on_worker` (which borrows this frame)
        // only for an item they claimed (`Claims::work`), and `end`'s drop
        // returns (this frame lives on) only once every claimed item has
        // ended and no more can be claimed; a helper that starts later
        // claims nothing and touches only `Claims`, which it co-owns.
        let on_worker: &'static (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(on_worker) };
        for _ in 0..helpers {
            let claims = std::sync::Arc::clone(&claims);
            pool.spawn(move || {
                let first = claims.claim();
                claims.started.fetch_add(1, Ordering::Release);
                if let Some(i) = first {
                    claims.work_from(i, on_worker);
                }
            });
        }
        // Under a test hook, every helper makes its first claim before this
        // thread makes any, so that tests of the threaded paths see calls
        // on the workers (and can fail them) whatever the timing.
        if hook.is_set() {
            while claims.started.load(Ordering::Acquire) < helpers {
                if rayon_core::yield_now() != Some(rayon_core::Yield::Executed) {
                    std::thread::yield_now();
                }
            }
        }
        if let Some(i) = claims.claim() {
            claims.work_from(i, &run);
        }
        drop(end);
    }
    if let Some(payload) = claims.panic.lock().take() {
        std::panic::resume_unwind(payload);
    }
    slots.into_iter().map(|slot| slot.into_inner().expect("every item ran")).collect()
}

/// `part()`, or an `Internal` error saying `what` panicked: for a part whose
/// panic should fail its call with a status (a search) rather than unwind
/// through the caller.
pub(crate) fn or_internal<T>(what: &str, part: impl FnOnce() -> crate::error::Result<T>) -> crate::error::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(part))
        .unwrap_or_else(|_| Err(crate::error::Error::new(crate::error::ErrorKind::Internal, format!("{what} panicked"))))
}

/// Runs `run` on each of `parts` once, on up to `threads` threads (this one
/// among them), as `claimed` runs items: for parts that own disjoint
/// slices of the caller's buffers.
pub(crate) fn each_part<P: Send>(parts: Vec<P>, threads: usize, run: impl Fn(P) + Sync) {
    let parts: Vec<parking_lot::Mutex<Option<P>>> = parts.into_iter().map(|p| parking_lot::Mutex::new(Some(p))).collect();
    claimed(parts.len(), threads, |i| run(parts[i].lock().take().expect("each part is claimed once")));
}

/// Runs `f(0)`, ..., `f(n - 1)` at once, `f(0)` on this thread and each
/// other on a thread of its own (on this thread too, after `f(0)`, if one
/// cannot be started), and returns their results in order: for blocking
/// system calls (`fdatasync`) that should overlap whatever the number of
/// CPUs. A panic in a helper thread resumes on this thread.
pub(crate) fn on_own_threads<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let f = &f;
    let hook = Inherit::here();
    let hook = &hook;
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..n)
            .map(|i| std::thread::Builder::new().name("omendb-io".into()).spawn_scoped(scope, move || hook.run(|| f(i))).map_err(|_| i))
            .collect();
        let mut results = Vec::with_capacity(n);
        if n > 0 {
            results.push(f(0));
        }
        for other in others {
            results.push(match other {
                Ok(handle) => handle.join().unwrap_or_else(|payload| std::panic::resume_unwind(payload)),
                Err(i) => f(i),
            });
        }
        results
    })
}

/// Runs `run` over `x` (rows of `width` values) and `out` (one answer a
/// row) split into `threads` parts of whole `block`s of rows: an answer
/// that depends only on its block then does not depend on `threads`.
pub(crate) fn by_blocks<T: Send>(x: &[f32], width: usize, out: &mut [T], block: usize, threads: usize, run: impl Fn(&[f32], &mut [T]) + Sync) {
    let blocks = out.len().div_ceil(block);
    let threads = threads.clamp(1, blocks.max(1));
    if threads == 1 {
        run(x, out);
        return;
    }
    let per = blocks.div_ceil(threads) * block;
    let parts: Vec<(&[f32], &mut [T])> = x.chunks(per * width.max(1)).zip(out.chunks_mut(per)).collect();
    each_part(parts, threads, |(x, out)| run(x, out));
}

#[cfg(test)]
mod tests {
    #[test]
    fn by_ranges_covers_the_items_in_order() {
        for (count, per) in [(0usize, 3usize), (1, 1), (10, 3), (12, 4), (5, 0), (7, 100)] {
            let runs = super::by_ranges(count, per, |r| r);
            assert_eq!(runs.iter().flat_map(|r| r.clone()).collect::<Vec<_>>(), (0..count).collect::<Vec<_>>(), "{count} by {per}");
            assert!(runs.iter().all(|r| !r.is_empty() && r.len() <= per.max(1)), "{count} by {per}: {runs:?}");
        }
    }

    #[test]
    fn concurrently_keeps_order_and_runs_everything() {
        let ran = std::sync::atomic::AtomicUsize::new(0);
        let results = super::concurrently(5, |i| {
            ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            i * 10
        });
        assert_eq!(ran.into_inner(), 5);
        assert_eq!(results, [0, 10, 20, 30, 40]);
        assert!(super::concurrently(0, |i| i).is_empty());
    }

    /// Every item once, its result in its place, whatever the threads.
    #[test]
    fn claimed_runs_each_item_once_in_order() {
        for threads in 1..=4 {
            for items in [0, 1, 3, 10] {
                let ran = std::sync::atomic::AtomicUsize::new(0);
                let results = super::claimed(items, threads, |i| {
                    ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    i * 10
                });
                assert_eq!(ran.into_inner(), items, "{threads} threads");
                assert_eq!(results, (0..items).map(|i| i * 10).collect::<Vec<_>>(), "{threads} threads");
            }
        }
    }

    /// Runs `work` under a hook that records the thread of each file call,
    /// giving it a call to make (which returns the thread it ran on);
    /// returns the threads `work` reports and those the hook saw, sorted.
    #[cfg(feature = "faults")]
    fn seen_by_a_hook(
        work: impl FnOnce(&(dyn Fn() -> std::thread::ThreadId + Sync)) -> Vec<std::thread::ThreadId>,
    ) -> (Vec<std::thread::ThreadId>, Vec<std::thread::ThreadId>) {
        use std::sync::{Arc, Mutex};
        struct Threads(Arc<Mutex<Vec<std::thread::ThreadId>>>);
        impl crate::storage::faults::Hook for Threads {
            fn before(&mut self, _: &crate::storage::faults::Call<'_>) -> std::io::Result<()> {
                self.0.lock().unwrap().push(std::thread::current().id());
                Ok(())
            }
            fn after(&mut self, _: &crate::storage::faults::Call<'_>, _: bool) {}
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let path = std::path::Path::new("/nonexistent");
        let call = || {
            crate::storage::faults::io(crate::storage::faults::Op::Write, path, None, || Ok(())).unwrap();
            std::thread::current().id()
        };
        let previous = crate::storage::faults::set_hook(Some(Box::new(Threads(seen.clone()))));
        let mut ran_on = work(&call);
        crate::storage::faults::set_hook(previous);
        let mut seen = seen.lock().unwrap().clone();
        ran_on.sort_by_key(|t| format!("{t:?}"));
        seen.sort_by_key(|t| format!("{t:?}"));
        (ran_on, seen)
    }

    /// Under a test hook the helper threads still run their parts, and the
    /// hook sees the calls they make (it is installed on them for the duration).
    #[cfg(feature = "faults")]
    #[test]
    fn under_a_hook_helper_threads_run_and_are_seen() {
        let here = std::thread::current().id();
        let (ran_on, seen) = seen_by_a_hook(|call| {
            let ran_on = super::on_own_threads(3, |_| call());
            assert_eq!(ran_on[0], here);
            assert!(ran_on[1] != here && ran_on[2] != here, "helpers run f(1) and f(2)");
            ran_on
        });
        assert_eq!(seen, ran_on, "the hook saw each thread's call");
    }

    /// The workers' parts run under the caller's hook too, and under a
    /// hook each worker asked for takes a part, however quick the parts.
    #[cfg(feature = "faults")]
    #[test]
    fn under_a_hook_workers_take_parts_and_are_seen() {
        let here = std::thread::current().id();
        let (ran_on, seen) = seen_by_a_hook(|call| super::claimed(32, 2, |_| call()));
        assert!(ran_on.iter().any(|&t| t != here), "no part ran on a worker");
        assert_eq!(seen, ran_on, "the hook saw each part's call");
    }

    #[test]
    fn a_helper_panic_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| super::on_own_threads(2, |i| if i == 1 { panic!("helper {i}") } else { i }));
        let payload = caught.expect_err("the helper's panic must propagate");
        assert_eq!(payload.downcast_ref::<String>().map(String::as_str), Some("helper 1"));
    }

    /// Items long enough (a millisecond each) that a worker takes some.
    fn slow_items(items: usize) -> (std::thread::ThreadId, Vec<std::thread::ThreadId>) {
        let here = std::thread::current().id();
        let ran_on = super::claimed(items, 2, |_| {
            std::thread::sleep(std::time::Duration::from_millis(1));
            std::thread::current().id()
        });
        (here, ran_on)
    }

    /// The workers take part; a panic in a part a worker runs resumes on
    /// the caller, after the other parts have run.
    #[test]
    fn workers_take_parts_and_their_panics_reach_the_caller() {
        let (here, ran_on) = slow_items(32);
        assert!(ran_on.iter().any(|&t| t != here), "no part ran on a worker");
        let ran = std::sync::atomic::AtomicUsize::new(0);
        let caught = std::panic::catch_unwind(|| {
            super::concurrently(16, |i| {
                std::thread::sleep(std::time::Duration::from_millis(1));
                ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if std::thread::current().id() != here {
                    panic!("worker {i}");
                }
            })
        });
        let payload = caught.expect_err("a worker's panic must propagate");
        assert!(payload.downcast_ref::<String>().is_some_and(|m| m.starts_with("worker ")));
        assert_eq!(ran.into_inner(), 16, "the parts left still ran");
    }

    #[test]
    fn a_part_that_panics_is_an_internal_error() {
        let ok = super::or_internal("part", || Ok(7));
        assert_eq!(ok.unwrap(), 7);
        let err = super::or_internal::<()>("part", || panic!("boom")).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Internal);
        assert!(err.to_string().contains("part panicked"), "{err}");
    }

    /// `both` gives each side's own result (of different types), on one
    /// thread or two, and a panic on either side resumes here.
    #[test]
    fn both_gives_each_sides_result() {
        for threads in [1, 2, 4] {
            let owned = String::from("side a");
            let (a, b) = super::both(threads, move || owned.len(), || "b".to_string());
            assert_eq!((a, b.as_str()), (6, "b"), "{threads} threads");
            for panicking in [0, 1] {
                let caught = std::panic::catch_unwind(|| {
                    super::both(threads, || if panicking == 0 { panic!("a") } else { 1 }, || if panicking == 1 { panic!("b") } else { 2 })
                });
                assert!(caught.is_err(), "{threads} threads, side {panicking} panicked");
            }
        }
    }

    /// Parts that own slices of the caller's buffer each run once, and
    /// have all run when the call returns.
    #[test]
    fn each_part_writes_its_own_slice() {
        let mut out = vec![0usize; 1000];
        let parts: Vec<(usize, &mut [usize])> = out.chunks_mut(100).enumerate().collect();
        super::each_part(parts, 3, |(p, part)| part.iter_mut().enumerate().for_each(|(i, o)| *o += p * 100 + i));
        assert_eq!(out, (0..1000).collect::<Vec<_>>());
    }

    /// A call waits for the items its helpers claimed, never for a helper
    /// to start: with every worker held by another caller's long parts,
    /// this thread does all of its own items and returns. (Waiting for a
    /// worker, it would return only when the watchdog frees them, 3 s on.)
    #[test]
    fn busy_workers_do_not_hold_up_another_caller() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::{Duration, Instant};
        let release = AtomicBool::new(false);
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::thread::scope(|scope| {
            // Another caller whose parts hold every worker until released.
            scope.spawn(|| {
                super::claimed(workers + 1, workers + 1, |_| {
                    while !release.load(Ordering::Acquire) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
            });
            let watchdog = scope.spawn(|| {
                let start = Instant::now();
                while !release.load(Ordering::Acquire) && start.elapsed() < Duration::from_secs(3) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                release.store(true, Ordering::Release);
            });
            std::thread::sleep(Duration::from_millis(50));
            let started = Instant::now();
            let ran = super::claimed(8, 2, |i| i);
            let took = started.elapsed();
            release.store(true, Ordering::Release);
            watchdog.join().unwrap();
            assert_eq!(ran, (0..8).collect::<Vec<_>>());
            assert!(took < Duration::from_secs(2), "waited {took:?} for busy workers");
        });
    }

    /// A forked child has none of its parent's workers: its parallel work
    /// runs on workers of its own (with the parent's pool it would wait
    /// forever for jobs no thread takes; the alarm ends it then).
    #[test]
    fn a_forked_child_gets_workers_of_its_own() {
        let (here, ran_on) = slow_items(8);
        assert!(ran_on.iter().any(|&t| t != here), "the parent's pool is in use before the fork");
        // SAFETY: the child calls only what this crate's code would (no
        // locks a parent's thread could hold: the pool's workers are idle)
        // and leaves with `_exit`, running no destructors or exit handlers.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: alarm and _exit are async-signal-safe.
            unsafe { libc::alarm(30) };
            let (here, ran_on) = slow_items(32);
            let code = if ran_on.iter().any(|&t| t != here) { 0 } else { 1 };
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked; `status` is a valid out pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "the child was killed (signal {})", libc::WTERMSIG(status));
        assert_eq!(libc::WEXITSTATUS(status), 0, "no part ran on the child's workers");
    }
}
