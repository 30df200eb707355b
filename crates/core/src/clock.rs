//! Time as a dependency: the [`Clock`] trait, the real [`SystemClock`] and a [`ManualClock`] for
//! deterministic tests.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How far away "no deadline" lies: about thirty years. A timeout of `Duration::MAX` cannot
/// be added to an `Instant`; `now.checked_add(d).unwrap_or(now + FAR_FUTURE)` is a deadline
/// no call reaches, and still addable to any clock's now (tokio's paused one too).
pub const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 86_400);

/// A source of monotonic time. Breakers, limiters and counters read time only through this.
pub trait Clock: Send + Sync + Debug {
    /// Now.
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to; clones share the same time.
///
/// ```
/// use infermux_core::{Clock, ManualClock};
/// use std::time::Duration;
/// let clock = ManualClock::new();
/// let t0 = clock.now();
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(clock.now() - t0, Duration::from_millis(250));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    base: Instant,
    offset_nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A manual clock starting at the real now.
    pub fn new() -> Self {
        ManualClock {
            base: Instant::now(),
            offset_nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves time forward (saturating: advances past about 584 years of it stop there, they
    /// never wrap round to the start).
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .offset_nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(nanos))
            });
    }

    /// Time elapsed since creation.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.offset_nanos.load(Ordering::SeqCst))
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        // (an `Instant` that far ahead may not exist on this platform: a later one that
        // does, found by halving the lead, rather than a panic; never reached on Linux)
        let mut ahead = self.elapsed();
        loop {
            if let Some(t) = self.base.checked_add(ahead) {
                return t;
            }
            ahead /= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_saturates_rather_than_wraps_or_panics() {
        let clock = ManualClock::new();
        let t0 = clock.now();
        clock.advance(Duration::MAX);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.elapsed(), Duration::from_nanos(u64::MAX));
        assert!(clock.now() > t0, "never back to the start");
    }
}
