//! A circuit breaker per endpoint with resilience4j's semantics.
//!
//! - **Closed**: calls pass; outcomes fill a count-based (last N calls) or time-based (last T
//!   seconds, in buckets) sliding window. Once the window holds at least `minimum_calls`, a
//!   failure rate or a slow-call rate at or above its threshold opens the breaker.
//! - **Open**: calls fail at once with [`ErrorKind::CircuitOpen`](infermux_core::ErrorKind)
//!   carrying the time left; after `open_wait` (optionally growing on each re-open) the next
//!   call moves it to half-open.
//! - **Half-open**: exactly `half_open_probes` calls are admitted; when all have reported, the
//!   breaker closes, or opens again if their failure or slow rate reaches a threshold. A probe
//!   that ends ignored or cancelled frees its slot for another probe.
//!
//! Outcomes are success, failure or ignored ([`Outcome`]): a 400 is ignored, not a success.
//! Each state change is also a `tracing` event (in module `breaker`).
//! Slow means a slow time to first byte, not a long generation. Every state change happens
//! under one lock, so concurrent failures produce exactly one transition and one event.
//! A closed breaker admits without the lock (one atomic load), and records a count window of
//! up to 4096 calls without it too (an atomic ring of outcome bits, its totals popcounts);
//! with one caller at a time that window is exactly the last N calls, and calls racing each
//! other may see it a call behind (a trip can come one call later, never from a torn count).
//!
//! ```
//! use infermux_core::ManualClock;
//! use infermux_resilience::breaker::{Breaker, BreakerConfig, BreakerState, CircuitBreaker, Outcome, SlidingWindow};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let config = BreakerConfig::standard()
//!     .with_window(SlidingWindow::Count(4))
//!     .with_minimum_calls(4)
//!     .with_open_wait(Duration::from_secs(10))
//!     .with_half_open_probes(1);
//! let breaker = CircuitBreaker::new(config, Arc::new(clock.clone())).unwrap();
//! for _ in 0..4 {
//!     let ticket = breaker.try_acquire().unwrap();
//!     breaker.on_outcome(ticket, Outcome::Failure, Duration::from_millis(5));
//! }
//! assert_eq!(breaker.state(), BreakerState::Open);
//! assert!(breaker.try_acquire().is_err());
//! clock.advance(Duration::from_secs(10));
//! let probe = breaker.try_acquire().unwrap();
//! assert_eq!(breaker.state(), BreakerState::HalfOpen);
//! breaker.on_outcome(probe, Outcome::Success, Duration::from_millis(5));
//! assert_eq!(breaker.state(), BreakerState::Closed);
//! ```

mod config;
mod state;
mod window;

pub use config::{BreakerConfig, MAX_WINDOW_BUCKETS, MAX_WINDOW_CALLS, SlidingWindow};
pub use state::{Breaker, BreakerGuard, BreakerState, CircuitBreaker, Outcome, Ticket, Transition};
