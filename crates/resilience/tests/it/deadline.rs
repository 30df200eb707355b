//! Item 5: the caller's own deadline never opens the breaker; the endpoint's own first-byte
//! timeout is a breaker failure. Time is tokio's paused clock: the stalls never end by
//! themselves, the timers fire when the runtime is idle.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use infermux_core::{
    ChatRequest, EndpointConfig, ErrorKind, Message, Provider, Request, RequestContext, Timeouts,
};
use infermux_openai_compat::OpenAiCompat;
use infermux_resilience::breaker::{BreakerConfig, BreakerState, SlidingWindow};
use infermux_resilience::retry::StandardRetry;
use infermux_resilience::{ResilienceConfig, Resilient};
use infermux_testkit::{Fault, FaultPlan, Simulator};

fn stack(sim: &Simulator, first_byte: Duration) -> Resilient {
    let cfg = EndpointConfig::new("sim", format!("{}/v1", sim.url()))
        .unwrap()
        .with_timeouts(Timeouts::standard().with_first_byte(first_byte));
    let provider: Arc<dyn Provider> = Arc::new(OpenAiCompat::new(cfg).unwrap());
    // one failure in a window of one opens the breaker
    let breaker = BreakerConfig::standard()
        .with_window(SlidingWindow::Count(1))
        .with_minimum_calls(1)
        .with_failure_rate_threshold(100.0)
        .with_open_wait(Duration::from_secs(3600));
    Resilient::new(
        provider,
        ResilienceConfig::standard()
            .with_retry(Arc::new(StandardRetry::disabled()))
            .with_breaker(Some(breaker)),
    )
    .unwrap()
}

fn chat() -> Request {
    Request::Chat(ChatRequest::new("sim-echo-1", vec![Message::user("a b c")]))
}

#[tokio::test(start_paused = true)]
async fn a_callers_deadline_never_opens_the_breaker_call_stream_and_mid_stream() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let stack = stack(&sim, Duration::from_secs(60));
    let ctx = || RequestContext::new().with_timeout(Duration::from_secs(2));

    // a non-streamed call whose answer never comes: the deadline ends it
    sim.push_fault(Fault::StallBeforeHeaders);
    let e = stack.call(&chat(), &ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(stack.breaker().unwrap().state(), BreakerState::Closed);

    // a streamed call whose headers never come
    sim.push_fault(Fault::StallBeforeHeaders);
    let e = stack.stream(&chat(), &ctx()).await.err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(stack.breaker().unwrap().state(), BreakerState::Closed);

    // a stream that stalls after its first content: the deadline ends it mid-stream
    sim.push_fault(Fault::StallMidStream);
    let mut s = stack.stream(&chat(), &ctx()).await.unwrap();
    let e = loop {
        match s.next().await {
            Some(Ok(_)) => {}
            Some(Err(e)) => break e,
            None => panic!("ended without the deadline's error"),
        }
    };
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    drop(s);
    assert_eq!(stack.breaker().unwrap().state(), BreakerState::Closed);
    sim.release_stalls();

    let c = stack.counters().snapshot();
    assert_eq!(c.failures(ErrorKind::Timeout), 3);
    assert_eq!(c.breaker_trips, 0);
}

#[tokio::test(start_paused = true)]
async fn an_endpoints_own_first_byte_timeout_is_a_breaker_failure() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let stack = stack(&sim, Duration::from_secs(1));
    sim.push_fault(Fault::StallBeforeHeaders);
    let ctx = RequestContext::new().with_timeout(Duration::from_secs(60));
    let e = stack.call(&chat(), &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(stack.breaker().unwrap().state(), BreakerState::Open);
    sim.release_stalls();
    assert_eq!(stack.counters().snapshot().breaker_trips, 1);
}

/// A call with no time at all — a zero timeout, or a deadline already past when it begins —
/// sends nothing: a `Timeout` that never reached the server, no attempt. Before, a free
/// permit was taken at once and the provider polled: the request went out (and an answer
/// ready at once was even returned).
#[tokio::test]
async fn a_call_with_no_time_left_sends_nothing() {
    let stub = crate::stub::Stub::new(|_| async { crate::stub::ok() });
    let stack = Resilient::new(
        stub.clone(),
        ResilienceConfig::standard().with_timeout(Some(Duration::ZERO)),
    )
    .unwrap();
    let e = stack
        .call(&chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(e.reached_server(), Some(false), "{e}");
    let past = RequestContext::new().with_deadline(std::time::Instant::now());
    let open = Resilient::new(stub.clone(), ResilienceConfig::standard()).unwrap();
    let e = open.call(&chat(), &past).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(stub.calls(), 0, "nothing was sent");
    assert_eq!(open.counters().snapshot().requests, 0);
    // the same stack with time left answers
    assert!(open.call(&chat(), &RequestContext::new()).await.is_ok());
    assert_eq!(stub.calls(), 1);
}
