//! A multi-input embedding request within `max_client_batch_size` goes out as ONE `/embed`
//! call (what client-side batching relies on): the one-shot capture server answers a single
//! request only.

use infermux_core::{EmbeddingRequest, Provider, Request, RequestContext, Response};

#[tokio::test]
async fn a_multi_input_embedding_request_is_one_wire_call() {
    let (url, seen) = infermux_testkit::capture("[[1.0],[2.0],[3.0]]").await;
    let req = Request::Embeddings(EmbeddingRequest::new("bge", ["a", "b", "c"]));
    let Response::Embeddings(r) = crate::tei(&url)
        .with_max_client_batch_size(8)
        .call(&req, &RequestContext::new())
        .await
        .unwrap()
    else {
        panic!("not embeddings")
    };
    assert_eq!(r.embeddings, [vec![1.0], vec![2.0], vec![3.0]]);
    let seen = seen.await.unwrap();
    assert_eq!(seen.target, "/embed");
    assert_eq!(
        seen.json().unwrap()["inputs"],
        serde_json::json!(["a", "b", "c"])
    );
}
