//! A small validator of JSON values against OpenAPI 3.0 schemas (`$ref`, `type`, `required`,
//! `properties`, `items`, `oneOf` / `anyOf` / `allOf`, `nullable`), so provider tests can check
//! the request bodies they build against the providers' published specs.
//!
//! ```
//! use serde_json::json;
//! let spec = json!({"components": {"schemas": {"Req": {"type": "object", "required": ["inputs"],
//!     "properties": {"inputs": {"type": "string"}}}}}});
//! let schema = json!({"$ref": "#/components/schemas/Req"});
//! let mut problems = Vec::new();
//! infermux_testkit::spec::check(&spec, &schema, &json!({"inputs": 3}), "$", &mut problems);
//! assert_eq!(problems, ["$.inputs: expected string, got 3"]);
//! ```

use serde_json::Value;

/// Loads a published OpenAPI description from the shared fixtures (`rel` under
/// [`shared_dir`](crate::shared_dir), JSON or YAML by its extension).
///
/// Returns `None` when it is absent — the test is then skipped visibly, or fails under
/// `INFERMUX_REQUIRE_FIXTURES=1` (see [`shared_fixture`](crate::shared_fixture)).
///
/// # Panics
/// When the file exists but cannot be read or parsed: a broken spec fails the test, it never
/// skips it.
pub fn load_shared(rel: &str) -> Option<Value> {
    let path = crate::shared_fixture(rel)?;
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    let parsed = if yaml {
        serde_norway::from_str(&text).map_err(|e| e.to_string())
    } else {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    };
    Some(parsed.unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Follows a local `$ref` (`#/components/schemas/...`).
pub fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
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
pub fn check(root: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
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
    // a number under the schema's `minimum` (TGI's seeds are u64: `"minimum": 0`)
    if let (Some(min), Some(n)) = (
        s.get("minimum").and_then(Value::as_f64),
        v.as_f64().filter(|_| v.is_number()),
    ) && n < min
    {
        out.push(format!("{at}: {v} is under the minimum {min}"));
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
