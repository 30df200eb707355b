//! What the pool shows of itself: [`MemberInfo`], [`MemberStatus`] and its [`MemberState`],
//! the pool's [`PoolSnapshot`] counters. Keys appear by alias only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use infermux_core::EndpointId;

/// Who a member is: its endpoint, its key's alias and the model it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberInfo {
    /// The member's endpoint.
    pub endpoint: EndpointId,
    /// Its key's alias (`None`: the endpoint's configured key).
    pub key_alias: Option<Arc<str>>,
    /// The model id it asks for (`None`: the request's own).
    pub model: Option<Arc<str>>,
}

/// Why a key was taken out of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovalReason {
    /// The key was refused (401/403): out until the pool is reconfigured (or the error's own
    /// Retry-After).
    Auth,
    /// The key's quota is exhausted: out until the stated reset, or until reconfigured.
    Quota,
}

impl RemovalReason {
    /// `auth` or `quota`.
    pub fn as_str(self) -> &'static str {
        match self {
            RemovalReason::Auth => "auth",
            RemovalReason::Quota => "quota",
        }
    }
}

/// Whether a member can take attempts, and if not, why and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemberState {
    /// It can take attempts (when a permit is free and its limits allow).
    Eligible,
    /// Its key was throttled (429) and cools down until `until` — or the model it sends is
    /// held on its key until then (a 429 the provider scoped to the model).
    Cooling {
        /// When the cooldown ends.
        until: Instant,
    },
    /// Its key was taken out.
    Removed {
        /// Why.
        reason: RemovalReason,
        /// Until when (`None`: until the pool is reconfigured).
        until: Option<Instant>,
    },
    /// Its key's limits (its own RPM, or the provider's announced `remaining: 0`) hold it back
    /// until `until`.
    Limited {
        /// When one more request fits.
        until: Instant,
    },
    /// Its endpoint's breaker is open.
    Ejected,
    /// Its endpoint was taken out of service by its owner: until put back (a launched server
    /// starting or restarting; see [`MultiPool::take_out`](crate::MultiPool::take_out)) or
    /// for good (its server failed or stopped; [`MultiPool::retire`](crate::MultiPool::retire)).
    OutOfService,
}

impl MemberState {
    /// `eligible`, `cooling`, `removed`, `limited`, `ejected` or `out_of_service`.
    pub fn as_str(&self) -> &'static str {
        match self {
            MemberState::Eligible => "eligible",
            MemberState::Cooling { .. } => "cooling",
            MemberState::Removed { .. } => "removed",
            MemberState::Limited { .. } => "limited",
            MemberState::Ejected => "ejected",
            MemberState::OutOfService => "out_of_service",
        }
    }
}

/// One member's status now.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MemberStatus {
    /// The member's endpoint.
    pub endpoint: EndpointId,
    /// Its key's alias.
    pub key_alias: Option<Arc<str>>,
    /// Its state.
    pub state: MemberState,
    /// Attempts leased to it and not yet reported.
    pub in_flight: u32,
    /// Times it was picked.
    pub picks: u64,
    /// Its peak-EWMA latency (`None` before its first report).
    pub ewma_latency: Option<Duration>,
}

/// The pool's counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolSnapshot {
    /// Picks per member, in member order.
    pub picks: Vec<u64>,
    /// Keys put to cool down, or models held on a key (429).
    pub cooldowns: u64,
    /// Keys taken out (auth, quota).
    pub removals: u64,
    /// Admissions that had to wait in the pool's queue.
    pub waits: u64,
    /// Admissions refused because no member could take them before the deadline (or ever).
    pub unavailable: u64,
    /// Admissions refused because the queue was full.
    pub queue_full: u64,
    /// Attempts sent through an open breaker by the ejection cap.
    pub ejection_overrides: u64,
    /// Calls waiting now.
    pub queued: usize,
    /// Whether the shared state answers (`None`: the pool is not bound to shared state; see
    /// `MultiPool::with_shared`, feature `redis`).
    pub shared_state_up: Option<bool>,
    /// Decisions taken on local state alone because the shared state was down or slow.
    pub shared_state_fallbacks: u64,
    /// Decisions that took a reservation made ahead on the shared state, without a round
    /// trip (`SharedState::with_prefetch`).
    pub shared_state_ahead: u64,
}
