//! The admission queue: properties (no request lost or duplicated, priority order, bound),
//! ageing, and cancellation freeing places and permits.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::noop_waker;
use infermux_core::{EndpointCounters, ErrorKind, ManualClock, Priority};
use infermux_resilience::queue::{Admission, Permit, QueueConfig};
use proptest::prelude::*;

type Acquire = Pin<Box<dyn Future<Output = infermux_core::Result<Permit>> + Send>>;

fn poll(f: &mut Acquire) -> Poll<infermux_core::Result<Permit>> {
    let waker = noop_waker();
    f.as_mut().poll(&mut Context::from_waker(&waker))
}

fn prio(n: u8) -> Priority {
    match n % 3 {
        0 => Priority::Low,
        1 => Priority::Normal,
        _ => Priority::High,
    }
}

#[derive(Debug, Clone)]
enum Op {
    Submit(u8),
    ReleaseOne(usize),
    CancelOne(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(Op::Submit),
        3 => any::<usize>().prop_map(Op::ReleaseOne),
        1 => any::<usize>().prop_map(Op::CancelOne),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Every submitted request resolves exactly once (granted, rejected when full, or
    /// cancelled by its caller); grants follow priority then FIFO (no ageing here); the bound
    /// holds; nothing is held at the end.
    #[test]
    fn queue_loses_nothing_and_respects_priority_and_bound(
        permits in 1usize..4,
        max_queued in 1usize..6,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let clock = ManualClock::new();
        let q = Admission::with_clock(
            QueueConfig::standard().with_permits(permits).with_max_queued(max_queued).with_age_step(Duration::from_secs(3600)),
            Arc::new(clock.clone()),
            None,
        ).unwrap();
        // (id, priority level, future)
        let mut waiting: Vec<(usize, u8, Acquire)> = Vec::new();
        let mut held: Vec<(usize, Permit)> = Vec::new();
        let (mut submitted, mut granted, mut rejected, mut cancelled) = (0usize, 0usize, 0usize, 0usize);
        let mut grant_order: Vec<(u8, usize)> = Vec::new();
        for op in ops {
            match op {
                Op::Submit(p) => {
                    let id = submitted;
                    submitted += 1;
                    let q2 = q.clone();
                    let level = p % 3;
                    let mut f: Acquire = Box::pin(async move { q2.acquire(prio(level)).await });
                    match poll(&mut f) {
                        Poll::Ready(Ok(permit)) => { granted += 1; held.push((id, permit)); }
                        Poll::Ready(Err(e)) => {
                            prop_assert_eq!(e.kind(), ErrorKind::QueueFull);
                            prop_assert_eq!(q.queued(), max_queued);
                            rejected += 1;
                        }
                        Poll::Pending => waiting.push((id, level, f)),
                    }
                }
                Op::ReleaseOne(i) => {
                    if held.is_empty() { continue; }
                    drop(held.remove(i % held.len()));
                    // exactly the best waiter is granted
                    let best = waiting
                        .iter()
                        .enumerate()
                        .max_by(|a, b| a.1.1.cmp(&b.1.1).then(b.1.0.cmp(&a.1.0)))
                        .map(|(pos, _)| pos);
                    let mut newly = Vec::new();
                    let mut still = Vec::new();
                    for (pos, (id, level, mut f)) in waiting.drain(..).enumerate() {
                        match poll(&mut f) {
                            Poll::Ready(Ok(p)) => { newly.push(pos); granted += 1; grant_order.push((level, id)); held.push((id, p)); }
                            Poll::Ready(Err(e)) => prop_assert!(false, "unexpected {e:?}"),
                            Poll::Pending => still.push((id, level, f)),
                        }
                    }
                    waiting = still;
                    prop_assert!(newly.len() <= 1);
                    if best.is_some() { prop_assert_eq!(newly.first().copied(), best); }
                }
                Op::CancelOne(i) => {
                    if waiting.is_empty() { continue; }
                    drop(waiting.remove(i % waiting.len()));
                    cancelled += 1;
                }
            }
            prop_assert!(q.queued() <= max_queued);
            prop_assert_eq!(q.queued(), waiting.len());
            prop_assert_eq!(q.available() + held.len(), permits);
        }
        prop_assert_eq!(submitted, granted + rejected + cancelled + waiting.len());
        drop(held);
        // releasing everything serves everyone still waiting, one permit at a time
        while !waiting.is_empty() {
            let mut still = Vec::new();
            let mut got = Vec::new();
            for (id, level, mut f) in waiting.drain(..) {
                match poll(&mut f) {
                    Poll::Ready(Ok(p)) => got.push(p),
                    Poll::Ready(Err(e)) => prop_assert!(false, "unexpected {e:?}"),
                    Poll::Pending => still.push((id, level, f)),
                }
            }
            prop_assert!(!got.is_empty(), "waiters left but no permit granted");
            waiting = still;
        }
        prop_assert_eq!(q.available(), permits);
        prop_assert_eq!(q.queued(), 0);
    }
}

#[tokio::test]
async fn ageing_lets_low_priority_overtake_and_counters_track_waits() {
    let clock = ManualClock::new();
    let counters = Arc::new(EndpointCounters::new());
    let q = Admission::with_clock(
        QueueConfig::standard()
            .with_permits(1)
            .with_age_step(Duration::from_secs(1)),
        Arc::new(clock.clone()),
        Some(counters.clone()),
    )
    .unwrap();
    let first = q.acquire(Priority::Normal).await.unwrap();
    let low = tokio::spawn({
        let q = q.clone();
        async move { q.acquire(Priority::Low).await.map(|p| ("low", p)) }
    });
    q.wait_queued(1).await;
    clock.advance(Duration::from_secs(5)); // the LOW waiter has aged to HIGH
    let high = tokio::spawn({
        let q = q.clone();
        async move { q.acquire(Priority::High).await.map(|p| ("high", p)) }
    });
    q.wait_queued(2).await;
    assert_eq!(counters.snapshot().queued, 2);
    drop(first);
    let (name, permit) = low.await.unwrap().unwrap();
    assert_eq!(name, "low", "the older, aged request goes first");
    drop(permit);
    let (name, _p) = high.await.unwrap().unwrap();
    assert_eq!(name, "high");
    let s = counters.snapshot();
    assert_eq!(s.queued, 0);
    assert!(s.queue_wait >= Duration::from_secs(5));
}

#[tokio::test]
async fn dropping_waiters_and_permits_leaves_nothing_held() {
    let q = Admission::new(
        QueueConfig::standard()
            .with_permits(2)
            .with_max_queued(1000),
    )
    .unwrap();
    let a = q.acquire(Priority::Normal).await.unwrap();
    let b = q.acquire(Priority::Normal).await.unwrap();
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let q = q.clone();
            tokio::spawn(async move { q.acquire(prio(i as u8)).await.map(drop) })
        })
        .collect();
    q.wait_queued(500).await;
    for (i, t) in tasks.iter().enumerate() {
        if i % 2 == 0 {
            t.abort();
        }
    }
    drop(a);
    drop(b);
    let mut ok = 0;
    for t in tasks {
        if let Ok(r) = t.await {
            r.unwrap();
            ok += 1;
        }
    }
    assert_eq!(ok, 250);
    assert_eq!(q.queued(), 0);
    assert_eq!(q.available(), 2);
}
