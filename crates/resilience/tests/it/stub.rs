//! A provider whose answers the test scripts: each call runs the given async closure.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use infermux_core::{
    Capabilities, ChatRequest, ChatResponse, EndpointId, Error, ErrorKind, EventStream, Message,
    Operation, Provider, Request, RequestContext, Response, Result,
};
use infermux_resilience::retry::{FullJitter, StandardRetry};

type Answer =
    dyn Fn(RequestContext) -> Pin<Box<dyn Future<Output = Result<Response>> + Send>> + Send + Sync;

/// A scripted provider; counts its calls.
pub(crate) struct Stub {
    endpoint: EndpointId,
    answer: Box<Answer>,
    pub(crate) calls: AtomicU32,
}

impl std::fmt::Debug for Stub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stub")
    }
}

impl Stub {
    pub(crate) fn new<F, Fut>(answer: F) -> Arc<Self>
    where
        F: Fn(RequestContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response>> + Send + 'static,
    {
        Arc::new(Stub {
            endpoint: EndpointId::new("stub"),
            answer: Box::new(move |ctx| Box::pin(answer(ctx))),
            calls: AtomicU32::new(0),
        })
    }
    pub(crate) fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A chat answer.
pub(crate) fn ok() -> Result<Response> {
    Ok(Response::Chat(ChatResponse::new(
        "stub-model",
        Message::assistant("fine"),
    )))
}

/// A retry policy that waits a millisecond or two (bases: 1 ms transient, 2 ms throttling,
/// a 2 ms floor), has no budget, and jitters with a generator seeded with `seed`; at most
/// `attempts` attempts.
pub(crate) fn quick_retry(attempts: u32, seed: u64) -> StandardRetry {
    StandardRetry::standard()
        .with_max_attempts(attempts)
        .with_bases(
            Duration::from_millis(1),
            Duration::from_millis(2),
            Duration::from_millis(2),
        )
        .with_budget(None)
        .with_backoff(Arc::new(FullJitter::seeded(seed)))
}

/// A chat request.
pub(crate) fn chat() -> Request {
    Request::Chat(ChatRequest::new("stub-model", vec![Message::user("hi")]))
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
    async fn call(&self, _request: &Request, ctx: &RequestContext) -> Result<Response> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        (self.answer)(ctx.clone()).await
    }
    async fn stream(&self, _request: &Request, _ctx: &RequestContext) -> Result<EventStream> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "the stub does not stream",
        ))
    }
}
