//! The request bodies this crate builds, checked against TGI's published `openapi.json` with
//! a small hand-rolled validator (`$ref`, `type`, `required`, `properties`, `items`,
//! `oneOf`/`anyOf`/`allOf`, `nullable`).

use infermux_core::{ChatRequest, CompletionRequest, Message, Tool};
use infermux_hf_tgi::wire;
use serde_json::{Value, json};

const SPEC: &str = "fixtures/specs/tgi/openapi.json";

pub(crate) use infermux_testkit::spec::check;

fn spec() -> Option<Value> {
    infermux_testkit::spec::load_shared(SPEC)
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
    let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}}});
    let chat = chat.with_response_format(infermux_core::ResponseFormat::JsonSchema {
        name: "a".into(),
        schema: schema.clone(),
        strict: None,
    });
    // OpenAI's shape of a response format is not TGI's (the validator says so)
    let openai = infermux_openai_compat::wire::chat_body(&chat, false);
    let mut problems = Vec::new();
    let chat_schema = root
        .pointer("/paths/~1v1~1chat~1completions/post/requestBody/content/application~1json/schema")
        .unwrap();
    check(
        &root,
        chat_schema,
        &json!({"messages": [], "model": "tgi", "response_format": openai["response_format"]}),
        "$",
        &mut problems,
    );
    assert!(!problems.is_empty(), "OpenAI's json_schema shape passed");
    for s in [false, true] {
        let mut body = infermux_hf_tgi::messages_body(&chat, s);
        assert_eq!(
            body["response_format"],
            json!({"type": "json", "value": schema})
        );
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
    // a negative seed (OpenAI takes any integer) is folded into TGI's u64, in both APIs; the
    // validator refuses it as it was
    let mut chat = ChatRequest::new("tgi", vec![Message::user("Hi")]);
    chat.seed = Some(-7);
    let body = infermux_hf_tgi::messages_body(&chat, false);
    assert_eq!(body["seed"], json!((-7i64) as u64));
    assert_valid(&root, "/v1/chat/completions", &body);
    let mut problems = Vec::new();
    check(
        &root,
        root.pointer(
            "/paths/~1v1~1chat~1completions/post/requestBody/content/application~1json/schema",
        )
        .unwrap(),
        &json!({"messages": [], "model": "tgi", "seed": -7}),
        "$",
        &mut problems,
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    let mut req = CompletionRequest::new("tgi", "x");
    req.seed = Some(-7);
    let body = wire::generate_body(&req, None);
    assert_eq!(body["parameters"]["seed"], json!((-7i64) as u64));
    assert_valid(&root, "/generate", &body);
}

#[test]
fn the_validator_catches_a_wrong_body() {
    let Some(root) = spec() else {
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
