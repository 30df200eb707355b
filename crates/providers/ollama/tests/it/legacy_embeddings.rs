//! `Ollama::embeddings_legacy`: one `POST /api/embeddings` per input with
//! `{"model","prompt"}`, answers kept in input order, an error status mapped to its kind,
//! and an answer of the wrong shape refused.

use std::sync::{Arc, Mutex};

use infermux_core::{EmbeddingRequest, ErrorKind, RequestContext};
use serde_json::{Value, json};

use crate::{native_sim, ollama};

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// A server that records each request's path and JSON body and answers with `answer(body)`
/// (status, JSON); one request per connection.
async fn server(answer: fn(&Value) -> (u16, Value)) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let url = native_sim::serve(move |path, body| {
        let (status, reply) = answer(body);
        log.lock().unwrap().push((path.to_owned(), body.clone()));
        (status, "application/json", reply.to_string())
    })
    .await;
    (url, seen)
}

fn request() -> EmbeddingRequest {
    EmbeddingRequest::new("nomic-embed-text", ["a", "bcd"])
}

#[tokio::test]
async fn legacy_embeddings_send_one_prompt_per_request_in_order() {
    // the vector's first component is the prompt's length, so order is visible
    let (url, seen) = server(|b| {
        let n = b["prompt"].as_str().map_or(0, str::len);
        (200, json!({"embedding": [n as f32, 0.5, -0.25]}))
    })
    .await;
    let e = ollama(&url)
        .embeddings_legacy(&request(), &RequestContext::new())
        .await
        .unwrap();
    assert_eq!(
        e.embeddings,
        vec![vec![1.0, 0.5, -0.25], vec![3.0, 0.5, -0.25]]
    );
    assert_eq!(e.model, "nomic-embed-text");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (
                "/api/embeddings".to_owned(),
                json!({"model": "nomic-embed-text", "prompt": "a"})
            ),
            (
                "/api/embeddings".to_owned(),
                json!({"model": "nomic-embed-text", "prompt": "bcd"})
            ),
        ]
    );
}

#[tokio::test]
async fn legacy_embeddings_report_errors_and_refuse_other_shapes() {
    let (url, _) = server(|_| {
        (
            404,
            json!({"error": "model \"x\" not found, try pulling it first"}),
        )
    })
    .await;
    let e = ollama(&url)
        .embeddings_legacy(&request(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    // `/api/embed`'s shape is not a legacy answer
    let (url, _) = server(|_| (200, json!({"embeddings": [[1.0]]}))).await;
    let e = ollama(&url)
        .embeddings_legacy(&request(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    let ctx = RequestContext::new();
    let none = EmbeddingRequest::new("m", Vec::<String>::new());
    let e = ollama(&url)
        .embeddings_legacy(&none, &ctx)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert_eq!(e.request_id(), Some(ctx.request_id()));
}
