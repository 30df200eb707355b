//! The lock-free fast paths under real threads: the queue's permits (atomics while nobody
//! waits, the lock and hand-off once someone does), the closed breaker's atomic ring, the
//! sharded counters and the retry budget's refund — each must stay exact when several threads
//! use it at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use infermux_core::{EndpointCounters, ErrorKind, ManualClock, Priority, Usage};
use infermux_resilience::breaker::{
    Breaker, BreakerConfig, BreakerState, CircuitBreaker, Outcome, SlidingWindow,
};
use infermux_resilience::queue::{Admission, QueueConfig};
use infermux_resilience::retry::RetryBudget;

/// Runs `body(thread index)` on `n` threads released together.
fn on_threads(n: usize, body: impl Fn(usize) + Sync) {
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        for i in 0..n {
            let (barrier, body) = (&barrier, &body);
            s.spawn(move || {
                barrier.wait();
                body(i);
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_fast_and_slow_paths_never_exceed_the_permits_and_serve_everyone() {
    const PERMITS: usize = 2;
    let q = Admission::new(
        QueueConfig::standard()
            .with_permits(PERMITS)
            .with_max_queued(1_000),
    )
    .unwrap();
    let in_use = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (q, in_use, most) = (q.clone(), in_use.clone(), most.clone());
            tokio::spawn(async move {
                for i in 0..500usize {
                    let prio = [Priority::Low, Priority::Normal, Priority::High][(t + i) % 3];
                    let permit = q.acquire(prio).await.unwrap();
                    let now = in_use.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    if i % 4 == 0 {
                        tokio::task::yield_now().await; // hold it a while: others queue
                    }
                    in_use.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        most.load(Ordering::SeqCst) <= PERMITS,
        "more permits out than exist"
    );
    assert_eq!(q.available(), PERMITS, "every permit came back");
    assert_eq!(q.queued(), 0);
}

#[test]
fn queue_without_waiting_room_refuses_at_once_when_all_permits_are_out() {
    let q = Admission::new(QueueConfig::standard().with_permits(1).with_max_queued(0)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let held = rt.block_on(q.acquire(Priority::High)).unwrap();
    let refused = rt.block_on(q.acquire(Priority::High)).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::QueueFull);
    drop(held);
    assert!(rt.block_on(q.acquire(Priority::Low)).is_ok());
    assert_eq!(q.available(), 1);
}

#[test]
fn a_count_window_filled_by_two_threads_trips_at_the_exact_failure_count() {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::new(
        BreakerConfig::standard()
            .with_window(SlidingWindow::Count(50))
            .with_minimum_calls(50)
            .with_failure_rate_threshold(50.0)
            .validate()
            .unwrap(),
        Arc::new(clock),
    )
    .unwrap();
    // two threads fill (and refill) the window with successes at once
    on_threads(2, |_| {
        for _ in 0..5_000 {
            let t = breaker.try_acquire().unwrap();
            breaker.on_outcome(t, Outcome::Success, Duration::from_millis(1));
        }
    });
    assert_eq!(breaker.state(), BreakerState::Closed);
    // the window holds exactly the last 50 calls: 24 failures are 48 %, the 25th is 50 %
    for n in 1..=25 {
        let t = breaker.try_acquire().unwrap();
        breaker.on_outcome(t, Outcome::Failure, Duration::from_millis(1));
        let expected = if n < 25 {
            BreakerState::Closed
        } else {
            BreakerState::Open
        };
        assert_eq!(breaker.state(), expected, "after {n} failures");
    }
}

#[test]
fn counters_recorded_by_many_threads_sum_exactly() {
    const THREADS: usize = 4;
    const EACH: u64 = 5_000;
    let c = EndpointCounters::new();
    let usage = Usage::new(2, 3);
    on_threads(THREADS, |t| {
        for i in 0..EACH {
            c.record_request();
            let guard = c.in_flight();
            if i % 5 == 0 {
                c.record_failure(ErrorKind::Server, Duration::from_micros(100 + i));
            } else {
                c.record_success(Duration::from_micros(1_000 * t as u64 + i), Some(&usage));
            }
            drop(guard);
        }
        // a gauge moved up on one thread and down on another still sums to zero
        c.adjust_in_flight(if t % 2 == 0 { 1 } else { -1 });
    });
    let s = c.snapshot();
    let all = THREADS as u64 * EACH;
    let failures = THREADS as u64 * EACH / 5;
    assert_eq!(s.requests, all);
    assert_eq!(s.successes, all - failures);
    assert_eq!(s.failures(ErrorKind::Server), failures);
    assert_eq!(s.in_flight, 0);
    assert_eq!(s.tokens_in, 2 * (all - failures));
    assert_eq!(s.tokens_out, 3 * (all - failures));
    assert_eq!(s.latency.count, all);
    assert_eq!(s.latency.buckets.iter().sum::<u64>(), all);
    assert_eq!(
        s.latency.max,
        Duration::from_micros(1_000 * (THREADS as u64 - 1) + EACH - 1)
    );
}

#[test]
fn retry_budget_refunds_from_many_threads_never_overfill_it() {
    let budget = RetryBudget::new(10.0, 0.3).unwrap();
    for _ in 0..10 {
        assert!(budget.try_withdraw());
    }
    assert!(!budget.try_withdraw(), "empty");
    // exact when alone: 4 refunds of 0.3 are 1.2 retries
    for _ in 0..4 {
        budget.deposit();
    }
    assert!(
        (budget.available() - 1.2).abs() < 1e-9,
        "{}",
        budget.available()
    );
    on_threads(4, |_| {
        for _ in 0..1_000 {
            budget.deposit();
            assert!(budget.available() <= 10.0 + 1e-9);
        }
    });
    assert!(
        (budget.available() - 10.0).abs() < 1e-9,
        "{}",
        budget.available()
    );
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

#[tokio::test]
async fn execute_is_the_provider_call_as_a_send_future() {
    use infermux_core::{Provider, RequestContext};
    use infermux_resilience::{ResilienceConfig, Resilient};

    let provider = crate::stub::Stub::new(|_| async { crate::stub::ok() });
    let stack = Resilient::new(provider.clone(), ResilienceConfig::disabled()).unwrap();
    let req = crate::stub::chat();
    let ctx = RequestContext::new();
    // the facade awaits this future in its own, which callers spawn: it must be Send
    let direct = assert_send(stack.execute(&req, &ctx)).await.unwrap();
    let through_trait = stack.call(&req, &ctx).await.unwrap();
    assert_eq!(direct, through_trait);
    let s = stack.counters().snapshot();
    assert_eq!((s.requests, s.successes), (2, 2));
    assert_eq!(provider.calls(), 2);
    assert_eq!(
        stack.admission().available(),
        usize::MAX / 2,
        "permits back"
    );
}
