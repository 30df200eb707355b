//! What a call leaves behind when its caller gives up, and pauses and waits at the edges:
//! a retry abandoned during its pause gives its budget token back, a pause too long for an
//! instant is no panic, and a call that timed out in the admission queue never reached the
//! server.

use std::sync::Arc;
use std::time::Duration;

use infermux_core::{Error, ErrorKind, Provider, RequestContext};
use infermux_resilience::queue::QueueConfig;
use infermux_resilience::retry::{Backoff, DelayClass, RetryBudget};
use infermux_resilience::{AttemptExecutor, CallDeadline, ResilienceConfig, Resilient};

use crate::stub::{Stub, chat, ok, quick_retry};

#[tokio::test(start_paused = true)]
async fn a_retry_abandoned_during_its_pause_gives_its_budget_token_back() {
    let budget = Arc::new(RetryBudget::new(1.0, 0.0).unwrap());
    let stub = Stub::new(|_| async { Err(Error::new(ErrorKind::Server, "503")) });
    let stack = Resilient::new(
        stub.clone(),
        ResilienceConfig::standard()
            .with_retry(Arc::new(
                quick_retry(3, 1)
                    .with_bases(
                        Duration::from_secs(10),
                        Duration::from_secs(10),
                        Duration::from_secs(10),
                    )
                    .with_backoff(Arc::new(Fixed(Duration::from_secs(10))))
                    .with_budget(Some(budget.clone())),
            ))
            .with_breaker(None),
    )
    .unwrap();
    let call = tokio::time::timeout(
        Duration::from_secs(5),
        stack.call(&chat(), &RequestContext::new()),
    )
    .await;
    assert!(call.is_err(), "the caller gave up during the 10 s pause");
    assert_eq!(stub.calls(), 1, "the retry never ran");
    assert_eq!(budget.available(), 1.0, "so its token is back");
    // and it is not counted as a retry
    assert_eq!(stack.counters().snapshot().retries, 0);
    // a retry that ran keeps its token spent
    let e = stack
        .call(&chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    assert_eq!(budget.available(), 0.0);
}

/// A backoff that always waits the same.
#[derive(Debug)]
struct Fixed(Duration);

impl Backoff for Fixed {
    fn delay(
        &self,
        _attempt: u32,
        _class: DelayClass,
        _base: Duration,
        _cap: Duration,
    ) -> Duration {
        self.0
    }
}

#[tokio::test(start_paused = true)]
async fn a_pause_too_long_for_an_instant_is_no_panic() {
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = calls.clone();
    let stub = Stub::new(move |_| {
        let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            if n == 0 {
                Err(Error::new(ErrorKind::Server, "503"))
            } else {
                ok()
            }
        }
    });
    let stack = Resilient::new(
        stub.clone(),
        ResilienceConfig::standard()
            .with_retry(Arc::new(
                quick_retry(2, 1)
                    .with_max_delay(Duration::MAX)
                    .with_backoff(Arc::new(Fixed(Duration::MAX))),
            ))
            .with_breaker(None)
            .with_timeout(None),
    )
    .unwrap();
    // the paused clock jumps the (thirty-year) pause; the retry then answers
    stack.call(&chat(), &RequestContext::new()).await.unwrap();
    assert_eq!(stub.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_call_timed_out_in_the_admission_queue_never_reached_the_server() {
    let exec = AttemptExecutor::new(
        Stub::new(|_| async { ok() }),
        QueueConfig::default().with_permits(1),
        None,
    )
    .unwrap();
    let held = exec.try_grant(false).unwrap();
    let deadline = CallDeadline::after(Some(Duration::from_millis(50)));
    let e = exec
        .grant(&RequestContext::new(), &deadline)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(e.reached_server(), Some(false));
    drop(held);
}
