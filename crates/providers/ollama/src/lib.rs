//! infermux provider for [Ollama](https://ollama.com).
//!
//! Two modes on one server:
//! - [`Mode::Native`] (the default): `/api/chat` and `/api/generate`, plain or streamed as
//!   NDJSON ending with a `done: true` line (its `done_reason` becomes the finish reason, its
//!   `prompt_eval_count` / `eval_count` the usage; a stream that ends without it is a `Decode`
//!   error carrying the partial text), tool calls, thinking, images, `/api/embed`, `/api/tags`
//!   (models); and, as inherent methods, [`Ollama::show`] (`/api/show`) and [`Ollama::pull`]
//!   (`/api/pull`, a typed [`PullProgress`] stream).
//! - [`Mode::OpenAi`]: the same server's OpenAI-compatible `/v1` routes, spoken by
//!   [`infermux_openai_compat`] (never a copy of that protocol).
//!
//! The server address comes from `OLLAMA_HOST` (default `http://127.0.0.1:11434`; `host:port`
//! without a scheme is accepted, as the Ollama CLI does). Ollama needs no key; when one is set
//! (a proxy in front, or ollama.com) it is sent as `Authorization: Bearer`.
//!
//! Called directly, as below, a provider sends each request once, with no retry. Through the
//! [`infermux`](https://docs.rs/infermux) facade (feature `ollama`), wrap it in `infermux::Client`
//! to run its `Provider` operations through the resilience stack: admission queue, retries
//! with backoff, circuit breaker and call deadline.
//!
//! ```no_run
//! # async fn demo() -> infermux_core::Result<()> {
//! use infermux_core::{ChatRequest, Message, Provider, Request, RequestContext, Response};
//! use infermux_ollama::Ollama;
//!
//! let ollama = Ollama::from_env()?;
//! let req = Request::Chat(ChatRequest::new("llama3.2", vec![Message::user("Hi!")]));
//! if let Response::Chat(answer) = ollama.call(&req, &RequestContext::new()).await? {
//!     println!("{}", answer.text());
//! }
//! # Ok(()) }
//! ```
//!
//! # Crate features
//! This crate has no optional features.

mod legacy;
pub mod wire;

use async_trait::async_trait;
use futures_util::{Stream, StreamExt};
use infermux_core::{
    Capabilities, EndpointConfig, EndpointId, Error, ErrorKind, EventStream, Operation, Provider,
    Request, RequestContext, Response, Result, StreamEvent, first_event,
};
use infermux_http::EventDecoder;
use infermux_http::{Auth, HttpEndpoint, HttpResponse, Method, Route};
use infermux_openai_compat::OpenAiCompat;

pub use wire::{LocalModel, ModelDetails, NdjsonStreamState, PullProgress};

/// The provider name errors and counters carry.
pub const NAME: &str = "ollama";
/// The environment variable holding the server's address.
pub const HOST_ENV: &str = "OLLAMA_HOST";
/// The environment variable holding an optional key (for a proxy or ollama.com).
pub const API_KEY_ENV: &str = "OLLAMA_API_KEY";
/// The default address of a local Ollama server.
pub const DEFAULT_HOST: &str = "http://127.0.0.1:11434";

/// Which of Ollama's APIs [`Provider`] calls go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// The native `/api` routes.
    #[default]
    Native,
    /// The OpenAI-compatible `/v1` routes.
    OpenAi,
}

/// A client of one Ollama server.
#[derive(Debug, Clone)]
pub struct Ollama {
    http: HttpEndpoint,
    openai: OpenAiCompat,
    mode: Mode,
    /// The native routes every call takes, joined to the base URL once.
    routes: Routes,
}

/// [`Ollama`]'s native routes, joined to its base URL once.
#[derive(Debug, Clone)]
struct Routes {
    chat: Route,
    generate: Route,
    embed: Route,
}

/// A base URL from an `OLLAMA_HOST`-style value: `host`, `host:port`, `:port` or a URL.
///
/// ```
/// assert_eq!(infermux_ollama::normalize_host("0.0.0.0:11434"), "http://0.0.0.0:11434");
/// assert_eq!(infermux_ollama::normalize_host("https://ollama.example/"), "https://ollama.example");
/// assert_eq!(infermux_ollama::normalize_host(":8080"), "http://127.0.0.1:8080");
/// assert_eq!(infermux_ollama::normalize_host("gpu-box"), "http://gpu-box:11434");
/// ```
pub fn normalize_host(value: &str) -> String {
    let v = value.trim().trim_end_matches('/');
    if v.is_empty() {
        return DEFAULT_HOST.to_owned();
    }
    if v.contains("://") {
        return v.to_owned();
    }
    let (host, rest) = v.split_at(v.find('/').unwrap_or(v.len()));
    let host = if host.starts_with(':') {
        format!("127.0.0.1{host}")
    } else if host.contains(':') && !host.ends_with(']') {
        host.to_owned()
    } else {
        format!("{host}:11434")
    };
    format!("http://{host}{rest}")
}

impl Ollama {
    /// A client for the server at `config.base_url` (its root; a trailing `/v1` or `/api` is
    /// removed), in [`Mode::Native`].
    pub fn new(mut config: EndpointConfig) -> Result<Self> {
        let root = infermux_core::server_root(&config.base_url, &["/v1", "/api"]);
        config.base_url = root;
        // one connection pool for the native (`/api`) and the OpenAI-compatible (`/v1`) routes
        let http = HttpEndpoint::new(NAME, config, Auth::Bearer)?;
        let openai =
            OpenAiCompat::with_http(http.rebased(format!("{}/v1", http.config().base_url))?);
        let routes = Routes {
            chat: http.route("/api/chat"),
            generate: http.route("/api/generate"),
            embed: http.route("/api/embed"),
        };
        Ok(Ollama {
            http,
            openai,
            mode: Mode::Native,
            routes,
        })
    }

    /// A client from `OLLAMA_HOST` (default [`DEFAULT_HOST`]) and, when set, `OLLAMA_API_KEY`.
    pub fn from_env() -> Result<Self> {
        // OLLAMA_HOST is a host[:port] as often as a URL: normalised before it is parsed
        let host = std::env::var(HOST_ENV).unwrap_or_default();
        Self::new(
            EndpointConfig::new(NAME, normalize_host(&host))?
                .with_optional_api_key_from_env(&[API_KEY_ENV]),
        )
    }

    /// The same server, with [`Provider`] calls going to `mode`'s routes.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The mode [`Provider`] calls use.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The OpenAI-compatible `/v1` client of this server.
    pub fn openai(&self) -> &OpenAiCompat {
        &self.openai
    }

    fn in_ctx(&self, ctx: &RequestContext) -> impl Fn(Error) -> Error + '_ {
        self.http.error_context(ctx)
    }

    /// `GET /api/tags`: the models present on the server.
    pub async fn local_models(&self, ctx: &RequestContext) -> Result<Vec<LocalModel>> {
        let body = self.http.get("/api/tags").send(ctx).await?.bytes().await?;
        wire::parse_tags(&body).map_err(self.in_ctx(ctx))
    }

    /// `POST /api/show`: details of `model` (template, parameters, capabilities, ...).
    pub async fn show(&self, model: &str, ctx: &RequestContext) -> Result<ModelDetails> {
        let resp = self
            .http
            .post("/api/show")
            .json(&wire::ModelBody {
                model,
                prompt: None,
                stream: None,
            })
            .send(ctx)
            .await?;
        let body = resp.bytes().await?;
        wire::parse_show(&body).map_err(self.in_ctx(ctx))
    }

    /// `POST /api/pull`: downloads `model`, as a stream of progress lines ending with
    /// `status: "success"`. An `{"error": ...}` line is an error item; a stream that ends
    /// without `success` ends with a `Decode` error.
    pub async fn pull(
        &self,
        model: &str,
        ctx: &RequestContext,
    ) -> Result<impl Stream<Item = Result<PullProgress>> + Send + use<>> {
        let resp = self
            .http
            .post("/api/pull")
            .json(&wire::ModelBody {
                model,
                prompt: None,
                stream: Some(true),
            })
            .send(ctx)
            .await?;
        let (id, ep) = (ctx.request_id(), self.http.id().clone());
        let lines = resp.ndjson();
        Ok(futures_util::stream::unfold(
            (lines, false, false),
            move |(mut lines, success, ended)| {
                let ep = ep.clone();
                async move {
                    if ended {
                        return None;
                    }
                    let item = match lines.next().await {
                        Some(Ok(line)) => wire::parse_pull_line(&line),
                        Some(Err(e)) => Err(e),
                        None if success => return None,
                        None => Err(Error::new(
                            ErrorKind::Decode,
                            "Ollama pull stream ended without `success`",
                        )),
                    };
                    let ok_success = matches!(&item, Ok(p) if p.is_success());
                    let failed = item.is_err();
                    let item = item.map_err(|e| e.in_context(id, NAME, &ep));
                    Some((item, (lines, success || ok_success, failed)))
                }
            },
        ))
    }

    async fn native_call(&self, request: &Request, ctx: &RequestContext) -> Result<Response> {
        let ctx_err = self.in_ctx(ctx);
        match request {
            Request::Chat(req) => {
                wire::check_images(req).map_err(&ctx_err)?;
                let resp = self
                    .http
                    .request_to(Method::POST, &self.routes.chat)
                    .json(&wire::ChatBody::new(req, false))
                    .send(ctx)
                    .await?;
                let body = resp.bytes().await?;
                wire::parse_chat(&body).map(Response::Chat).map_err(ctx_err)
            }
            Request::Completion(req) => {
                let resp = self
                    .http
                    .request_to(Method::POST, &self.routes.generate)
                    .json(&wire::GenerateBody::new(req, false))
                    .send(ctx)
                    .await?;
                let body = resp.bytes().await?;
                wire::parse_generate(&body)
                    .map(Response::Completion)
                    .map_err(ctx_err)
            }
            Request::Embeddings(req) => {
                if req.inputs.is_empty() {
                    return Err(ctx_err(Error::new(
                        ErrorKind::InvalidRequest,
                        "no input to embed",
                    )));
                }
                let resp = self
                    .http
                    .request_to(Method::POST, &self.routes.embed)
                    .json(&wire::EmbedBody::new(req))
                    .send(ctx)
                    .await?;
                let body = resp.bytes().await?;
                wire::parse_embed(&body, req.inputs.len())
                    .map(Response::Embeddings)
                    .map_err(ctx_err)
            }
            Request::Models => {
                let models = self.local_models(ctx).await?;
                Ok(Response::Models(wire::model_list(&models)))
            }
            other => Err(ctx_err(Error::new(
                ErrorKind::Unsupported,
                format!("ollama does not offer {:?}", other.operation()),
            ))),
        }
    }

    async fn native_stream(&self, request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        let resp = match request {
            Request::Chat(req) => {
                wire::check_images(req).map_err(self.in_ctx(ctx))?;
                self.http
                    .request_to(Method::POST, &self.routes.chat)
                    .json(&wire::ChatBody::new(req, true))
                    .send(ctx)
                    .await?
            }
            Request::Completion(req) => {
                self.http
                    .request_to(Method::POST, &self.routes.generate)
                    .json(&wire::GenerateBody::new(req, true))
                    .send(ctx)
                    .await?
            }
            _ => {
                return Err(self.in_ctx(ctx)(Error::new(
                    ErrorKind::Unsupported,
                    "ollama streams chat and completions only",
                )));
            }
        };
        let (id, ep) = (ctx.request_id(), self.http.id().clone());
        first_event(ndjson_event_stream(resp, move |e| {
            e.in_context(id, NAME, &ep)
        }))
        .await
    }
}

impl EventDecoder<String> for NdjsonStreamState {
    fn on_item(&mut self, line: String) -> Result<Vec<StreamEvent>> {
        self.on_line(&line)
    }
    fn on_end(&mut self) -> Result<Vec<StreamEvent>> {
        NdjsonStreamState::on_end(self).map(|()| Vec::new())
    }
    fn is_done(&self) -> bool {
        NdjsonStreamState::is_done(self)
    }
    fn partial_text(&self) -> &str {
        self.text()
    }
}

/// Turns a streamed `/api/chat` or `/api/generate` response into an [`EventStream`] (not yet
/// awaited to its first event; see [`infermux_core::first_event`]).
pub fn ndjson_event_stream(
    resp: HttpResponse,
    with_context: impl Fn(Error) -> Error + Send + 'static,
) -> EventStream {
    infermux_http::event_stream(resp.ndjson(), NdjsonStreamState::new(), with_context)
}

#[async_trait]
impl Provider for Ollama {
    fn name(&self) -> &'static str {
        NAME
    }

    fn endpoint(&self) -> &EndpointId {
        self.http.id()
    }

    fn capabilities(&self) -> Capabilities {
        match self.mode {
            Mode::OpenAi => self.openai.capabilities(),
            Mode::Native => Capabilities::new()
                .with(Operation::Chat)
                .with(Operation::ChatStream)
                .with(Operation::Tools)
                .with(Operation::Vision)
                .with(Operation::Completion)
                .with(Operation::CompletionStream)
                .with(Operation::Embeddings)
                .with(Operation::Models),
        }
    }

    async fn call(&self, request: &Request, ctx: &RequestContext) -> Result<Response> {
        match self.mode {
            Mode::OpenAi => self.openai.call(request, ctx).await,
            Mode::Native => self.native_call(request, ctx).await,
        }
    }

    async fn stream(&self, request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        match self.mode {
            Mode::OpenAi => self.openai.stream(request, ctx).await,
            Mode::Native => self.native_stream(request, ctx).await,
        }
    }
}
