//! A retry budget: a token bucket where each retry costs a token and each success refunds a
//! fraction of one, so retries stay a bounded share of traffic when a provider is down.

use std::sync::atomic::{AtomicI64, Ordering};

const MILLI: i64 = 1000;

/// A token bucket of retries. Lock-free.
///
/// ```
/// use infermux_resilience::retry::RetryBudget;
/// let budget = RetryBudget::new(2.0, 0.5).unwrap();
/// assert!(budget.try_withdraw());
/// assert!(budget.try_withdraw());
/// assert!(!budget.try_withdraw(), "empty");
/// budget.deposit();
/// budget.deposit();
/// assert!(budget.try_withdraw(), "two successes refund one retry");
/// ```
#[derive(Debug)]
pub struct RetryBudget {
    tokens: AtomicI64,
    max: i64,
    refund: i64,
}

impl RetryBudget {
    /// A full bucket of `max_retries` tokens; each success refunds `refund_per_success`.
    /// Fails with a config error unless both are finite and positive.
    pub fn new(max_retries: f64, refund_per_success: f64) -> infermux_core::Result<Self> {
        if !(max_retries.is_finite()
            && max_retries >= 1.0
            && refund_per_success.is_finite()
            && refund_per_success >= 0.0)
        {
            return Err(infermux_core::Error::new(
                infermux_core::ErrorKind::Config,
                "a retry budget needs at least one token and a non-negative refund",
            ));
        }
        let max = (max_retries * MILLI as f64) as i64;
        Ok(RetryBudget {
            tokens: AtomicI64::new(max),
            max,
            refund: (refund_per_success * MILLI as f64) as i64,
        })
    }

    /// 10 retries in the bucket, a tenth of a retry back per success.
    pub fn standard() -> Self {
        RetryBudget {
            tokens: AtomicI64::new(10 * MILLI),
            max: 10 * MILLI,
            refund: MILLI / 10,
        }
    }

    /// Takes one retry's token, if there is one.
    pub fn try_withdraw(&self) -> bool {
        self.tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t >= MILLI).then_some(t - MILLI)
            })
            .is_ok()
    }

    /// Gives back the token of a retry that [`try_withdraw`](RetryBudget::try_withdraw) took
    /// but that never ran (its caller gave up during the pause); never past the maximum.
    pub fn give_back(&self) {
        let _ = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t < self.max).then(|| t.saturating_add(MILLI).min(self.max))
            });
    }

    /// Refunds after a success. A full bucket (the usual case: no retries lately) is only
    /// read, so the successes of many threads share its cache line instead of fighting for it;
    /// only a refund into a bucket below its maximum writes (a compare-and-swap clamped to the
    /// maximum, so the bucket never holds more than it may, not even for a moment).
    pub fn deposit(&self) {
        if self.refund == 0 || self.tokens.load(Ordering::Relaxed) >= self.max {
            return;
        }
        let _ = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t < self.max).then(|| t.saturating_add(self.refund).min(self.max))
            });
    }

    /// Retries left.
    pub fn available(&self) -> f64 {
        self.tokens.load(Ordering::Acquire) as f64 / MILLI as f64
    }
}
