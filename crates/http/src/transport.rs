//! The reqwest transport: [`HttpEndpoint`] builds requests against one endpoint, binds its key
//! to the endpoint's origin, follows redirects without ever forwarding auth to another origin,
//! enforces per-attempt timeouts and the body size limit, and maps failures to typed errors.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use infermux_core::{
    EndpointConfig, EndpointId, Error, ErrorKind, RateLimitInfo, RequestContext, Result,
};
use tokio::time::{Instant, timeout_at};
use url::Url;

use crate::decode::{DecodeError, JsonArrayDecoder, NdjsonDecoder, SseDecoder, SseEvent};
use crate::errors::{error_from_response, from_transport, root_cause, send_error};
use crate::headers::rate_limits;
use crate::scrub::Scrubber;

/// Every header name that carries a credential. None of them ever crosses to another origin.
pub const AUTH_HEADERS: [&str; 4] = ["authorization", "x-api-key", "x-goog-api-key", "api-key"];

const MAX_REDIRECTS: usize = 5;
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

/// A stream of decoded items from a response body.
pub type DecodedStream<T> = Pin<Box<dyn Stream<Item = Result<T>> + Send>>;

type BodyStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// One endpoint's HTTP client: one connection pool, shared by its clones and by
/// [`HttpEndpoint::rebased`] endpoints (other base paths on the same server).
///
/// The endpoint's key is scrubbed (replaced by `***`) from every body the transport hands out
/// (error bodies before they are mapped to an error, streamed items, textual bodies), so a
/// server that echoes it cannot put it in an error; keys shorter than
/// 8 bytes are placeholders (`ollama`, `EMPTY`) and are left alone.
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
    origin: String,
    auth: Auth,
    client: reqwest::Client,
    scrubber: Scrubber,
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

fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

impl HttpEndpoint {
    /// A client for `config`, sending its key as `auth` says.
    pub fn new(provider: &'static str, config: EndpointConfig, auth: Auth) -> Result<Self> {
        let base = Url::parse(&config.base_url).map_err(|_| {
            Error::new(ErrorKind::Config, "invalid base URL")
                .with_provider(provider)
                .with_endpoint(config.id.clone())
        })?;
        let origin = origin_of(&base);
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
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeouts.connect)
            .redirect(policy)
            .user_agent(concat!("infermux/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| {
                from_transport(e, "building the HTTP client failed")
                    .with_provider(provider)
                    .with_endpoint(config.id.clone())
            })?;
        let scrubber = Scrubber::new(config.api_key.as_ref());
        Ok(HttpEndpoint {
            provider,
            config,
            origin,
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
        if origin_of(&url) != self.origin {
            return Err(config_err(
                "a rebased endpoint must stay on its endpoint's origin",
            ));
        }
        let mut ep = self.clone();
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
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else if path.is_empty() || path.starts_with('/') || path.starts_with('?') {
            format!("{}{}", self.config.base_url, path)
        } else {
            format!("{}/{}", self.config.base_url, path)
        };
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

/// A request being built. Nothing is sent before [`HttpRequest::send`].
pub struct HttpRequest<'a> {
    ep: &'a HttpEndpoint,
    method: Method,
    url: String,
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
            .field("url", &self.url.split('?').next().unwrap_or(""))
            .finish_non_exhaustive()
    }
}

impl HttpRequest<'_> {
    /// Adds a header. Auth headers are refused here: the key goes through [`Auth`].
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if AUTH_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            self.error = Some(Error::new(
                ErrorKind::Config,
                "auth headers are set from the endpoint's key, not by hand",
            ));
            return self;
        }
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(n), Ok(v)) => self.headers.push((n, v)),
            _ => self.error = Some(Error::new(ErrorKind::Config, "invalid header")),
        }
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
    pub async fn send(self, ctx: &RequestContext) -> Result<HttpResponse> {
        self.send_mapped(ctx, error_from_response).await
    }

    /// [`HttpRequest::send`] with the provider's own mapping of a non-2xx status, headers and
    /// body (at most 64 KiB of it) to an error; the error gets the request's context.
    pub async fn send_mapped(
        self,
        ctx: &RequestContext,
        map: impl FnOnce(u16, &HeaderMap, &[u8]) -> Error,
    ) -> Result<HttpResponse> {
        let ep = self.ep;
        let resp = self.send_raw(ctx).await?;
        if (200..300).contains(&resp.status) {
            return Ok(resp);
        }
        let status = resp.status;
        let headers = resp.headers.clone();
        let body = resp
            .bytes_limited(MAX_ERROR_BODY, true)
            .await
            .unwrap_or_default();
        let body = ep.scrubber.scrub(&body);
        Err(ep.err(map(status, &headers, &body), ctx))
    }

    /// Sends the request and returns the response whatever its status.
    pub async fn send_raw(self, ctx: &RequestContext) -> Result<HttpResponse> {
        let ep = self.ep;
        if let Some(e) = self.error {
            return Err(ep.err(e, ctx));
        }
        let t = &ep.config.timeouts;
        let now = Instant::now();
        let mut deadline = t.total.map(|d| now + d);
        if let Some(left) = ctx.remaining() {
            let d = now + left;
            deadline = Some(deadline.map_or(d, |x| x.min(d)));
        }
        let first_byte_at = {
            let fb = now + t.first_byte;
            deadline.map_or(fb, |d| d.min(fb))
        };

        let mut url = Url::parse(&self.url)
            .map_err(|_| ep.err(Error::new(ErrorKind::Config, "invalid request URL"), ctx))?;
        if !self.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(self.query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        let mut method = self.method;
        let mut body = self.body;
        let mut with_key = self.send_key;
        let request_id = ctx.request_id().to_string();

        for hop in 0..=MAX_REDIRECTS {
            let mut rb = ep.client.request(method.clone(), url.clone());
            // The endpoint's own headers (which may carry tenant ids or tokens of their own)
            // go to its origin only, like its key.
            if origin_of(&url) == ep.origin {
                for (k, v) in &ep.config.headers {
                    if !AUTH_HEADERS.iter().any(|h| k.eq_ignore_ascii_case(h)) {
                        rb = rb.header(k.as_str(), v.as_str());
                    }
                }
            }
            for (k, v) in &self.headers {
                rb = rb.header(k, v);
            }
            rb = rb.header("x-request-id", request_id.as_str());
            if let Some((b, ct)) = &body {
                rb = rb
                    .header(http::header::CONTENT_TYPE, ct.clone())
                    .body(b.clone());
            }
            if with_key && let Some(key) = &ep.config.api_key {
                // Keys are bound to their endpoint's origin, checked at send time.
                if origin_of(&url) != ep.origin {
                    return Err(ep.err(
                        Error::new(
                            ErrorKind::Config,
                            "refusing to send the endpoint's key to another origin",
                        ),
                        ctx,
                    ));
                }
                rb = match ep.auth {
                    Auth::None => rb,
                    // reqwest marks the Authorization value sensitive
                    Auth::Bearer => rb.bearer_auth(key.expose()),
                    Auth::Header(name) => {
                        let mut value = HeaderValue::from_str(key.expose()).map_err(|_| {
                            ep.err(
                                Error::new(
                                    ErrorKind::Config,
                                    "the endpoint's key is not a valid header value",
                                ),
                                ctx,
                            )
                        })?;
                        value.set_sensitive(true);
                        rb.header(name, value)
                    }
                };
            }
            let sent = timeout_at(first_byte_at, rb.send()).await;
            let resp = match sent {
                Err(_) => {
                    return Err(ep.err(
                        Error::new(
                            ErrorKind::Timeout,
                            "no response before the first-byte timeout",
                        )
                        .with_reached_server(true),
                        ctx,
                    ));
                }
                Ok(Err(e)) => return Err(ep.err(send_error(e, &ep.config.id, &url), ctx)),
                Ok(Ok(r)) => r,
            };
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok());
            if let (true, Some(next)) = ((300..400).contains(&status), location)
                && hop < MAX_REDIRECTS
                && matches!(status, 301 | 302 | 303 | 307 | 308)
            {
                // reqwest stopped here because the target is another origin: follow by hand,
                // never with credentials.
                if origin_of(&next) != ep.origin {
                    with_key = false;
                }
                if matches!(status, 301..=303) && method != Method::HEAD {
                    method = Method::GET;
                    body = None;
                }
                url = next;
                continue;
            }
            ctx.mark_first_byte();
            return HttpResponse::new(resp, ep, ctx, deadline);
        }
        Err(ep.err(Error::new(ErrorKind::Server, "too many redirects"), ctx))
    }
}

/// A response whose headers have arrived; the body is read with the idle timeout and the size
/// limit.
pub struct HttpResponse {
    status: u16,
    headers: HeaderMap,
    body: BodyStream,
    idle: Duration,
    deadline: Option<Instant>,
    max_body: usize,
    error_ctx: (RequestContext, &'static str, EndpointId),
    scrubber: Scrubber,
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl HttpResponse {
    fn new(
        resp: reqwest::Response,
        ep: &HttpEndpoint,
        ctx: &RequestContext,
        deadline: Option<Instant>,
    ) -> Result<Self> {
        let max_body = ep.config.limits.max_body_bytes;
        let err_ctx = (ctx.clone(), ep.provider, ep.config.id.clone());
        if let Some(len) = resp.content_length()
            && len > max_body as u64
            && resp.status().is_success()
        {
            return Err(ep.err(
                Error::new(
                    ErrorKind::Decode,
                    format!("response body of {len} bytes exceeds the limit of {max_body} bytes"),
                )
                .with_status(resp.status().as_u16()),
                ctx,
            ));
        }
        Ok(HttpResponse {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            idle: ep.config.timeouts.idle,
            deadline,
            max_body,
            error_ctx: err_ctx,
            body: Box::pin(resp.bytes_stream()),
            scrubber: ep.scrubber.clone(),
        })
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }
    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    /// The rate-limit headers, parsed.
    pub fn rate_limits(&self) -> RateLimitInfo {
        rate_limits(&self.headers)
    }

    fn err(&self, e: Error) -> Error {
        let (ctx, provider, ep) = &self.error_ctx;
        e.with_status(self.status)
            .in_context(ctx.request_id(), provider, ep)
    }

    /// The whole body (decompressed), at most the endpoint's body limit. A textual body (JSON,
    /// `text/*`, or no content type) has the endpoint's key scrubbed from it.
    pub async fn bytes(self) -> Result<Bytes> {
        let max = self.max_body;
        let textual = self
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|ct| {
                let ct = ct.to_ascii_lowercase();
                ct.contains("json") || ct.starts_with("text/") || ct.contains("ndjson")
            });
        let scrubber = self.scrubber.clone();
        let body = self.bytes_limited(max, false).await?;
        Ok(if textual {
            scrubber.scrub_bytes(body)
        } else {
            body
        })
    }

    async fn bytes_limited(mut self, max: usize, truncate: bool) -> Result<Bytes> {
        let mut buf = BytesMut::new();
        loop {
            match next_chunk(&mut self.body, self.idle, self.deadline).await {
                Ok(Some(chunk)) => {
                    if buf.len() + chunk.len() > max {
                        if truncate {
                            let room = max - buf.len();
                            buf.extend_from_slice(chunk.get(..room).unwrap_or(&[]));
                            return Ok(buf.freeze());
                        }
                        return Err(self.err(Error::new(
                            ErrorKind::Decode,
                            format!("response body exceeds the limit of {max} bytes"),
                        )));
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(buf.freeze()),
                Err(e) => return Err(self.err(e)),
            }
        }
    }

    /// The body parsed as JSON.
    pub async fn json<T: serde::de::DeserializeOwned>(self) -> Result<T> {
        let status = self.status;
        let ctx = self.error_ctx.clone();
        let scrubber = self.scrubber.clone();
        let body = self.bytes().await?;
        serde_json::from_slice(&body).map_err(|e| {
            let body = scrubber.scrub(&body);
            let snippet: String =
                String::from_utf8_lossy(body.get(..120).unwrap_or(&body)).into_owned();
            Error::new(
                ErrorKind::Decode,
                format!("response is not the expected JSON ({e}); body starts: {snippet:?}"),
            )
            .with_status(status)
            .in_context(ctx.0.request_id(), ctx.1, &ctx.2)
        })
    }

    /// The body as Server-Sent Events.
    pub fn sse(self) -> DecodedStream<SseEvent> {
        let dec = SseDecoder::with_max_event_bytes(self.max_body);
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
        let state = DecodeState {
            resp: self,
            decoder,
            pending: VecDeque::new(),
            finished: false,
            total: 0,
        };
        Box::pin(futures_util::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(item) = st.pending.pop_front() {
                    return Some((Ok(item), st));
                }
                if st.finished {
                    return None;
                }
                let chunk = next_chunk(&mut st.resp.body, st.resp.idle, st.resp.deadline).await;
                match chunk {
                    Ok(Some(bytes)) => {
                        st.total += bytes.len();
                        if st.total > st.resp.max_body {
                            st.finished = true;
                            let e = st.resp.err(Error::new(
                                ErrorKind::Decode,
                                "streamed body exceeds the size limit",
                            ));
                            return Some((Err(e), st));
                        }
                        match st.decoder.feed(&bytes) {
                            Ok(items) => st
                                .pending
                                .extend(items.into_iter().map(|i| D::scrub(i, &st.resp.scrubber))),
                            Err(e) => {
                                st.finished = true;
                                let e = st.resp.err(decode_error(e));
                                return Some((Err(e), st));
                            }
                        }
                    }
                    Ok(None) => {
                        st.finished = true;
                        match st.decoder.finish() {
                            Ok(items) => st
                                .pending
                                .extend(items.into_iter().map(|i| D::scrub(i, &st.resp.scrubber))),
                            Err(e) => {
                                let e = st.resp.err(decode_error(e));
                                return Some((Err(e), st));
                            }
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

struct DecodeState<D: Decoder> {
    resp: HttpResponse,
    decoder: D,
    pending: VecDeque<D::Item>,
    finished: bool,
    total: usize,
}

fn decode_error(e: DecodeError) -> Error {
    Error::new(ErrorKind::Decode, format!("stream decoding failed: {e}")).with_source(e)
}

async fn next_chunk(
    body: &mut BodyStream,
    idle: Duration,
    deadline: Option<Instant>,
) -> Result<Option<Bytes>> {
    let idle_at = Instant::now() + idle;
    let at = deadline.map_or(idle_at, |d| d.min(idle_at));
    match timeout_at(at, body.next()).await {
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            if deadline.is_some_and(|d| d <= idle_at) {
                "the attempt's time ran out while reading the body"
            } else {
                "no data within the idle timeout"
            },
        )
        .with_reached_server(true)),
        Ok(None) => Ok(None),
        Ok(Some(Ok(b))) => Ok(Some(b)),
        Ok(Some(Err(e))) => {
            let kind = if e.is_decode() {
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

/// The incremental decoders a response body can be read with.
trait Decoder: Send + 'static {
    type Item: Send + 'static;
    fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Self::Item>, DecodeError>;
    fn finish(&mut self) -> Result<Vec<Self::Item>, DecodeError>;
    /// The item with the endpoint's key scrubbed from its text (items are whole events, so a
    /// key is never split across two).
    fn scrub(item: Self::Item, scrubber: &Scrubber) -> Self::Item;
}

impl Decoder for SseDecoder {
    type Item = SseEvent;
    fn scrub(mut item: SseEvent, scrubber: &Scrubber) -> SseEvent {
        scrubber.scrub_string(&mut item.data);
        if let Some(e) = &mut item.event {
            scrubber.scrub_string(e);
        }
        if let Some(id) = &mut item.id {
            scrubber.scrub_string(id);
        }
        item
    }
    fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, DecodeError> {
        SseDecoder::feed(self, chunk)
    }
    fn finish(&mut self) -> Result<Vec<SseEvent>, DecodeError> {
        SseDecoder::finish(self).map(|o| o.into_iter().collect())
    }
}

impl Decoder for NdjsonDecoder {
    type Item = String;
    fn scrub(mut item: String, scrubber: &Scrubber) -> String {
        scrubber.scrub_string(&mut item);
        item
    }
    fn feed(&mut self, chunk: &[u8]) -> Result<Vec<String>, DecodeError> {
        NdjsonDecoder::feed(self, chunk)
    }
    fn finish(&mut self) -> Result<Vec<String>, DecodeError> {
        NdjsonDecoder::finish(self).map(|o| o.into_iter().collect())
    }
}

impl Decoder for JsonArrayDecoder {
    type Item = String;
    fn scrub(mut item: String, scrubber: &Scrubber) -> String {
        scrubber.scrub_string(&mut item);
        item
    }
    fn feed(&mut self, chunk: &[u8]) -> Result<Vec<String>, DecodeError> {
        JsonArrayDecoder::feed(self, chunk)
    }
    fn finish(&mut self) -> Result<Vec<String>, DecodeError> {
        JsonArrayDecoder::finish(self).map(|()| Vec::new())
    }
}
