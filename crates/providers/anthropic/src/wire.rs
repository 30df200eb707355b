//! The Messages API wire format: request bodies built from core types, answers and streamed
//! events parsed back, and the inverse (a recorded request body as a [`ChatRequest`]) that the
//! conformance runner replays recorded traffic with.

use infermux_core::{
    ChatRequest, ChatResponse, ContentPart, Error, ErrorKind, FinishReason, ImageSource, Message,
    ModelInfo, ModelList, Result, Role, StreamEvent, Tool, ToolCall, ToolChoice, Usage,
};
use serde_json::{Map, Value, json};

/// The output token limit sent when a request has none: Anthropic requires `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

fn decode_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Decode, format!("{what}: {e}"))
}

/// An image part as an Anthropic `image` block: base64 sources as they are, `data:` URLs split
/// into media type and data, other URLs as a `url` source.
fn image_block(source: &ImageSource) -> Value {
    match source {
        ImageSource::Base64 { media_type, data } => {
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
        }
        ImageSource::Url { url } => {
            if let Some(rest) = url.strip_prefix("data:")
                && let Some((meta, data)) = rest.split_once(',')
                && let Some(media_type) = meta.strip_suffix(";base64")
            {
                return json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}});
            }
            json!({"type": "image", "source": {"type": "url", "url": url}})
        }
        _ => json!({"type": "text", "text": ""}),
    }
}

fn part_block(part: &ContentPart) -> Option<Value> {
    Some(match part {
        ContentPart::Text { text } => json!({"type": "text", "text": text}),
        ContentPart::Image { source, .. } => image_block(source),
        ContentPart::Thinking { text, signature } => {
            let mut b = json!({"type": "thinking", "thinking": text});
            if let Some(s) = signature {
                b["signature"] = json!(s);
            }
            b
        }
        ContentPart::RedactedThinking { data } => {
            json!({"type": "redacted_thinking", "data": data})
        }
        ContentPart::Refusal { text } => json!({"type": "text", "text": text}),
        ContentPart::ServerToolCall { id, name, input } => {
            json!({"type": "server_tool_use", "id": id, "name": name, "input": input})
        }
        // blocks kept as sent go back as they came
        ContentPart::ServerToolResult { raw, .. } | ContentPart::Other { raw }
            if raw.get("type").is_some_and(Value::is_string) =>
        {
            raw.clone()
        }
        // citations are attached to the text block before them, in `assistant_blocks`
        _ => return None,
    })
}

/// The blocks of an assistant turn: its parts in order (each citation put back on the text
/// block it follows), then its tool calls.
fn assistant_blocks(m: &Message) -> Vec<Value> {
    let mut blocks: Vec<Value> = Vec::new();
    for part in &m.content {
        if let ContentPart::Citation { raw } = part {
            if let Some(text) = blocks.last_mut().filter(|b| b["type"] == "text")
                && let Some(obj) = text.as_object_mut()
            {
                let list = obj.entry("citations").or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(raw.clone());
                }
            }
            continue;
        }
        blocks.extend(part_block(part));
    }
    blocks.retain(|b| b["type"] != "text" || b["text"].as_str() != Some(""));
    blocks.extend(m.tool_calls.iter().map(tool_call_block));
    blocks
}

fn tool_call_block(c: &ToolCall) -> Value {
    let input = c
        .parsed_arguments()
        .unwrap_or_else(|_| Value::Object(Map::new()));
    json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input})
}

/// The wire messages and the top-level `system` text of a conversation. System and developer
/// messages become `system`; tool results become `tool_result` blocks of a user message;
/// consecutive messages of the same role are merged (the API wants user and assistant turns to
/// alternate).
fn messages_json(messages: &[Message]) -> (Vec<Value>, Option<String>) {
    let mut system: Vec<String> = Vec::new();
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    for m in messages {
        let (role, blocks): (&str, Vec<Value>) = match &m.role {
            Role::System | Role::Developer => {
                system.push(m.text());
                continue;
            }
            Role::Tool => {
                let mut b = json!({
                    "type": "tool_result",
                    "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                    "content": m.text(),
                });
                if m.content
                    .iter()
                    .any(|p| matches!(p, ContentPart::Image { .. }))
                {
                    b["content"] = Value::Array(m.content.iter().filter_map(part_block).collect());
                }
                ("user", vec![b])
            }
            Role::Assistant => ("assistant", assistant_blocks(m)),
            _ => ("user", m.content.iter().filter_map(part_block).collect()),
        };
        match out.last_mut() {
            Some((r, existing)) if r == role => existing.extend(blocks),
            _ => out.push((role.to_owned(), blocks)),
        }
    }
    let msgs = out
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    (msgs, system)
}

fn tool_json(t: &Tool) -> Value {
    let mut v = json!({"name": t.name, "input_schema": t.parameters});
    if let Some(d) = &t.description {
        v["description"] = json!(d);
    }
    v
}

fn tool_choice_json(req: &ChatRequest) -> Option<Value> {
    let mut choice = match &req.tool_choice {
        Some(ToolChoice::Auto) => json!({"type": "auto"}),
        Some(ToolChoice::Required) => json!({"type": "any"}),
        Some(ToolChoice::None) => json!({"type": "none"}),
        Some(ToolChoice::Tool(name)) => json!({"type": "tool", "name": name}),
        Some(_) => json!({"type": "auto"}),
        None if req.parallel_tool_calls == Some(false) && !req.tools.is_empty() => {
            json!({"type": "auto"})
        }
        None => return None,
    };
    if req.parallel_tool_calls == Some(false) && choice["type"] != "none" {
        choice["disable_parallel_tool_use"] = json!(true);
    }
    Some(choice)
}

/// The `/v1/messages` body of `req`. `max_tokens` defaults to [`DEFAULT_MAX_TOKENS`]; `user`
/// becomes `metadata.user_id`; `seed` and `response_format` have no Anthropic equivalent and
/// are not sent; `extra` (e.g. `thinking`, `top_k`, `metadata`) is merged in as it is.
pub fn chat_body(req: &ChatRequest, stream: bool) -> Value {
    chat_body_with_default(req, stream, DEFAULT_MAX_TOKENS)
}

/// [`chat_body`] with another default for `max_tokens`.
pub fn chat_body_with_default(req: &ChatRequest, stream: bool, default_max_tokens: u32) -> Value {
    let (messages, system) = messages_json(&req.messages);
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert("messages".into(), Value::Array(messages));
    body.insert(
        "max_tokens".into(),
        json!(req.max_tokens.unwrap_or(default_max_tokens)),
    );
    if let Some(s) = system {
        body.insert("system".into(), json!(s));
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if !req.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(req.stop));
    }
    if !req.tools.is_empty() {
        body.insert(
            "tools".into(),
            Value::Array(req.tools.iter().map(tool_json).collect()),
        );
    }
    if let Some(c) = tool_choice_json(req) {
        body.insert("tool_choice".into(), c);
    }
    if let Some(u) = &req.user {
        body.insert("metadata".into(), json!({"user_id": u}));
    }
    if stream {
        body.insert("stream".into(), json!(true));
    }
    for (k, v) in &req.extra {
        body.insert(k.clone(), v.clone());
    }
    Value::Object(body)
}

/// The `/v1/messages/count_tokens` body of `req`: the prompt fields only (model, messages,
/// system, tools, tool choice, thinking).
pub fn count_tokens_body(req: &ChatRequest) -> Value {
    let full = chat_body(req, false);
    let mut body = Map::new();
    for k in [
        "model",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
    ] {
        if let Some(v) = full.get(k) {
            body.insert(k.into(), v.clone());
        }
    }
    Value::Object(body)
}

/// Enables extended thinking with `budget_tokens` (sets `extra.thinking`; the API wants
/// `max_tokens` above the budget, so it is raised to budget + 1024 when lower).
pub fn with_thinking(mut req: ChatRequest, budget_tokens: u32) -> ChatRequest {
    req.extra.insert(
        "thinking".into(),
        json!({"type": "enabled", "budget_tokens": budget_tokens}),
    );
    let min = budget_tokens.saturating_add(1024);
    if req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS) <= budget_tokens {
        req.max_tokens = Some(min);
    }
    req
}

/// Usage from an Anthropic `usage` object. `input_tokens` is the whole prompt: uncached input
/// plus `cache_read_input_tokens` plus `cache_creation_input_tokens` (Anthropic reports them
/// apart; core's `input_tokens` includes cached tokens); the two cache counts are also kept in
/// `cached_input_tokens` and `cache_creation_input_tokens`.
pub fn usage_from(u: &Value) -> Usage {
    let get = |k: &str| u.get(k).and_then(Value::as_u64);
    let read = get("cache_read_input_tokens");
    let created = get("cache_creation_input_tokens");
    let mut usage = Usage::new(
        get("input_tokens").unwrap_or(0) + read.unwrap_or(0) + created.unwrap_or(0),
        get("output_tokens").unwrap_or(0),
    );
    usage.cached_input_tokens = read;
    usage.cache_creation_input_tokens = created;
    usage
}

/// The core finish reason of an Anthropic `stop_reason`.
pub fn finish_reason(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// The part of a block that is not text, thinking or a client tool call: a server tool's call
/// (`server_tool_use`) or result (`web_search_tool_result`, `code_execution_tool_result`, any
/// `*_tool_result` with a `tool_use_id`), or a block this version does not know, kept raw.
fn whole_block_part(b: &Value) -> ContentPart {
    let ty = b.get("type").and_then(Value::as_str).unwrap_or("");
    let s = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_owned);
    match (ty, s("tool_use_id")) {
        ("server_tool_use", _) => ContentPart::ServerToolCall {
            id: s("id").unwrap_or_default(),
            name: s("name").unwrap_or_default(),
            input: b.get("input").cloned().unwrap_or_else(|| json!({})),
        },
        (t, Some(tool_use_id)) if t.ends_with("_tool_result") => ContentPart::ServerToolResult {
            tool_use_id,
            raw: b.clone(),
        },
        _ => ContentPart::Other { raw: b.clone() },
    }
}

/// The citations of a text block, as parts.
fn citation_parts(b: &Value) -> impl Iterator<Item = ContentPart> + '_ {
    b.get("citations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| ContentPart::Citation { raw: c.clone() })
}

/// The content parts and tool calls of an Anthropic `content` array.
fn content_from(blocks: &[Value]) -> (Vec<ContentPart>, Vec<ToolCall>) {
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for b in blocks {
        let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        match b.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => {
                parts.push(ContentPart::Text { text: s("text") });
                parts.extend(citation_parts(b));
            }
            "thinking" => parts.push(ContentPart::Thinking {
                text: s("thinking"),
                signature: b
                    .get("signature")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            }),
            "redacted_thinking" => parts.push(ContentPart::RedactedThinking { data: s("data") }),
            "tool_use" => calls.push(ToolCall::new(
                s("id"),
                s("name"),
                b.get("input")
                    .map_or_else(|| "{}".to_owned(), Value::to_string),
            )),
            _ => parts.push(whole_block_part(b)),
        }
    }
    (parts, calls)
}

/// A `/v1/messages` answer.
pub fn parse_chat(body: &[u8]) -> Result<ChatResponse> {
    let v: Value = serde_json::from_slice(body).map_err(|e| decode_err("invalid message", e))?;
    if v.get("type").and_then(Value::as_str) == Some("error") {
        return Err(embedded_error(v.get("error").unwrap_or(&v)));
    }
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| decode_err("invalid message", "no content array"))?;
    let (parts, calls) = content_from(blocks);
    let mut message = Message::assistant_tool_calls(calls);
    message.content = parts;
    let model = v.get("model").and_then(Value::as_str).unwrap_or("");
    let mut resp = ChatResponse::new(model, message);
    resp.id = v.get("id").and_then(Value::as_str).map(str::to_owned);
    resp.finish_reason = v
        .get("stop_reason")
        .and_then(Value::as_str)
        .map(finish_reason);
    resp.usage = v.get("usage").map(usage_from);
    Ok(resp)
}

/// The `input_tokens` of a `/v1/messages/count_tokens` answer.
pub fn parse_count_tokens(body: &[u8]) -> Result<u64> {
    let v: Value = serde_json::from_slice(body).map_err(|e| decode_err("invalid count", e))?;
    v.get("input_tokens")
        .and_then(Value::as_u64)
        .ok_or_else(|| decode_err("invalid count", "no input_tokens"))
}

/// A `/v1/models` page.
pub fn parse_models(body: &[u8]) -> Result<ModelList> {
    let v: Value = serde_json::from_slice(body).map_err(|e| decode_err("invalid models", e))?;
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| decode_err("invalid models", "no data array"))?;
    let models = data
        .iter()
        .filter_map(|m| {
            let mut info = ModelInfo::new(m.get("id")?.as_str()?);
            info.owned_by = Some("anthropic".to_owned());
            info.created = m
                .get("created_at")
                .and_then(Value::as_str)
                .and_then(infermux_http::parse_rfc3339)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_secs()).ok());
            Some(info)
        })
        .collect();
    Ok(ModelList::new(models))
}

/// The `after_id` of the next `/v1/models` page: the page's `last_id` when `has_more`.
pub fn next_models_page(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    if v.get("has_more").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    v.get("last_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The typed error of an Anthropic error object (`{"type": "overloaded_error", "message": ..}`),
/// as found in an `error` event inside a 200 stream or an error body.
pub fn embedded_error(error: &Value) -> Error {
    let ty = error.get("type").and_then(Value::as_str).unwrap_or("");
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("error event in stream");
    let status = match ty {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    };
    let kind = infermux_http::kind_for_status(status, message, Some(ty));
    let mut e = Error::new(kind, message.to_owned()).with_reached_server(true);
    if !ty.is_empty() {
        e = e.with_provider_code(ty);
    }
    e
}

/// The state of one streamed answer: turns each SSE event (name and data) into core events.
///
/// Block indexes of `tool_use` blocks are renumbered 0, 1, … as tool-call indexes; text deltas
/// become `TextDelta`, thinking deltas `ReasoningDelta`, a `signature_delta` a
/// `ReasoningSignature` (so the signed block can be sent back), a `redacted_thinking` block a
/// `Part` with [`ContentPart::RedactedThinking`]. Server tools (web search, code execution,
/// web fetch) arrive as a `Part` each at their block's end: a `server_tool_use` block (its
/// input streamed as `input_json_delta`) as [`ContentPart::ServerToolCall`], a
/// `*_tool_result` block as [`ContentPart::ServerToolResult`]; a text block's citations
/// (`citations_delta`) follow its text as [`ContentPart::Citation`]s; a block type this
/// version does not know is kept raw as [`ContentPart::Other`], and unknown delta and event
/// types are skipped. Usage from `message_start` and `message_delta` is merged and sent as one
/// `Usage` event before `Done`.
#[derive(Debug, Default)]
pub struct ChatStreamState {
    tool_index: Vec<(u64, u32)>,
    /// Blocks that arrive whole at their `content_block_stop`: the block and its streamed input.
    open: Vec<(u64, Value, String)>,
    /// Citations of text blocks, sent after the block's text.
    citations: Vec<(u64, Value)>,
    usage: Option<Value>,
    finish: Option<FinishReason>,
    text: String,
    done: bool,
}

impl ChatStreamState {
    /// A fresh state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `message_stop` was seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The answer text so far (attached to stream errors).
    pub fn text(&self) -> &str {
        &self.text
    }

    fn merge_usage(&mut self, u: &Value) {
        let Some(obj) = u.as_object() else { return };
        let mut cur = self.usage.take().unwrap_or_else(|| json!({}));
        for (k, v) in obj {
            if !v.is_null() {
                cur[k] = v.clone();
            }
        }
        self.usage = Some(cur);
    }

    /// The parts of the block at `index` that were waiting for its end (or of every waiting
    /// block, for `None`).
    fn close(&mut self, index: Option<u64>, out: &mut Vec<StreamEvent>) {
        let here = |i: u64| index.is_none_or(|x| x == i);
        let mut i = 0;
        while i < self.open.len() {
            if !here(self.open[i].0) {
                i += 1;
                continue;
            }
            let (_, mut block, input) = self.open.remove(i);
            if !input.trim().is_empty() {
                block["input"] = serde_json::from_str(&input).unwrap_or(Value::String(input));
            }
            out.push(StreamEvent::Part {
                part: whole_block_part(&block),
            });
        }
        let (mine, rest) = std::mem::take(&mut self.citations)
            .into_iter()
            .partition(|(i, _)| here(*i));
        self.citations = rest;
        out.extend(mine.into_iter().map(|(_, c)| StreamEvent::Part {
            part: ContentPart::Citation { raw: c },
        }));
    }

    /// The events of one SSE event. `event` is the SSE event name (falls back to the data's
    /// `type`).
    pub fn on_event(&mut self, event: Option<&str>, data: &str) -> Result<Vec<StreamEvent>> {
        let v: Value = serde_json::from_str(data).map_err(|e| decode_err("invalid event", e))?;
        let ty = event
            .filter(|e| !e.is_empty() && *e != "message")
            .or_else(|| v.get("type").and_then(Value::as_str))
            .unwrap_or("");
        let mut out = Vec::new();
        match ty {
            "message_start" => {
                let m = v.get("message").unwrap_or(&Value::Null);
                if let Some(u) = m.get("usage") {
                    self.merge_usage(u);
                }
                out.push(StreamEvent::Start {
                    id: m.get("id").and_then(Value::as_str).map(str::to_owned),
                    model: m.get("model").and_then(Value::as_str).map(str::to_owned),
                });
            }
            "content_block_start" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let b = v.get("content_block").unwrap_or(&Value::Null);
                let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("");
                match s("type") {
                    "tool_use" => {
                        let ti = u32::try_from(self.tool_index.len()).unwrap_or(u32::MAX);
                        self.tool_index.push((index, ti));
                        // `input` is `{}` here; the arguments follow as input_json_delta
                        out.push(StreamEvent::ToolCallDelta {
                            index: ti,
                            id: b.get("id").and_then(Value::as_str).map(str::to_owned),
                            name: b.get("name").and_then(Value::as_str).map(str::to_owned),
                            arguments: String::new(),
                        });
                    }
                    "text" => {
                        let t = s("text");
                        if !t.is_empty() {
                            self.text.push_str(t);
                            out.push(StreamEvent::TextDelta { text: t.to_owned() });
                        }
                        for c in b
                            .get("citations")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            self.citations.push((index, c.clone()));
                        }
                    }
                    "thinking" => {
                        let t = s("thinking");
                        if !t.is_empty() {
                            out.push(StreamEvent::ReasoningDelta { text: t.to_owned() });
                        }
                        let sig = s("signature");
                        if !sig.is_empty() {
                            out.push(StreamEvent::ReasoningSignature {
                                signature: sig.to_owned(),
                            });
                        }
                    }
                    "redacted_thinking" => out.push(StreamEvent::Part {
                        part: ContentPart::RedactedThinking {
                            data: s("data").to_owned(),
                        },
                    }),
                    // server tool calls and results, and blocks added later: whole at their end
                    _ => self.open.push((index, b.clone(), String::new())),
                }
            }
            "content_block_delta" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let d = v.get("delta").unwrap_or(&Value::Null);
                let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                match d.get("type").and_then(Value::as_str).unwrap_or("") {
                    "text_delta" => {
                        let t = s("text");
                        self.text.push_str(&t);
                        out.push(StreamEvent::TextDelta { text: t });
                    }
                    "input_json_delta" => {
                        if let Some(ti) = self
                            .tool_index
                            .iter()
                            .find(|(b, _)| *b == index)
                            .map(|(_, t)| *t)
                        {
                            out.push(StreamEvent::ToolCallDelta {
                                index: ti,
                                id: None,
                                name: None,
                                arguments: s("partial_json"),
                            });
                        } else if let Some((_, _, input)) =
                            self.open.iter_mut().find(|(b, _, _)| *b == index)
                        {
                            // a server tool's input (web search query, code to run)
                            input.push_str(&s("partial_json"));
                        }
                    }
                    "thinking_delta" => out.push(StreamEvent::ReasoningDelta {
                        text: s("thinking"),
                    }),
                    "signature_delta" => out.push(StreamEvent::ReasoningSignature {
                        signature: s("signature"),
                    }),
                    "citations_delta" => {
                        if let Some(c) = d.get("citation") {
                            self.citations.push((index, c.clone()));
                        }
                    }
                    // delta types added later
                    _ => {}
                }
            }
            "content_block_stop" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                self.close(Some(index), &mut out);
            }
            "message_delta" => {
                if let Some(r) = v
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    self.finish = Some(finish_reason(r));
                }
                if let Some(u) = v.get("usage") {
                    self.merge_usage(u);
                }
            }
            "message_stop" => {
                // blocks a server left open still reach the caller
                self.close(None, &mut out);
                if let Some(u) = &self.usage {
                    out.push(StreamEvent::Usage(usage_from(u)));
                }
                out.push(StreamEvent::Done {
                    finish_reason: self.finish.clone(),
                });
                self.done = true;
            }
            "error" => {
                let e = embedded_error(v.get("error").unwrap_or(&v));
                return Err(if self.text.is_empty() {
                    e
                } else {
                    e.with_partial_text(self.text.clone())
                });
            }
            // ping and event types added later
            _ => {}
        }
        Ok(out)
    }

    /// Called when the body ends: an error unless `message_stop` was seen.
    pub fn on_end(&self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        let e = Error::new(ErrorKind::Decode, "stream ended before message_stop");
        Err(if self.text.is_empty() {
            e
        } else {
            e.with_partial_text(self.text.clone())
        })
    }
}

// ---- the inverse: recorded request bodies as core requests -------------------------------

fn request_err(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidRequest,
        format!("not a Messages request: {what}"),
    )
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n\n"),
        _ => String::new(),
    }
}

fn parts_of(content: &Value) -> Vec<ContentPart> {
    let blocks = match content {
        Value::String(s) => return vec![ContentPart::text(s.clone())],
        Value::Array(b) => b,
        _ => return Vec::new(),
    };
    let mut parts = Vec::new();
    for b in blocks {
        let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        match b.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => parts.push(ContentPart::text(s("text"))),
            "image" => {
                let src = b.get("source").unwrap_or(&Value::Null);
                let g = |k: &str| src.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                match src.get("type").and_then(Value::as_str) {
                    Some("base64") => {
                        parts.push(ContentPart::image_base64(g("media_type"), g("data")))
                    }
                    Some("url") => parts.push(ContentPart::image_url(g("url"))),
                    _ => {}
                }
            }
            "thinking" => parts.push(ContentPart::Thinking {
                text: s("thinking"),
                signature: b
                    .get("signature")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            }),
            "redacted_thinking" => parts.push(ContentPart::RedactedThinking { data: s("data") }),
            // documents and other block types have no core part
            _ => {}
        }
    }
    parts
}

/// A recorded `/v1/messages` (or `count_tokens`) body as a [`ChatRequest`]: `system` becomes a
/// system message, `tool_result` blocks tool messages, `tool_use` blocks tool calls; fields
/// without a core equivalent (`thinking`, `metadata`, `top_k`, `cache_control`, …) go to
/// `extra`. Document blocks have no core part and are dropped.
pub fn chat_request_from_json(v: &Value) -> Result<ChatRequest> {
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| request_err("no model"))?;
    let wire_msgs = v
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| request_err("no messages"))?;
    let mut messages = Vec::new();
    if let Some(sys) = v.get("system") {
        messages.push(Message::system(text_of(sys)));
    }
    for m in wire_msgs {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = m.get("content").unwrap_or(&Value::Null);
        if role == "assistant" {
            let blocks = match content {
                Value::Array(b) => b.clone(),
                other => vec![json!({"type": "text", "text": text_of(other)})],
            };
            let (parts, calls) = content_from(&blocks);
            let mut msg = Message::assistant_tool_calls(calls);
            msg.content = parts;
            messages.push(msg);
            continue;
        }
        let mut rest = Vec::new();
        for b in content.as_array().map(Vec::as_slice).unwrap_or(&[]) {
            if b.get("type").and_then(Value::as_str) == Some("tool_result") {
                let id = b.get("tool_use_id").and_then(Value::as_str).unwrap_or("");
                let text = text_of(b.get("content").unwrap_or(&Value::Null));
                messages.push(Message::tool_result(id, text));
            } else {
                rest.push(b.clone());
            }
        }
        if content.is_string() {
            messages.push(Message::user(text_of(content)));
        } else if !rest.is_empty() {
            messages.push(Message::user_parts(parts_of(&Value::Array(rest))));
        }
    }
    let mut req = ChatRequest::new(model, messages);
    req.max_tokens = v
        .get("max_tokens")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok());
    req.temperature = v
        .get("temperature")
        .and_then(Value::as_f64)
        .map(|t| t as f32);
    req.top_p = v.get("top_p").and_then(Value::as_f64).map(|t| t as f32);
    req.stop = v
        .get("stop_sequences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    req.tools = v
        .get("tools")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    let name = t.get("name")?.as_str()?;
                    let mut tool = Tool::new(
                        name,
                        t.get("description").and_then(Value::as_str).unwrap_or(""),
                        t.get("input_schema")
                            .cloned()
                            .unwrap_or_else(|| json!({"type": "object"})),
                    );
                    if tool.description.as_deref() == Some("") {
                        tool.description = None;
                    }
                    Some(tool)
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(tc) = v.get("tool_choice") {
        req.tool_choice = match tc.get("type").and_then(Value::as_str) {
            Some("any") => Some(ToolChoice::Required),
            Some("none") => Some(ToolChoice::None),
            Some("tool") => tc
                .get("name")
                .and_then(Value::as_str)
                .map(|n| ToolChoice::Tool(n.to_owned())),
            _ => Some(ToolChoice::Auto),
        };
        if tc.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true) {
            req.parallel_tool_calls = Some(false);
        }
    }
    req.user = v
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    const KNOWN: [&str; 12] = [
        "model",
        "messages",
        "system",
        "max_tokens",
        "temperature",
        "top_p",
        "stop_sequences",
        "tools",
        "tool_choice",
        "stream",
        "metadata",
        "user",
    ];
    if let Some(obj) = v.as_object() {
        for (k, val) in obj {
            if !KNOWN.contains(&k.as_str()) {
                req.extra.insert(k.clone(), val.clone());
            }
        }
    }
    Ok(req)
}

/// Whether a recorded request body asks for a stream.
pub fn request_streams(v: &Value) -> bool {
    v.get("stream").and_then(Value::as_bool) == Some(true)
}
