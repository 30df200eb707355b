//! [`Resilient`]: the resilience stack around one provider endpoint, itself a [`Provider`].
//!
//! For each call: the call deadline over all attempts; then for each attempt admission (the
//! priority queue and the endpoint's concurrency permits) → breaker → provider; the permit is
//! released before any backoff; the retry policy decides on each failure. A refusal before the
//! attempt (queue full, circuit open, the deadline passing in the queue) is counted as
//! `rejected{reason}`, never as an attempt.
//!
//! A stream is retried until its first *content* event: metadata (`Start`, `Usage`) is held
//! back ([`first_content`](crate::first_content)) and reaches the caller, in order, just before
//! the content. The stream handed to the caller owns its permit and breaker ticket, records
//! success at `Done`, failure at an error, and `Cancelled` when dropped early (never a breaker
//! failure).
//!
//! A timeout caused by the caller's own deadline is [`Outcome::Ignored`] for the breaker,
//! whichever timer saw it first (ours, or the transport's, which clamps to the context's
//! remaining time); a timeout of the endpoint's own setting (first byte, idle) is a failure.
//!
//! Every call is a `tracing` span `infermux.call` and every attempt a span `infermux.attempt`,
//! with OpenTelemetry GenAI field names; retries, breaker transitions and queue waits are
//! events. No field carries a key or a message from the server.

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_core::Stream;
use infermux_core::{
    Capabilities, Clock, EndpointCounters, EndpointId, Error, ErrorKind, EventStream, FirstByte,
    Operation, Provider, RejectReason, Request, RequestContext, Response, Result, StopReason,
    StreamEvent, SystemClock, Usage,
};
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::breaker::{Breaker, BreakerConfig, BreakerGuard, CircuitBreaker, Outcome, Ticket};
use crate::content::hold_until_content;
use crate::queue::{Admission, BorrowedPermit, Permit, QueueConfig};
use crate::retry::{Attempt, Decision, RetryPolicy, StandardRetry};

/// A timeout that ends this close to the call deadline is taken as the deadline's: the
/// transport derives its clamp from the context's remaining time a moment after the stack
/// computed the deadline, so the two timers may differ by that moment.
const DEADLINE_SLACK: Duration = Duration::from_millis(10);

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
    /// Checks the queue and breaker configs (the stack's constructors also do).
    pub fn validate(self) -> Result<Self> {
        let queue = self.queue.validate()?;
        let breaker = self.breaker.map(BreakerConfig::validate).transpose()?;
        Ok(ResilienceConfig {
            queue,
            breaker,
            ..self
        })
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
/// let resilient = Resilient::new(Arc::new(provider), ResilienceConfig::standard()).unwrap();
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
    clock: Arc<dyn Clock>,
    /// Whether `clock` is the system clock, so one read of `Instant::now` serves both the
    /// deadline and the attempt's start.
    system_clock: bool,
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
    /// Wraps `provider` with `config`, using the real clock; fails with
    /// [`ErrorKind::Config`] when the config does not pass [`ResilienceConfig::validate`].
    pub fn new(provider: Arc<dyn Provider>, config: ResilienceConfig) -> Result<Self> {
        let mut stack = Self::with_clock(provider, config, Arc::new(SystemClock))?;
        stack.system_clock = true;
        Ok(stack)
    }

    /// [`ResilienceConfig::standard`] around `provider` (cannot fail: the standard config is
    /// valid).
    pub fn standard(provider: Arc<dyn Provider>) -> Self {
        let mut stack = Self::unchecked(
            provider,
            ResilienceConfig::standard(),
            Arc::new(SystemClock),
        );
        stack.system_clock = true;
        stack
    }

    /// Wraps `provider`; the breaker, the queue and the attempt timings read time from
    /// `clock` (the timers — deadline, pauses — are tokio's). Fails like [`Resilient::new`].
    pub fn with_clock(
        provider: Arc<dyn Provider>,
        config: ResilienceConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        Ok(Self::unchecked(provider, config.validate()?, clock))
    }

    fn unchecked(
        provider: Arc<dyn Provider>,
        config: ResilienceConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let counters = Arc::new(EndpointCounters::new());
        let breaker = config.breaker.map(|b| {
            Arc::new(CircuitBreaker::unchecked(b, clock.clone()).with_counters(counters.clone()))
                as Arc<dyn Breaker>
        });
        Resilient {
            admission: Admission::unchecked(config.queue, clock.clone(), Some(counters.clone())),
            provider,
            breaker,
            retry: config.retry,
            counters,
            timeout: config.timeout,
            clock,
            system_clock: false,
        }
    }

    /// Replaces the breaker (for adapters such as the `failsafe` one; give it
    /// [`Resilient::counters`] so it fills the breaker gauges).
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

    /// [`Provider::call`] as a plain future: the same call without the trait's boxed future
    /// (one allocation less per call, for callers that hold a `Resilient` itself, such as the
    /// facade's client).
    pub async fn execute(&self, request: &Request, ctx: &RequestContext) -> Result<Response> {
        let span = self.call_span(request, ctx, false);
        self.run_call(request, ctx, span.clone())
            .instrument(span)
            .await
    }

    /// [`Provider::stream`] as a plain future (see [`Resilient::execute`]).
    pub async fn execute_stream(
        &self,
        request: &Request,
        ctx: &RequestContext,
    ) -> Result<EventStream> {
        let span = self.call_span(request, ctx, true);
        self.run_stream(request, ctx, span.clone())
            .instrument(span)
            .await
    }

    /// The call deadline, and the moment it was computed when that was a read of the system
    /// clock (`None` without a deadline: then nothing is read).
    fn deadline(&self, ctx: &RequestContext) -> (CallDeadline, Option<Instant>) {
        if ctx.deadline().is_none() && self.timeout.is_none() {
            return (
                CallDeadline {
                    left: None,
                    at: OnceLock::new(),
                    std: None,
                },
                None,
            );
        }
        let now = Instant::now();
        let from_ctx = ctx.deadline().map(|d| d.saturating_duration_since(now));
        let left = match (from_ctx, self.timeout) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or_default(),
        };
        // tokio's clock (which paused-time tests move) is read only once the deadline is
        // needed: a call answered without waiting reads neither it nor a timer
        let deadline = CallDeadline {
            left: Some(left),
            at: OnceLock::new(),
            std: now.checked_add(left),
        };
        (deadline, Some(now))
    }

    fn context(&self, e: Error, ctx: &RequestContext) -> Error {
        e.in_context(
            ctx.request_id(),
            self.provider.name(),
            self.provider.endpoint(),
        )
    }

    fn deadline_error(&self, ctx: &RequestContext, what: &'static str) -> Error {
        self.context(
            Error::new(ErrorKind::Timeout, what).with_reached_server(true),
            ctx,
        )
    }

    fn call_span(&self, request: &Request, ctx: &RequestContext, stream: bool) -> Span {
        tracing::info_span!(
            target: "infermux::call",
            "infermux.call",
            "gen_ai.operation.name" = operation_name(request.operation()),
            "gen_ai.provider.name" = self.provider.name(),
            "gen_ai.request.model" = request.model(),
            "infermux.request_id" = %ctx.request_id(),
            "infermux.endpoint" = self.provider.endpoint().as_str(),
            "infermux.stream" = stream,
            "infermux.attempts" = Empty,
            "infermux.stop_reason" = Empty,
            "error.type" = Empty,
            "gen_ai.usage.input_tokens" = Empty,
            "gen_ai.usage.output_tokens" = Empty,
        )
    }

    /// Admission, then the breaker; a refusal is counted as rejected, not as an attempt. The
    /// permit and ticket are owned: a stream keeps them after the call returns.
    async fn admit(
        &self,
        ctx: &RequestContext,
        deadline: &CallDeadline,
    ) -> Result<(Permit, Option<BreakerGuard>)> {
        let (permit, ticket) = self.admit_borrowed(ctx, deadline).await?;
        let guard = match (&self.breaker, ticket) {
            (Some(b), Some(t)) => Some(BreakerGuard::from_ticket(b.clone(), t)),
            _ => None,
        };
        Ok((permit.into_owned(), guard))
    }

    /// Waits out a retry pause, or until the deadline if that comes first.
    async fn pause(&self, after: Duration, deadline: &CallDeadline) {
        let until = tokio::time::Instant::now() + after;
        let until = deadline.at().map_or(until, |d| until.min(d));
        tokio::time::sleep_until(until).await;
    }

    /// The policy's decision after a failed or refused try: `Ok(pause)` to retry, or the
    /// final error (carrying the attempts made and why retrying stopped).
    fn after_failure(
        &self,
        e: Error,
        tries: u32,
        attempts: u32,
        deadline: &CallDeadline,
        ctx: &RequestContext,
    ) -> std::result::Result<Duration, Error> {
        let a = Attempt::new(&e, tries)
            .with_remaining(deadline.remaining())
            .with_idempotency(ctx.idempotency());
        let reason = match self.retry.decide(&a) {
            Decision::Retry(after) => {
                self.counters.record_retry();
                tracing::info!(
                    "infermux.attempt" = tries,
                    "infermux.retry.wait_ms" = u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
                    "error.type" = e.kind().as_str(),
                    "retrying"
                );
                return Ok(after);
            }
            Decision::Stop(_) if e.kind() == ErrorKind::Timeout && deadline.reached() => {
                StopReason::Deadline
            }
            Decision::Stop(reason) => reason,
        };
        tracing::info!(
            "infermux.attempts" = attempts,
            "infermux.stop_reason" = reason.as_str(),
            "error.type" = e.kind().as_str(),
            "not retrying"
        );
        Err(e.with_attempts(attempts).with_stop_reason(reason))
    }

    /// The context of attempt `n`: the call deadline (as an instant of the system clock, which
    /// the transport clamps its timers to), the attempt number and, for the breaker's slow-call
    /// rule when there is a breaker, a first-byte mark.
    fn attempt_context(
        &self,
        ctx: &RequestContext,
        deadline: &CallDeadline,
        n: u32,
        fresh: bool,
        first_byte: bool,
    ) -> RequestContext {
        // right after the deadline was computed, its system instant is still exact; later
        // (a retry, a wait in the queue) it is recomputed from the time left on tokio's clock
        let at = if fresh { deadline.std } else { deadline.std() };
        let actx = match at {
            Some(d) => ctx.clone().with_deadline(d),
            None => ctx.clone(),
        };
        let actx = actx.with_attempt(n);
        if !first_byte {
            actx
        } else if self.system_clock {
            actx.with_first_byte(FirstByte::system())
        } else {
            actx.with_first_byte(FirstByte::new(self.clock.clone()))
        }
    }

    /// Admission and the breaker for a non-streamed attempt, borrowing both (no reference
    /// count is touched); refusals are counted like [`Resilient::admit`]'s.
    async fn admit_borrowed(
        &self,
        ctx: &RequestContext,
        deadline: &CallDeadline,
    ) -> Result<(BorrowedPermit<'_>, Option<Ticket>)> {
        let permit = match deadline
            .run(self.admission.acquire_borrowed(ctx.priority()))
            .await
        {
            None => {
                return Err(self.reject(
                    ctx,
                    RejectReason::Deadline,
                    self.deadline_error(
                        ctx,
                        "the call deadline passed while waiting for admission",
                    ),
                ));
            }
            Some(Err(e)) if e.kind() == ErrorKind::QueueFull => {
                return Err(self.reject(ctx, RejectReason::QueueFull, e));
            }
            Some(Err(e)) => return Err(self.context(e, ctx)),
            Some(Ok(p)) => p,
        };
        let ticket = match &self.breaker {
            Some(b) => match b.try_acquire() {
                Ok(t) => Some(t),
                Err(e) if e.kind() == ErrorKind::CircuitOpen => {
                    return Err(self.reject(ctx, RejectReason::CircuitOpen, e));
                }
                Err(e) => return Err(self.context(e, ctx)),
            },
            None => None,
        };
        Ok((permit, ticket))
    }

    fn reject(&self, ctx: &RequestContext, reason: RejectReason, e: Error) -> Error {
        self.counters.record_rejected(reason);
        tracing::info!(
            "infermux.rejected" = reason.as_str(),
            "error.type" = e.kind().as_str(),
            "call refused before an attempt"
        );
        self.context(e, ctx)
    }

    async fn run_call(
        &self,
        request: &Request,
        ctx: &RequestContext,
        call_span: Span,
    ) -> Result<Response> {
        let (deadline, mut computed_at) = self.deadline(ctx);
        let (mut tries, mut attempts) = (0u32, 0u32);
        loop {
            tries += 1;
            let (permit, ticket) = match self.admit_borrowed(ctx, &deadline).await {
                Ok(admitted) => admitted,
                Err(e) => {
                    computed_at = None;
                    match self.after_failure(e, tries, attempts, &deadline, ctx) {
                        Ok(after) => {
                            self.pause(after, &deadline).await;
                            continue;
                        }
                        Err(e) => return finish_span(&call_span, attempts, Err(e)),
                    }
                }
            };
            attempts += 1;
            // the first attempt admitted at once starts at the instant the deadline was read
            // (the system clock's, when that is the stack's clock)
            let fresh = !permit.waited && computed_at.is_some();
            let started = computed_at
                .take()
                .filter(|_| fresh && self.system_clock)
                .unwrap_or_else(|| self.clock.now());
            let actx =
                self.attempt_context(ctx, &deadline, attempts, fresh, self.breaker.is_some());
            let span = attempt_span(attempts);
            let result = async {
                let mut attempt = CallAttempt::start(self, started, permit, ticket);
                let result = match deadline.run(self.provider.call(request, &actx)).await {
                    Some(r) => r.map_err(|e| self.context(e, &actx)),
                    None => Err(self.deadline_error(&actx, "the call deadline passed")),
                };
                let outcome = match &result {
                    Ok(_) => Outcome::Success,
                    Err(e) => deadline.outcome_of(e),
                };
                attempt.finish(&actx, &result, outcome);
                record_attempt(&span, result.as_ref().err(), outcome);
                result
            }
            .instrument(span.clone())
            .await;
            match result {
                Ok(resp) => {
                    self.retry.on_success();
                    record_usage(&call_span, resp.usage());
                    return finish_span(&call_span, attempts, Ok(resp));
                }
                Err(e) => match self.after_failure(e, tries, attempts, &deadline, ctx) {
                    Ok(after) => self.pause(after, &deadline).await,
                    Err(e) => return finish_span(&call_span, attempts, Err(e)),
                },
            }
        }
    }

    async fn run_stream(
        &self,
        request: &Request,
        ctx: &RequestContext,
        call_span: Span,
    ) -> Result<EventStream> {
        let (deadline, _) = self.deadline(ctx);
        let (mut tries, mut attempts) = (0u32, 0u32);
        loop {
            tries += 1;
            let (permit, guard) = match self.admit(ctx, &deadline).await {
                Ok(admitted) => admitted,
                Err(e) => match self.after_failure(e, tries, attempts, &deadline, ctx) {
                    Ok(after) => {
                        self.pause(after, &deadline).await;
                        continue;
                    }
                    Err(e) => return finish_span(&call_span, attempts, Err(e)),
                },
            };
            attempts += 1;
            // slow is judged by the time to the first event: no first-byte mark needed
            let actx = self.attempt_context(ctx, &deadline, attempts, false, false);
            let span = attempt_span(attempts);
            let started = async {
                let mut record = AttemptRecord::start(&self.counters, &self.clock);
                let in_flight = InFlight::new(&self.counters);
                let t0 = self.clock.now();
                let opened = deadline
                    .run(async {
                        let stream = self.provider.stream(request, &actx).await?;
                        // slow is judged by the time to the stream's first event
                        let ttfb = self.clock.now().saturating_duration_since(t0);
                        Ok((hold_until_content(stream).await?, ttfb))
                    })
                    .await;
                let opened = match opened {
                    Some(r) => r.map_err(|e| self.context(e, &actx)),
                    None => Err(self.deadline_error(&actx, "the call deadline passed")),
                };
                match opened {
                    Ok((stream, ttfb)) => Ok((stream, ttfb, record, in_flight, permit, guard)),
                    Err(e) => {
                        drop(in_flight);
                        let outcome = deadline.outcome_of(&e);
                        if let Some(g) = guard {
                            g.record(outcome, self.clock.now().saturating_duration_since(t0));
                        }
                        drop(permit);
                        record.failure(e.kind());
                        record_attempt(&span, Some(&e), outcome);
                        Err(e)
                    }
                }
            }
            .instrument(span.clone())
            .await;
            match started {
                Ok(((held, stream), ttfb, record, in_flight, permit, guard)) => {
                    // the error is built only for a stream that has a deadline to miss
                    let deadline_error = deadline
                        .at()
                        .map(|_| self.deadline_error(&actx, "the call deadline passed"));
                    return Ok(Box::pin(Guarded {
                        held,
                        inner: stream,
                        permit: Some(permit),
                        in_flight: Some(in_flight),
                        guard,
                        ttfb,
                        record,
                        retry: self.retry.clone(),
                        usage: None,
                        finished: false,
                        deadline,
                        sleep: None,
                        deadline_error,
                        attempts,
                        span,
                        call_span,
                    }));
                }
                Err(e) => match self.after_failure(e, tries, attempts, &deadline, ctx) {
                    Ok(after) => self.pause(after, &deadline).await,
                    Err(e) => return finish_span(&call_span, attempts, Err(e)),
                },
            }
        }
    }
}

/// The OpenTelemetry GenAI `gen_ai.operation.name` of an operation.
fn operation_name(op: Operation) -> &'static str {
    match op {
        Operation::Chat | Operation::ChatStream | Operation::Tools | Operation::Vision => "chat",
        Operation::Completion | Operation::CompletionStream => "text_completion",
        Operation::Embeddings => "embeddings",
        Operation::Rerank => "rerank",
        Operation::Models => "list_models",
        _ => "other",
    }
}

fn attempt_span(n: u32) -> Span {
    tracing::info_span!(
        target: "infermux::call",
        "infermux.attempt",
        "infermux.attempt" = n,
        "infermux.outcome" = Empty,
        "infermux.breaker_outcome" = Empty,
        "error.type" = Empty,
    )
}

/// Records an attempt's end on its span (`None`: success).
fn record_attempt(span: &Span, error: Option<&Error>, outcome: Outcome) {
    match error {
        None => span.record("infermux.outcome", "success"),
        Some(e) => {
            span.record("infermux.outcome", "error");
            span.record("error.type", e.kind().as_str())
        }
    };
    span.record("infermux.breaker_outcome", outcome.as_str());
}

fn record_usage(span: &Span, usage: Option<&Usage>) {
    if let Some(u) = usage {
        span.record("gen_ai.usage.input_tokens", u.input_tokens);
        span.record("gen_ai.usage.output_tokens", u.output_tokens);
    }
}

/// Records the call's end on its span and passes the result through.
fn finish_span<T>(span: &Span, attempts: u32, result: Result<T>) -> Result<T> {
    span.record("infermux.attempts", attempts);
    if let Err(e) = &result {
        span.record("error.type", e.kind().as_str());
        if let Some(r) = e.stop_reason() {
            span.record("infermux.stop_reason", r.as_str());
        }
    }
    result
}

/// The call deadline on tokio's clock (so paused-time tests and the transport's timers agree).
///
/// Tokio's clock is read when the deadline is first needed — a timer armed because the call
/// has to wait, the time left for a retry, the stream handed out — not when the call starts:
/// a call answered without waiting reads it never. Until then nothing can wait, so on a
/// paused clock (which moves only while everything waits) the deadline is exactly the one
/// taken at the start; on the real clock it is later by the synchronous work before the first
/// wait (microseconds).
#[derive(Debug)]
struct CallDeadline {
    /// The time the call has, `None` without a deadline.
    left: Option<Duration>,
    /// The deadline on tokio's clock, once it was needed.
    at: OnceLock<tokio::time::Instant>,
    /// The same deadline on the system clock, as computed with it.
    std: Option<Instant>,
}

impl CallDeadline {
    /// Time left, `None` without a deadline.
    fn remaining(&self) -> Option<Duration> {
        self.at()
            .map(|d| d.saturating_duration_since(tokio::time::Instant::now()))
    }

    /// The deadline on tokio's clock (fixed the first time it is asked for).
    fn at(&self) -> Option<tokio::time::Instant> {
        let left = self.left?;
        Some(*self.at.get_or_init(|| tokio::time::Instant::now() + left))
    }

    /// The deadline as a std instant, for the attempt's context (the transport clamps its
    /// timers to it).
    fn std(&self) -> Option<Instant> {
        self.remaining().map(|left| Instant::now() + left)
    }

    /// Whether the deadline has passed (within [`DEADLINE_SLACK`]).
    fn reached(&self) -> bool {
        self.remaining().is_some_and(|left| left <= DEADLINE_SLACK)
    }

    /// The breaker's view of a failed attempt: a timeout at the caller's deadline says
    /// nothing about the endpoint.
    fn outcome_of(&self, e: &Error) -> Outcome {
        if e.kind() == ErrorKind::Timeout && self.reached() {
            Outcome::Ignored
        } else {
            Outcome::of_error(e)
        }
    }

    /// Runs `fut` until the deadline: `None` when the deadline came first (`fut` is polled
    /// first, like tokio's `timeout_at`). The timer is created only once `fut` has to wait: a
    /// permit free at once, or an answer ready at once, costs no timer.
    async fn run<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        if self.left.is_none() {
            return Some(fut.await);
        }
        let mut fut = pin!(fut);
        let mut sleep = pin!(None::<tokio::time::Sleep>);
        poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            if sleep.is_none()
                && let Some(at) = self.at()
            {
                sleep.set(Some(tokio::time::sleep_until(at)));
            }
            match sleep.as_mut().as_pin_mut().map(|timer| timer.poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(None),
                _ => Poll::Pending,
            }
        })
        .await
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
        self.execute(request, ctx).await
    }

    async fn stream(&self, request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        self.execute_stream(request, ctx).await
    }
}

/// One non-streamed attempt: counted in flight from its start, holding its permit and breaker
/// ticket (all borrowed from the stack); [`CallAttempt::finish`] records it once, and dropping
/// it unfinished (the caller gave up) records `Cancelled` and an ignored breaker outcome.
struct CallAttempt<'a> {
    stack: &'a Resilient,
    started: Instant,
    permit: Option<BorrowedPermit<'a>>,
    ticket: Option<Ticket>,
    done: bool,
}

impl<'a> CallAttempt<'a> {
    fn start(
        stack: &'a Resilient,
        started: Instant,
        permit: BorrowedPermit<'a>,
        ticket: Option<Ticket>,
    ) -> Self {
        stack.counters.record_request();
        stack.counters.adjust_in_flight(1);
        CallAttempt {
            stack,
            started,
            permit: Some(permit),
            ticket,
            done: false,
        }
    }

    /// Records the attempt's end: one clock read serves its latency and, unless the transport
    /// marked the first byte, its time to first byte.
    fn finish(&mut self, actx: &RequestContext, result: &Result<Response>, outcome: Outcome) {
        self.done = true;
        let counters = &self.stack.counters;
        counters.adjust_in_flight(-1);
        let end = self.stack.clock.now();
        if let (Some(b), Some(t)) = (&self.stack.breaker, self.ticket.take()) {
            // slow is judged by time to first byte (the headers), else the whole call
            let first = actx.first_byte().and_then(FirstByte::at).unwrap_or(end);
            b.on_outcome(t, outcome, first.saturating_duration_since(self.started));
        }
        self.permit = None;
        let elapsed = end.saturating_duration_since(self.started);
        match result {
            Ok(resp) => counters.record_success(elapsed, resp.usage()),
            Err(e) => counters.record_failure(e.kind(), elapsed),
        }
    }
}

impl Drop for CallAttempt<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let counters = &self.stack.counters;
        counters.adjust_in_flight(-1);
        if let (Some(b), Some(t)) = (&self.stack.breaker, self.ticket.take()) {
            b.on_outcome(t, Outcome::Ignored, Duration::ZERO);
        }
        self.permit = None;
        let elapsed = self
            .stack
            .clock
            .now()
            .saturating_duration_since(self.started);
        counters.record_failure(ErrorKind::Cancelled, elapsed);
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
    clock: Arc<dyn Clock>,
    started: Instant,
    done: bool,
}

impl AttemptRecord {
    fn start(counters: &Arc<EndpointCounters>, clock: &Arc<dyn Clock>) -> Self {
        counters.record_request();
        AttemptRecord {
            counters: counters.clone(),
            clock: clock.clone(),
            started: clock.now(),
            done: false,
        }
    }
    fn elapsed(&self) -> Duration {
        self.clock.now().saturating_duration_since(self.started)
    }
    fn success(&mut self, usage: Option<&Usage>) {
        if !std::mem::replace(&mut self.done, true) {
            self.counters.record_success(self.elapsed(), usage);
        }
    }
    fn failure(&mut self, kind: ErrorKind) {
        if !std::mem::replace(&mut self.done, true) {
            self.counters.record_failure(kind, self.elapsed());
        }
    }
}

impl Drop for AttemptRecord {
    fn drop(&mut self) {
        self.failure(ErrorKind::Cancelled);
    }
}

/// A stream that owns its permit and breaker ticket and records its outcome once; it first
/// replays the metadata held back until the first content event (and that event).
struct Guarded {
    held: VecDeque<StreamEvent>,
    inner: EventStream,
    permit: Option<Permit>,
    in_flight: Option<InFlight>,
    guard: Option<BreakerGuard>,
    ttfb: Duration,
    record: AttemptRecord,
    retry: Arc<dyn RetryPolicy>,
    usage: Option<Usage>,
    finished: bool,
    deadline: CallDeadline,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    deadline_error: Option<Error>,
    attempts: u32,
    span: Span,
    call_span: Span,
}

impl Guarded {
    /// Records the end of the attempt (`Err(None)`: dropped by the caller).
    fn finish(&mut self, end: std::result::Result<(), Option<&Error>>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.in_flight = None;
        let _entered = self.span.enter();
        match end {
            Ok(()) => {
                let usage = self.usage;
                self.record.success(usage.as_ref());
                self.retry.on_success();
                if let Some(g) = self.guard.take() {
                    g.record(Outcome::Success, self.ttfb);
                }
                record_attempt(&self.span, None, Outcome::Success);
                record_usage(&self.call_span, usage.as_ref());
                self.call_span.record("infermux.attempts", self.attempts);
            }
            Err(e) => {
                let (kind, outcome) = match e {
                    None => (ErrorKind::Cancelled, Outcome::Ignored),
                    Some(e) => (e.kind(), self.deadline.outcome_of(e)),
                };
                self.record.failure(kind);
                if let Some(g) = self.guard.take() {
                    g.record(outcome, self.ttfb);
                }
                self.span.record(
                    "infermux.outcome",
                    match e {
                        None => "cancelled",
                        Some(_) => "error",
                    },
                );
                self.span.record("error.type", kind.as_str());
                self.span
                    .record("infermux.breaker_outcome", outcome.as_str());
                self.call_span.record("infermux.attempts", self.attempts);
                self.call_span.record("error.type", kind.as_str());
            }
        }
        self.permit = None;
    }

    /// A mid-stream error, with the attempts made and why it is not retried.
    fn fail(&mut self, e: Error) -> Error {
        let reason = if e.kind() == ErrorKind::Timeout && self.deadline.reached() {
            StopReason::Deadline
        } else if e.is_retryable() {
            StopReason::StreamStarted
        } else {
            StopReason::NotRetryable
        };
        let e = e.with_attempts(self.attempts).with_stop_reason(reason);
        self.finish(Err(Some(&e)));
        self.call_span
            .record("infermux.stop_reason", reason.as_str());
        e
    }
}

impl Stream for Guarded {
    type Item = Result<StreamEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let next = match self.held.pop_front() {
            Some(ev) => Poll::Ready(Some(Ok(ev))),
            None => self.inner.as_mut().poll_next(cx),
        };
        match next {
            Poll::Ready(Some(Ok(ev))) => {
                match &ev {
                    StreamEvent::Usage(u) => self.usage = Some(*u),
                    StreamEvent::Done { .. } => self.finish(Ok(())),
                    _ => {}
                }
                Poll::Ready(Some(Ok(ev)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(self.fail(e)))),
            Poll::Ready(None) => {
                let e = Error::new(ErrorKind::Decode, "stream ended without a final event");
                Poll::Ready(Some(Err(self.fail(e))))
            }
            Poll::Pending => {
                if let Some(d) = self.deadline.at() {
                    let sleep = self
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(d)));
                    if sleep.as_mut().poll(cx).is_ready() {
                        let e = self.deadline_error.take().unwrap_or_else(|| {
                            Error::new(ErrorKind::Timeout, "the call deadline passed")
                        });
                        return Poll::Ready(Some(Err(self.fail(e))));
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.finish(Err(None));
    }
}
