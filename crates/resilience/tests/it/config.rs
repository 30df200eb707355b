//! Item 9: configuration is validated — every constructor that takes a config rejects nonsense
//! with a typed `Config` error, and the `failsafe` adapter ignores outcomes of tickets issued
//! in an earlier state.

use std::sync::Arc;
use std::time::Duration;

use infermux_core::{ErrorKind, SystemClock};
use infermux_resilience::breaker::{BreakerConfig, CircuitBreaker, SlidingWindow};
use infermux_resilience::queue::{Admission, QueueConfig};
use infermux_resilience::retry::StandardRetry;
use infermux_resilience::{ResilienceConfig, Resilient};

use crate::stub::{Stub, ok};

#[test]
fn each_nonsense_config_is_rejected() {
    let b = BreakerConfig::standard;
    let breakers = [
        (
            "zero failure threshold",
            b().with_failure_rate_threshold(0.0),
        ),
        (
            "negative failure threshold",
            b().with_failure_rate_threshold(-5.0),
        ),
        (
            "failure threshold over 100",
            b().with_failure_rate_threshold(100.5),
        ),
        (
            "NaN failure threshold",
            b().with_failure_rate_threshold(f32::NAN),
        ),
        (
            "zero slow-call threshold",
            b().with_slow_calls(0.0, Duration::from_secs(1)),
        ),
        (
            "zero slow-call duration",
            b().with_slow_calls(50.0, Duration::ZERO),
        ),
        (
            "zero count window",
            b().with_window(SlidingWindow::Count(0)),
        ),
        (
            "zero time window",
            b().with_window(SlidingWindow::Time {
                window: Duration::ZERO,
                buckets: 10,
            }),
        ),
        (
            "no buckets",
            b().with_window(SlidingWindow::Time {
                window: Duration::from_secs(10),
                buckets: 0,
            }),
        ),
        (
            "more minimum calls than the window holds",
            b().with_window(SlidingWindow::Count(10))
                .with_minimum_calls(11),
        ),
        ("zero minimum calls", b().with_minimum_calls(0)),
        ("zero half-open probes", b().with_half_open_probes(0)),
        (
            "shrinking open wait",
            b().with_growing_open_wait(0.5, Duration::from_secs(60)),
        ),
    ];
    for (what, cfg) in breakers {
        let e = cfg
            .clone()
            .validate()
            .err()
            .unwrap_or_else(|| panic!("{what} accepted"));
        assert_eq!(e.kind(), ErrorKind::Config, "{what}");
        assert!(
            CircuitBreaker::new(cfg.clone(), Arc::new(SystemClock)).is_err(),
            "{what}: the breaker's constructor checks too"
        );
        let stack = Resilient::new(
            Stub::new(|_| async { ok() }),
            ResilienceConfig::standard().with_breaker(Some(cfg)),
        );
        assert_eq!(
            stack.err().map(|e| e.kind()),
            Some(ErrorKind::Config),
            "{what}"
        );
    }
    assert!(b().validate().is_ok(), "the standard config is valid");
    assert!(
        b().with_failure_rate_threshold(100.0).validate().is_ok(),
        "100 % is in range"
    );

    let q = QueueConfig::standard;
    for (what, cfg) in [
        ("zero permits", q().with_permits(0)),
        ("zero ageing step", q().with_age_step(Duration::ZERO)),
    ] {
        assert_eq!(
            cfg.clone().validate().err().map(|e| e.kind()),
            Some(ErrorKind::Config),
            "{what}"
        );
        assert!(Admission::new(cfg.clone()).is_err(), "{what}");
        let stack = Resilient::new(
            Stub::new(|_| async { ok() }),
            ResilienceConfig::standard().with_queue(cfg),
        );
        assert!(stack.is_err(), "{what}");
    }
    assert!(
        q().with_max_queued(0).validate().is_ok(),
        "no waiting room is a choice"
    );

    let r = StandardRetry::standard;
    for (what, cfg) in [
        ("zero attempts", r().with_max_attempts(0)),
        (
            "floor above the cap",
            r().with_max_delay(Duration::from_millis(100)),
        ),
    ] {
        assert_eq!(
            cfg.validate().err().map(|e| e.kind()),
            Some(ErrorKind::Config),
            "{what}"
        );
    }
    assert!(ResilienceConfig::standard().validate().is_ok());
    assert!(ResilienceConfig::disabled().validate().is_ok());
}

#[cfg(feature = "failsafe")]
#[test]
fn a_stale_failsafe_success_does_not_close_a_half_open_breaker() {
    use infermux_core::{EndpointCounters, ErrorKind};
    use infermux_resilience::adapters::failsafe::FailsafeBreaker;
    use infermux_resilience::breaker::{Breaker, BreakerState, Outcome};

    let counters = Arc::new(EndpointCounters::new());
    let policy = failsafe::failure_policy::consecutive_failures(
        1,
        failsafe::backoff::constant(Duration::ZERO),
    );
    let b = FailsafeBreaker::new(policy, 1).with_counters(counters.clone());
    let slow = b.try_acquire().unwrap(); // issued while closed, answers late
    let failing = b.try_acquire().unwrap();
    b.on_outcome(failing, Outcome::Failure, Duration::ZERO);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(counters.snapshot().breaker_state, BreakerState::Open.code());
    assert_eq!(counters.snapshot().breaker_trips, 1);
    let probe = b.try_acquire().unwrap();
    assert_eq!(b.state(), BreakerState::HalfOpen);
    b.on_outcome(slow, Outcome::Success, Duration::ZERO);
    assert_eq!(
        b.state(),
        BreakerState::HalfOpen,
        "a success from before the breaker opened says nothing about now"
    );
    assert_eq!(
        b.try_acquire().unwrap_err().kind(),
        ErrorKind::CircuitOpen,
        "the probe is still out"
    );
    b.on_outcome(probe, Outcome::Success, Duration::ZERO);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(
        counters.snapshot().breaker_state,
        BreakerState::Closed.code()
    );
}
