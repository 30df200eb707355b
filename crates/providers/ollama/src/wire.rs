//! Ollama's native wire format (`/api/chat`, `/api/generate`, `/api/embed`, `/api/tags`,
//! `/api/show`, `/api/pull`): request bodies from core types, and answers (whole or one NDJSON
//! line at a time) back into core types.

use infermux_core::{
    ChatRequest, ChatResponse, CompletionRequest, CompletionResponse, ContentPart,
    EmbeddingRequest, EmbeddingResponse, Error, ErrorKind, FinishReason, ImageSource, Message,
    ModelInfo, ModelList, Result, Role, StreamEvent, ToolCall, ToolChoice, Usage,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

fn decode_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Decode, format!("invalid Ollama {what}: {e}"))
}

/// The `options` object: sampling parameters core requests carry.
fn options(
    temperature: Option<f32>,
    top_p: Option<f32>,
    max_tokens: Option<u32>,
    stop: &[String],
    seed: Option<i64>,
) -> Map<String, Value> {
    let mut o = Map::new();
    if let Some(t) = temperature {
        o.insert("temperature".into(), json!(t));
    }
    if let Some(p) = top_p {
        o.insert("top_p".into(), json!(p));
    }
    if let Some(n) = max_tokens {
        o.insert("num_predict".into(), json!(n));
    }
    if !stop.is_empty() {
        o.insert("stop".into(), json!(stop));
    }
    if let Some(s) = seed {
        o.insert("seed".into(), json!(s));
    }
    o
}

/// Merges `extra` into `body`; an `options` object in `extra` is merged into the body's options.
fn merge_extra(body: &mut Map<String, Value>, extra: &Map<String, Value>) {
    for (k, v) in extra {
        match (k.as_str(), body.get_mut("options"), v) {
            ("options", Some(Value::Object(mine)), Value::Object(theirs)) => {
                for (ok, ov) in theirs {
                    mine.insert(ok.clone(), ov.clone());
                }
            }
            _ => {
                body.insert(k.clone(), v.clone());
            }
        }
    }
}

fn message_json(m: &Message, tool_names: &std::collections::HashMap<&str, &str>) -> Value {
    let mut text = String::new();
    let mut images = Vec::new();
    let mut thinking = String::new();
    for part in &m.content {
        match part {
            ContentPart::Text { text: t } => text.push_str(t),
            ContentPart::Image {
                source: ImageSource::Base64 { data, .. },
                ..
            } => images.push(Value::String(data.clone())),
            ContentPart::Image {
                source: ImageSource::Url { url },
                ..
            } => {
                // Ollama takes base64 only; a data URL is unwrapped, other URLs are sent as is.
                let data = url.split_once(";base64,").map_or(url.as_str(), |(_, d)| d);
                images.push(Value::String(data.to_owned()));
            }
            ContentPart::Thinking { text: t, .. } => thinking.push_str(t),
            _ => {}
        }
    }
    let role = match m.role {
        Role::Developer => "system",
        ref r => r.as_str(),
    };
    let mut o = Map::new();
    o.insert("role".into(), json!(role));
    o.insert("content".into(), json!(text));
    if !images.is_empty() {
        o.insert("images".into(), Value::Array(images));
    }
    if !thinking.is_empty() {
        o.insert("thinking".into(), json!(thinking));
    }
    if !m.tool_calls.is_empty() {
        let calls: Vec<Value> = m
            .tool_calls
            .iter()
            .map(|c| {
                let args = c.parsed_arguments().unwrap_or_else(|_| json!({}));
                json!({"function": {"name": c.name, "arguments": args}})
            })
            .collect();
        o.insert("tool_calls".into(), Value::Array(calls));
    }
    if m.role == Role::Tool {
        // Ollama names the tool a result belongs to; core carries the call id
        let name = m.name.as_deref().or_else(|| {
            m.tool_call_id
                .as_deref()
                .and_then(|id| tool_names.get(id).copied())
        });
        if let Some(name) = name {
            o.insert("tool_name".into(), json!(name));
        }
    }
    Value::Object(o)
}

/// The `/api/chat` body.
pub fn chat_body(req: &ChatRequest, stream: bool) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    let tool_names: std::collections::HashMap<&str, &str> = req
        .messages
        .iter()
        .flat_map(|m| &m.tool_calls)
        .map(|c| (c.id.as_str(), c.name.as_str()))
        .collect();
    body.insert(
        "messages".into(),
        Value::Array(
            req.messages
                .iter()
                .map(|m| message_json(m, &tool_names))
                .collect(),
        ),
    );
    body.insert("stream".into(), json!(stream));
    let tools_off = matches!(req.tool_choice, Some(ToolChoice::None));
    if !req.tools.is_empty() && !tools_off {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name,
                    "description": t.description.clone().unwrap_or_default(),
                    "parameters": t.parameters,
                }})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    match &req.response_format {
        Some(infermux_core::ResponseFormat::JsonObject) => {
            body.insert("format".into(), json!("json"));
        }
        Some(infermux_core::ResponseFormat::JsonSchema { schema, .. }) => {
            body.insert("format".into(), schema.clone());
        }
        _ => {}
    }
    let opts = options(
        req.temperature,
        req.top_p,
        req.max_tokens,
        &req.stop,
        req.seed,
    );
    if !opts.is_empty() {
        body.insert("options".into(), Value::Object(opts));
    }
    merge_extra(&mut body, &req.extra);
    Value::Object(body)
}

/// The `/api/generate` body.
pub fn generate_body(req: &CompletionRequest, stream: bool) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert("prompt".into(), json!(req.prompt));
    body.insert("stream".into(), json!(stream));
    let opts = options(req.temperature, None, req.max_tokens, &req.stop, req.seed);
    if !opts.is_empty() {
        body.insert("options".into(), Value::Object(opts));
    }
    merge_extra(&mut body, &req.extra);
    Value::Object(body)
}

/// The `/api/embed` body (`input` is always an array).
pub fn embed_body(req: &EmbeddingRequest) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert("input".into(), json!(req.inputs));
    if let Some(d) = req.dimensions {
        body.insert("dimensions".into(), json!(d));
    }
    merge_extra(&mut body, &req.extra);
    Value::Object(body)
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
    let chunk: WireChunk = serde_json::from_slice(data).map_err(|e| decode_err("answer", e))?;
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
    let w: Wire = serde_json::from_slice(body).map_err(|e| decode_err("embeddings", e))?;
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
    Ok(resp)
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
    let w: Wire = serde_json::from_slice(body).map_err(|e| decode_err("model list", e))?;
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
    serde_json::from_slice(body).map_err(|e| decode_err("model details", e))
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

    #[test]
    fn tool_call_arguments_are_json_text() {
        let r = parse_chat(br#"{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]},"done":true,"done_reason":"stop"}"#);
        let r = r.unwrap_or_else(|e| ChatResponse::new(e.to_string(), Message::user("")));
        assert_eq!(r.tool_calls()[0].arguments, r#"{"a":1}"#);
        assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
    }
}
