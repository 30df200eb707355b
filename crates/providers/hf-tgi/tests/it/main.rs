//! Integration tests of infermux-hf-tgi: replay of every interaction of the shared TGI
//! cassettes (real HF Inference API traffic), TGI's own server outputs (snapshots) decoded,
//! request bodies checked against TGI's `openapi.json`, bad input (truncated streams, text/plain
//! 422, HTML pages, model loading), keys kept out of `Debug` and errors, and the testkit
//! conformance suite.

mod bad_input;
mod conformance;
mod connections;
mod headers;
mod replay;
mod routes;
mod secrets;
mod snapshots;
mod spec;
mod tool_calls;

use infermux_core::EndpointConfig;
use infermux_hf_tgi::HfTgi;
use infermux_testkit::Cassette;

/// A client of the TGI server at `base`.
fn tgi(base: &str) -> HfTgi {
    HfTgi::new(EndpointConfig::new("test", base).unwrap()).unwrap()
}

/// A cassette from `(method, path, status, content type, body)` rows, served in order.
fn cassette(rows: &[(&str, &str, u16, &str, &str)]) -> Cassette {
    infermux_testkit::helpers::served("http://tgi:8080", rows)
}

/// The SSE body TGI writes for `chunks` (`data:{...}` without a space).
fn sse(chunks: &[serde_json::Value]) -> String {
    chunks.iter().map(|c| format!("data:{c}\n\n")).collect()
}

#[test]
fn a_host_named_v1_is_a_host_not_a_version_suffix() {
    // only a `/v1` path segment after the host is stripped from the base URL
    let debug = format!("{:?}", tgi("http://v1:8000"));
    assert!(debug.contains("http://v1:8000"), "{debug}");
    let debug = format!("{:?}", tgi("http://v1"));
    assert!(debug.contains("http://v1"), "{debug}");
}
