//! Bad input: an `error` event inside a 200 stream, a truncated stream, an HTML error page, 529
//! overload and 429 with `retry-after`; and no key in `Debug` or in errors.

use std::time::Duration;

use futures_util::StreamExt;
use infermux_anthropic::Anthropic;
use infermux_core::{
    ApiKey, EndpointConfig, ErrorKind, Provider, Request, RequestContext, StreamAccumulator,
};
use infermux_testkit::{
    Body, Cassette, Interaction, RecordedRequest, RecordedResponse, ReplayOptions, ReplayServer,
};

use crate::{chat_request, provider};

const KEY: &str = "sk-ant-test-0123456789-secret";

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Cassette {
    Cassette {
        interactions: vec![Interaction {
            request: RecordedRequest {
                method: "POST".into(),
                uri: "https://api.anthropic.com/v1/messages".into(),
                headers: Vec::new(),
                body: None,
            },
            response: RecordedResponse {
                status,
                message: String::new(),
                headers: headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                body: Body::Raw(body.as_bytes().to_vec()),
            },
        }],
    }
}

async fn serve(c: Cassette) -> (ReplayServer, Anthropic) {
    let server = ReplayServer::start_with(c, ReplayOptions::default().with_chunk_size(9))
        .await
        .unwrap();
    let cfg = EndpointConfig::new("bad", format!("{}/v1", server.url()))
        .unwrap()
        .with_api_key(ApiKey::new(KEY));
    (server, Anthropic::new(cfg).unwrap())
}

const SSE: &[(&str, &str)] = &[("content-type", "text/event-stream")];

const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello, wor\"}}\n\n";

#[tokio::test]
async fn error_event_inside_a_200_stream_carries_the_partial_text() {
    let body = format!(
        "{START}event: error\ndata: {{\"type\": \"error\", \"error\": {{\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}}}\n\n"
    );
    let (server, p) = serve(answer(200, SSE, &body)).await;
    let ctx = RequestContext::new();
    let s = p
        .stream(&Request::Chat(chat_request()), &ctx)
        .await
        .unwrap();
    let e = StreamAccumulator::collect(s).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Overloaded);
    assert_eq!(e.partial_text(), Some("Hello, wor"));
    assert_eq!(e.provider_code(), Some("overloaded_error"));
    assert_eq!(e.request_id(), Some(ctx.request_id()));
    assert_eq!(e.provider(), Some("anthropic"));
    server.verify().unwrap();
}

/// An `error` event whose data is not JSON (a proxy's words) is the server's error with those
/// words and the text so far, not a decode failure; another event that is not JSON still is.
#[tokio::test]
async fn a_non_json_error_event_is_a_server_error_with_its_words() {
    let body = format!("{START}event: error\ndata: upstream connect error or disconnect\n\n");
    let (server, p) = serve(answer(200, SSE, &body)).await;
    let s = p
        .stream(&Request::Chat(chat_request()), &RequestContext::new())
        .await
        .unwrap();
    let e = StreamAccumulator::collect(s).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server, "{e}");
    assert!(e.message().contains("upstream connect error"), "{e}");
    assert_eq!(e.partial_text(), Some("Hello, wor"));
    server.verify().unwrap();
    let body = format!("{START}event: content_block_delta\ndata: not json\n\n");
    let (server, p) = serve(answer(200, SSE, &body)).await;
    let s = p
        .stream(&Request::Chat(chat_request()), &RequestContext::new())
        .await
        .unwrap();
    let e = StreamAccumulator::collect(s).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
    server.verify().unwrap();
}

/// An event of a type the Messages API does not send (a proxy's keep-alive, a newer version's)
/// whose data is not JSON, and a `ping` with no data, are passed over: the answer completes.
#[tokio::test]
async fn events_it_does_not_know_whose_data_is_not_json_are_passed_over() {
    let body = format!(
        "{START}event: ping\ndata:\n\nevent: proxy_keepalive\ndata: still here\n\n\
         event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
         event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}},\"usage\":{{\"output_tokens\":3}}}}\n\n\
         event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
    );
    let (server, p) = serve(answer(200, SSE, &body)).await;
    let s = p
        .stream(&Request::Chat(chat_request()), &RequestContext::new())
        .await
        .unwrap();
    let r = StreamAccumulator::collect(s).await.unwrap();
    assert_eq!(r.text(), "Hello, wor");
    server.verify().unwrap();
}

#[tokio::test]
async fn error_event_before_any_output_fails_the_stream_call() {
    let body = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}\n\n";
    let (server, p) = serve(answer(200, SSE, body)).await;
    let e = p
        .stream(&Request::Chat(chat_request()), &RequestContext::new())
        .await
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    server.verify().unwrap();
}

#[tokio::test]
async fn truncated_stream_is_a_decode_error_with_partial_text() {
    let (server, p) = serve(answer(200, SSE, START)).await;
    let mut s = p
        .stream(&Request::Chat(chat_request()), &RequestContext::new())
        .await
        .unwrap();
    let mut last = None;
    while let Some(ev) = s.next().await {
        last = Some(ev);
    }
    let e = last.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert_eq!(e.partial_text(), Some("Hello, wor"));
    server.verify().unwrap();
}

#[tokio::test]
async fn html_error_page_is_a_server_error() {
    let html =
        "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
    let (server, p) = serve(answer(502, &[("content-type", "text/html")], html)).await;
    let e = p
        .call(&Request::Chat(chat_request()), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    assert_eq!(e.status(), Some(502));
    assert!(e.message().contains("502 Bad Gateway"), "{}", e.message());
    server.verify().unwrap();
}

#[tokio::test]
async fn overloaded_529_and_rate_limited_429_honour_retry_after() {
    let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let json = ("content-type", "application/json");
    let (server, p) = serve(answer(529, &[json, ("retry-after", "7")], body)).await;
    let e = p
        .call(&Request::Chat(chat_request()), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Overloaded);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert!(e.is_retryable());
    server.verify().unwrap();

    let body = r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#;
    let headers = [
        json,
        ("retry-after", "12"),
        ("anthropic-ratelimit-requests-limit", "50"),
        ("anthropic-ratelimit-requests-remaining", "0"),
        ("anthropic-ratelimit-requests-reset", "2030-01-01T00:00:00Z"),
    ];
    let (server, p) = serve(answer(429, &headers, body)).await;
    let e = p
        .call(&Request::Chat(chat_request()), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(12)));
    let rl = e.rate_limit().unwrap();
    assert_eq!(rl.requests.limit, Some(50));
    assert_eq!(rl.requests.remaining, Some(0));
    server.verify().unwrap();
}

#[tokio::test]
async fn no_key_in_debug_or_errors() {
    let body =
        r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#;
    let (server, p) = serve(answer(401, &[("content-type", "application/json")], body)).await;
    assert!(!format!("{p:?}").contains(KEY));
    let e = p
        .call(&Request::Chat(chat_request()), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(!format!("{e:?}").contains(KEY));
    assert!(!e.to_string().contains(KEY));
    server.verify().unwrap();
    // a provider without a key is still a valid client
    assert!(!format!("{:?}", provider("http://127.0.0.1:1/v1")).contains(KEY));
}

#[tokio::test]
async fn a_content_block_that_is_no_object_is_never_a_panic() {
    for block in ["\"x\"", "7", "true", "[1]"] {
        let body = format!(
            "{START}event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{block}}}\n\nevent: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":\"{{}}\"}}}}\n\nevent: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":1}}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
        );
        let (_server, p) = serve(answer(200, SSE, &body)).await;
        let s = p
            .stream(&Request::Chat(chat_request()), &RequestContext::new())
            .await
            .unwrap();
        // tolerated like any block it does not know: the answer is the rest
        let r = StreamAccumulator::collect(s).await.unwrap();
        assert_eq!(r.text(), "Hello, wor", "{block}");
    }
}
