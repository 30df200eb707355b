//! Replays every interaction of the shared TGI cassettes (`../shared/fixtures/cassettes/tgi`,
//! HF Inference API: generation plain and streamed, the messages API plain and streamed,
//! validation errors) through the provider, whole and cut into 5-byte chunks. Each answer is
//! checked against the testkit's oracle of its wire format (`infermux_testkit::oracle::tgi`, or
//! `openai` for the messages API), the same reading of the recorded body the conformance runner
//! uses, independent of the provider's parser.

use infermux_core::{
    CompletionRequest, EndpointConfig, Error, Provider, Request, RequestContext, StreamAccumulator,
};
use infermux_hf_tgi::HfTgi;
use infermux_openai_compat::wire as oai;
use infermux_testkit::helpers::files_with;
use infermux_testkit::oracle::{self, Expected};
use infermux_testkit::{Cassette, Interaction, ReplayOptions, ReplayServer};
use serde_json::Value;

/// Out of scope: Hugging Face Hub metadata (`GET huggingface.co/api/models/...`), read by the
/// Python client to pick a provider; not part of the TGI or Inference API protocol.
fn out_of_scope(it: &Interaction) -> bool {
    it.request.host().ends_with("huggingface.co") && it.request.path().starts_with("/api/models/")
}

async fn replay_one(server: &str, it: &Interaction) -> Result<(), String> {
    let path = it.request.path();
    let body = it.request.json().unwrap_or(Value::Null);
    let (api_path, chat) = match path.strip_suffix("/v1/chat/completions") {
        Some(p) => (p, true),
        None => (path, false),
    };
    let (prefix, model) = api_path
        .split_once("/models/")
        .ok_or_else(|| format!("no route for {path}"))?;
    let cfg = EndpointConfig::new("replay", format!("{server}{prefix}")).unwrap();
    let p = HfTgi::inference_api(cfg, model).unwrap();
    let ctx = RequestContext::new();
    let (request, streamed) = if chat {
        let req = oai::chat_request_from_json(&body).map_err(|e| e.to_string())?;
        (Request::Chat(req), oai::request_streams(&body))
    } else {
        let prompt = match &body["inputs"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut req = CompletionRequest::new(model, prompt);
        req.max_tokens = body["parameters"]["max_new_tokens"]
            .as_u64()
            .map(|n| n as u32);
        (
            Request::Completion(req),
            body["stream"] == Value::Bool(true),
        )
    };
    let got: Result<Expected, Error> = if streamed {
        match p.stream(&request, &ctx).await {
            Ok(s) => StreamAccumulator::collect(s)
                .await
                .map(|r| Expected::of_chat(&r)),
            Err(e) => Err(e),
        }
    } else {
        p.call(&request, &ctx)
            .await
            .map(|r| Expected::of_response(&r))
    };
    // the testkit oracle reads the recorded body, independently of this crate's parser
    let status = it.response.status;
    let recorded = oracle::plain_body(&it.response)?;
    let want = match (chat, streamed) {
        (true, stream) => oracle::tgi::messages(status, &recorded, stream)?,
        (false, false) => oracle::tgi::generate_headed(status, &it.response.headers, &recorded)?,
        (false, true) => oracle::tgi::generate_stream(status, &recorded)?,
    };
    want.check_replay(status, got.as_ref())
}

#[tokio::test]
async fn every_recorded_tgi_interaction_replays() {
    let Some(dir) = infermux_testkit::shared_fixture("fixtures/cassettes/tgi") else {
        return;
    };
    let paths = files_with(&dir, &["yaml"]).unwrap();
    let (mut passed, mut skipped, mut failed) = (0, 0, Vec::new());
    // whole bodies, and bodies cut in 5-byte chunks (events split across reads)
    for (f, chunk) in paths.iter().flat_map(|f| [(f, None), (f, Some(5))]) {
        let mut c = Cassette::load(f).unwrap();
        if chunk.is_none() {
            skipped += c.interactions.iter().filter(|it| out_of_scope(it)).count();
        }
        c.interactions.retain(|it| !out_of_scope(it));
        let opts = chunk.map_or_else(ReplayOptions::default, |n| {
            ReplayOptions::default().with_chunk_size(n)
        });
        let server = ReplayServer::start_with(c.clone(), opts).await.unwrap();
        for (i, it) in c.interactions.iter().enumerate() {
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
        "tgi replay: {} interactions passed (each whole and in 5-byte chunks: {passed} runs), {} failed, {skipped} out of scope (Hub metadata)",
        passed / 2,
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(passed >= 26, "only {passed} replays");
}
