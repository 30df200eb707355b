//! One oracle per wire format: an independent reading of a recorded response body (plain,
//! streamed, or an error) into a provider-neutral [`Expected`], and one comparison of an
//! [`Expected`] with what a provider decoded that names the first difference.
//!
//! The oracles read bodies with `serde_json::Value` only, never with a provider's parser, so a
//! provider test or the conformance runner that checks a decoded answer against an oracle
//! checks it against the recording, not against the code under test. Each format module takes
//! the recorded status and the body as the client saw it (see [`plain_body`] for gzip) and
//! returns either the answer's expectation or the error kind the recording means:
//!
//! - [`openai`]: chat and completions (plain and SSE), embeddings, model lists, the Responses
//!   API, moderation, images, speech, transcription and files.
//! - [`anthropic`]: Messages (plain and SSE), model lists, token counting.
//! - [`gemini`]: `generateContent` (plain, JSON-array stream, SSE), embeddings, model lists,
//!   token counting.
//! - [`ollama`]: `/api/chat`, `/api/generate` (plain and NDJSON), `/api/embed`,
//!   `/api/embeddings`, `/api/tags`.
//! - [`tgi`]: `/generate`, `/generate_stream`, `/info`, `/health`.
//! - [`tei`]: `/embed`, `/embed_sparse`, `/rerank`, feature extraction, `/info`, `/health`.
//!
//! TGI's and TEI's own test suites keep what their servers answered as snapshots rather than
//! HTTP recordings; [`tgi::snapshot`] and [`tei::snapshot`] read one into the body the server
//! sent (a [`Snapshot`]) and its expectation, so a test can serve the body and check the answer.
//!
//! ```
//! use infermux_core::{ChatResponse, Message, Response};
//! use infermux_testkit::oracle::{self, Expected};
//!
//! let body = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},
//!                 "finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
//! let want = oracle::openai::chat(200, body).unwrap();
//! let mut answer = ChatResponse::new("m", Message::assistant("Hi"));
//! answer.finish_reason = Some(infermux_core::FinishReason::Stop);
//! answer.usage = Some(infermux_core::Usage::new(3, 1));
//! assert!(want.check_response(&Ok(Response::Chat(answer.clone()))).is_ok());
//! answer.message = Message::assistant("Hello");
//! let why = want.check_response(&Ok(Response::Chat(answer))).unwrap_err();
//! assert!(why.contains("text"), "{why}");
//! # let _ = Expected::default();
//! ```

pub mod anthropic;
pub mod gemini;
pub mod ollama;
pub mod openai;
pub mod tei;
pub mod tgi;

use infermux_core::{ChatResponse, ContentPart, Error, ErrorKind, Response};
use serde_json::Value;

use crate::RecordedResponse;

/// What a recorded response says, read independently of any provider. `None` fields are not
/// said by the recording and are not compared; an expectation with nothing set is refused by
/// [`Expected::check`] (no default pass).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Expected {
    /// The answer's text (all text parts, in order; no reasoning, no refusal).
    pub text: Option<String>,
    /// The model's visible reasoning (thinking) text.
    pub reasoning: Option<String>,
    /// Tool calls in order: the tool's name and its arguments as JSON (a string value when
    /// the recorded arguments are not JSON).
    pub tool_calls: Option<Vec<(String, Value)>>,
    /// Input (prompt) tokens, cached tokens included.
    pub input_tokens: Option<u64>,
    /// Input tokens read from the provider's prompt cache, where the recording says so (the
    /// OpenAI format's `prompt_tokens_details.cached_tokens`).
    pub cached_input_tokens: Option<u64>,
    /// Output tokens, reasoning tokens included.
    pub output_tokens: Option<u64>,
    /// The finish reason under its core name (`stop`, `length`, `tool_calls`,
    /// `content_filter`).
    pub finish_reason: Option<String>,
    /// Ids in order: the models of a model listing, the files of a file listing, the id of an
    /// uploaded file, the `model_id` of a server's `/info`.
    pub ids: Option<Vec<String>>,
    /// Embeddings: the number of vectors and the dimension of the first (for sparse vectors,
    /// the number of entries of the first).
    pub vectors: Option<(usize, usize)>,
    /// Embeddings: every vector, every component, as an `f32` decoder reads the recorded
    /// numbers (or base64 bytes); for token vectors, their mean.
    pub embeddings: Option<Vec<Vec<f32>>>,
    /// How far a decoded embedding component may be from [`Expected::embeddings`], relative to
    /// the larger of the recorded value's magnitude and 1. `None`: exactly equal. Set only where
    /// the oracle computed the components (a mean of token vectors), since the order of
    /// floating-point additions is the decoder's.
    pub embedding_tolerance: Option<f32>,
    /// The owners of a model listing's models, in order (the OpenAI format's `owned_by`; an
    /// absent owner is empty).
    pub owners: Option<Vec<String>>,
    /// The generated tokens' texts, in order (TGI's `details.tokens`, special tokens
    /// included).
    pub tokens: Option<Vec<String>>,
    /// Rerank results in the recorded order: document index and score.
    pub rerank: Option<Vec<(usize, f32)>>,
    /// Sparse embeddings: every vector's entries in the recorded order, vocabulary index and
    /// weight (as an `f32` decoder reads them).
    pub sparse: Option<Vec<Vec<(u32, f32)>>>,
    /// Binary media (speech): byte length and FNV-1a hash of the bytes.
    pub media: Option<(usize, u64)>,
    /// Generated images: how many.
    pub images: Option<usize>,
    /// Moderation: the flagged categories of every input, sorted, joined.
    pub flagged: Option<Vec<String>>,
    /// A token count (count-tokens endpoints).
    pub token_count: Option<u64>,
    /// A health check answered 2xx.
    pub healthy: Option<bool>,
    /// The recording is an error (an HTTP error status, an error object in a 200 body, an
    /// error inside a stream, a blocked answer): the kind it means.
    pub error: Option<ErrorKind>,
}

impl Expected {
    /// An expectation that the call fails with `kind`.
    pub fn error(kind: ErrorKind) -> Self {
        Expected {
            error: Some(kind),
            ..Expected::default()
        }
    }

    /// Whether nothing at all is expected (such an expectation never passes).
    pub fn is_empty(&self) -> bool {
        *self == Expected::default()
    }

    /// The observation of a decoded core response, in the same shape (every field the
    /// response carries is set).
    pub fn of_response(resp: &Response) -> Self {
        match resp {
            Response::Chat(c) => Expected::of_chat(c),
            Response::Completion(c) => Expected {
                text: Some(c.text.clone()),
                input_tokens: c.usage.map(|u| u.input_tokens),
                cached_input_tokens: c.usage.and_then(|u| u.cached_input_tokens),
                output_tokens: c.usage.map(|u| u.output_tokens),
                finish_reason: c.finish_reason.as_ref().map(|f| f.as_str().to_owned()),
                ..Expected::default()
            },
            Response::Embeddings(e) => Expected {
                vectors: Some((e.embeddings.len(), e.dimension())),
                embeddings: Some(e.embeddings.clone()),
                input_tokens: e.usage.map(|u| u.input_tokens),
                ..Expected::default()
            },
            Response::Rerank(r) => Expected {
                rerank: Some(r.results.iter().map(|r| (r.index, r.score)).collect()),
                ..Expected::default()
            },
            Response::Models(m) => Expected {
                ids: Some(m.models.iter().map(|m| m.id.clone()).collect()),
                owners: Some(
                    m.models
                        .iter()
                        .map(|m| m.owned_by.clone().unwrap_or_default())
                        .collect(),
                ),
                ..Expected::default()
            },
            _ => Expected::default(),
        }
    }

    /// The observation of a decoded chat answer.
    pub fn of_chat(c: &ChatResponse) -> Self {
        let reasoning: String = c
            .message
            .content
            .iter()
            .filter_map(|p| match p {
                ContentPart::Thinking { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        Expected {
            text: Some(c.text()),
            reasoning: Some(reasoning),
            tool_calls: Some(
                c.tool_calls()
                    .iter()
                    .map(|t| (t.name.clone(), arguments(&t.arguments)))
                    .collect(),
            ),
            input_tokens: c.usage.map(|u| u.input_tokens),
            cached_input_tokens: c.usage.and_then(|u| u.cached_input_tokens),
            output_tokens: c.usage.map(|u| u.output_tokens),
            finish_reason: c.finish_reason.as_ref().map(|f| f.as_str().to_owned()),
            ..Expected::default()
        }
    }

    /// Compares this expectation with an observation; the first difference, named, or
    /// `Ok`. Only what the recording says is compared; an empty expectation is an error.
    pub fn check(&self, got: &Expected) -> Result<(), String> {
        if self.is_empty() {
            return Err("the oracle found nothing to check in the recorded body".to_owned());
        }
        if let Some(kind) = self.error {
            return Err(format!(
                "an error ({kind}) was recorded but infermux returned an answer"
            ));
        }
        fn field<T: PartialEq + std::fmt::Debug>(
            name: &str,
            want: &Option<T>,
            got: &Option<T>,
        ) -> Result<(), String> {
            match (want, got) {
                (None, _) => Ok(()),
                (Some(w), Some(g)) if w == g => Ok(()),
                (Some(w), Some(g)) => Err(format!("{name}: decoded {g:?}, recorded {w:?}")),
                (Some(w), None) => Err(format!("{name}: not decoded, recorded {w:?}")),
            }
        }
        if let (Some(w), Some(g)) = (&self.text, &got.text)
            && w != g
        {
            return Err(format!(
                "text: decoded {} chars, recorded {} ({})",
                g.chars().count(),
                w.chars().count(),
                first_difference(w, g)
            ));
        }
        // an answer without reasoning or tool calls has empty ones
        let or_empty = |want: &Option<String>, got: &Option<String>| {
            want.as_ref().map(|_| got.clone().unwrap_or_default())
        };
        field("text", &self.text, &or_empty(&self.text, &got.text))?;
        field(
            "reasoning",
            &self.reasoning,
            &or_empty(&self.reasoning, &got.reasoning),
        )?;
        let calls = self
            .tool_calls
            .as_ref()
            .map(|_| got.tool_calls.clone().unwrap_or_default());
        field("tool calls", &self.tool_calls, &calls)?;
        field("input tokens", &self.input_tokens, &got.input_tokens)?;
        field(
            "cached input tokens",
            &self.cached_input_tokens,
            &got.cached_input_tokens,
        )?;
        field("output tokens", &self.output_tokens, &got.output_tokens)?;
        field("finish reason", &self.finish_reason, &got.finish_reason)?;
        field("ids", &self.ids, &got.ids)?;
        field("owners", &self.owners, &got.owners)?;
        field("vectors (count, dimension)", &self.vectors, &got.vectors)?;
        if let Some(want) = &self.embeddings {
            let got = got.embeddings.as_ref().ok_or("embeddings: not decoded")?;
            compare_embeddings(want, got, self.embedding_tolerance)?;
        }
        if let Some(want) = &self.tokens {
            let got = got.tokens.as_ref().ok_or("tokens: not decoded")?;
            if let Some(i) = (0..want.len().max(got.len())).find(|&i| want.get(i) != got.get(i)) {
                return Err(format!(
                    "tokens: token {i} decoded {:?}, recorded {:?} ({} decoded, {} recorded)",
                    got.get(i),
                    want.get(i),
                    got.len(),
                    want.len()
                ));
            }
        }
        if let Some(want) = &self.rerank {
            let got = got.rerank.as_ref().ok_or("rerank: not decoded")?;
            let same = want.len() == got.len()
                && want.iter().zip(got).all(|((wi, ws), (gi, gs))| {
                    wi == gi && (ws - gs).abs() <= 1e-4 * ws.abs().max(1.0)
                });
            if !same {
                return Err(format!("rerank: decoded {got:?}, recorded {want:?}"));
            }
        }
        if let Some(want) = &self.sparse {
            let got = got.sparse.as_ref().ok_or("sparse vectors: not decoded")?;
            if let Some(i) = (0..want.len().max(got.len())).find(|&i| want.get(i) != got.get(i)) {
                return Err(format!(
                    "sparse vector {i}: decoded {:?}, recorded {:?}",
                    got.get(i),
                    want.get(i)
                ));
            }
        }
        field("media (bytes, hash)", &self.media, &got.media)?;
        field("images", &self.images, &got.images)?;
        field("flagged categories", &self.flagged, &got.flagged)?;
        field("token count", &self.token_count, &got.token_count)?;
        field("healthy", &self.healthy, &got.healthy)?;
        Ok(())
    }

    /// Checks the outcome of a call against this expectation: the recorded error kind for an
    /// error, else an answer equal (as far as recorded) to the recording.
    pub fn check_outcome(&self, got: Result<&Expected, &Error>) -> Result<(), String> {
        if self.is_empty() {
            return Err("the oracle found nothing to check in the recorded body".to_owned());
        }
        match (self.error, got) {
            (Some(want), Err(e)) if e.kind() == want => Ok(()),
            (Some(want), Err(e)) => Err(format!(
                "the recording means {want} but infermux reported {}: {e}",
                e.kind()
            )),
            (Some(_), Ok(g)) => self.check(g),
            (None, Err(e)) => Err(format!(
                "the recorded answer was not decoded ({}): {e}",
                e.kind()
            )),
            (None, Ok(g)) => self.check(g),
        }
    }

    /// [`Expected::check_outcome`] for a replayed recording answered with `status`: also, an
    /// error answering a recorded error status (400 and up) must carry that status.
    pub fn check_replay(&self, status: u16, got: Result<&Expected, &Error>) -> Result<(), String> {
        self.check_outcome(got)?;
        match got {
            Err(e) if status >= 400 && e.status() != Some(status) => Err(format!(
                "error status {:?} for a recorded {status}",
                e.status()
            )),
            _ => Ok(()),
        }
    }

    /// [`Expected::check_outcome`] for a core response.
    pub fn check_response(&self, got: &Result<Response, Error>) -> Result<(), String> {
        match got {
            Ok(r) => self.check_outcome(Ok(&Expected::of_response(r))),
            Err(e) => self.check_outcome(Err(e)),
        }
    }
}

/// Embeddings equal component by component (within `tolerance` of the larger of the recorded
/// magnitude and 1, or exactly); the first difference, named.
fn compare_embeddings(
    want: &[Vec<f32>],
    got: &[Vec<f32>],
    tolerance: Option<f32>,
) -> Result<(), String> {
    if want.len() != got.len() {
        return Err(format!(
            "embeddings: decoded {} vectors, recorded {}",
            got.len(),
            want.len()
        ));
    }
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        if w.len() != g.len() {
            return Err(format!(
                "embeddings: vector {i} has {} components, recorded {}",
                g.len(),
                w.len()
            ));
        }
        let close = |(a, b): (&f32, &f32)| match tolerance {
            None => a == b,
            Some(t) => (a - b).abs() <= t * a.abs().max(1.0),
        };
        if let Some(j) = w.iter().zip(g).position(|p| !close(p)) {
            return Err(format!(
                "embeddings: vector {i} component {j}: decoded {}, recorded {}",
                g[j], w[j]
            ));
        }
    }
    Ok(())
}

/// What a server answered, kept as a snapshot by its own test suite (not an HTTP recording):
/// the route it answered, the body as it went on the wire, and what that body means.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The route that answered (`/generate`, `/v1/chat/completions`, `/embed`, …).
    pub route: &'static str,
    /// The body's content type (`application/json`, `text/event-stream`).
    pub content_type: &'static str,
    /// Whether the answer is a stream (the body is SSE).
    pub streamed: bool,
    /// The body as the server sent it.
    pub body: Vec<u8>,
    /// The oracle's reading of the body.
    pub expected: Expected,
}

/// The value of an [insta](https://insta.rs) snapshot file (a `---` header block, then the
/// value as YAML) as JSON.
pub fn insta_value(text: &str) -> Result<Value, String> {
    let text = text.replace("\r\n", "\n");
    let rest = text
        .strip_prefix("---\n")
        .ok_or("the snapshot does not open with an insta header (---)")?;
    let (_, yaml) = rest
        .split_once("\n---\n")
        .ok_or("the snapshot's insta header is not closed (---)")?;
    serde_norway::from_str(yaml).map_err(|e| format!("the snapshot's value is not YAML: {e}"))
}

/// Tool-call arguments as JSON; empty text is `{}`, text that is not JSON a string value.
pub fn arguments(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Object(serde_json::Map::new());
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Where two texts first differ, for a readable mismatch.
fn first_difference(want: &str, got: &str) -> String {
    let at = want
        .chars()
        .zip(got.chars())
        .take_while(|(a, b)| a == b)
        .count();
    let tail = |s: &str| s.chars().skip(at).take(20).collect::<String>();
    format!(
        "first difference at char {at}: decoded {:?}, recorded {:?}",
        tail(got),
        tail(want)
    )
}

/// FNV-1a (64-bit) of `bytes`, for comparing media without keeping it.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The recorded body as the client saw it: a gzip body (stored as the exact wire bytes, with
/// `Content-Encoding: gzip` or the gzip magic) decompressed.
pub fn plain_body(resp: &RecordedResponse) -> Result<Vec<u8>, String> {
    plain_bytes(&resp.body.to_bytes())
}

/// [`plain_body`] for raw bytes: gunzipped when they start with the gzip magic.
pub fn plain_bytes(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes.to_vec());
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(bytes), &mut out)
        .map_err(|e| format!("the recorded gzip body does not decompress: {e}"))?;
    Ok(out)
}

/// Numbers as an `f32` decoder reads them (the nearest `f64`, rounded to `f32`).
pub(crate) fn floats(xs: &[Value]) -> Result<Vec<f32>, String> {
    xs.iter()
        .map(|x| {
            x.as_f64()
                .map(|f| f as f32)
                .ok_or_else(|| format!("a recorded vector holds {x}, not a number"))
        })
        .collect()
}

/// The body as JSON, or why not.
pub(crate) fn json(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("the recorded body is not JSON: {e}"))
}

/// The JSON payloads of an SSE body's `data:` fields (one event's `data:` lines joined),
/// without `[DONE]`; the event name is kept alongside.
pub(crate) fn sse_events(body: &[u8]) -> Vec<(Option<String>, Value)> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut event = None;
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(e) = line.strip_prefix("event:") {
                event = Some(e.trim().to_owned());
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push(d.strip_prefix(' ').unwrap_or(d));
            }
        }
        let data = data.join("\n");
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" {
            if event.as_deref() == Some("error") {
                out.push((event, Value::Null));
            }
            continue;
        }
        match serde_json::from_str(data) {
            Ok(v) => out.push((event, v)),
            Err(_) if event.as_deref() == Some("error") => out.push((event, Value::Null)),
            Err(_) => {}
        }
    }
    out
}

/// The SSE payloads only.
pub(crate) fn sse_payloads(body: &[u8]) -> Vec<Value> {
    sse_events(body).into_iter().map(|(_, v)| v).collect()
}

/// Lower-case text of every string in an error object (type, code, message, status), for
/// reading what kind of error it is.
fn error_words(v: &Value) -> String {
    let e = v.get("error").unwrap_or(v);
    let mut words = String::new();
    match e {
        Value::String(s) => words.push_str(s),
        Value::Object(m) => {
            for k in ["type", "code", "status", "message", "error_type", "error"] {
                match m.get(k) {
                    Some(Value::String(s)) => {
                        words.push_str(s);
                        words.push(' ');
                    }
                    Some(Value::Number(n)) => {
                        words.push_str(&n.to_string());
                        words.push(' ');
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    for k in ["type", "error_type"] {
        if let Some(s) = v.get(k).and_then(Value::as_str) {
            words.push(' ');
            words.push_str(s);
        }
    }
    words.to_ascii_lowercase()
}

/// What an error body says beyond its status: quota, overload, context length, content
/// filter, an unsupported operation.
fn body_kind(words: &str) -> Option<ErrorKind> {
    let has = |ns: &[&str]| ns.iter().any(|n| words.contains(n));
    if has(&[
        "insufficient_quota",
        "billing_hard_limit_reached",
        "billing_error",
        "credit balance is too low",
        "reached your specified api usage limits",
    ]) {
        Some(ErrorKind::QuotaExceeded)
    } else if has(&["not_supported_error"]) {
        Some(ErrorKind::Unsupported)
    } else if has(&[
        "context_length_exceeded",
        "maximum context length",
        "context window",
        "prompt is too long",
        "exceed_context_size_error",
        // TGI's and TEI's validation: "`inputs` tokens + `max_new_tokens` must be <= 4096",
        // "`inputs` must have less than 512 tokens"
        "`inputs` tokens + `max_new_tokens` must be <=",
        "`inputs` must have less than",
        "than the maximum model length",
    ]) {
        Some(ErrorKind::ContextLength)
    } else if has(&["content_filter", "content_policy", "bio_policy"])
        || (has(&["invalid_prompt"]) && has(&["usage polic", "flagged"]))
    {
        Some(ErrorKind::ContentFilter)
    } else {
        None
    }
}

/// The error kind a recorded HTTP error means, from its status and its body: 402, or a body
/// saying the key is out of quota or credit, `quota_exceeded`; a body saying
/// `model_not_found` `not_found`; 401/403 `auth`, 404 `not_found`, 408 and 504 `timeout`, 429
/// `overloaded` when the body says so, `invalid_request` when it says the request is too large
/// for the limit, else `rate_limited`, 501 or `not_supported_error` `unsupported`, 529
/// `overloaded`, another 5xx `server` unless the body says overloaded, another 4xx
/// `context_length` / `content_filter` when the body says so, else `invalid_request`.
pub fn http_error_kind(status: u16, body: &[u8]) -> ErrorKind {
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
    let words = error_words(&v);
    let overloaded = words.contains("overloaded");
    match (status, body_kind(&words)) {
        (501, _) | (_, Some(ErrorKind::Unsupported)) => ErrorKind::Unsupported,
        (529, _) => ErrorKind::Overloaded,
        (402, _) | (_, Some(ErrorKind::QuotaExceeded)) => ErrorKind::QuotaExceeded,
        (_, _) if words.contains("model_not_found") => ErrorKind::NotFound,
        (429, _) if overloaded => ErrorKind::Overloaded,
        (429, _) if words.contains("request too large for") => ErrorKind::InvalidRequest,
        (429, _) => ErrorKind::RateLimited,
        (401 | 403, _) => ErrorKind::Auth,
        (404, _) => ErrorKind::NotFound,
        (408 | 504, _) => ErrorKind::Timeout,
        (500..=599, _) if overloaded => ErrorKind::Overloaded,
        (500..=599, _) => ErrorKind::Server,
        (_, Some(ErrorKind::ContextLength)) => ErrorKind::ContextLength,
        (_, Some(ErrorKind::ContentFilter)) => ErrorKind::ContentFilter,
        _ => ErrorKind::InvalidRequest,
    }
}

/// The kind of an error object found inside a 2xx body or stream (`{"error": {...}}`,
/// Anthropic's `{"type":"error",...}`, TGI's `{"error": "...", "error_type": ...}`), read from
/// its type, code and message.
pub fn embedded_error_kind(v: &Value) -> ErrorKind {
    let words = error_words(v);
    if let Some(k) = body_kind(&words) {
        return k;
    }
    let has = |ns: &[&str]| ns.iter().any(|n| words.contains(n));
    if has(&["overloaded"]) {
        ErrorKind::Overloaded
    } else if has(&[
        "rate_limit",
        "rate limit",
        "resource_exhausted",
        "too many requests",
    ]) {
        ErrorKind::RateLimited
    } else if has(&[
        "authentication",
        "permission",
        "unauthenticated",
        "invalid_api_key",
    ]) {
        ErrorKind::Auth
    } else if has(&["not_found", "not found"]) {
        ErrorKind::NotFound
    } else if has(&["timeout", "deadline"]) {
        ErrorKind::Timeout
    } else if has(&[
        "invalid_request",
        "invalid_argument",
        "validation",
        "tool_use_failed",
        "invalid_prompt",
        "bad_request",
    ]) {
        ErrorKind::InvalidRequest
    } else {
        ErrorKind::Server
    }
}

/// The expectation for a recorded HTTP error, or `None` for a 2xx.
pub(crate) fn status_error(status: u16, body: &[u8]) -> Option<Expected> {
    (status >= 400).then(|| Expected::error(http_error_kind(status, body)))
}

/// Whether a JSON body is an error object (`{"error": <non-null>}`).
pub(crate) fn is_error_object(v: &Value) -> bool {
    v.get("error").is_some_and(|e| !e.is_null())
}

/// The expectation for a recorded HTTP error, or for a 2xx JSON body that `is_error` says is an
/// error object (the kind its words mean); `None` for an answer.
pub(crate) fn error_of(status: u16, body: &[u8], is_error: fn(&Value) -> bool) -> Option<Expected> {
    status_error(status, body).or_else(|| {
        serde_json::from_slice::<Value>(body)
            .ok()
            .filter(is_error)
            .map(|v| Expected::error(embedded_error_kind(&v)))
    })
}

/// A plain JSON answer: the recorded error ([`error_of`]), else what `read` makes of the body
/// (which must be JSON).
pub(crate) fn json_answer(
    status: u16,
    body: &[u8],
    is_error: fn(&Value) -> bool,
    read: impl FnOnce(&Value) -> Result<Expected, String>,
) -> Result<Expected, String> {
    match error_of(status, body, is_error) {
        Some(e) => Ok(e),
        None => read(&json(body)?),
    }
}

/// A streamed SSE answer: the recorded error status, or the first event named `error` or that
/// `is_error` says is an error object (the kind its words mean), else what `read` makes of the
/// events' payloads in order.
pub(crate) fn sse_answer(
    status: u16,
    body: &[u8],
    is_error: fn(&Value) -> bool,
    read: impl FnOnce(Vec<Value>) -> Result<Expected, String>,
) -> Result<Expected, String> {
    if let Some(e) = status_error(status, body) {
        return Ok(e);
    }
    let events = sse_events(body);
    if let Some((_, v)) = events
        .iter()
        .find(|(event, v)| event.as_deref() == Some("error") || is_error(v))
    {
        return Ok(Expected::error(embedded_error_kind(v)));
    }
    read(events.into_iter().map(|(_, v)| v).collect())
}

/// The string at `key`, if it is one.
pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The whole number at `key`, if it is one.
pub(crate) fn u64_of(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

/// The array at `key`; without one, why not (`the recorded {what} has no {key}`).
pub(crate) fn array<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a [Value], String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| format!("the recorded {what} has no {key}"))
}

/// What `name` reads from each entry of a listing, in order (empty where it reads nothing).
pub(crate) fn listed<'a>(
    entries: &'a [Value],
    name: impl Fn(&'a Value) -> Option<&'a str>,
) -> Vec<String> {
    entries
        .iter()
        .map(|e| name(e).unwrap_or("").to_owned())
        .collect()
}

/// An expectation of ids only (a listing, an uploaded file, a server's model).
pub(crate) fn ids(ids: Vec<String>) -> Expected {
    Expected {
        ids: Some(ids),
        ..Expected::default()
    }
}

/// An expectation of embeddings: every vector, their count and the first's dimension.
pub(crate) fn vectors(xs: Vec<Vec<f32>>) -> Expected {
    Expected {
        vectors: Some((xs.len(), xs.first().map_or(0, Vec::len))),
        embeddings: Some(xs),
        ..Expected::default()
    }
}

/// Vectors given as arrays of numbers, one per entry.
pub(crate) fn float_rows(xs: &[Value]) -> Result<Vec<Vec<f32>>, String> {
    xs.iter()
        .map(|x| {
            floats(
                x.as_array()
                    .ok_or("a recorded vector is not an array of numbers")?,
            )
        })
        .collect()
}

/// A token count answer: the number at `key`.
pub(crate) fn token_count(v: &Value, key: &str) -> Result<Expected, String> {
    Ok(Expected {
        token_count: Some(
            u64_of(v, key).ok_or_else(|| format!("the recorded count has no {key}"))?,
        ),
        ..Expected::default()
    })
}

/// A tool call given as `{"function": {"name", "arguments"}}` (the OpenAI format, Ollama's
/// native API): the name, and the arguments whether recorded as JSON text, as a JSON value or
/// not at all.
pub(crate) fn function_call(t: &Value) -> (String, Value) {
    let name = t.pointer("/function/name").and_then(Value::as_str);
    let args = match t.pointer("/function/arguments") {
        Some(Value::String(s)) => arguments(s),
        Some(Value::Null) | None => arguments(""),
        Some(other) => other.clone(),
    };
    (name.unwrap_or("").to_owned(), args)
}

/// A streamed chat answer once its deltas are joined, onto `e`: the text, the reasoning, and
/// the tool calls (stream index, name, arguments text) in order.
pub(crate) fn set_joined(
    e: &mut Expected,
    text: String,
    reasoning: String,
    calls: Vec<(u64, String, String)>,
) {
    e.text = Some(text);
    e.reasoning = Some(reasoning);
    e.tool_calls = Some(
        calls
            .into_iter()
            .map(|(_, n, a)| (n, arguments(&a)))
            .collect(),
    );
}

/// For the format modules' tests: `want` changed by `change` must be refused by `want`; the
/// reason.
#[cfg(test)]
pub(crate) fn refused(want: &Expected, change: impl FnOnce(&mut Expected)) -> String {
    let mut got = want.clone();
    change(&mut got);
    match want.check(&got) {
        Err(why) => why,
        Ok(()) => panic!("{got:?} passed as {want:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_are_read_from_status_and_body() {
        let quota = br#"{"error":{"type":"insufficient_quota","code":"insufficient_quota"}}"#;
        assert_eq!(http_error_kind(429, quota), ErrorKind::QuotaExceeded);
        assert_eq!(
            http_error_kind(429, br#"{"error":{"code":"rate_limit_exceeded"}}"#),
            ErrorKind::RateLimited
        );
        assert_eq!(http_error_kind(503, b"{}"), ErrorKind::Server);
        // a key out of credit, a model the project may not use, a server overloaded, vLLM's
        // engine wording, a flagged prompt
        for (status, body, want) in [
            (402, &br#"{"type":"error","error":{"type":"billing_error","message":"x"}}"#[..], ErrorKind::QuotaExceeded),
            (400, br#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API."}}"#, ErrorKind::QuotaExceeded),
            (403, br#"{"error":{"message":"Project does not have access to model","code":"model_not_found"}}"#, ErrorKind::NotFound),
            (429, br#"{"error":"Model is overloaded","error_type":"overloaded"}"#, ErrorKind::Overloaded),
            (400, br#"{"message":"Prompt length of 5016 is longer than the maximum model length of 4096."}"#, ErrorKind::ContextLength),
            (400, br#"{"error":{"code":"invalid_prompt","message":"your prompt was flagged as potentially violating our usage policy"}}"#, ErrorKind::ContentFilter),
            (400, br#"{"error":{"code":"invalid_prompt","message":"no"}}"#, ErrorKind::InvalidRequest),
            (429, br#"{"error":{"message":"Request too large for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Requested 36278. The input or output tokens must be reduced in order to run successfully.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#, ErrorKind::InvalidRequest),
            (429, br#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Used 29937, Requested 385. Please try again in 644ms.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#, ErrorKind::RateLimited),
        ] {
            assert_eq!(http_error_kind(status, body), want, "{status}");
        }
        assert_eq!(
            http_error_kind(503, br#"{"error":{"message":"The model is overloaded"}}"#),
            ErrorKind::Overloaded
        );
        assert_eq!(
            http_error_kind(501, b"Not Implemented"),
            ErrorKind::Unsupported
        );
        assert_eq!(
            http_error_kind(
                400,
                br#"{"type":"error","error":{"type":"not_supported_error","message":"x"}}"#
            ),
            ErrorKind::Unsupported
        );
        assert_eq!(
            http_error_kind(400, br#"{"error":{"code":"context_length_exceeded"}}"#),
            ErrorKind::ContextLength
        );
        assert_eq!(
            http_error_kind(422, b"Input validation error"),
            ErrorKind::InvalidRequest
        );
        assert_eq!(http_error_kind(404, b""), ErrorKind::NotFound);
        assert_eq!(http_error_kind(529, b""), ErrorKind::Overloaded);
    }

    #[test]
    fn an_empty_expectation_never_passes() {
        let got = Expected {
            text: Some("x".into()),
            ..Expected::default()
        };
        assert!(Expected::default().check(&got).is_err());
        assert!(Expected::default().check_outcome(Ok(&got)).is_err());
    }

    #[test]
    fn check_names_the_first_difference() {
        let want = Expected {
            text: Some("Hello".into()),
            tool_calls: Some(vec![("f".into(), serde_json::json!({"a": 1, "b": 2}))]),
            input_tokens: Some(3),
            ..Expected::default()
        };
        let mut got = want.clone();
        assert_eq!(want.check(&got), Ok(()));
        got.text = Some("Hell".into());
        assert!(want.check(&got).unwrap_err().starts_with("text"));
        got = want.clone();
        got.tool_calls = Some(vec![("f".into(), serde_json::json!({"a": 2, "b": 1}))]);
        assert!(want.check(&got).unwrap_err().starts_with("tool calls"));
        got = want.clone();
        got.input_tokens = None;
        assert!(want.check(&got).unwrap_err().starts_with("input tokens"));
        let err = Error::new(ErrorKind::RateLimited, "slow down");
        assert!(want.check_outcome(Err(&err)).is_err());
        let want = Expected::error(ErrorKind::QuotaExceeded);
        assert!(want.check_outcome(Err(&err)).is_err());
        assert!(want.check_outcome(Ok(&got)).is_err());
        let quota = Error::new(ErrorKind::QuotaExceeded, "pay");
        assert_eq!(want.check_outcome(Err(&quota)), Ok(()));
        // a replayed error keeps the recorded status
        assert!(
            want.check_replay(429, Err(&quota))
                .unwrap_err()
                .contains("recorded 429")
        );
        let quota = quota.with_status(429);
        assert_eq!(want.check_replay(429, Err(&quota)), Ok(()));
        assert!(want.check_replay(402, Err(&quota)).is_err());
    }

    #[test]
    fn gzip_bodies_are_decompressed_and_sse_events_joined() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"{\"a\":1}").unwrap();
        assert_eq!(plain_bytes(&gz.finish().unwrap()).unwrap(), b"{\"a\":1}");
        assert!(plain_bytes(&[0x1f, 0x8b, 0, 1]).is_err());
        let events = sse_events(b"event: x\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata: [DONE]\n\n");
        assert_eq!(
            events,
            vec![(Some("x".into()), serde_json::json!({"a": 1}))]
        );
    }

    #[test]
    fn embeddings_tokens_owners_and_cached_tokens_are_compared() {
        let want = Expected {
            embeddings: Some(vec![vec![0.5, -1.25], vec![3.0, 4.0]]),
            tokens: Some(vec![" Par".into(), "is".into()]),
            owners: Some(vec!["llamacpp".into()]),
            cached_input_tokens: Some(8),
            ..Expected::default()
        };
        assert_eq!(want.check(&want), Ok(()));
        let wrong = |f: fn(&mut Expected)| refused(&want, f);
        let why = wrong(|g| g.embeddings = Some(vec![vec![0.5, -1.25], vec![3.0, 4.000_001]]));
        assert!(why.contains("vector 1 component 1"), "{why}");
        assert!(wrong(|g| g.embeddings = Some(vec![vec![0.5, -1.25]])).contains("1 vectors"));
        assert!(
            wrong(|g| g.embeddings = Some(vec![vec![0.5], vec![3.0, 4.0]])).contains("components")
        );
        assert!(wrong(|g| g.embeddings = None).contains("not decoded"));
        assert!(wrong(|g| g.tokens = Some(vec![" Par".into()])).contains("token 1"));
        assert!(wrong(|g| g.tokens = Some(vec![" Par".into(), "IS".into()])).contains("token 1"));
        assert!(wrong(|g| g.owners = Some(vec!["openai".into()])).starts_with("owners"));
        assert!(wrong(|g| g.cached_input_tokens = None).starts_with("cached input tokens"));
        // a tolerance admits a computed mean's rounding, and no more
        let mut pooled = want.clone();
        pooled.embedding_tolerance = Some(1e-4);
        let mut got = want.clone();
        got.embeddings = Some(vec![vec![0.500_01, -1.25], vec![3.0, 4.0]]);
        assert_eq!(pooled.check(&got), Ok(()));
        got.embeddings = Some(vec![vec![0.501, -1.25], vec![3.0, 4.0]]);
        assert!(
            pooled
                .check(&got)
                .unwrap_err()
                .contains("vector 0 component 0")
        );
    }

    #[test]
    fn insta_snapshots_are_read_and_malformed_ones_refused() {
        let snap =
            "---\nsource: router/tests/test_http_embed.rs\nexpression: x\n---\n- - 0.5\n  - -1\n";
        assert_eq!(insta_value(snap), Ok(serde_json::json!([[0.5, -1]])));
        assert!(insta_value("- - 0.5\n").is_err());
        assert!(insta_value("---\nsource: x\n- - 0.5\n").is_err());
        assert!(insta_value("---\nsource: x\n---\n- [0.5\n").is_err());
    }
}
