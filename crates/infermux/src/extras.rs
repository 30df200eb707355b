//! What the client adds in front of the stack: the response cache (exact and semantic tiers)
//! and the embedding batcher. The order of the call: cache → batching → call policy.

use std::fmt;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use infermux_batching::{BatchConfig, EmbeddingBatcher};
use infermux_cache::{Cache, CacheConfig, Embedder, SemanticConfig, Verifier};
use infermux_core::{
    EmbeddingRequest, Error, ErrorKind, Request, RequestContext, Response, Result,
};

use crate::client::Inner;

/// Where the semantic tier's vectors come from.
#[derive(Clone)]
enum EmbedderSource {
    /// Any embedder: a provider's ([`ProviderEmbedder`](infermux_cache::ProviderEmbedder)) or
    /// a local model.
    Given(Arc<dyn Embedder>),
    /// A model group (or, on a single-endpoint client, a model) of this client: embeddings go
    /// through its own pools, retries and breakers (never through its cache).
    Group(String),
}

/// The semantic tier of a client's cache: which embedder turns the last user turn into a
/// vector, which verifier decides whether a near neighbour really means the same, and the
/// tier's settings ([`SemanticConfig`]: similarity floor, candidates, TTL, size, and whether
/// sampled or tool-calling requests are cached).
///
/// ```
/// use infermux::cache::{SemanticConfig, verify::LexicalVerifier};
/// use infermux::SemanticCache;
/// use std::sync::{Arc, OnceLock};
/// // embeddings from the client's own `embed` group, checked by the lexical verifier
/// let semantic = SemanticCache::via_group("embed", Arc::new(LexicalVerifier::new()))
///     .with_config(SemanticConfig::default());
/// assert!(format!("{semantic:?}").contains("embed"));
/// ```
#[derive(Clone)]
pub struct SemanticCache {
    embedder: EmbedderSource,
    verifier: Arc<dyn Verifier>,
    config: SemanticConfig,
}

impl fmt::Debug for SemanticCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let embedder = match &self.embedder {
            EmbedderSource::Given(e) => format!("{e:?}"),
            EmbedderSource::Group(g) => format!("group `{g}`"),
        };
        f.debug_struct("SemanticCache")
            .field("embedder", &embedder)
            .field("verifier", &self.verifier)
            .field("config", &self.config)
            .finish()
    }
}

impl SemanticCache {
    /// A semantic tier embedding with `embedder` and verifying with `verifier`.
    pub fn new(embedder: Arc<dyn Embedder>, verifier: Arc<dyn Verifier>) -> Self {
        SemanticCache {
            embedder: EmbedderSource::Given(embedder),
            verifier,
            config: SemanticConfig::default(),
        }
    }
    /// A semantic tier embedding through this client's model group `group` (its pools, keys,
    /// retries and batching apply; its cache does not). A client with model groups and none
    /// named `group` fails to build with `Config`.
    pub fn via_group(group: impl Into<String>, verifier: Arc<dyn Verifier>) -> Self {
        SemanticCache {
            embedder: EmbedderSource::Group(group.into()),
            verifier,
            config: SemanticConfig::default(),
        }
    }
    /// The tier's settings.
    pub fn with_config(mut self, config: SemanticConfig) -> Self {
        self.config = config;
        self
    }
}

/// The builder's choices, turned into [`Extras`] once the stack exists.
pub(crate) struct ExtrasSpec {
    pub(crate) cache: Option<CacheConfig>,
    pub(crate) semantic: Option<SemanticCache>,
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<infermux_cache::RedisStore>,
    pub(crate) batching: Option<BatchConfig>,
}

impl ExtrasSpec {
    pub(crate) fn build(self, inner: &Arc<Inner>) -> Result<Extras> {
        // started at the first embedding call (inside its runtime), so a client can be built
        // before a runtime exists
        let batcher = self.batching.map(|config| {
            Arc::new(LazyBatcher {
                config,
                inner: Arc::clone(inner),
                cell: OnceLock::new(),
            })
        });
        #[cfg(feature = "redis")]
        let redis = self.redis;
        #[cfg(not(feature = "redis"))]
        let redis: Option<std::convert::Infallible> = None;
        let wants_cache = self.cache.is_some() || self.semantic.is_some() || redis.is_some();
        let cache = if wants_cache {
            let mut cache = Cache::new(self.cache.unwrap_or_default())?;
            match redis {
                #[cfg(feature = "redis")]
                Some(store) => cache = cache.with_redis(store),
                #[cfg(not(feature = "redis"))]
                Some(never) => match never {},
                None => {}
            }
            if let Some(s) = self.semantic {
                let embedder: Arc<dyn Embedder> = match s.embedder {
                    EmbedderSource::Given(e) => e,
                    EmbedderSource::Group(group) => {
                        check_embedding_group(inner, &group)?;
                        Arc::new(GroupEmbedder {
                            id: format!("group:{group}"),
                            group,
                            inner: Arc::clone(inner),
                            batcher: batcher.clone(),
                        })
                    }
                };
                cache = cache.with_semantic(embedder, s.verifier, s.config);
            }
            Some(Arc::new(cache))
        } else {
            None
        };
        Ok(Extras { cache, batcher })
    }
}

/// `Config` when a routed client with named groups has none called `group`: every lookup of the
/// semantic tier would fail at its first embedding. (A single endpoint, or endpoints without
/// groups, take any model name.)
fn check_embedding_group(inner: &Inner, group: &str) -> Result<()> {
    match inner {
        Inner::Routed(r) if r.default.is_none() && !r.by_name.contains_key(group) => {
            Err(Error::new(
                ErrorKind::Config,
                format!(
                    "the semantic cache embeds through group `{group}`, which the client does \
                     not have (groups: {})",
                    r.groups
                        .iter()
                        .map(|g| &*g.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        }
        Inner::Routed(r) => {
            // the group's endpoints must embed: a chat-only group failed every lookup's
            // embedding (counted misses, and requests spent) for the client's whole life
            let Some(&g) = r.by_name.get(group).or(r.default.as_ref()) else {
                return Ok(());
            };
            let g = &r.groups[g];
            let mut ends = g.member_endpoints.clone();
            ends.sort_unstable();
            ends.dedup();
            let cannot: Vec<&str> = ends
                .iter()
                .map(|&e| &r.endpoints[e])
                .filter(|(_, exec)| {
                    !exec
                        .provider()
                        .capabilities()
                        .supports(infermux_core::Operation::Embeddings)
                })
                .map(|(id, _)| id.as_str())
                .collect();
            if cannot.is_empty() {
                return Ok(());
            }
            Err(Error::new(
                ErrorKind::Config,
                format!(
                    "the semantic cache embeds through group `{}`, whose endpoint(s) {} offer no embeddings",
                    g.name,
                    cannot.join(", ")
                ),
            ))
        }
        Inner::Single(one) => {
            let exec = one.executor();
            if exec
                .provider()
                .capabilities()
                .supports(infermux_core::Operation::Embeddings)
            {
                Ok(())
            } else {
                Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "the semantic cache embeds through the client's endpoint `{}`, which offers no embeddings",
                        exec.provider().endpoint().as_str()
                    ),
                ))
            }
        }
    }
}

/// The embedding batcher, started at the first embedding call (its task needs a runtime).
pub(crate) struct LazyBatcher {
    config: BatchConfig,
    inner: Arc<Inner>,
    cell: OnceLock<EmbeddingBatcher>,
}

impl fmt::Debug for LazyBatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyBatcher")
            .field("config", &self.config)
            .field("started", &self.cell.get().is_some())
            .finish()
    }
}

impl LazyBatcher {
    fn get(&self) -> Result<&EmbeddingBatcher> {
        if let Some(b) = self.cell.get() {
            return Ok(b);
        }
        let inner = Arc::clone(&self.inner);
        let b = EmbeddingBatcher::new(self.config.clone(), move |req, ctx| {
            let inner = Arc::clone(&inner);
            async move {
                let request = Request::Embeddings(req);
                // several callers' inputs: one bad input splits the batch, not a fallback of
                // everyone's to another group's model (one input alone falls back as a call)
                let answer = if embeddings_of(&request) > 1 {
                    inner.call_batch(&request, ctx).await?
                } else {
                    inner.call(&request, ctx).await?
                };
                crate::client::embeddings_answer(answer)
            }
        })?;
        // two first calls at once: one batcher wins, the other is dropped unused
        let _ = self.cell.set(b);
        self.cell
            .get()
            .ok_or_else(|| Error::new(ErrorKind::Config, "the batcher could not start"))
    }

    pub(crate) async fn embed(
        &self,
        req: EmbeddingRequest,
        ctx: &RequestContext,
    ) -> Result<infermux_core::EmbeddingResponse> {
        self.get()?.embed(req, ctx).await
    }

    /// The counters (zero before the first call).
    pub(crate) fn stats(&self) -> infermux_batching::BatchStats {
        self.cell.get().map(|b| b.stats()).unwrap_or_default()
    }
}

/// The cache and the batcher of a built client.
#[derive(Debug, Default)]
pub(crate) struct Extras {
    pub(crate) cache: Option<Arc<Cache>>,
    pub(crate) batcher: Option<Arc<LazyBatcher>>,
}

impl Extras {
    /// Neither a cache nor a batcher: calls go straight to the stack.
    pub(crate) fn is_empty(&self) -> bool {
        self.cache.is_none() && self.batcher.is_none()
    }

    /// A call past the cache: embeddings through the batcher when it is on, the rest (and
    /// embeddings without batching) straight through the stack.
    pub(crate) async fn uncached(
        &self,
        inner: &Inner,
        request: &Request,
        ctx: RequestContext,
    ) -> Result<Response> {
        match (&self.batcher, request) {
            (Some(b), Request::Embeddings(e)) => {
                b.embed(e.clone(), &ctx).await.map(Response::Embeddings)
            }
            _ => inner.call(request, ctx).await,
        }
    }
}

/// The semantic tier's embedder when it embeds through one of the client's own groups.
struct GroupEmbedder {
    id: String,
    group: String,
    inner: Arc<Inner>,
    batcher: Option<Arc<LazyBatcher>>,
}

impl fmt::Debug for GroupEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupEmbedder")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Embedder for GroupEmbedder {
    fn model_id(&self) -> &str {
        &self.id
    }
    async fn embed(&self, texts: &[String], ctx: &RequestContext) -> Result<Vec<Vec<f32>>> {
        let req = EmbeddingRequest::new(self.group.clone(), texts.iter().cloned());
        let resp = match &self.batcher {
            Some(b) => b.embed(req, ctx).await?,
            None => match self
                .inner
                .call(&Request::Embeddings(req), ctx.clone())
                .await?
            {
                Response::Embeddings(e) => e,
                _ => {
                    return Err(Error::new(
                        ErrorKind::Decode,
                        "the provider answered an embeddings request with another operation",
                    ));
                }
            },
        };
        // vectors a fallback group gave are of another model's space (of the same size, maybe):
        // compared with the group's own rows they would make false candidates
        if let Some(f) = resp.served.as_ref().and_then(|s| s.fallback.as_ref()) {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "group `{}` answered through a fallback (after `{}`): not its vectors",
                    self.group,
                    f.trigger.as_str()
                ),
            ));
        }
        if resp.embeddings.len() != texts.len() {
            return Err(Error::new(
                ErrorKind::Decode,
                format!(
                    "{} vectors for {} texts",
                    resp.embeddings.len(),
                    texts.len()
                ),
            ));
        }
        Ok(resp.embeddings)
    }
}

/// The verifier for vectors from a remote embedder (no token vectors to compare): the lexical
/// one, at `threshold` or its calibrated default.
pub(crate) fn remote_verifier(threshold: Option<f32>) -> Result<Arc<dyn Verifier>> {
    Ok(match threshold {
        Some(t) => Arc::new(infermux_cache::LexicalVerifier::with_threshold(t)?),
        None => Arc::new(infermux_cache::LexicalVerifier::new()),
    })
}

#[cfg(feature = "local-embed")]
impl SemanticCache {
    /// The semantic tier on all-MiniLM-L6-v2 in process (feature `local-embed`) from the model
    /// folder `dir` (`config.json`, `tokenizer.json`, `model.safetensors`), verified by the
    /// contextual verifier at `threshold` or its calibrated default (precision 0.97 on the Quora
    /// pairs it was measured on; see docs/benchmarks.md).
    ///
    /// ```
    /// use infermux::{ErrorKind, SemanticCache};
    /// let err = SemanticCache::local("/no/such/folder", None).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Config);
    /// ```
    pub fn local(dir: impl AsRef<std::path::Path>, threshold: Option<f32>) -> Result<Self> {
        let embedder = infermux_cache::LocalEmbedder::open_named(dir, "all-MiniLM-L6-v2")?;
        let verifier = match threshold {
            Some(t) => infermux_cache::ContextualVerifier::with_threshold(embedder.clone(), t)?,
            None => infermux_cache::ContextualVerifier::new(embedder.clone()),
        };
        Ok(SemanticCache::new(Arc::new(embedder), Arc::new(verifier)))
    }
}

/// How many inputs an embedding request carries.
fn embeddings_of(request: &Request) -> usize {
    match request {
        Request::Embeddings(r) => r.inputs.len(),
        _ => 0,
    }
}
