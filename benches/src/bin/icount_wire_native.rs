//! Runs one wire-format operation of the native providers (anthropic, gemini, ollama, hf-tgi,
//! hf-tei) N times, for instruction counts under callgrind:
//! `valgrind --tool=callgrind --callgrind-out-file=/tmp/x.out \
//!   target/release/icount_wire_native <op> <n>`; instructions per operation =
//! (Ir(n2) − Ir(n1)) / (n2 − n1). `<op>` is one of [`OPS`]'s names; with no arguments it lists
//! them. The operations are what a provider does per request: serialise the chat request body
//! to bytes, parse a plain chat answer, feed a 100-event stream to its state.
//!
//! The criterion bench `benches/wire_native.rs` runs the same operations. A code line ending in
//! a `before:` comment holds, in the comment, the operation as it was before the wire formats
//! were typed (the body built as a `Value`, then serialised); the before build (f117165)
//! replaces the line with it:
//! `sed -i '/^ *\/\/!/!s|^\( *\).*// before: \(.*\)$|\1\2|' icount_wire_native.rs`.

use std::hint::black_box;

use infermux_anthropic::wire as anthropic;
use infermux_core::{ChatRequest, CompletionRequest, Message, Tool};
use infermux_gemini::wire as gemini;
use infermux_hf_tei::{EmbedOptions, wire as tei};
use infermux_hf_tgi::wire as tgi;
use infermux_ollama::wire as ollama;
use serde_json::{json, to_vec};

/// The chat request every body is built from: a system prompt, three turns, one tool,
/// sampling options and a free-form `extra` field.
pub fn chat_request() -> ChatRequest {
    ChatRequest::new(
        "model-1",
        vec![
            Message::system("You are a terse assistant. Answer in one sentence."),
            Message::user("What is the capital of France?"),
            Message::assistant("Paris."),
            Message::user("And of Germany? Say it with \"quotes\" and an é."),
        ],
    )
    .with_temperature(0.7)
    .with_max_tokens(256)
    .with_stop(vec!["\n\n".to_owned()])
    .with_tools(vec![Tool::new(
        "lookup",
        "Looks a city up",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    )])
    .with_extra("top_k", json!(40))
}

/// The completion request TGI's body is built from.
pub fn completion_request() -> CompletionRequest {
    let mut r = CompletionRequest::new("model-1", "The capital of France is");
    r.max_tokens = Some(64);
    r.temperature = Some(0.7);
    r.stop = vec!["\n".to_owned()];
    r
}

/// The inputs TEI's embedding body is built from.
pub fn embed_inputs() -> Vec<String> {
    (0..8)
        .map(|i| format!("sentence number {i} to embed"))
        .collect()
}

/// Anthropic's plain chat answer.
pub const ANTHROPIC_ANSWER: &str = r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"The capital of Germany is \"Berlin\"."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":42,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":12}}"#;

/// Gemini's plain `generateContent` answer.
pub const GEMINI_ANSWER: &str = r#"{"candidates":[{"content":{"parts":[{"text":"The capital of Germany is \"Berlin\"."}],"role":"model"},"finishReason":"STOP","avgLogprobs":-0.0123,"index":0}],"usageMetadata":{"promptTokenCount":42,"candidatesTokenCount":12,"totalTokenCount":54,"promptTokensDetails":[{"modality":"TEXT","tokenCount":42}]},"modelVersion":"gemini-2.0-flash","responseId":"abcDEF123"}"#;

/// Ollama's plain `/api/chat` answer.
pub const OLLAMA_ANSWER: &str = r#"{"model":"llama3.2","created_at":"2024-12-01T10:00:00.123456Z","message":{"role":"assistant","content":"The capital of Germany is \"Berlin\"."},"done_reason":"stop","done":true,"total_duration":512345678,"load_duration":12345678,"prompt_eval_count":42,"prompt_eval_duration":12345678,"eval_count":12,"eval_duration":123456789}"#;

/// TGI's plain `/generate` answer.
pub const TGI_ANSWER: &str = r#"{"generated_text":" Paris, and the capital of Germany is \"Berlin\".","details":{"finish_reason":"eos_token","generated_tokens":12,"seed":null,"prefill":[],"tokens":[]}}"#;

/// TEI's feature-extraction answer: 8 vectors of 384.
pub fn tei_answer() -> String {
    let v: Vec<Vec<f32>> = (0..8)
        .map(|i| {
            (0..384)
                .map(|j| ((i * 384 + j) as f32).sin() * 0.1)
                .collect()
        })
        .collect();
    serde_json::to_string(&v).unwrap_or_default()
}

/// Anthropic's 100-event stream: (event name, data).
pub fn anthropic_stream() -> Vec<(String, String)> {
    let mut out = vec![
        ("message_start".to_owned(), r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":42,"output_tokens":1}}}"#.to_owned()),
        ("content_block_start".to_owned(), r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#.to_owned()),
    ];
    for i in 0..95 {
        out.push((
            "content_block_delta".to_owned(),
            format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":" word{i}"}}}}"#
            ),
        ));
    }
    out.push((
        "content_block_stop".to_owned(),
        r#"{"type":"content_block_stop","index":0}"#.to_owned(),
    ));
    out.push(("message_delta".to_owned(), r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":95}}"#.to_owned()));
    out.push((
        "message_stop".to_owned(),
        r#"{"type":"message_stop"}"#.to_owned(),
    ));
    out
}

/// Gemini's 100-chunk stream.
pub fn gemini_stream() -> Vec<String> {
    (0..100)
        .map(|i| {
            let finish = if i == 99 { r#","finishReason":"STOP""# } else { "" };
            format!(
                r#"{{"candidates":[{{"content":{{"parts":[{{"text":" word{i}"}}],"role":"model"}}{finish},"index":0}}],"usageMetadata":{{"promptTokenCount":42,"candidatesTokenCount":{i},"totalTokenCount":{}}},"modelVersion":"gemini-2.0-flash","responseId":"abcDEF123"}}"#,
                42 + i
            )
        })
        .collect()
}

/// Ollama's 100-line NDJSON stream.
pub fn ollama_stream() -> Vec<String> {
    let mut out: Vec<String> = (0..99)
        .map(|i| format!(r#"{{"model":"llama3.2","created_at":"2024-12-01T10:00:00.123456Z","message":{{"role":"assistant","content":" word{i}"}},"done":false}}"#))
        .collect();
    out.push(r#"{"model":"llama3.2","created_at":"2024-12-01T10:00:01.123456Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":512345678,"load_duration":12345678,"prompt_eval_count":42,"prompt_eval_duration":12345678,"eval_count":99,"eval_duration":123456789}"#.to_owned());
    out
}

/// TGI's 100-event `/generate_stream` stream.
pub fn tgi_stream() -> Vec<String> {
    (0..100)
        .map(|i| {
            let (text, details) = if i == 99 {
                (
                    r#""full text""#,
                    r#"{"finish_reason":"length","generated_tokens":100,"seed":null}"#,
                )
            } else {
                ("null", "null")
            };
            format!(
                r#"{{"index":{i},"token":{{"id":{},"text":" word{i}","logprob":-0.25,"special":false}},"generated_text":{text},"details":{details}}}"#,
                1000 + i
            )
        })
        .collect()
}

/// The inputs of every operation, built once.
pub struct Inputs {
    chat: ChatRequest,
    completion: CompletionRequest,
    embed: Vec<String>,
    tei_answer: String,
    anthropic_stream: Vec<(String, String)>,
    gemini_stream: Vec<String>,
    ollama_stream: Vec<String>,
    tgi_stream: Vec<String>,
}

impl Inputs {
    /// Builds them.
    pub fn new() -> Self {
        Inputs {
            chat: chat_request(),
            completion: completion_request(),
            embed: embed_inputs(),
            tei_answer: tei_answer(),
            anthropic_stream: anthropic_stream(),
            gemini_stream: gemini_stream(),
            ollama_stream: ollama_stream(),
            tgi_stream: tgi_stream(),
        }
    }
}

impl Default for Inputs {
    fn default() -> Self {
        Self::new()
    }
}

/// The bytes of a request body, as the transport writes them.
fn bytes(body: &impl serde::Serialize) -> usize {
    to_vec(body).map_or(0, |b| b.len())
}

fn anthropic_body(i: &Inputs) -> usize {
    bytes(&anthropic::ChatBody::new(&i.chat, false)) // before: bytes(&anthropic::chat_body(&i.chat, false))
}

fn anthropic_parse(_: &Inputs) -> usize {
    anthropic::parse_chat(ANTHROPIC_ANSWER.as_bytes()).map_or(0, |r| r.message.text().len())
}

fn anthropic_stream100(i: &Inputs) -> usize {
    let mut st = infermux_anthropic::ChatStreamState::new();
    i.anthropic_stream
        .iter()
        .map(|(e, d)| st.on_event(Some(e), d).map_or(0, |v| v.len()))
        .sum()
}

fn gemini_body(i: &Inputs) -> usize {
    bytes(&gemini::GenerateBody::new(&i.chat)) // before: bytes(&gemini::generate_body(&i.chat))
}

fn gemini_parse(_: &Inputs) -> usize {
    gemini::parse_generate(GEMINI_ANSWER.as_bytes()).map_or(0, |r| r.message.text().len())
}

fn gemini_stream100(i: &Inputs) -> usize {
    let mut st = infermux_gemini::GenerateState::new();
    i.gemini_stream
        .iter()
        .map(|d| st.on_chunk(d).map_or(0, |v| v.len()))
        .sum()
}

fn ollama_body(i: &Inputs) -> usize {
    bytes(&ollama::ChatBody::new(&i.chat, false)) // before: bytes(&ollama::chat_body(&i.chat, false))
}

fn ollama_parse(_: &Inputs) -> usize {
    ollama::parse_chat(OLLAMA_ANSWER.as_bytes()).map_or(0, |r| r.message.text().len())
}

fn ollama_stream100(i: &Inputs) -> usize {
    let mut st = infermux_ollama::NdjsonStreamState::new();
    i.ollama_stream
        .iter()
        .map(|d| st.on_line(d).map_or(0, |v| v.len()))
        .sum()
}

fn tgi_body(i: &Inputs) -> usize {
    bytes(&tgi::GenerateBody::new(&i.completion, Some(false))) // before: bytes(&tgi::generate_body(&i.completion, Some(false)))
}

fn tgi_parse(_: &Inputs) -> usize {
    tgi::parse_generation(TGI_ANSWER.as_bytes()).map_or(0, |g| g.generated_text.len())
}

fn tgi_stream100(i: &Inputs) -> usize {
    let mut st = infermux_hf_tgi::GenerateStreamState::new();
    i.tgi_stream
        .iter()
        .map(|d| st.on_data(d).map_or(0, |v| v.len()))
        .sum()
}

fn tei_body(i: &Inputs) -> usize {
    let (opts, extra) = (EmbedOptions::new(), serde_json::Map::new());
    bytes(&tei::EmbedBody::new(&i.embed, opts, None, &extra)) // before: bytes(&tei::embed_body(&i.embed, opts, None, &extra))
}

fn tei_parse_features(i: &Inputs) -> usize {
    tei::parse_feature_extraction(i.tei_answer.as_bytes(), 8).map_or(0, |v| v.len())
}

/// One operation: its name and what it does once (a size, so the work is not optimised away).
pub type Op = (&'static str, fn(&Inputs) -> usize);

/// Every operation.
pub const OPS: &[Op] = &[
    ("anthropic_body", anthropic_body),
    ("anthropic_parse", anthropic_parse),
    ("anthropic_stream100", anthropic_stream100),
    ("gemini_body", gemini_body),
    ("gemini_parse", gemini_parse),
    ("gemini_stream100", gemini_stream100),
    ("ollama_body", ollama_body),
    ("ollama_parse", ollama_parse),
    ("ollama_stream100", ollama_stream100),
    ("tgi_body", tgi_body),
    ("tgi_parse", tgi_parse),
    ("tgi_stream100", tgi_stream100),
    ("tei_body", tei_body),
    ("tei_parse_features", tei_parse_features),
];

#[allow(dead_code)]
fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(name), Some(n)) = (
        args.next(),
        args.next().and_then(|n| n.parse::<usize>().ok()),
    ) else {
        for (name, _) in OPS {
            println!("{name}");
        }
        return;
    };
    let Some((_, op)) = OPS.iter().find(|(n, _)| *n == name) else {
        eprintln!("no operation {name}");
        std::process::exit(2);
    };
    let inputs = Inputs::new();
    let mut total = 0;
    for _ in 0..n {
        total += op(black_box(&inputs));
    }
    println!("{name} x{n}: {total}");
}
