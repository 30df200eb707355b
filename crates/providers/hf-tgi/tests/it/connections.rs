//! One connection pool per endpoint: the native routes and the messages API (`/v1`) of one TGI
//! server go through the same keep-alive connection.

use infermux_core::{Provider, Request, RequestContext, Response};
use infermux_testkit::ReplayServer;

use crate::{cassette, tgi};

const MODELS: &str =
    r#"{"object":"list","data":[{"id":"tgi","object":"model","created":0,"owned_by":"tgi"}]}"#;

#[tokio::test]
async fn native_and_messages_routes_share_one_connection() {
    let server = ReplayServer::start(cassette(&[
        ("GET", "/health", 200, "application/json", ""),
        ("GET", "/v1/models", 200, "application/json", MODELS),
        ("GET", "/health", 200, "application/json", ""),
    ]))
    .await
    .unwrap();
    let tgi = tgi(&server.url());
    let ctx = RequestContext::new();
    tgi.health(&ctx).await.unwrap();
    let Response::Models(m) = tgi.call(&Request::Models, &ctx).await.unwrap() else {
        panic!("not models")
    };
    assert_eq!(m.models[0].id, "tgi");
    tgi.health(&ctx).await.unwrap();
    server.verify().unwrap();
    assert_eq!(
        server.connections(),
        1,
        "three sequential requests on two route families, one pool"
    );
}
