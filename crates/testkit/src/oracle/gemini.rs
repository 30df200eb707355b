//! Gemini's native API: `generateContent` and `streamGenerateContent` (a JSON array without
//! `alt=sse`, SSE with it), `batchEmbedContents` / `embedContent`, model lists and
//! `countTokens`. A safety block in a 200 is a `content_filter` error; thought parts are
//! reasoning; output tokens count thoughts.

use infermux_core::ErrorKind;
use serde_json::Value;

use super::{Expected, embedded_error_kind, is_error_object, json, sse_payloads, status_error};

fn error_of(status: u16, body: &[u8]) -> Option<Expected> {
    if let Some(e) = status_error(status, body) {
        return Some(e);
    }
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(is_error_object)
        .map(|v| Expected::error(embedded_error_kind(&v)))
}

/// The chunks of a `generateContent` body: one object, a JSON array of them, or SSE.
fn chunks(body: &[u8]) -> Result<Vec<Value>, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'[') => match json(body)? {
            Value::Array(xs) => Ok(xs),
            _ => Err("the recorded stream is not a JSON array".to_owned()),
        },
        Some(b'{') => Ok(vec![json(body)?]),
        _ => {
            let xs = sse_payloads(body);
            if xs.is_empty() {
                Err("the recorded body has no Gemini chunks".to_owned())
            } else {
                Ok(xs)
            }
        }
    }
}

const BLOCKED: [&str; 5] = [
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
];

/// A `generateContent` answer, plain or streamed (either way of streaming).
pub fn generate(status: u16, body: &[u8]) -> Result<Expected, String> {
    if let Some(e) = error_of(status, body) {
        return Ok(e);
    }
    let chunks = chunks(body)?;
    let mut e = Expected::default();
    let (mut text, mut reasoning, mut calls) = (String::new(), String::new(), Vec::new());
    let mut finish = None;
    for c in &chunks {
        if is_error_object(c) {
            return Ok(Expected::error(embedded_error_kind(c)));
        }
        if c.pointer("/promptFeedback/blockReason").is_some() {
            return Ok(Expected::error(ErrorKind::ContentFilter));
        }
        let cand = c.pointer("/candidates/0").unwrap_or(&Value::Null);
        if let Some(r) = cand.get("finishReason").and_then(Value::as_str) {
            if BLOCKED.contains(&r) {
                return Ok(Expected::error(ErrorKind::ContentFilter));
            }
            finish = Some(r.to_owned());
        }
        for p in cand
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(fc) = p.get("functionCall") {
                calls.push((
                    fc.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    fc.get("args")
                        .cloned()
                        .unwrap_or_else(|| super::arguments("")),
                ));
            } else if let Some(t) = p.get("text").and_then(Value::as_str) {
                if p.get("thought") == Some(&Value::Bool(true)) {
                    reasoning.push_str(t);
                } else {
                    text.push_str(t);
                }
            }
        }
        if let Some(u) = c.get("usageMetadata") {
            e.input_tokens = u.get("promptTokenCount").and_then(Value::as_u64);
            let out = u.get("candidatesTokenCount").and_then(Value::as_u64);
            let thoughts = u.get("thoughtsTokenCount").and_then(Value::as_u64);
            e.output_tokens = match (out, thoughts) {
                (None, None) => e.input_tokens.map(|_| 0),
                (o, t) => Some(o.unwrap_or(0) + t.unwrap_or(0)),
            };
        }
    }
    e.finish_reason = match finish.as_deref() {
        Some("STOP") if !calls.is_empty() => Some("tool_calls".to_owned()),
        Some("STOP") => Some("stop".to_owned()),
        Some("MAX_TOKENS") => Some("length".to_owned()),
        _ => None,
    };
    e.text = Some(text);
    e.reasoning = Some(reasoning);
    e.tool_calls = Some(calls);
    Ok(e)
}

/// A `ContentEmbedding`'s `values`.
fn values(e: &Value) -> Result<Vec<f32>, String> {
    super::floats(
        e.get("values")
            .and_then(Value::as_array)
            .ok_or("a recorded embedding has no values")?,
    )
}

fn vectors(xs: Vec<Vec<f32>>) -> Expected {
    Expected {
        vectors: Some((xs.len(), xs.first().map_or(0, Vec::len))),
        embeddings: Some(xs),
        ..Expected::default()
    }
}

/// A `batchEmbedContents` answer: every vector, the count and the first's dimension.
pub fn batch_embed(status: u16, body: &[u8]) -> Result<Expected, String> {
    if let Some(e) = error_of(status, body) {
        return Ok(e);
    }
    let v = json(body)?;
    let xs = v
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or("the recorded answer has no embeddings")?;
    Ok(vectors(xs.iter().map(values).collect::<Result<_, _>>()?))
}

/// An `embedContent` answer: one vector.
pub fn embed_one(status: u16, body: &[u8]) -> Result<Expected, String> {
    if let Some(e) = error_of(status, body) {
        return Ok(e);
    }
    let v = json(body)?;
    let x = v
        .get("embedding")
        .ok_or("the recorded answer has no embedding")?;
    Ok(vectors(vec![values(x)?]))
}

/// A model listing (`GET …/models`): the ids without the `models/` prefix.
pub fn models(status: u16, body: &[u8]) -> Result<Expected, String> {
    if let Some(e) = error_of(status, body) {
        return Ok(e);
    }
    let v = json(body)?;
    let xs = v
        .get("models")
        .and_then(Value::as_array)
        .ok_or("the recorded model list has no models")?;
    Ok(Expected {
        ids: Some(
            xs.iter()
                .map(|m| {
                    let name = m.get("name").and_then(Value::as_str).unwrap_or("");
                    name.strip_prefix("models/").unwrap_or(name).to_owned()
                })
                .collect(),
        ),
        ..Expected::default()
    })
}

/// A `countTokens` answer.
pub fn count_tokens(status: u16, body: &[u8]) -> Result<Expected, String> {
    if let Some(e) = error_of(status, body) {
        return Ok(e);
    }
    let v = json(body)?;
    Ok(Expected {
        token_count: Some(
            v.get("totalTokens")
                .and_then(Value::as_u64)
                .ok_or("the recorded count has no totalTokens")?,
        ),
        ..Expected::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_array_and_sse_answers() {
        let chunk = r#"{"candidates":[{"content":{"parts":[{"text":"why","thought":true},{"text":"Hi"},{"functionCall":{"name":"f","args":{"x":1}}}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"thoughtsTokenCount":3}}"#;
        for body in [
            chunk.to_owned(),
            format!("[{chunk}]"),
            format!("data: {chunk}\r\n\r\n"),
        ] {
            let e = generate(200, body.as_bytes()).unwrap();
            assert_eq!(e.text.as_deref(), Some("Hi"));
            assert_eq!(e.reasoning.as_deref(), Some("why"));
            assert_eq!(e.tool_calls, Some(vec![("f".into(), json!({"x": 1}))]));
            assert_eq!((e.input_tokens, e.output_tokens), (Some(4), Some(5)));
            assert_eq!(e.finish_reason.as_deref(), Some("tool_calls"));
        }
        let blocked = br#"{"promptFeedback":{"blockReason":"SAFETY"}}"#;
        assert_eq!(
            generate(200, blocked).unwrap().error,
            Some(ErrorKind::ContentFilter)
        );
        assert!(generate(200, b"not json").is_err());
    }

    #[test]
    fn embeddings_models_counts() {
        let e = batch_embed(
            200,
            br#"{"embeddings":[{"values":[1,2]},{"values":[3,4]}]}"#,
        )
        .unwrap();
        assert_eq!(e.vectors, Some((2, 2)));
        let mut fewer = e.clone();
        fewer.vectors = Some((1, 2));
        assert!(e.check(&fewer).is_err());
        assert_eq!(
            embed_one(200, br#"{"embedding":{"values":[1,2,3]}}"#)
                .unwrap()
                .vectors,
            Some((1, 3))
        );
        assert!(batch_embed(200, b"{}").is_err());
        let m = models(200, br#"{"models":[{"name":"models/gemini-2.0-flash"}]}"#).unwrap();
        assert_eq!(m.ids, Some(vec!["gemini-2.0-flash".into()]));
        assert_eq!(
            count_tokens(200, br#"{"totalTokens":7}"#)
                .unwrap()
                .token_count,
            Some(7)
        );
        let err = br#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#;
        assert_eq!(
            generate(429, err).unwrap().error,
            Some(ErrorKind::RateLimited)
        );
    }

    #[test]
    fn embedding_values_are_read_and_a_wrong_vector_rejected() {
        let e = batch_embed(
            200,
            br#"{"embeddings":[{"values":[0.25,-0.5]},{"values":[1,2]}]}"#,
        )
        .unwrap();
        assert_eq!(e.embeddings, Some(vec![vec![0.25, -0.5], vec![1.0, 2.0]]));
        let mut wrong = e.clone();
        wrong.embeddings = Some(vec![vec![0.25, 0.5], vec![1.0, 2.0]]);
        assert!(
            e.check(&wrong)
                .unwrap_err()
                .contains("vector 0 component 1")
        );
        let one = embed_one(200, br#"{"embedding":{"values":[3]}}"#).unwrap();
        assert_eq!(one.embeddings, Some(vec![vec![3.0]]));
        assert!(embed_one(200, br#"{"embedding":{}}"#).is_err());
    }
}
