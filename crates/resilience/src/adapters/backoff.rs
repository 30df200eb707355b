//! `backoff` adapter: a [`backoff::ExponentialBackoff`] as the delay schedule of
//! [`StandardRetry`](crate::retry::StandardRetry).
//!
//! Only the schedule comes from the `backoff` crate; the policy keeps every cap: the attempt
//! cap, the longest pause, the throttling floor, the call deadline and the budget, and a
//! Retry-After stays a minimum that fails the call at once when longer than the cap (the
//! `backoff` crate's own retry loop would follow any Retry-After past its limits). The
//! template's `max_elapsed_time` is ignored: the call deadline plays that part.
//!
//! The `backoff` crate itself is re-exported here as [`backoff`], so a template
//! is built with the version this adapter takes.
//!
//! ```
//! use infermux_core::{Error, ErrorKind};
//! use infermux_resilience::adapters::backoff::ExponentialSchedule;
//! use infermux_resilience::retry::{Attempt, Decision, RetryPolicy, StandardRetry};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let template = backoff::ExponentialBackoffBuilder::new()
//!     .with_initial_interval(Duration::from_millis(100))
//!     .with_max_interval(Duration::from_secs(5))
//!     .build();
//! let policy = StandardRetry::standard().with_backoff(Arc::new(ExponentialSchedule::new(template)));
//! let e = Error::new(ErrorKind::Server, "boom");
//! assert!(matches!(policy.decide(&Attempt::new(&e, 1)), Decision::Retry(_)));
//! ```

/// The `backoff` crate this adapter takes its types from, at the same version.
pub use ::backoff;

use std::fmt;
use std::time::Duration;

use ::backoff::backoff::Backoff as _;

use crate::retry::{Backoff, DelayClass};

/// A schedule drawn from a template [`backoff::ExponentialBackoff`]: the pause before retry
/// `n` is the template's `n`-th `next_backoff()` on a fresh copy (so concurrent calls never
/// share state), capped by the policy.
pub struct ExponentialSchedule {
    template: backoff::ExponentialBackoff,
}

impl fmt::Debug for ExponentialSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExponentialSchedule")
            .field("initial_interval", &self.template.initial_interval)
            .field("multiplier", &self.template.multiplier)
            .field("max_interval", &self.template.max_interval)
            .finish()
    }
}

impl ExponentialSchedule {
    /// A schedule from a template.
    pub fn new(mut template: backoff::ExponentialBackoff) -> Self {
        template.max_elapsed_time = None;
        template.reset();
        ExponentialSchedule { template }
    }
}

impl Backoff for ExponentialSchedule {
    fn delay(&self, retry: u32, _class: DelayClass, _base: Duration, cap: Duration) -> Duration {
        let mut b = self.template.clone();
        b.reset();
        let mut delay = cap;
        for _ in 0..retry.clamp(1, 64) {
            delay = b.next_backoff().unwrap_or(cap);
        }
        delay.min(cap)
    }
}
