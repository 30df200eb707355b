//! Against the real llama.cpp embedding server (`INFERMUX_LLAMA_EMBED_URL`) through the
//! openai-compat provider: batched vectors equal unbatched ones.

use std::sync::Arc;
use std::time::Duration;

use infermux_batching::{BatchConfig, EmbeddingBatcher};
use infermux_core::{
    EmbeddingRequest, EndpointConfig, Provider, Request, RequestContext, Response,
};
use infermux_openai_compat::OpenAiCompat;
use infermux_testkit::server_url;

#[tokio::test]
async fn live_llama_batched_vectors_equal_unbatched_ones() {
    let Some(url) = server_url("INFERMUX_LLAMA_EMBED_URL") else {
        return;
    };
    let provider = Arc::new(
        OpenAiCompat::new(EndpointConfig::new("llama-embed", format!("{url}/v1")).unwrap())
            .unwrap(),
    );
    let texts: Vec<String> = (0..12)
        .map(|i| {
            format!(
                "sentence number {i} about {}",
                ["cats", "rust", "rain"][i % 3]
            )
        })
        .collect();
    let ctx = RequestContext::new();
    let mut alone = Vec::new();
    for t in &texts {
        let req = Request::Embeddings(EmbeddingRequest::new("smollm2", [t.as_str()]));
        let Response::Embeddings(r) = provider.call(&req, &ctx).await.unwrap() else {
            panic!("not embeddings")
        };
        alone.push(r.embeddings.into_iter().next().unwrap());
    }
    let p = provider.clone();
    let cfg = BatchConfig::llama_cpp_embeddings()
        .with_max_wait(Duration::from_millis(20))
        .unwrap();
    let batcher = EmbeddingBatcher::new(cfg, move |req: EmbeddingRequest, ctx: RequestContext| {
        let p = p.clone();
        async move {
            match p.call(&Request::Embeddings(req), &ctx).await? {
                Response::Embeddings(r) => Ok(r),
                _ => Err(infermux_core::Error::new(
                    infermux_core::ErrorKind::Decode,
                    "not embeddings",
                )),
            }
        }
    })
    .unwrap();
    let calls = texts.iter().map(|t| {
        let b = batcher.clone();
        let t = t.clone();
        tokio::spawn(async move {
            b.embed(
                EmbeddingRequest::new("smollm2", [t]),
                &RequestContext::new(),
            )
            .await
        })
    });
    let mut batched = Vec::new();
    for c in calls.collect::<Vec<_>>() {
        batched.push(
            c.await
                .unwrap()
                .unwrap()
                .embeddings
                .into_iter()
                .next()
                .unwrap(),
        );
    }
    let stats = batcher.stats();
    assert!(
        stats.batches < texts.len() as u64,
        "nothing was batched: {stats:?}"
    );
    for (i, (a, b)) in alone.iter().zip(&batched).enumerate() {
        assert_eq!(a.len(), b.len());
        let cos = infermux_core::cosine_similarity(a, b).unwrap();
        assert!(cos > 0.9999, "input {i}: cosine {cos}");
        let max_diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(max_diff < 1e-3, "input {i}: max diff {max_diff}");
    }
}
