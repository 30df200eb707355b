//! The testkit conformance suite (embeddings and models, as TEI's capabilities say) against
//! replayed TEI traffic, in the native and the `/v1` modes.

use std::sync::Arc;

use infermux_hf_tei::Mode;
use infermux_testkit::{ReplayServer, SuiteConfig, conformance};

use crate::{cassette, tei};

const INFO: &str = r#"{"model_id":"BAAI/bge-small-en-v1.5","model_dtype":"float32","model_type":{"embedding":{"pooling":"cls"}},"max_concurrent_requests":512,"max_input_length":512,"max_batch_tokens":16384,"max_client_batch_size":32,"auto_truncate":false,"tokenization_workers":2,"version":"1.5.0"}"#;

#[tokio::test]
async fn native_mode_passes_the_conformance_suite() {
    let server = ReplayServer::start(cassette(&[
        ("GET", "/info", 200, "application/json", INFO),
        (
            "POST",
            "/embed",
            200,
            "application/json",
            "[[0.1,0.2,0.3],[0.3,-0.2,0.1]]",
        ),
        ("GET", "/info", 200, "application/json", INFO),
    ]))
    .await
    .unwrap();
    let cfg = SuiteConfig::new("unused").with_embed_model("bge");
    let report = conformance::run(Arc::new(tei(&server.url())), &cfg).await;
    report.assert_ok();
    assert_eq!(report.passed, vec!["embeddings", "models"], "{report:?}");
    server.verify().unwrap();
}

#[tokio::test]
async fn openai_mode_passes_the_conformance_suite() {
    let body = r#"{"object":"list","data":[{"object":"embedding","embedding":[0.1,0.2],"index":0},{"object":"embedding","embedding":[0.3,0.4],"index":1}],"model":"bge","usage":{"prompt_tokens":4,"total_tokens":4}}"#;
    let server = ReplayServer::start(cassette(&[
        // `max_client_batch_size` first: TEI refuses more inputs on `/v1/embeddings` too
        ("GET", "/info", 200, "application/json", INFO),
        ("POST", "/v1/embeddings", 200, "application/json", body),
        ("GET", "/info", 200, "application/json", INFO),
    ]))
    .await
    .unwrap();
    let cfg = SuiteConfig::new("unused").with_embed_model("bge");
    let report = conformance::run(Arc::new(tei(&server.url()).with_mode(Mode::OpenAi)), &cfg).await;
    report.assert_ok();
    assert_eq!(report.passed, vec!["embeddings", "models"], "{report:?}");
    server.verify().unwrap();
}
