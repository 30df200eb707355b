//! TEI's own routes on small cassettes shaped like its answers: `/embed` split by
//! `max_client_batch_size` and reassembled in order, `/rerank`, `/embed_sparse`, `/info`,
//! `/health`, models, and the `/v1/embeddings` mode.

use infermux_core::{EmbeddingRequest, Provider, Request, RequestContext, RerankRequest, Response};
use infermux_hf_tei::{Mode, cosine_similarities, cosine_similarity, to_matrix};
use infermux_testkit::ReplayServer;
use ndarray::ArrayView1;

use crate::{cassette, tei};

const INFO: &str = r#"{"model_id":"BAAI/bge-small-en-v1.5","model_sha":null,"model_dtype":"float32","model_type":{"embedding":{"pooling":"cls"}},"max_concurrent_requests":512,"max_input_length":512,"max_batch_tokens":16384,"max_batch_requests":null,"max_client_batch_size":2,"auto_truncate":false,"tokenization_workers":2,"version":"1.5.0","sha":null,"docker_label":null}"#;

#[tokio::test]
async fn large_inputs_are_split_by_max_client_batch_size_and_reassembled_in_order() {
    let server = ReplayServer::start(cassette(&[
        ("GET", "/info", 200, "application/json", INFO),
        (
            "POST",
            "/embed",
            200,
            "application/json",
            "[[1.0,0.0],[2.0,0.0]]",
        ),
        (
            "POST",
            "/embed",
            200,
            "application/json",
            "[[3.0,0.0],[4.0,0.0]]",
        ),
        ("POST", "/embed", 200, "application/json", "[[5.0,0.0]]"),
    ]))
    .await
    .unwrap();
    let inputs: Vec<String> = (1..=5).map(|i| format!("text {i}")).collect();
    let req = Request::Embeddings(EmbeddingRequest::new("bge", inputs));
    let Response::Embeddings(e) = tei(&server.url())
        .call(&req, &RequestContext::new())
        .await
        .unwrap()
    else {
        panic!("not embeddings")
    };
    let firsts: Vec<f32> = e.embeddings.iter().map(|v| v[0]).collect();
    assert_eq!(firsts, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    server.verify().unwrap();
}

#[tokio::test]
async fn rerank_sparse_info_health_and_models() {
    let server = ReplayServer::start(cassette(&[
        ("GET", "/health", 200, "text/plain", ""),
        (
            "POST",
            "/rerank",
            200,
            "application/json",
            r#"[{"index":1,"score":0.9988},{"index":0,"score":0.0218},{"index":2,"score":0.5}]"#,
        ),
        (
            "POST",
            "/embed_sparse",
            200,
            "application/json",
            r#"[[{"index":2054,"value":1.25},{"index":4083,"value":0.5}]]"#,
        ),
        ("GET", "/info", 200, "application/json", INFO),
    ]))
    .await
    .unwrap();
    let p = tei(&server.url()).with_max_client_batch_size(8);
    let ctx = RequestContext::new();
    p.health(&ctx).await.unwrap();
    let mut rr = RerankRequest::new(
        "bge-reranker",
        "What is Deep Learning?",
        vec!["a".into(), "Deep Learning is ...".into(), "b".into()],
    );
    rr.top_n = Some(2);
    let Response::Rerank(r) = p.call(&Request::Rerank(rr), &ctx).await.unwrap() else {
        panic!("not rerank")
    };
    assert_eq!(
        r.results.iter().map(|x| x.index).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let sparse = p.embed_sparse(&["x".into()], &ctx).await.unwrap();
    assert_eq!(sparse[0][0].index, 2054);
    let Response::Models(m) = p.call(&Request::Models, &ctx).await.unwrap() else {
        panic!("not models")
    };
    assert_eq!(m.models[0].id, "BAAI/bge-small-en-v1.5");
    server.verify().unwrap();
}

#[tokio::test]
async fn openai_mode_uses_v1_embeddings() {
    let body = r#"{"object":"list","data":[{"object":"embedding","embedding":[0.1,0.2],"index":0},{"object":"embedding","embedding":[0.3,0.4],"index":1}],"model":"BAAI/bge-small-en-v1.5","usage":{"prompt_tokens":4,"total_tokens":4}}"#;
    let server = ReplayServer::start(cassette(&[(
        "POST",
        "/v1/embeddings",
        200,
        "application/json",
        body,
    )]))
    .await
    .unwrap();
    let p = tei(&format!("{}/v1", server.url()))
        .with_mode(Mode::OpenAi)
        .with_max_client_batch_size(8);
    let req = Request::Embeddings(EmbeddingRequest::new("bge", ["a", "b"]));
    let Response::Embeddings(e) = p.call(&req, &RequestContext::new()).await.unwrap() else {
        panic!("not embeddings")
    };
    assert_eq!(e.embeddings[1], vec![0.3, 0.4]);
    server.verify().unwrap();
}

#[test]
fn cosine_helpers() {
    let m = to_matrix(&[vec![1.0, 0.0], vec![1.0, 1.0], vec![0.0, 0.0]]).unwrap();
    let q = [1.0f32, 0.0];
    let s = cosine_similarities(m.view(), ArrayView1::from(&q));
    assert!((s[0] - 1.0).abs() < 1e-6);
    assert!((s[1] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    assert_eq!(s[2], 0.0);
    assert_eq!(
        cosine_similarity(ArrayView1::from(&q), ArrayView1::from(&[1.0f32])),
        0.0
    );
    assert!(to_matrix(&[vec![1.0], vec![1.0, 2.0]]).is_none());
}

#[tokio::test]
async fn rerank_and_v1_embeddings_are_split_by_max_client_batch_size_too() {
    // TEI answers 413 past `max_client_batch_size` (2 here) on `/rerank` and `/v1/embeddings`
    let part = |i: usize| {
        format!(
            r#"{{"object":"list","data":[{{"object":"embedding","embedding":[{i}.0],"index":0}},{{"object":"embedding","embedding":[{}.0],"index":1}}],"model":"bge","usage":{{"prompt_tokens":2,"total_tokens":2}}}}"#,
            i + 1
        )
    };
    let (first, second) = (part(1), part(3));
    let last = r#"{"object":"list","data":[{"object":"embedding","embedding":[5.0],"index":0}],"model":"bge","usage":{"prompt_tokens":1,"total_tokens":1}}"#;
    let server = ReplayServer::start(cassette(&[
        ("GET", "/info", 200, "application/json", INFO),
        (
            "POST",
            "/rerank",
            200,
            "application/json",
            r#"[{"index":1,"score":0.2},{"index":0,"score":0.1}]"#,
        ),
        (
            "POST",
            "/rerank",
            200,
            "application/json",
            r#"[{"index":0,"score":0.9}]"#,
        ),
        ("POST", "/v1/embeddings", 200, "application/json", &first),
        ("POST", "/v1/embeddings", 200, "application/json", &second),
        ("POST", "/v1/embeddings", 200, "application/json", last),
    ]))
    .await
    .unwrap();
    let p = tei(&server.url()).with_mode(Mode::OpenAi);
    let ctx = RequestContext::new();
    let mut rr = RerankRequest::new(
        "bge-reranker",
        "q",
        vec!["a".into(), "b".into(), "c".into()],
    );
    rr.top_n = Some(2);
    let Response::Rerank(r) = p.call(&Request::Rerank(rr), &ctx).await.unwrap() else {
        panic!("not rerank")
    };
    // the second part's document 0 is the request's document 2
    assert_eq!(
        r.results
            .iter()
            .map(|x| (x.index, x.score))
            .collect::<Vec<_>>(),
        vec![(2, 0.9), (1, 0.2)]
    );
    let inputs: Vec<String> = (1..=5).map(|i| format!("text {i}")).collect();
    let req = Request::Embeddings(EmbeddingRequest::new("bge", inputs));
    let Response::Embeddings(e) = p.call(&req, &ctx).await.unwrap() else {
        panic!("not embeddings")
    };
    let firsts: Vec<f32> = e.embeddings.iter().map(|v| v[0]).collect();
    assert_eq!(firsts, [1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(e.usage.unwrap().input_tokens, 5);
    server.verify().unwrap();
}

#[tokio::test]
async fn a_rerank_of_no_documents_is_refused_before_sending() {
    let server =
        ReplayServer::start(infermux_testkit::Cassette::from_yaml("interactions: []\n").unwrap())
            .await
            .unwrap();
    let req = Request::Rerank(RerankRequest::new("bge-reranker", "q", Vec::new()));
    let e = tei(&server.url())
        .call(&req, &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), infermux_core::ErrorKind::InvalidRequest, "{e}");
    server.verify().unwrap();
}
