//! The reqwest transport: [`HttpEndpoint`] builds requests against one endpoint, binds its key
//! to the endpoint's origin, follows redirects without ever forwarding auth to another origin,
//! enforces per-attempt timeouts and the body size limit, and maps failures to typed errors.

use std::fmt;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use infermux_core::{
    ApiKey, AttemptKey, EndpointConfig, EndpointId, Error, ErrorKind, RateLimitInfo,
    RequestContext, RequestId, Result,
};
use tokio::time::{Instant, Sleep, sleep_until};
use url::Url;

use crate::decode::{DecodeError, JsonArrayDecoder, NdjsonDecoder, SseDecoder, SseEvent};
use crate::errors::{error_from_response, from_transport, root_cause, send_error};
use crate::headers::rate_limits;
use crate::scrub::Scrubber;
use memchr::memmem::Finder;

/// Every header name that carries a credential. None of them ever crosses to another origin:
/// a request's own headers refuse them ([`HttpRequest::header`]), an endpoint's own headers
/// leave them out (its key goes through [`Auth`]), and recordings strip them.
pub const AUTH_HEADERS: [&str; 5] = [
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "proxy-authorization",
];

const MAX_REDIRECTS: usize = 5;

/// `now + d`, or some thirty years on when that is past what an `Instant` holds: a timeout of
/// `Duration::MAX` means no timeout, not a panic.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + infermux_core::FAR_FUTURE)
}

/// Headers reqwest and hyper add to a request after we built it: user-agent, accept,
/// accept-encoding, content-length, and host (for a plain-HTTP endpoint's own origin we
/// write it, see [`host_header`]; counted here either way).
const REQWEST_ADDS: usize = 5;
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How the endpoint's key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// No key is sent.
    None,
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// The key as the value of this header (`x-api-key`, `x-goog-api-key`, `api-key`).
    Header(&'static str),
}

/// Whether an error's cause is the connection ending early (an unexpected end of file, a
/// reset or aborted connection).
fn cut_short(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            )
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A stream of decoded items from a response body.
pub type DecodedStream<T> = Pin<Box<dyn Stream<Item = Result<T>> + Send>>;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// One endpoint's HTTP client: one connection pool, shared by its clones and by
/// [`HttpEndpoint::rebased`] endpoints (other base paths on the same server).
///
/// The endpoint's key is scrubbed (replaced by `***`) from every body the transport hands out
/// (error bodies before they are mapped to an error, streamed items, textual bodies), so a
/// server that echoes it cannot put it in an error; keys shorter than
/// 8 bytes are placeholders (`ollama`, `EMPTY`) and are left alone.
///
/// An attempt whose [`RequestContext::key`] is set (a pool chose the key) sends that key
/// instead of the configured one, in the same header, and only when the key is bound to this
/// endpoint ([`ErrorKind::Config`] before anything is sent otherwise); it is bound to the
/// endpoint's origin and scrubbed like the configured one. When the context carries a
/// [`infermux_core::ResponseMeta`] cell, every response's rate-limit headers (2xx, error or
/// stream) are recorded in it; without one they are not parsed.
///
/// ```no_run
/// # async fn demo() -> infermux_core::Result<()> {
/// use infermux_core::{EndpointConfig, RequestContext};
/// use infermux_http::{Auth, HttpEndpoint};
/// let cfg = EndpointConfig::new("local", "http://127.0.0.1:8080/v1")?;
/// let ep = HttpEndpoint::new("openai-compat", cfg, Auth::Bearer)?;
/// let models: serde_json::Value = ep.get("/models").send(&RequestContext::new()).await?.json().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HttpEndpoint {
    provider: &'static str,
    config: EndpointConfig,
    /// `config.base_url`, parsed once.
    base: Url,
    /// The base URL's path as written, when a request's path can be joined to it with
    /// [`Url::set_path`] instead of parsing the whole URL again (see [`join_prefix`]).
    join_prefix: Option<Arc<str>>,
    auth: Auth,
    client: reqwest::Client,
    scrubber: Scrubber,
    /// The endpoint's own headers, parsed once; `None` when one is invalid (each request to
    /// the endpoint's origin then fails with [`ErrorKind::Config`] before anything is sent).
    headers: Option<Arc<[(HeaderName, HeaderValue)]>>,
    /// The key's header, built once (marked sensitive); `None` without a key, with
    /// [`Auth::None`], or when the key is not a valid header value (each request that would
    /// send it then fails with [`ErrorKind::Config`] before anything is sent).
    key_header: Option<(HeaderName, HeaderValue)>,
    /// The `Host` header of a request to this endpoint's origin, built once for a plain
    /// `http://` endpoint (see [`host_header`]).
    host: Option<HeaderValue>,
}

impl fmt::Debug for HttpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpEndpoint")
            .field("provider", &self.provider)
            .field("config", &self.config)
            .field("auth", &self.auth)
            .finish()
    }
}

/// Whether reqwest's own retry of HTTP/2 refusals (a `REFUSED_STREAM` reset, a graceful
/// `GOAWAY`: requests the server never processed) stays on for an endpoint at `base`.
///
/// Those refusals exist only on HTTP/2, which reqwest speaks here only over TLS (ALPN), so
/// a plain `http://` endpoint, as every local server is, has nothing to retry (but one
/// reached through an `https://` proxy that agrees to HTTP/2: its refusals then reach the
/// caller's retry policy as transport errors). reqwest's
/// policy still clones every request (headers, URI, extensions) in case it has to, before
/// it looks at the scope; switching it off for such an endpoint spares each request that
/// clone. A plain endpoint that redirects to another origin over TLS reaches it without
/// this retry: a refusal there is a transport error for the caller's retry policy.
fn nack_retries(base: &Url) -> bool {
    base.scheme() != "http"
}

/// The `Host` header hyper would write for a request to `base`'s origin, for a plain
/// `http://` base: the host, and the port unless it is the scheme's default. hyper builds it
/// on every request (`format!`, then a header inserted into a map reqwest cloned to its exact
/// length, so the map reallocates); a request to the endpoint's origin carries this one
/// instead. Wherever HTTP/2 may be spoken ([`nack_retries`]), where the authority goes in
/// `:authority`, hyper is left to it.
fn host_header(base: &Url) -> Option<HeaderValue> {
    if nack_retries(base) {
        return None;
    }
    let host = base.host_str()?;
    let value = match base.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    HeaderValue::from_str(&value).ok()
}

fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// `origin_of(a) == origin_of(b)`, without building either string for the schemes whose
/// origin is a (scheme, host, port) tuple.
fn same_origin(a: &Url, b: &Url) -> bool {
    let tuple = |scheme: &str| matches!(scheme, "http" | "https" | "ws" | "wss" | "ftp");
    let (sa, sb) = (a.scheme(), b.scheme());
    if tuple(sa) && tuple(sb) {
        // the parser leaves out a scheme's default port: `port()` is `None` exactly for it
        sa == sb && a.host_str() == b.host_str() && a.port() == b.port()
    } else {
        origin_of(a) == origin_of(b)
    }
}

/// The bytes [`plain_path`] accepts: those the URL parser copies as they are in a path, in
/// every context (no `%`, `?`, `#`, `\\`, whitespace, control or non-ASCII byte).
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'/' | b'-'
                    | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
            );
        b += 1;
    }
    t
};

/// Whether the URL parser keeps `path` exactly as written, the same way in a whole URL and in
/// [`Url::set_path`]: it starts with `/`, holds only [`PLAIN`] bytes and no dot segment (no
/// `/.`).
fn plain_path(path: &str) -> bool {
    let mut prev = 0u8;
    path.starts_with('/')
        && path.bytes().all(|b| {
            let ok = PLAIN[usize::from(b)] && !(prev == b'/' && b == b'.');
            prev = b;
            ok
        })
}

/// The path of `base_url` as written, when joining a plain path to it with
/// [`Url::set_path`] gives exactly what parsing `base_url + path` gives: an http(s) base
/// without query or fragment, written in plain printable ASCII, whose path (if any) is plain
/// and came out of the parser unchanged.
fn join_prefix(base_url: &str, base: &Url) -> Option<Arc<str>> {
    if !matches!(base.scheme(), "http" | "https")
        || base.cannot_be_a_base()
        || base.query().is_some()
        || base.fragment().is_some()
        || !base_url.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
    {
        return None;
    }
    let rest = base_url.get(base_url.find("://")? + 3..)?;
    let path = rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("");
    let parsed_as = if path.is_empty() { "/" } else { path };
    ((path.is_empty() || plain_path(path)) && base.path() == parsed_as).then(|| Arc::from(path))
}

/// The endpoint's own headers, parsed, without auth headers; `None` if one is invalid.
fn parse_headers(headers: &[(String, String)]) -> Option<Arc<[(HeaderName, HeaderValue)]>> {
    headers
        .iter()
        .filter(|(k, _)| !AUTH_HEADERS.iter().any(|h| k.eq_ignore_ascii_case(h)))
        .map(|(k, v)| {
            Some((
                HeaderName::try_from(k.as_str()).ok()?,
                HeaderValue::try_from(v.as_str()).ok()?,
            ))
        })
        .collect()
}

/// What the transport derives from an attempt's key once (kept with the key, shared by every
/// attempt that sends it): the header it goes in as `auth` sends keys, and its searcher for
/// scrubbing.
struct DerivedKey {
    auth: Auth,
    /// `None` when the key is not a valid header value.
    header: Option<(HeaderName, HeaderValue)>,
    finder: Option<Arc<Finder<'static>>>,
}

impl DerivedKey {
    fn new(auth: Auth, key: &ApiKey) -> Self {
        DerivedKey {
            auth,
            header: key_header_for(auth, key),
            finder: crate::scrub::finder(key),
        }
    }
}

/// `key`'s header as `auth` sends it, marked sensitive (`None` for [`Auth::None`] or a key
/// that is not a valid header value).
fn key_header_for(auth: Auth, key: &ApiKey) -> Option<(HeaderName, HeaderValue)> {
    let secret = key.expose();
    let (name, mut value) = match auth {
        Auth::None => return None,
        Auth::Bearer => {
            let mut v = Vec::with_capacity(7 + secret.len());
            v.extend_from_slice(b"Bearer ");
            v.extend_from_slice(secret.as_bytes());
            (
                http::header::AUTHORIZATION,
                HeaderValue::from_maybe_shared(Bytes::from(v)).ok()?,
            )
        }
        Auth::Header(name) => (
            HeaderName::try_from(name).ok()?,
            HeaderValue::from_str(secret).ok()?,
        ),
    };
    value.set_sensitive(true);
    Some((name, value))
}

/// The header an attempt's key (chosen by a pool) is sent in, as `auth` sends the endpoint's
/// own key, marked sensitive; built once per key ([`AttemptKey::derived`]). Fails with
/// [`ErrorKind::Config`] when the key is bound to another endpoint, when the endpoint sends no
/// key ([`Auth::None`]), or when the key is not a valid header value.
fn attempt_key_header(
    id: &EndpointId,
    auth: Auth,
    key: &AttemptKey,
) -> Result<(HeaderName, HeaderValue)> {
    if key.endpoint() != id {
        return Err(Error::new(
            ErrorKind::Config,
            "refusing to send a key bound to another endpoint",
        ));
    }
    if auth == Auth::None {
        return Err(Error::new(
            ErrorKind::Config,
            "the endpoint sends no key, but the attempt has one",
        ));
    }
    let header = match key.derived(|k| DerivedKey::new(auth, k)) {
        Some(d) if d.auth == auth => d.header.clone(),
        // derived for another auth (an endpoint of the same id sending keys otherwise)
        _ => key_header_for(auth, key.key()),
    };
    header.ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            "the attempt's key is not a valid header value",
        )
    })
}

impl HttpEndpoint {
    /// A client for `config`, sending its key as `auth` says.
    pub fn new(provider: &'static str, config: EndpointConfig, auth: Auth) -> Result<Self> {
        let base = Url::parse(&config.base_url).map_err(|_| {
            Error::new(ErrorKind::Config, "invalid base URL")
                .with_provider(provider)
                .with_endpoint(config.id.clone())
        })?;
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            let first = attempt.previous().first().map(origin_of);
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if first.as_deref() == Some(origin_of(attempt.url()).as_str()) {
                attempt.follow()
            } else {
                // Cross-origin: stop here; `send` follows it by hand without credentials.
                attempt.stop()
            }
        });
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.timeouts.connect)
            .redirect(policy)
            .user_agent(concat!("infermux/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60));
        if !nack_retries(&base) {
            builder = builder.retry(reqwest::retry::never().max_retries_per_request(0));
        }
        let client = builder.build().map_err(|e| {
            from_transport(e, "building the HTTP client failed")
                .with_provider(provider)
                .with_endpoint(config.id.clone())
        })?;
        let scrubber = Scrubber::new(config.api_key.as_ref());
        Ok(HttpEndpoint {
            provider,
            join_prefix: join_prefix(&config.base_url, &base),
            host: host_header(&base),
            base,
            headers: parse_headers(&config.headers),
            key_header: config
                .api_key
                .as_ref()
                .and_then(|k| key_header_for(auth, k)),
            config,
            auth,
            client,
            scrubber,
        })
    }

    /// The same endpoint (same connection pool, key, auth, timeouts and headers) at another
    /// base URL on the same origin: how a provider reaches a server's other route families
    /// (TGI's `/v1`, OVMS's `/v3`) without a second connection pool. Fails with
    /// [`ErrorKind::Config`] for an invalid URL or another origin (the key is bound to this
    /// one).
    ///
    /// ```
    /// use infermux_core::EndpointConfig;
    /// use infermux_http::{Auth, HttpEndpoint};
    /// let root = HttpEndpoint::new("tgi", EndpointConfig::new("tgi", "http://127.0.0.1:8080")?, Auth::Bearer)?;
    /// let v1 = root.rebased("http://127.0.0.1:8080/v1")?;
    /// assert_eq!(v1.config().base_url, "http://127.0.0.1:8080/v1");
    /// assert!(root.rebased("http://elsewhere.example/v1").is_err());
    /// # Ok::<(), infermux_core::Error>(())
    /// ```
    pub fn rebased(&self, base_url: impl AsRef<str>) -> Result<Self> {
        let config_err = |m: &'static str| {
            Error::new(ErrorKind::Config, m)
                .with_provider(self.provider)
                .with_endpoint(self.config.id.clone())
        };
        let base = base_url.as_ref().trim().trim_end_matches('/').to_owned();
        let url = Url::parse(&base).map_err(|_| config_err("invalid base URL"))?;
        if !same_origin(&url, &self.base) {
            return Err(config_err(
                "a rebased endpoint must stay on its endpoint's origin",
            ));
        }
        let mut ep = self.clone();
        ep.join_prefix = join_prefix(&base, &url);
        ep.base = url;
        ep.config.base_url = base;
        Ok(ep)
    }

    /// The endpoint's configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }
    /// The endpoint's id.
    pub fn id(&self) -> &EndpointId {
        &self.config.id
    }
    /// The provider name errors carry.
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// A request to `path` (appended to the base URL) or to an absolute URL.
    pub fn request(&self, method: Method, path: &str) -> HttpRequest<'_> {
        self.request_at(method, self.url_for(path))
    }

    /// `path` joined to the base URL once, for a request sent many times: see
    /// [`HttpEndpoint::request_to`]. A route is this endpoint's; sent through another
    /// endpoint it is a URL like any other, and the other's key still goes only to the other's
    /// origin.
    ///
    /// ```
    /// use infermux_core::EndpointConfig;
    /// use infermux_http::{Auth, HttpEndpoint, Method};
    /// let ep = HttpEndpoint::new("local", EndpointConfig::new("local", "http://127.0.0.1:8080/v1")?, Auth::Bearer)?;
    /// let chat = ep.route("/chat/completions");
    /// // each request clones the joined URL instead of joining the path again
    /// let request = ep.request_to(Method::POST, &chat).json(&serde_json::json!({"model": "m"}));
    /// # drop(request);
    /// # Ok::<(), infermux_core::Error>(())
    /// ```
    pub fn route(&self, path: &str) -> Route {
        Route(self.url_for(path))
    }

    /// A request to a [`route`](HttpEndpoint::route) of this endpoint: the same request as
    /// [`HttpEndpoint::request`] with the route's path, without joining the path to the base
    /// URL again.
    pub fn request_to(&self, method: Method, route: &Route) -> HttpRequest<'_> {
        self.request_at(method, route.0.clone())
    }

    fn request_at(&self, method: Method, url: Result<Url, String>) -> HttpRequest<'_> {
        HttpRequest {
            ep: self,
            method,
            url,
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            error: None,
            send_key: true,
        }
    }
    /// A GET request.
    pub fn get(&self, path: &str) -> HttpRequest<'_> {
        self.request(Method::GET, path)
    }
    /// A POST request.
    pub fn post(&self, path: &str) -> HttpRequest<'_> {
        self.request(Method::POST, path)
    }

    /// The URL of a request to `path`: an absolute URL as it is, otherwise `path` appended to
    /// the base URL (with a `/` between them unless `path` is empty or starts with `/` or `?`).
    /// A plain path is joined to the parsed base; anything else is parsed whole, as written.
    /// `Err` holds the text that is not a URL.
    fn url_for(&self, path: &str) -> Result<Url, String> {
        if path.starts_with("http://") || path.starts_with("https://") {
            return Url::parse(path).map_err(|_| path.to_owned());
        }
        if let Some(prefix) = &self.join_prefix {
            if path.is_empty() {
                return Ok(self.base.clone());
            }
            if !path.starts_with('?') {
                let sep = if path.starts_with('/') { "" } else { "/" };
                let mut joined = String::with_capacity(prefix.len() + sep.len() + path.len());
                joined.push_str(prefix);
                joined.push_str(sep);
                joined.push_str(path);
                if plain_path(&joined) {
                    let mut url = self.base.clone();
                    url.set_path(&joined);
                    return Ok(url);
                }
            }
        }
        let url = if path.is_empty() || path.starts_with('/') || path.starts_with('?') {
            format!("{}{}", self.config.base_url, path)
        } else {
            format!("{}/{}", self.config.base_url, path)
        };
        Url::parse(&url).map_err(|_| url)
    }

    /// Whether `url` is on this endpoint's origin.
    fn is_home(&self, url: &Url) -> bool {
        same_origin(url, &self.base)
    }

    fn err(&self, e: Error, ctx: &RequestContext) -> Error {
        e.in_context(ctx.request_id(), self.provider, &self.config.id)
    }

    /// Fills `ctx`'s request id, this endpoint's provider name and id into errors that lack
    /// them (for errors a provider raises after the transport, such as decoding ones).
    pub fn error_context(&self, ctx: &RequestContext) -> impl Fn(Error) -> Error + '_ {
        let id = ctx.request_id();
        move |e| e.in_context(id, self.provider, &self.config.id)
    }
}

/// A path joined to an endpoint's base URL, made once by [`HttpEndpoint::route`] and sent
/// with [`HttpEndpoint::request_to`].
#[derive(Clone)]
pub struct Route(Result<Url, String>);

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // the path only: a base URL may carry a key in its query
        let path = match &self.0 {
            Ok(url) => url.path(),
            Err(_) => "<invalid URL>",
        };
        f.debug_tuple("Route").field(&path).finish()
    }
}

/// A request being built. Nothing is sent before [`HttpRequest::send`].
pub struct HttpRequest<'a> {
    ep: &'a HttpEndpoint,
    method: Method,
    url: Result<Url, String>,
    query: Vec<(String, String)>,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<(Bytes, HeaderValue)>,
    error: Option<Error>,
    send_key: bool,
}

impl fmt::Debug for HttpRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            // without the query, and without a `user:password@` (refused at send, never shown)
            .field(
                "url",
                &infermux_core::url_without_userinfo(match &self.url {
                    Ok(url) => &url[..url::Position::AfterPath],
                    Err(text) => text.split('?').next().unwrap_or(""),
                }),
            )
            .finish_non_exhaustive()
    }
}

impl<'a> HttpRequest<'a> {
    /// Adds a header. Auth headers are refused here: the key goes through [`Auth`].
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(n), Ok(v)) => self.header_value(n, v),
            _ => {
                self.error = Some(Error::new(ErrorKind::Config, "invalid header"));
                self
            }
        }
    }
    /// Adds a header its caller built once (a provider's fixed headers, checked when they
    /// are configured rather than on every request). The auth headers are refused, as by
    /// [`HttpRequest::header`].
    pub fn header_value(mut self, name: HeaderName, value: HeaderValue) -> Self {
        // a `HeaderName` is lowercase, as the auth headers' names are
        if AUTH_HEADERS.contains(&name.as_str()) {
            self.error = Some(Error::new(
                ErrorKind::Config,
                "auth headers are set from the endpoint's key, not by hand",
            ));
            return self;
        }
        self.headers.push((name, value));
        self
    }
    /// Adds a query parameter (never a key: keys go in headers).
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_owned(), value.to_owned()));
        self
    }
    /// Sends this request without the endpoint's key.
    pub fn without_key(mut self) -> Self {
        self.send_key = false;
        self
    }
    /// A JSON body.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(v) => {
                self.body = Some((Bytes::from(v), HeaderValue::from_static("application/json")))
            }
            Err(e) => {
                self.error = Some(
                    Error::new(
                        ErrorKind::InvalidRequest,
                        "request body is not serialisable",
                    )
                    .with_source(e),
                )
            }
        }
        self
    }
    /// A raw body with its content type.
    pub fn body(mut self, body: impl Into<Bytes>, content_type: &str) -> Self {
        match HeaderValue::try_from(content_type) {
            Ok(ct) => self.body = Some((body.into(), ct)),
            Err(_) => self.error = Some(Error::new(ErrorKind::Config, "invalid content type")),
        }
        self
    }

    /// Sends the request and returns the response if its status is 2xx; otherwise the typed
    /// error built from status, headers and body.
    pub fn send(self, ctx: &RequestContext) -> impl Future<Output = Result<HttpResponse>> {
        self.send_mapped(ctx, error_from_response)
    }

    /// [`HttpRequest::send`] with the provider's own mapping of a non-2xx status, headers and
    /// body (at most 64 KiB of it) to an error; the error gets the request's context.
    pub fn send_mapped(
        self,
        ctx: &RequestContext,
        map: impl FnOnce(u16, &HeaderMap, &[u8]) -> Error,
    ) -> impl Future<Output = Result<HttpResponse>> {
        self.sending(ctx, Some(map))
    }

    /// Sends the request and returns the response whatever its status.
    pub fn send_raw(self, ctx: &RequestContext) -> impl Future<Output = Result<HttpResponse>> {
        self.sending(ctx, None::<fn(u16, &HeaderMap, &[u8]) -> Error>)
    }

    /// The one future behind `send`, `send_mapped` and `send_raw`. A plain function returning
    /// one `async` block (not nested `async fn`s, which each keep a copy of the request the
    /// next one is given): the request's parts are captured once and used in place, the
    /// attempt is awaited from them by reference, and reading an error body reuses the
    /// attempt's space. Nothing runs before the first poll.
    fn sending<'s, M>(
        self,
        ctx: &'s RequestContext,
        map: Option<M>,
    ) -> impl Future<Output = Result<HttpResponse>> + use<'a, 's, M>
    where
        M: FnOnce(u16, &HeaderMap, &[u8]) -> Error,
    {
        let HttpRequest {
            ep,
            mut method,
            mut url,
            query,
            headers,
            mut body,
            mut error,
            send_key,
        } = self;
        async move {
            if let Some(e) = error.take() {
                return Err(ep.err(e, ctx));
            }
            let Ok(url) = &mut url else {
                return Err(ep.err(Error::new(ErrorKind::Config, "invalid request URL"), ctx));
            };
            if !query.is_empty() {
                url.query_pairs_mut()
                    .extend_pairs(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            }
            let parts = Parts {
                ep,
                ctx,
                headers: &headers,
                send_key,
            };
            let mut resp = parts.attempt(url, &mut method, &mut body).await?;
            let Some(map) = map else { return Ok(resp) };
            if (200..300).contains(&resp.status) {
                return Ok(resp);
            }
            let body = resp
                .read_body(MAX_ERROR_BODY, true)
                .await
                .unwrap_or_default();
            let body = resp.scrubber.scrub(&body);
            Err(ep.err(map(resp.status, resp.headers(), &body), ctx))
        }
    }
}

/// The parts of a request an attempt reads but does not change.
struct Parts<'r> {
    ep: &'r HttpEndpoint,
    ctx: &'r RequestContext,
    headers: &'r [(HeaderName, HeaderValue)],
    send_key: bool,
}

impl Parts<'_> {
    /// Sends the request (following redirects by hand) until a response's headers arrive.
    /// `url`, `method` and `body` change as redirects are followed.
    async fn attempt(
        &self,
        url: &mut Url,
        method: &mut Method,
        body: &mut Option<(Bytes, HeaderValue)>,
    ) -> Result<HttpResponse> {
        let (ep, ctx) = (self.ep, self.ctx);
        let t = &ep.config.timeouts;
        // The attempt's clock reads: this one, and the caller's deadline's when it has one.
        let now = Instant::now();
        let mut deadline = t.total.map(|d| later(now, d));
        if let Some(left) = ctx.remaining() {
            let d = later(now, left);
            deadline = Some(deadline.map_or(d, |x| x.min(d)));
        }
        let first_byte_at = {
            let fb = later(now, t.first_byte);
            deadline.map_or(fb, |d| d.min(fb))
        };
        let mut with_key = self.send_key;
        // The pool's key for this attempt, if it chose one: checked against this endpoint
        // before anything is sent, and its header built once for every hop.
        let attempt_key = match ctx.key() {
            None => None,
            Some(k) => {
                Some(attempt_key_header(&ep.config.id, ep.auth, k).map_err(|e| ep.err(e, ctx))?)
            }
        };
        let request_id = {
            let mut id = [0u8; 26];
            HeaderValue::from_bytes(ctx.request_id().encode(&mut id).as_bytes())
                .map_err(|_| ep.err(Error::new(ErrorKind::Config, "invalid request id"), ctx))?
        };
        // One timer for the whole attempt until the headers arrive, across redirects: the
        // first-byte timeout, or the deadline when it comes first.
        let mut first_byte = pin!(sleep_until(first_byte_at));

        for hop in 0..=MAX_REDIRECTS {
            let pending = self.hop_request(
                url,
                method,
                body,
                with_key,
                attempt_key.as_ref(),
                &request_id,
            )?;
            let resp = match before(pending, first_byte.as_mut()).await {
                None => {
                    return Err(ep.err(
                        Error::new(
                            ErrorKind::Timeout,
                            "no response before the first-byte timeout",
                        )
                        .with_reached_server(true),
                        ctx,
                    ));
                }
                Some(Err(e)) => return Err(ep.err(send_error(e, &ep.config.id, url), ctx)),
                Some(Ok(r)) => r,
            };
            let status = resp.status().as_u16();
            if (300..400).contains(&status)
                && hop < MAX_REDIRECTS
                && matches!(status, 301 | 302 | 303 | 307 | 308)
                && let Some(next) = resp
                    .headers()
                    .get(http::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| url.join(l).ok())
            {
                // reqwest stopped here because the target is another origin: follow by hand,
                // never with credentials.
                if !ep.is_home(&next) {
                    with_key = false;
                }
                if matches!(status, 301..=303) && *method != Method::HEAD {
                    *method = Method::GET;
                    *body = None;
                }
                *url = next;
                continue;
            }
            ctx.mark_first_byte();
            // Parsed only for a caller that keeps them (a pool feeding its limits).
            if ctx.meta().is_some() {
                ctx.record_rate_limits(&rate_limits(resp.headers()));
            }
            return HttpResponse::new(resp, ep, ctx, deadline, first_byte_at);
        }
        Err(ep.err(Error::new(ErrorKind::Server, "too many redirects"), ctx))
    }

    /// One hop's request, built in place (not through `RequestBuilder`, which is moved by
    /// value once per header) and handed to reqwest, in a function of its own so that the
    /// request is not kept in the attempt's future while the attempt waits.
    fn hop_request(
        &self,
        url: &Url,
        method: &Method,
        body: &Option<(Bytes, HeaderValue)>,
        with_key: bool,
        attempt_key: Option<&(HeaderName, HeaderValue)>,
        request_id: &HeaderValue,
    ) -> Result<impl Future<Output = reqwest::Result<reqwest::Response>> + use<>> {
        let (ep, ctx) = (self.ep, self.ctx);
        let home = (with_key && (ep.config.api_key.is_some() || attempt_key.is_some()))
            || !ep.config.headers.is_empty();
        let home = home && ep.is_home(url);
        // Credentials written into a URL (`user:password@`, from a rebased base, an
        // absolute path or a redirect) are never sent: keys go in the endpoint's key.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ep.err(
                Error::new(
                    ErrorKind::Config,
                    "a URL with credentials in it (user:password@) is not sent",
                )
                .with_reached_server(false),
                ctx,
            ));
        }
        let mut req = reqwest::Request::new(method.clone(), url.clone());
        let h = req.headers_mut();
        // Room for every header the request ends with, ours and the ones reqwest and hyper
        // add (user-agent, accept, accept-encoding, host, content-length): an empty map
        // holds six before it grows, and growing rehashes and reallocates on every request.
        let ours = 3 + self.headers.len() + if home { ep.config.headers.len() } else { 0 };
        *h = http::HeaderMap::with_capacity(ours + REQWEST_ADDS);
        // The endpoint's own headers (which may carry tenant ids or tokens of their own)
        // go to its origin only, like its key.
        if home {
            let Some(headers) = &ep.headers else {
                // the name only: a value may carry a token of its own
                let bad = ep.config.headers.iter().find(|(k, v)| {
                    HeaderName::try_from(k.as_str()).is_err()
                        || HeaderValue::try_from(v.as_str()).is_err()
                });
                let name = bad.map_or("", |(k, _)| k.as_str());
                return Err(ep.err(
                    Error::new(
                        ErrorKind::Config,
                        format!(
                            "the endpoint's header {name:?} is not a valid header name and value"
                        ),
                    )
                    .with_reached_server(false),
                    ctx,
                ));
            };
            for (k, v) in headers.iter() {
                h.append(k.clone(), v.clone());
            }
        }
        for (k, v) in self.headers {
            h.append(k.clone(), v.clone());
        }
        h.append(X_REQUEST_ID, request_id.clone());
        // (not over a `Host` the endpoint's own headers or the request's set)
        if let Some(host) = &ep.host
            && ep.is_home(url)
            && !h.contains_key(http::header::HOST)
        {
            h.append(http::header::HOST, host.clone());
        }
        if let Some((b, ct)) = body {
            h.append(http::header::CONTENT_TYPE, ct.clone());
            *req.body_mut() = Some(reqwest::Body::from(b.clone()));
        }
        if with_key && (attempt_key.is_some() || ep.config.api_key.is_some()) {
            // A key (the pool's for this attempt, else the endpoint's own) is bound to its
            // endpoint's origin, checked at send time.
            if !home {
                let whose = if attempt_key.is_some() {
                    "attempt's"
                } else {
                    "endpoint's"
                };
                return Err(ep.err(
                    Error::new(
                        ErrorKind::Config,
                        format!("refusing to send the {whose} key to another origin"),
                    ),
                    ctx,
                ));
            }
            let header = match (attempt_key, &ep.key_header, ep.auth) {
                (Some((name, value)), _, _) => Some((name, value)),
                (None, _, Auth::None) => None,
                (None, Some((name, value)), _) => Some((name, value)),
                (None, None, Auth::Bearer | Auth::Header(_)) => {
                    return Err(ep.err(
                        Error::new(
                            ErrorKind::Config,
                            "the endpoint's key is not a valid header value",
                        )
                        .with_reached_server(false),
                        ctx,
                    ));
                }
            };
            if let Some((name, value)) = header {
                req.headers_mut().append(name.clone(), value.clone());
            }
        }
        Ok(ep.client.execute(req))
    }
}

/// `fut`'s output, or `None` if `timer` fires first (`fut` is polled first, as
/// `tokio::time::timeout` does).
async fn before<F: Future>(fut: F, mut timer: Pin<&mut Sleep>) -> Option<F::Output> {
    let mut fut = pin!(fut);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// A response whose headers have arrived; the body is read with the idle timeout and the size
/// limit.
///
/// Reading the body reads the clock only when it has to wait for data: a body that is there
/// already (a non-streamed answer usually arrives with its headers) costs no timer and no
/// clock read; a wait arms one timer, kept for the whole body and moved forward (without
/// re-registering it) on each later wait.
pub struct HttpResponse {
    status: u16,
    resp: reqwest::Response,
    idle: Duration,
    deadline: Option<Instant>,
    /// Until the body's first data: the first-byte timeout's end (`Timeouts::first_byte`
    /// counts to the first byte of the body, not of the headers). A wait for the first data
    /// lasts until then or the idle timeout, whichever ends later.
    first_data_by: Option<Instant>,
    /// The idle/deadline timer, created at the first wait for body data.
    timer: Option<Pin<Box<Sleep>>>,
    max_body: usize,
    error_ctx: (RequestId, &'static str, EndpointId),
    scrubber: Scrubber,
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Whether a body of this content type is text the key must be scrubbed from: JSON (and
/// NDJSON), `text/*`, or no (readable) content type.
fn is_textual(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| {
            let ct = ct.as_bytes();
            // `| 0x20` lower-cases an ASCII letter and maps nothing else onto one
            let json = u32::from_le_bytes(*b"json");
            ct.get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"text/"))
                || ct.windows(4).any(|w| {
                    <[u8; 4]>::try_from(w)
                        .is_ok_and(|w| u32::from_le_bytes(w) | 0x2020_2020 == json)
                })
        })
}

impl HttpResponse {
    fn new(
        resp: reqwest::Response,
        ep: &HttpEndpoint,
        ctx: &RequestContext,
        deadline: Option<Instant>,
        first_data_by: Instant,
    ) -> Result<Self> {
        let max_body = ep.config.limits.max_body_bytes;
        if let Some(len) = resp.content_length()
            && len > max_body as u64
            && resp.status().is_success()
        {
            return Err(ep.err(
                Error::new(
                    ErrorKind::Decode,
                    format!("response body of {len} bytes exceeds the limit of {max_body} bytes"),
                )
                .with_status(resp.status().as_u16())
                .with_over_body_limit(true),
                ctx,
            ));
        }
        Ok(HttpResponse {
            status: resp.status().as_u16(),
            resp,
            idle: ep.config.timeouts.idle,
            deadline,
            first_data_by: Some(first_data_by),
            timer: None,
            max_body,
            error_ctx: (ctx.request_id(), ep.provider, ep.config.id.clone()),
            scrubber: match ctx.key() {
                Some(k) => match k.derived(|key| DerivedKey::new(ep.auth, key)) {
                    Some(d) => ep
                        .scrubber
                        .with_attempt_finder(k.key(), || d.finder.clone()),
                    None => ep.scrubber.with_attempt_key(k.key()),
                },
                None => ep.scrubber.clone(),
            },
        })
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }
    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        self.resp.headers()
    }
    /// The rate-limit headers, parsed.
    pub fn rate_limits(&self) -> RateLimitInfo {
        rate_limits(self.resp.headers())
    }

    fn err(&self, e: Error) -> Error {
        let (id, provider, ep) = &self.error_ctx;
        e.with_status(self.status).in_context(*id, provider, ep)
    }

    /// The whole body (decompressed), at most the endpoint's body limit. A textual body (JSON,
    /// `text/*`, or no content type) has the endpoint's key scrubbed from it.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn keeps a second copy of the response it is given"
    )]
    pub fn bytes(mut self) -> impl Future<Output = Result<Bytes>> {
        // an `async` block reading the response it owns in place (an `async fn` would keep a
        // second copy of it)
        async move { self.read_scrubbed().await }
    }

    async fn read_scrubbed(&mut self) -> Result<Bytes> {
        let textual = self.scrubber.is_active() && is_textual(self.resp.headers());
        let body = self.read_body(self.max_body, false).await?;
        Ok(if textual {
            self.scrubber.scrub_bytes(body)
        } else {
            body
        })
    }

    /// The body, at most `max` bytes of it (cut there when `truncate`, an error otherwise).
    /// A body that arrives in one chunk is handed out as it is, without a copy.
    async fn read_body(&mut self, max: usize, truncate: bool) -> Result<Bytes> {
        let mut first: Option<Bytes> = None;
        let mut buf = BytesMut::new();
        loop {
            let have = first.as_ref().map_or(buf.len(), Bytes::len);
            match self.next_chunk().await {
                Ok(Some(mut chunk)) => {
                    let full = have + chunk.len() > max;
                    if full {
                        if !truncate {
                            return Err(self.err(
                                Error::new(
                                    ErrorKind::Decode,
                                    format!("response body exceeds the limit of {max} bytes"),
                                )
                                .with_over_body_limit(true),
                            ));
                        }
                        chunk.truncate(max - have);
                    }
                    if let Some(one) = first.take() {
                        buf.reserve(one.len() + chunk.len());
                        buf.extend_from_slice(&one);
                        buf.extend_from_slice(&chunk);
                    } else if buf.is_empty() {
                        first = Some(chunk);
                    } else {
                        buf.extend_from_slice(&chunk);
                    }
                    if full {
                        return Ok(first.unwrap_or_else(|| buf.freeze()));
                    }
                }
                Ok(None) => return Ok(first.unwrap_or_else(|| buf.freeze())),
                Err(e) => return Err(self.err(e)),
            }
        }
    }

    /// The next chunk of the body, waiting at most until the idle timeout (counted from this
    /// call) or the attempt's deadline.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        let HttpResponse {
            resp,
            idle,
            deadline,
            first_data_by,
            timer,
            ..
        } = self;
        let mut chunk = pin!(resp.chunk());
        // The timer is armed at the first wait of this call: the idle time counts from then.
        let mut idle_at: Option<Instant> = None;
        let next = std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = chunk.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            let timer = match timer {
                Some(timer) if idle_at.is_some() => timer,
                _ => {
                    let mut at = later(Instant::now(), *idle);
                    if let Some(f) = *first_data_by {
                        at = at.max(f);
                    }
                    idle_at = Some(at);
                    let at = deadline.map_or(at, |d| d.min(at));
                    match timer {
                        Some(timer) => {
                            timer.as_mut().reset(at);
                            timer
                        }
                        None => timer.insert(Box::pin(sleep_until(at))),
                    }
                }
            };
            timer.as_mut().poll(cx).map(|()| None)
        })
        .await;
        match next {
            None => Err(Error::new(
                ErrorKind::Timeout,
                if deadline.is_some_and(|d| idle_at.is_some_and(|i| d <= i)) {
                    "the attempt's time ran out while reading the body"
                } else if first_data_by.is_some() {
                    "no body data within the first-byte timeout"
                } else {
                    "no data within the idle timeout"
                },
            )
            .with_reached_server(true)),
            Some(Ok(chunk)) => {
                *first_data_by = None;
                Ok(chunk)
            }
            Some(Err(e)) => {
                // a body cut short (its connection closed or reset before the end) is the
                // connection's failure, even where reqwest's decompression reports it as a
                // decoding error; a body that arrived whole and does not decode is `Decode`
                let kind = if e.is_decode() && !cut_short(&e) {
                    ErrorKind::Decode
                } else {
                    ErrorKind::Connect
                };
                Err(Error::new(
                    kind,
                    format!("reading the response body failed: {}", root_cause(&e)),
                )
                .with_reached_server(true)
                .with_source(e.without_url()))
            }
        }
    }

    /// The body parsed as JSON.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn keeps a second copy of the response it is given"
    )]
    pub fn json<T: serde::de::DeserializeOwned>(mut self) -> impl Future<Output = Result<T>> {
        async move { self.json_in_place().await }
    }

    async fn json_in_place<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let body = self.read_scrubbed().await?;
        crate::json::from_body(&body).map_err(|e| {
            let body = self.scrubber.scrub(&body);
            let snippet: String =
                String::from_utf8_lossy(body.get(..120).unwrap_or(&body)).into_owned();
            let (id, provider, ep) = &self.error_ctx;
            // serde's message quotes the value it could not read: scrubbed too (a body that is
            // not textual by its content type was not scrubbed before parsing)
            let mut message =
                format!("response is not the expected JSON ({e}); body starts: {snippet:?}");
            self.scrubber.scrub_string(&mut message);
            Error::new(ErrorKind::Decode, message)
                .with_status(self.status)
                .in_context(*id, provider, ep)
        })
    }

    /// The body as Server-Sent Events.
    pub fn sse(self) -> DecodedStream<SseEvent> {
        let dec = SseDecoder::with_max_event_bytes(self.max_body);
        self.decode(dec)
    }
    /// [`HttpResponse::sse`], with `error:` lines read as `error` events
    /// ([`SseDecoder::reading_error_lines`]).
    pub fn sse_reading_error_lines(self) -> DecodedStream<SseEvent> {
        let dec = SseDecoder::with_max_event_bytes(self.max_body).reading_error_lines();
        self.decode(dec)
    }
    /// The body as newline-delimited JSON: one JSON text per item.
    pub fn ndjson(self) -> DecodedStream<String> {
        let dec = NdjsonDecoder::with_max_event_bytes(self.max_body);
        self.decode(dec)
    }
    /// The body as a streamed JSON array: one element's JSON text per item.
    pub fn json_array(self) -> DecodedStream<String> {
        let dec = JsonArrayDecoder::with_max_event_bytes(self.max_body);
        self.decode(dec)
    }

    fn decode<D: Decoder>(self, decoder: D) -> DecodedStream<D::Item> {
        // boxed: `unfold` moves its state into each item's future and back out with the item
        // (480 bytes for SSE, twice an event); a box moves as one pointer
        let state = Box::new(DecodeState {
            resp: self,
            decoder,
            pending: Vec::new(),
            next: 0,
            finished: false,
            failed: None,
        });
        Box::pin(futures_util::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(item) = st.pending.get_mut(st.next) {
                    let item = std::mem::take(item);
                    st.next += 1;
                    return Some((Ok(item), st));
                }
                st.pending.clear();
                st.next = 0;
                if let Some(e) = st.failed.take() {
                    return Some((Err(e), st));
                }
                if st.finished {
                    return None;
                }
                let chunk = st.resp.next_chunk().await;
                match chunk {
                    // a stream is bounded per event (the decoder's limit is the body limit)
                    // and in time (idle timeout, deadline), not in its whole length: a long
                    // answer with log-probabilities passes 32 MiB and must not be cut there
                    Ok(Some(bytes)) => {
                        let fed = st.decoder.feed_into(&bytes, &mut st.pending);
                        st.scrub_pending();
                        // the items the chunk completed before the bad bytes go out first,
                        // then the error: what the caller sees does not depend on where
                        // the network split the body
                        if let Err(e) = fed {
                            st.finished = true;
                            st.failed = Some(st.resp.err(decode_error(e)));
                        }
                    }
                    Ok(None) => {
                        st.finished = true;
                        let finished = st.decoder.finish_into(&mut st.pending);
                        st.scrub_pending();
                        if let Err(e) = finished {
                            st.failed = Some(st.resp.err(decode_error(e)));
                        }
                    }
                    Err(e) => {
                        st.finished = true;
                        let e = st.resp.err(e);
                        return Some((Err(e), st));
                    }
                }
            }
        }))
    }
}

/// A body being decoded: `pending[next..]` are the decoded items not handed out yet (the
/// buffer is reused for the whole body).
struct DecodeState<D: Decoder> {
    resp: HttpResponse,
    decoder: D,
    pending: Vec<D::Item>,
    next: usize,
    finished: bool,
    /// The decoding error handed out once `pending` is: the body is read no further.
    failed: Option<Error>,
}

impl<D: Decoder> DecodeState<D> {
    /// Scrubs the key from the items just decoded.
    fn scrub_pending(&mut self) {
        for item in &mut self.pending {
            D::scrub(item, &self.resp.scrubber);
        }
    }
}

fn decode_error(e: DecodeError) -> Error {
    Error::new(ErrorKind::Decode, format!("stream decoding failed: {e}")).with_source(e)
}

/// The incremental decoders a response body can be read with.
trait Decoder: Send + 'static {
    type Item: Send + Default + 'static;
    /// Appends the items `chunk` completes to `out`; on an error, what it appended before
    /// the error is still handed out, then the error.
    fn feed_into(&mut self, chunk: &[u8], out: &mut Vec<Self::Item>) -> Result<(), DecodeError>;
    fn finish_into(&mut self, out: &mut Vec<Self::Item>) -> Result<(), DecodeError>;
    /// Scrubs the endpoint's key from the item's text (items are whole events, so a key is
    /// never split across two).
    fn scrub(item: &mut Self::Item, scrubber: &Scrubber);
}

impl Decoder for SseDecoder {
    type Item = SseEvent;
    fn scrub(item: &mut SseEvent, scrubber: &Scrubber) {
        scrubber.scrub_string(&mut item.data);
        if let Some(e) = &mut item.event {
            scrubber.scrub_string(e);
        }
        if let Some(id) = &mut item.id {
            scrubber.scrub_string(id);
        }
    }
    fn feed_into(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), DecodeError> {
        SseDecoder::feed_into(self, chunk, out)
    }
    fn finish_into(&mut self, out: &mut Vec<SseEvent>) -> Result<(), DecodeError> {
        out.extend(SseDecoder::finish(self)?);
        Ok(())
    }
}

impl Decoder for NdjsonDecoder {
    type Item = String;
    fn scrub(item: &mut String, scrubber: &Scrubber) {
        scrubber.scrub_string(item);
    }
    fn feed_into(&mut self, chunk: &[u8], out: &mut Vec<String>) -> Result<(), DecodeError> {
        NdjsonDecoder::feed_into(self, chunk, out)
    }
    fn finish_into(&mut self, out: &mut Vec<String>) -> Result<(), DecodeError> {
        out.extend(NdjsonDecoder::finish(self)?);
        Ok(())
    }
}

impl Decoder for JsonArrayDecoder {
    type Item = String;
    fn scrub(item: &mut String, scrubber: &Scrubber) {
        scrubber.scrub_string(item);
    }
    fn feed_into(&mut self, chunk: &[u8], out: &mut Vec<String>) -> Result<(), DecodeError> {
        JsonArrayDecoder::feed_into(self, chunk, out)
    }
    fn finish_into(&mut self, _out: &mut Vec<String>) -> Result<(), DecodeError> {
        JsonArrayDecoder::finish(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// How a request's URL was built before the base was parsed once per endpoint.
    fn url_as_before(base_url: &str, path: &str) -> Option<Url> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else if path.is_empty() || path.starts_with('/') || path.starts_with('?') {
            format!("{base_url}{path}")
        } else {
            format!("{base_url}/{path}")
        };
        Url::parse(&url).ok()
    }

    /// An endpoint whose base URL is `base_url` exactly as written (not trimmed).
    fn endpoint_at(base_url: &str) -> Option<HttpEndpoint> {
        let mut cfg = EndpointConfig::new("t", "http://127.0.0.1:9").ok()?;
        cfg.base_url = base_url.to_owned();
        HttpEndpoint::new("test", cfg, Auth::Bearer).ok()
    }

    /// reqwest's retry of HTTP/2 refusals stays on wherever HTTP/2 can be spoken (TLS), and
    /// is off for plain HTTP, which never speaks it here.
    #[test]
    fn nack_retries_only_where_http2_can_be_spoken() {
        let on = |u: &str| nack_retries(&Url::parse(u).unwrap());
        assert!(!on("http://127.0.0.1:8080/v1"));
        assert!(!on("HTTP://Local.Host:11434"));
        assert!(on("https://api.openai.com/v1"));
        assert!(on("HTTPS://api.example.com"));
    }

    /// A route is the URL `request` builds for its path, and its `Debug` shows the path only
    /// (a base may carry a key in its query).
    #[test]
    fn a_route_is_the_request_s_url_and_shows_its_path_only() {
        for base in BASES {
            let Some(ep) = endpoint_at(base) else {
                continue;
            };
            for path in [
                "/chat/completions",
                "embeddings",
                "",
                "?a=b",
                "http://o.example/x",
            ] {
                assert_eq!(ep.route(path).0, ep.url_for(path), "{base:?} {path:?}");
            }
        }
        let ep = endpoint_at("http://h/v1").unwrap();
        let shown = format!("{:?}", ep.route("/chat/completions"));
        assert_eq!(shown, r#"Route("/v1/chat/completions")"#);
        for base in ["http://h/v1?key=secret-1", "http://u:secret-2@h/v1"] {
            let ep = endpoint_at(base).unwrap();
            for path in ["/chat/completions", "x?key=secret-3"] {
                let shown = format!("{:?}", ep.route(path));
                assert!(!shown.contains("secret"), "{base:?} {path:?}: {shown}");
            }
        }
    }

    /// The `Host` header written for a plain-HTTP endpoint is hyper's: the host, and the port
    /// unless it is the default; none over TLS.
    #[test]
    fn host_header_is_host_and_port_unless_default() {
        let host =
            |u: &str| host_header(&Url::parse(u).unwrap()).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            host("http://127.0.0.1:8080/v1").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(
            host("http://Local.Host:80/v1").as_deref(),
            Some("local.host")
        );
        assert_eq!(host("http://h").as_deref(), Some("h"));
        assert_eq!(host("http://[::1]:9/v3").as_deref(), Some("[::1]:9"));
        assert_eq!(host("https://api.example.com/v1"), None);
    }

    const BASES: &[&str] = &[
        "http://127.0.0.1:8080",
        "http://127.0.0.1:8080/v1",
        "https://Api.Example.COM/v1beta",
        "http://h:80/a/b",
        "https://h:443",
        "http://user:pw@h/x",
        "http://[::1]:9/v3",
        "http://h/v1/",
        "http://h/v1?key=x",
        "http://h?key=x",
        "http://h/v1#frag",
        "http://h#frag",
        "http://h/a%20b",
        "http://h/./v1",
        "http://h/v1/..",
        " http://h/v1 ",
        "http://h\\v1",
        "http://h/\u{e9}",
        "HTTP://H/V1",
        "http://h/v\t1",
    ];

    proptest! {
        /// A request's URL is the one parsing `base + path` gives, whatever the base and the
        /// path (the plain ones take the join, the others the whole parse).
        #[test]
        fn joined_urls_are_the_parsed_ones(
            base in proptest::sample::select(BASES),
            path in prop_oneof![
                // mostly what providers send, which takes the join
                3 => "(/|v1|chat|-|~|:|@|[a-z]|\\.|/\\.\\.){0,8}",
                1 => "(/|v1|\\.|\\.\\.|%2e|%|\\?|#|:|@|\u{e9}| |\\\\|chat|-|~|[a-z]){0,8}",
            ],
            absolute in proptest::bool::ANY,
        ) {
            let path = if absolute { format!("http://other.example{path}") } else { path };
            if let Some(ep) = endpoint_at(base) {
                let got = ep.url_for(&path).ok().map(String::from);
                let want = url_as_before(base, &path).map(String::from);
                prop_assert_eq!(got, want, "base {:?} path {:?}", base, path);
            }
        }
    }

    #[test]
    fn common_paths_take_the_join() {
        let ep = endpoint_at("http://127.0.0.1:8080/v1").unwrap();
        assert_eq!(ep.join_prefix.as_deref(), Some("/v1"));
        for (path, want) in [
            (
                "/chat/completions",
                "http://127.0.0.1:8080/v1/chat/completions",
            ),
            ("models", "http://127.0.0.1:8080/v1/models"),
            ("", "http://127.0.0.1:8080/v1"),
            (
                "/models/gemini-2.0:streamGenerateContent",
                "http://127.0.0.1:8080/v1/models/gemini-2.0:streamGenerateContent",
            ),
        ] {
            assert_eq!(ep.url_for(path).unwrap().as_str(), want);
        }
        for not_plain in ["/a/./b", "/a%2Fb", "/m?x=1", "/a b"] {
            assert!(!plain_path(not_plain), "{not_plain}");
        }
        assert!(
            endpoint_at("http://h/v1?key=x")
                .unwrap()
                .join_prefix
                .is_none()
        );
        assert!(endpoint_at("http://h/a%20b").unwrap().join_prefix.is_none());
    }

    const ORIGINS: &[&str] = &[
        "http://h/",
        "http://H:80/x",
        "http://h:8080/",
        "https://h/",
        "https://h:443/y",
        "http://user:pw@h/",
        "ws://h/",
        "ws://h:80/",
        "wss://h/",
        "ftp://h/",
        "http://[::1]/",
        "http://[::1]:80/",
        "http://127.0.0.1/",
        "http://127.1/",
        "file:///tmp/x",
        "data:text/plain,hi",
        "blob:http://h/uuid",
        "mailto:a@h",
    ];

    proptest! {
        /// Comparing origins without building them agrees with comparing their serialization.
        #[test]
        fn same_origin_is_equal_serialized_origins(
            a in proptest::sample::select(ORIGINS),
            b in proptest::sample::select(ORIGINS),
        ) {
            let (a, b) = (Url::parse(a).unwrap(), Url::parse(b).unwrap());
            prop_assert_eq!(same_origin(&a, &b), origin_of(&a) == origin_of(&b), "{} {}", a, b);
        }

        /// The textual check without lower-casing a copy agrees with the one that did.
        #[test]
        fn textual_content_types_as_before(ct in "(JSON|json|Json|js|on|Text/|text/|TEXT|x|/|;|=| |-|\\+|n){0,6}") {
            let before = {
                let ct = ct.to_ascii_lowercase();
                ct.contains("json") || ct.starts_with("text/") || ct.contains("ndjson")
            };
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&ct) {
                headers.insert(http::header::CONTENT_TYPE, v);
                prop_assert_eq!(is_textual(&headers), before, "{:?}", ct);
            }
        }
    }

    #[test]
    fn no_content_type_is_textual() {
        assert!(is_textual(&HeaderMap::new()));
    }
}
