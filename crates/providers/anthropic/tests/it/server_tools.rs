//! Answers with server tools (web search, code execution), citations, and block, delta and
//! event types this version does not know decode, streamed or not, on the crate's own written
//! cassette (`tests/fixtures/server_tools.yaml`, shaped after Anthropic's tool docs); server
//! tool calls surface as their own parts and go back unchanged on the next turn.

use infermux_core::{
    ChatRequest, ChatResponse, ContentPart, FinishReason, Message, Provider, Request,
    RequestContext, Response, StreamAccumulator, StreamEvent,
};
use infermux_testkit::{Cassette, ReplayOptions, ReplayServer, capture};
use serde_json::{Value, json};

use crate::{fixture, provider};

/// Interaction `i` of the server-tools cassette, alone.
fn interaction(i: usize) -> Cassette {
    let mut c = Cassette::load(fixture("server_tools.yaml")).unwrap();
    c.interactions = vec![c.interactions.remove(i)];
    c
}

fn web_search_request() -> ChatRequest {
    ChatRequest::new(
        "claude-sonnet-4-5",
        vec![Message::user("When was the Eiffel Tower finished?")],
    )
    .with_extra(
        "tools",
        json!([{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]),
    )
}

fn search_result() -> Value {
    json!({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01Search", "content": [{"type": "web_search_result", "title": "Eiffel Tower - Wikipedia", "url": "https://en.wikipedia.org/wiki/Eiffel_Tower", "encrypted_content": "EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5", "page_age": "2 days ago"}]})
}

fn citation() -> Value {
    json!({"type": "web_search_result_location", "cited_text": "The tower was completed on 31 March 1889", "url": "https://en.wikipedia.org/wiki/Eiffel_Tower", "title": "Eiffel Tower - Wikipedia", "encrypted_index": "Eo8BCioIAhgBIiQyYjQ0OWJmZi1lNm"})
}

/// What the web-search answer is, streamed or not.
fn assert_web_search_answer(r: &ChatResponse) {
    assert_eq!(
        r.message.content,
        [
            ContentPart::text("I'll search for that."),
            ContentPart::ServerToolCall {
                id: "srvtoolu_01Search".into(),
                name: "web_search".into(),
                input: json!({"query": "Eiffel Tower completed"}),
            },
            ContentPart::ServerToolResult {
                tool_use_id: "srvtoolu_01Search".into(),
                raw: search_result(),
            },
            ContentPart::text("It was finished on 31 March 1889."),
            ContentPart::Citation { raw: citation() },
        ]
    );
    assert!(
        r.tool_calls().is_empty(),
        "server tools are not the caller's"
    );
    assert_eq!(r.finish_reason, Some(FinishReason::Stop));
}

#[tokio::test]
async fn a_streamed_web_search_with_citations_decodes_in_any_chunking() {
    for chunk in [None, Some(1), Some(9), Some(200)] {
        let opts = chunk.map_or_else(ReplayOptions::default, |n| {
            ReplayOptions::default().with_chunk_size(n)
        });
        let server = ReplayServer::start_with(interaction(0), opts)
            .await
            .unwrap();
        let p = provider(&format!("{}/v1", server.url()));
        let stream = p
            .stream(&Request::Chat(web_search_request()), &RequestContext::new())
            .await
            .unwrap();
        let r = StreamAccumulator::collect(stream).await.unwrap();
        server.verify().unwrap();
        assert_web_search_answer(&r);
        let u = r.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (10_682, 510));
    }
}

#[tokio::test]
async fn a_server_tool_call_is_an_event_of_its_own() {
    let server = ReplayServer::start(interaction(0)).await.unwrap();
    let p = provider(&format!("{}/v1", server.url()));
    let mut stream = p
        .stream(&Request::Chat(web_search_request()), &RequestContext::new())
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(ev) = futures_util::StreamExt::next(&mut stream).await {
        events.push(ev.unwrap());
    }
    let calls: Vec<&StreamEvent> = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                StreamEvent::Part {
                    part: ContentPart::ServerToolCall { .. }
                }
            )
        })
        .collect();
    assert_eq!(calls.len(), 1);
    // the call comes before the text that uses its result
    let call_at = events.iter().position(|e| e == calls[0]).unwrap();
    let answer_at = events
        .iter()
        .position(|e| matches!(e, StreamEvent::TextDelta { text } if text.contains("1889")))
        .unwrap();
    assert!(call_at < answer_at);
}

#[tokio::test]
async fn code_execution_and_unknown_blocks_deltas_and_events_are_not_fatal() {
    let server = ReplayServer::start(interaction(1)).await.unwrap();
    let p = provider(&format!("{}/v1", server.url()));
    let stream = p
        .stream(
            &Request::Chat(ChatRequest::new(
                "claude-sonnet-4-5",
                vec![Message::user("What is the mean of 1, 2, 3, 4?")],
            )),
            &RequestContext::new(),
        )
        .await
        .unwrap();
    let r = StreamAccumulator::collect(stream).await.unwrap();
    server.verify().unwrap();
    assert_eq!(
        r.message.content,
        [
            ContentPart::ServerToolCall {
                id: "srvtoolu_01Code".into(),
                name: "code_execution".into(),
                input: json!({"code": "import statistics\nprint(statistics.mean([1, 2, 3, 4]))"}),
            },
            ContentPart::ServerToolResult {
                tool_use_id: "srvtoolu_01Code".into(),
                raw: json!({"type": "code_execution_tool_result", "tool_use_id": "srvtoolu_01Code", "content": {"type": "code_execution_result", "stdout": "2.5\n", "stderr": "", "return_code": 0}}),
            },
            ContentPart::Other {
                raw: json!({"type": "container_upload", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}),
            },
            ContentPart::text("The mean is 2.5."),
        ]
    );
}

#[tokio::test]
async fn a_web_search_message_decodes_and_goes_back_unchanged() {
    let server = ReplayServer::start(interaction(2)).await.unwrap();
    let p = provider(&format!("{}/v1", server.url()));
    let Response::Chat(r) = p
        .call(&Request::Chat(web_search_request()), &RequestContext::new())
        .await
        .unwrap()
    else {
        panic!("not chat")
    };
    server.verify().unwrap();
    assert_web_search_answer(&r);

    // the next turn carries the server tool's call, its result and the cited text back
    let mut next = web_search_request();
    next.messages.push(r.message);
    next.messages.push(Message::user("And when did it open?"));
    let (url, seen) = capture(r#"{"type":"message","content":[]}"#).await;
    let _ = provider(&format!("{url}/v1"))
        .call(&Request::Chat(next), &RequestContext::new())
        .await;
    let body = seen.await.unwrap().json().unwrap();
    assert_eq!(
        body["messages"][1]["content"],
        json!([
            {"type": "text", "text": "I'll search for that."},
            {"type": "server_tool_use", "id": "srvtoolu_01Search", "name": "web_search", "input": {"query": "Eiffel Tower completed"}},
            search_result(),
            {"type": "text", "text": "It was finished on 31 March 1889.", "citations": [citation()]},
        ])
    );
}
