//! A small validator of JSON values against OpenAPI 3.0 schemas (`$ref`, `type`, `required`,
//! `properties`, `additionalProperties`, `items`, `enum`, `const`, `minimum`, `oneOf` /
//! `anyOf` / `allOf`, `nullable`), so provider tests can check the request bodies they build
//! against the providers' published specs. A reference that names nothing panics.
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
///
/// # Panics
/// When the reference names nothing in `root`: a schema that cannot be found would accept
/// anything (a checker must be able to fail).
pub fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let ptr = r.trim_start_matches('#');
            let target = root
                .pointer(ptr)
                .unwrap_or_else(|| panic!("the schema reference `{r}` names nothing in the spec"));
            resolve(root, target)
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
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        out.push(format!(
            "{at}: {v} is none of {}",
            Value::Array(allowed.clone())
        ));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        out.push(format!("{at}: {v} is not the constant {c}"));
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
        let props = s.get("properties").and_then(Value::as_object);
        for (k, val) in obj {
            match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
                (Some(ps), _) => check(root, ps, val, &format!("{at}.{k}"), out),
                (None, Some(Value::Bool(false))) => {
                    out.push(format!("{at}: `{k}` is not a property the schema allows"));
                }
                (None, Some(extra @ Value::Object(_))) => {
                    check(root, extra, val, &format!("{at}.{k}"), out);
                }
                _ => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            check(root, items, x, &format!("{at}[{i}]"), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> Value {
        json!({"components": {"schemas": {
            "Msg": {"type": "object", "required": ["role"], "additionalProperties": false,
                "properties": {
                    "role": {"type": "string", "enum": ["system", "user", "assistant", "tool"]},
                    "kind": {"type": "string", "const": "text"},
                    "meta": {"type": "object", "additionalProperties": {"type": "integer"}}
                }},
            "Broken": {"$ref": "#/components/schemas/Nope"}
        }}})
    }

    fn problems(v: Value) -> Vec<String> {
        let root = spec();
        let mut out = Vec::new();
        check(
            &root,
            &json!({"$ref": "#/components/schemas/Msg"}),
            &v,
            "$",
            &mut out,
        );
        out
    }

    /// Each rule rejects what breaks it, and a good value passes.
    #[test]
    fn enums_constants_and_closed_objects_are_checked() {
        assert_eq!(
            problems(json!({"role": "user", "kind": "text", "meta": {"a": 1}})),
            Vec::<String>::new()
        );
        assert_eq!(
            problems(json!({"role": "developer"})),
            [r#"$.role: "developer" is none of ["system","user","assistant","tool"]"#]
        );
        assert_eq!(
            problems(json!({"role": "user", "kind": "image"})),
            [r#"$.kind: "image" is not the constant "text""#]
        );
        assert_eq!(
            problems(json!({"role": "user", "extra": 1})),
            ["$: `extra` is not a property the schema allows"]
        );
        assert_eq!(
            problems(json!({"role": "user", "meta": {"a": "x"}})),
            [r#"$.meta.a: expected integer, got "x""#]
        );
    }

    /// A reference to nothing fails loudly: it would have accepted anything.
    #[test]
    fn a_reference_to_nothing_panics() {
        let root = spec();
        let caught = std::panic::catch_unwind(|| {
            let mut out = Vec::new();
            check(
                &root,
                &json!({"$ref": "#/components/schemas/Broken"}),
                &json!({"anything": true}),
                "$",
                &mut out,
            );
        });
        let message = caught
            .expect_err("an unresolved reference must not pass")
            .downcast::<String>()
            .map(|s| *s)
            .unwrap_or_default();
        assert!(message.contains("names nothing"), "{message}");
    }
}
