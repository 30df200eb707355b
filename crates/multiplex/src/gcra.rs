//! [`Gcra`]: the generic cell rate algorithm as one atomic theoretical arrival time (TAT), with
//! give-back and extra charges for reconciling a reservation with real usage.
//!
//! A `Gcra` of capacity `B` units refilling at `r` units a minute is a token bucket: in any
//! half-open interval of length `t` it admits at most `B + r·t/60 s` units. The pool builds its
//! per-key limits of `L` a minute with `B + r = L` (see [the crate docs](crate#limits)), so
//! any minute-long window admits at most `L`; the textbook choice `B = r = L` admits up to
//! `2L` in a sliding minute.
//!
//! Time is nanoseconds since the owner's epoch, passed in: the limiter reads no clock.

use std::sync::atomic::{AtomicU64, Ordering};

const MINUTE_NS: u128 = 60_000_000_000;

/// A GCRA limiter: capacity `burst` units, refilling at `per_minute` units a minute (one unit
/// every `⌈60 s / per_minute⌉` nanoseconds).
///
/// ```
/// use infermux_multiplex::gcra::Gcra;
/// let g = Gcra::new(2, 1).unwrap(); // 2 at once, then 1 a minute
/// assert!(g.try_take(2, 0).is_ok());
/// let ready = g.try_take(1, 0).unwrap_err(); // when one more fits
/// assert_eq!(ready, 60_000_000_000);
/// assert!(g.try_take(1, ready).is_ok());
/// ```
#[derive(Debug)]
pub struct Gcra {
    tat: AtomicU64,
    burst: u64,
    per_minute: u64,
    /// Nanoseconds one unit takes off the bucket, rounded up (so the rate never exceeds
    /// `per_minute`).
    unit: u64,
    tolerance: u64,
}

impl Gcra {
    /// A limiter of capacity `burst` refilling `per_minute` a minute; `None` when either is 0.
    pub fn new(burst: u64, per_minute: u64) -> Option<Self> {
        if burst == 0 || per_minute == 0 {
            return None;
        }
        let unit = u64::try_from(MINUTE_NS.div_ceil(u128::from(per_minute)))
            .unwrap_or(u64::MAX)
            .max(1);
        Some(Gcra {
            tat: AtomicU64::new(0),
            burst,
            per_minute,
            unit,
            tolerance: burst.saturating_mul(unit),
        })
    }

    /// The capacity: the most one take may ask for.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// The refill rate, units a minute.
    pub fn per_minute(&self) -> u64 {
        self.per_minute
    }

    /// The time `units` take off the bucket, rounded up (so the rate is never exceeded).
    #[inline]
    fn cost(&self, units: u64) -> u64 {
        units.saturating_mul(self.unit)
    }

    /// Takes `units` at `now` (ns since the epoch), or says when they would fit (`Err(at)`,
    /// `u64::MAX` when never: more than the capacity).
    pub fn try_take(&self, units: u64, now: u64) -> Result<(), u64> {
        if units > self.burst {
            return Err(u64::MAX);
        }
        let cost = self.cost(units);
        let mut ready = 0;
        self.tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                let next = tat.max(now).saturating_add(cost);
                if next - now > self.tolerance {
                    ready = next - self.tolerance;
                    None
                } else {
                    Some(next)
                }
            })
            .map(|_| ())
            .map_err(|_| ready)
    }

    /// When `units` would fit (`<= now`: now; `u64::MAX`: never), without taking them.
    #[inline]
    pub fn ready_at(&self, units: u64, now: u64) -> u64 {
        if units > self.burst {
            return u64::MAX;
        }
        let next = self
            .tat
            .load(Ordering::Acquire)
            .max(now)
            .saturating_add(self.cost(units));
        next.saturating_sub(self.tolerance)
    }

    /// Moves the limiter ahead (never back) so that `units` are not ready before `ready_at`
    /// (a smaller take may be): what another holder of the same limit knows and this one
    /// does not (the shared state's refusal).
    pub fn not_before(&self, units: u64, ready_at: u64) {
        let tat = ready_at
            .saturating_add(self.tolerance)
            .saturating_sub(self.cost(units));
        self.tat.fetch_max(tat, Ordering::AcqRel);
    }

    /// Gives back `units` taken earlier and not used.
    pub fn give_back(&self, units: u64) {
        let cost = self.cost(units);
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(tat.saturating_sub(cost))
            });
    }

    /// Charges `units` used beyond a reservation, at `now` (may push the bucket past empty:
    /// the next takes wait longer). At most `burst + per_minute` units are charged at once:
    /// more than any minute admits is a report to distrust (a server's absurd token count
    /// would otherwise hold the limiter for centuries).
    ///
    /// ```
    /// use infermux_multiplex::gcra::Gcra;
    /// let g = Gcra::new(10, 10).unwrap();
    /// g.charge(u64::MAX, 0);
    /// // two minutes' worth at most (20 units at 6 s each), not 584 years
    /// assert!(g.ready_at(1, 0) <= 120_000_000_000);
    /// ```
    pub fn charge(&self, units: u64, now: u64) {
        let cost = self.cost(units.min(self.burst.saturating_add(self.per_minute)));
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(tat.max(now).saturating_add(cost))
            });
    }

    /// The share of the capacity left at `now`, 0.0 to 1.0.
    pub fn headroom(&self, now: u64) -> f64 {
        let used = self.tat.load(Ordering::Acquire).saturating_sub(now);
        if used >= self.tolerance {
            0.0
        } else {
            (self.tolerance - used) as f64 / self.tolerance as f64
        }
    }
}

/// The pool's limiter for `limit` a minute with `burst_percent` of it spendable at once:
/// capacity `B = clamp(limit·p/100, 1, limit−1)` and refill `limit − B` a minute, so any
/// minute-long window admits at most `limit` (a limit of 1: capacity 1, refill 1 a minute,
/// which admits one per minute-long window).
pub(crate) fn per_minute_limit(limit: u32, burst_percent: u8) -> Option<Gcra> {
    let limit = u64::from(limit);
    if limit == 0 {
        return None;
    }
    if limit == 1 {
        return Gcra::new(1, 1);
    }
    let burst = (limit * u64::from(burst_percent) / 100).clamp(1, limit - 1);
    Gcra::new(burst, limit - burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Learning a later holder's state moves the limiter ahead for the size refused, lets a
    /// smaller take through sooner, and never moves it back.
    #[test]
    fn not_before_holds_the_size_refused_and_lets_smaller_ones_sooner() {
        // 60 a minute, burst 10: a unit is 1 s, the tolerance 10 s
        let g = Gcra::new(10, 60).unwrap();
        let s = 1_000_000_000;
        g.not_before(8, 5 * s);
        assert_eq!(g.ready_at(8, 0), 5 * s);
        assert_eq!(g.ready_at(2, 0), 0);
        assert!(g.try_take(2, 0).is_ok());
        assert!(g.try_take(8, 0).is_err());
        // an earlier word changes nothing
        g.not_before(8, s);
        assert_eq!(g.ready_at(2, 0), s);
    }
}
