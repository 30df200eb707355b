//! infermux provider for any OpenAI-compatible server: llama.cpp's `llama-server`, vLLM,
//! LocalAI, LM Studio, OPEA microservices, the `/v1` modes of Ollama, TGI and OVMS.
//!
//! Chat (plain and streamed, tools, images), legacy completions (plain and streamed),
//! embeddings and model listing against any base URL, with an optional Bearer key; moderation,
//! images, audio and files through [`OpenAiCompat::media`]. The wire format lives in [`wire`]
//! (and [`media`]) so the other OpenAI-protocol crates reuse it: request bodies are typed views
//! of the request serialised straight to bytes ([`wire::ChatBody`]), and answers are read into
//! typed structs, with the helpers of [`json`] (merging `extra` into a body, reading as
//! tolerantly as a `serde_json::Value`) for any crate that does the same.
//!
//! Called directly, as below, a provider sends each request once, with no retry. Through the
//! [`infermux`](https://docs.rs/infermux) facade (feature `openai-compat`), wrap it in `infermux::Client`
//! to run its `Provider` operations through the resilience stack: admission queue, retries
//! with backoff, circuit breaker and call deadline.
//!
//! ```no_run
//! # async fn demo() -> infermux_core::Result<()> {
//! use infermux_core::{ChatRequest, EndpointConfig, Message, Provider, Request, RequestContext, Response};
//! use infermux_openai_compat::OpenAiCompat;
//!
//! let provider = OpenAiCompat::new(EndpointConfig::new("local", "http://127.0.0.1:8080/v1")?)?;
//! let req = Request::Chat(ChatRequest::new("any", vec![Message::user("Hello!")]));
//! if let Response::Chat(chat) = provider.call(&req, &RequestContext::new()).await? {
//!     println!("{}", chat.text());
//! }
//! # Ok(()) }
//! ```
//!
//! # Crate features
//! This crate has no optional features.

// plumbing of the workspace's typed wire formats (openai, opea), not an API: hidden from the
// docs, and no stability promised
#[doc(hidden)]
pub mod json;
pub mod media;
pub mod wire;

use async_trait::async_trait;
use infermux_core::{
    Capabilities, EndpointConfig, EndpointId, Error, ErrorKind, EventStream, Operation, Provider,
    Request, RequestContext, Response, Result, StreamEvent, first_event,
};
use infermux_http::decode::SseEvent;
use infermux_http::{Auth, EventDecoder, HttpEndpoint, HttpResponse, Method, Route};

pub use wire::ChatStreamState;

/// The provider name errors and counters carry.
pub const NAME: &str = "openai-compat";
/// The environment variable [`OpenAiCompat::from_env`] reads the server's URL from (with its
/// version prefix), as OpenAI's SDKs do.
pub const BASE_URL_ENV: &str = "OPENAI_BASE_URL";
/// The environment variable [`OpenAiCompat::from_env`] reads the (optional) key from.
pub const API_KEY_ENV: &str = "OPENAI_API_KEY";

/// A client of one OpenAI-compatible endpoint. The base URL includes the version prefix
/// (`http://127.0.0.1:8080/v1`).
#[derive(Debug, Clone)]
pub struct OpenAiCompat {
    http: HttpEndpoint,
    name: &'static str,
    caps: Capabilities,
    end_at_finish: bool,
    /// The routes every call takes, joined to the base URL once.
    routes: Routes,
}

/// [`OpenAiCompat`]'s routes, joined to its base URL once.
#[derive(Clone, Debug)]
struct Routes {
    chat: Route,
    completions: Route,
    embeddings: Route,
}

impl OpenAiCompat {
    /// A client for `config`; its key, if any, is sent as `Authorization: Bearer`.
    ///
    /// Being the client for any compatible server, it accepts a stream that ends after a
    /// finish reason without `[DONE]` (TGI 1.x); see
    /// [`OpenAiCompat::with_missing_done_tolerated`].
    pub fn new(config: EndpointConfig) -> Result<Self> {
        Ok(Self::with_auth(NAME, config, Auth::Bearer)?.with_missing_done_tolerated(true))
    }

    /// A client from `OPENAI_BASE_URL` (the server's URL with its version prefix, such as
    /// `http://127.0.0.1:8080/v1`) and, when set, `OPENAI_API_KEY` (sent as Bearer): the
    /// variables OpenAI's SDKs read. There is no default server: an unset or empty
    /// `OPENAI_BASE_URL` (or one that is not a URL) fails with [`ErrorKind::Config`].
    ///
    /// ```
    /// use infermux_core::ErrorKind;
    /// use infermux_openai_compat::OpenAiCompat;
    /// // OPENAI_BASE_URL=http://127.0.0.1:8080/v1, and OPENAI_API_KEY when the server wants one
    /// match OpenAiCompat::from_env() {
    ///     Ok(provider) => println!("talking to {}", provider.http().config().base_url),
    ///     Err(e) => {
    ///         assert_eq!(e.kind(), ErrorKind::Config);
    ///         assert!(e.message().contains("OPENAI_BASE_URL"), "{e}");
    ///     }
    /// }
    /// ```
    pub fn from_env() -> Result<Self> {
        Self::new(
            EndpointConfig::from_env(NAME, BASE_URL_ENV, None)?
                .with_optional_api_key_from_env(&[API_KEY_ENV]),
        )
    }

    /// Whether a stream that ends without `[DONE]` after a chunk with a finish reason is a
    /// complete answer (`false`, the default of [`OpenAiCompat::with_auth`], makes it a
    /// `Decode` error like any other stream that ends without `[DONE]`).
    pub fn with_missing_done_tolerated(mut self, yes: bool) -> Self {
        self.end_at_finish = yes;
        self
    }

    /// A client that reports itself as `name` and sends the key as `auth` says (for crates
    /// built on this one: groq, vllm, opea, Azure's `api-key`).
    pub fn with_auth(name: &'static str, config: EndpointConfig, auth: Auth) -> Result<Self> {
        Ok(Self::with_http(HttpEndpoint::new(name, config, auth)?))
    }

    /// A client over an existing endpoint (its base URL includes the version prefix), reporting
    /// itself as the endpoint's provider: how a crate for a server with native routes too
    /// (TGI, TEI, Ollama, vLLM, OVMS) reaches the OpenAI-compatible ones through the same
    /// connection pool, with [`HttpEndpoint::rebased`].
    ///
    /// ```
    /// use infermux_core::EndpointConfig;
    /// use infermux_http::{Auth, HttpEndpoint};
    /// use infermux_openai_compat::OpenAiCompat;
    /// let root = HttpEndpoint::new("ollama", EndpointConfig::new("local", "http://127.0.0.1:11434")?, Auth::Bearer)?;
    /// let v1 = OpenAiCompat::with_http(root.rebased("http://127.0.0.1:11434/v1")?);
    /// assert_eq!(v1.http().config().base_url, "http://127.0.0.1:11434/v1");
    /// # Ok::<(), infermux_core::Error>(())
    /// ```
    pub fn with_http(http: HttpEndpoint) -> Self {
        let routes = Routes {
            chat: http.route("/chat/completions"),
            completions: http.route("/completions"),
            embeddings: http.route("/embeddings"),
        };
        OpenAiCompat {
            name: http.provider(),
            http,
            caps: Capabilities::new()
                .with(Operation::Chat)
                .with(Operation::ChatStream)
                .with(Operation::Tools)
                .with(Operation::Vision)
                .with(Operation::Completion)
                .with(Operation::CompletionStream)
                .with(Operation::Embeddings)
                .with(Operation::Models),
            end_at_finish: false,
            routes,
        }
    }

    /// Replaces the advertised capabilities (for servers that offer less).
    pub fn with_capabilities(mut self, caps: Capabilities) -> Self {
        self.caps = caps;
        self
    }

    /// Moderation, images, audio and files on this endpoint (see [`media`]).
    pub fn media(&self) -> media::MediaClient<'_> {
        media::MediaClient::new(&self.http, None)
    }

    /// The HTTP endpoint (for crates that add routes).
    pub fn http(&self) -> &HttpEndpoint {
        &self.http
    }

    fn ctx_err(&self, ctx: &RequestContext) -> impl Fn(Error) -> Error + '_ {
        self.http.error_context(ctx)
    }
}

impl EventDecoder<SseEvent> for ChatStreamState {
    fn on_item(&mut self, ev: SseEvent) -> Result<Vec<StreamEvent>> {
        if ev.event.as_deref() == Some("error") {
            let e = match serde_json::from_str::<serde_json::Value>(&ev.data) {
                Ok(v) if v.is_object() => wire::embedded_error(v.get("error").unwrap_or(&v)),
                // not JSON (`error: upstream connect error`): its text is the message
                _ => infermux_http::error_event(&ev.data, ""),
            };
            return Err(e.with_partial_text(self.text().to_owned()));
        }
        // chat completions name no event but `error`: a named one (a proxy's `ping`) whose
        // data is not JSON carries nothing it reads (checked only when the data did not read:
        // nothing more for the chunks that do)
        match self.on_data(&ev.data) {
            Err(e)
                if e.kind() == ErrorKind::Decode
                    && ev.event.is_some()
                    && serde_json::from_str::<serde::de::IgnoredAny>(&ev.data).is_err() =>
            {
                Ok(Vec::new())
            }
            other => other,
        }
    }
    fn on_end(&mut self) -> Result<Vec<StreamEvent>> {
        ChatStreamState::on_end(self)
    }
    fn is_done(&self) -> bool {
        ChatStreamState::is_done(self)
    }
    fn partial_text(&self) -> &str {
        self.text()
    }
}

/// Turns a chat-completions SSE response into an [`EventStream`] (not yet awaited to its first
/// event; see [`infermux_core::first_event`]). `with_context` fills request id, provider and
/// endpoint into stream errors.
pub fn chat_event_stream(
    resp: HttpResponse,
    with_context: impl Fn(Error) -> Error + Send + 'static,
) -> EventStream {
    chat_event_stream_with(resp, ChatStreamState::new(), with_context)
}

/// [`chat_event_stream`] with a given initial state (for example
/// [`ChatStreamState::ending_at_finish_reason`]).
pub fn chat_event_stream_with(
    resp: HttpResponse,
    state: ChatStreamState,
    with_context: impl Fn(Error) -> Error + Send + 'static,
) -> EventStream {
    // llama.cpp's server before September 2025 reported a failure mid-stream on an `error:`
    // line, then `data: [DONE]`: read as an error event, not dropped before a clean end
    infermux_http::event_stream(resp.sse_reading_error_lines(), state, with_context)
}

#[async_trait]
impl Provider for OpenAiCompat {
    fn name(&self) -> &'static str {
        self.name
    }

    fn endpoint(&self) -> &EndpointId {
        self.http.id()
    }

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    async fn call(&self, request: &Request, ctx: &RequestContext) -> Result<Response> {
        let ctx_err = self.ctx_err(ctx);
        // The response and its body are awaited in statements of their own: chained
        // (`.await?.bytes().await?`), the first `?`'s result, a whole response, stays in this
        // future while the body is read.
        match request {
            Request::Chat(req) => {
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
                    .request_to(Method::POST, &self.routes.completions)
                    .json(&wire::CompletionBody::new(req, false))
                    .send(ctx)
                    .await?;
                let body = resp.bytes().await?;
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
                let resp = self
                    .http
                    .request_to(Method::POST, &self.routes.embeddings)
                    .json(&wire::EmbeddingBody::new(req))
                    .send(ctx)
                    .await?;
                let body = resp.bytes().await?;
                wire::parse_embeddings(&body, req.inputs.len())
                    .map(Response::Embeddings)
                    .map_err(ctx_err)
            }
            Request::Models => {
                let resp = self.http.get("/models").send(ctx).await?;
                let body = resp.bytes().await?;
                wire::parse_models(&body)
                    .map(Response::Models)
                    .map_err(ctx_err)
            }
            other => Err(ctx_err(Error::new(
                ErrorKind::Unsupported,
                format!("{} does not offer {:?}", self.name, other.operation()),
            ))),
        }
    }

    async fn stream(&self, request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        let resp = match request {
            Request::Chat(req) => {
                self.http
                    .request_to(Method::POST, &self.routes.chat)
                    .json(&wire::ChatBody::new(req, true))
                    .send(ctx)
                    .await?
            }
            Request::Completion(req) => {
                self.http
                    .request_to(Method::POST, &self.routes.completions)
                    .json(&wire::CompletionBody::new(req, true))
                    .send(ctx)
                    .await?
            }
            _ => {
                return Err(self.ctx_err(ctx)(Error::new(
                    ErrorKind::Unsupported,
                    format!("{} streams chat and completions only", self.name),
                )));
            }
        };
        let (id, name, ep) = (ctx.request_id(), self.name, self.http.id().clone());
        let state = if self.end_at_finish {
            ChatStreamState::ending_at_finish_reason()
        } else {
            ChatStreamState::new()
        };
        first_event(chat_event_stream_with(resp, state, move |e| {
            e.in_context(id, name, &ep)
        }))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infermux_testkit::{FaultPlan, Simulator};

    /// The marker of a child run of [`from_env_child`], and what it checks.
    const CHILD: &str = "INFERMUX_OPENAI_COMPAT_FROM_ENV_CHILD";

    /// Runs [`from_env_child`] in a child process of this test binary with `env` set (the
    /// environment of this process is never changed) and asserts it passed.
    fn run_child(mode: &str, env: &[(&str, &str)]) {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "tests::from_env_child", "--nocapture"])
            .env(CHILD, mode)
            .env_remove(BASE_URL_ENV)
            .env_remove(API_KEY_ENV);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child {mode}: {text}");
        assert!(text.contains("1 passed"), "the child test ran: {text}");
        assert!(text.contains(&format!("child {mode} done")), "{text}");
    }

    /// The child half of [`from_env_reads_openai_base_url_and_api_key`]: does nothing unless
    /// started by it.
    #[tokio::test]
    async fn from_env_child() {
        let Ok(mode) = std::env::var(CHILD) else {
            return;
        };
        match mode.as_str() {
            "set" => {
                let p = OpenAiCompat::from_env().unwrap();
                assert!(p.http().config().base_url.ends_with("/v1"));
                p.http()
                    .get("/models")
                    .send(&RequestContext::new())
                    .await
                    .unwrap();
            }
            "unset" => {
                let e = OpenAiCompat::from_env().unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Config);
                assert!(e.message().contains(BASE_URL_ENV), "{e}");
            }
            other => panic!("unknown mode {other}"),
        }
        println!("child {mode} done");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn from_env_reads_openai_base_url_and_api_key() {
        let sim = Simulator::start(FaultPlan::none()).await.unwrap();
        let url = format!("{}/v1", sim.url());
        tokio::task::spawn_blocking(move || {
            run_child(
                "set",
                &[
                    (BASE_URL_ENV, url.as_str()),
                    (API_KEY_ENV, "sk-from-env-1234"),
                ],
            );
            run_child("unset", &[]);
            run_child("unset", &[(BASE_URL_ENV, " "), (API_KEY_ENV, "sk-x-1234")]);
        })
        .await
        .unwrap();
        assert_eq!(sim.requests(), 1);
        assert_eq!(sim.requests_by_key("sk-from-env-1234"), 1);
    }
}
