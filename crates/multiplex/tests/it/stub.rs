//! A provider that answers by the attempt's key (from `ctx.key()`) and logs every attempt, a
//! clock that follows tokio's (paused) time, and builders for pools of stubs.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use infermux_core::{
    ApiKey, Capabilities, ChatRequest, ChatResponse, Clock, EndpointId, Error, ErrorKind,
    EventStream, Message, Operation, Provider, Request, RequestContext, RequestId, Response,
    Result,
};
use infermux_multiplex::{MemberSpec, MultiPool, PoolConfig};
use infermux_resilience::breaker::BreakerConfig;
use infermux_resilience::queue::QueueConfig;
use infermux_resilience::{AttemptExecutor, CallPolicy};

/// tokio's clock as a [`Clock`]: moves with `tokio::time::advance` and auto-advance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// One attempt the stub saw.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) request: RequestId,
    pub(crate) key: Option<String>,
    pub(crate) at: tokio::time::Instant,
}

type Answer = dyn Fn(&Request, RequestContext) -> Pin<Box<dyn Future<Output = Result<Response>> + Send>>
    + Send
    + Sync;

/// A scripted provider.
pub(crate) struct Stub {
    endpoint: EndpointId,
    answer: Box<Answer>,
    pub(crate) seen: Mutex<Vec<Seen>>,
}

impl std::fmt::Debug for Stub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stub")
    }
}

impl Stub {
    pub(crate) fn new<F, Fut>(name: &str, answer: F) -> Arc<Self>
    where
        F: Fn(&Request, RequestContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response>> + Send + 'static,
    {
        Arc::new(Stub {
            endpoint: EndpointId::new(name),
            answer: Box::new(move |r, ctx| Box::pin(answer(r, ctx))),
            seen: Mutex::new(Vec::new()),
        })
    }
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    pub(crate) fn seen_by(&self, key: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.key.as_deref() == Some(key))
            .collect()
    }
}

#[async_trait]
impl Provider for Stub {
    fn name(&self) -> &'static str {
        "stub"
    }
    fn endpoint(&self) -> &EndpointId {
        &self.endpoint
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::new().with(Operation::Chat)
    }
    async fn call(&self, request: &Request, ctx: &RequestContext) -> Result<Response> {
        self.seen.lock().unwrap().push(Seen {
            request: ctx.request_id(),
            key: ctx.key().map(|k| k.alias().to_owned()),
            at: tokio::time::Instant::now(),
        });
        (self.answer)(request, ctx.clone()).await
    }
    async fn stream(&self, _request: &Request, _ctx: &RequestContext) -> Result<EventStream> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "the stub does not stream",
        ))
    }
}

/// A chat answer.
pub(crate) fn ok() -> Result<Response> {
    Ok(Response::Chat(ChatResponse::new(
        "stub-model",
        Message::assistant("fine"),
    )))
}

/// A chat request.
pub(crate) fn chat() -> Request {
    chat_for("stub-model")
}

/// A one-turn chat for `model`.
pub(crate) fn chat_for(model: &str) -> Request {
    Request::Chat(ChatRequest::new(model, vec![Message::user("hi")]))
}

/// An executor around `stub` on tokio's clock, with `permits` permits and maybe a breaker.
pub(crate) fn executor(
    stub: Arc<Stub>,
    permits: usize,
    breaker: Option<BreakerConfig>,
) -> Arc<AttemptExecutor> {
    Arc::new(
        AttemptExecutor::with_clock(
            stub,
            QueueConfig::standard().with_permits(permits),
            breaker,
            Arc::new(TokioClock),
        )
        .unwrap(),
    )
}

/// An executor around any provider on tokio's clock, with `permits` permits and no breaker.
pub(crate) fn executor_of(provider: Arc<dyn Provider>, permits: usize) -> Arc<AttemptExecutor> {
    Arc::new(
        AttemptExecutor::with_clock(
            provider,
            QueueConfig::standard().with_permits(permits),
            None,
            Arc::new(TokioClock),
        )
        .unwrap(),
    )
}

/// A member on endpoint `e` with key `alias` (the key is `sk-<alias>`).
pub(crate) fn keyed(e: usize, alias: &str) -> MemberSpec {
    MemberSpec::new(e).with_key(alias, ApiKey::new(format!("sk-{alias}")))
}

/// A pool on tokio's clock.
pub(crate) fn pool(
    executors: Vec<Arc<AttemptExecutor>>,
    members: Vec<MemberSpec>,
    config: PoolConfig,
) -> MultiPool {
    MultiPool::with_clock(executors, members, config, Arc::new(TokioClock)).unwrap()
}

/// The key-aware policy with a deadline of `timeout` and up to `attempts` attempts.
pub(crate) fn policy(attempts: u32, timeout: Duration) -> CallPolicy {
    use infermux_resilience::retry::{FullJitter, StandardRetry};
    let inner = StandardRetry::standard()
        .with_max_attempts(attempts)
        .with_bases(
            Duration::from_millis(1),
            Duration::from_millis(2),
            Duration::from_millis(2),
        )
        .with_budget(None)
        .with_backoff(Arc::new(FullJitter::seeded(7)));
    CallPolicy::new(
        Arc::new(infermux_multiplex::KeyRetry::new(Arc::new(inner), attempts)),
        Some(timeout),
    )
}
