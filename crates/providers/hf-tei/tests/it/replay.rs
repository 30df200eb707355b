//! Replays every interaction of the shared TEI cassettes (`../shared/fixtures/cassettes/tei`,
//! HF Inference API feature extraction: sentence vectors and token vectors) and decodes TEI's
//! own server outputs (`../shared/fixtures/snapshots/tei`). Each answer is checked against the
//! testkit's TEI oracle (`infermux_testkit::oracle::tei`): every component of every vector, as
//! recorded, or the mean of the recorded token vectors — the same reading of the recorded body
//! the conformance runner uses, independent of the provider's parser.

use infermux_core::{EmbeddingRequest, EndpointConfig, Error, Provider, Request, RequestContext};
use infermux_hf_tei::HfTei;
use infermux_testkit::helpers::files_with;
use infermux_testkit::oracle::{self, Expected};
use infermux_testkit::{Cassette, Interaction, ReplayServer};
use serde_json::Value;

use crate::{cassette, tei};

/// Out of scope: Hugging Face Hub metadata (`GET huggingface.co/api/models/...`), which the
/// Python client reads to pick a provider; it is not part of the TEI or Inference API protocol.
fn out_of_scope(it: &Interaction) -> bool {
    it.request.host().ends_with("huggingface.co") && it.request.path().starts_with("/api/models/")
}

async fn replay_one(server: &str, it: &Interaction) -> Result<(), String> {
    let path = it.request.path();
    let (prefix, model) = path
        .split_once("/pipeline/feature-extraction/")
        .ok_or_else(|| format!("no route for {path}"))?;
    let cfg = EndpointConfig::new("replay", format!("{server}{prefix}")).unwrap();
    let p = HfTei::inference_api(cfg, model).unwrap();
    let body = it.request.json().unwrap_or(Value::Null);
    let inputs: Vec<String> = match &body["inputs"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => return Err("no inputs recorded".into()),
    };
    let req = Request::Embeddings(EmbeddingRequest::new(model, inputs));
    let got: Result<Expected, Error> = p
        .call(&req, &RequestContext::new())
        .await
        .map(|r| Expected::of_response(&r));
    // the testkit oracle reads the recorded body, independently of this crate's parser
    let status = it.response.status;
    let want = oracle::tei::embed(status, &oracle::plain_body(&it.response)?)?;
    want.check_replay(status, got.as_ref())
}

#[tokio::test]
async fn every_recorded_tei_interaction_replays() {
    let Some(dir) = infermux_testkit::shared_fixture("fixtures/cassettes/tei") else {
        return;
    };
    let paths = files_with(&dir, &["yaml"]).unwrap();
    let (mut passed, mut skipped, mut failed) = (0, 0, Vec::new());
    for f in &paths {
        let mut c = Cassette::load(f).unwrap();
        skipped += c.interactions.iter().filter(|it| out_of_scope(it)).count();
        c.interactions.retain(|it| !out_of_scope(it));
        let server = ReplayServer::start(c.clone()).await.unwrap();
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
        "tei replay: {passed} passed, {} failed, {skipped} out of scope (Hub metadata)",
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(passed >= 2);
}

#[tokio::test]
async fn tei_server_snapshots_decode() {
    let Some(dir) = infermux_testkit::shared_fixture("fixtures/snapshots/tei") else {
        return;
    };
    let paths = files_with(&dir, &["snap"]).unwrap();
    assert!(!paths.is_empty(), "no snapshots under {}", dir.display());
    for f in &paths {
        let snap = oracle::tei::snapshot(&std::fs::read_to_string(f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let body = String::from_utf8(snap.body).unwrap();
        let server = ReplayServer::start(cassette(&[(
            "POST",
            snap.route,
            200,
            snap.content_type,
            &body,
        )]))
        .await
        .unwrap();
        let (count, _) = snap.expected.vectors.unwrap();
        let inputs = vec!["What is Deep Learning?".to_owned(); count];
        let p = tei(&server.url()).with_max_client_batch_size(32);
        let req = Request::Embeddings(EmbeddingRequest::new("tei", inputs));
        let got = p
            .call(&req, &RequestContext::new())
            .await
            .map(|r| Expected::of_response(&r));
        snap.expected
            .check_outcome(got.as_ref())
            .unwrap_or_else(|m| panic!("{}: {m}", f.display()));
        server.verify().unwrap();
    }
    eprintln!("tei snapshots: {} decoded", paths.len());
}
