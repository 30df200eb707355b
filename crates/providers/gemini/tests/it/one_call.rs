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

/// More than 100 inputs (the most `batchEmbedContents` takes) go out as requests of at most
/// 100, their vectors joined in order: before, one request carried all 101 and Gemini refused
/// it. Each answer is read against its own part's count, so a part of another size fails.
#[tokio::test]
async fn more_than_a_hundred_inputs_go_in_parts_of_a_hundred() {
    use infermux_testkit::{
        Body, Cassette, Interaction, RecordedRequest, RecordedResponse, ReplayServer,
    };
    let uri = "https://generativelanguage.googleapis.com/v1beta/models/text-embedding-004:batchEmbedContents";
    let answer = |from: usize, n: usize| {
        let vectors: Vec<String> = (from..from + n)
            .map(|i| format!(r#"{{"values":[{i}.0]}}"#))
            .collect();
        Interaction {
            request: RecordedRequest {
                method: "POST".into(),
                uri: uri.into(),
                headers: Vec::new(),
                body: None,
            },
            response: RecordedResponse {
                status: 200,
                message: String::new(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: Body::Raw(
                    format!(r#"{{"embeddings":[{}]}}"#, vectors.join(",")).into_bytes(),
                ),
            },
        }
    };
    let server = ReplayServer::start(Cassette {
        interactions: vec![answer(0, 100), answer(100, 1)],
    })
    .await
    .unwrap();
    let inputs: Vec<String> = (0..101).map(|i| format!("text {i}")).collect();
    let req = Request::Embeddings(EmbeddingRequest::new("text-embedding-004", inputs));
    let Response::Embeddings(r) = crate::provider(&format!("{}/v1beta", server.url()))
        .call(&req, &RequestContext::new())
        .await
        .unwrap()
    else {
        panic!("not embeddings")
    };
    assert_eq!(r.embeddings.len(), 101);
    for (i, v) in r.embeddings.iter().enumerate() {
        assert_eq!(v, &[i as f32], "vector {i} in order");
    }
    server.verify().unwrap();
}
