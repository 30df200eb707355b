//! The routing table: a recorded request's method, host and path to the provider and the
//! operation that replays it (documented in the CLI's README), or the reason no provider
//! offers it.

/// A provider operation the runner can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Chat,
    Completion,
    Embeddings,
    Models,
    /// Chat through OpenAI's Responses API.
    Responses,
    Moderation,
    Images,
    Speech,
    Transcription,
    FileUpload,
    FileList,
    /// Anthropic's Messages API (chat, plain or streamed).
    AnthropicChat,
    AnthropicModels,
    AnthropicCountTokens,
    /// Gemini `generateContent` / `streamGenerateContent`.
    GeminiChat,
    /// Gemini `batchEmbedContents`.
    GeminiEmbed,
    /// Gemini `embedContent` (`Gemini::embed_one`).
    GeminiEmbedOne,
    GeminiCountTokens,
    GeminiModels,
    OllamaChat,
    OllamaGenerate,
    /// Ollama `/api/embed`.
    OllamaEmbed,
    /// Ollama's legacy `/api/embeddings` (`Ollama::embeddings_legacy`).
    OllamaEmbeddingsLegacy,
    /// Ollama `/api/tags` (the model list).
    OllamaTags,
    /// TGI text generation through the HF Inference API (`…/models/<model>`).
    TgiInferenceApi,
    /// TGI's own `/generate` and `/generate_stream`.
    TgiGenerate,
    TgiInfo,
    TgiHealth,
    /// TEI feature extraction through the HF Inference API.
    TeiFeatureExtraction,
    /// TEI's own `/embed`.
    TeiEmbed,
    TeiEmbedSparse,
    TeiRerank,
    TeiInfo,
}

impl Op {
    /// Operations driven through a provider's inherent methods rather than the
    /// provider-neutral `Request` (the runner's provider wrapper does not see them).
    pub(crate) fn is_inherent(self) -> bool {
        matches!(
            self,
            Op::Moderation
                | Op::Images
                | Op::Speech
                | Op::Transcription
                | Op::FileUpload
                | Op::FileList
                | Op::AnthropicCountTokens
                | Op::GeminiEmbedOne
                | Op::GeminiCountTokens
                | Op::OllamaEmbeddingsLegacy
                | Op::TgiInfo
                | Op::TgiHealth
                | Op::TeiEmbedSparse
                | Op::TeiInfo
        )
    }
}

/// Where an interaction goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) provider: &'static str,
    pub(crate) operation: String,
    /// The operation and the base path (the recorded path minus the operation's suffix), or
    /// why no provider offers the operation.
    pub(crate) target: Result<(Op, String), String>,
}

fn to(provider: &'static str, operation: &str, op: Op, base: impl Into<String>) -> Route {
    Route {
        provider,
        operation: operation.to_owned(),
        target: Ok((op, base.into())),
    }
}

fn unsupported(provider: &'static str, operation: &str, reason: &str) -> Route {
    Route {
        provider,
        operation: operation.to_owned(),
        target: Err(reason.to_owned()),
    }
}

/// The OpenAI-protocol operation a path ends with, and the base path before it.
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
    openai_op(method, path).map(|(op, name, base)| to(provider, name, op, base))
}

/// The OpenAI operations outside the provider-neutral `Request`.
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

const ASSISTANTS: &str = "the Assistants API, deprecated by OpenAI in favour of the Responses API, is offered by no provider";
const NO_OPENAI_OP: &str = "an OpenAI operation no provider offers";

/// The routing table. `response_body` tells TEI's `/info` (it has `max_client_batch_size`)
/// from TGI's on hosts that are neither.
pub(crate) fn route(method: &str, host: &str, path: &str, response_body: &[u8]) -> Route {
    let host = host.to_ascii_lowercase();
    let hostname = host.split(':').next().unwrap_or("");
    let port = host.split(':').nth(1);
    let get = method.eq_ignore_ascii_case("GET");
    let post = method.eq_ignore_ascii_case("POST");
    match hostname {
        "api.openai.com" if post && path == "/v1/responses" => {
            to("openai", "responses", Op::Responses, "/v1")
        }
        "api.openai.com" => {
            if let Some((op, name)) = openai_media_op(method, path) {
                return to("openai", name, op, "/v1");
            }
            openai_route("openai", method, path).unwrap_or_else(|| {
                let op = segment_after(path, "/v1");
                let reason = match op {
                    "assistants" | "threads" => ASSISTANTS,
                    _ => NO_OPENAI_OP,
                };
                unsupported("openai", op, reason)
            })
        }
        h if h.ends_with(".openai.azure.com") => path
            .starts_with("/openai/deployments/")
            .then(|| openai_route("openai", method, path))
            .flatten()
            .map(|mut r| {
                r.operation = format!("azure_{}", r.operation);
                r
            })
            .unwrap_or_else(|| unsupported("openai", "azure", NO_OPENAI_OP)),
        "api.groq.com" => openai_route("groq", method, path).unwrap_or_else(|| {
            unsupported(
                "groq",
                segment_after(path, "/openai/v1"),
                "a Groq operation no provider offers",
            )
        }),
        "api.anthropic.com" => match path {
            "/v1/messages" if post => to("anthropic", "messages", Op::AnthropicChat, "/v1"),
            "/v1/messages/count_tokens" if post => {
                to("anthropic", "count_tokens", Op::AnthropicCountTokens, "/v1")
            }
            "/v1/models" if get => to("anthropic", "models", Op::AnthropicModels, "/v1"),
            "/v1/complete" => unsupported(
                "anthropic",
                "complete",
                "the legacy Text Completions API (retired by Anthropic, superseded by Messages) is offered by no provider",
            ),
            _ => unsupported(
                "anthropic",
                segment_after(path, "/v1"),
                "an Anthropic operation no provider offers",
            ),
        },
        "generativelanguage.googleapis.com" => {
            let version = path
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or("v1beta");
            if let Some(rest) = path.strip_prefix(&format!("/{version}/openai")) {
                // Gemini's OpenAI-compatible endpoint
                return openai_route("openai-compat", method, path).unwrap_or_else(|| {
                    unsupported(
                        "openai-compat",
                        segment_after(rest, ""),
                        "an operation of Gemini's OpenAI-compatible endpoint no provider offers",
                    )
                });
            }
            let base = format!("/{version}");
            if get && path == format!("{base}/models") {
                return to("gemini", "models", Op::GeminiModels, base);
            }
            let op = path.rsplit(':').next().unwrap_or("");
            match op {
                "generateContent" | "streamGenerateContent" => {
                    to("gemini", op, Op::GeminiChat, base)
                }
                "batchEmbedContents" => to("gemini", op, Op::GeminiEmbed, base),
                "embedContent" => to("gemini", op, Op::GeminiEmbedOne, base),
                "countTokens" => to("gemini", op, Op::GeminiCountTokens, base),
                _ => unsupported("gemini", op, "a Gemini method no provider offers"),
            }
        }
        "huggingface.co" => unsupported(
            "hf-hub",
            segment_after(path, "/api"),
            "Hugging Face Hub metadata, not an inference operation: no provider offers it",
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
                to(
                    "tei",
                    "feature-extraction",
                    Op::TeiFeatureExtraction,
                    prefix,
                )
            } else if let Some((prefix, _)) = path.split_once("/models/") {
                to("tgi", "generate", Op::TgiInferenceApi, prefix)
            } else {
                unsupported(
                    "tgi",
                    segment_after(path, ""),
                    "an Inference API route no provider offers",
                )
            }
        }
        _ if port == Some("11434") || hostname == "ollama.com" => {
            if let Some(op) = path.strip_prefix("/api/") {
                let target = match op {
                    "chat" if post => Some(Op::OllamaChat),
                    "generate" if post => Some(Op::OllamaGenerate),
                    "embed" if post => Some(Op::OllamaEmbed),
                    "embeddings" if post => Some(Op::OllamaEmbeddingsLegacy),
                    "tags" if get => Some(Op::OllamaTags),
                    _ => None,
                };
                match target {
                    Some(t) => to("ollama", op, t, ""),
                    // `/api/show`, `/api/pull` are Ollama methods too, but their answers
                    // have no provider-neutral reading yet
                    None => unsupported(
                        "ollama",
                        segment_after(path, "/api"),
                        "an Ollama management route the runner does not replay",
                    ),
                }
            } else {
                // Ollama's OpenAI-compatible `/v1` mode
                openai_route("openai-compat", method, path).unwrap_or_else(|| {
                    unsupported(
                        "ollama",
                        segment_after(path, "/v1"),
                        "an operation of Ollama's OpenAI-compatible mode no provider offers",
                    )
                })
            }
        }
        _ => {
            if let Some(r) = openai_route("openai-compat", method, path) {
                return r;
            }
            let (base, last) = path.rsplit_once('/').unwrap_or(("", path));
            let tei_info = String::from_utf8_lossy(response_body).contains("max_client_batch_size");
            match last {
                "generate" | "generate_stream" if post => to("tgi", last, Op::TgiGenerate, base),
                "info" if get && tei_info => to("tei", last, Op::TeiInfo, base),
                "info" if get => to("tgi", last, Op::TgiInfo, base),
                "health" if get => to("tgi", last, Op::TgiHealth, base),
                "embed" if post => to("tei", last, Op::TeiEmbed, base),
                "embed_sparse" if post => to("tei", last, Op::TeiEmbedSparse, base),
                "rerank" if post => to("tei", last, Op::TeiRerank, base),
                _ => unsupported("unknown", last, "no provider serves this host and path"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(method: &str, host: &str, path: &str) -> Result<(Op, String), String> {
        route(method, host, path, b"").target
    }

    #[test]
    fn every_implemented_route_is_routed() {
        let ok = |m: &str, h: &str, p: &str, op: Op, base: &str| {
            assert_eq!(target(m, h, p), Ok((op, base.to_owned())), "{m} {h}{p}");
        };
        ok(
            "POST",
            "api.openai.com",
            "/v1/chat/completions",
            Op::Chat,
            "/v1",
        );
        ok(
            "POST",
            "api.groq.com",
            "/openai/v1/chat/completions",
            Op::Chat,
            "/openai/v1",
        );
        ok("GET", "api.openai.com", "/v1/models", Op::Models, "/v1");
        ok(
            "POST",
            "api.openai.com",
            "/v1/responses",
            Op::Responses,
            "/v1",
        );
        ok(
            "POST",
            "api.openai.com",
            "/v1/audio/transcriptions",
            Op::Transcription,
            "/v1",
        );
        ok(
            "POST",
            "contoso.openai.azure.com",
            "/openai/deployments/gpt4o/chat/completions",
            Op::Chat,
            "/openai/deployments/gpt4o",
        );
        ok(
            "POST",
            "api.anthropic.com",
            "/v1/messages",
            Op::AnthropicChat,
            "/v1",
        );
        ok(
            "GET",
            "api.anthropic.com",
            "/v1/models",
            Op::AnthropicModels,
            "/v1",
        );
        ok(
            "POST",
            "api.anthropic.com",
            "/v1/messages/count_tokens",
            Op::AnthropicCountTokens,
            "/v1",
        );
        ok(
            "GET",
            "generativelanguage.googleapis.com",
            "/v1beta/models",
            Op::GeminiModels,
            "/v1beta",
        );
        ok(
            "POST",
            "generativelanguage.googleapis.com",
            "/v1beta/openai/chat/completions",
            Op::Chat,
            "/v1beta/openai",
        );
        assert_eq!(
            route(
                "POST",
                "generativelanguage.googleapis.com",
                "/v1beta/openai/chat/completions",
                b""
            )
            .provider,
            "openai-compat"
        );
        ok("POST", "127.0.0.1:11434", "/api/embed", Op::OllamaEmbed, "");
        ok(
            "POST",
            "127.0.0.1:11434",
            "/api/embeddings",
            Op::OllamaEmbeddingsLegacy,
            "",
        );
        ok("GET", "127.0.0.1:11434", "/api/tags", Op::OllamaTags, "");
        ok(
            "POST",
            "localhost:11434",
            "/v1/chat/completions",
            Op::Chat,
            "/v1",
        );
        ok("POST", "127.0.0.1:8080", "/generate", Op::TgiGenerate, "");
        ok(
            "POST",
            "127.0.0.1:8080",
            "/generate_stream",
            Op::TgiGenerate,
            "",
        );
        ok("GET", "127.0.0.1:8080", "/info", Op::TgiInfo, "");
        ok("GET", "127.0.0.1:8080", "/health", Op::TgiHealth, "");
        ok("POST", "tei.local", "/embed", Op::TeiEmbed, "");
        ok("POST", "tei.local", "/embed_sparse", Op::TeiEmbedSparse, "");
        ok("POST", "tei.local", "/rerank", Op::TeiRerank, "");
        assert_eq!(
            route(
                "GET",
                "tei.local",
                "/info",
                br#"{"max_client_batch_size":32}"#
            )
            .target,
            Ok((Op::TeiInfo, String::new()))
        );
        ok(
            "POST",
            "router.huggingface.co",
            "/hf-inference/models/gpt2",
            Op::TgiInferenceApi,
            "/hf-inference",
        );
        ok(
            "POST",
            "127.0.0.1:8000",
            "/v1/embeddings",
            Op::Embeddings,
            "/v1",
        );
    }

    #[test]
    fn unsupported_only_for_what_no_provider_offers() {
        for (m, h, p) in [
            ("POST", "api.openai.com", "/v1/threads/t1/runs"),
            ("POST", "api.openai.com", "/v1/images/edits"),
            ("POST", "api.anthropic.com", "/v1/complete"),
            ("GET", "huggingface.co", "/api/models/gpt2"),
            ("GET", "example.com", "/favicon.ico"),
        ] {
            let r = route(m, h, p, b"");
            assert!(r.target.is_err(), "{m} {h}{p}");
            assert!(!r.target.unwrap_err().is_empty());
        }
    }
}
