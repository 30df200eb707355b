//! Bad and unusual input on small hand-written cassettes: a truncated NDJSON stream, an error
//! line inside a 200 stream, HTML and JSON error pages, pull progress, show, tags, embed, tool
//! calls, and keys kept out of `Debug` and errors.

use futures_util::StreamExt;
use infermux_core::{
    ApiKey, ChatRequest, EmbeddingRequest, EndpointConfig, ErrorKind, FinishReason, Message,
    Provider, Request, RequestContext, Response, StreamAccumulator,
};
use infermux_ollama::Ollama;
use infermux_testkit::{Cassette, ReplayServer};

use crate::ollama;

fn one(method: &str, path: &str, status: u16, ctype: &str, body: &str) -> Cassette {
    let yaml = format!(
        "interactions:\n- request: {{method: {method}, uri: 'http://ollama:11434{path}', body: null, headers: {{}}}}\n  response:\n    status: {{code: {status}, message: X}}\n    headers: {{content-type: ['{ctype}']}}\n    body: {{string: {}}}\n",
        serde_json::to_string(body).unwrap()
    );
    Cassette::from_yaml(&yaml).unwrap()
}

fn chat() -> Request {
    Request::Chat(ChatRequest::new("llama3", vec![Message::user("Hi")]))
}

const TRUNCATED: &str = "{\"model\":\"llama3\",\"message\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"done\":false}\n{\"model\":\"llama3\",\"message\":{\"role\":\"assistant\",\"content\":\"lo\"},\"done\":false}\n";

#[tokio::test]
async fn a_stream_without_done_true_is_a_decode_error_with_the_partial_text() {
    let server = ReplayServer::start(one(
        "POST",
        "/api/chat",
        200,
        "application/x-ndjson",
        TRUNCATED,
    ))
    .await
    .unwrap();
    let s = ollama(&server.url())
        .stream(&chat(), &RequestContext::new())
        .await
        .unwrap();
    let e = StreamAccumulator::collect(s).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert_eq!(e.partial_text(), Some("Hello"));
    assert_eq!(e.provider(), Some("ollama"));
    server.verify().unwrap();
}

#[tokio::test]
async fn an_error_line_inside_a_200_stream_ends_it_with_an_error() {
    let body = "{\"model\":\"llama3\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n{\"error\":\"an error was encountered while running the model: unexpected EOF\"}\n";
    let server = ReplayServer::start(one("POST", "/api/chat", 200, "application/x-ndjson", body))
        .await
        .unwrap();
    let s = ollama(&server.url())
        .stream(&chat(), &RequestContext::new())
        .await
        .unwrap();
    let e = StreamAccumulator::collect(s).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    assert!(e.to_string().contains("unexpected EOF"), "{e}");
    assert_eq!(e.partial_text(), Some("Hi"));
}

#[tokio::test]
async fn error_pages_map_to_kinds() {
    let cases = [
        (
            404,
            "application/json",
            r#"{"error":"model \"nope\" not found, try pulling it first"}"#,
            ErrorKind::NotFound,
        ),
        (
            502,
            "text/html",
            "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
            ErrorKind::Server,
        ),
        (
            400,
            "application/json",
            r#"{"error":"invalid options: foo"}"#,
            ErrorKind::InvalidRequest,
        ),
    ];
    for (status, ctype, body, kind) in cases {
        let server = ReplayServer::start(one("POST", "/api/chat", status, ctype, body))
            .await
            .unwrap();
        let e = ollama(&server.url())
            .call(&chat(), &RequestContext::new())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), kind, "{status}: {e}");
        assert_eq!(e.status(), Some(status));
        let s = ReplayServer::start(one("POST", "/api/chat", status, ctype, body))
            .await
            .unwrap();
        let e = ollama(&s.url())
            .stream(&chat(), &RequestContext::new())
            .await
            .err()
            .unwrap();
        assert_eq!(e.kind(), kind, "streamed {status}: {e}");
    }
}

#[tokio::test]
async fn tool_calls_plain_and_streamed() {
    let plain = r#"{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},"done_reason":"stop","done":true,"prompt_eval_count":150,"eval_count":20}"#;
    let server = ReplayServer::start(one("POST", "/api/chat", 200, "application/json", plain))
        .await
        .unwrap();
    let Response::Chat(r) = ollama(&server.url())
        .call(&chat(), &RequestContext::new())
        .await
        .unwrap()
    else {
        panic!("not chat")
    };
    assert_eq!(r.tool_calls()[0].name, "get_weather");
    assert_eq!(
        r.tool_calls()[0].parsed_arguments().unwrap(),
        serde_json::json!({"city": "Paris"})
    );
    assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
    let streamed = format!(
        "{}\n",
        plain.replace("\"done_reason\":\"stop\",\"done\":true", "\"done\":false")
    ) + r#"{"model":"llama3.2","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"prompt_eval_count":150,"eval_count":20}"#
        + "\n";
    let server = ReplayServer::start(one(
        "POST",
        "/api/chat",
        200,
        "application/x-ndjson",
        &streamed,
    ))
    .await
    .unwrap();
    let s = ollama(&server.url())
        .stream(&chat(), &RequestContext::new())
        .await
        .unwrap();
    let r = StreamAccumulator::collect(s).await.unwrap();
    assert_eq!(r.tool_calls()[0].arguments, r#"{"city":"Paris"}"#);
    assert_eq!(r.usage.unwrap().output_tokens, 20);
}

#[tokio::test]
async fn pull_show_tags_and_embed() {
    let pull = "{\"status\":\"pulling manifest\"}\n{\"status\":\"pulling 6a0746a1ec1a\",\"digest\":\"sha256:6a07\",\"total\":2019393189,\"completed\":241970}\n{\"status\":\"verifying sha256 digest\"}\n{\"status\":\"success\"}\n";
    let server = ReplayServer::start(one("POST", "/api/pull", 200, "application/x-ndjson", pull))
        .await
        .unwrap();
    let p = ollama(&server.url());
    let items: Vec<_> = p
        .pull("llama3.2", &RequestContext::new())
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items.len(), 4);
    assert_eq!(items[1].as_ref().unwrap().total, Some(2019393189));
    assert!(items[3].as_ref().unwrap().is_success());

    let cut = "{\"status\":\"pulling manifest\"}\n";
    let server = ReplayServer::start(one("POST", "/api/pull", 200, "application/x-ndjson", cut))
        .await
        .unwrap();
    let items: Vec<_> = ollama(&server.url())
        .pull("x", &RequestContext::new())
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(
        items.last().unwrap().as_ref().unwrap_err().kind(),
        ErrorKind::Decode
    );

    let show = r#"{"modelfile":"FROM llama3.2","parameters":"stop \"<|eot_id|>\"","template":"{{ .Prompt }}","details":{"family":"llama","parameter_size":"3.2B","quantization_level":"Q4_K_M"},"model_info":{"general.architecture":"llama","llama.context_length":131072},"capabilities":["completion","tools"]}"#;
    let server = ReplayServer::start(one("POST", "/api/show", 200, "application/json", show))
        .await
        .unwrap();
    let d = ollama(&server.url())
        .show("llama3.2", &RequestContext::new())
        .await
        .unwrap();
    assert_eq!(d.capabilities, vec!["completion", "tools"]);
    assert_eq!(d.model_info.unwrap()["llama.context_length"], 131072);

    let tags = r#"{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest","modified_at":"2025-05-04T17:37:44.706015396-07:00","size":2019393189,"digest":"a80c4f17acd5","details":{"format":"gguf","family":"llama"}}]}"#;
    let server = ReplayServer::start(one("GET", "/api/tags", 200, "application/json", tags))
        .await
        .unwrap();
    let Response::Models(m) = ollama(&server.url())
        .call(&Request::Models, &RequestContext::new())
        .await
        .unwrap()
    else {
        panic!("not models")
    };
    assert_eq!(m.models[0].id, "llama3.2:latest");

    let embed = r#"{"model":"all-minilm","embeddings":[[0.1,0.2],[0.3,0.4]],"total_duration":14143917,"prompt_eval_count":8}"#;
    let server = ReplayServer::start(one("POST", "/api/embed", 200, "application/json", embed))
        .await
        .unwrap();
    let req = Request::Embeddings(EmbeddingRequest::new("all-minilm", ["a", "b"]));
    let Response::Embeddings(e) = ollama(&server.url())
        .call(&req, &RequestContext::new())
        .await
        .unwrap()
    else {
        panic!("not embeddings")
    };
    assert_eq!(e.embeddings, vec![vec![0.1, 0.2], vec![0.3, 0.4]]);
}

#[tokio::test]
async fn the_key_is_in_neither_debug_nor_errors() {
    let key = "ollama-secret-key-123456";
    let body = format!(r#"{{"error":"unauthorized: bad key {}"}}"#, "xxx");
    let server = ReplayServer::start(one("POST", "/api/chat", 401, "application/json", &body))
        .await
        .unwrap();
    let cfg = EndpointConfig::new("t", server.url())
        .unwrap()
        .with_api_key(ApiKey::new(key));
    let p = Ollama::new(cfg).unwrap();
    assert!(!format!("{p:?}").contains(key));
    let e = p.call(&chat(), &RequestContext::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(!format!("{e} {e:?}").contains(key));
}

#[test]
fn ollama_host_forms() {
    use infermux_ollama::normalize_host;
    assert_eq!(normalize_host(""), "http://127.0.0.1:11434");
    assert_eq!(normalize_host("127.0.0.1:11434"), "http://127.0.0.1:11434");
    assert_eq!(normalize_host("http://box:1/"), "http://box:1");
    assert_eq!(normalize_host("[::1]"), "http://[::1]:11434");
}

#[tokio::test]
async fn an_image_given_by_url_is_refused_before_anything_is_sent() {
    // nothing recorded: a request reaching the server would be unmatched
    let server = ReplayServer::start(Cassette::from_yaml("interactions: []\n").unwrap())
        .await
        .unwrap();
    let p = ollama(&server.url());
    let mut m = Message::user("What is this?");
    m.content.push(infermux_core::ContentPart::image_url(
        "https://example.com/cat.png?sig=secret",
    ));
    let req = Request::Chat(ChatRequest::new("llava", vec![m]));
    let ctx = RequestContext::new();
    let e = p.call(&req, &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
    assert!(!e.to_string().contains("sig=secret"), "{e}");
    let Err(e) = p.stream(&req, &ctx).await else {
        panic!("a stream opened")
    };
    assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
    server.verify().unwrap();
    // a data URL is base64 data, and goes
    let mut m = Message::user("What is this?");
    m.content.push(infermux_core::ContentPart::image_url(
        "data:image/png;base64,iVBORw0KGgo=",
    ));
    infermux_ollama::wire::check_images(&ChatRequest::new("llava", vec![m])).unwrap();
}
