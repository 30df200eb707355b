//! Retry: a [`RetryPolicy`] trait of synchronous decisions, the [`StandardRetry`] default, the
//! [`Backoff`] schedule it draws delays from, and the [`RetryBudget`] that keeps a dead provider
//! from being hammered.
//!
//! The standard policy retries a retryable error (the kind is transient and the server did not
//! say `x-should-retry: false`) until the attempt cap, with full jitter from separate bases for
//! transient and throttling errors and a floor for throttling. A server's Retry-After is a
//! minimum; when it is longer than the cap or the time left before the call deadline, the call
//! is not retried but fails at once with the error carrying it. A stream that delivered content
//! is never retried; a non-idempotent call only when it never reached the server; an
//! unsupported operation never. [`StopReason`] lives in core (re-exported here): the final
//! error of a call carries it with the number of attempts made.
//!
//! ```
//! use infermux_core::{Error, ErrorKind, Idempotency};
//! use infermux_resilience::retry::{Attempt, Decision, RetryPolicy, StandardRetry, StopReason};
//! use std::time::Duration;
//!
//! let policy = StandardRetry::standard();
//! let busy = Error::new(ErrorKind::RateLimited, "slow down").with_retry_after(Duration::from_secs(2));
//! match policy.decide(&Attempt::new(&busy, 1)) {
//!     Decision::Retry(after) => assert!(after >= Duration::from_secs(2)),
//!     other => panic!("{other:?}"),
//! }
//! let bad = Error::new(ErrorKind::InvalidRequest, "no");
//! assert_eq!(policy.decide(&Attempt::new(&bad, 1)), Decision::Stop(StopReason::NotRetryable));
//! ```

mod backoff;
mod budget;
mod key;
mod policy;

pub use backoff::{Backoff, DelayClass, FullJitter};
pub use budget::RetryBudget;
pub use infermux_core::StopReason;
pub use key::KeyRetry;
pub use policy::{Attempt, Decision, RetryPolicy, StandardRetry};
