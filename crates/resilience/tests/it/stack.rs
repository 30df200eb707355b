//! The stack around a real provider (openai-compat) against the fault-injecting simulator:
//! retries, the breaker, the deadline, a 10 000-request soak and 1 000 cancellations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use infermux_core::{
    ChatRequest, EndpointConfig, ErrorKind, Limits, Message, Provider, Request, RequestContext,
    StreamAccumulator, Timeouts,
};
use infermux_openai_compat::OpenAiCompat;
use infermux_resilience::breaker::{BreakerConfig, BreakerState, SlidingWindow};
use infermux_resilience::queue::QueueConfig;
use infermux_resilience::retry::{RetryBudget, StandardRetry};
use infermux_resilience::{ResilienceConfig, Resilient, render_prometheus};
use infermux_testkit::{Fault, FaultPlan, Simulator, SplitMix64};

use crate::stub::quick_retry;

fn provider(sim: &Simulator) -> Arc<dyn Provider> {
    let cfg = EndpointConfig::new("sim", format!("{}/v1", sim.url()))
        .unwrap()
        .with_timeouts(Timeouts::standard().with_first_byte(Duration::from_secs(10)))
        .with_limits(Limits::standard());
    Arc::new(OpenAiCompat::new(cfg).unwrap())
}

fn fast_retry(attempts: u32) -> StandardRetry {
    quick_retry(attempts, 1).with_max_delay(Duration::from_secs(2))
}

fn chat(text: &str) -> Request {
    Request::Chat(ChatRequest::new("sim-echo-1", vec![Message::user(text)]))
}

#[tokio::test]
async fn retries_honour_retry_after_and_go_around_faults() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let stack = Resilient::new(
        provider(&sim),
        ResilienceConfig::standard()
            .with_retry(Arc::new(fast_retry(4)))
            .with_breaker(None),
    )
    .unwrap();
    sim.push_fault(Fault::RateLimited(Duration::from_millis(300)));
    sim.push_fault(Fault::Reset);
    sim.push_fault(Fault::Overloaded);
    let t0 = Instant::now();
    let r = stack
        .call(&chat("hi"), &RequestContext::new())
        .await
        .unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "never sooner than Retry-After"
    );
    assert_eq!(r.usage().unwrap().output_tokens, 2);
    let c = stack.counters().snapshot();
    assert_eq!((c.requests, c.successes, c.retries), (4, 1, 3));
    assert_eq!(c.failures(ErrorKind::RateLimited), 1);
    assert_eq!(c.failures(ErrorKind::Connect), 1);
    assert_eq!(c.failures(ErrorKind::Overloaded), 1);

    // a Retry-After beyond the cap fails at once, carrying it
    sim.push_fault(Fault::RateLimited(Duration::from_secs(60)));
    let t0 = Instant::now();
    let e = stack
        .call(&chat("hi"), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(60)));
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn streams_retry_before_the_first_content_only() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let stack = Resilient::new(
        provider(&sim),
        ResilienceConfig::standard().with_retry(Arc::new(fast_retry(3))),
    )
    .unwrap();
    sim.push_fault(Fault::Unavailable);
    let s = stack
        .stream(&chat("one two"), &RequestContext::new())
        .await
        .unwrap();
    assert_eq!(
        StreamAccumulator::collect(s).await.unwrap().text(),
        "Echo: one two"
    );
    sim.push_fault(Fault::ErrorInStream);
    let s = stack
        .stream(&chat("x"), &RequestContext::new())
        .await
        .unwrap();
    let e = StreamAccumulator::collect(s).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    let c = stack.counters().snapshot();
    assert_eq!(c.requests, 3, "the mid-stream error was not retried");
    assert_eq!(c.retries, 1);
    assert_eq!(c.successes + c.failures_total(), c.requests);
    assert_eq!(c.in_flight, 0);
}

#[tokio::test]
async fn the_breaker_opens_and_fails_fast() {
    let sim = Simulator::start(FaultPlan::seeded(1).with(Fault::Unavailable, 1.0))
        .await
        .unwrap();
    let breaker = BreakerConfig::standard()
        .with_window(SlidingWindow::Count(10))
        .with_minimum_calls(5)
        .with_open_wait(Duration::from_secs(600));
    let stack = Resilient::new(
        provider(&sim),
        ResilienceConfig::standard()
            .with_retry(Arc::new(fast_retry(1)))
            .with_breaker(Some(breaker)),
    )
    .unwrap();
    for _ in 0..5 {
        assert_eq!(
            stack
                .call(&chat("x"), &RequestContext::new())
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::Server
        );
    }
    assert_eq!(stack.breaker().unwrap().state(), BreakerState::Open);
    let e = stack
        .call(&chat("x"), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CircuitOpen);
    assert!(e.retry_after().is_some());
    assert_eq!(sim.requests(), 5, "an open breaker sends nothing");
    let c = stack.counters().snapshot();
    assert_eq!(c.breaker_trips, 1);
    assert_eq!(c.breaker_state, 1);
    let text = render_prometheus(&[(stack.endpoint().clone(), c.clone())]);
    assert!(
        text.contains("infermux_breaker_trips_total{endpoint=\"sim\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("infermux_rejected_total{endpoint=\"sim\",reason=\"circuit_open\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("kind=\"circuit_open\"} 0"),
        "a rejection is no failure: {text}"
    );
    assert_eq!(c.requests, 5, "a rejection is no attempt");
}

#[tokio::test]
async fn the_call_deadline_covers_all_attempts_and_stalls() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let stack = Resilient::new(
        provider(&sim),
        ResilienceConfig::standard().with_retry(Arc::new(fast_retry(10))),
    )
    .unwrap();
    sim.push_fault(Fault::StallMidStream);
    let ctx = RequestContext::new().with_timeout(Duration::from_millis(300));
    let mut s = stack.stream(&chat("x y"), &ctx).await.unwrap();
    assert!(s.next().await.unwrap().is_ok());
    sim.wait_stalled(1).await;
    let e = loop {
        match s.next().await.unwrap() {
            Ok(_) => {} // the held Start and the first content
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind(), ErrorKind::Timeout);
    sim.release_stalls();
    let c = stack.counters().snapshot();
    assert_eq!(c.in_flight, 0);
    assert_eq!(
        stack.admission().available(),
        QueueConfig::standard().permits
    );
}

async fn release_stalls_forever(sim: Arc<Simulator>) {
    loop {
        sim.wait_stalled(1).await;
        sim.release_stalls();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_10k_requests_with_20_percent_faults_resolve_exactly_once() {
    let plan = FaultPlan::transient(2026, 0.18)
        .with(Fault::StallMidStream, 0.02)
        .with(Fault::RateLimited(Duration::from_millis(5)), 0.0);
    let sim = Arc::new(Simulator::start(plan).await.unwrap());
    let releaser = tokio::spawn(release_stalls_forever(sim.clone()));
    let stack = Arc::new(
        Resilient::new(
            provider(&sim),
            ResilienceConfig::standard()
                .with_queue(
                    QueueConfig::standard()
                        .with_permits(32)
                        .with_max_queued(20_000),
                )
                .with_retry(Arc::new(fast_retry(6).with_budget(Some(Arc::new(
                    RetryBudget::new(1_000.0, 0.2).unwrap(),
                )))))
                .with_breaker(Some(
                    BreakerConfig::standard()
                        .with_minimum_calls(50)
                        .with_failure_rate_threshold(90.0),
                )),
        )
        .unwrap(),
    );
    let n = 10_000usize;
    let started = Instant::now();
    let results: Vec<Result<bool, ErrorKind>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let stack = stack.clone();
            async move {
                let req = chat(&format!("request {i}"));
                if i % 4 == 0 {
                    match stack.stream(&req, &RequestContext::new()).await {
                        Ok(s) => StreamAccumulator::collect(s)
                            .await
                            .map(|_| true)
                            .map_err(|e| e.kind()),
                        Err(e) => Err(e.kind()),
                    }
                } else {
                    stack
                        .call(&req, &RequestContext::new())
                        .await
                        .map(|_| false)
                        .map_err(|e| e.kind())
                }
            }
        })
        .buffer_unordered(128)
        .collect()
        .await;
    releaser.abort();
    let elapsed = started.elapsed();
    assert_eq!(results.len(), n, "every request resolved exactly once");
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let c = stack.counters().snapshot();
    eprintln!(
        "soak: {n} requests in {:.1} s: {ok} ok, {} failed; attempts {}, successes {}, failures {:?}, retries {}, breaker trips {}, p50 {:?}, p99 {:?}; simulator faults {:?}",
        elapsed.as_secs_f64(),
        n - ok,
        c.requests,
        c.successes,
        c.failures_by_kind(),
        c.retries,
        c.breaker_trips,
        c.latency.quantile(0.5),
        c.latency.quantile(0.99),
        sim.faults()
    );
    assert_eq!(
        c.successes + c.failures_total(),
        c.requests,
        "counters add up"
    );
    assert_eq!(
        c.requests + c.rejected_total(),
        n as u64 + c.retries,
        "every try (an attempt or a rejection) is a call or a retry"
    );
    assert_eq!(c.successes as usize, ok, "one success per successful call");
    assert_eq!(c.in_flight, 0);
    assert_eq!(c.queued, 0);
    assert!(
        ok as f64 >= n as f64 * 0.97,
        "retries recover most faults: {ok}"
    );
    assert_eq!(stack.admission().available(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_cancellations_leave_nothing_held() {
    let plan = FaultPlan::transient(99, 0.2).with(Fault::StallMidStream, 0.1);
    let sim = Arc::new(Simulator::start(plan).await.unwrap());
    let clock = infermux_core::ManualClock::new();
    let stack = Arc::new(
        Resilient::with_clock(
            provider(&sim),
            ResilienceConfig::standard()
                .with_queue(
                    QueueConfig::standard()
                        .with_permits(8)
                        .with_max_queued(2_000),
                )
                .with_retry(Arc::new(fast_retry(3)))
                .with_breaker(Some(
                    BreakerConfig::standard()
                        .with_minimum_calls(5)
                        .with_open_wait(Duration::from_secs(60))
                        .with_half_open_probes(2),
                )),
            Arc::new(clock.clone()),
        )
        .unwrap(),
    );
    let mut rng = SplitMix64::new(5);
    let tasks: Vec<_> = (0..1_000)
        .map(|i| {
            let stack = stack.clone();
            let polls = rng.below(12);
            tokio::spawn(async move {
                let req = chat(&format!("c{i}"));
                let ctx = RequestContext::new();
                if i % 2 == 0 {
                    let fut = stack.call(&req, &ctx);
                    tokio::pin!(fut);
                    for _ in 0..polls {
                        tokio::select! {
                            biased;
                            _ = &mut fut => return,
                            _ = tokio::task::yield_now() => {}
                        }
                    }
                } else {
                    let fut = stack.stream(&req, &ctx);
                    tokio::pin!(fut);
                    for _ in 0..polls {
                        tokio::select! {
                            biased;
                            r = &mut fut => {
                                if let Ok(mut s) = r {
                                    let _ = s.next().await; // then dropped mid-stream
                                }
                                return;
                            }
                            _ = tokio::task::yield_now() => {}
                        }
                    }
                }
                // dropped here, at a random point
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    sim.release_stalls();
    let c = stack.counters().snapshot();
    assert_eq!(stack.admission().available(), 8, "no permit held");
    assert_eq!(stack.admission().queued(), 0, "no queue slot held");
    assert_eq!(c.in_flight, 0);
    assert_eq!(c.queued, 0);
    assert_eq!(c.successes + c.failures_total(), c.requests);
    assert!(c.failures(ErrorKind::Cancelled) > 0);
    // no probe held: once the open wait has passed, the breaker admits a call again
    clock.advance(Duration::from_secs(3600));
    let b = stack.breaker().unwrap();
    let t = b
        .try_acquire()
        .unwrap_or_else(|e| panic!("a probe is still held ({:?}): {e}", b.state()));
    b.on_outcome(
        t,
        infermux_resilience::breaker::Outcome::Ignored,
        Duration::ZERO,
    );
}
