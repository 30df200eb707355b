//! The mock upstream every peer calls: an OpenAI `/v1/chat/completions` server (plain JSON, or
//! an SSE stream of a few deltas sent as separate chunks) on hyper's HTTP/1 server, one
//! current-thread tokio runtime on one thread, loopback only. `GET /stats` answers its own CPU
//! time and request count, so a driver can show the upstream was never the bottleneck.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::procfs;

/// The fixed non-streamed answer.
pub const CHAT_JSON: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1764547200,"model":"mock","system_fingerprint":"fp_bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}"#;

/// The text deltas of the streamed answer (they join to the same text as [`CHAT_JSON`]'s).
pub const STREAM_DELTAS: &[&str] = &[
    "Hello", "!", " How", " can", " I", " help", " you", " today", "?",
];

/// The SSE events of the streamed answer, each one chunk on the wire: a role chunk, the text
/// deltas, a finish chunk, then `[DONE]`.
pub fn stream_events() -> Vec<Bytes> {
    let head = r#"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764547200,"model":"mock","system_fingerprint":"fp_bench","choices":[{"index":0,"delta":"#;
    let mut out = vec![Bytes::from(format!(
        "data: {head}{{\"role\":\"assistant\",\"content\":\"\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
    ))];
    for d in STREAM_DELTAS {
        out.push(Bytes::from(format!(
            "data: {head}{{\"content\":\"{d}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
        )));
    }
    out.push(Bytes::from(format!(
        "data: {head}{{}},\"logprobs\":null,\"finish_reason\":\"stop\"}}]}}\n\n"
    )));
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

/// Whether a JSON request body asks for a stream (`"stream": true`, any spacing).
pub fn wants_stream(body: &[u8]) -> bool {
    let key = b"\"stream\"";
    let mut at = 0;
    while let Some(pos) = find(&body[at..], key) {
        let rest = &body[at + pos + key.len()..];
        let rest = trim_start(rest);
        if let Some(rest) = rest.strip_prefix(b":") {
            return trim_start(rest).starts_with(b"true");
        }
        at += pos + key.len();
    }
    false
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

type Body = BoxBody<Bytes, Infallible>;

struct State {
    requests: AtomicU64,
    events: Vec<Bytes>,
}

fn full(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    if parts.method == Method::GET && parts.uri.path() == "/stats" {
        let cpu_ns = procfs::cpu_ns(None).unwrap_or(0);
        let requests = state.requests.load(Ordering::Relaxed);
        let text = format!("{{\"cpu_ns\":{cpu_ns},\"requests\":{requests}}}");
        return Ok(full(StatusCode::OK, "application/json", Bytes::from(text)));
    }
    if parts.method != Method::POST || !parts.uri.path().ends_with("/chat/completions") {
        return Ok(full(
            StatusCode::NOT_FOUND,
            "application/json",
            Bytes::from_static(
                br#"{"error":{"message":"not found","type":"invalid_request_error"}}"#,
            ),
        ));
    }
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(full(StatusCode::BAD_REQUEST, "text/plain", Bytes::new()));
        }
    };
    state.requests.fetch_add(1, Ordering::Relaxed);
    if wants_stream(&body) {
        let frames = state
            .events
            .clone()
            .into_iter()
            .map(|b| Ok::<_, Infallible>(Frame::data(b)));
        let mut resp = Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed());
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/event-stream"),
        );
        Ok(resp)
    } else {
        Ok(full(
            StatusCode::OK,
            "application/json",
            Bytes::from_static(CHAT_JSON.as_bytes()),
        ))
    }
}

/// Binds `127.0.0.1:port` (0 = any free port). Refuses any other address: the benchmark never
/// listens beyond loopback.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("the mock upstream binds loopback only, not {addr}"),
        ));
    }
    TcpListener::bind(addr)
}

/// Serves `listener` on the calling thread (a current-thread runtime) until the process ends.
pub fn serve(listener: TcpListener) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let state = Arc::new(State {
        requests: AtomicU64::new(0),
        events: stream_events(),
    });
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(state.clone(), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_flag_is_found_with_any_spacing() {
        assert!(wants_stream(br#"{"model":"m","stream":true}"#));
        assert!(wants_stream(br#"{"model":"m", "stream" : true}"#));
        assert!(!wants_stream(br#"{"model":"m","stream":false}"#));
        assert!(!wants_stream(br#"{"model":"m"}"#));
        assert!(!wants_stream(br#"{"messages":[{"content":"\"stream\""}]}"#));
    }

    #[test]
    fn stream_deltas_join_to_the_plain_answer() {
        let joined: String = STREAM_DELTAS.concat();
        assert!(CHAT_JSON.contains(&joined));
        assert_eq!(stream_events().len(), STREAM_DELTAS.len() + 3);
    }

    #[test]
    fn binding_beyond_loopback_is_refused() {
        assert!(bind("0.0.0.0:0".parse().unwrap()).is_err());
    }
}
