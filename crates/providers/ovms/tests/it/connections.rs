//! One connection pool per endpoint: OVMS's TF-Serving / KServe routes and its
//! OpenAI-compatible `/v3` go through the same keep-alive connection.

use infermux_core::{EndpointConfig, Provider, Request, RequestContext, Response};
use infermux_ovms::Ovms;
use infermux_testkit::ReplayServer;
use infermux_testkit::helpers::served;

const STATUS: &str = r#"{"model_version_status":[{"version":"1","state":"AVAILABLE","status":{"error_code":"OK","error_message":""}}]}"#;
const MODELS: &str =
    r#"{"object":"list","data":[{"id":"resnet","object":"model","created":0,"owned_by":"ovms"}]}"#;

#[tokio::test]
async fn native_and_v3_routes_share_one_connection() {
    let server = ReplayServer::start(served(
        "http://ovms:9000",
        &[
            ("GET", "/v1/models/resnet", 200, "application/json", STATUS),
            ("GET", "/v3/models", 200, "application/json", MODELS),
        ],
    ))
    .await
    .unwrap();
    let ovms = Ovms::new(EndpointConfig::new("ovms", server.url()).unwrap()).unwrap();
    let ctx = RequestContext::new();
    let status = ovms.model_status("resnet", None, &ctx).await.unwrap();
    assert_eq!(status[0].state, "AVAILABLE");
    let Response::Models(m) = ovms.call(&Request::Models, &ctx).await.unwrap() else {
        panic!("not models")
    };
    assert_eq!(m.models[0].id, "resnet");
    server.verify().unwrap();
    assert_eq!(server.connections(), 1, "two route families, one pool");
}
