//! Integration tests of infermux-ollama: replay of every interaction of the shared Ollama
//! cassettes (real recorded traffic), requests checked against Ollama's `openapi.yaml`, bad
//! input (truncated NDJSON, HTML error pages, in-stream errors), keys kept out of `Debug` and
//! errors, and the testkit conformance suite (the `/v1` mode against the simulator, the native
//! mode against a small NDJSON server in [`native_sim`]).

mod bad_input;
mod conformance;
mod connections;
mod legacy_embeddings;
mod native_sim;
mod one_call;
mod replay;
mod spec;

use infermux_core::EndpointConfig;
use infermux_ollama::Ollama;

/// A client of `base` in native mode.
fn ollama(base: &str) -> Ollama {
    Ollama::new(EndpointConfig::new("test", base).unwrap()).unwrap()
}

#[test]
fn a_host_named_v1_is_a_host_not_a_version_suffix() {
    // only a `/v1` path segment after the host is stripped from the base URL
    let debug = format!("{:?}", ollama("http://v1:8000"));
    assert!(debug.contains("http://v1:8000"), "{debug}");
    let debug = format!("{:?}", ollama("http://v1"));
    assert!(debug.contains("http://v1"), "{debug}");
}
