//! Item 8: counters measure what their help says — an attempt starts after admission (queue
//! full and circuit open are `rejected{reason}`, not attempts, and have no latency), the
//! Prometheus layout is fixed, the breaker state is a labelled gauge, and a non-streamed call's
//! slowness is judged by its time to first byte.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use infermux_core::{
    EndpointCounters, EndpointId, ErrorKind, ManualClock, Provider, RejectReason, RequestContext,
};
use infermux_resilience::breaker::{BreakerConfig, BreakerState, SlidingWindow};
use infermux_resilience::queue::QueueConfig;
use infermux_resilience::retry::StandardRetry;
use infermux_resilience::{ResilienceConfig, Resilient, render_prometheus};
use tokio::sync::Notify;

use crate::stub::{Stub, chat, ok};

fn no_retry() -> ResilienceConfig {
    ResilienceConfig::standard().with_retry(Arc::new(StandardRetry::disabled()))
}

#[tokio::test]
async fn rejections_are_counted_as_rejected_not_as_attempts() {
    // queue full: one permit, no waiting room, the permit held by a call that waits
    let release = Arc::new(Notify::new());
    let entered = Arc::new(Notify::new());
    let provider = Stub::new({
        let (release, entered) = (release.clone(), entered.clone());
        move |_| {
            let (release, entered) = (release.clone(), entered.clone());
            async move {
                entered.notify_one();
                release.notified().await;
                ok()
            }
        }
    });
    let stack = Arc::new(
        Resilient::new(
            provider,
            no_retry().with_queue(QueueConfig::standard().with_permits(1).with_max_queued(0)),
        )
        .unwrap(),
    );
    let holder = tokio::spawn({
        let stack = stack.clone();
        async move { stack.call(&chat(), &RequestContext::new()).await }
    });
    entered.notified().await;
    let e = stack
        .call(&chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueFull);
    assert_eq!(e.attempts(), 0, "no attempt was made");
    release.notify_one();
    holder.await.unwrap().unwrap();
    let c = stack.counters().snapshot();
    assert_eq!(c.requests, 1, "the refused call is not an attempt");
    assert_eq!(c.rejected(RejectReason::QueueFull), 1);
    assert_eq!(c.failures(ErrorKind::QueueFull), 0);
    assert_eq!(c.latency.count, 1, "a rejection has no latency");

    // circuit open
    let failing =
        Stub::new(|_| async { Err(infermux_core::Error::new(ErrorKind::Server, "boom")) });
    let stack = Resilient::new(
        failing.clone(),
        no_retry().with_breaker(Some(
            BreakerConfig::standard()
                .with_window(SlidingWindow::Count(2))
                .with_minimum_calls(2)
                .with_open_wait(Duration::from_secs(600)),
        )),
    )
    .unwrap();
    for _ in 0..5 {
        let _ = stack.call(&chat(), &RequestContext::new()).await;
    }
    assert_eq!(failing.calls(), 2);
    let c = stack.counters().snapshot();
    assert_eq!(c.requests, 2);
    assert_eq!(c.failures(ErrorKind::Server), 2);
    assert_eq!(c.failures(ErrorKind::CircuitOpen), 0);
    assert_eq!(c.rejected(RejectReason::CircuitOpen), 3);
    assert_eq!(c.latency.count, 2);
    assert_eq!(c.successes + c.failures_total(), c.requests);
}

/// The identity of every sample line: metric name and labels, without the value.
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit_once(' ').map_or(l, |(id, _)| id).to_owned())
        .collect()
}

#[tokio::test]
async fn two_scrapes_with_different_traffic_have_identical_series() {
    let quiet = EndpointCounters::new();
    let busy = EndpointCounters::new();
    busy.record_request();
    busy.record_failure(ErrorKind::RateLimited, Duration::from_millis(7));
    busy.record_request();
    busy.record_success(Duration::from_secs(3), None);
    busy.record_rejected(RejectReason::CircuitOpen);
    busy.set_breaker_state(BreakerState::Open.code());
    let id = EndpointId::new("e");
    let a = render_prometheus(&[(id.clone(), quiet.snapshot())]);
    let b = render_prometheus(&[(id, busy.snapshot())]);
    assert_ne!(a, b, "the values differ");
    assert_eq!(series(&a), series(&b), "the series do not");
    let types = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(types(&a), types(&b));
}

#[tokio::test]
async fn the_breaker_state_is_a_labelled_gauge() {
    let c = EndpointCounters::new();
    c.set_breaker_state(BreakerState::HalfOpen.code());
    let text = render_prometheus(&[(EndpointId::new("e"), c.snapshot())]);
    for (state, v) in [("closed", 0), ("open", 0), ("half_open", 1)] {
        let line = format!("infermux_breaker_state{{endpoint=\"e\",state=\"{state}\"}} {v}");
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    assert!(
        !text.contains("infermux_breaker_state{endpoint=\"e\"} "),
        "{text}"
    );
}

fn slow_breaker() -> BreakerConfig {
    // every slow call opens it
    BreakerConfig::standard()
        .with_window(SlidingWindow::Count(1))
        .with_minimum_calls(1)
        .with_slow_calls(100.0, Duration::from_millis(250))
        .with_open_wait(Duration::from_secs(600))
}

/// The breaker's state after one call that takes a second on a manual clock (no waiting),
/// its first byte arriving at its start (`first_byte_at_once`) or at its end.
async fn breaker_after_a_one_second_call(first_byte_at_once: bool) -> BreakerState {
    let clock = ManualClock::new();
    let provider = Stub::new({
        let clock = clock.clone();
        move |ctx| {
            let clock = clock.clone();
            async move {
                if first_byte_at_once {
                    ctx.mark_first_byte();
                }
                clock.advance(Duration::from_secs(1));
                if !first_byte_at_once {
                    ctx.mark_first_byte();
                }
                ok()
            }
        }
    });
    let stack = Resilient::with_clock(
        provider,
        no_retry().with_breaker(Some(slow_breaker())),
        Arc::new(clock),
    )
    .unwrap();
    stack.call(&chat(), &RequestContext::new()).await.unwrap();
    stack.breaker().unwrap().state()
}

#[tokio::test]
async fn a_non_streamed_call_is_slow_by_its_time_to_first_byte_not_its_total_time() {
    // the headers arrive at once, then the body takes a second
    assert_eq!(
        breaker_after_a_one_second_call(true).await,
        BreakerState::Closed,
        "a fast first byte is not slow, however long the body"
    );
    // the check can fail: a late first byte is slow
    assert_eq!(
        breaker_after_a_one_second_call(false).await,
        BreakerState::Open
    );
}
