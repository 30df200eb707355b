//! infermux provider for Anthropic's Messages API.
//!
//! Chat plain and streamed (every SSE event: `message_start`, `content_block_start|delta|stop`
//! with text, `input_json_delta`, `thinking_delta`, `signature_delta` and `citations_delta`,
//! `message_delta`, `message_stop`, `ping`, and `error` events inside a 200 stream as typed
//! errors carrying the partial text; unknown blocks kept raw, unknown deltas and events
//! skipped), tool use, server tools (web search, code execution: their calls and results as
//! their own parts), images (base64 and URL sources), system prompts, stop sequences, extended
//! thinking ([`wire::with_thinking`] or `extra.thinking`) with signed and redacted thinking
//! blocks sent back unchanged (streamed too), prompt-caching usage, token counting
//! ([`Anthropic::count_tokens`]) and model listing.
//!
//! Choices worth knowing:
//! - `max_tokens` is required by Anthropic: a request without one is sent with
//!   [`wire::DEFAULT_MAX_TOKENS`] (1024; change it with [`Anthropic::with_default_max_tokens`]).
//! - `Usage::input_tokens` is the whole prompt: uncached input plus cache reads plus cache
//!   writes; `cached_input_tokens` is `cache_read_input_tokens` and
//!   `cache_creation_input_tokens` is kept as it is.
//! - System and developer messages are joined into the top-level `system` text.
//! - The key goes in `x-api-key` only; `anthropic-version` defaults to
//!   [`DEFAULT_VERSION`]; `anthropic-beta` is sent when betas are set
//!   ([`Anthropic::with_beta`]).
//! - A 529 `overloaded_error` is [`infermux_core::ErrorKind::Overloaded`], not a rate limit;
//!   `retry-after` and the `anthropic-ratelimit-*` headers are attached to errors by
//!   `infermux-http`.
//!
//! Called directly, as below, a provider sends each request once, with no retry. Through the
//! [`infermux`](https://docs.rs/infermux) facade (feature `anthropic`), wrap it in `infermux::Client`
//! to run its `Provider` operations through the resilience stack: admission queue, retries
//! with backoff, circuit breaker and call deadline.
//!
//! ```no_run
//! # async fn demo() -> infermux_core::Result<()> {
//! use infermux_anthropic::Anthropic;
//! use infermux_core::{ChatRequest, Message, Provider, Request, RequestContext, Response};
//!
//! let claude = Anthropic::from_env()?; // ANTHROPIC_API_KEY, and ANTHROPIC_BASE_URL when set
//! let req = ChatRequest::new("claude-haiku-4-5", vec![Message::user("Hello!")]);
//! if let Response::Chat(chat) = claude.call(&Request::Chat(req), &RequestContext::new()).await? {
//!     println!("{}", chat.text());
//! }
//! # Ok(()) }
//! ```
//!
//! # Crate features
//! This crate has no optional features.

mod json;
pub mod wire;

use async_trait::async_trait;
use infermux_core::{
    Capabilities, ChatRequest, EndpointConfig, EndpointId, Error, ErrorKind, EventStream,
    Operation, Provider, Request, RequestContext, Response, Result, StreamEvent, first_event,
};
use infermux_http::EventDecoder;
use infermux_http::decode::SseEvent;
use infermux_http::{
    Auth, HeaderName, HeaderValue, HttpEndpoint, HttpRequest, HttpResponse, Method, Route,
};

pub use wire::ChatStreamState;

/// The provider name errors and counters carry.
pub const NAME: &str = "anthropic";
/// The default base URL (with the version prefix).
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com/v1";
/// The environment variable holding the key.
pub const API_KEY_ENV: &str = "ANTHROPIC_API_KEY";
/// The environment variable overriding the base URL (the SDKs' convention, without `/v1`;
/// `/v1` is appended unless it is already there).
pub const BASE_URL_ENV: &str = "ANTHROPIC_BASE_URL";
/// `anthropic-version` and (when there are betas) `anthropic-beta`, or `None` when either is
/// not a valid header value.
fn api_headers(version: &str, betas: &[String]) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let mut headers = vec![(
        HeaderName::from_static("anthropic-version"),
        HeaderValue::try_from(version).ok()?,
    )];
    if !betas.is_empty() {
        headers.push((
            HeaderName::from_static("anthropic-beta"),
            HeaderValue::try_from(betas.join(",")).ok()?,
        ));
    }
    Some(headers)
}

/// The `anthropic-version` sent unless [`Anthropic::with_version`] says otherwise.
pub const DEFAULT_VERSION: &str = "2023-06-01";

/// The most pages of `/v1/models` one listing reads.
const MAX_PAGES: usize = 50;

/// A client of one Anthropic Messages API endpoint. The base URL includes `/v1`.
#[derive(Debug, Clone)]
pub struct Anthropic {
    http: HttpEndpoint,
    /// `/messages`, joined to the base URL once.
    messages: Route,
    version: String,
    betas: Vec<String>,
    /// `anthropic-version` and `anthropic-beta` as sent, built when they are configured, not
    /// on every request (`None`: one is not a valid header value, and every request fails with
    /// `Config` as it would have)
    api_headers: Option<Vec<(HeaderName, HeaderValue)>>,
    beta_query: bool,
    default_max_tokens: u32,
}

/// The base URL this crate wants (ending in `/v1`) from a value of `ANTHROPIC_BASE_URL`,
/// which follows the SDKs' convention of a URL without `/v1`: `/v1` is appended unless it is
/// there already (a trailing `/` is dropped first).
///
/// ```
/// use infermux_anthropic::base_url_from_env_value;
/// assert_eq!(base_url_from_env_value("https://api.anthropic.com"), "https://api.anthropic.com/v1");
/// assert_eq!(base_url_from_env_value("http://127.0.0.1:8080/"), "http://127.0.0.1:8080/v1");
/// assert_eq!(base_url_from_env_value("https://proxy/anthropic/v1"), "https://proxy/anthropic/v1");
/// ```
pub fn base_url_from_env_value(value: &str) -> String {
    let url = value.trim().trim_end_matches('/');
    if url.ends_with("/v1") {
        url.to_owned()
    } else {
        format!("{url}/v1")
    }
}

impl Anthropic {
    /// A client for `config` (base URL like `https://api.anthropic.com/v1`); its key, if any,
    /// is sent as `x-api-key`.
    pub fn new(config: EndpointConfig) -> Result<Self> {
        let http = HttpEndpoint::new(NAME, config, Auth::Header("x-api-key"))?;
        Ok(Anthropic {
            messages: http.route("/messages"),
            http,
            version: DEFAULT_VERSION.to_owned(),
            betas: Vec::new(),
            api_headers: api_headers(DEFAULT_VERSION, &[]),
            beta_query: false,
            default_max_tokens: wire::DEFAULT_MAX_TOKENS,
        })
    }

    /// A client from `ANTHROPIC_API_KEY` and `ANTHROPIC_BASE_URL` (default
    /// `https://api.anthropic.com`). Fails with `Config` when the key is not set.
    pub fn from_env() -> Result<Self> {
        let mut cfg = EndpointConfig::from_env(NAME, BASE_URL_ENV, Some(DEFAULT_BASE_URL))?
            .with_api_key_from_env(API_KEY_ENV)?;
        cfg.base_url = base_url_from_env_value(&cfg.base_url);
        Self::new(cfg)
    }

    /// Sets the `anthropic-version` header.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self.api_headers = api_headers(&self.version, &self.betas);
        self
    }

    /// Adds a beta (sent comma-separated in `anthropic-beta`), e.g.
    /// `prompt-caching-2024-07-31` or `interleaved-thinking-2025-05-14`.
    pub fn with_beta(mut self, beta: impl Into<String>) -> Self {
        self.betas.push(beta.into());
        self.api_headers = api_headers(&self.version, &self.betas);
        self
    }

    /// Adds `?beta=true` to message routes, as Anthropic's SDKs do for their beta client.
    pub fn with_beta_query(mut self, yes: bool) -> Self {
        self.beta_query = yes;
        self
    }

    /// The `max_tokens` sent when a request has none (default [`wire::DEFAULT_MAX_TOKENS`]).
    pub fn with_default_max_tokens(mut self, n: u32) -> Self {
        self.default_max_tokens = n;
        self
    }

    /// The HTTP endpoint.
    pub fn http(&self) -> &HttpEndpoint {
        &self.http
    }

    fn ctx_err(&self, ctx: &RequestContext) -> impl Fn(Error) -> Error + '_ {
        self.http.error_context(ctx)
    }

    fn headers<'a>(&self, mut r: HttpRequest<'a>) -> HttpRequest<'a> {
        if let Some(headers) = &self.api_headers {
            for (name, value) in headers {
                r = r.header_value(name.clone(), value.clone());
            }
            return r;
        }
        // an invalid value: the request fails with the transport's own error for it
        r = r.header("anthropic-version", &self.version);
        if !self.betas.is_empty() {
            r = r.header("anthropic-beta", &self.betas.join(","));
        }
        r
    }

    /// `r` with `body` and the API's version and beta headers, ready to send (a plain
    /// function: an `async fn` around the send would nest its future in another).
    fn post<'a>(
        &'a self,
        r: HttpRequest<'a>,
        body: &(impl serde::Serialize + Sync),
    ) -> HttpRequest<'a> {
        let mut r = self.headers(r).json(body);
        if self.beta_query {
            r = r.query("beta", "true");
        }
        r
    }

    /// The prompt tokens `req` would use (`POST /v1/messages/count_tokens`).
    pub async fn count_tokens(&self, req: &ChatRequest, ctx: &RequestContext) -> Result<u64> {
        let resp = self
            .post(
                self.http.post("/messages/count_tokens"),
                &wire::count_tokens_body(req),
            )
            .send(ctx)
            .await?;
        let body = resp.bytes().await?;
        wire::parse_count_tokens(&body).map_err(self.ctx_err(ctx))
    }
}

impl EventDecoder<SseEvent> for ChatStreamState {
    fn on_item(&mut self, ev: SseEvent) -> Result<Vec<StreamEvent>> {
        self.on_event(ev.event.as_deref(), &ev.data)
    }
    fn on_end(&mut self) -> Result<Vec<StreamEvent>> {
        ChatStreamState::on_end(self).map(|()| Vec::new())
    }
    fn is_done(&self) -> bool {
        ChatStreamState::is_done(self)
    }
    fn partial_text(&self) -> &str {
        self.text()
    }
}

/// Turns a Messages API SSE response into an [`EventStream`] (not yet awaited to its first
/// event). `with_context` fills request id, provider and endpoint into stream errors.
pub fn chat_event_stream(
    resp: HttpResponse,
    with_context: impl Fn(Error) -> Error + Send + 'static,
) -> EventStream {
    infermux_http::event_stream(resp.sse(), ChatStreamState::new(), with_context)
}

#[async_trait]
impl Provider for Anthropic {
    fn name(&self) -> &'static str {
        NAME
    }

    fn endpoint(&self) -> &EndpointId {
        self.http.id()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .with(Operation::Chat)
            .with(Operation::ChatStream)
            .with(Operation::Tools)
            .with(Operation::Vision)
            .with(Operation::Models)
    }

    async fn call(&self, request: &Request, ctx: &RequestContext) -> Result<Response> {
        let ctx_err = self.ctx_err(ctx);
        match request {
            Request::Chat(req) => {
                let body = wire::ChatBody::new(req, false)
                    .with_default_max_tokens(self.default_max_tokens);
                let resp = self
                    .post(self.http.request_to(Method::POST, &self.messages), &body)
                    .send(ctx)
                    .await?;
                let bytes = resp.bytes().await?;
                wire::parse_chat(&bytes)
                    .map(Response::Chat)
                    .map_err(ctx_err)
            }
            Request::Models => {
                // every page, following `last_id` while `has_more` (at most MAX_PAGES)
                let mut all = Vec::new();
                let mut after: Option<String> = None;
                for _ in 0..MAX_PAGES {
                    let mut r = self.headers(self.http.get("/models"));
                    if let Some(a) = &after {
                        r = r.query("after_id", a);
                    }
                    let bytes = r.send(ctx).await?.bytes().await?;
                    let page = wire::parse_models(&bytes).map_err(&ctx_err)?;
                    all.extend(page.models);
                    after = wire::next_models_page(&bytes);
                    if after.is_none() {
                        break;
                    }
                }
                Ok(Response::Models(infermux_core::ModelList::new(all)))
            }
            other => Err(ctx_err(Error::new(
                ErrorKind::Unsupported,
                format!("anthropic does not offer {:?}", other.operation()),
            ))),
        }
    }

    async fn stream(&self, request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        let Request::Chat(req) = request else {
            return Err(self.ctx_err(ctx)(Error::new(
                ErrorKind::Unsupported,
                "anthropic streams chat only",
            )));
        };
        let body = wire::ChatBody::new(req, true).with_default_max_tokens(self.default_max_tokens);
        let resp = self
            .post(self.http.request_to(Method::POST, &self.messages), &body)
            .send(ctx)
            .await?;
        let (id, ep) = (ctx.request_id(), self.http.id().clone());
        first_event(chat_event_stream(resp, move |e| {
            e.in_context(id, NAME, &ep)
        }))
        .await
    }
}
