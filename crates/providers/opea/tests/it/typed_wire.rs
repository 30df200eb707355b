//! The typed reranking body and answer reader against the `Value` code they replaced (kept
//! here as it was at f117165): the same body bytes, and the same results or error kinds for
//! answers in every shape the old reader took.

use infermux_core::{Error, ErrorKind, RerankRequest, RerankResponse, RerankResult, Result};
use infermux_opea::{RerankBody, parse_rerank, rerank_body};
use serde_json::{Value, json};

fn legacy_rerank_body(req: &RerankRequest) -> Value {
    json!({
        "initial_query": req.query,
        "retrieved_docs": req.documents.iter().map(|d| json!({"text": d})).collect::<Vec<_>>(),
        "top_n": req.top_n.unwrap_or(u32::try_from(req.documents.len()).unwrap_or(u32::MAX)),
    })
}

fn legacy_parse_rerank(body: &[u8], req: &RerankRequest) -> Result<RerankResponse> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("reranking answer is not valid JSON: {e}"),
        )
    })?;
    let ranked: Vec<(String, Option<f64>)> =
        if let Some(docs) = v.get("reranked_docs").and_then(Value::as_array) {
            docs.iter()
                .map(|d| {
                    (
                        d.get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        d.get("score").and_then(Value::as_f64),
                    )
                })
                .collect()
        } else if let Some(docs) = v.get("documents").and_then(Value::as_array) {
            docs.iter()
                .map(|d| {
                    let text = match d {
                        Value::String(s) => s.clone(),
                        other => other
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    };
                    (text, None)
                })
                .collect()
        } else {
            return Err(Error::new(
                ErrorKind::Decode,
                "reranking answer has neither `reranked_docs` nor `documents`",
            ));
        };
    let mut used = vec![false; req.documents.len()];
    let mut results = Vec::with_capacity(ranked.len());
    for (rank, (text, score)) in ranked.into_iter().enumerate() {
        let index = req
            .documents
            .iter()
            .enumerate()
            .position(|(i, d)| *d == text && !used.get(i).copied().unwrap_or(true))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Decode,
                    "reranking answer holds a document that was not sent",
                )
            })?;
        if let Some(u) = used.get_mut(index) {
            *u = true;
        }
        let score = score.unwrap_or(1.0 / (rank as f64 + 1.0)) as f32;
        results.push(RerankResult::new(index, score));
    }
    Ok(RerankResponse::new(req.model.clone(), results))
}

#[test]
fn rerank_bodies_and_answers_are_what_the_value_code_made() {
    let mut req = RerankRequest::new(
        "bge",
        "What \"is\" it?",
        vec![
            "a".into(),
            "b\n".into(),
            "a".into(),
            String::new(),
            "é".into(),
        ],
    );
    for top_n in [None, Some(2)] {
        req.top_n = top_n;
        assert_eq!(
            serde_json::to_string(&RerankBody::new(&req)).unwrap(),
            serde_json::to_string(&legacy_rerank_body(&req)).unwrap()
        );
        assert_eq!(rerank_body(&req), legacy_rerank_body(&req));
    }
    let answers = [
        json!({"reranked_docs": [{"text": "b\n", "score": 0.9}, {"text": "a", "score": 1}, {"text": "a", "score": "x"}]}),
        json!({"reranked_docs": [{"text": "a"}, {"score": 0.5}, "", null, [1], {"text": 5}]}),
        json!({"reranked_docs": "not a list", "documents": ["\u{e9}", {"text": "a"}, 3, null, [1], {"x": 1}]}),
        json!({"reranked_docs": [], "documents": ["a"]}),
        json!({"documents": [{"text": "b\n", "score": 3}, "a", 7]}),
        json!({"documents": ["a", "a", "a"]}),
        json!({"documents": ["never sent"]}),
        json!({"documents": {"text": "a"}}),
        json!({"unexpected": true}),
        json!(["a"]),
        json!(null),
    ];
    for a in &answers {
        let body = a.to_string();
        match (
            parse_rerank(body.as_bytes(), &req),
            legacy_parse_rerank(body.as_bytes(), &req),
        ) {
            (Ok(x), Ok(y)) => assert_eq!(x, y, "{body}"),
            (Err(x), Err(y)) => assert_eq!(x.kind(), y.kind(), "{body}"),
            (x, y) => panic!("{body}: typed {x:?}, legacy {y:?}"),
        }
    }
    for raw in [
        &b"{\"documents\": [\"a\"], \"x\": 1e400}"[..],
        b"{\"documents\": [\"a\", {\"text\": \"\\ud800\"}]}",
        b"{\"documents\": [\"a\"], \"documents\": [\"b\\n\"]}",
        b"nope",
    ] {
        match (parse_rerank(raw, &req), legacy_parse_rerank(raw, &req)) {
            (Ok(x), Ok(y)) => assert_eq!(x, y),
            (Err(x), Err(y)) => assert_eq!(x.kind(), y.kind()),
            (x, y) => panic!("{raw:?}: typed {x:?}, legacy {y:?}"),
        }
    }
}
