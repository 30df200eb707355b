//! One connection pool per endpoint: vLLM's `/v1` and its own routes (`/health`, `/metrics`)
//! go through the same keep-alive connection.

use infermux_core::{Provider, Request, RequestContext, Response};
use infermux_testkit::{Cassette, ReplayServer};

use crate::vllm;

#[tokio::test]
async fn server_and_openai_routes_share_one_connection() {
    let server = ReplayServer::start(
        Cassette::from_yaml(
            r#"
interactions:
- request: {method: GET, uri: 'http://vllm:8000/health', body: null, headers: {}}
  response:
    status: {code: 200, message: OK}
    headers: {content-type: [application/json]}
    body: {string: ''}
- request: {method: GET, uri: 'http://vllm:8000/v1/models', body: null, headers: {}}
  response:
    status: {code: 200, message: OK}
    headers: {content-type: [application/json]}
    body: {string: '{"object":"list","data":[{"id":"smollm2","object":"model","created":0,"owned_by":"vllm"}]}'}
"#,
        )
        .unwrap(),
    )
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
