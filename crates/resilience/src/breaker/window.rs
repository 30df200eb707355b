//! Sliding windows of call outcomes: count-based (a ring) and time-based (buckets), both with
//! running totals so reading them is O(1) (a time window subtracts buckets as they expire).

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

#[cfg(test)]
mod tests {
    use super::*;

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
