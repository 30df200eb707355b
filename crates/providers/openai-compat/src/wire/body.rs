//! Request bodies serialised straight from the borrowed core request: no `Value` tree.
//!
//! Every object is written with its keys in ascending order and `extra` merged by
//! [`ObjectWriter`], so the bytes are exactly those of the `serde_json::Map` the bodies used to
//! be built as (numbers included: an `f32` is widened to `f64` as `json!` did).

use std::fmt;

use infermux_core::{
    ChatRequest, CompletionRequest, ContentPart, EmbeddingRequest, ImageSource, Message,
    ResponseFormat, Role, Tool, ToolCall, ToolChoice,
};
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

use crate::json::{F32AsF64, ObjectWriter};

/// The body of a chat-completions request, borrowed from a [`ChatRequest`] and serialised
/// straight to JSON (`HttpRequest::json` takes it as it is): what [`super::chat_body`] returns
/// as a `Value`, without building one. `stream` adds `stream: true` and asks for the usage
/// chunk (`stream_options.include_usage`). A field of the request's `extra` replaces the body's
/// field of the same name.
///
/// A crate that sends more fields wraps it in its own struct with `#[serde(flatten)]`:
///
/// ```
/// use infermux_core::{ChatRequest, Message};
/// use infermux_openai_compat::wire::ChatBody;
///
/// #[derive(serde::Serialize)]
/// struct WithTopK<'a> {
///     #[serde(flatten)]
///     chat: ChatBody<'a>,
///     top_k: u32,
/// }
///
/// let req = ChatRequest::new("m", vec![Message::user("Hi")]);
/// let body = serde_json::to_value(WithTopK { chat: ChatBody::new(&req, false), top_k: 40 }).unwrap();
/// assert_eq!(body["top_k"], 40);
/// assert_eq!(body["messages"][0]["content"], "Hi");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ChatBody<'a> {
    req: &'a ChatRequest,
    stream: bool,
    max_tokens_key: &'static str,
    omitted: Omitted,
}

/// Typed request fields a body leaves out: the sampling parameters some models refuse
/// (OpenAI's reasoning models answer `400 unsupported_parameter` or `unsupported_value` for
/// `temperature`, `top_p`, `stop`…). A set of flags, combined with `|`.
///
/// ```
/// use infermux_openai_compat::wire::Omitted;
/// let o = Omitted::TEMPERATURE | Omitted::STOP;
/// assert!(o.contains(Omitted::STOP) && !o.contains(Omitted::TOP_P));
/// assert_eq!(Omitted::for_param("top_p"), Some(Omitted::TOP_P));
/// assert_eq!(Omitted::for_param("messages"), None);
/// assert_eq!(Omitted::STOP.param_name(), "stop");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Omitted(u8);

impl Omitted {
    /// Nothing left out.
    pub const NONE: Omitted = Omitted(0);
    /// `temperature`.
    pub const TEMPERATURE: Omitted = Omitted(1);
    /// `top_p`.
    pub const TOP_P: Omitted = Omitted(1 << 1);
    /// `stop`.
    pub const STOP: Omitted = Omitted(1 << 2);
    /// `seed`.
    pub const SEED: Omitted = Omitted(1 << 3);
    /// `parallel_tool_calls`.
    pub const PARALLEL_TOOL_CALLS: Omitted = Omitted(1 << 4);

    /// The flags and their fields' names on the wire.
    const NAMED: [(Omitted, &'static str); 5] = [
        (Omitted::TEMPERATURE, "temperature"),
        (Omitted::TOP_P, "top_p"),
        (Omitted::STOP, "stop"),
        (Omitted::SEED, "seed"),
        (Omitted::PARALLEL_TOOL_CALLS, "parallel_tool_calls"),
    ];

    /// The flag of the field named `param` on the wire, if it is one a body can leave out.
    pub fn for_param(param: &str) -> Option<Omitted> {
        Self::NAMED
            .iter()
            .find(|(_, name)| *name == param)
            .map(|(flag, _)| *flag)
    }

    /// The name on the wire of the field one flag stands for (`""` for none or several).
    pub fn param_name(self) -> &'static str {
        Self::NAMED
            .iter()
            .find(|(flag, _)| *flag == self)
            .map_or("", |(_, name)| name)
    }

    /// Whether every flag of `other` is set here.
    pub fn contains(self, other: Omitted) -> bool {
        self.0 & other.0 == other.0
    }

    /// `value`, unless `flag` is left out.
    ///
    /// ```
    /// use infermux_openai_compat::wire::Omitted;
    /// assert_eq!(Omitted::TOP_P.keep(Omitted::TEMPERATURE, Some(0.2)), Some(0.2));
    /// assert_eq!(Omitted::TEMPERATURE.keep(Omitted::TEMPERATURE, Some(0.2)), None);
    /// ```
    pub fn keep<T>(self, flag: Omitted, value: Option<T>) -> Option<T> {
        value.filter(|_| !self.contains(flag))
    }

    /// The set of these bits, one per field in the order of the constants above (unknown
    /// bits are dropped).
    pub fn from_bits(bits: u8) -> Omitted {
        Omitted(bits & 0b1_1111)
    }

    /// Whether `req` sets the field `self` (one flag) names: leaving out a field the request
    /// does not send changes nothing.
    pub fn is_set_in(self, req: &ChatRequest) -> bool {
        match self {
            Omitted::TEMPERATURE => req.temperature.is_some(),
            Omitted::TOP_P => req.top_p.is_some(),
            Omitted::STOP => !req.stop.is_empty(),
            Omitted::SEED => req.seed.is_some(),
            Omitted::PARALLEL_TOOL_CALLS => req.parallel_tool_calls.is_some(),
            _ => false,
        }
    }
}

impl std::ops::BitOr for Omitted {
    type Output = Omitted;
    fn bitor(self, rhs: Omitted) -> Omitted {
        Omitted(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Omitted {
    fn bitor_assign(&mut self, rhs: Omitted) {
        self.0 |= rhs.0;
    }
}

impl<'a> ChatBody<'a> {
    /// The body of `req`, streamed or not.
    pub fn new(req: &'a ChatRequest, stream: bool) -> Self {
        ChatBody {
            req,
            stream,
            max_tokens_key: "max_tokens",
            omitted: Omitted::NONE,
        }
    }

    /// Leaves the typed fields in `omitted` out of the body (a field of the same name in the
    /// request's `extra` is still sent: the caller asked for it by name).
    pub fn omitting(mut self, omitted: Omitted) -> Self {
        self.omitted = omitted;
        self
    }

    /// Sends the output token limit under `key` instead of `max_tokens` (OpenAI's
    /// `max_completion_tokens`); an `extra` field named `key` still wins. For the bytes to be
    /// those of a `serde_json::Map`, `key` must sort before `messages`.
    pub fn with_max_tokens_key(mut self, key: &'static str) -> Self {
        self.max_tokens_key = key;
        self
    }

    /// The request the body is built from.
    pub fn request(&self) -> &'a ChatRequest {
        self.req
    }

    /// The name the token limit goes under (`max_tokens`, or the one set with
    /// [`ChatBody::with_max_tokens_key`]).
    pub fn max_tokens_key(&self) -> &'static str {
        self.max_tokens_key
    }
}

impl Serialize for ChatBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.req;
        let o = self.omitted;
        // streamed or not as the call is, whatever `extra` says about `stream` (a plain call
        // answered as SSE, or a stream answered whole, fails to decode)
        let mut w = ObjectWriter::with_fixed(s.serialize_map(None)?, &r.extra, &["stream"]);
        w.opt(self.max_tokens_key, r.max_tokens.as_ref())?;
        w.field("messages", &Messages(&r.messages))?;
        w.field("model", r.model.as_str())?;
        // `parallel_tool_calls` and `tool_choice` only with tools: OpenAI refuses either
        // without them ("only allowed when 'tools' are specified")
        let tools = !r.tools.is_empty() || r.extra.contains_key("tools");
        w.opt(
            "parallel_tool_calls",
            o.keep(Omitted::PARALLEL_TOOL_CALLS, r.parallel_tool_calls.as_ref())
                .filter(|_| tools),
        )?;
        w.opt(
            "response_format",
            r.response_format.as_ref().map(FormatBody).as_ref(),
        )?;
        w.opt("seed", o.keep(Omitted::SEED, r.seed.as_ref()))?;
        if !r.stop.is_empty() && !o.contains(Omitted::STOP) {
            w.field("stop", &r.stop)?;
        }
        if self.stream {
            w.field("stream", &true)?;
            w.field("stream_options", &IncludeUsage)?;
        }
        let temperature = o.keep(Omitted::TEMPERATURE, r.temperature).map(F32AsF64);
        w.opt("temperature", temperature.as_ref())?;
        w.opt(
            "tool_choice",
            r.tool_choice
                .as_ref()
                .filter(|_| tools)
                .map(ToolChoiceBody)
                .as_ref(),
        )?;
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

/// `{"include_usage": true}`.
struct IncludeUsage;

impl Serialize for IncludeUsage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("include_usage", &true)?;
        m.end()
    }
}

/// The messages, each as [`MessageBody`].
struct Messages<'a>(&'a [Message]);

impl Serialize for Messages<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(MessageBody))
    }
}

/// One message: `content` as one string when it holds only text (`null` for an assistant
/// turn that only calls tools), else as `text` and `image_url` parts; the last refusal part as
/// `refusal`; `name`, `tool_calls`, `tool_call_id`.
struct MessageBody<'a>(&'a Message);

fn text_parts(m: &Message) -> impl Iterator<Item = &str> {
    m.content.iter().filter_map(|p| match p {
        ContentPart::Text { text } => Some(text.as_str()),
        _ => None,
    })
}

impl Serialize for MessageBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let mut map = s.serialize_map(None)?;
        let empty_assistant = m.role == Role::Assistant
            && !m.tool_calls.is_empty()
            && text_parts(m).all(str::is_empty);
        // assistant and tool messages take text only (OpenAI refuses an image part there: an
        // image another provider answered with, a screenshot a tool returned)
        let only_text = matches!(m.role, Role::Assistant | Role::Tool)
            || m.content
                .iter()
                .all(|p| !matches!(p, ContentPart::Image { .. }));
        if empty_assistant {
            map.serialize_entry("content", &())?;
        } else if only_text {
            map.serialize_entry("content", &Text(m))?;
        } else {
            map.serialize_entry("content", &Parts(&m.content))?;
        }
        if let Some(name) = &m.name {
            map.serialize_entry("name", name)?;
        }
        let refusal = m.content.iter().rev().find_map(|p| match p {
            ContentPart::Refusal { text } => Some(text),
            _ => None,
        });
        if let Some(r) = refusal {
            map.serialize_entry("refusal", r)?;
        }
        map.serialize_entry("role", m.role.as_str())?;
        if let Some(id) = &m.tool_call_id {
            map.serialize_entry("tool_call_id", id)?;
        }
        if !m.tool_calls.is_empty() {
            map.serialize_entry("tool_calls", &ToolCalls(&m.tool_calls))?;
        }
        map.end()
    }
}

/// A message's text parts as one string ([`Message::text`] without the allocation when there is
/// one part).
struct Text<'a>(&'a Message);

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut parts = text_parts(self.0);
        match (parts.next(), parts.next()) {
            (None, _) => s.serialize_str(""),
            (Some(one), None) => s.serialize_str(one),
            _ => s.collect_str(&Concat(self.0)),
        }
    }
}

struct Concat<'a>(&'a Message);

impl fmt::Display for Concat<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        text_parts(self.0).try_for_each(|t| f.write_str(t))
    }
}

/// The text and image parts of a message's content.
struct Parts<'a>(&'a [ContentPart]);

impl Serialize for Parts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for p in self.0 {
            match p {
                ContentPart::Text { text } => {
                    seq.serialize_element(&TextPart { text, kind: "text" })?
                }
                ContentPart::Image { source, detail } => seq.serialize_element(&ImagePart {
                    image_url: ImageUrl {
                        detail: detail.as_deref(),
                        url: Url(source),
                    },
                    kind: "image_url",
                })?,
                _ => {}
            }
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct TextPart<'a> {
    text: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct ImagePart<'a> {
    image_url: ImageUrl<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct ImageUrl<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    url: Url<'a>,
}

/// An image source as a URL: the URL itself, or a `data:` URL of the base64 bytes.
struct Url<'a>(&'a ImageSource);

impl Serialize for Url<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ImageSource::Url { url } => s.serialize_str(url),
            ImageSource::Base64 { media_type, data } => {
                s.collect_str(&format_args!("data:{media_type};base64,{data}"))
            }
            _ => s.serialize_str(""),
        }
    }
}

struct ToolCalls<'a>(&'a [ToolCall]);

impl Serialize for ToolCalls<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|c| ToolCallBody {
            function: FunctionCall {
                arguments: &c.arguments,
                name: &c.name,
            },
            id: &c.id,
            kind: "function",
        }))
    }
}

#[derive(Serialize)]
struct ToolCallBody<'a> {
    function: FunctionCall<'a>,
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct FunctionCall<'a> {
    arguments: &'a str,
    name: &'a str,
}

struct Tools<'a>(&'a [Tool]);

impl Serialize for Tools<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|t| ToolBody {
            function: FunctionBody {
                description: t.description.as_deref(),
                name: &t.name,
                parameters: &t.parameters,
                strict: t.strict,
            },
            kind: "function",
        }))
    }
}

#[derive(Serialize)]
struct ToolBody<'a> {
    function: FunctionBody<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct FunctionBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    name: &'a str,
    parameters: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

/// `"auto"`, `"none"`, `"required"` or `{"function": {"name": …}, "type": "function"}`.
struct ToolChoiceBody<'a>(&'a ToolChoice);

#[derive(Serialize)]
struct NamedFunction<'a> {
    function: Name<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Name<'a> {
    name: &'a str,
}

impl Serialize for ToolChoiceBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ToolChoice::None => s.serialize_str("none"),
            ToolChoice::Required => s.serialize_str("required"),
            ToolChoice::Tool(name) => NamedFunction {
                function: Name { name },
                kind: "function",
            }
            .serialize(s),
            _ => s.serialize_str("auto"),
        }
    }
}

/// `{"type": "text" | "json_object"}` or `{"json_schema": {…}, "type": "json_schema"}`.
struct FormatBody<'a>(&'a ResponseFormat);

#[derive(Serialize)]
struct Typed {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct JsonSchemaFormat<'a> {
    json_schema: JsonSchema<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct JsonSchema<'a> {
    name: &'a str,
    schema: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

impl Serialize for FormatBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ResponseFormat::JsonObject => Typed {
                kind: "json_object",
            }
            .serialize(s),
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => JsonSchemaFormat {
                json_schema: JsonSchema {
                    name,
                    schema,
                    strict: *strict,
                },
                kind: "json_schema",
            }
            .serialize(s),
            _ => Typed { kind: "text" }.serialize(s),
        }
    }
}

/// The body of a legacy completions request, borrowed from a [`CompletionRequest`]: what
/// [`super::completion_body`] (or, streamed, [`super::completion_stream_body`]) returns as a
/// `Value`, without building one. `extra` replaces the fields it names, except `stream` (the
/// call's own).
#[derive(Debug, Clone, Copy)]
pub struct CompletionBody<'a> {
    req: &'a CompletionRequest,
    stream: bool,
}

impl<'a> CompletionBody<'a> {
    /// The body of `req`; `stream` adds `stream: true` and asks for the usage chunk.
    pub fn new(req: &'a CompletionRequest, stream: bool) -> Self {
        CompletionBody { req, stream }
    }
}

impl Serialize for CompletionBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.req;
        let map = s.serialize_map(None)?;
        // streamed or not as the call is, whatever `extra` says about `stream`
        let mut w = ObjectWriter::with_fixed(map, &r.extra, &["stream"]);
        w.opt("max_tokens", r.max_tokens.as_ref())?;
        w.field("model", r.model.as_str())?;
        w.field("prompt", r.prompt.as_str())?;
        w.opt("seed", r.seed.as_ref())?;
        if !r.stop.is_empty() {
            w.field("stop", &r.stop)?;
        }
        if self.stream {
            w.field("stream", &true)?;
            w.field("stream_options", &IncludeUsage)?;
        }
        w.opt("temperature", r.temperature.map(F32AsF64).as_ref())?;
        w.end()
    }
}

/// The body of an embeddings request, borrowed from an [`EmbeddingRequest`]: what
/// [`super::embedding_body`] returns as a `Value`, without building one (floats requested
/// unless [`EmbeddingBody::with_encoding_format`] says otherwise; `extra` wins).
#[derive(Debug, Clone, Copy)]
pub struct EmbeddingBody<'a> {
    req: &'a EmbeddingRequest,
    encoding_format: &'a str,
}

impl<'a> EmbeddingBody<'a> {
    /// The body of `req`, asking for floats.
    pub fn new(req: &'a EmbeddingRequest) -> Self {
        EmbeddingBody {
            req,
            encoding_format: "float",
        }
    }

    /// Asks for `format` instead (`base64`); an `encoding_format` in `extra` still wins.
    pub fn with_encoding_format(mut self, format: &'a str) -> Self {
        self.encoding_format = format;
        self
    }
}

impl Serialize for EmbeddingBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.req;
        let mut w = ObjectWriter::new(s.serialize_map(None)?, &r.extra);
        w.opt("dimensions", r.dimensions.as_ref())?;
        w.field("encoding_format", self.encoding_format)?;
        w.field("input", &r.inputs)?;
        w.field("model", r.model.as_str())?;
        w.end()
    }
}

/// `serde_json::to_value` of a body: infallible for these bodies (every key is a string);
/// `Value::Null` stands for the error that cannot happen.
pub(crate) fn to_value<T: Serialize>(body: T) -> Value {
    serde_json::to_value(body).unwrap_or(Value::Null)
}
