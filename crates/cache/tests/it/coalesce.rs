//! Identical calls that miss at once make one upstream call ([`CacheConfig::coalesce`]): the
//! first goes, the others wait for its stored answer. Time is tokio's paused clock: a wait
//! of the test's own ends only once every task is parked.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use infermux_cache::{Cache, CacheConfig};
use infermux_core::{
    EndpointId, Error, ErrorKind, FallbackTaken, RequestContext, Response, Result, Served,
};
use tokio::task::JoinHandle;

use crate::support::{answer, ask, text_of};

/// An upstream that counts its calls and answers after `took` (the first call fails when
/// `first_fails`).
async fn upstream(calls: &AtomicUsize, took: Duration, first_fails: bool) -> Result<Response> {
    let n = calls.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(took).await;
    if first_fails && n == 0 {
        return Err(Error::new(ErrorKind::Server, "the first call fails"));
    }
    Ok(answer(&format!("answer {n}")))
}

fn spawn_calls(
    cache: &Cache,
    calls: &Arc<AtomicUsize>,
    n: usize,
    first_fails: bool,
) -> Vec<JoinHandle<Result<Response>>> {
    (0..n)
        .map(|_| {
            let (cache, calls) = (cache.clone(), Arc::clone(calls));
            tokio::spawn(async move {
                let ctx = RequestContext::new();
                cache
                    .call(&ask("2+2?"), &ctx, "g", || {
                        upstream(&calls, Duration::from_secs(1), first_fails)
                    })
                    .await
            })
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn identical_calls_that_miss_at_once_make_one_upstream_call() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut hits = 0;
    for t in spawn_calls(&cache, &calls, 8, false) {
        let r = t.await.unwrap().unwrap();
        assert_eq!(text_of(&r), "answer 0", "every caller gets the one answer");
        hits += usize::from(r.cache_hit().is_some());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one upstream call");
    assert_eq!(
        hits, 7,
        "the seven that waited are answered from the exact tier"
    );
    let s = cache.snapshot();
    assert_eq!((s.coalesced, s.exact_misses, s.stores), (7, 8, 1));
    let mut text = String::new();
    cache.render_prometheus("c", &mut text);
    assert!(text.contains("infermux_cache_coalesced_total{cache=\"c\"} 7"));
}

#[tokio::test(start_paused = true)]
async fn without_coalescing_each_call_goes() {
    let cache = Cache::new(CacheConfig::default().with_coalescing(false)).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    for t in spawn_calls(&cache, &calls, 8, false) {
        assert!(t.await.unwrap().unwrap().cache_hit().is_none());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 8);
    assert_eq!(cache.snapshot().coalesced, 0);
}

/// The first call's error is its own (its deadline, its key): the waiting calls each go on
/// their own, at once, and are answered.
#[tokio::test(start_paused = true)]
async fn after_a_failed_call_the_waiting_calls_go_on_their_own() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let started = tokio::time::Instant::now();
    let results: Vec<_> = futures_util::future::join_all(spawn_calls(&cache, &calls, 8, true))
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(failed.len(), 1, "only the first call failed: {failed:?}");
    assert_eq!(failed[0].kind(), ErrorKind::Server);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        8,
        "the first, then each waiting one"
    );
    assert_eq!(cache.snapshot().coalesced, 0);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2),
        "the waiting calls went together once the first failed, not one after another"
    );
}

/// A call whose caller gave up (its future dropped) is taken over by one of the calls that
/// waited for it; the others wait for that one.
#[tokio::test(start_paused = true)]
async fn an_abandoned_call_is_taken_over_by_one_waiting_call() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let first = spawn_calls(&cache, &calls, 1, false).remove(0);
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let waiting = spawn_calls(&cache, &calls, 7, false);
    // (every task parked: the seven wait for the first)
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    let mut hits = 0;
    for t in waiting {
        let r = t.await.unwrap().unwrap();
        assert_eq!(
            text_of(&r),
            "answer 1",
            "the call that took over answers them all"
        );
        hits += usize::from(r.cache_hit().is_some());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!((hits, cache.snapshot().coalesced), (6, 6));
}

/// A waiting call keeps to its own deadline: past it, it goes on its own (and its own call,
/// with no time left, ends as it would have alone; here the test's upstream answers anyway).
#[tokio::test(start_paused = true)]
async fn a_waiting_call_keeps_to_its_own_deadline() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let slow = {
        let (cache, calls) = (cache.clone(), Arc::clone(&calls));
        tokio::spawn(async move {
            cache
                .call(&ask("2+2?"), &RequestContext::new(), "g", || {
                    upstream(&calls, Duration::from_secs(60), false)
                })
                .await
        })
    };
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let started = tokio::time::Instant::now();
    let ctx = RequestContext::new().with_timeout(Duration::from_millis(200));
    let r = cache
        .call(&ask("2+2?"), &ctx, "g", || async { Ok(answer("my own")) })
        .await
        .unwrap();
    assert_eq!(text_of(&r), "my own");
    assert!(r.cache_hit().is_none());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(199) && waited < Duration::from_secs(1),
        "{waited:?}"
    );
    slow.abort();
}

/// An answer the store refuses (here a fallback group's, which answers another group's
/// request) is not handed to the waiting calls: each makes its own.
#[tokio::test(start_paused = true)]
async fn an_answer_the_store_refuses_is_not_handed_to_the_waiting_calls() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (cache, calls) = (cache.clone(), Arc::clone(&calls));
            tokio::spawn(async move {
                cache
                    .call(&ask("2+2?"), &RequestContext::new(), "g", || async {
                        let mut r = upstream(&calls, Duration::from_secs(1), false).await?;
                        let mut served = Served::new("other", "d", EndpointId::new("e"), "m");
                        served.fallback = Some(FallbackTaken::new("g", ErrorKind::Server, 1));
                        r.set_served(served);
                        Ok(r)
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().unwrap().cache_hit().is_none());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(cache.snapshot().stores, 0);
}

/// The same request from two tenants (or for two groups) is two calls, at once or not.
#[tokio::test(start_paused = true)]
async fn calls_of_two_tenants_or_groups_do_not_wait_for_each_other() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let one = |tenant: &'static str, group: &'static str| {
        let (cache, calls) = (cache.clone(), Arc::clone(&calls));
        tokio::spawn(async move {
            let ctx = RequestContext::new().with_tenant(tenant);
            cache
                .call(&ask("2+2?"), &ctx, group, || {
                    upstream(&calls, Duration::from_secs(1), false)
                })
                .await
        })
    };
    let tasks = [one("a", "g"), one("b", "g"), one("a", "h"), one("a", "g")];
    let mut texts = Vec::new();
    for t in tasks {
        texts.push(text_of(&t.await.unwrap().unwrap()));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3, "{texts:?}");
    assert_eq!(texts[3], texts[0], "only the same tenant and group waited");
    assert_eq!(cache.snapshot().coalesced, 1);
}

/// A call of a higher priority than the call in flight does not wait for it (that one may be
/// queued behind calls the higher one would pass): it makes its own call, and later identical
/// calls wait for that one.
#[tokio::test(start_paused = true)]
async fn a_call_of_higher_priority_does_not_wait_for_a_lower_one() {
    use infermux_core::Priority;
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let spawn = |priority: Priority, took: Duration| {
        let (cache, calls) = (cache.clone(), Arc::clone(&calls));
        tokio::spawn(async move {
            let ctx = RequestContext::new().with_priority(priority);
            let started = tokio::time::Instant::now();
            let r = cache
                .call(&ask("2+2?"), &ctx, "g", || upstream(&calls, took, false))
                .await;
            (r, started.elapsed())
        })
    };
    let low = spawn(Priority::Low, Duration::from_secs(60));
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let high = spawn(Priority::High, Duration::from_secs(1));
    while calls.load(Ordering::SeqCst) == 1 {
        tokio::task::yield_now().await;
    }
    // a Normal call now waits for the High one, not the Low one
    let normal = spawn(Priority::Normal, Duration::from_secs(30));
    let (r, took) = high.await.unwrap();
    assert_eq!(
        (text_of(&r.unwrap()), took),
        ("answer 1".to_owned(), Duration::from_secs(1))
    );
    let (r, took) = normal.await.unwrap();
    let r = r.unwrap();
    assert_eq!(
        text_of(&r),
        "answer 1",
        "answered by the High call's flight"
    );
    assert!(r.cache_hit().is_some());
    assert!(took <= Duration::from_secs(1), "{took:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    low.abort();
}
