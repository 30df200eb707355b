//! The batcher's counters: lock-free atomics, read as a [`BatchStats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a batch was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FlushReason {
    /// It reached [`BatchConfig::max_items`](crate::BatchConfig::max_items).
    MaxItems,
    /// The next item would have taken it over
    /// [`BatchConfig::max_tokens`](crate::BatchConfig::max_tokens).
    MaxTokens,
    /// [`BatchConfig::max_wait`](crate::BatchConfig::max_wait) passed since its first item.
    MaxWait,
    /// One item alone weighs more than `max_tokens`: it went alone.
    Oversize,
    /// The batcher was dropped: what was open went at once.
    Shutdown,
}

impl FlushReason {
    /// Every reason, in declaration order.
    pub const ALL: [FlushReason; 5] = [
        FlushReason::MaxItems,
        FlushReason::MaxTokens,
        FlushReason::MaxWait,
        FlushReason::Oversize,
        FlushReason::Shutdown,
    ];

    /// A stable lowercase name (`max_items`, `max_tokens`, `max_wait`, `oversize`,
    /// `shutdown`), for metrics and tracing.
    pub fn as_str(self) -> &'static str {
        match self {
            FlushReason::MaxItems => "max_items",
            FlushReason::MaxTokens => "max_tokens",
            FlushReason::MaxWait => "max_wait",
            FlushReason::Oversize => "oversize",
            FlushReason::Shutdown => "shutdown",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The counters behind [`BatchStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) submitted: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) items: AtomicU64,
    pub(crate) dedup_hits: AtomicU64,
    pub(crate) queue_full: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) failed_batches: AtomicU64,
    pub(crate) splits: AtomicU64,
    flushes: [AtomicU64; 5],
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
    pub(crate) fn flushed(&self, reason: FlushReason) {
        self.flushes[reason.index()].fetch_add(1, Relaxed);
    }
    pub(crate) fn snapshot(&self) -> BatchStats {
        BatchStats {
            submitted: self.submitted.load(Relaxed),
            batches: self.batches.load(Relaxed),
            items: self.items.load(Relaxed),
            dedup_hits: self.dedup_hits.load(Relaxed),
            queue_full: self.queue_full.load(Relaxed),
            cancelled: self.cancelled.load(Relaxed),
            failed_batches: self.failed_batches.load(Relaxed),
            splits: self.splits.load(Relaxed),
            flushes: std::array::from_fn(|i| self.flushes[i].load(Relaxed)),
        }
    }
}

/// A snapshot of a batcher's counters since it started.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> infermux_core::Result<()> {
/// use infermux_batching::{BatchConfig, Batcher, FlushReason};
/// use infermux_core::RequestContext;
///
/// let batcher = Batcher::new(BatchConfig::default(), |_: &u32| 1, |_key: (), items: Vec<u32>, _ctx| async move {
///     Ok(items.iter().map(|x| x * 2).collect::<Vec<_>>())
/// })?;
/// let ctx = RequestContext::new();
/// assert_eq!(batcher.submit((), 21, &ctx).await?, 42);
/// let stats = batcher.stats();
/// assert_eq!((stats.submitted, stats.batches, stats.items), (1, 1, 1));
/// assert_eq!(stats.flushes(FlushReason::MaxWait), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BatchStats {
    /// Items accepted (a multi-item submit counts each item).
    pub submitted: u64,
    /// Batches sent to the flush function.
    pub batches: u64,
    /// Distinct items sent (after deduplication and after dropping cancelled callers' items).
    pub items: u64,
    /// Items that joined an identical item already in their batch (sent once, fanned out).
    pub dedup_hits: u64,
    /// Submits refused with [`ErrorKind::QueueFull`](infermux_core::ErrorKind::QueueFull).
    pub queue_full: u64,
    /// Items whose caller went away before their batch was sent.
    pub cancelled: u64,
    /// Batches whose flush failed (its error went to every caller in it) or answered with
    /// the wrong number of results — after splitting, batches where some item failed.
    pub failed_batches: u64,
    /// Refusals that may be one item's (`InvalidRequest`, `ContextLength`) of a batch of
    /// several items, sent again in two halves so a bad input fails only its own callers.
    pub splits: u64,
    flushes: [u64; 5],
}

impl BatchStats {
    /// Batches sent for `reason`.
    pub fn flushes(&self, reason: FlushReason) -> u64 {
        self.flushes[reason.index()]
    }

    /// Appends the counters in the Prometheus text format, labelled `batcher="<name>"`: one
    /// counter each (`infermux_batch_items_submitted_total`, `…_batches_total`,
    /// `…_items_sent_total`, `…_dedup_hits_total`, `…_queue_full_total`, `…_cancelled_total`,
    /// `…_failed_batches_total`, `…_splits_total`) and `infermux_batch_flushes_total` by
    /// `reason` (every reason, every scrape).
    ///
    /// ```
    /// use infermux_batching::BatchStats;
    /// let mut out = String::new();
    /// BatchStats::default().render_prometheus("embed", &mut out);
    /// assert!(out.contains("infermux_batch_batches_total{batcher=\"embed\"} 0"));
    /// assert!(out.contains("infermux_batch_flushes_total{batcher=\"embed\",reason=\"max_wait\"} 0"));
    /// ```
    pub fn render_prometheus(&self, name: &str, out: &mut String) {
        use std::fmt::Write;
        let name = name
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        for (metric, help, v) in [
            (
                "infermux_batch_items_submitted_total",
                "Items submitted to the batcher.",
                self.submitted,
            ),
            (
                "infermux_batch_batches_total",
                "Batches sent.",
                self.batches,
            ),
            (
                "infermux_batch_items_sent_total",
                "Distinct items sent in batches.",
                self.items,
            ),
            (
                "infermux_batch_dedup_hits_total",
                "Items that joined an identical item of their batch.",
                self.dedup_hits,
            ),
            (
                "infermux_batch_queue_full_total",
                "Submits refused with a full queue.",
                self.queue_full,
            ),
            (
                "infermux_batch_cancelled_total",
                "Items whose caller left before their batch was sent.",
                self.cancelled,
            ),
            (
                "infermux_batch_failed_batches_total",
                "Batches that failed.",
                self.failed_batches,
            ),
            (
                "infermux_batch_splits_total",
                "Refused batches sent again in halves.",
                self.splits,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {metric} {help}\n# TYPE {metric} counter\n{metric}{{batcher=\"{name}\"}} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP infermux_batch_flushes_total Batches sent, by why.\n\
             # TYPE infermux_batch_flushes_total counter"
        );
        for reason in FlushReason::ALL {
            let _ = writeln!(
                out,
                "infermux_batch_flushes_total{{batcher=\"{name}\",reason=\"{}\"}} {}",
                reason.as_str(),
                self.flushes(reason)
            );
        }
    }
}
