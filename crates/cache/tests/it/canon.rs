//! The canonical writer against an independent oracle: `serde_json::to_value`, then printed
//! with object keys sorted — the canonical form as it was defined before the writer, so keys
//! (shared through Redis) did not change with it.

use infermux_cache::{CacheKey, canonical_json};
use infermux_core::{ChatRequest, Message, Request, RequestContext, Tool};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// The oracle: `v` printed with keys sorted by their bytes at every depth.
fn reference(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push(':');
                reference(&map[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                reference(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&serde_json::to_string(scalar).unwrap()),
    }
}

fn oracle(v: &impl serde::Serialize) -> String {
    let mut out = String::new();
    reference(&serde_json::to_value(v).unwrap(), &mut out);
    out
}

/// The record `CacheKey::exact` hashes, built on the oracle.
fn oracle_key(req: &Request, tenant: Option<&str>, namespace: &str) -> u128 {
    let record = format!(
        "{{\"format\":\"infermux-cache/1\",\"namespace\":{},\"tenant\":{},\"tier\":\"exact\",\"extra\":\"\",\"request\":{}}}",
        serde_json::to_string(namespace).unwrap(),
        tenant.map_or("null".to_owned(), |t| serde_json::to_string(t).unwrap()),
        oracle(req),
    );
    xxhash_rust::xxh3::xxh3_128(record.as_bytes())
}

fn key_text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z_]{0,6}", "\\PC{0,4}", "[\\x00-\\x7f]{0,4}"]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((key_text(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn request() -> impl Strategy<Value = Request> {
    (
        "\\PC{0,12}",
        proptest::collection::vec(("\\PC{0,16}", 0u8..3), 1..4),
        proptest::option::of(any::<f32>()),
        proptest::option::of(any::<u32>()),
        proptest::collection::vec((key_text(), json_value()), 0..3),
        proptest::option::of(json_value()),
    )
        .prop_map(|(model, turns, temperature, max_tokens, extra, schema)| {
            let messages = turns
                .into_iter()
                .map(|(text, role)| match role {
                    0 => Message::system(text),
                    1 => Message::user(text),
                    _ => Message::assistant(text),
                })
                .collect();
            let mut r = ChatRequest::new(model, messages);
            r.temperature = temperature;
            r.max_tokens = max_tokens;
            for (k, v) in extra {
                r = r.with_extra(k, v);
            }
            if let Some(schema) = schema {
                r = r.with_tools(vec![Tool::new("f", "d", schema)]);
            }
            Request::Chat(r)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn the_writer_prints_what_to_value_and_a_sorted_print_give(v in json_value()) {
        prop_assert_eq!(canonical_json(&v).unwrap(), oracle(&v));
    }

    #[test]
    fn keys_are_the_hash_of_the_oracles_record(
        req in request(),
        tenant in proptest::option::of("\\PC{0,6}"),
        namespace in "\\PC{0,8}",
    ) {
        prop_assert_eq!(canonical_json(&req).unwrap(), oracle(&req));
        let ctx = match &tenant {
            Some(t) => RequestContext::new().with_tenant(t.clone()),
            None => RequestContext::new(),
        };
        let key = CacheKey::exact(&req, &ctx, &namespace).unwrap();
        prop_assert_eq!(key.as_u128(), oracle_key(&req, tenant.as_deref(), &namespace));
    }
}

/// The oracle and the comparison can fail: a struct printed in field order is not canonical,
/// and a key over that print is not the cache's key.
#[test]
fn field_order_is_not_canonical_and_the_check_sees_it() {
    let req = Request::Chat(
        ChatRequest::new("m", vec![Message::user("Hi")])
            .with_temperature(0.1)
            .with_extra("z", json!({"b": 1, "a": 2})),
    );
    let in_field_order = serde_json::to_string(&req).unwrap();
    let canonical = canonical_json(&req).unwrap();
    assert_ne!(in_field_order, canonical);
    assert_eq!(canonical, oracle(&req));
    // f32 widened as `Value` widens it
    assert!(
        canonical.contains("\"temperature\":0.10000000149011612"),
        "{canonical}"
    );
    let key = CacheKey::exact(&req, &RequestContext::new(), "g").unwrap();
    let wrong = format!(
        "{{\"format\":\"infermux-cache/1\",\"namespace\":\"g\",\"tenant\":null,\"tier\":\"exact\",\"extra\":\"\",\"request\":{in_field_order}}}"
    );
    assert_ne!(key.as_u128(), xxhash_rust::xxh3::xxh3_128(wrong.as_bytes()));
    assert_eq!(key.as_u128(), oracle_key(&req, None, "g"));
}

/// What has no JSON form has no key, and a later key on the same thread is unaffected.
#[test]
fn no_canonical_form_is_none_not_a_panic() {
    let mut bad = std::collections::BTreeMap::new();
    bad.insert(vec![1u8], 1);
    assert_eq!(canonical_json(&bad), None);
    assert_eq!(canonical_json(&u128::MAX), None);
    assert_eq!(
        canonical_json(&json!({"b": [1, 2]})).unwrap(),
        r#"{"b":[1,2]}"#
    );
}
