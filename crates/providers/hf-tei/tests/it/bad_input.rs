//! Error answers: the Inference API's 503 "model is loading", TEI's JSON errors (413 batch too
//! large, 424 wrong model type, 429 overloaded), a text/plain 422, an HTML page; keys kept out
//! of `Debug` and errors.

use std::time::Duration;

use infermux_core::{
    ApiKey, EmbeddingRequest, EndpointConfig, ErrorKind, Provider, Request, RequestContext,
};
use infermux_hf_tei::HfTei;
use infermux_testkit::ReplayServer;

use crate::{cassette, tei};

fn embed() -> Request {
    Request::Embeddings(EmbeddingRequest::new("m", ["hello"]))
}

#[tokio::test]
async fn model_loading_is_overloaded_with_estimated_time_as_retry_after() {
    let body = r#"{"error":"Model sentence-transformers/all-MiniLM-L6-v2 is currently loading","estimated_time":20.0}"#;
    let server = ReplayServer::start(cassette(&[(
        "POST",
        "/pipeline/feature-extraction/sentence-transformers/all-MiniLM-L6-v2",
        503,
        "application/json",
        body,
    )]))
    .await
    .unwrap();
    let cfg = EndpointConfig::new("hf", server.url()).unwrap();
    let p = HfTei::inference_api(cfg, "sentence-transformers/all-MiniLM-L6-v2").unwrap();
    let e = p.call(&embed(), &RequestContext::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Overloaded);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(20)));
    assert!(e.to_string().contains("x-wait-for-model"), "{e}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn error_pages_map_to_kinds() {
    let cases = [
        (
            413,
            "application/json",
            r#"{"error":"batch size 64 > maximum allowed batch size 32","error_type":"Validation"}"#,
            ErrorKind::InvalidRequest,
        ),
        (
            422,
            "text/plain; charset=utf-8",
            "Failed to deserialize the JSON body into the target type: inputs: invalid type: map",
            ErrorKind::InvalidRequest,
        ),
        (
            424,
            "application/json",
            r#"{"error":"model is not an embedding model","error_type":"Backend"}"#,
            ErrorKind::Unsupported,
        ),
        (
            424,
            "application/json",
            r#"{"error":"Inference failed","error_type":"backend"}"#,
            ErrorKind::Server,
        ),
        (
            424,
            "application/json",
            r#"{"error":"backend cannot annotate this input","error_type":"backend"}"#,
            ErrorKind::Server,
        ),
        (
            413,
            "application/json",
            r#"{"error":"Input validation error: `inputs` must have less than 512 tokens. Given: 600","error_type":"validation"}"#,
            ErrorKind::ContextLength,
        ),
        (
            429,
            "application/json",
            r#"{"error":"Model is overloaded","error_type":"Overloaded"}"#,
            ErrorKind::Overloaded,
        ),
        (
            502,
            "text/html",
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
            ErrorKind::Server,
        ),
    ];
    for (status, ctype, body, kind) in cases {
        let server = ReplayServer::start(cassette(&[("POST", "/embed", status, ctype, body)]))
            .await
            .unwrap();
        let e = tei(&server.url())
            .call(&embed(), &RequestContext::new())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), kind, "{status}: {e}");
        assert_eq!(e.status(), Some(status));
        assert_eq!(e.provider(), Some("hf-tei"));
    }
}

#[tokio::test]
async fn a_wrong_answer_shape_is_a_decode_error() {
    let server = ReplayServer::start(cassette(&[(
        "POST",
        "/embed",
        200,
        "application/json",
        "[[0.1],[0.2]]",
    )]))
    .await
    .unwrap();
    let e = tei(&server.url())
        .call(&embed(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
}

#[tokio::test]
async fn the_key_is_in_neither_debug_nor_errors() {
    let key = "hf_secretTokenValue123456";
    let server = ReplayServer::start(cassette(&[(
        "POST",
        "/embed",
        401,
        "application/json",
        r#"{"error":"Invalid credentials in Authorization header"}"#,
    )]))
    .await
    .unwrap();
    let cfg = EndpointConfig::new("t", server.url())
        .unwrap()
        .with_api_key(ApiKey::new(key));
    let p = HfTei::new(cfg).unwrap();
    assert!(!format!("{p:?}").contains(key));
    let e = p.call(&embed(), &RequestContext::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(!format!("{e} {e:?}").contains(key));
}

#[tokio::test]
async fn tei_statuses_on_its_openai_route_keep_their_own_meaning() {
    // TEI's `/v1/embeddings` writes its errors in OpenAI's shape, with its own statuses
    let cases = [
        (
            429,
            r#"{"message":"Model is overloaded","code":429,"type":"overloaded"}"#,
            ErrorKind::Overloaded,
        ),
        (
            413,
            r#"{"message":"Input validation error: `inputs` must have less than 512 tokens. Given: 600","code":413,"type":"validation"}"#,
            ErrorKind::ContextLength,
        ),
        (
            424,
            r#"{"message":"Inference failed","code":424,"type":"backend"}"#,
            ErrorKind::Server,
        ),
        // a 429 that is a rate limit stays one
        (
            429,
            r#"{"message":"Rate limit reached","code":429,"type":"rate_limit"}"#,
            ErrorKind::RateLimited,
        ),
    ];
    for (status, body, kind) in cases {
        let server = ReplayServer::start(cassette(&[(
            "POST",
            "/v1/embeddings",
            status,
            "application/json",
            body,
        )]))
        .await
        .unwrap();
        let e = tei(&server.url())
            .with_mode(infermux_hf_tei::Mode::OpenAi)
            .with_max_client_batch_size(8)
            .call(&embed(), &RequestContext::new())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), kind, "{status}: {e}");
        assert_eq!(e.status(), Some(status));
        assert!(e.request_id().is_some(), "{e:?}");
    }
}

/// The Inference API's model goes into the path: a Hub id (`org/name`) is sent, one that would
/// leave its path (`..`, `?`, `#`, `%`, a second `/`) is refused before anything is sent.
#[tokio::test]
async fn an_inference_api_model_that_would_leave_its_path_is_refused() {
    for (model, kind) in [
        ("../../v1/models?x", ErrorKind::InvalidRequest),
        ("org/name#frag", ErrorKind::InvalidRequest),
        ("a/b/c", ErrorKind::InvalidRequest),
        ("%2e%2e", ErrorKind::InvalidRequest),
        // nothing listens: a request sent is a connection error
        ("sentence-transformers/all-MiniLM-L6-v2", ErrorKind::Connect),
    ] {
        let cfg = EndpointConfig::new("hf", "http://127.0.0.1:9").unwrap();
        let p = HfTei::inference_api(cfg, model).unwrap();
        let e = p.call(&embed(), &RequestContext::new()).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{model}: {e}");
    }
}
