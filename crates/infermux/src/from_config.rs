//! Building a [`Client`] from an `infermux.toml` ([`Config`]) or from the environment.

use std::path::Path;
use std::sync::Arc;

use infermux_core::{Error, ErrorKind, Result};
use infermux_multiplex::Strategy;
use infermux_resilience::ResilienceConfig;
use infermux_resilience::breaker::BreakerConfig;
use infermux_resilience::queue::QueueConfig;
use infermux_resilience::retry::StandardRetry;

use crate::config::{Config, EmbedderSpec, Parts, SemanticSpec, StrategyKind};
use crate::{Client, ClientBuilder, Deployment, ModelGroup, NamedKey, SemanticCache};

fn strategy(kind: StrategyKind) -> Strategy {
    match kind {
        StrategyKind::Weighted => Strategy::Weighted,
        StrategyKind::LeastInFlight => Strategy::LeastInFlight,
        StrategyKind::LowestLatency => Strategy::LowestLatency,
        StrategyKind::LowestUsage => Strategy::LowestUsage,
        StrategyKind::FirstHealthy => Strategy::FirstHealthy,
        _ => Strategy::RoundRobin,
    }
}

/// The resilience settings of `[defaults]`.
fn resilience(config: &Config) -> Result<ResilienceConfig> {
    let d = &config.defaults;
    let mut r = ResilienceConfig::standard();
    // an absent `timeout` keeps the builder's deadline: without one, a key cooling for an
    // hour's Retry-After held every call waiting for it
    if let Some(t) = d.timeout {
        r = r.with_timeout(Some(t));
    }
    if let Some(spec) = &d.retry {
        let standard = StandardRetry::standard();
        let mut retry = StandardRetry::standard()
            .with_max_attempts(spec.max_attempts)
            .with_bases(spec.base, standard.throttle_base, spec.throttle_floor)
            .with_max_delay(spec.cap);
        if !spec.budget {
            retry = retry.with_budget(None);
        }
        r = r.with_retry(Arc::new(retry.validate()?));
    }
    if let Some(spec) = &d.breaker {
        r = r.with_breaker(spec.enabled.then(|| {
            BreakerConfig::standard()
                .with_failure_rate_threshold((spec.failure_rate * 100.0) as f32)
                .with_minimum_calls(spec.minimum_calls)
                .with_open_wait(spec.open_for)
                .with_half_open_probes(spec.half_open_probes)
        }));
    }
    if let Some(spec) = &d.queue {
        r = r.with_queue(QueueConfig::standard().with_max_queued(spec.max_queued));
    }
    Ok(r)
}

/// The builder `config` describes (every endpoint, key, group and fallback, and the
/// `[defaults]`), to adjust before [`ClientBuilder::build`].
pub(crate) fn builder(config: &Config) -> Result<ClientBuilder> {
    config.check_has_endpoints()?;
    let mut b = Client::builder().resilience(resilience(config)?);
    if let Some(t) = config.defaults.timeout {
        b = b.timeout(t);
    }
    b = b.default_priority(config.defaults.priority);
    for e in &config.endpoints {
        b = b.shared_endpoint(e.provider()?);
        if let Some(n) = e.max_concurrency {
            b = b.max_concurrency(&e.name, n);
        }
        for k in &e.keys {
            let mut key = NamedKey::new(&k.alias, k.key.clone());
            if let Some(rpm) = e.rpm {
                key = key.with_rpm(rpm);
            }
            if let Some(tpm) = e.tpm {
                key = key.with_tpm(u32::try_from(tpm).unwrap_or(u32::MAX));
            }
            b = b.key(&e.name, key);
        }
    }
    for g in &config.groups {
        let mut group = ModelGroup::new(&g.name).strategy(strategy(g.strategy));
        for d in &g.deployments {
            group = group.deployment(Deployment::new(&d.endpoint, &d.model).weight(d.weight));
        }
        b = b.group(group);
    }
    for f in &config.fallbacks {
        b = b.fallback(
            &f.from,
            f.to.iter().map(String::as_str),
            f.on.iter().copied(),
        );
    }
    if let Some(c) = &config.cache {
        b = b.cache(c.config.clone());
        if let Some(url) = &c.redis_url {
            #[cfg(feature = "redis")]
            {
                b = b.cache_redis(infermux_cache::RedisStore::new(url, &c.redis_prefix)?);
            }
            #[cfg(not(feature = "redis"))]
            {
                let _ = url;
                return Err(Error::new(
                    ErrorKind::Config,
                    "[cache] redis_url needs infermux built with the feature `redis`",
                ));
            }
        }
        if let Some(s) = &c.semantic {
            b = b.semantic_cache(semantic(s)?);
        }
    }
    if let Some(batching) = &config.batching {
        b = b.batch_embeddings(batching.clone());
    }
    Ok(b)
}

/// The semantic tier `[cache.semantic]` describes.
fn semantic(spec: &SemanticSpec) -> Result<SemanticCache> {
    let s = match &spec.embedder {
        EmbedderSpec::Group(group) => {
            SemanticCache::via_group(group, crate::extras::remote_verifier(spec.threshold)?)
        }
        EmbedderSpec::Local(dir) => local_semantic(dir, spec.threshold)?,
        #[allow(unreachable_patterns)]
        _ => {
            return Err(Error::new(
                ErrorKind::Config,
                "this embedder is not supported by this build",
            ));
        }
    };
    Ok(s.with_config(spec.config.clone()))
}

#[cfg(feature = "local-embed")]
fn local_semantic(dir: &Path, threshold: Option<f32>) -> Result<SemanticCache> {
    SemanticCache::local(dir, threshold)
}

#[cfg(not(feature = "local-embed"))]
fn local_semantic(dir: &Path, _threshold: Option<f32>) -> Result<SemanticCache> {
    Err(Error::new(
        ErrorKind::Config,
        format!(
            "`embedder = \"local\"` ({}) needs infermux built with the feature `local-embed`",
            dir.display()
        ),
    ))
}

impl Client {
    /// The client an `infermux.toml` describes (see `docs/config.md`): its endpoints with
    /// their keys and limits, its model groups, fallbacks and `[defaults]`.
    ///
    /// ```
    /// use infermux::Client;
    /// use infermux::config::Config;
    /// let config = Config::from_toml_str(
    ///     r#"
    ///     [defaults]
    ///     timeout = "30s"
    ///
    ///     [[endpoint]]
    ///     name = "local"
    ///     provider = "openai-compat"
    ///     base_url = "http://127.0.0.1:8080/v1"
    ///     keys = [ { alias = "k1", value = "sk-1" }, { alias = "k2", value = "sk-2" } ]
    ///
    ///     [[group]]
    ///     name = "chat"
    ///     deployments = [ { endpoint = "local", model = "smollm2" } ]
    ///     "#,
    ///     "infermux.toml",
    /// )?;
    /// let client = Client::from_config(&config)?;
    /// assert_eq!(client.groups(), vec!["chat"]);
    /// # Ok::<(), infermux::Error>(())
    /// ```
    pub fn from_config(config: &Config) -> Result<Client> {
        builder(config)?.build()
    }

    /// [`Client::from_config`] of the file at `path`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> infermux::Result<()> {
    /// # let sim = infermux_testkit::Simulator::start(infermux_testkit::FaultPlan::none()).await.unwrap();
    /// # let base = format!("{}/v1", sim.url());
    /// use infermux::{ChatRequest, Client, Message};
    /// let path = std::env::temp_dir().join(format!("infermux-{}.toml", std::process::id()));
    /// std::fs::write(&path, format!(r#"
    ///     [[endpoint]]
    ///     name = "local"
    ///     provider = "openai-compat"
    ///     base_url = "{base}"
    ///
    ///     [[group]]
    ///     name = "chat"
    ///     deployments = [ {{ endpoint = "local", model = "smollm2" }} ]
    /// "#)).unwrap();
    /// let client = Client::from_path(&path)?;
    /// # std::fs::remove_file(&path).unwrap();
    /// let answer = client.chat(ChatRequest::new("chat", vec![Message::user("Hi!")])).await?;
    /// assert!(!answer.text().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn from_path(path: impl AsRef<Path>) -> Result<Client> {
        // (`[s3]`'s credentials are for `infermux s3`: not read here)
        Self::from_config(&Config::from_path_for(path.as_ref(), Parts::Inference)?)
    }

    /// The client the environment describes: the file `INFERMUX_CONFIG` names when set, else
    /// one OpenAI-compatible endpoint at `OPENAI_BASE_URL` with the optional key
    /// `OPENAI_API_KEY` (see [`OpenAiCompat::from_env`](crate::openai_compat::OpenAiCompat::from_env)).
    /// Fails with [`ErrorKind::Config`] naming what is missing.
    ///
    /// ```no_run
    /// // (not run in the docs' tests: it reads this process's environment)
    /// # async fn demo() -> infermux::Result<()> {
    /// // INFERMUX_CONFIG=infermux.toml, or OPENAI_BASE_URL=http://127.0.0.1:8080/v1
    /// let client = infermux::Client::from_env()?;
    /// let models = client.models().await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "openai-compat")]
    pub fn from_env() -> Result<Client> {
        if let Some(path) = std::env::var_os("INFERMUX_CONFIG").filter(|p| !p.is_empty()) {
            return Self::from_path(path);
        }
        let provider = crate::openai_compat::OpenAiCompat::from_env().map_err(|e| {
            Error::new(
                ErrorKind::Config,
                "neither INFERMUX_CONFIG nor OPENAI_BASE_URL is set",
            )
            .with_source(e)
        })?;
        Ok(Client::new(provider))
    }
}

#[cfg(feature = "s3")]
impl crate::config::S3Spec {
    /// The kit's configuration: endpoints with their credentials, the transfer sizes, the
    /// selection, and `[defaults.breaker]` / `[defaults.queue]` for each endpoint.
    pub fn kit_config(&self, defaults: &crate::config::Defaults) -> Result<infermux_s3::S3Config> {
        use crate::config::S3CredentialSpec;
        use infermux_s3::{S3Credentials, S3EndpointConfig, TransferConfig};
        let cfg_err = |e: infermux_s3::S3Error| Error::new(ErrorKind::Config, e.to_string());
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        for e in &self.endpoints {
            let mut c = match &e.url {
                Some(u) => S3EndpointConfig::new(&e.name, u),
                None => S3EndpointConfig::aws(&e.name, &e.region),
            }
            .with_region(&e.region)
            .with_path_style(e.path_style)
            .with_credentials(match &e.credentials {
                S3CredentialSpec::Env {
                    access_key_id,
                    secret,
                    session_token,
                    ..
                } => S3Credentials::Static {
                    access_key_id: access_key_id.clone(),
                    secret_access_key: secret.clone(),
                    session_token: session_token.clone(),
                },
                S3CredentialSpec::Profile { name, file } => S3Credentials::Profile {
                    name: name.clone(),
                    file: file.clone(),
                },
                _ => S3Credentials::Anonymous,
            });
            if let Some(spec) = &defaults.breaker {
                c = c.with_breaker(spec.enabled.then(|| {
                    BreakerConfig::standard()
                        .with_failure_rate_threshold((spec.failure_rate * 100.0) as f32)
                        .with_minimum_calls(spec.minimum_calls)
                        .with_open_wait(spec.open_for)
                        .with_half_open_probes(spec.half_open_probes)
                }));
            }
            let mut queue = QueueConfig::standard();
            if let Some(q) = &defaults.queue {
                queue = queue.with_max_queued(q.max_queued);
            }
            if let Some(n) = e.max_concurrency {
                queue = queue.with_permits(n);
            }
            c = c.with_queue(queue);
            let (connect, request) = (c.connect_timeout, c.attempt_timeout);
            c = c.with_timeouts(
                e.connect_timeout.unwrap_or(connect),
                e.request_timeout.unwrap_or(request),
            );
            endpoints.push(c);
        }
        let transfer = TransferConfig::default()
            .with_part_size(self.part_size)
            .with_concurrency(self.concurrency)
            .with_multipart_threshold(self.multipart_threshold);
        Ok(infermux_s3::S3Config::new(endpoints)
            .with_selection(self.selection.parse().map_err(cfg_err)?)
            .with_transfer(transfer)
            .with_max_attempts(self.max_attempts)
            .with_timeout(self.timeout))
    }
}

#[cfg(feature = "s3")]
impl Config {
    /// The S3 kit `[s3]` describes; a [`ErrorKind::Config`] error when the file has no `[s3]`
    /// or a profile cannot be read.
    pub fn s3_kit(&self) -> Result<infermux_s3::S3Kit> {
        let spec = self.s3.as_ref().ok_or_else(|| {
            Error::new(ErrorKind::Config, "the configuration has no [s3] section")
        })?;
        infermux_s3::S3Kit::new(spec.kit_config(&self.defaults)?)
            .map_err(|e| Error::new(ErrorKind::Config, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LOCAL: &str = "[[endpoint]]\nname = \"local\"\nprovider = \"vllm\"\nbase_url = \"http://127.0.0.1:9/v1\"\n";

    #[test]
    fn a_file_without_a_timeout_keeps_the_builders_call_deadline() {
        let config = Config::from_toml_str(LOCAL, "t").unwrap();
        assert_eq!(
            resilience(&config).unwrap().timeout,
            ResilienceConfig::standard().timeout
        );
        assert_eq!(
            ResilienceConfig::standard().timeout,
            Some(Duration::from_secs(300))
        );
        let config =
            Config::from_toml_str(&format!("[defaults]\ntimeout = \"7s\"\n{LOCAL}"), "t").unwrap();
        assert_eq!(
            resilience(&config).unwrap().timeout,
            Some(Duration::from_secs(7))
        );
    }
}
