//! The request bodies this crate builds, checked against TGI's published `openapi.json` with
//! a small hand-rolled validator (`$ref`, `type`, `required`, `properties`, `items`,
//! `oneOf`/`anyOf`/`allOf`, `nullable`).

use infermux_core::{ChatRequest, CompletionRequest, Message, Tool};
use infermux_hf_tgi::wire;
use serde_json::{Value, json};

const SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../../shared/fixtures/specs/tgi/openapi.json"
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
    serde_json::from_str(&std::fs::read_to_string(SPEC).ok()?).ok()
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
    let mut req = CompletionRequest::new("tgi", "What is Deep Learning?")
        .with_max_tokens(20)
        .with_temperature(0.5);
    req.stop = vec!["\n\n".into()];
    req.seed = Some(42);
    assert_valid(&root, "/generate", &wire::generate_body(&req, None));
    assert_valid(&root, "/generate_stream", &wire::generate_body(&req, None));
    // the Inference API body is TGI's `/` (CompatGenerateRequest)
    for s in [false, true] {
        assert_valid(&root, "/", &wire::generate_body(&req, Some(s)));
    }
    let greedy = CompletionRequest::new("tgi", "x").with_temperature(0.0);
    assert_valid(&root, "/generate", &wire::generate_body(&greedy, None));
    let chat = ChatRequest::new(
        "tgi",
        vec![Message::system("Be brief."), Message::user("Weather?")],
    )
    .with_max_tokens(16)
    .with_tools(vec![Tool::new(
        "get_weather",
        "Weather",
        json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    )]);
    for s in [false, true] {
        let mut body = infermux_openai_compat::wire::chat_body(&chat, s);
        // TGI's schema names a function's JSON schema `arguments`; its router accepts the
        // OpenAI name `parameters` as a serde alias of that field, which the schema cannot say
        for t in body["tools"].as_array_mut().into_iter().flatten() {
            if let Some(f) = t["function"].as_object_mut()
                && let Some(p) = f.remove("parameters")
            {
                f.insert("arguments".into(), p);
            }
        }
        assert_valid(&root, "/v1/chat/completions", &body);
    }
}

#[test]
fn the_validator_catches_a_wrong_body() {
    let Some(root) = spec() else {
        eprintln!("skipping: {SPEC} is absent");
        return;
    };
    let schema = root
        .pointer("/paths/~1generate/post/requestBody/content/application~1json/schema")
        .unwrap();
    let mut problems = Vec::new();
    check(
        &root,
        schema,
        &json!({"parameters": {"max_new_tokens": "ten"}}),
        "$",
        &mut problems,
    );
    assert!(problems.len() >= 2, "{problems:?}");
}
