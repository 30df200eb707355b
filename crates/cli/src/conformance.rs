//! `infermux conformance --corpus DIR [--json]`: replays every interaction of a folder of vcrpy
//! cassettes through the testkit's replay server into the provider operation its host and path
//! route to, and reports per interaction whether infermux decoded it as the real service meant
//! it (an answer for a 2xx, the right error kind for a 4xx/5xx or an error inside a 200 stream).
//!
//! The routing table is documented in the CLI's README. Each interaction is served by its own
//! replay server (replay matches in recorded order, so one server per interaction keeps every
//! interaction independent of the others).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use infermux::groq::Groq;
use infermux::openai::media::{ImageRequest, SpeechRequest, TranscriptionRequest};
use infermux::openai::{OpenAi, responses};
use infermux::openai_compat::{OpenAiCompat, wire};
use infermux::{
    ChatRequest, ChatResponse, CompletionRequest, CompletionResponse, EmbeddingRequest,
    EndpointConfig, Error, ErrorKind, Message, Provider, Request, RequestContext, Response, Role,
    StreamAccumulator, Timeouts,
};
use infermux_testkit::cassette::split_uri;
use infermux_testkit::{Cassette, Interaction, ReplayServer};
use serde_json::{Value, json};

/// Arguments of `infermux conformance`.
#[derive(clap::Args)]
pub(crate) struct ConformanceArgs {
    /// Folder of vcrpy cassettes (searched recursively for `.yaml` / `.yml` files).
    #[arg(long)]
    corpus: PathBuf,
    /// Print one JSON object per interaction instead of a readable line.
    #[arg(long)]
    json: bool,
}

/// A provider operation the runner can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Chat,
    Completion,
    Embeddings,
    Models,
    /// Chat through OpenAI's Responses API.
    Responses,
    /// OpenAI moderation.
    Moderation,
    /// OpenAI image generation.
    Images,
    /// OpenAI text to speech.
    Speech,
    /// OpenAI transcription (multipart upload).
    Transcription,
    /// OpenAI file upload (multipart).
    FileUpload,
    /// OpenAI file listing.
    FileList,
    /// Anthropic's Messages API (chat, plain or streamed).
    AnthropicChat,
    /// Gemini `generateContent` / `streamGenerateContent`.
    GeminiChat,
    /// Gemini `batchEmbedContents`.
    GeminiEmbed,
    /// Ollama's native `/api/chat`.
    OllamaChat,
    /// Ollama's native `/api/generate`.
    OllamaGenerate,
    /// TGI text generation (`/generate`, `/generate_stream`, the HF Inference API).
    TgiGenerate,
    /// TEI embeddings (`/embed`, HF feature extraction).
    TeiEmbed,
}

/// The model named in a Gemini path (`/v1beta/models/<model>:<method>`).
fn gemini_model(path: &str) -> &str {
    path.split_once("/models/")
        .map_or("", |(_, rest)| rest.split(':').next().unwrap_or(""))
}

impl Op {
    /// Operations outside the provider-neutral `Request`, driven through the OpenAI crate's
    /// inherent methods.
    fn is_media(self) -> bool {
        matches!(
            self,
            Op::Moderation
                | Op::Images
                | Op::Speech
                | Op::Transcription
                | Op::FileUpload
                | Op::FileList
        )
    }
}

/// Where an interaction goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    provider: &'static str,
    operation: String,
    /// The operation and the base path (the recorded path minus the operation's suffix), or
    /// why the operation is not offered.
    target: Result<(Op, String), String>,
}

const NOT_YET: &str = "provider not implemented yet";

fn unsupported(provider: &'static str, operation: &str, reason: &str) -> Route {
    Route {
        provider,
        operation: operation.to_owned(),
        target: Err(reason.to_owned()),
    }
}

/// The OpenAI-protocol operation a path ends with.
fn openai_op(method: &str, path: &str) -> Option<(Op, &'static str, String)> {
    let table: [(&str, &str, Op, &str); 4] = [
        ("POST", "/chat/completions", Op::Chat, "chat"),
        ("POST", "/completions", Op::Completion, "completion"),
        ("POST", "/embeddings", Op::Embeddings, "embeddings"),
        ("GET", "/models", Op::Models, "models"),
    ];
    table.iter().find_map(|(m, suffix, op, name)| {
        let base = path.strip_suffix(suffix)?;
        method
            .eq_ignore_ascii_case(m)
            .then(|| (*op, *name, base.to_owned()))
    })
}

fn openai_route(provider: &'static str, method: &str, path: &str) -> Option<Route> {
    openai_op(method, path).map(|(op, name, base)| Route {
        provider,
        operation: name.to_owned(),
        target: Ok((op, base)),
    })
}

/// The OpenAI operations outside the provider-neutral `Request` that the runner drives.
fn openai_media_op(method: &str, path: &str) -> Option<(Op, &'static str)> {
    let post = method.eq_ignore_ascii_case("POST");
    match path {
        "/v1/moderations" if post => Some((Op::Moderation, "moderation")),
        "/v1/images/generations" if post => Some((Op::Images, "image_generation")),
        "/v1/audio/speech" if post => Some((Op::Speech, "speech")),
        "/v1/audio/transcriptions" if post => Some((Op::Transcription, "transcription")),
        "/v1/files" if post => Some((Op::FileUpload, "file_upload")),
        "/v1/files" if method.eq_ignore_ascii_case("GET") => Some((Op::FileList, "file_list")),
        _ => None,
    }
}

/// The first path segment after `prefix`, as an operation name.
fn segment_after<'a>(path: &'a str, prefix: &str) -> &'a str {
    path.strip_prefix(prefix)
        .unwrap_or(path)
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("")
}

/// The routing table: host and path to provider and operation (see the CLI README).
fn route(method: &str, host: &str, path: &str) -> Route {
    let host = host.to_ascii_lowercase();
    let hostname = host.split(':').next().unwrap_or("");
    let port = host.split(':').nth(1);
    match hostname {
        "api.openai.com" if method.eq_ignore_ascii_case("POST") && path == "/v1/responses" => {
            Route {
                provider: "openai",
                operation: "responses".to_owned(),
                target: Ok((Op::Responses, "/v1".to_owned())),
            }
        }
        "api.openai.com" if openai_media_op(method, path).is_some() => {
            let (op, name) = openai_media_op(method, path).unwrap_or((Op::FileList, "files"));
            Route {
                provider: "openai",
                operation: name.to_owned(),
                target: Ok((op, "/v1".to_owned())),
            }
        }
        "api.openai.com" => openai_route("openai", method, path).unwrap_or_else(|| {
            let op = segment_after(path, "/v1");
            let reason = match op {
                "assistants" | "threads" => {
                    "the Assistants API, deprecated by OpenAI in favour of the Responses API, is not offered"
                }
                _ => "operation not implemented yet",
            };
            unsupported("openai", op, reason)
        }),
        h if h.ends_with(".openai.azure.com") => path
            .starts_with("/openai/deployments/")
            .then(|| openai_route("openai", method, path))
            .flatten()
            .map(|mut r| {
                r.operation = format!("azure_{}", r.operation);
                r
            })
            .unwrap_or_else(|| {
                unsupported(
                    "openai",
                    "azure",
                    "this Azure OpenAI route is not implemented yet",
                )
            }),
        "api.groq.com" => openai_route("groq", method, path).unwrap_or_else(|| {
            unsupported(
                "groq",
                segment_after(path, "/openai/v1"),
                "operation not implemented yet",
            )
        }),
        "api.anthropic.com" => match path {
            "/v1/messages" if method.eq_ignore_ascii_case("POST") => Route {
                provider: "anthropic",
                operation: "messages".to_owned(),
                target: Ok((Op::AnthropicChat, "/v1".to_owned())),
            },
            "/v1/messages/count_tokens" => unsupported(
                "anthropic",
                "count_tokens",
                "token counting is Anthropic::count_tokens, not a provider-neutral operation",
            ),
            "/v1/complete" => unsupported(
                "anthropic",
                "complete",
                "the legacy Text Completions API (superseded by Messages) is not offered",
            ),
            _ => unsupported(
                "anthropic",
                segment_after(path, "/v1"),
                "operation not implemented yet",
            ),
        },
        "generativelanguage.googleapis.com" => {
            let op = path.rsplit(':').next().unwrap_or("");
            let version = path.trim_start_matches('/').split('/').next().unwrap_or("v1beta");
            let target = |op: Op| Ok((op, format!("/{version}")));
            match op {
                "generateContent" | "streamGenerateContent" => Route {
                    provider: "gemini",
                    operation: op.to_owned(),
                    target: target(Op::GeminiChat),
                },
                "batchEmbedContents" => Route {
                    provider: "gemini",
                    operation: op.to_owned(),
                    target: target(Op::GeminiEmbed),
                },
                "embedContent" | "countTokens" => unsupported(
                    "gemini",
                    op,
                    "a Gemini-only method (Gemini::embed_one, Gemini::count_tokens), not a provider-neutral operation",
                ),
                _ => unsupported("gemini", op, "operation not implemented yet"),
            }
        }
        "huggingface.co" => unsupported(
            "hf-hub",
            segment_after(path, "/api"),
            "Hugging Face Hub metadata, not an inference operation",
        ),
        "api-inference.huggingface.co" | "router.huggingface.co" => {
            if let Some(r) = path
                .contains("/v1/")
                .then(|| openai_route("openai-compat", method, path))
                .flatten()
            {
                // the OpenAI-compatible routes of TGI and the HF router
                r
            } else if let Some((prefix, _)) = path.split_once("/pipeline/feature-extraction/") {
                Route {
                    provider: "tei",
                    operation: "feature-extraction".to_owned(),
                    target: Ok((Op::TeiEmbed, prefix.to_owned())),
                }
            } else if let Some((prefix, _)) = path.split_once("/models/") {
                Route {
                    provider: "tgi",
                    operation: "generate".to_owned(),
                    target: Ok((Op::TgiGenerate, prefix.to_owned())),
                }
            } else {
                unsupported("tgi", "generate", "no route for this Inference API path")
            }
        }
        _ if port == Some("11434") || hostname == "ollama.com" => {
            if path.starts_with("/api/") {
                let op = segment_after(path, "/api");
                let target = match op {
                    "chat" => Some(Op::OllamaChat),
                    "generate" => Some(Op::OllamaGenerate),
                    _ => None,
                };
                match target {
                    Some(t) => Route {
                        provider: "ollama",
                        operation: op.to_owned(),
                        target: Ok((t, String::new())),
                    },
                    None => unsupported("ollama", op, "operation not implemented yet"),
                }
            } else {
                // Ollama's OpenAI-compatible `/v1` mode
                openai_route("openai-compat", method, path).unwrap_or_else(|| {
                    unsupported("ollama", segment_after(path, "/v1"), NOT_YET)
                })
            }
        }
        _ => openai_route("openai-compat", method, path).unwrap_or_else(|| {
            let last = path.rsplit('/').next().unwrap_or("");
            match last {
                "generate" | "generate_stream" | "info" | "health" => {
                    unsupported("tgi", last, NOT_YET)
                }
                "embed" | "embed_sparse" | "rerank" => unsupported("tei", last, NOT_YET),
                _ => unsupported("unknown", last, "no route for this host and path"),
            }
        }),
    }
}

/// The provider for `name` at `base_url`.
fn provider(
    name: &'static str,
    op: Op,
    base_url: &str,
    azure_api_version: Option<&str>,
    query: &str,
    path: &str,
) -> infermux::Result<Arc<dyn Provider>> {
    let timeouts = Timeouts::standard()
        .with_first_byte(Duration::from_secs(20))
        .with_total(Some(Duration::from_secs(30)));
    let cfg = EndpointConfig::new("conformance", base_url)?.with_timeouts(timeouts);
    match name {
        "groq" => Ok(Arc::new(Groq::new(cfg)?)),
        "openai" => {
            let client = match azure_api_version {
                Some(v) => OpenAi::azure(cfg, v)?,
                None => OpenAi::new(cfg)?,
            };
            Ok(Arc::new(client.with_responses_api(op == Op::Responses)))
        }
        "openai-compat" => Ok(Arc::new(OpenAiCompat::new(cfg)?)),
        // the Anthropic SDK's beta client marks requests with `?beta=true`
        "gemini" => Ok(Arc::new(
            infermux::gemini::Gemini::new(cfg)?
                .with_sse(query.split('&').any(|kv| kv == "alt=sse")),
        )),
        "ollama" => Ok(Arc::new(infermux::ollama::Ollama::new(cfg)?)),
        "tgi" => {
            let model = path.split_once("/models/").map_or("", |(_, m)| m);
            Ok(Arc::new(infermux::hf_tgi::HfTgi::inference_api(
                cfg, model,
            )?))
        }
        "tei" => {
            let model = path
                .split_once("/pipeline/feature-extraction/")
                .map_or("", |(_, m)| m);
            Ok(Arc::new(infermux::hf_tei::HfTei::inference_api(
                cfg, model,
            )?))
        }
        "anthropic" => Ok(Arc::new(
            infermux::anthropic::Anthropic::new(cfg)?
                .with_beta_query(query.split('&').any(|kv| kv == "beta=true")),
        )),
        other => Err(Error::new(
            ErrorKind::Unsupported,
            format!("no provider {other}"),
        )),
    }
}

/// What the provider returned, reduced to the reported fields.
#[derive(Debug, Default, Clone)]
struct Decoded {
    text: Option<String>,
    tool_calls: Option<Vec<(String, String)>>,
    finish_reason: Option<String>,
    usage: Option<(u64, u64)>,
    embeddings: Option<(usize, usize)>,
}

fn decoded_chat(resp: &ChatResponse) -> Decoded {
    Decoded {
        text: Some(resp.text()),
        tool_calls: Some(
            resp.tool_calls()
                .iter()
                .map(|c| (c.name.clone(), c.arguments.clone()))
                .collect(),
        ),
        finish_reason: resp
            .finish_reason
            .as_ref()
            .and_then(|f| serde_json::to_value(f).ok())
            .and_then(|v| v.as_str().map(str::to_owned)),
        usage: resp.usage.map(|u| (u.input_tokens, u.output_tokens)),
        embeddings: None,
    }
}

fn decoded(resp: &Response) -> Decoded {
    match resp {
        Response::Chat(c) => decoded_chat(c),
        Response::Completion(c) => Decoded {
            text: Some(c.text.clone()),
            finish_reason: c
                .finish_reason
                .as_ref()
                .and_then(|f| serde_json::to_value(f).ok())
                .and_then(|v| v.as_str().map(str::to_owned)),
            usage: c.usage.map(|u| (u.input_tokens, u.output_tokens)),
            ..Decoded::default()
        },
        Response::Embeddings(e) => Decoded {
            embeddings: Some((e.embeddings.len(), e.dimension())),
            usage: e.usage.map(|u| (u.input_tokens, u.output_tokens)),
            ..Decoded::default()
        },
        Response::Models(m) => Decoded {
            text: Some(
                m.models
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ..Decoded::default()
        },
        _ => Decoded::default(),
    }
}

/// One line of the report.
#[derive(Debug)]
struct Record {
    file: String,
    interaction: Option<usize>,
    provider: &'static str,
    operation: String,
    status: Option<u16>,
    outcome: &'static str,
    error_kind: Option<ErrorKind>,
    decoded: Decoded,
    /// `None` for unsupported.
    pass: Option<bool>,
    reason: Option<String>,
}

impl Record {
    fn to_json(&self) -> Value {
        let d = &self.decoded;
        json!({
            "file": self.file,
            "interaction": self.interaction,
            "provider": self.provider,
            "operation": self.operation,
            "status": self.status,
            "outcome": self.outcome,
            "error_kind": self.error_kind.map(ErrorKind::as_str),
            "text": d.text,
            "tool_calls": d.tool_calls.as_ref().map(|calls| calls
                .iter()
                .map(|(name, args)| json!({
                    "name": name,
                    "arguments": parse_arguments(args).unwrap_or_else(|_| Value::String(args.clone())),
                }))
                .collect::<Vec<_>>()),
            "finish_reason": d.finish_reason,
            "usage": d.usage.map(|(i, o)| json!({"input_tokens": i, "output_tokens": o})),
            "embeddings": d.embeddings.map(|(count, dim)| json!({"count": count, "dim": dim})),
            "pass": self.pass,
            "reason": self.reason,
        })
    }

    fn line(&self) -> String {
        let verdict = match self.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "UNSUPPORTED",
        };
        let at = self
            .interaction
            .map_or_else(|| self.file.clone(), |i| format!("{}#{i}", self.file));
        let mut line = format!(
            "{verdict:<11} {:<13} {:<22} {:<5} {:<5} {at}",
            self.provider,
            self.operation,
            self.status.map_or_else(String::new, |s| s.to_string()),
            self.outcome
        );
        if let Some(k) = self.error_kind {
            line.push_str(&format!(" [{k}]"));
        }
        if let Some(r) = &self.reason {
            line.push_str(&format!(" — {r}"));
        }
        line
    }
}

fn parse_arguments(args: &str) -> Result<Value, serde_json::Error> {
    if args.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(args)
}

/// The error kinds that are right for a recorded HTTP error status.
fn kinds_for_status(status: u16) -> &'static [ErrorKind] {
    match status {
        401 | 403 => &[ErrorKind::Auth],
        404 => &[ErrorKind::NotFound],
        408 | 504 => &[ErrorKind::Timeout],
        429 => &[ErrorKind::RateLimited, ErrorKind::QuotaExceeded],
        529 => &[ErrorKind::Overloaded],
        400..=499 => &[
            ErrorKind::InvalidRequest,
            ErrorKind::ContextLength,
            ErrorKind::ContentFilter,
        ],
        _ => &[ErrorKind::Server, ErrorKind::Overloaded],
    }
}

/// The recorded body as the client saw it: gzip bodies (stored as the exact wire bytes)
/// decompressed, so the independent reading below checks them too. `None` when a gzip body
/// does not decompress.
fn plain_body(bytes: &[u8]) -> Option<Vec<u8>> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Some(bytes.to_vec());
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(bytes), &mut out).ok()?;
    Some(out)
}

/// The JSON payloads of a recorded SSE body's `data:` lines (not `[DONE]`).
fn sse_payloads(body: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

/// Whether a recorded 200 stream carries an error event.
fn stream_has_error(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    text.lines().any(|l| l.trim() == "event: error")
        || sse_payloads(body).iter().any(|v| {
            v.get("error").is_some()
                || matches!(
                    v.get("type").and_then(Value::as_str),
                    Some("error" | "response.failed")
                )
        })
}

/// Whether a recorded Gemini answer was blocked for safety (a 200 that must give
/// `ContentFilter`).
fn gemini_blocked(body: &[u8]) -> bool {
    let chunks: Vec<Value> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(xs)) => xs,
        Ok(v) => vec![v],
        Err(_) => sse_payloads(body),
    };
    chunks.iter().any(|c| {
        c.pointer("/promptFeedback/blockReason").is_some()
            || matches!(
                c.pointer("/candidates/0/finishReason")
                    .and_then(Value::as_str),
                Some("SAFETY" | "PROHIBITED_CONTENT" | "BLOCKLIST" | "SPII" | "RECITATION")
            )
    })
}

/// Whether a recorded 2xx JSON body is an error object (`{"error": {...}}` with a non-null
/// error, as some compatible servers and failed Responses API answers send).
fn json_has_error(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").cloned())
        .is_some_and(|e| !e.is_null())
}

/// An independent reading of the recorded answer, to check the decoded one against: the text
/// and the number of tool calls of a chat answer, the number of vectors of an embeddings answer.
/// `None` when the body cannot be read here.
fn expected_answer(op: Op, streamed: bool, body: &[u8]) -> Option<(Option<String>, usize)> {
    let body = &plain_body(body)?[..];
    match (op, streamed) {
        (Op::Chat, false) => {
            let v: Value = serde_json::from_slice(body).ok()?;
            let m = v.get("choices")?.get(0)?.get("message")?;
            let text = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            let calls = m
                .get("tool_calls")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            Some((Some(text), calls))
        }
        (Op::Chat, true) => {
            let mut text = String::new();
            let mut indexes = Vec::new();
            for v in sse_payloads(body) {
                let Some(choices) = v.get("choices").and_then(Value::as_array) else {
                    continue;
                };
                for c in choices
                    .iter()
                    .filter(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
                {
                    let Some(delta) = c.get("delta") else {
                        continue;
                    };
                    if let Some(t) = delta.get("content").and_then(Value::as_str) {
                        text.push_str(t);
                    }
                    for (pos, call) in delta
                        .get("tool_calls")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .enumerate()
                    {
                        let i = call
                            .get("index")
                            .and_then(Value::as_u64)
                            .unwrap_or(pos as u64);
                        if !indexes.contains(&i) {
                            indexes.push(i);
                        }
                    }
                }
            }
            Some((Some(text), indexes.len()))
        }
        (Op::Responses, false) => {
            let v: Value = serde_json::from_slice(body).ok()?;
            let mut text = String::new();
            let mut calls = 0;
            for item in v.get("output")?.as_array()? {
                match item.get("type").and_then(Value::as_str) {
                    Some("message") => {
                        for part in item
                            .get("content")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter(|p| {
                                p.get("type").and_then(Value::as_str) == Some("output_text")
                            })
                        {
                            text.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""));
                        }
                    }
                    Some("function_call") => calls += 1,
                    _ => {}
                }
            }
            Some((Some(text), calls))
        }
        (Op::Responses, true) => {
            let mut text = String::new();
            let mut calls = 0;
            for v in sse_payloads(body) {
                match v.get("type").and_then(Value::as_str) {
                    Some("response.output_text.delta") => {
                        text.push_str(v.get("delta").and_then(Value::as_str).unwrap_or(""));
                    }
                    Some("response.output_item.added")
                        if v.pointer("/item/type").and_then(Value::as_str)
                            == Some("function_call") =>
                    {
                        calls += 1;
                    }
                    _ => {}
                }
            }
            Some((Some(text), calls))
        }
        (Op::Completion, false) => {
            let v: Value = serde_json::from_slice(body).ok()?;
            let text = v.get("choices")?.get(0)?.get("text")?.as_str()?.to_owned();
            Some((Some(text), 0))
        }
        (Op::Completion, true) => {
            let text = sse_payloads(body)
                .iter()
                .filter_map(|v| v.get("choices")?.as_array()?.first().cloned())
                .filter(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
                .filter_map(|c| c.get("text").and_then(Value::as_str).map(str::to_owned))
                .collect();
            Some((Some(text), 0))
        }
        (Op::Embeddings, _) => {
            let v: Value = serde_json::from_slice(body).ok()?;
            Some((None, v.get("data")?.as_array()?.len()))
        }
        (Op::GeminiChat, streamed) => {
            let chunks: Vec<Value> = if !streamed {
                vec![serde_json::from_slice(body).ok()?]
            } else if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
                serde_json::from_slice::<Vec<Value>>(body).ok()?
            } else {
                sse_payloads(body)
            };
            let mut text = String::new();
            let mut calls = 0;
            for c in &chunks {
                for p in c
                    .pointer("/candidates/0/content/parts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if p.get("functionCall").is_some() {
                        calls += 1;
                    } else if p.get("thought") != Some(&Value::Bool(true))
                        && let Some(t) = p.get("text").and_then(Value::as_str)
                    {
                        text.push_str(t);
                    }
                }
            }
            Some((Some(text), calls))
        }
        (Op::GeminiEmbed, _) => {
            let v: Value = serde_json::from_slice(body).ok()?;
            Some((None, v.get("embeddings")?.as_array()?.len()))
        }
        (Op::OllamaChat | Op::OllamaGenerate, _) => {
            let mut text = String::new();
            for line in String::from_utf8_lossy(body).lines() {
                let Ok(v) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                let piece = if op == Op::OllamaChat {
                    v.pointer("/message/content").and_then(Value::as_str)
                } else {
                    v.get("response").and_then(Value::as_str)
                };
                text.push_str(piece.unwrap_or(""));
            }
            Some((Some(text), 0))
        }
        (Op::TgiGenerate, true) => {
            let text = sse_payloads(body)
                .iter()
                .filter(|e| e.pointer("/token/special") != Some(&Value::Bool(true)))
                .filter_map(|e| {
                    e.pointer("/token/text")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .collect();
            Some((Some(text), 0))
        }
        (Op::TgiGenerate, false) => {
            let v: Value = serde_json::from_slice(body).ok()?;
            let one = if v.is_array() { v.get(0)? } else { &v };
            Some((Some(one.get("generated_text")?.as_str()?.to_owned()), 0))
        }
        (Op::TeiEmbed, _) => {
            let v: Value = serde_json::from_slice(body).ok()?;
            let top = v.as_array()?;
            // one vector (numbers) for one input, else one entry per input
            let count = if top.first().is_some_and(Value::is_number) {
                1
            } else {
                top.len()
            };
            Some((None, count))
        }
        (Op::AnthropicChat, false) => {
            let v: Value = serde_json::from_slice(body).ok()?;
            let mut text = String::new();
            let mut calls = 0;
            for block in v.get("content")?.as_array()? {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        text.push_str(block.get("text").and_then(Value::as_str).unwrap_or(""))
                    }
                    Some("tool_use") => calls += 1,
                    _ => {}
                }
            }
            Some((Some(text), calls))
        }
        (Op::AnthropicChat, true) => {
            let mut text = String::new();
            let mut calls = 0;
            for v in sse_payloads(body) {
                match v.get("type").and_then(Value::as_str) {
                    Some("content_block_delta")
                        if v.pointer("/delta/type").and_then(Value::as_str)
                            == Some("text_delta") =>
                    {
                        text.push_str(
                            v.pointer("/delta/text")
                                .and_then(Value::as_str)
                                .unwrap_or(""),
                        );
                    }
                    Some("content_block_start")
                        if v.pointer("/content_block/type").and_then(Value::as_str)
                            == Some("tool_use") =>
                    {
                        calls += 1;
                    }
                    _ => {}
                }
            }
            Some((Some(text), calls))
        }
        _ => None,
    }
}

/// The core request for a recorded request body.
fn core_request(op: Op, it: &Interaction) -> infermux::Result<(Request, bool)> {
    let body = || {
        it.request.json().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidRequest,
                "recorded request body is not JSON",
            )
        })
    };
    Ok(match op {
        Op::Chat => {
            let b = body()?;
            (
                Request::Chat(wire::chat_request_from_json(&b)?),
                wire::request_streams(&b),
            )
        }
        Op::Completion => {
            let b = body()?;
            (
                Request::Completion(wire::completion_request_from_json(&b)?),
                wire::request_streams(&b),
            )
        }
        Op::Embeddings => (
            Request::Embeddings(wire::embedding_request_from_json(&body()?)?),
            false,
        ),
        // driven by `drive_media`, which reads the recorded request itself
        Op::Models
        | Op::Moderation
        | Op::Images
        | Op::Speech
        | Op::Transcription
        | Op::FileUpload
        | Op::FileList => (Request::Models, false),
        Op::Responses => {
            let b = body()?;
            (
                Request::Chat(responses::chat_request_from_responses_json(&b)?),
                wire::request_streams(&b),
            )
        }
        Op::AnthropicChat => {
            let b = body()?;
            (
                Request::Chat(infermux::anthropic::wire::chat_request_from_json(&b)?),
                infermux::anthropic::wire::request_streams(&b),
            )
        }
        Op::GeminiChat => {
            let path = it.request.path();
            (
                Request::Chat(infermux::gemini::wire::chat_request_from_json(
                    gemini_model(path),
                    &body()?,
                )?),
                path.ends_with(":streamGenerateContent"),
            )
        }
        Op::GeminiEmbed => {
            let b = body()?;
            let inputs = b["requests"]
                .as_array()
                .map(|rs| {
                    rs.iter()
                        .map(|r| {
                            r["content"]["parts"][0]["text"]
                                .as_str()
                                .unwrap_or("")
                                .to_owned()
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut req = EmbeddingRequest::new(gemini_model(it.request.path()), inputs);
            req.dimensions = b["requests"][0]["outputDimensionality"]
                .as_u64()
                .and_then(|d| u32::try_from(d).ok());
            if let Some(t) = b["requests"][0].get("taskType") {
                req.extra.insert("taskType".to_owned(), t.clone());
            }
            (Request::Embeddings(req), false)
        }
        Op::OllamaChat => {
            let b = body()?;
            let messages = b["messages"]
                .as_array()
                .map(|ms| {
                    ms.iter()
                        .map(|m| {
                            Message::new(
                                Role::from(m["role"].as_str().unwrap_or("user")),
                                m["content"].as_str().unwrap_or(""),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut req = ChatRequest::new(b["model"].as_str().unwrap_or(""), messages);
            req.max_tokens = b["options"]["num_predict"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok());
            (Request::Chat(req), b["stream"] != Value::Bool(false))
        }
        Op::OllamaGenerate => {
            let b = body()?;
            let mut req = CompletionRequest::new(
                b["model"].as_str().unwrap_or(""),
                b["prompt"].as_str().unwrap_or(""),
            );
            req.max_tokens = b["options"]["num_predict"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok());
            (Request::Completion(req), b["stream"] != Value::Bool(false))
        }
        Op::TgiGenerate => {
            let b = body()?;
            let prompt = match &b["inputs"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let model = it
                .request
                .path()
                .split_once("/models/")
                .map_or("", |(_, m)| m);
            let mut req = CompletionRequest::new(model, prompt);
            req.max_tokens = b["parameters"]["max_new_tokens"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok());
            (Request::Completion(req), b["stream"] == Value::Bool(true))
        }
        Op::TeiEmbed => {
            let b = body()?;
            let inputs = match &b["inputs"] {
                Value::String(s) => vec![s.clone()],
                Value::Array(xs) => xs
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            (
                Request::Embeddings(EmbeddingRequest::new("tei", inputs)),
                false,
            )
        }
    })
}

async fn drive(
    provider: &dyn Provider,
    request: &Request,
    streamed: bool,
) -> infermux::Result<Response> {
    let ctx = RequestContext::new();
    if streamed {
        let mut stream = provider.stream(request, &ctx).await?;
        let mut acc = StreamAccumulator::new();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => acc.push(&ev),
                Err(e) if e.partial_text().is_none() => {
                    return Err(e.with_partial_text(acc.text().to_owned()));
                }
                Err(e) => return Err(e),
            }
        }
        if !acc.is_done() {
            return Err(
                Error::new(ErrorKind::Decode, "the stream ended without Done")
                    .with_partial_text(acc.text().to_owned()),
            );
        }
        let chat = acc.finish();
        if let Request::Completion(req) = request {
            let mut c = CompletionResponse::new(
                if chat.model.is_empty() {
                    req.model.clone()
                } else {
                    chat.model.clone()
                },
                chat.text(),
            );
            c.id = chat.id;
            c.finish_reason = chat.finish_reason;
            c.usage = chat.usage;
            return Ok(Response::Completion(c));
        }
        Ok(Response::Chat(chat))
    } else {
        provider.call(request, &ctx).await
    }
}

/// Drives an OpenAI operation outside the provider-neutral `Request` from the recorded
/// request body (uploads send a placeholder file: replay matches method and path only).
async fn drive_media(op: Op, base_url: &str, it: &Interaction) -> infermux::Result<Decoded> {
    let cfg = EndpointConfig::new("conformance", base_url)?;
    let p = OpenAi::new(cfg)?;
    let ctx = RequestContext::new();
    let body = it.request.json().unwrap_or(Value::Null);
    let s = |k: &str, default: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    let text = |t: String| Decoded {
        text: Some(t),
        ..Decoded::default()
    };
    match op {
        Op::Moderation => {
            let inputs: Vec<String> = match body.get("input") {
                Some(Value::String(t)) => vec![t.clone()],
                Some(Value::Array(xs)) => xs
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                    .collect(),
                _ => vec![String::new()],
            };
            let model = body.get("model").and_then(Value::as_str);
            let m = p.moderate(model, &inputs, &ctx).await?;
            let flagged: Vec<&str> = m
                .results
                .iter()
                .flat_map(|r| {
                    r.categories
                        .iter()
                        .filter(|(_, v)| **v)
                        .map(|(k, _)| k.as_str())
                })
                .collect();
            Ok(text(format!("flagged: [{}]", flagged.join(","))))
        }
        Op::Images => {
            let mut req = ImageRequest::new(s("model", "dall-e-2"), s("prompt", ""));
            req.n = body
                .get("n")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok());
            let g = p.generate_images(&req, &ctx).await?;
            if g.data
                .iter()
                .any(|i| i.url.is_none() && i.b64_json.is_none())
            {
                return Err(Error::new(
                    ErrorKind::Decode,
                    "an image has neither url nor data",
                ));
            }
            Ok(text(format!("{} images", g.data.len())))
        }
        Op::Speech => {
            let req = SpeechRequest::new(s("model", "tts-1"), s("input", ""), s("voice", "alloy"));
            let audio = p.speech(&req, &ctx).await?;
            Ok(text(format!("{} bytes of audio", audio.len())))
        }
        Op::Transcription => {
            let req = TranscriptionRequest::new("whisper-1", "audio.wav", b"RIFF".to_vec());
            Ok(text(p.transcribe(&req, &ctx).await?.text))
        }
        Op::FileUpload => {
            let f = p
                .upload_file("upload.jsonl", b"{}\n", "batch", &ctx)
                .await?;
            Ok(text(f.id))
        }
        Op::FileList => {
            let files = p.list_files(&ctx).await?;
            Ok(text(
                files
                    .iter()
                    .map(|f| f.id.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ))
        }
        _ => Err(Error::new(ErrorKind::Unsupported, "not a media operation")),
    }
}

async fn run_one(file: &str, index: usize, it: &Interaction) -> Record {
    let r = route(&it.request.method, it.request.host(), it.request.path());
    let status = it.response.status;
    let mut rec = Record {
        file: file.to_owned(),
        interaction: Some(index),
        provider: r.provider,
        operation: r.operation.clone(),
        status: Some(status),
        outcome: "unsupported",
        error_kind: None,
        decoded: Decoded::default(),
        pass: None,
        reason: None,
    };
    let (op, base_path) = match r.target {
        Ok(t) => t,
        Err(reason) => {
            rec.reason = Some(reason);
            return rec;
        }
    };
    let (request, streamed) = match core_request(op, it) {
        Ok(x) => x,
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            rec.reason = Some(e.to_string());
            return rec;
        }
        Err(e) => {
            rec.outcome = "error";
            rec.pass = Some(false);
            rec.reason = Some(format!("the recorded request could not be read: {e}"));
            return rec;
        }
    };
    if streamed {
        rec.operation.push_str("_stream");
    }
    let cassette = Cassette {
        interactions: vec![it.clone()],
    };
    let server = match ReplayServer::start(cassette).await {
        Ok(s) => s,
        Err(e) => {
            rec.outcome = "error";
            rec.pass = Some(false);
            rec.reason = Some(format!("replay server did not start: {e}"));
            return rec;
        }
    };
    let azure_api_version = r
        .operation
        .starts_with("azure_")
        .then(|| {
            split_uri(&it.request.uri)
                .2
                .split('&')
                .find_map(|kv| kv.strip_prefix("api-version="))
                .map(str::to_owned)
        })
        .flatten();
    let base_url = format!("{}{base_path}", server.url());
    let mut result = if op.is_media() {
        drive_media(op, &base_url, it).await
    } else {
        let query = split_uri(&it.request.uri).2;
        match provider(
            r.provider,
            op,
            &base_url,
            azure_api_version.as_deref(),
            query,
            it.request.path(),
        ) {
            Ok(p) => drive(p.as_ref(), &request, streamed)
                .await
                .map(|resp| decoded(&resp)),
            Err(e) => Err(e),
        }
    };
    let served = server.verify();
    let wire_body = it.response.body.to_bytes();
    let body = plain_body(&wire_body).unwrap_or(wire_body);
    let error_expected = status >= 400
        || if streamed {
            stream_has_error(&body)
        } else {
            json_has_error(&body)
        }
        || (op == Op::GeminiChat && gemini_blocked(&body));
    let (pass, reason) = match &mut result {
        Ok(d) => {
            rec.outcome = "ok";
            rec.decoded = std::mem::take(d);
            if error_expected {
                (
                    false,
                    Some("an error was recorded but infermux returned an answer".to_owned()),
                )
            } else {
                check_answer(op, streamed, &body, &rec.decoded)
            }
        }
        Err(e) => {
            rec.outcome = "error";
            rec.error_kind = Some(e.kind());
            if let Some(partial) = e.partial_text() {
                rec.decoded.text = Some(partial.to_owned());
            }
            if !error_expected {
                (
                    false,
                    Some(format!("the recorded answer was not decoded: {e}")),
                )
            } else if status >= 400 {
                let right = kinds_for_status(status);
                if right.contains(&e.kind()) {
                    (true, None)
                } else {
                    let names: Vec<&str> = right.iter().map(|k| k.as_str()).collect();
                    (
                        false,
                        Some(format!(
                            "HTTP {status} should be {} but is {}: {e}",
                            names.join(" or "),
                            e.kind()
                        )),
                    )
                }
            } else if matches!(
                e.kind(),
                ErrorKind::Decode | ErrorKind::Connect | ErrorKind::Timeout | ErrorKind::Config
            ) {
                (
                    false,
                    Some(format!(
                        "the error inside the stream was not decoded as the provider's error: {e}"
                    )),
                )
            } else {
                (true, None)
            }
        }
    };
    let (pass, reason) = match served {
        Err(why) if pass => (
            false,
            Some(format!("the request did not match the recording: {why}")),
        ),
        _ => (pass, reason),
    };
    rec.pass = Some(pass);
    rec.reason = reason;
    rec
}

/// Checks a decoded answer against an independent reading of the recorded body.
fn check_answer(op: Op, streamed: bool, body: &[u8], d: &Decoded) -> (bool, Option<String>) {
    for (name, args) in d.tool_calls.iter().flatten() {
        if let Err(e) = parse_arguments(args) {
            return (
                false,
                Some(format!("arguments of tool call {name} are not JSON: {e}")),
            );
        }
    }
    let Some((text, count)) = expected_answer(op, streamed, body) else {
        return (true, None);
    };
    if let Some(expected) = text {
        let got = d.text.clone().unwrap_or_default();
        if got != expected {
            return (
                false,
                Some(format!(
                    "decoded text differs from the recorded one ({} vs {} chars)",
                    got.chars().count(),
                    expected.chars().count()
                )),
            );
        }
        let calls = d.tool_calls.as_ref().map_or(0, Vec::len);
        if calls != count {
            return (
                false,
                Some(format!("{calls} tool calls decoded, {count} recorded")),
            );
        }
    } else if let Some((n, _)) = d.embeddings
        && n != count
    {
        return (
            false,
            Some(format!("{n} embeddings decoded, {count} recorded")),
        );
    }
    (true, None)
}

/// Every cassette under `dir`, sorted.
fn cassettes(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Runs the conformance corpus; fails when any interaction failed.
pub(crate) async fn run(args: ConformanceArgs) -> infermux::Result<()> {
    let files = cassettes(&args.corpus).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot read corpus {}: {e}", args.corpus.display()),
        )
    })?;
    let (mut passed, mut failed, mut unsupported) = (0usize, 0usize, 0usize);
    let mut unsupported_lines = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(&args.corpus)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        let records = match Cassette::load(&path) {
            Ok(c) => {
                let mut records = Vec::with_capacity(c.interactions.len());
                for (i, it) in c.interactions.iter().enumerate() {
                    records.push(run_one(&rel, i, it).await);
                }
                records
            }
            Err(e) => vec![Record {
                file: rel.clone(),
                interaction: None,
                provider: "unknown",
                operation: String::new(),
                status: None,
                outcome: "error",
                error_kind: None,
                decoded: Decoded::default(),
                pass: Some(false),
                reason: Some(format!("cassette could not be loaded: {e}")),
            }],
        };
        for rec in records {
            match rec.pass {
                Some(true) => passed += 1,
                Some(false) => failed += 1,
                None => {
                    unsupported += 1;
                    unsupported_lines.push(rec.line());
                }
            }
            if args.json {
                println!("{}", rec.to_json());
            } else if rec.pass.is_some() {
                println!("{}", rec.line());
            }
        }
    }
    if !args.json && !unsupported_lines.is_empty() {
        println!("\nunsupported:");
        for l in &unsupported_lines {
            println!("{l}");
        }
    }
    let summary = format!("{passed} passed, {failed} failed, {unsupported} unsupported");
    if args.json {
        eprintln!("{summary}");
    } else {
        println!("\n{summary}");
    }
    if failed > 0 {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!("{failed} interactions failed"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_table() {
        let r = route("POST", "api.openai.com", "/v1/chat/completions");
        assert_eq!(r.provider, "openai");
        assert_eq!(r.target, Ok((Op::Chat, "/v1".to_owned())));
        let r = route("POST", "api.groq.com", "/openai/v1/chat/completions");
        assert_eq!(r.target, Ok((Op::Chat, "/openai/v1".to_owned())));
        let r = route("GET", "api.openai.com", "/v1/models");
        assert_eq!(r.target, Ok((Op::Models, "/v1".to_owned())));
        let r = route("POST", "api.openai.com", "/v1/completions");
        assert_eq!(r.target, Ok((Op::Completion, "/v1".to_owned())));
        let r = route("POST", "api.openai.com", "/v1/threads/t1/runs");
        assert_eq!((r.provider, r.operation.as_str()), ("openai", "threads"));
        assert!(r.target.is_err());
        let r = route("POST", "api.openai.com", "/v1/responses");
        assert_eq!(r.target, Ok((Op::Responses, "/v1".to_owned())));
        let r = route(
            "POST",
            "contoso.openai.azure.com",
            "/openai/deployments/gpt4o/chat/completions",
        );
        assert_eq!(r.operation, "azure_chat");
        assert_eq!(
            r.target,
            Ok((Op::Chat, "/openai/deployments/gpt4o".to_owned()))
        );
        let r = route("POST", "api.openai.com", "/v1/audio/transcriptions");
        assert_eq!(r.target, Ok((Op::Transcription, "/v1".to_owned())));
        let r = route("POST", "api.openai.com", "/v1/images/edits");
        assert!(r.target.is_err());
        let r = route("POST", "api.anthropic.com", "/v1/messages");
        assert_eq!(r.target, Ok((Op::AnthropicChat, "/v1".to_owned())));
        let r = route("POST", "api.anthropic.com", "/v1/messages/count_tokens");
        assert!(r.target.is_err());
        let r = route("POST", "localhost:11434", "/v1/chat/completions");
        assert_eq!(r.provider, "openai-compat");
        let r = route("POST", "127.0.0.1:11434", "/api/chat");
        assert_eq!((r.provider, r.operation.as_str()), ("ollama", "chat"));
        let r = route("POST", "127.0.0.1:8000", "/v1/embeddings");
        assert_eq!(r.target, Ok((Op::Embeddings, "/v1".to_owned())));
        let r = route("POST", "router.huggingface.co", "/hf-inference/models/gpt2");
        assert_eq!(r.provider, "tgi");
    }

    #[test]
    fn error_kinds_for_statuses() {
        assert_eq!(kinds_for_status(404), &[ErrorKind::NotFound]);
        assert!(kinds_for_status(400).contains(&ErrorKind::InvalidRequest));
        assert!(kinds_for_status(503).contains(&ErrorKind::Server));
    }

    #[test]
    fn gzip_bodies_are_read_by_the_oracle() {
        use std::io::Write;
        let answer = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hi"}}]}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(answer).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            expected_answer(Op::Chat, false, &gz),
            Some((Some("Hi".to_owned()), 0))
        );
        assert_eq!(plain_body(b"plain").as_deref(), Some(&b"plain"[..]));
        assert_eq!(plain_body(&[0x1f, 0x8b, 0, 1]), None);
    }

    #[test]
    fn stream_errors_are_found() {
        let body = b"data: {\"choices\":[]}\n\ndata: {\"error\":{\"message\":\"x\"}}\n\n";
        assert!(stream_has_error(body));
        assert!(!stream_has_error(
            b"data: {\"choices\":[]}\n\ndata: [DONE]\n\n"
        ));
    }
}
