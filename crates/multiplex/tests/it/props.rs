//! Property tests (seeded): strategies never pick a held-back member while an eligible one
//! exists, weighted picks converge to the weights, the ejection cap holds, and every call
//! resolves exactly once under random faults and cancellations.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use infermux_core::{Error, ErrorKind, RequestContext};
use infermux_multiplex::{MemberSpec, MemberState, MultiPool, PoolConfig, Strategy};
use infermux_resilience::AttemptExecutor;
use infermux_resilience::breaker::BreakerConfig;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::stub::{Stub, chat, executor, keyed, ok, policy, pool};

fn runner(cases: u32, seed: u8) -> TestRunner {
    TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    )
}

fn paused() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// What a member's key or endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Ok,
    Cool,
    Remove,
    Limit,
    Eject,
}

fn fate() -> impl proptest::strategy::Strategy<Value = Fate> {
    prop_oneof![
        Just(Fate::Ok),
        Just(Fate::Cool),
        Just(Fate::Remove),
        Just(Fate::Limit),
        Just(Fate::Eject)
    ]
}

fn strategy() -> impl proptest::strategy::Strategy<Value = infermux_multiplex::Strategy> {
    prop::sample::select(infermux_multiplex::Strategy::ALL.to_vec())
}

/// A breaker that opens after one failure and stays open a minute.
fn touchy() -> BreakerConfig {
    BreakerConfig::standard()
        .with_minimum_calls(1)
        .with_failure_rate_threshold(50.0)
        .with_open_wait(Duration::from_secs(60))
}

/// One endpoint per member, each answering by its fate.
fn fated(
    fates: &[Fate],
    strategy: infermux_multiplex::Strategy,
) -> (MultiPool, Vec<Arc<AttemptExecutor>>) {
    let mut execs = Vec::new();
    let mut members = Vec::new();
    for (i, &f) in fates.iter().enumerate() {
        let stub = Stub::new(&format!("e{i}"), move |_req, _ctx| async move {
            match f {
                Fate::Ok | Fate::Limit => ok(),
                Fate::Cool => Err(Error::new(ErrorKind::RateLimited, "slow")
                    .with_retry_after(Duration::from_secs(600))),
                Fate::Remove => Err(Error::new(ErrorKind::Auth, "no")),
                Fate::Eject => Err(Error::new(ErrorKind::Server, "boom")),
            }
        });
        execs.push(executor(stub, 4, Some(touchy())));
        let mut m = keyed(i, &format!("k{i}"));
        if f == Fate::Limit {
            m = m.with_rpm(1);
        }
        members.push(m);
    }
    let pool = pool(
        execs.clone(),
        members,
        PoolConfig::new(strategy).with_max_ejection_percent(100),
    );
    (pool, execs)
}

#[test]
fn a_strategy_never_picks_a_held_back_member_while_an_eligible_one_exists() {
    runner(48, 1)
        .run(
            &(prop::collection::vec(fate(), 2..12), strategy()),
            |(fates, strategy)| {
                let rt = paused();
                rt.block_on(async {
                    let (pool, _execs) = fated(&fates, strategy);
                    let p = policy(1, Duration::from_secs(1));
                    // every member answers once (its fate lands on its key or endpoint)
                    for _ in 0..fates.len() * 20 {
                        if pool.status().iter().all(|s| s.picks > 0) {
                            break;
                        }
                        let _ = p.call(&pool, &chat(), &RequestContext::new()).await;
                    }
                    let status = pool.status();
                    for (i, (s, f)) in status.iter().zip(&fates).enumerate() {
                        if s.picks == 0 {
                            continue;
                        }
                        let expected = match f {
                            Fate::Ok => "eligible",
                            Fate::Cool => "cooling",
                            Fate::Remove => "removed",
                            Fate::Limit => "limited",
                            Fate::Eject => "ejected",
                        };
                        prop_assert_eq!(s.state.as_str(), expected, "member {}", i);
                    }
                    let any = status.iter().any(|s| s.state == MemberState::Eligible);
                    for _ in 0..50 {
                        let now = tokio::time::Instant::now().into_std();
                        let picked = pool.select(now);
                        prop_assert_eq!(picked.is_some(), any);
                        if let Some(i) = picked {
                            prop_assert_eq!(status[i as usize].state, MemberState::Eligible);
                        }
                        let lease = pool.try_lease(0, &[]);
                        prop_assert_eq!(lease.is_some(), any);
                        if let Some(l) = lease {
                            prop_assert_eq!(status[l.member as usize].state, MemberState::Eligible);
                        }
                    }
                    Ok(())
                })
            },
        )
        .unwrap();
}

/// Pearson's chi-squared statistic of `counts` against `weights`.
fn chi_squared(counts: &[u64], weights: &[u32]) -> f64 {
    let n: u64 = counts.iter().sum();
    let w: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    counts
        .iter()
        .zip(weights)
        .map(|(&c, &wi)| {
            let expected = n as f64 * f64::from(wi) / w as f64;
            (c as f64 - expected).powi(2) / expected
        })
        .sum()
}

/// The chi-squared critical value at p = 0.001 for 1 to 7 degrees of freedom.
const CRITICAL: [f64; 7] = [10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32];

#[test]
fn the_chi_squared_check_rejects_picks_that_ignore_the_weights() {
    // uniform picks against weights 1:3 fail; picks in proportion pass
    assert!(chi_squared(&[50_000, 50_000], &[1, 3]) > CRITICAL[0]);
    assert!(chi_squared(&[25_000, 75_000], &[1, 3]) < CRITICAL[0]);
}

#[test]
fn weighted_picks_converge_to_the_weights() {
    runner(24, 2)
        .run(&prop::collection::vec(1u32..=10, 2..=8), |weights| {
            let execs: Vec<_> = (0..weights.len())
                .map(|i| {
                    executor(
                        Stub::new(&format!("w{i}"), |_r, _c| async { ok() }),
                        4,
                        None,
                    )
                })
                .collect();
            let members: Vec<MemberSpec> = weights
                .iter()
                .enumerate()
                .map(|(i, &w)| MemberSpec::new(i).with_weight(w))
                .collect();
            let pool = MultiPool::new(execs, members, PoolConfig::new(Strategy::Weighted)).unwrap();
            let mut counts = vec![0u64; weights.len()];
            let now = std::time::Instant::now();
            for _ in 0..100_000 {
                counts[pool.select(now).unwrap() as usize] += 1;
            }
            let chi = chi_squared(&counts, &weights);
            prop_assert!(
                chi < CRITICAL[weights.len() - 2],
                "chi² {} for {:?}: {:?}",
                chi,
                weights,
                counts
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn the_ejection_cap_holds() {
    runner(32, 3)
        .run(&(2usize..8, 0usize..8, 0u8..=100), |(n, open, cap)| {
            let open = open.min(n);
            let rt = paused();
            rt.block_on(async {
                let fates: Vec<Fate> = (0..n)
                    .map(|i| if i < open { Fate::Eject } else { Fate::Ok })
                    .collect();
                let mut execs = Vec::new();
                let mut members = Vec::new();
                for (i, &f) in fates.iter().enumerate() {
                    let stub = Stub::new(&format!("e{i}"), move |_req, ctx| async move {
                        // the attempts that open the breakers fail; later ones succeed
                        if f == Fate::Eject && ctx.request_id().to_string().is_empty() {
                            unreachable!()
                        }
                        ok()
                    });
                    let exec = executor(stub, 4, Some(touchy()));
                    // open the breaker: one failed attempt through it
                    if f == Fate::Eject {
                        let p = policy(1, Duration::from_secs(1));
                        let _ = p
                            .run(
                                &*exec,
                                infermux_resilience::Op::new(
                                    "x",
                                    infermux_core::Idempotency::Idempotent,
                                ),
                                &RequestContext::new(),
                                |_, _| async {
                                    Err::<(), _>(Error::new(ErrorKind::Server, "boom"))
                                },
                            )
                            .await;
                        prop_assert_eq!(
                            exec.breaker_state(),
                            infermux_resilience::breaker::BreakerState::Open
                        );
                    }
                    execs.push(exec);
                    members.push(keyed(i, &format!("k{i}")));
                }
                let pool = pool(
                    execs,
                    members,
                    PoolConfig::new(Strategy::RoundRobin).with_max_ejection_percent(cap),
                );
                let p = policy(1, Duration::from_secs(5));
                let r = p.call(&pool, &chat(), &RequestContext::new()).await;
                let overrides = pool.counters().ejection_overrides;
                let over_cap = open * 100 > usize::from(cap) * n;
                if open < n {
                    // a closed member takes it: never through an open breaker
                    prop_assert!(r.is_ok());
                    prop_assert_eq!(overrides, 0);
                } else if over_cap {
                    // every member ejected, above the cap: one goes through its open breaker
                    prop_assert!(r.is_ok(), "{:?}", r.err());
                    prop_assert_eq!(overrides, 1);
                } else {
                    // within the cap: no override; the breakers reopen after the deadline
                    let e = r.unwrap_err();
                    prop_assert_eq!(e.kind(), ErrorKind::Unavailable);
                    prop_assert_eq!(overrides, 0);
                }
                Ok(())
            })
        })
        .unwrap();
}

#[test]
fn every_call_resolves_exactly_once_under_random_faults_and_cancellations() {
    runner(8, 4)
        .run(
            &(
                any::<u64>(),
                1usize..5,
                prop::sample::select(Strategy::ALL.to_vec()),
            ),
            |(seed, n, strategy)| {
                let rt = paused();
                rt.block_on(async move {
                    let rng = Arc::new(AtomicU64::new(seed));
                    let draw = move |r: &AtomicU64, m: u64| {
                        let x = r.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
                        let mut z = x;
                        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                        (z ^ (z >> 31)) % m
                    };
                    let mut execs = Vec::new();
                    let mut members = Vec::new();
                    for i in 0..n {
                        let r = rng.clone();
                        let stub = Stub::new(&format!("f{i}"), move |_req, _ctx| {
                            let roll = draw(&r, 100);
                            let wait = Duration::from_millis(draw(&r, 500));
                            async move {
                                tokio::time::sleep(wait).await;
                                match roll {
                                    0..=14 => Err(Error::new(ErrorKind::RateLimited, "slow")
                                        .with_retry_after(Duration::from_millis(300))),
                                    15..=24 => Err(Error::new(ErrorKind::Server, "boom")),
                                    25..=29 => Err(Error::new(ErrorKind::QuotaExceeded, "spent")
                                        .with_retry_after(Duration::from_secs(1))),
                                    _ => ok(),
                                }
                            }
                        });
                        execs.push(executor(
                            stub,
                            2,
                            Some(touchy().with_open_wait(Duration::from_secs(1))),
                        ));
                        members.push(keyed(i, &format!("k{i}")).with_tpm(2000).with_rpm(600));
                    }
                    let pool = pool(
                        execs.clone(),
                        members,
                        PoolConfig::new(strategy).with_max_queued(40),
                    );
                    let p = Arc::new(policy(4, Duration::from_secs(20)));
                    let resolved = Arc::new(AtomicU64::new(0));
                    let mut tasks = Vec::new();
                    for _ in 0..60 {
                        let (pool, p, resolved) = (pool.clone(), p.clone(), resolved.clone());
                        tasks.push(tokio::spawn(async move {
                            let r = p.call(&pool, &chat(), &RequestContext::new()).await;
                            resolved.fetch_add(1, Ordering::SeqCst);
                            r.map(|_| ())
                        }));
                        tokio::time::sleep(Duration::from_millis(draw(&rng, 50))).await;
                    }
                    let mut cancelled = 0;
                    for (i, t) in tasks.iter().enumerate() {
                        if draw(&rng, 4) == 0 && i % 2 == 0 {
                            t.abort();
                            cancelled += 1;
                        }
                    }
                    let (mut finished, mut aborted) = (0u64, 0u64);
                    for t in tasks {
                        match t.await {
                            Ok(_) => finished += 1,
                            Err(e) => {
                                prop_assert!(e.is_cancelled());
                                aborted += 1;
                            }
                        }
                    }
                    prop_assert!(aborted <= cancelled);
                    prop_assert_eq!(finished + aborted, 60);
                    prop_assert_eq!(
                        resolved.load(Ordering::SeqCst),
                        finished,
                        "each finished call resolved once"
                    );
                    prop_assert_eq!(pool.counters().queued, 0);
                    for e in &execs {
                        prop_assert_eq!(e.admission().available(), 2, "every permit came back");
                        prop_assert_eq!(e.admission().queued(), 0);
                    }
                    Ok(())
                })
            },
        )
        .unwrap();
}
