//! A Redis-backed decision against one round trip (feature `redis`): the p50/p90/p99 of
//! `PING` and of [`MultiPool::try_lease_shared`] (a local pick confirmed by the reserve
//! script: one `EVALSHA`) on the same connection, interleaved so both see the same load;
//! then the same with `SharedState::with_prefetch` (a reservation made ahead per key).
//!
//! `INFERMUX_REDIS_URL=redis://127.0.0.1:16379 cargo bench -p infermux-multiplex
//! --features redis --bench shared_decision` (`.ci/redis.sh start` starts a Redis). Without
//! the variable it says so and measures nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use infermux_core::{ApiKey, EndpointConfig};
use infermux_multiplex::{MemberSpec, MultiPool, PoolConfig, SharedState, Strategy};
use infermux_openai_compat::OpenAiCompat;
use infermux_resilience::AttemptExecutor;
use infermux_resilience::queue::QueueConfig;

const SAMPLES: usize = 20_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn line(name: &str, mut v: Vec<Duration>) -> Duration {
    v.sort();
    let p50 = percentile(&v, 0.5);
    println!(
        "{name:<28} p50 {:>8.1} µs   p90 {:>8.1} µs   p99 {:>8.1} µs",
        p50.as_secs_f64() * 1e6,
        percentile(&v, 0.9).as_secs_f64() * 1e6,
        percentile(&v, 0.99).as_secs_f64() * 1e6
    );
    p50
}

fn main() {
    let Some(url) = std::env::var("INFERMUX_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        println!("shared_decision: INFERMUX_REDIS_URL is not set: nothing measured");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ns = format!("bench-{}", std::process::id());
        let state = SharedState::redis(&url, &ns).unwrap();
        // (the URL without a password it may carry)
        let shown = infermux_core::url_without_userinfo(&url);
        assert!(state.connect().await, "Redis answers at {shown}");
        println!("shared_decision: {SAMPLES} samples each, after 1000 warm-up, on {shown}");
        println!("-- every decision one round trip (the default)");
        measure(&state, "strict").await;
        println!("-- with_prefetch(100 ms): a reservation made ahead per key");
        measure(
            &state.clone().with_prefetch(Duration::from_millis(100)),
            "ahead",
        )
        .await;
    });
}

/// PING and decisions interleaved on one pool bound to `state` as pool `name`.
async fn measure(state: &SharedState, name: &str) {
    // an endpoint that is never called: the bench takes leases and drops them
    let provider =
        OpenAiCompat::new(EndpointConfig::new("bench", "http://127.0.0.1:9/v1").unwrap()).unwrap();
    let exec = Arc::new(
        AttemptExecutor::new(
            Arc::new(provider),
            QueueConfig::standard().with_permits(4),
            None,
        )
        .unwrap(),
    );
    // a limit no run reaches, so every decision reserves on both the local and the shared
    // limiter
    let member = MemberSpec::new(0)
        .with_key("bench", ApiKey::new("sk-bench"))
        .with_rpm(u32::MAX)
        .with_tpm(u32::MAX);
    let pool = MultiPool::new(
        vec![exec],
        vec![member],
        PoolConfig::new(Strategy::RoundRobin),
    )
    .unwrap()
    .with_shared(state.clone(), name)
    .unwrap();
    let (mut ping, mut decide) = (Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES));
    let mut trips = Vec::new();
    for i in 0..SAMPLES + 1000 {
        let p = state.ping().await.expect("PING answers");
        let ahead = pool.counters().shared_state_ahead;
        let start = Instant::now();
        let lease = pool.try_lease_shared(100, &[]).await;
        let d = start.elapsed();
        assert!(lease.is_some(), "the decision reserves");
        drop(lease);
        if i >= 1000 {
            ping.push(p);
            decide.push(d);
            if pool.counters().shared_state_ahead == ahead {
                trips.push(d);
            }
        }
    }
    let c = pool.counters();
    assert_eq!(c.shared_state_fallbacks, 0);
    let a = line("PING (one round trip)", ping);
    let b = line("decision (try_lease_shared)", decide);
    println!(
        "decision p50 / PING p50 = {:.2}; {} of {SAMPLES} decisions took a reservation made ahead",
        b.as_secs_f64() / a.as_secs_f64(),
        SAMPLES - trips.len()
    );
    if !trips.is_empty() && trips.len() < SAMPLES {
        line("  of them with a round trip", trips);
    }
    // back to back: each decision as soon as the last one is done
    let mut tight = Vec::with_capacity(SAMPLES);
    let ahead = pool.counters().shared_state_ahead;
    for _ in 0..SAMPLES {
        let start = Instant::now();
        let lease = pool.try_lease_shared(100, &[]).await;
        tight.push(start.elapsed());
        assert!(lease.is_some(), "the decision reserves");
    }
    let taken = pool.counters().shared_state_ahead - ahead;
    line("decisions back to back", tight);
    println!("  {taken} of {SAMPLES} back-to-back decisions took a reservation made ahead");
}
