//! [`Cache`]: the exact and semantic tiers behind one entry point a facade wraps around any
//! call ([`Cache::call`], [`Cache::stream`]), or drives itself ([`Cache::lookup`],
//! [`Cache::store`], [`Cache::lookup_stream`], [`Cache::tee`]).

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, TryLockError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use infermux_core::{
    CacheHit, Clock, EventStream, Priority, Request, RequestContext, Response, Result,
    StreamAccumulator, StreamEvent, SystemClock,
};
use moka::notification::RemovalCause;
use serde::{Deserialize, Serialize};

use crate::config::{CacheConfig, SemanticConfig};
use crate::embed::Embedder;
use crate::index::VectorIndex;
use crate::key::{CacheKey, SemanticProbe, SemanticSkip, semantic_probe};
use crate::stream::{Tee, replay};
use crate::verify::Verifier;
use tokio::sync::watch;

/// A stored answer: a whole response, or the events of a stream in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", content = "answer", rename_all = "snake_case")]
enum Answer {
    Call(Box<Response>),
    Stream(Vec<StreamEvent>),
}

/// One stored answer and when (cache time, ms since the Unix epoch).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    stored_ms: u64,
    answer: Answer,
    /// About how many bytes the answer holds in memory (see [`Entry::new`]); what the byte
    /// budgets weigh. Not stored: measured again when an entry is read back.
    #[serde(skip)]
    bytes: usize,
}

impl Entry {
    /// An entry with its size measured: a call's answer as its JSON, a stream's as its events
    /// (their texts, plus 64 bytes an event), either at most a little past what is recorded.
    fn new(stored_ms: u64, answer: Answer) -> Self {
        Entry {
            stored_ms,
            answer,
            bytes: 0,
        }
        .weighed()
    }

    /// The entry with its size measured (one read back from Redis comes without it).
    fn weighed(mut self) -> Self {
        let limit = 2 * crate::stream::MAX_RECORDED_BYTES;
        self.bytes = 128
            + match &self.answer {
                Answer::Call(r) => crate::stream::json_size_upto(&**r, limit),
                Answer::Stream(events) => events
                    .iter()
                    .map(crate::stream::size_of_event)
                    .fold(0usize, usize::saturating_add),
            };
        self
    }
}

/// A byte count as the KiB a store weighs it (at least 1).
fn kib(bytes: u64) -> u64 {
    bytes.div_ceil(1024).max(1)
}

/// The weight of something of `bytes` in a store of `capacity` KiB that holds at most `count`
/// things: its KiB, but at least the store's capacity over its count — so the store holds at
/// most `count` things and at most `capacity` KiB, both bounds with one weigher.
fn weight(bytes: u64, capacity_kib: u64, count: u64) -> u32 {
    let share = capacity_kib.div_ceil(count.max(1));
    u32::try_from(kib(bytes).max(share)).unwrap_or(u32::MAX)
}

/// About how many bytes a semantic row holds: its text, its vector, its answer.
fn row_bytes(text: &str, dim: usize, entry: &Entry) -> usize {
    96 + text.len() + 4 * dim + entry.bytes
}

/// The most records one catch-up reply carries (about 5 KB each with a 384-dimension vector).
#[cfg(feature = "redis")]
const CATCH_UP_RECORDS: usize = 256;

/// The most replies one lookup's catch-up reads.
#[cfg(feature = "redis")]
const CATCH_UP_BATCHES: usize = 8;

/// One semantic record as Redis holds it.
#[cfg(feature = "redis")]
#[derive(Serialize, Deserialize)]
struct Record {
    text: String,
    vector: Vec<f32>,
    entry: Entry,
}

/// One row of a namespace's index: its text and entry, `None` once it is dead (evicted or
/// expired: what it held is freed at once, its place in the index until a compaction).
#[derive(Debug)]
struct Row(Option<(String, Arc<Entry>)>);

/// One semantic namespace: its index and rows.
#[derive(Debug, Default)]
struct Namespace {
    index: Option<VectorIndex>,
    rows: Vec<Row>,
    live: usize,
    /// About how many bytes the live rows hold ([`row_bytes`]).
    bytes: usize,
    /// Rows before this one are dead (the oldest go first: past the bound or their TTL).
    front: usize,
    /// The last Redis record folded in, and the generation of the namespace it was read
    /// from (see `redis_store`).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    redis_seq: u64,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    redis_gen: String,
}

/// A row stored while another writer held the namespace: its text, vector and entry.
type PendingRow = (String, Vec<f32>, Arc<Entry>);

/// A namespace behind its lock, with the rows stored while a writer held it. One writer at a
/// time (`writing`) changes it, and takes in the pending rows before it lets go: a store never
/// waits for another store's index rebuild, and a tokio blocking thread never parks on it.
#[derive(Debug, Default)]
struct NsCell {
    lock: RwLock<Namespace>,
    pending: Mutex<VecDeque<PendingRow>>,
    writing: AtomicBool,
    /// The namespace's bytes when its writer last let go: what the tier's byte budget weighs
    /// it at (the namespace is put back in the tier after each write, weighed again).
    bytes: AtomicU64,
}

impl NsCell {
    fn pending(&self) -> std::sync::MutexGuard<'_, VecDeque<PendingRow>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The counters (see [`CacheSnapshot`]).
#[derive(Debug, Default)]
struct Counters {
    exact_hits: AtomicU64,
    exact_misses: AtomicU64,
    semantic_hits: AtomicU64,
    semantic_misses: AtomicU64,
    semantic_skipped: AtomicU64,
    semantic_busy: AtomicU64,
    verifier_rejects: AtomicU64,
    stores: AtomicU64,
    semantic_stores: AtomicU64,
    evictions: AtomicU64,
    expired: AtomicU64,
    store_errors: AtomicU64,
    embed_errors: AtomicU64,
    coalesced: AtomicU64,
}

/// The cache's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct CacheSnapshot {
    /// Lookups answered by the exact tier.
    pub exact_hits: u64,
    /// Lookups the exact tier did not answer.
    pub exact_misses: u64,
    /// Lookups answered by the semantic tier.
    pub semantic_hits: u64,
    /// Lookups the semantic tier saw and did not answer.
    pub semantic_misses: u64,
    /// Lookups the semantic tier did not see (temperature > 0, tools, not a chat ending in a
    /// user turn of text).
    pub semantic_skipped: u64,
    /// Semantic lookups that found their namespace being changed (a row going in, its index
    /// rebuilt) and missed rather than wait.
    pub semantic_busy: u64,
    /// Candidates the verifier turned down.
    pub verifier_rejects: u64,
    /// Answers stored in the exact tier.
    pub stores: u64,
    /// Answers stored in the semantic tier.
    pub semantic_stores: u64,
    /// Answers evicted for space (exact and semantic).
    pub evictions: u64,
    /// Answers found past their TTL.
    pub expired: u64,
    /// Store calls (Redis) that failed or timed out: each was a miss or a store not made.
    pub store_errors: u64,
    /// Embedding calls that failed (each a semantic miss or a store not made).
    pub embed_errors: u64,
    /// Calls that missed while an identical call was in flight, waited for it and were
    /// answered by its stored answer (also counted in `exact_misses`; see
    /// [`CacheConfig::coalesce`]).
    pub coalesced: u64,
    /// Answers in the in-memory exact store.
    pub entries: u64,
    /// The in-memory exact store's byte budget in use ([`CacheConfig::max_bytes`]; an answer
    /// weighs at least its share of the budget).
    pub bytes: u64,
    /// The semantic tier's byte budget in use ([`SemanticConfig::max_bytes`]).
    pub semantic_bytes: u64,
    /// The verifier's estimated false-hit rate at its threshold, when it knows it.
    pub estimated_false_hit_rate: Option<f64>,
}

/// Where exact answers live.
#[derive(Clone)]
enum Backend {
    Memory(moka::sync::Cache<CacheKey, Arc<Entry>>),
    #[cfg(feature = "redis")]
    Redis(crate::RedisStore),
}

/// The semantic tier: an embedder, a verifier and the namespaces.
struct Semantic {
    embedder: Arc<dyn Embedder>,
    verifier: Arc<dyn Verifier>,
    config: SemanticConfig,
    namespaces: moka::sync::Cache<CacheKey, Arc<NsCell>>,
}

struct Inner {
    config: CacheConfig,
    backend: Backend,
    semantic: Option<Semantic>,
    clock: Arc<dyn Clock>,
    base_instant: Instant,
    base_wall_ms: u64,
    counters: Arc<Counters>,
    /// Calls in flight after a miss, by exact key: the one that went and the outcome it tells
    /// the identical calls waiting for it ([`CacheConfig::coalesce`]).
    flights: Flights,
}

/// Calls in flight by exact key: the leading call's priority and the channel it tells the
/// outcome on.
type Flights = Arc<DashMap<CacheKey, (Priority, watch::Receiver<Flight>)>>;

/// What a call in flight tells the identical calls waiting for it. Its sender dropped with
/// `Running` still set means the call was abandoned (its caller's future dropped).
#[derive(Debug, Clone)]
enum Flight {
    Running,
    /// Answered, and the answer handed to the store: with its entry once the store took it as
    /// an exact answer (the waiting calls answer from it, whether or not the backend kept it —
    /// a Redis down or slow sent each of them on its own call after the wait — or the memory
    /// tier kept a fresh stream in its place), or none when the store would not take it (a
    /// fallback group's answer, one it filters, one too large to keep).
    Answered(Option<Arc<Entry>>),
    /// Failed: each waiting call goes on its own (the failure may be the first caller's own
    /// deadline; and waiting in turn on a failing provider would stack the waits).
    Failed,
}

/// The call that went for its key: tells the waiting ones how it ended when dropped.
struct Leading {
    flights: Flights,
    key: CacheKey,
    tx: watch::Sender<Flight>,
    rx: watch::Receiver<Flight>,
}

impl Drop for Leading {
    fn drop(&mut self) {
        // off the map first (only this flight: a later one may have the key by now), so a
        // call told the outcome and missing again leads a new flight rather than join this one
        self.flights
            .remove_if(&self.key, |_, (_, rx)| rx.same_channel(&self.rx));
        // (the sender goes with `self`: every waiting call wakes)
    }
}

/// How a call that missed goes on.
enum Joined {
    /// It makes the call, for the identical ones that wait.
    Lead(Leading),
    /// Answered from the exact tier after an identical call stored its answer.
    Answered(Box<Response>),
    /// It makes the call on its own.
    Alone,
}

/// An exact and (with [`Cache::with_semantic`]) semantic response cache.
///
/// **Keys.** The exact tier keys a request by [`CacheKey::exact`]: the caller's namespace
/// (deployment group or provider), the tenant of the [`RequestContext`], and the whole request
/// in canonical form. The semantic tier looks only among requests equal in everything but
/// their last user turn (namespace = the exact key of the request without it, plus the
/// embedder's model id), embeds that turn, and lets the [`Verifier`] decide among the nearest
/// candidates.
///
/// **Streams.** Whether a request was streamed is not in the key. A stream is recorded as it
/// passes to the caller ([`Cache::tee`]) and stored only when it ended cleanly after `Done`; a
/// streamed request is answered by replaying a stored stream's events in order. A call is
/// answered by a stored call or by a stored stream folded with [`StreamAccumulator`]. A
/// stored call does **not** answer a streamed request (its original events are unknown; a
/// synthesised stream would not be them): that request misses, and its stream, once stored,
/// answers both. A stored call never replaces a stored stream.
///
/// **Failures.** The cache never fails a call: a store (Redis) or embedder failure is a miss
/// (or a store not made), counted in [`CacheSnapshot`].
///
/// Cheap to clone (clones share everything).
///
/// ```
/// use infermux_cache::{Cache, CacheConfig};
/// use infermux_core::{ChatRequest, ChatResponse, Message, Request, RequestContext, Response};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let cache = Cache::new(CacheConfig::default()).unwrap();
/// let req = Request::Chat(ChatRequest::new("m", vec![Message::user("Hi")]));
/// let ctx = RequestContext::new();
/// let answer = || async {
///     Ok(Response::Chat(ChatResponse::new("m", Message::assistant("Hello"))))
/// };
/// let first = cache.call(&req, &ctx, "group-a", answer).await.unwrap();
/// assert!(first.cache_hit().is_none());
/// let second = cache.call(&req, &ctx, "group-a", answer).await.unwrap();
/// assert!(second.cache_hit().is_some());
/// assert_eq!(cache.snapshot().exact_hits, 1);
/// # });
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("config", &self.inner.config)
            .field(
                "backend",
                &match &self.inner.backend {
                    Backend::Memory(_) => "memory",
                    #[cfg(feature = "redis")]
                    Backend::Redis(_) => "redis",
                },
            )
            .field("semantic", &self.inner.semantic.is_some())
            .finish_non_exhaustive()
    }
}

/// A streamed answer and, when the cache gave it, the hit.
#[non_exhaustive]
pub struct StreamAnswer {
    /// The events.
    pub events: EventStream,
    /// Set when the cache replayed a stored stream.
    pub hit: Option<CacheHit>,
}

impl fmt::Debug for StreamAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamAnswer")
            .field("hit", &self.hit)
            .finish_non_exhaustive()
    }
}

/// What the exact tier held for a key.
enum Read {
    /// An entry, and the bytes Redis held (the in-memory store has none).
    Entry(Arc<Entry>, Option<Vec<u8>>),
    /// Redis held a value that does not read (corrupt, another version's).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Unreadable(Vec<u8>),
    Nothing,
}

/// What a miss learnt that the store after it can reuse.
#[derive(Debug, Default)]
struct Miss {
    exact: Option<CacheKey>,
    semantic: Option<(SemanticProbe, Vec<f32>)>,
    /// The lookup asked the embedder and it failed (or took too long): the store does not ask
    /// again on the caller's path.
    embed_failed: bool,
    /// The Redis value the lookup found and took for expired: the answer stored after this
    /// miss replaces it if it is still there unchanged.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    stale: Option<Vec<u8>>,
}

/// `fut` (an embedder's or a verifier's call) within `sem`'s `embed_timeout` and what is
/// left of the caller's deadline, whichever ends first; `None` past it. Both are the
/// caller's code, which may never answer.
async fn within<T>(
    sem: &Semantic,
    ctx: &RequestContext,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    let limit = match (sem.config.embed_timeout, ctx.remaining()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    match limit {
        Some(t) => tokio::time::timeout(t, fut).await.ok(),
        None => Some(fut.await),
    }
}

/// The vector of `probe`'s text from `sem`'s embedder, within its `embed_timeout` and the
/// caller's deadline; `None` on an error, a wrong count or the timeout.
async fn embed_one(
    sem: &Semantic,
    probe: &SemanticProbe,
    ctx: &RequestContext,
) -> Option<Vec<f32>> {
    let call = sem.embedder.embed(std::slice::from_ref(&probe.text), ctx);
    match within(sem, ctx, call).await? {
        Ok(mut v) if v.len() == 1 => Some(v.remove(0)),
        _ => None,
    }
}

/// What a lookup found.
enum Found {
    Hit(Arc<Entry>, CacheHit),
    Miss(Miss),
}

/// Whether the answer ended for a reason not known to mean a complete answer (see
/// `stream::storable`), or was cut at its token limit before it showed anything
/// (`stream::storable_answer`): never stored. A content filter's verdict may change, and a failure
/// a provider names in its finish reason would answer every paraphrase for the TTL.
fn filtered(response: &Response) -> bool {
    use crate::stream::storable_answer;
    match response {
        Response::Chat(c) => {
            let m = &c.message;
            let shown = !m.tool_calls.is_empty() || m.content.iter().any(crate::stream::shows);
            !storable_answer(c.finish_reason.as_ref(), shown)
        }
        Response::Completion(c) => !storable_answer(c.finish_reason.as_ref(), !c.text.is_empty()),
        _ => false,
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn memory_store(config: &CacheConfig, counters: &Arc<Counters>) -> Backend {
    let c = Arc::clone(counters);
    Backend::Memory(
        moka::sync::Cache::builder()
            .max_capacity(kib(config.max_bytes))
            .weigher({
                let (capacity, count) = (kib(config.max_bytes), config.max_entries);
                move |_k: &CacheKey, e: &Arc<Entry>| weight(e.bytes as u64, capacity, count)
            })
            .time_to_live(crate::config::store_ttl(config.ttl))
            .eviction_listener(move |_k, _v, cause| match cause {
                RemovalCause::Size => {
                    c.evictions.fetch_add(1, Ordering::Relaxed);
                }
                RemovalCause::Expired => {
                    c.expired.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            })
            .build(),
    )
}

impl Cache {
    /// An in-memory cache (exact tier only until [`Cache::with_semantic`]); a
    /// [`ErrorKind::Config`](infermux_core::ErrorKind::Config) error for an invalid config.
    pub fn new(config: CacheConfig) -> Result<Self> {
        config.validate()?;
        let counters = Arc::new(Counters::default());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Ok(Cache {
            inner: Arc::new(Inner {
                backend: memory_store(&config, &counters),
                config,
                semantic: None,
                base_instant: clock.now(),
                clock,
                base_wall_ms: wall_ms(),
                counters,
                flights: Arc::default(),
            }),
        })
    }

    fn rebuild(&self, f: impl FnOnce(&mut Inner)) -> Self {
        let old = &self.inner;
        let mut inner = Inner {
            config: old.config.clone(),
            backend: old.backend.clone(),
            semantic: old.semantic.as_ref().map(|s| Semantic {
                embedder: Arc::clone(&s.embedder),
                verifier: Arc::clone(&s.verifier),
                config: s.config.clone(),
                namespaces: s.namespaces.clone(),
            }),
            clock: Arc::clone(&old.clock),
            base_instant: old.base_instant,
            base_wall_ms: old.base_wall_ms,
            counters: Arc::clone(&old.counters),
            flights: Arc::clone(&old.flights),
        };
        f(&mut inner);
        Cache {
            inner: Arc::new(inner),
        }
    }

    /// Reads time from `clock` (TTLs and ages; a [`ManualClock`](infermux_core::ManualClock)
    /// in tests). Ages are kept as wall time: this process's wall clock at the moment the
    /// clock is set, plus the clock's time since.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        self.rebuild(|i| {
            i.base_instant = clock.now();
            i.base_wall_ms = wall_ms();
            i.clock = clock;
        })
    }

    /// Adds the semantic tier.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use infermux_cache::{Cache, CacheConfig, Embedder, SemanticConfig, Verifier};
    /// # use infermux_core::{RequestContext, Result};
    /// # #[derive(Debug)] struct Len;
    /// # #[async_trait::async_trait] impl Embedder for Len {
    /// #     fn model_id(&self) -> &str { "len" }
    /// #     async fn embed(&self, t: &[String], _: &RequestContext) -> Result<Vec<Vec<f32>>> {
    /// #         Ok(t.iter().map(|s| vec![1.0, s.len() as f32]).collect())
    /// #     }
    /// # }
    /// # #[derive(Debug)] struct Yes;
    /// # #[async_trait::async_trait] impl Verifier for Yes {
    /// #     async fn score(&self, _: &str, _: &str, c: f32) -> Result<f32> { Ok(c) }
    /// #     fn threshold(&self) -> f32 { 0.9 }
    /// # }
    /// let cache = Cache::new(CacheConfig::default())
    ///     .unwrap()
    ///     .with_semantic(Arc::new(Len), Arc::new(Yes), SemanticConfig::default());
    /// assert!(format!("{cache:?}").contains("semantic: true"));
    /// ```
    pub fn with_semantic(
        self,
        embedder: Arc<dyn Embedder>,
        verifier: Arc<dyn Verifier>,
        config: SemanticConfig,
    ) -> Self {
        let counters = Arc::clone(&self.inner.counters);
        let per_ns = config.max_entries_per_namespace as u64;
        let namespaces = moka::sync::Cache::builder()
            .max_capacity(kib(config.max_bytes))
            .weigher({
                let (capacity, count) = (kib(config.max_bytes), config.max_namespaces);
                move |_k: &CacheKey, ns: &Arc<NsCell>| {
                    weight(ns.bytes.load(Ordering::Relaxed), capacity, count)
                }
            })
            .time_to_idle(crate::config::store_ttl(config.ttl))
            .eviction_listener(move |_k, v: Arc<NsCell>, cause| {
                if cause == RemovalCause::Size {
                    // (never a wait: a namespace being changed counts as full)
                    let live = v.lock.try_read().map_or(per_ns, |n| n.live as u64);
                    counters.evictions.fetch_add(live, Ordering::Relaxed);
                }
            })
            .build();
        self.rebuild(|i| {
            i.semantic = Some(Semantic {
                embedder,
                verifier,
                config,
                namespaces,
            });
        })
    }

    /// Keeps entries in `store` (Redis) instead of memory, so several processes share them and
    /// they survive a restart; the semantic tier's records go there too, and each process's
    /// index catches up from it on lookup (feature `redis`).
    #[cfg(feature = "redis")]
    pub fn with_redis(self, store: crate::RedisStore) -> Self {
        self.rebuild(|i| {
            i.backend = Backend::Redis(store);
            // (a call waiting for another reads the store that one wrote)
            i.flights = Arc::default();
        })
    }

    /// Cache time now, ms since the Unix epoch.
    fn now_ms(&self) -> u64 {
        let i = &self.inner;
        let since = i.clock.now().saturating_duration_since(i.base_instant);
        i.base_wall_ms
            .saturating_add(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    fn age(&self, entry: &Entry) -> Duration {
        Duration::from_millis(self.now_ms().saturating_sub(entry.stored_ms))
    }

    fn fresh(&self, entry: &Entry, ttl: Duration) -> bool {
        self.age(entry) < ttl
    }

    fn count(&self, c: impl Fn(&Counters) -> &AtomicU64) {
        c(&self.inner.counters).fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now (the in-memory store's pending evictions are settled first).
    pub fn snapshot(&self) -> CacheSnapshot {
        let (entries, bytes) = match &self.inner.backend {
            Backend::Memory(m) => {
                m.run_pending_tasks();
                (m.entry_count(), m.weighted_size().saturating_mul(1024))
            }
            #[cfg(feature = "redis")]
            Backend::Redis(_) => (0, 0),
        };
        let semantic_bytes = self.inner.semantic.as_ref().map_or(0, |s| {
            s.namespaces.run_pending_tasks();
            s.namespaces.weighted_size().saturating_mul(1024)
        });
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheSnapshot {
            exact_hits: l(&c.exact_hits),
            exact_misses: l(&c.exact_misses),
            semantic_hits: l(&c.semantic_hits),
            semantic_misses: l(&c.semantic_misses),
            semantic_skipped: l(&c.semantic_skipped),
            semantic_busy: l(&c.semantic_busy),
            verifier_rejects: l(&c.verifier_rejects),
            stores: l(&c.stores),
            semantic_stores: l(&c.semantic_stores),
            evictions: l(&c.evictions),
            expired: l(&c.expired),
            store_errors: l(&c.store_errors),
            embed_errors: l(&c.embed_errors),
            coalesced: l(&c.coalesced),
            entries,
            bytes,
            semantic_bytes,
            estimated_false_hit_rate: self
                .inner
                .semantic
                .as_ref()
                .and_then(|s| s.verifier.estimated_false_hit_rate()),
        }
    }

    /// Appends the cache's metrics in Prometheus text, labelled `cache="<name>"`: hits and
    /// misses by tier, stores, evictions, expiries, store and embedder errors, verifier
    /// rejections, entries, and the verifier's estimated false-hit rate at its threshold
    /// (`NaN` when the verifier does not know it).
    ///
    /// ```
    /// use infermux_cache::{Cache, CacheConfig};
    /// let cache = Cache::new(CacheConfig::default()).unwrap();
    /// let mut out = String::new();
    /// cache.render_prometheus("main", &mut out);
    /// assert!(out.contains("infermux_cache_hits_total{cache=\"main\",tier=\"exact\"} 0"));
    /// assert!(out.contains("infermux_cache_semantic_estimated_false_hit_rate{cache=\"main\"} NaN"));
    /// ```
    pub fn render_prometheus(&self, cache_name: &str, out: &mut String) {
        let name = escape(cache_name);
        let s = self.snapshot();
        let _ = writeln!(
            out,
            "# HELP infermux_cache_hits_total Lookups answered from the cache.\n\
             # TYPE infermux_cache_hits_total counter\n\
             infermux_cache_hits_total{{cache=\"{name}\",tier=\"exact\"}} {}\n\
             infermux_cache_hits_total{{cache=\"{name}\",tier=\"semantic\"}} {}",
            s.exact_hits, s.semantic_hits
        );
        let _ = writeln!(
            out,
            "# HELP infermux_cache_misses_total Lookups a tier did not answer.\n\
             # TYPE infermux_cache_misses_total counter\n\
             infermux_cache_misses_total{{cache=\"{name}\",tier=\"exact\"}} {}\n\
             infermux_cache_misses_total{{cache=\"{name}\",tier=\"semantic\"}} {}",
            s.exact_misses, s.semantic_misses
        );
        for (metric, kind, help, v) in [
            (
                "infermux_cache_semantic_skipped_total",
                "counter",
                "Lookups the semantic tier did not see (sampling, tools, shape).",
                s.semantic_skipped,
            ),
            (
                "infermux_cache_semantic_busy_total",
                "counter",
                "Semantic lookups that missed because their namespace was being changed.",
                s.semantic_busy,
            ),
            (
                "infermux_cache_verifier_rejects_total",
                "counter",
                "Semantic candidates the verifier turned down.",
                s.verifier_rejects,
            ),
            (
                "infermux_cache_stores_total",
                "counter",
                "Answers stored in the exact tier.",
                s.stores,
            ),
            (
                "infermux_cache_semantic_stores_total",
                "counter",
                "Answers stored in the semantic tier.",
                s.semantic_stores,
            ),
            (
                "infermux_cache_evictions_total",
                "counter",
                "Answers evicted for space.",
                s.evictions,
            ),
            (
                "infermux_cache_expired_total",
                "counter",
                "Answers found past their TTL.",
                s.expired,
            ),
            (
                "infermux_cache_store_errors_total",
                "counter",
                "Store (Redis) calls that failed or timed out.",
                s.store_errors,
            ),
            (
                "infermux_cache_embed_errors_total",
                "counter",
                "Embedding calls that failed.",
                s.embed_errors,
            ),
            (
                "infermux_cache_coalesced_total",
                "counter",
                "Calls answered by an identical call in flight when they missed.",
                s.coalesced,
            ),
            (
                "infermux_cache_entries",
                "gauge",
                "Answers in the in-memory exact store.",
                s.entries,
            ),
            (
                "infermux_cache_bytes",
                "gauge",
                "The in-memory exact store's byte budget in use.",
                s.bytes,
            ),
            (
                "infermux_cache_semantic_bytes",
                "gauge",
                "The semantic tier's byte budget in use.",
                s.semantic_bytes,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {metric} {help}\n# TYPE {metric} {kind}\n{metric}{{cache=\"{name}\"}} {v}"
            );
        }
        let rate = s
            .estimated_false_hit_rate
            .map_or_else(|| "NaN".to_owned(), |r| r.to_string());
        let _ = writeln!(
            out,
            "# HELP infermux_cache_semantic_estimated_false_hit_rate The verifier's estimated \
             share of wrong semantic hits at its threshold.\n\
             # TYPE infermux_cache_semantic_estimated_false_hit_rate gauge\n\
             infermux_cache_semantic_estimated_false_hit_rate{{cache=\"{name}\"}} {rate}"
        );
    }

    // ---- lookups --------------------------------------------------------------------------

    async fn exact_get(&self, key: CacheKey) -> Option<Arc<Entry>> {
        match self.exact_get_raw(key).await {
            Read::Entry(e, _) => Some(e),
            Read::Unreadable(_) | Read::Nothing => None,
        }
    }

    /// [`Cache::exact_get`], and the bytes Redis held (the in-memory store has none).
    async fn exact_get_raw(&self, key: CacheKey) -> Read {
        match &self.inner.backend {
            Backend::Memory(m) => m.get(&key).map_or(Read::Nothing, |e| Read::Entry(e, None)),
            #[cfg(feature = "redis")]
            Backend::Redis(r) => match r.get(r.exact_key(&key.to_string())).await {
                Some(Some(bytes)) => match serde_json::from_slice::<Entry>(&bytes) {
                    Ok(e) => Read::Entry(Arc::new(e), Some(bytes)),
                    // a value that does not read (corrupt, or a newer version's, which that
                    // version reads) is not deleted: the answer stored after this miss takes
                    // its place if it is still there unchanged (a delete raced a fresh write,
                    // and two versions sharing a Redis deleted each other's answers)
                    Err(_) => Read::Unreadable(bytes),
                },
                Some(None) => Read::Nothing,
                None => {
                    self.count(|c| &c.store_errors);
                    Read::Nothing
                }
            },
        }
    }

    async fn find(
        &self,
        request: &Request,
        ctx: &RequestContext,
        namespace: &str,
        stream: bool,
    ) -> Found {
        let mut miss = Miss::default();
        let Some(key) = CacheKey::exact(request, ctx, namespace) else {
            return Found::Miss(miss);
        };
        miss.exact = Some(key);
        let (entry, _raw) = match self.exact_get_raw(key).await {
            Read::Entry(entry, raw) => (Some(entry), raw),
            Read::Unreadable(raw) => (None, Some(raw)),
            Read::Nothing => (None, None),
        };
        #[cfg(feature = "redis")]
        if entry.is_none() {
            miss.stale = _raw.clone();
        }
        if let Some(entry) = entry {
            if !self.fresh(&entry, self.inner.config.ttl) {
                self.count(|c| &c.expired);
                match &self.inner.backend {
                    Backend::Memory(m) => m.invalidate(&key),
                    // not deleted: the age read here compares this process's clock with the
                    // writer's (one running ahead deleted every other process's fresh
                    // answers, and they its); the answer stored after this miss takes its
                    // place if it is still there, and Redis expires it at its writer's TTL
                    #[cfg(feature = "redis")]
                    Backend::Redis(_) => miss.stale = _raw,
                }
            } else if serves(request, &entry.answer, stream) {
                self.count(|c| &c.exact_hits);
                let hit = CacheHit::exact(self.age(&entry));
                return Found::Hit(entry, hit);
            }
        }
        self.count(|c| &c.exact_misses);
        let Some(sem) = &self.inner.semantic else {
            return Found::Miss(miss);
        };
        let probe = match semantic_probe(
            request,
            ctx,
            namespace,
            sem.embedder.model_id(),
            sem.config.allow_sampled,
            sem.config.allow_tools,
            sem.config.max_chars,
        ) {
            Ok(p) => p,
            Err(
                SemanticSkip::Shape
                | SemanticSkip::Sampled
                | SemanticSkip::Tools
                | SemanticSkip::Long,
            ) => {
                self.count(|c| &c.semantic_skipped);
                return Found::Miss(miss);
            }
        };
        let Some(vector) = embed_one(sem, &probe, ctx).await else {
            self.count(|c| &c.embed_errors);
            self.count(|c| &c.semantic_misses);
            miss.embed_failed = true;
            return Found::Miss(miss);
        };
        let mut probe = probe;
        probe.namespace = probe.namespace.with_dimension(vector.len());
        let found = self
            .semantic_find(sem, request, ctx, &probe, &vector, stream)
            .await;
        miss.semantic = Some((probe, vector));
        match found {
            Some(hit) => Found::Hit(hit.0, hit.1),
            None => {
                self.count(|c| &c.semantic_misses);
                Found::Miss(miss)
            }
        }
    }

    fn namespace(&self, sem: &Semantic, ns: CacheKey) -> Arc<NsCell> {
        sem.namespaces.get_with(ns, Arc::default)
    }

    /// Changes a namespace as its only writer: `change`, then the rows other stores left
    /// pending meanwhile, under the write lock (which waits only for lookups reading it; it is
    /// let go between batches of pending rows). `false`, at once, when another writer is at
    /// work: it takes in the pending rows before it lets go.
    fn write_namespace(
        &self,
        sem: &Semantic,
        key: CacheKey,
        cell: &Arc<NsCell>,
        change: impl FnOnce(&mut Namespace),
    ) -> bool {
        /// Clears `writing` however the writer ends (a panic in an index build included:
        /// left set, every later row would stay pending for good).
        struct Writing<'a>(&'a AtomicBool);
        impl Drop for Writing<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        if cell.writing.swap(true, Ordering::AcqRel) {
            return false;
        }
        let mut change = Some(change);
        loop {
            {
                let _writing = Writing(&cell.writing);
                let mut n = cell.lock.write().unwrap_or_else(|e| e.into_inner());
                if let Some(change) = change.take() {
                    change(&mut n);
                }
                let rows = std::mem::take(&mut *cell.pending());
                for (text, vector, entry) in rows {
                    self.push_row(sem, &mut n, text, &vector, entry);
                }
                let bytes = n.bytes as u64;
                // (the lock goes, then `writing`)
                drop(n);
                // weighed again against the tier's byte budget (which may evict namespaces,
                // this one too, least used first), unless it already left the tier
                if cell.bytes.swap(bytes, Ordering::Relaxed) != bytes
                    && sem
                        .namespaces
                        .get(&key)
                        .is_some_and(|held| Arc::ptr_eq(&held, cell))
                {
                    sem.namespaces.insert(key, Arc::clone(cell));
                }
            }
            // a row left pending after the last look, by a store that saw this writer at
            // work, is taken in now (unless that store became the writer itself)
            if cell.pending().is_empty() || cell.writing.swap(true, Ordering::AcqRel) {
                return true;
            }
        }
    }

    async fn semantic_find(
        &self,
        sem: &Semantic,
        request: &Request,
        ctx: &RequestContext,
        probe: &SemanticProbe,
        vector: &[f32],
        stream: bool,
    ) -> Option<(Arc<Entry>, CacheHit)> {
        // a lookup makes no namespace of its own: only a store does, or Redis, which may hold
        // rows another process stored (a cell per one-off conversation filled the tier's
        // budget with empty namespaces, and pushed out real ones)
        let ns = match &self.inner.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(_) => self.namespace(sem, probe.namespace),
            _ => sem.namespaces.get(&probe.namespace)?,
        };
        #[cfg(feature = "redis")]
        self.catch_up(probe.namespace, vector.len(), &ns).await;
        let now = self.now_ms();
        let ttl_ms = u64::try_from(sem.config.ttl.as_millis()).unwrap_or(u64::MAX);
        let candidates: Vec<(String, Arc<Entry>, f32)> = {
            // a namespace being changed (a row going in, its index rebuilt: seconds at 10⁵
            // rows) is a miss, not a wait on the runtime's thread
            let n = match ns.lock.try_read() {
                Ok(n) => n,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    self.count(|c| &c.semantic_busy);
                    return None;
                }
            };
            let index = n.index.as_ref()?;
            let keep = |row: usize| {
                n.rows
                    .get(row)
                    .and_then(|r| r.0.as_ref())
                    .is_some_and(|(_, e)| {
                        now.saturating_sub(e.stored_ms) < ttl_ms
                            && serves(request, &e.answer, stream)
                    })
            };
            index
                .search_filtered(vector, sem.config.top_k, &keep)
                .into_iter()
                .filter(|m| m.similarity >= sem.config.min_similarity)
                .filter_map(|m| {
                    let (text, entry) = n.rows.get(m.row)?.0.as_ref()?;
                    Some((text.clone(), Arc::clone(entry), m.similarity))
                })
                .collect()
        };
        let threshold = sem.verifier.threshold();
        let mut best: Option<(Arc<Entry>, f32, f32)> = None;
        for (text, entry, similarity) in candidates {
            // (bounded as the embedder is: a verifier that does not answer is a reject)
            let scored = within(sem, ctx, sem.verifier.score(&probe.text, &text, similarity)).await;
            match scored.unwrap_or_else(|| {
                Err(infermux_core::Error::new(
                    infermux_core::ErrorKind::Timeout,
                    "the verifier did not answer in time",
                ))
            }) {
                Ok(score) if score >= threshold => {
                    if best.as_ref().is_none_or(|b| score > b.2) {
                        best = Some((entry, similarity, score));
                    }
                }
                _ => self.count(|c| &c.verifier_rejects),
            }
        }
        let (entry, similarity, score) = best?;
        self.count(|c| &c.semantic_hits);
        let hit = CacheHit::semantic(similarity, score, self.age(&entry));
        tracing::info!(
            target: "infermux::cache",
            request_id = %ctx.request_id(),
            similarity,
            verifier_score = score,
            age_ms = u64::try_from(hit.age.as_millis()).unwrap_or(u64::MAX),
            "semantic cache hit"
        );
        Some((entry, hit))
    }

    /// Folds the Redis records of `ns` this process has not seen into its index: up to
    /// [`CATCH_UP_BATCHES`] replies of [`CATCH_UP_RECORDS`] records each, so a process far
    /// behind (a busy namespace, a fresh start) catches up over a few lookups, each call
    /// within the store's timeout, instead of one reply too large for it.
    #[cfg(feature = "redis")]
    async fn catch_up(&self, ns_key: CacheKey, dim: usize, ns: &Arc<NsCell>) {
        let key = ns_key.to_string();
        for _ in 0..CATCH_UP_BATCHES {
            if self.catch_up_once(ns_key, dim, &key, ns).await < CATCH_UP_RECORDS {
                return;
            }
        }
    }

    /// One reply of [`Cache::catch_up`]; how many records it held.
    #[cfg(feature = "redis")]
    async fn catch_up_once(
        &self,
        ns_key: CacheKey,
        dim: usize,
        key: &str,
        ns: &Arc<NsCell>,
    ) -> usize {
        let Backend::Redis(r) = &self.inner.backend else {
            return 0;
        };
        // (a namespace being changed is caught up with at a later lookup: never a wait here)
        let (after, generation) = match ns.lock.try_read() {
            Ok(n) => (n.redis_seq, n.redis_gen.clone()),
            Err(TryLockError::Poisoned(p)) => {
                let n = p.into_inner();
                (n.redis_seq, n.redis_gen.clone())
            }
            Err(TryLockError::WouldBlock) => return 0,
        };
        let Some((now, records)) = r
            .records_after(r.semantic_key(key), after, &generation, CATCH_UP_RECORDS)
            .await
        else {
            self.count(|c| &c.store_errors);
            return 0;
        };
        let read = records.len();
        if read == 0 && now == generation {
            // nothing new: no lock to take (most lookups)
            return 0;
        }
        // parsing the records and folding them into the index (up to thousands of rows, an
        // index build past its threshold) runs off the runtime's threads, under the lock
        let (this, ns) = (self.clone(), Arc::clone(ns));
        let folded = off_the_runtime(move || {
            let Some(sem) = &this.inner.semantic else {
                return false;
            };
            // (another writer at work: a later lookup catches up)
            this.write_namespace(sem, ns_key, &ns, |n| {
                this.fold_records(sem, n, dim, after, &generation, now, records)
            })
        })
        .await;
        // records not folded in (another writer was at work) are read again by a later
        // lookup: this one reads no more
        if folded.unwrap_or(false) { read } else { 0 }
    }

    /// Folds records read from Redis into a namespace (see [`Cache::catch_up_once`]).
    #[cfg(feature = "redis")]
    #[allow(clippy::too_many_arguments)]
    fn fold_records(
        &self,
        sem: &Semantic,
        n: &mut Namespace,
        dim: usize,
        after: u64,
        generation: &str,
        now: String,
        records: Vec<(u64, Vec<u8>)>,
    ) {
        {
            if n.redis_seq != after || n.redis_gen != generation {
                // another lookup folded records in meanwhile: these may be the same ones
                return;
            }
            if now != generation {
                // the namespace was made anew in Redis (or is read for the first time): its
                // records are all new to this process (the rows it holds stay until they
                // expire)
                n.redis_seq = 0;
                n.redis_gen = now;
            }
            for (seq, bytes) in records {
                if seq <= n.redis_seq {
                    continue;
                }
                n.redis_seq = seq;
                if let Ok(rec) = serde_json::from_slice::<Record>(&bytes)
                    // an expired record takes no room in the index
                    && self.fresh(&rec.entry, sem.config.ttl)
                    // nor one of another length than the namespace's (its key says it): the
                    // first row sets the index's, and a foreign or corrupt one would have
                    // made every good one go
                    && rec.vector.len() == dim
                {
                    let entry = Arc::new(rec.entry.weighed());
                    self.push_row(sem, n, rec.text, &rec.vector, entry);
                }
            }
        }
    }

    /// Adds a row to a namespace, evicting its oldest past the bound and compacting the index
    /// when most of it is dead.
    fn push_row(
        &self,
        sem: &Semantic,
        n: &mut Namespace,
        text: String,
        vector: &[f32],
        entry: Arc<Entry>,
    ) {
        // (namespaces are per vector length: another length cannot come here)
        if n.index.as_ref().is_some_and(|i| i.dim() != vector.len()) {
            return;
        }
        if n.index.is_none() {
            match VectorIndex::new(vector.len(), sem.config.index.clone()) {
                Ok(i) => n.index = Some(i),
                Err(e) => {
                    // (the settings are checked when set: this is a field set by hand)
                    tracing::warn!(target: "infermux::cache", error = %e, "the semantic index cannot be built: nothing is stored");
                    return;
                }
            }
        }
        let Some(index) = n.index.as_mut() else {
            return;
        };
        if index.push(vector).is_err() {
            return;
        }
        n.bytes = n
            .bytes
            .saturating_add(row_bytes(&text, vector.len(), &entry));
        n.rows.push(Row(Some((text, entry))));
        n.live += 1;
        // the oldest rows go when they expired (their memory freed, not only hidden from
        // lookups: a namespace in use never goes idle), then past the bound
        let ttl_ms = u64::try_from(sem.config.ttl.as_millis()).unwrap_or(u64::MAX);
        let now = self.now_ms();
        while let Some(row) = n.rows.get_mut(n.front) {
            match &row.0 {
                Some((_, e)) if now.saturating_sub(e.stored_ms) < ttl_ms => {
                    if n.live <= sem.config.max_entries_per_namespace {
                        break;
                    }
                    self.count(|c| &c.evictions);
                }
                Some(_) => self.count(|c| &c.expired),
                None => {
                    n.front += 1;
                    continue;
                }
            }
            if let Some((text, e)) = row.0.take() {
                n.bytes = n.bytes.saturating_sub(row_bytes(&text, vector.len(), &e));
            }
            n.live -= 1;
            n.front += 1;
        }
        let dead = n.rows.len() - n.live;
        if dead > 64 && dead > n.live {
            self.compact(sem, n);
        }
    }

    /// Rebuilds a namespace's index from its live rows.
    fn compact(&self, sem: &Semantic, n: &mut Namespace) {
        let Some(old) = n.index.take() else {
            return;
        };
        let Ok(mut index) = VectorIndex::new(old.dim(), sem.config.index.clone()) else {
            return;
        };
        let rows = std::mem::take(&mut n.rows);
        let mut kept = Vec::with_capacity(n.live);
        for (i, row) in rows.into_iter().enumerate() {
            if row.0.is_some()
                && let Some(v) = old.row(i)
                && index.push(&v).is_ok()
            {
                kept.push(row);
            }
        }
        n.live = kept.len();
        n.bytes = kept
            .iter()
            .filter_map(|r| r.0.as_ref())
            .map(|(text, e)| row_bytes(text, index.dim(), e))
            .fold(0, usize::saturating_add);
        n.rows = kept;
        n.front = 0;
        n.index = Some(index);
    }

    /// The answer to `request` from the cache, marked with its [`CacheHit`]; `None` on a miss
    /// (the exact tier first, then the semantic tier). A stored stream answers a chat call
    /// folded into one response.
    ///
    /// ```
    /// use infermux_cache::{Cache, CacheConfig};
    /// use infermux_core::{CacheTier, ChatRequest, ChatResponse, Message, Request, RequestContext, Response};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = Cache::new(CacheConfig::default()).unwrap();
    /// let req = Request::Chat(ChatRequest::new("m", vec![Message::user("Hi")]));
    /// let ctx = RequestContext::new();
    /// assert!(cache.lookup(&req, &ctx, "g").await.is_none());
    /// let resp = Response::Chat(ChatResponse::new("m", Message::assistant("Hello")));
    /// cache.store(&req, &ctx, "g", &resp).await;
    /// let hit = cache.lookup(&req, &ctx, "g").await.unwrap();
    /// assert_eq!(hit.cache_hit().unwrap().tier, CacheTier::Exact);
    /// # });
    /// ```
    pub async fn lookup(
        &self,
        request: &Request,
        ctx: &RequestContext,
        namespace: &str,
    ) -> Option<Response> {
        match self.find(request, ctx, namespace, false).await {
            Found::Hit(entry, hit) => answer_call(&entry.answer, hit),
            Found::Miss(_) => None,
        }
    }

    /// Stores `response` as the answer to `request` (exact tier, and semantic tier when the
    /// request is for it). A response already marked as a cache hit is not stored again.
    ///
    /// ```
    /// use infermux_cache::{Cache, CacheConfig};
    /// use infermux_core::{ChatRequest, ChatResponse, Message, Request, RequestContext, Response};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = Cache::new(CacheConfig::default()).unwrap();
    /// let req = Request::Chat(ChatRequest::new("m", vec![Message::user("Hi")]));
    /// let resp = Response::Chat(ChatResponse::new("m", Message::assistant("Hello")));
    /// cache.store(&req, &RequestContext::new(), "g", &resp).await;
    /// assert_eq!(cache.snapshot().stores, 1);
    /// # });
    /// ```
    pub async fn store(
        &self,
        request: &Request,
        ctx: &RequestContext,
        namespace: &str,
        response: &Response,
    ) {
        let miss = Miss {
            exact: CacheKey::exact(request, ctx, namespace),
            semantic: None,
            embed_failed: false,
            stale: None,
        };
        self.put_call(request, ctx, namespace, miss, response, None)
            .await;
    }

    /// Stores a provider's answer to a call (never a model list, never an answer that itself
    /// came from the cache, never one a fallback group gave: that answers another group's
    /// request, not this namespace's).
    async fn put_call(
        &self,
        request: &Request,
        ctx: &RequestContext,
        namespace: &str,
        miss: Miss,
        response: &Response,
        told: Option<&watch::Sender<Flight>>,
    ) {
        if response.cache_hit().is_some()
            || matches!(response, Response::Models(_))
            || response.served().is_some_and(|s| s.fallback.is_some())
            || filtered(response)
        {
            return;
        }
        // an answer larger than a stream's recording may hold (about 8 MiB as JSON: images,
        // a batch of thousands of embeddings) is not kept: a cache bounded by its count of
        // entries would otherwise hold gigabytes
        let max = crate::stream::MAX_RECORDED_BYTES;
        if crate::stream::json_size_upto(response, max) > max {
            return;
        }
        // stored without who served it: a hit was served by the cache, not by the deployment
        // that answered first (as a Redis entry, which never carries `served`, reads back)
        let mut stored = response.clone();
        stored.clear_served();
        self.put(
            request,
            ctx,
            namespace,
            miss,
            Answer::Call(Box::new(stored)),
            told,
        )
        .await;
    }

    async fn put(
        &self,
        request: &Request,
        ctx: &RequestContext,
        namespace: &str,
        miss: Miss,
        answer: Answer,
        told: Option<&watch::Sender<Flight>>,
    ) {
        let Some(key) = miss.exact else {
            return;
        };
        let entry = Arc::new(Entry::new(self.now_ms(), answer));
        // a stored stream answers a chat call too (folded), so a chat call's answer leaves a
        // fresh one in place; another call's answer (a completion) replaces it, else that
        // call would never be cached while the stream lasts
        let yields_to_stream =
            matches!(&entry.answer, Answer::Call(r) if matches!(**r, Response::Chat(_)));
        match &self.inner.backend {
            // an answer over the whole budget is not held (moka would take it in, then
            // evict it and everything else at its next maintenance)
            Backend::Memory(_) if entry.bytes as u64 > self.inner.config.max_bytes => {}
            Backend::Memory(m) => {
                // a fresh stream entry is kept (it answers streams and calls alike); decided
                // under the key's lock, so a stream stored meanwhile is not replaced
                let ttl = self.inner.config.ttl;
                m.entry(key).and_compute_with(|old| match old {
                    Some(old)
                        if yields_to_stream
                            && matches!(old.value().answer, Answer::Stream(_))
                            && self.fresh(old.value(), ttl) =>
                    {
                        moka::ops::compute::Op::Nop
                    }
                    _ => moka::ops::compute::Op::Put(Arc::clone(&entry)),
                });
                self.count(|c| &c.stores);
            }
            #[cfg(feature = "redis")]
            Backend::Redis(r) => match serde_json::to_vec(&*entry) {
                Ok(bytes) => {
                    let ok = r
                        .set(
                            r.exact_key(&key.to_string()),
                            bytes,
                            self.inner.config.ttl,
                            yields_to_stream,
                            // (a copy on this rare path: `miss` is read on below)
                            miss.stale.clone(),
                        )
                        .await;
                    self.count(|c| if ok { &c.stores } else { &c.store_errors });
                }
                Err(_) => self.count(|c| &c.store_errors),
            },
        }
        // the calls waiting for this one read the exact tier now, not after the semantic
        // tier's write
        if let Some(tx) = told {
            tx.send_replace(Flight::Answered(Some(Arc::clone(&entry))));
        }
        let Some(sem) = &self.inner.semantic else {
            return;
        };
        // (nor a row over the whole semantic budget)
        if entry.bytes as u64 > sem.config.max_bytes {
            return;
        }
        let (probe, vector) = match miss.semantic {
            Some(pv) => pv,
            // the lookup's embedding failed: not asked again on the caller's path
            None if miss.embed_failed => return,
            None => {
                let Ok(probe) = semantic_probe(
                    request,
                    ctx,
                    namespace,
                    sem.embedder.model_id(),
                    sem.config.allow_sampled,
                    sem.config.allow_tools,
                    sem.config.max_chars,
                ) else {
                    return;
                };
                match embed_one(sem, &probe, ctx).await {
                    Some(v) => {
                        let mut probe = probe;
                        probe.namespace = probe.namespace.with_dimension(v.len());
                        (probe, v)
                    }
                    None => {
                        self.count(|c| &c.embed_errors);
                        return;
                    }
                }
            }
        };
        #[cfg(feature = "redis")]
        if let Backend::Redis(r) = &self.inner.backend {
            let rec = Record {
                text: probe.text.clone(),
                vector: vector.clone(),
                entry: (*entry).clone(),
            };
            let ok = match serde_json::to_vec(&rec) {
                Ok(bytes) => {
                    r.push_record(
                        r.semantic_key(&probe.namespace.to_string()),
                        bytes,
                        sem.config.max_entries_per_namespace,
                        sem.config.ttl,
                    )
                    .await
                }
                Err(_) => false,
            };
            if ok {
                self.count(|c| &c.semantic_stores);
            } else {
                self.count(|c| &c.store_errors);
            }
            // this process's index catches up from Redis at its next lookup
            return;
        }
        let ns_key = probe.namespace;
        let ns = self.namespace(sem, ns_key);
        // the row goes in off the runtime's threads: it may rebuild the namespace's index
        // (seconds at 10⁵ rows), under the namespace's lock
        let this = self.clone();
        // (counted now: the row goes in even when the caller stops waiting)
        self.count(|c| &c.semantic_stores);
        let max_pending = sem.config.max_entries_per_namespace;
        // (a writer that panicked is gone: its namespace is left as it was)
        let _ = off_the_runtime(move || {
            if let Some(sem) = &this.inner.semantic {
                {
                    let mut pending = ns.pending();
                    if pending.len() >= max_pending {
                        // (rows past the bound would push each other out of the index)
                        pending.pop_front();
                        this.count(|c| &c.evictions);
                    }
                    pending.push_back((probe.text, vector, entry));
                }
                // the row goes in now, or with the writer at work
                this.write_namespace(sem, ns_key, &ns, |_| {});
            }
        })
        .await;
    }

    /// A stored stream answering `request`, replayed as its original events in order, with
    /// its [`CacheHit`]; `None` on a miss. A stored call does not answer a stream (see
    /// [`Cache`]).
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use infermux_cache::{Cache, CacheConfig};
    /// use infermux_core::{ChatRequest, EventStream, Message, Request, RequestContext, StreamEvent};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = Cache::new(CacheConfig::default()).unwrap();
    /// let req = Request::Chat(ChatRequest::new("m", vec![Message::user("Hi")]));
    /// let ctx = RequestContext::new();
    /// let events = vec![
    ///     StreamEvent::TextDelta { text: "Hel".into() },
    ///     StreamEvent::TextDelta { text: "lo".into() },
    ///     StreamEvent::Done { finish_reason: None },
    /// ];
    /// let live: EventStream = Box::pin(futures_util::stream::iter(events.clone().into_iter().map(Ok)));
    /// let passed: Vec<_> = cache.tee(&req, &ctx, "g", live).collect().await;
    /// assert_eq!(passed.len(), 3);
    /// let (replayed, hit) = cache.lookup_stream(&req, &ctx, "g").await.unwrap();
    /// let replayed: Vec<_> = replayed.map(|e| e.unwrap()).collect().await;
    /// assert_eq!(replayed, events);
    /// assert!(hit.age.as_secs() < 60);
    /// # });
    /// ```
    pub async fn lookup_stream(
        &self,
        request: &Request,
        ctx: &RequestContext,
        namespace: &str,
    ) -> Option<(EventStream, CacheHit)> {
        match self.find(request, ctx, namespace, true).await {
            Found::Hit(entry, hit) => match &entry.answer {
                Answer::Stream(events) => Some((replay(events.clone()), hit)),
                Answer::Call(_) => None,
            },
            Found::Miss(_) => None,
        }
    }

    /// Passes `stream` through to the caller unchanged and records it; when it ends cleanly
    /// after `Done` it is stored as the answer to `request` (the store runs before the stream
    /// yields its end, so the caller that drains it finds it stored). An error, an end without
    /// `Done`, or a stream dropped early stores nothing. Example at [`Cache::lookup_stream`].
    pub fn tee(
        &self,
        request: &Request,
        ctx: &RequestContext,
        namespace: &str,
        stream: EventStream,
    ) -> EventStream {
        let miss = Miss {
            exact: CacheKey::exact(request, ctx, namespace),
            semantic: None,
            embed_failed: false,
            stale: None,
        };
        self.tee_with(request, ctx, namespace, stream, miss)
    }

    fn tee_with(
        &self,
        request: &Request,
        ctx: &RequestContext,
        namespace: &str,
        stream: EventStream,
        miss: Miss,
    ) -> EventStream {
        let this = self.clone();
        let request = request.clone();
        let ctx = ctx.clone();
        let namespace = namespace.to_owned();
        Box::pin(Tee::new(
            stream,
            Box::new(move |events| {
                Box::pin(async move {
                    this.put(
                        &request,
                        &ctx,
                        &namespace,
                        miss,
                        Answer::Stream(events),
                        None,
                    )
                    .await;
                })
            }),
        ))
    }

    /// Answers `request` from the cache, or calls `inner` and stores its successful answer:
    /// the one wrapper a facade puts around a call. An error from `inner` is returned as it
    /// is and never stored. Example at [`Cache`].
    ///
    /// With [`CacheConfig::coalesce`] (the default), identical calls that miss while one is
    /// in flight wait for it (within their deadlines; one of a higher priority than it makes
    /// its own call, which later ones wait for) and are answered from the exact tier once it
    /// has stored its answer; after its failure, or an answer not stored, each calls `inner`
    /// itself; a call given up is taken over.
    pub async fn call<F, Fut>(
        &self,
        request: &Request,
        ctx: &RequestContext,
        namespace: &str,
        inner: F,
    ) -> Result<Response>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Response>>,
    {
        let miss = match self.find(request, ctx, namespace, false).await {
            Found::Hit(entry, hit) => {
                if let Some(resp) = answer_call(&entry.answer, hit) {
                    return Ok(resp);
                }
                Miss {
                    exact: CacheKey::exact(request, ctx, namespace),
                    semantic: None,
                    embed_failed: false,
                    stale: None,
                }
            }
            Found::Miss(m) => m,
        };
        let leading = match miss.exact {
            Some(key) if self.inner.config.coalesce => match self
                .join(
                    key,
                    request,
                    ctx,
                    miss.semantic.is_some() || miss.embed_failed,
                )
                .await
            {
                Joined::Lead(l) => Some(l),
                Joined::Answered(resp) => return Ok(*resp),
                Joined::Alone => None,
            },
            _ => None,
        };
        let resp = match inner().await {
            Ok(resp) => resp,
            Err(e) => {
                if let Some(l) = &leading {
                    l.tx.send_replace(Flight::Failed);
                }
                return Err(e);
            }
        };
        let told = leading.as_ref().map(|l| &l.tx);
        self.put_call(request, ctx, namespace, miss, &resp, told)
            .await;
        if let Some(l) = leading {
            // (told already, with the entry, when the answer went into the exact tier)
            l.tx.send_if_modified(|f| {
                let running = matches!(f, Flight::Running);
                if running {
                    *f = Flight::Answered(None);
                }
                running
            });
        }
        Ok(resp)
    }

    /// After an exact miss on `key`: lead the call for it, or wait for the identical call in
    /// flight (within the caller's deadline) and answer from what it stored. A flight
    /// abandoned by its caller is taken over by one of the calls waiting for it; after a
    /// failure, an answer the store refused (a fallback group's, a filtered one) or the
    /// caller's deadline, each call goes on its own. A call of a higher priority than the
    /// flight's does not wait for it (the flight may be queued behind calls it would pass):
    /// it leads a flight of its own, which later identical calls join.
    async fn join(
        &self,
        key: CacheKey,
        request: &Request,
        ctx: &RequestContext,
        embedded: bool,
    ) -> Joined {
        loop {
            let mut rx = match self.inner.flights.entry(key) {
                dashmap::Entry::Vacant(v) => {
                    let (tx, rx) = watch::channel(Flight::Running);
                    v.insert((ctx.priority(), rx.clone()));
                    let leading = Leading {
                        flights: Arc::clone(&self.inner.flights),
                        key,
                        tx,
                        rx,
                    };
                    // the answer may have been stored since this call's lookup when an
                    // embedding came between: one more look, where it costs no round trip
                    if embedded
                        && let Backend::Memory(m) = &self.inner.backend
                        && let Some(resp) = self.answer_from(m.get(&key), request, ctx)
                    {
                        return Joined::Answered(Box::new(resp));
                    }
                    return Joined::Lead(leading);
                }
                // a flight of a lower priority may be queued behind calls this one would
                // pass: this call leads a flight of its own in its place (the identical calls
                // already waiting wait on for theirs; later ones join this one)
                dashmap::Entry::Occupied(mut o) if o.get().0 < ctx.priority() => {
                    let (tx, rx) = watch::channel(Flight::Running);
                    o.insert((ctx.priority(), rx.clone()));
                    return Joined::Lead(Leading {
                        flights: Arc::clone(&self.inner.flights),
                        key,
                        tx,
                        rx,
                    });
                }
                // (the shard's lock goes with the entry, before any wait)
                dashmap::Entry::Occupied(o) => o.get().1.clone(),
            };
            // until the flight says how it ended (an answer is told once it is in the exact
            // tier), or its sender goes (then it was abandoned)
            let ended = async {
                rx.wait_for(|f| !matches!(f, Flight::Running))
                    .await
                    .map_or(Flight::Running, |f| f.clone())
            };
            let outcome = match ctx.remaining() {
                Some(left) => tokio::time::timeout(left, ended).await.ok(),
                None => Some(ended.await),
            };
            let abandoned = matches!(outcome, Some(Flight::Running));
            let entry = match outcome {
                Some(Flight::Failed) => return Joined::Alone,
                // the entry the flight stored, in hand (no round trip to Redis, nor a miss
                // when Redis failed to keep it)
                Some(Flight::Answered(Some(entry))) => Some(entry),
                // (past the deadline too: one look, the answer may have come in the meantime)
                _ => self.exact_get(key).await,
            };
            if let Some(resp) = self.answer_from(entry, request, ctx) {
                return Joined::Answered(Box::new(resp));
            }
            // abandoned: it stored nothing; lead (or wait) again
            if !abandoned {
                return Joined::Alone;
            }
        }
    }

    /// `entry` as the answer to a call that waited for an identical call in flight.
    fn answer_from(
        &self,
        entry: Option<Arc<Entry>>,
        request: &Request,
        ctx: &RequestContext,
    ) -> Option<Response> {
        let entry = entry?;
        if !self.fresh(&entry, self.inner.config.ttl) || !serves(request, &entry.answer, false) {
            return None;
        }
        let resp = answer_call(&entry.answer, CacheHit::exact(self.age(&entry)))?;
        self.count(|c| &c.coalesced);
        tracing::debug!(
            target: "infermux::cache",
            request_id = %ctx.request_id(),
            "answered by an identical call that was in flight"
        );
        Some(resp)
    }

    /// Answers a streamed `request` by replaying a stored stream, or opens one with `inner`
    /// and tees it into the cache ([`Cache::tee`]). An error from `inner` is returned as it
    /// is.
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use infermux_cache::{Cache, CacheConfig};
    /// use infermux_core::{ChatRequest, EventStream, Message, Request, RequestContext, StreamEvent};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = Cache::new(CacheConfig::default()).unwrap();
    /// let req = Request::Chat(ChatRequest::new("m", vec![Message::user("Hi")]));
    /// let ctx = RequestContext::new();
    /// let open = || async {
    ///     let events = vec![Ok(StreamEvent::TextDelta { text: "Hi!".into() }),
    ///                       Ok(StreamEvent::Done { finish_reason: None })];
    ///     Ok(Box::pin(futures_util::stream::iter(events)) as EventStream)
    /// };
    /// let first = cache.stream(&req, &ctx, "g", open).await.unwrap();
    /// assert!(first.hit.is_none());
    /// assert_eq!(first.events.count().await, 2);
    /// let again = cache.stream(&req, &ctx, "g", open).await.unwrap();
    /// assert!(again.hit.is_some());
    /// # });
    /// ```
    pub async fn stream<F, Fut>(
        &self,
        request: &Request,
        ctx: &RequestContext,
        namespace: &str,
        inner: F,
    ) -> Result<StreamAnswer>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<EventStream>>,
    {
        self.stream_storing(request, ctx, namespace, || async {
            inner().await.map(|s| (s, true))
        })
        .await
    }

    /// [`Cache::stream`] whose `inner` also says whether its live stream may be stored: not
    /// when another group served it (a fallback), whose answer is not this namespace's.
    pub async fn stream_storing<F, Fut>(
        &self,
        request: &Request,
        ctx: &RequestContext,
        namespace: &str,
        inner: F,
    ) -> Result<StreamAnswer>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(EventStream, bool)>>,
    {
        let miss = match self.find(request, ctx, namespace, true).await {
            Found::Hit(entry, hit) => match &entry.answer {
                Answer::Stream(events) => {
                    return Ok(StreamAnswer {
                        events: replay(events.clone()),
                        hit: Some(hit),
                    });
                }
                Answer::Call(_) => Miss {
                    exact: CacheKey::exact(request, ctx, namespace),
                    semantic: None,
                    embed_failed: false,
                    stale: None,
                },
            },
            Found::Miss(m) => m,
        };
        let (live, store) = inner().await?;
        Ok(StreamAnswer {
            events: if store {
                self.tee_with(request, ctx, namespace, live, miss)
            } else {
                live
            },
            hit: None,
        })
    }
}

/// Whether a stored answer can answer `request`, streamed or not: a stream answers a stream,
/// or a chat call (folded); a call answers a call of its operation.
fn serves(request: &Request, answer: &Answer, stream: bool) -> bool {
    match answer {
        Answer::Call(r) => !stream && r.operation() == request.operation(),
        Answer::Stream(_) => stream || matches!(request, Request::Chat(_)),
    }
}

/// A stored answer as a call's response, marked with `hit`.
fn answer_call(answer: &Answer, hit: CacheHit) -> Option<Response> {
    let mut resp = match answer {
        Answer::Call(r) => (**r).clone(),
        Answer::Stream(events) => {
            let mut acc = StreamAccumulator::new();
            events.iter().for_each(|e| acc.push(e));
            if !acc.is_done() {
                return None;
            }
            Response::Chat(acc.finish())
        }
    };
    resp.set_cache_hit(hit);
    Some(resp)
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Runs `f` on tokio's blocking threads when there is a runtime (it may hold a namespace's
/// write lock for long, or run a model), else here; returns its value when it is done (a
/// caller that stops waiting leaves it to finish), or the task's error (it panicked).
pub(crate) async fn off_the_runtime<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, tokio::task::JoinError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::task::spawn_blocking(f).await
    } else {
        Ok(f())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use infermux_core::{ChatRequest, ChatResponse, Message};

    /// One vector for every text: every stored question is a candidate for every lookup.
    #[derive(Debug)]
    struct Flat;

    #[async_trait]
    impl Embedder for Flat {
        fn model_id(&self) -> &str {
            "flat"
        }
        async fn embed(&self, texts: &[String], _ctx: &RequestContext) -> Result<Vec<Vec<f32>>> {
            Ok(texts.iter().map(|_| vec![1.0, 0.0, 0.0]).collect())
        }
    }

    /// Takes every candidate.
    #[derive(Debug)]
    struct Yes;

    #[async_trait]
    impl crate::Verifier for Yes {
        async fn score(&self, _query: &str, _candidate: &str, _cosine: f32) -> Result<f32> {
            Ok(1.0)
        }
        fn threshold(&self) -> f32 {
            0.5
        }
    }

    fn ask(text: &str) -> Request {
        Request::Chat(ChatRequest::new("m", vec![Message::user(text)]))
    }

    /// A semantic lookup that finds its namespace being changed (its write lock held, as
    /// while a row goes in and its index is rebuilt) misses at once and says so, rather than
    /// wait on the runtime's thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lookup_on_a_namespace_being_changed_misses_rather_than_waits() {
        let cache = Cache::new(CacheConfig::default()).unwrap().with_semantic(
            Arc::new(Flat),
            Arc::new(Yes),
            SemanticConfig::default(),
        );
        let ctx = RequestContext::new();
        let answer = Response::Chat(ChatResponse::new("m", Message::assistant("Paris")));
        cache
            .store(&ask("capital of france?"), &ctx, "g", &answer)
            .await;
        // found by meaning while nothing holds the namespace
        assert!(
            cache
                .lookup(&ask("france, capital of?"), &ctx, "g")
                .await
                .is_some()
        );
        let sem = cache.inner.semantic.as_ref().unwrap();
        sem.namespaces.run_pending_tasks();
        let (_, ns) = sem.namespaces.iter().next().expect("one namespace");
        // another thread holds the namespace's write lock until told to let go
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _held = ns.lock.write().unwrap();
            held_tx.send(()).unwrap();
            let _ = go_rx.recv();
        });
        held_rx.recv().unwrap();
        let (c, q) = (cache.clone(), ask("the capital of france?"));
        let looked = tokio::spawn(async move { c.lookup(&q, &RequestContext::new(), "g").await });
        let found = tokio::time::timeout(Duration::from_secs(5), looked).await;
        go_tx.send(()).unwrap();
        holder.join().unwrap();
        let found = found
            .expect("the lookup waited on the namespace's lock")
            .unwrap();
        assert!(found.is_none());
        assert_eq!(cache.snapshot().semantic_busy, 1);
    }

    /// A store that finds another writer changing its namespace (an index rebuilt: seconds
    /// at 10⁵ rows) leaves its row to that writer and returns, rather than park a blocking
    /// thread on the lock; the writer takes the row in before it lets go.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_leaves_its_row_to_the_writer_at_work_rather_than_waits() {
        let cache = Cache::new(CacheConfig::default()).unwrap().with_semantic(
            Arc::new(Flat),
            Arc::new(Yes),
            SemanticConfig::default(),
        );
        let ctx = RequestContext::new();
        let answer = |t: &str| Response::Chat(ChatResponse::new("m", Message::assistant(t)));
        cache
            .store(&ask("capital of france?"), &ctx, "g", &answer("Paris"))
            .await;
        let sem = cache.inner.semantic.as_ref().unwrap();
        sem.namespaces.run_pending_tasks();
        let (key, ns) = sem.namespaces.iter().next().expect("one namespace");
        let key = *key;
        // another thread is the namespace's writer until told to finish
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (c, cell) = (cache.clone(), Arc::clone(&ns));
        let writer = std::thread::spawn(move || {
            let sem = c.inner.semantic.as_ref().unwrap();
            c.write_namespace(sem, key, &cell, |_| {
                held_tx.send(()).unwrap();
                let _ = go_rx.recv();
            })
        });
        held_rx.recv().unwrap();
        let c = cache.clone();
        let stored = tokio::spawn(async move {
            c.store(
                &ask("capital of italy?"),
                &RequestContext::new(),
                "g",
                &answer("Rome"),
            )
            .await;
        });
        let stored = tokio::time::timeout(Duration::from_secs(5), stored).await;
        go_tx.send(()).unwrap();
        assert!(writer.join().unwrap(), "the writer was the only one");
        stored
            .expect("the store waited for the writer at work")
            .unwrap();
        let n = ns.lock.read().unwrap();
        assert_eq!((n.live, n.rows.len()), (2, 2), "the writer took the row in");
        assert!(ns.pending().is_empty());
        assert!(!ns.writing.load(Ordering::Acquire));
    }

    /// Rows past their TTL go when a row comes in — their text and answer freed, not only
    /// hidden from lookups — so a namespace in use (never idle) does not keep a TTL's worth of
    /// answers for ever.
    #[tokio::test]
    async fn expired_rows_are_freed_when_a_row_comes_in() {
        let clock = infermux_core::ManualClock::new();
        let cache = Cache::new(CacheConfig::default())
            .unwrap()
            .with_clock(Arc::new(clock.clone()))
            .with_semantic(
                Arc::new(Flat),
                Arc::new(Yes),
                SemanticConfig::default()
                    .with_ttl(Duration::from_secs(1))
                    .unwrap(),
            );
        let ctx = RequestContext::new();
        let answer = Response::Chat(ChatResponse::new("m", Message::assistant("a")));
        for i in 0..100 {
            cache
                .store(&ask(&format!("question {i}")), &ctx, "g", &answer)
                .await;
        }
        let sem = cache.inner.semantic.as_ref().unwrap();
        sem.namespaces.run_pending_tasks();
        let (_, ns) = sem.namespaces.iter().next().expect("one namespace");
        let entry = Arc::clone(&ns.lock.read().unwrap().rows[0].0.as_ref().unwrap().1);
        let held = Arc::strong_count(&entry);
        clock.advance(Duration::from_secs(2));
        cache.store(&ask("one more"), &ctx, "g", &answer).await;
        let n = ns.lock.read().unwrap();
        assert_eq!(n.live, 1, "the expired rows are dead");
        assert_eq!(n.rows.iter().filter(|r| r.0.is_some()).count(), 1);
        // (the exact tier still holds its own reference until it expires there)
        assert_eq!(
            Arc::strong_count(&entry),
            held - 1,
            "and the namespace's reference is dropped"
        );
        assert!(cache.snapshot().expired >= 100);
    }

    /// A writer that panics (an index build, say) lets the namespace go: the next store's row
    /// goes in, rather than every later row staying pending for good.
    #[tokio::test]
    async fn a_writer_that_panicked_leaves_the_namespace_writable() {
        let cache = Cache::new(CacheConfig::default()).unwrap().with_semantic(
            Arc::new(Flat),
            Arc::new(Yes),
            SemanticConfig::default(),
        );
        let ctx = RequestContext::new();
        let answer = Response::Chat(ChatResponse::new("m", Message::assistant("a")));
        cache.store(&ask("first"), &ctx, "g", &answer).await;
        let sem = cache.inner.semantic.as_ref().unwrap();
        sem.namespaces.run_pending_tasks();
        let (key, ns) = sem.namespaces.iter().next().expect("one namespace");
        let key = *key;
        let c = cache.clone();
        let cell = Arc::clone(&ns);
        let panicked = std::thread::spawn(move || {
            let sem = c.inner.semantic.as_ref().unwrap();
            c.write_namespace(sem, key, &cell, |_| panic!("an index build failed"));
        })
        .join();
        assert!(panicked.is_err());
        assert!(!ns.writing.load(Ordering::Acquire));
        cache.store(&ask("second"), &ctx, "g", &answer).await;
        let n = ns.lock.read().unwrap_or_else(|e| e.into_inner());
        assert_eq!(n.live, 2, "the second row went in");
    }
}
