//! A raw loopback HTTP/1.1 server: each connection gets scripted bytes, requests are recorded.

use std::sync::{Arc, Mutex};

use infermux_core::{Error, RequestContext};
use infermux_http::{Auth, HttpEndpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// What one request looked like.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) head: String,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }
    /// Every value of header `name`, in order.
    pub(crate) fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }
    pub(crate) fn path(&self) -> String {
        self.head.split(' ').nth(1).unwrap_or("").to_owned()
    }
}

/// One step of a scripted response.
pub(crate) enum Step {
    Send(Vec<u8>),
    /// Wait until the server's `release` handle is notified.
    Stall,
    /// Wait this long (on the tokio clock, so a paused test advances it).
    Wait(std::time::Duration),
}

pub(crate) struct RawServer {
    pub(crate) url: String,
    pub(crate) seen: Arc<Mutex<Vec<Seen>>>,
    pub(crate) release: Arc<Notify>,
}

impl RawServer {
    /// Serves every connection with `script(request)`.
    pub(crate) async fn start<F>(script: F) -> RawServer
    where
        F: Fn(&Seen) -> Vec<Step> + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(Notify::new());
        let script = Arc::new(script);
        let (seen2, release2) = (seen.clone(), release.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (seen, release, script) = (seen2.clone(), release2.clone(), script.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 4096];
                    let head_end = loop {
                        let Ok(n) = sock.read(&mut tmp).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&tmp[..n]);
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let req = Seen { head };
                    let len: usize = req
                        .header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let Ok(n) = sock.read(&mut tmp).await else {
                            return;
                        };
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&tmp[..n]);
                    }
                    seen.lock().unwrap().push(req.clone());
                    for step in script(&req) {
                        match step {
                            Step::Send(bytes) => {
                                if sock.write_all(&bytes).await.is_err() {
                                    return;
                                }
                                let _ = sock.flush().await;
                            }
                            Step::Stall => release.notified().await,
                            Step::Wait(d) => tokio::time::sleep(d).await,
                        }
                    }
                    let _ = sock.shutdown().await;
                });
            }
        });
        RawServer { url, seen, release }
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The first request seen at `path`.
    pub(crate) fn seen_at(&self, path: &str) -> Seen {
        self.seen()
            .into_iter()
            .find(|s| s.path() == path)
            .unwrap_or_else(|| panic!("no request to {path}"))
    }
}

/// Every way an endpoint's key goes in a header.
pub(crate) const KEYED: [Auth; 4] = [
    Auth::Bearer,
    Auth::Header("x-api-key"),
    Auth::Header("x-goog-api-key"),
    Auth::Header("api-key"),
];

/// The error of reading the 2xx answer of a GET of `path` as JSON.
pub(crate) async fn json_error(ep: &HttpEndpoint, ctx: &RequestContext, path: &str) -> Error {
    ep.get(path)
        .send(ctx)
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap_err()
}

/// A 200 with a JSON body.
pub(crate) fn json_ok(body: &[u8]) -> Vec<u8> {
    response("200 OK", &[("content-type", "application/json")], body)
}

/// A complete response with a body and Content-Length.
pub(crate) fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The head of a chunked response.
pub(crate) fn chunked_head(status: &str, content_type: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n").into_bytes()
}

/// One HTTP/1.1 chunk.
pub(crate) fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

pub(crate) fn last_chunk() -> Vec<u8> {
    b"0\r\n\r\n".to_vec()
}
