//! `infermux.toml`: the configuration file of a multiplexed [`Client`](crate::Client), parsed
//! and validated into plain read-only structs ([`Config`]) that the client's builder consumes.
//!
//! Every key of the file is documented in `docs/config.md`, and `docs/infermux.toml` is a
//! complete commented example. Loading is strict: an unknown key, a duplicate name, a group
//! naming an unknown endpoint, a fallback cycle, a zero weight, an unset key variable or an
//! unreadable key file is an [`ErrorKind::Config`] error whose message names the file and the
//! line, never a warning and never a 401 later. Keys become [`ApiKey`]s as soon as they are
//! read, so no `Debug` of a parsed config shows one.
//!
//! ```
//! use infermux::config::{Config, ProviderKind, StrategyKind};
//!
//! let config = Config::from_toml_str(
//!     r#"
//!     [[endpoint]]
//!     name = "local"
//!     provider = "openai-compat"
//!     base_url = "http://127.0.0.1:8080/v1"
//!
//!     [[group]]
//!     name = "chat"
//!     deployments = [ { endpoint = "local", model = "smollm2" } ]
//!     "#,
//!     "infermux.toml",
//! )?;
//! assert_eq!(config.endpoints[0].provider, ProviderKind::OpenAiCompat);
//! assert_eq!(config.groups[0].strategy, StrategyKind::RoundRobin);
//!
//! let err = Config::from_toml_str("[[endpoint]]\nname = \"a\"\ntmeout = 1\n", "infermux.toml")
//!     .unwrap_err();
//! assert_eq!(
//!     err.message(),
//!     "infermux.toml line 3, column 1: unknown key `tmeout` in [[endpoint]]"
//! );
//! # Ok::<(), infermux::Error>(())
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use infermux_core::{
    ApiKey, EndpointConfig, Error, ErrorKind, Priority, Provider, Result, Timeouts,
};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use toml::Spanned;

// ---------------------------------------------------------------------------------------------
// Public model
// ---------------------------------------------------------------------------------------------

/// A parsed and validated `infermux.toml`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// `[defaults]`: call-level settings for every group.
    pub defaults: Defaults,
    /// `[[endpoint]]`s, in file order; names are unique.
    pub endpoints: Vec<EndpointSpec>,
    /// `[[group]]`s, in file order; names are unique.
    pub groups: Vec<GroupSpec>,
    /// `[[fallback]]`s, in file order; at most one per `from` group, and no cycles.
    pub fallbacks: Vec<FallbackSpec>,
    /// `[cache]`, or `None` when the section is absent (no cache).
    pub cache: Option<CacheSpec>,
    /// `[batching]`, or `None` when the section is absent (embedding calls are not batched).
    pub batching: Option<infermux_batching::BatchConfig>,
    /// `[s3]` with its `[[s3.endpoint]]`s, or `None` when absent (model storage; built into a
    /// kit with the feature `s3`).
    pub s3: Option<S3Spec>,
    /// The file's name as errors give it.
    origin: String,
}

/// `[s3]`: S3-compatible model storage, several endpoints behind one pool.
///
/// ```
/// use infermux::config::Config;
/// let config = Config::from_toml_str_with_env(
///     r#"
///     [s3]
///     selection = "first-healthy"
///     part_size = 16777216
///     [[s3.endpoint]]
///     name = "primary"
///     url = "http://127.0.0.1:9000"
///     access_key_env = "S3_ACCESS"
///     secret_key_env = "S3_SECRET"
///     [[s3.endpoint]]
///     name = "replica"
///     url = "http://127.0.0.1:9001"
///     profile = "replica"
///     "#,
///     "infermux.toml",
///     None,
///     &|v| (v == "S3_ACCESS" || v == "S3_SECRET").then(|| "x".to_owned()),
/// )
/// .unwrap();
/// let s3 = config.s3.unwrap();
/// assert_eq!(s3.endpoints.len(), 2);
/// assert_eq!(s3.part_size, 16 << 20);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct S3Spec {
    /// `selection`: `first-healthy` (default), `round-robin` or `least-loaded`.
    pub selection: String,
    /// `part_size`: bytes per part and per download range (default 8 MiB, 5 MiB to 5 GiB).
    pub part_size: u64,
    /// `concurrency`: parts or ranges in flight (default 8).
    pub concurrency: usize,
    /// `multipart_threshold`: files this large go multipart (default 16 MiB, 1 byte to 5 GiB).
    pub multipart_threshold: u64,
    /// `max_attempts`: attempts per operation (default 4).
    pub max_attempts: u32,
    /// `timeout`: the deadline of one whole operation (none by default).
    pub timeout: Option<Duration>,
    /// `[[s3.endpoint]]`s, in file order (at least one; names unique).
    pub endpoints: Vec<S3EndpointSpec>,
}

/// One `[[s3.endpoint]]`. `Debug` never shows the secret.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct S3EndpointSpec {
    /// `name`.
    pub name: String,
    /// `url` (`None`: AWS S3 itself in `region`).
    pub url: Option<String>,
    /// `region` (default `us-east-1`).
    pub region: String,
    /// `path_style` (default: true with a `url`, false for AWS).
    pub path_style: bool,
    /// The credentials: `access_key_env` + `secret_key_env` (+ `session_token_env`), read at
    /// load; or `profile` (+ `credentials_file`), read when the kit is built; or
    /// `anonymous = true`.
    pub credentials: S3CredentialSpec,
    /// `max_concurrency`: requests in flight on this endpoint (default 64).
    pub max_concurrency: Option<usize>,
    /// `connect_timeout` (default 5 s).
    pub connect_timeout: Option<Duration>,
    /// `request_timeout`: the longest one request may take (default 5 min).
    pub request_timeout: Option<Duration>,
}

/// Where an `[[s3.endpoint]]`'s credentials come from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum S3CredentialSpec {
    /// Read from environment variables at load.
    Env {
        /// The access key id.
        access_key_id: String,
        /// The secret (never shown by `Debug`).
        secret: ApiKey,
        /// A session token.
        session_token: Option<ApiKey>,
        /// The variable the secret came from.
        secret_var: String,
    },
    /// A profile of the shared credentials file.
    Profile {
        /// The profile.
        name: String,
        /// The file, when not the default one.
        file: Option<PathBuf>,
    },
    /// No signature.
    Anonymous,
}

/// `[cache]`: the response cache (exact tier, and the semantic tier when `[cache.semantic]`
/// is present). `Debug` hides a password in `redis_url`.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct CacheSpec {
    /// `ttl`, `max_entries`, `max_bytes` and `coalesce` (defaults 1 h, 10 000 answers, 256 MiB
    /// and on).
    pub config: infermux_cache::CacheConfig,
    /// `redis_url`: also store answers in this Redis (feature `redis`), shared by every process
    /// using it and surviving restarts.
    pub redis_url: Option<String>,
    /// `redis_prefix`: the prefix of the cache's Redis keys. Default `infermux:cache`.
    pub redis_prefix: String,
    /// `[cache.semantic]`, or `None` for the exact tier only.
    pub semantic: Option<SemanticSpec>,
}

impl fmt::Debug for CacheSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `redis://user:password@host` → `redis://***@host`; a query (`?pass=` of a Unix
        // socket URL) → `?***`
        // (the userinfo first: a password may hold a `?`; an `@` in the query hides more)
        let redis = self.redis_url.as_deref().map(|u| {
            let (head, rest) = match (u.find("://"), u.rfind('@')) {
                (Some(s), Some(at)) if at > s => (format!("{}://***", &u[..s]), &u[at..]),
                _ => (String::new(), u),
            };
            match rest.split_once('?') {
                Some((base, _)) => format!("{head}{base}?***"),
                None => format!("{head}{rest}"),
            }
        });
        f.debug_struct("CacheSpec")
            .field("config", &self.config)
            .field("redis_url", &redis)
            .field("redis_prefix", &self.redis_prefix)
            .field("semantic", &self.semantic)
            .finish()
    }
}

/// `[cache.semantic]`: the semantic tier.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SemanticSpec {
    /// `embedder`: `"local"` (all-MiniLM-L6-v2 in process, feature `local-embed`, from
    /// `model_dir`) or the name of a `[[group]]` whose embeddings it uses.
    pub embedder: EmbedderSpec,
    /// `threshold`: the verifier's acceptance score, or `None` for its calibrated default.
    pub threshold: Option<f32>,
    /// `min_similarity`, `top_k`, `ttl`, `max_entries`, `max_bytes`, `max_chars`, `cache_sampled`,
    /// `cache_tools`.
    pub config: infermux_cache::SemanticConfig,
}

/// Where the semantic tier's vectors come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmbedderSpec {
    /// `embedder = "local"` with `model_dir` (relative paths from the file's folder).
    Local(PathBuf),
    /// `embedder = "<group>"`: the client's own model group.
    Group(String),
}

/// `[defaults]`: settings every call gets unless the client's builder overrides them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Defaults {
    /// `timeout`: the call deadline (all attempts, fallbacks included); `None` (absent) keeps
    /// the builder's, [`ResilienceConfig::standard`](infermux_resilience::ResilienceConfig::standard)'s 5 minutes.
    pub timeout: Option<Duration>,
    /// `priority`: the admission priority of a call that does not set one. Default normal.
    pub priority: Priority,
    /// `[defaults.retry]`, or `None` when the section is absent (the builder's default applies).
    pub retry: Option<RetrySpec>,
    /// `[defaults.breaker]`, or `None` when the section is absent.
    pub breaker: Option<BreakerSpec>,
    /// `[defaults.queue]`, or `None` when the section is absent.
    pub queue: Option<QueueSpec>,
}

/// `[defaults.retry]`. A key left out takes the value of
/// [`StandardRetry::standard`](crate::resilience::retry::StandardRetry::standard).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetrySpec {
    /// `max_attempts`: attempts per call, the first included (at least 1). Default 3.
    pub max_attempts: u32,
    /// `base`: the backoff base after a transient error. Default 250 ms.
    pub base: Duration,
    /// `cap`: the longest wait between two attempts (at least `base`). Default 30 s.
    pub cap: Duration,
    /// `throttle_floor`: the shortest wait after a 429 or an overload. Default 500 ms; at most
    /// `cap`.
    pub throttle_floor: Duration,
    /// `budget`: whether retries draw from a shared retry budget. Default true.
    pub budget: bool,
}

/// `[defaults.breaker]`. A key left out takes the value of
/// [`BreakerConfig::standard`](crate::resilience::breaker::BreakerConfig::standard).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BreakerSpec {
    /// `enabled`: whether each endpoint has a circuit breaker. Default true.
    pub enabled: bool,
    /// `failure_rate`: the failure fraction (0 < rate ≤ 1) at which the breaker opens. Default 0.5.
    pub failure_rate: f64,
    /// `minimum_calls`: calls the window must hold before the rate counts (1 to 50, the calls
    /// the window holds).
    pub minimum_calls: u32,
    /// `open_for`: how long the breaker stays open before probing. Default 30 s.
    pub open_for: Duration,
    /// `half_open_probes`: calls let through while half-open (at least 1). Default 3.
    pub half_open_probes: u32,
}

/// `[defaults.queue]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueSpec {
    /// `max_queued`: requests that may wait for admission (0: none wait). Default 10 000.
    pub max_queued: usize,
}

/// One `[[endpoint]]`: a provider at a base URL with its keys and limits.
///
/// `Debug` shows neither a key nor a header value.
#[derive(Clone)]
#[non_exhaustive]
pub struct EndpointSpec {
    /// `name`: unique among the endpoints; the endpoint's id in counters and errors.
    pub name: String,
    /// `provider`: which protocol the endpoint speaks.
    pub provider: ProviderKind,
    /// `base_url`, or `None` to use [`ProviderKind::default_base_url`] (then `Some`: checked
    /// at load).
    pub base_url: Option<String>,
    /// `keys`, in file order; aliases unique within the endpoint. Empty for a server without
    /// keys (never for a provider where [`ProviderKind::requires_key`]).
    pub keys: Vec<KeySpec>,
    /// `max_concurrency`: requests in flight at once on this endpoint (at least 1).
    pub max_concurrency: Option<usize>,
    /// `rpm`: requests per minute allowed per key (at least 1).
    pub rpm: Option<u32>,
    /// `tpm`: tokens per minute allowed per key (at least 1).
    pub tpm: Option<u64>,
    /// `timeouts`: per-attempt timeouts ([`Timeouts::standard`] for the keys left out).
    pub timeouts: Timeouts,
    /// `headers`: extra headers sent with every request, sorted by name (never auth headers).
    pub headers: Vec<(String, String)>,
}

impl EndpointSpec {
    /// The base URL this endpoint uses: `base_url`, or the provider's default.
    pub fn effective_base_url(&self) -> Option<&str> {
        self.base_url
            .as_deref()
            .or_else(|| self.provider.default_base_url())
    }

    /// The core [`EndpointConfig`] of this endpoint: its name as id, its base URL (or the
    /// provider's default), its timeouts and headers, and its FIRST key as the key (the pool
    /// chooses a key per attempt; this is the single-key view). Fails with
    /// [`ErrorKind::Config`] when there is no base URL, or when the URL is invalid (both are
    /// also checked at load, so this fails only on a hand-built spec).
    pub fn endpoint_config(&self) -> Result<EndpointConfig> {
        let url = self.effective_base_url().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "endpoint `{}`: provider {} has no default base URL; set `base_url`",
                    self.name, self.provider
                ),
            )
        })?;
        let mut cfg = EndpointConfig::new(&self.name, url)
            .map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("endpoint `{}`: {}", self.name, e.message()),
                )
            })?
            .with_timeouts(self.timeouts);
        for (name, value) in &self.headers {
            cfg = cfg.with_header(name, value);
        }
        if let Some(first) = self.keys.first() {
            cfg = cfg.with_api_key(first.key.clone());
        }
        Ok(cfg)
    }

    /// The provider of this endpoint with its [`endpoint_config`](Self::endpoint_config), as
    /// [`ProviderKind::provider`] builds it.
    pub fn provider(&self) -> Result<Arc<dyn Provider>> {
        self.provider.provider(self.endpoint_config()?)
    }
}

impl fmt::Debug for EndpointSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointSpec")
            .field("name", &self.name)
            .field("provider", &self.provider)
            .field(
                "base_url",
                &self.base_url.as_deref().map(|u| {
                    let u = u.split_once('?').map_or(u, |(a, _)| a);
                    infermux_core::url_without_userinfo(u).into_owned()
                }),
            )
            .field("keys", &self.keys)
            .field("max_concurrency", &self.max_concurrency)
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .field("timeouts", &self.timeouts)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// One key of an endpoint. `Debug` shows the alias and where the key came from, never the key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KeySpec {
    /// `alias`: the key's name in counters, logs and responses.
    pub alias: String,
    /// The key, read at load.
    pub key: ApiKey,
    /// Where the key was read from.
    pub source: KeySource,
}

/// Where a key was read from (`env`, `file` or `value`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// `env = "VAR"`: an environment variable.
    Env(String),
    /// `file = "path"`: a file (relative paths are relative to the config file's folder).
    File(PathBuf),
    /// `value = "…"`: written in the file itself.
    Literal,
}

/// One `[[group]]`: a model name the application uses, served by deployments.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupSpec {
    /// `name`: unique among the groups; what a request's `model` names.
    pub name: String,
    /// `strategy`: how a deployment is picked. Default round-robin.
    pub strategy: StrategyKind,
    /// `deployments`, in file order (at least one).
    pub deployments: Vec<DeploymentSpec>,
}

/// One deployment of a group: a model on an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeploymentSpec {
    /// `endpoint`: the name of an `[[endpoint]]`.
    pub endpoint: String,
    /// `model`: the provider's model id sent on the wire.
    pub model: String,
    /// `weight`: the share under the weighted strategy (at least 1). Default 1.
    pub weight: u32,
}

/// One `[[fallback]]`: when a call to `from` fails with one of `on`, try `to` in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FallbackSpec {
    /// `from`: the group whose failures fall back.
    pub from: String,
    /// `to`: the groups tried in order (at least one; never `from`).
    pub to: Vec<String>,
    /// `on`: the error kinds that trigger the fallback (at least one).
    pub on: Vec<ErrorKind>,
}

macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in documentation order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name used in `infermux.toml` and on the command line.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            /// Parses a name; fails with [`ErrorKind::Config`] listing the valid names.
            fn from_str(s: &str) -> Result<Self> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::Config,
                            format!(
                                "unknown {} `{s}`; expected one of: {}",
                                $what,
                                names($name::ALL.iter().map(|v| v.as_str()))
                            ),
                        )
                    })
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(|e: Error| de::Error::custom(e.message()))
            }
        }
    };
}

named_enum! {
    /// The protocol an endpoint speaks: one per provider crate.
    ProviderKind, "provider" {
        /// Any OpenAI-compatible server (llama.cpp, LocalAI, LM Studio…).
        OpenAiCompat => "openai-compat",
        /// OpenAI.
        OpenAi => "openai",
        /// Groq.
        Groq => "groq",
        /// vLLM.
        Vllm => "vllm",
        /// OPEA GenAIComps microservices.
        Opea => "opea",
        /// Anthropic's Messages API.
        Anthropic => "anthropic",
        /// Google Gemini.
        Gemini => "gemini",
        /// Ollama (native `/api`).
        Ollama => "ollama",
        /// Hugging Face Text Generation Inference.
        HfTgi => "hf-tgi",
        /// Hugging Face Text Embeddings Inference.
        HfTei => "hf-tei",
        /// OpenVINO Model Server.
        Ovms => "ovms",
        /// The LLVM inference REST protocol.
        Llvm => "llvm",
    }
}

named_enum! {
    /// How a group picks among its deployments.
    #[derive(Default)]
    StrategyKind, "strategy" {
        /// Each deployment in turn (the default).
        #[default]
        RoundRobin => "round-robin",
        /// In proportion to the deployments' weights.
        Weighted => "weighted",
        /// The deployment with the fewest requests in flight.
        LeastInFlight => "least-in-flight",
        /// The lowest recent latency (peak EWMA, power of two choices).
        LowestLatency => "lowest-latency",
        /// The most RPM/TPM headroom.
        LowestUsage => "lowest-usage",
        /// The first deployment that can serve, in file order (a primary and its standbys).
        FirstHealthy => "first-healthy",
    }
}

impl ProviderKind {
    /// The provider's default base URL (its crate's `DEFAULT_BASE_URL` or default host), or
    /// `None` when it has none and `base_url` is required.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::OpenAi => Some("https://api.openai.com/v1"),
            ProviderKind::Groq => Some("https://api.groq.com/openai/v1"),
            ProviderKind::Vllm => Some("http://127.0.0.1:8000"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com/v1"),
            ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com/v1beta"),
            ProviderKind::Ollama => Some("http://127.0.0.1:11434"),
            ProviderKind::HfTgi | ProviderKind::HfTei => Some("http://127.0.0.1:8080"),
            ProviderKind::Ovms => Some("http://127.0.0.1:8000"),
            ProviderKind::OpenAiCompat | ProviderKind::Opea | ProviderKind::Llvm => None,
        }
    }

    /// The environment variables the provider's own `from_env` reads its key from for a
    /// server at `base_url`, in order: [`ProviderKind::api_key_envs`], except that `hf-tgi`
    /// and `hf-tei` read the Hugging Face token (`HF_TOKEN`, `HF_API_KEY`) on Hugging Face's
    /// own hosts only.
    ///
    /// ```
    /// use infermux::config::ProviderKind;
    /// assert_eq!(ProviderKind::HfTgi.api_key_envs_for("http://127.0.0.1:8080"), ["TGI_API_KEY"]);
    /// assert_eq!(
    ///     ProviderKind::HfTei.api_key_envs_for("https://router.huggingface.co/hf-inference"),
    ///     ["HF_TOKEN", "HF_API_KEY"]
    /// );
    /// ```
    pub fn api_key_envs_for(self, base_url: &str) -> &'static [&'static str] {
        match self {
            ProviderKind::HfTgi | ProviderKind::HfTei
                if infermux_core::is_hugging_face_url(base_url) =>
            {
                &["HF_TOKEN", "HF_API_KEY"]
            }
            other => other.api_key_envs(),
        }
    }

    /// The environment variables the CLI (`infermux chat --provider …`) reads an endpoint's
    /// key from, in order: the provider crate's own `from_env` convention, except for
    /// `openai-compat`, whose key the CLI reads from `INFERMUX_API_KEY`, so that an OpenAI key
    /// is never sent to an arbitrary server it names (`OpenAiCompat::from_env` and
    /// `Client::from_env` follow OpenAI's SDKs instead: `OPENAI_API_KEY` goes to
    /// `OPENAI_BASE_URL`); for `hf-tgi` and `hf-tei`, the server's own key, the Hugging Face
    /// token being for Hugging Face's hosts (see [`ProviderKind::api_key_envs_for`]). Empty
    /// for a provider without such a convention.
    pub fn api_key_envs(self) -> &'static [&'static str] {
        match self {
            ProviderKind::OpenAiCompat => &["INFERMUX_API_KEY"],
            ProviderKind::OpenAi => &["OPENAI_API_KEY"],
            ProviderKind::Groq => &["GROQ_API_KEY"],
            ProviderKind::Vllm => &["VLLM_API_KEY"],
            ProviderKind::Opea => &["OPEA_API_KEY"],
            ProviderKind::Anthropic => &["ANTHROPIC_API_KEY"],
            ProviderKind::Gemini => &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
            ProviderKind::Ollama => &["OLLAMA_API_KEY"],
            // a server's own `--api-key`; the Hugging Face token only for Hugging Face's
            // hosts (see `api_key_envs_for`)
            ProviderKind::HfTgi => &["TGI_API_KEY"],
            ProviderKind::HfTei => &["TEI_API_KEY"],
            ProviderKind::Ovms => &[],
            ProviderKind::Llvm => &["LLVM_API_KEY"],
        }
    }

    /// The environment variable the provider's own `from_env` reads its base URL from, if any
    /// (`OLLAMA_HOST` may be a bare `host:port`); `None` for `openai-compat`, whose base URL
    /// the CLI takes from `--base-url` or `INFERMUX_BASE_URL` only.
    pub fn base_url_env(self) -> Option<&'static str> {
        match self {
            ProviderKind::OpenAi => Some("OPENAI_BASE_URL"),
            ProviderKind::Groq => Some("GROQ_BASE_URL"),
            ProviderKind::Vllm => Some("VLLM_API_URL"),
            ProviderKind::Opea => Some("OPEA_API_URL"),
            ProviderKind::Anthropic => Some("ANTHROPIC_BASE_URL"),
            ProviderKind::Gemini => Some("GEMINI_BASE_URL"),
            ProviderKind::Ollama => Some("OLLAMA_HOST"),
            ProviderKind::HfTgi => Some("TGI_URL"),
            ProviderKind::HfTei => Some("TEI_URL"),
            ProviderKind::Llvm => Some("LLVM_API_URL"),
            ProviderKind::Ovms => Some("OVMS_BASE_URL"),
            ProviderKind::OpenAiCompat => None,
        }
    }

    /// How the provider sends its key: `Authorization: Bearer <key>` for most,
    /// `x-api-key` for Anthropic, `x-goog-api-key` for Gemini.
    pub fn key_header(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "x-api-key",
            ProviderKind::Gemini => "x-goog-api-key",
            _ => "Authorization: Bearer",
        }
    }

    /// Whether the provider's API always needs a key (hosted APIs: OpenAI, Groq, Anthropic,
    /// Gemini). An endpoint of such a provider without keys is an error at load.
    pub fn requires_key(self) -> bool {
        matches!(
            self,
            ProviderKind::OpenAi
                | ProviderKind::Groq
                | ProviderKind::Anthropic
                | ProviderKind::Gemini
        )
    }

    /// The provider of this kind for `config` (each sends the key the way its API wants).
    /// Fails with [`ErrorKind::Config`] when the facade was built without the provider's
    /// Cargo feature (named like the provider), or when the provider rejects `config`.
    pub fn provider(self, config: EndpointConfig) -> Result<Arc<dyn Provider>> {
        macro_rules! build {
            ($feature:literal, $($path:tt)+) => {{
                #[cfg(feature = $feature)]
                {
                    let p: Arc<dyn Provider> = Arc::new($($path)+::new(config)?);
                    Ok(p)
                }
                #[cfg(not(feature = $feature))]
                {
                    drop(config);
                    Err(Error::new(
                        ErrorKind::Config,
                        concat!(
                            "provider ", $feature,
                            " needs the infermux crate's `", $feature, "` feature"
                        ),
                    ))
                }
            }};
        }
        match self {
            ProviderKind::OpenAiCompat => {
                build!("openai-compat", infermux_openai_compat::OpenAiCompat)
            }
            ProviderKind::OpenAi => build!("openai", infermux_openai::OpenAi),
            ProviderKind::Groq => build!("groq", infermux_groq::Groq),
            ProviderKind::Vllm => build!("vllm", infermux_vllm::Vllm),
            ProviderKind::Opea => build!("opea", infermux_opea::Opea),
            ProviderKind::Anthropic => build!("anthropic", infermux_anthropic::Anthropic),
            ProviderKind::Gemini => build!("gemini", infermux_gemini::Gemini),
            ProviderKind::Ollama => build!("ollama", infermux_ollama::Ollama),
            ProviderKind::HfTgi => build!("hf-tgi", infermux_hf_tgi::HfTgi),
            ProviderKind::HfTei => build!("hf-tei", infermux_hf_tei::HfTei),
            ProviderKind::Ovms => build!("ovms", infermux_ovms::Ovms),
            ProviderKind::Llvm => build!("llvm", infermux_llvm::Llvm),
        }
    }
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// The parts of a file a program uses: the whole file is read and checked, but the secrets
/// (key `env`s and `file`s, S3 credentials) of a part left out are not read, and the part is
/// left out of the [`Config`]. One file can then serve both `infermux chat` (without the S3
/// keys in its environment) and `infermux s3` (without the providers' keys).
///
/// ```
/// use infermux::config::{Config, Parts};
/// let text = r#"
///     [[endpoint]]
///     name = "openai"
///     provider = "openai"
///     keys = [{ alias = "k1", env = "OPENAI_KEY_1" }]
///     [s3]
///     [[s3.endpoint]]
///     name = "store"
///     url = "http://127.0.0.1:9000"
///     access_key_env = "S3_ACCESS"
///     secret_key_env = "S3_SECRET"
/// "#;
/// let s3_only = |v: &str| v.starts_with("S3_").then(|| "s3-secret".to_owned());
/// // all of it needs every secret
/// assert!(Config::from_toml_str_with_env(text, "infermux.toml", None, &s3_only).is_err());
/// let c = Config::from_toml_str_for(text, "infermux.toml", None, &s3_only, Parts::S3)?;
/// assert!(c.endpoints.is_empty() && c.s3.is_some());
/// # Ok::<(), infermux::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Parts {
    /// Everything.
    All,
    /// The endpoints, groups, fallbacks, defaults, cache and batching: what a client is built
    /// from; `[s3]` is checked but not kept.
    Inference,
    /// `[s3]` only; the rest is checked but not kept.
    S3,
}

impl Parts {
    fn inference(self) -> bool {
        matches!(self, Parts::All | Parts::Inference)
    }
    fn s3(self) -> bool {
        matches!(self, Parts::All | Parts::S3)
    }
}

impl Config {
    /// Reads and validates the file at `path`. Errors name the path and the line; relative
    /// key `file`s are read relative to the file's folder; key `env`s from the process
    /// environment.
    pub fn from_path(path: &Path) -> Result<Config> {
        Self::from_path_for(path, Parts::All)
    }

    /// As [`from_path`](Self::from_path), keeping only `parts` (see [`Parts`]).
    pub fn from_path_for(path: &Path, parts: Parts) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cannot read {}: {e}", path.display()),
            )
            .with_source(e)
        })?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        Self::load(
            &text,
            &path.display().to_string(),
            dir,
            &|var: &str| std::env::var(var).ok(),
            parts,
        )
    }

    /// Parses and validates `text`; `origin_name` (e.g. `"infermux.toml"`) starts every error
    /// message. Key `env`s come from the process environment and relative key `file`s are
    /// relative to the working directory.
    pub fn from_toml_str(text: &str, origin_name: &str) -> Result<Config> {
        Self::load(
            text,
            origin_name,
            None,
            &|var: &str| std::env::var(var).ok(),
            Parts::All,
        )
    }

    /// As [`from_toml_str`](Self::from_toml_str), with key `env`s looked up by `env` instead
    /// of the process environment (for tests, or a secret store) and relative key `file`s
    /// relative to `base_dir` when given.
    pub fn from_toml_str_with_env(
        text: &str,
        origin_name: &str,
        base_dir: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config> {
        Self::load(text, origin_name, base_dir, env, Parts::All)
    }

    /// As [`from_toml_str_with_env`](Self::from_toml_str_with_env), keeping only `parts` (see
    /// [`Parts`]).
    pub fn from_toml_str_for(
        text: &str,
        origin_name: &str,
        base_dir: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        parts: Parts,
    ) -> Result<Config> {
        Self::load(text, origin_name, base_dir, env, parts)
    }

    /// Fails unless the file has an `[[endpoint]]`, naming the file: a client needs one
    /// ([`Client::from_config`](crate::Client::from_config) checks it first). An empty file,
    /// or one with only `[s3]`, loads (`infermux s3` reads such a file).
    ///
    /// ```
    /// use infermux::config::Config;
    /// let c = Config::from_toml_str("", "infermux.toml")?;
    /// let e = c.check_has_endpoints().unwrap_err();
    /// assert_eq!(
    ///     e.message(),
    ///     "infermux.toml: no [[endpoint]]: a client needs at least one"
    /// );
    /// # Ok::<(), infermux::Error>(())
    /// ```
    pub fn check_has_endpoints(&self) -> Result<()> {
        if self.endpoints.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{}: no [[endpoint]]: a client needs at least one",
                    self.origin
                ),
            ));
        }
        Ok(())
    }

    /// The endpoint named `name`.
    pub fn endpoint(&self, name: &str) -> Option<&EndpointSpec> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&GroupSpec> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The fallback from group `name`, if any.
    pub fn fallback_from(&self, name: &str) -> Option<&FallbackSpec> {
        self.fallbacks.iter().find(|f| f.from == name)
    }

    fn load(
        text: &str,
        origin: &str,
        base_dir: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        parts: Parts,
    ) -> Result<Config> {
        let src = Source { text, origin };
        let raw: RawFile = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
        let mut config = Loader {
            src,
            base_dir,
            env,
            parts,
        }
        .build(raw)?;
        // (a part left out was read without its secrets: nothing of it is kept)
        if !parts.inference() {
            config.endpoints.clear();
            config.groups.clear();
            config.fallbacks.clear();
            config.cache = None;
            config.batching = None;
        }
        if !parts.s3() {
            config.s3 = None;
        }
        Ok(config)
    }
}

struct Source<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Source<'_> {
    /// `origin line L, column C` of a byte offset.
    fn at(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{} line {line}, column {col}", self.origin)
    }

    fn error(&self, span: Option<Range<usize>>, msg: impl fmt::Display) -> Error {
        let msg = match span {
            Some(span) => format!("{}: {msg}", self.at(span.start)),
            None => format!("{}: {msg}", self.origin),
        };
        Error::new(ErrorKind::Config, msg)
    }

    fn toml_error(&self, e: &toml::de::Error) -> Error {
        let message = hide_string_values(e.message().trim());
        let message = message.as_str();
        let Some(span) = e.span() else {
            return self.error(None, message);
        };
        let context = self.context(span.start);
        // serde's `unknown field `x`, expected one of …` becomes `unknown key `x` in [table]`
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let key = rest.split('`').next().unwrap_or(rest);
            return self.error(Some(span), format_args!("unknown key `{key}` in {context}"));
        }
        if let Some(rest) = message.strip_prefix("missing field `") {
            let key = rest.split('`').next().unwrap_or(rest);
            return self.error(Some(span), format_args!("missing key `{key}` in {context}"));
        }
        self.error(Some(span), format_args!("{message} (in {context})"))
    }

    /// Where `offset` lies, for messages: the table header above it (`[[endpoint]]`,
    /// `[defaults.retry]`, or `the top level`), and the inline keys that enclose it
    /// (`` `keys` of [[endpoint]] ``).
    fn context(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        // the header above (or on) the offending line
        let mut header: Option<(usize, &str)> = None;
        let mut pos = 0;
        for line in self.text.split_inclusive('\n') {
            if pos > line_start {
                break;
            }
            if let Some(h) = header_of(line) {
                header = Some((pos, h));
            }
            pos += line.len();
        }
        let (table, scan_from) = match header {
            // at the header's opening bracket: the table itself (a key missing from it)
            Some((at, h))
                if at == line_start && self.text[line_start..offset].trim_start().is_empty() =>
            {
                return h.to_owned();
            }
            // the offending key is in the header itself: its parent is the context
            Some((at, h)) if at == line_start => {
                let name = h.trim_matches(|c| c == '[' || c == ']');
                let table = match name.rsplit_once('.') {
                    Some((parent, _)) => format!("[{parent}]"),
                    None => "the top level".to_owned(),
                };
                return table;
            }
            Some((at, h)) => (h.to_owned(), at),
            None => ("the top level".to_owned(), 0),
        };
        // the inline tables/arrays that enclose the offset, innermost first
        let mut keys = Vec::new();
        let bytes = self.text.as_bytes();
        let mut depth = 0i32;
        let mut i = offset;
        while i > scan_from {
            i -= 1;
            match bytes[i] {
                b'}' | b']' => depth += 1,
                b'{' | b'[' if depth > 0 => depth -= 1,
                b'{' | b'[' => {
                    let before = self.text[scan_from..i].trim_end();
                    if let Some(lhs) = before.strip_suffix('=') {
                        let key = lhs
                            .trim_end()
                            .rsplit(|c: char| c.is_whitespace() || c == '{' || c == ',')
                            .next()
                            .unwrap_or("")
                            .trim_matches('"');
                        if !key.is_empty() {
                            keys.push(key.to_owned());
                        }
                    }
                }
                _ => {}
            }
        }
        match keys.first() {
            Some(_) => {
                let path = keys.iter().rev().cloned().collect::<Vec<_>>().join(".");
                format!("`{path}` of {table}")
            }
            None => table,
        }
    }
}

/// The header of a table line (`[x]` or `[[x]]`), if `line` is one.
fn header_of(line: &str) -> Option<&str> {
    let t = line.trim();
    let t = t.split_once('#').map_or(t, |(a, _)| a).trim_end();
    let inner = if let Some(r) = t.strip_prefix("[[") {
        r.strip_suffix("]]")?
    } else {
        t.strip_prefix('[')?.strip_suffix(']')?
    };
    let ok = !inner.is_empty()
        && inner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '"'));
    ok.then_some(t)
}

/// A duration written as `"250ms"`, `"30s"`, `"5m"`, `"1h"` or a sum like `"1m30s"`.
///
/// ```
/// use infermux::config::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert!(parse_duration("30").is_err());
/// ```
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration `{s}`: write a number and a unit (ms, s, m, h), e.g. \"250ms\", \"30s\", \"5m\""
        )
    };
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => n.checked_mul(60).map(Duration::from_secs).ok_or_else(bad)?,
            "h" => n
                .checked_mul(3600)
                .map(Duration::from_secs)
                .ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// A duration in the file (deserialized from a string, with the string's span on error).
#[derive(Clone, Copy)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Dur).map_err(de::Error::custom)
    }
}

/// Whether `name` is an HTTP header name (RFC 9110 `token`).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` can be sent as an HTTP header value: no line break, NUL or other control
/// character (tabs and UTF-8 allowed).
fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// A duration in the file that must be more than zero: a timeout (zero would fail every call
/// at once) or a TTL (zero would keep nothing). Deserialized as [`Dur`], with the same span.
#[derive(Clone, Copy)]
struct Positive(Duration);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let Dur(t) = Dur::deserialize(d)?;
        if t.is_zero() {
            return Err(de::Error::custom(
                "a duration of zero here would fail every call (or keep nothing): leave the \
                 key out for the default",
            ));
        }
        Ok(Positive(t))
    }
}

/// An error kind named by [`ErrorKind::as_str`].
struct Kind(ErrorKind);

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ErrorKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .map(Kind)
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "unknown error kind `{s}`; expected one of: {}",
                    names(ErrorKind::ALL.iter().map(|k| k.as_str()))
                ))
            })
    }
}

/// A priority: `low`, `normal` or `high`.
struct Prio(Priority);

impl<'de> Deserialize<'de> for Prio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "low" => Ok(Prio(Priority::Low)),
            "normal" => Ok(Prio(Priority::Normal)),
            "high" => Ok(Prio(Priority::High)),
            other => Err(de::Error::custom(format!(
                "unknown priority `{other}`; expected one of: low, normal, high"
            ))),
        }
    }
}

// The file as written (private; every table denies unknown keys).

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "the file's tables")]
struct RawFile {
    defaults: Option<RawDefaults>,
    #[serde(default)]
    endpoint: Vec<Spanned<RawEndpoint>>,
    #[serde(default)]
    group: Vec<Spanned<RawGroup>>,
    #[serde(default)]
    fallback: Vec<Spanned<RawFallback>>,
    cache: Option<Spanned<RawCache>>,
    batching: Option<Spanned<RawBatching>>,
    s3: Option<Spanned<RawS3>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "the table [s3]")]
struct RawS3 {
    selection: Option<Spanned<String>>,
    part_size: Option<Spanned<u64>>,
    concurrency: Option<Spanned<usize>>,
    multipart_threshold: Option<Spanned<u64>>,
    max_attempts: Option<Spanned<u32>>,
    timeout: Option<Positive>,
    #[serde(default)]
    endpoint: Vec<Spanned<RawS3Endpoint>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [[s3.endpoint]] table")]
struct RawS3Endpoint {
    name: Spanned<String>,
    url: Option<Spanned<String>>,
    region: Option<String>,
    path_style: Option<bool>,
    access_key_env: Option<String>,
    secret_key_env: Option<String>,
    session_token_env: Option<String>,
    profile: Option<String>,
    credentials_file: Option<String>,
    anonymous: Option<bool>,
    max_concurrency: Option<Spanned<usize>>,
    connect_timeout: Option<Positive>,
    request_timeout: Option<Positive>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "the table [cache]")]
struct RawCache {
    ttl: Option<Positive>,
    max_entries: Option<Spanned<u64>>,
    max_bytes: Option<Spanned<u64>>,
    coalesce: Option<bool>,
    redis_url: Option<Spanned<String>>,
    redis_prefix: Option<String>,
    semantic: Option<Spanned<RawSemantic>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "the table [cache.semantic]")]
struct RawSemantic {
    embedder: Spanned<String>,
    model_dir: Option<Spanned<String>>,
    threshold: Option<Spanned<f32>>,
    min_similarity: Option<Spanned<f32>>,
    top_k: Option<Spanned<usize>>,
    ttl: Option<Positive>,
    max_entries: Option<Spanned<usize>>,
    max_bytes: Option<Spanned<u64>>,
    max_chars: Option<Spanned<usize>>,
    cache_sampled: Option<bool>,
    cache_tools: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "the table [batching]")]
struct RawBatching {
    max_items: Option<Spanned<usize>>,
    max_tokens: Option<Spanned<u64>>,
    max_wait: Option<Spanned<Dur>>,
    max_queued: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "the table [defaults]")]
struct RawDefaults {
    timeout: Option<Positive>,
    priority: Option<Prio>,
    retry: Option<Spanned<RawRetry>>,
    breaker: Option<Spanned<RawBreaker>>,
    queue: Option<RawQueue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "the table [defaults.retry]")]
struct RawRetry {
    max_attempts: Option<Spanned<u32>>,
    base: Option<Dur>,
    cap: Option<Dur>,
    throttle_floor: Option<Dur>,
    budget: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "the table [defaults.breaker]")]
struct RawBreaker {
    enabled: Option<bool>,
    failure_rate: Option<Spanned<f64>>,
    minimum_calls: Option<Spanned<u32>>,
    open_for: Option<Dur>,
    half_open_probes: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "the table [defaults.queue]")]
struct RawQueue {
    max_queued: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [[endpoint]] table")]
struct RawEndpoint {
    name: Spanned<String>,
    provider: ProviderKind,
    base_url: Option<Spanned<String>>,
    max_concurrency: Option<Spanned<usize>>,
    #[serde(default)]
    keys: Vec<Spanned<RawKey>>,
    rpm: Option<Spanned<u32>>,
    tpm: Option<Spanned<u64>>,
    timeouts: Option<RawTimeouts>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
}

/// serde's message with every quoted string value (`invalid type: string "sk-…", expected …`)
/// replaced by `string (value not shown)`: a key written where a table belongs must not be
/// printed. The line and column still say where it is.
fn hide_string_values(message: &str) -> String {
    const MARK: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(MARK) {
        out.push_str(&rest[..i]);
        out.push_str("string (value not shown)");
        // the value is written as Rust's `Debug` of a `str`: `\` escapes the next char
        let mut chars = rest[i + MARK.len()..].char_indices();
        let mut end = None;
        while let Some((j, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = Some(i + MARK.len() + j + 1);
                    break;
                }
                _ => {}
            }
        }
        match end {
            Some(e) => rest = &rest[e..],
            // no closing quote: hide everything after the mark
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a key table `{ alias = \"…\", env | file | value = \"…\" }`"
)]
struct RawKey {
    alias: Spanned<String>,
    env: Option<String>,
    file: Option<String>,
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a timeouts table `{ connect, first_byte, idle, total = \"…\" }`"
)]
struct RawTimeouts {
    connect: Option<Positive>,
    first_byte: Option<Positive>,
    idle: Option<Positive>,
    total: Option<Positive>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[group]] table")]
struct RawGroup {
    name: Spanned<String>,
    #[serde(default)]
    strategy: StrategyKind,
    deployments: Spanned<Vec<Spanned<RawDeployment>>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a deployment table `{ endpoint = \"…\", model = \"…\" }`"
)]
struct RawDeployment {
    endpoint: Spanned<String>,
    model: String,
    weight: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[fallback]] table")]
struct RawFallback {
    from: Spanned<String>,
    to: Spanned<Vec<Spanned<String>>>,
    on: Spanned<Vec<Kind>>,
}

/// Headers an endpoint must not set by hand: the key is sent by the provider.
const AUTH_HEADERS: [&str; 5] = [
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "proxy-authorization",
];

struct Loader<'a> {
    src: Source<'a>,
    base_dir: Option<&'a Path>,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// Whose secrets are read.
    parts: Parts,
}

impl Loader<'_> {
    fn err(&self, span: Range<usize>, msg: impl fmt::Display) -> Error {
        self.src.error(Some(span), msg)
    }

    fn build(&self, raw: RawFile) -> Result<Config> {
        let defaults = self.defaults(raw.defaults)?;
        let mut endpoints = Vec::with_capacity(raw.endpoint.len());
        let mut endpoint_names = HashSet::new();
        // each endpoint's key aliases, where they are written: a group's keys need distinct
        // aliases (its pool names a key by its alias)
        let mut aliases: HashMap<String, Vec<(String, Range<usize>)>> = HashMap::new();
        let implicit = raw.group.is_empty();
        let mut implicit_aliases: HashMap<String, String> = HashMap::new();
        for e in raw.endpoint {
            let span = e.span();
            let e = e.into_inner();
            if !endpoint_names.insert(e.name.get_ref().clone()) {
                return Err(self.err(
                    e.name.span(),
                    format_args!("duplicate endpoint name `{}`", e.name.get_ref()),
                ));
            }
            let name = e.name.get_ref().clone();
            let mine: Vec<(String, Range<usize>)> = e
                .keys
                .iter()
                .map(|k| {
                    (
                        k.get_ref().alias.get_ref().clone(),
                        k.get_ref().alias.span(),
                    )
                })
                .collect();
            // without groups, one implicit group sends every endpoint
            if implicit {
                for (alias, at) in &mine {
                    if let Some(other) = implicit_aliases.get(alias).filter(|o| **o != name) {
                        return Err(self.err(
                            at.clone(),
                            format_args!(
                                "endpoints `{other}` and `{name}` both have a key named \
                                 `{alias}`: the implicit group sends both, and a group's keys \
                                 need distinct aliases"
                            ),
                        ));
                    }
                    implicit_aliases.insert(alias.clone(), name.clone());
                }
            }
            aliases.insert(name, mine);
            endpoints.push(self.endpoint(e, span)?);
        }
        let mut groups = Vec::with_capacity(raw.group.len());
        let mut group_names = HashSet::new();
        for g in raw.group {
            let g = g.into_inner();
            if !group_names.insert(g.name.get_ref().clone()) {
                return Err(self.err(
                    g.name.span(),
                    format_args!("duplicate group name `{}`", g.name.get_ref()),
                ));
            }
            groups.push(self.group(g, &endpoint_names, &aliases)?);
        }
        let fallbacks = self.fallbacks(raw.fallback, &group_names)?;
        let cache = match raw.cache {
            None => None,
            Some(c) => Some(self.cache(c, &group_names)?),
        };
        let batching = match raw.batching {
            None => None,
            Some(b) => Some(self.batching(b)?),
        };
        let s3 = match raw.s3 {
            None => None,
            Some(s) => Some(self.s3(s)?),
        };
        Ok(Config {
            defaults,
            endpoints,
            groups,
            fallbacks,
            cache,
            batching,
            s3,
            origin: self.src.origin.to_owned(),
        })
    }

    fn s3(&self, s: Spanned<RawS3>) -> Result<S3Spec> {
        let span = s.span();
        let s = s.into_inner();
        let selection = match s.selection {
            None => "first-healthy".to_owned(),
            Some(sel) => {
                let v = sel.get_ref();
                if !matches!(v.as_str(), "first-healthy" | "round-robin" | "least-loaded") {
                    return Err(self.err(
                        sel.span(),
                        format_args!(
                            "unknown selection `{v}`; expected one of: first-healthy, \
                             round-robin, least-loaded"
                        ),
                    ));
                }
                sel.into_inner()
            }
        };
        let part_size = match s.part_size {
            None => 8 << 20,
            Some(p) if !(5 << 20..=5 << 30).contains(p.get_ref()) => {
                return Err(self.err(
                    p.span(),
                    "`part_size` must be 5 MiB (5242880) to 5 GiB (5368709120), S3's smallest \
                     and largest part",
                ));
            }
            Some(p) => p.into_inner(),
        };
        let multipart_threshold = match s.multipart_threshold {
            None => 16 << 20,
            Some(t) if !(1..=5 << 30).contains(t.get_ref()) => {
                return Err(self.err(
                    t.span(),
                    "`multipart_threshold` must be 1 byte to 5 GiB (5368709120): an empty file \
                     is one PutObject, and one PutObject carries at most 5 GiB",
                ));
            }
            Some(t) => t.into_inner(),
        };
        let concurrency = match s.concurrency {
            None => 8,
            Some(c) if !(1..=256).contains(c.get_ref()) => {
                return Err(self.err(c.span(), "`concurrency` must be within 1..=256"));
            }
            Some(c) => c.into_inner(),
        };
        let max_attempts = match s.max_attempts {
            None => 4,
            Some(m) if *m.get_ref() == 0 => {
                return Err(self.err(m.span(), "`max_attempts` must be at least 1"));
            }
            Some(m) => m.into_inner(),
        };
        if s.endpoint.is_empty() {
            return Err(self.err(span, "[s3] needs at least one [[s3.endpoint]]"));
        }
        let mut names = HashSet::new();
        let mut endpoints = Vec::with_capacity(s.endpoint.len());
        for e in s.endpoint {
            let espan = e.span();
            let e = e.into_inner();
            let name = e.name.get_ref().clone();
            if !names.insert(name.clone()) {
                return Err(self.err(
                    e.name.span(),
                    format_args!("duplicate s3 endpoint name `{name}`"),
                ));
            }
            let url = match e.url {
                None => None,
                Some(u) => {
                    let v = u.get_ref();
                    let rest = v
                        .strip_prefix("http://")
                        .or_else(|| v.strip_prefix("https://"));
                    let ok = rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'));
                    if !ok {
                        return Err(self.err(
                            u.span(),
                            format_args!("s3 endpoint `{name}`: `url` must be an http(s) URL"),
                        ));
                    }
                    // (before the query, not only in the authority: a password may hold a `/`)
                    let before_query = rest.and_then(|r| r.split(['?', '#']).next());
                    if before_query.is_some_and(|a| a.contains('@')) {
                        return Err(self.err(
                            u.span(),
                            format_args!(
                                "s3 endpoint `{name}`: `url` carries credentials (user:password@); \
                                 S3 keys go in access_key_env/secret_key_env or a profile"
                            ),
                        ));
                    }
                    Some(u.into_inner())
                }
            };
            let what = format!("s3 endpoint `{name}`");
            // keys that only go with one kind of credentials: never silently unused
            if e.session_token_env.is_some() && e.access_key_env.is_none() {
                return Err(self.err(
                    espan,
                    format_args!(
                        "{what}: `session_token_env` goes with `access_key_env` and \
                         `secret_key_env`"
                    ),
                ));
            }
            if e.credentials_file.is_some() && e.profile.is_none() {
                return Err(self.err(
                    espan,
                    format_args!("{what}: `credentials_file` goes with `profile`"),
                ));
            }
            let var = |v: &str| match (self.env)(v) {
                // `[s3]` left out: its secrets are not read (and the section not kept)
                _ if !self.parts.s3() => Ok(String::new()),
                Some(x) if !x.trim().is_empty() => Ok(x),
                _ => Err(self.err(
                    espan.clone(),
                    format_args!(
                        "{what}: environment variable {} is not set",
                        infermux_core::shown_var_name(v)
                    ),
                )),
            };
            let credentials = match (
                e.access_key_env,
                e.secret_key_env,
                e.profile,
                e.anonymous.unwrap_or(false),
            ) {
                (Some(a), Some(sk), None, false) => S3CredentialSpec::Env {
                    access_key_id: var(&a)?,
                    secret: ApiKey::new(var(&sk)?),
                    session_token: match &e.session_token_env {
                        Some(t) => Some(ApiKey::new(var(t)?)),
                        None => None,
                    },
                    secret_var: sk,
                },
                (None, None, Some(p), false) => S3CredentialSpec::Profile {
                    name: p,
                    file: e.credentials_file.map(|f| match self.base_dir {
                        Some(dir) if Path::new(&f).is_relative() => dir.join(&f),
                        _ => PathBuf::from(&f),
                    }),
                },
                (None, None, None, true) => S3CredentialSpec::Anonymous,
                _ => {
                    return Err(self.err(
                        espan,
                        format_args!(
                            "{what}: give exactly one of `access_key_env` with \
                             `secret_key_env`, `profile`, or `anonymous = true`"
                        ),
                    ));
                }
            };
            if let Some(c) = &e.max_concurrency
                && *c.get_ref() == 0
            {
                return Err(self.err(c.span(), "`max_concurrency` must be at least 1"));
            }
            endpoints.push(S3EndpointSpec {
                path_style: e.path_style.unwrap_or(url.is_some()),
                url,
                name,
                region: e.region.unwrap_or_else(|| "us-east-1".to_owned()),
                credentials,
                max_concurrency: e.max_concurrency.map(Spanned::into_inner),
                connect_timeout: e.connect_timeout.map(|d| d.0),
                request_timeout: e.request_timeout.map(|d| d.0),
            });
        }
        Ok(S3Spec {
            selection,
            part_size,
            concurrency,
            multipart_threshold,
            max_attempts,
            timeout: s.timeout.map(|d| d.0),
            endpoints,
        })
    }

    fn cache(&self, c: Spanned<RawCache>, groups: &HashSet<String>) -> Result<CacheSpec> {
        let span = c.span();
        let c = c.into_inner();
        let mut config = infermux_cache::CacheConfig::default();
        if let Some(t) = c.ttl {
            config.ttl = t.0;
        }
        if let Some(n) = &c.max_entries {
            config.max_entries = *n.get_ref();
        }
        let mut config = infermux_cache::CacheConfig::new(config.ttl, config.max_entries)
            .map_err(|e| self.err(span.clone(), e.message()))?;
        if let Some(n) = &c.max_bytes {
            config = config
                .with_max_bytes(*n.get_ref())
                .map_err(|e| self.err(n.span(), e.message()))?;
        }
        if let Some(on) = c.coalesce {
            config = config.with_coalescing(on);
        }
        if c.redis_prefix.is_some() && c.redis_url.is_none() {
            return Err(self.err(
                span,
                "`redis_prefix` in [cache] goes with `redis_url` (without it the cache is in memory)",
            ));
        }
        if c.redis_url.is_some() && !cfg!(feature = "redis") {
            return Err(self.err(
                span,
                "`redis_url` in [cache] needs infermux built with the feature `redis`",
            ));
        }
        let semantic = match c.semantic {
            None => None,
            Some(s) => Some(self.semantic(s, groups)?),
        };
        Ok(CacheSpec {
            config,
            redis_url: c.redis_url.map(Spanned::into_inner),
            redis_prefix: c
                .redis_prefix
                .unwrap_or_else(|| "infermux:cache".to_owned()),
            semantic,
        })
    }

    fn semantic(&self, s: Spanned<RawSemantic>, groups: &HashSet<String>) -> Result<SemanticSpec> {
        let span = s.span();
        let s = s.into_inner();
        let name = s.embedder.get_ref();
        let embedder = if name == "local" {
            let Some(dir) = &s.model_dir else {
                return Err(self.err(
                    s.embedder.span(),
                    "`embedder = \"local\"` needs `model_dir` (the all-MiniLM-L6-v2 folder)",
                ));
            };
            let path = Path::new(dir.get_ref());
            let path = match self.base_dir {
                Some(base) if path.is_relative() => base.join(path),
                _ => path.to_path_buf(),
            };
            // found now, not when the client is built
            if !path.is_dir() {
                return Err(self.err(
                    dir.span(),
                    format_args!("`model_dir` {} is not a folder", path.display()),
                ));
            }
            EmbedderSpec::Local(path)
        } else if groups.contains(name) {
            if let Some(dir) = &s.model_dir {
                return Err(self.err(dir.span(), "`model_dir` is for `embedder = \"local\"` only"));
            }
            EmbedderSpec::Group(name.clone())
        } else {
            return Err(self.err(
                s.embedder.span(),
                format_args!("`embedder` must be \"local\" or a group name, not `{name}`"),
            ));
        };
        if let Some(t) = &s.threshold
            && !(0.0..=1.0).contains(t.get_ref())
        {
            return Err(self.err(t.span(), "`threshold` must be within 0 and 1"));
        }
        let mut config = infermux_cache::SemanticConfig::default();
        let at = |e: Error, span: Range<usize>| self.err(span, e.message());
        if let Some(m) = s.min_similarity {
            config = config
                .with_min_similarity(*m.get_ref())
                .map_err(|e| at(e, m.span()))?;
        }
        if let Some(k) = s.top_k {
            config = config
                .with_top_k(*k.get_ref())
                .map_err(|e| at(e, k.span()))?;
        }
        if let Some(t) = s.ttl {
            config = config.with_ttl(t.0).map_err(|e| at(e, span.clone()))?;
        }
        if let Some(n) = s.max_entries {
            let namespaces = config.max_namespaces;
            config = config
                .with_max_entries(*n.get_ref(), namespaces)
                .map_err(|e| at(e, n.span()))?;
        }
        if let Some(n) = s.max_bytes {
            config = config
                .with_max_bytes(*n.get_ref())
                .map_err(|e| at(e, n.span()))?;
        }
        if let Some(n) = s.max_chars {
            config = config
                .with_max_chars(*n.get_ref())
                .map_err(|e| at(e, n.span()))?;
        }
        config = config
            .allow_sampled(s.cache_sampled.unwrap_or(false))
            .allow_tools(s.cache_tools.unwrap_or(false));
        Ok(SemanticSpec {
            embedder,
            threshold: s.threshold.map(Spanned::into_inner),
            config,
        })
    }

    fn batching(&self, b: Spanned<RawBatching>) -> Result<infermux_batching::BatchConfig> {
        let b = b.into_inner();
        let mut config = infermux_batching::BatchConfig::default();
        let at = |e: Error, span: Range<usize>| self.err(span, e.message());
        if let Some(n) = b.max_items {
            config = config
                .with_max_items(*n.get_ref())
                .map_err(|e| at(e, n.span()))?;
        }
        if let Some(n) = b.max_tokens {
            config = config
                .with_max_tokens(*n.get_ref())
                .map_err(|e| at(e, n.span()))?;
        }
        if let Some(w) = b.max_wait {
            config = config
                .with_max_wait(w.get_ref().0)
                .map_err(|e| at(e, w.span()))?;
        }
        if let Some(n) = b.max_queued {
            config = config
                .with_queue_capacity(*n.get_ref())
                .map_err(|e| at(e, n.span()))?;
        }
        Ok(config)
    }

    fn defaults(&self, raw: Option<RawDefaults>) -> Result<Defaults> {
        let Some(raw) = raw else {
            return Ok(Defaults {
                timeout: None,
                priority: Priority::Normal,
                retry: None,
                breaker: None,
                queue: None,
            });
        };
        let retry = match raw.retry {
            None => None,
            Some(r) => {
                let span = r.span();
                let r = r.into_inner();
                let std = crate::resilience::retry::StandardRetry::standard();
                let max_attempts = match r.max_attempts {
                    Some(n) if *n.get_ref() == 0 => {
                        return Err(self.err(n.span(), "`max_attempts` must be at least 1"));
                    }
                    Some(n) => n.into_inner(),
                    None => std.max_attempts,
                };
                let spec = RetrySpec {
                    max_attempts,
                    base: r.base.map_or(std.transient_base, |d| d.0),
                    cap: r.cap.map_or(std.max_delay, |d| d.0),
                    throttle_floor: r.throttle_floor.map_or(std.throttle_floor, |d| d.0),
                    budget: r.budget.unwrap_or(true),
                };
                if spec.cap < spec.base {
                    return Err(
                        self.err(span, "in [defaults.retry], `cap` must be at least `base`")
                    );
                }
                if spec.throttle_floor > spec.cap {
                    return Err(self.err(
                        span,
                        format_args!(
                            "in [defaults.retry], `throttle_floor` ({:?}) must be at most `cap` \
                             ({:?}), the longest pause",
                            spec.throttle_floor, spec.cap
                        ),
                    ));
                }
                Some(spec)
            }
        };
        let breaker = match raw.breaker {
            None => None,
            Some(b) => {
                let b = b.into_inner();
                let std = crate::resilience::breaker::BreakerConfig::standard();
                let failure_rate = match b.failure_rate {
                    Some(r) if !(*r.get_ref() > 0.0 && *r.get_ref() <= 1.0) => {
                        return Err(self.err(
                            r.span(),
                            "`failure_rate` must be a fraction above 0 and at most 1, e.g. 0.5",
                        ));
                    }
                    Some(r) => r.into_inner(),
                    None => f64::from(std.failure_rate_threshold) / 100.0,
                };
                let at_least_one = |v: Option<Spanned<u32>>, key: &str, default: u32| match v {
                    Some(n) if *n.get_ref() == 0 => {
                        Err(self.err(n.span(), format_args!("`{key}` must be at least 1")))
                    }
                    Some(n) => Ok(n.into_inner()),
                    None => Ok(default),
                };
                // the breaker's window holds the last 50 calls: more could never trip it
                let window = match std.window {
                    crate::resilience::breaker::SlidingWindow::Count(n) => n,
                    _ => u32::MAX,
                };
                if let Some(n) = &b.minimum_calls
                    && b.enabled != Some(false)
                    && *n.get_ref() > window
                {
                    return Err(self.err(
                        n.span(),
                        format_args!(
                            "`minimum_calls` must be at most {window}, the calls the breaker's \
                             window holds"
                        ),
                    ));
                }
                Some(BreakerSpec {
                    enabled: b.enabled.unwrap_or(true),
                    failure_rate,
                    minimum_calls: at_least_one(
                        b.minimum_calls,
                        "minimum_calls",
                        std.minimum_calls,
                    )?,
                    open_for: b.open_for.map_or(std.open_wait, |d| d.0),
                    half_open_probes: at_least_one(
                        b.half_open_probes,
                        "half_open_probes",
                        std.half_open_probes,
                    )?,
                })
            }
        };
        let queue = raw.queue.map(|q| QueueSpec {
            max_queued: q
                .max_queued
                .unwrap_or_else(|| crate::resilience::queue::QueueConfig::standard().max_queued),
        });
        Ok(Defaults {
            timeout: raw.timeout.map(|d| d.0),
            priority: raw.priority.map_or(Priority::Normal, |p| p.0),
            retry,
            breaker,
            queue,
        })
    }

    fn endpoint(&self, e: RawEndpoint, span: Range<usize>) -> Result<EndpointSpec> {
        let name = e.name.get_ref().clone();
        let name_span = e.name.span();
        if name.trim().is_empty() {
            return Err(self.err(name_span, "an endpoint's `name` must not be empty"));
        }
        // the base URL: written, or the provider's default, and valid either way
        let (url, url_span) = match &e.base_url {
            Some(u) => (u.get_ref().as_str(), u.span()),
            None => match e.provider.default_base_url() {
                Some(u) => (u, name_span.clone()),
                None => {
                    return Err(self.err(
                        span,
                        format_args!(
                            "endpoint `{name}`: provider {} has no default base URL; set `base_url`",
                            e.provider
                        ),
                    ));
                }
            },
        };
        if let Err(err) = EndpointConfig::new(&name, url) {
            return Err(self.err(
                url_span,
                format_args!("endpoint `{name}`: {}", err.message()),
            ));
        }
        let positive = |v: &Option<Spanned<usize>>, key: &str| match v {
            Some(n) if *n.get_ref() == 0 => Err(self.err(
                n.span(),
                format_args!("endpoint `{name}`: `{key}` must be at least 1"),
            )),
            _ => Ok(()),
        };
        positive(&e.max_concurrency, "max_concurrency")?;
        if let Some(n) = &e.rpm
            && *n.get_ref() == 0
        {
            return Err(self.err(
                n.span(),
                format_args!("endpoint `{name}`: `rpm` must be at least 1"),
            ));
        }
        if let Some(n) = &e.tpm
            && (*n.get_ref() == 0 || *n.get_ref() > u64::from(u32::MAX))
        {
            return Err(self.err(
                n.span(),
                format_args!("endpoint `{name}`: `tpm` must be from 1 to {}", u32::MAX),
            ));
        }
        // keys: each read now, into an ApiKey
        let mut keys = Vec::with_capacity(e.keys.len());
        let mut aliases = HashSet::new();
        for k in e.keys {
            let k_span = k.span();
            let k = k.into_inner();
            let alias = k.alias.get_ref().clone();
            if alias.trim().is_empty() {
                return Err(self.err(
                    k.alias.span(),
                    format_args!("endpoint `{name}`: a key's `alias` must not be empty"),
                ));
            }
            if !aliases.insert(alias.clone()) {
                return Err(self.err(
                    k.alias.span(),
                    format_args!("endpoint `{name}`: duplicate key alias `{alias}`"),
                ));
            }
            keys.push(self.key(&name, alias, k, k_span)?);
        }
        // limits are per key: on an endpoint without keys they would limit nothing
        if keys.is_empty()
            && let Some((what, at)) = e
                .rpm
                .as_ref()
                .map(|n| ("rpm", n.span()))
                .or_else(|| e.tpm.as_ref().map(|n| ("tpm", n.span())))
        {
            return Err(self.err(
                at,
                format_args!(
                    "endpoint `{name}`: `{what}` limits each key, and it has no `keys` \
                     (`max_concurrency` bounds an endpoint without keys)"
                ),
            ));
        }
        if keys.is_empty() && e.provider.requires_key() {
            return Err(self.err(
                span,
                format_args!(
                    "endpoint `{name}`: provider {} needs at least one key in `keys`",
                    e.provider
                ),
            ));
        }
        let mut timeouts = Timeouts::standard();
        if let Some(t) = e.timeouts {
            if let Some(d) = t.connect {
                timeouts = timeouts.with_connect(d.0);
            }
            if let Some(d) = t.first_byte {
                timeouts = timeouts.with_first_byte(d.0);
            }
            if let Some(d) = t.idle {
                timeouts = timeouts.with_idle(d.0);
            }
            if let Some(d) = t.total {
                timeouts = timeouts.with_total(Some(d.0));
            }
        }
        let mut headers = Vec::with_capacity(e.headers.len());
        for (header, value) in e.headers {
            if AUTH_HEADERS.contains(&header.to_ascii_lowercase().as_str()) {
                return Err(self.err(
                    value.span(),
                    format_args!(
                        "endpoint `{name}`: header `{header}` carries a key; put keys in `keys`"
                    ),
                ));
            }
            if !is_header_name(&header) {
                return Err(self.err(
                    value.span(),
                    format_args!(
                        "endpoint `{name}`: `{}` is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)",
                        header.escape_debug()
                    ),
                ));
            }
            if !is_header_value(value.get_ref()) {
                return Err(self.err(
                    value.span(),
                    format_args!(
                        "endpoint `{name}`: the value of header `{header}` holds a line break or a control character"
                    ),
                ));
            }
            headers.push((header, value.into_inner()));
        }
        Ok(EndpointSpec {
            name,
            provider: e.provider,
            base_url: e.base_url.map(Spanned::into_inner),
            keys,
            max_concurrency: e.max_concurrency.map(Spanned::into_inner),
            rpm: e.rpm.map(Spanned::into_inner),
            tpm: e.tpm.map(Spanned::into_inner),
            timeouts,
            headers,
        })
    }

    fn key(&self, endpoint: &str, alias: String, k: RawKey, span: Range<usize>) -> Result<KeySpec> {
        let what = format!("key `{alias}` of endpoint `{endpoint}`");
        let (key, source) = match (k.env, k.file, k.value) {
            // the endpoints left out: their secrets are not read (and the endpoint not kept)
            (Some(var), None, None) if !self.parts.inference() => {
                (ApiKey::new(""), KeySource::Env(var))
            }
            (None, Some(file), None) if !self.parts.inference() => {
                (ApiKey::new(""), KeySource::File(PathBuf::from(file)))
            }
            (Some(var), None, None) => match (self.env)(&var) {
                Some(v) if !v.trim().is_empty() => (ApiKey::new(v), KeySource::Env(var)),
                Some(_) => {
                    return Err(self.err(
                        span,
                        format_args!(
                            "{what}: environment variable {} is empty",
                            infermux_core::shown_var_name(&var)
                        ),
                    ));
                }
                None => {
                    return Err(self.err(
                        span,
                        format_args!(
                            "{what}: environment variable {} is not set",
                            infermux_core::shown_var_name(&var)
                        ),
                    ));
                }
            },
            (None, Some(file), None) => {
                let path = match self.base_dir {
                    Some(dir) if Path::new(&file).is_relative() => dir.join(&file),
                    _ => PathBuf::from(&file),
                };
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    self.err(
                        span.clone(),
                        format_args!("{what}: cannot read file {}: {e}", path.display()),
                    )
                })?;
                if text.trim().is_empty() {
                    return Err(self.err(
                        span,
                        format_args!("{what}: file {} is empty", path.display()),
                    ));
                }
                (ApiKey::new(text), KeySource::File(path))
            }
            (None, None, Some(value)) => {
                if value.trim().is_empty() {
                    return Err(self.err(span, format_args!("{what}: `value` is empty")));
                }
                (ApiKey::new(value), KeySource::Literal)
            }
            _ => {
                return Err(self.err(
                    span,
                    format_args!("{what}: give exactly one of `env`, `file` or `value`"),
                ));
            }
        };
        if !is_header_value(key.expose()) {
            // (the value is never shown: only where it came from)
            return Err(self.err(
                span,
                format_args!(
                    "{what}: the key holds a line break or a control character (two keys in one file?); it cannot be sent in a header"
                ),
            ));
        }
        Ok(KeySpec { alias, key, source })
    }

    fn group(
        &self,
        g: RawGroup,
        endpoints: &HashSet<String>,
        aliases: &HashMap<String, Vec<(String, Range<usize>)>>,
    ) -> Result<GroupSpec> {
        let name = g.name.get_ref().clone();
        if name.trim().is_empty() {
            return Err(self.err(g.name.span(), "a group's `name` must not be empty"));
        }
        let list_span = g.deployments.span();
        let list = g.deployments.into_inner();
        if list.is_empty() {
            return Err(self.err(list_span, format_args!("group `{name}` has no deployments")));
        }
        let mut seen = HashSet::new();
        let mut alias_of: HashMap<&str, &str> = HashMap::new();
        let mut deployments = Vec::with_capacity(list.len());
        let mut members = 0usize;
        for d in list {
            let d_span = d.span();
            let d = d.into_inner();
            if let Some((endpoint, keys)) = aliases.get_key_value(d.endpoint.get_ref()) {
                for (alias, _) in keys {
                    match alias_of.get(alias.as_str()) {
                        Some(other) if *other != endpoint.as_str() => {
                            return Err(self.err(
                            d.endpoint.span(),
                            format_args!(
                                "group `{name}` sends endpoints `{other}` and `{endpoint}`, both \
                                 with a key named `{alias}`: a group's keys need distinct aliases"
                            ),
                        ));
                        }
                        _ => {
                            alias_of.insert(alias, endpoint);
                        }
                    }
                }
            }
            if !endpoints.contains(d.endpoint.get_ref()) {
                return Err(self.err(
                    d.endpoint.span(),
                    format_args!(
                        "group `{name}` names unknown endpoint `{}`",
                        d.endpoint.get_ref()
                    ),
                ));
            }
            if !seen.insert((d.endpoint.get_ref().clone(), d.model.clone())) {
                return Err(self.err(
                    d_span,
                    format_args!(
                        "group `{name}` lists model `{}` on endpoint `{}` twice",
                        d.model,
                        d.endpoint.get_ref()
                    ),
                ));
            }
            if d.model.trim().is_empty() {
                return Err(self.err(
                    d_span,
                    format_args!("group `{name}`: a deployment's `model` must not be empty"),
                ));
            }
            members += aliases
                .get(d.endpoint.get_ref())
                .map_or(1, |keys| keys.len().max(1));
            let weight = match d.weight {
                Some(w) if *w.get_ref() == 0 => {
                    return Err(self.err(
                        w.span(),
                        format_args!("group `{name}`: a deployment's `weight` must be at least 1"),
                    ));
                }
                Some(w) if g.strategy != StrategyKind::Weighted => {
                    return Err(self.err(
                        w.span(),
                        format_args!(
                            "group `{name}`: `weight` is read only with strategy = \"weighted\""
                        ),
                    ));
                }
                Some(w) => w.into_inner(),
                None => 1,
            };
            deployments.push(DeploymentSpec {
                endpoint: d.endpoint.into_inner(),
                model: d.model,
                weight,
            });
        }
        if members > infermux_multiplex::MAX_MEMBERS {
            return Err(self.err(
                list_span,
                format_args!(
                    "group `{name}` has {members} members (deployments times their endpoints' keys): a group holds at most {}",
                    infermux_multiplex::MAX_MEMBERS
                ),
            ));
        }
        Ok(GroupSpec {
            name,
            strategy: g.strategy,
            deployments,
        })
    }

    fn fallbacks(
        &self,
        raw: Vec<Spanned<RawFallback>>,
        groups: &HashSet<String>,
    ) -> Result<Vec<FallbackSpec>> {
        let mut out: Vec<FallbackSpec> = Vec::with_capacity(raw.len());
        let mut spans: HashMap<String, Range<usize>> = HashMap::new();
        for f in raw {
            let span = f.span();
            let f = f.into_inner();
            let from = f.from.get_ref().clone();
            if !groups.contains(&from) {
                return Err(self.err(
                    f.from.span(),
                    format_args!("fallback from unknown group `{from}`"),
                ));
            }
            if spans.contains_key(&from) {
                return Err(self.err(
                    f.from.span(),
                    format_args!(
                        "a second [[fallback]] from `{from}`; list every target in one `to`"
                    ),
                ));
            }
            let to_span = f.to.span();
            let to_list = f.to.into_inner();
            if to_list.is_empty() {
                return Err(self.err(
                    to_span,
                    format_args!("fallback from `{from}`: `to` is empty"),
                ));
            }
            let mut to = Vec::with_capacity(to_list.len());
            for t in to_list {
                if !groups.contains(t.get_ref()) {
                    return Err(self.err(
                        t.span(),
                        format_args!(
                            "fallback from `{from}` names unknown group `{}`",
                            t.get_ref()
                        ),
                    ));
                }
                if to.contains(t.get_ref()) {
                    return Err(self.err(
                        t.span(),
                        format_args!("fallback from `{from}` lists `{}` twice", t.get_ref()),
                    ));
                }
                to.push(t.into_inner());
            }
            let on_span = f.on.span();
            let on: Vec<ErrorKind> = f.on.into_inner().into_iter().map(|k| k.0).collect();
            if on.is_empty() {
                return Err(self.err(
                    on_span,
                    format_args!("fallback from `{from}`: `on` is empty; name the error kinds"),
                ));
            }
            spans.insert(from.clone(), span);
            out.push(FallbackSpec { from, to, on });
        }
        if let Some(cycle) = find_cycle(&out) {
            let span = spans.get(&cycle[0]).cloned().unwrap_or(0..0);
            return Err(self.err(span, format_args!("fallback cycle: {}", cycle.join(" -> "))));
        }
        Ok(out)
    }
}

/// A cycle among the fallbacks (`a -> b -> a`), if any, starting at the earliest fallback in
/// file order that is on one.
fn find_cycle(fallbacks: &[FallbackSpec]) -> Option<Vec<String>> {
    let edges: HashMap<&str, &[String]> = fallbacks
        .iter()
        .map(|f| (f.from.as_str(), f.to.as_slice()))
        .collect();
    // depth-first from each fallback in file order; `path` is the current chain
    fn visit<'a>(
        node: &'a str,
        edges: &HashMap<&'a str, &'a [String]>,
        path: &mut Vec<&'a str>,
        done: &mut HashSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[at..].iter().map(|s| (*s).to_owned()).collect();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in edges.get(node).copied().unwrap_or_default() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = HashSet::new();
    for f in fallbacks {
        if let Some(c) = visit(&f.from, &edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}
