//! [`KeyRetry`]: a retry policy for pools of keys, where a throttled or refused *key* is not a
//! reason to wait — the next attempt goes to another key.

use std::sync::Arc;
use std::time::Duration;

use super::policy::{Attempt, Decision, RetryPolicy};
use infermux_core::{ErrorKind, Idempotency, StopReason};

/// Retries errors scoped to one key — `RateLimited` (429), `Auth` (401/403) and
/// `QuotaExceeded` — at once, up to `max_attempts` attempts or `inner`'s
/// [cap](RetryPolicy::max_attempts), whichever is more (another key is not a retry of the
/// failure); and an endpoint's failures (connection, 5xx, overload, timeout; of an idempotent
/// call, or one that never reached the server) at once when the pool can fail over to another
/// endpoint ([`Attempt::failover`]), up to `max_attempts` attempts or `inner`'s cap, whichever
/// is less; leaves every other error to `inner`.
///
/// With a pool of keys (the multiplex crate's `MultiPool`) the next attempt avoids the key: the pool cools it
/// down or removes it, and when no other key can serve, the pool's own admission waits for the
/// earliest one (or refuses with `Unavailable` when that is past the deadline). Waiting the
/// `Retry-After` in the retry loop instead, as a single-endpoint policy does, would hold the
/// call back while other keys are idle. These errors never ran the request, so a
/// non-idempotent call is retried too. A key-scoped error that says not to retry it
/// (`x-should-retry: false`) stops the call ([`StopReason::NotRetryable`]) when no other key
/// can take the next attempt now ([`Attempt::failover`] false).
///
/// ```
/// use infermux_core::{Error, ErrorKind};
/// use infermux_resilience::retry::KeyRetry;
/// use infermux_resilience::retry::{Attempt, Decision, RetryPolicy, StandardRetry};
/// use std::{sync::Arc, time::Duration};
/// let policy = KeyRetry::new(Arc::new(StandardRetry::standard()), 4);
/// let throttled = Error::new(ErrorKind::RateLimited, "slow down").with_retry_after(Duration::from_secs(30));
/// assert_eq!(policy.decide(&Attempt::new(&throttled, 1)), Decision::Retry(Duration::ZERO));
/// ```
#[derive(Debug, Clone)]
pub struct KeyRetry {
    inner: Arc<dyn RetryPolicy>,
    max_attempts: u32,
}

impl KeyRetry {
    /// Key-scoped errors retried at once up to `max_attempts` attempts (the first included);
    /// others decided by `inner`.
    pub fn new(inner: Arc<dyn RetryPolicy>, max_attempts: u32) -> Self {
        KeyRetry {
            inner,
            max_attempts,
        }
    }
}

impl KeyRetry {
    /// How many attempts a call may make moving from key to key: `max_attempts`, or the
    /// inner policy's cap when that is more.
    fn keys_cap(&self) -> u32 {
        self.max_attempts
            .max(self.inner.max_attempts().unwrap_or(0))
    }
}

/// A retry at once, unless `cap` attempts were made or the deadline is spent.
fn at_once(a: &Attempt<'_>, cap: u32) -> Decision {
    if a.attempts >= cap {
        Decision::Stop(StopReason::Exhausted)
    } else if a.remaining.is_some_and(|left| left.is_zero()) {
        Decision::Stop(StopReason::Deadline)
    } else {
        Decision::Retry(Duration::ZERO)
    }
}

impl RetryPolicy for KeyRetry {
    fn decide(&self, a: &Attempt<'_>) -> Decision {
        match a.error.kind() {
            ErrorKind::RateLimited | ErrorKind::Auth | ErrorKind::QuotaExceeded
                if !a.stream_started =>
            {
                // the provider said not to retry (`x-should-retry: false`; a spent quota is
                // marked so) and no other key can take the call now: the next attempt could
                // only wait for this key again (another key is not a retry of the failure)
                if !a.failover && a.error.should_retry() == Some(false) {
                    return Decision::Stop(StopReason::NotRetryable);
                }
                at_once(a, self.keys_cap())
            }
            // an endpoint's failure (its connection, a 5xx, an overload, its own timeout)
            // while another endpoint can take the call: the next attempt goes there at once
            // (the pool avoids the endpoints tried; their breakers keep calls off them), not
            // through the backoff and retry budget meant to spare one failing endpoint
            ErrorKind::Connect | ErrorKind::Server | ErrorKind::Overloaded | ErrorKind::Timeout
                if a.failover
                    && !a.stream_started
                    && a.error.should_retry() != Some(false)
                    && (a.idempotency == Idempotency::Idempotent
                        || a.error.reached_server() == Some(false)) =>
            {
                // (the failure's own retries: no more than the inner policy allows)
                let cap = self
                    .max_attempts
                    .min(self.inner.max_attempts().unwrap_or(u32::MAX));
                at_once(a, cap)
            }
            _ => self.inner.decide(a),
        }
    }

    fn on_success(&self) {
        self.inner.on_success();
    }

    // its own retries go at once (no pause to abandon): only `inner`'s can be abandoned
    fn on_abandoned(&self) {
        self.inner.on_abandoned();
    }

    fn max_attempts(&self) -> Option<u32> {
        Some(self.keys_cap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::StandardRetry;
    use infermux_core::Error;

    fn key_retry(inner_max: u32, keys_max: u32) -> KeyRetry {
        let inner = StandardRetry::standard().with_max_attempts(inner_max);
        KeyRetry::new(Arc::new(inner), keys_max)
    }

    /// A failing endpoint's call goes to another endpoint no more often than the policy's
    /// own cap says (`max_attempts = 1`: never); a key's 429 goes to another key up to the
    /// pool's count or the policy's cap, whichever is more.
    #[test]
    fn failovers_keep_to_the_inner_cap_and_other_keys_to_the_larger() {
        let down = Error::new(ErrorKind::Server, "503");
        let at = |n| Attempt::new(&down, n).with_failover(true);
        assert_eq!(
            key_retry(1, 4).decide(&at(1)),
            Decision::Stop(StopReason::Exhausted)
        );
        assert_eq!(
            key_retry(3, 4).decide(&at(2)),
            Decision::Retry(Duration::ZERO)
        );
        assert_eq!(
            key_retry(3, 4).decide(&at(3)),
            Decision::Stop(StopReason::Exhausted)
        );
        let throttled = Error::new(ErrorKind::RateLimited, "429");
        let at = |n| Attempt::new(&throttled, n);
        assert_eq!(
            key_retry(10, 2).decide(&at(5)),
            Decision::Retry(Duration::ZERO)
        );
        assert_eq!(
            key_retry(10, 2).decide(&at(10)),
            Decision::Stop(StopReason::Exhausted)
        );
        assert_eq!(
            key_retry(1, 3).decide(&at(2)),
            Decision::Retry(Duration::ZERO)
        );
        assert_eq!(key_retry(10, 2).max_attempts(), Some(10));
    }

    /// A key's error that says not to retry it (a spent quota is marked so) stops the call
    /// when no other key can take it now; with another key fit (`failover`) it goes there at
    /// once, whatever its Retry-After.
    #[test]
    fn a_key_error_that_says_no_stops_only_with_no_other_key() {
        let policy = key_retry(3, 3);
        for kind in [ErrorKind::RateLimited, ErrorKind::QuotaExceeded] {
            let no = Error::new(kind, "no").with_should_retry(false);
            assert_eq!(
                policy.decide(&Attempt::new(&no, 1)),
                Decision::Stop(StopReason::NotRetryable)
            );
            assert_eq!(
                policy.decide(&Attempt::new(&no, 1).with_failover(true)),
                Decision::Retry(Duration::ZERO)
            );
        }
        let long =
            Error::new(ErrorKind::RateLimited, "429").with_retry_after(Duration::from_secs(120));
        assert_eq!(
            policy.decide(&Attempt::new(&long, 1)),
            Decision::Retry(Duration::ZERO),
            "the pool's admission waits for the earliest key, or refuses past the deadline"
        );
    }
}
