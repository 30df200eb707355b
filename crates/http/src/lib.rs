//! The one place that knows reqwest: request building, per-attempt timeouts (connect, first
//! byte, idle between chunks), redirects that never carry credentials (nor any header the
//! endpoint configures) to another origin, keys bound to their endpoint's origin and scrubbed
//! from whatever a server sends back, a body size limit applied after decompression (to each
//! event of a stream), stream
//! decoders (SSE, NDJSON, streamed JSON arrays), and mapping of status, headers and body to
//! [`infermux_core::ErrorKind`].
//!
//! No reqwest or hyper type appears in this crate's public API.
//!
//! **Proxies.** As any reqwest client, an endpoint goes through the proxy the environment names
//! (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, lower-case too; hosts in `NO_PROXY` go direct).
//! Through a proxy, an `https://` endpoint's key stays inside TLS to the endpoint; a plain
//! `http://` endpoint's request, key included, is read by the proxy. Put such servers (a
//! LAN vLLM, a local llama.cpp) in `NO_PROXY`, or unset the proxy for the process.
//!
//! ```no_run
//! # async fn demo() -> infermux_core::Result<()> {
//! use futures_util::StreamExt;
//! use infermux_core::{EndpointConfig, RequestContext};
//! use infermux_http::{Auth, HttpEndpoint};
//!
//! let ep = HttpEndpoint::new("openai-compat", EndpointConfig::new("local", "http://127.0.0.1:8080/v1")?, Auth::Bearer)?;
//! let body = serde_json::json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
//! let mut events = ep.post("/chat/completions").json(&body).send(&RequestContext::new()).await?.sse();
//! while let Some(event) = events.next().await {
//!     println!("{}", event?.data);
//! }
//! # Ok(()) }
//! ```
//!
//! # Crate features
//! This crate has no optional features. TLS is rustls with the `ring` provider, the one crypto
//! provider used across the workspace.

pub mod civil;
pub mod decode;
mod errors;
mod events;
mod headers;
pub mod json;
mod scrub;
mod segment;
mod transport;

pub use errors::{
    error_body_message, error_event, error_from_response, kind_for_status, retry_hint,
};
pub use events::{EventDecoder, event_stream};
pub use headers::{
    MAX_RETRY_AFTER, capped_secs, parse_duration, parse_rfc3339, rate_limits, response_time,
    retry_after, should_retry,
};
pub use http::{HeaderMap, HeaderName, HeaderValue, Method};
pub use segment::PathName;
pub use transport::{
    AUTH_HEADERS, Auth, DecodedStream, HttpEndpoint, HttpRequest, HttpResponse, Route,
};

// The README, compiled as doctests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
