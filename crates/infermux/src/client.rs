//! [`Client`]: typed calls over one provider endpoint, with counters, request ids and a call
//! deadline.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;
use infermux_core::{
    ChatRequest, ChatResponse, CompletionRequest, CompletionResponse, CounterSnapshot,
    EmbeddingRequest, EmbeddingResponse, EndpointCounters, EndpointId, Error, ErrorKind,
    EventStream, ModelList, Provider, Request, RequestContext, Response, Result, StreamEvent,
};

/// Builds a [`Client`].
///
/// ```
/// use infermux::{Client, EndpointConfig};
/// use infermux::openai_compat::OpenAiCompat;
/// use std::time::Duration;
/// let provider = OpenAiCompat::new(EndpointConfig::new("local", "http://127.0.0.1:8080/v1").unwrap()).unwrap();
/// let client = Client::builder().provider(provider).timeout(Duration::from_secs(30)).build().unwrap();
/// assert_eq!(client.endpoint().as_str(), "local");
/// ```
#[derive(Debug, Default)]
pub struct ClientBuilder {
    provider: Option<Arc<dyn Provider>>,
    timeout: Option<Duration>,
}

impl ClientBuilder {
    /// The provider endpoint to call.
    pub fn provider(mut self, provider: impl Provider + 'static) -> Self {
        self.provider = Some(Arc::new(provider));
        self
    }
    /// The provider endpoint to call, already shared.
    pub fn shared_provider(mut self, provider: Arc<dyn Provider>) -> Self {
        self.provider = Some(provider);
        self
    }
    /// The default deadline of a call (over everything it does), unless its context sets one.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// The client; fails with [`ErrorKind::Config`] without a provider.
    pub fn build(self) -> Result<Client> {
        let provider = self
            .provider
            .ok_or_else(|| Error::new(ErrorKind::Config, "a client needs a provider"))?;
        Ok(Client {
            inner: Arc::new(Inner {
                provider,
                counters: Arc::new(EndpointCounters::new()),
                timeout: self.timeout,
            }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    provider: Arc<dyn Provider>,
    counters: Arc<EndpointCounters>,
    timeout: Option<Duration>,
}

/// The infermux client. Cheap to clone; clones share counters.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

fn unexpected(op: &str) -> Error {
    Error::new(
        ErrorKind::Decode,
        format!("the provider answered a {op} request with another operation"),
    )
}

impl Client {
    /// A client over `provider` with default settings.
    pub fn new(provider: impl Provider + 'static) -> Self {
        Client {
            inner: Arc::new(Inner {
                provider: Arc::new(provider),
                counters: Arc::new(EndpointCounters::new()),
                timeout: None,
            }),
        }
    }

    /// A builder.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The endpoint this client calls.
    pub fn endpoint(&self) -> &EndpointId {
        self.inner.provider.endpoint()
    }

    /// The provider's name.
    pub fn provider_name(&self) -> &'static str {
        self.inner.provider.name()
    }

    /// A snapshot of the endpoint's counters.
    pub fn counters(&self) -> CounterSnapshot {
        self.inner.counters.snapshot()
    }

    fn deadline(&self, ctx: &RequestContext) -> Option<tokio::time::Instant> {
        let own = ctx.deadline();
        let default = self.inner.timeout.map(|t| Instant::now() + t);
        let d = match (own, default) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        d.map(tokio::time::Instant::from_std)
    }

    fn with_deadline(&self, ctx: RequestContext) -> RequestContext {
        match self.deadline(&ctx) {
            Some(d) => ctx.with_deadline(d.into_std()),
            None => ctx,
        }
    }

    fn timeout_error(&self, ctx: &RequestContext) -> Error {
        Error::new(ErrorKind::Timeout, "the call deadline passed").in_context(
            ctx.request_id(),
            self.inner.provider.name(),
            self.endpoint(),
        )
    }

    /// One call of any operation.
    pub async fn call(&self, request: &Request, ctx: RequestContext) -> Result<Response> {
        let ctx = self.with_deadline(ctx);
        let counters = &self.inner.counters;
        counters.record_request();
        let _in_flight = counters.in_flight();
        let started = Instant::now();
        let fut = self.inner.provider.call(request, &ctx);
        let result = match ctx.deadline() {
            Some(d) => tokio::time::timeout_at(tokio::time::Instant::from_std(d), fut)
                .await
                .unwrap_or_else(|_| Err(self.timeout_error(&ctx))),
            None => fut.await,
        };
        match &result {
            Ok(resp) => counters.record_success(started.elapsed(), resp.usage()),
            Err(e) => counters.record_failure(e.kind(), started.elapsed()),
        }
        result
    }

    /// One streamed call; resolves at the first event.
    pub async fn stream(&self, request: &Request, ctx: RequestContext) -> Result<EventStream> {
        let ctx = self.with_deadline(ctx);
        let counters = self.inner.counters.clone();
        counters.record_request();
        let started = Instant::now();
        let fut = self.inner.provider.stream(request, &ctx);
        let result = match ctx.deadline() {
            Some(d) => tokio::time::timeout_at(tokio::time::Instant::from_std(d), fut)
                .await
                .unwrap_or_else(|_| Err(self.timeout_error(&ctx))),
            None => fut.await,
        };
        match result {
            Ok(stream) => Ok(Box::pin(Counted {
                inner: stream,
                counters,
                started,
                usage: None,
                finished: false,
                deadline: ctx.deadline().map(tokio::time::Instant::from_std),
                sleep: None,
                timeout_error: Some(self.timeout_error(&ctx)),
            })),
            Err(e) => {
                counters.record_failure(e.kind(), started.elapsed());
                Err(e)
            }
        }
    }

    /// A chat answer.
    pub async fn chat(&self, request: ChatRequest) -> Result<ChatResponse> {
        self.chat_with(request, RequestContext::new()).await
    }

    /// A chat answer with a given context (priority, deadline, tenant, request id).
    pub async fn chat_with(
        &self,
        request: ChatRequest,
        ctx: RequestContext,
    ) -> Result<ChatResponse> {
        match self.call(&Request::Chat(request), ctx).await? {
            Response::Chat(c) => Ok(c),
            _ => Err(unexpected("chat")),
        }
    }

    /// A streamed chat answer, resolved at its first event.
    pub async fn stream_chat(&self, request: ChatRequest) -> Result<EventStream> {
        self.stream(&Request::Chat(request), RequestContext::new())
            .await
    }

    /// Embeddings, one per input.
    pub async fn embed(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse> {
        match self
            .call(&Request::Embeddings(request), RequestContext::new())
            .await?
        {
            Response::Embeddings(e) => Ok(e),
            _ => Err(unexpected("embeddings")),
        }
    }

    /// A legacy completion.
    pub async fn complete(&self, request: CompletionRequest) -> Result<CompletionResponse> {
        match self
            .call(&Request::Completion(request), RequestContext::new())
            .await?
        {
            Response::Completion(c) => Ok(c),
            _ => Err(unexpected("completion")),
        }
    }

    /// The models the endpoint offers.
    pub async fn models(&self) -> Result<ModelList> {
        match self.call(&Request::Models, RequestContext::new()).await? {
            Response::Models(m) => Ok(m),
            _ => Err(unexpected("models")),
        }
    }
}

/// A stream that records its outcome in the endpoint's counters: success at `Done`, failure
/// at an error, `Cancelled` when dropped before the end; and ends with `Timeout` at the call
/// deadline.
struct Counted {
    inner: EventStream,
    counters: Arc<EndpointCounters>,
    started: Instant,
    usage: Option<infermux_core::Usage>,
    finished: bool,
    deadline: Option<tokio::time::Instant>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    timeout_error: Option<Error>,
}

impl Stream for Counted {
    type Item = Result<StreamEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let polled = self.inner.as_mut().poll_next(cx);
        match polled {
            Poll::Ready(Some(Ok(ev))) => {
                match &ev {
                    StreamEvent::Usage(u) => self.usage = Some(*u),
                    StreamEvent::Done { .. } => {
                        self.finished = true;
                        let (elapsed, usage) = (self.started.elapsed(), self.usage);
                        self.counters.record_success(elapsed, usage.as_ref());
                    }
                    _ => {}
                }
                Poll::Ready(Some(Ok(ev)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.finished = true;
                self.counters
                    .record_failure(e.kind(), self.started.elapsed());
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.finished = true;
                let e = Error::new(ErrorKind::Decode, "stream ended without a final event");
                self.counters
                    .record_failure(e.kind(), self.started.elapsed());
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => {
                if let Some(d) = self.deadline {
                    let sleep = self
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(d)));
                    if sleep.as_mut().poll(cx).is_ready() {
                        self.finished = true;
                        let e = self.timeout_error.take().unwrap_or_else(|| {
                            Error::new(ErrorKind::Timeout, "the call deadline passed")
                        });
                        self.counters
                            .record_failure(ErrorKind::Timeout, self.started.elapsed());
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if !self.finished {
            self.counters
                .record_failure(ErrorKind::Cancelled, self.started.elapsed());
        }
    }
}
