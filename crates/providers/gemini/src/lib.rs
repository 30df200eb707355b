//! infermux provider for the Gemini API (Google AI `generativelanguage.googleapis.com`).
//!
//! Chat through `generateContent`, streamed chat through `streamGenerateContent` decoded both
//! as SSE (`alt=sse`, the default) and as a streamed JSON array (without `alt`, see
//! [`Gemini::with_sse`]) into the same events; embeddings through `batchEmbedContents`, in
//! requests of at most [`wire::MAX_BATCH_EMBED`] inputs (and
//! `embedContent` with [`Gemini::embed_one`]); `countTokens` ([`Gemini::count_tokens`]); model
//! listing; inline images (`inlineData`, `fileData` for URLs); function calling and JSON
//! answers with schemas sent as JSON Schema, unchanged (`parametersJsonSchema`,
//! `responseJsonSchema`), `functionResponse` tool results; system instructions; thought
//! signatures (a `functionCall` part's as [`infermux_core::ToolCall::signature`], a thought or
//! text part's on a signed thinking part) kept, streamed or not, and sent back where they came
//! from on the next turn. An image answer (`inlineData`) is an image part; a part this crate
//! does not model (`executableCode`, `codeExecutionResult`, a newer kind) is kept whole as
//! [`infermux_core::ContentPart::Other`] and sent back to Gemini as it came.
//!
//! Errors: a blocked prompt (`promptFeedback.blockReason`) or a safety finish reason is
//! [`infermux_core::ErrorKind::ContentFilter`]; a 429 `RESOURCE_EXHAUSTED` is `RateLimited` with
//! the body's `RetryInfo.retryDelay` as its retry-after (model-scoped when its quotas are per
//! model; until midnight Pacific time when a day's quota is spent, see
//! [`wire::error_from_response`]); `API_KEY_INVALID` is `Auth`.
//!
//! The key goes in `x-goog-api-key`, never in the URL.
//!
//! Called directly, as below, a provider sends each request once, with no retry. Through the
//! [`infermux`](https://docs.rs/infermux) facade (feature `gemini`), wrap it in `infermux::Client`
//! to run its `Provider` operations through the resilience stack: admission queue, retries
//! with backoff, circuit breaker and call deadline.
//!
//! ```no_run
//! # async fn demo() -> infermux_core::Result<()> {
//! use infermux_core::{ChatRequest, Message, Provider, Request, RequestContext, Response};
//! use infermux_gemini::Gemini;
//!
//! let gemini = Gemini::from_env()?; // GEMINI_API_KEY or GOOGLE_API_KEY
//! let req = ChatRequest::new("gemini-2.5-flash", vec![Message::user("Hello!")]);
//! if let Response::Chat(chat) = gemini.call(&Request::Chat(req), &RequestContext::new()).await? {
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
use futures_util::StreamExt;
use infermux_core::{
    Capabilities, ChatRequest, EmbeddingRequest, EmbeddingResponse, EndpointConfig, EndpointId,
    Error, ErrorKind, EventStream, Operation, Provider, Request, RequestContext, Response, Result,
    StreamEvent, first_event,
};
use infermux_http::EventDecoder;
use infermux_http::{Auth, DecodedStream, HttpEndpoint, HttpRequest, HttpResponse};

pub use wire::GenerateState;

/// The provider name errors and counters carry.
pub const NAME: &str = "gemini";
/// The default base URL.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";
/// The environment variables holding the key, in order of preference.
pub const API_KEY_ENVS: [&str; 2] = ["GEMINI_API_KEY", "GOOGLE_API_KEY"];
/// The environment variable overriding the base URL.
pub const BASE_URL_ENV: &str = "GEMINI_BASE_URL";

/// The most pages of `models` one listing reads.
const MAX_PAGES: usize = 50;

/// A client of one Gemini API endpoint (base URL with the version,
/// `https://generativelanguage.googleapis.com/v1beta`).
#[derive(Debug, Clone)]
pub struct Gemini {
    http: HttpEndpoint,
    sse: bool,
}

impl Gemini {
    /// A client for `config`; its key, if any, is sent as `x-goog-api-key`.
    pub fn new(config: EndpointConfig) -> Result<Self> {
        Ok(Gemini {
            http: HttpEndpoint::new(NAME, config, Auth::Header("x-goog-api-key"))?,
            sse: true,
        })
    }

    /// A client from `GEMINI_API_KEY` (or `GOOGLE_API_KEY`) and `GEMINI_BASE_URL` (default
    /// [`DEFAULT_BASE_URL`]). Fails with `Config` when no key is set.
    pub fn from_env() -> Result<Self> {
        Self::new(
            EndpointConfig::from_env(NAME, BASE_URL_ENV, Some(DEFAULT_BASE_URL))?
                .with_api_key_from_any_env(&API_KEY_ENVS)?,
        )
    }

    /// Whether streams are asked for as SSE (`alt=sse`, the default) or as a streamed JSON
    /// array (no `alt`). Both decode to the same events.
    pub fn with_sse(mut self, yes: bool) -> Self {
        self.sse = yes;
        self
    }

    /// The HTTP endpoint.
    pub fn http(&self) -> &HttpEndpoint {
        &self.http
    }

    fn ctx_err(&self, ctx: &RequestContext) -> impl Fn(Error) -> Error + '_ {
        self.http.error_context(ctx)
    }

    /// Sends `r`; a non-2xx answer becomes the typed error, with the body's `RetryInfo` delay
    /// as retry-after and `API_KEY_INVALID` as `Auth`. The transport's own future (an
    /// `async fn` here would nest it in another).
    fn send<'a, 's>(
        r: HttpRequest<'a>,
        ctx: &'s RequestContext,
    ) -> impl Future<Output = Result<HttpResponse>> + use<'a, 's> {
        r.send_mapped(ctx, wire::error_from_response)
    }

    /// Posts `body` to `model`'s `method` and reads the answer with `parse`, from the body as
    /// it arrived (not a copy of it).
    async fn post<T>(
        &self,
        model: &str,
        method: &str,
        body: &(impl serde::Serialize + Sync),
        ctx: &RequestContext,
        parse: impl FnOnce(&[u8]) -> Result<T>,
    ) -> Result<T> {
        let route = wire::model_route(model).map_err(self.ctx_err(ctx))?;
        let path = format!("/{route}:{method}");
        let resp = Self::send(self.http.post(&path).json(body), ctx).await?;
        let bytes = resp.bytes().await?;
        parse(&bytes).map_err(self.ctx_err(ctx))
    }

    /// The tokens `req`'s prompt would use (`countTokens`).
    pub async fn count_tokens(&self, req: &ChatRequest, ctx: &RequestContext) -> Result<u64> {
        self.post(
            &req.model,
            "countTokens",
            &wire::count_tokens_body(req),
            ctx,
            wire::parse_count_tokens,
        )
        .await
    }

    /// The embedding of one text through `embedContent`.
    pub async fn embed_one(
        &self,
        req: &EmbeddingRequest,
        text: &str,
        ctx: &RequestContext,
    ) -> Result<Vec<f32>> {
        self.post(
            &req.model,
            "embedContent",
            &wire::EmbedBody::new(req, text),
            ctx,
            wire::parse_embedding,
        )
        .await
    }
}

impl EventDecoder<String> for GenerateState {
    fn on_item(&mut self, chunk: String) -> Result<Vec<StreamEvent>> {
        if chunk.trim().is_empty() {
            return Ok(Vec::new());
        }
        self.on_chunk(&chunk)
    }
    fn on_end(&mut self) -> Result<Vec<StreamEvent>> {
        GenerateState::on_end(self)
    }
    fn partial_text(&self) -> &str {
        self.text()
    }
}

/// Turns a `streamGenerateContent` response into an [`EventStream`] (not yet awaited to its
/// first event): `sse` says whether the body is SSE (`alt=sse`) or a streamed JSON array.
pub fn generate_event_stream(
    resp: HttpResponse,
    sse: bool,
    with_context: impl Fn(Error) -> Error + Send + 'static,
) -> EventStream {
    let chunks: DecodedStream<String> = if sse {
        Box::pin(resp.sse().map(|r| r.map(|ev| ev.data)))
    } else {
        resp.json_array()
    };
    infermux_http::event_stream(chunks, GenerateState::new(), with_context)
}

#[async_trait]
impl Provider for Gemini {
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
            .with(Operation::Embeddings)
            .with(Operation::Models)
    }

    async fn call(&self, request: &Request, ctx: &RequestContext) -> Result<Response> {
        let ctx_err = self.ctx_err(ctx);
        match request {
            Request::Chat(req) => self
                .post(
                    &req.model,
                    "generateContent",
                    &wire::GenerateBody::new(req),
                    ctx,
                    wire::parse_generate,
                )
                .await
                .map(Response::Chat),
            Request::Embeddings(req) => {
                if req.inputs.is_empty() {
                    return Err(ctx_err(Error::new(
                        ErrorKind::InvalidRequest,
                        "no input to embed",
                    )));
                }
                if req.inputs.len() <= wire::MAX_BATCH_EMBED {
                    return self
                        .post(
                            &req.model,
                            "batchEmbedContents",
                            &wire::BatchEmbedBody::new(req),
                            ctx,
                            |body| wire::parse_batch_embeddings(body, &req.model, req.inputs.len()),
                        )
                        .await
                        .map(Response::Embeddings);
                }
                // the API takes at most 100 a request: the parts go one after another, their
                // vectors joined in order
                let mut all =
                    EmbeddingResponse::new(&req.model, Vec::with_capacity(req.inputs.len()));
                for (n, part) in req.inputs.chunks(wire::MAX_BATCH_EMBED).enumerate() {
                    let r = self
                        .post(
                            &req.model,
                            "batchEmbedContents",
                            &wire::BatchEmbedBody::part(req, part),
                            ctx,
                            |body| wire::parse_batch_embeddings(body, &req.model, part.len()),
                        )
                        .await?;
                    all.embeddings.extend(r.embeddings);
                    // the parts' usage summed (none when a part has none)
                    all.usage = match (n, all.usage.take(), r.usage) {
                        (0, _, u) => u,
                        (_, Some(mut sum), Some(u)) => {
                            sum.add(&u);
                            Some(sum)
                        }
                        _ => None,
                    };
                }
                Ok(Response::Embeddings(all.same_dimension().map_err(ctx_err)?))
            }
            Request::Models => {
                // every page, following `nextPageToken` (at most MAX_PAGES)
                let mut all = Vec::new();
                let mut token: Option<String> = None;
                for _ in 0..MAX_PAGES {
                    let mut r = self.http.get("/models");
                    if let Some(t) = &token {
                        r = r.query("pageToken", t);
                    }
                    let body = Self::send(r, ctx).await?.bytes().await?;
                    let page = wire::parse_models(&body).map_err(&ctx_err)?;
                    all.extend(page.models);
                    token = wire::next_models_page(&body);
                    if token.is_none() {
                        break;
                    }
                }
                Ok(Response::Models(infermux_core::ModelList::new(all)))
            }
            other => Err(ctx_err(Error::new(
                ErrorKind::Unsupported,
                format!("gemini does not offer {:?}", other.operation()),
            ))),
        }
    }

    async fn stream(&self, request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        let Request::Chat(req) = request else {
            return Err(self.ctx_err(ctx)(Error::new(
                ErrorKind::Unsupported,
                "gemini streams chat only",
            )));
        };
        let route = wire::model_route(&req.model).map_err(self.ctx_err(ctx))?;
        let path = format!("/{route}:streamGenerateContent");
        let mut r = self.http.post(&path).json(&wire::GenerateBody::new(req));
        if self.sse {
            r = r.query("alt", "sse");
        }
        let resp = Self::send(r, ctx).await?;
        let (id, ep) = (ctx.request_id(), self.http.id().clone());
        first_event(generate_event_stream(resp, self.sse, move |e| {
            e.in_context(id, NAME, &ep)
        }))
        .await
    }
}
