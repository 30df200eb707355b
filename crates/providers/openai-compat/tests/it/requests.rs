//! Request bodies read back into core types (what the conformance runner replays recorded
//! requests with), and the end of a stream without `[DONE]` after a finish reason.

use infermux_core::{
    ContentPart, ErrorKind, Message, Provider, Request, RequestContext, StreamAccumulator,
    ToolCall, ToolChoice,
};
use infermux_openai_compat::wire;
use infermux_testkit::{Cassette, ReplayServer};
use serde_json::json;

use crate::{chat_request, image_request, provider, tool_request};

#[test]
fn chat_bodies_read_back_to_the_same_request() {
    let mut conversation = tool_request();
    conversation
        .messages
        .push(Message::assistant_tool_calls(vec![ToolCall::new(
            "call_1",
            "get_weather",
            r#"{"city":"Paris"}"#,
        )]));
    conversation
        .messages
        .push(Message::tool_result("call_1", "18 °C"));
    let mut named = chat_request().with_tool_choice(ToolChoice::Tool("get_weather".into()));
    named.parallel_tool_calls = Some(false);
    for req in [chat_request(), image_request(), conversation, named] {
        for stream in [false, true] {
            let body = wire::chat_body(&req, stream);
            let back = wire::chat_request_from_json(&body).unwrap();
            assert_eq!(wire::chat_body(&back, stream), body);
            assert_eq!(wire::request_streams(&body), stream);
        }
    }
}

#[test]
fn recorded_shapes_are_read() {
    let body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
            ]}
        ],
        "stop": "\n",
        "tools": [{"type": "browser_search"}],
        "logprobs": true
    });
    let req = wire::chat_request_from_json(&body).unwrap();
    assert_eq!(req.messages[0].text(), "Be brief.");
    assert_eq!(
        req.messages[1].content[1],
        ContentPart::Image {
            source: infermux_core::ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "iVBORw0KGgo=".into()
            },
            detail: Some("low".into())
        }
    );
    assert_eq!(req.stop, vec!["\n".to_owned()]);
    // a non-function tool is kept as sent; unknown fields go to `extra`
    assert!(req.tools.is_empty());
    assert_eq!(req.extra["tools"], json!([{"type": "browser_search"}]));
    assert_eq!(req.extra["logprobs"], json!(true));
    assert!(wire::chat_request_from_json(&json!({"model": "m"})).is_err());
}

#[test]
fn embedding_and_completion_bodies_are_read() {
    let e = wire::embedding_request_from_json(&json!({"model": "m", "input": "one"})).unwrap();
    assert_eq!(e.inputs, vec!["one".to_owned()]);
    let e = wire::embedding_request_from_json(
        &json!({"model": "m", "input": [[1, 2], [3]], "encoding_format": "base64"}),
    )
    .unwrap();
    assert_eq!(e.inputs.len(), 2, "one placeholder per token array");
    assert_eq!(wire::embedding_body(&e)["input"], json!([[1, 2], [3]]));
    assert_eq!(wire::embedding_body(&e)["encoding_format"], "base64");
    let c = wire::completion_request_from_json(
        &json!({"model": "m", "prompt": "Once", "max_tokens": 5, "echo": false}),
    )
    .unwrap();
    assert_eq!((c.prompt.as_str(), c.max_tokens), ("Once", Some(5)));
    assert_eq!(c.extra["echo"], json!(false));
}

fn sse_cassette(body: &str) -> Cassette {
    Cassette::from_yaml(&format!(
        "interactions:\n- request: {{method: POST, uri: 'http://h/v1/chat/completions', body: null, headers: {{}}}}\n  response:\n    status: {{code: 200, message: OK}}\n    headers: {{content-type: ['text/event-stream']}}\n    body: {{string: {}}}\n",
        serde_json::to_string(body).unwrap()
    ))
    .unwrap()
}

#[tokio::test]
async fn a_stream_ending_at_a_finish_reason_without_done() {
    // TGI 1.x ends its streams like this
    let body = "data:{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\ndata:{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n";
    for tolerated in [true, false] {
        let server = ReplayServer::start(sse_cassette(body)).await.unwrap();
        let p = provider(&format!("{}/v1", server.url())).with_missing_done_tolerated(tolerated);
        let s = p
            .stream(&Request::Chat(chat_request()), &RequestContext::new())
            .await
            .unwrap();
        match StreamAccumulator::collect(s).await {
            Ok(r) => {
                assert!(tolerated);
                assert_eq!(r.text(), "Hi");
            }
            Err(e) => {
                assert!(!tolerated);
                assert_eq!(e.kind(), ErrorKind::Decode);
                assert_eq!(e.partial_text(), Some("Hi"));
            }
        }
    }
}

#[test]
fn tool_choice_and_parallel_tool_calls_go_only_with_tools() {
    // OpenAI refuses either without tools ("only allowed when 'tools' are specified")
    let mut bare = chat_request().with_tool_choice(ToolChoice::None);
    bare.parallel_tool_calls = Some(false);
    let body = wire::chat_body(&bare, false);
    assert!(body.get("tool_choice").is_none(), "{body}");
    assert!(body.get("parallel_tool_calls").is_none(), "{body}");
    let mut with_tools = tool_request().with_tool_choice(ToolChoice::Required);
    with_tools.parallel_tool_calls = Some(false);
    let body = wire::chat_body(&with_tools, false);
    assert_eq!(body["tool_choice"], json!("required"));
    assert_eq!(body["parallel_tool_calls"], json!(false));
    // tools given raw in `extra` count as tools
    bare.extra.insert(
        "tools".into(),
        json!([{"type": "function", "function": {"name": "f"}}]),
    );
    let body = wire::chat_body(&bare, false);
    assert_eq!(body["tool_choice"], json!("none"));
    assert_eq!(body["parallel_tool_calls"], json!(false));
}

/// Assistant and tool messages take text only (OpenAI's `ChatCompletionRequestAssistantMessage`
/// parts are text or a refusal; a tool message's are text): an image another provider
/// answered with (Gemini's image output) or a tool's screenshot is left out of them, where it
/// made the whole request a 400. A user's image is still sent as a part.
#[test]
fn assistant_and_tool_messages_are_sent_as_text() {
    let image = ContentPart::Image {
        source: infermux_core::ImageSource::Base64 {
            media_type: "image/png".into(),
            data: "iVBORw0KGgo=".into(),
        },
        detail: None,
    };
    let mut drew = Message::assistant("Here it is.");
    drew.content.push(image.clone());
    let mut shot = Message::tool_result("c1", "the screen:");
    shot.content.push(image.clone());
    let mut look = Message::user("And this?");
    look.content.push(image);
    let mut call = Message::assistant_tool_calls(vec![ToolCall::new("c1", "screenshot", "{}")]);
    call.content.clear();
    let req = infermux_core::ChatRequest::new("m", vec![drew, call, shot, look]);
    let body = wire::chat_body(&req, false);
    assert_eq!(body["messages"][0]["content"], "Here it is.");
    assert_eq!(body["messages"][2]["content"], "the screen:");
    assert_eq!(body["messages"][3]["content"][1]["type"], "image_url");
}
