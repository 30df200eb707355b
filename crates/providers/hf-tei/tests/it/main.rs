//! Integration tests of infermux-hf-tei: replay of every interaction of the shared TEI
//! cassettes (real HF Inference API traffic), TEI's own server outputs (snapshots) decoded,
//! request bodies checked against TEI's `openapi.json`, batching by `max_client_batch_size`,
//! bad input, keys kept out of `Debug` and errors, and the testkit conformance suite on
//! replayed traffic.

mod bad_input;
mod conformance;
mod connections;
mod one_call;
mod replay;
mod routes;
mod spec;

use infermux_core::EndpointConfig;
use infermux_hf_tei::HfTei;
use infermux_testkit::Cassette;

/// A client of the TEI server at `base`.
fn tei(base: &str) -> HfTei {
    HfTei::new(EndpointConfig::new("test", base).unwrap()).unwrap()
}

/// A cassette from `(method, path, status, content type, body)` rows, served in order.
fn cassette(rows: &[(&str, &str, u16, &str, &str)]) -> Cassette {
    infermux_testkit::helpers::served("http://tei:8080", rows)
}

#[test]
fn a_host_named_v1_is_a_host_not_a_version_suffix() {
    // only a `/v1` path segment after the host is stripped from the base URL
    let debug = format!("{:?}", tei("http://v1:8000"));
    assert!(debug.contains("http://v1:8000"), "{debug}");
    let debug = format!("{:?}", tei("http://v1"));
    assert!(debug.contains("http://v1"), "{debug}");
}
