//! Replay of cassettes recorded from the real llama.cpp server, byte for byte, with bodies cut
//! into chunks of many sizes; expectations are read from the recorded bodies independently of
//! the provider's parser.

use futures_util::StreamExt;
use infermux_core::{
    CompletionRequest, EmbeddingRequest, ErrorKind, FinishReason, Provider, Request,
    RequestContext, Response, StreamAccumulator, StreamEvent,
};
use infermux_openai_compat::wire;
use infermux_testkit::{Cassette, ReplayOptions, ReplayServer};
use serde_json::Value;

use crate::{chat_request, fixture, image_request, provider, tool_request};

const CHUNKINGS: [Option<usize>; 4] = [None, Some(1), Some(7), Some(100)];

async fn server(name: &str, chunk: Option<usize>) -> ReplayServer {
    let cassette = Cassette::load(fixture(name)).unwrap();
    let opts = match chunk {
        Some(n) => ReplayOptions::default().with_chunk_size(n),
        None => ReplayOptions::default(),
    };
    ReplayServer::start_with(cassette, opts).await.unwrap()
}

fn body_json(c: &Cassette, i: usize) -> Value {
    serde_json::from_slice(&c.interactions[i].response.body.to_bytes()).unwrap()
}

/// The text, finish reason and usage of a recorded SSE body, read naively line by line.
fn sse_expectations(c: &Cassette, i: usize) -> (String, Option<String>, Option<Value>) {
    let body = String::from_utf8(c.interactions[i].response.body.to_bytes()).unwrap();
    let (mut text, mut finish, mut usage) = (String::new(), None, None);
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_owned());
        }
        if !v["usage"].is_null() {
            usage = Some(v["usage"].clone());
        }
    }
    (text, finish, usage)
}

async fn collect(
    p: &dyn Provider,
    req: &Request,
) -> (Vec<StreamEvent>, infermux_core::ChatResponse) {
    let mut s = p.stream(req, &RequestContext::new()).await.unwrap();
    let mut events = Vec::new();
    let mut acc = StreamAccumulator::new();
    while let Some(ev) = s.next().await {
        let ev = ev.unwrap();
        acc.push(&ev);
        events.push(ev);
    }
    assert!(acc.is_done());
    (events, acc.finish())
}

#[tokio::test]
async fn requests_match_what_was_recorded() {
    // the bodies infermux builds are the bodies the real server accepted
    let c = Cassette::load(fixture("llama_chat.yaml")).unwrap();
    assert_eq!(
        c.interactions[0].request.json().unwrap(),
        wire::chat_body(&chat_request(), false)
    );
    assert_eq!(
        c.interactions[1].request.json().unwrap(),
        wire::chat_body(&chat_request(), true)
    );
    let t = Cassette::load(fixture("llama_tools.yaml")).unwrap();
    assert_eq!(
        t.interactions[0].request.json().unwrap(),
        wire::chat_body(&tool_request(), false)
    );
    let m = Cassette::load(fixture("llama_misc.yaml")).unwrap();
    let img = m.interactions[2].request.json().unwrap();
    assert_eq!(img, wire::chat_body(&image_request(), false));
    assert_eq!(
        img["messages"][0]["content"][1]["image_url"]["url"],
        "data:image/png;base64,iVBORw0KGgo="
    );
}

#[tokio::test]
async fn chat_plain_and_streamed_replay() {
    let c = Cassette::load(fixture("llama_chat.yaml")).unwrap();
    let plain = body_json(&c, 0);
    let (stream_text, stream_finish, stream_usage) = sse_expectations(&c, 1);
    for chunk in CHUNKINGS {
        let server = server("llama_chat.yaml", chunk).await;
        let p = provider(&format!("{}/v1", server.url()));
        let Response::Chat(r) = p
            .call(&Request::Chat(chat_request()), &RequestContext::new())
            .await
            .unwrap()
        else {
            panic!("not a chat response")
        };
        assert_eq!(
            r.text(),
            plain["choices"][0]["message"]["content"].as_str().unwrap()
        );
        assert_eq!(
            r.finish_reason.as_ref().map(FinishReason::as_str),
            plain["choices"][0]["finish_reason"].as_str()
        );
        let u = r.usage.unwrap();
        assert_eq!(
            u.input_tokens,
            plain["usage"]["prompt_tokens"].as_u64().unwrap()
        );
        assert_eq!(
            u.output_tokens,
            plain["usage"]["completion_tokens"].as_u64().unwrap()
        );
        assert_eq!(
            u.cached_input_tokens,
            plain["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64()
        );
        assert_eq!(r.model, "smollm2");

        let (events, s) = collect(&p, &Request::Chat(chat_request())).await;
        assert!(matches!(events.first(), Some(StreamEvent::Start { .. })));
        assert!(matches!(events.last(), Some(StreamEvent::Done { .. })));
        assert_eq!(s.text(), stream_text);
        assert_eq!(
            s.finish_reason.as_ref().map(FinishReason::as_str),
            stream_finish.as_deref()
        );
        let su = s.usage.unwrap();
        let stream_usage = stream_usage.clone().unwrap();
        assert_eq!(
            su.output_tokens,
            stream_usage["completion_tokens"].as_u64().unwrap()
        );
        server.verify().unwrap();
    }
}

#[tokio::test]
async fn tool_request_replay() {
    let c = Cassette::load(fixture("llama_tools.yaml")).unwrap();
    let plain = body_json(&c, 0);
    let (stream_text, _, _) = sse_expectations(&c, 1);
    for chunk in CHUNKINGS {
        let server = server("llama_tools.yaml", chunk).await;
        let p = provider(&format!("{}/v1", server.url()));
        let Response::Chat(r) = p
            .call(&Request::Chat(tool_request()), &RequestContext::new())
            .await
            .unwrap()
        else {
            panic!("not a chat response")
        };
        let recorded_calls = plain["choices"][0]["message"]["tool_calls"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(r.tool_calls().len(), recorded_calls);
        assert_eq!(
            r.text(),
            plain["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or("")
        );
        let (_, s) = collect(&p, &Request::Chat(tool_request())).await;
        assert_eq!(s.text(), stream_text);
        server.verify().unwrap();
    }
}

#[tokio::test]
async fn models_completion_and_server_error_replay() {
    let c = Cassette::load(fixture("llama_misc.yaml")).unwrap();
    let models = body_json(&c, 0);
    let completion = body_json(&c, 1);
    let error = body_json(&c, 2);
    let server = server("llama_misc.yaml", Some(5)).await;
    let p = provider(&format!("{}/v1", server.url()));
    let ctx = RequestContext::new();
    let Response::Models(m) = p.call(&Request::Models, &ctx).await.unwrap() else {
        panic!()
    };
    assert_eq!(m.models[0].id, models["data"][0]["id"].as_str().unwrap());
    assert_eq!(
        m.models[0].owned_by.as_deref(),
        models["data"][0]["owned_by"].as_str()
    );
    let req = CompletionRequest::new("smollm2", "The capital of France is")
        .with_max_tokens(8)
        .with_temperature(0.0);
    let Response::Completion(r) = p.call(&Request::Completion(req), &ctx).await.unwrap() else {
        panic!()
    };
    assert_eq!(r.text, completion["choices"][0]["text"].as_str().unwrap());
    let e = p
        .call(&Request::Chat(image_request()), &ctx)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(500));
    assert_eq!(e.kind(), ErrorKind::Server);
    assert_eq!(e.message(), error["error"]["message"].as_str().unwrap());
    assert_eq!(e.request_id(), Some(ctx.request_id()));
    assert_eq!(e.provider(), Some("openai-compat"));
    assert_eq!(e.endpoint().map(|e| e.as_str()), Some("test"));
    server.verify().unwrap();
}

#[tokio::test]
async fn embeddings_replay() {
    let c = Cassette::load(fixture("llama_embeddings.yaml")).unwrap();
    let recorded = body_json(&c, 0);
    let server = server("llama_embeddings.yaml", Some(1000)).await;
    let p = provider(&format!("{}/v1", server.url()));
    let req = EmbeddingRequest::new(
        "smollm2",
        vec![
            "The cat sat on the mat.".into(),
            "Quantum chromodynamics".into(),
        ],
    );
    let Response::Embeddings(e) = p
        .call(&Request::Embeddings(req), &RequestContext::new())
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(e.embeddings.len(), 2);
    let first: Vec<f32> = recorded["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(e.embeddings[0], first);
    assert_eq!(e.dimension(), 576, "SmolLM2-135M's hidden size");
    assert_eq!(
        e.usage.unwrap().input_tokens,
        recorded["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    server.verify().unwrap();
}
