//! Integration tests of infermux-anthropic: replay of every recorded interaction of the shared
//! Anthropic cassettes, replay of cassettes recorded from the real llama.cpp server (which serves
//! Anthropic's `/v1/messages`), live tests against that server, the conformance suite, request
//! bodies, and bad input.

mod bad_input;
mod live;
mod record;
mod replay;
mod requests;
mod secrets;
mod server_tools;
mod shared;
mod signatures;

use std::path::PathBuf;

use infermux_anthropic::Anthropic;
use infermux_core::{ChatRequest, EndpointConfig, Message, Tool, ToolChoice};
use infermux_testkit::SuiteConfig;
use serde_json::json;

pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A provider at `base` (which includes `/v1`).
pub(crate) fn provider(base: &str) -> Anthropic {
    Anthropic::new(EndpointConfig::new("test", base).unwrap()).unwrap()
}

/// The requests the llama.cpp cassettes were recorded with (replay sends the same ones).
pub(crate) fn chat_request() -> ChatRequest {
    ChatRequest::new(
        "smollm2",
        vec![
            Message::system("You are a terse assistant."),
            Message::user("Name three colours."),
        ],
    )
    .with_max_tokens(24)
    .with_temperature(0.0)
}

pub(crate) fn tool_request() -> ChatRequest {
    ChatRequest::new(
        "smollm2",
        vec![Message::user("What is the weather in Paris? Use the tool.")],
    )
    .with_tools(vec![Tool::new(
        "get_weather",
        "Get the current weather of a city",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    )])
    .with_tool_choice(ToolChoice::Required)
    .with_max_tokens(64)
    .with_temperature(0.0)
}

/// The conformance suite's settings for llama.cpp's `/v1/messages`: deterministic (temperature
/// 0), without the forced-tool check — llama.cpp's Anthropic route ignores `tool_choice`
/// (`any` and `tool` answer with text), so SmolLM2 does not call the tool; tool use is proven on
/// the shared cassettes of the real API instead.
pub(crate) fn conformance_config() -> SuiteConfig {
    SuiteConfig::new("smollm2")
        .deterministic(true)
        .with_tools(false)
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
