//! OpenAI's wire quirks on small cassettes: refusals, reasoning and cached tokens, the
//! `choices: []` usage chunk with unknown fields, tool calls split across many chunks and in
//! parallel, strict `[DONE]`, unknown enum values, organization and project headers.

use infermux_core::{
    ChatResponse, ContentPart, ErrorKind, FinishReason, Provider, Request, RequestContext,
    Response, StreamAccumulator,
};
use infermux_openai::{ORG_HEADER, OpenAiBuilder, PROJECT_HEADER};
use infermux_testkit::{Cassette, ReplayServer};

use crate::{chat_request, openai};

fn cassette(content_type: &str, body: &str) -> Cassette {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    Cassette::from_yaml(&format!(
        "interactions:\n- request:\n    method: POST\n    uri: https://api.openai.com/v1/chat/completions\n    body: null\n    headers: {{}}\n  response:\n    status: {{code: 200, message: OK}}\n    headers: {{content-type: [{}]}}\n    body: {{string: {}}}\n",
        q(content_type),
        q(body)
    ))
    .unwrap()
}

async fn call(body: &str) -> infermux_core::Result<ChatResponse> {
    let server = ReplayServer::start(cassette("application/json", body))
        .await
        .unwrap();
    let p = openai(&format!("{}/v1", server.url()));
    match p
        .call(&Request::Chat(chat_request()), &RequestContext::new())
        .await?
    {
        Response::Chat(c) => Ok(c),
        other => panic!("{other:?}"),
    }
}

async fn stream(body: &str, chunk: usize) -> infermux_core::Result<ChatResponse> {
    let server = ReplayServer::start_with(
        cassette("text/event-stream", body),
        infermux_testkit::ReplayOptions::default().with_chunk_size(chunk),
    )
    .await
    .unwrap();
    let p = openai(&format!("{}/v1", server.url()));
    let s = p
        .stream(&Request::Chat(chat_request()), &RequestContext::new())
        .await?;
    StreamAccumulator::collect(s).await
}

fn sse(payloads: &[String]) -> String {
    payloads.iter().map(|p| format!("data: {p}\n\n")).collect()
}

#[tokio::test]
async fn refusal_is_a_content_part_and_a_stream_delta() {
    let r = call(r#"{"id":"c","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}"#).await.unwrap();
    assert!(r.message.content.contains(&ContentPart::Refusal {
        text: "I can't help with that.".into()
    }));
    assert_eq!(r.text(), "");
    let body = sse(&[
        r#"{"id":"c","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","refusal":""}}]}"#.into(),
        r#"{"id":"c","model":"gpt-4o","choices":[{"index":0,"delta":{"refusal":"I can't "}}]}"#.into(),
        r#"{"id":"c","model":"gpt-4o","choices":[{"index":0,"delta":{"refusal":"help."},"finish_reason":"stop"}]}"#.into(),
        "[DONE]".into(),
    ]);
    let r = stream(&body, 3).await.unwrap();
    assert!(r.message.content.contains(&ContentPart::Refusal {
        text: "I can't help.".into()
    }));
}

#[tokio::test]
async fn reasoning_and_cached_tokens_and_unknown_fields() {
    let r = call(r#"{"id":"c","object":"chat.completion","model":"o3-mini","service_tier":"default","brand_new_field":{"x":1},"choices":[{"index":0,"message":{"role":"assistant","content":"4","annotations":[]},"finish_reason":"a_new_reason"}],"usage":{"prompt_tokens":20,"completion_tokens":150,"total_tokens":170,"prompt_tokens_details":{"cached_tokens":8,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":128,"accepted_prediction_tokens":0}}}"#).await.unwrap();
    assert_eq!(r.text(), "4");
    let u = r.usage.unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (20, 150));
    assert_eq!(u.reasoning_tokens, Some(128));
    assert_eq!(u.cached_input_tokens, Some(8));
    assert_eq!(
        r.finish_reason,
        Some(FinishReason::Other("a_new_reason".into()))
    );
}

#[tokio::test]
async fn usage_chunk_with_empty_choices_and_obfuscation() {
    let body = sse(&[
        r#"{"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}],"obfuscation":"abc"}"#.into(),
        r#"{"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"obfuscation":"de"}"#.into(),
        r#"{"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10,"completion_tokens_details":{"reasoning_tokens":0}},"obfuscation":"x"}"#.into(),
        "[DONE]".into(),
    ]);
    for chunk in [1, 7, 4096] {
        let r = stream(&body, chunk).await.unwrap();
        assert_eq!(r.text(), "Hi");
        assert_eq!(r.finish_reason, Some(FinishReason::Stop));
        let u = r.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (9, 1));
        assert_eq!(r.id.as_deref(), Some("c"));
    }
}

#[tokio::test]
async fn split_and_parallel_tool_calls_are_reassembled_and_agree_with_the_plain_answer() {
    let args_a = r#"{"city": "Paris", "unit": "celsius"}"#;
    let args_b = r#"{"tz": "Europe/Paris"}"#;
    let plain = call(&format!(
        r#"{{"id":"c","object":"chat.completion","model":"gpt-4o","choices":[{{"index":0,"message":{{"role":"assistant","content":null,"tool_calls":[{{"id":"call_a","type":"function","function":{{"name":"get_weather","arguments":{}}}}},{{"id":"call_b","type":"function","function":{{"name":"get_time","arguments":{}}}}}]}},"finish_reason":"tool_calls"}}]}}"#,
        serde_json::to_string(args_a).unwrap(),
        serde_json::to_string(args_b).unwrap()
    ))
    .await
    .unwrap();
    let mut payloads = vec![
        r#"{"id":"c","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#.to_owned(),
        r#"{"id":"c","model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":""}}]}}]}"#.to_owned(),
    ];
    // one or two characters at a time, the two calls interleaved
    let (a, b): (Vec<char>, Vec<char>) = (args_a.chars().collect(), args_b.chars().collect());
    for i in 0..a.len().max(b.len()) {
        for (index, chars) in [(0, &a), (1, &b)] {
            if let Some(c) = chars.get(i) {
                let piece = serde_json::to_string(&c.to_string()).unwrap();
                payloads.push(format!(
                    r#"{{"id":"c","model":"gpt-4o","choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":{index},"function":{{"arguments":{piece}}}}}]}}}}]}}"#
                ));
            }
        }
    }
    payloads.push(
        r#"{"id":"c","model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#
            .to_owned(),
    );
    payloads.push("[DONE]".to_owned());
    let body = sse(&payloads);
    for chunk in [1, 13, 1 << 16] {
        let streamed = stream(&body, chunk).await.unwrap();
        assert_eq!(streamed.tool_calls(), plain.tool_calls());
        assert_eq!(streamed.finish_reason, plain.finish_reason);
        assert_eq!(streamed.tool_calls()[0].arguments, args_a);
        assert_eq!(streamed.tool_calls()[1].name, "get_time");
    }
}

#[tokio::test]
async fn a_stream_without_done_is_a_decode_error_even_after_a_finish_reason() {
    let body = sse(&[
        r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#.into(),
        r#"{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}"#.into(),
    ]);
    let e = stream(&body, 5).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert_eq!(e.partial_text(), Some("Hello"));
    assert_eq!(e.provider(), Some("openai"));
}

/// Accepts one HTTP/1.1 request on 127.0.0.1, answers it with `answer` (a JSON chat
/// completion) and hands back the request's head and body as text.
async fn capture_one(answer: &'static str) -> (String, tokio::task::JoinHandle<(String, String)>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head, body) = loop {
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the request was complete");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    break (head.to_owned(), body.to_owned());
                }
            }
        };
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
            answer.len()
        );
        sock.write_all(reply.as_bytes()).await.unwrap();
        (head, body)
    });
    (url, task)
}

#[tokio::test]
async fn organization_and_project_headers_and_max_completion_tokens() {
    let (url, task) = capture_one(
        r#"{"id":"c","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#,
    )
    .await;
    let p = OpenAiBuilder::new()
        .with_base_url(format!("{url}/v1"))
        .with_api_key(infermux_core::ApiKey::new("sk-test"))
        .with_organization("org-123")
        .with_project("proj_456")
        .build()
        .unwrap();
    let Response::Chat(r) = p
        .call(&Request::Chat(chat_request()), &RequestContext::new())
        .await
        .unwrap()
    else {
        panic!("not a chat answer")
    };
    assert_eq!(r.text(), "ok");
    let (head, body) = task.await.unwrap();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    assert!(head.starts_with("POST /v1/chat/completions "), "{head}");
    assert_eq!(header(ORG_HEADER).as_deref(), Some("org-123"));
    assert_eq!(header(PROJECT_HEADER).as_deref(), Some("proj_456"));
    assert_eq!(header("authorization").as_deref(), Some("Bearer sk-test"));
    assert!(header("x-request-id").is_some());
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["max_completion_tokens"], 16);
    assert!(body.get("max_tokens").is_none());
}

#[tokio::test]
async fn azure_deployments_send_api_key_and_api_version() {
    let (url, task) = capture_one(
        r#"{"id":"c","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}"#,
    )
    .await;
    let mut b = infermux_openai::OpenAiBuilder::azure(&url, "my-gpt4o", "2024-10-21");
    b.api_key = Some(infermux_core::ApiKey::new("azure-key"));
    let p = b.build().unwrap();
    assert!(p.is_azure());
    let Response::Chat(r) = p
        .call(&Request::Chat(chat_request()), &RequestContext::new())
        .await
        .unwrap()
    else {
        panic!("not a chat answer")
    };
    assert_eq!(r.text(), "ok");
    let (head, body) = task.await.unwrap();
    assert!(
        head.starts_with(
            "POST /openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21 "
        ),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("\r\napi-key: azure-key"), "{head}");
    assert!(!lower.contains("authorization:"), "{head}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["max_tokens"], 16,
        "older Azure API versions want max_tokens"
    );
}

#[test]
fn a_builders_debug_shows_no_key_from_its_base_url_or_its_key() {
    let b = OpenAiBuilder::new()
        .with_base_url("https://gw.example.com/v1?subscription-key=sk-gateway-secret-123")
        .with_api_key(infermux_core::ApiKey::new("sk-the-real-key-456"));
    let shown = format!("{b:?}");
    assert!(!shown.contains("sk-gateway-secret-123"), "{shown}");
    assert!(!shown.contains("sk-the-real-key-456"), "{shown}");
    assert!(shown.contains("https://gw.example.com/v1"), "{shown}");
}
