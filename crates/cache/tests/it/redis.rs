//! The Redis store (feature `redis`): two OS processes share one cache, entries survive a
//! restart, and a Redis that does not answer is a counted miss, never a failed call.
//!
//! The shared Redis comes from `INFERMUX_REDIS_URL` (`.ci/run` starts one); without it the
//! test that needs it is skipped visibly (and fails under `INFERMUX_REQUIRE_SERVERS=1`).
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use infermux_cache::{Cache, CacheConfig, RedisStore, SemanticConfig};
use infermux_core::{CacheTier, RequestContext};
use infermux_testkit::server_url;

use crate::support::{CosineVerifier, WordsEmbedder, answer, ask, text_of};

/// Marks a child run of [`child`]; its value is the mode (`store` or `lookup`).
const CHILD: &str = "INFERMUX_CACHE_REDIS_CHILD";

/// A prefix no other run shares (the process id and the time).
fn fresh_prefix(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{}-{nanos}", std::process::id())
}

fn cache(url: &str, prefix: &str) -> Cache {
    Cache::new(CacheConfig::default())
        .unwrap()
        .with_semantic(
            Arc::new(WordsEmbedder::default()),
            Arc::new(CosineVerifier(0.8)),
            SemanticConfig::default(),
        )
        .with_redis(
            RedisStore::new(url, prefix)
                .unwrap()
                .with_timeout(std::time::Duration::from_secs(2)),
        )
}

/// Not a test of its own: the body of a child process (run by the test below with `CHILD`
/// set); without `CHILD` it returns at once.
#[tokio::test]
async fn child() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let url = std::env::var("INFERMUX_CACHE_CHILD_REDIS").unwrap();
    let prefix = std::env::var("INFERMUX_CACHE_CHILD_PREFIX").unwrap();
    let c = cache(&url, &prefix);
    let ctx = RequestContext::new().with_tenant("t");
    match mode.as_str() {
        "store" => {
            c.store(
                &ask("what is the capital of france"),
                &ctx,
                "g",
                &answer("Paris"),
            )
            .await;
            let s = c.snapshot();
            assert_eq!(
                (s.stores, s.semantic_stores, s.store_errors),
                (1, 1, 0),
                "{s:?}"
            );
            println!("child-result stored");
        }
        "lookup" => {
            let exact = c
                .lookup(&ask("what is the capital of france"), &ctx, "g")
                .await;
            let semantic = c
                .lookup(&ask("France: the capital of, what is"), &ctx, "g")
                .await;
            let tier = |r: &Option<infermux_core::Response>| match r {
                Some(r) if text_of(r) == "Paris" => r
                    .cache_hit()
                    .map_or("none".to_owned(), |h| h.tier.to_string()),
                _ => "miss".to_owned(),
            };
            println!(
                "child-result exact={} semantic={}",
                tier(&exact),
                tier(&semantic)
            );
        }
        other => panic!("unknown child mode {other}"),
    }
}

async fn run_child(mode: &str, url: &str, prefix: &str) -> String {
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["redis::child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, mode)
        .env("INFERMUX_CACHE_CHILD_REDIS", url)
        .env("INFERMUX_CACHE_CHILD_PREFIX", prefix)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child {mode} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split_once("child-result ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("child {mode} reported nothing: {stdout}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_cache_and_entries_survive_a_restart() {
    let Some(url) = server_url("INFERMUX_REDIS_URL") else {
        return;
    };
    let prefix = fresh_prefix("test");
    let here = cache(&url, &prefix);
    let ctx = RequestContext::new().with_tenant("t");
    assert!(
        here.lookup(&ask("what is the capital of france"), &ctx, "g")
            .await
            .is_none()
    );
    // one process stores and exits
    assert_eq!(run_child("store", &url, &prefix).await, "stored");
    // this process (alive all along) finds it, exactly and semantically
    let hit = here
        .lookup(&ask("what is the capital of france"), &ctx, "g")
        .await
        .unwrap();
    assert_eq!(hit.cache_hit().unwrap().tier, CacheTier::Exact);
    let hit = here
        .lookup(&ask("France: the capital of, what is"), &ctx, "g")
        .await
        .unwrap();
    assert_eq!(hit.cache_hit().unwrap().tier, CacheTier::Semantic);
    // a process started after the storing one ended (a restart) finds both
    assert_eq!(
        run_child("lookup", &url, &prefix).await,
        "exact=exact semantic=semantic"
    );
    // another tenant does not
    assert!(
        here.lookup(
            &ask("what is the capital of france"),
            &RequestContext::new(),
            "g"
        )
        .await
        .is_none()
    );
}

#[tokio::test]
async fn a_redis_that_does_not_answer_is_a_counted_miss() {
    // a port nobody listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = cache(&format!("redis://127.0.0.1:{port}"), "down");
    let ctx = RequestContext::new();
    let r = c
        .call(&ask("q"), &ctx, "g", || async { Ok(answer("a")) })
        .await
        .unwrap();
    assert_eq!(text_of(&r), "a");
    assert!(c.lookup(&ask("q"), &ctx, "g").await.is_none());
    let s = c.snapshot();
    assert!(s.store_errors >= 3, "{s:?}");
    assert_eq!(s.stores, 0);
}

/// A TTL of `Duration::MAX` is kept in Redis (as a century): before, `PX` of `u64::MAX` was
/// refused and every store counted as an error.
#[tokio::test]
async fn a_ttl_of_duration_max_is_stored_in_redis() {
    let Some(url) = server_url("INFERMUX_REDIS_URL") else {
        return;
    };
    let prefix = fresh_prefix("ttl-max");
    let c = Cache::new(CacheConfig::new(std::time::Duration::MAX, 10).unwrap())
        .unwrap()
        .with_semantic(
            Arc::new(WordsEmbedder::default()),
            Arc::new(CosineVerifier(0.8)),
            SemanticConfig::default()
                .with_ttl(std::time::Duration::MAX)
                .unwrap(),
        )
        .with_redis(
            RedisStore::new(&url, &prefix)
                .unwrap()
                .with_timeout(std::time::Duration::from_secs(2)),
        );
    let ctx = RequestContext::new();
    c.store(
        &ask("what is the capital of france"),
        &ctx,
        "g",
        &answer("Paris"),
    )
    .await;
    let s = c.snapshot();
    assert_eq!((s.store_errors, s.stores), (0, 1), "{s:?}");
    let hit = c
        .lookup(&ask("what is the capital of france"), &ctx, "g")
        .await
        .unwrap();
    assert_eq!(text_of(&hit), "Paris");
}

/// A Redis whose connection takes longer to set up than one call's timeout still connects:
/// the attempt is not cancelled with the call that started it. Before, each call's timeout
/// cut its own attempt short and the next began again, so the cache never reached a Redis
/// more than about half the timeout away (here a second connection was accepted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_slower_to_connect_than_the_call_timeout_still_connects() {
    let Some(url) = server_url("INFERMUX_REDIS_URL") else {
        return;
    };
    let addr = url.trim_start_matches("redis://");
    let addr = addr.rsplit_once('@').map_or(addr, |(_, r)| r);
    let addr = addr.split('/').next().unwrap_or(addr);
    let relay =
        infermux_testkit::helpers::SlowRelay::start(addr, std::time::Duration::from_millis(300))
            .await
            .unwrap();
    let relayed = format!("redis://{}", relay.addr);
    let prefix = fresh_prefix("far");
    let store = RedisStore::new(&relayed, &prefix)
        .unwrap()
        .with_timeout(std::time::Duration::from_millis(50));
    let c = Cache::new(CacheConfig::default())
        .unwrap()
        .with_redis(store.clone());
    let ctx = RequestContext::new();
    assert!(
        c.lookup(&ask("q"), &ctx, "g").await.is_none(),
        "not within 50 ms"
    );
    // a clone of the store shares its connection: with more patience it waits for the
    // attempt under way
    let patient = Cache::new(CacheConfig::default())
        .unwrap()
        .with_redis(store.with_timeout(std::time::Duration::from_secs(10)));
    patient.store(&ask("q"), &ctx, "g", &answer("a")).await;
    assert_eq!(relay.accepted(), 1, "one attempt, never cut short");
    assert_eq!(patient.snapshot().stores, 1, "{:?}", patient.snapshot());
}

/// Deletes every key under `prefix` (what a `FLUSHDB`, a restart without persistence or an
/// eviction does to them), or only its sequence counter.
async fn lose(url: &str, prefix: &str, only_the_counter: bool) {
    use redis::AsyncCommands;
    let mut c = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = if only_the_counter {
        vec![format!("infermux:cache:{{{prefix}}}:seq")]
    } else {
        c.keys(format!("infermux:cache:{{{prefix}}}:*"))
            .await
            .unwrap()
    };
    assert!(!keys.is_empty());
    let _: () = c.del(keys).await.unwrap();
}

/// Another process's semantic records reach this one after Redis lost its keys: the whole
/// prefix (numbering begins again, below or past the last number this process read), or only
/// the counter. Before, this process skipped every new record until a global counter climbed
/// past the old numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantic_records_after_redis_lost_its_keys_still_reach_other_processes() {
    let Some(url) = server_url("INFERMUX_REDIS_URL") else {
        return;
    };
    let prefix = fresh_prefix("test-lost");
    let (here, there) = (cache(&url, &prefix), cache(&url, &prefix));
    let ctx = RequestContext::new().with_tenant("t");
    let semantic = |r: Option<infermux_core::Response>| {
        r.and_then(|r| r.cache_hit().map(|h| (text_of(&r), h.tier)))
    };
    for q in [
        "one two",
        "three four",
        "five six",
        "seven eight",
        "nine ten",
    ] {
        there.store(&ask(q), &ctx, "g", &answer(q)).await;
    }
    // this process reads up to the fifth record
    assert_eq!(
        semantic(here.lookup(&ask("ten nine"), &ctx, "g").await),
        Some(("nine ten".to_owned(), CacheTier::Semantic))
    );
    for (only_the_counter, q, paraphrase) in [
        (false, "who wrote hamlet", "hamlet: who wrote"),
        (true, "where is lima", "lima, where is"),
    ] {
        lose(&url, &prefix, only_the_counter).await;
        there.store(&ask(q), &ctx, "g", &answer(q)).await;
        assert_eq!(
            semantic(here.lookup(&ask(paraphrase), &ctx, "g").await),
            Some((q.to_owned(), CacheTier::Semantic)),
            "after losing {}",
            if only_the_counter {
                "the counter"
            } else {
                "every key"
            }
        );
    }
    // every key lost again, and more records written than this process had read: numbers
    // past its last one do not hide the new namespace's first records
    lose(&url, &prefix, false).await;
    for q in ["red blue", "green yellow", "black white", "up down"] {
        there.store(&ask(q), &ctx, "g", &answer(q)).await;
    }
    assert_eq!(
        semantic(here.lookup(&ask("blue red"), &ctx, "g").await),
        Some(("red blue".to_owned(), CacheTier::Semantic)),
        "after losing every key a second time"
    );
    assert_eq!(here.snapshot().store_errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_far_behind_catches_up_in_bounded_replies() {
    let Some(url) = server_url("INFERMUX_REDIS_URL") else {
        return;
    };
    let prefix = fresh_prefix("test-behind");
    let (writer, reader) = (cache(&url, &prefix), cache(&url, &prefix));
    let ctx = RequestContext::new();
    // more records than one reply carries (256), in one namespace
    for i in 0..700 {
        let q = format!("question number w{i} about topic t{i}");
        writer.store(&ask(&q), &ctx, "g", &answer(&q)).await;
    }
    // a fresh process finds the newest one: several bounded replies in one lookup
    let hit = reader
        .lookup(&ask("about topic t699: question number w699"), &ctx, "g")
        .await
        .expect("the newest record, past the first replies");
    assert_eq!(text_of(&hit), "question number w699 about topic t699");
    assert_eq!(reader.snapshot().store_errors, 0);
}

/// A connection the network stopped carrying (no error ever closes it) is given up after a
/// few unanswered calls in a row over a second: the next call connects afresh and finds what
/// another process stored meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_connection_is_made_again_after_unanswered_calls() {
    let Some(url) = server_url("INFERMUX_REDIS_URL") else {
        return;
    };
    let target = infermux_testkit::helpers::redis_host_port(&url);
    let relay = infermux_testkit::helpers::FreezableRelay::start(&target)
        .await
        .unwrap();
    let via = format!("redis://{}", relay.addr);
    let prefix = fresh_prefix("blackhole");
    let exact = |url: &str| {
        Cache::new(CacheConfig::default()).unwrap().with_redis(
            RedisStore::new(url, &prefix)
                .unwrap()
                .with_timeout(std::time::Duration::from_millis(200)),
        )
    };
    let ctx = RequestContext::new().with_tenant("t");
    let question = ask("what is the capital of france");
    let here = exact(&via);
    assert!(here.lookup(&question, &ctx, "g").await.is_none());
    assert_eq!(relay.accepted(), 1, "connected through the relay");
    relay.freeze();
    // another process stores the answer (its connection is a fresh one)
    let there = exact(&url);
    there.store(&question, &ctx, "g", &answer("Paris")).await;
    // (three unanswered calls over at least a second: a dozen lookups of 200 ms)
    let mut found = None;
    for _ in 0..12 {
        if let Some(r) = here.lookup(&question, &ctx, "g").await {
            found = Some(r);
            break;
        }
    }
    let found = found.expect("never reached Redis again after the freeze");
    assert_eq!(text_of(&found), "Paris");
    assert!(relay.accepted() >= 2, "a fresh connection was made");
}

/// A record of another vector length than its namespace's (corrupt, or written by something
/// else) folded in first does not make this process drop the good ones: before, it set the
/// index's dimension and every good record was refused, every lookup a miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_of_another_length_read_first_is_skipped() {
    use redis::AsyncCommands;
    let Some(url) = server_url("INFERMUX_REDIS_URL") else {
        return;
    };
    let prefix = fresh_prefix("test-dim");
    let writer = cache(&url, &prefix);
    let ctx = RequestContext::new().with_tenant("t");
    writer
        .store(&ask("who wrote hamlet"), &ctx, "g", &answer("Shakespeare"))
        .await;
    // the namespace's record, moved to second place behind a copy with a 3-float vector
    let mut c = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = c
        .keys(format!("infermux:cache:{{{prefix}}}:s:*"))
        .await
        .unwrap();
    let ns = keys
        .into_iter()
        .find(|k| !k.ends_with(":generation"))
        .expect("the namespace's key");
    let members: Vec<String> = c.zrange(&ns, 0, -1).await.unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    let (_, rest) = members[0].split_once(':').unwrap();
    let (stored, record) = rest.split_once(':').unwrap();
    let mut bad: serde_json::Value = serde_json::from_str(record).unwrap();
    bad["vector"] = serde_json::json!([1.0, 2.0, 3.0]);
    let _: () = c.zrem(&ns, &members[0]).await.unwrap();
    let _: () = c
        .zadd(&ns, format!("{:020}:{stored}:{bad}", 1), 1)
        .await
        .unwrap();
    let _: () = c
        .zadd(&ns, format!("{:020}:{stored}:{record}", 2), 2)
        .await
        .unwrap();
    // a fresh process reads both and answers from the good one
    let reader = cache(&url, &prefix);
    let hit = reader
        .lookup(&ask("hamlet: who wrote"), &ctx, "g")
        .await
        .expect("a semantic hit from the good record");
    assert_eq!(text_of(&hit), "Shakespeare");
    assert_eq!(hit.cache_hit().unwrap().tier, CacheTier::Semantic);
}

/// An exact entry in Redis that does not read (corrupt, another version's) is replaced by the
/// next answer: before, the answer was stored with `SET NX`, which did nothing while the bad
/// value lived, and every call went to the provider until it expired. It is replaced, not
/// deleted on sight: a lookup that deleted it raced another process's fresh write, and two
/// versions sharing a Redis deleted each other's answers (see the next test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_entry_that_does_not_read_is_replaced() {
    use redis::AsyncCommands;
    let Some(url) = server_url("INFERMUX_REDIS_URL") else {
        return;
    };
    let prefix = fresh_prefix("test-garbage");
    // the exact tier only (a semantic hit would answer past the bad entry)
    let c = Cache::new(CacheConfig::default()).unwrap().with_redis(
        RedisStore::new(&url, &prefix)
            .unwrap()
            .with_timeout(std::time::Duration::from_secs(2)),
    );
    let ctx = RequestContext::new().with_tenant("t");
    let req = ask("what is two plus two");
    c.store(&req, &ctx, "g", &answer("4")).await;
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = conn
        .keys(format!("infermux:cache:{{{prefix}}}:x:*"))
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let _: () = conn.set(&keys[0], "garbage").await.unwrap();
    let calls = std::sync::atomic::AtomicU32::new(0);
    for _ in 0..2 {
        let r = c
            .call(&req, &ctx, "g", || async {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(answer("4"))
            })
            .await
            .unwrap();
        assert_eq!(text_of(&r), "4");
    }
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the second call was a hit"
    );
}

/// A lookup that finds a value it does not read (a newer version's entry) leaves it where it
/// is: the other version keeps its answer. Before, the lookup deleted it on sight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_does_not_delete_an_entry_it_does_not_read() {
    use redis::AsyncCommands;
    let Some(url) = server_url("INFERMUX_REDIS_URL") else {
        return;
    };
    let prefix = fresh_prefix("test-newer");
    let c = Cache::new(CacheConfig::default()).unwrap().with_redis(
        RedisStore::new(&url, &prefix)
            .unwrap()
            .with_timeout(std::time::Duration::from_secs(2)),
    );
    let ctx = RequestContext::new().with_tenant("t");
    let req = ask("what is three plus three");
    c.store(&req, &ctx, "g", &answer("6")).await;
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = conn
        .keys(format!("infermux:cache:{{{prefix}}}:x:*"))
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let newer = r#"{"from":"a newer version","answer":{"type":"future_event"}}"#;
    let _: () = conn.set(&keys[0], newer).await.unwrap();
    assert!(
        c.lookup(&req, &ctx, "g").await.is_none(),
        "not read: a miss"
    );
    let still: Option<String> = conn.get(&keys[0]).await.unwrap();
    assert_eq!(still.as_deref(), Some(newer), "left in place");
}

/// Identical calls that miss at once on a Redis-backed cache make one upstream call: the
/// others are answered by what it stored in Redis. A current-thread runtime: the calls run
/// only at their awaits, so once every one has counted its miss it is waiting for the first.
#[tokio::test(flavor = "current_thread")]
async fn identical_calls_that_miss_at_once_make_one_call_through_redis() {
    let Some(url) = server_url("INFERMUX_REDIS_URL") else {
        return;
    };
    let c = Cache::new(CacheConfig::default()).unwrap().with_redis(
        RedisStore::new(&url, &fresh_prefix("coalesce"))
            .unwrap()
            .with_timeout(std::time::Duration::from_secs(2)),
    );
    let n = 6;
    let (calls, hits) = identical_calls_at_once(&c, n).await;
    let s = c.snapshot();
    assert_eq!(calls, 1, "{s:?}");
    assert_eq!((hits, s.coalesced, s.stores), (n as usize - 1, n - 1, 1));
}

/// With Redis down, identical calls that miss at once still make one upstream call: the
/// waiting calls are answered with the entry the first one stored, in hand. Before, they
/// read Redis again after the wait, missed, and each made its own call after the first's
/// (twice the latency, and as many calls as callers).
#[tokio::test(flavor = "current_thread")]
async fn with_redis_down_identical_calls_still_make_one_upstream_call() {
    // a port nothing listens on: every Redis call fails at once
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = Cache::new(CacheConfig::default()).unwrap().with_redis(
        RedisStore::new(&format!("redis://127.0.0.1:{port}"), "down")
            .unwrap()
            .with_timeout(std::time::Duration::from_secs(2)),
    );
    let n = 5;
    let (calls, hits) = identical_calls_at_once(&c, n).await;
    let s = c.snapshot();
    assert_eq!(calls, 1, "{s:?}");
    assert_eq!((hits, s.coalesced), (n as usize - 1, n - 1), "{s:?}");
    assert!(s.store_errors >= 1, "Redis was down: {s:?}");
}

/// `n` identical calls at once, the upstream answering once every one has missed (the others
/// wait for the first): how many upstream calls were made, and how many answers were hits.
async fn identical_calls_at_once(c: &Cache, n: u64) -> (usize, usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (c, calls) = (c.clone(), Arc::clone(&calls));
            tokio::spawn(async move {
                let inner = || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    while c.snapshot().exact_misses < n {
                        tokio::task::yield_now().await;
                    }
                    Ok(answer("Paris"))
                };
                c.call(
                    &ask("capital of france?"),
                    &RequestContext::new(),
                    "g",
                    inner,
                )
                .await
            })
        })
        .collect();
    let mut hits = 0;
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert_eq!(text_of(&r), "Paris");
        hits += usize::from(r.cache_hit().is_some());
    }
    (calls.load(Ordering::SeqCst), hits)
}

/// A process whose clock runs ahead (by more than the TTL) finds another's fresh answer
/// expired: it misses and does not delete it (it did: two such processes kept deleting each
/// other's answers); the answer it then gets takes that one's place (kept in its way, it
/// missed until Redis expired the other), and every process reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_whose_clock_runs_ahead_does_not_delete_the_others_answers() {
    let Some(url) = server_url("INFERMUX_REDIS_URL") else {
        return;
    };
    let prefix = fresh_prefix("skew");
    let store = || {
        RedisStore::new(&url, &prefix)
            .unwrap()
            .with_timeout(std::time::Duration::from_secs(2))
    };
    let config = || CacheConfig::new(std::time::Duration::from_secs(60), 100).unwrap();
    let writer = Cache::new(config()).unwrap().with_redis(store());
    let ahead = infermux_core::ManualClock::new();
    let skewed = Cache::new(config())
        .unwrap()
        .with_clock(Arc::new(ahead.clone()))
        .with_redis(store());
    ahead.advance(std::time::Duration::from_secs(120));
    let ctx = RequestContext::new();
    let q = || ask("capital of france?");
    writer.store(&q(), &ctx, "g", &answer("Paris")).await;
    assert!(
        skewed.lookup(&q(), &ctx, "g").await.is_none(),
        "two minutes ahead, the answer reads as expired"
    );
    assert_eq!(skewed.snapshot().expired, 1);
    let hit = writer.lookup(&q(), &ctx, "g").await;
    assert_eq!(
        hit.as_ref().map(text_of).as_deref(),
        Some("Paris"),
        "the writer's answer is still there"
    );
    // the skewed process's own call: a miss, then its answer in the old one's place
    let own = skewed
        .call(&q(), &ctx, "g", || async { Ok(answer("Paris, France")) })
        .await
        .unwrap();
    assert!(own.cache_hit().is_none());
    for (who, cache) in [("skewed", &skewed), ("writer", &writer)] {
        let hit = cache.lookup(&q(), &ctx, "g").await;
        assert_eq!(
            hit.as_ref().map(text_of).as_deref(),
            Some("Paris, France"),
            "{who} reads the answer that replaced it"
        );
    }
}
