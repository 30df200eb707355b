//! [`Client`]: typed calls over one provider endpoint through the resilience stack (admission
//! queue, circuit breaker, retries, call deadline) with per-endpoint counters — or, built with
//! endpoints, keys and model groups, over pools routed by model with fallbacks.

use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;
use std::fmt;

use infermux_core::{
    ApiKey, Capabilities, ChatRequest, ChatResponse, CompletionRequest, CompletionResponse,
    CounterSnapshot, EmbeddingRequest, EmbeddingResponse, EndpointId, Error, ErrorKind,
    EventStream, ModelList, Priority, Provider, Request, RequestContext, RerankRequest,
    RerankResponse, Response, Result, Served,
};
use infermux_multiplex::{KeyRegistry, MemberSpec, MultiPool, PoolConfig, Strategy};
use infermux_resilience::retry::KeyRetry;
use infermux_resilience::{
    AttemptExecutor, CallPolicy, ResilienceConfig, Resilient, render_prometheus,
};

use crate::extras::{Extras, SemanticCache};

/// A boxed, type-erased future.
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
use crate::router::{Chain, Group, Router};

/// A key of an endpoint, with its alias (what reports, metrics and [`Served`] show) and its
/// optional per-key limits.
///
/// ```
/// use infermux::{ApiKey, NamedKey};
/// let k = NamedKey::new("team-a", ApiKey::new("sk-1")).with_rpm(500).with_tpm(200_000);
/// assert_eq!(k.alias(), "team-a");
/// assert!(NamedKey::from_env("team-b", "INFERMUX_SURELY_UNSET_VAR").is_err());
/// ```
#[derive(Debug, Clone)]
pub struct NamedKey {
    alias: String,
    key: ApiKey,
    rpm: Option<u32>,
    tpm: Option<u32>,
}

impl NamedKey {
    /// `key`, named `alias`.
    pub fn new(alias: impl Into<String>, key: ApiKey) -> Self {
        NamedKey {
            alias: alias.into(),
            key,
            rpm: None,
            tpm: None,
        }
    }
    /// The key in environment variable `var`; an unset or empty variable is a
    /// [`ErrorKind::Config`] error now, not a 401 later.
    pub fn from_env(alias: impl Into<String>, var: &str) -> Result<Self> {
        let alias = alias.into();
        let key = ApiKey::from_env(var).ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "key `{alias}`: environment variable {} is not set",
                    infermux_core::shown_var_name(var)
                ),
            )
        })?;
        Ok(Self::new(alias, key))
    }
    /// The key in the file at `path` (trimmed); a missing, unreadable or empty file is a
    /// [`ErrorKind::Config`] error.
    pub fn from_file(alias: impl Into<String>, path: impl AsRef<std::path::Path>) -> Result<Self> {
        let alias = alias.into();
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("key `{alias}`: cannot read {}", path.display()),
            )
            .with_source(e)
        })?;
        if text.trim().is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("key `{alias}`: {} is empty", path.display()),
            ));
        }
        Ok(Self::new(alias, ApiKey::new(text.trim())))
    }
    /// A requests-per-minute limit of this key.
    pub fn with_rpm(mut self, rpm: u32) -> Self {
        self.rpm = Some(rpm);
        self
    }
    /// A tokens-per-minute limit of this key.
    pub fn with_tpm(mut self, tpm: u32) -> Self {
        self.tpm = Some(tpm);
        self
    }
    /// The alias.
    pub fn alias(&self) -> &str {
        &self.alias
    }
}

/// A deployment of a model group: an endpoint (by name), the provider's model id there, and a
/// weight for the weighted strategy.
#[derive(Debug, Clone)]
pub struct Deployment {
    endpoint: String,
    model: Option<String>,
    weight: u32,
    name: Option<String>,
}

impl Deployment {
    /// `model` at the endpoint named `endpoint`.
    pub fn new(endpoint: impl Into<String>, model: impl Into<String>) -> Self {
        Deployment {
            endpoint: endpoint.into(),
            model: Some(model.into()),
            weight: 1,
            name: None,
        }
    }
    /// The endpoint with whatever model the request names.
    pub fn any_model(endpoint: impl Into<String>) -> Self {
        Deployment {
            endpoint: endpoint.into(),
            model: None,
            weight: 1,
            name: None,
        }
    }
    /// The weight (default 1): the deployment's share of its group under
    /// [`Strategy::Weighted`], whatever its number of keys (split among them).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
    /// A name for reports (default: the endpoint's).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// A model group: the name the application uses, a selection strategy and its deployments.
///
/// ```
/// use infermux::{Deployment, ModelGroup, Strategy};
/// let g = ModelGroup::new("chat-fast")
///     .strategy(Strategy::LeastInFlight)
///     .deployment(Deployment::new("openai-a", "gpt-4o-mini"))
///     .deployment(Deployment::new("local", "smollm2").weight(2));
/// assert_eq!(g.name(), "chat-fast");
/// ```
#[derive(Debug, Clone)]
pub struct ModelGroup {
    name: String,
    strategy: Strategy,
    deployments: Vec<Deployment>,
    config: Option<PoolConfig>,
}

impl ModelGroup {
    /// A group named `name`, round-robin, no deployments yet.
    pub fn new(name: impl Into<String>) -> Self {
        ModelGroup {
            name: name.into(),
            strategy: Strategy::default(),
            deployments: Vec::new(),
            config: None,
        }
    }
    /// The selection strategy.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }
    /// Adds a deployment.
    pub fn deployment(mut self, d: Deployment) -> Self {
        self.deployments.push(d);
        self
    }
    /// The pool's configuration, strategy included (replaces [`ModelGroup::strategy`]).
    /// Without one, the pool has the strategy's defaults and lets as many requests wait as
    /// the client's resilience queue allows ([`QueueConfig::max_queued`](infermux_resilience::queue::QueueConfig::max_queued)):
    /// a request waits in its group's pool, never in an endpoint's queue.
    pub fn pool_config(mut self, config: PoolConfig) -> Self {
        self.config = Some(config);
        self
    }
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

struct EndpointEntry {
    provider: Arc<dyn Provider>,
    keys: Vec<NamedKey>,
    permits: Option<usize>,
}

/// Builds a [`Client`]: one provider (the simple case), or endpoints with keys, model groups
/// and fallbacks.
///
/// ```
/// use infermux::resilience::ResilienceConfig;
/// use infermux::openai_compat::OpenAiCompat;
/// use infermux::{Client, EndpointConfig};
/// use std::time::Duration;
/// let provider = OpenAiCompat::new(EndpointConfig::new("local", "http://127.0.0.1:8080/v1").unwrap()).unwrap();
/// let client = Client::builder()
///     .provider(provider)
///     .resilience(ResilienceConfig::standard())
///     .timeout(Duration::from_secs(30))
///     .build()
///     .unwrap();
/// assert_eq!(client.endpoint().as_str(), "local");
/// ```
///
/// Two endpoints, two keys on one of them, a group routing over both and a fallback:
///
/// ```
/// use infermux::openai_compat::OpenAiCompat;
/// use infermux::{ApiKey, Client, Deployment, EndpointConfig, ErrorKind, ModelGroup, NamedKey, Strategy};
/// let a = OpenAiCompat::new(EndpointConfig::new("a", "http://127.0.0.1:8080/v1").unwrap()).unwrap();
/// let b = OpenAiCompat::new(EndpointConfig::new("b", "http://127.0.0.1:8081/v1").unwrap()).unwrap();
/// let client = Client::builder()
///     .endpoint(a)
///     .key("a", NamedKey::new("k1", ApiKey::new("sk-1")))
///     .key("a", NamedKey::new("k2", ApiKey::new("sk-2")))
///     .endpoint(b)
///     .group(ModelGroup::new("chat").strategy(Strategy::LeastInFlight).deployment(Deployment::new("a", "small")))
///     .group(ModelGroup::new("backup").deployment(Deployment::new("b", "small")))
///     .fallback("chat", ["backup"], [ErrorKind::Unavailable, ErrorKind::RateLimited])
///     .build()
///     .unwrap();
/// assert_eq!(client.groups(), vec!["chat", "backup"]);
/// ```
#[derive(Default)]
pub struct ClientBuilder {
    provider: Option<Arc<dyn Provider>>,
    resilience: Option<ResilienceConfig>,
    timeout: Option<Duration>,
    endpoints: Vec<EndpointEntry>,
    groups: Vec<ModelGroup>,
    fallbacks: Vec<(String, Vec<String>, Vec<ErrorKind>)>,
    errors: Vec<Error>,
    priority: Priority,
    #[cfg(feature = "redis")]
    shared: Option<infermux_multiplex::SharedState>,
    cache: Option<infermux_cache::CacheConfig>,
    semantic: Option<SemanticCache>,
    #[cfg(feature = "redis")]
    cache_redis: Option<infermux_cache::RedisStore>,
    batching: Option<infermux_batching::BatchConfig>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("provider", &self.provider)
            .field("endpoints", &self.endpoints.len())
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The provider endpoint to call (the single-endpoint client).
    pub fn provider(mut self, provider: impl Provider + 'static) -> Self {
        self.provider = Some(Arc::new(provider));
        self
    }
    /// The provider endpoint to call, already shared.
    pub fn shared_provider(mut self, provider: Arc<dyn Provider>) -> Self {
        self.provider = Some(provider);
        self
    }
    /// Adds an endpoint of a pool, named by its [`Provider::endpoint`].
    pub fn endpoint(self, provider: impl Provider + 'static) -> Self {
        self.shared_endpoint(Arc::new(provider))
    }
    /// Adds an endpoint of a pool, already shared.
    pub fn shared_endpoint(mut self, provider: Arc<dyn Provider>) -> Self {
        self.endpoints.push(EndpointEntry {
            provider,
            keys: Vec::new(),
            permits: None,
        });
        self
    }
    /// Requests in flight at once on the endpoint named `endpoint` (added before); default
    /// the resilience config's queue permits.
    pub fn max_concurrency(mut self, endpoint: &str, permits: usize) -> Self {
        match self
            .endpoints
            .iter_mut()
            .find(|e| e.provider.endpoint().as_str() == endpoint)
        {
            Some(e) => e.permits = Some(permits),
            None => self.errors.push(Error::new(
                ErrorKind::Config,
                format!("max_concurrency names an unknown endpoint `{endpoint}`"),
            )),
        }
        self
    }
    /// Holds every group's cooldowns, key removals and limits in Redis together with the
    /// other processes bound to the same state (feature `redis`; see
    /// [`SharedState`](infermux_multiplex::SharedState)): every group's pool is bound under
    /// the one name [`SHARED_KEYS`], so a key several groups send is held once there, as it is
    /// in the process. Shared state names a key by its alias (an endpoint's own key by `@` and
    /// the endpoint's name): an alias on keys of two endpoints, or one starting with `@`, is
    /// then a `Config` error when the client is built. (Until 2026-12-04 each group was bound
    /// under its own name: processes of both versions on one Redis hold their keys apart
    /// while they run side by side.)
    #[cfg(feature = "redis")]
    pub fn shared_state(mut self, state: infermux_multiplex::SharedState) -> Self {
        self.shared = Some(state);
        self
    }
    /// The priority of calls made without a context (`chat`, `embed`, …). Default normal.
    pub fn default_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
    /// Adds a key to the endpoint named `endpoint` (added before); each key is a pool member
    /// of its own, cooled, removed and limited on its own.
    pub fn key(mut self, endpoint: &str, key: NamedKey) -> Self {
        match self
            .endpoints
            .iter_mut()
            .find(|e| e.provider.endpoint().as_str() == endpoint)
        {
            Some(e) => e.keys.push(key),
            None => self.errors.push(Error::new(
                ErrorKind::Config,
                format!("key `{}` names an unknown endpoint `{endpoint}`", key.alias),
            )),
        }
        self
    }
    /// Adds a key read by `key` (e.g. [`NamedKey::from_env`]): its error, if any, is returned
    /// by [`ClientBuilder::build`].
    pub fn try_key(mut self, endpoint: &str, key: Result<NamedKey>) -> Self {
        match key {
            Ok(k) => self.key(endpoint, k),
            Err(e) => {
                self.errors.push(e);
                self
            }
        }
    }
    /// Adds a model group.
    pub fn group(mut self, group: ModelGroup) -> Self {
        self.groups.push(group);
        self
    }
    /// Falls back from group `from` to the groups `to`, in order, when a call fails with one
    /// of the kinds `on` (e.g. [`ErrorKind::ContextLength`], [`ErrorKind::ContentFilter`],
    /// [`ErrorKind::Unavailable`]). Never after stream content reached the caller.
    pub fn fallback<'a>(
        mut self,
        from: &str,
        to: impl IntoIterator<Item = &'a str>,
        on: impl IntoIterator<Item = ErrorKind>,
    ) -> Self {
        self.fallbacks.push((
            from.to_owned(),
            to.into_iter().map(str::to_owned).collect(),
            on.into_iter().collect(),
        ));
        self
    }
    /// The resilience configuration (each endpoint's queue and breaker, the retry policy and
    /// call deadline). Default [`ResilienceConfig::standard`].
    pub fn resilience(mut self, config: ResilienceConfig) -> Self {
        self.resilience = Some(config);
        self
    }
    /// The default deadline of a call over all its attempts, unless its context sets one.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Answers repeated requests from a cache (the exact tier): a request whose canonical form
    /// (model group, model, parameters, system prompt, tools, the whole conversation, tenant)
    /// was answered before gets the stored answer, marked on the response
    /// ([`Response::cache_hit`]); only complete, successful answers are stored; a streamed
    /// request is answered by replaying the stored events in order.
    ///
    /// ```
    /// use infermux::cache::CacheConfig;
    /// use infermux::openai_compat::OpenAiCompat;
    /// use infermux::{Client, EndpointConfig};
    /// use std::time::Duration;
    /// let provider = OpenAiCompat::new(EndpointConfig::new("local", "http://127.0.0.1:8080/v1").unwrap()).unwrap();
    /// let client = Client::builder()
    ///     .provider(provider)
    ///     .cache(CacheConfig::new(Duration::from_secs(600), 10_000).unwrap())
    ///     .build()
    ///     .unwrap();
    /// assert!(client.cache().is_some());
    /// ```
    pub fn cache(mut self, config: infermux_cache::CacheConfig) -> Self {
        self.cache = Some(config);
        self
    }

    /// Adds the semantic tier to the cache (and turns the cache on with its defaults when
    /// [`cache`](Self::cache) was not called): a request whose last user turn means the same as
    /// a cached one's — by embedding similarity, then the verifier — in the same namespace
    /// (everything else equal) gets that answer, with the similarity and the verifier's score
    /// on the response. See [`SemanticCache`].
    pub fn semantic_cache(mut self, semantic: SemanticCache) -> Self {
        self.semantic = Some(semantic);
        self
    }

    /// Stores cached answers in Redis as well, so several processes share them and they
    /// survive a restart (feature `redis`).
    #[cfg(feature = "redis")]
    pub fn cache_redis(mut self, store: infermux_cache::RedisStore) -> Self {
        self.cache_redis = Some(store);
        self
    }

    /// Batches concurrent embedding calls on the client side: inputs of calls with the same
    /// model and parameters that arrive within `config`'s wait go out as one request (up to its
    /// item and token limits), and each caller gets its own vectors. The batcher's task starts
    /// at the first embedding call, on that call's tokio runtime.
    ///
    /// ```
    /// # fn main() {
    /// use infermux::batching::BatchConfig;
    /// use infermux::openai_compat::OpenAiCompat;
    /// use infermux::{Client, EndpointConfig};
    /// let provider = OpenAiCompat::new(EndpointConfig::new("local", "http://127.0.0.1:8080/v1").unwrap()).unwrap();
    /// let client = Client::builder()
    ///     .provider(provider)
    ///     .batch_embeddings(BatchConfig::llama_cpp_embeddings())
    ///     .build()
    ///     .unwrap();
    /// assert!(client.batch_stats().is_some());
    /// # }
    /// ```
    pub fn batch_embeddings(mut self, config: infermux_batching::BatchConfig) -> Self {
        self.batching = Some(config);
        self
    }

    /// The client; fails with [`ErrorKind::Config`] without a provider or endpoint, with a
    /// resilience config that does not validate (zero permits, a threshold outside (0, 100],
    /// …), with a key that could not be read, or with groups and fallbacks naming what does
    /// not exist.
    pub fn build(mut self) -> Result<Client> {
        let extras = crate::extras::ExtrasSpec {
            cache: self.cache.take(),
            semantic: self.semantic.take(),
            #[cfg(feature = "redis")]
            redis: self.cache_redis.take(),
            batching: self.batching.take(),
        };
        let mut client = self.build_stack()?;
        client.extras = Arc::new(extras.build(&client.inner)?);
        Ok(client)
    }

    fn build_stack(mut self) -> Result<Client> {
        if let Some(e) = self.errors.drain(..).next() {
            return Err(e);
        }
        let mut config = self.resilience.take().unwrap_or_default();
        if let Some(t) = self.timeout {
            config = config.with_timeout(Some(t));
        }
        if self.endpoints.is_empty() && self.groups.is_empty() {
            let provider = self
                .provider
                .ok_or_else(|| Error::new(ErrorKind::Config, "a client needs a provider"))?;
            return Ok(Client {
                inner: Arc::new(Inner::Single(Resilient::new(provider, config)?)),
                priority: self.priority,
                extras: Arc::default(),
            });
        }
        if let Some(p) = self.provider.take() {
            self.endpoints.insert(
                0,
                EndpointEntry {
                    provider: p,
                    keys: Vec::new(),
                    permits: None,
                },
            );
        }
        #[cfg(feature = "redis")]
        let shared = self.shared.take();
        #[cfg(not(feature = "redis"))]
        let shared = None;
        let mut client = build_router(self.endpoints, self.groups, self.fallbacks, config, shared)?;
        client.priority = self.priority;
        Ok(client)
    }
}

/// The weight of each key of each deployment of `g`: a deployment's `weight` is its share of
/// the group, split among its keys (each key of a deployment with three keys weighs a third
/// of it), so a deployment's share does not grow with its number of keys. Exact for up to 16
/// keys a deployment (720720 = lcm(1..=16)), rounded past that.
fn member_weights(
    g: &ModelGroup,
    index: &HashMap<String, usize>,
    endpoints: &[EndpointEntry],
) -> Vec<u32> {
    const SPLIT: u64 = 720_720;
    let raw: Vec<u64> = g
        .deployments
        .iter()
        .map(|d| {
            let keys = index
                .get(&d.endpoint)
                .map_or(1, |&ei| endpoints[ei].keys.len().max(1)) as u64;
            // a weight of 0 stays 0: the pool refuses it
            if d.weight == 0 {
                0
            } else {
                (u64::from(d.weight) * SPLIT / keys).max(1)
            }
        })
        .collect();
    let gcd = raw.iter().fold(0u64, |a, &b| {
        let (mut a, mut b) = (a, b);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    });
    let max = raw.iter().copied().max().unwrap_or(1) / gcd.max(1);
    let scale = max.div_ceil(u64::from(u32::MAX)).max(1);
    raw.iter()
        .map(|&w| match w {
            0 => 0,
            w => u32::try_from((w / gcd.max(1) / scale).max(1)).unwrap_or(u32::MAX),
        })
        .collect()
}

/// The name every group's pool is bound under in shared state
/// (`ClientBuilder::shared_state`, feature `redis`): one name, so a key several groups send is held once.
pub const SHARED_KEYS: &str = "keys";

fn config_error(msg: String) -> Error {
    Error::new(ErrorKind::Config, msg)
}

/// Redis-held pool state when the feature is on; nothing otherwise.
#[cfg(feature = "redis")]
type Shared = infermux_multiplex::SharedState;
#[cfg(not(feature = "redis"))]
type Shared = std::convert::Infallible;

fn build_router(
    endpoints: Vec<EndpointEntry>,
    mut groups: Vec<ModelGroup>,
    fallbacks: Vec<(String, Vec<String>, Vec<ErrorKind>)>,
    config: ResilienceConfig,
    shared: Option<Shared>,
) -> Result<Client> {
    let config = config.validate()?;
    let mut execs = Vec::with_capacity(endpoints.len());
    let mut index = HashMap::new();
    for (i, e) in endpoints.iter().enumerate() {
        let id = e.provider.endpoint().clone();
        if index.insert(id.as_str().to_owned(), i).is_some() {
            return Err(config_error(format!("two endpoints are named `{id}`")));
        }
        let queue = match e.permits {
            Some(n) => config.queue.clone().with_permits(n),
            None => config.queue.clone(),
        };
        let exec = AttemptExecutor::new(e.provider.clone(), queue, config.breaker.clone())?;
        execs.push((id, Arc::new(exec)));
    }
    // without groups, one implicit group over every endpoint takes every request, whatever
    // its model; with groups, a model that names none is an error, never a silent default
    let implicit = groups.is_empty();
    if implicit {
        let mut g = ModelGroup::new("default");
        for e in &endpoints {
            g = g.deployment(Deployment::any_model(e.provider.endpoint().as_str()));
        }
        groups.push(g);
    }
    let all: Vec<Arc<AttemptExecutor>> = execs.iter().map(|(_, e)| e.clone()).collect();
    // a key several groups send is one key: its cooldowns, removals and limits hold in all
    let registry = KeyRegistry::new();
    #[cfg(feature = "redis")]
    if shared.is_some() {
        let mut alias_endpoint: HashMap<&str, &str> = HashMap::new();
        for e in &endpoints {
            let id = e.provider.endpoint().as_str();
            for k in &e.keys {
                if k.alias.starts_with('@') {
                    return Err(config_error(format!(
                        "key alias `{}` starts with `@`, which names an endpoint's own key in \
                         shared state",
                        k.alias
                    )));
                }
                if let Some(other) = alias_endpoint.insert(&k.alias, id)
                    && other != id
                {
                    return Err(config_error(format!(
                        "key alias `{}` names keys of endpoints `{other}` and `{id}`: shared \
                         state names a key by its alias, give them distinct aliases",
                        k.alias
                    )));
                }
            }
        }
    }
    let mut built = Vec::with_capacity(groups.len());
    let mut by_name = HashMap::new();
    for (gi, g) in groups.into_iter().enumerate() {
        if g.deployments.is_empty() {
            return Err(config_error(format!(
                "group `{}` has no deployments",
                g.name
            )));
        }
        let name: Arc<str> = Arc::from(g.name.as_str());
        if by_name.insert(name.clone(), gi).is_some() {
            return Err(config_error(format!("two groups are named `{}`", g.name)));
        }
        let mut members = Vec::new();
        let mut deployments = Vec::new();
        let mut member_endpoints = Vec::new();
        let weights = member_weights(&g, &index, &endpoints);
        for (d, &weight) in g.deployments.iter().zip(&weights) {
            let &ei = index.get(&d.endpoint).ok_or_else(|| {
                config_error(format!(
                    "group `{}` names an unknown endpoint `{}`",
                    g.name, d.endpoint
                ))
            })?;
            let dname: Arc<str> = Arc::from(d.name.as_deref().unwrap_or(d.endpoint.as_str()));
            let base = || {
                let m = MemberSpec::new(ei).with_weight(weight);
                match &d.model {
                    Some(model) => m.with_model(model),
                    None => m,
                }
            };
            let keys = &endpoints[ei].keys;
            if keys.is_empty() {
                members.push(base());
                deployments.push(dname.clone());
                member_endpoints.push(ei);
            }
            for k in keys {
                let mut m = base().with_key(&k.alias, k.key.clone());
                if let Some(r) = k.rpm {
                    m = m.with_rpm(r);
                }
                if let Some(t) = k.tpm {
                    m = m.with_tpm(t);
                }
                members.push(m);
                deployments.push(dname.clone());
                member_endpoints.push(ei);
            }
        }
        let pool_config = g
            .config
            .clone()
            // requests wait in the group's pool, not in an endpoint's queue: the pool takes
            // the resilience queue's bound (`[defaults.queue] max_queued`)
            .unwrap_or_else(|| {
                PoolConfig::new(g.strategy).with_max_queued(config.queue.max_queued)
            });
        let pool = MultiPool::with_registry(all.clone(), members, pool_config, &registry)?;
        let pool = match &shared {
            #[cfg(feature = "redis")]
            Some(state) => pool.with_shared(state.clone(), SHARED_KEYS)?,
            #[cfg(not(feature = "redis"))]
            Some(never) => match *never {},
            None => pool,
        };
        built.push(Group {
            name,
            pool,
            deployments,
            member_endpoints,
        });
    }
    let mut chains: Vec<Option<Chain>> = vec![None; built.len()];
    for (from, to, on) in fallbacks {
        let &fi = by_name.get(from.as_str()).ok_or_else(|| {
            config_error(format!("a fallback starts at an unknown group `{from}`"))
        })?;
        let mut ids = Vec::with_capacity(to.len());
        for t in &to {
            let &ti = by_name.get(t.as_str()).ok_or_else(|| {
                config_error(format!(
                    "the fallback of `{from}` names an unknown group `{t}`"
                ))
            })?;
            if ti == fi || ids.contains(&ti) {
                return Err(config_error(format!(
                    "the fallback of `{from}` visits `{t}` twice"
                )));
            }
            ids.push(ti);
        }
        if on.is_empty() {
            return Err(config_error(format!(
                "the fallback of `{from}` names no error kind to fall back on"
            )));
        }
        chains[fi] = Some(Chain { to: ids, on });
    }
    let default = implicit.then_some(0);
    // a 429, 401 or exhausted quota is one key's: the next attempt goes at once to another
    // key (the pool cools or removes this one, and waits when no key is left)
    let members: usize = built.iter().map(|g| g.deployments.len()).sum();
    let tries = u32::try_from(members.clamp(1, 15)).unwrap_or(15) + 1;
    // an operation run on every endpoint with one fixed key (`run_op_each`) cannot move to
    // another key: its policy is the plain one (a 429 waits for its Retry-After, a 401 stops)
    let fixed_key = CallPolicy::new(config.retry.clone(), config.timeout);
    let retry = Arc::new(KeyRetry::new(config.retry, tries));
    let router = Router {
        endpoints: execs,
        groups: built,
        by_name,
        default,
        chains,
        policy: CallPolicy::new(retry, config.timeout),
        fixed_key,
    };
    Ok(Client {
        inner: Arc::new(Inner::Routed(router)),
        priority: Priority::Normal,
        extras: Arc::default(),
    })
}

#[derive(Debug)]
pub(crate) enum Inner {
    Single(Resilient),
    Routed(Router),
}

impl Inner {
    /// One call through the stack (no cache, no batching).
    pub(crate) async fn call(&self, request: &Request, ctx: RequestContext) -> Result<Response> {
        match self {
            // the stack's own future, not the `Provider` trait's boxed one
            Inner::Single(r) => r.execute(request, &ctx).await,
            Inner::Routed(r) => r.call(request, ctx).await,
        }
    }

    /// One batch of several callers' items through the stack: routed, an error that may be
    /// one item's falls back no further (the batcher splits the batch instead).
    pub(crate) async fn call_batch(
        &self,
        request: &Request,
        ctx: RequestContext,
    ) -> Result<Response> {
        match self {
            Inner::Single(r) => r.execute(request, &ctx).await,
            Inner::Routed(r) => r.call_batch(request, ctx).await,
        }
    }

    /// One streamed call through the stack, with who serves it.
    async fn stream(
        &self,
        request: &Request,
        ctx: RequestContext,
    ) -> Result<(EventStream, Option<Served>)> {
        match self {
            Inner::Single(r) => r.execute_stream(request, &ctx).await.map(|s| (s, None)),
            Inner::Routed(r) => r.stream(request, ctx).await.map(|(s, v)| (s, Some(v))),
        }
    }

    /// `ctx` with the client's call deadline fixed now, when it has none of its own: a call
    /// that also embeds (the semantic cache's lookup), waits for a batch or stores an answer
    /// spends one deadline over all of it, not a fresh one in each part.
    fn with_deadline(&self, ctx: RequestContext) -> RequestContext {
        match self {
            Inner::Single(r) => match (ctx.deadline(), r.policy().timeout()) {
                (None, Some(t)) => ctx.with_timeout(t),
                _ => ctx,
            },
            Inner::Routed(r) => r.call_context(ctx),
        }
    }

    /// The cache namespace of a request: its model group (routed), or the endpoint.
    fn namespace(&self, request: &Request, ctx: &RequestContext) -> Option<&str> {
        match self {
            Inner::Single(r) => Some(r.endpoint().as_str()),
            Inner::Routed(r) => r.resolve(request, ctx).ok().map(|g| &*r.groups[g].name),
        }
    }
}

/// The infermux client. Cheap to clone; clones share the stack, its counters and its cache.
///
/// One endpoint with the standard resilience stack ([`Client::new`]), or endpoints, keys and
/// model groups with a cache and batching ([`Client::builder`], or `infermux.toml` through
/// [`Client::from_path`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> infermux::Result<()> {
/// # let sim = infermux_testkit::Simulator::start(infermux_testkit::FaultPlan::none()).await.unwrap();
/// # let base = format!("{}/v1", sim.url()); // a local server: "http://127.0.0.1:8080/v1"
/// use infermux::openai_compat::OpenAiCompat;
/// use infermux::{ChatRequest, Client, EndpointConfig, Message};
///
/// let client = Client::new(OpenAiCompat::new(EndpointConfig::new("local", base)?)?);
/// let answer = client.chat(ChatRequest::new("smollm2", vec![Message::user("Hi!")])).await?;
/// assert!(!answer.text().is_empty());
/// assert_eq!(client.counters().successes, 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
    priority: Priority,
    extras: Arc<Extras>,
}

/// A streamed answer as [`Client::open_stream`] gives it: the events, who serves them, and
/// whether they are a replay from the cache.
#[non_exhaustive]
pub struct OpenedStream {
    /// The events, from the first on.
    pub events: EventStream,
    /// Who serves the stream (a routed client's live answer; `None` for a single endpoint or a
    /// cache replay).
    pub served: Option<Served>,
    /// Set when the events are a replay of a cached answer.
    pub cache: Option<infermux_core::CacheHit>,
}

impl fmt::Debug for OpenedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedStream")
            .field("served", &self.served)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

// The answer of each typed call in a `Response`, or the error for another operation's answer.
fn chat_answer(response: Response) -> Result<ChatResponse> {
    match response {
        Response::Chat(c) => Ok(c),
        _ => Err(unexpected("chat")),
    }
}
pub(crate) fn embeddings_answer(response: Response) -> Result<EmbeddingResponse> {
    match response {
        Response::Embeddings(e) => Ok(e),
        _ => Err(unexpected("embeddings")),
    }
}
fn completion_answer(response: Response) -> Result<CompletionResponse> {
    match response {
        Response::Completion(c) => Ok(c),
        _ => Err(unexpected("completion")),
    }
}
fn rerank_answer(response: Response) -> Result<RerankResponse> {
    match response {
        Response::Rerank(r) => Ok(r),
        _ => Err(unexpected("rerank")),
    }
}
fn models_answer(response: Response) -> Result<ModelList> {
    match response {
        Response::Models(m) => Ok(m),
        _ => Err(unexpected("models")),
    }
}

fn unexpected(op: &str) -> Error {
    let a = if op.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    Error::new(
        ErrorKind::Decode,
        format!("the provider answered {a} {op} request with another operation"),
    )
}

impl Client {
    /// A client over `provider` with the standard resilience stack.
    pub fn new(provider: impl Provider + 'static) -> Self {
        Client {
            inner: Arc::new(Inner::Single(Resilient::standard(Arc::new(provider)))),
            priority: Priority::Normal,
            extras: Arc::default(),
        }
    }

    /// A fresh context for a call made without one: the client's default priority.
    fn context(&self) -> RequestContext {
        RequestContext::new().with_priority(self.priority)
    }

    /// A builder.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The endpoint this client calls (a routed client: its first endpoint).
    pub fn endpoint(&self) -> &EndpointId {
        match &*self.inner {
            Inner::Single(r) => r.endpoint(),
            Inner::Routed(r) => &r.endpoints[0].0,
        }
    }

    /// The provider's name (a routed client: its first endpoint's).
    pub fn provider_name(&self) -> &'static str {
        match &*self.inner {
            Inner::Single(r) => r.name(),
            Inner::Routed(r) => r.endpoints[0].1.provider().name(),
        }
    }

    /// What the (first) endpoint offers.
    pub fn capabilities(&self) -> Capabilities {
        match &*self.inner {
            Inner::Single(r) => r.capabilities(),
            Inner::Routed(r) => r.endpoints[0].1.provider().capabilities(),
        }
    }

    /// The resilience stack of a single-endpoint client (`None` for a routed one).
    pub fn stack(&self) -> Option<&Resilient> {
        match &*self.inner {
            Inner::Single(r) => Some(r),
            Inner::Routed(_) => None,
        }
    }

    /// The model groups of a routed client, in order (empty for a single endpoint).
    pub fn groups(&self) -> Vec<&str> {
        match &*self.inner {
            Inner::Single(_) => Vec::new(),
            Inner::Routed(r) => r.groups.iter().map(|g| &*g.name).collect(),
        }
    }

    /// The pool of group `name`, for its member status and counters.
    pub fn pool(&self, name: &str) -> Option<&MultiPool> {
        match &*self.inner {
            Inner::Single(_) => None,
            Inner::Routed(r) => r.by_name.get(name).map(|&g| &r.groups[g].pool),
        }
    }

    /// A snapshot of the endpoint's counters (a routed client: the sum over its endpoints).
    pub fn counters(&self) -> CounterSnapshot {
        match &*self.inner {
            Inner::Single(r) => r.counters().snapshot(),
            Inner::Routed(r) => {
                let mut it = r.endpoints.iter().map(|(_, e)| e.counters().snapshot());
                let first = it.next().unwrap_or_default();
                it.fold(first, |acc, s| acc.merged(&s))
            }
        }
    }

    /// Each endpoint's counters.
    pub fn endpoint_counters(&self) -> Vec<(EndpointId, CounterSnapshot)> {
        match &*self.inner {
            Inner::Single(r) => vec![(r.endpoint().clone(), r.counters().snapshot())],
            Inner::Routed(r) => r
                .endpoints
                .iter()
                .map(|(id, e)| (id.clone(), e.counters().snapshot()))
                .collect(),
        }
    }

    /// Every endpoint's counters, and every pool's members, in the Prometheus text format
    /// (a fixed layout: every scrape has the same series), with the cache's and the embedding
    /// batcher's counters when they are on. Keys appear by alias only.
    pub fn prometheus(&self) -> String {
        let mut out = match &*self.inner {
            Inner::Single(_) => render_prometheus(&self.endpoint_counters()),
            Inner::Routed(r) => r.prometheus(),
        };
        if let Some(c) = &self.extras.cache {
            c.render_prometheus("default", &mut out);
        }
        if let Some(b) = &self.extras.batcher {
            b.stats().render_prometheus("embeddings", &mut out);
        }
        out
    }

    /// One call of any operation: from the cache when it holds the answer, through the
    /// embedding batcher for embeddings when batching is on, else through the stack.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> infermux::Result<()> {
    /// # let sim = infermux_testkit::Simulator::start(infermux_testkit::FaultPlan::none()).await.unwrap();
    /// # let base = format!("{}/v1", sim.url()); // a local server: "http://127.0.0.1:8080/v1"
    /// use infermux::openai_compat::OpenAiCompat;
    /// use infermux::{Client, EndpointConfig, ChatRequest, Message, Request, RequestContext, Response};
    /// let client = Client::new(OpenAiCompat::new(EndpointConfig::new("local", base)?)?);
    /// let request = Request::Chat(ChatRequest::new("smollm2", vec![Message::user("Hi!")]));
    /// match client.call(&request, RequestContext::new()).await? {
    ///     Response::Chat(answer) => assert!(!answer.text().is_empty()),
    ///     other => panic!("{:?}", other.operation()),
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// A plain function returning one `async` block, not an `async fn`: the block owns `ctx`
    /// once (an `async fn` keeps a second copy of an argument it is given by value), and
    /// nothing runs before the first poll.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn keeps a second copy of the context it is given"
    )]
    pub fn call<'s>(
        &'s self,
        request: &'s Request,
        ctx: RequestContext,
    ) -> impl Future<Output = Result<Response>> + 's {
        async move { self.call_boxed(request, ctx).await.map(|r| *r) }
    }

    /// [`call`](Self::call) with the answer boxed as it came up the stack (the typed calls
    /// take their part out of the box: one move, not one per layer).
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn keeps a second copy of the context it is given"
    )]
    fn call_boxed<'s>(
        &'s self,
        request: &'s Request,
        ctx: RequestContext,
    ) -> impl Future<Output = Result<Box<Response>>> + 's {
        async move {
            if self.extras.is_empty() {
                // the plain path keeps its small, shallow future: no cache or batcher state
                // inside it, and no extra async layer (callers' async fns inherit the
                // nesting, and rustc limits its depth)
                return match &*self.inner {
                    // the stack's own future, not the `Provider` trait's boxed one
                    Inner::Single(r) => r.execute_boxed(request, &ctx).await,
                    Inner::Routed(r) => r.call_boxed(request, ctx).await,
                };
            }
            // type-erased: the cache's future nests the batcher's and the stack's, and a
            // caller's own async fns would otherwise inherit that depth (rustc's query depth
            // limit)
            let fut: BoxFuture<'_, Result<Response>> = Box::pin(self.call_extras(request, ctx));
            fut.await.map(Box::new)
        }
    }

    async fn call_extras(&self, request: &Request, ctx: RequestContext) -> Result<Response> {
        let cached = self
            .extras
            .cache
            .as_ref()
            .and_then(|c| Some((c, self.inner.namespace(request, &ctx)?)));
        // one deadline for the lookup, the batch and the call
        let ctx = self.inner.with_deadline(ctx);
        let Some((cache, ns)) = cached else {
            return self.extras.uncached(&self.inner, request, ctx).await;
        };
        let ctx2 = ctx.clone();
        cache
            .call(request, &ctx, ns, || {
                self.extras.uncached(&self.inner, request, ctx2)
            })
            .await
    }

    /// One streamed call; resolves at the first event.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> infermux::Result<()> {
    /// # let sim = infermux_testkit::Simulator::start(infermux_testkit::FaultPlan::none()).await.unwrap();
    /// # let base = format!("{}/v1", sim.url()); // a local server: "http://127.0.0.1:8080/v1"
    /// use infermux::openai_compat::OpenAiCompat;
    /// use infermux::{Client, EndpointConfig, ChatRequest, Message, Request, RequestContext, StreamAccumulator};
    /// let client = Client::new(OpenAiCompat::new(EndpointConfig::new("local", base)?)?);
    /// let request = Request::Chat(ChatRequest::new("smollm2", vec![Message::user("Hi!")]));
    /// let events = client.stream(&request, RequestContext::new()).await?;
    /// let answer = StreamAccumulator::collect(events).await?; // or read them one by one
    /// assert!(!answer.text().is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn stream(&self, request: &Request, ctx: RequestContext) -> Result<EventStream> {
        self.open_stream(request, ctx).await.map(|s| s.events)
    }

    /// One streamed call, with who serves it (a single-endpoint client or a cache replay:
    /// `None`).
    pub async fn stream_served(
        &self,
        request: &Request,
        ctx: RequestContext,
    ) -> Result<(EventStream, Option<Served>)> {
        self.open_stream(request, ctx)
            .await
            .map(|s| (s.events, s.served))
    }

    /// One streamed call with everything known about it when it opens: the events, who serves
    /// them, and whether they replay a cached answer.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> infermux::Result<()> {
    /// # let sim = infermux_testkit::Simulator::start(infermux_testkit::FaultPlan::none()).await.unwrap();
    /// # let base = format!("{}/v1", sim.url()); // a local server: "http://127.0.0.1:8080/v1"
    /// use infermux::openai_compat::OpenAiCompat;
    /// use infermux::{Client, EndpointConfig, ChatRequest, Message, Request, RequestContext, StreamAccumulator};
    /// let client = Client::new(OpenAiCompat::new(EndpointConfig::new("local", base)?)?);
    /// let request = Request::Chat(ChatRequest::new("smollm2", vec![Message::user("Hi!")]));
    /// let opened = client.open_stream(&request, RequestContext::new()).await?;
    /// assert!(opened.served.is_none() && opened.cache.is_none()); // one endpoint, no cache
    /// let answer = StreamAccumulator::collect(opened.events).await?;
    /// assert!(!answer.text().is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn open_stream(
        &self,
        request: &Request,
        ctx: RequestContext,
    ) -> Result<OpenedStream> {
        let cached = self
            .extras
            .cache
            .as_ref()
            .and_then(|c| Some((c, self.inner.namespace(request, &ctx)?)));
        let Some((cache, ns)) = cached else {
            let (events, served) = match &*self.inner {
                Inner::Single(r) => (r.execute_stream(request, &ctx).await?, None),
                Inner::Routed(r) => {
                    let (s, v) = r.stream(request, ctx).await?;
                    (s, Some(v))
                }
            };
            return Ok(OpenedStream {
                events,
                served,
                cache: None,
            });
        };
        let fut: BoxFuture<'_, Result<OpenedStream>> = Box::pin(async move {
            let mut served = None;
            // one deadline for the lookup and the call
            let ctx = self.inner.with_deadline(ctx);
            let ctx2 = ctx.clone();
            let answer = cache
                .stream_storing(request, &ctx, ns, || async {
                    let (events, who) = self.inner.stream(request, ctx2).await?;
                    // a fallback group's answer is not this group's to cache
                    let store = who.as_ref().is_none_or(|s| s.fallback.is_none());
                    served = who;
                    Ok((events, store))
                })
                .await?;
            Ok(OpenedStream {
                events: answer.events,
                served,
                cache: answer.hit,
            })
        });
        fut.await
    }

    /// The cache, when the client was built with one: its counters
    /// ([`snapshot`](infermux_cache::Cache::snapshot)) and Prometheus text.
    pub fn cache(&self) -> Option<&infermux_cache::Cache> {
        self.extras.cache.as_deref()
    }

    /// The embedding batcher's counters (batches, items, sizes, flush reasons), when batching
    /// is on.
    pub fn batch_stats(&self) -> Option<infermux_batching::BatchStats> {
        self.extras.batcher.as_ref().map(|b| b.stats())
    }

    /// A chat answer.
    ///
    /// Its context (a new request id, the client's priority) is made at the first poll, as
    /// for every typed call below.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> infermux::Result<()> {
    /// # let sim = infermux_testkit::Simulator::start(infermux_testkit::FaultPlan::none()).await.unwrap();
    /// # let base = format!("{}/v1", sim.url()); // a local server: "http://127.0.0.1:8080/v1"
    /// use infermux::openai_compat::OpenAiCompat;
    /// use infermux::{Client, EndpointConfig, ChatRequest, Message};
    /// let client = Client::new(OpenAiCompat::new(EndpointConfig::new("local", base)?)?);
    /// let answer = client
    ///     .chat(ChatRequest::new("smollm2", vec![Message::user("Hi!")]))
    ///     .await?;
    /// println!("{} ({:?})", answer.text(), answer.usage);
    /// # Ok(()) }
    /// ```
    pub fn chat(&self, request: ChatRequest) -> impl Future<Output = Result<ChatResponse>> + '_ {
        self.typed(Request::Chat(request), None, chat_answer)
    }

    /// A chat answer with a given context (priority, deadline, tenant, request id).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> infermux::Result<()> {
    /// # let sim = infermux_testkit::Simulator::start(infermux_testkit::FaultPlan::none()).await.unwrap();
    /// # let base = format!("{}/v1", sim.url()); // a local server: "http://127.0.0.1:8080/v1"
    /// use infermux::openai_compat::OpenAiCompat;
    /// use infermux::{Client, EndpointConfig, ChatRequest, Message, Priority, RequestContext};
    /// let client = Client::new(OpenAiCompat::new(EndpointConfig::new("local", base)?)?);
    /// let ctx = RequestContext::new()
    ///     .with_priority(Priority::High)
    ///     .with_timeout(std::time::Duration::from_secs(30));
    /// let id = ctx.request_id();
    /// let answer = client
    ///     .chat_with(ChatRequest::new("smollm2", vec![Message::user("Hi!")]), ctx)
    ///     .await?;
    /// assert!(!answer.text().is_empty());
    /// println!("request {id}");
    /// # Ok(()) }
    /// ```
    pub fn chat_with(
        &self,
        request: ChatRequest,
        ctx: RequestContext,
    ) -> impl Future<Output = Result<ChatResponse>> + '_ {
        self.typed(Request::Chat(request), Some(ctx), chat_answer)
    }

    /// One typed call: `request` through [`call`](Self::call) with `ctx` (or a new context at
    /// the first poll), its answer taken out by `answer`. A plain function returning one
    /// `async` block that owns the request once (nested `async fn`s each kept a copy).
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn keeps a second copy of the request it is given"
    )]
    fn typed<'s, T: 's>(
        &'s self,
        request: Request,
        ctx: Option<RequestContext>,
        answer: fn(Response) -> Result<T>,
    ) -> impl Future<Output = Result<T>> + 's {
        async move {
            let ctx = ctx.unwrap_or_else(|| self.context());
            answer(*self.call_boxed(&request, ctx).await?)
        }
    }

    /// A streamed chat answer, resolved at its first event.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> infermux::Result<()> {
    /// # let sim = infermux_testkit::Simulator::start(infermux_testkit::FaultPlan::none()).await.unwrap();
    /// # let base = format!("{}/v1", sim.url()); // a local server: "http://127.0.0.1:8080/v1"
    /// use infermux::openai_compat::OpenAiCompat;
    /// use infermux::{Client, EndpointConfig, ChatRequest, Message};
    /// let client = Client::new(OpenAiCompat::new(EndpointConfig::new("local", base)?)?);
    /// use infermux::{StreamEvent, StreamExt};
    /// let mut events = client
    ///     .stream_chat(ChatRequest::new("smollm2", vec![Message::user("Hi!")]))
    ///     .await?;
    /// let mut text = String::new();
    /// while let Some(event) = events.next().await {
    ///     if let StreamEvent::TextDelta { text: t } = event? {
    ///         text.push_str(&t); // as it arrives
    ///     }
    /// }
    /// assert!(!text.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn stream_chat(
        &self,
        request: ChatRequest,
    ) -> impl Future<Output = Result<EventStream>> + '_ {
        self.chat_stream(request, None)
    }

    /// A streamed chat answer with a given context.
    pub fn stream_chat_with(
        &self,
        request: ChatRequest,
        ctx: RequestContext,
    ) -> impl Future<Output = Result<EventStream>> + '_ {
        self.chat_stream(request, Some(ctx))
    }

    /// [`stream_chat`](Self::stream_chat) and its `_with` form: like [`typed`](Self::typed),
    /// one `async` block owning the request once, the context made at the first poll when
    /// none is given.
    fn chat_stream(
        &self,
        request: ChatRequest,
        ctx: Option<RequestContext>,
    ) -> impl Future<Output = Result<EventStream>> + '_ {
        let request = Request::Chat(request);
        async move {
            let ctx = ctx.unwrap_or_else(|| self.context());
            self.open_stream(&request, ctx).await.map(|s| s.events)
        }
    }

    /// Embeddings, one per input.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> infermux::Result<()> {
    /// # let sim = infermux_testkit::Simulator::start(infermux_testkit::FaultPlan::none()).await.unwrap();
    /// # let base = format!("{}/v1", sim.url()); // a local server: "http://127.0.0.1:8080/v1"
    /// use infermux::openai_compat::OpenAiCompat;
    /// use infermux::{Client, EndpointConfig, EmbeddingRequest};
    /// let client = Client::new(OpenAiCompat::new(EndpointConfig::new("local", base)?)?);
    /// let e = client
    ///     .embed(EmbeddingRequest::new("all-minilm", vec!["a cat", "a dog"]))
    ///     .await?;
    /// assert_eq!(e.embeddings.len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn embed(
        &self,
        request: EmbeddingRequest,
    ) -> impl Future<Output = Result<EmbeddingResponse>> + '_ {
        self.typed(Request::Embeddings(request), None, embeddings_answer)
    }

    /// Embeddings with a given context.
    pub fn embed_with(
        &self,
        request: EmbeddingRequest,
        ctx: RequestContext,
    ) -> impl Future<Output = Result<EmbeddingResponse>> + '_ {
        self.typed(Request::Embeddings(request), Some(ctx), embeddings_answer)
    }

    /// A legacy completion.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> infermux::Result<()> {
    /// # let sim = infermux_testkit::Simulator::start(infermux_testkit::FaultPlan::none()).await.unwrap();
    /// # let base = format!("{}/v1", sim.url()); // a local server: "http://127.0.0.1:8080/v1"
    /// use infermux::openai_compat::OpenAiCompat;
    /// use infermux::{Client, EndpointConfig, CompletionRequest};
    /// let client = Client::new(OpenAiCompat::new(EndpointConfig::new("local", base)?)?);
    /// let c = client
    ///     .complete(CompletionRequest::new("smollm2", "The capital of France is"))
    ///     .await?;
    /// println!("{}", c.text);
    /// # Ok(()) }
    /// ```
    pub fn complete(
        &self,
        request: CompletionRequest,
    ) -> impl Future<Output = Result<CompletionResponse>> + '_ {
        self.typed(Request::Completion(request), None, completion_answer)
    }

    /// A legacy completion with a given context.
    pub fn complete_with(
        &self,
        request: CompletionRequest,
        ctx: RequestContext,
    ) -> impl Future<Output = Result<CompletionResponse>> + '_ {
        self.typed(Request::Completion(request), Some(ctx), completion_answer)
    }

    /// Documents ranked by relevance to a query (a provider that reranks: TEI, OVMS, …).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> infermux::Result<()> {
    /// # #[cfg(feature = "ovms")] {
    /// # let sim = infermux_testkit::Simulator::start(infermux_testkit::FaultPlan::none()).await.unwrap();
    /// # let base = sim.url(); // a local OVMS: "http://127.0.0.1:8000"
    /// use infermux::ovms::Ovms;
    /// use infermux::{Client, EndpointConfig, RerankRequest};
    /// let client = Client::new(Ovms::new(EndpointConfig::new("ovms", base)?)?);
    /// let docs = vec!["cats purr".into(), "the stock market fell".into()];
    /// let ranked = client
    ///     .rerank(RerankRequest::new("bge-reranker", "what do cats do", docs))
    ///     .await?;
    /// assert_eq!(ranked.results[0].index, 0); // the best first
    /// # }
    /// # Ok(()) }
    /// ```
    pub fn rerank(
        &self,
        request: RerankRequest,
    ) -> impl Future<Output = Result<RerankResponse>> + '_ {
        self.typed(Request::Rerank(request), None, rerank_answer)
    }

    /// A rerank with a given context.
    pub fn rerank_with(
        &self,
        request: RerankRequest,
        ctx: RequestContext,
    ) -> impl Future<Output = Result<RerankResponse>> + '_ {
        self.typed(Request::Rerank(request), Some(ctx), rerank_answer)
    }

    /// The models the endpoint offers.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> infermux::Result<()> {
    /// # let sim = infermux_testkit::Simulator::start(infermux_testkit::FaultPlan::none()).await.unwrap();
    /// # let base = format!("{}/v1", sim.url()); // a local server: "http://127.0.0.1:8080/v1"
    /// use infermux::openai_compat::OpenAiCompat;
    /// use infermux::{Client, EndpointConfig};
    /// let client = Client::new(OpenAiCompat::new(EndpointConfig::new("local", base)?)?);
    /// let list = client.models().await?;
    /// for m in &list.models {
    ///     println!("{}", m.id);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn models(&self) -> impl Future<Output = Result<ModelList>> + '_ {
        self.typed(Request::Models, None, models_answer)
    }

    /// The models, with a given context.
    pub fn models_with(&self, ctx: RequestContext) -> impl Future<Output = Result<ModelList>> + '_ {
        self.typed(Request::Models, Some(ctx), models_answer)
    }
}
