//! [`Batcher`]: coalesces concurrent submits under one key into batches for a user-supplied
//! async flush function, and hands each caller its own result.
//!
//! One task (spawned on the runtime that built the batcher, and again on a caller's runtime
//! if that one shut down) owns the open batches: submits reach it over a channel, it sends a batch when it is full (items or tokens) or its wait is
//! over, and each sent batch runs in a task of its own, so a slow flush holds no other batch and
//! a caller that goes away cannot stop a batch others wait on. No lock is held across an
//! `.await`; waiting uses tokio's clock, so tests can pause time.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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
/// the highest priority of the callers still waiting when it is sent and the latest of their
/// deadlines (none when one of them has none): a caller with a near deadline does not cut the
/// others' time short. Each caller's own deadline ends its own wait
/// ([`ErrorKind::Timeout`]); the batch goes on for the rest. It answers one result per
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
/// within a tokio runtime with its timer enabled (it spawns the task that owns the open
/// batches, whose waits and callers' deadlines use tokio's timer). When that runtime
/// shuts down, the callers of the batches it held get [`ErrorKind::Cancelled`], and the next
/// submit starts the task again on its own runtime.
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
    /// The batching task's inbox, replaced when that task is found gone (its runtime shut
    /// down). Locked only to send, never across an `.await`.
    tx: Arc<Mutex<mpsc::UnboundedSender<Submission<K, I, O>>>>,
    flush: Arc<FlushFn<K, I, O>>,
    shared: Arc<Shared<I>>,
}

impl<K, I, O> Clone for Batcher<K, I, O> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
            flush: self.flush.clone(),
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
    deadline: Option<StdInstant>,
    priority: Priority,
}

/// An open batch.
struct Open<I, O> {
    items: Vec<I>,
    index: HashMap<I, usize>,
    waiters: Vec<Waiter<O>>,
    tokens: u64,
    due: Instant,
}

impl<I: Clone + Eq + Hash, O> Open<I, O> {
    fn new(due: Instant) -> Self {
        Open {
            items: Vec::new(),
            index: HashMap::new(),
            waiters: Vec::new(),
            tokens: 0,
            due,
        }
    }

    /// Adds `e`'s caller as a waiter on `slot`.
    fn wait_on(&mut self, slot: usize, e: Entry<I, O>) {
        self.waiters.push(Waiter {
            slot,
            tx: e.tx,
            request_id: e.request_id,
            deadline: e.deadline,
            priority: e.priority,
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
        let tx = start(&runtime, &shared, &flush);
        Ok(Batcher {
            tx: Arc::new(Mutex::new(tx)),
            flush,
            shared,
        })
    }

    /// Submits one item under `key` and waits for its result.
    ///
    /// `ctx` gives the item's request id (kept in tracing), deadline (the end of this
    /// caller's wait; the batch's context gets the latest of its callers') and priority
    /// (the batch's is the highest of its callers'). Errors: the batch's error,
    /// [`ErrorKind::QueueFull`] at once when the queue is full, [`ErrorKind::Timeout`] when
    /// `ctx`'s deadline passes first, [`ErrorKind::Decode`] when the flush answered with the
    /// wrong number of results.
    pub async fn submit(&self, key: K, item: I, ctx: &RequestContext) -> Result<O> {
        let mut rx = self.enqueue(key, vec![item], ctx)?;
        let rx = rx.pop().ok_or_else(lost)?;
        within(ctx, async { rx.await.map_err(|_| lost())? }).await
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
        within(ctx, async {
            let mut out = Vec::with_capacity(receivers.len());
            for rx in receivers {
                out.push(rx.await.map_err(|_| lost())??);
            }
            Ok(out)
        })
        .await
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
            )
            .with_request_id(ctx.request_id()));
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
        let mut tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let Err(mpsc::error::SendError(sub)) = tx.send(Submission { key, entries }) else {
            return Ok(receivers);
        };
        // the batching task is gone (the runtime it ran on shut down, and the batches it held
        // with it): start it again on this caller's runtime
        let again = tokio::runtime::Handle::try_current().ok().and_then(|rt| {
            *tx = start(&rt, &self.shared, &self.flush);
            tx.send(sub).ok()
        });
        if again.is_none() {
            self.shared.queued.fetch_sub(n, Ordering::AcqRel);
            return Err(lost());
        }
        Ok(receivers)
    }
}

/// Spawns the task that owns the open batches on `runtime`; its inbox.
fn start<K, I, O>(
    runtime: &tokio::runtime::Handle,
    shared: &Arc<Shared<I>>,
    flush: &Arc<FlushFn<K, I, O>>,
) -> mpsc::UnboundedSender<Submission<K, I, O>>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
    I: Clone + Eq + Hash + Send + Sync + 'static,
    O: Clone + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    // the guard exists before the task first runs: a runtime dropped before polling it gives
    // back the room of what reached its inbox too
    let held = Held {
        open: HashMap::new(),
        rx,
        shared: shared.clone(),
    };
    runtime.spawn(run(shared.clone(), flush.clone(), held));
    tx
}

/// `wait`, ended by `ctx`'s deadline with [`ErrorKind::Timeout`] (the caller's receivers are
/// dropped with it, so a batch not yet sent leaves its items out). The deadline takes tokio's
/// timer: off a tokio runtime the wait is not bounded here (the batch's own deadline still
/// is).
async fn within<T>(ctx: &RequestContext, wait: impl Future<Output = Result<T>>) -> Result<T> {
    // a batch's error carries the batch's request id: the caller's own is what it knows
    waited(ctx, wait)
        .await
        .map_err(|e| e.with_request_id(ctx.request_id()))
}

async fn waited<T>(ctx: &RequestContext, wait: impl Future<Output = Result<T>>) -> Result<T> {
    let Some(left) = ctx
        .remaining()
        .filter(|_| tokio::runtime::Handle::try_current().is_ok())
    else {
        return wait.await;
    };
    tokio::time::timeout(left, wait).await.unwrap_or_else(|_| {
        Err(Error::new(
            ErrorKind::Timeout,
            "the caller's deadline passed before its batch answered",
        ))
    })
}

/// The error of a submit whose batch can no longer answer (its runtime shut down, or the flush
/// function panicked).
fn lost() -> Error {
    Error::new(
        ErrorKind::Cancelled,
        "the batch was lost before it answered (runtime shut down or flush panicked)",
    )
}

/// What the batching task holds: the open batches and its inbox. Dropped with the task (its
/// runtime shut down), it gives back the queue's room of every item it held, open or still
/// in the inbox; their callers' receivers see the senders dropped ([`ErrorKind::Cancelled`]).
struct Held<K, I, O> {
    open: HashMap<K, Open<I, O>>,
    rx: mpsc::UnboundedReceiver<Submission<K, I, O>>,
    shared: Arc<Shared<I>>,
}

impl<K, I, O> Drop for Held<K, I, O> {
    fn drop(&mut self) {
        let mut n: usize = self.open.values().map(|b| b.waiters.len()).sum();
        self.rx.close();
        while let Ok(sub) = self.rx.try_recv() {
            n += sub.entries.len();
        }
        if n > 0 {
            self.shared.queued.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

/// The task that owns the open batches.
async fn run<K, I, O>(shared: Arc<Shared<I>>, flush: Arc<FlushFn<K, I, O>>, mut held: Held<K, I, O>)
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
    I: Clone + Eq + Hash + Send + Sync + 'static,
    O: Clone + Send + 'static,
{
    let Held { open, rx, .. } = &mut held;
    let slack = TIMER_SLACK.min(shared.config.max_wait() * 3 / 4);
    loop {
        // submits already waiting in the channel join their batches before a due batch goes: a
        // busy thread can run this loop late, and a batch must not leave without the items
        // submitted within its wait (one submitted after it fell due rides along, leaving no
        // later than it would alone); only those queued now, so a steady stream of submits
        // cannot hold a due batch back
        for _ in 0..rx.len() {
            match rx.try_recv() {
                Ok(sub) => add_all(&shared, &flush, open, sub),
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
                Some(sub) => add_all(&shared, &flush, open, sub),
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
    K: Clone + Send,
    I: Clone + Send,
    O: Clone + Send,
{
    let counters = &shared.counters;
    let Open { items, waiters, .. } = batch;
    let before = waiters.len();
    let waiters: Vec<Waiter<O>> = waiters.into_iter().filter(|w| !w.tx.is_closed()).collect();
    // the context of the callers still waiting: their highest priority, their latest deadline
    // (none if one has none; one who left, or whose deadline ends its own wait first, does not
    // cut the others' time short)
    let priority = waiters.iter().map(|w| w.priority).max();
    let deadline = waiters
        .iter()
        .map(|w| w.deadline)
        .reduce(|a, b| a.zip(b).map(|(a, b)| a.max(b)));
    Counters::add(&counters.cancelled, (before - waiters.len()) as u64);
    // keep only the items someone still waits for, moved in slot order (`send_split` keeps
    // the one copy a split needs); `remap[old slot]` is the new slot
    let mut used = vec![false; items.len()];
    for w in &waiters {
        used[w.slot] = true;
    }
    let mut remap = vec![usize::MAX; items.len()];
    let mut live = Vec::with_capacity(items.len());
    for (slot, item) in items.into_iter().enumerate() {
        if used[slot] {
            remap[slot] = live.len();
            live.push(item);
        }
    }
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
    let mut ctx = RequestContext::new().with_priority(priority.unwrap_or(Priority::Low));
    if let Some(d) = deadline.flatten() {
        ctx = ctx.with_deadline(d);
    }
    for w in &waiters {
        tracing::trace!(request_id = %w.request_id, batch_request_id = %ctx.request_id(), slot = remap[w.slot], "item in batch");
    }
    tracing::debug!(reason = reason.as_str(), size = live.len(), callers = waiters.len(), batch_request_id = %ctx.request_id(), "batch flushed");
    let budget = AtomicU32::new(split_budget(live.len()));
    let outs = send_split(&*flush, key, live, ctx, counters, &budget).await;
    if outs.iter().any(Result::is_err) {
        Counters::add(&counters.failed_batches, 1);
    }
    for w in waiters {
        let _ = w.tx.send(outs[remap[w.slot]].clone());
    }
}

/// Whether a batch's error may be one item's rather than the batch's: the provider refused an
/// input (too long, empty, malformed) — worth sending the items again apart; or the answer
/// was longer than the client takes (the vectors of 2 048 inputs are tens of MiB), which
/// halves answer within.
fn may_be_one_items(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::InvalidRequest | ErrorKind::ContextLength
    ) || e.is_over_body_limit()
}

/// The calls a batch of `n` items may add by splitting: enough to find one bad item (two a
/// level, `⌈log₂ n⌉` levels) twice over. A refusal of the whole request (a parameter the model
/// does not take) split down to single items would be `2n - 1` calls, thousands at once for
/// a large batch, each refused.
fn split_budget(n: usize) -> u32 {
    let levels = usize::BITS - n.saturating_sub(1).leading_zeros();
    4 * levels + 2
}

/// Sends `items` with `flush`: one result per item, in order. A refusal that may be one item's
/// ([`may_be_one_items`]) of several items is sent again in two halves (at once, each), down
/// to the items that fail alone: one bad input fails its own callers, not the whole batch.
/// The halves spend `budget` (see [`split_budget`]): once it is spent, a refused part fails
/// whole.
fn send_split<'a, K, I, O>(
    flush: &'a FlushFn<K, I, O>,
    key: K,
    items: Vec<I>,
    ctx: RequestContext,
    counters: &'a Counters,
    budget: &'a AtomicU32,
) -> Pin<Box<dyn Future<Output = Vec<Result<O>>> + Send + 'a>>
where
    K: Clone + Send + 'a,
    I: Clone + Send + 'a,
    O: Clone + Send + 'a,
{
    Box::pin(async move {
        let n = items.len();
        // (the items again for the halves, should the batch be refused)
        let again = (n > 1).then(|| items.clone());
        match flush(key.clone(), items, ctx.clone()).await {
            Ok(outs) if outs.len() == n => outs.into_iter().map(Ok).collect(),
            Ok(outs) => {
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
                vec![Err(e); n]
            }
            Err(e)
                if may_be_one_items(&e)
                    && again.is_some()
                    && budget
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| b.checked_sub(2))
                        .is_ok() =>
            {
                let mut right = again.unwrap_or_default();
                let left: Vec<I> = right.drain(..n / 2).collect();
                Counters::add(&counters.splits, 1);
                tracing::debug!(error = %e, size = n, "batch refused: sent again in halves");
                let (a, b) = tokio::join!(
                    send_split(flush, key.clone(), left, ctx.clone(), counters, budget),
                    send_split(flush, key, right, ctx, counters, budget)
                );
                a.into_iter().chain(b).collect()
            }
            Err(e) => {
                tracing::debug!(error = %e, "batch failed");
                vec![Err(e); n]
            }
        }
    })
}
