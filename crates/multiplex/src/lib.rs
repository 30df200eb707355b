//! Key and endpoint multiplexing for infermux: a [`MultiPool`] of (endpoint, key) members
//! behind the resilience crate's [`Pool`](infermux_resilience::Pool) seam, so a
//! [`CallPolicy`](infermux_resilience::CallPolicy) retries across keys and endpoints.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use infermux_core::{ApiKey, ChatRequest, EndpointConfig, Message, Request, RequestContext};
//! use infermux_multiplex::{MemberSpec, MultiPool, PoolConfig, Strategy};
//! use infermux_openai_compat::OpenAiCompat;
//! use infermux_resilience::{AttemptExecutor, CallPolicy, queue::QueueConfig};
//! use infermux_testkit::{FaultPlan, Simulator};
//! use std::sync::Arc;
//!
//! let sim = Simulator::start(FaultPlan::none()).await.unwrap();
//! let provider = OpenAiCompat::new(EndpointConfig::new("sim", format!("{}/v1", sim.url())).unwrap()).unwrap();
//! let endpoint = Arc::new(AttemptExecutor::new(Arc::new(provider), QueueConfig::standard(), None).unwrap());
//! let members = vec![
//!     MemberSpec::new(0).with_key("team-a", ApiKey::new("sk-a")).with_rpm(600),
//!     MemberSpec::new(0).with_key("team-b", ApiKey::new("sk-b")).with_weight(2),
//! ];
//! let pool = MultiPool::new(vec![endpoint], members, PoolConfig::new(Strategy::Weighted)).unwrap();
//! let req = Request::Chat(ChatRequest::new("m", vec![Message::user("hi")]));
//! let called = CallPolicy::standard().call(&pool, &req, &RequestContext::new()).await.unwrap();
//! assert_eq!(pool.counters().picks.iter().sum::<u64>(), 1);
//! println!("answered by {:?}", pool.member(called.member));
//! # }
//! ```
//!
//! # Members and eligibility
//! A member is an endpoint's [`AttemptExecutor`](infermux_resilience::AttemptExecutor), the
//! key it sends (or the endpoint's own), a weight, the model id it asks for and its key's
//! limits. It is *eligible* when its key is not cooling, not removed and not limited, the
//! model it would send (its own, else the request's) is not held on its key, its endpoint's
//! breaker admits and a permit of the endpoint is free. The scan over the members (at most
//! [`MAX_MEMBERS`]) reads atomics only (and a key's list of held models while one is held); the strategy ([`Strategy`]) picks among the
//! eligible members, preferring those the call has not already failed on
//! ([`Admit::tried`](infermux_resilience::Admit::tried)).
//!
//! # What attempts teach the pool
//! - 429 (`RateLimited`): the key cools down for the error's `Retry-After`, else its
//!   rate-limit reset (the spent windows' latest, else any window's latest), else 1 s; a new
//!   cooldown extends a running one, never shortens it.
//!   A 429 the provider scoped to the model
//!   ([`Error::is_model_scoped`](infermux_core::Error::is_model_scoped): Gemini's per-model
//!   quotas, OpenAI's and Groq's "Rate limit reached for gpt-4o …") holds that model on the
//!   key instead, for as long: every member of every pool on the key (one [`KeyRegistry`])
//!   that would send that model — its own, or the request's when it has none — waits; the
//!   key's other models go on. (The hold is not shared through Redis.)
//! - 401/403 (`Auth`): the key is removed until the pool is reconfigured (or, when the
//!   error states a Retry-After, until then); a pool built on the same [`KeyRegistry`] is
//!   not a reconfiguration: it keeps the removal.
//! - `QuotaExceeded`: as a 401, the key is removed until reconfigured (or until the error's
//!   own Retry-After; a rate-limit reset riding on it is the request window's, not the quota's).
//! - 5xx, connect errors and timeouts are left to the endpoint's breaker.
//! - A success whose rate-limit headers say `remaining: 0` limits the key until the reset,
//!   whether or not the pool has limits of its own: the key's next request is not spent on a
//!   sure 429.
//!
//! A call policy that waits out a 429's `Retry-After` before its next attempt holds the call
//! back while other keys are idle: use [`KeyRetry`] around it, which retries key-scoped
//! errors at once and lets the pool route around the key (and wait, when no key is left).
//!
//! # Limits
//! Per-key RPM and TPM limits are [GCRA](gcra::Gcra) limiters (one atomic each). A limit of
//! `L` a minute is a bucket of capacity `B = L·p/100` (`p` =
//! [`PoolConfig::limit_burst_percent`], default 50; `1 ≤ B ≤ L−1`) refilling at `L − B` a
//! minute, which guarantees: **in any minute-long window (sliding, half-open) the pool
//! reserves at most `L`** on the key, so the real usage of the requests it admits in that
//! window exceeds `L` only by what they used beyond their estimates. The price is a sustained
//! rate of `L − B` a minute and a largest single reservation of `B`; the textbook GCRA
//! (`B = L`, refill `L`) would sustain `L` but admit up to `2L` in a sliding minute.
//!
//! An attempt reserves one request and its token estimate (the request's
//! [`estimate_tokens`](infermux_core::Request::estimate_tokens) with
//! [`PoolConfig::default_output_tokens`], or the operation's stated estimate) before it is
//! sent; its report gives back what it did not use (all of it when it failed) and charges what
//! it used beyond — a stream's, when it ends with its final event and its usage is known
//! (at most `B` plus a minute's refill at once, locally and in shared state: a server's absurd
//! token count holds the key for a couple of minutes, not for good). A cancelled attempt, and
//! a stream that fails or is dropped after it opened, keep their reservation. A request whose
//! estimate exceeds every member's `B` fails at once with `InvalidRequest`.
//!
//! What is given back is reserved again, so the precise bound on a window's real usage is `L`
//! plus what its requests used beyond their estimates plus the unused estimates given back in
//! it by calls admitted before it (`tests/it/tpm.rs` audits exactly this, and fails on the
//! textbook GCRA). Under 64 concurrent calls against 100 TPM with estimates up to twice the
//! real usage, twelve seeded runs never held a minute over the limit by more than one
//! request's estimate error (in fact none went over).
//!
//! # Pools sharing keys
//! Pools built with one [`KeyRegistry`] ([`MultiPool::with_registry`]: the model groups of one
//! client) hold each key — endpoint and alias — once: what one pool learns of a key (a 429's
//! cooldown, a 401's removal, a spent window) holds in every pool sending it, and its RPM/TPM
//! limits count the requests of all of them, as the provider counts them; a pool built later
//! sees the holds already in place. Every pool must state a key's limits (and, for a key with
//! limits, the burst share) identically.
//!
//! # Admission
//! When no member can take the call, it waits in the pool's priority queue (high, normal, low;
//! FIFO within a level; a waiter rises a level every [`PoolConfig::age_step`]) — woken when a
//! member's endpoint releases a permit or tokens are given back, and by one timer at the
//! earliest time a cooldown, limit or breaker ends (a breaker that refuses without saying
//! until when — its half-open probes out, or an adapter's open breaker — is waited for like a
//! permit, and looked at again every 50 ms if none of its endpoint's permits is released
//! before). The call fails at once with
//! [`QueueFull`](infermux_core::ErrorKind::QueueFull) when [`PoolConfig::max_queued`] already
//! wait, and with [`Unavailable`](infermux_core::ErrorKind::Unavailable) when the earliest
//! member returns after the call deadline (its `retry_after` is the time until then and its
//! message names the member) or never (every key removed: no `retry_after`). A waiter whose
//! future is dropped leaves the queue at once. A waiter woken in its turn whose future is not
//! polled (parked in a `select!`, on a blocked runtime) is passed over once it has held its
//! turn for 50 ms: the waiter behind it looks again then and takes what freed. Drop a call you
//! stop polling rather than park it.
//!
//! # Ejection cap
//! Below a cap of 100 %, the pool never lets transient errors eject every member: when more
//! than [`PoolConfig::max_ejection_percent`] of the members have open breakers and no other member
//! can take the call, the attempt goes through the open breaker that reopens soonest (its
//! outcome is not recorded on the breaker), counted in
//! [`PoolSnapshot::ejection_overrides`].
//!
//! # Crate features
//! - `redis`: state shared across processes through Redis (or Valkey): `SharedState` and
//!   `MultiPool::with_shared`, so several processes hold one key's limits, cooldowns and
//!   removals together (one script, one round trip, per decision; a local fallback when
//!   Redis is down, counted in [`PoolSnapshot::shared_state_fallbacks`]).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
pub mod gcra;
mod member;
mod pool;
mod queue;
mod registry;
#[cfg(feature = "redis")]
mod shared;
mod status;

pub use config::{MemberSpec, PoolConfig, Strategy};
/// The retry policy for pools of keys, from the resilience crate (where retry logic lives).
pub use infermux_resilience::retry::KeyRetry;
pub use pool::{MAX_MEMBERS, MultiPool};
pub use registry::KeyRegistry;
#[cfg(feature = "redis")]
pub use shared::SharedState;
pub use status::{MemberInfo, MemberState, MemberStatus, PoolSnapshot, RemovalReason};

// The README, compiled as doctests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
