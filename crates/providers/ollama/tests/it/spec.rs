//! The request bodies this crate builds, checked against Ollama's published `openapi.yaml`
//! with a small hand-rolled validator (`$ref`, `type`, `required`, `properties`, `items`,
//! `oneOf`/`anyOf`).

use infermux_core::{
    ChatRequest, CompletionRequest, ContentPart, EmbeddingRequest, Message, ResponseFormat, Tool,
    ToolCall,
};
use infermux_ollama::wire;
use serde_json::{Value, json};

const SPEC: &str = "fixtures/specs/ollama/openapi.yaml";

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
    let embed = EmbeddingRequest::new("all-minilm", ["a", "b"]);
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

/// Ollama has no tool choice: `none` sends no tools and a named tool is sent alone (the model
/// could call another, or none, when all were sent); `auto` and `required` send them all.
#[test]
fn a_tool_choice_is_said_with_the_tools_sent() {
    use infermux_core::ToolChoice;
    let tools = vec![
        Tool::new("get_weather", "weather", json!({"type": "object"})),
        Tool::new("get_time", "time", json!({"type": "object"})),
    ];
    let names = |choice: Option<ToolChoice>| -> Vec<String> {
        let mut req =
            ChatRequest::new("llama3.2", vec![Message::user("hi")]).with_tools(tools.clone());
        req.tool_choice = choice;
        wire::chat_body(&req, false)
            .get("tools")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names(None), ["get_weather", "get_time"]);
    assert_eq!(names(Some(ToolChoice::Auto)), ["get_weather", "get_time"]);
    assert_eq!(
        names(Some(ToolChoice::Required)),
        ["get_weather", "get_time"]
    );
    assert!(names(Some(ToolChoice::None)).is_empty());
    assert_eq!(
        names(Some(ToolChoice::Tool("get_time".into()))),
        ["get_time"]
    );
    // a name that is no tool of the request: all of them, as before
    assert_eq!(
        names(Some(ToolChoice::Tool("nope".into()))),
        ["get_weather", "get_time"]
    );
}
