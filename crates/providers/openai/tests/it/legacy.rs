//! The OpenAI wire code as it was before the typed rewrite (f117165): the Responses API body
//! built as a `serde_json::Value` and its answers and events read through `Value`s, and the
//! chat body's `max_completion_tokens` rename done on a `Value`. Kept as the oracle the typed
//! code must match.

#![allow(dead_code, unused_imports, clippy::all)]

use infermux_openai::responses::response_error;
use infermux_openai_compat::wire;

use infermux_core::{
    ChatRequest, ChatResponse, ContentPart, Error, ErrorKind, FinishReason, ImageSource, Message,
    ResponseFormat, Result, Role, StreamEvent, Tool, ToolCall, ToolChoice, Usage,
};
use serde_json::{Map, Value, json};

fn input_part(p: &ContentPart, role: &Role) -> Value {
    match p {
        ContentPart::Text { text } if *role == Role::Assistant => {
            json!({"type": "output_text", "text": text})
        }
        ContentPart::Text { text } => json!({"type": "input_text", "text": text}),
        ContentPart::Image { source, detail } => {
            let url = match source {
                ImageSource::Url { url } => url.clone(),
                ImageSource::Base64 { media_type, data } => {
                    format!("data:{media_type};base64,{data}")
                }
                _ => String::new(),
            };
            json!({"type": "input_image", "image_url": url, "detail": detail.as_deref().unwrap_or("auto")})
        }
        ContentPart::Refusal { text } => json!({"type": "refusal", "refusal": text}),
        _ => Value::Null,
    }
}

/// The JSON body of a Responses API request for a chat request.
pub(crate) fn responses_body(req: &ChatRequest, stream: bool) -> Value {
    let mut b = Map::new();
    b.insert("model".into(), json!(req.model));
    let mut instructions = Vec::new();
    let mut input = Vec::new();
    for m in &req.messages {
        match m.role {
            Role::System | Role::Developer => instructions.push(m.text()),
            Role::Tool => input.push(json!({
                "type": "function_call_output",
                "call_id": m.tool_call_id.clone().unwrap_or_default(),
                "output": m.text(),
            })),
            _ => {
                let parts: Vec<Value> = m
                    .content
                    .iter()
                    .map(|p| input_part(p, &m.role))
                    .filter(|v| !v.is_null())
                    .collect();
                if !parts.is_empty() {
                    // (since: only among the parts `input` takes — a citation or reasoning
                    // beside the text no longer makes it a list of parts)
                    let only_text = m
                        .content
                        .iter()
                        .filter(|p| !input_part(p, &m.role).is_null())
                        .all(|p| matches!(p, ContentPart::Text { .. }));
                    let content = if only_text {
                        json!(m.text())
                    } else {
                        Value::Array(parts)
                    };
                    input.push(json!({"role": m.role.as_str(), "content": content}));
                }
                for c in &m.tool_calls {
                    input.push(json!({
                        "type": "function_call",
                        "call_id": c.id,
                        "name": c.name,
                        "arguments": c.arguments,
                    }));
                }
            }
        }
    }
    if !instructions.is_empty() {
        b.insert("instructions".into(), json!(instructions.join("\n\n")));
    }
    b.insert("input".into(), Value::Array(input));
    if let Some(t) = req.temperature {
        b.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        b.insert("top_p".into(), json!(p));
    }
    if let Some(n) = req.max_tokens {
        b.insert("max_output_tokens".into(), json!(n));
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut f = json!({"type": "function", "name": t.name, "parameters": t.parameters});
                if let Some(d) = &t.description {
                    f["description"] = json!(d);
                }
                // required by the spec; unset means false, as in chat completions (the
                // Responses API would otherwise default to strict schemas)
                f["strict"] = json!(t.strict.unwrap_or(false));
                f
            })
            .collect();
        b.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &req.tool_choice {
        let v = match choice {
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Tool(name) => json!({"type": "function", "name": name}),
            _ => json!("auto"),
        };
        b.insert("tool_choice".into(), v);
    }
    if let Some(p) = req.parallel_tool_calls {
        b.insert("parallel_tool_calls".into(), json!(p));
    }
    if let Some(f) = &req.response_format {
        let format = match f {
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => {
                let mut s = json!({"type": "json_schema", "name": name, "schema": schema});
                if let Some(st) = strict {
                    s["strict"] = json!(st);
                }
                s
            }
            _ => json!({"type": "text"}),
        };
        b.insert("text".into(), json!({ "format": format }));
    }
    if let Some(u) = &req.user {
        b.insert("user".into(), json!(u));
    }
    if stream {
        b.insert("stream".into(), json!(true));
    }
    for (k, v) in &req.extra {
        // (the rule the typed code gained: an object `extra.text` is merged with the typed
        // format, its own `format` winning)
        if k == "text"
            && let (Some(Value::Object(typed)), Value::Object(extra)) = (b.get_mut("text"), v)
        {
            for (ek, ev) in extra {
                typed.insert(ek.clone(), ev.clone());
            }
            continue;
        }
        b.insert(k.clone(), v.clone());
    }
    Value::Object(b)
}

/// `usage` of a response object.
fn usage_of(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    let mut usage = Usage::new(
        n("input_tokens").unwrap_or(0),
        n("output_tokens").unwrap_or(0),
    );
    usage.cached_input_tokens = u
        .pointer("/input_tokens_details/cached_tokens")
        .and_then(Value::as_u64);
    // (since: the input tokens written to the cache)
    usage.cache_creation_input_tokens = u
        .pointer("/input_tokens_details/cache_write_tokens")
        .and_then(Value::as_u64);
    usage.reasoning_tokens = u
        .pointer("/output_tokens_details/reasoning_tokens")
        .and_then(Value::as_u64);
    usage
}

fn finish_of(
    status: Option<&str>,
    incomplete: Option<&Value>,
    tool_calls: bool,
) -> Option<FinishReason> {
    match status {
        Some("incomplete") => {
            let reason = incomplete
                .and_then(|d| d.get("reason"))
                .and_then(Value::as_str)
                .unwrap_or("");
            Some(match reason {
                "max_output_tokens" => FinishReason::Length,
                "content_filter" => FinishReason::ContentFilter,
                other => FinishReason::Other(other.to_owned()),
            })
        }
        Some("completed") if tool_calls => Some(FinishReason::ToolCalls),
        Some("completed") => Some(FinishReason::Stop),
        Some(other) => Some(FinishReason::Other(other.to_owned())),
        None => None,
    }
}

/// Parses a response object (the body of `POST /responses`, or the `response` of a
/// `response.completed` event).
pub(crate) fn parse_response_value(v: &Value) -> Result<ChatResponse> {
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        return Err(response_error(err));
    }
    let output = v
        .get("output")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::new(ErrorKind::Decode, "response has no output"))?;
    let mut text = String::new();
    let mut refusal = String::new();
    let mut citations: Vec<Value> = Vec::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    let mut raws = Vec::new();
    let mut acts: Option<String> = None;
    for item in output {
        let kind = item.get("type").and_then(Value::as_str);
        if item.is_object() && !matches!(kind, Some("message" | "function_call" | "reasoning")) {
            raws.push(item.clone());
            if let Some(k) = kind.filter(|k| CALLER_ACTS_ON.contains(k)) {
                acts.get_or_insert_with(|| k.to_owned());
            }
            continue;
        }
        match kind {
            Some("message") => {
                for part in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match part.get("type").and_then(Value::as_str) {
                        Some("output_text") => {
                            text.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""));
                            // (since: the sources it cites)
                            citations.extend(
                                part.get("annotations")
                                    .and_then(Value::as_array)
                                    .into_iter()
                                    .flatten()
                                    .filter(|a| a.is_object())
                                    .cloned(),
                            );
                        }
                        Some("refusal") => refusal
                            .push_str(part.get("refusal").and_then(Value::as_str).unwrap_or("")),
                        _ => {}
                    }
                }
            }
            Some("function_call") => calls.push(ToolCall::new(
                item.get("call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                item.get("name").and_then(Value::as_str).unwrap_or_default(),
                item.get("arguments")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            )),
            Some("reasoning") => {
                for s in item
                    .get("summary")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    reasoning.push_str(s.get("text").and_then(Value::as_str).unwrap_or(""));
                }
                for c in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if c.get("type").and_then(Value::as_str) == Some("reasoning_text") {
                        reasoning.push_str(c.get("text").and_then(Value::as_str).unwrap_or(""));
                    }
                }
            }
            _ => {}
        }
    }
    let mut finish = finish_of(
        v.get("status").and_then(Value::as_str),
        v.get("incomplete_details"),
        !calls.is_empty(),
    );
    if finish == Some(FinishReason::Stop)
        && let Some(k) = acts
    {
        finish = Some(FinishReason::Other(k));
    }
    let mut message = Message::assistant_tool_calls(calls);
    if !reasoning.is_empty() {
        message.content.push(ContentPart::Thinking {
            text: reasoning,
            signature: None,
        });
    }
    if !text.is_empty() {
        message.content.push(ContentPart::text(text));
    }
    message.content.extend(
        citations
            .into_iter()
            .map(|raw| ContentPart::Citation { raw }),
    );
    if !refusal.is_empty() {
        message.content.push(ContentPart::Refusal { text: refusal });
    }
    for raw in raws {
        message.content.push(ContentPart::Other { raw });
    }
    // (since: an answer with items only OpenAI reads back names OpenAI as its signer)
    if message.carries_provider_data() {
        message.signer = Some(infermux_core::Signer::OpenAi);
    }
    let mut resp = ChatResponse::new(
        v.get("model").and_then(Value::as_str).unwrap_or_default(),
        message,
    );
    resp.id = v.get("id").and_then(Value::as_str).map(str::to_owned);
    resp.finish_reason = finish;
    resp.usage = v.get("usage").filter(|u| u.is_object()).map(usage_of);
    Ok(resp)
}

/// Parses the body of `POST /responses`.
pub(crate) fn parse_response(body: &[u8]) -> Result<ChatResponse> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("response is not valid JSON: {e}"),
        )
    })?;
    parse_response_value(&v)
}

/// Turns the events of a streamed response into [`StreamEvent`]s: `Start` at the first event,
/// text, refusal, reasoning-summary and function-call deltas, `Usage` and `Done` at
/// `response.completed` (or `response.incomplete`). `error` and `response.failed` are the
/// errors they describe; a stream that ends before the response completed is a `Decode` error
/// with the partial text.
#[derive(Debug, Default)]
pub(crate) struct ResponsesStreamState {
    started: bool,
    done: bool,
    text: String,
    /// output_index → tool-call index, in order of appearance
    calls: Vec<u64>,
    /// The first unmodelled output item that asks the caller to act.
    acts: Option<String>,
    signed: bool,
    /// (since: cited sources, given at the end)
    citations: Vec<Value>,
}

/// Output items that ask the caller to act (as the crate lists them).
const CALLER_ACTS_ON: &[&str] = &[
    "custom_tool_call",
    "computer_call",
    "local_shell_call",
    "shell_call",
    "apply_patch_call",
    "mcp_approval_request",
];

impl ResponsesStreamState {
    /// A fresh state.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Whether the response completed.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    fn call_index(&mut self, output_index: u64) -> u32 {
        let pos = match self.calls.iter().position(|i| *i == output_index) {
            Some(p) => p,
            None => {
                self.calls.push(output_index);
                self.calls.len() - 1
            }
        };
        u32::try_from(pos).unwrap_or(u32::MAX)
    }

    /// Handles one event (`event` is the SSE event name, if any; the type is read from the
    /// payload).
    pub(crate) fn on_event(&mut self, event: Option<&str>, data: &str) -> Result<Vec<StreamEvent>> {
        // (since: `SignedBy` OpenAI before the first item only OpenAI reads back)
        let mut out = self.events_of(event, data)?;
        infermux_core::mark_signer(&mut out, &infermux_core::Signer::OpenAi, &mut self.signed);
        Ok(out)
    }

    fn events_of(&mut self, event: Option<&str>, data: &str) -> Result<Vec<StreamEvent>> {
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" || self.done {
            return Ok(Vec::new());
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!("stream event is not valid JSON: {e}"),
            )
            .with_partial_text(self.text.clone())
        })?;
        let typ = v
            .get("type")
            .and_then(Value::as_str)
            .or(event)
            .unwrap_or("");
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            let resp = v.get("response");
            out.push(StreamEvent::Start {
                id: resp
                    .and_then(|r| r.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                model: resp
                    .and_then(|r| r.get("model"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
        }
        let output_index = v.get("output_index").and_then(Value::as_u64).unwrap_or(0);
        let delta = || {
            v.get("delta")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        match typ {
            "response.output_text.delta" => {
                let text = delta();
                self.text.push_str(&text);
                out.push(StreamEvent::TextDelta { text });
            }
            "response.refusal.delta" => out.push(StreamEvent::RefusalDelta { text: delta() }),
            // (since: a cited source)
            "response.output_text.annotation.added" => {
                if let Some(raw) = v.get("annotation").filter(|a| a.is_object()) {
                    self.citations.push(raw.clone());
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                out.push(StreamEvent::ReasoningDelta { text: delta() });
            }
            "response.output_item.done"
                if !matches!(
                    v.get("item")
                        .filter(|i| i.is_object())
                        .and_then(|i| i.get("type"))
                        .and_then(Value::as_str),
                    Some("message" | "function_call" | "reasoning")
                ) =>
            {
                if let Some(raw) = v.get("item").filter(|r| r.is_object()) {
                    if let Some(k) = raw
                        .get("type")
                        .and_then(Value::as_str)
                        .filter(|k| CALLER_ACTS_ON.contains(k))
                    {
                        self.acts.get_or_insert_with(|| k.to_owned());
                    }
                    out.push(StreamEvent::Part {
                        part: ContentPart::Other { raw: raw.clone() },
                    });
                }
            }
            "response.output_item.added" => {
                let item = v.get("item").cloned().unwrap_or_default();
                if item.get("type").and_then(Value::as_str) == Some("function_call") {
                    let index = self.call_index(output_index);
                    out.push(StreamEvent::ToolCallDelta {
                        index,
                        id: item
                            .get("call_id")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        name: item.get("name").and_then(Value::as_str).map(str::to_owned),
                        arguments: item
                            .get("arguments")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                    });
                }
            }
            "response.function_call_arguments.delta" => {
                let index = self.call_index(output_index);
                out.push(StreamEvent::ToolCallDelta {
                    index,
                    id: None,
                    name: None,
                    arguments: delta(),
                });
            }
            "response.completed" | "response.incomplete" => {
                out.extend(std::mem::take(&mut self.citations).into_iter().map(|raw| {
                    StreamEvent::Part {
                        part: ContentPart::Citation { raw },
                    }
                }));
                let resp = v.get("response").cloned().unwrap_or_default();
                if let Some(u) = resp.get("usage").filter(|u| u.is_object()) {
                    out.push(StreamEvent::Usage(usage_of(u)));
                }
                self.done = true;
                let mut finish = finish_of(
                    resp.get("status").and_then(Value::as_str),
                    resp.get("incomplete_details"),
                    !self.calls.is_empty(),
                );
                if finish == Some(FinishReason::Stop)
                    && let Some(k) = self.acts.clone()
                {
                    finish = Some(FinishReason::Other(k));
                }
                out.push(StreamEvent::Done {
                    finish_reason: finish,
                });
            }
            "response.failed" => {
                let err = v
                    .pointer("/response/error")
                    .cloned()
                    .unwrap_or_else(|| json!({"message": "the response failed"}));
                return Err(response_error(&err).with_partial_text(self.text.clone()));
            }
            "error" => {
                let err = v.get("error").cloned().unwrap_or(v.clone());
                return Err(response_error(&err).with_partial_text(self.text.clone()));
            }
            _ => {}
        }
        Ok(out)
    }

    /// Handles the end of the body.
    pub(crate) fn on_end(&mut self) -> Result<Vec<StreamEvent>> {
        if self.done {
            Ok(Vec::new())
        } else {
            Err(Error::new(
                ErrorKind::Decode,
                "stream ended before the response completed",
            )
            .with_partial_text(self.text.clone()))
        }
    }
}

/// The JSON body of an OpenAI chat-completions request: the shared OpenAI-protocol body with
/// `max_completion_tokens` in place of the deprecated `max_tokens`.
pub(crate) fn chat_body(req: &ChatRequest, stream: bool) -> Value {
    let mut body = wire::chat_body(req, stream);
    if let Value::Object(m) = &mut body
        && !req.extra.contains_key("max_tokens")
        && let Some(n) = m.remove("max_tokens")
    {
        m.entry("max_completion_tokens").or_insert(n);
    }
    body
}
