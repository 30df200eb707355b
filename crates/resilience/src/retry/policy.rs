//! The [`RetryPolicy`] trait and the [`StandardRetry`] default.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use infermux_core::{Error, ErrorKind, Idempotency, Result, StopReason};

use super::backoff::{Backoff, DelayClass, FullJitter};
use super::budget::RetryBudget;

/// What the policy knows about a failed attempt.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Attempt<'a> {
    /// The attempt's error.
    pub error: &'a Error,
    /// Attempts made so far (1 after the first failure).
    pub attempts: u32,
    /// Time left before the call deadline, if there is one.
    pub remaining: Option<Duration>,
    /// Whether the call may be sent twice.
    pub idempotency: Idempotency,
    /// Whether a streamed answer already delivered content to the caller.
    pub stream_started: bool,
    /// Whether the pool has another member (another endpoint or key) the next attempt can go
    /// to: a policy may fail over at once instead of backing off on the same endpoint.
    pub failover: bool,
}

impl<'a> Attempt<'a> {
    /// Attempt number `attempts` failed with `error` (idempotent, no deadline, no stream).
    pub fn new(error: &'a Error, attempts: u32) -> Self {
        Attempt {
            error,
            attempts,
            remaining: None,
            idempotency: Idempotency::Idempotent,
            stream_started: false,
            failover: false,
        }
    }
    /// Sets the time left.
    pub fn with_remaining(mut self, remaining: Option<Duration>) -> Self {
        self.remaining = remaining;
        self
    }
    /// Sets the idempotency.
    pub fn with_idempotency(mut self, i: Idempotency) -> Self {
        self.idempotency = i;
        self
    }
    /// Marks a stream that already delivered content.
    pub fn with_stream_started(mut self, started: bool) -> Self {
        self.stream_started = started;
        self
    }
    /// Says whether another member of the pool can take the next attempt.
    pub fn with_failover(mut self, failover: bool) -> Self {
        self.failover = failover;
        self
    }
}

/// A retry decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Retry after this pause.
    Retry(Duration),
    /// Give up.
    Stop(StopReason),
}

/// Decides whether and when to retry. Decisions are synchronous and cheap; the retry loop
/// does the waiting (holding no permit while it waits).
pub trait RetryPolicy: Send + Sync + fmt::Debug {
    /// The decision after a failed attempt.
    fn decide(&self, attempt: &Attempt<'_>) -> Decision;
    /// Called after a successful attempt (refunds budgets).
    fn on_success(&self) {}
    /// Called when a retry this policy allowed with a pause never ran: the caller gave up
    /// during the pause. Gives back what [`RetryPolicy::decide`] took (a budget's token).
    fn on_abandoned(&self) {}
    /// The most attempts of one call this policy allows (the first included), when it has
    /// such a cap: a policy wrapping it ([`KeyRetry`](super::KeyRetry)) keeps to it. `None`
    /// (the default): no cap to tell.
    fn max_attempts(&self) -> Option<u32> {
        None
    }
}

/// The default retry policy. Build with [`StandardRetry::standard`] or
/// [`StandardRetry::disabled`] and the `with_*` setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StandardRetry {
    /// Attempts in all, the first included. Default 3.
    pub max_attempts: u32,
    /// Base of the backoff for transient errors. Default 250 ms.
    pub transient_base: Duration,
    /// Base of the backoff for rate limits and overload. Default 1 s.
    pub throttle_base: Duration,
    /// The shortest pause after a rate limit or overload. Default 500 ms.
    pub throttle_floor: Duration,
    /// The longest pause; a longer Retry-After fails the call at once. Default 30 s.
    pub max_delay: Duration,
    /// The retry budget shared by the calls using this policy (`None`: unlimited).
    pub budget: Option<Arc<RetryBudget>>,
    /// The delay schedule. Default [`FullJitter`].
    pub backoff: Arc<dyn Backoff>,
}

impl StandardRetry {
    /// The defaults listed on each field, with a [`RetryBudget::standard`].
    pub fn standard() -> Self {
        StandardRetry {
            max_attempts: 3,
            transient_base: Duration::from_millis(250),
            throttle_base: Duration::from_secs(1),
            throttle_floor: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            budget: Some(Arc::new(RetryBudget::standard())),
            backoff: Arc::new(FullJitter::new()),
        }
    }
    /// No retries.
    pub fn disabled() -> Self {
        StandardRetry {
            max_attempts: 1,
            ..Self::standard()
        }
    }
    /// Sets the attempt cap (the first attempt included).
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }
    /// Sets the backoff bases and the throttling floor.
    pub fn with_bases(
        mut self,
        transient: Duration,
        throttle: Duration,
        throttle_floor: Duration,
    ) -> Self {
        self.transient_base = transient;
        self.throttle_base = throttle;
        self.throttle_floor = throttle_floor;
        self
    }
    /// Sets the longest pause.
    pub fn with_max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }
    /// Sets (or removes) the retry budget.
    pub fn with_budget(mut self, budget: Option<Arc<RetryBudget>>) -> Self {
        self.budget = budget;
        self
    }
    /// Sets the delay schedule.
    pub fn with_backoff(mut self, backoff: Arc<dyn Backoff>) -> Self {
        self.backoff = backoff;
        self
    }
    /// Checks the values.
    pub fn validate(self) -> Result<Self> {
        if self.max_attempts == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                "max_attempts counts the first attempt: at least 1",
            ));
        }
        if self.throttle_floor > self.max_delay {
            return Err(Error::new(
                ErrorKind::Config,
                "the throttle floor exceeds the longest pause",
            ));
        }
        Ok(self)
    }
}

impl Default for StandardRetry {
    fn default() -> Self {
        Self::standard()
    }
}

impl RetryPolicy for StandardRetry {
    fn decide(&self, a: &Attempt<'_>) -> Decision {
        let e = a.error;
        if a.stream_started {
            return Decision::Stop(StopReason::StreamStarted);
        }
        // an unsupported operation stays unsupported, whatever `x-should-retry` says
        if !e.is_retryable() || e.kind() == ErrorKind::Unsupported {
            return Decision::Stop(StopReason::NotRetryable);
        }
        if a.idempotency == Idempotency::NonIdempotent && e.reached_server() != Some(false) {
            return Decision::Stop(StopReason::NotIdempotent);
        }
        let retry_after = e.retry_after();
        if let Some(after) = retry_after
            && (after > self.max_delay || a.remaining.is_some_and(|left| after >= left))
        {
            return Decision::Stop(StopReason::RetryAfterTooLong);
        }
        if a.attempts >= self.max_attempts {
            return Decision::Stop(StopReason::Exhausted);
        }
        let throttled = matches!(e.kind(), ErrorKind::RateLimited | ErrorKind::Overloaded);
        let (class, base) = if throttled {
            (DelayClass::Throttled, self.throttle_base)
        } else {
            (DelayClass::Transient, self.transient_base)
        };
        let mut delay = self
            .backoff
            .delay(a.attempts, class, base, self.max_delay)
            .min(self.max_delay);
        if throttled {
            delay = delay.max(self.throttle_floor);
        }
        if let Some(after) = retry_after {
            delay = delay.max(after);
        }
        if a.remaining.is_some_and(|left| delay >= left) {
            return Decision::Stop(StopReason::Deadline);
        }
        if let Some(b) = &self.budget
            && !b.try_withdraw()
        {
            return Decision::Stop(StopReason::Budget);
        }
        Decision::Retry(delay)
    }

    fn on_success(&self) {
        if let Some(b) = &self.budget {
            b.deposit();
        }
    }

    fn on_abandoned(&self) {
        if let Some(b) = &self.budget {
            b.give_back();
        }
    }

    fn max_attempts(&self) -> Option<u32> {
        Some(self.max_attempts)
    }
}
