//! The chat-completions wire code as it was before the typed rewrite (f117165): request bodies
//! built as `serde_json::Value` trees and answers read through `Value`s. Kept as the oracle
//! the typed code must match: the same body bytes, the same answers, the same error kinds.

#![allow(dead_code, unused_imports, clippy::all)]

use infermux_openai_compat::wire::embedded_error;

use base64::Engine;
use infermux_core::{
    ChatRequest, ChatResponse, CompletionRequest, CompletionResponse, ContentPart,
    EmbeddingRequest, EmbeddingResponse, Error, ErrorKind, FinishReason, ImageSource, Message,
    ModelInfo, ModelList, ResponseFormat, Result, Role, StreamEvent, Tool, ToolCall, ToolChoice,
    Usage,
};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

fn image_url(source: &ImageSource) -> String {
    match source {
        ImageSource::Url { url } => url.clone(),
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        _ => String::new(),
    }
}

fn message_json(m: &Message) -> Value {
    let mut out = Map::new();
    out.insert("role".into(), Value::String(m.role.as_str().to_owned()));
    let texts: Vec<&ContentPart> = m
        .content
        .iter()
        .filter(|p| matches!(p, ContentPart::Text { .. } | ContentPart::Image { .. }))
        .collect();
    // (since: assistant and tool messages take text only)
    let only_text = matches!(m.role, Role::Assistant | Role::Tool)
        || texts.iter().all(|p| matches!(p, ContentPart::Text { .. }));
    let content = if only_text {
        Value::String(m.text())
    } else {
        Value::Array(
            texts
                .iter()
                .map(|p| match p {
                    ContentPart::Image { source, detail } => {
                        let mut img = json!({"url": image_url(source)});
                        if let Some(d) = detail {
                            img["detail"] = Value::String(d.clone());
                        }
                        json!({"type": "image_url", "image_url": img})
                    }
                    ContentPart::Text { text } => json!({"type": "text", "text": text}),
                    _ => Value::Null,
                })
                .collect(),
        )
    };
    let empty_assistant =
        m.role == Role::Assistant && !m.tool_calls.is_empty() && m.text().is_empty();
    out.insert(
        "content".into(),
        if empty_assistant {
            Value::Null
        } else {
            content
        },
    );
    for p in &m.content {
        if let ContentPart::Refusal { text } = p {
            out.insert("refusal".into(), Value::String(text.clone()));
        }
    }
    if let Some(name) = &m.name {
        out.insert("name".into(), Value::String(name.clone()));
    }
    if !m.tool_calls.is_empty() {
        out.insert(
            "tool_calls".into(),
            Value::Array(
                m.tool_calls
                    .iter()
                    .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                    .collect(),
            ),
        );
    }
    if let Some(id) = &m.tool_call_id {
        out.insert("tool_call_id".into(), Value::String(id.clone()));
    }
    Value::Object(out)
}

/// The JSON body of a chat-completions request. `stream` adds `stream: true` and asks for the
/// usage chunk (`stream_options.include_usage`).
pub(crate) fn chat_body(req: &ChatRequest, stream: bool) -> Value {
    let mut b = Map::new();
    b.insert("model".into(), Value::String(req.model.clone()));
    b.insert(
        "messages".into(),
        Value::Array(req.messages.iter().map(message_json).collect()),
    );
    if let Some(t) = req.temperature {
        b.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        b.insert("top_p".into(), json!(p));
    }
    if let Some(n) = req.max_tokens {
        b.insert("max_tokens".into(), json!(n));
    }
    if !req.stop.is_empty() {
        b.insert("stop".into(), json!(req.stop));
    }
    if let Some(s) = req.seed {
        b.insert("seed".into(), json!(s));
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut f = json!({"name": t.name, "parameters": t.parameters});
                if let Some(d) = &t.description {
                    f["description"] = Value::String(d.clone());
                }
                if let Some(s) = t.strict {
                    f["strict"] = Value::Bool(s);
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        b.insert("tools".into(), Value::Array(tools));
    }
    // (as the typed body: both only with tools, which OpenAI requires)
    let tools = !req.tools.is_empty() || req.extra.contains_key("tools");
    if let Some(choice) = req.tool_choice.as_ref().filter(|_| tools) {
        let v = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
            _ => json!("auto"),
        };
        b.insert("tool_choice".into(), v);
    }
    if let Some(p) = req.parallel_tool_calls.filter(|_| tools) {
        b.insert("parallel_tool_calls".into(), json!(p));
    }
    if let Some(f) = &req.response_format {
        let v = match f {
            ResponseFormat::Text => json!({"type": "text"}),
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => {
                let mut s = json!({"name": name, "schema": schema});
                if let Some(st) = strict {
                    s["strict"] = json!(st);
                }
                json!({"type": "json_schema", "json_schema": s})
            }
            _ => json!({"type": "text"}),
        };
        b.insert("response_format".into(), v);
    }
    if let Some(u) = &req.user {
        b.insert("user".into(), json!(u));
    }
    if stream {
        b.insert("stream".into(), json!(true));
        b.insert("stream_options".into(), json!({"include_usage": true}));
    }
    for (k, v) in &req.extra {
        // (the call's own `stream` wins, streamed or not)
        if k != "stream" {
            b.insert(k.clone(), v.clone());
        }
    }
    Value::Object(b)
}

/// The JSON body of a legacy completions request.
pub(crate) fn completion_body(req: &CompletionRequest) -> Value {
    let mut b = json!({"model": req.model, "prompt": req.prompt});
    if let Some(n) = req.max_tokens {
        b["max_tokens"] = json!(n);
    }
    if let Some(t) = req.temperature {
        b["temperature"] = json!(t);
    }
    if !req.stop.is_empty() {
        b["stop"] = json!(req.stop);
    }
    if let Some(s) = req.seed {
        b["seed"] = json!(s);
    }
    if let (Value::Object(m), false) = (&mut b, req.extra.is_empty()) {
        for (k, v) in &req.extra {
            // (the call's own `stream` wins, streamed or not)
            if k != "stream" {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    b
}

/// The JSON body of a streamed legacy completions request (with the usage chunk asked for).
pub(crate) fn completion_stream_body(req: &CompletionRequest) -> Value {
    let mut b = completion_body(req);
    if let Value::Object(m) = &mut b {
        m.insert("stream".into(), json!(true));
        m.entry("stream_options")
            .or_insert_with(|| json!({"include_usage": true}));
    }
    b
}

/// The JSON body of an embeddings request (floats requested).
pub(crate) fn embedding_body(req: &EmbeddingRequest) -> Value {
    let mut b = json!({"model": req.model, "input": req.inputs, "encoding_format": "float"});
    if let Some(d) = req.dimensions {
        b["dimensions"] = json!(d);
    }
    if let Value::Object(m) = &mut b {
        for (k, v) in &req.extra {
            m.insert(k.clone(), v.clone());
        }
    }
    b
}

/// `usage` of any OpenAI-style response.
#[derive(Debug, Default, Deserialize)]
#[non_exhaustive]
pub(crate) struct WireUsage {
    /// Prompt tokens.
    #[serde(default)]
    pub(crate) prompt_tokens: Option<u64>,
    /// Completion tokens.
    #[serde(default)]
    pub(crate) completion_tokens: Option<u64>,
    /// Details of the prompt tokens.
    #[serde(default)]
    pub(crate) prompt_tokens_details: Option<Value>,
    /// Details of the completion tokens.
    #[serde(default)]
    pub(crate) completion_tokens_details: Option<Value>,
}

impl WireUsage {
    /// As core usage (cached and reasoning tokens when reported).
    pub(crate) fn to_usage(&self) -> Usage {
        let mut u = Usage::new(
            self.prompt_tokens.unwrap_or(0),
            self.completion_tokens.unwrap_or(0),
        );
        u.cached_input_tokens = self
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.get("cached_tokens"))
            .and_then(Value::as_u64);
        // (since: the prompt tokens written to the cache)
        u.cache_creation_input_tokens = self
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.get("cache_write_tokens"))
            .and_then(Value::as_u64);
        u.reasoning_tokens = self
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.get("reasoning_tokens"))
            .and_then(Value::as_u64);
        u
    }
}

#[derive(Debug, Default, Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct WireToolCall {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default, deserialize_with = "string_or_number")]
    id: Option<String>,
    #[serde(default)]
    function: WireFunction,
}

/// An id as text, whether the server sent a string or a number (TGI sends `"id": 0`).
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn string_or_number<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.as_ref().and_then(id_text))
}

/// `tool_calls` as a list, or as the one object some servers send.
fn one_or_many<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Vec<WireToolCall>>, D::Error> {
    use serde::de::Error as _;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(D::Error::custom))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Some),
        Some(one @ Value::Object(_)) => serde_json::from_value(one)
            .map(|c| Some(vec![c]))
            .map_err(D::Error::custom),
        Some(other) => Err(D::Error::custom(format!(
            "tool_calls is neither a list nor an object: {other}"
        ))),
    }
}

fn arguments_text(v: &Option<Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

#[derive(Debug, Default, Deserialize)]
struct WireMessage {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    tool_calls: Option<Vec<WireToolCall>>,
    /// (since: the legacy single call, read when there is no `tool_calls`: an object with a
    /// name or arguments)
    #[serde(default)]
    function_call: Option<Value>,
    /// (since: cited sources, each a citation part after the text)
    #[serde(default)]
    annotations: Option<Value>,
}

/// (since) A message's legacy call: its name and arguments, when it is an object with either.
fn legacy_call(v: &Option<Value>) -> Option<(Option<String>, Option<Value>)> {
    let f = v.as_ref().filter(|f| f.is_object())?;
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let args = f.get("arguments").filter(|a| !a.is_null());
    (name.is_some() || args.is_some()).then(|| (name.map(str::to_owned), args.cloned()))
}

/// (since) The id made for a legacy call, from the answer's.
fn legacy_call_id(answer_id: Option<&str>) -> String {
    format!(
        "call_{}",
        answer_id.filter(|id| !id.is_empty()).unwrap_or("function")
    )
}

/// (since) The objects of a message's `annotations` list.
fn citations(v: &Option<Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(items)) => items.iter().filter(|i| i.is_object()).cloned().collect(),
        _ => Vec::new(),
    }
}

#[derive(Debug, Default, Deserialize)]
struct WireChoice {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    delta: Option<WireMessage>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    /// Groq's extension object; its `usage` is where Groq reports a stream's usage.
    #[serde(default)]
    x_groq: Option<XGroq>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct XGroq {
    #[serde(default)]
    usage: Option<WireUsage>,
}

impl WireResponse {
    /// `usage`, or Groq's `x_groq.usage` when the standard field is absent.
    fn usage(&self) -> Option<&WireUsage> {
        self.usage
            .as_ref()
            .or_else(|| self.x_groq.as_ref().and_then(|x| x.usage.as_ref()))
    }
}

fn finish_reason(s: &Option<String>) -> Option<FinishReason> {
    s.as_deref().filter(|s| !s.is_empty()).map(|s| match s {
        // (since: the legacy name of a tool call's ending)
        "function_call" => FinishReason::ToolCalls,
        s => FinishReason::from(s),
    })
}

fn content_text(v: &Option<Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| match p.get("type").and_then(Value::as_str) {
                None => true,
                Some(t) => t == "text" || t == "output_text",
            })
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

fn decode_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Decode, format!("{what}: {e}"))
}

/// Parses a chat-completions response body.
pub(crate) fn parse_chat(body: &[u8]) -> Result<ChatResponse> {
    let w: WireResponse = serde_json::from_slice(body)
        .map_err(|e| decode_err("chat response is not valid JSON", e))?;
    if let Some(err) = &w.error {
        return Err(embedded_error(err));
    }
    let usage = w.usage().map(WireUsage::to_usage);
    // (since: the choice of `index` 0, else the first)
    let choices = w.choices;
    let at = choices
        .iter()
        .position(|c| c.index.unwrap_or(0) == 0)
        .unwrap_or(0);
    let choice = choices
        .into_iter()
        .nth(at)
        .ok_or_else(|| Error::new(ErrorKind::Decode, "chat response has no choices"))?;
    let m = choice.message.unwrap_or_default();
    let mut content = Vec::new();
    if let Some(r) = m
        .reasoning_content
        .or(m.reasoning)
        .filter(|r| !r.is_empty())
    {
        content.push(ContentPart::Thinking {
            text: r,
            signature: None,
        });
    }
    let text = content_text(&m.content);
    if !text.is_empty() {
        content.push(ContentPart::text(text));
    }
    if let Some(r) = m.refusal.filter(|r| !r.is_empty()) {
        content.push(ContentPart::Refusal { text: r });
    }
    content.extend(
        citations(&m.annotations)
            .into_iter()
            .map(|raw| ContentPart::Citation { raw }),
    );
    let mut calls: Vec<ToolCall> = m
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            ToolCall::new(
                c.id.unwrap_or_default(),
                c.function.name.unwrap_or_default(),
                arguments_text(&c.function.arguments),
            )
        })
        .collect();
    if let (true, Some((name, args))) = (calls.is_empty(), legacy_call(&m.function_call)) {
        calls.push(ToolCall::new(
            legacy_call_id(w.id.as_deref()),
            name.unwrap_or_default(),
            arguments_text(&args),
        ));
    }
    let mut message = Message::assistant_tool_calls(calls);
    if let Some(role) = m.role.as_deref() {
        message.role = Role::from(role);
    }
    message.content = content;
    let mut resp = ChatResponse::new(w.model.unwrap_or_default(), message);
    // (since: an empty id is none)
    resp.id = w.id.filter(|id| !id.is_empty());
    resp.finish_reason = finish_reason(&choice.finish_reason);
    resp.usage = usage;
    Ok(resp)
}

/// Parses a legacy completions response body.
pub(crate) fn parse_completion(body: &[u8]) -> Result<CompletionResponse> {
    let w: WireResponse = serde_json::from_slice(body)
        .map_err(|e| decode_err("completion response is not valid JSON", e))?;
    if let Some(err) = &w.error {
        return Err(embedded_error(err));
    }
    // the first prompt's answer (servers may list choices out of order)
    let mut choices = w.choices;
    let first = choices
        .iter()
        .position(|c| c.index.unwrap_or(0) == 0)
        .unwrap_or(0);
    if first >= choices.len() {
        return Err(Error::new(
            ErrorKind::Decode,
            "completion response has no choices",
        ));
    }
    let choice = choices.swap_remove(first);
    let mut resp =
        CompletionResponse::new(w.model.unwrap_or_default(), choice.text.unwrap_or_default());
    resp.id = w.id;
    resp.finish_reason = finish_reason(&choice.finish_reason);
    resp.usage = w.usage.map(|u| u.to_usage());
    Ok(resp)
}

/// Parses an embeddings response body (float arrays or base64 little-endian f32).
pub(crate) fn parse_embeddings(body: &[u8], expected: usize) -> Result<EmbeddingResponse> {
    #[derive(Deserialize)]
    struct Item {
        #[serde(default)]
        index: Option<usize>,
        embedding: Value,
    }
    #[derive(Deserialize)]
    struct Wire {
        #[serde(default)]
        model: Option<String>,
        data: Vec<Item>,
        #[serde(default)]
        usage: Option<WireUsage>,
    }
    let w: Wire = serde_json::from_slice(body)
        .map_err(|e| decode_err("embeddings response is not valid JSON", e))?;
    let mut items: Vec<(usize, Vec<f32>)> = Vec::with_capacity(w.data.len());
    for (pos, item) in w.data.into_iter().enumerate() {
        let v = match item.embedding {
            Value::Array(xs) => xs
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| Error::new(ErrorKind::Decode, "embedding holds a non-number"))?,
            Value::String(b64) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| decode_err("embedding is not valid base64", e))?;
                if bytes.len() % 4 != 0 {
                    return Err(Error::new(
                        ErrorKind::Decode,
                        "base64 embedding is not a whole number of f32",
                    ));
                }
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::Decode,
                    "embedding is neither an array nor base64",
                ));
            }
        };
        items.push((item.index.unwrap_or(pos), v));
    }
    items.sort_by_key(|(i, _)| *i);
    if items.len() != expected {
        return Err(Error::new(
            ErrorKind::Decode,
            format!("{} embeddings returned for {expected} inputs", items.len()),
        ));
    }
    // (the rule the typed code gained: indices 0..expected, each once)
    if items.iter().enumerate().any(|(want, (i, _))| *i != want) {
        return Err(Error::new(
            ErrorKind::Decode,
            "embedding indices are not each input's once",
        ));
    }
    let mut resp = EmbeddingResponse::new(
        w.model.unwrap_or_default(),
        items.into_iter().map(|(_, v)| v).collect(),
    );
    resp.usage = w.usage.map(|u| u.to_usage());
    // (and the rule it gained after: the vectors of one answer are of one length)
    resp.same_dimension()
}

/// Turns the `data:` payloads of a chat-completions (or legacy completions) SSE stream into
/// [`StreamEvent`]s.
///
/// Emits `Start` once, text / reasoning / refusal / tool-call deltas as they come, `Usage`
/// when the usage chunk arrives, and `Done` at `[DONE]` (with the last finish reason seen). A
/// stream that ends without `[DONE]` is a `Decode` error carrying the partial text; an
/// `{"error": ...}` payload is the error it describes. With
/// [`ChatStreamState::ending_at_finish_reason`], a stream that ends without `[DONE]` after a
/// chunk with a finish reason is complete (servers such as TGI 1.x never send `[DONE]`).
#[derive(Debug, Default)]
pub(crate) struct ChatStreamState {
    end_at_finish: bool,
    started: bool,
    finish: Option<FinishReason>,
    done: bool,
    text: String,
    // (since: the answer's id, `tool_calls` seen, a legacy call begun, citations held back)
    id: Option<String>,
    tool_calls: bool,
    legacy_started: bool,
    citations: Vec<Value>,
}

impl ChatStreamState {
    /// (since) The citations held back, then `Done`.
    fn ending(&mut self) -> Vec<StreamEvent> {
        let mut out: Vec<StreamEvent> = std::mem::take(&mut self.citations)
            .into_iter()
            .map(|raw| StreamEvent::Part {
                part: ContentPart::Citation { raw },
            })
            .collect();
        out.push(StreamEvent::Done {
            finish_reason: self.finish.clone(),
        });
        out
    }
}

impl ChatStreamState {
    /// A fresh state.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A state that also accepts the end of the body, without `[DONE]`, as the end of the
    /// answer once a finish reason has been seen.
    pub(crate) fn ending_at_finish_reason() -> Self {
        ChatStreamState {
            end_at_finish: true,
            ..Self::default()
        }
    }

    /// Whether `[DONE]` was seen.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Handles one `data:` payload.
    pub(crate) fn on_data(&mut self, data: &str) -> Result<Vec<StreamEvent>> {
        let data = data.trim();
        if data.is_empty() || self.done {
            return Ok(Vec::new());
        }
        if data == "[DONE]" {
            self.done = true;
            return Ok(self.ending());
        }
        let chunk: WireResponse = serde_json::from_str(data).map_err(|e| {
            decode_err("stream chunk is not valid JSON", e).with_partial_text(self.text.clone())
        })?;
        if let Some(err) = &chunk.error {
            return Err(embedded_error(err).with_partial_text(self.text.clone()));
        }
        let mut out = Vec::new();
        // (as the typed decoder since Azure's opening chunk: the start waits for a chunk that
        // names the id or model, or carries choices)
        let id = chunk.id.clone().filter(|s| !s.is_empty());
        let model = chunk.model.clone().filter(|s| !s.is_empty());
        if self.id.is_none() {
            self.id = id.clone();
        }
        if !self.started && (id.is_some() || model.is_some() || !chunk.choices.is_empty()) {
            self.started = true;
            out.push(StreamEvent::Start { id, model });
        }
        for choice in chunk.choices.iter().filter(|c| c.index.unwrap_or(0) == 0) {
            // a legacy-completions chunk carries `text` instead of a delta
            if let Some(text) = choice.text.as_ref().filter(|t| !t.is_empty()) {
                self.text.push_str(text);
                out.push(StreamEvent::TextDelta { text: text.clone() });
            }
            if let Some(d) = &choice.delta {
                if let Some(r) = d
                    .reasoning_content
                    .as_ref()
                    .or(d.reasoning.as_ref())
                    .filter(|r| !r.is_empty())
                {
                    out.push(StreamEvent::ReasoningDelta { text: r.clone() });
                }
                let text = content_text(&d.content);
                if !text.is_empty() {
                    self.text.push_str(&text);
                    out.push(StreamEvent::TextDelta { text });
                }
                if let Some(r) = d.refusal.as_ref().filter(|r| !r.is_empty()) {
                    out.push(StreamEvent::RefusalDelta { text: r.clone() });
                }
                self.citations.extend(citations(&d.annotations));
                for (pos, c) in d.tool_calls.iter().flatten().enumerate() {
                    out.push(StreamEvent::ToolCallDelta {
                        index: c.index.unwrap_or(pos as u32),
                        id: c.id.clone().filter(|s| !s.is_empty()),
                        name: c.function.name.clone().filter(|s| !s.is_empty()),
                        arguments: arguments_text(&c.function.arguments),
                    });
                }
                self.tool_calls |= d.tool_calls.as_ref().is_some_and(|c| !c.is_empty());
                if let (false, Some((name, args))) =
                    (self.tool_calls, legacy_call(&d.function_call))
                {
                    let id = (!std::mem::replace(&mut self.legacy_started, true))
                        .then(|| legacy_call_id(self.id.as_deref()));
                    out.push(StreamEvent::ToolCallDelta {
                        index: 0,
                        id,
                        name,
                        arguments: arguments_text(&args),
                    });
                }
            }
            if let Some(f) = finish_reason(&choice.finish_reason) {
                self.finish = Some(f);
            }
        }
        if let Some(u) = chunk.usage() {
            out.push(StreamEvent::Usage(u.to_usage()));
        }
        Ok(out)
    }

    /// Handles the end of the body.
    pub(crate) fn on_end(&mut self) -> Result<Vec<StreamEvent>> {
        if self.done {
            Ok(Vec::new())
        } else if self.end_at_finish && self.finish.is_some() {
            self.done = true;
            Ok(self.ending())
        } else {
            Err(Error::new(ErrorKind::Decode, "stream ended without [DONE]")
                .with_partial_text(self.text.clone()))
        }
    }
}
