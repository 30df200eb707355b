//! `Ollama::embeddings_legacy`: one `POST /api/embeddings` per input with
//! `{"model","prompt"}`, answers kept in input order, an error status mapped to its kind,
//! and an answer of the wrong shape refused.

use std::sync::{Arc, Mutex};

use infermux_core::{EmbeddingRequest, ErrorKind, RequestContext};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::ollama;

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// A server that records each request's path and JSON body and answers with `answer(body)`
/// (status, JSON); one request per connection.
async fn server(answer: fn(&Value) -> (u16, Value)) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                let (head_end, len) = loop {
                    let Ok(n) = sock.read(&mut tmp).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (p + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let body: Value = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
                let (status, reply) = answer(&body);
                log.lock().unwrap().push((path, body));
                let reply = reply.to_string();
                let out = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = sock.write_all(out.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn request() -> EmbeddingRequest {
    EmbeddingRequest::new("nomic-embed-text", vec!["a".into(), "bcd".into()])
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
    let none = EmbeddingRequest::new("m", Vec::new());
    let e = ollama(&url)
        .embeddings_legacy(&none, &ctx)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert_eq!(e.request_id(), Some(ctx.request_id()));
}
