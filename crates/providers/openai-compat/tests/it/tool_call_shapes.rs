//! Tool calls in the shapes compatible servers really send decode: numeric ids, arguments as a
//! JSON object, and `tool_calls` as one object instead of a list; content given as parts.

use infermux_core::{StreamAccumulator, StreamEvent};
use infermux_openai_compat::wire;
use serde_json::json;

#[test]
fn numeric_ids_and_object_arguments_decode() {
    let body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": [
        {"id": 7, "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
    ]}, "finish_reason": "tool_calls"}]});
    let r = wire::parse_chat(body.to_string().as_bytes()).unwrap();
    assert_eq!(r.tool_calls()[0].id, "7");
    assert_eq!(
        r.tool_calls()[0].parsed_arguments().unwrap(),
        json!({"a": 1})
    );
    // a recorded request that answers it the same way
    let req = wire::chat_request_from_json(&json!({"model": "m", "messages": [
        {"role": "assistant", "tool_calls": [{"id": 7, "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": 7, "content": "ok"}
    ]}))
    .unwrap();
    assert_eq!(req.messages[0].tool_calls[0].id, "7");
    assert_eq!(req.messages[1].tool_call_id.as_deref(), Some("7"));
}

#[test]
fn a_single_object_tool_calls_delta_is_one_call() {
    let mut st = wire::ChatStreamState::new();
    let mut acc = StreamAccumulator::new();
    for chunk in [
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": {"index": 0, "id": 0, "type": "function", "function": {"name": "f", "arguments": "{\"a\""}}}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": {"index": 0, "id": 0, "type": "function", "function": {"name": null, "arguments": ":1}"}}}, "finish_reason": "tool_calls"}]}),
    ] {
        for ev in st.on_data(&chunk.to_string()).unwrap() {
            acc.push(&ev);
        }
    }
    for ev in st.on_data("[DONE]").unwrap() {
        assert!(matches!(ev, StreamEvent::Done { .. }));
        acc.push(&ev);
    }
    let r = acc.finish();
    assert_eq!(r.tool_calls().len(), 1);
    assert_eq!(r.tool_calls()[0].id, "0");
    assert_eq!(r.tool_calls()[0].arguments, r#"{"a":1}"#);
    // anything else is still a decode error, not a panic
    let bad = json!({"choices": [{"index": 0, "delta": {"tool_calls": "nope"}}]});
    let err = wire::ChatStreamState::new()
        .on_data(&bad.to_string())
        .unwrap_err();
    assert!(err.is_decode());
}

#[test]
fn content_parts_other_than_text_are_not_the_answer() {
    let body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": [
        {"type": "reasoning", "text": "let me think"},
        {"type": "text", "text": "Hi"},
        {"type": "output_text", "text": " there"},
        {"text": "!"}
    ]}, "finish_reason": "stop"}]});
    let r = wire::parse_chat(body.to_string().as_bytes()).unwrap();
    assert_eq!(r.text(), "Hi there!");
}
