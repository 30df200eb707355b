//! The typed wire code against the `Value` code it replaced ([`crate::legacy`]): request bodies
//! serialise to the same bytes (including `extra` fields that repeat a body field, and `f32`
//! numbers), and answers, stream chunks and embeddings read to the same core values or to
//! errors of the same kind — on hand-made edge cases, on random requests and random
//! answer-shaped JSON, and on every OpenAI-protocol recording of the shared corpus.

use infermux_core::{
    ChatRequest, CompletionRequest, ContentPart, EmbeddingRequest, ImageSource, Message,
    ResponseFormat, Result, Role, Tool, ToolCall, ToolChoice,
};
use infermux_http::decode::SseDecoder;
use infermux_openai_compat::wire::{self, ChatBody, CompletionBody, EmbeddingBody};
use infermux_testkit::Cassette;
use infermux_testkit::helpers::files_with;
use infermux_testkit::oracle::plain_body;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::legacy;
use crate::{chat_request, image_request, tool_request};

/// Both outcomes equal: the same value, or errors of the same kind with the same partial text.
#[track_caller]
fn same<T: PartialEq + std::fmt::Debug>(new: Result<T>, old: Result<T>, what: &str) {
    match (new, old) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{what}"),
        (Err(a), Err(b)) => {
            assert_eq!(a.kind(), b.kind(), "{what}: {a} vs {b}");
            assert_eq!(a.partial_text(), b.partial_text(), "{what}");
        }
        (a, b) => panic!("{what}: typed {a:?}, legacy {b:?}"),
    }
}

fn chat_bytes_match(req: &ChatRequest) {
    for stream in [false, true] {
        let new = serde_json::to_vec(&ChatBody::new(req, stream)).unwrap();
        let old = serde_json::to_vec(&legacy::chat_body(req, stream)).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&new),
            String::from_utf8_lossy(&old),
            "stream: {stream}"
        );
        assert_eq!(wire::chat_body(req, stream), legacy::chat_body(req, stream));
    }
}

fn completion_bytes_match(req: &CompletionRequest) {
    let new = serde_json::to_string(&CompletionBody::new(req, false)).unwrap();
    let old = serde_json::to_string(&legacy::completion_body(req)).unwrap();
    assert_eq!(new, old);
    let new = serde_json::to_string(&CompletionBody::new(req, true)).unwrap();
    let old = serde_json::to_string(&legacy::completion_stream_body(req)).unwrap();
    assert_eq!(new, old);
    assert_eq!(wire::completion_body(req), legacy::completion_body(req));
    assert_eq!(
        wire::completion_stream_body(req),
        legacy::completion_stream_body(req)
    );
}

fn embedding_bytes_match(req: &EmbeddingRequest) {
    let new = serde_json::to_string(&EmbeddingBody::new(req)).unwrap();
    let old = serde_json::to_string(&legacy::embedding_body(req)).unwrap();
    assert_eq!(new, old);
    assert_eq!(wire::embedding_body(req), legacy::embedding_body(req));
}

/// Every branch of the message and body code: text joined from several parts, images by URL
/// and by bytes, refusals (the last one is sent), names, tool calls with and without text,
/// tool results, parts the protocol has no place for, every tool choice and response format.
fn edge_requests() -> Vec<ChatRequest> {
    let mut talk = Message::user_parts(vec![
        ContentPart::text("one \"quoted\" "),
        ContentPart::text("two\n"),
        ContentPart::text("é 🦀 \u{1}"),
        ContentPart::Thinking {
            text: "hidden".into(),
            signature: Some("sig".into()),
        },
    ]);
    talk.name = Some("ann".into());
    let mut refusing = Message::assistant("");
    refusing.content = vec![
        ContentPart::Refusal {
            text: "first".into(),
        },
        ContentPart::text("and text"),
        ContentPart::Refusal {
            text: "last".into(),
        },
    ];
    let mut images = Message::user_parts(vec![
        ContentPart::text(""),
        ContentPart::image_url("https://example.com/a.png"),
        ContentPart::Image {
            source: ImageSource::Base64 {
                media_type: "image/jpeg".into(),
                data: "/9j/4AAQ".into(),
            },
            detail: Some("high".into()),
        },
        ContentPart::Refusal { text: "r".into() },
        ContentPart::Other {
            raw: json!({"type": "audio"}),
        },
    ]);
    images.name = Some("bob".into());
    let calls = vec![
        ToolCall::new("call_1", "f", r#"{"a":1}"#),
        ToolCall::new("", "g", ""),
    ];
    let mut calls_with_text = Message::assistant_tool_calls(calls.clone());
    calls_with_text.content = vec![ContentPart::text("let me look")];
    let mut calls_with_empty_text = Message::assistant_tool_calls(calls.clone());
    calls_with_empty_text.content = vec![ContentPart::text("")];
    let mut user_with_calls = Message::user("odd");
    user_with_calls.tool_calls = calls.clone();
    let mut empty = Message::system("");
    empty.content.clear();
    let messages = vec![
        Message::system("sys"),
        Message::new(Role::Developer, "dev"),
        talk,
        refusing,
        images,
        Message::assistant_tool_calls(calls),
        calls_with_text,
        calls_with_empty_text,
        user_with_calls,
        Message::tool_result("call_1", "18 °C"),
        Message::new(Role::Other("critic".into()), "hm"),
        empty,
    ];
    let mut strict = Tool::new(
        "f",
        "does f",
        json!({"type": "object", "properties": {"b": {}, "a": {"type": "string"}}}),
    );
    strict.strict = Some(true);
    let mut bare = Tool::new("g", "", json!({}));
    bare.description = None;
    bare.strict = Some(false);
    let mut full = ChatRequest::new("m-ödel", messages)
        .with_tools(vec![strict, bare])
        .with_temperature(0.7)
        .with_max_tokens(100)
        .with_stop(vec!["\n".into(), "END".into()])
        .with_seed(-3);
    full.top_p = Some(0.9);
    full.parallel_tool_calls = Some(false);
    full.user = Some("u-1".into());
    let mut out = vec![
        full.clone(),
        chat_request(),
        image_request(),
        tool_request(),
    ];
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
            name: "answer".into(),
            schema: json!({"type": "object", "required": ["x"]}),
            strict: Some(true),
        },
        ResponseFormat::JsonSchema {
            name: "loose".into(),
            schema: json!(true),
            strict: None,
        },
    ] {
        out.push(full.clone().with_response_format(format));
    }
    for t in [0.0, 1.0, 0.1, 1e-7, f32::MAX, f32::NAN, f32::INFINITY] {
        out.push(chat_request().with_temperature(t));
    }
    out
}

/// `extra` keys before, between and after the body's, and keys that repeat body fields (the
/// `extra` value wins), on top of each request.
fn with_extras(req: &ChatRequest) -> Vec<ChatRequest> {
    let sets: [&[(&str, Value)]; 6] = [
        &[("a_first", json!(1)), ("zz_last", json!([1, 2]))],
        &[
            ("logprobs", json!(true)),
            ("n", json!(2)),
            ("stream_x", json!({})),
        ],
        &[("model", json!("override")), ("messages", json!([]))],
        &[
            ("max_tokens", json!(7)),
            ("temperature", json!(null)),
            ("tools", json!([{"type": "browser_search"}])),
        ],
        &[
            ("stream", json!(false)),
            ("stream_options", json!({"include_usage": false})),
        ],
        &[
            ("max_completion_tokens", json!(9)),
            ("user", json!(5)),
            ("top_p", json!("x")),
            ("tool_choice", json!("none")),
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
fn chat_bodies_are_the_bytes_the_value_code_sent() {
    for req in edge_requests() {
        chat_bytes_match(&req);
        for r in with_extras(&req) {
            chat_bytes_match(&r);
        }
    }
}

#[test]
fn completion_and_embedding_bodies_are_the_bytes_the_value_code_sent() {
    let mut c = CompletionRequest::new("m", "Once \"upon\"")
        .with_max_tokens(5)
        .with_temperature(0.3);
    c.stop = vec!["\n".into()];
    c.seed = Some(9);
    let mut e = EmbeddingRequest::new("e", ["a", "b\u{0}"]);
    e.dimensions = Some(256);
    for extra in [
        json!({}),
        json!({"echo": false, "a": 1, "zz": 2}),
        json!({"stream": false, "stream_options": {"include_usage": false}, "prompt": ["x", "y"]}),
        json!({"model": "o", "max_tokens": null, "encoding_format": "base64", "input": [[1, 2]], "dimensions": 3}),
    ] {
        let Value::Object(extra) = extra else {
            unreachable!()
        };
        for (mut c, mut e) in [
            (c.clone(), e.clone()),
            (
                CompletionRequest::new("", ""),
                EmbeddingRequest::new("", Vec::<String>::new()),
            ),
        ] {
            c.extra = extra.clone();
            e.extra = extra.clone();
            completion_bytes_match(&c);
            embedding_bytes_match(&e);
        }
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z \"\\\\\n]{1,8}", "\\PC{0,4}"]
}

fn part() -> impl Strategy<Value = ContentPart> {
    prop_oneof![
        4 => text().prop_map(ContentPart::text),
        1 => text().prop_map(ContentPart::image_url),
        1 => (text(), text(), proptest::option::of(text())).prop_map(|(m, d, detail)| {
            ContentPart::Image {
                source: ImageSource::Base64 { media_type: m, data: d },
                detail,
            }
        }),
        1 => text().prop_map(|text| ContentPart::Refusal { text }),
        1 => text().prop_map(|text| ContentPart::Thinking { text, signature: None }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        prop_oneof![
            Just(Role::System),
            Just(Role::User),
            Just(Role::Assistant),
            Just(Role::Tool)
        ],
        proptest::collection::vec(part(), 0..4),
        proptest::option::of(text()),
        proptest::collection::vec((text(), text(), text()), 0..3),
        proptest::option::of(text()),
    )
        .prop_map(|(role, content, name, calls, call_id)| {
            let mut m = Message::new(role, "");
            m.content = content;
            m.name = name;
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
        any::<u64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        text().prop_map(Value::String),
    ]
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys that repeat body fields, and others.
fn extra_key() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "model",
            "messages",
            "max_tokens",
            "max_completion_tokens",
            "stream",
            "stream_options",
            "temperature",
            "tools",
            "tool_choice",
            "top_p",
            "user",
            "seed",
            "stop",
            "response_format",
            "parallel_tool_calls",
            "prompt",
            "input",
            "encoding_format",
            "dimensions",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,12}",
    ]
}

fn extra() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map(extra_key(), scalar(), 0..4)
        .prop_map(|m| m.into_iter().collect())
}

prop_compose! {
    fn chat()(
        model in text(),
        messages in proptest::collection::vec(message(), 0..4),
        temperature in proptest::option::of(any::<f32>()),
        top_p in proptest::option::of(0f32..1.0),
        max_tokens in proptest::option::of(any::<u32>()),
        stop in proptest::collection::vec(text(), 0..3),
        seed in proptest::option::of(any::<i64>()),
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
        r.stop = stop;
        r.seed = seed;
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bodies_are_the_bytes_the_value_code_sent(
        req in chat(),
        prompt in text(),
        inputs in proptest::collection::vec(text(), 0..3),
        dimensions in proptest::option::of(any::<u32>()),
    ) {
        chat_bytes_match(&req);
        let mut c = CompletionRequest::new(req.model.clone(), prompt);
        c.max_tokens = req.max_tokens;
        c.temperature = req.temperature;
        c.stop = req.stop.clone();
        c.seed = req.seed;
        c.extra = req.extra.clone();
        completion_bytes_match(&c);
        let mut e = EmbeddingRequest::new(req.model.clone(), inputs);
        e.dimensions = dimensions;
        e.extra = req.extra.clone();
        embedding_bytes_match(&e);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A body leaving fields out is the body of the request without them (a field `extra`
    /// names is still sent, from `extra`, in both).
    #[test]
    fn a_body_leaving_fields_out_is_the_body_of_the_request_without_them(
        req in chat(),
        bits in 0u8..32,
        stream in any::<bool>(),
    ) {
        let omitted = wire::Omitted::from_bits(bits);
        let mut cleared = req.clone();
        if omitted.contains(wire::Omitted::TEMPERATURE) { cleared.temperature = None; }
        if omitted.contains(wire::Omitted::TOP_P) { cleared.top_p = None; }
        if omitted.contains(wire::Omitted::STOP) { cleared.stop.clear(); }
        if omitted.contains(wire::Omitted::SEED) { cleared.seed = None; }
        if omitted.contains(wire::Omitted::PARALLEL_TOOL_CALLS) { cleared.parallel_tool_calls = None; }
        let left_out = serde_json::to_string(&ChatBody::new(&req, stream).omitting(omitted)).unwrap();
        let without = serde_json::to_string(&ChatBody::new(&cleared, stream)).unwrap();
        prop_assert_eq!(left_out, without);
    }
}

// ---------------------------------------------------------------------------------------------
// Answers

/// Reads `payloads` with both stream states, comparing every step (and the end).
fn stream_matches(payloads: &[String]) {
    let mut new = wire::ChatStreamState::new();
    let mut old = legacy::ChatStreamState::new();
    for p in payloads {
        let (a, b) = (new.on_data(p), old.on_data(p));
        let failed = a.is_err();
        same(a, b, p);
        if failed {
            return;
        }
    }
    same(new.on_end(), old.on_end(), "end");
}

/// Reads `body` as every kind of answer with both codes.
fn answer_matches(body: &[u8]) {
    let what = String::from_utf8_lossy(body);
    same(wire::parse_chat(body), legacy::parse_chat(body), &what);
    same(
        wire::parse_completion(body),
        legacy::parse_completion(body),
        &what,
    );
    for n in 0..3 {
        same(
            wire::parse_embeddings(body, n),
            legacy::parse_embeddings(body, n),
            &what,
        );
    }
    if let Ok(text) = std::str::from_utf8(body) {
        stream_matches(&[text.to_owned(), "[DONE]".to_owned()]);
    }
}

#[test]
fn answers_in_every_odd_shape_read_as_the_value_code_read_them() {
    let bodies = [
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi", "tool_calls": [
            {"id": 7, "type": "function", "function": {"name": "f", "arguments": {"b": [1, 2.5, null], "a": "x"}}},
            {"id": -2, "function": {"arguments": 12}},
            {"id": 1.5, "function": {"arguments": true}},
            {"id": 3.0, "function": {"arguments": -0.0}},
            {"id": 1e300, "function": {"arguments": 18446744073709551615u64}},
            {"id": true, "function": {"arguments": [1]}},
            {"id": null, "index": 3, "function": {"arguments": null}}
        ]}, "finish_reason": "tool_calls"}]}),
        json!({"choices": [{"message": {"tool_calls": {"id": "one", "function": {"name": "f", "arguments": "{}"}}}}]}),
        json!({"choices": [{"message": {"tool_calls": "nope"}}]}),
        json!({"choices": [{"message": {"tool_calls": 3}}]}),
        json!({"choices": [{"message": {"tool_calls": [null]}}]}),
        json!({"choices": [{"message": {"tool_calls": [{"function": null}]}}]}),
        json!({"choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"text": 5}, "junk", [1], {"text": "b"}, null]}}]}),
        json!({"choices": [{"message": {"content": {"text": "obj"}, "reasoning_content": "", "reasoning": "r"}}]}),
        json!({"choices": [{"message": {"content": 5, "reasoning_content": "think", "refusal": "no"}}]}),
        json!({"choices": [{"message": {"content": "x", "role": 5}}]}),
        json!({"choices": [{"delta": {"content": "d"}, "text": "t", "finish_reason": ""}]}),
        json!({"choices": [{"index": 1, "text": "second"}, {"index": 0, "text": "first", "finish_reason": "eos_token"}]}),
        json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}),
        json!({"choices": [{"message": {}}], "usage": {"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": "2"}, "completion_tokens_details": {"reasoning_tokens": 1.0}}}),
        json!({"choices": [{"message": {}}], "usage": {"prompt_tokens_details": [1], "completion_tokens_details": {"reasoning_tokens": 5, "x": {}}}}),
        json!({"choices": [{"message": {}}], "usage": {"prompt_tokens_details": {"cached_tokens": -0}, "completion_tokens_details": 7}}),
        json!({"choices": [{"message": {}}], "usage": [1, 2]}),
        json!({"choices": [{"message": {}}], "usage": {"prompt_tokens": "3"}}),
        json!({"choices": [{"message": {}}], "usage": null, "x_groq": {"usage": {"prompt_tokens": 9}}}),
        json!({"choices": [{"message": {}}], "x_groq": {"id": "req_1"}}),
        json!({"choices": null}),
        json!({"choices": [null]}),
        json!({"id": 5, "choices": []}),
        json!({"id": "i", "model": "m\u{e9}\"q", "choices": [{"message": {"content": "\u{1F980}"}}]}),
        json!({"error": {"message": "quota", "type": "insufficient_quota", "code": 429}}),
        json!({"error": "plain", "choices": []}),
        json!({"error": null, "choices": [{"message": {"content": "ok"}}]}),
        json!({"data": [{"index": 1, "embedding": [1, -2, 3.5]}, {"index": 0, "embedding": "AACAPwAAAEA="}], "model": "e", "usage": {"prompt_tokens": 2}}),
        json!({"data": [{"embedding": [1, "x", 2]}]}),
        json!({"data": [{"embedding": {"a": 1}}]}),
        json!({"data": [{"embedding": "AAA="}]}),
        json!({"data": [{"embedding": "!!"}]}),
        json!({"data": [{"index": null, "embedding": []}], "model": null}),
        json!({"data": [{}]}),
        json!([1, 2]),
        json!("text"),
    ];
    for b in &bodies {
        answer_matches(b.to_string().as_bytes());
    }
    for raw in [
        &b"{\"choices\": [{\"message\": {\"content\": \"a\\u00e9\\n\"}}], \"model\": \"m\\/x\", \"id\": \"\\u0041\"}"[..],
        b"{\"choices\": [{\"message\": {\"content\": \"a\", \"content\": \"b\"}}]}",
        b"{\"choices\": [], \"choices\": []}",
        b"{\"choices\": [{\"message\": {\"tool_calls\": [{\"function\": {\"arguments\": {\"a\": 1, \"a\": 2}}}]}}]}",
        b"not json",
        b"{\"choices\": [{\"message\": {\"content\": \"cut",
        b"",
        b"  {\"choices\": [{\"message\": {\"content\": \"padded\"}}]}  ",
        // what reading into a `Value` refused where the old code read one (content parts,
        // usage details, arguments, ids), and where it skipped unknown fields unchecked
        b"{\"choices\": [{\"message\": {\"content\": [{\"text\": \"a\", \"x\": 1e400}]}}]}",
        b"{\"choices\": [{\"message\": {\"content\": [{\"text\": \"a\", \"x\": \"\\ud800\"}]}}]}",
        b"{\"choices\": [{\"message\": {}}], \"usage\": {\"prompt_tokens_details\": {\"audio\": \"\xff\"}}}",
        b"{\"choices\": [{\"message\": {\"tool_calls\": [{\"id\": [1e400], \"function\": {\"arguments\": {\"a\": 1e400}}}]}}]}",
        b"{\"choices\": [{\"message\": {\"content\": 5}}], \"x\": 1e400, \"y\": \"\xff\"}",
        b"{\"data\": [{\"embedding\": {\"a\": 1e400}}]}",
    ] {
        answer_matches(raw);
    }
}

/// Fields as a server may send them: absent, the expected type, or any JSON at all.
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

/// A count, mostly: small, large, negative, fractional or a number in a string.
fn count() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => (0u64..5).prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => (-5i64..0).prop_map(Value::from),
        1 => (0.0f64..5.0).prop_map(Value::from),
        1 => (0u64..5).prop_map(|n| Value::from(n.to_string())),
    ]
    .boxed()
}

fn tool_call() -> BoxedStrategy<Value> {
    object(vec![
        ("index", field(count())),
        (
            "id",
            field(prop_oneof![string(), count(), (-5.0f64..5.0).prop_map(Value::from)].boxed()),
        ),
        (
            "function",
            field(object(vec![
                ("name", field(string())),
                (
                    "arguments",
                    field(prop_oneof![string(), any_json()].boxed()),
                ),
            ])),
        ),
    ])
}

fn wire_message() -> BoxedStrategy<Value> {
    let part = object(vec![("type", field(string())), ("text", field(string()))]);
    object(vec![
        ("role", field(string())),
        (
            "content",
            field(
                prop_oneof![
                    string(),
                    proptest::collection::vec(part, 0..3).prop_map(Value::Array)
                ]
                .boxed(),
            ),
        ),
        ("reasoning_content", field(string())),
        ("reasoning", field(string())),
        ("refusal", field(string())),
        (
            "tool_calls",
            field(
                prop_oneof![
                    proptest::collection::vec(tool_call(), 0..3).prop_map(Value::Array),
                    tool_call()
                ]
                .boxed(),
            ),
        ),
        // the legacy single call, and cited sources (any JSON too, as every field)
        (
            "function_call",
            field(object(vec![
                ("name", field(string())),
                (
                    "arguments",
                    field(prop_oneof![string(), any_json()].boxed()),
                ),
            ])),
        ),
        (
            "annotations",
            field(
                proptest::collection::vec(
                    prop_oneof![
                        object(vec![("type", field(string())), ("url", field(string()))]),
                        any_json().boxed(),
                    ],
                    0..3,
                )
                .prop_map(Value::Array)
                .boxed(),
            ),
        ),
    ])
}

fn usage() -> BoxedStrategy<Value> {
    let details = object(vec![
        ("cached_tokens", field(count())),
        ("cache_write_tokens", field(count())),
        ("reasoning_tokens", field(count())),
    ]);
    object(vec![
        ("prompt_tokens", field(count())),
        ("completion_tokens", field(count())),
        ("prompt_tokens_details", field(details.clone())),
        ("completion_tokens_details", field(details)),
    ])
}

fn answer() -> BoxedStrategy<Value> {
    let embedding = object(vec![
        ("index", field(count())),
        (
            "embedding",
            field(
                prop_oneof![
                    proptest::collection::vec(
                        prop_oneof![count(), (-2.0f64..2.0).prop_map(Value::from).boxed()],
                        0..4
                    )
                    .prop_map(Value::Array),
                    "[A-Za-z0-9+/]{0,8}={0,2}".prop_map(Value::String),
                ]
                .boxed(),
            ),
        ),
    ]);
    let choice = object(vec![
        ("index", field(count())),
        ("message", field(wire_message())),
        ("delta", field(wire_message())),
        ("text", field(string())),
        (
            "finish_reason",
            field(
                proptest::sample::select(vec!["stop", "length", "", "tool_calls", "eos"])
                    .prop_map(Value::from)
                    .boxed(),
            ),
        ),
    ]);
    object(vec![
        ("id", field(string())),
        ("model", field(string())),
        (
            "choices",
            field(
                proptest::collection::vec(choice, 0..3)
                    .prop_map(Value::Array)
                    .boxed(),
            ),
        ),
        ("usage", field(usage())),
        ("x_groq", field(object(vec![("usage", field(usage()))]))),
        (
            "data",
            field(
                proptest::collection::vec(embedding, 0..3)
                    .prop_map(Value::Array)
                    .boxed(),
            ),
        ),
        (
            "error",
            prop_oneof![
                8 => Just(None),
                1 => Just(Some(json!({"message": "boom", "code": 503}))),
                1 => any_json().prop_map(Some),
            ]
            .boxed(),
        ),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_answers_read_as_the_value_code_read_them(v in answer()) {
        answer_matches(v.to_string().as_bytes());
    }

    #[test]
    fn random_streams_read_as_the_value_code_read_them(
        chunks in proptest::collection::vec(answer(), 0..6),
        done in any::<bool>(),
    ) {
        let mut payloads: Vec<String> = chunks.iter().map(Value::to_string).collect();
        if done {
            payloads.push("[DONE]".into());
        }
        stream_matches(&payloads);
    }
}

// ---------------------------------------------------------------------------------------------
// The shared corpus

/// The `data:` payloads of an SSE body.
fn sse_payloads(body: &[u8]) -> Vec<String> {
    let mut d = SseDecoder::new();
    let mut out: Vec<String> = d
        .feed(body)
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.data)
        .collect();
    out.extend(d.finish().unwrap_or_default().into_iter().map(|e| e.data));
    out
}

#[test]
fn the_recorded_openai_protocol_traffic_reads_and_rebuilds_as_before() {
    let mut cassettes = Vec::new();
    for provider in ["openai", "groq"] {
        let Some(dir) = infermux_testkit::shared_fixture(&format!("fixtures/cassettes/{provider}"))
        else {
            return;
        };
        cassettes.extend(files_with(&dir, &["yaml"]).unwrap());
    }
    let (mut requests, mut answers, mut streams) = (0, 0, 0);
    for file in cassettes
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
    {
        let c = Cassette::load(file).unwrap();
        for it in &c.interactions {
            let path = it.request.path();
            let Some(req) = it.request.json() else {
                continue;
            };
            let body = plain_body(&it.response).unwrap();
            let sse = it
                .response
                .header("content-type")
                .is_some_and(|t| t.contains("event-stream"));
            if path.ends_with("/chat/completions") {
                let chat = wire::chat_request_from_json(&req).unwrap();
                chat_bytes_match(&chat);
                requests += 1;
            } else if path.ends_with("/completions") {
                let c = wire::completion_request_from_json(&req).unwrap();
                completion_bytes_match(&c);
                requests += 1;
            } else if path.ends_with("/embeddings") {
                let e = wire::embedding_request_from_json(&req).unwrap();
                embedding_bytes_match(&e);
                requests += 1;
            } else {
                continue;
            }
            if sse {
                stream_matches(&sse_payloads(&body));
                streams += 1;
            } else {
                answer_matches(&body);
                answers += 1;
            }
        }
    }
    let Some(payloads) = infermux_testkit::shared_fixture("fixtures/recorded_payloads") else {
        return;
    };
    let mut recorded = Vec::new();
    for provider in ["openai", "groq"] {
        recorded.extend(files_with(&payloads.join(provider), &["txt", "json"]).unwrap_or_default());
    }
    for p in recorded {
        let text = std::fs::read_to_string(&p).unwrap();
        if p.to_string_lossy().ends_with(".chunks.txt") {
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            stream_matches(&lines);
            streams += 1;
        } else if p.extension().is_some_and(|x| x == "json") {
            answer_matches(text.as_bytes());
            answers += 1;
        }
    }
    // the corpus is there: this test read something of each kind
    assert!(
        requests >= 20 && answers >= 20 && streams >= 5,
        "{requests} requests, {answers} answers, {streams} streams"
    );
}

/// A typed body is the request's, whatever `Value` wrapper a caller builds around it.
#[test]
fn a_typed_body_flattens_into_a_callers_struct() {
    #[derive(serde::Serialize)]
    struct Wrapped<'a> {
        #[serde(flatten)]
        chat: ChatBody<'a>,
        top_k: u32,
    }
    let req = tool_request().with_extra("n", json!(1));
    let v = serde_json::to_value(Wrapped {
        chat: ChatBody::new(&req, true),
        top_k: 40,
    })
    .unwrap();
    let mut want = legacy::chat_body(&req, true);
    want["top_k"] = json!(40);
    assert_eq!(v, want);
}

/// Moderation, image and speech bodies go on the wire as the `json!` bodies they were.
#[tokio::test]
async fn media_bodies_are_the_bytes_the_value_code_sent() {
    use infermux_core::RequestContext;
    use infermux_openai_compat::media::{ImageRequest, SpeechRequest};

    let mut image = ImageRequest::new("dall-e-3", "a \"red\" fox");
    let mut speech = SpeechRequest::new("tts-1", "Hello", "alloy");
    let inputs = vec!["one".to_owned(), "two\n".to_owned()];
    for full in [false, true] {
        if full {
            image.n = Some(2);
            image.size = Some("1024x1024".into());
            image.response_format = Some("b64_json".into());
            speech.response_format = Some("opus".into());
        }
        let model = full.then_some("omni-moderation-latest");
        let mut legacy_image = json!({"model": image.model, "prompt": image.prompt});
        if let Some(n) = image.n {
            legacy_image["n"] = json!(n);
        }
        if let Some(s) = &image.size {
            legacy_image["size"] = json!(s);
        }
        if let Some(f) = &image.response_format {
            legacy_image["response_format"] = json!(f);
        }
        let mut legacy_speech =
            json!({"model": speech.model, "input": speech.input, "voice": speech.voice});
        if let Some(f) = &speech.response_format {
            legacy_speech["response_format"] = json!(f);
        }
        let mut legacy_moderation = json!({ "input": inputs });
        if let Some(m) = model {
            legacy_moderation["model"] = json!(m);
        }
        assert_eq!(image.body(), legacy_image);
        assert_eq!(speech.body(), legacy_speech);

        let ctx = RequestContext::new();
        let (url, seen) = infermux_testkit::capture(r#"{"data": []}"#).await;
        let p = crate::provider(&url);
        p.media().generate_images(&image, &ctx).await.unwrap();
        let sent = seen.await.unwrap().body;
        assert_eq!(sent, serde_json::to_vec(&legacy_image).unwrap());

        let (url, seen) = infermux_testkit::capture("{}").await;
        crate::provider(&url)
            .media()
            .speech(&speech, &ctx)
            .await
            .unwrap();
        assert_eq!(
            seen.await.unwrap().body,
            serde_json::to_vec(&legacy_speech).unwrap()
        );

        let (url, seen) =
            infermux_testkit::capture(r#"{"results": [{"flagged": false}, {"flagged": true}]}"#)
                .await;
        crate::provider(&url)
            .media()
            .moderate(model, &inputs, &ctx)
            .await
            .unwrap();
        assert_eq!(
            seen.await.unwrap().body,
            serde_json::to_vec(&legacy_moderation).unwrap()
        );
    }
}

/// A call is streamed or not as it was made: `extra.stream` changes neither (a plain call
/// answered as SSE, or a stream answered whole, failed to decode).
#[test]
fn extra_never_changes_whether_a_call_streams() {
    use infermux_openai_compat::wire::{chat_body, completion_body, completion_stream_body};
    let mut chat = ChatRequest::new("m", vec![Message::user("hi")]);
    chat.extra.insert("stream".into(), json!(true));
    assert!(chat_body(&chat, false).get("stream").is_none());
    chat.extra.insert("stream".into(), json!(false));
    assert_eq!(chat_body(&chat, true)["stream"], true);
    let mut completion = CompletionRequest::new("m", "hi");
    completion.extra.insert("stream".into(), json!(true));
    assert!(completion_body(&completion).get("stream").is_none());
    completion.extra.insert("stream".into(), json!(false));
    assert_eq!(completion_stream_body(&completion)["stream"], true);
}
