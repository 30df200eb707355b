//! The OpenAI chat-completions wire format: request bodies from core types, and responses and
//! stream chunks back to core types. Public so every OpenAI-protocol crate (openai, groq, vllm,
//! opea, the `/v1` modes of ollama, tgi and ovms) reuses it instead of copying it.
//!
//! Tolerant of the usual deviations of compatible servers: missing `object`, `finish_reason: ""`,
//! unknown fields, no `usage`, `content: null`, reasoning in `reasoning_content` or `reasoning`,
//! tool-call ids that are numbers (TGI: `"id": 0`), arguments sent as a JSON object, and
//! `tool_calls` sent as one object instead of a list.
//!
//! The hot path builds no `serde_json::Value`: bodies are typed views of the request
//! ([`ChatBody`], [`CompletionBody`], [`EmbeddingBody`]) serialised straight to bytes, and
//! answers and stream chunks are read into typed structs that borrow from the input.
//! [`chat_body`] and friends return the same bodies as a `Value`, for callers that edit them.
//!
//! **Stability.** This module follows the provider's wire format, not this crate's version:
//! its items may change in any release as the format does. Applications call the provider
//! through [`Provider`](infermux_core::Provider) and the crate's client; the module is public
//! for the workspace's other crates, the conformance runner, and code that needs the raw
//! shapes.

mod body;

pub use body::{ChatBody, CompletionBody, EmbeddingBody, Omitted};

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use infermux_core::{
    ChatRequest, ChatResponse, CompletionRequest, CompletionResponse, ContentPart,
    EmbeddingRequest, EmbeddingResponse, Error, ErrorKind, FinishReason, ImageSource, Message,
    ModelInfo, ModelList, ResponseFormat, Result, Role, StreamEvent, Tool, ToolCall, ToolChoice,
    Usage,
};
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

use crate::json::lenient::{self, Fields, Object, others_are};

/// The JSON body of a chat-completions request. `stream` adds `stream: true` and asks for the
/// usage chunk (`stream_options.include_usage`). The same body as [`ChatBody`], as a `Value`.
pub fn chat_body(req: &ChatRequest, stream: bool) -> Value {
    body::to_value(ChatBody::new(req, stream))
}

/// The JSON body of a legacy completions request ([`CompletionBody`] as a `Value`).
pub fn completion_body(req: &CompletionRequest) -> Value {
    body::to_value(CompletionBody::new(req, false))
}

/// The JSON body of a streamed legacy completions request (with the usage chunk asked for;
/// [`CompletionBody`] as a `Value`).
pub fn completion_stream_body(req: &CompletionRequest) -> Value {
    body::to_value(CompletionBody::new(req, true))
}

/// The JSON body of an embeddings request (floats requested; [`EmbeddingBody`] as a `Value`).
pub fn embedding_body(req: &EmbeddingRequest) -> Value {
    body::to_value(EmbeddingBody::new(req))
}

/// `usage` of any OpenAI-style response, with its details as raw JSON. (The parsers of this
/// module read usage without a `Value`; this type is kept for callers that use it.)
#[derive(Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct WireUsage {
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    /// Completion tokens.
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    /// Details of the prompt tokens.
    #[serde(default)]
    pub prompt_tokens_details: Option<Value>,
    /// Details of the completion tokens.
    #[serde(default)]
    pub completion_tokens_details: Option<Value>,
}

impl WireUsage {
    /// As core usage (cached and reasoning tokens when reported).
    pub fn to_usage(&self) -> Usage {
        let mut u = Usage::new(
            self.prompt_tokens.unwrap_or(0),
            self.completion_tokens.unwrap_or(0),
        );
        u.cached_input_tokens = self
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.get("cached_tokens"))
            .and_then(Value::as_u64);
        u.reasoning_tokens = self
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.get("reasoning_tokens"))
            .and_then(Value::as_u64);
        u
    }
}

/// `usage` as the parsers read it: [`WireUsage`] with its details read in place.
#[derive(Debug, Default, Deserialize)]
struct UsageBody {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Object<TokenDetails>,
    #[serde(default)]
    completion_tokens_details: Object<TokenDetails>,
}

/// `cached_tokens`, `cache_write_tokens` (prompt tokens written to the cache) and
/// `reasoning_tokens` of a details object (each absent unless a non-negative integer).
#[derive(Debug, Default)]
struct TokenDetails {
    cached_tokens: lenient::U64,
    cache_write_tokens: lenient::U64,
    reasoning_tokens: lenient::U64,
}

crate::fields!(TokenDetails {
    "cached_tokens" => cached_tokens,
    "cache_write_tokens" => cache_write_tokens,
    "reasoning_tokens" => reasoning_tokens,
});

impl UsageBody {
    fn to_usage(&self) -> Usage {
        let mut u = Usage::new(
            self.prompt_tokens.unwrap_or(0),
            self.completion_tokens.unwrap_or(0),
        );
        u.cached_input_tokens = self
            .prompt_tokens_details
            .0
            .as_ref()
            .and_then(|d| d.cached_tokens.0);
        u.cache_creation_input_tokens = self
            .prompt_tokens_details
            .0
            .as_ref()
            .and_then(|d| d.cache_write_tokens.0);
        u.reasoning_tokens = self
            .completion_tokens_details
            .0
            .as_ref()
            .and_then(|d| d.reasoning_tokens.0);
        u
    }
}

/// A string borrowed from the input when it holds no escapes; any other type is the error a
/// `String` field gives.
#[derive(Debug, Default)]
struct CowStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(
                self,
                s: &'de str,
            ) -> std::result::Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> std::result::Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

fn owned(s: Option<CowStr<'_>>) -> Option<String> {
    s.map(|s| s.0.into_owned())
}

#[derive(Debug, Default, Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<ArgumentsText>,
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

/// [`id_text`] read in place: a string, a number as text, or `None` for anything else.
fn string_or_number<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Self::Value, E> {
            Ok(Some(s.to_owned()))
        }
        fn visit_string<E: de::Error>(self, s: String) -> std::result::Result<Self::Value, E> {
            Ok(Some(s))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<Self::Value, E> {
            Ok(Some(n.to_string()))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<Self::Value, E> {
            Ok(Some(n.to_string()))
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> std::result::Result<Self::Value, E> {
            Ok(serde_json::Number::from_f64(n).map(|n| n.to_string()))
        }
        others_are!(None; bool, unit, seq, map);
    }
    d.deserialize_any(V)
}

/// `tool_calls` as a list, or as the one object some servers send.
fn one_or_many<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Vec<WireToolCall>>, D::Error> {
    struct V;
    fn neither<E: de::Error>(other: Value) -> E {
        E::custom(format!(
            "tool_calls is neither a list nor an object: {other}"
        ))
    }
    impl<'de> Visitor<'de> for V {
        type Value = Option<Vec<WireToolCall>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list or an object")
        }
        fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(c) = seq.next_element()? {
                out.push(c);
            }
            Ok(Some(out))
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            WireToolCall::deserialize(de::value::MapAccessDeserializer::new(map))
                .map(|c| Some(vec![c]))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Self::Value, E> {
            Err(neither(Value::String(s.to_owned())))
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> std::result::Result<Self::Value, E> {
            Err(neither(Value::Bool(b)))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<Self::Value, E> {
            Err(neither(Value::from(n)))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<Self::Value, E> {
            Err(neither(Value::from(n)))
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> std::result::Result<Self::Value, E> {
            Err(neither(Value::from(n)))
        }
    }
    d.deserialize_any(V)
}

fn arguments_text(v: &Option<Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Tool-call arguments as text: a string as it is, `null` as nothing, anything else as its
/// compact JSON ([`arguments_text`] read in place; only that rare case builds a `Value`).
#[derive(Debug, Default)]
struct ArgumentsText(String);

impl<'de> Deserialize<'de> for ArgumentsText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ArgumentsText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<ArgumentsText, E> {
                Ok(ArgumentsText(s.to_owned()))
            }
            fn visit_string<E: de::Error>(
                self,
                s: String,
            ) -> std::result::Result<ArgumentsText, E> {
                Ok(ArgumentsText(s))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<ArgumentsText, E> {
                Ok(ArgumentsText(String::new()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> std::result::Result<ArgumentsText, E> {
                Ok(ArgumentsText(Value::Bool(b).to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<ArgumentsText, E> {
                Ok(ArgumentsText(Value::from(n).to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<ArgumentsText, E> {
                Ok(ArgumentsText(Value::from(n).to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> std::result::Result<ArgumentsText, E> {
                Ok(ArgumentsText(Value::from(n).to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                seq: A,
            ) -> std::result::Result<ArgumentsText, A::Error> {
                let v = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(ArgumentsText(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<ArgumentsText, A::Error> {
                let v = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ArgumentsText(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

fn arguments(a: Option<ArgumentsText>) -> String {
    a.map(|a| a.0).unwrap_or_default()
}

/// A message's `content` as text: a string, the `text` of each text part of a list, or nothing.
#[derive(Debug, Default)]
struct ContentText(String);

/// The `text` of a content part (absent unless a string), and its `type`.
#[derive(Debug, Default)]
struct PartText<'a>(lenient::Str<'a>, lenient::Str<'a>);

impl PartText<'_> {
    /// The part's text when it is answer text: a part without a `type`, or of type `text` or
    /// `output_text` (a `reasoning` or other part that carries a `text` is not the answer).
    fn answer(&self) -> Option<&str> {
        match self.1.as_deref() {
            None | Some("text" | "output_text") => self.0.as_deref(),
            Some(_) => None,
        }
    }
}

impl<'de> Fields<'de> for PartText<'de> {
    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<(), A::Error> {
        match key {
            "text" => self.0 = map.next_value()?,
            "type" => self.1 = map.next_value()?,
            _ => lenient::skip_value(map)?,
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for ContentText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ContentText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<ContentText, E> {
                Ok(ContentText(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> std::result::Result<ContentText, E> {
                Ok(ContentText(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<ContentText, A::Error> {
                let mut text = String::new();
                while let Some(part) = seq.next_element::<Object<PartText<'de>>>()? {
                    if let Some(t) = part.0.as_ref().and_then(PartText::answer) {
                        text.push_str(t);
                    }
                }
                Ok(ContentText(text))
            }
            others_are!(ContentText(String::new()); bool, i64, u64, f64, unit, map);
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
struct WireMessage<'a> {
    #[serde(default, borrow)]
    role: Option<CowStr<'a>>,
    #[serde(default)]
    content: Option<ContentText>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    tool_calls: Option<Vec<WireToolCall>>,
    /// The legacy single call (`functions` in the request; `finish_reason: "function_call"`):
    /// read as the one tool call when there is no `tool_calls`. Boxed, as `annotations`: both
    /// are rare, and a stream chunk's delta is moved around.
    #[serde(default, deserialize_with = "legacy_call")]
    function_call: Option<Box<WireFunction>>,
    /// Sources the text cites (`url_citation`s of a web search): each a
    /// [`ContentPart::Citation`] after the text. Read as values only when there are any.
    #[serde(default, deserialize_with = "annotations")]
    #[expect(
        clippy::box_collection,
        reason = "8 bytes in every message and stream delta where a `Vec` is 24: sources are rare"
    )]
    annotations: Option<Box<Vec<Value>>>,
}

/// A message's `function_call`: an object with a name or arguments; anything else (`null`,
/// `"auto"`, `{}`) is none, as an unknown field would be.
fn legacy_call<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Box<WireFunction>>, D::Error> {
    // (a `Value`, built only for this rare field: a name of another type is no name)
    let v = Value::deserialize(d)?;
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let args = v.get("arguments").filter(|a| !a.is_null());
    Ok((name.is_some() || args.is_some()).then(|| {
        Box::new(WireFunction {
            name: name.map(str::to_owned),
            arguments: args.map(|a| ArgumentsText(arguments_text(&Some(a.clone())))),
        })
    }))
}

/// A message's `annotations`: the objects of a list; anything else (`null`, another type, an
/// empty list) is none, as an unknown field would be.
#[expect(
    clippy::box_collection,
    reason = "the field's type: 8 bytes where a `Vec` is 24"
)]
fn annotations<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Box<Vec<Value>>>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => {
            let objects: Vec<Value> = items.into_iter().filter(Value::is_object).collect();
            (!objects.is_empty()).then(|| Box::new(objects))
        }
        _ => None,
    })
}

/// The id of a legacy call (which has none): the answer's id, made a call id, so a
/// follow-up can name it as it names any tool call.
fn legacy_call_id(answer_id: Option<&str>) -> String {
    format!(
        "call_{}",
        answer_id.filter(|id| !id.is_empty()).unwrap_or("function")
    )
}

#[derive(Debug, Default, Deserialize)]
struct WireChoice<'a> {
    #[serde(default)]
    index: Option<u32>,
    /// Boxed: a stream chunk has none, and a choice is moved around.
    #[serde(default, borrow)]
    message: Option<Box<WireMessage<'a>>>,
    #[serde(default, borrow)]
    delta: Option<WireMessage<'a>>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default, borrow)]
    finish_reason: Option<CowStr<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct WireResponse<'a> {
    #[serde(default, borrow)]
    id: Option<CowStr<'a>>,
    #[serde(default, borrow)]
    model: Option<CowStr<'a>>,
    #[serde(default, borrow)]
    choices: Vec<WireChoice<'a>>,
    /// Boxed, as the rest of this answer-sized struct: most chunks carry none.
    #[serde(default)]
    usage: Option<Box<UsageBody>>,
    /// Groq's extension object; its `usage` is where Groq reports a stream's usage.
    #[serde(default)]
    x_groq: Option<Box<XGroq>>,
    #[serde(default)]
    error: Option<Value>,
    /// TGI's kind of an in-band error (`validation`, `overloaded`, `generation`), beside an
    /// `error` that is its message: kept as the error's provider code.
    #[serde(default, borrow)]
    error_type: Option<CowStr<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct XGroq {
    #[serde(default)]
    usage: Option<UsageBody>,
}

impl WireResponse<'_> {
    /// `usage`, or Groq's `x_groq.usage` when the standard field is absent.
    fn usage(&self) -> Option<&UsageBody> {
        self.usage
            .as_deref()
            .or_else(|| self.x_groq.as_ref().and_then(|x| x.usage.as_ref()))
    }
}

/// The finish reason; an error for the reasons that say the server failed the generation
/// (Mistral's `error`, vLLM's `abort`): an answer cut by a failure is one a policy may retry,
/// never one to keep (or cache) as complete.
fn finish_reason(s: &Option<CowStr<'_>>) -> Result<Option<FinishReason>> {
    let Some(r) = s.as_ref().map(|s| &*s.0).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if matches!(r, "error" | "abort") {
        return Err(Error::new(
            ErrorKind::Server,
            format!("the server ended the answer with finish_reason `{r}`"),
        )
        .with_provider_code(r));
    }
    if r == "function_call" {
        // the legacy name of the same ending: the model called a function
        return Ok(Some(FinishReason::ToolCalls));
    }
    Ok(Some(FinishReason::from(r)))
}

fn content_text(v: Option<ContentText>) -> String {
    v.map(|c| c.0).unwrap_or_default()
}

fn decode_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Decode, format!("{what}: {e}"))
}

/// An error object found inside a 2xx body or a stream (`{"error": {...}}`).
pub fn embedded_error(error: &Value) -> Error {
    let wrapped = json!({"error": error});
    let (message, code) = infermux_http::error_body_message(wrapped.to_string().as_bytes());
    let status = error
        .get("status_code")
        .or_else(|| error.get("code"))
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c));
    let typ = error.get("type").and_then(Value::as_str).unwrap_or("");
    let fallback = if typ.contains("invalid_request") || code.as_deref() == Some("tool_use_failed")
    {
        400
    } else {
        500
    };
    let kind =
        infermux_http::kind_for_status(status.unwrap_or(fallback), &message, code.as_deref());
    let mut e = Error::new(kind, message);
    if let Some(c) = code {
        e = e.with_provider_code(c);
    }
    e
}

/// The choice of `index` 0 (or without one), else the first listed: servers may list choices
/// out of order. `empty` is the error's message when there is none.
fn first_choice<'a>(
    mut choices: Vec<WireChoice<'a>>,
    empty: &'static str,
) -> Result<WireChoice<'a>> {
    let at = choices
        .iter()
        .position(|c| c.index.unwrap_or(0) == 0)
        .unwrap_or(0);
    if at >= choices.len() {
        return Err(Error::new(ErrorKind::Decode, empty));
    }
    Ok(choices.swap_remove(at))
}

/// Parses a chat-completions response body.
pub fn parse_chat(body: &[u8]) -> Result<ChatResponse> {
    let w: WireResponse<'_> = infermux_http::json::from_body(body)
        .map_err(|e| decode_err("chat response is not valid JSON", e))?;
    if let Some(err) = &w.error {
        return Err(embedded_error(err));
    }
    let usage = w.usage().map(UsageBody::to_usage);
    // the first choice, as a stream reads it
    let choice = first_choice(w.choices, "chat response has no choices")?;
    let m = choice.message.map(|m| *m).unwrap_or_default();
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
    let text = content_text(m.content);
    if !text.is_empty() {
        content.push(ContentPart::text(text));
    }
    if let Some(r) = m.refusal.filter(|r| !r.is_empty()) {
        content.push(ContentPart::Refusal { text: r });
    }
    content.extend(
        m.annotations
            .into_iter()
            .flat_map(|a| *a)
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
                arguments(c.function.arguments),
            )
        })
        .collect();
    if let (true, Some(f)) = (calls.is_empty(), m.function_call) {
        // a legacy call has no id: one made from the answer's, for the follow-up to name
        calls.push(ToolCall::new(
            legacy_call_id(w.id.as_ref().map(|s| &*s.0)),
            f.name.unwrap_or_default(),
            arguments(f.arguments),
        ));
    }
    let mut message = Message::assistant_tool_calls(calls);
    if let Some(role) = m.role.as_ref() {
        message.role = Role::from(&*role.0);
    }
    message.content = content;
    let mut resp = ChatResponse::new(owned(w.model).unwrap_or_default(), message);
    // an empty id (TGI writes `"id": ""`) is none, as a stream reads it
    resp.id = owned(w.id).filter(|id| !id.is_empty());
    resp.finish_reason = finish_reason(&choice.finish_reason)?;
    resp.usage = usage;
    Ok(resp)
}

/// Parses a legacy completions response body.
pub fn parse_completion(body: &[u8]) -> Result<CompletionResponse> {
    let w: WireResponse<'_> = infermux_http::json::from_body(body)
        .map_err(|e| decode_err("completion response is not valid JSON", e))?;
    if let Some(err) = &w.error {
        return Err(embedded_error(err));
    }
    // the first prompt's answer
    let choice = first_choice(w.choices, "completion response has no choices")?;
    let mut resp = CompletionResponse::new(
        owned(w.model).unwrap_or_default(),
        choice.text.unwrap_or_default(),
    );
    resp.id = owned(w.id);
    resp.finish_reason = finish_reason(&choice.finish_reason)?;
    resp.usage = w.usage.map(|u| u.to_usage());
    Ok(resp)
}

/// An embedding as sent: floats, base64 little-endian `f32`, or neither.
enum EmbeddingField {
    Floats(Vec<f32>),
    /// A list holding something other than a number.
    NonNumber,
    Base64(String),
    Other,
}

impl<'de> Deserialize<'de> for EmbeddingField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EmbeddingField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<EmbeddingField, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                let mut numbers = true;
                while let Some(lenient::F64(x)) = seq.next_element()? {
                    match x {
                        Some(x) if numbers => out.push(x as f32),
                        _ => numbers = false,
                    }
                }
                Ok(if numbers {
                    EmbeddingField::Floats(out)
                } else {
                    EmbeddingField::NonNumber
                })
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<EmbeddingField, E> {
                Ok(EmbeddingField::Base64(s.to_owned()))
            }
            others_are!(EmbeddingField::Other; bool, i64, u64, f64, unit, map);
        }
        d.deserialize_any(V)
    }
}

/// Parses an embeddings response body (float arrays or base64 little-endian f32).
pub fn parse_embeddings(body: &[u8], expected: usize) -> Result<EmbeddingResponse> {
    #[derive(Deserialize)]
    struct Item {
        #[serde(default)]
        index: Option<usize>,
        embedding: EmbeddingField,
    }
    #[derive(Deserialize)]
    struct Wire<'a> {
        #[serde(default, borrow)]
        model: Option<CowStr<'a>>,
        data: Vec<Item>,
        #[serde(default)]
        usage: Option<UsageBody>,
    }
    let w: Wire<'_> = infermux_http::json::from_body(body)
        .map_err(|e| decode_err("embeddings response is not valid JSON", e))?;
    let mut items: Vec<(usize, Vec<f32>)> = Vec::with_capacity(w.data.len());
    for (pos, item) in w.data.into_iter().enumerate() {
        let v = match item.embedding {
            EmbeddingField::Floats(v) => v,
            EmbeddingField::NonNumber => {
                return Err(Error::new(
                    ErrorKind::Decode,
                    "embedding holds a non-number",
                ));
            }
            EmbeddingField::Base64(b64) => {
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
            EmbeddingField::Other => {
                return Err(Error::new(
                    ErrorKind::Decode,
                    "embedding is neither an array nor base64",
                ));
            }
        };
        items.push((item.index.unwrap_or(pos), v));
    }
    if items.len() != expected {
        return Err(Error::new(
            ErrorKind::Decode,
            format!("{} embeddings returned for {expected} inputs", items.len()),
        ));
    }
    // each input's vector in its place: an index out of range, or given twice (a proxy
    // numbering each chunk from 0), is an error — never a vector handed to another input
    // (with batching, to another caller)
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for (i, v) in items {
        match slots.get_mut(i) {
            Some(slot @ None) => *slot = Some(v),
            Some(Some(_)) => {
                return Err(Error::new(
                    ErrorKind::Decode,
                    format!("embedding index {i} is given twice"),
                ));
            }
            None => {
                return Err(Error::new(
                    ErrorKind::Decode,
                    format!("embedding index {i} is past the {expected} inputs"),
                ));
            }
        }
    }
    // (as many items as slots, none twice: every slot is filled)
    let mut resp = EmbeddingResponse::new(
        owned(w.model).unwrap_or_default(),
        slots.into_iter().flatten().collect(),
    );
    resp.usage = w.usage.map(|u| u.to_usage());
    resp.same_dimension()
}

/// Parses a `/models` response body.
pub fn parse_models(body: &[u8]) -> Result<ModelList> {
    #[derive(Deserialize)]
    struct Item {
        id: String,
        #[serde(default)]
        owned_by: Option<String>,
        #[serde(default)]
        created: Option<i64>,
        #[serde(default)]
        parent: Option<String>,
    }
    #[derive(Deserialize)]
    struct Wire {
        data: Vec<Item>,
    }
    let w: Wire = infermux_http::json::from_body(body)
        .map_err(|e| decode_err("models response is not valid JSON", e))?;
    Ok(ModelList::new(
        w.data
            .into_iter()
            .map(|i| {
                let mut m = ModelInfo::new(i.id);
                m.owned_by = i.owned_by;
                m.created = i.created;
                m.parent = i.parent;
                m
            })
            .collect(),
    ))
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
pub struct ChatStreamState {
    end_at_finish: bool,
    started: bool,
    finish: Option<FinishReason>,
    done: bool,
    text: String,
    /// The answer's id, for a legacy call's.
    id: Option<String>,
    /// `tool_calls` were seen: a `function_call` is not read beside them.
    tool_calls: bool,
    /// A legacy call's id was given (on its first piece).
    legacy_started: bool,
    /// Cited sources, held until the text ends (at the finish reason or the end), so that
    /// a streamed answer's parts are those of the same answer read whole.
    citations: Vec<Value>,
}

impl ChatStreamState {
    /// A fresh state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The text streamed so far (a stream error carries it as its partial text).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// A state that also accepts the end of the body, without `[DONE]`, as the end of the
    /// answer once a finish reason has been seen.
    pub fn ending_at_finish_reason() -> Self {
        ChatStreamState {
            end_at_finish: true,
            ..Self::default()
        }
    }

    /// Whether `[DONE]` was seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Handles one `data:` payload.
    pub fn on_data(&mut self, data: &str) -> Result<Vec<StreamEvent>> {
        let data = data.trim();
        if data.is_empty() || self.done {
            return Ok(Vec::new());
        }
        if data == "[DONE]" {
            self.done = true;
            return Ok(self.ending());
        }
        let chunk: WireResponse<'_> = serde_json::from_str(data).map_err(|e| {
            decode_err("stream chunk is not valid JSON", e).with_partial_text(self.text.clone())
        })?;
        if let Some(err) = &chunk.error {
            let mut e = embedded_error(err);
            if let Some(t) = chunk.error_type.as_ref().filter(|t| !t.0.is_empty())
                && e.provider_code().is_none()
            {
                e = e.with_provider_code(&*t.0);
            }
            return Err(e.with_partial_text(self.text.clone()));
        }
        let mut out = Vec::new();
        let id = chunk.id.as_ref().map(|s| &s.0).filter(|s| !s.is_empty());
        let model = chunk.model.as_ref().map(|s| &s.0).filter(|s| !s.is_empty());
        // Azure opens with a chunk of no choices and an empty id and model (its prompt
        // filter results): the start waits for a chunk that names them, or carries content
        if self.id.is_none() {
            self.id = id.map(|s| s.clone().into_owned());
        }
        if !self.started && (id.is_some() || model.is_some() || !chunk.choices.is_empty()) {
            self.started = true;
            out.push(StreamEvent::Start {
                id: id.map(|s| s.clone().into_owned()),
                model: model.map(|s| s.clone().into_owned()),
            });
        }
        let usage = chunk.usage().map(UsageBody::to_usage);
        for choice in chunk
            .choices
            .into_iter()
            .filter(|c| c.index.unwrap_or(0) == 0)
        {
            // a legacy-completions chunk carries `text` instead of a delta
            if let Some(text) = choice.text.filter(|t| !t.is_empty()) {
                self.text.push_str(&text);
                out.push(StreamEvent::TextDelta { text });
            }
            if let Some(d) = choice.delta {
                if let Some(r) = d
                    .reasoning_content
                    .or(d.reasoning)
                    .filter(|r| !r.is_empty())
                {
                    out.push(StreamEvent::ReasoningDelta { text: r });
                }
                let text = content_text(d.content);
                if !text.is_empty() {
                    self.text.push_str(&text);
                    out.push(StreamEvent::TextDelta { text });
                }
                if let Some(r) = d.refusal.filter(|r| !r.is_empty()) {
                    out.push(StreamEvent::RefusalDelta { text: r });
                }
                // (given after the text, as a whole answer has them)
                self.citations
                    .extend(d.annotations.into_iter().flat_map(|a| *a));
                self.tool_calls |= d.tool_calls.as_ref().is_some_and(|c| !c.is_empty());
                let legacy = !self.tool_calls;
                for (pos, c) in d.tool_calls.into_iter().flatten().enumerate() {
                    out.push(StreamEvent::ToolCallDelta {
                        index: c.index.unwrap_or(pos as u32),
                        id: c.id.filter(|s| !s.is_empty()),
                        name: c.function.name.filter(|s| !s.is_empty()),
                        arguments: arguments(c.function.arguments),
                    });
                }
                if let (true, Some(f)) = (legacy, d.function_call) {
                    // the legacy single call, in pieces like a tool call's; its id, made
                    // from the answer's, on the first
                    let id = (!std::mem::replace(&mut self.legacy_started, true))
                        .then(|| legacy_call_id(self.id.as_deref()));
                    out.push(StreamEvent::ToolCallDelta {
                        index: 0,
                        id,
                        name: f.name.filter(|s| !s.is_empty()),
                        arguments: arguments(f.arguments),
                    });
                }
            }
            if let Some(f) = finish_reason(&choice.finish_reason)
                .map_err(|e| e.with_partial_text(self.text.clone()))?
            {
                self.finish = Some(f);
            }
        }
        if let Some(u) = usage {
            out.push(StreamEvent::Usage(u));
        }
        Ok(out)
    }

    /// The last events: the cited sources held back, then `Done`.
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

    /// Handles the end of the body.
    pub fn on_end(&mut self) -> Result<Vec<StreamEvent>> {
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

// ---------------------------------------------------------------------------------------------
// Request bodies back to core types (the inverse of `chat_body` and friends): used to replay
// recorded traffic and by servers that accept the OpenAI protocol.

fn request_err(what: &str) -> Error {
    Error::new(ErrorKind::InvalidRequest, what.to_owned())
}

fn parts_from_json(content: &Value) -> Vec<ContentPart> {
    match content {
        Value::String(s) => vec![ContentPart::text(s.clone())],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") | Some("input_text") => p
                    .get("text")
                    .and_then(Value::as_str)
                    .map(|t| ContentPart::text(t.to_owned())),
                Some("image_url") => {
                    let img = p.get("image_url")?;
                    let url = img.get("url").and_then(Value::as_str).or(img.as_str())?;
                    let source = match url
                        .strip_prefix("data:")
                        .and_then(|rest| rest.split_once(";base64,"))
                    {
                        Some((media_type, data)) => ImageSource::Base64 {
                            media_type: media_type.to_owned(),
                            data: data.to_owned(),
                        },
                        None => ImageSource::Url {
                            url: url.to_owned(),
                        },
                    };
                    Some(ContentPart::Image {
                        source,
                        detail: img.get("detail").and_then(Value::as_str).map(str::to_owned),
                    })
                }
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

fn message_from_json(v: &Value) -> Result<Message> {
    let role = v
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| request_err("a message has no role"))?;
    let mut m = Message::new(Role::from(role), "");
    m.content = v.get("content").map(parts_from_json).unwrap_or_default();
    if let Some(r) = v.get("refusal").and_then(Value::as_str) {
        m.content.push(ContentPart::Refusal { text: r.to_owned() });
    }
    m.name = v.get("name").and_then(Value::as_str).map(str::to_owned);
    m.tool_call_id = v.get("tool_call_id").and_then(id_text);
    if let Some(calls) = v.get("tool_calls").and_then(Value::as_array) {
        m.tool_calls = calls
            .iter()
            .map(|c| {
                let f = c.get("function").cloned().unwrap_or_default();
                ToolCall::new(
                    c.get("id").and_then(id_text).unwrap_or_default(),
                    f.get("name").and_then(Value::as_str).unwrap_or_default(),
                    arguments_text(&f.get("arguments").cloned()),
                )
            })
            .collect();
    }
    Ok(m)
}

fn take_f32(v: &Value, key: &str) -> Option<f32> {
    v.get(key).and_then(Value::as_f64).map(|f| f as f32)
}

fn take_u32(v: &Value, key: &str) -> Option<u32> {
    v.get(key)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
}

fn stop_list(v: &Value) -> Vec<String> {
    match v.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(xs)) => xs
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn extras(v: &Value, known: &[&str]) -> Map<String, Value> {
    v.as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| !known.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

const CHAT_KNOWN: &[&str] = &[
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "user",
    "stream",
    "stream_options",
];

/// A chat-completions request body as a core [`ChatRequest`] (fields core does not model go
/// to `extra`; `stream` and `stream_options` are dropped: whether to stream is the caller's
/// choice of [`infermux_core::Provider::stream`]).
pub fn chat_request_from_json(v: &Value) -> Result<ChatRequest> {
    let model = v.get("model").and_then(Value::as_str).unwrap_or_default();
    let messages = v
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| request_err("chat request has no messages"))?
        .iter()
        .map(message_from_json)
        .collect::<Result<Vec<_>>>()?;
    let mut req = ChatRequest::new(model, messages);
    req.temperature = take_f32(v, "temperature");
    req.top_p = take_f32(v, "top_p");
    req.max_tokens = take_u32(v, "max_tokens");
    req.stop = stop_list(v);
    req.seed = v.get("seed").and_then(Value::as_i64);
    if let Some(tools) = v.get("tools").and_then(Value::as_array) {
        for t in tools {
            let Some(f) = t.get("function") else {
                // a non-function tool (web search, ...) is passed on unchanged
                req.extra
                    .entry("tools")
                    .or_insert_with(|| Value::Array(Vec::new()));
                continue;
            };
            let mut tool = Tool::new(
                f.get("name").and_then(Value::as_str).unwrap_or_default(),
                "",
                f.get("parameters").cloned().unwrap_or(json!({})),
            );
            tool.description = f
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned);
            tool.strict = f.get("strict").and_then(Value::as_bool);
            req.tools.push(tool);
        }
        if req.extra.contains_key("tools") {
            // keep the tools exactly as sent when some are not functions
            req.tools.clear();
            req.extra
                .insert("tools".into(), Value::Array(tools.clone()));
        }
    }
    req.tool_choice = match v.get("tool_choice") {
        Some(Value::String(s)) if s == "auto" => Some(ToolChoice::Auto),
        Some(Value::String(s)) if s == "none" => Some(ToolChoice::None),
        Some(Value::String(s)) if s == "required" => Some(ToolChoice::Required),
        Some(c) => c
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Tool(n.to_owned())),
        None => None,
    };
    req.parallel_tool_calls = v.get("parallel_tool_calls").and_then(Value::as_bool);
    req.response_format =
        v.get("response_format")
            .and_then(|f| match f.get("type").and_then(Value::as_str)? {
                "text" => Some(ResponseFormat::Text),
                "json_object" => Some(ResponseFormat::JsonObject),
                "json_schema" => {
                    let s = f.get("json_schema")?;
                    Some(ResponseFormat::JsonSchema {
                        name: s.get("name").and_then(Value::as_str)?.to_owned(),
                        schema: s.get("schema").cloned().unwrap_or(json!({})),
                        strict: s.get("strict").and_then(Value::as_bool),
                    })
                }
                _ => None,
            });
    req.user = v.get("user").and_then(Value::as_str).map(str::to_owned);
    req.extra.extend(extras(v, CHAT_KNOWN));
    Ok(req)
}

/// Whether a request body asks for a streamed answer (`"stream": true`).
pub fn request_streams(v: &Value) -> bool {
    v.get("stream").and_then(Value::as_bool).unwrap_or(false)
}

/// A legacy completions request body as a core [`CompletionRequest`].
pub fn completion_request_from_json(v: &Value) -> Result<CompletionRequest> {
    let (prompt, raw) = match v.get("prompt") {
        Some(Value::String(s)) => (s.clone(), false),
        Some(Value::Array(xs)) if xs.len() == 1 && xs.iter().all(Value::is_string) => (
            xs.first()
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            false,
        ),
        // several prompts or tokens: core models one text prompt; the original is kept in
        // `extra["prompt"]` and sent as it was
        Some(Value::Array(xs)) if !xs.is_empty() => (
            xs.first()
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            true,
        ),
        _ => return Err(request_err("completion request has no prompt")),
    };
    let mut req = CompletionRequest::new(
        v.get("model").and_then(Value::as_str).unwrap_or_default(),
        prompt,
    );
    req.max_tokens = take_u32(v, "max_tokens");
    req.temperature = take_f32(v, "temperature");
    req.stop = stop_list(v);
    req.seed = v.get("seed").and_then(Value::as_i64);
    req.extra = extras(
        v,
        &[
            "model",
            "prompt",
            "max_tokens",
            "temperature",
            "stop",
            "seed",
            "stream",
            "stream_options",
        ],
    );
    if raw && let Some(p) = v.get("prompt") {
        req.extra.insert("prompt".into(), p.clone());
    }
    Ok(req)
}

/// An embeddings request body as a core [`EmbeddingRequest`]. Token-array inputs, which core
/// does not model, are kept in `extra["input"]` (sent as they are) with one placeholder input
/// per vector expected back.
pub fn embedding_request_from_json(v: &Value) -> Result<EmbeddingRequest> {
    let model = v.get("model").and_then(Value::as_str).unwrap_or_default();
    let (inputs, raw) = match v.get("input") {
        Some(Value::String(s)) => (vec![s.clone()], false),
        Some(Value::Array(xs)) if xs.iter().all(Value::is_string) => (
            xs.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            false,
        ),
        Some(Value::Array(xs)) if xs.iter().all(Value::is_number) => (vec![String::new()], true),
        Some(Value::Array(xs)) if xs.iter().all(Value::is_array) => {
            (vec![String::new(); xs.len()], true)
        }
        _ => return Err(request_err("embeddings request has no usable input")),
    };
    let mut req = EmbeddingRequest::new(model, inputs);
    req.dimensions = take_u32(v, "dimensions");
    req.extra = extras(v, &["model", "input", "dimensions"]);
    if raw && let Some(input) = v.get("input") {
        req.extra.insert("input".into(), input.clone());
    }
    Ok(req)
}
