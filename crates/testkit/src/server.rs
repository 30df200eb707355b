//! A tiny hyper server on 127.0.0.1 that the replay server, the recorder and the simulator
//! share: a handler turns each request into a full or streamed reply.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// A request as the handler sees it.
#[derive(Debug, Clone)]
pub struct IncomingRequest {
    /// Method, upper-case.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Raw query string (may be empty).
    pub query: String,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl IncomingRequest {
    /// The first value of a header, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// The body as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// One piece of a streamed reply.
#[derive(Debug)]
pub enum Chunk {
    /// Bytes to send.
    Data(Bytes),
    /// Abort the connection (the client sees a reset / incomplete message).
    Abort,
}

/// What the server answers.
#[derive(Debug)]
pub enum Reply {
    /// A complete body (Content-Length set by the server).
    Full {
        /// Status.
        status: u16,
        /// Headers other than framing ones.
        headers: Vec<(String, String)>,
        /// Body.
        body: Bytes,
    },
    /// A chunked body fed through a channel.
    Stream {
        /// Status.
        status: u16,
        /// Headers other than framing ones.
        headers: Vec<(String, String)>,
        /// The chunks.
        chunks: mpsc::Receiver<Chunk>,
    },
    /// Close the connection without answering.
    Reset,
}

impl Reply {
    /// A JSON reply.
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        }
    }
}

type BoxFut = Pin<Box<dyn Future<Output = Reply> + Send>>;
pub(crate) type Handler = Arc<dyn Fn(IncomingRequest) -> BoxFut + Send + Sync>;

const FRAMING: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

fn build_headers(
    resp: &mut Response<BoxBody<Bytes, std::io::Error>>,
    headers: Vec<(String, String)>,
) {
    for (k, v) in headers {
        if FRAMING.iter().any(|f| k.eq_ignore_ascii_case(f)) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
}

async fn serve_one(
    handler: Handler,
    req: hyper::Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, std::io::Error>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(std::io::Error::other)?;
    let incoming = IncomingRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts.headers,
        body,
    };
    let reply = handler(incoming).await;
    let (status, headers, body) = match reply {
        Reply::Reset => return Err(std::io::Error::other("reset by the test server")),
        Reply::Full {
            status,
            headers,
            body,
        } => (
            status,
            headers,
            Full::new(body)
                .map_err(|never: Infallible| match never {})
                .boxed(),
        ),
        Reply::Stream {
            status,
            headers,
            chunks,
        } => {
            let stream = futures_util::stream::unfold(chunks, |mut rx| async move {
                match rx.recv().await {
                    Some(Chunk::Data(b)) => Some((Ok(Frame::data(b)), rx)),
                    Some(Chunk::Abort) => {
                        Some((Err(std::io::Error::other("aborted by the test server")), rx))
                    }
                    None => None,
                }
            });
            (status, headers, StreamBody::new(stream).boxed())
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    build_headers(&mut resp, headers);
    Ok(resp)
}

/// A running server; dropping it stops accepting connections.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

impl Running {
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// TCP connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

pub(crate) async fn start(handler: Handler) -> std::io::Result<Running> {
    start_on("127.0.0.1:0", handler).await
}

pub(crate) async fn start_on(addr: &str, handler: Handler) -> std::io::Result<Running> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stop_rx => return,
                accepted = listener.accept() => {
                    let Ok((sock, _)) = accepted else { continue };
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = sock.set_nodelay(true);
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| serve_one(handler.clone(), req));
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(sock), svc)
                            .await;
                    });
                }
            }
        }
    });
    Ok(Running {
        addr,
        accepted,
        _stop: stop_tx,
    })
}
