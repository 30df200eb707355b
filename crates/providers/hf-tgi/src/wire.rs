//! TGI's own wire format: `/generate` and `/generate_stream` (and the Inference API's
//! `POST /models/{model}`, TGI's `/` route) bodies (serialised from the borrowed request, no
//! `serde_json::Value` tree) and answers (read into typed structs), `/info`, the prompt formats
//! used when a server has no messages API, and TGI's own error statuses.
//!
//! **Stability.** This module follows the provider's wire format, not this crate's version:
//! its items may change in any release as the format does. Applications call the provider
//! through [`Provider`](infermux_core::Provider) and the crate's client; the module is public
//! for the workspace's other crates, the conformance runner, and code that needs the raw
//! shapes.

use infermux_core::{
    ChatRequest, CompletionRequest, CompletionResponse, Error, ErrorKind, FinishReason, Result,
    Role, StreamEvent, Usage,
};
use infermux_http::HeaderMap;
use serde::de::IgnoredAny;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

fn decode_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Decode, format!("invalid TGI {what}: {e}"))
}

// ---- request bodies ----------------------------------------------------------------------
//
// Objects are written with their keys in ascending order, as the `Value` objects (`BTreeMap`s)
// these bodies used to be built as printed them: the bytes on the wire are the same.

/// Writes an object's fields, given in ascending key order, merged with `extra` (a request's
/// free-form fields): `extra` wins a key both have, and its fields are written where their keys
/// sort, so the object comes out as a `serde_json::Map` of both printed it.
struct Fields<'e, M> {
    map: M,
    extra: &'e Map<String, Value>,
    pending: std::iter::Peekable<serde_json::map::Iter<'e>>,
}

impl<'e, M: SerializeMap> Fields<'e, M> {
    fn new(map: M, extra: &'e Map<String, Value>) -> Self {
        Fields {
            map,
            extra,
            pending: extra.iter().peekable(),
        }
    }

    /// Writes `key: value`, unless `extra` has `key`.
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), M::Error> {
        while let Some((k, v)) = self.pending.next_if(|(k, _)| k.as_str() < key) {
            self.map.serialize_entry(k, v)?;
        }
        if self.extra.contains_key(key) {
            return Ok(());
        }
        self.map.serialize_entry(key, value)
    }

    /// Writes the rest of `extra` and closes the object.
    fn end(mut self) -> Result<M::Ok, M::Error> {
        for (k, v) in self.pending {
            self.map.serialize_entry(k, v)?;
        }
        self.map.end()
    }
}

/// The `parameters` object of a generate request, merged with the request's `extra` (which
/// wins a key both have).
struct Parameters<'a> {
    req: &'a CompletionRequest,
    inference_api: bool,
}

impl Serialize for Parameters<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let req = self.req;
        let mut o = Fields::new(s.serialize_map(None)?, &req.extra);
        o.field("details", &true)?;
        if let Some(t) = req.temperature {
            o.field("do_sample", &(t > 0.0))?;
        }
        if let Some(n) = req.max_tokens {
            o.field("max_new_tokens", &n)?;
        }
        if self.inference_api {
            o.field("return_full_text", &false)?;
        }
        // a u64: a negative seed is folded into range (the same seed, the same value)
        if let Some(seed) = req.seed {
            o.field("seed", &(seed as u64))?;
        }
        if !req.stop.is_empty() {
            o.field("stop", &req.stop)?;
        }
        // an `f32` goes out as the `f64` it widens to, as a `Value` number printed it
        if let Some(t) = req.temperature.filter(|t| *t > 0.0) {
            o.field("temperature", &f64::from(t))?;
        }
        o.end()
    }
}

/// The `parameters` object of a generate request.
pub fn parameters(req: &CompletionRequest, inference_api: bool) -> Map<String, Value> {
    match serde_json::to_value(Parameters { req, inference_api }) {
        Ok(Value::Object(p)) => p,
        _ => Map::new(),
    }
}

/// The `/generate` / `/generate_stream` body of a [`CompletionRequest`] (`{inputs,
/// parameters}`; with `stream` `Some(_)`, the Inference API's `{inputs, parameters, stream}`),
/// serialised straight from the request (what [`generate_body`] returns as a `Value`). `extra`
/// goes into `parameters`, winning over a parameter of the same name.
///
/// ```
/// use infermux_core::CompletionRequest;
/// use infermux_hf_tgi::wire::GenerateBody;
///
/// let req = CompletionRequest::new("tgi", "Hi").with_max_tokens(8);
/// let bytes = serde_json::to_vec(&GenerateBody::new(&req, None)).unwrap();
/// assert_eq!(
///     String::from_utf8(bytes).unwrap(),
///     r#"{"inputs":"Hi","parameters":{"details":true,"max_new_tokens":8}}"#
/// );
/// ```
#[derive(Debug, Clone, Copy)]
pub struct GenerateBody<'a> {
    req: &'a CompletionRequest,
    stream: Option<bool>,
}

impl<'a> GenerateBody<'a> {
    /// The body of `req`; `stream` `Some(_)` for the Inference API.
    pub fn new(req: &'a CompletionRequest, stream: Option<bool>) -> Self {
        GenerateBody { req, stream }
    }
}

impl Serialize for GenerateBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("inputs", &self.req.prompt)?;
        m.serialize_entry(
            "parameters",
            &Parameters {
                req: self.req,
                inference_api: self.stream.is_some(),
            },
        )?;
        if let Some(stream) = self.stream {
            m.serialize_entry("stream", &stream)?;
        }
        m.end()
    }
}

/// The `/generate` / `/generate_stream` body as a `Value` ([`GenerateBody`] is what is sent).
pub fn generate_body(req: &CompletionRequest, stream: Option<bool>) -> Value {
    serde_json::to_value(GenerateBody::new(req, stream)).unwrap_or(Value::Null)
}

/// One generated token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Token {
    /// Token id.
    pub id: u32,
    /// Its text.
    pub text: String,
    /// Log probability (absent for the first prefill token).
    #[serde(default)]
    pub logprob: Option<f32>,
    /// Whether it is a special token (not part of the text).
    #[serde(default)]
    pub special: bool,
}

/// `details` of a generation (`details: true`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Details {
    /// `length`, `eos_token` or `stop_sequence`.
    pub finish_reason: String,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Seed used when sampling.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Prompt tokens (with `decoder_input_details`).
    #[serde(default)]
    pub prefill: Vec<Token>,
    /// Generated tokens.
    #[serde(default)]
    pub tokens: Vec<Token>,
    /// Prompt length in tokens (stream details; on `/generate`, [`HfTgi::generate`] fills
    /// it from the `x-prompt-tokens` header).
    ///
    /// [`HfTgi::generate`]: crate::HfTgi::generate
    #[serde(default)]
    pub input_length: Option<u64>,
}

/// The answer of `/generate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Generation {
    /// The generated text.
    pub generated_text: String,
    /// Details, when asked for.
    #[serde(default)]
    pub details: Option<Details>,
}

/// One event of `/generate_stream`: a token, and on the last one the whole text and details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StreamToken {
    /// The token.
    pub token: Token,
    /// The whole text (last event only).
    #[serde(default)]
    pub generated_text: Option<String>,
    /// Details (last event only, with `details: true`).
    #[serde(default)]
    pub details: Option<Details>,
}

/// The core finish reason of TGI's (`eos_token` and `stop_sequence` are `Stop`).
pub fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "eos_token" | "stop_sequence" | "stop" => FinishReason::Stop,
        other => FinishReason::from(other),
    }
}

/// Usage, when the prompt length is known (`input_length` of stream details, or the prefill
/// tokens with `decoder_input_details`).
fn usage(d: &Details) -> Option<Usage> {
    let input = d
        .input_length
        .or_else(|| (!d.prefill.is_empty()).then_some(d.prefill.len() as u64))?;
    Some(Usage::new(input, d.generated_tokens))
}

/// Whether a TGI validation message says the prompt is too long for the model: "`inputs`
/// tokens + `max_new_tokens` must be <= 4096. Given: …" or "`inputs` must have less than 1024
/// tokens. Given: …" (its router's `MaxTotalTokens` and `InputLength` errors).
fn says_too_long(message: &str) -> bool {
    message.contains("`inputs` tokens + `max_new_tokens` must be <=")
        || message.contains("`inputs` must have less than")
}

/// An in-band error of a Messages API stream, as the OpenAI-compatible reader made it (TGI's
/// `error_type` its provider code): TGI's validation errors are the request's —
/// `ContextLength` when they say the prompt is too long — and `overloaded` is `Overloaded`,
/// as the same errors are over HTTP (a 422) and on `/generate_stream`; not a server error to
/// retry.
pub fn messages_stream_error(e: Error) -> Error {
    if e.kind() != ErrorKind::Server {
        return e;
    }
    let kind = match e.provider_code() {
        Some("validation") if says_too_long(e.message()) => ErrorKind::ContextLength,
        Some("validation") => ErrorKind::InvalidRequest,
        Some("overloaded") => ErrorKind::Overloaded,
        _ => return e,
    };
    e.with_kind(kind)
}

fn embedded_error(v: &Value) -> Option<Error> {
    let msg = v.get("error")?;
    let msg = msg.as_str().map_or_else(|| msg.to_string(), str::to_owned);
    let kind = match v.get("error_type").and_then(Value::as_str) {
        Some("validation") if says_too_long(&msg) => ErrorKind::ContextLength,
        Some("validation") => ErrorKind::InvalidRequest,
        Some("overloaded") => ErrorKind::Overloaded,
        _ => ErrorKind::Server,
    };
    Some(Error::new(kind, msg))
}

/// Whether a field is there at all, `null` included (`Value::get(..).is_some()`).
fn present<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

/// A `/generate` answer as read on the fast path: a [`Generation`] and whether the object has
/// an `error` field (then it is read as before, through a `Value`).
#[derive(Deserialize)]
struct WireGeneration {
    generated_text: String,
    #[serde(default)]
    details: Option<Details>,
    #[serde(default, deserialize_with = "present")]
    error: bool,
}

/// Parses a `/generate` answer: an object, or (Inference API) a one-element array.
///
/// A well-formed answer is read straight into a [`Generation`]; anything else (an error
/// object, an array of another length, a field of the wrong type, an object repeating a key)
/// is read through a `Value` as it always was, with the same errors.
pub fn parse_generation(body: &[u8]) -> Result<Generation> {
    let array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let fast = if array {
        infermux_http::json::from_body::<Vec<WireGeneration>>(body)
            .ok()
            .filter(|a| a.len() == 1)
            .and_then(|mut a| a.pop())
    } else {
        infermux_http::json::from_body::<WireGeneration>(body).ok()
    };
    match fast {
        Some(g) if !g.error => Ok(Generation {
            generated_text: g.generated_text,
            details: g.details,
        }),
        _ => parse_generation_value(body),
    }
}

/// [`parse_generation`] through a `Value`.
fn parse_generation_value(body: &[u8]) -> Result<Generation> {
    let v: Value = infermux_http::json::from_body(body).map_err(|e| decode_err("generation", e))?;
    let one = match v {
        Value::Array(mut a) if a.len() == 1 => a.remove(0),
        Value::Array(a) => {
            return Err(Error::new(
                ErrorKind::Decode,
                format!("TGI returned {} generations for one input", a.len()),
            ));
        }
        other => other,
    };
    if let Some(e) = embedded_error(&one) {
        return Err(e);
    }
    serde_json::from_value(one).map_err(|e| decode_err("generation", e))
}

/// A [`Generation`] as a core completion.
pub fn to_completion(model: &str, g: Generation) -> CompletionResponse {
    to_completion_stopped_by(model, g, &[])
}

/// A [`Generation`] of a request with stop sequences `stop` as a core completion, without the
/// stop sequence that ended it.
///
/// TGI ends `generated_text` with the stop sequence that stopped it; OpenAI-style APIs and the
/// other providers leave it out, and so does this.
///
/// ```
/// use infermux_hf_tgi::wire::{parse_generation, to_completion_stopped_by};
///
/// let g = parse_generation(
///     br#"{"generated_text":"Paris.\nUser:","details":{"finish_reason":"stop_sequence","generated_tokens":4}}"#,
/// )
/// .unwrap();
/// let c = to_completion_stopped_by("tgi", g, &["\nUser:".to_owned()]);
/// assert_eq!(c.text, "Paris.");
/// ```
pub fn to_completion_stopped_by(model: &str, g: Generation, stop: &[String]) -> CompletionResponse {
    let mut text = g.generated_text;
    if g.details
        .as_ref()
        .is_some_and(|d| d.finish_reason == "stop_sequence")
    {
        trim_stop_sequence(&mut text, stop);
    }
    let mut resp = CompletionResponse::new(model, text);
    if let Some(d) = &g.details {
        resp.finish_reason = Some(finish_reason(&d.finish_reason));
        resp.usage = usage(d);
    }
    resp
}

/// Removes from the end of `text` the longest of `stop` it ends with; whether one was removed.
pub fn trim_stop_sequence(text: &mut String, stop: &[String]) -> bool {
    let longest = stop
        .iter()
        .filter(|s| !s.is_empty() && text.ends_with(s.as_str()))
        .map(String::len)
        .max();
    match longest {
        Some(n) => {
            text.truncate(text.len() - n);
            true
        }
        None => false,
    }
}

/// The length of the longest end of `text` that is the start of one of `stop` (or all of it):
/// text that may yet turn out to be a stop sequence.
fn stop_prefix_len(text: &str, stop: &[String]) -> usize {
    let mut best = 0;
    for s in stop {
        let most = s.len().min(text.len());
        // the longest first, on `s`'s char boundaries (so `text`'s too, since it ends with it)
        if let Some(k) = (best + 1..=most)
            .rev()
            .find(|&k| s.is_char_boundary(k) && text.ends_with(&s[..k]))
        {
            best = k;
        }
    }
    best
}

/// Folds `/generate_stream` events into stream events.
#[derive(Debug, Default)]
pub struct GenerateStreamState {
    started: bool,
    done: bool,
    /// The text sent on as deltas.
    text: String,
    /// The request's stop sequences, whose text TGI streams and the deltas leave out.
    stop: Vec<String>,
    /// Text held back because it may be the start of a stop sequence.
    held: String,
}

impl GenerateStreamState {
    /// A fresh state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the last event (with `generated_text`) arrived.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// A fresh state for a request with stop sequences `stop`: the text of the stop sequence
    /// that ends the generation is not sent on (TGI streams it; OpenAI-style APIs do not). Text
    /// that may be the start of a stop sequence is held back until it is known not to be.
    pub fn stopped_by(stop: &[String]) -> Self {
        GenerateStreamState {
            stop: stop.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..Self::default()
        }
    }

    /// The text sent on so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Events of one SSE `data`.
    ///
    /// A well-formed event is read straight into a [`StreamToken`]; anything else (an error
    /// object, a field of the wrong type, an object repeating a key) is read through a `Value`
    /// as it always was, with the same errors.
    pub fn on_data(&mut self, data: &str) -> Result<Vec<StreamEvent>> {
        #[derive(Deserialize)]
        struct Wire {
            token: Token,
            #[serde(default)]
            generated_text: Option<String>,
            #[serde(default)]
            details: Option<Details>,
            #[serde(default, deserialize_with = "present")]
            error: bool,
        }
        let ev = match serde_json::from_str::<Wire>(data) {
            Ok(w) if !w.error => StreamToken {
                token: w.token,
                generated_text: w.generated_text,
                details: w.details,
            },
            _ => {
                let v: Value =
                    serde_json::from_str(data).map_err(|e| decode_err("stream event", e))?;
                if let Some(e) = embedded_error(&v) {
                    return Err(e);
                }
                serde_json::from_value(v).map_err(|e| decode_err("stream event", e))?
            }
        };
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: None,
                model: None,
            });
        }
        if !ev.token.special && !ev.token.text.is_empty() {
            if self.stop.is_empty() {
                self.text.push_str(&ev.token.text);
                out.push(StreamEvent::TextDelta {
                    text: ev.token.text,
                });
            } else {
                self.held.push_str(&ev.token.text);
                let keep = stop_prefix_len(&self.held, &self.stop);
                let rest = self.held.split_off(self.held.len() - keep);
                let ready = std::mem::replace(&mut self.held, rest);
                self.send(ready, &mut out);
            }
        }
        if ev.generated_text.is_some() {
            self.done = true;
            let mut held = std::mem::take(&mut self.held);
            if ev.details.as_ref().map(|d| d.finish_reason.as_str()) == Some("stop_sequence") {
                trim_stop_sequence(&mut held, &self.stop);
            }
            self.send(held, &mut out);
            if let Some(u) = ev.details.as_ref().and_then(usage) {
                out.push(StreamEvent::Usage(u));
            }
            out.push(StreamEvent::Done {
                finish_reason: ev.details.as_ref().map(|d| finish_reason(&d.finish_reason)),
            });
        }
        Ok(out)
    }

    fn send(&mut self, text: String, out: &mut Vec<StreamEvent>) {
        if !text.is_empty() {
            self.text.push_str(&text);
            out.push(StreamEvent::TextDelta { text });
        }
    }

    /// The end of the body: an error with the partial text (what was sent on, as
    /// [`GenerateStreamState::text`] and a transport error report it) unless the last event
    /// arrived.
    pub fn on_end(&self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        let mut e = Error::new(
            ErrorKind::Decode,
            "TGI stream ended before the event carrying generated_text",
        );
        if !self.text.is_empty() {
            e = e.with_partial_text(self.text.clone());
        }
        Err(e)
    }
}

/// What `/info` says about the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TgiInfo {
    /// The model served.
    pub model_id: String,
    /// Its revision.
    #[serde(default)]
    pub model_sha: Option<String>,
    /// Longest prompt in tokens (`max_input_length` before TGI 2).
    #[serde(default, alias = "max_input_length")]
    pub max_input_tokens: Option<u64>,
    /// Longest prompt plus answer in tokens.
    #[serde(default)]
    pub max_total_tokens: Option<u64>,
    /// Concurrent requests accepted.
    #[serde(default)]
    pub max_concurrent_requests: Option<u64>,
    /// Stop sequences accepted in one request.
    #[serde(default)]
    pub max_stop_sequences: Option<u64>,
    /// Inputs a client may send in one request.
    #[serde(default)]
    pub max_client_batch_size: Option<u64>,
    /// Server version.
    #[serde(default)]
    pub version: Option<String>,
}

/// Parses `/info`.
pub fn parse_info(body: &[u8]) -> Result<TgiInfo> {
    infermux_http::json::from_body(body).map_err(|e| decode_err("info", e))
}

/// How chat messages become one prompt when the server has no messages API
/// (`/v1/chat/completions`, TGI ≥ 1.4.3). With a messages API the server applies the model's
/// own chat template, which is always better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PromptFormat {
    /// ChatML: `<|im_start|>{role}\n{text}<|im_end|>\n` per message, then
    /// `<|im_start|>assistant\n`; generation stops at `<|im_end|>`.
    ChatMl,
    /// Plain text: `System: …`, `User: …`, `Assistant: …` lines, then `Assistant:`;
    /// generation stops at `\nUser:`.
    Plain,
}

impl PromptFormat {
    /// The prompt for `req`'s messages and the stop sequence to add.
    pub fn render(self, req: &ChatRequest) -> (String, &'static str) {
        let mut out = String::new();
        for m in &req.messages {
            let role = match m.role {
                Role::Developer => "system",
                ref r => r.as_str(),
            };
            match self {
                PromptFormat::ChatMl => {
                    out.push_str(&format!("<|im_start|>{role}\n{}<|im_end|>\n", m.text()));
                }
                PromptFormat::Plain => {
                    let mut label = role.to_owned();
                    if let Some(first) = label.get_mut(..1) {
                        first.make_ascii_uppercase();
                    }
                    out.push_str(&format!("{label}: {}\n", m.text()));
                }
            }
        }
        match self {
            PromptFormat::ChatMl => {
                out.push_str("<|im_start|>assistant\n");
                (out, "<|im_end|>")
            }
            PromptFormat::Plain => {
                out.push_str("Assistant:");
                (out, "\nUser:")
            }
        }
    }
}

/// The error of a non-2xx answer: [`infermux_http::error_from_response`] (which also maps the
/// HF Inference API's 503 "model is loading" to `Overloaded` with `estimated_time` as the
/// retry-after; see `with_wait_for_model`), except that TGI's 422 validation errors, JSON or
/// text/plain, are `InvalidRequest` — `ContextLength` when they say the prompt is too long
/// for the model — and its 424 generation errors `Server`.
pub fn error_from_response(status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
    let base = infermux_http::error_from_response(status, headers, body);
    if status == 422 && base.kind() != ErrorKind::ContextLength && says_too_long(base.message()) {
        let message = base.message().to_owned();
        return Error::new(ErrorKind::ContextLength, message)
            .with_status(status)
            .with_reached_server(true);
    }
    if status == 422 && base.kind() != ErrorKind::ContextLength {
        let message = base.message().to_owned();
        return Error::new(ErrorKind::InvalidRequest, message)
            .with_status(status)
            .with_reached_server(true);
    }
    if status == 424 {
        // TGI answers 424 when generation itself failed (a server-side problem)
        let message = base.message().to_owned();
        return Error::new(ErrorKind::Server, message)
            .with_status(status)
            .with_reached_server(true);
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_held_back_end_is_the_longest_start_of_a_stop_sequence() {
        let stop = stops(&["\nUser:", "<|im_end|>", "é!"]);
        assert_eq!(stop_prefix_len("Paris.", &stop), 0);
        assert_eq!(stop_prefix_len("Paris.\n", &stop), 1);
        assert_eq!(stop_prefix_len("Paris.\nUs", &stop), 3);
        assert_eq!(stop_prefix_len("Paris.\nUser:", &stop), 6);
        assert_eq!(stop_prefix_len("Paris.<|im", &stop), 4);
        // a multi-byte start is held whole, never split inside a char
        assert_eq!(stop_prefix_len("café", &stop), "é".len());
        assert_eq!(stop_prefix_len("", &stop), 0);
        assert_eq!(stop_prefix_len("\nUsual", &stop), 0);
    }

    #[test]
    fn only_a_stop_sequence_at_the_very_end_is_trimmed() {
        let stop = stops(&["\nUser:", "User:"]);
        let mut t = "Paris.\nUser:".to_owned();
        assert!(trim_stop_sequence(&mut t, &stop));
        assert_eq!(t, "Paris.");
        let mut t = "User: hi".to_owned();
        assert!(!trim_stop_sequence(&mut t, &stop));
        assert_eq!(t, "User: hi");
        let mut t = "x".to_owned();
        assert!(!trim_stop_sequence(&mut t, &stops(&[""])));
    }
}
