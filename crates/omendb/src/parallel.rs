//! Running a few closures side by side on scoped threads.

/// Runs `f(0)`, ..., `f(n - 1)` concurrently and returns their results in
/// order: `f(0)` on this thread, the others on scoped threads named `name`
/// (on this thread too, after `f(0)`, if one cannot be started). A panic
/// in a helper thread resumes on this thread.
///
/// While a `faults` test hook is installed on this thread, everything runs
/// here, in order: the hook is per thread, and it must see every file call
/// the closures make.
pub(crate) fn concurrently<T: Send>(n: usize, name: &str, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    if crate::storage::faults::hooked() {
        return (0..n).map(&f).collect();
    }
    let f = &f;
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..n)
            .map(|i| std::thread::Builder::new().name(name.into()).spawn_scoped(scope, move || f(i)).map_err(|_| i))
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

    /// Under a test hook nothing leaves the calling thread (the hook is per
    /// thread and must see every file call).
    #[cfg(feature = "faults")]
    #[test]
    fn under_a_hook_everything_runs_on_this_thread() {
        struct Quiet;
        impl crate::storage::faults::Hook for Quiet {
            fn before(&mut self, _: &crate::storage::faults::Call<'_>) -> std::io::Result<()> {
                Ok(())
            }
            fn after(&mut self, _: &crate::storage::faults::Call<'_>, _: bool) {}
        }
        let here = std::thread::current().id();
        let on_caller = |n| super::concurrently(n, "test", |_| std::thread::current().id() == here);
        assert_eq!(on_caller(3), [true, false, false], "without a hook, helpers run f(1) and f(2)");
        let previous = crate::storage::faults::set_hook(Some(Box::new(Quiet)));
        let hooked = on_caller(3);
        crate::storage::faults::set_hook(previous);
        assert_eq!(hooked, [true, true, true]);
    }

    #[test]
    fn a_helper_panic_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| super::concurrently(2, "test", |i| if i == 1 { panic!("helper {i}") } else { i }));
        let payload = caught.expect_err("the helper's panic must propagate");
        assert_eq!(payload.downcast_ref::<String>().map(String::as_str), Some("helper 1"));
    }
}
