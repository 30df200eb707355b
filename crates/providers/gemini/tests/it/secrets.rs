//! The key never reaches an error, even from a server that quotes it back: in an error body
//! mapped by Gemini's own mapper (`send_mapped`) and in an error inside a 200 stream.

use infermux_core::{
    ApiKey, ChatRequest, EndpointConfig, Message, Provider, Request, RequestContext,
};
use infermux_gemini::Gemini;
use infermux_testkit::helpers::assert_masked;
use infermux_testkit::{Cassette, ReplayServer};

const KEY: &str = "AIzaSyEchoedBackByTheServer01";

fn echoing_server_cassette() -> Cassette {
    Cassette::from_yaml(&format!(
        r#"
interactions:
- request: {{method: POST, uri: 'https://g/v1beta/models/gemini-2.5-flash:generateContent', body: null, headers: {{}}}}
  response:
    status: {{code: 400, message: Bad Request}}
    headers: {{content-type: [application/json]}}
    body: {{string: '{{"error":{{"code":400,"message":"API key not valid: {KEY}. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}}]}}}}'}}
- request: {{method: POST, uri: 'https://g/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse', body: null, headers: {{}}}}
  response:
    status: {{code: 200, message: OK}}
    headers: {{content-type: [text/event-stream]}}
    body: {{string: "data: {{\"candidates\": [{{\"content\": {{\"parts\": [{{\"text\": \"Hi\"}}], \"role\": \"model\"}}}}]}}\n\ndata: {{\"error\": {{\"code\": 500, \"message\": \"internal error for key {KEY}\", \"status\": \"INTERNAL\"}}}}\n\n"}}
"#
    ))
    .unwrap()
}

#[tokio::test]
async fn a_key_quoted_back_by_the_server_never_reaches_an_error() {
    let server = ReplayServer::start(echoing_server_cassette())
        .await
        .unwrap();
    let p = Gemini::new(
        EndpointConfig::new("g", format!("{}/v1beta", server.url()))
            .unwrap()
            .with_api_key(ApiKey::new(KEY)),
    )
    .unwrap();
    let req = Request::Chat(ChatRequest::new(
        "gemini-2.5-flash",
        vec![Message::user("hi")],
    ));
    let ctx = RequestContext::new();
    let err = p.call(&req, &ctx).await.unwrap_err();
    assert!(err.is_auth(), "{err}");
    assert_masked(&err, KEY, "API key not valid: ***");

    let stream = p.stream(&req, &ctx).await.unwrap();
    let err = infermux_core::StreamAccumulator::collect(stream)
        .await
        .unwrap_err();
    assert_masked(&err, KEY, "***");
    assert_eq!(err.partial_text(), Some("Hi"));
    server.verify().unwrap();
}
