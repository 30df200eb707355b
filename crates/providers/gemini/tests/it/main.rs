//! Integration tests of infermux-gemini: replay of every recorded interaction of the shared
//! Gemini cassettes, SSE and JSON-array streaming giving the same events, request bodies checked
//! against the published OpenAPI description, the conformance suite on replayed traffic, and bad
//! input.

mod bad_input;
mod conformance;
mod one_call;
mod quota;
mod requests;
mod secrets;
mod shared;
mod signatures;

use infermux_core::EndpointConfig;
use infermux_gemini::Gemini;

/// A provider at `base` (which includes `/v1beta`).
pub(crate) fn provider(base: &str) -> Gemini {
    Gemini::new(EndpointConfig::new("test", base).unwrap()).unwrap()
}

/// The body of a recorded response as the client saw it (gzip bodies decompressed).
pub(crate) fn response_bytes(r: &infermux_testkit::RecordedResponse) -> Vec<u8> {
    let raw = r.body.to_bytes();
    if r.header("content-encoding")
        .is_some_and(|e| e.eq_ignore_ascii_case("gzip"))
    {
        let mut out = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(raw.as_slice()),
            &mut out,
        )
        .unwrap();
        return out;
    }
    raw
}

/// The chunks of a recorded body, read naively: `data:` lines of SSE, the elements of a JSON
/// array, or one JSON object.
pub(crate) fn stream_chunks(body: &[u8]) -> Vec<serde_json::Value> {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return serde_json::from_str::<Vec<serde_json::Value>>(&text).unwrap();
    }
    if trimmed.starts_with('{') {
        return vec![serde_json::from_str(&text).unwrap()];
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect()
}
