//! infermux-llvm against the testkit simulator's LLVM protocol routes (no public server of
//! the protocol exists, and no recording of one).

use std::sync::Arc;

use infermux_core::{
    ApiKey, ChatRequest, CompletionRequest, ContentPart, EmbeddingRequest, EndpointConfig,
    ErrorKind, Message, Provider, Request, RequestContext, Response,
};
use infermux_llvm::Llvm;
use infermux_testkit::{Fault, FaultPlan, Simulator, SuiteConfig, conformance};

const KEY: &str = "llvm-secret-key-77";

async fn setup() -> (Simulator, Llvm) {
    let sim = Simulator::start(FaultPlan::none()).await.unwrap();
    sim.require_api_key(KEY);
    let cfg = EndpointConfig::new("llvm", sim.url())
        .unwrap()
        .with_api_key(ApiKey::new(KEY));
    (sim, Llvm::new(cfg).unwrap())
}

#[tokio::test]
async fn status_models_statistics_and_batch() {
    let (_sim, llvm) = setup().await;
    let ctx = RequestContext::new();
    assert_eq!(llvm.status(&ctx).await.unwrap().status, "ok");
    let Response::Models(list) = llvm.call(&Request::Models, &ctx).await.unwrap() else {
        panic!()
    };
    let ids: Vec<_> = list.models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["llvm-gen-1", "llvm-embed-1"]);
    let m = llvm.model("llvm-embed-1", &ctx).await.unwrap();
    assert_eq!(m.dimensions, Some(8));
    let out = llvm
        .batch_infer("llvm-gen-1", &["a b".into(), "c".into()], &ctx)
        .await
        .unwrap();
    assert_eq!(
        out.outputs,
        [serde_json::json!("Echo: a b"), serde_json::json!("Echo: c")]
    );
    let stats = llvm.statistics("llvm-gen-1", &ctx).await.unwrap();
    assert_eq!(stats.requests, 2);
}

#[tokio::test]
async fn chat_completion_and_embeddings_map_to_infer_and_batch_infer() {
    let (_sim, llvm) = setup().await;
    let ctx = RequestContext::new();
    let chat = ChatRequest::new(
        "llvm-gen-1",
        vec![Message::system("Be brief."), Message::user("hi")],
    )
    .with_max_tokens(3);
    let Response::Chat(c) = llvm.call(&Request::Chat(chat), &ctx).await.unwrap() else {
        panic!()
    };
    // the simulator echoes the rendered prompt, cut at max_tokens words
    assert_eq!(c.text(), "Echo: system: Be");
    assert_eq!(c.usage.unwrap().output_tokens, 3);
    let Response::Completion(r) = llvm
        .call(
            &Request::Completion(CompletionRequest::new("llvm-gen-1", "one two")),
            &ctx,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(r.text, "Echo: one two");
    let Response::Embeddings(e) = llvm
        .call(
            &Request::Embeddings(EmbeddingRequest::new("llvm-embed-1", ["x", "y", "x"])),
            &ctx,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(e.embeddings.len(), 3);
    assert_eq!(e.dimension(), 8);
    assert_eq!(
        e.embeddings[0], e.embeddings[2],
        "same input, same vector, order kept"
    );
    assert_ne!(e.embeddings[0], e.embeddings[1]);
}

#[tokio::test]
async fn errors_are_typed_and_carry_the_request_id() {
    let (sim, llvm) = setup().await;
    let ctx = RequestContext::new();
    let e = llvm.model("no-such-model", &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.request_id(), Some(ctx.request_id()));
    assert_eq!(e.provider(), Some("llvm"));
    let e = llvm.model("../status", &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    let image = ChatRequest::new(
        "llvm-gen-1",
        vec![Message::user_parts(vec![ContentPart::image_url(
            "https://x/y.png",
        )])],
    );
    assert_eq!(
        llvm.call(&Request::Chat(image), &ctx)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Unsupported
    );
    let stream = llvm
        .stream(
            &Request::Chat(ChatRequest::new("llvm-gen-1", vec![Message::user("x")])),
            &ctx,
        )
        .await;
    assert_eq!(stream.err().unwrap().kind(), ErrorKind::Unsupported);
    sim.push_fault(Fault::Unavailable);
    assert_eq!(
        llvm.status(&ctx).await.unwrap_err().kind(),
        ErrorKind::Server
    );
    // the wrong key is refused, and no key is ever printed
    let wrong = Llvm::new(
        EndpointConfig::new("llvm", sim.url())
            .unwrap()
            .with_api_key(ApiKey::new("nope")),
    )
    .unwrap();
    let e = wrong.status(&ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    for text in [format!("{llvm:?}"), format!("{e:?}"), e.to_string()] {
        assert!(!text.contains(KEY) && !text.contains("nope"), "{text}");
    }
}

#[tokio::test]
async fn conformance_suite() {
    let (_sim, llvm) = setup().await;
    let cfg = SuiteConfig::new("llvm-gen-1").with_embed_model("llvm-embed-1");
    let report = conformance::run(Arc::new(llvm), &cfg).await;
    report.assert_ok();
    assert!(
        report.passed.contains(&"embeddings") && report.passed.contains(&"chat"),
        "{report:?}"
    );
}

/// A multi-input embedding request goes out as ONE `batch_infer` call (what client-side
/// batching relies on): the one-shot capture server answers a single request only.
#[tokio::test]
async fn a_multi_input_embedding_request_is_one_wire_call() {
    let (url, seen) =
        infermux_testkit::capture(r#"{"model":"e","outputs":[[1.0],[2.0],[3.0]]}"#).await;
    let llvm = Llvm::new(
        EndpointConfig::new("llvm", url)
            .unwrap()
            .with_api_key(ApiKey::new(KEY)),
    )
    .unwrap();
    let req = Request::Embeddings(EmbeddingRequest::new("e", ["a", "b", "c"]));
    let Response::Embeddings(r) = llvm.call(&req, &RequestContext::new()).await.unwrap() else {
        panic!("not embeddings")
    };
    assert_eq!(r.embeddings, [vec![1.0], vec![2.0], vec![3.0]]);
    let seen = seen.await.unwrap();
    assert_eq!(seen.target, "/models/e/batch_infer");
    assert_eq!(
        seen.json().unwrap()["inputs"],
        serde_json::json!(["a", "b", "c"])
    );
}

#[tokio::test]
async fn model_ids_the_url_parser_would_rewrite_are_refused() {
    let sim = infermux_testkit::Simulator::start(infermux_testkit::FaultPlan::none())
        .await
        .unwrap();
    let llvm =
        infermux_llvm::Llvm::new(infermux_core::EndpointConfig::new("llvm", sim.url()).unwrap())
            .unwrap();
    for bad in [".", "%2e%2e", "a\\b"] {
        let e = llvm
            .batch_infer(
                bad,
                &["x".to_owned()],
                &infermux_core::RequestContext::new(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), infermux_core::ErrorKind::InvalidRequest, "{bad}");
    }
}

/// What a prompt cannot carry is refused before anything is sent, not dropped: tools, a tool
/// call or result in the history (another provider's tool loop falling back here), a JSON
/// response format. A plain chat is answered.
#[tokio::test]
async fn tools_tool_turns_and_json_formats_are_refused_not_dropped() {
    let (sim, llvm) = setup().await;
    let ctx = RequestContext::new();
    let plain = ChatRequest::new("llvm-gen-1", vec![Message::user("hi")]);
    let with_tools = plain.clone().with_tools(vec![infermux_core::Tool::new(
        "f",
        "does f",
        serde_json::json!({"type": "object"}),
    )]);
    let with_result = ChatRequest::new(
        "llvm-gen-1",
        vec![
            Message::user("weather?"),
            Message::assistant_tool_calls(vec![infermux_core::ToolCall::new("c1", "w", "{}")]),
            Message::tool_result("c1", "sunny"),
        ],
    );
    let json = plain
        .clone()
        .with_response_format(infermux_core::ResponseFormat::JsonObject);
    for req in [with_tools, with_result, json] {
        let e = llvm.call(&Request::Chat(req), &ctx).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    }
    assert_eq!(sim.requests(), 0, "nothing was sent");
    llvm.call(&Request::Chat(plain), &ctx).await.unwrap();
}
