//! Delay schedules.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Which base a delay grows from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DelayClass {
    /// Server errors, timeouts, connection failures.
    Transient,
    /// Rate limits and overload.
    Throttled,
}

/// A delay schedule: the pause before retry number `retry` (1-based). The policy applies caps,
/// floors and Retry-After on top.
pub trait Backoff: Send + Sync + fmt::Debug {
    /// The pause before retry number `retry`.
    fn delay(&self, retry: u32, class: DelayClass, base: Duration, cap: Duration) -> Duration;
}

/// Exponential backoff with full jitter: uniform in `[0, min(cap, base * 2^(retry-1))]`
/// (AWS's "full jitter"). Lock-free; seeded for reproducible tests.
pub struct FullJitter {
    state: AtomicU64,
}

impl fmt::Debug for FullJitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FullJitter")
    }
}

impl FullJitter {
    /// A schedule seeded from `seed`.
    pub fn seeded(seed: u64) -> Self {
        FullJitter {
            state: AtomicU64::new(seed),
        }
    }

    /// A schedule seeded from the process's random state.
    pub fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        Self::seeded(h.finish())
    }

    fn next_f64(&self) -> f64 {
        // SplitMix64 over an atomic counter: lock-free and well mixed.
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Default for FullJitter {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff for FullJitter {
    fn delay(&self, retry: u32, _class: DelayClass, base: Duration, cap: Duration) -> Duration {
        let exp = retry.saturating_sub(1).min(60) as i32;
        let ceiling = (base.as_secs_f64() * 2f64.powi(exp)).min(cap.as_secs_f64());
        Duration::from_secs_f64(ceiling * self.next_f64())
    }
}
