//! Replays every interaction of the shared Ollama cassettes (`../shared/fixtures/cassettes/ollama`:
//! the native `/api/chat` and `/api/generate`, plain and NDJSON, and the `/v1` mode) through
//! the provider, whole and cut into 7-byte chunks. Each answer is checked against the
//! testkit's oracle of its wire format (`infermux_testkit::oracle::ollama`, or `openai` for
//! `/v1`), the same reading of the recorded body the conformance runner uses, independent of
//! the provider's parser.

use infermux_core::{
    ChatRequest, CompletionRequest, Error, Message, Provider, Request, RequestContext,
    StreamAccumulator,
};
use infermux_ollama::Mode;
use infermux_openai_compat::wire;
use infermux_testkit::helpers::files_with;
use infermux_testkit::oracle::{self, Expected};
use infermux_testkit::{Cassette, Interaction, ReplayOptions, ReplayServer};
use serde_json::Value;

use crate::ollama;

fn messages(v: &Value) -> Vec<Message> {
    v["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    Message::new(
                        m["role"].as_str().unwrap_or("user").into(),
                        m["content"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Sends one interaction's request and checks the answer against the oracle.
async fn replay_one(base: &str, it: &Interaction) -> Result<(), String> {
    let req_json = it.request.json().unwrap_or(Value::Null);
    let status = it.response.status;
    let body = oracle::plain_body(&it.response)?;
    let ctx = RequestContext::new();
    let model = req_json["model"].as_str().unwrap_or("m").to_owned();
    // the native API streams unless told not to
    let native_streams = req_json["stream"].as_bool().unwrap_or(true);
    // the testkit oracle reads the recorded body, independently of this crate's parser
    let (provider, request, streams, want) = match it.request.path() {
        "/api/chat" => (
            ollama(base),
            Request::Chat(ChatRequest::new(model, messages(&req_json))),
            native_streams,
            oracle::ollama::chat(status, &body)?,
        ),
        "/api/generate" => (
            ollama(base),
            Request::Completion(CompletionRequest::new(
                model,
                req_json["prompt"].as_str().unwrap_or(""),
            )),
            native_streams,
            oracle::ollama::generate(status, &body)?,
        ),
        "/v1/chat/completions" => {
            let streams = wire::request_streams(&req_json);
            (
                ollama(base).with_mode(Mode::OpenAi),
                Request::Chat(wire::chat_request_from_json(&req_json).map_err(|e| e.to_string())?),
                streams,
                if streams {
                    oracle::openai::chat_stream(status, &body)?
                } else {
                    oracle::openai::chat(status, &body)?
                },
            )
        }
        other => return Err(format!("no route for {other}")),
    };
    let got: Result<Expected, Error> = if streams {
        match provider.stream(&request, &ctx).await {
            Ok(s) => StreamAccumulator::collect(s)
                .await
                .map(|r| Expected::of_chat(&r)),
            Err(e) => Err(e),
        }
    } else {
        provider
            .call(&request, &ctx)
            .await
            .map(|r| Expected::of_response(&r))
    };
    want.check_replay(status, got.as_ref())
}

#[tokio::test]
async fn every_recorded_ollama_interaction_replays() {
    let Some(dir) = infermux_testkit::shared_fixture("fixtures/cassettes/ollama") else {
        return;
    };
    let files = files_with(&dir, &["yaml", "yml"]).unwrap();
    let (mut passed, mut failed) = (0, Vec::new());
    // whole bodies, and bodies cut in 7-byte chunks (lines split across reads)
    for (f, chunk) in files.iter().flat_map(|f| [(f, None), (f, Some(7))]) {
        let cassette = Cassette::load(f).unwrap();
        let opts = chunk.map_or_else(ReplayOptions::default, |n| {
            ReplayOptions::default().with_chunk_size(n)
        });
        let server = ReplayServer::start_with(cassette.clone(), opts)
            .await
            .unwrap();
        for (i, it) in cassette.interactions.iter().enumerate() {
            match replay_one(&server.url(), it).await {
                Ok(()) => passed += 1,
                Err(e) => failed.push(format!("{}#{i}: {e}", f.display())),
            }
        }
        if let Err(e) = server.verify() {
            failed.push(format!("{}: {e}", f.display()));
        }
    }
    eprintln!(
        "ollama replay: {} interactions passed (each whole and in 7-byte chunks: {passed} runs), {} failed, 0 out of scope",
        passed / 2,
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(passed >= 18, "only {passed} replays");
}
