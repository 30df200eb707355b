//! Text Embeddings Inference's own routes: `/embed` and the HF Inference API's feature
//! extraction (a vector, vectors, or token vectors per input), `/embed_sparse`, `/rerank`,
//! `/info` and `/health`.

use serde_json::Value;

use super::{Expected, Snapshot, float_rows, is_error_object, json_answer, u64_of, vectors};

/// An answer that is a JSON array: a recorded error status or an error object in a 2xx body,
/// else `read` of the array.
fn array_answer(
    status: u16,
    body: &[u8],
    read: impl FnOnce(&[Value]) -> Result<Expected, String>,
) -> Result<Expected, String> {
    if let Some(kind) = tei_status_kind(status, body) {
        return Ok(Expected::error(kind));
    }
    json_answer(status, body, is_error_object, |v| {
        read(v.as_array().ok_or("the recorded answer is not an array")?)
    })
}

/// The statuses TEI's OpenAPI spec gives a meaning of their own, read from the error object's
/// `error_type` and `error`: 429 `overloaded` is the server's full queue; 424 `backend` is a
/// failed inference (a model of another kind, "not an embedding model", never passes); 413
/// `validation` of an input over the token limit ("must have less than N tokens") is the
/// context length. `None` for every other answer.
fn tei_status_kind(status: u16, body: &[u8]) -> Option<infermux_core::ErrorKind> {
    use infermux_core::ErrorKind;
    let v: Value = serde_json::from_slice(body).ok()?;
    let kind = v.get("error_type")?.as_str()?.to_ascii_lowercase();
    let message = v.get("error")?.as_str()?.to_ascii_lowercase();
    match (status, kind.as_str()) {
        (429, "overloaded") => Some(ErrorKind::Overloaded),
        (424, "backend") if message.contains("is not an ") || message.contains("is not a ") => {
            Some(ErrorKind::Unsupported)
        }
        (424, "backend") => Some(ErrorKind::Server),
        (413, "validation") if message.contains("must have less than") => {
            Some(ErrorKind::ContextLength)
        }
        _ => None,
    }
}

/// How far a mean of token vectors may be from the oracle's (relative to the larger of its
/// magnitude and 1): the decoder adds the tokens up in its own order and precision.
const POOLED_TOLERANCE: f32 = 1e-4;

fn rows(v: &Value) -> Result<Vec<Vec<f32>>, String> {
    float_rows(v.as_array().ok_or("a recorded entry is not an array")?)
}

/// The mean of one input's token vectors (computed in `f64`).
fn mean(tokens: &[Vec<f32>]) -> Result<Vec<f32>, String> {
    let dim = tokens.first().ok_or("an input has no token vectors")?.len();
    if tokens.iter().any(|t| t.len() != dim) {
        return Err("an input's token vectors differ in length".to_owned());
    }
    let n = tokens.len() as f64;
    Ok((0..dim)
        .map(|j| (tokens.iter().map(|t| f64::from(t[j])).sum::<f64>() / n) as f32)
        .collect())
}

/// An `/embed` or feature-extraction answer: one vector for one input (`[f32]`), one per
/// input (`[[f32]]`), or token vectors per input (`[[[f32]]]`, from models without pooling),
/// which mean one vector each, their mean. Every vector, the count and the dimension.
pub fn embed(status: u16, body: &[u8]) -> Result<Expected, String> {
    array_answer(status, body, |top| {
        let (xs, tolerance) = match top.first() {
            // one vector of numbers for one input
            Some(x) if x.is_number() => (vec![super::floats(top)?], None),
            // token vectors per input
            Some(Value::Array(x)) if x.first().is_some_and(Value::is_array) => (
                top.iter()
                    .map(|t| mean(&rows(t)?))
                    .collect::<Result<Vec<_>, _>>()?,
                Some(POOLED_TOLERANCE),
            ),
            // one vector per input
            _ => (float_rows(top)?, None),
        };
        Ok(Expected {
            embedding_tolerance: tolerance,
            ..vectors(xs)
        })
    })
}

/// A snapshot of TEI's own router tests (`router/tests/snapshots/*.snap`, insta): the
/// `/embed` answer it holds (one vector per input), served as JSON.
pub fn snapshot(text: &str) -> Result<Snapshot, String> {
    let v = super::insta_value(text)?;
    if !v
        .as_array()
        .is_some_and(|xs| xs.iter().all(Value::is_array))
    {
        return Err("the snapshot is not an /embed answer (vectors)".to_owned());
    }
    let body = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
    let expected = embed(200, &body)?;
    Ok(Snapshot {
        route: "/embed",
        content_type: "application/json",
        streamed: false,
        body,
        expected,
    })
}

/// An `/embed_sparse` answer: the number of vectors and the entries of the first, and every
/// vector's `(index, value)` entries.
pub fn embed_sparse(status: u16, body: &[u8]) -> Result<Expected, String> {
    array_answer(status, body, |top| {
        let first = top.first().map_or(0, |x| x.as_array().map_or(0, Vec::len));
        let sparse = top
            .iter()
            .map(|v| {
                v.as_array()
                    .ok_or("a sparse vector is not an array")?
                    .iter()
                    .map(|e| {
                        let index = e["index"].as_u64().and_then(|i| u32::try_from(i).ok());
                        let value = e["value"].as_f64().map(|x| x as f32);
                        index
                            .zip(value)
                            .ok_or("a sparse entry is not {index, value}")
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Expected {
            vectors: Some((top.len(), first)),
            sparse: Some(sparse),
            ..Expected::default()
        })
    })
}

/// A `/rerank` answer: document index and score, in the recorded order.
pub fn rerank(status: u16, body: &[u8]) -> Result<Expected, String> {
    array_answer(status, body, |top| {
        let results = top.iter().map(|r| {
            match (u64_of(r, "index"), r.get("score").and_then(Value::as_f64)) {
                (Some(i), Some(s)) => Ok((i as usize, s as f32)),
                _ => Err("a recorded rerank result has no index or score".to_owned()),
            }
        });
        Ok(Expected {
            rerank: Some(results.collect::<Result<_, _>>()?),
            ..Expected::default()
        })
    })
}

/// An `/info` answer: the served `model_id`.
pub fn info(status: u16, body: &[u8]) -> Result<Expected, String> {
    super::tgi::info(status, body)
}

/// A `/health` answer: healthy when 2xx.
pub fn health(status: u16, body: &[u8]) -> Result<Expected, String> {
    super::tgi::health(status, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::refused;
    use infermux_core::ErrorKind;

    #[test]
    fn vectors_of_every_shape() {
        assert_eq!(embed(200, b"[1,2,3]").unwrap().vectors, Some((1, 3)));
        assert_eq!(
            embed(200, b"[[1,2],[3,4],[5,6]]").unwrap().vectors,
            Some((3, 2))
        );
        assert_eq!(
            embed(200, b"[[[1,2,3],[4,5,6]]]").unwrap().vectors,
            Some((1, 3))
        );
        let e = embed(200, b"[[1,2],[3,4]]").unwrap();
        refused(&e, |g| g.vectors = Some((1, 2)));
        assert!(embed(200, br#"{"data":[]}"#).is_err());
        let s = embed_sparse(
            200,
            br#"[[{"index":1,"value":0.5},{"index":9,"value":0.1}]]"#,
        )
        .unwrap();
        assert_eq!(s.vectors, Some((1, 2)));
        assert_eq!(s.sparse, Some(vec![vec![(1, 0.5), (9, 0.1)]]));
        // right shape, wrong entries: refused (a shape alone let a decoder swap them)
        refused(&s, |g| g.sparse = Some(vec![vec![(9, 0.1), (1, 0.5)]]));
        refused(&s, |g| g.sparse = Some(vec![vec![(1, 0.5), (9, 0.2)]]));
        let err = br#"{"error":"Input validation error","error_type":"Validation"}"#;
        assert_eq!(
            embed(413, err).unwrap().error,
            Some(ErrorKind::InvalidRequest)
        );
        for (status, body, kind) in [
            (
                429,
                &br#"{"error":"Model is overloaded","error_type":"overloaded"}"#[..],
                ErrorKind::Overloaded,
            ),
            (
                424,
                br#"{"error":"Inference failed","error_type":"backend"}"#,
                ErrorKind::Server,
            ),
            (
                424,
                br#"{"error":"model is not an embedding model","error_type":"Backend"}"#,
                ErrorKind::Unsupported,
            ),
            (
                413,
                br#"{"error":"`inputs` must have less than 512 tokens. Given: 600","error_type":"validation"}"#,
                ErrorKind::ContextLength,
            ),
        ] {
            assert_eq!(embed(status, body).unwrap().error, Some(kind), "{status}");
        }
    }

    #[test]
    fn rerank_scores() {
        let r = rerank(200, br#"[{"index":1,"score":0.9},{"index":0,"score":0.1}]"#).unwrap();
        assert_eq!(r.rerank, Some(vec![(1, 0.9), (0, 0.1)]));
        refused(&r, |g| g.rerank = Some(vec![(0, 0.9), (1, 0.1)]));
        assert!(rerank(200, br#"[{"index":1}]"#).is_err());
    }

    #[test]
    fn token_vectors_mean_their_average_and_a_wrong_vector_is_rejected() {
        let e = embed(200, b"[[[1,2],[3,5]],[[0,0],[1,1],[2,2]]]").unwrap();
        assert_eq!(e.embeddings, Some(vec![vec![2.0, 3.5], vec![1.0, 1.0]]));
        assert_eq!(e.vectors, Some((2, 2)));
        assert_eq!(e.embedding_tolerance, Some(POOLED_TOLERANCE));
        refused(&e, |g| {
            g.embeddings = Some(vec![vec![1.0, 2.0], vec![0.0, 0.0]])
        });
        // vectors read as they are recorded are compared exactly: one ulp off is a difference
        let plain = embed(200, b"[[0.1,0.2]]").unwrap();
        assert_eq!(plain.embedding_tolerance, None);
        refused(&plain, |g| {
            g.embeddings = Some(vec![vec![0.1, f32::from_bits(0.2f32.to_bits() + 1)]])
        });
        assert!(embed(200, b"[[[1,2],[3]]]").is_err());
    }

    #[test]
    fn snapshots_are_embed_answers() {
        let s = snapshot("---\nsource: router/tests/test_http_embed.rs\n---\n- - 0.5\n  - 1.5\n")
            .unwrap();
        assert_eq!((s.route, s.streamed), ("/embed", false));
        assert_eq!(s.expected.embeddings, Some(vec![vec![0.5, 1.5]]));
        assert_eq!(embed(200, &s.body).unwrap(), s.expected);
        assert!(snapshot("---\nsource: x\n---\nid: 3\n").is_err());
    }
}
