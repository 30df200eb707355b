//! Replay of the fixtures recorded from the real llama.cpp server through this crate, whole and
//! cut into chunks of several sizes. Every answer is checked against the testkit's OpenAI
//! oracle (`infermux_testkit::oracle::openai`), the reading of the recorded bodies the
//! conformance runner also uses, independent of the provider's parser.

use infermux_core::{
    ChatResponse, ContentPart, Provider, Request, RequestContext, Response, StreamAccumulator,
};
use infermux_testkit::oracle::{self, Expected};
use infermux_testkit::{Cassette, ReplayOptions, ReplayServer};

use crate::{
    chat_request, completion_request, embedding_request, fixture, json_schema_request, openai,
    openai_base64, tool_request,
};

const CHUNKS: [Option<usize>; 4] = [None, Some(1), Some(5), Some(97)];

async fn server(name: &str, chunk: Option<usize>) -> ReplayServer {
    let cassette = Cassette::load(fixture(name)).unwrap();
    let opts = chunk.map_or_else(ReplayOptions::default, |n| {
        ReplayOptions::default().with_chunk_size(n)
    });
    ReplayServer::start_with(cassette, opts).await.unwrap()
}

/// One of the oracle's readings (`oracle::openai::chat`, …).
type Reading = fn(u16, &[u8]) -> Result<Expected, String>;

/// The oracle's readings of the fixture's interactions, in order, with `read` for each.
fn recorded(name: &str, read: &[Reading]) -> Vec<Expected> {
    let c = Cassette::load(fixture(name)).unwrap();
    assert_eq!(c.interactions.len(), read.len(), "{name}");
    c.interactions
        .iter()
        .zip(read)
        .map(|(it, read)| {
            let r = &it.response;
            read(r.status, &oracle::plain_body(r).unwrap()).unwrap()
        })
        .collect()
}

/// Checks an observation against the oracle's expectation, naming the difference.
#[track_caller]
fn check(want: &Expected, got: &Expected) {
    if let Err(why) = want.check(got) {
        panic!("{why}");
    }
}

/// A chat request answered plain, then streamed; each checked against its recording.
async fn both(p: &dyn Provider, req: Request, want: &[Expected]) -> (ChatResponse, ChatResponse) {
    let ctx = RequestContext::new();
    let Response::Chat(plain) = p.call(&req, &ctx).await.unwrap() else {
        panic!("not a chat answer")
    };
    check(&want[0], &Expected::of_chat(&plain));
    let s = p.stream(&req, &ctx).await.unwrap();
    let streamed = StreamAccumulator::collect(s).await.unwrap();
    check(&want[1], &Expected::of_chat(&streamed));
    (plain, streamed)
}

#[tokio::test]
async fn replays_chat_tools_json_schema_completion_and_models() {
    use oracle::openai::{chat, chat_stream, completion, models};
    let want = recorded(
        "llama_chat.yaml",
        &[
            chat,
            chat_stream,
            chat,
            chat_stream,
            chat,
            chat_stream,
            completion,
            models,
        ],
    );
    for chunk in CHUNKS {
        let server = server("llama_chat.yaml", chunk).await;
        let p = openai(&format!("{}/v1", server.url()));
        let ctx = RequestContext::new();

        let (plain, streamed) = both(&p, Request::Chat(chat_request()), &want[0..2]).await;
        assert!(!plain.text().trim().is_empty());
        let u = plain.usage.unwrap();
        assert!(u.input_tokens > 0 && u.output_tokens > 0);
        assert!(
            u.cached_input_tokens.is_some(),
            "prompt_tokens_details.cached_tokens"
        );
        assert!(!streamed.text().trim().is_empty());
        assert!(
            streamed.usage.unwrap().output_tokens > 0,
            "include_usage chunk"
        );
        assert!(streamed.finish_reason.is_some());

        // llama.cpp answers in text despite tool_choice=required for this model; the answer
        // must still decode completely
        let (plain, streamed) = both(&p, Request::Chat(tool_request()), &want[2..4]).await;
        assert!(plain.finish_reason.is_some() && streamed.finish_reason.is_some());

        let (plain, streamed) = both(&p, Request::Chat(json_schema_request()), &want[4..6]).await;
        for answer in [&plain, &streamed] {
            let v: serde_json::Value = serde_json::from_str(&answer.text()).unwrap();
            assert_eq!(v["capital"], "Paris");
        }
        assert!(
            !plain
                .message
                .content
                .iter()
                .any(|p| matches!(p, ContentPart::Refusal { .. }))
        );

        let r = p
            .call(&Request::Completion(completion_request()), &ctx)
            .await
            .unwrap();
        check(&want[6], &Expected::of_response(&r));
        let Response::Completion(c) = r else {
            panic!("not a completion")
        };
        assert!(c.text.contains("Paris"));
        let r = p.call(&Request::Models, &ctx).await.unwrap();
        check(&want[7], &Expected::of_response(&r));
        let Response::Models(m) = r else {
            panic!("not a model list")
        };
        assert_eq!(m.models[0].id, "smollm2");
        server.verify().unwrap();
    }
}

#[tokio::test]
async fn replays_float_and_base64_embeddings() {
    let embeddings = oracle::openai::embeddings;
    let want = recorded("llama_embeddings.yaml", &[embeddings, embeddings]);
    for chunk in CHUNKS {
        let server = server("llama_embeddings.yaml", chunk).await;
        let ctx = RequestContext::new();
        let req = Request::Embeddings(embedding_request());
        let base = format!("{}/v1", server.url());
        let r = openai(&base).call(&req, &ctx).await.unwrap();
        check(&want[0], &Expected::of_response(&r));
        let Response::Embeddings(floats) = r else {
            panic!("not embeddings")
        };
        let r = openai_base64(&base).call(&req, &ctx).await.unwrap();
        check(&want[1], &Expected::of_response(&r));
        let Response::Embeddings(b64) = r else {
            panic!("not embeddings")
        };
        assert_eq!(floats.embeddings.len(), 2);
        assert_eq!(b64.embeddings.len(), 2);
        assert!(floats.dimension() > 0);
        assert_eq!(floats.dimension(), b64.dimension());
        for (a, b) in floats.embeddings.iter().zip(&b64.embeddings) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0), "{x} vs {y}");
            }
        }
        server.verify().unwrap();
    }
}

#[tokio::test]
async fn replays_a_streamed_completion() {
    let want = recorded(
        "llama_completion_stream.yaml",
        &[oracle::openai::completion_stream],
    );
    for chunk in CHUNKS {
        let server = server("llama_completion_stream.yaml", chunk).await;
        let p = openai(&format!("{}/v1", server.url()));
        let s = p
            .stream(
                &Request::Completion(completion_request()),
                &RequestContext::new(),
            )
            .await
            .unwrap();
        let r = StreamAccumulator::collect(s).await.unwrap();
        check(&want[0], &Expected::of_chat(&r));
        assert!(r.text().contains("Paris"), "{}", r.text());
        assert!(r.finish_reason.is_some());
        assert!(r.usage.unwrap().output_tokens > 0, "include_usage chunk");
        server.verify().unwrap();
    }
}
