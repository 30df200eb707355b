//! Integration tests of infermux-groq: replay of its own fixtures recorded from the real
//! llama.cpp server through this crate (re-record with `INFERMUX_RECORD=1`), Groq's quirks on
//! small cassettes (`x_groq` usage, `tool_use_failed` as a 400 and inside a 200 stream), the
//! testkit conformance suite against the simulator and live against llama.cpp.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use infermux_core::{
    ChatRequest, EmbeddingRequest, EndpointConfig, ErrorKind, Message, Provider, Request,
    RequestContext, Response, StreamAccumulator,
};
use infermux_groq::{Groq, TOOL_USE_FAILED};
use infermux_testkit::{
    Cassette, FaultPlan, RecordingProxy, ReplayServer, Simulator, SuiteConfig, conformance,
    server_url,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn groq(base: &str) -> Groq {
    Groq::new(EndpointConfig::new("test", base).unwrap()).unwrap()
}

fn chat_request() -> ChatRequest {
    ChatRequest::new(
        "smollm2",
        vec![
            Message::system("You are a terse assistant."),
            Message::user("Name two planets."),
        ],
    )
    .with_max_tokens(16)
    .with_temperature(0.0)
    .with_seed(7)
}

/// A one-interaction cassette answering `POST /openai/v1/chat/completions`.
fn cassette(status: u16, content_type: &str, body: &str) -> Cassette {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    Cassette::from_yaml(&format!(
        "interactions:\n- request:\n    method: POST\n    uri: https://api.groq.com/openai/v1/chat/completions\n    body: null\n    headers: {{}}\n  response:\n    status: {{code: {status}, message: X}}\n    headers: {{content-type: [{}]}}\n    body: {{string: {}}}\n",
        q(content_type),
        q(body)
    ))
    .unwrap()
}

async fn replay_stream(body: &str) -> infermux_core::Result<infermux_core::ChatResponse> {
    let server = ReplayServer::start(cassette(200, "text/event-stream", body))
        .await
        .unwrap();
    let p = groq(&format!("{}/openai/v1", server.url()));
    let s = p
        .stream(&Request::Chat(chat_request()), &RequestContext::new())
        .await?;
    StreamAccumulator::collect(s).await
}

#[tokio::test]
async fn record_fixtures_from_the_real_server() {
    if !infermux_testkit::record_mode() {
        return;
    }
    let url = std::env::var("INFERMUX_LLAMA_URL").expect("INFERMUX_LLAMA_URL");
    let proxy = RecordingProxy::start(&url).await.unwrap();
    let p = groq(&format!("{}/v1", proxy.url()));
    let ctx = RequestContext::new();
    p.call(&Request::Chat(chat_request()), &ctx).await.unwrap();
    let mut s = p
        .stream(&Request::Chat(chat_request()), &ctx)
        .await
        .unwrap();
    while let Some(ev) = s.next().await {
        ev.unwrap();
    }
    p.call(&Request::Models, &ctx).await.unwrap();
    proxy.save(fixture("llama_chat.yaml")).unwrap();
}

#[tokio::test]
async fn replays_recorded_chat_stream_and_models() {
    for chunk in [None, Some(1), Some(7), Some(64)] {
        let cassette = Cassette::load(fixture("llama_chat.yaml")).unwrap();
        let mut opts = infermux_testkit::ReplayOptions::default();
        if let Some(n) = chunk {
            opts = opts.with_chunk_size(n);
        }
        let server = ReplayServer::start_with(cassette, opts).await.unwrap();
        let p = groq(&format!("{}/v1", server.url()));
        let ctx = RequestContext::new();
        let Response::Chat(plain) = p.call(&Request::Chat(chat_request()), &ctx).await.unwrap()
        else {
            panic!("not a chat answer")
        };
        assert!(!plain.text().trim().is_empty());
        let usage = plain.usage.unwrap();
        assert!(usage.input_tokens > 0 && usage.output_tokens > 0);
        let s = p
            .stream(&Request::Chat(chat_request()), &ctx)
            .await
            .unwrap();
        let streamed = StreamAccumulator::collect(s).await.unwrap();
        assert!(!streamed.text().trim().is_empty());
        assert!(
            streamed.usage.unwrap().output_tokens > 0,
            "include_usage chunk"
        );
        assert!(streamed.finish_reason.is_some());
        let Response::Models(models) = p.call(&Request::Models, &ctx).await.unwrap() else {
            panic!("not a model list")
        };
        assert_eq!(models.models[0].id, "smollm2");
        server.verify().unwrap();
    }
}

#[tokio::test]
async fn stream_usage_from_x_groq() {
    let body = concat!(
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"llama\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}],\"x_groq\":{\"id\":\"req_1\"}}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"llama\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"x_groq\":{\"id\":\"req_1\",\"usage\":{\"queue_time\":0.01,\"prompt_tokens\":18,\"prompt_time\":0.002,\"completion_tokens\":2,\"completion_time\":0.001,\"total_tokens\":20,\"total_time\":0.003}}}\n\n",
        "data: [DONE]\n\n",
    );
    let r = replay_stream(body).await.unwrap();
    assert_eq!(r.text(), "Hi");
    let u = r.usage.unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (18, 2));
}

#[tokio::test]
async fn tool_use_failed_is_invalid_request() {
    let body = r#"{"error":{"message":"Failed to call a function. Please adjust your prompt.","type":"invalid_request_error","code":"tool_use_failed","failed_generation":"<function=get_weather{\"city\": \"Paris\"}</function>"}}"#;
    let server = ReplayServer::start(cassette(400, "application/json", body))
        .await
        .unwrap();
    let p = groq(&format!("{}/openai/v1", server.url()));
    let e = p
        .call(&Request::Chat(chat_request()), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert_eq!(e.provider_code(), Some(TOOL_USE_FAILED));
    assert_eq!(e.status(), Some(400));
    assert_eq!(e.provider(), Some("groq"));
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn tool_use_failed_inside_a_stream_is_invalid_request() {
    let body = concat!(
        "data: {\"id\":\"c\",\"model\":\"llama\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Let me\"}}]}\n\n",
        "data: {\"error\":{\"message\":\"Failed to call a function. Please adjust your prompt.\",\"type\":\"invalid_request_error\",\"code\":\"tool_use_failed\"}}\n\n",
    );
    let e = replay_stream(body).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert_eq!(e.provider_code(), Some(TOOL_USE_FAILED));
    assert_eq!(e.partial_text(), Some("Let me"));
    assert_eq!(e.provider(), Some("groq"));
}

#[tokio::test]
async fn stream_without_done_is_a_decode_error() {
    let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":\"stop\"}]}\n\n";
    let e = replay_stream(body).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert_eq!(e.partial_text(), Some("Hel"));
}

#[tokio::test]
async fn embeddings_are_unsupported() {
    let p = groq("http://127.0.0.1:9/openai/v1");
    let e = p
        .call(
            &Request::Embeddings(EmbeddingRequest::new("m", ["x"])),
            &RequestContext::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert_eq!(p.name(), "groq");
}

#[tokio::test]
async fn simulator_conformance() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let cfg = SuiteConfig::new(sim.model()).deterministic(true);
    let report = conformance::run(Arc::new(groq(&format!("{}/v1", sim.url()))), &cfg).await;
    report.assert_ok();
    assert!(report.passed.len() >= 4, "{report:?}");
}

#[tokio::test]
async fn live_conformance() {
    let Some(url) = server_url("INFERMUX_LLAMA_URL") else {
        return;
    };
    // llama.cpp ignores the requested tool choice for this model's template
    let cfg = SuiteConfig::new("smollm2").with_tools(false);
    let report = conformance::run(Arc::new(groq(&format!("{url}/v1"))), &cfg).await;
    report.assert_ok();
}
