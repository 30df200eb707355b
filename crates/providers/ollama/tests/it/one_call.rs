//! A multi-input embedding request goes out as ONE `/api/embed` call (what client-side
//! batching relies on): the one-shot capture server answers a single request only.

use infermux_core::{EmbeddingRequest, Provider, Request, RequestContext, Response};

#[tokio::test]
async fn a_multi_input_embedding_request_is_one_wire_call() {
    let (url, seen) =
        infermux_testkit::capture(r#"{"model":"m","embeddings":[[1.0],[2.0],[3.0]]}"#).await;
    let req = Request::Embeddings(EmbeddingRequest::new("m", ["a", "b", "c"]));
    let Response::Embeddings(r) = crate::ollama(&url)
        .call(&req, &RequestContext::new())
        .await
        .unwrap()
    else {
        panic!("not embeddings")
    };
    assert_eq!(r.embeddings, [vec![1.0], vec![2.0], vec![3.0]]);
    let seen = seen.await.unwrap();
    assert_eq!(seen.target, "/api/embed");
    assert_eq!(
        seen.json().unwrap()["input"],
        serde_json::json!(["a", "b", "c"])
    );
}
