//! Test support for infermux providers: the cassette replay server and record mode, a
//! fault-injecting simulator, and the conformance suite every provider runs.
//!
//! - [`ReplayServer`] serves a vcrpy cassette on 127.0.0.1: it matches method, path and query
//!   (credentials removed) in recorded order, serves raw bodies byte for byte (`parsed_body`
//!   re-serialised), recomputes framing headers, answers an unmatched request with status
//!   [`replay::UNMATCHED_STATUS`] and reports it, and [`ReplayServer::verify`] checks every
//!   interaction was used.
//! - [`RecordingProxy`] forwards to a real server and writes what passed as a cassette.
//! - [`Simulator`] is an OpenAI-compatible server with seeded or scripted faults.
//! - [`conformance::run`] checks chat, streaming, tools, embeddings and models as a provider's
//!   capabilities say.
//! - [`oracle`] reads a recorded response body, independently of any provider, into the answer
//!   or error kind it means, one module per wire format, and compares a decoded answer with it.
//! - [`spec::check`] validates request bodies against OpenAPI schemas.
//! - [`server_url`] reads a live server's address from the environment, skipping (or failing
//!   under `INFERMUX_REQUIRE_SERVERS=1`) when it is absent; [`shared_fixture`] finds the shared
//!   recorded traffic the same way (`INFERMUX_REQUIRE_FIXTURES=1`); [`skip()`](fn@skip) makes every skip
//!   visible (see the [`skip`](mod@skip) module).
//!
//! This crate depends on `infermux-core` and `infermux-http` only; providers take it as a
//! path-only dev-dependency.
//!
//! # Crate features
//! This crate has no optional features.

mod capture;
pub mod cassette;
pub mod conformance;
pub mod helpers;
pub mod oracle;
mod record;
pub mod replay;
mod rng;
mod server;
mod sim;
pub mod skip;
pub mod spec;

pub use capture::{Scripted, Seen, capture};
pub use cassette::{Body, Cassette, Interaction, RecordedRequest, RecordedResponse};
pub use conformance::{SuiteConfig, SuiteReport};
pub use record::RecordingProxy;
pub use replay::{ReplayOptions, ReplayServer};
pub use rng::SplitMix64;
pub use server::{Chunk, IncomingRequest, Reply};
pub use sim::{
    Fault, FaultPlan, KeyBehaviour, RateLimitHeaders, SimRequest, SimUsage, SimWindow, Simulator,
    Until,
};
pub use skip::{Need, record_mode, shared_dir, shared_fixture, skip};

/// The address of a live server from environment variable `var`.
///
/// Without it, the test is skipped visibly ([`skip()`](fn@skip)) and this returns `None`; when
/// `INFERMUX_REQUIRE_SERVERS=1` is set (as `.ci/run` does), a missing server fails the test.
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
        Some(url) => Some(url.trim().trim_end_matches('/').to_owned()),
        None => {
            skip(
                Need::Server,
                &format!("{var} is not set (no live server; .ci/run starts one)"),
            );
            None
        }
    }
}

// The README, compiled as doctests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
