//! Criterion benches of the transport's hot path through `HttpEndpoint`, against a trivial
//! in-process loopback HTTP/1.1 server on a current-thread runtime: a whole non-streamed
//! request, reading a one-chunk body, a streamed answer of 64 events (all there at once) and of
//! 16 events each waited for, plus the request id's text (formatted into a `String`, and
//! encoded into a stack buffer).
//! Wall-clock numbers on a shared machine are noisy; `icount_transport` gives instruction
//! counts of the same operations.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::StreamExt;
use infermux_core::{ApiKey, EndpointConfig, RequestContext, RequestId};
use infermux_http::{Auth, HttpEndpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::Notify;

/// A key of realistic length: sent as a bearer token and scrubbed from what comes back.
const KEY: &str = "sk-bench-0123456789abcdefghijklmnopqrstuv";

const ANSWER: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, how can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":10,"total_tokens":22}}"#;

const EVENT: &str = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" word\"},\"finish_reason\":null}]}\n\n";

/// What the server answers on a path: `/full` a JSON body, `/stream/<n>` n SSE events at once,
/// `/paced/<n>` n events each written once the client asks for the next one.
async fn serve(mut sock: TcpStream, go: Arc<Notify>) {
    let _ = sock.set_nodelay(true);
    let mut buf = Vec::with_capacity(8192);
    let mut tmp = [0u8; 8192];
    let event = {
        let mut c = format!("{:x}\r\n", EVENT.len()).into_bytes();
        c.extend_from_slice(EVENT.as_bytes());
        c.extend_from_slice(b"\r\n");
        c
    };
    let head =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
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
        let path = req.split(' ').nth(1).unwrap_or("").to_owned();
        let count = |p: &str| p.rsplit('/').next().and_then(|n| n.parse::<usize>().ok());
        let ok = if path.contains("/stream/") {
            let mut all = head.to_vec();
            for _ in 0..count(&path).unwrap_or(0) {
                all.extend_from_slice(&event);
            }
            all.extend_from_slice(b"0\r\n\r\n");
            sock.write_all(&all).await.is_ok()
        } else if path.contains("/paced/") {
            let mut ok = sock.write_all(head).await.is_ok();
            for _ in 0..count(&path).unwrap_or(0) {
                ok = ok && sock.write_all(&event).await.is_ok();
                go.notified().await;
            }
            ok && sock.write_all(b"0\r\n\r\n").await.is_ok()
        } else {
            let full = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{ANSWER}",
                ANSWER.len()
            );
            sock.write_all(full.as_bytes()).await.is_ok()
        };
        if !ok {
            return;
        }
    }
}

fn setup() -> (Runtime, HttpEndpoint, Arc<Notify>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let go = Arc::new(Notify::new());
    let server_go = go.clone();
    let ep = rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, server_go.clone()));
            }
        });
        let cfg = EndpointConfig::new("bench", format!("http://{addr}/v1"))
            .expect("config")
            .with_api_key(ApiKey::new(KEY));
        HttpEndpoint::new("openai-compat", cfg, Auth::Bearer).expect("endpoint")
    });
    (rt, ep, go)
}

fn body() -> serde_json::Value {
    serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "Say hello."}]})
}

fn transport(c: &mut Criterion) {
    let (rt, ep, go) = setup();
    let body = body();
    let mut g = c.benchmark_group("transport");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("full_request", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let ctx = RequestContext::new();
                    let resp = ep.post("/full").json(&body).send(&ctx).await.expect("send");
                    black_box(resp.bytes().await.expect("body"));
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("read_one_chunk_body", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let ctx = RequestContext::new();
                    let resp = ep.post("/full").json(&body).send(&ctx).await.expect("send");
                    // let the body's one chunk arrive before timing its reading
                    tokio::task::yield_now().await;
                    let start = Instant::now();
                    black_box(resp.bytes().await.expect("body"));
                    spent += start.elapsed();
                }
                spent
            })
        })
    });
    for (name, path, paced) in [
        ("stream_64_events", "/stream/64", false),
        ("stream_16_events_paced", "/paced/16", true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let ctx = RequestContext::new();
                        let mut items = ep
                            .post(path)
                            .json(&body)
                            .send(&ctx)
                            .await
                            .expect("send")
                            .sse();
                        while let Some(ev) = items.next().await {
                            black_box(ev.expect("event"));
                            if paced {
                                go.notify_one();
                            }
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

fn request_id(c: &mut Criterion) {
    let id = RequestId::new();
    c.bench_function("request_id_to_string", |b| {
        b.iter(|| black_box(black_box(id).to_string()))
    });
    // `RequestId::encode` is new: a run against older code leaves this bench out
    c.bench_function("request_id_encode", |b| {
        b.iter(|| {
            let mut buf = [0u8; 26];
            black_box(black_box(id).encode(&mut buf).len())
        })
    });
}

criterion_group!(benches, transport, request_id);
criterion_main!(benches);
