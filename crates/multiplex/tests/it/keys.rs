//! Three keys through the call policy: one throttled with a Retry-After, one refused, one
//! fine.

use std::collections::HashMap;
use std::time::Duration;

use infermux_core::{Error, ErrorKind, RequestContext};
use infermux_multiplex::{MemberState, PoolConfig, RemovalReason, Strategy};

use crate::stub::{Stub, chat, chat_for, executor, keyed, ok, policy, pool};

const RETRY_AFTER: Duration = Duration::from_secs(10);

fn three_keys() -> std::sync::Arc<Stub> {
    Stub::new("keys", |_req, ctx| {
        let alias = ctx.key().map(|k| k.alias().to_owned());
        async move {
            match alias.as_deref() {
                Some("a") => Err(Error::new(ErrorKind::RateLimited, "slow down")
                    .with_status(429)
                    .with_retry_after(RETRY_AFTER)),
                Some("b") => Err(Error::new(ErrorKind::Auth, "bad key").with_status(401)),
                _ => ok(),
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn three_keys_429_401_ok_every_call_succeeds_and_each_key_is_treated_by_its_status() {
    let stub = three_keys();
    let exec = executor(stub.clone(), 8, None);
    let pool = pool(
        vec![exec],
        vec![keyed(0, "a"), keyed(0, "b"), keyed(0, "c")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    let policy = policy(4, Duration::from_secs(30));
    let start = tokio::time::Instant::now();
    for _ in 0..40 {
        let called = policy
            .call(&pool, &chat(), &RequestContext::new())
            .await
            .expect("every call succeeds through key c");
        assert_eq!(
            pool.member(called.member).unwrap().key_alias.as_deref(),
            Some("c")
        );
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    // the 401 key: exactly one attempt ever, then removed for good
    assert_eq!(stub.seen_by("b").len(), 1);
    assert!(matches!(
        pool.status()[1].state,
        MemberState::Removed {
            reason: RemovalReason::Auth,
            until: None
        }
    ));
    // the 429 key: never an attempt before its Retry-After passed, and attempts after it
    let a = stub.seen_by("a");
    assert!(
        a.len() >= 3,
        "key a came back after each Retry-After: {} attempts",
        a.len()
    );
    for pair in a.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= RETRY_AFTER,
            "key a was tried {:?} after its 429",
            pair[1].at - pair[0].at
        );
    }
    assert!(a.last().unwrap().at - start >= 2 * RETRY_AFTER);
    // a retry after a 429 (or the 401) went to another key
    let mut by_request: HashMap<_, Vec<String>> = HashMap::new();
    for s in stub.seen() {
        by_request
            .entry(s.request)
            .or_default()
            .push(s.key.unwrap());
    }
    for keys in by_request.values() {
        for pair in keys.windows(2) {
            assert_ne!(
                pair[0], pair[1],
                "a retry went back to the key that failed: {keys:?}"
            );
        }
        assert_eq!(keys.last().map(String::as_str), Some("c"));
    }
    assert!(pool.counters().cooldowns >= 3);
    assert_eq!(pool.counters().removals, 1);
}

#[tokio::test(start_paused = true)]
async fn a_recooled_key_keeps_the_later_end() {
    // two attempts on one key in flight at once: the first answers late with a short
    // Retry-After, the second at once with a long one; the short one must not shorten it
    let n = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let stub = Stub::new("recool", move |_req, _ctx| {
        let first = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
        async move {
            if first {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            let after = Duration::from_secs(if first { 1 } else { 30 });
            Err::<infermux_core::Response, _>(
                Error::new(ErrorKind::RateLimited, "slow").with_retry_after(after),
            )
        }
    });
    let exec = executor(stub.clone(), 4, None);
    let pool = pool(
        vec![exec],
        vec![keyed(0, "a")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    let p = policy(1, Duration::from_secs(100));
    let start = tokio::time::Instant::now();
    let ctx = RequestContext::new();
    let req = chat();
    let (r1, r2) = tokio::join!(p.call(&pool, &req, &ctx), async {
        tokio::task::yield_now().await;
        p.call(&pool, &req, &ctx).await
    });
    assert!(r1.is_err() && r2.is_err());
    assert_eq!(stub.seen().len(), 2);
    assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(5));
    let MemberState::Cooling { until } = pool.status()[0].state else {
        panic!("key a is cooling: {:?}", pool.status()[0].state)
    };
    assert_eq!(until - start.into_std(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn a_retry_avoids_the_member_that_failed_while_another_is_eligible() {
    // key a fails with 5xx (not held back: no breaker) and is weighted 100:1 over key b, so
    // only the preference for untried members sends the retry to b
    let stub = Stub::new("tried", |_req, ctx| {
        let alias = ctx.key().map(|k| k.alias().to_owned());
        async move {
            match alias.as_deref() {
                Some("a") => Err(Error::new(ErrorKind::Server, "boom").with_status(500)),
                _ => ok(),
            }
        }
    });
    let pool = pool(
        vec![executor(stub.clone(), 8, None)],
        vec![keyed(0, "a").with_weight(100), keyed(0, "b")],
        PoolConfig::new(Strategy::Weighted),
    );
    let p = policy(2, Duration::from_secs(30));
    for _ in 0..10 {
        p.call(&pool, &chat(), &RequestContext::new())
            .await
            .expect("the retry goes to key b");
    }
    let mut by_request: HashMap<_, Vec<String>> = HashMap::new();
    for s in stub.seen() {
        by_request
            .entry(s.request)
            .or_default()
            .push(s.key.unwrap());
    }
    for keys in by_request.values() {
        assert!(keys == &["a", "b"] || keys == &["b"], "{keys:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_refusal_that_states_a_retry_after_removes_its_key_until_then_only() {
    let stub = Stub::new("keys", |_req, ctx| {
        let alias = ctx.key().map(|k| k.alias().to_owned());
        async move {
            match alias.as_deref() {
                Some("a") => Err(Error::new(ErrorKind::Auth, "signature refused")
                    .with_status(403)
                    .with_retry_after(Duration::from_secs(60))),
                _ => ok(),
            }
        }
    });
    let pool = pool(
        vec![executor(stub.clone(), 8, None)],
        vec![keyed(0, "a"), keyed(0, "b")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    let policy = policy(4, Duration::from_secs(30));
    policy
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap();
    assert_eq!(stub.seen_by("a").len(), 1);
    assert!(
        matches!(
            pool.status()[0].state,
            MemberState::Removed {
                reason: RemovalReason::Auth,
                until: Some(_)
            }
        ),
        "{:?}",
        pool.status()[0].state
    );
    // within the minute key a sits out; after it, it is tried again
    for _ in 0..10 {
        policy
            .call(&pool, &chat(), &RequestContext::new())
            .await
            .unwrap();
    }
    assert_eq!(stub.seen_by("a").len(), 1);
    tokio::time::advance(Duration::from_secs(61)).await;
    for _ in 0..4 {
        policy
            .call(&pool, &chat(), &RequestContext::new())
            .await
            .unwrap();
    }
    assert_eq!(stub.seen_by("a").len(), 2);
}

/// A key out of quota is removed for good even when its error carries rate-limit headers
/// with a reset (OpenAI's `x-ratelimit-reset-requests: 2ms` ride on every answer): before, it
/// was removed for those milliseconds and picked again at once, an attempt wasted each time.
#[tokio::test(start_paused = true)]
async fn a_spent_key_stays_removed_whatever_reset_its_rate_limit_headers_say() {
    use infermux_core::{RateLimitInfo, RateLimitWindow};
    let stub = Stub::new("spent", |_req, ctx| {
        let alias = ctx.key().map(|k| k.alias().to_owned());
        async move {
            match alias.as_deref() {
                Some("a") => {
                    let mut info = RateLimitInfo::default();
                    info.requests = RateLimitWindow::default()
                        .with_limit(5000)
                        .with_remaining(4999)
                        .with_reset_after(Duration::from_millis(2));
                    Err(Error::new(ErrorKind::QuotaExceeded, "insufficient_quota")
                        .with_status(429)
                        .with_rate_limit(info))
                }
                _ => ok(),
            }
        }
    });
    let pool = pool(
        vec![executor(stub.clone(), 8, None)],
        vec![keyed(0, "a"), keyed(0, "b")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    let policy = policy(4, Duration::from_secs(30));
    for _ in 0..10 {
        policy
            .call(&pool, &chat(), &RequestContext::new())
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(stub.seen_by("a").len(), 1, "tried once, then removed");
    assert!(
        matches!(
            pool.status()[0].state,
            MemberState::Removed {
                reason: RemovalReason::Quota,
                until: None
            }
        ),
        "{:?}",
        pool.status()[0].state
    );
}

/// A success that says its key's request window is spent (`remaining: 0`, reset in 30 s)
/// holds that key until the reset in a pool without limits of its own too: the next calls go
/// to the other key instead of spending an attempt on a sure 429. Before, only pools with
/// RPM/TPM limits read a response's rate-limit headers, and the first-healthy key was tried
/// again at once.
#[tokio::test(start_paused = true)]
async fn a_success_that_spends_its_window_holds_the_key_in_a_pool_without_limits() {
    use infermux_core::{RateLimitInfo, RateLimitWindow};
    let stub = Stub::new("spent", |_req, ctx| {
        if ctx.key().map(|k| k.alias()) == Some("a") {
            let mut info = RateLimitInfo::default();
            info.requests = RateLimitWindow::default()
                .with_limit(3)
                .with_remaining(0)
                .with_reset_after(Duration::from_secs(30));
            ctx.record_rate_limits(&info);
        }
        async { ok() }
    });
    let pool = pool(
        vec![executor(stub.clone(), 8, None)],
        vec![keyed(0, "a"), keyed(0, "b")],
        PoolConfig::new(Strategy::FirstHealthy),
    );
    let policy = policy(1, Duration::from_secs(5));
    let alias = |called: &infermux_resilience::Called<_>| {
        pool.member(called.member)
            .unwrap()
            .key_alias
            .as_deref()
            .unwrap()
            .to_owned()
    };
    let first = policy
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap();
    assert_eq!(alias(&first), "a");
    for _ in 0..4 {
        let next = policy
            .call(&pool, &chat(), &RequestContext::new())
            .await
            .unwrap();
        assert_eq!(alias(&next), "b", "key a is spent until its reset");
    }
    assert_eq!(stub.seen_by("a").len(), 1);
    tokio::time::advance(Duration::from_secs(31)).await;
    let after = policy
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap();
    assert_eq!(alias(&after), "a", "back after the reset");
}

/// Two pools sharing their keys through one `KeyRegistry` (two model groups of one client
/// sending the same keys): a 429 one pool meets cools the key in the other, a 401 removes it
/// there too, and an RPM limit counts the requests of both. Before, each pool held its own
/// state of the key: the other pool sent it again at once (a sure 429), and each allowed the
/// key's whole RPM.
#[tokio::test(start_paused = true)]
async fn pools_sharing_a_registry_share_each_keys_cooldown_removal_and_limits() {
    use infermux_multiplex::{KeyRegistry, MultiPool};
    let stub = three_keys();
    let exec = executor(stub.clone(), 8, None);
    let registry = KeyRegistry::with_clock(std::sync::Arc::new(crate::stub::TokioClock));
    let members = || vec![keyed(0, "a"), keyed(0, "b"), keyed(0, "c")];
    let config = || PoolConfig::new(Strategy::FirstHealthy);
    let one = MultiPool::with_registry(vec![exec.clone()], members(), config(), &registry).unwrap();
    let two = MultiPool::with_registry(vec![exec.clone()], members(), config(), &registry).unwrap();
    assert_eq!(registry.len(), 3);
    let policy = policy(3, Duration::from_secs(5));
    // pool one meets a's 429 and b's 401, and answers from c
    policy
        .call(&one, &chat(), &RequestContext::new())
        .await
        .unwrap();
    assert_eq!((stub.seen_by("a").len(), stub.seen_by("b").len()), (1, 1));
    // pool two learns from them: straight to c
    for _ in 0..3 {
        policy
            .call(&two, &chat(), &RequestContext::new())
            .await
            .unwrap();
    }
    assert_eq!(
        (stub.seen_by("a").len(), stub.seen_by("b").len()),
        (1, 1),
        "no second 429 or 401 through the other pool"
    );
    let status = two.status();
    assert!(
        matches!(status[0].state, MemberState::Cooling { .. }),
        "{status:?}"
    );
    assert!(
        matches!(
            status[1].state,
            MemberState::Removed {
                reason: RemovalReason::Auth,
                ..
            }
        ),
        "{status:?}"
    );

    // limits: what one pool takes of key r's requests a minute, the other cannot take again
    let ok_stub = Stub::new("ok", |_req, _ctx| async { ok() });
    let exec = executor(ok_stub.clone(), 64, None);
    let r = || vec![keyed(0, "r").with_rpm(20)];
    let one = MultiPool::with_registry(vec![exec.clone()], r(), config(), &registry).unwrap();
    let two = MultiPool::with_registry(vec![exec.clone()], r(), config(), &registry).unwrap();
    let mut leases = Vec::new();
    while let Some(l) = one.try_lease(0, &[]) {
        leases.push(l);
        assert!(leases.len() <= 20);
    }
    assert!(!leases.is_empty());
    assert!(
        two.try_lease(0, &[]).is_none(),
        "the burst pool one spent is spent for pool two ({} leases)",
        leases.len()
    );
    // a pool built after a key was removed in another does not send it: the hold is there
    let late = MultiPool::with_registry(
        vec![executor(stub.clone(), 8, None)],
        members(),
        config(),
        &registry,
    )
    .unwrap();
    for _ in 0..3 {
        policy
            .call(&late, &chat(), &RequestContext::new())
            .await
            .unwrap();
    }
    assert_eq!(
        (stub.seen_by("a").len(), stub.seen_by("b").len()),
        (1, 1),
        "a pool built later sees the holds already in place"
    );
    // a burst share of its own is no conflict for a key without limits
    MultiPool::with_registry(
        vec![executor(stub.clone(), 8, None)],
        members(),
        config().with_limit_burst_percent(20),
        &registry,
    )
    .unwrap();
    // a key stated with other limits in another pool is a config error
    let other = MultiPool::with_registry(
        vec![exec],
        vec![keyed(0, "r").with_rpm(30)],
        config(),
        &registry,
    );
    assert_eq!(other.unwrap_err().kind(), ErrorKind::Config);
}

/// A 429 the provider scoped to the model (Gemini's per-model quotas, OpenAI's "Rate limit
/// reached for gpt-4o …") holds back that key for that model only: pool one's member sending
/// key a for model `m1` is held for the Retry-After, and so is pool two's (the hold is the
/// key's, shared through the registry), while the members sending key a for `m2` go on at
/// once; the retry of the 429'd call goes to the key's other model. The same 429 without the scope cools key a for both models in both pools, as
/// before.
#[tokio::test(start_paused = true)]
async fn a_model_scoped_429_holds_that_model_on_the_key_and_the_keys_other_models_go_on() {
    use infermux_multiplex::{KeyRegistry, MultiPool};
    for scoped in [true, false] {
        let stub = Stub::new("models", move |req, ctx| {
            let alias = ctx.key().map(|k| k.alias().to_owned());
            let model = match req {
                infermux_core::Request::Chat(c) => c.model.clone(),
                _ => String::new(),
            };
            async move {
                if alias.as_deref() == Some("a") && model == "m1" {
                    Err(Error::new(ErrorKind::RateLimited, "per model")
                        .with_status(429)
                        .with_retry_after(RETRY_AFTER)
                        .with_model_scope(scoped))
                } else {
                    ok()
                }
            }
        });
        let exec = executor(stub.clone(), 8, None);
        let registry = KeyRegistry::with_clock(std::sync::Arc::new(crate::stub::TokioClock));
        let one = MultiPool::with_registry(
            vec![exec.clone()],
            vec![
                keyed(0, "a").with_model("m1"),
                keyed(0, "a").with_model("m2"),
                keyed(0, "b").with_model("m1"),
            ],
            PoolConfig::new(Strategy::FirstHealthy),
            &registry,
        )
        .unwrap();
        let two = MultiPool::with_registry(
            vec![exec.clone()],
            vec![
                keyed(0, "a").with_model("m2"),
                keyed(0, "a").with_model("m1"),
            ],
            PoolConfig::new(Strategy::FirstHealthy),
            &registry,
        )
        .unwrap();
        let policy = policy(3, Duration::from_secs(5));
        // first healthy: key a for m1 first, its 429, then a retry elsewhere
        let called = policy
            .call(&one, &chat(), &RequestContext::new())
            .await
            .unwrap();
        let status = one.status();
        assert!(
            matches!(status[0].state, MemberState::Cooling { .. }),
            "{status:?}"
        );
        if scoped {
            // the retry went to the key's other model, the first healthy one left
            assert_eq!(called.member, 1, "{status:?}");
            assert_eq!(status[1].state, MemberState::Eligible, "{status:?}");
            assert_eq!(two.status()[0].state, MemberState::Eligible);
            // the hold is the key's: the other pool's member sending it for m1 waits too
            assert!(
                matches!(two.status()[1].state, MemberState::Cooling { .. }),
                "{:?}",
                two.status()
            );
            policy
                .call(&two, &chat(), &RequestContext::new())
                .await
                .expect("key a serves m2 in the other pool at once");
            assert_eq!(stub.seen_by("a").len(), 3);
            assert_eq!(one.counters().cooldowns, 1);
        } else {
            assert_eq!(called.member, 2, "{status:?}");
            assert!(
                matches!(status[1].state, MemberState::Cooling { .. }),
                "{status:?}"
            );
            assert!(matches!(two.status()[0].state, MemberState::Cooling { .. }));
            assert_eq!(stub.seen_by("a").len(), 1);
        }
        // the held member returns when its Retry-After ends, not before
        tokio::time::advance(RETRY_AFTER - Duration::from_millis(1)).await;
        assert!(matches!(one.status()[0].state, MemberState::Cooling { .. }));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(one.status()[0].state, MemberState::Eligible);
    }
}

/// A call that finds its only member held for its model waits for the hold's end when its
/// deadline allows (the queue's timer knows the member's hold), and fails at once naming the
/// return when it does not.
#[tokio::test(start_paused = true)]
async fn a_call_waits_out_a_model_hold_or_fails_at_once_past_its_deadline() {
    let n = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let stub = Stub::new("held", move |_req, _ctx| {
        let first = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
        async move {
            if first {
                Err(Error::new(ErrorKind::RateLimited, "per model")
                    .with_retry_after(RETRY_AFTER)
                    .with_model_scope(true))
            } else {
                ok()
            }
        }
    });
    let pool = pool(
        vec![executor(stub.clone(), 4, None)],
        vec![keyed(0, "a").with_model("m1")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    let err = policy(1, Duration::from_secs(30))
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    let short = policy(1, Duration::from_secs(2))
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(short.kind(), ErrorKind::Unavailable, "{short}");
    assert!(short.retry_after().is_some_and(|d| d <= RETRY_AFTER));
    let start = tokio::time::Instant::now();
    policy(1, Duration::from_secs(30))
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .expect("the hold ends before the deadline");
    assert_eq!(tokio::time::Instant::now() - start, RETRY_AFTER);
    assert_eq!(stub.seen().len(), 2);
}

/// A 429 without Retry-After whose headers show no spent window (tokens were the limit: the
/// request wanted more than the 63 left) cools its key until the latest window's reset, the
/// tokens' 5 s, not the requests window's 100 ms: before, the key was tried again after
/// 100 ms and met the 429 again.
#[tokio::test(start_paused = true)]
async fn a_429_without_retry_after_cools_until_the_latest_window_resets() {
    use infermux_core::{RateLimitInfo, RateLimitWindow};
    let stub = Stub::new("tokens", |_req, _ctx| async move {
        let mut info = RateLimitInfo::default();
        info.requests = RateLimitWindow::default()
            .with_limit(500)
            .with_remaining(499)
            .with_reset_after(Duration::from_millis(100));
        info.tokens = RateLimitWindow::default()
            .with_limit(30_000)
            .with_remaining(63)
            .with_reset_after(Duration::from_secs(5));
        Err::<infermux_core::Response, _>(
            Error::new(ErrorKind::RateLimited, "on tokens per min")
                .with_status(429)
                .with_rate_limit(info),
        )
    });
    let pool = pool(
        vec![executor(stub.clone(), 8, None)],
        vec![keyed(0, "a")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    let start = tokio::time::Instant::now();
    let _ = policy(1, Duration::from_secs(30))
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap_err();
    let MemberState::Cooling { until } = pool.status()[0].state else {
        panic!("{:?}", pool.status()[0].state)
    };
    assert_eq!(until - start.into_std(), Duration::from_secs(5));
}

/// A member without a model of its own sends the request's: a model-scoped 429 for a request
/// of `m1` holds key a for `m1` only, so a request of `m2` goes on through the same key at
/// once while one of `m1` waits for the hold. Before, the whole key cooled (for a Gemini day's
/// quota, until midnight Pacific time, every model).
#[tokio::test(start_paused = true)]
async fn a_model_scoped_429_on_a_member_without_a_model_holds_the_requests_model() {
    let stub = Stub::new("modelless", |req, _ctx| {
        let model = match req {
            infermux_core::Request::Chat(c) => c.model.clone(),
            _ => String::new(),
        };
        async move {
            if model == "m1" {
                Err(Error::new(ErrorKind::RateLimited, "per model")
                    .with_status(429)
                    .with_retry_after(RETRY_AFTER)
                    .with_model_scope(true))
            } else {
                ok()
            }
        }
    });
    let pool = pool(
        vec![executor(stub.clone(), 8, None)],
        vec![keyed(0, "a")],
        PoolConfig::new(Strategy::RoundRobin),
    );
    let p = policy(1, Duration::from_secs(30));
    let start = tokio::time::Instant::now();
    assert!(
        p.call(&pool, &chat_for("m1"), &RequestContext::new())
            .await
            .is_err()
    );
    // m2 goes at once through the same key
    p.call(&pool, &chat_for("m2"), &RequestContext::new())
        .await
        .expect("the key's other model goes on");
    assert_eq!(tokio::time::Instant::now(), start);
    assert_eq!(pool.status()[0].state, MemberState::Eligible);
    // m1 waits for the hold (and meets the 429 again: the stub always refuses it)
    let short = policy(1, Duration::from_secs(2))
        .call(&pool, &chat_for("m1"), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(short.kind(), ErrorKind::Unavailable, "{short}");
    assert_eq!(stub.seen().len(), 2);
}

/// A waiter held back by its model's hold does not hold back the waiters behind it: a call
/// for another model, which the member can take now, goes at once. Before, the queue's baton
/// went to the older waiter, which could not pick and did not pass it on: the call for the
/// free model waited out its deadline beside an idle member.
#[tokio::test(start_paused = true)]
async fn a_waiter_held_by_its_models_hold_passes_the_baton_to_a_call_for_another_model() {
    let n = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let stub = Stub::new("held", move |_req, _ctx| {
        let first = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
        async move {
            if first {
                Err(Error::new(ErrorKind::RateLimited, "per model")
                    .with_retry_after(Duration::from_secs(60))
                    .with_model_scope(true))
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
    let (m1, m2) = (chat_for("m1"), chat_for("m2"));
    // m1 is held on the key for a minute
    let e = policy(1, Duration::from_secs(30))
        .call(&pool, &m1, &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    // a call for m1 waits out the hold in the queue
    let waiting = {
        let pool = pool.clone();
        let m1 = m1.clone();
        tokio::spawn(async move {
            policy(1, Duration::from_secs(120))
                .call(&pool, &m1, &RequestContext::new())
                .await
        })
    };
    // (yields, a bounded number: on a paused clock time does not move while it spins)
    for _ in 0..10_000 {
        if pool.counters().queued > 0 || waiting.is_finished() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(pool.counters().queued, 1, "the m1 call waits in the queue");
    // a call for m2 goes now, not after its deadline
    let start = tokio::time::Instant::now();
    policy(1, Duration::from_secs(1))
        .call(&pool, &m2, &RequestContext::new())
        .await
        .expect("the member is free for m2");
    assert_eq!(tokio::time::Instant::now(), start, "m2 waited");
    // and the m1 call goes once its hold ends
    waiting.await.unwrap().expect("after the hold");
    assert_eq!(stub.seen().len(), 3);
}

/// A provider that answers every call and every stream with a 429.
#[derive(Debug)]
struct Throttled(infermux_core::EndpointId);

impl Throttled {
    fn refusal() -> Error {
        Error::new(ErrorKind::RateLimited, "slow down")
            .with_status(429)
            .with_retry_after(Duration::from_secs(10))
    }
}

#[async_trait::async_trait]
impl infermux_core::Provider for Throttled {
    fn name(&self) -> &'static str {
        "throttled"
    }
    fn endpoint(&self) -> &infermux_core::EndpointId {
        &self.0
    }
    fn capabilities(&self) -> infermux_core::Capabilities {
        infermux_core::Capabilities::new()
            .with(infermux_core::Operation::Chat)
            .with(infermux_core::Operation::ChatStream)
    }
    async fn call(
        &self,
        _request: &infermux_core::Request,
        _ctx: &RequestContext,
    ) -> infermux_core::Result<infermux_core::Response> {
        Err(Self::refusal())
    }
    async fn stream(
        &self,
        _request: &infermux_core::Request,
        _ctx: &RequestContext,
    ) -> infermux_core::Result<infermux_core::EventStream> {
        Err(Self::refusal())
    }
}

/// A failed attempt's permit goes back once the pool has learnt the failure: whoever the
/// release wakes finds the key already cooling. Before, the permit went back at the attempt's
/// end, and a waiter woken on another worker could pick the key before the 429 cooled it (one
/// more 429). The release is observed by a hook of our own, called at the moment it happens.
#[tokio::test]
async fn a_failed_attempts_permit_goes_back_after_the_pool_learnt_the_failure() {
    for streamed in [false, true] {
        let exec = crate::stub::executor_of(
            std::sync::Arc::new(Throttled(infermux_core::EndpointId::new("throttled"))),
            1,
        );
        let pool = pool(
            vec![exec.clone()],
            vec![keyed(0, "a")],
            PoolConfig::new(Strategy::FirstHealthy),
        );
        let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let slot: std::sync::Arc<std::sync::OnceLock<infermux_multiplex::MultiPool>> =
            Default::default();
        let (s, p) = (seen.clone(), slot.clone());
        let hooked = exec.admission().on_release(std::sync::Arc::new(move || {
            if let Some(pool) = p.get() {
                s.lock()
                    .unwrap()
                    .push(pool.status()[0].state.as_str().to_owned());
            }
        }));
        assert!(hooked.is_ok());
        let _ = slot.set(pool.clone());
        let policy = policy(1, Duration::from_secs(5));
        let kind = if streamed {
            policy
                .stream(&pool, &chat(), &RequestContext::new())
                .await
                .err()
                .map(|e| e.kind())
        } else {
            policy
                .call(&pool, &chat(), &RequestContext::new())
                .await
                .err()
                .map(|e| e.kind())
        };
        assert_eq!(kind, Some(ErrorKind::RateLimited), "streamed {streamed}");
        assert_eq!(*seen.lock().unwrap(), ["cooling"], "streamed {streamed}");
    }
}

/// A 429 on one key fails that key, not its endpoint: the retry goes at once to the other key
/// on the same endpoint, though a member on another endpoint is fit (busy, its one permit
/// held). Before, every key on the throttled key's endpoint was avoided, and the retry waited
/// for the busy endpoint's permit until the deadline while key `b` sat idle.
#[tokio::test(start_paused = true)]
async fn a_429_on_one_key_retries_on_another_key_of_the_same_endpoint_at_once() {
    let throttled = Stub::new("one", |_req, ctx| {
        let alias = ctx.key().map(|k| k.alias().to_owned());
        async move {
            match alias.as_deref() {
                Some("a") => Err(Error::new(ErrorKind::RateLimited, "slow down")
                    .with_status(429)
                    .with_retry_after(Duration::from_secs(60))),
                _ => ok(),
            }
        }
    });
    let busy = Stub::new("two", |_req, _ctx| async { ok() });
    let pool = pool(
        vec![
            executor(throttled.clone(), 8, None),
            executor(busy.clone(), 1, None),
        ],
        vec![keyed(0, "a"), keyed(0, "b"), keyed(1, "c")],
        PoolConfig::new(Strategy::FirstHealthy),
    );
    // the other endpoint's one permit, held for the whole call
    let held = pool.try_lease(0, &[0, 1]).expect("key c is free");
    assert_eq!(held.member, 2);
    let start = tokio::time::Instant::now();
    let called = policy(3, Duration::from_secs(10))
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .expect("key b takes the retry");
    assert_eq!(called.attempts, 2);
    assert_eq!(
        pool.member(called.member).unwrap().key_alias.as_deref(),
        Some("b")
    );
    assert_eq!(start.elapsed(), Duration::ZERO, "no wait");
    assert_eq!(throttled.seen_by("a").len(), 1);
    assert!(busy.seen().is_empty());
    drop(held);
}

/// A 429 that says not to retry it (`x-should-retry: false`) on the only key ends the call
/// with it, though the key would be back before the deadline (it was resent after the
/// cooldown); a spent quota, which the transport marks so, on one of two keys goes to the
/// other at once (the mark says not to retry *this key*).
#[tokio::test(start_paused = true)]
async fn a_key_error_that_says_no_ends_the_call_only_when_no_other_key_can_take_it() {
    use infermux_core::StopReason;
    let stub = Stub::new("only", |_req, _ctx| async {
        Err(Error::new(ErrorKind::RateLimited, "slow down")
            .with_status(429)
            .with_retry_after(Duration::from_secs(2))
            .with_should_retry(false))
    });
    let one = pool(
        vec![executor(stub.clone(), 8, None)],
        vec![keyed(0, "a")],
        PoolConfig::new(Strategy::FirstHealthy),
    );
    let err = policy(3, Duration::from_secs(300))
        .call(&one, &chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited, "{err}");
    assert_eq!(err.stop_reason(), Some(StopReason::NotRetryable), "{err}");
    assert_eq!(stub.seen().len(), 1);

    let spent = Stub::new("quota", |_req, ctx| {
        let alias = ctx.key().map(|k| k.alias().to_owned());
        async move {
            match alias.as_deref() {
                // (as the transport maps OpenAI's `insufficient_quota`)
                Some("a") => Err(Error::new(ErrorKind::QuotaExceeded, "quota")
                    .with_status(429)
                    .with_should_retry(false)),
                _ => ok(),
            }
        }
    });
    let two = pool(
        vec![executor(spent.clone(), 8, None)],
        vec![keyed(0, "a"), keyed(0, "b")],
        PoolConfig::new(Strategy::FirstHealthy),
    );
    let called = policy(3, Duration::from_secs(10))
        .call(&two, &chat(), &RequestContext::new())
        .await
        .expect("key b serves");
    assert_eq!(
        two.member(called.member).unwrap().key_alias.as_deref(),
        Some("b")
    );
}

/// A client's endpoints are numbered across all its groups: a pool's members on endpoints 0
/// and 64 are on two endpoints, and a failure on 0 does not make the pool avoid 64 (it did:
/// endpoints were told apart by their index modulo 64).
#[tokio::test(start_paused = true)]
async fn endpoints_64_apart_are_not_one_endpoint() {
    let execs: Vec<_> = (0..65)
        .map(|i| {
            let stub = Stub::new(&format!("e{i}"), |_req, _ctx| async { ok() });
            executor(stub, 8, None)
        })
        .collect();
    let pool = pool(
        execs,
        vec![
            infermux_multiplex::MemberSpec::new(0),
            infermux_multiplex::MemberSpec::new(64),
        ],
        PoolConfig::new(Strategy::FirstHealthy),
    );
    use infermux_resilience::Pool as _;
    assert!(pool.can_fail_over(&[0]), "endpoint 64 can take the retry");
}
