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
use std::borrow::Cow;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

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

/// What a chat rendered as a prompt cannot carry, refused (`Unsupported`) rather than dropped:
/// tools, tool calls and tool results (a conversation that fell back here from a tool-using
/// provider rendered its calls as empty turns), and a JSON response format (the protocol has
/// no grammar: the caller would get free text).
fn refuse_what_a_prompt_drops(r: &infermux_core::ChatRequest) -> Result<()> {
    let tools = !r.tools.is_empty()
        || r.messages
            .iter()
            .any(|m| !m.tool_calls.is_empty() || m.role == Role::Tool);
    if tools {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "the LLVM protocol takes a prompt: no tools, tool calls or tool results",
        ));
    }
    if matches!(
        r.response_format,
        Some(
            infermux_core::ResponseFormat::JsonObject
                | infermux_core::ResponseFormat::JsonSchema { .. }
        )
    ) {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "the LLVM protocol has no JSON response format",
        ));
    }
    Ok(())
}

/// The `parameters` object of an `infer` body, serialised from the borrowed request: the
/// known fields merged with `extra` in ascending key order (a key `extra` repeats takes
/// `extra`'s value), the bytes the `Value` map built before printed.
struct Parameters<'a> {
    dimensions: Option<u32>,
    max_tokens: Option<u32>,
    seed: Option<i64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    stop: &'a [String],
    extra: &'a Map<String, Value>,
}

impl<'a> Parameters<'a> {
    fn new(
        max_tokens: Option<u32>,
        temperature: Option<f32>,
        stop: &'a [String],
        extra: &'a Map<String, Value>,
    ) -> Self {
        Parameters {
            dimensions: None,
            max_tokens,
            seed: None,
            temperature,
            top_p: None,
            stop,
            extra,
        }
    }
    /// With `seed` and `top_p`, under those names (the protocol passes on what it does not
    /// list).
    fn sampling(mut self, seed: Option<i64>, top_p: Option<f32>) -> Self {
        self.seed = seed;
        self.top_p = top_p;
        self
    }
    /// The parameters of an embeddings batch: `dimensions` and `extra`.
    fn embeddings(dimensions: Option<u32>, extra: &'a Map<String, Value>) -> Self {
        Parameters {
            dimensions,
            ..Parameters::new(None, None, &[], extra)
        }
    }
}

/// One known field of [`Parameters`].
enum Param<'a> {
    Int(u32),
    Seed(i64),
    /// Widened to `f64`, as `json!` stored it.
    Float(f64),
    Strs(&'a [String]),
}

impl Serialize for Param<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Param::Int(n) => n.serialize(s),
            Param::Seed(n) => n.serialize(s),
            Param::Float(f) => f.serialize(s),
            Param::Strs(v) => v.serialize(s),
        }
    }
}

impl Serialize for Parameters<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        // in ascending key order
        let known = [
            ("dimensions", self.dimensions.map(Param::Int)),
            ("max_tokens", self.max_tokens.map(Param::Int)),
            ("seed", self.seed.map(Param::Seed)),
            (
                "stop",
                (!self.stop.is_empty()).then_some(Param::Strs(self.stop)),
            ),
            (
                "temperature",
                self.temperature.map(|t| Param::Float(f64::from(t))),
            ),
            ("top_p", self.top_p.map(|t| Param::Float(f64::from(t)))),
        ];
        let mut m = s.serialize_map(None)?;
        let mut extra = self.extra.iter().peekable();
        for (key, value) in known {
            let Some(value) = value else { continue };
            while let Some((k, v)) = extra.next_if(|(k, _)| k.as_str() < key) {
                m.serialize_entry(k, v)?;
            }
            if !self.extra.contains_key(key) {
                m.serialize_entry(key, &value)?;
            }
        }
        for (k, v) in extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// `POST /models/{id}/infer`'s body.
#[derive(Serialize)]
struct InferBody<'a> {
    input: &'a str,
    parameters: Parameters<'a>,
}

/// `POST /models/{id}/batch_infer`'s body.
#[derive(Serialize)]
struct BatchBody<'a, P> {
    inputs: &'a [String],
    parameters: P,
}

/// `{}`.
struct Empty;

impl Serialize for Empty {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_map(Some(0))?.end()
    }
}

/// An `infer` answer whose output is text, read without a `Value` (anything else is read as
/// an [`InferOutput`], as before).
#[derive(Deserialize)]
struct TextOutput<'a> {
    #[serde(default)]
    model: Option<String>,
    #[serde(borrow)]
    output: Cow<'a, str>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// A `batch_infer` answer whose outputs are all vectors, read without a `Value` (anything
/// else is read as a [`BatchOutput`], as before).
#[derive(Deserialize)]
struct VectorOutput {
    model: String,
    outputs: Vec<Vec<Number>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// A vector element: read as `f64` then narrowed, as `Value::as_f64` then `as f32` did (a
/// direct `f32` read rounds large integers differently).
struct Number(f32);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        f64::deserialize(d).map(|f| Number(f as f32))
    }
}

fn segment(id: &str) -> Result<&str> {
    infermux_http::PathName::SEGMENT
        .with_colon()
        .check("model id", id)
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T> {
    infermux_http::json::from_body(body).map_err(|e| {
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

    /// `POST /models/{id}/infer`: the answer's bytes.
    async fn infer(
        &self,
        id: &str,
        body: &InferBody<'_>,
        ctx: &RequestContext,
    ) -> Result<impl std::ops::Deref<Target = [u8]> + use<>> {
        let id = segment(id).map_err(self.ctx_err(ctx))?;
        self.http
            .post(&format!("/models/{id}/infer"))
            .json(body)
            .send(ctx)
            .await?
            .bytes()
            .await
    }

    /// `POST /models/{id}/infer` for text: the model, the text and the usage.
    async fn infer_text(
        &self,
        id: &str,
        body: &InferBody<'_>,
        ctx: &RequestContext,
    ) -> Result<(Option<String>, String, Option<WireUsage>)> {
        let bytes = self.infer(id, body, ctx).await?;
        if let Ok(out) = infermux_http::json::from_body::<TextOutput<'_>>(&bytes) {
            return Ok((out.model, out.output.into_owned(), out.usage));
        }
        let out: InferOutput = decode(&bytes, "infer output").map_err(self.ctx_err(ctx))?;
        let text = text_of(&out).map_err(self.ctx_err(ctx))?;
        Ok((out.model, text, out.usage))
    }

    /// `POST /models/{id}/batch_infer`: the answer's bytes.
    async fn batch_bytes<P: Serialize>(
        &self,
        id: &str,
        inputs: &[String],
        parameters: P,
        ctx: &RequestContext,
    ) -> Result<impl std::ops::Deref<Target = [u8]> + use<P>> {
        let id = segment(id).map_err(self.ctx_err(ctx))?;
        self.http
            .post(&format!("/models/{id}/batch_infer"))
            .json(&BatchBody { inputs, parameters })
            .send(ctx)
            .await?
            .bytes()
            .await
    }

    /// Checks a batch answer has one output per input.
    fn batch_output(
        &self,
        bytes: &[u8],
        inputs: usize,
        ctx: &RequestContext,
    ) -> Result<BatchOutput> {
        let out: BatchOutput = decode(bytes, "batch output").map_err(self.ctx_err(ctx))?;
        if out.outputs.len() != inputs {
            return Err(self.ctx_err(ctx)(Error::new(
                ErrorKind::Decode,
                format!("{} outputs for {} inputs", out.outputs.len(), inputs),
            )));
        }
        Ok(out)
    }

    /// `POST /models/{id}/batch_infer`: one output per input, in order.
    pub async fn batch_infer(
        &self,
        id: &str,
        inputs: &[String],
        ctx: &RequestContext,
    ) -> Result<BatchOutput> {
        let bytes = self.batch_bytes(id, inputs, Empty, ctx).await?;
        self.batch_output(&bytes, inputs.len(), ctx)
    }

    /// `POST /models/{id}/batch_infer` for embeddings: the model, one vector per input and the
    /// usage.
    async fn embed(
        &self,
        r: &infermux_core::EmbeddingRequest,
        ctx: &RequestContext,
    ) -> Result<(String, Vec<Vec<f32>>, Option<WireUsage>)> {
        let (id, inputs) = (&r.model, &r.inputs);
        let parameters = Parameters::embeddings(r.dimensions, &r.extra);
        let bytes = self.batch_bytes(id, inputs, parameters, ctx).await?;
        if let Ok(out) = infermux_http::json::from_body::<VectorOutput>(&bytes)
            && out.outputs.len() == inputs.len()
        {
            let vectors = out
                .outputs
                .into_iter()
                .map(|v| v.into_iter().map(|Number(x)| x).collect())
                .collect();
            return Ok((out.model, vectors, out.usage));
        }
        let out = self.batch_output(&bytes, inputs.len(), ctx)?;
        let vectors = out
            .outputs
            .iter()
            .map(vector)
            .collect::<Result<Vec<_>>>()
            .map_err(self.ctx_err(ctx))?;
        Ok((out.model, vectors, out.usage))
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
                refuse_what_a_prompt_drops(r).map_err(&ctx_err)?;
                let prompt = render_prompt(&r.messages).map_err(&ctx_err)?;
                let body = InferBody {
                    input: &prompt,
                    parameters: Parameters::new(r.max_tokens, r.temperature, &r.stop, &r.extra)
                        .sampling(r.seed, r.top_p),
                };
                let (model, text, used) = self.infer_text(&r.model, &body, ctx).await?;
                let mut resp = ChatResponse::new(
                    model.unwrap_or_else(|| r.model.clone()),
                    Message::assistant(text),
                );
                resp.finish_reason = Some(FinishReason::Stop);
                resp.usage = usage(used);
                Ok(Response::Chat(resp))
            }
            Request::Completion(r) => {
                let body = InferBody {
                    input: &r.prompt,
                    parameters: Parameters::new(r.max_tokens, r.temperature, &r.stop, &r.extra)
                        .sampling(r.seed, None),
                };
                let (model, text, used) = self.infer_text(&r.model, &body, ctx).await?;
                let mut resp =
                    CompletionResponse::new(model.unwrap_or_else(|| r.model.clone()), text);
                resp.finish_reason = Some(FinishReason::Stop);
                resp.usage = usage(used);
                Ok(Response::Completion(resp))
            }
            Request::Embeddings(r) => {
                if r.inputs.is_empty() {
                    return Err(ctx_err(Error::new(
                        ErrorKind::InvalidRequest,
                        "no input to embed",
                    )));
                }
                let (model, vectors, used) = self.embed(r, ctx).await?;
                let mut resp = EmbeddingResponse::new(model, vectors);
                resp.usage = usage(used);
                Ok(Response::Embeddings(
                    resp.same_dimension().map_err(ctx_err)?,
                ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The `Value` body built before the body was serialised straight.
    fn old_body(
        input: &str,
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
        json!({"input": input, "parameters": Value::Object(p)})
    }

    #[test]
    fn seed_top_p_and_dimensions_are_sent_not_dropped() {
        let none = Map::new();
        let chat = serde_json::to_string(&InferBody {
            input: "hi",
            parameters: Parameters::new(Some(4), None, &[], &none).sampling(Some(3), Some(0.5)),
        })
        .unwrap();
        assert_eq!(
            chat,
            r#"{"input":"hi","parameters":{"max_tokens":4,"seed":3,"top_p":0.5}}"#
        );
        let extra = json!({"normalize": true}).as_object().unwrap().clone();
        let batch = serde_json::to_string(&BatchBody {
            inputs: &["a".to_owned()],
            parameters: Parameters::embeddings(Some(64), &extra),
        })
        .unwrap();
        assert_eq!(
            batch,
            r#"{"inputs":["a"],"parameters":{"dimensions":64,"normalize":true}}"#
        );
    }

    #[test]
    fn infer_body_bytes_are_the_bytes_the_value_printed_extra_winning() {
        let extras = [
            json!({}),
            json!({"a": 1, "n": [1], "z": null}),
            json!({"max_tokens": 9, "stop": "x", "temperature": "hot", "top_k": 4}),
            json!({"max_tokensx": 1, "s": {"deep": [1.5]}, "temperaturf": true}),
        ];
        let stops = [vec![], vec!["\n".to_owned(), "é\"".to_owned()]];
        for extra in &extras {
            let extra = extra.as_object().unwrap();
            for stop in &stops {
                for (max, temp) in [
                    (None, None),
                    (Some(7), Some(0.7_f32)),
                    (Some(0), Some(f32::NAN)),
                ] {
                    let fast = serde_json::to_vec(&InferBody {
                        input: "user: hi\nassistant:",
                        parameters: Parameters::new(max, temp, stop, extra),
                    })
                    .unwrap();
                    let old = old_body("user: hi\nassistant:", max, temp, stop, extra);
                    assert_eq!(
                        String::from_utf8(fast).unwrap(),
                        serde_json::to_string(&old).unwrap()
                    );
                }
            }
        }
        let batch = serde_json::to_string(&BatchBody {
            inputs: &["a".to_owned()],
            parameters: Empty,
        })
        .unwrap();
        assert_eq!(
            batch,
            json!({"inputs": ["a"], "parameters": {}}).to_string()
        );
    }

    #[test]
    fn vector_elements_round_as_value_as_f64_did() {
        // 2^53 + 2^29 + 1: `as f32` straight from the integer and through `f64` differ
        let n: u64 = (1 << 53) + (1 << 29) + 1;
        let text = format!(r#"{{"model":"m","outputs":[[{n}, 1, -2, 0.5]]}}"#);
        let fast: VectorOutput = serde_json::from_str(&text).unwrap();
        let old: BatchOutput = serde_json::from_str(&text).unwrap();
        let fast: Vec<f32> = fast.outputs[0].iter().map(|x| x.0).collect();
        assert_eq!(fast, vector(&old.outputs[0]).unwrap());
    }
}
