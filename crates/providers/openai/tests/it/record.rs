//! Record mode: `INFERMUX_RECORD=1 INFERMUX_LLAMA_URL=... INFERMUX_LLAMA_EMBED_URL=...`
//! re-records the fixtures from the real llama.cpp server through this crate and the testkit's
//! recording proxy.

use futures_util::StreamExt;
use infermux_core::{Provider, Request, RequestContext};
use infermux_testkit::RecordingProxy;

use crate::{
    chat_request, completion_request, embedding_request, fixture, json_schema_request, openai,
    openai_base64, tool_request,
};

async fn drain(p: &dyn Provider, req: Request) {
    let ctx = RequestContext::new();
    let mut s = p.stream(&req, &ctx).await.unwrap();
    while let Some(ev) = s.next().await {
        ev.unwrap();
    }
}

#[tokio::test]
async fn record_fixtures_from_the_real_server() {
    if !infermux_testkit::record_mode() {
        return;
    }
    let chat_url = std::env::var("INFERMUX_LLAMA_URL").expect("INFERMUX_LLAMA_URL");
    let embed_url = std::env::var("INFERMUX_LLAMA_EMBED_URL").expect("INFERMUX_LLAMA_EMBED_URL");
    let ctx = RequestContext::new();

    let proxy = RecordingProxy::start(&chat_url).await.unwrap();
    let p = openai(&format!("{}/v1", proxy.url()));
    for req in [chat_request(), tool_request(), json_schema_request()] {
        p.call(&Request::Chat(req.clone()), &ctx).await.unwrap();
        drain(&p, Request::Chat(req)).await;
    }
    p.call(&Request::Completion(completion_request()), &ctx)
        .await
        .unwrap();
    p.call(&Request::Models, &ctx).await.unwrap();
    proxy.save(fixture("llama_chat.yaml")).unwrap();

    let proxy = RecordingProxy::start(&chat_url).await.unwrap();
    let p = openai(&format!("{}/v1", proxy.url()));
    drain(&p, Request::Completion(completion_request())).await;
    proxy.save(fixture("llama_completion_stream.yaml")).unwrap();

    let proxy = RecordingProxy::start(&embed_url).await.unwrap();
    let req = Request::Embeddings(embedding_request());
    openai(&format!("{}/v1", proxy.url()))
        .call(&req, &ctx)
        .await
        .unwrap();
    openai_base64(&format!("{}/v1", proxy.url()))
        .call(&req, &ctx)
        .await
        .unwrap();
    proxy.save(fixture("llama_embeddings.yaml")).unwrap();
}
