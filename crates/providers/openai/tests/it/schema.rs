//! The JSON bodies this crate sends, validated against the request schemas of the official
//! OpenAI OpenAPI spec in `../shared/fixtures/specs/openai/openapi.json` (skipped with a message
//! when absent).
//!
//! The validator is a small hand-rolled subset of OpenAPI 3 schema semantics, enough for these
//! schemas: `$ref`, `type` (also as a list), `nullable`, `enum`, `const`, `properties`,
//! `required`, `additionalProperties` (`false` or a schema), `items`, `minItems`/`maxItems`,
//! `minimum`/`maximum`, `allOf`, `anyOf` and `oneOf` (at least one alternative must match: the
//! spec's alternatives overlap, such as a free string next to a string enum). On top of the
//! spec, every top-level field must be one the schema declares, so a misspelt field fails even
//! where the spec leaves objects open.

use infermux_core::{ChatRequest, ContentPart, Message, ToolCall, ToolChoice};
use infermux_openai::media::{ImageRequest, SpeechRequest};
use infermux_openai::{chat_body, responses};
use infermux_openai_compat::wire;
use serde_json::{Map, Value, json};

use crate::{
    chat_request, completion_request, embedding_request, json_schema_request, tool_request,
};

fn spec() -> Option<Value> {
    infermux_testkit::spec::load_shared("fixtures/specs/openai/openapi.json")
}

struct Validator<'a> {
    root: &'a Value,
}

impl<'a> Validator<'a> {
    fn resolve(&self, mut s: &'a Value) -> &'a Value {
        for _ in 0..32 {
            let Some(r) = s.get("$ref").and_then(Value::as_str) else {
                break;
            };
            let ptr = r.trim_start_matches('#');
            s = self
                .root
                .pointer(ptr)
                .unwrap_or_else(|| panic!("unresolved $ref {r}"));
        }
        s
    }

    fn errors(&self, s: &'a Value, v: &Value, path: &str) -> Vec<String> {
        let mut errs = Vec::new();
        self.check(s, v, path, &mut errs);
        errs
    }

    fn type_ok(t: &str, v: &Value) -> bool {
        match t {
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

    /// Properties declared by `s` and everything it composes (for the top-level field check).
    fn declared(&self, s: &'a Value, out: &mut Vec<String>) {
        let s = self.resolve(s);
        if let Some(p) = s.get("properties").and_then(Value::as_object) {
            out.extend(p.keys().cloned());
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            for sub in s.get(key).and_then(Value::as_array).into_iter().flatten() {
                self.declared(sub, out);
            }
        }
    }

    fn check(&self, s: &'a Value, v: &Value, path: &str, errs: &mut Vec<String>) {
        let s = self.resolve(s);
        if v.is_null() && s.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        for sub in s
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.check(sub, v, path, errs);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(alts) = s.get(key).and_then(Value::as_array) {
                let results: Vec<Vec<String>> =
                    alts.iter().map(|a| self.errors(a, v, path)).collect();
                if !results.iter().any(Vec::is_empty) {
                    errs.push(format!(
                        "{path}: no alternative of {key} matches {v}: {results:?}"
                    ));
                }
            }
        }
        match s.get("type") {
            Some(Value::String(t)) if !Self::type_ok(t, v) => {
                errs.push(format!("{path}: expected {t}, got {v}"));
                return;
            }
            Some(Value::Array(ts))
                if !ts
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|t| Self::type_ok(t, v)) =>
            {
                errs.push(format!("{path}: expected one of {ts:?}, got {v}"));
                return;
            }
            _ => {}
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array)
            && !e.contains(v)
        {
            errs.push(format!("{path}: {v} is not one of {e:?}"));
        }
        if let Some(c) = s.get("const")
            && c != v
        {
            errs.push(format!("{path}: {v} is not {c}"));
        }
        if let Some(n) = v.as_f64() {
            if let Some(min) = s.get("minimum").and_then(Value::as_f64)
                && n < min
            {
                errs.push(format!("{path}: {n} < {min}"));
            }
            if let Some(max) = s.get("maximum").and_then(Value::as_f64)
                && n > max
            {
                errs.push(format!("{path}: {n} > {max}"));
            }
        }
        if let Some(items) = v.as_array() {
            if let Some(min) = s.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                errs.push(format!("{path}: fewer than {min} items"));
            }
            if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
                && (items.len() as u64) > max
            {
                errs.push(format!("{path}: more than {max} items"));
            }
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    self.check(item_schema, item, &format!("{path}[{i}]"), errs);
                }
            }
        }
        if let Some(obj) = v.as_object() {
            let props = s.get("properties").and_then(Value::as_object);
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(name) = r.as_str()
                    && !obj.contains_key(name)
                {
                    errs.push(format!("{path}: missing required `{name}`"));
                }
            }
            for (k, val) in obj {
                let sub = props.and_then(|p| p.get(k));
                match (sub, s.get("additionalProperties")) {
                    (Some(sub), _) => self.check(sub, val, &format!("{path}.{k}"), errs),
                    (None, Some(Value::Bool(false))) => {
                        errs.push(format!("{path}: unknown field `{k}`"));
                    }
                    (None, Some(extra @ Value::Object(_))) => {
                        self.check(extra, val, &format!("{path}.{k}"), errs);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Validates `body` against `components.schemas.<name>`, and checks every top-level field
    /// is declared.
    fn validate(&self, name: &str, body: &Value) -> Vec<String> {
        let schema = self
            .root
            .pointer(&format!("/components/schemas/{name}"))
            .unwrap_or_else(|| panic!("no schema {name}"));
        let mut errs = self.errors(schema, body, name);
        let mut declared = Vec::new();
        self.declared(schema, &mut declared);
        for k in body.as_object().map(Map::keys).into_iter().flatten() {
            if !declared.contains(k) {
                errs.push(format!("{name}: field `{k}` is not in the spec"));
            }
        }
        errs
    }
}

/// Every kind of chat body this crate builds.
fn chat_bodies() -> Vec<(&'static str, Value)> {
    let mut out: Vec<(&'static str, Value)> = chat_bodies_requests()
        .into_iter()
        .map(|(what, req)| (what, chat_body(&req, false)))
        .collect();
    out.push(("streamed", chat_body(&chat_request(), true)));
    out.push(("tools, streamed", chat_body(&tool_request(), true)));
    out
}

/// Every kind of chat request the body tests cover.
fn chat_bodies_requests() -> Vec<(&'static str, ChatRequest)> {
    let mut conversation = chat_request();
    conversation
        .messages
        .push(Message::assistant_tool_calls(vec![
            ToolCall::new("call_1", "get_weather", r#"{"city":"Paris"}"#),
            ToolCall::new("call_2", "get_weather", r#"{"city":"Rome"}"#),
        ]));
    conversation
        .messages
        .push(Message::tool_result("call_1", "18 °C"));
    conversation
        .messages
        .push(Message::tool_result("call_2", "24 °C"));
    conversation.messages.push(Message::user_parts(vec![
        ContentPart::text("And this picture?"),
        ContentPart::image_url("https://example.com/cat.png"),
        ContentPart::image_base64("image/png", "iVBORw0KGgo="),
    ]));
    let mut named = tool_request().with_tool_choice(ToolChoice::Tool("get_weather".into()));
    named.parallel_tool_calls = Some(false);
    named.tools[0].strict = Some(true);
    let mut misc = chat_request().with_stop(vec!["\n\n".into()]);
    misc.top_p = Some(0.9);
    misc.user = Some("user-1".into());
    vec![
        ("plain", chat_request()),
        ("tools", tool_request()),
        ("named tool, no parallel calls", named),
        ("tool results and images", conversation),
        ("json schema", json_schema_request()),
        ("stop, top_p, user", misc),
    ]
}

/// Every kind of Responses API body this crate builds.
fn responses_bodies() -> Vec<(&'static str, Value)> {
    chat_bodies_requests()
        .into_iter()
        .flat_map(|(what, req)| {
            [
                (what, responses::responses_body(&req, false)),
                (what, responses::responses_body(&req, true)),
            ]
        })
        .collect()
}

#[test]
fn request_bodies_validate_against_the_openapi_spec() {
    let Some(spec) = spec() else {
        return;
    };
    let v = Validator { root: &spec };
    let mut failures = Vec::new();
    for (what, body) in chat_bodies() {
        for e in v.validate("CreateChatCompletionRequest", &body) {
            failures.push(format!("chat ({what}): {e}"));
        }
    }
    for (what, body) in responses_bodies() {
        for e in v.validate("CreateResponse", &body) {
            failures.push(format!("responses ({what}): {e}"));
        }
    }
    let moderation = json!({"model": "omni-moderation-latest", "input": ["a", "b"]});
    failures.extend(v.validate("CreateModerationRequest", &moderation));
    let mut image = ImageRequest::new("dall-e-3", "an otter");
    image.n = Some(1);
    image.size = Some("1024x1024".into());
    image.response_format = Some("b64_json".into());
    failures.extend(v.validate("CreateImageRequest", &image.body()));
    let mut speech = SpeechRequest::new("tts-1", "Hello", "alloy");
    speech.response_format = Some("mp3".into());
    failures.extend(v.validate("CreateSpeechRequest", &speech.body()));
    let completion = wire::completion_body(&completion_request());
    failures.extend(v.validate("CreateCompletionRequest", &completion));
    let mut embedding = wire::embedding_body(&embedding_request());
    failures.extend(v.validate("CreateEmbeddingRequest", &embedding));
    embedding["encoding_format"] = json!("base64");
    failures.extend(v.validate("CreateEmbeddingRequest", &embedding));
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn the_validator_rejects_what_the_spec_forbids() {
    let Some(spec) = spec() else {
        return;
    };
    let v = Validator { root: &spec };
    let bad = [
        json!({"model": "m", "messages": []}),
        json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temprature": 1}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}),
    ];
    for body in bad {
        assert!(
            !v.validate("CreateChatCompletionRequest", &body).is_empty(),
            "accepted {body}"
        );
    }
    let bad_embedding = json!({"model": "m", "input": ["x"], "encoding_format": "hex"});
    assert!(
        !v.validate("CreateEmbeddingRequest", &bad_embedding)
            .is_empty()
    );
}
