//! Ollama's native wire format (`/api/chat`, `/api/generate`, `/api/embed`, `/api/tags`,
//! `/api/show`, `/api/pull`): request bodies serialised from core types (typed, borrowed: no
//! `serde_json::Value` tree on the way), and answers (whole or one NDJSON line at a time) read
//! into typed structs and back into core types.
//!
//! **Stability.** This module follows the provider's wire format, not this crate's version:
//! its items may change in any release as the format does. Applications call the provider
//! through [`Provider`](infermux_core::Provider) and the crate's client; the module is public
//! for the workspace's other crates, the conformance runner, and code that needs the raw
//! shapes.

use infermux_core::{
    ChatRequest, ChatResponse, CompletionRequest, CompletionResponse, ContentPart,
    EmbeddingRequest, EmbeddingResponse, Error, ErrorKind, FinishReason, ImageSource, Message,
    ModelInfo, ModelList, ResponseFormat, Result, Role, StreamEvent, Tool, ToolCall, ToolChoice,
    Usage,
};
use std::fmt;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value, json};

fn decode_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Decode, format!("invalid Ollama {what}: {e}"))
}

// ---- request bodies ----------------------------------------------------------------------
//
// Objects are written with their keys in ascending order, as the `Value` objects (`BTreeMap`s)
// these bodies used to be built as printed them: the bytes on the wire are the same.

/// Writes an object's fields, given in ascending key order, merged with `extra` (a request's
/// free-form fields): `extra` wins a key both have (but `except`, which the caller merges
/// somewhere else), and its fields are written where their keys sort, so the object comes out
/// as a `serde_json::Map` of both printed it.
struct Fields<'e, M> {
    map: M,
    extra: &'e Map<String, Value>,
    pending: std::iter::Peekable<serde_json::map::Iter<'e>>,
    except: Option<&'static str>,
}

impl<'e, M: SerializeMap> Fields<'e, M> {
    fn new(map: M, extra: &'e Map<String, Value>, except: Option<&'static str>) -> Self {
        Fields {
            map,
            extra,
            pending: extra.iter().peekable(),
            except,
        }
    }

    /// Writes `key: value`, unless `extra` has `key`.
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), M::Error> {
        while let Some((k, v)) = self.pending.next_if(|(k, _)| k.as_str() < key) {
            if self.except != Some(k.as_str()) {
                self.map.serialize_entry(k, v)?;
            }
        }
        if self.except != Some(key) && self.extra.contains_key(key) {
            return Ok(());
        }
        self.map.serialize_entry(key, value)
    }

    /// Writes the rest of `extra` and closes the object.
    fn end(mut self) -> Result<M::Ok, M::Error> {
        for (k, v) in self.pending {
            if self.except != Some(k.as_str()) {
                self.map.serialize_entry(k, v)?;
            }
        }
        self.map.end()
    }
}

/// The `options` object: sampling parameters core requests carry, with an `extra.options`
/// object merged in (winning a key both have).
struct Options<'a> {
    temperature: Option<f32>,
    top_p: Option<f32>,
    max_tokens: Option<u32>,
    stop: &'a [String],
    seed: Option<i64>,
    extra: Option<&'a Map<String, Value>>,
}

impl<'a> Options<'a> {
    fn of(extra: &'a Map<String, Value>) -> Self {
        Options {
            temperature: None,
            top_p: None,
            max_tokens: None,
            stop: &[],
            seed: None,
            extra: match extra.get("options") {
                Some(Value::Object(o)) => Some(o),
                _ => None,
            },
        }
    }

    /// Whether the request sets any option itself (only then is `extra.options` merged in;
    /// otherwise it is sent as it is).
    fn is_set(&self) -> bool {
        self.temperature.is_some()
            || self.top_p.is_some()
            || self.max_tokens.is_some()
            || !self.stop.is_empty()
            || self.seed.is_some()
    }

    /// The key of `extra` the top level leaves out because it is merged here.
    fn merged_key(&self) -> Option<&'static str> {
        (self.is_set() && self.extra.is_some()).then_some("options")
    }
}

impl Serialize for Options<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let none = Map::new();
        let mut o = Fields::new(s.serialize_map(None)?, self.extra.unwrap_or(&none), None);
        if let Some(n) = self.max_tokens {
            o.field("num_predict", &n)?;
        }
        if let Some(seed) = self.seed {
            o.field("seed", &seed)?;
        }
        if !self.stop.is_empty() {
            o.field("stop", self.stop)?;
        }
        // an `f32` goes out as the `f64` it widens to, as a `Value` number printed it
        if let Some(t) = self.temperature {
            o.field("temperature", &f64::from(t))?;
        }
        if let Some(p) = self.top_p {
            o.field("top_p", &f64::from(p))?;
        }
        o.end()
    }
}

/// The concatenated text (or thinking) parts of a message, written without a copy.
struct Concat<'a> {
    message: &'a Message,
    thinking: bool,
}

impl Concat<'_> {
    fn texts(&self) -> impl Iterator<Item = &str> {
        let thinking = self.thinking;
        self.message.content.iter().filter_map(move |p| match p {
            ContentPart::Text { text } if !thinking => Some(text.as_str()),
            ContentPart::Thinking { text, .. } if thinking => Some(text.as_str()),
            _ => None,
        })
    }
}

impl fmt::Display for Concat<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.texts().try_for_each(|t| f.write_str(t))
    }
}

impl Serialize for Concat<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Ollama takes images as base64 data only: an image given by an `http(s)` URL is refused
/// here (`InvalidRequest`, before anything is sent) rather than sent for the server to refuse
/// as bad base64. Data URLs are fine.
pub fn check_images(req: &ChatRequest) -> Result<()> {
    let by_url = req.messages.iter().flat_map(|m| &m.content).any(|p| {
        matches!(p, ContentPart::Image { source: ImageSource::Url { url }, .. }
            if !url.trim_start().starts_with("data:"))
    });
    if by_url {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            "Ollama takes images as base64 data, not URLs: fetch the image and send its bytes \
             (ImageSource::Base64 or a data: URL)",
        ));
    }
    Ok(())
}

/// A message's images: base64 data (a data URL unwrapped; see [`check_images`] for other
/// URLs).
fn images(m: &Message) -> impl Iterator<Item = &str> + Clone {
    m.content.iter().filter_map(|p| match p {
        ContentPart::Image {
            source: ImageSource::Base64 { data, .. },
            ..
        } => Some(data.as_str()),
        ContentPart::Image {
            source: ImageSource::Url { url },
            ..
        } => Some(url.split_once(";base64,").map_or(url.as_str(), |(_, d)| d)),
        _ => None,
    })
}

/// A sequence written from an iterator that can be cloned.
struct Seq<I>(I);

impl<I: Iterator<Item = T> + Clone, T: Serialize> Serialize for Seq<I> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.clone())
    }
}

/// A tool call of an assistant message: `{"function": {"arguments", "name"}}`.
struct WireCall<'a>(&'a ToolCall);

impl Serialize for WireCall<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Function<'a> {
            arguments: Value,
            name: &'a str,
        }
        let c = self.0;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(
            "function",
            &Function {
                arguments: c.parsed_arguments().unwrap_or_else(|_| json!({})),
                name: &c.name,
            },
        )?;
        m.end()
    }
}

/// One message of a conversation.
struct OutMessage<'a> {
    message: &'a Message,
    /// The messages before it (a tool result's tool name is looked up in them: ids restart
    /// in every answer — Ollama's own `call_0`, Gemini's, TGI's `0` —, so a later round's
    /// call of the same id is another call).
    before: &'a [Message],
}

impl Serialize for OutMessage<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let m = self.message;
        let mut o = s.serialize_map(None)?;
        o.serialize_entry(
            "content",
            &Concat {
                message: m,
                thinking: false,
            },
        )?;
        let imgs = images(m);
        if imgs.clone().next().is_some() {
            o.serialize_entry("images", &Seq(imgs))?;
        }
        let role = match m.role {
            Role::Developer => "system",
            ref r => r.as_str(),
        };
        o.serialize_entry("role", role)?;
        let thinking = Concat {
            message: m,
            thinking: true,
        };
        if thinking.texts().any(|t| !t.is_empty()) {
            o.serialize_entry("thinking", &thinking)?;
        }
        if !m.tool_calls.is_empty() {
            o.serialize_entry("tool_calls", &Seq(m.tool_calls.iter().map(WireCall)))?;
        }
        if m.role == Role::Tool {
            // Ollama names the tool a result belongs to; core carries the call id (the last
            // earlier call with that id names it)
            let name = m.name.as_deref().or_else(|| {
                let id = m.tool_call_id.as_deref()?;
                self.before
                    .iter()
                    .flat_map(|m| &m.tool_calls)
                    .rev()
                    .find(|c| c.id == id)
                    .map(|c| c.name.as_str())
            });
            if let Some(name) = name {
                o.serialize_entry("tool_name", name)?;
            }
        }
        o.end()
    }
}

/// A tool definition: `{"function": {"description", "name", "parameters"}, "type": "function"}`.
struct WireTool<'a>(&'a Tool);

impl Serialize for WireTool<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Function<'a> {
            description: &'a str,
            name: &'a str,
            parameters: &'a Value,
        }
        let t = self.0;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry(
            "function",
            &Function {
                description: t.description.as_deref().unwrap_or_default(),
                name: &t.name,
                parameters: &t.parameters,
            },
        )?;
        m.serialize_entry("type", "function")?;
        m.end()
    }
}

/// The `/api/chat` body of a [`ChatRequest`], serialised straight from the request (what
/// [`chat_body`] returns as a `Value`). Sampling fields go to `options`; `extra` is merged at
/// the top level, winning over a field of the same name, and an `extra.options` object is
/// merged into the request's own options.
///
/// ```
/// use infermux_core::{ChatRequest, Message};
/// use infermux_ollama::wire::ChatBody;
///
/// let req = ChatRequest::new("llama3.2", vec![Message::user("Hi")]);
/// let bytes = serde_json::to_vec(&ChatBody::new(&req, false)).unwrap();
/// assert_eq!(
///     String::from_utf8(bytes).unwrap(),
///     r#"{"messages":[{"content":"Hi","role":"user"}],"model":"llama3.2","stream":false}"#
/// );
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ChatBody<'a> {
    req: &'a ChatRequest,
    stream: bool,
}

impl<'a> ChatBody<'a> {
    /// The body of `req`, streamed or not.
    pub fn new(req: &'a ChatRequest, stream: bool) -> Self {
        ChatBody { req, stream }
    }
}

impl Serialize for ChatBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let req = self.req;
        let opts = Options {
            temperature: req.temperature,
            top_p: req.top_p,
            max_tokens: req.max_tokens,
            stop: &req.stop,
            seed: req.seed,
            ..Options::of(&req.extra)
        };
        let mut o = Fields::new(s.serialize_map(None)?, &req.extra, opts.merged_key());
        match &req.response_format {
            Some(ResponseFormat::JsonObject) => o.field("format", "json")?,
            Some(ResponseFormat::JsonSchema { schema, .. }) => o.field("format", schema)?,
            _ => {}
        }
        o.field(
            "messages",
            &Seq(req
                .messages
                .iter()
                .enumerate()
                .map(|(i, message)| OutMessage {
                    message,
                    before: &req.messages[..i],
                })),
        )?;
        o.field("model", &req.model)?;
        if opts.is_set() {
            o.field("options", &opts)?;
        }
        o.field("stream", &self.stream)?;
        // Ollama has no tool choice: `none` sends no tools, and a named tool is the only one
        // sent (the model could otherwise call another, or none); `required` cannot be said
        match &req.tool_choice {
            Some(ToolChoice::None) => {}
            Some(ToolChoice::Tool(name)) if req.tools.iter().any(|t| t.name == *name) => {
                o.field(
                    "tools",
                    &Seq(req.tools.iter().filter(|t| t.name == *name).map(WireTool)),
                )?;
            }
            _ if !req.tools.is_empty() => {
                o.field("tools", &Seq(req.tools.iter().map(WireTool)))?;
            }
            _ => {}
        }
        o.end()
    }
}

/// The `/api/chat` body as a `Value` ([`ChatBody`] is what is sent).
pub fn chat_body(req: &ChatRequest, stream: bool) -> Value {
    serde_json::to_value(ChatBody::new(req, stream)).unwrap_or(Value::Null)
}

/// The `/api/generate` body of a [`CompletionRequest`], serialised straight from the request
/// (what [`generate_body`] returns as a `Value`); `extra` as in [`ChatBody`].
#[derive(Debug, Clone, Copy)]
pub struct GenerateBody<'a> {
    req: &'a CompletionRequest,
    stream: bool,
}

impl<'a> GenerateBody<'a> {
    /// The body of `req`, streamed or not.
    pub fn new(req: &'a CompletionRequest, stream: bool) -> Self {
        GenerateBody { req, stream }
    }
}

impl Serialize for GenerateBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let req = self.req;
        let opts = Options {
            temperature: req.temperature,
            max_tokens: req.max_tokens,
            stop: &req.stop,
            seed: req.seed,
            ..Options::of(&req.extra)
        };
        let mut o = Fields::new(s.serialize_map(None)?, &req.extra, opts.merged_key());
        o.field("model", &req.model)?;
        if opts.is_set() {
            o.field("options", &opts)?;
        }
        o.field("prompt", &req.prompt)?;
        o.field("stream", &self.stream)?;
        o.end()
    }
}

/// The `/api/generate` body as a `Value` ([`GenerateBody`] is what is sent).
pub fn generate_body(req: &CompletionRequest, stream: bool) -> Value {
    serde_json::to_value(GenerateBody::new(req, stream)).unwrap_or(Value::Null)
}

/// The `/api/embed` body of an [`EmbeddingRequest`] (`input` is always an array), serialised
/// straight from the request (what [`embed_body`] returns as a `Value`); `extra` is merged at
/// the top level, winning over a field of the same name.
#[derive(Debug, Clone, Copy)]
pub struct EmbedBody<'a> {
    req: &'a EmbeddingRequest,
}

impl<'a> EmbedBody<'a> {
    /// The body of `req`.
    pub fn new(req: &'a EmbeddingRequest) -> Self {
        EmbedBody { req }
    }
}

impl Serialize for EmbedBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let req = self.req;
        let mut o = Fields::new(s.serialize_map(None)?, &req.extra, None);
        if let Some(d) = req.dimensions {
            o.field("dimensions", &d)?;
        }
        o.field("input", &req.inputs)?;
        o.field("model", &req.model)?;
        o.end()
    }
}

/// The `/api/embed` body as a `Value` ([`EmbedBody`] is what is sent).
pub fn embed_body(req: &EmbeddingRequest) -> Value {
    serde_json::to_value(EmbedBody::new(req)).unwrap_or(Value::Null)
}

/// A body naming a model (`/api/show`, `/api/pull`, `/api/embeddings`).
#[derive(Debug, Serialize)]
pub(crate) struct ModelBody<'a> {
    pub(crate) model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stream: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: WireFunction,
}

#[derive(Debug, Default, Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
}

/// One `/api/chat` or `/api/generate` object: the whole answer, or one NDJSON line of a
/// streamed one.
#[derive(Debug, Default, Deserialize)]
struct WireChunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    response: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    error: Option<Value>,
}

impl WireChunk {
    fn usage(&self) -> Option<Usage> {
        (self.prompt_eval_count.is_some() || self.eval_count.is_some()).then(|| {
            Usage::new(
                self.prompt_eval_count.unwrap_or(0),
                self.eval_count.unwrap_or(0),
            )
        })
    }
}

/// The error of an `{"error": ...}` object (in a 200 stream, or a body the status did not
/// flag).
fn embedded_error(error: &Value) -> Error {
    let message = match error {
        Value::String(s) => s.clone(),
        other => other
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| other.to_string(), str::to_owned),
    };
    let lower = message.to_ascii_lowercase();
    let kind = if lower.contains("not found") {
        ErrorKind::NotFound
    } else if lower.contains("context") && lower.contains("length") {
        ErrorKind::ContextLength
    } else {
        ErrorKind::Server
    };
    Error::new(kind, message)
}

fn finish_reason(reason: Option<&str>, tool_calls: bool) -> Option<FinishReason> {
    match reason {
        Some("stop") if tool_calls => Some(FinishReason::ToolCalls),
        Some("") | None => tool_calls.then_some(FinishReason::ToolCalls),
        Some(r) => Some(FinishReason::from(r)),
    }
}

fn tool_call(index: usize, c: WireToolCall) -> ToolCall {
    let arguments = match c.function.arguments {
        Value::String(s) => s,
        Value::Null => "{}".to_owned(),
        other => other.to_string(),
    };
    ToolCall::new(
        c.id.unwrap_or_else(|| format!("call_{index}")),
        c.function.name,
        arguments,
    )
}

fn parse_chunk(data: &[u8]) -> Result<WireChunk> {
    let chunk: WireChunk =
        infermux_http::json::from_body(data).map_err(|e| decode_err("answer", e))?;
    if let Some(e) = &chunk.error {
        return Err(embedded_error(e));
    }
    Ok(chunk)
}

/// Parses a non-streamed `/api/chat` answer.
pub fn parse_chat(body: &[u8]) -> Result<ChatResponse> {
    let mut chunk = parse_chunk(body)?;
    let usage = chunk.usage();
    let msg = chunk.message.take().unwrap_or_default();
    let calls: Vec<ToolCall> = msg
        .tool_calls
        .into_iter()
        .enumerate()
        .map(|(i, c)| tool_call(i, c))
        .collect();
    let has_calls = !calls.is_empty();
    let mut message = Message::assistant_tool_calls(calls);
    let mut content = Vec::new();
    if let Some(t) = msg.thinking.filter(|t| !t.is_empty()) {
        content.push(ContentPart::Thinking {
            text: t,
            signature: None,
        });
    }
    if let Some(t) = msg.content.filter(|t| !t.is_empty()) {
        content.push(ContentPart::text(t));
    }
    message.content = content;
    let mut resp = ChatResponse::new(chunk.model.clone().unwrap_or_default(), message);
    resp.finish_reason = finish_reason(chunk.done_reason.as_deref(), has_calls);
    resp.usage = usage;
    Ok(resp)
}

/// Parses a non-streamed `/api/generate` answer.
pub fn parse_generate(body: &[u8]) -> Result<CompletionResponse> {
    let chunk = parse_chunk(body)?;
    let mut resp = CompletionResponse::new(
        chunk.model.clone().unwrap_or_default(),
        chunk.response.clone().unwrap_or_default(),
    );
    resp.finish_reason = finish_reason(chunk.done_reason.as_deref(), false);
    resp.usage = chunk.usage();
    Ok(resp)
}

/// Parses an `/api/embed` answer; it must hold `expected` vectors.
pub fn parse_embed(body: &[u8], expected: usize) -> Result<EmbeddingResponse> {
    #[derive(Deserialize)]
    struct Wire {
        #[serde(default)]
        model: String,
        embeddings: Vec<Vec<f32>>,
        #[serde(default)]
        prompt_eval_count: Option<u64>,
    }
    let w: Wire = infermux_http::json::from_body(body).map_err(|e| decode_err("embeddings", e))?;
    if w.embeddings.len() != expected {
        return Err(Error::new(
            ErrorKind::Decode,
            format!(
                "Ollama returned {} embeddings for {expected} inputs",
                w.embeddings.len()
            ),
        ));
    }
    let mut resp = EmbeddingResponse::new(w.model, w.embeddings);
    resp.usage = w.prompt_eval_count.map(|n| Usage::new(n, 0));
    resp.same_dimension()
}

/// One model of `/api/tags`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LocalModel {
    /// Name with tag (`llama3.2:latest`).
    pub name: String,
    /// Size on disk in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Content digest.
    #[serde(default)]
    pub digest: Option<String>,
    /// Last modification (RFC 3339).
    #[serde(default)]
    pub modified_at: Option<String>,
    /// Format, family, parameter size, quantisation.
    #[serde(default)]
    pub details: Option<Value>,
}

/// Parses `/api/tags` into the local models.
pub fn parse_tags(body: &[u8]) -> Result<Vec<LocalModel>> {
    #[derive(Deserialize)]
    struct Wire {
        #[serde(default)]
        models: Vec<LocalModel>,
    }
    let w: Wire = infermux_http::json::from_body(body).map_err(|e| decode_err("model list", e))?;
    Ok(w.models)
}

/// `/api/tags` as a core [`ModelList`].
pub fn model_list(models: &[LocalModel]) -> ModelList {
    ModelList::new(
        models
            .iter()
            .map(|m| {
                let mut info = ModelInfo::new(m.name.clone());
                info.owned_by = Some("ollama".into());
                info
            })
            .collect(),
    )
}

/// What `/api/show` says about a model.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelDetails {
    /// Parameters from the Modelfile, one per line.
    #[serde(default)]
    pub parameters: Option<String>,
    /// The license text.
    #[serde(default)]
    pub license: Option<String>,
    /// The prompt template.
    #[serde(default)]
    pub template: Option<String>,
    /// The Modelfile.
    #[serde(default)]
    pub modelfile: Option<String>,
    /// Format, family, parameter size, quantisation.
    #[serde(default)]
    pub details: Option<Value>,
    /// Architecture keys (`general.architecture`, context length, ...).
    #[serde(default)]
    pub model_info: Option<Value>,
    /// `completion`, `tools`, `vision`, `embedding`, `thinking`, ...
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// Parses `/api/show`.
pub fn parse_show(body: &[u8]) -> Result<ModelDetails> {
    infermux_http::json::from_body(body).map_err(|e| decode_err("model details", e))
}

/// One line of the `/api/pull` progress stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PullProgress {
    /// `pulling manifest`, `pulling <digest>`, `verifying sha256 digest`, `success`, ...
    pub status: String,
    /// The layer being downloaded.
    #[serde(default)]
    pub digest: Option<String>,
    /// The layer's size in bytes.
    #[serde(default)]
    pub total: Option<u64>,
    /// Bytes of the layer received so far.
    #[serde(default)]
    pub completed: Option<u64>,
}

impl PullProgress {
    /// Whether this is the final `success` line.
    pub fn is_success(&self) -> bool {
        self.status == "success"
    }
}

/// Parses one line of the pull stream (an `{"error": ...}` line is an error).
pub fn parse_pull_line(line: &str) -> Result<PullProgress> {
    let v: Value = serde_json::from_str(line).map_err(|e| decode_err("pull progress", e))?;
    if let Some(e) = v.get("error") {
        return Err(embedded_error(e));
    }
    serde_json::from_value(v).map_err(|e| decode_err("pull progress", e))
}

/// Folds NDJSON lines of a streamed `/api/chat` or `/api/generate` answer into stream events.
#[derive(Debug, Default)]
pub struct NdjsonStreamState {
    started: bool,
    done: bool,
    tool_calls: u32,
    text: String,
}

impl NdjsonStreamState {
    /// A fresh state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the `done: true` line arrived.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The text received so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Events of one line.
    pub fn on_line(&mut self, line: &str) -> Result<Vec<StreamEvent>> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(Vec::new());
        }
        let mut chunk = parse_chunk(line.as_bytes())?;
        let usage = chunk.usage();
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: None,
                model: chunk.model.clone(),
            });
        }
        let (text, thinking, calls) = match chunk.message.take() {
            Some(m) => (m.content, m.thinking, m.tool_calls),
            None => (chunk.response.clone(), chunk.thinking.clone(), Vec::new()),
        };
        if let Some(t) = thinking.filter(|t| !t.is_empty()) {
            out.push(StreamEvent::ReasoningDelta { text: t });
        }
        if let Some(t) = text.filter(|t| !t.is_empty()) {
            self.text.push_str(&t);
            out.push(StreamEvent::TextDelta { text: t });
        }
        for c in calls {
            let index = self.tool_calls;
            self.tool_calls += 1;
            let call = tool_call(index as usize, c);
            out.push(StreamEvent::ToolCallDelta {
                index,
                id: Some(call.id),
                name: Some(call.name),
                arguments: call.arguments,
            });
        }
        if chunk.done {
            self.done = true;
            if let Some(u) = usage {
                out.push(StreamEvent::Usage(u));
            }
            out.push(StreamEvent::Done {
                finish_reason: finish_reason(chunk.done_reason.as_deref(), self.tool_calls > 0),
            });
        }
        Ok(out)
    }

    /// The end of the body: an error (with the partial text) unless `done: true` arrived.
    pub fn on_end(&self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        let mut e = Error::new(
            ErrorKind::Decode,
            "Ollama stream ended without a `done: true` line",
        );
        if !self.text.is_empty() {
            e = e.with_partial_text(self.text.clone());
        }
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_lines_fold_into_events() {
        let mut st = NdjsonStreamState::new();
        let evs = st
            .on_line(r#"{"model":"m","message":{"role":"assistant","content":"Hi"},"done":false}"#)
            .unwrap_or_default();
        assert_eq!(evs.len(), 2);
        let evs = st
            .on_line(r#"{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":1}"#)
            .unwrap_or_default();
        assert_eq!(evs[0], StreamEvent::Usage(Usage::new(3, 1)));
        assert!(st.on_end().is_ok());
    }

    #[test]
    fn tool_results_carry_the_tool_name() {
        let req = ChatRequest::new(
            "m",
            vec![
                Message::assistant_tool_calls(vec![ToolCall::new("c1", "get_weather", "{}")]),
                Message::tool_result("c1", "sunny"),
            ],
        );
        let body = chat_body(&req, false);
        assert_eq!(body["messages"][1]["tool_name"], "get_weather");
        assert_eq!(body["messages"][1]["role"], "tool");
    }

    /// Ids restart in every answer (Ollama's own `call_0`, Gemini's, TGI's `0`): a result is
    /// named by the last call of its id *before* it, not by a later round's call of the same
    /// id (the first round's result was named `get_time`).
    #[test]
    fn a_tool_result_is_named_by_the_call_before_it() {
        let req = ChatRequest::new(
            "m",
            vec![
                Message::user("Weather, then time?"),
                Message::assistant_tool_calls(vec![ToolCall::new("call_0", "get_weather", "{}")]),
                Message::tool_result("call_0", "sunny"),
                Message::assistant_tool_calls(vec![ToolCall::new("call_0", "get_time", "{}")]),
                Message::tool_result("call_0", "noon"),
            ],
        );
        let body = chat_body(&req, false);
        assert_eq!(body["messages"][2]["tool_name"], "get_weather");
        assert_eq!(body["messages"][4]["tool_name"], "get_time");
    }

    #[test]
    fn tool_call_arguments_are_json_text() {
        let r = parse_chat(br#"{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]},"done":true,"done_reason":"stop"}"#);
        let r = r.unwrap_or_else(|e| ChatResponse::new(e.to_string(), Message::user("")));
        assert_eq!(r.tool_calls()[0].arguments, r#"{"a":1}"#);
        assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
    }
}
