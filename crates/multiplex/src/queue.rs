//! The pool's wait queue: priority levels (HIGH/NORMAL/LOW), FIFO within a level, ageing, and
//! the "baton" that wakes waiters one at a time in that order when something frees.
//!
//! An event (a permit released, tokens given back, a waiter arriving) starts a *sweep*: the
//! best waiter not yet visited by the sweep is woken; when it has tried, it passes the baton
//! on if what it found may serve the next one (it succeeded, or only its own token estimate
//! held it back) and ends the sweep otherwise. So waiters are served in priority order and one
//! event wakes about one waiter, not all. A waiter that has held its baton untried for
//! [`STALLED_AFTER`] (nobody polls it) is passed over, so it cannot hold up those behind it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use infermux_core::Priority;

/// One waiting call.
#[derive(Debug)]
pub(crate) struct Slot {
    seq: u64,
    level: usize,
    since: Instant,
    /// Set by a sweep; the waiter clears it when it has tried.
    pub(crate) woken: AtomicBool,
    /// When it was last woken (ns after `since`).
    woken_at: AtomicU64,
    /// The sweep that last visited it.
    visited: AtomicU64,
    /// Set when a sweep found the waiter ahead still holding an untried baton: this one
    /// looks again in [`STALLED_AFTER`], in case that waiter is never polled.
    pub(crate) recheck: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Slot {
    pub(crate) fn set_waker(&self, w: &Waker) {
        let mut slot = self.waker.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(old) if old.will_wake(w) => {}
            _ => *slot = Some(w.clone()),
        }
    }
    /// Gives it the baton; whether it already held one it had not tried yet (that one keeps
    /// the time it was given). Called under the queue's lock, where `woken_at` is read.
    fn wake(&self, now: Instant) -> bool {
        let untried = self
            .woken
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err();
        if !untried {
            let at = now.saturating_duration_since(self.since).as_nanos();
            self.woken_at
                .store(u64::try_from(at).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        self.notify();
        untried
    }

    fn notify(&self) {
        let waker = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

#[derive(Debug, Default)]
struct State {
    levels: [VecDeque<Arc<Slot>>; 3],
    next_seq: u64,
    sweep: u64,
}

/// The wait queue.
#[derive(Debug)]
pub(crate) struct WaitQueue {
    state: Mutex<State>,
    len: AtomicUsize,
    age_step: Duration,
}

fn level(p: Priority) -> usize {
    match p {
        Priority::Low => 0,
        Priority::High => 2,
        _ => 1,
    }
}

impl WaitQueue {
    pub(crate) fn new(age_step: Duration) -> Self {
        WaitQueue {
            state: Mutex::default(),
            len: AtomicUsize::new(0),
            age_step,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls waiting now.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Adds a waiter, or `None` when `max` already wait.
    pub(crate) fn push(&self, priority: Priority, now: Instant, max: usize) -> Option<Arc<Slot>> {
        let mut st = self.lock();
        if self.len() >= max {
            return None;
        }
        st.next_seq += 1;
        let lvl = level(priority);
        let slot = Arc::new(Slot {
            seq: st.next_seq,
            level: lvl,
            since: now,
            woken: AtomicBool::new(false),
            woken_at: AtomicU64::new(0),
            visited: AtomicU64::new(0),
            recheck: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        st.levels[lvl].push_back(slot.clone());
        self.len.fetch_add(1, Ordering::AcqRel);
        Some(slot)
    }

    /// Removes a waiter (granted, failed or dropped); a waiter that held the baton passes it.
    pub(crate) fn remove(&self, slot: &Arc<Slot>, now: Instant, pass: bool) {
        let mut st = self.lock();
        let q = &mut st.levels[slot.level];
        if let Some(i) = q.iter().position(|s| Arc::ptr_eq(s, slot)) {
            q.remove(i);
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
        if pass || slot.woken.swap(false, Ordering::AcqRel) {
            self.pass_locked(&mut st, now);
        }
        // it was to look again for a waiter ahead that may be parked: the next one does
        if slot.recheck.swap(false, Ordering::AcqRel) {
            self.recheck_next(&st, now);
        }
    }

    /// Starts a sweep (something freed); nothing when nobody waits.
    pub(crate) fn sweep(&self, now: Instant) {
        if self.len() == 0 {
            return;
        }
        let mut st = self.lock();
        st.sweep += 1;
        self.pass_locked(&mut st, now);
    }

    /// Passes the baton to the next waiter of the current sweep.
    pub(crate) fn pass(&self, now: Instant) {
        if self.len() == 0 {
            return;
        }
        let mut st = self.lock();
        self.pass_locked(&mut st, now);
    }

    fn pass_locked(&self, st: &mut State, now: Instant) {
        let sweep = st.sweep;
        let Some(s) = self.best(st, now, |s| {
            s.visited.load(Ordering::Relaxed) != sweep && !stalled(s, now)
        }) else {
            return;
        };
        s.visited.store(sweep, Ordering::Relaxed);
        if s.wake(now) {
            // it has not tried its earlier baton yet: it will, and see what freed — unless
            // its owner never polls it again; the next waiter checks on that later
            self.recheck_next(st, now);
        }
    }

    /// Asks the best waiter not holding a baton to look again in a while.
    fn recheck_next(&self, st: &State, now: Instant) {
        if let Some(next) = self.best(st, now, |o| !o.woken.load(Ordering::Acquire)) {
            next.recheck.store(true, Ordering::Release);
            next.notify();
        }
    }

    /// The first waiter by priority (with ageing), then arrival, among those `eligible`.
    fn best<'s>(
        &self,
        st: &'s State,
        now: Instant,
        eligible: impl Fn(&Slot) -> bool,
    ) -> Option<&'s Arc<Slot>> {
        let step = self.age_step.as_nanos().max(1);
        let mut best: Option<(u128, u64, &Arc<Slot>)> = None;
        for (lvl, q) in st.levels.iter().enumerate() {
            for s in q {
                if !eligible(s) {
                    continue;
                }
                let aged = now.saturating_duration_since(s.since).as_nanos() / step;
                let effective = (lvl as u128 + aged).min(2);
                let better = match best {
                    None => true,
                    Some((e, seq, _)) => effective > e || (effective == e && s.seq < seq),
                };
                if better {
                    best = Some((effective, s.seq, s));
                }
                // within a level, later waiters are younger: the first eligible one is its best
                break;
            }
        }
        best.map(|(_, _, s)| s)
    }
}

/// How long a woken waiter may leave its baton untried before sweeps pass over it: its owner
/// stopped polling it (a future parked in a `select!`, a blocked runtime), and the waiters
/// behind it must not wait for it.
pub(crate) const STALLED_AFTER: Duration = Duration::from_millis(50);

/// Whether `s` was woken over [`STALLED_AFTER`] ago and has not tried yet.
fn stalled(s: &Slot, now: Instant) -> bool {
    s.woken.load(Ordering::Acquire) && {
        let woken = s.since + Duration::from_nanos(s.woken_at.load(Ordering::Relaxed));
        now.saturating_duration_since(woken) >= STALLED_AFTER
    }
}
