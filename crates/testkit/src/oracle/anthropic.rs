//! Anthropic's Messages API (plain and SSE), model lists and token counting. Input tokens
//! count cached reads and cache writes; `server_tool_use` and its results are not client tool
//! calls.

use serde_json::Value;

use super::{
    Expected, arguments, array, ids, json_answer, listed, set_joined, sse_answer, str_of,
    token_count, u64_of,
};

/// The core name of a `stop_reason`, for the reasons with one.
fn finish(stop_reason: &str) -> Option<&'static str> {
    match stop_reason {
        "end_turn" | "stop_sequence" => Some("stop"),
        "max_tokens" => Some("length"),
        "tool_use" => Some("tool_calls"),
        "refusal" => Some("content_filter"),
        _ => None,
    }
}

fn total_input(u: &Value) -> Option<u64> {
    let base = u64_of(u, "input_tokens")?;
    let cached = ["cache_read_input_tokens", "cache_creation_input_tokens"]
        .iter()
        .filter_map(|k| u64_of(u, k));
    Some(base + cached.sum::<u64>())
}

/// Whether a body or event is an `{"type":"error"}` object.
fn is_error(v: &Value) -> bool {
    str_of(v, "type") == Some("error")
}

/// A Messages answer (`POST /v1/messages` without `stream`).
pub fn messages(status: u16, body: &[u8]) -> Result<Expected, String> {
    json_answer(status, body, is_error, |v| {
        let (mut text, mut reasoning, mut calls) = (String::new(), String::new(), Vec::new());
        for b in array(v, "content", "message")? {
            let s = |k: &str| str_of(b, k).unwrap_or("");
            match s("type") {
                "text" => text.push_str(s("text")),
                "thinking" => reasoning.push_str(s("thinking")),
                "tool_use" => calls.push((
                    s("name").to_owned(),
                    b.get("input").cloned().unwrap_or_else(|| arguments("")),
                )),
                _ => {}
            }
        }
        let u = v.get("usage").unwrap_or(&Value::Null);
        Ok(Expected {
            text: Some(text),
            reasoning: Some(reasoning),
            tool_calls: Some(calls),
            input_tokens: total_input(u),
            output_tokens: u64_of(u, "output_tokens"),
            finish_reason: str_of(v, "stop_reason").and_then(finish).map(str::to_owned),
            ..Expected::default()
        })
    })
}

/// A streamed Messages answer (SSE); an `error` event is the error it means.
pub fn messages_stream(status: u16, body: &[u8]) -> Result<Expected, String> {
    sse_answer(status, body, is_error, message_events)
}

/// The events of a streamed Messages answer (none an error).
fn message_events(events: Vec<Value>) -> Result<Expected, String> {
    let mut e = Expected::default();
    let (mut text, mut reasoning) = (String::new(), String::new());
    let mut calls: Vec<(u64, String, String)> = Vec::new();
    let mut seen = false;
    for v in &events {
        let index = u64_of(v, "index").unwrap_or(0);
        match str_of(v, "type").unwrap_or("") {
            "message_start" => {
                seen = true;
                let u = v.pointer("/message/usage").unwrap_or(&Value::Null);
                e.input_tokens = total_input(u);
                e.output_tokens = u64_of(u, "output_tokens");
            }
            "content_block_start"
                if v.pointer("/content_block/type").and_then(Value::as_str) == Some("tool_use") =>
            {
                calls.push((
                    index,
                    v.pointer("/content_block/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    String::new(),
                ));
            }
            "content_block_delta" => {
                let d = &v["delta"];
                let s = |k: &str| str_of(d, k).unwrap_or("");
                match s("type") {
                    "text_delta" => text.push_str(s("text")),
                    "thinking_delta" => reasoning.push_str(s("thinking")),
                    "input_json_delta" => {
                        if let Some(c) = calls.iter_mut().find(|c| c.0 == index) {
                            c.2.push_str(s("partial_json"));
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                let u = &v["usage"];
                if let Some(o) = u64_of(u, "output_tokens") {
                    e.output_tokens = Some(o);
                }
                if let Some(i) = total_input(u) {
                    e.input_tokens = Some(i);
                }
                if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    e.finish_reason = finish(r).map(str::to_owned);
                }
            }
            _ => {}
        }
    }
    if !seen {
        return Err("the recorded stream has no message_start".to_owned());
    }
    set_joined(&mut e, text, reasoning, calls);
    Ok(e)
}

/// A model listing (`GET /v1/models`): the ids in order.
pub fn models(status: u16, body: &[u8]) -> Result<Expected, String> {
    json_answer(status, body, is_error, |v| {
        Ok(ids(listed(array(v, "data", "model list")?, |m| {
            str_of(m, "id")
        })))
    })
}

/// A token count (`POST /v1/messages/count_tokens`).
pub fn count_tokens(status: u16, body: &[u8]) -> Result<Expected, String> {
    json_answer(status, body, is_error, |v| token_count(v, "input_tokens"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::refused;
    use infermux_core::ErrorKind;
    use serde_json::json;

    #[test]
    fn plain_messages_with_tools_thinking_and_cache() {
        let body = br#"{"type":"message","content":[{"type":"thinking","thinking":"hm"},{"type":"text","text":"Hi"},{"type":"server_tool_use","name":"web_search","input":{}},{"type":"tool_use","name":"f","input":{"a":1}}],"stop_reason":"tool_use","usage":{"input_tokens":3,"cache_read_input_tokens":10,"output_tokens":4}}"#;
        let e = messages(200, body).unwrap();
        assert_eq!(e.text.as_deref(), Some("Hi"));
        assert_eq!(e.reasoning.as_deref(), Some("hm"));
        assert_eq!(e.tool_calls, Some(vec![("f".into(), json!({"a": 1}))]));
        assert_eq!((e.input_tokens, e.output_tokens), (Some(13), Some(4)));
        assert_eq!(e.finish_reason.as_deref(), Some("tool_calls"));
        refused(&e, |g| g.output_tokens = None);
        assert!(messages(200, br#"{"type":"message"}"#).is_err());
    }

    #[test]
    fn streams_and_errors() {
        let body = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"name\":\"f\"}}\n\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"b\\\":\"}}\n\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"2}\"}}\n\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n";
        let e = messages_stream(200, body).unwrap();
        assert_eq!(e.text.as_deref(), Some("Hi"));
        assert_eq!(e.tool_calls, Some(vec![("f".into(), json!({"b": 2}))]));
        assert_eq!((e.input_tokens, e.output_tokens), (Some(5), Some(9)));
        let err = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        assert_eq!(
            messages_stream(200, err).unwrap().error,
            Some(ErrorKind::Overloaded)
        );
        assert!(messages_stream(200, b"data: {\"type\":\"ping\"}\n\n").is_err());
        let ns = br#"{"type":"error","error":{"type":"not_supported_error","message":"no"}}"#;
        assert_eq!(
            messages(400, ns).unwrap().error,
            Some(ErrorKind::Unsupported)
        );
        assert_eq!(
            models(200, br#"{"data":[{"id":"claude"}]}"#).unwrap().ids,
            Some(vec!["claude".into()])
        );
        assert_eq!(
            count_tokens(200, br#"{"input_tokens":12}"#)
                .unwrap()
                .token_count,
            Some(12)
        );
        assert!(count_tokens(200, b"{}").is_err());
    }
}
