//! The Responses API wire format (`POST /responses`), OpenAI's successor to the Assistants API:
//! request bodies from core chat requests, response objects and stream events back to core
//! types.
//!
//! A chat request becomes `instructions` (system and developer messages) plus `input` items:
//! messages (`input_text` / `input_image` parts), `function_call` items for the assistant's tool
//! calls and `function_call_output` items for tool results. The answer's `output` items are read
//! as text (`output_text` parts), refusals, `function_call`s and `reasoning` summaries; `usage`
//! carries cached and reasoning tokens. Streams are typed SSE events
//! (`response.output_text.delta`, `response.function_call_arguments.delta`,
//! `response.completed`, `error`, `response.failed`, …); unknown events are ignored.

use std::fmt;

use infermux_core::{
    ChatRequest, ChatResponse, ContentPart, Error, ErrorKind, FinishReason, ImageSource, Message,
    ResponseFormat, Result, Role, Signer, StreamEvent, Tool, ToolCall, ToolChoice, Usage,
};
use infermux_openai_compat::json::lenient::{self, List, Object};
use infermux_openai_compat::json::{F32AsF64, ObjectWriter};
use infermux_openai_compat::wire::Omitted;
use serde::de::Deserialize;
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::{Value, json};

/// The JSON body of a Responses API request for a chat request ([`ResponsesBody`] as a
/// `Value`).
pub fn responses_body(req: &ChatRequest, stream: bool) -> Value {
    serde_json::to_value(ResponsesBody::new(req, stream)).unwrap_or(Value::Null)
}

/// The body of a Responses API request, borrowed from a chat request and serialised straight
/// to JSON: what [`responses_body`] returns as a `Value`, without building one. System and
/// developer messages become `instructions`, the others `input` items; a field of the
/// request's `extra` replaces the body's field of the same name.
#[derive(Debug, Clone, Copy)]
pub struct ResponsesBody<'a> {
    req: &'a ChatRequest,
    stream: bool,
    omitted: Omitted,
}

impl<'a> ResponsesBody<'a> {
    /// The body of `req`, streamed or not.
    pub fn new(req: &'a ChatRequest, stream: bool) -> Self {
        ResponsesBody {
            req,
            stream,
            omitted: Omitted::NONE,
        }
    }

    /// Leaves the typed fields in `omitted` out (`temperature`, `top_p`,
    /// `parallel_tool_calls`; the Responses API has no `stop` or `seed`). A field of the same
    /// name in the request's `extra` is still sent.
    pub fn omitting(mut self, omitted: Omitted) -> Self {
        self.omitted = omitted;
        self
    }
}

fn is_instruction(m: &Message) -> bool {
    matches!(m.role, Role::System | Role::Developer)
}

impl Serialize for ResponsesBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let r = self.req;
        let o = self.omitted;
        // an object `extra.text` (GPT-5's `verbosity`) is merged with the typed format rather
        // than put in its place (structured output was silently off)
        let extra_text = match r.extra.get("text") {
            Some(Value::Object(t)) if r.response_format.is_some() => Some(t),
            _ => None,
        };
        let mut w = if extra_text.is_some() {
            ObjectWriter::with_fixed(s.serialize_map(None)?, &r.extra, &["text"])
        } else {
            ObjectWriter::new(s.serialize_map(None)?, &r.extra)
        };
        w.field("input", &Input(&r.messages))?;
        if r.messages.iter().any(is_instruction) {
            w.field("instructions", &Instructions(&r.messages))?;
        }
        w.opt("max_output_tokens", r.max_tokens.as_ref())?;
        w.field("model", r.model.as_str())?;
        let parallel = o.keep(Omitted::PARALLEL_TOOL_CALLS, r.parallel_tool_calls.as_ref());
        w.opt("parallel_tool_calls", parallel)?;
        if self.stream {
            w.field("stream", &true)?;
        }
        let temperature = o.keep(Omitted::TEMPERATURE, r.temperature).map(F32AsF64);
        w.opt("temperature", temperature.as_ref())?;
        if let Some(f) = &r.response_format {
            match extra_text {
                Some(t) => {
                    let mut t = t.clone();
                    if !t.contains_key("format") {
                        let format = serde_json::to_value(Format(f))
                            .map_err(<S::Error as serde::ser::Error>::custom)?;
                        t.insert("format".into(), format);
                    }
                    w.field("text", &t)?;
                }
                None => w.field("text", &TextFormat { format: Format(f) })?,
            }
        }
        w.opt("tool_choice", r.tool_choice.as_ref().map(Choice).as_ref())?;
        if !r.tools.is_empty() {
            w.field("tools", &Tools(&r.tools))?;
        }
        w.opt(
            "top_p",
            o.keep(Omitted::TOP_P, r.top_p).map(F32AsF64).as_ref(),
        )?;
        w.opt("user", r.user.as_deref())?;
        w.end()
    }
}

fn texts(m: &Message) -> impl Iterator<Item = &str> {
    m.content.iter().filter_map(|p| match p {
        ContentPart::Text { text } => Some(text.as_str()),
        _ => None,
    })
}

/// A message's text parts as one string ([`Message::text`], without allocating for one part).
struct MessageText<'a>(&'a Message);

impl Serialize for MessageText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut t = texts(self.0);
        match (t.next(), t.next()) {
            (None, _) => s.serialize_str(""),
            (Some(one), None) => s.serialize_str(one),
            _ => s.collect_str(&Joined(std::slice::from_ref(self.0), "")),
        }
    }
}

/// The text of messages joined by a separator.
struct Joined<'a, I>(I, &'a str);

impl<'m, I: Clone + IntoIterator<Item = &'m Message>> fmt::Display for Joined<'_, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.0.clone().into_iter().enumerate() {
            if i > 0 {
                f.write_str(self.1)?;
            }
            texts(m).try_for_each(|t| f.write_str(t))?;
        }
        Ok(())
    }
}

/// The system and developer messages' text, joined by blank lines.
struct Instructions<'a>(&'a [Message]);

impl Serialize for Instructions<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut it = self.0.iter().filter(|m| is_instruction(m));
        match (it.next(), it.next()) {
            (Some(one), None) => MessageText(one).serialize(s),
            _ => s.collect_str(&Joined(self.0.iter().filter(|m| is_instruction(m)), "\n\n")),
        }
    }
}

/// The `input` items: messages, the assistant's function calls, function call outputs.
struct Input<'a>(&'a [Message]);

#[derive(serde::Serialize)]
struct CallOutput<'a> {
    call_id: &'a str,
    output: MessageText<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(serde::Serialize)]
struct InputMessage<'a> {
    content: InputContent<'a>,
    role: &'a str,
}

#[derive(serde::Serialize)]
struct FunctionCall<'a> {
    arguments: &'a str,
    call_id: &'a str,
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// A part the Responses API takes (text, image, refusal); others have no place in `input`.
fn is_input_part(p: &ContentPart) -> bool {
    matches!(
        p,
        ContentPart::Text { .. } | ContentPart::Image { .. } | ContentPart::Refusal { .. }
    )
}

impl Serialize for Input<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for m in self.0 {
            match m.role {
                Role::System | Role::Developer => {}
                Role::Tool => seq.serialize_element(&CallOutput {
                    call_id: m.tool_call_id.as_deref().unwrap_or_default(),
                    output: MessageText(m),
                    kind: "function_call_output",
                })?,
                _ => {
                    if m.content.iter().any(is_input_part) {
                        seq.serialize_element(&InputMessage {
                            content: InputContent(m),
                            role: m.role.as_str(),
                        })?;
                    }
                    for c in &m.tool_calls {
                        seq.serialize_element(&FunctionCall {
                            arguments: &c.arguments,
                            call_id: &c.id,
                            name: &c.name,
                            kind: "function_call",
                        })?;
                    }
                }
            }
        }
        seq.end()
    }
}

/// A message's content: its text when it holds only text, else its parts.
struct InputContent<'a>(&'a Message);

#[derive(serde::Serialize)]
struct TextPart<'a> {
    text: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(serde::Serialize)]
struct ImagePart<'a> {
    detail: &'a str,
    image_url: ImageUrl<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(serde::Serialize)]
struct RefusalPart<'a> {
    refusal: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// An image as a URL: its own, or a `data:` URL of its bytes.
struct ImageUrl<'a>(&'a ImageSource);

impl Serialize for ImageUrl<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            ImageSource::Url { url } => s.serialize_str(url),
            ImageSource::Base64 { media_type, data } => {
                s.collect_str(&format_args!("data:{media_type};base64,{data}"))
            }
            _ => s.serialize_str(""),
        }
    }
}

impl Serialize for InputContent<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let m = self.0;
        // only text among the parts `input` takes (a citation, reasoning, have no place
        // there): one string, as a turn without them is sent
        if m.content
            .iter()
            .filter(|p| is_input_part(p))
            .all(|p| matches!(p, ContentPart::Text { .. }))
        {
            return MessageText(m).serialize(s);
        }
        let text_kind = if m.role == Role::Assistant {
            "output_text"
        } else {
            "input_text"
        };
        let mut seq = s.serialize_seq(None)?;
        for p in &m.content {
            match p {
                ContentPart::Text { text } => seq.serialize_element(&TextPart {
                    text,
                    kind: text_kind,
                })?,
                ContentPart::Image { source, detail } => seq.serialize_element(&ImagePart {
                    detail: detail.as_deref().unwrap_or("auto"),
                    image_url: ImageUrl(source),
                    kind: "input_image",
                })?,
                ContentPart::Refusal { text } => seq.serialize_element(&RefusalPart {
                    refusal: text,
                    kind: "refusal",
                })?,
                _ => {}
            }
        }
        seq.end()
    }
}

struct Tools<'a>(&'a [Tool]);

#[derive(serde::Serialize)]
struct FunctionTool<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    name: &'a str,
    parameters: &'a Value,
    strict: bool,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl Serialize for Tools<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|t| FunctionTool {
            description: t.description.as_deref(),
            name: &t.name,
            parameters: &t.parameters,
            // required by the spec; unset means false, as in chat completions (the
            // Responses API would otherwise default to strict schemas)
            strict: t.strict.unwrap_or(false),
            kind: "function",
        }))
    }
}

/// `"auto"`, `"none"`, `"required"` or `{"name": …, "type": "function"}`.
struct Choice<'a>(&'a ToolChoice);

#[derive(serde::Serialize)]
struct NamedTool<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl Serialize for Choice<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            ToolChoice::None => s.serialize_str("none"),
            ToolChoice::Required => s.serialize_str("required"),
            ToolChoice::Tool(name) => NamedTool {
                name,
                kind: "function",
            }
            .serialize(s),
            _ => s.serialize_str("auto"),
        }
    }
}

#[derive(serde::Serialize)]
struct TextFormat<'a> {
    format: Format<'a>,
}

/// `{"type": "text" | "json_object"}` or `{"name", "schema", "strict"?, "type": "json_schema"}`.
struct Format<'a>(&'a ResponseFormat);

#[derive(serde::Serialize)]
struct Typed {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(serde::Serialize)]
struct SchemaFormat<'a> {
    name: &'a str,
    schema: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl Serialize for Format<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            ResponseFormat::JsonObject => Typed {
                kind: "json_object",
            }
            .serialize(s),
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => SchemaFormat {
                name,
                schema,
                strict: *strict,
                kind: "json_schema",
            }
            .serialize(s),
            _ => Typed { kind: "text" }.serialize(s),
        }
    }
}

fn request_err(what: &str) -> Error {
    Error::new(ErrorKind::InvalidRequest, what.to_owned())
}

fn parts_of(content: &Value) -> Vec<ContentPart> {
    match content {
        Value::String(s) => vec![ContentPart::text(s.clone())],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("input_text" | "output_text" | "text") => p
                    .get("text")
                    .and_then(Value::as_str)
                    .map(|t| ContentPart::text(t.to_owned())),
                Some("input_image") => p
                    .get("image_url")
                    .and_then(Value::as_str)
                    .map(ContentPart::image_url),
                Some("refusal") => p
                    .get("refusal")
                    .and_then(Value::as_str)
                    .map(|t| ContentPart::Refusal { text: t.to_owned() }),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

const KNOWN: &[&str] = &[
    "model",
    "input",
    "instructions",
    "temperature",
    "top_p",
    "max_output_tokens",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "stream",
];

/// A Responses API request body as a core [`ChatRequest`] (the inverse of
/// [`responses_body`]; fields core does not model, and non-function tools, are kept in
/// `extra`).
pub fn chat_request_from_responses_json(v: &Value) -> Result<ChatRequest> {
    let mut messages = Vec::new();
    if let Some(i) = v.get("instructions").and_then(Value::as_str) {
        messages.push(Message::system(i));
    }
    match v.get("input") {
        Some(Value::String(s)) => messages.push(Message::user(s.clone())),
        Some(Value::Array(items)) => {
            for item in items {
                match item.get("type").and_then(Value::as_str) {
                    Some("function_call") => {
                        let call = ToolCall::new(
                            item.get("call_id")
                                .and_then(Value::as_str)
                                .unwrap_or_default(),
                            item.get("name").and_then(Value::as_str).unwrap_or_default(),
                            item.get("arguments")
                                .and_then(Value::as_str)
                                .unwrap_or_default(),
                        );
                        match messages.last_mut() {
                            Some(m) if m.role == Role::Assistant => m.tool_calls.push(call),
                            _ => messages.push(Message::assistant_tool_calls(vec![call])),
                        }
                    }
                    Some("function_call_output") => messages.push(Message::tool_result(
                        item.get("call_id")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                        match item.get("output") {
                            Some(Value::String(s)) => s.clone(),
                            Some(other) => other.to_string(),
                            None => String::new(),
                        },
                    )),
                    Some("message") | None => {
                        let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
                        let mut m = Message::new(Role::from(role), "");
                        m.content = item.get("content").map(parts_of).unwrap_or_default();
                        messages.push(m);
                    }
                    // reasoning items and others are sent back as they are
                    Some(_) => {}
                }
            }
        }
        // no input (a continuation by `previous_response_id`): nothing to add
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(request_err(
                "responses request input is neither text nor items",
            ));
        }
    }
    let mut req = ChatRequest::new(
        v.get("model").and_then(Value::as_str).unwrap_or_default(),
        messages,
    );
    req.temperature = v
        .get("temperature")
        .and_then(Value::as_f64)
        .map(|f| f as f32);
    req.top_p = v.get("top_p").and_then(Value::as_f64).map(|f| f as f32);
    req.max_tokens = v
        .get("max_output_tokens")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok());
    let tools = v.get("tools").and_then(Value::as_array);
    if tools
        .into_iter()
        .flatten()
        .all(|t| t.get("type").and_then(Value::as_str) == Some("function"))
    {
        for t in tools.into_iter().flatten() {
            let mut tool = Tool::new(
                t.get("name").and_then(Value::as_str).unwrap_or_default(),
                "",
                t.get("parameters").cloned().unwrap_or(json!({})),
            );
            tool.description = t
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned);
            tool.strict = t.get("strict").and_then(Value::as_bool);
            req.tools.push(tool);
        }
    } else if let Some(t) = tools {
        req.extra.insert("tools".into(), Value::Array(t.clone()));
    }
    req.tool_choice = match v.get("tool_choice") {
        Some(Value::String(s)) if s == "none" => Some(ToolChoice::None),
        Some(Value::String(s)) if s == "required" => Some(ToolChoice::Required),
        Some(Value::String(_)) => Some(ToolChoice::Auto),
        Some(c) => c
            .get("name")
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Tool(n.to_owned())),
        None => None,
    };
    req.parallel_tool_calls = v.get("parallel_tool_calls").and_then(Value::as_bool);
    req.user = v.get("user").and_then(Value::as_str).map(str::to_owned);
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            if !KNOWN.contains(&k.as_str()) {
                req.extra.insert(k.clone(), val.clone());
            }
        }
    }
    Ok(req)
}

/// `usage` of a response object, read in place.
#[derive(Debug, Default)]
struct UsageFields {
    input_tokens: lenient::U64,
    output_tokens: lenient::U64,
    input_tokens_details: Object<TokenDetails>,
    output_tokens_details: Object<TokenDetails>,
}

#[derive(Debug, Default)]
struct TokenDetails {
    cached_tokens: lenient::U64,
    /// Input tokens written to the prompt cache.
    cache_write_tokens: lenient::U64,
    reasoning_tokens: lenient::U64,
}

lenient::fields!(UsageFields {
    "input_tokens" => input_tokens,
    "output_tokens" => output_tokens,
    "input_tokens_details" => input_tokens_details,
    "output_tokens_details" => output_tokens_details,
});

lenient::fields!(TokenDetails {
    "cached_tokens" => cached_tokens,
    "cache_write_tokens" => cache_write_tokens,
    "reasoning_tokens" => reasoning_tokens,
});

/// `usage` of a response object.
fn usage_of(u: &UsageFields) -> Usage {
    let mut usage = Usage::new(
        u.input_tokens.0.unwrap_or(0),
        u.output_tokens.0.unwrap_or(0),
    );
    usage.cached_input_tokens = u
        .input_tokens_details
        .0
        .as_ref()
        .and_then(|d| d.cached_tokens.0);
    usage.cache_creation_input_tokens = u
        .input_tokens_details
        .0
        .as_ref()
        .and_then(|d| d.cache_write_tokens.0);
    usage.reasoning_tokens = u
        .output_tokens_details
        .0
        .as_ref()
        .and_then(|d| d.reasoning_tokens.0);
    usage
}

/// The error a failed response or an `error` event describes.
pub fn response_error(error: &Value) -> Error {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("the response failed")
        .to_owned();
    let code = error
        .get("code")
        .and_then(Value::as_str)
        .or_else(|| error.get("type").and_then(Value::as_str));
    let status = match code.unwrap_or("") {
        "rate_limit_exceeded" => 429,
        "insufficient_quota" => 429,
        c if c.starts_with("invalid_")
            || c.starts_with("image_")
            || c.ends_with("_image")
            || c.ends_with("_image_format")
            || c == "empty_image_file"
            || c == "unsupported_image_media_type"
            || c == "bio_policy"
            || c == "data_residency_mismatch"
            || c == "failed_to_download_image"
            || c == "invalid_request_error" =>
        {
            400
        }
        "vector_store_timeout" => 504,
        _ => 500,
    };
    let kind = infermux_http::kind_for_status(status, &message, code);
    let mut e = Error::new(kind, message);
    if let Some(c) = code {
        e = e.with_provider_code(c.to_owned());
    }
    e
}

/// `incomplete_details`: its `reason`.
#[derive(Debug, Default)]
struct Incomplete<'a> {
    reason: lenient::Str<'a>,
}

lenient::fields!(Incomplete<'de> {
    "reason" => reason,
});

/// Output items that ask the caller to act (run a tool, approve a call) but that this crate
/// does not model: an answer holding one did not simply stop.
const CALLER_ACTS_ON: &[&str] = &[
    "custom_tool_call",
    "computer_call",
    "local_shell_call",
    "shell_call",
    "apply_patch_call",
    "mcp_approval_request",
];

/// Whether an output item of kind `kind` is one this crate reads (the others are kept raw).
fn modelled(kind: Option<&str>) -> bool {
    matches!(kind, Some("message" | "function_call" | "reasoning"))
}

/// `finish` with an item that asks the caller to act in place of a plain stop.
fn with_caller_item(finish: Option<FinishReason>, acts: Option<&str>) -> Option<FinishReason> {
    match (finish, acts) {
        (Some(FinishReason::Stop), Some(kind)) => Some(FinishReason::Other(kind.to_owned())),
        (f, _) => f,
    }
}

fn finish_of(
    status: Option<&str>,
    incomplete: &Object<Incomplete<'_>>,
    tool_calls: bool,
) -> Option<FinishReason> {
    match status {
        Some("incomplete") => {
            let reason = incomplete
                .0
                .as_ref()
                .and_then(|d| d.reason.as_deref())
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

/// A response object as read: only the fields the answer needs, each absent unless of the
/// expected type (the leniency of reading a `Value`).
#[derive(Debug, Default)]
struct ResponseFields<'a> {
    id: lenient::Str<'a>,
    model: lenient::Str<'a>,
    status: lenient::Str<'a>,
    output: List<Object<OutputItem<'a>>>,
    usage: Object<UsageFields>,
    /// `error` unless absent or `null`: the rare failure, kept as JSON.
    error: Option<Value>,
    incomplete_details: Object<Incomplete<'a>>,
}

lenient::fields!(ResponseFields<'de> {
    "id" => id,
    "model" => model,
    "status" => status,
    "output" => output,
    "usage" => usage,
    "error" => error,
    "incomplete_details" => incomplete_details,
});

/// An `output` item: a message's parts, a function call, or a reasoning summary.
#[derive(Debug, Default)]
struct OutputItem<'a> {
    kind: lenient::Str<'a>,
    content: List<Object<OutputPart<'a>>>,
    call_id: lenient::Str<'a>,
    name: lenient::Str<'a>,
    arguments: lenient::Str<'a>,
    summary: List<Object<OutputPart<'a>>>,
}

lenient::fields!(OutputItem<'de> {
    "type" => kind,
    "content" => content,
    "call_id" => call_id,
    "name" => name,
    "arguments" => arguments,
    "summary" => summary,
});

/// A content part or a summary part.
#[derive(Debug, Default)]
struct OutputPart<'a> {
    kind: lenient::Str<'a>,
    text: lenient::Str<'a>,
    refusal: lenient::Str<'a>,
    /// An `output_text` part's cited sources (`url_citation`, `file_citation`, …).
    annotations: List<Value>,
}

lenient::fields!(OutputPart<'de> {
    "type" => kind,
    "text" => text,
    "refusal" => refusal,
    "annotations" => annotations,
});

fn str_or_empty<'s>(s: &'s lenient::Str<'_>) -> &'s str {
    s.as_deref().unwrap_or_default()
}

/// The answer a response object read with [`ResponseFields`] holds (`None`: not an object);
/// `whole` reads the object as a `Value`, for output items this crate does not model (kept
/// raw).
fn to_response(
    v: Option<ResponseFields<'_>>,
    whole: impl FnOnce() -> Option<Value>,
) -> Result<ChatResponse> {
    let v = v.unwrap_or_default();
    if let Some(err) = v.error.as_ref() {
        return Err(response_error(err));
    }
    let output = v
        .output
        .0
        .ok_or_else(|| Error::new(ErrorKind::Decode, "response has no output"))?;
    let mut text = String::new();
    let mut refusal = String::new();
    let mut reasoning = String::new();
    let mut citations = Vec::new();
    let mut calls = Vec::new();
    let mut unmodelled = Vec::new();
    let mut acts = None;
    for (i, item) in output.into_iter().enumerate() {
        let Some(item) = item.0 else { continue };
        if !modelled(item.kind.as_deref()) {
            unmodelled.push(i);
            if let Some(k) = item.kind.as_deref().filter(|k| CALLER_ACTS_ON.contains(k)) {
                acts.get_or_insert_with(|| k.to_owned());
            }
            continue;
        }
        match item.kind.as_deref() {
            Some("message") => {
                for part in item.content.iter().filter_map(|p| p.0.as_ref()) {
                    match part.kind.as_deref() {
                        Some("output_text") => {
                            text.push_str(str_or_empty(&part.text));
                            citations
                                .extend(part.annotations.iter().filter(|a| a.is_object()).cloned());
                        }
                        Some("refusal") => refusal.push_str(str_or_empty(&part.refusal)),
                        _ => {}
                    }
                }
            }
            Some("function_call") => calls.push(ToolCall::new(
                str_or_empty(&item.call_id),
                str_or_empty(&item.name),
                str_or_empty(&item.arguments),
            )),
            Some("reasoning") => {
                for s in item.summary.iter().filter_map(|s| s.0.as_ref()) {
                    reasoning.push_str(str_or_empty(&s.text));
                }
                // the reasoning itself, where a server shows it (`reasoning_text` parts)
                for part in item.content.iter().filter_map(|p| p.0.as_ref()) {
                    if part.kind.as_deref() == Some("reasoning_text") {
                        reasoning.push_str(str_or_empty(&part.text));
                    }
                }
            }
            _ => {}
        }
    }
    let finish = with_caller_item(
        finish_of(
            v.status.as_deref(),
            &v.incomplete_details,
            !calls.is_empty(),
        ),
        acts.as_deref(),
    );
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
    // the sources the text cites, after it
    message.content.extend(
        citations
            .into_iter()
            .map(|raw| ContentPart::Citation { raw }),
    );
    if !refusal.is_empty() {
        message.content.push(ContentPart::Refusal { text: refusal });
    }
    // output items this crate does not model (a custom tool call, a server tool's result, a
    // newer kind): kept whole, never dropped
    if !unmodelled.is_empty()
        && let Some(whole) = whole()
        && let Some(items) = whole.get("output").and_then(Value::as_array)
    {
        for i in unmodelled {
            if let Some(raw) = items.get(i).filter(|r| r.is_object()) {
                message
                    .content
                    .push(ContentPart::Other { raw: raw.clone() });
            }
        }
    }
    // items only OpenAI reads back: the answer names its provider, so that another provider
    // the conversation goes on with leaves them out (Anthropic refused them as blocks)
    if message.carries_provider_data() {
        message.signer = Some(Signer::OpenAi);
    }
    let mut resp = ChatResponse::new(str_or_empty(&v.model), message);
    resp.id = v.id.into_owned();
    resp.finish_reason = finish;
    resp.usage = v.usage.0.as_ref().map(usage_of);
    Ok(resp)
}

/// Parses a response object (the body of `POST /responses`, or the `response` of a
/// `response.completed` event).
pub fn parse_response_value(v: &Value) -> Result<ChatResponse> {
    let fields = Object::<ResponseFields<'_>>::deserialize(v)
        .map_err(|e| Error::new(ErrorKind::Decode, format!("response is not readable: {e}")))?;
    to_response(fields.0, || Some(v.clone()))
}

/// Parses the body of `POST /responses`.
pub fn parse_response(body: &[u8]) -> Result<ChatResponse> {
    let fields: Object<ResponseFields<'_>> = infermux_http::json::from_body(body).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("response is not valid JSON: {e}"),
        )
    })?;
    to_response(fields.0, || infermux_http::json::from_body(body).ok())
}

/// One stream event as read: its type, the response it carries (`response.created`,
/// `response.completed`, …), the output index, the delta and the item added.
#[derive(Debug, Default)]
struct EventFields<'a> {
    kind: lenient::Str<'a>,
    /// Boxed, as `item`: few events carry one, and every event is moved around.
    response: Object<Box<EventResponse<'a>>>,
    output_index: lenient::U64,
    delta: lenient::Str<'a>,
    item: Object<Box<OutputItem<'a>>>,
    /// `response.output_text.annotation.added`'s source.
    annotation: Option<Value>,
}

lenient::fields!(EventFields<'de> {
    "type" => kind,
    "response" => response,
    "output_index" => output_index,
    "delta" => delta,
    "item" => item,
    "annotation" => annotation,
});

/// The response object of an event: what `Start`, `Usage` and `Done` need.
#[derive(Debug, Default)]
struct EventResponse<'a> {
    id: lenient::Str<'a>,
    model: lenient::Str<'a>,
    status: lenient::Str<'a>,
    usage: Object<UsageFields>,
    incomplete_details: Object<Incomplete<'a>>,
}

lenient::fields!(EventResponse<'de> {
    "id" => id,
    "model" => model,
    "status" => status,
    "usage" => usage,
    "incomplete_details" => incomplete_details,
});

/// Turns the events of a streamed response into [`StreamEvent`]s: `Start` at the first event,
/// text, refusal, reasoning-summary and function-call deltas, `Usage` and `Done` at
/// `response.completed` (or `response.incomplete`). `error` and `response.failed` are the
/// errors they describe; a stream that ends before the response completed is a `Decode` error
/// with the partial text.
#[derive(Debug, Default)]
pub struct ResponsesStreamState {
    started: bool,
    done: bool,
    text: String,
    /// output_index → tool-call index, in order of appearance
    calls: Vec<u64>,
    /// The first output item seen that asks the caller to act and that this crate does not
    /// model (the answer then did not simply stop).
    acts: Option<String>,
    /// Whether `SignedBy` OpenAI went out (before the first item only OpenAI reads back).
    signed: bool,
    /// Cited sources, held until the answer ends (they arrive between pieces of the text: a
    /// part each there would split it).
    citations: Vec<Value>,
}

impl ResponsesStreamState {
    /// A fresh state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The text streamed so far (a stream error carries it as its partial text).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the response completed.
    pub fn is_done(&self) -> bool {
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
    /// payload). Before the first item only OpenAI reads back (an output item kept whole):
    /// `SignedBy` OpenAI, so another provider the conversation goes on with leaves it out.
    pub fn on_event(&mut self, event: Option<&str>, data: &str) -> Result<Vec<StreamEvent>> {
        let mut out = self.events_of(event, data)?;
        infermux_core::mark_signer(&mut out, &Signer::OpenAi, &mut self.signed);
        Ok(out)
    }

    fn events_of(&mut self, event: Option<&str>, data: &str) -> Result<Vec<StreamEvent>> {
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" || self.done {
            return Ok(Vec::new());
        }
        let v: Object<EventFields<'_>> = match serde_json::from_str(data) {
            Ok(v) => v,
            // an `error` event whose data is not JSON (a proxy's text) is still the server's
            // error, with its words: not a decode failure of ours
            Err(_) if event == Some("error") => {
                return Err(infermux_http::error_event(data, &self.text));
            }
            // an event the API does not send (a proxy's `ping`) whose data is not JSON
            // carries nothing it reads
            Err(_) if event.is_some_and(|e| !e.starts_with("response.")) => {
                return Ok(Vec::new());
            }
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Decode,
                    format!("stream event is not valid JSON: {e}"),
                )
                .with_partial_text(self.text.clone()));
            }
        };
        let v = v.into_inner();
        let typ = v.kind.as_deref().or(event).unwrap_or("");
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            let resp = v.response.0.as_ref();
            out.push(StreamEvent::Start {
                id: resp.and_then(|r| r.id.0.as_deref()).map(str::to_owned),
                model: resp.and_then(|r| r.model.0.as_deref()).map(str::to_owned),
            });
        }
        let output_index = v.output_index.0.unwrap_or(0);
        let delta = || str_or_empty(&v.delta).to_owned();
        match typ {
            "response.output_text.delta" => {
                let text = delta();
                self.text.push_str(&text);
                out.push(StreamEvent::TextDelta { text });
            }
            "response.refusal.delta" => out.push(StreamEvent::RefusalDelta { text: delta() }),
            "response.output_text.annotation.added" => {
                self.citations.extend(v.annotation.filter(Value::is_object));
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                out.push(StreamEvent::ReasoningDelta { text: delta() });
            }
            "response.output_item.done"
                if !modelled(v.item.0.as_ref().and_then(|i| i.kind.as_deref())) =>
            {
                // an item this crate does not model: kept whole, never dropped
                let whole: Value = serde_json::from_str(data).unwrap_or_default();
                if let Some(raw) = whole.get("item").filter(|r| r.is_object()) {
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
                let item = v.item.0.as_ref();
                if item.and_then(|i| i.kind.as_deref()) == Some("function_call") {
                    let item = item.map(|i| (&i.call_id, &i.name, &i.arguments));
                    let index = self.call_index(output_index);
                    out.push(StreamEvent::ToolCallDelta {
                        index,
                        id: item.and_then(|i| i.0.as_deref()).map(str::to_owned),
                        name: item.and_then(|i| i.1.as_deref()).map(str::to_owned),
                        arguments: item.and_then(|i| i.2.as_deref()).unwrap_or("").to_owned(),
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
                let resp = v.response.0.map(|r| *r).unwrap_or_default();
                if let Some(u) = resp.usage.0.as_ref() {
                    out.push(StreamEvent::Usage(usage_of(u)));
                }
                self.done = true;
                out.push(StreamEvent::Done {
                    finish_reason: with_caller_item(
                        finish_of(
                            resp.status.as_deref(),
                            &resp.incomplete_details,
                            !self.calls.is_empty(),
                        ),
                        self.acts.as_deref(),
                    ),
                });
            }
            "response.failed" | "error" => {
                // the rare failure: read the whole event as JSON, as it always was
                let v: Value = serde_json::from_str(data).unwrap_or_default();
                let err = if typ == "error" {
                    v.get("error").cloned().unwrap_or(v.clone())
                } else {
                    v.pointer("/response/error")
                        .cloned()
                        .unwrap_or_else(|| json!({"message": "the response failed"}))
                };
                return Err(response_error(&err).with_partial_text(self.text.clone()));
            }
            _ => {}
        }
        Ok(out)
    }

    /// Handles the end of the body.
    pub fn on_end(&mut self) -> Result<Vec<StreamEvent>> {
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
