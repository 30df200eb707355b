//! The testkit conformance suite on replayed traffic: a cassette assembled from real recorded
//! answers of the shared Gemini cassettes, in the order the suite asks (chat, stream, dropped
//! stream, tools, embeddings). The recorded request URIs are pointed at the suite's models, the
//! tool answer is also served as an SSE stream of the same chunk, and the model list (never
//! recorded) is written here.

use std::path::Path;
use std::sync::Arc;

use infermux_core::Provider;
use infermux_testkit::{
    Body, Cassette, Interaction, RecordedRequest, RecordedResponse, ReplayServer, SuiteConfig,
    conformance,
};

use crate::{provider, response_bytes};

const BASE: &str = "https://generativelanguage.googleapis.com/v1beta";

fn recorded(dir: &Path, name: &str, i: usize) -> Interaction {
    let c = Cassette::load(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    c.interactions
        .into_iter()
        .nth(i)
        .unwrap_or_else(|| panic!("{name} has no interaction {i}"))
}

fn at(mut it: Interaction, method: &str, uri: String) -> Interaction {
    it.request.method = method.into();
    it.request.uri = uri;
    it
}

#[tokio::test]
async fn conformance_suite_on_replayed_real_answers() {
    let Some(dir) = infermux_testkit::shared_fixture("fixtures/cassettes/gemini") else {
        return;
    };
    let (chat, stream, stream2, chat2, tool, embed) = (
        recorded(
            &dir,
            "pydantic-ai/test_google_model_usage_limit_not_exceeded.yaml",
            1,
        ),
        recorded(&dir, "pydantic-ai/test_google_model_stream.yaml", 0),
        recorded(&dir, "pydantic-ai/test_google_model_iter_stream.yaml", 0),
        recorded(&dir, "openllmetry/test_client_spans.yaml", 0),
        recorded(
            &dir,
            "pydantic-ai/test_tool_choice_matrix_auto-google.yaml",
            0,
        ),
        recorded(&dir, "llm-gemini/test_embedding_batch.yaml", 0),
    );
    let m = "gemini-2.0-flash";
    let generate = format!("{BASE}/models/{m}:generateContent");
    let sse = format!("{BASE}/models/{m}:streamGenerateContent?alt=sse");
    let tool_json: serde_json::Value =
        serde_json::from_slice(&response_bytes(&tool.response)).unwrap();
    let tool_stream = Interaction {
        request: tool.request.clone(),
        response: RecordedResponse {
            status: 200,
            message: "OK".into(),
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: Body::Raw(format!("data: {tool_json}\r\n\r\n").into_bytes()),
        },
    };
    let models = Interaction {
        request: RecordedRequest {
            method: "GET".into(),
            uri: format!("{BASE}/models"),
            headers: Vec::new(),
            body: None,
        },
        response: RecordedResponse {
            status: 200,
            message: "OK".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Body::Raw(
                br#"{"models": [{"name": "models/gemini-2.0-flash", "displayName": "Gemini 2.0 Flash"}]}"#
                    .to_vec(),
            ),
        },
    };
    let cassette = Cassette {
        interactions: vec![
            at(chat, "POST", generate.clone()),
            at(stream, "POST", sse.clone()),
            at(stream2, "POST", sse.clone()),
            at(chat2, "POST", generate.clone()),
            at(tool, "POST", generate),
            at(tool_stream, "POST", sse),
            at(
                embed,
                "POST",
                format!("{BASE}/models/gemini-embedding-2:batchEmbedContents"),
            ),
            models,
        ],
    };
    let server = ReplayServer::start(cassette).await.unwrap();
    let p: Arc<dyn Provider> = Arc::new(provider(&format!("{}/v1beta", server.url())));
    let cfg = SuiteConfig::new(m).with_embed_model("gemini-embedding-2");
    let report = conformance::run(p, &cfg).await;
    report.assert_ok();
    assert_eq!(report.passed.len(), 6, "{report:?}");
    server.verify().unwrap();
}
