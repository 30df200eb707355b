//! The Responses API on small cassettes shaped like the spec's objects and events: output
//! items (message, function_call, reasoning), usage, streamed deltas, failures and truncation.

use infermux_core::{
    ContentPart, ErrorKind, FinishReason, Message, Provider, Request, RequestContext, Response,
    StreamAccumulator, ToolCall,
};
use infermux_openai::{OpenAiBuilder, responses};
use infermux_testkit::{Cassette, ReplayOptions, ReplayServer};
use serde_json::json;

use crate::{chat_request, tool_request};

fn cassette(content_type: &str, body: &str) -> Cassette {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    Cassette::from_yaml(&format!(
        "interactions:\n- request:\n    method: POST\n    uri: https://api.openai.com/v1/responses\n    body: null\n    headers: {{}}\n  response:\n    status: {{code: 200, message: OK}}\n    headers: {{content-type: [{}]}}\n    body: {{string: {}}}\n",
        q(content_type),
        q(body)
    ))
    .unwrap()
}

fn client(base: &str) -> infermux_openai::OpenAi {
    OpenAiBuilder::new()
        .with_base_url(base)
        .with_responses_api(true)
        .build()
        .unwrap()
}

async fn call(body: &str) -> infermux_core::Result<infermux_core::ChatResponse> {
    let server = ReplayServer::start(cassette("application/json", body))
        .await
        .unwrap();
    let p = client(&format!("{}/v1", server.url()));
    match p
        .call(&Request::Chat(tool_request()), &RequestContext::new())
        .await?
    {
        Response::Chat(c) => {
            server.verify().unwrap();
            Ok(c)
        }
        other => panic!("{other:?}"),
    }
}

async fn stream(
    events: &[serde_json::Value],
    chunk: usize,
) -> infermux_core::Result<infermux_core::ChatResponse> {
    let body: String = events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect();
    let server = ReplayServer::start_with(
        cassette("text/event-stream", &body),
        ReplayOptions::default().with_chunk_size(chunk),
    )
    .await
    .unwrap();
    let p = client(&format!("{}/v1", server.url()));
    let s = p
        .stream(&Request::Chat(chat_request()), &RequestContext::new())
        .await?;
    StreamAccumulator::collect(s).await
}

#[tokio::test]
async fn a_response_with_reasoning_text_and_a_function_call() {
    let r = call(r#"{"id":"resp_1","object":"response","created_at":1741476542,"status":"completed","model":"o4-mini-2025-04-16","output":[
        {"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"Need the weather."}]},
        {"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Let me check.","annotations":[]}]},
        {"type":"function_call","id":"fc_1","call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}","status":"completed"}],
        "usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":64},"total_tokens":123},"future_field":true}"#).await.unwrap();
    assert_eq!(r.text(), "Let me check.");
    assert_eq!(
        r.tool_calls(),
        &[ToolCall::new(
            "call_1",
            "get_weather",
            r#"{"city":"Paris"}"#
        )]
    );
    assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
    assert!(r.message.content.contains(&ContentPart::Thinking {
        text: "Need the weather.".into(),
        signature: None
    }));
    let u = r.usage.unwrap();
    assert_eq!(
        (u.input_tokens, u.output_tokens, u.reasoning_tokens),
        (36, 87, Some(64))
    );
    assert_eq!(r.id.as_deref(), Some("resp_1"));
}

#[tokio::test]
async fn an_incomplete_response_and_a_failed_one() {
    let r = call(r#"{"id":"r","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"model":"gpt-4.1","output":[{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Par"}]}]}"#).await.unwrap();
    assert_eq!(r.finish_reason, Some(FinishReason::Length));
    let e = call(r#"{"id":"r","status":"failed","model":"gpt-4.1","output":[],"error":{"code":"rate_limit_exceeded","message":"Slow down"}}"#).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.provider_code(), Some("rate_limit_exceeded"));
}

fn created() -> serde_json::Value {
    json!({"type":"response.created","sequence_number":0,"response":{"id":"resp_9","object":"response","status":"in_progress","model":"gpt-4.1","output":[]}})
}

#[tokio::test]
async fn streamed_text_function_calls_and_usage() {
    let events = vec![
        created(),
        json!({"type":"response.output_item.added","output_index":0,"item":{"type":"message","id":"msg","role":"assistant","content":[]}}),
        json!({"type":"response.output_text.delta","item_id":"msg","output_index":0,"content_index":0,"delta":"Hel"}),
        json!({"type":"response.output_text.delta","item_id":"msg","output_index":0,"content_index":0,"delta":"lo"}),
        json!({"type":"response.output_item.added","output_index":1,"item":{"type":"function_call","id":"fc_a","call_id":"call_a","name":"get_weather","arguments":""}}),
        json!({"type":"response.output_item.added","output_index":2,"item":{"type":"function_call","id":"fc_b","call_id":"call_b","name":"get_time","arguments":""}}),
        json!({"type":"response.function_call_arguments.delta","item_id":"fc_a","output_index":1,"delta":"{\"city\":"}),
        json!({"type":"response.function_call_arguments.delta","item_id":"fc_b","output_index":2,"delta":"{}"}),
        json!({"type":"response.function_call_arguments.delta","item_id":"fc_a","output_index":1,"delta":"\"Paris\"}"}),
        json!({"type":"response.some_future_event","x":1}),
        json!({"type":"response.completed","response":{"id":"resp_9","status":"completed","model":"gpt-4.1","output":[],"usage":{"input_tokens":10,"output_tokens":5,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":15}}}),
    ];
    for chunk in [1, 9, 1 << 16] {
        let r = stream(&events, chunk).await.unwrap();
        assert_eq!(r.text(), "Hello");
        assert_eq!(
            r.tool_calls(),
            &[
                ToolCall::new("call_a", "get_weather", r#"{"city":"Paris"}"#),
                ToolCall::new("call_b", "get_time", "{}")
            ]
        );
        assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(r.usage.unwrap().output_tokens, 5);
        assert_eq!(r.id.as_deref(), Some("resp_9"));
    }
}

#[tokio::test]
async fn stream_errors_and_truncation() {
    let partial = json!({"type":"response.output_text.delta","output_index":0,"content_index":0,"delta":"Hi"});
    let e = stream(
        &[created(), partial.clone(), json!({"type":"error","code":"server_error","message":"boom","param":null,"sequence_number":3})],
        4,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    assert_eq!(e.partial_text(), Some("Hi"));
    let e = stream(
        &[created(), json!({"type":"response.failed","response":{"id":"r","status":"failed","output":[],"error":{"code":"invalid_prompt","message":"no"}}})],
        4,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    let e = stream(&[created(), partial], 4).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert_eq!(e.partial_text(), Some("Hi"));
}

/// An `error` event whose data is not JSON (a proxy's words) is the server's error with those
/// words and the text so far; an event the API does not send (`ping`) whose data is not JSON
/// is passed over; a Responses event whose data is not JSON is still a decode error.
#[test]
fn events_whose_data_is_not_json() {
    let partial = json!({"type":"response.output_text.delta","output_index":0,"content_index":0,"delta":"Hi"});
    let mut st = responses::ResponsesStreamState::new();
    st.on_event(Some("response.created"), &created().to_string())
        .unwrap();
    st.on_event(Some("response.output_text.delta"), &partial.to_string())
        .unwrap();
    assert_eq!(st.on_event(Some("ping"), "keep-alive").unwrap(), vec![]);
    let e = st
        .on_event(
            Some("error"),
            "upstream connect error or disconnect/reset before headers",
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server, "{e}");
    assert!(e.message().contains("upstream connect error"), "{e}");
    assert_eq!(e.partial_text(), Some("Hi"));
    let mut st = responses::ResponsesStreamState::new();
    let e = st
        .on_event(Some("response.output_text.delta"), "not json")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
}

#[test]
fn bodies_read_back_to_the_same_request() {
    let mut conversation = tool_request();
    conversation
        .messages
        .insert(0, Message::system("Be brief."));
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
    for req in [chat_request(), conversation] {
        let body = responses::responses_body(&req, true);
        let back = responses::chat_request_from_responses_json(&body).unwrap();
        assert_eq!(responses::responses_body(&back, true), body);
    }
    let body = json!({"model": "gpt-4.1", "input": "Tell me a joke", "store": false});
    let req = responses::chat_request_from_responses_json(&body).unwrap();
    assert_eq!(req.messages[0].text(), "Tell me a joke");
    assert_eq!(req.extra["store"], json!(false));
}

/// Output items this crate does not model are kept raw, never dropped; one that asks the
/// caller to act (a custom tool call) makes the finish reason say so instead of a plain stop;
/// a server tool's finished call (a web search) does not. Reasoning text parts are reasoning.
#[tokio::test]
async fn output_items_it_does_not_model_are_kept_and_a_call_for_the_caller_is_no_plain_stop() {
    let body = json!({"id":"r","status":"completed","model":"gpt-5","output":[
        {"type":"reasoning","summary":[],"content":[{"type":"reasoning_text","text":"think"}]},
        {"type":"web_search_call","id":"ws","status":"completed"},
        {"type":"custom_tool_call","call_id":"c1","name":"grammar","input":"SELECT 1"},
        {"type":"message","role":"assistant","content":[{"type":"output_text","text":"Ran it."}]}
    ]});
    let r = call(&body.to_string()).await.unwrap();
    assert_eq!(r.text(), "Ran it.");
    let raws: Vec<&serde_json::Value> = r
        .message
        .content
        .iter()
        .filter_map(|p| match p {
            ContentPart::Other { raw } => Some(raw),
            _ => None,
        })
        .collect();
    assert_eq!(raws.len(), 2, "{:?}", r.message.content);
    assert_eq!(raws[1]["input"], "SELECT 1");
    assert_eq!(
        r.finish_reason,
        Some(FinishReason::Other("custom_tool_call".into()))
    );
    assert!(
        r.message
            .content
            .iter()
            .any(|p| matches!(p, ContentPart::Thinking { text, .. } if text == "think"))
    );
    // a finished server tool alone is a plain stop
    let body = json!({"id":"r","status":"completed","model":"gpt-5","output":[
        {"type":"web_search_call","id":"ws","status":"completed"},
        {"type":"message","role":"assistant","content":[{"type":"output_text","text":"Found."}]}
    ]});
    let r = call(&body.to_string()).await.unwrap();
    assert_eq!(r.finish_reason, Some(FinishReason::Stop));
    // streamed the same way
    let item =
        json!({"type":"custom_tool_call","call_id":"c1","name":"grammar","input":"SELECT 1"});
    let events = vec![
        created(),
        json!({"type":"response.reasoning_text.delta","output_index":0,"delta":"think"}),
        json!({"type":"response.output_item.added","output_index":1,"item":item}),
        json!({"type":"response.custom_tool_call_input.delta","output_index":1,"delta":"SELECT 1"}),
        json!({"type":"response.output_item.done","output_index":1,"item":item}),
        json!({"type":"response.completed","response":{"id":"r","status":"completed","model":"gpt-5","output":[]}}),
    ];
    let r = stream(&events, 7).await.unwrap();
    assert!(
        r.message
            .content
            .iter()
            .any(|p| matches!(p, ContentPart::Other { raw } if raw["input"] == "SELECT 1"))
    );
    assert!(
        r.message
            .content
            .iter()
            .any(|p| matches!(p, ContentPart::Thinking { text, .. } if text == "think"))
    );
    assert_eq!(
        r.finish_reason,
        Some(FinishReason::Other("custom_tool_call".into()))
    );
}

/// An object `extra.text` (GPT-5's `verbosity`) is merged with the typed response format, not
/// put in its place: structured output stays on. A `format` in it wins, as `extra` does.
#[test]
fn extra_text_is_merged_with_the_typed_format() {
    let mut req = chat_request().with_response_format(infermux_core::ResponseFormat::JsonSchema {
        name: "a".into(),
        schema: json!({"type": "object"}),
        strict: Some(true),
    });
    req.extra.insert("text".into(), json!({"verbosity": "low"}));
    let b = responses::responses_body(&req, false);
    assert_eq!(b["text"]["verbosity"], "low", "{b:#}");
    assert_eq!(b["text"]["format"]["type"], "json_schema", "{b:#}");
    req.extra.insert(
        "text".into(),
        json!({"verbosity": "low", "format": {"type": "text"}}),
    );
    let b = responses::responses_body(&req, false);
    assert_eq!(b["text"]["format"]["type"], "text");
    // without a typed format, `extra.text` goes as it is
    req.response_format = None;
    let b = responses::responses_body(&req, false);
    assert_eq!(
        b["text"],
        json!({"verbosity": "low", "format": {"type": "text"}})
    );
}

/// An `output_text` part's annotations (a web search's `url_citation`s) are citation parts
/// after the text, plain and streamed (`response.output_text.annotation.added`); they were
/// dropped.
#[tokio::test]
async fn annotations_are_citations_after_the_text() {
    let citation = json!({"type": "url_citation", "start_index": 0, "end_index": 5,
        "url": "https://example.com/paris", "title": "Paris"});
    let body = json!({"id": "r", "object": "response", "status": "completed", "model": "gpt-4.1",
        "output": [{"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": "Paris.", "annotations": [citation, "odd"]}]}]});
    let r = call(&body.to_string()).await.unwrap();
    assert_eq!(
        r.message.content,
        vec![
            ContentPart::text("Paris."),
            ContentPart::Citation {
                raw: citation.clone()
            }
        ]
    );
    let streamed = stream(
        &[
            created(),
            json!({"type": "response.output_text.delta", "sequence_number": 1, "output_index": 0, "content_index": 0, "delta": "Par"}),
            // (between pieces of the text: the citation still comes after all of it)
            json!({"type": "response.output_text.annotation.added", "sequence_number": 2, "output_index": 0, "content_index": 0, "annotation_index": 0, "annotation": citation}),
            json!({"type": "response.output_text.delta", "sequence_number": 3, "output_index": 0, "content_index": 0, "delta": "is."}),
            json!({"type": "response.completed", "sequence_number": 4, "response": {"id": "r", "status": "completed", "model": "gpt-4.1", "output": []}}),
        ],
        usize::MAX,
    )
    .await
    .unwrap();
    assert_eq!(streamed.message.content, r.message.content);
}

/// A cited (or reasoned) answer sent back as input is one string, as the same answer without
/// its citations is: a citation switched it to a list of `output_text` parts without
/// `annotations`, which stricter Responses servers (Azure's, vLLM's) refuse.
#[test]
fn a_cited_answer_goes_back_as_its_text() {
    let mut cited = Message::assistant("Paris.");
    cited.content.push(ContentPart::Citation {
        raw: json!({"type": "url_citation", "url": "https://example.com"}),
    });
    let req = infermux_core::ChatRequest::new("gpt-4.1", vec![Message::user("Capital?"), cited]);
    let body = infermux_openai::responses::responses_body(&req, false);
    assert_eq!(
        body["input"][1],
        json!({"role": "assistant", "content": "Paris."})
    );
}
