//! Gemini's native API: `generateContent` and `streamGenerateContent` (a JSON array without
//! `alt=sse`, SSE with it), `batchEmbedContents` / `embedContent`, model lists and
//! `countTokens`. A safety block in a 200 is a `content_filter` error; thought parts are
//! reasoning; output tokens count thoughts.

use infermux_core::ErrorKind;
use serde_json::Value;

use super::{
    Expected, array, embedded_error_kind, error_of, ids, is_error_object, json, json_answer,
    listed, sse_payloads, str_of, token_count, u64_of, vectors,
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

const BLOCKED: [&str; 9] = [
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "LANGUAGE",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
];

/// A `generateContent` answer, plain or streamed (either way of streaming).
pub fn generate(status: u16, body: &[u8]) -> Result<Expected, String> {
    if let Some(e) = error_of(status, body, is_error_object) {
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
        if let Some(r) = str_of(cand, "finishReason") {
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
                let args = fc.get("args").cloned();
                calls.push((
                    str_of(fc, "name").unwrap_or("").to_owned(),
                    args.unwrap_or_else(|| super::arguments("")),
                ));
            } else if let Some(t) = str_of(p, "text") {
                if p.get("thought") == Some(&Value::Bool(true)) {
                    reasoning.push_str(t);
                } else {
                    text.push_str(t);
                }
            }
        }
        if let Some(u) = c.get("usageMetadata") {
            e.input_tokens = u64_of(u, "promptTokenCount");
            let out = u64_of(u, "candidatesTokenCount");
            let thoughts = u64_of(u, "thoughtsTokenCount");
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
    super::floats(array(e, "values", "embedding")?)
}

/// A `batchEmbedContents` answer: every vector, the count and the first's dimension.
pub fn batch_embed(status: u16, body: &[u8]) -> Result<Expected, String> {
    answer(status, body, |v| {
        let xs = array(v, "embeddings", "answer")?;
        Ok(vectors(xs.iter().map(values).collect::<Result<_, _>>()?))
    })
}

/// An `embedContent` answer: one vector.
pub fn embed_one(status: u16, body: &[u8]) -> Result<Expected, String> {
    answer(status, body, |v| {
        let x = v
            .get("embedding")
            .ok_or("the recorded answer has no embedding")?;
        Ok(vectors(vec![values(x)?]))
    })
}

/// A model listing (`GET …/models`): the ids without the `models/` prefix.
pub fn models(status: u16, body: &[u8]) -> Result<Expected, String> {
    answer(status, body, |v| {
        let xs = array(v, "models", "model list")?;
        Ok(ids(listed(xs, |m| {
            str_of(m, "name").map(|n| n.strip_prefix("models/").unwrap_or(n))
        })))
    })
}

/// A `countTokens` answer.
pub fn count_tokens(status: u16, body: &[u8]) -> Result<Expected, String> {
    answer(status, body, |v| token_count(v, "totalTokens"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::refused;
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
        // every blocking finish reason of the proto is the content filter's error (an answer
        // decoded as a success is refused); a plain stop is not one
        for reason in ["LANGUAGE", "IMAGE_SAFETY", "IMAGE_RECITATION"] {
            let body = format!(
                r#"{{"candidates":[{{"content":{{"parts":[{{"text":"Hi"}}]}},"finishReason":"{reason}"}}]}}"#
            );
            let e = generate(200, body.as_bytes()).unwrap();
            assert_eq!(e.error, Some(ErrorKind::ContentFilter), "{reason}");
            refused(&e, |g| {
                g.error = None;
                g.text = Some("Hi".into());
            });
        }
        let stop =
            br#"{"candidates":[{"content":{"parts":[{"text":"Hi"}]},"finishReason":"STOP"}]}"#;
        assert_eq!(generate(200, stop).unwrap().error, None);
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
        refused(&e, |g| g.vectors = Some((1, 2)));
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
        assert!(
            refused(&e, |g| g.embeddings =
                Some(vec![vec![0.25, 0.5], vec![1.0, 2.0]]))
            .contains("vector 0 component 1")
        );
        let one = embed_one(200, br#"{"embedding":{"values":[3]}}"#).unwrap();
        assert_eq!(one.embeddings, Some(vec![vec![3.0]]));
        assert!(embed_one(200, br#"{"embedding":{}}"#).is_err());
    }
}
