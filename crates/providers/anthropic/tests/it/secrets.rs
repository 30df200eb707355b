//! The key never reaches an error, even from a server that quotes it back in an `error` event
//! inside a 200 stream or in an error body.

use infermux_anthropic::Anthropic;
use infermux_core::{
    ApiKey, ChatRequest, EndpointConfig, Message, Provider, Request, RequestContext,
    StreamAccumulator,
};
use infermux_testkit::helpers::assert_masked;
use infermux_testkit::{Cassette, ReplayServer};

const KEY: &str = "sk-ant-api03-EchoedBackByTheServer";

#[tokio::test]
async fn a_key_quoted_back_by_the_server_never_reaches_an_error() {
    let cassette = Cassette::from_yaml(&format!(
        r#"
interactions:
- request: {{method: POST, uri: 'https://a/v1/messages', body: null, headers: {{}}}}
  response:
    status: {{code: 401, message: Unauthorized}}
    headers: {{content-type: [application/json]}}
    body: {{string: '{{"type":"error","error":{{"type":"authentication_error","message":"invalid x-api-key: {KEY}"}}}}'}}
- request: {{method: POST, uri: 'https://a/v1/messages', body: null, headers: {{}}}}
  response:
    status: {{code: 200, message: OK}}
    headers: {{content-type: [text/event-stream]}}
    body: {{string: "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"m\",\"model\":\"c\",\"usage\":{{\"input_tokens\":1}}}}}}\n\nevent: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"Hi\"}}}}\n\nevent: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"overloaded while serving {KEY}\"}}}}\n\n"}}
"#
    ))
    .unwrap();
    let server = ReplayServer::start(cassette).await.unwrap();
    let p = Anthropic::new(
        EndpointConfig::new("a", format!("{}/v1", server.url()))
            .unwrap()
            .with_api_key(ApiKey::new(KEY)),
    )
    .unwrap();
    let req = Request::Chat(ChatRequest::new("c", vec![Message::user("hi")]));
    let ctx = RequestContext::new();
    let err = p.call(&req, &ctx).await.unwrap_err();
    assert!(err.is_auth(), "{err}");
    assert_masked(&err, KEY, "invalid x-api-key: ***");

    let stream = p.stream(&req, &ctx).await.unwrap();
    let err = StreamAccumulator::collect(stream).await.unwrap_err();
    assert_masked(&err, KEY, "overloaded while serving ***");
    assert_eq!(err.partial_text(), Some("Hi"));
    server.verify().unwrap();
}
