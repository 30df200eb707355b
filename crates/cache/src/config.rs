//! [`CacheConfig`] and [`SemanticConfig`]: TTLs, size bounds and the semantic tier's match
//! settings.

use std::time::Duration;

use infermux_core::{Error, ErrorKind, Result};

use crate::index::IndexConfig;

/// The longest a store is asked to keep an entry: 100 years. A longer TTL (`Duration::MAX`
/// for "never expire") is served as given, but the stores are asked for this much: moka
/// refuses (panics on) more than 1000 years, and Redis refuses an expiry past what it holds.
const STORE_TTL_CAP: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `ttl` as a store is asked to keep it (at most [`STORE_TTL_CAP`]).
pub(crate) fn store_ttl(ttl: Duration) -> Duration {
    ttl.min(STORE_TTL_CAP)
}

fn config_error(msg: &str) -> Error {
    Error::new(ErrorKind::Config, msg.to_owned())
}

/// The exact tier's settings.
///
/// ```
/// use infermux_cache::CacheConfig;
/// use std::time::Duration;
/// let c = CacheConfig::new(Duration::from_secs(600), 10_000).unwrap();
/// assert_eq!(c.max_entries, 10_000);
/// assert!(CacheConfig::new(Duration::ZERO, 10).is_err());
/// assert!(CacheConfig::new(Duration::from_secs(1), 0).is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// How long an answer is served after it was stored.
    pub ttl: Duration,
    /// The most answers the in-memory store holds (TinyLFU admission, LRU eviction); Redis
    /// bounds its own memory (`maxmemory`), entries expire there after [`CacheConfig::ttl`].
    pub max_entries: u64,
    /// The most bytes the in-memory store's answers hold, about (an answer weighs its JSON,
    /// a stream its events; each at least `max_bytes / max_entries`, so both bounds hold);
    /// default [`DEFAULT_MAX_BYTES`].
    pub max_bytes: u64,
    /// Whether identical calls missing at once in this process make one upstream call
    /// (default `true`): the first goes, the others wait for its stored answer (each within
    /// its own deadline) and are answered from the exact tier. See [`Cache::call`](crate::Cache::call).
    pub coalesce: bool,
}

/// The default [`CacheConfig::max_bytes`]: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

/// The default [`SemanticConfig::max_bytes`]: 512 MiB.
pub const DEFAULT_SEMANTIC_MAX_BYTES: u64 = 512 << 20;

/// The smallest byte budget a store takes: 64 KiB.
const MIN_BYTES: u64 = 64 << 10;

impl Default for CacheConfig {
    /// One hour, 10 000 answers, 256 MiB.
    fn default() -> Self {
        CacheConfig {
            ttl: Duration::from_secs(3600),
            max_entries: 10_000,
            max_bytes: DEFAULT_MAX_BYTES,
            coalesce: true,
        }
    }
}

impl CacheConfig {
    /// Answers kept `ttl` (more than zero), at most `max_entries` (at least one) in memory,
    /// within [`DEFAULT_MAX_BYTES`].
    pub fn new(ttl: Duration, max_entries: u64) -> Result<Self> {
        let c = CacheConfig {
            ttl,
            max_entries,
            max_bytes: DEFAULT_MAX_BYTES,
            coalesce: true,
        };
        c.validate()?;
        Ok(c)
    }

    /// Sets the byte budget of the in-memory store (at least 64 KiB).
    ///
    /// ```
    /// use infermux_cache::CacheConfig;
    /// let c = CacheConfig::default().with_max_bytes(64 << 20).unwrap();
    /// assert_eq!(c.max_bytes, 64 << 20);
    /// assert!(CacheConfig::default().with_max_bytes(1000).is_err());
    /// ```
    pub fn with_max_bytes(mut self, bytes: u64) -> Result<Self> {
        self.max_bytes = bytes;
        self.validate()?;
        Ok(self)
    }

    /// Whether identical calls that miss at once make one upstream call (default `true`;
    /// [`CacheConfig::coalesce`]).
    ///
    /// ```
    /// use infermux_cache::CacheConfig;
    /// assert!(CacheConfig::default().coalesce);
    /// assert!(!CacheConfig::default().with_coalescing(false).coalesce);
    /// ```
    pub fn with_coalescing(mut self, on: bool) -> Self {
        self.coalesce = on;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.ttl.is_zero() {
            return Err(config_error("the cache's ttl must be more than zero"));
        }
        if self.max_entries == 0 {
            return Err(config_error("the cache's max_entries must be at least 1"));
        }
        if self.max_bytes < MIN_BYTES {
            return Err(config_error(
                "the cache's max_bytes must be at least 64 KiB",
            ));
        }
        Ok(())
    }
}

/// The semantic tier's settings.
///
/// ```
/// use infermux_cache::SemanticConfig;
/// let c = SemanticConfig::default().with_min_similarity(0.85).unwrap().with_top_k(3).unwrap();
/// assert_eq!(c.top_k, 3);
/// assert!(SemanticConfig::default().with_min_similarity(1.5).is_err());
/// assert!(SemanticConfig::default().with_top_k(0).is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SemanticConfig {
    /// How long an answer is served after it was stored.
    pub ttl: Duration,
    /// The most answers one namespace holds; past it the oldest goes.
    pub max_entries_per_namespace: usize,
    /// The most namespaces held at once (TinyLFU/LRU over namespaces); the tier holds at most
    /// `max_namespaces × max_entries_per_namespace` answers.
    pub max_namespaces: u64,
    /// The most bytes the tier's rows hold, about (texts, vectors and answers; an answer both
    /// tiers hold counts in each): past it whole namespaces go, least used first (each weighs
    /// at least `max_bytes / max_namespaces`). Default [`DEFAULT_SEMANTIC_MAX_BYTES`].
    pub max_bytes: u64,
    /// The cosine similarity a candidate needs before the verifier sees it (default
    /// [`CANDIDATE_FLOOR`](crate::verify::CANDIDATE_FLOOR), 0.5: the floor the verifier was
    /// calibrated and measured with, so `infermux cache eval` measures what the cache does).
    pub min_similarity: f32,
    /// How many nearest candidates the verifier sees (default 4).
    pub top_k: usize,
    /// The vector index's settings (brute force, HNSW past a size).
    pub index: IndexConfig,
    /// Also requests with temperature > 0 (default: skipped).
    pub allow_sampled: bool,
    /// Also requests that offer or used tools (default: skipped).
    pub allow_tools: bool,
    /// The longest last turn (in characters) the tier compares (default
    /// [`MAX_SEMANTIC_CHARS`]): past it a request goes to the exact tier only. An embedder
    /// reads a bounded window (all-MiniLM-L6-v2: 256 word pieces) and the verifier's word
    /// signals the first 512 words, so two long turns sharing their opening (a pasted
    /// document, then different questions about it) would look the same to both.
    pub max_chars: usize,
    /// The longest the tier waits for the embedder, and for the verifier on each candidate, on
    /// a call's path: past it the lookup is a miss (an embedder error, or a verifier reject)
    /// and the call goes on to the provider. The caller's deadline bounds both as well, when
    /// the call has one (the facade's client gives every call its timeout). Default `None`: no
    /// bound of the tier's own — a provider embedder's call keeps its endpoint's timeouts, and
    /// a bound cuts short work already paid for (a remote call billed, a local embedding that
    /// goes on in its blocking thread). Either bound needs a tokio runtime with timers.
    pub embed_timeout: Option<Duration>,
}

/// The default [`SemanticConfig::max_chars`]: about 250 word pieces of English, within
/// all-MiniLM-L6-v2's window, and far within the verifier's 512 words.
pub const MAX_SEMANTIC_CHARS: usize = 1000;

impl Default for SemanticConfig {
    fn default() -> Self {
        SemanticConfig {
            ttl: Duration::from_secs(3600),
            max_entries_per_namespace: 100_000,
            max_namespaces: 10_000,
            max_bytes: DEFAULT_SEMANTIC_MAX_BYTES,
            min_similarity: crate::verify::CANDIDATE_FLOOR,
            top_k: 4,
            index: IndexConfig::default(),
            allow_sampled: false,
            allow_tools: false,
            max_chars: MAX_SEMANTIC_CHARS,
            embed_timeout: None,
        }
    }
}

impl SemanticConfig {
    /// Sets the TTL (more than zero).
    pub fn with_ttl(mut self, ttl: Duration) -> Result<Self> {
        if ttl.is_zero() {
            return Err(config_error(
                "the semantic tier's ttl must be more than zero",
            ));
        }
        self.ttl = ttl;
        Ok(self)
    }
    /// Sets the size bounds (both at least one).
    pub fn with_max_entries(mut self, per_namespace: usize, namespaces: u64) -> Result<Self> {
        if per_namespace == 0 || namespaces == 0 {
            return Err(config_error(
                "the semantic tier's size bounds must be at least 1",
            ));
        }
        self.max_entries_per_namespace = per_namespace;
        self.max_namespaces = namespaces;
        Ok(self)
    }
    /// Sets the tier's byte budget (at least 64 KiB).
    ///
    /// ```
    /// use infermux_cache::SemanticConfig;
    /// let c = SemanticConfig::default().with_max_bytes(1 << 30).unwrap();
    /// assert_eq!(c.max_bytes, 1 << 30);
    /// assert!(SemanticConfig::default().with_max_bytes(0).is_err());
    /// ```
    pub fn with_max_bytes(mut self, bytes: u64) -> Result<Self> {
        if bytes < MIN_BYTES {
            return Err(config_error(
                "the semantic tier's max_bytes must be at least 64 KiB",
            ));
        }
        self.max_bytes = bytes;
        Ok(self)
    }
    /// Sets the similarity floor (−1 to 1).
    pub fn with_min_similarity(mut self, floor: f32) -> Result<Self> {
        if !(-1.0..=1.0).contains(&floor) {
            return Err(config_error("min_similarity must be within -1 and 1"));
        }
        self.min_similarity = floor;
        Ok(self)
    }
    /// Sets how many candidates the verifier sees (at least one).
    pub fn with_top_k(mut self, k: usize) -> Result<Self> {
        if k == 0 {
            return Err(config_error("top_k must be at least 1"));
        }
        self.top_k = k;
        Ok(self)
    }
    /// Sets the vector index's settings; a [`ErrorKind::Config`](infermux_core::ErrorKind)
    /// error when they are out of range (an index that cannot be built would turn the
    /// semantic tier off without a word).
    ///
    /// ```
    /// use infermux_cache::{IndexConfig, SemanticConfig};
    /// assert!(SemanticConfig::default().with_index(IndexConfig::default().with_max_links(32)).is_ok());
    /// assert!(SemanticConfig::default().with_index(IndexConfig::default().with_max_links(1)).is_err());
    /// assert!(SemanticConfig::default().with_index(IndexConfig::default().with_ef_search(0)).is_err());
    /// ```
    pub fn with_index(mut self, index: IndexConfig) -> Result<Self> {
        index.validate()?;
        self.index = index;
        Ok(self)
    }
    /// Also caches requests with temperature > 0.
    pub fn allow_sampled(mut self, yes: bool) -> Self {
        self.allow_sampled = yes;
        self
    }
    /// Also caches requests that offer or used tools.
    pub fn allow_tools(mut self, yes: bool) -> Self {
        self.allow_tools = yes;
        self
    }
    /// Sets the longest last turn the tier compares (at least one character; see
    /// [`SemanticConfig::max_chars`] before raising it past the embedder's window).
    pub fn with_max_chars(mut self, n: usize) -> Result<Self> {
        if n == 0 {
            return Err(config_error("max_chars must be at least 1"));
        }
        self.max_chars = n;
        Ok(self)
    }
    /// Sets how long the tier waits for the embedder (more than zero).
    pub fn with_embed_timeout(mut self, t: Duration) -> Result<Self> {
        if t.is_zero() {
            return Err(config_error("embed_timeout must be more than zero"));
        }
        self.embed_timeout = Some(t);
        Ok(self)
    }
}
