//! The standard retry policy's decisions.

use std::sync::Arc;
use std::time::Duration;

use infermux_core::{Error, ErrorKind, Idempotency};
use infermux_resilience::retry::{
    Attempt, Decision, FullJitter, RetryBudget, RetryPolicy, StandardRetry, StopReason,
};

fn policy() -> StandardRetry {
    StandardRetry::standard()
        .with_max_attempts(4)
        .with_bases(
            Duration::from_millis(100),
            Duration::from_secs(1),
            Duration::from_millis(500),
        )
        .with_max_delay(Duration::from_secs(20))
        .with_budget(None)
        .with_backoff(Arc::new(FullJitter::seeded(7)))
        .validate()
        .unwrap()
}

#[test]
fn transient_errors_back_off_with_full_jitter_under_the_cap() {
    let p = policy();
    let e = Error::new(ErrorKind::Server, "boom");
    for attempt in 1..4 {
        for _ in 0..200 {
            match p.decide(&Attempt::new(&e, attempt)) {
                Decision::Retry(d) => assert!(
                    d <= Duration::from_millis(100) * 2u32.pow(attempt - 1),
                    "{d:?}"
                ),
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(
        p.decide(&Attempt::new(&e, 4)),
        Decision::Stop(StopReason::Exhausted)
    );
}

#[test]
fn throttling_has_a_floor_and_retry_after_is_a_minimum() {
    let p = policy();
    let e = Error::new(ErrorKind::RateLimited, "slow");
    for _ in 0..200 {
        let Decision::Retry(d) = p.decide(&Attempt::new(&e, 1)) else {
            panic!()
        };
        assert!(d >= Duration::from_millis(500) && d <= Duration::from_secs(1));
    }
    let e = e.with_retry_after(Duration::from_secs(7));
    let Decision::Retry(d) = p.decide(&Attempt::new(&e, 1)) else {
        panic!()
    };
    assert!(d >= Duration::from_secs(7));
}

#[test]
fn retry_after_beyond_cap_or_deadline_fails_at_once() {
    let p = policy();
    let e = Error::new(ErrorKind::RateLimited, "slow").with_retry_after(Duration::from_secs(60));
    assert_eq!(
        p.decide(&Attempt::new(&e, 1)),
        Decision::Stop(StopReason::RetryAfterTooLong)
    );
    let e = Error::new(ErrorKind::RateLimited, "slow").with_retry_after(Duration::from_secs(5));
    let a = Attempt::new(&e, 1).with_remaining(Some(Duration::from_secs(3)));
    assert_eq!(p.decide(&a), Decision::Stop(StopReason::RetryAfterTooLong));
    let e = Error::new(ErrorKind::Server, "x");
    let a = Attempt::new(&e, 3).with_remaining(Some(Duration::ZERO));
    assert_eq!(p.decide(&a), Decision::Stop(StopReason::Deadline));
}

#[test]
fn server_verdicts_idempotency_and_streams() {
    let p = policy();
    let e = Error::new(ErrorKind::Server, "x").with_should_retry(false);
    assert_eq!(
        p.decide(&Attempt::new(&e, 1)),
        Decision::Stop(StopReason::NotRetryable)
    );
    let e = Error::new(ErrorKind::InvalidRequest, "x").with_should_retry(true);
    assert!(matches!(p.decide(&Attempt::new(&e, 1)), Decision::Retry(_)));
    let e = Error::new(ErrorKind::QuotaExceeded, "insufficient_quota");
    assert_eq!(
        p.decide(&Attempt::new(&e, 1)),
        Decision::Stop(StopReason::NotRetryable)
    );
    let reached = Error::new(ErrorKind::Timeout, "t").with_reached_server(true);
    let a = Attempt::new(&reached, 1).with_idempotency(Idempotency::NonIdempotent);
    assert_eq!(p.decide(&a), Decision::Stop(StopReason::NotIdempotent));
    let never = Error::new(ErrorKind::Connect, "refused").with_reached_server(false);
    let a = Attempt::new(&never, 1).with_idempotency(Idempotency::NonIdempotent);
    assert!(matches!(p.decide(&a), Decision::Retry(_)));
    let a = Attempt::new(&never, 1).with_stream_started(true);
    assert_eq!(p.decide(&a), Decision::Stop(StopReason::StreamStarted));
    assert_eq!(
        StandardRetry::disabled().decide(&Attempt::new(&never, 1)),
        Decision::Stop(StopReason::Exhausted)
    );
}

#[test]
fn the_budget_stops_retries_and_successes_refill_it() {
    let budget = Arc::new(RetryBudget::new(2.0, 0.5).unwrap());
    let p = policy().with_budget(Some(budget.clone()));
    let e = Error::new(ErrorKind::Server, "x");
    assert!(matches!(p.decide(&Attempt::new(&e, 1)), Decision::Retry(_)));
    assert!(matches!(p.decide(&Attempt::new(&e, 1)), Decision::Retry(_)));
    assert_eq!(
        p.decide(&Attempt::new(&e, 1)),
        Decision::Stop(StopReason::Budget)
    );
    p.on_success();
    p.on_success();
    assert!(matches!(p.decide(&Attempt::new(&e, 1)), Decision::Retry(_)));
    assert!(RetryBudget::new(0.0, 1.0).is_err());
}

/// A budget of any size it accepts ("unlimited", "always refill") stays full and usable: the
/// refund and the give-back saturate. Before, they added past `i64::MAX`: a panic in debug
/// builds, a budget wrapped negative (retries off) in release.
#[test]
fn a_huge_budget_or_refund_saturates_instead_of_overflowing() {
    let always_refill = RetryBudget::new(10.0, f64::MAX).unwrap();
    assert!(always_refill.try_withdraw());
    always_refill.deposit();
    assert_eq!(always_refill.available(), 10.0);
    let unlimited = RetryBudget::new(1e18, 0.1).unwrap();
    let full = unlimited.available();
    assert!(unlimited.try_withdraw());
    unlimited.deposit();
    unlimited.give_back();
    assert_eq!(unlimited.available(), full);
    assert!(unlimited.try_withdraw());
}
