//! What goes on the wire besides the body: `x-wait-for-model: true` when asked for, the
//! Bearer key, and the request id; seen by a one-shot server that captures the request head.

use infermux_core::{ApiKey, CompletionRequest, EndpointConfig, Provider, Request, RequestContext};
use infermux_hf_tgi::HfTgi;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Serves one request with `answer` and hands back its head (request line and headers).
async fn one_shot(answer: &'static str) -> (String, oneshot::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        let head_end = loop {
            let n = sock.read(&mut tmp).await.unwrap();
            buf.extend_from_slice(&tmp[..n]);
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            assert!(n > 0, "connection closed before the head ended");
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + 4 + len {
            let n = sock.read(&mut tmp).await.unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
            answer.len()
        );
        sock.write_all(reply.as_bytes()).await.unwrap();
        let _ = tx.send(head);
    });
    (url, rx)
}

#[tokio::test]
async fn wait_for_model_key_and_request_id_are_sent() {
    let (url, head) = one_shot(r#"[{"generated_text":" 3 4 5"}]"#).await;
    let cfg = EndpointConfig::new("hf", url)
        .unwrap()
        .with_api_key(ApiKey::new("hf_headerTestKey"));
    let p = HfTgi::inference_api(cfg, "gpt2")
        .unwrap()
        .with_wait_for_model(true);
    let ctx = RequestContext::new();
    let req = Request::Completion(CompletionRequest::new("gpt2", "0 1 2"));
    p.call(&req, &ctx).await.unwrap();
    let head = head.await.unwrap();
    assert!(head.starts_with("post /models/gpt2 http/1.1"), "{head}");
    assert!(head.contains("x-wait-for-model: true"), "{head}");
    assert!(
        head.contains("authorization: bearer hf_headertestkey"),
        "{head}"
    );
    let id = ctx.request_id().to_string().to_ascii_lowercase();
    assert!(head.contains(&format!("x-request-id: {id}")), "{head}");
}

#[tokio::test]
async fn no_wait_header_unless_asked() {
    let (url, head) = one_shot(r#"{"generated_text":"x","details":null}"#).await;
    let p = HfTgi::new(EndpointConfig::new("t", url).unwrap()).unwrap();
    let req = Request::Completion(CompletionRequest::new("tgi", "hi"));
    p.call(&req, &RequestContext::new()).await.unwrap();
    let head = head.await.unwrap();
    assert!(head.starts_with("post /generate http/1.1"), "{head}");
    assert!(!head.contains("x-wait-for-model"), "{head}");
    assert!(!head.contains("authorization"), "{head}");
}
