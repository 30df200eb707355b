//! Runs transport operations `n` times through [`HttpEndpoint`] against a trivial in-process
//! loopback HTTP/1.1 server (keep-alive, fixed answers), on a current-thread tokio runtime, for
//! instruction counts under callgrind: instructions per operation =
//! `(Ir(n2) − Ir(n1)) / (n2 − n1)`.
//!
//! ```text
//! cargo build --release -p infermux-benches --bin icount_transport
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/t.out \
//!     target/release/icount_transport full 2000
//! ```
//!
//! Modes (`icount_transport <mode> <n> [events] [deadline]`):
//! - `full`: `n` non-streamed POSTs (a small JSON body up, a 0.3 KiB JSON answer read with
//!   `bytes()`);
//! - `stream`: `n` streamed POSTs whose answer is `events` SSE events, one HTTP chunk each, all
//!   written at once (every chunk is already there when the transport asks for it);
//! - `paced`: the same, but the server writes each chunk only once the client has read the
//!   previous event, so every chunk is waited for (the idle-timeout path).
//!
//! With `deadline` as the last argument every request's context carries a 60 s deadline. In
//! `full`, the inclusive cost of `BodyRead::poll` is the cost of reading the one-chunk body.
//! The server is a few lines of tokio: its instructions are counted too, identically before and
//! after a transport change.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use infermux_core::{ApiKey, EndpointConfig, RequestContext};
use infermux_http::{Auth, HttpEndpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// A key of realistic length: sent as a bearer token and scrubbed from what comes back.
const KEY: &str = "sk-bench-0123456789abcdefghijklmnopqrstuv";

const ANSWER: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, how can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":10,"total_tokens":22}}"#;

const EVENT: &str = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" word\"},\"finish_reason\":null}]}\n\n";

/// Polls the future reading a body through one function callgrind can name, so the inclusive
/// cost of `<icount_transport::BodyRead<F> as Future>::poll` is the cost of reading the body on
/// the caller's side (the connection task's share is not in it).
struct BodyRead<F>(Pin<Box<F>>);

impl<F: Future> Future for BodyRead<F> {
    type Output = F::Output;
    #[inline(never)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.0.as_mut().poll(cx)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Full,
    Stream,
    Paced,
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// Serves one keep-alive connection: reads a request head and its Content-Length body, answers.
async fn serve(mut sock: TcpStream, mode: Mode, events: usize, go: Arc<Notify>) {
    let _ = sock.set_nodelay(true);
    let full = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{ANSWER}",
        ANSWER.len()
    )
    .into_bytes();
    let head =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
    let one = chunk(EVENT.as_bytes());
    let mut all = head.to_vec();
    for _ in 0..events {
        all.extend_from_slice(&one);
    }
    all.extend_from_slice(b"0\r\n\r\n");
    let mut buf = Vec::with_capacity(8192);
    let mut tmp = [0u8; 8192];
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match sock.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let req = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = req
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match sock.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        buf.drain(..head_end + len);
        let ok = match mode {
            Mode::Full => sock.write_all(&full).await.is_ok(),
            Mode::Stream => sock.write_all(&all).await.is_ok(),
            Mode::Paced => {
                let mut ok = sock.write_all(head).await.is_ok();
                for _ in 0..events {
                    ok = ok && sock.write_all(&one).await.is_ok();
                    go.notified().await;
                }
                ok && sock.write_all(b"0\r\n\r\n").await.is_ok()
            }
        };
        if !ok {
            return;
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: icount_transport full|stream|paced <n> [events] [deadline]");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.first().map(String::as_str) {
        Some("full") => Mode::Full,
        Some("stream") => Mode::Stream,
        Some("paced") => Mode::Paced,
        _ => usage(),
    };
    let n: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage());
    let events: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(0);
    let deadline = args.iter().any(|a| a == "deadline");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("runtime: {e}");
            std::process::exit(1)
        });
    let done = rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.ok()?;
        let addr = listener.local_addr().ok()?;
        let go = Arc::new(Notify::new());
        let server_go = go.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, mode, events, server_go.clone()));
            }
        });
        let cfg = EndpointConfig::new("bench", format!("http://{addr}/v1"))
            .ok()?
            .with_api_key(ApiKey::new(KEY));
        let ep = HttpEndpoint::new("openai-compat", cfg, Auth::Bearer).ok()?;
        let body = serde_json::json!({
            "model": "m",
            "messages": [{"role": "user", "content": "Say hello."}],
            "stream": mode != Mode::Full,
        });
        let mut total = 0usize;
        for _ in 0..n {
            let mut ctx = RequestContext::new();
            if deadline {
                ctx = ctx.with_timeout(Duration::from_secs(60));
            }
            let resp = ep
                .post("/chat/completions")
                .json(&body)
                .send(&ctx)
                .await
                .ok()?;
            if mode == Mode::Full {
                total += BodyRead(Box::pin(resp.bytes())).await.ok()?.len();
            } else {
                let mut items = resp.sse();
                while let Some(ev) = items.next().await {
                    total += ev.ok()?.data.len();
                    if mode == Mode::Paced {
                        go.notify_one();
                    }
                }
            }
        }
        Some(total)
    });
    match done {
        Some(total) => println!("{n} requests, {total} bytes read"),
        None => {
            eprintln!("a request failed");
            std::process::exit(1)
        }
    }
}
