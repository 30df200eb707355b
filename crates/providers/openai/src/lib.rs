//! infermux provider for the [OpenAI API](https://platform.openai.com/docs/api-reference).
//!
//! Built on [`infermux_openai_compat`]'s wire format, plus what the real OpenAI API wants:
//! the key from `OPENAI_API_KEY`, the base URL from `OPENAI_BASE_URL` (default
//! `https://api.openai.com/v1`), the `OpenAI-Organization` and `OpenAI-Project` headers
//! (`OPENAI_ORG_ID`, `OPENAI_PROJECT_ID`), `max_completion_tokens` instead of the deprecated
//! `max_tokens` (the reasoning models refuse the latter), streams that must end with
//! `data: [DONE]` and ask for the usage chunk (`stream_options.include_usage`), and embeddings
//! optionally fetched as base64 (a quarter of the bytes of JSON floats).
//!
//! Chat covers tools and parallel tool calls, `tool_choice`, JSON-schema response formats,
//! images, refusals (a [`infermux_core::ContentPart::Refusal`] part, or refusal deltas in a
//! stream) and reasoning-token usage ([`infermux_core::Usage::reasoning_tokens`]); legacy
//! completions, embeddings and models are offered too.
//!
//! Called directly, as below, a provider sends each request once, with no retry. Through the
//! [`infermux`](https://docs.rs/infermux) facade (feature `openai`), wrap it in `infermux::Client`
//! to run its `Provider` operations through the resilience stack: admission queue, retries
//! with backoff, circuit breaker and call deadline.
//!
//! ```no_run
//! # async fn demo() -> infermux_core::Result<()> {
//! use infermux_core::{ChatRequest, Message, Provider, Request, RequestContext, Response};
//! use infermux_openai::OpenAi;
//!
//! let openai = OpenAi::from_env()?; // OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_ORG_ID, ...
//! let req = Request::Chat(ChatRequest::new("gpt-4o-mini", vec![Message::user("Hi!")]));
//! if let Response::Chat(answer) = openai.call(&req, &RequestContext::new()).await? {
//!     println!("{}", answer.text());
//! }
//! # Ok(()) }
//! ```
//!
//! With [`OpenAi::with_responses_api`], chat goes through the [Responses API](responses)
//! (`POST /responses`, plain and streamed events, function tools, reasoning summaries) instead
//! of chat completions.
//!
//! Moderation, image generation, audio speech and transcription, and files are inherent
//! methods ([`OpenAi::moderate`], [`OpenAi::generate_images`], [`OpenAi::speech`],
//! [`OpenAi::transcribe`], [`OpenAi::upload_file`], …) with the types of [`media`].
//!
//! [`OpenAiBuilder::azure`] targets an Azure OpenAI deployment (`api-key` header,
//! `api-version` query).
//!
//! A chat request that a model refuses for a sampling parameter it does not take
//! (`temperature`, `top_p`, `stop`, `seed`, `parallel_tool_calls`: OpenAI's reasoning models
//! answer `400 unsupported_parameter` or `unsupported_value`), or for the token limit's name
//! (`max_tokens` where the model reads `max_completion_tokens`, or the other way round), is
//! sent again without that parameter, or with the limit under the other name, once per
//! parameter and within the same attempt (the re-sends share its deadline when the call has
//! one). The client then leaves the parameter out of that model's later requests from the
//! start, learned per model and reasoning effort (`reasoning_effort` or `reasoning.effort` in
//! `extra`) for up to 1 024 of them, and logs a `tracing` warning when it learns one. A
//! parameter named in the request's `extra` is never left out or renamed.
//! [`OpenAi::with_drop_refused_params`] turns this off.
//!
//! # Crate features
//! This crate has no optional features.

mod refused;
pub mod responses;

/// Moderation, images, audio and files: the OpenAI-protocol code of `infermux-openai-compat`.
pub use infermux_openai_compat::media;

use async_trait::async_trait;
use infermux_core::{
    ApiKey, Capabilities, ChatRequest, EndpointConfig, EndpointId, Error, ErrorKind, EventStream,
    Provider, Request, RequestContext, Response, Result, first_event,
};
use infermux_http::{Auth, HttpRequest, HttpResponse};
use infermux_openai_compat::{OpenAiCompat, chat_event_stream, wire};
use serde_json::Value;
use std::sync::Arc;

/// The provider name errors and counters carry.
pub const NAME: &str = "openai";
/// The OpenAI API's base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The environment variable holding the key.
pub const API_KEY_ENV: &str = "OPENAI_API_KEY";
/// The environment variable that overrides the base URL.
pub const BASE_URL_ENV: &str = "OPENAI_BASE_URL";
/// The environment variable holding the organization id.
pub const ORG_ID_ENV: &str = "OPENAI_ORG_ID";
/// The environment variable holding the project id.
pub const PROJECT_ID_ENV: &str = "OPENAI_PROJECT_ID";
/// The header carrying the organization id.
pub const ORG_HEADER: &str = "OpenAI-Organization";
/// The header carrying the project id.
pub const PROJECT_HEADER: &str = "OpenAI-Project";
/// The header carrying an Azure OpenAI key.
pub const AZURE_KEY_HEADER: &str = "api-key";
/// The environment variable holding an Azure OpenAI key.
pub const AZURE_API_KEY_ENV: &str = "AZURE_OPENAI_API_KEY";
/// The environment variable holding an Azure OpenAI resource endpoint
/// (`https://<resource>.openai.azure.com`).
pub const AZURE_ENDPOINT_ENV: &str = "AZURE_OPENAI_ENDPOINT";
/// The environment variable holding the Azure OpenAI API version.
pub const AZURE_API_VERSION_ENV: &str = "OPENAI_API_VERSION";

/// A client of one OpenAI endpoint.
#[derive(Debug, Clone)]
pub struct OpenAi {
    inner: OpenAiCompat,
    base64_embeddings: bool,
    responses_api: bool,
    /// `Some` for an Azure OpenAI deployment: the `api-version` query every request carries.
    api_version: Option<String>,
    /// Whether a parameter a model refuses is left out (see the crate docs).
    drop_refused: bool,
    /// The refusals learned, per model (shared by clones).
    learned: Arc<refused::Learned>,
}

/// How to build an [`OpenAi`] client: base URL, key, organization and project.
///
/// ```
/// use infermux_openai::OpenAiBuilder;
/// let openai = OpenAiBuilder::new()
///     .with_base_url("http://127.0.0.1:8080/v1")
///     .with_organization("org-123")
///     .with_project("proj_456")
///     .build()
///     .unwrap();
/// # let _ = openai;
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct OpenAiBuilder {
    /// The base URL (default [`DEFAULT_BASE_URL`]).
    pub base_url: Option<String>,
    /// The key.
    pub api_key: Option<ApiKey>,
    /// Sent as `OpenAI-Organization`.
    pub organization: Option<String>,
    /// Sent as `OpenAI-Project`.
    pub project: Option<String>,
    /// Ask for base64 embeddings.
    pub base64_embeddings: bool,
    /// Send chat through the Responses API.
    pub responses_api: bool,
    /// `Some(api_version)` for an Azure OpenAI deployment (see [`OpenAiBuilder::azure`]).
    pub azure_api_version: Option<String>,
}

impl std::fmt::Debug for OpenAiBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the base URL without its query (a gateway's key may ride in it) or a userinfo
        let base_url = self.base_url.as_deref().map(|u| {
            let u = u.split(['?', '#']).next().unwrap_or(u);
            infermux_core::url_without_userinfo(u).into_owned()
        });
        f.debug_struct("OpenAiBuilder")
            .field("base_url", &base_url)
            .field("api_key", &self.api_key)
            .field("organization", &self.organization)
            .field("project", &self.project)
            .field("base64_embeddings", &self.base64_embeddings)
            .field("responses_api", &self.responses_api)
            .field("azure_api_version", &self.azure_api_version)
            .finish()
    }
}

impl OpenAiBuilder {
    /// An empty builder: the default base URL, no key.
    pub fn new() -> Self {
        Self::default()
    }
    /// A builder from `OPENAI_API_KEY`, `OPENAI_BASE_URL`, `OPENAI_ORG_ID` and
    /// `OPENAI_PROJECT_ID` (each only when set).
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        OpenAiBuilder {
            base_url: var(BASE_URL_ENV),
            api_key: ApiKey::from_env(API_KEY_ENV),
            organization: var(ORG_ID_ENV),
            project: var(PROJECT_ID_ENV),
            base64_embeddings: false,
            responses_api: false,
            azure_api_version: None,
        }
    }
    /// A builder for Azure OpenAI deployment `deployment` of the resource at `endpoint`
    /// (`https://<resource>.openai.azure.com`), with API version `api_version`.
    ///
    /// ```
    /// use infermux_openai::OpenAiBuilder;
    /// let azure = OpenAiBuilder::azure("https://contoso.openai.azure.com", "gpt-4o", "2024-10-21")
    ///     .build()
    ///     .unwrap();
    /// assert!(azure.is_azure());
    /// ```
    pub fn azure(endpoint: &str, deployment: &str, api_version: &str) -> Self {
        OpenAiBuilder {
            base_url: Some(format!(
                "{}/openai/deployments/{deployment}",
                endpoint.trim_end_matches('/')
            )),
            azure_api_version: Some(api_version.to_owned()),
            ..Self::default()
        }
    }
    /// [`OpenAiBuilder::azure`] from `AZURE_OPENAI_ENDPOINT`, `AZURE_OPENAI_API_KEY` and
    /// `OPENAI_API_VERSION`; `None` when the endpoint or the version is not set.
    pub fn azure_from_env(deployment: &str) -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut b = Self::azure(
            &var(AZURE_ENDPOINT_ENV)?,
            deployment,
            &var(AZURE_API_VERSION_ENV)?,
        );
        b.api_key = ApiKey::from_env(AZURE_API_KEY_ENV);
        Some(b)
    }
    /// Sets the base URL (including `/v1`).
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }
    /// Sets the key.
    pub fn with_api_key(mut self, key: ApiKey) -> Self {
        self.api_key = Some(key);
        self
    }
    /// Sets the organization id.
    pub fn with_organization(mut self, org: impl Into<String>) -> Self {
        self.organization = Some(org.into());
        self
    }
    /// Sets the project id.
    pub fn with_project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }
    /// Asks for embeddings as base64 instead of JSON floats.
    pub fn with_base64_embeddings(mut self, yes: bool) -> Self {
        self.base64_embeddings = yes;
        self
    }
    /// Sends chat through the Responses API (`POST /responses`).
    pub fn with_responses_api(mut self, yes: bool) -> Self {
        self.responses_api = yes;
        self
    }
    /// The client. Fails with `Config` on a bad base URL.
    pub fn build(self) -> Result<OpenAi> {
        let base = self.base_url.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        let mut cfg = EndpointConfig::new(NAME, base)?;
        if let Some(k) = self.api_key {
            cfg = cfg.with_api_key(k);
        }
        if let Some(o) = self.organization {
            cfg = cfg.with_header(ORG_HEADER, o);
        }
        if let Some(p) = self.project {
            cfg = cfg.with_header(PROJECT_HEADER, p);
        }
        let client = match self.azure_api_version {
            Some(v) => OpenAi::azure(cfg, v)?,
            None => OpenAi::new(cfg)?,
        };
        Ok(client
            .with_base64_embeddings(self.base64_embeddings)
            .with_responses_api(self.responses_api))
    }
}

impl OpenAi {
    /// A client for `config` (its key is sent as `Authorization: Bearer`; organization and
    /// project headers go in `config.headers`, see [`OpenAiBuilder`]).
    pub fn new(config: EndpointConfig) -> Result<Self> {
        Ok(OpenAi {
            inner: OpenAiCompat::with_auth(NAME, config, Auth::Bearer)?,
            base64_embeddings: false,
            responses_api: false,
            api_version: None,
            drop_refused: true,
            learned: Arc::default(),
        })
    }

    /// A client configured from the environment ([`OpenAiBuilder::from_env`]); fails with
    /// `Config` when `OPENAI_API_KEY` is not set.
    pub fn from_env() -> Result<Self> {
        let b = OpenAiBuilder::from_env();
        if b.api_key.is_none() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("environment variable {API_KEY_ENV} is not set"),
            ));
        }
        b.build()
    }

    /// Asks for embeddings as base64 (decoded to the same floats).
    pub fn with_base64_embeddings(mut self, yes: bool) -> Self {
        self.base64_embeddings = yes;
        self
    }

    /// Sends chat through the Responses API (`POST /responses`) instead of chat completions.
    pub fn with_responses_api(mut self, yes: bool) -> Self {
        self.responses_api = yes;
        self
    }

    /// Whether a chat request a model refuses for a sampling parameter (or for the token
    /// limit's name) is sent again without it, and the parameter left out of that model's
    /// later requests (default: yes; see the crate docs). With `false` the refusal is the
    /// call's error.
    ///
    /// ```
    /// use infermux_core::EndpointConfig;
    /// use infermux_openai::OpenAi;
    /// let strict = OpenAi::new(EndpointConfig::new("openai", "http://127.0.0.1:9/v1").unwrap())
    ///     .unwrap()
    ///     .with_drop_refused_params(false);
    /// # let _ = strict;
    /// ```
    pub fn with_drop_refused_params(mut self, yes: bool) -> Self {
        self.drop_refused = yes;
        self
    }

    /// A client of an Azure OpenAI deployment: `config.base_url` is
    /// `https://<resource>.openai.azure.com/openai/deployments/<deployment>`, the key goes in
    /// the `api-key` header and every request carries `api-version`. Chat keeps `max_tokens`
    /// (older Azure API versions refuse `max_completion_tokens`).
    pub fn azure(config: EndpointConfig, api_version: impl Into<String>) -> Result<Self> {
        Ok(OpenAi {
            inner: OpenAiCompat::with_auth(NAME, config, Auth::Header(AZURE_KEY_HEADER))?,
            base64_embeddings: false,
            responses_api: false,
            api_version: Some(api_version.into()),
            drop_refused: true,
            learned: Arc::default(),
        })
    }

    /// Whether this client talks to an Azure OpenAI deployment.
    pub fn is_azure(&self) -> bool {
        self.api_version.is_some()
    }

    /// Moderation, images, audio and files on this endpoint (with Azure's `api-version` when
    /// set).
    pub fn media(&self) -> media::MediaClient<'_> {
        media::MediaClient::new(self.inner.http(), self.api_version.as_deref())
    }

    /// `POST /moderations`: one result per input.
    pub async fn moderate(
        &self,
        model: Option<&str>,
        inputs: &[String],
        ctx: &RequestContext,
    ) -> Result<media::Moderation> {
        self.media().moderate(model, inputs, ctx).await
    }

    /// `POST /images/generations`.
    pub async fn generate_images(
        &self,
        req: &media::ImageRequest,
        ctx: &RequestContext,
    ) -> Result<media::ImageGeneration> {
        self.media().generate_images(req, ctx).await
    }

    /// `POST /audio/speech`: the audio bytes.
    pub async fn speech(
        &self,
        req: &media::SpeechRequest,
        ctx: &RequestContext,
    ) -> Result<Vec<u8>> {
        self.media().speech(req, ctx).await
    }

    /// `POST /audio/transcriptions` (multipart).
    pub async fn transcribe(
        &self,
        req: &media::TranscriptionRequest,
        ctx: &RequestContext,
    ) -> Result<media::Transcription> {
        self.media().transcribe(req, ctx).await
    }

    /// `POST /files` (multipart): uploads `bytes` as `filename` for `purpose`.
    pub async fn upload_file(
        &self,
        filename: &str,
        bytes: &[u8],
        purpose: &str,
        ctx: &RequestContext,
    ) -> Result<media::FileObject> {
        self.media()
            .upload_file(filename, bytes, purpose, ctx)
            .await
    }

    /// `GET /files`.
    pub async fn list_files(&self, ctx: &RequestContext) -> Result<Vec<media::FileObject>> {
        self.media().list_files(ctx).await
    }

    /// `GET /files/{id}/content`: the file's bytes.
    pub async fn file_content(&self, id: &str, ctx: &RequestContext) -> Result<Vec<u8>> {
        self.media().file_content(id, ctx).await
    }

    /// `DELETE /files/{id}`: whether the file was deleted.
    pub async fn delete_file(&self, id: &str, ctx: &RequestContext) -> Result<bool> {
        self.media().delete_file(id, ctx).await
    }

    fn with_version<'a>(&self, r: HttpRequest<'a>) -> HttpRequest<'a> {
        match &self.api_version {
            Some(v) => r.query("api-version", v),
            None => r,
        }
    }

    fn post(&self, path: &str) -> HttpRequest<'_> {
        self.with_version(self.inner.http().post(path))
    }

    fn get(&self, path: &str) -> HttpRequest<'_> {
        self.with_version(self.inner.http().get(path))
    }

    fn chat_body<'a>(&self, req: &'a ChatRequest, stream: bool) -> wire::ChatBody<'a> {
        if self.is_azure() {
            wire::ChatBody::new(req, stream)
        } else {
            typed_chat_body(req, stream)
        }
    }

    /// Sends a chat request (chat completions or the Responses API), leaving out what the
    /// model was learned to refuse; a new refusal is learned and the request sent again
    /// without it (each parameter once, so this ends).
    async fn send_chat(
        &self,
        req: &ChatRequest,
        stream: bool,
        ctx: &RequestContext,
    ) -> Result<HttpResponse> {
        let mut adapt = if self.drop_refused {
            self.learned.get(req)
        } else {
            refused::Adapt::default()
        };
        if adapt != refused::Adapt::default() {
            tracing::debug!(
                provider = NAME,
                model = %req.model,
                omitted = ?adapt.omitted,
                max_tokens_key = adapt.max_tokens_key,
                "leaving out what the model refused before"
            );
        }
        // a limit named in `extra` is sent as named: a learned name would add the other one
        let named_limit = req.extra.contains_key(refused::MAX_TOKENS)
            || req.extra.contains_key(refused::MAX_COMPLETION_TOKENS);
        loop {
            // (the name the token limit went under: the Responses API's `max_output_tokens`
            // has no other)
            let (sent, limit_key) = if self.responses_api {
                let body = responses::ResponsesBody::new(req, stream).omitting(adapt.omitted);
                (self.post("/responses").json(&body).send(ctx).await, None)
            } else {
                let mut body = self.chat_body(req, stream).omitting(adapt.omitted);
                if let Some(key) = adapt.max_tokens_key.filter(|_| !named_limit) {
                    body = body.with_max_tokens_key(key);
                }
                let key = body.max_tokens_key();
                (
                    self.post("/chat/completions").json(&body).send(ctx).await,
                    Some(key),
                )
            };
            let e = match sent {
                Err(e) if self.drop_refused => e,
                other => return other,
            };
            let Some((next, param)) = refused::next(&e, req, adapt, limit_key) else {
                return Err(e);
            };
            let remembered = self.learned.learn(req, next);
            tracing::warn!(
                provider = NAME,
                endpoint = %self.inner.endpoint(),
                model = %req.model,
                param,
                remembered,
                "the model refuses this parameter: sent again without it (and, when remembered, \
                 left out of its later requests)"
            );
            adapt = next;
        }
    }

    fn ctx_err(&self, ctx: &RequestContext) -> impl Fn(Error) -> Error + '_ {
        let id = ctx.request_id();
        move |e| e.in_context(id, NAME, self.inner.endpoint())
    }
}

/// The JSON body of an OpenAI chat-completions request: the shared OpenAI-protocol body with
/// `max_completion_tokens` in place of the deprecated `max_tokens` ([`typed_chat_body`] as a
/// `Value`).
pub fn chat_body(req: &ChatRequest, stream: bool) -> Value {
    serde_json::to_value(typed_chat_body(req, stream)).unwrap_or(Value::Null)
}

/// The body of an OpenAI chat-completions request, serialised straight from `req`: the shared
/// [`wire::ChatBody`] with the token limit sent as `max_completion_tokens` (unless the request's
/// `extra` names `max_tokens` itself, which is then sent as given).
pub fn typed_chat_body(req: &ChatRequest, stream: bool) -> wire::ChatBody<'_> {
    let body = wire::ChatBody::new(req, stream);
    if req.extra.contains_key("max_tokens") {
        body
    } else {
        body.with_max_tokens_key("max_completion_tokens")
    }
}

#[async_trait]
impl Provider for OpenAi {
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
        let ctx_err = self.ctx_err(ctx);
        match request {
            Request::Chat(req) if self.responses_api => {
                let body = self.send_chat(req, false, ctx).await?.bytes().await?;
                responses::parse_response(&body)
                    .map(Response::Chat)
                    .map_err(ctx_err)
            }
            Request::Chat(req) => {
                let body = self.send_chat(req, false, ctx).await?.bytes().await?;
                wire::parse_chat(&body).map(Response::Chat).map_err(ctx_err)
            }
            Request::Completion(req) => {
                let body = self
                    .post("/completions")
                    .json(&wire::CompletionBody::new(req, false))
                    .send(ctx)
                    .await?
                    .bytes()
                    .await?;
                wire::parse_completion(&body)
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
                let mut body = wire::EmbeddingBody::new(req);
                if self.base64_embeddings {
                    body = body.with_encoding_format("base64");
                }
                let bytes = self
                    .post("/embeddings")
                    .json(&body)
                    .send(ctx)
                    .await?
                    .bytes()
                    .await?;
                wire::parse_embeddings(&bytes, req.inputs.len())
                    .map(Response::Embeddings)
                    .map_err(ctx_err)
            }
            Request::Models => {
                let body = self.get("/models").send(ctx).await?.bytes().await?;
                wire::parse_models(&body)
                    .map(Response::Models)
                    .map_err(ctx_err)
            }
            other => Err(ctx_err(Error::new(
                ErrorKind::Unsupported,
                format!("{NAME} does not offer {:?}", other.operation()),
            ))),
        }
    }

    async fn stream(&self, request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        let (id, ep) = (ctx.request_id(), self.inner.endpoint().clone());
        let with_context = move |e: Error| e.in_context(id, NAME, &ep);
        let stream = match request {
            Request::Chat(req) if self.responses_api => {
                let resp = self.send_chat(req, true, ctx).await?;
                responses_event_stream(resp, with_context)
            }
            Request::Chat(req) => {
                let resp = self.send_chat(req, true, ctx).await?;
                chat_event_stream(resp, with_context)
            }
            Request::Completion(req) => {
                let resp = self
                    .post("/completions")
                    .json(&wire::CompletionBody::new(req, true))
                    .send(ctx)
                    .await?;
                chat_event_stream(resp, with_context)
            }
            other => {
                return Err(self.ctx_err(ctx)(Error::new(
                    ErrorKind::Unsupported,
                    format!("{NAME} does not stream {:?}", other.operation()),
                )));
            }
        };
        first_event(stream).await
    }
}

impl infermux_http::EventDecoder<infermux_http::decode::SseEvent>
    for responses::ResponsesStreamState
{
    fn on_item(
        &mut self,
        ev: infermux_http::decode::SseEvent,
    ) -> Result<Vec<infermux_core::StreamEvent>> {
        self.on_event(ev.event.as_deref(), &ev.data)
    }
    fn on_end(&mut self) -> Result<Vec<infermux_core::StreamEvent>> {
        responses::ResponsesStreamState::on_end(self)
    }
    fn is_done(&self) -> bool {
        responses::ResponsesStreamState::is_done(self)
    }
    fn partial_text(&self) -> &str {
        self.text()
    }
}

/// Turns a streamed Responses API answer into an [`EventStream`] (not yet awaited to its first
/// event).
fn responses_event_stream(
    resp: infermux_http::HttpResponse,
    with_context: impl Fn(Error) -> Error + Send + 'static,
) -> EventStream {
    infermux_http::event_stream(
        resp.sse(),
        responses::ResponsesStreamState::new(),
        with_context,
    )
}
