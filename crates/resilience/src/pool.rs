//! [`Pool`]: the seam between the [call policy](crate::CallPolicy) and whoever answers "who
//! takes this attempt" — one endpoint ([`AttemptExecutor`] is a pool of one) or the multiplex
//! crate's pools of (endpoint, key) members.
//!
//! For each attempt the call policy asks the pool to [admit](Pool::admit) it: the pool waits
//! (priority admission, within the call deadline) until some member can take it, picks one by
//! its strategy and hands back a [`Lease`] — the member's executor with a [`Grant`] (its permit
//! and breaker ticket) already taken, the key the attempt sends and the model id it asks for.
//! After the attempt the policy [reports](Pool::report) its outcome, from which the pool learns
//! cooldowns, removals, latencies and usage.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use infermux_core::{
    AttemptKey, EndpointCounters, Error, RateLimitInfo, Request, RequestContext, Result, Usage,
};

use crate::attempt::AttemptExecutor;
use crate::breaker::{Breaker, Ticket};
use crate::policy::CallDeadline;
use crate::queue::BorrowedPermit;

/// One attempt's right to run on one executor: its concurrency permit and, when the endpoint
/// has a breaker, the breaker's ticket. Dropping it unused gives both back (the ticket as an
/// ignored outcome, so a half-open probe slot is never lost).
pub struct Grant<'a> {
    // (fields drop in this order: the probe slot is free before the permit's release wakes
    // a waiter, which would otherwise find the breaker's probes still out)
    pub(crate) ticket: Option<ArmedTicket<'a>>,
    pub(crate) permit: BorrowedPermit<'a>,
}

/// A breaker ticket that reports [`Outcome::Ignored`](crate::breaker::Outcome::Ignored) when
/// dropped before it is [disarmed](ArmedTicket::disarm) to report an outcome.
pub(crate) struct ArmedTicket<'a> {
    breaker: &'a dyn Breaker,
    ticket: Ticket,
}

impl<'a> ArmedTicket<'a> {
    pub(crate) fn new(breaker: &'a dyn Breaker, ticket: Ticket) -> Self {
        ArmedTicket { breaker, ticket }
    }
    /// The ticket, now the caller's to report.
    pub(crate) fn disarm(self) -> Ticket {
        let t = self.ticket;
        // holds a borrow and a `Copy` ticket: forgetting it only skips the report
        std::mem::forget(self);
        t
    }
}

impl Drop for ArmedTicket<'_> {
    fn drop(&mut self) {
        self.breaker.on_outcome(
            self.ticket,
            crate::breaker::Outcome::Ignored,
            Duration::ZERO,
        );
    }
}

impl Grant<'_> {
    /// Whether the attempt waited in a queue for it.
    pub fn waited(&self) -> bool {
        self.permit.waited
    }
    /// Marks the grant as one the caller waited for (a pool's own queue).
    pub fn set_waited(&mut self) {
        self.permit.waited = true;
    }
    /// Whether the breaker admitted the attempt as a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.ticket.as_ref().is_some_and(|t| t.ticket.is_probe())
    }
}

impl fmt::Debug for Grant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("waited", &self.permit.waited)
            .field("ticket", &self.ticket.as_ref().map(|t| t.ticket))
            .finish()
    }
}

/// Something a pool holds for as long as a stream it leased lives ([`Pool::hold_stream`]):
/// dropping it releases what it holds.
pub struct StreamHold {
    _release: Box<dyn Send + Sync>,
    settle: Option<Settle>,
}

/// What settles a stream's reservation with its usage ([`StreamHold::with_settle`]).
type Settle = Box<dyn FnOnce(&Usage) + Send + Sync>;

impl StreamHold {
    /// A hold whose `release` runs (through its `Drop`) when the stream ends or is dropped.
    pub fn new(release: impl Send + Sync + 'static) -> Self {
        StreamHold {
            _release: Box::new(release),
            settle: None,
        }
    }

    /// Also runs `settle` with the stream's usage when it ends with its final event (not when
    /// it fails or is dropped): what a pool reserved for the attempt is settled with what it
    /// used, as a plain answer's report settles it.
    pub fn with_settle(mut self, settle: impl FnOnce(&Usage) + Send + Sync + 'static) -> Self {
        self.settle = Some(Box::new(settle));
        self
    }

    /// Settles with `usage` (once; later calls do nothing).
    pub fn settle(&mut self, usage: &Usage) {
        if let Some(f) = self.settle.take() {
            f(usage);
        }
    }
}

impl fmt::Debug for StreamHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamHold")
    }
}

/// Who takes one attempt: the member's executor with its grant, the key and the model id.
#[derive(Debug)]
#[non_exhaustive]
pub struct Lease<'a> {
    /// The endpoint's executor.
    pub executor: &'a AttemptExecutor,
    /// The permit and breaker ticket, already taken from `executor`.
    pub grant: Grant<'a>,
    /// The member's index in its pool (reported back in [`AttemptReport::member`]).
    pub member: u32,
    /// The key the attempt sends (`None`: the endpoint's configured key, if any).
    pub key: Option<AttemptKey>,
    /// The model id the attempt asks for (`None`: the request's own).
    pub model: Option<&'a str>,
    /// Tokens reserved against the member's limits for this attempt.
    pub reserved: u64,
}

impl<'a> Lease<'a> {
    /// A lease of `executor` for member `member`, sending the endpoint's own key and model.
    pub fn new(executor: &'a AttemptExecutor, grant: Grant<'a>, member: u32) -> Self {
        Lease {
            executor,
            grant,
            member,
            key: None,
            model: None,
            reserved: 0,
        }
    }
    /// Sends `key` instead of the endpoint's configured one.
    pub fn with_key(mut self, key: Option<AttemptKey>) -> Self {
        self.key = key;
        self
    }
    /// Asks for `model` instead of the request's model.
    pub fn with_model(mut self, model: Option<&'a str>) -> Self {
        self.model = model;
        self
    }
    /// Records the tokens reserved for the attempt.
    pub fn with_reserved(mut self, tokens: u64) -> Self {
        self.reserved = tokens;
        self
    }
}

/// What a pool is asked to admit.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Admit<'a> {
    /// The call's context (priority, request id, tenant).
    pub ctx: &'a RequestContext,
    /// The request, for operations of the [`Request`] enum (a pool with token limits
    /// estimates it); `None` for other operations.
    pub request: Option<&'a Request>,
    /// The token estimate of an operation outside the enum.
    pub estimate: u64,
    /// The call deadline: a pool waits no longer.
    pub deadline: &'a CallDeadline,
    /// Members whose attempts in this call failed, most recent last: a pool avoids them while
    /// another member is eligible.
    pub tried: &'a [u32],
}

/// How one attempt ended, as a pool learns it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct AttemptReport<'a> {
    /// The member that ran it.
    pub member: u32,
    /// The usage on success (when the answer reported it), or the error.
    pub result: std::result::Result<Option<&'a Usage>, &'a Error>,
    /// From the grant to the end (a stream: to its first content event).
    pub latency: Duration,
    /// The rate-limit headers of the response, success included, when the pool asked for
    /// them ([`Pool::wants_meta`]).
    pub rate_limits: Option<&'a RateLimitInfo>,
    /// The tokens the lease reserved.
    pub reserved: u64,
    /// The model the attempt asked for (its member's, else the request's), when its
    /// operation names one: where a limit the provider scoped to the model applies.
    pub model: Option<&'a str>,
}

/// Answers "who takes this attempt". Implemented by [`AttemptExecutor`] (a pool of one) and by
/// the multiplex crate's pools.
pub trait Pool: Send + Sync {
    /// Waits (within the deadline, at the context's priority) until a member can take the
    /// attempt, and leases it. A refusal — queue full, every member cooling or open past the
    /// deadline — is an error the call policy may retry like any other.
    ///
    /// The attempt of every lease is [reported](Pool::report) exactly once, including one the
    /// caller gave up on ([`CallPolicy`](crate::CallPolicy) does both); a pool may count a
    /// lease dropped unreported as still in flight.
    fn admit<'a>(&'a self, req: Admit<'_>) -> impl Future<Output = Result<Lease<'a>>> + Send;

    /// Learns how an attempt ended (cooldowns, removals, latency, usage). Synchronous.
    fn report(&self, report: &AttemptReport<'_>) {
        let _ = report;
    }

    /// A stream opened on `member` and is handed to the caller (asked just before its attempt
    /// is [reported](Pool::report) at its first content, so the member never looks idle in
    /// between): what the pool wants held while the stream lives — say, the member counted
    /// in flight for load-based picks — released when the stream ends or is dropped. `None`
    /// (the default): nothing.
    fn hold_stream(&self, member: u32) -> Option<StreamHold> {
        let _ = member;
        None
    }

    /// [`Pool::hold_stream`] for an attempt that reserved `reserved` tokens (what
    /// [`Lease::reserved`] said): the hold may settle them with the stream's usage
    /// ([`StreamHold::with_settle`]). The default: `hold_stream(member)`.
    fn hold_stream_reserved(&self, member: u32, reserved: u64) -> Option<StreamHold> {
        let _ = reserved;
        self.hold_stream(member)
    }

    /// Whether attempts should record their responses' rate-limit headers for
    /// [`Pool::report`] (costs a small allocation per attempt).
    fn wants_meta(&self) -> bool {
        false
    }

    /// Whether a member other than those in `tried` (members that failed in this call) could
    /// take the next attempt now, so a retry policy may fail over at once instead of backing
    /// off (see [`Attempt::failover`](crate::retry::Attempt::failover)).
    fn can_fail_over(&self, tried: &[u32]) -> bool {
        let _ = tried;
        false
    }

    /// The counters a retry after a refused admission is counted on (a pool of one: its
    /// endpoint's).
    fn retry_counters(&self) -> Option<&EndpointCounters> {
        None
    }
}
