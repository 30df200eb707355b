//! Bad input: an error inside a 200 stream, a truncated stream, an HTML error page, 429
//! `RESOURCE_EXHAUSTED` with `RetryInfo`, blocked prompts and answers; and no key in `Debug`,
//! or in errors.

use std::time::Duration;

use futures_util::StreamExt;
use infermux_core::{
    ApiKey, ChatRequest, EndpointConfig, ErrorKind, Message, Provider, Request, RequestContext,
    StreamAccumulator,
};
use infermux_gemini::Gemini;
use infermux_testkit::{
    Body, Cassette, Interaction, RecordedRequest, RecordedResponse, ReplayOptions, ReplayServer,
};

const KEY: &str = "AIzaSy-test-0123456789-secret";
const GENERATE: &str =
    "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent";
const STREAM: &str = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse";

fn answer(uri: &str, status: u16, content_type: &str, body: &str) -> Cassette {
    Cassette {
        interactions: vec![Interaction {
            request: RecordedRequest {
                method: "POST".into(),
                uri: uri.into(),
                headers: Vec::new(),
                body: None,
            },
            response: RecordedResponse {
                status,
                message: String::new(),
                headers: vec![("content-type".into(), content_type.into())],
                body: Body::Raw(body.as_bytes().to_vec()),
            },
        }],
    }
}

async fn serve(c: Cassette) -> (ReplayServer, Gemini) {
    let server = ReplayServer::start_with(c, ReplayOptions::default().with_chunk_size(11))
        .await
        .unwrap();
    let cfg = EndpointConfig::new("bad", format!("{}/v1beta", server.url()))
        .unwrap()
        .with_api_key(ApiKey::new(KEY));
    (server, Gemini::new(cfg).unwrap())
}

fn chat() -> Request {
    Request::Chat(ChatRequest::new(
        "gemini-2.0-flash",
        vec![Message::user("hi")],
    ))
}

const TEXT: &str = r#"data: {"candidates": [{"content": {"parts": [{"text": "Once upon"}], "role": "model"}}], "responseId": "r"}

"#;

#[tokio::test]
async fn error_inside_a_200_stream_carries_the_partial_text() {
    let body = format!(
        "{TEXT}data: {{\"error\": {{\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}}}\n\n"
    );
    let (server, p) = serve(answer(STREAM, 200, "text/event-stream", &body)).await;
    let ctx = RequestContext::new();
    let s = p.stream(&chat(), &ctx).await.unwrap();
    let e = StreamAccumulator::collect(s).await.unwrap_err();
    // an overloaded model is a capacity answer (it was `Server`, retried as a transient fault)
    assert_eq!(e.kind(), ErrorKind::Overloaded);
    assert_eq!(e.partial_text(), Some("Once upon"));
    assert_eq!(e.provider(), Some("gemini"));
    assert_eq!(e.request_id(), Some(ctx.request_id()));
    server.verify().unwrap();
}

/// Gemini's 503 "The model is overloaded" is `Overloaded` (retried with the throttled backoff),
/// as the conformance oracle reads it; a plain 503 stays `Server`.
#[tokio::test]
async fn an_overloaded_model_is_overloaded_not_a_server_error() {
    let body = r#"{"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}"#;
    let (server, p) = serve(answer(GENERATE, 503, "application/json", body)).await;
    let e = p.call(&chat(), &RequestContext::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Overloaded);
    assert_eq!(e.status(), Some(503));
    assert_eq!(
        e.kind(),
        infermux_testkit::oracle::http_error_kind(503, body.as_bytes())
    );
    server.verify().unwrap();
    let body = r#"{"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}"#;
    let (server, p) = serve(answer(GENERATE, 503, "application/json", body)).await;
    let e = p.call(&chat(), &RequestContext::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    server.verify().unwrap();
}

/// `"error": null` beside an answer is no error (a proxy that always writes the field).
#[tokio::test]
async fn an_error_field_of_null_is_no_error() {
    let body = r#"{"error": null, "candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}, "finishReason": "STOP"}]}"#;
    let (server, p) = serve(answer(GENERATE, 200, "application/json", body)).await;
    let r = p.call(&chat(), &RequestContext::new()).await.unwrap();
    let infermux_core::Response::Chat(c) = r else {
        panic!("a chat answer")
    };
    assert_eq!(c.text(), "Hi");
    server.verify().unwrap();
}

#[tokio::test]
async fn truncated_streams_are_decode_errors() {
    // SSE without a finish reason
    let (server, p) = serve(answer(STREAM, 200, "text/event-stream", TEXT)).await;
    let s = p.stream(&chat(), &RequestContext::new()).await.unwrap();
    let e = StreamAccumulator::collect(s).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert_eq!(e.partial_text(), Some("Once upon"));
    server.verify().unwrap();
    // a JSON array cut in the middle
    let uri = STREAM.trim_end_matches("?alt=sse");
    let body = r#"[{"candidates": [{"content": {"parts": [{"text": "Once upon"}]}}]}, {"candidates": [{"content": {"par"#;
    let (server, p) = serve(answer(uri, 200, "application/json", body)).await;
    let p = p.with_sse(false);
    let mut s = p.stream(&chat(), &RequestContext::new()).await.unwrap();
    let mut last = None;
    while let Some(ev) = s.next().await {
        last = Some(ev);
    }
    let e = last.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert_eq!(e.partial_text(), Some("Once upon"));
    server.verify().unwrap();
}

#[tokio::test]
async fn html_error_page_is_a_server_error() {
    let html = "<html><head><title>502 Server Error</title></head><body>Bad Gateway</body></html>";
    let (server, p) = serve(answer(GENERATE, 502, "text/html", html)).await;
    let e = p.call(&chat(), &RequestContext::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    assert_eq!(e.status(), Some(502));
    assert!(e.message().contains("502 Server Error"));
    server.verify().unwrap();
}

#[tokio::test]
async fn resource_exhausted_carries_the_retry_info_delay() {
    let body = r#"{"error": {"code": 429, "message": "You exceeded your current quota.", "status": "RESOURCE_EXHAUSTED",
      "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests"}]},
                  {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}]}}"#;
    let (server, p) = serve(answer(GENERATE, 429, "application/json", body)).await;
    let e = p.call(&chat(), &RequestContext::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(17)));
    assert_eq!(e.provider_code(), Some("RESOURCE_EXHAUSTED"));
    server.verify().unwrap();
}

#[tokio::test]
async fn a_retry_delay_too_long_for_a_duration_is_capped_not_a_panic() {
    let body = r#"{"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
      "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1e20s"}]}}"#;
    let (server, p) = serve(answer(GENERATE, 429, "application/json", body)).await;
    let e = p.call(&chat(), &RequestContext::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(infermux_http::MAX_RETRY_AFTER));
    server.verify().unwrap();
}

#[tokio::test]
async fn blocked_prompts_and_answers_are_content_filter_errors() {
    let body = r#"{"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []}, "usageMetadata": {"promptTokenCount": 8}}"#;
    let (server, p) = serve(answer(GENERATE, 200, "application/json", body)).await;
    let e = p.call(&chat(), &RequestContext::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ContentFilter);
    assert_eq!(e.provider_code(), Some("SAFETY"));
    server.verify().unwrap();

    // every blocking finish reason of the proto, image ones included
    for reason in [
        "PROHIBITED_CONTENT",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        // (an unsupported language: it was a successful answer of an unknown finish reason)
        "LANGUAGE",
    ] {
        let body = format!(
            "{TEXT}data: {{\"candidates\": [{{\"content\": {{}}, \"finishReason\": \"{reason}\"}}]}}\n\n"
        );
        let (server, p) = serve(answer(STREAM, 200, "text/event-stream", &body)).await;
        let s = p.stream(&chat(), &RequestContext::new()).await.unwrap();
        let e = StreamAccumulator::collect(s).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ContentFilter, "{reason}");
        assert_eq!(e.partial_text(), Some("Once upon"));
        server.verify().unwrap();
    }
}

#[tokio::test]
async fn no_key_in_debug_errors_or_url() {
    let body = r#"{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
      "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}"#;
    let (server, p) = serve(answer(GENERATE, 400, "application/json", body)).await;
    assert!(!format!("{p:?}").contains(KEY));
    let e = p.call(&chat(), &RequestContext::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(!format!("{e:?}").contains(KEY));
    assert!(!e.to_string().contains(KEY));
    server.verify().unwrap();
}

/// A model name goes into the request's path: one that would not stay one resource name
/// (`?`, `#`, `%`, `\`, `..`, another `/`) is refused before anything is sent (it steered the
/// request, key and all, to another method of the API: `../cachedContents#`).
#[tokio::test]
async fn a_model_name_that_would_leave_its_path_is_refused_before_sending() {
    // nothing listens there: a request sent would be a connection error
    let cfg = EndpointConfig::new("bad", "http://127.0.0.1:9/v1beta")
        .unwrap()
        .with_api_key(ApiKey::new(KEY));
    let p = Gemini::new(cfg).unwrap();
    for model in [
        "gemini-2.5-flash?x",
        "../cachedContents#",
        "models/../files",
        "%2e%2e",
        "a\\b",
        "models/a/b",
        "models/",
        "gemini:streamGenerateContent",
        "",
    ] {
        let chat = Request::Chat(ChatRequest::new(model, vec![Message::user("hi")]));
        let e = p.call(&chat, &RequestContext::new()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{model}: {e}");
        let e = p.stream(&chat, &RequestContext::new()).await.err().unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{model}: {e}");
        let embed = Request::Embeddings(infermux_core::EmbeddingRequest::new(model, vec!["x"]));
        let e = p.call(&embed, &RequestContext::new()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{model}: {e}");
    }
    // a plain name and the two collections are names, sent (and refused by nobody listening)
    for model in [
        "gemini-2.5-flash",
        "models/gemini-2.5-flash",
        "tunedModels/my-model-1",
    ] {
        let chat = Request::Chat(ChatRequest::new(model, vec![Message::user("hi")]));
        let e = p.call(&chat, &RequestContext::new()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Connect, "{model}: {e}");
    }
}
