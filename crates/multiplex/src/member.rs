//! Per-key and per-member state: atomics only, read by the eligibility scan and written by
//! reports.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use infermux_core::AttemptKey;

use crate::gcra::Gcra;
use crate::status::RemovalReason;

/// Forever, as a time in ns since the epoch.
pub(crate) const NEVER: u64 = u64::MAX;

/// One key's state in a pool: the members of the pool that send it, and the key's holds and
/// limits ([`KeyCore`]), shared with every other pool sending it through one
/// [`KeyRegistry`](crate::KeyRegistry).
#[derive(Debug)]
pub(crate) struct KeyState {
    pub(crate) alias: Option<Arc<str>>,
    /// The members sending the key.
    pub(crate) members: u64,
    pub(crate) core: Arc<KeyCore>,
}

impl std::ops::Deref for KeyState {
    type Target = KeyCore;
    #[inline]
    fn deref(&self) -> &KeyCore {
        &self.core
    }
}

impl KeyState {
    /// A key of one pool only.
    pub(crate) fn new(
        alias: Option<Arc<str>>,
        rpm: Option<Gcra>,
        tpm: Option<Gcra>,
        pool_until: Arc<AtomicU64>,
    ) -> Self {
        KeyState {
            alias,
            members: 0,
            core: Arc::new(KeyCore::new(rpm, tpm, pool_until)),
        }
    }

    /// A key whose holds and limits are `core`'s (shared with other pools); this pool's
    /// `pool_until` is raised by its holds from now on.
    pub(crate) fn sharing(
        alias: Option<Arc<str>>,
        core: Arc<KeyCore>,
        pool_until: Arc<AtomicU64>,
    ) -> Self {
        // listed first, then the holds read: a hold stored before the read is read, one
        // stored after it raises every listed pool, this one included (read first, a hold
        // raised between the read and the listing was missed for good)
        core.pools
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(pool_until.clone());
        // a hold already in place (another pool met a 429 or a 401 before this pool was
        // built) holds here too: the scan reads the key only while its pool's end is ahead
        let held = core
            .until
            .load(Ordering::SeqCst)
            .max(core.models_until.load(Ordering::SeqCst));
        pool_until.fetch_max(held, Ordering::AcqRel);
        KeyState {
            alias,
            members: 0,
            core,
        }
    }
}

impl KeyState {
    /// Takes a pool that ends (its `pool_until`) off the key's list of pools to raise.
    pub(crate) fn forget_pool(&self, pool_until: &Arc<AtomicU64>) {
        self.core
            .pools
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|p| !Arc::ptr_eq(p, pool_until));
    }
}

/// A key's holds and limits (times in ns since the epoch of the pools sharing it).
#[derive(Debug)]
pub(crate) struct KeyCore {
    /// The latest end of its cooldown, removal and announced limit: one load for the scan.
    pub(crate) until: AtomicU64,
    /// Cooling (429) until, ns since the epoch; re-cooling only extends.
    pub(crate) cool_until: AtomicU64,
    /// Removed until (0: not removed, [`NEVER`]: until reconfigured) and why, in one word so
    /// the two never mix (two removals at once left one's reason with the other's end): the
    /// end with its two low bits replaced by the reason (1 auth, 2 quota), read back with them
    /// set (at most 3 ns later; `NEVER` stays `NEVER`).
    removed: AtomicU64,
    /// Limited by the provider's announced `remaining: 0` until.
    pub(crate) limited_until: AtomicU64,
    /// Models held on the key (a 429 the provider scoped to the model) and until when; the
    /// key's other models go on.
    model_holds: RwLock<Vec<(Arc<str>, u64)>>,
    /// The latest end of those holds (0: none): one load for the scan.
    models_until: AtomicU64,
    pub(crate) rpm: Option<Gcra>,
    pub(crate) tpm: Option<Gcra>,
    /// The latest hold end over all keys of each pool sending this key (a pool's is shared by
    /// its keys): while it is past, no key of that pool is held and its scan skips the per-key
    /// loads. A hold raises every one of them. Written only while pools are built.
    pools: RwLock<Vec<Arc<AtomicU64>>>,
}

impl KeyCore {
    pub(crate) fn new(rpm: Option<Gcra>, tpm: Option<Gcra>, pool_until: Arc<AtomicU64>) -> Self {
        KeyCore {
            pools: RwLock::new(vec![pool_until]),
            until: AtomicU64::new(0),
            cool_until: AtomicU64::new(0),
            removed: AtomicU64::new(0),
            limited_until: AtomicU64::new(0),
            model_holds: RwLock::new(Vec::new()),
            models_until: AtomicU64::new(0),
            rpm,
            tpm,
        }
    }

    pub(crate) fn remove(&self, reason: RemovalReason, until: u64) {
        let code = match reason {
            RemovalReason::Auth => 1,
            RemovalReason::Quota => 2,
        };
        // the later end wins, with its own reason (at one end: quota)
        self.removed
            .fetch_max((until & !3) | code, Ordering::AcqRel);
        self.until.fetch_max(until | 3, Ordering::AcqRel);
        self.raise_pools(until | 3);
    }

    /// Cools the key down until `until` (a later cooldown wins).
    pub(crate) fn cool(&self, until: u64) {
        self.cool_until.fetch_max(until, Ordering::AcqRel);
        self.until.fetch_max(until, Ordering::AcqRel);
        self.raise_pools(until);
    }

    /// Holds `model` on the key until `until` (a later end wins): the members sending the key
    /// for that model wait, in every pool sharing the key. Holds ended by `now` are dropped
    /// as holds come in (the list never outgrows the models held at once).
    pub(crate) fn hold_model(&self, model: &str, until: u64, now: u64) {
        {
            let mut holds = self.model_holds.write().unwrap_or_else(|p| p.into_inner());
            holds.retain(|(_, u)| *u > now);
            match holds.iter_mut().find(|(m, _)| &**m == model) {
                Some((_, u)) => *u = (*u).max(until),
                None => holds.push((Arc::from(model), until)),
            }
        }
        self.models_until.fetch_max(until, Ordering::AcqRel);
        self.raise_pools(until);
    }

    /// The latest end of the key's model holds (0: none).
    #[inline]
    pub(crate) fn models_held_until(&self) -> u64 {
        self.models_until.load(Ordering::Relaxed)
    }

    /// Until when `model` is held on the key (0 when it is not, or no model is known).
    pub(crate) fn model_hold(&self, model: Option<&str>, now: u64) -> u64 {
        let Some(model) = model else { return 0 };
        if self.models_held_until() <= now {
            return 0;
        }
        // (read by every scan while a hold lasts: a read lock, written only by a 429)
        let holds = self.model_holds.read().unwrap_or_else(|p| p.into_inner());
        holds
            .iter()
            .find(|(m, _)| &**m == model)
            .map_or(0, |(_, u)| *u)
    }

    /// Holds the key back until `until`, as its provider announced (a later end wins).
    pub(crate) fn limit(&self, until: u64) {
        self.limited_until.fetch_max(until, Ordering::AcqRel);
        self.until.fetch_max(until, Ordering::AcqRel);
        self.raise_pools(until);
    }

    fn raise_pools(&self, until: u64) {
        for p in self.pools.read().unwrap_or_else(|p| p.into_inner()).iter() {
            p.fetch_max(until, Ordering::AcqRel);
        }
    }

    pub(crate) fn removal(&self, now: u64) -> Option<(RemovalReason, u64)> {
        let packed = self.removed.load(Ordering::Acquire);
        if packed == 0 {
            return None;
        }
        let until = packed | 3;
        (until > now).then(|| {
            let reason = match packed & 3 {
                2 => RemovalReason::Quota,
                _ => RemovalReason::Auth,
            };
            (reason, until)
        })
    }

    /// The latest of the time-based holds (cooling, removal, limit), 0 when none.
    #[inline]
    pub(crate) fn held_until(&self) -> u64 {
        self.until.load(Ordering::Relaxed)
    }

    /// When the key's limits let one request of `tokens` through (0 without limits).
    #[inline]
    pub(crate) fn limits_ready_at(&self, tokens: u64, now: u64) -> u64 {
        let rpm = self.rpm.as_ref().map_or(0, |g| g.ready_at(1, now));
        let tpm = match &self.tpm {
            Some(g) if tokens > 0 => g.ready_at(tokens, now),
            _ => 0,
        };
        rpm.max(tpm)
    }

    /// Reserves one request and `tokens` on the limits; `false` (nothing kept) when they do
    /// not fit now.
    pub(crate) fn reserve(&self, tokens: u64, now: u64) -> bool {
        if let Some(g) = &self.rpm
            && g.try_take(1, now).is_err()
        {
            return false;
        }
        if let Some(g) = &self.tpm
            && tokens > 0
            && g.try_take(tokens, now).is_err()
        {
            if let Some(r) = &self.rpm {
                r.give_back(1);
            }
            return false;
        }
        true
    }

    /// Undoes [`KeyCore::reserve`].
    pub(crate) fn unreserve(&self, tokens: u64) {
        if let Some(g) = &self.rpm {
            g.give_back(1);
        }
        if let Some(g) = &self.tpm
            && tokens > 0
        {
            g.give_back(tokens);
        }
    }

    /// Settles a reservation of `reserved` tokens with the `used` ones: gives back what was
    /// not used, charges what was used beyond (nothing without a TPM limit). Whether tokens
    /// went back (a waiter may fit now).
    pub(crate) fn settle_tokens(&self, reserved: u64, used: u64, now: u64) -> bool {
        let Some(tpm) = &self.tpm else {
            return false;
        };
        if used < reserved {
            tpm.give_back(reserved - used);
            return true;
        }
        if used > reserved {
            tpm.charge(used - reserved, now);
        }
        false
    }

    /// The share of the limits left (1.0 without limits).
    pub(crate) fn headroom(&self, now: u64) -> f64 {
        let r = self.rpm.as_ref().map_or(1.0, |g| g.headroom(now));
        let t = self.tpm.as_ref().map_or(1.0, |g| g.headroom(now));
        r.min(t)
    }
}

/// Latencies decay with this time constant (tower's peak-EWMA default is 10 s).
const DECAY_NS: f64 = 10e9;
/// The latency assumed before a member's first report.
pub(crate) const DEFAULT_RTT_NS: f64 = 50e6;

/// One member's state.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) endpoint: usize,
    pub(crate) key: usize,
    pub(crate) weight: u32,
    pub(crate) model: Option<Arc<str>>,
    pub(crate) attempt_key: Option<AttemptKey>,
    pub(crate) in_flight: AtomicU32,
    pub(crate) picks: AtomicU64,
    /// Peak-EWMA latency in ns as f64 bits (0: none yet).
    pub(crate) ewma: AtomicU64,
    pub(crate) ewma_stamp: AtomicU64,
}

impl Member {
    /// Peak EWMA: a slower sample replaces the estimate at once; faster ones pull it down
    /// with a weight growing with the time since the last sample.
    pub(crate) fn observe(&self, rtt_ns: f64, now: u64) {
        let last = self.ewma_stamp.swap(now, Ordering::AcqRel);
        let elapsed = now.saturating_sub(last) as f64;
        let _ = self
            .ewma
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |bits| {
                let prev = f64::from_bits(bits);
                let next = if bits == 0 || rtt_ns > prev {
                    rtt_ns
                } else {
                    let decay = (-elapsed / DECAY_NS).exp();
                    prev * decay + rtt_ns * (1.0 - decay)
                };
                Some(next.max(1.0).to_bits())
            });
    }

    pub(crate) fn ewma_ns(&self) -> Option<f64> {
        let bits = self.ewma.load(Ordering::Relaxed);
        (bits != 0).then(|| f64::from_bits(bits))
    }

    /// Tower's p2c cost: latency times (in flight + 1).
    #[inline]
    pub(crate) fn cost(&self) -> f64 {
        let rtt = self.ewma_ns().unwrap_or(DEFAULT_RTT_NS);
        rtt * (f64::from(self.in_flight.load(Ordering::Relaxed)) + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two removals, in either order: the later end wins, with its own reason (they were two
    /// words, and one removal's reason could stay with the other's end).
    #[test]
    fn a_removals_reason_goes_with_its_end() {
        let hour = 3_600_000_000_000u64;
        for auth_first in [true, false] {
            let k = KeyCore::new(None, None, Arc::new(AtomicU64::new(0)));
            let removals = [(RemovalReason::Auth, NEVER), (RemovalReason::Quota, hour)];
            let order: Vec<_> = if auth_first {
                removals.to_vec()
            } else {
                removals.iter().rev().copied().collect()
            };
            for (reason, until) in order {
                k.remove(reason, until);
            }
            assert_eq!(k.removal(0), Some((RemovalReason::Auth, NEVER)));
        }
        let k = KeyCore::new(None, None, Arc::new(AtomicU64::new(0)));
        k.remove(RemovalReason::Quota, hour);
        k.remove(RemovalReason::Auth, hour / 2);
        let (reason, until) = k.removal(0).unwrap();
        assert_eq!(reason, RemovalReason::Quota);
        assert!((hour..hour + 4).contains(&until), "{until}");
        assert_eq!(k.removal(hour + 4), None);
        assert!(k.held_until() >= until);
    }
}
