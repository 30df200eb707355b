//! [`RequestContext`]: what travels with a request through every layer.

use std::any::Any;
use std::fmt;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::id::{EndpointId, RequestId};
use crate::ratelimit::RateLimitInfo;
use crate::secret::ApiKey;

/// The key one attempt sends, chosen per attempt by the pool (the multiplex layer), bound to
/// the endpoint it belongs to: the transport refuses to send it anywhere else. `Debug` names
/// the alias, never the key.
///
/// ```
/// use infermux_core::{ApiKey, AttemptKey, EndpointId};
/// let k = AttemptKey::new(EndpointId::new("openai"), "team-a", ApiKey::new("sk-secret"));
/// assert_eq!(k.alias(), "team-a");
/// assert!(!format!("{k:?}").contains("sk-secret"));
/// ```
#[derive(Clone)]
pub struct AttemptKey(Arc<KeyInner>);

struct KeyInner {
    endpoint: EndpointId,
    alias: Arc<str>,
    key: ApiKey,
    /// What the transport derives from the key once (the header it is sent in, its searcher
    /// for scrubbing), shared by every clone.
    derived: OnceLock<Box<dyn Any + Send + Sync + UnwindSafe + RefUnwindSafe>>,
}

impl AttemptKey {
    /// `key`, named `alias`, for `endpoint` only.
    pub fn new(endpoint: EndpointId, alias: impl AsRef<str>, key: ApiKey) -> Self {
        AttemptKey(Arc::new(KeyInner {
            endpoint,
            alias: Arc::from(alias.as_ref()),
            key,
            derived: OnceLock::new(),
        }))
    }
    /// The endpoint the key belongs to.
    pub fn endpoint(&self) -> &EndpointId {
        &self.0.endpoint
    }
    /// The key's alias (safe to log and export).
    pub fn alias(&self) -> &str {
        &self.0.alias
    }
    /// The key itself (only the transport puts it on the wire).
    pub fn key(&self) -> &ApiKey {
        &self.0.key
    }
    /// What the transport derives from the key (made by `make` the first time, then shared by
    /// every clone of this key): `None` when a value of another type was derived first.
    ///
    /// ```
    /// use infermux_core::{ApiKey, AttemptKey, EndpointId};
    /// let k = AttemptKey::new(EndpointId::new("openai"), "team-a", ApiKey::new("sk-secret"));
    /// let len = |key: &ApiKey| key.expose().len();
    /// assert_eq!(k.clone().derived(len), Some(&9));
    /// assert_eq!(k.derived(|_| 0usize), Some(&9)); // made once
    /// assert_eq!(k.derived(|_| "other type"), None);
    /// // still safe to hold across `catch_unwind`
    /// fn unwind_safe<T: std::panic::UnwindSafe + std::panic::RefUnwindSafe>(_: &T) {}
    /// unwind_safe(&k);
    /// ```
    pub fn derived<T: Any + Send + Sync + UnwindSafe + RefUnwindSafe>(
        &self,
        make: impl FnOnce(&ApiKey) -> T,
    ) -> Option<&T> {
        let derived: &(dyn Any + Send + Sync) =
            &**self.0.derived.get_or_init(|| Box::new(make(&self.0.key)));
        derived.downcast_ref::<T>()
    }
}

impl fmt::Debug for AttemptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttemptKey")
            .field("endpoint", &self.0.endpoint)
            .field("alias", &self.0.alias)
            .finish_non_exhaustive()
    }
}

/// What the transport learned from one attempt's response beyond its body, success included:
/// the rate-limit headers, for the pool's limits. One cell per attempt, shared by the clones of
/// its context.
#[derive(Debug, Default)]
pub struct ResponseMeta {
    rate_limits: OnceLock<RateLimitInfo>,
}

impl ResponseMeta {
    /// An empty cell.
    pub fn new() -> Self {
        Self::default()
    }
    /// Records the response's rate-limit headers (the first record wins).
    pub fn set_rate_limits(&self, info: RateLimitInfo) {
        let _ = self.rate_limits.set(info);
    }
    /// The rate-limit headers the response carried, if recorded.
    pub fn rate_limits(&self) -> Option<&RateLimitInfo> {
        self.rate_limits.get()
    }
}

/// Admission priority in a pool's queue.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Priority {
    /// Served last; ageing keeps it from starving.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Served first.
    High,
}

/// Whether a call may be sent twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Idempotency {
    /// Safe to repeat (inference, embeddings, reads): the default.
    #[default]
    Idempotent,
    /// Not safe to repeat (file upload, batch creation): retried only when it is known not to
    /// have reached the server.
    NonIdempotent,
}

/// A per-attempt mark of when the response's first byte (its headers) arrived.
///
/// The layer that judges slowness (the resilience stack) puts a fresh one in each attempt's
/// context ([`RequestContext::with_first_byte`]); the transport calls
/// [`RequestContext::mark_first_byte`] when the headers arrive. The first mark wins; it reads
/// the clock the judging layer gave, so tests with a manual clock stay deterministic. Cheap:
/// one `Arc`, one `OnceLock`.
///
/// ```
/// use infermux_core::{Clock, FirstByte, ManualClock, RequestContext};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let t0 = clock.now();
/// let mark = FirstByte::new(Arc::new(clock.clone()));
/// let ctx = RequestContext::new().with_first_byte(mark.clone());
/// clock.advance(Duration::from_millis(40));
/// ctx.mark_first_byte(); // the transport: headers arrived
/// clock.advance(Duration::from_secs(60));
/// ctx.mark_first_byte(); // later marks change nothing
/// assert_eq!(mark.at().map(|t| t - t0), Some(Duration::from_millis(40)));
/// ```
#[derive(Clone)]
pub struct FirstByte {
    /// Always `Some` but while dropping (a cell nobody else holds is kept for reuse).
    inner: Option<Arc<FirstByteCell>>,
}

struct FirstByteCell {
    /// `None`: the system clock (no shared clock to count references to).
    clock: Option<Arc<dyn Clock>>,
    at: OnceLock<Instant>,
}

thread_local! {
    /// One unmarked system-clock cell per thread, left by the last [`FirstByte`] dropped here
    /// that nobody else held: an attempt's mark then costs no allocation.
    static SPARE_CELL: std::cell::Cell<Option<Arc<FirstByteCell>>> =
        const { std::cell::Cell::new(None) };
}

impl FirstByte {
    /// An unmarked cell reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        FirstByte {
            inner: Some(Arc::new(FirstByteCell {
                clock: Some(clock),
                at: OnceLock::new(),
            })),
        }
    }
    /// An unmarked cell reading the system's monotonic clock ([`Instant::now`]); the same as
    /// `FirstByte::new(Arc::new(SystemClock))` without the clock's reference count, and
    /// without an allocation when this thread dropped such a cell before.
    ///
    /// [`SystemClock`]: crate::SystemClock
    pub fn system() -> Self {
        let spare = SPARE_CELL.try_with(std::cell::Cell::take).ok().flatten();
        FirstByte {
            inner: Some(spare.unwrap_or_else(|| {
                Arc::new(FirstByteCell {
                    clock: None,
                    at: OnceLock::new(),
                })
            })),
        }
    }
    /// Marks now as the first byte's arrival, unless already marked.
    pub fn mark(&self) {
        if let Some(cell) = &self.inner {
            let _ = cell.at.get_or_init(|| match &cell.clock {
                Some(clock) => clock.now(),
                None => Instant::now(),
            });
        }
    }
    /// When the first byte arrived, if it was marked.
    pub fn at(&self) -> Option<Instant> {
        self.inner.as_ref().and_then(|c| c.at.get().copied())
    }
}

impl Drop for FirstByte {
    fn drop(&mut self) {
        let Some(mut cell) = self.inner.take() else {
            return;
        };
        // the last holder of a system-clock cell keeps it, unmarked, for this thread's next
        if let Some(c) = Arc::get_mut(&mut cell)
            && c.clock.is_none()
        {
            c.at = OnceLock::new();
            let _ = SPARE_CELL.try_with(|spare| spare.set(Some(cell)));
        }
    }
}

impl fmt::Debug for FirstByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FirstByte").field("at", &self.at()).finish()
    }
}

/// The request id, priority, deadline, idempotency, tenant and attempt number of one call.
///
/// ```
/// use infermux_core::{Priority, RequestContext};
/// use std::time::Duration;
/// let ctx = RequestContext::new()
///     .with_priority(Priority::Low)
///     .with_timeout(Duration::from_secs(30))
///     .with_tenant("team-a");
/// assert_eq!(ctx.priority(), Priority::Low);
/// assert!(ctx.remaining().unwrap() <= Duration::from_secs(30));
/// assert_eq!(ctx.attempt(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct RequestContext {
    request_id: RequestId,
    priority: Priority,
    deadline: Option<Instant>,
    idempotency: Idempotency,
    tenant: Option<Arc<str>>,
    attempt: u32,
    first_byte: Option<FirstByte>,
    key: Option<AttemptKey>,
    meta: Option<Arc<ResponseMeta>>,
}

impl RequestContext {
    /// A context with a fresh request id, normal priority, no deadline, first attempt.
    pub fn new() -> Self {
        RequestContext {
            request_id: RequestId::new(),
            priority: Priority::Normal,
            deadline: None,
            idempotency: Idempotency::Idempotent,
            tenant: None,
            attempt: 1,
            first_byte: None,
            key: None,
            meta: None,
        }
    }

    /// Uses a given request id (e.g. one received from upstream).
    pub fn with_request_id(mut self, id: RequestId) -> Self {
        self.request_id = id;
        self
    }
    /// Sets the priority.
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
    /// Sets an absolute deadline over all attempts.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }
    /// Sets the deadline `timeout` from now.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        // a timeout too long to add to now is no deadline at all (never a panic)
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.with_deadline(deadline),
            None => self,
        }
    }
    /// Sets the idempotency.
    pub fn with_idempotency(mut self, idempotency: Idempotency) -> Self {
        self.idempotency = idempotency;
        self
    }
    /// Sets the tenant (cache namespaces, quotas).
    pub fn with_tenant(mut self, tenant: impl AsRef<str>) -> Self {
        self.tenant = Some(Arc::from(tenant.as_ref()));
        self
    }
    /// The same context for attempt number `attempt` (1-based).
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt.max(1);
        self
    }
    /// Attaches the cell [`RequestContext::mark_first_byte`] marks (one per attempt).
    pub fn with_first_byte(mut self, first_byte: FirstByte) -> Self {
        self.first_byte = Some(first_byte);
        self
    }

    /// Marks the arrival of the response's first byte (its headers), for the layer that
    /// judges slow calls by time to first byte. The transport calls this; without a
    /// [`FirstByte`] attached it does nothing.
    pub fn mark_first_byte(&self) {
        if let Some(f) = &self.first_byte {
            f.mark();
        }
    }
    /// The key this attempt sends instead of its endpoint's configured one (set by the pool).
    pub fn with_key(mut self, key: AttemptKey) -> Self {
        self.key = Some(key);
        self
    }
    /// The attempt's key chosen by the pool, if any.
    pub fn key(&self) -> Option<&AttemptKey> {
        self.key.as_ref()
    }
    /// Attaches the cell the transport records the response's rate-limit headers in.
    pub fn with_meta(mut self, meta: Arc<ResponseMeta>) -> Self {
        self.meta = Some(meta);
        self
    }
    /// The attached response cell, if any.
    pub fn meta(&self) -> Option<&ResponseMeta> {
        self.meta.as_deref()
    }
    /// Records the response's rate-limit headers in the attached cell (nothing without one).
    pub fn record_rate_limits(&self, info: &RateLimitInfo) {
        if let Some(m) = &self.meta
            && !info.is_empty()
        {
            m.set_rate_limits(*info);
        }
    }
    /// The attached first-byte cell, if any.
    pub fn first_byte(&self) -> Option<&FirstByte> {
        self.first_byte.as_ref()
    }

    /// The request id.
    pub fn request_id(&self) -> RequestId {
        self.request_id
    }
    /// The priority.
    pub fn priority(&self) -> Priority {
        self.priority
    }
    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
    /// Time left before the deadline (`Some(ZERO)` once passed), `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
    /// The idempotency.
    pub fn idempotency(&self) -> Idempotency {
        self.idempotency
    }
    /// The tenant, if any.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }
    /// The attempt number, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

impl Default for RequestContext {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell_addr(f: &FirstByte) -> usize {
        f.inner.as_ref().map_or(0, |c| Arc::as_ptr(c) as usize)
    }

    #[test]
    fn a_dropped_system_mark_is_reused_unmarked_and_a_shared_one_is_not() {
        let first = FirstByte::system();
        first.mark();
        assert!(first.at().is_some());
        let addr = cell_addr(&first);
        drop(first);
        let second = FirstByte::system();
        assert_eq!(cell_addr(&second), addr, "the same cell, no new allocation");
        assert_eq!(second.at(), None, "reused unmarked");

        // a cell someone still holds (the context's clone) is never handed out again
        let held = second.clone();
        drop(second);
        held.mark();
        let third = FirstByte::system();
        assert_ne!(cell_addr(&third), addr);
        assert!(held.at().is_some(), "the holder's mark is untouched");
        assert_eq!(third.at(), None);
    }
}
