//! One connection pool per endpoint: Ollama's native `/api` routes and its OpenAI-compatible
//! `/v1` go through the same keep-alive connection.

use infermux_core::{Provider, Request, RequestContext, Response};
use infermux_testkit::ReplayServer;
use infermux_testkit::helpers::served;

use crate::ollama;

const TAGS: &str = r#"{"models":[{"name":"llama3.2:latest","size":1,"digest":"d"}]}"#;
const MODELS: &str = r#"{"object":"list","data":[{"id":"llama3.2:latest","object":"model","created":0,"owned_by":"library"}]}"#;

#[tokio::test]
async fn native_and_openai_routes_share_one_connection() {
    let server = ReplayServer::start(served(
        "http://ollama:11434",
        &[
            ("GET", "/api/tags", 200, "application/json", TAGS),
            ("GET", "/v1/models", 200, "application/json", MODELS),
        ],
    ))
    .await
    .unwrap();
    let ollama = ollama(&server.url());
    let ctx = RequestContext::new();
    assert_eq!(
        ollama.local_models(&ctx).await.unwrap()[0].name,
        "llama3.2:latest"
    );
    let Response::Models(m) = ollama.openai().call(&Request::Models, &ctx).await.unwrap() else {
        panic!("not models")
    };
    assert_eq!(m.models[0].id, "llama3.2:latest");
    server.verify().unwrap();
    assert_eq!(server.connections(), 1, "two route families, one pool");
}
