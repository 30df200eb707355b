//! Replay of cassettes recorded from the real llama.cpp server, byte for byte, with bodies cut
//! into chunks of many sizes; every answer is checked against the testkit's OpenAI oracle
//! (`infermux_testkit::oracle::openai`), the reading of the recorded bodies the conformance
//! runner also uses, independent of the provider's parser.

use futures_util::StreamExt;
use infermux_core::{
    CompletionRequest, EmbeddingRequest, ErrorKind, Provider, Request, RequestContext, Response,
    StreamAccumulator, StreamEvent,
};
use infermux_openai_compat::wire;
use infermux_testkit::oracle::{self, Expected};
use infermux_testkit::{Cassette, ReplayOptions, ReplayServer};

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

/// The oracle's reading of interaction `i` of `c` with `read` (`oracle::openai::chat`, …).
fn expected(c: &Cassette, i: usize, read: fn(u16, &[u8]) -> Result<Expected, String>) -> Expected {
    let r = &c.interactions[i].response;
    read(r.status, &oracle::plain_body(r).unwrap()).unwrap()
}

/// Checks a decoded answer (or error) against the oracle's expectation, naming the difference.
#[track_caller]
fn check(want: &Expected, got: Result<&Response, &infermux_core::Error>) {
    let got = got.map(Expected::of_response);
    if let Err(why) = want.check_outcome(got.as_ref().map_err(|e| *e)) {
        panic!("{why}");
    }
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
    let plain = expected(&c, 0, oracle::openai::chat);
    let streamed = expected(&c, 1, oracle::openai::chat_stream);
    // the plain answer's usage says how many prompt tokens came from llama.cpp's cache
    assert!(plain.cached_input_tokens.is_some());
    for chunk in CHUNKINGS {
        let server = server("llama_chat.yaml", chunk).await;
        let p = provider(&format!("{}/v1", server.url()));
        let r = p
            .call(&Request::Chat(chat_request()), &RequestContext::new())
            .await;
        check(&plain, r.as_ref());
        let Ok(Response::Chat(r)) = r else {
            panic!("not a chat response")
        };
        assert_eq!(r.model, "smollm2");

        let (events, s) = collect(&p, &Request::Chat(chat_request())).await;
        assert!(matches!(events.first(), Some(StreamEvent::Start { .. })));
        assert!(matches!(events.last(), Some(StreamEvent::Done { .. })));
        if let Err(why) = streamed.check(&Expected::of_chat(&s)) {
            panic!("chunks of {chunk:?}: {why}");
        }
        server.verify().unwrap();
    }
}

#[tokio::test]
async fn tool_request_replay() {
    let c = Cassette::load(fixture("llama_tools.yaml")).unwrap();
    let plain = expected(&c, 0, oracle::openai::chat);
    let streamed = expected(&c, 1, oracle::openai::chat_stream);
    for chunk in CHUNKINGS {
        let server = server("llama_tools.yaml", chunk).await;
        let p = provider(&format!("{}/v1", server.url()));
        let r = p
            .call(&Request::Chat(tool_request()), &RequestContext::new())
            .await;
        check(&plain, r.as_ref());
        let (_, s) = collect(&p, &Request::Chat(tool_request())).await;
        if let Err(why) = streamed.check(&Expected::of_chat(&s)) {
            panic!("chunks of {chunk:?}: {why}");
        }
        server.verify().unwrap();
    }
}

#[tokio::test]
async fn models_completion_and_server_error_replay() {
    let c = Cassette::load(fixture("llama_misc.yaml")).unwrap();
    let models = expected(&c, 0, oracle::openai::models);
    assert_eq!(models.owners, Some(vec!["llamacpp".to_owned()]));
    let completion = expected(&c, 1, oracle::openai::completion);
    let error = expected(&c, 2, oracle::openai::chat);
    let recorded_error = &c.interactions[2].response;
    let server = server("llama_misc.yaml", Some(5)).await;
    let p = provider(&format!("{}/v1", server.url()));
    let ctx = RequestContext::new();
    check(&models, p.call(&Request::Models, &ctx).await.as_ref());
    let req = CompletionRequest::new("smollm2", "The capital of France is")
        .with_max_tokens(8)
        .with_temperature(0.0);
    check(
        &completion,
        p.call(&Request::Completion(req), &ctx).await.as_ref(),
    );
    let r = p.call(&Request::Chat(image_request()), &ctx).await;
    check(&error, r.as_ref());
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    assert_eq!(e.status(), Some(recorded_error.status));
    assert_eq!(
        Some(e.message()),
        oracle::openai::error_message(&oracle::plain_body(recorded_error).unwrap()).as_deref()
    );
    assert_eq!(e.request_id(), Some(ctx.request_id()));
    assert_eq!(e.provider(), Some("openai-compat"));
    assert_eq!(e.endpoint().map(|e| e.as_str()), Some("test"));
    server.verify().unwrap();
}

#[tokio::test]
async fn embeddings_replay() {
    let c = Cassette::load(fixture("llama_embeddings.yaml")).unwrap();
    let recorded = expected(&c, 0, oracle::openai::embeddings);
    let server = server("llama_embeddings.yaml", Some(1000)).await;
    let p = provider(&format!("{}/v1", server.url()));
    let req = EmbeddingRequest::new(
        "smollm2",
        ["The cat sat on the mat.", "Quantum chromodynamics"],
    );
    let r = p
        .call(&Request::Embeddings(req), &RequestContext::new())
        .await;
    // every component of both vectors, the count and the prompt tokens
    check(&recorded, r.as_ref());
    let Ok(Response::Embeddings(e)) = r else {
        panic!("not embeddings")
    };
    assert_eq!(e.dimension(), 576, "SmolLM2-135M's hidden size");
    server.verify().unwrap();
}
