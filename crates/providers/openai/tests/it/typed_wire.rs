//! The typed OpenAI wire code against the `Value` code it replaced ([`crate::legacy`]): the
//! Responses API and chat bodies serialise to the same bytes (with `extra` fields that repeat
//! body fields), and Responses API answers and stream events read to the same core values or
//! errors of the same kind — on hand-made edge cases and on random requests, answers and
//! event sequences.

use infermux_core::{
    ChatRequest, ContentPart, EmbeddingRequest, ImageSource, Message, ResponseFormat, Result, Role,
    Tool, ToolCall, ToolChoice,
};
use infermux_openai::responses::{self, ResponsesBody, ResponsesStreamState};
use infermux_openai::{chat_body, typed_chat_body};
use infermux_openai_compat::wire;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::legacy;
use crate::{chat_request, tool_request};

/// Both outcomes equal: the same value, or errors of the same kind with the same partial text.
#[track_caller]
fn same<T: PartialEq + std::fmt::Debug>(new: Result<T>, old: Result<T>, what: &str) {
    match (new, old) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{what}"),
        (Err(a), Err(b)) => {
            assert_eq!(a.kind(), b.kind(), "{what}: {a} vs {b}");
            assert_eq!(a.partial_text(), b.partial_text(), "{what}");
            assert_eq!(a.provider_code(), b.provider_code(), "{what}");
        }
        (a, b) => panic!("{what}: typed {a:?}, legacy {b:?}"),
    }
}

fn bodies_match(req: &ChatRequest) {
    for stream in [false, true] {
        let new = serde_json::to_string(&ResponsesBody::new(req, stream)).unwrap();
        let old = serde_json::to_string(&legacy::responses_body(req, stream)).unwrap();
        assert_eq!(new, old, "responses, stream: {stream}");
        assert_eq!(
            responses::responses_body(req, stream),
            legacy::responses_body(req, stream)
        );
        let new = serde_json::to_string(&typed_chat_body(req, stream)).unwrap();
        let old = serde_json::to_string(&legacy::chat_body(req, stream)).unwrap();
        assert_eq!(new, old, "chat, stream: {stream}");
        assert_eq!(chat_body(req, stream), legacy::chat_body(req, stream));
    }
}

fn edge_requests() -> Vec<ChatRequest> {
    let mut mixed = Message::assistant("");
    mixed.content = vec![
        ContentPart::text("seen "),
        ContentPart::Thinking {
            text: "t".into(),
            signature: None,
        },
        ContentPart::text("this"),
        ContentPart::Refusal { text: "no".into() },
    ];
    mixed.tool_calls = vec![ToolCall::new("c1", "f", "{}")];
    let images = Message::user_parts(vec![
        ContentPart::text("look"),
        ContentPart::image_url("https://example.com/x.png"),
        ContentPart::Image {
            source: ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "iVBOR".into(),
            },
            detail: Some("low".into()),
        },
    ]);
    let mut only_thinking = Message::assistant("");
    only_thinking.content = vec![ContentPart::Thinking {
        text: "t".into(),
        signature: None,
    }];
    let mut split = Message::user("a");
    split.content.push(ContentPart::text("\"b\"\n"));
    let mut no_id = Message::tool_result("", "out");
    no_id.tool_call_id = None;
    let mut empty_system = Message::system("");
    empty_system.content.clear();
    let messages = vec![
        Message::system("one"),
        Message::new(Role::Developer, "two"),
        empty_system,
        split,
        images,
        mixed,
        only_thinking,
        Message::assistant_tool_calls(vec![
            ToolCall::new("c2", "g", r#"{"a":1}"#),
            ToolCall::new("c3", "h", ""),
        ]),
        Message::tool_result("c2", "18 °C"),
        no_id,
        Message::new(Role::Other("critic".into()), "hm"),
    ];
    let mut described = Tool::new("f", "does f", json!({"type": "object"}));
    described.strict = Some(true);
    let mut bare = Tool::new("g", "", json!({}));
    bare.description = None;
    let mut full = ChatRequest::new("gpt-4.1", messages)
        .with_tools(vec![described, bare])
        .with_temperature(0.7)
        .with_max_tokens(300);
    full.top_p = Some(0.5);
    full.parallel_tool_calls = Some(true);
    full.user = Some("u".into());
    let mut out = vec![full.clone(), chat_request(), tool_request()];
    out.push(ChatRequest::new(
        "m",
        vec![Message::system("only instructions")],
    ));
    out.push(ChatRequest::new("m", vec![]));
    for choice in [
        ToolChoice::Auto,
        ToolChoice::None,
        ToolChoice::Required,
        ToolChoice::Tool("f".into()),
    ] {
        out.push(full.clone().with_tool_choice(choice));
    }
    for format in [
        ResponseFormat::Text,
        ResponseFormat::JsonObject,
        ResponseFormat::JsonSchema {
            name: "a".into(),
            schema: json!({"type": "object", "b": 1, "a": 2}),
            strict: Some(false),
        },
        ResponseFormat::JsonSchema {
            name: "b".into(),
            schema: json!(null),
            strict: None,
        },
    ] {
        out.push(full.clone().with_response_format(format));
    }
    out
}

fn with_extras(req: &ChatRequest) -> Vec<ChatRequest> {
    let sets: [&[(&str, Value)]; 5] = [
        &[("a", json!(1)), ("store", json!(false)), ("zz", json!({}))],
        &[
            ("input", json!("raw")),
            ("instructions", json!(null)),
            ("model", json!(2)),
        ],
        &[("max_tokens", json!(5)), ("max_output_tokens", json!(6))],
        &[
            ("max_completion_tokens", json!(7)),
            ("text", json!({"verbosity": "low"})),
        ],
        &[
            ("stream", json!(false)),
            ("tools", json!([{"type": "web_search"}])),
            ("reasoning", json!({"effort": "low"})),
            ("previous_response_id", json!("resp_1")),
        ],
    ];
    sets.iter()
        .map(|set| {
            let mut r = req.clone();
            for (k, v) in *set {
                r.extra.insert((*k).to_owned(), v.clone());
            }
            r
        })
        .collect()
}

#[test]
fn responses_and_chat_bodies_are_the_bytes_the_value_code_sent() {
    for req in edge_requests() {
        bodies_match(&req);
        for r in with_extras(&req) {
            bodies_match(&r);
        }
    }
}

#[test]
fn base64_embedding_bodies_are_the_bytes_the_value_code_sent() {
    for extra in [json!({}), json!({"encoding_format": "float", "user": "u"})] {
        let mut e = EmbeddingRequest::new("e", ["a"]);
        let Value::Object(extra) = extra else {
            unreachable!()
        };
        e.extra = extra;
        let mut old = wire::embedding_body(&e);
        if !e.extra.contains_key("encoding_format") {
            old["encoding_format"] = json!("base64");
        }
        let new = wire::EmbeddingBody::new(&e).with_encoding_format("base64");
        assert_eq!(
            serde_json::to_string(&new).unwrap(),
            serde_json::to_string(&old).unwrap()
        );
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z \"\\\\\n]{1,6}", "\\PC{0,3}"]
}

fn part() -> impl Strategy<Value = ContentPart> {
    prop_oneof![
        4 => text().prop_map(ContentPart::text),
        1 => text().prop_map(ContentPart::image_url),
        1 => (text(), proptest::option::of(text())).prop_map(|(d, detail)| ContentPart::Image {
            source: ImageSource::Base64 { media_type: "image/png".into(), data: d },
            detail,
        }),
        1 => text().prop_map(|text| ContentPart::Refusal { text }),
        1 => text().prop_map(|text| ContentPart::Thinking { text, signature: None }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        proptest::sample::select(vec![
            Role::System,
            Role::Developer,
            Role::User,
            Role::Assistant,
            Role::Tool,
        ]),
        proptest::collection::vec(part(), 0..4),
        proptest::collection::vec((text(), text(), text()), 0..3),
        proptest::option::of(text()),
    )
        .prop_map(|(role, content, calls, call_id)| {
            let mut m = Message::new(role, "");
            m.content = content;
            m.tool_calls = calls
                .into_iter()
                .map(|(id, n, a)| ToolCall::new(id, n, a))
                .collect();
            m.tool_call_id = call_id;
            m
        })
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        text().prop_map(Value::String),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn extra() -> impl Strategy<Value = Map<String, Value>> {
    let key = prop_oneof![
        proptest::sample::select(vec![
            "model",
            "input",
            "instructions",
            "max_tokens",
            "max_output_tokens",
            "max_completion_tokens",
            "messages",
            "stream",
            "stream_options",
            "temperature",
            "text",
            "tools",
            "tool_choice",
            "top_p",
            "user",
            "parallel_tool_calls",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,10}",
    ];
    proptest::collection::btree_map(key, scalar(), 0..4).prop_map(|m| m.into_iter().collect())
}

prop_compose! {
    fn request()(
        model in text(),
        messages in proptest::collection::vec(message(), 0..5),
        temperature in proptest::option::of(any::<f32>()),
        top_p in proptest::option::of(0f32..1.0),
        max_tokens in proptest::option::of(any::<u32>()),
        tools in proptest::collection::vec((text(), proptest::option::of(text()), any_json(), proptest::option::of(any::<bool>())), 0..3),
        choice in proptest::option::of(prop_oneof![Just(ToolChoice::Auto), Just(ToolChoice::None), Just(ToolChoice::Required), text().prop_map(ToolChoice::Tool)]),
        parallel in proptest::option::of(any::<bool>()),
        format in proptest::option::of(prop_oneof![
            Just(ResponseFormat::Text),
            Just(ResponseFormat::JsonObject),
            (text(), any_json(), proptest::option::of(any::<bool>())).prop_map(|(name, schema, strict)| ResponseFormat::JsonSchema { name, schema, strict }),
        ]),
        user in proptest::option::of(text()),
        extra in extra(),
    ) -> ChatRequest {
        let mut r = ChatRequest::new(model, messages);
        r.temperature = temperature;
        r.top_p = top_p;
        r.max_tokens = max_tokens;
        r.tools = tools.into_iter().map(|(name, description, parameters, strict)| {
            let mut t = Tool::new(name, "", parameters);
            t.description = description;
            t.strict = strict;
            t
        }).collect();
        r.tool_choice = choice;
        r.parallel_tool_calls = parallel;
        r.response_format = format;
        r.user = user;
        r.extra = extra;
        r
    }
}

// ---------------------------------------------------------------------------------------------
// Answers and events

fn answer_matches(body: &[u8]) {
    let what = String::from_utf8_lossy(body);
    same(
        responses::parse_response(body),
        legacy::parse_response(body),
        &what,
    );
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        same(
            responses::parse_response_value(&v),
            legacy::parse_response_value(&v),
            &what,
        );
    }
}

fn events_match(events: &[(Option<String>, String)]) {
    let mut new = ResponsesStreamState::new();
    let mut old = legacy::ResponsesStreamState::new();
    for (name, data) in events {
        let (a, b) = (
            new.on_event(name.as_deref(), data),
            old.on_event(name.as_deref(), data),
        );
        let failed = a.is_err();
        same(a, b, data);
        if failed {
            return;
        }
        assert_eq!(new.is_done(), old.is_done());
    }
    same(new.on_end(), old.on_end(), "end");
}

#[test]
fn answers_and_events_in_odd_shapes_read_as_the_value_code_read_them() {
    let bodies = [
        json!({"id": "r", "status": "completed", "model": "m", "output": [
            {"type": "reasoning", "summary": [{"text": "a"}, {"text": 5}, "x", {"type": "summary_text", "text": "b"}]},
            {"type": "message", "content": [{"type": "output_text", "text": "hi"}, {"type": "refusal", "refusal": "no"}, {"type": "output_text"}, {"type": "refusal", "refusal": 1}, 7, {"type": "other", "text": "x"}]},
            {"type": "message", "content": {"type": "output_text", "text": "not a list"}},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": 5, "arguments": {"a": 1}},
            {"type": 3}, "junk", null, [1]
        ], "usage": {"input_tokens": 3, "output_tokens": "4", "input_tokens_details": {"cached_tokens": 2}, "output_tokens_details": {"reasoning_tokens": 1.5}}}),
        json!({"status": "incomplete", "incomplete_details": {"reason": "content_filter"}, "output": []}),
        json!({"status": "incomplete", "incomplete_details": {"reason": "other"}, "output": []}),
        json!({"status": "incomplete", "incomplete_details": "x", "output": []}),
        json!({"status": "incomplete", "output": []}),
        json!({"status": "cancelled", "output": [], "usage": [1]}),
        json!({"status": 5, "output": [], "usage": null, "model": 7, "id": ["x"]}),
        json!({"status": "completed", "output": [{"type": "function_call"}]}),
        json!({"output": "x"}),
        json!({"output": null}),
        json!({}),
        json!([]),
        json!("s"),
        json!({"output": [], "error": null}),
        json!({"output": [], "error": {"code": "invalid_prompt", "message": "bad"}}),
        json!({"output": [], "error": {"type": "rate_limit_exceeded"}}),
        json!({"output": [], "error": "boom"}),
        json!({"output": [], "error": 5}),
        json!({"output": [], "error": {"code": "vector_store_timeout"}}),
        json!({"output": [], "error": {"code": "image_too_large", "message": 3}}),
    ];
    for b in &bodies {
        answer_matches(b.to_string().as_bytes());
    }
    for raw in [
        &b"{\"output\": [], \"model\": \"a\", \"model\": \"b\"}"[..],
        b"{\"output\": [], \"output\": \"x\"}",
        b"{\"output\": [{\"type\": \"message\", \"content\": [{\"type\": \"output_text\", \"text\": \"\\u00e9\\\"\"}]}]}",
        b"nope",
        b"{\"output\": [",
        b"",
        // what reading into a `Value` refused, in fields the answer does not use: a number out
        // of range, bytes that are not UTF-8, a lone surrogate; a control character is fine
        b"{\"output\": [], \"x\": 1e400}",
        b"{\"output\": [], \"x\": \"\xff\xfe\"}",
        b"{\"output\": [], \"x\": [\"\\ud800\"]}",
        b"{\"output\": [{\"type\": \"message\", \"id\": {\"a\": -1e999}}]}",
        b"{\"output\": [], \"x\": \"a\x01b\"}",
    ] {
        answer_matches(raw);
    }
    let ev = |v: Value| (v["type"].as_str().map(str::to_owned), v.to_string());
    events_match(&[
        ev(json!({"type": "response.created", "response": {"id": "r", "model": "m"}})),
        ev(json!({"type": "response.output_text.delta", "delta": "a"})),
        ev(json!({"type": "response.output_text.delta", "delta": 5})),
        ev(json!({"type": "response.refusal.delta", "delta": "no"})),
        ev(json!({"type": "response.reasoning_summary_text.delta", "delta": "r"})),
        ev(
            json!({"type": "response.output_item.added", "output_index": 3, "item": {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{"}}),
        ),
        ev(
            json!({"type": "response.output_item.added", "output_index": 4, "item": {"type": "function_call", "name": 1}}),
        ),
        ev(
            json!({"type": "response.output_item.added", "output_index": "5", "item": {"type": "message"}}),
        ),
        ev(
            json!({"type": "response.function_call_arguments.delta", "output_index": 3, "delta": "}"}),
        ),
        ev(
            json!({"type": "response.function_call_arguments.delta", "output_index": -1, "delta": "x"}),
        ),
        ev(json!({"type": "response.function_call_arguments.delta", "delta": "y"})),
        ev(json!({"type": 5, "delta": "z"})),
        (
            Some("response.output_text.delta".into()),
            json!({"delta": "by name"}).to_string(),
        ),
        (None, "  ".into()),
        (None, "[DONE]".into()),
        ev(
            json!({"type": "response.incomplete", "response": {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "usage": {"input_tokens": 1}}}),
        ),
        ev(json!({"type": "response.output_text.delta", "delta": "after the end"})),
    ]);
    for failure in [
        json!({"type": "error", "code": "server_error", "message": "boom"}),
        json!({"type": "error", "error": {"code": "rate_limit_exceeded", "message": "slow"}}),
        json!({"type": "error", "error": null}),
        json!({"type": "response.failed", "response": {"error": {"code": "invalid_prompt", "message": "no"}}}),
        json!({"type": "response.failed", "response": {"error": null}}),
        json!({"type": "response.failed"}),
        json!({"type": "response.completed", "response": "x"}),
        json!({"type": "response.completed"}),
    ] {
        events_match(&[
            ev(json!({"type": "response.output_text.delta", "delta": "partial"})),
            ev(failure),
        ]);
    }
    events_match(&[(None, "{not json".into())]);
    events_match(&[(
        None,
        r#"{"type": "response.output_text.delta", "delta": "a", "logprobs": [1e400]}"#.into(),
    )]);
    events_match(&[(
        None,
        r#"{"type": "response.completed", "response": {"output": ["\udc00"]}}"#.into(),
    )]);
    events_match(&[(None, "[1, 2]".into())]);
    events_match(&[ev(
        json!({"type": "response.output_text.delta", "delta": "cut"}),
    )]);
}

fn field(good: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        2 => Just(None),
        5 => good.prop_map(Some),
        1 => any_json().prop_map(Some),
    ]
    .boxed()
}

fn object(fields: Vec<(&'static str, BoxedStrategy<Option<Value>>)>) -> BoxedStrategy<Value> {
    let (names, values): (Vec<_>, Vec<_>) = fields.into_iter().unzip();
    values
        .prop_map(move |vs| {
            Value::Object(
                names
                    .iter()
                    .zip(vs)
                    .filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), v)))
                    .collect(),
            )
        })
        .boxed()
}

fn string() -> BoxedStrategy<Value> {
    text().prop_map(Value::String).boxed()
}

fn one_of(words: &[&'static str]) -> BoxedStrategy<Value> {
    proptest::sample::select(words.to_vec())
        .prop_map(Value::from)
        .boxed()
}

fn count() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => (0u64..5).prop_map(Value::from),
        1 => (-3i64..0).prop_map(Value::from),
        1 => (0.0f64..3.0).prop_map(Value::from),
        1 => (0u64..5).prop_map(|n| Value::from(n.to_string())),
    ]
    .boxed()
}

fn list(item: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    proptest::collection::vec(item, 0..4)
        .prop_map(Value::Array)
        .boxed()
}

fn usage() -> BoxedStrategy<Value> {
    let details = object(vec![
        ("cached_tokens", field(count())),
        ("cache_write_tokens", field(count())),
        ("reasoning_tokens", field(count())),
    ]);
    object(vec![
        ("input_tokens", field(count())),
        ("output_tokens", field(count())),
        ("input_tokens_details", field(details.clone())),
        ("output_tokens_details", field(details)),
    ])
}

fn item() -> BoxedStrategy<Value> {
    let part = object(vec![
        (
            "type",
            field(one_of(&["output_text", "refusal", "summary_text"])),
        ),
        ("text", field(string())),
        ("refusal", field(string())),
    ]);
    object(vec![
        (
            "type",
            field(one_of(&[
                "message",
                "function_call",
                "reasoning",
                "web_search_call",
            ])),
        ),
        ("content", field(list(part.clone()))),
        ("summary", field(list(part))),
        ("call_id", field(string())),
        ("name", field(string())),
        ("arguments", field(string())),
    ])
}

fn response() -> BoxedStrategy<Value> {
    object(vec![
        ("id", field(string())),
        ("model", field(string())),
        (
            "status",
            field(one_of(&[
                "completed",
                "incomplete",
                "failed",
                "in_progress",
            ])),
        ),
        ("output", field(list(item()))),
        ("usage", field(usage())),
        (
            "incomplete_details",
            field(object(vec![(
                "reason",
                field(one_of(&["max_output_tokens", "content_filter", "x"])),
            )])),
        ),
        (
            "error",
            prop_oneof![
                6 => Just(None),
                1 => Just(Some(Value::Null)),
                1 => Just(Some(json!({"code": "rate_limit_exceeded", "message": "m"}))),
                1 => any_json().prop_map(Some),
            ]
            .boxed(),
        ),
    ])
}

fn event() -> BoxedStrategy<(Option<String>, String)> {
    let body = object(vec![
        (
            "type",
            field(one_of(&[
                "response.created",
                "response.output_text.delta",
                "response.refusal.delta",
                "response.reasoning_summary_text.delta",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.completed",
                "response.incomplete",
                "response.failed",
                "error",
                "response.future",
            ])),
        ),
        ("response", field(response())),
        ("output_index", field(count())),
        ("delta", field(string())),
        ("item", field(item())),
        ("error", field(any_json().boxed())),
        ("message", field(string())),
        (
            "code",
            field(one_of(&["server_error", "invalid_request_error"])),
        ),
    ]);
    (
        proptest::option::of(one_of(&["response.output_text.delta", "error"])),
        body,
    )
        .prop_map(|(name, v)| {
            (
                name.and_then(|n| n.as_str().map(str::to_owned)),
                v.to_string(),
            )
        })
        .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bodies_are_the_bytes_the_value_code_sent(req in request()) {
        bodies_match(&req);
    }

    #[test]
    fn random_answers_read_as_the_value_code_read_them(v in response()) {
        answer_matches(v.to_string().as_bytes());
    }

    #[test]
    fn random_event_streams_read_as_the_value_code_read_them(
        events in proptest::collection::vec(event(), 0..8),
    ) {
        events_match(&events);
    }
}
