//! Admission: refusing at once when nothing returns before the deadline, waiting when
//! something does, the queue bound, priorities and cancelled waiters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use infermux_core::{ChatRequest, Error, ErrorKind, Message, Priority, Request, RequestContext};
use infermux_multiplex::{PoolConfig, Strategy};
use tokio::sync::Notify;

use crate::stub::{Stub, chat, executor, keyed, ok, policy, pool};

fn throttled(after: Duration) -> Arc<Stub> {
    Stub::new("throttled", move |_req, _ctx| async move {
        Err(Error::new(ErrorKind::RateLimited, "slow down").with_retry_after(after))
    })
}

#[tokio::test(start_paused = true)]
async fn every_key_cooling_past_the_deadline_fails_at_once_with_the_earliest_return() {
    let stub = throttled(Duration::from_secs(60));
    let pool = pool(
        vec![executor(stub.clone(), 4, None)],
        vec![keyed(0, "a"), keyed(0, "b")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    let p = policy(5, Duration::from_secs(5));
    let start = tokio::time::Instant::now();
    let e = p
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(
        tokio::time::Instant::now(),
        start,
        "refused at once, no waiting"
    );
    assert_eq!(e.retry_after(), Some(Duration::from_secs(60)));
    assert!(
        e.message().contains("key `a`"),
        "names the earliest member: {}",
        e.message()
    );
    assert_eq!(stub.seen().len(), 2, "each key tried once");
    assert_eq!(pool.counters().unavailable, 1);
    assert_eq!(pool.counters().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn a_cooldown_ending_before_the_deadline_makes_the_call_wait_and_succeed() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let stub = Stub::new("once", move |_req, _ctx| {
        let first = c.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                Err(Error::new(ErrorKind::RateLimited, "slow down")
                    .with_retry_after(Duration::from_secs(2)))
            } else {
                ok()
            }
        }
    });
    let pool = pool(
        vec![executor(stub.clone(), 4, None)],
        vec![keyed(0, "a")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    let p = policy(3, Duration::from_secs(10));
    let start = tokio::time::Instant::now();
    let called = p
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap();
    assert_eq!(called.attempts, 2);
    let seen = stub.seen();
    assert_eq!(
        seen[1].at - start,
        Duration::from_secs(2),
        "the retry waited out the cooldown"
    );
    let c = pool.counters();
    assert_eq!((c.waits, c.unavailable, c.queued), (1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_key_removed_for_good_with_no_other_is_unavailable_without_retry_after() {
    let stub = Stub::new("refused", |_req, _ctx| async {
        Err(Error::new(ErrorKind::Auth, "bad key").with_status(401))
    });
    let pool = pool(
        vec![executor(stub.clone(), 4, None)],
        vec![keyed(0, "a")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    let p = policy(3, Duration::from_secs(10));
    let e = p
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap_err();
    // the call that met the refusal ends with it (the key's 401 and the provider's message,
    // not "no pool member can take the call")
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert_eq!((e.status(), e.message()), (Some(401), "bad key"));
    assert_eq!(e.retry_after(), None);
    // later calls never reach the provider: the pool has no member left
    let e = p
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(stub.seen().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_estimate_beyond_every_members_tpm_burst_fails_at_once_as_invalid() {
    let stub = Stub::new("tpm", |_req, _ctx| async { ok() });
    let pool = pool(
        vec![executor(stub.clone(), 4, None)],
        vec![keyed(0, "a").with_tpm(100)],
        PoolConfig::new(Strategy::RoundRobin),
    );
    let mut req = ChatRequest::new("m", vec![Message::user("hi")]);
    req.max_tokens = Some(1000);
    let e = policy(3, Duration::from_secs(10))
        .call(&pool, &Request::Chat(req), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
    assert!(stub.seen().is_empty());
}

/// A stub whose calls wait for `gate` to be notified (one permit each).
fn gated(gate: Arc<Notify>) -> Arc<Stub> {
    Stub::new("gated", move |_req, _ctx| {
        let gate = gate.clone();
        async move {
            gate.notified().await;
            ok()
        }
    })
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_by_priority_then_arrival_and_the_queue_bound_refuses_at_once() {
    let gate = Arc::new(Notify::new());
    let stub = gated(gate.clone());
    let pool = pool(
        vec![executor(stub.clone(), 1, None)],
        vec![keyed(0, "a")],
        PoolConfig::new(Strategy::RoundRobin).with_max_queued(4),
    );
    let p = Arc::new(policy(1, Duration::from_secs(100)));
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (name, prio) in [
        ("holder", Priority::Normal),
        ("low", Priority::Low),
        ("normal-1", Priority::Normal),
        ("high", Priority::High),
        ("normal-2", Priority::Normal),
    ] {
        let (pool, p, order) = (pool.clone(), p.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let ctx = RequestContext::new().with_priority(prio);
            let r = p.call(&pool, &chat(), &ctx).await;
            order.lock().unwrap().push(name);
            r.map(|_| ())
        }));
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
    }
    assert_eq!(pool.counters().queued, 4);
    // the queue is full: the next call is refused at once
    let e = p
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueFull);
    for _ in 0..5 {
        gate.notify_one();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        *order.lock().unwrap(),
        ["holder", "high", "normal-1", "normal-2", "low"]
    );
    assert_eq!(pool.counters().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_leaves_nothing_behind() {
    let gate = Arc::new(Notify::new());
    let stub = gated(gate.clone());
    let exec = executor(stub.clone(), 1, None);
    let pool = pool(
        vec![exec.clone()],
        vec![keyed(0, "a")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    let p = Arc::new(policy(1, Duration::from_secs(100)));
    let holder = {
        let (pool, p) = (pool.clone(), p.clone());
        tokio::spawn(async move { p.call(&pool, &chat(), &RequestContext::new()).await })
    };
    tokio::task::yield_now().await;
    let waiter = {
        let (pool, p) = (pool.clone(), p.clone());
        tokio::spawn(async move { p.call(&pool, &chat(), &RequestContext::new()).await })
    };
    tokio::task::yield_now().await;
    assert_eq!(pool.counters().queued, 1);
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    assert_eq!(pool.counters().queued, 0);
    gate.notify_one();
    holder.await.unwrap().unwrap();
    // the freed permit is not held for the gone waiter: the next call runs at once
    let next = {
        let (pool, p) = (pool.clone(), p.clone());
        tokio::spawn(async move { p.call(&pool, &chat(), &RequestContext::new()).await })
    };
    tokio::task::yield_now().await;
    gate.notify_one();
    next.await.unwrap().unwrap();
    assert_eq!(stub.seen().len(), 2);
    assert_eq!(exec.admission().available(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_whose_deadline_passes_times_out_and_leaves() {
    let gate = Arc::new(Notify::new());
    let stub = gated(gate.clone());
    let pool = pool(
        vec![executor(stub.clone(), 1, None)],
        vec![keyed(0, "a")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    let long = Arc::new(policy(1, Duration::from_secs(100)));
    let holder = {
        let (pool, p) = (pool.clone(), long.clone());
        tokio::spawn(async move { p.call(&pool, &chat(), &RequestContext::new()).await })
    };
    tokio::task::yield_now().await;
    let start = tokio::time::Instant::now();
    let e = policy(1, Duration::from_secs(3))
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(3));
    assert_eq!(pool.counters().queued, 0);
    gate.notify_one();
    holder.await.unwrap().unwrap();
}

/// A call dropped while its attempt is in flight is reported to the pool as it goes: the
/// member's in-flight count (what least-in-flight picks by) returns to zero.
#[tokio::test(start_paused = true)]
async fn a_call_dropped_mid_attempt_leaves_the_member_not_in_flight() {
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let stub = Stub::new("slow", move |_req, _ctx| {
        let g = g.clone();
        async move {
            g.notified().await;
            ok()
        }
    });
    let pool = pool(
        vec![executor(stub, 4, None)],
        vec![keyed(0, "a"), keyed(0, "b")],
        PoolConfig::new(Strategy::LeastInFlight),
    );
    let p = policy(1, Duration::from_secs(5));
    let req = chat();
    let ctx = RequestContext::new();
    {
        let call = p.call(&pool, &req, &ctx);
        tokio::pin!(call);
        // poll once: the attempt is leased and waits on the gate
        assert!(futures_util::FutureExt::now_or_never(call.as_mut()).is_none());
        let in_flight: u32 = pool.status().iter().map(|m| m.in_flight).sum();
        assert_eq!(in_flight, 1);
    }
    let in_flight: u32 = pool.status().iter().map(|m| m.in_flight).sum();
    assert_eq!(in_flight, 0, "the dropped attempt was reported");
    gate.notify_waiters();
}

#[tokio::test(start_paused = true)]
async fn first_healthy_sends_every_attempt_to_the_first_member_that_can_serve() {
    use infermux_multiplex::MemberSpec;
    let stubs: Vec<_> = (0..3)
        .map(|i| Stub::new(["a", "b", "c"][i], |_req, _ctx| async { ok() }))
        .collect();
    let pool = pool(
        stubs.iter().map(|s| executor(s.clone(), 1, None)).collect(),
        (0..3).map(MemberSpec::new).collect(),
        PoolConfig::new(Strategy::FirstHealthy),
    );
    let now = tokio::time::Instant::now().into_std();
    for _ in 0..5 {
        assert_eq!(pool.select(now), Some(0), "the primary while it can serve");
    }
    // the primary's only permit is taken: the first standby, then the second
    let held = pool.try_lease(0, &[]).expect("a lease on the primary");
    assert_eq!(pool.select(now), Some(1));
    let held2 = pool
        .try_lease(0, &[])
        .expect("a lease on the first standby");
    assert_eq!(pool.select(now), Some(2));
    drop(held2);
    assert_eq!(pool.select(now), Some(1), "the first standby is back");
    drop(held);
    assert_eq!(pool.select(now), Some(0), "the primary is back");
    let p = policy(1, Duration::from_secs(5));
    for _ in 0..4 {
        p.call(&pool, &chat(), &RequestContext::new())
            .await
            .unwrap();
    }
    assert_eq!(stubs[0].seen().len(), 4);
    assert!(stubs[1].seen().is_empty() && stubs[2].seen().is_empty());
}

#[tokio::test(start_paused = true)]
async fn no_fail_over_to_an_endpoint_whose_breaker_is_open_so_retry_after_is_kept() {
    use infermux_resilience::breaker::{BreakerConfig, Outcome, SlidingWindow};
    let a = Stub::new("a", |_req, _ctx| async {
        Err(Error::new(ErrorKind::Overloaded, "busy").with_retry_after(Duration::from_secs(5)))
    });
    let b = Stub::new("b", |_req, _ctx| async { ok() });
    let b_exec = executor(
        b.clone(),
        4,
        Some(
            BreakerConfig::standard()
                .with_window(SlidingWindow::Count(1))
                .with_minimum_calls(1)
                .with_open_wait(Duration::from_secs(600)),
        ),
    );
    let breaker = b_exec.breaker().unwrap();
    let t = breaker.try_acquire().unwrap();
    breaker.on_outcome(t, Outcome::Failure, Duration::ZERO);
    let pool = pool(
        vec![executor(a.clone(), 4, None), b_exec],
        vec![keyed(0, "a"), keyed(1, "b")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    let e = policy(3, Duration::from_secs(60))
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Overloaded, "{e}");
    assert!(b.seen().is_empty(), "b's breaker is open");
    let at: Vec<_> = a.seen().iter().map(|s| s.at).collect();
    assert_eq!(at.len(), 3);
    for w in at.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_secs(5),
            "a failing endpoint is retried after its Retry-After, not at once: {at:?}"
        );
    }
}

/// A pool of one endpoint around `stub` whose breaker (one half-open probe) opened and whose
/// open wait has passed: its next attempt is the half-open probe.
async fn half_open_pool(
    stub: Arc<Stub>,
) -> (
    infermux_multiplex::MultiPool,
    Arc<dyn infermux_resilience::breaker::Breaker>,
) {
    use infermux_resilience::breaker::{BreakerConfig, Outcome, SlidingWindow};
    let exec = executor(
        stub,
        4,
        Some(
            BreakerConfig::standard()
                .with_window(SlidingWindow::Count(1))
                .with_minimum_calls(1)
                .with_open_wait(Duration::from_secs(1))
                .with_half_open_probes(1),
        ),
    );
    let breaker = exec.breaker().unwrap().clone();
    let t = breaker.try_acquire().unwrap();
    breaker.on_outcome(t, Outcome::Failure, Duration::ZERO);
    let pool = pool(
        vec![exec],
        vec![keyed(0, "a")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    (pool, breaker)
}

/// A half-open breaker refuses an attempt while its one probe is out, and the probe then
/// comes back unused (as the pool's own look at an open breaker gives its probe back) with no
/// permit released: the endpoint is looked at again a while later, not held back for good.
#[tokio::test(start_paused = true)]
async fn a_breaker_refusal_while_its_probe_is_out_is_looked_at_again() {
    use infermux_resilience::breaker::Outcome;
    let stub = Stub::new("probe", |_req, _ctx| async { ok() });
    let (pool, breaker) = half_open_pool(stub.clone()).await;
    // someone else holds the half-open probe
    let probe = breaker.try_acquire().unwrap();
    let (p, req, ctx) = (
        policy(1, Duration::from_secs(10)),
        chat(),
        RequestContext::new(),
    );
    let call = p.call(&pool, &req, &ctx);
    let give_back = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        breaker.on_outcome(probe, Outcome::Ignored, Duration::ZERO);
    };
    let (called, ()) = tokio::join!(call, give_back);
    let called = called.expect("admitted once the probe is free again");
    assert_eq!(called.attempts, 1);
    assert_eq!(stub.seen().len(), 1);
}

/// While the one half-open probe is out on a call of its own, a second call with a deadline
/// shorter than the pool's recheck waits for the probe's permit to come back (and is served
/// when the probe closes the breaker), rather than failing at once as if the endpoint returned
/// only at the recheck.
#[tokio::test(start_paused = true)]
async fn a_short_call_waits_for_the_probe_in_flight_rather_than_failing_at_once() {
    // the probe says when it is out; it answers 10 ms later (tokio's paused clock)
    let out = Arc::new(Notify::new());
    let told = out.clone();
    let stub = Stub::new("slow-probe", move |_req, _ctx| {
        let told = told.clone();
        async move {
            told.notify_one();
            tokio::time::sleep(Duration::from_millis(10)).await;
            ok()
        }
    });
    let (pool, _breaker) = half_open_pool(stub.clone()).await;
    let (long, short) = (
        policy(1, Duration::from_secs(10)),
        policy(1, Duration::from_millis(30)),
    );
    let (req, ctx) = (chat(), RequestContext::new());
    let probe = long.call(&pool, &req, &ctx);
    let second = async {
        out.notified().await;
        short.call(&pool, &req, &ctx).await
    };
    let (probe, second) = tokio::join!(probe, second);
    probe.expect("the probe");
    second.expect("served once the probe's permit came back");
    assert_eq!(stub.seen().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn waiters_woken_by_a_limit_returning_are_served_by_priority() {
    // one key allowing one request a minute: the second and later calls wait for its timer
    let stub = Stub::new("rpm", |_req, _ctx| async { ok() });
    let pool = pool(
        vec![executor(stub.clone(), 8, None)],
        vec![keyed(0, "a").with_rpm(1)],
        // no ageing within the test: priority alone decides
        PoolConfig::new(Strategy::RoundRobin).with_age_step(Duration::from_secs(3600)),
    );
    let p = Arc::new(policy(1, Duration::from_secs(600)));
    p.call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (name, prio) in [
        ("low", Priority::Low),
        ("normal", Priority::Normal),
        ("high", Priority::High),
    ] {
        let (pool, p, order) = (pool.clone(), p.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let ctx = RequestContext::new().with_priority(prio);
            let r = p.call(&pool, &chat(), &ctx).await;
            order.lock().unwrap().push(name);
            r.map(|_| ())
        }));
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
    }
    assert_eq!(pool.counters().queued, 3);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), ["high", "normal", "low"]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_a_busy_healthy_endpoint_rather_than_go_back_to_the_failed_one() {
    let down = Stub::new("down", |_req, _ctx| async {
        Err(Error::new(ErrorKind::Server, "503").with_status(503))
    });
    let gate = Arc::new(Notify::new());
    let busy = gated(gate.clone());
    let pool = pool(
        vec![
            executor(down.clone(), 8, None),
            executor(busy.clone(), 1, None),
        ],
        vec![keyed(0, "a"), keyed(0, "a2"), keyed(1, "b")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    let p = Arc::new(policy(3, Duration::from_secs(60)));
    // b's one permit is taken by a call waiting on the gate
    let holder = {
        let (pool, p) = (pool.clone(), p.clone());
        tokio::spawn(async move {
            let ctx = RequestContext::new();
            loop {
                let c = p.call(&pool, &chat(), &ctx).await;
                if c.is_ok() {
                    return;
                }
            }
        })
    };
    while busy.seen().is_empty() {
        tokio::task::yield_now().await;
    }
    let before = down.seen().len();
    let call = {
        let (pool, p) = (pool.clone(), p.clone());
        tokio::spawn(async move { p.call(&pool, &chat(), &RequestContext::new()).await })
    };
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    // the call met the down endpoint once; its retry waits for b, not for a's other key
    assert_eq!(down.seen().len() - before, 1, "{:?}", down.seen());
    gate.notify_one();
    gate.notify_one();
    call.await.unwrap().unwrap();
    holder.await.unwrap();
    assert_eq!(down.seen().len() - before, 1);
}

/// A future that counts how often it is polled.
struct Counted<F> {
    inner: std::pin::Pin<Box<F>>,
    polls: Arc<AtomicU32>,
}

impl<F: std::future::Future> std::future::Future for Counted<F> {
    type Output = F::Output;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.inner.as_mut().poll(cx)
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiter_whose_timer_fired_in_vain_sleeps_instead_of_spinning() {
    // one permit, held; one key allowing one request a minute, spent by the holder
    let gate = Arc::new(Notify::new());
    let stub = gated(gate.clone());
    let pool = pool(
        vec![executor(stub.clone(), 1, None)],
        vec![keyed(0, "a").with_rpm(1)],
        PoolConfig::new(Strategy::RoundRobin).with_age_step(Duration::from_secs(3600)),
    );
    let p = Arc::new(policy(1, Duration::from_secs(600)));
    let holder = {
        let (pool, p) = (pool.clone(), p.clone());
        tokio::spawn(async move { p.call(&pool, &chat(), &RequestContext::new()).await })
    };
    while stub.seen().is_empty() {
        tokio::task::yield_now().await;
    }
    let polls = Arc::new(AtomicU32::new(0));
    let waiter = {
        let (pool, p) = (pool.clone(), p.clone());
        tokio::spawn(Counted {
            inner: Box::pin(async move { p.call(&pool, &chat(), &RequestContext::new()).await }),
            polls: polls.clone(),
        })
    };
    // the minute passes: the waiter's timer fires, the permit is still held
    tokio::time::sleep(Duration::from_secs(61)).await;
    let before = polls.load(Ordering::SeqCst);
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    let spent = polls.load(Ordering::SeqCst) - before;
    assert!(
        spent <= 2,
        "the waiter was polled {spent} times while nothing changed"
    );
    gate.notify_one();
    holder.await.unwrap().unwrap();
    gate.notify_one();
    waiter.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_retry_waiting_for_another_endpoint_passes_the_baton_to_a_waiter_behind_it() {
    // x fails when told to; y has one permit and answers when the gate opens
    let fail_next = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = fail_next.clone();
    let x = Stub::new("x", move |_req, _ctx| {
        let fail = f.swap(false, Ordering::SeqCst);
        async move {
            if fail {
                Err(Error::new(ErrorKind::Server, "503").with_status(503))
            } else {
                ok()
            }
        }
    });
    let gate = Arc::new(Notify::new());
    let y = gated(gate.clone());
    let pool = pool(
        vec![executor(x.clone(), 1, None), executor(y.clone(), 1, None)],
        vec![keyed(0, "x"), keyed(1, "y")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    let p = Arc::new(policy(3, Duration::from_secs(60)));
    // the holder calls until a call lands on y, which holds y's permit until the gate opens
    let holder = {
        let (pool, p) = (pool.clone(), p.clone());
        tokio::spawn(async move {
            loop {
                let c = p
                    .call(&pool, &chat(), &RequestContext::new())
                    .await
                    .unwrap();
                if c.member == 1 {
                    return;
                }
            }
        })
    };
    while y.seen().is_empty() {
        tokio::task::yield_now().await;
    }
    // a: its attempt on x fails, and its retry waits for y (fit, busy) rather than x
    fail_next.store(true, Ordering::SeqCst);
    let a = {
        let (pool, p) = (pool.clone(), p.clone());
        tokio::spawn(async move { p.call(&pool, &chat(), &RequestContext::new()).await })
    };
    while fail_next.load(Ordering::SeqCst) {
        tokio::task::yield_now().await;
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    // w comes after a; x is free: a passes the baton on and w is served by x at once
    let w = {
        let (pool, p) = (pool.clone(), p.clone());
        tokio::spawn(async move { p.call(&pool, &chat(), &RequestContext::new()).await })
    };
    let served = tokio::time::timeout(Duration::from_secs(5), w)
        .await
        .expect("w waited behind a retry that would not take x")
        .unwrap()
        .unwrap();
    assert_eq!(served.member, 0);
    gate.notify_one();
    holder.await.unwrap();
    gate.notify_one();
    let a = a.await.unwrap().unwrap();
    assert_eq!(a.member, 1, "a's retry went to y, not back to x");
}

/// One permit, held by a call in flight, on a key limited to `rpm`; a first waiter polled
/// once and then parked by its owner (neither polled nor dropped); a second behind it with
/// `deadline`. The holder ends at once: the second must be served, not held up by the parked
/// one (the parked call is dropped at the end).
async fn parked_waiter_ahead(rpm: Option<u32>, deadline: Duration) {
    let gate = Arc::new(Notify::new());
    let stub = gated(gate.clone());
    let member = match rpm {
        Some(n) => keyed(0, "a").with_rpm(n),
        None => keyed(0, "a"),
    };
    let pool = pool(
        vec![executor(stub.clone(), 1, None)],
        vec![member],
        PoolConfig::new(Strategy::RoundRobin).with_age_step(Duration::from_secs(3600)),
    );
    let p = Arc::new(policy(1, Duration::from_secs(600)));
    held_parked_and_behind(&pool, &p, &stub, &gate, deadline).await;
}

/// A call holding `gated`'s one permit, a waiter parked behind it, and one more behind that
/// with `deadline`; the holder ends, and the last must be served (the parked call is dropped
/// at the end).
async fn held_parked_and_behind(
    pool: &infermux_multiplex::MultiPool,
    p: &Arc<infermux_resilience::CallPolicy>,
    gated: &Arc<crate::stub::Stub>,
    gate: &Notify,
    deadline: Duration,
) {
    let holder = {
        let (pool, p) = (pool.clone(), p.clone());
        tokio::spawn(async move { p.call(&pool, &chat(), &RequestContext::new()).await })
    };
    while gated.seen().is_empty() {
        tokio::task::yield_now().await;
    }
    let request = chat();
    let ctx = RequestContext::new();
    let mut parked = Box::pin(p.call(pool, &request, &ctx));
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(parked.as_mut().poll(cx))).await;
    assert!(first.is_pending());
    let behind = {
        let (pool, p) = (pool.clone(), p.clone());
        tokio::spawn(async move {
            let ctx = RequestContext::new().with_timeout(deadline);
            p.call(&pool, &chat(), &ctx).await
        })
    };
    tokio::task::yield_now().await;
    // the permit frees; its turn goes to the parked waiter, which never takes it
    gate.notify_one();
    holder.await.unwrap().unwrap();
    gate.notify_one();
    behind.await.unwrap().unwrap();
    drop(parked);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_ahead_that_is_never_polled_again_does_not_hold_up_the_one_behind() {
    // the key's minute passes (a timer wakes the one behind), within two minutes
    parked_waiter_ahead(Some(1), Duration::from_secs(120)).await;
}

#[tokio::test(start_paused = true)]
async fn a_parked_waiter_ahead_does_not_hold_up_a_permit_freed_for_the_one_behind() {
    // no limits: nothing but the permit's release wakes the waiters, and its turn goes to
    // the parked waiter, which never takes it
    parked_waiter_ahead(None, Duration::from_secs(10)).await;
}

#[tokio::test(start_paused = true)]
async fn a_parked_waiter_ahead_does_not_hold_up_a_freed_permit_while_another_member_cools() {
    // `cooling` answers 429 for a minute; `gated` has one permit
    let gate = Arc::new(Notify::new());
    let (cooling, open) = (throttled(Duration::from_secs(60)), gated(gate.clone()));
    let pool = pool(
        vec![
            executor(cooling.clone(), 4, None),
            executor(open.clone(), 1, None),
        ],
        vec![keyed(0, "c"), keyed(1, "o")],
        PoolConfig::new(Strategy::FirstHealthy).with_age_step(Duration::from_secs(3600)),
    );
    let p = Arc::new(policy(1, Duration::from_secs(600)));
    // the first call meets the 429: `cooling` is out for a minute (a member's return time)
    let e = p
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    // the one behind looks again within 50 ms, not when `cooling` returns in a minute (past
    // its deadline)
    held_parked_and_behind(&pool, &p, &open, &gate, Duration::from_secs(10)).await;
}

/// A call with no time at all sends nothing through the pool either: a member free at once
/// is not picked (before, its attempt went out past the deadline).
#[tokio::test]
async fn a_call_with_no_time_left_picks_no_member() {
    let stub = crate::stub::Stub::new("spent", |_, _| async { crate::stub::ok() });
    let pool = crate::stub::pool(
        vec![crate::stub::executor(stub.clone(), 4, None)],
        vec![infermux_multiplex::MemberSpec::new(0)],
        infermux_multiplex::PoolConfig::default(),
    );
    let ctx = infermux_core::RequestContext::new();
    let e = crate::stub::policy(3, std::time::Duration::ZERO)
        .call(&pool, &crate::stub::chat(), &ctx)
        .await
        .unwrap_err();
    // a pool's refusal carries the call's request id, as every error of the call does
    assert_eq!(e.request_id(), Some(ctx.request_id()), "{e}");
    assert_eq!(e.kind(), infermux_core::ErrorKind::Timeout, "{e}");
    assert_eq!(e.reached_server(), Some(false), "{e}");
    assert!(stub.seen().is_empty(), "nothing was sent");
    assert_eq!(pool.status()[0].in_flight, 0);
}

/// A pool that ends takes its release hook off the endpoint, which outlives it: before, each
/// pool built over a long-lived endpoint stayed hooked (called on every release, kept in
/// memory) for as long as the endpoint lived.
#[tokio::test]
async fn a_dropped_pool_unhooks_itself_from_the_endpoints_it_used() {
    let stub = Stub::new("hooks", |_, _| async { ok() });
    let exec = executor(stub, 4, None);
    let keep = pool(
        vec![exec.clone()],
        vec![infermux_multiplex::MemberSpec::new(0)],
        PoolConfig::default(),
    );
    assert_eq!(exec.admission().release_hooks(), 1);
    for _ in 0..50 {
        let p = pool(
            vec![exec.clone()],
            vec![infermux_multiplex::MemberSpec::new(0)],
            PoolConfig::default(),
        );
        let clone = p.clone();
        drop(p);
        assert_eq!(exec.admission().release_hooks(), 2, "a clone keeps it");
        drop(clone);
    }
    assert_eq!(exec.admission().release_hooks(), 1);
    // the pool that stays still serves
    policy(1, Duration::from_secs(5))
        .call(&keep, &chat(), &RequestContext::new())
        .await
        .unwrap();
}
