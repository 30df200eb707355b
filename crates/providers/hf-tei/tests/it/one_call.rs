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

/// A server whose limit became smaller than the client knew (restarted with a smaller
/// `--max-client-batch-size`, or a replica behind the same address with another) refuses the
/// part with `batch size 8 > maximum allowed batch size 3`: the part is sent again in parts of
/// 3, and later calls use 3 at once. Before, every multi-input call failed until the process
/// restarted.
#[tokio::test]
async fn a_smaller_batch_limit_announced_by_a_refusal_is_learnt() {
    use infermux_testkit::{Reply, Scripted};
    let server = Scripted::start(|req| {
        let inputs = req.json().and_then(|b| b["inputs"].as_array().map(Vec::len)).unwrap_or(0);
        if inputs > 3 {
            return Reply::json(
                413,
                &serde_json::json!({"error": format!("batch size {inputs} > maximum allowed batch size 3"), "error_type": "Validation"}),
            );
        }
        Reply::json(200, &serde_json::json!(vec![[1.0]; inputs]))
    })
    .await
    .unwrap();
    let tei = crate::tei(&server.url()).with_max_client_batch_size(8);
    let texts: Vec<String> = (0..8).map(|i| format!("text {i}")).collect();
    for round in 0..2 {
        let req = Request::Embeddings(EmbeddingRequest::new("bge", texts.clone()));
        let Response::Embeddings(r) = tei.call(&req, &RequestContext::new()).await.unwrap() else {
            panic!("not embeddings")
        };
        assert_eq!(r.embeddings.len(), 8, "round {round}");
    }
    let sizes: Vec<usize> = server
        .requests()
        .iter()
        .map(|r| r.json().unwrap()["inputs"].as_array().unwrap().len())
        .collect();
    assert_eq!(
        sizes,
        [8, 3, 3, 2, 3, 3, 2],
        "refused once, then parts of 3"
    );
}

/// The same through TEI's OpenAI route (`/v1/embeddings`): a request within the limit the
/// client knows goes as it is, and one refused for a smaller limit is sent again in parts of
/// it.
#[tokio::test]
async fn the_openai_route_learns_a_smaller_batch_limit_too() {
    use infermux_testkit::{Reply, Scripted};
    let server = Scripted::start(|req| {
        let inputs = req.json().and_then(|b| b["input"].as_array().map(Vec::len)).unwrap_or(1);
        if inputs > 3 {
            return Reply::json(
                413,
                &serde_json::json!({"error": format!("batch size {inputs} > maximum allowed batch size 3"), "error_type": "Validation"}),
            );
        }
        let data: Vec<_> = (0..inputs)
            .map(|i| serde_json::json!({"index": i, "embedding": [1.0]}))
            .collect();
        Reply::json(200, &serde_json::json!({"model": "bge", "data": data}))
    })
    .await
    .unwrap();
    let tei = crate::tei(&server.url())
        .with_mode(infermux_hf_tei::Mode::OpenAi)
        .with_max_client_batch_size(8);
    let texts: Vec<String> = (0..8).map(|i| format!("text {i}")).collect();
    let req = Request::Embeddings(EmbeddingRequest::new("bge", texts));
    let Response::Embeddings(r) = tei.call(&req, &RequestContext::new()).await.unwrap() else {
        panic!("not embeddings")
    };
    assert_eq!(r.embeddings.len(), 8);
    let sizes: Vec<usize> = server
        .requests()
        .iter()
        .map(|r| r.json().unwrap()["input"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [8, 3, 3, 2]);
}
