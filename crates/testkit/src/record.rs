//! Record mode: a loopback proxy to a real server that writes every interaction to a cassette.
//! Credentials are never recorded.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use infermux_core::{EndpointConfig, RequestContext, Timeouts};
use infermux_http::{AUTH_HEADERS, Auth, HttpEndpoint, Method};

use crate::cassette::{
    Body, Cassette, Interaction, RecordedRequest, RecordedResponse, query_without_keys,
};
use crate::server::{self, Handler, IncomingRequest, Reply, Running};

const FORWARDED: [&str; 3] = ["content-type", "accept", "anthropic-version"];

/// A recording proxy: point a provider at [`RecordingProxy::url`] and it forwards to the real
/// server, recording each exchange.
#[derive(Debug)]
pub struct RecordingProxy {
    running: Running,
    recorded: Arc<Mutex<Vec<Interaction>>>,
}

impl RecordingProxy {
    /// Starts a proxy to `upstream` (`http://127.0.0.1:8080`); recorded URIs name the upstream.
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let cfg = EndpointConfig::new("recording-upstream", upstream)
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .with_timeouts(Timeouts::standard().with_first_byte(Duration::from_secs(300)));
        let ep = Arc::new(
            HttpEndpoint::new("recorder", cfg, Auth::None)
                .map_err(|e| std::io::Error::other(e.to_string()))?,
        );
        let upstream = upstream.trim_end_matches('/').to_owned();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let rec = recorded.clone();
        let handler: Handler = Arc::new(move |req: IncomingRequest| {
            let (ep, rec, upstream) = (ep.clone(), rec.clone(), upstream.clone());
            Box::pin(async move { forward(&ep, &rec, &upstream, req).await })
        });
        let running = server::start(handler).await?;
        Ok(RecordingProxy { running, recorded })
    }

    /// The proxy's base URL.
    pub fn url(&self) -> String {
        self.running.url()
    }

    /// What was recorded so far.
    pub fn cassette(&self) -> Cassette {
        Cassette {
            interactions: self
                .recorded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Writes what was recorded as a vcrpy YAML cassette.
    pub fn save(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.cassette().to_yaml())
    }
}

async fn forward(
    ep: &HttpEndpoint,
    rec: &Mutex<Vec<Interaction>>,
    upstream: &str,
    req: IncomingRequest,
) -> Reply {
    let path_q = if req.query.is_empty() {
        req.path.clone()
    } else {
        format!("{}?{}", req.path, req.query)
    };
    let method = Method::from_bytes(req.method.as_bytes()).unwrap_or(Method::GET);
    let mut out = ep.request(method, &path_q);
    let mut headers = Vec::new();
    for name in FORWARDED {
        if let Some(v) = req.header(name) {
            if name != "content-type" {
                out = out.header(name, v);
            }
            headers.push((name.to_owned(), v.to_owned()));
        }
    }
    if !req.body.is_empty() {
        let ct = req
            .header("content-type")
            .unwrap_or("application/json")
            .to_owned();
        out = out.body(req.body.clone(), &ct);
    }
    let ctx = RequestContext::new();
    let resp = match out.send_raw(&ctx).await {
        Ok(r) => r,
        Err(_) => return Reply::Reset,
    };
    let status = resp.status();
    let resp_headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(k, _)| !AUTH_HEADERS.contains(&k.as_str()) && k.as_str() != "content-encoding")
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let body = resp.bytes().await.unwrap_or_default();
    let interaction = Interaction {
        request: RecordedRequest {
            method: req.method.clone(),
            // a key in the query (`?key=`, Gemini's) is forwarded, never recorded
            uri: match query_without_keys(&req.query) {
                q if q.is_empty() => format!("{upstream}{}", req.path),
                q => format!("{upstream}{}?{q}", req.path),
            },
            headers,
            body: (!req.body.is_empty()).then(|| Body::Raw(req.body.to_vec())),
        },
        response: RecordedResponse {
            status,
            message: http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
                .to_owned(),
            headers: resp_headers.clone(),
            body: Body::Raw(body.to_vec()),
        },
    };
    rec.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(interaction);
    Reply::Full {
        status,
        headers: resp_headers,
        body: Bytes::from(body.to_vec()),
    }
}
