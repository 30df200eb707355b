//! Criterion benches of the resilience hot paths: breaker admit + record, queue enqueue +
//! dequeue (a hand-off to a waiter), and a retry-policy decision.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::task::noop_waker;
use infermux_core::{Error, ErrorKind, Priority, SystemClock};
use infermux_resilience::breaker::{
    Breaker, BreakerConfig, CircuitBreaker, Outcome, SlidingWindow,
};
use infermux_resilience::queue::{Admission, Permit, QueueConfig};
use infermux_resilience::retry::{Attempt, RetryPolicy, StandardRetry};

fn breaker(c: &mut Criterion) {
    let count = CircuitBreaker::new(
        BreakerConfig::standard()
            .with_window(SlidingWindow::Count(100))
            .validate()
            .unwrap(),
        Arc::new(SystemClock),
    )
    .unwrap();
    c.bench_function("breaker_admit_record_count_window", |b| {
        b.iter(|| {
            let t = count.try_acquire().unwrap();
            count.on_outcome(black_box(t), Outcome::Success, Duration::from_millis(3));
        })
    });
    let time = CircuitBreaker::new(
        BreakerConfig::standard()
            .with_window(SlidingWindow::Time {
                window: Duration::from_secs(60),
                buckets: 60,
            })
            .validate()
            .unwrap(),
        Arc::new(SystemClock),
    )
    .unwrap();
    c.bench_function("breaker_admit_record_time_window", |b| {
        b.iter(|| {
            let t = time.try_acquire().unwrap();
            time.on_outcome(black_box(t), Outcome::Success, Duration::from_millis(3));
        })
    });
}

type Acquire<'a> = Pin<Box<dyn Future<Output = infermux_core::Result<Permit>> + 'a>>;

fn queue(c: &mut Criterion) {
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let q = Admission::new(
        QueueConfig::standard()
            .with_permits(1)
            .with_max_queued(1024),
    )
    .unwrap();
    let free = q.clone();
    c.bench_function("queue_acquire_release_uncontended", |b| {
        b.iter(|| {
            let mut f: Acquire<'_> = Box::pin(free.acquire(Priority::Normal));
            match f.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(p)) => drop(p),
                _ => unreachable!("a free permit is granted at once"),
            }
        })
    });
    // one permit, always held: each iteration enqueues a waiter, then releases the held
    // permit, which hands it to the waiter (dequeue), which becomes the held one.
    let mut held: Option<Permit> =
        match Box::pin(q.acquire(Priority::Normal)).as_mut().poll(&mut cx) {
            Poll::Ready(Ok(p)) => Some(p),
            _ => unreachable!("the first permit is free"),
        };
    c.bench_function("queue_enqueue_dequeue", |b| {
        b.iter(|| {
            let mut f: Acquire<'_> = Box::pin(q.acquire(Priority::High));
            assert!(f.as_mut().poll(&mut cx).is_pending(), "enqueued");
            drop(held.take()); // the release hands the permit to the waiter
            held = match f.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(p)) => Some(p),
                _ => unreachable!("the released permit goes to the waiter"),
            };
        })
    });
}

fn retry(c: &mut Criterion) {
    let policy = StandardRetry::standard();
    let err = Error::new(ErrorKind::Server, "boom");
    c.bench_function("retry_decision", |b| {
        b.iter(|| {
            let d = policy.decide(black_box(&Attempt::new(&err, 1)));
            policy.on_success();
            d
        })
    });
}

criterion_group!(benches, breaker, queue, retry);
criterion_main!(benches);
