//! Runs one OpenAI-protocol wire operation N times, for instruction counts under callgrind:
//! building a chat request body (chat completions as `openai-compat` and `openai` send it, and
//! the Responses API), parsing a plain answer, and parsing a 100-event stream.
//!
//! ```text
//! cargo build --release -p infermux-benches --bin icount_wire_openai
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/w.out \
//!     target/release/icount_wire_openai compat_chat_body 1000
//! callgrind_annotate /tmp/w.out | head
//! ```
//!
//! Instructions per operation = (Ir(N2) − Ir(N1)) / (N2 − N1). The criterion bench
//! `benches/wire_openai.rs` runs the same operations on the same inputs.

use std::hint::black_box;

use infermux_core::{ChatRequest, Message, Tool, ToolCall, ToolChoice};
use infermux_openai::responses::{self, ResponsesStreamState};
use infermux_openai_compat::{ChatStreamState, wire};
use serde_json::json;

/// A plain chat request: a system prompt, a user turn, temperature and a token limit.
pub fn chat_request() -> ChatRequest {
    ChatRequest::new(
        "gpt-4o-mini",
        vec![
            Message::system("You are a terse assistant. Answer in one short paragraph."),
            Message::user("Name three colours and say in a few words why each one is interesting."),
        ],
    )
    .with_temperature(0.2)
    .with_max_tokens(256)
}

/// A chat request with a tool, a tool call and its result: the second turn of a tool loop.
pub fn tool_request() -> ChatRequest {
    let mut req = ChatRequest::new(
        "gpt-4o-mini",
        vec![
            Message::system("You are a weather assistant."),
            Message::user("What is the weather in Paris and in Lyon?"),
            Message::assistant_tool_calls(vec![
                ToolCall::new("call_1", "get_weather", r#"{"city":"Paris"}"#),
                ToolCall::new("call_2", "get_weather", r#"{"city":"Lyon"}"#),
            ]),
            Message::tool_result("call_1", r#"{"temp_c":18,"sky":"cloudy"}"#),
            Message::tool_result("call_2", r#"{"temp_c":21,"sky":"sunny"}"#),
        ],
    )
    .with_tools(vec![Tool::new(
        "get_weather",
        "Current weather of a city",
        json!({"type": "object", "properties": {"city": {"type": "string", "description": "The city"}}, "required": ["city"], "additionalProperties": false}),
    )])
    .with_tool_choice(ToolChoice::Auto)
    .with_temperature(0.0)
    .with_max_tokens(512);
    req.parallel_tool_calls = Some(true);
    req
}

const ANSWER_TEXT: &str = "Red is the colour of blood and fire, so it reads as urgent. Blue is the sky and the sea, calm and distant. Green is chlorophyll: it marks where plants turn light into sugar, and our eyes tell more shades of it apart than of any other colour.";

/// A chat-completions answer as OpenAI sends it (usage details, `refusal`, `annotations`,
/// `service_tier`, `system_fingerprint`).
pub fn chat_answer() -> Vec<u8> {
    json!({
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1_741_569_952,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": ANSWER_TEXT, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": 41, "completion_tokens": 58, "total_tokens": 99,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        },
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306"
    })
    .to_string()
    .into_bytes()
}

/// The words of the streamed answers, one per content event.
fn words(n: usize) -> impl Iterator<Item = String> {
    ANSWER_TEXT
        .split_inclusive(' ')
        .cycle()
        .take(n)
        .map(str::to_owned)
}

/// The 100 `data:` payloads of a streamed chat-completions answer: the role, 96 content
/// deltas, the finish reason, the usage chunk and `[DONE]`.
pub fn chat_stream() -> Vec<String> {
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        json!({"id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion.chunk", "created": 1_741_569_952, "model": "gpt-4o-mini-2024-07-18", "service_tier": "default", "system_fingerprint": "fp_06737a9306", "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}], "usage": null, "obfuscation": "x1Yz"}).to_string()
    };
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        json!(null),
    )];
    out.extend(words(96).map(|w| chunk(json!({"content": w}), json!(null))));
    out.push(chunk(json!({}), json!("stop")));
    out.push(json!({"id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion.chunk", "created": 1_741_569_952, "model": "gpt-4o-mini-2024-07-18", "choices": [], "usage": {"prompt_tokens": 41, "completion_tokens": 96, "total_tokens": 137, "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}}).to_string());
    out.push("[DONE]".to_owned());
    out
}

fn response_object(status: &str, text: Option<&str>) -> serde_json::Value {
    let output = match text {
        Some(t) => {
            json!([{"type": "message", "id": "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41", "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": t, "annotations": []}]}])
        }
        None => json!([]),
    };
    let usage = match text {
        Some(_) => {
            json!({"input_tokens": 41, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 58, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 99})
        }
        None => json!(null),
    };
    json!({
        "id": "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41",
        "object": "response", "created_at": 1_741_476_777, "status": status, "error": null,
        "incomplete_details": null, "instructions": "You are a terse assistant.", "max_output_tokens": 256,
        "model": "gpt-4o-mini-2024-07-18", "output": output, "parallel_tool_calls": true,
        "previous_response_id": null, "reasoning": {"effort": null, "summary": null}, "store": true,
        "temperature": 0.2, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
        "top_p": 1.0, "truncation": "disabled", "usage": usage, "user": null, "metadata": {}
    })
}

/// A Responses API answer (`POST /responses`) with one message.
pub fn responses_answer() -> Vec<u8> {
    response_object("completed", Some(ANSWER_TEXT))
        .to_string()
        .into_bytes()
}

/// The 100 events of a streamed Responses API answer, as (event name, data): created,
/// in progress, the item and part added, 92 text deltas, the text, part and item done, and
/// completed (which repeats the whole response).
pub fn responses_stream() -> Vec<(String, String)> {
    let ev = |v: serde_json::Value| (v["type"].as_str().unwrap_or("").to_owned(), v.to_string());
    let item = "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41";
    let mut out = vec![
        ev(
            json!({"type": "response.created", "sequence_number": 0, "response": response_object("in_progress", None)}),
        ),
        ev(
            json!({"type": "response.in_progress", "sequence_number": 1, "response": response_object("in_progress", None)}),
        ),
        ev(
            json!({"type": "response.output_item.added", "sequence_number": 2, "output_index": 0, "item": {"id": item, "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
        ),
        ev(
            json!({"type": "response.content_part.added", "sequence_number": 3, "item_id": item, "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
        ),
    ];
    for (i, w) in words(92).enumerate() {
        out.push(ev(json!({"type": "response.output_text.delta", "sequence_number": 4 + i, "item_id": item, "output_index": 0, "content_index": 0, "delta": w, "obfuscation": "Qb9x"})));
    }
    out.push(ev(json!({"type": "response.output_text.done", "sequence_number": 96, "item_id": item, "output_index": 0, "content_index": 0, "text": ANSWER_TEXT})));
    out.push(ev(json!({"type": "response.content_part.done", "sequence_number": 97, "item_id": item, "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": ANSWER_TEXT, "annotations": []}})));
    out.push(ev(json!({"type": "response.output_item.done", "sequence_number": 98, "output_index": 0, "item": {"id": item, "type": "message", "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": ANSWER_TEXT, "annotations": []}]}})));
    out.push(ev(json!({"type": "response.completed", "sequence_number": 99, "response": response_object("completed", Some(ANSWER_TEXT))})));
    out
}

/// The inputs every operation reads, built once.
pub struct Inputs {
    /// [`chat_request`].
    pub chat: ChatRequest,
    /// [`tool_request`].
    pub tools: ChatRequest,
    /// [`chat_answer`].
    pub answer: Vec<u8>,
    /// [`chat_stream`].
    pub stream: Vec<String>,
    /// [`responses_answer`].
    pub responses_answer: Vec<u8>,
    /// [`responses_stream`].
    pub responses_stream: Vec<(String, String)>,
}

impl Inputs {
    /// Builds every input.
    pub fn build() -> Self {
        Inputs {
            chat: chat_request(),
            tools: tool_request(),
            answer: chat_answer(),
            stream: chat_stream(),
            responses_answer: responses_answer(),
            responses_stream: responses_stream(),
        }
    }
}

/// The body bytes `openai-compat` sends for a chat request.
pub fn compat_chat_body(req: &ChatRequest) -> Vec<u8> {
    serde_json::to_vec(&wire::ChatBody::new(req, false)).unwrap_or_default()
}

/// The body bytes `openai` sends for a chat request (`max_completion_tokens`).
pub fn openai_chat_body(req: &ChatRequest) -> Vec<u8> {
    serde_json::to_vec(&infermux_openai::typed_chat_body(req, false)).unwrap_or_default()
}

/// The body bytes `openai` sends for a chat request through the Responses API.
pub fn responses_body(req: &ChatRequest) -> Vec<u8> {
    serde_json::to_vec(&responses::ResponsesBody::new(req, false)).unwrap_or_default()
}

/// Parses the chat-completions answer; the number of parts read (to keep it alive).
pub fn compat_parse_chat(body: &[u8]) -> usize {
    wire::parse_chat(body).map_or(0, |r| r.message.content.len())
}

/// Parses the streamed chat-completions answer; the number of events.
pub fn compat_stream(payloads: &[String]) -> usize {
    let mut st = ChatStreamState::new();
    payloads
        .iter()
        .map(|p| st.on_data(p).map_or(0, |v| v.len()))
        .sum()
}

/// Parses the Responses API answer; the number of parts read.
pub fn responses_parse(body: &[u8]) -> usize {
    responses::parse_response(body).map_or(0, |r| r.message.content.len())
}

/// Parses the streamed Responses API answer; the number of events.
pub fn responses_stream_parse(events: &[(String, String)]) -> usize {
    let mut st = ResponsesStreamState::new();
    events
        .iter()
        .map(|(name, data)| st.on_event(Some(name), data).map_or(0, |v| v.len()))
        .sum()
}

/// Runs operation `op` once on `inputs`; `None` for an unknown operation.
pub fn run(op: &str, inputs: &Inputs) -> Option<usize> {
    Some(match op {
        "compat_chat_body" => compat_chat_body(black_box(&inputs.chat)).len(),
        "compat_chat_body_tools" => compat_chat_body(black_box(&inputs.tools)).len(),
        "openai_chat_body" => openai_chat_body(black_box(&inputs.chat)).len(),
        "responses_body" => responses_body(black_box(&inputs.chat)).len(),
        "responses_body_tools" => responses_body(black_box(&inputs.tools)).len(),
        "compat_parse_chat" => compat_parse_chat(black_box(&inputs.answer)),
        "compat_stream_100" => compat_stream(black_box(&inputs.stream)),
        "responses_parse" => responses_parse(black_box(&inputs.responses_answer)),
        "responses_stream_100" => responses_stream_parse(black_box(&inputs.responses_stream)),
        _ => return None,
    })
}

/// Every operation [`run`] knows.
pub const OPS: [&str; 9] = [
    "compat_chat_body",
    "compat_chat_body_tools",
    "openai_chat_body",
    "responses_body",
    "responses_body_tools",
    "compat_parse_chat",
    "compat_stream_100",
    "responses_parse",
    "responses_stream_100",
];

#[allow(dead_code)] // the criterion bench includes this file as a module and has its own main
fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(op), Some(n)) = (
        args.next(),
        args.next().and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: icount_wire_openai <operation> <N>; operations: {OPS:?}");
        std::process::exit(2);
    };
    let inputs = Inputs::build();
    // an operation that fails does nothing and would look fast: each must produce something
    if run(&op, &inputs) == Some(0) {
        eprintln!("{op} produced nothing: its input no longer parses");
        std::process::exit(1);
    }
    let mut total = 0usize;
    for _ in 0..n {
        match run(&op, &inputs) {
            Some(x) => total = total.wrapping_add(x),
            None => {
                eprintln!("unknown operation {op}; operations: {OPS:?}");
                std::process::exit(2);
            }
        }
    }
    println!("{op} x{n}: {total}");
}
