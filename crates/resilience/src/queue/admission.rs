//! The admission queue and its permits.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
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

/// What only the slow path (someone waits) touches, under the lock.
struct State {
    levels: [VecDeque<Waiter>; 3],
    queued: usize,
    next_seq: u64,
}

/// The permits free now, and a flag set while anyone waits, in one word: a free permit is
/// taken and given back with one atomic operation, and the lock is taken only when the flag is
/// set (or about to be). While the flag is set the count is 0 and only the lock holder
/// changes the word: a released permit is handed to a waiter under the lock.
const WAITING: u64 = 1 << 63;

struct Shared {
    /// First, so it shares a cache line with the `Arc`'s counts every permit touches anyway.
    permits: AtomicU64,
    config: QueueConfig,
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    counters: Option<Arc<EndpointCounters>>,
    queued_tx: watch::Sender<usize>,
    /// Called after a permit went back to the free count (not to a waiter of this queue): a
    /// pool over several endpoints wakes its own waiters with it.
    on_release: OnceLock<RwLock<Vec<ReleaseHook>>>,
}

/// What [`Admission::on_release`] calls.
pub type ReleaseHook = Arc<dyn Fn() + Send + Sync>;

fn run_hooks(hooks: &RwLock<Vec<ReleaseHook>>) {
    let hooks = hooks.read().unwrap_or_else(|p| p.into_inner());
    for h in hooks.iter() {
        h();
    }
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

    /// Takes a free permit without the lock, unless none is free or someone waits.
    fn try_take(&self) -> bool {
        self.permits
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |w| {
                (w & WAITING == 0 && w > 0).then(|| w - 1)
            })
            .is_ok()
    }

    /// Gives a permit back: without the lock when nobody waits, else to the best waiter.
    fn release(&self) {
        let given_back = self
            .permits
            .fetch_update(Ordering::Release, Ordering::Relaxed, |w| {
                (w & WAITING == 0).then(|| w + 1)
            })
            .is_ok();
        if !given_back {
            let mut st = self.lock();
            self.release_locked(&mut st);
        } else if let Some(hooks) = self.on_release.get() {
            run_hooks(hooks);
        }
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
            let Some(w) = best.and_then(|(lvl, _, _)| st.levels.get_mut(lvl)?.pop_front()) else {
                // nobody waits (so the flag is clear): the permit goes back to the pool
                self.permits.fetch_add(1, Ordering::Release);
                if let Some(hooks) = self.on_release.get() {
                    run_hooks(hooks);
                }
                return;
            };
            self.dequeued(st);
            if w.grant.send(()).is_ok() {
                return;
            }
            // the waiter is gone (cannot happen while its guard removes it first): try the next
        }
    }

    /// One waiter left the queue (granted or gone); the last one clears the flag. Called with
    /// the lock held.
    fn dequeued(&self, st: &mut State) {
        st.queued -= 1;
        if st.queued == 0 {
            self.permits.fetch_and(!WAITING, Ordering::Release);
        }
        self.queued_changed(st.queued);
    }

    fn queued_changed(&self, queued: usize) {
        self.queued_tx.send_replace(queued);
    }

    fn available(&self) -> usize {
        usize::try_from(self.permits.load(Ordering::Acquire) & !WAITING).unwrap_or(usize::MAX)
    }
}

/// A bounded priority admission queue over a fixed number of permits. Cheap to clone.
#[derive(Clone)]
pub struct Admission {
    shared: Arc<Shared>,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queued = self.shared.lock().queued;
        f.debug_struct("Admission")
            .field("available", &self.shared.available())
            .field("queued", &queued)
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
        self.shared.release();
    }
}

/// A [`Permit`] borrowed from its queue (see [`Admission::acquire_borrowed`]).
pub(crate) struct BorrowedPermit<'a> {
    shared: &'a Arc<Shared>,
    /// Whether the caller waited in the queue for it.
    pub(crate) waited: bool,
}

impl BorrowedPermit<'_> {
    /// The same permit, owned (for a stream that outlives the call that opened it).
    pub(crate) fn into_owned(self) -> Permit {
        let owned = Permit {
            shared: self.shared.clone(),
        };
        std::mem::forget(self);
        owned
    }
}

impl Drop for BorrowedPermit<'_> {
    fn drop(&mut self) {
        self.shared.release();
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
            self.shared.dequeued(&mut st);
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
        // a count never reaches the flag bit: 2^63 - 1 permits at most
        let permits = u64::try_from(config.permits)
            .unwrap_or(u64::MAX)
            .min(WAITING - 1);
        Admission {
            shared: Arc::new(Shared {
                permits: AtomicU64::new(permits),
                state: Mutex::new(State {
                    levels: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
                    queued: 0,
                    next_seq: 0,
                }),
                config,
                clock,
                counters,
                queued_tx: watch::channel(0).0,
                on_release: OnceLock::new(),
            }),
        }
    }

    /// Waits for a permit at `priority`. Fails at once with `QueueFull` when the queue is full.
    /// Cancel-safe: dropping the future frees its place.
    pub async fn acquire(&self, priority: Priority) -> Result<Permit> {
        self.take(priority).await?;
        Ok(Permit {
            shared: self.shared.clone(),
        })
    }

    /// [`Admission::acquire`] for a caller that holds the permit no longer than it borrows the
    /// queue (the resilience stack's non-streamed attempts): no reference count is touched.
    pub(crate) async fn acquire_borrowed(&self, priority: Priority) -> Result<BorrowedPermit<'_>> {
        let waited = self.take(priority).await?;
        Ok(BorrowedPermit {
            shared: &self.shared,
            waited,
        })
    }

    /// A free permit now, without waiting (`None` when none is free or someone waits in this
    /// queue): how a pool over several endpoints takes one.
    pub(crate) fn try_acquire_borrowed(&self) -> Option<BorrowedPermit<'_>> {
        self.shared.try_take().then_some(BorrowedPermit {
            shared: &self.shared,
            waited: false,
        })
    }

    /// Adds a hook called each time a permit goes back to the free count (every pool the
    /// endpoint belongs to adds one). Never refused: the `Result` is always `Ok`.
    pub fn on_release(&self, hook: ReleaseHook) -> std::result::Result<(), ReleaseHook> {
        let hooks = self
            .shared
            .on_release
            .get_or_init(|| RwLock::new(Vec::new()));
        hooks.write().unwrap_or_else(|p| p.into_inner()).push(hook);
        Ok(())
    }

    /// How many hooks a release calls (one per live pool the endpoint belongs to).
    pub fn release_hooks(&self) -> usize {
        self.shared
            .on_release
            .get()
            .map_or(0, |h| h.read().unwrap_or_else(|p| p.into_inner()).len())
    }

    /// Removes a hook [`on_release`](Self::on_release) added (the same `Arc`): a pool that
    /// ends takes its hooks off the endpoints that outlive it.
    pub fn remove_release_hook(&self, hook: &ReleaseHook) {
        if let Some(hooks) = self.shared.on_release.get() {
            hooks
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|h| !Arc::ptr_eq(h, hook));
        }
    }

    /// Waits until the caller holds a permit (which it must wrap at once, with no await in
    /// between, so that it is freed on drop); `true` when it waited in the queue for it.
    async fn take(&self, priority: Priority) -> Result<bool> {
        if self.shared.try_take() {
            return Ok(false);
        }
        let lvl = level(priority);
        let (rx, seq, since) = {
            let mut st = self.shared.lock();
            // under the lock: take a permit freed meanwhile, or raise the flag (only while
            // none is free, so the count stays 0 while anyone waits)
            let mut word = self.shared.permits.load(Ordering::Acquire);
            loop {
                let next = if word & WAITING != 0 {
                    break;
                } else if word > 0 {
                    word - 1
                } else if self.shared.config.max_queued == 0 {
                    break;
                } else {
                    WAITING
                };
                match self.shared.permits.compare_exchange_weak(
                    word,
                    next,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) if next != WAITING => return Ok(false),
                    Ok(_) => break,
                    Err(now) => word = now,
                }
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
        Ok(true)
    }

    /// Permits free now.
    pub fn available(&self) -> usize {
        self.shared.available()
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
