//! The cassette replay server: answers each request with the next unused recorded interaction
//! whose method, path and query (without credentials) match, byte for byte.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::cassette::{Cassette, Interaction, query_without_keys};
use crate::server::{self, Chunk, Handler, IncomingRequest, Reply, Running};

/// The status answered to a request no interaction matches (and recorded as a failure).
pub const UNMATCHED_STATUS: u16 = 599;

/// How recorded bodies are served.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct ReplayOptions {
    /// Serve bodies chunked in pieces of this many bytes (exercises stream decoders); `None`
    /// serves each body whole with its Content-Length.
    pub chunk_size: Option<usize>,
    /// Check a matched request's JSON body against the recorded one ([`body_differences`]):
    /// a difference fails [`ReplayServer::verify`].
    pub check_bodies: bool,
}

impl ReplayOptions {
    /// Serves bodies in chunks of `n` bytes.
    pub fn with_chunk_size(mut self, n: usize) -> Self {
        self.chunk_size = Some(n.max(1));
        self
    }
    /// Checks each matched request's JSON body against the recorded one.
    pub fn with_body_check(mut self) -> Self {
        self.check_bodies = true;
        self
    }
}

/// Where a request's JSON body departs from the recorded one in what decides the answer:
/// the `model` (where both name one), the number of `messages` / `contents` / `input` /
/// `inputs` / `texts` / `documents` / `tools` / `prompt` entries where the recording has
/// them (a field left out counts none, a single string one), the roles of the messages in
/// order, and whether it asks for a stream (left out: no).
///
/// ```
/// use serde_json::json;
/// use infermux_testkit::replay::body_differences;
/// let recorded = json!({"model": "m", "messages": [{"role": "user"}, {"role": "user"}], "temperature": 0});
/// assert!(body_differences(&json!({"model": "m", "messages": [{"role": "user"}, {"role": "user"}]}), &recorded).is_empty());
/// assert_eq!(body_differences(&json!({"model": "m", "messages": [1]}), &recorded),
///     ["`messages` has 1 entries, the recording 2"]);
/// // a field left out counts none, a stream left out is no stream, roles go in order
/// let tools = json!({"tools": [{"name": "f"}], "stream": true});
/// assert_eq!(body_differences(&json!({}), &tools),
///     ["`tools` has 0 entries, the recording 1", "`stream` is false, the recording true"]);
/// let roles = json!({"messages": [{"role": "system"}, {"role": "user"}]});
/// let swapped = json!({"messages": [{"role": "user"}, {"role": "system"}]});
/// assert_eq!(body_differences(&swapped, &roles).len(), 1);
/// ```
pub fn body_differences(sent: &serde_json::Value, recorded: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(a), Some(b)) = (sent.get("model"), recorded.get("model"))
        && a != b
    {
        out.push(format!("`model` is {a}, the recording {b}"));
    }
    // entries of a field: an array's length, a single value one, none when left out
    let entries = |v: &serde_json::Value, key: &str| match v.get(key) {
        None | Some(serde_json::Value::Null) => 0,
        Some(serde_json::Value::Array(a)) => a.len(),
        Some(_) => 1,
    };
    for key in [
        "messages",
        "contents",
        "input",
        "inputs",
        "texts",
        "documents",
        "tools",
        "prompt",
    ] {
        if recorded.get(key).is_some_and(|v| !v.is_null()) {
            let (a, b) = (entries(sent, key), entries(recorded, key));
            if a != b {
                out.push(format!("`{key}` has {a} entries, the recording {b}"));
            }
        }
    }
    let roles = |v: &serde_json::Value| -> Vec<String> {
        v.get("messages")
            .and_then(serde_json::Value::as_array)
            .map(|m| {
                m.iter()
                    .map(|x| x["role"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (a, b) = (roles(sent), roles(recorded));
    if a.len() == b.len() && a != b {
        out.push(format!(
            "the messages' roles are {a:?}, the recording's {b:?}"
        ));
    }
    let streams = |v: &serde_json::Value| v.get("stream").and_then(serde_json::Value::as_bool);
    let (a, b) = (
        streams(sent).unwrap_or(false),
        streams(recorded).unwrap_or(false),
    );
    if a != b {
        out.push(format!("`stream` is {a}, the recording {b}"));
    }
    out
}

#[derive(Debug)]
struct State {
    interactions: Vec<Interaction>,
    used: Vec<bool>,
    unmatched: Vec<String>,
    /// Matched requests whose bodies depart from the recording (with body checks on).
    differing: Vec<String>,
}

/// A loopback server replaying a cassette.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use infermux_testkit::{Cassette, ReplayServer};
/// let cassette = Cassette::from_yaml(r#"
/// interactions:
/// - request: {method: GET, uri: "https://api.example.com/v1/models", body: null, headers: {}}
///   response:
///     status: {code: 200, message: OK}
///     headers: {content-type: [application/json]}
///     body: {string: '{"object":"list","data":[]}'}
/// "#).unwrap();
/// let server = ReplayServer::start(cassette).await.unwrap();
/// // point a provider at server.url() + "/v1" ... then:
/// assert!(server.verify().is_err(), "the interaction was not used");
/// # }
/// ```
#[derive(Debug)]
pub struct ReplayServer {
    running: Running,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl ReplayServer {
    /// Starts serving `cassette` on 127.0.0.1.
    pub async fn start(cassette: Cassette) -> std::io::Result<Self> {
        Self::start_with(cassette, ReplayOptions::default()).await
    }

    /// Starts serving `cassette` with options.
    pub async fn start_with(cassette: Cassette, options: ReplayOptions) -> std::io::Result<Self> {
        let n = cassette.interactions.len();
        let state = Arc::new(Mutex::new(State {
            interactions: cassette.interactions,
            used: vec![false; n],
            unmatched: Vec::new(),
            differing: Vec::new(),
        }));
        let st = state.clone();
        let handler: Handler = Arc::new(move |req: IncomingRequest| {
            let reply = answer(&st, &req, options);
            Box::pin(async move { reply })
        });
        let running = server::start(handler).await?;
        Ok(ReplayServer { running, state })
    }

    /// `http://127.0.0.1:PORT` (append the recorded base path).
    pub fn url(&self) -> String {
        self.running.url()
    }

    /// TCP connections clients have opened to this server so far (a client that reuses its
    /// connections opens one for any number of sequential requests).
    pub fn connections(&self) -> usize {
        self.running.connections()
    }

    /// Requests that matched no interaction.
    pub fn unmatched(&self) -> Vec<String> {
        lock(&self.state).unmatched.clone()
    }

    /// Indexes of interactions not served yet.
    pub fn unused(&self) -> Vec<usize> {
        let st = lock(&self.state);
        st.used
            .iter()
            .enumerate()
            .filter(|(_, u)| !**u)
            .map(|(i, _)| i)
            .collect()
    }

    /// Ok when every interaction was served, no request went unmatched and (with body checks
    /// on) no matched request's body departed from the recording.
    pub fn verify(&self) -> Result<(), String> {
        let unmatched = self.unmatched();
        let unused = self.unused();
        let differing = lock(&self.state).differing.clone();
        if !differing.is_empty() {
            return Err(format!(
                "request bodies departed from the recording: {differing:?}"
            ));
        }
        if unmatched.is_empty() && unused.is_empty() {
            return Ok(());
        }
        let st = lock(&self.state);
        let unused: Vec<String> = unused
            .iter()
            .filter_map(|i| st.interactions.get(*i))
            .map(|it| format!("{} {}", it.request.method, it.request.path()))
            .collect();
        Err(format!(
            "unmatched requests: {unmatched:?}; unused interactions: {unused:?}"
        ))
    }
}

fn answer(state: &Mutex<State>, req: &IncomingRequest, options: ReplayOptions) -> Reply {
    let query = query_without_keys(&req.query);
    let mut st = lock(state);
    let found = st.interactions.iter().enumerate().position(|(i, it)| {
        !st.used.get(i).copied().unwrap_or(true)
            && it.request.method.eq_ignore_ascii_case(&req.method)
            && it.request.path() == req.path
            && it.request.query_without_keys() == query
    });
    let Some(i) = found else {
        let what = format!("{} {}?{}", req.method, req.path, query);
        st.unmatched.push(what.clone());
        return Reply::json(
            UNMATCHED_STATUS,
            &serde_json::json!({"error": {"message": format!("no recorded interaction matches {what}"), "type": "replay_unmatched"}}),
        );
    };
    if let Some(u) = st.used.get_mut(i) {
        *u = true;
    }
    if options.check_bodies
        && let Some(recorded) = st.interactions[i]
            .request
            .body
            .as_ref()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b.to_bytes()).ok())
    {
        match serde_json::from_slice::<serde_json::Value>(&req.body) {
            Ok(sent) => {
                for d in body_differences(&sent, &recorded) {
                    st.differing
                        .push(format!("{} {}: {d}", req.method, req.path));
                }
            }
            Err(_) => st.differing.push(format!(
                "{} {}: the body is not JSON, the recording's is",
                req.method, req.path
            )),
        }
    }
    let Some(resp) = st.interactions.get(i).map(|it| it.response.clone()) else {
        return Reply::Reset;
    };
    drop(st);
    let body = Bytes::from(resp.body.to_bytes());
    let mut headers = resp.headers;
    if !resp.body.is_raw() {
        // a parsed body was re-serialised: it is no longer compressed
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-encoding"));
    }
    match options.chunk_size {
        None => Reply::Full {
            status: resp.status,
            headers,
            body,
        },
        Some(size) => {
            let pieces: Vec<Bytes> = body.chunks(size).map(Bytes::copy_from_slice).collect();
            let (tx, rx) = mpsc::channel(pieces.len().max(1));
            for p in pieces {
                let _ = tx.try_send(Chunk::Data(p));
            }
            Reply::Stream {
                status: resp.status,
                headers,
                chunks: rx,
            }
        }
    }
}
