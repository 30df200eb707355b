//! The middleware as tower layers around a plain tower service (feature `tower`).

#![cfg(feature = "tower")]

use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use infermux_core::{Error, ErrorKind, ManualClock};
use infermux_resilience::breaker::{
    Breaker, BreakerConfig, BreakerState, CircuitBreaker, SlidingWindow,
};
use infermux_resilience::queue::{Admission, QueueConfig};
use infermux_resilience::retry::{FullJitter, StandardRetry};
use infermux_resilience::tower::{AdmissionLayer, BreakerLayer, RetryLayer};
use tower_layer::Layer;
use tower_service::Service;

/// Fails its first `fail_first` calls with a 503-like error, then echoes.
#[derive(Clone)]
struct Flaky {
    calls: Arc<AtomicU32>,
    fail_first: u32,
}

impl Service<String> for Flaky {
    type Response = String;
    type Error = Error;
    type Future = Ready<Result<String, Error>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: String) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        ready(if n < self.fail_first {
            Err(Error::new(ErrorKind::Server, "unavailable").with_status(503))
        } else {
            Ok(format!("echo {req}"))
        })
    }
}

async fn call<S: Service<String, Response = String, Error = Error>>(
    s: &mut S,
    req: &str,
) -> Result<String, Error> {
    std::future::poll_fn(|cx| s.poll_ready(cx)).await?;
    s.call(req.to_owned()).await
}

#[tokio::test]
async fn layers_compose_retry_outside_admission_and_breaker() {
    let clock = ManualClock::new();
    let breaker: Arc<dyn Breaker> = Arc::new(
        CircuitBreaker::new(
            BreakerConfig::standard()
                .with_window(SlidingWindow::Count(10))
                .with_minimum_calls(6)
                .with_open_wait(Duration::from_secs(60))
                .validate()
                .unwrap(),
            Arc::new(clock.clone()),
        )
        .unwrap(),
    );
    let admission = Admission::new(QueueConfig::standard().with_permits(1)).unwrap();
    let retry = StandardRetry::standard()
        .with_max_attempts(3)
        .with_bases(
            Duration::from_millis(1),
            Duration::from_millis(1),
            Duration::from_millis(1),
        )
        .with_budget(None)
        .with_backoff(Arc::new(FullJitter::seeded(3)));
    let calls = Arc::new(AtomicU32::new(0));
    let stack = |fail_first| {
        RetryLayer::new(Arc::new(retry.clone())).layer(
            AdmissionLayer::new(admission.clone()).layer(BreakerLayer::new(breaker.clone()).layer(
                Flaky {
                    calls: calls.clone(),
                    fail_first,
                },
            )),
        )
    };
    let mut svc = stack(2);
    assert_eq!(call(&mut svc, "hi").await.unwrap(), "echo hi");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "two failures retried");
    assert_eq!(admission.available(), 1, "the permit came back");
    // failures beyond the attempt cap surface, and the breaker counts each attempt
    calls.store(0, Ordering::SeqCst);
    let mut failing = stack(u32::MAX);
    let e = call(&mut failing, "x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        breaker.state(),
        BreakerState::Open,
        "5 failures in the last 6 calls"
    );
    let e = call(&mut failing, "x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CircuitOpen);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "an open breaker calls nothing"
    );
    assert_eq!(admission.available(), 1);
}

/// A retry abandoned during its pause (the caller's future dropped, e.g. by a timeout layer
/// outside) gives its budget token back, as `CallPolicy` does; a retry that ran keeps it spent.
/// Before, the tower layer never gave it back, and abandoned pauses drained the budget.
#[tokio::test(start_paused = true)]
async fn a_retry_abandoned_during_its_pause_gives_its_budget_token_back() {
    use infermux_resilience::retry::{Backoff, DelayClass, RetryBudget};
    #[derive(Debug)]
    struct Fixed(Duration);
    impl Backoff for Fixed {
        fn delay(&self, _: u32, _: DelayClass, _: Duration, _: Duration) -> Duration {
            self.0
        }
    }
    let budget = Arc::new(RetryBudget::new(1.0, 0.0).unwrap());
    let retry = StandardRetry::standard()
        .with_max_attempts(2)
        .with_backoff(Arc::new(Fixed(Duration::from_secs(10))))
        .with_budget(Some(budget.clone()));
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = RetryLayer::new(Arc::new(retry)).layer(Flaky {
        calls: calls.clone(),
        fail_first: u32::MAX,
    });
    let gave_up = tokio::time::timeout(Duration::from_secs(5), call(&mut svc, "x")).await;
    assert!(gave_up.is_err(), "the caller gave up during the 10 s pause");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the retry never ran");
    assert_eq!(budget.available(), 1.0, "so its token is back");
    let e = call(&mut svc, "x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        budget.available(),
        0.0,
        "a retry that ran keeps its token spent"
    );
}
