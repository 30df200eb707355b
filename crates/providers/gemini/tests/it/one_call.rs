//! A multi-input embedding request goes out as ONE `batchEmbedContents` call (what
//! client-side batching relies on): the one-shot capture server answers a single request only.

use infermux_core::{EmbeddingRequest, Provider, Request, RequestContext, Response};

#[tokio::test]
async fn a_multi_input_embedding_request_is_one_wire_call() {
    let (url, seen) = infermux_testkit::capture(
        r#"{"embeddings":[{"values":[1.0]},{"values":[2.0]},{"values":[3.0]}]}"#,
    )
    .await;
    let req = Request::Embeddings(EmbeddingRequest::new("text-embedding-004", ["a", "b", "c"]));
    let Response::Embeddings(r) = crate::provider(&format!("{url}/v1beta"))
        .call(&req, &RequestContext::new())
        .await
        .unwrap()
    else {
        panic!("not embeddings")
    };
    assert_eq!(r.embeddings, [vec![1.0], vec![2.0], vec![3.0]]);
    let seen = seen.await.unwrap();
    assert_eq!(
        seen.target,
        "/v1beta/models/text-embedding-004:batchEmbedContents"
    );
    assert_eq!(
        seen.json().unwrap()["requests"].as_array().unwrap().len(),
        3
    );
}
