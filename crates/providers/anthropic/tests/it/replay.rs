//! Replay of the cassettes recorded from the real llama.cpp server (`tests/fixtures`), byte for
//! byte, with bodies cut into chunks of many sizes; expectations are read from the recorded
//! bodies independently of the provider's parser. The conformance suite runs against the
//! recorded conformance run.

use std::sync::Arc;

use futures_util::StreamExt;
use infermux_anthropic::wire;
use infermux_core::{
    FinishReason, Provider, Request, RequestContext, Response, StreamAccumulator, StreamEvent,
};
use infermux_testkit::{Cassette, ReplayOptions, ReplayServer, conformance};
use serde_json::Value;

use crate::{chat_request, conformance_config, fixture, provider, response_bytes};

const CHUNKINGS: [Option<usize>; 4] = [None, Some(1), Some(7), Some(100)];

async fn server(name: &str, chunk: Option<usize>) -> ReplayServer {
    let cassette = Cassette::load(fixture(name)).unwrap();
    let opts = chunk.map_or_else(ReplayOptions::default, |n| {
        ReplayOptions::default().with_chunk_size(n)
    });
    ReplayServer::start_with(cassette, opts).await.unwrap()
}

#[tokio::test]
async fn requests_match_what_was_recorded() {
    let c = Cassette::load(fixture("llama_chat.yaml")).unwrap();
    assert_eq!(
        c.interactions[0].request.json().unwrap(),
        wire::chat_body(&chat_request(), false)
    );
    assert_eq!(
        c.interactions[1].request.json().unwrap(),
        wire::chat_body(&chat_request(), true)
    );
    let h = |name: &str| {
        c.interactions[0]
            .request
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(h("anthropic-version").as_deref(), Some("2023-06-01"));
}

#[tokio::test]
async fn chat_plain_streamed_and_models_replay() {
    let c = Cassette::load(fixture("llama_chat.yaml")).unwrap();
    let plain: Value =
        serde_json::from_slice(&response_bytes(&c.interactions[0].response)).unwrap();
    let stream_body = String::from_utf8(response_bytes(&c.interactions[1].response)).unwrap();
    let (mut want_text, mut want_out) = (String::new(), 0);
    for line in stream_body.lines() {
        if let Some(d) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(d).unwrap();
            if let Some(t) = v["delta"]["text"].as_str() {
                want_text.push_str(t);
            }
            if let Some(n) = v["usage"]["output_tokens"].as_u64() {
                want_out = n;
            }
        }
    }
    let models: Value =
        serde_json::from_slice(&response_bytes(&c.interactions[2].response)).unwrap();
    for chunk in CHUNKINGS {
        let server = server("llama_chat.yaml", chunk).await;
        let p = provider(&format!("{}/v1", server.url()));
        let ctx = RequestContext::new();
        let Response::Chat(r) = p.call(&Request::Chat(chat_request()), &ctx).await.unwrap() else {
            panic!("not a chat answer")
        };
        assert_eq!(r.text(), plain["content"][0]["text"].as_str().unwrap());
        assert_eq!(r.model, plain["model"].as_str().unwrap());
        let u = r.usage.unwrap();
        assert_eq!(
            u.output_tokens,
            plain["usage"]["output_tokens"].as_u64().unwrap()
        );
        assert_eq!(
            u.input_tokens,
            plain["usage"]["input_tokens"].as_u64().unwrap()
                + plain["usage"]["cache_read_input_tokens"]
                    .as_u64()
                    .unwrap_or(0)
        );
        assert_eq!(
            u.cached_input_tokens,
            plain["usage"]["cache_read_input_tokens"].as_u64()
        );
        assert!(matches!(
            r.finish_reason,
            Some(FinishReason::Stop | FinishReason::Length)
        ));

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
        assert_eq!(streamed.text(), want_text);
        assert_eq!(streamed.usage.unwrap().output_tokens, want_out);

        let Response::Models(m) = p.call(&Request::Models, &ctx).await.unwrap() else {
            panic!("not a model list")
        };
        assert_eq!(m.models[0].id, models["data"][0]["id"].as_str().unwrap());
        server.verify().unwrap();
    }
}

#[tokio::test]
async fn conformance_suite_on_the_recorded_run() {
    let server = server("llama_conformance.yaml", Some(16)).await;
    let p: Arc<dyn Provider> = Arc::new(provider(&format!("{}/v1", server.url())));
    let report = conformance::run(p, &conformance_config()).await;
    report.assert_ok();
    assert!(report.passed.contains(&"chat_stream"));
}
