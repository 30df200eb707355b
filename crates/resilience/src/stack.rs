//! [`Resilient`]: the resilience stack around one provider endpoint, itself a [`Provider`].
//!
//! For each call: the call deadline over all attempts; then for each attempt admission (the
//! priority queue and the endpoint's concurrency permits) → breaker → provider; the permit is
//! released before any backoff; the retry policy decides on each failure. A stream is retried
//! only until its first event; the stream handed to the caller owns its permit and breaker
//! ticket, records success at `Done`, failure at an error, and `Cancelled` when dropped early
//! (never a breaker failure).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_core::Stream;
use infermux_core::{
    Capabilities, Clock, EndpointCounters, EndpointId, Error, ErrorKind, EventStream, Provider,
    Request, RequestContext, Response, Result, StreamEvent, SystemClock, Usage,
};

use crate::breaker::{Breaker, BreakerConfig, BreakerGuard, CircuitBreaker, Outcome};
use crate::queue::{Admission, Permit, QueueConfig};
use crate::retry::{Attempt, Decision, RetryPolicy, StandardRetry};

/// Configuration of a [`Resilient`] stack.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResilienceConfig {
    /// The admission queue and concurrency limit.
    pub queue: QueueConfig,
    /// The circuit breaker (`None`: no breaker).
    pub breaker: Option<BreakerConfig>,
    /// The retry policy.
    pub retry: Arc<dyn RetryPolicy>,
    /// The default call deadline (over all attempts) when the context sets none. Default 5 min.
    pub timeout: Option<Duration>,
}

impl ResilienceConfig {
    /// Standard queue, breaker and retry policy; a 5 minute call deadline.
    pub fn standard() -> Self {
        ResilienceConfig {
            queue: QueueConfig::standard(),
            breaker: Some(BreakerConfig::standard()),
            retry: Arc::new(StandardRetry::standard()),
            timeout: Some(Duration::from_secs(300)),
        }
    }
    /// Pass-through: no retries, no breaker, a queue that never blocks in practice.
    pub fn disabled() -> Self {
        ResilienceConfig {
            queue: QueueConfig::standard().with_permits(usize::MAX / 2),
            breaker: None,
            retry: Arc::new(StandardRetry::disabled()),
            timeout: None,
        }
    }
    /// Sets the queue.
    pub fn with_queue(mut self, q: QueueConfig) -> Self {
        self.queue = q;
        self
    }
    /// Sets (or removes) the breaker.
    pub fn with_breaker(mut self, b: Option<BreakerConfig>) -> Self {
        self.breaker = b;
        self
    }
    /// Sets the retry policy.
    pub fn with_retry(mut self, r: Arc<dyn RetryPolicy>) -> Self {
        self.retry = r;
        self
    }
    /// Sets the default call deadline.
    pub fn with_timeout(mut self, t: Option<Duration>) -> Self {
        self.timeout = t;
        self
    }
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        Self::standard()
    }
}

/// A provider wrapped in admission, breaker, retry and a call deadline.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use infermux_core::{ChatRequest, EndpointConfig, Message, Provider, Request, RequestContext};
/// use infermux_openai_compat::OpenAiCompat;
/// use infermux_resilience::{ResilienceConfig, Resilient};
/// use infermux_testkit::{Fault, FaultPlan, Simulator};
/// use std::sync::Arc;
///
/// let sim = Simulator::start(FaultPlan::none()).await.unwrap();
/// sim.push_fault(Fault::Unavailable); // the first attempt gets a 503
/// let provider = OpenAiCompat::new(EndpointConfig::new("sim", format!("{}/v1", sim.url())).unwrap()).unwrap();
/// let resilient = Resilient::new(Arc::new(provider), ResilienceConfig::standard());
/// let req = Request::Chat(ChatRequest::new("m", vec![Message::user("hi")]));
/// assert!(resilient.call(&req, &RequestContext::new()).await.is_ok());
/// assert_eq!(resilient.counters().snapshot().retries, 1);
/// # }
/// ```
pub struct Resilient {
    provider: Arc<dyn Provider>,
    admission: Admission,
    breaker: Option<Arc<dyn Breaker>>,
    retry: Arc<dyn RetryPolicy>,
    counters: Arc<EndpointCounters>,
    timeout: Option<Duration>,
}

impl fmt::Debug for Resilient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resilient")
            .field("provider", &self.provider)
            .field("admission", &self.admission)
            .field("breaker", &self.breaker)
            .field("retry", &self.retry)
            .finish()
    }
}

impl Resilient {
    /// Wraps `provider` with `config`, using the real clock.
    pub fn new(provider: Arc<dyn Provider>, config: ResilienceConfig) -> Self {
        Self::with_clock(provider, config, Arc::new(SystemClock))
    }

    /// Wraps `provider`; the breaker and the queue read time from `clock`.
    pub fn with_clock(
        provider: Arc<dyn Provider>,
        config: ResilienceConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let counters = Arc::new(EndpointCounters::new());
        let breaker = config.breaker.map(|b| {
            Arc::new(CircuitBreaker::new(b, clock.clone()).with_counters(counters.clone()))
                as Arc<dyn Breaker>
        });
        Resilient {
            admission: Admission::with_clock(config.queue, clock, Some(counters.clone())),
            provider,
            breaker,
            retry: config.retry,
            counters,
            timeout: config.timeout,
        }
    }

    /// Replaces the breaker (for adapters such as the `failsafe` one).
    pub fn with_breaker(mut self, breaker: Option<Arc<dyn Breaker>>) -> Self {
        self.breaker = breaker;
        self
    }

    /// The endpoint's counters.
    pub fn counters(&self) -> &Arc<EndpointCounters> {
        &self.counters
    }
    /// The admission queue.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }
    /// The breaker, if any.
    pub fn breaker(&self) -> Option<&Arc<dyn Breaker>> {
        self.breaker.as_ref()
    }
    /// The wrapped provider.
    pub fn inner(&self) -> &Arc<dyn Provider> {
        &self.provider
    }

    fn deadline(&self, ctx: &RequestContext) -> Option<Instant> {
        let default = self.timeout.map(|t| Instant::now() + t);
        match (ctx.deadline(), default) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn context(&self, e: Error, ctx: &RequestContext) -> Error {
        e.in_context(
            ctx.request_id(),
            self.provider.name(),
            self.provider.endpoint(),
        )
    }

    fn deadline_error(&self, ctx: &RequestContext) -> Error {
        self.context(
            Error::new(ErrorKind::Timeout, "the call deadline passed").with_reached_server(true),
            ctx,
        )
    }

    async fn admit(&self, ctx: &RequestContext) -> Result<(Permit, Option<BreakerGuard>)> {
        let permit = self.admission.acquire(ctx.priority()).await?;
        let guard = match &self.breaker {
            Some(b) => Some(BreakerGuard::acquire(b)?),
            None => None,
        };
        Ok((permit, guard))
    }

    /// Waits out a retry pause, or fails when the deadline comes first.
    async fn pause(&self, after: Duration, deadline: Option<Instant>) {
        let until = tokio::time::Instant::now() + after;
        let until = deadline.map_or(until, |d| until.min(tokio::time::Instant::from_std(d)));
        tokio::time::sleep_until(until).await;
    }

    async fn with_deadline<T>(
        &self,
        deadline: Option<Instant>,
        ctx: &RequestContext,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match deadline {
            Some(d) => tokio::time::timeout_at(tokio::time::Instant::from_std(d), fut)
                .await
                .unwrap_or_else(|_| Err(self.deadline_error(ctx))),
            None => fut.await,
        }
    }

    /// Decides after a failed attempt: `Some(pause)` to retry.
    fn after_failure(
        &self,
        e: &Error,
        attempt: u32,
        deadline: Option<Instant>,
        ctx: &RequestContext,
    ) -> Option<Duration> {
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let a = Attempt::new(e, attempt)
            .with_remaining(remaining)
            .with_idempotency(ctx.idempotency());
        match self.retry.decide(&a) {
            Decision::Retry(after) => {
                self.counters.record_retry();
                Some(after)
            }
            Decision::Stop(_) => None,
        }
    }
}

#[async_trait]
impl Provider for Resilient {
    fn name(&self) -> &'static str {
        self.provider.name()
    }
    fn endpoint(&self) -> &EndpointId {
        self.provider.endpoint()
    }
    fn capabilities(&self) -> Capabilities {
        self.provider.capabilities()
    }

    async fn call(&self, request: &Request, ctx: &RequestContext) -> Result<Response> {
        let deadline = self.deadline(ctx);
        let mut attempt = 1;
        loop {
            let actx = match deadline {
                Some(d) => ctx.clone().with_deadline(d),
                None => ctx.clone(),
            }
            .with_attempt(attempt);
            let mut record = AttemptRecord::start(&self.counters);
            let result = self
                .with_deadline(deadline, &actx, async {
                    let (permit, guard) = self.admit(&actx).await?;
                    let in_flight = InFlight::new(&self.counters);
                    let t0 = Instant::now();
                    let result = self.provider.call(request, &actx).await;
                    drop(in_flight);
                    if let Some(g) = guard {
                        g.record(Outcome::of(&result), t0.elapsed());
                    }
                    drop(permit);
                    result
                })
                .await;
            match result {
                Ok(resp) => {
                    record.success(resp.usage());
                    self.retry.on_success();
                    return Ok(resp);
                }
                Err(e) => {
                    let e = self.context(e, &actx);
                    record.failure(e.kind());
                    match self.after_failure(&e, attempt, deadline, &actx) {
                        Some(after) => self.pause(after, deadline).await,
                        None => return Err(e),
                    }
                }
            }
            attempt += 1;
        }
    }

    async fn stream(&self, request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        let deadline = self.deadline(ctx);
        let mut attempt = 1;
        loop {
            let actx = match deadline {
                Some(d) => ctx.clone().with_deadline(d),
                None => ctx.clone(),
            }
            .with_attempt(attempt);
            let mut record = AttemptRecord::start(&self.counters);
            let result = self
                .with_deadline(deadline, &actx, async {
                    let (permit, guard) = self.admit(&actx).await?;
                    let in_flight = InFlight::new(&self.counters);
                    let t0 = Instant::now();
                    let result = self.provider.stream(request, &actx).await;
                    let ttfb = t0.elapsed();
                    match result {
                        Ok(stream) => Ok((stream, permit, guard, ttfb, in_flight)),
                        Err(e) => {
                            drop(in_flight);
                            if let Some(g) = guard {
                                g.record(Outcome::of_error(&e), ttfb);
                            }
                            Err(e)
                        }
                    }
                })
                .await;
            match result {
                Ok((stream, permit, guard, ttfb, in_flight)) => {
                    return Ok(Box::pin(Guarded {
                        inner: stream,
                        permit: Some(permit),
                        in_flight: Some(in_flight),
                        guard,
                        ttfb,
                        record,
                        retry: self.retry.clone(),
                        usage: None,
                        finished: false,
                        deadline: deadline.map(tokio::time::Instant::from_std),
                        sleep: None,
                        deadline_error: Some(self.deadline_error(&actx)),
                    }));
                }
                Err(e) => {
                    let e = self.context(e, &actx);
                    record.failure(e.kind());
                    match self.after_failure(&e, attempt, deadline, &actx) {
                        Some(after) => self.pause(after, deadline).await,
                        None => return Err(e),
                    }
                }
            }
            attempt += 1;
        }
    }
}

/// Counts one attempt in flight until dropped.
struct InFlight(Arc<EndpointCounters>);

impl InFlight {
    fn new(c: &Arc<EndpointCounters>) -> Self {
        c.adjust_in_flight(1);
        InFlight(c.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.adjust_in_flight(-1);
    }
}

/// Records one attempt's outcome exactly once; an attempt dropped unfinished is `Cancelled`.
struct AttemptRecord {
    counters: Arc<EndpointCounters>,
    started: Instant,
    done: bool,
}

impl AttemptRecord {
    fn start(counters: &Arc<EndpointCounters>) -> Self {
        counters.record_request();
        AttemptRecord {
            counters: counters.clone(),
            started: Instant::now(),
            done: false,
        }
    }
    fn success(&mut self, usage: Option<&Usage>) {
        if !std::mem::replace(&mut self.done, true) {
            self.counters.record_success(self.started.elapsed(), usage);
        }
    }
    fn failure(&mut self, kind: ErrorKind) {
        if !std::mem::replace(&mut self.done, true) {
            self.counters.record_failure(kind, self.started.elapsed());
        }
    }
}

impl Drop for AttemptRecord {
    fn drop(&mut self) {
        self.failure(ErrorKind::Cancelled);
    }
}

/// A stream that owns its permit and breaker ticket and records its outcome once.
struct Guarded {
    inner: EventStream,
    permit: Option<Permit>,
    in_flight: Option<InFlight>,
    guard: Option<BreakerGuard>,
    ttfb: Duration,
    record: AttemptRecord,
    retry: Arc<dyn RetryPolicy>,
    usage: Option<Usage>,
    finished: bool,
    deadline: Option<tokio::time::Instant>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    deadline_error: Option<Error>,
}

impl Guarded {
    fn finish(&mut self, outcome: std::result::Result<(), ErrorKind>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.in_flight = None;
        match outcome {
            Ok(()) => {
                let usage = self.usage;
                self.record.success(usage.as_ref());
                self.retry.on_success();
                if let Some(g) = self.guard.take() {
                    g.record(Outcome::Success, self.ttfb);
                }
            }
            Err(kind) => {
                self.record.failure(kind);
                if let Some(g) = self.guard.take() {
                    let outcome = match kind {
                        ErrorKind::Cancelled => Outcome::Ignored,
                        k => Outcome::of_error(&Error::new(k, "")),
                    };
                    g.record(outcome, self.ttfb);
                }
            }
        }
        self.permit = None;
    }
}

impl Stream for Guarded {
    type Item = Result<StreamEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(ev))) => {
                match &ev {
                    StreamEvent::Usage(u) => self.usage = Some(*u),
                    StreamEvent::Done { .. } => self.finish(Ok(())),
                    _ => {}
                }
                Poll::Ready(Some(Ok(ev)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.finish(Err(e.kind()));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.finish(Err(ErrorKind::Decode));
                Poll::Ready(Some(Err(Error::new(
                    ErrorKind::Decode,
                    "stream ended without a final event",
                ))))
            }
            Poll::Pending => {
                if let Some(d) = self.deadline {
                    let sleep = self
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(d)));
                    if sleep.as_mut().poll(cx).is_ready() {
                        self.finish(Err(ErrorKind::Timeout));
                        let e = self.deadline_error.take().unwrap_or_else(|| {
                            Error::new(ErrorKind::Timeout, "the call deadline passed")
                        });
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.finish(Err(ErrorKind::Cancelled));
    }
}
