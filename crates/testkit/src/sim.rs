//! A fault-injecting simulator of an OpenAI-compatible server (and of the LLVM inference
//! protocol: `/status`, `/models...`, see the infermux-llvm README), for load and failure tests.
//!
//! It answers `/v1/chat/completions` (plain, streamed, tool calls), `/v1/completions`,
//! `/v1/embeddings` and `/v1/models` deterministically, plus an Anthropic-style
//! `/v1/messages` (plain and streamed, `message_start` … `message_stop`), and injects faults
//! either at random (seeded, so a run replays exactly) or from a script: 429 with
//! `Retry-After`, 503, 529 overload, connection resets, requests held before any response
//! byte, mid-stream stalls released by a handle, truncated streams and errors inside a 200
//! stream — after the first content event, or right after the metadata-only start of the
//! stream (before any content). It is for fault injection and load; wire formats are proven
//! on recorded traffic, not here.
//!
//! For pools of keys it also logs every request (when, with which key, which request id,
//! [`Simulator::requests_log`]), gives keys their own behaviour ([`Simulator::set_key`]: 429
//! with `Retry-After` for N requests or until a time, 401, quota exhausted), adds OpenAI's
//! `x-ratelimit-*` headers to its answers ([`Simulator::set_rate_limit_headers`]) and reports
//! the usage a test scripts ([`Simulator::set_usage`]).
//!
//! The providers' own operations outside the `Request` enum have small routes too, shaped like
//! their published answers, so a client's pools and retries can be driven through them:
//! `/v1/audio/speech`, `/v1/audio/transcriptions`, `/v1/files` (multipart),
//! `/v1/messages/count_tokens` (Anthropic), `/api/pull` (Ollama, NDJSON progress) and vLLM's
//! `/v1/load_lora_adapter` and `/v1/unload_lora_adapter` (a second load of one name is a 400,
//! as vLLM answers).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::rng::SplitMix64;
use crate::server::{self, Chunk, Handler, IncomingRequest, Reply, Running};

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// 429 with `Retry-After` (and `retry-after-ms`).
    RateLimited(Duration),
    /// 503 Service Unavailable.
    Unavailable,
    /// 529 with Anthropic's `overloaded_error` body.
    Overloaded,
    /// The connection is closed without an answer.
    Reset,
    /// No response byte (not even the headers) until [`Simulator::release_stalls`]: for
    /// first-byte timeouts and call deadlines. Applies to every route.
    StallBeforeHeaders,
    /// A stream stops after its first content event until [`Simulator::release_stalls`].
    StallMidStream,
    /// A stream ends after its first content event without `[DONE]` (or `message_stop`).
    TruncateStream,
    /// A 200 stream carries an error event after its first content event.
    ErrorInStream,
    /// A 200 stream sends its metadata-only start (a role-only chunk; Anthropic's
    /// `message_start`) and then an error event (`server_error`; Anthropic's
    /// `overloaded_error`), before any content.
    ErrorAfterStart,
    /// A 200 stream sends its metadata-only start and then ends, before any content.
    TruncateAfterStart,
}

impl Fault {
    /// A stable name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::RateLimited(_) => "rate_limited_429",
            Fault::Unavailable => "unavailable_503",
            Fault::Overloaded => "overloaded_529",
            Fault::Reset => "reset",
            Fault::StallBeforeHeaders => "stall_before_headers",
            Fault::StallMidStream => "stall_mid_stream",
            Fault::TruncateStream => "truncated_stream",
            Fault::ErrorInStream => "error_in_stream",
            Fault::ErrorAfterStart => "error_after_start",
            Fault::TruncateAfterStart => "truncated_after_start",
        }
    }
    fn is_stream_only(self) -> bool {
        matches!(
            self,
            Fault::StallMidStream
                | Fault::TruncateStream
                | Fault::ErrorInStream
                | Fault::ErrorAfterStart
                | Fault::TruncateAfterStart
        )
    }
}

/// Random faults: each request draws one fault with these probabilities (summing to ≤ 1).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct FaultPlan {
    /// Seed of the draw.
    pub seed: u64,
    /// (fault, probability) pairs.
    pub faults: Vec<(Fault, f64)>,
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> Self {
        FaultPlan::default()
    }
    /// A seeded plan.
    pub fn seeded(seed: u64) -> Self {
        FaultPlan {
            seed,
            faults: Vec::new(),
        }
    }
    /// Adds a fault with its probability.
    pub fn with(mut self, fault: Fault, probability: f64) -> Self {
        self.faults.push((fault, probability.clamp(0.0, 1.0)));
        self
    }
    /// About `total` probability of transient faults spread over 429, 503, 529, resets and
    /// mid-stream problems (stream faults apply to streamed requests only).
    pub fn transient(seed: u64, total: f64) -> Self {
        let p = total / 6.0;
        FaultPlan::seeded(seed)
            .with(Fault::RateLimited(Duration::from_millis(200)), p)
            .with(Fault::Unavailable, p)
            .with(Fault::Overloaded, p)
            .with(Fault::Reset, p)
            .with(Fault::TruncateStream, p)
            .with(Fault::ErrorInStream, p)
    }
}

/// One request as the simulator saw it, in arrival order ([`Simulator::requests_log`]).
///
/// The key is recorded as presented (simulator keys are test values): `Debug` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimRequest {
    /// When it arrived, since the simulator started, on tokio's clock (so a test with paused
    /// time reads the paused clock).
    pub at: Duration,
    /// The method.
    pub method: String,
    /// The path, as sent (before the simulator maps `/v3` routes).
    pub path: String,
    /// The credential presented: `Authorization: Bearer <key>`, else `x-api-key`,
    /// `x-goog-api-key` or `api-key`.
    pub key: Option<String>,
    /// The `X-Request-ID` header (the infermux transport sends one on every request).
    pub request_id: Option<String>,
}

/// Until when a [`KeyBehaviour::RateLimited`] key answers 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Until {
    /// Until this time since the simulator started (tokio's clock); OK from then on.
    At(Duration),
    /// For its next this many requests (from [`Simulator::set_key`] on); OK after them.
    Requests(u64),
    /// For as long as the behaviour is set.
    Always,
}

/// How the simulator answers the requests presenting one key ([`Simulator::set_key`]), on its
/// OpenAI- and Anthropic-style routes, before any fault is drawn. Unknown keys are
/// [`KeyBehaviour::Ok`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyBehaviour {
    /// Answered normally.
    Ok,
    /// 429 with `Retry-After` (whole seconds, at least 1), `retry-after-ms`,
    /// `x-ratelimit-remaining-requests: 0` and OpenAI's `rate_limit_exceeded` body, until
    /// `until`; answered normally after.
    RateLimited {
        /// The delay the 429 announces.
        retry_after: Duration,
        /// When the 429s stop.
        until: Until,
    },
    /// 401 with OpenAI's `invalid_api_key` body.
    Unauthorized,
    /// 429 with OpenAI's `insufficient_quota` body (and no `Retry-After`).
    QuotaExceeded,
}

impl KeyBehaviour {
    /// 429 + `retry_after` for the key's next `n` requests.
    pub fn rate_limited_for(retry_after: Duration, n: u64) -> Self {
        KeyBehaviour::RateLimited {
            retry_after,
            until: Until::Requests(n),
        }
    }
    /// 429 + `retry_after` until `at` (since the simulator started).
    pub fn rate_limited_until(retry_after: Duration, at: Duration) -> Self {
        KeyBehaviour::RateLimited {
            retry_after,
            until: Until::At(at),
        }
    }
}

/// One rate-limit window of [`RateLimitHeaders`]: limit, remaining, and when it resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimWindow {
    /// `x-ratelimit-limit-*`.
    pub limit: u64,
    /// `x-ratelimit-remaining-*`.
    pub remaining: u64,
    /// `x-ratelimit-reset-*` (written as OpenAI does: `120ms`, `2s`).
    pub reset: Duration,
}

impl SimWindow {
    /// A window.
    pub fn new(limit: u64, remaining: u64, reset: Duration) -> Self {
        SimWindow {
            limit,
            remaining,
            reset,
        }
    }
}

/// OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers, added to every
/// successful answer of the OpenAI-style routes ([`Simulator::set_rate_limit_headers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RateLimitHeaders {
    /// The `-requests` headers.
    pub requests: Option<SimWindow>,
    /// The `-tokens` headers.
    pub tokens: Option<SimWindow>,
}

impl RateLimitHeaders {
    /// Both windows.
    pub fn new(requests: Option<SimWindow>, tokens: Option<SimWindow>) -> Self {
        RateLimitHeaders { requests, tokens }
    }
    fn push(&self, headers: &mut Vec<(String, String)>) {
        let reset = |d: Duration| {
            if d.subsec_millis() == 0 {
                format!("{}s", d.as_secs())
            } else {
                format!("{}ms", d.as_millis())
            }
        };
        for (name, w) in [("requests", self.requests), ("tokens", self.tokens)] {
            if let Some(w) = w {
                headers.push((format!("x-ratelimit-limit-{name}"), w.limit.to_string()));
                headers.push((
                    format!("x-ratelimit-remaining-{name}"),
                    w.remaining.to_string(),
                ));
                headers.push((format!("x-ratelimit-reset-{name}"), reset(w.reset)));
            }
        }
    }
}

/// The usage the simulator reports instead of counting words ([`Simulator::set_usage`]): in
/// chat and completion answers (`usage`, and the streamed usage chunk when asked for),
/// embeddings (`prompt_tokens`) and Anthropic messages (`input_tokens`, `output_tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimUsage {
    /// Prompt (input) tokens.
    pub prompt_tokens: u64,
    /// Completion (output) tokens.
    pub completion_tokens: u64,
}

impl SimUsage {
    /// A usage.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        SimUsage {
            prompt_tokens,
            completion_tokens,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct KeyState {
    behaviour: KeyBehaviour,
    /// 429s served under a [`Until::Requests`] behaviour.
    served: u64,
}

#[derive(Debug, Default)]
struct Stats {
    requests: AtomicU64,
    faults: Mutex<Vec<(&'static str, u64)>>,
}

impl Stats {
    fn fault(&self, f: Fault) {
        let mut v = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        match v.iter_mut().find(|(n, _)| *n == f.name()) {
            Some((_, c)) => *c += 1,
            None => v.push((f.name(), 1)),
        }
    }
}

#[derive(Debug)]
struct Shared {
    plan: FaultPlan,
    rng: Mutex<SplitMix64>,
    script: Mutex<VecDeque<Fault>>,
    stats: Stats,
    release: watch::Sender<u64>,
    stalled: watch::Sender<usize>,
    model: String,
    api_key: Mutex<Option<String>>,
    per_model: Mutex<Vec<(String, u64, u64)>>,
    started: Instant,
    log: Mutex<Vec<SimRequest>>,
    keys: Mutex<HashMap<String, KeyState>>,
    rate_limit_headers: Mutex<Option<RateLimitHeaders>>,
    usage: Mutex<Option<SimUsage>>,
    /// The fixed cost of every request, served one at a time (`None`: no cost, concurrent).
    cost: Mutex<Option<Duration>>,
    /// The one worker requests queue for while a cost is set.
    worker: tokio::sync::Mutex<()>,
    /// The LoRA adapters loaded (vLLM's routes).
    lora: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running simulator.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use infermux_testkit::{Fault, FaultPlan, Simulator};
/// let sim = Simulator::start(FaultPlan::none()).await.unwrap();
/// sim.push_fault(Fault::Unavailable); // the next request gets a 503
/// println!("OpenAI-compatible base URL: {}/v1", sim.url());
/// # }
/// ```
#[derive(Debug)]
pub struct Simulator {
    running: Running,
    shared: Arc<Shared>,
}

impl Simulator {
    /// Starts a simulator with a random fault plan on 127.0.0.1 (any free port).
    pub async fn start(plan: FaultPlan) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0", plan).await
    }

    /// Starts a simulator on a given address.
    pub async fn start_on(addr: &str, plan: FaultPlan) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            rng: Mutex::new(SplitMix64::new(plan.seed)),
            plan,
            script: Mutex::new(VecDeque::new()),
            stats: Stats::default(),
            release: watch::channel(0).0,
            stalled: watch::channel(0).0,
            model: "sim-echo-1".to_owned(),
            api_key: Mutex::new(None),
            per_model: Mutex::new(Vec::new()),
            started: Instant::now(),
            log: Mutex::new(Vec::new()),
            keys: Mutex::new(HashMap::new()),
            rate_limit_headers: Mutex::new(None),
            usage: Mutex::new(None),
            cost: Mutex::new(None),
            worker: tokio::sync::Mutex::new(()),
            lora: Mutex::new(HashSet::new()),
        });
        let sh = shared.clone();
        let handler: Handler = Arc::new(move |req: IncomingRequest| {
            let sh = sh.clone();
            Box::pin(async move { handle(&sh, req).await })
        });
        let running = server::start_on(addr, handler).await?;
        Ok(Simulator { running, shared })
    }

    /// `http://127.0.0.1:PORT`; the OpenAI routes are under `/v1`.
    pub fn url(&self) -> String {
        self.running.url()
    }

    /// The model name the simulator reports.
    pub fn model(&self) -> &str {
        &self.shared.model
    }

    /// Makes the next request (in arrival order) get `fault`, before any random draw.
    pub fn push_fault(&self, fault: Fault) {
        self.shared
            .script
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(fault);
    }

    /// Requires `Authorization: Bearer <key>` on every request (401 otherwise).
    pub fn require_api_key(&self, key: &str) {
        *self
            .shared
            .api_key
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(key.to_owned());
    }

    /// Releases every stream (and every request held before its headers) stalled so far.
    pub fn release_stalls(&self) {
        self.shared.release.send_modify(|g| *g += 1);
    }

    /// Waits until at least `n` streams or requests are stalled (for synchronising tests
    /// without sleeps).
    pub async fn wait_stalled(&self, n: usize) {
        let mut rx = self.shared.stalled.subscribe();
        let _ = rx.wait_for(|s| *s >= n).await;
    }

    /// Requests received.
    pub fn requests(&self) -> u64 {
        self.shared.stats.requests.load(Ordering::Relaxed)
    }

    /// Every request received so far, in arrival order.
    pub fn requests_log(&self) -> Vec<SimRequest> {
        lock(&self.shared.log).clone()
    }

    /// How many requests presented `key`.
    pub fn requests_by_key(&self, key: &str) -> u64 {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.key.as_deref() == Some(key))
            .count() as u64
    }

    /// Makes the requests presenting `key` behave as `behaviour` from now on (replacing what
    /// was set for it; a [`Until::Requests`] count starts again).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use infermux_testkit::{FaultPlan, KeyBehaviour, Simulator};
    /// let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    /// // 429 + Retry-After: 1 for the key's next 2 requests, then OK
    /// sim.set_key("sk-busy", KeyBehaviour::rate_limited_for(Duration::from_secs(1), 2));
    /// sim.set_key("sk-revoked", KeyBehaviour::Unauthorized);
    /// # }
    /// ```
    pub fn set_key(&self, key: &str, behaviour: KeyBehaviour) {
        lock(&self.shared.keys).insert(
            key.to_owned(),
            KeyState {
                behaviour,
                served: 0,
            },
        );
    }

    /// Adds OpenAI's `x-ratelimit-*` headers to every successful answer of the OpenAI-style
    /// routes from now on (`None`: no such headers, the default).
    pub fn set_rate_limit_headers(&self, headers: Option<RateLimitHeaders>) {
        *lock(&self.shared.rate_limit_headers) = headers;
    }

    /// Reports `usage` in every answer from now on instead of counting words (`None`: count
    /// them, the default).
    pub fn set_usage(&self, usage: Option<SimUsage>) {
        *lock(&self.shared.usage) = usage;
    }

    /// Gives every request from now on a fixed cost: the simulator then serves requests one at
    /// a time, each holding its single worker for `cost` before it is answered, like a model
    /// server with one compute stream whose per-request overhead dominates (`None`: no cost,
    /// requests answered at once and concurrently, the default). A request with several
    /// inputs costs the same as one with one: what client-side batching saves.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use infermux_testkit::{FaultPlan, Simulator};
    /// let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    /// sim.set_request_cost(Some(Duration::from_millis(2)));
    /// # }
    /// ```
    pub fn set_request_cost(&self, cost: Option<Duration>) {
        *lock(&self.shared.cost) = cost;
    }

    /// Faults injected, by name.
    pub fn faults(&self) -> Vec<(&'static str, u64)> {
        self.shared
            .stats
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn draw(sh: &Shared, streaming: bool) -> Option<Fault> {
    if let Some(f) = sh
        .script
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop_front()
    {
        return Some(f);
    }
    let x = sh.rng.lock().unwrap_or_else(|p| p.into_inner()).next_f64();
    let mut acc = 0.0;
    for (f, p) in &sh.plan.faults {
        acc += p;
        if x < acc {
            return (streaming || !f.is_stream_only()).then_some(*f);
        }
    }
    None
}

fn error_body(kind: &str, message: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "code": kind}})
}

fn last_user_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        })
        .unwrap_or_default()
}

fn answer_words(prompt: &str, max_tokens: Option<u64>) -> Vec<String> {
    let mut words: Vec<String> = std::iter::once("Echo:".to_owned())
        .chain(prompt.split_whitespace().map(str::to_owned))
        .collect();
    if let Some(max) = max_tokens {
        words.truncate(usize::try_from(max.max(1)).unwrap_or(usize::MAX));
    }
    words
}

fn tool_call(body: &Value) -> Option<Value> {
    let tools = body["tools"].as_array()?;
    if tools.is_empty() || body["tool_choice"] == "none" {
        return None;
    }
    let f = &tools.first()?["function"];
    let mut args = serde_json::Map::new();
    if let Some(props) = f["parameters"]["properties"].as_object() {
        for (name, schema) in props {
            let v = match schema["type"].as_str() {
                Some("integer") | Some("number") => json!(1),
                Some("boolean") => json!(true),
                _ => json!("Paris"),
            };
            args.insert(name.clone(), v);
        }
    }
    Some(
        json!({"id": "call_sim_0", "type": "function", "function": {"name": f["name"], "arguments": Value::Object(args).to_string()}}),
    )
}

fn embedding(text: &str) -> Vec<f32> {
    let mut rng = SplitMix64::new(text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    }));
    let v: Vec<f32> = (0..8).map(|_| rng.next_f64() as f32 - 0.5).collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    v.into_iter().map(|x| x / norm).collect()
}

/// Holds a request until the next [`Simulator::release_stalls`].
async fn stall(sh: &Shared) {
    let mut release = sh.release.subscribe();
    let seen = *release.borrow_and_update();
    sh.stalled.send_modify(|n| *n += 1);
    let _ = release.wait_for(|g| *g > seen).await;
    sh.stalled.send_modify(|n| *n = n.saturating_sub(1));
}

async fn handle(sh: &Arc<Shared>, req: IncomingRequest) -> Reply {
    let cost = *lock(&sh.cost);
    if let Some(cost) = cost {
        let _worker = sh.worker.lock().await;
        tokio::time::sleep(cost).await;
    }
    let mut held = false;
    let reply = answer(sh, req, &mut held);
    if held {
        stall(sh).await;
    }
    reply
}

/// The reply; sets `held` when it must wait for [`Simulator::release_stalls`] first.
fn answer(sh: &Arc<Shared>, req: IncomingRequest, held: &mut bool) -> Reply {
    sh.stats.requests.fetch_add(1, Ordering::Relaxed);
    let key = presented_key(&req);
    lock(&sh.log).push(SimRequest {
        at: sh.started.elapsed(),
        method: req.method.clone(),
        path: req.path.clone(),
        key: key.clone(),
        request_id: req.header("x-request-id").map(str::to_owned),
    });
    let body = req.json().unwrap_or(Value::Null);
    let streaming = body["stream"] == true;
    // OVMS's OpenAI-compatible routes live under /v3
    let mut req = req;
    if let Some(rest) = req.path.strip_prefix("/v3/") {
        if rest == "rerank" {
            return rerank(&req);
        }
        req.path = format!("/v1/{rest}");
    }
    let route = (req.method.as_str(), req.path.as_str());
    let ovms = req.path.starts_with("/v2/")
        || (req.path.starts_with("/v1/models/") && req.method != "POST")
        || (req.path.starts_with("/v1/models/") && req.path.ends_with(":predict"));
    if ovms {
        if let Some(f) = draw(sh, false) {
            sh.stats.fault(f);
            return Reply::json(
                503,
                &json!({"error": format!("injected fault: {}", f.name())}),
            );
        }
        return ovms_route(&req, &body);
    }
    let llvm = req.path == "/status" || req.path == "/models" || req.path.starts_with("/models/");
    let known =
        llvm || matches!(
            route,
            ("POST", "/v1/chat/completions")
                | ("POST", "/v1/completions")
                | ("POST", "/v1/embeddings")
                | ("POST", "/v1/messages")
                | ("GET", "/v1/models")
        ) || is_op_route(route);
    if !known {
        return Reply::json(404, &error_body("not_found", "no such route"));
    }
    let messages = route == ("POST", "/v1/messages");
    let anthropic = messages || route == ("POST", "/v1/messages/count_tokens");
    if let Some(reply) = key.as_deref().and_then(|k| key_reply(sh, k)) {
        return reply;
    }
    let required = sh.api_key.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(key) = required
        && req.header("authorization") != Some(format!("Bearer {key}").as_str())
        && !(anthropic && req.header("x-api-key") == Some(key.as_str()))
    {
        return Reply::json(
            401,
            &error_body("invalid_api_key", "Incorrect API key provided"),
        );
    }
    let fault = draw(sh, streaming);
    if let Some(f) = fault {
        sh.stats.fault(f);
        match f {
            Fault::RateLimited(after) => {
                let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
                headers.push(("retry-after-ms".into(), after.as_millis().to_string()));
                headers.push(("retry-after".into(), after.as_secs().max(1).to_string()));
                return Reply::Full {
                    status: 429,
                    headers,
                    body: Bytes::from(
                        error_body("rate_limit_exceeded", "Rate limit reached").to_string(),
                    ),
                };
            }
            Fault::Unavailable => {
                return Reply::json(
                    503,
                    &error_body("server_error", "The server is temporarily unavailable"),
                );
            }
            Fault::Overloaded => {
                return Reply::json(
                    529,
                    &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                );
            }
            Fault::Reset => return Reply::Reset,
            Fault::StallBeforeHeaders => *held = true,
            _ => {}
        }
    }
    if llvm {
        return llvm_route(sh, &req, &body);
    }
    if is_op_route(route) {
        return op_route(sh, route, &req, &body);
    }
    if messages {
        return anthropic_messages(sh, &body, streaming, fault);
    }
    let mut reply = openai_route(sh, route, &body, streaming, fault);
    if let Some(limits) = *lock(&sh.rate_limit_headers)
        && let Reply::Full {
            status: 200,
            headers,
            ..
        }
        | Reply::Stream {
            status: 200,
            headers,
            ..
        } = &mut reply
    {
        limits.push(headers);
    }
    reply
}

/// The routes of operations outside the `Request` enum.
fn is_op_route(route: (&str, &str)) -> bool {
    matches!(
        route,
        ("POST", "/v1/audio/speech")
            | ("POST", "/v1/audio/transcriptions")
            | ("POST", "/v1/files")
            | ("POST", "/v1/messages/count_tokens")
            | ("POST", "/api/pull")
            | ("POST", "/v1/load_lora_adapter")
            | ("POST", "/v1/unload_lora_adapter")
    )
}

/// The parts of a `multipart/form-data` body: (name, content).
fn multipart_parts(req: &IncomingRequest) -> Vec<(String, &[u8])> {
    let Some(boundary) = req
        .header("content-type")
        .and_then(|c| c.split("boundary=").nth(1))
        .map(|b| {
            format!(
                "--{}",
                b.split(';').next().unwrap_or(b).trim().trim_matches('"')
            )
        })
    else {
        return Vec::new();
    };
    let body = &req.body[..];
    let mut parts = Vec::new();
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from)
    };
    let mut at = match find(body, boundary.as_bytes(), 0) {
        Some(i) => i + boundary.len(),
        None => return parts,
    };
    while let Some(next) = find(body, boundary.as_bytes(), at) {
        let part = &body[at..next];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        if let Some(split) = find(part, b"\r\n\r\n", 0) {
            let head = String::from_utf8_lossy(&part[..split]);
            let name = head
                .split("name=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_owned();
            parts.push((name, &part[split + 4..]));
        }
        at = next + boundary.len();
    }
    parts
}

/// Words in the text of an Anthropic request's system prompt and messages.
fn prompt_words(body: &Value) -> u64 {
    fn words(v: &Value) -> u64 {
        match v {
            Value::String(s) => s.split_whitespace().count() as u64,
            Value::Array(a) => a.iter().map(|b| words(&b["text"])).sum(),
            _ => 0,
        }
    }
    let messages: u64 = body["messages"]
        .as_array()
        .map_or(0, |m| m.iter().map(|m| words(&m["content"])).sum());
    messages + words(&body["system"])
}

/// Speech, transcription, files, token counting, model pulls and LoRA adapters.
fn op_route(sh: &Shared, route: (&str, &str), req: &IncomingRequest, body: &Value) -> Reply {
    match route.1 {
        "/v1/audio/speech" => Reply::Full {
            status: 200,
            headers: vec![("content-type".into(), "audio/mpeg".into())],
            body: Bytes::from(format!(
                "ID3sim:{}:{}",
                body["voice"].as_str().unwrap_or(""),
                body["input"].as_str().unwrap_or("")
            )),
        },
        "/v1/audio/transcriptions" => {
            let parts = multipart_parts(req);
            let audio = parts.iter().find(|(n, _)| n == "file").map_or(0, |p| p.1.len());
            Reply::json(200, &json!({"text": format!("{audio} bytes of audio")}))
        }
        "/v1/files" => {
            let parts = multipart_parts(req);
            let Some((_, file)) = parts.iter().find(|(n, _)| n == "file") else {
                return Reply::json(
                    400,
                    &error_body("invalid_request_error", "a file part is required"),
                );
            };
            let purpose = parts
                .iter()
                .find(|(n, _)| n == "purpose")
                .map(|p| String::from_utf8_lossy(p.1).into_owned())
                .unwrap_or_default();
            let n = sh.stats.requests.load(Ordering::Relaxed);
            Reply::json(
                200,
                &json!({"id": format!("file-sim{n}"), "object": "file", "bytes": file.len(),
                    "created_at": 0, "filename": "upload", "purpose": purpose}),
            )
        }
        "/v1/messages/count_tokens" => {
            Reply::json(200, &json!({"input_tokens": prompt_words(body)}))
        }
        "/api/pull" => Reply::Full {
            status: 200,
            headers: vec![("content-type".into(), "application/x-ndjson".into())],
            body: Bytes::from(
                [
                    json!({"status": "pulling manifest"}),
                    json!({"status": "pulling sha256:5e1", "digest": "sha256:5e1", "total": 64, "completed": 64}),
                    json!({"status": "verifying sha256 digest"}),
                    json!({"status": "success"}),
                ]
                .iter()
                .map(|v| format!("{v}\n"))
                .collect::<String>(),
            ),
        },
        path => {
            let name = body["lora_name"].as_str().unwrap_or("").to_owned();
            let mut lora = lock(&sh.lora);
            let load = path == "/v1/load_lora_adapter";
            let changed = if load {
                lora.insert(name.clone())
            } else {
                lora.remove(&name)
            };
            if !changed {
                let msg = if load {
                    format!("The lora adapter '{name}' has already been loaded.")
                } else {
                    format!("The lora adapter '{name}' cannot be found.")
                };
                return Reply::json(
                    400,
                    &json!({"object": "error", "message": msg, "type": "InvalidUserInput", "param": null, "code": 400}),
                );
            }
            let verb = if load { "added" } else { "removed" };
            Reply::Full {
                status: 200,
                headers: vec![("content-type".into(), "text/plain".into())],
                body: Bytes::from(format!(
                    "Success: LoRA adapter '{name}' {verb} successfully."
                )),
            }
        }
    }
}

/// The credential `req` presents: `Authorization: Bearer`, `x-api-key`, `x-goog-api-key` or
/// `api-key`.
fn presented_key(req: &IncomingRequest) -> Option<String> {
    req.header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| req.header("x-api-key"))
        .or_else(|| req.header("x-goog-api-key"))
        .or_else(|| req.header("api-key"))
        .map(str::to_owned)
}

/// The answer `key`'s behaviour gives, if it is not answered normally.
fn key_reply(sh: &Shared, key: &str) -> Option<Reply> {
    let mut keys = lock(&sh.keys);
    let state = keys.get_mut(key)?;
    match state.behaviour {
        KeyBehaviour::Ok => None,
        KeyBehaviour::Unauthorized => Some(Reply::json(
            401,
            &json!({"error": {"message": "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
        )),
        KeyBehaviour::QuotaExceeded => Some(Reply::json(
            429,
            &json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
                "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}),
        )),
        KeyBehaviour::RateLimited { retry_after, until } => {
            let limited = match until {
                Until::At(at) => sh.started.elapsed() < at,
                Until::Requests(n) => state.served < n,
                Until::Always => true,
            };
            if !limited {
                return None;
            }
            state.served += 1;
            Some(Reply::Full {
                status: 429,
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    ("retry-after".into(), retry_after_secs(retry_after)),
                    ("retry-after-ms".into(), retry_after.as_millis().to_string()),
                    ("x-ratelimit-remaining-requests".into(), "0".into()),
                ],
                body: Bytes::from(
                    json!({"error": {"message": format!("Rate limit reached for requests. Please try again in {}ms.", retry_after.as_millis()),
                        "type": "requests", "param": null, "code": "rate_limit_exceeded"}})
                    .to_string(),
                ),
            })
        }
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
fn retry_after_secs(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1).to_string()
}

/// The OpenAI-style routes: models, embeddings, completions and chat.
fn openai_route(
    sh: &Arc<Shared>,
    route: (&str, &str),
    body: &Value,
    streaming: bool,
    fault: Option<Fault>,
) -> Reply {
    let usage = *lock(&sh.usage);
    let model = body["model"].as_str().unwrap_or(&sh.model).to_owned();
    match route {
        ("GET", _) => Reply::json(
            200,
            &json!({"object": "list", "data": [{"id": sh.model, "object": "model", "created": 0, "owned_by": "infermux-sim"}]}),
        ),
        ("POST", "/v1/embeddings") => {
            let inputs: Vec<String> = match &body["input"] {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => {
                    return Reply::json(
                        400,
                        &error_body(
                            "invalid_request_error",
                            "input must be a string or an array of strings",
                        ),
                    );
                }
            };
            let tokens = usage.map_or_else(
                || {
                    inputs
                        .iter()
                        .map(|s| s.split_whitespace().count() as u64)
                        .sum()
                },
                |u| u.prompt_tokens,
            );
            let data: Vec<Value> = inputs
                .iter()
                .enumerate()
                .map(|(i, s)| json!({"object": "embedding", "index": i, "embedding": embedding(s)}))
                .collect();
            Reply::json(
                200,
                &json!({"object": "list", "model": model, "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
            )
        }
        ("POST", "/v1/completions") => {
            let prompt = body["prompt"].as_str().unwrap_or("");
            let words = answer_words(prompt, body["max_tokens"].as_u64());
            let text = words.join(" ");
            let u = usage.unwrap_or(SimUsage::new(
                prompt.split_whitespace().count() as u64,
                words.len() as u64,
            ));
            Reply::json(
                200,
                &json!({"id": "cmpl-sim", "object": "text_completion", "created": 0, "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.prompt_tokens + u.completion_tokens}}),
            )
        }
        _ => chat(sh, body, model, streaming, fault, usage),
    }
}

fn chat(
    sh: &Arc<Shared>,
    body: &Value,
    model: String,
    streaming: bool,
    fault: Option<Fault>,
    usage: Option<SimUsage>,
) -> Reply {
    if !body["messages"].is_array() {
        return Reply::json(
            400,
            &error_body("invalid_request_error", "`messages` is required"),
        );
    }
    let prompt = last_user_text(body);
    let prompt_tokens = body["messages"].as_array().map_or(0, |m| {
        m.iter()
            .map(|m| {
                m["content"]
                    .as_str()
                    .map_or(1, |s| s.split_whitespace().count())
            })
            .sum::<usize>()
    });
    let call = tool_call(body);
    let words = if call.is_some() {
        Vec::new()
    } else {
        answer_words(&prompt, body["max_tokens"].as_u64())
    };
    let finish = if call.is_some() { "tool_calls" } else { "stop" };
    let u = usage.unwrap_or(SimUsage::new(
        prompt_tokens as u64,
        words.len().max(1) as u64,
    ));
    let usage = json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.prompt_tokens + u.completion_tokens});
    if !streaming {
        let mut message = json!({"role": "assistant", "content": words.join(" ")});
        if let Some(c) = &call {
            message["content"] = Value::Null;
            message["tool_calls"] = json!([c]);
        }
        return Reply::json(
            200,
            &json!({"id": "chatcmpl-sim", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}),
        );
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-sim", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events: Vec<Value> = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    if let Some(c) = &call {
        let args = c["function"]["arguments"]
            .as_str()
            .unwrap_or("{}")
            .to_owned();
        let (a, b) = args.split_at(args.len() / 2);
        events.push(chunk(json!({"tool_calls": [{"index": 0, "id": c["id"], "type": "function", "function": {"name": c["function"]["name"], "arguments": a}}]}), Value::Null));
        events.push(chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": b}}]}),
            Value::Null,
        ));
    }
    for (i, w) in words.iter().enumerate() {
        let text = if i == 0 { w.clone() } else { format!(" {w}") };
        events.push(chunk(json!({"content": text}), Value::Null));
    }
    events.push(chunk(json!({}), json!(finish)));
    if body["stream_options"]["include_usage"] == true {
        events.push(json!({"id": "chatcmpl-sim", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [], "usage": usage}));
    }
    let (tx, rx) = mpsc::channel(16);
    let sh = sh.clone();
    tokio::spawn(async move {
        let mut release = sh.release.subscribe();
        let seen = *release.borrow_and_update();
        for (i, ev) in events.iter().enumerate() {
            // events[0] is the role-only chunk (metadata); events[1] the first content
            let at = match fault {
                Some(Fault::ErrorAfterStart | Fault::TruncateAfterStart) => 1,
                _ => 2,
            };
            if i == at {
                match fault {
                    Some(Fault::StallMidStream) => {
                        sh.stalled.send_modify(|n| *n += 1);
                        let _ = release.wait_for(|g| *g > seen).await;
                        sh.stalled.send_modify(|n| *n = n.saturating_sub(1));
                    }
                    Some(Fault::TruncateStream | Fault::TruncateAfterStart) => return,
                    Some(Fault::ErrorInStream | Fault::ErrorAfterStart) => {
                        let e = error_body("server_error", "The model crashed mid-stream");
                        let _ = tx
                            .send(Chunk::Data(Bytes::from(format!("data: {e}\n\n"))))
                            .await;
                        return;
                    }
                    _ => {}
                }
            }
            if tx
                .send(Chunk::Data(Bytes::from(format!("data: {ev}\n\n"))))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = tx
            .send(Chunk::Data(Bytes::from_static(b"data: [DONE]\n\n")))
            .await;
    });
    Reply::Stream {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        chunks: rx,
    }
}

/// Anthropic's Messages API (`POST /v1/messages`), echoing like the chat route: a plain
/// `message`, or the SSE sequence `message_start`, `content_block_start`, `ping`,
/// `content_block_delta` per word, `content_block_stop`, `message_delta`, `message_stop`.
/// Stream faults act after `message_start` (`ErrorAfterStart`: an `overloaded_error` event)
/// or after the first text delta.
fn anthropic_messages(
    sh: &Arc<Shared>,
    body: &Value,
    streaming: bool,
    fault: Option<Fault>,
) -> Reply {
    if !body["messages"].is_array() {
        return Reply::json(
            400,
            &json!({"type": "error", "error": {"type": "invalid_request_error", "message": "messages: Field required"}}),
        );
    }
    let model = body["model"].as_str().unwrap_or(&sh.model).to_owned();
    let prompt = last_user_text(body);
    let words = answer_words(&prompt, body["max_tokens"].as_u64());
    let u = lock(&sh.usage).unwrap_or(SimUsage::new(
        prompt.split_whitespace().count().max(1) as u64,
        words.len() as u64,
    ));
    let (input_tokens, output_tokens) = (u.prompt_tokens, u.completion_tokens);
    if !streaming {
        return Reply::json(
            200,
            &json!({"id": "msg_sim", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": words.join(" ")}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}),
        );
    }
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let start = ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_sim", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
    );
    let mut events = vec![
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ev("ping", json!({"type": "ping"})),
    ];
    let first_text = events.len();
    for (i, w) in words.iter().enumerate() {
        let text = if i == 0 { w.clone() } else { format!(" {w}") };
        events.push(ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        ));
    }
    events.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": output_tokens}}),
    ));
    events.push(ev("message_stop", json!({"type": "message_stop"})));
    let overloaded = ev(
        "error",
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    );
    let (tx, rx) = mpsc::channel(16);
    let sh = sh.clone();
    tokio::spawn(async move {
        if tx.send(Chunk::Data(Bytes::from(start))).await.is_err() {
            return;
        }
        match fault {
            Some(Fault::ErrorAfterStart) => {
                let _ = tx.send(Chunk::Data(Bytes::from(overloaded))).await;
                return;
            }
            Some(Fault::TruncateAfterStart) => return,
            _ => {}
        }
        for (i, e) in events.into_iter().enumerate() {
            if i == first_text + 1 {
                match fault {
                    Some(Fault::StallMidStream) => stall(&sh).await,
                    Some(Fault::TruncateStream) => return,
                    Some(Fault::ErrorInStream) => {
                        let _ = tx.send(Chunk::Data(Bytes::from(overloaded))).await;
                        return;
                    }
                    _ => {}
                }
            }
            if tx.send(Chunk::Data(Bytes::from(e))).await.is_err() {
                return;
            }
        }
    });
    Reply::Stream {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        chunks: rx,
    }
}

/// The models the LLVM inference protocol routes serve.
const LLVM_MODELS: [(&str, &str); 2] = [
    ("llvm-gen-1", "text-generation"),
    ("llvm-embed-1", "embedding"),
];

fn llvm_output(kind: &str, input: &Value, params: &Value) -> Option<Value> {
    let text = input.as_str()?;
    Some(if kind == "embedding" {
        json!(embedding(text))
    } else {
        json!(answer_words(text, params["max_tokens"].as_u64()).join(" "))
    })
}

fn llvm_tokens(input: &Value) -> usize {
    input.as_str().map_or(0, |s| s.split_whitespace().count())
}

/// The LLVM inference REST protocol (see the infermux-llvm README): `GET /status`,
/// `GET /models`, `GET /models/{id}`, `POST /models/{id}/infer`,
/// `POST /models/{id}/batch_infer`, `GET /models/{id}/statistics`.
fn llvm_route(sh: &Arc<Shared>, req: &IncomingRequest, body: &Value) -> Reply {
    let err = |status: u16, code: &str, message: &str| {
        Reply::json(
            status,
            &json!({"error": {"code": code, "message": message}}),
        )
    };
    let describe = |(id, kind): (&str, &str)| json!({"id": id, "type": kind, "status": "ready", "version": "1", "dimensions": if kind == "embedding" { json!(8) } else { Value::Null }});
    if req.path == "/status" {
        return Reply::json(
            200,
            &json!({"status": "ok", "version": "1.0", "models_loaded": LLVM_MODELS.len()}),
        );
    }
    if req.path == "/models" {
        return Reply::json(
            200,
            &json!({"models": LLVM_MODELS.iter().map(|m| describe(*m)).collect::<Vec<_>>()}),
        );
    }
    let rest = req.path.trim_start_matches("/models/");
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(&(id, kind)) = LLVM_MODELS.iter().find(|(m, _)| *m == id) else {
        return err(404, "model_not_found", "no such model");
    };
    let mut stats = sh.per_model.lock().unwrap_or_else(|p| p.into_inner());
    let pos = match stats.iter().position(|(m, _, _)| m == id) {
        Some(p) => p,
        None => {
            stats.push((id.to_owned(), 0, 0));
            stats.len() - 1
        }
    };
    match (req.method.as_str(), action) {
        ("GET", "") => Reply::json(200, &describe((id, kind))),
        ("GET", "statistics") => {
            let (_, requests, errors) = stats.get(pos).cloned().unwrap_or_default();
            Reply::json(
                200,
                &json!({"model": id, "requests": requests, "errors": errors, "avg_latency_ms": 1.0}),
            )
        }
        ("POST", "infer") => {
            let Some(output) = llvm_output(kind, &body["input"], &body["parameters"]) else {
                if let Some(s) = stats.get_mut(pos) {
                    s.2 += 1;
                }
                return err(400, "invalid_input", "`input` must be a string");
            };
            if let Some(s) = stats.get_mut(pos) {
                s.1 += 1;
            }
            let out_tokens = output.as_str().map_or(0, |o| o.split_whitespace().count());
            Reply::json(
                200,
                &json!({"model": id, "output": output,
                "usage": {"input_tokens": llvm_tokens(&body["input"]), "output_tokens": out_tokens}}),
            )
        }
        ("POST", "batch_infer") => {
            let Some(inputs) = body["inputs"].as_array() else {
                return err(400, "invalid_input", "`inputs` must be an array of strings");
            };
            let outputs: Option<Vec<Value>> = inputs
                .iter()
                .map(|i| llvm_output(kind, i, &body["parameters"]))
                .collect();
            let Some(outputs) = outputs else {
                return err(400, "invalid_input", "every input must be a string");
            };
            if let Some(s) = stats.get_mut(pos) {
                s.1 += inputs.len() as u64;
            }
            let input_tokens: usize = inputs.iter().map(llvm_tokens).sum();
            Reply::json(
                200,
                &json!({"model": id, "outputs": outputs, "usage": {"input_tokens": input_tokens, "output_tokens": 0}}),
            )
        }
        _ => err(404, "not_found", "no such route"),
    }
}

/// Cohere-style rerank as OVMS's `/v3/rerank` serves it: scores by shared words; more than
/// 100 documents (the server's default limit) are refused.
fn rerank(req: &IncomingRequest) -> Reply {
    let body = req.json().unwrap_or(Value::Null);
    let query: Vec<String> = body["query"]
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_lowercase)
        .collect();
    let Some(docs) = body["documents"].as_array() else {
        return Reply::json(400, &json!({"error": "documents must be an array"}));
    };
    // OVMS's rerank API ("Error handling"): more documents than the configured limit, 100 by
    // default, fail the request
    if docs.len() > 100 {
        return Reply::json(
            400,
            &json!({"error": "Amount of documents exceeds allowed configured value: 100"}),
        );
    }
    let mut results: Vec<(usize, f64)> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let words: Vec<String> = d
                .as_str()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_lowercase)
                .collect();
            let shared = query.iter().filter(|q| words.contains(q)).count();
            (i, shared as f64 / (query.len().max(1) as f64))
        })
        .collect();
    results.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(n) = body["top_n"].as_u64() {
        results.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    }
    Reply::json(
        200,
        &json!({"results": results.iter().map(|(i, s)| json!({"index": i, "relevance_score": s})).collect::<Vec<_>>()}),
    )
}

/// The model OVMS routes serve: it doubles every number of its input.
const OVMS_MODEL: &str = "ovms-double";

fn double(v: &Value) -> Option<Value> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(|i| json!(i * 2))
            .or_else(|| n.as_f64().map(|f| json!(f * 2.0))),
        Value::Array(xs) => xs
            .iter()
            .map(double)
            .collect::<Option<Vec<_>>>()
            .map(Value::Array),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| double(v).map(|d| (k.clone(), d)))
            .collect::<Option<serde_json::Map<_, _>>>()
            .map(Value::Object),
        _ => None,
    }
}

/// OVMS's TF-Serving (`/v1`) and KServe v2 (`/v2`) REST routes, per its published docs.
fn ovms_route(req: &IncomingRequest, body: &Value) -> Reply {
    let not_found = || {
        Reply::json(
            404,
            &json!({"error": "Model with requested name is not found"}),
        )
    };
    if req.path == "/v2/health/ready" || req.path == "/v2/health/live" {
        return Reply::Full {
            status: 200,
            headers: Vec::new(),
            body: Bytes::new(),
        };
    }
    let (api, rest) = if let Some(r) = req.path.strip_prefix("/v2/models/") {
        ("v2", r)
    } else if let Some(r) = req.path.strip_prefix("/v1/models/") {
        ("v1", r)
    } else {
        return Reply::json(404, &json!({"error": "no such route"}));
    };
    let (rest, predict) = match rest.strip_suffix(":predict") {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let mut parts = rest.split('/');
    let model = parts.next().unwrap_or("");
    let mut version = None;
    let mut action = "";
    while let Some(p) = parts.next() {
        if p == "versions" {
            version = parts.next();
        } else {
            action = p;
        }
    }
    if model != OVMS_MODEL || version.is_some_and(|v| v != "1") {
        return not_found();
    }
    let io = |name: &str| json!({"name": name, "datatype": "FP32", "shape": [-1, 4]});
    match (api, req.method.as_str(), action, predict) {
        ("v1", "POST", _, true) => {
            if let Some(instances) = body.get("instances") {
                return match double(instances) {
                    Some(p) => Reply::json(200, &json!({"predictions": p})),
                    None => Reply::json(400, &json!({"error": "instances must hold numbers"})),
                };
            }
            match body.get("inputs").and_then(double) {
                Some(o) => Reply::json(200, &json!({"outputs": o})),
                None => Reply::json(
                    400,
                    &json!({"error": "Missing 'instances' or 'inputs' key"}),
                ),
            }
        }
        ("v1", "GET", "", false) => Reply::json(
            200,
            &json!({"model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}),
        ),
        ("v1", "GET", "metadata", false) => Reply::json(
            200,
            &json!({"modelSpec": {"name": model, "version": "1"},
            "metadata": {"signature_def": {"signatureDef": {"serving_default": {
                "inputs": {"input": {"name": "input", "dtype": "DT_FLOAT"}},
                "outputs": {"output": {"name": "output", "dtype": "DT_FLOAT"}}}}}}}),
        ),
        ("v2", "GET", "", false) => Reply::json(
            200,
            &json!({"name": model, "versions": ["1"], "platform": "OpenVINO",
            "inputs": [io("input")], "outputs": [io("output")]}),
        ),
        ("v2", "GET", "ready", false) => Reply::Full {
            status: 200,
            headers: Vec::new(),
            body: Bytes::new(),
        },
        ("v2", "POST", "infer", false) => {
            let Some(inputs) = body["inputs"].as_array() else {
                return Reply::json(
                    400,
                    &json!({"error": "Invalid message structure - missing inputs"}),
                );
            };
            let mut outputs = Vec::new();
            for (i, t) in inputs.iter().enumerate() {
                let (Some(shape), Some(dt), Some(data)) =
                    (t["shape"].as_array(), t["datatype"].as_str(), t.get("data"))
                else {
                    return Reply::json(
                        400,
                        &json!({"error": "an input lacks shape, datatype or data"}),
                    );
                };
                if !matches!(dt, "FP32" | "FP64" | "INT32" | "INT64") {
                    return Reply::json(400, &json!({"error": format!("Invalid datatype {dt}")}));
                }
                let Some(doubled) = double(data) else {
                    return Reply::json(400, &json!({"error": "data must hold numbers"}));
                };
                let name = if i == 0 {
                    "output".to_owned()
                } else {
                    format!("output{i}")
                };
                outputs
                    .push(json!({"name": name, "shape": shape, "datatype": dt, "data": doubled}));
            }
            let mut resp = json!({"model_name": model, "model_version": "1", "outputs": outputs});
            if let Some(id) = body.get("id") {
                resp["id"] = id.clone();
            }
            Reply::json(200, &resp)
        }
        _ => Reply::json(404, &json!({"error": "no such route"})),
    }
}
