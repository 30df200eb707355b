//! Mapping a failed response (status, headers, body) or a transport failure to
//! [`infermux_core::Error`].

use std::time::Duration;

use http::HeaderMap;
use infermux_core::{EndpointId, Error, ErrorKind};
use serde_json::Value;

use crate::headers::{capped_secs, rate_limits, retry_after, should_retry};

const MAX_MESSAGE: usize = 300;

fn truncate(s: &str) -> String {
    let s = s.trim();
    if s.len() <= MAX_MESSAGE {
        return s.to_owned();
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The error an `error` event of a stream carries when its data is not JSON (a proxy's text,
/// an HTML page): the server's error with its words ([`ErrorKind::Server`], retryable before
/// any output), with `partial_text` when the answer had begun — not a decode failure of ours.
///
/// ```
/// use infermux_core::ErrorKind;
/// let e = infermux_http::error_event("upstream connect error or disconnect/reset", "Hel");
/// assert_eq!(e.kind(), ErrorKind::Server);
/// assert!(e.message().contains("upstream connect error"));
/// assert_eq!(e.partial_text(), Some("Hel"));
/// ```
pub fn error_event(data: &str, partial_text: &str) -> Error {
    let (message, _) = error_body_message(data.as_bytes());
    let e =
        Error::new(ErrorKind::Server, format!("error event: {message}")).with_reached_server(true);
    if partial_text.is_empty() {
        e
    } else {
        e.with_partial_text(partial_text.to_owned())
    }
}

/// The message and the provider's error code/type found in an error body.
///
/// Understands the shapes real providers send: `{"error": {"message", "type", "code"}}`
/// (OpenAI, Anthropic, Groq), `{"error": "text"}` (TGI, Ollama), `{"message": ...}`,
/// `{"detail": ...}` (FastAPI), `[{"error": {...}}]` (Gemini arrays), HTML pages (their title)
/// and plain text.
pub fn error_body_message(body: &[u8]) -> (String, Option<String>) {
    if body.iter().all(u8::is_ascii_whitespace) {
        return ("empty error body".to_owned(), None);
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let v = match &v {
            Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
            _ => v,
        };
        let err = v.get("error").unwrap_or(&v);
        let message = match err {
            Value::String(s) => Some(s.clone()),
            Value::Object(_) => err
                .get("message")
                .or_else(|| err.get("detail"))
                .or_else(|| err.get("error"))
                .map(|m| match m {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }),
            _ => None,
        };
        let fields = || {
            ["code", "type", "status", "error_type"]
                .into_iter()
                .filter_map(|k| err.get(k).or_else(|| v.get(k)))
        };
        // a textual code (`insufficient_quota`, `RESOURCE_EXHAUSTED`) says more than a number
        let code = fields()
            .find_map(|c| match c {
                Value::String(s) if !s.is_empty() && s != "error" => Some(s.clone()),
                _ => None,
            })
            .or_else(|| fields().find_map(|c| c.as_u64().map(|n| n.to_string())));
        return (truncate(&message.unwrap_or_else(|| v.to_string())), code);
    }
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    if lower.contains("<html") || lower.contains("<!doctype") {
        let title = lower
            .find("<title>")
            .and_then(|start| {
                let rest = text.get(start + 7..)?;
                let end = rest.to_ascii_lowercase().find("</title>")?;
                rest.get(..end)
            })
            .map(str::trim)
            .filter(|t| !t.is_empty());
        return (
            match title {
                Some(t) => format!("HTML error page: {}", truncate(t)),
                None => "HTML error page".to_owned(),
            },
            None,
        );
    }
    (truncate(text.lines().next().unwrap_or("")), None)
}

/// The kind for an HTTP error status, refined by the body's message and code.
pub fn kind_for_status(status: u16, message: &str, code: Option<&str>) -> ErrorKind {
    let code = code.unwrap_or("");
    let lower_msg = message.to_ascii_lowercase();
    let mentions = |needles: &[&str]| {
        needles
            .iter()
            .any(|n| code.eq_ignore_ascii_case(n) || lower_msg.contains(n))
    };
    // 529: Anthropic's overload; 498: Groq's flex tier out of capacity ("retry later")
    if code == "overloaded_error" || status == 529 || status == 498 {
        return ErrorKind::Overloaded;
    }
    // a key out of money: OpenAI's `insufficient_quota`, Anthropic's 402 `billing_error` and
    // its 400s "Your credit balance is too low…" / "You have reached your specified API usage
    // limits…" (the key is spent: removed, and the call goes to another key)
    if status == 402
        || mentions(&[
            "insufficient_quota",
            "billing_hard_limit_reached",
            "billing_error",
            "credit balance is too low",
            "reached your specified api usage limits",
        ])
    {
        return ErrorKind::QuotaExceeded;
    }
    // OpenAI's 403 "Project … does not have access to model …": that model, not the key (an
    // `Auth` would remove the key from every group)
    if code.eq_ignore_ascii_case("model_not_found") {
        return ErrorKind::NotFound;
    }
    // 501 Not Implemented, and llama.cpp's `not_supported_error` (e.g. embeddings on a server
    // started without them): asking again will not help
    if status == 501 || code.eq_ignore_ascii_case("not_supported_error") {
        return ErrorKind::Unsupported;
    }
    if mentions(&[
        "context_length_exceeded",
        "maximum context length",
        "context window",
        "prompt is too long",
        "exceeds the context",
        // llama.cpp's server: "the request exceeds the available context size, try
        // increasing it" (typed `exceed_context_size_error` only since September 2025)
        "exceeds the available context size",
        "exceed_context_size_error",
        // llama.cpp's server, for one input longer than its physical batch (`--ubatch-size`,
        // 512 by default: an embedding input that cannot be split), a 500 `server_error`:
        // "input (596 tokens) is too large to process. increase the physical batch size";
        // and "input is larger than the max context size. skipping"
        "is too large to process. increase the physical batch size",
        "is larger than the max context size",
        // Anthropic: "input length and `max_tokens` exceed context limit: 197000 + 8192 >
        // 200000"; Gemini: "The input token count (1196265) exceeds the maximum number of
        // tokens allowed (1048575)"
        "exceed context limit",
        "exceeds the maximum number of tokens",
        // vLLM's engine: "The decoder prompt (length 16476) is longer than the maximum model
        // length of 16384", "Prompt length of 5016 is longer than the maximum model length"
        "than the maximum model length",
    ]) {
        return ErrorKind::ContextLength;
    }
    // OpenAI's codes: `content_policy_violation`, `image_content_policy_violation`,
    // `bio_policy`, and `invalid_prompt` when it says the prompt "was flagged as potentially
    // violating our usage policy" (other invalid prompts stay invalid requests)
    if mentions(&["content_filter", "content_policy_violation"])
        || code.to_ascii_lowercase().contains("content_policy")
        || code.eq_ignore_ascii_case("bio_policy")
        || (code.eq_ignore_ascii_case("invalid_prompt")
            && (lower_msg.contains("usage polic") || lower_msg.contains("flagged")))
    {
        return ErrorKind::ContentFilter;
    }
    // a 5xx saying the model is overloaded (Gemini's 503 "The model is overloaded. Please try
    // again later.", status UNAVAILABLE) is a capacity answer: retried with the throttled
    // backoff, not the transient one
    if (500..=599).contains(&status) && status != 504 && lower_msg.contains("overloaded") {
        return ErrorKind::Overloaded;
    }
    // so is a 429 saying so (TGI's `{"error":"Model is overloaded","error_type":"overloaded"}`):
    // the server's capacity, not the key's limit — not retried at once on another key of the
    // same saturated server
    if status == 429
        && (lower_msg.contains("overloaded") || code.eq_ignore_ascii_case("overloaded"))
    {
        return ErrorKind::Overloaded;
    }
    // OpenAI's 429 "Request too large for gpt-4o in organization … on tokens per min (TPM):
    // Limit 30000, Requested 36278. The input or output tokens must be reduced …": the request
    // exceeds the key's whole limit, so no wait helps and the key is not spent (a batch of
    // them is split)
    if status == 429 && lower_msg.starts_with("request too large for") {
        return ErrorKind::InvalidRequest;
    }
    match status {
        401 | 403 => ErrorKind::Auth,
        404 => ErrorKind::NotFound,
        408 => ErrorKind::Timeout,
        429 => ErrorKind::RateLimited,
        409 | 425 => ErrorKind::Server,
        400..=499 => ErrorKind::InvalidRequest,
        504 => ErrorKind::Timeout,
        _ => ErrorKind::Server,
    }
}

/// The error for a non-2xx response: kind from status and body, message from the body,
/// `Retry-After`, `x-should-retry` and rate-limit headers attached. Never contains the URL
/// (and, sent through [`crate::HttpRequest::send`], never the endpoint's key: the transport
/// scrubs it from the body first).
///
/// The Hugging Face Inference API's 503 `{"error": "… is currently loading",
/// "estimated_time": 20.0}` (TGI, TEI and any HF-hosted model) is `Overloaded`, with
/// `estimated_time` as the retry-after, provider code `model_loading` and a message saying to
/// retry then or to send `x-wait-for-model: true`.
///
/// ```
/// use http::HeaderMap;
/// use infermux_core::ErrorKind;
/// use infermux_http::error_from_response;
/// let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
/// let err = error_from_response(529, &HeaderMap::new(), body);
/// assert_eq!(err.kind(), ErrorKind::Overloaded);
/// assert_eq!(err.status(), Some(529));
/// assert_eq!(err.message(), "Overloaded");
/// ```
pub fn error_from_response(status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
    if let Some(e) = model_loading(status, body) {
        return e;
    }
    let (message, code) = error_body_message(body);
    let kind = kind_for_status(status, &message, code.as_deref());
    let mut err = Error::new(kind, message)
        .with_status(status)
        .with_reached_server(true);
    if let Some(code) = code {
        err = err.with_provider_code(code);
    }
    if let Some(after) = retry_after(headers) {
        err = err.with_retry_after(after);
    } else if kind == ErrorKind::RateLimited
        && let Some(after) = retry_hint(err.message())
    {
        err = err.with_retry_after(after);
    }
    if let Some(v) = should_retry(headers) {
        err = err.with_should_retry(v);
    }
    if kind == ErrorKind::QuotaExceeded {
        err = err.with_should_retry(false);
    }
    let info = rate_limits(headers);
    if !info.is_empty() {
        err = err.with_rate_limit(info);
    }
    if kind == ErrorKind::RateLimited && names_its_model(err.message()) {
        err = err.with_model_scope(true);
    }
    err
}

/// The wait a 429's message names when no header does: OpenAI's and Groq's "Please try again
/// in 644ms" / "in 18.642s" / "in 1m2.5s" (Go-style durations), Gemini's "Please retry in
/// 25.46s". Read up to its first word that is not a duration; `None` when there is none.
pub fn retry_hint(message: &str) -> Option<Duration> {
    let lower = message.to_ascii_lowercase();
    let at = ["try again in ", "retry in "]
        .iter()
        .find_map(|p| lower.find(p).map(|i| i + p.len()))?;
    let mut rest = lower.get(at..)?;
    let mut secs = 0.0f64;
    let mut any = false;
    loop {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            break;
        }
        let Ok(value) = rest[..n].parse::<f64>() else {
            break;
        };
        let after = &rest[n..];
        let (unit, len) = if after.starts_with("ms") {
            (0.001, 2)
        } else if after.starts_with('s') {
            (1.0, 1)
        } else if after.starts_with('m') {
            (60.0, 1)
        } else if after.starts_with('h') {
            (3600.0, 1)
        } else {
            break;
        };
        secs += value * unit;
        any = true;
        rest = &after[len..];
    }
    any.then(|| capped_secs(secs)).flatten()
}

/// Whether a 429's message names the model whose limit it hit: OpenAI's "Rate limit reached
/// for gpt-4o in organization org-… on tokens per min (TPM): …" and Groq's "Rate limit
/// reached for model `llama-3.3-70b-versatile` in organization `org_…` …" (their limits are
/// per model: the key's other models are not held back).
fn names_its_model(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    let Some(named) = lower
        .strip_prefix("rate limit reached for ")
        .and_then(|rest| rest.split_once(" in organization "))
        .map(|(named, _)| named.trim_start_matches("model ").trim_matches('`'))
    else {
        return false;
    };
    // a limit shared by models is named as such ("default-global-with-image-limits",
    // "10KTPM-200RPM"): the key's, not one model's
    !named.is_empty()
        && !named.starts_with("default")
        && !named.contains("tpm")
        && !named.contains("rpm")
        && !named.contains(' ')
}

/// The HF Inference API's "model is loading" 503, if that is what `body` says.
fn model_loading(status: u16, body: &[u8]) -> Option<Error> {
    if status != 503 {
        return None;
    }
    let v: Value = serde_json::from_slice(body).ok()?;
    let secs = v.get("estimated_time").and_then(Value::as_f64)?;
    let msg = v
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("model is loading");
    let mut e = Error::new(
        ErrorKind::Overloaded,
        format!(
            "{} (estimated {secs:.0}s): retry after that, or send `x-wait-for-model: true` to wait",
            truncate(msg)
        ),
    )
    .with_status(status)
    .with_reached_server(true)
    .with_provider_code("model_loading");
    if let Some(after) = capped_secs(secs) {
        e = e.with_retry_after(after);
    }
    Some(e)
}

/// The innermost cause of a transport failure, in a few words: an I/O error by its kind
/// (`connection refused`, `connection reset`), hyper's `dns error` kept in front of the
/// resolver's own words; the chain itself stays on the error as its source.
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut dns = false;
    let mut io_kind = None;
    let mut last = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        dns |= text == "dns error";
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        last = text;
        cur = c.source();
    }
    let cause = match io_kind {
        Some(
            k @ (std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::NotConnected
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::AddrNotAvailable
            | std::io::ErrorKind::HostUnreachable
            | std::io::ErrorKind::NetworkUnreachable),
        ) => k.to_string(),
        _ => last,
    };
    if dns && !cause.starts_with("dns error") {
        format!("dns error: {cause}")
    } else {
        cause
    }
}

/// `host:port` of `url` (never its path or query), for messages.
pub(crate) fn address_of(url: &url::Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => String::new(),
    }
}

/// The error for a reqwest failure sending a request to `url` of endpoint `endpoint`: a connect
/// failure says "connect to {endpoint} ({host:port}): {root cause}", others "request to … failed:
/// {root cause}". The URL is stripped from the source (it may carry a query).
pub(crate) fn send_error(e: reqwest::Error, endpoint: &EndpointId, url: &url::Url) -> Error {
    let cause = root_cause(&e);
    let addr = address_of(url);
    let message = if e.is_connect() {
        format!("connect to {endpoint} ({addr}): {cause}")
    } else if e.is_timeout() {
        format!("request to {endpoint} ({addr}) timed out: {cause}")
    } else {
        format!("request to {endpoint} ({addr}) failed: {cause}")
    };
    let kind = from_transport_kind(&e);
    let reached = !(e.is_connect() || e.is_builder());
    Error::new(kind, message)
        .with_reached_server(reached)
        .with_source(e.without_url())
}

fn from_transport_kind(e: &reqwest::Error) -> ErrorKind {
    if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() {
        ErrorKind::Connect
    } else if e.is_decode() {
        ErrorKind::Decode
    } else if e.is_builder() {
        ErrorKind::Config
    } else {
        ErrorKind::Connect
    }
}

/// The error for a reqwest failure, with the URL stripped (it may carry a query).
pub(crate) fn from_transport(e: reqwest::Error, phase: &'static str) -> Error {
    let kind = from_transport_kind(&e);
    let reached = !(e.is_connect() || e.is_builder());
    Error::new(kind, phase)
        .with_reached_server(reached)
        .with_source(e.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(status: u16, body: &str) -> ErrorKind {
        error_from_response(status, &HeaderMap::new(), body.as_bytes()).kind()
    }

    /// Real shapes read right: a key out of credit is spent (Anthropic's 402 `billing_error`
    /// and its 400 "credit balance is too low"), a model the project may not use is not the
    /// key's failure (OpenAI's 403 `model_not_found`), TGI's 429 "Model is overloaded" is the
    /// server's capacity, vLLM's engine wording is a context length, OpenAI's policy codes are
    /// the content filter.
    #[test]
    fn billing_model_access_overload_context_and_policy_errors() {
        let cases = [
            (
                402,
                r#"{"type":"error","error":{"type":"billing_error","message":"Your credit balance is too low to access the Anthropic API."}}"#,
                ErrorKind::QuotaExceeded,
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}"#,
                ErrorKind::QuotaExceeded,
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"You have reached your specified API usage limits. You will regain access on 2026-01-01 at 00:00 UTC."}}"#,
                ErrorKind::QuotaExceeded,
            ),
            (
                403,
                r#"{"error":{"message":"Project `proj_abc` does not have access to model `gpt-4o-mini`","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#,
                ErrorKind::NotFound,
            ),
            (
                429,
                r#"{"error":"Model is overloaded","error_type":"overloaded"}"#,
                ErrorKind::Overloaded,
            ),
            (
                429,
                r#"{"error":"Rate limit reached. You reached free usage limit (reset hourly)."}"#,
                ErrorKind::RateLimited,
            ),
            (
                400,
                r#"{"object":"error","message":"The decoder prompt (length 16476) is longer than the maximum model length of 16384. Make sure that `max_model_len` is no smaller than the number of text tokens.","type":"BadRequestError","code":400}"#,
                ErrorKind::ContextLength,
            ),
            (
                400,
                r#"{"error":{"message":"Your request was rejected by the safety system.","type":"invalid_request_error","code":"image_content_policy_violation"}}"#,
                ErrorKind::ContentFilter,
            ),
            (
                400,
                r#"{"error":{"message":"Invalid prompt: your prompt was flagged as potentially violating our usage policy.","type":"invalid_request_error","code":"invalid_prompt"}}"#,
                ErrorKind::ContentFilter,
            ),
            (
                400,
                r#"{"error":{"message":"Invalid prompt: the prompt is empty.","type":"invalid_request_error","code":"invalid_prompt"}}"#,
                ErrorKind::InvalidRequest,
            ),
            // still: a plain 401, a 404 model_not_found
            (
                401,
                r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#,
                ErrorKind::Auth,
            ),
            (
                404,
                r#"{"error":{"message":"The model `x` does not exist","type":"invalid_request_error","code":"model_not_found"}}"#,
                ErrorKind::NotFound,
            ),
        ];
        for (status, body, want) in cases {
            assert_eq!(kind(status, body), want, "{status} {body}");
        }
        let spent = error_from_response(402, &HeaderMap::new(), cases[0].1.as_bytes());
        assert!(!spent.is_retryable(), "a spent key is not retried as it is");
    }

    /// OpenAI's and Groq's 429s name the model whose limit was hit: the error is model-scoped
    /// (a pool holds back that model on the key, not the key); one that does not name it, or
    /// another kind, is not. "Request too large" for the whole limit is no rate limit at all.
    #[test]
    fn a_429_naming_its_model_is_model_scoped_and_one_too_large_for_the_limit_is_invalid() {
        let scoped = [
            r#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-uOtiSEwvUnroadaOnJJquBEC on tokens per min (TPM): Limit 30000, Used 29937, Requested 385. Please try again in 644ms. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
            r#"{"error":{"message":"Rate limit reached for model `llama-3.3-70b-versatile` in organization `org_01abc` service tier `on_demand` on tokens per minute (TPM): Limit 12000, Used 11876, Requested 520. Please try again in 1.98s.","type":"tokens","code":"rate_limit_exceeded"}}"#,
        ];
        for body in scoped {
            let e = error_from_response(429, &HeaderMap::new(), body.as_bytes());
            assert_eq!(e.kind(), ErrorKind::RateLimited);
            assert!(e.is_model_scoped(), "{body}");
        }
        for (status, body) in [
            // limits shared by models, named as such (aider #236, knowledge_gpt #3)
            (
                429,
                r#"{"error":{"message":"Rate limit reached for default-global-with-image-limits in organization org-x on requests per min. Limit: 3 / min.","type":"requests"}}"#,
            ),
            (
                429,
                r#"{"error":{"message":"Rate limit reached for 10KTPM-200RPM in organization org-x on tokens per min. Limit: 10000 / min.","type":"tokens"}}"#,
            ),
            (
                429,
                r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#,
            ),
            (
                429,
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization of 50,000 input tokens per minute."}}"#,
            ),
            (
                400,
                r#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-x","type":"x"}}"#,
            ),
        ] {
            let e = error_from_response(status, &HeaderMap::new(), body.as_bytes());
            assert!(!e.is_model_scoped(), "{body}");
        }
        // the wait the message names is the retry-after when no header says one
        let e = error_from_response(429, &HeaderMap::new(), scoped[0].as_bytes());
        assert_eq!(e.retry_after(), Some(Duration::from_millis(644)));
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "3".parse().unwrap());
        let e = error_from_response(429, &headers, scoped[0].as_bytes());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        let too_large = r#"{"error":{"message":"Request too large for gpt-4o in organization org-2itOgSdqw0DhUYp0QyLhttLL on tokens per min (TPM): Limit 30000, Requested 36278. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
        let e = error_from_response(429, &HeaderMap::new(), too_large.as_bytes());
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert!(!e.is_model_scoped());
    }

    /// "Please try again in …" as OpenAI, Groq and Gemini write it; nothing from words that
    /// are no duration.
    #[test]
    fn the_wait_a_message_names_is_read() {
        for (msg, want) in [
            (
                "Please try again in 644ms. Visit https://platform.openai.com",
                Some(644),
            ),
            ("Please try again in 18.642s. Visit", Some(18_642)),
            ("Please try again in 1m2.5s.", Some(62_500)),
            ("Please try again in 2h.", Some(7_200_000)),
            ("Please retry in 25.465784708s.", Some(25_465)),
            ("Please try again in 6ms", Some(6)),
            ("Please retry in a few minutes.", None),
            ("Rate limit reached", None),
            ("try again in .s", None),
        ] {
            assert_eq!(retry_hint(msg).map(|d| d.as_millis() as u64), want, "{msg}");
        }
        // a huge one is capped, never a panic
        assert!(retry_hint("try again in 99999999999999999999h").is_some());
    }

    #[test]
    fn statuses_and_bodies() {
        assert_eq!(
            kind(
                401,
                r#"{"error":{"message":"bad key","type":"invalid_request_error"}}"#
            ),
            ErrorKind::Auth
        );
        assert_eq!(
            kind(
                429,
                r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#
            ),
            ErrorKind::QuotaExceeded
        );
        assert_eq!(
            kind(
                429,
                r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#
            ),
            ErrorKind::RateLimited
        );
        assert_eq!(
            kind(
                400,
                r#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#
            ),
            ErrorKind::ContextLength
        );
        assert_eq!(
            kind(
                422,
                "Input validation error: `inputs` must have less than 1024 tokens"
            ),
            ErrorKind::InvalidRequest
        );
        assert_eq!(
            kind(
                503,
                "<html><head><title>503 Service Unavailable</title></head></html>"
            ),
            ErrorKind::Server
        );
        assert_eq!(kind(504, ""), ErrorKind::Timeout);
        // Anthropic's and Gemini's ways of saying the context is too small
        assert_eq!(
            kind(
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"input length and `max_tokens` exceed context limit: 197000 + 8192 > 200000, decrease input length or `max_tokens` and try again"}}"#
            ),
            ErrorKind::ContextLength
        );
        assert_eq!(
            kind(
                400,
                r#"{"error":{"code":400,"message":"The input token count (1196265) exceeds the maximum number of tokens allowed (1048575).","status":"INVALID_ARGUMENT"}}"#
            ),
            ErrorKind::ContextLength
        );
        // llama.cpp's one input longer than its physical batch: a 500, but that input's
        // (a batch of embeddings is split to find it), not the server's
        assert_eq!(
            kind(
                500,
                r#"{"error":{"code":500,"message":"input (596 tokens) is too large to process. increase the physical batch size (current batch size: 512)","type":"server_error"}}"#
            ),
            ErrorKind::ContextLength
        );
        // Gemini's overloaded model (and any 5xx saying so, as the conformance oracle reads it)
        assert_eq!(
            kind(
                503,
                r#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#
            ),
            ErrorKind::Overloaded
        );
        assert_eq!(
            kind(
                503,
                r#"{"error":{"code":503,"message":"Service unavailable"}}"#
            ),
            ErrorKind::Server
        );
        assert_eq!(
            kind(504, r#"{"error":"upstream overloaded"}"#),
            ErrorKind::Timeout
        );
        // Groq's flex tier out of capacity: retry later
        assert_eq!(
            kind(
                498,
                r#"{"error":{"message":"Flex tier capacity exceeded. This is a known issue and we are working on it.","type":"capacity_exceeded"}}"#
            ),
            ErrorKind::Overloaded
        );
        assert_eq!(
            kind(404, r#"{"error":"model 'x' not found"}"#),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn messages() {
        assert_eq!(error_body_message(b"").0, "empty error body");
        assert_eq!(
            error_body_message(b"<!DOCTYPE html><html><title> Bad Gateway </title>").0,
            "HTML error page: Bad Gateway"
        );
        let (m, c) = error_body_message(br#"[{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED"}}]"#);
        assert_eq!(m, "Resource exhausted");
        assert_eq!(c.as_deref(), Some("RESOURCE_EXHAUSTED"));
        let long = "x".repeat(5000);
        assert!(error_body_message(long.as_bytes()).0.len() < 400);
    }

    #[test]
    fn not_offered_is_unsupported_and_model_loading_is_overload_with_its_estimate() {
        assert_eq!(kind(501, ""), ErrorKind::Unsupported);
        assert_eq!(
            kind(
                400,
                r#"{"error":{"message":"no","type":"not_supported_error"}}"#
            ),
            ErrorKind::Unsupported
        );
        let e = error_from_response(
            503,
            &HeaderMap::new(),
            br#"{"error":"Model x is currently loading","estimated_time":20.5}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Overloaded);
        assert_eq!(
            e.retry_after(),
            Some(std::time::Duration::from_millis(20_500))
        );
        assert_eq!(e.provider_code(), Some("model_loading"));
        assert!(e.message().contains("x-wait-for-model"), "{}", e.message());
        // a plain 503 stays a server error
        assert_eq!(kind(503, r#"{"error":"down"}"#), ErrorKind::Server);
    }

    #[test]
    fn quota_is_never_retried_even_if_server_says_so() {
        let mut h = HeaderMap::new();
        h.insert("x-should-retry", "true".parse().unwrap());
        let e = error_from_response(
            429,
            &h,
            br#"{"error":{"code":"insufficient_quota","message":"q"}}"#,
        );
        assert!(!e.is_retryable());
    }
}
