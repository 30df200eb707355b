//! Text Generation Inference's own routes: `/generate` (also the HF Inference API's text
//! generation, one object or a one-element array), `/generate_stream` (SSE token events, an
//! `{"error", "error_type"}` event is the error it means), `/info` and `/health`.

use serde_json::Value;

use super::{Expected, embedded_error_kind, is_error_object, json, sse_events, status_error};

fn finish(reason: &str) -> Option<String> {
    match reason {
        "eos_token" | "stop_sequence" | "stop" => Some("stop".to_owned()),
        "length" => Some("length".to_owned()),
        _ => None,
    }
}

/// Usage and finish reason from a `details` object, when it says them.
fn details(e: &mut Expected, d: &Value) {
    if let Some(r) = d.get("finish_reason").and_then(Value::as_str) {
        e.finish_reason = finish(r);
    }
    let generated = d.get("generated_tokens").and_then(Value::as_u64);
    let input = d.get("input_length").and_then(Value::as_u64).or_else(|| {
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
    let text = one
        .get("generated_text")
        .and_then(Value::as_str)
        .ok_or("the recorded answer has no generated_text")?;
    let mut e = Expected {
        text: Some(text.to_owned()),
        ..Expected::default()
    };
    if let Some(d) = one.get("details").filter(|d| d.is_object()) {
        details(&mut e, d);
    }
    Ok(e)
}

/// A `/generate_stream` answer.
pub fn generate_stream(status: u16, body: &[u8]) -> Result<Expected, String> {
    if let Some(e) = status_error(status, body) {
        return Ok(e);
    }
    let mut e = Expected::default();
    let mut text = String::new();
    let mut seen = false;
    for (event, v) in sse_events(body) {
        if event.as_deref() == Some("error") || is_error_object(&v) {
            return Ok(Expected::error(embedded_error_kind(&v)));
        }
        if let Some(t) = v.get("token") {
            seen = true;
            if t.get("special") != Some(&Value::Bool(true)) {
                text.push_str(t.get("text").and_then(Value::as_str).unwrap_or(""));
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
}

/// An `/info` answer: the served `model_id`.
pub fn info(status: u16, body: &[u8]) -> Result<Expected, String> {
    if let Some(e) = status_error(status, body) {
        return Ok(e);
    }
    let v = json(body)?;
    let id = v
        .get("model_id")
        .and_then(Value::as_str)
        .ok_or("the recorded info has no model_id")?;
    Ok(Expected {
        ids: Some(vec![id.to_owned()]),
        ..Expected::default()
    })
}

/// A `/health` answer: healthy when 2xx.
pub fn health(status: u16, body: &[u8]) -> Result<Expected, String> {
    Ok(status_error(status, body).unwrap_or(Expected {
        healthy: Some(true),
        ..Expected::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use infermux_core::ErrorKind;

    #[test]
    fn generate_plain_and_streamed() {
        let e = generate(200, br#"[{"generated_text":"Paris"}]"#).unwrap();
        assert_eq!(e.text.as_deref(), Some("Paris"));
        let mut wrong = e.clone();
        wrong.text = Some("Rome".into());
        assert!(e.check(&wrong).is_err());
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
}
