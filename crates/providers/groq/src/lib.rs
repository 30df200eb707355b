//! infermux provider for [Groq](https://console.groq.com/docs/openai)'s OpenAI-compatible API.
//!
//! A thin crate over [`infermux_openai_compat`]: the same wire format, plus what Groq does
//! differently — the base URL `https://api.groq.com/openai/v1`, the key in `GROQ_API_KEY`,
//! usage reported in `x_groq.usage` on the last chunk of a stream (decoded by the shared wire
//! code), and `tool_use_failed` errors (a 400, or an error event inside a 200 stream) which are
//! [`ErrorKind::InvalidRequest`] carrying the provider code `tool_use_failed`. Groq offers chat
//! (plain, streamed, tools, images) and model listing; embeddings and legacy completions are
//! [`ErrorKind::Unsupported`].
//!
//! Called directly, as below, a provider sends each request once, with no retry. Through the
//! [`infermux`](https://docs.rs/infermux) facade (feature `groq`), wrap it in `infermux::Client`
//! to run its `Provider` operations through the resilience stack: admission queue, retries
//! with backoff, circuit breaker and call deadline.
//!
//! ```no_run
//! # async fn demo() -> infermux_core::Result<()> {
//! use infermux_core::{ChatRequest, Message, Provider, Request, RequestContext, Response};
//! use infermux_groq::Groq;
//!
//! let groq = Groq::from_env()?; // GROQ_API_KEY, and GROQ_BASE_URL when set
//! let req = Request::Chat(ChatRequest::new("llama-3.3-70b-versatile", vec![Message::user("Hi!")]));
//! if let Response::Chat(answer) = groq.call(&req, &RequestContext::new()).await? {
//!     println!("{}", answer.text());
//! }
//! # Ok(()) }
//! ```
//!
//! # Crate features
//! This crate has no optional features.

use async_trait::async_trait;
use infermux_core::{
    Capabilities, EndpointConfig, EndpointId, Error, ErrorKind, EventStream, Operation, Provider,
    Request, RequestContext, Response, Result,
};
use infermux_http::Auth;
use infermux_openai_compat::OpenAiCompat;

/// The provider name errors and counters carry.
pub const NAME: &str = "groq";
/// Groq's OpenAI-compatible base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.groq.com/openai/v1";
/// The environment variable holding the key.
pub const API_KEY_ENV: &str = "GROQ_API_KEY";
/// The environment variable that overrides the base URL.
pub const BASE_URL_ENV: &str = "GROQ_BASE_URL";

/// The provider code of Groq's error when the model produced a malformed tool call.
pub const TOOL_USE_FAILED: &str = "tool_use_failed";

/// A client of one Groq endpoint.
#[derive(Debug, Clone)]
pub struct Groq {
    inner: OpenAiCompat,
}

fn capabilities() -> Capabilities {
    Capabilities::new()
        .with(Operation::Chat)
        .with(Operation::ChatStream)
        .with(Operation::Tools)
        .with(Operation::Vision)
        .with(Operation::Models)
}

impl Groq {
    /// A client for `config` (base URL including `/openai/v1`); the key goes in
    /// `Authorization: Bearer`.
    pub fn new(config: EndpointConfig) -> Result<Self> {
        Ok(Groq {
            inner: OpenAiCompat::with_auth(NAME, config, Auth::Bearer)?
                .with_capabilities(capabilities()),
        })
    }

    /// A client configured from the environment: `GROQ_API_KEY` (required) and
    /// `GROQ_BASE_URL` (default [`DEFAULT_BASE_URL`]).
    pub fn from_env() -> Result<Self> {
        Self::new(
            EndpointConfig::from_env(NAME, BASE_URL_ENV, Some(DEFAULT_BASE_URL))?
                .with_api_key_from_env(API_KEY_ENV)?,
        )
    }

    fn check(&self, request: &Request, ctx: &RequestContext) -> Result<()> {
        let op = request.operation();
        if self.inner.capabilities().supports(op) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Unsupported,
            format!("{NAME} does not offer {op:?}"),
        )
        .in_context(ctx.request_id(), NAME, self.inner.endpoint()))
    }
}

#[async_trait]
impl Provider for Groq {
    fn name(&self) -> &'static str {
        NAME
    }

    fn endpoint(&self) -> &EndpointId {
        self.inner.endpoint()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn call(&self, request: &Request, ctx: &RequestContext) -> Result<Response> {
        self.check(request, ctx)?;
        self.inner.call(request, ctx).await
    }

    async fn stream(&self, request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        self.check(request, ctx)?;
        self.inner.stream(request, ctx).await
    }
}
