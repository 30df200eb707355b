//! Item 7: errors say what happened — how many attempts were made and why retrying stopped; a
//! throttled call that will not be retried fails at once as `RateLimited` carrying the wait;
//! `Unsupported` is never retried and says nothing about the endpoint's health.

use std::sync::Arc;
use std::time::Duration;

use infermux_core::{EndpointConfig, Error, ErrorKind, Provider, RequestContext, StopReason};
use infermux_openai_compat::OpenAiCompat;
use infermux_resilience::breaker::{BreakerConfig, BreakerState, SlidingWindow};
use infermux_resilience::retry::StandardRetry;
use infermux_resilience::{ResilienceConfig, Resilient};
use infermux_testkit::{Fault, FaultPlan, Simulator};

use crate::stub::{Stub, chat, quick_retry};

fn retry(attempts: u32) -> Arc<StandardRetry> {
    Arc::new(quick_retry(attempts, 9).with_max_delay(Duration::from_secs(30)))
}

/// The simulator's OpenAI-compatible API as a provider.
fn over(sim: &Simulator) -> Arc<dyn Provider> {
    let cfg = EndpointConfig::new("sim", format!("{}/v1", sim.url())).unwrap();
    Arc::new(OpenAiCompat::new(cfg).unwrap())
}

fn one_failure_opens() -> BreakerConfig {
    BreakerConfig::standard()
        .with_window(SlidingWindow::Count(1))
        .with_minimum_calls(1)
        .with_failure_rate_threshold(100.0)
}

#[tokio::test]
async fn exhausted_retries_tell_the_attempts_made_and_why_they_stopped() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let provider = over(&sim);
    let stack = Resilient::new(
        provider,
        ResilienceConfig::standard()
            .with_retry(retry(3))
            .with_breaker(None),
    )
    .unwrap();
    for _ in 0..3 {
        sim.push_fault(Fault::Unavailable);
    }
    let e = stack
        .call(&chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    assert_eq!(e.attempts(), 3);
    assert_eq!(e.stop_reason(), Some(StopReason::Exhausted));
    assert!(
        e.to_string()
            .contains("after 3 attempts (retries exhausted)"),
        "{e}"
    );
    // one attempt, not retryable: said too, without "after 1 attempts"
    let bad = Stub::new(|_| async { Err(Error::new(ErrorKind::InvalidRequest, "no")) });
    let stack = Resilient::new(bad, ResilienceConfig::standard()).unwrap();
    let e = stack
        .call(&chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(
        (e.attempts(), e.stop_reason()),
        (1, Some(StopReason::NotRetryable))
    );
    assert!(!e.to_string().contains("attempts"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_of_two_days_fails_at_once_as_rate_limited_with_that_retry_after() {
    let two_days = Duration::from_secs(2 * 24 * 3600);
    // a real 429 with `retry-after: 172800` through the real transport, which keeps long waits
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let provider = over(&sim);
    let stack =
        Resilient::new(provider, ResilienceConfig::standard().with_retry(retry(5))).unwrap();
    sim.push_fault(Fault::RateLimited(two_days));
    let t0 = tokio::time::Instant::now();
    let e = stack
        .call(&chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(
        tokio::time::Instant::now(),
        t0,
        "no wait at all, not even a 1 s retry"
    );
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(two_days));
    assert_eq!(e.stop_reason(), Some(StopReason::RetryAfterTooLong));
    assert_eq!(e.attempts(), 1);
    assert_eq!(sim.requests(), 1);
    assert_eq!(stack.counters().snapshot().retries, 0);
}

#[tokio::test(start_paused = true)]
async fn a_429_whose_wait_exceeds_the_deadline_fails_at_once_as_rate_limited() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let provider = over(&sim);
    let stack =
        Resilient::new(provider, ResilienceConfig::standard().with_retry(retry(5))).unwrap();
    sim.push_fault(Fault::RateLimited(Duration::from_secs(10)));
    let ctx = RequestContext::new().with_timeout(Duration::from_secs(3));
    let t0 = tokio::time::Instant::now();
    let e = stack.call(&chat(), &ctx).await.unwrap_err();
    assert!(
        tokio::time::Instant::now() - t0 < Duration::from_secs(1),
        "failed at once, did not wait for the deadline"
    );
    assert_eq!(e.kind(), ErrorKind::RateLimited, "{e}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(10)));
    assert_eq!(e.stop_reason(), Some(StopReason::RetryAfterTooLong));
    assert_eq!(e.attempts(), 1);
    assert_eq!(sim.requests(), 1);
}

#[tokio::test]
async fn unsupported_is_not_retried_and_ignored_by_the_breaker() {
    // a 501 whose server even says `x-should-retry: true`
    let provider = Stub::new(|_| async {
        Err(Error::new(ErrorKind::Unsupported, "not implemented")
            .with_status(501)
            .with_should_retry(true))
    });
    let stack = Resilient::new(
        provider.clone(),
        ResilienceConfig::standard()
            .with_retry(retry(3))
            .with_breaker(Some(one_failure_opens())),
    )
    .unwrap();
    for _ in 0..3 {
        let e = stack
            .call(&chat(), &RequestContext::new())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert_eq!(e.stop_reason(), Some(StopReason::NotRetryable));
    }
    assert_eq!(provider.calls(), 3, "one attempt per call");
    assert_eq!(stack.breaker().unwrap().state(), BreakerState::Closed);
    // the check can fail: a server error in the same setup opens the breaker
    let failing = Stub::new(|_| async { Err(Error::new(ErrorKind::Server, "boom")) });
    let stack = Resilient::new(
        failing,
        ResilienceConfig::standard()
            .with_retry(retry(1))
            .with_breaker(Some(one_failure_opens())),
    )
    .unwrap();
    let _ = stack.call(&chat(), &RequestContext::new()).await;
    assert_eq!(stack.breaker().unwrap().state(), BreakerState::Open);
}
