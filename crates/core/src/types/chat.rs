//! Chat: messages with multimodal parts, tools, tool calls and tool results.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::usage::Usage;

string_enum! {
    /// Who wrote a message.
    pub enum Role {
        /// Instructions for the model.
        System => "system",
        /// OpenAI's newer name for system instructions.
        Developer => "developer",
        /// The user.
        User => "user",
        /// The model.
        Assistant => "assistant",
        /// A tool's result.
        Tool => "tool",
    }
}

string_enum! {
    /// Why generation stopped.
    pub enum FinishReason {
        /// A natural stop or a stop sequence.
        Stop => "stop",
        /// The token limit.
        Length => "length",
        /// The model called tools.
        ToolCalls => "tool_calls",
        /// Content filtering.
        ContentFilter => "content_filter",
    }
}

/// The provider whose opaque data an assistant message carries — reasoning signatures
/// ([`ContentPart::Thinking`]), redacted reasoning, signed tool calls, blocks kept raw —
/// which only that provider accepts back ([`Message::signer`]). One byte: it rides on every
/// answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Signer {
    /// Anthropic's Messages API.
    Anthropic,
    /// Google's Gemini API.
    Gemini,
    /// OpenAI (its Responses API's raw items; that provider does not mark its answers yet:
    /// Anthropic and Gemini tell its items by their shape).
    #[serde(rename = "openai")]
    OpenAi,
    /// A provider this version does not know (read from a newer version's JSON): another
    /// provider's to every provider here.
    #[serde(other)]
    Other,
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ImageSource {
    /// A URL (https or `data:`).
    Url {
        /// The URL.
        url: String,
    },
    /// Inline bytes, base64-encoded.
    Base64 {
        /// MIME type such as `image/png`.
        media_type: String,
        /// Base64 data without a `data:` prefix.
        data: String,
    },
}

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image.
    Image {
        /// The image.
        source: ImageSource,
        /// Detail hint (`low`, `high`, `auto`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Model reasoning shown to the caller.
    Thinking {
        /// The reasoning text.
        text: String,
        /// Provider signature that must be sent back unchanged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// Reasoning the provider redacted (opaque, sent back unchanged).
    RedactedThinking {
        /// Opaque data.
        data: String,
    },
    /// A refusal by the model.
    Refusal {
        /// The refusal text.
        text: String,
    },
    /// A call of a tool the provider runs itself (Anthropic's `server_tool_use`: web search,
    /// code execution, web fetch). Nothing for the caller to do: its result follows as a
    /// [`ContentPart::ServerToolResult`]. Sent back unchanged to the provider that made it.
    ServerToolCall {
        /// The provider's id for the call.
        id: String,
        /// The server tool's name (`web_search`, `code_execution`, …).
        name: String,
        /// The call's input as the provider sent it (`{"query": "…"}`).
        input: Value,
    },
    /// The result of a [`ContentPart::ServerToolCall`] (Anthropic's `web_search_tool_result`,
    /// `code_execution_tool_result`, …), kept as the raw block the provider sent so it can be
    /// sent back unchanged.
    ServerToolResult {
        /// The id of the call it answers.
        tool_use_id: String,
        /// The whole block as sent, `type` included.
        raw: Value,
    },
    /// A source the text before it cites, as the provider sent it: Anthropic's `citations`
    /// on a text block, OpenAI's `annotations` (chat and the Responses API), Gemini's citation
    /// sources and grounding chunks. Sent back only to the provider whose kind it is.
    Citation {
        /// The citation object (`type`, `url`, `cited_text`, …).
        raw: Value,
    },
    /// A content block this version does not model, kept as the raw JSON the provider sent
    /// (sent back unchanged to the same provider, dropped for others).
    Other {
        /// The whole block as sent.
        raw: Value,
    },
}

impl ContentPart {
    /// Whether the part is signed or opaque data only its provider reads back.
    pub fn is_provider_data(&self) -> bool {
        matches!(
            self,
            ContentPart::Thinking {
                signature: Some(_),
                ..
            } | ContentPart::RedactedThinking { .. }
                | ContentPart::ServerToolCall { .. }
                | ContentPart::ServerToolResult { .. }
                | ContentPart::Other { .. }
        )
    }
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Text { text: text.into() }
    }
    /// An image part from a URL.
    pub fn image_url(url: impl Into<String>) -> Self {
        ContentPart::Image {
            source: ImageSource::Url { url: url.into() },
            detail: None,
        }
    }
    /// An image part from base64 bytes.
    pub fn image_base64(media_type: impl Into<String>, data: impl Into<String>) -> Self {
        ContentPart::Image {
            source: ImageSource::Base64 {
                media_type: media_type.into(),
                data: data.into(),
            },
            detail: None,
        }
    }
}

/// A tool call the model made. `arguments` is the raw JSON text the model produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolCall {
    /// The provider's id for the call, echoed in the tool result.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// JSON arguments as text.
    pub arguments: String,
    /// An opaque provider signature of the reasoning that led to this call (Gemini's
    /// `thoughtSignature` on a `functionCall` part), sent back unchanged with the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl ToolCall {
    /// A tool call.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
            signature: None,
        }
    }
    /// Sets the provider signature sent back with the call.
    pub fn with_signature(mut self, signature: impl Into<String>) -> Self {
        self.signature = Some(signature.into());
        self
    }
    /// The arguments parsed as JSON (`Value::Null` for empty arguments).
    pub fn parsed_arguments(&self) -> Result<Value, serde_json::Error> {
        if self.arguments.trim().is_empty() {
            return Ok(Value::Object(Map::new()));
        }
        serde_json::from_str(&self.arguments)
    }

    /// The arguments as the JSON object a provider that takes one (Anthropic's `input`,
    /// Gemini's `args`) is sent: parsed, a string holding an object (arguments encoded twice,
    /// as some servers answer) read once more; anything else — not JSON, or JSON of another
    /// type — `{}` (sent as it is, it made the whole request a 400).
    ///
    /// ```
    /// use infermux_core::ToolCall;
    /// use serde_json::json;
    /// let twice = ToolCall::new("c", "f", r#""{\"city\":\"Paris\"}""#);
    /// assert_eq!(twice.arguments_object(), json!({"city": "Paris"}));
    /// assert_eq!(ToolCall::new("c", "f", "[1, 2]").arguments_object(), json!({}));
    /// assert_eq!(ToolCall::new("c", "f", "{").arguments_object(), json!({}));
    /// ```
    pub fn arguments_object(&self) -> Value {
        match self.parsed_arguments() {
            Ok(v @ Value::Object(_)) => v,
            Ok(Value::String(s)) => match serde_json::from_str(&s) {
                Ok(v @ Value::Object(_)) => v,
                _ => Value::Object(Map::new()),
            },
            _ => Value::Object(Map::new()),
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its content parts.
    #[serde(default)]
    pub content: Vec<ContentPart>,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls (assistant messages).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call this message answers (tool messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Whose signed or opaque data this assistant message carries, when a provider's answer
    /// told (Anthropic's and Gemini's do; `None`: not known — each provider then keeps only
    /// the raw blocks shaped like its own, and sends signatures as they are). Another provider leaves that data out when the
    /// conversation goes to it (a fallback): Anthropic refuses Gemini's signatures, and a model's
    /// private reasoning is not part of the conversation for another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<Signer>,
}

impl Message {
    /// A message with one text part.
    pub fn new(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            content: vec![ContentPart::text(text)],
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
            signer: None,
        }
    }
    /// A system message.
    pub fn system(text: impl Into<String>) -> Self {
        Self::new(Role::System, text)
    }
    /// A user message.
    pub fn user(text: impl Into<String>) -> Self {
        Self::new(Role::User, text)
    }
    /// An assistant message.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self::new(Role::Assistant, text)
    }
    /// A user message with several parts (text and images).
    pub fn user_parts(parts: Vec<ContentPart>) -> Self {
        Message {
            content: parts,
            ..Self::new(Role::User, "")
        }
    }
    /// An assistant message that called tools.
    pub fn assistant_tool_calls(calls: Vec<ToolCall>) -> Self {
        Message {
            role: Role::Assistant,
            content: Vec::new(),
            name: None,
            tool_calls: calls,
            tool_call_id: None,
            signer: None,
        }
    }
    /// Marks the message as carrying `signer`'s signed or opaque data ([`Message::signer`]).
    pub fn signed_by(mut self, signer: Signer) -> Self {
        self.signer = Some(signer);
        self
    }
    /// Whether the message carries signed or opaque provider data: a signed reasoning part,
    /// redacted reasoning, a server tool's call or result, a block kept raw, or a signed tool
    /// call (what [`Message::signer`] names the owner of).
    pub fn carries_provider_data(&self) -> bool {
        self.content.iter().any(ContentPart::is_provider_data)
            || self.tool_calls.iter().any(|c| c.signature.is_some())
    }
    /// Whether the message's signed or opaque data is known to be another provider's than
    /// `me`'s (and so is left out of a request to `me`).
    ///
    /// ```
    /// use infermux_core::{Message, Signer};
    /// let m = Message::assistant("hi").signed_by(Signer::Gemini);
    /// assert!(m.signed_by_other_than(&Signer::Anthropic));
    /// assert!(!m.signed_by_other_than(&Signer::Gemini));
    /// assert!(!Message::assistant("hi").signed_by_other_than(&Signer::Anthropic), "not known");
    /// ```
    pub fn signed_by_other_than(&self, me: &Signer) -> bool {
        self.signer.as_ref().is_some_and(|s| s != me)
    }
    /// A tool result answering `call_id`.
    pub fn tool_result(call_id: impl Into<String>, text: impl Into<String>) -> Self {
        Message {
            tool_call_id: Some(call_id.into()),
            ..Self::new(Role::Tool, text)
        }
    }
    /// The concatenated text parts.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// A tool the model may call: a name, a description and a JSON schema of its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Tool {
    /// The name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of the arguments.
    pub parameters: Value,
    /// Ask for strict schema adherence (OpenAI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

impl Tool {
    /// A tool.
    pub fn new(name: impl Into<String>, description: impl Into<String>, parameters: Value) -> Self {
        Tool {
            name: name.into(),
            description: Some(description.into()),
            parameters,
            strict: None,
        }
    }
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool.
    None,
    /// Some tool.
    Required,
    /// This tool.
    Tool(String),
}

/// The shape of the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// Schema name.
        name: String,
        /// The schema.
        schema: Value,
        /// Strict adherence.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
}

/// A chat request.
///
/// ```
/// use infermux_core::{ChatRequest, Message, Tool};
/// let req = ChatRequest::new("gpt-4o-mini", vec![Message::user("Weather in Paris?")])
///     .with_tools(vec![Tool::new(
///         "get_weather",
///         "Current weather",
///         serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
///     )])
///     .with_temperature(0.0);
/// assert_eq!(req.tools.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatRequest {
    /// Model name.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Output token limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    /// Tool choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether several tools may be called at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Answer format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// End-user id for abuse tracking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Provider-specific fields merged into the wire body as they are.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    /// A request for `model` with `messages`.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        ChatRequest {
            model: model.into(),
            messages,
            temperature: None,
            top_p: None,
            max_tokens: None,
            stop: Vec::new(),
            seed: None,
            tools: Vec::new(),
            tool_choice: None,
            parallel_tool_calls: None,
            response_format: None,
            user: None,
            extra: Map::new(),
        }
    }
    /// Sets the temperature.
    pub fn with_temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }
    /// Sets the output token limit.
    pub fn with_max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }
    /// Sets the tools.
    pub fn with_tools(mut self, tools: Vec<Tool>) -> Self {
        self.tools = tools;
        self
    }
    /// Sets the tool choice.
    pub fn with_tool_choice(mut self, choice: ToolChoice) -> Self {
        self.tool_choice = Some(choice);
        self
    }
    /// Sets the stop sequences.
    pub fn with_stop(mut self, stop: Vec<String>) -> Self {
        self.stop = stop;
        self
    }
    /// Sets the seed.
    pub fn with_seed(mut self, seed: i64) -> Self {
        self.seed = Some(seed);
        self
    }
    /// Sets the response format.
    pub fn with_response_format(mut self, f: ResponseFormat) -> Self {
        self.response_format = Some(f);
        self
    }
    /// Adds a provider-specific field.
    pub fn with_extra(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }
}

/// A chat answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatResponse {
    /// The provider's id for the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The model that answered.
    pub model: String,
    /// The assistant message (text, reasoning, refusal parts and tool calls).
    pub message: Message,
    /// Why generation stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    /// Tokens used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Who answered: set by the facade's client (routing, key, attempts, fallback); `None`
    /// from a provider called directly. Boxed, as `cache`: most answers have neither, and an
    /// answer is moved through every layer of a call (in place they made it 136 bytes larger).
    #[serde(skip)]
    pub served: Option<Box<crate::route::Served>>,
    /// Set when the answer came from the cache (which tier, similarity, verifier score, age);
    /// `None` when a provider answered.
    #[serde(skip)]
    pub cache: Option<Box<crate::route::CacheHit>>,
}

impl ChatResponse {
    /// An answer.
    pub fn new(model: impl Into<String>, message: Message) -> Self {
        ChatResponse {
            id: None,
            model: model.into(),
            message,
            finish_reason: None,
            usage: None,
            served: None,
            cache: None,
        }
    }
    /// The answer's text.
    pub fn text(&self) -> String {
        self.message.text()
    }
    /// The tool calls.
    pub fn tool_calls(&self) -> &[ToolCall] {
        &self.message.tool_calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_enum_values_are_kept() {
        let r: FinishReason = serde_json::from_str("\"eos_token\"").unwrap();
        assert_eq!(r, FinishReason::Other("eos_token".into()));
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"eos_token\"");
        let r: Role = serde_json::from_str("\"assistant\"").unwrap();
        assert_eq!(r, Role::Assistant);
    }

    #[test]
    fn messages_round_trip() {
        let m = Message::user_parts(vec![
            ContentPart::text("what is this?"),
            ContentPart::image_base64("image/png", "iVBORw0KGgo="),
        ]);
        let json = serde_json::to_string(&m).unwrap();
        let back: Message = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }
}

/// The system and developer messages' texts, joined by a blank line: the one `system` text of
/// the protocols that take it apart from the conversation (Anthropic, Gemini). It displays and
/// serialises (as a JSON string) without building a `String`.
///
/// ```
/// use infermux_core::{Message, SystemText};
///
/// let messages = [Message::system("Be brief."), Message::user("Hi"), Message::system("No emoji.")];
/// assert!(SystemText(&messages).is_some());
/// assert_eq!(SystemText(&messages).to_string(), "Be brief.\n\nNo emoji.");
/// assert!(!SystemText(&messages[1..2]).is_some());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SystemText<'a>(pub &'a [Message]);

impl SystemText<'_> {
    /// Whether any message is a system or developer message.
    pub fn is_some(&self) -> bool {
        self.0
            .iter()
            .any(|m| matches!(m.role, Role::System | Role::Developer))
    }
}

impl std::fmt::Display for SystemText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for m in self.0 {
            if !matches!(m.role, Role::System | Role::Developer) {
                continue;
            }
            if !first {
                f.write_str("\n\n")?;
            }
            first = false;
            for p in &m.content {
                if let ContentPart::Text { text } = p {
                    f.write_str(text)?;
                }
            }
        }
        Ok(())
    }
}

impl Serialize for SystemText<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
