//! infermux provider for Hugging Face [Text Generation Inference](https://github.com/huggingface/text-generation-inference)
//! (TGI), and for the HF Inference API's text generation.
//!
//! - Completions are TGI's own `/generate` (with `details: true`: the finish reason and token
//!   counts) and, streamed, `/generate_stream` (SSE written `data:{...}`; one event per token,
//!   the last one carrying `generated_text` and `details`; special tokens are not text; a
//!   stream that ends before that last event is a `Decode` error with the partial text).
//!   TGI ends its text with the stop sequence that stopped it; the answer and the stream leave
//!   it out, as OpenAI-style APIs do (a streamed piece that may start a stop sequence is held
//!   back until it is known not to be). [`HfTgi::generate`] returns the typed [`Generation`]
//!   with its tokens, as TGI sent them.
//! - Chat goes to the server's messages API, `/v1/chat/completions`, in the OpenAI protocol of
//!   [`infermux_openai_compat::wire`] (the server applies the model's chat template; errors and
//!   `x-wait-for-model` are handled as for generation). For a server
//!   without it (TGI < 1.4.3), [`HfTgi::with_prompt_format`] renders the messages with a
//!   documented [`PromptFormat`] and sends them to `/generate`.
//! - [`HfTgi::info`] (`/info`), [`HfTgi::health`] (`/health`), [`HfTgi::metrics`] (`/metrics`,
//!   a typed [`TgiMetrics`]).
//! - The HF Inference API mode ([`HfTgi::inference_api`]): the model is in the path
//!   (`{base}/models/{model}` for generation, `{base}/models/{model}/v1/chat/completions` for
//!   chat). A 503 "model is loading" with `estimated_time` becomes an `Overloaded` error with
//!   that `retry_after` and a message saying to retry then or to send
//!   `x-wait-for-model: true`, which [`HfTgi::with_wait_for_model`] does.
//! - 422 validation errors, JSON or `text/plain`, are `ContextLength` when they say the prompt
//!   is too long for the model, `InvalidRequest` otherwise.
//!
//! The key is sent as `Authorization: Bearer`. From the environment ([`HfTgi::from_env`]) it
//! is `HF_TOKEN` (or `HF_API_KEY`) only for Hugging Face's own hosts, and `TGI_API_KEY` (a
//! server started with `--api-key`) for any other: a Hugging Face account token never goes
//! to someone else's server.
//!
//! Called directly, as below, a provider sends each request once, with no retry. Through the
//! [`infermux`](https://docs.rs/infermux) facade (feature `hf-tgi`), wrap it in `infermux::Client`
//! to run its `Provider` operations through the resilience stack: admission queue, retries
//! with backoff, circuit breaker and call deadline.
//!
//! ```no_run
//! # async fn demo() -> infermux_core::Result<()> {
//! use infermux_core::{CompletionRequest, Provider, Request, RequestContext, Response};
//! use infermux_hf_tgi::HfTgi;
//!
//! let tgi = HfTgi::from_env()?; // TGI_URL (default http://127.0.0.1:8080), TGI_API_KEY when set
//! let req = Request::Completion(CompletionRequest::new("tgi", "Deep learning is").with_max_tokens(20));
//! if let Response::Completion(c) = tgi.call(&req, &RequestContext::new()).await? {
//!     println!("{} ({:?})", c.text, c.finish_reason);
//! }
//! # Ok(()) }
//! ```
//!
//! # Crate features
//! - `unified`: `unified::launch` starts a TGI server (a process or a container, through
//!   `infermux-containers`), waits until it is ready and returns this crate's client with the
//!   server's supervisor.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod metrics;
#[cfg(feature = "unified")]
pub mod unified;
pub mod wire;

use async_trait::async_trait;
use infermux_core::{
    Capabilities, ChatRequest, ChatResponse, CompletionRequest, EndpointConfig, EndpointId, Error,
    ErrorKind, EventStream, Message, ModelInfo, ModelList, Operation, Provider, Request,
    RequestContext, Response, Result, StreamEvent, first_event,
};
use infermux_http::EventDecoder;
use infermux_http::{Auth, HttpEndpoint, HttpRequest, HttpResponse, decode::SseEvent};
use infermux_openai_compat::{ChatStreamState, OpenAiCompat};

pub use metrics::TgiMetrics;
pub use wire::{
    Details, GenerateStreamState, Generation, PromptFormat, StreamToken, TgiInfo, Token,
};

/// The provider name errors and counters carry.
pub const NAME: &str = "hf-tgi";
/// The environment variable holding a TGI server's URL.
pub const BASE_URL_ENV: &str = "TGI_URL";
/// The default URL of a local TGI server.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8080";
/// The environment variables holding the Hugging Face token, in order of preference.
pub const API_KEY_ENVS: [&str; 2] = ["HF_TOKEN", "HF_API_KEY"];
/// The environment variable holding the key of a TGI server started with `--api-key`.
pub const SERVER_API_KEY_ENV: &str = "TGI_API_KEY";

/// The environment variables a client of the server at `base_url` reads its key from:
/// the Hugging Face token ([`API_KEY_ENVS`]) on Hugging Face's own hosts only, and
/// [`SERVER_API_KEY_ENV`] anywhere else, so an account token never goes to a server of
/// someone else's.
///
/// ```
/// use infermux_hf_tgi::api_key_envs_for;
/// assert_eq!(api_key_envs_for("http://127.0.0.1:8080"), ["TGI_API_KEY"]);
/// assert_eq!(
///     api_key_envs_for("https://router.huggingface.co/hf-inference"),
///     ["HF_TOKEN", "HF_API_KEY"]
/// );
/// ```
pub fn api_key_envs_for(base_url: &str) -> &'static [&'static str] {
    if infermux_core::is_hugging_face_url(base_url) {
        &API_KEY_ENVS
    } else {
        &[SERVER_API_KEY_ENV]
    }
}
/// The HF Inference API's base URL.
pub const INFERENCE_API_URL: &str = "https://router.huggingface.co/hf-inference";

/// A client of one TGI server (or of one model on the HF Inference API).
#[derive(Debug, Clone)]
pub struct HfTgi {
    http: HttpEndpoint,
    openai: OpenAiCompat,
    /// The model of the Inference API mode.
    model: Option<String>,
    prompt_format: Option<PromptFormat>,
    wait_for_model: bool,
}

impl HfTgi {
    /// A client of the TGI server at `config.base_url` (its root; a trailing `/v1` is removed).
    pub fn new(config: EndpointConfig) -> Result<Self> {
        let root = infermux_core::server_root(&config.base_url, &["/v1"]);
        Self::at(config, root, None)
    }

    fn at(mut config: EndpointConfig, base: String, model: Option<String>) -> Result<Self> {
        config.base_url = base;
        // one connection pool for the native and the messages (`/v1`) routes
        let http = HttpEndpoint::new(NAME, config, Auth::Bearer)?;
        let v1 = http.rebased(format!("{}/v1", http.config().base_url))?;
        let openai = OpenAiCompat::with_http(v1).with_missing_done_tolerated(true);
        Ok(HfTgi {
            http,
            openai,
            model,
            prompt_format: None,
            wait_for_model: false,
        })
    }

    /// A client from `TGI_URL` (default [`DEFAULT_BASE_URL`]) and the key variables
    /// [`api_key_envs_for`] names for it: `HF_TOKEN` / `HF_API_KEY` on Hugging Face's hosts,
    /// `TGI_API_KEY` anywhere else.
    pub fn from_env() -> Result<Self> {
        let config = EndpointConfig::from_env(NAME, BASE_URL_ENV, Some(DEFAULT_BASE_URL))?;
        let envs = api_key_envs_for(&config.base_url);
        Self::new(config.with_optional_api_key_from_env(envs))
    }

    /// A client of `model` on the HF Inference API at `config.base_url` (normally
    /// [`INFERENCE_API_URL`]): generation at `{base}/models/{model}`, chat at
    /// `{base}/models/{model}/v1/chat/completions`.
    pub fn inference_api(config: EndpointConfig, model: impl Into<String>) -> Result<Self> {
        let model = model.into();
        let base = format!(
            "{}/models/{}",
            config.base_url.trim_end_matches('/'),
            model.trim_matches('/')
        );
        Self::at(config, base, Some(model))
    }

    /// [`HfTgi::inference_api`] on [`INFERENCE_API_URL`] with `HF_TOKEN` / `HF_API_KEY`.
    pub fn inference_api_from_env(model: impl Into<String>) -> Result<Self> {
        let cfg = EndpointConfig::new(NAME, INFERENCE_API_URL)?
            .with_optional_api_key_from_env(&API_KEY_ENVS);
        Self::inference_api(cfg, model)
    }

    /// Renders chat as a prompt in `format` and sends it to `/generate`, for servers without
    /// the messages API.
    pub fn with_prompt_format(mut self, format: PromptFormat) -> Self {
        self.prompt_format = Some(format);
        self
    }

    /// Sends `x-wait-for-model: true` (Inference API): the server holds the request while the
    /// model loads instead of answering 503.
    pub fn with_wait_for_model(mut self, yes: bool) -> Self {
        self.wait_for_model = yes;
        self
    }

    /// The OpenAI-compatible client of this server's `/v1` routes.
    pub fn openai(&self) -> &OpenAiCompat {
        &self.openai
    }

    fn in_ctx(&self, ctx: &RequestContext) -> impl Fn(Error) -> Error + '_ {
        self.http.error_context(ctx)
    }

    async fn send(&self, req: HttpRequest<'_>, ctx: &RequestContext) -> Result<HttpResponse> {
        let req = if self.wait_for_model {
            req.header("x-wait-for-model", "true")
        } else {
            req
        };
        req.send_mapped(ctx, wire::error_from_response).await
    }

    async fn post_generate(
        &self,
        req: &CompletionRequest,
        stream: bool,
        ctx: &RequestContext,
    ) -> Result<HttpResponse> {
        let (path, body) = match (&self.model, stream) {
            (Some(_), s) => ("", wire::GenerateBody::new(req, Some(s))),
            (None, false) => ("/generate", wire::GenerateBody::new(req, None)),
            (None, true) => ("/generate_stream", wire::GenerateBody::new(req, None)),
        };
        self.send(self.http.post(path).json(&body), ctx).await
    }

    /// `/generate` (or the Inference API's generation): the typed answer with its details.
    /// The prompt's length in tokens, which a plain answer's details leave out (they list the
    /// prompt's tokens only with `decoder_input_details`; an encoder-decoder model's list is
    /// its decoder's `<pad>`), is TGI's `x-prompt-tokens` header when it sent one.
    pub async fn generate(
        &self,
        req: &CompletionRequest,
        ctx: &RequestContext,
    ) -> Result<Generation> {
        let resp = self.post_generate(req, false, ctx).await?;
        let prompt_tokens = resp
            .headers()
            .get("x-prompt-tokens")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = resp.bytes().await?;
        let mut g = wire::parse_generation(&body).map_err(self.in_ctx(ctx))?;
        if let (Some(d), Some(n)) = (g.details.as_mut(), prompt_tokens) {
            d.input_length = Some(n);
        }
        Ok(g)
    }

    /// `/generate_stream`, as stream events (resolved at the first event).
    pub async fn generate_stream(
        &self,
        req: &CompletionRequest,
        ctx: &RequestContext,
    ) -> Result<EventStream> {
        let resp = self.post_generate(req, true, ctx).await?;
        let (id, ep) = (ctx.request_id(), self.http.id().clone());
        first_event(infermux_http::event_stream(
            resp.sse(),
            GenerateStreamState::stopped_by(&req.stop),
            move |e| e.in_context(id, NAME, &ep),
        ))
        .await
    }

    /// `GET /health`: `Ok` when the server answers 2xx.
    pub async fn health(&self, ctx: &RequestContext) -> Result<()> {
        self.send(self.http.get("/health"), ctx)
            .await?
            .bytes()
            .await?;
        Ok(())
    }

    /// `GET /info`.
    pub async fn info(&self, ctx: &RequestContext) -> Result<TgiInfo> {
        let body = self
            .send(self.http.get("/info"), ctx)
            .await?
            .bytes()
            .await?;
        wire::parse_info(&body).map_err(self.in_ctx(ctx))
    }

    /// `GET /metrics`, a few gauges and counters.
    pub async fn metrics(&self, ctx: &RequestContext) -> Result<TgiMetrics> {
        let body = self
            .send(self.http.get("/metrics"), ctx)
            .await?
            .bytes()
            .await?;
        Ok(TgiMetrics::parse(&String::from_utf8_lossy(&body)))
    }

    /// `req` rendered as a prompt; an image, tools, a tool call or a tool result, which a
    /// prompt cannot carry, are refused (`Unsupported`) rather than dropped (a conversation
    /// that fell back here from a tool-using provider rendered its calls as empty turns and
    /// its results as text without a call).
    fn chat_as_completion(
        &self,
        req: &ChatRequest,
        format: PromptFormat,
        ctx: &RequestContext,
    ) -> Result<CompletionRequest> {
        if req.messages.iter().any(|m| {
            m.content
                .iter()
                .any(|p| matches!(p, infermux_core::ContentPart::Image { .. }))
        }) {
            return Err(self.in_ctx(ctx)(Error::new(
                ErrorKind::Unsupported,
                "a chat rendered as a prompt (`with_prompt_format`) cannot carry images",
            )));
        }
        if !req.tools.is_empty()
            || req
                .messages
                .iter()
                .any(|m| !m.tool_calls.is_empty() || m.role == infermux_core::Role::Tool)
        {
            return Err(self.in_ctx(ctx)(Error::new(
                ErrorKind::Unsupported,
                "a chat rendered as a prompt (`with_prompt_format`) cannot carry tools, tool calls or tool results",
            )));
        }
        let (prompt, stop) = format.render(req);
        let mut c = CompletionRequest::new(req.model.clone(), prompt);
        c.max_tokens = req.max_tokens;
        c.temperature = req.temperature;
        c.seed = req.seed;
        c.stop = req.stop.clone();
        // the template's end of turn too, where TGI takes one more (four by default): past
        // that the caller's stops go as they are, and the turn ends at the model's own end
        if c.stop.len() < MAX_STOP_SEQUENCES {
            c.stop.push(stop.to_owned());
        }
        // what `/generate` takes of the rest (it was all dropped): `top_p`, the response
        // format as a grammar, and `extra` (into `parameters`)
        c.extra = req.extra.clone();
        // TGI takes a top_p strictly between 0 and 1 (1.0, many callers' default, is a 422
        // and changes nothing): only such a one goes, written as the caller wrote it
        if let Some(p) = req.top_p.filter(|p| *p > 0.0 && *p < 1.0)
            && let Ok(n) = p.to_string().parse::<serde_json::Number>()
        {
            c.extra
                .entry("top_p")
                .or_insert(serde_json::Value::Number(n));
        }
        if let Some(g) = req.response_format.as_ref().and_then(grammar) {
            c.extra.entry("grammar").or_insert(g);
        }
        Ok(c)
    }

    async fn chat_messages(&self, req: &ChatRequest, ctx: &RequestContext) -> Result<Response> {
        let body = messages_body(req, false);
        let resp = self
            .send(self.http.post("/v1/chat/completions").json(&body), ctx)
            .await?;
        let bytes = resp.bytes().await?;
        infermux_openai_compat::wire::parse_chat(&bytes)
            .map(|mut c| {
                c.finish_reason =
                    messages_finish(c.finish_reason.take(), !c.message.tool_calls.is_empty());
                Response::Chat(c)
            })
            .map_err(self.in_ctx(ctx))
    }

    async fn chat_messages_stream(
        &self,
        req: &ChatRequest,
        ctx: &RequestContext,
    ) -> Result<EventStream> {
        let body = messages_body(req, true);
        let resp = self
            .send(self.http.post("/v1/chat/completions").json(&body), ctx)
            .await?;
        let (id, ep) = (ctx.request_id(), self.http.id().clone());
        // TGI 1.x ends a chat stream after the finish reason without `[DONE]`
        let events = first_event(infermux_openai_compat::chat_event_stream_with(
            resp,
            ChatStreamState::ending_at_finish_reason(),
            move |e| wire::messages_stream_error(e).in_context(id, NAME, &ep),
        ))
        .await?;
        let mut calls = false;
        Ok(Box::pin(futures_util::StreamExt::map(events, move |ev| {
            ev.map(|mut ev| {
                match &mut ev {
                    StreamEvent::ToolCallDelta { .. } => calls = true,
                    StreamEvent::Done { finish_reason } => {
                        *finish_reason = messages_finish(finish_reason.take(), calls);
                    }
                    _ => {}
                }
                ev
            })
        })))
    }

    fn model_name<'a>(&'a self, requested: &'a str) -> &'a str {
        self.model.as_deref().unwrap_or(requested)
    }
}

impl EventDecoder<SseEvent> for GenerateStreamState {
    fn on_item(&mut self, ev: SseEvent) -> Result<Vec<StreamEvent>> {
        if ev.data.trim().is_empty() {
            return Ok(Vec::new());
        }
        self.on_data(&ev.data)
    }
    fn on_end(&mut self) -> Result<Vec<StreamEvent>> {
        GenerateStreamState::on_end(self).map(|()| Vec::new())
    }
    fn is_done(&self) -> bool {
        GenerateStreamState::is_done(self)
    }
    fn partial_text(&self) -> &str {
        self.text()
    }
}

/// Turns a `/generate_stream` response into an [`EventStream`] (not yet awaited to its first
/// event; see [`infermux_core::first_event`]).
pub fn generate_event_stream(
    resp: HttpResponse,
    with_context: impl Fn(Error) -> Error + Send + 'static,
) -> EventStream {
    infermux_http::event_stream(resp.sse(), GenerateStreamState::new(), with_context)
}

#[async_trait]
impl Provider for HfTgi {
    fn name(&self) -> &'static str {
        NAME
    }

    fn endpoint(&self) -> &EndpointId {
        self.http.id()
    }

    fn capabilities(&self) -> Capabilities {
        let caps = Capabilities::new()
            .with(Operation::Chat)
            .with(Operation::ChatStream)
            .with(Operation::Completion)
            .with(Operation::CompletionStream)
            .with(Operation::Models);
        if self.prompt_format.is_some() {
            caps
        } else {
            caps.with(Operation::Tools).with(Operation::Vision)
        }
    }

    async fn call(&self, request: &Request, ctx: &RequestContext) -> Result<Response> {
        match request {
            Request::Chat(req) => match self.prompt_format {
                None => self.chat_messages(req, ctx).await,
                Some(format) => {
                    let c = self.chat_as_completion(req, format, ctx)?;
                    let g = self.generate(&c, ctx).await?;
                    let done =
                        wire::to_completion_stopped_by(self.model_name(&req.model), g, &c.stop);
                    let mut resp = ChatResponse::new(done.model, Message::assistant(done.text));
                    resp.finish_reason = done.finish_reason;
                    resp.usage = done.usage;
                    Ok(Response::Chat(resp))
                }
            },
            Request::Completion(req) => {
                let g = self.generate(req, ctx).await?;
                Ok(Response::Completion(wire::to_completion_stopped_by(
                    self.model_name(&req.model),
                    g,
                    &req.stop,
                )))
            }
            Request::Models => match &self.model {
                // TGI serves `/v1/models` (its one model); the Inference API mode knows it.
                None => self.openai.call(request, ctx).await,
                Some(m) => {
                    let mut info = ModelInfo::new(m.clone());
                    info.owned_by = Some("tgi".into());
                    Ok(Response::Models(ModelList::new(vec![info])))
                }
            },
            other => Err(self.in_ctx(ctx)(Error::new(
                ErrorKind::Unsupported,
                format!("hf-tgi does not offer {:?}", other.operation()),
            ))),
        }
    }

    async fn stream(&self, request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        match request {
            Request::Chat(req) => match self.prompt_format {
                None => self.chat_messages_stream(req, ctx).await,
                Some(format) => {
                    self.generate_stream(&self.chat_as_completion(req, format, ctx)?, ctx)
                        .await
                }
            },
            Request::Completion(req) => self.generate_stream(req, ctx).await,
            _ => Err(self.in_ctx(ctx)(Error::new(
                ErrorKind::Unsupported,
                "hf-tgi streams chat and completions only",
            ))),
        }
    }
}

/// The finish reason of a Messages API answer: TGI writes its own (`eos_token`,
/// `stop_sequence`) there too, a stop — or, with tool calls, `ToolCalls` — not an unknown
/// reason (which the cache does not store, and a caller checking for tool calls misses).
fn messages_finish(
    reason: Option<infermux_core::FinishReason>,
    tool_calls: bool,
) -> Option<infermux_core::FinishReason> {
    use infermux_core::FinishReason;
    match reason {
        Some(FinishReason::Other(r)) => Some(match wire::finish_reason(&r) {
            FinishReason::Stop if tool_calls => FinishReason::ToolCalls,
            other => other,
        }),
        // TGI 3.x says `stop` with tool calls
        Some(FinishReason::Stop) if tool_calls => Some(FinishReason::ToolCalls),
        other => other,
    }
}

/// The Messages API body of `req`: OpenAI's chat body, a negative seed folded into TGI's u64,
/// and its `response_format` in TGI's grammar shape (`{"type": "json", "value": schema}`; TGI refuses OpenAI's `json_schema`,
/// `json_object` and `text` with a 422). A `response_format` in `extra` is sent as it is.
pub fn messages_body(req: &ChatRequest, stream: bool) -> serde_json::Value {
    let mut body = infermux_openai_compat::wire::chat_body(req, stream);
    // TGI's message is either content or tool calls (its `MessageBody`, an untagged `oneOf`
    // read content first): an assistant turn with both (another provider's "Let me check."
    // before its call) was read as text and its calls lost, leaving the results after no
    // call. The calls are kept, the words before them left out (two assistant turns in a row
    // would break the chat templates that want roles to alternate).
    if let Some(messages) = body.get_mut("messages").and_then(|m| m.as_array_mut()) {
        for m in messages {
            if let Some(o) = m.as_object_mut()
                && o.get("tool_calls").is_some_and(|c| !c.is_null())
            {
                o.remove("content");
            }
        }
    }
    // TGI's seed is a u64: a negative one (OpenAI takes any integer) was a 422 every time; it
    // is folded into range, the same seed always the same value
    if let (Some(seed), Some(o)) = (req.seed.filter(|s| *s < 0), body.as_object_mut())
        && !req.extra.contains_key("seed")
    {
        o.insert("seed".into(), serde_json::json!(seed as u64));
    }
    if req.extra.contains_key("response_format") {
        return body;
    }
    if let (Some(format), Some(o)) = (&req.response_format, body.as_object_mut()) {
        match grammar(format) {
            Some(g) => o.insert("response_format".into(), g),
            None => o.remove("response_format"),
        };
    }
    body
}

/// A response format as TGI's grammar (`{"type": "json", "value": schema}`), which the
/// Messages API takes as `response_format` and `/generate` as `parameters.grammar`; `None`
/// for plain text.
fn grammar(format: &infermux_core::ResponseFormat) -> Option<serde_json::Value> {
    match format {
        infermux_core::ResponseFormat::JsonSchema { schema, .. } => {
            Some(serde_json::json!({"type": "json", "value": schema}))
        }
        infermux_core::ResponseFormat::JsonObject => {
            Some(serde_json::json!({"type": "json", "value": {"type": "object"}}))
        }
        _ => None,
    }
}

/// The most stop sequences TGI takes by default (`--max-stop-sequences 4`; more is a 422).
const MAX_STOP_SEQUENCES: usize = 4;
