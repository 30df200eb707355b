//! Text Generation Inference's own routes: `/generate` (also the HF Inference API's text
//! generation, one object or a one-element array), `/generate_stream` (SSE token events, an
//! `{"error", "error_type"}` event is the error it means), `/info` and `/health`.

use serde_json::Value;

use super::{
    Expected, Snapshot, embedded_error_kind, ids, is_error_object, json, sse_answer, status_error,
    str_of, u64_of,
};

fn finish(reason: &str) -> Option<String> {
    match reason {
        "eos_token" | "stop_sequence" | "stop" => Some("stop".to_owned()),
        "length" => Some("length".to_owned()),
        _ => None,
    }
}

/// Usage and finish reason from a `details` object, when it says them.
fn details(e: &mut Expected, d: &Value) {
    if let Some(r) = str_of(d, "finish_reason") {
        e.finish_reason = finish(r);
    }
    let generated = u64_of(d, "generated_tokens");
    let input = u64_of(d, "input_length").or_else(|| {
        d.get("prefill")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .map(|p| p.len() as u64)
    });
    if input.is_some() {
        e.input_tokens = input;
        e.output_tokens = generated;
    }
}

/// A `/generate` answer.
pub fn generate(status: u16, body: &[u8]) -> Result<Expected, String> {
    if let Some(e) = status_error(status, body) {
        return Ok(e);
    }
    let v = json(body)?;
    let one = if v.is_array() { &v[0] } else { &v };
    if is_error_object(one) {
        return Ok(Expected::error(embedded_error_kind(one)));
    }
    let text = str_of(one, "generated_text").ok_or("the recorded answer has no generated_text")?;
    let mut e = Expected {
        text: Some(text.to_owned()),
        ..Expected::default()
    };
    if let Some(d) = one.get("details").filter(|d| d.is_object()) {
        details(&mut e, d);
    }
    Ok(e)
}

/// A `/generate` answer with the headers it came with: [`generate`], and where TGI's
/// `x-prompt-tokens` header counts the prompt, the usage is that many input tokens and the
/// details' `generated_tokens` (the details count the prompt only with
/// `decoder_input_details`, and an encoder-decoder model's `prefill` is its decoder's `<pad>`).
pub fn generate_headed(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Expected, String> {
    let mut e = generate(status, body)?;
    if e.error.is_some() {
        return Ok(e);
    }
    let prompt = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-prompt-tokens"))
        .and_then(|(_, v)| v.trim().parse::<u64>().ok());
    let v = json(body)?;
    let one = if v.is_array() { &v[0] } else { &v };
    let generated = one
        .get("details")
        .filter(|d| d.is_object())
        .and_then(|d| u64_of(d, "generated_tokens"));
    if let (Some(input), Some(output)) = (prompt, generated) {
        e.input_tokens = Some(input);
        e.output_tokens = Some(output);
    }
    Ok(e)
}

/// A `/generate` answer read with its `details`, for a caller that sees them (TGI's own
/// `generate`, not a core completion): the text, the finish reason, every generated token's
/// text and the generated token count (as `output_tokens`, also when the answer has no input
/// length). An answer without details is refused.
pub fn generate_details(status: u16, body: &[u8]) -> Result<Expected, String> {
    let mut e = generate(status, body)?;
    if e.error.is_some() {
        return Ok(e);
    }
    let v = json(body)?;
    let one = if v.is_array() { &v[0] } else { &v };
    let d = one
        .get("details")
        .filter(|d| d.is_object())
        .ok_or("the recorded answer has no details")?;
    let tokens = d
        .get("tokens")
        .and_then(Value::as_array)
        .ok_or("the recorded details have no tokens")?;
    e.tokens = Some(
        tokens
            .iter()
            .map(|t| {
                str_of(t, "text")
                    .map(str::to_owned)
                    .ok_or_else(|| "a recorded token has no text".to_owned())
            })
            .collect::<Result<_, _>>()?,
    );
    e.output_tokens =
        Some(u64_of(d, "generated_tokens").ok_or("the recorded details have no generated_tokens")?);
    Ok(e)
}

/// A `/generate_stream` answer.
pub fn generate_stream(status: u16, body: &[u8]) -> Result<Expected, String> {
    sse_answer(status, body, is_error_object, |events| {
        let mut e = Expected::default();
        let mut text = String::new();
        let mut seen = false;
        for v in &events {
            if let Some(t) = v.get("token") {
                seen = true;
                if t.get("special") != Some(&Value::Bool(true)) {
                    text.push_str(str_of(t, "text").unwrap_or(""));
                }
            }
            if let Some(d) = v.get("details").filter(|d| d.is_object()) {
                details(&mut e, d);
            }
        }
        if !seen {
            return Err("the recorded stream has no token events".to_owned());
        }
        e.text = Some(text);
        Ok(e)
    })
}

/// An `/info` answer: the served `model_id`.
pub fn info(status: u16, body: &[u8]) -> Result<Expected, String> {
    if let Some(e) = status_error(status, body) {
        return Ok(e);
    }
    let id = str_of(&json(body)?, "model_id")
        .ok_or("the recorded info has no model_id")?
        .to_owned();
    Ok(ids(vec![id]))
}

/// A `/health` answer: healthy when 2xx.
pub fn health(status: u16, body: &[u8]) -> Result<Expected, String> {
    Ok(status_error(status, body).unwrap_or(Expected {
        healthy: Some(true),
        ..Expected::default()
    }))
}

/// A snapshot of TGI's own integration tests (`integration-tests/models/__snapshots__`, JSON
/// of what the client received): a `/generate` answer with details, a messages-API answer
/// (`/v1/chat/completions`), a completions answer (`/v1/completions`), or the chunks of a
/// streamed messages-API answer, served back as TGI writes SSE (`data:{…}`, then
/// `data: [DONE]`, which the snapshot does not keep).
pub fn snapshot(text: &str) -> Result<Snapshot, String> {
    let v = json(text.as_bytes())?;
    let json_answer = |route, expected: fn(u16, &[u8]) -> Result<Expected, String>| {
        let body = v.to_string().into_bytes();
        Ok::<_, String>(Snapshot {
            route,
            content_type: "application/json",
            streamed: false,
            expected: expected(200, &body)?,
            body,
        })
    };
    if let Some(chunks) = v.as_array() {
        let mut body: String = chunks.iter().map(|c| format!("data:{c}\n\n")).collect();
        body.push_str("data: [DONE]\n\n");
        let expected = messages(200, body.as_bytes(), true)?;
        return Ok(Snapshot {
            route: "/v1/chat/completions",
            content_type: "text/event-stream",
            streamed: true,
            body: body.into_bytes(),
            expected,
        });
    }
    if v.get("generated_text").is_some() {
        return json_answer("/generate", generate_details);
    }
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .ok_or("the snapshot is neither a TGI nor an OpenAI-format answer")?;
    if choices.iter().any(|c| c.get("text").is_some()) {
        json_answer("/v1/completions", super::openai::completion)
    } else {
        json_answer("/v1/chat/completions", |status, body| {
            messages(status, body, false)
        })
    }
}

/// TGI's Messages API answer (`/v1/chat/completions`), as [`super::openai::chat`] reads it,
/// with TGI's own finish reasons there too: `eos_token` and `stop_sequence` are a stop — with
/// tool calls, `tool_calls`, as is TGI 3.x's `stop` with tool calls.
pub fn messages(status: u16, body: &[u8], stream: bool) -> Result<Expected, String> {
    let mut e = if stream {
        super::openai::chat_stream(status, body)?
    } else {
        super::openai::chat(status, body)?
    };
    if matches!(
        e.finish_reason.as_deref(),
        Some("eos_token" | "stop_sequence" | "stop")
    ) {
        let calls = e.tool_calls.as_ref().is_some_and(|c| !c.is_empty());
        e.finish_reason = Some(if calls { "tool_calls" } else { "stop" }.to_owned());
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::refused;
    use infermux_core::ErrorKind;

    #[test]
    fn generate_plain_and_streamed() {
        let e = generate(200, br#"[{"generated_text":"Paris"}]"#).unwrap();
        assert_eq!(e.text.as_deref(), Some("Paris"));
        refused(&e, |g| g.text = Some("Rome".into()));
        let d = generate(200, br#"{"generated_text":"x","details":{"finish_reason":"length","generated_tokens":5,"prefill":[{"id":1},{"id":2}]}}"#).unwrap();
        assert_eq!((d.input_tokens, d.output_tokens), (Some(2), Some(5)));
        assert_eq!(d.finish_reason.as_deref(), Some("length"));
        assert!(generate(200, br#"{"text":"x"}"#).is_err());
        let s = b"data:{\"token\":{\"text\":\"Hel\",\"special\":false}}\n\ndata:{\"token\":{\"text\":\"lo\",\"special\":false}}\n\ndata:{\"token\":{\"text\":\"</s>\",\"special\":true},\"generated_text\":\"Hello\",\"details\":{\"finish_reason\":\"eos_token\",\"generated_tokens\":3,\"input_length\":4}}\n\n";
        let e = generate_stream(200, s).unwrap();
        assert_eq!(e.text.as_deref(), Some("Hello"));
        assert_eq!((e.input_tokens, e.output_tokens), (Some(4), Some(3)));
        assert_eq!(e.finish_reason.as_deref(), Some("stop"));
        let err = b"data:{\"token\":{\"text\":\"a\"}}\n\ndata:{\"error\":\"Request failed during generation\",\"error_type\":\"generation\"}\n\n";
        assert_eq!(
            generate_stream(200, err).unwrap().error,
            Some(ErrorKind::Server)
        );
        assert_eq!(
            generate(422, b"Input validation error").unwrap().error,
            Some(ErrorKind::InvalidRequest)
        );
        assert!(generate_stream(200, b"data: {}\n\n").is_err());
    }

    #[test]
    fn info_and_health() {
        assert_eq!(
            info(200, br#"{"model_id":"bigscience/bloom"}"#)
                .unwrap()
                .ids,
            Some(vec!["bigscience/bloom".into()])
        );
        assert!(info(200, b"{}").is_err());
        assert_eq!(health(200, b"").unwrap().healthy, Some(true));
        assert_eq!(health(503, b"").unwrap().error, Some(ErrorKind::Server));
    }

    #[test]
    fn the_prompt_s_length_is_tgi_s_header_when_it_sent_one() {
        let body = br#"[{"generated_text":"","details":{"finish_reason":"length","generated_tokens":1,"prefill":[{"id":0,"text":"<pad>"}],"tokens":[{"id":3,"text":" "}]}}]"#;
        // the body alone: the prefill's one token
        let e = generate(200, body).unwrap();
        assert_eq!((e.input_tokens, e.output_tokens), (Some(1), Some(1)));
        let headers = [("X-Prompt-Tokens".to_owned(), "2".to_owned())];
        let e = generate_headed(200, &headers, body).unwrap();
        assert_eq!((e.input_tokens, e.output_tokens), (Some(2), Some(1)));
        refused(&e, |g| g.input_tokens = Some(1));
        // no header: as the body says
        assert_eq!(
            generate_headed(200, &[], body).unwrap(),
            generate(200, body).unwrap()
        );
    }

    #[test]
    fn generate_details_read_tokens_and_count() {
        let body = br#"{"generated_text":" failed:","details":{"finish_reason":"length","generated_tokens":2,"prefill":[],"tokens":[{"id":1,"text":" failed","special":false},{"id":2,"text":":","special":false}]}}"#;
        let e = generate_details(200, body).unwrap();
        assert_eq!(e.tokens, Some(vec![" failed".into(), ":".into()]));
        assert_eq!((e.input_tokens, e.output_tokens), (None, Some(2)));
        assert_eq!(e.text.as_deref(), Some(" failed:"));
        assert!(
            refused(&e, |g| g.tokens = Some(vec![" failed".into(), ";".into()]))
                .contains("token 1")
        );
        refused(&e, |g| g.output_tokens = Some(1));
        // the plain reading has no tokens and, without an input length, no usage
        let plain = generate(200, body).unwrap();
        assert_eq!((plain.tokens, plain.output_tokens), (None, None));
        assert!(generate_details(200, br#"{"generated_text":"x"}"#).is_err());
        assert_eq!(
            generate_details(422, b"Input validation error")
                .unwrap()
                .error,
            Some(ErrorKind::InvalidRequest)
        );
    }

    #[test]
    fn snapshots_are_served_by_their_route() {
        let stream = r#"[{"choices":[{"index":0,"delta":{"content":"OK"}}]},{"choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}]"#;
        let s = snapshot(stream).unwrap();
        assert_eq!(
            (s.route, s.content_type, s.streamed),
            ("/v1/chat/completions", "text/event-stream", true)
        );
        assert!(s.body.starts_with(b"data:{") && s.body.ends_with(b"data: [DONE]\n\n"));
        assert_eq!(s.expected.text.as_deref(), Some("OK!"));
        assert_eq!(s.expected.output_tokens, Some(2));
        let g = snapshot(
            r#"{"generated_text":"x","details":{"generated_tokens":1,"tokens":[{"text":"x"}]}}"#,
        )
        .unwrap();
        assert_eq!(
            (g.route, g.expected.tokens),
            ("/generate", Some(vec!["x".into()]))
        );
        let c = snapshot(r#"{"choices":[{"index":1,"text":"b"},{"index":0,"text":"a"}]}"#).unwrap();
        assert_eq!(
            (c.route, c.expected.text.as_deref()),
            ("/v1/completions", Some("a"))
        );
        let m = snapshot(r#"{"choices":[{"index":0,"message":{"content":"hi"}}]}"#).unwrap();
        assert_eq!((m.route, m.streamed), ("/v1/chat/completions", false));
        assert!(snapshot(r#"{"id":"x"}"#).is_err());
    }
}
