//! [`CallPolicy`]: the call deadline, the retry policy and its budget around a [`Pool`].
//!
//! For each call: the call deadline over all attempts; then for each attempt the pool's
//! admission and selection → the member's executor; the permit is released before any backoff;
//! the retry policy decides on each failure, and every retry goes back through admission and
//! selection — so a retry after a 429 may land on another key or endpoint. A refusal before the
//! attempt (queue full, circuit open, every member cooling, the deadline passing in the queue)
//! is never an attempt.
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

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use infermux_core::{
    EndpointCounters, Error, ErrorKind, EventStream, Idempotency, Request, RequestContext,
    Response, ResponseMeta, Result, StopReason,
};
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::attempt::{Guarded, attempt_span, finish_span, operation_name, record_usage};
use crate::breaker::Outcome;
use crate::pool::{Admit, AttemptReport, Lease, Pool};
use crate::retry::{Attempt, Decision, RetryPolicy, StandardRetry};

/// A timeout that ends this close to the call deadline is taken as the deadline's: the
/// transport derives its clamp from the context's remaining time a moment after the stack
/// computed the deadline, so the two timers may differ by that moment.
const DEADLINE_SLACK: Duration = Duration::from_millis(10);

/// A call's answer with who gave it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Called<T> {
    /// The answer.
    pub value: T,
    /// The pool member that answered.
    pub member: u32,
    /// Attempts made (refusals before an attempt are not counted).
    pub attempts: u32,
}

/// Reports a leased attempt the caller dropped before it ended (the call future was
/// cancelled), so the pool's view of the member (in flight, strategy state) stays true. The
/// reservation is kept: the request may have reached the server.
struct Leased<'p, P: Pool> {
    pool: &'p P,
    member: u32,
    armed: bool,
}

impl<'p, P: Pool> Leased<'p, P> {
    fn new(pool: &'p P, member: u32) -> Self {
        Leased {
            pool,
            member,
            armed: true,
        }
    }
    /// The attempt ended: its own report follows.
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl<P: Pool> Drop for Leased<'_, P> {
    fn drop(&mut self) {
        if self.armed {
            let e = Error::new(ErrorKind::Cancelled, "the caller dropped the attempt");
            self.pool.report(&AttemptReport {
                member: self.member,
                result: Err(&e),
                latency: Duration::ZERO,
                rate_limits: None,
                reserved: 0,
                model: None,
            });
        }
    }
}

/// An operation outside the [`Request`] enum run through [`CallPolicy::run`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Op {
    /// Its name (the span's `gen_ai.operation.name`).
    pub name: &'static str,
    /// Whether it may be repeated: a non-idempotent operation is retried only when it provably
    /// never reached the server. Overrides the context's.
    pub idempotency: Idempotency,
    /// Tokens it is estimated to use (for pools with token limits).
    pub estimate: u64,
}

impl Op {
    /// An operation named `name`.
    pub fn new(name: &'static str, idempotency: Idempotency) -> Self {
        Op {
            name,
            idempotency,
            estimate: 0,
        }
    }
    /// Sets the token estimate.
    pub fn with_estimate(mut self, tokens: u64) -> Self {
        self.estimate = tokens;
        self
    }
}

/// The call deadline, the retry policy and its budget, around any [`Pool`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use infermux_core::{EndpointConfig, Idempotency, RequestContext};
/// use infermux_openai_compat::OpenAiCompat;
/// use infermux_resilience::{AttemptExecutor, CallPolicy, Op, queue::QueueConfig};
/// use infermux_testkit::{FaultPlan, Simulator};
/// use std::sync::Arc;
///
/// let sim = Simulator::start(FaultPlan::none()).await.unwrap();
/// let provider = OpenAiCompat::new(EndpointConfig::new("sim", format!("{}/v1", sim.url())).unwrap()).unwrap();
/// let endpoint = AttemptExecutor::new(Arc::new(provider), QueueConfig::standard(), None).unwrap();
/// // any async operation gets the pool's admission, the breaker, the counters and retries
/// let op = Op::new("ping", Idempotency::Idempotent);
/// let called = CallPolicy::standard()
///     .run(&endpoint, op, &RequestContext::new(), |_member, _actx| async { Ok(42) })
///     .await
///     .unwrap();
/// assert_eq!(called.value, 42);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CallPolicy {
    pub(crate) retry: Arc<dyn RetryPolicy>,
    pub(crate) timeout: Option<Duration>,
}

impl CallPolicy {
    /// `retry` with a default call deadline of `timeout` (when the context sets none).
    pub fn new(retry: Arc<dyn RetryPolicy>, timeout: Option<Duration>) -> Self {
        CallPolicy { retry, timeout }
    }
    /// The standard retry policy and a 5 minute deadline.
    pub fn standard() -> Self {
        Self::new(
            Arc::new(StandardRetry::standard()),
            Some(Duration::from_secs(300)),
        )
    }
    /// The retry policy.
    pub fn retry(&self) -> &Arc<dyn RetryPolicy> {
        &self.retry
    }
    /// The default call deadline.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The call deadline, and the moment it was computed when that was a read of the system
    /// clock (`None` without a deadline: then nothing is read).
    pub(crate) fn deadline(&self, ctx: &RequestContext) -> (CallDeadline, Option<Instant>) {
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
        // a deadline too far to add to now (a timeout of `Duration::MAX`) is no deadline
        let Some(std) = now.checked_add(left) else {
            return (CallDeadline::after(None), None);
        };
        let deadline = CallDeadline {
            left: Some(left),
            at: OnceLock::new(),
            std: Some(std),
        };
        (deadline, Some(now))
    }

    /// Waits out a retry pause, or until the deadline if that comes first.
    ///
    /// A pause too long to add to now (a custom backoff or a `run` operation's error asking
    /// for `Duration::MAX`) waits until [`FAR_FUTURE`](infermux_core::FAR_FUTURE) from now.
    /// Dropped before it ends (the caller gave up), the retry the policy allowed never runs,
    /// and the policy is told ([`RetryPolicy::on_abandoned`]) so it can give back what it took.
    async fn pause(&self, after: Duration, deadline: &CallDeadline) {
        if after.is_zero() {
            return;
        }
        let now = tokio::time::Instant::now();
        let until = now
            .checked_add(after)
            .unwrap_or_else(|| now + infermux_core::FAR_FUTURE);
        let until = deadline.at().map_or(until, |d| until.min(d));
        let abandoned = Abandoned(&*self.retry);
        tokio::time::sleep_until(until).await;
        abandoned.disarm();
    }

    /// The policy's decision after a failed or refused try: `Ok(pause)` to retry, or the
    /// final error (carrying the attempts made and why retrying stopped).
    #[allow(clippy::too_many_arguments)] // the try's whole state, passed once
    fn after_failure(
        &self,
        e: Error,
        tries: u32,
        attempts: u32,
        deadline: &CallDeadline,
        ctx: &RequestContext,
        failover: bool,
    ) -> std::result::Result<Duration, Error> {
        let a = Attempt::new(&e, tries)
            .with_remaining(deadline.remaining())
            .with_idempotency(ctx.idempotency())
            .with_failover(failover);
        let reason = match self.retry.decide(&a) {
            Decision::Retry(after) => {
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

    /// After a failed or refused try: waits out the pause and returns `Ok` to try again, or
    /// returns the final error.
    #[allow(clippy::too_many_arguments)] // the try's whole state, passed once
    async fn retry_or_stop(
        &self,
        e: Error,
        tries: u32,
        attempts: u32,
        deadline: &CallDeadline,
        ctx: &RequestContext,
        counters: Option<&EndpointCounters>,
        failover: bool,
    ) -> Result<()> {
        let after = self.after_failure(e, tries, attempts, deadline, ctx, failover)?;
        self.pause(after, deadline).await;
        // counted once its pause is over: a retry abandoned in it never ran
        if let Some(c) = counters {
            c.record_retry();
        }
        Ok(())
    }

    /// The request an attempt sends: `request`, or a copy asking for the lease's model.
    fn for_model<'r>(
        request: &'r Request,
        model: Option<&str>,
        owned: &'r mut Option<Request>,
    ) -> &'r Request {
        match model {
            Some(m) if request.model() != Some(m) => owned.insert(request.with_model(m)),
            _ => request,
        }
    }

    /// The attempt's context from its lease: the key, and the response cell when the pool
    /// wants the rate-limit headers.
    fn lease_context<P: Pool>(
        pool: &P,
        mut actx: RequestContext,
        key: Option<infermux_core::AttemptKey>,
    ) -> (RequestContext, Option<Arc<ResponseMeta>>) {
        if let Some(k) = key {
            actx = actx.with_key(k);
        }
        if pool.wants_meta() {
            let meta = Arc::new(ResponseMeta::new());
            (actx.with_meta(meta.clone()), Some(meta))
        } else {
            (actx, None)
        }
    }

    /// Runs `request` through `pool`: admission and selection, one attempt on the leased
    /// member, and retries by the policy until success, a final error or the deadline.
    pub async fn call<P: Pool>(
        &self,
        pool: &P,
        request: &Request,
        ctx: &RequestContext,
    ) -> Result<Called<Response>> {
        self.call_traced(pool, request, ctx, Span::none()).await
    }

    /// [`CallPolicy::call`] recording on `call_span` (see [`call_span`]), which the caller
    /// instruments the future with.
    pub async fn call_traced<P: Pool>(
        &self,
        pool: &P,
        request: &Request,
        ctx: &RequestContext,
        call_span: Span,
    ) -> Result<Called<Response>> {
        let called = self.call_boxed(pool, request, ctx, call_span).await?;
        Ok(Called {
            value: *called.value,
            member: called.member,
            attempts: called.attempts,
        })
    }

    /// [`CallPolicy::call_traced`] with the answer left in the box the attempt put it in: it
    /// moves up the call as a pointer, and a caller that returns it by value unboxes it once,
    /// at its end (a routed client's router does; see `Resilient::execute_boxed` for the
    /// same on one endpoint).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use infermux_core::{ChatRequest, EndpointConfig, Message, Request, RequestContext, Response};
    /// use infermux_openai_compat::OpenAiCompat;
    /// use infermux_resilience::{AttemptExecutor, CallPolicy, queue::QueueConfig};
    /// use infermux_testkit::{FaultPlan, Simulator};
    /// use std::sync::Arc;
    ///
    /// let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    /// let provider = OpenAiCompat::new(EndpointConfig::new("sim", format!("{}/v1", sim.url())).unwrap()).unwrap();
    /// let endpoint = AttemptExecutor::new(Arc::new(provider), QueueConfig::standard(), None).unwrap();
    /// let req = Request::Chat(ChatRequest::new("m", vec![Message::user("hi")]));
    /// let called = CallPolicy::standard()
    ///     .call_boxed(&endpoint, &req, &RequestContext::new(), tracing::Span::none())
    ///     .await
    ///     .unwrap();
    /// assert_eq!(called.attempts, 1);
    /// assert!(matches!(*called.value, Response::Chat(_)));
    /// # }
    /// ```
    pub async fn call_boxed<P: Pool>(
        &self,
        pool: &P,
        request: &Request,
        ctx: &RequestContext,
        call_span: Span,
    ) -> Result<Called<Box<Response>>> {
        let (deadline, mut computed_at) = self.deadline(ctx);
        let (mut tries, mut attempts) = (0u32, 0u32);
        let mut tried: Vec<u32> = Vec::new();
        // the last attempt's error: what a call ends with when the pool then has no member left
        let mut last: Option<Error> = None;
        loop {
            tries += 1;
            let admit = Admit {
                ctx,
                request: Some(request),
                estimate: 0,
                deadline: &deadline,
                tried: &tried,
            };
            let lease = match pool.admit(admit).await {
                Ok(lease) => lease,
                Err(e) => {
                    let e = never_sent(e, ctx);
                    computed_at = None;
                    let counters = pool.retry_counters();
                    match self
                        .retry_or_stop(e, tries, attempts, &deadline, ctx, counters, false)
                        .await
                    {
                        Ok(()) => continue,
                        Err(e) => {
                            return finish_span(
                                &call_span,
                                attempts,
                                Err(ended_by_refusal(e, last.take())),
                            );
                        }
                    }
                }
            };
            attempts += 1;
            let Lease {
                executor: exec,
                grant,
                member,
                key,
                model,
                reserved,
                ..
            } = lease;
            // the first attempt admitted at once starts at the instant the deadline was read
            // (the system clock's, when that is the endpoint's clock)
            let fresh = !grant.waited() && computed_at.is_some();
            let started = computed_at
                .take()
                .filter(|_| fresh && exec.system_clock)
                .unwrap_or_else(|| exec.clock.now());
            let actx =
                exec.attempt_context(ctx, &deadline, attempts, fresh, exec.breaker.is_some());
            let (actx, meta) = Self::lease_context(pool, actx, key);
            let mut owned = None;
            let req = Self::for_model(request, model, &mut owned);
            let mut leased = Leased::new(pool, member);
            let (result, latency, held) = exec
                .call(grant, req, &actx, &deadline, started, attempts)
                .await;
            leased.disarm();
            pool.report(&AttemptReport {
                member,
                result: result.as_ref().map(|r| r.usage()),
                latency,
                rate_limits: meta.as_deref().and_then(ResponseMeta::rate_limits),
                reserved,
                model: req.model(),
            });
            // the attempt's permit goes back once the pool knows how it went (the waiter it
            // wakes picks with the key cooled, removed or limited)
            drop(held);
            match result {
                Ok(resp) => {
                    self.retry.on_success();
                    record_usage(&call_span, resp.usage());
                    let called = Called {
                        value: resp,
                        member,
                        attempts,
                    };
                    return finish_span(&call_span, attempts, Ok(called));
                }
                Err(e) => {
                    tried.push(member);
                    last = Some(e.clone());
                    let counters = Some(&*exec.counters);
                    let failover = pool.can_fail_over(&tried);
                    if let Err(e) = self
                        .retry_or_stop(e, tries, attempts, &deadline, ctx, counters, failover)
                        .await
                    {
                        return finish_span(&call_span, attempts, Err(e));
                    }
                }
            }
        }
    }

    /// Opens a stream of `request` through `pool`, retrying until its first content event
    /// (see the module docs).
    pub async fn stream<P: Pool>(
        &self,
        pool: &P,
        request: &Request,
        ctx: &RequestContext,
    ) -> Result<Called<EventStream>> {
        self.stream_traced(pool, request, ctx, Span::none()).await
    }

    /// [`CallPolicy::stream`] recording on `call_span`, like [`CallPolicy::call_traced`].
    pub async fn stream_traced<P: Pool>(
        &self,
        pool: &P,
        request: &Request,
        ctx: &RequestContext,
        call_span: Span,
    ) -> Result<Called<EventStream>> {
        let (deadline, _) = self.deadline(ctx);
        let (mut tries, mut attempts) = (0u32, 0u32);
        let mut tried: Vec<u32> = Vec::new();
        // the last attempt's error: what a call ends with when the pool then has no member left
        let mut last: Option<Error> = None;
        loop {
            tries += 1;
            let admit = Admit {
                ctx,
                request: Some(request),
                estimate: 0,
                deadline: &deadline,
                tried: &tried,
            };
            let lease = match pool.admit(admit).await {
                Ok(lease) => lease,
                Err(e) => {
                    let e = never_sent(e, ctx);
                    let counters = pool.retry_counters();
                    match self
                        .retry_or_stop(e, tries, attempts, &deadline, ctx, counters, false)
                        .await
                    {
                        Ok(()) => continue,
                        Err(e) => {
                            return finish_span(
                                &call_span,
                                attempts,
                                Err(ended_by_refusal(e, last.take())),
                            );
                        }
                    }
                }
            };
            attempts += 1;
            let Lease {
                executor: exec,
                grant,
                member,
                key,
                model,
                reserved,
                ..
            } = lease;
            // slow is judged by the time to the first event: no first-byte mark needed
            let actx = exec.attempt_context(ctx, &deadline, attempts, false, false);
            let (actx, meta) = Self::lease_context(pool, actx, key);
            let mut owned = None;
            let req = Self::for_model(request, model, &mut owned);
            let span = attempt_span(attempts);
            let mut leased = Leased::new(pool, member);
            let (opened, held) = exec.open_stream(grant, req, &actx, &deadline, &span).await;
            leased.disarm();
            // held before the report, so the member never looks idle while the stream lives
            let hold = match &opened {
                Ok(_) => pool.hold_stream_reserved(member, reserved),
                Err(_) => None,
            };
            pool.report(&AttemptReport {
                member,
                result: opened.as_ref().map(|_| None),
                latency: opened.as_ref().map_or(Duration::ZERO, |o| o.ttfb),
                rate_limits: meta.as_deref().and_then(ResponseMeta::rate_limits),
                reserved,
                model: req.model(),
            });
            // a failed opening's permit goes back once the pool knows why
            drop(held);
            match opened {
                Ok(o) => {
                    // the error is built only for a stream that has a deadline to miss
                    let deadline_error = deadline
                        .at()
                        .map(|_| exec.deadline_error(&actx, "the call deadline passed"));
                    let stream: EventStream = Box::pin(Guarded {
                        held: o.held,
                        inner: o.stream,
                        permit: Some(o.permit),
                        in_flight: Some(o.in_flight),
                        hold,
                        guard: o.guard,
                        ttfb: o.ttfb,
                        record: o.record,
                        retry: self.retry.clone(),
                        usage: None,
                        finished: false,
                        deadline,
                        sleep: None,
                        deadline_error,
                        request_id: ctx.request_id(),
                        provider: exec.provider.name(),
                        endpoint: exec.provider.endpoint().clone(),
                        attempts,
                        span,
                        call_span,
                    });
                    return Ok(Called {
                        value: stream,
                        member,
                        attempts,
                    });
                }
                Err(e) => {
                    tried.push(member);
                    last = Some(e.clone());
                    let counters = Some(&*exec.counters);
                    let failover = pool.can_fail_over(&tried);
                    if let Err(e) = self
                        .retry_or_stop(e, tries, attempts, &deadline, ctx, counters, failover)
                        .await
                    {
                        return finish_span(&call_span, attempts, Err(e));
                    }
                }
            }
        }
    }

    /// Runs an operation outside the [`Request`] enum through `pool` with the same admission,
    /// breaker, counters and retries: `f(member, attempt_context)` makes one attempt (the
    /// context carries the leased key and the attempt's deadline). `op.idempotency` decides
    /// whether a failure that may have reached the server is retried.
    pub async fn run<P, T, F, Fut>(
        &self,
        pool: &P,
        op: Op,
        ctx: &RequestContext,
        mut f: F,
    ) -> Result<Called<T>>
    where
        P: Pool,
        F: FnMut(u32, &RequestContext) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let ctx = &ctx.clone().with_idempotency(op.idempotency);
        let span = tracing::info_span!(
            target: "infermux::call",
            "infermux.call",
            "gen_ai.operation.name" = op.name,
            "infermux.request_id" = %ctx.request_id(),
            "infermux.attempts" = Empty,
            "infermux.stop_reason" = Empty,
            "error.type" = Empty,
        );
        let call_span = span.clone();
        async move {
            let (deadline, _) = self.deadline(ctx);
            let (mut tries, mut attempts) = (0u32, 0u32);
            let mut tried: Vec<u32> = Vec::new();
            // the last attempt's error: what a call ends with when the pool then has no member left
            let mut last: Option<Error> = None;
            loop {
                tries += 1;
                let admit = Admit {
                    ctx,
                    request: None,
                    estimate: op.estimate,
                    deadline: &deadline,
                    tried: &tried,
                };
                let lease = match pool.admit(admit).await {
                    Ok(lease) => lease,
                    Err(e) => {
                        let e = never_sent(e, ctx);
                        let counters = pool.retry_counters();
                        match self
                            .retry_or_stop(e, tries, attempts, &deadline, ctx, counters, false)
                            .await
                        {
                            Ok(()) => continue,
                            Err(e) => {
                                return finish_span(
                                    &call_span,
                                    attempts,
                                    Err(ended_by_refusal(e, last.take())),
                                );
                            }
                        }
                    }
                };
                attempts += 1;
                let Lease {
                    executor: exec,
                    grant,
                    member,
                    key,
                    reserved,
                    ..
                } = lease;
                let started = exec.clock.now();
                let actx = exec.attempt_context(ctx, &deadline, attempts, false, false);
                let (actx, meta) = Self::lease_context(pool, actx, key);
                // boxed: the operation's future (an upload's is kilobytes) is held once, on the
                // heap, not again in each layer that awaits it (the attempt, its deadline)
                let fut = Box::pin(f(member, &actx));
                let mut leased = Leased::new(pool, member);
                let (result, latency, held) = exec
                    .run_attempt(grant, &actx, &deadline, started, attempts, fut, |_| None)
                    .await;
                leased.disarm();
                pool.report(&AttemptReport {
                    member,
                    result: result.as_ref().map(|_| None),
                    latency,
                    rate_limits: meta.as_deref().and_then(ResponseMeta::rate_limits),
                    reserved,
                    model: None,
                });
                drop(held);
                match result {
                    Ok(value) => {
                        self.retry.on_success();
                        let called = Called {
                            value,
                            member,
                            attempts,
                        };
                        return finish_span(&call_span, attempts, Ok(called));
                    }
                    Err(e) => {
                        tried.push(member);
                        last = Some(e.clone());
                        let counters = Some(&*exec.counters);
                        let failover = pool.can_fail_over(&tried);
                        if let Err(e) = self
                            .retry_or_stop(e, tries, attempts, &deadline, ctx, counters, failover)
                            .await
                        {
                            return finish_span(&call_span, attempts, Err(e));
                        }
                    }
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// The error a call ends with when admission refused it: after an attempt failed for its key
/// (`Auth`, `QuotaExceeded`: the pool removed the key), a pool with no member left
/// (`Unavailable`) ends the call with that attempt's error — a wrong key is its `Auth` 401
/// with the provider's message, not "no pool member can take the call" — with the attempts
/// made and why the call stopped. A refusal after other failures (keys cooling, breakers
/// open) is kept: it says when a member returns.
fn ended_by_refusal(refusal: Error, last: Option<Error>) -> Error {
    match last {
        Some(prev)
            if refusal.kind() == ErrorKind::Unavailable
                && matches!(prev.kind(), ErrorKind::Auth | ErrorKind::QuotaExceeded) =>
        {
            let attempts = refusal.attempts().max(prev.attempts());
            let stopped = refusal.stop_reason().unwrap_or(StopReason::NotRetryable);
            prev.with_attempts(attempts).with_stop_reason(stopped)
        }
        _ => refusal,
    }
}

/// An error of admission (queue, breaker, pool): no request left, so a non-idempotent call may
/// try again.
/// It carries the call's request id (a pool's refusal is made without one).
fn never_sent(e: Error, ctx: &RequestContext) -> Error {
    let e = if e.reached_server().is_none() {
        e.with_reached_server(false)
    } else {
        e
    };
    if e.request_id().is_none() {
        e.with_request_id(ctx.request_id())
    } else {
        e
    }
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self::standard()
    }
}

/// The span of one call (`infermux.call`), with OpenTelemetry GenAI field names; `provider`
/// and `endpoint` name who serves it (a pool: its group).
pub fn call_span(
    request: &Request,
    ctx: &RequestContext,
    provider: &str,
    endpoint: &str,
    stream: bool,
) -> Span {
    tracing::info_span!(
        target: "infermux::call",
        "infermux.call",
        "gen_ai.operation.name" = operation_name(request.operation()),
        "gen_ai.provider.name" = provider,
        "gen_ai.request.model" = request.model(),
        "infermux.request_id" = %ctx.request_id(),
        "infermux.endpoint" = endpoint,
        "infermux.stream" = stream,
        "infermux.attempts" = Empty,
        "infermux.stop_reason" = Empty,
        "error.type" = Empty,
        "gen_ai.usage.input_tokens" = Empty,
        "gen_ai.usage.output_tokens" = Empty,
    )
}

/// Tells a retry policy, when dropped armed, that the retry it allowed never ran.
struct Abandoned<'a>(&'a dyn RetryPolicy);

impl Abandoned<'_> {
    fn disarm(self) {
        // holds a borrow only: forgetting it just skips the call
        std::mem::forget(self);
    }
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        self.0.on_abandoned();
    }
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
pub struct CallDeadline {
    /// The time the call has, `None` without a deadline.
    pub(crate) left: Option<Duration>,
    /// The deadline on tokio's clock, once it was needed.
    pub(crate) at: OnceLock<tokio::time::Instant>,
    /// The same deadline on the system clock, as computed with it.
    pub(crate) std: Option<Instant>,
}

impl CallDeadline {
    /// A deadline `left` from now (`None`: no deadline), for driving a [`Pool`] directly.
    pub fn after(left: Option<Duration>) -> Self {
        let std = left.and_then(|l| Instant::now().checked_add(l));
        CallDeadline {
            // a deadline too far to add to now is no deadline
            left: left.filter(|_| std.is_some()),
            at: OnceLock::new(),
            std,
        }
    }

    /// Whether the call had no time at all: its deadline had passed when it began, or its
    /// timeout is zero. Nothing may be sent then (no clock is read to say so).
    pub fn is_spent(&self) -> bool {
        self.left.is_some_and(|l| l.is_zero())
    }

    /// Time left, `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.at()
            .map(|d| d.saturating_duration_since(tokio::time::Instant::now()))
    }

    /// The deadline on tokio's clock (fixed the first time it is asked for).
    pub fn at(&self) -> Option<tokio::time::Instant> {
        let left = self.left?;
        Some(*self.at.get_or_init(|| {
            let now = tokio::time::Instant::now();
            // about 30 years: far enough, and addable to tokio's (possibly paused) clock
            now.checked_add(left)
                .unwrap_or_else(|| now + infermux_core::FAR_FUTURE)
        }))
    }

    /// The deadline as a std instant, for the attempt's context (the transport clamps its
    /// timers to it).
    pub(crate) fn std(&self) -> Option<Instant> {
        self.remaining().map(|left| Instant::now() + left)
    }

    /// Whether the deadline has passed (within 10 ms: the transport clamps its timers to the
    /// deadline a moment after it was computed).
    pub fn reached(&self) -> bool {
        self.remaining().is_some_and(|left| left <= DEADLINE_SLACK)
    }

    /// The breaker's view of a failed attempt: a timeout at the caller's deadline says
    /// nothing about the endpoint.
    pub(crate) fn outcome_of(&self, e: &Error) -> Outcome {
        if e.kind() == ErrorKind::Timeout && self.reached() {
            Outcome::Ignored
        } else {
            Outcome::of_error(e)
        }
    }

    /// Runs `fut` until the deadline: `None` when the deadline came first (`fut` is polled
    /// first, like tokio's `timeout_at`, unless the call had no time at all). The timer is created only once `fut` has to wait: a
    /// permit free at once, or an answer ready at once, costs no timer.
    pub async fn run<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        if self.left.is_none() {
            return Some(fut.await);
        }
        // no time at all: not even a permit free at once is taken (what it admits would be
        // sent past the deadline)
        if self.is_spent() {
            return None;
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
