//! Text Embeddings Inference's own routes: `/embed` and the HF Inference API's feature
//! extraction (a vector, vectors, or token vectors per input), `/embed_sparse`, `/rerank`,
//! `/info` and `/health`.

use serde_json::Value;

use super::{Expected, embedded_error_kind, is_error_object, json, status_error};

fn error_of(status: u16, body: &[u8]) -> Option<Expected> {
    if let Some(e) = status_error(status, body) {
        return Some(e);
    }
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(is_error_object)
        .map(|v| Expected::error(embedded_error_kind(&v)))
}

/// The length of the innermost array of `v` (the dimension of a vector, or of a token
/// vector).
fn innermost(v: &Value) -> usize {
    match v.as_array() {
        Some(xs) if xs.first().is_some_and(Value::is_array) => innermost(&xs[0]),
        Some(xs) => xs.len(),
        None => 0,
    }
}

/// An `/embed` or feature-extraction answer: the number of vectors (one per input) and the
/// dimension.
pub fn embed(status: u16, body: &[u8]) -> Result<Expected, String> {
    if let Some(e) = error_of(status, body) {
        return Ok(e);
    }
    let v = json(body)?;
    let top = v.as_array().ok_or("the recorded answer is not an array")?;
    // one vector of numbers for one input, else one entry per input
    let count = if top.first().is_some_and(Value::is_number) {
        1
    } else {
        top.len()
    };
    Ok(Expected {
        vectors: Some((count, innermost(&v))),
        ..Expected::default()
    })
}

/// An `/embed_sparse` answer: the number of vectors and the entries of the first.
pub fn embed_sparse(status: u16, body: &[u8]) -> Result<Expected, String> {
    if let Some(e) = error_of(status, body) {
        return Ok(e);
    }
    let v = json(body)?;
    let top = v.as_array().ok_or("the recorded answer is not an array")?;
    let first = top
        .first()
        .map(|x| x.as_array().map_or(0, Vec::len))
        .unwrap_or(0);
    Ok(Expected {
        vectors: Some((top.len(), first)),
        ..Expected::default()
    })
}

/// A `/rerank` answer: document index and score, in the recorded order.
pub fn rerank(status: u16, body: &[u8]) -> Result<Expected, String> {
    if let Some(e) = error_of(status, body) {
        return Ok(e);
    }
    let v = json(body)?;
    let top = v.as_array().ok_or("the recorded answer is not an array")?;
    let results = top
        .iter()
        .map(|r| {
            let index = r.get("index").and_then(Value::as_u64);
            let score = r.get("score").and_then(Value::as_f64);
            match (index, score) {
                (Some(i), Some(s)) => Ok((i as usize, s as f32)),
                _ => Err("a recorded rerank result has no index or score".to_owned()),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Expected {
        rerank: Some(results),
        ..Expected::default()
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
        let mut fewer = e.clone();
        fewer.vectors = Some((1, 2));
        assert!(e.check(&fewer).is_err());
        assert!(embed(200, br#"{"data":[]}"#).is_err());
        let s = embed_sparse(
            200,
            br#"[[{"index":1,"value":0.5},{"index":9,"value":0.1}]]"#,
        )
        .unwrap();
        assert_eq!(s.vectors, Some((1, 2)));
        let err = br#"{"error":"Input validation error","error_type":"Validation"}"#;
        assert_eq!(
            embed(413, err).unwrap().error,
            Some(ErrorKind::InvalidRequest)
        );
    }

    #[test]
    fn rerank_scores() {
        let r = rerank(200, br#"[{"index":1,"score":0.9},{"index":0,"score":0.1}]"#).unwrap();
        assert_eq!(r.rerank, Some(vec![(1, 0.9), (0, 0.1)]));
        let mut swapped = r.clone();
        swapped.rerank = Some(vec![(0, 0.9), (1, 0.1)]);
        assert!(r.check(&swapped).is_err());
        assert!(rerank(200, br#"[{"index":1}]"#).is_err());
    }
}
