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
//! state change is a `tracing` event, like our own breaker. The `failsafe` crate itself is
//! re-exported here as [`failsafe`], so a state machine is built with the
//! version this adapter takes.
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

/// The `failsafe` crate this adapter takes its types from, at the same version.
pub use ::failsafe;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::failsafe::failure_policy::FailurePolicy;
use ::failsafe::{Instrument, StateMachine};
use infermux_core::{EndpointCounters, Error, ErrorKind, Result};

use crate::breaker::{Breaker, BreakerState, Outcome, Ticket};

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// Mirrors failsafe's state changes (it has no state getter) and counts state epochs.
#[derive(Debug, Default)]
pub struct Tracker {
    /// The state (bits 0–1), the probes out (bits 2–33) and the state's epoch (the rest), in
    /// one word changed only by compare-and-swap: a ticket's epoch is always that of the
    /// state it was issued in, and a probe is counted in the epoch it was taken in. (Kept
    /// apart, a probe could be taken under an old epoch just as a new half-open state reset
    /// the count; its outcome, judged stale, never freed its slot, and with one probe the
    /// breaker stayed half-open for good.)
    word: AtomicU64,
    counters: std::sync::OnceLock<Arc<EndpointCounters>>,
}

/// One state of the tracker's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Word {
    epoch: u64,
    probes: u32,
    state: u8,
}

impl Word {
    fn of(w: u64) -> Word {
        Word {
            epoch: w >> 34,
            probes: ((w >> 2) & u64::from(u32::MAX)) as u32,
            state: (w & 3) as u8,
        }
    }
    fn bits(self) -> u64 {
        ((self.epoch & ((1 << 30) - 1)) << 34)
            | (u64::from(self.probes) << 2)
            | u64::from(self.state)
    }
}

impl Tracker {
    fn load(&self) -> Word {
        Word::of(self.word.load(Ordering::SeqCst))
    }

    /// Applies `f` to the word atomically; the word before.
    fn update(&self, mut f: impl FnMut(Word) -> Option<Word>) -> std::result::Result<Word, Word> {
        self.word
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                f(Word::of(w)).map(Word::bits)
            })
            .map(Word::of)
            .map_err(Word::of)
    }

    fn enter(&self, to: u8) {
        let old = self
            .update(|w| {
                Some(Word {
                    epoch: (w.epoch + 1) & ((1 << 30) - 1),
                    probes: 0,
                    state: to,
                })
            })
            .unwrap_or_else(|w| w);
        let (from, to) = (state_of(old.state), state_of(to));
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
            .field("state", &self.tracker.load().state)
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
        counters.set_breaker_state(state_of(self.tracker.load().state).code());
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
        let taken = self.tracker.update(|w| {
            (w.state == HALF_OPEN && w.probes < self.max_probes).then(|| Word {
                probes: w.probes + 1,
                ..w
            })
        });
        match taken {
            Ok(w) => Ok(Ticket::new(w.epoch, true)),
            Err(w) if w.state == HALF_OPEN => Err(Error::new(
                ErrorKind::CircuitOpen,
                "the endpoint's circuit breaker is half-open and all probes are out",
            )),
            Err(w) => Ok(Ticket::new(w.epoch, false)),
        }
    }

    fn on_outcome(&self, ticket: Ticket, outcome: Outcome, _time_to_first_byte: Duration) {
        if ticket.generation() != self.tracker.load().epoch {
            // issued in an earlier state: says nothing about this one (a stale success must
            // not close a half-open breaker, a stale failure not re-open it)
            return;
        }
        // the probe is done, whatever it says: its slot is free in its epoch (a success or
        // failure that changes failsafe's state starts a new count anyway; one that does not
        // — failsafe calls its instrument outside its lock, so the state mirrored here can lag
        // its own for a moment — would otherwise hold the slot for good)
        if ticket.is_probe() {
            let _ = self.tracker.update(|w| {
                (w.epoch == ticket.generation() && w.probes > 0).then(|| Word {
                    probes: w.probes - 1,
                    ..w
                })
            });
        }
        match outcome {
            Outcome::Success => self.machine.on_success(),
            Outcome::Failure => self.machine.on_error(),
            // ignored: tell failsafe nothing
            _ => {}
        }
    }

    fn state(&self) -> BreakerState {
        state_of(self.tracker.load().state)
    }
}
