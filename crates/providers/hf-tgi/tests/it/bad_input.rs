//! Bad input: a `/generate_stream` cut before its last event, an error event inside a 200
//! stream, a text/plain 422, TGI's JSON 422, an HTML page, the Inference API's 503 "model is
//! loading"; keys kept out of `Debug` and errors.

use std::time::Duration;

use infermux_core::{
    ApiKey, CompletionRequest, EndpointConfig, ErrorKind, Provider, Request, RequestContext,
    StreamAccumulator,
};
use infermux_hf_tgi::HfTgi;
use infermux_testkit::ReplayServer;
use serde_json::json;

use crate::{cassette, sse, tgi};

fn generate() -> Request {
    Request::Completion(CompletionRequest::new("tgi", "What is"))
}

#[tokio::test]
async fn a_cut_stream_is_a_decode_error_with_the_partial_text() {
    let body = sse(&[
        json!({"index":1,"token":{"id":415,"text":" Deep","logprob":-0.1,"special":false},"generated_text":null,"details":null}),
        json!({"index":2,"token":{"id":5168,"text":" learn","logprob":-0.2,"special":false},"generated_text":null,"details":null}),
    ]);
    let server = ReplayServer::start(cassette(&[(
        "POST",
        "/generate_stream",
        200,
        "text/event-stream",
        &body,
    )]))
    .await
    .unwrap();
    let s = tgi(&server.url())
        .stream(&generate(), &RequestContext::new())
        .await
        .unwrap();
    let e = StreamAccumulator::collect(s).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert_eq!(e.partial_text(), Some(" Deep learn"));
    assert_eq!(e.provider(), Some("hf-tgi"));
}

#[tokio::test]
async fn an_error_event_inside_a_200_stream() {
    let body = sse(&[
        json!({"index":1,"token":{"id":415,"text":" Deep","logprob":-0.1,"special":false},"generated_text":null,"details":null}),
        json!({"error":"Request failed during generation: Server error: CUDA out of memory","error_type":"generation"}),
    ]);
    let server = ReplayServer::start(cassette(&[(
        "POST",
        "/generate_stream",
        200,
        "text/event-stream",
        &body,
    )]))
    .await
    .unwrap();
    let s = tgi(&server.url())
        .stream(&generate(), &RequestContext::new())
        .await
        .unwrap();
    let e = StreamAccumulator::collect(s).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    assert!(e.to_string().contains("out of memory"), "{e}");
    assert_eq!(e.partial_text(), Some(" Deep"));
}

#[tokio::test]
async fn error_pages_map_to_kinds() {
    let cases = [
        (
            422,
            "text/plain; charset=utf-8",
            "Failed to deserialize the JSON body into the target type: inputs: invalid type: map, expected a string at line 1 column 11",
            ErrorKind::InvalidRequest,
        ),
        (
            422,
            "application/json",
            r#"{"error":"Input validation error: `temperature` must be strictly positive","error_type":"validation"}"#,
            ErrorKind::InvalidRequest,
        ),
        // a prompt too long for the model (TGI's router: `MaxTotalTokens`, `InputLength`)
        (
            422,
            "application/json",
            r#"{"error":"Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 200 `max_new_tokens`","error_type":"validation"}"#,
            ErrorKind::ContextLength,
        ),
        (
            422,
            "application/json",
            r#"{"error":"Input validation error: `inputs` must have less than 1024 tokens. Given: 1500","error_type":"validation"}"#,
            ErrorKind::ContextLength,
        ),
        (
            424,
            "application/json",
            r#"{"error":"Request failed during generation: Server error: unexpected","error_type":"generation"}"#,
            ErrorKind::Server,
        ),
        (
            502,
            "text/html",
            "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>",
            ErrorKind::Server,
        ),
    ];
    for (status, ctype, body, kind) in cases {
        let server = ReplayServer::start(cassette(&[("POST", "/generate", status, ctype, body)]))
            .await
            .unwrap();
        let e = tgi(&server.url())
            .call(&generate(), &RequestContext::new())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), kind, "{status} {ctype}: {e}");
        assert_eq!(e.status(), Some(status));
        // the conformance oracle (generic: it knows no TGI 424) reads the 422s the same way
        if status == 422 {
            assert_eq!(
                infermux_testkit::oracle::http_error_kind(status, body.as_bytes()),
                kind,
                "{status} {ctype}: the oracle"
            );
        }
    }
}

/// The same validation error as an event of a 200 stream: `ContextLength` too.
#[tokio::test]
async fn a_prompt_too_long_inside_a_200_stream_is_context_length() {
    let body = sse(&[
        json!({"error":"Input validation error: `inputs` must have less than 1024 tokens. Given: 1500","error_type":"validation"}),
    ]);
    let server = ReplayServer::start(cassette(&[(
        "POST",
        "/generate_stream",
        200,
        "text/event-stream",
        &body,
    )]))
    .await
    .unwrap();
    let s = tgi(&server.url())
        .stream(&generate(), &RequestContext::new())
        .await;
    let e = match s {
        Ok(s) => StreamAccumulator::collect(s).await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(e.kind(), ErrorKind::ContextLength, "{e}");
}

#[tokio::test]
async fn model_loading_is_overloaded_with_estimated_time_and_the_wait_hint() {
    let body = r#"{"error":"Model HuggingFaceH4/zephyr-7b-beta is currently loading","estimated_time":41.5}"#;
    let server = ReplayServer::start(cassette(&[(
        "POST",
        "/models/HuggingFaceH4/zephyr-7b-beta",
        503,
        "application/json",
        body,
    )]))
    .await
    .unwrap();
    let cfg = EndpointConfig::new("hf", server.url()).unwrap();
    let p = HfTgi::inference_api(cfg, "HuggingFaceH4/zephyr-7b-beta").unwrap();
    let e = p
        .call(&generate(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Overloaded);
    assert_eq!(e.retry_after(), Some(Duration::from_secs_f64(41.5)));
    assert!(e.to_string().contains("x-wait-for-model: true"), "{e}");
    assert_eq!(e.provider_code(), Some("model_loading"));
}

#[tokio::test]
async fn the_key_is_in_neither_debug_nor_errors() {
    let key = "hf_TopSecretTokenForTests987";
    let server = ReplayServer::start(cassette(&[(
        "POST",
        "/generate",
        401,
        "application/json",
        r#"{"error":"Authorization header is correct, but the token seems invalid"}"#,
    )]))
    .await
    .unwrap();
    let cfg = EndpointConfig::new("t", server.url())
        .unwrap()
        .with_api_key(ApiKey::new(key));
    let p = HfTgi::new(cfg).unwrap();
    assert!(!format!("{p:?}").contains(key));
    let e = p
        .call(&generate(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(!format!("{e} {e:?}").contains(key));
}

#[tokio::test]
async fn model_loading_on_the_messages_api_is_overloaded_too() {
    let body = r#"{"error":"Model HuggingFaceH4/zephyr-7b-beta is currently loading","estimated_time":12.0}"#;
    let server = ReplayServer::start(cassette(&[(
        "POST",
        "/models/HuggingFaceH4/zephyr-7b-beta/v1/chat/completions",
        503,
        "application/json",
        body,
    )]))
    .await
    .unwrap();
    let cfg = EndpointConfig::new("hf", server.url()).unwrap();
    let p = HfTgi::inference_api(cfg, "HuggingFaceH4/zephyr-7b-beta")
        .unwrap()
        .with_wait_for_model(true);
    let req = infermux_core::Request::Chat(infermux_core::ChatRequest::new(
        "tgi",
        vec![infermux_core::Message::user("Hi")],
    ));
    let e = p.stream(&req, &RequestContext::new()).await.err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Overloaded);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(12)));
    server.verify().unwrap();
}

fn chat() -> infermux_core::Request {
    infermux_core::Request::Chat(infermux_core::ChatRequest::new(
        "tgi",
        vec![infermux_core::Message::user("Hi")],
    ))
}

/// TGI writes its errors into a Messages API stream as it does on `/generate_stream` (HTTP
/// 200, `{"error": message, "error_type": kind}`): a prompt too long for the model is
/// `ContextLength` (not retried), another validation error `InvalidRequest`, `overloaded`
/// `Overloaded` — as the same errors are over HTTP. They were a server error (retried, and
/// counted against the endpoint's breaker).
#[tokio::test]
async fn an_error_event_in_a_chat_stream_keeps_its_kind() {
    let too_long = "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 200 `max_new_tokens`";
    for (error, error_type, kind) in [
        (too_long, "validation", ErrorKind::ContextLength),
        (
            "Input validation error: `temperature` must be strictly positive",
            "validation",
            ErrorKind::InvalidRequest,
        ),
        ("Model is overloaded", "overloaded", ErrorKind::Overloaded),
        (
            "Request failed during generation: Server error: CUDA out of memory",
            "generation",
            ErrorKind::Server,
        ),
    ] {
        let body = sse(&[json!({"error": error, "error_type": error_type})]);
        let server = ReplayServer::start(cassette(&[(
            "POST",
            "/v1/chat/completions",
            200,
            "text/event-stream",
            &body,
        )]))
        .await
        .unwrap();
        // an error as the stream's first event fails the opening
        let e = match tgi(&server.url())
            .stream(&chat(), &RequestContext::new())
            .await
        {
            Ok(s) => StreamAccumulator::collect(s).await.unwrap_err(),
            Err(e) => e,
        };
        assert_eq!(e.kind(), kind, "{error_type}: {e}");
        assert_eq!(e.provider_code(), Some(error_type));
        assert_eq!(e.provider(), Some("hf-tgi"));
        assert!(e.to_string().contains(&error[..15]), "{e}");
    }
}

/// `/generate`'s details count the prompt only with `decoder_input_details` (which this crate
/// does not ask for), and an encoder-decoder model's `prefill` is its decoder's `<pad>`: the
/// prompt's length is TGI's `x-prompt-tokens` header. The HF Inference API's recorded answer
/// for google/flan-t5-xxl (huggingface_hub's `test_generate_with_details` cassette) said 1
/// input token where the server counted 2; TGI's own plain answer (no prefill) had no usage.
#[tokio::test]
async fn generate_reads_the_prompt_s_length_from_tgi_s_header() {
    let cassette = infermux_testkit::Cassette::from_yaml(
        r#"
interactions:
- request: {method: POST, uri: "http://tgi:8080/models/google/flan-t5-xxl", body: null, headers: {}}
  response:
    status: {code: 200, message: OK}
    headers: {Content-Type: [application/json], x-generated-tokens: ['1'], x-prompt-tokens: ['2']}
    body: {string: '[{"generated_text":"","details":{"finish_reason":"length","generated_tokens":1,"seed":null,"prefill":[{"id":0,"text":"<pad>","logprob":null}],"tokens":[{"id":3,"text":" ","logprob":-2.0078125,"special":false}]}}]'}
- request: {method: POST, uri: "http://tgi:8080/models/google/flan-t5-xxl", body: null, headers: {}}
  response:
    status: {code: 200, message: OK}
    headers: {Content-Type: [application/json], x-generated-tokens: ['10'], x-prompt-tokens: ['7']}
    body: {string: '{"generated_text":" Deep","details":{"finish_reason":"length","generated_tokens":10,"seed":null,"prefill":[],"tokens":[]}}'}
"#,
    )
    .unwrap();
    let server = ReplayServer::start(cassette).await.unwrap();
    let p = HfTgi::inference_api(
        EndpointConfig::new("hf", server.url()).unwrap(),
        "google/flan-t5-xxl",
    )
    .unwrap();
    for (input, output) in [(2, 1), (7, 10)] {
        let infermux_core::Response::Completion(c) =
            p.call(&generate(), &RequestContext::new()).await.unwrap()
        else {
            panic!("not a completion")
        };
        let u = c.usage.expect("usage");
        assert_eq!((u.input_tokens, u.output_tokens), (input, output));
    }
    server.verify().unwrap();
}
