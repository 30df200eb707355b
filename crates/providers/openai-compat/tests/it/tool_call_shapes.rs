//! Tool calls in the shapes compatible servers really send decode: numeric ids, arguments as a
//! JSON object, and `tool_calls` as one object instead of a list; content given as parts.

use infermux_core::{FinishReason, StreamAccumulator, StreamEvent};
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

/// The legacy single call (a request with `functions`): OpenAI's answer, as recorded
/// (openllmetry's `test_open_ai_function_calls` cassette, gpt-4-0613), is a tool call that
/// finished with `tool_calls` — before, an empty answer finishing with `Other("function_call")`.
#[test]
fn a_legacy_function_call_is_the_answers_tool_call() {
    let body = br#"{"id":"chatcmpl-DPTDreURJooDVcZZ6Sbh6Fh0oCyz0","object":"chat.completion","created":1774962903,"model":"gpt-4-0613","choices":[{"index":0,"message":{"role":"assistant","content":null,"function_call":{"name":"get_current_weather","arguments":"{\n  \"location\": \"Boston, MA\"\n}"},"refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"function_call"}],"usage":{"prompt_tokens":82,"completion_tokens":18,"total_tokens":100}}"#;
    let r = wire::parse_chat(body).unwrap();
    assert_eq!(r.tool_calls().len(), 1);
    // it has no id: one is made from the answer's, for a follow-up (any provider's) to name
    assert_eq!(
        r.tool_calls()[0].id,
        "call_chatcmpl-DPTDreURJooDVcZZ6Sbh6Fh0oCyz0"
    );
    assert_eq!(r.tool_calls()[0].name, "get_current_weather");
    assert_eq!(
        r.tool_calls()[0].parsed_arguments().unwrap(),
        json!({"location": "Boston, MA"})
    );
    assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
    // `tool_calls` given as well wins: the legacy field is read only without it
    let both = json!({"choices": [{"index": 0, "message": {"role": "assistant",
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        "function_call": {"name": "g", "arguments": "{}"}}, "finish_reason": "tool_calls"}]});
    let r = wire::parse_chat(both.to_string().as_bytes()).unwrap();
    assert_eq!(r.tool_calls().len(), 1);
    assert_eq!(r.tool_calls()[0].name, "f");
    // a `function_call` that is no call (not an object, or neither a name nor arguments) is
    // none, not an error nor an empty call
    for odd in [
        json!("auto"),
        json!([]),
        json!({}),
        json!({"name": null, "arguments": null}),
        json!({"name": false}),
    ] {
        let body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi",
            "function_call": odd}, "finish_reason": "stop"}]});
        let r = wire::parse_chat(body.to_string().as_bytes()).unwrap();
        assert!(r.tool_calls().is_empty(), "{odd}");
    }
}

/// Streamed, the legacy call comes in pieces of `delta.function_call` (its name first, then
/// its arguments' text): one tool call at index 0.
#[test]
fn a_streamed_legacy_function_call_is_one_tool_call() {
    let mut st = wire::ChatStreamState::new();
    let mut acc = StreamAccumulator::new();
    for chunk in [
        json!({"id": "c", "model": "gpt-4-0613", "choices": [{"index": 0, "delta": {"role": "assistant", "content": null, "function_call": {"name": "get_current_weather", "arguments": ""}}, "finish_reason": null}]}),
        json!({"id": "c", "choices": [{"index": 0, "delta": {"function_call": {"arguments": "{\n  \"location\""}}, "finish_reason": null}]}),
        json!({"id": "c", "choices": [{"index": 0, "delta": {"function_call": {"arguments": ": \"Boston\"\n}"}}, "finish_reason": null}]}),
        json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "function_call"}]}),
    ] {
        for ev in st.on_data(&chunk.to_string()).unwrap() {
            acc.push(&ev);
        }
    }
    for ev in st.on_data("[DONE]").unwrap() {
        acc.push(&ev);
    }
    let r = acc.finish();
    assert_eq!(r.tool_calls().len(), 1);
    assert_eq!(r.tool_calls()[0].id, "call_c");
    assert_eq!(r.tool_calls()[0].name, "get_current_weather");
    assert_eq!(
        r.tool_calls()[0].parsed_arguments().unwrap(),
        json!({"location": "Boston"})
    );
    assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
    // beside `"tool_calls": []` it is still read (as a whole answer reads it); after real
    // tool calls, a `function_call` piece is not (it would run into call 0's arguments)
    let mut st = wire::ChatStreamState::new();
    let events = st
        .on_data(&json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [], "function_call": {"name": "f", "arguments": "{}"}}}]}).to_string())
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, StreamEvent::ToolCallDelta { name: Some(n), .. } if n == "f"))
    );
    let mut st = wire::ChatStreamState::new();
    st.on_data(&json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "t", "function": {"name": "g", "arguments": "{"}}]}}]}).to_string())
        .unwrap();
    let events = st
        .on_data(&json!({"id": "c", "choices": [{"index": 0, "delta": {"function_call": {"arguments": "oops"}}}]}).to_string())
        .unwrap();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, StreamEvent::ToolCallDelta { .. })),
        "{events:?}"
    );
}

/// The prompt tokens written to the cache (`prompt_tokens_details.cache_write_tokens`, OpenAI's
/// `CompletionUsage`) are the usage's cache creation tokens, plain and streamed; they were
/// dropped.
#[test]
fn cache_write_tokens_are_the_usage_s_cache_creation() {
    let usage = json!({"prompt_tokens": 120, "completion_tokens": 5, "total_tokens": 125,
        "prompt_tokens_details": {"cached_tokens": 20, "cache_write_tokens": 80}});
    let body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"},
        "finish_reason": "stop"}], "usage": usage});
    let u = wire::parse_chat(body.to_string().as_bytes())
        .unwrap()
        .usage
        .unwrap();
    assert_eq!(
        (u.cached_input_tokens, u.cache_creation_input_tokens),
        (Some(20), Some(80))
    );
    let mut st = wire::ChatStreamState::new();
    let events = st
        .on_data(&json!({"choices": [], "usage": usage}).to_string())
        .unwrap();
    let Some(StreamEvent::Usage(u)) = events.last() else {
        panic!("no usage: {events:?}")
    };
    assert_eq!(u.cache_creation_input_tokens, Some(80));
}

/// A web search's sources (`message.annotations`, `url_citation`s: OpenAI's
/// `ChatCompletionResponseMessage.annotations`) are citation parts after the text, plain and
/// streamed; they were dropped. Anything but a list of objects there is none.
#[test]
fn annotations_are_citations_after_the_text() {
    let citation = json!({"type": "url_citation", "url_citation": {"start_index": 0, "end_index": 9,
        "url": "https://example.com/paris", "title": "Paris"}});
    let body = json!({"choices": [{"index": 0, "message": {"role": "assistant",
        "content": "Paris it is.", "annotations": [citation, 7]}, "finish_reason": "stop"}]});
    let r = wire::parse_chat(body.to_string().as_bytes()).unwrap();
    assert_eq!(
        r.message.content,
        vec![
            infermux_core::ContentPart::text("Paris it is."),
            infermux_core::ContentPart::Citation {
                raw: citation.clone()
            },
        ]
    );
    assert_eq!(r.text(), "Paris it is.");
    let mut st = wire::ChatStreamState::new();
    let mut acc = StreamAccumulator::new();
    // the source arrives between pieces of the text: it still comes after the whole text
    for chunk in [
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Paris"}}]}),
        json!({"choices": [{"index": 0, "delta": {"annotations": [citation]}}]}),
        json!({"choices": [{"index": 0, "delta": {"content": " it is."}, "finish_reason": "stop"}]}),
    ] {
        for ev in st.on_data(&chunk.to_string()).unwrap() {
            acc.push(&ev);
        }
    }
    for ev in st.on_data("[DONE]").unwrap() {
        acc.push(&ev);
    }
    assert_eq!(acc.finish().message.content, r.message.content);
    for odd in [json!(null), json!("x"), json!({"a": 1})] {
        let body = json!({"choices": [{"index": 0, "message": {"role": "assistant",
            "content": "Hi", "annotations": odd}, "finish_reason": "stop"}]});
        let r = wire::parse_chat(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            r.message.content,
            vec![infermux_core::ContentPart::text("Hi")]
        );
    }
}
