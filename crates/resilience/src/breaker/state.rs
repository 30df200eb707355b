//! The breaker's state machine.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use infermux_core::{Clock, EndpointCounters, Error, ErrorKind, Result};

use super::config::BreakerConfig;
use super::config::SlidingWindow;
use super::window::{ATOMIC_RING_MAX, AtomicRing, Window};

pub use infermux_core::BreakerState;

/// How one call ended, as far as the breaker is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The call succeeded.
    Success,
    /// The call failed in a way that says the endpoint is unhealthy.
    Failure,
    /// The call says nothing about the endpoint's health (a 400, a 429, a cancelled call).
    Ignored,
}

impl Outcome {
    /// The default classification of a call's result: 5xx, timeouts, connection failures,
    /// overload and undecodable answers are failures; invalid requests, auth and quota
    /// problems, rate limits (they cool a key down, not an endpoint), unsupported operations
    /// (a 501 says nothing about health) and cancellations are ignored. The resilience stack
    /// also ignores a timeout caused by the caller's own deadline.
    pub fn of<T>(result: &Result<T>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) => Self::of_error(e),
        }
    }

    /// The classification of an error.
    pub fn of_error(e: &Error) -> Outcome {
        match e.kind() {
            ErrorKind::Server
            | ErrorKind::Timeout
            | ErrorKind::Connect
            | ErrorKind::Overloaded
            | ErrorKind::Decode => Outcome::Failure,
            ErrorKind::Unsupported | ErrorKind::Cancelled => Outcome::Ignored,
            _ => Outcome::Ignored,
        }
    }

    /// A stable snake_case name: `success`, `failure`, `ignored`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Ignored => "ignored",
        }
    }
}

/// One state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition {
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
    /// When.
    pub at: Instant,
}

/// Permission to make one call, returned by [`Breaker::try_acquire`]; hand it back with the
/// outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    generation: u64,
    probe: bool,
}

impl Ticket {
    /// A ticket for breakers defined outside this module (adapters).
    pub fn new(generation: u64, probe: bool) -> Self {
        Ticket { generation, probe }
    }
    /// The state generation it was issued in.
    pub fn generation(&self) -> u64 {
        self.generation
    }
    /// Whether it is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

/// A circuit breaker: synchronous decisions, one outcome per admitted call.
pub trait Breaker: Send + Sync + fmt::Debug {
    /// Admits a call, or refuses it with a [`ErrorKind::CircuitOpen`] error carrying the time
    /// left before a probe may pass.
    fn try_acquire(&self) -> Result<Ticket>;
    /// Reports how an admitted call ended; `time_to_first_byte` decides slowness.
    fn on_outcome(&self, ticket: Ticket, outcome: Outcome, time_to_first_byte: Duration);
    /// The current state.
    fn state(&self) -> BreakerState;
}

/// A ticket that reports [`Outcome::Ignored`] if dropped without an outcome (a cancelled
/// call frees its half-open probe slot, it is never a failure).
pub struct BreakerGuard {
    breaker: Arc<dyn Breaker>,
    ticket: Option<Ticket>,
}

impl fmt::Debug for BreakerGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerGuard")
            .field("ticket", &self.ticket)
            .finish()
    }
}

impl BreakerGuard {
    /// Guards a ticket already acquired from `breaker`.
    pub(crate) fn from_ticket(breaker: Arc<dyn Breaker>, ticket: Ticket) -> Self {
        BreakerGuard {
            breaker,
            ticket: Some(ticket),
        }
    }
    /// Acquires a guarded ticket.
    pub fn acquire(breaker: &Arc<dyn Breaker>) -> Result<Self> {
        let ticket = breaker.try_acquire()?;
        Ok(BreakerGuard {
            breaker: breaker.clone(),
            ticket: Some(ticket),
        })
    }
    /// Reports the outcome.
    pub fn record(mut self, outcome: Outcome, time_to_first_byte: Duration) {
        if let Some(t) = self.ticket.take() {
            self.breaker.on_outcome(t, outcome, time_to_first_byte);
        }
    }
}

impl Drop for BreakerGuard {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.breaker.on_outcome(t, Outcome::Ignored, Duration::ZERO);
        }
    }
}

enum Phase {
    Closed {
        /// The window, when it is not the breaker's lock-free ring.
        window: Option<Window>,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        issued: u32,
        done: u32,
        failures: u32,
        slow: u32,
    },
}

struct State {
    phase: Phase,
    generation: u64,
    reopens: u32,
}

type Listener = Arc<dyn Fn(&Transition) + Send + Sync>;

/// The state code and generation in one word (`generation << 2 | code`), written under the
/// lock at each transition and read without it: a closed breaker admits with one load.
fn status_word(generation: u64, state: BreakerState) -> u64 {
    (generation << 2) | u64::from(state.code())
}

fn status_state(word: u64) -> BreakerState {
    match word & 3 {
        0 => BreakerState::Closed,
        1 => BreakerState::Open,
        _ => BreakerState::HalfOpen,
    }
}

/// The breaker of one endpoint (see the [module docs](super)).
///
/// A closed breaker admits without its lock (one atomic load), and a count window of up to
/// 4096 calls records without it too (an atomic ring); the lock is taken to change state and
/// while open or half-open, so each change still happens once, under the lock.
pub struct CircuitBreaker {
    /// [`status_word`]: read on every admission, written only on a transition.
    status: AtomicU64,
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    /// The closed state's count window, when it is one the ring holds.
    ring: Option<AtomicRing>,
    state: Mutex<State>,
    listener: Option<Listener>,
    counters: Option<Arc<EndpointCounters>>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("state", &self.state())
            .field("config", &self.config)
            .finish()
    }
}

impl CircuitBreaker {
    /// A closed breaker; fails with [`ErrorKind::Config`] when `config` does not pass
    /// [`BreakerConfig::validate`].
    pub fn new(config: BreakerConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        Ok(Self::unchecked(config.validate()?, clock))
    }

    /// A closed breaker from a config known to be valid.
    pub(crate) fn unchecked(config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now();
        let ring = match config.window {
            SlidingWindow::Count(n) if n <= ATOMIC_RING_MAX => Some(AtomicRing::new(n)),
            _ => None,
        };
        let window = ring.is_none().then(|| Window::new(config.window, now));
        CircuitBreaker {
            status: AtomicU64::new(status_word(0, BreakerState::Closed)),
            state: Mutex::new(State {
                phase: Phase::Closed { window },
                generation: 0,
                reopens: 0,
            }),
            ring,
            config,
            clock,
            listener: None,
            counters: None,
        }
    }

    /// Calls `listener` once per state change (after the change, outside the lock).
    pub fn with_listener(mut self, listener: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Mirrors state and trips into the endpoint's counters.
    pub fn with_counters(mut self, counters: Arc<EndpointCounters>) -> Self {
        self.counters = Some(counters);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn transition(&self, st: &mut State, to: Phase, now: Instant) -> Transition {
        let from = phase_state(&st.phase);
        st.phase = to;
        st.generation += 1;
        let to_state = phase_state(&st.phase);
        if to_state == BreakerState::Closed
            && let Some(ring) = &self.ring
        {
            // emptied before the closed state is published: no admission sees old calls
            ring.clear();
        }
        self.status
            .store(status_word(st.generation, to_state), Ordering::Release);
        // the gauge too, under the lock: set after it (in `emit`), a transition descheduled
        // there could overwrite a later one's state for good
        if let Some(c) = &self.counters {
            c.set_breaker_state(to_state.code());
        }
        Transition {
            from,
            to: phase_state(&st.phase),
            at: now,
        }
    }

    fn open(&self, st: &mut State, now: Instant) -> Transition {
        let wait = self.config.open_wait_for(st.reopens);
        st.reopens = st.reopens.saturating_add(1);
        // an open wait past what an `Instant` holds is open for good (some thirty years)
        let until = now
            .checked_add(wait)
            .unwrap_or_else(|| now + infermux_core::FAR_FUTURE);
        self.transition(st, Phase::Open { until }, now)
    }

    fn emit(&self, t: Option<Transition>) {
        let Some(t) = t else { return };
        tracing::info!(
            "infermux.breaker.from" = t.from.as_str(),
            "infermux.breaker.to" = t.to.as_str(),
            "circuit breaker state changed"
        );
        if let Some(c) = &self.counters
            && t.from == BreakerState::Closed
            && t.to == BreakerState::Open
        {
            c.record_breaker_trip();
        }
        if let Some(l) = &self.listener {
            l(&t);
        }
    }

    fn trips(&self, calls: u32, failures: u32, slow: u32) -> bool {
        let rate = |n: u32| f64::from(n) * 100.0 / f64::from(calls.max(1));
        rate(failures) >= f64::from(self.config.failure_rate_threshold)
            || rate(slow) >= f64::from(self.config.slow_call_rate_threshold)
    }

    /// Opens a closed breaker whose ring reached a threshold, unless another call already
    /// changed the state since `generation`: of many failures that see the rate at once,
    /// exactly one opens it.
    fn trip(&self, generation: u64) {
        let mut st = self.lock();
        if st.generation != generation || !matches!(st.phase, Phase::Closed { .. }) {
            return;
        }
        let event = self.open(&mut st, self.clock.now());
        drop(st);
        self.emit(Some(event));
    }
}

fn phase_state(p: &Phase) -> BreakerState {
    match p {
        Phase::Closed { .. } => BreakerState::Closed,
        Phase::Open { .. } => BreakerState::Open,
        Phase::HalfOpen { .. } => BreakerState::HalfOpen,
    }
}

impl Breaker for CircuitBreaker {
    fn try_acquire(&self) -> Result<Ticket> {
        let word = self.status.load(Ordering::Acquire);
        if status_state(word) == BreakerState::Closed {
            return Ok(Ticket {
                generation: word >> 2,
                probe: false,
            });
        }
        let mut st = self.lock();
        let mut event = None;
        let result = match &mut st.phase {
            Phase::Closed { .. } => Ok(Ticket {
                generation: st.generation,
                probe: false,
            }),
            Phase::Open { until } => {
                let now = self.clock.now();
                if now >= *until {
                    let to = Phase::HalfOpen {
                        issued: 1,
                        done: 0,
                        failures: 0,
                        slow: 0,
                    };
                    event = Some(self.transition(&mut st, to, now));
                    Ok(Ticket {
                        generation: st.generation,
                        probe: true,
                    })
                } else {
                    Err(Error::new(
                        ErrorKind::CircuitOpen,
                        "the endpoint's circuit breaker is open",
                    )
                    .with_retry_after(*until - now))
                }
            }
            Phase::HalfOpen { issued, .. } => {
                if *issued < self.config.half_open_probes {
                    *issued += 1;
                    Ok(Ticket {
                        generation: st.generation,
                        probe: true,
                    })
                } else {
                    Err(Error::new(
                        ErrorKind::CircuitOpen,
                        "the endpoint's circuit breaker is half-open and all probes are out",
                    ))
                }
            }
        };
        drop(st);
        self.emit(event);
        result
    }

    fn on_outcome(&self, ticket: Ticket, outcome: Outcome, time_to_first_byte: Duration) {
        let word = self.status.load(Ordering::Acquire);
        if ticket.generation != word >> 2 {
            return; // issued in an earlier state: says nothing about this one
        }
        let slow = time_to_first_byte >= self.config.slow_call_duration;
        let failed = outcome == Outcome::Failure;
        if status_state(word) == BreakerState::Closed
            && let Some(ring) = &self.ring
        {
            // the closed state's count window, without the lock
            if outcome == Outcome::Ignored {
                return;
            }
            let recorded = ring.record(failed, slow);
            // a fast success lowers both rates, so it can trip the breaker only as the call
            // that brings the window to its minimum: otherwise the totals need no reading
            if !failed && !slow && recorded != Some(u64::from(self.config.minimum_calls)) {
                return;
            }
            let t = ring.totals();
            if t.calls >= self.config.minimum_calls && self.trips(t.calls, t.failures, t.slow) {
                self.trip(ticket.generation);
            }
            return;
        }
        let mut st = self.lock();
        if ticket.generation != st.generation {
            return; // issued in an earlier state: says nothing about this one
        }
        let probes = self.config.half_open_probes;
        let mut event = None;
        let mut next: Option<Phase> = None;
        let mut reopen = false;
        let now = self.clock.now();
        match &mut st.phase {
            Phase::Closed { window: None } => {} // recorded in the ring, without the lock
            Phase::Closed {
                window: Some(window),
            } => {
                if outcome != Outcome::Ignored {
                    let cap = match self.config.window {
                        super::SlidingWindow::Count(n) => n,
                        _ => u32::MAX,
                    };
                    window.record(failed, slow, now, cap);
                    let t = window.totals(now);
                    if t.calls >= self.config.minimum_calls
                        && self.trips(t.calls, t.failures, t.slow)
                    {
                        reopen = true;
                    }
                }
            }
            Phase::Open { .. } => {}
            Phase::HalfOpen {
                issued,
                done,
                failures,
                slow: slow_n,
            } => {
                if outcome == Outcome::Ignored {
                    *issued = issued.saturating_sub(1);
                } else {
                    *done += 1;
                    *failures += u32::from(failed);
                    *slow_n += u32::from(slow);
                    if *done >= probes {
                        if self.trips(*done, *failures, *slow_n) {
                            reopen = true;
                        } else {
                            next = Some(Phase::Closed {
                                window: self
                                    .ring
                                    .is_none()
                                    .then(|| Window::new(self.config.window, now)),
                            });
                        }
                    }
                }
            }
        }
        if reopen {
            event = Some(self.open(&mut st, now));
        } else if let Some(phase) = next {
            st.reopens = 0;
            event = Some(self.transition(&mut st, phase, now));
        }
        drop(st);
        self.emit(event);
    }

    fn state(&self) -> BreakerState {
        status_state(self.status.load(Ordering::Acquire))
    }
}
