//! infermux provider for the LLVM inference REST protocol, a small JSON model-serving protocol
//! (no public server of it exists; the crate README is the protocol's reference). Chat and
//! completions go through `POST /models/{id}/infer` (chat messages rendered into one prompt,
//! format documented on [`render_prompt`]), embeddings through one
//! `POST /models/{id}/batch_infer` for all of a request's inputs, and the typed extras
//! [`Llvm::status`], [`Llvm::model`], [`Llvm::statistics`] and [`Llvm::batch_infer`]. Bearer
//! key. No streaming: the protocol has none.
//!
//! Called directly, as below, a provider sends each request once, with no retry. Through the
//! [`infermux`](https://docs.rs/infermux) facade (feature `llvm`), wrap it in `infermux::Client`
//! to run its `Provider` operations through the resilience stack: admission queue, retries
//! with backoff, circuit breaker and call deadline.
//!
//! ```no_run
//! # async fn demo() -> infermux_core::Result<()> {
//! use infermux_core::{EndpointConfig, RequestContext};
//! use infermux_llvm::Llvm;
//!
//! let llvm = Llvm::new(EndpointConfig::new("llvm", "http://127.0.0.1:9000")?.with_api_key_from_env("LLVM_API_KEY")?)?;
//! let ctx = RequestContext::new();
//! println!("{:?}", llvm.status(&ctx).await?);
//! let out = llvm.batch_infer("llvm-embed-1", &["hello".into(), "world".into()], &ctx).await?;
//! println!("{} outputs", out.outputs.len());
//! # Ok(()) }
//! ```
//!
//! # Crate features
//! This crate has no optional features.

use async_trait::async_trait;
use infermux_core::{
    Capabilities, ChatResponse, CompletionResponse, ContentPart, EmbeddingResponse, EndpointConfig,
    EndpointId, Error, ErrorKind, EventStream, FinishReason, Message, ModelInfo, ModelList,
    Operation, Provider, Request, RequestContext, Response, Result, Role, Usage,
};
use infermux_http::{Auth, HttpEndpoint};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The provider name errors and counters carry.
pub const NAME: &str = "llvm";
/// The environment variable holding the server's URL.
pub const BASE_URL_ENV: &str = "LLVM_API_URL";
/// The environment variable holding the (optional) key.
pub const API_KEY_ENV: &str = "LLVM_API_KEY";

/// `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Status {
    /// `ok` when serving.
    pub status: String,
    /// Server version.
    #[serde(default)]
    pub version: Option<String>,
    /// Models loaded.
    #[serde(default)]
    pub models_loaded: Option<u64>,
}

/// One model, from `GET /models` or `GET /models/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Model {
    /// Id used in paths.
    pub id: String,
    /// `text-generation` or `embedding`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// `ready`, `loading`, ...
    #[serde(default)]
    pub status: Option<String>,
    /// Version.
    #[serde(default)]
    pub version: Option<String>,
    /// Vector size of an embedding model.
    #[serde(default)]
    pub dimensions: Option<u64>,
}

/// `GET /models/{id}/statistics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Statistics {
    /// Model.
    pub model: String,
    /// Inference requests served.
    pub requests: u64,
    /// Failed ones.
    #[serde(default)]
    pub errors: u64,
    /// Mean latency.
    #[serde(default)]
    pub avg_latency_ms: Option<f64>,
}

/// The answer of `POST /models/{id}/batch_infer`: one output per input, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BatchOutput {
    /// Model.
    pub model: String,
    /// Outputs: strings for generation, arrays of numbers for embeddings.
    pub outputs: Vec<Value>,
    /// Tokens used.
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

/// Token usage on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WireUsage {
    /// Input tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
}

#[derive(Debug, Deserialize)]
struct InferOutput {
    #[serde(default)]
    model: Option<String>,
    output: Value,
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// Renders chat messages into the single prompt `infer` takes: one line per message,
/// `<role>: <text>`, then `assistant:` to cue the answer. Images are not supported.
///
/// ```
/// use infermux_core::Message;
/// let p = infermux_llvm::render_prompt(&[Message::system("Be brief."), Message::user("Hi")]).unwrap();
/// assert_eq!(p, "system: Be brief.\nuser: Hi\nassistant:");
/// ```
pub fn render_prompt(messages: &[Message]) -> Result<String> {
    let mut out = String::new();
    for m in messages {
        if m.content
            .iter()
            .any(|p| matches!(p, ContentPart::Image { .. }))
        {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "the LLVM protocol takes text only",
            ));
        }
        let role = match &m.role {
            Role::Developer => "system",
            other => other.as_str(),
        };
        out.push_str(role);
        out.push_str(": ");
        out.push_str(&m.text());
        out.push('\n');
    }
    out.push_str("assistant:");
    Ok(out)
}

fn parameters(
    max_tokens: Option<u32>,
    temperature: Option<f32>,
    stop: &[String],
    extra: &Map<String, Value>,
) -> Value {
    let mut p = Map::new();
    if let Some(n) = max_tokens {
        p.insert("max_tokens".into(), json!(n));
    }
    if let Some(t) = temperature {
        p.insert("temperature".into(), json!(t));
    }
    if !stop.is_empty() {
        p.insert("stop".into(), json!(stop));
    }
    for (k, v) in extra {
        p.insert(k.clone(), v.clone());
    }
    Value::Object(p)
}

fn segment(id: &str) -> Result<&str> {
    if id.is_empty() || id.contains(['/', '?', '#']) || id.contains("..") {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            "a model id may not contain '/', '?', '#' or '..'",
        ));
    }
    Ok(id)
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("{what} is not the expected JSON: {e}"),
        )
    })
}

fn vector(v: &Value) -> Result<Vec<f32>> {
    v.as_array()
        .and_then(|xs| xs.iter().map(|x| x.as_f64().map(|f| f as f32)).collect())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Decode,
                "an embedding output is not an array of numbers",
            )
        })
}

/// A client of one LLVM inference server.
#[derive(Debug, Clone)]
pub struct Llvm {
    http: HttpEndpoint,
}

impl Llvm {
    /// A client for `config` (base URL without a version prefix); the key goes as Bearer.
    pub fn new(config: EndpointConfig) -> Result<Self> {
        Ok(Llvm {
            http: HttpEndpoint::new(NAME, config, Auth::Bearer)?,
        })
    }

    /// From `LLVM_API_URL` ([`BASE_URL_ENV`]) and, when set, `LLVM_API_KEY` ([`API_KEY_ENV`]).
    pub fn from_env() -> Result<Self> {
        Self::new(
            EndpointConfig::from_env(NAME, BASE_URL_ENV, None)?
                .with_optional_api_key_from_env(&[API_KEY_ENV]),
        )
    }

    fn ctx_err(&self, ctx: &RequestContext) -> impl Fn(Error) -> Error + '_ {
        self.http.error_context(ctx)
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
        ctx: &RequestContext,
    ) -> Result<T> {
        let body = self.http.get(path).send(ctx).await?.bytes().await?;
        decode(&body, what).map_err(self.ctx_err(ctx))
    }

    /// `GET /status`.
    pub async fn status(&self, ctx: &RequestContext) -> Result<Status> {
        self.get("/status", "status", ctx).await
    }

    /// `GET /models/{id}`.
    pub async fn model(&self, id: &str, ctx: &RequestContext) -> Result<Model> {
        let id = segment(id).map_err(self.ctx_err(ctx))?;
        self.get(&format!("/models/{id}"), "model", ctx).await
    }

    /// `GET /models/{id}/statistics`.
    pub async fn statistics(&self, id: &str, ctx: &RequestContext) -> Result<Statistics> {
        let id = segment(id).map_err(self.ctx_err(ctx))?;
        self.get(&format!("/models/{id}/statistics"), "statistics", ctx)
            .await
    }

    /// `POST /models/{id}/infer`.
    async fn infer(
        &self,
        id: &str,
        input: Value,
        params: Value,
        ctx: &RequestContext,
    ) -> Result<InferOutput> {
        let id = segment(id).map_err(self.ctx_err(ctx))?;
        let body = self
            .http
            .post(&format!("/models/{id}/infer"))
            .json(&json!({"input": input, "parameters": params}))
            .send(ctx)
            .await?
            .bytes()
            .await?;
        decode(&body, "infer output").map_err(self.ctx_err(ctx))
    }

    /// `POST /models/{id}/batch_infer`: one output per input, in order.
    pub async fn batch_infer(
        &self,
        id: &str,
        inputs: &[String],
        ctx: &RequestContext,
    ) -> Result<BatchOutput> {
        let id = segment(id).map_err(self.ctx_err(ctx))?;
        let body = self
            .http
            .post(&format!("/models/{id}/batch_infer"))
            .json(&json!({"inputs": inputs, "parameters": {}}))
            .send(ctx)
            .await?
            .bytes()
            .await?;
        let out: BatchOutput = decode(&body, "batch output").map_err(self.ctx_err(ctx))?;
        if out.outputs.len() != inputs.len() {
            return Err(self.ctx_err(ctx)(Error::new(
                ErrorKind::Decode,
                format!("{} outputs for {} inputs", out.outputs.len(), inputs.len()),
            )));
        }
        Ok(out)
    }
}

fn text_of(out: &InferOutput) -> Result<String> {
    out.output
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::new(ErrorKind::Decode, "a generation output is not a string"))
}

fn usage(u: Option<WireUsage>) -> Option<Usage> {
    u.map(|u| Usage::new(u.input_tokens, u.output_tokens))
}

#[async_trait]
impl Provider for Llvm {
    fn name(&self) -> &'static str {
        NAME
    }
    fn endpoint(&self) -> &EndpointId {
        self.http.id()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .with(Operation::Chat)
            .with(Operation::Completion)
            .with(Operation::Embeddings)
            .with(Operation::Models)
    }

    async fn call(&self, request: &Request, ctx: &RequestContext) -> Result<Response> {
        let ctx_err = self.ctx_err(ctx);
        match request {
            Request::Chat(r) => {
                let prompt = render_prompt(&r.messages).map_err(&ctx_err)?;
                let params = parameters(r.max_tokens, r.temperature, &r.stop, &r.extra);
                let out = self.infer(&r.model, json!(prompt), params, ctx).await?;
                let mut resp = ChatResponse::new(
                    out.model.clone().unwrap_or_else(|| r.model.clone()),
                    Message::assistant(text_of(&out).map_err(&ctx_err)?),
                );
                resp.finish_reason = Some(FinishReason::Stop);
                resp.usage = usage(out.usage);
                Ok(Response::Chat(resp))
            }
            Request::Completion(r) => {
                let params = parameters(r.max_tokens, r.temperature, &r.stop, &r.extra);
                let out = self.infer(&r.model, json!(r.prompt), params, ctx).await?;
                let mut resp = CompletionResponse::new(
                    out.model.clone().unwrap_or_else(|| r.model.clone()),
                    text_of(&out).map_err(&ctx_err)?,
                );
                resp.finish_reason = Some(FinishReason::Stop);
                resp.usage = usage(out.usage);
                Ok(Response::Completion(resp))
            }
            Request::Embeddings(r) => {
                if r.inputs.is_empty() {
                    return Err(ctx_err(Error::new(
                        ErrorKind::InvalidRequest,
                        "no input to embed",
                    )));
                }
                let out = self.batch_infer(&r.model, &r.inputs, ctx).await?;
                let vectors = out
                    .outputs
                    .iter()
                    .map(vector)
                    .collect::<Result<Vec<_>>>()
                    .map_err(&ctx_err)?;
                let mut resp = EmbeddingResponse::new(out.model, vectors);
                resp.usage = usage(out.usage);
                Ok(Response::Embeddings(resp))
            }
            Request::Models => {
                #[derive(Deserialize)]
                struct List {
                    models: Vec<Model>,
                }
                let list: List = self.get("/models", "model list", ctx).await?;
                Ok(Response::Models(ModelList::new(
                    list.models
                        .into_iter()
                        .map(|m| {
                            let mut info = ModelInfo::new(m.id);
                            info.owned_by = m.kind;
                            info
                        })
                        .collect(),
                )))
            }
            other => Err(ctx_err(Error::new(
                ErrorKind::Unsupported,
                format!("the LLVM protocol does not offer {:?}", other.operation()),
            ))),
        }
    }

    async fn stream(&self, _request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        Err(self.ctx_err(ctx)(Error::new(
            ErrorKind::Unsupported,
            "the LLVM inference protocol has no streaming",
        )))
    }
}
