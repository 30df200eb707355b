//! Provider-neutral core of infermux: the types every layer speaks, the one [`Provider`] trait,
//! the opaque [`Error`], request and endpoint identities, per-endpoint counters, clocks and
//! secret keys.
//!
//! This crate has no HTTP and no async runtime dependency: providers (which know wire formats),
//! `infermux-http` (which knows reqwest) and the middleware crates all build on it.
//!
//! ```
//! use infermux_core::{ChatRequest, Message, Request, RequestContext, Priority};
//!
//! let request = Request::Chat(
//!     ChatRequest::new("smollm2", vec![Message::system("Be brief."), Message::user("Hi!")])
//!         .with_max_tokens(16),
//! );
//! let ctx = RequestContext::new().with_priority(Priority::High);
//! assert_eq!(request.operation(), infermux_core::Operation::Chat);
//! assert!(ctx.request_id().to_string().len() == 26);
//! ```
//!
//! # Crate features
//! This crate has no optional features.

mod clock;
mod context;
mod counters;
mod endpoint;
mod error;
mod id;
mod provider;
mod ratelimit;
mod route;
mod secret;
mod similarity;
mod stream;
mod tokens;
mod types;

/// The attribute [`Provider`] and the workspace's other async traits are written with:
/// `#[infermux_core::async_trait]` on an implementation, with the version they need.
pub use async_trait::async_trait;
pub use clock::{Clock, FAR_FUTURE, ManualClock, SystemClock};
pub use context::{AttemptKey, FirstByte, Idempotency, Priority, RequestContext, ResponseMeta};
pub use counters::{
    BreakerState, CounterSnapshot, EndpointCounters, InFlightGuard, LATENCY_BOUNDS_MICROS,
    LatencyHistogram, LatencySnapshot, RejectReason,
};
pub use endpoint::{
    EndpointConfig, Limits, Timeouts, is_hugging_face_url, server_root, url_without_userinfo,
};
pub use error::{Error, ErrorKind, Result, StopReason};
pub use id::{EndpointId, RequestId};
pub use provider::{Capabilities, EventStream, Operation, Provider};
pub use ratelimit::{RateLimitInfo, RateLimitWindow};
pub use route::{CacheHit, CacheTier, FallbackTaken, Served};
pub use secret::{ApiKey, shown_var_name};
pub use similarity::cosine_similarity;
pub use stream::{StreamAccumulator, StreamEvent, first_event, mark_signer};
pub use tokens::estimate_tokens;
pub use types::*;

// The README, compiled as doctests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
