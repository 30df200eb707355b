//! Replay of every interaction of the shared Gemini cassettes
//! (`../shared/fixtures/cassettes/gemini`, recorded from the real API by llm-gemini, openllmetry
//! and pydantic-ai) through this provider. Each answer is checked against the testkit's Gemini
//! oracle (`infermux_testkit::oracle::gemini`), the same reading of the recorded body the
//! conformance runner uses, independent of the provider's parser.

use infermux_core::{
    EmbeddingRequest, Error, Provider, Request, RequestContext, StreamAccumulator,
};
use infermux_gemini::wire;
use infermux_testkit::helpers::files_with;
use infermux_testkit::oracle::{self, Expected, gemini as oracle_gemini};
use infermux_testkit::{Cassette, Interaction, ReplayOptions, ReplayServer};

use crate::provider;

async fn replay_one(it: &Interaction, chunk: Option<usize>) -> Result<(), String> {
    let cassette = Cassette {
        interactions: vec![it.clone()],
    };
    let opts = chunk.map_or_else(ReplayOptions::default, |n| {
        ReplayOptions::default().with_chunk_size(n)
    });
    let server = ReplayServer::start_with(cassette, opts).await.unwrap();
    let sse = it.request.query_without_keys().contains("alt=sse");
    let p = provider(&format!("{}/v1beta", server.url())).with_sse(sse);
    let status = it.response.status;
    let body = oracle::plain_body(&it.response)?;
    let ctx = RequestContext::new();
    let path = it.request.path().to_owned();
    let model = path
        .split("/models/")
        .nth(1)
        .and_then(|m| m.split(':').next())
        .unwrap_or("")
        .to_owned();
    let method = path.rsplit(':').next().unwrap_or("");
    let req_json = it.request.json().unwrap_or_default();
    // the testkit oracle reads the recorded body, independently of this crate's parser
    let (want, got): (Expected, Result<Expected, Error>) = match method {
        "generateContent" | "streamGenerateContent" => {
            let req = Request::Chat(
                wire::chat_request_from_json(&model, &req_json).map_err(|e| e.to_string())?,
            );
            let got = if method == "generateContent" {
                p.call(&req, &ctx).await.map(|r| Expected::of_response(&r))
            } else {
                match p.stream(&req, &ctx).await {
                    Ok(s) => StreamAccumulator::collect(s)
                        .await
                        .map(|r| Expected::of_chat(&r)),
                    Err(e) => Err(e),
                }
            };
            (oracle_gemini::generate(status, &body)?, got)
        }
        "batchEmbedContents" | "embedContent" => {
            let items = req_json["requests"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![req_json.clone()]);
            let inputs = items
                .iter()
                .map(|r| {
                    r["content"]["parts"][0]["text"]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or("a recorded embedding request without text")
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut req = EmbeddingRequest::new(model.clone(), inputs.clone());
            req.dimensions = items[0]["outputDimensionality"]
                .as_u64()
                .map(|d| u32::try_from(d).unwrap());
            if let Some(t) = items[0].get("taskType") {
                req.extra.insert("taskType".into(), t.clone());
            }
            if method == "embedContent" {
                let got = p.embed_one(&req, &inputs[0], &ctx).await.map(|v| {
                    let mut e = Expected::default();
                    e.vectors = Some((1, v.len()));
                    e.embeddings = Some(vec![v]);
                    e
                });
                (oracle_gemini::embed_one(status, &body)?, got)
            } else {
                let got = p.call(&Request::Embeddings(req), &ctx).await;
                (
                    oracle_gemini::batch_embed(status, &body)?,
                    got.map(|r| Expected::of_response(&r)),
                )
            }
        }
        "countTokens" => {
            let req = wire::chat_request_from_json(&model, &req_json).map_err(|e| e.to_string())?;
            let got = p.count_tokens(&req, &ctx).await.map(|n| {
                let mut e = Expected::default();
                e.token_count = Some(n);
                e
            });
            (oracle_gemini::count_tokens(status, &body)?, got)
        }
        _ if path.ends_with("/models") => {
            let got = p.call(&Request::Models, &ctx).await;
            (
                oracle_gemini::models(status, &body)?,
                got.map(|r| Expected::of_response(&r)),
            )
        }
        other => return Err(format!("no route for {other}")),
    };
    want.check_replay(status, got.as_ref())?;
    server.verify()
}

#[tokio::test]
async fn every_shared_gemini_interaction_replays() {
    let Some(dir) = infermux_testkit::shared_fixture("fixtures/cassettes/gemini") else {
        return;
    };
    let (mut passed, mut failed) = (0, Vec::new());
    for (n, path) in files_with(&dir, &["yaml", "yml"])
        .unwrap()
        .iter()
        .enumerate()
    {
        let c = Cassette::load(path).unwrap();
        let name = path.strip_prefix(&dir).unwrap().display().to_string();
        for (i, it) in c.interactions.iter().enumerate() {
            let chunk = [None, Some(7), Some(64)][(n + i) % 3];
            match replay_one(it, chunk).await {
                Ok(()) => passed += 1,
                Err(e) => failed.push(format!("{name}#{i}: {e}")),
            }
        }
    }
    eprintln!(
        "gemini shared cassettes: {passed} passed, {} failed, 0 out of scope",
        failed.len()
    );
    assert!(failed.is_empty(), "failures:\n{}", failed.join("\n"));
    assert!(passed >= 30, "only {passed} interactions replayed");
}
