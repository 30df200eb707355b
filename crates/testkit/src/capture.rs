//! A one-shot loopback server that answers with a fixed JSON body and hands back the request it
//! received (target, headers and body): it shows what goes on the wire, which the replay server
//! (matching without credentials) does not.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::HeaderMap;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::server::{self, Handler, IncomingRequest, Reply};

/// What the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request target: path and query.
    pub target: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, as sent.
    pub body: Bytes,
}

impl Seen {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// The body as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Starts a server on 127.0.0.1 that answers its first request with `body` (200, JSON); returns
/// its base URL and a handle that yields what it saw. The server stops once it has answered.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use infermux_core::{EndpointConfig, RequestContext};
/// use infermux_http::{Auth, HttpEndpoint};
/// let (url, seen) = infermux_testkit::capture(r#"{"ok":true}"#).await;
/// let ep = HttpEndpoint::new("t", EndpointConfig::new("t", &url).unwrap(), Auth::None).unwrap();
/// ep.get("/x?y=1").send(&RequestContext::new()).await.unwrap();
/// assert_eq!(seen.await.unwrap().target, "/x?y=1");
/// # }
/// ```
pub async fn capture(body: &'static str) -> (String, JoinHandle<Seen>) {
    let (tx, rx) = oneshot::channel::<Seen>();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let handler: Handler = Arc::new(move |req: IncomingRequest| {
        let target = if req.query.is_empty() {
            req.path.clone()
        } else {
            format!("{}?{}", req.path, req.query)
        };
        if let Some(tx) = tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = tx.send(Seen {
                target,
                headers: req.headers.clone(),
                body: req.body.clone(),
            });
        }
        Box::pin(async move {
            Reply::Full {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: Bytes::from_static(body.as_bytes()),
            }
        })
    });
    let running = match server::start(handler).await {
        Ok(r) => r,
        Err(e) => {
            let handle = tokio::spawn(async move { panic!("capture server did not start: {e}") });
            return (String::new(), handle);
        }
    };
    let url = running.url();
    let handle = tokio::spawn(async move {
        let seen = rx.await;
        drop(running);
        match seen {
            Ok(s) => s,
            Err(_) => panic!("the capture server saw no request"),
        }
    });
    (url, handle)
}

/// A loopback server that answers each request with what its handler returns for it, and
/// keeps every request it saw (bodies as sent): for exchanges whose answer depends on what the
/// client sent.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use infermux_core::{EndpointConfig, RequestContext};
/// use infermux_http::{Auth, HttpEndpoint};
/// use infermux_testkit::{Reply, Scripted};
/// let server = Scripted::start(|req| {
///     let status = if req.body.is_empty() { 400 } else { 200 };
///     Reply::json(status, &serde_json::json!({"ok": status == 200}))
/// })
/// .await
/// .unwrap();
/// let ep = HttpEndpoint::new("t", EndpointConfig::new("t", server.url()).unwrap(), Auth::None).unwrap();
/// let body = serde_json::json!({"a": 1});
/// ep.post("/x").json(&body).send(&RequestContext::new()).await.unwrap();
/// assert_eq!(server.requests()[0].json().unwrap()["a"], 1);
/// # }
/// ```
#[derive(Debug)]
pub struct Scripted {
    running: server::Running,
    seen: Arc<Mutex<Vec<IncomingRequest>>>,
}

impl Scripted {
    /// Starts the server on 127.0.0.1.
    ///
    /// # Errors
    /// When it cannot listen.
    pub async fn start<F>(handler: F) -> std::io::Result<Scripted>
    where
        F: Fn(&IncomingRequest) -> Reply + Send + Sync + 'static,
    {
        let seen: Arc<Mutex<Vec<IncomingRequest>>> = Arc::default();
        let kept = seen.clone();
        let handler: Handler = Arc::new(move |req: IncomingRequest| {
            let reply = handler(&req);
            kept.lock().unwrap_or_else(|p| p.into_inner()).push(req);
            Box::pin(async move { reply })
        });
        let running = server::start(handler).await?;
        Ok(Scripted { running, seen })
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.running.url()
    }

    /// The requests seen so far, in order.
    pub fn requests(&self) -> Vec<IncomingRequest> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
