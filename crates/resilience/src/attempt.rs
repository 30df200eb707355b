//! [`AttemptExecutor`]: one endpoint's provider, concurrency permits, breaker and counters. It
//! runs exactly one attempt and never retries; the [call policy](crate::CallPolicy) decides
//! what happens after it.
//!
//! An attempt is counted from its grant to its end: requests, in flight, latency, failures by
//! kind; its breaker ticket gets one outcome (a timeout at the caller's own deadline, or a
//! dropped attempt, is [`Outcome::Ignored`]); its permit is released when it ends. Every
//! attempt is a `tracing` span `infermux.attempt`.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;
use infermux_core::{
    Clock, EndpointCounters, Error, ErrorKind, EventStream, FirstByte, Operation, Provider,
    RejectReason, Request, RequestContext, Response, Result, StopReason, StreamEvent, SystemClock,
    Usage,
};
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::breaker::{
    Breaker, BreakerConfig, BreakerGuard, BreakerState, CircuitBreaker, Outcome, Ticket,
};
use crate::content::hold_until_content;
use crate::policy::CallDeadline;
use crate::pool::{Admit, ArmedTicket, Grant, Lease, Pool};
use crate::queue::{Admission, BorrowedPermit, Permit, QueueConfig};
use crate::retry::RetryPolicy;

/// Why [`AttemptExecutor::try_grant`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Every permit is taken.
    NoPermit,
    /// The breaker is open (or its half-open probes are all out); a probe may pass after
    /// `retry_after` when known.
    CircuitOpen {
        /// Time before a probe may pass.
        retry_after: Option<Duration>,
    },
}

/// One endpoint: its provider (one connection pool), its concurrency permits, its breaker and
/// its counters. Runs one attempt at a time per permit and never retries. It is also a
/// [`Pool`] of one member: admission waits in its own priority queue.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use infermux_core::{ChatRequest, EndpointConfig, Message, Request, RequestContext};
/// use infermux_openai_compat::OpenAiCompat;
/// use infermux_resilience::{AttemptExecutor, CallPolicy, breaker::BreakerConfig, queue::QueueConfig};
/// use infermux_testkit::{FaultPlan, Simulator};
/// use std::sync::Arc;
///
/// let sim = Simulator::start(FaultPlan::none()).await.unwrap();
/// let provider = OpenAiCompat::new(EndpointConfig::new("sim", format!("{}/v1", sim.url())).unwrap()).unwrap();
/// let endpoint = AttemptExecutor::new(Arc::new(provider), QueueConfig::standard(), Some(BreakerConfig::standard())).unwrap();
/// let grant = endpoint.try_grant(false).unwrap(); // a free permit, a closed breaker
/// drop(grant);
/// let policy = CallPolicy::standard();
/// let req = Request::Chat(ChatRequest::new("m", vec![Message::user("hi")]));
/// let called = policy.call(&endpoint, &req, &RequestContext::new()).await.unwrap();
/// assert_eq!(called.attempts, 1);
/// # }
/// ```
pub struct AttemptExecutor {
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) admission: Admission,
    pub(crate) breaker: Option<Arc<dyn Breaker>>,
    pub(crate) counters: Arc<EndpointCounters>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Whether `clock` is the system clock, so one read of `Instant::now` serves both the
    /// deadline and the attempt's start.
    pub(crate) system_clock: bool,
}

impl fmt::Debug for AttemptExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttemptExecutor")
            .field("provider", &self.provider)
            .field("admission", &self.admission)
            .field("breaker", &self.breaker)
            .finish()
    }
}

/// A stream attempt that opened: what [`Guarded`] is built from.
pub(crate) struct Opened {
    pub(crate) held: VecDeque<StreamEvent>,
    pub(crate) stream: EventStream,
    pub(crate) ttfb: Duration,
    pub(crate) record: AttemptRecord,
    pub(crate) in_flight: InFlight,
    // (fields drop in this order: the breaker's probe slot is free before the permit's
    // release wakes a waiter, as in `Grant`)
    pub(crate) guard: Option<BreakerGuard>,
    pub(crate) permit: Permit,
}

impl AttemptExecutor {
    /// An endpoint around `provider` with the real clock; fails with [`ErrorKind::Config`]
    /// when the queue or breaker config is invalid.
    pub fn new(
        provider: Arc<dyn Provider>,
        queue: QueueConfig,
        breaker: Option<BreakerConfig>,
    ) -> Result<Self> {
        let mut exec = Self::with_clock(provider, queue, breaker, Arc::new(SystemClock))?;
        exec.system_clock = true;
        Ok(exec)
    }

    /// An endpoint whose breaker, queue and attempt timings read `clock`; fails like
    /// [`AttemptExecutor::new`].
    pub fn with_clock(
        provider: Arc<dyn Provider>,
        queue: QueueConfig,
        breaker: Option<BreakerConfig>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let queue = queue.validate()?;
        let breaker = breaker.map(BreakerConfig::validate).transpose()?;
        Ok(Self::unchecked(provider, queue, breaker, clock))
    }

    pub(crate) fn unchecked(
        provider: Arc<dyn Provider>,
        queue: QueueConfig,
        breaker: Option<BreakerConfig>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let counters = Arc::new(EndpointCounters::new());
        let breaker = breaker.map(|b| {
            Arc::new(CircuitBreaker::unchecked(b, clock.clone()).with_counters(counters.clone()))
                as Arc<dyn Breaker>
        });
        AttemptExecutor {
            admission: Admission::unchecked(queue, clock.clone(), Some(counters.clone())),
            provider,
            breaker,
            counters,
            clock,
            system_clock: false,
        }
    }

    /// Replaces the breaker (for adapters such as the `failsafe` one; give it
    /// [`AttemptExecutor::counters`] so it fills the breaker gauges).
    pub fn with_breaker(mut self, breaker: Option<Arc<dyn Breaker>>) -> Self {
        self.breaker = breaker;
        self
    }

    /// The endpoint's counters.
    pub fn counters(&self) -> &Arc<EndpointCounters> {
        &self.counters
    }
    /// The admission queue and permits.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }
    /// The breaker, if any.
    pub fn breaker(&self) -> Option<&Arc<dyn Breaker>> {
        self.breaker.as_ref()
    }
    /// The breaker's state (`Closed` without a breaker).
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker
            .as_ref()
            .map_or(BreakerState::Closed, |b| b.state())
    }
    /// The provider.
    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
    }
    /// The clock the endpoint reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// A permit and the breaker's admission now, without waiting; with `past_open` the breaker
    /// is not asked (a pool's ejection cap sends an attempt through an open breaker, whose
    /// outcome is then not recorded on it).
    pub fn try_grant(&self, past_open: bool) -> std::result::Result<Grant<'_>, Refusal> {
        let permit = self
            .admission
            .try_acquire_borrowed()
            .ok_or(Refusal::NoPermit)?;
        let ticket = match (&self.breaker, past_open) {
            (Some(b), false) => match b.try_acquire() {
                Ok(t) => Some(ArmedTicket::new(&**b, t)),
                Err(e) => {
                    return Err(Refusal::CircuitOpen {
                        retry_after: e.retry_after(),
                    });
                }
            },
            _ => None,
        };
        Ok(Grant { permit, ticket })
    }

    /// Waits in the endpoint's own queue for a permit, then asks the breaker; a refusal is
    /// counted as rejected, not as an attempt.
    pub async fn grant(&self, ctx: &RequestContext, deadline: &CallDeadline) -> Result<Grant<'_>> {
        let permit = match deadline
            .run(self.admission.acquire_borrowed(ctx.priority()))
            .await
        {
            None => {
                // the request never left the queue: nothing reached the server
                return Err(self.reject(
                    ctx,
                    RejectReason::Deadline,
                    Error::new(
                        ErrorKind::Timeout,
                        "the call deadline passed while waiting for admission",
                    )
                    .with_reached_server(false),
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
                Ok(t) => Some(ArmedTicket::new(&**b, t)),
                Err(e) if e.kind() == ErrorKind::CircuitOpen => {
                    return Err(self.reject(ctx, RejectReason::CircuitOpen, e));
                }
                Err(e) => return Err(self.context(e, ctx)),
            },
            None => None,
        };
        Ok(Grant { permit, ticket })
    }

    /// Counts a refusal before an attempt and puts the error in context.
    pub fn reject(&self, ctx: &RequestContext, reason: RejectReason, e: Error) -> Error {
        self.counters.record_rejected(reason);
        tracing::info!(
            "infermux.rejected" = reason.as_str(),
            "error.type" = e.kind().as_str(),
            "call refused before an attempt"
        );
        self.context(e, ctx)
    }

    /// `e` with the request id, provider and endpoint.
    pub(crate) fn context(&self, e: Error, ctx: &RequestContext) -> Error {
        e.in_context(
            ctx.request_id(),
            self.provider.name(),
            self.provider.endpoint(),
        )
    }

    pub(crate) fn deadline_error(&self, ctx: &RequestContext, what: &'static str) -> Error {
        self.context(
            Error::new(ErrorKind::Timeout, what).with_reached_server(true),
            ctx,
        )
    }

    /// The context of attempt `n`: the call deadline (as an instant of the system clock, which
    /// the transport clamps its timers to), the attempt number and, for the breaker's slow-call
    /// rule when there is a breaker, a first-byte mark.
    pub(crate) fn attempt_context(
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

    /// Runs one attempt of `fut` (the provider's call) under `grant`, counted from `started`;
    /// returns its result and its latency.
    #[allow(clippy::too_many_arguments)] // one attempt's whole state, passed once
    pub(crate) async fn run_attempt<'g, T>(
        &'g self,
        grant: Grant<'g>,
        actx: &RequestContext,
        deadline: &CallDeadline,
        started: Instant,
        n: u32,
        fut: impl Future<Output = Result<T>>,
        usage: fn(&T) -> Option<&Usage>,
    ) -> (Result<T>, Duration, Held<'g>) {
        let span = attempt_span(n);
        let fut = async {
            let mut attempt = CallAttempt::start(
                self,
                started,
                grant.permit,
                grant.ticket.map(ArmedTicket::disarm),
            );
            let result = match deadline.run(fut).await {
                Some(r) => r.map_err(|e| self.context(e, actx)),
                None => Err(self.deadline_error(actx, "the call deadline passed")),
            };
            let outcome = match &result {
                Ok(_) => Outcome::Success,
                Err(e) => deadline.outcome_of(e),
            };
            let (latency, held) = attempt.finish(actx, result.as_ref().map(usage), outcome);
            record_attempt(&span, result.as_ref().err(), outcome);
            (result, latency, held)
        };
        // a span no subscriber records is not entered on every poll (and the attempt's
        // future is not moved into a wrapper for it)
        if span.is_disabled() {
            fut.await
        } else {
            fut.instrument(span.clone()).await
        }
    }

    /// One non-streamed attempt of `request`. The answer is boxed where the provider hands it
    /// over: from there up to the call's caller it moves as a pointer, not as the whole
    /// `Response` through every layer's future (each move writes it into memory the other
    /// requests in flight have evicted from the cache since the last poll).
    pub(crate) async fn call<'g>(
        &'g self,
        grant: Grant<'g>,
        request: &Request,
        actx: &RequestContext,
        deadline: &CallDeadline,
        started: Instant,
        n: u32,
    ) -> (Result<Box<Response>>, Duration, Held<'g>) {
        self.run_attempt(
            grant,
            actx,
            deadline,
            started,
            n,
            async { self.provider.call(request, actx).await.map(Box::new) },
            boxed_usage,
        )
        .await
    }

    /// Opens one streamed attempt: resolves at the first content event (metadata held back).
    /// A failed opening's permit is handed back, to be released once the pool has learnt the
    /// failure (see [`Held`]).
    pub(crate) async fn open_stream(
        &self,
        grant: Grant<'_>,
        request: &Request,
        actx: &RequestContext,
        deadline: &CallDeadline,
        span: &Span,
    ) -> (Result<Opened>, Option<Permit>) {
        let permit = grant.permit.into_owned();
        let guard = match (&self.breaker, grant.ticket.map(ArmedTicket::disarm)) {
            (Some(b), Some(t)) => Some(BreakerGuard::from_ticket(b.clone(), t)),
            _ => None,
        };
        let fut = async {
            let mut record = AttemptRecord::start(&self.counters, &self.clock);
            let in_flight = InFlight::new(&self.counters);
            let t0 = self.clock.now();
            let opened = deadline
                .run(async {
                    let stream = self.provider.stream(request, actx).await?;
                    // slow is judged by the time to the stream's first event
                    let ttfb = self.clock.now().saturating_duration_since(t0);
                    Ok((hold_until_content(stream).await?, ttfb))
                })
                .await;
            let opened = match opened {
                Some(r) => r.map_err(|e| self.context(e, actx)),
                None => Err(self.deadline_error(actx, "the call deadline passed")),
            };
            match opened {
                Ok(((held, stream), ttfb)) => (
                    Ok(Opened {
                        held,
                        stream,
                        ttfb,
                        record,
                        in_flight,
                        permit,
                        guard,
                    }),
                    None,
                ),
                Err(e) => {
                    drop(in_flight);
                    let outcome = deadline.outcome_of(&e);
                    if let Some(g) = guard {
                        g.record(outcome, self.clock.now().saturating_duration_since(t0));
                    }
                    record.failure(e.kind());
                    record_attempt(span, Some(&e), outcome);
                    (Err(e), Some(permit))
                }
            }
        };
        // a span no subscriber records is not entered on every poll
        if span.is_disabled() {
            fut.await
        } else {
            fut.instrument(span.clone()).await
        }
    }
}

/// [`Response::usage`] of a boxed answer.
#[allow(clippy::borrowed_box)] // the attempt's answer type is `Box<Response>`
fn boxed_usage(r: &Box<Response>) -> Option<&Usage> {
    r.usage()
}

impl Pool for AttemptExecutor {
    /// Waits in the endpoint's own queue, then asks its breaker.
    async fn admit<'a>(&'a self, req: Admit<'_>) -> Result<Lease<'a>> {
        let grant = self.grant(req.ctx, req.deadline).await?;
        Ok(Lease::new(self, grant, 0))
    }

    fn retry_counters(&self) -> Option<&EndpointCounters> {
        Some(&self.counters)
    }
}

/// The OpenTelemetry GenAI `gen_ai.operation.name` of an operation.
pub(crate) fn operation_name(op: Operation) -> &'static str {
    match op {
        Operation::Chat | Operation::ChatStream | Operation::Tools | Operation::Vision => "chat",
        Operation::Completion | Operation::CompletionStream => "text_completion",
        Operation::Embeddings => "embeddings",
        Operation::Rerank => "rerank",
        Operation::Models => "list_models",
        _ => "other",
    }
}

pub(crate) fn attempt_span(n: u32) -> Span {
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
pub(crate) fn record_attempt(span: &Span, error: Option<&Error>, outcome: Outcome) {
    match error {
        None => span.record("infermux.outcome", "success"),
        Some(e) => {
            span.record("infermux.outcome", "error");
            span.record("error.type", e.kind().as_str())
        }
    };
    span.record("infermux.breaker_outcome", outcome.as_str());
}

pub(crate) fn record_usage(span: &Span, usage: Option<&Usage>) {
    if let Some(u) = usage {
        span.record("gen_ai.usage.input_tokens", u.input_tokens);
        span.record("gen_ai.usage.output_tokens", u.output_tokens);
    }
}

/// Records the call's end on its span and passes the result through.
pub(crate) fn finish_span<T>(span: &Span, attempts: u32, result: Result<T>) -> Result<T> {
    span.record("infermux.attempts", attempts);
    if let Err(e) = &result {
        span.record("error.type", e.kind().as_str());
        if let Some(r) = e.stop_reason() {
            span.record("infermux.stop_reason", r.as_str());
        }
    }
    result
}

/// One non-streamed attempt: counted in flight from its start, holding its permit and breaker
/// ticket (all borrowed from the stack); [`CallAttempt::finish`] records it once, and dropping
/// it unfinished (the caller gave up) records `Cancelled` and an ignored breaker outcome.
struct CallAttempt<'a> {
    stack: &'a AttemptExecutor,
    started: Instant,
    permit: Option<BorrowedPermit<'a>>,
    ticket: Option<Ticket>,
    done: bool,
}

impl<'a> CallAttempt<'a> {
    fn start(
        stack: &'a AttemptExecutor,
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
    /// marked the first byte, its time to first byte. The attempt's permit is handed back,
    /// held until its pool has learnt the outcome (see [`Held`]).
    fn finish(
        &mut self,
        actx: &RequestContext,
        result: std::result::Result<Option<&Usage>, &Error>,
        outcome: Outcome,
    ) -> (Duration, Held<'a>) {
        self.done = true;
        let counters = &self.stack.counters;
        counters.adjust_in_flight(-1);
        let end = self.stack.clock.now();
        if let (Some(b), Some(t)) = (&self.stack.breaker, self.ticket.take()) {
            // slow is judged by time to first byte (the headers), else the whole call
            let first = actx.first_byte().and_then(FirstByte::at).unwrap_or(end);
            b.on_outcome(t, outcome, first.saturating_duration_since(self.started));
        }
        let elapsed = end.saturating_duration_since(self.started);
        match result {
            Ok(usage) => counters.record_success(elapsed, usage),
            Err(e) => counters.record_failure(e.kind(), elapsed),
        }
        // (a success may spend the key's window too: its pool learns that first as well)
        let held = Held {
            _permit: self.permit.take(),
        };
        (elapsed, held)
    }
}

/// An attempt's permit, released when dropped: after the pool has learnt the outcome.
/// Released at the attempt's end, it woke a waiter that could pick the same key before the
/// pool cooled, removed or limited it (another 429, another 401).
#[must_use = "dropped at once, it releases the permit before the pool learns the outcome"]
pub(crate) struct Held<'a> {
    _permit: Option<BorrowedPermit<'a>>,
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
pub(crate) struct InFlight(Arc<EndpointCounters>);

impl InFlight {
    pub(crate) fn new(c: &Arc<EndpointCounters>) -> Self {
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
pub(crate) struct AttemptRecord {
    counters: Arc<EndpointCounters>,
    clock: Arc<dyn Clock>,
    started: Instant,
    done: bool,
}

impl AttemptRecord {
    pub(crate) fn start(counters: &Arc<EndpointCounters>, clock: &Arc<dyn Clock>) -> Self {
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
    pub(crate) fn failure(&mut self, kind: ErrorKind) {
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
pub(crate) struct Guarded {
    pub(crate) held: VecDeque<StreamEvent>,
    pub(crate) inner: EventStream,
    pub(crate) permit: Option<Permit>,
    pub(crate) in_flight: Option<InFlight>,
    /// What the pool holds while the stream lives.
    pub(crate) hold: Option<crate::pool::StreamHold>,
    pub(crate) guard: Option<BreakerGuard>,
    pub(crate) ttfb: Duration,
    pub(crate) record: AttemptRecord,
    pub(crate) retry: Arc<dyn RetryPolicy>,
    pub(crate) usage: Option<Usage>,
    pub(crate) finished: bool,
    pub(crate) deadline: CallDeadline,
    pub(crate) sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    pub(crate) deadline_error: Option<Error>,
    /// The call's request id, provider and endpoint (for the errors the guard makes itself).
    pub(crate) request_id: infermux_core::RequestId,
    pub(crate) provider: &'static str,
    pub(crate) endpoint: infermux_core::EndpointId,
    pub(crate) attempts: u32,
    pub(crate) span: Span,
    pub(crate) call_span: Span,
}

impl Guarded {
    /// Records the end of the attempt (`Err(None)`: dropped by the caller).
    fn finish(&mut self, end: std::result::Result<(), Option<&Error>>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.in_flight = None;
        // a stream that ended with its final event settles what its pool reserved for it
        if end.is_ok()
            && let (Some(hold), Some(usage)) = (self.hold.as_mut(), self.usage.as_ref())
        {
            hold.settle(usage);
        }
        self.hold = None;
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
                let e = Error::new(ErrorKind::Decode, "stream ended without a final event")
                    .in_context(self.request_id, self.provider, &self.endpoint);
                Poll::Ready(Some(Err(self.fail(e))))
            }
            Poll::Pending => {
                if let Some(d) = self.deadline.at() {
                    let sleep = self
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(d)));
                    if sleep.as_mut().poll(cx).is_ready() {
                        let e =
                            self.deadline_error.take().unwrap_or_else(|| {
                                Error::new(ErrorKind::Timeout, "the call deadline passed")
                                    .in_context(self.request_id, self.provider, &self.endpoint)
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
