//! Request bodies: schemas as JSON Schema, tool results, images, the
//! generation config; validation of the bodies against Google's published OpenAPI description
//! (`../shared/fixtures/specs/gemini`) with a small hand-rolled checker; and SSE versus
//! JSON-array streaming of the same content giving the same events.

use futures_util::StreamExt;
use infermux_core::{
    ChatRequest, ContentPart, EmbeddingRequest, Message, Provider, Request, RequestContext,
    StreamEvent, Tool, ToolCall, ToolChoice,
};
use infermux_gemini::wire;
use infermux_testkit::{
    Body, Cassette, Interaction, RecordedRequest, RecordedResponse, ReplayOptions, ReplayServer,
};
use serde_json::{Value, json};

use crate::{provider, stream_chunks};

fn weather_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "where": {"$ref": "#/$defs/Place"},
            "history": {"type": "array", "items": {"$ref": "#/$defs/Place"}}
        },
        "required": ["city"],
        "$defs": {
            "Place": {
                "type": "object",
                "additionalProperties": false,
                "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                "required": ["lat", "lon"]
            }
        }
    })
}

fn rich_request() -> ChatRequest {
    let call = ToolCall::new(
        format!("{}0", wire::GENERATED_ID),
        "get_weather",
        r#"{"city":"Paris"}"#,
    );
    let mut req = ChatRequest::new(
        "gemini-2.5-flash",
        vec![
            Message::system("Be brief."),
            Message::user_parts(vec![
                ContentPart::text("Weather where this photo was taken?"),
                ContentPart::image_base64("image/png", "iVBORw0KGgo="),
                ContentPart::image_url("https://example.com/photo.jpg"),
            ]),
            Message::assistant_tool_calls(vec![call.clone()]),
            Message::tool_result(call.id.clone(), r#"{"temp_c": 18}"#),
        ],
    )
    .with_tools(vec![Tool::new(
        "get_weather",
        "Current weather",
        weather_schema(),
    )])
    .with_tool_choice(ToolChoice::Tool("get_weather".into()))
    .with_max_tokens(128)
    .with_temperature(0.2)
    .with_stop(vec!["END".into()])
    .with_seed(7);
    req.top_p = Some(0.9);
    req
}

#[test]
fn schemas_are_cleaned_and_refs_inlined() {
    let cleaned = wire::clean_schema(&weather_schema());
    let text = cleaned.to_string();
    for banned in ["additionalProperties", "$schema", "$ref", "$defs"] {
        assert!(!text.contains(banned), "{banned} left in {text}");
    }
    assert_eq!(
        cleaned["properties"]["where"]["properties"]["lat"]["type"],
        "number"
    );
    assert_eq!(
        cleaned["properties"]["history"]["items"]["required"],
        json!(["lat", "lon"])
    );
    // a recursive reference ends instead of looping
    let recursive = json!({"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}},
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}}});
    assert!(!wire::clean_schema(&recursive).to_string().contains("$ref"));
}

/// Property names are data: a parameter named like a keyword the cleaning removes
/// (`definitions`, `$id`, `additionalProperties`) is kept, its schema cleaned. Before, it was
/// dropped while `required` still named it, and Gemini refused the declaration.
#[test]
fn properties_named_like_removed_keywords_are_kept() {
    let s = json!({"type": "object", "properties": {
        "definitions": {"type": "array", "items": {"type": "string"}, "additionalProperties": false},
        "$id": {"type": "string"},
        "additionalProperties": {"type": "boolean"},
        "term": {"type": "string"}},
        "required": ["term", "definitions"], "additionalProperties": false});
    let cleaned = wire::clean_schema(&s);
    assert_eq!(cleaned["properties"]["definitions"]["type"], "array");
    assert!(
        cleaned["properties"]["definitions"]
            .get("additionalProperties")
            .is_none()
    );
    assert_eq!(cleaned["properties"]["$id"]["type"], "string");
    assert_eq!(
        cleaned["properties"]["additionalProperties"]["type"],
        "boolean"
    );
    assert!(cleaned.get("additionalProperties").is_none());
    // and the body sent carries the schema as it was given
    let req = ChatRequest::new("gemini-2.5-flash", vec![Message::user("define")])
        .with_tools(vec![Tool::new("define", "Look a word up", s.clone())]);
    let b = wire::generate_body(&req);
    assert_eq!(
        b["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"],
        s
    );
    // a schema whose only keyword-like names are property names is sent as it is
    let plain = json!({"type": "object", "properties": {"definitions": {"type": "string"}}});
    assert_eq!(wire::clean_schema(&plain), plain);
}

#[test]
fn generate_body_maps_every_field() {
    let b = wire::generate_body(&rich_request());
    assert_eq!(b["systemInstruction"]["parts"][0]["text"], "Be brief.");
    let contents = b["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3);
    assert_eq!(
        contents[0]["parts"][1]["inlineData"]["mimeType"],
        "image/png"
    );
    assert_eq!(
        contents[0]["parts"][2]["fileData"]["fileUri"],
        "https://example.com/photo.jpg"
    );
    assert_eq!(contents[1]["role"], "model");
    assert_eq!(
        contents[1]["parts"][0]["functionCall"],
        json!({"name": "get_weather", "args": {"city": "Paris"}})
    );
    assert_eq!(
        contents[2]["parts"][0]["functionResponse"],
        json!({"name": "get_weather", "response": {"temp_c": 18}})
    );
    assert_eq!(
        b["toolConfig"]["functionCallingConfig"],
        json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]})
    );
    let g = &b["generationConfig"];
    assert_eq!(g["maxOutputTokens"], 128);
    assert_eq!(g["stopSequences"], json!(["END"]));
    assert_eq!(g["seed"], 7);
    // schemas go as JSON Schema, unchanged (`$ref`, `$defs`, `additionalProperties` and all):
    // the `Schema`-typed `parameters` refused them
    let decl = &b["tools"][0]["functionDeclarations"][0];
    assert_eq!(decl["parametersJsonSchema"], weather_schema());
    assert!(decl.get("parameters").is_none(), "{decl}");
    // the inverse reads it back
    let back = wire::chat_request_from_json("gemini-2.5-flash", &b).unwrap();
    assert_eq!(back.messages.len(), 4);
    assert_eq!(back.messages[2].tool_calls[0].name, "get_weather");
    assert_eq!(back.max_tokens, Some(128));
}

// ---- validation against the published OpenAPI description ------------------------------

/// The published description, or `None` after a visible skip (a failure under
/// `INFERMUX_REQUIRE_FIXTURES=1`); a description that does not parse fails the test.
fn spec() -> Option<Value> {
    infermux_testkit::spec::load_shared(
        "fixtures/specs/gemini/generativelanguage-v1beta-openapi-20241016.json",
    )
}

/// Checks `v` against `schema`: object keys known, types right, enums (case-insensitively,
/// as Google's JSON parser accepts) respected. Returns the problems found, with their paths.
fn check(v: &Value, schema: &Value, spec: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap();
        return check(v, named(spec, name), spec, path, out);
    }
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("");
    let ok = match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    };
    if !ok {
        out.push(format!("{path}: expected {ty}, got {v}"));
        return;
    }
    if let (Some(allowed), Some(s)) = (schema.get("enum").and_then(Value::as_array), v.as_str())
        && !allowed
            .iter()
            .any(|a| a.as_str().is_some_and(|a| a.eq_ignore_ascii_case(s)))
    {
        out.push(format!("{path}: {s:?} not in the enum"));
    }
    match v {
        Value::Object(obj) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties");
            for (k, val) in obj {
                match (props.and_then(|p| p.get(k)), extra) {
                    (Some(s), _) => check(val, s, spec, &format!("{path}.{k}"), out),
                    (None, Some(s)) if s.get("$ref").is_some() => {
                        check(val, s, spec, &format!("{path}.{k}"), out);
                    }
                    (None, Some(_)) => {}
                    (None, None) if props.is_none() => {}
                    (None, None) => out.push(format!("{path}: unknown field {k:?}")),
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item, s, spec, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// The schema `name` of the spec; a name it does not have panics (a missing schema would
/// accept anything).
fn named<'a>(spec: &'a Value, name: &str) -> &'a Value {
    let s = &spec["components"]["schemas"][name];
    assert!(s.is_object(), "the spec has no schema `{name}`");
    s
}

fn validate(v: &Value, schema_name: &str, spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(v, named(spec, schema_name), spec, schema_name, &mut out);
    out
}

/// `body` without its parts' `thoughtSignature`s, each checked to be a string on a part that
/// carries a function call or text (where the proto's `Part.thought_signature` goes).
fn without_signatures(body: &mut Value) {
    match body {
        Value::Object(o) => {
            if let Some(sig) = o.remove("thoughtSignature") {
                assert!(sig.is_string(), "{sig}");
                assert!(
                    o.contains_key("functionCall") || o.contains_key("text"),
                    "a signature on {o:?}"
                );
            }
            o.values_mut().for_each(without_signatures);
        }
        Value::Array(a) => a.iter_mut().for_each(without_signatures),
        _ => {}
    }
}

/// `body` without the JSON Schema fields newer than the description (any value goes there);
/// how many it had.
fn without_json_schemas(body: &mut Value) -> usize {
    match body {
        Value::Object(o) => {
            let mut n = 0;
            for k in ["parametersJsonSchema", "responseJsonSchema"] {
                n += usize::from(o.remove(k).is_some());
            }
            n + o.values_mut().map(without_json_schemas).sum::<usize>()
        }
        Value::Array(a) => a.iter_mut().map(without_json_schemas).sum(),
        _ => 0,
    }
}

#[test]
fn request_bodies_validate_against_the_openapi_description() {
    let Some(spec) = spec() else { return };
    let mut req = rich_request();
    // `generationConfig.seed` (like `FunctionCall.id`) is newer than this 2024-10 description
    req.seed = None;
    let mut body = wire::generate_body(&req);
    // so is `Part.thoughtSignature` (`thought_signature` in the proto files beside it), which a
    // call without a signature now carries: checked by hand (a string on a call or text part)
    let proto =
        infermux_testkit::shared_fixture("fixtures/specs/gemini/proto_v1beta/content.proto")
            .map(|p| std::fs::read_to_string(p).unwrap());
    if let Some(proto) = &proto {
        assert!(proto.contains("bytes thought_signature = "));
    }
    without_signatures(&mut body);
    // and so are `parametersJsonSchema` and `responseJsonSchema` (JSON Schema, any value):
    // checked to be in the proto files, then left out
    let generative = infermux_testkit::shared_fixture(
        "fixtures/specs/gemini/proto_v1beta/generative_service.proto",
    )
    .map(|p| std::fs::read_to_string(p).unwrap());
    if let (Some(content), Some(generative)) = (&proto, &generative) {
        assert!(content.contains("google.protobuf.Value parameters_json_schema = "));
        assert!(generative.contains("json_name = \"responseJsonSchema\""));
    }
    assert_eq!(without_json_schemas(&mut body), 1);
    let problems = validate(&body, "GenerateContentRequest", &spec);
    assert!(problems.is_empty(), "{problems:#?}");
    let mut json_req = ChatRequest::new("gemini-2.5-flash", vec![Message::user("a dog")]);
    json_req.response_format = Some(infermux_core::ResponseFormat::JsonSchema {
        name: "dog".into(),
        schema: weather_schema(),
        strict: None,
    });
    let mut body = wire::generate_body(&json_req);
    let cfg = body["generationConfig"].as_object_mut().unwrap();
    assert_eq!(cfg.remove("responseJsonSchema"), Some(weather_schema()));
    assert_eq!(cfg["responseMimeType"], "application/json");
    let problems = validate(&body, "GenerateContentRequest", &spec);
    assert!(problems.is_empty(), "{problems:#?}");
    let mut emb = EmbeddingRequest::new("gemini-embedding-001", ["a", "b"]);
    emb.dimensions = Some(768);
    emb.extra
        .insert("taskType".into(), json!("RETRIEVAL_QUERY"));
    let problems = validate(
        &wire::batch_embed_body(&emb),
        "BatchEmbedContentsRequest",
        &spec,
    );
    assert!(problems.is_empty(), "{problems:#?}");
    let problems = validate(&wire::embed_body(&emb, "a"), "EmbedContentRequest", &spec);
    assert!(problems.is_empty(), "{problems:#?}");
    for mut body in [
        wire::count_tokens_body(&req),
        wire::count_tokens_body(&ChatRequest::new("m", vec![Message::user("hi")])),
    ] {
        without_signatures(&mut body);
        without_json_schemas(&mut body);
        let problems = validate(&body, "CountTokensRequest", &spec);
        assert!(problems.is_empty(), "{problems:#?}");
    }
    // the checker does catch what Gemini would reject
    let bad = json!({"contents": [{"parts": [{"txet": "hi"}]}], "generationConfig": {"maxOutputTokens": "many"}});
    assert_eq!(validate(&bad, "GenerateContentRequest", &spec).len(), 2);
    // every request kind it checks against is one the spec has (else it accepts anything),
    // and one it has not fails
    for name in [
        "EmbedContentRequest",
        "CountTokensRequest",
        "BatchEmbedContentsRequest",
    ] {
        let wrong = json!({"nonsense": [1, 2]});
        assert!(!validate(&wrong, name, &spec).is_empty(), "{name}");
    }
    let missing = std::panic::catch_unwind(|| validate(&json!({}), "NoSuchRequest", &spec));
    assert!(missing.is_err(), "a schema the spec lacks must not pass");
}

// ---- SSE and JSON-array streaming of the same content -----------------------------------

fn serve(uri: &str, content_type: &str, body: String) -> Cassette {
    Cassette {
        interactions: vec![Interaction {
            request: RecordedRequest {
                method: "POST".into(),
                uri: uri.into(),
                headers: Vec::new(),
                body: None,
            },
            response: RecordedResponse {
                status: 200,
                message: "OK".into(),
                headers: vec![("content-type".into(), content_type.into())],
                body: Body::Raw(body.into_bytes()),
            },
        }],
    }
}

async fn events(cassette: Cassette, sse: bool, chunk: usize) -> Vec<StreamEvent> {
    let server =
        ReplayServer::start_with(cassette, ReplayOptions::default().with_chunk_size(chunk))
            .await
            .unwrap();
    let p = provider(&format!("{}/v1beta", server.url())).with_sse(sse);
    let req = Request::Chat(ChatRequest::new(
        "gemini-2.0-flash",
        vec![Message::user("hi")],
    ));
    let mut s = p.stream(&req, &RequestContext::new()).await.unwrap();
    let mut out = Vec::new();
    while let Some(ev) = s.next().await {
        out.push(ev.unwrap());
    }
    server.verify().unwrap();
    out
}

#[tokio::test]
async fn sse_and_json_array_streams_of_the_same_content_give_the_same_events() {
    // a tool call with thinking, as the real API streamed it (as a JSON array), and a text
    // answer (as SSE); each served both ways
    let chunks = vec![
        json!({"candidates": [{"content": {"parts": [{"text": "Thinking it over.", "thought": true}], "role": "model"}, "index": 0}], "modelVersion": "gemini-2.5-flash", "responseId": "r1"}),
        json!({"candidates": [{"content": {"parts": [{"text": "Paris is "}], "role": "model"}, "index": 0}], "modelVersion": "gemini-2.5-flash", "responseId": "r1"}),
        json!({"candidates": [{"content": {"parts": [{"text": "sunny."}, {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}], "role": "model"}, "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 12, "thoughtsTokenCount": 4, "totalTokenCount": 25}, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}),
    ];
    let mut sets = vec![chunks];
    if let Some(recorded) = infermux_testkit::shared_fixture(
        "fixtures/cassettes/gemini/pydantic-ai/test_google_model_stream.yaml",
    ) {
        let c = Cassette::load(&recorded).unwrap();
        sets.push(stream_chunks(&crate::response_bytes(
            &c.interactions[0].response,
        )));
    }
    for chunks in sets {
        let array = format!(
            "[{}]",
            chunks
                .iter()
                .map(|c| serde_json::to_string_pretty(c).unwrap())
                .collect::<Vec<_>>()
                .join(",\r\n")
        );
        let sse: String = chunks
            .iter()
            .map(|c| format!("data: {c}\r\n\r\n"))
            .collect();
        let uri = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:streamGenerateContent";
        for chunk in [1, 5, 64] {
            let from_array =
                events(serve(uri, "application/json", array.clone()), false, chunk).await;
            let from_sse = events(
                serve(&format!("{uri}?alt=sse"), "text/event-stream", sse.clone()),
                true,
                chunk,
            )
            .await;
            assert_eq!(from_array, from_sse);
            assert!(matches!(from_sse.first(), Some(StreamEvent::Start { .. })));
            assert!(matches!(from_sse.last(), Some(StreamEvent::Done { .. })));
        }
    }
}

#[tokio::test]
async fn the_key_is_a_header_never_in_the_url() {
    use infermux_core::{ApiKey, EndpointConfig};
    use infermux_gemini::Gemini;

    let (url, seen) = infermux_testkit::capture(
        r#"{"candidates": [{"content": {"parts": [{"text": "hi"}], "role": "model"}, "finishReason": "STOP"}]}"#,
    )
    .await;
    let cfg = EndpointConfig::new("wire", format!("{url}/v1beta"))
        .unwrap()
        .with_api_key(ApiKey::new("AIza-wire-key"));
    let p = Gemini::new(cfg).unwrap();
    let req = ChatRequest::new("gemini-2.5-flash", vec![Message::user("hi")]);
    let r = p
        .call(&Request::Chat(req), &RequestContext::new())
        .await
        .unwrap();
    assert_eq!(r.operation(), infermux_core::Operation::Chat);
    let seen = seen.await.unwrap();
    assert_eq!(
        seen.target,
        "/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert!(!seen.target.contains("AIza-wire-key"));
    assert_eq!(seen.header("x-goog-api-key"), Some("AIza-wire-key"));
    assert_eq!(seen.header("authorization"), None);

    // and a stream asks for SSE with `alt=sse`, still without the key in the URL
    let (url, seen) = infermux_testkit::capture(
        r#"{"candidates": [{"content": {"parts": [{"text": "hi"}], "role": "model"}, "finishReason": "STOP"}]}"#,
    )
    .await;
    let cfg = EndpointConfig::new("wire", format!("{url}/v1beta"))
        .unwrap()
        .with_api_key(ApiKey::new("AIza-wire-key"));
    let req = ChatRequest::new("gemini-2.5-flash", vec![Message::user("hi")]);
    let _ = Gemini::new(cfg)
        .unwrap()
        .stream(&Request::Chat(req), &RequestContext::new())
        .await;
    let seen = seen.await.unwrap();
    assert_eq!(
        seen.target,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
}

#[test]
fn function_call_thought_signatures_are_kept() {
    let mut st = wire::GenerateState::new();
    let chunk = r#"{"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "ClgB"}], "role": "model"}, "finishReason": "STOP"}]}"#;
    let evs = st.on_chunk(chunk).unwrap();
    assert!(
        evs.iter()
            .any(|e| matches!(e, StreamEvent::ToolCallDelta { index: 0, .. }))
    );
    assert!(evs.contains(&StreamEvent::ToolCallSignature {
        index: 0,
        signature: "ClgB".into()
    }));
    let end = st.on_end().unwrap();
    assert!(matches!(
        end.last(),
        Some(StreamEvent::Done {
            finish_reason: Some(infermux_core::FinishReason::ToolCalls)
        })
    ));
}

#[tokio::test]
async fn models_follow_every_page() {
    use infermux_core::Response;

    let cassette = Cassette::from_yaml(
        r#"
interactions:
- request: {method: GET, uri: "https://generativelanguage.googleapis.com/v1beta/models", body: null, headers: {}}
  response:
    status: {code: 200, message: OK}
    headers: {content-type: [application/json]}
    body: {string: '{"models":[{"name":"models/gemini-2.5-flash"}],"nextPageToken":"p2"}'}
- request: {method: GET, uri: "https://generativelanguage.googleapis.com/v1beta/models?pageToken=p2", body: null, headers: {}}
  response:
    status: {code: 200, message: OK}
    headers: {content-type: [application/json]}
    body: {string: '{"models":[{"name":"models/gemini-embedding-001"}]}'}
"#,
    )
    .unwrap();
    let server = ReplayServer::start(cassette).await.unwrap();
    let p = provider(&format!("{}/v1beta", server.url()));
    let Response::Models(m) = p
        .call(&Request::Models, &RequestContext::new())
        .await
        .unwrap()
    else {
        panic!("not a model list")
    };
    let ids: Vec<&str> = m.models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["gemini-2.5-flash", "gemini-embedding-001"]);
    server.verify().unwrap();
}

#[test]
fn a_second_tool_round_answers_the_latest_call_of_a_reused_id() {
    // ids this crate makes up start again at gemini-call-0 in every answer
    let weather = ToolCall::new("gemini-call-0", "get_weather", r#"{"city":"Paris"}"#);
    let time = ToolCall::new("gemini-call-0", "get_time", r#"{"tz":"CET"}"#);
    let req = ChatRequest::new(
        "gemini-2.5-flash",
        vec![
            Message::user("weather, then time"),
            Message::assistant_tool_calls(vec![weather]),
            Message::tool_result("gemini-call-0", r#"{"temp_c": 18}"#),
            Message::assistant_tool_calls(vec![time]),
            Message::tool_result("gemini-call-0", r#"{"time": "12:00"}"#),
        ],
    );
    let b = wire::generate_body(&req);
    assert_eq!(
        b["contents"][2]["parts"][0]["functionResponse"]["name"],
        "get_weather"
    );
    assert_eq!(
        b["contents"][4]["parts"][0]["functionResponse"]["name"],
        "get_time"
    );
}

/// A schema Gemini's `Schema` type refused — a type list (Pydantic's `Optional`), `oneOf`, a
/// nested `"additionalProperties": false` — goes as JSON Schema, unchanged, for the answer and
/// for a tool; a `Schema`-typed `responseSchema` the caller wrote in `extra` is not joined by
/// the JSON one (the two exclude each other); and a Gemini body read back asks any provider for
/// the same JSON.
#[test]
fn schemas_go_as_json_schema_and_read_back_as_a_response_format() {
    let schema = json!({"type": "object", "additionalProperties": false,
        "properties": {"nick": {"type": ["string", "null"]},
            "pet": {"oneOf": [{"const": "cat"}, {"type": "object", "additionalProperties": false,
                "properties": {"legs": {"type": "integer"}}}]}},
        "required": ["nick", "pet"]});
    let mut req = ChatRequest::new("gemini-2.5-flash", vec![Message::user("a pet")])
        .with_tools(vec![Tool::new("adopt", "Adopt a pet", schema.clone())]);
    req.response_format = Some(infermux_core::ResponseFormat::JsonSchema {
        name: "pet".into(),
        schema: schema.clone(),
        strict: Some(true),
    });
    let b = wire::generate_body(&req);
    assert_eq!(b["generationConfig"]["responseJsonSchema"], schema);
    assert_eq!(
        b["generationConfig"]["responseMimeType"],
        "application/json"
    );
    assert!(b["generationConfig"].get("responseSchema").is_none());
    assert_eq!(
        b["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"],
        schema
    );
    // the typed body and the `Value` one print the same bytes
    assert_eq!(
        serde_json::to_string(&wire::GenerateBody::new(&req)).unwrap(),
        b.to_string()
    );

    // read back: the schema is the response format again, the tool's parameters the schema
    let back = wire::chat_request_from_json("gemini-2.5-flash", &b).unwrap();
    match &back.response_format {
        Some(infermux_core::ResponseFormat::JsonSchema { schema: s, .. }) => assert_eq!(s, &schema),
        other => panic!("{other:?}"),
    }
    assert!(
        back.extra.get("generationConfig").is_none(),
        "{:?}",
        back.extra
    );
    assert_eq!(back.tools[0].parameters, schema);
    // JSON without a schema is a JSON object
    let plain = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"responseMimeType": "application/json", "topK": 3}});
    let back = wire::chat_request_from_json("gemini-2.5-flash", &plain).unwrap();
    assert_eq!(
        back.response_format,
        Some(infermux_core::ResponseFormat::JsonObject)
    );
    assert_eq!(back.extra["generationConfig"], json!({"topK": 3}));

    // a `Schema`-typed one the caller wrote stays theirs, alone, and reads back as it came
    let typed = json!({"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}});
    let mut req = ChatRequest::new("gemini-2.5-flash", vec![Message::user("n")]);
    req.response_format = Some(infermux_core::ResponseFormat::JsonSchema {
        name: "n".into(),
        schema: schema.clone(),
        strict: None,
    });
    req.extra.insert(
        "generationConfig".into(),
        json!({"responseSchema": typed.clone()}),
    );
    let b = wire::generate_body(&req);
    assert_eq!(b["generationConfig"]["responseSchema"], typed);
    assert!(
        b["generationConfig"].get("responseJsonSchema").is_none(),
        "{b}"
    );
    let back = wire::chat_request_from_json("gemini-2.5-flash", &b).unwrap();
    assert!(back.response_format.is_none());
    assert_eq!(back.extra["generationConfig"]["responseSchema"], typed);
}

/// What the JSON Schema fields refuse is moved, what a `Schema`-typed body says is read as
/// JSON Schema, and the recorded embeddings' usage is kept:
/// - a `$ref` beside other keywords (Pydantic's described nested model) goes in a
///   one-alternative `anyOf` ("if `$ref` is set on a sub-schema, no other properties … may be
///   set"); a property named `$ref` is data, left alone;
/// - a `response_schema` in `extra` (snake case) keeps the JSON one out, as `responseSchema` does;
/// - a declaration's `Schema`-typed `parameters` read back are JSON Schema (`OBJECT` →
///   `object`, `nullable` → a type list), since they go out as `parametersJsonSchema`.
#[test]
fn ref_siblings_typed_parameters_and_snake_case_schemas() {
    let schema = json!({"type": "object",
        "properties": {"p": {"$ref": "#/$defs/P", "description": "the pet"},
                       "$ref": {"type": "string"}},
        "$defs": {"P": {"type": "object", "properties": {"n": {"type": "string"}}}}});
    let mut req = ChatRequest::new("gemini-2.5-flash", vec![Message::user("a pet")])
        .with_tools(vec![Tool::new("adopt", "Adopt", schema.clone())]);
    req.response_format = Some(infermux_core::ResponseFormat::JsonSchema {
        name: "pet".into(),
        schema: schema.clone(),
        strict: None,
    });
    let b = wire::generate_body(&req);
    for sent in [
        &b["generationConfig"]["responseJsonSchema"],
        &b["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"],
    ] {
        assert_eq!(
            sent["properties"]["p"],
            json!({"anyOf": [{"$ref": "#/$defs/P"}], "description": "the pet"})
        );
        assert_eq!(sent["properties"]["$ref"], json!({"type": "string"}));
        assert_eq!(sent["$defs"], schema["$defs"]);
    }
    assert_eq!(
        serde_json::to_string(&wire::GenerateBody::new(&req)).unwrap(),
        b.to_string()
    );

    req.extra.insert(
        "generationConfig".into(),
        json!({"response_schema": {"type": "OBJECT"}}),
    );
    let b = wire::generate_body(&req);
    assert!(
        b["generationConfig"].get("responseJsonSchema").is_none(),
        "{b}"
    );

    let typed = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT",
            "properties": {"n": {"type": "STRING", "nullable": true},
                           "xs": {"type": "ARRAY", "items": {"type": "INTEGER"}}},
            "required": ["xs"]}}]}]});
    let back = wire::chat_request_from_json("gemini-2.5-flash", &typed).unwrap();
    assert_eq!(
        back.tools[0].parameters,
        json!({"type": "object", "properties": {"n": {"type": ["string", "null"]},
            "xs": {"type": "array", "items": {"type": "integer"}}}, "required": ["xs"]})
    );
}

/// The recorded batch embedding answer's `usageMetadata` is the response's usage.
#[test]
fn recorded_batch_embeddings_keep_their_usage() {
    let Some(path) = infermux_testkit::shared_fixture(
        "fixtures/cassettes/gemini/llm-gemini/test_embedding_batch.yaml",
    ) else {
        return;
    };
    let c = Cassette::load(&path).unwrap();
    let it = c
        .interactions
        .iter()
        .find(|i| i.request.path().ends_with(":batchEmbedContents"))
        .expect("a batchEmbedContents interaction");
    let body = crate::response_bytes(&it.response);
    let n = it.request.json().unwrap()["requests"]
        .as_array()
        .unwrap()
        .len();
    let v: Value = serde_json::from_slice(&body).unwrap();
    let want = v["usageMetadata"]["promptTokenCount"]
        .as_u64()
        .expect("recorded usage");
    let r = wire::parse_batch_embeddings(&body, "m", n).unwrap();
    assert_eq!(r.usage.map(|u| u.input_tokens), Some(want));
}

#[test]
fn a_tool_without_parameters_declares_none() {
    for params in [
        json!({"type": "object"}),
        json!({"type": "object", "properties": {}}),
    ] {
        let req = ChatRequest::new("gemini-2.5-flash", vec![Message::user("what time is it")])
            .with_tools(vec![Tool::new("now", "the time", params.clone())]);
        let b = wire::generate_body(&req);
        let decl = &b["tools"][0]["functionDeclarations"][0];
        assert_eq!(decl["name"], "now");
        assert!(
            decl.get("parametersJsonSchema").is_none(),
            "{params}: {decl}"
        );
    }
    // alternatives are parameters, kept
    let any = json!({"type": "object", "anyOf": [{"properties": {"a": {"type": "string"}}}]});
    let req = ChatRequest::new("gemini-2.5-flash", vec![Message::user("x")])
        .with_tools(vec![Tool::new("alt", "alternatives", any)]);
    let b = wire::generate_body(&req);
    assert!(
        b["tools"][0]["functionDeclarations"][0]
            .get("parametersJsonSchema")
            .is_some()
    );
}

#[test]
fn function_call_arguments_streamed_in_pieces_are_assembled() {
    // `streamFunctionCallArguments`: a call opens with its name and `willContinue`, its
    // arguments follow by JSON path (strings in pieces), and a part without `willContinue`
    // closes it; a second call the same way
    let chunks = [
        r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"getWeather","willContinue":true},"thoughtSignature":"c2ln"}]}}]}"#,
        r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"partialArgs":[{"jsonPath":"$.location","stringValue":"Bos","willContinue":true}],"willContinue":true}}]}}]}"#,
        r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"partialArgs":[{"jsonPath":"$.location","stringValue":"ton"}],"willContinue":true}}]}}]}"#,
        r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"partialArgs":[{"jsonPath":"$.days","numberValue":3},{"jsonPath":"$.units.metric","boolValue":true},{"jsonPath":"$.tags[1]","stringValue":"b"}],"willContinue":true}}]}}]}"#,
        r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{}}]}}]}"#,
        r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"getWeather","willContinue":true}}]}}]}"#,
        r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"partialArgs":[{"jsonPath":"$.location","stringValue":"San Francisco","willContinue":true}],"willContinue":true}}]}}]}"#,
        r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"partialArgs":[{"jsonPath":"$.location","stringValue":""}],"willContinue":true}}]}}]}"#,
        r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{}}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":26,"candidatesTokenCount":23}}"#,
    ];
    let r = collect_chunks(&chunks);
    assert_eq!(r.tool_calls().len(), 2, "{:?}", r.tool_calls());
    assert_eq!(r.tool_calls()[0].name, "getWeather");
    assert_eq!(
        r.tool_calls()[0].parsed_arguments().unwrap(),
        json!({"location": "Boston", "days": 3, "units": {"metric": true}, "tags": [null, "b"]})
    );
    assert_eq!(r.tool_calls()[0].signature.as_deref(), Some("c2ln"));
    assert_eq!(r.tool_calls()[1].name, "getWeather");
    assert_eq!(
        r.tool_calls()[1].parsed_arguments().unwrap(),
        json!({"location": "San Francisco"})
    );
    assert_eq!(
        r.finish_reason,
        Some(infermux_core::FinishReason::ToolCalls)
    );
}

#[test]
fn an_argument_path_too_deep_is_a_decode_error_not_a_stack_overflow() {
    let open = r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"f","willContinue":true}}]}}]}"#;
    let deep = |steps: usize| {
        format!(
            r#"{{"candidates":[{{"content":{{"role":"model","parts":[{{"functionCall":{{"partialArgs":[{{"jsonPath":"${}","stringValue":"x"}}],"willContinue":true}}}}]}}}}]}}"#,
            ".a".repeat(steps)
        )
    };
    // 128 levels read (as deep as serde_json reads a document)
    let mut st = wire::GenerateState::new();
    st.on_chunk(open).unwrap();
    st.on_chunk(&deep(128)).unwrap();
    // 50 000 would build a value whose drop overflows the stack
    let mut st = wire::GenerateState::new();
    st.on_chunk(open).unwrap();
    let e = st.on_chunk(&deep(50_000)).unwrap_err();
    assert_eq!(e.kind(), infermux_core::ErrorKind::Decode, "{e}");
}

#[test]
fn argument_values_of_every_protobuf_kind_are_read_and_an_unknown_kind_is_an_error() {
    let open = r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"f","willContinue":true}}]}}]}"#;
    let args = r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"partialArgs":[{"jsonPath":"$.o","structValue":{"k":1}},{"jsonPath":"$.l","listValue":[1,"a"]},{"jsonPath":"$.n","nullValue":null}],"willContinue":true}}]}}]}"#;
    let close = r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{}}]},"finishReason":"STOP"}]}"#;
    let r = collect_chunks(&[open, args, close]);
    assert_eq!(
        r.tool_calls()[0].parsed_arguments().unwrap(),
        json!({"o": {"k": 1}, "l": [1, "a"], "n": null})
    );
    let odd = r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"partialArgs":[{"jsonPath":"$.x","decimalValue":"1.5"}],"willContinue":true}}]}}]}"#;
    let mut st = wire::GenerateState::new();
    st.on_chunk(open).unwrap();
    let e = st.on_chunk(odd).unwrap_err();
    assert_eq!(e.kind(), infermux_core::ErrorKind::Decode, "{e}");
}

/// Parts the crate does not model are kept, never dropped: an image answer is an image part,
/// code execution (and any newer kind) is kept raw and goes back to Gemini as it came; another
/// provider's raw block does not go to Gemini.
#[test]
fn parts_it_does_not_model_are_kept_and_sent_back() {
    let image = r#"{"candidates":[{"content":{"role":"model","parts":[{"inlineData":{"mimeType":"image/png","data":"iVBORw0KGgo="}}]},"finishReason":"STOP"}]}"#;
    let r = collect_chunks(&[image]);
    assert!(
        matches!(
            &r.message.content[..],
            [ContentPart::Image { source: infermux_core::ImageSource::Base64 { media_type, data }, .. }]
                if media_type == "image/png" && data == "iVBORw0KGgo="
        ),
        "{:?}",
        r.message.content
    );
    // a draft image (`thought`) and a signed one are kept raw: back to Gemini as they came
    let drafts = r#"{"candidates":[{"content":{"role":"model","parts":[{"inlineData":{"mimeType":"image/png","data":"AAAA"},"thought":true},{"inlineData":{"mimeType":"image/png","data":"BBBB"},"thoughtSignature":"c2ln"}]},"finishReason":"STOP"}]}"#;
    let r = collect_chunks(&[drafts]);
    assert!(
        r.message
            .content
            .iter()
            .all(|p| matches!(p, ContentPart::Other { .. })),
        "{:?}",
        r.message.content
    );
    let req = ChatRequest::new(
        "gemini-2.5-flash",
        vec![
            Message::user("draw"),
            r.message.clone(),
            Message::user("more"),
        ],
    );
    let b = wire::generate_body(&req);
    assert_eq!(b["contents"][1]["parts"][1]["thoughtSignature"], "c2ln");
    assert_eq!(b["contents"][1]["parts"][0]["thought"], true);
    let code = r#"{"candidates":[{"content":{"role":"model","parts":[{"executableCode":{"language":"PYTHON","code":"print(1+1)"}},{"codeExecutionResult":{"outcome":"OUTCOME_OK","output":"2\n"}},{"text":"It is 2."}]},"finishReason":"STOP"}]}"#;
    let r = collect_chunks(&[code]);
    assert_eq!(r.text(), "It is 2.");
    let raws: Vec<&Value> = r
        .message
        .content
        .iter()
        .filter_map(|p| match p {
            ContentPart::Other { raw } => Some(raw),
            _ => None,
        })
        .collect();
    assert_eq!(raws.len(), 2, "{:?}", r.message.content);
    assert_eq!(raws[1]["codeExecutionResult"]["output"], "2\n");
    // back to Gemini as they came, beside an Anthropic block that is not sent
    let mut turn = r.message.clone();
    turn.content.push(ContentPart::Other {
        raw: json!({"type": "container_upload", "file_id": "f"}),
    });
    let req = ChatRequest::new(
        "gemini-2.5-flash",
        vec![Message::user("1+1?"), turn, Message::user("thanks")],
    );
    let b = wire::generate_body(&req);
    let parts = &b["contents"][1]["parts"];
    assert_eq!(parts[0]["executableCode"]["code"], "print(1+1)");
    assert_eq!(parts[1]["codeExecutionResult"]["outcome"], "OUTCOME_OK");
    assert!(
        parts
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p.get("type").is_none()),
        "{parts}"
    );
}

/// The answer a stream of `chunks` (one JSON object each) adds up to.
fn collect_chunks(chunks: &[&str]) -> infermux_core::ChatResponse {
    let mut st = wire::GenerateState::new();
    let mut events = Vec::new();
    for c in chunks {
        events.extend(st.on_chunk(c).unwrap());
    }
    events.extend(st.on_end().unwrap());
    let stream = futures_util::stream::iter(events.into_iter().map(Ok));
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(infermux_core::StreamAccumulator::collect(Box::pin(stream)))
        .unwrap()
}

#[test]
fn recorded_streamed_function_call_arguments_read_as_two_whole_calls() {
    // recorded from Gemini 3.1 Pro with streamed function-call arguments (shared corpus)
    let Some(dir) = infermux_testkit::shared_fixture("fixtures/recorded_payloads/gemini/vercel-ai")
    else {
        return;
    };
    let text =
        std::fs::read_to_string(dir.join("google-stream-tool-call-arguments.chunks.txt")).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let r = collect_chunks(&lines);
    let calls: Vec<(String, Value)> = r
        .tool_calls()
        .iter()
        .map(|c| (c.name.clone(), c.parsed_arguments().unwrap()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("getWeather".to_owned(), json!({"location": "Boston"})),
            (
                "getWeather".to_owned(),
                json!({"location": "San Francisco"})
            ),
        ]
    );
}

#[test]
fn streamed_arguments_take_quoted_names_keep_given_args_and_late_signatures() {
    let chunks = [
        r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"f","args":{"a":1},"willContinue":true}}]}}]}"#,
        r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"partialArgs":[{"jsonPath":"$['first-name']","stringValue":"Ada"},{"jsonPath":"$[\"x.y\"][1]","numberValue":2},{"jsonPath":"$['it\\'s']","boolValue":false}],"willContinue":true},"thoughtSignature":"c2ln"}]}}]}"#,
        r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{}}]},"finishReason":"STOP"}]}"#,
    ];
    let r = collect_chunks(&chunks);
    let call = &r.tool_calls()[0];
    assert_eq!(
        call.parsed_arguments().unwrap(),
        json!({"a": 1, "first-name": "Ada", "x.y": [null, 2], "it's": false})
    );
    assert_eq!(call.signature.as_deref(), Some("c2ln"));
}

#[test]
fn a_streamed_argument_at_a_path_it_cannot_read_is_a_decode_error() {
    for path in ["$", "$[0]", "$.", "$..a", "$.a[99999]", "a.b"] {
        let mut st = wire::GenerateState::new();
        st.on_chunk(r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"f","willContinue":true}}]}}]}"#)
            .unwrap();
        let chunk = format!(
            r#"{{"candidates":[{{"content":{{"role":"model","parts":[{{"functionCall":{{"partialArgs":[{{"jsonPath":"{path}","stringValue":"x"}}],"willContinue":true}}}}]}}}}]}}"#
        );
        let e = st.on_chunk(&chunk).unwrap_err();
        assert_eq!(e.kind(), infermux_core::ErrorKind::Decode, "{path}");
    }
}

/// Each argument path is bounded (128 steps, indexes to 1024), but every `[1024]` step makes
/// 1025 values: the paths of one call together make at most 65 536, so a few hundred bytes of
/// paths cannot ask for gigabytes. Within the budget, such a path is read.
#[test]
fn streamed_argument_paths_make_a_bounded_number_of_values() {
    let open = r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"f","willContinue":true}}]}}]}"#;
    let piece = |paths: &[String]| {
        let items: Vec<String> = paths
            .iter()
            .map(|p| format!(r#"{{"jsonPath":"{p}","nullValue":null}}"#))
            .collect();
        format!(
            r#"{{"candidates":[{{"content":{{"role":"model","parts":[{{"functionCall":{{"partialArgs":[{}],"willContinue":true}}}}]}}}}]}}"#,
            items.join(",")
        )
    };
    let deep = |key: &str, steps: usize| format!("$.{key}{}", "[1024]".repeat(steps));
    // one path of 127 steps: 130 000 values
    let mut st = wire::GenerateState::new();
    st.on_chunk(open).unwrap();
    let e = st.on_chunk(&piece(&[deep("k", 127)])).unwrap_err();
    assert_eq!(e.kind(), infermux_core::ErrorKind::Decode);
    assert!(e.message().contains("65536 values"), "{e}");
    // two of 39 steps (40 000 values each), in two pieces: the second passes the budget
    let mut st = wire::GenerateState::new();
    st.on_chunk(open).unwrap();
    st.on_chunk(&piece(&[deep("a", 39)])).unwrap();
    let e = st.on_chunk(&piece(&[deep("b", 39)])).unwrap_err();
    assert_eq!(e.kind(), infermux_core::ErrorKind::Decode);
    // the same path twice makes its values once
    let mut st = wire::GenerateState::new();
    st.on_chunk(open).unwrap();
    st.on_chunk(&piece(&[deep("a", 39), deep("a", 39)]))
        .unwrap();
    st.on_chunk(&piece(&[deep("a", 39)])).unwrap();
}

#[test]
fn calls_another_model_made_carry_the_documented_signature_and_gemini_calls_their_own() {
    // a tool loop begun on another provider, then sent to Gemini (a fallback): Gemini 3 refuses
    // a current-turn call without a signature, so the first call of the turn gets the value
    // Google documents for histories from other models
    let foreign = Message::assistant_tool_calls(vec![
        ToolCall::new("call_1", "get_weather", r#"{"city":"Paris"}"#),
        ToolCall::new("call_2", "get_time", "{}"),
    ]);
    // Gemini's own parallel calls: only the first is signed, the second goes as it came
    let own = Message::assistant_tool_calls(vec![
        ToolCall::new("gemini-call-0", "get_weather", "{}").with_signature("c2ln"),
        ToolCall::new("gemini-call-1", "get_time", "{}"),
    ]);
    let req = ChatRequest::new(
        "gemini-3-pro-preview",
        vec![
            Message::user("weather and time in Paris?"),
            foreign,
            Message::tool_result("call_1", "sunny"),
            Message::tool_result("call_2", "noon"),
            Message::user("and in Rome?"),
            own,
            Message::tool_result("gemini-call-0", "rainy"),
            Message::tool_result("gemini-call-1", "one"),
        ],
    );
    let b = wire::generate_body(&req);
    let turns: Vec<&Value> = b["contents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["role"] == "model")
        .collect();
    assert_eq!(turns.len(), 2, "{b:#}");
    let sig = |t: &Value, i: usize| t["parts"][i].get("thoughtSignature").cloned();
    assert_eq!(sig(turns[0], 0), Some(json!(wire::FOREIGN_CALL_SIGNATURE)));
    assert_eq!(sig(turns[0], 1), None, "only the first call of the turn");
    assert_eq!(sig(turns[1], 0), Some(json!("c2ln")));
    assert_eq!(sig(turns[1], 1), None);
    assert_eq!(
        wire::FOREIGN_CALL_SIGNATURE,
        "skip_thought_signature_validator"
    );
}

/// A finish reason saying the model's output failed (a call it could not form, a tool it was
/// not given, an answer Gemini could not parse) is a server error a policy may retry, with
/// the text so far — never an answer (which a cache would keep); others are kept as they are.
#[test]
fn finish_reasons_that_say_the_output_failed_are_errors() {
    for reason in [
        "MALFORMED_FUNCTION_CALL",
        "UNEXPECTED_TOOL_CALL",
        "MALFORMED_RESPONSE",
    ] {
        let mut st = wire::GenerateState::new();
        let chunk = format!(
            r#"{{"candidates":[{{"content":{{"role":"model","parts":[{{"text":"Let me"}}]}},"finishReason":"{reason}","finishMessage":"Malformed function call: print(x"}}]}}"#
        );
        st.on_chunk(&chunk).unwrap();
        let e = st.on_end().unwrap_err();
        assert_eq!(e.kind(), infermux_core::ErrorKind::Server, "{reason}");
        assert_eq!(e.provider_code(), Some(reason));
        assert_eq!(e.partial_text(), Some("Let me"));
        let e = wire::parse_generate(chunk.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), infermux_core::ErrorKind::Server, "{reason}");
    }
    let mut st = wire::GenerateState::new();
    st.on_chunk(r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"x"}]},"finishReason":"SOME_NEWER_REASON"}]}"#)
        .unwrap();
    assert!(st.on_end().unwrap().contains(&StreamEvent::Done {
        finish_reason: Some(infermux_core::FinishReason::Other(
            "SOME_NEWER_REASON".into()
        ))
    }));
}

/// With several candidates (`candidateCount` in `extra`), the answer is the first's: another
/// candidate's text, calls and finish reason are not mixed into it, streamed or not.
#[test]
fn only_the_first_candidate_makes_the_answer() {
    let mut st = wire::GenerateState::new();
    let mut events = Vec::new();
    for chunk in [
        r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"A"}]},"index":0}]}"#,
        r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"B"}]},"finishReason":"SAFETY","index":1}]}"#,
        r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"B"},{"functionCall":{"name":"f","args":{}}}]},"index":1},{"content":{"role":"model","parts":[{"text":"a"}]},"finishReason":"STOP","index":0}]}"#,
    ] {
        events.extend(st.on_chunk(chunk).unwrap());
    }
    events.extend(st.on_end().unwrap());
    let mut acc = infermux_core::StreamAccumulator::new();
    for e in &events {
        acc.push(e);
    }
    let r = acc.finish();
    assert_eq!(r.text(), "Aa");
    assert!(r.tool_calls().is_empty());
    assert_eq!(r.finish_reason, Some(infermux_core::FinishReason::Stop));
    let whole = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"B"}]},"finishReason":"STOP","index":1},{"content":{"role":"model","parts":[{"text":"A"}]},"finishReason":"STOP","index":0}]}"#;
    assert_eq!(wire::parse_generate(whole.as_bytes()).unwrap().text(), "A");
}

/// What Gemini refuses is not sent: an empty text part or a turn without parts (an empty
/// assistant answer, an empty user message: "contents.parts must not be empty"), an empty
/// system text, a tool choice without function declarations, a seed past int32.
#[test]
fn empty_parts_turns_and_system_text_and_a_lone_tool_choice_are_left_out() {
    let mut req = ChatRequest::new(
        "gemini-2.5-flash",
        vec![
            Message::system(""),
            Message::user("hi"),
            Message::assistant(""),
            Message::user("more"),
            Message::user(""),
        ],
    );
    req.tool_choice = Some(ToolChoice::Auto);
    req.seed = Some(3_000_000_000);
    let b = wire::generate_body(&req);
    let contents = b["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 1, "one user turn: {b:#}");
    assert_eq!(
        contents[0]["parts"],
        json!([{"text": "hi"}, {"text": "more"}])
    );
    assert!(b.get("systemInstruction").is_none(), "{b:#}");
    assert!(b.get("toolConfig").is_none(), "{b:#}");
    let seed = b["generationConfig"]["seed"].as_i64().unwrap();
    assert!(i32::try_from(seed).is_ok(), "{seed}");
    // with tools, the choice goes; a real system text goes
    req.tools = vec![Tool::new("f", "", json!({"type": "object"}))];
    req.messages[0] = Message::system("be brief");
    let b = wire::generate_body(&req);
    assert!(b.get("toolConfig").is_some());
    assert_eq!(b["systemInstruction"]["parts"][0]["text"], "be brief");
}

/// A tool result whose call is not in the history (trimmed away) is named by its own name:
/// before, the call id went as the function's name, naming no declared function.
#[test]
fn a_tool_result_without_its_call_in_the_history_goes_by_its_own_name() {
    let mut result = Message::tool_result("call_9", r#"{"temp_c": 18}"#);
    result.name = Some("get_weather".into());
    let req = ChatRequest::new("gemini-2.5-flash", vec![Message::user("weather?"), result]);
    let b = wire::generate_body(&req);
    let parts = b["contents"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["parts"].as_array().unwrap().iter())
        .collect::<Vec<_>>();
    let response = parts
        .iter()
        .find_map(|p| p.get("functionResponse"))
        .expect("a function response");
    assert_eq!(response["name"], "get_weather", "{b}");
}

/// A candidate's sources — `citationMetadata.citationSources` (recitation) and
/// `groundingMetadata.groundingChunks` (Google Search, retrieval) — are citation parts after
/// its text, each once however many chunks repeat it; they were dropped.
#[test]
fn citations_and_grounding_sources_are_citation_parts() {
    let cited = serde_json::json!({"startIndex": 0, "endIndex": 5, "uri": "https://example.com/a", "license": ""});
    let web = serde_json::json!({"web": {"uri": "https://example.com/b", "title": "b"}});
    let chunk = |text: &str, finish: Option<&str>| {
        let mut c = serde_json::json!({"candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
            "citationMetadata": {"citationSources": [cited]},
            "groundingMetadata": {"groundingChunks": [web, "odd"], "webSearchQueries": ["q"]}}]});
        if let Some(f) = finish {
            c["candidates"][0]["finishReason"] = f.into();
        }
        c.to_string()
    };
    let whole = wire::parse_generate(chunk("Paris.", Some("STOP")).as_bytes()).unwrap();
    assert_eq!(
        whole.message.content,
        vec![
            ContentPart::text("Paris."),
            ContentPart::Citation { raw: cited.clone() },
            ContentPart::Citation { raw: web.clone() },
        ]
    );
    let mut st = wire::GenerateState::new();
    let mut acc = infermux_core::StreamAccumulator::new();
    for c in [chunk("Par", None), chunk("is.", Some("STOP"))] {
        for e in st.on_chunk(&c).unwrap() {
            acc.push(&e);
        }
    }
    for e in st.on_end().unwrap() {
        acc.push(&e);
    }
    // repeated on each chunk, given once each, after the whole text: as the answer read whole
    let streamed = acc.finish();
    assert_eq!(streamed.message.content, whole.message.content);
}
