//! The OpenAI wire format (also Groq, vLLM, llama.cpp, TGI's and Ollama's `/v1`, the HF
//! router, Gemini's OpenAI-compatible endpoint): chat and completions plain and streamed,
//! embeddings, model lists, the Responses API, moderation, images, speech, transcription and
//! files.

use serde_json::Value;

use super::{
    Expected, arguments, array, embedded_error_kind, error_of, fnv1a, function_call, ids,
    is_error_object, json_answer, listed, set_joined, sse_answer, sse_events, status_error, str_of,
    u64_of, vectors,
};

/// A plain answer: a recorded error status or an error object in a 2xx body, else `read` of
/// the JSON body.
fn answer(
    status: u16,
    body: &[u8],
    read: impl FnOnce(&Value) -> Result<Expected, String>,
) -> Result<Expected, String> {
    json_answer(status, body, is_error_object, read)
}

/// The choice answering the first prompt: index 0 wherever it is listed, else the first.
fn first_choice(v: &Value) -> Option<&Value> {
    let choices = v.get("choices")?.as_array()?;
    choices
        .iter()
        .find(|c| u64_of(c, "index") == Some(0))
        .or_else(|| choices.first())
}

/// The usage of a chat or completion body (or chunk), when it has one (`usage`, or Groq's
/// `x_groq.usage`), into `e`.
fn set_usage(e: &mut Expected, v: &Value) {
    let usage = v
        .get("usage")
        .filter(|u| u.is_object())
        .or_else(|| v.pointer("/x_groq/usage").filter(|u| u.is_object()));
    if let Some(u) = usage {
        e.input_tokens = u64_of(u, "prompt_tokens");
        e.output_tokens = u64_of(u, "completion_tokens");
        e.cached_input_tokens = u
            .pointer("/prompt_tokens_details/cached_tokens")
            .and_then(Value::as_u64);
    }
}

/// The content of a message or delta, and its reasoning (`reasoning_content`, or
/// `reasoning`).
fn text_and_reasoning(m: &Value) -> (&str, &str) {
    let reasoning = str_of(m, "reasoning_content").or_else(|| str_of(m, "reasoning"));
    (str_of(m, "content").unwrap_or(""), reasoning.unwrap_or(""))
}

/// The choice of a plain answer (see [`first_choice`]) read by `read`, with the answer's finish
/// reason and usage.
fn choice_answer(
    status: u16,
    body: &[u8],
    what: &str,
    read: impl FnOnce(&Value) -> Result<Expected, String>,
) -> Result<Expected, String> {
    answer(status, body, |v| {
        let c = first_choice(v).ok_or_else(|| format!("the recorded {what} has no choices"))?;
        let mut e = read(c)?;
        e.finish_reason = str_of(c, "finish_reason").map(finish_name);
        set_usage(&mut e, v);
        Ok(e)
    })
}

/// A streamed answer: the finish reason and usage wherever a chunk has them, and each choice
/// answering the first prompt (index 0) handed to `read` in order; `what` names the chunks in
/// the refusal of a stream without any `choices`.
fn choice_stream(
    status: u16,
    body: &[u8],
    what: &str,
    mut read: impl FnMut(&Value),
) -> Result<Expected, String> {
    sse_answer(status, body, is_error_object, |chunks| {
        let mut e = Expected::default();
        let mut seen = false;
        for v in &chunks {
            set_usage(&mut e, v);
            let Some(choices) = v.get("choices").and_then(Value::as_array) else {
                continue;
            };
            seen = true;
            for c in choices
                .iter()
                .filter(|c| u64_of(c, "index").unwrap_or(0) == 0)
            {
                if let Some(f) = str_of(c, "finish_reason") {
                    e.finish_reason = Some(finish_name(f));
                }
                read(c);
            }
        }
        if !seen {
            return Err(format!("the recorded stream has no {what} chunks"));
        }
        Ok(e)
    })
}

/// A finish reason as the core names it: OpenAI's legacy `function_call` (the answer to a
/// request with `functions`) is the model calling a tool, `tool_calls`.
fn finish_name(f: &str) -> String {
    match f {
        "function_call" => "tool_calls".to_owned(),
        other => other.to_owned(),
    }
}

/// A legacy single call (`{"name", "arguments"}`) as a tool call.
fn legacy_call(f: &Value) -> (String, Value) {
    function_call(&serde_json::json!({ "function": f }))
}

/// Whether `f` is a legacy call at all: an object with a name or arguments.
fn is_legacy_call(f: &&Value) -> bool {
    let named = f
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    named || f.get("arguments").is_some_and(|a| !a.is_null())
}

/// A chat completion (`POST …/chat/completions` without `stream`).
pub fn chat(status: u16, body: &[u8]) -> Result<Expected, String> {
    choice_answer(status, body, "chat answer", |c| {
        let m = c
            .get("message")
            .ok_or("the recorded choice has no message")?;
        let (text, reasoning) = text_and_reasoning(m);
        let mut calls: Vec<_> = m
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(function_call)
            .collect();
        let legacy = m.get("function_call").filter(is_legacy_call);
        if let (true, Some(f)) = (calls.is_empty(), legacy) {
            calls.push(legacy_call(f));
        }
        Ok(Expected {
            text: Some(text.to_owned()),
            reasoning: Some(reasoning.to_owned()),
            tool_calls: Some(calls),
            ..Expected::default()
        })
    })
}

/// A streamed chat completion (SSE `chat.completion.chunk`s); an error object inside the
/// stream is the error it means.
pub fn chat_stream(status: u16, body: &[u8]) -> Result<Expected, String> {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls: Vec<(u64, String, String)> = Vec::new();
    let mut e = choice_stream(status, body, "chat", |c| {
        let Some(d) = c.get("delta") else { return };
        let (t, r) = text_and_reasoning(d);
        text.push_str(t);
        reasoning.push_str(r);
        let legacy = d
            .get("function_call")
            .filter(is_legacy_call)
            .filter(|_| {
                // not beside tool calls (an empty list is none)
                d.get("tool_calls")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
                    && !d.get("tool_calls").is_some_and(Value::is_object)
            })
            .map(|f| vec![serde_json::json!({ "index": 0, "function": f })]);
        let deltas = d.get("tool_calls").and_then(Value::as_array);
        for (pos, t) in deltas
            .into_iter()
            .flatten()
            .chain(legacy.iter().flatten())
            .enumerate()
        {
            let i = u64_of(t, "index").unwrap_or(pos as u64);
            let slot = match calls.iter().position(|c| c.0 == i) {
                Some(p) => p,
                None => {
                    calls.push((i, String::new(), String::new()));
                    calls.len() - 1
                }
            };
            if let Some(n) = t.pointer("/function/name").and_then(Value::as_str) {
                calls[slot].1.push_str(n);
            }
            match t.pointer("/function/arguments") {
                Some(Value::String(s)) => calls[slot].2.push_str(s),
                Some(Value::Null) | None => {}
                Some(other) => calls[slot].2 = other.to_string(),
            }
        }
    })?;
    if e.error.is_none() {
        set_joined(&mut e, text, reasoning, calls);
    }
    Ok(e)
}

/// A legacy completion (`POST …/completions` without `stream`).
pub fn completion(status: u16, body: &[u8]) -> Result<Expected, String> {
    choice_answer(status, body, "completion", |c| {
        Ok(Expected {
            text: Some(str_of(c, "text").unwrap_or("").to_owned()),
            ..Expected::default()
        })
    })
}

/// A streamed legacy completion.
pub fn completion_stream(status: u16, body: &[u8]) -> Result<Expected, String> {
    let (mut text, mut seen) = (String::new(), false);
    let mut e = choice_stream(status, body, "completion", |c| {
        seen = true;
        text.push_str(str_of(c, "text").unwrap_or(""));
    })?;
    if e.error.is_none() {
        if !seen {
            return Err("the recorded stream has no completion chunks".to_owned());
        }
        e.text = Some(text);
    }
    Ok(e)
}

/// A vector given as numbers or as base64 of little-endian `f32`s.
pub(crate) fn vector(v: &Value) -> Result<Vec<f32>, String> {
    match v {
        Value::Array(xs) => super::floats(xs),
        Value::String(s) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("a recorded base64 embedding does not decode: {e}"))?;
            if bytes.len() % 4 != 0 {
                return Err(format!(
                    "a recorded base64 embedding has {} bytes, not whole f32s",
                    bytes.len()
                ));
            }
            Ok(bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        }
        _ => Err("a recorded embedding is neither numbers nor base64".to_owned()),
    }
}

/// An embeddings answer: every vector (numbers or base64, in `index` order when the
/// recording gives indexes), the count and the first's dimension, the prompt tokens.
pub fn embeddings(status: u16, body: &[u8]) -> Result<Expected, String> {
    answer(status, body, |v| {
        let data = array(v, "data", "embeddings answer")?;
        let mut items: Vec<(u64, &Value)> = data
            .iter()
            .enumerate()
            .map(|(pos, d)| (u64_of(d, "index").unwrap_or(pos as u64), d))
            .collect();
        items.sort_by_key(|(i, _)| *i);
        let xs = items
            .iter()
            .map(|(_, d)| {
                vector(
                    d.get("embedding")
                        .ok_or("a recorded embedding has no `embedding`")?,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Expected {
            input_tokens: v.pointer("/usage/prompt_tokens").and_then(Value::as_u64),
            ..vectors(xs)
        })
    })
}

/// A model listing (`GET …/models`): the ids in order, and their owners when any is said.
pub fn models(status: u16, body: &[u8]) -> Result<Expected, String> {
    answer(status, body, |v| {
        let data = array(v, "data", "model list")?;
        let owned = data.iter().any(|m| str_of(m, "owned_by").is_some());
        Ok(Expected {
            owners: owned.then(|| listed(data, |m| str_of(m, "owned_by"))),
            ..ids(listed(data, |m| str_of(m, "id")))
        })
    })
}

/// The message of a recorded error body: `error.message`, a top-level `message`, or an
/// `error` string (llama.cpp, TGI); `None` when the body says none.
pub fn error_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.pointer("/error/message")
        .or_else(|| v.get("message"))
        .or_else(|| v.get("error"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The text and function calls of a Responses API `output` array.
fn responses_output(output: &[Value], e: &mut Expected) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for item in output {
        match str_of(item, "type") {
            Some("message") => {
                for part in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|p| str_of(p, "type") == Some("output_text"))
                {
                    text.push_str(str_of(part, "text").unwrap_or(""));
                }
            }
            Some("function_call") => calls.push((
                str_of(item, "name").unwrap_or("").to_owned(),
                arguments(str_of(item, "arguments").unwrap_or("")),
            )),
            _ => {}
        }
    }
    e.text = Some(text);
    e.tool_calls = Some(calls);
}

fn responses_usage(e: &mut Expected, u: Option<&Value>) {
    if let Some(u) = u.filter(|u| u.is_object()) {
        e.input_tokens = u64_of(u, "input_tokens");
        e.output_tokens = u64_of(u, "output_tokens");
    }
}

/// A Responses API answer (`POST /v1/responses` without `stream`); a failed response is the
/// error it means.
pub fn responses(status: u16, body: &[u8]) -> Result<Expected, String> {
    answer(status, body, |v| {
        if str_of(v, "status") == Some("failed") {
            return Ok(Expected::error(embedded_error_kind(
                v.get("error").unwrap_or(&Value::Null),
            )));
        }
        let output = array(v, "output", "response")?;
        let mut e = Expected::default();
        responses_output(output, &mut e);
        responses_usage(&mut e, v.get("usage"));
        Ok(e)
    })
}

/// A streamed Responses API answer: text from the deltas, function calls from the finished
/// output items, usage from `response.completed`; `error` or `response.failed` is the error
/// it means.
pub fn responses_stream(status: u16, body: &[u8]) -> Result<Expected, String> {
    if let Some(e) = status_error(status, body) {
        return Ok(e);
    }
    let mut e = Expected::default();
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut seen = false;
    for (_, v) in sse_events(body) {
        match str_of(&v, "type") {
            Some("error") => return Ok(Expected::error(embedded_error_kind(&v))),
            Some("response.failed") => {
                return Ok(Expected::error(embedded_error_kind(
                    v.pointer("/response/error").unwrap_or(&Value::Null),
                )));
            }
            Some("response.output_text.delta") => {
                seen = true;
                text.push_str(str_of(&v, "delta").unwrap_or(""));
            }
            Some("response.output_item.done")
                if v.pointer("/item/type").and_then(Value::as_str) == Some("function_call") =>
            {
                seen = true;
                let item = &v["item"];
                calls.push((
                    str_of(item, "name").unwrap_or("").to_owned(),
                    arguments(str_of(item, "arguments").unwrap_or("")),
                ));
            }
            Some("response.completed" | "response.incomplete") => {
                seen = true;
                responses_usage(&mut e, v.pointer("/response/usage"));
            }
            _ => {}
        }
    }
    if !seen {
        return Err("the recorded stream has no Responses API events".to_owned());
    }
    e.text = Some(text);
    e.tool_calls = Some(calls);
    Ok(e)
}

/// A moderation answer: the flagged categories of every result, sorted, joined with `,`.
pub fn moderation(status: u16, body: &[u8]) -> Result<Expected, String> {
    answer(status, body, |v| {
        let flagged = array(v, "results", "moderation")?.iter().map(|r| {
            let mut cats: Vec<&str> = r
                .get("categories")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(_, f)| **f == Value::Bool(true))
                .map(|(k, _)| k.as_str())
                .collect();
            cats.sort_unstable();
            cats.join(",")
        });
        Ok(Expected {
            flagged: Some(flagged.collect()),
            ..Expected::default()
        })
    })
}

/// An image generation answer: how many images.
pub fn images(status: u16, body: &[u8]) -> Result<Expected, String> {
    answer(status, body, |v| {
        Ok(Expected {
            images: Some(array(v, "data", "image answer")?.len()),
            ..Expected::default()
        })
    })
}

/// A speech answer: the audio's byte length and hash.
pub fn speech(status: u16, body: &[u8]) -> Result<Expected, String> {
    if let Some(e) = status_error(status, body) {
        return Ok(e);
    }
    Ok(Expected {
        media: Some((body.len(), fnv1a(body))),
        ..Expected::default()
    })
}

/// A transcription answer (JSON `{"text"}` or plain text).
pub fn transcription(status: u16, body: &[u8]) -> Result<Expected, String> {
    if let Some(e) = error_of(status, body, is_error_object) {
        return Ok(e);
    }
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => str_of(&v, "text")
            .ok_or("the recorded transcription has no text")?
            .to_owned(),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    Ok(Expected {
        text: Some(text),
        ..Expected::default()
    })
}

/// A file upload answer: the file's id.
pub fn file(status: u16, body: &[u8]) -> Result<Expected, String> {
    answer(status, body, |v| {
        let id = str_of(v, "id").ok_or("the recorded file has no id")?;
        Ok(ids(vec![id.to_owned()]))
    })
}

/// A file listing: the ids in order.
pub fn files(status: u16, body: &[u8]) -> Result<Expected, String> {
    models(status, body).map_err(|e| e.replace("model list", "file list"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::refused;
    use infermux_core::ErrorKind;
    use serde_json::json;

    #[test]
    fn chat_reads_text_tools_usage_and_finish() {
        let body = br#"{"choices":[{"index":1,"message":{"content":"second"}},{"index":0,"message":{"content":null,"tool_calls":[{"function":{"name":"w","arguments":"{\"city\":\"Paris\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":9,"completion_tokens":7}}"#;
        let e = chat(200, body).unwrap();
        assert_eq!(e.text.as_deref(), Some(""));
        assert_eq!(
            e.tool_calls,
            Some(vec![("w".into(), json!({"city": "Paris"}))])
        );
        assert_eq!((e.input_tokens, e.output_tokens), (Some(9), Some(7)));
        assert_eq!(e.finish_reason.as_deref(), Some("tool_calls"));
        // a wrong answer is rejected
        refused(&e, |g| {
            g.tool_calls = Some(vec![("w".into(), json!({"city": "Rome"}))])
        });
        // not a chat answer
        assert!(chat(200, br#"{"object":"list"}"#).is_err());
        assert!(chat(200, b"{\"choices\": ").is_err());
    }

    #[test]
    fn chat_stream_joins_deltas_and_finds_errors() {
        let body = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\",\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":1}\"}}]},\"finish_reason\":\"stop\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n";
        let e = chat_stream(200, body).unwrap();
        assert_eq!(e.text.as_deref(), Some("Hello"));
        assert_eq!(e.tool_calls, Some(vec![("f".into(), json!({"a": 1}))]));
        assert_eq!(e.output_tokens, Some(3));
        refused(&e, |g| g.text = Some("Hel".into()));
        let err = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"I\"}}]}\n\ndata: {\"error\":{\"message\":\"x\",\"type\":\"invalid_request_error\",\"code\":\"tool_use_failed\"}}\n\n";
        assert_eq!(
            chat_stream(200, err).unwrap().error,
            Some(ErrorKind::InvalidRequest)
        );
        assert!(chat_stream(200, b"data: {\"object\":\"x\"}\n\n").is_err());
    }

    /// The legacy single call (`function_call`, a request with `functions`) is the answer's
    /// one tool call, finishing with `tool_calls`; an answer that lost it is refused.
    #[test]
    fn a_legacy_function_call_is_expected_as_a_tool_call() {
        let body = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":null,"function_call":{"name":"get_current_weather","arguments":"{\"location\": \"Boston\"}"}},"finish_reason":"function_call"}]}"#;
        let e = chat(200, body).unwrap();
        assert_eq!(
            e.tool_calls,
            Some(vec![(
                "get_current_weather".into(),
                json!({"location": "Boston"})
            )])
        );
        assert_eq!(e.finish_reason.as_deref(), Some("tool_calls"));
        refused(&e, |g| g.tool_calls = Some(Vec::new()));
        refused(&e, |g| g.finish_reason = Some("function_call".into()));
        let stream = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"function_call\":{\"name\":\"f\",\"arguments\":\"\"}}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"function_call\":{\"arguments\":\"{\\\"a\\\":1}\"}}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"function_call\"}]}\n\ndata: [DONE]\n\n";
        let e = chat_stream(200, stream).unwrap();
        assert_eq!(e.tool_calls, Some(vec![("f".into(), json!({"a": 1}))]));
        assert_eq!(e.finish_reason.as_deref(), Some("tool_calls"));
    }

    #[test]
    fn embeddings_models_and_errors() {
        let e = embeddings(200, br#"{"data":[{"embedding":[1,2,3]},{"embedding":[4,5,6]}],"usage":{"prompt_tokens":4}}"#).unwrap();
        assert_eq!(e.vectors, Some((2, 3)));
        refused(&e, |g| g.vectors = Some((1, 3)));
        // base64: 8 bytes are two floats
        let b = embeddings(200, br#"{"data":[{"embedding":"AAAAAAAAgD8="}]}"#).unwrap();
        assert_eq!(b.vectors, Some((1, 2)));
        let m = models(200, br#"{"data":[{"id":"a"},{"id":"b"}]}"#).unwrap();
        assert_eq!(m.ids, Some(vec!["a".into(), "b".into()]));
        assert!(models(200, br#"{"models":[]}"#).is_err());
        let q = chat(429, br#"{"error":{"code":"insufficient_quota"}}"#).unwrap();
        assert_eq!(q.error, Some(ErrorKind::QuotaExceeded));
        let in_body = chat(
            200,
            br#"{"error":{"type":"server_error","message":"boom"}}"#,
        )
        .unwrap();
        assert_eq!(in_body.error, Some(ErrorKind::Server));
    }

    #[test]
    fn responses_plain_and_streamed() {
        let body = br#"{"status":"completed","output":[{"type":"reasoning"},{"type":"message","content":[{"type":"output_text","text":"Hi"}]},{"type":"function_call","name":"f","arguments":"{}"}],"usage":{"input_tokens":5,"output_tokens":6}}"#;
        let e = responses(200, body).unwrap();
        assert_eq!(e.text.as_deref(), Some("Hi"));
        assert_eq!(e.tool_calls, Some(vec![("f".into(), json!({}))]));
        assert_eq!(e.input_tokens, Some(5));
        let s = b"data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hel\"}\n\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"lo\"}\n\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":1,\"output_tokens\":2}}}\n\n";
        let e = responses_stream(200, s).unwrap();
        assert_eq!(e.text.as_deref(), Some("Hello"));
        assert_eq!(e.output_tokens, Some(2));
        let failed = b"data: {\"type\":\"response.failed\",\"response\":{\"error\":{\"code\":\"rate_limit_exceeded\"}}}\n\n";
        assert_eq!(
            responses_stream(200, failed).unwrap().error,
            Some(ErrorKind::RateLimited)
        );
        assert!(responses(200, br#"{"id":"x"}"#).is_err());
    }

    #[test]
    fn media_and_files() {
        let m = moderation(
            200,
            br#"{"results":[{"categories":{"violence":true,"hate":false,"harassment":true}}]}"#,
        )
        .unwrap();
        assert_eq!(m.flagged, Some(vec!["harassment,violence".into()]));
        assert!(moderation(200, b"{}").is_err());
        assert_eq!(
            images(200, br#"{"data":[{"url":"u"},{"url":"v"}]}"#)
                .unwrap()
                .images,
            Some(2)
        );
        let s = speech(200, b"ID3abc").unwrap();
        assert_eq!(s.media, Some((6, fnv1a(b"ID3abc"))));
        assert_ne!(fnv1a(b"ID3abc"), fnv1a(b"ID3abd"));
        assert_eq!(
            transcription(200, br#"{"text":"hello"}"#)
                .unwrap()
                .text
                .as_deref(),
            Some("hello")
        );
        assert_eq!(
            file(200, br#"{"id":"file-1"}"#).unwrap().ids,
            Some(vec!["file-1".into()])
        );
        assert!(file(200, br#"{"object":"file"}"#).is_err());
        assert_eq!(
            files(200, br#"{"data":[{"id":"f"}]}"#).unwrap().ids,
            Some(vec!["f".into()])
        );
    }

    #[test]
    fn embeddings_values_owners_cached_tokens_and_error_messages() {
        // out of order, one as numbers and one as base64 of [0.0, 1.0]
        let body = br#"{"data":[{"index":1,"embedding":"AAAAAAAAgD8="},{"index":0,"embedding":[0.1,-2]}],"usage":{"prompt_tokens":4}}"#;
        let e = embeddings(200, body).unwrap();
        assert_eq!(e.embeddings, Some(vec![vec![0.1, -2.0], vec![0.0, 1.0]]));
        assert_eq!(e.vectors, Some((2, 2)));
        assert!(
            refused(&e, |g| g.embeddings =
                Some(vec![vec![0.0, 1.0], vec![0.1, -2.0]]))
            .contains("vector 0")
        );
        assert!(embeddings(200, br#"{"data":[{"embedding":"AAAA"}]}"#).is_err());
        assert!(embeddings(200, br#"{"data":[{"embedding":["x"]}]}"#).is_err());

        let m = models(200, br#"{"data":[{"id":"a","owned_by":"me"},{"id":"b"}]}"#).unwrap();
        assert_eq!(m.owners, Some(vec!["me".into(), String::new()]));
        assert!(
            refused(&m, |g| g.owners = Some(vec!["you".into(), String::new()]))
                .starts_with("owners")
        );
        assert_eq!(
            models(200, br#"{"data":[{"id":"a"}]}"#).unwrap().owners,
            None
        );

        let c = chat(200, br#"{"choices":[{"index":0,"message":{"content":"x"}}],"usage":{"prompt_tokens":9,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":6}}}"#).unwrap();
        assert_eq!(c.cached_input_tokens, Some(6));
        assert!(
            refused(&c, |g| g.cached_input_tokens = Some(0)).starts_with("cached input tokens")
        );

        let err = br#"{"error":{"code":500,"message":"image input is not supported","type":"server_error"}}"#;
        assert_eq!(
            error_message(err).as_deref(),
            Some("image input is not supported")
        );
        assert_eq!(
            error_message(br#"{"error":"Model is overloaded"}"#).as_deref(),
            Some("Model is overloaded")
        );
        assert_eq!(error_message(b"Internal Server Error"), None);
    }
}
