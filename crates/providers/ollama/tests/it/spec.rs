//! The request bodies this crate builds, checked against Ollama's published `openapi.yaml`
//! with a small hand-rolled validator (`$ref`, `type`, `required`, `properties`, `items`,
//! `oneOf`/`anyOf`).

use infermux_core::{
    ChatRequest, CompletionRequest, ContentPart, EmbeddingRequest, Message, ResponseFormat, Tool,
    ToolCall,
};
use infermux_ollama::wire;
use serde_json::{Value, json};

const SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../../shared/fixtures/specs/ollama/openapi.yaml"
);

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let ptr = r.trim_start_matches('#');
            root.pointer(ptr).map_or(schema, |s| resolve(root, s))
        }
        None => schema,
    }
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => true,
    }
}

/// Problems of `v` against `schema`, with JSON paths.
pub(crate) fn check(root: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    let s = resolve(root, schema);
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = s.get(key).and_then(Value::as_array) {
            let ok = alts.iter().any(|a| {
                let mut sub = Vec::new();
                check(root, a, v, at, &mut sub);
                sub.is_empty()
            });
            if !ok {
                out.push(format!("{at}: matches no alternative of {key}"));
            }
            return;
        }
    }
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for a in all {
            check(root, a, v, at, out);
        }
    }
    if v.is_null() && s.get("nullable") == Some(&Value::Bool(true)) {
        return;
    }
    match s.get("type") {
        Some(Value::String(t)) if !type_ok(t, v) => {
            out.push(format!("{at}: expected {t}, got {v}"));
            return;
        }
        Some(Value::Array(ts)) if !ts.iter().any(|t| t.as_str().is_some_and(|t| type_ok(t, v))) => {
            out.push(format!("{at}: expected one of {ts:?}, got {v}"));
            return;
        }
        _ => {}
    }
    if let Some(obj) = v.as_object() {
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = r.as_str()
                && !obj.contains_key(name)
            {
                out.push(format!("{at}: missing required `{name}`"));
            }
        }
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (k, val) in obj {
                if let Some(ps) = props.get(k) {
                    check(root, ps, val, &format!("{at}.{k}"), out);
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            check(root, items, x, &format!("{at}[{i}]"), out);
        }
    }
}

fn spec() -> Option<Value> {
    let text = std::fs::read_to_string(SPEC).ok()?;
    serde_norway::from_str(&text).ok()
}

fn assert_valid(root: &Value, path: &str, body: &Value) {
    let schema = root
        .pointer(&format!(
            "/paths/{}/post/requestBody/content/application~1json/schema",
            path.replace('/', "~1")
        ))
        .unwrap_or_else(|| panic!("no request schema for {path}"));
    let mut problems = Vec::new();
    check(root, schema, body, "$", &mut problems);
    assert!(problems.is_empty(), "{path}: {problems:#?}\n{body:#}");
}

#[test]
fn request_bodies_validate_against_the_openapi_spec() {
    let Some(root) = spec() else {
        eprintln!("skipping: {SPEC} is absent");
        return;
    };
    let tool = Tool::new(
        "get_weather",
        "Weather of a city",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    );
    let chat = ChatRequest::new(
        "llama3.2",
        vec![
            Message::system("Be brief."),
            Message::user_parts(vec![
                ContentPart::text("What is this?"),
                ContentPart::image_base64("image/png", "iVBORw0KGgo="),
            ]),
            Message::assistant_tool_calls(vec![ToolCall::new(
                "c1",
                "get_weather",
                r#"{"city":"Paris"}"#,
            )]),
            Message::tool_result("c1", "sunny"),
        ],
    )
    .with_tools(vec![tool])
    .with_max_tokens(16)
    .with_temperature(0.0)
    .with_seed(7)
    .with_stop(vec!["\n\n".into()]);
    for stream in [false, true] {
        assert_valid(&root, "/api/chat", &wire::chat_body(&chat, stream));
    }
    let structured = ChatRequest::new("llama3.2", vec![Message::user("JSON please")])
        .with_response_format(ResponseFormat::JsonObject);
    assert_valid(&root, "/api/chat", &wire::chat_body(&structured, false));
    let generate = CompletionRequest::new("llama3.2", "Why is the sky blue?").with_max_tokens(8);
    for stream in [false, true] {
        assert_valid(
            &root,
            "/api/generate",
            &wire::generate_body(&generate, stream),
        );
    }
    let embed = EmbeddingRequest::new("all-minilm", vec!["a".into(), "b".into()]);
    assert_valid(&root, "/api/embed", &wire::embed_body(&embed));
    assert_valid(&root, "/api/show", &json!({"model": "llama3.2"}));
    assert_valid(
        &root,
        "/api/pull",
        &json!({"model": "llama3.2", "stream": true}),
    );
}

#[test]
fn the_validator_catches_a_wrong_body() {
    let Some(root) = spec() else {
        eprintln!("skipping: {SPEC} is absent");
        return;
    };
    let schema = root
        .pointer("/paths/~1api~1chat/post/requestBody/content/application~1json/schema")
        .unwrap();
    let mut problems = Vec::new();
    check(
        &root,
        schema,
        &json!({"model": 3, "stream": "yes"}),
        "$",
        &mut problems,
    );
    assert!(problems.len() >= 2, "{problems:?}");
}
