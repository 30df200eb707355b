//! Integration tests of infermux-openai: replay of its own fixtures recorded from the real
//! llama.cpp server through this crate (re-record with `INFERMUX_RECORD=1`), OpenAI's wire
//! quirks on small cassettes, request bodies checked against the official OpenAPI spec, and
//! the testkit conformance suite against the simulator and live against llama.cpp.

mod legacy;
mod media;
mod quirks;
mod record;
mod refused;
mod replay;
mod responses;
mod schema;
mod typed_wire;

use std::path::PathBuf;
use std::sync::Arc;

use infermux_core::{
    ChatRequest, CompletionRequest, EmbeddingRequest, EndpointConfig, Message, Provider,
    ResponseFormat, Tool, ToolChoice,
};
use infermux_openai::{OpenAi, OpenAiBuilder};
use infermux_testkit::{FaultPlan, Simulator, SuiteConfig, conformance, server_url};
use serde_json::json;

pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub(crate) fn openai(base: &str) -> OpenAi {
    OpenAi::new(EndpointConfig::new("test", base).unwrap()).unwrap()
}

pub(crate) fn openai_base64(base: &str) -> OpenAi {
    OpenAiBuilder::new()
        .with_base_url(base)
        .with_base64_embeddings(true)
        .build()
        .unwrap()
}

/// The requests the fixtures were recorded with (replay sends the same ones).
pub(crate) fn chat_request() -> ChatRequest {
    ChatRequest::new(
        "smollm2",
        vec![
            Message::system("You are a terse assistant."),
            Message::user("Name three fruits."),
        ],
    )
    .with_max_tokens(16)
    .with_temperature(0.0)
    .with_seed(11)
}

pub(crate) fn weather_tool() -> Tool {
    Tool::new(
        "get_weather",
        "Get the current weather of a city",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    )
}

pub(crate) fn tool_request() -> ChatRequest {
    ChatRequest::new(
        "smollm2",
        vec![Message::user("What is the weather in Paris? Use the tool.")],
    )
    .with_tools(vec![weather_tool()])
    .with_tool_choice(ToolChoice::Required)
    .with_max_tokens(64)
    .with_temperature(0.0)
    .with_seed(11)
}

pub(crate) fn json_schema_request() -> ChatRequest {
    ChatRequest::new(
        "smollm2",
        vec![Message::user("Give the capital of France as JSON.")],
    )
    .with_response_format(ResponseFormat::JsonSchema {
        name: "capital".into(),
        schema: json!({"type": "object", "properties": {"capital": {"type": "string"}}, "required": ["capital"], "additionalProperties": false}),
        strict: Some(true),
    })
    .with_max_tokens(32)
    .with_temperature(0.0)
    .with_seed(11)
}

pub(crate) fn completion_request() -> CompletionRequest {
    CompletionRequest::new("smollm2", "The capital of France is")
        .with_max_tokens(8)
        .with_temperature(0.0)
}

pub(crate) fn embedding_request() -> EmbeddingRequest {
    EmbeddingRequest::new(
        "smollm2",
        ["The cat sat on the mat.", "Quantum chromodynamics"],
    )
}

#[tokio::test]
async fn simulator_conformance() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let cfg = SuiteConfig::new(sim.model())
        .with_embed_model("sim-embed")
        .deterministic(true);
    let report = conformance::run(Arc::new(openai(&format!("{}/v1", sim.url()))), &cfg).await;
    report.assert_ok();
    assert_eq!(report.passed.len(), 6, "{report:?}");
}

#[tokio::test]
async fn live_conformance() {
    let Some(url) = server_url("INFERMUX_LLAMA_URL") else {
        return;
    };
    let Some(embed_url) = server_url("INFERMUX_LLAMA_EMBED_URL") else {
        return;
    };
    // llama.cpp ignores the requested tool choice for this model's template
    let cfg = SuiteConfig::new("smollm2").with_tools(false);
    let report = conformance::run(Arc::new(openai(&format!("{url}/v1"))), &cfg).await;
    report.assert_ok();
    let cfg = SuiteConfig::new("smollm2")
        .with_embed_model("smollm2")
        .with_tools(false);
    let embedder: Arc<dyn Provider> = Arc::new(openai_base64(&format!("{embed_url}/v1")));
    let report = conformance::run(embedder, &cfg).await;
    assert!(report.passed.contains(&"embeddings"), "{report:?}");
}
