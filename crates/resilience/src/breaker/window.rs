//! Sliding windows of call outcomes: count-based (a ring) and time-based (buckets), both with
//! running totals so reading them is O(1) (a time window subtracts buckets as they expire);
//! and [`AtomicRing`], the count-based window the closed breaker records into without a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::config::SlidingWindow;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bucket {
    epoch: u64,
    calls: u32,
    failures: u32,
    slow: u32,
}

/// Totals of a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

#[derive(Debug)]
pub(crate) enum Window {
    Count {
        ring: Vec<u8>,
        pos: usize,
        totals: Totals,
    },
    Time {
        base: Instant,
        bucket: Duration,
        buckets: Vec<Bucket>,
        /// The latest epoch seen; every bucket older than `epoch - len` is out of `totals`.
        epoch: u64,
        totals: Totals,
    },
}

const FAILED: u8 = 1;
const SLOW: u8 = 2;

fn epoch_of(base: Instant, bucket: Duration, now: Instant) -> u64 {
    let since = now.saturating_duration_since(base).as_nanos();
    u64::try_from(since / bucket.as_nanos().max(1)).unwrap_or(u64::MAX)
}

impl Window {
    pub(crate) fn new(kind: SlidingWindow, now: Instant) -> Self {
        match kind {
            SlidingWindow::Count(n) => Window::Count {
                ring: Vec::with_capacity(n as usize),
                pos: 0,
                totals: Totals::default(),
            },
            SlidingWindow::Time { window, buckets } => Window::Time {
                base: now,
                bucket: (window / buckets.max(1)).max(Duration::from_millis(1)),
                buckets: vec![Bucket::default(); buckets.max(1) as usize],
                epoch: 0,
                totals: Totals::default(),
            },
        }
    }

    /// Moves a time window to `now`, subtracting the buckets that left it.
    fn advance(&mut self, now: Instant) {
        let Window::Time {
            base,
            bucket,
            buckets,
            epoch,
            totals,
        } = self
        else {
            return;
        };
        let current = epoch_of(*base, *bucket, now);
        if current <= *epoch {
            return;
        }
        let n = buckets.len() as u64;
        if current - *epoch >= n {
            // everything expired
            buckets.iter_mut().for_each(|b| *b = Bucket::default());
            *totals = Totals::default();
        } else {
            // the buckets of epochs (epoch - n, current - n] leave the window
            for e in (*epoch + 1)..=current {
                let Some(leaving) = e.checked_sub(n) else {
                    continue;
                };
                if let Some(b) = buckets.get_mut((e % n) as usize)
                    && b.epoch == leaving
                    && b.calls > 0
                {
                    totals.calls -= b.calls;
                    totals.failures -= b.failures;
                    totals.slow -= b.slow;
                    *b = Bucket::default();
                }
            }
        }
        *epoch = current;
    }

    pub(crate) fn record(&mut self, failed: bool, slow: bool, now: Instant, capacity: u32) {
        let flags = (u8::from(failed) * FAILED) | (u8::from(slow) * SLOW);
        self.advance(now);
        match self {
            Window::Count { ring, pos, totals } => {
                if ring.len() < capacity as usize {
                    ring.push(flags);
                } else if let Some(old) = ring.get_mut(*pos) {
                    totals.calls -= 1;
                    totals.failures -= u32::from(*old & FAILED != 0);
                    totals.slow -= u32::from(*old & SLOW != 0);
                    *old = flags;
                    *pos = (*pos + 1) % ring.len();
                }
                totals.calls += 1;
                totals.failures += u32::from(failed);
                totals.slow += u32::from(slow);
            }
            Window::Time {
                buckets,
                epoch,
                totals,
                ..
            } => {
                let n = buckets.len() as u64;
                if let Some(b) = buckets.get_mut((*epoch % n) as usize) {
                    if b.epoch != *epoch || b.calls == 0 {
                        *b = Bucket {
                            epoch: *epoch,
                            ..Bucket::default()
                        };
                    }
                    b.calls += 1;
                    b.failures += u32::from(failed);
                    b.slow += u32::from(slow);
                }
                totals.calls += 1;
                totals.failures += u32::from(failed);
                totals.slow += u32::from(slow);
            }
        }
    }

    pub(crate) fn totals(&mut self, now: Instant) -> Totals {
        self.advance(now);
        match self {
            Window::Count { totals, .. } | Window::Time { totals, .. } => *totals,
        }
    }
}

/// Calls one word of an [`AtomicRing`] holds: three bit planes of 21 bits (present, failed,
/// slow).
const PER_WORD: u64 = 21;
const PLANE: u64 = (1 << PER_WORD) - 1;
/// Words per cache line; the first word of the first line is the call counter.
const PER_LINE: usize = 8;
/// The largest count window kept in an [`AtomicRing`] (larger ones keep the locked [`Window`]).
pub(crate) const ATOMIC_RING_MAX: u32 = 4096;

#[repr(align(64))]
struct Line([AtomicU64; PER_LINE]);

/// The last N calls as bits in atomic words, recorded without a lock.
///
/// A call takes the next index (one `fetch_add`) and writes its slot (one compare-and-swap on
/// the slot's word); totals are the popcounts of the words, so they always describe slots as
/// they are — never a torn running total. Windows of up to 147 calls (the default is 50) fit
/// in one cache line with the counter. With one recorder at a time it is exactly the ring of
/// the last N calls; recorders racing each other may see a total that misses a call still
/// being written, by at most one per racing thread.
pub(crate) struct AtomicRing {
    len: u64,
    /// Words of slots (after the counter).
    words: usize,
    /// The last word's present bits when every one of its slots is filled.
    last_full: u64,
    lines: Box<[Line]>,
}

impl std::fmt::Debug for AtomicRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicRing")
            .field("len", &self.len)
            .field("totals", &self.totals())
            .finish()
    }
}

impl AtomicRing {
    /// A ring of the last `len` calls (1 ..= [`ATOMIC_RING_MAX`]).
    pub(crate) fn new(len: u32) -> Self {
        let len = u64::from(len.max(1));
        let words = len.div_ceil(PER_WORD) as usize;
        let lines = (1 + words).div_ceil(PER_LINE);
        AtomicRing {
            len,
            words,
            last_full: (1u64 << (len - (words as u64 - 1) * PER_WORD)) - 1,
            lines: (0..lines)
                .map(|_| Line(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }

    fn word(&self, i: usize) -> Option<&AtomicU64> {
        self.lines.get(i / PER_LINE)?.0.get(i % PER_LINE)
    }

    /// Records one call; returns the number of calls recorded since the window was emptied,
    /// this one included, or `None` when the call changed nothing: a fast success in a full
    /// window of fast successes (every slot alike, so which one it replaces does not matter).
    /// That steady state is only read, so threads recording successes at once do not write
    /// the ring's cache line at all.
    pub(crate) fn record(&self, failed: bool, slow: bool) -> Option<u64> {
        if !failed && !slow && self.all_fast_successes() {
            return None;
        }
        let Some(counter) = self.word(0) else {
            return Some(0);
        };
        let n = counter.fetch_add(1, Ordering::AcqRel);
        let slot = n % self.len;
        let Some(word) = self.word(1 + (slot / PER_WORD) as usize) else {
            return Some(n + 1);
        };
        let bit = slot % PER_WORD;
        let mask = (1 | 1 << PER_WORD | 1 << (2 * PER_WORD)) << bit;
        let bits = (1 | u64::from(failed) << PER_WORD | u64::from(slow) << (2 * PER_WORD)) << bit;
        let _ = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
            Some((w & !mask) | bits)
        });
        Some(n + 1)
    }

    /// Whether every slot holds a call that neither failed nor was slow.
    fn all_fast_successes(&self) -> bool {
        // every slot present, no failed or slow bit: full words are exactly the present plane
        (1..=self.words).all(|i| {
            let full = if i == self.words {
                self.last_full
            } else {
                PLANE
            };
            self.word(i)
                .is_some_and(|w| w.load(Ordering::Acquire) == full)
        })
    }

    /// The calls in the window, and how many failed and were slow.
    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for i in 1..=self.words {
            let Some(w) = self.word(i) else { break };
            let w = w.load(Ordering::Acquire);
            t.calls += (w & PLANE).count_ones();
            t.failures += ((w >> PER_WORD) & PLANE).count_ones();
            t.slow += ((w >> (2 * PER_WORD)) & PLANE).count_ones();
        }
        t
    }

    /// Empties the window (on closing; the caller holds the breaker's lock).
    pub(crate) fn clear(&self) {
        for line in self.lines.iter() {
            for w in &line.0 {
                w.store(0, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_ring_matches_the_locked_count_window() {
        let t0 = Instant::now();
        for len in [1u32, 6, 21, 22, 50, 147, 148, 500] {
            let ring = AtomicRing::new(len);
            let mut w = Window::new(SlidingWindow::Count(len), t0);
            let mut rng = 99u64 + u64::from(len);
            for step in 0..3 * len + 50 {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let (failed, slow) = (rng >> 63 == 1, rng >> 62 & 1 == 1);
                let recorded = ring.record(failed, slow);
                assert!(recorded.is_none_or(|n| n <= u64::from(step) + 1));
                w.record(failed, slow, t0, len);
                assert_eq!(ring.totals(), w.totals(t0), "len {len} step {step}");
            }
            ring.clear();
            assert_eq!(ring.totals(), Totals::default());
        }
    }

    #[test]
    fn a_full_window_of_fast_successes_absorbs_more_without_a_write() {
        let t0 = Instant::now();
        let ring = AtomicRing::new(4);
        let mut w = Window::new(SlidingWindow::Count(4), t0);
        for _ in 0..4 {
            assert!(ring.record(false, false).is_some(), "filling writes");
            w.record(false, false, t0, 4);
        }
        assert_eq!(ring.record(false, false), None, "absorbed: nothing changes");
        // a failure is written and leaves after exactly four more calls
        assert!(ring.record(true, false).is_some());
        w.record(true, false, t0, 4);
        for step in 0..4 {
            assert_eq!(ring.totals().failures, u32::from(step < 4), "step {step}");
            ring.record(false, false);
            w.record(false, false, t0, 4);
            assert_eq!(ring.totals(), w.totals(t0), "step {step}");
        }
        assert_eq!(ring.totals().failures, 0);
        assert_eq!(ring.record(false, false), None, "clean again");
    }

    #[test]
    fn time_window_running_totals_match_a_recount() {
        let t0 = Instant::now();
        let mut w = Window::new(
            SlidingWindow::Time {
                window: Duration::from_secs(5),
                buckets: 5,
            },
            t0,
        );
        let mut log: Vec<(u64, bool)> = Vec::new();
        let mut rng = 12345u64;
        for step in 0..2_000u64 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let ms = step * 137 + (rng >> 60);
            let now = t0 + Duration::from_millis(ms);
            let failed = rng >> 63 == 1;
            w.record(failed, false, now, u32::MAX);
            log.push((ms / 1000, failed));
            let sec = ms / 1000;
            let expect: Vec<_> = log.iter().filter(|(s, _)| sec - s < 5).collect();
            let t = w.totals(now);
            assert_eq!(t.calls as usize, expect.len(), "step {step}");
            assert_eq!(
                t.failures as usize,
                expect.iter().filter(|(_, f)| *f).count()
            );
        }
    }
}
