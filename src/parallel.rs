//! Running a few closures side by side on scoped threads.

/// Runs `f(0)`, ..., `f(n - 1)` concurrently and returns their results in
/// order: `f(0)` on this thread, the others on scoped threads named `name`
/// (on this thread too, after `f(0)`, if one cannot be started). A panic
/// in a helper thread resumes on this thread.
pub(crate) fn concurrently<T: Send>(n: usize, name: &str, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
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

    #[test]
    fn a_helper_panic_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| super::concurrently(2, "test", |i| if i == 1 { panic!("helper {i}") } else { i }));
        let payload = caught.expect_err("the helper's panic must propagate");
        assert_eq!(payload.downcast_ref::<String>().map(String::as_str), Some("helper 1"));
    }
}
