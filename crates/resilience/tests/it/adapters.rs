//! The opt-in adapters plug into our traits and keep our caps (run with `--all-features`, as
//! `cargo xtask ci` does).

#[cfg(feature = "backoff")]
mod backoff_adapter {
    use std::sync::Arc;
    use std::time::Duration;

    use infermux_core::{Error, ErrorKind};
    use infermux_resilience::adapters::backoff::ExponentialSchedule;
    use infermux_resilience::retry::{Attempt, Decision, RetryPolicy, StandardRetry, StopReason};

    fn policy() -> StandardRetry {
        let template = backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(Duration::from_millis(100))
            .with_multiplier(2.0)
            .with_randomization_factor(0.0)
            .with_max_interval(Duration::from_secs(60))
            .with_max_elapsed_time(Some(Duration::from_millis(1)))
            .build();
        StandardRetry::standard()
            .with_max_attempts(5)
            .with_max_delay(Duration::from_secs(1))
            .with_bases(
                Duration::from_millis(10),
                Duration::from_millis(10),
                Duration::from_millis(300),
            )
            .with_budget(None)
            .with_backoff(Arc::new(ExponentialSchedule::new(template)))
    }

    #[test]
    fn the_schedule_comes_from_backoff_and_our_caps_hold() {
        let p = policy();
        let e = Error::new(ErrorKind::Server, "boom");
        // backoff's schedule: 100, 200, 400, 800 ms, then our 1 s cap (not its 60 s max)
        let delays: Vec<Decision> = (1..5).map(|n| p.decide(&Attempt::new(&e, n))).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800].map(|ms| Decision::Retry(Duration::from_millis(ms)))
        );
        let mut long = policy().with_max_attempts(10);
        long.max_delay = Duration::from_millis(500);
        assert_eq!(
            long.decide(&Attempt::new(&e, 5)),
            Decision::Retry(Duration::from_millis(500))
        );
        // the attempt cap
        assert_eq!(
            p.decide(&Attempt::new(&e, 5)),
            Decision::Stop(StopReason::Exhausted)
        );
        // the throttling floor
        let slow = Error::new(ErrorKind::RateLimited, "slow");
        assert_eq!(
            p.decide(&Attempt::new(&slow, 1)),
            Decision::Retry(Duration::from_millis(300))
        );
        // a Retry-After past the cap fails at once (backoff's own loop would wait it out)
        let far = slow.clone().with_retry_after(Duration::from_secs(90));
        assert_eq!(
            p.decide(&Attempt::new(&far, 1)),
            Decision::Stop(StopReason::RetryAfterTooLong)
        );
        // and one within the cap is a minimum
        let near = slow.with_retry_after(Duration::from_millis(700));
        assert_eq!(
            p.decide(&Attempt::new(&near, 1)),
            Decision::Retry(Duration::from_millis(700))
        );
        // the deadline
        let a = Attempt::new(&e, 3).with_remaining(Some(Duration::from_millis(50)));
        assert_eq!(p.decide(&a), Decision::Stop(StopReason::Deadline));
    }
}

#[cfg(feature = "failsafe")]
mod failsafe_adapter {
    use std::sync::Arc;
    use std::time::Duration;

    use infermux_core::{
        ChatRequest, EndpointConfig, ErrorKind, Message, Provider, Request, RequestContext,
    };
    use infermux_openai_compat::OpenAiCompat;
    use infermux_resilience::adapters::failsafe::FailsafeBreaker;
    use infermux_resilience::breaker::{Breaker, BreakerGuard, BreakerState, Outcome};
    use infermux_resilience::retry::StandardRetry;
    use infermux_resilience::{ResilienceConfig, Resilient};
    use infermux_testkit::{Fault, FaultPlan, Simulator};

    fn breaker(
        wait: Duration,
        probes: u32,
    ) -> FailsafeBreaker<impl failsafe::failure_policy::FailurePolicy + Send + Sync> {
        let policy =
            failsafe::failure_policy::consecutive_failures(3, failsafe::backoff::constant(wait));
        FailsafeBreaker::new(policy, probes)
    }

    #[test]
    fn half_open_admits_only_our_probes_and_ignored_is_not_success() {
        // a zero open wait: failsafe goes half-open on the next call, no waiting needed
        let b = breaker(Duration::ZERO, 2);
        for _ in 0..3 {
            let t = b.try_acquire().unwrap();
            b.on_outcome(t, Outcome::Failure, Duration::ZERO);
        }
        assert_eq!(b.state(), BreakerState::Open);
        let p1 = b.try_acquire().unwrap();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let p2 = b.try_acquire().unwrap();
        // failsafe alone would let a third call through in half-open
        assert!(b.machine().is_call_permitted());
        let third = b.try_acquire().unwrap_err();
        assert_eq!(third.kind(), ErrorKind::CircuitOpen);
        // an ignored outcome (a 400) frees its slot and does not close the breaker
        b.on_outcome(p1, Outcome::Ignored, Duration::ZERO);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let p3 = b.try_acquire().unwrap();
        b.on_outcome(p3, Outcome::Success, Duration::ZERO);
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_outcome(p2, Outcome::Success, Duration::ZERO);
        assert_eq!(b.state(), BreakerState::Closed);
        // a dropped guard is ignored too
        let shared: Arc<dyn Breaker> = Arc::new(breaker(Duration::ZERO, 1));
        drop(BreakerGuard::acquire(&shared).unwrap());
        assert_eq!(shared.state(), BreakerState::Closed);
    }

    /// Two threads: one re-opens the breaker from every probe it gets (a failure) while the
    /// other takes whatever it is given and ignores it, across many open → half-open turns.
    /// However their steps interleave, a probe slot is never lost: at the end, a half-open
    /// breaker still hands out its one probe.
    #[test]
    fn no_probe_slot_is_lost_across_state_changes_under_contention() {
        let b = Arc::new(breaker(Duration::ZERO, 1));
        // a fixed amount of work shared by both (no clock), started together, so they run
        // side by side until it is done
        let turns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let start = Arc::new(std::sync::Barrier::new(2));
        let spin = |fail: bool| {
            let (b, turns, start) = (b.clone(), turns.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                while turns.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 4_000_000 {
                    if let Ok(t) = b.try_acquire() {
                        let o = if fail {
                            Outcome::Failure
                        } else {
                            Outcome::Ignored
                        };
                        b.on_outcome(t, o, Duration::ZERO);
                    }
                }
            })
        };
        let threads = [spin(true), spin(false)];
        for t in threads {
            t.join().unwrap();
        }
        // drive it to half-open, then its probe must be free
        for _ in 0..3 {
            if let Ok(t) = b.try_acquire() {
                b.on_outcome(t, Outcome::Failure, Duration::ZERO);
            }
        }
        let probe = b.try_acquire();
        assert!(probe.is_ok(), "{:?}: {probe:?}", b.state());
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[tokio::test]
    async fn plugs_into_the_stack() {
        let sim = Simulator::start(FaultPlan::seeded(3).with(Fault::Unavailable, 1.0))
            .await
            .unwrap();
        let provider: Arc<dyn Provider> = Arc::new(
            OpenAiCompat::new(EndpointConfig::new("sim", format!("{}/v1", sim.url())).unwrap())
                .unwrap(),
        );
        let stack = Resilient::new(
            provider,
            ResilienceConfig::standard().with_retry(Arc::new(StandardRetry::disabled())),
        )
        .unwrap()
        .with_breaker(Some(Arc::new(breaker(Duration::from_secs(600), 1))));
        let req = Request::Chat(ChatRequest::new("m", vec![Message::user("x")]));
        for _ in 0..3 {
            let e = stack.call(&req, &RequestContext::new()).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Server);
        }
        let e = stack.call(&req, &RequestContext::new()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CircuitOpen);
        assert_eq!(sim.requests(), 3);
    }
}
