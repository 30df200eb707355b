//! The exact tier: canonical keys, every namespace dimension, TTL, eviction, errors.

use std::sync::Arc;
use std::time::Duration;

use infermux_cache::{Cache, CacheConfig, CacheKey};
use infermux_core::{
    CacheTier, Error, ErrorKind, ManualClock, Message, Request, RequestContext, Tool,
};
use serde_json::json;

use crate::support::{answer, ask, chat, text_of};

#[tokio::test]
async fn byte_identical_requests_hit() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let ctx = RequestContext::new();
    let wire = serde_json::to_string(&ask("What is 2+2?")).unwrap();
    let a: Request = serde_json::from_str(&wire).unwrap();
    let b: Request = serde_json::from_str(&wire).unwrap();
    cache.store(&a, &ctx, "g", &answer("4")).await;
    let hit = cache.lookup(&b, &RequestContext::new(), "g").await.unwrap();
    assert_eq!(text_of(&hit), "4");
    assert_eq!(hit.cache_hit().unwrap().tier, CacheTier::Exact);
    let s = cache.snapshot();
    assert_eq!((s.exact_hits, s.stores), (1, 1));
}

/// A hit says the cache served it: it does not carry who served the stored answer (before,
/// a memory-tier hit reported the first call's deployment, key and attempts as its own; a
/// Redis-tier hit reported none).
#[tokio::test]
async fn a_hit_does_not_carry_who_served_the_stored_answer() {
    use infermux_core::{EndpointId, Served};
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let ctx = RequestContext::new();
    let req = ask("What is 2+2?");
    let mut first = answer("4");
    first.set_served(Served::new("chat", "sim-a", EndpointId::new("sim-a"), "m"));
    cache.store(&req, &ctx, "g", &first).await;
    assert!(first.served().is_some(), "the caller's own answer keeps it");
    let hit = cache.lookup(&req, &ctx, "g").await.unwrap();
    assert_eq!(text_of(&hit), "4");
    assert!(hit.cache_hit().is_some());
    assert!(hit.served().is_none(), "{:?}", hit.served());
}

#[tokio::test]
async fn key_order_different_requests_hit() {
    // the same request written with its keys (and its nested keys) in another order
    let a = r#"{"operation":"chat","request":{"model":"m","temperature":0.0,
        "messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],
        "extra":{"a":1,"b":{"x":1,"y":2}}}}"#;
    let b = r#"{"request":{"extra":{"b":{"y":2,"x":1},"a":1},
        "messages":[{"content":[{"text":"hi","type":"text"}],"role":"user"}],
        "temperature":0.0,"model":"m"},"operation":"chat"}"#;
    let a: Request = serde_json::from_str(a).unwrap();
    let b: Request = serde_json::from_str(b).unwrap();
    let ctx = RequestContext::new();
    assert_eq!(
        CacheKey::exact(&a, &ctx, "g"),
        CacheKey::exact(&b, &ctx, "g")
    );
    let cache = Cache::new(CacheConfig::default()).unwrap();
    cache.store(&a, &ctx, "g", &answer("hello")).await;
    assert!(cache.lookup(&b, &ctx, "g").await.is_some());
}

#[test]
fn the_key_is_stable_across_processes_and_versions() {
    // a fixed request's key, written down: a change to the canonical form or the hash shows
    // here (entries in Redis are shared by processes of different builds)
    let req = chat("m", vec![Message::user("hi")]);
    let key = CacheKey::exact(&req, &RequestContext::new().with_tenant("t"), "g").unwrap();
    assert_eq!(key.to_string(), include_str!("stable_key.txt").trim());
}

/// Each request differs from the base in one thing that changes the answer.
pub(crate) fn variants() -> Vec<(&'static str, Request, RequestContext, &'static str)> {
    use infermux_core::ChatRequest;
    let base = || ChatRequest::new("m", vec![Message::system("S"), Message::user("Q")]);
    let ctx = RequestContext::new;
    let mut v = vec![("base", Request::Chat(base()), ctx(), "g")];
    v.push(("group", Request::Chat(base()), ctx(), "g2"));
    v.push((
        "tenant",
        Request::Chat(base()),
        ctx().with_tenant("t2"),
        "g",
    ));
    let mut r = base();
    r.model = "m2".into();
    v.push(("model", Request::Chat(r), ctx(), "g"));
    v.push((
        "temperature",
        Request::Chat(base().with_temperature(0.5)),
        ctx(),
        "g",
    ));
    v.push((
        "max_tokens",
        Request::Chat(base().with_max_tokens(5)),
        ctx(),
        "g",
    ));
    v.push(("seed", Request::Chat(base().with_seed(7)), ctx(), "g"));
    v.push((
        "stop",
        Request::Chat(base().with_stop(vec!["x".into()])),
        ctx(),
        "g",
    ));
    v.push((
        "extra",
        Request::Chat(base().with_extra("k", json!(1))),
        ctx(),
        "g",
    ));
    let mut r = base();
    r.messages[0] = Message::system("S2");
    v.push(("system", Request::Chat(r), ctx(), "g"));
    v.push((
        "tools",
        Request::Chat(base().with_tools(vec![Tool::new("f", "d", json!({"type": "object"}))])),
        ctx(),
        "g",
    ));
    let mut r = base();
    r.messages.insert(1, Message::user("earlier"));
    r.messages.insert(2, Message::assistant("reply"));
    v.push(("earlier turns", Request::Chat(r), ctx(), "g"));
    let mut r = base();
    r.messages[1] = Message::user("Q2");
    v.push(("last turn", Request::Chat(r), ctx(), "g"));
    v
}

#[tokio::test]
async fn every_namespace_dimension_misses() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let all = variants();
    let (_, base, ctx, ns) = &all[0];
    cache.store(base, ctx, ns, &answer("base")).await;
    assert!(cache.lookup(base, ctx, ns).await.is_some());
    for (what, req, ctx, ns) in &all[1..] {
        assert!(
            cache.lookup(req, ctx, ns).await.is_none(),
            "a request differing in {what} was answered from the base's entry"
        );
    }
}

#[tokio::test]
async fn entries_expire_after_the_ttl_on_an_explicit_clock() {
    let clock = ManualClock::new();
    let cache = Cache::new(CacheConfig::new(Duration::from_secs(60), 100).unwrap())
        .unwrap()
        .with_clock(Arc::new(clock.clone()));
    let ctx = RequestContext::new();
    cache.store(&ask("q"), &ctx, "g", &answer("a")).await;
    clock.advance(Duration::from_secs(59));
    let hit = cache.lookup(&ask("q"), &ctx, "g").await.unwrap();
    assert_eq!(hit.cache_hit().unwrap().age, Duration::from_secs(59));
    clock.advance(Duration::from_secs(1));
    assert!(cache.lookup(&ask("q"), &ctx, "g").await.is_none());
    assert_eq!(cache.snapshot().expired, 1);
}

#[tokio::test]
async fn evictions_past_the_size_bound_are_counted() {
    let cache = Cache::new(CacheConfig::new(Duration::from_secs(60), 10).unwrap()).unwrap();
    let ctx = RequestContext::new();
    for i in 0..50 {
        cache
            .store(&ask(&format!("q{i}")), &ctx, "g", &answer("a"))
            .await;
    }
    let s = cache.snapshot();
    assert!(s.entries <= 10, "{s:?}");
    assert!(s.evictions + (50 - s.entries) >= 40, "{s:?}");
    assert!(s.evictions >= 1, "{s:?}");
}

/// The in-memory store holds answers within its byte budget: 100 answers of about 20 KiB in
/// a 256 KiB budget leave at most about a dozen, small answers are still bounded by the count,
/// and an answer larger than the whole budget is not kept. Before, only the count bounded it:
/// 10 000 answers of up to 8 MiB each.
#[tokio::test]
async fn the_store_keeps_within_its_byte_budget_and_its_count() {
    let budget = 256 << 10;
    let config = CacheConfig::new(Duration::from_secs(60), 1000)
        .unwrap()
        .with_max_bytes(budget)
        .unwrap();
    let cache = Cache::new(config).unwrap();
    let ctx = RequestContext::new();
    let big = "x".repeat(20 << 10);
    for i in 0..100 {
        cache
            .store(&ask(&format!("big {i}")), &ctx, "g", &answer(&big))
            .await;
    }
    let s = cache.snapshot();
    assert!(s.bytes <= budget, "{s:?}");
    assert!(s.entries >= 1 && s.entries <= 13, "{s:?}");
    assert!(s.evictions >= 80, "{s:?}");
    // an answer over the whole budget is not held
    let huge = "y".repeat(300 << 10);
    cache.store(&ask("huge"), &ctx, "g", &answer(&huge)).await;
    assert!(cache.lookup(&ask("huge"), &ctx, "g").await.is_none());
    assert!(cache.snapshot().bytes <= budget);

    // small answers: the count bounds them (each weighs at least budget / count)
    let config = CacheConfig::new(Duration::from_secs(60), 10)
        .unwrap()
        .with_max_bytes(1 << 30)
        .unwrap();
    let cache = Cache::new(config).unwrap();
    for i in 0..50 {
        cache
            .store(&ask(&format!("q{i}")), &ctx, "g", &answer("a"))
            .await;
    }
    let s = cache.snapshot();
    assert!(s.entries <= 10, "{s:?}");
    assert!(s.bytes <= 1 << 30, "{s:?}");
}

#[tokio::test]
async fn errors_are_never_stored_and_calls_pass_them_through() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let ctx = RequestContext::new();
    let req = ask("q");
    let err = cache
        .call(&req, &ctx, "g", || async {
            Err(Error::new(ErrorKind::Server, "boom"))
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server);
    assert!(cache.lookup(&req, &ctx, "g").await.is_none());
    assert_eq!(cache.snapshot().stores, 0);
    let ok = cache
        .call(&req, &ctx, "g", || async { Ok(answer("a")) })
        .await
        .unwrap();
    assert!(ok.cache_hit().is_none());
    let again = cache
        .call(&req, &ctx, "g", || async {
            panic!("a cached call must not reach the provider")
        })
        .await
        .unwrap();
    assert_eq!(text_of(&again), "a");
}

#[tokio::test]
async fn model_lists_are_not_cached() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    assert!(CacheKey::exact(&Request::Models, &RequestContext::new(), "g").is_none());
    assert!(
        cache
            .lookup(&Request::Models, &RequestContext::new(), "g")
            .await
            .is_none()
    );
}

#[test]
fn metrics_render_as_prometheus_text() {
    let cache = Cache::new(CacheConfig::default()).unwrap();
    let mut out = String::new();
    cache.render_prometheus("a\"b", &mut out);
    assert!(out.contains("infermux_cache_stores_total{cache=\"a\\\"b\"} 0"));
    assert!(out.contains("# TYPE infermux_cache_evictions_total counter"));
    assert!(
        out.contains("infermux_cache_bytes{cache=\"a\\\"b\"} 0"),
        "{out}"
    );
    assert!(out.contains("# TYPE infermux_cache_semantic_bytes gauge"));
}

/// A TTL of `Duration::MAX` ("never expire") builds and serves, exact and semantic: before,
/// moka panicked building the cache (it refuses more than 1000 years).
#[tokio::test]
async fn a_ttl_of_duration_max_means_never_expire_not_a_panic() {
    let cache = Cache::new(CacheConfig::new(Duration::MAX, 10).unwrap())
        .unwrap()
        .with_semantic(
            Arc::new(crate::support::WordsEmbedder::default()),
            Arc::new(crate::support::CosineVerifier(0.8)),
            infermux_cache::SemanticConfig::default()
                .with_ttl(Duration::MAX)
                .unwrap(),
        );
    let ctx = RequestContext::new();
    cache
        .store(&ask("what is two plus two"), &ctx, "g", &answer("4"))
        .await;
    let hit = cache
        .lookup(&ask("what is two plus two"), &ctx, "g")
        .await
        .unwrap();
    assert_eq!(text_of(&hit), "4");
}
