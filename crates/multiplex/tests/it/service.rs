//! Taking an endpoint out of service and putting it back (a launched server restarting):
//! calls wait for it within their deadline, are woken when it returns, and time out typed when
//! it does not return in time.

use std::time::Duration;

use infermux_core::{EndpointId, ErrorKind, RequestContext};
use infermux_multiplex::{MemberState, PoolConfig, Strategy};

use crate::stub::{Stub, chat, executor, keyed, ok, policy, pool};

#[tokio::test(start_paused = true)]
async fn a_call_waits_for_an_endpoint_out_of_service_and_is_served_when_it_is_put_back() {
    let stub = Stub::new("restarting", |_req, _ctx| async { ok() });
    let pool = pool(
        vec![executor(stub.clone(), 4, None)],
        vec![keyed(0, "a")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    let ep = EndpointId::new("restarting");
    assert!(pool.take_out(&ep));
    assert_eq!(pool.is_out_of_service(&ep), Some(true));
    assert_eq!(pool.status()[0].state, MemberState::OutOfService);
    let p = policy(1, Duration::from_secs(10));
    let start = tokio::time::Instant::now();
    let waiting = {
        let pool = pool.clone();
        tokio::spawn(async move { p.call(&pool, &chat(), &RequestContext::new()).await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!waiting.is_finished(), "the call waits, it is not refused");
    assert_eq!(pool.counters().queued, 1);
    assert!(
        stub.seen().is_empty(),
        "nothing was sent while out of service"
    );
    assert!(pool.put_back(&ep));
    let called = waiting.await.unwrap().unwrap();
    assert_eq!(called.attempts, 1);
    assert_eq!(stub.seen()[0].at - start, Duration::from_secs(3));
    assert_eq!(pool.status()[0].state, MemberState::Eligible);
    assert_eq!(pool.counters().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn a_call_waiting_for_an_endpoint_that_stays_out_times_out_at_its_deadline() {
    let stub = Stub::new("down", |_req, _ctx| async { ok() });
    let pool = pool(
        vec![executor(stub.clone(), 4, None)],
        vec![keyed(0, "a")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    assert!(pool.take_out(&EndpointId::new("down")));
    let p = policy(3, Duration::from_secs(2));
    let start = tokio::time::Instant::now();
    let e = p
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(2));
    assert!(stub.seen().is_empty());
    assert_eq!(pool.counters().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn another_endpoint_serves_while_one_is_out_and_unknown_endpoints_are_refused() {
    let a = Stub::new("a", |_req, _ctx| async { ok() });
    let b = Stub::new("b", |_req, _ctx| async { ok() });
    let pool = pool(
        vec![executor(a.clone(), 4, None), executor(b.clone(), 4, None)],
        vec![keyed(0, "ka"), keyed(1, "kb")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    assert!(!pool.take_out(&EndpointId::new("nobody")));
    assert_eq!(pool.is_out_of_service(&EndpointId::new("nobody")), None);
    assert!(pool.take_out(&EndpointId::new("a")));
    let p = policy(1, Duration::from_secs(5));
    for _ in 0..4 {
        p.call(&pool, &chat(), &RequestContext::new())
            .await
            .unwrap();
    }
    assert!(a.seen().is_empty());
    assert_eq!(b.seen().len(), 4);
}

/// A retired endpoint (its server stopped or failed for good) refuses the calls waiting for
/// it, and later ones, at once with `Unavailable`, even a call without a deadline (which
/// waited forever for a member only taken out); another endpoint still serves.
#[tokio::test(start_paused = true)]
async fn a_retired_endpoint_refuses_its_waiting_calls_at_once_and_put_back_undoes_it() {
    let stub = Stub::new("gone", |_req, _ctx| async { ok() });
    let pool = pool(
        vec![executor(stub.clone(), 4, None)],
        vec![keyed(0, "a")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    let ep = EndpointId::new("gone");
    assert!(pool.take_out(&ep));
    // no deadline at all: before, this call waited for good
    let p = infermux_resilience::CallPolicy::new(
        std::sync::Arc::new(infermux_resilience::retry::StandardRetry::disabled()),
        None,
    );
    let start = tokio::time::Instant::now();
    // three waiting: the one woken passes the wake-up on (before, the others slept on)
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let (pool, p) = (pool.clone(), p.clone());
            tokio::spawn(async move { p.call(&pool, &chat(), &RequestContext::new()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "taken out, the calls wait"
    );
    assert_eq!(pool.counters().queued, 3);
    assert!(pool.retire(&ep));
    assert_eq!(pool.is_out_of_service(&ep), Some(true));
    for w in waiting {
        let e = w.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.to_string().contains("retired"), "{e}");
    }
    assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(3));
    assert_eq!(pool.counters().queued, 0);
    let e = p
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Unavailable,
        "a later call is refused at once: {e}"
    );
    assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(3));
    assert!(stub.seen().is_empty());
    assert!(pool.put_back(&ep));
    p.call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap();
    assert_eq!(stub.seen().len(), 1);
}

/// A request too large for the members left is refused as unavailable while a retired
/// endpoint's member (whose limit would have taken it) is gone, not as an invalid request.
#[tokio::test(start_paused = true)]
async fn a_request_only_a_retired_member_could_take_is_unavailable_not_invalid() {
    let small = Stub::new("small", |_req, _ctx| async { ok() });
    let big = Stub::new("big", |_req, _ctx| async { ok() });
    let pool = pool(
        vec![executor(small, 4, None), executor(big, 4, None)],
        vec![
            keyed(0, "s").with_tpm(2_000),
            keyed(1, "b").with_tpm(10_000_000),
        ],
        // an estimate of about 5 000 tokens: more than the small key ever admits at once
        PoolConfig::new(Strategy::RoundRobin).with_default_output_tokens(5_000),
    );
    assert!(pool.retire(&EndpointId::new("big")));
    let e = policy(1, Duration::from_secs(5))
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}
