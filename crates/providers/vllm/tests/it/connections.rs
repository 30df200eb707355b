//! One connection pool per endpoint: vLLM's `/v1` and its own routes (`/health`, `/metrics`)
//! go through the same keep-alive connection.

use infermux_core::{Provider, Request, RequestContext, Response};
use infermux_testkit::ReplayServer;
use infermux_testkit::helpers::served;

use crate::vllm;

const MODELS: &str =
    r#"{"object":"list","data":[{"id":"smollm2","object":"model","created":0,"owned_by":"vllm"}]}"#;

#[tokio::test]
async fn server_and_openai_routes_share_one_connection() {
    let server = ReplayServer::start(served(
        "http://vllm:8000",
        &[
            ("GET", "/health", 200, "application/json", ""),
            ("GET", "/v1/models", 200, "application/json", MODELS),
        ],
    ))
    .await
    .unwrap();
    let vllm = vllm(&server.url());
    let ctx = RequestContext::new();
    vllm.health(&ctx).await.unwrap();
    let Response::Models(m) = vllm.call(&Request::Models, &ctx).await.unwrap() else {
        panic!("not models")
    };
    assert_eq!(m.models[0].id, "smollm2");
    server.verify().unwrap();
    assert_eq!(server.connections(), 1, "two route families, one pool");
}
