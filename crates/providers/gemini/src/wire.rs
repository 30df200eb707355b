//! The Gemini API wire format: `generateContent` bodies serialised from core types (typed,
//! borrowed: no `serde_json::Value` tree on the way; function schemas cleaned of what Gemini
//! rejects), answers and streamed chunks read into typed structs, embeddings, token counts,
//! models, and the inverse (a recorded body as a [`ChatRequest`]) that the conformance runner
//! replays recorded traffic with.
//!
//! Reading keeps the tolerance of a `Value`: a field of an unexpected type reads as absent and
//! unknown fields are ignored.
//!
//! **Stability.** This module follows the provider's wire format, not this crate's version:
//! its items may change in any release as the format does. Applications call the provider
//! through [`Provider`](infermux_core::Provider) and the crate's client; the module is public
//! for the workspace's other crates, the conformance runner, and code that needs the raw
//! shapes.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use infermux_core::{
    ChatRequest, ChatResponse, ContentPart, EmbeddingRequest, EmbeddingResponse, Error, ErrorKind,
    FinishReason, ImageSource, Message, ModelInfo, ModelList, ResponseFormat, Result, Role, Signer,
    StreamAccumulator, StreamEvent, SystemText, Tool, ToolCall, ToolChoice, Usage,
};
use serde::de::IgnoredAny;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value, json};

use crate::json::{Arr, Bool, F64, Fields, Obj, Present, Str, U64};

fn decode_err(what: &str, e: impl fmt::Display) -> Error {
    Error::new(ErrorKind::Decode, format!("{what}: {e}"))
}

/// Reads `$json` as an `Obj<$ty>` and hands it to `$then` (a function returning `Result`).
/// Invalid JSON fails with `$what` and `Value`'s error, as before. A derived reader refuses an
/// object that repeats a key, which `Value` accepted (the last one wins): such a text is read as
/// a `Value` and the typed struct from that `Value`, so it means what it meant.
macro_rules! read {
    ($json:expr, $ty:ty, $what:expr, $then:expr) => {{
        let json: &[u8] = $json;
        match serde_json::from_slice::<Obj<$ty>>(json) {
            Ok(w) => $then(w),
            Err(_) => match serde_json::from_slice::<Value>(json) {
                Err(e) => Err(decode_err($what, e)),
                Ok(v) => match Obj::<$ty>::deserialize(&v) {
                    Ok(w) => $then(w),
                    Err(e) => Err(decode_err($what, e)),
                },
            },
        }
    }};
}

/// `models/{model}` as a request path's part: [`model_path`], refused (`InvalidRequest`) when
/// the name would not stay one resource name (`gemini-2.5-flash?x`, `../cachedContents#`
/// steered the request, key and all, to another method of the API).
pub fn model_route(model: &str) -> Result<String> {
    let name = model
        .strip_prefix("models/")
        .or_else(|| model.strip_prefix("tunedModels/"))
        .unwrap_or(model);
    infermux_http::PathName::SEGMENT.check("Gemini model name", name)?;
    Ok(model_path(model))
}

/// `models/{model}` unless the name already has a collection prefix.
pub fn model_path(model: &str) -> String {
    if model.starts_with("models/") || model.starts_with("tunedModels/") {
        model.to_owned()
    } else {
        format!("models/{model}")
    }
}

/// A JSON schema as Gemini's `Schema`-typed fields (`responseSchema`, a declaration's
/// `parameters`) accept it: `$ref`s inlined from `$defs`/`definitions` (recursive
/// references beyond a few levels become a plain object), and `$defs`, `definitions`,
/// `$schema`, `$id` and `additionalProperties` removed everywhere.
///
/// The bodies this crate writes do not need it: they send schemas as JSON Schema, unchanged,
/// in `responseJsonSchema` and `parametersJsonSchema`. It is for a caller that writes the
/// `Schema`-typed fields itself (through `extra`).
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
                if k == "properties"
                    && let Value::Object(props) = val
                {
                    let props = props
                        .iter()
                        .map(|(name, schema)| (name.clone(), clean(schema, defs, depth)))
                        .collect();
                    out.insert(k.clone(), Value::Object(props));
                    continue;
                }
                out.insert(k.clone(), clean(val, defs, depth));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| clean(i, defs, depth)).collect()),
        other => other.clone(),
    }
}

/// Keywords whose value is a map of names to schemas (the names are data, not keywords).
const SCHEMA_MAPS: [&str; 4] = ["properties", "$defs", "definitions", "patternProperties"];

/// Whether a JSON schema has a `$ref` beside keywords that do not start with `$` somewhere
/// (Gemini's JSON Schema fields: "if `$ref` is set on a sub-schema, no other properties,
/// except for those starting as a `$`, may be set").
fn has_ref_siblings(v: &Value, depth: usize) -> bool {
    if depth > 64 {
        return false;
    }
    match v {
        Value::Object(o) => {
            (o.contains_key("$ref") && o.keys().any(|k| !k.starts_with('$')))
                || o.iter()
                    .any(|(k, val)| match (SCHEMA_MAPS.contains(&k.as_str()), val) {
                        (true, Value::Object(m)) => {
                            m.values().any(|s| has_ref_siblings(s, depth + 1))
                        }
                        _ => has_ref_siblings(val, depth + 1),
                    })
        }
        Value::Array(items) => items.iter().any(|i| has_ref_siblings(i, depth + 1)),
        _ => false,
    }
}

/// `v` with every `$ref` that has siblings (Pydantic writes a described nested model as
/// `{"$ref": …, "description": …}`) moved into a one-alternative `anyOf`, which means the
/// same and Gemini takes.
fn ref_siblings_moved(v: &Value, depth: usize) -> Value {
    if depth > 64 {
        return v.clone();
    }
    match v {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, val) in o {
                let val = match (SCHEMA_MAPS.contains(&k.as_str()), val) {
                    (true, Value::Object(m)) => Value::Object(
                        m.iter()
                            .map(|(name, s)| (name.clone(), ref_siblings_moved(s, depth + 1)))
                            .collect(),
                    ),
                    _ => ref_siblings_moved(val, depth + 1),
                };
                out.insert(k.clone(), val);
            }
            // (beside an `anyOf` of its own, a `$ref` is left where it is)
            if out.keys().any(|k| !k.starts_with('$'))
                && !out.contains_key("anyOf")
                && let Some(r) = out.remove("$ref")
            {
                out.insert("anyOf".to_owned(), json!([{ "$ref": r }]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| ref_siblings_moved(i, depth + 1))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A JSON schema as Gemini's JSON Schema fields (`responseJsonSchema`,
/// `parametersJsonSchema`) take it: as given, but for a `$ref` with siblings, which goes in a
/// one-alternative `anyOf` beside them. Borrowed when there is nothing to move.
///
/// ```
/// use infermux_gemini::wire::json_schema_for_gemini;
/// use serde_json::json;
/// let s = json!({"type": "object", "properties": {"p": {"$ref": "#/$defs/P", "description": "d"}},
///                "$defs": {"P": {"type": "object"}}});
/// let out = json_schema_for_gemini(&s).into_owned();
/// assert_eq!(out["properties"]["p"], json!({"anyOf": [{"$ref": "#/$defs/P"}], "description": "d"}));
/// assert!(matches!(json_schema_for_gemini(&out), std::borrow::Cow::Borrowed(_)));
/// ```
pub fn json_schema_for_gemini(schema: &Value) -> std::borrow::Cow<'_, Value> {
    if has_ref_siblings(schema, 0) {
        std::borrow::Cow::Owned(ref_siblings_moved(schema, 0))
    } else {
        std::borrow::Cow::Borrowed(schema)
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

// ---- request bodies ----------------------------------------------------------------------
//
// Objects are written with their keys in ascending order, as the `Value` objects (`BTreeMap`s)
// these bodies used to be built as printed them: the bytes on the wire are the same.

/// One part of a request turn.
#[derive(Debug)]
enum Part<'a> {
    /// A text part, with the signature of the reasoning that led to it.
    Text {
        text: &'a str,
        signature: Option<&'a str>,
    },
    /// A thought part.
    Thought {
        text: &'a str,
        signature: Option<&'a str>,
    },
    InlineData {
        mime_type: &'a str,
        data: &'a str,
    },
    FileData {
        mime_type: &'static str,
        file_uri: &'a str,
    },
    FunctionCall {
        call: &'a ToolCall,
        args: Value,
        signature: Option<&'a str>,
    },
    FunctionResponse {
        id: Option<&'a str>,
        name: &'a str,
        response: Value,
    },
    /// A part this version does not model (`executableCode`, `codeExecutionResult`, …), sent
    /// back as Gemini sent it.
    Raw(&'a Value),
}

impl Part<'_> {
    /// Whether this part has empty text and no signature (left out of every turn).
    fn is_empty_text(&self) -> bool {
        match self {
            Part::Text { text, signature } | Part::Thought { text, signature } => {
                text.is_empty() && signature.is_none()
            }
            _ => false,
        }
    }
}

/// `{"mimeType", "data"}` and `{"mimeType", "fileUri"}`.
struct Blob<'a> {
    key: &'static str,
    value: &'a str,
    mime_type: &'a str,
}

impl Serialize for Blob<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        // "data" and "fileUri" both sort before "mimeType"
        m.serialize_entry(self.key, self.value)?;
        m.serialize_entry("mimeType", self.mime_type)?;
        m.end()
    }
}

/// A `functionCall`.
struct FunctionCall<'a> {
    call: &'a ToolCall,
    args: &'a Value,
}

impl Serialize for FunctionCall<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let c = self.call;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("args", self.args)?;
        if !c.id.is_empty() && !c.id.starts_with(GENERATED_ID) {
            m.serialize_entry("id", &c.id)?;
        }
        m.serialize_entry("name", &c.name)?;
        m.end()
    }
}

/// A `functionResponse`.
#[derive(Serialize)]
struct FunctionResponse<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    name: &'a str,
    response: &'a Value,
}

impl Serialize for Part<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if let Part::Raw(raw) = self {
            return raw.serialize(s);
        }
        let mut m = s.serialize_map(None)?;
        match self {
            Part::Text { text, signature } => {
                m.serialize_entry("text", text)?;
                if let Some(sig) = signature {
                    m.serialize_entry("thoughtSignature", sig)?;
                }
            }
            Part::Thought { text, signature } => {
                m.serialize_entry("text", text)?;
                m.serialize_entry("thought", &true)?;
                if let Some(sig) = signature {
                    m.serialize_entry("thoughtSignature", sig)?;
                }
            }
            Part::InlineData { mime_type, data } => m.serialize_entry(
                "inlineData",
                &Blob {
                    key: "data",
                    value: data,
                    mime_type,
                },
            )?,
            Part::FileData {
                mime_type,
                file_uri,
            } => m.serialize_entry(
                "fileData",
                &Blob {
                    key: "fileUri",
                    value: file_uri,
                    mime_type,
                },
            )?,
            Part::FunctionCall {
                call,
                args,
                signature,
            } => {
                m.serialize_entry("functionCall", &FunctionCall { call, args })?;
                if let Some(sig) = signature {
                    m.serialize_entry("thoughtSignature", sig)?;
                }
            }
            Part::FunctionResponse { id, name, response } => m.serialize_entry(
                "functionResponse",
                &FunctionResponse {
                    id: *id,
                    name,
                    response,
                },
            )?,
            Part::Raw(_) => {}
        }
        m.end()
    }
}

fn image_part(source: &ImageSource) -> Part<'_> {
    match source {
        ImageSource::Base64 { media_type, data } => Part::InlineData {
            mime_type: media_type,
            data,
        },
        ImageSource::Url { url } => {
            if let Some(rest) = url.strip_prefix("data:")
                && let Some((meta, data)) = rest.split_once(',')
                && let Some(mime) = meta.strip_suffix(";base64")
            {
                return Part::InlineData {
                    mime_type: mime,
                    data,
                };
            }
            Part::FileData {
                mime_type: guess_mime(url),
                file_uri: url,
            }
        }
        _ => Part::Text {
            text: "",
            signature: None,
        },
    }
}

fn part_of(p: &ContentPart) -> Option<Part<'_>> {
    Some(match p {
        ContentPart::Text { text } | ContentPart::Refusal { text } => Part::Text {
            text,
            signature: None,
        },
        ContentPart::Image { source, .. } => image_part(source),
        ContentPart::Thinking { text, signature } => Part::Thought {
            text,
            signature: signature.as_deref(),
        },
        // a part Gemini sent that this version does not model goes back as it came; another
        // provider's block (it has a `type`, which no Gemini part has) does not
        ContentPart::Other { raw } if raw.is_object() && raw.get("type").is_none() => {
            Part::Raw(raw)
        }
        _ => return None,
    })
}

/// The parts of a model turn into `parts` (empty): its content (a signature that came on a
/// text part, kept as an empty signed thinking part after it, goes back on that text part),
/// then its function calls with their `thoughtSignature`s. (Empty text parts are left out by
/// the caller, as for every turn.)
fn model_parts<'a>(m: &'a Message, parts: &mut Vec<Part<'a>>) {
    // another provider's turn (a fallback): its reasoning was that model's own, its
    // signatures and raw blocks are for it alone
    let foreign = m.signed_by_other_than(&Signer::Gemini);
    for p in &m.content {
        if foreign && (p.is_provider_data() || matches!(p, ContentPart::Thinking { .. })) {
            continue;
        }
        if let ContentPart::Thinking {
            text,
            signature: Some(sig),
        } = p
            && text.is_empty()
            && let Some(Part::Text {
                signature: prev @ None,
                ..
            }) = parts.last_mut()
        {
            *prev = Some(sig);
            continue;
        }
        parts.extend(part_of(p));
    }
    // calls another model made (after a fallback, or a history written by hand) carry no
    // signature, which Gemini 3 refuses in the current turn ("Function call is missing a
    // thought_signature"): the first call of such a turn gets the value Google documents for
    // histories from other models; Gemini's own parallel calls, signed on the first, are sent
    // as they came
    let unsigned = foreign || m.tool_calls.iter().all(|c| c.signature.is_none());
    for (i, c) in m.tool_calls.iter().enumerate() {
        let args = c.arguments_object();
        let signature = match c.signature.as_deref().filter(|_| !foreign) {
            Some(sig) => Some(sig),
            None if unsigned && i == 0 => Some(FOREIGN_CALL_SIGNATURE),
            None => None,
        };
        parts.push(Part::FunctionCall {
            call: c,
            args,
            signature,
        });
    }
}

/// The `thoughtSignature` Google documents for function calls in a history that another model
/// wrote: Gemini skips validating it.
pub const FOREIGN_CALL_SIGNATURE: &str = "skip_thought_signature_validator";

/// The name of the tool call `id` answers, found in the assistant turns before it, the
/// latest first: ids this crate makes up (`gemini-call-0`, …) start again in every answer.
fn call_name<'a>(messages: &'a [Message], id: &str) -> Option<&'a str> {
    messages
        .iter()
        .rev()
        .flat_map(|m| m.tool_calls.iter())
        .find(|c| c.id == id)
        .map(|c| c.name.as_str())
}

/// A tool message as a `functionResponse` part.
fn function_response<'a>(messages: &'a [Message], i: usize) -> Part<'a> {
    let m = &messages[i];
    let id = m.tool_call_id.as_deref().unwrap_or_default();
    // the call's name, from the call it answers, else the result's own name (a history that
    // lost the call), else the id (Gemini then names the missing function)
    let name = call_name(&messages[..i], id)
        .or(m.name.as_deref())
        .unwrap_or(id);
    let text = m.text();
    // Gemini wants an object: JSON objects as they are, anything else wrapped
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(o)) => Value::Object(o),
        _ => json!({"result": text}),
    };
    Part::FunctionResponse {
        id: (!id.is_empty() && !id.starts_with(GENERATED_ID)).then_some(id),
        name,
        response,
    }
}

/// One `contents` entry: a role and its parts.
struct Content<'b, 'a> {
    role: &'static str,
    parts: &'b [Part<'a>],
}

impl Serialize for Content<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("parts", self.parts)?;
        m.serialize_entry("role", self.role)?;
        m.end()
    }
}

/// The `contents` of a conversation: system and developer messages left out (they are
/// `systemInstruction`), tool results as `functionResponse` parts of a user turn, consecutive
/// turns of the same role merged.
struct Contents<'a>(&'a [Message]);

impl Serialize for Contents<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        let mut role: Option<&'static str> = None;
        let mut parts: Vec<Part<'_>> = Vec::new();
        let mut mine: Vec<Part<'_>> = Vec::new();
        for (i, m) in self.0.iter().enumerate() {
            let r = match &m.role {
                Role::System | Role::Developer => continue,
                Role::Assistant => "model",
                _ => "user",
            };
            match &m.role {
                Role::Assistant => model_parts(m, &mut mine),
                Role::Tool => mine.push(function_response(self.0, i)),
                _ => mine.extend(m.content.iter().filter_map(part_of)),
            }
            // Gemini refuses an empty text part and a turn without parts ("contents.parts
            // must not be empty"): a message that brings nothing else is left out, and does
            // not split the turns around it
            mine.retain(|p| !p.is_empty_text());
            if mine.is_empty() {
                continue;
            }
            if let Some(open) = role
                && open != r
            {
                seq.serialize_element(&Content {
                    role: open,
                    parts: &parts,
                })?;
                parts.clear();
            }
            role = Some(r);
            parts.append(&mut mine);
        }
        if let Some(open) = role {
            seq.serialize_element(&Content {
                role: open,
                parts: &parts,
            })?;
        }
        seq.end()
    }
}

/// `{"text": …}` of the system text.
struct SystemPart<'a>(&'a SystemText<'a>);

impl Serialize for SystemPart<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("text", self.0)?;
        m.end()
    }
}

/// `systemInstruction`: `{"parts": [{"text": …}]}`.
struct SystemInstruction<'a>(SystemText<'a>);

impl Serialize for SystemInstruction<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("parts", &[SystemPart(&self.0)])?;
        m.end()
    }
}

/// A function declaration.
struct Declaration<'a>(&'a Tool);

impl Serialize for Declaration<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let t = self.0;
        let mut m = s.serialize_map(None)?;
        if let Some(desc) = &t.description {
            m.serialize_entry("description", desc)?;
        }
        m.serialize_entry("name", &t.name)?;
        // an object of no properties (`{"type":"object"}`, `"properties": {}`): Gemini refuses
        // an OBJECT with no properties, and a function without parameters means the same
        // (a schema of alternatives — `anyOf`, `oneOf`, `$ref`, … — is kept)
        const PLAIN: [&str; 6] = [
            "type",
            "description",
            "title",
            "required",
            "additionalProperties",
            "$schema",
        ];
        let empty_object = match t.parameters.get("properties") {
            Some(p) => p.as_object().is_some_and(Map::is_empty),
            None => {
                t.parameters.get("type").and_then(Value::as_str) == Some("object")
                    && t.parameters
                        .as_object()
                        .is_some_and(|o| o.keys().all(|k| PLAIN.contains(&k.as_str())))
            }
        };
        // JSON Schema, as given: `parametersJsonSchema` takes `$ref`/`$defs`, `anyOf`, type
        // lists and `additionalProperties`, which the `Schema`-typed `parameters` refused (a
        // Pydantic `Optional` field, a nested `"additionalProperties": false`)
        if !t.parameters.is_null() && !empty_object {
            m.serialize_entry(
                "parametersJsonSchema",
                &json_schema_for_gemini(&t.parameters),
            )?;
        }
        m.end()
    }
}

/// `tools`: `[{"functionDeclarations": […]}]`.
struct Tools<'a>(&'a [Tool]);

impl Serialize for Tools<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        struct Declarations<'a>(&'a [Tool]);
        impl Serialize for Declarations<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("functionDeclarations", &Seq(self.0.iter().map(Declaration)))?;
                m.end()
            }
        }
        s.collect_seq([Declarations(self.0)])
    }
}

/// A sequence written from an iterator that can be cloned.
struct Seq<I>(I);

impl<I: Iterator<Item = T> + Clone, T: Serialize> Serialize for Seq<I> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.clone())
    }
}

/// `toolConfig`.
struct ToolConfig<'a>(&'a ToolChoice);

impl Serialize for ToolConfig<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Calling<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            allowed_function_names: Option<[&'a str; 1]>,
            mode: &'static str,
        }
        let cfg = match self.0 {
            ToolChoice::None => Calling {
                allowed_function_names: None,
                mode: "NONE",
            },
            ToolChoice::Required => Calling {
                allowed_function_names: None,
                mode: "ANY",
            },
            ToolChoice::Tool(name) => Calling {
                allowed_function_names: Some([name]),
                mode: "ANY",
            },
            _ => Calling {
                allowed_function_names: None,
                mode: "AUTO",
            },
        };
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("functionCallingConfig", &cfg)?;
        m.end()
    }
}

/// `generationConfig`: the request's sampling fields merged with `extra.generationConfig`.
struct GenerationConfig<'a> {
    req: &'a ChatRequest,
    extra: Option<&'a Map<String, Value>>,
}

impl GenerationConfig<'_> {
    /// Whether the object has any field.
    fn is_empty(&self) -> bool {
        let r = self.req;
        r.temperature.is_none()
            && r.top_p.is_none()
            && r.max_tokens.is_none()
            && r.stop.is_empty()
            && r.seed.is_none()
            && !matches!(
                r.response_format,
                Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
            )
            && self.extra.is_none_or(Map::is_empty)
    }
}

impl Serialize for GenerationConfig<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let r = self.req;
        let none = Map::new();
        let mut o = Fields::new(s.serialize_map(None)?, self.extra.unwrap_or(&none));
        if let Some(n) = r.max_tokens {
            o.field("maxOutputTokens", &n)?;
        }
        let json = matches!(
            r.response_format,
            Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
        );
        // JSON Schema, as given (see `Declaration`); not beside a `Schema`-typed
        // `responseSchema` the caller wrote in `extra` (the two exclude each other)
        if let Some(ResponseFormat::JsonSchema { schema, .. }) = &r.response_format
            && !self.extra.is_some_and(|e| {
                e.contains_key("responseSchema") || e.contains_key("response_schema")
            })
        {
            o.field("responseJsonSchema", &json_schema_for_gemini(schema))?;
        }
        if json {
            o.field("responseMimeType", "application/json")?;
        }
        if let Some(seed) = r.seed {
            // Gemini's seed is an int32: a larger one (a random u32, half the time) was a
            // 400; it is folded into range, the same seed always the same value
            o.field("seed", &(seed as i32))?;
        }
        if !r.stop.is_empty() {
            o.field("stopSequences", &r.stop)?;
        }
        // an `f32` goes out as the `f64` it widens to, as a `Value` number printed it
        if let Some(t) = r.temperature {
            o.field("temperature", &f64::from(t))?;
        }
        if let Some(p) = r.top_p {
            o.field("topP", &f64::from(p))?;
        }
        o.end()
    }
}

/// The `generateContent` / `streamGenerateContent` body of a [`ChatRequest`], serialised
/// straight from the request (what [`generate_body`] returns as a `Value`).
///
/// System messages become `systemInstruction`; tool results `functionResponse` parts (the name
/// is looked up from the call they answer); sampling fields go to `generationConfig`;
/// `response_format` JSON becomes `responseMimeType` (and the schema `responseJsonSchema`). `extra`
/// is merged at the top level, winning over a field of the same name, except
/// `extra.generationConfig`, merged into the generation config (e.g. `thinkingConfig`).
///
/// ```
/// use infermux_core::{ChatRequest, Message};
/// use infermux_gemini::wire::GenerateBody;
///
/// let req = ChatRequest::new("gemini-2.5-flash", vec![Message::user("Hi")]);
/// let bytes = serde_json::to_vec(&GenerateBody::new(&req)).unwrap();
/// assert_eq!(
///     String::from_utf8(bytes).unwrap(),
///     r#"{"contents":[{"parts":[{"text":"Hi"}],"role":"user"}]}"#
/// );
/// ```
#[derive(Debug, Clone, Copy)]
pub struct GenerateBody<'a> {
    req: &'a ChatRequest,
}

impl<'a> GenerateBody<'a> {
    /// The body of `req`.
    pub fn new(req: &'a ChatRequest) -> Self {
        GenerateBody { req }
    }
}

impl Serialize for GenerateBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let req = self.req;
        let extra_cfg = match req.extra.get("generationConfig") {
            Some(Value::Object(cfg)) => Some(cfg),
            _ => None,
        };
        let cfg = GenerationConfig {
            req,
            extra: extra_cfg,
        };
        let mut o = Fields::new(s.serialize_map(None)?, &req.extra);
        // an object `extra.generationConfig` is merged into ours; ours replaces any other
        if extra_cfg.is_some() || !cfg.is_empty() {
            o = o.except("generationConfig");
        }
        o.field("contents", &Contents(&req.messages))?;
        if !cfg.is_empty() {
            o.field("generationConfig", &cfg)?;
        }
        let system = SystemText(&req.messages);
        // (an empty system text is an empty part, which Gemini refuses)
        if req.messages.iter().any(|m| {
            matches!(m.role, Role::System | Role::Developer)
                && m.content.iter().any(|p| match p {
                    ContentPart::Text { text } => !text.trim().is_empty(),
                    _ => false,
                })
        }) {
            o.field("systemInstruction", &SystemInstruction(system))?;
        }
        // a tool choice without function declarations is refused ("Function calling config
        // is set without function_declarations")
        if let Some(c) = &req.tool_choice
            && !req.tools.is_empty()
        {
            o.field("toolConfig", &ToolConfig(c))?;
        }
        if !req.tools.is_empty() {
            o.field("tools", &Tools(&req.tools))?;
        }
        o.end()
    }
}

/// The `generateContent` / `streamGenerateContent` body of `req` as a `Value`
/// ([`GenerateBody`] is what is sent).
pub fn generate_body(req: &ChatRequest) -> Value {
    serde_json::to_value(GenerateBody::new(req)).unwrap_or(Value::Null)
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

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WireCount {
    total_tokens: U64,
}

/// The `totalTokens` of a `countTokens` answer.
pub fn parse_count_tokens(body: &[u8]) -> Result<u64> {
    read!(body, WireCount, "invalid count", |w: Obj<WireCount>| w
        .or_default()
        .total_tokens
        .0
        .ok_or_else(|| decode_err("invalid count", "no totalTokens")))
}

/// One `embedContent` request: a text, the model, `outputDimensionality`, and `extra` merged
/// in (winning over a field of the same name).
struct EmbedRequest<'a> {
    req: &'a EmbeddingRequest,
    text: &'a str,
}

impl Serialize for EmbedRequest<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        struct Text<'a>(&'a str);
        impl Serialize for Text<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("text", self.0)?;
                m.end()
            }
        }
        struct Parts<'a>(&'a str);
        impl Serialize for Parts<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("parts", &[Text(self.0)])?;
                m.end()
            }
        }
        let mut o = Fields::new(s.serialize_map(None)?, &self.req.extra);
        o.field("content", &Parts(self.text))?;
        o.field("model", &model_path(&self.req.model))?;
        if let Some(d) = self.req.dimensions {
            o.field("outputDimensionality", &d)?;
        }
        o.end()
    }
}

/// The `batchEmbedContents` body of an [`EmbeddingRequest`], serialised straight from the
/// request (what [`batch_embed_body`] returns as a `Value`).
#[derive(Debug, Clone, Copy)]
pub struct BatchEmbedBody<'a> {
    req: &'a EmbeddingRequest,
    inputs: &'a [String],
}

impl<'a> BatchEmbedBody<'a> {
    /// The body of `req`.
    pub fn new(req: &'a EmbeddingRequest) -> Self {
        BatchEmbedBody {
            req,
            inputs: &req.inputs,
        }
    }

    /// The body of `inputs` (a part of `req.inputs`) with `req`'s model and options: a
    /// request of more than [`MAX_BATCH_EMBED`] inputs is sent in parts.
    pub fn part(req: &'a EmbeddingRequest, inputs: &'a [String]) -> Self {
        BatchEmbedBody { req, inputs }
    }
}

/// The most inputs one `batchEmbedContents` request may carry (the API refuses more: "at most
/// 100 requests can be in one batch").
pub const MAX_BATCH_EMBED: usize = 100;

impl Serialize for BatchEmbedBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let req = self.req;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(
            "requests",
            &Seq(self.inputs.iter().map(|text| EmbedRequest { req, text })),
        )?;
        m.end()
    }
}

/// The `embedContent` body of one text, serialised straight from the request (what
/// [`embed_body`] returns as a `Value`).
#[derive(Debug, Clone, Copy)]
pub struct EmbedBody<'a> {
    req: &'a EmbeddingRequest,
    text: &'a str,
}

impl<'a> EmbedBody<'a> {
    /// The body embedding `text` with `req`'s model and options.
    pub fn new(req: &'a EmbeddingRequest, text: &'a str) -> Self {
        EmbedBody { req, text }
    }
}

impl Serialize for EmbedBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        EmbedRequest {
            req: self.req,
            text: self.text,
        }
        .serialize(s)
    }
}

/// The `batchEmbedContents` body: one request per input (`dimensions` →
/// `outputDimensionality`; `extra`, e.g. `taskType`, merged into each).
pub fn batch_embed_body(req: &EmbeddingRequest) -> Value {
    serde_json::to_value(BatchEmbedBody::new(req)).unwrap_or(Value::Null)
}

/// The `embedContent` body of one text.
pub fn embed_body(req: &EmbeddingRequest, text: &str) -> Value {
    serde_json::to_value(EmbedBody::new(req, text)).unwrap_or(Value::Null)
}

// ---- answers -----------------------------------------------------------------------------

/// An embedding's `values`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireValues {
    values: Arr<F64>,
}

fn values(v: Obj<WireValues>) -> Result<Vec<f32>> {
    v.or_default()
        .values
        .0
        .ok_or_else(|| decode_err("invalid embedding", "no values"))?
        .into_iter()
        .map(|x| {
            x.0.map(|f| f as f32)
                .ok_or_else(|| decode_err("invalid embedding", "a value is not a number"))
        })
        .collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireBatchEmbeddings {
    embeddings: Arr<Obj<WireValues>>,
    #[serde(rename = "usageMetadata")]
    usage_metadata: Present<Obj<WireUsage>>,
}

/// A `batchEmbedContents` answer, checked to hold `expected` vectors.
pub fn parse_batch_embeddings(
    body: &[u8],
    model: &str,
    expected: usize,
) -> Result<EmbeddingResponse> {
    let w = read!(body, WireBatchEmbeddings, "invalid embeddings", |w: Obj<
        _,
    >| Ok(
        w.or_default()
    ))?;
    let embs = w
        .embeddings
        .0
        .ok_or_else(|| decode_err("invalid embeddings", "no embeddings array"))?;
    if embs.len() != expected {
        return Err(decode_err(
            "invalid embeddings",
            format!("{} vectors for {expected} inputs", embs.len()),
        ));
    }
    let vectors = embs.into_iter().map(values).collect::<Result<Vec<_>>>()?;
    let mut resp = EmbeddingResponse::new(model, vectors);
    // the prompt tokens, when the answer says (`usageMetadata`)
    resp.usage = w.usage_metadata.0.map(|u| u.or_default().usage());
    Ok(resp)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireEmbedding {
    embedding: Obj<WireValues>,
}

/// An `embedContent` answer.
pub fn parse_embedding(body: &[u8]) -> Result<Vec<f32>> {
    read!(body, WireEmbedding, "invalid embedding", |w: Obj<
        WireEmbedding,
    >| values(
        w.or_default().embedding
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WireModels<'a> {
    #[serde(borrow)]
    models: Arr<Obj<WireModel<'a>>>,
    #[serde(borrow)]
    next_page_token: Str<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireModel<'a> {
    #[serde(borrow)]
    name: Str<'a>,
}

/// A `models` page (ids without the `models/` prefix).
pub fn parse_models(body: &[u8]) -> Result<ModelList> {
    read!(body, WireModels<'_>, "invalid models", models_from)
}

fn models_from(w: Obj<WireModels<'_>>) -> Result<ModelList> {
    let models = w
        .or_default()
        .models
        .0
        .ok_or_else(|| decode_err("invalid models", "no models array"))?
        .into_iter()
        .filter_map(|m| {
            let m = m.0?;
            let name = m.name.get()?;
            let mut info = ModelInfo::new(name.strip_prefix("models/").unwrap_or(name));
            info.owned_by = Some("google".to_owned());
            Some(info)
        })
        .collect();
    Ok(ModelList::new(models))
}

/// The `nextPageToken` of a `models` page, when there is a next page.
pub fn next_models_page(body: &[u8]) -> Option<String> {
    read!(body, WireModels<'_>, "invalid models", |w: Obj<
        WireModels<'_>,
    >| Ok(w
        .or_default()
        .next_page_token
        .owned()
        .filter(|s| !s.is_empty())))
    .ok()
    .flatten()
}

/// `usageMetadata`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WireUsage {
    prompt_token_count: U64,
    candidates_token_count: U64,
    thoughts_token_count: U64,
    cached_content_token_count: U64,
    /// The prompt tokens of built-in tools' results (search, code execution): input, counted
    /// apart from `promptTokenCount`.
    tool_use_prompt_token_count: U64,
}

impl WireUsage {
    fn usage(&self) -> Usage {
        let thoughts = self.thoughts_token_count.0;
        let mut usage = Usage::new(
            self.prompt_token_count
                .0
                .unwrap_or(0)
                .saturating_add(self.tool_use_prompt_token_count.0.unwrap_or(0)),
            self.candidates_token_count
                .0
                .unwrap_or(0)
                .saturating_add(thoughts.unwrap_or(0)),
        );
        usage.reasoning_tokens = thoughts;
        usage.cached_input_tokens = self.cached_content_token_count.0;
        usage
    }
}

/// Usage from `usageMetadata`: input includes the tool results' tokens
/// (`toolUsePromptTokenCount`), output includes thinking tokens (`thoughtsTokenCount`, also in
/// `reasoning_tokens`); `cachedContentTokenCount` is `cached_input_tokens`.
///
/// ```
/// use infermux_gemini::wire::usage_from;
/// let u = usage_from(&serde_json::json!({"promptTokenCount": 10, "toolUsePromptTokenCount": 900,
///     "candidatesTokenCount": 5, "thoughtsTokenCount": 7}));
/// assert_eq!((u.input_tokens, u.output_tokens, u.reasoning_tokens), (910, 12, Some(7)));
/// ```
pub fn usage_from(u: &Value) -> Usage {
    Obj::<WireUsage>::deserialize(u)
        .map(Obj::or_default)
        .unwrap_or_default()
        .usage()
}

/// Finish reasons that mean the answer was blocked (the v1beta proto's `FinishReason`;
/// `LANGUAGE`: stopped for using an unsupported language).
const BLOCKED: [&str; 9] = [
    "SAFETY",
    "RECITATION",
    "LANGUAGE",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
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
        // a delay too long for a `Duration` (`"1e20s"`) is capped, never a panic
        secs.is_finite()
            .then(|| infermux_http::capped_secs(secs))
            .flatten()
    })
}

/// What a 429's `QuotaFailure` details say about the quotas it violated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaScope {
    /// Every violated quota is per model (`…PerModel…` ids): the key's other models are not
    /// held back.
    pub per_model: bool,
    /// A violated quota is per day (`…PerDay…`), or zero (`quotaValue: "0"`, "limit: 0": the
    /// tier has none of that model): no minute-long wait helps before the day's quota resets.
    pub per_day: bool,
}

/// Reads the `google.rpc.QuotaFailure` violations of an error body (default: none found).
///
/// ```
/// use infermux_gemini::wire::{QuotaScope, quota_scope};
/// let body = serde_json::json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
///     "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
///         {"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]}});
/// assert_eq!(quota_scope(&body), QuotaScope { per_model: true, per_day: true });
/// ```
pub fn quota_scope(body: &Value) -> QuotaScope {
    let err = match body {
        Value::Array(a) => a.first().and_then(|e| e.get("error")),
        v => v.get("error"),
    };
    let Some(err) = err else {
        return QuotaScope::default();
    };
    let zero_in_message = err
        .get("message")
        .and_then(Value::as_str)
        .is_some_and(|m| m.contains("limit: 0,") || m.ends_with("limit: 0"));
    let violations = err
        .get("details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("google.rpc.QuotaFailure"))
        })
        .filter_map(|d| d.get("violations").and_then(Value::as_array))
        .flatten();
    let (mut any, mut per_model, mut per_day) = (false, true, zero_in_message);
    for v in violations {
        any = true;
        let id = v.get("quotaId").and_then(Value::as_str).unwrap_or("");
        per_model &= id.contains("PerModel");
        per_day |=
            id.contains("PerDay") || v.get("quotaValue").and_then(Value::as_str) == Some("0");
    }
    QuotaScope {
        per_model: any && per_model,
        per_day: any && per_day,
    }
}

/// How long until the Gemini API's daily quotas reset, at midnight Pacific time, from
/// `now_unix_secs` (US daylight saving time: from the second Sunday of March, 2:00, to the
/// first Sunday of November, 2:00, local).
///
/// ```
/// use infermux_gemini::wire::quota_day_ends_in;
/// // 2026-01-15 12:00 UTC is 04:00 PST: 20 hours to midnight
/// assert_eq!(quota_day_ends_in(1_768_478_400).as_secs(), 20 * 3600);
/// ```
pub fn quota_day_ends_in(now_unix_secs: u64) -> Duration {
    let now = i64::try_from(now_unix_secs).unwrap_or(i64::MAX / 2);
    let offset = pacific_offset(now);
    let local_midnight = (now - offset).div_euclid(86_400) * 86_400 + 86_400;
    // the offset of that midnight (the change is at 2:00, so it is the day before's at most
    // one change away)
    let end = local_midnight + pacific_offset(local_midnight + offset);
    Duration::from_secs(u64::try_from(end - now).unwrap_or(0))
}

/// Seconds Pacific time is behind UTC at `t` (unix seconds): 7 under daylight saving time,
/// else 8.
fn pacific_offset(t: i64) -> i64 {
    use infermux_http::civil::{civil_from_days, days_from_civil};
    let (year, _, _) = civil_from_days(t.div_euclid(86_400));
    let sunday_on_or_after = |days: i64| days + (7 - (days + 4).rem_euclid(7)) % 7;
    let dst_start = (sunday_on_or_after(days_from_civil(year, 3, 1)) + 7) * 86_400 + 10 * 3600;
    let dst_end = sunday_on_or_after(days_from_civil(year, 11, 1)) * 86_400 + 9 * 3600;
    if (dst_start..dst_end).contains(&t) {
        7 * 3600
    } else {
        8 * 3600
    }
}

/// A `Schema`-typed schema (a declaration's `parameters`, as an SDK writes it) as JSON Schema:
/// its types in lower case (`OBJECT` → `object`) and `nullable: true` as a type list with
/// `null`; the rest as it is.
fn json_schema_of_typed(v: &Value, depth: usize) -> Value {
    let Value::Object(o) = v else {
        return v.clone();
    };
    if depth > 64 {
        return v.clone();
    }
    let nullable = o.get("nullable").and_then(Value::as_bool) == Some(true);
    let mut out = Map::new();
    for (k, val) in o {
        let val = match (k.as_str(), val) {
            ("nullable", _) => continue,
            ("type", Value::String(t)) => {
                let t = Value::String(t.to_ascii_lowercase());
                if nullable { json!([t, "null"]) } else { t }
            }
            ("properties", Value::Object(m)) => Value::Object(
                m.iter()
                    .map(|(name, s)| (name.clone(), json_schema_of_typed(s, depth + 1)))
                    .collect(),
            ),
            ("items", s) => json_schema_of_typed(s, depth + 1),
            ("anyOf", Value::Array(list)) => Value::Array(
                list.iter()
                    .map(|s| json_schema_of_typed(s, depth + 1))
                    .collect(),
            ),
            (_, other) => other.clone(),
        };
        out.insert(k.clone(), val);
    }
    Value::Object(out)
}

/// Prefix of the ids given to function calls that came without one.
pub const GENERATED_ID: &str = "gemini-call-";

/// A `functionCall`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireFunctionCall<'a> {
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(borrow)]
    name: Str<'a>,
    args: Present<Value>,
    /// Streamed arguments (`streamFunctionCallArguments`): pieces by JSON path.
    #[serde(rename = "partialArgs")]
    partial_args: Present<Vec<Value>>,
    /// More of this call follows in the next parts.
    #[serde(rename = "willContinue")]
    will_continue: Bool,
}

/// A function call whose arguments arrive in pieces (`willContinue`).
#[derive(Debug, Default)]
struct OpenCall {
    index: u32,
    args: Value,
    /// The path of a string value that continues in the next piece.
    continuing: Option<String>,
    /// Values the paths have made so far (objects' new keys, arrays' new elements), bounded
    /// by [`MAX_MADE_VALUES`].
    made: usize,
}

/// The most values the paths of one call's streamed arguments may make: each path is bounded
/// (128 steps, indexes to 1024), but a path of 127 `[1024]` steps makes 130 000 values from
/// 800 bytes, and a thousand of them gigabytes.
const MAX_MADE_VALUES: usize = 1 << 16;

impl OpenCall {
    /// Folds one `partialArgs` item in: `{"jsonPath": "$.a.b[0]", "stringValue" | "numberValue"
    /// | "boolValue" | "nullValue": …, "willContinue"}`. An item it cannot read is skipped.
    /// Folds every item of a part's `partialArgs` in.
    fn fold_all(&mut self, items: Option<&[Value]>) -> Result<()> {
        items
            .into_iter()
            .flatten()
            .try_for_each(|item| self.fold(item))
    }

    fn fold(&mut self, item: &Value) -> Result<()> {
        let Some(path) = item.get("jsonPath").and_then(Value::as_str) else {
            return Ok(());
        };
        let more = item.get("willContinue").and_then(Value::as_bool) == Some(true);
        let continues = self.continuing.as_deref() == Some(path);
        // a path it cannot follow would leave an argument out: an error, not a guess
        let Some(at) = slot(&mut self.args, path, &mut self.made) else {
            let why = if self.made > MAX_MADE_VALUES {
                format!(
                    "streamed function-call arguments whose paths make more than \
                     {MAX_MADE_VALUES} values (at {path})"
                )
            } else {
                format!("a streamed function-call argument at a path it cannot read: {path}")
            };
            return Err(Error::new(ErrorKind::Decode, why));
        };
        let value = if let Some(s) = item.get("stringValue").and_then(Value::as_str) {
            match at {
                // a long argument streamed in many pieces grows in place (a copy of all of
                // it per piece was quadratic)
                Value::String(so_far) if continues => {
                    so_far.push_str(s);
                    self.continuing = more.then(|| path.to_owned());
                    return Ok(());
                }
                _ => Value::String(s.to_owned()),
            }
        } else if let Some(n) = item.get("numberValue") {
            n.clone()
        } else if let Some(b) = item.get("boolValue") {
            b.clone()
        } else if item.get("nullValue").is_some() {
            Value::Null
        } else if let Some(v) = item.get("structValue").or_else(|| item.get("listValue")) {
            // (protobuf's Struct and ListValue read as JSON: an object, an array)
            v.clone()
        } else {
            // a value of a kind it cannot read would leave an argument wrong: an error
            return Err(Error::new(
                ErrorKind::Decode,
                format!("a streamed function-call argument of a kind it cannot read at {path}"),
            ));
        };
        let string = value.is_string();
        *at = value;
        self.continuing = (string && more).then(|| path.to_owned());
        Ok(())
    }
}

/// The value at a JSON path (`$.a.b[0]`, `$['a-b']`, `$["x.y"][2]`) of `root`, made (as
/// objects and arrays) where missing, each value made counted in `made`; `None` for a path it
/// cannot follow: one that is not below the root object (`$`, `$[0]`), an empty name, an index
/// past 1024, or one that would take `made` past [`MAX_MADE_VALUES`].
fn slot<'v>(root: &'v mut Value, path: &str, made: &mut usize) -> Option<&'v mut Value> {
    let steps = path_steps(path)?;
    // the arguments stay an object: the first step is a name
    if !matches!(steps.first(), Some(Step::Key(_))) {
        return None;
    }
    let mut at = root;
    for step in steps {
        at = match step {
            Step::Key(key) => {
                if !at.is_object() {
                    *at = Value::Object(Map::new());
                }
                let map = at.as_object_mut()?;
                if !map.contains_key(&key) {
                    *made += 1;
                }
                if *made > MAX_MADE_VALUES {
                    return None;
                }
                map.entry(key).or_insert(Value::Null)
            }
            Step::Index(n) => {
                if !at.is_array() {
                    *at = Value::Array(Vec::new());
                }
                let a = at.as_array_mut()?;
                *made += (n + 1).saturating_sub(a.len());
                if *made > MAX_MADE_VALUES {
                    return None;
                }
                a.resize(a.len().max(n + 1), Value::Null);
                &mut a[n]
            }
        };
    }
    Some(at)
}

/// One step of a JSON path.
enum Step {
    Key(String),
    Index(usize),
}

/// The deepest argument path read: serde_json refuses documents nested deeper than 128, and a
/// path builds one level per step (a path of 50 000 steps would build a value whose drop or
/// printing overflows the stack).
const MAX_PATH_STEPS: usize = 128;

/// The steps of a normalized JSON path (RFC 9535): `.name`, `['name']` / `["name"]` with
/// backslash escapes, `[n]`; `None` for anything else, and for a path of more than
/// [`MAX_PATH_STEPS`] steps.
fn path_steps(path: &str) -> Option<Vec<Step>> {
    let mut rest = path.strip_prefix('$')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if steps.len() == MAX_PATH_STEPS {
            return None;
        }
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            steps.push(Step::Key(r[..end].to_owned()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            if let Some(q) = r.chars().next().filter(|c| *c == '\'' || *c == '"') {
                let mut name = String::new();
                let mut chars = r[1..].char_indices();
                let mut close = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => name.push(chars.next()?.1),
                        c if c == q => {
                            close = Some(i);
                            break;
                        }
                        c => name.push(c),
                    }
                }
                let after = &r[1 + close? + 1..];
                rest = after.strip_prefix(']')?;
                if name.is_empty() {
                    return None;
                }
                steps.push(Step::Key(name));
            } else {
                let end = r.find(']')?;
                let n: usize = r[..end].parse().ok()?;
                if n > 1024 {
                    return None;
                }
                steps.push(Step::Index(n));
                rest = &r[end + 1..];
            }
        } else {
            return None;
        }
    }
    Some(steps)
}

/// One part of a candidate's content.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WirePart<'a> {
    #[serde(borrow)]
    text: Str<'a>,
    thought: Bool,
    #[serde(borrow)]
    thought_signature: Str<'a>,
    #[serde(borrow)]
    function_call: Present<Obj<WireFunctionCall<'a>>>,
    #[serde(borrow)]
    inline_data: Obj<WireBlob<'a>>,
}

/// `inlineData`: an image (or other media) the model answered with.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WireBlob<'a> {
    #[serde(borrow)]
    mime_type: Str<'a>,
    #[serde(borrow)]
    data: Str<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireContent<'a> {
    #[serde(borrow)]
    parts: Arr<Obj<WirePart<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WireCandidate<'a> {
    /// Which candidate (`candidateCount` > 1 asks for several): absent means the first.
    index: U64,
    #[serde(borrow)]
    content: Obj<WireContent<'a>>,
    #[serde(borrow)]
    finish_reason: Str<'a>,
    /// Sources the answer recites (`citationSources`).
    citation_metadata: Present<Value>,
    /// What a grounded answer (Google Search, a retrieval tool) rests on (`groundingChunks`).
    grounding_metadata: Present<Value>,
}

/// The sources a candidate cites: its `citationMetadata.citationSources` and its
/// `groundingMetadata.groundingChunks`, each object as sent.
fn cited_sources(citation: Option<Value>, grounding: Option<Value>) -> Vec<Value> {
    let list =
        |v: Option<Value>, key: &str| match v.and_then(|mut v| v.get_mut(key).map(Value::take)) {
            Some(Value::Array(items)) => items.into_iter().filter(Value::is_object).collect(),
            _ => Vec::new(),
        };
    let mut out = list(citation, "citationSources");
    out.extend(list(grounding, "groundingChunks"));
    out
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WireFeedback<'a> {
    #[serde(borrow)]
    block_reason: Str<'a>,
}

/// One `GenerateContentResponse`: a whole answer, or one chunk of a streamed one.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WireChunk<'a> {
    /// An error object: `"error": null` is no error (`Option` reads `null` as absent).
    error: Option<IgnoredAny>,
    #[serde(borrow)]
    response_id: Str<'a>,
    #[serde(borrow)]
    model_version: Str<'a>,
    usage_metadata: Present<Obj<WireUsage>>,
    #[serde(borrow)]
    prompt_feedback: Obj<WireFeedback<'a>>,
    #[serde(borrow)]
    candidates: Arr<Obj<WireCandidate<'a>>>,
}

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
    /// A call whose arguments are still arriving.
    open: Option<OpenCall>,
    /// `SignedBy` was sent.
    signed: bool,
    /// The sources cited so far, each once (a stream may repeat them chunk after chunk),
    /// given at the end: between pieces of the text, a part each would split it.
    cited: Vec<Value>,
    /// `cited` as JSON text, to find a repeat without comparing it with every source before.
    cited_seen: HashSet<String>,
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
        let value =
            || serde_json::from_str::<Value>(data).map_err(|e| decode_err("invalid chunk", e));
        match serde_json::from_str::<Obj<WireChunk<'_>>>(data) {
            Ok(w) => self.on_wire(w.or_default(), value),
            // not JSON (the error says so), or an object repeating a key: read as a `Value`
            Err(_) => self.on_value(&value()?),
        }
    }

    /// The events of one parsed chunk.
    pub fn on_value(&mut self, v: &Value) -> Result<Vec<StreamEvent>> {
        let w = Obj::<WireChunk<'_>>::deserialize(v)
            .map_err(|e| decode_err("invalid chunk", e))?
            .or_default();
        self.on_wire(w, || Ok(v.clone()))
    }

    /// The events of one chunk; `value` gives the chunk as a `Value` (for an `error` object).
    /// Before the first signature or part only Gemini reads back: `SignedBy` Gemini.
    fn on_wire(
        &mut self,
        w: WireChunk<'_>,
        value: impl FnOnce() -> Result<Value>,
    ) -> Result<Vec<StreamEvent>> {
        let mut out = self.events_of(w, value)?;
        infermux_core::mark_signer(&mut out, &Signer::Gemini, &mut self.signed);
        Ok(out)
    }

    fn events_of(
        &mut self,
        w: WireChunk<'_>,
        value: impl FnOnce() -> Result<Value>,
    ) -> Result<Vec<StreamEvent>> {
        if w.error.is_some() {
            let v = value()?;
            let err = v.get("error").unwrap_or(&Value::Null);
            let status = err.get("code").and_then(Value::as_u64).unwrap_or(500);
            let status = u16::try_from(status).unwrap_or(500);
            // as a non-2xx answer reads (`RetryInfo`, per-model and per-day quotas)
            let e = error_from_response(
                status,
                &infermux_http::HeaderMap::new(),
                v.to_string().as_bytes(),
            );
            return Err(self.with_text(e));
        }
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: w.response_id.owned(),
                model: w.model_version.owned(),
            });
        }
        if let Some(u) = w.usage_metadata.0 {
            self.usage = Some(u.or_default().usage());
        }
        if let Some(reason) = w.prompt_feedback.or_default().block_reason.get() {
            return Err(self.with_text(
                Error::new(
                    ErrorKind::ContentFilter,
                    format!("the prompt was blocked ({reason})"),
                )
                .with_provider_code(reason),
            ));
        }
        // the first candidate only (a request for several, `candidateCount` in `extra`, gets
        // the first, streamed or not, as with OpenAI's `n`): a chunk of another is skipped
        let Some((at, cand)) = w.candidates.0.and_then(|c| {
            c.into_iter()
                .enumerate()
                .map(|(at, c)| (at, c.or_default()))
                .find(|(_, c)| c.index.0.unwrap_or(0) == 0)
        }) else {
            return Ok(out);
        };
        let parts = cand.content.or_default().parts.0.unwrap_or_default();
        // the chunk as a `Value`, read once and only for a part this version does not model
        let mut value = Some(value);
        let mut whole: Option<Value> = None;
        for (i, p) in parts.into_iter().enumerate() {
            let p = p.or_default();
            let signature = p.thought_signature.owned().filter(|s| !s.is_empty());
            if let Some(fc) = p.function_call.0 {
                let fc = fc.or_default();
                let more = fc.will_continue.0 == Some(true);
                // the pieces of a call streamed with `willContinue`: arguments by path, and
                // a part without `willContinue` (`{}`) closing it
                if fc.name.get().is_none_or(str::is_empty)
                    && let Some(open) = self.open.as_mut()
                {
                    if let Some(signature) = signature {
                        out.push(StreamEvent::ToolCallSignature {
                            index: open.index,
                            signature,
                        });
                    }
                    if let Err(e) = open.fold_all(fc.partial_args.0.as_deref()) {
                        return Err(self.with_text(e));
                    }
                    if !more {
                        self.close_call(&mut out);
                    }
                    continue;
                }
                // a part with nothing in it, no call open: nothing to say
                if fc.name.get().is_none_or(str::is_empty)
                    && fc.args.0.is_none()
                    && fc.partial_args.0.is_none()
                {
                    continue;
                }
                self.close_call(&mut out);
                let index = self.calls;
                self.calls += 1;
                let id = fc
                    .id
                    .owned()
                    .unwrap_or_else(|| format!("{GENERATED_ID}{index}"));
                // `willContinue`: its arguments (beyond any given here) follow in pieces
                let streamed = more;
                let args = fc.args.0;
                out.push(StreamEvent::ToolCallDelta {
                    index,
                    id: Some(id),
                    name: fc.name.owned(),
                    arguments: match (&args, streamed) {
                        (_, true) => String::new(),
                        (Some(a), false) => a.to_string(),
                        (None, false) => "{}".to_owned(),
                    },
                });
                if let Some(signature) = signature {
                    out.push(StreamEvent::ToolCallSignature { index, signature });
                }
                if streamed {
                    let mut open = OpenCall {
                        index,
                        args: match args {
                            Some(Value::Object(o)) => Value::Object(o),
                            _ => Value::Object(Map::new()),
                        },
                        continuing: None,
                        made: 0,
                    };
                    if let Err(e) = open.fold_all(fc.partial_args.0.as_deref()) {
                        return Err(self.with_text(e));
                    }
                    self.open = Some(open);
                }
            } else if let Some(t) = p.text.0 {
                if p.thought.0 == Some(true) {
                    out.push(StreamEvent::ReasoningDelta {
                        text: t.into_owned(),
                    });
                } else if !t.is_empty() {
                    self.text.push_str(&t);
                    out.push(StreamEvent::TextDelta {
                        text: t.into_owned(),
                    });
                }
                if let Some(signature) = signature {
                    out.push(StreamEvent::ReasoningSignature { signature });
                }
            } else if let Some(blob) = p.inline_data.0.filter(|b| {
                // a plain image answer; a draft image (`thought`) or a signed one is kept raw
                // below, so it goes back to Gemini as it came, signature and all
                b.mime_type.get().is_some_and(|m| m.starts_with("image/"))
                    && b.data.get().is_some()
                    && p.thought.0 != Some(true)
                    && signature.is_none()
            }) {
                out.push(StreamEvent::Part {
                    part: ContentPart::Image {
                        source: ImageSource::Base64 {
                            media_type: blob.mime_type.owned().unwrap_or_default(),
                            data: blob.data.owned().unwrap_or_default(),
                        },
                        detail: None,
                    },
                });
            } else {
                // a kind of part this version does not model (`executableCode`,
                // `codeExecutionResult`, `fileData`, audio, a newer kind): kept whole, never
                // dropped (it may be the answer)
                if whole.is_none()
                    && let Some(read) = value.take()
                {
                    whole = Some(read().map_err(|e| self.with_text(e))?);
                }
                // (a part with nothing but a signature is no part to keep: its signature goes
                // with the reasoning, as a text part's does)
                let raw = whole
                    .as_ref()
                    .and_then(|v| v.pointer(&format!("/candidates/{at}/content/parts/{i}")))
                    .filter(|raw| {
                        raw.as_object().is_some_and(|o| {
                            o.keys().any(|k| k != "thought" && k != "thoughtSignature")
                        })
                    })
                    .cloned();
                match (raw, signature) {
                    (Some(raw), _) => out.push(StreamEvent::Part {
                        part: ContentPart::Other { raw },
                    }),
                    (None, Some(signature)) => {
                        out.push(StreamEvent::ReasoningSignature { signature });
                    }
                    (None, None) => {}
                }
            }
        }
        for source in cited_sources(cand.citation_metadata.0, cand.grounding_metadata.0) {
            if self.cited_seen.insert(source.to_string()) {
                self.cited.push(source);
            }
        }
        if let Some(r) = cand.finish_reason.get() {
            self.close_call(&mut out);
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

    /// Ends a call whose arguments were streamed: its arguments, whole.
    fn close_call(&mut self, out: &mut Vec<StreamEvent>) {
        if let Some(open) = self.open.take() {
            out.push(StreamEvent::ToolCallDelta {
                index: open.index,
                id: None,
                name: None,
                arguments: open.args.to_string(),
            });
        }
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
            // the model's output failed (a call it could not form, a call of a tool it was
            // not given, an answer Gemini could not parse): sampled again it usually succeeds,
            // so an error a policy may retry, never an answer kept (or cached) as complete
            "MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" | "MALFORMED_RESPONSE" => {
                return Err(self.with_text(
                    Error::new(
                        ErrorKind::Server,
                        format!("Gemini ended the answer with finishReason {reason}"),
                    )
                    .with_provider_code(reason),
                ));
            }
            "STOP" if self.calls > 0 => FinishReason::ToolCalls,
            "STOP" => FinishReason::Stop,
            "MAX_TOKENS" => FinishReason::Length,
            other => FinishReason::Other(other.to_owned()),
        };
        let mut out = Vec::new();
        self.close_call(&mut out);
        out.extend(
            std::mem::take(&mut self.cited)
                .into_iter()
                .map(|raw| StreamEvent::Part {
                    part: ContentPart::Citation { raw },
                }),
        );
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
    let mut st = GenerateState::new();
    let events = read!(body, WireChunk<'_>, "invalid answer", |w: Obj<
        WireChunk<'_>,
    >| st
        .on_wire(w.or_default(), || {
            infermux_http::json::from_body(body).map_err(|e| decode_err("invalid answer", e))
        }))?;
    let mut acc = StreamAccumulator::new();
    for ev in events.iter().chain(st.on_end()?.iter()) {
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
    // (a single tool object, as some clients write it, reads as a list of one)
    let tools = match v.get("tools") {
        Some(Value::Array(a)) => Some(a.as_slice()),
        Some(one @ Value::Object(_)) => Some(std::slice::from_ref(one)),
        _ => None,
    };
    if let Some(tools) = tools {
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
                    // JSON Schema as it is; the `Schema`-typed `parameters` turned into JSON
                    // Schema (they go back out as `parametersJsonSchema`)
                    get(d, "parametersJsonSchema", "parameters_json_schema")
                        .cloned()
                        .or_else(|| d.get("parameters").map(|p| json_schema_of_typed(p, 0)))
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
    // JSON asked for: a response format, so that another provider the request falls back to
    // is asked for it too; a `Schema`-typed `responseSchema` stays in `extra` with its MIME type
    let mime = ["responseMimeType", "response_mime_type"];
    let json_mime = mime
        .iter()
        .any(|k| extra_cfg.get(*k).and_then(Value::as_str) == Some("application/json"));
    let typed_schema = ["responseSchema", "response_schema"]
        .iter()
        .any(|k| extra_cfg.contains_key(*k));
    if json_mime && !typed_schema {
        let schema = ["responseJsonSchema", "response_json_schema"]
            .iter()
            .find_map(|k| extra_cfg.remove(*k));
        for k in mime {
            extra_cfg.remove(k);
        }
        req.response_format = Some(match schema {
            Some(schema) => ResponseFormat::JsonSchema {
                name: "response".into(),
                schema,
                strict: None,
            },
            None => ResponseFormat::JsonObject,
        });
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
/// `RetryInfo` delay as retry-after and `API_KEY_INVALID` as `Auth`. A 429 whose violated
/// quotas are all per model is model-scoped ([`Error::is_model_scoped`]); one that spent a
/// day's quota (or met a zero one) waits until that quota resets ([`quota_day_ends_in`]),
/// whatever its `RetryInfo` says.
pub fn error_from_response(status: u16, headers: &infermux_http::HeaderMap, body: &[u8]) -> Error {
    let mut e = infermux_http::error_from_response(status, headers, body);
    let v: Value = infermux_http::json::from_body(body).unwrap_or_default();
    if e.retry_after().is_none()
        && let Some(d) = retry_delay(&v)
    {
        e = e.with_retry_after(d);
    }
    if e.kind() == ErrorKind::RateLimited {
        let scope = quota_scope(&v);
        // Gemini's quotas are per project per model: the key's other models go on
        if scope.per_model {
            e = e.with_model_scope(true);
        }
        // a day's quota spent (or none at all) comes with a `RetryInfo` of seconds, as a
        // minute's does: waiting that long only met the 429 again, every half minute
        if scope.per_day {
            // by the server's clock (its `Date`): this machine's, a minute fast, came back to
            // the spent quota a minute before its reset, and waited a whole day more
            let now = infermux_http::response_time(headers)
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let day = quota_day_ends_in(now);
            if e.retry_after().is_none_or(|d| d < day) {
                e = e.with_retry_after(day);
            }
        }
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
