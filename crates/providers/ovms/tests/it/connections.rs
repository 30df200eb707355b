//! One connection pool per endpoint: OVMS's TF-Serving / KServe routes and its
//! OpenAI-compatible `/v3` go through the same keep-alive connection.

use infermux_core::{EndpointConfig, Provider, Request, RequestContext, Response};
use infermux_ovms::Ovms;
use infermux_testkit::{Cassette, ReplayServer};

#[tokio::test]
async fn native_and_v3_routes_share_one_connection() {
    let server = ReplayServer::start(
        Cassette::from_yaml(
            r#"
interactions:
- request: {method: GET, uri: 'http://ovms:9000/v1/models/resnet', body: null, headers: {}}
  response:
    status: {code: 200, message: OK}
    headers: {content-type: [application/json]}
    body: {string: '{"model_version_status":[{"version":"1","state":"AVAILABLE","status":{"error_code":"OK","error_message":""}}]}'}
- request: {method: GET, uri: 'http://ovms:9000/v3/models', body: null, headers: {}}
  response:
    status: {code: 200, message: OK}
    headers: {content-type: [application/json]}
    body: {string: '{"object":"list","data":[{"id":"resnet","object":"model","created":0,"owned_by":"ovms"}]}'}
"#,
        )
        .unwrap(),
    )
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
