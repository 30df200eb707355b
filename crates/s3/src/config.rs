//! The kit's configuration: endpoints ([`S3EndpointConfig`]) with their credentials
//! ([`S3Credentials`]), how a call picks among them ([`Selection`]), and transfer sizes
//! ([`TransferConfig`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use infermux_core::ApiKey;
use infermux_resilience::breaker::BreakerConfig;
use infermux_resilience::queue::QueueConfig;

use crate::S3Error;

/// Where an endpoint's credentials come from.
#[derive(Clone)]
#[non_exhaustive]
pub enum S3Credentials {
    /// Given literally (the secret never appears in `Debug`).
    Static {
        /// The access key id.
        access_key_id: String,
        /// The secret access key.
        secret_access_key: ApiKey,
        /// A session token, for temporary credentials.
        session_token: Option<ApiKey>,
    },
    /// Read from environment variables when the kit is built: the access key id, the secret
    /// and an optional session token (the AWS names are `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`: [`S3Credentials::aws_env`]).
    Env {
        /// The variable holding the access key id.
        access_key_id_var: String,
        /// The variable holding the secret.
        secret_access_key_var: String,
        /// The variable holding a session token, read when set.
        session_token_var: Option<String>,
    },
    /// A profile of the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
    /// `~/.aws/credentials`), read when the kit is built. Static keys only: profiles that
    /// assume a role or use SSO need the AWS SDK's own config loader.
    Profile {
        /// The profile's name (`default` for the default one).
        name: String,
        /// The file, when not the default one.
        file: Option<PathBuf>,
    },
    /// No signature at all (public buckets).
    Anonymous,
}

impl S3Credentials {
    /// Literal credentials.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl AsRef<str>) -> Self {
        S3Credentials::Static {
            access_key_id: access_key_id.into(),
            secret_access_key: ApiKey::new(secret_access_key),
            session_token: None,
        }
    }
    /// The AWS environment variables.
    pub fn aws_env() -> Self {
        S3Credentials::Env {
            access_key_id_var: "AWS_ACCESS_KEY_ID".into(),
            secret_access_key_var: "AWS_SECRET_ACCESS_KEY".into(),
            session_token_var: Some("AWS_SESSION_TOKEN".into()),
        }
    }
    /// A profile of the shared credentials file.
    pub fn profile(name: impl Into<String>) -> Self {
        S3Credentials::Profile {
            name: name.into(),
            file: None,
        }
    }
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            S3Credentials::Static { access_key_id, .. } => f
                .debug_struct("Static")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"<redacted>")
                .finish_non_exhaustive(),
            S3Credentials::Env {
                access_key_id_var,
                secret_access_key_var,
                ..
            } => f
                .debug_struct("Env")
                .field("access_key_id_var", access_key_id_var)
                .field("secret_access_key_var", secret_access_key_var)
                .finish_non_exhaustive(),
            S3Credentials::Profile { name, file } => f
                .debug_struct("Profile")
                .field("name", name)
                .field("file", file)
                .finish(),
            S3Credentials::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// One S3-compatible endpoint: its URL, region, credentials, addressing, breaker, admission
/// and timeouts.
///
/// ```
/// use infermux_s3::{S3Credentials, S3EndpointConfig};
/// let ep = S3EndpointConfig::new("local", "http://127.0.0.1:9000")
///     .with_credentials(S3Credentials::new("AKIA", "wJalr-s3cr3t"))
///     .with_path_style(true);
/// assert!(!format!("{ep:?}").contains("wJalr-s3cr3t"));
/// // a password written into the URL is not shown either (and the kit refuses such a URL)
/// let ep = S3EndpointConfig::new("local", "http://me:pa55word@127.0.0.1:9000");
/// assert!(!format!("{ep:?}").contains("pa55word"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct S3EndpointConfig {
    /// The endpoint's name (counters, spans, errors).
    pub name: String,
    /// Its URL (`http://127.0.0.1:9000`); `None` for AWS itself (the region's endpoint).
    pub url: Option<String>,
    /// The region signatures are made for (`us-east-1` by default).
    pub region: String,
    /// The credentials.
    pub credentials: S3Credentials,
    /// Path-style addressing (`host/bucket/key`, what most self-hosted servers need) rather
    /// than virtual-host style (`bucket.host/key`).
    pub path_style: bool,
    /// The breaker (`None`: no breaker).
    pub breaker: Option<BreakerConfig>,
    /// The admission queue and its permits (concurrent requests to this endpoint).
    pub queue: QueueConfig,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// The longest one request may take, body included (a part, a range, a listing page).
    pub attempt_timeout: Duration,
}

impl std::fmt::Debug for S3EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3EndpointConfig")
            .field("name", &self.name)
            .field(
                "url",
                &self.url.as_deref().map(infermux_core::url_without_userinfo),
            )
            .field("region", &self.region)
            .field("credentials", &self.credentials)
            .field("path_style", &self.path_style)
            .field("breaker", &self.breaker)
            .field("queue", &self.queue)
            .field("connect_timeout", &self.connect_timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish()
    }
}

impl S3EndpointConfig {
    /// An endpoint named `name` at `url`, region `us-east-1`, credentials from the AWS
    /// environment variables, path-style addressing, the standard breaker, 64 permits,
    /// connect timeout 5 s, 5 min per request.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        S3EndpointConfig {
            name: name.into(),
            url: Some(url.into()),
            region: "us-east-1".into(),
            credentials: S3Credentials::aws_env(),
            path_style: true,
            breaker: Some(BreakerConfig::standard()),
            queue: QueueConfig::standard(),
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(300),
        }
    }
    /// AWS S3 itself in `region` (virtual-host addressing).
    pub fn aws(name: impl Into<String>, region: impl Into<String>) -> Self {
        let mut c = Self::new(name, "");
        c.url = None;
        c.region = region.into();
        c.path_style = false;
        c
    }
    /// Sets the credentials.
    pub fn with_credentials(mut self, credentials: S3Credentials) -> Self {
        self.credentials = credentials;
        self
    }
    /// Sets the region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }
    /// Path-style (`true`) or virtual-host (`false`) addressing.
    pub fn with_path_style(mut self, path_style: bool) -> Self {
        self.path_style = path_style;
        self
    }
    /// Sets the breaker (`None`: no breaker).
    pub fn with_breaker(mut self, breaker: Option<BreakerConfig>) -> Self {
        self.breaker = breaker;
        self
    }
    /// Sets the admission queue.
    pub fn with_queue(mut self, queue: QueueConfig) -> Self {
        self.queue = queue;
        self
    }
    /// Sets the connect timeout and the per-request timeout.
    pub fn with_timeouts(mut self, connect: Duration, attempt: Duration) -> Self {
        self.connect_timeout = connect;
        self.attempt_timeout = attempt;
        self
    }
}

/// How an operation picks its endpoint. Every operation that fails on one endpoint may be
/// retried on another (the endpoints of one kit serve the same buckets: replicas, or nodes
/// of one cluster); a multipart upload stays on the endpoint it started on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Selection {
    /// Each endpoint in turn.
    RoundRobin,
    /// The endpoint with the fewest requests in flight.
    LeastLoaded,
    /// The first endpoint that can serve, in configuration order (a primary and replicas).
    #[default]
    FirstHealthy,
}

impl std::str::FromStr for Selection {
    type Err = S3Error;
    fn from_str(s: &str) -> Result<Self, S3Error> {
        match s {
            "round-robin" => Ok(Selection::RoundRobin),
            "least-loaded" => Ok(Selection::LeastLoaded),
            "first-healthy" => Ok(Selection::FirstHealthy),
            _ => Err(S3Error::Config(format!(
                "unknown selection `{s}` (expected round-robin, least-loaded or first-healthy)"
            ))),
        }
    }
}

/// Transfer sizes: when an upload goes multipart, the part (and download range) size, and how
/// many parts or ranges are in flight at once. Memory in flight is bounded by
/// `part_size × concurrency` per transfer (a file whose parts grow past 10 000 of them sends
/// fewer at once, [`TransferConfig::concurrency_for`]); a stream of unknown length past 800 parts grows
/// its parts so that 10 000 reach 5 TiB, and then holds at most two of them once they are
/// larger than half that bound (one sending while the next is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferConfig {
    /// Files at least this large are uploaded in parts (default 16 MiB).
    pub multipart_threshold: u64,
    /// Part size of uploads and range size of parallel downloads (default 8 MiB; S3 needs at
    /// least 5 MiB for every part but the last).
    pub part_size: u64,
    /// Parts or ranges in flight at once (default 8).
    pub concurrency: usize,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            multipart_threshold: 16 << 20,
            part_size: 8 << 20,
            concurrency: 8,
        }
    }
}

/// The smallest part S3 accepts (every part of a multipart upload but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// The most parts one multipart upload may have.
pub const MAX_PARTS: u64 = 10_000;
/// The largest part S3 accepts, and the largest object one `PutObject` may carry.
pub const MAX_PART_SIZE: u64 = 5 << 30;

impl TransferConfig {
    /// Sets the part size.
    pub fn with_part_size(mut self, bytes: u64) -> Self {
        self.part_size = bytes;
        self
    }
    /// Sets the parts in flight.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }
    /// Sets the multipart threshold.
    pub fn with_multipart_threshold(mut self, bytes: u64) -> Self {
        self.multipart_threshold = bytes;
        self
    }
    /// Checks the sizes: a part of [`MIN_PART_SIZE`] to [`MAX_PART_SIZE`], a multipart
    /// threshold of 1 byte to [`MAX_PART_SIZE`] (an empty object is one `PutObject`: a
    /// multipart upload needs a part; and one `PutObject` carries at most 5 GiB), concurrency
    /// 1..=256.
    ///
    /// ```
    /// use infermux_s3::TransferConfig;
    /// assert!(TransferConfig::default().validate().is_ok());
    /// assert!(TransferConfig::default().with_multipart_threshold(0).validate().is_err());
    /// assert!(TransferConfig::default().with_multipart_threshold(6 << 30).validate().is_err());
    /// assert!(TransferConfig::default().with_part_size(6 << 30).validate().is_err());
    /// assert!(TransferConfig::default().with_part_size(1 << 20).validate().is_err());
    /// ```
    pub fn validate(self) -> Result<Self, S3Error> {
        if self.part_size < MIN_PART_SIZE {
            return Err(S3Error::Config(format!(
                "part_size {} is below S3's minimum of 5 MiB",
                self.part_size
            )));
        }
        if self.part_size > MAX_PART_SIZE {
            return Err(S3Error::Config(format!(
                "part_size {} is above S3's maximum of 5 GiB",
                self.part_size
            )));
        }
        if self.multipart_threshold == 0 || self.multipart_threshold > MAX_PART_SIZE {
            return Err(S3Error::Config(format!(
                "multipart_threshold {} is outside 1 byte..=5 GiB (an empty object is one \
                 PutObject, and one PutObject carries at most 5 GiB)",
                self.multipart_threshold
            )));
        }
        if self.concurrency == 0 || self.concurrency > 256 {
            return Err(S3Error::Config(format!(
                "concurrency {} is outside 1..=256",
                self.concurrency
            )));
        }
        Ok(self)
    }
    /// The part size an object of `len` bytes uploads with: the configured one, grown when
    /// the object would need more than [`MAX_PARTS`] parts.
    pub fn part_size_for(&self, len: u64) -> u64 {
        let min = len.div_ceil(MAX_PARTS);
        self.part_size.max(min)
    }
    /// Parts of `part_size` in flight at once: the configured concurrency, fewer when grown
    /// parts would pass the memory bound `part_size × concurrency` of the configured sizes
    /// (at least one).
    ///
    /// ```
    /// use infermux_s3::TransferConfig;
    /// let t = TransferConfig::default(); // 8 MiB parts, 8 at once: 64 MiB
    /// assert_eq!(t.concurrency_for(8 << 20), 8);
    /// let grown = t.part_size_for(5 << 40); // a 5 TiB file: parts of 525 MiB
    /// assert_eq!(t.concurrency_for(grown), 1);
    /// assert_eq!(t.concurrency_for(16 << 20), 4);
    /// ```
    pub fn concurrency_for(&self, part_size: u64) -> usize {
        let bound = self.part_size.saturating_mul(self.concurrency as u64);
        let fits = bound / part_size.max(1);
        usize::try_from(fits)
            .unwrap_or(usize::MAX)
            .clamp(1, self.concurrency.max(1))
    }
}

/// The whole kit's configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct S3Config {
    /// The endpoints (at least one).
    pub endpoints: Vec<S3EndpointConfig>,
    /// How an operation picks its endpoint.
    pub selection: Selection,
    /// Transfer sizes.
    pub transfer: TransferConfig,
    /// Attempts per operation (retries included; default 4).
    pub max_attempts: u32,
    /// The deadline of a whole operation, transfers included (`None`: none).
    pub timeout: Option<Duration>,
}

impl S3Config {
    /// A kit over `endpoints` with the defaults.
    pub fn new(endpoints: Vec<S3EndpointConfig>) -> Self {
        S3Config {
            endpoints,
            selection: Selection::default(),
            transfer: TransferConfig::default(),
            max_attempts: 4,
            timeout: None,
        }
    }
    /// Sets the selection.
    pub fn with_selection(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }
    /// Sets the transfer sizes.
    pub fn with_transfer(mut self, transfer: TransferConfig) -> Self {
        self.transfer = transfer;
        self
    }
    /// Sets the attempts per operation (at least 1).
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }
    /// Sets the deadline of a whole operation.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }
}
