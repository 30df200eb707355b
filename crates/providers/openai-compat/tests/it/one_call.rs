//! A multi-input embedding request goes out as ONE `/embeddings` call (what client-side
//! batching relies on): the one-shot capture server answers a single request only.

use infermux_core::{EmbeddingRequest, Provider, Request, RequestContext, Response};

#[tokio::test]
async fn a_multi_input_embedding_request_is_one_wire_call() {
    let (url, seen) = infermux_testkit::capture(
        r#"{"object":"list","model":"m","data":[{"object":"embedding","index":0,"embedding":[1.0]},{"object":"embedding","index":1,"embedding":[2.0]},{"object":"embedding","index":2,"embedding":[3.0]}],"usage":{"prompt_tokens":3,"total_tokens":3}}"#,
    )
    .await;
    let req = Request::Embeddings(EmbeddingRequest::new("m", ["a", "b", "c"]));
    let Response::Embeddings(r) = crate::provider(&format!("{url}/v1"))
        .call(&req, &RequestContext::new())
        .await
        .unwrap()
    else {
        panic!("not embeddings")
    };
    assert_eq!(r.embeddings, [vec![1.0], vec![2.0], vec![3.0]]);
    let seen = seen.await.unwrap();
    assert_eq!(seen.target, "/v1/embeddings");
    assert_eq!(
        seen.json().unwrap()["input"],
        serde_json::json!(["a", "b", "c"])
    );
}
