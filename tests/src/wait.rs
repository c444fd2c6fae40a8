//! Polling with a deadline instead of sleeping.

use std::time::{Duration, Instant};

/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `f` until it returns `Some`, and returns that with the time it took; panics with
/// `what` after `limit`.
pub fn until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// Polls `f` until it is true; returns the time it took.
pub fn until_true(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    until(what, limit, || f().then_some(())).1
}

/// Checks that `f` stays true for `d` (polling); panics as soon as it is not.
pub fn stays(what: &str, d: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < d {
        assert!(f(), "{what} stopped holding after {:?}", start.elapsed());
        std::thread::sleep(POLL);
    }
}
