//! Ollama's native API: `/api/chat` and `/api/generate` (one JSON object, or NDJSON when
//! streamed), `/api/embed`, the legacy `/api/embeddings` and `/api/tags`. An `{"error": …}`
//! line inside a 200 stream is the error it means; a count Ollama leaves out is zero.

use serde_json::Value;

use super::{
    Expected, array, embedded_error_kind, error_of, float_rows, function_call, ids,
    is_error_object, json, json_answer, listed, status_error, u64_of, vectors,
};

/// The JSON lines of a body (a plain answer is one line).
fn lines(body: &[u8]) -> Result<Vec<Value>, String> {
    let text = String::from_utf8_lossy(body);
    let xs: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if xs.is_empty() {
        // one pretty-printed object
        return json(body).map(|v| vec![v]);
    }
    Ok(xs)
}

fn answer(status: u16, body: &[u8], chat: bool) -> Result<Expected, String> {
    if let Some(e) = status_error(status, body) {
        return Ok(e);
    }
    let mut e = Expected::default();
    let (mut text, mut reasoning, mut calls) = (String::new(), String::new(), Vec::new());
    let mut done = false;
    for v in lines(body)? {
        if is_error_object(&v) {
            return Ok(Expected::error(embedded_error_kind(&v)));
        }
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("");
        if chat {
            text.push_str(s("/message/content"));
            reasoning.push_str(s("/message/thinking"));
            let said = v.pointer("/message/tool_calls").and_then(Value::as_array);
            calls.extend(said.into_iter().flatten().map(function_call));
        } else {
            text.push_str(s("/response"));
            reasoning.push_str(s("/thinking"));
        }
        if v.get("done") == Some(&Value::Bool(true)) {
            done = true;
            // Ollama leaves a zero count out (`omitempty`): a prompt read entirely from its
            // cache has no `prompt_eval_count`
            let input = u64_of(&v, "prompt_eval_count");
            let output = u64_of(&v, "eval_count");
            if input.is_some() || output.is_some() {
                e.input_tokens = Some(input.unwrap_or(0));
                e.output_tokens = Some(output.unwrap_or(0));
            }
        }
    }
    if !done {
        return Err("the recorded answer never says done".to_owned());
    }
    e.text = Some(text);
    e.reasoning = Some(reasoning);
    if chat {
        e.tool_calls = Some(calls);
    }
    Ok(e)
}

/// An `/api/chat` answer, plain or NDJSON.
pub fn chat(status: u16, body: &[u8]) -> Result<Expected, String> {
    answer(status, body, true)
}

/// An `/api/generate` answer, plain or NDJSON.
pub fn generate(status: u16, body: &[u8]) -> Result<Expected, String> {
    answer(status, body, false)
}

/// An `/api/embed` answer: `{"embeddings": [[…], …]}`.
pub fn embed(status: u16, body: &[u8]) -> Result<Expected, String> {
    json_answer(status, body, is_error_object, |v| {
        let xs = float_rows(array(v, "embeddings", "answer")?)?;
        Ok(Expected {
            input_tokens: u64_of(v, "prompt_eval_count"),
            ..vectors(xs)
        })
    })
}

/// The legacy `/api/embeddings` answers of one call, one per input (`{"embedding": […]}`
/// each): every vector, the count and the first's dimension.
pub fn embeddings_legacy(answers: &[(u16, &[u8])]) -> Result<Expected, String> {
    let mut xs = Vec::new();
    for (status, body) in answers {
        if let Some(e) = error_of(*status, body, is_error_object) {
            return Ok(e);
        }
        xs.push(super::floats(array(&json(body)?, "embedding", "answer")?)?);
    }
    if xs.is_empty() {
        return Err("no recorded answer".to_owned());
    }
    Ok(vectors(xs))
}

/// An `/api/tags` answer: the local models' names in order.
pub fn tags(status: u16, body: &[u8]) -> Result<Expected, String> {
    json_answer(status, body, is_error_object, |v| {
        let xs = array(v, "models", "answer")?;
        Ok(ids(listed(xs, |m| {
            m.get("name")
                .or_else(|| m.get("model"))
                .and_then(Value::as_str)
        })))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::refused;
    use infermux_core::ErrorKind;
    use serde_json::json;

    #[test]
    fn ndjson_and_plain_answers() {
        let body = b"{\"message\":{\"content\":\"Hel\"},\"done\":false}\n{\"message\":{\"content\":\"lo\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}}]},\"done\":false}\n{\"message\":{\"content\":\"\"},\"done\":true,\"prompt_eval_count\":3,\"eval_count\":4}\n";
        let e = chat(200, body).unwrap();
        assert_eq!(e.text.as_deref(), Some("Hello"));
        assert_eq!(e.tool_calls, Some(vec![("f".into(), json!({"a": 1}))]));
        assert_eq!((e.input_tokens, e.output_tokens), (Some(3), Some(4)));
        let g = generate(200, br#"{"response":"Paris","done":true,"eval_count":2}"#).unwrap();
        assert_eq!(g.text.as_deref(), Some("Paris"));
        // a cached prompt leaves its zero count out
        assert_eq!((g.input_tokens, g.output_tokens), (Some(0), Some(2)));
        assert!(refused(&g, |g| g.input_tokens = None).starts_with("input tokens"));
        assert_eq!(g.tool_calls, None);
        // a cut stream is not an answer
        assert!(generate(200, b"{\"response\":\"Par\",\"done\":false}\n").is_err());
        let err = b"{\"response\":\"a\",\"done\":false}\n{\"error\":\"model 'x' not found\"}\n";
        assert_eq!(generate(200, err).unwrap().error, Some(ErrorKind::NotFound));
        assert_eq!(
            chat(404, br#"{"error":"model not found"}"#).unwrap().error,
            Some(ErrorKind::NotFound)
        );
    }

    #[test]
    fn embeddings_and_tags() {
        let e = embed(200, br#"{"embeddings":[[1,2,3],[4,5,6]]}"#).unwrap();
        assert_eq!(e.vectors, Some((2, 3)));
        refused(&e, |g| g.vectors = Some((1, 3)));
        let one: &[u8] = br#"{"embedding":[1,2]}"#;
        assert_eq!(
            embeddings_legacy(&[(200, one), (200, one)])
                .unwrap()
                .vectors,
            Some((2, 2))
        );
        assert!(embeddings_legacy(&[(200, br#"{"embeddings":[]}"#)]).is_err());
        let t = tags(
            200,
            br#"{"models":[{"name":"llama3:latest"},{"model":"qwen"}]}"#,
        )
        .unwrap();
        assert_eq!(t.ids, Some(vec!["llama3:latest".into(), "qwen".into()]));
        assert!(tags(200, b"[]").is_err());
    }

    #[test]
    fn embedding_values_are_read_and_a_wrong_vector_rejected() {
        let e = embed(
            200,
            br#"{"embeddings":[[0.5,1],[2,3]],"prompt_eval_count":4}"#,
        )
        .unwrap();
        assert_eq!(e.embeddings, Some(vec![vec![0.5, 1.0], vec![2.0, 3.0]]));
        assert!(
            refused(&e, |g| g.embeddings =
                Some(vec![vec![0.5, 1.0], vec![3.0, 2.0]]))
            .contains("vector 1 component 0")
        );
        let a: &[u8] = br#"{"embedding":[1,2]}"#;
        let b: &[u8] = br#"{"embedding":[3,4]}"#;
        let l = embeddings_legacy(&[(200, a), (200, b)]).unwrap();
        assert_eq!(l.embeddings, Some(vec![vec![1.0, 2.0], vec![3.0, 4.0]]));
        assert!(embed(200, br#"{"embeddings":[["x"]]}"#).is_err());
    }
}
