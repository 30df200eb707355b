//! [`Client`]: typed calls over one provider endpoint through the resilience stack (admission
//! queue, circuit breaker, retries, call deadline) with per-endpoint counters.

use std::sync::Arc;
use std::time::Duration;

use infermux_core::{
    ChatRequest, ChatResponse, CompletionRequest, CompletionResponse, CounterSnapshot,
    EmbeddingRequest, EmbeddingResponse, EndpointId, Error, ErrorKind, EventStream, ModelList,
    Provider, Request, RequestContext, Response, Result,
};
use infermux_resilience::{ResilienceConfig, Resilient, render_prometheus};

/// Builds a [`Client`].
///
/// ```
/// use infermux::resilience::ResilienceConfig;
/// use infermux::openai_compat::OpenAiCompat;
/// use infermux::{Client, EndpointConfig};
/// use std::time::Duration;
/// let provider = OpenAiCompat::new(EndpointConfig::new("local", "http://127.0.0.1:8080/v1").unwrap()).unwrap();
/// let client = Client::builder()
///     .provider(provider)
///     .resilience(ResilienceConfig::standard())
///     .timeout(Duration::from_secs(30))
///     .build()
///     .unwrap();
/// assert_eq!(client.endpoint().as_str(), "local");
/// ```
#[derive(Debug, Default)]
pub struct ClientBuilder {
    provider: Option<Arc<dyn Provider>>,
    resilience: Option<ResilienceConfig>,
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
    /// The resilience stack's configuration. Default [`ResilienceConfig::standard`].
    pub fn resilience(mut self, config: ResilienceConfig) -> Self {
        self.resilience = Some(config);
        self
    }
    /// The default deadline of a call over all its attempts, unless its context sets one.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// The client; fails with [`ErrorKind::Config`] without a provider or with a resilience
    /// config that does not validate (zero permits, a threshold outside (0, 100], …).
    pub fn build(self) -> Result<Client> {
        let provider = self
            .provider
            .ok_or_else(|| Error::new(ErrorKind::Config, "a client needs a provider"))?;
        let mut config = self.resilience.unwrap_or_default();
        if let Some(t) = self.timeout {
            config = config.with_timeout(Some(t));
        }
        Ok(Client {
            inner: Arc::new(Resilient::new(provider, config)?),
        })
    }
}

/// The infermux client. Cheap to clone; clones share the stack and its counters.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Resilient>,
}

fn unexpected(op: &str) -> Error {
    Error::new(
        ErrorKind::Decode,
        format!("the provider answered a {op} request with another operation"),
    )
}

impl Client {
    /// A client over `provider` with the standard resilience stack.
    pub fn new(provider: impl Provider + 'static) -> Self {
        Client {
            inner: Arc::new(Resilient::standard(Arc::new(provider))),
        }
    }

    /// A builder.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The endpoint this client calls.
    pub fn endpoint(&self) -> &EndpointId {
        self.inner.endpoint()
    }

    /// The provider's name.
    pub fn provider_name(&self) -> &'static str {
        self.inner.name()
    }

    /// The resilience stack (queue, breaker, counters).
    pub fn stack(&self) -> &Resilient {
        &self.inner
    }

    /// A snapshot of the endpoint's counters.
    pub fn counters(&self) -> CounterSnapshot {
        self.inner.counters().snapshot()
    }

    /// The endpoint's counters in the Prometheus text format (a fixed layout: every scrape
    /// has the same series).
    pub fn prometheus(&self) -> String {
        render_prometheus(&[(self.endpoint().clone(), self.counters())])
    }

    /// One call of any operation.
    pub async fn call(&self, request: &Request, ctx: RequestContext) -> Result<Response> {
        // the stack's own future, not the `Provider` trait's boxed one
        self.inner.execute(request, &ctx).await
    }

    /// One streamed call; resolves at the first event.
    pub async fn stream(&self, request: &Request, ctx: RequestContext) -> Result<EventStream> {
        self.inner.execute_stream(request, &ctx).await
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
