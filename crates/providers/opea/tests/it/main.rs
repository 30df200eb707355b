//! Integration tests of infermux-opea: replay of its own fixtures recorded from the real
//! llama.cpp server through this crate (re-record with `INFERMUX_RECORD=1`), reranking and
//! health on small cassettes shaped like the GenAIComps answers, and the testkit conformance
//! suite against the simulator and live against llama.cpp.

mod typed_wire;

use std::path::PathBuf;
use std::sync::Arc;

use infermux_core::{
    ChatRequest, EmbeddingRequest, EndpointConfig, ErrorKind, Message, Provider, Request,
    RequestContext, RerankRequest, Response, StreamAccumulator,
};
use infermux_opea::{Opea, rerank_body};
use infermux_testkit::{
    Cassette, FaultPlan, RecordingProxy, ReplayServer, Simulator, SuiteConfig, conformance,
    server_url,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn opea(base: &str) -> Opea {
    Opea::new(EndpointConfig::new("test", base).unwrap()).unwrap()
}

fn chat_request() -> ChatRequest {
    ChatRequest::new("smollm2", vec![Message::user("What is deep learning?")])
        .with_max_tokens(12)
        .with_temperature(0.0)
        .with_seed(5)
}

fn embedding_request() -> EmbeddingRequest {
    EmbeddingRequest::new("smollm2", ["Hello, world!", "How are you?"])
}

#[tokio::test]
async fn record_fixtures_from_the_real_server() {
    if !infermux_testkit::record_mode() {
        return;
    }
    let url = std::env::var("INFERMUX_LLAMA_URL").expect("INFERMUX_LLAMA_URL");
    let embed_url = std::env::var("INFERMUX_LLAMA_EMBED_URL").expect("INFERMUX_LLAMA_EMBED_URL");
    let ctx = RequestContext::new();
    let proxy = RecordingProxy::start(&url).await.unwrap();
    let p = opea(&format!("{}/v1", proxy.url()));
    p.call(&Request::Chat(chat_request()), &ctx).await.unwrap();
    let s = p
        .stream(&Request::Chat(chat_request()), &ctx)
        .await
        .unwrap();
    StreamAccumulator::collect(s).await.unwrap();
    proxy.save(fixture("llama_chat.yaml")).unwrap();
    let proxy = RecordingProxy::start(&embed_url).await.unwrap();
    opea(&format!("{}/v1", proxy.url()))
        .call(&Request::Embeddings(embedding_request()), &ctx)
        .await
        .unwrap();
    proxy.save(fixture("llama_embeddings.yaml")).unwrap();
}

#[tokio::test]
async fn replays_chat_stream_and_embeddings() {
    for chunk in [None, Some(1), Some(13)] {
        let opts = chunk.map_or_else(infermux_testkit::ReplayOptions::default, |n| {
            infermux_testkit::ReplayOptions::default().with_chunk_size(n)
        });
        let ctx = RequestContext::new();
        let server =
            ReplayServer::start_with(Cassette::load(fixture("llama_chat.yaml")).unwrap(), opts)
                .await
                .unwrap();
        let p = opea(&format!("{}/v1", server.url()));
        let Response::Chat(plain) = p.call(&Request::Chat(chat_request()), &ctx).await.unwrap()
        else {
            panic!("not a chat answer")
        };
        assert!(!plain.text().trim().is_empty());
        let s = p
            .stream(&Request::Chat(chat_request()), &ctx)
            .await
            .unwrap();
        assert!(
            !StreamAccumulator::collect(s)
                .await
                .unwrap()
                .text()
                .is_empty()
        );
        server.verify().unwrap();

        let server = ReplayServer::start_with(
            Cassette::load(fixture("llama_embeddings.yaml")).unwrap(),
            opts,
        )
        .await
        .unwrap();
        let p = opea(&format!("{}/v1", server.url()));
        let Response::Embeddings(e) = p
            .call(&Request::Embeddings(embedding_request()), &ctx)
            .await
            .unwrap()
        else {
            panic!("not embeddings")
        };
        assert_eq!(e.embeddings.len(), 2);
        assert!(e.dimension() > 0);
        server.verify().unwrap();
    }
}

fn cassette(method: &str, path: &str, status: u16, body: &str) -> Cassette {
    Cassette::from_yaml(&format!(
        "interactions:\n- request: {{method: {method}, uri: 'http://opea:8000/v1{path}', body: null, headers: {{}}}}\n  response:\n    status: {{code: {status}, message: X}}\n    headers: {{content-type: [application/json]}}\n    body: {{string: {}}}\n",
        serde_json::to_string(body).unwrap()
    ))
    .unwrap()
}

fn rerank_request() -> RerankRequest {
    RerankRequest::new(
        "bge-reranker-base",
        "What is Deep Learning?",
        vec![
            "Deep Learning is not...".into(),
            "Deep learning is...".into(),
            "Cooking pasta".into(),
        ],
    )
}

async fn rerank(status: u16, body: &str) -> infermux_core::Result<infermux_core::RerankResponse> {
    let server = ReplayServer::start(cassette("POST", "/reranking", status, body))
        .await
        .unwrap();
    let p = opea(&format!("{}/v1", server.url()));
    let r = p
        .call(&Request::Rerank(rerank_request()), &RequestContext::new())
        .await?;
    server.verify().unwrap();
    match r {
        Response::Rerank(r) => Ok(r),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn reranking_with_scores() {
    let r = rerank(
        200,
        r#"{"reranked_docs":[{"text":"Deep learning is...","score":0.98},{"text":"Deep Learning is not...","score":0.12}]}"#,
    )
    .await
    .unwrap();
    let got: Vec<(usize, f32)> = r.results.iter().map(|x| (x.index, x.score)).collect();
    assert_eq!(got, vec![(1, 0.98), (0, 0.12)]);
    assert_eq!(r.model, "bge-reranker-base");
}

#[tokio::test]
async fn reranking_legacy_documents_keep_the_order() {
    let r = rerank(
        200,
        r#"{"id":"7d1a","model":null,"query":"What is Deep Learning?","max_tokens":1024,"top_k":10,"top_p":0.95,"temperature":0.01,"streaming":true,"documents":["Deep learning is...","Deep Learning is not..."]}"#,
    )
    .await
    .unwrap();
    let idx: Vec<usize> = r.results.iter().map(|x| x.index).collect();
    assert_eq!(idx, vec![1, 0]);
    assert!(r.results[0].score > r.results[1].score);
}

#[tokio::test]
async fn reranking_errors() {
    let e = rerank(200, r#"{"documents":["never sent"]}"#)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert_eq!(e.provider(), Some("opea"));
    let e = rerank(200, r#"{"unexpected":true}"#).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    let e = rerank(
        422,
        r#"{"detail":[{"loc":["body","initial_query"],"msg":"field required"}]}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
}

#[test]
fn reranking_body_is_the_documented_one() {
    let mut req = rerank_request();
    req.top_n = Some(2);
    assert_eq!(
        rerank_body(&req),
        serde_json::json!({
            "initial_query": "What is Deep Learning?",
            "retrieved_docs": [{"text": "Deep Learning is not..."}, {"text": "Deep learning is..."}, {"text": "Cooking pasta"}],
            "top_n": 2
        })
    );
}

#[tokio::test]
async fn health_check() {
    let server = ReplayServer::start(cassette("GET", "/health_check", 200, r#"{"Service Title":"opea_service@reranking_tei","Service Description":"OPEA Microservice Infrastructure"}"#))
        .await
        .unwrap();
    opea(&format!("{}/v1", server.url()))
        .health(&RequestContext::new())
        .await
        .unwrap();
    server.verify().unwrap();
}

#[tokio::test]
async fn simulator_conformance() {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    // OPEA's gateway calls a tool only when the request names it
    let cfg = SuiteConfig::new(sim.model())
        .with_embed_model("sim-embed")
        .deterministic(true)
        .with_named_tool(true);
    let report = conformance::run(Arc::new(opea(&format!("{}/v1", sim.url()))), &cfg).await;
    report.assert_ok();
    assert!(report.passed.contains(&"tools"), "{report:?}");
}

#[tokio::test]
async fn tools_without_a_named_choice_are_refused_before_sending() {
    use infermux_core::{ChatRequest, Message, Tool, ToolChoice};
    // nothing recorded: a request reaching the server would be unmatched
    let server = ReplayServer::start(Cassette::from_yaml("interactions: []\n").unwrap())
        .await
        .unwrap();
    let p = opea(&format!("{}/v1", server.url()));
    let tool = Tool::new("f", "does f", serde_json::json!({"type": "object"}));
    for choice in [None, Some(ToolChoice::Auto), Some(ToolChoice::Required)] {
        let mut req =
            ChatRequest::new("m", vec![Message::user("hi")]).with_tools(vec![tool.clone()]);
        req.tool_choice = choice.clone();
        let e = p
            .call(&Request::Chat(req), &RequestContext::new())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{choice:?}: {e}");
    }
    server.verify().unwrap();
}

#[tokio::test]
async fn live_conformance() {
    let Some(url) = server_url("INFERMUX_LLAMA_URL") else {
        return;
    };
    let Some(embed_url) = server_url("INFERMUX_LLAMA_EMBED_URL") else {
        return;
    };
    // llama.cpp ignores the requested tool choice for this model's template
    let cfg = SuiteConfig::new("smollm2").with_tools(false);
    let report = conformance::run(Arc::new(opea(&format!("{url}/v1"))), &cfg).await;
    report.assert_ok();
    let cfg = SuiteConfig::new("smollm2")
        .with_embed_model("smollm2")
        .with_tools(false);
    let embedder: Arc<dyn Provider> = Arc::new(opea(&format!("{embed_url}/v1")));
    let report = conformance::run(embedder, &cfg).await;
    assert!(report.passed.contains(&"embeddings"), "{report:?}");
}
