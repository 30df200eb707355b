//! Shared state across processes (feature `redis`): a pool bound to a [`SharedState`] asks
//! Redis (one script, one round trip) before it hands out a lease, so the pools of several
//! processes hold one key's RPM/TPM limits, cooldowns and removals together.
//!
//! # How a decision goes
//! The pool first decides on its local state as without shared state (the local limiters
//! count this process's reservations, so they never admit more than the shared ones), then
//! runs the reserve script on the chosen member's key: it checks the key's shared removal and
//! cooldown and reserves on the shared GCRA limiters (the same arithmetic and burst as
//! [`gcra`](crate::gcra), in microseconds, on Redis's `TIME`). A refusal becomes a local hold
//! of the key (removed, cooling or limited for the time Redis said) and the pool decides
//! again; the lease goes back unused.
//!
//! With [`SharedState::with_prefetch`] (opt-in), a successful decision also reserves the
//! key's next request (and the tokens this one asked for) in a spawned task; the next decision
//! on the key takes that reservation without a round trip while it is younger than the TTL
//! and holds enough tokens (the surplus is given back). Refusals, this process's 429s and
//! removals discard it (given back); an expired one is given back when next seen, less what
//! the limiters refilled since it was made (an old one weighs nothing on them any more).
//!
//! A decision's round trip runs in a task of its own: a reservation Redis makes after its
//! caller's future was dropped is given back when the answer comes, as is a late one made
//! ahead; a late one of a decision that timed out stands (the caller went on, deciding
//! locally, and spends it). A refusal by the TPM limiter moves the local one as far ahead as
//! the shared one stands, so a smaller request that fits still goes; a refusal by the RPM
//! limiter holds the key until it lets one through.
//!
//! Reports write to Redis off the caller's path (a spawned task): a 429's cooldown (extended,
//! never shortened, in the script), a removal, and a TPM reservation's give-back or extra
//! charge.
//!
//! # Keys
//! `infermux:{<namespace>:<pool>:<alias>}:rpm|tpm|cool|removed` (the braces are Redis
//! Cluster's hash tag: one key's four keys live on one slot). A member without a key alias
//! uses `@<endpoint id>`. No key, and no hash of one, is ever written.
//!
//! # When Redis is down
//! See [`SharedState`]: each process decides on its local state, so during the outage each
//! holds a key's limit on its own (together they may send up to `processes × limit`).

mod redis;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use self::redis::Late;
pub use self::redis::SharedState;
pub(crate) use self::redis::valid_name;

use crate::gcra::Gcra;
use crate::status::RemovalReason;

/// How long a reservation made ahead stays usable when its ttl is too long for the clock
/// (`Duration::MAX`): a year, as good as "until taken".
const FAR_AHEAD: Duration = Duration::from_secs(365 * 24 * 3600);

/// One key's names in Redis and its limits.
#[derive(Debug)]
struct KeyRef {
    /// rpm, tpm, cool, removed
    names: Arc<[String; 4]>,
    /// (capacity, refill a minute); (0, 0) without a limit
    rpm: (u64, u64),
    tpm: (u64, u64),
    /// The reservation made ahead for the key's next decision
    /// ([`SharedState::with_prefetch`]).
    ahead: Arc<Ahead>,
}

/// One request (and its tokens) reserved on the shared state before a decision asked.
#[derive(Debug, Clone, Copy)]
struct Credit {
    tokens: u64,
    /// When the reservation was asked for.
    asked: Instant,
    /// Usable until (from when it was asked for, so never late).
    until: Instant,
}

/// A key's reservation made ahead, and whether one is being made.
#[derive(Debug, Default)]
struct Ahead {
    credit: Mutex<Option<Credit>>,
    refilling: AtomicBool,
}

impl Ahead {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Credit>> {
        self.credit.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A key's reservation ahead being made: `refilling` is cleared when this goes, however the
/// task ends — run to its end, dropped unpolled by a runtime shutting down, or never spawned
/// (left set, the key would never reserve ahead again).
struct Refilling(Arc<Ahead>);

impl Drop for Refilling {
    fn drop(&mut self) {
        self.0.refilling.store(false, Ordering::Release);
    }
}

/// What the shared state decided on one reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Reserved on the shared state too.
    Reserved,
    /// Redis is down or slow: the local decision stands.
    Fallback,
    /// The key cools down for this long.
    Cooling(Duration),
    /// The key is removed (`None`: for good).
    Removed(RemovalReason, Option<Duration>),
    /// The key's shared limits let one more through in this long; whether its tokens (not
    /// its request count) were the limit (a smaller request may fit sooner).
    Limited(Duration, bool),
}

/// A pool's binding to a [`SharedState`].
#[derive(Debug)]
pub(crate) struct SharedPool {
    state: SharedState,
    keys: Vec<KeyRef>,
    fallbacks: AtomicU64,
    /// Decisions that took a reservation made ahead (no round trip).
    ahead_hits: AtomicU64,
}

/// The time one unit of a limiter refilling `per_minute` takes (the scripts keep it exact,
/// in fractions of a microsecond; here rounded up to the nanosecond).
fn unit(per_minute: u64) -> Duration {
    Duration::from_nanos(60_000_000_000u64.div_ceil(per_minute.max(1)))
}

/// What of a reservation's tokens still weighs on a limiter refilling `per_minute`: its
/// tokens less what refilled since it was asked for (a lower bound: on a busy key it weighs
/// longer, so this never frees more than it took).
fn decayed_tokens(c: Credit, per_minute: u64) -> u64 {
    if per_minute == 0 {
        return 0;
    }
    let refilled = c.asked.elapsed().as_micros() * u128::from(per_minute) / 60_000_000;
    c.tokens
        .saturating_sub(u64::try_from(refilled).unwrap_or(u64::MAX))
}

fn limits(g: Option<&Gcra>) -> (u64, u64) {
    g.map_or((0, 0), |g| (g.burst(), g.per_minute()))
}

impl SharedPool {
    /// Binds `state` to pool `pool` whose keys are `(alias or endpoint id, has alias, rpm,
    /// tpm)`, in key order.
    pub(crate) fn new<'a>(
        state: SharedState,
        pool: &str,
        keys: impl Iterator<Item = (&'a str, bool, Option<&'a Gcra>, Option<&'a Gcra>)>,
    ) -> Self {
        let keys = keys
            .map(|(name, alias, rpm, tpm)| {
                let tag = if alias {
                    format!("infermux:{{{}:{pool}:{name}}}", state.namespace())
                } else {
                    format!("infermux:{{{}:{pool}:@{name}}}", state.namespace())
                };
                KeyRef {
                    names: Arc::new(
                        ["rpm", "tpm", "cool", "removed"].map(|s| format!("{tag}:{s}")),
                    ),
                    rpm: limits(rpm),
                    tpm: limits(tpm),
                    ahead: Arc::default(),
                }
            })
            .collect();
        SharedPool {
            state,
            keys,
            fallbacks: AtomicU64::new(0),
            ahead_hits: AtomicU64::new(0),
        }
    }

    /// One decision on key `key` for one request and `tokens`: a reservation made ahead when
    /// one is usable (no round trip), else one round trip.
    pub(crate) async fn reserve(&self, key: usize, tokens: u64) -> Decision {
        let k = &self.keys[key];
        let tokens = if k.tpm.1 > 0 { tokens } else { 0 };
        if self.state.prefetch.is_some() && self.take_ahead(key, tokens) {
            self.ahead_hits.fetch_add(1, Ordering::Relaxed);
            self.reserve_ahead(key, tokens);
            return Decision::Reserved;
        }
        let answer = self
            .state
            .reserve(&k.names, k.rpm, k.tpm, tokens, Late::Keep)
            .await;
        let decision = match answer {
            None => {
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                Decision::Fallback
            }
            Some(redis::Answer::Reserved) => Decision::Reserved,
            Some(redis::Answer::Cooling(d)) => Decision::Cooling(d),
            Some(redis::Answer::Limited(d, by_tokens)) => Decision::Limited(d, by_tokens),
            Some(redis::Answer::Removed(reason, d)) => Decision::Removed(
                if reason == 2 {
                    RemovalReason::Quota
                } else {
                    RemovalReason::Auth
                },
                d,
            ),
        };
        match decision {
            Decision::Reserved => self.reserve_ahead(key, tokens),
            Decision::Fallback => {}
            _ => self.discard_ahead(key),
        }
        decision
    }

    /// Takes key `key`'s reservation made ahead if it is still usable and holds at least
    /// `tokens` (the surplus is given back); an expired one is given back.
    fn take_ahead(&self, key: usize, tokens: u64) -> bool {
        let mut slot = self.keys[key].ahead.slot();
        let Some(c) = *slot else {
            return false;
        };
        if c.until > Instant::now() && c.tokens < tokens {
            // fresh but too small for this request: kept for a smaller one
            return false;
        }
        *slot = None;
        drop(slot);
        if c.until <= Instant::now() {
            self.give_back(key, c);
            return false;
        }
        let surplus = Credit {
            tokens: c.tokens - tokens,
            ..c
        };
        self.adjust_tokens(key, decayed_tokens(surplus, self.keys[key].tpm.1), false);
        true
    }

    /// Gives back key `key`'s reservation made ahead, if any (a refusal, a 429 or a removal
    /// seen for the key: the next decision asks Redis).
    fn discard_ahead(&self, key: usize) {
        let taken = self.keys[key].ahead.slot().take();
        if let Some(c) = taken {
            self.give_back(key, c);
        }
    }

    /// Gives back one unused reservation: its request and its tokens, less what the
    /// limiters refilled since it was made (a reservation an hour old weighs nothing on them
    /// now: given back whole, it would free what other processes took since).
    fn give_back(&self, key: usize, c: Credit) {
        let k = &self.keys[key];
        if k.rpm.1 > 0 && c.asked.elapsed() < unit(k.rpm.1) {
            self.state.adjust(k.names[0].clone(), k.rpm.1, 1, false);
        }
        self.adjust_tokens(key, decayed_tokens(c, k.tpm.1), false);
    }

    /// Reserves the key's next request and `tokens` ahead, off the caller's path (one at a
    /// time a key; not while one is held).
    fn reserve_ahead(&self, key: usize, tokens: u64) {
        let Some(ttl) = self.state.prefetch else {
            return;
        };
        let k = &self.keys[key];
        if k.ahead.slot().is_some() || k.ahead.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let (names, rpm, tpm) = (k.names.clone(), k.rpm, k.tpm);
        let refilling = Refilling(k.ahead.clone());
        // (not spawned, the closure and the guard in it go at once)
        self.state.spawn(move |state| async move {
            let ahead = refilling;
            let asked = Instant::now();
            let answer = state
                .reserve(&names, rpm, tpm, tokens, Late::GiveBack)
                .await;
            if let Some(redis::Answer::Reserved) = answer {
                // (a `Duration::MAX` ttl means "until taken", not an overflow)
                let until = asked.checked_add(ttl).unwrap_or(asked + FAR_AHEAD);
                *ahead.0.slot() = Some(Credit {
                    tokens,
                    asked,
                    until,
                });
            }
        });
    }

    /// Decisions that took a reservation made ahead.
    pub(crate) fn ahead_hits(&self) -> u64 {
        self.ahead_hits.load(Ordering::Relaxed)
    }

    /// Records a cooldown of `span` on key `key` (extends a shared one, never shortens it).
    pub(crate) fn cool(&self, key: usize, span: Duration) {
        self.discard_ahead(key);
        self.state
            .hold(self.keys[key].names[2].clone(), 0, Some(span));
    }

    /// Records a removal of key `key` for `span` (`None`: for good).
    pub(crate) fn remove(&self, key: usize, reason: RemovalReason, span: Option<Duration>) {
        self.discard_ahead(key);
        let code = match reason {
            RemovalReason::Quota => 2,
            _ => 1,
        };
        self.state.hold(self.keys[key].names[3].clone(), code, span);
    }

    /// [`KeyCore::settle_tokens`](crate::member::KeyCore::settle_tokens) on the shared state.
    pub(crate) fn settle_tokens(&self, key: usize, reserved: u64, used: u64) {
        if used < reserved {
            self.adjust_tokens(key, reserved - used, false);
        } else if used > reserved {
            // never more than a minute admits, at once (as the local limiter: an absurd
            // token count would hold the key in every process)
            let (burst, per_minute) = self.keys[key].tpm;
            let most = burst.saturating_add(per_minute);
            self.adjust_tokens(key, (used - reserved).min(most), true);
        }
    }

    /// Gives back (`charge` false) or charges `tokens` on key `key`'s shared TPM limiter.
    pub(crate) fn adjust_tokens(&self, key: usize, tokens: u64, charge: bool) {
        let k = &self.keys[key];
        if k.tpm.1 > 0 && tokens > 0 {
            self.state
                .adjust(k.names[1].clone(), k.tpm.1, tokens, charge);
        }
    }

    /// Decisions taken locally because Redis was down or slow.
    pub(crate) fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Whether Redis answered the last call.
    pub(crate) fn up(&self) -> bool {
        self.state.is_up()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credit(tokens: u64, age: Duration) -> Credit {
        let now = Instant::now();
        let asked = now.checked_sub(age).unwrap_or(now);
        Credit {
            tokens,
            asked,
            until: asked,
        }
    }

    /// An old reservation weighs what has not refilled since: nothing once a minute's refill
    /// covers it (given back whole, it freed what other processes took since).
    #[test]
    fn a_reservations_give_back_shrinks_with_its_age() {
        // 6000 a minute: 100 tokens a second
        assert_eq!(decayed_tokens(credit(500, Duration::ZERO), 6000), 500);
        let two_s = decayed_tokens(credit(500, Duration::from_secs(2)), 6000);
        assert!((299..=300).contains(&two_s), "{two_s}");
        assert_eq!(
            decayed_tokens(credit(500, Duration::from_secs(3600)), 6000),
            0
        );
        assert_eq!(decayed_tokens(credit(500, Duration::ZERO), 0), 0);
        assert_eq!(unit(6), Duration::from_secs(10));
        assert_eq!(unit(7), Duration::from_nanos(8_571_428_572));
        // above 60 million a minute, less than a microsecond
        assert_eq!(unit(150_000_000), Duration::from_nanos(400));
    }
}
