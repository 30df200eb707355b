//! [`S3Kit`]: the endpoints, their pool and the call policy, and the single-request
//! operations (head, list, get, put, delete, copy, presign). Transfers are in `transfer.rs`,
//! folder sync in `sync.rs`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use bytes::Bytes;
use infermux_core::{
    Capabilities, EndpointId, Error, ErrorKind, EventStream, Idempotency, Provider, Request,
    RequestContext, Response, Result as CoreResult,
};
use infermux_multiplex::{MemberSpec, MultiPool, PoolConfig, Strategy};
use infermux_resilience::breaker::BreakerState;
use infermux_resilience::retry::{KeyRetry, StandardRetry};
use infermux_resilience::{AttemptExecutor, CallPolicy, Op};
use sha2::Digest;

use crate::config::{S3Config, S3Credentials, S3EndpointConfig, Selection, TransferConfig};
use crate::error::{S3Error, sdk_error};
use crate::key::check_key;

/// The user-metadata key (`x-amz-meta-infermux-sha256`) that carries an object's SHA-256, set
/// by every upload of the kit and checked by every whole-object download.
pub const SHA256_META: &str = "infermux-sha256";

/// An object's listing or `HEAD` record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectInfo {
    /// The key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its ETag (quotes removed).
    pub etag: Option<String>,
    /// When it was last modified.
    pub last_modified: Option<SystemTime>,
    /// The SHA-256 (hex) an upload of the kit stored with it (`HEAD` only; listings carry no
    /// metadata).
    pub sha256: Option<String>,
    /// Whether the ETag is the object's MD5 (`HEAD` only): a single-part ETag of an object
    /// not encrypted with SSE-KMS or SSE-C, whose ETags are not MD5s. A download with no
    /// SHA-256 checks the MD5 only then.
    pub etag_is_md5: bool,
}

/// Whether an object's ETag is its MD5: 32 hex digits (a multipart ETag has a `-N` suffix),
/// and no SSE-KMS (`aws:kms`, `aws:kms:dsse`) or SSE-C encryption.
fn etag_is_md5(etag: Option<&str>, sse: Option<&str>, sse_customer_key: bool) -> bool {
    let plain = etag.is_some_and(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()));
    plain && !sse_customer_key && !sse.is_some_and(|s| s.starts_with("aws:kms"))
}

/// What a finished upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Uploaded {
    /// The key.
    pub key: String,
    /// Bytes stored.
    pub size: u64,
    /// The SHA-256 (hex) of what was stored.
    pub sha256: String,
    /// The object's ETag.
    pub etag: Option<String>,
    /// Parts (1 for a single `PUT`).
    pub parts: u32,
    /// Parts a resumed upload found already on the server and did not send again.
    pub parts_reused: u32,
    /// The endpoint that stored it.
    pub endpoint: String,
}

/// One endpoint's health and counters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EndpointStatus {
    /// The endpoint's name.
    pub name: String,
    /// Its breaker's state.
    pub breaker: BreakerState,
    /// Attempts made on it.
    pub attempts: u64,
    /// Attempts that failed.
    pub failures: u64,
    /// Times its breaker opened.
    pub trips: u64,
}

/// The stand-in [`Provider`] of an S3 endpoint in the pool: S3 operations run through
/// [`CallPolicy::run`], never through the `Request` enum, so it offers nothing.
#[derive(Debug)]
struct S3Member {
    id: EndpointId,
}

#[async_trait]
impl Provider for S3Member {
    fn name(&self) -> &'static str {
        "s3"
    }
    fn endpoint(&self) -> &EndpointId {
        &self.id
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
    }
    async fn call(&self, _request: &Request, _ctx: &RequestContext) -> CoreResult<Response> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "an S3 endpoint serves no inference",
        ))
    }
    async fn stream(&self, _request: &Request, _ctx: &RequestContext) -> CoreResult<EventStream> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "an S3 endpoint serves no inference",
        ))
    }
}

pub(crate) struct Endpoint {
    pub(crate) name: String,
    pub(crate) client: Client,
    pub(crate) exec: Arc<AttemptExecutor>,
    /// The longest one request may take, its body included (the SDK's own attempt timeout
    /// stops at a streamed body's headers).
    pub(crate) attempt_timeout: Duration,
}

impl Endpoint {
    /// `fut`, one request to this endpoint, bounded by its attempt timeout.
    fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, Error>>,
    ) -> impl Future<Output = Result<T, Error>> {
        let limit = self.attempt_timeout;
        async move {
            match tokio::time::timeout(limit, fut).await {
                Ok(r) => r,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!("the S3 request took longer than its attempt timeout ({limit:?}), body included"),
                )
                .with_reached_server(true)),
            }
        }
    }
}

pub(crate) struct Inner {
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) pool: MultiPool,
    pub(crate) policy: CallPolicy,
    /// The policy of the operations bound to one endpoint (a multipart upload's steps): no
    /// other endpoint to go to, so a throttled or failing one is waited for with backoff and
    /// jitter (the pool's policy retries such errors at once, elsewhere).
    pub(crate) policy_on_one: CallPolicy,
    pub(crate) transfer: TransferConfig,
    pub(crate) timeout: Option<Duration>,
    /// Aborts of multipart uploads whose futures were dropped, still running.
    pub(crate) aborts: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Several S3-compatible endpoints behind one pool and one call policy: every operation is
/// admitted by the pool (the endpoints' permits, breakers and counters, the [`Selection`]),
/// retried by the call policy (another endpoint when one fails), and mapped to [`S3Error`].
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), infermux_s3::S3Error> {
/// use infermux_s3::{S3Config, S3Credentials, S3EndpointConfig, S3Kit};
/// let kit = S3Kit::new(S3Config::new(vec![
///     S3EndpointConfig::new("primary", "http://127.0.0.1:9000")
///         .with_credentials(S3Credentials::new("access", "secret")),
///     S3EndpointConfig::new("replica", "http://127.0.0.1:9001")
///         .with_credentials(S3Credentials::new("access", "secret")),
/// ]))?;
/// kit.put_bytes("models", "hello.txt", "hi".into()).await?;
/// assert_eq!(&kit.get_bytes("models", "hello.txt").await?[..], b"hi");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct S3Kit {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for S3Kit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Kit")
            .field(
                "endpoints",
                &self
                    .inner
                    .endpoints
                    .iter()
                    .map(|e| &e.name)
                    .collect::<Vec<_>>(),
            )
            .field("transfer", &self.inner.transfer)
            .finish_non_exhaustive()
    }
}

fn resolve_credentials(name: &str, c: &S3Credentials) -> Result<Option<Credentials>, S3Error> {
    let env = |var: &str| {
        std::env::var(var).map_err(|_| {
            S3Error::Config(format!(
                "endpoint `{name}`: environment variable {} is not set",
                infermux_core::shown_var_name(var)
            ))
        })
    };
    Ok(match c {
        S3Credentials::Static {
            access_key_id,
            secret_access_key,
            session_token,
        } => Some(Credentials::new(
            access_key_id,
            secret_access_key.expose(),
            session_token.as_ref().map(|t| t.expose().to_owned()),
            None,
            "infermux-static",
        )),
        S3Credentials::Env {
            access_key_id_var,
            secret_access_key_var,
            session_token_var,
        } => Some(Credentials::new(
            env(access_key_id_var)?,
            env(secret_access_key_var)?,
            session_token_var
                .as_deref()
                .and_then(|v| std::env::var(v).ok()),
            None,
            "infermux-env",
        )),
        S3Credentials::Profile {
            name: profile,
            file,
        } => {
            let path = match file {
                Some(p) => p.clone(),
                None => match std::env::var_os("AWS_SHARED_CREDENTIALS_FILE") {
                    Some(p) => p.into(),
                    None => std::env::var_os("HOME")
                        .map(|h| std::path::Path::new(&h).join(".aws/credentials"))
                        .ok_or_else(|| {
                            S3Error::Config("HOME is not set: no ~/.aws/credentials".into())
                        })?,
                },
            };
            let text = std::fs::read_to_string(&path).map_err(|e| S3Error::io(&path, e))?;
            let p = crate::profile::find(&text, profile).ok_or_else(|| {
                S3Error::Config(format!(
                    "endpoint `{name}`: profile `{profile}` in {} has no aws_access_key_id and \
                     aws_secret_access_key",
                    path.display()
                ))
            })?;
            Some(Credentials::new(
                p.access_key_id,
                p.secret_access_key,
                p.session_token,
                None,
                "infermux-profile",
            ))
        }
        S3Credentials::Anonymous => None,
    })
}

fn client_for(c: &S3EndpointConfig) -> Result<Client, S3Error> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut b = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(c.region.clone()))
        .force_path_style(c.path_style)
        .http_client(http)
        // retries are the call policy's, across endpoints
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(c.connect_timeout)
                .operation_attempt_timeout(c.attempt_timeout)
                .build(),
        )
        .stalled_stream_protection(StalledStreamProtectionConfig::enabled().build())
        // integrity is ours (a CRC32C we compute per part and PUT, the object's SHA-256 end to
        // end): the SDK adds no checksum of its own where the operation does not require one
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(url) = &c.url {
        // the URL itself is never in an error: it may carry a password
        let parsed = url::Url::parse(url)
            .map_err(|e| S3Error::Config(format!("endpoint `{}`: bad url: {e}", c.name)))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(S3Error::Config(format!(
                "endpoint `{}`: url must be http or https",
                c.name
            )));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(S3Error::Config(format!(
                "endpoint `{}`: a url with credentials in it (user:password@) is not used: S3 \
                 keys go in the endpoint's credentials",
                c.name
            )));
        }
        b = b.endpoint_url(url.trim_end_matches('/'));
    }
    match resolve_credentials(&c.name, &c.credentials)? {
        Some(creds) => b = b.credentials_provider(creds),
        None => b = b.allow_no_auth(),
    }
    Ok(Client::from_conf(b.build()))
}

impl S3Kit {
    /// A kit over `config`'s endpoints. Credentials from the environment or a profile are read
    /// now; an [`S3Error::Config`] when one is missing, a URL is bad, there is no endpoint or
    /// the transfer sizes are invalid.
    pub fn new(config: S3Config) -> Result<Self, S3Error> {
        if config.endpoints.is_empty() {
            return Err(S3Error::Config("at least one endpoint is needed".into()));
        }
        if config.max_attempts == 0 {
            return Err(S3Error::Config("max_attempts must be at least 1".into()));
        }
        let transfer = config.transfer.validate()?;
        let mut names = std::collections::HashSet::new();
        let mut endpoints = Vec::with_capacity(config.endpoints.len());
        for c in &config.endpoints {
            if !names.insert(c.name.clone()) {
                return Err(S3Error::Config(format!(
                    "two endpoints are named `{}`",
                    c.name
                )));
            }
            let client = client_for(c)?;
            let member = S3Member {
                id: EndpointId::new(&c.name),
            };
            let exec = AttemptExecutor::new(Arc::new(member), c.queue.clone(), c.breaker.clone())
                .map_err(|e| S3Error::Config(format!("endpoint `{}`: {e}", c.name)))?;
            endpoints.push(Endpoint {
                name: c.name.clone(),
                client,
                exec: Arc::new(exec),
                attempt_timeout: c.attempt_timeout,
            });
        }
        let strategy = match config.selection {
            Selection::RoundRobin => Strategy::RoundRobin,
            Selection::LeastLoaded => Strategy::LeastInFlight,
            _ => Strategy::FirstHealthy,
        };
        let members = (0..endpoints.len()).map(MemberSpec::new).collect();
        // requests wait in the pool, never in an endpoint's queue: the pool lets as many wait
        // as the most any endpoint's queue allows
        let max_queued = config
            .endpoints
            .iter()
            .map(|c| c.queue.max_queued)
            .max()
            .unwrap_or(0);
        let pool = MultiPool::new(
            endpoints.iter().map(|e| e.exec.clone()).collect(),
            members,
            PoolConfig::new(strategy).with_max_queued(max_queued),
        )
        .map_err(|e| S3Error::Config(e.to_string()))?;
        let standard = StandardRetry::standard()
            .with_max_attempts(config.max_attempts)
            .validate()
            .map_err(|e| S3Error::Config(e.to_string()))?;
        let standard = Arc::new(standard);
        // an endpoint's failure while another can serve is retried at once on the other
        let retry = Arc::new(KeyRetry::new(standard.clone(), config.max_attempts));
        let policy = CallPolicy::new(retry, config.timeout);
        let policy_on_one = CallPolicy::new(standard, config.timeout);
        Ok(S3Kit {
            inner: Arc::new(Inner {
                endpoints,
                pool,
                policy,
                policy_on_one,
                transfer,
                timeout: config.timeout,
                aborts: std::sync::Mutex::default(),
            }),
        })
    }

    /// The transfer sizes.
    pub fn transfer(&self) -> TransferConfig {
        self.inner.transfer
    }

    /// Each endpoint's breaker state and counters.
    pub fn status(&self) -> Vec<EndpointStatus> {
        self.inner
            .endpoints
            .iter()
            .map(|e| {
                let s = e.exec.counters().snapshot();
                EndpointStatus {
                    name: e.name.clone(),
                    breaker: e.exec.breaker_state(),
                    attempts: s.requests,
                    failures: s.failures_total(),
                    trips: s.breaker_trips,
                }
            })
            .collect()
    }

    /// The endpoints' counters and the pool's in Prometheus text.
    pub fn render_prometheus(&self) -> String {
        let snaps: Vec<_> = self
            .inner
            .endpoints
            .iter()
            .map(|e| (EndpointId::new(&e.name), e.exec.counters().snapshot()))
            .collect();
        let mut out = infermux_resilience::render_prometheus(&snaps);
        self.inner.pool.render_prometheus("s3", &mut out);
        out
    }

    pub(crate) fn ctx(&self) -> RequestContext {
        let ctx = RequestContext::new();
        match self.inner.timeout {
            Some(t) => ctx.with_timeout(t),
            None => ctx,
        }
    }

    /// Runs one operation through the pool and the call policy; `f` makes one attempt on the
    /// endpoint the pool leased. Returns the value and the endpoint's index.
    pub(crate) async fn run<'a, T, F, Fut>(
        &'a self,
        name: &'static str,
        idempotency: Idempotency,
        ctx: &RequestContext,
        mut f: F,
    ) -> Result<(T, usize), Error>
    where
        F: FnMut(&'a Endpoint) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        use futures_util::TryFutureExt as _;
        let inner = &*self.inner;
        let refused: std::sync::Mutex<Option<Error>> = std::sync::Mutex::new(None);
        let called = inner
            .policy
            .run(
                &inner.pool,
                Op::new(name, idempotency),
                ctx,
                |member, _actx| {
                    let ep = &inner.endpoints[member as usize];
                    ep.bounded(f(ep)).inspect_err(|e| {
                        if e.kind() == ErrorKind::Auth {
                            *refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                        }
                    })
                },
            )
            .await;
        match called {
            Ok(called) => Ok((called.value, called.member as usize)),
            // the pool took every endpoint whose credentials were refused out: the refusal is
            // the cause worth reporting, not the empty pool it left
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                let refused = refused.into_inner().unwrap_or_else(|p| p.into_inner());
                Err(match refused {
                    Some(r) => r.with_attempts(e.attempts()),
                    None => e,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Runs one operation on endpoint `ep` only (a multipart upload's parts), with its permits,
    /// breaker, counters and retries that back off (a `SlowDown` on the parts was retried at
    /// once, four times, into the prefix S3 was throttling).
    pub(crate) async fn run_on<'a, T, F, Fut>(
        &'a self,
        ep: usize,
        name: &'static str,
        idempotency: Idempotency,
        ctx: &RequestContext,
        mut f: F,
    ) -> Result<T, Error>
    where
        F: FnMut(&'a Endpoint) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let inner = &*self.inner;
        let endpoint = &inner.endpoints[ep];
        let called = inner
            .policy_on_one
            .run(
                &*endpoint.exec,
                Op::new(name, idempotency),
                ctx,
                |_member, _actx| endpoint.bounded(f(endpoint)),
            )
            .await?;
        Ok(called.value)
    }

    pub(crate) fn endpoint_name(&self, ep: usize) -> &str {
        &self.inner.endpoints[ep].name
    }

    /// Creates `bucket` (an existing bucket of ours is not an error).
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        erase(async move {
            let ctx = self.ctx();
            let r = self
                .run("s3.create_bucket", Idempotency::Idempotent, &ctx, |ep| {
                    let req = ep.client.create_bucket().bucket(bucket);
                    async move {
                        match req.send().await {
                            Ok(_) => Ok(()),
                            Err(e) => {
                                let e = sdk_error("CreateBucket", e);
                                match e.provider_code() {
                                    Some("BucketAlreadyOwnedByYou") => Ok(()),
                                    // someone's: ours when our credentials can read it
                                    Some("BucketAlreadyExists") => {
                                        match ep.client.head_bucket().bucket(bucket).send().await {
                                            Ok(_) => Ok(()),
                                            Err(_) => Err(e),
                                        }
                                    }
                                    _ => Err(e),
                                }
                            }
                        }
                    }
                })
                .await;
            r.map(|_| ())
                .map_err(|e| S3Error::from_call(e, bucket, None))
        })
        .await
    }

    /// An object's size, ETag, modification time and stored SHA-256.
    pub async fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo, S3Error> {
        erase(async move {
            check_key(key)?;
            let ctx = self.ctx();
            self.head_in(&ctx, bucket, key).await.map(|(info, _)| info)
        })
        .await
    }

    pub(crate) async fn head_in(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectInfo, usize), S3Error> {
        self.run("s3.head", Idempotency::Idempotent, ctx, |ep| {
            let req = ep.client.head_object().bucket(bucket).key(key);
            async move {
                let out = req.send().await.map_err(|e| sdk_error("HeadObject", e))?;
                let etag_is_md5 = etag_is_md5(
                    out.e_tag().map(unquote).as_deref(),
                    out.server_side_encryption().map(|s| s.as_str()),
                    out.sse_customer_algorithm().is_some(),
                );
                Ok(ObjectInfo {
                    key: key.to_owned(),
                    size: out.content_length().map_or(0, |n| n.max(0) as u64),
                    etag_is_md5,
                    etag: out.e_tag().map(unquote),
                    last_modified: out
                        .last_modified()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                    sha256: out
                        .metadata()
                        .and_then(|m| m.get(SHA256_META))
                        .map(|s| s.to_ascii_lowercase()),
                })
            }
        })
        .await
        .map_err(|e| S3Error::from_call(e, bucket, Some(key)))
    }

    /// Every object under `prefix`, page by page (each page one call through the policy).
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>, S3Error> {
        erase(async move {
            let mut all = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let (page, next) = self
                    .list_page(bucket, prefix, token.as_deref(), 1000)
                    .await?;
                all.extend(page);
                match next {
                    Some(t) => token = Some(t),
                    None => return Ok(all),
                }
            }
        })
        .await
    }

    /// One page of at most `max_keys` objects under `prefix`, from `token` on; returns the
    /// page and the token of the next one.
    pub async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<&str>,
        max_keys: i32,
    ) -> Result<(Vec<ObjectInfo>, Option<String>), S3Error> {
        erase(async move {
            let ctx = self.ctx();
            self.run("s3.list", Idempotency::Idempotent, &ctx, |ep| {
                let mut req = ep
                    .client
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(prefix)
                    .max_keys(max_keys);
                if let Some(t) = token {
                    req = req.continuation_token(t);
                }
                async move {
                    let out = req
                        .send()
                        .await
                        .map_err(|e| sdk_error("ListObjectsV2", e))?;
                    let page = out
                        .contents()
                        .iter()
                        .filter_map(|o| {
                            Some(ObjectInfo {
                                key: o.key()?.to_owned(),
                                size: o.size().map_or(0, |n| n.max(0) as u64),
                                etag: o.e_tag().map(unquote),
                                last_modified: o
                                    .last_modified()
                                    .and_then(|t| SystemTime::try_from(*t).ok()),
                                sha256: None,
                                // a listing does not say how the object is encrypted
                                etag_is_md5: false,
                            })
                        })
                        .collect();
                    // a listing said to go on has a new token (without one, or with the same
                    // one again, ending or going on would return part of it, or loop)
                    let next = match (out.is_truncated(), out.next_continuation_token()) {
                        (Some(true), Some(t)) if token != Some(t) => Some(t.to_owned()),
                        (Some(true), t) => {
                            return Err(Error::new(
                                ErrorKind::Decode,
                                format!(
                                    "ListObjectsV2 says the listing goes on but gives {}",
                                    if t.is_some() {
                                        "the same continuation token again"
                                    } else {
                                        "no continuation token"
                                    }
                                ),
                            ));
                        }
                        _ => None,
                    };
                    Ok((page, next))
                }
            })
            .await
            .map(|(v, _)| v)
            .map_err(|e| S3Error::from_call(e, bucket, None))
        })
        .await
    }

    /// Stores `body` as one object (a single `PUT` with its CRC32C, checked by the server, and
    /// its SHA-256 in the metadata).
    pub async fn put_bytes(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
    ) -> Result<Uploaded, S3Error> {
        erase(async move {
            check_key(key)?;
            let sha = hex::encode(sha2::Sha256::digest(&body));
            let ctx = self.ctx();
            self.put_in(&ctx, bucket, key, body, sha).await
        })
        .await
    }

    pub(crate) async fn put_in(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        key: &str,
        body: Bytes,
        sha: String,
    ) -> Result<Uploaded, S3Error> {
        let crc = crc32c_b64(&body);
        let size = body.len() as u64;
        let (etag, ep) = self
            .run("s3.put", Idempotency::Idempotent, ctx, |ep| {
                let req = ep
                    .client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .checksum_crc32_c(crc.clone())
                    .content_length(size as i64)
                    .metadata(SHA256_META, sha.clone())
                    .body(ByteStream::from(body.clone()));
                async move {
                    // the body's integrity is its CRC32C, which the server checks (and TLS on
                    // https): SigV4 signs the headers, CRC included, not a second hash of the body
                    let out = req
                        .customize()
                        .disable_payload_signing()
                        .send()
                        .await
                        .map_err(|e| sdk_error("PutObject", e))?;
                    Ok(out.e_tag().map(unquote))
                }
            })
            .await
            .map_err(|e| S3Error::from_call(e, bucket, None))?;
        Ok(Uploaded {
            key: key.to_owned(),
            size,
            sha256: sha,
            etag,
            parts: 1,
            parts_reused: 0,
            endpoint: self.endpoint_name(ep).to_owned(),
        })
    }

    /// A whole object in memory; its SHA-256 is checked against the one stored with it.
    pub async fn get_bytes(&self, bucket: &str, key: &str) -> Result<Bytes, S3Error> {
        erase(async move {
            check_key(key)?;
            let ctx = self.ctx();
            let (body, meta) = self
                .run("s3.get", Idempotency::Idempotent, &ctx, |ep| {
                    let req = ep.client.get_object().bucket(bucket).key(key);
                    async move {
                        let out = req.send().await.map_err(|e| sdk_error("GetObject", e))?;
                        let sha = out
                            .metadata()
                            .and_then(|m| m.get(SHA256_META))
                            .map(|s| s.to_ascii_lowercase());
                        let len = out.content_length();
                        let body = out.body.collect().await.map_err(|e| {
                            Error::new(ErrorKind::Connect, format!("S3 GetObject: body: {e}"))
                                .with_reached_server(true)
                        })?;
                        Ok((body.into_bytes(), (sha, len)))
                    }
                })
                .await
                .map(|(v, _)| v)
                .map_err(|e| S3Error::from_call(e, bucket, Some(key)))?;
            let (sha, len) = meta;
            if let Some(len) = len
                && len as u64 != body.len() as u64
            {
                return Err(S3Error::ChecksumMismatch {
                    key: key.to_owned(),
                    expected: format!("{len} bytes"),
                    actual: format!("{} bytes", body.len()),
                });
            }
            if let Some(expected) = sha {
                let actual = hex::encode(sha2::Sha256::digest(&body));
                if actual != expected {
                    return Err(S3Error::ChecksumMismatch {
                        key: key.to_owned(),
                        expected,
                        actual,
                    });
                }
            }
            Ok(body)
        })
        .await
    }

    /// Bytes `start..end` of an object (`If-Match` on `etag` when given: a changed object is
    /// [`S3Error::ObjectChanged`]).
    pub async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        range: std::ops::Range<u64>,
        etag: Option<&str>,
    ) -> Result<Bytes, S3Error> {
        erase(async move {
            check_key(key)?;
            if range.start >= range.end {
                return Ok(Bytes::new());
            }
            let ctx = self.ctx();
            self.run("s3.get_range", Idempotency::Idempotent, &ctx, |ep| {
                let req = ranged_get(&ep.client, bucket, key, &range, etag);
                let range = range.clone();
                async move {
                    let out = req.send().await.map_err(|e| sdk_error("GetObject", e))?;
                    // the range asked for (a server ignoring `Range` sends the whole object;
                    // when the range starts at 0 and the object is no longer, that is it)
                    let whole = range.start == 0
                        && out.content_length().is_some_and(|n| n as u64 <= range.end);
                    check_range(out.content_range(), &range, whole)?;
                    let body = out.body.collect().await.map_err(|e| {
                        Error::new(ErrorKind::Connect, format!("S3 GetObject: body: {e}"))
                            .with_reached_server(true)
                    })?;
                    let body = body.into_bytes();
                    if body.len() as u64 > range.end - range.start {
                        return Err(too_many_bytes());
                    }
                    Ok(body)
                }
            })
            .await
            .map(|(v, _)| v)
            .map_err(|e| ranged_error(e, bucket, key))
        })
        .await
    }

    /// Deletes one object (deleting a missing object is not an error, as in S3).
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        erase(async move {
            check_key(key)?;
            let ctx = self.ctx();
            self.run("s3.delete", Idempotency::Idempotent, &ctx, |ep| {
                let req = ep.client.delete_object().bucket(bucket).key(key);
                async move {
                    req.send().await.map_err(|e| sdk_error("DeleteObject", e))?;
                    Ok(())
                }
            })
            .await
            .map(|_| ())
            .map_err(|e| S3Error::from_call(e, bucket, None))
        })
        .await
    }

    /// Deletes many objects, 1000 per request; returns the keys the server could not delete
    /// with its error code.
    pub async fn delete_many(
        &self,
        bucket: &str,
        keys: &[String],
    ) -> Result<Vec<(String, String)>, S3Error> {
        erase(async move {
            for k in keys {
                check_key(k)?;
            }
            let mut failed = Vec::new();
            for chunk in keys.chunks(1000) {
                let ctx = self.ctx();
                let ids: Vec<ObjectIdentifier> = chunk
                    .iter()
                    .map(|k| ObjectIdentifier::builder().key(k).build())
                    .collect::<Result<_, _>>()
                    .map_err(|e| S3Error::Config(e.to_string()))?;
                let delete = Delete::builder()
                    .set_objects(Some(ids))
                    .quiet(true)
                    .build()
                    .map_err(|e| S3Error::Config(e.to_string()))?;
                let (errs, _) = self
                    .run("s3.delete_many", Idempotency::Idempotent, &ctx, |ep| {
                        let req = ep
                            .client
                            .delete_objects()
                            .bucket(bucket)
                            .delete(delete.clone());
                        async move {
                            let out = req
                                .send()
                                .await
                                .map_err(|e| sdk_error("DeleteObjects", e))?;
                            Ok(out
                                .errors()
                                .iter()
                                .map(|e| {
                                    (
                                        e.key().unwrap_or_default().to_owned(),
                                        e.code().unwrap_or("Unknown").to_owned(),
                                    )
                                })
                                .collect::<Vec<_>>())
                        }
                    })
                    .await
                    .map_err(|e| S3Error::from_call(e, bucket, None))?;
                failed.extend(errs);
            }
            Ok(failed)
        })
        .await
    }

    /// Copies an object on the server (metadata, the SHA-256 included, is copied along).
    pub async fn copy(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
    ) -> Result<(), S3Error> {
        erase(async move {
            check_key(src_key)?;
            check_key(dst_key)?;
            let source = format!("{src_bucket}/{}", encode_copy_source(src_key));
            let ctx = self.ctx();
            self.run("s3.copy", Idempotency::Idempotent, &ctx, |ep| {
                let req = ep
                    .client
                    .copy_object()
                    .bucket(dst_bucket)
                    .key(dst_key)
                    .copy_source(source.clone());
                async move {
                    req.send().await.map_err(|e| sdk_error("CopyObject", e))?;
                    Ok(())
                }
            })
            .await
            .map(|_| ())
            .map_err(|e| S3Error::from_call(e, src_bucket, Some(src_key)))
        })
        .await
    }

    fn presign_endpoint(&self) -> &Endpoint {
        let now = std::time::Instant::now();
        let i = self.inner.pool.select(now).unwrap_or(0) as usize;
        &self.inner.endpoints[i]
    }

    /// A presigned `GET` URL valid for `expires` (at most 7 days), on the endpoint the
    /// selection would pick now.
    pub async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires: Duration,
    ) -> Result<String, S3Error> {
        erase(self.presign(bucket, key, expires, false)).await
    }

    /// A presigned `PUT` URL valid for `expires` (at most 7 days).
    pub async fn presign_put(
        &self,
        bucket: &str,
        key: &str,
        expires: Duration,
    ) -> Result<String, S3Error> {
        erase(self.presign(bucket, key, expires, true)).await
    }

    async fn presign(
        &self,
        bucket: &str,
        key: &str,
        expires: Duration,
        put: bool,
    ) -> Result<String, S3Error> {
        check_key(key)?;
        let cfg = presigning(expires)?;
        let client = &self.presign_endpoint().client;
        let req = if put {
            let r = client.put_object().bucket(bucket).key(key).presigned(cfg);
            r.await
                .map_err(|e| S3Error::Call(sdk_error("presign PutObject", e)))?
        } else {
            let r = client.get_object().bucket(bucket).key(key).presigned(cfg);
            r.await
                .map_err(|e| S3Error::Call(sdk_error("presign GetObject", e)))?
        };
        Ok(req.uri().to_owned())
    }
}

/// `GetObject` of `range` (`If-Match` on `etag` when given), the one ranged read every caller
/// builds.
/// `Ok` when an answer's `Content-Range` is the range asked for, or when there is none and
/// `whole` says the whole object is that range (a server that ignores `Range` answers a plain
/// 200 with every byte); else a `Decode` error: bytes of another range, written or returned as
/// this one's, would be silently wrong.
pub(crate) fn check_range(
    content_range: Option<&str>,
    range: &std::ops::Range<u64>,
    whole: bool,
) -> Result<(), Error> {
    let want = format!("bytes {}-{}/", range.start, range.end - 1);
    let answered = match content_range {
        Some(r) => r.starts_with(&want),
        None => whole,
    };
    if answered {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Decode,
        format!(
            "S3 GetObject: asked for {}, answered {}",
            want.trim_end_matches('/'),
            content_range.unwrap_or("without a Content-Range (the whole object?)")
        ),
    )
    .with_reached_server(true))
}

/// The error of a ranged answer longer than its range.
pub(crate) fn too_many_bytes() -> Error {
    Error::new(
        ErrorKind::Decode,
        "S3 GetObject: more bytes than the range asked for",
    )
    .with_reached_server(true)
}

pub(crate) fn ranged_get(
    client: &Client,
    bucket: &str,
    key: &str,
    range: &std::ops::Range<u64>,
    etag: Option<&str>,
) -> aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder {
    let req = client.get_object().bucket(bucket).key(key).range(format!(
        "bytes={}-{}",
        range.start,
        range.end - 1
    ));
    match etag {
        Some(t) => req.if_match(format!("\"{t}\"")),
        None => req,
    }
}

fn presigning(expires: Duration) -> Result<PresigningConfig, S3Error> {
    PresigningConfig::expires_in(expires)
        .map_err(|e| S3Error::Config(format!("presign expiry {expires:?}: {e}")))
}

/// A ranged read's error: a moved ETag (412) is [`S3Error::ObjectChanged`].
pub(crate) fn ranged_error(e: Error, bucket: &str, key: &str) -> S3Error {
    if e.status() == Some(412) || e.provider_code() == Some("PreconditionFailed") {
        S3Error::ObjectChanged {
            key: key.to_owned(),
            source: e,
        }
    } else {
        S3Error::from_call(e, bucket, Some(key))
    }
}

pub(crate) fn unquote(s: &str) -> String {
    s.trim_matches('"').to_owned()
}

/// Base64 of the big-endian CRC32C of `body` (the `x-amz-checksum-crc32c` header the server
/// checks).
pub(crate) fn crc32c_b64(body: &[u8]) -> String {
    use base64::Engine as _;
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, body) as u32;
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// `x-amz-copy-source` wants the key URL-encoded (slashes kept).
fn encode_copy_source(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A public operation's future behind a box, its type erased: the SDK's futures nest deep, and
/// a caller's `async fn` awaiting them inline would push rustc past its query depth limit (and
/// a debug build's task past its stack).
pub(crate) fn erase<'a, T>(
    f: impl Future<Output = T> + Send + 'a,
) -> std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>> {
    Box::pin(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throttled step bound to one endpoint (a part of a multipart upload) is retried after
    /// a pause, not at once: the pool's policy sends such errors to another endpoint at once,
    /// but there is none to go to.
    #[tokio::test(start_paused = true)]
    async fn a_throttled_step_on_one_endpoint_backs_off() {
        let kit = S3Kit::new(S3Config::new(vec![
            S3EndpointConfig::new("a", "http://127.0.0.1:9")
                .with_credentials(crate::S3Credentials::Anonymous),
        ]))
        .unwrap();
        let tries = std::sync::Mutex::new(Vec::new());
        let start = tokio::time::Instant::now();
        let out = kit
            .run_on(
                0,
                "upload_part",
                Idempotency::Idempotent,
                &kit.ctx(),
                |_| {
                    let n = {
                        let mut t = tries.lock().unwrap();
                        t.push(start.elapsed());
                        t.len()
                    };
                    async move {
                        if n < 3 {
                            Err(Error::new(ErrorKind::RateLimited, "SlowDown").with_status(503))
                        } else {
                            Ok(n)
                        }
                    }
                },
            )
            .await
            .unwrap();
        assert_eq!(out, 3);
        let tries = tries.into_inner().unwrap();
        // each retry waits at least the throttle floor (500 ms)
        assert!(
            tries[1] - tries[0] >= Duration::from_millis(500),
            "{tries:?}"
        );
        assert!(
            tries[2] - tries[1] >= Duration::from_millis(500),
            "{tries:?}"
        );
    }

    #[test]
    fn only_a_plain_etag_of_an_object_without_kms_or_customer_keys_is_an_md5() {
        let md5 = Some("9e107d9d372bb6826bd81d3542a419d6");
        assert!(etag_is_md5(md5, None, false));
        assert!(etag_is_md5(md5, Some("AES256"), false));
        assert!(!etag_is_md5(md5, Some("aws:kms"), false));
        assert!(!etag_is_md5(md5, Some("aws:kms:dsse"), false));
        assert!(!etag_is_md5(md5, None, true));
        assert!(!etag_is_md5(
            Some("9e107d9d372bb6826bd81d3542a419d6-3"),
            None,
            false
        ));
        assert!(!etag_is_md5(
            Some("not-hex-not-hex-not-hex-not-hex!"),
            None,
            false
        ));
        assert!(!etag_is_md5(None, None, false));
    }
}
