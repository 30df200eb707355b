//! Breaker configuration with resilience4j-like defaults.

use std::time::Duration;

use infermux_core::{Error, ErrorKind, Result};

/// The most calls a count window holds (its ring is allocated whole).
pub const MAX_WINDOW_CALLS: u32 = 100_000;
/// The most buckets a time window is cut into (allocated whole).
pub const MAX_WINDOW_BUCKETS: u32 = 10_000;

/// What the breaker's rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlidingWindow {
    /// The last N calls.
    Count(u32),
    /// The calls of the last `window`, kept in `buckets` equal buckets.
    Time {
        /// The window's length.
        window: Duration,
        /// Buckets it is cut into.
        buckets: u32,
    },
}

/// Configuration of a [`CircuitBreaker`](super::CircuitBreaker). Build with
/// [`BreakerConfig::standard`] and the `with_*` setters; [`BreakerConfig::validate`] (which
/// the breaker's constructor also runs) rejects nonsense.
///
/// ```
/// use infermux_resilience::breaker::{BreakerConfig, SlidingWindow};
/// assert!(BreakerConfig::standard().validate().is_ok());
/// assert!(BreakerConfig::standard().with_failure_rate_threshold(0.0).validate().is_err());
/// assert!(BreakerConfig::standard().with_window(SlidingWindow::Count(0)).validate().is_err());
/// // a window too large to allocate is refused, not tried
/// let huge = SlidingWindow::Time { window: std::time::Duration::from_secs(50 * 86_400), buckets: u32::MAX };
/// assert!(BreakerConfig::standard().with_window(huge).validate().is_err());
/// assert!(BreakerConfig::standard().with_window(SlidingWindow::Count(u32::MAX)).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// The sliding window. Default: the last 50 calls.
    pub window: SlidingWindow,
    /// Failure rate (percent) at or above which the breaker opens. Default 50.
    pub failure_rate_threshold: f32,
    /// Slow-call rate (percent) at or above which the breaker opens. Default 100 (only when
    /// every call is slow).
    pub slow_call_rate_threshold: f32,
    /// A call is slow when its time to first byte is at least this. Default 30 s.
    pub slow_call_duration: Duration,
    /// Calls the window must hold before rates count. Default 20.
    pub minimum_calls: u32,
    /// How long the breaker stays open. Default 30 s.
    pub open_wait: Duration,
    /// Each consecutive re-open multiplies the wait by this. Default 1 (constant).
    pub open_wait_multiplier: f32,
    /// The longest open wait. Default 5 min.
    pub max_open_wait: Duration,
    /// Calls admitted in half-open. Default 3.
    pub half_open_probes: u32,
}

impl BreakerConfig {
    /// The defaults listed on each field.
    pub fn standard() -> Self {
        BreakerConfig {
            window: SlidingWindow::Count(50),
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration: Duration::from_secs(30),
            minimum_calls: 20,
            open_wait: Duration::from_secs(30),
            open_wait_multiplier: 1.0,
            max_open_wait: Duration::from_secs(300),
            half_open_probes: 3,
        }
    }
    /// Sets the window.
    pub fn with_window(mut self, w: SlidingWindow) -> Self {
        self.window = w;
        self
    }
    /// Sets the failure-rate threshold (percent).
    pub fn with_failure_rate_threshold(mut self, pct: f32) -> Self {
        self.failure_rate_threshold = pct;
        self
    }
    /// Sets the slow-call threshold (percent) and duration.
    pub fn with_slow_calls(mut self, pct: f32, duration: Duration) -> Self {
        self.slow_call_rate_threshold = pct;
        self.slow_call_duration = duration;
        self
    }
    /// Sets the minimum number of calls.
    pub fn with_minimum_calls(mut self, n: u32) -> Self {
        self.minimum_calls = n;
        self
    }
    /// Sets the open wait.
    pub fn with_open_wait(mut self, d: Duration) -> Self {
        self.open_wait = d;
        self
    }
    /// Makes the open wait grow by `multiplier` per consecutive re-open, up to `max`.
    pub fn with_growing_open_wait(mut self, multiplier: f32, max: Duration) -> Self {
        self.open_wait_multiplier = multiplier;
        self.max_open_wait = max;
        self
    }
    /// Sets the number of half-open probes.
    pub fn with_half_open_probes(mut self, n: u32) -> Self {
        self.half_open_probes = n;
        self
    }

    /// Checks the values, returning the config or a [`ErrorKind::Config`] error: a window
    /// that holds at least one call and at most [`MAX_WINDOW_CALLS`] (a time window: a length
    /// and at least one bucket, no more buckets than milliseconds nor than
    /// [`MAX_WINDOW_BUCKETS`]: the window is allocated whole), rate thresholds in (0, 100], a
    /// non-zero slow-call duration,
    /// at least one minimum call (no more than a count window holds) and one half-open probe,
    /// an open-wait multiplier that is a finite number ≥ 1.
    pub fn validate(self) -> Result<Self> {
        let bad = |m: &'static str| Err(Error::new(ErrorKind::Config, m));
        match self.window {
            SlidingWindow::Count(0) => return bad("breaker window must hold at least one call"),
            SlidingWindow::Time { window, buckets }
                if buckets == 0
                    || window.is_zero()
                    || window < Duration::from_millis(u64::from(buckets)) =>
            {
                return bad(
                    "a time window needs a length and at least one bucket of at least 1 ms",
                );
            }
            SlidingWindow::Count(n) if n > MAX_WINDOW_CALLS => {
                return bad("a count window holds at most 100 000 calls");
            }
            SlidingWindow::Time { buckets, .. } if buckets > MAX_WINDOW_BUCKETS => {
                return bad("a time window has at most 10 000 buckets");
            }
            SlidingWindow::Count(n) if self.minimum_calls > n => {
                return bad(
                    "minimum calls exceed what the count window holds: it could never trip",
                );
            }
            _ => {}
        }
        let pct = |p: f32| p > 0.0 && p <= 100.0;
        if !pct(self.failure_rate_threshold) || !pct(self.slow_call_rate_threshold) {
            return bad("rate thresholds are percentages in (0, 100]");
        }
        if self.slow_call_duration.is_zero() {
            return bad("a zero slow-call duration makes every call slow");
        }
        if self.minimum_calls == 0 || self.half_open_probes == 0 {
            return bad("minimum calls and half-open probes must be at least 1");
        }
        if self.open_wait_multiplier.is_nan()
            || self.open_wait_multiplier < 1.0
            || !self.open_wait_multiplier.is_finite()
        {
            return bad("the open wait multiplier must be a finite number >= 1");
        }
        Ok(self)
    }

    pub(crate) fn open_wait_for(&self, reopen: u32) -> Duration {
        let factor =
            f64::from(self.open_wait_multiplier).powi(i32::try_from(reopen).unwrap_or(i32::MAX));
        let wait = self.open_wait.as_secs_f64() * factor;
        let most = self.max_open_wait.max(self.open_wait);
        // past what a `Duration` holds (an open wait near `Duration::MAX`): the most
        Duration::try_from_secs_f64(wait).map_or(most, |w| w.min(most))
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self::standard()
    }
}
