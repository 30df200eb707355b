//! One connection pool per endpoint: TEI's own routes and its OpenAI-compatible `/v1` go
//! through the same keep-alive connection.

use infermux_core::{EmbeddingRequest, Provider, Request, RequestContext, Response};
use infermux_hf_tei::Mode;
use infermux_testkit::ReplayServer;

use crate::{cassette, tei};

const INFO: &str = r#"{"model_id":"BAAI/bge-small-en-v1.5","model_dtype":"float32","model_type":{"embedding":{"pooling":"cls"}},"max_concurrent_requests":512,"max_input_length":512,"max_batch_tokens":16384,"max_client_batch_size":32,"auto_truncate":false,"tokenization_workers":2,"version":"1.5.0"}"#;
const EMBEDDINGS: &str = r#"{"object":"list","data":[{"object":"embedding","embedding":[0.5,0.5],"index":0}],"model":"bge","usage":{"prompt_tokens":2,"total_tokens":2}}"#;

#[tokio::test]
async fn native_and_openai_routes_share_one_connection() {
    let server = ReplayServer::start(cassette(&[
        ("GET", "/info", 200, "application/json", INFO),
        (
            "POST",
            "/v1/embeddings",
            200,
            "application/json",
            EMBEDDINGS,
        ),
    ]))
    .await
    .unwrap();
    let tei = tei(&server.url()).with_mode(Mode::OpenAi);
    let ctx = RequestContext::new();
    let Response::Models(m) = tei.call(&Request::Models, &ctx).await.unwrap() else {
        panic!("not models")
    };
    assert_eq!(m.models[0].id, "BAAI/bge-small-en-v1.5");
    let req = Request::Embeddings(EmbeddingRequest::new("bge", ["hi"]));
    let Response::Embeddings(e) = tei.call(&req, &ctx).await.unwrap() else {
        panic!("not embeddings")
    };
    assert_eq!(e.embeddings.len(), 1);
    server.verify().unwrap();
    assert_eq!(server.connections(), 1, "two route families, one pool");
}
