//! `failsafe` adapter: a [`failsafe::StateMachine`] as the circuit breaker, behind our
//! [`Breaker`] trait.
//!
//! The adapter keeps our semantics where `failsafe`'s differ: in half-open it admits at most
//! `half_open_probes` calls (`failsafe` admits every call); an ignored outcome (a 400, a
//! cancelled call) is reported to `failsafe` neither as a success nor as a failure (its
//! predicate-based API counts ignored errors as successes, which would close a half-open
//! breaker); and an outcome whose ticket was issued in an earlier state (a stale success
//! arriving after the breaker opened and went half-open) is not reported at all. With
//! [`FailsafeBreaker::with_counters`] it fills the endpoint's breaker state and trips, and each
//! state change is a `tracing` event, like our own breaker.
//!
//! ```
//! use infermux_resilience::adapters::failsafe::FailsafeBreaker;
//! use infermux_resilience::breaker::{Breaker, BreakerState, Outcome};
//! use std::time::Duration;
//!
//! let policy = failsafe::failure_policy::consecutive_failures(2, failsafe::backoff::constant(Duration::from_secs(30)));
//! let breaker = FailsafeBreaker::new(policy, 1);
//! for _ in 0..2 {
//!     let t = breaker.try_acquire().unwrap();
//!     breaker.on_outcome(t, Outcome::Failure, Duration::ZERO);
//! }
//! assert_eq!(breaker.state(), BreakerState::Open);
//! assert!(breaker.try_acquire().is_err());
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use failsafe::failure_policy::FailurePolicy;
use failsafe::{Instrument, StateMachine};
use infermux_core::{EndpointCounters, Error, ErrorKind, Result};

use crate::breaker::{Breaker, BreakerState, Outcome, Ticket};

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// Mirrors failsafe's state changes (it has no state getter) and counts state epochs.
#[derive(Debug, Default)]
pub struct Tracker {
    state: AtomicU8,
    epoch: AtomicU64,
    probes: AtomicU32,
    counters: std::sync::OnceLock<Arc<EndpointCounters>>,
}

impl Tracker {
    fn enter(&self, to: u8) {
        if to == HALF_OPEN {
            self.probes.store(0, Ordering::SeqCst);
        }
        let from = self.state.swap(to, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let (from, to) = (state_of(from), state_of(to));
        tracing::info!(
            "infermux.breaker.from" = from.as_str(),
            "infermux.breaker.to" = to.as_str(),
            "circuit breaker state changed"
        );
        if let Some(c) = self.counters.get() {
            c.set_breaker_state(to.code());
            if from == BreakerState::Closed && to == BreakerState::Open {
                c.record_breaker_trip();
            }
        }
    }
}

fn state_of(code: u8) -> BreakerState {
    match code {
        OPEN => BreakerState::Open,
        HALF_OPEN => BreakerState::HalfOpen,
        _ => BreakerState::Closed,
    }
}

/// The instrument failsafe calls: a handle on the shared [`Tracker`].
#[derive(Debug, Clone)]
pub struct TrackerHandle(Arc<Tracker>);

impl Instrument for TrackerHandle {
    fn on_call_rejected(&self) {}
    fn on_open(&self) {
        self.0.enter(OPEN);
    }
    fn on_half_open(&self) {
        self.0.enter(HALF_OPEN);
    }
    fn on_closed(&self) {
        self.0.enter(CLOSED);
    }
}

/// A `failsafe` state machine with our half-open probe cap and ignored outcomes.
pub struct FailsafeBreaker<P> {
    machine: StateMachine<P, TrackerHandle>,
    tracker: Arc<Tracker>,
    max_probes: u32,
}

impl<P> fmt::Debug for FailsafeBreaker<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailsafeBreaker")
            .field("state", &self.tracker.state.load(Ordering::SeqCst))
            .field("max_probes", &self.max_probes)
            .finish()
    }
}

impl<P: FailurePolicy> FailsafeBreaker<P> {
    /// A breaker from a failsafe failure policy, admitting `max_probes` calls in half-open.
    pub fn new(policy: P, max_probes: u32) -> Self {
        let tracker = Arc::new(Tracker::default());
        FailsafeBreaker {
            machine: StateMachine::new(policy, TrackerHandle(tracker.clone())),
            tracker,
            max_probes: max_probes.max(1),
        }
    }

    /// Mirrors state changes and trips into the endpoint's counters (pass
    /// [`Resilient::counters`](crate::Resilient::counters) when plugging it into a stack).
    pub fn with_counters(self, counters: Arc<EndpointCounters>) -> Self {
        counters.set_breaker_state(state_of(self.tracker.state.load(Ordering::SeqCst)).code());
        let _ = self.tracker.counters.set(counters);
        self
    }

    /// The wrapped state machine.
    pub fn machine(&self) -> &StateMachine<P, TrackerHandle> {
        &self.machine
    }
}

fn open_error() -> Error {
    Error::new(
        ErrorKind::CircuitOpen,
        "the endpoint's circuit breaker is open",
    )
}

impl<P: FailurePolicy + Send + Sync> Breaker for FailsafeBreaker<P> {
    fn try_acquire(&self) -> Result<Ticket> {
        if !self.machine.is_call_permitted() {
            return Err(open_error());
        }
        let epoch = self.tracker.epoch.load(Ordering::SeqCst);
        if self.tracker.state.load(Ordering::SeqCst) == HALF_OPEN {
            let taken = self
                .tracker
                .probes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < self.max_probes).then_some(n + 1)
                });
            if taken.is_err() {
                return Err(Error::new(
                    ErrorKind::CircuitOpen,
                    "the endpoint's circuit breaker is half-open and all probes are out",
                ));
            }
            return Ok(Ticket::new(epoch, true));
        }
        Ok(Ticket::new(epoch, false))
    }

    fn on_outcome(&self, ticket: Ticket, outcome: Outcome, _time_to_first_byte: Duration) {
        if ticket.generation() != self.tracker.epoch.load(Ordering::SeqCst) {
            // issued in an earlier state: says nothing about this one (a stale success must
            // not close a half-open breaker, a stale failure not re-open it)
            return;
        }
        match outcome {
            Outcome::Success => self.machine.on_success(),
            Outcome::Failure => self.machine.on_error(),
            _ => {
                // ignored: tell failsafe nothing; free the probe slot
                if ticket.is_probe() {
                    let _ =
                        self.tracker
                            .probes
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                }
            }
        }
    }

    fn state(&self) -> BreakerState {
        state_of(self.tracker.state.load(Ordering::SeqCst))
    }
}
