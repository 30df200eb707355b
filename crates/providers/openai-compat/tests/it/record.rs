//! Record mode: `INFERMUX_RECORD=1 INFERMUX_LLAMA_URL=... INFERMUX_LLAMA_EMBED_URL=...` re-records
//! the fixtures from the real llama.cpp server through the testkit's recording proxy.

use futures_util::StreamExt;
use infermux_core::{CompletionRequest, EmbeddingRequest, Provider, Request, RequestContext};
use infermux_testkit::RecordingProxy;

use crate::{chat_request, fixture, provider, tool_request};

#[tokio::test]
async fn record_fixtures_from_the_real_server() {
    if !infermux_testkit::record_mode() {
        return;
    }
    let chat_url = std::env::var("INFERMUX_LLAMA_URL").expect("INFERMUX_LLAMA_URL");
    let embed_url = std::env::var("INFERMUX_LLAMA_EMBED_URL").expect("INFERMUX_LLAMA_EMBED_URL");
    let ctx = RequestContext::new();

    let proxy = RecordingProxy::start(&chat_url).await.unwrap();
    let p = provider(&format!("{}/v1", proxy.url()));
    p.call(&Request::Chat(chat_request()), &ctx).await.unwrap();
    let mut s = p
        .stream(&Request::Chat(chat_request()), &ctx)
        .await
        .unwrap();
    while let Some(ev) = s.next().await {
        ev.unwrap();
    }
    proxy.save(fixture("llama_chat.yaml")).unwrap();

    let proxy = RecordingProxy::start(&chat_url).await.unwrap();
    let p = provider(&format!("{}/v1", proxy.url()));
    p.call(&Request::Chat(tool_request()), &ctx).await.unwrap();
    let mut s = p
        .stream(&Request::Chat(tool_request()), &ctx)
        .await
        .unwrap();
    while let Some(ev) = s.next().await {
        ev.unwrap();
    }
    proxy.save(fixture("llama_tools.yaml")).unwrap();

    let proxy = RecordingProxy::start(&chat_url).await.unwrap();
    let p = provider(&format!("{}/v1", proxy.url()));
    p.call(&Request::Models, &ctx).await.unwrap();
    p.call(
        &Request::Completion(
            CompletionRequest::new("smollm2", "The capital of France is")
                .with_max_tokens(8)
                .with_temperature(0.0),
        ),
        &ctx,
    )
    .await
    .unwrap();
    // an image to a text-only model: the server's own error
    let _ = p
        .call(&Request::Chat(crate::image_request()), &ctx)
        .await
        .unwrap_err();
    proxy.save(fixture("llama_misc.yaml")).unwrap();

    let proxy = RecordingProxy::start(&embed_url).await.unwrap();
    let p = provider(&format!("{}/v1", proxy.url()));
    p.call(
        &Request::Embeddings(EmbeddingRequest::new(
            "smollm2",
            ["The cat sat on the mat.", "Quantum chromodynamics"],
        )),
        &ctx,
    )
    .await
    .unwrap();
    proxy.save(fixture("llama_embeddings.yaml")).unwrap();
}
