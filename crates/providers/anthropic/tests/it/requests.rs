//! Request bodies: system prompt, tools and tool choice, tool results, images, stop sequences,
//! thinking round-trips, the `max_tokens` default, and the inverse reading of recorded bodies.

use infermux_anthropic::wire;
use infermux_core::{ChatRequest, ContentPart, Message, Role, ToolCall, ToolChoice};
use serde_json::json;

use crate::tool_request;

#[test]
fn tools_choice_system_and_default_max_tokens() {
    let body = wire::chat_body(&tool_request(), false);
    assert_eq!(body["tools"][0]["name"], "get_weather");
    assert_eq!(body["tools"][0]["input_schema"]["required"][0], "city");
    assert_eq!(body["tool_choice"], json!({"type": "any"}));
    for (choice, wire_choice) in [
        (ToolChoice::Auto, json!({"type": "auto"})),
        (ToolChoice::None, json!({"type": "none"})),
        (
            ToolChoice::Tool("get_weather".into()),
            json!({"type": "tool", "name": "get_weather"}),
        ),
    ] {
        let b = wire::chat_body(&tool_request().with_tool_choice(choice), false);
        assert_eq!(b["tool_choice"], wire_choice);
    }
    // without tools there is no tool_choice ("tool_choice may only be specified while
    // providing tools": a 400), unless server tools come in `extra`
    for choice in [ToolChoice::Auto, ToolChoice::Required, ToolChoice::None] {
        let bare = ChatRequest::new("claude", vec![Message::user("Hi")]).with_tool_choice(choice);
        assert!(wire::chat_body(&bare, false).get("tool_choice").is_none());
        let mut server_tools = bare.clone();
        server_tools.extra.insert(
            "tools".into(),
            json!([{"type": "web_search_20250305", "name": "web_search"}]),
        );
        assert!(
            wire::chat_body(&server_tools, false)
                .get("tool_choice")
                .is_some()
        );
    }
    let mut no_parallel = tool_request();
    no_parallel.parallel_tool_calls = Some(false);
    assert_eq!(
        wire::chat_body(&no_parallel, false)["tool_choice"]["disable_parallel_tool_use"],
        true
    );

    let req = ChatRequest::new(
        "claude",
        vec![Message::system("Be brief."), Message::user("Hi")],
    )
    .with_stop(vec!["\n\nHuman:".into()]);
    let b = wire::chat_body(&req, true);
    assert_eq!(b["system"], "Be brief.");
    assert_eq!(b["max_tokens"], wire::DEFAULT_MAX_TOKENS);
    assert_eq!(b["stop_sequences"][0], "\n\nHuman:");
    assert_eq!(b["stream"], true);
    assert_eq!(b["messages"].as_array().unwrap().len(), 1);
    assert!(b.get("seed").is_none());
}

#[test]
fn tool_results_images_and_thinking_round_trip() {
    let mut assistant = Message::assistant_tool_calls(vec![ToolCall::new(
        "toolu_1",
        "get_weather",
        r#"{"city":"Paris"}"#,
    )]);
    assistant.content = vec![
        ContentPart::Thinking {
            text: "I should call the tool.".into(),
            signature: Some("sig-abc".into()),
        },
        ContentPart::RedactedThinking {
            data: "opaque".into(),
        },
    ];
    let req = ChatRequest::new(
        "claude",
        vec![
            Message::user_parts(vec![
                ContentPart::text("Weather here?"),
                ContentPart::image_base64("image/png", "iVBORw0KGgo="),
                ContentPart::image_url("https://example.com/cat.jpg"),
                ContentPart::image_url("data:image/jpeg;base64,/9j/4AAQ"),
            ]),
            assistant,
            Message::tool_result("toolu_1", "18°C and sunny"),
            Message::user("Thanks!"),
        ],
    );
    let b = wire::chat_body(&wire::with_thinking(req.clone(), 2048), false);
    let msgs = b["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3, "tool result and the next user turn merge");
    let user = &msgs[0]["content"];
    assert_eq!(
        user[1]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="})
    );
    assert_eq!(
        user[2]["source"],
        json!({"type": "url", "url": "https://example.com/cat.jpg"})
    );
    assert_eq!(user[3]["source"]["media_type"], "image/jpeg");
    let a = &msgs[1]["content"];
    assert_eq!(
        a[0],
        json!({"type": "thinking", "thinking": "I should call the tool.", "signature": "sig-abc"})
    );
    assert_eq!(a[1], json!({"type": "redacted_thinking", "data": "opaque"}));
    assert_eq!(
        a[2],
        json!({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}})
    );
    assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
    assert_eq!(msgs[2]["content"][0]["tool_use_id"], "toolu_1");
    assert_eq!(
        msgs[2]["content"][1],
        json!({"type": "text", "text": "Thanks!"})
    );
    assert_eq!(
        b["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    assert!(b["max_tokens"].as_u64().unwrap() > 2048);

    // the inverse reads the body back into the same conversation
    let back = wire::chat_request_from_json(&b).unwrap();
    assert_eq!(back.messages[1].role, Role::Assistant);
    assert_eq!(back.messages[1].tool_calls[0].name, "get_weather");
    assert_eq!(back.messages[1].content, req.messages[1].content);
    assert_eq!(back.messages[2].tool_call_id.as_deref(), Some("toolu_1"));
    assert_eq!(back.extra["thinking"]["budget_tokens"], 2048);
    assert_eq!(wire::chat_body(&back, false)["messages"], b["messages"]);
}

/// Raw blocks go back as they came, but not another provider's items kept raw (OpenAI
/// Responses items after a fallback, which Anthropic refuses; Gemini parts have no `type`).
#[test]
fn raw_blocks_go_back_but_not_another_providers_items() {
    let mut turn = Message::assistant("Done.");
    for raw in [
        json!({"type": "container_upload", "file_id": "file_1"}),
        json!({"type": "web_search_call", "id": "ws_1", "status": "completed"}),
        json!({"type": "custom_tool_call", "call_id": "c1", "name": "g", "input": "x"}),
        json!({"type": "mcp_list_tools", "tools": []}),
        json!({"executableCode": {"language": "PYTHON", "code": "1"}}),
    ] {
        turn.content.push(ContentPart::Other { raw });
    }
    let req = ChatRequest::new(
        "claude",
        vec![Message::user("go"), turn, Message::user("thanks")],
    );
    let b = wire::chat_body(&req, false);
    let types: Vec<&str> = b["messages"][1]["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert_eq!(types, ["text", "container_upload"], "{b}");
}

/// What the API refuses is not sent: reasoning without a signature (another provider's, after
/// a fallback: "thinking.signature: Field required"), empty text blocks and a turn left with
/// no block ("text content blocks must be non-empty"), its neighbours merged so the turns
/// still alternate.
#[test]
fn unsigned_thinking_empty_text_and_empty_turns_are_not_sent() {
    let mut reasoned = Message::assistant("The answer is 4.");
    reasoned.content.insert(
        0,
        ContentPart::Thinking {
            text: "2+2 is 4".into(),
            signature: None,
        },
    );
    let mut only_unsigned = Message::assistant("");
    only_unsigned.content = vec![ContentPart::Thinking {
        text: "hmm".into(),
        signature: None,
    }];
    let req = ChatRequest::new(
        "claude",
        vec![
            Message::user("2+2?"),
            reasoned,
            Message::user_parts(vec![
                ContentPart::text(""),
                ContentPart::image_url("https://example.com/a.png"),
            ]),
            only_unsigned,
            Message::user("and 3+3?"),
            Message::assistant(""),
            Message::user(""),
        ],
    );
    let b = wire::chat_body(&req, false);
    let msgs = b["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3, "{b}");
    assert_eq!(
        msgs[0]["content"],
        json!([{"type": "text", "text": "2+2?"}])
    );
    assert_eq!(
        msgs[1],
        json!({"role": "assistant", "content": [{"type": "text", "text": "The answer is 4."}]})
    );
    // the image turn and the next question merge: the turn between them had nothing to send
    assert_eq!(msgs[2]["role"], "user");
    assert_eq!(
        msgs[2]["content"],
        json!([{"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
               {"type": "text", "text": "and 3+3?"}])
    );
    for m in msgs {
        for block in m["content"].as_array().unwrap() {
            assert_ne!(block.get("text"), Some(&json!("")), "{b}");
            if block["type"] == "thinking" {
                assert!(block["signature"].is_string(), "{b}");
            }
        }
    }
}

/// Thinking enabled through `extra.thinking` (what the crate docs show) without a
/// `max_tokens`: the default (1024) is at most the budget, which the API always refuses, so
/// the budget + the default is sent. A stated `max_tokens` is sent as it is.
#[test]
fn thinking_through_extra_raises_the_default_max_tokens_above_the_budget() {
    let mut req = ChatRequest::new("claude", vec![Message::user("think")]);
    req.extra.insert(
        "thinking".into(),
        json!({"type": "enabled", "budget_tokens": 2048}),
    );
    let b = wire::chat_body(&req, false);
    assert_eq!(b["max_tokens"], 2048 + 1024);
    assert_eq!(b["thinking"]["budget_tokens"], 2048);
    let stated = req.clone().with_max_tokens(8000);
    assert_eq!(wire::chat_body(&stated, false)["max_tokens"], 8000);
    req.extra
        .insert("thinking".into(), json!({"type": "disabled"}));
    assert_eq!(wire::chat_body(&req, false)["max_tokens"], 1024);
}

#[test]
fn answers_with_thinking_tools_and_cache_usage_parse() {
    let body = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xyz"},
            {"type": "text", "text": "Calling."},
            {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {"a": 1}}
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 3, "cache_read_input_tokens": 1111, "cache_creation_input_tokens": 10, "output_tokens": 40}
    });
    let r = wire::parse_chat(body.to_string().as_bytes()).unwrap();
    assert_eq!(r.text(), "Calling.");
    assert_eq!(
        r.tool_calls()[0].parsed_arguments().unwrap(),
        json!({"a": 1})
    );
    assert_eq!(
        r.finish_reason,
        Some(infermux_core::FinishReason::ToolCalls)
    );
    assert!(
        matches!(&r.message.content[0], ContentPart::Thinking { signature: Some(s), .. } if s == "sig")
    );
    assert!(
        matches!(&r.message.content[1], ContentPart::RedactedThinking { data } if data == "xyz")
    );
    let u = r.usage.unwrap();
    assert_eq!(u.input_tokens, 3 + 1111 + 10);
    assert_eq!(u.cached_input_tokens, Some(1111));
    assert_eq!(u.cache_creation_input_tokens, Some(10));
    assert_eq!(u.output_tokens, 40);
}

#[test]
fn count_tokens_body_has_the_prompt_only() {
    let b = wire::count_tokens_body(&tool_request());
    assert!(b.get("max_tokens").is_none());
    assert!(b.get("temperature").is_none());
    assert_eq!(b["tools"][0]["name"], "get_weather");
}

#[tokio::test]
async fn headers_on_the_wire_key_version_and_betas() {
    use infermux_anthropic::Anthropic;
    use infermux_core::{ApiKey, EndpointConfig, Provider, Request, RequestContext};

    let (url, seen) = infermux_testkit::capture(
        r#"{"id":"m","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}"#,
    )
    .await;
    let cfg = EndpointConfig::new("wire", format!("{url}/v1"))
        .unwrap()
        .with_api_key(ApiKey::new("sk-ant-wire"));
    let p = Anthropic::new(cfg)
        .unwrap()
        .with_beta("prompt-caching-2024-07-31")
        .with_beta("interleaved-thinking-2025-05-14")
        .with_beta_query(true);
    let req = ChatRequest::new("claude", vec![Message::user("hi")]);
    p.call(&Request::Chat(req), &RequestContext::new())
        .await
        .unwrap();
    let seen = seen.await.unwrap();
    assert_eq!(seen.target, "/v1/messages?beta=true");
    assert_eq!(seen.header("x-api-key"), Some("sk-ant-wire"));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        seen.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31,interleaved-thinking-2025-05-14")
    );
    assert!(seen.header("x-request-id").is_some());
}

#[tokio::test]
async fn an_invalid_version_or_beta_fails_every_request_with_config() {
    use infermux_anthropic::Anthropic;
    use infermux_core::{EndpointConfig, ErrorKind, Provider, Request, RequestContext};

    // nothing listens on port 9: the request must fail before anything is sent
    let p = || Anthropic::new(EndpointConfig::new("bad", "http://127.0.0.1:9/v1").unwrap());
    let req = Request::Chat(ChatRequest::new("claude", vec![Message::user("hi")]));
    for p in [
        p().unwrap().with_version("2023-06-01\n"),
        p().unwrap().with_beta("ok").with_beta("not\nok"),
    ] {
        let err = p.call(&req, &RequestContext::new()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    }
    // a valid version set after an invalid one is sent again
    let (url, seen) = infermux_testkit::capture(
        r#"{"id":"m","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}"#,
    )
    .await;
    let p = Anthropic::new(EndpointConfig::new("ok", format!("{url}/v1")).unwrap())
        .unwrap()
        .with_version("bad\n")
        .with_version("2024-01-01");
    p.call(&req, &RequestContext::new()).await.unwrap();
    assert_eq!(
        seen.await.unwrap().header("anthropic-version"),
        Some("2024-01-01")
    );
}

#[test]
fn stream_state_keeps_signatures_and_redacted_thinking() {
    let mut st = wire::ChatStreamState::new();
    let events = [
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":2,"cache_read_input_tokens":5,"output_tokens":1}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Hmm"}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking","data":"opaque"}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"1}"}}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ];
    let mut acc = infermux_core::StreamAccumulator::new();
    for (name, data) in events {
        for ev in st.on_event(Some(name), data).unwrap() {
            acc.push(&ev);
        }
    }
    assert!(st.is_done());
    let r = acc.finish();
    assert_eq!(
        r.message.content,
        [
            infermux_core::ContentPart::Thinking {
                text: "Hmm".into(),
                signature: Some("EqQB".into())
            },
            infermux_core::ContentPart::RedactedThinking {
                data: "opaque".into()
            },
        ]
    );
    assert_eq!(r.tool_calls()[0].id, "toolu_1");
    assert_eq!(r.tool_calls()[0].arguments, r#"{"a":1}"#);
    let u = r.usage.unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (7, 9));
    assert_eq!(u.cached_input_tokens, Some(5));
}

#[tokio::test]
async fn models_follow_every_page() {
    use infermux_core::{Provider, Request, RequestContext, Response};
    use infermux_testkit::{Cassette, ReplayServer};

    let cassette = Cassette::from_yaml(
        r#"
interactions:
- request: {method: GET, uri: "https://api.anthropic.com/v1/models", body: null, headers: {}}
  response:
    status: {code: 200, message: OK}
    headers: {content-type: [application/json]}
    body: {string: '{"data":[{"type":"model","id":"claude-opus-4-1","display_name":"Claude Opus 4.1","created_at":"2025-08-05T00:00:00Z"}],"has_more":true,"first_id":"claude-opus-4-1","last_id":"claude-opus-4-1"}'}
- request: {method: GET, uri: "https://api.anthropic.com/v1/models?after_id=claude-opus-4-1", body: null, headers: {}}
  response:
    status: {code: 200, message: OK}
    headers: {content-type: [application/json]}
    body: {string: '{"data":[{"type":"model","id":"claude-haiku-4-5","display_name":"Claude Haiku 4.5","created_at":"2025-10-15T00:00:00Z"}],"has_more":false,"first_id":"claude-haiku-4-5","last_id":"claude-haiku-4-5"}'}
"#,
    )
    .unwrap();
    let server = ReplayServer::start(cassette).await.unwrap();
    let p = crate::provider(&format!("{}/v1", server.url()));
    let Response::Models(m) = p
        .call(&Request::Models, &RequestContext::new())
        .await
        .unwrap()
    else {
        panic!("not a model list")
    };
    let ids: Vec<&str> = m.models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["claude-opus-4-1", "claude-haiku-4-5"]);
    assert_eq!(m.models[0].created, Some(1_754_352_000));
    server.verify().unwrap();
}

/// Token counts come from the server: their sum saturates, never a panic (debug) or a wrap
/// (release).
#[test]
fn absurd_token_counts_saturate() {
    let body = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "text", "text": "x"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": u64::MAX, "cache_read_input_tokens": 1, "cache_creation_input_tokens": 1, "output_tokens": u64::MAX}
    });
    let r = wire::parse_chat(body.to_string().as_bytes()).unwrap();
    let u = r.usage.unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (u64::MAX, u64::MAX));
    assert_eq!(u.total_tokens(), u64::MAX);
}

/// What OpenAI takes and Anthropic refuses, in a request that fell back from one to the
/// other: a whitespace-only stop sequence is left out, a temperature above 1 is sent as 1, a
/// parameterless tool's schema gets `"type": "object"`.
#[test]
fn values_openai_takes_and_anthropic_refuses_are_made_acceptable() {
    let mut req = ChatRequest::new("claude-sonnet-4-5", vec![Message::user("hi")]);
    req.stop = vec!["\n".into(), "END".into(), "  ".into()];
    req.temperature = Some(1.3);
    req.tools = vec![
        infermux_core::Tool::new("now", "the time", json!({})),
        infermux_core::Tool::new("f", "", json!({"type": "object", "properties": {}})),
    ];
    let b = wire::chat_body(&req, false);
    assert_eq!(b["stop_sequences"], json!(["END"]));
    assert_eq!(b["temperature"], 1.0);
    assert_eq!(b["tools"][0]["input_schema"], json!({"type": "object"}));
    assert_eq!(
        b["tools"][1]["input_schema"],
        json!({"type": "object", "properties": {}})
    );
    // only whitespace stops: none sent; a temperature in range as it is
    req.stop = vec!["\n".into()];
    req.temperature = Some(0.5);
    let b = wire::chat_body(&req, false);
    assert!(b.get("stop_sequences").is_none(), "{b:#}");
    assert_eq!(b["temperature"], 0.5);
}

/// A `response_format` schema is structured output (`output_config.format`), transformed the
/// way Anthropic's SDKs do: objects closed, refused keywords named in the description, `oneOf`
/// as `anyOf`. Before, it was dropped and the answer came back as free text.
#[test]
fn a_response_format_schema_is_structured_output() {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20, "description": "Its name"},
            "age": {"type": "integer", "minimum": 0, "maximum": 30},
            "born": {"type": "string", "format": "date"},
            "site": {"type": "string", "format": "hostname-ish"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
            "owner": {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/Person"}]},
            "scores": {"type": "object", "additionalProperties": {"type": "number"}},
            "properties": {"type": "string", "minLength": 2}
        },
        "required": ["name"],
        "$defs": {"Person": {"type": "object", "properties": {"n": {"type": "string"}}}}
    });
    let mut req = ChatRequest::new("claude-sonnet-4-5", vec![Message::user("a dog")]);
    req.response_format = Some(infermux_core::ResponseFormat::JsonSchema {
        name: "dog".into(),
        schema: schema.clone(),
        strict: Some(true),
    });
    let b = wire::chat_body(&req, false);
    assert_eq!(b["output_config"]["format"]["type"], "json_schema");
    let sent = &b["output_config"]["format"]["schema"];
    let want = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "name": {"type": "string", "description": "Its name (maxLength: 20)"},
            "age": {"type": "integer", "description": "minimum: 0, maximum: 30"},
            "born": {"type": "string", "format": "date"},
            "site": {"type": "string", "description": "format: hostname-ish"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                "description": "maxItems: 3"},
            "owner": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Person"}]},
            "scores": {"type": "object", "additionalProperties": false,
                "description": "additionalProperties: {\"type\":\"number\"}"},
            "properties": {"type": "string", "description": "minLength: 2"}
        },
        "required": ["name"],
        "$defs": {"Person": {"type": "object", "additionalProperties": false,
            "properties": {"n": {"type": "string"}}}}
    });
    assert_eq!(sent, &want);
    // the body as sent prints the same bytes as its `Value`
    assert_eq!(
        serde_json::to_string(&wire::ChatBody::new(&req, false)).unwrap(),
        b.to_string()
    );
    // a schema already acceptable goes as it is, and the transform is idempotent
    assert!(matches!(
        wire::structured_schema(&want),
        std::borrow::Cow::Borrowed(_)
    ));
    // `extra.output_config` (effort) is merged with the format; a format of its own wins
    req.extra
        .insert("output_config".into(), json!({"effort": "low"}));
    let b = wire::chat_body(&req, false);
    assert_eq!(b["output_config"]["effort"], "low");
    assert_eq!(b["output_config"]["format"]["schema"], want);
    assert_eq!(
        serde_json::to_string(&wire::ChatBody::new(&req, false)).unwrap(),
        b.to_string()
    );
    let own = json!({"format": {"type": "json_schema", "schema": {"type": "object"}}});
    req.extra.insert("output_config".into(), own.clone());
    assert_eq!(wire::chat_body(&req, false)["output_config"], own);
    // a model that does not take structured output (Claude 3.x, 4.0, 4.1) gets none: it
    // refuses the field, and answered in free text before
    for old in [
        "claude-3-5-haiku-latest",
        "claude-sonnet-4-20250514",
        "claude-opus-4-1",
    ] {
        let mut r = req.clone();
        r.model = old.into();
        r.extra.clear();
        assert!(
            wire::chat_body(&r, false).get("output_config").is_none(),
            "{old}"
        );
    }
    // a JSON object without a schema has no equivalent: nothing is sent
    req.extra.clear();
    req.response_format = Some(infermux_core::ResponseFormat::JsonObject);
    assert!(wire::chat_body(&req, false).get("output_config").is_none());
    // an `allOf` already there keeps its constraints beside the merged alternatives; `not`
    // and `contains` are named in the description, not sent (nor changed: a closed object
    // inside a `not` would widen what the schema accepts)
    let s = json!({"allOf": [{"required": ["a"]}], "anyOf": [{"type": "string"}],
        "oneOf": [{"type": "number"}]});
    let out = wire::structured_schema(&s).into_owned();
    assert_eq!(
        out["allOf"],
        json!([{"required": ["a"]}, {"anyOf": [{"type": "string"}]},
            {"anyOf": [{"type": "number"}]}])
    );
    let s = json!({"type": "array", "items": {"type": "string"}, "contains": {"const": "x"},
        "not": {"type": "object", "properties": {}}});
    let out = wire::structured_schema(&s).into_owned();
    assert!(
        out.get("contains").is_none() && out.get("not").is_none(),
        "{out}"
    );
    let desc = out["description"].as_str().unwrap();
    assert!(
        desc.contains("contains") && desc.contains("not: {\"properties\":{},\"type\":\"object\"}"),
        "{desc}"
    );
    // nesting past 64 levels (a parsed `Value` stops at 128) is left as it is below there
    let mut deep = json!({"type": "string", "maxLength": 3});
    for _ in 0..100 {
        deep = json!({"type": "array", "items": deep});
    }
    let out = wire::structured_schema(&deep).into_owned();
    let mut at = &out;
    for _ in 0..100 {
        at = &at["items"];
    }
    assert_eq!(at["maxLength"], 3);
}

/// The recorded requests that asked for structured output and for an effort read back as the
/// response format (and `extra.output_config` for the effort), and are written again as they
/// were recorded.
#[test]
fn recorded_structured_output_and_effort_requests_round_trip() {
    let Some(dir) = infermux_testkit::shared_fixture("fixtures/cassettes/anthropic/llm-anthropic")
    else {
        return;
    };
    for (file, schema) in [
        ("test_schema_prompt.yaml", true),
        ("test_sonnet_46_effort_without_thinking.yaml", false),
    ] {
        let c = infermux_testkit::Cassette::load(dir.join(file)).unwrap();
        let recorded = c.interactions[0].request.json().unwrap();
        let req = wire::chat_request_from_json(&recorded).unwrap();
        assert_eq!(
            matches!(
                req.response_format,
                Some(infermux_core::ResponseFormat::JsonSchema { .. })
            ),
            schema,
            "{file}"
        );
        assert_eq!(req.extra.contains_key("output_config"), !schema, "{file}");
        let again = wire::chat_body(&req, wire::request_streams(&recorded));
        assert_eq!(again, recorded, "{file}");
    }
}

/// A streamed call of a tool without parameters (`input: {}`, then an empty `partial_json`, as
/// recorded in llm-anthropic's `test_tools.yaml`) has the arguments `{}`, as the same answer
/// not streamed does; before, they were an empty string (a cache hit then differed from a live
/// call, and an OpenAI-protocol provider was sent `"arguments": ""`).
#[test]
fn a_streamed_call_without_arguments_has_the_arguments_the_plain_answer_has() {
    let mut st = wire::ChatStreamState::new();
    let mut acc = infermux_core::StreamAccumulator::new();
    for (event, data) in [
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[],"usage":{"input_tokens":5,"output_tokens":1}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"pelican_name_generator","input":{}}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_2","name":"get_weather","input":{}}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": "}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":1}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ] {
        st.on_event(Some(event), data)
            .unwrap()
            .iter()
            .for_each(|e| acc.push(e));
    }
    let streamed = acc.finish();
    let plain = wire::parse_chat(
        br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[{"type":"tool_use","id":"toolu_1","name":"pelican_name_generator","input":{}},{"type":"tool_use","id":"toolu_2","name":"get_weather","input":{"city":"Paris"}}],"stop_reason":"tool_use","usage":{"input_tokens":5,"output_tokens":9}}"#,
    )
    .unwrap();
    assert_eq!(streamed.message.tool_calls[0].arguments, "{}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&streamed.message.tool_calls[1].arguments)
            .unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(streamed.message.tool_calls[0], plain.message.tool_calls[0]);
    assert_eq!(streamed.finish_reason, plain.finish_reason);
}

/// A refusal says why in its `stop_details` (no content block): the explanation is the
/// answer's refusal part, plain and streamed (vercel-ai's recorded `anthropic-refusal`
/// payloads). It was dropped: an empty answer that only its finish reason called a refusal.
#[test]
fn a_refusal_s_explanation_is_its_refusal_part() {
    let explanation = "This request triggered restrictions on violative cyber content and was blocked under Anthropic's Usage Policy.";
    let body = json!({
        "model": "claude-fable-5", "id": "msg_01RefusalExampleAbcdefghijk", "type": "message",
        "role": "assistant", "content": [], "stop_reason": "refusal",
        "stop_details": {"type": "refusal", "category": "cyber", "explanation": explanation, "recommended_model": "claude-fable-5"},
        "stop_sequence": null,
        "usage": {"input_tokens": 18, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 5}
    });
    let r = wire::parse_chat(body.to_string().as_bytes()).unwrap();
    assert_eq!(
        r.message.content,
        vec![ContentPart::Refusal {
            text: explanation.into()
        }]
    );
    assert_eq!(
        r.finish_reason,
        Some(infermux_core::FinishReason::ContentFilter)
    );
    let mut st = wire::ChatStreamState::new();
    let mut acc = infermux_core::StreamAccumulator::new();
    let delta = json!({"type": "message_delta", "delta": {"stop_reason": "refusal", "stop_sequence": null,
        "stop_details": {"type": "refusal", "category": "cyber", "explanation": explanation}},
        "usage": {"input_tokens": 18, "output_tokens": 5}});
    for (event, data) in [
        (
            "message_start",
            r#"{"type":"message_start","message":{"model":"claude-fable-5","id":"msg_01RefusalStreamAbcdefghijk","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":18,"output_tokens":1}}}"#.to_owned(),
        ),
        ("ping", r#"{"type":"ping"}"#.to_owned()),
        ("message_delta", delta.to_string()),
        ("message_stop", r#"{"type":"message_stop"}"#.to_owned()),
    ] {
        st.on_event(Some(event), &data)
            .unwrap()
            .iter()
            .for_each(|e| acc.push(e));
    }
    let streamed = acc.finish();
    assert_eq!(streamed.message.content, r.message.content);
    assert_eq!(streamed.finish_reason, r.finish_reason);
    // details of another kind, or without an explanation, add nothing
    let other = json!({"type": "message", "content": [{"type": "text", "text": "Hi"}],
        "stop_reason": "end_turn", "stop_details": {"type": "other", "explanation": "x"}});
    let r = wire::parse_chat(other.to_string().as_bytes()).unwrap();
    assert_eq!(r.message.content, vec![ContentPart::text("Hi")]);
}

/// An assistant turn sent back keeps only Anthropic's own citation types on its text (an
/// OpenAI `url_citation` or a Gemini grounding chunk, from a turn another provider answered,
/// is refused by Anthropic's API: a 400 for the whole conversation), and no refusal part:
/// Anthropic has no refusal block, and its own refusal's explanation is the API's words, not
/// the model's (the refused turn drops out, as Anthropic asks after a refusal).
#[test]
fn only_anthropic_s_citations_and_no_refusal_go_back() {
    let ours = json!({"type": "web_search_result_location", "cited_text": "x", "url": "https://example.com/a", "title": "a", "encrypted_index": "E"});
    let theirs = json!({"type": "url_citation", "url_citation": {"url": "https://example.com/b", "start_index": 0, "end_index": 1}});
    let grounding = json!({"web": {"uri": "https://example.com/c", "title": "c"}});
    let mut cited = Message::assistant("Paris.");
    cited.content.extend([
        ContentPart::Citation { raw: ours.clone() },
        ContentPart::Citation { raw: theirs },
        ContentPart::Citation { raw: grounding },
    ]);
    let mut refused = Message::assistant("");
    refused.content = vec![ContentPart::Refusal {
        text: "This request triggered restrictions".into(),
    }];
    let req = ChatRequest::new(
        "claude",
        vec![
            Message::user("Capital?"),
            cited,
            Message::user("Something else"),
            refused,
            Message::user("Then this"),
        ],
    );
    let body = wire::chat_body(&req, false);
    assert_eq!(
        body["messages"][1]["content"],
        json!([{"type": "text", "text": "Paris.", "citations": [ours]}])
    );
    let text = body.to_string();
    assert!(!text.contains("restrictions"), "{text}");
    assert!(
        !text.contains("url_citation") && !text.contains("example.com/c"),
        "{text}"
    );
}

/// A tool loop that began on another provider and falls back here: Gemini's made-up ids
/// restart at every answer (`gemini-call-0` twice), TGI's are `0`, some servers' carry `.` or
/// `:` or are empty. Anthropic refuses ids that repeat or leave `[A-Za-z0-9_-]`: each call is
/// sent with an id it takes, unique, and each result names the id sent for the call before it.
/// Anthropic's own ids go as they are.
#[test]
fn other_providers_tool_call_ids_are_made_ones_anthropic_takes() {
    let round = |id: &str, name: &str, result: &str| {
        [
            Message::assistant_tool_calls(vec![ToolCall::new(id, name, "{}")]),
            Message::tool_result(id, result),
        ]
    };
    let mut messages = vec![Message::user("Weather, then time, then news?")];
    messages.extend(round("gemini-call-0", "get_weather", "sunny"));
    messages.extend(round("gemini-call-0", "get_time", "noon"));
    messages.extend(round("functions.get_news:0", "get_news", "none"));
    messages.extend(round("", "get_nothing", "empty"));
    let body = wire::chat_body(&ChatRequest::new("claude", messages), false);
    let blocks: Vec<&serde_json::Value> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["content"].as_array().unwrap())
        .collect();
    let uses: Vec<&str> = blocks
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    let results: Vec<&str> = blocks
        .iter()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| b["tool_use_id"].as_str().unwrap())
        .collect();
    assert_eq!(uses.len(), 4);
    assert_eq!(uses, results, "each result names its own call");
    let unique: std::collections::HashSet<_> = uses.iter().collect();
    assert_eq!(unique.len(), 4, "{uses:?}");
    for id in &uses {
        assert!(
            !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "{id}"
        );
    }
    assert_eq!(uses[0], "gemini-call-0", "a fine, first id as it is");
    // Anthropic's own ids, fine and unique: sent as they are
    let mut own = vec![Message::user("Weather?")];
    own.extend(round("toolu_01A", "get_weather", "sunny"));
    let body = wire::chat_body(&ChatRequest::new("claude", own), false);
    assert_eq!(body["messages"][1]["content"][0]["id"], "toolu_01A");
    assert_eq!(
        body["messages"][2]["content"][0]["tool_use_id"],
        "toolu_01A"
    );
}

/// Arguments that are JSON but not an object (encoded twice by a compatible server, or
/// another type) went to Anthropic's `input` as they were, which must be an object: a 400
/// for the whole conversation. Encoded twice, they are read once more; otherwise `{}`.
#[test]
fn tool_call_input_is_always_an_object() {
    let calls = vec![
        ToolCall::new("toolu_1", "get_weather", r#""{\"city\":\"Paris\"}""#),
        ToolCall::new("toolu_2", "get_weather", "[1, 2]"),
    ];
    let req = ChatRequest::new(
        "claude",
        vec![
            Message::user("Weather?"),
            Message::assistant_tool_calls(calls),
        ],
    );
    let body = wire::chat_body(&req, false);
    let blocks = &body["messages"][1]["content"];
    assert_eq!(blocks[0]["input"], json!({"city": "Paris"}));
    assert_eq!(blocks[1]["input"], json!({}));
}
