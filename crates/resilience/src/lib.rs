//! Resilience for infermux providers: a priority admission queue with per-endpoint concurrency
//! permits ([`queue`]), retry with backoff, Retry-After and a budget ([`retry`]), a circuit
//! breaker with resilience4j semantics ([`breaker`]), a call deadline over all attempts, and the
//! stack that composes them around any [`Provider`](infermux_core::Provider): [`Resilient`].
//!
//! Each piece is usable alone; decisions on the hot path are synchronous; only waiting is async.
//! Counters of the endpoint ([`infermux_core::EndpointCounters`]) are filled at every layer
//! and render as Prometheus text with [`render_prometheus`]. A stream is retried until its
//! first content event ([`first_content`], [`is_content`]). Calls and attempts are `tracing`
//! spans (`infermux.call`, `infermux.attempt`) with OpenTelemetry GenAI field names.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use infermux_core::{ChatRequest, EndpointConfig, Message, Provider, Request, RequestContext};
//! use infermux_openai_compat::OpenAiCompat;
//! use infermux_resilience::{ResilienceConfig, Resilient};
//! use infermux_testkit::{FaultPlan, Simulator};
//! use std::sync::Arc;
//!
//! let sim = Simulator::start(FaultPlan::none()).await.unwrap();
//! let provider = OpenAiCompat::new(EndpointConfig::new("sim", format!("{}/v1", sim.url())).unwrap()).unwrap();
//! let stack = Resilient::new(Arc::new(provider), ResilienceConfig::standard()).unwrap();
//! let req = Request::Chat(ChatRequest::new("m", vec![Message::user("hello")]));
//! stack.call(&req, &RequestContext::new()).await.unwrap();
//! println!("{}", infermux_resilience::render_prometheus(&[(stack.endpoint().clone(), stack.counters().snapshot())]));
//! # }
//! ```
//!
//! # Crate features
//! - `backoff`: `adapters::backoff`, a `backoff::ExponentialBackoff` as the delay schedule
//!   of [`retry::StandardRetry`] (our caps, floors and Retry-After stay in force). Off by
//!   default: `backoff` 0.4 is unmaintained (RUSTSEC-2025-0012).
//! - `failsafe`: `adapters::failsafe`, a `failsafe` state machine as the breaker, with our
//!   half-open probe cap and ignored outcomes. Off by default.
//! - `tower`: each middleware also as a `tower::Layer` (the `tower` module).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod adapters;
mod attempt;
pub mod breaker;
mod content;
mod metrics;
mod policy;
mod pool;
pub mod queue;
pub mod retry;
mod stack;
#[cfg(feature = "tower")]
pub mod tower;

pub use attempt::{AttemptExecutor, Refusal};
pub use content::{first_content, is_content};
pub use metrics::render_prometheus;
pub use policy::{CallDeadline, CallPolicy, Called, Op, call_span};
pub use pool::{Admit, AttemptReport, Grant, Lease, Pool, StreamHold};
pub use stack::{ResilienceConfig, Resilient};

// The README, compiled as doctests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
