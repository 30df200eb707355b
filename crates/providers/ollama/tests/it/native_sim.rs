//! A minimal Ollama-native server for the conformance suite (the testkit simulator speaks the
//! OpenAI protocol only): `/api/chat` plain and NDJSON-streamed, with a tool call when tools
//! are offered, `/api/embed` and `/api/tags`. Deterministic; one request per connection. Its
//! loopback server, [`serve`], also answers other tests with their own answers.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Starts the server; returns its base URL.
pub(crate) async fn start() -> String {
    serve(|path, body| {
        let (content_type, answer) = route(path, body);
        (200, content_type, answer)
    })
    .await
}

/// Starts a loopback server that answers each request (one per connection) with
/// `answer(path, JSON body)`: a status, a content type and a body. Returns its base URL.
pub(crate) async fn serve<F>(answer: F) -> String
where
    F: Fn(&str, &Value) -> (u16, &'static str, String) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let answer = answer.clone();
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
                    let Ok(n) = sock.read(&mut tmp).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let body: Value = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
                let (status, ctype, text) = answer(&path, &body);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

fn route(path: &str, body: &Value) -> (&'static str, String) {
    let model = body["model"].as_str().unwrap_or("sim").to_owned();
    match path {
        "/api/tags" => (
            "application/json",
            json!({"models": [{"name": "sim:latest", "model": "sim:latest", "size": 1}]})
                .to_string(),
        ),
        "/api/embed" => {
            let n = body["input"].as_array().map_or(1, Vec::len);
            let vecs: Vec<Vec<f32>> = (0..n).map(|i| vec![i as f32 + 1.0, 0.5, -0.25]).collect();
            (
                "application/json",
                json!({"model": model, "embeddings": vecs, "prompt_eval_count": n}).to_string(),
            )
        }
        _ => {
            let tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
            let words = ["Hello", " from", " the", " simulator."];
            let last = json!({"model": model, "message": {"role": "assistant", "content": ""},
                "done": true, "done_reason": "stop", "total_duration": 1000, "prompt_eval_count": 12, "eval_count": 4});
            let calls =
                json!([{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]);
            if body["stream"] == Value::Bool(false) {
                let mut one = last.clone();
                if tools {
                    one["message"]["tool_calls"] = calls;
                } else {
                    one["message"]["content"] = json!(words.concat());
                }
                return ("application/json", one.to_string());
            }
            let mut lines: Vec<Value> = if tools {
                vec![
                    json!({"model": model, "message": {"role": "assistant", "content": "", "tool_calls": calls}, "done": false}),
                ]
            } else {
                words
                    .iter()
                    .map(|w| json!({"model": model, "message": {"role": "assistant", "content": w}, "done": false}))
                    .collect()
            };
            lines.push(last);
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            ("application/x-ndjson", text)
        }
    }
}
