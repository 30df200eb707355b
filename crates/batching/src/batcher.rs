//! [`Batcher`]: coalesces concurrent submits under one key into batches for a user-supplied
//! async flush function, and hands each caller its own result.
//!
//! One task (spawned on the runtime that built the batcher) owns the open batches: submits
//! reach it over a channel, it sends a batch when it is full (items or tokens) or its wait is
//! over, and each sent batch runs in a task of its own, so a slow flush holds no other batch and
//! a caller that goes away cannot stop a batch others wait on. No lock is held across an
//! `.await`; waiting uses tokio's clock, so tests can pause time.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant as StdInstant};

use infermux_core::{Error, ErrorKind, Priority, RequestContext, RequestId, Result};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::BatchConfig;
use crate::stats::{BatchStats, Counters, FlushReason};

type FlushFuture<O> = Pin<Box<dyn Future<Output = Result<Vec<O>>> + Send>>;
type FlushFn<K, I, O> = dyn Fn(K, Vec<I>, RequestContext) -> FlushFuture<O> + Send + Sync;
type WeighFn<I> = dyn Fn(&I) -> u64 + Send + Sync;

/// How early a batch may go before its `max_wait` is over: tokio's timer rounds a sleep up to
/// the next millisecond and the system's wake-up adds its own, so a sleep lands 0–2 ms late
/// (measured here: about 1.1 ms at the median). Aiming this much earlier (at most three
/// quarters of `max_wait`) centres the wake-up just before the due time and keeps `max_wait`
/// a maximum: a batch waits between `max_wait - slack` and about `max_wait + 0.5 ms`.
const TIMER_SLACK: Duration = Duration::from_micros(1500);

/// Batch ids, for tracing (one sequence per process).
static NEXT_BATCH: AtomicU64 = AtomicU64::new(1);

/// Coalesces concurrent submits that share a key into batches for one async flush function.
///
/// - `K`, the batch key: what must be equal for two items to share a request (for embeddings:
///   model, dimensions and provider-specific fields; one batcher serves one provider or
///   routed client).
/// - `I`, an item: equal items in one batch are sent once and their result fanned out.
/// - `O`, one item's result, cloned to every caller of an identical item.
///
/// The flush function gets the key, the batch's distinct items and a [`RequestContext`] with
/// the earliest deadline and the highest priority of its items, and answers one result per
/// item, in order; another count is a [`ErrorKind::Decode`] error to every caller of the batch
/// (never a result given to the wrong caller). Its error goes to every caller of the batch.
/// It is an ordinary async call, so batches go through a pool, retries and breakers like any
/// other call.
///
/// Every submit resolves exactly once: with its result, the batch's error, or at once with
/// [`ErrorKind::QueueFull`] when [`BatchConfig::queue_capacity`] items already wait. A caller
/// that drops its future leaves the batch unharmed; its item is left out if the batch was not
/// yet sent. Dropping the last handle sends what is open at once.
///
/// Cloning is cheap (every clone feeds the same batches). [`Batcher::new`] must be called
/// within a tokio runtime (it spawns the task that owns the open batches).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> infermux_core::Result<()> {
/// use std::time::Duration;
/// use infermux_batching::{BatchConfig, Batcher};
/// use infermux_core::RequestContext;
///
/// // up to 8 words a batch, sent 2 ms after the first at the latest; one token a word
/// let cfg = BatchConfig::new(8, 1000, Duration::from_millis(2))?;
/// let upper = Batcher::new(cfg, |_: &String| 1, |_model: String, words: Vec<String>, _ctx| async move {
///     // one call for the whole batch, one result per distinct item, in order
///     Ok(words.iter().map(|w| w.to_uppercase()).collect::<Vec<_>>())
/// })?;
/// let ctx = RequestContext::new();
/// let (a, b) = tokio::join!(
///     upper.submit("m".to_owned(), "cat".to_owned(), &ctx),
///     upper.submit("m".to_owned(), "dog".to_owned(), &ctx),
/// );
/// assert_eq!((a?, b?), ("CAT".to_owned(), "DOG".to_owned()));
/// assert_eq!(upper.stats().batches, 1); // one call served both
/// # Ok(()) }
/// ```
pub struct Batcher<K, I, O> {
    tx: mpsc::UnboundedSender<Submission<K, I, O>>,
    shared: Arc<Shared<I>>,
}

impl<K, I, O> Clone for Batcher<K, I, O> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<K, I, O> fmt::Debug for Batcher<K, I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batcher")
            .field("config", &self.shared.config)
            .field("queued", &self.shared.queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct Shared<I> {
    config: BatchConfig,
    weigh: Box<WeighFn<I>>,
    /// Items accepted and not yet sent (or dropped).
    queued: AtomicUsize,
    counters: Counters,
}

/// One item of a submit, on its way to the task that owns the batches.
struct Entry<I, O> {
    item: I,
    weight: u64,
    tx: oneshot::Sender<Result<O>>,
    request_id: RequestId,
    deadline: Option<StdInstant>,
    priority: Priority,
    /// When it was submitted: a batch's wait counts from its first item's submit.
    at: Instant,
}

struct Submission<K, I, O> {
    key: K,
    entries: Vec<Entry<I, O>>,
}

/// A caller waiting on one item of a batch.
struct Waiter<O> {
    slot: usize,
    tx: oneshot::Sender<Result<O>>,
    request_id: RequestId,
}

/// An open batch.
struct Open<I, O> {
    items: Vec<I>,
    index: HashMap<I, usize>,
    waiters: Vec<Waiter<O>>,
    tokens: u64,
    deadline: Option<StdInstant>,
    priority: Priority,
    due: Instant,
}

impl<I: Clone + Eq + Hash, O> Open<I, O> {
    fn new(due: Instant) -> Self {
        Open {
            items: Vec::new(),
            index: HashMap::new(),
            waiters: Vec::new(),
            tokens: 0,
            deadline: None,
            priority: Priority::Low,
            due,
        }
    }

    /// Adds `e`'s caller as a waiter on `slot`, folding its deadline and priority in.
    fn wait_on(&mut self, slot: usize, e: Entry<I, O>) {
        self.deadline = match (self.deadline, e.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.priority = self.priority.max(e.priority);
        self.waiters.push(Waiter {
            slot,
            tx: e.tx,
            request_id: e.request_id,
        });
    }

    fn push(&mut self, e: Entry<I, O>) {
        let slot = self.items.len();
        self.items.push(e.item.clone());
        self.index.insert(e.item.clone(), slot);
        self.tokens = self.tokens.saturating_add(e.weight);
        self.wait_on(slot, e);
    }
}

impl<K, I, O> Batcher<K, I, O>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
    I: Clone + Eq + Hash + Send + Sync + 'static,
    O: Clone + Send + 'static,
{
    /// A batcher sending batches as `config` says to `flush`, weighing each item in estimated
    /// tokens with `weigh` (for [`BatchConfig::max_tokens`]; `|_| 1` counts items).
    ///
    /// Errors: [`ErrorKind::Config`] when called outside a tokio runtime.
    pub fn new<W, F, Fut>(config: BatchConfig, weigh: W, flush: F) -> Result<Self>
    where
        W: Fn(&I) -> u64 + Send + Sync + 'static,
        F: Fn(K, Vec<I>, RequestContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>>> + Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::new(
                ErrorKind::Config,
                "a Batcher must be built within a tokio runtime",
            )
        })?;
        let shared = Arc::new(Shared {
            config,
            weigh: Box::new(weigh),
            queued: AtomicUsize::new(0),
            counters: Counters::default(),
        });
        let flush: Arc<FlushFn<K, I, O>> =
            Arc::new(move |k, items, ctx| Box::pin(flush(k, items, ctx)) as FlushFuture<O>);
        let (tx, rx) = mpsc::unbounded_channel();
        runtime.spawn(run(shared.clone(), flush, rx));
        Ok(Batcher { tx, shared })
    }

    /// Submits one item under `key` and waits for its result.
    ///
    /// `ctx` gives the item's request id (kept in tracing), deadline and priority (folded
    /// into its batch's context). Errors: the batch's error, [`ErrorKind::QueueFull`] at once
    /// when the queue is full, [`ErrorKind::Decode`] when the flush answered with the wrong
    /// number of results.
    pub async fn submit(&self, key: K, item: I, ctx: &RequestContext) -> Result<O> {
        let mut rx = self.enqueue(key, vec![item], ctx)?;
        let rx = rx.pop().ok_or_else(lost)?;
        rx.await.map_err(|_| lost())?
    }

    /// Submits several items under one key and waits for all their results, in order (the
    /// first error wins). The items are accepted or refused together; they may be spread over
    /// several batches (a multi-item caller larger than a batch is split).
    ///
    /// Errors: as [`Batcher::submit`], and [`ErrorKind::InvalidRequest`] when there are more
    /// items than the queue can ever hold.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> infermux_core::Result<()> {
    /// use infermux_batching::{BatchConfig, Batcher};
    /// use infermux_core::RequestContext;
    /// let square = Batcher::new(BatchConfig::default(), |_: &u64| 1, |_: (), xs: Vec<u64>, _| async move {
    ///     Ok(xs.iter().map(|x| x * x).collect::<Vec<_>>())
    /// })?;
    /// let out = square.submit_many((), vec![3, 4, 3], &RequestContext::new()).await?;
    /// assert_eq!(out, [9, 16, 9]);
    /// assert_eq!(square.stats().dedup_hits, 1); // 3 was sent once
    /// # Ok(()) }
    /// ```
    pub async fn submit_many(&self, key: K, items: Vec<I>, ctx: &RequestContext) -> Result<Vec<O>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let receivers = self.enqueue(key, items, ctx)?;
        let mut out = Vec::with_capacity(receivers.len());
        for rx in receivers {
            out.push(rx.await.map_err(|_| lost())??);
        }
        Ok(out)
    }

    /// The counters so far.
    pub fn stats(&self) -> BatchStats {
        self.shared.counters.snapshot()
    }

    /// The configuration.
    pub fn config(&self) -> &BatchConfig {
        &self.shared.config
    }

    /// Items waiting (accepted, not yet sent).
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// Reserves room for `items`, then hands them to the batching task.
    fn enqueue(
        &self,
        key: K,
        items: Vec<I>,
        ctx: &RequestContext,
    ) -> Result<Vec<oneshot::Receiver<Result<O>>>> {
        let n = items.len();
        let cap = self.shared.config.queue_capacity();
        if n > cap {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!("{n} items in one submit, more than the batch queue holds ({cap})"),
            ));
        }
        let reserved = self
            .shared
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q + n <= cap).then_some(q + n)
            });
        if reserved.is_err() {
            Counters::add(&self.shared.counters.queue_full, 1);
            tracing::debug!(
                request_id = %ctx.request_id(),
                items = n,
                capacity = cap,
                "batch queue full"
            );
            return Err(Error::new(
                ErrorKind::QueueFull,
                format!("the batch queue is full ({cap} items waiting)"),
            )
            .with_request_id(ctx.request_id()));
        }
        Counters::add(&self.shared.counters.submitted, n as u64);
        let at = Instant::now();
        let mut receivers = Vec::with_capacity(n);
        let entries = items
            .into_iter()
            .map(|item| {
                let (tx, rx) = oneshot::channel();
                receivers.push(rx);
                Entry {
                    weight: (self.shared.weigh)(&item),
                    item,
                    tx,
                    request_id: ctx.request_id(),
                    deadline: ctx.deadline(),
                    priority: ctx.priority(),
                    at,
                }
            })
            .collect();
        if self.tx.send(Submission { key, entries }).is_err() {
            // the batching task is gone (its runtime shut down): nothing will answer
            self.shared.queued.fetch_sub(n, Ordering::AcqRel);
            return Err(lost());
        }
        Ok(receivers)
    }
}

/// The error of a submit whose batch can no longer answer (its runtime shut down, or the flush
/// function panicked).
fn lost() -> Error {
    Error::new(
        ErrorKind::Cancelled,
        "the batch was lost before it answered (runtime shut down or flush panicked)",
    )
}

/// The task that owns the open batches.
async fn run<K, I, O>(
    shared: Arc<Shared<I>>,
    flush: Arc<FlushFn<K, I, O>>,
    mut rx: mpsc::UnboundedReceiver<Submission<K, I, O>>,
) where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
    I: Clone + Eq + Hash + Send + Sync + 'static,
    O: Clone + Send + 'static,
{
    let mut open: HashMap<K, Open<I, O>> = HashMap::new();
    let slack = TIMER_SLACK.min(shared.config.max_wait() * 3 / 4);
    loop {
        // submits already waiting in the channel join their batches before a due batch goes: a
        // busy thread can run this loop late, and a batch must not leave without the items
        // submitted within its wait (one submitted after it fell due rides along, leaving no
        // later than it would alone); only those queued now, so a steady stream of submits
        // cannot hold a due batch back
        for _ in 0..rx.len() {
            match rx.try_recv() {
                Ok(sub) => add_all(&shared, &flush, &mut open, sub),
                Err(_) => break,
            }
        }
        // what is due goes first, even while submits keep coming
        let now = Instant::now();
        let due: Vec<K> = open
            .iter()
            .filter(|(_, b)| b.due <= now + slack)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            if let Some(b) = open.remove(&k) {
                send(&shared, &flush, k, b, FlushReason::MaxWait);
            }
        }
        let next = open
            .values()
            .map(|b| b.due.checked_sub(slack).unwrap_or(b.due))
            .min();
        let timer = async move {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            biased;
            msg = rx.recv() => match msg {
                Some(sub) => add_all(&shared, &flush, &mut open, sub),
                None => {
                    for (k, b) in open.drain() {
                        send(&shared, &flush, k, b, FlushReason::Shutdown);
                    }
                    return;
                }
            },
            () = timer => {}
        }
    }
}

/// Puts every entry of `sub` into its key's open batch.
fn add_all<K, I, O>(
    shared: &Arc<Shared<I>>,
    flush: &Arc<FlushFn<K, I, O>>,
    open: &mut HashMap<K, Open<I, O>>,
    sub: Submission<K, I, O>,
) where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
    I: Clone + Eq + Hash + Send + Sync + 'static,
    O: Clone + Send + 'static,
{
    for e in sub.entries {
        add(shared, flush, open, sub.key.clone(), e);
    }
}

/// Puts `e` into `key`'s open batch, sending batches as the limits say.
fn add<K, I, O>(
    shared: &Arc<Shared<I>>,
    flush: &Arc<FlushFn<K, I, O>>,
    open: &mut HashMap<K, Open<I, O>>,
    key: K,
    e: Entry<I, O>,
) where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
    I: Clone + Eq + Hash + Send + Sync + 'static,
    O: Clone + Send + 'static,
{
    let cfg = &shared.config;
    if let Some(b) = open.get_mut(&key)
        && let Some(&slot) = b.index.get(&e.item)
    {
        Counters::add(&shared.counters.dedup_hits, 1);
        b.wait_on(slot, e);
        return;
    }
    if e.weight > cfg.max_tokens() {
        let mut alone = Open::new(e.at);
        alone.push(e);
        send(shared, flush, key, alone, FlushReason::Oversize);
        return;
    }
    if let Some(b) = open.get(&key)
        && b.tokens.saturating_add(e.weight) > cfg.max_tokens()
        && let Some(b) = open.remove(&key)
    {
        send(shared, flush, key.clone(), b, FlushReason::MaxTokens);
    }
    let due = e.at + cfg.max_wait();
    let b = open.entry(key.clone()).or_insert_with(|| Open::new(due));
    b.push(e);
    if b.items.len() >= cfg.max_items()
        && let Some(b) = open.remove(&key)
    {
        send(shared, flush, key, b, FlushReason::MaxItems);
    }
}

/// Takes `batch` off the queue and runs it in a task of its own.
fn send<K, I, O>(
    shared: &Arc<Shared<I>>,
    flush: &Arc<FlushFn<K, I, O>>,
    key: K,
    batch: Open<I, O>,
    reason: FlushReason,
) where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
    I: Clone + Eq + Hash + Send + Sync + 'static,
    O: Clone + Send + 'static,
{
    shared
        .queued
        .fetch_sub(batch.waiters.len(), Ordering::AcqRel);
    let id = NEXT_BATCH.fetch_add(1, Ordering::Relaxed);
    let span = tracing::debug_span!(
        "infermux.batch",
        batch = id,
        key = ?key,
        reason = reason.as_str(),
        size = tracing::field::Empty,
        callers = tracing::field::Empty,
    );
    tokio::spawn(flush_batch(shared.clone(), flush.clone(), key, batch, reason).instrument(span));
}

/// Drops the items nobody waits for any more, calls the flush function and answers each
/// caller.
async fn flush_batch<K, I, O>(
    shared: Arc<Shared<I>>,
    flush: Arc<FlushFn<K, I, O>>,
    key: K,
    batch: Open<I, O>,
    reason: FlushReason,
) where
    I: Clone,
    O: Clone,
{
    let counters = &shared.counters;
    let Open {
        items,
        waiters,
        deadline,
        priority,
        ..
    } = batch;
    let before = waiters.len();
    let waiters: Vec<Waiter<O>> = waiters.into_iter().filter(|w| !w.tx.is_closed()).collect();
    Counters::add(&counters.cancelled, (before - waiters.len()) as u64);
    // keep only the items someone still waits for; `remap[old slot]` is the new slot
    let mut remap = vec![usize::MAX; items.len()];
    let mut live = Vec::with_capacity(items.len());
    for w in &waiters {
        if remap[w.slot] == usize::MAX {
            remap[w.slot] = live.len();
            live.push(items[w.slot].clone());
        }
    }
    drop(items);
    let span = tracing::Span::current();
    span.record("size", live.len());
    span.record("callers", waiters.len());
    if live.is_empty() {
        tracing::debug!("every caller of the batch went away: not sent");
        return;
    }
    counters.flushed(reason);
    Counters::add(&counters.batches, 1);
    Counters::add(&counters.items, live.len() as u64);
    let mut ctx = RequestContext::new().with_priority(priority);
    if let Some(d) = deadline {
        ctx = ctx.with_deadline(d);
    }
    for w in &waiters {
        tracing::trace!(request_id = %w.request_id, batch_request_id = %ctx.request_id(), slot = remap[w.slot], "item in batch");
    }
    tracing::debug!(reason = reason.as_str(), size = live.len(), callers = waiters.len(), batch_request_id = %ctx.request_id(), "batch flushed");
    let n = live.len();
    match flush(key, live, ctx).await {
        Ok(outs) if outs.len() == n => {
            for w in waiters {
                let _ = w.tx.send(Ok(outs[remap[w.slot]].clone()));
            }
        }
        Ok(outs) => {
            Counters::add(&counters.failed_batches, 1);
            let e = Error::new(
                ErrorKind::Decode,
                format!(
                    "the batch call answered {} results for {n} items",
                    outs.len()
                ),
            );
            tracing::warn!(
                got = outs.len(),
                expected = n,
                "batch answered the wrong number of results"
            );
            for w in waiters {
                let _ = w.tx.send(Err(e.clone()));
            }
        }
        Err(e) => {
            Counters::add(&counters.failed_batches, 1);
            tracing::debug!(error = %e, "batch failed");
            for w in waiters {
                let _ = w.tx.send(Err(e.clone()));
            }
        }
    }
}
