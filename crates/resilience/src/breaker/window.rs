//! Sliding windows of call outcomes: count-based (a ring) and time-based (buckets).

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
    },
}

const FAILED: u8 = 1;
const SLOW: u8 = 2;

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
            },
        }
    }

    fn epoch(base: Instant, bucket: Duration, now: Instant) -> u64 {
        let since = now.saturating_duration_since(base).as_nanos();
        u64::try_from(since / bucket.as_nanos().max(1)).unwrap_or(u64::MAX)
    }

    pub(crate) fn record(&mut self, failed: bool, slow: bool, now: Instant, capacity: u32) {
        let flags = (u8::from(failed) * FAILED) | (u8::from(slow) * SLOW);
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
                base,
                bucket,
                buckets,
            } => {
                let epoch = Self::epoch(*base, *bucket, now);
                let n = buckets.len() as u64;
                if let Some(b) = buckets.get_mut((epoch % n) as usize) {
                    if b.epoch != epoch {
                        *b = Bucket {
                            epoch,
                            ..Bucket::default()
                        };
                    }
                    b.calls += 1;
                    b.failures += u32::from(failed);
                    b.slow += u32::from(slow);
                }
            }
        }
    }

    pub(crate) fn totals(&self, now: Instant) -> Totals {
        match self {
            Window::Count { totals, .. } => *totals,
            Window::Time {
                base,
                bucket,
                buckets,
            } => {
                let epoch = Self::epoch(*base, *bucket, now);
                let n = buckets.len() as u64;
                buckets
                    .iter()
                    .filter(|b| b.calls > 0 && b.epoch <= epoch && epoch - b.epoch < n)
                    .fold(Totals::default(), |t, b| Totals {
                        calls: t.calls + b.calls,
                        failures: t.failures + b.failures,
                        slow: t.slow + b.slow,
                    })
            }
        }
    }
}
