//! The Gemini API wire format: `generateContent` bodies built from core types (with function
//! schemas cleaned of what Gemini rejects), answers and streamed chunks parsed back, embeddings,
//! token counts, models, and the inverse (a recorded body as a [`ChatRequest`]) that the
//! conformance runner replays recorded traffic with.

use std::time::Duration;

use infermux_core::{
    ChatRequest, ChatResponse, ContentPart, EmbeddingRequest, EmbeddingResponse, Error, ErrorKind,
    FinishReason, ImageSource, Message, ModelInfo, ModelList, ResponseFormat, Result, Role,
    StreamAccumulator, StreamEvent, Tool, ToolCall, ToolChoice, Usage,
};
use serde_json::{Map, Value, json};

fn decode_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Decode, format!("{what}: {e}"))
}

/// `models/{model}` unless the name already has a collection prefix.
pub fn model_path(model: &str) -> String {
    if model.starts_with("models/") || model.starts_with("tunedModels/") {
        model.to_owned()
    } else {
        format!("models/{model}")
    }
}

/// A JSON schema as Gemini accepts it: `$ref`s inlined from `$defs`/`definitions` (recursive
/// references beyond a few levels become a plain object), and `$defs`, `definitions`,
/// `$schema`, `$id` and `additionalProperties` removed everywhere.
pub fn clean_schema(schema: &Value) -> Value {
    let mut defs = Map::new();
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(d)) = schema.get(key) {
            defs.extend(d.clone());
        }
    }
    clean(schema, &defs, 0)
}

fn clean(v: &Value, defs: &Map<String, Value>, depth: usize) -> Value {
    match v {
        Value::Object(obj) => {
            if let Some(Value::String(r)) = obj.get("$ref") {
                let name = r.rsplit('/').next().unwrap_or("");
                return match defs.get(name) {
                    Some(target) if depth < 8 => {
                        let mut inlined = clean(target, defs, depth + 1);
                        // sibling keywords (a description next to the $ref) win
                        if let Value::Object(o) = &mut inlined {
                            for (k, val) in obj {
                                if k != "$ref" {
                                    o.insert(k.clone(), clean(val, defs, depth + 1));
                                }
                            }
                        }
                        inlined
                    }
                    _ => json!({"type": "object"}),
                };
            }
            let mut out = Map::new();
            for (k, val) in obj {
                if matches!(
                    k.as_str(),
                    "$defs" | "definitions" | "$schema" | "$id" | "additionalProperties"
                ) {
                    continue;
                }
                // property names are data, not keywords: clean their schemas only
                out.insert(k.clone(), clean(val, defs, depth));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| clean(i, defs, depth)).collect()),
        other => other.clone(),
    }
}

fn guess_mime(url: &str) -> &'static str {
    let lower = url.to_ascii_lowercase();
    let path = lower.split(['?', '#']).next().unwrap_or("");
    match path.rsplit('.').next().unwrap_or("") {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "pdf" => "application/pdf",
        _ => "image/jpeg",
    }
}

fn image_part(source: &ImageSource) -> Value {
    match source {
        ImageSource::Base64 { media_type, data } => {
            json!({"inlineData": {"mimeType": media_type, "data": data}})
        }
        ImageSource::Url { url } => {
            if let Some(rest) = url.strip_prefix("data:")
                && let Some((meta, data)) = rest.split_once(',')
                && let Some(mime) = meta.strip_suffix(";base64")
            {
                return json!({"inlineData": {"mimeType": mime, "data": data}});
            }
            json!({"fileData": {"mimeType": guess_mime(url), "fileUri": url}})
        }
        _ => json!({"text": ""}),
    }
}

fn part_json(p: &ContentPart) -> Option<Value> {
    Some(match p {
        ContentPart::Text { text } | ContentPart::Refusal { text } => json!({"text": text}),
        ContentPart::Image { source, .. } => image_part(source),
        ContentPart::Thinking { text, signature } => {
            let mut v = json!({"text": text, "thought": true});
            if let Some(s) = signature {
                v["thoughtSignature"] = json!(s);
            }
            v
        }
        _ => return None,
    })
}

/// The parts of a model turn: its content (a signature that came on a text part, kept as an
/// empty signed thinking part after it, goes back on that text part), then its function calls
/// with their `thoughtSignature`s.
fn model_parts(m: &Message) -> Vec<Value> {
    let mut parts: Vec<Value> = Vec::new();
    for p in &m.content {
        if let ContentPart::Thinking {
            text,
            signature: Some(sig),
        } = p
            && text.is_empty()
            && let Some(prev) = parts.last_mut().filter(|q| {
                q.get("thought").is_none()
                    && q.get("text").is_some()
                    && q.get("thoughtSignature").is_none()
            })
        {
            prev["thoughtSignature"] = json!(sig);
            continue;
        }
        parts.extend(part_json(p));
    }
    parts.retain(|p| {
        p.get("text").and_then(Value::as_str) != Some("") || p.get("thoughtSignature").is_some()
    });
    for c in &m.tool_calls {
        let args = c.parsed_arguments().unwrap_or_else(|_| json!({}));
        let mut fc = json!({"name": c.name, "args": args});
        if !c.id.is_empty() && !c.id.starts_with(GENERATED_ID) {
            fc["id"] = json!(c.id);
        }
        let mut part = json!({"functionCall": fc});
        if let Some(sig) = &c.signature {
            part["thoughtSignature"] = json!(sig);
        }
        parts.push(part);
    }
    parts
}

/// The name of the tool call `id` answers, found in the assistant turns before it.
fn call_name<'a>(messages: &'a [Message], id: &str) -> Option<&'a str> {
    messages
        .iter()
        .flat_map(|m| m.tool_calls.iter())
        .find(|c| c.id == id)
        .map(|c| c.name.as_str())
}

fn contents_json(messages: &[Message]) -> (Vec<Value>, Option<String>) {
    let mut system = Vec::new();
    let mut out: Vec<(&str, Vec<Value>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let (role, parts): (&str, Vec<Value>) = match &m.role {
            Role::System | Role::Developer => {
                system.push(m.text());
                continue;
            }
            Role::Assistant => ("model", model_parts(m)),
            Role::Tool => {
                let id = m.tool_call_id.clone().unwrap_or_default();
                let name = call_name(&messages[..i], &id).unwrap_or(&id).to_owned();
                let text = m.text();
                // Gemini wants an object: JSON objects as they are, anything else wrapped
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(o)) => Value::Object(o),
                    _ => json!({"result": text}),
                };
                let mut fr = json!({"name": name, "response": response});
                if !id.is_empty() && !id.starts_with(GENERATED_ID) {
                    fr["id"] = json!(id);
                }
                ("user", vec![json!({"functionResponse": fr})])
            }
            _ => ("user", m.content.iter().filter_map(part_json).collect()),
        };
        match out.last_mut() {
            Some((r, existing)) if *r == role => existing.extend(parts),
            _ => out.push((role, parts)),
        }
    }
    let contents = out
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect();
    (contents, (!system.is_empty()).then(|| system.join("\n\n")))
}

fn tools_json(tools: &[Tool]) -> Value {
    let decls: Vec<Value> = tools
        .iter()
        .map(|t| {
            let mut d = json!({"name": t.name});
            if let Some(desc) = &t.description {
                d["description"] = json!(desc);
            }
            let empty_object = t
                .parameters
                .get("properties")
                .is_some_and(|p| p.as_object().is_some_and(Map::is_empty));
            if !t.parameters.is_null() && !empty_object {
                d["parameters"] = clean_schema(&t.parameters);
            }
            d
        })
        .collect();
    json!([{"functionDeclarations": decls}])
}

fn tool_config(choice: &ToolChoice) -> Value {
    let cfg = match choice {
        ToolChoice::None => json!({"mode": "NONE"}),
        ToolChoice::Required => json!({"mode": "ANY"}),
        ToolChoice::Tool(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        _ => json!({"mode": "AUTO"}),
    };
    json!({"functionCallingConfig": cfg})
}

/// The `generateContent` / `streamGenerateContent` body of `req`.
///
/// System messages become `systemInstruction`; tool results `functionResponse` parts (the name
/// is looked up from the call they answer); sampling fields go to `generationConfig`;
/// `response_format` JSON becomes `responseMimeType` (and a cleaned `responseSchema`). `extra`
/// is merged at the top level, except `extra.generationConfig`, merged into the generation
/// config (e.g. `thinkingConfig`).
pub fn generate_body(req: &ChatRequest) -> Value {
    let (contents, system) = contents_json(&req.messages);
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    if let Some(s) = system {
        body.insert("systemInstruction".into(), json!({"parts": [{"text": s}]}));
    }
    if !req.tools.is_empty() {
        body.insert("tools".into(), tools_json(&req.tools));
    }
    if let Some(c) = &req.tool_choice {
        body.insert("toolConfig".into(), tool_config(c));
    }
    let mut gen_cfg = Map::new();
    if let Some(t) = req.temperature {
        gen_cfg.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        gen_cfg.insert("topP".into(), json!(p));
    }
    if let Some(n) = req.max_tokens {
        gen_cfg.insert("maxOutputTokens".into(), json!(n));
    }
    if !req.stop.is_empty() {
        gen_cfg.insert("stopSequences".into(), json!(req.stop));
    }
    if let Some(s) = req.seed {
        gen_cfg.insert("seed".into(), json!(s));
    }
    match &req.response_format {
        Some(ResponseFormat::JsonObject) => {
            gen_cfg.insert("responseMimeType".into(), json!("application/json"));
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            gen_cfg.insert("responseMimeType".into(), json!("application/json"));
            gen_cfg.insert("responseSchema".into(), clean_schema(schema));
        }
        _ => {}
    }
    for (k, v) in &req.extra {
        if k == "generationConfig"
            && let Value::Object(extra_cfg) = v
        {
            gen_cfg.extend(extra_cfg.clone());
        } else {
            body.insert(k.clone(), v.clone());
        }
    }
    if !gen_cfg.is_empty() {
        body.insert("generationConfig".into(), Value::Object(gen_cfg));
    }
    Value::Object(body)
}

/// The `countTokens` body of `req`: `contents` alone for a plain conversation, the whole
/// `generateContentRequest` when there is a system instruction or tools (they count too).
pub fn count_tokens_body(req: &ChatRequest) -> Value {
    let full = generate_body(req);
    if full.get("systemInstruction").is_none() && full.get("tools").is_none() {
        return json!({"contents": full["contents"]});
    }
    let mut g = full;
    g["model"] = json!(model_path(&req.model));
    json!({"generateContentRequest": g})
}

/// The `totalTokens` of a `countTokens` answer.
pub fn parse_count_tokens(body: &[u8]) -> Result<u64> {
    let v: Value = serde_json::from_slice(body).map_err(|e| decode_err("invalid count", e))?;
    v.get("totalTokens")
        .and_then(Value::as_u64)
        .ok_or_else(|| decode_err("invalid count", "no totalTokens"))
}

fn embed_request(req: &EmbeddingRequest, text: &str) -> Value {
    let mut r = json!({"model": model_path(&req.model), "content": {"parts": [{"text": text}]}});
    if let Some(d) = req.dimensions {
        r["outputDimensionality"] = json!(d);
    }
    for (k, v) in &req.extra {
        r[k] = v.clone();
    }
    r
}

/// The `batchEmbedContents` body: one request per input (`dimensions` →
/// `outputDimensionality`; `extra`, e.g. `taskType`, merged into each).
pub fn batch_embed_body(req: &EmbeddingRequest) -> Value {
    json!({"requests": req.inputs.iter().map(|t| embed_request(req, t)).collect::<Vec<_>>()})
}

/// The `embedContent` body of one text.
pub fn embed_body(req: &EmbeddingRequest, text: &str) -> Value {
    embed_request(req, text)
}

fn values(v: &Value) -> Result<Vec<f32>> {
    v.get("values")
        .and_then(Value::as_array)
        .ok_or_else(|| decode_err("invalid embedding", "no values"))?
        .iter()
        .map(|x| {
            x.as_f64()
                .map(|f| f as f32)
                .ok_or_else(|| decode_err("invalid embedding", "a value is not a number"))
        })
        .collect()
}

/// A `batchEmbedContents` answer, checked to hold `expected` vectors.
pub fn parse_batch_embeddings(
    body: &[u8],
    model: &str,
    expected: usize,
) -> Result<EmbeddingResponse> {
    let v: Value = serde_json::from_slice(body).map_err(|e| decode_err("invalid embeddings", e))?;
    let embs = v
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or_else(|| decode_err("invalid embeddings", "no embeddings array"))?;
    if embs.len() != expected {
        return Err(decode_err(
            "invalid embeddings",
            format!("{} vectors for {expected} inputs", embs.len()),
        ));
    }
    let vectors = embs.iter().map(values).collect::<Result<Vec<_>>>()?;
    Ok(EmbeddingResponse::new(model, vectors))
}

/// An `embedContent` answer.
pub fn parse_embedding(body: &[u8]) -> Result<Vec<f32>> {
    let v: Value = serde_json::from_slice(body).map_err(|e| decode_err("invalid embedding", e))?;
    values(v.get("embedding").unwrap_or(&Value::Null))
}

/// A `models` page (ids without the `models/` prefix).
pub fn parse_models(body: &[u8]) -> Result<ModelList> {
    let v: Value = serde_json::from_slice(body).map_err(|e| decode_err("invalid models", e))?;
    let models = v
        .get("models")
        .and_then(Value::as_array)
        .ok_or_else(|| decode_err("invalid models", "no models array"))?
        .iter()
        .filter_map(|m| {
            let name = m.get("name")?.as_str()?;
            let mut info = ModelInfo::new(name.strip_prefix("models/").unwrap_or(name));
            info.owned_by = Some("google".to_owned());
            Some(info)
        })
        .collect();
    Ok(ModelList::new(models))
}

/// The `nextPageToken` of a `models` page, when there is a next page.
pub fn next_models_page(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("nextPageToken")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Usage from `usageMetadata`: output includes thinking tokens (`thoughtsTokenCount`, also in
/// `reasoning_tokens`); `cachedContentTokenCount` is `cached_input_tokens`.
pub fn usage_from(u: &Value) -> Usage {
    let get = |k: &str| u.get(k).and_then(Value::as_u64);
    let thoughts = get("thoughtsTokenCount");
    let mut usage = Usage::new(
        get("promptTokenCount").unwrap_or(0),
        get("candidatesTokenCount").unwrap_or(0) + thoughts.unwrap_or(0),
    );
    usage.reasoning_tokens = thoughts;
    usage.cached_input_tokens = get("cachedContentTokenCount");
    usage
}

/// Finish reasons that mean the answer was blocked.
const BLOCKED: [&str; 6] = [
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
];

/// The retry delay of a Google error body (`error.details[]` of type `google.rpc.RetryInfo`,
/// `retryDelay` like `"17s"` or `"0.5s"`).
pub fn retry_delay(body: &Value) -> Option<Duration> {
    let err = match body {
        Value::Array(a) => a.first()?.get("error")?,
        v => v.get("error")?,
    };
    err.get("details")?.as_array()?.iter().find_map(|d| {
        let ty = d.get("@type")?.as_str()?;
        if !ty.ends_with("google.rpc.RetryInfo") {
            return None;
        }
        let s = d.get("retryDelay")?.as_str()?.strip_suffix('s')?;
        let secs: f64 = s.parse().ok()?;
        (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
    })
}

/// Prefix of the ids given to function calls that came without one.
pub const GENERATED_ID: &str = "gemini-call-";

/// The state of one answer, streamed or not: each `GenerateContentResponse` chunk becomes core
/// events. Thought parts are `ReasoningDelta`s; each `functionCall` part is a whole tool call
/// (Gemini does not split arguments) with its `id`, or a generated one; `finishReason` `STOP`
/// with function calls is reported as `ToolCalls`. A part's `thoughtSignature` follows it: a
/// `ToolCallSignature` for a function call, a `ReasoningSignature` for a thought or text part
/// (so the accumulated message sends it back where it came from). A `promptFeedback.blockReason` or a safety
/// finish reason is a `ContentFilter` error carrying the text so far; an `error` object inside
/// the stream is a typed error. The stream ends when the body ends: `Usage` then `Done`, or a
/// `Decode` error when no finish reason was seen (a truncated stream).
#[derive(Debug, Default)]
pub struct GenerateState {
    started: bool,
    calls: u32,
    text: String,
    usage: Option<Usage>,
    finish: Option<String>,
}

impl GenerateState {
    /// A fresh state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The answer text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn with_text(&self, e: Error) -> Error {
        if self.text.is_empty() {
            e
        } else {
            e.with_partial_text(self.text.clone())
        }
    }

    /// The events of one chunk (its JSON text).
    pub fn on_chunk(&mut self, data: &str) -> Result<Vec<StreamEvent>> {
        let v: Value = serde_json::from_str(data).map_err(|e| decode_err("invalid chunk", e))?;
        self.on_value(&v)
    }

    /// The events of one parsed chunk.
    pub fn on_value(&mut self, v: &Value) -> Result<Vec<StreamEvent>> {
        if let Some(err) = v.get("error") {
            let status = err.get("code").and_then(Value::as_u64).unwrap_or(500);
            let status = u16::try_from(status).unwrap_or(500);
            let mut e = infermux_http::error_from_response(
                status,
                &infermux_http::HeaderMap::new(),
                v.to_string().as_bytes(),
            );
            if let Some(d) = retry_delay(v) {
                e = e.with_retry_after(d);
            }
            return Err(self.with_text(e));
        }
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: v
                    .get("responseId")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                model: v
                    .get("modelVersion")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
        }
        if let Some(u) = v.get("usageMetadata") {
            self.usage = Some(usage_from(u));
        }
        if let Some(reason) = v
            .get("promptFeedback")
            .and_then(|f| f.get("blockReason"))
            .and_then(Value::as_str)
        {
            return Err(self.with_text(
                Error::new(
                    ErrorKind::ContentFilter,
                    format!("the prompt was blocked ({reason})"),
                )
                .with_provider_code(reason),
            ));
        }
        let cand = v
            .get("candidates")
            .and_then(Value::as_array)
            .and_then(|c| c.first());
        let Some(cand) = cand else {
            return Ok(out);
        };
        let parts = cand
            .get("content")
            .and_then(|c| c.get("parts"))
            .and_then(Value::as_array);
        for p in parts.map(Vec::as_slice).unwrap_or(&[]) {
            let signature = p
                .get("thoughtSignature")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned);
            if let Some(fc) = p.get("functionCall") {
                let index = self.calls;
                self.calls += 1;
                let id = fc
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("{GENERATED_ID}{index}"), str::to_owned);
                out.push(StreamEvent::ToolCallDelta {
                    index,
                    id: Some(id),
                    name: fc.get("name").and_then(Value::as_str).map(str::to_owned),
                    arguments: fc
                        .get("args")
                        .map_or_else(|| "{}".to_owned(), Value::to_string),
                });
                if let Some(signature) = signature {
                    out.push(StreamEvent::ToolCallSignature { index, signature });
                }
            } else if let Some(t) = p.get("text").and_then(Value::as_str) {
                if p.get("thought").and_then(Value::as_bool) == Some(true) {
                    out.push(StreamEvent::ReasoningDelta { text: t.to_owned() });
                } else if !t.is_empty() {
                    self.text.push_str(t);
                    out.push(StreamEvent::TextDelta { text: t.to_owned() });
                }
                if let Some(signature) = signature {
                    out.push(StreamEvent::ReasoningSignature { signature });
                }
            }
        }
        if let Some(r) = cand.get("finishReason").and_then(Value::as_str) {
            if BLOCKED.contains(&r) {
                return Err(self.with_text(
                    Error::new(
                        ErrorKind::ContentFilter,
                        format!("the answer was blocked (finishReason {r})"),
                    )
                    .with_provider_code(r),
                ));
            }
            self.finish = Some(r.to_owned());
        }
        Ok(out)
    }

    /// The closing events when the body ends.
    pub fn on_end(&mut self) -> Result<Vec<StreamEvent>> {
        let Some(reason) = self.finish.take() else {
            return Err(self.with_text(Error::new(
                ErrorKind::Decode,
                "stream ended without a finish reason",
            )));
        };
        let finish_reason = match reason.as_str() {
            "STOP" if self.calls > 0 => FinishReason::ToolCalls,
            "STOP" => FinishReason::Stop,
            "MAX_TOKENS" => FinishReason::Length,
            other => FinishReason::Other(other.to_owned()),
        };
        let mut out = Vec::new();
        if let Some(u) = self.usage.take() {
            out.push(StreamEvent::Usage(u));
        }
        out.push(StreamEvent::Done {
            finish_reason: Some(finish_reason),
        });
        Ok(out)
    }
}

/// A `generateContent` answer, decoded by the same [`GenerateState`] as streams so both give
/// the same result (thought signatures included).
pub fn parse_generate(body: &[u8]) -> Result<ChatResponse> {
    let v: Value = serde_json::from_slice(body).map_err(|e| decode_err("invalid answer", e))?;
    let mut st = GenerateState::new();
    let mut acc = StreamAccumulator::new();
    for ev in st.on_value(&v)?.iter().chain(st.on_end()?.iter()) {
        acc.push(ev);
    }
    Ok(acc.finish())
}

// ---- the inverse: recorded request bodies as core requests -------------------------------

fn get<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    v.get(camel).or_else(|| v.get(snake))
}

fn text_of(content: &Value) -> String {
    content
        .get("parts")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n\n")
        })
        .unwrap_or_default()
}

/// A recorded `generateContent` / `streamGenerateContent` / `countTokens` body as a
/// [`ChatRequest`] for `model` (taken from the URL). Accepts camelCase and snake_case field
/// names; `functionCall` parts become tool calls and `functionResponse` parts tool messages;
/// fields without a core equivalent (`safetySettings`, `toolConfig` details, other
/// `generationConfig` fields) go to `extra`.
pub fn chat_request_from_json(model: &str, v: &Value) -> Result<ChatRequest> {
    let v = get(v, "generateContentRequest", "generate_content_request").unwrap_or(v);
    let contents = v.get("contents").and_then(Value::as_array).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidRequest,
            "not a Gemini request: no contents",
        )
    })?;
    let mut messages = Vec::new();
    if let Some(s) = get(v, "systemInstruction", "system_instruction") {
        messages.push(Message::system(text_of(s)));
    }
    let mut n = 0;
    for c in contents {
        let role = c.get("role").and_then(Value::as_str).unwrap_or("user");
        let parts = c
            .get("parts")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut content = Vec::new();
        let mut calls = Vec::new();
        for p in parts {
            if let Some(fc) = get(p, "functionCall", "function_call") {
                let id = fc.get("id").and_then(Value::as_str).map_or_else(
                    || {
                        n += 1;
                        format!("{GENERATED_ID}{n}")
                    },
                    str::to_owned,
                );
                let mut call = ToolCall::new(
                    id,
                    fc.get("name").and_then(Value::as_str).unwrap_or(""),
                    fc.get("args")
                        .map_or_else(|| "{}".to_owned(), Value::to_string),
                );
                call.signature = get(p, "thoughtSignature", "thought_signature")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                calls.push(call);
            } else if let Some(fr) = get(p, "functionResponse", "function_response") {
                let name = fr.get("name").and_then(Value::as_str).unwrap_or("");
                let id = fr.get("id").and_then(Value::as_str).unwrap_or(name);
                let text = fr
                    .get("response")
                    .map_or_else(String::new, Value::to_string);
                messages.push(Message::tool_result(id, text));
            } else if let Some(d) = get(p, "inlineData", "inline_data") {
                let s = |k: &str, k2: &str| {
                    get(d, k, k2)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                };
                content.push(ContentPart::image_base64(
                    s("mimeType", "mime_type"),
                    s("data", "data"),
                ));
            } else if let Some(f) = get(p, "fileData", "file_data") {
                let uri = get(f, "fileUri", "file_uri")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                content.push(ContentPart::image_url(uri));
            } else if let Some(t) = p.get("text").and_then(Value::as_str) {
                if p.get("thought").and_then(Value::as_bool) == Some(true) {
                    content.push(ContentPart::Thinking {
                        text: t.to_owned(),
                        signature: get(p, "thoughtSignature", "thought_signature")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                    });
                } else {
                    content.push(ContentPart::text(t));
                    // a signature on a text part: an empty signed thinking part after it
                    if let Some(sig) =
                        get(p, "thoughtSignature", "thought_signature").and_then(Value::as_str)
                    {
                        content.push(ContentPart::Thinking {
                            text: String::new(),
                            signature: Some(sig.to_owned()),
                        });
                    }
                }
            }
        }
        if role == "model" {
            let mut m = Message::assistant_tool_calls(calls);
            m.content = content;
            messages.push(m);
        } else if !content.is_empty() {
            messages.push(Message::user_parts(content));
        }
    }
    let mut req = ChatRequest::new(model, messages);
    if let Some(tools) = v.get("tools").and_then(Value::as_array) {
        for t in tools {
            let decls = get(t, "functionDeclarations", "function_declarations")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            for d in decls {
                let Some(name) = d.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let mut tool = Tool::new(
                    name,
                    d.get("description").and_then(Value::as_str).unwrap_or(""),
                    d.get("parameters")
                        .cloned()
                        .unwrap_or_else(|| json!({"type": "object"})),
                );
                if tool.description.as_deref() == Some("") {
                    tool.description = None;
                }
                req.tools.push(tool);
            }
        }
    }
    let mut extra_cfg = Map::new();
    if let Some(Value::Object(cfg)) = get(v, "generationConfig", "generation_config") {
        for (k, val) in cfg {
            match k.as_str() {
                "temperature" => req.temperature = val.as_f64().map(|t| t as f32),
                "topP" | "top_p" => req.top_p = val.as_f64().map(|t| t as f32),
                "maxOutputTokens" | "max_output_tokens" => {
                    req.max_tokens = val.as_u64().and_then(|n| u32::try_from(n).ok());
                }
                "stopSequences" | "stop_sequences" => {
                    req.stop = val
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default();
                }
                "seed" => req.seed = val.as_i64(),
                _ => {
                    extra_cfg.insert(k.clone(), val.clone());
                }
            }
        }
    }
    if !extra_cfg.is_empty() {
        req.extra
            .insert("generationConfig".into(), Value::Object(extra_cfg));
    }
    if let Some(obj) = v.as_object() {
        for (k, val) in obj {
            let known = [
                "contents",
                "systemInstruction",
                "system_instruction",
                "tools",
                "generationConfig",
                "generation_config",
                "model",
            ];
            if !known.contains(&k.as_str()) {
                req.extra.insert(k.clone(), val.clone());
            }
        }
    }
    Ok(req)
}

/// The error of a non-2xx answer: [`infermux_http::error_from_response`], with the body's
/// `RetryInfo` delay as retry-after and `API_KEY_INVALID` as `Auth`.
pub fn error_from_response(status: u16, headers: &infermux_http::HeaderMap, body: &[u8]) -> Error {
    let mut e = infermux_http::error_from_response(status, headers, body);
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    if e.retry_after().is_none()
        && let Some(d) = retry_delay(&v)
    {
        e = e.with_retry_after(d);
    }
    if String::from_utf8_lossy(body).contains("API_KEY_INVALID") {
        let mut auth = Error::new(ErrorKind::Auth, e.message().to_owned())
            .with_status(status)
            .with_reached_server(true);
        if let Some(c) = e.provider_code() {
            auth = auth.with_provider_code(c.to_owned());
        }
        e = auth;
    }
    e
}
