//! The request bodies this crate builds, checked against TEI's published `openapi.json` with
//! a small hand-rolled validator (`$ref`, `type`, `required`, `properties`, `items`,
//! `oneOf`/`anyOf`/`allOf`, `nullable`).

use infermux_core::EmbeddingRequest;
use infermux_hf_tei::{EmbedOptions, wire};
use serde_json::{Map, Value, json};

const SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../../shared/fixtures/specs/tei/openapi.json"
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
    let inputs = vec!["What is Deep Learning?".to_owned(), "Rust".to_owned()];
    let opts = EmbedOptions::new().with_normalize(true).with_truncate(true);
    assert_valid(
        &root,
        "/embed",
        &wire::embed_body(&inputs, opts, Some(256), &Map::new()),
    );
    assert_valid(
        &root,
        "/embed",
        &wire::embed_body(&inputs[..1], EmbedOptions::default(), None, &Map::new()),
    );
    let sparse = EmbedOptions::new().with_truncate(false);
    assert_valid(
        &root,
        "/embed_sparse",
        &wire::embed_body(&inputs, sparse, None, &Map::new()),
    );
    assert_valid(
        &root,
        "/rerank",
        &wire::rerank_body("What is Deep Learning?", &inputs, Some(true)),
    );
    let openai =
        infermux_openai_compat::wire::embedding_body(&EmbeddingRequest::new("tei", inputs));
    assert_valid(&root, "/v1/embeddings", &openai);
}

#[test]
fn the_validator_catches_a_wrong_body() {
    let Some(root) = spec() else {
        eprintln!("skipping: {SPEC} is absent");
        return;
    };
    let schema = root
        .pointer("/paths/~1rerank/post/requestBody/content/application~1json/schema")
        .unwrap();
    let mut problems = Vec::new();
    check(
        &root,
        schema,
        &json!({"query": 1, "texts": "x"}),
        "$",
        &mut problems,
    );
    assert!(problems.len() >= 2, "{problems:?}");
}
