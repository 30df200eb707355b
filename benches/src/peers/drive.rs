//! The Rust driver: one peer, one concurrency (or rate), one mode, one runtime flavour →
//! one [`Measurement`]. Run in a fresh process per point, so the CPU time and peak RSS it
//! reports are that peer's alone.
//!
//! Every peer sends the same request (model `mock`, one user message) built per call the way
//! its users would build it, and reads the whole answer into its own typed response: bare
//! reqwest serialises a borrowed struct and deserialises a typed answer (the floor); infermux
//! goes through `infermux::Client` over `OpenAiCompat`; async-openai through its own client;
//! Portkey is reqwest against the Node gateway with Portkey's custom-host headers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{Measurement, Mode, procfs, quantile};

/// A client under test. Adding one is a variant here, a name in [`Peer::ALL`] and an arm in
/// [`Client::new`] (and in [`Client::plain`] and [`Client::stream`] unless it is an
/// `infermux::Client`, as the multiplex pool's peer is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Peer {
    /// Bare reqwest with serde structs: the floor.
    Reqwest,
    /// `infermux::Client` with `ResilienceConfig::disabled()`.
    InfermuxDisabled,
    /// `infermux::Client` with `ResilienceConfig::standard()`.
    InfermuxStandard,
    /// `infermux::Client` routing a model group through the multiplex pool: one endpoint,
    /// two keys (each a pool member), `ResilienceConfig::standard()`.
    InfermuxPool,
    /// async-openai's client.
    AsyncOpenai,
    /// Portkey's gateway (Node, its own process), called with reqwest.
    Portkey,
}

impl Peer {
    /// Every peer this driver runs in process.
    pub const ALL: &'static [Peer] = &[
        Peer::Reqwest,
        Peer::InfermuxDisabled,
        Peer::InfermuxStandard,
        Peer::InfermuxPool,
        Peer::AsyncOpenai,
        Peer::Portkey,
    ];

    /// The name on the command line and in the results.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Reqwest => "reqwest",
            Peer::InfermuxDisabled => "infermux-disabled",
            Peer::InfermuxStandard => "infermux-standard",
            Peer::InfermuxPool => "infermux-pool",
            Peer::AsyncOpenai => "async-openai",
            Peer::Portkey => "portkey",
        }
    }

    /// The peer named `name`.
    pub fn parse(name: &str) -> Option<Peer> {
        Peer::ALL.iter().copied().find(|p| p.name() == name)
    }
}

/// The client's tokio runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// A current-thread runtime.
    Current,
    /// A multi-thread runtime with 2 workers.
    Multi,
}

impl Runtime {
    /// `current` or `multi`.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Current => "current",
            Runtime::Multi => "multi",
        }
    }
}

/// One point to measure.
#[derive(Debug, Clone)]
pub struct DriveConfig {
    /// The peer.
    pub peer: Peer,
    /// The mock upstream's base URL (`http://127.0.0.1:PORT`).
    pub upstream: String,
    /// A gateway peer's base URL.
    pub gateway: Option<String>,
    /// A gateway peer's process id (its CPU and RSS are read from `/proc`).
    pub gateway_pid: Option<u32>,
    /// The client runtime.
    pub runtime: Runtime,
    /// Closed or open loop.
    pub mode: Mode,
    /// Streamed answers.
    pub stream: bool,
    /// Callers (closed loop) or the cap on requests in flight (open loop).
    pub concurrency: u32,
    /// Requests per second (open loop).
    pub rate: u32,
    /// Time before the window (connections opened, caches warm).
    pub warmup: Duration,
    /// The measured window.
    pub secs: Duration,
    /// The repeat number, echoed in the result.
    pub repeat: u32,
}

/// A client of one peer.
#[derive(Debug)]
pub enum Client {
    /// Hand-written reqwest calls to `url` with `headers` (bare reqwest, Portkey).
    Reqwest {
        /// The client (its connection pool).
        http: reqwest::Client,
        /// `…/v1/chat/completions`.
        url: String,
        /// Extra headers (Portkey's provider and custom host).
        headers: reqwest::header::HeaderMap,
    },
    /// infermux's client.
    Infermux(infermux::Client),
    /// async-openai's client.
    AsyncOpenai(async_openai::Client<async_openai::config::OpenAIConfig>),
}

/// The model name every peer asks for.
const MODEL: &str = "mock";
/// The user message every peer sends.
const PROMPT: &str = "Say hello.";

#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: [WireMessage<'a>; 1],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'a str,
    content: &'a str,
}

#[derive(Deserialize)]
struct ChatAnswer {
    choices: Vec<AnswerChoice>,
}

#[derive(Deserialize)]
struct AnswerChoice {
    message: AnswerMessage,
}

#[derive(Deserialize)]
struct AnswerMessage {
    content: Option<String>,
}

#[derive(Deserialize)]
struct ChunkAnswer {
    choices: Vec<ChunkChoice>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    delta: ChunkDelta,
}

#[derive(Deserialize)]
struct ChunkDelta {
    content: Option<String>,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Client {
    /// The client of `peer` against the mock at `upstream` (or the gateway in front of it).
    pub fn new(peer: Peer, upstream: &str, gateway: Option<&str>) -> Result<Client, String> {
        use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
        match peer {
            Peer::Reqwest => Ok(Client::Reqwest {
                http: reqwest::Client::new(),
                url: format!("{upstream}/v1/chat/completions"),
                headers: HeaderMap::new(),
            }),
            Peer::Portkey => {
                let gateway = gateway.ok_or("portkey needs --gateway")?;
                let mut headers = HeaderMap::new();
                headers.insert("x-portkey-provider", HeaderValue::from_static("openai"));
                headers.insert(
                    "x-portkey-custom-host",
                    HeaderValue::from_str(&format!("{upstream}/v1")).map_err(err)?,
                );
                headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer sk-bench"));
                Ok(Client::Reqwest {
                    http: reqwest::Client::new(),
                    url: format!("{gateway}/v1/chat/completions"),
                    headers,
                })
            }
            Peer::InfermuxDisabled | Peer::InfermuxStandard => {
                use infermux::resilience::ResilienceConfig;
                let config =
                    infermux::EndpointConfig::new("mock", format!("{upstream}/v1")).map_err(err)?;
                let provider = infermux::openai_compat::OpenAiCompat::new(config).map_err(err)?;
                let resilience = if peer == Peer::InfermuxDisabled {
                    ResilienceConfig::disabled()
                } else {
                    ResilienceConfig::standard()
                };
                let client = infermux::Client::builder()
                    .provider(provider)
                    .resilience(resilience)
                    .build()
                    .map_err(err)?;
                Ok(Client::Infermux(client))
            }
            Peer::InfermuxPool => {
                use infermux::{ApiKey, Deployment, ModelGroup, NamedKey};
                let config =
                    infermux::EndpointConfig::new("mock", format!("{upstream}/v1")).map_err(err)?;
                let provider = infermux::openai_compat::OpenAiCompat::new(config).map_err(err)?;
                let client = infermux::Client::builder()
                    .endpoint(provider)
                    .key("mock", NamedKey::new("team-1", ApiKey::new("sk-bench-1")))
                    .key("mock", NamedKey::new("team-2", ApiKey::new("sk-bench-2")))
                    .group(ModelGroup::new(MODEL).deployment(Deployment::new("mock", MODEL)))
                    .resilience(infermux::resilience::ResilienceConfig::standard())
                    .build()
                    .map_err(err)?;
                Ok(Client::Infermux(client))
            }
            Peer::AsyncOpenai => {
                let config = async_openai::config::OpenAIConfig::new()
                    .with_api_base(format!("{upstream}/v1"))
                    .with_api_key("sk-bench");
                Ok(Client::AsyncOpenai(async_openai::Client::with_config(
                    config,
                )))
            }
        }
    }

    /// One non-streamed call, answer read and checked.
    pub async fn plain(&self) -> Result<(), String> {
        let text = match self {
            Client::Reqwest { http, url, headers } => {
                let body = serde_json::to_vec(&ChatBody {
                    model: MODEL,
                    messages: [WireMessage {
                        role: "user",
                        content: PROMPT,
                    }],
                    stream: false,
                })
                .map_err(err)?;
                let resp = http
                    .post(url)
                    .headers(headers.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(err)?;
                if !resp.status().is_success() {
                    return Err(format!("status {}", resp.status()));
                }
                let bytes = resp.bytes().await.map_err(err)?;
                let answer: ChatAnswer = serde_json::from_slice(&bytes).map_err(err)?;
                answer
                    .choices
                    .into_iter()
                    .next()
                    .and_then(|c| c.message.content)
                    .unwrap_or_default()
            }
            Client::Infermux(client) => {
                let request =
                    infermux::ChatRequest::new(MODEL, vec![infermux::Message::user(PROMPT)]);
                client.chat(request).await.map_err(err)?.text()
            }
            Client::AsyncOpenai(client) => {
                let request = async_openai_request(false)?;
                let answer = client.chat().create(request).await.map_err(err)?;
                answer
                    .choices
                    .into_iter()
                    .next()
                    .and_then(|c| c.message.content)
                    .unwrap_or_default()
            }
        };
        if text.is_empty() {
            return Err("an empty answer".to_owned());
        }
        Ok(())
    }

    /// One streamed call read to its end; the time from `start` to the first text delta.
    pub async fn stream(&self, start: Instant) -> Result<Duration, String> {
        let mut ttft = None;
        let mut first = |text: &str| {
            if ttft.is_none() && !text.is_empty() {
                ttft = Some(start.elapsed());
            }
        };
        match self {
            Client::Reqwest { http, url, headers } => {
                let body = serde_json::to_vec(&ChatBody {
                    model: MODEL,
                    messages: [WireMessage {
                        role: "user",
                        content: PROMPT,
                    }],
                    stream: true,
                })
                .map_err(err)?;
                let mut resp = http
                    .post(url)
                    .headers(headers.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(err)?;
                if !resp.status().is_success() {
                    return Err(format!("status {}", resp.status()));
                }
                let mut buf: Vec<u8> = Vec::new();
                let mut done = false;
                while let Some(chunk) = resp.chunk().await.map_err(err)? {
                    buf.extend_from_slice(&chunk);
                    while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                        let event: Vec<u8> = buf.drain(..end + 2).collect();
                        for line in event.split(|b| *b == b'\n') {
                            let Some(data) = line.strip_prefix(b"data:") else {
                                continue;
                            };
                            let data = data.strip_prefix(b" ").unwrap_or(data);
                            if data == b"[DONE]" {
                                done = true;
                                continue;
                            }
                            let chunk: ChunkAnswer = serde_json::from_slice(data).map_err(err)?;
                            for c in &chunk.choices {
                                first(c.delta.content.as_deref().unwrap_or(""));
                            }
                        }
                    }
                }
                if !done {
                    return Err("the stream ended without [DONE]".to_owned());
                }
            }
            Client::Infermux(client) => {
                let request =
                    infermux::ChatRequest::new(MODEL, vec![infermux::Message::user(PROMPT)]);
                let mut events = client.stream_chat(request).await.map_err(err)?;
                while let Some(event) = events.next().await {
                    if let infermux::StreamEvent::TextDelta { text } = event.map_err(err)? {
                        first(&text);
                    }
                }
            }
            Client::AsyncOpenai(client) => {
                let request = async_openai_request(true)?;
                let mut events = client.chat().create_stream(request).await.map_err(err)?;
                while let Some(chunk) = events.next().await {
                    for c in chunk.map_err(err)?.choices {
                        first(c.delta.content.as_deref().unwrap_or(""));
                    }
                }
            }
        }
        ttft.ok_or_else(|| "a stream without text".to_owned())
    }

    /// One call of either kind; the time to first token for a stream.
    pub async fn call(&self, stream: bool, start: Instant) -> Result<Option<Duration>, String> {
        if stream {
            self.stream(start).await.map(Some)
        } else {
            self.plain().await.map(|()| None)
        }
    }
}

fn async_openai_request(
    stream: bool,
) -> Result<async_openai::types::chat::CreateChatCompletionRequest, String> {
    use async_openai::types::chat::{
        ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs,
    };
    let mut args = CreateChatCompletionRequestArgs::default();
    args.model(MODEL)
        .messages([ChatCompletionRequestUserMessage::from(PROMPT).into()]);
    if stream {
        args.stream(true);
    }
    args.build().map_err(err)
}

/// Latencies and times to first token (ns) and errors of the requests in the window.
#[derive(Debug, Default)]
struct Samples {
    latency_ns: Vec<u64>,
    /// Open loop: latencies from the moment the request was handed to the client.
    sent_ns: Vec<u64>,
    /// Open loop: how late the scheduler woke for each send in the window (hand-off −
    /// scheduled time).
    lag_ns: Vec<u64>,
    ttft_ns: Vec<u64>,
    errors: u64,
    dropped: u64,
    first_error: Option<String>,
}

impl Samples {
    /// One request's outcome: its latency, in an open loop also the latency from its hand-off
    /// (both kept for successful requests only, so the two sets are the same requests).
    fn record(
        &mut self,
        latency: Duration,
        from_sent: Option<Duration>,
        result: Result<Option<Duration>, String>,
    ) {
        match result {
            Ok(ttft) => {
                self.latency_ns.push(latency.as_nanos() as u64);
                if let Some(d) = from_sent {
                    self.sent_ns.push(d.as_nanos() as u64);
                }
                if let Some(t) = ttft {
                    self.ttft_ns.push(t.as_nanos() as u64);
                }
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Samples) {
        self.latency_ns.extend(other.latency_ns);
        self.sent_ns.extend(other.sent_ns);
        self.lag_ns.extend(other.lag_ns);
        self.ttft_ns.extend(other.ttft_ns);
        self.errors += other.errors;
        self.dropped += other.dropped;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// The mock upstream's own counters (`GET /stats`).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct UpstreamStats {
    /// Its CPU time so far (ns).
    pub cpu_ns: u64,
    /// Chat requests it has answered.
    pub requests: u64,
}

/// Reads the upstream's `/stats` with a blocking HTTP/1.0-style exchange (no client library,
/// so it costs the peer under test nothing).
pub fn upstream_stats(upstream: &str) -> Result<UpstreamStats, String> {
    let addr = upstream
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// URL: {upstream}"))?;
    let mut s = TcpStream::connect(addr).map_err(|e| format!("upstream {addr}: {e}"))?;
    write!(
        s,
        "GET /stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(err)?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(err)?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .ok_or("upstream /stats: no body")?;
    serde_json::from_str(body).map_err(|e| format!("upstream /stats: {e}: {body}"))
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

struct Snapshot {
    at: Instant,
    cpu_ns: u64,
    upstream: UpstreamStats,
    gateway_cpu_ns: Option<u64>,
}

impl Snapshot {
    fn take(cfg: &DriveConfig) -> Result<Snapshot, String> {
        let upstream = upstream_stats(&cfg.upstream)?;
        let gateway_cpu_ns = match cfg.gateway_pid {
            Some(pid) => Some(procfs::cpu_ns(Some(pid)).ok_or("cannot read the gateway's CPU")?),
            None => None,
        };
        Ok(Snapshot {
            at: Instant::now(),
            cpu_ns: procfs::cpu_ns(None).ok_or("cannot read this process's CPU")?,
            upstream,
            gateway_cpu_ns,
        })
    }
}

/// Measures one point on the runtime `cfg` asks for.
pub fn run(cfg: &DriveConfig) -> Result<Measurement, String> {
    let rt = match cfg.runtime {
        Runtime::Current => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Runtime::Multi => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
    }
    .map_err(err)?;
    rt.block_on(measure(cfg))
}

async fn measure(cfg: &DriveConfig) -> Result<Measurement, String> {
    if cfg.concurrency == 0 {
        return Err("concurrency must be at least 1".to_owned());
    }
    if cfg.mode == Mode::Open && cfg.rate == 0 {
        return Err("an open loop needs --rate".to_owned());
    }
    if let Some(pid) = cfg.gateway_pid {
        // The gateway serves several points: report this one's peak.
        procfs::reset_peak_rss(Some(pid));
    }
    let client = Arc::new(Client::new(
        cfg.peer,
        &cfg.upstream,
        cfg.gateway.as_deref(),
    )?);
    let (before, after, samples) = match cfg.mode {
        Mode::Closed => closed(client, cfg).await?,
        Mode::Open => open(client, cfg).await?,
    };
    if let Some(e) = &samples.first_error {
        eprintln!(
            "{}: {} errors, the first: {e}",
            cfg.peer.name(),
            samples.errors
        );
    }
    let requests = samples.latency_ns.len() as u64;
    if requests == 0 {
        return Err(format!(
            "{}: no request succeeded in the window ({} errors)",
            cfg.peer.name(),
            samples.errors
        ));
    }
    let wall_ns = (after.at - before.at).as_nanos() as f64;
    let mut latency = samples.latency_ns;
    latency.sort_unstable();
    let mut ttft = samples.ttft_ns;
    ttft.sort_unstable();
    let mut sent = samples.sent_ns;
    sent.sort_unstable();
    let mut lag = samples.lag_ns;
    lag.sort_unstable();
    let open_loop = cfg.mode == Mode::Open;
    let us = |ns: u64| ns as f64 / 1000.0;
    let up_cpu = after.upstream.cpu_ns.saturating_sub(before.upstream.cpu_ns);
    let up_req = after
        .upstream
        .requests
        .saturating_sub(before.upstream.requests);
    let runtime = match cfg.peer {
        Peer::Portkey => "node",
        _ => cfg.runtime.name(),
    };
    Ok(Measurement {
        peer: cfg.peer.name().to_owned(),
        runtime: runtime.to_owned(),
        mode: cfg.mode,
        stream: cfg.stream,
        concurrency: cfg.concurrency,
        rate: cfg.rate,
        repeat: cfg.repeat,
        secs: cfg.secs.as_secs_f64(),
        requests,
        errors: samples.errors,
        dropped: samples.dropped,
        rps: requests as f64 / cfg.secs.as_secs_f64(),
        p50_us: us(quantile(&latency, 0.50)),
        p99_us: us(quantile(&latency, 0.99)),
        sent_p50_us: open_loop.then(|| us(quantile(&sent, 0.50))),
        sent_p99_us: open_loop.then(|| us(quantile(&sent, 0.99))),
        lag_p50_us: open_loop.then(|| us(quantile(&lag, 0.50))),
        lag_p99_us: open_loop.then(|| us(quantile(&lag, 0.99))),
        ttft_p50_us: cfg.stream.then(|| us(quantile(&ttft, 0.50))),
        ttft_p99_us: cfg.stream.then(|| us(quantile(&ttft, 0.99))),
        cpu_us_per_req: us(after.cpu_ns.saturating_sub(before.cpu_ns)) / requests as f64,
        peak_rss_kb: procfs::peak_rss_kb(None).unwrap_or(0),
        upstream_cpu_us_per_req: if up_req == 0 {
            0.0
        } else {
            us(up_cpu) / up_req as f64
        },
        upstream_busy: up_cpu as f64 / wall_ns,
        upstream_requests: up_req,
        gateway_cpu_us_per_req: match (before.gateway_cpu_ns, after.gateway_cpu_ns) {
            (Some(b), Some(a)) => Some(us(a.saturating_sub(b)) / requests as f64),
            _ => None,
        },
        gateway_rss_kb: cfg
            .gateway_pid
            .and_then(|pid| procfs::peak_rss_kb(Some(pid))),
    })
}

type Window = (Snapshot, Snapshot, Samples);

/// `concurrency` callers in a loop; requests that complete inside the window are counted.
async fn closed(client: Arc<Client>, cfg: &DriveConfig) -> Result<Window, String> {
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let mut tasks = Vec::with_capacity(cfg.concurrency as usize);
    for _ in 0..cfg.concurrency {
        let (client, phase, stream) = (client.clone(), phase.clone(), cfg.stream);
        tasks.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            while phase.load(Ordering::Relaxed) != STOP {
                let start = Instant::now();
                let result = client.call(stream, start).await;
                let latency = start.elapsed();
                if phase.load(Ordering::Relaxed) == MEASURE {
                    samples.record(latency, None, result);
                }
            }
            samples
        }));
    }
    tokio::time::sleep(cfg.warmup).await;
    let before = Snapshot::take(cfg)?;
    phase.store(MEASURE, Ordering::Relaxed);
    tokio::time::sleep(cfg.secs).await;
    phase.store(STOP, Ordering::Relaxed);
    let after = Snapshot::take(cfg)?;
    let mut samples = Samples::default();
    for t in tasks {
        samples.merge(t.await.map_err(err)?);
    }
    Ok((before, after, samples))
}

/// Requests sent on a fixed schedule (`rate` per second, missed ticks sent at once), each
/// measured from its scheduled send time and from the moment the scheduler handed it to the
/// client. The scheduled time also counts how late the scheduler woke: mostly tokio's 1 ms
/// timer wheel (about 1 ms here), but also any time the client kept the runtime busy when a
/// send was due, so that lag is recorded per send as well. At most `concurrency` in flight, a
/// send with no free slot is counted as dropped. Requests scheduled inside the window are
/// counted.
async fn open(client: Arc<Client>, cfg: &DriveConfig) -> Result<Window, String> {
    let period = Duration::from_secs_f64(1.0 / f64::from(cfg.rate));
    let start = tokio::time::Instant::now();
    let t0 = start + cfg.warmup;
    let t1 = t0 + cfg.secs;
    let samples = Arc::new(Mutex::new(Samples::default()));
    let in_flight = Arc::new(AtomicU32::new(0));
    let scheduler = {
        let (samples, in_flight, cap, stream) = (
            samples.clone(),
            in_flight.clone(),
            cfg.concurrency,
            cfg.stream,
        );
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(start, period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let (mut dropped, mut lags) = (0u64, Vec::new());
            loop {
                let scheduled = ticker.tick().await;
                if scheduled >= t1 {
                    break;
                }
                let (scheduled, sent) = (scheduled.into_std(), Instant::now());
                let record = scheduled >= t0.into_std();
                if record {
                    lags.push(sent.saturating_duration_since(scheduled).as_nanos() as u64);
                }
                if in_flight.load(Ordering::Relaxed) >= cap {
                    if record {
                        dropped += 1;
                    }
                    continue;
                }
                in_flight.fetch_add(1, Ordering::Relaxed);
                let (client, samples, in_flight) =
                    (client.clone(), samples.clone(), in_flight.clone());
                tokio::spawn(async move {
                    let result = client.call(stream, scheduled).await;
                    let (latency, from_sent) = (scheduled.elapsed(), sent.elapsed());
                    if record && let Ok(mut s) = samples.lock() {
                        s.record(latency, Some(from_sent), result);
                    }
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                });
            }
            (dropped, lags)
        })
    };
    tokio::time::sleep_until(t0).await;
    let before = Snapshot::take(cfg)?;
    tokio::time::sleep_until(t1).await;
    let after = Snapshot::take(cfg)?;
    let (dropped, lags) = scheduler.await.map_err(err)?;
    // Let the requests of the window finish (bounded: a saturated peer is cut off).
    let grace = tokio::time::Instant::now() + Duration::from_secs(5);
    while in_flight.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < grace {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let unfinished = u64::from(in_flight.load(Ordering::Relaxed));
    let mut out = Samples::default();
    if let Ok(mut s) = samples.lock() {
        out.merge(std::mem::take(&mut *s));
    }
    out.dropped = dropped + unfinished;
    out.lag_ns = lags;
    Ok((before, after, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::{report, upstream};

    fn mock() -> String {
        let listener = upstream::bind(([127, 0, 0, 1], 0).into()).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || upstream::serve(listener));
        format!("http://{addr}")
    }

    fn point(peer: Peer, upstream: String, mode: Mode, stream: bool) -> DriveConfig {
        DriveConfig {
            peer,
            upstream,
            gateway: None,
            gateway_pid: None,
            runtime: Runtime::Current,
            mode,
            stream,
            concurrency: 2,
            rate: if mode == Mode::Open { 200 } else { 0 },
            warmup: Duration::from_millis(100),
            secs: Duration::from_millis(300),
            repeat: 0,
        }
    }

    #[test]
    fn tiny_points_run_against_the_mock_upstream_and_make_valid_lines() {
        let upstream = mock();
        let mut lines = String::new();
        for (peer, mode, stream) in [
            (Peer::Reqwest, Mode::Closed, false),
            (Peer::InfermuxStandard, Mode::Closed, true),
            (Peer::InfermuxPool, Mode::Closed, false),
            (Peer::InfermuxPool, Mode::Closed, true),
            (Peer::AsyncOpenai, Mode::Open, false),
        ] {
            let m = run(&point(peer, upstream.clone(), mode, stream)).unwrap();
            assert!(m.requests > 0, "{m:?}");
            assert_eq!(m.errors, 0, "{m:?}");
            assert!(m.upstream_requests > 0, "{m:?}");
            assert!(m.cpu_us_per_req > 0.0 && m.peak_rss_kb > 0, "{m:?}");
            assert_eq!(m.ttft_p50_us.is_some(), stream, "{m:?}");
            // the hand-off figures: open loop only, never above those from the scheduled time
            let open = mode == Mode::Open;
            for figure in [m.sent_p50_us, m.sent_p99_us, m.lag_p50_us, m.lag_p99_us] {
                assert_eq!(figure.is_some(), open, "{m:?}");
            }
            if let (Some(p50), Some(p99), Some(lag)) = (m.sent_p50_us, m.sent_p99_us, m.lag_p99_us)
            {
                assert!(0.0 < p50 && p50 <= m.p50_us && p99 <= m.p99_us, "{m:?}");
                assert!(lag >= 0.0, "{m:?}");
            }
            lines.push_str(&serde_json::to_string(&m).unwrap());
            lines.push('\n');
        }
        assert_eq!(report::parse_lines(&lines).unwrap().len(), 5);
    }

    #[test]
    fn an_unreachable_upstream_is_an_error_not_a_result() {
        // Bind then drop: nothing listens on that port any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = point(
            Peer::Reqwest,
            format!("http://127.0.0.1:{port}"),
            Mode::Closed,
            false,
        );
        assert!(run(&cfg).is_err());
    }

    #[test]
    fn every_peer_has_a_distinct_name_it_parses_back_from() {
        for p in Peer::ALL {
            assert_eq!(Peer::parse(p.name()), Some(*p));
        }
        assert_eq!(Peer::parse("curl"), None);
    }
}
