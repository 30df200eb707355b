//! Integration tests of infermux-openai-compat: replay of cassettes recorded from the real
//! llama.cpp server, live tests against that server, the conformance suite, and bad input.

mod bad_input;
mod legacy;
mod live;
mod media;
mod one_call;
mod record;
mod replay;
mod requests;
mod tool_call_shapes;
mod typed_wire;

use std::path::PathBuf;

use infermux_core::{ChatRequest, ContentPart, EndpointConfig, Message, Tool, ToolChoice};
use infermux_openai_compat::OpenAiCompat;
use serde_json::json;

pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub(crate) fn provider(base: &str) -> OpenAiCompat {
    OpenAiCompat::new(EndpointConfig::new("test", base).unwrap()).unwrap()
}

/// The requests the cassettes were recorded with (replay sends the same ones).
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
    .with_seed(42)
}

pub(crate) fn image_request() -> ChatRequest {
    ChatRequest::new(
        "smollm2",
        vec![Message::user_parts(vec![
            ContentPart::text("What is in this image?"),
            ContentPart::image_base64("image/png", "iVBORw0KGgo="),
        ])],
    )
    .with_max_tokens(4)
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
    .with_seed(42)
}
