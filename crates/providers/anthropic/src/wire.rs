//! The Messages API wire format: request bodies serialised from core types (typed, borrowed:
//! no `serde_json::Value` tree on the way), answers and streamed events read into typed structs,
//! and the inverse (a recorded request body as a [`ChatRequest`]) that the conformance runner
//! replays recorded traffic with.
//!
//! Reading keeps the tolerance of a `Value`: a field of an unexpected type reads as absent,
//! unknown fields are ignored, unknown blocks are kept raw, unknown events and deltas skipped.
//!
//! **Stability.** This module follows the provider's wire format, not this crate's version:
//! its items may change in any release as the format does. Applications call the provider
//! through [`Provider`](infermux_core::Provider) and the crate's client; the module is public
//! for the workspace's other crates, the conformance runner, and code that needs the raw
//! shapes.

use std::borrow::Cow;
use std::fmt;

use infermux_core::{
    ChatRequest, ChatResponse, ContentPart, Error, ErrorKind, FinishReason, ImageSource, Message,
    ModelInfo, ModelList, ResponseFormat, Result, Role, Signer, StreamEvent, SystemText, Tool,
    ToolCall, ToolChoice, Usage,
};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::json::{Arr, Bool, Fields, Obj, Present, Str, U64, read};

/// The output token limit sent when a request has none: Anthropic requires `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

pub(crate) fn decode_err(what: &str, e: impl fmt::Display) -> Error {
    Error::new(ErrorKind::Decode, format!("{what}: {e}"))
}

// ---- request bodies ----------------------------------------------------------------------
//
// Objects are written with their keys in ascending order, as the `Value` objects (`BTreeMap`s)
// these bodies used to be built as printed them: the bytes on the wire are the same.

/// Where an image block's bytes come from.
#[derive(Debug)]
enum ImageSrc<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url(&'a str),
}

/// One content block of a request message.
#[derive(Debug)]
enum Block<'a> {
    /// A text block, with the citations put back on it (assistant turns).
    Text {
        text: &'a str,
        citations: Vec<&'a Value>,
    },
    Image(ImageSrc<'a>),
    Thinking {
        text: &'a str,
        signature: Option<&'a str>,
    },
    RedactedThinking(&'a str),
    ServerToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a Value,
    },
    /// A block kept as the provider sent it, with the citations put back on it.
    Raw {
        raw: &'a Value,
        citations: Vec<&'a Value>,
    },
    ToolUse {
        /// As sent: another provider's id made one Anthropic takes ([`CallIds`]).
        id: Cow<'a, str>,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        tool_use_id: Cow<'a, str>,
        content: ToolResultContent<'a>,
    },
}

/// A `tool_result` block's content: the result's text, or its blocks when it has images.
#[derive(Debug)]
enum ToolResultContent<'a> {
    Text(String),
    Blocks(Vec<Block<'a>>),
}

impl Block<'_> {
    /// Whether this is a `text` block (citations attach to the text block before them).
    fn is_text(&self) -> bool {
        match self {
            Block::Text { .. } => true,
            Block::Raw { raw, .. } => raw.get("type").and_then(Value::as_str) == Some("text"),
            _ => false,
        }
    }

    /// Whether this is a `text` block with no text (left out of assistant turns).
    fn is_empty_text(&self) -> bool {
        match self {
            Block::Text { text, .. } => text.is_empty(),
            Block::Raw { raw, .. } => {
                raw.get("type").and_then(Value::as_str) == Some("text")
                    && raw.get("text").and_then(Value::as_str) == Some("")
            }
            _ => false,
        }
    }
}

impl Serialize for ImageSrc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self {
            ImageSrc::Base64 { media_type, data } => {
                m.serialize_entry("data", data)?;
                m.serialize_entry("media_type", media_type)?;
                m.serialize_entry("type", "base64")?;
            }
            ImageSrc::Url(url) => {
                m.serialize_entry("type", "url")?;
                m.serialize_entry("url", url)?;
            }
        }
        m.end()
    }
}

impl Serialize for Block<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if let Block::Raw { raw, citations } = self {
            if citations.is_empty() {
                return raw.serialize(s);
            }
            // the citations go on the block's own `citations` list, as the `Value` did
            let mut raw = (*raw).clone();
            if let Some(obj) = raw.as_object_mut()
                && let Some(list) = obj
                    .entry("citations")
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
            {
                list.extend(citations.iter().map(|c| (*c).clone()));
            }
            return raw.serialize(s);
        }
        let mut m = s.serialize_map(None)?;
        match self {
            Block::Text { text, citations } => {
                if !citations.is_empty() {
                    m.serialize_entry("citations", citations)?;
                }
                m.serialize_entry("text", text)?;
                m.serialize_entry("type", "text")?;
            }
            Block::Image(src) => {
                m.serialize_entry("source", src)?;
                m.serialize_entry("type", "image")?;
            }
            Block::Thinking { text, signature } => {
                if let Some(sig) = signature {
                    m.serialize_entry("signature", sig)?;
                }
                m.serialize_entry("thinking", text)?;
                m.serialize_entry("type", "thinking")?;
            }
            Block::RedactedThinking(data) => {
                m.serialize_entry("data", data)?;
                m.serialize_entry("type", "redacted_thinking")?;
            }
            Block::ServerToolUse { id, name, input } => {
                m.serialize_entry("id", id)?;
                m.serialize_entry("input", input)?;
                m.serialize_entry("name", name)?;
                m.serialize_entry("type", "server_tool_use")?;
            }
            Block::ToolUse { id, name, input } => {
                m.serialize_entry("id", id)?;
                m.serialize_entry("input", input)?;
                m.serialize_entry("name", name)?;
                m.serialize_entry("type", "tool_use")?;
            }
            Block::ToolResult {
                tool_use_id,
                content,
            } => {
                match content {
                    ToolResultContent::Text(t) => m.serialize_entry("content", t)?,
                    ToolResultContent::Blocks(b) => m.serialize_entry("content", b)?,
                }
                m.serialize_entry("tool_use_id", tool_use_id)?;
                m.serialize_entry("type", "tool_result")?;
            }
            Block::Raw { .. } => {}
        }
        m.end()
    }
}

/// An image part as an Anthropic `image` block: base64 sources as they are, `data:` URLs split
/// into media type and data, other URLs as a `url` source.
fn image_block(source: &ImageSource) -> Block<'_> {
    match source {
        ImageSource::Base64 { media_type, data } => {
            Block::Image(ImageSrc::Base64 { media_type, data })
        }
        ImageSource::Url { url } => {
            if let Some(rest) = url.strip_prefix("data:")
                && let Some((meta, data)) = rest.split_once(',')
                && let Some(media_type) = meta.strip_suffix(";base64")
            {
                return Block::Image(ImageSrc::Base64 { media_type, data });
            }
            Block::Image(ImageSrc::Url(url))
        }
        _ => Block::Text {
            text: "",
            citations: Vec::new(),
        },
    }
}

fn part_block(part: &ContentPart) -> Option<Block<'_>> {
    Some(match part {
        ContentPart::Text { text } | ContentPart::Refusal { text } => Block::Text {
            text,
            citations: Vec::new(),
        },
        ContentPart::Image { source, .. } => image_block(source),
        // reasoning without Anthropic's signature (another provider's, after a fallback) is
        // refused ("thinking.signature: Field required"): it was the other model's private
        // reasoning, not part of the conversation, so it is left out
        ContentPart::Thinking {
            signature: None, ..
        } => return None,
        ContentPart::Thinking { text, signature } => Block::Thinking {
            text,
            signature: signature.as_deref(),
        },
        ContentPart::RedactedThinking { data } => Block::RedactedThinking(data),
        ContentPart::ServerToolCall { id, name, input } => Block::ServerToolUse { id, name, input },
        // blocks kept as sent go back as they came (not another provider's items: OpenAI
        // Responses items kept raw after a fallback, which Anthropic would refuse)
        ContentPart::ServerToolResult { raw, .. } | ContentPart::Other { raw }
            if raw
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| !is_openai_item(t)) =>
        {
            Block::Raw {
                raw,
                citations: Vec::new(),
            }
        }
        // citations are attached to the text block before them, in `assistant_blocks`
        _ => return None,
    })
}

/// Whether a raw block's `type` is an OpenAI Responses output item's (`function_call`,
/// `web_search_call`, `custom_tool_call`, `computer_call`, `mcp_call`, …, `*_call_output`,
/// `mcp_list_tools`, `mcp_approval_request`, `message`, `reasoning`): no Anthropic block type
/// ends in `_call` or `_call_output` or is one of the others.
fn is_openai_item(t: &str) -> bool {
    t.ends_with("_call")
        || t.ends_with("_call_output")
        || matches!(
            t,
            "message"
                | "reasoning"
                | "mcp_list_tools"
                | "mcp_approval_request"
                | "mcp_approval_response"
        )
}

/// Anthropic's citation types: a citation of another kind (an OpenAI `url_citation`, a
/// Gemini grounding chunk) is refused in a request ("citations.0.type: Input tag … does not
/// match any of the expected tags").
const CITATION_TYPES: [&str; 5] = [
    "char_location",
    "page_location",
    "content_block_location",
    "web_search_result_location",
    "search_result_location",
];

/// The tool-call ids of a conversation as Anthropic takes them: unique, and matching
/// `^[a-zA-Z0-9_-]+$`. Other providers' ids are neither, once a conversation that began
/// elsewhere falls back here: Gemini's and Ollama's made-up ids restart at every answer
/// (`gemini-call-0`, `call_0`), TGI's are all `0`, some servers' carry `.` or `:` or are empty.
/// Anthropic refused the whole request ("tool_use ids must be unique", "String should match
/// pattern"). An id that is already fine and unique is sent as it is (Anthropic's own always
/// are); each tool result names the id sent for the last call of its id before it.
#[derive(Default)]
struct CallIds {
    /// Per message (by index), the id sent for each of its tool calls.
    sent: Vec<Vec<String>>,
}

impl CallIds {
    /// The ids of `messages`; none made (no allocation) when they are all fine and unique.
    fn of(messages: &[Message]) -> Option<CallIds> {
        let ids = || {
            messages
                .iter()
                .flat_map(|m| &m.tool_calls)
                .map(|c| c.id.as_str())
        };
        let fine = |id: &str| !id.is_empty() && id.chars().all(id_char);
        let mut seen = std::collections::HashSet::new();
        if ids().all(|id| fine(id) && seen.insert(id)) {
            return None;
        }
        let mut used = std::collections::HashSet::new();
        let sent = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m.tool_calls
                    .iter()
                    .enumerate()
                    .map(|(k, c)| {
                        let mut id = cleaned(&c.id);
                        if id.is_empty() {
                            id = format!("toolu_{i}_{k}");
                        }
                        let mut n = 0;
                        let base = id.clone();
                        while !used.insert(id.clone()) {
                            n += 1;
                            id = format!("{base}_{i}_{k}_{n}");
                        }
                        id
                    })
                    .collect()
            })
            .collect();
        Some(CallIds { sent })
    }

    /// The id sent for call `k` of message `i`.
    fn call<'a>(
        this: Option<&'a CallIds>,
        messages: &'a [Message],
        i: usize,
        k: usize,
    ) -> Cow<'a, str> {
        match this.and_then(|ids| ids.sent.get(i)?.get(k)) {
            Some(id) => Cow::Borrowed(id),
            None => Cow::Borrowed(&messages[i].tool_calls[k].id),
        }
    }

    /// The id a tool result (message `i`) names: the one sent for the last call of its id
    /// before it (its own id, cleaned, when no call before it has that id).
    fn result<'a>(this: Option<&'a CallIds>, messages: &'a [Message], i: usize) -> Cow<'a, str> {
        let id = messages[i].tool_call_id.as_deref().unwrap_or_default();
        let Some(ids) = this else {
            return Cow::Borrowed(id);
        };
        let found = messages[..i].iter().enumerate().rev().find_map(|(j, m)| {
            let k = m.tool_calls.iter().rposition(|c| c.id == id)?;
            ids.sent.get(j)?.get(k)
        });
        match found {
            Some(sent) => Cow::Borrowed(sent),
            None => Cow::Owned(cleaned(id)),
        }
    }
}

/// Whether Anthropic takes `ch` in an id (`[A-Za-z0-9_-]`).
fn id_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'
}

/// `id` with every character Anthropic refuses in an id as `_`.
fn cleaned(id: &str) -> String {
    id.chars()
        .map(|ch| if id_char(ch) { ch } else { '_' })
        .collect()
}

/// The blocks of an assistant turn: its parts in order (each of Anthropic's citations put
/// back on the text block it follows, empty text blocks left out; a refusal is not sent:
/// Anthropic has no refusal block, and its own refusal's explanation is the API's words, not
/// the model's), then its tool calls, with `ids` as sent (`call(k)`: call `k`'s).
fn assistant_blocks<'a>(
    m: &'a Message,
    blocks: &mut Vec<Block<'a>>,
    call: impl Fn(usize) -> Cow<'a, str>,
) {
    let start = blocks.len();
    // another provider's turn (a fallback): its reasoning was that model's own, and its
    // signatures, raw blocks and citations are for it alone (Anthropic refuses a signature
    // it did not make: "Invalid `signature` in `thinking` block")
    let foreign = m.signed_by_other_than(&Signer::Anthropic);
    for part in &m.content {
        if foreign
            && (part.is_provider_data()
                || matches!(
                    part,
                    ContentPart::Thinking { .. } | ContentPart::Citation { .. }
                ))
        {
            continue;
        }
        if matches!(part, ContentPart::Refusal { .. }) {
            continue;
        }
        if let ContentPart::Citation { raw } = part {
            let ours = raw
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| CITATION_TYPES.contains(&t));
            if ours
                && blocks.len() > start
                && let Some(last) = blocks.last_mut().filter(|b| b.is_text())
            {
                match last {
                    Block::Text { citations, .. } | Block::Raw { citations, .. } => {
                        citations.push(raw);
                    }
                    _ => {}
                }
            }
            continue;
        }
        blocks.extend(part_block(part));
    }
    let mine = blocks.split_off(start);
    blocks.extend(mine.into_iter().filter(|b| !b.is_empty_text()));
    blocks.extend(
        m.tool_calls
            .iter()
            .enumerate()
            .map(|(k, c)| tool_call_block(c, call(k))),
    );
}

fn tool_call_block<'a>(c: &'a ToolCall, id: Cow<'a, str>) -> Block<'a> {
    // (`input` must be an object: arguments encoded twice are read once more)
    let input = c.arguments_object();
    Block::ToolUse {
        id,
        name: &c.name,
        input,
    }
}

/// A tool message as a `tool_result` block naming `tool_use_id`: its text, or all its blocks
/// when it has images.
fn tool_result_block<'a>(m: &'a Message, tool_use_id: Cow<'a, str>) -> Block<'a> {
    let content = if m
        .content
        .iter()
        .any(|p| matches!(p, ContentPart::Image { .. }))
    {
        ToolResultContent::Blocks(
            m.content
                .iter()
                .filter_map(part_block)
                .filter(|b| !b.is_empty_text())
                .collect(),
        )
    } else {
        ToolResultContent::Text(m.text())
    };
    Block::ToolResult {
        tool_use_id,
        content,
    }
}

/// The wire messages of a conversation. System and developer messages are left out (they are
/// the top-level `system`); tool results become `tool_result` blocks of a user message;
/// consecutive messages of the same role are merged (the API wants user and assistant turns to
/// alternate). Empty text blocks are left out, and so is a message left with no block (the
/// API refuses both: "text content blocks must be non-empty"), its neighbours then merged.
struct Messages<'a>(&'a [Message]);

/// One wire message: a role and its blocks.
struct WireMessage<'b, 'a> {
    role: &'static str,
    content: &'b [Block<'a>],
}

impl Serialize for WireMessage<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("content", self.content)?;
        m.serialize_entry("role", self.role)?;
        m.end()
    }
}

impl Serialize for Messages<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        let mut role: Option<&'static str> = None;
        let mut blocks: Vec<Block<'_>> = Vec::new();
        let mut mine: Vec<Block<'_>> = Vec::new();
        let ids = CallIds::of(self.0);
        for (i, m) in self.0.iter().enumerate() {
            let r = match &m.role {
                Role::System | Role::Developer => continue,
                Role::Assistant => "assistant",
                _ => "user",
            };
            match &m.role {
                Role::Tool => {
                    mine.push(tool_result_block(
                        m,
                        CallIds::result(ids.as_ref(), self.0, i),
                    ));
                }
                Role::Assistant => {
                    assistant_blocks(m, &mut mine, |k| CallIds::call(ids.as_ref(), self.0, i, k))
                }
                _ => mine.extend(
                    m.content
                        .iter()
                        .filter_map(part_block)
                        .filter(|b| !b.is_empty_text()),
                ),
            }
            if mine.is_empty() {
                continue;
            }
            if let Some(open) = role
                && open != r
            {
                seq.serialize_element(&WireMessage {
                    role: open,
                    content: &blocks,
                })?;
                blocks.clear();
            }
            role = Some(r);
            blocks.append(&mut mine);
        }
        if let Some(open) = role {
            seq.serialize_element(&WireMessage {
                role: open,
                content: &blocks,
            })?;
        }
        seq.end()
    }
}

/// A tool definition.
struct WireTool<'a>(&'a Tool);

impl Serialize for WireTool<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let t = self.0;
        let mut m = s.serialize_map(None)?;
        if let Some(d) = &t.description {
            m.serialize_entry("description", d)?;
        }
        // Anthropic requires `"type": "object"`: a parameterless tool written `{}` (or read
        // from an OpenAI request without parameters) gets it
        match &t.parameters {
            Value::Object(o) if o.contains_key("type") => {
                m.serialize_entry("input_schema", &t.parameters)?;
            }
            Value::Object(o) => {
                let mut with_type = o.clone();
                with_type.insert("type".into(), Value::from("object"));
                m.serialize_entry("input_schema", &with_type)?;
            }
            Value::Null => m.serialize_entry("input_schema", &json!({"type": "object"}))?,
            other => m.serialize_entry("input_schema", other)?,
        }
        m.serialize_entry("name", &t.name)?;
        m.end()
    }
}

struct WireTools<'a>(&'a [Tool]);

impl Serialize for WireTools<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(WireTool))
    }
}

/// `tool_choice`.
#[derive(Serialize)]
struct WireToolChoice<'a> {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disable_parallel_tool_use: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(rename = "type")]
    ty: &'static str,
}

fn tool_choice(req: &ChatRequest) -> Option<WireToolChoice<'_>> {
    // "tool_choice may only be specified while providing tools" (a 400): left out without
    // tools (the request's own, or server tools in `extra`), as OpenAI's and Gemini's bodies do
    if req.tools.is_empty() && !req.extra.contains_key("tools") {
        return None;
    }
    let (ty, name) = match &req.tool_choice {
        Some(ToolChoice::Auto) => ("auto", None),
        Some(ToolChoice::Required) => ("any", None),
        Some(ToolChoice::None) => ("none", None),
        Some(ToolChoice::Tool(name)) => ("tool", Some(name.as_str())),
        Some(_) => ("auto", None),
        None if req.parallel_tool_calls == Some(false) && !req.tools.is_empty() => ("auto", None),
        None => return None,
    };
    Some(WireToolChoice {
        disable_parallel_tool_use: req.parallel_tool_calls == Some(false) && ty != "none",
        name,
        ty,
    })
}

/// `metadata`.
#[derive(Serialize)]
struct Metadata<'a> {
    user_id: &'a str,
}

// ---- structured output --------------------------------------------------------------------

/// The string formats structured output takes; another is left out (and named in the
/// description).
const FORMATS: [&str; 10] = [
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "uri",
    "ipv4",
    "ipv6",
    "uuid",
];

/// Keywords structured output does not take (refused with a 400, or outside the subset it
/// documents), left out and named in the description: numeric and string bounds, array bounds
/// (but `minItems` 0 or 1), object size bounds, and the conditional and negating keywords.
const REFUSED: [&str; 24] = [
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "contains",
    "minContains",
    "maxContains",
    "patternProperties",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "unevaluatedProperties",
    "unevaluatedItems",
    "not",
    "if",
    "then",
    "else",
];

/// A JSON schema as Anthropic's structured output (`output_config.format`) takes it, the way
/// Anthropic's SDKs transform one: every object gets `"additionalProperties": false` (required;
/// another value is named in the description instead), `oneOf` becomes `anyOf`, the keywords
/// it refuses (`minimum`, `maxLength`, `minItems` above 1, a string `format` outside its list,
/// …) are left out and named at the end of the description, and a top-level `$schema` goes.
/// A schema it takes as it is comes back borrowed.
///
/// ```
/// use infermux_anthropic::wire::structured_schema;
/// use serde_json::json;
///
/// let s = json!({"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}});
/// assert_eq!(
///     structured_schema(&s).into_owned(),
///     json!({"type": "object", "additionalProperties": false,
///            "properties": {"age": {"type": "integer", "description": "minimum: 0"}}})
/// );
/// let ok = json!({"type": "object", "additionalProperties": false, "properties": {}});
/// assert!(matches!(structured_schema(&ok), std::borrow::Cow::Borrowed(_)));
/// ```
pub fn structured_schema(schema: &Value) -> Cow<'_, Value> {
    let mut out = schema.clone();
    if let Value::Object(o) = &mut out {
        o.remove("$schema");
    }
    structure(&mut out, 0);
    if &out == schema {
        Cow::Borrowed(schema)
    } else {
        Cow::Owned(out)
    }
}

/// Transforms one schema in place ([`structured_schema`]); nesting past 64 levels is left as
/// it is (the API refuses it anyway), so no input runs the stack out.
fn structure(v: &mut Value, depth: usize) {
    if depth > 64 {
        return;
    }
    let Value::Object(o) = v else { return };
    let mut notes: Vec<String> = Vec::new();
    for k in REFUSED {
        if let Some(val) = o.remove(k) {
            notes.push(format!("{k}: {val}"));
        }
    }
    if let Some(n) = o.get("minItems").and_then(Value::as_u64)
        && n > 1
    {
        notes.push(format!("minItems: {n}"));
        o.remove("minItems");
    }
    if let Some(f) = o.get("format").and_then(Value::as_str)
        && !FORMATS.contains(&f)
    {
        notes.push(format!("format: {f}"));
        o.remove("format");
    }
    if let Some(alts) = o.remove("oneOf") {
        match o.remove("anyOf") {
            // both: the alternatives must hold together, as `allOf` of the two lists (added to
            // an `allOf` already there, never in its place)
            Some(any) => {
                let both = [json!({"anyOf": any}), json!({"anyOf": alts})];
                match o.get_mut("allOf") {
                    Some(Value::Array(all)) => all.extend(both),
                    _ => {
                        o.insert("allOf".into(), Value::Array(both.into()));
                    }
                }
            }
            None => {
                o.insert("anyOf".into(), alts);
            }
        }
    }
    let is_object = o.get("type").and_then(Value::as_str) == Some("object")
        || o.get("type")
            .and_then(Value::as_array)
            .is_some_and(|t| t.iter().any(|t| t == "object"))
        || o.contains_key("properties");
    if is_object {
        match o.get("additionalProperties") {
            Some(Value::Bool(false)) => {}
            None | Some(Value::Bool(true)) => {
                o.insert("additionalProperties".into(), Value::Bool(false));
            }
            Some(other) => {
                notes.push(format!("additionalProperties: {other}"));
                o.insert("additionalProperties".into(), Value::Bool(false));
            }
        }
    }
    // the keywords whose values are schemas, or maps / lists of them
    for (k, val) in o.iter_mut() {
        match (k.as_str(), val) {
            ("properties" | "$defs" | "definitions", Value::Object(map)) => {
                for s in map.values_mut() {
                    structure(s, depth + 1);
                }
            }
            ("anyOf" | "allOf" | "prefixItems", Value::Array(list)) => {
                for s in list {
                    structure(s, depth + 1);
                }
            }
            ("items", s @ Value::Object(_)) => structure(s, depth + 1),
            ("items", Value::Array(list)) => {
                for s in list {
                    structure(s, depth + 1);
                }
            }
            _ => {}
        }
    }
    if !notes.is_empty() {
        let said = notes.join(", ");
        let desc = match o.get("description").and_then(Value::as_str) {
            Some(d) if !d.is_empty() => format!("{d} ({said})"),
            _ => said,
        };
        o.insert("description".into(), Value::String(desc));
    }
}

/// `output_config`: the request's `extra.output_config` (e.g. `effort`) with the structured
/// output format added.
struct OutputConfig<'a> {
    extra: Option<&'a Map<String, Value>>,
    schema: Cow<'a, Value>,
}

/// `output_config.format`.
#[derive(Serialize)]
struct Format<'a> {
    schema: &'a Value,
    #[serde(rename = "type")]
    ty: &'static str,
}

impl Serialize for OutputConfig<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let none = Map::new();
        let mut o = Fields::new(s.serialize_map(None)?, self.extra.unwrap_or(&none));
        o.field(
            "format",
            &Format {
                schema: &self.schema,
                ty: "json_schema",
            },
        )?;
        o.end()
    }
}

/// Whether `model` takes structured output (`output_config.format`): Claude 4.5 and later
/// (Opus, Sonnet, Haiku 4.5, 4.6, …) and names this crate cannot place (a newer scheme, an
/// alias); not Claude 3.x, nor 4.0 and 4.1, which refuse the field ("Extra inputs are not
/// permitted") — for them the format is left out, as before.
///
/// ```
/// use infermux_anthropic::wire::takes_structured_output;
/// assert!(takes_structured_output("claude-sonnet-4-5-20250929"));
/// assert!(takes_structured_output("claude-opus-4-6"));
/// assert!(takes_structured_output("claude-haiku-4-5"));
/// assert!(!takes_structured_output("claude-sonnet-4-20250514"));
/// assert!(!takes_structured_output("claude-opus-4-1"));
/// assert!(!takes_structured_output("claude-3-5-haiku-latest"));
/// assert!(!takes_structured_output("claude-3-7-sonnet-20250219"));
/// ```
pub fn takes_structured_output(model: &str) -> bool {
    let m = model.to_ascii_lowercase();
    let Some(rest) = m.strip_prefix("claude-") else {
        return true;
    };
    if rest.starts_with("3-") || rest.starts_with("2") || rest.starts_with("instant") {
        return false;
    }
    for family in ["opus-", "sonnet-", "haiku-"] {
        if let Some(version) = rest.strip_prefix(family) {
            let mut parts = version.split('-');
            let major: u32 = match parts.next().and_then(|p| p.parse().ok()) {
                Some(n) => n,
                None => return true,
            };
            // a minor version is one or two digits; a date (8 digits) or nothing is `.0`
            let minor: u32 = parts
                .next()
                .filter(|p| (1..=2).contains(&p.len()))
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            return (major, minor) >= (4, 5);
        }
    }
    true
}

/// The structured output config `req` asks for: a `response_format` schema, unless
/// `extra.output_config` names a format itself (the caller's wins) or is not an object, or the
/// model does not take it ([`takes_structured_output`]).
fn output_config(req: &ChatRequest) -> Option<OutputConfig<'_>> {
    let Some(ResponseFormat::JsonSchema { schema, .. }) = &req.response_format else {
        return None;
    };
    if !takes_structured_output(&req.model) {
        return None;
    }
    let extra = match req.extra.get("output_config") {
        None => None,
        Some(Value::Object(o)) if !o.contains_key("format") => Some(o),
        Some(_) => return None,
    };
    Some(OutputConfig {
        extra,
        schema: structured_schema(schema),
    })
}

/// The `/v1/messages` body of a [`ChatRequest`], serialised straight from the request (what
/// [`chat_body`] returns as a `Value`). `max_tokens` defaults to [`DEFAULT_MAX_TOKENS`]; `user`
/// becomes `metadata.user_id`; a `response_format` schema becomes `output_config.format`
/// (structured output, the schema passed through [`structured_schema`]; for the models that
/// take it, [`takes_structured_output`]); `seed` and a JSON
/// object format without a schema have no Anthropic equivalent and are not sent; `extra` (e.g.
/// `thinking`, `top_k`, `metadata`, `output_config.effort`) is merged in as it is, winning over
/// a field of the same name (an `extra.output_config` object is merged with the format).
///
/// ```
/// use infermux_anthropic::wire::ChatBody;
/// use infermux_core::{ChatRequest, Message};
///
/// let req = ChatRequest::new("claude-haiku-4-5", vec![Message::user("Hi")]);
/// let bytes = serde_json::to_vec(&ChatBody::new(&req, false)).unwrap();
/// assert_eq!(
///     String::from_utf8(bytes).unwrap(),
///     r#"{"max_tokens":1024,"messages":[{"content":[{"text":"Hi","type":"text"}],"role":"user"}],"model":"claude-haiku-4-5"}"#
/// );
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ChatBody<'a> {
    req: &'a ChatRequest,
    stream: bool,
    default_max_tokens: u32,
}

impl<'a> ChatBody<'a> {
    /// The body of `req`, streamed or not.
    pub fn new(req: &'a ChatRequest, stream: bool) -> Self {
        ChatBody {
            req,
            stream,
            default_max_tokens: DEFAULT_MAX_TOKENS,
        }
    }

    /// The `max_tokens` sent when the request has none.
    pub fn with_default_max_tokens(mut self, n: u32) -> Self {
        self.default_max_tokens = n;
        self
    }
}

impl Serialize for ChatBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let req = self.req;
        let output = output_config(req);
        let mut o = Fields::new(s.serialize_map(None)?, &req.extra);
        if output.is_some() {
            o = o.except("output_config");
        }
        o.field("max_tokens", &max_tokens(req, self.default_max_tokens))?;
        o.field("messages", &Messages(&req.messages))?;
        if let Some(u) = &req.user {
            o.field("metadata", &Metadata { user_id: u })?;
        }
        o.field("model", &req.model)?;
        if let Some(c) = &output {
            o.field("output_config", c)?;
        }
        // a stop sequence of whitespace only ("\n", common in OpenAI requests) is refused
        // ("each stop sequence must contain non-whitespace"): left out
        if req.stop.iter().any(|s| !s.trim().is_empty()) {
            let stops: Vec<&String> = req.stop.iter().filter(|s| !s.trim().is_empty()).collect();
            o.field("stop_sequences", &stops)?;
        }
        if self.stream {
            o.field("stream", &true)?;
        }
        let system = SystemText(&req.messages);
        if system.is_some() {
            o.field("system", &system)?;
        }
        // an `f32` goes out as the `f64` it widens to, as a `Value` number printed it
        // Anthropic takes 0 to 1 (OpenAI 0 to 2): a higher one, after a fallback from
        // OpenAI, is sent as 1 rather than refused every time
        if let Some(t) = req.temperature {
            o.field("temperature", &f64::from(t.clamp(0.0, 1.0)))?;
        }
        if let Some(c) = tool_choice(req) {
            o.field("tool_choice", &c)?;
        }
        if !req.tools.is_empty() {
            o.field("tools", &WireTools(&req.tools))?;
        }
        if let Some(p) = req.top_p {
            o.field("top_p", &f64::from(p))?;
        }
        o.end()
    }
}

/// The `/v1/messages` body of `req` as a `Value` ([`ChatBody`] is what is sent).
pub fn chat_body(req: &ChatRequest, stream: bool) -> Value {
    chat_body_with_default(req, stream, DEFAULT_MAX_TOKENS)
}

/// [`chat_body`] with another default for `max_tokens`.
pub fn chat_body_with_default(req: &ChatRequest, stream: bool, default_max_tokens: u32) -> Value {
    serde_json::to_value(ChatBody::new(req, stream).with_default_max_tokens(default_max_tokens))
        .unwrap_or(Value::Null)
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

/// The `max_tokens` sent: the request's, else `default` — raised, when thinking is enabled
/// through `extra.thinking` with a `budget_tokens` of at least `default`, to the budget +
/// `default` (the API wants `max_tokens` above the budget, so the default alone was always
/// refused). A `max_tokens` the request states is sent as it is.
fn max_tokens(req: &ChatRequest, default: u32) -> u32 {
    if let Some(n) = req.max_tokens {
        return n;
    }
    let budget = req
        .extra
        .get("thinking")
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("enabled"))
        .and_then(|t| t.get("budget_tokens"))
        .and_then(Value::as_u64)
        .map(|b| u32::try_from(b).unwrap_or(u32::MAX));
    match budget {
        Some(b) if b >= default => b.saturating_add(default),
        _ => default,
    }
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

// ---- answers -----------------------------------------------------------------------------

/// A `usage` object: each count as `Value::as_u64` read it; `None` for a count that is
/// missing or `null` (which a streamed `message_delta` does not override).
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(default)]
struct WireUsage {
    input_tokens: Option<U64>,
    output_tokens: Option<U64>,
    cache_read_input_tokens: Option<U64>,
    cache_creation_input_tokens: Option<U64>,
}

impl WireUsage {
    /// The counts of `newer` that are set replace these.
    fn merge(&mut self, newer: WireUsage) {
        let keep = |old: &mut Option<U64>, new: Option<U64>| {
            if new.is_some() {
                *old = new;
            }
        };
        keep(&mut self.input_tokens, newer.input_tokens);
        keep(&mut self.output_tokens, newer.output_tokens);
        keep(
            &mut self.cache_read_input_tokens,
            newer.cache_read_input_tokens,
        );
        keep(
            &mut self.cache_creation_input_tokens,
            newer.cache_creation_input_tokens,
        );
    }

    fn usage(&self) -> Usage {
        let get = |n: Option<U64>| n.and_then(|n| n.0);
        let read = get(self.cache_read_input_tokens);
        let created = get(self.cache_creation_input_tokens);
        let mut usage = Usage::new(
            // saturating: a broken or hostile server's counts must not panic or wrap
            get(self.input_tokens)
                .unwrap_or(0)
                .saturating_add(read.unwrap_or(0))
                .saturating_add(created.unwrap_or(0)),
            get(self.output_tokens).unwrap_or(0),
        );
        usage.cached_input_tokens = read;
        usage.cache_creation_input_tokens = created;
        usage
    }
}

/// Usage from an Anthropic `usage` object. `input_tokens` is the whole prompt: uncached input
/// plus `cache_read_input_tokens` plus `cache_creation_input_tokens` (Anthropic reports them
/// apart; core's `input_tokens` includes cached tokens); the two cache counts are also kept in
/// `cached_input_tokens` and `cache_creation_input_tokens`.
pub fn usage_from(u: &Value) -> Usage {
    Obj::<WireUsage>::deserialize(u)
        .map(Obj::or_default)
        .unwrap_or_default()
        .usage()
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

/// A content block, as far as the known block types need it (the raw block is read again as a
/// `Value` for any other type).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireBlock<'a> {
    #[serde(rename = "type", borrow)]
    ty: Str<'a>,
    #[serde(borrow)]
    text: Str<'a>,
    #[serde(borrow)]
    thinking: Str<'a>,
    #[serde(borrow)]
    signature: Str<'a>,
    #[serde(borrow)]
    data: Str<'a>,
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(borrow)]
    name: Str<'a>,
    input: Present<Value>,
    citations: Arr<Value>,
}

/// Adds block `b` to the answer's parts and tool calls; `raw` gives the whole block, for the
/// block types kept raw.
fn push_block(
    b: WireBlock<'_>,
    raw: impl FnOnce() -> Result<Value>,
    parts: &mut Vec<ContentPart>,
    calls: &mut Vec<ToolCall>,
) -> Result<()> {
    match b.ty.or_empty() {
        "text" => {
            parts.push(ContentPart::Text {
                text: b.text.owned_or_empty(),
            });
            parts.extend(
                b.citations
                    .0
                    .into_iter()
                    .flatten()
                    .map(|raw| ContentPart::Citation { raw }),
            );
        }
        "thinking" => parts.push(ContentPart::Thinking {
            text: b.thinking.owned_or_empty(),
            signature: b.signature.owned(),
        }),
        "redacted_thinking" => parts.push(ContentPart::RedactedThinking {
            data: b.data.owned_or_empty(),
        }),
        "tool_use" => calls.push(ToolCall::new(
            b.id.owned_or_empty(),
            b.name.owned_or_empty(),
            b.input.0.map_or_else(|| "{}".to_owned(), |v| v.to_string()),
        )),
        _ => parts.push(whole_block_part(&raw()?)),
    }
    Ok(())
}

/// The content parts and tool calls of an Anthropic `content` array given as values (the
/// inverse reads recorded request bodies with it).
fn content_from(blocks: &[Value]) -> (Vec<ContentPart>, Vec<ToolCall>) {
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for b in blocks {
        let typed = Obj::<WireBlock<'_>>::deserialize(b)
            .map(Obj::or_default)
            .unwrap_or_default();
        // reading a block that is already a `Value` cannot fail
        let _ = push_block(typed, || Ok(b.clone()), &mut parts, &mut calls);
    }
    (parts, calls)
}

/// Reads one content block given as JSON text.
fn push_raw_block(
    raw: &str,
    parts: &mut Vec<ContentPart>,
    calls: &mut Vec<ToolCall>,
) -> Result<()> {
    let as_value =
        || serde_json::from_str::<Value>(raw).map_err(|e| decode_err("invalid block", e));
    match serde_json::from_str::<Obj<WireBlock<'_>>>(raw) {
        Ok(b) => push_block(b.or_default(), as_value, parts, calls),
        // an object repeating a key: read from its `Value` (the last one wins)
        Err(_) => {
            let v = as_value()?;
            let (p, c) = content_from(std::slice::from_ref(&v));
            parts.extend(p);
            calls.extend(c);
            Ok(())
        }
    }
}

/// A `/v1/messages` answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireMessageAnswer<'a> {
    #[serde(rename = "type", borrow)]
    ty: Str<'a>,
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(borrow)]
    model: Str<'a>,
    #[serde(borrow)]
    content: Arr<&'a RawValue>,
    #[serde(borrow)]
    stop_reason: Str<'a>,
    /// Why a refusal refused (`{"type": "refusal", "explanation": …}`).
    stop_details: Present<Value>,
    usage: Present<Obj<WireUsage>>,
}

/// The explanation of a refusal's `stop_details`, when it gives one.
fn refusal_explanation(details: Option<&Value>) -> Option<String> {
    let d = details?;
    let is_refusal = d
        .get("type")
        .and_then(Value::as_str)
        .is_none_or(|t| t == "refusal");
    d.get("explanation")
        .and_then(Value::as_str)
        .filter(|e| is_refusal && !e.is_empty())
        .map(str::to_owned)
}

fn chat_from(w: Obj<WireMessageAnswer<'_>>, body: &[u8]) -> Result<ChatResponse> {
    let w = w.or_default();
    if w.ty.get() == Some("error") {
        let v: Value =
            infermux_http::json::from_body(body).map_err(|e| decode_err("invalid message", e))?;
        return Err(embedded_error(v.get("error").unwrap_or(&v)));
    }
    let blocks = w
        .content
        .0
        .ok_or_else(|| decode_err("invalid message", "no content array"))?;
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for b in blocks {
        push_raw_block(b.get(), &mut parts, &mut calls)?;
    }
    if let Some(text) = refusal_explanation(w.stop_details.0.as_ref()) {
        // a refusal says why in its stop details, not in a block: kept as the refusal it is
        parts.push(ContentPart::Refusal { text });
    }
    let mut message = Message::assistant_tool_calls(calls);
    message.content = parts;
    if message.carries_provider_data() {
        message.signer = Some(Signer::Anthropic);
    }
    let mut resp = ChatResponse::new(w.model.owned_or_empty(), message);
    resp.id = w.id.owned();
    resp.finish_reason = w.stop_reason.get().map(finish_reason);
    resp.usage = w.usage.0.map(|u| u.or_default().usage());
    Ok(resp)
}

/// A `/v1/messages` answer.
pub fn parse_chat(body: &[u8]) -> Result<ChatResponse> {
    read!(
        from_slice,
        body,
        Obj<WireMessageAnswer<'_>>,
        "invalid message",
        |w| chat_from(w, body)
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireCount {
    input_tokens: U64,
}

/// The `input_tokens` of a `/v1/messages/count_tokens` answer.
pub fn parse_count_tokens(body: &[u8]) -> Result<u64> {
    read!(
        from_slice,
        body,
        Obj<WireCount>,
        "invalid count",
        |w: Obj<WireCount>| w
            .or_default()
            .input_tokens
            .0
            .ok_or_else(|| decode_err("invalid count", "no input_tokens"))
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireModel<'a> {
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(borrow)]
    created_at: Str<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireModels<'a> {
    #[serde(borrow)]
    data: Arr<Obj<WireModel<'a>>>,
    has_more: Bool,
    #[serde(borrow)]
    last_id: Str<'a>,
}

fn models_from(w: Obj<WireModels<'_>>) -> Result<ModelList> {
    let data = w
        .or_default()
        .data
        .0
        .ok_or_else(|| decode_err("invalid models", "no data array"))?;
    let models = data
        .into_iter()
        .filter_map(|m| {
            let m = m.0?;
            let mut info = ModelInfo::new(m.id.owned()?);
            info.owned_by = Some("anthropic".to_owned());
            info.created = m
                .created_at
                .get()
                .and_then(infermux_http::parse_rfc3339)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_secs()).ok());
            Some(info)
        })
        .collect();
    Ok(ModelList::new(models))
}

/// A `/v1/models` page.
pub fn parse_models(body: &[u8]) -> Result<ModelList> {
    read!(
        from_slice,
        body,
        Obj<WireModels<'_>>,
        "invalid models",
        models_from
    )
}

fn next_page_from(w: Obj<WireModels<'_>>) -> Result<Option<String>> {
    let w = w.or_default();
    if w.has_more.0 != Some(true) {
        return Ok(None);
    }
    Ok(w.last_id.owned().filter(|s| !s.is_empty()))
}

/// The `after_id` of the next `/v1/models` page: the page's `last_id` when `has_more`.
pub fn next_models_page(body: &[u8]) -> Option<String> {
    read!(
        from_slice,
        body,
        Obj<WireModels<'_>>,
        "invalid models",
        next_page_from
    )
    .ok()
    .flatten()
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

// ---- streamed events ---------------------------------------------------------------------

/// `message_start`'s `message`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireStart<'a> {
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(borrow)]
    model: Str<'a>,
    usage: Obj<WireUsage>,
}

/// A `content_block_delta`'s `delta` (and `message_delta`'s, with `stop_reason`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireDelta<'a> {
    #[serde(rename = "type", borrow)]
    ty: Str<'a>,
    #[serde(borrow)]
    text: Str<'a>,
    #[serde(borrow)]
    partial_json: Str<'a>,
    #[serde(borrow)]
    thinking: Str<'a>,
    #[serde(borrow)]
    signature: Str<'a>,
    citation: Present<Value>,
    #[serde(borrow)]
    stop_reason: Str<'a>,
    stop_details: Present<Value>,
}

/// One streamed event's data.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireEvent<'a> {
    #[serde(rename = "type", borrow)]
    ty: Str<'a>,
    #[serde(borrow)]
    message: Obj<WireStart<'a>>,
    index: U64,
    #[serde(borrow)]
    content_block: Option<&'a RawValue>,
    #[serde(borrow)]
    delta: Obj<WireDelta<'a>>,
    usage: Obj<WireUsage>,
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
    /// Tool calls whose arguments have not come yet (block, call, the input the block opened
    /// with): at the block's end they are that input, `{}` for a call without parameters —
    /// the non-streamed answer's arguments, not an empty string.
    no_args: Vec<(u64, u32, Option<String>)>,
    /// Blocks that arrive whole at their `content_block_stop`: the block and its streamed input.
    open: Vec<(u64, Value, String)>,
    /// Citations of text blocks, sent after the block's text.
    citations: Vec<(u64, Value)>,
    usage: Option<WireUsage>,
    finish: Option<FinishReason>,
    text: String,
    done: bool,
    /// `SignedBy` was sent.
    signed: bool,
}

/// The SSE event names of the Messages API whose data it reads (and `message`, the name of an
/// unnamed event): an event of another name (`ping`, a newer one) whose data is not JSON is
/// passed over.
const KNOWN_EVENTS: [&str; 8] = [
    "message",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "error",
];

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

    /// Merges a `usage` object (anything else is not usage).
    fn merge_usage(&mut self, u: Obj<WireUsage>) {
        if let Some(u) = u.0 {
            self.usage.get_or_insert_default().merge(u);
        }
    }

    /// The parts of the block at `index` that were waiting for its end (or of every waiting
    /// block, for `None`).
    fn close(&mut self, index: Option<u64>, out: &mut Vec<StreamEvent>) {
        let here = |i: u64| index.is_none_or(|x| x == i);
        let (ended, open): (Vec<_>, Vec<_>) = std::mem::take(&mut self.no_args)
            .into_iter()
            .partition(|(b, _, _)| here(*b));
        self.no_args = open;
        for (_, ti, opened) in ended {
            out.push(StreamEvent::ToolCallDelta {
                index: ti,
                id: None,
                name: None,
                arguments: opened.unwrap_or_else(|| "{}".to_owned()),
            });
        }
        let mut i = 0;
        while i < self.open.len() {
            if !here(self.open[i].0) {
                i += 1;
                continue;
            }
            let (_, mut block, input) = self.open.remove(i);
            // a block that is no JSON object (a malformed stream) takes no input: indexing a
            // string or a number for assignment would panic
            if !input.trim().is_empty()
                && let Some(obj) = block.as_object_mut()
            {
                obj.insert(
                    "input".to_owned(),
                    serde_json::from_str(&input).unwrap_or(Value::String(input)),
                );
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
        // an `error` event whose data is not JSON (a proxy's text, an HTML page) is still the
        // server's error, with its words: not a decode failure of ours
        // an event of a type it does not know (a newer version's, a proxy's `ping`) whose data
        // is not JSON carries nothing it reads: passed over, as one with JSON data is
        if event.is_some_and(|e| !KNOWN_EVENTS.contains(&e))
            && serde_json::from_str::<serde::de::IgnoredAny>(data).is_err()
        {
            return Ok(Vec::new());
        }
        if event == Some("error") && serde_json::from_str::<serde::de::IgnoredAny>(data).is_err() {
            return Err(infermux_http::error_event(data, &self.text));
        }
        read!(
            from_str,
            data,
            Obj<WireEvent<'_>>,
            "invalid event",
            |w: Obj<WireEvent<'_>>| self.on_wire(event, data, w.or_default())
        )
    }

    /// Before the first signature or block only Anthropic reads back: `SignedBy` Anthropic.
    fn on_wire(
        &mut self,
        event: Option<&str>,
        data: &str,
        v: WireEvent<'_>,
    ) -> Result<Vec<StreamEvent>> {
        let mut out = self.events_of(event, data, v)?;
        infermux_core::mark_signer(&mut out, &Signer::Anthropic, &mut self.signed);
        Ok(out)
    }

    fn events_of(
        &mut self,
        event: Option<&str>,
        data: &str,
        v: WireEvent<'_>,
    ) -> Result<Vec<StreamEvent>> {
        let ty = event
            .filter(|e| !e.is_empty() && *e != "message")
            .or_else(|| v.ty.get())
            .unwrap_or("");
        let index = v.index.0.unwrap_or(0);
        let mut out = Vec::new();
        match ty {
            "message_start" => {
                let m = v.message.or_default();
                self.merge_usage(m.usage);
                out.push(StreamEvent::Start {
                    id: m.id.owned(),
                    model: m.model.owned(),
                });
            }
            "content_block_start" => {
                let raw = v.content_block.map_or("null", RawValue::get);
                let b = match serde_json::from_str::<Obj<WireBlock<'_>>>(raw) {
                    Ok(b) => b.or_default(),
                    // an object repeating a key: read from its `Value` (the last one wins)
                    Err(_) => {
                        let value: Value = serde_json::from_str(raw)
                            .map_err(|e| decode_err("invalid event", e))?;
                        return self.block_start(index, &value, &mut out).map(|()| out);
                    }
                };
                self.block_start_typed(index, b, raw, &mut out)?;
            }
            "content_block_delta" => {
                let d = v.delta.or_default();
                match d.ty.or_empty() {
                    "text_delta" => {
                        let t = d.text.owned_or_empty();
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
                            let arguments = d.partial_json.owned_or_empty();
                            if !arguments.is_empty() {
                                self.no_args.retain(|(b, _, _)| *b != index);
                            }
                            out.push(StreamEvent::ToolCallDelta {
                                index: ti,
                                id: None,
                                name: None,
                                arguments,
                            });
                        } else if let Some((_, _, input)) =
                            self.open.iter_mut().find(|(b, _, _)| *b == index)
                        {
                            // a server tool's input (web search query, code to run)
                            input.push_str(d.partial_json.or_empty());
                        }
                    }
                    "thinking_delta" => out.push(StreamEvent::ReasoningDelta {
                        text: d.thinking.owned_or_empty(),
                    }),
                    "signature_delta" => out.push(StreamEvent::ReasoningSignature {
                        signature: d.signature.owned_or_empty(),
                    }),
                    "citations_delta" => {
                        if let Some(c) = d.citation.0 {
                            self.citations.push((index, c));
                        }
                    }
                    // delta types added later
                    _ => {}
                }
            }
            "content_block_stop" => self.close(Some(index), &mut out),
            "message_delta" => {
                let delta = v.delta.or_default();
                if let Some(r) = delta.stop_reason.get() {
                    self.finish = Some(finish_reason(r));
                }
                if let Some(text) = refusal_explanation(delta.stop_details.0.as_ref()) {
                    out.push(StreamEvent::RefusalDelta { text });
                }
                self.merge_usage(v.usage);
            }
            "message_stop" => {
                // blocks a server left open still reach the caller
                self.close(None, &mut out);
                if let Some(u) = &self.usage {
                    out.push(StreamEvent::Usage(u.usage()));
                }
                out.push(StreamEvent::Done {
                    finish_reason: self.finish.clone(),
                });
                self.done = true;
            }
            "error" => {
                let v: Value =
                    serde_json::from_str(data).map_err(|e| decode_err("invalid event", e))?;
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

    /// `content_block_start` of a block that repeats a key, read from its `Value`.
    fn block_start(&mut self, index: u64, b: &Value, out: &mut Vec<StreamEvent>) -> Result<()> {
        let typed = Obj::<WireBlock<'_>>::deserialize(b)
            .map(Obj::or_default)
            .map_err(|e| decode_err("invalid event", e))?;
        self.start_block(index, typed, || Ok(b.clone()), out)
    }

    fn block_start_typed(
        &mut self,
        index: u64,
        b: WireBlock<'_>,
        raw: &str,
        out: &mut Vec<StreamEvent>,
    ) -> Result<()> {
        self.start_block(
            index,
            b,
            || serde_json::from_str(raw).map_err(|e| decode_err("invalid event", e)),
            out,
        )
    }

    /// The events of `content_block_start` for block `b` at `index`; `raw` gives the whole
    /// block, for the blocks that arrive whole at their end.
    fn start_block(
        &mut self,
        index: u64,
        b: WireBlock<'_>,
        raw: impl FnOnce() -> Result<Value>,
        out: &mut Vec<StreamEvent>,
    ) -> Result<()> {
        match b.ty.or_empty() {
            "tool_use" => {
                let ti = u32::try_from(self.tool_index.len()).unwrap_or(u32::MAX);
                self.tool_index.push((index, ti));
                let opened = b.input.0.as_ref().map(Value::to_string);
                self.no_args.push((index, ti, opened));
                // `input` is `{}` here; the arguments follow as input_json_delta
                out.push(StreamEvent::ToolCallDelta {
                    index: ti,
                    id: b.id.owned(),
                    name: b.name.owned(),
                    arguments: String::new(),
                });
            }
            "text" => {
                let t = b.text.or_empty();
                if !t.is_empty() {
                    self.text.push_str(t);
                    out.push(StreamEvent::TextDelta { text: t.to_owned() });
                }
                for c in b.citations.0.into_iter().flatten() {
                    self.citations.push((index, c));
                }
            }
            "thinking" => {
                let t = b.thinking.or_empty();
                if !t.is_empty() {
                    out.push(StreamEvent::ReasoningDelta { text: t.to_owned() });
                }
                let sig = b.signature.or_empty();
                if !sig.is_empty() {
                    out.push(StreamEvent::ReasoningSignature {
                        signature: sig.to_owned(),
                    });
                }
            }
            "redacted_thinking" => out.push(StreamEvent::Part {
                part: ContentPart::RedactedThinking {
                    data: b.data.owned_or_empty(),
                },
            }),
            // server tool calls and results, and blocks added later: whole at their end
            _ => self.open.push((index, raw()?, String::new())),
        }
        Ok(())
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
    // structured output: the response format, so that a provider the request falls back to is
    // asked for the same JSON; the rest of `output_config` (e.g. `effort`) stays in `extra`
    let mut output_rest = v.get("output_config").cloned();
    if let Some(Value::Object(cfg)) = &mut output_rest
        && let Some(format) = cfg.get("format")
        && format.get("type").and_then(Value::as_str) == Some("json_schema")
        && let Some(schema) = format.get("schema")
    {
        req.response_format = Some(ResponseFormat::JsonSchema {
            name: "response".into(),
            schema: schema.clone(),
            strict: None,
        });
        cfg.remove("format");
    }
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
            if k == "output_config" {
                match &output_rest {
                    Some(Value::Object(rest)) if rest.is_empty() => {}
                    Some(rest) => {
                        req.extra.insert(k.clone(), rest.clone());
                    }
                    None => {}
                }
            } else if !KNOWN.contains(&k.as_str()) {
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
