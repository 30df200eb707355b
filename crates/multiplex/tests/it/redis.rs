//! State shared across processes through a real Redis (feature `redis`): limits, cooldowns and
//! removals held together by pools in one process and in two OS processes, and the local
//! fallback when Redis is unreachable or killed mid-run.
//!
//! The shared Redis comes from `INFERMUX_REDIS_URL` (`.ci/run` starts one); without it those
//! tests are skipped visibly (and fail under `INFERMUX_REQUIRE_SERVERS=1`). The kill test
//! starts a private `redis-server` (from `PATH`) so killing it disturbs no other test.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use infermux_core::{ApiKey, EndpointConfig, Error, ErrorKind, RequestContext, SystemClock};
use infermux_multiplex::{MemberSpec, MemberState, MultiPool, PoolConfig, SharedState, Strategy};
use infermux_openai_compat::OpenAiCompat;
use infermux_resilience::queue::QueueConfig;
use infermux_resilience::{AttemptExecutor, CallPolicy};
use infermux_testkit::{FaultPlan, Need, Simulator, server_url, skip};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::stub::{Stub, chat, executor, keyed, ok, policy};

/// The environment variable naming the shared Redis.
const REDIS_ENV: &str = "INFERMUX_REDIS_URL";
/// Marks a child run of [`child_load`]; its value is the child's mode.
const CHILD: &str = "INFERMUX_MUX_REDIS_CHILD";

/// The load test's key limit: 2400 requests a minute, 1 % of it spendable at once, so the
/// pool's GCRA has capacity `B = 24` and refills `r = 2376` a minute (39.6 a second).
const LOAD_RPM: u32 = 2400;
const LOAD_BURST_PERCENT: u8 = 1;
const LOAD_B: f64 = 24.0;
const LOAD_R_PER_S: f64 = 2376.0 / 60.0;
/// The key the load children send (the simulator counts requests by it).
const LOAD_KEY: &str = "sk-hot";

/// A namespace no other run shares (the process id and the time).
fn fresh_namespace(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test-{tag}-{}-{nanos}", std::process::id())
}

fn shared_redis() -> Option<String> {
    server_url(REDIS_ENV)
}

/// A private `redis-server` on a free loopback port, killed on drop.
struct PrivateRedis {
    child: tokio::process::Child,
    url: String,
}

impl PrivateRedis {
    /// Starts one, or skips visibly (fails under `INFERMUX_REQUIRE_SERVERS=1`) when no
    /// `redis-server` is on `PATH`.
    async fn start() -> Option<Self> {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("redis-server"))
                .find(|p| p.is_file())
        });
        let Some(bin) = found else {
            skip(
                Need::Server,
                "no redis-server on PATH (.ci/run installs one)",
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = tokio::process::Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "notice"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
        // ready when it says so
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("Ready to accept connections") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(ready, Ok(true), "the private redis-server came up");
        // keep draining its log so it never blocks on a full pipe
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(PrivateRedis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        })
    }
}

/// The stub pool of the in-process tests: keys `a` and `b` on one endpoint, each limited to
/// `rpm` (burst 50 %), bound to `state` as pool `pool_name`.
fn stub_pool(stub: Arc<Stub>, rpm: u32, state: Option<SharedState>, pool_name: &str) -> MultiPool {
    let exec = executor(stub, 64, None);
    let pool = crate::stub::pool(
        vec![exec],
        vec![keyed(0, "a").with_rpm(rpm), keyed(0, "b").with_rpm(rpm)],
        PoolConfig::new(Strategy::RoundRobin),
    );
    match state {
        Some(s) => pool.with_shared(s, pool_name).unwrap(),
        None => pool,
    }
}

/// Calls granted at once: one attempt each, with a deadline of 200 ms, so the pool refuses
/// at once any call whose key returns later than that.
async fn immediate_calls(pool: &MultiPool, tries: usize) -> usize {
    let policy = policy(1, Duration::from_millis(200));
    let mut granted = 0;
    for _ in 0..tries {
        if policy
            .call(pool, &chat(), &RequestContext::new())
            .await
            .is_ok()
        {
            granted += 1;
        }
    }
    granted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_on_one_redis_hold_one_rpm_limit_together() {
    let Some(url) = shared_redis() else { return };
    let ns = fresh_namespace("limit");
    let stub = Stub::new("limit", |_, _| async { ok() });
    // 60 a minute at 50 %: capacity 30 per key, refilling 1 every 2 s
    let state = SharedState::redis(&url, &ns).unwrap();
    let p1 = stub_pool(stub.clone(), 60, Some(state.clone()), "chat");
    let p2 = stub_pool(stub.clone(), 60, Some(state), "chat");
    let first = immediate_calls(&p1, 100).await;
    let second = immediate_calls(&p2, 100).await;
    // alone, p1 takes both keys' capacity; p2 finds nothing left (a refill of one per key may
    // fall in the run)
    assert!((60..=62).contains(&first), "p1 got {first}");
    assert!(
        second <= 2,
        "p2 got {second} after p1 took the shared capacity"
    );
    assert_eq!(p1.counters().shared_state_fallbacks, 0);
    assert_eq!(p1.counters().shared_state_up, Some(true));
    // p2's refusals come from Redis and show as a local hold
    assert!(
        p2.status()
            .iter()
            .all(|s| matches!(s.state, MemberState::Limited { .. })),
        "{:?}",
        p2.status()
    );
    // the checker fails without shared state: an unbound pool takes the full capacity again
    let p3 = stub_pool(stub, 60, None, "chat");
    assert!(immediate_calls(&p3, 100).await >= 60);
}

/// The shared limiter grants the burst the local one does: at 14 a minute (a burst of 7 a
/// key, a unit of 60 s / 7, not whole in microseconds) both keys take their 7 at once, through
/// Redis as alone. (The script's tolerance was rounded down while its cost was rounded up,
/// refusing the burst-th take by a few microseconds; the time between calls hides that here,
/// so this checks the burst, not that rounding.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_burst_is_the_local_burst_when_a_unit_is_not_whole() {
    let Some(url) = shared_redis() else { return };
    let ns = fresh_namespace("rounding");
    let stub = Stub::new("rounding", |_, _| async { ok() });
    let state = SharedState::redis(&url, &ns).unwrap();
    let shared = stub_pool(stub.clone(), 14, Some(state), "chat");
    assert_eq!(immediate_calls(&shared, 20).await, 14);
    let local = stub_pool(stub, 14, None, "chat");
    assert_eq!(immediate_calls(&local, 20).await, 14);
}

/// Reservations made ahead (`with_prefetch`) are reservations all the same: decisions that
/// take them skip the round trip, and the two pools still hold the one limit together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_made_ahead_answer_without_a_round_trip_and_keep_the_limit() {
    let Some(url) = shared_redis() else { return };
    let ns = fresh_namespace("ahead");
    let stub = Stub::new("ahead", |_, _| async { ok() });
    let state = SharedState::redis(&url, &ns)
        .unwrap()
        .with_prefetch(Duration::from_secs(30));
    let p1 = stub_pool(stub.clone(), 60, Some(state.clone()), "chat");
    let p2 = stub_pool(stub.clone(), 60, Some(state), "chat");
    let first = immediate_calls(&p1, 100).await;
    let second = immediate_calls(&p2, 100).await;
    let ahead = p1.counters().shared_state_ahead;
    // each key's capacity is 30 (a refill of one per key may fall in the run); a reservation
    // made ahead and not taken yet is capacity held back, not extra capacity
    assert!(first + second <= 62, "p1 {first} + p2 {second}");
    assert!(first >= 56, "p1 got {first}");
    assert!(ahead > 0, "no decision took a reservation made ahead");
    assert!(ahead < first as u64, "{ahead} of {first}");
    assert_eq!(p1.counters().shared_state_fallbacks, 0);
    // the check can fail: without shared state the same two pools take twice the capacity
    let p3 = stub_pool(stub.clone(), 60, None, "chat");
    let p4 = stub_pool(stub, 60, None, "chat");
    let unshared = immediate_calls(&p3, 100).await + immediate_calls(&p4, 100).await;
    eprintln!("p1 {first} ({ahead} ahead), p2 {second}; unshared {unshared}");
    assert!(unshared > 62, "{unshared}");
    assert_eq!(p3.counters().shared_state_ahead, 0);
}

/// A reservation made ahead that never expires (`Duration::MAX`) is made and taken, not an
/// overflow that kills the task making it (and turns making them off for the key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_made_ahead_for_ever_are_made_and_taken() {
    let Some(url) = shared_redis() else { return };
    let ns = fresh_namespace("ahead-max");
    let stub = Stub::new("ahead-max", |_, _| async { ok() });
    let state = SharedState::redis(&url, &ns)
        .unwrap()
        .with_prefetch(Duration::MAX);
    let p1 = stub_pool(stub, 60, Some(state), "chat");
    let first = immediate_calls(&p1, 100).await;
    assert!(first >= 56, "p1 got {first}");
    assert!(
        p1.counters().shared_state_ahead > 0,
        "no decision took a reservation made ahead"
    );
}

/// A server's absurd usage report charges the shared limiter at most what a minute admits:
/// another pool on the same Redis finds the key limited for minutes, not centuries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_usage_report_charges_the_shared_limiter_a_minutes_worth_at_most() {
    let Some(url) = shared_redis() else { return };
    let ns = fresh_namespace("absurd");
    let stub = Stub::new("absurd", |_, _| async {
        let mut resp = infermux_core::ChatResponse::new(
            "stub-model",
            infermux_core::Message::assistant("fine"),
        );
        resp.usage = Some(infermux_core::Usage::new(1, u64::MAX - 1));
        Ok(infermux_core::Response::Chat(resp))
    });
    let state = SharedState::redis(&url, &ns).unwrap();
    assert!(state.connect().await, "the shared redis answers");
    let tpm_pool = |stub: Arc<Stub>| {
        crate::stub::pool(
            vec![executor(stub, 8, None)],
            vec![keyed(0, "a").with_tpm(6000)],
            PoolConfig::new(Strategy::RoundRobin),
        )
        .with_shared(state.clone(), "chat")
        .unwrap()
    };
    let p1 = tpm_pool(stub.clone());
    policy(1, Duration::from_secs(5))
        .call(&p1, &chat(), &RequestContext::new())
        .await
        .unwrap();
    // the charge reaches Redis off the call's path: p2 learns it at a refused decision (p2's
    // own answers report plain usage, so a call it makes before the charge lands charges
    // nothing of its own)
    drop(stub);
    let p2 = tpm_pool(Stub::new("absurd", |_, _| async { ok() }));
    let mut tries = 0;
    let until = loop {
        let _ = policy(1, Duration::from_millis(200))
            .call(&p2, &chat(), &RequestContext::new())
            .await;
        if let MemberState::Limited { until } = p2.status()[0].state {
            break until;
        }
        tries += 1;
        assert!(
            tries < 200,
            "p2 never saw the key limited: {:?}",
            p2.status()
        );
    };
    let left = until.saturating_duration_since(Instant::now());
    assert!(left <= Duration::from_secs(180), "limited for {left:?}");
    // and in Redis itself: the key's TPM limiter runs at most a couple of minutes ahead
    let client = ::redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let tat: String = ::redis::cmd("GET")
        .arg(format!("infermux:{{{ns}:chat:a}}:tpm"))
        .query_async(&mut c)
        .await
        .unwrap();
    let (secs, micros): (u64, u64) = ::redis::cmd("TIME").query_async(&mut c).await.unwrap();
    let ahead_us = tat.parse::<f64>().unwrap() - (secs * 1_000_000 + micros) as f64;
    assert!(ahead_us <= 180e6, "Redis's limiter is {ahead_us} µs ahead");
}

/// A connection the network stopped carrying (no error ever closes it) is given up after an
/// unanswered probe: the next probe connects afresh and shared state is up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_connection_is_made_again_after_an_unanswered_probe() {
    let Some(url) = shared_redis() else { return };
    let target = infermux_testkit::helpers::redis_host_port(&url);
    let relay = infermux_testkit::helpers::FreezableRelay::start(&target)
        .await
        .unwrap();
    let state = SharedState::redis(
        &format!("redis://{}", relay.addr),
        &fresh_namespace("blackhole"),
    )
    .unwrap();
    assert!(state.connect().await, "up through the relay");
    assert_eq!(relay.accepted(), 1);
    relay.freeze();
    let mut up = false;
    for _ in 0..5 {
        if state.connect().await {
            up = true;
            break;
        }
    }
    assert!(up, "never up again after the freeze");
    assert!(relay.accepted() >= 2, "a fresh connection was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_in_one_pool_cools_the_key_in_another_pool() {
    let Some(url) = shared_redis() else { return };
    let ns = fresh_namespace("cool");
    let stub = Stub::new("cool", |_, ctx| {
        let alias = ctx.key().map(|k| k.alias().to_owned());
        async move {
            match alias.as_deref() {
                Some("a") => Err(Error::new(ErrorKind::RateLimited, "slow down")
                    .with_status(429)
                    .with_retry_after(Duration::from_secs(30))),
                _ => ok(),
            }
        }
    });
    let state = SharedState::redis(&url, &ns).unwrap();
    assert!(state.connect().await, "the shared redis answers");
    let p1 = stub_pool(stub.clone(), 6000, Some(state.clone()), "chat");
    let p2 = stub_pool(stub.clone(), 6000, Some(state), "chat");
    // p1's first call goes to `a` (round-robin), is throttled, and is retried on `b`
    let called = policy(3, Duration::from_secs(5))
        .call(&p1, &chat(), &RequestContext::new())
        .await
        .unwrap();
    assert_eq!(
        p1.member(called.member).unwrap().key_alias.as_deref(),
        Some("b")
    );
    assert_eq!(stub.seen_by("a").len(), 1);
    // the cooldown reaches Redis off the call's path: p2 learns it at its first pick of `a`
    // (a refusal that holds `a` locally), so `a` never sees a second attempt
    let mut waited = 0;
    while !matches!(p2.status()[0].state, MemberState::Cooling { .. }) {
        policy(3, Duration::from_secs(5))
            .call(&p2, &chat(), &RequestContext::new())
            .await
            .unwrap();
        waited += 1;
        assert!(waited < 200, "p2 never learnt the shared cooldown");
    }
    assert_eq!(
        stub.seen_by("a").len(),
        1,
        "the cooled key saw no second attempt"
    );
    let MemberState::Cooling { until } = p2.status()[0].state else {
        unreachable!()
    };
    // the shared cooldown is the 429's 30 s, less the time since
    let left = until.saturating_duration_since(Instant::now());
    assert!(left > Duration::from_secs(25), "{left:?}");
    assert_eq!(p2.counters().cooldowns, 0, "p2 saw no 429 itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_in_one_pool_removes_the_key_in_another_pool() {
    a_401_shared(Duration::from_secs(3600)).await;
}

/// A removal kept "forever" (`Duration::MAX`) is kept 100 years: before, Redis refused the
/// expiry, every removal failed and the shared state went down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_kept_forever_is_shared_and_redis_stays_up() {
    a_401_shared(Duration::MAX).await;
}

async fn a_401_shared(removal_ttl: Duration) {
    let Some(url) = shared_redis() else { return };
    let ns = fresh_namespace("removal");
    let stub = Stub::new("removal", |_, ctx| {
        let alias = ctx.key().map(|k| k.alias().to_owned());
        async move {
            match alias.as_deref() {
                Some("a") => Err(Error::new(ErrorKind::Auth, "bad key").with_status(401)),
                _ => ok(),
            }
        }
    });
    let state = SharedState::redis(&url, &ns)
        .unwrap()
        .with_removal_ttl(removal_ttl);
    assert!(state.connect().await);
    let p1 = stub_pool(stub.clone(), 6000, Some(state.clone()), "chat");
    let p2 = stub_pool(stub.clone(), 6000, Some(state.clone()), "chat");
    policy(3, Duration::from_secs(5))
        .call(&p1, &chat(), &RequestContext::new())
        .await
        .unwrap();
    let mut calls = 0;
    while !matches!(p2.status()[0].state, MemberState::Removed { .. }) {
        policy(3, Duration::from_secs(5))
            .call(&p2, &chat(), &RequestContext::new())
            .await
            .unwrap();
        calls += 1;
        assert!(calls < 200, "p2 never learnt the shared removal");
    }
    assert!(matches!(
        p2.status()[0].state,
        MemberState::Removed { until: None, .. }
    ));
    assert_eq!(
        stub.seen_by("a").len(),
        1,
        "the removed key saw no second attempt"
    );
    assert!(state.is_up(), "the removal went through: Redis is up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_one_fallback_per_decision_counted_and_logged_as_down() {
    // a port nothing listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let state = SharedState::redis(&format!("redis://127.0.0.1:{port}"), "nowhere")
        .unwrap()
        .with_retry_interval(Duration::from_secs(3600));
    let stub = Stub::new("down", |_, _| async { ok() });
    let pool = stub_pool(stub.clone(), 6000, Some(state.clone()), "chat");
    assert_eq!(
        pool.counters().shared_state_up,
        Some(true),
        "up until it fails"
    );
    for _ in 0..20 {
        policy(1, Duration::from_secs(5))
            .call(&pool, &chat(), &RequestContext::new())
            .await
            .expect("the pool serves on local state");
    }
    let c = pool.counters();
    assert_eq!(c.shared_state_up, Some(false));
    assert_eq!(c.shared_state_fallbacks, 20);
    assert!(!state.is_up());
    let mut text = String::new();
    pool.render_prometheus("p", &mut text);
    assert!(
        text.contains("infermux_pool_shared_state_up{pool=\"p\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("infermux_pool_shared_state_fallbacks_total{pool=\"p\"} 20"),
        "{text}"
    );
    // without shared state, nothing is rendered about it
    let mut plain = String::new();
    stub_pool(stub, 6000, None, "chat").render_prometheus("p", &mut plain);
    assert!(!plain.contains("shared_state"));
}

/// Polls `f` once.
async fn once<F: std::future::Future>(mut f: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(f.as_mut().poll(cx))).await
}

/// The URL of a "Redis" that accepts connections and never answers.
async fn silent_redis() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

/// A call cancelled while the shared state decides (its round trip never answers here: a
/// listener that accepts and stays silent) leaves nothing behind: before, the lease's pick
/// and place in flight stayed counted for good, and the least-in-flight and lowest-latency
/// strategies steered away from that member ever after.
#[tokio::test]
async fn a_call_cancelled_during_the_shared_round_trip_leaves_nothing_in_flight() {
    let url = silent_redis().await;
    let state = SharedState::redis(&url, "stalled")
        .unwrap()
        .with_timeout(Duration::from_secs(3600));
    let stub = Stub::new("stalled", |_, _| async { ok() });
    let pool = stub_pool(stub.clone(), 6000, Some(state), "chat");
    let in_flight = |pool: &MultiPool| pool.status().iter().map(|m| m.in_flight).sum::<u32>();
    let policy = policy(1, Duration::from_secs(3600));
    let ctx = RequestContext::new();
    let request = chat();
    let mut call = Box::pin(policy.call(&pool, &request, &ctx));
    // until the call holds a lease and waits on the shared state
    let mut polls = 0;
    while in_flight(&pool) == 0 {
        assert!(once(call.as_mut()).await.is_pending());
        tokio::task::yield_now().await;
        polls += 1;
        assert!(polls < 10_000, "the call never took a lease");
    }
    assert_eq!(in_flight(&pool), 1);
    for _ in 0..10 {
        assert!(
            once(call.as_mut()).await.is_pending(),
            "Redis never answers"
        );
        tokio::task::yield_now().await;
    }
    drop(call);
    assert_eq!(in_flight(&pool), 0, "{:?}", pool.status());
    // (its pick stays counted: a counter never goes down)
    assert_eq!(pool.status().iter().map(|m| m.picks).sum::<u64>(), 1);
    assert!(stub.seen().is_empty(), "nothing was sent");
}

/// A probe of a Redis counted down, cancelled during its round trip, lets the next call
/// probe: before, its flag stayed set, every later call was decided locally without asking,
/// and the shared state never came back up.
#[tokio::test]
async fn a_probe_cancelled_mid_call_lets_the_next_call_probe() {
    let url = silent_redis().await;
    let state = SharedState::redis(&url, "probed")
        .unwrap()
        .with_timeout(Duration::from_millis(50))
        .with_retry_interval(Duration::ZERO);
    // no answer in time: Redis counts as down
    assert!(state.ping().await.is_none());
    assert!(!state.is_up());
    // the probe, given up during its round trip
    let mut probe = Box::pin(state.ping());
    assert!(once(probe.as_mut()).await.is_pending());
    drop(probe);
    // the next call asks Redis again (and waits on it), rather than answering "down" at once
    let mut next = Box::pin(state.ping());
    assert!(once(next.as_mut()).await.is_pending());
}

/// `host:port` of a `redis://[user:password@]host:port[/db]` URL.
fn redis_addr(url: &str) -> &str {
    let rest = url.trim_start_matches("redis://");
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// A Redis whose connection takes longer to set up than one call's timeout still connects:
/// the attempt is not cancelled with the call that started it. Before, each call's timeout
/// cut its own attempt short, the next call began again, and a Redis more than about half
/// the timeout away never connected (here a second, patient call had to connect anew: two
/// connections accepted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_slower_to_connect_than_the_call_timeout_still_connects() {
    let Some(url) = shared_redis() else {
        return;
    };
    let relay =
        infermux_testkit::helpers::SlowRelay::start(redis_addr(&url), Duration::from_millis(300))
            .await
            .unwrap();
    let state = SharedState::redis(&format!("redis://{}", relay.addr), &fresh_namespace("far"))
        .unwrap()
        .with_timeout(Duration::from_millis(50));
    assert!(!state.connect().await, "no connection within 50 ms");
    assert!(!state.is_up());
    // a clone shares the connection: with more patience it waits for the attempt under way
    let patient = state.clone().with_timeout(Duration::from_secs(10));
    assert!(patient.connect().await, "the first attempt went on");
    assert_eq!(relay.accepted(), 1, "one attempt, never cut short");
    assert!(state.is_up());
    assert!(
        state.ping().await.is_some(),
        "a round trip on the connection is within 50 ms"
    );
}

/// How far ahead of Redis's clock a limiter's theoretical arrival time stands (`None`: the
/// limiter's key is gone, an empty limiter).
async fn ahead_of_redis(c: &mut ::redis::aio::MultiplexedConnection, key: &str) -> Option<f64> {
    let tat: Option<String> = ::redis::cmd("GET").arg(key).query_async(c).await.unwrap();
    let (secs, micros): (u64, u64) = ::redis::cmd("TIME").query_async(c).await.unwrap();
    tat.map(|t| (t.parse::<f64>().unwrap() - (secs * 1_000_000 + micros) as f64) / 1e6)
}

/// Polls (every 20 ms, for at most `within`) until `ok` holds of the limiter's lead; the lead
/// it saw last. (Redis is written by the pool's own spawned tasks, which say nothing when they
/// are done: its state is the only thing to watch.)
async fn until_ahead(
    c: &mut ::redis::aio::MultiplexedConnection,
    key: &str,
    within: Duration,
    ok: impl Fn(Option<f64>) -> bool,
) -> Result<Option<f64>, Option<f64>> {
    let give_up = Instant::now() + within;
    loop {
        let ahead = ahead_of_redis(c, key).await;
        if ok(ahead) {
            return Ok(ahead);
        }
        if Instant::now() > give_up {
            return Err(ahead);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A one-key pool limited to `rpm` a minute (burst 50 %) or `tpm`, bound to `state`.
fn one_key_pool(stub: Arc<Stub>, rpm: u32, tpm: u32, state: SharedState) -> MultiPool {
    let mut member = keyed(0, "a");
    if rpm > 0 {
        member = member.with_rpm(rpm);
    }
    if tpm > 0 {
        member = member.with_tpm(tpm);
    }
    crate::stub::pool(
        vec![executor(stub, 8, None)],
        vec![member],
        PoolConfig::new(Strategy::RoundRobin),
    )
    .with_shared(state, "chat")
    .unwrap()
}

/// A call cancelled while Redis takes its reservation gives it back: Redis made it (the
/// reply was on its way), but no request will spend it. Before, the script's reply went
/// nowhere and the key's shared limiter kept the request counted for its whole window (here
/// a minute: at 2 a minute a key's one request refills in 60 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_answered_after_its_call_was_cancelled_is_given_back() {
    let Some(url) = shared_redis() else { return };
    let relay = infermux_testkit::helpers::FreezableRelay::start(redis_addr(&url))
        .await
        .unwrap();
    let ns = fresh_namespace("cancelled");
    let state = SharedState::redis(&format!("redis://{}", relay.addr), &ns)
        .unwrap()
        .with_timeout(Duration::from_secs(30));
    assert!(state.connect().await, "Redis answers through the relay");
    relay.delay_replies(Duration::from_millis(1500));
    let stub = Stub::new("cancelled", |_, _| async { ok() });
    let pool = one_key_pool(stub.clone(), 2, 0, state);
    let client = ::redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let rpm_key = format!("infermux:{{{ns}:chat:a}}:rpm");

    let policy = policy(1, Duration::from_secs(30));
    let (ctx, request) = (RequestContext::new(), chat());
    let mut call = Box::pin(policy.call(&pool, &request, &ctx));
    // the call waits on the shared state while Redis already took the request
    let taken = until_ahead(&mut c, &rpm_key, Duration::from_secs(10), |a| a.is_some());
    tokio::select! {
        r = &mut call => panic!("the call ended before its reply came: {:?}", r.map(|_| ())),
        taken = taken => assert!(taken.is_ok(), "Redis never took the reservation"),
    }
    drop(call);
    // …and gives it back once the late reply arrives (the limiter's key goes: empty again)
    let back = until_ahead(&mut c, &rpm_key, Duration::from_secs(10), |a| a.is_none()).await;
    assert!(
        back.is_ok(),
        "still {back:?} s ahead: the reservation stayed taken"
    );
    assert!(stub.seen().is_empty(), "nothing was sent");
}

/// A reservation made ahead whose reply comes after the timeout is given back when it comes
/// (nothing will take it). Before, it stayed taken on Redis for the limiter's window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_made_ahead_answered_late_is_given_back() {
    let Some(url) = shared_redis() else { return };
    let relay = infermux_testkit::helpers::FreezableRelay::start(redis_addr(&url))
        .await
        .unwrap();
    let ns = fresh_namespace("ahead-late");
    let state = SharedState::redis(&format!("redis://{}", relay.addr), &ns)
        .unwrap()
        .with_timeout(Duration::from_millis(200))
        .with_prefetch(Duration::from_secs(60));
    assert!(state.connect().await, "Redis answers through the relay");
    let stub = Stub::new("ahead-late", |_, _| async { ok() });
    // 6 a minute, burst 3: one request is 20 s of the limiter, 60 s of tolerance
    let pool = one_key_pool(stub, 6, 0, state);
    let client = ::redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let rpm_key = format!("infermux:{{{ns}:chat:a}}:rpm");
    let policy = policy(1, Duration::from_secs(5));
    let ctx = RequestContext::new();
    // the first call reserves on Redis, and its key's next request ahead (40 s of the limiter)
    policy.call(&pool, &chat(), &ctx).await.unwrap();
    let ahead = until_ahead(&mut c, &rpm_key, Duration::from_secs(5), |a| {
        a.is_some_and(|s| s > 30.0)
    })
    .await;
    assert!(ahead.is_ok(), "the reservation ahead never came: {ahead:?}");
    // the second takes it without a round trip; the reservation ahead it starts answers late
    relay.delay_replies(Duration::from_millis(1500));
    policy.call(&pool, &chat(), &ctx).await.unwrap();
    assert_eq!(pool.counters().shared_state_ahead, 1);
    let made = until_ahead(&mut c, &rpm_key, Duration::from_secs(5), |a| {
        a.is_some_and(|s| s > 50.0)
    })
    .await;
    assert!(
        made.is_ok(),
        "Redis never took the late reservation: {made:?}"
    );
    // once its reply comes, it goes back: two requests' worth again (time alone takes 15 s
    // to bring the limiter that far)
    let back = until_ahead(&mut c, &rpm_key, Duration::from_secs(10), |a| {
        a.is_some_and(|s| s < 45.0)
    })
    .await;
    assert!(
        back.is_ok(),
        "{back:?} s ahead: the late reservation stayed taken"
    );
}

/// A refusal of the shared TPM limiter is about the request's size: the local limiter learns
/// how far ahead the shared one is, so a smaller request that fits goes at once. Before, the
/// key was held locally for the big request's wait, for requests of every size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_tpm_refusal_holds_back_big_requests_not_small_ones() {
    let Some(url) = shared_redis() else { return };
    let ns = fresh_namespace("tpm-size");
    let state = SharedState::redis(&url, &ns).unwrap();
    assert!(state.connect().await, "the shared redis answers");
    let stub = Stub::new("tpm-size", |_, _| async { ok() });
    // 6000 a minute, burst 3000: a token is 20 ms of the limiter, 60 s of tolerance
    let p1 = one_key_pool(stub.clone(), 0, 6000, state.clone());
    let p2 = one_key_pool(stub, 0, 6000, state);
    // p1 spends 2500 tokens (50 s of the shared limiter)
    let spent = p1.try_lease_shared(2500, &[]).await.expect("p1 fits");
    // p2 asks for 2000 (40 s more: 30 s too many): Redis refuses, by tokens
    assert!(p2.try_lease_shared(2000, &[]).await.is_none());
    // 400 (8 s) fit under the shared limit now, and p2 sends them at once
    let small = p2.try_lease_shared(400, &[]).await;
    assert!(
        small.is_some(),
        "the key is held for every size: {:?}",
        p2.status()
    );
    // and 2000 stay refused locally, without asking Redis again
    assert!(p2.try_lease(2000, &[]).is_none());
    assert_eq!(p2.counters().shared_state_fallbacks, 0);
    p1.give_back(spent);
    p2.give_back(small.unwrap());
}

/// The shared state's round trip is a wait before the attempt: an endpoint that answers
/// only at the caller's deadline (here, when the transport's deadline passes) is the caller's
/// deadline, not the endpoint's failure. Before, the call's deadline was fixed on its first
/// read, after the round trip, so it stood that much later than the attempt's: the endpoint's
/// timeout came "early" by the round trip and the breaker counted it (one such call opens it
/// here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_shared_round_trip_does_not_turn_the_callers_deadline_into_a_breaker_failure() {
    use infermux_resilience::breaker::{BreakerConfig, BreakerState, SlidingWindow};
    let Some(url) = shared_redis() else { return };
    let relay = infermux_testkit::helpers::FreezableRelay::start(redis_addr(&url))
        .await
        .unwrap();
    let ns = fresh_namespace("deadline");
    let state = SharedState::redis(&format!("redis://{}", relay.addr), &ns)
        .unwrap()
        .with_timeout(Duration::from_secs(5));
    assert!(state.connect().await, "Redis answers through the relay");
    relay.delay_replies(Duration::from_millis(150));
    // the endpoint answers at the deadline its attempt was given, with its own timeout
    let stub = Stub::new("deadline", |_, ctx: RequestContext| async move {
        if let Some(d) = ctx.deadline() {
            tokio::time::sleep_until(d.into()).await;
        }
        Err(Error::new(ErrorKind::Timeout, "the endpoint's own timeout"))
    });
    let breaker = BreakerConfig::standard()
        .with_window(SlidingWindow::Count(1))
        .with_minimum_calls(1)
        .with_failure_rate_threshold(100.0)
        .with_open_wait(Duration::from_secs(3600));
    let exec = executor(stub, 8, Some(breaker));
    let pool = crate::stub::pool(
        vec![exec.clone()],
        vec![keyed(0, "a").with_rpm(6000)],
        PoolConfig::new(Strategy::RoundRobin),
    )
    .with_shared(state, "chat")
    .unwrap();
    let e = policy(1, Duration::from_millis(600))
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(exec.breaker_state(), BreakerState::Closed, "{e}");
}

#[test]
fn shared_state_names_are_checked_and_keys_never_shown() {
    assert!(SharedState::redis("redis://127.0.0.1:1", "").is_err());
    assert!(SharedState::redis("redis://127.0.0.1:1", "has space").is_err());
    assert!(SharedState::redis("http://127.0.0.1:1", "ns").is_err());
    let state = SharedState::redis("redis://:hunter2@127.0.0.1:1", "ns").unwrap();
    assert!(!format!("{state:?}").contains("hunter2"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stub = Stub::new("names", |_, _| async { ok() });
        let exec = executor(stub, 4, None);
        let braces = crate::stub::pool(
            vec![exec.clone()],
            vec![keyed(0, "a{1}")],
            PoolConfig::default(),
        );
        assert!(braces.with_shared(state.clone(), "chat").is_err());
        let pool = crate::stub::pool(vec![exec], vec![keyed(0, "a")], PoolConfig::default());
        assert!(pool.clone().with_shared(state.clone(), "a b").is_err());
        let bound = pool.with_shared(state.clone(), "chat").unwrap();
        assert!(bound.with_shared(state, "chat").is_err(), "bound twice");
    });
}

// ---- two OS processes ----

/// What one child reported.
#[derive(Debug, Default)]
struct ChildResult {
    served: u64,
    errors: u64,
    up: Option<bool>,
    fallbacks: u64,
}

fn parse_result(line: &str) -> Option<ChildResult> {
    let rest = line.strip_prefix("child-result ")?;
    let mut r = ChildResult::default();
    for field in rest.split_whitespace() {
        let (k, v) = field.split_once('=')?;
        match k {
            "served" => r.served = v.parse().ok()?,
            "errors" => r.errors = v.parse().ok()?,
            "fallbacks" => r.fallbacks = v.parse().ok()?,
            "up" => r.up = v.parse().ok(),
            _ => {}
        }
    }
    Some(r)
}

/// One child: this test binary running only [`child_load`], in `mode`.
fn spawn_child(
    mode: &str,
    sim: &str,
    redis: Option<&str>,
    ns: &str,
    secs: u64,
) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "redis::child_load",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(CHILD, mode)
    .env("INFERMUX_MUX_CHILD_SIM", sim)
    .env("INFERMUX_MUX_CHILD_NS", ns)
    .env("INFERMUX_MUX_CHILD_SECS", secs.to_string())
    .env_remove(REDIS_ENV)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    if let Some(url) = redis {
        cmd.env("INFERMUX_MUX_CHILD_REDIS", url);
    }
    cmd.spawn().expect("the child starts")
}

/// Runs `children` to their end, calling `on_progress(child, served)` for each progress line;
/// returns their results.
async fn run_children(
    children: Vec<tokio::process::Child>,
    mut on_progress: impl FnMut(usize, u64),
) -> Vec<ChildResult> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut waits = Vec::new();
    for (i, mut child) in children.into_iter().enumerate() {
        let out = child.stdout.take().unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send((i, line));
            }
        });
        waits.push(tokio::spawn(async move {
            let out = child.wait_with_output().await.unwrap();
            (
                out.status,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }));
    }
    drop(tx);
    let mut results: Vec<Option<ChildResult>> = (0..waits.len()).map(|_| None).collect();
    let mut transcript = String::new();
    while let Some((i, line)) = rx.recv().await {
        transcript.push_str(&format!("[{i}] {line}\n"));
        if let Some(n) = line.strip_prefix("child-progress ") {
            on_progress(i, n.trim().parse().unwrap_or(0));
        } else if let Some(r) = parse_result(&line) {
            results[i] = Some(r);
        }
    }
    for w in waits {
        let (status, stderr) = w.await.unwrap();
        assert!(status.success(), "a child failed: {stderr}\n{transcript}");
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| panic!("a child reported no result:\n{transcript}")))
        .collect()
}

/// The load's requests the simulator saw, and the time from the first to the last.
fn load_seen(sim: &Simulator) -> (u64, Duration) {
    let log: Vec<_> = sim
        .requests_log()
        .into_iter()
        .filter(|r| r.key.as_deref() == Some(LOAD_KEY))
        .collect();
    let span = match (log.first(), log.last()) {
        (Some(a), Some(b)) => b.at.saturating_sub(a.at),
        _ => Duration::ZERO,
    };
    (log.len() as u64, span)
}

/// Checks a combined count against what the key's GCRA admits in `span`: `B + r·span`
/// requests (at most that, +1 for the closed interval), within 5 %. The sustained rate past
/// the first burst, `(count − B)/span`, is checked against `r` too.
fn within_five_percent(count: u64, span: Duration) -> Result<(), String> {
    let allowed = LOAD_B + LOAD_R_PER_S * span.as_secs_f64();
    let got = count as f64;
    if (got - allowed).abs() > 0.05 * allowed {
        return Err(format!(
            "{count} requests in {span:?}; the limit allows {allowed:.1} (±5 %)"
        ));
    }
    let rate = (got - LOAD_B) / span.as_secs_f64();
    if (rate - LOAD_R_PER_S).abs() > 0.05 * LOAD_R_PER_S {
        return Err(format!(
            "a sustained {rate:.2}/s; the limit refills {LOAD_R_PER_S:.2}/s (±5 %)"
        ));
    }
    Ok(())
}

#[test]
fn the_five_percent_checker_rejects_counts_off_by_more() {
    let span = Duration::from_secs(5); // allows 24 + 198 = 222
    assert!(within_five_percent(222, span).is_ok());
    assert!(within_five_percent(230, span).is_ok());
    assert!(within_five_percent(240, span).is_err());
    assert!(within_five_percent(205, span).is_err());
    assert!(within_five_percent(444, span).is_err());
}

/// The load window of each child, seconds.
const LOAD_SECS: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_redis_hold_a_combined_rpm_within_5_percent_of_the_limit() {
    let Some(url) = shared_redis() else { return };
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let ns = fresh_namespace("procs");
    let children = (0..2)
        .map(|_| spawn_child("shared", &sim.url(), Some(&url), &ns, LOAD_SECS))
        .collect();
    let results = run_children(children, |_, _| {}).await;
    let (count, span) = load_seen(&sim);
    for r in &results {
        assert_eq!(r.errors, 0, "{results:?}");
        assert_eq!(r.fallbacks, 0, "{results:?}");
        assert_eq!(r.up, Some(true));
        assert!(r.served > 20, "each process served its share: {results:?}");
    }
    eprintln!("shared: {count} requests in {span:?}: {results:?}");
    assert_eq!(results.iter().map(|r| r.served).sum::<u64>(), count);
    assert!(span > Duration::from_secs(LOAD_SECS - 1), "{span:?}");
    within_five_percent(count, span).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_without_shared_state_exceed_the_bound() {
    // the same run with each process on its own state: about twice the limit, which the
    // checker of the shared run rejects
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let ns = fresh_namespace("alone");
    let children = (0..2)
        .map(|_| spawn_child("local", &sim.url(), None, &ns, LOAD_SECS))
        .collect();
    let results = run_children(children, |_, _| {}).await;
    let (count, span) = load_seen(&sim);
    assert!(results.iter().all(|r| r.errors == 0 && r.up.is_none()));
    let allowed = LOAD_B + LOAD_R_PER_S * span.as_secs_f64();
    eprintln!("local: {count} requests in {span:?} (the limit allows {allowed:.1})");
    assert!(count as f64 > 1.5 * allowed, "{count} in {span:?}");
    assert!(within_five_percent(count, span).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_both_processes_keep_serving_on_local_state() {
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let ns = fresh_namespace("kill");
    let children = (0..2)
        .map(|_| spawn_child("shared", &sim.url(), Some(&redis.url), &ns, 4))
        .collect();
    // kill Redis once both children served 30 requests through it
    let served = [AtomicU64::new(0), AtomicU64::new(0)];
    let at_kill = AtomicU64::new(0);
    let mut killed = false;
    let results = run_children(children, |i, n| {
        served[i].store(n, Ordering::Relaxed);
        if !killed && served.iter().all(|s| s.load(Ordering::Relaxed) >= 30) {
            redis.child.start_kill().expect("redis-server is killed");
            at_kill.store(load_seen(&sim).0, Ordering::Relaxed);
            killed = true;
        }
    })
    .await;
    assert!(
        killed,
        "both children made progress through Redis: {results:?}"
    );
    let (count, _) = load_seen(&sim);
    eprintln!("killed after {at_kill:?} of {count} requests: {results:?}");
    let at_kill = at_kill.load(Ordering::Relaxed);
    for r in &results {
        assert_eq!(r.errors, 0, "every call succeeded: {results:?}");
        assert_eq!(
            r.up,
            Some(false),
            "the counters say Redis is down: {results:?}"
        );
        assert!(
            r.fallbacks > 0,
            "decisions fell back to local state: {results:?}"
        );
    }
    assert!(
        count > at_kill + 40,
        "the processes kept serving after the kill: {at_kill} then {count}"
    );
}

/// The child half of the two-process tests: does nothing unless started by them. It drives
/// four callers against one key limited to [`LOAD_RPM`] for `INFERMUX_MUX_CHILD_SECS`,
/// printing `child-progress <served>` every 10 successes and a `child-result` line at the
/// end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_load() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap();
    let secs: u64 = var("INFERMUX_MUX_CHILD_SECS").parse().unwrap();
    let provider = OpenAiCompat::new(
        EndpointConfig::new("sim", format!("{}/v1", var("INFERMUX_MUX_CHILD_SIM"))).unwrap(),
    )
    .unwrap();
    let exec = Arc::new(
        AttemptExecutor::new(
            Arc::new(provider),
            QueueConfig::standard().with_permits(16),
            None,
        )
        .unwrap(),
    );
    let member = MemberSpec::new(0)
        .with_key("hot", ApiKey::new(LOAD_KEY))
        .with_rpm(LOAD_RPM);
    let config = PoolConfig::new(Strategy::RoundRobin).with_limit_burst_percent(LOAD_BURST_PERCENT);
    let mut pool =
        MultiPool::with_clock(vec![exec], vec![member], config, Arc::new(SystemClock)).unwrap();
    if mode == "shared" {
        let state = SharedState::redis(
            &var("INFERMUX_MUX_CHILD_REDIS"),
            &var("INFERMUX_MUX_CHILD_NS"),
        )
        .unwrap()
        .with_retry_interval(Duration::from_millis(200));
        assert!(state.connect().await, "the child reaches Redis");
        pool = pool.with_shared(state, "load").unwrap();
    }
    let served = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (pool, served, errors) = (pool.clone(), served.clone(), errors.clone());
            tokio::spawn(async move {
                let policy = CallPolicy::standard();
                while Instant::now() < end {
                    match policy.call(&pool, &chat(), &RequestContext::new()).await {
                        Ok(_) => {
                            let n = served.fetch_add(1, Ordering::Relaxed) + 1;
                            if n % 10 == 0 {
                                println!("child-progress {n}");
                            }
                        }
                        Err(e) => {
                            eprintln!("child call failed: {e}");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    let c = pool.counters();
    println!(
        "child-result served={} errors={} up={} fallbacks={}",
        served.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        c.shared_state_up
            .map_or("none".to_owned(), |u| u.to_string()),
        c.shared_state_fallbacks
    );
}

/// A reservation ahead whose task a runtime dropped before it ran (that runtime shut down:
/// a per-request runtime, a test's) does not stop the key reserving ahead for good: the mark
/// that one is being made goes with the task. One key, so no other key's reservations ahead
/// stand in; the connection lives on the test's own runtime throughout.
#[test]
fn a_reservation_ahead_dropped_with_its_runtime_leaves_the_key_reserving_ahead() {
    let Some(url) = shared_redis() else { return };
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let ns = fresh_namespace("ahead-dropped");
    let stub = Stub::new("ahead-dropped", |_, _| async { ok() });
    let state = SharedState::redis(&url, &ns)
        .unwrap()
        .with_prefetch(Duration::from_secs(30));
    assert!(main.block_on(state.connect()), "the shared redis answers");
    let pool = main.block_on(async {
        crate::stub::pool(
            vec![executor(stub, 64, None)],
            vec![keyed(0, "a").with_rpm(6000)],
            PoolConfig::new(Strategy::RoundRobin),
        )
        .with_shared(state, "chat")
        .unwrap()
    });
    // one call on a runtime of its own: the reservation ahead its decision spawns there is
    // still queued when the call returns, and goes with the runtime
    let short = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(short.block_on(immediate_calls(&pool, 1)), 1);
    assert_eq!(pool.counters().shared_state_ahead, 0);
    drop(short);
    let granted = main.block_on(immediate_calls(&pool, 20));
    assert_eq!(granted, 20);
    let c = pool.counters();
    assert_eq!(c.shared_state_fallbacks, 0);
    assert!(
        c.shared_state_ahead > 0,
        "no reservation ahead was made after the dropped one"
    );
}

/// A limit refilling more than 60 million tokens a minute is held at its rate on Redis, as
/// locally: a unit's time is a fraction of a microsecond (rounded up to a whole one, 150
/// million a minute refilled at 60 million), and a give-back frees what the take charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_above_sixty_million_tokens_a_minute_is_charged_at_its_rate() {
    let Some(url) = shared_redis() else { return };
    let ns = fresh_namespace("big-tpm");
    let state = SharedState::redis(&url, &ns).unwrap();
    assert!(state.connect().await, "the shared redis answers");
    // 300 million a minute, half of it at once: 150 million refilling in a minute, 0.4 µs
    // a token; a call reserves its estimate, about ten million tokens
    let stub = Stub::new("big-tpm", |_, _| async { ok() });
    let pool = crate::stub::pool(
        vec![executor(stub, 8, None)],
        vec![keyed(0, "a").with_tpm(300_000_000)],
        PoolConfig::new(Strategy::RoundRobin).with_default_output_tokens(10_000_000),
    )
    .with_shared(state, "chat")
    .unwrap();
    policy(1, Duration::from_secs(5))
        .call(&pool, &chat(), &RequestContext::new())
        .await
        .unwrap();
    let client = ::redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("infermux:{{{ns}:chat:a}}:tpm");
    let ahead = ahead_of_redis(&mut c, &key)
        .await
        .expect("a TPM reservation");
    // ten million tokens at 0.4 µs: 4 s ahead of Redis's clock (at 1 µs: 10 s)
    assert!((3.9..=4.01).contains(&ahead), "{ahead} s ahead");
    // the answer reported no usage: nothing was settled, so the lead is the reservation's
    // own; a give-back of its tokens (adjust.lua, as a failed attempt's) takes the whole lead
    // off: the two scripts charge a token alike (they did not when a take rounded each
    // token's time up to a microsecond; the reservation's check above is the one that fails)
    let script = ::redis::Script::new(include_str!("../../src/shared/adjust.lua"));
    let tokens = (ahead * 1e6 / 0.4).round() as u64;
    let _: i64 = script
        .key(&key)
        .arg(150_000_000u64)
        .arg(tokens)
        .arg(-1)
        .invoke_async(&mut c)
        .await
        .unwrap();
    assert_eq!(ahead_of_redis(&mut c, &key).await, None, "given back whole");
}
