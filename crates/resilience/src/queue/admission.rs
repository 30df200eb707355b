//! The admission queue and its permits.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use infermux_core::{Clock, EndpointCounters, Error, ErrorKind, Priority, Result, SystemClock};
use tokio::sync::{oneshot, watch};

/// Configuration of an [`Admission`] queue.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QueueConfig {
    /// Requests in flight at once (the pool's concurrency limit). Default 64.
    pub permits: usize,
    /// Requests that may wait. Default 10 000.
    pub max_queued: usize,
    /// A waiter's level rises by one for every `age_step` waited. Default 2 s.
    pub age_step: Duration,
}

impl QueueConfig {
    /// The defaults listed on each field.
    pub fn standard() -> Self {
        QueueConfig {
            permits: 64,
            max_queued: 10_000,
            age_step: Duration::from_secs(2),
        }
    }
    /// Sets the number of permits.
    pub fn with_permits(mut self, n: usize) -> Self {
        self.permits = n;
        self
    }
    /// Sets the queue bound.
    pub fn with_max_queued(mut self, n: usize) -> Self {
        self.max_queued = n;
        self
    }
    /// Sets the ageing step.
    pub fn with_age_step(mut self, d: Duration) -> Self {
        self.age_step = d;
        self
    }
    /// Checks the values (the queue's constructors also do): at least one permit, and a
    /// non-zero ageing step. `max_queued` may be 0 (no waiting: `QueueFull` whenever every
    /// permit is taken).
    ///
    /// ```
    /// use infermux_resilience::queue::QueueConfig;
    /// assert!(QueueConfig::standard().validate().is_ok());
    /// assert!(QueueConfig::standard().with_permits(0).validate().is_err());
    /// ```
    pub fn validate(self) -> Result<Self> {
        if self.permits == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                "an admission queue needs at least one permit",
            ));
        }
        if self.age_step.is_zero() {
            return Err(Error::new(
                ErrorKind::Config,
                "the ageing step must be longer than zero",
            ));
        }
        Ok(self)
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self::standard()
    }
}

struct Waiter {
    seq: u64,
    since: Instant,
    grant: oneshot::Sender<()>,
}

struct State {
    available: usize,
    levels: [VecDeque<Waiter>; 3],
    queued: usize,
    next_seq: u64,
}

struct Shared {
    config: QueueConfig,
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    counters: Option<Arc<EndpointCounters>>,
    queued_tx: watch::Sender<usize>,
}

fn level(p: Priority) -> usize {
    match p {
        Priority::Low => 0,
        Priority::High => 2,
        _ => 1,
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives a freed permit to the best waiter, or back to the pool. Called with the lock held.
    fn release_locked(&self, st: &mut State) {
        let now = self.clock.now();
        let step = self.config.age_step.as_nanos().max(1);
        loop {
            let mut best: Option<(usize, u128, u64)> = None; // (level index, effective, seq)
            for (lvl, q) in st.levels.iter().enumerate() {
                if let Some(w) = q.front() {
                    let aged = now.saturating_duration_since(w.since).as_nanos() / step;
                    let effective = (lvl as u128 + aged).min(2);
                    let better = match best {
                        None => true,
                        Some((_, e, s)) => effective > e || (effective == e && w.seq < s),
                    };
                    if better {
                        best = Some((lvl, effective, w.seq));
                    }
                }
            }
            let Some((lvl, _, _)) = best else {
                st.available += 1;
                return;
            };
            let Some(w) = st.levels.get_mut(lvl).and_then(VecDeque::pop_front) else {
                st.available += 1;
                return;
            };
            st.queued -= 1;
            self.queued_changed(st.queued);
            if w.grant.send(()).is_ok() {
                return;
            }
            // the waiter is gone (cannot happen while its guard removes it first): try the next
        }
    }

    fn queued_changed(&self, queued: usize) {
        self.queued_tx.send_replace(queued);
    }
}

/// A bounded priority admission queue over a fixed number of permits. Cheap to clone.
#[derive(Clone)]
pub struct Admission {
    shared: Arc<Shared>,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("Admission")
            .field("available", &st.available)
            .field("queued", &st.queued)
            .field("config", &self.shared.config)
            .finish()
    }
}

/// A permit to send one attempt; dropping it frees it (to the next waiter).
pub struct Permit {
    shared: Arc<Shared>,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Permit")
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        self.shared.release_locked(&mut st);
    }
}

/// Removes a waiter that gave up, or returns a permit granted to it meanwhile.
struct WaitGuard {
    shared: Arc<Shared>,
    level: usize,
    seq: u64,
    rx: Option<oneshot::Receiver<()>>,
    queued_guard: bool,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        if self.queued_guard
            && let Some(c) = &self.shared.counters
        {
            c.adjust_queued(-1);
        }
        let Some(mut rx) = self.rx.take() else { return };
        let mut st = self.shared.lock();
        let removed = st.levels.get_mut(self.level).and_then(|q| {
            let pos = q.binary_search_by_key(&self.seq, |w| w.seq).ok()?;
            q.remove(pos)
        });
        if removed.is_some() {
            st.queued -= 1;
            self.shared.queued_changed(st.queued);
        } else if rx.try_recv().is_ok() {
            // granted while we were leaving: pass the permit on
            self.shared.release_locked(&mut st);
        }
    }
}

impl Admission {
    /// A queue with the real clock; fails with [`ErrorKind::Config`] when `config` does not
    /// pass [`QueueConfig::validate`].
    pub fn new(config: QueueConfig) -> Result<Self> {
        Self::with_clock(config, Arc::new(SystemClock), None)
    }

    /// A queue reading time from `clock` (ageing, wait times) and filling `counters`; fails
    /// like [`Admission::new`].
    pub fn with_clock(
        config: QueueConfig,
        clock: Arc<dyn Clock>,
        counters: Option<Arc<EndpointCounters>>,
    ) -> Result<Self> {
        Ok(Self::unchecked(config.validate()?, clock, counters))
    }

    pub(crate) fn unchecked(
        config: QueueConfig,
        clock: Arc<dyn Clock>,
        counters: Option<Arc<EndpointCounters>>,
    ) -> Self {
        Admission {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    available: config.permits,
                    levels: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
                    queued: 0,
                    next_seq: 0,
                }),
                config,
                clock,
                counters,
                queued_tx: watch::channel(0).0,
            }),
        }
    }

    /// Waits for a permit at `priority`. Fails at once with `QueueFull` when the queue is full.
    /// Cancel-safe: dropping the future frees its place.
    pub async fn acquire(&self, priority: Priority) -> Result<Permit> {
        let lvl = level(priority);
        let (rx, seq, since) = {
            let mut st = self.shared.lock();
            if st.available > 0 && st.queued == 0 {
                st.available -= 1;
                return Ok(Permit {
                    shared: self.shared.clone(),
                });
            }
            if st.queued >= self.shared.config.max_queued {
                tracing::debug!("infermux.queue.queued" = st.queued, "admission queue full");
                return Err(Error::new(
                    ErrorKind::QueueFull,
                    format!("the admission queue is full ({} waiting)", st.queued),
                ));
            }
            let (tx, rx) = oneshot::channel();
            let seq = st.next_seq;
            st.next_seq += 1;
            let since = self.shared.clock.now();
            if let Some(q) = st.levels.get_mut(lvl) {
                q.push_back(Waiter {
                    seq,
                    since,
                    grant: tx,
                });
            }
            st.queued += 1;
            self.shared.queued_changed(st.queued);
            (rx, seq, since)
        };
        if let Some(c) = &self.shared.counters {
            c.adjust_queued(1);
        }
        let mut guard = WaitGuard {
            shared: self.shared.clone(),
            level: lvl,
            seq,
            rx: Some(rx),
            queued_guard: true,
        };
        let granted = match guard.rx.as_mut() {
            Some(rx) => rx.await.is_ok(),
            None => false,
        };
        guard.rx = None;
        drop(guard);
        if !granted {
            return Err(Error::new(
                ErrorKind::Cancelled,
                "the admission queue was dropped",
            ));
        }
        // the clock is read only when someone looks at the wait
        let traced = tracing::enabled!(tracing::Level::DEBUG);
        if traced || self.shared.counters.is_some() {
            let waited = self.shared.clock.now().saturating_duration_since(since);
            tracing::debug!(
                "infermux.queue.wait_ms" = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                "infermux.priority" = ?priority,
                "admitted after waiting"
            );
            if let Some(c) = &self.shared.counters {
                c.record_queue_wait(waited);
            }
        }
        Ok(Permit {
            shared: self.shared.clone(),
        })
    }

    /// Permits free now.
    pub fn available(&self) -> usize {
        self.shared.lock().available
    }

    /// Requests waiting now.
    pub fn queued(&self) -> usize {
        self.shared.lock().queued
    }

    /// Waits until at least `n` requests are queued (for tests and demos; no polling).
    pub async fn wait_queued(&self, n: usize) {
        let mut rx = self.shared.queued_tx.subscribe();
        let _ = rx.wait_for(|q| *q >= n).await;
    }
}
