//! Replay of every interaction of the shared Anthropic cassettes
//! (`../shared/fixtures/cassettes/anthropic`, recorded from the real API by llm-anthropic,
//! openllmetry and pydantic-ai) through this provider. Each answer is checked against the
//! testkit's Anthropic oracle (`infermux_testkit::oracle::anthropic`), the same reading of the
//! recorded body the conformance runner uses, independent of the provider's parser.

use infermux_anthropic::{Anthropic, wire};
use infermux_core::{EndpointConfig, Provider, Request, RequestContext, StreamAccumulator};
use infermux_testkit::helpers::files_with;
use infermux_testkit::oracle::{Expected, anthropic as oracle};
use infermux_testkit::{Cassette, Interaction, ReplayOptions, ReplayServer};

use crate::response_bytes;

/// Why an interaction is out of scope, if it is.
fn out_of_scope(it: &Interaction) -> Option<&'static str> {
    match it.request.path() {
        "/v1/complete" => Some("legacy Text Completions API (/v1/complete), retired by Anthropic"),
        "/v1/messages" | "/v1/messages/count_tokens" | "/v1/models" => None,
        _ => Some("route not offered"),
    }
}

async fn replay_one(it: &Interaction, chunk: Option<usize>) -> Result<(), String> {
    let cassette = Cassette {
        interactions: vec![it.clone()],
    };
    let opts = chunk.map_or_else(ReplayOptions::default, |n| {
        ReplayOptions::default().with_chunk_size(n)
    });
    let server = ReplayServer::start_with(cassette, opts).await.unwrap();
    let p = Anthropic::new(EndpointConfig::new("shared", format!("{}/v1", server.url())).unwrap())
        .unwrap()
        .with_beta_query(it.request.query_without_keys().contains("beta=true"));
    let status = it.response.status;
    let body = response_bytes(&it.response);
    let ctx = RequestContext::new();
    let req_json = it.request.json().unwrap_or_default();
    // the testkit oracle reads the recorded body, independently of this crate's parser
    let (want, got): (Expected, Result<Expected, infermux_core::Error>) = match it.request.path() {
        "/v1/messages/count_tokens" => {
            let req = wire::chat_request_from_json(&req_json).map_err(|e| e.to_string())?;
            let got = p.count_tokens(&req, &ctx).await.map(|n| {
                let mut e = Expected::default();
                e.token_count = Some(n);
                e
            });
            (oracle::count_tokens(status, &body)?, got)
        }
        "/v1/models" => {
            let got = p.call(&Request::Models, &ctx).await;
            (
                oracle::models(status, &body)?,
                got.map(|r| Expected::of_response(&r)),
            )
        }
        _ => {
            let req =
                Request::Chat(wire::chat_request_from_json(&req_json).map_err(|e| e.to_string())?);
            if wire::request_streams(&req_json) {
                let got = match p.stream(&req, &ctx).await {
                    Ok(s) => StreamAccumulator::collect(s).await,
                    Err(e) => Err(e),
                };
                (
                    oracle::messages_stream(status, &body)?,
                    got.map(|r| Expected::of_chat(&r)),
                )
            } else {
                let got = p.call(&req, &ctx).await;
                (
                    oracle::messages(status, &body)?,
                    got.map(|r| Expected::of_response(&r)),
                )
            }
        }
    };
    want.check_replay(status, got.as_ref())?;
    server.verify()
}

#[tokio::test]
async fn every_shared_anthropic_interaction_replays() {
    let Some(dir) = infermux_testkit::shared_fixture("fixtures/cassettes/anthropic") else {
        return;
    };
    let (mut passed, mut failed, mut skipped) = (0, Vec::new(), Vec::new());
    for (n, path) in files_with(&dir, &["yaml", "yml"])
        .unwrap()
        .iter()
        .enumerate()
    {
        let c = Cassette::load(path).unwrap();
        let name = path.strip_prefix(&dir).unwrap().display().to_string();
        for (i, it) in c.interactions.iter().enumerate() {
            if let Some(why) = out_of_scope(it) {
                skipped.push(format!("{name}#{i}: {why}"));
                continue;
            }
            let chunk = [None, Some(7), Some(64)][(n + i) % 3];
            match replay_one(it, chunk).await {
                Ok(()) => passed += 1,
                Err(e) => failed.push(format!("{name}#{i}: {e}")),
            }
        }
    }
    eprintln!(
        "anthropic shared cassettes: {passed} passed, {} failed, {} out of scope",
        failed.len(),
        skipped.len()
    );
    for s in &skipped {
        eprintln!("  out of scope: {s}");
    }
    assert!(failed.is_empty(), "failures:\n{}", failed.join("\n"));
    assert!(passed > 0);
}
