//! Running a few closures side by side on scoped threads.

/// Runs `f(0)`, ..., `f(n - 1)` concurrently and returns their results in
/// order: `f(0)` on this thread, the others on scoped threads named `name`
/// (on this thread too, after `f(0)`, if one cannot be started). A panic
/// in a helper thread resumes on this thread.
///
/// A `faults` test hook installed on this thread is installed on each helper
/// for its part too, so the hook sees every file call the closures make.
pub(crate) fn concurrently<T: Send>(n: usize, name: &str, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let f = &f;
    let hook = crate::storage::faults::Inherit::here();
    let hook = &hook;
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..n)
            .map(|i| std::thread::Builder::new().name(name.into()).spawn_scoped(scope, move || hook.run(|| f(i))).map_err(|_| i))
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

/// Runs `f(0)`, ..., `f(items - 1)` on up to `threads` threads (this one
/// among them, as `concurrently` runs them), each thread claiming the next
/// item as it finishes its last, and returns the results in item order:
/// for items of uneven cost, where shares fixed in advance leave a thread
/// idle at the end.
pub(crate) fn claimed<T: Send>(items: usize, threads: usize, name: &str, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let per_thread = concurrently(threads.min(items), name, |_| {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= items {
                break done;
            }
            done.push((i, f(i)));
        }
    });
    let mut all: Vec<(usize, T)> = per_thread.into_iter().flatten().collect();
    all.sort_unstable_by_key(|&(i, _)| i);
    all.into_iter().map(|(_, result)| result).collect()
}

/// Runs `run` over `x` (rows of `width` values) and `out` (one answer a
/// row) split into `threads` parts of whole `block`s of rows, the first
/// part on this thread: an answer that depends only on its block then
/// does not depend on `threads`.
pub(crate) fn by_blocks<T: Send>(x: &[f32], width: usize, out: &mut [T], block: usize, threads: usize, run: impl Fn(&[f32], &mut [T]) + Sync) {
    let blocks = out.len().div_ceil(block);
    let threads = threads.clamp(1, blocks.max(1));
    if threads == 1 {
        run(x, out);
        return;
    }
    let per = blocks.div_ceil(threads) * block;
    let run = &run;
    std::thread::scope(|s| {
        let mut parts = x.chunks(per * width.max(1)).zip(out.chunks_mut(per));
        let first = parts.next();
        for (xp, op) in parts {
            s.spawn(move || run(xp, op));
        }
        if let Some((xp, op)) = first {
            run(xp, op);
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn concurrently_keeps_order_and_runs_everything() {
        let ran = std::sync::atomic::AtomicUsize::new(0);
        let results = super::concurrently(5, "test", |i| {
            ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            i * 10
        });
        assert_eq!(ran.into_inner(), 5);
        assert_eq!(results, [0, 10, 20, 30, 40]);
        assert!(super::concurrently(0, "test", |i| i).is_empty());
    }

    /// Every item once, its result in its place, whatever the threads.
    #[test]
    fn claimed_runs_each_item_once_in_order() {
        for threads in 1..=4 {
            for items in [0, 1, 3, 10] {
                let ran = std::sync::atomic::AtomicUsize::new(0);
                let results = super::claimed(items, threads, "test", |i| {
                    ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    i * 10
                });
                assert_eq!(ran.into_inner(), items, "{threads} threads");
                assert_eq!(results, (0..items).map(|i| i * 10).collect::<Vec<_>>(), "{threads} threads");
            }
        }
    }

    /// Under a test hook the helpers still run their parts, and the hook
    /// sees the calls they make (it is installed on them for the duration).
    #[cfg(feature = "faults")]
    #[test]
    fn under_a_hook_helpers_run_and_are_seen() {
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
        let here = std::thread::current().id();
        let path = std::path::Path::new("/nonexistent");
        let call = |_| {
            crate::storage::faults::io(crate::storage::faults::Op::Write, path, None, || Ok(())).unwrap();
            std::thread::current().id()
        };
        let previous = crate::storage::faults::set_hook(Some(Box::new(Threads(seen.clone()))));
        let ran_on = super::concurrently(3, "test", call);
        crate::storage::faults::set_hook(previous);
        assert_eq!(ran_on[0], here);
        assert!(ran_on[1] != here && ran_on[2] != here, "helpers run f(1) and f(2)");
        let mut seen = seen.lock().unwrap().clone();
        let mut want = ran_on.clone();
        seen.sort_by_key(|t| format!("{t:?}"));
        want.sort_by_key(|t| format!("{t:?}"));
        assert_eq!(seen, want, "the hook saw each thread's call");
    }

    #[test]
    fn a_helper_panic_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| super::concurrently(2, "test", |i| if i == 1 { panic!("helper {i}") } else { i }));
        let payload = caught.expect_err("the helper's panic must propagate");
        assert_eq!(payload.downcast_ref::<String>().map(String::as_str), Some("helper 1"));
    }
}
