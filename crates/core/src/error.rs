//! The one opaque, cheaply clonable error type of infermux and its [`ErrorKind`].
//!
//! Modelled on reqwest's error: a private inner behind an `Arc` (a batched or deduplicated call
//! hands one error to several callers), predicates instead of public fields, a source chain, and a
//! hand-written `Debug` that never shows a key or a URL query.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::id::{EndpointId, RequestId};
use crate::ratelimit::RateLimitInfo;

/// `Result` with [`Error`] as its error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, coarse enough to decide on (retry, fail over, report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The provider throttled the call (HTTP 429 and equivalents).
    RateLimited,
    /// The account's quota or credit is exhausted (429 `insufficient_quota`): not retryable.
    QuotaExceeded,
    /// The provider is overloaded (Anthropic 529, `overloaded_error`).
    Overloaded,
    /// A timeout: connect, first byte, idle between events, or the call deadline.
    Timeout,
    /// The connection could not be made or broke (refused, reset, TLS).
    Connect,
    /// The server failed (5xx other than overload).
    Server,
    /// The key was refused (401/403).
    Auth,
    /// The request was refused as invalid (400/422 and friends).
    InvalidRequest,
    /// The model or route does not exist (404).
    NotFound,
    /// The prompt does not fit the model's context window.
    ContextLength,
    /// The provider refused to answer for content reasons.
    ContentFilter,
    /// The response could not be decoded (bad JSON, truncated stream, too large).
    Decode,
    /// The endpoint's circuit breaker is open.
    CircuitOpen,
    /// The admission queue is full.
    QueueFull,
    /// The caller went away (future or stream dropped).
    Cancelled,
    /// The provider does not offer this operation.
    Unsupported,
    /// The configuration is invalid (bad base URL, missing key, a key bound to another origin).
    Config,
    /// Model storage failed (S3 and friends).
    Storage,
    /// No member of the pool can take the call before its deadline (every one cooling,
    /// limited, removed or ejected); [`Error::retry_after`] says when the earliest returns.
    Unavailable,
}

impl ErrorKind {
    /// Every kind, in declaration order (used to index counters).
    pub const ALL: [ErrorKind; 19] = [
        ErrorKind::RateLimited,
        ErrorKind::QuotaExceeded,
        ErrorKind::Overloaded,
        ErrorKind::Timeout,
        ErrorKind::Connect,
        ErrorKind::Server,
        ErrorKind::Auth,
        ErrorKind::InvalidRequest,
        ErrorKind::NotFound,
        ErrorKind::ContextLength,
        ErrorKind::ContentFilter,
        ErrorKind::Decode,
        ErrorKind::CircuitOpen,
        ErrorKind::QueueFull,
        ErrorKind::Cancelled,
        ErrorKind::Unsupported,
        ErrorKind::Config,
        ErrorKind::Storage,
        ErrorKind::Unavailable,
    ];

    /// A stable snake_case name, used in reports and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::QuotaExceeded => "quota_exceeded",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::Server => "server",
            ErrorKind::Auth => "auth",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::ContextLength => "context_length",
            ErrorKind::ContentFilter => "content_filter",
            ErrorKind::Decode => "decode",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::QueueFull => "queue_full",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Config => "config",
            ErrorKind::Storage => "storage",
            ErrorKind::Unavailable => "unavailable",
        }
    }

    /// The position of this kind in [`ErrorKind::ALL`].
    pub fn index(self) -> usize {
        ErrorKind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }

    /// Whether errors of this kind are worth retrying by default (before `x-should-retry`).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited
                | ErrorKind::Overloaded
                | ErrorKind::Timeout
                | ErrorKind::Connect
                | ErrorKind::Server
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a call stopped retrying, carried by its final [`Error`] ([`Error::stop_reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// The error is not worth retrying.
    NotRetryable,
    /// The attempt cap is reached.
    Exhausted,
    /// The next attempt could not finish before the deadline, or the deadline passed.
    Deadline,
    /// The server asked to wait longer than the cap or the deadline allows.
    RetryAfterTooLong,
    /// The call is not idempotent and may have reached the server.
    NotIdempotent,
    /// A streamed answer already reached the caller.
    StreamStarted,
    /// The retry budget is spent.
    Budget,
}

impl StopReason {
    /// A stable snake_case name, for reports and tracing fields.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::NotRetryable => "not_retryable",
            StopReason::Exhausted => "exhausted",
            StopReason::Deadline => "deadline",
            StopReason::RetryAfterTooLong => "retry_after_too_long",
            StopReason::NotIdempotent => "not_idempotent",
            StopReason::StreamStarted => "stream_started",
            StopReason::Budget => "budget",
        }
    }

    /// A few words for messages: `retries exhausted`, `the deadline`, …
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::NotRetryable => "not retryable",
            StopReason::Exhausted => "retries exhausted",
            StopReason::Deadline => "deadline reached",
            StopReason::RetryAfterTooLong => "retry-after too long",
            StopReason::NotIdempotent => "not idempotent",
            StopReason::StreamStarted => "stream already started",
            StopReason::Budget => "retry budget spent",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The error of every infermux operation.
///
/// Cheap to clone (one `Arc`). `Display` prints one level; [`std::error::Error::source`] gives
/// the cause. Neither `Debug` nor `Display` ever contains an API key or a URL query string.
///
/// ```
/// use infermux_core::{Error, ErrorKind, RequestId};
/// use std::time::Duration;
///
/// let id = RequestId::new();
/// let err = Error::new(ErrorKind::RateLimited, "slow down")
///     .with_status(429)
///     .with_retry_after(Duration::from_secs(2))
///     .with_request_id(id);
/// assert!(err.is_rate_limited());
/// assert!(err.is_retryable());
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
/// assert_eq!(err.request_id(), Some(id));
/// ```
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    message: Cow<'static, str>,
    status: Option<u16>,
    retry_after: Option<Duration>,
    should_retry: Option<bool>,
    request_id: Option<RequestId>,
    provider: Option<Cow<'static, str>>,
    endpoint: Option<EndpointId>,
    provider_code: Option<String>,
    rate_limit: Option<RateLimitInfo>,
    partial_text: Option<String>,
    reached_server: Option<bool>,
    attempts: u32,
    stop_reason: Option<StopReason>,
    model_scoped: bool,
    over_body_limit: bool,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl Error {
    /// A new error of `kind` with a one-line message (never put a key or a URL query in it).
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Error {
            inner: Arc::new(Inner {
                kind,
                message: message.into(),
                status: None,
                retry_after: None,
                should_retry: None,
                request_id: None,
                provider: None,
                endpoint: None,
                provider_code: None,
                rate_limit: None,
                partial_text: None,
                reached_server: None,
                attempts: 0,
                stop_reason: None,
                model_scoped: false,
                over_body_limit: false,
                source: None,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        f(Arc::make_mut(&mut self.inner));
        self
    }

    /// The same error, of another kind: for a provider that knows better than a generic
    /// mapping what its server's status means (TEI's 429 "overloaded" is no key's rate limit).
    pub fn with_kind(self, kind: ErrorKind) -> Self {
        self.edit(|e| e.kind = kind)
    }

    /// Sets the HTTP status the error came with.
    pub fn with_status(self, status: u16) -> Self {
        self.edit(|i| i.status = Some(status))
    }
    /// Sets the minimum delay before a retry (from `Retry-After` and friends).
    pub fn with_retry_after(self, after: Duration) -> Self {
        self.edit(|i| i.retry_after = Some(after))
    }
    /// Records the server's `x-should-retry` verdict.
    pub fn with_should_retry(self, retry: bool) -> Self {
        self.edit(|i| i.should_retry = Some(retry))
    }
    /// Sets the request id.
    pub fn with_request_id(self, id: RequestId) -> Self {
        self.edit(|i| i.request_id = Some(id))
    }
    /// Sets the provider name.
    pub fn with_provider(self, provider: impl Into<Cow<'static, str>>) -> Self {
        self.edit(|i| i.provider = Some(provider.into()))
    }
    /// Sets the endpoint.
    pub fn with_endpoint(self, endpoint: EndpointId) -> Self {
        self.edit(|i| i.endpoint = Some(endpoint))
    }
    /// Sets the provider's own error code or type (`insufficient_quota`, `overloaded_error`).
    pub fn with_provider_code(self, code: impl Into<String>) -> Self {
        self.edit(|i| i.provider_code = Some(code.into()))
    }
    /// Attaches the rate-limit headers that came with the error.
    pub fn with_rate_limit(self, info: RateLimitInfo) -> Self {
        self.edit(|i| i.rate_limit = Some(info))
    }
    /// Attaches what a stream delivered before it failed.
    pub fn with_partial_text(self, text: impl Into<String>) -> Self {
        self.edit(|i| i.partial_text = Some(text.into()))
    }
    /// Records whether the request is known to have reached the server (`false`: connect
    /// failures, so even a non-idempotent call may be retried).
    pub fn with_reached_server(self, reached: bool) -> Self {
        self.edit(|i| i.reached_server = Some(reached))
    }
    /// Records how many attempts the call made (the retry layer sets it when it gives up).
    pub fn with_attempts(self, attempts: u32) -> Self {
        self.edit(|i| i.attempts = attempts)
    }
    /// Records why the retry layer stopped retrying.
    pub fn with_stop_reason(self, reason: StopReason) -> Self {
        self.edit(|i| i.stop_reason = Some(reason))
    }
    /// Marks the limit this error reports (a 429's) as the model's on the key, not the whole
    /// key's: the provider said so (Gemini's per-model quota ids, OpenAI's "Rate limit reached
    /// for gpt-4o in organization …"). A pool then holds back only its members sending that
    /// key for that model; the key's other models go on.
    ///
    /// ```
    /// use infermux_core::{Error, ErrorKind};
    /// let e = Error::new(ErrorKind::RateLimited, "per model").with_model_scope(true);
    /// assert!(e.is_model_scoped());
    /// assert!(!Error::new(ErrorKind::RateLimited, "the key's").is_model_scoped());
    /// ```
    pub fn with_model_scope(self, scoped: bool) -> Self {
        self.edit(|i| i.model_scoped = scoped)
    }
    /// Marks a [`Decode`](ErrorKind::Decode) error as an answer longer than the client's
    /// body limit ([`Limits::max_body_bytes`](crate::Limits::max_body_bytes)): a smaller
    /// request (a batch sent in parts) may be answered within it.
    ///
    /// ```
    /// use infermux_core::{Error, ErrorKind};
    /// let e = Error::new(ErrorKind::Decode, "too long").with_over_body_limit(true);
    /// assert!(e.is_over_body_limit());
    /// assert!(!Error::new(ErrorKind::Decode, "not JSON").is_over_body_limit());
    /// ```
    pub fn with_over_body_limit(self, over: bool) -> Self {
        self.edit(|i| i.over_body_limit = over)
    }
    /// Sets the underlying cause.
    pub fn with_source(self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.edit(|i| i.source = Some(Arc::new(source)))
    }
    /// Fills the request id, provider and endpoint when they are not set yet.
    pub fn in_context(self, id: RequestId, provider: &'static str, endpoint: &EndpointId) -> Self {
        self.edit(|i| {
            i.request_id.get_or_insert(id);
            i.provider.get_or_insert(Cow::Borrowed(provider));
            if i.endpoint.is_none() {
                i.endpoint = Some(endpoint.clone());
            }
        })
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }
    /// The one-line message.
    pub fn message(&self) -> &str {
        &self.inner.message
    }
    /// The HTTP status, when the error came from a response.
    pub fn status(&self) -> Option<u16> {
        self.inner.status
    }
    /// The minimum delay before a retry, when the server said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }
    /// The server's `x-should-retry` verdict, when it sent one.
    pub fn should_retry(&self) -> Option<bool> {
        self.inner.should_retry
    }
    /// The id of the request that failed.
    pub fn request_id(&self) -> Option<RequestId> {
        self.inner.request_id
    }
    /// The provider that produced the error.
    pub fn provider(&self) -> Option<&str> {
        self.inner.provider.as_deref()
    }
    /// The endpoint that produced the error.
    pub fn endpoint(&self) -> Option<&EndpointId> {
        self.inner.endpoint.as_ref()
    }
    /// The provider's own error code or type.
    pub fn provider_code(&self) -> Option<&str> {
        self.inner.provider_code.as_deref()
    }
    /// Rate-limit headers that came with the error.
    pub fn rate_limit(&self) -> Option<&RateLimitInfo> {
        self.inner.rate_limit.as_ref()
    }
    /// Text a stream delivered before it failed.
    pub fn partial_text(&self) -> Option<&str> {
        self.inner.partial_text.as_deref()
    }
    /// Whether the request reached the server (`None`: unknown).
    pub fn reached_server(&self) -> Option<bool> {
        self.inner.reached_server
    }
    /// Attempts the call made before it failed, as the retry layer counted them (attempts
    /// refused before being sent — queue full, circuit open — are not counted); 0 when no
    /// retry layer saw the error.
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }
    /// Why the retry layer stopped, when one saw the error.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.inner.stop_reason
    }
    /// Whether the limit this error reports is the model's on the key, not the whole key's
    /// (see [`Error::with_model_scope`]).
    pub fn is_model_scoped(&self) -> bool {
        self.inner.model_scoped
    }
    /// Whether the answer was longer than the client's body limit (see
    /// [`Error::with_over_body_limit`]).
    pub fn is_over_body_limit(&self) -> bool {
        self.inner.over_body_limit
    }

    /// Whether a retry may succeed: the kind is transient and the server did not say
    /// `x-should-retry: false`; or the server said `x-should-retry: true`.
    pub fn is_retryable(&self) -> bool {
        match self.inner.should_retry {
            Some(verdict) => verdict,
            None => self.inner.kind.is_transient(),
        }
    }
    /// `kind() == RateLimited`.
    pub fn is_rate_limited(&self) -> bool {
        self.inner.kind == ErrorKind::RateLimited
    }
    /// `kind() == Timeout`.
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::Timeout
    }
    /// `kind() == Connect`.
    pub fn is_connect(&self) -> bool {
        self.inner.kind == ErrorKind::Connect
    }
    /// `kind() == Decode`.
    pub fn is_decode(&self) -> bool {
        self.inner.kind == ErrorKind::Decode
    }
    /// `kind() == Auth`.
    pub fn is_auth(&self) -> bool {
        self.inner.kind == ErrorKind::Auth
    }
    /// `kind() == Cancelled`.
    pub fn is_cancelled(&self) -> bool {
        self.inner.kind == ErrorKind::Cancelled
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        write!(f, "{}", i.kind)?;
        if let Some(status) = i.status {
            write!(f, " (HTTP {status})")?;
        }
        if let Some(p) = &i.provider {
            write!(f, " from {p}")?;
        }
        write!(f, ": {}", i.message)?;
        if i.attempts > 1 {
            write!(f, " after {} attempts", i.attempts)?;
            if let Some(r) = i.stop_reason {
                write!(f, " ({r})")?;
            }
        }
        if let Some(id) = i.request_id {
            write!(f, " [request {id}]")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        let mut d = f.debug_struct("infermux::Error");
        d.field("kind", &i.kind).field("message", &i.message);
        if let Some(s) = i.status {
            d.field("status", &s);
        }
        if let Some(r) = i.retry_after {
            d.field("retry_after", &r);
        }
        if let Some(r) = i.should_retry {
            d.field("should_retry", &r);
        }
        if i.over_body_limit {
            d.field("over_body_limit", &true);
        }
        if i.model_scoped {
            d.field("model_scoped", &true);
        }
        if let Some(id) = &i.request_id {
            d.field("request_id", &format_args!("{id}"));
        }
        if let Some(p) = &i.provider {
            d.field("provider", p);
        }
        if let Some(e) = &i.endpoint {
            d.field("endpoint", &format_args!("{e}"));
        }
        if let Some(c) = &i.provider_code {
            d.field("provider_code", c);
        }
        if i.attempts > 0 {
            d.field("attempts", &i.attempts);
        }
        if let Some(r) = i.stop_reason {
            d.field("stop_reason", &r);
        }
        if let Some(s) = &i.source {
            d.field("source", &format_args!("{s}"));
        }
        d.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn error_is_send_sync_clone() {
        assert_send_sync::<Error>();
    }

    #[test]
    fn kinds_index_round_trip() {
        for (n, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), n);
        }
    }

    #[test]
    fn should_retry_overrides_kind() {
        let e = Error::new(ErrorKind::Server, "boom").with_should_retry(false);
        assert!(!e.is_retryable());
        let e = Error::new(ErrorKind::InvalidRequest, "x").with_should_retry(true);
        assert!(e.is_retryable());
        assert!(!Error::new(ErrorKind::QuotaExceeded, "x").is_retryable());
    }

    #[test]
    fn display_is_one_level_and_source_chains() {
        let io = std::io::Error::other("socket closed");
        let e = Error::new(ErrorKind::Connect, "connection failed").with_source(io);
        assert_eq!(e.to_string(), "connect: connection failed");
        assert_eq!(
            e.source().map(|s| s.to_string()).as_deref(),
            Some("socket closed")
        );
    }

    #[test]
    fn display_mentions_attempts_and_why_retries_stopped() {
        let e = Error::new(ErrorKind::Server, "boom")
            .with_status(503)
            .with_attempts(3)
            .with_stop_reason(StopReason::Exhausted);
        assert_eq!(e.attempts(), 3);
        assert_eq!(e.stop_reason(), Some(StopReason::Exhausted));
        assert_eq!(
            e.to_string(),
            "server (HTTP 503): boom after 3 attempts (retries exhausted)"
        );
        let once = Error::new(ErrorKind::InvalidRequest, "no")
            .with_attempts(1)
            .with_stop_reason(StopReason::NotRetryable);
        assert_eq!(once.to_string(), "invalid_request: no");
    }

    #[test]
    fn clones_share_and_edits_copy() {
        let a = Error::new(ErrorKind::Timeout, "t");
        let b = a.clone().with_status(504);
        assert_eq!(a.status(), None);
        assert_eq!(b.status(), Some(504));
    }
}
