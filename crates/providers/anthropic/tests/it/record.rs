//! Record mode: `INFERMUX_RECORD=1 INFERMUX_LLAMA_URL=...` re-records `tests/fixtures` from the
//! real llama.cpp server (its Anthropic-compatible `/v1/messages`) through the testkit's
//! recording proxy.
//!
//! Every call goes through a fresh client: a pooled connection the proxy has closed after a
//! streamed answer would otherwise fail the next call now and then.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use infermux_core::{
    Capabilities, EndpointId, EventStream, Provider, Request, RequestContext, Response, Result,
};
use infermux_testkit::{RecordingProxy, conformance};

use crate::{chat_request, conformance_config, fixture, provider};

/// A provider that builds a new client (and so a new connection pool) for every call.
#[derive(Debug)]
struct Fresh {
    base: String,
    id: EndpointId,
}

#[async_trait]
impl Provider for Fresh {
    fn name(&self) -> &'static str {
        infermux_anthropic::NAME
    }
    fn endpoint(&self) -> &EndpointId {
        &self.id
    }
    fn capabilities(&self) -> Capabilities {
        provider(&self.base).capabilities()
    }
    async fn call(&self, request: &Request, ctx: &RequestContext) -> Result<Response> {
        provider(&self.base).call(request, ctx).await
    }
    async fn stream(&self, request: &Request, ctx: &RequestContext) -> Result<EventStream> {
        provider(&self.base).stream(request, ctx).await
    }
}

#[tokio::test]
async fn record_fixtures_from_the_real_server() {
    if !infermux_testkit::record_mode() {
        return;
    }
    let url = std::env::var("INFERMUX_LLAMA_URL").expect("INFERMUX_LLAMA_URL");
    let ctx = RequestContext::new();

    let proxy = RecordingProxy::start(&url).await.unwrap();
    let base = format!("{}/v1", proxy.url());
    provider(&base)
        .call(&Request::Chat(chat_request()), &ctx)
        .await
        .unwrap();
    let mut s = provider(&base)
        .stream(&Request::Chat(chat_request()), &ctx)
        .await
        .unwrap();
    while let Some(ev) = s.next().await {
        ev.unwrap();
    }
    provider(&base).call(&Request::Models, &ctx).await.unwrap();
    proxy.save(fixture("llama_chat.yaml")).unwrap();

    let proxy = RecordingProxy::start(&url).await.unwrap();
    let p: Arc<dyn Provider> = Arc::new(Fresh {
        base: format!("{}/v1", proxy.url()),
        id: EndpointId::new("test"),
    });
    conformance::run(p, &conformance_config()).await.assert_ok();
    proxy.save(fixture("llama_conformance.yaml")).unwrap();
}
