//! Per-endpoint counters: lock-free atomics, read as a [`CounterSnapshot`] at any time.
//!
//! What every attempt touches (attempts, successes, failures, in-flight, tokens and the latency
//! histogram) is sharded: each thread writes the shard it was given on first use, every shard
//! on cache lines of its own, so two threads recording at once do not fight over one line.
//! A snapshot sums the shards; what is rare (rejections, retries, queue, breaker) is one
//! atomic each.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use crate::error::ErrorKind;
use crate::types::Usage;

/// Shards at most (a power of two).
const MAX_SHARDS: usize = 16;

/// The number of shards of every sharded counter: the machine's parallelism rounded up to a
/// power of two, at least 4 (a few threads map to distinct shards) and at most
/// [`MAX_SHARDS`]. Read once per process.
fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(4, usize::from)
            .clamp(4, MAX_SHARDS)
            .next_power_of_two()
    })
}

/// This thread's shard among `len` (a power of two): threads are numbered in the order they
/// first record, so the first `len` threads get distinct shards.
fn shard_index(len: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    let i = INDEX.with(|c| {
        let i = c.get();
        if i != usize::MAX {
            return i;
        }
        let i = NEXT.fetch_add(1, Relaxed);
        c.set(i);
        i
    });
    i & (len - 1)
}

const SUB_BUCKETS: u32 = 8; // 3 bits of precision: about 12 % relative error
const BUCKETS: usize = 64 * SUB_BUCKETS as usize;

/// The fixed upper bounds (µs) of the exported latency buckets: 5 ms … 10 min. Every export
/// lists all of them (plus `+Inf`), so every scrape has the same series.
pub const LATENCY_BOUNDS_MICROS: [u64; 16] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
    300_000_000,
    600_000_000,
];

/// Why a call was refused before an attempt started (not an attempt: it never reached the
/// endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// The admission queue was full.
    QueueFull,
    /// The circuit breaker was open (or all half-open probes were out).
    CircuitOpen,
    /// The call deadline passed while the call waited for admission.
    Deadline,
}

impl RejectReason {
    /// Every reason, in declaration order (used to index counters).
    pub const ALL: [RejectReason; 3] = [
        RejectReason::QueueFull,
        RejectReason::CircuitOpen,
        RejectReason::Deadline,
    ];

    /// A stable snake_case name, used in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::QueueFull => "queue_full",
            RejectReason::CircuitOpen => "circuit_open",
            RejectReason::Deadline => "deadline",
        }
    }

    /// The position of this reason in [`RejectReason::ALL`].
    pub fn index(self) -> usize {
        RejectReason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or(0)
    }
}

/// A lock-free log-linear histogram of latencies in microseconds (about 12 % precision), from
/// 1 µs to hours.
///
/// ```
/// use infermux_core::LatencyHistogram;
/// use std::time::Duration;
/// let h = LatencyHistogram::new();
/// for ms in 1..=100 {
///     h.record(Duration::from_millis(ms));
/// }
/// let s = h.snapshot();
/// assert_eq!(s.count, 100);
/// let p50 = s.quantile(0.5).as_millis();
/// assert!((45..=56).contains(&p50), "{p50}");
/// ```
pub struct LatencyHistogram {
    shards: Box<[HistogramShard]>,
}

/// One thread's share of a [`LatencyHistogram`], on cache lines of its own. The count is the
/// sum of the buckets (every latency lands in exactly one), so it costs no increment.
#[repr(align(128))]
struct HistogramShard {
    buckets: [AtomicU64; BUCKETS],
    fixed: [AtomicU64; LATENCY_BOUNDS_MICROS.len()],
    sum_micros: AtomicU64,
    max_micros: AtomicU64,
}

impl HistogramShard {
    fn new() -> Self {
        HistogramShard {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            fixed: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
            max_micros: AtomicU64::new(0),
        }
    }
}

fn bucket_of(micros: u64) -> usize {
    if micros < SUB_BUCKETS as u64 {
        return micros as usize;
    }
    let msb = 63 - micros.leading_zeros(); // >= 3
    let shift = msb - SUB_BUCKETS.trailing_zeros();
    let sub = (micros >> shift) as u32 & (SUB_BUCKETS - 1);
    let idx = (shift + 1) * SUB_BUCKETS + sub;
    (idx as usize).min(BUCKETS - 1)
}

fn bucket_upper(idx: usize) -> u64 {
    let idx = idx as u32;
    if idx < SUB_BUCKETS {
        return idx as u64;
    }
    let shift = idx / SUB_BUCKETS - 1;
    let sub = (idx % SUB_BUCKETS) as u64;
    let upper = ((SUB_BUCKETS as u128 + sub as u128 + 1) << shift) - 1;
    u64::try_from(upper).unwrap_or(u64::MAX)
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        LatencyHistogram {
            shards: (0..shard_count()).map(|_| HistogramShard::new()).collect(),
        }
    }

    /// Records one latency.
    pub fn record(&self, latency: Duration) {
        self.record_in(shard_index(self.shards.len()), latency);
    }

    /// Records one latency in shard `index` (a caller that already knows its thread's shard:
    /// every sharded counter has the same number of shards).
    fn record_in(&self, index: usize, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let Some(shard) = self.shards.get(index) else {
            return;
        };
        if let Some(b) = shard.buckets.get(bucket_of(micros)) {
            b.fetch_add(1, Relaxed);
        }
        let fixed = LATENCY_BOUNDS_MICROS.partition_point(|upper| *upper < micros);
        if let Some(b) = shard.fixed.get(fixed) {
            b.fetch_add(1, Relaxed);
        }
        shard.sum_micros.fetch_add(micros, Relaxed);
        // a new maximum is rare: read first, write only then
        if micros > shard.max_micros.load(Relaxed) {
            shard.max_micros.fetch_max(micros, Relaxed);
        }
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut buckets = vec![0u64; BUCKETS];
        let mut fixed = vec![0u64; LATENCY_BOUNDS_MICROS.len()];
        let (mut sum, mut max) = (0u64, 0u64);
        for shard in self.shards.iter() {
            for (acc, b) in buckets.iter_mut().zip(&shard.buckets) {
                *acc += b.load(Relaxed);
            }
            for (acc, b) in fixed.iter_mut().zip(&shard.fixed) {
                *acc += b.load(Relaxed);
            }
            sum = sum.wrapping_add(shard.sum_micros.load(Relaxed));
            max = max.max(shard.max_micros.load(Relaxed));
        }
        LatencySnapshot {
            count: buckets.iter().sum(),
            buckets,
            fixed,
            sum: Duration::from_micros(sum),
            max: Duration::from_micros(max),
        }
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.snapshot();
        f.debug_struct("LatencyHistogram")
            .field("count", &s.count)
            .field("p50", &s.quantile(0.5))
            .field("p99", &s.quantile(0.99))
            .finish()
    }
}

/// A copy of a [`LatencyHistogram`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LatencySnapshot {
    /// Counts per bucket.
    pub buckets: Vec<u64>,
    /// Counts per fixed bucket of [`LATENCY_BOUNDS_MICROS`] (not cumulative; latencies above
    /// the last bound are only in `count`).
    pub fixed: Vec<u64>,
    /// Number of latencies recorded.
    pub count: u64,
    /// Their sum.
    pub sum: Duration,
    /// The largest.
    pub max: Duration,
}

impl LatencySnapshot {
    /// The latency at quantile `q` (0.0..=1.0): the upper bound of the bucket holding it, or zero
    /// when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = ((q * self.count as f64).ceil() as u64).max(1);
        let mut seen: u64 = 0;
        for (i, c) in self.buckets.iter().enumerate() {
            seen = seen.saturating_add(*c);
            if seen >= rank {
                return Duration::from_micros(bucket_upper(i)).min(self.max);
            }
        }
        self.max
    }

    /// The mean latency.
    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            Duration::ZERO
        } else {
            self.sum / u32::try_from(self.count).unwrap_or(u32::MAX)
        }
    }

    /// Every fixed bound of [`LATENCY_BOUNDS_MICROS`] (µs) with the number of latencies at
    /// or below it: the same bounds in every snapshot, for Prometheus buckets.
    pub fn fixed_cumulative(&self) -> Vec<(u64, u64)> {
        let mut acc: u64 = 0;
        LATENCY_BOUNDS_MICROS
            .iter()
            .enumerate()
            .map(|(i, upper)| {
                acc = self.fixed.get(i).map_or(acc, |c| acc.saturating_add(*c));
                (*upper, acc)
            })
            .collect()
    }

    /// Upper bounds (µs) and cumulative counts of the non-empty log-linear buckets (which
    /// buckets appear depends on the data; exports use [`LatencySnapshot::fixed_cumulative`]).
    pub fn cumulative(&self) -> Vec<(u64, u64)> {
        let mut acc: u64 = 0;
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| {
                acc = acc.saturating_add(*c);
                (bucket_upper(i), acc)
            })
            .collect()
    }
}

/// The counters of one endpoint, filled by every layer. All methods are lock-free.
///
/// ```
/// use infermux_core::{EndpointCounters, ErrorKind, Usage};
/// use std::time::Duration;
/// let c = EndpointCounters::new();
/// c.record_request();
/// c.record_success(Duration::from_millis(12), Some(&Usage::new(10, 5)));
/// c.record_request();
/// c.record_failure(ErrorKind::RateLimited, Duration::from_millis(3));
/// let s = c.snapshot();
/// assert_eq!(s.requests, 2);
/// assert_eq!(s.successes + s.failures_total(), s.requests);
/// assert_eq!(s.failures(ErrorKind::RateLimited), 1);
/// assert_eq!(s.tokens_in, 10);
/// ```
pub struct EndpointCounters {
    shards: Box<[CounterShard]>,
    rejected: [AtomicU64; RejectReason::ALL.len()],
    retries: AtomicU64,
    queued: AtomicI64,
    queue_wait_micros: AtomicU64,
    breaker_state: AtomicU8,
    breaker_trips: AtomicU64,
    latency: LatencyHistogram,
}

/// One thread's share of what every attempt touches, on cache lines of its own. Gauges are
/// sums too: a guard may end on another thread (another shard) than it began.
#[repr(align(128))]
struct CounterShard {
    requests: AtomicU64,
    successes: AtomicU64,
    in_flight: AtomicI64,
    tokens_in: AtomicU64,
    tokens_out: AtomicU64,
    failures: [AtomicU64; ErrorKind::ALL.len()],
}

impl CounterShard {
    fn new() -> Self {
        CounterShard {
            requests: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            tokens_in: AtomicU64::new(0),
            tokens_out: AtomicU64::new(0),
            failures: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl std::fmt::Debug for EndpointCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.snapshot();
        f.debug_struct("EndpointCounters")
            .field("requests", &s.requests)
            .field("successes", &s.successes)
            .field("failures", &s.failures)
            .field("rejected", &s.rejected)
            .field("retries", &s.retries)
            .field("in_flight", &s.in_flight)
            .field("queued", &s.queued)
            .field("queue_wait", &s.queue_wait)
            .field("tokens_in", &s.tokens_in)
            .field("tokens_out", &s.tokens_out)
            .field("breaker_state", &s.breaker_state)
            .field("breaker_trips", &s.breaker_trips)
            .field("latency", &self.latency)
            .finish()
    }
}

/// The most tokens one response adds to the counters: an absurd count a server reports
/// (`u64::MAX`) would wrap them, which a scraper reads as a reset; at this bound it takes
/// sixteen million such answers to come near.
const MAX_TOKENS_A_RESPONSE: u64 = 1 << 40;

/// Adds a response's tokens to a shard's counters, each bounded.
fn add_tokens(shard: &CounterShard, usage: &Usage) {
    shard
        .tokens_in
        .fetch_add(usage.input_tokens.min(MAX_TOKENS_A_RESPONSE), Relaxed);
    shard
        .tokens_out
        .fetch_add(usage.output_tokens.min(MAX_TOKENS_A_RESPONSE), Relaxed);
}

impl EndpointCounters {
    /// Zeroed counters.
    pub fn new() -> Self {
        EndpointCounters {
            shards: (0..shard_count()).map(|_| CounterShard::new()).collect(),
            rejected: std::array::from_fn(|_| AtomicU64::new(0)),
            retries: AtomicU64::new(0),
            queued: AtomicI64::new(0),
            queue_wait_micros: AtomicU64::new(0),
            breaker_state: AtomicU8::new(0),
            breaker_trips: AtomicU64::new(0),
            latency: LatencyHistogram::new(),
        }
    }

    /// This thread's shard and its index (there is always one: the slice is never empty).
    fn shard_at(&self) -> (usize, &CounterShard) {
        let i = shard_index(self.shards.len());
        match self.shards.get(i) {
            Some(s) => (i, s),
            None => (0, &self.shards[0]),
        }
    }

    fn shard(&self) -> &CounterShard {
        self.shard_at().1
    }

    /// One attempt started (after admission: it was sent to the endpoint).
    pub fn record_request(&self) {
        self.shard().requests.fetch_add(1, Relaxed);
    }
    /// One attempt succeeded after `latency`, with the usage the provider reported.
    pub fn record_success(&self, latency: Duration, usage: Option<&Usage>) {
        let (i, shard) = self.shard_at();
        shard.successes.fetch_add(1, Relaxed);
        self.latency.record_in(i, latency);
        if let Some(u) = usage {
            add_tokens(shard, u);
        }
    }
    /// Adds token usage (an absurd count a server reports adds at most 2⁴⁰: a wrapped
    /// counter reads as a reset to a scraper).
    pub fn record_tokens(&self, usage: &Usage) {
        add_tokens(self.shard(), usage);
    }
    /// One attempt failed with `kind` after `latency`.
    pub fn record_failure(&self, kind: ErrorKind, latency: Duration) {
        let (i, shard) = self.shard_at();
        if let Some(c) = shard.failures.get(kind.index()) {
            c.fetch_add(1, Relaxed);
        }
        self.latency.record_in(i, latency);
    }
    /// One call was refused before an attempt started (not an attempt, no latency).
    pub fn record_rejected(&self, reason: RejectReason) {
        if let Some(c) = self.rejected.get(reason.index()) {
            c.fetch_add(1, Relaxed);
        }
    }
    /// One retry was scheduled.
    pub fn record_retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }
    /// Marks one attempt in flight until the guard drops.
    pub fn in_flight(&self) -> InFlightGuard<'_> {
        let gauge = &self.shard().in_flight;
        gauge.fetch_add(1, Relaxed);
        InFlightGuard(gauge)
    }
    /// Marks one request queued until the guard drops.
    pub fn queued(&self) -> InFlightGuard<'_> {
        self.queued.fetch_add(1, Relaxed);
        InFlightGuard(&self.queued)
    }
    /// Moves the in-flight gauge by `delta` (for owners that cannot hold an [`InFlightGuard`]).
    pub fn adjust_in_flight(&self, delta: i64) {
        self.shard().in_flight.fetch_add(delta, Relaxed);
    }
    /// Moves the queued gauge by `delta`.
    pub fn adjust_queued(&self, delta: i64) {
        self.queued.fetch_add(delta, Relaxed);
    }
    /// Adds the time one request waited in the queue.
    pub fn record_queue_wait(&self, wait: Duration) {
        let micros = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        self.queue_wait_micros.fetch_add(micros, Relaxed);
    }
    /// Sets the breaker state (0 closed, 1 open, 2 half-open, others as the breaker defines).
    pub fn set_breaker_state(&self, state: u8) {
        self.breaker_state.store(state, Relaxed);
    }
    /// One CLOSED→OPEN transition.
    pub fn record_breaker_trip(&self) {
        self.breaker_trips.fetch_add(1, Relaxed);
    }

    /// A consistent-enough copy (each field read atomically; sharded fields summed).
    pub fn snapshot(&self) -> CounterSnapshot {
        let mut failures = vec![0u64; ErrorKind::ALL.len()];
        let (mut requests, mut successes, mut tokens_in, mut tokens_out) = (0u64, 0u64, 0u64, 0u64);
        let mut in_flight = 0i64;
        for s in self.shards.iter() {
            requests = requests.wrapping_add(s.requests.load(Relaxed));
            successes = successes.wrapping_add(s.successes.load(Relaxed));
            tokens_in = tokens_in.saturating_add(s.tokens_in.load(Relaxed));
            tokens_out = tokens_out.saturating_add(s.tokens_out.load(Relaxed));
            in_flight = in_flight.wrapping_add(s.in_flight.load(Relaxed));
            for (acc, c) in failures.iter_mut().zip(&s.failures) {
                *acc = acc.wrapping_add(c.load(Relaxed));
            }
        }
        CounterSnapshot {
            requests,
            successes,
            failures,
            rejected: self.rejected.iter().map(|c| c.load(Relaxed)).collect(),
            retries: self.retries.load(Relaxed),
            in_flight: in_flight.max(0) as u64,
            queued: self.queued.load(Relaxed).max(0) as u64,
            queue_wait: Duration::from_micros(self.queue_wait_micros.load(Relaxed)),
            tokens_in,
            tokens_out,
            breaker_state: self.breaker_state.load(Relaxed),
            breaker_trips: self.breaker_trips.load(Relaxed),
            latency: self.latency.snapshot(),
        }
    }
}

impl Default for EndpointCounters {
    fn default() -> Self {
        Self::new()
    }
}

/// Decrements a gauge when dropped.
#[derive(Debug)]
pub struct InFlightGuard<'a>(&'a AtomicI64);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// A circuit breaker's state (the resilience crate's breakers; read from
/// [`CounterSnapshot::breaker`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls pass.
    Closed,
    /// Calls are refused.
    Open,
    /// A few probe calls pass.
    HalfOpen,
}

impl BreakerState {
    /// Every state, in code order.
    pub const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    /// The code stored in [`EndpointCounters`](crate::counters::EndpointCounters): 0 closed, 1 open, 2 half-open.
    pub fn code(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }

    /// The state of a [`BreakerState::code`] (`None` for codes it never produces).
    pub fn from_code(code: u8) -> Option<Self> {
        BreakerState::ALL.into_iter().find(|s| s.code() == code)
    }

    /// A stable snake_case name: `closed`, `open`, `half_open` (metrics labels, tracing).
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A copy of [`EndpointCounters`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CounterSnapshot {
    /// Attempts started (after admission; rejections are not attempts).
    pub requests: u64,
    /// Attempts that succeeded.
    pub successes: u64,
    /// Failures indexed like [`ErrorKind::ALL`].
    pub failures: Vec<u64>,
    /// Calls refused before an attempt, indexed like [`RejectReason::ALL`].
    pub rejected: Vec<u64>,
    /// Retries scheduled.
    pub retries: u64,
    /// Attempts in flight now.
    pub in_flight: u64,
    /// Requests queued now.
    pub queued: u64,
    /// Total time spent queued.
    pub queue_wait: Duration,
    /// Input tokens reported.
    pub tokens_in: u64,
    /// Output tokens reported.
    pub tokens_out: u64,
    /// Breaker state code: 0 closed, 1 open, 2 half-open.
    pub breaker_state: u8,
    /// Breaker trips.
    pub breaker_trips: u64,
    /// Latency of finished attempts.
    pub latency: LatencySnapshot,
}

impl CounterSnapshot {
    /// Failures of one kind.
    pub fn failures(&self, kind: ErrorKind) -> u64 {
        self.failures.get(kind.index()).copied().unwrap_or(0)
    }
    /// All failures.
    pub fn failures_total(&self) -> u64 {
        self.failures.iter().fold(0, |a, &b| a.wrapping_add(b))
    }
    /// Calls refused for `reason`.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected.get(reason.index()).copied().unwrap_or(0)
    }
    /// All refused calls.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().fold(0, |a, &b| a.wrapping_add(b))
    }
    /// The sum of two endpoints' counters (a client over several): counts and latencies add
    /// (counts wrap at 2^64 as each counter does, token totals and durations stop at `u64::MAX`
    /// and `Duration::MAX`: a server's absurd token count never panics), the breaker state is the worse one (open over
    /// half-open over closed).
    pub fn merged(&self, other: &CounterSnapshot) -> CounterSnapshot {
        fn add(a: &[u64], b: &[u64]) -> Vec<u64> {
            (0..a.len().max(b.len()))
                .map(|i| {
                    a.get(i)
                        .copied()
                        .unwrap_or(0)
                        .wrapping_add(b.get(i).copied().unwrap_or(0))
                })
                .collect()
        }
        let rank = |s: u8| match s {
            1 => 2,
            2 => 1,
            _ => 0,
        };
        CounterSnapshot {
            requests: self.requests.wrapping_add(other.requests),
            successes: self.successes.wrapping_add(other.successes),
            failures: add(&self.failures, &other.failures),
            rejected: add(&self.rejected, &other.rejected),
            retries: self.retries.wrapping_add(other.retries),
            in_flight: self.in_flight.wrapping_add(other.in_flight),
            queued: self.queued.wrapping_add(other.queued),
            queue_wait: self.queue_wait.saturating_add(other.queue_wait),
            tokens_in: self.tokens_in.saturating_add(other.tokens_in),
            tokens_out: self.tokens_out.saturating_add(other.tokens_out),
            breaker_state: if rank(other.breaker_state) > rank(self.breaker_state) {
                other.breaker_state
            } else {
                self.breaker_state
            },
            breaker_trips: self.breaker_trips.wrapping_add(other.breaker_trips),
            latency: LatencySnapshot {
                buckets: add(&self.latency.buckets, &other.latency.buckets),
                fixed: add(&self.latency.fixed, &other.latency.fixed),
                count: self.latency.count.wrapping_add(other.latency.count),
                sum: self.latency.sum.saturating_add(other.latency.sum),
                max: self.latency.max.max(other.latency.max),
            },
        }
    }
    /// Non-zero failures by kind, in [`ErrorKind::ALL`] order.
    pub fn failures_by_kind(&self) -> Vec<(ErrorKind, u64)> {
        ErrorKind::ALL
            .iter()
            .map(|k| (*k, self.failures(*k)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
    /// Non-zero failures by kind, as a map keyed by the kind's name (`"rate_limited"`, …).
    ///
    /// ```
    /// use infermux_core::{EndpointCounters, ErrorKind};
    /// use std::time::Duration;
    /// let c = EndpointCounters::new();
    /// c.record_failure(ErrorKind::RateLimited, Duration::from_millis(3));
    /// assert_eq!(c.snapshot().failures_map()["rate_limited"], 1);
    /// ```
    pub fn failures_map(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.failures_by_kind()
            .into_iter()
            .map(|(k, n)| (k.as_str(), n))
            .collect()
    }
    /// The breaker's state (closed when the endpoint has no breaker).
    pub fn breaker(&self) -> BreakerState {
        BreakerState::from_code(self.breaker_state).unwrap_or(BreakerState::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_are_monotonic_and_bounds_contain_values() {
        let mut last = 0;
        for v in (0..100_000u64).chain([u64::MAX / 2, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b >= last || v > 100_000);
            last = b;
            assert!(bucket_upper(b) >= v.min(bucket_upper(BUCKETS - 1)), "{v}");
        }
    }

    #[test]
    fn merging_counters_near_their_limit_wraps_and_saturates_not_panics() {
        let huge = CounterSnapshot {
            requests: u64::MAX,
            tokens_in: u64::MAX,
            tokens_out: u64::MAX - 1,
            failures: vec![u64::MAX; 3],
            rejected: vec![u64::MAX, 2],
            queue_wait: Duration::MAX,
            latency: LatencySnapshot {
                buckets: vec![u64::MAX],
                count: u64::MAX,
                sum: Duration::MAX,
                ..LatencySnapshot::default()
            },
            ..CounterSnapshot::default()
        };
        let other = CounterSnapshot {
            requests: 2,
            tokens_in: 5,
            tokens_out: 3,
            failures: vec![1, 1],
            rejected: vec![1],
            queue_wait: Duration::from_secs(1),
            latency: LatencySnapshot {
                buckets: vec![1],
                count: 1,
                sum: Duration::from_secs(1),
                ..LatencySnapshot::default()
            },
            ..CounterSnapshot::default()
        };
        let m = huge.merged(&other);
        assert_eq!(m.requests, 1);
        // (tokens saturate: a provider's absurd count must not read as a reset)
        assert_eq!(m.tokens_in, u64::MAX);
        assert_eq!(m.tokens_out, u64::MAX);
        assert_eq!(m.failures, vec![0, 0, u64::MAX]);
        assert_eq!(m.queue_wait, Duration::MAX);
        assert_eq!(m.latency.sum, Duration::MAX);
        assert_eq!(m.latency.count, 0);
        assert_eq!(m.failures_total(), u64::MAX);
        assert_eq!(m.rejected_total(), 2);
    }

    /// A server's absurd token count (`u64::MAX`) does not wrap the counters: before, the
    /// total went down by one, which a scraper reads as a counter reset.
    #[test]
    fn an_absurd_token_count_never_takes_the_counters_down() {
        let c = EndpointCounters::new();
        c.record_tokens(&Usage::new(10, 10));
        let before = c.snapshot();
        c.record_tokens(&Usage::new(u64::MAX, u64::MAX));
        c.record_success(Duration::from_millis(1), Some(&Usage::new(u64::MAX, 3)));
        let after = c.snapshot();
        assert!(after.tokens_in > before.tokens_in, "{after:?}");
        assert!(after.tokens_out > before.tokens_out, "{after:?}");
    }

    #[test]
    fn quantiles_and_cumulative_counts_of_absurd_snapshots_do_not_panic() {
        let s = LatencySnapshot {
            buckets: vec![u64::MAX - 1, 3, u64::MAX],
            fixed: vec![u64::MAX, 2],
            count: u64::MAX,
            sum: Duration::MAX,
            max: Duration::from_secs(1),
        };
        assert_eq!(s.quantile(1.0), Duration::from_micros(bucket_upper(1)));
        assert_eq!(s.fixed_cumulative()[1].1, u64::MAX);
        assert_eq!(s.cumulative().last().map(|c| c.1), Some(u64::MAX));
    }

    proptest! {
        #[test]
        fn bucket_error_is_small(v in 8u64..1_000_000_000_000) {
            let upper = bucket_upper(bucket_of(v));
            prop_assert!(upper >= v);
            prop_assert!((upper - v) as f64 <= v as f64 * 0.125 + 1.0);
        }
    }

    #[test]
    fn fixed_buckets_are_inclusive_and_cumulative() {
        let h = LatencyHistogram::new();
        h.record(Duration::from_millis(5)); // on the first bound: counted in it
        h.record(Duration::from_micros(5_001));
        h.record(Duration::from_secs(3600)); // above the last bound: only in +Inf
        let s = h.snapshot();
        let cum = s.fixed_cumulative();
        assert_eq!(cum.len(), LATENCY_BOUNDS_MICROS.len());
        assert_eq!(cum[0], (5_000, 1));
        assert_eq!(cum[1], (10_000, 2));
        assert_eq!(cum.last().map(|c| c.1), Some(2));
        assert_eq!(s.count, 3);
        assert_eq!(
            LatencyHistogram::new().snapshot().fixed_cumulative().len(),
            cum.len(),
            "an empty histogram lists the same bounds"
        );
    }

    #[test]
    fn rejections_are_not_attempts() {
        let c = EndpointCounters::new();
        c.record_rejected(RejectReason::QueueFull);
        c.record_rejected(RejectReason::CircuitOpen);
        let s = c.snapshot();
        assert_eq!(s.requests, 0);
        assert_eq!(s.rejected(RejectReason::QueueFull), 1);
        assert_eq!(s.rejected_total(), 2);
        assert_eq!(s.latency.count, 0);
    }

    #[test]
    fn two_threads_record_into_distinct_cache_line_shards() {
        let c = EndpointCounters::new();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    c.record_request();
                    c.record_success(Duration::from_millis(1), None);
                });
            }
        });
        let busy: Vec<_> = c
            .shards
            .iter()
            .enumerate()
            .filter(|(_, s)| s.requests.load(Relaxed) > 0)
            .collect();
        assert_eq!(busy.len(), 2, "each thread wrote its own shard");
        let addr = |i: usize| std::ptr::from_ref(&c.shards[i]) as usize;
        assert!(
            addr(busy[1].0).abs_diff(addr(busy[0].0)) >= 128,
            "not one cache line"
        );
        let hist_busy = c
            .latency
            .shards
            .iter()
            .filter(|s| s.buckets.iter().any(|b| b.load(Relaxed) > 0))
            .count();
        assert_eq!(hist_busy, 2);
        assert_eq!(c.snapshot().latency.count, 2);
    }

    #[test]
    fn guards_release() {
        let c = EndpointCounters::new();
        {
            let _a = c.in_flight();
            let _b = c.in_flight();
            assert_eq!(c.snapshot().in_flight, 2);
        }
        assert_eq!(c.snapshot().in_flight, 0);
    }
}
