//! The shared conformance suite: one set of behavioural checks every provider runs, each gated
//! by the provider's capabilities (the shape of rust-genai's `common_tests`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use infermux_core::{
    ChatRequest, EmbeddingRequest, ErrorKind, EventStream, FinishReason, Message, Operation,
    Provider, Request, RequestContext, Response, StreamAccumulator, StreamEvent, Tool, ToolChoice,
};
use serde_json::json;

/// What to run and with which models.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SuiteConfig {
    /// Model for chat checks.
    pub chat_model: String,
    /// Model for embedding checks (`None` skips them).
    pub embed_model: Option<String>,
    /// Whether the server answers identically to identical requests (temperature 0 and a
    /// seed), so streamed and non-streamed answers must agree.
    pub deterministic: bool,
    /// Whether to check forced tool calls.
    pub tools: bool,
    /// Whether the forced tool call names its tool (`ToolChoice::Tool`) instead of asking for
    /// any (`ToolChoice::Required`), for servers that take only a named tool (OPEA).
    pub named_tool: bool,
    /// Output token limit used in chat checks.
    pub max_tokens: u32,
    /// Timeout of each check.
    pub timeout: Duration,
}

impl SuiteConfig {
    /// Chat checks with `chat_model`.
    pub fn new(chat_model: impl Into<String>) -> Self {
        SuiteConfig {
            chat_model: chat_model.into(),
            embed_model: None,
            deterministic: false,
            tools: true,
            named_tool: false,
            max_tokens: 24,
            timeout: Duration::from_secs(120),
        }
    }
    /// Also checks embeddings with `model`.
    pub fn with_embed_model(mut self, model: impl Into<String>) -> Self {
        self.embed_model = Some(model.into());
        self
    }
    /// Declares the server deterministic.
    pub fn deterministic(mut self, yes: bool) -> Self {
        self.deterministic = yes;
        self
    }
    /// Enables or disables the tool check.
    pub fn with_tools(mut self, yes: bool) -> Self {
        self.tools = yes;
        self
    }
    /// Forces the tool call by naming the tool (see [`SuiteConfig::named_tool`]).
    pub fn with_named_tool(mut self, yes: bool) -> Self {
        self.named_tool = yes;
        self
    }
}

/// The outcome of a suite run.
#[derive(Debug, Default)]
pub struct SuiteReport {
    /// Checks that passed.
    pub passed: Vec<&'static str>,
    /// Checks that failed, with why.
    pub failed: Vec<(&'static str, String)>,
    /// Checks skipped, with why.
    pub skipped: Vec<(&'static str, String)>,
}

impl SuiteReport {
    /// Panics with every failure listed unless all ran checks passed and at least one ran.
    pub fn assert_ok(&self) {
        assert!(
            self.failed.is_empty(),
            "conformance failures: {:#?}\n(passed: {:?})",
            self.failed,
            self.passed
        );
        assert!(
            !self.passed.is_empty(),
            "no conformance check ran: {:?}",
            self.skipped
        );
    }
}

type CheckResult = Result<(), String>;

/// Whether `e` is a connection the server closed under the request (reached it, then no
/// answer): a live server may close a kept-alive connection just as the client reuses it.
/// The library's call policy retries that; a bare provider call, as the suite makes, does not.
fn closed_under_us(e: &infermux_core::Error) -> bool {
    e.kind() == ErrorKind::Connect && e.reached_server() == Some(true)
}

/// `p.call`, once more when the first try met a connection the server closed under it
/// ([`closed_under_us`]). Any other error, or a second one, stands.
async fn call(p: &dyn Provider, req: &Request) -> infermux_core::Result<Response> {
    match p.call(req, &RequestContext::new()).await {
        Err(e) if closed_under_us(&e) => p.call(req, &RequestContext::new()).await,
        r => r,
    }
}

/// `p.stream`, opened once more like [`call`].
async fn stream(p: &dyn Provider, req: &Request) -> infermux_core::Result<EventStream> {
    match p.stream(req, &RequestContext::new()).await {
        Err(e) if closed_under_us(&e) => p.stream(req, &RequestContext::new()).await,
        r => r,
    }
}

fn chat_request(cfg: &SuiteConfig, prompt: &str) -> ChatRequest {
    ChatRequest::new(
        cfg.chat_model.clone(),
        vec![
            Message::system("You are a terse assistant."),
            Message::user(prompt),
        ],
    )
    .with_max_tokens(cfg.max_tokens)
    .with_temperature(0.0)
    .with_seed(42)
}

/// A plain chat; `strict`: without a second try (after a dropped stream, a connection it
/// left broken must show).
async fn check_chat(p: &dyn Provider, cfg: &SuiteConfig, strict: bool) -> CheckResult {
    let req = Request::Chat(chat_request(cfg, "Say hello."));
    let resp = if strict {
        p.call(&req, &RequestContext::new()).await
    } else {
        call(p, &req).await
    }
    .map_err(|e| format!("chat failed: {e}"))?;
    let Response::Chat(chat) = resp else {
        return Err(format!("chat answered with {:?}", resp.operation()));
    };
    if chat.text().trim().is_empty() {
        return Err("chat answer has no text".into());
    }
    if chat.finish_reason.is_none() {
        return Err("chat answer has no finish reason".into());
    }
    if let Some(u) = chat.usage
        && (u.output_tokens == 0 || u.input_tokens == 0)
    {
        return Err(format!("usage reported but empty: {u:?}"));
    }
    Ok(())
}

async fn collect_stream(
    p: &dyn Provider,
    req: &Request,
) -> Result<(Vec<StreamEvent>, infermux_core::ChatResponse), String> {
    let mut stream = stream(p, req)
        .await
        .map_err(|e| format!("stream failed: {e}"))?;
    let mut events = Vec::new();
    let mut acc = StreamAccumulator::new();
    while let Some(ev) = stream.next().await {
        let ev = ev.map_err(|e| format!("stream event failed: {e}"))?;
        acc.push(&ev);
        events.push(ev);
    }
    if !acc.is_done() {
        return Err("stream ended without a Done event".into());
    }
    Ok((events, acc.finish()))
}

async fn check_stream(p: &dyn Provider, cfg: &SuiteConfig) -> CheckResult {
    let req = Request::Chat(chat_request(cfg, "Count to five."));
    let (events, resp) = collect_stream(p, &req).await?;
    let deltas = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::TextDelta { .. }))
        .count();
    if deltas == 0 || resp.text().trim().is_empty() {
        return Err(format!("stream carried no text ({} events)", events.len()));
    }
    // it ends with Done, after which only its usage may come
    let done = events
        .iter()
        .rposition(|e| matches!(e, StreamEvent::Done { .. }));
    let tail_ok = done.is_some_and(|i| {
        events[i + 1..]
            .iter()
            .all(|e| matches!(e, StreamEvent::Usage(_)))
    });
    if !tail_ok {
        return Err(format!(
            "stream does not end with Done (then its usage only): {:?}",
            events.last()
        ));
    }
    if cfg.deterministic {
        let Response::Chat(plain) = call(p, &req)
            .await
            .map_err(|e| format!("chat failed: {e}"))?
        else {
            return Err("chat answered with another operation".into());
        };
        if plain.text() != resp.text() {
            return Err(format!(
                "streamed {:?} != plain {:?}",
                resp.text(),
                plain.text()
            ));
        }
    }
    Ok(())
}

async fn check_stream_drop(p: &dyn Provider, cfg: &SuiteConfig) -> CheckResult {
    let req = Request::Chat(chat_request(cfg, "Tell a long story."));
    let mut stream = stream(p, &req)
        .await
        .map_err(|e| format!("stream failed: {e}"))?;
    match stream.next().await {
        Some(Ok(_)) => {}
        other => return Err(format!("first event missing: {other:?}")),
    }
    drop(stream);
    // the provider is still usable after a dropped stream
    check_chat(p, cfg, true).await
}

async fn check_tools(p: &dyn Provider, cfg: &SuiteConfig) -> CheckResult {
    let tool = Tool::new(
        "get_weather",
        "Get the current weather of a city",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    );
    let mut req = chat_request(cfg, "What is the weather in Paris? Use the tool.")
        .with_tools(vec![tool])
        .with_tool_choice(if cfg.named_tool {
            ToolChoice::Tool("get_weather".into())
        } else {
            ToolChoice::Required
        });
    req.max_tokens = Some(128);
    let req = Request::Chat(req);
    let Response::Chat(plain) = call(p, &req)
        .await
        .map_err(|e| format!("tool chat failed: {e}"))?
    else {
        return Err("tool chat answered with another operation".into());
    };
    let call = plain
        .tool_calls()
        .first()
        .ok_or("no tool call in the answer")?;
    if call.name != "get_weather" {
        return Err(format!("called {:?}", call.name));
    }
    call.parsed_arguments()
        .map_err(|e| format!("arguments are not JSON ({e}): {:?}", call.arguments))?;
    // a call the model chose ends for its tool calls; a named tool is the caller's choice,
    // which OpenAI's API reports as a plain stop
    let finished = |reason: Option<&FinishReason>| match reason {
        Some(FinishReason::ToolCalls) => true,
        Some(FinishReason::Stop) => cfg.named_tool,
        _ => false,
    };
    if !finished(plain.finish_reason.as_ref()) {
        return Err(format!("finish reason {:?}", plain.finish_reason));
    }
    let (_, streamed) = collect_stream(p, &req).await?;
    let scall = streamed
        .tool_calls()
        .first()
        .ok_or("no tool call in the stream")?;
    if scall.name != "get_weather" {
        return Err(format!("stream called {:?}", scall.name));
    }
    scall.parsed_arguments().map_err(|e| {
        format!(
            "streamed arguments are not JSON ({e}): {:?}",
            scall.arguments
        )
    })?;
    if !finished(streamed.finish_reason.as_ref()) {
        return Err(format!(
            "streamed finish reason {:?}",
            streamed.finish_reason
        ));
    }
    Ok(())
}

async fn check_embeddings(p: &dyn Provider, model: &str) -> CheckResult {
    let req = Request::Embeddings(EmbeddingRequest::new(
        model,
        ["The cat sat on the mat.", "Quantum chromodynamics"],
    ));
    let Response::Embeddings(e) = call(p, &req)
        .await
        .map_err(|e| format!("embeddings failed: {e}"))?
    else {
        return Err("embeddings answered with another operation".into());
    };
    if e.embeddings.len() != 2 {
        return Err(format!("{} vectors for 2 inputs", e.embeddings.len()));
    }
    let dim = e.dimension();
    if dim == 0 || e.embeddings.iter().any(|v| v.len() != dim) {
        return Err("vectors are empty or of different sizes".into());
    }
    if e.embeddings[0] == e.embeddings[1] {
        return Err("different inputs gave the same vector".into());
    }
    Ok(())
}

async fn check_models(p: &dyn Provider) -> CheckResult {
    match call(p, &Request::Models).await {
        Ok(Response::Models(m)) if !m.models.is_empty() => Ok(()),
        Ok(Response::Models(_)) => Err("no model listed".into()),
        Ok(other) => Err(format!("models answered with {:?}", other.operation())),
        Err(e) => Err(format!("models failed: {e}")),
    }
}

async fn timed(t: Duration, fut: impl std::future::Future<Output = CheckResult>) -> CheckResult {
    tokio::time::timeout(t, fut)
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()))
}

/// Runs every check the provider's capabilities allow.
pub async fn run(provider: Arc<dyn Provider>, cfg: &SuiteConfig) -> SuiteReport {
    let caps = provider.capabilities();
    let p = provider.as_ref();
    let mut report = SuiteReport::default();
    let mut record = |name: &'static str, result: Option<CheckResult>, why: &str| match result {
        Some(Ok(())) => report.passed.push(name),
        Some(Err(e)) => report.failed.push((name, e)),
        None => report.skipped.push((name, why.to_owned())),
    };
    let t = cfg.timeout;
    let chat = caps.supports(Operation::Chat);
    let stream = caps.supports(Operation::ChatStream);
    record(
        "chat",
        if chat {
            Some(timed(t, check_chat(p, cfg, false)).await)
        } else {
            None
        },
        "no chat",
    );
    record(
        "chat_stream",
        if stream {
            Some(timed(t, check_stream(p, cfg)).await)
        } else {
            None
        },
        "no streaming",
    );
    record(
        "chat_stream_drop",
        if stream && chat {
            Some(timed(t, check_stream_drop(p, cfg)).await)
        } else {
            None
        },
        "no streaming",
    );
    let tools = caps.supports(Operation::Tools) && cfg.tools;
    record(
        "tools",
        if tools {
            Some(timed(t, check_tools(p, cfg)).await)
        } else {
            None
        },
        "no tools or disabled",
    );
    let embed = match (&cfg.embed_model, caps.supports(Operation::Embeddings)) {
        (Some(m), true) => Some(timed(t, check_embeddings(p, m)).await),
        _ => None,
    };
    record("embeddings", embed, "no embeddings or no embedding model");
    record(
        "models",
        if caps.supports(Operation::Models) {
            Some(timed(t, check_models(p)).await)
        } else {
            None
        },
        "no model listing",
    );
    report
}
