//! The breaker against a simple reference model (proptest, state-machine style) and under
//! concurrent failures.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use infermux_core::{EndpointCounters, ErrorKind, ManualClock};
use infermux_resilience::breaker::{
    Breaker, BreakerConfig, BreakerGuard, BreakerState, CircuitBreaker, Outcome, SlidingWindow,
    Ticket,
};
use proptest::prelude::*;

const WINDOW: usize = 6;
const MIN_CALLS: usize = 4;
const PROBES: u32 = 2;
const WAIT: Duration = Duration::from_secs(10);
const SLOW: Duration = Duration::from_secs(1);

fn config() -> BreakerConfig {
    BreakerConfig::standard()
        .with_window(SlidingWindow::Count(WINDOW as u32))
        .with_minimum_calls(MIN_CALLS as u32)
        .with_failure_rate_threshold(50.0)
        .with_slow_calls(75.0, SLOW)
        .with_open_wait(WAIT)
        .with_half_open_probes(PROBES)
        .validate()
        .unwrap()
}

/// The reference: the same rules written as plainly as possible.
#[derive(Debug, Clone, PartialEq)]
enum Model {
    Closed(Vec<(bool, bool)>),
    Open {
        until: Duration,
    },
    HalfOpen {
        issued: u32,
        results: Vec<(bool, bool)>,
    },
}

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    /// Report the outcome of an outstanding ticket (index modulo their count).
    Report(usize, Outcome, bool),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Acquire),
        4 => (any::<usize>(), prop_oneof![Just(Outcome::Success), Just(Outcome::Failure), Just(Outcome::Ignored)], any::<bool>())
            .prop_map(|(i, o, s)| Op::Report(i, o, s)),
        1 => (0u64..15).prop_map(Op::Advance),
    ]
}

fn trips(results: &[(bool, bool)]) -> bool {
    let n = results.len() as f64;
    let failed = results.iter().filter(|r| r.0).count() as f64;
    let slow = results.iter().filter(|r| r.1).count() as f64;
    failed * 100.0 / n >= 50.0 || slow * 100.0 / n >= 75.0
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn breaker_matches_reference_model(ops in proptest::collection::vec(op(), 1..120)) {
        let clock = ManualClock::new();
        let breaker = CircuitBreaker::new(config(), Arc::new(clock.clone())).unwrap();
        let mut model = Model::Closed(Vec::new());
        let mut now = Duration::ZERO;
        // outstanding tickets, with the model generation they belong to
        let mut tickets: Vec<(Ticket, u64)> = Vec::new();
        let mut generation = 0u64;
        for op in ops {
            match op {
                Op::Acquire => {
                    let got = breaker.try_acquire();
                    let expect_ok = match &mut model {
                        Model::Closed(_) => true,
                        Model::Open { until } => {
                            if now >= *until {
                                model = Model::HalfOpen { issued: 1, results: Vec::new() };
                                generation += 1;
                                true
                            } else {
                                false
                            }
                        }
                        Model::HalfOpen { issued, .. } => {
                            if *issued < PROBES { *issued += 1; true } else { false }
                        }
                    };
                    prop_assert_eq!(got.is_ok(), expect_ok, "model {:?}", model);
                    match got {
                        Ok(t) => tickets.push((t, generation)),
                        Err(e) => prop_assert_eq!(e.kind(), ErrorKind::CircuitOpen),
                    }
                }
                Op::Report(i, outcome, slow) => {
                    if tickets.is_empty() { continue; }
                    let (t, g) = tickets.remove(i % tickets.len());
                    let ttfb = if slow { SLOW } else { Duration::from_millis(1) };
                    breaker.on_outcome(t, outcome, ttfb);
                    if g != generation { continue; }
                    let failed = outcome == Outcome::Failure;
                    let next = match &mut model {
                        Model::Closed(results) if outcome != Outcome::Ignored => {
                            results.push((failed, slow));
                            if results.len() > WINDOW { results.remove(0); }
                            (results.len() >= MIN_CALLS && trips(results)).then_some(true)
                        }
                        Model::HalfOpen { issued, results } => {
                            if outcome == Outcome::Ignored {
                                *issued -= 1;
                                None
                            } else {
                                results.push((failed, slow));
                                (results.len() as u32 >= PROBES).then(|| trips(results))
                            }
                        }
                        _ => None,
                    };
                    match next {
                        Some(true) => { model = Model::Open { until: now + WAIT }; generation += 1; }
                        Some(false) => { model = Model::Closed(Vec::new()); generation += 1; }
                        None => {}
                    }
                }
                Op::Advance(s) => {
                    clock.advance(Duration::from_secs(s));
                    now += Duration::from_secs(s);
                }
            }
            let expected = match model {
                Model::Closed(_) => BreakerState::Closed,
                Model::Open { .. } => BreakerState::Open,
                Model::HalfOpen { .. } => BreakerState::HalfOpen,
            };
            prop_assert_eq!(breaker.state(), expected);
        }
    }
}

#[test]
fn concurrent_failures_trip_exactly_once_and_half_open_admits_n_probes() {
    let clock = ManualClock::new();
    let transitions = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    let counters = Arc::new(EndpointCounters::new());
    let (t, o) = (transitions.clone(), opened.clone());
    let breaker: Arc<dyn Breaker> = Arc::new(
        CircuitBreaker::new(
            BreakerConfig::standard()
                .with_window(SlidingWindow::Count(20))
                .with_minimum_calls(10)
                .with_open_wait(WAIT)
                .with_half_open_probes(3)
                .validate()
                .unwrap(),
            Arc::new(clock.clone()),
        )
        .unwrap()
        .with_counters(counters.clone())
        .with_listener(move |tr| {
            t.fetch_add(1, Ordering::SeqCst);
            if tr.from == BreakerState::Closed && tr.to == BreakerState::Open {
                o.fetch_add(1, Ordering::SeqCst);
            }
        }),
    );
    let threads = 32;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (b, barrier) = (breaker.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..20 {
                    if let Ok(t) = b.try_acquire() {
                        b.on_outcome(t, Outcome::Failure, Duration::from_millis(1));
                    }
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(opened.load(Ordering::SeqCst), 1, "exactly one CLOSED→OPEN");
    assert_eq!(transitions.load(Ordering::SeqCst), 1);
    assert_eq!(counters.snapshot().breaker_trips, 1);
    assert_eq!(breaker.state(), BreakerState::Open);

    // half-open: many threads race for probes, exactly 3 get one
    clock.advance(WAIT);
    let barrier = Arc::new(Barrier::new(threads));
    let guards: Vec<_> = (0..threads)
        .map(|_| {
            let (b, barrier) = (breaker.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                BreakerGuard::acquire(&b).ok()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let admitted: Vec<BreakerGuard> = guards.into_iter().flatten().collect();
    assert_eq!(admitted.len(), 3);
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    // dropping a probe (a cancelled call) frees its slot: one more probe may go
    let mut admitted = admitted;
    drop(admitted.pop());
    let again = BreakerGuard::acquire(&breaker).unwrap();
    assert!(BreakerGuard::acquire(&breaker).is_err());
    admitted.push(again);
    for g in admitted {
        g.record(Outcome::Success, Duration::from_millis(1));
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(counters.snapshot().breaker_state, 0);
}

#[test]
fn open_error_carries_time_left_and_wait_grows() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(
        BreakerConfig::standard()
            .with_window(SlidingWindow::Count(2))
            .with_minimum_calls(2)
            .with_open_wait(Duration::from_secs(10))
            .with_growing_open_wait(2.0, Duration::from_secs(25))
            .with_half_open_probes(1)
            .validate()
            .unwrap(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    for _ in 0..2 {
        let t = b.try_acquire().unwrap();
        b.on_outcome(t, Outcome::Failure, Duration::ZERO);
    }
    clock.advance(Duration::from_secs(4));
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(6))
    );
    for expected in [20u64, 25] {
        clock.advance(Duration::from_secs(30));
        let probe = b.try_acquire().unwrap();
        b.on_outcome(probe, Outcome::Failure, Duration::ZERO);
        assert_eq!(
            b.try_acquire().unwrap_err().retry_after(),
            Some(Duration::from_secs(expected))
        );
    }
}

#[test]
fn open_waits_past_what_a_duration_or_an_instant_holds_keep_it_open_not_a_panic() {
    for (wait, growth) in [(Duration::MAX, 1.0), (Duration::from_secs(10), 1e30)] {
        let clock = ManualClock::new();
        let b = CircuitBreaker::new(
            BreakerConfig::standard()
                .with_window(SlidingWindow::Count(2))
                .with_minimum_calls(2)
                .with_open_wait(wait)
                .with_growing_open_wait(growth, Duration::MAX)
                .with_half_open_probes(1)
                .validate()
                .unwrap(),
            Arc::new(clock.clone()),
        )
        .unwrap();
        for _ in 0..2 {
            let t = b.try_acquire().unwrap();
            b.on_outcome(t, Outcome::Failure, Duration::ZERO);
        }
        if wait < Duration::MAX {
            // the second opening's wait, 10 s × 1e30, is past a `Duration`
            clock.advance(Duration::from_secs(11));
            let probe = b.try_acquire().unwrap();
            b.on_outcome(probe, Outcome::Failure, Duration::ZERO);
        }
        clock.advance(Duration::from_secs(365 * 86_400));
        let e = b.try_acquire().unwrap_err();
        assert!(
            e.retry_after() > Some(Duration::from_secs(20 * 365 * 86_400)),
            "{wait:?} × {growth}: {:?}",
            e.retry_after()
        );
        assert_eq!(b.state(), BreakerState::Open);
    }
}

#[test]
fn time_window_forgets_old_failures_and_ignored_is_not_success() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(
        BreakerConfig::standard()
            .with_window(SlidingWindow::Time {
                window: Duration::from_secs(10),
                buckets: 10,
            })
            .with_minimum_calls(4)
            .validate()
            .unwrap(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    for _ in 0..3 {
        let t = b.try_acquire().unwrap();
        b.on_outcome(t, Outcome::Failure, Duration::ZERO);
    }
    // ignored outcomes (a 400) do not count as calls at all
    for _ in 0..10 {
        let t = b.try_acquire().unwrap();
        b.on_outcome(t, Outcome::Ignored, Duration::ZERO);
    }
    assert_eq!(b.state(), BreakerState::Closed);
    clock.advance(Duration::from_secs(11));
    // the three old failures left the window: one more failure is 1 of 1, below min calls
    let t = b.try_acquire().unwrap();
    b.on_outcome(t, Outcome::Failure, Duration::ZERO);
    assert_eq!(b.state(), BreakerState::Closed);
    for _ in 0..3 {
        let t = b.try_acquire().unwrap();
        b.on_outcome(t, Outcome::Failure, Duration::ZERO);
    }
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn invalid_configs_are_typed_errors() {
    for cfg in [
        BreakerConfig::standard().with_window(SlidingWindow::Count(0)),
        BreakerConfig::standard().with_failure_rate_threshold(150.0),
        BreakerConfig::standard().with_half_open_probes(0),
        BreakerConfig::standard().with_growing_open_wait(0.5, Duration::from_secs(1)),
    ] {
        assert_eq!(cfg.validate().unwrap_err().kind(), ErrorKind::Config);
    }
}

#[test]
fn a_grant_dropped_unused_gives_its_half_open_probe_slot_back() {
    use infermux_resilience::AttemptExecutor;
    use infermux_resilience::queue::QueueConfig;
    let clock = ManualClock::new();
    let exec = AttemptExecutor::with_clock(
        crate::stub::Stub::new(|_| async { crate::stub::ok() }),
        QueueConfig::default(),
        Some(
            BreakerConfig::standard()
                .with_window(SlidingWindow::Count(1))
                .with_minimum_calls(1)
                .with_open_wait(WAIT)
                .with_half_open_probes(1),
        ),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let b = exec.breaker().unwrap();
    let t = b.try_acquire().unwrap();
    b.on_outcome(t, Outcome::Failure, Duration::ZERO);
    assert_eq!(b.state(), BreakerState::Open);
    clock.advance(WAIT);
    // a pool picks the member, then gives the lease back unused (a cancelled caller, a key
    // found cooling in the shared state) — many times over
    for _ in 0..3 {
        let g = exec.try_grant(false).unwrap();
        assert!(g.is_probe());
        drop(g);
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }
    // the slot is still there: a probe that reports its outcome closes the breaker
    let t = b.try_acquire().unwrap();
    assert!(t.is_probe());
    b.on_outcome(t, Outcome::Success, Duration::ZERO);
    assert_eq!(b.state(), BreakerState::Closed);
}
