//! Live tests against the real llama.cpp server (`INFERMUX_LLAMA_URL`), which serves Anthropic's
//! `/v1/messages`: chat, streamed chat and the conformance suite. Skipped without the server.

use std::sync::Arc;

use futures_util::StreamExt;
use infermux_core::{Provider, Request, RequestContext, Response, StreamAccumulator, StreamEvent};
use infermux_testkit::{conformance, server_url};

use crate::{chat_request, conformance_config, provider};

#[tokio::test]
async fn live_chat_and_stream() {
    let Some(url) = server_url("INFERMUX_LLAMA_URL") else {
        return;
    };
    let p = provider(&format!("{url}/v1"));
    let ctx = RequestContext::new();
    let Response::Chat(r) = p.call(&Request::Chat(chat_request()), &ctx).await.unwrap() else {
        panic!("not a chat answer")
    };
    assert!(!r.text().trim().is_empty());
    assert!(r.finish_reason.is_some());
    let u = r.usage.unwrap();
    assert!(u.input_tokens > 0 && u.output_tokens > 0);

    let mut s = p
        .stream(&Request::Chat(chat_request()), &ctx)
        .await
        .unwrap();
    let mut acc = StreamAccumulator::new();
    let mut events = Vec::new();
    while let Some(ev) = s.next().await {
        let ev = ev.unwrap();
        acc.push(&ev);
        events.push(ev);
    }
    assert!(matches!(events.first(), Some(StreamEvent::Start { .. })));
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })));
    let streamed = acc.finish();
    // not compared with the plain answer: the server is shared with other test binaries and
    // its prompt cache and slots make answers vary under concurrency
    assert!(!streamed.text().trim().is_empty());
    assert!(streamed.usage.unwrap().output_tokens > 0);
}

#[tokio::test]
async fn live_conformance() {
    let Some(url) = server_url("INFERMUX_LLAMA_URL") else {
        return;
    };
    let p: Arc<dyn Provider> = Arc::new(provider(&format!("{url}/v1")));
    let report = conformance::run(p, &conformance_config().deterministic(false)).await;
    eprintln!("{report:?}");
    report.assert_ok();
}
