//! The testkit conformance suite: chat, streaming, tools and models through TGI's messages API
//! against the testkit simulator (OpenAI protocol), and chat through a prompt format and
//! `/generate` on replayed TGI answers.

use std::sync::Arc;

use infermux_hf_tgi::PromptFormat;
use infermux_testkit::{FaultPlan, ReplayServer, Simulator, SuiteConfig, conformance};
use serde_json::json;

use crate::{cassette, sse, tgi};

#[tokio::test]
async fn messages_api_passes_the_conformance_suite_on_the_simulator() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    let cfg = SuiteConfig::new(sim.model()).deterministic(true);
    let report = conformance::run(Arc::new(tgi(&sim.url())), &cfg).await;
    report.assert_ok();
    assert_eq!(report.passed.len(), 5, "{report:?}");
}

#[tokio::test]
async fn prompt_format_mode_passes_the_conformance_suite_on_replayed_answers() {
    let plain = r#"{"generated_text":"Hello there.","details":{"finish_reason":"eos_token","generated_tokens":3,"seed":null,"prefill":[],"tokens":[]}}"#;
    let stream = sse(&[
        json!({"index":1,"token":{"id":1,"text":"One,","logprob":-0.1,"special":false},"generated_text":null,"details":null}),
        json!({"index":2,"token":{"id":2,"text":" two.","logprob":-0.1,"special":false},"generated_text":"One, two.","details":{"finish_reason":"eos_token","generated_tokens":2,"input_length":9,"seed":null}}),
    ]);
    // chat; stream; stream_drop (a stream, then chat)
    let server = ReplayServer::start(cassette(&[
        ("POST", "/generate", 200, "application/json", plain),
        (
            "POST",
            "/generate_stream",
            200,
            "text/event-stream",
            &stream,
        ),
        (
            "POST",
            "/generate_stream",
            200,
            "text/event-stream",
            &stream,
        ),
        ("POST", "/generate", 200, "application/json", plain),
        ("GET", "/v1/models", 200, "application/json", r#"{"object":"list","data":[{"id":"tgi","object":"model","created":0,"owned_by":"tgi"}]}"#),
    ]))
    .await
    .unwrap();
    let p = tgi(&server.url()).with_prompt_format(PromptFormat::ChatMl);
    let cfg = SuiteConfig::new("tgi").with_tools(false);
    let report = conformance::run(Arc::new(p), &cfg).await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(
        report
            .passed
            .starts_with(&["chat", "chat_stream", "chat_stream_drop"]),
        "{report:?}"
    );
}
